r"""The adaptive time integration of
:class:`~physml.solvers.thermomigration.ThermomigrationSolver` (:func:`adaptive_run`, the body
of its ``run``): step-size control, the saves into a
:class:`~physml.solvers.thermomigration_trajectory.Trajectory`, and the blow-up check
(:func:`checked_state`) it shares with the fixed steps of ``rollout``. The scheme and its
symbols are those of :mod:`physml.solvers.thermomigration`.

The step size adapts to a local error estimate, relative to $\max|c_0|$ (or the run's
``error_scale``): the controller aims each next step at ``tolerance`` and a step is redone (a
quarter as long) only when its estimate exceeds 4 ``tolerance`` (in the shipped cases accepted
steps stay near or below the tolerance); the estimate is the larger of the splitting error
$\lVert\Delta t\,R(c^n) - \delta_n\rVert_\infty = \lVert\Delta t(s_2\Lambda + s_4\Lambda^2)
\delta_n\rVert_\infty$ (how far the stabilisation slows the step against explicit Euler) and
the truncation error $\tfrac12\lVert\delta_n - (\Delta t_n/\Delta t_{n-1})\delta_{n-1}
\rVert_\infty \approx \tfrac12\Delta t^2\lVert c_{tt}\rVert_\infty$; both are $O(\Delta t^2)$.
A step shortened to land on a save time leaves the step size as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import warp as wp

from .checks import require
from .errors import BlowUpError
from .thermomigration_trajectory import Trajectory

if TYPE_CHECKING:
    from .thermomigration import ThermomigrationSolver


def adaptive_run(
    solver: ThermomigrationSolver,
    c0: Any,
    t_end: float,
    save_times: np.ndarray | None,
    dt0: float | None,
    t0: float,
    callback: Callable[[float, int, np.ndarray | None], None] | None,
    error_scale: float | None,
) -> Trajectory:
    """The run of ``solver`` from ``c0`` at ``t0`` to ``t_end`` [s] with adaptive steps: the
    arguments, the result and what is raised are those of
    :meth:`~physml.solvers.thermomigration.ThermomigrationSolver.run`."""
    require(np.isfinite(t_end) and t_end > t0, f"t_end={t_end} must be > t0={t0} s")
    solver._start()
    require(error_scale is None or (np.isfinite(error_scale) and error_scale >= 0),
            f"error_scale={error_scale} must be a number >= 0 (or None: max|c0|)")
    require(dt0 is None or (np.isfinite(dt0) and dt0 > 0),
            f"dt0={dt0} must be a positive number of seconds (or None: 1e-3 of the "
            "diffusion time)")
    targets = np.array([t_end] if save_times is None else save_times, dtype=np.float64)
    require(targets.ndim == 1 and targets.size > 0,
            f"save_times={save_times!r}: give times in ({t0}, {t_end}], or None to save "
            "t_end only")
    slack = 1e-12 * abs(t_end)  # of the time, whatever its sign
    require(bool(np.all(np.diff(targets) > 0)) and targets[0] > t0 and
            targets[-1] <= t_end + slack,
            f"save_times must increase within ({t0}, {t_end}]")
    if targets[-1] < t_end - slack:  # the run goes on to t_end, which it saves
        targets = np.append(targets, t_end)
    tau = solver.units.time
    c = solver.to_warp(c0)
    state = solver.to_numpy(c)
    out = Trajectory()
    _save(solver, out, t0, state, 0)
    solver._update_temperature(t0)  # the mobility bound reads the temperature at t0
    s4 = solver._s4(state)
    scale = float(np.max(np.abs(state)) if error_scale is None else error_scale) or 1.0
    t = t0 / tau
    dt = (1e-3 if dt0 is None else dt0 / tau)
    dt_max = np.inf if solver.dt_max is None else solver.dt_max / tau
    previous: tuple[wp.array, float] | None = None
    last_good, step = (0, state), 0
    for target in targets / tau:
        while t < target - 1e-14 * abs(target):
            solver._update_temperature(t * tau)
            h = min(dt, dt_max, target - t)
            delta, euler = solver.increment(c, h, s4)
            error = solver._step_error(c, delta, euler, previous, h) / scale
            if not np.isfinite(error) or error > 4 * solver.tolerance:
                out.rejected += 1
                dt = h / 4
                if dt * tau < 1e-12 * max(abs(t_end), 1.0):  # c itself is still finite
                    raise BlowUpError(step=step + 1, t=t * tau, field="c",
                                      last_good_step=step, last_good_state=solver.to_numpy(c),
                                      what="could not be advanced (every smaller step's "
                                           "error estimate was NaN/Inf or above 4x the "
                                           "tolerance)",
                                      advice="lower dt_max or the tolerance, or check the "
                                             "inputs (the initial field, and the temperature "
                                             "and heat of transport or their non-dimensional "
                                             "counterparts)")
                continue
            solver._advance(c, delta)
            t, step = t + h, step + 1
            previous = (delta, h)
            out.dt.append(h * tau)
            grow = 2.0 if error == 0 else min(2.0, max(0.5, 0.9 * np.sqrt(solver.tolerance
                                                                         / error)))
            if h == min(dt, dt_max):  # a step cut short by a save time keeps dt
                dt = h * grow
            at_save = t >= target - 1e-14 * abs(target)
            snapshot = None
            if at_save or step % solver.check_every == 0:
                snapshot = checked_state(solver, c, step, t * tau, last_good,
                                         "lower the tolerance or dt_max: the error "
                                         "estimate accepted a step that left them")
                last_good = (step, snapshot)
            if at_save:
                _save(solver, out, target * tau, snapshot, step)
            if callback is not None:
                callback(t * tau, step, snapshot if at_save else None)
    return out


def checked_state(solver: ThermomigrationSolver, c: wp.array, step: int, t: float,
                  last_good: tuple, advice: str) -> np.ndarray:
    """``c`` as NumPy, or :class:`BlowUpError` at ``step`` (time ``t`` [s]) if not finite
    or outside the model's compositions (a dilute or regular solution's c outside (0, 1):
    a step too long for the free energy), with the caller's ``advice``."""
    state = solver.to_numpy(c)
    if not np.all(np.isfinite(state)):
        raise BlowUpError(step=step, t=t, field="c", last_good_step=last_good[0],
                          last_good_state=last_good[1])
    low, high = solver.free_energy.compositions
    if not (state.min() > low and state.max() < high):
        raise BlowUpError(step=step, t=t, field="c", last_good_step=last_good[0],
                          last_good_state=last_good[1],
                          what=f"left the model's compositions ({low:g}, {high:g}): "
                               f"min {state.min():.3g}, max {state.max():.3g},",
                          advice=advice)
    return state


def _save(solver: ThermomigrationSolver, out: Trajectory, t: float, state: np.ndarray,
          step: int) -> None:
    """Append ``state``, saved at ``t`` [s] after ``step`` accepted steps, with its mass and
    free energy, to ``out``."""
    out.times.append(float(t))
    out.states.append(state)
    out.mass.append(solver.total_mass(state))
    out.free_energy.append(solver.total_free_energy(state))
    out.steps.append(step)
