"""An SE(3)-Transformer (Fuchs, Worrall, Fischer & Welling, NeurIPS 2020) built on e3nn.

Atoms carry ``channels`` features of every degree l = 0..max_degree (e3nn irreps
``8x0e+8x1o+8x2e+8x3o`` by default). Each of the ``num_layers`` pre-norm residual blocks does:

* equivariant layer norm, then graph self-attention: the query is an equivariant linear map
  of the atom's own features; keys and values of the edge j -> i are tensor products of the
  neighbour's features with the spherical harmonics Y(r̂_ij) of the edge direction, weighted
  per path and per channel pair by radial networks of the distance (the SE(3)-Transformer's
  equivariant kernels, one e3nn tensor product with per-edge weights for keys and values
  together);
* per head, the logit is the invariant inner product of query and key over all degrees;
  the weights are ``φ(d_ij) exp(logit) / Σ_k φ(d_ik) exp(logit_k)`` with the cosine cutoff
  φ, and the values are scaled by φ too, so that features are continuous as atoms cross the
  cutoff sphere; the weighted sum of values is mapped back by an equivariant linear layer;
* equivariant layer norm, then a gated feed-forward block (e3nn ``Gate``: SiLU on scalars,
  sigmoid gates on the degree > 0 channels).

Parity: features of degree l have parity (-1)^l, the parity of Y^l, so the network is
equivariant under rotations *and* reflections (E(3)), as the energy of a molecule is. The
paths of the original that need pseudo-tensors (l1 + l2 + l_out odd, e.g. the cross product
1 x 1 -> 1) are therefore left out; a reflection-invariant potential could not use their
outputs in the energy anyway without pairing them again.

Outputs: scalar features ``[N, scalar_channels]``, an invariant projection of the final
features (a linear map of the degree-0 channels plus learned inner products of the channels
of each degree), and vector features ``[N, 3, channels]`` from the degree-1 channels (e3nn's
l = 1 basis is Cartesian x, y, z). Everything is smooth in the positions, so −∂E/∂x is
exact, through the spherical harmonics and the radial functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from e3nn import o3
from e3nn.nn import Gate
from torch import nn

from .base import MAX_ATOMIC_NUMBER, Backbone, BackboneOutput, register_backbone
from .graph import radius_graph


def cosine_envelope(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(π d / cutoff) + 1) for d < cutoff (Å), else 0."""
    envelope = 0.5 * (torch.cos(distance * (math.pi / cutoff)) + 1.0)
    return envelope * (distance < cutoff).to(distance.dtype)


def natural_irreps(channels: int, max_degree: int) -> o3.Irreps:
    """``channels`` copies of each degree 0..max_degree with parity (-1)^l."""
    return o3.Irreps([(channels, (degree, (-1) ** degree)) for degree in range(max_degree + 1)])


#: (start, multiplicity, 2l + 1, l) of each irrep of a feature vector, as plain integers
Layout = tuple[tuple[int, int, int, int], ...]


def irreps_layout(irreps: o3.Irreps) -> Layout:
    """Where each irrep of ``irreps`` sits in a flat feature vector (e3nn's mul-major order)."""
    return tuple((s.start, mul, ir.dim, ir.l)
                 for s, (mul, ir) in zip(irreps.slices(), irreps, strict=True))


def _blocks(x: torch.Tensor, layout: Layout) -> list[torch.Tensor]:
    """Split ``[..., dim]`` into one ``[..., mul, 2l + 1]`` tensor per irrep."""
    return [x[..., start:start + mul * dim].reshape(*x.shape[:-1], mul, dim)
            for start, mul, dim, _ in layout]


class EquivariantLayerNorm(nn.Module):
    """Layer norm that commutes with rotations: scalars are standardised over channels;
    each degree l > 0 is divided by the root mean square (over channels) of its norms.
    Learned per-channel scales (and a shift for scalars)."""

    def __init__(self, irreps: o3.Irreps, eps: float = 1e-5) -> None:
        super().__init__()
        self.layout = irreps_layout(o3.Irreps(irreps))
        self.eps = eps
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(mul)) for _, mul, _, _ in
                                       self.layout)
        self.shift = nn.Parameter(torch.zeros(sum(mul for _, mul, _, degree in self.layout
                                                  if degree == 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features of the same irreps, shape ``[N, irreps.dim]``."""
        out = []
        shift_start = 0
        for block, (_, mul, dim, degree), scale in zip(_blocks(x, self.layout), self.layout,
                                                        self.scales, strict=True):
            if degree == 0:
                centred = block - block.mean(dim=-2, keepdim=True)
                variance = centred.pow(2).mean(dim=-2, keepdim=True)
                normed = centred * torch.rsqrt(variance + self.eps) * scale.unsqueeze(-1)
                normed = normed + self.shift[shift_start:shift_start + mul].unsqueeze(-1)
                shift_start += mul
            else:
                mean_square = block.pow(2).sum(dim=-1, keepdim=True).mean(dim=-2, keepdim=True)
                normed = block * torch.rsqrt(mean_square + self.eps) * scale.unsqueeze(-1)
            out.append(normed.reshape(*x.shape[:-1], mul * dim))
        return torch.cat(out, dim=-1)


class RadialNetwork(nn.Module):
    """MLP from the radial basis ``[E, num_basis]`` to per-edge tensor-product weights."""

    def __init__(self, num_basis: int, hidden: int, num_weights: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(num_basis, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, num_weights),
        )

    def forward(self, basis: torch.Tensor) -> torch.Tensor:
        """Weights ``[E, num_weights]``."""
        return self.layers(basis)


class SE3Attention(nn.Module):
    """Pre-norm residual graph self-attention with equivariant keys and values."""

    def __init__(
        self, irreps_in: o3.Irreps, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps,
        num_heads: int, num_basis: int, radial_hidden: int,
    ) -> None:
        super().__init__()
        self.layout = irreps_layout(irreps_hidden)
        self.hidden_dim = irreps_hidden.dim
        self.num_heads = num_heads
        self.norm = EquivariantLayerNorm(irreps_in)
        self.query = o3.Linear(irreps_in, irreps_hidden)
        # Keys then values, each with the hidden irreps, from one tensor product.
        self.key_value = o3.FullyConnectedTensorProduct(
            irreps_in, irreps_sh, irreps_hidden + irreps_hidden, shared_weights=False,
            internal_weights=False,
        )
        self.radial = RadialNetwork(num_basis, radial_hidden, self.key_value.weight_numel)
        self.output = o3.Linear(irreps_hidden, irreps_hidden)
        self.skip = None if irreps_in == irreps_hidden else o3.Linear(irreps_in, irreps_hidden)
        self.logit_scale = (irreps_hidden.dim / num_heads) ** -0.5

    def _heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[..., hidden.dim]`` as per-degree ``[..., heads, mul / heads, 2l + 1]`` blocks."""
        return [block.reshape(*block.shape[:-2], self.num_heads, mul // self.num_heads, dim)
                for block, (_, mul, dim, _) in zip(_blocks(x, self.layout), self.layout,
                                                   strict=True)]

    def forward(
        self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor, sh: torch.Tensor,
        basis: torch.Tensor, envelope: torch.Tensor,
    ) -> torch.Tensor:
        """Updated features ``[N, hidden.dim]``."""
        h = self.norm(x)
        key_value = self.key_value(h[source], sh, self.radial(basis))
        key, value = key_value.split(self.hidden_dim, dim=-1)
        query = self.query(h)[target]
        logits = sum((q * k).sum(dim=(-2, -1))
                     for q, k in zip(self._heads(query), self._heads(key), strict=True))
        logits = logits * self.logit_scale  # [E, heads]

        n_atoms = x.shape[0]
        with torch.no_grad():
            largest = logits.new_full((n_atoms, self.num_heads), -torch.inf).scatter_reduce(
                0, target.unsqueeze(-1).expand_as(logits), logits, "amax")
        unnormalised = torch.exp(logits - largest[target]) * envelope.unsqueeze(-1)
        total = torch.zeros_like(largest).index_add(0, target, unnormalised)
        weight = unnormalised / total.clamp_min(torch.finfo(total.dtype).tiny)[target]
        weight = weight * envelope.unsqueeze(-1)  # values vanish at the cutoff too

        messages = torch.cat([
            (block * weight[:, :, None, None]).flatten(start_dim=1)
            for block in self._heads(value)
        ], dim=-1)
        aggregated = x.new_zeros(n_atoms, self.hidden_dim).index_add(0, target, messages)
        residual = x if self.skip is None else self.skip(x)
        return residual + self.output(aggregated)


class GatedFeedForward(nn.Module):
    """Pre-norm residual block: equivariant linear -> e3nn Gate -> equivariant linear."""

    def __init__(self, irreps: o3.Irreps) -> None:
        super().__init__()
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l > 0])
        self.norm = EquivariantLayerNorm(irreps)
        self.gate = Gate(scalars, [F.silu], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
        self.expand = o3.Linear(irreps, self.gate.irreps_in)
        self.contract = o3.Linear(self.gate.irreps_out, irreps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Updated features of the same irreps."""
        return x + self.contract(self.gate(self.expand(self.norm(x))))


@register_backbone("se3t")
class SE3Transformer(Backbone):
    """SE(3)-Transformer on atomic numbers 0-118 (distances and cutoff in Å).

    Returns invariant scalar features ``[N, scalar_channels]`` and equivariant vector
    features ``[N, 3, channels]`` (the degree-1 channels).
    """

    default_noise_head = "gradient"

    def __init__(
        self,
        channels: int = 8,
        max_degree: int = 3,
        num_layers: int = 3,
        num_heads: int = 2,
        scalar_channels: int = 32,
        num_basis: int = 16,
        radial_hidden: int = 32,
        cutoff: float = 5.0,
    ) -> None:
        super().__init__()
        self._record_hparams(locals())
        if channels % num_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if max_degree < 1:
            raise ValueError("max_degree must be at least 1 (vector features are degree 1)")
        self.scalar_dim = scalar_channels
        self.vector_dim = channels
        self.cutoff = float(cutoff)
        self.irreps_hidden = natural_irreps(channels, max_degree)
        self.irreps_sh = o3.Irreps.spherical_harmonics(max_degree)
        irreps_embedding = o3.Irreps(f"{channels}x0e")
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True,
                                                         normalization="component")

        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, channels)
        self.register_buffer("basis_centres", torch.linspace(0.0, self.cutoff, num_basis))
        self.basis_width = self.cutoff / (num_basis - 1)
        self.attention = nn.ModuleList(
            SE3Attention(irreps_embedding if layer == 0 else self.irreps_hidden,
                         self.irreps_hidden, self.irreps_sh, num_heads, num_basis, radial_hidden)
            for layer in range(num_layers)
        )
        self.feed_forward = nn.ModuleList(
            GatedFeedForward(self.irreps_hidden) for _ in range(num_layers)
        )
        self.final_norm = EquivariantLayerNorm(self.irreps_hidden)
        irreps_scalar_out = o3.Irreps(f"{scalar_channels}x0e")
        self.scalar_linear = o3.Linear(self.irreps_hidden, irreps_scalar_out)
        self.scalar_products = o3.FullyConnectedTensorProduct(
            self.irreps_hidden, self.irreps_hidden, irreps_scalar_out
        )
        start, _, _, _ = irreps_layout(self.irreps_hidden)[1]
        self._vector_slice = slice(start, start + 3 * channels)
        self._wigner_buffers = [
            (module, name, tuple(int(part) for part in name.split("_")[-3:]))
            for module in self.modules() for name in module._buffers if name.startswith("_w3j_")
        ]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
               ) -> SE3Transformer:
        """Convert as ``nn.Module`` does, then recompute e3nn's Wigner 3j constants in the new
        dtype: cast up from float32 they would break float64 equivariance at the 1e-9 level."""
        super()._apply(fn, recurse)
        for module, name, degrees in self._wigner_buffers:
            current = module._buffers[name]
            module._buffers[name] = o3.wigner_3j(*degrees, dtype=current.dtype,
                                                 device=current.device)
        return self

    def radial_basis(self, distance: torch.Tensor) -> torch.Tensor:
        """Gaussian basis ``[E, num_basis]`` on [0, cutoff] for distances ``[E]`` (Å)."""
        offset = (distance.unsqueeze(-1) - self.basis_centres) / self.basis_width
        return torch.exp(-0.5 * offset * offset)

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> BackboneOutput:
        """Per-atom invariant and vector features for atomic numbers ``z``, positions ``pos``
        (Å)."""
        source, target = radius_graph(pos, batch, self.cutoff)
        edge_vector = pos[source] - pos[target]
        distance = edge_vector.norm(dim=-1)
        sh = self.spherical_harmonics(edge_vector)
        basis = self.radial_basis(distance)
        envelope = cosine_envelope(distance, self.cutoff)

        x = self.embedding(z)
        for attention, feed_forward in zip(self.attention, self.feed_forward, strict=True):
            x = attention(x, source, target, sh, basis, envelope)
            x = feed_forward(x)
        x = self.final_norm(x)
        scalar = self.scalar_linear(x) + self.scalar_products(x, x)
        vector = x[:, self._vector_slice].reshape(x.shape[0], self.vector_dim, 3)
        vector = vector.transpose(1, 2)
        return BackboneOutput(scalar=scalar, vector=vector)
