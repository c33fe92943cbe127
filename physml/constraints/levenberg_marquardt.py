r"""Batched Levenberg–Marquardt for small nonlinear least-squares problems.

For each sample $b$ of a batch it solves
$$\omega_b^\star = \arg\min_{\omega}\ \tfrac12\lVert r_b(\omega)\rVert^2,
\qquad \omega\in\mathbb{R}^{N},\ r_b(\omega)\in\mathbb{R}^{M},$$
where the residual function maps ``omega`` of shape ``(B, N)`` to ``(B, M)`` and row block $b$
depends on $\omega_b$ only. Each iteration forms $J_b = \partial r_b/\partial\omega_b$ by $N$
batched forward-mode products (one per unit direction, all samples at once: $O(N)$ residual
evaluations) and solves Marquardt's damped normal equations
$$(J^\top J + \mu\,(D + F))\,\delta = -J^\top r,\qquad D = \mathrm{diag}(J^\top J),\quad
F = \epsilon\,(D + \epsilon\,\bar d\,I)$$
($\bar d$ the mean of the diagonal, $\epsilon = 10^{-10}$: the floor $F$ is relative to each
column's own scale, so scaling a basis function changes no step, and $\epsilon^2\bar d$ keeps
basis functions that no row sees solvable). A step that lowers $\lVert r\rVert$ is taken and
$\mu \leftarrow \mu/3$; otherwise $\mu \leftarrow 4\mu$. Each iteration first tries the
Gauss–Newton step ($J^\top J + F$) and takes it where it lowers $\lVert r\rVert$; Marquardt's damped
step is tried only for the samples where it does not, so a residual that is affine, or close to it
near the minimum, converges in a step or two even when $J^\top J$ is ill-conditioned (a damped step
would shrink the error along its small singular directions by only $\mu d/(\lambda + \mu d)$). $J$
is re-formed only after a step was taken. Samples stop independently once $\max_j |J_j^\top r| /
(\lVert J_j\rVert\,\lVert r\rVert) \le$ ``tol`` (the residual is orthogonal to the range of $J$:
MINPACK's ``gtol``), $\lVert r\rVert \le$ ``atol``, or a step taken moved $\omega$ by at most
``xtol`` $(\lVert\omega\rVert + $ ``xtol``$)$ (MINPACK's ``xtol``: where the fit is exact the
residual left is rounding, whose orthogonality to $J$ is noise of order one, so the first test
cannot pass however the residual is scaled). A sample whose system is closed (stopped) solves
nothing: a zero Jacobian there leaves no singular system. A step counts as a decrease up to a
relative rounding allowance of $10^{-14}$: near the minimum $\lVert r\rVert$ is flat to second order
and a strict comparison would stall the iteration at about half the digits of $\omega$. Everything
runs in float64. For a residual that is affine in $\omega$ the first (Gauss–Newton) step solves the
least-squares problem; the next iteration confirms it. The tests are made once more after the last
allowed step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp, vmap

from ..solvers.errors import whole_number

ROUNDOFF = 1e-14  # a step may raise the residual norm by this relative amount (rounding)
EPSILON = 1e-10  # the floor of the normal equations' diagonal, relative to each entry

Residual = Callable[[torch.Tensor], torch.Tensor]


def batched_jacobian(residual: Residual, omega: torch.Tensor) -> torch.Tensor:
    """$J_b = \\partial r_b/\\partial\\omega_b$, shape ``(B, M, N)``, of ``residual`` (``omega``
    ``(B, N)`` -> r ``(B, M)``, each sample's rows reading its own $\\omega_b$ only) at
    ``omega`` ``(B, N)``: N forward-mode Jacobian-vector products, vectorised."""
    n = omega.shape[1]
    directions = torch.eye(n, dtype=omega.dtype, device=omega.device)[:, None, :].expand(
        n, *omega.shape)
    columns = vmap(lambda v: jvp(residual, (omega,), (v,))[1])(directions)  # (N, B, M)
    return columns.permute(1, 2, 0)


Jacobian = Callable[[Residual, torch.Tensor], torch.Tensor]  # (residual, omega) -> (B, M, N)


@dataclass
class LMResult:
    """Solution ``omega`` (B, N); per sample ``iterations``, ``converged`` and ``residual_norm``."""

    omega: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    residual_norm: torch.Tensor


@dataclass(frozen=True)
class LevenbergMarquardt:
    """Batched Levenberg–Marquardt (see the module docstring).

    Args:
        damping: initial Marquardt damping $\\mu$, > 0.
        tol: orthogonality tolerance, > 0.
        atol: absolute residual-norm tolerance, >= 0.
        xtol: relative step tolerance, >= 0 (0: no step test).
        max_iter: iteration cap, >= 1.
    """

    damping: float = 1e-3
    tol: float = 1e-10
    atol: float = 1e-12
    xtol: float = 1e-12
    max_iter: int = 50

    def __post_init__(self) -> None:
        if not self.damping > 0:
            raise ValueError(f"damping={self.damping} must be > 0")
        if not self.tol > 0:
            raise ValueError(f"tol={self.tol} must be > 0")
        if not self.atol >= 0:
            raise ValueError(f"atol={self.atol} must be >= 0")
        if not self.xtol >= 0:
            raise ValueError(f"xtol={self.xtol} must be >= 0")
        object.__setattr__(self, "max_iter", whole_number(self.max_iter, "max_iter", 1))

    def solve(self, residual: Residual, omega0: torch.Tensor,
              jacobian: Jacobian = batched_jacobian) -> LMResult:
        """Minimise $\\lVert r_b(\\omega)\\rVert^2$ from ``omega0`` (B, N), in float64;
        ``jacobian(residual, omega)`` forms $J$ (by default :func:`batched_jacobian`)."""
        omega = omega0.detach().to(torch.float64)
        batch = omega.shape[0]
        mu = torch.full((batch,), self.damping, dtype=torch.float64, device=omega.device)
        done = torch.zeros(batch, dtype=torch.bool, device=omega.device)
        settled = torch.zeros_like(done)  # the last step taken was below xtol
        iterations = torch.zeros(batch, dtype=torch.long, device=omega.device)
        r = residual(omega)
        norm = r.norm(dim=1)
        J = None
        for step in range(self.max_iter + 1):
            if J is None:  # omega moved (or the first iteration)
                J = jacobian(residual, omega)
                g = torch.einsum("bmn,bm->bn", J, r)
                A = J.transpose(1, 2) @ J
                column_norms = J.norm(dim=1)
            orthogonality = (g.abs() / (column_norms * norm[:, None]).clamp_min(1e-300)).amax(1)
            done |= (orthogonality <= self.tol) | (norm <= self.atol) | settled
            if bool(done.all()) or step == self.max_iter:
                break
            d = A.diagonal(dim1=1, dim2=2)
            floor = EPSILON * (d + EPSILON * d.mean(1, keepdim=True))
            state = (omega, r, norm)
            state, newton = _attempt(residual, state, A, g, floor, ~done)
            damped = torch.zeros_like(newton)
            if bool((~done & ~newton).any()):
                state, damped = _attempt(residual, state, A, g, mu[:, None] * (d + floor),
                                         ~done & ~newton)
            step_size = (state[0] - omega).norm(dim=1)
            settled = step_size <= self.xtol * (omega.norm(dim=1) + self.xtol)
            omega, r, norm = state
            taken = newton | damped
            settled &= taken
            mu = torch.where(taken, (mu / 3).clamp_min(1e-15),
                             torch.where(done, mu, mu * 4))
            iterations += (~done).long()
            if bool(taken.any()):
                J = None
        return LMResult(omega, iterations, done, norm)


State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # omega (B, N), r (B, M), ||r|| (B,)


def _attempt(residual: Residual, state: State, A: torch.Tensor, g: torch.Tensor,
             weights: torch.Tensor, open_: torch.Tensor) -> tuple[State, torch.Tensor]:
    """The step $(A + \\mathrm{diag}(w))\\,\\delta = -g$ taken by the samples ``open_`` whose
    $\\lVert r\\rVert$ it does not raise (beyond rounding); the new state and those samples."""
    omega, r, norm = state
    # a closed sample solves the identity for a zero step (its own system may be singular)
    closed = ~open_[:, None, None]
    eye = torch.eye(A.shape[1], dtype=A.dtype, device=A.device)
    system = torch.where(closed, eye, A + torch.diag_embed(weights))
    trial = omega - torch.linalg.solve(system, torch.where(closed[:, :, 0], 0.0, g))
    r_trial = residual(trial)
    norm_trial = r_trial.norm(dim=1)
    accept = (norm_trial <= norm * (1 + ROUNDOFF)) & open_
    return (torch.where(accept[:, None], trial, omega), torch.where(accept[:, None], r_trial, r),
            torch.where(accept, norm_trial, norm)), accept
