"""The exact radius graph against a brute-force reference."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from equivariant_backbones import graph
from equivariant_backbones.graph import radius_graph, radius_pairs
from hypothesis import assume, given, settings
from hypothesis import strategies as st


def brute_force(pos: torch.Tensor, batch: torch.Tensor, cutoff: float,
                loop: bool = False) -> torch.Tensor:
    """Ordered pairs (source, target) in (target, source) order, by a double loop."""
    points, molecule = pos.tolist(), batch.tolist()
    edges = []
    for target, source in itertools.product(range(len(points)), repeat=2):
        if molecule[target] != molecule[source] or (target == source and not loop):
            continue
        if math.dist(points[target], points[source]) < cutoff:
            edges.append((source, target))
    return torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float]:
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=5))
    n = sum(sizes)
    coords = draw(st.lists(st.floats(-6.0, 6.0), min_size=3 * n, max_size=3 * n))
    cutoff = draw(st.floats(0.5, 7.0))
    pos = torch.tensor(coords, dtype=torch.float64).reshape(n, 3)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    distance = torch.cdist(pos, pos)
    assume(bool(((distance - cutoff).abs() > 1e-4).all()))
    return pos, batch, cutoff


@settings(max_examples=60, deadline=None)
@given(batches(), st.booleans())
def test_radius_graph_matches_brute_force(case, loop: bool) -> None:
    pos, batch, cutoff = case
    expected = brute_force(pos, batch, cutoff, loop)
    assert torch.equal(radius_graph(pos, batch, cutoff, loop=loop, method="dense"), expected)
    assert torch.equal(radius_graph(pos.float(), batch, cutoff, loop=loop), expected)


@settings(max_examples=40, deadline=None)
@given(batches())
def test_radius_pairs_are_the_upper_half(case) -> None:
    pos, batch, cutoff = case
    source, target = brute_force(pos, batch, cutoff)
    upper = source > target
    expected = torch.stack([target[upper], source[upper]])
    order = torch.argsort(expected[0] * len(pos) + expected[1])
    assert torch.equal(radius_pairs(pos, batch, cutoff), expected[:, order])


def test_chunked_blocks_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    sizes = torch.tensor([30, 1, 17, 30, 2, 25])
    pos = 4.0 * torch.randn(int(sizes.sum()), 3, generator=generator)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    whole = radius_graph(pos, batch, 5.0, method="dense")
    monkeypatch.setattr(graph, "_BLOCK_BUDGET", 30 * 30 * 2)
    assert torch.equal(radius_graph(pos, batch, 5.0, method="dense"), whole)
    assert torch.equal(whole, brute_force(pos.double(), batch, 5.0))


def test_large_molecule_and_singletons() -> None:
    """MD22's largest system has 370 atoms; single-atom molecules have no edges."""
    generator = torch.Generator().manual_seed(1)
    pos = torch.cat([12.0 * torch.rand(370, 3, generator=generator), torch.zeros(2, 3)])
    batch = torch.cat([torch.zeros(370, dtype=torch.long), torch.tensor([1, 2])])
    edge_index = radius_graph(pos, batch, 5.0)
    distance = torch.cdist(pos[:370].double(), pos[:370].double())
    within = distance < 5.0
    within.fill_diagonal_(False)
    target, source = within.nonzero(as_tuple=True)
    assert torch.equal(edge_index, torch.stack([source, target]))


def test_no_gradient_and_empty_input() -> None:
    pos = torch.randn(4, 3, requires_grad=True)
    batch = torch.zeros(4, dtype=torch.long)
    assert not radius_graph(pos, batch, 5.0).requires_grad
    empty = radius_graph(torch.empty(0, 3), torch.empty(0, dtype=torch.long), 5.0)
    assert empty.shape == (2, 0) and empty.dtype == torch.long
    assert radius_pairs(torch.empty(0, 3), torch.empty(0, dtype=torch.long), 5.0).shape == (2, 0)


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="choose 'auto', 'dense' or 'torch_cluster'"):
        radius_graph(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 5.0, method="knn")


@pytest.mark.skipif(not graph.HAS_TORCH_CLUSTER, reason="torch-cluster (extra [cluster]) absent")
def test_torch_cluster_path_matches_dense() -> None:
    generator = torch.Generator().manual_seed(2)
    sizes = torch.tensor([40, 1, 300, 9])
    pos = 5.0 * torch.randn(int(sizes.sum()), 3, generator=generator)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    for loop in (False, True):
        assert torch.equal(radius_graph(pos, batch, 5.0, loop, method="torch_cluster"),
                           radius_graph(pos, batch, 5.0, loop, method="dense"))
