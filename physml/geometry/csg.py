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

_ESTIMATE_POINTS = 2**18
"""Points per part for the estimate of a restricted part's measure."""

_ROUND = 2**20
"""The most points drawn on a part in one round of sampling (bounded memory)."""


def _kept_fraction(part: BoundaryPart, keep) -> float:
    r"""The fraction $f$ of ``part`` (by measure) where ``keep(P)``, from $N = 2^{18}$ points
    of a fixed seed: scrambled Sobol unit coordinates through ``part.at`` where the part has it
    (a primitive's face or edge: each of $N$ equal pieces of an edge holds one point, so $f$ is
    off by at most (ends of the kept pieces)$/N$, 0.5 % of a piece keeping $10^{-3}$ of an
    edge; on a face by about $N^{-3/4} = 10^{-4}$), else points of ``part.sample`` (a part of
    a combined domain or a mesh: relative standard error $\sqrt{(1 - f)/(f N)}$)."""
    rng = np.random.default_rng(0)
    if part.at is None:
        return float(np.mean(keep(part.sample(_ESTIMATE_POINTS, rng))))
    return float(np.mean(keep(part.at(unit_points(_ESTIMATE_POINTS, 2, "sobol", rng)))))


def _restricted(part: BoundaryPart, keep, flip: bool) -> BoundaryPart | None:
    """``part`` restricted to the points where ``keep(P)``, its measure scaled by
    :func:`_kept_fraction`; None if none of the points of the estimate is kept."""
    fraction = _kept_fraction(part, keep)
    if fraction == 0:
        return None

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

    return BoundaryPart(part.name, part.measure * fraction, sample, normal)


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
        return [_restricted(p, lambda P: ~self.b.interior(P), False) for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, lambda P: ~self.a.interior(P), False) for p in self.b.parts()]


class Intersection(_Combined):
    """$A\\cap B$."""

    def inside(self, P):
        return self.a.inside(P) & self.b.inside(P)

    def interior(self, P):
        return self.a.interior(P) & self.b.interior(P)

    def distance(self, P):
        return r_and(self.a.distance(P), self.b.distance(P))

    def _parts_of_a(self):
        return [_restricted(p, self.b.inside, False) for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, self.a.inside, False) for p in self.b.parts()]

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
        return [_restricted(p, lambda P, p=p: ~self.b.interior(P - step * p.normal(P)), False)
                for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, self.a.interior, True) for p in self.b.parts()]

    def _bounds(self):
        return self.a.bounds.copy()
