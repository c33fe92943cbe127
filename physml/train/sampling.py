r"""Collocation points in a space(-time) domain: uniform random, scrambled Sobol, and
residual-based adaptive resampling (RAD, Wu et al. 2023, with k = 2 and c = 1: the whole set
replaced, not grown as RAR-D grows it): draw new points with probability
$p(x) \propto |r(x)|^2/\overline{|r|^2} + 1$ from a candidate set ten times larger.

Points are drawn in the bounding box of the inputs (space then time) and those whose space part
lies outside the geometry are rejected (a box rejects none). A sampler owns a NumPy
``Generator`` so that its draws are reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..geometry import Geometry
from ..geometry.base import EMPTY_AFTER, SAMPLERS, refuse_if_empty, unit_points
from ..solvers.errors import whole_number


def time_span(time) -> tuple[float, float] | None:
    """``time`` as floats $(t_0, t_1)$, or None for None.

    Raises:
        ValueError: ``time`` is not two finite numbers with $t_1 > t_0$.
    """
    if time is None:
        return None
    try:
        span = np.asarray(time, dtype=np.float64)
    except (TypeError, ValueError):
        span = np.full(3, np.nan)
    if not (span.shape == (2,) and np.isfinite(span).all() and span[1] > span[0]):
        raise ValueError(f"time={time!r}: give (start, end), both finite, the end exceeding "
                         "the start")
    return float(span[0]), float(span[1])


class DomainSampler:
    """Points of ``geometry`` (times ``time`` if given).

    Args:
        geometry: the space domain.
        time: $(t_0, t_1)$ or None.
        kind: "uniform" or "sobol".
        seed: seed of the sampler's generator, a whole number >= 0.

    Raises:
        ValueError: an unknown ``kind``, a ``seed`` that is no whole number >= 0, or a ``time``
            that is not a finite $(t_0, t_1)$ with $t_1 > t_0$.
    """

    def __init__(self, geometry: Geometry, time: tuple[float, float] | None = None,
                 kind: str = "sobol", seed: int = 0) -> None:
        if kind not in SAMPLERS:
            raise ValueError(f"unknown sampler {kind!r}; allowed: {', '.join(SAMPLERS)}")
        seed = whole_number(seed, "seed", 0)
        time = time_span(time)
        rows = [geometry.bounds]
        if time is not None:
            rows.append(np.array([time], dtype=np.float64))
        self.geometry, self.kind = geometry, kind
        self.bounds = np.concatenate(rows).astype(np.float64)
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> np.ndarray:
        """``n`` points (a whole number >= 1), shape ``(n, d_in)``."""
        n = whole_number(n, "n", 1)
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        chosen, count, batch, drawn = [], 0, n, 0
        while count < n:
            refuse_if_empty(self.geometry, count, drawn)
            X = low + (high - low) * unit_points(batch, len(self.bounds), self.kind, self.rng)
            drawn += batch
            X = X[self.geometry.inside(X[:, : self.geometry.dim])]
            chosen.append(X)
            count += len(X)
            batch = min(int(np.ceil(1.2 * (n - count) * batch / max(len(X), 1))) + 16,
                        EMPTY_AFTER)
        return np.concatenate(chosen)[:n]

    def resample(self, n: int, residual: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``n`` points (a whole number >= 1), shape ``(n, d_in)``, drawn from ``10 n``
        candidates with probability ~ |r|^2/mean + 1; ``residual`` maps candidates
        ``(10 n, d_in)`` to residuals ``(10 n,)``."""
        n = whole_number(n, "n", 1)
        candidates = self.draw(10 * n)
        r2 = residual(candidates) ** 2
        weight = r2 / max(r2.mean(), 1e-300) + 1.0
        chosen = self.rng.choice(len(candidates), size=n, replace=False, p=weight / weight.sum())
        return candidates[chosen]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
