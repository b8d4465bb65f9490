"""EGNN, the E(n)-equivariant graph neural network (Satorras, Hoogeboom, Welling, ICML 2021).

Each layer computes an edge message ``m_ij = phi_e(h_i, h_j, |x_i - x_j|^2)``, gates it with
an attention weight ``sigmoid(phi_att(m_ij))``, moves every atom along the unit vectors
``(x_i - x_j) / |x_i - x_j|`` scaled by ``phi_x(m_ij)`` (mean aggregation), and updates the
features residually, ``h_i + phi_h(h_i, sum_j m_ij)``.

For a potential the network must be continuous as atoms enter or leave the cutoff sphere, so
every edge is weighted by a cosine envelope ``c_ij`` of its *input* distance (the graph is
fixed by the input positions), and the coordinate mean divides by the smooth neighbour count
``1 + sum_j c_ij`` instead of the integer degree.

The first edge layer acts on the concatenation [h_i, h_j, d^2]; it is evaluated as
``A h_i + B h_j + w d^2`` with ``A h`` and ``B h`` computed once per atom rather than once per
edge (the same function, less work).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import MAX_ATOMIC_NUMBER, Backbone, BackboneOutput, register_backbone
from .graph import radius_graph
from .schnet import cosine_cutoff

_UNIT_VECTOR_EPS = 1e-8


class _EGNNLayer(nn.Module):
    """One E(n)-equivariant layer with attention gate and residual feature update."""

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.edge_target = nn.Linear(hidden_channels, hidden_channels)
        self.edge_source = nn.Linear(hidden_channels, hidden_channels, bias=False)
        self.edge_distance = nn.Parameter(torch.zeros(hidden_channels))
        nn.init.normal_(self.edge_distance, std=hidden_channels ** -0.5)
        self.edge_out = nn.Linear(hidden_channels, hidden_channels)
        self.attention = nn.Linear(hidden_channels, 1)
        self.coord_mlp = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels), nn.SiLU(),
            nn.Linear(hidden_channels, 1, bias=False),
        )
        # Small initial coordinate steps, as in the reference EGNN, keep early training stable.
        nn.init.xavier_uniform_(self.coord_mlp[2].weight, gain=0.001)
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden_channels, hidden_channels), nn.SiLU(),
            nn.Linear(hidden_channels, hidden_channels),
        )
        self.act = nn.SiLU()

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
        envelope: torch.Tensor,
        coord_norm: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated features ``[N, F]`` and positions ``[N, 3]`` (Å)."""
        diff = x[target] - x[source]
        dist_sq = (diff * diff).sum(-1, keepdim=True)
        pre = self.edge_target(h)[target] + self.edge_source(h)[source]
        message = self.act(self.edge_out(self.act(pre + dist_sq * self.edge_distance)))
        message = message * (torch.sigmoid(self.attention(message)) * envelope)
        unit = diff / (dist_sq.sqrt() + _UNIT_VECTOR_EPS)
        step = unit * self.coord_mlp(message)
        x = x + torch.zeros_like(x).index_add(0, target, step) / coord_norm
        aggregated = torch.zeros_like(h).index_add(0, target, message)
        h = h + self.node_mlp(torch.cat([h, aggregated], dim=-1))
        return h, x


@register_backbone("egnn")
class EGNN(Backbone):
    """EGNN on atomic numbers 0-118: scalar features ``[N, hidden_channels]`` and updated
    positions ``[N, 3]`` (Å); cutoff in Å."""

    default_noise_head = "displacement"
    outputs_position = True

    def __init__(
        self,
        hidden_channels: int = 256,
        num_layers: int = 5,
        cutoff: float = 5.0,
    ) -> None:
        super().__init__()
        self._record_hparams(locals())
        self.scalar_dim = hidden_channels
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.layers = nn.ModuleList(_EGNNLayer(hidden_channels) for _ in range(num_layers))

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        """Per-atom invariant features and equivariantly updated positions (Å)."""
        source, target = radius_graph(pos, batch, self.cutoff)
        distance = (pos[target] - pos[source]).norm(dim=-1)
        envelope = cosine_cutoff(distance, self.cutoff).unsqueeze(-1)
        coord_norm = 1.0 + torch.zeros_like(pos[:, :1]).index_add(0, target, envelope)
        h = self.embedding(z)
        x = pos
        for layer in self.layers:
            h, x = layer(h, x, source, target, envelope, coord_norm)
        return BackboneOutput(scalar=h, position=x)
