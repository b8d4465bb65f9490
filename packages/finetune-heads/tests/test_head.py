"""EnergyHead: reference energies, float64 totals, size extensivity of the default readout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from finetune_heads import EnergyHead, Potential

Factory = Callable[..., Potential]
Molecule = tuple[torch.Tensor, torch.Tensor]


def _two_far_copies(z_eth: torch.Tensor, pos_eth: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = torch.cat([z_eth, z_eth])
    pos = torch.cat([pos_eth, pos_eth + torch.tensor([50.0, 0.0, 0.0])])
    return z, pos, torch.zeros(len(z), dtype=torch.long)


def test_energy_is_float64_and_includes_reference_energies(
    make_potential: Factory,
    ethanol: Molecule,
) -> None:
    z_eth, pos_eth = ethanol
    reference = torch.zeros(119, dtype=torch.float64)
    reference[[1, 6, 8]] = torch.tensor([-13.6, -1029.8, -2041.3], dtype=torch.float64)
    with_reference = make_potential(reference=reference).eval()
    without = make_potential().eval()
    batch = torch.zeros(9, dtype=torch.long)
    e_ref = with_reference(z_eth, pos_eth, batch)["energy"]
    e_none = without(z_eth, pos_eth, batch)["energy"]
    assert e_ref.dtype == torch.float64
    expected_shift = 6 * -13.6 + 2 * -1029.8 - 2041.3
    assert float(e_ref - e_none) == pytest.approx(expected_shift, abs=1e-9)


def test_per_atom_readout_is_size_extensive_and_sum_then_mlp_is_not(
    make_potential: Factory,
    ethanol: Molecule,
) -> None:
    z_eth, pos_eth = ethanol
    z, pos, batch = _two_far_copies(z_eth, pos_eth)
    single_batch = torch.zeros(9, dtype=torch.long)
    per_atom = make_potential(readout="per_atom").eval()
    single = per_atom(z_eth, pos_eth, single_batch)["energy"]
    double = per_atom(z, pos, batch)["energy"]
    assert float(double) == pytest.approx(2 * float(single), rel=1e-6)
    paper = make_potential(readout="sum_then_mlp").eval()
    single = paper(z_eth, pos_eth, single_batch)["energy"]
    double = paper(z, pos, batch)["energy"]
    assert abs(float(double) - 2 * float(single)) > 1e-4


def test_batch_gives_the_energies_of_each_molecule_alone(
    make_potential: Factory,
    ethanol: Molecule,
) -> None:
    z_eth, pos_eth = ethanol
    potential = make_potential(readout="sum_then_mlp").eval()
    shifted = pos_eth + 0.1 * torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    z = torch.cat([z_eth, z_eth[:5]])
    pos = torch.cat([pos_eth, shifted[:5]])
    batch = torch.tensor([0] * 9 + [1] * 5)
    together = potential(z, pos, batch)["energy"]
    first = potential(z_eth, pos_eth, torch.zeros(9, dtype=torch.long))["energy"]
    second = potential(z_eth[:5], shifted[:5], torch.zeros(5, dtype=torch.long))["energy"]
    torch.testing.assert_close(together, torch.cat([first, second]))


def test_bad_head_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="readout"):
        EnergyHead(8, readout="mean")
    with pytest.raises(ValueError, match="119"):
        EnergyHead(8, reference_energies_ev=[0.0] * 10)
