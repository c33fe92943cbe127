r"""The :class:`Mesh` data object: vertex positions, simplicial cells and tags.

Three kinds of mesh, told apart by the shapes of ``points`` (n, d) and ``cells`` (m, k):

======================  ===  ===
kind                     d    k
======================  ===  ===
planar triangles         2    3
surface triangles (3D)   3    3
tetrahedra               3    4
======================  ===  ===

Vertex indices are 0-based. Tags are integers (Gmsh physical groups): ``cell_tags`` (m,), and
``facets`` (f, k - 1) with ``facet_tags`` (f,) for the tagged boundary parts; ``tag_names`` maps
a name to a tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations

import numpy as np
import warp as wp

from ..dtypes import warp_dtype
from ..runtime import warp_device
from .checks import (
    check_cell_shapes,
    check_finite,
    check_mesh,
    collapsed_cells,
    duplicate_groups,
    duplicate_tolerance,
    facets_of,
    may_be_tangled,
    row_ids,
    shared_facets,
    signed_measures,
)

_VEC = {(2, wp.float32): wp.vec2f, (2, wp.float64): wp.vec2d,
        (3, wp.float32): wp.vec3f, (3, wp.float64): wp.vec3d}


def _vertex_indices(value, name: str, n: int) -> np.ndarray:
    """``value`` as contiguous int32 vertex indices, with a ValueError naming ``name`` unless
    every entry is a whole number in [0, n) (checked before the cast, which would wrap an
    index past 2^31 and truncate a fraction)."""
    raw = np.asarray(value)
    if raw.size and (raw.dtype.kind not in "iuf" or raw.dtype.kind == "f" and not np.all(
            np.isfinite(raw) & (raw == np.round(raw)))):
        raise ValueError(f"{name} must hold whole-number vertex indices; got dtype {raw.dtype}"
                         + (" with fractional or non-finite values" if raw.dtype.kind == "f"
                            else ""))
    if raw.size and (raw.min() < 0 or raw.max() >= n):
        raise ValueError(f"{name} reference vertices outside [0, {n - 1}] (from {raw.min()} to "
                         f"{raw.max()}; the mesh has {n} points)")
    return np.ascontiguousarray(raw, dtype=np.int32)


def _owned(array: np.ndarray, given: object) -> np.ndarray:
    """``array`` (converted from ``given``) read-only, and copied if it shares memory with
    ``given``: editing the caller's arrays cannot change a mesh, or the topology and operators
    cached from it, behind its checks."""
    if np.may_share_memory(array, given):
        array = array.copy()
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False, repr=False)
class Mesh:
    """A triangle or tetrahedral mesh on a Warp device. It holds read-only arrays of its own
    (float64 points, int32 indices and tags): later edits of the arrays passed in do not reach it.

    Args:
        points: (n, d) vertex positions, d = 2 (planar) or 3 (surface or volume) [length units].
        cells: (m, 3) triangles or (m, 4) tetrahedra, 0-based vertex indices.
        cell_tags: optional (m,) integer tag per cell.
        facets: optional (f, k - 1) tagged boundary facets (edges of triangles, faces of tets).
        facet_tags: (f,) integer tag per facet; required with ``facets``.
        tag_names: name -> tag, e.g. ``{"outer": 2, "inner": 3}``.
        device: Warp device of the arrays :meth:`warp_points` / :meth:`warp_cells` return
            (initialises Warp).
        check: run the checks of :mod:`physml.solvers.mesh.checks` (see :meth:`repaired`).
        source: the file the mesh was read from (:func:`~physml.solvers.mesh.read_mesh` sets
            it), for messages about the mesh; kept by :meth:`repaired` and :meth:`to`.

    Raises:
        ValueError: wrong shapes, an unavailable device, or a degenerate mesh (the message
            names the cells).
    """

    points: np.ndarray
    cells: np.ndarray
    cell_tags: np.ndarray | None = None
    facets: np.ndarray | None = None
    facet_tags: np.ndarray | None = None
    tag_names: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    check: bool = True
    source: str | None = None

    def __post_init__(self) -> None:
        points = np.ascontiguousarray(self.points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] not in (2, 3):
            raise ValueError(f"points must have shape (n, 2) or (n, 3), got {points.shape}")
        n = len(points)
        cells = _vertex_indices(self.cells, "cells", n)
        if cells.ndim != 2 or cells.shape[1] not in (3, 4) or len(cells) == 0:
            raise ValueError(
                f"cells must have shape (m, 3) or (m, 4) with m > 0, got {cells.shape}"
            )
        if cells.shape[1] == 4 and points.shape[1] != 3:
            raise ValueError(f"tetrahedra need 3D points, got points of shape {points.shape}")
        object.__setattr__(self, "points", _owned(points, self.points))
        object.__setattr__(self, "cells", _owned(cells, self.cells))
        object.__setattr__(self, "device", warp_device(self.device))
        if self.cell_tags is not None:
            tags = np.asarray(self.cell_tags, dtype=np.int32)
            if tags.shape != (len(cells),):
                raise ValueError(f"cell_tags must have shape ({len(cells)},), got {tags.shape}")
            object.__setattr__(self, "cell_tags", _owned(tags, self.cell_tags))
        if (self.facets is None) != (self.facet_tags is None):
            raise ValueError("pass facets and facet_tags together")
        if self.facets is not None:
            facets = _vertex_indices(self.facets, "facets", n).reshape(-1, cells.shape[1] - 1)
            facet_tags = np.asarray(self.facet_tags, dtype=np.int32)
            if facet_tags.shape != (len(facets),):
                raise ValueError(
                    f"facet_tags must have shape ({len(facets)},), got {facet_tags.shape}"
                )
            object.__setattr__(self, "facets", _owned(facets, self.facets))
            object.__setattr__(self, "facet_tags", _owned(facet_tags, self.facet_tags))
        if self.check:
            check_mesh(points, cells)

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return self.points.shape[1]

    @property
    def cell_dim(self) -> int:
        """2 for triangles, 3 for tetrahedra."""
        return self.cells.shape[1] - 1

    @property
    def n_vertices(self) -> int:
        return len(self.points)

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    @property
    def is_surface(self) -> bool:
        """Triangles embedded in 3D."""
        return self.cell_dim == 2 and self.dim == 3

    def __repr__(self) -> str:
        """One line: dimension, counts, dtype of the points, device, and the tag names and
        source file where there are any, e.g. ``Mesh(dim=2, n_vertices=123, n_cells=208,
        cells='triangles', dtype=float64, device='cpu', tag_names={'outer': 2})``."""
        kind = "triangles" if self.cell_dim == 2 else "tetrahedra"
        fields = [f"dim={self.dim}", f"n_vertices={self.n_vertices}", f"n_cells={self.n_cells}",
                  f"cells={kind!r}", f"dtype={self.points.dtype}", f"device={self.device!r}"]
        fields += [f"{name}={value!r}" for name, value in
                   (("tag_names", self.tag_names), ("source", self.source)) if value]
        return f"Mesh({', '.join(fields)})"

    def measures(self) -> np.ndarray:
        """(m,) unsigned cell areas or volumes (NumPy, float64)."""
        return np.abs(signed_measures(self.points, self.cells))

    def edge_length(self) -> float:
        """Mean edge length h over every cell's edges (3 of a triangle, 6 of a tetrahedron)."""
        x = self.points[self.cells]
        k = self.cells.shape[1]
        lengths = [np.linalg.norm(x[:, i] - x[:, j], axis=1) for i, j in combinations(range(k), 2)]
        return float(np.mean(lengths))

    def check_moved_points(self, points: wp.array) -> None:
        """Refuse vertex positions ((n,) ``vec2``/``vec3`` on the mesh's device, as
        :meth:`warp_points` gives) that collapse or fold a cell (an optimiser's step that
        tangles the mesh) with the ``ValueError`` that building the mesh on them would raise.
        Costs two kernels on the device, over the cells and the facets two cells share, and
        three integers to the host (:func:`~physml.solvers.mesh.checks.may_be_tangled`); only
        where they raise a flag are the points copied to the host and checked in NumPy."""
        if may_be_tangled(points, self.warp_cells(), self._warp_shared_facets):
            check_cell_shapes(points.numpy(), self.cells, self._shared_facets)

    @cached_property
    def _shared_facets(self) -> tuple[np.ndarray, np.ndarray]:
        return shared_facets(self.cells)

    @cached_property
    def _warp_shared_facets(self) -> tuple[wp.array, wp.array, wp.array]:
        """The two cells (f,) (f,) of each facet that two cells share and the product of their
        parities (f,) (:func:`~physml.solvers.mesh.checks.shared_facets`), ``int32`` on
        ``self.device``."""
        pairs, parities = self._shared_facets
        cells = pairs % self.n_cells
        return tuple(wp.array(a, dtype=wp.int32, device=self.device)
                     for a in (cells[:, 0], cells[:, 1], parities[:, 0] * parities[:, 1]))

    @cached_property
    def boundary_facets(self) -> np.ndarray:
        """(b, k - 1) facets that belong to exactly one cell (empty on a closed surface)."""
        faces = facets_of(self.cells)
        ids, counts = row_ids(faces)
        once = counts[ids] == 1
        return faces[once][np.argsort(ids[once])]  # in the rows' order, as np.unique gives

    def boundary_vertices(self, name: str | Sequence[str] | None = None) -> np.ndarray:
        """Sorted indices of the vertices on the boundary, or on the facets tagged ``name``
        (or any of several names).

        Raises:
            ValueError: a name names no tagged facet (a cell tag, or no tag at all).
        """
        if name is None:
            return np.unique(self.boundary_facets)
        names = [name] if isinstance(name, str) else list(name)
        if not names:
            raise ValueError("boundary_vertices: no part name given (an empty list); give one "
                             "or several, or None for the whole boundary")
        parts = self.boundary_parts()
        unknown = [n for n in names if n not in parts]
        if unknown:
            raise ValueError(f"no boundary part named {unknown[0]!r}; known: {parts}")
        tags = [self.tag_names[n] for n in names]
        return np.unique(self.facets[np.isin(self.facet_tags, tags)])

    def boundary_parts(self) -> list[str]:
        """The names of ``tag_names`` that tag facets (not cells), sorted."""
        if self.facets is None:
            return []
        used = set(np.unique(self.facet_tags).tolist())
        return sorted(name for name, tag in self.tag_names.items() if tag in used)

    def repaired(self) -> Mesh:
        """A copy with duplicate vertices (closer than
        :func:`~physml.solvers.mesh.checks.duplicate_tolerance`) merged and unreferenced
        vertices dropped.

        Cells that list a vertex twice (as given, or after the merge: collapsed, of zero
        measure) are dropped with their tags, and vertices only they used with them; facets
        are re-indexed. Other problems (zero measure, inversion, non-manifold facets, a vertex
        inside another boundary facet: edges are not split) are not repaired: the new mesh is
        checked and raises if any remain. Non-finite positions raise first (a coincidence test
        cannot place them).
        """
        check_finite(self.points)
        first = duplicate_groups(self.points, duplicate_tolerance(self.points, self.cells))
        cells = first[self.cells]
        keep = np.setdiff1d(np.arange(len(cells)), collapsed_cells(cells))
        cells = cells[keep]
        used = np.unique(cells)
        new_index = np.full(self.n_vertices, -1, dtype=np.int64)
        new_index[used] = np.arange(len(used))
        facets, facet_tags = self.facets, self.facet_tags
        if facets is not None:
            facets = new_index[first[facets]]
            ok = np.all(facets >= 0, axis=1)
            facets, facet_tags = facets[ok], facet_tags[ok]
        return Mesh(
            self.points[used],
            new_index[cells],
            cell_tags=None if self.cell_tags is None else self.cell_tags[keep],
            facets=facets,
            facet_tags=facet_tags,
            tag_names=dict(self.tag_names),
            device=self.device,
            source=self.source,
        )

    def to(self, device: str) -> Mesh:
        """The same mesh with arrays for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""
        return Mesh(self.points, self.cells, self.cell_tags, self.facets, self.facet_tags,
                    dict(self.tag_names), device=device, check=False, source=self.source)

    @cached_property
    def centre(self) -> np.ndarray:
        """(d,) centre of the bounding box of the points (float64)."""
        return (self.points.min(axis=0) + self.points.max(axis=0)) / 2

    def warp_points(self, dtype: type = wp.float64, requires_grad: bool = False,
                    relative: bool = False) -> wp.array:
        """(n,) array of ``wp.vec2``/``wp.vec3`` of ``dtype`` (float32 or float64, a Warp type,
        NumPy dtype or name) on ``self.device``: the positions, or with ``relative`` the
        positions minus :attr:`centre` (subtracted in float64, before the cast), for
        translation-invariant quantities: float32 then rounds a coordinate by about 2^-24 times
        the mesh's size rather than 2^-24 |x| (0.06 at 1e6, a cell's size there)."""
        vec = _VEC[(self.dim, warp_dtype(dtype))]
        points = self.points - self.centre if relative else self.points
        return wp.array(points, dtype=vec, device=self.device, requires_grad=requires_grad)

    def warp_cells(self) -> wp.array:
        """(m, k) ``int32`` array on ``self.device``."""
        return self._warp_cells

    @cached_property
    def _warp_cells(self) -> wp.array:
        return wp.array(self.cells, dtype=wp.int32, device=self.device)
