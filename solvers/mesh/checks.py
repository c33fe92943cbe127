r"""Validity checks of a simplicial mesh, run when a :class:`~physml.solvers.mesh.Mesh` is built.

Each check returns the offending cell (or vertex) indices; :func:`check_mesh` turns the first
non-empty result into one ``ValueError`` naming the first few indices and the count, so a bad
mesh is refused on load instead of producing NaNs in an operator later.

- zero measure: $|T| \le \epsilon\, \ell_{\max}^k$ with $\ell_{\max}$ the cell's longest edge,
  $k$ the cell dimension and $\epsilon = 10^{-12}$;
- folded: planar triangles / tetrahedra on the same side of a shared facet as their neighbour
  (the order each cell lists its vertices in does not matter: meshers leave it mixed);
- non-manifold: a facet (edge of a triangle, face of a tetrahedron) shared by more than two cells;
- collapsed cells: a cell that lists a vertex twice;
- unreferenced vertices: in no cell;
- duplicate vertices: closer than :func:`duplicate_tolerance` (the rounding a float32 or ASCII
  file leaves on the copies of a vertex, well below the shortest edge);
- hanging vertices: a boundary vertex inside another boundary facet (a T-junction, or two
  boundary facets overlapping): a non-conforming mesh, cracked there.

Moved vertices (:meth:`~physml.solvers.mesh.Mesh.check_moved_points`) are first screened on
their device by :func:`may_be_tangled`, so that the NumPy checks run only where it flags them.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial
from typing import Any

import numpy as np
import warp as wp
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..kernel_launch import launch, specialize
from .kernels import tet_edges, twice_area

ZERO_MEASURE_TOL = 1e-12
DUPLICATE_TOL = 1e-6
"""Distance, relative to the mesh's size (the larger of its bounding box's diagonal and its
largest coordinate's magnitude), below which two vertices are one: well above float32's
rounding (6e-8 of the largest coordinate), which CAD and STL exports leave on the copies of a
vertex, and that of ASCII coordinates of 8 or more significant digits."""
DUPLICATE_EDGE_FRACTION = 1e-3
"""Fraction of the shortest edge below which two vertices are one, whatever
:data:`DUPLICATE_TOL` gives: no cell's own corners are ever merged."""
_SHOWN = 5


def signed_measures(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Signed area (planar triangles), area (surface triangles) or signed volume (tetrahedra).

    Args:
        points: (n, d) vertex positions.
        cells: (m, 3) or (m, 4) vertex indices.

    Returns:
        (m,) measures; signed where the orientation is defined (d == cell dimension).
    """
    x = points[cells]
    edges = x[:, 1:] - x[:, :1]
    if cells.shape[1] == 4:
        return np.linalg.det(edges) / 6.0
    if points.shape[1] == 2:
        return 0.5 * (edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0])
    return 0.5 * np.linalg.norm(np.cross(edges[:, 0], edges[:, 1]), axis=1)


def facets_of(cells: np.ndarray) -> np.ndarray:
    """(m * k, k - 1) sorted vertex indices of every facet of every cell (k = vertices per cell)."""
    k = cells.shape[1]
    faces = np.concatenate([cells[:, list(f)] for f in combinations(range(k), k - 1)])
    return np.sort(faces, axis=1)


def row_ids(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True, return_counts=True)[1:]`` of (m, c)
    non-negative integer rows: (m,) each row's index among the distinct rows in lexicographic
    order and the count of each, without the sort of whole rows that ``axis=0`` does (20x
    slower). The columns are folded into one int64 key, left to right: key * n + next column
    (n above every entry, so the key's order is the rows'); where that could pass int64's
    largest value, the key is first replaced by its rank among the distinct keys (below m).
    Entries from 2**31 up are first replaced by their ranks in their column (the rows' order
    kept), so that a rank times n stays within int64 (m below 2**31)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and rows.max() >= 2**31:
        rows = np.stack([np.unique(column, return_inverse=True)[1].ravel()
                         for column in rows.T], axis=1)
    n = int(rows.max()) + 1 if rows.size else 1
    largest = (np.iinfo(np.int64).max - n) // n  # a key up to it folds without overflow
    key = rows[:, 0]
    for column in rows.T[1:]:
        if key.size and key.max() > largest:
            key = np.unique(key, return_inverse=True)[1].ravel()
        key = key * n + column
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return inverse.ravel(), counts


def zero_measure_cells(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Indices of the cells ((m, k) vertex indices into ``points`` (n, d)) whose measure is at
    most :data:`ZERO_MEASURE_TOL` times the power k - 1 of their longest edge: degenerate
    (collinear or coplanar) cells."""
    x = points[cells]
    k = cells.shape[1]
    longest = np.max(
        [np.linalg.norm(x[:, i] - x[:, j], axis=1) for i, j in combinations(range(k), 2)], axis=0
    )
    measure = np.abs(signed_measures(points, cells))
    return np.flatnonzero(measure <= ZERO_MEASURE_TOL * longest ** (k - 1))


def shared_facets(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The topology :func:`folded_cells` compares, which moving the vertices keeps: (f, 2) the
    two rows ``omit * m + cell`` (the cell's facet without its vertex ``omit``) of each facet
    that two cells share, and (f, 2) their parities, +1 or -1: that of the permutation taking
    the cell's vertex order to (the facet's vertices sorted, then the opposite vertex)."""
    k = cells.shape[1]
    faces, parities = [], []
    for omit in range(k):
        facet = np.delete(cells, omit, axis=1)
        inversions = sum(facet[:, i] > facet[:, j] for i, j in combinations(range(k - 1), 2))
        faces.append(np.sort(facet, axis=1))
        parities.append(1 - 2 * ((inversions + k - 1 - omit) % 2))
    inverse, counts = row_ids(np.concatenate(faces))
    shared = np.flatnonzero(counts[inverse] == 2)
    pairs = shared[np.argsort(inverse[shared], kind="stable")].reshape(-1, 2)
    return pairs, np.concatenate(parities)[pairs]


def folded_cells(points: np.ndarray, cells: np.ndarray,
                 facets: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Cells of a planar triangle or tetrahedral mesh that lie on the same side of a facet as
    the other cell sharing it (a fold): for every interior facet, the orientations of (facet,
    opposite vertex) in the two cells must differ in sign. Each is the sign of its cell's
    signed measure times the parity of that vertex order (:func:`shared_facets`, computed if
    ``facets`` is not given), so the order each cell lists its vertices in, which meshers
    leave mixed, does not matter."""
    k = cells.shape[1]
    if points.shape[1] == k and np.ptp(points[:, -1]) == 0:  # a plane written with z = const
        points = points[:, :-1]
    if points.shape[1] != k - 1:
        return np.empty(0, dtype=np.int64)
    pairs, parities = shared_facets(cells) if facets is None else facets
    m = len(cells)
    sides = parities * np.sign(signed_measures(points, cells))[pairs % m]
    return np.unique(pairs[sides[:, 0] == sides[:, 1]] % m)


def non_manifold_cells(cells: np.ndarray,
                       facets: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Indices of the cells (m, k) with a facet that more than two cells share (``facets``:
    :func:`row_ids` of :func:`facets_of` the cells, where the caller has them)."""
    inverse, counts = row_ids(facets_of(cells)) if facets is None else facets
    bad = counts[inverse] > 2
    return np.unique(np.flatnonzero(bad) % len(cells))


def collapsed_cells(cells: np.ndarray) -> np.ndarray:
    """Indices of the cells (m, k) that list a vertex more than once: of zero measure
    whatever the positions."""
    k = cells.shape[1]
    return np.flatnonzero(np.any([cells[:, i] == cells[:, j]
                                  for i, j in combinations(range(k), 2)], axis=0))


def unreferenced_vertices(n_vertices: int, cells: np.ndarray) -> np.ndarray:
    """Indices of the vertices (of ``n_vertices``) that no cell (m, k) uses."""
    used = np.zeros(n_vertices, dtype=bool)
    used[cells.ravel()] = True
    return np.flatnonzero(~used)


def duplicate_tolerance(points: np.ndarray, cells: np.ndarray) -> float:
    r"""Distance below which two of the vertices (n, d) are one: $\min(\tau s,\ \phi
    \ell_{\min})$, $s$ the larger of the bounding box's diagonal and the largest coordinate's
    magnitude, $\ell_{\min}$ the shortest edge of the cells (m, k) between distinct
    vertices, $\tau$ = :data:`DUPLICATE_TOL` and $\phi$ = :data:`DUPLICATE_EDGE_FRACTION`."""
    if not len(points):
        return 0.0
    tolerance = scale_tolerance(points)
    x = points[cells]
    shortest2 = min((np.where(cells[:, i] != cells[:, j],
                              np.einsum("md,md->m", x[:, i] - x[:, j], x[:, i] - x[:, j]),
                              np.inf).min(initial=np.inf)
                     for i, j in combinations(range(cells.shape[1]), 2)), default=np.inf)
    return min(tolerance, DUPLICATE_EDGE_FRACTION * float(np.sqrt(shortest2)))


def scale_tolerance(points: np.ndarray) -> float:
    r"""$\tau s$ of :func:`duplicate_tolerance` (n >= 1 vertices (n, d)): its bound without the
    shortest edge, which nothing finds closer pairs under than it does."""
    scale = max(float(np.linalg.norm(np.ptp(points, axis=0))), float(np.abs(points).max()))
    return DUPLICATE_TOL * (scale or 1.0)


def duplicate_groups(points: np.ndarray, tolerance: float) -> np.ndarray:
    """(n,) index of each vertex's first coincident vertex (itself when it has none): vertices
    (n, d) within ``tolerance`` (:func:`duplicate_tolerance`) of each other, chained (pairs
    from a k-d tree, so that two vertices either side of a rounding boundary are found too)."""
    n = len(points)
    pairs = cKDTree(points).query_pairs(tolerance, output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, n)
    np.minimum.at(first, labels, np.arange(n))
    return first[labels]


def _distances_to_segments(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(p,) distance from each point x (p, d) to the segment from a to b (p, d)."""
    e = b - a
    length2 = np.einsum("ij,ij->i", e, e)
    t = np.clip(np.einsum("ij,ij->i", x - a, e) / np.where(length2 > 0, length2, 1.0), 0, 1)
    return np.linalg.norm(x - a - t[:, None] * e, axis=1)


def _distances_to_facets(x: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(p,) distance from each point x (p, d) to the segment or triangle of its corners
    (p, 2 or 3, d): to the plane where the point's projection falls inside the triangle, else
    to the nearest edge."""
    distance = np.min([_distances_to_segments(x, corners[:, i], corners[:, j])
                       for i, j in combinations(range(corners.shape[1]), 2)], axis=0)
    if corners.shape[1] == 3:
        e = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], axis=2)
        gram = np.einsum("pdi,pdj->pij", e, e)
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.linalg.solve(
                gram + np.where(np.linalg.det(gram) > 0, 0.0, np.nan)[:, None, None],
                np.einsum("pdi,pd->pi", e, x - corners[:, 0])[..., None])[..., 0]
        inside = np.all(weights >= 0, axis=1) & (weights.sum(axis=1) <= 1)
        off = x - corners[:, 0] - np.einsum("pdi,pi->pd", e, np.nan_to_num(weights))
        distance = np.where(inside, np.linalg.norm(off, axis=1), distance)
    return distance


def hanging_vertices(points: np.ndarray, boundary: np.ndarray,
                     tolerance: float) -> np.ndarray:
    """Sorted indices of the vertices of the boundary facets (b, k - 1) (edges, or triangles
    of a tetrahedral mesh) that lie within ``tolerance`` of another boundary facet but not of
    its corners: a vertex inside an edge or face it is not a corner of (a T-junction, where two
    parts meet without sharing vertices; two boundary facets that overlap have one). Candidates
    come from a k-d tree of the boundary vertices, a ball about each facet: O(b log b)."""
    if not len(boundary):
        return np.empty(0, dtype=np.int64)
    vertices = np.unique(boundary)
    corners = points[boundary]
    centres = corners.mean(axis=1)
    radii = np.linalg.norm(corners - centres[:, None], axis=2).max(axis=1) + tolerance
    near = cKDTree(points[vertices]).query_ball_point(centres, radii)
    counts = np.fromiter(map(len, near), dtype=np.int64, count=len(near))
    facet = np.repeat(np.arange(len(boundary)), counts)
    vertex = vertices[np.fromiter((v for found in near for v in found), dtype=np.int64,
                                  count=int(counts.sum()))]
    other = np.all(boundary[facet] != vertex[:, None], axis=1)
    facet, vertex = facet[other], vertex[other]
    x = points[vertex]
    apart = np.linalg.norm(corners[facet] - x[:, None], axis=2).min(axis=1) > tolerance
    on = _distances_to_facets(x[apart], corners[facet[apart]]) <= tolerance
    return np.unique(vertex[apart][on])


def _position(x: np.ndarray) -> str:
    return "(" + ", ".join(f"{c:.6g}" for c in x) + ")"


def _describe(indices: np.ndarray) -> str:
    shown = ", ".join(str(i) for i in indices[:_SHOWN])
    more = ", ..." if len(indices) > _SHOWN else ""
    return f"{shown}{more} ({len(indices)} in all)"


class RepairableMeshError(ValueError):
    """Cells that repeat a vertex, duplicate or unreferenced vertices, which
    :meth:`Mesh.repaired` fixes (dropping the cells, merging or dropping the vertices): ``problem``
    says what is wrong, ``remedy`` what repairing does to it; the message adds the cure in
    Python, a caller with another way to ask for the repair names its own."""

    def __init__(self, problem: str, remedy: str) -> None:
        self.problem, self.remedy = problem, remedy
        super().__init__(f"{problem}; call Mesh.repaired() (or read_mesh(..., repair=True)) "
                         f"to {remedy}")


def check_finite(points: np.ndarray) -> None:
    """Raise a ``ValueError`` naming the vertices (n, d) with a NaN or infinite coordinate."""
    if not np.all(np.isfinite(points)):
        rows = np.flatnonzero(~np.all(np.isfinite(points), axis=1))
        raise ValueError(f"non-finite vertex positions at vertices {_describe(rows)}")


def check_mesh(points: np.ndarray, cells: np.ndarray) -> None:
    """Raise one ``ValueError`` for the first problem found (a :class:`RepairableMeshError`
    for cells that repeat a vertex, duplicate or unreferenced vertices, in that order: a
    collapsed cell may be what leaves a vertex unreferenced; before the duplicates, a
    non-conforming mesh, as merging them would leave it (:func:`check_conforming`; checked
    where no cell is flat), which repairing does not fix); return silently on a valid mesh."""
    n = len(points)
    check_finite(points)
    if cells.size and (cells.min() < 0 or cells.max() >= n):
        rows = np.flatnonzero(np.any((cells < 0) | (cells >= n), axis=1))
        raise ValueError(
            f"cells {_describe(rows)} reference vertices outside 0..{n - 1}; fix the cell array"
        )
    collapsed = collapsed_cells(cells)
    if len(collapsed):
        raise RepairableMeshError(
            f"collapsed cells {_describe(collapsed)} list a vertex twice (zero measure)",
            "drop them")
    # the scale's bound first: the shortest edge caps the tolerance only where it finds
    # something (a valid mesh skips that pass over every cell)
    tolerance = scale_tolerance(points) if n else 0.0
    first = duplicate_groups(points, tolerance)
    if np.any(first != np.arange(n)):
        tolerance = duplicate_tolerance(points, cells)
        first = duplicate_groups(points, tolerance)
    whole = bool(np.all(first == np.arange(n)))  # no duplicates: repairing keeps the cells
    merged = cells if whole else first[cells]  # as repairing leaves them: a crack it cannot
    merged = np.delete(merged, collapsed_cells(merged), axis=0)  # close is named first
    flat = zero_measure_cells(points, merged)
    facets = None
    if not len(flat):  # else refused as such below
        faces = facets_of(merged)
        ids, counts = row_ids(faces)
        boundary = faces[counts[ids] == 1]
        if len(hanging_vertices(points, boundary, tolerance)):
            check_conforming(points, boundary, duplicate_tolerance(points, cells))
        facets = (ids, counts) if whole else None
    duplicates = np.flatnonzero(first != np.arange(n))
    if len(duplicates):
        raise RepairableMeshError(
            f"duplicate vertices {_describe(duplicates)} coincide with earlier vertices",
            "merge them")
    unused = unreferenced_vertices(n, cells)
    if len(unused):
        raise RepairableMeshError(
            f"unreferenced vertices {_describe(unused)} belong to no cell", "drop them")
    check_cell_shapes(points, cells, flat=flat if whole else None)
    _refuse("cells on non-manifold facets (a facet shared by more than two cells)",
            non_manifold_cells(cells, facets))


def check_conforming(points: np.ndarray, boundary: np.ndarray, tolerance: float) -> None:
    """Raise a ``ValueError`` naming the :func:`hanging_vertices` of the boundary facets
    (b, k - 1), with the cure in the mesher: merging vertices (:meth:`Mesh.repaired`) does not
    split the facets they lie in."""
    hanging = hanging_vertices(points, boundary, tolerance)
    if len(hanging):
        facet, shared = (("edges", "curves") if boundary.shape[1] == 2
                         else ("faces", "surfaces"))
        raise ValueError(
            f"non-conforming mesh: boundary vertices {_describe(hanging)} lie inside boundary "
            f"{facet} they are not corners of (vertex {hanging[0]} at "
            f"{_position(points[hanging[0]])}): parts meshed separately meet there without "
            "sharing their vertices (hanging nodes), which leaves a crack; mesh the parts with "
            f"conforming shared {shared} (Gmsh: fragment the shapes, "
            "gmsh.model.occ.fragment or BooleanFragments, or Coherence for built-in "
            f"geometry); repairing merges coincident vertices, it does not split {facet}")


class BadCellsError(ValueError):
    """Cells :func:`check_mesh` refuses: ``problem`` says which, with the cells."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"mesh has {problem}; remove or fix them")


class TangledCellsError(BadCellsError):
    """Cells of zero measure or folded (:func:`check_cell_shapes`): what moving the vertices
    can break."""


def check_cell_shapes(points: np.ndarray, cells: np.ndarray,
                      facets: tuple[np.ndarray, np.ndarray] | None = None,
                      flat: np.ndarray | None = None) -> None:
    """Raise :func:`check_mesh`'s ``ValueError`` (a :class:`TangledCellsError`) for
    :func:`zero_measure_cells` (``flat``: the caller's) and :func:`folded_cells` (``facets``:
    its argument): what moving the vertices can break."""
    kind = "volume" if cells.shape[1] == 4 else "area"
    _refuse(f"zero-{kind} cells", zero_measure_cells(points, cells) if flat is None else flat,
            TangledCellsError)
    _refuse("folded cells (on the same side of a facet as its other cell)",
            folded_cells(points, cells, facets), TangledCellsError)


def _refuse(problem: str, found: np.ndarray, error: type[BadCellsError] = BadCellsError) -> None:
    if len(found):
        raise error(f"{problem}: cells {_describe(found)}")


# --- the screen of moved vertices on their device ---------------------------------------------

# The z component of an edge, 0 in the plane (one overload per vector type).
@wp.func
def height(e: wp.vec2f):
    return wp.float32(0.0)


@wp.func
def height(e: wp.vec2d):  # noqa: F811 (an overload)
    return wp.float64(0.0)


@wp.func
def height(e: wp.vec3f):  # noqa: F811 (an overload)
    return e[2]


@wp.func
def height(e: wp.vec3d):  # noqa: F811 (an overload)
    return e[2]


@wp.kernel(enable_backward=False)
def triangle_screen_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                           bound: Any, sign: wp.array(dtype=wp.int32),
                           raised: wp.array(dtype=wp.int32)):
    """sign[c] = the sign of the area of triangle c in the plane (x, y); raised[0] = 1 where
    not $2|T| > \\text{bound}\\,\\ell_{\\max}^2$ (NaN included), raised[2] = 1 where the triangle's
    corners differ in z. Reads x (n,), cells (m, 3); writes sign (m,), raised (3,)."""
    c = wp.tid()
    x0 = x[cells[c, 0]]
    e1 = x[cells[c, 1]] - x0
    e2 = x[cells[c, 2]] - x0
    e3 = e2 - e1
    longest2 = wp.max(wp.max(wp.dot(e1, e1), wp.dot(e2, e2)), wp.dot(e3, e3))
    if not (twice_area(e1, e2) > bound * longest2):
        raised[0] = 1
    zero = bound - bound
    if height(e1) != zero or height(e2) != zero:
        raised[2] = 1
    sign[c] = wp.where(e1[0] * e2[1] - e1[1] * e2[0] < zero, -1, 1)


@wp.kernel(enable_backward=False)
def tet_screen_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32), bound: Any,
                      sign: wp.array(dtype=wp.int32), raised: wp.array(dtype=wp.int32)):
    """sign[c] = the sign of the volume of tetrahedron c; raised[0] = 1 where not
    $6|T| > \\text{bound}\\,\\ell_{\\max}^3$ (NaN included). Reads x (n,), cells (m, 4); writes
    sign (m,), raised (3,)."""
    c = wp.tid()
    e1, e2, e3 = tet_edges(x, cells, c)
    six = wp.dot(e1, wp.cross(e2, e3))
    longest2 = wp.max(wp.max(wp.max(wp.dot(e1, e1), wp.dot(e2, e2)), wp.dot(e3, e3)),
                      wp.max(wp.max(wp.dot(e2 - e1, e2 - e1), wp.dot(e3 - e1, e3 - e1)),
                             wp.dot(e3 - e2, e3 - e2)))
    if not (wp.abs(six) > bound * longest2 * wp.sqrt(longest2)):
        raised[0] = 1
    sign[c] = wp.where(six < bound - bound, -1, 1)


@wp.kernel(enable_backward=False)
def fold_screen_kernel(first: wp.array(dtype=wp.int32), second: wp.array(dtype=wp.int32),
                       parity: wp.array(dtype=wp.int32), sign: wp.array(dtype=wp.int32),
                       raised: wp.array(dtype=wp.int32)):
    """raised[1] = 1 where the two cells of a shared facet lie on one side of it:
    sign[first] sign[second] = parity (:func:`folded_cells`). Reads first, second, parity (f,),
    sign (m,); writes raised (3,)."""
    f = wp.tid()
    if sign[first[f]] * sign[second[f]] == parity[f]:
        raised[1] = 1


def _overload_screens() -> None:
    cells, flags = wp.array2d(dtype=wp.int32), wp.array(dtype=wp.int32)
    for T, vecs in ((wp.float32, (wp.vec2f, wp.vec3f)), (wp.float64, (wp.vec2d, wp.vec3d))):
        for V in vecs:
            specialize(triangle_screen_kernel, (T, V), {"x": wp.array(dtype=V), "cells": cells,
                                                        "bound": T, "sign": flags,
                                                        "raised": flags})
        specialize(tet_screen_kernel, (T, vecs[1]), {"x": wp.array(dtype=vecs[1]),
                                                     "cells": cells, "bound": T, "sign": flags,
                                                     "raised": flags})


_overload_screens()

SCREEN_MARGIN = 64
"""Rounding units of the points' dtype added to :data:`ZERO_MEASURE_TOL` (itself doubled) in
:func:`may_be_tangled`'s zero-measure bound: more than the NumPy check's and the kernels' own
rounding of $|T|$ and $\\ell_{\\max}$, so that the kernels' signs agree with NumPy's on every
cell they pass."""


def may_be_tangled(points: wp.array, cells: wp.array,
                   facets: tuple[wp.array, wp.array, wp.array]) -> bool:
    r"""Whether vertex positions may collapse or fold a cell, computed on their device: raised
    wherever :func:`check_cell_shapes` refuses them, and elsewhere only for cells within a few
    rounding units of zero measure.

    - zero measure: $|T| \le (2\epsilon + 64\,u)\,\ell_{\max}^{k-1}$ or NaN ($\epsilon$ =
      :data:`ZERO_MEASURE_TOL`, $u$ the dtype's rounding unit, :data:`SCREEN_MARGIN`);
    - fold (planar triangles, triangles at z = const, tetrahedra): a facet two cells share
      with the product of their measures' signs equal to that of their parities
      (:func:`folded_cells`; a mirror image flips every sign and raises nothing).

    Args:
        points: (n,) ``vec2``/``vec3`` of float32 or float64.
        cells: (m, k) ``int32`` on the points' device.
        facets: the two cells (f,), (f,) of each facet two cells share and the product of
            their parities (f,) (:func:`shared_facets`), ``int32`` on the points' device.

    Returns:
        True where :func:`check_cell_shapes` must run on the points. Costs one pass over the
        cells, one over the facets and three integers to the host.
    """
    scalar = points.dtype._wp_scalar_type_
    m, k = cells.shape
    eps = np.finfo(wp.dtype_to_numpy(scalar)).eps
    bound = scalar(factorial(k - 1) * (2 * ZERO_MEASURE_TOL + SCREEN_MARGIN * eps))
    sign = wp.empty(m, dtype=wp.int32, device=points.device)
    raised = wp.zeros(3, dtype=wp.int32, device=points.device)
    launch(tet_screen_kernel if k == 4 else triangle_screen_kernel, (scalar, points.dtype),
           dim=m, device=points.device, inputs=[points, cells, bound], outputs=[sign, raised])
    wp.launch(fold_screen_kernel, dim=len(facets[0]), device=points.device,
              inputs=[*facets, sign], outputs=[raised])
    collapsed, folded, tilted = raised.numpy()
    return bool(collapsed or folded and not tilted)
