"""The record of a thermomigration run
(:meth:`~physml.solvers.thermomigration.ThermomigrationSolver.run`): saved states of a run and
its diagnostics (SI units)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trajectory:
    """Saved states of a run and its diagnostics (SI units).

    Attributes:
        times: save times [s], shape ``(n,)``.
        states: $c$ at those times, shape ``(n, *grid.shape)``.
        mass: $\\int c\\,dV$ [m^d] at those times.
        free_energy: $\\int f + \\tfrac\\kappa2|\\nabla c|^2\\,dV$ [J m^d/mol].
        steps: accepted time steps up to each save.
        dt: the step sizes taken [s].
        rejected: rejected steps.
    """

    times: list[float] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    mass: list[float] = field(default_factory=list)
    free_energy: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    dt: list[float] = field(default_factory=list)
    rejected: int = 0
