"""The installed command line: user mistakes in `compare` and `data generate` end as one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _denoisepot(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "denoisepot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_compare_unknown_backbone_is_one_line(tmp_path: Path) -> None:
    done = _denoisepot(
        "compare", "--backbone", "nosuch", "--out", str(tmp_path / "o"), cwd=tmp_path
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--backbone 'nosuch' is unknown" in lines[0]
    assert "Traceback" not in done.stderr


def test_compare_bad_number_list_is_one_line(tmp_path: Path) -> None:
    done = _denoisepot("compare", "--train-sizes", "50,lots", cwd=tmp_path)
    assert done.returncode == 1 and "--train-sizes '50,lots'" in done.stderr
    assert not (tmp_path / "compare-out").exists()


def test_compare_unknown_head_shift_is_one_line(tmp_path: Path) -> None:
    done = _denoisepot("compare", "--pretrained-head", "denoiser", "--head-shift", "molecule",
                       "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--head-shift 'molecule': use one of" in lines[0]
    assert not (tmp_path / "o").exists()


def test_generate_bad_smiles_file_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    smiles = tmp_path / "bad.smi"
    smiles.write_text("CCO ethanol\nnot-a-smiles!\n")
    out = tmp_path / "gen.h5"
    done = _denoisepot("data", "generate", "--smiles", str(smiles), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(smiles) in lines[0] and "line 2" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [smiles]


_COMPARE = ["compare"]
_FINETUNE = ["finetune", "--backbone", "schnet"]
_PRETRAIN = ["pretrain", "--backbone", "schnet"]


@pytest.mark.parametrize(
    ("command", "option", "value", "message"),
    [
        (_COMPARE, "--val-fraction", "1.5", "--val-fraction must be between 0 and 1, got 1.5"),
        (_FINETUNE, "--val-fraction", "1.5", "--val-fraction must be between 0 and 1, got 1.5"),
        (_COMPARE, "--warmup-steps", "-3", "--warmup-steps must be >= 0, got -3"),
        (_FINETUNE, "--warmup-steps", "-3", "--warmup-steps must be >= 0, got -3"),
        (_COMPARE, "--val-every-steps", "-1", "--val-every-steps must be >= 0, got -1"),
        (_FINETUNE, "--val-every", "0", "--val-every must be at least 1, got 0"),
        (_PRETRAIN, "--sigma", "-1", "--sigma must be a positive number of Å, got -1.0"),
        (_COMPARE, "--lr-schedule", "step", "--lr-schedule 'step': use one of"),
        (_FINETUNE, "--lr-schedule", "plateau", "--lr-schedule plateau needs --protocol "
         "converged"),
    ],
)
def test_an_option_out_of_range_is_one_line_before_torch_or_lightning(
    tmp_path: Path, command: list[str], option: str, value: str, message: str
) -> None:
    """One line, exit status 1, nothing written, and the settings checked before the training
    engine is imported, so a mistake is answered at once instead of after the seconds (tens
    on a loaded machine) torch and Lightning take."""
    argv = ["denoisepot", *command, option, value, "--out", str(tmp_path / "o")]
    script = (
        "import sys\n"
        "from denoisepot.cli import main\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    heavy = [m for m in ('torch', 'lightning') if m in sys.modules]\n"
        "    print(stop.code, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.stdout.strip() == "1 []", done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("hparam", "message"),
    [
        ("num_rbf=0", "is not backbone:key=value"),
        ("et:num_rbf=16", "'et' is not among the compared backbones"),
        ("egnn:num_gaussians=8", "--hparam egnn:num_gaussians: egnn has no such hyperparameter"),
        ("egnn:num_rbf=1", "--hparam egnn: egnn rejects these values (num_rbf must be 0"),
    ],
)
def test_compare_bad_backbone_hparam_is_one_line(tmp_path: Path, hparam: str,
                                                 message: str) -> None:
    done = _denoisepot("compare", "--backbone", "egnn", "--hparam", hparam,
                       "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "o").exists()


def test_backbone_hparams_go_on_top_of_the_scale() -> None:
    """``--hparam egnn:num_rbf=0`` gives the paper's raw-distance EGNN at the CPU scale, whose
    EGNN otherwise expands distances in 32 Gaussians; other backbones keep the scale's."""
    from denoisepot.cli.options import parse_backbone_hparams
    from denoisepot.compare import CompareConfig

    overrides = parse_backbone_hparams(["egnn:num_rbf=0", "egnn:cutoff=4.5", "schnet:x=[1, 2]"])
    assert overrides == {"egnn": {"num_rbf": 0, "cutoff": 4.5}, "schnet": {"x": [1, 2]}}
    default = CompareConfig(out=Path("o"), backbones=["egnn", "schnet"])
    assert default.hparams("egnn")["num_rbf"] == 32
    paper = CompareConfig(out=Path("o"), backbones=["egnn"], backbone_hparams=overrides)
    assert paper.hparams("egnn") == {"hidden_channels": 64, "num_layers": 3, "cutoff": 4.5,
                                     "num_rbf": 0}
    assert CompareConfig(out=Path("o"), scale="paper").hparams("egnn") == {}
