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

``num_rbf > 0`` is a switch past the paper: the edge sees the distance expanded in
``num_rbf`` Gaussians (centres evenly over [0, cutoff], width their spacing, as in SchNet)
instead of the raw d^2, ``A h_i + B h_j + W rbf(d)``. With raw d^2 the first edge layer is
linear in d^2, so the 0.01-0.1 Å bond-length changes of an MD trajectory barely move an
untrained network's features (``benchmarks/feature_sensitivity.py``) and a small EGNN
does not fit rMD17 energies even on its training set; a radial basis gives each distance
shell its own weights, as every other backbone here has.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import MAX_ATOMIC_NUMBER, Backbone, BackboneOutput, register_backbone
from .graph import radius_graph
from .schnet import cosine_cutoff

_UNIT_VECTOR_EPS = 1e-8


class _GaussianBasis(nn.Module):
    """``num_rbf`` Gaussians of a distance (Å), centres evenly over [0, cutoff], width equal
    to their spacing."""

    def __init__(self, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        if num_rbf < 2:
            raise ValueError(f"num_rbf must be 0 (raw d^2, the paper's EGNN) or at least 2, "
                             f"got {num_rbf}")
        centres = torch.linspace(0.0, cutoff, num_rbf)
        self.register_buffer("centres", centres)
        self.coefficient = -0.5 / float(centres[1] - centres[0]) ** 2

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        """``[E, num_rbf]`` for distances ``[E]``."""
        return torch.exp(self.coefficient * (distance.unsqueeze(-1) - self.centres) ** 2)


class _EGNNLayer(nn.Module):
    """One E(n)-equivariant layer with attention gate and residual feature update."""

    def __init__(self, hidden_channels: int, num_rbf: int = 0) -> None:
        super().__init__()
        self.edge_target = nn.Linear(hidden_channels, hidden_channels)
        self.edge_source = nn.Linear(hidden_channels, hidden_channels, bias=False)
        if num_rbf:
            # the distance's Gaussian expansion, projected: one weight vector per shell. Unit
            # normal weights make the distance's term as large as the features' terms (a few
            # Gaussians are near 1 at any distance); with PyTorch's default, uniform within
            # ±1/sqrt(num_rbf), a 64 x 3 EGNN still did not fit malonaldehyde's training
            # energies (a probe).
            self.edge_rbf = nn.Linear(num_rbf, hidden_channels, bias=False)
            nn.init.normal_(self.edge_rbf.weight, std=1.0)
        else:
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
        rbf: _GaussianBasis | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated features ``[N, F]`` and positions ``[N, 3]`` (Å); ``rbf`` expands the
        distances when the layer was built with ``num_rbf``."""
        diff = x[target] - x[source]
        dist_sq = (diff * diff).sum(-1, keepdim=True)
        pre = self.edge_target(h)[target] + self.edge_source(h)[source]
        dist = dist_sq.sqrt()
        if rbf is None:
            pre = pre + dist_sq * self.edge_distance
        else:
            pre = pre + self.edge_rbf(rbf(dist.squeeze(-1)))
        message = self.act(self.edge_out(self.act(pre)))
        message = message * (torch.sigmoid(self.attention(message)) * envelope)
        unit = diff / (dist + _UNIT_VECTOR_EPS)
        step = unit * self.coord_mlp(message)
        x = x + torch.zeros_like(x).index_add(0, target, step) / coord_norm
        aggregated = torch.zeros_like(h).index_add(0, target, message)
        h = h + self.node_mlp(torch.cat([h, aggregated], dim=-1))
        return h, x


@register_backbone("egnn")
class EGNN(Backbone):
    """EGNN on atomic numbers 0-118: scalar features ``[N, hidden_channels]`` and updated
    positions ``[N, 3]`` (Å); cutoff in Å. ``num_rbf``: 0 feeds each edge the raw squared
    distance (the paper's EGNN); N >= 2 a Gaussian expansion of the distance in N functions."""

    default_noise_head = "displacement"
    outputs_position = True

    def __init__(
        self,
        hidden_channels: int = 256,
        num_layers: int = 5,
        cutoff: float = 5.0,
        num_rbf: int = 0,
    ) -> None:
        super().__init__()
        self._record_hparams(locals())
        self.scalar_dim = hidden_channels
        self.cutoff = float(cutoff)
        self.rbf = _GaussianBasis(num_rbf, self.cutoff) if num_rbf else None
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.layers = nn.ModuleList(
            _EGNNLayer(hidden_channels, num_rbf) for _ in range(num_layers)
        )

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        """Per-atom invariant features and equivariantly updated positions (Å)."""
        source, target = radius_graph(pos, batch, self.cutoff)
        distance = (pos[target] - pos[source]).norm(dim=-1)
        envelope = cosine_cutoff(distance, self.cutoff).unsqueeze(-1)
        coord_norm = 1.0 + torch.zeros_like(pos[:, :1]).index_add(0, target, envelope)
        h = self.embedding(z)
        x = pos
        for layer in self.layers:
            h, x = layer(h, x, source, target, envelope, coord_norm, self.rbf)
        return BackboneOutput(scalar=h, position=x)
