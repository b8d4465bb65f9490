"""The exact radius graph against a brute-force reference."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator

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


@contextlib.contextmanager
def torch_path_only() -> Iterator[None]:
    """Within: the CPU NumPy path is off, so graphs are built with torch operations."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(graph, "_numpy_applies", lambda pos, batch: False)
        yield


@settings(max_examples=60, deadline=None)
@given(batches(), st.booleans())
def test_radius_graph_matches_brute_force(case, loop: bool) -> None:
    pos, batch, cutoff = case
    expected = brute_force(pos, batch, cutoff, loop)
    assert torch.equal(radius_graph(pos, batch, cutoff, loop=loop, method="dense"), expected)
    assert torch.equal(radius_graph(pos.float(), batch, cutoff, loop=loop), expected)
    with torch_path_only():
        assert torch.equal(radius_graph(pos, batch, cutoff, loop=loop), expected)
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
    with torch_path_only():
        assert torch.equal(radius_pairs(pos, batch, cutoff), expected[:, order])


def random_batch(sizes: list[int], seed: int, dtype: torch.dtype = torch.float32,
                 spread: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian positions (Å) of molecules of the given sizes, and their batch vector."""
    generator = torch.Generator().manual_seed(seed)
    pos = spread * torch.randn(sum(sizes), 3, generator=generator, dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


LAYOUTS = {
    "uniform ethanol-sized": [9] * 32,
    "mixed with single atoms": [1, 7, 1, 1, 12, 3, 30, 1],
    "one molecule over 64 atoms": [3, 130, 1, 20],
    "all single atoms": [1] * 6,
    "uniform 70 atoms": [70] * 5,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cutoff", [4.7, 0.01])
def test_numpy_path_equals_torch_path(layout: str, dtype: torch.dtype, cutoff: float,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU NumPy path (in one block or many) and the torch path give identical graphs,
    pairs and self-loop graphs; cutoff 4.7 Å is not exact in binary, 0.01 Å leaves no pairs."""
    pos, batch = random_batch(LAYOUTS[layout], seed=len(layout), dtype=dtype)
    built = [radius_graph(pos, batch, cutoff), radius_graph(pos, batch, cutoff, loop=True),
             radius_pairs(pos, batch, cutoff)]
    assert graph._numpy_dense_pairs(pos, batch, cutoff, "graph") is not None
    monkeypatch.setattr(graph, "_NUMPY_BLOCK", 200)  # over 14 atoms: one molecule at a time
    assert torch.equal(radius_graph(pos, batch, cutoff), built[0])
    assert torch.equal(radius_graph(pos, batch, cutoff, loop=True), built[1])
    assert torch.equal(radius_pairs(pos, batch, cutoff), built[2])
    with torch_path_only():
        reference = [radius_graph(pos, batch, cutoff),
                     radius_graph(pos, batch, cutoff, loop=True),
                     radius_pairs(pos, batch, cutoff)]
    for ours, expected in zip(built, reference, strict=True):
        assert ours.dtype == torch.long and torch.equal(ours, expected)
    if cutoff < 0.1:  # only the self-loops
        assert built[0].shape == (2, 0) and built[2].shape == (2, 0)
        assert torch.equal(built[1], torch.arange(len(pos)).expand(2, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_paths_agree_on_pairs_exactly_at_the_cutoff(dtype: torch.dtype) -> None:
    """With the cutoff set to a pair's own computed distance, that pair is dropped (strict
    comparison) by both paths: they round the squared distance identically."""
    pos, batch = random_batch([40], seed=7, dtype=dtype)
    for first, second in zip(range(0, 20), range(39, 19, -1), strict=True):
        diff = pos[first] - pos[second]
        dist_sq = diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]
        cutoff = math.sqrt(float(dist_sq))
        numpy_pairs = radius_pairs(pos, batch, cutoff)
        with torch_path_only():
            assert torch.equal(numpy_pairs, radius_pairs(pos, batch, cutoff))
        if dtype == torch.float32:
            assert not ((numpy_pairs[0] == first) & (numpy_pairs[1] == second)).any()


def test_float64_and_float32_give_the_same_graph() -> None:
    pos, batch = random_batch([9] * 16 + [40, 1], seed=3, dtype=torch.float64)
    assert torch.equal(radius_graph(pos, batch, 5.0), radius_graph(pos.float(), batch, 5.0))


def test_numpy_path_handles_gaps_views_and_gradients() -> None:
    """Molecule ids with gaps (empty molecules), a strided view of the positions and
    positions that require gradients give the torch path's graph, without gradients."""
    wide, _ = random_batch([60], seed=4, spread=3.0)
    wide = torch.cat([wide, wide], dim=1).requires_grad_(True)  # [60, 6]
    pos = wide[:, ::2]  # a non-contiguous view with gradients
    batch = torch.tensor([0] * 10 + [2] * 25 + [3] * 5 + [7] * 20)
    edge_index = radius_graph(pos, batch, 4.0)
    assert not edge_index.requires_grad
    with torch_path_only():
        assert torch.equal(edge_index, radius_graph(pos, batch, 4.0))
        assert torch.equal(radius_pairs(pos, batch, 4.0), radius_pairs(pos.detach(), batch, 4.0))
    assert torch.equal(edge_index, brute_force(pos.detach().double(), batch, 4.0))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_graph_is_recorded_by_trace_and_compile() -> None:
    """Under torch.jit.trace and torch.compile the graph is built from recorded torch
    operations: new positions (same atom count) give their own graph, not the traced one."""
    pos, batch = random_batch([12, 12], seed=5, spread=2.0)
    moved, _ = random_batch([12, 12], seed=6, spread=2.0)

    def edges(pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return radius_graph(pos, batch, 2.5)

    traced = torch.jit.trace(edges, (pos, batch), check_trace=False)
    compiled = torch.compile(edges, backend="eager", dynamic=True)
    for built in (traced, compiled):
        for positions in (pos, moved):
            assert torch.equal(built(positions, batch), edges(positions, batch))
    assert not torch.equal(edges(pos, batch), edges(moved, batch))


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


@pytest.mark.skipif(not graph.HAS_TORCH_CLUSTER, reason="torch-cluster (extra [cluster]) absent")
def test_auto_leaves_very_large_molecules_to_torch_cluster() -> None:
    size = graph.TORCH_CLUSTER_MIN_ATOMS
    pos, batch = random_batch([size, 5], seed=8, spread=8.0)
    assert graph._numpy_dense_pairs(pos, batch, 5.0, "graph", auto=True) is None
    assert torch.equal(radius_graph(pos, batch, 5.0), radius_graph(pos, batch, 5.0, method="dense"))
