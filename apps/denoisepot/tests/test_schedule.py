"""The paper's learning-rate schedule: linear warmup, plateau, cosine to the floor."""

from __future__ import annotations

import pytest
import torch
from denoisepot.engine.schedule import warmup_plateau_cosine


def _schedule(total: int = 100) -> tuple[torch.optim.Optimizer, object]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    return optimizer, warmup_plateau_cosine(optimizer, total_steps=total, warmup_steps=70,
                                            plateau_steps=30 // 3, min_lr=1e-7)


def _rates(steps: int) -> list[float]:
    optimizer, scheduler = _schedule()
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_plateau_then_cosine_to_the_floor() -> None:
    rates = _rates(100)
    assert rates[0] == pytest.approx(2e-7)
    assert all(b > a for a, b in zip(rates[:70], rates[1:70], strict=False))
    assert rates[70:80] == pytest.approx([2e-4] * 10)
    decay = rates[80:]
    assert all(b < a for a, b in zip(decay, decay[1:], strict=False))
    optimizer, scheduler = _schedule()
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-7)


def test_state_dict_round_trip_continues_the_same_curve() -> None:
    optimizer, scheduler = _schedule()
    for _ in range(75):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    optimizer_state = optimizer.state_dict()
    expected = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        expected.append(optimizer.param_groups[0]["lr"])
    fresh_optimizer, fresh = _schedule()
    fresh_optimizer.load_state_dict(optimizer_state)
    fresh.load_state_dict(state)
    again = []
    for _ in range(10):
        fresh_optimizer.step()
        fresh.step()
        again.append(fresh_optimizer.param_groups[0]["lr"])
    assert again == pytest.approx(expected, rel=1e-12)


def test_warmup_then_halving_on_plateaus_down_to_the_floor() -> None:
    """The converged protocol's alternative: warmup per step, then the rate halves after
    ``patience`` validations without a better loss, and never goes below the floor."""
    from denoisepot.engine.schedule import reduce_on_plateau, warmup_linear

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    warmup = warmup_linear(optimizer, warmup_steps=4)
    plateau = reduce_on_plateau(optimizer, patience=2, factor=0.5, min_lr=2e-4)
    rates = []
    for _ in range(6):
        optimizer.step()
        warmup.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:4] == sorted(rates[:4]) and rates[3:] == pytest.approx([1e-3] * 3)
    after = []
    for loss in (1.0, 0.9, *[0.95] * 9, 0.8):
        plateau.step(loss)
        after.append(optimizer.param_groups[0]["lr"])
    # improving: unchanged; the third validation without progress halves it, and the sixth;
    # the ninth stops at the floor; a later improvement does not raise it
    assert after == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4,
                                   2.5e-4, 2e-4, 2e-4])
