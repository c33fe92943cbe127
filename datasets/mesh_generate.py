"""Shards of a mesh dataset (:mod:`physml.datasets.mesh_spec`): solve its samples on the mesh
and write them with the topology beside the fields.

The planning and seeds are :mod:`physml.datasets.generate`'s, the resume
:mod:`~physml.datasets.output_folder`'s and the Dask engine
:mod:`~physml.datasets.shard_engines`'; this module is what differs for a mesh: one mesh per
dataset (built once per process), random nodal fields, the mesh solvers, and files in the layout
of :mod:`physml.datasets.mesh_store` with a leading ``sample`` dimension, so
:func:`physml.io.open_dataset` joins the shards along ``sample`` and
:func:`~physml.datasets.mesh_store.mesh_of` recovers the mesh from the joined dataset.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import yaml

from .._version import __version__
from ..solvers import mesh as pm
from ..solvers.runtime import quiet_warp
from .grid_generate import SAME_FAILURE
from .memory import check_shard_fits
from .mesh_spec import MESH_FIELDS, MeshDatasetSpec, MeshSpec
from .mesh_store import mesh_dataset
from .spec import SpecRefused
from .store import in_storage_dtype, write_dataset

METADATA = {"f": ("source term f", "1"), "kappa": ("diffusivity", "m2 s-1"),
            "shift": ("reaction coefficient sigma of -kappa Laplacian u + sigma u = f", "s-1")}


KEPT_MESHES = 4
"""Meshes a process keeps for the shards that follow (the least recently used dropped): a
dataset's shards share one, and a process that generates many datasets keeps a few."""


@functools.lru_cache(maxsize=KEPT_MESHES)
def _mesh(source: MeshSpec, device: str) -> pm.Mesh:
    return source.build().to(device)


def dataset_mesh(spec: MeshDatasetSpec, device: str = "cpu") -> pm.Mesh:
    """The mesh of ``spec`` on ``device`` (generated or read once per process for the shards
    that follow, :data:`KEPT_MESHES` kept; a frozen :class:`~physml.datasets.mesh_spec.MeshSpec`
    is its own cache key)."""
    return _mesh(spec.mesh, device)


def random_field(spec: MeshDatasetSpec, mesh: pm.Mesh, seed: int) -> np.ndarray:
    """(n,) random field of sample ``seed``, from ``default_rng([spec.seed, seed])``."""
    rng = np.random.default_rng([spec.seed, seed])
    field = spec.initial_condition
    return MESH_FIELDS[field.kind](mesh.points, rng, **field.options)


def solve_sample(spec: MeshDatasetSpec, mesh: pm.Mesh, parameters: dict[str, float],
                 data: np.ndarray) -> np.ndarray:
    """The solution for the random field ``data``: (n_saves, n) states of ``heat_mesh``, or
    the (n,) solution of ``poisson_mesh``."""
    values = spec.values(parameters)
    if spec.is_transient:
        every = spec.solver.steps_per_save
        steps = every * (spec.n_saves - 1)
        states = pm.heat(mesh, data, dt=spec.t_end / steps, n_steps=steps, kappa=values["kappa"],
                         theta=spec.solver.theta)
        return states[::every]
    if mesh.boundary_vertices().size:
        return pm.poisson(mesh, data / values["kappa"])
    return pm.poisson(mesh, data / values["kappa"], dirichlet=[],
                      shift=values["shift"] / values["kappa"])


def equation_and_solver(spec: MeshDatasetSpec, mesh: pm.Mesh) -> tuple[str, str]:
    """What :func:`solve_sample` solves on ``mesh``, as text for a shard's attrs: the equation
    (``shift`` only on a closed surface) and the solver function."""
    if spec.is_transient:
        return ("u_t = kappa Laplacian u, zero Neumann on any boundary",
                f"{pm.__name__}.{pm.heat.__name__}")
    poisson = f"{pm.__name__}.{pm.poisson.__name__}"
    if mesh.boundary_vertices().size:
        return "-kappa Laplacian u = f, u = 0 on the boundary", poisson
    return "-kappa Laplacian u + shift u = f", poisson


def write_mesh_shard(task) -> str:
    """Solve the samples of one shard (a :class:`~physml.datasets.generate.ShardTask`) and
    write it atomically. Returns its path.

    Raises:
        FloatingPointError: a sample's solution is not finite, or its linear solve failed
            (naming its seed).
    """
    quiet_warp(task.device)
    spec = MeshDatasetSpec.model_validate(yaml.safe_load(task.spec_yaml))
    mesh = dataset_mesh(spec, task.device)
    data, solutions = [], []
    for seed in task.seeds:
        data.append(random_field(spec, mesh, seed))
        try:
            solution = solve_sample(spec, mesh, task.parameters, data[-1])
            failure = None if np.all(np.isfinite(solution)) else "the solution is not finite"
        except ArithmeticError as err:  # a ConvergenceError of the linear solve
            failure = str(err)
        if failure is not None:
            raise FloatingPointError(
                f"{task.path}: sample with seed {seed}: {failure}; shorter steps would not "
                "help (heat_mesh's theta-scheme is stable at any step, poisson_mesh is steady): "
                "change the parameters or the mesh; "
                f"{SAME_FAILURE}")
        solutions.append(solution)
    dtype = spec.storage_dtype
    if spec.is_transient:
        times = np.linspace(0.0, spec.t_end, spec.n_saves)
        fields = {"u": in_storage_dtype(np.stack(solutions), dtype, task.path)}
    else:
        times = None
        fields = {"f": in_storage_dtype(np.stack(data), dtype, task.path),
                  "u": in_storage_dtype(np.stack(solutions), dtype, task.path)}
    swept = spec.swept_parameters()
    constant = {k: v for k, v in spec.values(task.parameters).items() if k not in swept}
    if not spec.is_transient and mesh.boundary_vertices().size:
        constant.pop("shift", None)  # u = 0 on the boundary: solve_sample applies no shift
    equation, solver = equation_and_solver(spec, mesh)
    attrs = {"pde": spec.pde, "equation": equation, "mesh_source": spec.mesh.label,
             "split": task.split, "solver": solver,
             "initial_condition": spec.initial_condition.kind, "seed": spec.seed,
             "physml_version": __version__, "spec": task.spec_yaml, "device": task.device,
             **({"theta": spec.solver.theta, "steps_per_save": spec.solver.steps_per_save}
                if spec.is_transient else {}), **constant}
    sample_coords = {k: np.full(len(task.seeds), task.parameters[k]) for k in swept}
    ds = mesh_dataset(mesh, fields, times=times, samples=np.asarray(task.seeds),
                      sample_coords=sample_coords, attrs=attrs, metadata=METADATA)
    Path(task.path).parent.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, task.path)
    return task.path


def check_mesh_spec(spec: MeshDatasetSpec, device: str) -> None:
    """Build the mesh before any shard is written, refusing a degenerate or unreadable one,
    and a spec one of whose shards would not fit in this machine's memory
    (:func:`~physml.datasets.memory.check_shard_fits`: a ``heat_mesh`` sample holds all its
    ``steps_per_save * (n_saves - 1) + 1`` states while solved, a ``poisson_mesh`` one f and u).

    Raises:
        SpecRefused: naming the mesh source and the reason, or a shift on a mesh with a
            boundary.
        ValueError: naming the sizes of a shard too large.
    """
    try:
        mesh = dataset_mesh(spec, device)
    except ValueError as err:
        raise SpecRefused(f"mesh {spec.mesh.label}: {err}") from None
    if spec.is_transient:
        every = spec.solver.steps_per_save
        check_shard_fits(spec, every * (spec.n_saves - 1) + 1, mesh.n_vertices,
                         f"n_saves={spec.n_saves}, solver.steps_per_save={every}, mesh "
                         f"{spec.mesh.label}")
    else:
        check_shard_fits(spec, 2, mesh.n_vertices, f"mesh {spec.mesh.label}")
    if "shift" in spec.parameters and mesh.boundary_vertices().size:
        raise SpecRefused(f"parameters.shift: mesh {spec.mesh.label} has a boundary, where u = 0 "
                         "makes poisson_mesh well posed and no shift is applied; shift is for "
                         "closed surfaces")


def warm_mesh_kernels(spec: MeshDatasetSpec, device: str) -> None:
    """Compile the mesh kernels in this process (one assembly on a tiny mesh)."""
    tiny = pm.icosphere(0).to(device)
    pm.stiffness_matrix(tiny)
    pm.mass_matrix(tiny)
