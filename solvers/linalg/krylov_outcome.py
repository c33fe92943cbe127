r"""What a Krylov solve (:mod:`~physml.solvers.linalg.krylov`,
:mod:`~physml.solvers.linalg.restarted_gmres`) ends with: its :class:`SolveResult`, or the
:class:`~physml.solvers.errors.ConvergenceError` of a solve that did not converge, broke down or
stagnated, with the breakdown tests of :func:`~physml.solvers.linalg.cg` and
:func:`~physml.solvers.linalg.bicgstab` that find the iteration whose step divided by zero.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import warp as wp

from ..errors import ConvergenceError, InaccurateSolveWarning
from ..runtime import warp_device
from .kernels import RESIDUAL

DIVERGED_ABOVE_FLOOR = 10.0
"""A solve whose best true residual stays above this many times the rounding floor of its x
(:meth:`~physml.solvers.linalg.krylov_iteration._FloorWatch.floor_at_x`) did not stop at the
arithmetic's limit: after a runaway of its recursive residual it diverged (raised as the
method's failure, not returned as the arithmetic's limit), else A x = b may have no solution.
At the floor the best lies within 3 times it (float32 BiCGStab on a layered coefficient of
contrast 1e4); a method unstable on its system stops 30 to 6e4 times above it (float32
BiCGStab, unpreconditioned, on a shifted Laplacian or a convection-dominated central
difference, where float32 LU lies within 4 times the floor)."""

SINGULAR = ("A may be singular (or indefinite) and b not in its range: then A x = b has no "
            "solution, and no method or preconditioner finds one")
"""A cause of a residual that stays far above the arithmetic's rounding floor."""


@dataclass(frozen=True)
class SolveResult:
    """The outcome of a converged Krylov solve.

    Attributes:
        x: the solution, a new Warp array of shape (n,).
        iterations: iterations run until the tolerance was met.
        residuals: $\\|r_j\\|_2$ for j = 0..iterations, shape (iterations + 1,): the
            recursive residuals, but for the start of each restart and the last entry, which
            are true residuals $\\|b - A x_j\\|_2$.
        b_norm: $\\|b\\|_2$.
    """

    x: wp.array
    iterations: int
    residuals: np.ndarray
    b_norm: float

    @property
    def relative_residual(self) -> float:
        """$\\|b - A x\\| / \\|b\\|$ of the answer (the true residual)."""
        return float(self.residuals[-1] / self.b_norm) if self.b_norm > 0 else 0.0

    def __reduce__(self) -> tuple:
        """Pickled with ``x`` as a NumPy array, a Warp array on its device again when
        unpickled."""
        return _solve_result, (self.x.numpy(), str(self.x.device), self.iterations,
                               self.residuals, self.b_norm)


def _solve_result(x: np.ndarray, device: str, iterations: int, residuals: np.ndarray,
                  b_norm: float) -> SolveResult:
    return SolveResult(wp.array(x, device=warp_device(device)), iterations, residuals, b_norm)


Breakdown = Callable[[np.ndarray, float], "tuple[int, str, str] | None"]
"""A method's breakdown test: the table rows 0..m of a block of m iterations and the squared
tolerance -> the first iteration (0-based in the block) whose step divided by zero while its
residual was above the tolerance, what vanished and what that says of A or M; or None."""


def no_breakdown(rows: np.ndarray, tol2: float) -> None:
    return None


def _first(broken: np.ndarray, what: str, why: str) -> tuple[int, str, str] | None:
    """The first iteration flagged in ``broken``, with ``what`` and ``why``; None if none is."""
    found = np.flatnonzero(broken)
    return (int(found[0]), what, why) if found.size else None


def _earliest(*found: tuple[int, str, str] | None) -> tuple[int, str, str] | None:
    """The breakdown of the earliest iteration; within one iteration the first of ``found``,
    which lists the denominators in the order the iteration computes them."""
    return min((f for f in found if f is not None), key=lambda f: f[0], default=None)


def cg_breakdown(rows: np.ndarray, tol2: float, rz_col: int) -> tuple[int, str, str] | None:
    """CG divides by $p^T A p$ (column 2) and by $r^T z$ (column ``rz_col``), both positive
    for a symmetric positive definite A and M while $r \\ne 0$."""
    if rows[:-1, 2].all() and rows[:-1, rz_col].all():  # no zero denominator: the usual case
        return None
    active = rows[:-1, RESIDUAL] > tol2
    return _earliest(  # r^T z of row k ends iteration k - 1; p^T A p is iteration k's
        _first(active & (rows[:-1, rz_col] == 0.0), "r^T z = 0 with r != 0",
               "the preconditioner is not positive definite"),
        _first(active & (rows[:-1, 2] == 0.0), "p^T A p = 0",
               "A is not positive definite: CG needs a symmetric positive definite A (gmres or "
               "bicgstab solve others)"))


def bicgstab_breakdown(rows: np.ndarray, tol2: float) -> tuple[int, str, str] | None:
    """BiCGStab divides by $\\rho = \\hat r^T r$ (column 1), $\\hat r^T v$ (column 2) and, in
    the next direction, by $\\omega = t^T h / t^T t$ (columns 4, 5: $c\\,t^T h$ and
    $c^2 t^T t$, scaled to the order of $\\|h\\|^2$ whatever A's scale, so that their zero is
    not the underflow of a tiny A's squares) where the residual is not yet met."""
    if rows[:-1, 1:3].all() and rows[:-1, 4:6].all():  # no zero denominator: the usual case
        return None
    active = rows[:-1, RESIDUAL] > tol2
    going_on = active & (rows[1:, RESIDUAL] > tol2)
    return _earliest(  # rho and r0^T v come before omega in an iteration
        _first(active & ((rows[:-1, 1] == 0.0) | (rows[:-1, 2] == 0.0)),
               "r0^T r = 0 or r0^T v = 0",
               "the shadow residual is orthogonal to the Krylov space; use gmres"),
        _first(going_on & ((rows[:-1, 4] == 0.0) | (rows[:-1, 5] == 0.0)), "omega = 0",
               "the stabilising step made no progress; use gmres"))



@contextmanager
def carrying_iterate(x: wp.array, scale: float = 1.0,
                     kept_at_breakdown: bool = False) -> Iterator[None]:
    """Give a :class:`ConvergenceError` raised inside a copy of the solve's iterate ``x`` times
    ``scale`` (the unit of a solve of $A (x / s) = b / s$) as its ``x``, unless the solve broke
    down and ``kept_at_breakdown`` is False (CG and BiCGStab: the steps past the breakdown
    changed x; GMRES updates x at a cycle's end only, so its x stays the last cycle's)."""
    try:
        yield
    except ConvergenceError as error:
        if error.reason.startswith("broke down") and not kept_at_breakdown:
            raise
        error.x = wp.clone(x, requires_grad=False)
        if scale != 1.0:
            error.x.assign(error.x.numpy() * scale)
        raise


def convergence_failure(method: str, iterations: int, norms: np.ndarray, b_norm: float,
                        tol: float, breakdown: tuple[str, str] | None = None,
                        stagnated: str | None = None, preconditioner: Any = None,
                        diverged: tuple[int, float, float, int, float] | None = None
                        ) -> ConvergenceError:
    """The error of a solve that stopped at ``iterations`` with residual norms ``norms``
    (the last one reached; NaN/Inf: a breakdown) against the absolute tolerance ``tol``; a
    non-finite start names its input (A and x0) rather than the method, a later one the
    ``preconditioner`` in use (if any) and the operator; ``breakdown``: (what vanished, what it
    means for A or the preconditioner); ``stagnated``: the advice for a true residual, the
    last of ``norms``, that restarts no longer lower; ``diverged``: (the iteration at which the
    recursive residual first ran away, its smallest before, its value there, the runaways in
    all, the rounding floor of the best x), for a best true residual, the last of ``norms``,
    far above that floor. A divergence names among its causes a singular A with b outside its
    range, where no method or preconditioner helps (CG's recursion runs away there, as on an A
    that is not positive definite); a run out of ``maxiter`` iterations at a residual above the
    start's advises more iterations or a preconditioner first (CG's residual is not monotone),
    then that cause."""
    norms = np.asarray(norms, dtype=np.float64)
    finite = np.isfinite(norms[-1])
    advice = {}
    reason = "did not converge" if finite else "broke down (NaN/Inf)"
    if breakdown is not None:
        reason, advice = f"broke down ({breakdown[0]})", {"advice": breakdown[1]}
    elif diverged is not None:
        at, smallest, grown, runs, floor = diverged
        again = f", and ran away {runs} times in all" if runs > 1 else ""
        above = (f"{norms[-1] / floor:.0f} times above" if floor > 0 else "above")
        reason = (f"diverged (its recursive residual grew from its smallest, "
                  f"{smallest / b_norm:.3e} of |b|, to {grown / b_norm:.3e} at iteration {at}"
                  f"{again}; the true residual of its best x, below, lies {above} the "
                  f"rounding floor of the arithmetic on this system, {floor / b_norm:.1e})")
        unstable = ("A is not symmetric positive definite (use gmres or bicgstab)"
                    if method == "cg" else "the method is unstable on this system (use a "
                                           "preconditioner or gmres)")
        advice = {"advice": f"{unstable}, or {SINGULAR}"}
    elif stagnated is not None:
        reason = "stagnated (its true residual b - A x stays above the tolerance)"
        advice = {"advice": stagnated}
    elif not np.isfinite(norms[0]):
        advice = {"advice": "the initial residual b - A x0 is NaN/Inf: check A's values and x0"}
    elif finite and norms[-1] > norms[0]:
        advice = {"advice": "raise maxiter or use a preconditioner (a Krylov residual may "
                            f"rise before it falls); if it keeps rising, {SINGULAR}"}
    elif not finite and preconditioner is None:
        advice = {"advice": "the operator produced a non-finite value: check its values"}
    elif not finite:
        name = getattr(preconditioner, "name", type(preconditioner).__name__)
        advice = {"advice": f"the {name!r} preconditioner's apply or the operator produced a "
                            "non-finite value: check the preconditioner (e.g. a factor with a "
                            "tiny diagonal) or the operator's values"}
    return ConvergenceError(
        method=method,
        iterations=iterations,
        residual=float(norms[-1] / b_norm) if b_norm > 0 else float(norms[-1]),
        tolerance=tol / b_norm if b_norm > 0 else tol,
        residuals=norms,
        reason=reason,
        **advice,
    )


def rounding_floor(method: str, floor_action: str, dtype: type, iterations: int,
                   norms: np.ndarray, b_norm: float, tol: float, stacklevel: int,
                   above_floor: float = 1.0) -> None:
    """Act on a true residual, the last of ``norms``, that restarts no longer lower: the
    rounding floor of ``dtype`` arithmetic on the system lies above ``tol``, or, where the
    residual lies ``above_floor`` > ``DIVERGED_ABOVE_FLOOR`` times the rounding floor at its x
    (:mod:`~physml.solvers.linalg.krylov_iteration`), A x = b may have no solution. As
    ``floor_action`` says (see :func:`~physml.solvers.linalg.cg`'s ``floor``): raise the
    stagnation's :class:`ConvergenceError` (``"raise"``), warn with an
    :class:`InaccurateSolveWarning` whose ``stacklevel`` counts from the caller (``"warn"``), or
    nothing (``"accept"``)."""
    single = dtype == wp.float32
    wider = "solve in float64, " if single else ""
    advice = (f"the rounding floor of {'float32' if single else 'float64'} arithmetic on this "
              f"system; {wider}loosen rtol, or precondition to lower A's condition number")
    if above_floor > DIVERGED_ABOVE_FLOOR:
        advice = (f"{above_floor:.0e} times above the rounding floor of the arithmetic at its "
                  f"x: {SINGULAR}")
    if floor_action == "raise":
        raise convergence_failure(method, iterations, norms, b_norm, tol, stagnated=advice)
    if floor_action == "warn":
        warnings.warn(
            f"{method}: the true relative residual |b - A x| / |b| = {norms[-1] / b_norm:.3e} "
            f"stays above the tolerance {tol / b_norm:.3e} through restarts, after "
            f"{iterations} iterations: {advice}", InaccurateSolveWarning,
            stacklevel=stacklevel + 1)
