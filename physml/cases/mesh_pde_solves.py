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

from ..devices import Stopwatch
from ..solvers import mesh as pm
from ..solvers.mesh.pde import require_grounded
from .kind import OnStep
from .mesh_pde_assembly import build_mesh, dirichlet_data, neumann_load, stiffness_and_mass
from .mesh_pde_results import Result
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


def _midpoints(*children: list[tuple[int, int]]) -> np.ndarray:
    """The barycentric corners (c, k + 1, k + 1) of ``children``, each a list of vertex
    pairs (i, j): the midpoint of the cell's vertices i and j (i = j: vertex i)."""
    k = max(j for child in children for _, j in child)
    eye = np.eye(k + 1)
    return np.array([[(eye[i] + eye[j]) / 2 for i, j in child] for child in children])


CHILDREN = {
    2: _midpoints([(0, 0), (0, 1), (0, 2)], [(0, 1), (1, 1), (1, 2)],
                  [(0, 2), (1, 2), (2, 2)], [(1, 2), (0, 2), (0, 1)]),
    3: _midpoints([(0, 0), (0, 1), (0, 2), (0, 3)], [(0, 1), (1, 1), (1, 2), (1, 3)],
                  [(0, 2), (1, 2), (2, 2), (2, 3)], [(0, 3), (1, 3), (2, 3), (3, 3)],
                  [(0, 1), (0, 2), (0, 3), (1, 3)], [(0, 1), (0, 2), (1, 2), (1, 3)],
                  [(0, 2), (0, 3), (1, 3), (2, 3)], [(0, 2), (1, 2), (1, 3), (2, 3)]),
}
"""The midpoint subdivision of a cell, by cell dimension k: the barycentric corners
(c, k + 1, k + 1) of its children, each of measure $2^{-k}$ of the cell's; triangles: 4 (three
at the corners, one in the middle), tetrahedra: 8 (four at the corners, the octahedron between
them cut along one diagonal into four, after Bey)."""

ROUND_OFF = 1e-10
"""A relative L2 error below this on a mesh is round-off (the exact solution lies in the P1
space, as a constant does): no order is fitted to it."""

ADAPT_TOLERANCE = 1e-3
"""A (sub-)cell's integral by :data:`QUADRATURE` is replaced by the sum over its
:data:`CHILDREN`, and no further, where the two agree to this fraction of that sum plus the
mean cell's contribution scaled to the sub-cell's measure (each squared norm then has an
estimated relative error of at most about twice this), or, for the errors, to
:data:`ROUND_OFF` of the norm so scaled (an error at round-off is noise at every scale)."""

ADAPT_DEPTH = 7
"""The deepest subdivision of a cell, whose sums over children are kept unchecked: the
smallest sub-cells have $2^{-7}$ of the cell's edge lengths."""


def errors_against(exact: FieldSpec, mesh: pm.Mesh, u: np.ndarray) -> dict[str, float]:
    r"""The errors of the P1 solution ``u`` (n,) against the closed form ``exact`` and its
    norms: $\|u_h - u\|$ and $|u_h - u|_1$ (keys ``l2_error``, ``h1_error``), $\|u\|$ and
    $|u|_1$ (``l2_norm``, ``h1_norm``), the L2 norm and the H1 seminorm. Each cell's integrals
    are a rule of :data:`QUADRATURE` (degree 5), checked against the same rule on its
    :data:`CHILDREN`; where any of the four disagree (:data:`ADAPT_TOLERANCE`), each child is
    checked in turn, down to :data:`ADAPT_DEPTH`, so that a gradient singular at a vertex
    (the L-shape's re-entrant corner) is integrated too. On a sub-cell: $u_h$ linear, its
    gradient constant; $u$ from the closed form at the rule's points, its gradient by central
    differences of step $10^{-6}$ times the mesh's extent, projected onto the cell's plane (a
    surface's tangential gradient). Cost: $1 + 2d$ evaluations of the closed form at
    $7 \cdot 5$ (triangle) or $14 \cdot 9$ (tetrahedron) points a cell, and $7 \cdot 4$ or
    $14 \cdot 8$ more for each (sub-)cell that disagrees (about 20 a level at the L-shape's
    corner)."""
    k, d = mesh.cell_dim, mesh.dim
    barycentric, weights = QUADRATURE[k]
    children = CHILDREN[k]
    corners = mesh.points[mesh.cells]  # (m, k + 1, d)
    edges = np.swapaxes(corners[:, 1:] - corners[:, :1], 1, 2)  # J: (m, d, k)
    dual = edges @ np.linalg.inv(np.swapaxes(edges, 1, 2) @ edges)  # J (J^T J)^-1: (m, d, k)
    tangent = None if d == k else dual @ np.swapaxes(edges, 1, 2)  # J (J^T J)^-1 J^T: (m, d, d)
    nodal = u[mesh.cells]
    gradient_h = np.einsum("mdk,mk->md", dual, nodal[:, 1:] - nodal[:, :1])
    measures = mesh.measures()
    step = 1e-6 * np.ptp(mesh.points, axis=0).max()
    shifts = step * np.eye(d)

    def integrals(cell: np.ndarray, simplices: np.ndarray, size: float) -> np.ndarray:
        """(s, 4) the four squared norms' integrals over the sub-cells of ``cell`` (s,) with
        barycentric corners ``simplices`` (s, k + 1, k + 1), each ``size`` of its cell."""
        at = barycentric @ simplices  # (s, q, k + 1)
        points = (at @ corners[cell]).reshape(-1, d)
        values = exact.values(points).reshape(at.shape[:2])
        gradient = np.stack([(exact.values(points + s) - exact.values(points - s)) / (2 * step)
                             for s in shifts]).reshape(d, *at.shape[:2])  # (d, s, q)
        if tangent is not None:
            gradient = np.einsum("sde,esq->dsq", tangent[cell], gradient)
        u_h = np.einsum("sqj,sj->sq", at, nodal[cell])
        squares = np.stack([(u_h - values) ** 2,
                            np.sum((gradient_h[cell].T[..., None] - gradient) ** 2, axis=0),
                            values ** 2, np.sum(gradient ** 2, axis=0)])  # (4, s, q)
        return (measures[cell] * size)[:, None] * (squares @ weights).T

    cell = np.arange(len(corners))
    simplices = np.broadcast_to(np.eye(k + 1), (len(cell), k + 1, k + 1))
    coarse = integrals(cell, simplices, 1.0)
    mean = coarse.mean(axis=0)  # (4,) a cell's mean contribution
    floor = ADAPT_TOLERANCE * mean + ROUND_OFF ** 2 * np.tile(mean[2:], 2)
    total = np.zeros(4)
    c = len(children)
    for depth in range(1, ADAPT_DEPTH + 1):  # coarse: the integrals over simplices, (s, 4)
        if not len(cell):
            break
        cell = np.repeat(cell, c)
        simplices = (children @ simplices[:, None]).reshape(-1, k + 1, k + 1)
        fine = integrals(cell, simplices, 2.0 ** (-k * depth)).reshape(-1, c, 4)
        summed = fine.sum(axis=1)
        bound = ADAPT_TOLERANCE * summed + floor * 2.0 ** (k * (1 - depth))
        split = np.any(np.abs(summed - coarse) > bound, axis=1) & (depth < ADAPT_DEPTH)
        total += summed[~split].sum(axis=0)
        keep = np.repeat(split, c)
        cell, simplices, coarse = cell[keep], simplices[keep], fine[split].reshape(-1, 4)
    keys = ("l2_error", "h1_error", "l2_norm", "h1_norm")
    return {key: float(np.sqrt(value)) for key, value in zip(keys, total)}


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
    nodal error) and its fields. A connected part of the mesh without a Dirichlet vertex (a
    singular problem) is refused with the boundary entry that grounds it."""
    fixed, g = dirichlet_data(case, mesh)
    f = case.pde.source.values(mesh.points)
    flux = neumann_load(case, mesh)
    K, M = stiffness_and_mass(mesh)
    require_grounded(K, fixed, "(a boundary entry of kind dirichlet on a part of it)")
    start = time.perf_counter()
    u = pm.poisson(mesh, f, fixed, g, flux)
    seconds = time.perf_counter() - start
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
                on_step: OnStep, clock: Stopwatch) -> Result:
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
    return Result(mesh, kept, summary, levels)


def run_geodesic(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                 on_step: OnStep, clock: Stopwatch) -> Result:
    """Heat-method distance from the vertex nearest ``pde.source_point``; the history is the
    summary as step 0. The maximum distance and the errors are over the reached vertices;
    ``solve_s`` is the solve's time."""
    write_text(folder / CONFIG, case.to_yaml())
    point = np.pad(case.pde.source_point, (0, 3))[: mesh.dim]
    source = int(np.argmin(np.linalg.norm(mesh.points - point, axis=1)))
    compile_solve(mesh, lambda cell: pm.heat_geodesic(cell, 0))
    solve_start = time.perf_counter()
    distance = pm.heat_geodesic(mesh, source)
    reached = np.isfinite(distance)
    summary = {"vertices": mesh.n_vertices, "h": mesh.edge_length(), "source": source,
               "solve_s": time.perf_counter() - solve_start,
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
