r"""Dataset specs for PDEs on meshes: the mesh, the PDE, its random data, the samples.

A mesh spec has a ``mesh`` section where a grid spec has ``grid``::

    pde: heat_mesh                    # or poisson_mesh
    mesh: {domain: torus, h: 0.15}    # or {file: part.msh}, or {domain: icosphere, level: 4}
    parameters: {kappa: [0.05, 0.2]}  # a list sweeps a parameter
    t_end: 1.0
    n_saves: 11
    initial_condition: {kind: random_bumps, options: {count: 4, width: 0.3}}
    solver: {theta: 0.5, steps_per_save: 4}
    samples: 20
    shard_size: 5
    seed: 0

Problems (:data:`MESH_PROBLEMS`):

- ``heat_mesh``: $u_t = \kappa\Delta u$ on the mesh (Laplace–Beltrami on a surface), zero
  Neumann on any boundary, from a random $u_0$; P1 in space, the θ-scheme in time
  (:func:`~physml.solvers.mesh.heat`, ``steps_per_save`` steps between saved states).
  Fields: ``u`` (sample, time, node).
- ``poisson_mesh``: $-\kappa\Delta u = f$ with $u = 0$ on the boundary (on a closed surface,
  $(-\kappa\Delta + \sigma) u = f$ with $\sigma$ = ``parameters.shift`` > 0, which makes it
  well posed), from a random source $f$ (:func:`~physml.solvers.mesh.poisson`). Fields: ``f``
  and ``u`` (sample, node).

Random fields (``initial_condition``, the source for ``poisson_mesh``): ``random_bumps``,
$\sum_{i<N} a_i \exp(-|x - c_i|^2 / 2w^2)$ with $a_i \sim N(0, 1)$ and centres $c_i$ at uniformly
drawn vertices.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..solvers import mesh as pm
from .spec import AbsolutePath, InitialConditionSpec, SampledSpec, Seed, SplitSpec, StrictModel

DOMAINS = {"disc": pm.disc, "annulus": pm.annulus, "l_shape": pm.l_shape, "box": pm.box,
           "sphere": pm.sphere, "torus": pm.torus, "double_torus": pm.double_torus}

DOMAIN_SIZES = {"disc": (2, math.pi), "annulus": (2, 0.75 * math.pi), "l_shape": (2, 3.0),
                "box": (3, 1.0), "sphere": (2, 4 * math.pi), "torus": (2, 1.6 * math.pi**2),
                "double_torus": (2, 3.2 * math.pi**2)}
r"""(dimension, area [m2] or volume [m3]) of each generated domain at the sizes
:data:`DOMAINS` builds (:mod:`physml.solvers.mesh.domains`' defaults: unit disc, annulus
0.5 < r < 1, L-shape of three unit squares, unit cube, unit sphere, torus of radii 1 and 0.4
of area $4\pi^2 R r$, the double torus as two whole tori)."""

DOMAIN_PARTS = {"disc": ("boundary",), "annulus": ("inner", "outer"), "l_shape": ("boundary",),
                "box": ("boundary",), "sphere": (), "torus": (), "double_torus": (),
                "icosphere": ()}
"""The tagged boundary parts of each generated domain (:mod:`physml.solvers.mesh.domains`):
every domain with a boundary has at least one; the closed surfaces, which have no boundary,
have none."""

MAX_ELEMENTS = 10_000_000
"""Most elements a generated domain may have (:meth:`MeshSpec.estimated_elements`): gmsh makes
some 1e4 to 1e5 triangles a second, so that a mesh this large already takes minutes."""


class MeshSpec(StrictModel):
    """A mesh file (any format meshio reads), or a generated domain with target edge length
    ``h`` [m] (``icosphere``: ``level`` subdivisions of an icosahedron instead)."""

    file: AbsolutePath | None = None
    domain: Literal["disc", "annulus", "l_shape", "box", "sphere", "torus", "double_torus",
                    "icosphere"] | None = None
    h: float | None = Field(None, gt=0, description="target edge length [m]")
    level: int | None = Field(None, ge=0, le=7, description="icosphere subdivisions")
    repair: bool = Field(False, description="merge duplicate vertices, drop cells that list a "
                         "vertex twice and unreferenced vertices")
    sha256: str | None = Field(None, description="the mesh file's SHA-256, recorded with the "
                               "dataset (filled in from the file when not given): a resume "
                               "and each shard's solve refuse a file that changed since")

    @model_validator(mode="after")
    def _one_source(self) -> MeshSpec:
        if (self.file is None) == (self.domain is None):
            raise ValueError("give exactly one of mesh.file and mesh.domain" + (
                f" (mesh.domain {self.domain!r} is set: to read a file instead, e.g. on a "
                "bundled case's command line, also pass mesh.domain=null and mesh.h=null or "
                "mesh.level=null)" if self.file is not None else ""))
        if self.file is not None and not Path(self.file).is_file():
            raise ValueError(f"mesh.file {self.file!r} does not exist")
        if self.file is not None and self.sha256 is None:
            object.__setattr__(self, "sha256", _digest(self.file))  # frozen: filled in once
        elif self.file is None and self.sha256 is not None:
            raise ValueError("mesh.sha256 is a mesh file's digest; this mesh is generated")
        if self.domain == "icosphere" and self.level is None:
            raise ValueError("mesh.domain 'icosphere' needs mesh.level")
        if self.domain not in (None, "icosphere") and self.h is None:
            raise ValueError(f"mesh.domain {self.domain!r} needs mesh.h (target edge length)")
        if self.h is not None and self.domain in DOMAIN_SIZES:
            smallest, largest = self.target_edge_length(MAX_ELEMENTS), self.target_edge_length(1)
            if self.h < smallest:
                raise ValueError(f"mesh.h={self.h:g} makes about {self.estimated_elements():.2g} "
                                 f"elements of mesh.domain {self.domain!r}, more than "
                                 f"{MAX_ELEMENTS:.0e}; use h >= {smallest:.2g}")
            if self.h > largest:
                raise ValueError(f"mesh.h={self.h:g} exceeds mesh.domain {self.domain!r} itself "
                                 f"(one element would cover it); use h <= {largest:.2g}")
        source = "mesh.file" if self.file is not None else f"mesh.domain {self.domain!r}"
        for key, used in (("h", self.domain not in (None, "icosphere")),
                          ("level", self.domain == "icosphere"),
                          ("repair", self.file is not None)):
            if not used and getattr(self, key) not in (None, False):
                raise ValueError(f"mesh.{key} does not apply to {source} (h: a generated "
                                 "domain's edge length, level: the icosphere's subdivisions, "
                                 "repair: a mesh file's)")
        return self

    def estimated_elements(self) -> float:
        r"""About how many elements the generated domain has at edge length ``h``: its area
        over an equilateral triangle's, $A / (\sqrt{3} h^2 / 4)$, or its volume over a regular
        tetrahedron's, $V / (h^3 / 6\sqrt{2})$ (:data:`DOMAIN_SIZES`; gmsh's elements come
        near these shapes)."""
        dimension, size = DOMAIN_SIZES[self.domain]
        element = math.sqrt(3) / 4 * self.h * self.h if dimension == 2 else (
            self.h * self.h * self.h / (6 * math.sqrt(2)))  # products overflow to inf, not raise
        return size / element if element else math.inf

    def target_edge_length(self, elements: float) -> float:
        """The edge length ``h`` at which the generated domain has about ``elements``
        elements (the inverse of :meth:`estimated_elements`)."""
        dimension, size = DOMAIN_SIZES[self.domain]
        element = size / elements
        return math.sqrt(4 / math.sqrt(3) * element) if dimension == 2 else (
            6 * math.sqrt(2) * element) ** (1 / 3)

    def build(self, h: float | None = None) -> pm.Mesh:
        """The mesh (the generated domain at edge length ``h`` if given)."""
        if self.file is not None:
            if _digest(self.file) != self.sha256:
                raise ValueError(f"mesh.file {self.file!r} changed since the spec recorded it "
                                 f"(SHA-256 {self.sha256[:12]}...): restore the file, or "
                                 "generate its dataset into a new folder")
            return pm.read_mesh(self.file, repair=self.repair)
        if self.domain == "icosphere":
            return pm.icosphere(self.level)
        return DOMAINS[self.domain](self.h if h is None else h)

    @property
    def boundary_parts(self) -> tuple[str, ...] | None:
        """The names of the mesh's tagged boundary parts (:data:`DOMAIN_PARTS`; none for a
        closed surface); None for a mesh file, whose parts are known once it is read."""
        return None if self.domain is None else DOMAIN_PARTS[self.domain]

    @property
    def label(self) -> str:
        if self.file is not None:
            return self.file
        return f"icosphere({self.level})" if self.domain == "icosphere" else (
            f"{self.domain} (h = {self.h:g})")


def _digest(path: str) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def random_bumps(
    points: np.ndarray,
    rng: np.random.Generator,
    count: Annotated[int, Field(ge=1)] = 4,
    width: Annotated[float, Field(gt=0)] = 0.25,
) -> np.ndarray:
    """(n,) sum of ``count`` Gaussian bumps of width ``width`` [m] centred at random vertices of
    ``points`` (n, d), with N(0, 1) amplitudes."""
    centres = points[rng.integers(0, len(points), size=count)]
    amplitudes = rng.standard_normal(count)
    squared = np.sum((points[:, None, :] - centres[None]) ** 2, axis=2)
    return np.exp(-squared / (2 * width**2)) @ amplitudes


MESH_FIELDS: dict[str, Callable[..., np.ndarray]] = {"random_bumps": random_bumps}
"""Random nodal fields by name: ``f(points, rng, **options)``."""

MESH_PROBLEMS: dict[str, dict[str, float]] = {
    "heat_mesh": {"kappa": 0.1},
    "poisson_mesh": {"kappa": 1.0, "shift": 1.0},
}
"""Mesh problems by name, with their parameters' defaults (see the module docstring)."""


PARAMETER_RANGE = (1e-100, 1e100)
"""Where a mesh problem's parameters may lie: positive, and far enough from float64's limits
that the solution (about f/kappa) and its energy stay finite (a kappa of 1e-310 overflowed
f/kappa)."""


class MeshFieldSpec(InitialConditionSpec):
    """A random nodal field: ``kind`` in :data:`MESH_FIELDS` and its options."""

    generators: ClassVar[dict[str, Callable[..., np.ndarray]]] = MESH_FIELDS


class MeshSolverSpec(StrictModel):
    theta: float = Field(0.5, ge=0.5, le=1.0, description="1: implicit Euler, 0.5: CN")
    steps_per_save: int = Field(1, ge=1)


class MeshDatasetSpec(SampledSpec):
    """A validated mesh dataset spec (see the module docstring)."""

    pde: str
    mesh: MeshSpec
    parameters: dict[str, float | list[float]] = Field(default_factory=dict)
    t_end: float | None = Field(None, gt=0)
    n_saves: int | None = Field(None, ge=2)
    initial_condition: MeshFieldSpec
    samples: int = Field(gt=0)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    shard_size: int = Field(16, gt=0)
    seed: Seed = 0
    solver: MeshSolverSpec = Field(default_factory=MeshSolverSpec)
    storage_dtype: Literal["float32", "float64"] = "float32"

    @property
    def summary(self) -> str:
        """What is solved where, for progress messages."""
        return f"{self.pde} on {self.mesh.label}"

    @property
    def is_transient(self) -> bool:
        return self.pde == "heat_mesh"

    @field_validator("pde")
    @classmethod
    def _known_pde(cls, pde: str) -> str:
        if pde not in MESH_PROBLEMS:
            raise ValueError(f"unknown mesh PDE {pde!r}; allowed: {', '.join(MESH_PROBLEMS)}")
        return pde

    @model_validator(mode="after")
    def _consistent_with_problem(self) -> MeshDatasetSpec:
        allowed = MESH_PROBLEMS[self.pde]
        for name, value in self.parameters.items():
            if name not in allowed:
                raise ValueError(f"parameters: {self.pde} has no parameter {name!r}; "
                                 f"allowed: {', '.join(allowed)}")
            if not all(PARAMETER_RANGE[0] <= v <= PARAMETER_RANGE[1]
                       for v in (value if isinstance(value, list) else [value])):
                raise ValueError(f"parameters: {name} must lie in [{PARAMETER_RANGE[0]:g}, "
                                 f"{PARAMETER_RANGE[1]:g}] (got {value!r})")
        timed = self.t_end is not None and self.n_saves is not None
        if self.is_transient and not timed:
            raise ValueError(f"{self.pde} needs t_end and n_saves")
        if not self.is_transient and (self.t_end is not None or self.n_saves is not None):
            raise ValueError(f"{self.pde} is steady: leave out t_end and n_saves")
        if not self.is_transient and self.solver != MeshSolverSpec():  # (to_yaml writes it)
            raise ValueError(f"solver: {self.pde} is steady and takes no time-stepping "
                             "options (theta, steps_per_save); leave it out")
        return self

    def values(self, parameters: dict[str, float]) -> dict[str, float]:
        """The problem's parameters: its defaults updated by ``parameters``."""
        return {**MESH_PROBLEMS[self.pde], **parameters}
