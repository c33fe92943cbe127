"""Benchmark dataset generation on top of :mod:`physml.solvers` (no PyTorch needed).

* Specs (the YAML files of ``physml datasets generate``): :func:`load_spec`,
  :class:`DatasetSpec` (a grid), :class:`MeshDatasetSpec` (a mesh), :class:`LinearSystemSpec`
  (sparse SPD systems).
* Their ingredients: :data:`PROBLEMS` (the standard PDEs) and :func:`build_solver`,
  :data:`INITIAL_CONDITIONS`.
* Linear systems: :func:`make_system`, :func:`read_systems`.
* Generation itself is :func:`physml.datasets.generate.generate` (plan, solve and write shards;
  resume); reading and writing field data is :mod:`physml.io`.

Each name is imported from its module on first use, so importing the package loads neither
Warp nor the solvers.
"""

from typing import TYPE_CHECKING

from ..solvers.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .initial_conditions import INITIAL_CONDITIONS as INITIAL_CONDITIONS
    from .linear_systems import LinearSystemSpec as LinearSystemSpec
    from .linear_systems import make_system as make_system
    from .linear_systems import read_systems as read_systems
    from .mesh_spec import MeshDatasetSpec as MeshDatasetSpec
    from .problems import PROBLEMS as PROBLEMS
    from .problems import build_solver as build_solver
    from .spec import DatasetSpec as DatasetSpec
    from .spec import load_spec as load_spec

__all__ = [
    "DatasetSpec", "INITIAL_CONDITIONS", "LinearSystemSpec", "MeshDatasetSpec", "PROBLEMS",
    "build_solver", "load_spec", "make_system", "read_systems",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "initial_conditions": ("INITIAL_CONDITIONS",),
        "linear_systems": ("LinearSystemSpec", "make_system", "read_systems"),
        "mesh_spec": ("MeshDatasetSpec",),
        "problems": ("PROBLEMS", "build_solver"),
        "spec": ("DatasetSpec", "load_spec"),
    },
)
