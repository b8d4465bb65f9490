"""An SE(3)-Transformer (Fuchs, Worrall, Fischer & Welling, NeurIPS 2020) built on e3nn.

Atoms carry ``channels`` features of every degree l = 0..max_degree (e3nn irreps
``8x0e+8x1o+8x2e+8x3o`` by default). Each of the ``num_layers`` pre-norm residual blocks does:

* equivariant layer norm, then graph self-attention: the query is an equivariant linear map
  of the atom's own features; keys and values of the edge j -> i are tensor products of the
  neighbour's features with the spherical harmonics Y(r̂_ij) of the edge direction, weighted
  per path and per channel pair by radial networks of the distance (the SE(3)-Transformer's
  equivariant kernels, their radial MLPs with LayerNorm as in the original; keys and values
  together, see :class:`EquivariantKernel`);
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

The kernel contracts with e3nn's Wigner 3j symbols itself rather than through
``o3.FullyConnectedTensorProduct``: with per-edge weights, e3nn slices one large weight
tensor per path, and autograd materialises a full-size zero tensor for every slice; with
double backward (forces in the loss) that made a training step about 9x slower on a CPU.
e3nn provides the irreps, spherical harmonics, Wigner 3j symbols, equivariant linear layers
and the gate.
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


class ExactWigner3j(nn.Module):
    """Module whose Wigner 3j buffers (its own and its submodules', e3nn's included: any
    buffer named ``_w3j_{l1}_{l2}_{l3}``) are recomputed in the new dtype whenever it is
    converted. Cast up from float32 they would break float64 equivariance at the 1e-9 level."""

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
               ) -> ExactWigner3j:
        super()._apply(fn, recurse)
        for module in self.modules():
            for name, current in module._buffers.items():
                if name.startswith("_w3j_") and current is not None:
                    degrees = (int(part) for part in name.split("_")[-3:])
                    module._buffers[name] = o3.wigner_3j(*degrees, dtype=current.dtype,
                                                         device=current.device)
        return self


class EquivariantKernel(ExactWigner3j):
    """The SE(3)-Transformer's equivariant edge kernel, for keys and values at once.

    For an edge with neighbour features ``x^{l1}_u`` and spherical harmonics ``Y^{l2}`` of its
    direction, output channel ``w`` of degree ``l3`` is
    ``Σ_{l1, l2, u} R^{l1 l2 l3}_{uw}(d) [x^{l1}_u ⊗ Y^{l2}]^{l3}`` (Clebsch-Gordan
    projection), with the radial weights ``R`` from an MLP of the radial basis. Only paths
    with l1 + l2 + l3 even are kept (natural parity). The couplings of one (l1, l2) pair to
    all l3 are applied as one matrix product, and all paths into one l3 as one batched matrix
    product, so that no per-path slices of a large weight tensor appear in the autograd graph.
    """

    def __init__(self, in_muls: list[int], max_degree: int, out_mul: int, num_basis: int,
                 radial_hidden: int, radial_norm: bool = True) -> None:
        super().__init__()
        self.out_mul = out_mul
        self.max_degree = max_degree
        #: (l1, l2, (l3, ...)) for every pair of input and harmonic degree with a valid path
        self.pairs: list[tuple[int, int, tuple[int, ...]]] = []
        fan_in = [0] * (max_degree + 1)
        for l1, mul in enumerate(in_muls):
            for l2 in range(max_degree + 1):
                outs = tuple(l3 for l3 in range(abs(l1 - l2), min(l1 + l2, max_degree) + 1)
                             if (l1 + l2 + l3) % 2 == 0)
                if outs:
                    self.pairs.append((l1, l2, outs))
                for l3 in outs:
                    fan_in[l3] += mul
                    self.register_buffer(f"_w3j_{l1}_{l2}_{l3}", o3.wigner_3j(l1, l2, l3),
                                         persistent=False)
        self.fan_in = fan_in
        # the original's radial network normalises each hidden layer (LayerNorm); without it
        # PyTorch's default initialisation shrinks the radial weights layer by layer and a
        # small network barely fits energies (benchmarks/fit_capacity.py; SiLU instead of the
        # original's ReLU: forces in the loss need a smooth second derivative). Without it the
        # layers keep the indices that checkpoints from before have.
        layers: list[nn.Module] = []
        for width_in in (num_basis, radial_hidden):
            layers.append(nn.Linear(width_in, radial_hidden))
            if radial_norm:
                layers.append(nn.LayerNorm(radial_hidden))
            layers.append(nn.SiLU())
        self.radial = nn.Sequential(*layers)
        self.radial_out = nn.ModuleList(nn.Linear(radial_hidden, fan * out_mul)
                                        for fan in fan_in)

    def forward(self, x_blocks: list[torch.Tensor], sh_blocks: list[torch.Tensor],
                basis: torch.Tensor) -> list[torch.Tensor]:
        """Per-degree outputs ``[E, out_mul, 2 l3 + 1]`` from neighbour features ``[E, mul,
        2 l1 + 1]`` per degree, harmonics ``[E, 2 l2 + 1]`` per degree and basis ``[E, B]``."""
        projected: list[list[torch.Tensor]] = [[] for _ in range(self.max_degree + 1)]
        for l1, l2, outs in self.pairs:
            outer = (x_blocks[l1].unsqueeze(-1) * sh_blocks[l2][:, None, None, :]).flatten(-2)
            # sqrt(2 l3 + 1): each output component has unit variance for unit-variance inputs
            coupling = torch.cat([getattr(self, f"_w3j_{l1}_{l2}_{l3}").flatten(0, 1)
                                  * math.sqrt(2 * l3 + 1) for l3 in outs], dim=1)
            parts = (outer @ coupling).split([2 * l3 + 1 for l3 in outs], dim=-1)
            for l3, part in zip(outs, parts, strict=True):
                projected[l3].append(part)
        hidden = self.radial(basis)
        out = []
        for l3, head in enumerate(self.radial_out):
            inputs = torch.cat(projected[l3], dim=1)  # [E, fan_in, 2 l3 + 1]
            weights = head(hidden).view(-1, self.fan_in[l3], self.out_mul)
            out.append(torch.bmm(weights.transpose(1, 2), inputs) / math.sqrt(self.fan_in[l3]))
        return out


class SE3Attention(nn.Module):
    """Pre-norm residual graph self-attention with equivariant keys and values."""

    def __init__(
        self, irreps_in: o3.Irreps, irreps_hidden: o3.Irreps, num_heads: int, num_basis: int,
        radial_hidden: int, radial_norm: bool = True,
    ) -> None:
        super().__init__()
        self.in_layout = irreps_layout(irreps_in)
        self.layout = irreps_layout(irreps_hidden)
        self.hidden_dim = irreps_hidden.dim
        self.num_heads = num_heads
        self.norm = EquivariantLayerNorm(irreps_in)
        self.query = o3.Linear(irreps_in, irreps_hidden)
        channels = [mul for _, mul, _, _ in self.layout]
        if len(set(channels)) != 1:
            raise ValueError("SE3Attention needs the same number of channels in every degree")
        self.channels = channels[0]
        # Keys are the first half of the kernel's output channels, values the second.
        self.kernel = EquivariantKernel([mul for _, mul, _, _ in self.in_layout],
                                        irreps_hidden.lmax, 2 * self.channels, num_basis,
                                        radial_hidden, radial_norm)
        self.output = o3.Linear(irreps_hidden, irreps_hidden)
        self.skip = None if irreps_in == irreps_hidden else o3.Linear(irreps_in, irreps_hidden)
        self.logit_scale = (irreps_hidden.dim / num_heads) ** -0.5

    def _heads(self, block: torch.Tensor) -> torch.Tensor:
        """``[E, channels, 2l + 1]`` as ``[E, heads, channels / heads, 2l + 1]``."""
        return block.reshape(block.shape[0], self.num_heads, self.channels // self.num_heads,
                             block.shape[-1])

    def forward(
        self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
        sh_blocks: list[torch.Tensor], basis: torch.Tensor, envelope: torch.Tensor,
    ) -> torch.Tensor:
        """Updated features ``[N, hidden.dim]``."""
        h = self.norm(x)
        neighbours = [block[source] for block in _blocks(h, self.in_layout)]
        key_value = self.kernel(neighbours, sh_blocks, basis)
        query = [block[target] for block in _blocks(self.query(h), self.layout)]
        logits = sum((self._heads(q) * self._heads(kv[:, :self.channels])).sum(dim=(-2, -1))
                     for q, kv in zip(query, key_value, strict=True))
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
            (self._heads(kv[:, self.channels:]) * weight[:, :, None, None]).flatten(start_dim=1)
            for kv in key_value
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
class SE3Transformer(ExactWigner3j, Backbone):
    """SE(3)-Transformer on atomic numbers 0-118 (distances and cutoff in Å).

    Returns invariant scalar features ``[N, scalar_channels]`` and equivariant vector
    features ``[N, 3, channels]`` (the degree-1 channels). ``radial_norm``: LayerNorm on the
    hidden layers of the radial networks, as in the original (``False``: plain MLPs, this
    package's SE(3)-Transformer before it had the switch).
    """

    default_noise_head = "gradient"
    #: checkpoints written before ``radial_norm`` existed hold radial networks without it
    hparams_added_later = {"radial_norm": False}

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
        radial_norm: bool = True,
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
        self.sh_layout = irreps_layout(self.irreps_sh)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True,
                                                         normalization="component")

        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, channels)
        self.register_buffer("basis_centres", torch.linspace(0.0, self.cutoff, num_basis))
        self.basis_width = self.cutoff / (num_basis - 1)
        self.attention = nn.ModuleList(
            SE3Attention(irreps_embedding if layer == 0 else self.irreps_hidden,
                         self.irreps_hidden, num_heads, num_basis, radial_hidden, radial_norm)
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
        sh_blocks = [block.squeeze(-2) for block in
                     _blocks(self.spherical_harmonics(edge_vector), self.sh_layout)]
        basis = self.radial_basis(distance)
        envelope = cosine_envelope(distance, self.cutoff)

        x = self.embedding(z)
        for attention, feed_forward in zip(self.attention, self.feed_forward, strict=True):
            x = attention(x, source, target, sh_blocks, basis, envelope)
            x = feed_forward(x)
        x = self.final_norm(x)
        scalar = self.scalar_linear(x) + self.scalar_products(x, x)
        vector = x[:, self._vector_slice].reshape(x.shape[0], self.vector_dim, 3)
        vector = vector.transpose(1, 2)
        return BackboneOutput(scalar=scalar, vector=vector)
