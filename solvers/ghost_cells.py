r"""Ghost cells: a field padded with the ghost values of its boundary conditions, in Warp.

Fields are stored flat (C order, axis 0 slowest) in 1D Warp arrays of length ``grid.size``; one
kernel therefore serves 1D, 2D and 3D grids. A grid of ``ndim < 3`` axes is treated as
``(n0, n1, n2)`` with trailing axes of one cell and no ghost layer.

Boundary conditions enter through :func:`pad_kernel` (launched by
:meth:`~physml.solvers.grid_layout.GridLayout.pad`): it copies a field into a ghost-padded array
whose ghost cells hold $a\,u_{src} + b$, with $(a, b)$ read from a small coefficient table
(see :mod:`physml.solvers.grid` for the formulas). Every stencil then reads the padded array and
never branches on boundary kinds. The index helpers place an interior cell in the padded array
(:func:`padded_centre`) and map an index of one axis to its interior source and coefficient row
(:func:`ghost_source`).
"""

from __future__ import annotations

from typing import Any

import warp as wp

from .kernel_launch import specialize

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


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(
            pad_kernel,
            T,
            {"u": arr, "coef": wp.array2d(dtype=T), "up": arr},
        )


_overload_all()
