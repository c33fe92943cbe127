r"""The implicit diffusion step of ``scheme="imex"``, its solves and its adjoint.

The $\theta$-method on the diffusion term, with the rest of the right-hand side explicit:

$$(I - \theta\Delta t\,\nu L)\,u^{n+1} = u^n + \Delta t\,N(u^n) + (1-\theta)\Delta t\,\nu L u^n,$$

solved directly in 1D and by conjugate gradients in Warp otherwise, in float64 whatever the
solver's dtype (Crank–Nicolson for $\theta = 1/2$: second order for pure diffusion, first
order otherwise; $\theta = 1$ is L-stable). Flat states of one sample, ``(grid.size,)``.

**Crank–Nicolson on rough data.** Its amplification factor tends to $-1$ as
$\nu\Delta t k^2$ grows: the stiff modes of a state that does not meet the boundary values
(or is otherwise rough) are carried on, not damped, and its second order shows only once
$\Delta t$ resolves them. ``HeatSolver1D`` on 64 cells, $\nu = 0.5$, Dirichlet 0.2,
$u_0 = \sin\pi x + 0.3\sin 5\pi x$ (0 at the walls), to $t = 0.1$: the max error is 6.5e-2,
9.6e-3, 1.5e-5 at $\Delta t$ = 1e-2, 5e-3, 2.5e-3 (backward Euler: 6.6e-3, 3.3e-3, 1.6e-3).
Either take ``theta=1`` (first order), or start with a few backward-Euler steps (Rannacher's
start, which dataset generation uses): four quarter steps by the same solver built with
``theta=1``, ``start = backward.with_dt(dt / 4).rollout(u0, 4, 4)[-1]``, then the other
$t/\Delta t - 1$ steps by Crank–Nicolson from ``start``: max errors 1.0e-4, 2.5e-5, 6.4e-6 at
the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import warp as wp

from .field_arithmetic import (
    axpy_kernel,
    narrow_kernel,
    scaled_axpy_kernel,
    weighted_dot_kernel,
    widen_kernel,
)
from .grid_layout import GridLayout
from .implicit_diffusion_kernels import implicit_operator_kernel, implicit_tridiagonal_kernel
from .kernel_launch import launch
from .linalg import StencilOperator, cg


class NonFiniteStepError(FloatingPointError):
    """The right-hand side of an implicit step holds NaN/Inf (its explicit part overflowed):
    the state blew up in this step. A rollout reports it as a
    :class:`~physml.solvers.errors.BlowUpError` at the step that raised it."""


@dataclass(frozen=True)
class ImplicitDiffusion:
    r"""The implicit diffusion step on ``layout`` (grid, boundary conditions, dtype, device).

    Args:
        layout: the solver's layout; the state's dtype and device are its.
        theta: implicitness $\theta$, in [1/2, 1].
        dt: time step $\Delta t$ [s].
    """

    layout: GridLayout
    theta: float
    dt: float

    def step(self, u: wp.array, explicit: wp.array, nu: wp.array,
             tape: wp.Tape | None) -> wp.array:
        """$u^{n+1}$ as a new array from $u^n$ (``u``), the explicit part
        $u^n + \\Delta t\\,N(u^n)$ (``explicit``) and the diffusivity ``nu`` (shape ``(1,)``).

        Args:
            tape: the ``wp.Tape`` recording this step, if any: the solve's adjoint, a
                transpose solve (:meth:`adjoint`), is recorded on it.

        Raises:
            NonFiniteStepError: the right-hand side holds NaN/Inf (found by the conjugate
                gradients' own check of it; the direct 1D solve passes NaN/Inf on to the
                result, which the rollout's checks find).
        """
        lay, dt, theta = self.layout, self.dt, self.theta
        b = self._scaled_axpy(explicit, nu, (1 - theta) * dt, lay.laplacian(u))
        zeros = lay.empty(False)
        zeros.zero_()
        b = self._scaled_axpy(b, nu, theta * dt, lay.laplacian(zeros))  # boundary values
        x = lay.empty(b.requires_grad)
        try:
            self.solve(b, nu, x)
        except ValueError:  # b is read again only once the solve refused it
            if np.all(np.isfinite(b.numpy())):
                raise
            raise NonFiniteStepError("the implicit step's right-hand side holds NaN/Inf: the "
                                     "state blew up in this step") from None
        if tape is not None:
            tape.record_func(lambda: self.adjoint(b, nu, x), arrays=[b, x, nu])
        return x

    def adjoint(self, b: wp.array, nu: wp.array, x: wp.array) -> None:
        """Adjoint of $A(\\nu) x = b$ with A symmetric.

        $\\lambda = A^{-1}\\bar x$, then $\\bar b \\mathrel{+}= \\lambda$ and
        $\\bar\\nu \\mathrel{+}= \\theta\\Delta t\\,\\lambda^T L_0 x$.
        """
        lay = self.layout
        lam = lay.empty(False)
        self.solve(x.grad, nu, lam)
        launch(
            axpy_kernel,
            lay.dtype,
            dim=lam.shape[0],
            inputs=[b.grad, lam, b.dtype(1.0)],
            outputs=[b.grad],
            device=lay.device,
            record_tape=False,
        )
        if nu.grad is not None:
            lx = lay.laplacian(x, homogeneous=True)
            launch(
                weighted_dot_kernel,
                lay.dtype,
                dim=lam.shape[0],
                inputs=[lam, lx, b.dtype(self.theta * self.dt)],
                outputs=[nu.grad],
                device=lay.device,
                record_tape=False,
            )

    def _scaled_axpy(self, x: wp.array, coeff: wp.array, a: float, y: wp.array) -> wp.array:
        out = wp.empty_like(x, requires_grad=x.requires_grad or coeff.requires_grad)
        launch(
            scaled_axpy_kernel,
            self.layout.dtype,
            dim=x.shape[0],
            inputs=[x, coeff, x.dtype(a), y],
            outputs=[out],
            device=self.layout.device,
        )
        return out

    def solve(self, b: wp.array, nu: wp.array, x: wp.array) -> int:
        """Solve $(I - \\theta\\Delta t\\,\\nu L_0)x = b$ (x overwritten), in float64 whatever
        the solver's dtype: a float32 solver's ``b`` and ``nu`` are widened for the solve and x
        rounded back (at the condition numbers of long implicit steps,
        $1 + 4 d\\,\\theta\\Delta t\\,\\nu / h^2$, float32's rounding floor lies far above any
        useful tolerance).
        Launches are not recorded on a tape. Returns the number of iterations.
        """
        lay = self.layout
        if lay.dtype == wp.float64:
            return self._solve_float64(b, nu, x, lay, rtol=1e-13)
        wide = [wp.empty(a.shape[0], dtype=wp.float64, device=lay.device) for a in (b, nu, x)]
        for a, a64 in zip((b, nu), wide):
            wp.launch(widen_kernel, dim=a.shape[0], inputs=[a], outputs=[a64],
                      device=lay.device, record_tape=False)
        # 1e-9: below what the float32 result resolves
        iterations = self._solve_float64(*wide, lay.in_dtype(wp.float64), rtol=1e-9)
        wp.launch(narrow_kernel, dim=x.shape[0], inputs=[wide[2]], outputs=[x],
                  device=lay.device, record_tape=False)
        return iterations

    def _solve_float64(self, b: wp.array, nu: wp.array, x: wp.array, lay: GridLayout,
                       rtol: float) -> int:
        """:meth:`solve` on float64 arrays and ``lay``, a float64 layout: directly in 1D,
        else by conjugate gradients (:func:`~physml.solvers.linalg.cg`, matrix-free) to
        ``rtol``. $L_0$ is the Laplacian with homogeneous boundary values: symmetric negative
        semi-definite, so the operator is SPD with eigenvalues in
        $[1, 1 + \\theta\\Delta t\\,\\nu\\lambda_{max}]$."""
        grid = self.layout.grid
        if grid.ndim == 1:
            return self._solve_tridiagonal(b, nu, x, lay)
        T, dev = wp.float64, self.layout.device
        n = grid.size
        xp = wp.empty(lay.padded_size, dtype=T, device=dev)
        theta_dt = T(self.theta * self.dt)

        def apply(v, out):
            lay.pad(v, homogeneous=True, out=xp, record_tape=False)
            launch(implicit_operator_kernel, T, dim=n,
                   inputs=[xp, lay.shape, lay.ghost, grid.ndim, lay.inv_dx, nu, theta_dt,
                           T(1.0), v, T(0.0)],
                   outputs=[out], device=dev, record_tape=False)

        operator = StencilOperator(n, apply, dtype=T, device=dev)
        # x0 = b: exact as nu dt -> 0; rtol is at float64's limit on purpose: at the condition
        # numbers of long steps the rounding floor lies above it, and x is as good as it gets
        result = cg(operator, b, b, rtol=rtol, maxiter=10 * n + 10, floor="accept")
        wp.copy(x, result.x)
        return result.iterations

    def _solve_tridiagonal(self, b: wp.array, nu: wp.array, x: wp.array,
                           lay: GridLayout) -> int:
        """The 1D implicit system solved directly (Thomas / Sherman–Morrison), O(n)."""
        grid, bc = self.layout.grid, self.layout.bc
        T, n = lay.dtype, grid.size
        ghost_lo, ghost_hi = lay.reflection_x
        work = [wp.empty(n, dtype=T, device=self.layout.device) for _ in range(3)]
        launch(
            implicit_tridiagonal_kernel,
            T,
            dim=1,
            inputs=[
                b,
                nu,
                T(self.theta * self.dt / grid.dx[0] ** 2),
                n,
                T(ghost_lo),
                T(ghost_hi),
                int(bc.is_periodic(0)),
                *work,
            ],
            outputs=[x],
            device=self.layout.device,
            record_tape=False,
        )
        return 1
