"""A reusable test suite for backbones (in the spirit of nequip's model test mixin).

Every ``check_*`` function takes a *factory*, a callable returning a freshly built
:class:`~equivariant_backbones.Backbone` (small hyperparameters keep it fast), builds it with a
fixed seed, moves it to float64 and raises ``AssertionError`` when the property fails. A new
backbone is covered by calling :func:`run_all_checks` on its factory, or by registering it:
``tests/test_backbone_suite.py`` runs every registered name.

Positions are in Å; the "energy" used by the gradient and continuity checks is a sum readout
``E = sum_i w . h_i`` of the scalar features with a fixed random ``w`` (arbitrary units).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import torch

from .base import Backbone, BackboneOutput
from .portable import backbone_from_dict, backbone_to_dict

BackboneFactory = Callable[[], Backbone]

#: tolerances for float64 comparisons of outputs that should agree exactly in real arithmetic
ATOL = 1e-9
RTOL = 1e-7

_ELEMENTS = torch.tensor([1, 6, 7, 8])


def build_float64(factory: BackboneFactory, seed: int = 0) -> Backbone:
    """The factory's backbone, initialised under ``seed``, in float64 and eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = factory()
    return backbone.double().eval()


def random_molecule(
    n_atoms: int, generator: torch.Generator, step_angstrom: tuple[float, float] = (1.0, 1.6)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Atomic numbers ``[n]`` and float64 positions ``[n, 3]`` (Å) of a random-walk chain
    whose consecutive atoms are ``step_angstrom`` apart, so long chains exceed a 5 Å cutoff."""
    direction = torch.randn(n_atoms, 3, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    low, high = step_angstrom
    length = low + (high - low) * torch.rand(n_atoms, 1, generator=generator,
                                             dtype=torch.float64)
    pos = torch.cumsum(direction * length, dim=0)
    pos = pos - pos[0]
    z = _ELEMENTS[torch.randint(len(_ELEMENTS), (n_atoms,), generator=generator)]
    return z, pos


def make_batch(
    molecules: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate ``(z, pos)`` molecules into ``z [N]``, ``pos [N, 3]``, ``batch [N]``."""
    z = torch.cat([m[0] for m in molecules])
    pos = torch.cat([m[1] for m in molecules])
    batch = torch.cat([torch.full((len(m[0]),), i, dtype=torch.long)
                       for i, m in enumerate(molecules)])
    return z, pos, batch


def random_rotation(generator: torch.Generator, reflect: bool = False) -> torch.Tensor:
    """A uniformly random 3x3 rotation (determinant +1), or an improper one if ``reflect``."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    return q


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def _assert_outputs_close(actual: BackboneOutput, expected: BackboneOutput, what: str) -> None:
    _assert_close(actual.scalar, expected.scalar, f"{what} (scalar)")
    for field in ("vector", "position"):
        a, e = getattr(actual, field), getattr(expected, field)
        assert (a is None) == (e is None), f"{what}: {field} present in only one output"
        if a is not None:
            _assert_close(a, e, f"{what} ({field})")


def _sum_readout(backbone: Backbone, seed: int = 1) -> Callable[..., torch.Tensor]:
    weight = torch.randn(backbone.scalar_dim, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64)

    def energy(z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return (backbone(z, pos, batch).scalar @ weight).sum()

    return energy


def _standard_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return make_batch([random_molecule(n, generator) for n in (7, 4, 9)])


def check_output_shapes(factory: BackboneFactory) -> None:
    """Outputs have the declared shapes, dtype and finiteness; attributes are consistent."""
    backbone = build_float64(factory)
    z, pos, batch = _standard_batch()
    out = backbone(z, pos, batch)
    n = z.shape[0]
    assert out.scalar.shape == (n, backbone.scalar_dim), out.scalar.shape
    assert out.scalar.dtype == torch.float64
    assert torch.isfinite(out.scalar).all()
    if backbone.vector_dim is None:
        assert out.vector is None, "vector output without vector_dim"
    else:
        assert out.vector is not None and out.vector.shape == (n, 3, backbone.vector_dim)
        assert torch.isfinite(out.vector).all()
    assert (out.position is not None) == bool(backbone.outputs_position)
    if out.position is not None:
        assert out.position.shape == (n, 3)
    assert backbone.cutoff > 0
    assert backbone.name, "backbone is not registered"


def check_euclidean_symmetry(factory: BackboneFactory, seed: int = 0) -> None:
    """Scalars invariant, vectors and positions equivariant under a random rotation plus
    translation, and under an improper rotation too where ``reflection_equivariant``."""
    backbone = build_float64(factory)
    generator = torch.Generator().manual_seed(seed + 100)
    z, pos, batch = _standard_batch(seed)
    reference = backbone(z, pos, batch)
    transforms = [False, True] if backbone.reflection_equivariant else [False]
    for reflect in transforms:
        rotation = random_rotation(generator, reflect=reflect)
        shift = 10.0 * torch.randn(3, generator=generator, dtype=torch.float64)
        out = backbone(z, pos @ rotation.T + shift, batch)
        what = "reflection+translation" if reflect else "rotation+translation"
        _assert_close(out.scalar, reference.scalar, f"scalars not invariant under {what}")
        if reference.vector is not None:
            expected = torch.einsum("ij,njf->nif", rotation, reference.vector)
            _assert_close(out.vector, expected, f"vectors not equivariant under {what}")
        if reference.position is not None:
            _assert_close(out.position, reference.position @ rotation.T + shift,
                          f"positions not equivariant under {what}")


def check_permutation(factory: BackboneFactory, seed: int = 0) -> None:
    """Permuting the atoms inside each molecule permutes every output the same way."""
    backbone = build_float64(factory)
    generator = torch.Generator().manual_seed(seed + 200)
    z, pos, batch = _standard_batch(seed)
    perm = torch.cat([torch.nonzero(batch == m).flatten()[
        torch.randperm(int((batch == m).sum()), generator=generator)]
        for m in range(int(batch.max()) + 1)])
    reference = backbone(z, pos, batch)
    out = backbone(z[perm], pos[perm], batch[perm])
    _assert_outputs_close(
        out,
        BackboneOutput(
            scalar=reference.scalar[perm],
            vector=None if reference.vector is None else reference.vector[perm],
            position=None if reference.position is None else reference.position[perm],
        ),
        "outputs not permutation equivariant",
    )


def _alone_vs_batched(backbone: Backbone, molecules: list[tuple[torch.Tensor, torch.Tensor]],
                      what: str) -> None:
    z, pos, batch = make_batch(molecules)
    together = backbone(z, pos, batch)
    start = 0
    for mz, mpos in molecules:
        alone = backbone(mz, mpos, torch.zeros(len(mz), dtype=torch.long))
        part = slice(start, start + len(mz))
        _assert_outputs_close(
            BackboneOutput(
                scalar=together.scalar[part],
                vector=None if together.vector is None else together.vector[part],
                position=None if together.position is None else together.position[part],
            ),
            alone,
            what,
        )
        start += len(mz)


def check_batch_matches_single(factory: BackboneFactory, seed: int = 0) -> None:
    """A batch of molecules gives each molecule's outputs as when it is alone."""
    backbone = build_float64(factory)
    generator = torch.Generator().manual_seed(seed + 300)
    molecules = [random_molecule(n, generator) for n in (5, 8, 3)]
    # Every random molecule starts at the origin: they overlap in space yet must not interact.
    _alone_vs_batched(backbone, molecules, "batched outputs differ from single-molecule ones")


def check_isolated_atoms(factory: BackboneFactory) -> None:
    """A batch holding a single-atom molecule and a molecule with no pair within the cutoff
    (besides an ordinary one) runs, gives finite outputs, and matches each molecule alone."""
    backbone = build_float64(factory)
    generator = torch.Generator().manual_seed(400)
    far = backbone.cutoff + 1.0
    single = (torch.tensor([8]), torch.zeros(1, 3, dtype=torch.float64))
    sparse = (torch.tensor([1, 6, 1]),
              torch.tensor([[0.0, 0.0, 0.0], [far, 0.0, 0.0], [0.0, far, 0.5]],
                           dtype=torch.float64))
    molecules = [single, random_molecule(5, generator), sparse]
    z, pos, batch = make_batch(molecules)
    out = backbone(z, pos, batch)
    assert torch.isfinite(out.scalar).all(), "non-finite scalars for isolated atoms"
    _alone_vs_batched(backbone, molecules, "isolated atoms: batched differs from alone")


def check_cutoff_continuity(factory: BackboneFactory, delta_angstrom: float = 1e-7) -> None:
    """A sum-readout energy changes by O(delta) as an atom crosses the cutoff sphere."""
    backbone = build_float64(factory)
    energy = _sum_readout(backbone)
    cutoff = backbone.cutoff
    z = torch.tensor([6, 1, 8])

    def at(distance: float) -> torch.Tensor:
        pos = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [-distance, 0.0, 0.0]],
                           dtype=torch.float64)
        with torch.no_grad():
            return energy(z, pos, torch.zeros(3, dtype=torch.long))

    inside, outside = at(cutoff - delta_angstrom), at(cutoff + delta_angstrom)
    scale = float(max(abs(at(cutoff - 1.0) - at(cutoff + 1.0)), 1.0))
    jump = float(abs(inside - outside))
    assert jump < 1e-4 * scale, (
        f"energy jumps by {jump:.3g} (scale {scale:.3g}) as an atom crosses the cutoff"
    )


def check_energy_gradient(factory: BackboneFactory, n_directions: int = 3,
                          step_angstrom: float = 1e-5) -> None:
    """-dE/dx of a sum readout by autograd matches central finite differences (float64)
    along random directions in the space of all coordinates (each direction involves every
    atom, so a wrong force component anywhere shows)."""
    backbone = build_float64(factory)
    energy = _sum_readout(backbone)
    generator = torch.Generator().manual_seed(500)
    z, pos, batch = make_batch([random_molecule(6, generator), random_molecule(3, generator)])
    pos = pos.clone().requires_grad_(True)
    gradient = torch.autograd.grad(energy(z, pos, batch), pos)[0]
    pos = pos.detach()
    with torch.no_grad():
        for _ in range(n_directions):
            direction = torch.randn(pos.shape, generator=generator, dtype=torch.float64)
            direction /= direction.norm()
            finite = (energy(z, pos + step_angstrom * direction, batch)
                      - energy(z, pos - step_angstrom * direction, batch)) / (2 * step_angstrom)
            analytic = (gradient * direction).sum()
            tolerance = 1e-6 * max(1.0, float(gradient.norm()))
            assert abs(float(finite - analytic)) < tolerance, (
                f"dE/dx along a random direction: autograd {float(analytic):.10g}, "
                f"finite differences {float(finite):.10g}"
            )


def check_portable_roundtrip(factory: BackboneFactory) -> None:
    """Hyperparameters are JSON-serialisable, and the portable form, saved and loaded with
    ``weights_only=True``, rebuilds a network with identical weights and outputs."""
    backbone = build_float64(factory)
    spec = backbone_to_dict(backbone)
    json.dumps(spec["hparams"])
    buffer = io.BytesIO()
    torch.save(spec, buffer)
    buffer.seek(0)
    rebuilt = backbone_from_dict(torch.load(buffer, weights_only=True)).double().eval()
    assert type(rebuilt) is type(backbone)
    assert rebuilt.hparams == backbone.hparams
    original_state, rebuilt_state = backbone.state_dict(), rebuilt.state_dict()
    assert original_state.keys() == rebuilt_state.keys()
    for key, value in original_state.items():
        assert torch.equal(value, rebuilt_state[key]), f"weight {key} differs after round trip"
    z, pos, batch = _standard_batch()
    a, b = backbone(z, pos, batch), rebuilt(z, pos, batch)
    assert torch.equal(a.scalar, b.scalar), "rebuilt network gives different scalars"


def check_compiles(factory: BackboneFactory) -> str | None:
    """Compile the network and check the compiled outputs match the eager ones: first with
    ``torch.compile`` (eager backend: TorchDynamo must trace it, graph breaks allowed), else
    with TorchScript. Returns ``"torch.compile"``, ``"torchscript"``, or None where the
    network allows neither; raises if a compiled network gives different outputs.
    """
    backbone = build_float64(factory)
    z, pos, batch = _standard_batch()
    reference = backbone(z, pos, batch)
    attempts: tuple[tuple[str, Callable[[], Callable[..., BackboneOutput]]], ...] = (
        ("torch.compile", lambda: torch.compile(backbone, backend="eager", dynamic=True)),
        ("torchscript", lambda: torch.jit.script(backbone)),
    )
    for mode, compile_backbone in attempts:
        torch._dynamo.reset()
        try:
            out = compile_backbone()(z, pos, batch)
        except Exception:  # noqa: BLE001 - any compile failure means "not compilable this way"
            continue
        _assert_outputs_close(out, reference, f"{mode} outputs differ")
        return mode
    return None


ALL_CHECKS: tuple[Callable[[BackboneFactory], object], ...] = (
    check_output_shapes,
    check_euclidean_symmetry,
    check_permutation,
    check_batch_matches_single,
    check_isolated_atoms,
    check_cutoff_continuity,
    check_energy_gradient,
    check_portable_roundtrip,
    check_compiles,
)


def run_all_checks(factory: BackboneFactory) -> None:
    """Run every check of this suite on ``factory``."""
    for check in ALL_CHECKS:
        check(factory)
