"""SchNet (Schütt et al., NeurIPS 2017; J. Chem. Phys. 148, 241722, 2018).

Continuous-filter convolutions: atom embeddings are refined by ``num_interactions`` residual
interaction blocks, each convolving neighbour features with a filter generated from the
interatomic distance (Gaussian radial basis -> dense -> shifted softplus -> dense, times a
cosine cutoff).

Two exact rearrangements make it faster than a straightforward implementation, without
changing the function it computes:

* the filter of a pair depends only on its distance, so it is computed once per unordered
  pair {i, j} and used for both messages j -> i and i -> j (half the filter-network work,
  which dominates the cost);
* the filter networks of all interaction blocks run as two batched matrix products over the
  stacked weights, before the first block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import MAX_ATOMIC_NUMBER, Backbone, BackboneOutput, register_backbone
from .graph import radius_pairs

_LOG2 = math.log(2.0)


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """ln(1 + e^x) - ln 2, SchNet's activation (zero at zero)."""
    return F.softplus(x) - _LOG2


def cosine_cutoff(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(pi d / cutoff) + 1) for d < cutoff, else 0; d and cutoff in Å."""
    envelope = 0.5 * (torch.cos(distance * (math.pi / cutoff)) + 1.0)
    return envelope * (distance < cutoff).to(distance.dtype)


class _Interaction(nn.Module):
    """Atom-wise part of one interaction block: in-projection before the convolution,
    then dense -> shifted softplus -> dense on the aggregated messages."""

    def __init__(self, hidden_channels: int, num_filters: int) -> None:
        super().__init__()
        self.to_filter_space = nn.Linear(hidden_channels, num_filters, bias=False)
        self.from_filter_space = nn.Linear(num_filters, hidden_channels)
        self.output = nn.Linear(hidden_channels, hidden_channels)
        for layer in (self.to_filter_space, self.from_filter_space, self.output):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(
        self, h: torch.Tensor, filters: torch.Tensor, first: torch.Tensor, second: torch.Tensor
    ) -> torch.Tensor:
        """Residual update of ``h [N, F]`` from pair filters ``[P, F_filter]``."""
        x = self.to_filter_space(h)
        aggregated = torch.zeros_like(x)
        aggregated = aggregated.index_add(0, first, x[second] * filters)
        aggregated = aggregated.index_add(0, second, x[first] * filters)
        update = self.output(shifted_softplus(self.from_filter_space(aggregated)))
        return h + update


@register_backbone("schnet")
class SchNet(Backbone):
    """SchNet on atomic numbers 0-118; scalar features ``[N, hidden_channels]``.

    Distances and the cutoff are in Å. Gaussian centres are spread evenly over
    [0, cutoff] with width equal to their spacing.
    """

    default_noise_head = "gradient"

    def __init__(
        self,
        hidden_channels: int = 256,
        num_filters: int = 256,
        num_interactions: int = 5,
        num_gaussians: int = 32,
        cutoff: float = 5.0,
    ) -> None:
        super().__init__()
        self._record_hparams(locals())
        if num_gaussians < 2:
            raise ValueError("num_gaussians must be at least 2")
        self.scalar_dim = hidden_channels
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        centres = torch.linspace(0.0, self.cutoff, num_gaussians)
        self.register_buffer("rbf_centres", centres)
        self.rbf_coefficient = -0.5 / float(centres[1] - centres[0]) ** 2
        # Filter networks of all blocks, stacked: [blocks, in, out] and [blocks, out].
        self.filter_weight1 = nn.Parameter(torch.empty(num_interactions, num_gaussians,
                                                       num_filters))
        self.filter_bias1 = nn.Parameter(torch.zeros(num_interactions, num_filters))
        self.filter_weight2 = nn.Parameter(torch.empty(num_interactions, num_filters,
                                                       num_filters))
        self.filter_bias2 = nn.Parameter(torch.zeros(num_interactions, num_filters))
        for block in range(num_interactions):
            nn.init.xavier_uniform_(self.filter_weight1.data[block])
            nn.init.xavier_uniform_(self.filter_weight2.data[block])
        self.interactions = nn.ModuleList(
            _Interaction(hidden_channels, num_filters) for _ in range(num_interactions)
        )

    def pair_filters(self, distance: torch.Tensor) -> torch.Tensor:
        """Filters ``[blocks, P, num_filters]`` of every block for pair distances ``[P]`` (Å),
        including the cosine cutoff."""
        rbf = torch.exp(self.rbf_coefficient * (distance.unsqueeze(-1) - self.rbf_centres) ** 2)
        blocks = self.filter_weight1.shape[0]
        hidden = torch.baddbmm(self.filter_bias1.unsqueeze(1),
                               rbf.unsqueeze(0).expand(blocks, -1, -1), self.filter_weight1)
        filters = torch.baddbmm(self.filter_bias2.unsqueeze(1), shifted_softplus(hidden),
                                self.filter_weight2)
        return filters * cosine_cutoff(distance, self.cutoff).unsqueeze(-1)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        """Per-atom invariant features for atomic numbers ``z``, positions ``pos`` (Å)."""
        first, second = radius_pairs(pos, batch, self.cutoff)
        distance = (pos[second] - pos[first]).norm(dim=-1)
        filters = self.pair_filters(distance)
        h = self.embedding(z)
        for block, interaction in enumerate(self.interactions):
            h = interaction(h, filters[block], first, second)
        return BackboneOutput(scalar=h)
