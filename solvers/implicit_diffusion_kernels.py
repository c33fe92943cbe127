r"""Warp kernels of the implicit diffusion step (:mod:`physml.solvers.implicit_diffusion`).

* ``implicit_operator_kernel``: $z = \alpha(x - \theta\Delta t\,\nu L x) + \beta y$ from a
  ghost-padded x, the operator $I - \theta\Delta t\,\nu L$ applied matrix-free (conjugate
  gradients in 2D and 3D);
* ``implicit_tridiagonal_kernel``: the 1D system solved directly on one thread, O(n) (Thomas
  algorithm, :func:`thomas_sweep`; Sherman–Morrison when periodic).

Flat fields, ``(grid.size,)``; ``nu`` has shape ``(1,)``.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from .ghost_cells import padded_centre
from .kernel_launch import specialize
from .operators import second_difference


@wp.kernel
def implicit_operator_kernel(
    xp: wp.array(dtype=Any),
    shape: wp.vec3i,
    ghost: wp.vec3i,
    ndim: int,
    inv_dx: wp.array(dtype=Any),
    nu: wp.array(dtype=Any),
    theta_dt: Any,
    alpha: Any,
    y: wp.array(dtype=Any),
    beta: Any,
    z: wp.array(dtype=Any),
):
    """z = alpha (x - theta_dt nu L x) + beta y, the implicit diffusion operator (padded x)."""
    t = wp.tid()
    c, s0, s1, s2 = padded_centre(t, shape, ghost)
    lap = second_difference(xp, c, s0, inv_dx[0] * inv_dx[0])
    if ndim > 1:
        lap += second_difference(xp, c, s1, inv_dx[1] * inv_dx[1])
    if ndim > 2:
        lap += second_difference(xp, c, s2, inv_dx[2] * inv_dx[2])
    z[t] = alpha * (xp[c] - theta_dt * nu[0] * lap) + beta * y[t]


@wp.func
def thomas_sweep(
    first: Any,
    middle: Any,
    last: Any,
    off: Any,
    rhs: wp.array(dtype=Any),
    n: int,
    scratch: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """Solve the tridiagonal system with diagonal (first, middle..., last) and constant
    off-diagonals ``off`` (Thomas algorithm, O(n), sequential)."""
    diag = first
    scratch[0] = off / diag
    out[0] = rhs[0] / diag
    for i in range(1, n):
        diag = middle
        if i == n - 1:
            diag = last
        denom = diag - off * scratch[i - 1]
        scratch[i] = off / denom
        out[i] = (rhs[i] - off * out[i - 1]) / denom
    for k in range(n - 1):
        i = n - 2 - k
        out[i] = out[i] - scratch[i] * out[i + 1]


@wp.kernel(enable_backward=False)
def implicit_tridiagonal_kernel(
    rhs: wp.array(dtype=Any),
    nu: wp.array(dtype=Any),
    theta_dt_inv_dx2: Any,
    n: int,
    ghost_lo: Any,
    ghost_hi: Any,
    periodic: int,
    unit: wp.array(dtype=Any),
    scratch: wp.array(dtype=Any),
    correction: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """Solve (I - theta dt nu L0) x = rhs in 1D with one thread (L0: homogeneous boundaries).

    Rows are -s x_{i-1} + (1 + 2s) x_i - s x_{i+1} with s = theta dt nu / dx^2; a reflected
    ghost x_{-1} = g x_0 makes the first diagonal 1 + s (2 - g) (g = -1 Dirichlet, +1 Neumann).
    Periodic (cyclic) systems use the Sherman-Morrison formula with the correction vector
    ``unit`` = gamma e_0 + off e_{n-1}. Reads rhs, nu; writes out (scratch, correction and
    unit are work arrays).
    """
    one = rhs.dtype(1.0)
    two = rhs.dtype(2.0)
    s = theta_dt_inv_dx2 * nu[0]
    off = -s
    middle = one + two * s
    if periodic == 0:
        thomas_sweep(
            one + s * (two - ghost_lo),
            middle,
            one + s * (two - ghost_hi),
            off,
            rhs,
            n,
            scratch,
            out,
        )
    else:
        gamma = -middle
        first = middle - gamma
        last = middle - off * off / gamma
        thomas_sweep(first, middle, last, off, rhs, n, scratch, out)
        for i in range(n):
            unit[i] = rhs.dtype(0.0)
        unit[0] = gamma
        unit[n - 1] = off
        thomas_sweep(first, middle, last, off, unit, n, scratch, correction)
        factor = (out[0] + off * out[n - 1] / gamma) / (
            one + correction[0] + off * correction[n - 1] / gamma
        )
        for i in range(n):
            out[i] = out[i] - factor * correction[i]


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(
            implicit_operator_kernel,
            T,
            {
                "xp": arr,
                "inv_dx": arr,
                "nu": arr,
                "theta_dt": T,
                "alpha": T,
                "y": arr,
                "beta": T,
                "z": arr,
            },
        )
        specialize(
            implicit_tridiagonal_kernel,
            T,
            {
                "rhs": arr,
                "nu": arr,
                "theta_dt_inv_dx2": T,
                "ghost_lo": T,
                "ghost_hi": T,
                "unit": arr,
                "scratch": arr,
                "correction": arr,
                "out": arr,
            },
        )


_overload_all()
