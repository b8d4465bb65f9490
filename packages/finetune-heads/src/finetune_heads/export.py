"""Export a fine-tuned potential as a TorchScript trace of its energy function.

Neither ``torch.jit.script`` (backbones return a dataclass and build their neighbour graph with
Python-side sizes) nor ``torch.export`` (the radius graph has data-dependent shapes) handles
the backbones generally, so the export is ``torch.jit.trace`` of ``(z, pos, batch) -> energy``
for one molecule. The trace fixes the atom count of the example molecule (the neighbour
graph's padding size is recorded as a constant); positions may change freely, and forces come
from autograd on the loaded module: ``-torch.autograd.grad(energy.sum(), pos)[0]``.

Whether a backbone traces depends on its code: a backbone whose trace fails, or whose trace
does not reproduce the eager energies and forces, raises :class:`ExportError`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .potential import Potential


class ExportError(RuntimeError):
    """The backbone cannot be exported as TorchScript; the message says why."""


class _EnergyFunction(nn.Module):
    """``(z [N], pos [N, 3] Å, batch [N]) -> energy [1]`` in eV (float64), one molecule."""

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.backbone = potential.backbone
        self.head = potential.head

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(z, pos, batch).scalar, z, batch, 1)


def _energy_and_forces(module: nn.Module, z: torch.Tensor, pos: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    pos = pos.detach().clone().requires_grad_(True)
    energy = module(z, pos, torch.zeros_like(z))
    return energy.detach(), -torch.autograd.grad(energy.sum(), pos)[0]


def export_torchscript(
    potential: Potential,
    path: str | os.PathLike[str],
    z: torch.Tensor,
    pos: torch.Tensor,
    *,
    check_displacement_angstrom: float = 0.05,
    tolerance: float = 1e-4,
) -> Path:
    """Trace the energy of the molecule ``z`` (atomic numbers) at ``pos`` (Å) to a TorchScript
    file at ``path``, check energies (eV) and forces (eV/Å) of the trace against the eager
    potential at ``pos`` and at a displaced geometry, and return the path. Valid for molecules
    with the same number of atoms as ``z``."""
    path = Path(path)
    function = _EnergyFunction(potential).eval()
    z = z.to(torch.long)
    batch = torch.zeros_like(z)
    with torch.enable_grad():
        try:
            traced = torch.jit.trace(function, (z, pos.detach(), batch), check_trace=False)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown"
            raise ExportError(f"backbone {potential.backbone.name!r} cannot be traced to "
                              f"TorchScript ({reason[:160]})") from None
        generator = torch.Generator().manual_seed(0)
        displaced = pos + check_displacement_angstrom * torch.randn(
            pos.shape, generator=generator, dtype=pos.dtype)
        for geometry in (pos, displaced):
            e_trace, f_trace = _energy_and_forces(traced, z, geometry)
            e_eager, f_eager = _energy_and_forces(function, z, geometry)
            scale = max(1.0, float(f_eager.abs().max()))
            if (float((e_trace - e_eager).abs().max()) > tolerance * max(1.0, float(
                    e_eager.abs().max())) or float((f_trace - f_eager).abs().max()) > tolerance
                    * scale):
                raise ExportError(
                    f"the TorchScript trace of backbone {potential.backbone.name!r} does not "
                    "reproduce the eager potential; this backbone cannot be exported"
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.jit.save(traced, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
