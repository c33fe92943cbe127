r"""Constructive solid geometry: union, intersection and difference of two domains.

Distance functions combine by Rvachev's R-functions (Sukumar & Srivastava 2022):
$\varphi_{A\cup B} = \varphi_A \vee \varphi_B$, $\varphi_{A\cap B} = \varphi_A \wedge
\varphi_B$, $\varphi_{A\setminus B} = \varphi_A \wedge (-\varphi_B)$, which are positive inside,
zero on the boundary and smooth away from its corners. The boundary keeps the children's named
parts, each restricted to where it bounds the result (a part of $B$ in $A\setminus B$ has its
normal reversed); parts left empty, or under $10^{-5}$ of the smaller operand's size (a
tangency), are dropped, and two parts of one name are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import BoundaryPart, Geometry, r_and, r_or, unit_points

_SOBOL_POINTS = 2**17
"""Sobol points per primitive part for the measures of the parts CSG keeps of it."""

_FEW = 64
"""Kept Sobol points under which a part is measured again on points of its own (a short
piece, or a tangency)."""

_LOCAL_POINTS = 4096
"""Sobol points of that second measure, in the box of unit coordinates around the few."""

_RANDOM_POINTS = 4096
"""Random points per part for the measure of a kept part with no unit coordinates (a mesh's)."""

_TANGENCY = 1e-5
"""Parts under this share of the smaller operand's size (its diameter to the power d - 1)
are dropped: a face a disk only touches, crossed on a chord of rounding's length."""

_ROUND = 2**20
"""The most points drawn on a part in one round of sampling (bounded memory)."""


@dataclass(frozen=True)
class Estimate:
    """What the measures of the parts CSG keeps of a primitive's part are read from.

    Attributes:
        whole: the primitive part's measure.
        at: its unit coordinates to points (:attr:`BoundaryPart.at`).
        kept: ``kept(P) -> (n,)`` bool, where the operations so far keep it (None: all).
        units: ``(k, 2)`` the unit coordinates of its $N = 2^{17}$ fixed Sobol points that
            are kept, and ``points``, ``(k, d)``, those points.
        boxes: for a part of under 64 of them, the ``(lo, hi)`` unit coordinates ``(b, 2)``
            of the boxes around their clusters where it was measured again and is sampled;
            else None.
    """

    whole: float
    at: object
    kept: object
    units: np.ndarray
    points: np.ndarray
    boxes: tuple[np.ndarray, np.ndarray] | None = None


def _estimate(part: BoundaryPart) -> Estimate | None:
    """``part``'s :class:`Estimate`: its own, a primitive's from its ``at``, or None for a part
    with neither (a mesh's)."""
    if part.estimate is not None or part.at is None:
        return part.estimate
    units = unit_points(_SOBOL_POINTS, 2, "sobol", np.random.default_rng(0))
    return Estimate(part.measure, part.at, None, units, part.at(units))


def _used(estimate: Estimate) -> int:
    """How many unit coordinates the part's ``at`` reads: an edge one, a face two."""
    return estimate.points.shape[1] - 1


def _boxes(units: np.ndarray, used: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` ``(b, 2)``: boxes of unit coordinates (in the ``used`` ones; the others
    span [0, 1]) around the few kept ones ``units``, clipped to the unit square. On an edge,
    one box two point spacings around each cluster of points four spacings apart (an arc
    across a circle's seam at angle 0 is two clusters, at both ends); on a face, whose few
    points of a thin band or cap lie far apart along it, one box around all of them, widened
    in each coordinate by the widest gap between them there (the piece reaches that far past
    its outer points)."""
    margin = 2 * _SOBOL_POINTS ** (-1 / used)
    if used == 1:
        order = np.argsort(units[:, 0])
        cluster = np.empty(len(units), dtype=np.int64)
        cluster[order] = np.r_[0, np.cumsum(np.diff(units[order, 0]) > 2 * margin)]
        groups = [units[cluster == label, :1] for label in np.unique(cluster)]
        widths = [np.full(1, margin)] * len(groups)
    else:
        groups = [units[:, :2]]
        widths = [np.maximum(margin, [np.diff(np.sort(units[:, c]), prepend=units[:, c].min())
                                      .max() for c in range(2)])]
    lo = [np.r_[np.maximum(g.min(0) - w, 0), np.zeros(2 - used)] for g, w in zip(groups, widths)]
    hi = [np.r_[np.minimum(g.max(0) + w, 1), np.ones(2 - used)] for g, w in zip(groups, widths)]
    return np.array(lo), np.array(hi)


def _in_earlier_box(U: np.ndarray, box: np.ndarray, boxes: tuple[np.ndarray, np.ndarray]
                    ) -> np.ndarray:
    """Whether each unit point ``U`` ``(n, 2)``, drawn in box ``box`` ``(n,)``, lies in a box
    of a lower index too (drawn there, it is not drawn again: the union is counted once)."""
    lo, hi = boxes
    inside = np.all((U[:, None] >= lo[None]) & (U[:, None] <= hi[None]), axis=-1)  # (n, b)
    return np.any(inside & (np.arange(len(lo))[None] < box[:, None]), axis=1)


def _local_measure(estimate: Estimate) -> tuple[float, tuple[np.ndarray, np.ndarray]] | None:
    """The measure of a part of few kept points, from Sobol points in each of the boxes of
    :func:`_boxes` (4096, or as many as put about 1024 on the part, at most $2^{20}$), and the
    boxes; None where under 16 of those points are kept in all (a tangency: a face a disk
    only touches)."""
    if not len(estimate.units):
        return None
    used = _used(estimate)
    boxes = _boxes(estimate.units, used)
    measure, count = 0.0, 0
    for j, (lo, hi) in enumerate(zip(*boxes)):
        volume = float(np.prod((hi - lo)[:used]))
        inside = np.all((estimate.units >= lo) & (estimate.units <= hi), axis=1).sum()
        share = max(inside, 1) / (_SOBOL_POINTS * volume)  # of the box the part is, about
        n = int(min(max(2 ** np.ceil(np.log2(1024 / share)), _LOCAL_POINTS), _ROUND))
        U = lo + (hi - lo) * unit_points(n, 2, "sobol", np.random.default_rng(1))
        kept = estimate.kept(estimate.at(U)) & ~_in_earlier_box(U, np.full(len(U), j), boxes)
        count += int(np.count_nonzero(kept))
        measure += estimate.whole * volume * np.mean(kept)
    return None if count < 16 else (float(measure), boxes)


def _restricted(part: BoundaryPart, keep, flip: bool) -> BoundaryPart | None:
    r"""``part`` restricted to the points where ``keep(P)``, or None if it keeps nothing.

    Its measure: the primitive's times the share of the primitive's $N = 2^{17}$ Sobol points
    kept through every operation so far (each of $N$ equal pieces of an edge holds one point,
    so the share is off by at most (ends of the kept pieces)$/N$; on a face by about
    $N^{-3/4}$); a part of under 64 of them (a short piece of a large shape, or a tangency)
    is measured again on 4096 points in a box of unit coordinates around each cluster of them
    (to about 1 % on an edge, a few % on a thin piece of a face), sampled there, and dropped
    where under 16 of those are kept (a tangency); a part with no unit coordinates (a mesh's)
    from 4096 random points of its ``sample`` (relative standard error
    $\sqrt{(1 - f)/(4096 f)}$), dropped where none is kept."""
    estimate = _estimate(part)
    boxes = None
    if estimate is None:
        share = float(np.mean(keep(part.sample(_RANDOM_POINTS, np.random.default_rng(0)))))
        if share == 0:
            return None
        measure = part.measure * share
    else:
        inside = keep(estimate.points)
        before = estimate.kept
        estimate = Estimate(estimate.whole, estimate.at,
                            keep if before is None else lambda P: before(P) & keep(P),
                            estimate.units[inside], estimate.points[inside])
        measure = estimate.whole * len(estimate.points) / _SOBOL_POINTS
        if len(estimate.points) < _FEW:
            local = _local_measure(estimate)
            if local is None:
                return None
            measure, boxes = local
            estimate = Estimate(estimate.whole, estimate.at, estimate.kept, estimate.units,
                                estimate.points, boxes)
    if boxes is None:  # the share of part.sample's points kept
        fraction = measure / part.measure
    else:  # of the boxes' (each drawn by its volume, its overlap with an earlier one not)
        volumes = np.prod((boxes[1] - boxes[0])[:, :_used(estimate)], axis=1)
        fraction = measure / (estimate.whole * float(volumes.sum()))

    def sample(n, rng):
        chosen, count = [], 0
        while count < n:
            m = min(int(np.ceil(1.2 * (n - count) / fraction)) + 8, _ROUND)
            if boxes is None:
                P = part.sample(m, rng)
                P = P[keep(P)]
            else:  # uniform on the union of the boxes, then on the part in it
                box = rng.choice(len(volumes), size=m, p=volumes / volumes.sum())
                U = boxes[0][box] + (boxes[1][box] - boxes[0][box]) * rng.random((m, 2))
                U = U[~_in_earlier_box(U, box, boxes)]
                P = estimate.at(U)
                P = P[estimate.kept(P)]
            chosen.append(P)
            count += len(P)
        return np.concatenate(chosen)[:n]

    def normal(P):
        return -part.normal(P) if flip else part.normal(P)

    return BoundaryPart(part.name, measure, sample, normal, estimate=estimate)


def _member(geometry: Geometry, test, P: np.ndarray) -> np.ndarray:
    """``test(P)`` (``geometry.inside`` or ``.interior``, shape ``(n,)``), evaluated only for
    the points in ``geometry``'s bounding box (no point outside it is in the domain): the
    estimates test every kept point of every part, and a mesh's membership is costly."""
    near = np.all((P >= geometry.bounds[:, 0]) & (P <= geometry.bounds[:, 1]), axis=1)
    member = np.zeros(len(P), dtype=bool)
    if near.any():
        member[near] = test(P[near])
    return member


class _Combined(Geometry):
    """Two domains combined; subclasses define membership, distance and part restriction."""

    def __init__(self, a: Geometry, b: Geometry) -> None:
        if a.dim != b.dim:
            raise ValueError(f"{type(self).__name__}: dimensions differ ({a.dim} and {b.dim})")
        self.a, self.b, self.dim = a, b, a.dim
        floor = _TANGENCY * min(a.diameter, b.diameter) ** (a.dim - 1)
        parts = [p for p in (*self._parts_of_a(), *self._parts_of_b())
                 if p is not None and p.measure >= floor]
        names = [p.name for p in parts]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"{type(self).__name__}: both domains have a boundary part named "
                             f"{clash[0]!r}; give the parts distinct names")
        if not parts:
            raise ValueError(f"{type(self).__name__}: the combined domain has no boundary left "
                             "(the domains do not overlap, or one removes the other): it is "
                             "empty")
        self._parts = parts
        self.bounds = self._bounds()
        flat = np.flatnonzero(~(self.bounds[:, 1] > self.bounds[:, 0]))
        if flat.size:
            raise ValueError(f"{type(self).__name__}: the combined domain is flat along axis "
                             f"{int(flat[0])} ({self.bounds[flat[0], 0]:g} to "
                             f"{self.bounds[flat[0], 1]:g}: the domains only touch); it has no "
                             "interior")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.a!r}, {self.b!r})"

    def parts(self):
        return list(self._parts)

    def _bounds(self):
        return np.stack([np.minimum(self.a.bounds[:, 0], self.b.bounds[:, 0]),
                         np.maximum(self.a.bounds[:, 1], self.b.bounds[:, 1])], axis=1)


class Union(_Combined):
    """$A\\cup B$ of the domains ``a`` (A) and ``b`` (B), of the same dimension; the boundary
    keeps their named parts where they bound the union (module docstring).

    Raises:
        ValueError: ``a`` and ``b`` differ in dimension, both have a boundary part of one
            name, or the union has no boundary or no interior left.
    """

    def inside(self, P):
        return self.a.inside(P) | self.b.inside(P)

    def interior(self, P):
        return self.a.interior(P) | self.b.interior(P)

    def distance(self, P):
        return r_or(self.a.distance(P), self.b.distance(P))

    def _parts_of_a(self):
        return [_restricted(p, lambda P: ~_member(self.b, self.b.interior, P), False)
                for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, lambda P: ~_member(self.a, self.a.interior, P), False)
                for p in self.b.parts()]


class Intersection(_Combined):
    """$A\\cap B$ of the domains ``a`` (A) and ``b`` (B), of the same dimension; the boundary
    keeps their named parts where they bound the intersection (module docstring).

    Raises:
        ValueError: ``a`` and ``b`` differ in dimension, both have a boundary part of one
            name, or the intersection has no boundary or no interior left (the domains do not
            overlap, or only touch).
    """

    def inside(self, P):
        return self.a.inside(P) & self.b.inside(P)

    def interior(self, P):
        return self.a.interior(P) & self.b.interior(P)

    def distance(self, P):
        return r_and(self.a.distance(P), self.b.distance(P))

    def _parts_of_a(self):
        return [_restricted(p, lambda P: _member(self.b, self.b.inside, P), False)
                for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, lambda P: _member(self.a, self.a.inside, P), False)
                for p in self.b.parts()]

    def _bounds(self):
        return np.stack([np.maximum(self.a.bounds[:, 0], self.b.bounds[:, 0]),
                         np.minimum(self.a.bounds[:, 1], self.b.bounds[:, 1])], axis=1)


class Difference(_Combined):
    """$A\\setminus B$ (the closure of; $B$'s boundary inside $A$ becomes boundary) of the
    domains ``a`` (A) and ``b`` (B), of the same dimension. A part of A is kept where neither
    the point nor the point a step of $10^{-6}$ times the larger diameter inward from it lies
    in B's interior (so no boundary point lies in B's interior, and a face B touches from
    outside stays).

    Raises:
        ValueError: ``a`` and ``b`` differ in dimension, both have a boundary part of one
            name, or the difference has no boundary or no interior left (``b`` removes all of
            ``a``).
    """

    def inside(self, P):
        return self.a.inside(P) & ~self.b.interior(P)

    def interior(self, P):
        return self.a.interior(P) & ~self.b.inside(P)

    def distance(self, P):
        return r_and(self.a.distance(P), -self.b.distance(P))

    def _parts_of_a(self):  # dropped where B's interior holds the point or the side of A
        step = 1e-6 * max(self.a.diameter, self.b.diameter)  # just inside it: a face B
        # touches from outside stays, one B covers goes, one B cuts into goes however shallow
        # or oblique the cut
        return [_restricted(p, lambda P, p=p: ~_member(self.b, self.b.interior, P)
                            & ~_member(self.b, self.b.interior, P - step * p.normal(P)), False)
                for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, lambda P: _member(self.a, self.a.interior, P), True)
                for p in self.b.parts()]

    def _bounds(self):
        return self.a.bounds.copy()
