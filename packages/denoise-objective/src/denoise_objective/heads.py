"""Noise-prediction heads, one per family of backbone, and the denoising model.

* ``gradient`` (SchNet, SE(3)-Transformer): an energy readout on the scalar features, summed
  per molecule; the predicted noise is ``-dE/dx̃`` (Å per unit energy; the readout is free).
* ``displacement`` (EGNN): the predicted noise is ``x_final - x̃`` (Å).
* ``vector`` (equivariant transformer): two gated equivariant blocks map scalar and vector
  features to one vector per atom (Å).

A head's portable form ``{"kind", "hparams", "state_dict"}`` is kept apart from the
backbone's in checkpoints, so fine-tuning can drop it.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from equivariant_backbones import Backbone, BackboneOutput
from torch import nn


class NoiseHeadError(ValueError):
    """A noise head that cannot be used with the chosen backbone (or an unknown kind)."""


class NoiseHead(nn.Module):
    """Maps a backbone's output to predicted noise ``[N, 3]``."""

    kind: ClassVar[str] = ""
    #: True when the head differentiates with respect to the (noisy) input positions
    needs_position_gradient: ClassVar[bool] = False

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self._hparams = copy.deepcopy(hparams)

    @property
    def hparams(self) -> dict[str, Any]:
        """Constructor arguments as a plain dict."""
        return copy.deepcopy(self._hparams)

    def forward(
        self, output: BackboneOutput, pos: torch.Tensor, batch: torch.Tensor,
        create_graph: bool,
    ) -> torch.Tensor:
        raise NotImplementedError


class GradientNoiseHead(NoiseHead):
    """Energy readout ``Linear -> SiLU -> Linear`` per atom, summed per molecule; the
    predicted noise is ``-dE/dx̃``."""

    kind = "gradient"
    needs_position_gradient = True

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__(in_channels=in_channels, hidden_channels=hidden_channels)
        self.energy = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), nn.SiLU(), nn.Linear(hidden_channels, 1)
        )

    def forward(
        self, output: BackboneOutput, pos: torch.Tensor, batch: torch.Tensor,
        create_graph: bool,
    ) -> torch.Tensor:
        """``-dE/dx̃ [N, 3]``; ``pos`` must be the tensor the backbone was called with."""
        atom_energy = self.energy(output.scalar).squeeze(-1)
        # Molecules do not share atoms, so the gradient of the batch total equals the
        # gradient of each molecule's own energy sum.
        (gradient,) = torch.autograd.grad(atom_energy.sum(), pos, create_graph=create_graph)
        return -gradient


class DisplacementNoiseHead(NoiseHead):
    """Predicted noise = the backbone's updated positions minus its input positions (Å)."""

    kind = "displacement"

    def forward(
        self, output: BackboneOutput, pos: torch.Tensor, batch: torch.Tensor,
        create_graph: bool,
    ) -> torch.Tensor:
        """``x_final - x̃ [N, 3]`` in Å."""
        if output.position is None:
            raise NoiseHeadError("the displacement head needs a backbone that outputs positions")
        return output.position - pos


class GatedEquivariantBlock(nn.Module):
    """Gated equivariant block (Schütt et al., PaiNN, 2021): scalars ``[N, F_in]`` and
    vectors ``[N, 3, V_in]`` to scalars ``[N, F_out]`` and vectors ``[N, 3, V_out]``."""

    def __init__(
        self, scalar_in: int, vector_in: int, scalar_out: int, vector_out: int,
        hidden_channels: int, scalar_activation: bool,
    ) -> None:
        super().__init__()
        self.scalar_out = scalar_out
        self.vector_out = vector_out
        self.vector_value = nn.Linear(vector_in, vector_out, bias=False)
        self.vector_norm = nn.Linear(vector_in, vector_out, bias=False)
        self.update = nn.Sequential(
            nn.Linear(scalar_in + vector_out, hidden_channels), nn.SiLU(),
            nn.Linear(hidden_channels, scalar_out + vector_out),
        )
        self.activation = nn.SiLU() if scalar_activation else nn.Identity()

    def forward(
        self, scalar: torch.Tensor, vector: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated ``(scalar, vector)``; norms and gates keep rotation equivariance."""
        norm = torch.sqrt((self.vector_norm(vector) ** 2).sum(dim=1) + 1e-8)
        scalar_out, gate = self.update(torch.cat([scalar, norm], dim=-1)).split(
            [self.scalar_out, self.vector_out], dim=-1
        )
        return self.activation(scalar_out), gate.unsqueeze(1) * self.vector_value(vector)


class VectorNoiseHead(NoiseHead):
    """Two gated equivariant blocks reduce scalar and vector features to one vector per
    atom: the predicted noise (Å)."""

    kind = "vector"

    def __init__(self, scalar_channels: int, vector_channels: int, hidden_channels: int) -> None:
        super().__init__(scalar_channels=scalar_channels, vector_channels=vector_channels,
                         hidden_channels=hidden_channels)
        self.first = GatedEquivariantBlock(
            scalar_channels, vector_channels, hidden_channels, hidden_channels,
            hidden_channels, scalar_activation=True,
        )
        self.second = GatedEquivariantBlock(
            hidden_channels, hidden_channels, 1, 1, hidden_channels, scalar_activation=False,
        )

    def forward(
        self, output: BackboneOutput, pos: torch.Tensor, batch: torch.Tensor,
        create_graph: bool,
    ) -> torch.Tensor:
        """One vector ``[N, 3]`` per atom from the backbone's vector features."""
        if output.vector is None:
            raise NoiseHeadError("the vector head needs a backbone with vector features")
        scalar, vector = self.first(output.scalar, output.vector)
        _, vector = self.second(scalar, vector)
        return vector[:, :, 0]


_HEADS: dict[str, type[NoiseHead]] = {
    cls.kind: cls for cls in (GradientNoiseHead, DisplacementNoiseHead, VectorNoiseHead)
}


def build_noise_head(backbone: Backbone, kind: str | None = None) -> NoiseHead:
    """A freshly initialised noise head for ``backbone``: its family's default
    (``backbone.default_noise_head``) or ``kind``; raises NoiseHeadError if they do not fit."""
    kind = kind or backbone.default_noise_head
    name = backbone.name or type(backbone).__name__
    if kind == "gradient":
        hidden = max(1, backbone.scalar_dim // 2)
        return GradientNoiseHead(in_channels=backbone.scalar_dim, hidden_channels=hidden)
    if kind == "displacement":
        if not getattr(backbone, "outputs_position", False):
            raise NoiseHeadError(
                f"noise head 'displacement' needs a backbone that outputs positions; "
                f"{name} does not (use 'gradient')"
            )
        return DisplacementNoiseHead()
    if kind == "vector":
        if not getattr(backbone, "vector_dim", None):
            raise NoiseHeadError(
                f"noise head 'vector' needs a backbone with vector features; {name} has none "
                "(use 'gradient')"
            )
        return VectorNoiseHead(
            scalar_channels=backbone.scalar_dim, vector_channels=int(backbone.vector_dim),
            hidden_channels=max(1, backbone.scalar_dim // 2),
        )
    raise NoiseHeadError(
        f"unknown noise head {kind!r}; choose one of: {', '.join(sorted(_HEADS))}"
    )


def noise_head_to_dict(head: NoiseHead) -> dict[str, Any]:
    """The head's kind, hyperparameters and weights as plain data."""
    return {
        "kind": head.kind,
        "hparams": head.hparams,
        "state_dict": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
    }


def noise_head_from_dict(spec: dict[str, Any]) -> NoiseHead:
    """Rebuild a head from :func:`noise_head_to_dict`'s output; weights load strictly."""
    try:
        cls = _HEADS[spec["kind"]]
    except KeyError:
        raise NoiseHeadError(f"unknown noise head {spec.get('kind')!r}") from None
    head = cls(**spec["hparams"])
    head.load_state_dict(spec["state_dict"], strict=True)
    return head


class DenoisingModel(nn.Module):
    """Backbone plus noise head: ``model(z, noisy_pos, batch) -> predicted noise [N, 3]``."""

    def __init__(self, backbone: Backbone, head: NoiseHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self, z: torch.Tensor, noisy_pos: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """Predicted noise for atomic numbers ``z [N]`` at noisy positions ``[N, 3]`` (Å).

        Gradient heads differentiate even under ``torch.no_grad`` (validation); the graph of
        that derivative is kept only when gradients are enabled by the caller.
        """
        if not self.head.needs_position_gradient:
            output = self.backbone(z, noisy_pos, batch)
            return self.head(output, noisy_pos, batch, create_graph=False)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            pos = noisy_pos.detach().requires_grad_(True)
            output = self.backbone(z, pos, batch)
            predicted = self.head(output, pos, batch, create_graph=create_graph)
        return predicted if create_graph else predicted.detach()
