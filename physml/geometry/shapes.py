r"""Primitive domains: interval, box (rectangle), ball (disk) and simple polygon.

Distance functions ($> 0$ inside, $0$ on the boundary):

* :class:`Box`: $\varphi = 4(x - a)(b - x)/(b - a)^2$ on an interval (peak 1 at the middle of
  any interval, so a hard-constrained field $\varphi N$ keeps the network's size on a long one;
  exactly $(x - a)(b - x)$ on $[-1, 1]$); in 2D/3D the R-conjunction (:func:`~.base.r_and`) of
  the slabs $\varphi_i = (x_i - a_i)(b_i - x_i)/(b_i - a_i)$: smooth inside, zero on the faces
  only, negative outside.
* :class:`Ball`: $\varphi = (r^2 - |x - c|^2) / (2r)$ (first order exact at the boundary).
* :class:`Polygon`: the R-equivalence $\varphi = (\sum_i \varphi_i^{-2})^{-1/2}$ of the
  trimmed distance functions $\varphi_i$ of its edges (Sukumar & Srivastava 2022; smooth
  inside, normalised to first order), signed by the crossing number; computed on the scale
  $s$, half the largest side of the bounding box, so a polygon scaled by $\lambda$ has
  $\lambda\varphi$ (:func:`segments_distance`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from ..dtypes import scalar_constant
from .base import BoundaryPart, Geometry, r_and

BOX_FACES = (("left", "right"), ("bottom", "top"), ("back", "front"))
"""Names of the faces of a box: lower and upper face along x, y, z."""


def _module(P):
    return torch if isinstance(P, torch.Tensor) else np


class Box(Geometry):
    """The box $\\prod_i [a_i, b_i]$ in 1 to 3 dimensions; faces named by :data:`BOX_FACES`
    (an interval has ``left`` and ``right``) or by ``names``.

    Args:
        lower, upper: the corners (one entry per dimension, upper > lower).
        names: 2 d distinct face names in the order of :data:`BOX_FACES` (lower, then upper
            face along x, then y, then z): what two boxes of one CSG domain need.
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float],
                 names: Sequence[str] | None = None) -> None:
        kind = type(self).__name__  # errors name the constructor called (Rectangle, Interval)
        lower, upper = np.atleast_1d(np.asarray(lower, float)), np.atleast_1d(
            np.asarray(upper, float))
        if lower.shape != upper.shape or not 1 <= len(lower) <= 3:
            raise ValueError(f"{kind}: lower {lower.tolist()} and upper {upper.tolist()} need "
                             "the same 1 to 3 entries")
        if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
            raise ValueError(f"{kind}: lower {lower.tolist()} and upper {upper.tolist()} must be "
                             "finite")
        if not np.all(upper > lower):
            raise ValueError(f"{kind}: upper {upper.tolist()} must exceed lower {lower.tolist()}")
        self.dim = len(lower)
        self.bounds = np.stack([lower, upper], axis=1)
        default = [name for axis in range(self.dim) for name in BOX_FACES[axis]]
        self.names = list(names) if names is not None else default
        if len(self.names) != len(default) or len(set(self.names)) != len(default):
            raise ValueError(f"{kind}: {len(default)} distinct face names needed (for "
                             f"{', '.join(default)}), got {self.names}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(lower={self.bounds[:, 0].tolist()}, "
                f"upper={self.bounds[:, 1].tolist()}, names={self.names})")

    def inside(self, P):
        slack = 1e-12 * self.diameter
        return np.all((P >= self.bounds[:, 0] - slack) & (P <= self.bounds[:, 1] + slack), axis=1)

    def interior(self, P):
        slack = 1e-9 * self.diameter
        return np.all((P > self.bounds[:, 0] + slack) & (P < self.bounds[:, 1] - slack), axis=1)

    def distance(self, P):
        number = scalar_constant if isinstance(P, torch.Tensor) else float
        if self.dim == 1:
            return self._interval_distance(P, number)
        slabs = [(number(a), number(b), number(b - a)) for a, b in self.bounds]
        phi = None
        for i, (a, b, length) in enumerate(slabs):
            slab = (P[:, i : i + 1] - a) * (b - P[:, i : i + 1]) / length
            phi = slab if phi is None else r_and(phi, slab)
        return phi

    def _interval_distance(self, P, number):
        """$4(x - a)(b - x)/(b - a)^2$ of ``P`` of shape ``(n, 1)``, shape ``(n, 1)``: 1 at the
        middle, 0 at the ends, slope $4/(b - a)$ there. The factor $4/(b - a)^2$ is a float
        rounded once, exactly 1.0 on $[-1, 1]$, where the values are those of
        $(x - a)(b - x)$ bit for bit."""
        a, b = self.bounds[0]
        scale = number(4.0 / (b - a) ** 2)
        return (P[:, :1] - number(a)) * (number(b) - P[:, :1]) * scale

    def parts(self):
        parts = []
        for axis in range(self.dim):
            others = [i for i in range(self.dim) if i != axis]
            free = len(others)
            measure = float(np.prod(np.ptp(self.bounds[others], axis=1))) if others else 1.0
            for side in range(2):
                name = self.names[2 * axis + side]
                at = self._face_at(axis, side, others)
                parts.append(BoundaryPart(
                    name, measure,
                    lambda n, rng, at=at, k=free: at(rng.uniform(0, 1, (n, k))),
                    self._face_normal(axis, side), at))
        return parts

    def _face_at(self, axis, side, others):
        def at(U):
            P = np.empty((len(U), self.dim))
            P[:, axis] = self.bounds[axis, side]
            for column, i in enumerate(others):
                a, b = self.bounds[i]
                P[:, i] = a + (b - a) * U[:, column]
            return P
        return at

    def _face_normal(self, axis, side):
        def normal(P):
            N = np.zeros_like(P)
            N[:, axis] = 1.0 if side else -1.0
            return N
        return normal


class Interval(Box):
    """The interval $[a, b]$: a one-dimensional :class:`Box` with ends ``left`` and ``right``
    (or ``names``, two)."""

    def __init__(self, a: float, b: float, names: Sequence[str] | None = None) -> None:
        super().__init__([a], [b], names)

    def __repr__(self) -> str:
        a, b = self.bounds[0].tolist()
        return f"Interval({a}, {b}, names={self.names})"


class Rectangle(Box):
    """The rectangle $[a_1, b_1]\\times[a_2, b_2]$, ``lower`` $= (a_1, a_2)$, ``upper``
    $= (b_1, b_2)$: a 2D :class:`Box` (faces ``left``, ``right``, ``bottom``, ``top``, or
    ``names``, four in that order; the checks are :class:`Box`'s)."""

    def __init__(self, lower: Sequence[float], upper: Sequence[float],
                 names: Sequence[str] | None = None) -> None:
        if len(lower) != 2:
            raise ValueError(f"Rectangle: lower {list(lower)} needs 2 entries")
        super().__init__(lower, upper, names)


class Ball(Geometry):
    """The ball $|x - c| \\le r$ in 2 (disk) or 3 dimensions; one boundary part, ``name``.

    Membership allows $4\\epsilon\\max(r, |c|_\\infty)$ for rounding (a point on the rim of a
    small ball far from the origin is rounded on the scale of $|c|$).

    Args:
        centre: $c$, one entry per dimension.
        radius: $r > 0$, a number.
        name: the boundary part's name.
    """

    def __init__(self, centre: Sequence[float], radius: float, name: str = "boundary") -> None:
        kind = type(self).__name__  # errors name the constructor called (Disk)
        self.centre = np.asarray(centre, dtype=np.float64)
        if self.centre.ndim != 1 or len(self.centre) not in (2, 3):
            raise ValueError(f"{kind}: centre {self.centre.tolist()} needs 2 or 3 entries")
        if not np.isfinite(self.centre).all():
            raise ValueError(f"{kind}: centre {self.centre.tolist()} must be finite")
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real):
            raise ValueError(f"{kind}: radius={radius!r} must be a number (> 0 and finite), "
                             f"not a {type(radius).__name__}")
        if not 0 < radius < np.inf:
            raise ValueError(f"{kind}: radius={radius} must be > 0 and finite")
        self.radius, self.name, self.dim = float(radius), name, len(self.centre)
        self.bounds = np.stack([self.centre - radius, self.centre + radius], axis=1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(centre={self.centre.tolist()}, radius={self.radius}, "
                f"name={self.name!r})")

    @property
    def _slack(self) -> float:
        """The rounding of a distance from the centre: a point's coordinates are rounded to
        half a unit in the last place of the centre's (at most eps |c|), so 4 eps times the
        larger of the radius and the centre's coordinates."""
        return 4 * np.finfo(float).eps * max(self.radius, float(np.abs(self.centre).max()))

    def inside(self, P):
        return np.linalg.norm(P - self.centre, axis=1) <= self.radius + self._slack

    def interior(self, P):
        return np.linalg.norm(P - self.centre, axis=1) < self.radius * (1 - 1e-9) - self._slack

    def distance(self, P):
        number = scalar_constant if isinstance(P, torch.Tensor) else float
        centre = [number(c) for c in self.centre]
        squared_radius, diameter = number(self.radius**2), number(2 * self.radius)
        squared = sum((P[:, i : i + 1] - centre[i]) ** 2 for i in range(self.dim))
        return (squared_radius - squared) / diameter

    def parts(self):
        r = self.radius
        measure = 2 * np.pi * r if self.dim == 2 else 4 * np.pi * r**2

        def sample(n, rng):
            direction = rng.normal(size=(n, self.dim))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            return self.centre + r * direction

        def normal(P):
            N = P - self.centre
            return N / np.linalg.norm(N, axis=1, keepdims=True)

        def at(U):  # the angle; in 3D the height and the angle (Archimedes: uniform in area)
            angle = 2 * np.pi * U[:, self.dim - 2]
            z = 2 * U[:, 0] - 1 if self.dim == 3 else np.zeros(len(U))
            ring = np.sqrt(1 - z * z)
            direction = np.stack([ring * np.cos(angle), ring * np.sin(angle), z][: self.dim], 1)
            return self.centre + r * direction

        return [BoundaryPart(self.name, measure, sample, normal, at)]


class Disk(Ball):
    """The disk $|x - c| \\le r$ of ``centre`` $c$ (two entries) and ``radius`` $r > 0$, its
    rim the boundary part ``name``: a 2D :class:`Ball` (the checks are :class:`Ball`'s)."""

    def __init__(self, centre: Sequence[float], radius: float, name: str = "boundary") -> None:
        if len(centre) != 2:
            raise ValueError(f"Disk: centre {list(centre)} needs 2 entries")
        super().__init__(centre, radius, name)


def _overlapping_boxes(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i < j) of segments $A_iB_i$, $A_jB_j$ whose bounding boxes overlap, by a
    sweep in x: each segment against those starting within its x-extent (about n log n plus
    the pairs for an outline of short edges, not all n^2/2)."""
    lo, hi = np.minimum(A, B), np.maximum(A, B)
    order = np.argsort(lo[:, 0], kind="stable")
    end = np.searchsorted(lo[order, 0], hi[order, 0], side="right")
    counts = np.maximum(end - np.arange(1, len(A) + 1), 0)
    total = np.cumsum(counts)
    kept_i, kept_j = [], []
    first = 0
    while first < len(A):  # in blocks of about 2^22 x-overlapping pairs: bounded memory
        last = max(first + 1, int(np.searchsorted(total, total[first] - counts[first] + _BLOCK,
                                                   side="right")))
        block = counts[first:last]
        p = np.repeat(np.arange(first, last), block)
        q = p + 1 + np.arange(block.sum()) - np.repeat(np.cumsum(block) - block, block)
        i, j = order[p], order[q]
        keep = (lo[i, 1] <= hi[j, 1]) & (lo[j, 1] <= hi[i, 1])
        kept_i.append(np.minimum(i, j)[keep])
        kept_j.append(np.maximum(i, j)[keep])
        first = last
    return np.concatenate(kept_i), np.concatenate(kept_j)


_BLOCK = 1 << 22


def _first_crossing(V: np.ndarray) -> tuple[int, int] | None:
    """The first pair of edges (i < j) of the closed polyline ``V`` (n, 2) that cross or touch
    where they should not: non-adjacent edges sharing any point, or adjacent edges folding
    back onto each other; None for a simple polygon. Exact orientation signs, on the pairs
    whose bounding boxes overlap."""
    n = len(V)
    A, B = V, np.roll(V, -1, axis=0)
    i, j = _overlapping_boxes(A, B)

    def orient(p, q, r):
        return np.sign((q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1])
                       - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0]))

    def within(p, q, r):  # r in the bounding box of segment pq
        return np.all((np.minimum(p, q) <= r) & (r <= np.maximum(p, q)), axis=1)

    o1, o2 = orient(A[i], B[i], A[j]), orient(A[i], B[i], B[j])
    o3, o4 = orient(A[j], B[j], A[i]), orient(A[j], B[j], B[i])
    meet = (((o1 * o2 < 0) & (o3 * o4 < 0))
            | ((o1 == 0) & within(A[i], B[i], A[j])) | ((o2 == 0) & within(A[i], B[i], B[j]))
            | ((o3 == 0) & within(A[j], B[j], A[i])) | ((o4 == 0) & within(A[j], B[j], B[i])))
    next_to = j == i + 1
    wraps = (i == 0) & (j == n - 1)
    # adjacent edges share one vertex; they fold back if collinear and pointing the same way
    # from it: (i, i + 1) share B[i], (0, n - 1) share A[0]
    shared = np.where(next_to[:, None], B[i], A[i])
    far_i = np.where(next_to[:, None], A[i], B[i])
    far_j = np.where(next_to[:, None], B[j], A[j])
    folds = (orient(shared, far_i, far_j) == 0) & (
        np.sum((far_i - shared) * (far_j - shared), axis=1) > 0)
    bad = np.flatnonzero(np.where(next_to | wraps, folds, meet))
    if not bad.size:
        return None
    first = bad[np.lexsort((j[bad], i[bad]))[0]]
    return int(i[first]), int(j[first])


class Polygon(Geometry):
    """A simple polygon from its vertices (either orientation); each edge is a boundary part,
    named by ``names`` (default ``edge0``, ``edge1``, ...; edge i runs from vertex i to i+1).
    """

    def __init__(self, vertices: Sequence[Sequence[float]], names: Sequence[str] | None = None
                 ) -> None:
        V = np.asarray(vertices, dtype=np.float64)
        if V.ndim != 2 or V.shape[1] != 2 or len(V) < 3:
            raise ValueError(f"Polygon: vertices need shape (n >= 3, 2), got {V.shape}")
        if not np.isfinite(V).all():
            raise ValueError("Polygon: the vertices hold NaN or infinite coordinates")
        repeated = np.flatnonzero(np.all(V == np.roll(V, -1, axis=0), axis=1))
        if len(repeated):
            i = int(repeated[0])
            raise ValueError(f"Polygon: vertices {i} and {(i + 1) % len(V)} coincide (an edge of "
                             "length 0); list each vertex once, without repeating the first "
                             "at the end")
        crossing = _first_crossing(V)
        if crossing is not None:
            raise ValueError(f"Polygon: edges {crossing[0]} and {crossing[1]} meet (edge i runs "
                             "from vertex i to i + 1): the polygon is not simple, so its inside "
                             "and its normals are undefined; list the vertices along the "
                             "boundary, or split it into simple polygons (union)")
        area = 0.5 * np.sum(V[:, 0] * np.roll(V[:, 1], -1) - np.roll(V[:, 0], -1) * V[:, 1])
        if area == 0:
            raise ValueError("Polygon: the vertices enclose no area")
        self.vertices = V if area > 0 else np.ascontiguousarray(V[::-1])  # counter-clockwise
        names = list(names) if names is not None else [f"edge{i}" for i in range(len(V))]
        if len(names) != len(V) or len(set(names)) != len(names):
            raise ValueError(f"Polygon: {len(V)} distinct edge names needed, got {names}")
        self.names = names if area > 0 else [names[(len(V) - 2 - i) % len(V)]
                                              for i in range(len(V))]
        self.dim = 2
        self.bounds = np.stack([V.min(axis=0), V.max(axis=0)], axis=1)

    def __repr__(self) -> str:
        return f"Polygon({len(self.vertices)} vertices, bounds={self.bounds.tolist()})"

    def _edges(self):
        A = self.vertices
        return A, np.roll(A, -1, axis=0)

    def inside(self, P):
        return self._signed_distance_numpy(P) >= -1e-12 * self.diameter

    def interior(self, P):
        return self._signed_distance_numpy(P) > 1e-9 * self.diameter

    def _signed_distance_numpy(self, P):
        return np.asarray(self.distance(P))[:, 0]

    def distance(self, P):
        """The R-equivalence of the edges' trimmed distance functions, positive inside."""
        return segments_distance(P, *self._edges())

    def parts(self):
        A, B = self._edges()
        parts = []
        for name, a, b in zip(self.names, A, B):
            edge = b - a
            length = float(np.linalg.norm(edge))
            outward = np.array([edge[1], -edge[0]]) / length  # counter-clockwise: right side

            def at(U, a=a, edge=edge):
                return a + U[:, :1] * edge

            def normal(P, outward=outward):
                return np.broadcast_to(outward, P.shape).copy()

            parts.append(BoundaryPart(name, length,
                                      lambda n, rng, at=at: at(rng.uniform(0, 1, (n, 1))),
                                      normal, at))
        return parts


def segments_distance(P, A: np.ndarray, B: np.ndarray):
    r"""Signed distance function of the region bounded by the segments $A_i B_i$ (any number
    of closed loops, any orientation): the R-equivalence $(\sum_i \varphi_i^{-2})^{-1/2}$ of
    the segments' trimmed distance functions $\varphi_i$ (Sukumar & Srivastava 2022), positive
    where a ray from the point crosses the segments an odd number of times. With $\ell_i$ the
    signed distance to segment i's line and $t_i = (L_i^2/4 - |x - c_i|^2)/L_i$ its trimming
    term (length $L_i$, midpoint $c_i$), $\varphi_i = \sqrt{\ell_i^2 + b_i^2}$,
    $b_i = (\sqrt{t_i^2 + \ell_i^4/s^2} - t_i)/2$, where $s$ is half the largest side of
    the segments' bounding box: the unit-scale formula on the coordinates divided by $s$, times
    $s$, so the region scaled by $\lambda$ has $\lambda\varphi$ at the scaled points (a
    distance at every scale; the unit-scale formula's operations, so bitwise its values and
    gradients, where $s = 1$).

    Args:
        P: points ``(n, 2)``, a NumPy array or a tensor (the result follows its type).
        A, B: segment ends ``(e, 2)``, NumPy float64.

    Returns:
        $\varphi$, shape ``(n, 1)``: 0 on the segments, smooth inside, first-order normalised.
    """
    xp = _module(P)
    x, y = P[:, 0:1], P[:, 1:2]
    scale = 0.5 * float(np.ptp(np.concatenate([A, B]), axis=0).max())
    ax, ay, bx, by = A[:, 0], A[:, 1], B[:, 0], B[:, 1]
    length = np.hypot(bx - ax, by - ay)
    cx, cy = 0.5 * (ax + bx), 0.5 * (ay + by)
    if xp is torch:
        ax, ay, bx, by, length, cx, cy = (torch.as_tensor(v, dtype=P.dtype, device=P.device)
                                          for v in (ax, ay, bx, by, length, cx, cy))
    line = ((x - ax) * (by - ay) - (y - ay) * (bx - ax)) / length
    trim = (0.25 * length**2 - (x - cx) ** 2 - (y - cy) ** 2) / length
    # s = 1: the unit-scale formula's very operations and temporaries (a training then steps
    # bitwise as before; even naming line**4 changed how autograd summed a parameter gradient)
    squared_scale = None if scale == 1 else (scalar_constant(scale**2) if xp is torch
                                             else scale**2)
    bump = (xp.sqrt(trim * trim + (line**4 if squared_scale is None else
                                   line**4 / squared_scale)) - trim) / 2
    edge = xp.sqrt(line * line + bump * bump)
    with np.errstate(divide="ignore"):  # on an edge: infinite, so the distance is 0
        inverse = (1 / (edge * edge)).sum(1, keepdims=True) if xp is np else (
            1 / (edge * edge)).sum(1, keepdim=True)
    rise = by - ay
    rise = rise + (rise == 0)  # a level segment is never crossed: any divisor but 0
    crosses = ((ay > y) != (by > y)) & (x < ax + (y - ay) * (bx - ax) / rise)
    odd = crosses.sum(1, keepdims=True) % 2 if xp is np else crosses.sum(1, keepdim=True) % 2
    sign = odd * 2.0 - 1 if xp is np else odd.to(P.dtype) * 2 - 1
    return sign / xp.sqrt(inverse)
