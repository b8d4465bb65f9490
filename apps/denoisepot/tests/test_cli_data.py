"""`denoisepot data inspect|convert|split` end to end through the console-script entry point."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from denoisepot.cli import main


def run(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, str, str]:
    """Run the CLI as the console script would; return (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["denoisepot", *argv])
    monkeypatch.setenv("COLUMNS", "120")
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_release_file(shared_data: Path, monkeypatch, capsys) -> None:
    code, out, _ = run(
        ["data", "inspect", str(shared_data / "ani1" / "ani_gdb_s01.h5")], monkeypatch, capsys
    )
    assert code == 0
    for text in ("ani1", "wB97x/6-31G(d)", "10,800", "H C N O", "3 – 5", "kcal/mol"):
        assert text in out
    assert "forces" in out and "no" in out


def test_convert_then_split_official(
    shared_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    train = shared_data / "rmd17" / "rmd17_ethanol_train_01.npz"
    test = shared_data / "rmd17" / "rmd17_ethanol_test_01.npz"
    store = tmp_path / "ethanol.h5"
    code, out, err = run(
        ["data", "convert", str(train), str(test), str(store)], monkeypatch, capsys
    )
    assert code == 0, err
    assert "2,000" in out and "store (rmd17)" in out and store.is_file()
    code, out, err = run(["data", "split", str(store), "--kind", "official"], monkeypatch, capsys)
    assert code == 0, err
    split_file = tmp_path / "ethanol.split-official-seed0.npz"
    with np.load(split_file) as split:
        assert {k: split[k].size for k in split.files} == {"train": 900, "val": 100, "test": 1000}
    assert "900" in out and "1,000" in out
    code, _, err = run(
        ["data", "split", str(store), "--fractions", "0.95,0.05", "--exclude", str(split_file)],
        monkeypatch,
        capsys,
    )
    assert code == 1
    assert (
        err.strip() == f"error: {store}: split part 'train' is empty; change the fractions, "
        "seed or exclusions"
    )


def test_split_within_with_train_subset(
    shared_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = tmp_path / "s01.h5"
    src = shared_data / "ani1" / "ani_gdb_s01.h5"
    assert run(["data", "convert", str(src), str(store)], monkeypatch, capsys)[0] == 0
    out_file = tmp_path / "my.npz"
    code, _, err = run(
        ["data", "split", str(store), "--train-size", "100", "--seed", "3", "-o", str(out_file)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    with np.load(out_file) as split:
        assert split["train"].size == 100 and split["val"].size == 1080


def test_errors_are_one_line_and_leave_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = run(["data", "inspect", str(tmp_path / "absent.h5")], monkeypatch, capsys)
    assert code == 1 and err == f"error: {tmp_path / 'absent.h5'}: no such file or directory\n"
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        group = f.create_group("gdb11_s01/m")
        group["coordinates"] = np.zeros((1, 2, 3), np.float32) + [[[0, 0, 0], [1, 0, 0]]]
        group["energies"] = np.zeros(1)
        group["species"] = np.array([b"H", b"Zz"])
    out_store = tmp_path / "out.h5"
    code, _, err = run(["data", "convert", str(bad), str(out_store)], monkeypatch, capsys)
    assert code == 1
    assert err == f"error: {bad}:/gdb11_s01/m: unknown element symbol 'Zz'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def test_data_group_lists_generate(monkeypatch, capsys) -> None:
    code, out, _ = run(["data", "--help"], monkeypatch, capsys)
    assert code == 0
    for command in ("inspect", "convert", "split", "formats", "generate"):
        assert command in out
