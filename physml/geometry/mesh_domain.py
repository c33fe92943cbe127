r"""A mesh as a domain: the region covered by a planar triangle mesh or a tetrahedral mesh.

Interior points are drawn cell by cell (a cell with probability proportional to its measure,
then uniformly inside it: the spacings of $k - 1$ sorted uniforms are uniform barycentric
coordinates), so no point is rejected. The boundary is the set of facets that belong to one
cell; its named parts are the mesh's tagged facet groups (Gmsh physical groups, e.g. ``inner``
and ``outer`` of :func:`~physml.solvers.mesh.annulus`), and boundary facets without a tag form
the part ``boundary``. Membership counts the boundary facets a ray crosses: along $+x$ in 2D
(half-open in y, so a ray through a vertex counts it once), along a fixed direction of no
special relation to the axes in 3D (:data:`RAY`), so that a grid's points do not send their
rays through the edges two boundary triangles share, where the count would be 0 or 2.

Distance functions ($> 0$ inside, $0$ on the boundary):

* triangles: the R-equivalence of the boundary edges' trimmed distance functions, as for a
  polygon (:func:`~.shapes.segments_distance`; smooth inside);
* tetrahedra: the same over the boundary triangles, each trimmed by the disc about its centroid
  that holds its vertices (zero on that disc: exact on flat faces, an approximation where the
  surface bends, whose error shrinks with the facet size).

Both are computed on the scale $s$, half the largest side of the bounding box (the
unit-scale formulas on the coordinates divided by $s$, times $s$): a mesh scaled by $\lambda$
has $\lambda\varphi$ at the scaled points, and a mesh with $s = 1$ (in $[-1, 1]^d$) the
unit-scale $\varphi$.
"""

from __future__ import annotations

import numpy as np
import torch

from ..solvers.errors import whole_number
from ..solvers.mesh import Mesh
from ..solvers.mesh.checks import facets_of
from .base import BoundaryPart, Geometry, unit_points
from .shapes import segments_distance

UNTAGGED = "boundary"
"""The part name of boundary facets that carry no tag."""

_CHUNK = 2048
"""Points per block in the (points x facets) computations."""

_FLAT = 1e-6
"""z spread, relative to the diameter, up to which a surface mesh is called flat when it is
refused."""


def _boundary_with_opposite(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundary facets ``(b, k - 1)`` (sorted vertex indices) and, for each, the vertex of its
    one cell that is not on it ``(b,)``."""
    k = cells.shape[1]
    faces = facets_of(cells)  # facet j of every cell leaves out vertex k - 1 - j
    opposite = np.concatenate([cells[:, k - 1 - j] for j in range(k)])
    _, first, counts = np.unique(faces, axis=0, return_index=True, return_counts=True)
    once = first[counts == 1]
    return faces[once], opposite[once]


def _outward_normals(points: np.ndarray, facets: np.ndarray, opposite: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unit outward normals ``(b, d)`` of boundary facets and their measures ``(b,)``."""
    V = points[facets]
    if points.shape[1] == 2:
        edge = V[:, 1] - V[:, 0]
        normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1)
        measure = np.linalg.norm(edge, axis=1)
    else:
        normal = np.cross(V[:, 1] - V[:, 0], V[:, 2] - V[:, 0])
        measure = 0.5 * np.linalg.norm(normal, axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    inward = np.einsum("ij,ij->i", normal, points[opposite] - V[:, 0]) > 0
    normal[inward] *= -1
    return normal, measure


def _uniform_barycentric(u: np.ndarray) -> np.ndarray:
    """Uniform barycentric coordinates ``(n, k)`` from uniforms ``(n, k - 1)``: the spacings
    of the sorted values."""
    s = np.sort(u, axis=1)
    return np.diff(s, axis=1, prepend=0.0, append=1.0)


def _facet_scores(P: np.ndarray, V: np.ndarray, normals: np.ndarray) -> np.ndarray:
    r"""``(n, b)``: how far each point lies from each facet (0 on it): the distance to the
    facet's line or plane plus how far the projection falls outside the facet (in units of the
    facet's size)."""
    along = np.einsum("nbd,bd->nb", P[:, None, :] - V[None, :, 0], normals)
    foot = P[:, None, :] - along[..., None] * normals[None]
    if V.shape[1] == 2:
        edge = V[:, 1] - V[:, 0]
        s = np.einsum("nbd,bd->nb", foot - V[None, :, 0], edge) / np.sum(edge**2, axis=1)
        outside = np.maximum(-s, 0) + np.maximum(s - 1, 0)
        size = np.linalg.norm(edge, axis=1)
    else:
        e1, e2 = V[:, 1] - V[:, 0], V[:, 2] - V[:, 0]
        g11, g12, g22 = (np.sum(e1 * e1, 1), np.sum(e1 * e2, 1), np.sum(e2 * e2, 1))
        det = g11 * g22 - g12**2
        r = foot - V[None, :, 0]
        r1, r2 = np.einsum("nbd,bd->nb", r, e1), np.einsum("nbd,bd->nb", r, e2)
        b1, b2 = (g22 * r1 - g12 * r2) / det, (g11 * r2 - g12 * r1) / det
        outside = np.maximum(-b1, 0) + np.maximum(-b2, 0) + np.maximum(b1 + b2 - 1, 0)
        size = np.sqrt(np.maximum(g11, g22))
    return np.abs(along) + outside * size


RAY = np.array([1.0, np.sqrt(2.0) - 1.2, np.pi - 3.1]) / np.sqrt(
    1.0 + (np.sqrt(2.0) - 1.2) ** 2 + (np.pi - 3.1) ** 2)
"""The direction of the 3D membership rays: irrational components, so that no grid point's
ray meets a boundary edge exactly (an axis-aligned ray meets the diagonals of a box's faces)."""


def _crossings(P: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``(n,)`` how many facets ``V`` a ray from each point crosses (along $+x$ in 2D,
    :data:`RAY` in 3D)."""
    x = P[:, None, :]
    if V.shape[1] == 2:
        a, b = V[None, :, 0], V[None, :, 1]
        rise = b[..., 1] - a[..., 1]
        rise = np.where(rise == 0, 1.0, rise)  # a level edge is never crossed: any divisor but 0
        at = a[..., 0] + (x[..., 1] - a[..., 1]) * (b[..., 0] - a[..., 0]) / rise
        hit = ((a[..., 1] > x[..., 1]) != (b[..., 1] > x[..., 1])) & (x[..., 0] < at)
        return hit.sum(1)
    # Moeller-Trumbore with direction d: solve a + u e1 + v e2 = x + s d, s > 0.
    a, e1, e2 = V[None, :, 0], V[None, :, 1] - V[None, :, 0], V[None, :, 2] - V[None, :, 0]
    direction = RAY
    h = np.cross(direction, e2)
    det = np.sum(e1 * h, axis=-1)
    det = np.where(np.abs(det) < 1e-300, 1e-300, det)
    r = x - a
    u = np.sum(r * h, axis=-1) / det
    q = np.cross(r, e1)
    v = (q @ direction) / det
    s = np.sum(e2 * q, axis=-1) / det
    hit = (u >= 0) & (v >= 0) & (u + v < 1) & (s > 0)
    return hit.sum(1)


def _in_blocks(function, P: np.ndarray) -> np.ndarray:
    return np.concatenate([function(P[i : i + _CHUNK]) for i in range(0, len(P), _CHUNK)]) if (
        len(P)) else function(P)


class MeshDomain(Geometry):
    """The region covered by ``mesh`` (planar triangles or tetrahedra; see the module
    docstring).

    Args:
        mesh: a :class:`~physml.solvers.mesh.Mesh` whose cells fill a region of its space
            (a surface mesh in 3D has no interior and is refused).

    Raises:
        ValueError: a surface mesh (naming its file where it was read from one, and the
            plane z = c where all its vertices lie within a millionth of its diameter of it),
            or a mesh without boundary.
    """

    def __init__(self, mesh: Mesh) -> None:
        if mesh.cell_dim != mesh.dim:
            z = mesh.points[:, 2]
            spread = np.ptp(z) / np.linalg.norm(np.ptp(mesh.points, axis=0))
            raise ValueError(
                (f"mesh file {mesh.source!r}: " if mesh.source else "")
                + "a surface mesh has no interior to pose a PDE in; a mesh domain needs "
                "planar triangles or tetrahedra"
                + (f" (all its vertices lie within {np.ptp(z) / 2:.1e} of the plane z = "
                   f"{(z.min() + z.max()) / 2:.9g}, a spread of {spread:.1e} of its diameter: "
                   "give them one z, or the points' x and y only, for a planar mesh)"
                   if spread <= _FLAT else ""))
        self.mesh, self.dim = mesh, mesh.dim
        self.bounds = np.stack([mesh.points.min(axis=0), mesh.points.max(axis=0)], axis=1)
        facets, opposite = _boundary_with_opposite(mesh.cells)
        if not len(facets):
            raise ValueError("the mesh has no boundary facets")
        self.facets = facets
        self.facet_vertices = mesh.points[facets]
        self.facet_centres = self.facet_vertices.mean(axis=1)
        self.facet_radii = np.linalg.norm(self.facet_vertices - self.facet_centres[:, None],
                                          axis=2).max(axis=1)
        self.facet_normals, self.facet_measures = _outward_normals(mesh.points, facets, opposite)
        self.facet_names = self._facet_names()
        cell_measures = mesh.measures()
        self._cell_cdf = np.cumsum(cell_measures) / cell_measures.sum()
        self._tolerance = 1e-9 * self.diameter

    def __repr__(self) -> str:
        return (f"MeshDomain(dim={self.dim}, vertices={self.mesh.n_vertices}, "
                f"cells={self.mesh.n_cells}, bounds={self.bounds.tolist()})")

    def _facet_names(self) -> np.ndarray:
        """``(b,)`` the part name of every boundary facet (from the mesh's facet tags)."""
        names = np.full(len(self.facets), UNTAGGED, dtype=object)
        mesh = self.mesh
        if mesh.facets is None:
            return names
        by_tag = {tag: name for name, tag in mesh.tag_names.items()}
        tagged = {tuple(f): by_tag.get(int(t)) for f, t in
                  zip(np.sort(mesh.facets, axis=1), mesh.facet_tags)}
        for i, facet in enumerate(self.facets):
            name = tagged.get(tuple(facet))
            if name is not None:
                names[i] = name
        return names

    def nearest_facet(self, P: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """For each point, the boundary facet (an index into ``index``, or into all facets)
        it lies on or nearest to, ``(n,)``."""
        chosen = np.arange(len(self.facets)) if index is None else index
        V, normals = self.facet_vertices[chosen], self.facet_normals[chosen]
        return _in_blocks(lambda Q: np.argmin(_facet_scores(Q, V, normals), axis=1), P)

    def _on_boundary(self, P: np.ndarray, tolerance: float) -> np.ndarray:
        V = self.facet_vertices
        normals = self.facet_normals
        return _in_blocks(lambda Q: _facet_scores(Q, V, normals).min(axis=1) <= tolerance, P)

    def _odd(self, P: np.ndarray) -> np.ndarray:
        V = self.facet_vertices
        return _in_blocks(lambda Q: _crossings(Q, V) % 2 == 1, P)

    def inside(self, P):
        P = np.asarray(P, dtype=np.float64)
        return self._odd(P) | self._on_boundary(P, 1e-3 * self._tolerance)

    def interior(self, P):
        P = np.asarray(P, dtype=np.float64)
        return self._odd(P) & ~self._on_boundary(P, self._tolerance)

    def distance(self, P):
        P = P[:, : self.dim]  # rows may carry the time after the space coordinates
        if self.dim == 2:
            V = self.facet_vertices
            return segments_distance(P, V[:, 0], V[:, 1])
        return self._triangles_distance(P)

    def _triangles_distance(self, P):
        r"""The R-equivalence of the boundary triangles' trimmed plane distances, signed by
        the ray crossings: with $p_i$ the signed distance to triangle i's plane and
        $t_i = (\rho_i^2 - |x - c_i|^2)/(2\rho_i)$ its trimming term (disc of centre $c_i$ and
        radius $\rho_i$), $\varphi_i^2 = p_i^2 + ((\sqrt{t_i^2 + p_i^4/s^2} - t_i)/2)^2$, $s$
        half the largest side of the bounding box (see the module docstring)."""
        V, centre, radius = self.facet_vertices, self.facet_centres, self.facet_radii
        scale = 0.5 * float(np.ptp(self.bounds, axis=1).max())
        is_tensor = isinstance(P, torch.Tensor)
        sign = np.where(self._odd(P.detach().cpu().numpy() if is_tensor else P), 1.0, -1.0)
        if is_tensor:
            n, c, radius, a, sign = (torch.as_tensor(v, dtype=P.dtype, device=P.device) for v in
                                     (self.facet_normals, centre, radius, V[:, 0], sign))
            sqrt = torch.sqrt
        else:
            n, c, a, sqrt = self.facet_normals, centre, V[:, 0], np.sqrt
        plane = ((P[:, None, :] - a[None]) * n[None]).sum(-1)
        trim = (radius**2 - ((P[:, None, :] - c[None]) ** 2).sum(-1)) / (2 * radius)
        bump = (sqrt(trim * trim + (plane**4 if scale == 1 else plane**4 / scale**2))
                - trim) / 2  # s = 1: the unit-scale formula's operations and temporaries
        face = plane * plane + bump * bump
        with np.errstate(divide="ignore"):
            inverse = (1 / face).sum(1)
        return (sign / sqrt(inverse))[:, None]

    def parts(self) -> list[BoundaryPart]:
        names = list(dict.fromkeys(self.facet_names))
        return [self._part(name) for name in names]

    def _part(self, name: str) -> BoundaryPart:
        index = np.flatnonzero(self.facet_names == name)
        measures = self.facet_measures[index]
        cdf = np.cumsum(measures) / measures.sum()
        k = self.facets.shape[1]

        def sample(n, rng):
            which = index[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"),
                                     len(index) - 1)]
            weights = _uniform_barycentric(rng.random((n, k - 1)))
            return np.einsum("nk,nkd->nd", weights, self.facet_vertices[which])

        def normal(P):
            return self.facet_normals[index[self.nearest_facet(np.asarray(P, float), index)]]

        return BoundaryPart(name, float(measures.sum()), sample, normal)

    def sample_interior(self, n: int, rng: np.random.Generator, kind: str = "uniform"
                        ) -> np.ndarray:
        """``n`` points of the mesh's cells (``n`` a whole number >= 0), none rejected (see the
        module docstring)."""
        n = whole_number(n, "n", 0)
        k = self.mesh.cells.shape[1]
        u = unit_points(n, k, kind, rng)
        cells = np.minimum(np.searchsorted(self._cell_cdf, u[:, 0], side="right"),
                           self.mesh.n_cells - 1)
        weights = _uniform_barycentric(u[:, 1:])
        return np.einsum("nk,nkd->nd", weights, self.mesh.points[self.mesh.cells[cells]])
