r"""Collocation points in a box: uniform random, scrambled Sobol, and residual-based
adaptive resampling (RAR-D, Wu et al. 2023): draw new points with probability
$p(x) \propto |r(x)|^2/\overline{|r|^2} + 1$ from a candidate set ten times larger.

A sampler owns a NumPy ``Generator`` so that its draws are reproducible and resumable.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import qmc


class BoxSampler:
    """Points in the box ``bounds`` (shape ``(d, 2)``).

    Args:
        bounds: lower and upper bound per coordinate.
        kind: "uniform" or "sobol".
        seed: seed of the sampler's generator.
    """

    def __init__(self, bounds: np.ndarray, kind: str = "sobol", seed: int = 0) -> None:
        if kind not in ("uniform", "sobol"):
            raise ValueError(f"unknown sampler {kind!r}; allowed: uniform, sobol")
        self.bounds, self.kind = np.asarray(bounds, dtype=np.float64), kind
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> np.ndarray:
        """``n`` points, shape ``(n, d)``."""
        d = len(self.bounds)
        if self.kind == "sobol":
            with (
                warnings.catch_warnings()
            ):  # balance needs n = 2^m; the points stay low-discrepancy
                warnings.simplefilter("ignore", UserWarning)
                unit = qmc.Sobol(d, scramble=True, seed=self.rng).random(n)
        else:
            unit = self.rng.random((n, d))
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        return low + (high - low) * unit

    def resample(self, n: int, residual: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``n`` points drawn from ``10 n`` candidates with probability ~ |r|^2/mean + 1."""
        candidates = self.draw(10 * n)
        r2 = residual(candidates) ** 2
        weight = r2 / max(r2.mean(), 1e-300) + 1.0
        chosen = self.rng.choice(len(candidates), size=n, replace=False, p=weight / weight.sum())
        return candidates[chosen]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
