r"""The geometry protocol: a closed domain $\Omega\subset\mathbb R^d$ with named boundary parts.

Every geometry gives its bounding box, a membership test, an approximate distance function
$\varphi$ ($\varphi > 0$ inside, $\varphi = 0$ on $\partial\Omega$, $< 0$ outside: what an
output transform $u = g + \varphi N$ needs), and its boundary as named parts, each able to
sample itself and give outward unit normals. Points are NumPy arrays of shape ``(n, d)``
in float64; :meth:`Geometry.distance` also takes PyTorch tensors (for output transforms).

Interior points are drawn from the bounding box (uniform or scrambled Sobol) and the points
outside are rejected; boundary points are drawn part by part, in proportion to each part's
measure (or the same number on every part, ``stratified``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..solvers.errors import whole_number

SAMPLERS = ("uniform", "sobol")
"""How interior points are drawn from the bounding box."""

EMPTY_AFTER = 10**6
"""Bounding-box points drawn with none inside, after which a domain is called empty (and the
most drawn in one round)."""


def require_generator(rng: object) -> None:
    """Refuse an ``rng`` that is not a NumPy Generator (a seed given in its place)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng={rng!r} must be a numpy.random.Generator, e.g. "
                         "np.random.default_rng(0) for the seed 0")


def refuse_if_empty(geometry: Geometry, count: int, drawn: int) -> None:
    """A ValueError once ``drawn`` >= :data:`EMPTY_AFTER` bounding-box points of ``geometry``
    gave ``count`` = 0 inside it."""
    if count == 0 and drawn >= EMPTY_AFTER:
        raise ValueError(f"none of {drawn} points drawn in the bounding box lies inside the "
                         f"{type(geometry).__name__}: it is empty or too thin to sample")


def _sqrt(x):
    return x.sqrt() if hasattr(x, "sqrt") and not isinstance(x, np.ndarray) else np.sqrt(x)


def r_and(a, b):
    """Rvachev's conjunction $a + b - \\sqrt{a^2 + b^2}$: positive where both are, zero on
    the boundary of that set (smooth away from where both vanish)."""
    return a + b - _sqrt(a * a + b * b)


def r_or(a, b):
    """Rvachev's disjunction $a + b + \\sqrt{a^2 + b^2}$: positive where either is."""
    return a + b + _sqrt(a * a + b * b)


def unit_points(n: int, d: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of $[0, 1)^d$: uniform random, or scrambled Sobol seeded by a number
    drawn from ``rng`` (so each draw advances ``rng`` and its state alone fixes the next
    draw: a resumed sampler draws what an uninterrupted one would)."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; allowed: {', '.join(SAMPLERS)}")
    if kind == "sobol":
        from scipy.stats import qmc  # on first use: SciPy's statistics take a second to import

        with warnings.catch_warnings():  # balance needs n = 2^m; the points stay low-discrepancy
            warnings.simplefilter("ignore", UserWarning)
            return qmc.Sobol(d, scramble=True, seed=int(rng.integers(2**63 - 1))).random(n)
    return rng.random((n, d))


@dataclass(frozen=True)
class BoundaryPart:
    """A named piece of a boundary.

    Attributes:
        name: the name conditions refer to (``left``, ``outer``, ...).
        measure: its length (2D), area (3D) or count (1D end points).
        sample: ``sample(n, rng) -> (n, d)`` points on the part, uniform in its measure.
        normal: ``normal(P) -> (n, d)`` outward unit normals at points ``P`` on the part.
        at: ``at(U) -> (n, d)`` the points of unit coordinates ``U`` ``(n, 2)`` (its first
            d - 1 columns used), uniform in measure for uniform ``U`` (a primitive's part), or
            None.
        estimate: for a part a CSG domain kept of a primitive's part, the
            :class:`~physml.geometry.csg.Estimate` it is measured and sampled from (the
            primitive's fixed Sobol points that lie on it); None otherwise.
    """

    name: str
    measure: float
    sample: object
    normal: object
    at: object = None
    estimate: object = None


class Geometry:
    """A domain of dimension ``dim`` (see the module docstring). Subclasses define
    ``dim``, ``bounds`` (``(d, 2)``), :meth:`inside`, :meth:`interior`, :meth:`distance` and
    :meth:`parts`."""

    dim: int
    bounds: np.ndarray

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, bounds={self.bounds.tolist()})"

    def inside(self, P: np.ndarray) -> np.ndarray:
        """Whether each point lies in the closed domain, shape ``(n,)``."""
        raise NotImplementedError

    def interior(self, P: np.ndarray) -> np.ndarray:
        """Whether each point lies strictly inside (off the boundary), shape ``(n,)``."""
        raise NotImplementedError

    def distance(self, P):
        """$\\varphi(P)$, shape ``(n, 1)``, for a NumPy array or a tensor."""
        raise NotImplementedError

    def parts(self) -> list[BoundaryPart]:
        """The boundary's named parts, in a fixed order."""
        raise NotImplementedError

    @property
    def diameter(self) -> float:
        return float(np.linalg.norm(np.ptp(self.bounds, axis=1)))

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts()]

    def require_parts(self, names: Sequence[str] | None, where: str = "on") -> list[BoundaryPart]:
        """The parts called ``names`` (all parts for None); a ValueError names an unknown one."""
        parts = {p.name: p for p in self.parts()}
        if names is None:
            return list(parts.values())
        unknown = [n for n in names if n not in parts]
        if unknown:
            raise ValueError(f"{where}: boundary part {unknown[0]!r} does not exist; "
                             f"allowed: {', '.join(parts)}")
        return [parts[n] for n in names]

    def sample_interior(self, n: int, rng: np.random.Generator, kind: str = "uniform"
                        ) -> np.ndarray:
        """``n`` points of the domain, shape ``(n, d)`` (``n`` a whole number >= 0):
        bounding-box points with those outside rejected (a box itself rejects none)."""
        n = whole_number(n, "n", 0)
        require_generator(rng)
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        chosen = [np.empty((0, self.dim))]
        count, batch, drawn = 0, n, 0
        while count < n:
            refuse_if_empty(self, count, drawn)
            P = low + (high - low) * unit_points(batch, self.dim, kind, rng)
            drawn += batch
            P = P[self.inside(P)]
            chosen.append(P)
            count += len(P)
            batch = min(2 * max(n - count, 64) * max(1, round(batch / max(len(P), 1))),
                        EMPTY_AFTER)
        return np.concatenate(chosen)[:n]

    def sample_boundary(self, n: int, rng: np.random.Generator,
                        names: Sequence[str] | None = None, stratified: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Points on the parts ``names`` (all for None): ``n`` (a whole number >= 0) in all,
        each point's part drawn with probability proportional to the part's measure, or ``n``
        per part, part after part, if ``stratified``.

        Returns:
            points ``(N, d)`` and the index of each point's part in ``names``, ``(N,)``.
        """
        n = whole_number(n, "n", 0)
        require_generator(rng)
        parts = self.require_parts(names)
        if not parts:
            raise ValueError("sample_boundary: no boundary part to sample (names is empty)")
        if stratified:
            index = np.repeat(np.arange(len(parts)), n)
        else:
            measure = np.array([p.measure for p in parts], dtype=np.float64)
            cumulative = np.cumsum(measure) / measure.sum()
            index = np.minimum(np.searchsorted(cumulative, rng.random(n), side="right"),
                               len(parts) - 1)
        points = np.empty((len(index), self.dim))
        for i, part in enumerate(parts):
            mask = index == i
            if mask.any():  # a part given no point is not sampled
                points[mask] = part.sample(int(mask.sum()), rng)
        return points, index

    def normals(self, P: np.ndarray, index: np.ndarray, names: Sequence[str] | None = None
                ) -> np.ndarray:
        """Outward unit normals at boundary points ``P`` of the parts ``index`` (into
        ``names``, as :meth:`sample_boundary` returns them), shape ``(n, d)``."""
        parts = self.require_parts(names)
        normals = np.zeros_like(P)
        for i, part in enumerate(parts):
            mask = index == i
            if mask.any():
                normals[mask] = part.normal(P[mask])
        return normals
