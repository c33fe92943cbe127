r"""The ``mesh_pde`` runs that are one solve per mesh:

- ``poisson``: $-\Delta u = f$, $u = g$ on the Dirichlet parts, $\partial_n u = q$ on the
  Neumann parts, zero flux elsewhere (:func:`physml.solvers.mesh.poisson`). Errors against
  ``pde.exact`` on the case's mesh and on the ``refine`` meshes give the observed orders.
- ``geodesic``: distance to the vertex nearest ``pde.source_point`` by the heat method
  (:func:`physml.solvers.mesh.heat_geodesic`), compared with ``pde.exact`` if given; over
  the vertices it reaches (inf on the connected parts without the source, counted in
  ``unreached_vertices``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..solvers import mesh as pm
from .kind import OnStep
from .mesh_pde_assembly import build_mesh, dirichlet_data, neumann_load, stiffness_and_mass
from .mesh_pde_results import Result, summary_units
from .mesh_pde_spec import MeshPDECase
from .run_folder import CONFIG, write_text


def _order(hs: list[float], errors: list[float]) -> float | None:
    """Least-squares slope of log(error) against log(h); None with fewer than two meshes."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0]) if len(hs) > 1 else None


def solve_poisson(case: MeshPDECase, mesh: pm.Mesh) -> tuple[dict, dict[str, np.ndarray]]:
    """One Poisson solve: its figures (relative residual of the free rows, errors against
    ``pde.exact``: relative L2 $\\|e\\|_M/\\|u_I\\|_M$, relative H1 seminorm
    $\\|e\\|_K/\\|u_I\\|_K$, max; where $u_I$ is zero at every vertex, the absolute
    $\\|e\\|_M$, $\\|e\\|_K$ as ``l2_error``, ``h1_error``) and its fields."""
    fixed, g = dirichlet_data(case, mesh)
    if len(fixed) == 0:
        parts = ", ".join(b.part for b in case.boundary if b.kind == "dirichlet")
        raise ValueError(f"boundary: no vertex of the mesh lies on the Dirichlet part(s) "
                         f"{parts} (a closed surface has no boundary), and Poisson's problem "
                         "needs one")
    f = case.pde.source.values(mesh.points)
    flux = neumann_load(case, mesh)
    start = time.perf_counter()
    u = pm.poisson(mesh, f, fixed, g, flux)
    seconds = time.perf_counter() - start
    K, M = stiffness_and_mass(mesh)
    free = np.setdiff1d(np.arange(mesh.n_vertices), fixed)
    boundary_values = np.zeros(mesh.n_vertices)
    boundary_values[fixed] = g
    rhs = (M @ f + flux - K @ boundary_values)[free]  # K_II u_I = rhs
    residual = np.linalg.norm((K @ u - M @ f - flux)[free]) / max(np.linalg.norm(rhs), 1e-300)
    figures = {"h": mesh.edge_length(), "vertices": mesh.n_vertices, "solve_s": seconds,
               "residual": float(residual)}
    fields = {"u": u, "source": f}
    if case.pde.exact is not None:
        exact = case.pde.exact.values(mesh.points)
        e = u - exact
        # against the nodal interpolant I_h u: e^T K e is |u_h - I_h u|_1^2, which may converge
        # faster than the true H1 error |u_h - u|_1 (0.82 against 0.66 on the L-shape)
        if np.any(exact):
            figures |= {"rel_l2": float(np.sqrt(e @ M @ e / (exact @ M @ exact))),
                        "rel_h1": float(np.sqrt(e @ K @ e / (exact @ K @ exact)))}
        else:  # nothing to divide by
            figures |= {"l2_error": float(np.sqrt(e @ M @ e)),
                        "h1_error": float(np.sqrt(e @ K @ e))}
        figures["max_error"] = float(np.abs(e).max())
        fields |= {"exact": exact, "error": e}
    return figures, fields


def compile_solve(mesh: pm.Mesh, solve) -> None:
    """Compile the kernels of ``solve(mesh)`` for ``mesh``'s kind of cell and device by
    running it on the mesh's first cell alone, so that a timed solve times the solve, not
    Warp's first compilation (seconds on a cold kernel cache)."""
    cell = mesh.cells[0]
    solve(pm.Mesh(mesh.points[cell], np.arange(len(cell))[None], device=str(mesh.device)))


def run_poisson(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                on_step: OnStep) -> Result:
    """Solve on the case's mesh, then on each ``refine`` mesh; orders from all of them. The
    history (and the summary's ``levels``) holds one record per mesh, its ``step`` the mesh's
    index: 0 the case's mesh, k the k-th ``refine`` mesh."""
    write_text(folder / CONFIG, case.to_yaml())
    compile_solve(mesh, lambda cell: pm.poisson(cell, np.zeros(cell.n_vertices), [0], 0.0))
    levels = []
    for step, h in enumerate([None, *case.refine]):
        figures, fields = solve_poisson(case, mesh if h is None else build_mesh(case, h))
        levels.append({"step": step, **figures})
        error = f", rel L2 {figures['rel_l2']:.2e}" if "rel_l2" in figures else ""
        on_step({"step": step, "status": f"mesh h {figures['h']:.3g} ({figures['vertices']} "
                                          f"vertices): residual {figures['residual']:.1e}"
                                          f"{error}", **figures})
        if h is None:
            kept, summary = fields, figures
    summary["levels"] = levels
    if "rel_l2" in summary:
        hs = [level["h"] for level in levels]
        summary |= {"order_l2": _order(hs, [level["rel_l2"] for level in levels]),
                    "order_h1": _order(hs, [level["rel_h1"] for level in levels])}
        expected = case.expected_orders
        if expected is not None and len(levels) > 1:
            summary |= {"order_l2_expected": expected["l2"], "order_h1_expected": expected["h1"]}
    summary["units"] = summary_units(summary)
    return Result(mesh, kept, summary, levels)


def run_geodesic(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                 on_step: OnStep) -> Result:
    """Heat-method distance from the vertex nearest ``pde.source_point``; the history is the
    summary as step 0. The maximum distance and the errors are over the reached vertices."""
    write_text(folder / CONFIG, case.to_yaml())
    point = np.pad(case.pde.source_point, (0, 3))[: mesh.dim]
    source = int(np.argmin(np.linalg.norm(mesh.points - point, axis=1)))
    compile_solve(mesh, lambda cell: pm.heat_geodesic(cell, 0))
    start = time.perf_counter()
    distance = pm.heat_geodesic(mesh, source)
    reached = np.isfinite(distance)
    summary = {"vertices": mesh.n_vertices, "h": mesh.edge_length(), "source": source,
               "solve_s": time.perf_counter() - start,
               "max_distance": float(distance[reached].max())}
    if not reached.all():
        summary["unreached_vertices"] = int((~reached).sum())
    fields = {"distance": distance}
    if case.pde.exact is not None:
        exact = case.pde.exact.values(mesh.points)
        error = distance - exact
        summary |= {"max_error": float(np.abs(error[reached]).max()),
                    "rel_max_error": float(np.abs(error[reached]).max()
                                           / np.abs(exact[reached]).max())}
        fields |= {"exact": exact, "error": error}
    error = f", max error {summary['max_error']:.2e}" if "max_error" in summary else ""
    on_step({"step": 0, "status": f"{mesh.n_vertices} vertices{error}"})
    return Result(mesh, fields, summary, [{"step": 0, **summary}])
