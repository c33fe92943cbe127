r"""Finite-volume operators on uniform grids, as Warp kernels.

Fields are stored flat (C order, axis 0 slowest) in 1D Warp arrays of length ``grid.size``; one
kernel therefore serves 1D, 2D and 3D grids. A grid of ``ndim < 3`` axes is treated as
``(n0, n1, n2)`` with trailing axes of one cell and no ghost layer.

Boundary conditions enter through :func:`pad`: it copies a field into a ghost-padded array
whose ghost cells hold $a\,u_{src} + b$, with $(a, b)$ read from a small coefficient table
(see :mod:`physml.solvers.grid` for the formulas). Every stencil then reads the padded array and
never branches on boundary kinds.

Stencils (each a ``wp.func`` acting along one axis through a flat ``stride``):

* ``second_difference``: $(u_{i-1} - 2u_i + u_{i+1})/\Delta x^2$, exact for quadratics.
* ``central_difference``: $(u_{i+1} - u_{i-1})/(2\Delta x)$, exact for quadratics.
* ``flux_difference``: $(F_{i+1/2} - F_{i-1/2})/\Delta x$ with MUSCL reconstruction
  (slope limiter: none, minmod, van Leer or MC) and the Rusanov (local Lax–Friedrichs) flux
  $F = \tfrac12(f(u_L) + f(u_R)) - \tfrac12\alpha(u_R - u_L)$, $\alpha = \max|f'(u)|$, for the
  linear flux $f = a u$ or the Burgers flux $f = u^2/2$. Second order on smooth data away from
  extrema; total-variation diminishing with a limiter under CFL $\le 1/2$.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import warp as wp

from .grid import BCKind, BoundaryConditions, Grid


class Limiter(enum.IntEnum):
    """Slope limiter of the MUSCL reconstruction (``NONE`` gives Fromm's unlimited scheme)."""

    NONE = 0
    MINMOD = 1
    VAN_LEER = 2
    MC = 3


class FluxKind(enum.IntEnum):
    """Flux function of a conservation law $u_t + \\sum_d \\partial_d f_d(u) = 0$.

    The integer value is what :func:`advective_term` branches on; :data:`FLUXES` holds each
    kind's stencil width and wave speed (what the stability limit needs).
    """

    NONE = 0
    LINEAR_CENTRAL = 1  # f_d = a_d u, central differences (non-dissipative)
    LINEAR_UPWIND = 2  # f_d = a_d u, MUSCL + Rusanov (upwind, TVD with a limiter)
    BURGERS = 3  # f_d = u^2 / 2, MUSCL + Rusanov


class ReactionKind(enum.IntEnum):
    """Pointwise source $\\rho\\, r(u)$.

    The integer value is what :func:`reaction_term` branches on; :data:`REACTIONS` holds each
    kind's slope bound (what the stability limit needs).
    """

    NONE = 0
    ALLEN_CAHN = 1  # r(u) = u - u^3
    FISHER = 2  # r(u) = u (1 - u)


@dataclass(frozen=True)
class Flux:
    """What the host side knows of a flux kind.

    Attributes:
        ghost_width: ghost layers its stencil reads (1: central, 2: MUSCL).
        wave_speed: $\\max|f_d'(u)|$ per axis [m/s] from the velocity $a$ (shape ``(ndim,)``,
            zeros when the PDE has none) and a bound $u_{max}$ on $|u|$.
        tvd: True for MUSCL (CFL limit 1/2: with a limiter whatever the RK scheme; without
            one, Fromm's scheme, for the multi-stage schemes only, forward Euler amplifying
            at every CFL), False for central differences (limited by the scheme's
            imaginary-axis interval).
    """

    ghost_width: int
    wave_speed: Callable[[np.ndarray, float], np.ndarray]
    tvd: bool


FLUXES: dict[FluxKind, Flux] = {
    FluxKind.NONE: Flux(1, lambda a, u_max: np.zeros_like(a), tvd=False),
    FluxKind.LINEAR_CENTRAL: Flux(1, lambda a, u_max: np.abs(a), tvd=False),
    FluxKind.LINEAR_UPWIND: Flux(2, lambda a, u_max: np.abs(a), tvd=True),
    FluxKind.BURGERS: Flux(2, lambda a, u_max: np.full_like(a, u_max), tvd=True),
}
"""Each flux kind's stencil width and wave speed; a new kind adds a row here and a branch in
:func:`advective_term`."""

REACTIONS: dict[ReactionKind, Callable[[float], float]] = {
    ReactionKind.NONE: lambda u_max: 0.0,
    ReactionKind.ALLEN_CAHN: lambda u_max: max(1.0, 3 * u_max**2 - 1),
    ReactionKind.FISHER: lambda u_max: 1 + 2 * u_max,
}
"""Each reaction kind's bound on $|r'(u)|$ for $|u| \\le u_{max}$ (the reactive rate is $\\rho$
times it); a new kind adds a row here and a branch in :func:`reaction_term`."""


# ---------------------------------------------------------------------------------------------
# Index helpers
# ---------------------------------------------------------------------------------------------


@wp.func
def unravel(t: int, shape: wp.vec3i):
    """Flat index -> (i0, i1, i2) for C order."""
    i2 = t % shape[2]
    r = t // shape[2]
    return r // shape[1], r % shape[1], i2


@wp.func
def padded_strides(shape: wp.vec3i, ghost: wp.vec3i):
    """Flat strides of the ghost-padded array along axes 0, 1, 2."""
    p1 = shape[1] + 2 * ghost[1]
    p2 = shape[2] + 2 * ghost[2]
    return p1 * p2, p2, 1


@wp.func
def padded_centre(t: int, shape: wp.vec3i, ghost: wp.vec3i):
    """Flat index in the padded array of interior cell ``t``, and the three strides."""
    i0, i1, i2 = unravel(t, shape)
    s0, s1, s2 = padded_strides(shape, ghost)
    c = (i0 + ghost[0]) * s0 + (i1 + ghost[1]) * s1 + (i2 + ghost[2]) * s2
    return c, s0, s1, s2


@wp.func
def ghost_source(i: int, n: int, g: int, axis: int, kind_lo: int, kind_hi: int):
    """Map index ``i`` in [-g, n+g) of one axis to (interior source index, coefficient row)."""
    src = i
    row = 0
    if i < 0:
        m = -i
        row = 1 + (2 * axis) * g + (m - 1)
        src = m - 1
        if kind_lo == 0:
            src = i + n
    elif i >= n:
        m = i - n + 1
        row = 1 + (2 * axis + 1) * g + (m - 1)
        src = n - m
        if kind_hi == 0:
            src = i - n
    return src, row


@wp.kernel
def pad_kernel(
    u: wp.array(dtype=Any),
    shape: wp.vec3i,
    ghost: wp.vec3i,
    kinds: wp.vec3i,
    kinds_hi: wp.vec3i,
    coef: wp.array2d(dtype=Any),
    up: wp.array(dtype=Any),
):
    """up[p] = a u[src] + b for every padded cell p. Reads u, coef; writes up."""
    p = wp.tid()
    s0, s1, s2 = padded_strides(shape, ghost)
    j0 = p // s0 - ghost[0]
    j1 = (p % s0) // s1 - ghost[1]
    j2 = p % s1 - ghost[2]
    g = wp.max(ghost[0], wp.max(ghost[1], ghost[2]))
    src0, row0 = ghost_source(j0, shape[0], g, 0, kinds[0], kinds_hi[0])
    src1, row1 = ghost_source(j1, shape[1], g, 1, kinds[1], kinds_hi[1])
    src2, row2 = ghost_source(j2, shape[2], g, 2, kinds[2], kinds_hi[2])
    v = u[(src0 * shape[1] + src1) * shape[2] + src2]
    v = coef[row2, 0] * v + coef[row2, 1]
    v = coef[row1, 0] * v + coef[row1, 1]
    v = coef[row0, 0] * v + coef[row0, 1]
    up[p] = v


# ---------------------------------------------------------------------------------------------
# Stencils along one axis
# ---------------------------------------------------------------------------------------------


@wp.func
def second_difference(up: wp.array(dtype=Any), c: int, s: int, inv_dx2: Any):
    """(u_{i-1} - 2 u_i + u_{i+1}) / dx^2 along the axis of flat stride s."""
    return ((up[c - s] - up[c]) + (up[c + s] - up[c])) * inv_dx2


@wp.func
def central_difference(up: wp.array(dtype=Any), c: int, s: int, inv_dx: Any):
    """(u_{i+1} - u_{i-1}) / (2 dx) along the axis of flat stride s."""
    return (up[c + s] - up[c - s]) * (inv_dx * inv_dx.dtype(0.5))


@wp.func
def limited_slope(a: Any, b: Any, limiter: int):
    """Limited slope from the backward difference a and the forward difference b."""
    zero = a.dtype(0.0)
    half = a.dtype(0.5)
    two = a.dtype(2.0)
    slope = half * (a + b)
    if limiter != 0:
        slope = zero
        if a * b > zero:
            sign = a.dtype(1.0)
            if a < zero:
                sign = -sign
            aa = wp.abs(a)
            bb = wp.abs(b)
            if limiter == 1:
                slope = sign * wp.min(aa, bb)
            elif limiter == 2:
                slope = two * a * b / (a + b)
            else:
                slope = sign * wp.min(wp.min(two * aa, two * bb), half * (aa + bb))
    return slope


@wp.func
def rusanov_flux(ul: Any, ur: Any, kind: int, a: Any):
    """Rusanov flux at a face from the left/right states (linear speed a, or Burgers)."""
    half = ul.dtype(0.5)
    fl = a * ul
    fr = a * ur
    alpha = wp.abs(a)
    if kind == 3:
        fl = half * ul * ul
        fr = half * ur * ur
        alpha = wp.max(wp.abs(ul), wp.abs(ur))
    return half * (fl + fr) - half * alpha * (ur - ul)


@wp.func
def face_flux(up: wp.array(dtype=Any), c: int, s: int, kind: int, a: Any, limiter: int):
    """MUSCL-Rusanov flux through the face between cells c and c+s (needs 2 ghost layers)."""
    half = a.dtype(0.5)
    um = up[c - s]
    u0 = up[c]
    u1 = up[c + s]
    u2 = up[c + 2 * s]
    ul = u0 + half * limited_slope(u0 - um, u1 - u0, limiter)
    ur = u1 - half * limited_slope(u1 - u0, u2 - u1, limiter)
    return rusanov_flux(ul, ur, kind, a)


@wp.func
def flux_difference(
    up: wp.array(dtype=Any), c: int, s: int, inv_dx: Any, kind: int, a: Any, limiter: int
):
    """(F_{i+1/2} - F_{i-1/2}) / dx along the axis of flat stride s."""
    return (face_flux(up, c, s, kind, a, limiter) - face_flux(up, c - s, s, kind, a, limiter)) * (
        inv_dx
    )


@wp.func
def advective_term(
    up: wp.array(dtype=Any), c: int, s: int, inv_dx: Any, kind: int, a: Any, limiter: int
):
    """Discrete d f(u)/dx along one axis for the flux kind (0 when kind is NONE)."""
    result = a.dtype(0.0)
    if kind == 1:
        result = a * central_difference(up, c, s, inv_dx)
    elif kind >= 2:
        result = flux_difference(up, c, s, inv_dx, kind, a, limiter)
    return result


@wp.func
def reaction_term(u: Any, kind: int):
    """r(u): u - u^3 (Allen-Cahn), u (1 - u) (Fisher-KPP), or 0."""
    one = u.dtype(1.0)
    result = u.dtype(0.0)
    if kind == 1:
        result = u - u * u * u
    elif kind == 2:
        result = u * (one - u)
    return result


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


@wp.kernel
def laplacian_kernel(
    up: wp.array(dtype=Any),
    shape: wp.vec3i,
    ghost: wp.vec3i,
    ndim: int,
    inv_dx: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out = sum_d (u_{i-1} - 2u_i + u_{i+1}) / dx_d^2. Reads padded up; writes out."""
    t = wp.tid()
    c, s0, s1, s2 = padded_centre(t, shape, ghost)
    lap = second_difference(up, c, s0, inv_dx[0] * inv_dx[0])
    if ndim > 1:
        lap += second_difference(up, c, s1, inv_dx[1] * inv_dx[1])
    if ndim > 2:
        lap += second_difference(up, c, s2, inv_dx[2] * inv_dx[2])
    out[t] = lap


@wp.kernel
def derivative_kernel(
    up: wp.array(dtype=Any),
    shape: wp.vec3i,
    ghost: wp.vec3i,
    axis: int,
    inv_dx: wp.array(dtype=Any),
    flux_kind: int,
    limiter: int,
    out: wp.array(dtype=Any),
):
    """out = d f(u) / dx_axis for a unit linear speed (central or upwind) or the Burgers flux.

    Reads padded up; writes out.
    """
    t = wp.tid()
    c, s0, s1, s2 = padded_centre(t, shape, ghost)
    s = s0
    if axis == 1:
        s = s1
    elif axis == 2:
        s = s2
    one = inv_dx.dtype(1.0)
    out[t] = advective_term(up, c, s, inv_dx[axis], flux_kind, one, limiter)


@wp.kernel
def axpy_kernel(x: wp.array(dtype=Any), y: wp.array(dtype=Any), a: Any, out: wp.array(dtype=Any)):
    """out = x + a y. Reads x, y; writes out."""
    t = wp.tid()
    out[t] = x[t] + a * y[t]


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


@wp.kernel(enable_backward=False)
def widen_kernel(x: wp.array(dtype=wp.float32), out: wp.array(dtype=wp.float64)):
    """out = x in float64."""
    t = wp.tid()
    out[t] = wp.float64(x[t])


@wp.kernel(enable_backward=False)
def narrow_kernel(x: wp.array(dtype=wp.float64), out: wp.array(dtype=wp.float32)):
    """out = x rounded to float32."""
    t = wp.tid()
    out[t] = wp.float32(x[t])


@wp.kernel
def scaled_axpy_kernel(
    x: wp.array(dtype=Any),
    coeff: wp.array(dtype=Any),
    a: Any,
    y: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out = x + a coeff[0] y (coeff a differentiable parameter). Reads x, coeff, y; writes out."""
    t = wp.tid()
    out[t] = x[t] + a * coeff[0] * y[t]


@wp.kernel
def weighted_dot_kernel(
    a: wp.array(dtype=Any), b: wp.array(dtype=Any), scale: Any, out: wp.array(dtype=Any)
):
    """out[0] += scale * sum_i a_i b_i. Reads a, b; accumulates into out."""
    t = wp.tid()
    wp.atomic_add(out, 0, scale * a[t] * b[t])


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


_SPECIALIZED: dict[tuple[int, type], wp.Kernel] = {}


def specialize(kernel: wp.Kernel, dtype: type, arg_types: dict[str, Any]) -> None:
    """Declare the overload of a generic kernel for ``dtype`` (float32 or float64)."""
    _SPECIALIZED[(id(kernel), dtype)] = wp.overload(kernel, arg_types)


def launch(kernel: wp.Kernel, dtype: type, **options) -> wp.Launch | None:
    """``wp.launch`` of ``kernel``'s overload for ``dtype`` (its command with ``record_cmd=True``).

    Launching the declared overload directly skips Warp's matching of argument types on every
    call, which is most of a launch's cost on small grids.
    """
    return wp.launch(_SPECIALIZED[(id(kernel), dtype)], **options)


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(
            pad_kernel,
            T,
            {"u": arr, "coef": wp.array2d(dtype=T), "up": arr},
        )
        specialize(laplacian_kernel, T, {"up": arr, "inv_dx": arr, "out": arr})
        specialize(derivative_kernel, T, {"up": arr, "inv_dx": arr, "out": arr})
        specialize(axpy_kernel, T, {"x": arr, "y": arr, "a": T, "out": arr})
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
        specialize(scaled_axpy_kernel, T, {"x": arr, "coeff": arr, "a": T, "y": arr, "out": arr})
        specialize(weighted_dot_kernel, T, {"a": arr, "b": arr, "scale": T, "out": arr})
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


# ---------------------------------------------------------------------------------------------
# Host-side layout: what a kernel needs to know about a grid and its boundaries
# ---------------------------------------------------------------------------------------------


class GridLayout:
    """Kernel arguments derived once from a grid, its boundary conditions and a ghost width.

    Args:
        grid: the grid.
        bc: its boundary conditions (one pair per axis).
        ghost: ghost layers per side (1 for centred stencils, 2 for MUSCL).
        dtype: ``wp.float32`` or ``wp.float64``.
        device: Warp device string.
    """

    def __init__(
        self, grid: Grid, bc: BoundaryConditions, ghost: int, dtype: type, device: str
    ) -> None:
        if bc.ndim != grid.ndim:
            raise ValueError(f"bc has {bc.ndim} axes but the grid has {grid.ndim}")
        for axis, n in enumerate(grid.shape):
            lo, hi = bc.sides[axis]
            # A periodic stencil must not wrap onto itself; a reflected one needs g + 1 cells.
            minimum = 2 * ghost + 1 if lo.kind == BCKind.PERIODIC else ghost + 1
            if n < minimum:
                raise ValueError(
                    f"grid shape[{axis}]={n} is too small for this stencil ({2 * ghost + 1} "
                    f"points, {lo.kind.name.lower()} boundaries); need at least {minimum} cells"
                )
        self.grid, self.bc, self.ghost_width = grid, bc, ghost
        self.dtype, self.device = dtype, device
        dims = list(grid.shape) + [1] * (3 - grid.ndim)
        self.shape = wp.vec3i(*dims)
        self.ghost = wp.vec3i(*([ghost] * grid.ndim + [0] * (3 - grid.ndim)))
        kinds = [bc.kinds(d) for d in range(grid.ndim)] + [(0, 0)] * (3 - grid.ndim)
        self.kinds_lo = wp.vec3i(*(k[0] for k in kinds))
        self.kinds_hi = wp.vec3i(*(k[1] for k in kinds))
        self.padded_size = int(np.prod([n + 2 * g for n, g in zip(dims, self.ghost)]))
        inv_dx = [1.0 / h for h in grid.dx] + [1.0] * (3 - grid.ndim)
        self.inv_dx = wp.array(inv_dx, dtype=dtype, device=device)
        self.coef = wp.array(
            self._ghost_coefficients(homogeneous=False), dtype=dtype, device=device
        )
        homogeneous = self._ghost_coefficients(homogeneous=True)
        self.coef_homogeneous = wp.array(homogeneous, dtype=dtype, device=device)
        self.reflection_x = (float(homogeneous[1, 0]), float(homogeneous[1 + ghost, 0]))
        """Ghost factor a (ghost = a u_src) on the low and high side of axis 0, homogeneous."""

    def _ghost_coefficients(self, homogeneous: bool) -> np.ndarray:
        """Rows (a, b) with ghost = a u_src + b; row 0 is the identity for interior cells."""
        g = self.ghost_width
        rows = np.zeros((1 + 2 * 3 * g, 2))
        rows[:, 0] = 1.0
        for axis in range(self.grid.ndim):
            dx = self.grid.dx[axis]
            for side, bc in enumerate(self.bc.sides[axis]):
                value = 0.0 if homogeneous else bc.value
                for m in range(1, g + 1):
                    row = 1 + (2 * axis + side) * g + (m - 1)
                    if bc.kind == BCKind.DIRICHLET:
                        rows[row] = (-1.0, 2.0 * value)
                    elif bc.kind == BCKind.NEUMANN:
                        direction = -1.0 if side == 0 else 1.0
                        rows[row] = (1.0, direction * (2 * m - 1) * dx * value)
        return rows

    def in_dtype(self, dtype: type) -> GridLayout:
        """This layout in ``dtype``: itself, or a twin built once and kept (solvers copied
        from one another share their layout, and so the twin)."""
        if dtype == self.dtype:
            return self
        twins = self.__dict__.setdefault("_twins", {})
        if dtype not in twins:
            twins[dtype] = GridLayout(self.grid, self.bc, self.ghost_width, dtype, self.device)
        return twins[dtype]

    def empty(self, requires_grad: bool = False) -> wp.array:
        """A new flat field array (uninitialised)."""
        return wp.empty(
            self.grid.size, dtype=self.dtype, device=self.device, requires_grad=requires_grad
        )

    def pad(
        self,
        u: wp.array,
        homogeneous: bool = False,
        out: wp.array | None = None,
        record_tape: bool = True,
    ) -> wp.array:
        """Ghost-padded copy of the flat field ``u`` (boundary values zero if homogeneous),
        written to ``out`` if given (a work buffer of ``padded_size``), else to a new array."""
        if out is None:
            out = wp.empty(
                self.padded_size,
                dtype=self.dtype,
                device=self.device,
                requires_grad=u.requires_grad,
            )
        coef = self.coef_homogeneous if homogeneous else self.coef
        launch(
            pad_kernel,
            self.dtype,
            dim=self.padded_size,
            inputs=[u, self.shape, self.ghost, self.kinds_lo, self.kinds_hi, coef],
            outputs=[out],
            device=self.device,
            record_tape=record_tape,
        )
        return out

    def laplacian(self, u: wp.array, homogeneous: bool = False) -> wp.array:
        """$\\Delta_h u$ with the boundary conditions applied (flat, interior size)."""
        out = self.empty(u.requires_grad)
        launch(
            laplacian_kernel,
            self.dtype,
            dim=self.grid.size,
            inputs=[self.pad(u, homogeneous), self.shape, self.ghost, self.grid.ndim, self.inv_dx],
            outputs=[out],
            device=self.device,
        )
        return out

    def derivative(
        self, u: wp.array, axis: int, flux: FluxKind, limiter: Limiter = Limiter.VAN_LEER
    ) -> wp.array:
        """$\\partial_{axis} f(u)$: central or upwind derivative of u (unit speed), or of u^2/2."""
        out = self.empty(u.requires_grad)
        launch(
            derivative_kernel,
            self.dtype,
            dim=self.grid.size,
            inputs=[
                self.pad(u),
                self.shape,
                self.ghost,
                axis,
                self.inv_dx,
                int(flux),
                int(limiter),
            ],
            outputs=[out],
            device=self.device,
        )
        return out


def axpy(x: wp.array, y: wp.array, a: float) -> wp.array:
    """A new array $x + a\\,y$ (x, y untouched)."""
    out = wp.empty_like(x, requires_grad=x.requires_grad or y.requires_grad)
    launch(
        axpy_kernel,
        x.dtype,
        dim=x.shape[0],
        inputs=[x, y, x.dtype(a)],
        outputs=[out],
        device=x.device,
    )
    return out
