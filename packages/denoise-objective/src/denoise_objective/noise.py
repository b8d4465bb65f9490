"""Gaussian perturbation of atomic positions (Å).

Two sources of noise:

* :func:`perturb` draws from an explicit ``torch.Generator``, for anyone's training loop;
* :func:`conformation_noise` is a counter-based draw: the noise of an atom depends only on
  ``(seed, stream, conformation id, atom index)``, never on which batch, device or process
  the conformation lands in. The pretraining engine uses it with a fixed stream for
  validation (identical noise every epoch and every run) and one stream per epoch for
  training (fresh noise each time a conformation is seen, reproducible on resume and under
  data parallelism).
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B9


def perturb(
    pos: torch.Tensor, sigma_angstrom: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add N(0, σ²) noise to every coordinate of ``pos [N, 3]`` (Å); σ in Å.

    Returns ``(noisy_pos, noise)``, both ``[N, 3]`` in Å. The noise is drawn on the
    generator's device and moved to ``pos``'s device.
    """
    check_sigma(sigma_angstrom)
    device = generator.device if generator is not None else pos.device
    noise = torch.randn(pos.shape, generator=generator, device=device, dtype=pos.dtype)
    noise = noise.to(pos.device) * sigma_angstrom
    return pos + noise, noise


def check_sigma(sigma_angstrom: float) -> None:
    """Raise ValueError unless σ (Å) is a finite positive number."""
    if not (isinstance(sigma_angstrom, int | float) and math.isfinite(sigma_angstrom)
            and sigma_angstrom > 0):
        raise ValueError(f"noise sigma must be a positive number of Å, got {sigma_angstrom!r}")


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``x * constant mod 2^32`` for int64 ``x`` in [0, 2^32), without int64 overflow."""
    low = x & 0xFFFF
    high = x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (xorshift-multiply, two rounds)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def conformation_noise(
    conf_id: torch.Tensor,
    batch: torch.Tensor,
    sigma_angstrom: float,
    *,
    seed: int,
    stream: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """N(0, σ²) noise ``[N, 3]`` (Å) for the atoms of a batch, a pure function of
    ``(seed, stream, conf_id[batch[i]], index of atom i within its conformation, axis)``.

    ``conf_id [B]`` identifies each conformation (for example its row in the store),
    ``batch [N]`` (sorted) maps atoms to conformations. Uniforms come from a counter-based
    32-bit hash, normals from the Box-Muller transform; the result is the same on every
    device and whatever the batch composition.
    """
    check_sigma(sigma_angstrom)
    n_atoms = batch.numel()
    device = batch.device
    if n_atoms == 0:
        return torch.zeros(0, 3, dtype=dtype, device=device)
    counts = torch.bincount(batch, minlength=conf_id.numel())
    first_atom = torch.cumsum(counts, 0) - counts
    local = torch.arange(n_atoms, device=device) - first_atom[batch]
    conf = conf_id.to(device=device, dtype=torch.int64)[batch]
    counter = (local.unsqueeze(1) * 3 + torch.arange(3, device=device)).reshape(-1)
    conf = conf.repeat_interleave(3)
    key = _mix32(torch.full_like(counter, int(seed) & _MASK32))
    key = _mix32(key ^ (int(stream) & _MASK32))
    key = _mix32(key ^ (conf & _MASK32))
    key = _mix32(key ^ ((conf >> 32) & _MASK32))
    key = _mix32(key ^ (counter & _MASK32))
    bits_a = _mix32(key ^ _GOLDEN32)
    bits_b = _mix32(bits_a ^ 0x85EBCA6B)
    # uniforms in (0, 1] and [0, 1), in float64 so that 32 bits survive
    uniform_a = (bits_a.to(torch.float64) + 1.0) / 4294967296.0
    uniform_b = bits_b.to(torch.float64) / 4294967296.0
    normal = torch.sqrt(-2.0 * torch.log(uniform_a)) * torch.cos(2.0 * math.pi * uniform_b)
    return (normal * sigma_angstrom).to(dtype).reshape(n_atoms, 3)
