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

import itertools
import time
from pathlib import Path

import numpy as np

from ..solvers import mesh as pm
from .kind import OnStep
from .mesh_pde_assembly import build_mesh, dirichlet_data, neumann_load, stiffness_and_mass
from .mesh_pde_results import Result, summary_units
from .mesh_pde_spec import FieldSpec, MeshPDECase
from .run_folder import CONFIG, write_text


def _orbit(barycentric: tuple[float, ...], weight: float) -> list[tuple[tuple, float]]:
    """The distinct permutations of a quadrature point's barycentric coordinates, each with
    ``weight``."""
    return [(point, weight) for point in sorted(set(itertools.permutations(barycentric)))]


def _rule(*orbits: list[tuple[tuple, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The barycentric points (q, k + 1) and weights (q,) of the ``orbits`` together."""
    points, weights = zip(*(pair for orbit in orbits for pair in orbit))
    return np.array(points), np.array(weights)


_R15 = np.sqrt(15.0)
QUADRATURE = {
    2: _rule(_orbit((1 / 3, 1 / 3, 1 / 3), 9 / 40),
             _orbit(((9 - 2 * _R15) / 21, (6 + _R15) / 21, (6 + _R15) / 21), (155 + _R15) / 1200),
             _orbit(((9 + 2 * _R15) / 21, (6 - _R15) / 21, (6 - _R15) / 21), (155 - _R15) / 1200)),
    3: _rule(_orbit((0.0455037041256496, 0.0455037041256496, 0.4544962958743504,
                     0.4544962958743504), 0.042546020777081466),
             _orbit((0.0927352503108912, 0.0927352503108912, 0.0927352503108912,
                     0.7217942490673264), 0.07349304311636196),
             _orbit((0.3108859192633006, 0.3108859192633006, 0.3108859192633006,
                     0.0673422422100982), 0.11268792571801585)),
}
"""Quadrature rules exact for polynomials of degree 5, by cell dimension: barycentric points
(q, k + 1) and weights (q,) summing to 1 (fractions of the cell's measure); triangles:
Dunavant's 7 points, tetrahedra: 14 points with positive weights."""

ROUND_OFF = 1e-10
"""A relative L2 error below this on a mesh is round-off (the exact solution lies in the P1
space, as a constant does): no order is fitted to it."""


def errors_against(exact: FieldSpec, mesh: pm.Mesh, u: np.ndarray) -> dict[str, float]:
    r"""The errors of the P1 solution ``u`` (n,) against the closed form ``exact`` and its
    norms: $\|u_h - u\|$ and $|u_h - u|_1$ (keys ``l2_error``, ``h1_error``), $\|u\|$ and
    $|u|_1$ (``l2_norm``, ``h1_norm``), the L2 norm and the H1 seminorm. Each cell's integral
    is a rule of :data:`QUADRATURE` (degree 5): $u_h$ linear on the cell, its gradient
    constant; $u$ from the closed form at the rule's points, its gradient by central
    differences of step $10^{-6}$ times the mesh's extent, projected onto the cell's plane (a
    surface's tangential gradient). Cost: $1 + 2d$ evaluations of the closed form at 7
    (triangle) or 14 (tetrahedron) points a cell."""
    barycentric, weights = QUADRATURE[mesh.cell_dim]
    corners = mesh.points[mesh.cells]  # (m, k + 1, d)
    edges = np.swapaxes(corners[:, 1:] - corners[:, :1], 1, 2)  # J: (m, d, k)
    dual = edges @ np.linalg.inv(np.swapaxes(edges, 1, 2) @ edges)  # J (J^T J)^-1: (m, d, k)
    nodal = u[mesh.cells]
    gradient_h = np.einsum("mdk,mk->md", dual, nodal[:, 1:] - nodal[:, :1])
    points = np.einsum("qj,mjd->mqd", barycentric, corners).reshape(-1, mesh.dim)
    step = 1e-6 * np.ptp(mesh.points, axis=0).max()
    shifts = step * np.eye(mesh.dim)
    gradient = np.stack([(exact.values(points + s) - exact.values(points - s)) / (2 * step)
                         for s in shifts], axis=1).reshape(len(corners), -1, mesh.dim)
    gradient = np.einsum("mdk,mek,mqe->mqd", dual, edges, gradient)  # J (J^T J)^-1 J^T grad u
    values = exact.values(points).reshape(len(corners), -1)
    u_h = nodal @ barycentric.T  # (m, q)
    squares = {"l2_error": (u_h - values) ** 2,
               "h1_error": np.sum((gradient_h[:, None] - gradient) ** 2, axis=2),
               "l2_norm": values ** 2, "h1_norm": np.sum(gradient ** 2, axis=2)}
    w = mesh.measures()[:, None] * weights  # (m, q)
    return {key: float(np.sqrt(np.sum(w * square))) for key, square in squares.items()}


def _order(hs: list[float], errors: list[float]) -> float | None:
    """Least-squares slope of log(error) against log(h); None with fewer than two meshes."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0]) if len(hs) > 1 else None


def solve_poisson(case: MeshPDECase, mesh: pm.Mesh) -> tuple[dict, dict[str, np.ndarray]]:
    """One Poisson solve: its figures (relative residual of the free rows; against
    ``pde.exact``, the relative errors of :func:`errors_against`, L2 and H1 seminorm, as
    ``rel_l2`` and ``rel_h1``, or where the exact solution's norm is zero the absolute error,
    as ``l2_error`` or ``h1_error``; those of $u_h - I_h u$, $I_h u$ the nodal interpolant,
    in the mass and stiffness norms, $\\|e\\|_M/\\|I_h u\\|_M$ and $\\|e\\|_K/\\|I_h u\\|_K$,
    as ``rel_l2_nodal`` and ``rel_h1_nodal`` where both norms are non-zero; and the max
    nodal error) and its fields."""
    fixed, g = dirichlet_data(case, mesh)
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
        errors = errors_against(case.pde.exact, mesh, u)
        exact = case.pde.exact.values(mesh.points)
        e = u - exact
        for norm, matrix in (("l2", M), ("h1", K)):
            if errors[f"{norm}_norm"] == 0:  # nothing to divide by
                figures[f"{norm}_error"] = errors[f"{norm}_error"]
                continue
            figures[f"rel_{norm}"] = errors[f"{norm}_error"] / errors[f"{norm}_norm"]
            if exact @ matrix @ exact > 0:
                figures[f"rel_{norm}_nodal"] = float(np.sqrt(e @ matrix @ e
                                                             / (exact @ matrix @ exact)))
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
        at_round_off = any(level["rel_l2"] < ROUND_OFF for level in levels)
        summary |= {f"order_{norm}": None if at_round_off or f"rel_{norm}" not in summary
                    else _order(hs, [level[f"rel_{norm}"] for level in levels])
                    for norm in ("l2", "h1")}
        expected = case.expected_orders
        if at_round_off and len(levels) > 1:
            summary["orders_skipped"] = ("the errors are at round-off (the exact solution lies "
                                         "in the P1 space)")
        elif expected is not None and len(levels) > 1:
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
