r"""Datasets of sparse SPD linear systems $A x = b$ from our own discretisations.

Families (``systems:`` in a spec):

- ``poisson_grid``: $-\nabla\cdot(k\nabla u) = f$ on the unit square, $m\times m$ interior
  nodes (``size`` = m), 5-point stencil, homogeneous Dirichlet; $k = e^{\sigma g}$ with g a
  smooth Gaussian random field (unit variance, Gaussian covariance of length ``correlation``),
  f another such field.
- ``heat_mesh``: one implicit-Euler heat step on a Gmsh triangle mesh (``domain``, edge length
  ``1/size``): $(M + \Delta t\,K_k)\,u^{+} = M u$, P1 mass M and stiffness $K_k$ with a
  log-normal diffusivity per cell; u a random smooth field; Dirichlet $u^+ = 0$ on a random
  boundary arc (a quarter of the boundary nodes, contiguous by angle), the nodes of the arc
  eliminated.
- ``wave_mesh``: one implicit step of the wave equation, $(M + \Delta t^2 K_k)\,u^{+} =
  M(2u - u^{-})$ with $u^{-} = u$ (at rest), same meshes and arcs.
- ``poisson_tet``: $-\nabla\cdot(k\nabla u) = f$ on a tetrahedral mesh of the unit box
  (edge length ``1/size``), P1, log-normal k per cell, Dirichlet on the whole boundary,
  $b = M f$.

The mesh families number their unknowns by reverse Cuthill–McKee
(:func:`~physml.solvers.linalg.ordering.reverse_cuthill_mckee`; ``ordering: rcm``, their
default) or keep the mesher's numbering (``ordering: mesher``). The numbering is the order an
incomplete factorisation eliminates in: in Gmsh's numbering the neighbours that come earlier
are scattered over the mesh, RCM's sweeps it front by front as a grid's rows do, and on the
heat-step discs IC(0)-PCG then needs 22–29 % fewer iterations and a learned factor on A's
pattern beats IC(0) (``benchmarks/pcg.py``). The grid family is numbered row by row (it takes
no ``ordering``); ``dt`` (0.01 unless given) and ``domain`` (``disc``) are the heat and wave
families' only, and a spec that gives a family a key it ignores is refused
(:data:`FAMILY_OPTIONS`).

Every sample: A in CSR, b, the reference solution x, the node positions and the log-coefficient
at the nodes. x is a sparse direct solve's, or above $2\cdot10^5$ unknowns that of
AMG-preconditioned CG to $10^{-12}$ in at most 50 iterations (its best iterate where it stalls at
the float64 floor first), the direct solve's where that is above $10^{-10}$: its relative
residual $\|b - A x\| / \|b\|$ is 2e-12 to 3e-11 on the grid family from 2.5e5 to 1e6
unknowns (10 to 12 iterations). Generating a system holds about 0.5 to 5 KB per unknown at its
peak, up to 40 KB on tetrahedra solved directly (:data:`GENERATION_BYTES`); a spec whose shard
does not fit in this machine's memory is refused (:func:`check_generation_fits`). A shard stores
its samples end to end (CSR is ragged): dims ``sample``, ``row`` (the n+1 row pointers of each
sample), ``entry`` (nnz) and ``node`` (n), with per-sample ``n``, ``nnz``; :func:`read_systems`
returns them as SciPy matrices.
Generation, splits and shards are those of :mod:`~physml.datasets.generate`, resume of
:mod:`~physml.datasets.output_folder` and Dask of :mod:`~physml.datasets.shard_engines`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import xarray as xr
import yaml
from pydantic import Field, model_validator

from .._version import __version__
from ..solvers.linalg.ordering import reverse_cuthill_mckee
from ..solvers.runtime import quiet_warp
from .memory import check_fits_in_memory
from .mesh_spec import DOMAIN_SIZES
from .spec import SampledSpec, Seed, SplitSpec
from .store import SPLITS, checked_shards, with_cf_metadata

FAMILIES = ("poisson_grid", "heat_mesh", "wave_mesh", "poisson_tet")
DIRECT_LIMIT = 200_000
"""Unknowns above which the reference solution is computed by AMG-PCG, not a direct solve."""
FIELD_ROWS = 4096
"""Points whose random-feature cosines :func:`gaussian_field` forms at once (8 MiB at 256
features)."""
REFERENCE_RTOL = 1e-10
"""Relative residual an AMG-PCG reference must reach; a solve whose best iterate stays above
it is replaced by the direct solve."""
REFERENCE_ITERATIONS = 50
"""Iterations of an AMG-PCG reference solve at most: it reaches $10^{-12}$ in 10 to 12 on the
grid family (2e5 to 1e6 unknowns); where it stalls at the float64 floor instead (its
residual about 1e-11 after 10 iterations, then drifting up, to 5e-6 after 500), its best
iterate is kept."""


FAMILY_OPTIONS: dict[str, tuple[tuple[str, ...], Any]] = {
    "dt": (("heat_mesh", "wave_mesh"), 1e-2),
    "domain": (("heat_mesh", "wave_mesh"), "disc"),
    "ordering": (("heat_mesh", "wave_mesh", "poisson_tet"), "rcm"),
}
"""Options that only some families take: ``{key: (the families, the default)}``. The grid
family's unknowns are numbered row by row and its mesh is the square; the tetrahedral family's
domain is the unit box and it has no time step."""

ENTRIES_PER_ROW = {"poisson_grid": 5, "heat_mesh": 7, "wave_mesh": 7, "poisson_tet": 15}
"""Stored entries of a row of A, about: the 5-point stencil; a P1 node and its neighbours, some
6 on a triangle mesh and 14 on a tetrahedral one (6.9 and 14.1 measured at sizes 32 and 20)."""

GENERATION_BYTES = {"poisson_grid": (2500, 800), "heat_mesh": (5000, 3000),
                    "wave_mesh": (5000, 3000), "poisson_tet": (40000, 40000)}
"""Bytes a system's generation holds at its peak (the mesh, the assembled matrices, the
reference solve's factors or AMG hierarchy) per unknown of :func:`system_size`, with a
direct reference solve and with AMG: (direct, AMG), estimates that bound the process's peak
above its start at one sample (measured on the grid: 1.7 and 1.9 KB at 4e4 and 1.9e5
unknowns, direct, 0.55 KB at 2.5e5 and 6.4e5, AMG; on the disc 4.6 and 4.5 KB at 6e4 and
1.9e5, direct, 2.4 KB at 3.3e5, AMG). The tetrahedra's direct solve fills in faster than n
grows: 12, 13, 16 and 23 KB at sizes 20, 30, 40 and 50, about 40 KB at the direct limit; their
AMG, beyond size 70, is not measured and is counted as that.
Direct is counted wherever a system's unknowns may be at most :data:`DIRECT_LIMIT`
(:data:`UNKNOWN_SHARE`)."""

UNKNOWN_SHARE = {"poisson_tet": 0.58}
"""The least share of :func:`system_size`'s n that a family's systems have as unknowns, where
it is not 1: gmsh's interior nodes of the box are 0.58 to 0.64 of $size^3$."""


StepOption = Annotated[float | None, Field(gt=0, description="time step of heat_mesh and "
                                                           "wave_mesh (0.01 unless given)")]
DomainOption = Annotated[Literal["disc", "l_shape", "annulus"] | None, Field(
    description="triangle-mesh domain of heat_mesh and wave_mesh (disc unless given)")]
"""The ``dt`` and ``domain`` fields of a systems spec (and of the ``pcg`` case's dataset)."""


def family_options(systems: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """``dt``, ``domain`` and ``ordering`` for ``systems``: the given value (None or absent:
    the default) for a family that takes the key, None for one that does not.

    Raises:
        ValueError: a key given (not None) to a family that ignores it.
    """
    options = {}
    for key, (families, default) in FAMILY_OPTIONS.items():
        value = given.get(key)
        if systems not in families and systems in FAMILIES:
            if value is not None:
                raise ValueError(f"{key}: {value!r} applies to {', '.join(families)}; "
                                 f"{systems} takes none")
            options[key] = None
        else:
            options[key] = default if value is None else value
    return options


class LinearSystemSpec(SampledSpec):
    """A spec of a linear-system dataset (see the module docstring); no parameter sweep."""

    systems: Literal["poisson_grid", "heat_mesh", "wave_mesh", "poisson_tet"]
    size: int = Field(gt=2, le=4096)
    samples: int = Field(gt=0)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    shard_size: int = Field(16, gt=0)
    seed: Seed = 0
    log_std: float = Field(1.0, ge=0, le=5)
    correlation: float = Field(0.1, gt=0, le=10)
    dt: StepOption = None
    domain: DomainOption = None
    ordering: Literal["rcm", "mesher"] | None = Field(
        None, description="numbering of a mesh family's unknowns (rcm unless given); none for "
                          "poisson_grid")

    @model_validator(mode="before")
    @classmethod
    def _options_of_the_family(cls, data: Any) -> Any:
        """``dt``, ``domain`` and ``ordering`` filled with the family's defaults (stored, so
        the spec says them) where it takes them; refused where it does not
        (:func:`family_options`)."""
        if not isinstance(data, dict):
            return data
        return {**data, **family_options(data.get("systems"), data)}

    @property
    def pde(self) -> str:
        return self.systems

    @property
    def summary(self) -> str:
        """What is generated, for progress messages."""
        return f"{self.systems} systems of size {self.size}"

    @property
    def parameters(self) -> dict[str, float]:
        return {}


def system_size(spec: LinearSystemSpec) -> tuple[float, float]:
    r"""The unknowns n and stored entries nnz of one system of ``spec``, about: $m^2$ for the
    grid of ``size`` m; on a triangle mesh of edge $h = 1/$``size``, the nodes of equilateral
    triangles on the domain's area $A$ (:data:`~physml.datasets.mesh_spec.DOMAIN_SIZES`),
    $2A / (\sqrt 3\, h^2)$ (4 % under gmsh's disc at size 32); on the tetrahedra of the unit
    box, one node per $h^3$ (an upper bound: gmsh's interior nodes, the unknowns, are 0.58 to
    0.64 of it at sizes 20 to 40); nnz = n times the family's :data:`ENTRIES_PER_ROW`."""
    size = float(spec.size)
    if spec.systems == "poisson_grid":
        n = size * size
    elif spec.systems == "poisson_tet":
        n = size**3
    else:
        n = 2 * DOMAIN_SIZES[spec.domain][1] * size * size / math.sqrt(3)
    return n, n * ENTRIES_PER_ROW[spec.systems]


def system_bytes(spec: LinearSystemSpec) -> float:
    """Bytes one system of ``spec`` holds as stored, about: its CSR matrix (12 bytes an entry,
    8 a row) and b, x, the log-coefficient and the d node coordinates (8 bytes a node each),
    ``12 nnz + (4 + d) 8 n`` for the n and nnz of :func:`system_size`."""
    n, nnz = system_size(spec)
    dim = 3 if spec.systems == "poisson_tet" else 2
    return nnz * 12 + n * (4 + dim) * 8


def generation_bytes(spec: LinearSystemSpec) -> float:
    """Bytes the generation of one shard of ``spec`` holds at its peak, about: its samples
    (``shard_size``, or fewer where every split holds fewer) twice, as generated and as the
    shard's dataset, and the generation of one more (:data:`GENERATION_BYTES` per unknown,
    direct or AMG)::

        bytes = 2 samples system_bytes + GENERATION_BYTES[systems][direct or AMG] n
    """
    samples = min(spec.shard_size, max(spec.split_sizes().values()))
    n = system_size(spec)[0]
    direct, amg = GENERATION_BYTES[spec.systems]
    per_unknown = direct if n * UNKNOWN_SHARE.get(spec.systems, 1.0) <= DIRECT_LIMIT else amg
    return 2 * samples * system_bytes(spec) + per_unknown * n


def check_generation_fits(spec: LinearSystemSpec) -> None:
    """Refuse ``spec`` where the generation of one shard (:func:`generation_bytes`) would not
    fit in this machine's memory.

    Raises:
        ValueError: naming ``size``, the key that sets a shard's samples (``shard_size`` or
            ``samples``) and the unknowns of a system.
    """
    largest = max(spec.split_sizes().values())
    samples = min(spec.shard_size, largest)
    key = (f"shard_size={spec.shard_size}" if spec.shard_size <= largest
           else f"samples={spec.samples}")
    check_fits_in_memory(generation_bytes(spec), (
        f"size={spec.size}, {key}: generating a shard of {samples} {spec.systems} system(s) "
        f"of about {system_size(spec)[0]:,.0f} unknowns"))


@dataclass(frozen=True)
class LinearSystem:
    """One sample: ``matrix`` (n, n) CSR, ``b`` and ``x`` (n,), ``points`` (n, d) and the
    log-coefficient at the nodes ``log_coefficient`` (n,)."""

    matrix: sp.csr_matrix
    b: np.ndarray
    x: np.ndarray
    points: np.ndarray
    log_coefficient: np.ndarray


# ------------------------------------------------------------------------- random fields


def gaussian_field(points: np.ndarray, correlation: float, rng: np.random.Generator,
                   features: int = 256) -> np.ndarray:
    """A smooth Gaussian random field at ``points`` (n, d), unit variance, covariance
    $e^{-|x - y|^2 / (2\\ell^2)}$ approximately (random Fourier features, Rahimi & Recht 2007):
    $g(x) = \\sqrt{2/F}\\sum_f \\cos(\\omega_f\\cdot x + \\phi_f)$,
    $\\omega \\sim N(0, \\ell^{-2} I)$. The (rows, F) cosines are formed in blocks of
    equal rows, at most :data:`FIELD_ROWS`, so that the memory is O(n); no block is of one row
    among many (a one-row product is BLAS's matrix-vector one, whose sums may round otherwise),
    so the field is bitwise that of all rows at once."""
    omega = rng.standard_normal((points.shape[1], features)) / correlation
    phase = rng.uniform(0, 2 * np.pi, features)
    n = len(points)
    blocks = max(1, -(-n // FIELD_ROWS))
    field = np.empty(n)
    for k in range(blocks):
        rows = slice(k * n // blocks, (k + 1) * n // blocks)
        field[rows] = np.cos(points[rows] @ omega + phase).sum(axis=1)
    return np.sqrt(2.0 / features) * field


# ------------------------------------------------------------------------------ families


def poisson_grid(spec: LinearSystemSpec, rng: np.random.Generator) -> LinearSystem:
    """Variable-coefficient 5-point Poisson on an m × m grid (see the module docstring)."""
    from ..solvers.linalg.model_problems import poisson_2d

    m = spec.size
    h = 1.0 / (m + 1)
    t = np.arange(m + 2) * h  # nodes including the boundary, x fastest
    grid = np.stack(np.meshgrid(t, t), axis=-1).reshape(-1, 2)
    g = gaussian_field(grid, spec.correlation, rng).reshape(m + 2, m + 2)  # [y, x]
    k = np.exp(spec.log_std * g)
    kx = 0.5 * (k[1:-1, :-1] + k[1:-1, 1:])  # x-faces: (row, face) -> (face, row) below
    ky = 0.5 * (k[:-1, 1:-1] + k[1:, 1:-1])  # y-faces: (face, column)
    matrix = poisson_2d(m, np.stack([kx.T, ky]))
    interior = grid.reshape(m + 2, m + 2, 2)[1:-1, 1:-1].reshape(-1, 2)
    b = gaussian_field(interior, spec.correlation, rng)
    return _solved(matrix, b, interior, spec.log_std * g[1:-1, 1:-1].ravel(), ordering=None)


@functools.lru_cache(maxsize=4)
def _mesh(kind: str, size: int):
    from ..solvers import mesh as meshes

    h = 1.0 / size
    return meshes.box(h) if kind == "box" else getattr(meshes, kind)(h)


def _assembled(mesh, kind: str, cell_coefficient: np.ndarray | None) -> sp.csr_matrix:
    """The P1 matrix ``kind`` (stiffness or mass) with an optional per-cell factor."""
    import warp as wp

    from ..solvers.mesh import element_triplets

    cells = mesh.cells
    k = cells.shape[1]
    values = element_triplets(mesh, kind, wp.float64).numpy().reshape(len(cells), k, k)
    if cell_coefficient is not None:
        values = values * cell_coefficient[:, None, None]
    rows = np.repeat(cells[:, :, None], k, axis=2)
    cols = np.repeat(cells[:, None, :], k, axis=1)
    n = len(mesh.points)
    return sp.csr_matrix((values.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))


def _boundary_nodes(mesh) -> np.ndarray:
    """Vertices on boundary facets (facets that belong to one cell only)."""
    from ..solvers.mesh.checks import facets_of

    facets = np.sort(facets_of(mesh.cells), axis=1)
    unique, count = np.unique(facets, axis=0, return_counts=True)
    return np.unique(unique[count == 1])


def mesh_step(spec: LinearSystemSpec, rng: np.random.Generator) -> LinearSystem:
    """One implicit heat or wave step on a triangle mesh (see the module docstring)."""
    mesh = _mesh(spec.domain, spec.size)
    points = mesh.points[:, :2]
    g = gaussian_field(points, spec.correlation, rng)
    cell_log = g[mesh.cells].mean(axis=1) * spec.log_std
    stiffness = _assembled(mesh, "stiffness", np.exp(cell_log))
    mass = _assembled(mesh, "mass", None)
    tau = spec.dt if spec.systems == "heat_mesh" else spec.dt**2
    u = gaussian_field(points, spec.correlation, rng)
    boundary = _boundary_nodes(mesh)
    angle = np.arctan2(points[boundary, 1], points[boundary, 0])
    start = rng.uniform(-np.pi, np.pi)
    arc = boundary[np.argsort(np.mod(angle - start, 2 * np.pi))[: max(1, len(boundary) // 4)]]
    free = np.setdiff1d(np.arange(len(points)), arc)
    matrix = sp.csr_matrix((mass + tau * stiffness)[free][:, free])
    b = (mass @ u)[free]
    return _solved(matrix, b, points[free], spec.log_std * g[free],
                   ordering=spec.ordering)


def poisson_tet(spec: LinearSystemSpec, rng: np.random.Generator) -> LinearSystem:
    """3-D Poisson on tetrahedra of the unit box (see the module docstring)."""
    mesh = _mesh("box", spec.size)
    g = gaussian_field(mesh.points, spec.correlation, rng)
    stiffness = _assembled(mesh, "stiffness", np.exp(spec.log_std * g[mesh.cells].mean(axis=1)))
    mass = _assembled(mesh, "mass", None)
    free = np.setdiff1d(np.arange(len(mesh.points)), _boundary_nodes(mesh))
    f = gaussian_field(mesh.points, spec.correlation, rng)
    matrix = sp.csr_matrix(stiffness[free][:, free])
    return _solved(matrix, (mass @ f)[free], mesh.points[free], spec.log_std * g[free],
                   ordering=spec.ordering)


GENERATORS = {"poisson_grid": poisson_grid, "heat_mesh": mesh_step, "wave_mesh": mesh_step,
              "poisson_tet": poisson_tet}


def _solved(matrix: sp.csr_matrix, b: np.ndarray, points: np.ndarray,
            log_coefficient: np.ndarray, *, ordering: str | None) -> LinearSystem:
    """The system with its reference solution, its unknowns renumbered by reverse
    Cuthill–McKee for ``ordering="rcm"`` (A → P A Pᵀ, b, points and coefficients → P ·; any
    other value keeps the numbering)."""
    matrix = sp.csr_matrix(matrix)
    matrix.sum_duplicates()
    if ordering == "rcm":
        order = reverse_cuthill_mckee(matrix)
        matrix = matrix[order][:, order]
        b, points, log_coefficient = b[order], points[order], log_coefficient[order]
    matrix.sort_indices()
    x = _amg_reference(matrix, b) if matrix.shape[0] > DIRECT_LIMIT else None
    if x is None:
        x = spla.spsolve(matrix.tocsc(), b)
    if not np.isfinite(x).all():
        raise ValueError("the reference solve gave NaN/Inf: the matrix is singular to working "
                         "precision (lower log_std)")
    return LinearSystem(matrix, b, x, points, log_coefficient)


def _amg_reference(matrix: sp.csr_matrix, b: np.ndarray) -> np.ndarray | None:
    """x of Ruge–Stüben AMG-PCG to a relative residual of $10^{-12}$ in at most
    :data:`REFERENCE_ITERATIONS` iterations: its last iterate, or where that is off by more
    than :data:`REFERENCE_RTOL` (true residual $\\|b - A x\\| / \\|b\\|$) the iterate of the
    least one; None where that is off by more too (a coefficient contrast AMG cannot resolve:
    the caller solves directly)."""
    import pyamg

    tolerance = REFERENCE_RTOL * np.linalg.norm(b)
    best = [np.inf, None]

    def keep_best(iterate: np.ndarray) -> None:
        residual = np.linalg.norm(b - matrix @ iterate)
        if residual < best[0]:
            best[:] = residual, iterate.copy()

    x = pyamg.ruge_stuben_solver(matrix).solve(b, tol=1e-12, accel="cg",
                                               maxiter=REFERENCE_ITERATIONS, callback=keep_best)
    if np.linalg.norm(b - matrix @ x) <= tolerance:
        return x
    residual, x = best
    return x if residual <= tolerance else None


def make_system(spec: LinearSystemSpec, seed: int) -> LinearSystem:
    """Sample ``seed`` of the dataset, from ``default_rng([spec.seed, seed])``."""
    return GENERATORS[spec.systems](spec, np.random.default_rng([spec.seed, seed]))


# ------------------------------------------------------------------------------- storage


SYSTEMS_METADATA = {
    "n": ("unknowns of the system", "1"),
    "nnz": ("stored entries of the matrix", "1"),
    "indptr": ("CSR row offsets of each matrix, one sample after another", "1"),
    "indices": ("CSR column of each stored entry", "1"),
    "data": ("value of each stored matrix entry", "1"),
    "b": ("right-hand side b of A x = b", "1"),
    "x": ("solution x of A x = b", "1"),
    "log_coefficient": ("natural log of the diffusion coefficient at the node", "1"),
    **{f"node_{c}": (f"{c} coordinate of the node", "m") for c in "xyz"},
}
"""CF ``(long_name, units)`` of a systems shard's variables (the systems are dimensionless)."""


def systems_dataset(systems: list[LinearSystem], seeds: list[int], attrs: dict) -> xr.Dataset:
    """Samples end to end in one dataset (see the module docstring for the layout), with CF
    metadata on every variable."""
    cat = np.concatenate
    points = cat([s.points for s in systems])
    variables = {
        "n": ("sample", np.array([s.matrix.shape[0] for s in systems])),
        "nnz": ("sample", np.array([s.matrix.nnz for s in systems])),
        "indptr": ("row", cat([s.matrix.indptr for s in systems]).astype(np.int64)),
        "indices": ("entry", cat([s.matrix.indices for s in systems]).astype(np.int32)),
        "data": ("entry", cat([s.matrix.data for s in systems])),
        "b": ("node", cat([s.b for s in systems])),
        "x": ("node", cat([s.x for s in systems])),
        "log_coefficient": ("node", cat([s.log_coefficient for s in systems])),
        **{f"node_{'xyz'[a]}": ("node", points[:, a]) for a in range(points.shape[1])},
    }
    return with_cf_metadata(xr.Dataset(variables, coords={"sample": np.asarray(seeds)},
                                       attrs=attrs), SYSTEMS_METADATA)


def read_systems(path: str | Path, allow_partial: bool = False) -> list[LinearSystem]:
    """The samples of one shard file, or of every shard of a folder, in order.

    Args:
        path: a shard file, a split folder of a generated dataset (``folder / "train"``,
            checked against the dataset's manifest) or a folder of shards.
        allow_partial: read a split of a dataset whose generation has not finished (no
            manifest).

    Raises:
        ValueError: see :func:`~physml.datasets.store.checked_shards` (an incomplete dataset,
            a missing shard, no shards).
    """
    path = Path(path)
    if path.is_dir() and path.name in SPLITS:
        files = checked_shards(path.parent, path.name, allow_partial)
    else:
        splits = [name for name in SPLITS if (path / name).is_dir()]
        if splits:
            raise ValueError(f"{str(path)!r} is a dataset with splits ({', '.join(splits)}): "
                             f"read one split's folder, read_systems({str(path / splits[0])!r})")
        files = checked_shards(path, None)
    systems = []
    for file in files:
        with xr.open_dataset(file, engine="h5netcdf") as ds:
            ds = ds.load()
        n, nnz = ds["n"].values, ds["nnz"].values
        rows, entries = np.cumsum([0, *(n + 1)]), np.cumsum([0, *nnz])
        nodes = np.cumsum([0, *n])
        axes = [ds[f"node_{c}"].values for c in "xyz" if f"node_{c}" in ds]
        for k in range(len(n)):
            indptr = ds["indptr"].values[rows[k] : rows[k + 1]]
            span = slice(entries[k], entries[k + 1])
            node = slice(nodes[k], nodes[k + 1])
            matrix = sp.csr_matrix((ds["data"].values[span], ds["indices"].values[span], indptr),
                                   shape=(n[k], n[k]))
            systems.append(LinearSystem(matrix, ds["b"].values[node], ds["x"].values[node],
                                        np.stack([a[node] for a in axes], axis=1),
                                        ds["log_coefficient"].values[node]))
    return systems


def warm_systems_cache(spec: LinearSystemSpec, device: str) -> None:
    """Compile the Warp kernels a family uses (mesh assembly) in this process, before any
    worker starts; the grid family uses none."""
    if spec.systems == "poisson_grid":
        return
    quiet_warp(device)
    mesh = _mesh("box" if spec.systems == "poisson_tet" else spec.domain, spec.size)
    for kind in ("stiffness", "mass"):
        _assembled(mesh, kind, None)


def write_systems_shard(task) -> str:
    """Generate and write one shard (a :class:`~physml.datasets.generate.ShardTask`)."""
    from .store import write_dataset

    quiet_warp(task.device)
    spec = LinearSystemSpec.model_validate(yaml.safe_load(task.spec_yaml))
    systems = [make_system(spec, seed) for seed in task.seeds]
    attrs = {"systems": spec.systems, "split": task.split, "seed": spec.seed,
             "physml_version": __version__, "spec": task.spec_yaml,
             "equation": _EQUATIONS[spec.systems]}
    Path(task.path).parent.mkdir(parents=True, exist_ok=True)
    write_dataset(systems_dataset(systems, list(task.seeds), attrs), task.path)
    return task.path


_EQUATIONS = {
    "poisson_grid": "-div(k grad u) = f, 5-point, Dirichlet",
    "heat_mesh": "(M + dt K_k) u+ = M u, P1 triangles, Dirichlet arc",
    "wave_mesh": "(M + dt^2 K_k) u+ = M (2u - u-), P1 triangles, Dirichlet arc",
    "poisson_tet": "-div(k grad u) = f, P1 tetrahedra, Dirichlet",
}
