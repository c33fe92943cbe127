"""Exceptions raised by the solvers (re-exported by :mod:`physml.errors`), and the checks of
number arguments."""

from __future__ import annotations

import math
import numbers

import numpy as np


def plain_scalar(value: object) -> object:
    """The Python scalar of a 0-d NumPy array, NumPy scalar or tensor; anything else as it is."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item") \
            and not isinstance(value, np.bool_):
        return value.item()
    return value


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number of any kind (also as a 0-d array or tensor), not a
    bool or a string."""
    value = plain_scalar(value)
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def whole_number(value: object, name: str, minimum: int) -> int:
    """``value`` as an int, with a ValueError naming ``name`` unless it is a whole number (an
    integer of any kind, or a float with no fractional part, also as a 0-d NumPy array or
    tensor; not a bool) >= ``minimum``."""
    given, value = value, plain_scalar(value)
    if not is_real(value):
        whole = False
    elif isinstance(value, numbers.Integral):
        whole = True
    else:
        whole = math.isfinite(value) and float(value).is_integer()
    if not (whole and value >= minimum):
        raise ValueError(f"{name}={given!r} must be a whole number >= {minimum}")
    return int(value)


def refuse_grad(value: object, name: str, where: str, instead: str | None) -> None:
    """Refuse a tensor that requires grad where ``where`` (a NumPy/Warp API, e.g.
    "solver.rollout") takes ``name``: it would drop the gradient, or fail in PyTorch's
    ``numpy()``.

    Raises:
        ValueError: naming ``name`` and ``where``, then ``instead`` (what gives gradients; None:
            nothing in physml does), then the cure ``{name}.detach()``.
    """
    if not getattr(value, "requires_grad", False):
        return
    if instead is None:
        raise ValueError(f"{name} is a tensor that requires grad; {where} does not "
                         "differentiate, and physml has no differentiable counterpart: pass "
                         f"{name}.detach()")
    raise ValueError(f"{name} is a tensor that requires grad; {where} does not differentiate: "
                     f"{instead}, or pass {name}.detach()")


def _restored(cls: type, args: tuple, state: dict) -> BaseException:
    """An exception of ``cls`` with its message ``args`` and attributes ``state``, its
    ``__init__`` not run (:class:`PicklableError`)."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class PicklableError(Exception):
    """An exception whose ``__init__`` takes other arguments than its message, pickled as its
    message and attributes (the default pickles the message alone and calls ``__init__`` with
    it, which fails or garbles the message), so that it crosses from a worker process (a
    ``DataLoader`` or Dask worker) whole."""

    def __reduce__(self) -> tuple:
        return _restored, (type(self), self.args, self._picklable_state())

    def _picklable_state(self) -> dict:
        """The attributes to pickle (all of them; a subclass converts what does not pickle)."""
        return dict(self.__dict__)


class UnstableStepError(PicklableError, ValueError):
    """The requested time step exceeds the scheme's stability limit.

    Attributes:
        dt: the requested step.
        dt_max: the largest stable step.
    """

    def __init__(self, message: str, *, dt: float, dt_max: float) -> None:
        super().__init__(message)
        self.dt, self.dt_max = dt, dt_max


class BlowUpError(PicklableError, FloatingPointError):
    """A field became NaN or Inf during a run.

    Attributes:
        step: the first checked step found non-finite (a rollout checks every saved step, every
            ``check_every``-th step and the last), or, in 2-D and 3-D, the IMEX step whose
            implicit solve found its right-hand side NaN/Inf (1-D IMEX's direct solve passes
            NaN on to the checks).
        t: the model time of that step.
        field: the name of the field.
        last_good_step: the step of ``last_good_state``.
        last_good_state: the last state found finite, as a NumPy array (or None).
        what: what happened to the field (default "became NaN/Inf").
        advice: what ends the message.
    """

    def __init__(
        self,
        *,
        step: int,
        t: float,
        field: str = "u",
        last_good_step: int | None = None,
        last_good_state: np.ndarray | None = None,
        what: str = "became NaN/Inf",
        advice: str = "reduce dt or check the inputs",
    ) -> None:
        where = f"step {step} (t={t:.6g})"
        good = (
            "" if last_good_step is None else f"; last finite state kept from step {last_good_step}"
        )
        super().__init__(f"{field} {what} at {where}{good}; {advice}")
        self.step, self.t, self.field = step, t, field
        self.last_good_step, self.last_good_state = last_good_step, last_good_state
        self.what, self.advice = what, advice


class ConvergenceError(PicklableError, ArithmeticError):
    """An iterative linear solve did not reach its tolerance.

    Attributes:
        method: the solver (``"cg"``, ``"bicgstab"``, ``"gmres"``).
        iterations: the iterations run.
        residual: the relative residual reached, $\\|r\\| / \\|b\\|$ (NaN on breakdown).
        tolerance: the relative residual asked for, $\\max(rtol, atol / \\|b\\|)$.
        residuals: the history $\\|r_j\\|$, j = 0..iterations.
        reason: what happened ("did not converge", "broke down (...)", "diverged (...)",
            "stagnated (...)").
        x: a copy of the iterate the solve stopped at (a Warp array on the solve's device; for a
            divergence, its best iterate), to use or to restart from as ``x0``; None after a
            breakdown of CG or BiCGStab (the steps past a division by zero or a NaN/Inf leave
            no meaningful iterate; GMRES keeps its last cycle's) and where the solver keeps no
            iterate.
    """

    def __init__(
        self,
        *,
        method: str,
        iterations: int,
        residual: float,
        tolerance: float,
        residuals: np.ndarray,
        reason: str = "did not converge",
        advice: str = ("raise maxiter, use a preconditioner, or check that the operator suits "
                       "the method"),
    ) -> None:
        super().__init__(
            f"{method} {reason} in {iterations} iterations: relative residual {residual:.3e} "
            f"> tolerance {tolerance:.3e}; {advice}"
        )
        self.method, self.iterations, self.residual = method, iterations, residual
        self.tolerance, self.residuals = tolerance, residuals
        self.reason, self.x = reason, None

    def _picklable_state(self) -> dict:
        """The attributes, ``x`` as its values: unpickled, it is a Warp array on the CPU."""
        state = dict(self.__dict__)
        if self.x is not None:
            state["x"] = _CpuArray(self.x.numpy())
        return state


class _CpuArray:
    """A Warp array's values in a pickle, made a Warp array on the CPU again when unpickled."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __reduce__(self) -> tuple:
        return _cpu_array, (self.values,)


def _cpu_array(values: np.ndarray) -> object:
    """``values`` as a Warp array on the CPU (Warp started quietly if it is not yet)."""
    import warp as wp

    from .runtime import warp_device

    return wp.array(values, dtype=wp.dtype_from_numpy(values.dtype), device=warp_device("cpu"))


class InaccurateSolveWarning(RuntimeWarning):
    r"""A Krylov solve whose recursive residual (GMRES: its estimate in a cycle) fell below the
    true residual $\|b - A x\|$ while the true one stayed above the tolerance through
    restarts: the rounding floor of the arithmetic (float32, or float64 on an ill-conditioned A
    with smooth data) lies above the tolerance. With ``floor="warn"`` (the default of
    :func:`~physml.solvers.linalg.cg`, :func:`~physml.solvers.linalg.bicgstab` and
    :func:`~physml.solvers.linalg.gmres`) the answer is returned, as accurate as that
    arithmetic allows."""
