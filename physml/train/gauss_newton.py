r"""The fit of every TENG stage and step (:meth:`~physml.train.teng.TENG.fit`): sub-sampled
Gauss–Newton (natural-gradient) updates of $\theta$ towards a target on the sample points $X$,
with Levenberg–Marquardt damping.

A fit runs ``iterations`` updates from the previous stage's parameters: with the residual
$r = \text{target} - u_\theta(X)$ and a random subset $S$ of ``subsample`` parameters,
$$\delta_S = \arg\min_\delta \|J_S\,\delta - r\|_2,\quad
J_S = \partial u_\theta(X)/\partial\theta_S \in\mathbb{R}^{n\times|S|},\quad
\theta_S \leftarrow \theta_S + \delta_S.$$
Each update is solved with Tikhonov damping $\lambda\|\delta\|^2$, from $\lambda$ = 1e-12 of
the scale; one that would raise the residual is solved again with $\lambda$ growing 100-fold
(Levenberg–Marquardt): without it, one overshooting Gauss–Newton step of a small network on
Burgers sent the parameters from norm 14 to 5e5 and the error to 25.

The residuals' norms are compared scaled (:func:`scaled_norm`), so finite values compare
whatever their size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .least_squares import MIN_DAMPING, GramSolver

if TYPE_CHECKING:
    from .teng import TENG

MAX_DAMPING = 1e2  # largest relative Tikhonov damping of a fit update (see fit)


def fit(teng: TENG, theta: torch.Tensor, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``teng.iterations`` updates of ``theta`` towards ``target`` on ``X``, each over
    ``teng.subsample`` parameters drawn from ``teng.generator`` and solved by
    ``teng.least_squares``; counts the solves, their seconds and their fallbacks in ``teng``.

    An update is kept only if it lowers the residual on ``X``; otherwise the damping grows
    100-fold from ``MIN_DAMPING`` (Levenberg–Marquardt) and the update is solved again, up
    to ``MAX_DAMPING``, past which the iteration leaves ``theta`` as it is. The first try
    is damped at ``MIN_DAMPING`` (1e-12 of the scale: Gauss–Newton with a floor that keeps
    the normal equations positive definite), and where it lowers the residual it is kept.

    Raises:
        BlowUpError: the residual's norm is not finite, or no damping gives an update
            whose residual's norm is (``teng._blow_up``: the step is that of
            :meth:`~physml.train.teng.TENG.step`).
    """
    theta = theta.clone()
    p = theta.numel()
    for _ in range(teng.iterations):
        columns = torch.randperm(p, generator=teng.generator)[: teng.subsample].to(teng.device)
        r = target - teng.value(theta, X)
        residual, damping, finite = scaled_norm(r), MIN_DAMPING, False
        if not math.isfinite(residual):
            raise teng._blow_up(f"is too far from a fit's target: the residual's norm is "
                                f"{residual}")
        solver = teng.least_squares(theta, X, columns, r)
        while damping <= MAX_DAMPING:
            trial = theta.clone()
            trial[columns] += solver.solve(damping)
            teng.solves += 1
            trial_residual = scaled_norm(target - teng.value(trial, X))
            finite = finite or math.isfinite(trial_residual)
            if trial_residual < residual:
                theta = trial
                break
            damping *= 100
        if not finite:
            raise teng._blow_up(f"became NaN/Inf in every update of a fit (relative "
                                f"damping {MIN_DAMPING:.0e} to {MAX_DAMPING:.0e})")
        teng.solve_seconds += solver.seconds
        if isinstance(solver, GramSolver) and solver.lstsq_fallbacks:
            teng._fallback("lstsq", solver.fallback_reason, solver.lstsq_fallbacks)
    return theta


def scaled_norm(v: torch.Tensor) -> float:
    r"""$\|v\|_2$ as $m\,\|v/m\|_2$, $m = \max_i|v_i|$: inf only where the norm itself is
    beyond the float range (the plain norm overflows once $|v_i| \gtrsim 10^{154}$), NaN or
    inf where ``v`` holds NaN or Inf."""
    scale = v.abs().max()
    if not (torch.isfinite(scale) and scale > 0):
        return float(v.norm())
    return float(scale * (v / scale).norm())


def relative_error(error: torch.Tensor, reference: torch.Tensor) -> float:
    r"""$\|e\|_2 / \|r\|_2$ with both norms scaled (:func:`scaled_norm`: finite for finite
    values however large); inf for a zero reference."""
    size = scaled_norm(reference)
    return scaled_norm(error) / size if size else math.inf
