"""Every bad input named in the issue: one clear DataError naming the file, no output left."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import molgraph_data as md
import numpy as np
import pytest


def _convert_fails(sources: list[Path], out: Path, match: str, **options: object) -> str:
    with pytest.raises(md.DataError, match=match) as info:
        md.convert(sources, out, **options)
    message = str(info.value)
    assert "\n" not in message
    assert str(sources[0]) in message
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")) == []
    assert not out.exists()
    return message


def test_missing_file(tmp_path: Path) -> None:
    _convert_fails([tmp_path / "absent.h5"], tmp_path / "o.h5", "no such file")


def test_unknown_format(tmp_path: Path) -> None:
    src = tmp_path / "notes.bin"
    src.write_bytes(b"\x00\x01 not a dataset")
    _convert_fails([src], tmp_path / "o.h5", "unknown format; pass --format")
    with pytest.raises(md.DataError, match="unknown format 'nope'"):
        md.convert([src], tmp_path / "o.h5", format="nope")
    assert not (tmp_path / "o.h5").exists()


def test_unknown_reader_option(tmp_path: Path, write_rmd17: Callable[..., Path]) -> None:
    src = write_rmd17(tmp_path / "rmd17_x_train_01.npz")
    _convert_fails([src], tmp_path / "o.h5", "option high_energy does not apply", high_energy=True)


def test_truncated_hdf5(tmp_path: Path, shared_data: Path) -> None:
    full = (shared_data / "ani1" / "ani_gdb_s01.h5").read_bytes()
    src = tmp_path / "ani_gdb_s01.h5"
    src.write_bytes(full[: len(full) // 3])
    _convert_fails([src], tmp_path / "o.h5", "not a readable HDF5 file, truncated or corrupt")


def test_corrupt_hdf5_header(tmp_path: Path, shared_data: Path) -> None:
    data = bytearray((shared_data / "ani1" / "ani_gdb_s01.h5").read_bytes())
    data[8:64] = b"\xff" * 56  # superblock destroyed, signature kept
    src = tmp_path / "ani_gdb_s01.h5"
    src.write_bytes(bytes(data))
    _convert_fails(
        [src], tmp_path / "o.h5", "not a readable HDF5 file, truncated or corrupt", format="ani1"
    )


def test_missing_key_names_group(tmp_path: Path, write_ani1, ani1_group) -> None:
    group = ani1_group()
    del group["energies"]
    src = write_ani1(tmp_path / "a.h5", {"mol-0": ani1_group(), "mol-1": group})
    message = _convert_fails([src], tmp_path / "o.h5", "missing dataset 'energies'")
    assert "/gdb11_s01/mol-1" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_energy(tmp_path: Path, write_ani1, ani1_group, bad: float) -> None:
    group = ani1_group()
    group["energies"][2] = bad
    src = write_ani1(tmp_path / "a.h5", {"mol-0": group})
    match = "energy of conformation 2 is NaN" if np.isnan(bad) else "energies contain inf"
    _convert_fails([src], tmp_path / "o.h5", match)


def test_nan_forces_in_npz(tmp_path: Path, write_rmd17) -> None:
    src = write_rmd17(tmp_path / "rmd17_x_train_01.npz")
    data = dict(np.load(src))
    data["forces"][3, 1, 0] = np.nan
    np.savez(src, **data)
    _convert_fails([src], tmp_path / "o.h5", "forces of conformation 3 contain NaN")


def test_zero_atom_conformations(tmp_path: Path, write_ani1) -> None:
    empty = {
        "coordinates": np.zeros((3, 0, 3), np.float32),
        "energies": np.zeros(3),
        "species": np.array([], dtype="S1"),
    }
    src = write_ani1(tmp_path / "a.h5", {"mol-0": empty})
    _convert_fails([src], tmp_path / "o.h5", "zero atoms")


def test_unknown_element_symbol(tmp_path: Path, write_ani1, ani1_group) -> None:
    src = write_ani1(tmp_path / "a.h5", {"mol-0": ani1_group(("O", "Xx", "H"))})
    _convert_fails([src], tmp_path / "o.h5", "unknown element symbol 'Xx'")


def test_species_and_coordinates_mismatch(tmp_path: Path, write_ani1, ani1_group) -> None:
    group = ani1_group(("O", "H", "H"))
    group["species"] = np.array([b"O", b"H"])
    src = write_ani1(tmp_path / "a.h5", {"mol-0": group})
    _convert_fails([src], tmp_path / "o.h5", r"coordinates have shape \(4, 3, 3\) but the species")


def test_atoms_closer_than_a_tenth_of_an_angstrom(tmp_path: Path, write_ani1, ani1_group) -> None:
    group = ani1_group()
    group["coordinates"][1, 2] = group["coordinates"][1, 0] + np.float32(0.05)
    src = write_ani1(tmp_path / "a.h5", {"mol-0": group})
    _convert_fails([src], tmp_path / "o.h5", "conformation 1: atoms 0 and 2 are 0.0866 Å apart")


def test_bad_second_source_leaves_nothing(tmp_path: Path, write_ani1, ani1_group) -> None:
    good = write_ani1(tmp_path / "good.h5", {"mol-0": ani1_group()})
    bad_group = ani1_group()
    bad_group["energies"][0] = np.nan
    bad = write_ani1(tmp_path / "bad.h5", {"mol-0": bad_group})
    out = tmp_path / "o.h5"
    with pytest.raises(md.DataError, match="bad.h5"):
        md.convert([good, bad], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "good.h5"]


def test_existing_output_untouched_on_failure(tmp_path: Path, write_ani1, ani1_group) -> None:
    good = write_ani1(tmp_path / "good.h5", {"mol-0": ani1_group()})
    out = md.convert([good], tmp_path / "o.h5")
    before = out.read_bytes()
    bad_group = ani1_group()
    bad_group["species"][0] = b"Q"
    bad = write_ani1(tmp_path / "bad.h5", {"mol-0": bad_group})
    with pytest.raises(md.DataError):
        md.convert([bad], out)
    assert out.read_bytes() == before


def test_ani1x_nan_is_counted_not_silent(tmp_path: Path, shared_data: Path) -> None:
    src = tmp_path / "ani1x.h5"
    shutil.copy(shared_data / "ani1x" / "ani1x_sample_n5.h5", src)
    with h5py.File(src, "r+") as f:
        f["C1H4N4O4/wb97x_dz.forces"][1, 0, 0] = np.nan
    with md.Store(md.convert([src], tmp_path / "o.h5")) as store:
        assert store.n_conformations == 7
        assert store.metadata["n_dropped_nan"] == 1
        assert store.metadata["dropped_nan_by_group"] == {f"{src}:/C1H4N4O4": 1}


def test_store_is_not_a_source_and_release_is_not_a_store(tmp_path: Path, write_rmd17) -> None:
    src = write_rmd17(tmp_path / "rmd17_x_train_01.npz")
    out = md.convert([src], tmp_path / "o.h5")
    with pytest.raises(md.DataError, match="already a molgraph-data store"):
        md.convert([out], tmp_path / "again.h5")
    with pytest.raises(md.DataError, match="not a molgraph-data store; convert it first"):
        md.Store(src)
