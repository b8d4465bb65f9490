"""`denoisepot compare` end to end on tiny data: both rows, report, plots, resume, fairness."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from denoisepot.compare import CompareConfig, orchestrate, run_compare
from denoisepot.compare.data import prepare_data
from denoisepot.compare.plots import write_plots
from denoisepot.compare.report import convergence_text, pair_cells, runs_at_cap, summarise
from denoisepot.datagen import GenerationRecipe, MoleculeSpec, generate_store
from denoisepot.errors import DenoisepotError
from molgraph_data import Store

TINY_SCHNET = {"hidden_channels": 16, "num_filters": 16, "num_interactions": 1, "num_gaussians": 8}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    molecules = [
        MoleculeSpec("water", "O"),
        MoleculeSpec("methanol", "CO"),
        MoleculeSpec("ethylene", "C=C"),
    ]
    recipe = GenerationRecipe(
        conformers=40,
        temperatures_kelvin=(300.0, 600.0),
        equilibration_steps=10,
        steps_between_frames=3,
    )
    return generate_store(molecules, recipe, path, workers=2, progress=False)


def _config(store: Path, out: Path, **changes) -> CompareConfig:
    config = CompareConfig(
        out=out,
        pretrain_data=[store],
        finetune_data=[store],
        train_sizes=[10, 30],
        seeds=[0],
        sigmas=[0.2],
        pretrain_epochs=2,
        pretrain_batch_size=16,
        finetune_epochs=3,
        patience=2,
        finetune_batch_size=8,
        backbone_hparams={"schnet": TINY_SCHNET},
        workers=1,
        progress=False,
    )
    return dataclasses.replace(config, **changes)


def _plans_with(config: CompareConfig, **changes) -> tuple[list, list]:
    """The runs compare plans for ``config`` and for ``config`` with ``changes``, on the same
    prepared data, in the same order (to compare their names and settings pairwise)."""
    data = prepare_data(config)
    return (orchestrate.plan_jobs(config, data, progress=False),
            orchestrate.plan_jobs(dataclasses.replace(config, **changes), data, progress=False))


@pytest.fixture(scope="module")
def finished(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory):
    config = _config(tiny_store, tmp_path_factory.mktemp("compare"))
    return config, run_compare(config, command="denoisepot compare (test)")


def test_compare_writes_report_results_and_plots_with_both_rows(finished) -> None:
    config, result = finished
    assert result.runs_executed == 1 + 2 * 2 and result.runs_skipped == 0
    with open(result.results_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["row"], int(r["train_size"])) for r in rows) == [
        ("pretrained", 10),
        ("pretrained", 30),
        ("scratch", 10),
        ("scratch", 30),
    ]
    for row in rows:
        assert float(row["energy_mae_kcal_mol"]) > 0 and float(row["force_mae_kcal_mol_a"]) > 0
        assert int(row["epochs_run"]) == 3 and int(row["n_train"]) == int(row["train_size"])
    report = result.report.read_text()
    for text in (
        "from scratch",
        "pretrained",
        "relative change",
        "kcal/mol",
        "Pretraining cost",
        "How the comparison is fair",
        "never sees",
        "What the pretrained denoisers learned",
    ):
        assert text in report
    # the pretrained denoiser measured against the fine-tuning data's xTB forces
    (alignment,) = result.alignments
    assert alignment["dataset"] == "tiny" and alignment["sigma"] == 0.2
    assert -1.0 <= alignment["cosine"] <= 1.0 and alignment["baseline"] > 0
    assert alignment["n_conformations"] > 0 and -1.0 <= alignment["energy_correlation"] <= 1.0
    assert f"{alignment['cosine']:+.3f}" in report
    assert [p.name for p in result.plots] == ["data_efficiency_tiny_schnet.png"]
    assert result.plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_skips_finished_runs_and_redoes_only_the_missing(finished, monkeypatch) -> None:
    config, first = finished
    calls: list[str] = []
    real = orchestrate.run_job

    def counting(kind, run_config, meta, threads):
        calls.append(kind)
        return real(kind, run_config, meta, threads)

    monkeypatch.setattr(orchestrate, "run_job", counting)
    again = run_compare(config)
    assert calls == [] and again.runs_executed == 0 and again.runs_skipped == 5
    assert again.results_csv.read_text() == first.results_csv.read_text()
    assert again.alignments == first.alignments

    # an interrupted comparison: one fine-tuning never reached the manifest
    manifest_path = config.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    lost = next(name for name in manifest["runs"] if "schnet-scratch-n30" in name)
    del manifest["runs"][lost]
    manifest_path.write_text(json.dumps(manifest))
    resumed = run_compare(config)
    assert calls == ["finetune"] and resumed.runs_executed == 1
    assert lost in json.loads(manifest_path.read_text())["runs"]


def test_an_interrupted_finetuning_continues_from_its_last_epoch(
    finished, tmp_path, monkeypatch
) -> None:
    """A comparison stopped in the middle of a fine-tuning (a scheduler's SIGTERM, Ctrl-C)
    continues that run from its last finished epoch when rerun, and every run ends with the
    numbers of the comparison that was never interrupted."""
    from denoisepot.engine import finetune

    config, first = finished
    config = dataclasses.replace(config, out=tmp_path / "compare")
    save = finetune.ResumeCheckpoint.on_train_epoch_end
    stopped: list[str] = []

    def stop_after_the_second_epoch(self, trainer, pl_module) -> None:
        save(self, trainer, pl_module)
        if trainer.current_epoch == 1 and not stopped:
            stopped.append(self.path.parent.parent.name)
            raise RuntimeError("interrupted")

    monkeypatch.setattr(finetune.ResumeCheckpoint, "on_train_epoch_end",
                        stop_after_the_second_epoch)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_compare(config)
    monkeypatch.undo()
    (name,) = stopped
    run = config.out / "runs" / name
    assert (run / "lightning" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    state = torch.load(run / "lightning" / "last.ckpt", weights_only=False)
    (before,) = [v["seconds"] for k, v in state["callbacks"].items() if "ResumeCheckpoint" in k]

    resumed = run_compare(config)
    assert (run / "logs" / "resumed-1").is_dir()  # continued, not started again
    assert _test_errors(resumed) == _test_errors(first)
    assert {r["epochs_run"] for r in resumed.finetune_runs} == {3}
    # its time counts both processes
    (seconds,) = [r["seconds"] for r in resumed.finetune_runs if r["run"] == name]
    assert seconds > before > 0


#: a comparison whose runs would train for a very long time, in two worker processes
_ENDLESS_COMPARISON = """
import json
import sys
from pathlib import Path
from denoisepot.compare import CompareConfig, run_compare
store, out = Path(sys.argv[1]), Path(sys.argv[2])
run_compare(CompareConfig(
    out=out, pretrain_data=[store], finetune_data=[store], train_sizes=[10], seeds=[0],
    sigmas=[0.2], pretrain_epochs=10**6, pretrain_batch_size=16, finetune_epochs=10**6,
    patience=10**6, finetune_batch_size=8,
    backbone_hparams={"schnet": json.loads(sys.argv[3])}, workers=2, progress=False,
))
"""


def test_a_terminated_comparison_stops_its_worker_processes(
    tiny_store, tmp_path, sigterm_when
) -> None:
    """SIGTERM to a comparison running its runs in worker processes (``kill``, a batch
    system's time limit) stops the workers with it, one in a fine-tuning included, and exits
    with status 143, instead of leaving them training on with nobody to record their
    results."""
    import sys

    out = tmp_path / "out"
    stopped = sigterm_when(
        [sys.executable, "-c", _ENDLESS_COMPARISON, str(tiny_store), str(out),
         json.dumps(TINY_SCHNET)],
        # a fine-tuning's first epoch saved: a worker is inside Lightning's fit
        lambda: any(out.glob("runs/finetune-*/lightning/last.ckpt")),
        workers=2,
    )
    assert stopped.workers_left == []
    assert stopped.returncode == 143, stopped.stderr


def _refuse_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(kind, run_config, meta, threads):
        raise AssertionError(f"{kind} run {run_config} should have been reused")

    monkeypatch.setattr(orchestrate, "run_job", refuse)


def _test_errors(result) -> dict[str, float]:
    return {r["run"]: r["test"]["energy_mae"] for r in result.finetune_runs}


def test_a_copied_comparison_reuses_every_run(finished, tmp_path, monkeypatch) -> None:
    """Stores inside the comparison's folder enter run names by their place in it, so the
    folder copied or moved elsewhere (another disk, another machine) reruns nothing, and the
    pretraining checkpoints are looked up where they are now."""
    config, first = finished
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(config.out, moved)
    _refuse_runs(monkeypatch)
    again = run_compare(dataclasses.replace(config, out=moved))
    assert again.runs_executed == 0 and again.runs_skipped == 5
    assert _test_errors(again) == _test_errors(first)
    (pretrain,) = again.pretrain_runs
    assert Path(pretrain["checkpoint"]).is_relative_to(moved)
    assert Path(pretrain["checkpoint"]).is_file()


def test_runs_named_before_names_were_portable_are_reused(finished, tmp_path, monkeypatch):
    """A comparison written before run names were portable hashed absolute store paths:
    its finished runs keep those names and are reused, not run again."""
    config, first = finished
    old = tmp_path / "old"
    shutil.copytree(config.out, old)
    config = dataclasses.replace(config, out=old)
    data = prepare_data(config)
    portable = orchestrate.plan_jobs(config, data, progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(orchestrate, "_portable", lambda settings, root: settings)
        legacy = orchestrate.plan_jobs(config, data, progress=False)
    renamed = {new.name: was.name for new, was in zip(portable, legacy, strict=True)}
    assert all(new != old_name for new, old_name in renamed.items())
    # the folder as the older version left it: runs, their folders and alignments by old names
    manifest_path = old / "manifest.json"
    runs = json.loads(manifest_path.read_text())["runs"]
    kept = {}
    for name, record in runs.items():
        for new, old_name in renamed.items():
            name = name.replace(new, old_name)
        kept[name] = record
    manifest_path.write_text(json.dumps({"version": 1, "runs": kept}))
    for new, old_name in renamed.items():
        if (old / "runs" / new).exists():
            (old / "runs" / new).rename(old / "runs" / old_name)
    _refuse_runs(monkeypatch)
    again = run_compare(config)
    assert again.runs_executed == 0
    assert {r["run"] for r in again.finetune_runs} == {
        j.name for j in legacy if j.kind == "finetune"
    }
    assert sorted(_test_errors(again).values()) == sorted(_test_errors(first).values())


def test_a_higher_step_cap_continues_plateau_runs_instead_of_retraining(
    tiny_store, tmp_path, record_epochs
) -> None:
    """Rerun with a higher --max-steps under the plateau schedule: a fine-tuning that stopped
    early is the same run and trains no further; one that reached its cap trains on from its
    last epoch. Both end exactly as runs given the higher cap from the start, and the runs
    with the lower cap stay where they were."""
    low = _config(tiny_store, tmp_path / "raised", protocol="converged", lr_schedule="plateau",
                  finetune_epochs=None, finetune_max_steps=24, patience_steps=1,
                  finetune_lr=5e-3)
    first = run_compare(low)
    # 24 steps: 12 epochs at 10 conformations (both rows stop early, at epoch 9), 6 at 30
    ended = {(r["row"], r["train_size"]): (r["epochs_run"], r["epoch_cap"])
             for r in first.finetune_runs}
    assert ended == {("scratch", 10): (9, 12), ("pretrained", 10): (9, 12),
                     ("scratch", 30): (6, 6), ("pretrained", 30): (6, 6)}
    # a fresh comparison with the higher cap, sharing only the pretraining
    fresh = tmp_path / "fresh"
    shutil.copytree(low.out, fresh)
    manifest = json.loads((fresh / "manifest.json").read_text())
    manifest["runs"] = {name: record for name, record in manifest["runs"].items()
                        if not name.startswith("finetune-")}
    (fresh / "manifest.json").write_text(json.dumps(manifest))
    for run in first.finetune_runs:
        shutil.rmtree(fresh / "runs" / run["run"])

    trained = record_epochs()
    high = dataclasses.replace(low, finetune_max_steps=64)
    jobs = orchestrate.plan_jobs(high, prepare_data(high), progress=False,
                                 finished=json.loads((low.out / "manifest.json").read_text())[
                                     "runs"])
    extends = {job.extends for job in jobs if job.kind == "finetune"}
    assert extends == {run["run"] for run in first.finetune_runs}
    raised = run_compare(high)
    # the two runs at 30 train on from epoch 6 to their early stop; those at 10 not at all
    assert sorted(trained) == sorted(2 * list(range(6, 16)))
    trained.clear()
    reference = run_compare(dataclasses.replace(high, out=fresh))
    assert len(trained) == 2 * 9 + 2 * 16

    def outcome(result) -> dict[str, tuple]:
        return {r["run"]: (r["epochs_run"], r["best_epoch"], r["epoch_cap"],
                           r["test"]["energy_mae"], r["test"]["force_mae"])
                for r in result.finetune_runs}

    continued, fresh_runs = outcome(raised), outcome(reference)
    assert continued.keys() == fresh_runs.keys()
    for name, values in fresh_runs.items():
        assert continued[name][:3] == values[:3], name
        assert continued[name][3:] == pytest.approx(values[3:], rel=1e-5), name
        # the best checkpoint states the new cap, kept from before the continuation or not
        caps = [{key: recipe[key] for key in ("epochs", "max_epochs")} for recipe in (
            torch.load(out / "runs" / name / "best.pt", weights_only=True)["recipe"]
            for out in (high.out, fresh))]
        assert caps[0] == caps[1], name
    kept = json.loads((low.out / "manifest.json").read_text())["runs"]
    for run in first.finetune_runs:
        assert run["run"] in kept and (low.out / "runs" / run["run"] / "best.pt").is_file()


def test_a_continuation_clears_copies_a_stopped_comparison_left_half_made(tmp_path) -> None:
    """A comparison stopped while copying a lower-cap run leaves ``.NAME.PID.tmp``; the next
    one removes it (its process is gone), leaves a copy whose process still runs, and makes
    the continuation's folder from the lower-cap run."""
    import subprocess
    import sys
    from types import SimpleNamespace

    runs = tmp_path / "runs"
    (runs / "low").mkdir(parents=True)
    (runs / "low" / "run.json").write_text("{}")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    abandoned = runs / f".high.{int(ended.stdout)}.tmp"
    running = runs / f".high.{os.getppid()}.tmp"
    for folder in (abandoned, running):
        (folder / "lightning").mkdir(parents=True)
    job = SimpleNamespace(extends="low", config=SimpleNamespace(out_dir=runs / "high"))
    orchestrate._start_from_lower_cap(job, runs)
    assert not abandoned.exists() and running.is_dir()
    assert (runs / "high" / "run.json").is_file()
    assert sorted(path.name for path in runs.iterdir()) == sorted(["low", "high", running.name])


def test_head_from_the_denoiser_reports_where_it_started(finished) -> None:
    """A head from the denoiser adds the pretrained rows only (pretraining and from-scratch
    runs reused); the report shows their starting errors, and a record without them (made
    before they were kept) gets the same numbers filled in on the next call, no run redone."""
    config, _ = finished
    config = dataclasses.replace(config, pretrained_head="denoiser")
    first = run_compare(config)
    assert first.runs_executed == 2  # the two pretrained fine-tunings
    started = {r["run"]: r["start"] for r in first.finetune_runs if r["row"] == "pretrained"}
    assert len(started) == 2 and all(s["energy_mae"] > 0 for s in started.values())
    assert "Where the pretrained row started" in first.report.read_text()

    manifest_path = config.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name in started:
        del manifest["runs"][name]["start"]
    manifest_path.write_text(json.dumps(manifest))
    again = run_compare(config)
    assert again.runs_executed == 0
    refilled = {r["run"]: r["start"] for r in again.finetune_runs if r["row"] == "pretrained"}
    for name, start in started.items():
        assert refilled[name] == pytest.approx(start, rel=1e-6, nan_ok=True)


def test_both_rows_share_every_setting_but_the_starting_weights(tiny_store, tmp_path) -> None:
    config = _config(tiny_store, tmp_path / "plan", seeds=[0, 1], sigmas=[0.1, 0.2])
    data = prepare_data(config)
    jobs = orchestrate.plan_jobs(config, data, progress=False)
    pretrain = [j for j in jobs if j.kind == "pretrain"]
    finetune = [j for j in jobs if j.kind == "finetune"]
    assert len(pretrain) == 2 and len(finetune) == 2 * 2 * 3  # seeds x sizes x (1 + 2 sigmas)
    ignore = {"out_dir", "init_checkpoint", "backbone", "backbone_hparams"}
    for job in finetune:
        scratch = next(
            j
            for j in finetune
            if j.meta["row"] == "scratch"
            and j.meta["seed"] == job.meta["seed"]
            and j.meta["train_size"] == job.meta["train_size"]
        )
        a, b = dataclasses.asdict(job.config), dataclasses.asdict(scratch.config)
        assert {k: v for k, v in a.items() if k not in ignore} == {
            k: v for k, v in b.items() if k not in ignore
        }
        if job.meta["row"] == "pretrained":
            assert job.after in {p.name for p in pretrain}
            assert job.config.init_checkpoint.parent.name == job.after
    assert len({j.name for j in jobs}) == len(jobs)


def test_a_head_from_the_denoiser_changes_only_the_pretrained_rows(tiny_store, tmp_path) -> None:
    """--pretrained-head denoiser: the pretrained rows get head_init "denoiser" (new run names,
    marked), the from-scratch rows and the pretraining keep their names; the default leaves
    every run name as it was before the option existed."""
    config = _config(tiny_store, tmp_path / "head")
    plain, transferred = _plans_with(config, pretrained_head="denoiser")
    for before, after in zip(plain, transferred, strict=True):
        if before.meta.get("row") == "pretrained":
            assert after.config.head_init == "denoiser" and before.config.head_init == "new"
            assert before.name != after.name and "-headdenoiser-" in after.name
        else:
            assert before.name == after.name
    assert all("head_init" not in orchestrate._settings(j.config) for j in plain)
    with pytest.raises(DenoisepotError, match="--pretrained-head 'copy'"):
        dataclasses.replace(config, pretrained_head="copy").check()
    with pytest.raises(DenoisepotError, match="--head-shift 'molecule'"):
        dataclasses.replace(config, head_shift="molecule").check()


def test_noise_head_choice_reaches_pretraining_and_keeps_default_runs(tiny_store, tmp_path) -> None:
    """--noise-head gradient gives EGNN (default: displacement) a gradient-head pretraining
    under its own run name; for SchNet, whose default it is, the runs keep their names. A head
    from the denoiser needs a gradient head: refused (one line naming the cure) otherwise."""
    config = _config(tiny_store, tmp_path / "noise", backbones=["schnet", "egnn"])
    default, gradient = _plans_with(config, noise_head="gradient")
    for before, after in zip(default, gradient, strict=True):
        if before.meta["backbone"] == "schnet":
            assert before.name == after.name
        elif before.kind == "pretrain":
            assert before.config.noise_head is None and after.config.noise_head == "gradient"
            assert after.meta["noise_head"] == "gradient" and "-gradient-" in after.name
            assert before.meta["noise_head"] == "displacement"
        elif before.meta["row"] == "pretrained":
            assert before.name != after.name  # it starts from another pretraining
    with pytest.raises(DenoisepotError, match="egnn's is displacement: add --noise-head gradient"):
        dataclasses.replace(config, pretrained_head="denoiser").check()
    dataclasses.replace(config, pretrained_head="denoiser", noise_head="gradient").check()
    with pytest.raises(DenoisepotError, match="--noise-head 'scalar'"):
        dataclasses.replace(config, noise_head="scalar").check()


def test_shared_store_is_partitioned_so_pretraining_never_sees_finetuning(
    tiny_store, tmp_path
) -> None:
    data = prepare_data(_config(tiny_store, tmp_path / "part"))
    with (
        Store(data.pretrain_stores[0]) as pre,
        Store(data.finetune[0].store) as fine,
        Store(tiny_store) as full,
    ):
        assert pre.n_conformations + fine.n_conformations == full.n_conformations
        assert pre.molecule_names == fine.molecule_names == full.molecule_names
        seen = {tuple(np.round(pre.read([i]).pos.ravel(), 5)) for i in range(pre.n_conformations)}
        for i in range(fine.n_conformations):
            assert tuple(np.round(fine.read([i]).pos.ravel(), 5)) not in seen
        block = fine.read(np.arange(fine.n_conformations))
        assert block.forces is not None and np.isfinite(block.energy).all()
        n_pre = pre.n_conformations
    # a receipt cut short is not trusted (nor a traceback): the partition is made again
    receipt = next(Path(data.pretrain_stores[0]).parent.glob("*-partition.json"))
    receipt.write_text(receipt.read_text()[:10])
    again = prepare_data(_config(tiny_store, tmp_path / "part"))
    assert json.loads(receipt.read_text())["fraction"] > 0
    with Store(again.pretrain_stores[0]) as pre:
        assert pre.n_conformations == n_pre


def test_bad_options_are_one_clear_line(tiny_store, tmp_path) -> None:
    with pytest.raises(DenoisepotError, match="--train-sizes 5000"):
        run_compare(_config(tiny_store, tmp_path / "big", train_sizes=[5000]))
    with pytest.raises(DenoisepotError, match="--backbone 'nosuch'"):
        run_compare(_config(tiny_store, tmp_path / "bb", backbones=["nosuch"]))
    with pytest.raises(DenoisepotError, match="--protocol"):
        run_compare(_config(tiny_store, tmp_path / "pr", protocol="fast"))
    hparams = {"schnet": {**TINY_SCHNET, "hidden": 3}}
    with pytest.raises(DenoisepotError, match="--hparam schnet:hidden: schnet has no such"):
        run_compare(_config(tiny_store, tmp_path / "hp", backbone_hparams=hparams))
    hparams = {"schnet": {**TINY_SCHNET, "hidden_channels": -4}}
    with pytest.raises(DenoisepotError, match="--hparam schnet: schnet rejects these values"):
        run_compare(_config(tiny_store, tmp_path / "hp", backbone_hparams=hparams))
    assert not (tmp_path / "hp").exists()


def _record(row: str, sigma: float | None, size: int, seed: int, mae_ev: float) -> dict:
    test = {
        "energy_mae": mae_ev,
        "energy_rmse": 1.5 * mae_ev,
        "force_mae": 2 * mae_ev,
        "force_rmse": 3 * mae_ev,
    }
    return {
        "dataset": "toy",
        "backbone": "schnet",
        "row": row,
        "sigma": sigma,
        "train_size": size,
        "seed": seed,
        "test": test,
        "best_epoch": 4,
        "epochs_run": 10,
        "used_forces": True,
    }


def test_report_counts_the_runs_that_reached_the_epoch_cap(finished) -> None:
    """A run of the converged protocol that trains to its epoch cap was never stopped early
    (still improving within its patience): the report counts them per row and size; with none,
    it says every run stopped early; the paper's fixed epochs, all at the cap, say neither."""
    config, result = finished
    records = []
    for seed in (0, 1):
        for row in ("scratch", "pretrained"):
            for size, cap in ((10, 40), (100, 12)):
                record = _record(row, None if row == "scratch" else 0.1, size, seed, 0.01)
                # at 100 conformations seed 1's runs and seed 0's pretrained run hit the cap
                hit = size == 100 and (seed == 1 or row == "pretrained")
                records.append({**record, "epoch_cap": cap, "epochs_run": cap if hit else 9})
    assert len(runs_at_cap(records)) == 3
    text = convergence_text(config, records)
    assert "3 of 8 runs reached the epoch cap" in text
    assert "(from scratch 1 at 100, pretrained 2 at 100)" in text and "--max-steps" in text
    assert "train on from where they ended" not in text  # cosine: a higher cap retrains
    plateau = convergence_text(dataclasses.replace(config, lr_schedule="plateau"), records)
    assert "those at the cap train on from where they ended" in plateau
    assert "floor" not in plateau
    # a capped run whose rate had decayed to min_lr is said to be crawling, not just capped
    floored = [{**r, "lr_at_floor": r["epochs_run"] == r["epoch_cap"] and r["seed"] == 1}
               for r in records]
    floor_text = convergence_text(dataclasses.replace(config, lr_schedule="plateau"), floored)
    assert "(2 of them with the learning rate decayed to its floor, 1e-07," in floor_text
    early = [{**r, "epochs_run": 9} for r in records]
    assert runs_at_cap(early) == []
    assert "every one of the 8 runs ended by early stopping" in convergence_text(config, early)
    paper = dataclasses.replace(config, protocol="paper")
    assert convergence_text(paper, records) is None
    # records from before the cap was kept count as not at the cap
    assert runs_at_cap([{k: v for k, v in r.items() if k != "epoch_cap"} for r in records]) == []
    # the finished comparison's report states what its own runs did, as results.csv has them
    with open(result.results_csv) as handle:
        rows = list(csv.DictReader(handle))
    capped = sum(int(r["epochs_run"]) >= int(r["epoch_cap"]) for r in rows)
    report = result.report.read_text()
    assert "- Convergence: " in report
    assert (f"{capped} of {len(rows)} runs reached the epoch cap" in report if capped
            else f"every one of the {len(rows)} runs ended by early stopping" in report)


def test_summary_ratios_and_sigma_sweep_plot(tmp_path) -> None:
    records = []
    for seed, scale in ((0, 1.0), (1, 1.2)):
        for size in (10, 100):
            records.append(_record("scratch", None, size, seed, 0.1 * scale / size))
            for sigma, factor in ((0.1, 0.8), (0.5, 0.9)):
                records.append(
                    _record("pretrained", sigma, size, seed, factor * 0.1 * scale / size)
                )
    pairs = pair_cells(summarise(records))
    assert len(pairs) == 4
    for pair in pairs:
        expected = 0.8 if pair.pretrained.sigma == 0.1 else 0.9
        np.testing.assert_allclose(pair.ratios(), [expected, expected])
        assert pair.change("energy_mae") == pytest.approx(expected - 1.0)
    plots = write_plots(tmp_path, summarise(records))
    assert sorted(p.name for p in plots) == [
        "data_efficiency_toy_schnet.png",
        "sigma_sweep_toy_schnet.png",
    ]


def test_small_training_sets_get_enough_steps_and_patience(tmp_path) -> None:
    config = CompareConfig(
        out=tmp_path,
        finetune_batch_size=32,
        finetune_max_steps=2000,
        patience=25,
        patience_steps=500,
    )
    assert config.epoch_cap(100) == 500 and config.epoch_cap(1000) == 63
    assert config.patience_for(50) == 250 and config.patience_for(1000) == 25
    paper = dataclasses.replace(config, protocol="paper")
    assert paper.epoch_cap(100) is None  # the engine's paper epochs for the data


def _save_runs(folder: str, prefix: str, count: int) -> None:
    from denoisepot.compare.manifest import Manifest

    manifest = Manifest(Path(folder))
    for index in range(count):
        manifest.add(f"{prefix}-{index}", {"index": index})


def test_comparisons_sharing_a_folder_keep_each_others_runs(tmp_path) -> None:
    """Two processes saving to one manifest at once (two comparisons on one --out) lose none
    of each other's runs; a manifest read before the other's saves merges them on its next."""
    import multiprocessing

    from denoisepot.compare.manifest import Manifest

    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_save_runs, args=(str(tmp_path), prefix, 40))
        for prefix in ("schnet", "egnn")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    runs = Manifest(tmp_path).runs
    assert sorted(runs) == sorted(f"{p}-{i}" for p in ("schnet", "egnn") for i in range(40))

    early, late = Manifest(tmp_path), Manifest(tmp_path)
    late.add("et-0", {})
    early.add("se3t-0", {})
    assert {"et-0", "se3t-0"} <= set(Manifest(tmp_path).runs) and len(early.runs) == 82


def test_training_subsets_cover_every_molecule_and_one_molecule_runs_keep_their_names(
    tiny_store, shared_data, tmp_path
) -> None:
    """A training subset of a multi-molecule store is drawn molecule by molecule (3
    conformations of 3 molecules: one of each, whatever the seed); the plain random draw stays
    available. Both decide which conformations a run sees, so a multi-molecule run's name
    carries the choice, while a one-molecule run (rMD17), where they are the same draw, keeps
    the name it had before the choice existed. The same holds for the shifts fitted with a head
    from the denoiser (per element or per atom: the same fit on one molecule; per atom, the
    fit before the choice existed, keeps the names everywhere)."""
    from denoisepot.engine.finetune import make_split
    from molgraph_data import convert, subset

    with Store(tiny_store) as store:
        molecule = store.molecule_index
    for seed in range(6):
        split = make_split(tiny_store, "conformation", seed=seed, train_size=3)
        assert sorted(molecule[split["train"]]) == [0, 1, 2]
        full = make_split(tiny_store, "conformation", seed=seed)
        random = make_split(tiny_store, "conformation", seed=seed, train_size=3,
                            train_subset="random")
        assert np.array_equal(random["train"], subset(full["train"], 3, seed))
    with pytest.raises(DenoisepotError, match="--train-subset 'first'"):
        make_split(tiny_store, "conformation", seed=0, train_size=3, train_subset="first")

    ethanol = convert(
        [shared_data / "rmd17" / "rmd17_ethanol_train_01.npz",
         shared_data / "rmd17" / "rmd17_ethanol_test_01.npz"],
        tmp_path / "rmd17_ethanol.h5",
    )
    config = _config(tiny_store, tmp_path / "subsets", finetune_data=[tiny_store, ethanol])
    data = prepare_data(config)
    for head, shift in (("new", "element"), ("denoiser", "element"), ("denoiser", "atom")):
        jobs = orchestrate.plan_jobs(
            dataclasses.replace(config, pretrained_head=head, head_shift=shift), data,
            progress=False)
        finetune = [j for j in jobs if j.kind == "finetune"]
        assert {j.meta["dataset"] for j in finetune} == {"tiny", "rmd17_ethanol"}
        for job in finetune:
            assert job.config.train_subset == "stratified"
            assert job.config.head_shift == shift
            settings = orchestrate._settings(
                job.config, init_checkpoint=job.meta["pretrain_run"], backbone="schnet",
                backbone_hparams=config.hparams("schnet"),
            )
            if job.meta["dataset"] == "rmd17_ethanol":
                del settings["train_subset"], settings["head_shift"]
            elif job.config.head_init == "new" or shift == "atom":
                del settings["head_shift"]  # unused by a new head; "atom" came first
            assert job.name.endswith(
                f"-{orchestrate.identity_hash(orchestrate._portable(settings, config.out))}")


def test_an_element_no_training_conformation_has_is_refused(tiny_store) -> None:
    """Water (H, O), methanol (C, H, O), ethylene (C, H): training on ethylene alone and
    testing on water leaves O's reference energy unfitted, refused in one line naming O."""
    from denoisepot.engine.finetune import check_elements_trained, make_split

    with Store(tiny_store) as store:
        molecule, names = store.molecule_index, store.molecule_names
    by_name = {name: np.nonzero(molecule == i)[0] for i, name in enumerate(names)}
    split = {"train": by_name["ethylene"], "val": by_name["methanol"], "test": by_name["water"]}
    with pytest.raises(DenoisepotError, match=r"tiny\.h5: the validation or test conformations "
                       r"hold O, which no training conformation has"):
        check_elements_trained(tiny_store, split)
    check_elements_trained(tiny_store, {**split, "train": by_name["methanol"]})
    check_elements_trained(tiny_store, make_split(tiny_store, "conformation", seed=0,
                                                  train_size=3))


def test_val_fraction_sets_how_much_of_an_official_train_file_validates(
    shared_data: Path, tmp_path: Path
) -> None:
    """rMD17's official split: --val-fraction 0.05 holds out 50 of the 1,000-conformation train
    file (the field's 950 / 50), so 950 can be trained on; the default 0.1 stops at 900; the
    pretraining keeps its name while every fine-tuning becomes a new run; the dataset records
    the train/validation/test counts the report states; out of (0, 1) is refused."""
    from molgraph_data import convert

    folder = shared_data / "rmd17"
    store = convert([folder / "rmd17_ethanol_train_01.npz", folder / "rmd17_ethanol_test_01.npz"],
                    tmp_path / "ethanol.h5")
    geometries = convert([folder / "rmd17_ethanol_train_01.npz"], tmp_path / "geometries.h5")
    config = CompareConfig(out=tmp_path / "out", pretrain_data=[geometries],
                           finetune_data=[store], train_sizes=[50, 950], seeds=[0],
                           workers=1, progress=False)
    config.check()
    data = prepare_data(config)
    (dataset,) = data.finetune
    assert dataset.split == "official"
    with pytest.raises(DenoisepotError, match="--train-sizes 950 is more than the 900 training"):
        orchestrate._check_train_sizes(config, dataset)
    default_names = {j.name for j in orchestrate.plan_jobs(
        dataclasses.replace(config, train_sizes=[50]), data, progress=False)}

    held_out = dataclasses.replace(config, val_fraction=0.05)
    orchestrate._check_train_sizes(held_out, dataset)
    assert (dataset.available_train, dataset.validation, dataset.test) == (950, 50, 1000)
    jobs = orchestrate.plan_jobs(held_out, data, progress=False)
    finetune = [j for j in jobs if j.kind == "finetune"]
    assert {j.config.val_fraction for j in finetune} == {0.05}
    small = {j.name for j in orchestrate.plan_jobs(
        dataclasses.replace(held_out, train_sizes=[50]), data, progress=False)}
    # the pretraining is shared; every fine-tuning is a new run
    assert {n for n in small if n.startswith("pretrain-")} == {
        n for n in default_names if n.startswith("pretrain-")}
    assert not {n for n in small if n.startswith("finetune-")} & default_names
    from denoisepot.engine.finetune import make_split

    parts = make_split(store, "official", seed=0, val_fraction=0.05, train_size=950)
    assert (parts["train"].size, parts["val"].size, parts["test"].size) == (950, 50, 1000)
    assert not set(parts["train"]) & set(parts["val"])
    for bad in (0.0, 1.0):
        with pytest.raises(DenoisepotError, match=f"--val-fraction must be between 0 and 1, "
                           f"got {bad}"):
            dataclasses.replace(config, val_fraction=bad).check()


def test_val_fraction_leaves_splits_within_molecules_alone(tiny_store, tmp_path) -> None:
    """--val-fraction only cuts official train files: on a split within molecules (80/10/10)
    it is unused, so the runs keep their names and settings."""
    config = _config(tiny_store, tmp_path / "vf")
    data = prepare_data(config)
    assert data.finetune[0].split == "conformation"
    default = orchestrate.plan_jobs(config, data, progress=False)
    other = orchestrate.plan_jobs(dataclasses.replace(config, val_fraction=0.3), data,
                                  progress=False)
    assert [j.name for j in default] == [j.name for j in other]
    assert {j.config.val_fraction for j in other if j.kind == "finetune"} == {0.1}


def test_validate_start_reaches_both_rows_and_keeps_default_names(tiny_store, tmp_path) -> None:
    """--validate-start applies to every fine-tuning (both rows: the same protocol), which
    become new runs; the pretraining and, without the option, every run name stay as before."""
    config = _config(tiny_store, tmp_path / "vs")
    default, validated = _plans_with(config, validate_start=True)
    for before, after in zip(default, validated, strict=True):
        if before.kind == "pretrain":
            assert before.name == after.name
        else:
            assert not before.config.validate_start and after.config.validate_start
            assert before.name != after.name
    assert all("validate_start" not in orchestrate._settings(j.config) for j in default)
    from denoisepot.compare.report import _protocol_text

    assert "starting weights validated too" in _protocol_text(
        dataclasses.replace(config, validate_start=True), [])
    assert "starting weights" not in _protocol_text(config, [])
    assert "starting weights validated too" in _protocol_text(
        dataclasses.replace(config, validate_start=True, protocol="paper"), [])


def test_warmup_steps_reach_both_rows_and_keep_default_names(tiny_store, tmp_path) -> None:
    """--warmup-steps stretches every fine-tuning's warmup (both rows), which become new
    runs; the pretraining and, without the option, every run name stay as before; the
    report's settings say so; a negative count is refused in one line."""
    config = _config(tiny_store, tmp_path / "ws")
    default, warm = _plans_with(config, warmup_steps=200)
    for before, after in zip(default, warm, strict=True):
        if before.kind == "pretrain":
            assert before.name == after.name
        else:
            assert before.config.warmup_steps == 0 and after.config.warmup_steps == 200
            assert before.name != after.name
    assert all("warmup_steps" not in orchestrate._settings(j.config) for j in default)
    from denoisepot.compare.report import _finetune_text

    assert "warmup 0.3 epoch (at least 200 steps)," in _finetune_text(
        dataclasses.replace(config, warmup_steps=200), False)
    assert "warmup 0.3 epoch, plateau" in _finetune_text(config, False)
    with pytest.raises(DenoisepotError, match="^--warmup-steps must be >= 0, got -1$"):
        dataclasses.replace(config, warmup_steps=-1).check()


def test_val_every_steps_reach_both_rows_and_keep_default_names(tiny_store, tmp_path) -> None:
    """--val-every-steps sets every fine-tuning's validation interval in whole epochs (both
    rows, the same at each size: 10 conformations at batch 8 are 2 steps per epoch, 30 are
    4), which become new runs with their caps rounded up to whole validations; without it
    every name stays as before; the report says how often each size validated."""
    config = _config(tiny_store, tmp_path / "ve")
    default, coarse = _plans_with(config, val_every_steps=4)
    for before, after in zip(default, coarse, strict=True):
        if before.kind == "pretrain":
            assert before.name == after.name
            continue
        size = before.config.train_size
        assert before.config.val_every == 1 and before.config.epochs == 3
        assert after.config.val_every == {10: 2, 30: 1}[size]
        assert after.config.epochs == {10: 4, 30: 3}[size]
        assert (before.name == after.name) == (size == 30)
    assert all("val_every" not in orchestrate._settings(j.config) for j in default)
    from denoisepot.compare.report import _protocol_text

    records = [{"train_size": 10, "val_every": 2}, {"train_size": 30, "val_every": 1}]
    assert "validated every 2 epochs at 10, 1 epoch at 30" in _protocol_text(config, records)
    assert "validated every" not in _protocol_text(config, [{"train_size": 10}])


def test_a_hyperparameter_added_later_is_always_in_the_run_settings(tmp_path) -> None:
    """The SE(3)-Transformer's radial_norm, added after SE(3)-Transformer runs were recorded,
    is among its settings at either scale (and so in its run names), so that no run of the
    network from before is reused as today's; SchNet's settings gain nothing."""
    for scale in ("small", "paper"):
        config = CompareConfig(out=tmp_path, backbones=["schnet", "se3t"], scale=scale)
        assert config.hparams("se3t")["radial_norm"] is True
        assert "radial_norm" not in config.hparams("schnet")
    plain = CompareConfig(out=tmp_path, backbones=["se3t"],
                          backbone_hparams={"se3t": {"radial_norm": False}})
    assert plain.hparams("se3t")["radial_norm"] is False
