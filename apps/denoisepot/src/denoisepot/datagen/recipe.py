"""The recipe of a generated dataset (plain data, no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DenoisepotError

SAMPLING_METHODS = ("md", "normal-modes")


@dataclass(frozen=True)
class GenerationRecipe:
    """How conformations are made: per molecule ``conformers`` in all, spread evenly over the
    ``temperatures_kelvin``; ``sampling`` is ``"md"`` (Langevin MD on GFN2-xTB) or
    ``"normal-modes"`` (ANI-style, around the GFN2-xTB minimum)."""

    conformers: int = 64
    sampling: str = "md"
    temperatures_kelvin: tuple[float, ...] = (300.0, 600.0, 1000.0)
    seed: int = 0
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.02
    equilibration_steps: int = 60
    steps_between_frames: int = 8

    def validate(self) -> None:
        """Raise DenoisepotError for a recipe that cannot run."""
        if self.sampling not in SAMPLING_METHODS:
            raise DenoisepotError(
                f"--sampling {self.sampling!r} is unknown; use one of {', '.join(SAMPLING_METHODS)}"
            )
        if self.conformers < 1:
            raise DenoisepotError(
                f"--conformers {self.conformers}: ask for at least 1 per molecule"
            )
        if not self.temperatures_kelvin or min(self.temperatures_kelvin) <= 0:
            raise DenoisepotError("--temperature must be given and positive (kelvin)")
