r"""Constructive solid geometry: union, intersection and difference of two domains.

Distance functions combine by Rvachev's R-functions (Sukumar & Srivastava 2022):
$\varphi_{A\cup B} = \varphi_A \vee \varphi_B$, $\varphi_{A\cap B} = \varphi_A \wedge
\varphi_B$, $\varphi_{A\setminus B} = \varphi_A \wedge (-\varphi_B)$, which are positive inside,
zero on the boundary and smooth away from its corners. The boundary keeps the children's named
parts, each restricted to where it bounds the result (a part of $B$ in $A\setminus B$ has its
normal reversed); parts left empty are dropped, and two parts of one name are refused.
"""

from __future__ import annotations

import numpy as np

from .base import BoundaryPart, Geometry, r_and, r_or, unit_points

_SOBOL_POINTS = 2**17
"""Sobol points per primitive part for the measures of the parts CSG keeps of it."""

_RANDOM_POINTS = 4096
"""Random points per part for the measure of a kept part with no unit coordinates (a mesh's)."""

_ROUND = 2**20
"""The most points drawn on a part in one round of sampling (bounded memory)."""


def _estimate(part: BoundaryPart) -> tuple[float, np.ndarray] | None:
    """``(whole, points)`` of ``part`` (:attr:`BoundaryPart.estimate`): its own, the
    primitive's measure and $N = 2^{17}$ scrambled Sobol points of a fixed seed through
    ``part.at``, or None for a part without ``at``."""
    if part.estimate is not None or part.at is None:
        return part.estimate
    rng = np.random.default_rng(0)
    return part.measure, part.at(unit_points(_SOBOL_POINTS, 2, "sobol", rng))


def _restricted(part: BoundaryPart, keep, flip: bool) -> BoundaryPart | None:
    r"""``part`` restricted to the points where ``keep(P)``, or None if it keeps (almost)
    nothing. Its measure: the primitive's times the share of the primitive's $N = 2^{17}$
    Sobol points kept through every operation so far (each of $N$ equal pieces of an edge
    holds one point, so the share is off by at most (ends of the kept pieces)$/N$: 1 % of a
    piece keeping $1.6 \times 10^{-3}$ of an edge, a wall cut from a disk of radius 100; on a
    face by about $N^{-3/4}$), dropped under 16 points (a tangency: a face a disk only
    touches); a part with no unit coordinates (a mesh's) from 4096 random points of its
    ``sample`` (relative standard error $\sqrt{(1 - f)/(4096 f)}$), dropped under a share
    of $10^{-3}$."""
    estimate = _estimate(part)
    if estimate is None:
        share = float(np.mean(keep(part.sample(_RANDOM_POINTS, np.random.default_rng(0)))))
        if share < 1e-3:
            return None
        measure, kept = part.measure * share, None
    else:
        whole, points = estimate
        points = points[keep(points)]
        if len(points) < 16:
            return None
        measure, kept = whole * len(points) / _SOBOL_POINTS, (whole, points)
    fraction = measure / part.measure  # the share of part.sample's points kept

    def sample(n, rng):
        chosen, count = [], 0
        while count < n:
            P = part.sample(min(int(np.ceil(1.2 * (n - count) / fraction)) + 8, _ROUND), rng)
            P = P[keep(P)]
            chosen.append(P)
            count += len(P)
        return np.concatenate(chosen)[:n]

    def normal(P):
        return -part.normal(P) if flip else part.normal(P)

    return BoundaryPart(part.name, measure, sample, normal, estimate=kept)


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
        parts = [p for p in (*self._parts_of_a(), *self._parts_of_b()) if p is not None]
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

    def parts(self):
        return list(self._parts)

    def _bounds(self):
        return np.stack([np.minimum(self.a.bounds[:, 0], self.b.bounds[:, 0]),
                         np.maximum(self.a.bounds[:, 1], self.b.bounds[:, 1])], axis=1)


class Union(_Combined):
    """$A\\cup B$."""

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
    """$A\\cap B$."""

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
    """$A\\setminus B$ (the closure of; $B$'s boundary inside $A$ becomes boundary)."""

    def inside(self, P):
        return self.a.inside(P) & ~self.b.interior(P)

    def interior(self, P):
        return self.a.interior(P) & ~self.b.inside(P)

    def distance(self, P):
        return r_and(self.a.distance(P), -self.b.distance(P))

    def _parts_of_a(self):  # kept unless B holds the side of A just inside: a face B touches
        step = 1e-6 * max(self.a.diameter, self.b.diameter)  # from outside stays, one B
        # covers goes
        return [_restricted(p, lambda P, p=p: ~_member(self.b, self.b.interior,
                                                        P - step * p.normal(P)), False)
                for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, lambda P: _member(self.a, self.a.interior, P), True)
                for p in self.b.parts()]

    def _bounds(self):
        return self.a.bounds.copy()
