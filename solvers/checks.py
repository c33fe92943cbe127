"""The checks of a grid solver's arguments: conditions, states, step counts and per-sample
values, each failing with a ValueError that names the argument and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import whole_number
from .parameters import refuse_text_and_bools

MAX_SOLVE_STEPS = 10**7
"""Most time steps one solve runs unless its caller allows more: ``physml solve`` (its
``--max-steps`` default) and the solves a case makes before it trains (its observations, the
Burgers reference of kind ``pinn``, the data of kind ``moe``)."""


DT_NOT_SET = ("dt is not set: build the solver with dt=..., set solver.dt = ..., or use "
              "solver.with_dt(solver.stable_dt(u0)); a rollout also takes per-sample dt=...")
"""The refusal of a step, rollout or stability check of a solver built without ``dt``."""

def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def finite_state(u: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``u`` as a float64 array of ``shape``, with a ValueError naming ``name`` if it has
    another shape or holds NaN/Inf."""
    arr = np.asarray(u, dtype=np.float64)
    require(arr.shape == shape, f"{name} has shape {arr.shape}; expected the grid shape {shape}")
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    require(bad == 0, f"{name} contains {bad} NaN/Inf value(s); the state must be finite")
    return arr


def checked_time_step(dt: Any) -> float:
    """A solver's time step ``dt`` [s] as a float: a finite positive number, also as a 0-d
    array or tensor; not text or a bool, which ``float`` would read ("1e-4" as 1e-4, True as
    1) (:func:`~physml.solvers.parameters.refuse_text_and_bools`).

    Raises:
        ValueError: naming ``dt`` and the value.
    """
    refuse_text_and_bools("dt", dt)
    value = float(dt)
    require(math.isfinite(value) and value > 0, f"dt={dt!r} must be a positive number")
    return value


def check_counts(n_steps: int, save_every: int) -> tuple[int, int]:
    """``(n_steps, save_every)`` as ints, with a ValueError unless n_steps >= 0 and
    save_every >= 1 are integers and n_steps is a multiple of save_every (the steps past the
    last saved state would run and be lost)."""
    n, every = whole_number(n_steps, "n_steps", 0), whole_number(save_every, "save_every", 1)
    if n % every:
        raise ValueError(
            f"n_steps={n} is not a multiple of save_every={every}: the last {n % every} "
            f"step(s) would run and not be saved; pass n_steps={n - n % every} or "
            f"{n - n % every + every}")
    return n, every


def per_sample(value: Any, batch: int, name: str, kind: type = int) -> np.ndarray:
    """A count or step for every sample, shape (batch,), from one value or one per sample
    (numbers: not strings, not bools)."""
    given = np.asarray(value)
    require(given.dtype.kind in "iuf",
            f"{name}={value!r} must be a number, or one per sample (whole numbers for a count)")
    array = given.astype(np.float64)
    require(array.ndim == 0 or array.shape == (batch,),
            f"{name} has shape {array.shape}; expected one value or one per sample ({batch},)")
    array = np.full(batch, array) if array.ndim == 0 else array
    if kind is int:
        require((array == np.round(array)).all(), f"{name}={value!r} must hold whole numbers")
        return array.astype(np.int64)
    return array


def checked_schedule(n_steps: Any, save_every: Any, batch: int
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """A rollout's step counts and save intervals for each of ``batch`` samples, ``(batch,)``
    int64 each (from one value or one per sample, :func:`per_sample`; each pair checked by
    :func:`check_counts`), and ``n_saved = n_steps // save_every + 1``, the number of states
    every sample saves (the initial one included).

    Raises:
        ValueError: a bad count, or samples that would save different numbers of states.
    """
    counts = per_sample(n_steps, batch, "n_steps")
    every = per_sample(save_every, batch, "save_every")
    for n, k in set(zip(counts.tolist(), every.tolist())):
        check_counts(n, k)
    saves = counts // every
    require(np.all(saves == saves[0]), f"n_steps // save_every differs between samples "
            f"({sorted(set(saves.tolist()))}); every sample must save as many states")
    return counts, every, int(saves[0]) + 1


def check_callback(callback: Any, where: str, instead: str) -> None:
    """Refuse a rollout's ``callback`` that is neither None nor callable. A mapping there is
    most likely parameters given in the place of the callback (the 4th positional argument of
    ``solver.rollout``, where that of ``physml.bridge.rollout`` is ``parameters``).

    Args:
        callback: the value given.
        where: the rollout that takes it, for the message (``"solver.rollout"``).
        instead: what to do with parameters instead, for a mapping (``"pass parameters=..."``).

    Raises:
        TypeError: naming the value's type and the cure.
    """
    if callback is None or callable(callback):
        return
    if isinstance(callback, Mapping):
        raise TypeError(f"{where}: callback is a {type(callback).__name__}, not a callable: "
                        f"the 4th positional argument is callback; {instead}")
    raise TypeError(f"callback={callback!r} is not callable; {where} calls it with the number "
                    "of steps done after each step (or pass None)")
