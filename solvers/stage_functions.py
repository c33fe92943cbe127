r"""Warp functions of the fused Runge–Kutta stage kernels (:mod:`physml.solvers.stage_kernels`).

The stencil of $F(u) = -\sum_d \partial_d f_d(u) + \nu\,\Delta u + \rho\, r(u)$ at a cell of
the 3D block ``(n0, n1, n2)``: a neighbour with its ghost value, the MUSCL–Rusanov flux through
a face, the advective and second differences, the pointwise terms, a coefficient's value for a
sample and cell, the velocity along an axis and the Runge–Kutta combination
$w = u + \Delta t (\sum_{j<i} c_j k_j + c_i k_i)$; then what the row kernel adds: the flat
start and ghost row of a neighbour row, and a ghost value from coefficients read once per row.
They are compiled into the modules of the kernels that call them, with those modules' options
(no fused multiply-adds: see :data:`~physml.solvers.stage_kernels.MODULE_OPTIONS`).
"""

from typing import Any

import warp as wp

from .ghost_cells import ghost_source
from .operators import limited_slope, reaction_term, rusanov_flux

# ---------------------------------------------------------------------------------- stencils


@wp.func
def mapped(v: wp.array(dtype=Any), index: int, row: int, coef: wp.array2d(dtype=Any)):
    """v[index], or the ghost value coef[row, 0] v[index] + coef[row, 1] (row 0: interior)."""
    value = v[index]
    if row != 0:
        value = coef[row, 0] * value + coef[row, 1]
    return value


@wp.func
def neighbour(
    v: wp.array(dtype=Any),
    base: int,
    cell: wp.vec3i,
    axis: int,
    offset: int,
    shape: wp.vec3i,
    kinds_lo: wp.vec3i,
    kinds_hi: wp.vec3i,
    coef: wp.array2d(dtype=Any),
    ghost: int,
):
    """u at ``cell + offset`` along ``axis`` (ghost cells mapped to their source)."""
    src, row = ghost_source(
        cell[axis] + offset, shape[axis], ghost, axis, kinds_lo[axis], kinds_hi[axis]
    )
    index = wp.vec3i(cell[0], cell[1], cell[2])
    index[axis] = src
    return mapped(v, base + (index[0] * shape[1] + index[1]) * shape[2] + index[2], row, coef)


@wp.func
def face_flux(um: Any, u0: Any, u1: Any, u2: Any, kind: int, a: Any, limiter: int):
    """MUSCL–Rusanov flux through the face between the cells of u0 and u1."""
    half = a.dtype(0.5)
    ul = u0 + half * limited_slope(u0 - um, u1 - u0, limiter)
    ur = u1 - half * limited_slope(u1 - u0, u2 - u1, limiter)
    return rusanov_flux(ul, ur, kind, a)


@wp.func
def advective_difference(
    f_lo: Any, f_hi: Any, um1: Any, up1: Any, inv_dx: Any, kind: int, a: Any
):
    """$\\partial_d f_d$ at a cell: central $a(u_{i+1} - u_{i-1})/(2\\Delta x)$ (kind 1) or
    $(F_{i+1/2} - F_{i-1/2})/\\Delta x$ (kinds 2, 3), else 0."""
    result = a.dtype(0.0)
    if kind == 1:
        result = a * ((up1 - um1) * (inv_dx * a.dtype(0.5)))
    elif kind >= 2:
        result = (f_hi - f_lo) * inv_dx
    return result


@wp.func
def second_difference(um1: Any, u0: Any, up1: Any, inv_dx: Any):
    """$(u_{i-1} - 2u_i + u_{i+1})/\\Delta x^2$."""
    return ((um1 - u0) + (up1 - u0)) * (inv_dx * inv_dx)


@wp.func
def coefficient(p: wp.array(dtype=Any), b: int, n: int, strides: wp.vec2i):
    """The value of a coefficient for sample b, cell n."""
    return p[b * strides[0] + n * strides[1]]


@wp.func
def axis_speed(velocity: wp.array(dtype=Any), b: int, stride: int, axis: int, axis_offset: int,
               shape: wp.vec3i):
    """The velocity of sample b along kernel axis ``axis`` (0 on an axis of one cell)."""
    speed = velocity[0] - velocity[0]
    if shape[axis] > 1:
        speed = velocity[b * stride + axis - axis_offset]
    return speed


@wp.func
def combine(
    u: wp.array(dtype=Any),
    k0: wp.array(dtype=Any),
    k1: wp.array(dtype=Any),
    k2: wp.array(dtype=Any),
    n_prev: int,
    c: wp.array(dtype=Any),
    dt: Any,
    t: int,
    k: Any,
):
    """$u_t + \\sum_{j < n_{prev}} (\\Delta t c_j) k_j[t] + (\\Delta t c_3) k$, in this order,
    zero coefficients skipped (as the generic driver adds them)."""
    w = u[t]
    if n_prev > 0 and c[0] != dt.dtype(0.0):
        w = w + (dt * c[0]) * k0[t]
    if n_prev > 1 and c[1] != dt.dtype(0.0):
        w = w + (dt * c[1]) * k1[t]
    if n_prev > 2 and c[2] != dt.dtype(0.0):
        w = w + (dt * c[2]) * k2[t]
    return w + (dt * c[3]) * k


@wp.func
def pointwise_terms(
    u0: Any, adv: Any, lap: Any, nu: Any, rho: Any, reaction_kind: int, with_diffusion: int
):
    """$\\nu\\,\\Delta_h u - \\nabla_h\\cdot f + \\rho\\, r(u)$ from the summed axis terms."""
    diffusion = nu.dtype(0.0)
    if with_diffusion != 0:
        diffusion = nu * lap
    return diffusion - adv + rho * reaction_term(u0, reaction_kind)


# -------------------------------------------------------------------------------- row kernel


@wp.func
def row_start(
    base: int,
    i0: int,
    i1: int,
    axis: int,
    offset: int,
    shape: wp.vec3i,
    kinds_lo: wp.vec3i,
    kinds_hi: wp.vec3i,
    ghost: int,
):
    """Flat start and ghost row of the row ``offset`` cells from row (i0, i1) along axis 0
    or 1 (the row itself, unused, when that axis has one cell or the offset exceeds the
    stencil's ghost width)."""
    index = wp.vec3i(i0, i1, 0)
    src = index[axis]
    row = index[2] - index[2]  # 0, a dynamic variable
    if shape[axis] > 1 and (offset == 1 or offset == -1 or ghost > 1):
        src, row = ghost_source(
            index[axis] + offset, shape[axis], ghost, axis, kinds_lo[axis], kinds_hi[axis]
        )
    index[axis] = src
    return base + (index[0] * shape[1] + index[1]) * shape[2], row


@wp.func
def ghost_affine(value: Any, row: int, a: Any, b: Any):
    """``value``, or the ghost value a value + b (row 0: interior; as :func:`mapped`)."""
    result = value
    if row != 0:
        result = a * value + b
    return result
