"""Exact radius graphs for batches of molecules.

Molecules are small (up to a few hundred atoms), so the fastest exact graph on a CPU or a GPU
is a dense distance block per molecule: the atoms of the batch are scattered into a padded
``[B, M, 3]`` tensor (padding is NaN, so it never compares as a neighbour), all squared
distances inside each block are compared with the squared cutoff at once, and ``nonzero``
lists the pairs in (molecule, target, source) order, which is already the global
(target, source) order because molecules are contiguous. Memory is bounded by processing
molecules in chunks. Where torch-cluster is installed and faster (molecules of more than
about 1,500 atoms, where the dense blocks' O(M^2) work outgrows its k-d tree), it is used
instead; its output is re-sorted into the same order.

On a CPU (outside ``torch.jit.trace`` and ``torch.compile``, which must record torch
operations) the same dense blocks are computed with NumPy, whose per-operation overhead is
about a microsecond against torch's several: for 32 ethanols the graph is ~15 array
operations. Measured on a shared, loaded 2-core machine (1 thread, 32 molecules), it is
3.5-5x faster than the torch path up to 64 atoms and 2.4x at 370 atoms, and 4-8x faster
than torch-cluster up to 64 atoms, 1.8-2.6x at 370 (``benchmarks/backbone_throughput.py
--part graph``). The index tables and masks that depend only on the block shape are cached.
Both paths round the squared distances the same way (multiply, then add; no fused
multiply-add), so they give the same graph, at the cutoff too.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

try:  # optional extra: equivariant-backbones[cluster]
    import torch_cluster as _torch_cluster
except ImportError:  # pragma: no cover - depends on the environment
    _torch_cluster = None

HAS_TORCH_CLUSTER = _torch_cluster is not None

#: largest number of padded entries (B * M * M) handled in one dense block
_BLOCK_BUDGET = 1 << 20

#: where torch-cluster is installed, "auto" uses it once the largest molecule has this many
#: atoms. Measured on a CPU (1 thread, 0.1 atoms/Å^3, cutoff 5 Å, torch-cluster 1.6.3 plus the
#: sort into (target, source) order that this module promises): dense 34 ms vs 39 ms at
#: 4 x 1000 atoms, 72 ms vs 53 ms at 2 x 2000 atoms; dense is faster at every size up to 1000.
#: The NumPy dense path (shared, loaded 2-core machine, fastest of 4): 26-30 ms vs 33-51 ms at
#: 4 x 1000 atoms, 42-45 vs 31-44 ms at 3 x 1200, 70 vs 59 ms at 2 x 2000.
TORCH_CLUSTER_MIN_ATOMS = 1500

#: largest number of padded entries (molecules x M x M) per block of the NumPy (CPU) path;
#: a block's temporaries then stay in the L2 cache
_NUMPY_BLOCK = 1 << 16

#: molecules of up to this many atoms get their coordinate differences from two repeats
#: (contiguous operands) rather than broadcasting (one short inner loop per block row)
_NUMPY_REPEAT_MAX_ATOMS = 32

_NUMPY_DTYPES = (torch.float32, torch.float64)


@functools.lru_cache(maxsize=16)
def _block_indices(n_molecules: int, max_atoms: int, first_row: bool) -> np.ndarray:
    """``[2, B*M*M]`` padded atom indices of every entry (b, i, j) of ``B`` dense ``M x M``
    blocks: row i's atom ``b*M + i`` and column j's ``b*M + j``; the column first (source,
    target) unless ``first_row`` (radius_pairs order)."""
    rows = np.repeat(np.arange(n_molecules * max_atoms), max_atoms)
    cols = rows - rows % max_atoms + np.tile(np.arange(max_atoms), n_molecules * max_atoms)
    table = np.stack([rows, cols] if first_row else [cols, rows])
    table.flags.writeable = False  # shared by every call through the cache
    return table


@functools.lru_cache(maxsize=16)
def _block_keep(max_atoms: int, kind: str) -> np.ndarray | None:
    """``[M, M]`` pairs a block may keep: off the diagonal ("graph"), above it ("pairs"), or
    None: all ("loop")."""
    if kind == "loop":
        return None
    keep = np.ones((max_atoms, max_atoms), dtype=bool)
    keep = np.triu(keep, 1) if kind == "pairs" else ~np.eye(max_atoms, dtype=bool)
    keep.flags.writeable = False  # shared by every call through the cache
    return keep


@functools.lru_cache(maxsize=16)
def _block_thresholds(
    n_molecules: int, max_atoms: int, kind: str, cutoff_sq: float, dtype: np.dtype
) -> np.ndarray:
    """``[B, M, M]``: the squared cutoff where a pair may be kept and -inf where it may not
    (the diagonal without self-loops; also the lower triangle for upper-only pairs), so that
    one comparison applies the cutoff and the mask."""
    keep = _block_keep(max_atoms, kind)
    block = np.full((max_atoms, max_atoms), cutoff_sq, dtype=dtype)
    if keep is not None:
        block[~keep] = -np.inf
    thresholds = np.ascontiguousarray(np.broadcast_to(block, (n_molecules, max_atoms, max_atoms)))
    thresholds.flags.writeable = False  # shared by every call through the cache
    return thresholds


def _block_squared_distances(xyz: np.ndarray) -> np.ndarray:
    """``[c, M, M]`` squared distances (Å^2) inside each of ``c`` padded molecules given
    coordinate-major as ``xyz [3, c, M]``, rounded as the torch path does: (dx^2 + dy^2) + dz^2."""
    n_molecules, max_atoms = xyz.shape[1:]
    if max_atoms <= _NUMPY_REPEAT_MAX_ATOMS:
        # Broadcasting x_i - x_j would run one short inner loop per row; two repeats give
        # contiguous operands of all three coordinates at once.
        diff = np.repeat(xyz, max_atoms, axis=2).reshape(3, n_molecules, max_atoms, max_atoms)
        diff -= np.repeat(xyz[:, :, None, :], max_atoms, axis=2)
        diff *= diff
        dist_sq = diff[0]
        dist_sq += diff[1]
        dist_sq += diff[2]
        return dist_sq
    dist_sq = None
    for x in xyz:  # one coordinate at a time: smaller temporaries for larger molecules
        diff = x[:, :, None] - x[:, None, :]
        diff *= diff
        if dist_sq is None:
            dist_sq = diff
        else:
            dist_sq += diff
    return dist_sq


def _numpy_applies(pos: torch.Tensor, batch: torch.Tensor) -> bool:
    """Whether the NumPy path may build this graph: plain float32/float64 CPU tensors,
    outside ``torch.jit.trace`` and ``torch.compile`` (which must record torch operations)."""
    return (
        pos.is_cpu
        and batch.is_cpu
        and pos.dtype in _NUMPY_DTYPES
        and type(pos) is torch.Tensor
        and type(batch) is torch.Tensor
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _numpy_molecule_blocks(
    blocks: np.ndarray, per_block: int, kind: str, cutoff_sq: float
) -> list[np.ndarray]:
    """Edges (padded indices) of blocks of up to ``per_block`` molecules of ``blocks
    [3, B, M]``, each entry's indices read from a cached table. The tables are built for
    ``per_block`` molecules and sliced for fewer, so batches of any size share them."""
    _, n_molecules, max_atoms = blocks.shape
    indices = _block_indices(per_block, max_atoms, kind == "pairs")
    thresholds = _block_thresholds(per_block, max_atoms, kind, cutoff_sq, blocks.dtype)
    chunk = min(n_molecules, per_block)
    parts = []
    for start in range(0, n_molecules, chunk):
        dist_sq = _block_squared_distances(blocks[:, start:start + chunk])
        within = dist_sq < thresholds[:dist_sq.shape[0]]
        edges = np.compress(within.ravel(), indices[:, :dist_sq.size], axis=1)
        if start:
            edges += start * max_atoms
        parts.append(edges)
    return parts


def _numpy_large_molecules(blocks: np.ndarray, kind: str, cutoff_sq: float) -> list[np.ndarray]:
    """Edges (padded indices) of ``blocks [3, B, M]`` one molecule at a time, for molecules
    whose M x M block alone exceeds the block budget: indices from the flat entry number by
    division (no M^2 tables to cache)."""
    _, n_molecules, max_atoms = blocks.shape
    keep = _block_keep(max_atoms, kind)
    cutoff_sq = blocks.dtype.type(cutoff_sq)
    parts = []
    for molecule in range(n_molecules):
        within = _block_squared_distances(blocks[:, molecule:molecule + 1])[0] < cutoff_sq
        if keep is not None:
            within &= keep
        entry = np.flatnonzero(within)
        edges = np.empty((2, entry.size), dtype=np.int64)
        # pairs: (i, j) = (row, column); graph: (source j, target i) = (column, row)
        row, column = (edges[0], edges[1]) if kind == "pairs" else (edges[1], edges[0])
        np.floor_divide(entry, max_atoms, out=row)
        np.multiply(row, max_atoms, out=column)
        np.subtract(entry, column, out=column)
        edges += molecule * max_atoms
        parts.append(edges)
    return parts


def _numpy_dense_pairs(
    pos: torch.Tensor, batch: torch.Tensor, cutoff: float, kind: str, auto: bool = False
) -> np.ndarray | None:
    """The dense-block graph computed with NumPy: ``[2, E]`` int64 global atom indices,
    rows (source, target) sorted by target then source for ``kind`` "graph" (no self-loops)
    or "loop", (first, second) with first < second for "pairs". None where it does not apply:
    a tensor NumPy cannot view, or (``auto``) molecules large enough for torch-cluster."""
    try:
        coords = (pos.detach() if pos.requires_grad else pos).numpy()
        molecule = batch.numpy()
    except (RuntimeError, TypeError):  # e.g. tensors wrapped by torch.func transforms
        return None
    counts = np.bincount(molecule)
    n_molecules, n_atoms = counts.size, coords.shape[0]
    max_atoms = int(counts.max())
    if auto and HAS_TORCH_CLUSTER and max_atoms >= TORCH_CLUSTER_MIN_ATOMS:
        return None
    uniform = n_atoms == n_molecules * max_atoms
    # Coordinate-major padded blocks [3, B, M]; padding is NaN (never a neighbour).
    if uniform:
        blocks = np.ascontiguousarray(coords.T).reshape(3, n_molecules, max_atoms)
    else:
        first_atom = np.cumsum(counts) - counts
        slot_shift = np.arange(n_molecules) * max_atoms - first_atom
        blocks = np.full((3, n_molecules * max_atoms), np.nan, dtype=coords.dtype)
        blocks[:, np.arange(n_atoms) + slot_shift[molecule]] = coords.T
        blocks = blocks.reshape(3, n_molecules, max_atoms)
    cutoff_sq = cutoff * cutoff
    per_block = _NUMPY_BLOCK // (max_atoms * max_atoms)
    if per_block:
        parts = _numpy_molecule_blocks(blocks, per_block, kind, cutoff_sq)
    else:
        parts = _numpy_large_molecules(blocks, kind, cutoff_sq)
    edges = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    if not uniform:  # padded slot b*M + i -> global atom index first_atom[b] + i
        edges = np.take((first_atom[:, None] + np.arange(max_atoms)).ravel(), edges)
    return edges


def _molecule_layout(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """First-atom offset ``ptr [B]``, local index of each atom ``[N]``, largest size M."""
    counts = torch.bincount(batch)
    ptr = torch.cumsum(counts, 0) - counts
    local = torch.arange(batch.numel(), device=batch.device) - ptr[batch]
    return ptr, local, int(counts.max())


def _dense_pairs(
    pos: torch.Tensor, batch: torch.Tensor, cutoff: float, loop: bool, upper_only: bool
) -> torch.Tensor:
    """``[2, E]`` (row 0: target/first, row 1: source/second) of same-molecule pairs closer
    than ``cutoff``; with ``upper_only`` only pairs with first < second."""
    ptr, local, max_atoms = _molecule_layout(batch)
    n_molecules = ptr.numel()
    # Padded [B, M, 3] (rows copied with index_copy_, the fast path), viewed coordinate-major
    # [B, 3, M]: each coordinate's differences are a [B, M, M] block, accumulated in place
    # (no [B, M, M, 3] temporary).
    padded = pos.new_full((n_molecules * max_atoms, 3), float("nan"))
    padded.index_copy_(0, batch * max_atoms + local, pos)
    padded = padded.view(n_molecules, max_atoms, 3).transpose(1, 2)
    cutoff_sq = cutoff * cutoff
    # Pairs each molecule's block may keep: the upper triangle (upper_only), everything but
    # the diagonal (no self-loops) or everything. Applied out of place, so torch.jit.trace
    # can record it (export of a potential).
    keep = None
    if upper_only:
        keep = torch.ones(max_atoms, max_atoms, dtype=torch.bool, device=pos.device).triu_(1)
    elif not loop:
        keep = ~torch.eye(max_atoms, dtype=torch.bool, device=pos.device)
    chunk = max(1, _BLOCK_BUDGET // (max_atoms * max_atoms))
    parts = []
    for start in range(0, n_molecules, chunk):
        block = padded[start:start + chunk]
        diff = block[:, 0].unsqueeze(2) - block[:, 0].unsqueeze(1)
        dist_sq = diff.mul_(diff)
        for axis in (1, 2):
            # mul then add, not addcmul_ (a fused multiply-add on CPU): the NumPy path
            # rounds the same way, so both paths give the same graph at the cutoff too.
            diff = block[:, axis].unsqueeze(2) - block[:, axis].unsqueeze(1)
            dist_sq.add_(diff.mul_(diff))
        within = dist_sq < cutoff_sq
        if keep is not None:
            within = within & keep
        mol, first, second = within.nonzero(as_tuple=True)
        offset = ptr[mol + start]
        parts.append(torch.stack([first + offset, second + offset]))
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts, dim=1)


def _torch_cluster_graph(
    pos: torch.Tensor, batch: torch.Tensor, cutoff: float, loop: bool
) -> torch.Tensor:
    """torch-cluster's radius graph with no neighbour cap, sorted by (target, source)."""
    assert _torch_cluster is not None
    n = pos.shape[0]
    edge_index = _torch_cluster.radius_graph(
        pos, r=cutoff, batch=batch, loop=loop, max_num_neighbors=max(n, 1),
        flow="source_to_target",
    )
    source, target = edge_index[0], edge_index[1]
    # torch-cluster compares dist <= r; the contract here is strict.
    diff = pos[source] - pos[target]
    strict = (diff * diff).sum(-1) < cutoff * cutoff
    source, target = source[strict], target[strict]
    order = torch.argsort(target * n + source)
    return torch.stack([source[order], target[order]])


def _check_method(method: str) -> None:
    if method not in ("auto", "dense", "torch_cluster"):
        raise ValueError(f"unknown radius graph method {method!r}; "
                         "choose 'auto', 'dense' or 'torch_cluster'")
    if method == "torch_cluster" and not HAS_TORCH_CLUSTER:
        raise ImportError(
            "method='torch_cluster' needs the optional extra: "
            "install equivariant-backbones[cluster]"
        )


def _use_torch_cluster(batch: torch.Tensor, method: str) -> bool:
    if method != "auto":
        return method == "torch_cluster"
    if not HAS_TORCH_CLUSTER or batch.numel() == 0:
        return False
    return int(torch.bincount(batch).max()) >= TORCH_CLUSTER_MIN_ATOMS


def radius_graph(
    pos: torch.Tensor,
    batch: torch.Tensor,
    cutoff: float,
    loop: bool = False,
    method: str = "auto",
) -> torch.Tensor:
    """Every ordered pair (j, i) of atoms of the same molecule with |x_i - x_j| < cutoff (Å).

    Returns ``edge_index [2, E]`` with sources ``edge_index[0]`` (j) and targets
    ``edge_index[1]`` (i), sorted by target then source; no self-loops unless ``loop``.
    ``batch`` must be sorted (atoms of a molecule contiguous). No neighbour cap. The graph is
    built without gradients: compute edge vectors from ``pos[edge_index]`` so forces flow.
    ``method`` is ``"auto"`` (dense blocks, or torch-cluster where installed and faster),
    ``"dense"`` (NumPy on a CPU, torch otherwise) or ``"torch_cluster"``.
    """
    _check_method(method)
    if pos.shape[0] == 0:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    if method != "torch_cluster" and _numpy_applies(pos, batch):
        edges = _numpy_dense_pairs(pos, batch, cutoff, "loop" if loop else "graph",
                                   auto=method == "auto")
        if edges is not None:
            return torch.from_numpy(edges)
    with torch.no_grad():
        pos = pos.detach()
        if _use_torch_cluster(batch, method):
            return _torch_cluster_graph(pos, batch, cutoff, loop)
        target, source = _dense_pairs(pos, batch, cutoff, loop, upper_only=False)
        return torch.stack([source, target])


def radius_pairs(pos: torch.Tensor, batch: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Each unordered pair {i, j}, i < j, of atoms of the same molecule closer than
    ``cutoff`` (Å), once: ``pairs [2, P]`` with ``pairs[0] < pairs[1]``, sorted by row 0 then
    row 1. Networks whose edge filters depend only on the distance compute them once per pair
    (half the work of the directed graph). Built without gradients.
    """
    if pos.shape[0] == 0:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    if _numpy_applies(pos, batch):
        pairs = _numpy_dense_pairs(pos, batch, cutoff, "pairs")
        if pairs is not None:
            return torch.from_numpy(pairs)
    with torch.no_grad():
        return _dense_pairs(pos.detach(), batch, cutoff, loop=False, upper_only=True)
