"""The equivariant transformer of TorchMD-Net (Thölke & De Fabritiis, ICLR 2022).

Every atom carries invariant features ``x [F]`` and equivariant vector features
``v [3, F]`` (zero at the start). Each of the ``num_layers`` residual layers does:

* layer norm of ``x``; queries, keys and values by linear maps of ``x``;
* distance filters ``D_K = SiLU(W_K e(d))`` and ``D_V = SiLU(W_V e(d))`` from the exp-normal
  radial basis ``e(d)``, which act on the keys and the values of each edge;
* per head, the attention weight ``SiLU(sum(q_i * k_j * D_K)) * φ(d)`` (φ: cosine cutoff);
* the values times ``D_V`` split in three: ``s¹`` and ``s²`` build the vector message
  ``s¹ v_j + s² r̂_ij``, ``s³`` times the attention weight is the scalar message;
* the gated update: from ``o = W_O y`` and ``u¹, u², u³ = W_U v`` (no bias),
  ``Δx = (u¹ · u²) o² + o³`` and ``Δv = o¹ u³ + w`` (``w``: summed vector messages).

One deliberate difference from the reference implementation: the value filter ``D_V`` is
multiplied by the cosine cutoff, so that vector messages (and therefore energies and
forces) go to zero continuously as a neighbour leaves the cutoff sphere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import MAX_ATOMIC_NUMBER, Backbone, BackboneOutput, register_backbone
from .graph import radius_graph


def cosine_envelope(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(π d / cutoff) + 1) for d < cutoff (Å), else 0."""
    envelope = 0.5 * (torch.cos(distance * (math.pi / cutoff)) + 1.0)
    return envelope * (distance < cutoff).to(distance.dtype)


class ExpNormalBasis(nn.Module):
    """Exp-normal radial basis ``φ(d) exp(-β_k (exp(-α d) - μ_k)²)`` with trainable means
    ``μ_k`` and widths ``β_k``; ``α = 5 / cutoff`` with distances and cutoff in Å."""

    def __init__(self, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.alpha = 5.0 / cutoff
        start = math.exp(-self.alpha * cutoff)
        self.means = nn.Parameter(torch.linspace(start, 1.0, num_rbf))
        self.betas = nn.Parameter(torch.full((num_rbf,), (2.0 / num_rbf * (1.0 - start)) ** -2))

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        """Basis values ``[E, num_rbf]`` for distances ``[E]`` (Å)."""
        shifted = torch.exp(-self.alpha * distance).unsqueeze(-1) - self.means
        envelope = cosine_envelope(distance, self.cutoff).unsqueeze(-1)
        return envelope * torch.exp(-self.betas * shifted * shifted)


class NeighborEmbedding(nn.Module):
    """Adds to each atom's embedding a distance-filtered sum of its neighbours' embeddings."""

    def __init__(self, hidden_channels: int, num_rbf: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.distance_proj = nn.Linear(num_rbf, hidden_channels)
        self.combine = nn.Linear(2 * hidden_channels, hidden_channels)
        nn.init.xavier_uniform_(self.distance_proj.weight)
        nn.init.zeros_(self.distance_proj.bias)
        nn.init.xavier_uniform_(self.combine.weight)
        nn.init.zeros_(self.combine.bias)

    def forward(
        self, z: torch.Tensor, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
        rbf: torch.Tensor, envelope: torch.Tensor,
    ) -> torch.Tensor:
        """New atom features ``[N, F]`` from own features ``x`` and edge basis ``rbf``."""
        weight = self.distance_proj(rbf) * envelope.unsqueeze(-1)
        messages = self.embedding(z)[source] * weight
        summed = torch.zeros_like(x).index_add(0, target, messages)
        return self.combine(torch.cat([x, summed], dim=-1))


class EquivariantAttention(nn.Module):
    """One residual layer of the equivariant transformer (multi-head attention over edges)."""

    def __init__(self, hidden_channels: int, num_rbf: int, num_heads: int) -> None:
        super().__init__()
        if hidden_channels % num_heads != 0:
            raise ValueError(f"hidden_channels ({hidden_channels}) must be divisible by "
                             f"num_heads ({num_heads})")
        self.hidden_channels = hidden_channels
        self.num_heads = num_heads
        self.layer_norm = nn.LayerNorm(hidden_channels)
        self.q_proj = nn.Linear(hidden_channels, hidden_channels)
        self.k_proj = nn.Linear(hidden_channels, hidden_channels)
        self.v_proj = nn.Linear(hidden_channels, 3 * hidden_channels)
        self.o_proj = nn.Linear(hidden_channels, 3 * hidden_channels)
        self.vec_proj = nn.Linear(hidden_channels, 3 * hidden_channels, bias=False)
        self.dk_proj = nn.Linear(num_rbf, hidden_channels)
        self.dv_proj = nn.Linear(num_rbf, 3 * hidden_channels)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.o_proj, self.vec_proj,
                      self.dk_proj, self.dv_proj):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(
        self, x: torch.Tensor, vec: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
        rbf: torch.Tensor, envelope: torch.Tensor, direction: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated ``x [N, F]`` and ``vec [N, 3, F]``; ``direction [E, 3]`` is the unit vector
        from each target atom to its source neighbour."""
        n_atoms, channels = x.shape
        heads, per_head = self.num_heads, channels // self.num_heads
        h = self.layer_norm(x)
        query = self.q_proj(h).view(n_atoms, heads, per_head)
        key = self.k_proj(h).view(n_atoms, heads, per_head)
        value = self.v_proj(h)
        vec1, vec2, vec3 = self.vec_proj(vec).split(channels, dim=-1)
        vec_dot = (vec1 * vec2).sum(dim=1)

        key_filter = F.silu(self.dk_proj(rbf)).view(-1, heads, per_head)
        value_filter = F.silu(self.dv_proj(rbf)) * envelope.unsqueeze(-1)
        attention = F.silu((query[target] * key[source] * key_filter).sum(-1))
        attention = attention * envelope.unsqueeze(-1)
        filtered = value[source] * value_filter
        s1, s2, s3 = filtered.split(channels, dim=-1)
        scalar_messages = (s3.view(-1, heads, per_head) * attention.unsqueeze(-1)).reshape(-1,
                                                                                         channels)
        vector_messages = vec[source] * s1.unsqueeze(1) + direction.unsqueeze(-1) * s2.unsqueeze(1)
        y = torch.zeros_like(x).index_add(0, target, scalar_messages)
        w = torch.zeros_like(vec).index_add(0, target, vector_messages)

        o1, o2, o3 = self.o_proj(y).split(channels, dim=-1)
        dx = vec_dot * o2 + o3
        dvec = vec3 * o1.unsqueeze(1) + w
        return x + dx, vec + dvec


@register_backbone("et")
class EquivariantTransformer(Backbone):
    """TorchMD-Net's equivariant transformer on atomic numbers 0-118.

    Returns scalar features ``[N, hidden_channels]`` (invariant) and vector features
    ``[N, 3, hidden_channels]`` (rotate with the molecule, flip under reflection).
    Distances and the cutoff are in Å.
    """

    default_noise_head = "vector"

    def __init__(
        self,
        hidden_channels: int = 256,
        num_layers: int = 6,
        num_rbf: int = 32,
        num_heads: int = 8,
        cutoff: float = 5.0,
    ) -> None:
        super().__init__()
        self._record_hparams(locals())
        self.scalar_dim = hidden_channels
        self.vector_dim = hidden_channels
        self.cutoff = float(cutoff)
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.rbf = ExpNormalBasis(num_rbf, self.cutoff)
        self.neighbor_embedding = NeighborEmbedding(hidden_channels, num_rbf)
        self.layers = nn.ModuleList(
            EquivariantAttention(hidden_channels, num_rbf, num_heads) for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_channels)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        """Per-atom scalar and vector features for atomic numbers ``z``, positions ``pos`` (Å)."""
        source, target = radius_graph(pos, batch, self.cutoff)
        edge_vector = pos[source] - pos[target]
        distance = edge_vector.norm(dim=-1)
        direction = edge_vector / distance.unsqueeze(-1)
        envelope = cosine_envelope(distance, self.cutoff)
        rbf = self.rbf(distance)

        x = self.embedding(z)
        x = self.neighbor_embedding(z, x, source, target, rbf, envelope)
        vec = x.new_zeros(x.shape[0], 3, x.shape[1])
        for layer in self.layers:
            x, vec = layer(x, vec, source, target, rbf, envelope, direction)
        return BackboneOutput(scalar=self.out_norm(x), vector=vec)
