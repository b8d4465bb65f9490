"""Exact radius graphs for batches of molecules."""

from __future__ import annotations

import torch


def radius_graph(
    pos: torch.Tensor, batch: torch.Tensor, cutoff: float, loop: bool = False
) -> torch.Tensor:
    """Every ordered pair (j, i) of atoms of the same molecule with |x_i - x_j| < cutoff.

    Returns ``edge_index [2, E]`` with sources ``edge_index[0]`` (j) and targets
    ``edge_index[1]`` (i), sorted by target then source; no self-loops unless ``loop``.
    ``batch`` must be sorted (atoms of a molecule contiguous). No neighbour cap.
    """
    n = pos.shape[0]
    with torch.no_grad():
        same = batch.unsqueeze(0) == batch.unsqueeze(1)
        dist = torch.cdist(pos.detach(), pos.detach())
        mask = same & (dist < cutoff)
        if not loop:
            mask.fill_diagonal_(False)
        target, source = mask.nonzero(as_tuple=True)
    del n
    return torch.stack([source, target])
