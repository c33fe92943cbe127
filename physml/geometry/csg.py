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

from .base import BoundaryPart, Geometry, r_and, r_or

_ESTIMATE_POINTS = 4096
"""Points per part for the Monte Carlo estimate of a restricted part's measure."""


def _restricted(part: BoundaryPart, keep, flip: bool) -> BoundaryPart | None:
    """``part`` restricted to the points where ``keep(P)``; None if (almost) nothing is left."""
    trial = part.sample(_ESTIMATE_POINTS, np.random.default_rng(0))
    fraction = float(np.mean(keep(trial)))
    if fraction < 1e-3:
        return None

    def sample(n, rng):
        chosen, count = [], 0
        while count < n:
            P = part.sample(int(np.ceil(1.2 * (n - count) / fraction)) + 8, rng)
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

    def _parts_of_a(self):
        return [_restricted(p, lambda P: ~self.b.inside(P), False) for p in self.a.parts()]

    def _parts_of_b(self):
        return [_restricted(p, self.a.interior, True) for p in self.b.parts()]

    def _bounds(self):
        return self.a.bounds.copy()
