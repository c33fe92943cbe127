"""The temperature $T$ [K] of the thermomigration solver
(:class:`~physml.solvers.thermomigration.ThermomigrationSolver`) at the cell centres, shape
``grid.shape``: an array fixed in time (:func:`linear_temperature`) or a callable
``t [s] -> array`` evolved by a heat solver (:class:`HeatConductionTemperature`)."""

from __future__ import annotations

import numpy as np

from .checks import finite_state, require
from .grid import Grid


def linear_temperature(grid: Grid, cold: float, gradient: float, axis: int = 0) -> np.ndarray:
    """$T = T_c + G\\,(x - x_{low})$ [K] at the cell centres, shape ``grid.shape``.

    Args:
        grid: the grid (any dimension); $x$ is the cell centres' coordinate along ``axis``.
        cold: $T_c$ [K] at the low face of ``axis``.
        gradient: $G$ [K/m] along ``axis`` (hot side at the high end for $G > 0$).
        axis: the grid axis $x$ runs along, in ``[0, grid.ndim)`` (negative ones are refused).

    Raises:
        ValueError: ``axis`` outside ``[0, grid.ndim)``, or $T \\le 0$ K in some cell.
    """
    require(0 <= axis < grid.ndim, f"axis={axis} must name one of the grid's {grid.ndim} axes")
    offset = grid.mesh()[axis] - grid.lower[axis]
    T = cold + gradient * offset
    require(np.min(T) > 0, f"cold={cold} K with gradient={gradient} K/m gives T <= 0 K")
    return T


class HeatConductionTemperature:
    """A temperature field evolved by a heat solver: ``field(t)`` is $T$ [K] at time t [s].

    The heat equation $T_t = \\alpha\\Delta T$ is stepped by backward Euler on its own time
    grid, fixed in advance and independent of who asks and when,

    $$t_0 = 0,\\qquad t_{n+1} = t_n + h_n,\\qquad h_n = \\max(h_0,\\; r\\,t_n),$$

    and ``field(t)`` interpolates linearly between the two states around t. Why these steps:
    neither the Cahn–Hilliard step nor the snapshot interval measures the temperature's own
    rate. After a start that does not match the boundary values (a uniform bar between two
    fixed end temperatures) the time derivatives decay like $\\partial_t^k T \\sim \\Delta T/t^k$
    up to the slowest time scale $L^2/(\\pi^2\\alpha)$ and exponentially after it, so a step
    proportional to the elapsed time keeps each step's error at a fixed fraction of the
    temperature span $\\Delta T$ through the transient, and reaches any end time in
    $O(1/r + \\log(t_{end}/h_0)/r)$ steps however long the run (about 500 for the Fe–C case's
    3e6 s, against $10^{13}$ at an explicit step). Backward Euler ($\\theta = 1$, L-stable) damps
    the stiff modes of the mismatched start at any step (Crank–Nicolson would let them ring)
    and lands on the discrete steady state exactly. Measured on a 1D bar against the Fourier
    series: the error after the first 5 % of $L^2/(\\pi^2\\alpha)$ stays below
    $0.043\\,r\\,\\Delta T$ ($2.1\\times10^{-3}\\Delta T$ at the default $r = 0.05$)
    where the first step $h_0 = \\Delta x^2/\\alpha$ is small against that time (200 cells:
    $2.1\\times10^{-3}$ at 0.58 of that time; on 50 cells $6.9\\times10^{-3}$ at 5 % and
    $3.5\\times10^{-3}$ at 10 %), and vanishes at the steady state.
    A fixed step sequence also makes $T(t)$ a function of $t$ alone, so a resumed run sees
    the same temperatures bit for bit.

    Args:
        solver: a :class:`~physml.solvers.heat.HeatSolver` on the same grid, ``scheme="imex"``
            with ``theta=1`` (its own ``dt`` is not used).
        T0: initial temperature [K], shape ``grid.shape``.
        first_step: $h_0$ [s], > 0; the cell diffusion time $\\Delta x^2/\\alpha$ resolves
            the start.
        growth: $r$, in (0, 1]: the step as a fraction of the elapsed time.
    """

    def __init__(self, solver, T0: np.ndarray, *, first_step: float,
                 growth: float = 0.05) -> None:
        require(solver.scheme == "imex" and solver.theta == 1.0,
                f"the heat solver must use scheme='imex' with theta=1 (backward Euler), got "
                f"scheme={solver.scheme!r}, theta={solver.theta}")
        require(np.isfinite(first_step) and first_step > 0,
                f"first_step={first_step} must be > 0 s")
        require(np.isfinite(growth) and 0 < growth <= 1, f"growth={growth} must lie in (0, 1]")
        T0 = finite_state(T0, solver.grid.shape, "T0")
        self.solver, self.first_step, self.growth = solver, float(first_step), float(growth)
        self._start = (0.0, T0)
        self._before = self._after = self._start
        self.steps = 0

    def __call__(self, t: float) -> np.ndarray:
        """T at ``t`` >= 0 [K]; a time before the last heat step (a second run on the same
        solver) marches again from T0, through the same steps to the same states."""
        require(t >= 0, f"temperature asked at t={t} s, before t = 0")
        if t < self._before[0]:
            self._before = self._after = self._start
            self.steps = 0
        while self._after[0] < t:
            t_n, T_n = self._after
            h = max(self.first_step, self.growth * t_n)
            self._before = self._after
            self._after = (t_n + h, self.solver.with_dt(h).step(T_n))
            self.steps += 1
        (t_a, T_a), (t_b, T_b) = self._before, self._after
        if t == t_b:
            return T_b
        return T_a + (t - t_a) / (t_b - t_a) * (T_b - T_a)
