r"""PDEs on meshes, ``kind: mesh_pde``: Poisson, heat, heat-method geodesics and shape
optimisation through a differentiable Poisson solve, on a mesh file or a generated domain.

- ``poisson`` and ``geodesic``: one solve per mesh (:mod:`~.mesh_pde_solves`);
- ``heat``: the θ-scheme, checked against exact facts (:mod:`~.mesh_pde_heat`);
- ``shape_optimisation``: Adam on the vertex positions through a differentiable Poisson solve
  (:mod:`~.mesh_pde_shape_optimisation`).

The case's schema is :mod:`~.mesh_pde_spec`; the runners solve on :mod:`~.mesh_pde_assembly`'s
discrete problem and hand their :class:`~.mesh_pde_results.Result` to
:mod:`~.mesh_pde_results`.

Run folder::

    config.yaml      the resolved case
    checkpoint.pt    heat: step and history; shape_optimisation: positions, Adam state and
                     history (Poisson and geodesic runs are one solve: none)
    frames.f64       heat: the saved frames, raw float64, one appended per save
    metrics.json     the summary (errors, orders, residuals, conservation, timings) and history
    solution.vtu     the (final) mesh with the fields attached, for ParaView
    fields.h5        the same fields on the mesh (node dim and topology, see
                     :func:`physml.io.read_mesh_dataset`); heat: every saved frame
    solution.png     the fields rendered (tripcolor; plot_trisurf on a surface)
    convergence.png  poisson with pde.exact and refine: errors against h (log-log), with the
                     expected slopes on the L-shape with its corner singularity
    decay.png        heat without Dirichlet parts: log ||u - mean||_M against t with the
                     expected slope, and the rate's error between saves against the tolerance
    losses.png       shape_optimisation: the loss terms against the step

A case::

    kind: mesh_pde
    name: poisson_lshape
    mesh: {domain: l_shape, h: 0.05}
    pde: {name: poisson, source: 0, exact: {kind: corner_singular}}
    boundary: [{part: all, kind: dirichlet, value: {kind: corner_singular}}]
    refine: [0.1, 0.025]
"""

from __future__ import annotations

from pathlib import Path

from ..devices import Stopwatch
from ..solvers import mesh as pm
from ..solvers.mesh.checks import RepairableMeshError
from .kind import CaseKind, OnStep
from .mesh_pde_assembly import build_mesh, part_vertices
from .mesh_pde_heat import run_heat
from .mesh_pde_results import headline, write_results
from .mesh_pde_shape_optimisation import run_shape_optimisation
from .mesh_pde_solves import run_geodesic, run_poisson
from .mesh_pde_spec import MeshPDECase
from .run_folder import CHECKPOINT

RUNNERS = {"poisson": run_poisson, "heat": run_heat, "geodesic": run_geodesic,
           "shape_optimisation": run_shape_optimisation}


def run(case: MeshPDECase, folder: Path, resume: bool = False,
        on_step: OnStep | None = None) -> dict:
    """Build the mesh, run the PDE's runner, write the run folder; returns the summary, whose
    ``threshold`` and ``passed`` are null where the run checks no target and whose ``wall_s``
    is the run's seconds over every resumed part, its results' writing included (a runner
    that checkpoints adds the seconds of the parts before to ``clock``)."""
    with Stopwatch(case.device) as clock:
        try:
            mesh = build_mesh(case)
        except RepairableMeshError as error:  # the case file's cure, not Python's
            raise ValueError(f"{error.problem}; set mesh.repair: true to "
                             f"{error.remedy}") from error
        _check_boundary_parts(case, mesh)
        result = RUNNERS[case.pde.name](case, mesh, folder, resume, on_step or (lambda r: None),
                                        clock)
        result.summary = {"pde": case.pde.name, "threshold": None, "passed": None,
                          **result.summary}
        write_results(case, result, folder, clock)
    return result.summary


def _check_boundary_parts(case: MeshPDECase, mesh: pm.Mesh) -> None:
    """Refuse, naming ``boundary[i].part`` before anything is written, a part the mesh lacks
    (for a mesh that tags no boundary part, ``part: all`` is suggested) and a Dirichlet part
    with no vertex (``all`` on a closed surface, which has no boundary)."""
    for i, spec in enumerate(case.boundary):
        if spec.part != "all" and not mesh.boundary_parts():
            raise ValueError(f"boundary[{i}].part: the mesh tags no boundary part (a mesh file "
                             f"without physical groups), so none is named {spec.part!r}; use "
                             "part: all, its whole boundary")
        try:
            vertices = part_vertices(mesh, spec.part)
        except ValueError as error:
            raise ValueError(f"boundary[{i}].part: {error}") from error
        if spec.kind == "dirichlet" and len(vertices) == 0:
            raise ValueError(f"boundary[{i}].part: no vertex of the mesh lies on part "
                             f"{spec.part!r}: the mesh is a closed surface, which has no "
                             "boundary; leave out the dirichlet entry")


def describe(case: MeshPDECase) -> str:
    """One line: the PDE, the mesh and the amount of work."""
    mesh = case.mesh
    where = mesh.file or (f"{mesh.domain} level {mesh.level}" if mesh.domain == "icosphere"
                          else f"{mesh.domain} h={mesh.h:g}")
    work = {"heat": lambda: f"{case.time.steps} steps of dt={case.time.dt:g} "
                            f"theta={case.time.theta:g}",
            "shape_optimisation": lambda: f"{case.optimisation.steps} Adam steps",
            }.get(case.pde.name, lambda: f"{1 + len(case.refine)} mesh(es)")()
    return f"{case.pde.name} on {where}, {work}"


KIND = CaseKind(
    name="mesh_pde",
    summary="Poisson, heat, geodesics and shape optimisation on triangle/tetrahedral meshes",
    schema=MeshPDECase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.total_steps,
    checkpoint=CHECKPOINT,
)
