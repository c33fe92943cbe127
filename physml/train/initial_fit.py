r"""TENG's initial fit (:meth:`~physml.train.teng.TENG.fit_initial`): all parameters of the
network fitted to the initial condition $u_0$ on random points by Levenberg–Marquardt with
variable projection, down to ``tolerance`` (1e-10) on its points where the network can:
2.4e-10 for the 1D tests. The reduced 2D network (641 parameters) converges linearly and
slowly, measured on fresh points: 1.4e-6 after 400 iterations, 2.0e-7 after 2000, 2.5e-8 after
7800 (cases: ``training.teng.initial_iterations``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..devices import Stopwatch
from ..solvers.errors import is_real, whole_number
from .gauss_newton import relative_error
from .least_squares import lstsq

if TYPE_CHECKING:
    from .teng import TENG


class FitToleranceWarning(RuntimeWarning):
    """:meth:`~physml.train.teng.TENG.fit_initial` stopped above its tolerance (the error
    reached is in the message and in ``initial_error``)."""


@dataclass(frozen=True)
class FitProgress:
    r"""One iteration of :meth:`~physml.train.teng.TENG.fit_initial`, as its ``on_iteration``
    callback sees it.

    Attributes:
        iteration: iterations done (1, 2, ...).
        error: relative L2 error $\|u_\theta(X) - u_0(X)\| / \|u_0(X)\|$ on the fit's points.
        damping: the Levenberg–Marquardt damping the next iteration starts from.
        elapsed_s: seconds since the fit began (device-synchronised).
    """

    iteration: int
    error: float
    damping: float
    elapsed_s: float


def fit_initial(teng: TENG, u0: Callable[[torch.Tensor], torch.Tensor], points: int,
                tolerance: float, max_iterations: int,
                on_iteration: Callable[[FitProgress], None] | None) -> tuple[torch.Tensor, float]:
    r"""Fit ``teng.theta`` to ``u0`` on ``points`` points of ``teng``'s random stream; returns
    the fitted parameters and their relative L2 error on as many fresh points (drawn next).

    Each iteration is a Levenberg–Marquardt step (the damped system solved by QR,
    $[J; \sqrt{\lambda s}I]\delta = [r; 0]$, not by normal equations, which would square
    the conditioning) followed by the exact least-squares solve for the output layer
    (variable projection); it stops when the training error reaches ``tolerance``, after
    ``max_iterations``, or when no damping up to 1e8 lowers the error; stopped above
    ``tolerance``, it warns (:class:`FitToleranceWarning`) with the training error reached.
    The arguments are those of :meth:`~physml.train.teng.TENG.fit_initial`.
    """
    points, max_iterations = (whole_number(value, name, least) for name, value, least in (
        ("points", points, 1), ("max_iterations", max_iterations, 0)))
    if not (is_real(tolerance) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance={tolerance!r} must be a finite number >= 0")
    X, test = teng.sample(points), teng.sample(points)
    target, reference = _initial_values(u0, X), _initial_values(u0, test)
    theta, damping, ran = teng.theta.clone(), 1e-3, 0
    error = relative_error(teng.value(theta, X) - target, target)
    with Stopwatch(teng.device) as watch:
        for iteration in range(1, max_iterations + 1):
            if error <= tolerance or damping > 1e8:
                break
            theta, error, damping = _step(teng, theta, X, target, error, damping)
            ran = iteration
            if on_iteration is not None:
                on_iteration(FitProgress(iteration, error, damping, watch.read()))
    if error > tolerance:
        why = ("no damping up to 1e8 lowered it: loosen tolerance or widen the network"
               if damping > 1e8 else "raise max_iterations or loosen tolerance")
        warnings.warn(f"TENG.fit_initial stopped at training error {error:.3e} > "
                      f"tolerance={tolerance:g} after {ran} iterations (max_iterations="
                      f"{max_iterations}); {why}", FitToleranceWarning, stacklevel=3)
    return theta, relative_error(teng.value(theta, test) - reference, reference)


def _step(teng: TENG, theta: torch.Tensor, X: torch.Tensor, target: torch.Tensor,
          error: float, damping: float) -> tuple[torch.Tensor, float, float]:
    """One iteration of :func:`fit_initial` from ``theta`` (training ``error``): the damping
    grows 4-fold until a step lowers the error (then it shrinks 3-fold for the next), or
    passes 1e8, which leaves ``theta`` as it is. Returns (theta, error, damping)."""
    p = theta.numel()
    J = teng.jacobian(theta, X, torch.arange(p, device=teng.device))
    r = target - teng.value(theta, X)
    scale = float(J.square().sum(0).mean())
    zeros = torch.zeros(p, dtype=target.dtype, device=teng.device)
    eye = torch.eye(p, dtype=target.dtype, device=teng.device)
    output = teng.output_columns()
    while damping <= 1e8:
        A = torch.cat([J, math.sqrt(damping * scale) * eye])
        trial = theta + lstsq(A, torch.cat([r, zeros]), full_rank=True)  # damped
        rest = target - teng.value(trial, X)
        J_out = teng.jacobian(trial, X, output)
        trial[output] += lstsq(J_out, rest)
        trial_error = relative_error(teng.value(trial, X) - target, target)
        if trial_error < error:
            return trial, trial_error, max(damping / 3, 1e-15)
        damping *= 4
    return theta, error, damping


def _initial_values(u0: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """``u0(X)``, shape (n,), refused unless it is a tensor of that shape, finite, and not
    zero at every point (a ValueError naming u0)."""
    values = u0(X)
    if not isinstance(values, torch.Tensor) or values.shape != (len(X),):
        raise ValueError(f"u0 returned {tuple(getattr(values, 'shape', ()))} values for "
                         f"{len(X)} points; expected a tensor of shape ({len(X)},)")
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise ValueError(f"u0 returned NaN/Inf at {bad} of {len(X)} points; the initial "
                         "condition must be finite")
    if not values.any():
        raise ValueError(f"u0 is zero at all {len(X)} points: the fit's relative error "
                         "||u - u0|| / ||u0|| is undefined; give a nonzero initial condition")
    return values
