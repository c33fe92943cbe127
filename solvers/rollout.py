"""The batched rollout of a grid solver: samples of different step counts, saves and time
steps advancing together, with recorded fused steps replayed.

The batch ``(B, n)`` (flat states, n = ``grid.size``) runs sorted by decreasing step count,
so that after step s the samples still advancing are a prefix of it; each sample's result is
bitwise the result of its own rollout. Between the steps that save, check for NaN/Inf or end
a sample, a run of up to :data:`MAX_REPLAYED_STEPS` steps replays their recorded launches in
one go. A step whose implicit solve finds its right-hand side NaN/Inf
(:class:`~physml.solvers.implicit_diffusion.NonFiniteStepError`) is a blow-up at that step.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import warp as wp

from .batch_parameters import sample_parameters, sample_rows
from .errors import BlowUpError
from .implicit_diffusion import NonFiniteStepError
from .rk_stages import StageWork

if TYPE_CHECKING:
    from .base import GridSolver

MAX_REPLAYED_STEPS = 64
"""Most rollout steps replayed in one go (:func:`replayed_steps`; a rollout with a callback
replays one step at a time)."""


def batch_rollout(solver: GridSolver, states: np.ndarray, counts: np.ndarray,
                  every: np.ndarray, steps: np.ndarray, arrays: dict[str, wp.array],
                  callback: Callable[[int], None] | None) -> np.ndarray:
    """The saved states ``(B, n_saved, n)`` of checked flat states ``(B, n)``, step counts,
    save intervals and time steps ``(B,)`` and parameter arrays
    (:meth:`~physml.solvers.base.GridSolver.batch_parameter_arrays`), in the order given."""
    if np.all(counts[:-1] >= counts[1:]):  # longest first already: active samples lead
        return _rollout_sorted(solver, states, counts, every, steps, arrays, callback)
    order = np.argsort(-counts, kind="stable")
    arrays = {name: sample_rows(solver, name, a, order) for name, a in arrays.items()}
    in_order = _rollout_sorted(solver, states[order], counts[order], every[order],
                               steps[order], arrays, callback)
    saved = np.empty_like(in_order)
    saved[order] = in_order
    return saved


def _rollout_sorted(solver, states, counts, every, steps, arrays, callback) -> np.ndarray:
    """Rollout of a batch sorted by decreasing step count: after step s only the samples
    with more than s steps advance (a prefix of the batch)."""
    with solver.stages.rollout_work() as work:
        return _rollout_with(solver, work, states, counts, every, steps, arrays, callback)


def _rollout_with(solver, work, states, counts, every, steps, arrays, callback) -> np.ndarray:
    """:func:`_rollout_sorted` in the work arrays ``work``."""
    batch, n = states.shape
    saved = np.empty((batch, int(counts[0] // every[0]) + 1 if batch else 1, n),
                     dtype=solver.np_dtype)
    saved[:, 0] = states
    u = work.filled("u0", states.astype(solver.np_dtype, copy=False), solver.dtype,
                    solver.device)
    dt = work.filled("dt", steps.astype(solver.np_dtype), solver.dtype, solver.device)
    last_good = (0, states)
    # the steps that end, save or check a sample; the bookkeeping below is skipped at
    # the others (~10 us a step)
    last = int(counts.max(initial=0))
    due = np.zeros(last + 1, dtype=bool)
    due[counts] = True
    for interval in {*every.tolist(), solver.check_every}:
        due[interval::interval] = True
    active = batch
    due_steps = np.flatnonzero(due)
    step = 0
    while step < last:
        if counts[active - 1] <= step:
            active = int(np.count_nonzero(counts > step))
            arrays = {name: sample_rows(solver, name, a, slice(0, active))
                      for name, a in arrays.items()}
            u, dt = u[: active * n], dt[:active]
        # up to the next step that saves, checks or ends a sample, in one go when replayed
        # (step by step for a callback, which hears of each step when it is done)
        upto = step + 1 if callback is not None else min(
            int(due_steps[np.searchsorted(due_steps, step + 1)]), step + MAX_REPLAYED_STEPS)
        try:
            u, done = solver.replay_steps(u, arrays, dt, work, active, upto - step)
        except NonFiniteStepError:  # one IMEX step, from step to step + 1
            b = _first_non_finite_sample(solver, u, arrays, dt, active)
            raise _blow_up(solver, step + 1, steps[b], last_good[0], last_good[1][b]) from None
        step += done
        saving = step % every[:active] == 0
        if due[step] and (saving.any() or step % solver.check_every == 0
                          or np.any(counts[:active] == step)):
            current = u.numpy().reshape(active, n)  # a work array: the next step writes it
            bad = ~np.all(np.isfinite(current), axis=1)
            if bad.any():
                b = int(np.argmax(bad))
                raise _blow_up(solver, step, steps[b], last_good[0], last_good[1][b])
            if saving.all() and np.all(every[:active] == every[0]):
                saved[:active, step // every[0]] = current
            else:
                rows = np.flatnonzero(saving)
                saved[rows, step // every[rows]] = current[rows]
            if step < last:
                last_good = (step, current.astype(np.float64))
        if callback is not None:
            callback(step)
    return saved


def _blow_up(solver: GridSolver, step: int, dt: float, good_step: int,
             good_state: np.ndarray) -> BlowUpError:
    """The error for a sample of time step ``dt`` found NaN/Inf at ``step``, whose flat
    state ``(n,)`` was last found finite at ``good_step``."""
    return BlowUpError(step=step, t=step * float(dt), last_good_step=good_step,
                       last_good_state=good_state.reshape(solver.grid.shape))


def _first_non_finite_sample(solver: GridSolver, u: wp.array, arrays: dict[str, wp.array],
                            dt: wp.array, active: int) -> int:
    """The first of the ``active`` samples of the flat states ``u`` ``(active n,)`` whose
    next step raises :class:`~physml.solvers.implicit_diffusion.NonFiniteStepError`, once
    the batch's step raised it: the samples before the last step again, one at a time, as
    the batch's step ran them (``arrays`` and ``dt``: as :meth:`replay_steps` takes them)."""
    n = solver.grid.size
    for b in range(active - 1):
        try:
            with solver.stages.step_lock:
                solver.advance(u[b * n:(b + 1) * n], sample_parameters(solver, arrays, b),
                               dt=dt[b:b + 1])
        except NonFiniteStepError:
            return b
    return active - 1


def replayed_steps(solver: GridSolver, u: wp.array, arrays: dict[str, wp.array],
                   dt: wp.array, work: StageWork, active: int, most: int
                   ) -> tuple[wp.array, int]:
    """Up to ``most`` :meth:`~physml.solvers.base.GridSolver.advance` steps of a rollout,
    and how many ran.

    A fused step is the same stage launches on the same arrays whenever its active
    samples, input array, time steps and parameter arrays are: ``work.replays`` keeps
    each such step's recorded calls with the output they wrote and the arrays they read,
    also from one rollout to the next (the work arrays they name stay alive in ``work``).
    Steps found there, unless a launch was re-packed for other arrays since, are replayed
    together (:meth:`~physml.solvers.rk_stages.FusedStages.run`: where the host threads'
    chunks hold whole samples, each thread runs its chunk of every step without waiting
    for the others); otherwise one step runs, and a fused one is recorded (an IMEX step
    or a PDE's own right-hand side launches more than its stages, so it never replays)."""
    read = (dt, *arrays.values())
    replays = work.replays
    with solver.stages.step_lock:
        launches, out, done = [], u, 0
        while done < most:
            kept = replays.get((active, out.ptr))
            if kept is None or kept[2] != solver.stages.repacks or not all(
                    map(operator.is_, kept[3], read)):
                break
            launches.extend(kept[0])
            out = kept[1]
            done += 1
        if done:
            solver.stages.run(*launches, batch=active)
            return out, done
        with solver.stages.capturing() as captured:
            out = solver.advance(u, arrays, dt=dt, work=work)
        # a fused step is its stage launches; another (IMEX, a PDE's own rhs) is more
        if solver.fused and captured and all(calls is not None for calls in captured):
            if len(replays) >= work.MAX_REPLAYS:
                replays.clear()
            replays[(active, u.ptr)] = (list(captured), out, solver.stages.repacks, read)
        return out, 1

