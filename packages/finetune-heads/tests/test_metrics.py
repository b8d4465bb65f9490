"""Metrics: MAE/RMSE per molecule, per atom and per force component, streamed over batches."""

from __future__ import annotations

import math

import pytest
import torch
from finetune_heads import MetricAccumulator, error_metrics


def test_known_errors_give_known_metrics() -> None:
    predicted = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    reference = torch.tensor([1.5, 2.0, 1.0], dtype=torch.float64)
    atoms = torch.tensor([1, 2, 4])
    forces_pred = torch.zeros(7, 3)
    forces_ref = torch.zeros(7, 3)
    forces_ref[0, 0] = 2.1
    metrics = error_metrics(predicted, reference, atoms, forces_pred, forces_ref)
    assert metrics.energy_mae == pytest.approx(2.5 / 3)
    assert metrics.energy_rmse == pytest.approx(math.sqrt((0.25 + 4.0) / 3))
    assert metrics.energy_per_atom_mae == pytest.approx((0.5 + 0.5) / 3)
    assert metrics.force_mae == pytest.approx(2.1 / 21, rel=1e-6)
    assert metrics.force_rmse == pytest.approx(math.sqrt(2.1**2 / 21), rel=1e-6)
    assert metrics.scaled(1000.0)["energy_mae"] == pytest.approx(2500 / 3)
    assert metrics.scaled(1000.0)["num_molecules"] == 3


def test_streaming_equals_one_pass_and_missing_forces_are_nan() -> None:
    generator = torch.Generator().manual_seed(0)
    predicted = torch.randn(10, generator=generator, dtype=torch.float64)
    reference = torch.randn(10, generator=generator, dtype=torch.float64)
    atoms = torch.randint(1, 20, (10,), generator=generator)
    accumulator = MetricAccumulator()
    accumulator.update(predicted[:4], reference[:4], atoms[:4])
    accumulator.update(predicted[4:], reference[4:], atoms[4:])
    streamed, once = accumulator.compute(), error_metrics(predicted, reference, atoms)
    assert streamed.energy_rmse == pytest.approx(once.energy_rmse)
    assert streamed.energy_per_atom_mae == pytest.approx(once.energy_per_atom_mae)
    assert math.isnan(streamed.force_mae) and streamed.num_force_components == 0


def test_totals_summed_over_shards_give_the_metrics_of_the_whole_set() -> None:
    generator = torch.Generator().manual_seed(1)
    predicted = torch.randn(9, generator=generator, dtype=torch.float64)
    reference = torch.randn(9, generator=generator, dtype=torch.float64)
    atoms = torch.tensor([3, 3, 5, 3, 3, 5, 4, 4, 4])
    forces_pred = torch.randn(34, 3, generator=generator)
    forces_ref = torch.randn(34, 3, generator=generator)
    offsets = [0, *torch.cumsum(atoms, 0).tolist()]
    shards = []
    for molecules in (slice(0, 4), slice(4, 9)):  # what two processes would each hold
        shard = MetricAccumulator()
        atom_rows = slice(offsets[molecules.start], offsets[molecules.stop])
        shard.update(predicted[molecules], reference[molecules], atoms[molecules],
                     forces_pred[atom_rows], forces_ref[atom_rows])
        shards.append(shard)
    merged = MetricAccumulator.from_totals(shards[0].totals() + shards[1].totals()).compute()
    whole = error_metrics(predicted, reference, atoms, forces_pred, forces_ref)
    assert merged.num_molecules == 9 and merged.num_force_components == 34 * 3
    for key, value in whole.as_dict().items():
        assert getattr(merged, key) == pytest.approx(value, rel=1e-12), key
    assert merged != shards[0].compute()
    with pytest.raises(ValueError, match="8 totals"):
        MetricAccumulator.from_totals(torch.zeros(3))
