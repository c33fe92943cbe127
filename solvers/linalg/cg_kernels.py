r"""Warp kernels of the conjugate gradients (:func:`~physml.solvers.linalg.cg`): the fused
updates of x and r (with the Jacobi preconditioner's z in the same pass) and of the direction p.

Columns of the scalar table: 0 = r·r, 1 = r·z, 2 = p·Ap, 3 = b·b (row 0 only). The reductions, the
scalar table and its cursor, the freezing at the tolerance and the native loops are those of
:mod:`~physml.solvers.linalg.kernels`, whose docstring explains them. Vectors are float32 or
float64 (overloads declared below).
"""

from __future__ import annotations

from typing import Any

import warp as wp

from ..kernel_launch import specialize
from .kernels import partial_sums, ratio, vector_types

_CG_POINTERS = (
    "const auto* __restrict__ pp = p.data; const auto* __restrict__ qp = ap.data;"
    "auto* __restrict__ xp = x.data; auto* __restrict__ rp = r.data;"
)


@wp.func_native(
    _CG_POINTERS
    + partial_sums("xp[k] += alpha * pp[k]; rp[k] -= alpha * qp[k];",
                    {"0": "double(rp[k]) * double(rp[k])"})
)
def cg_update_rows(
    p: wp.array(dtype=Any),
    ap: wp.array(dtype=Any),
    alpha: Any,
    t: int,
    n: int,
    stride: int,
    j: int,
    s: wp.array2d(dtype=wp.float64),
    x: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
): ...


@wp.kernel(enable_backward=False)
def cg_update_kernel(
    p: wp.array(dtype=Any),
    ap: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    rz_col: int,
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
    x: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
):
    """alpha = s[j, rz] / s[j, 2]; x += alpha p, r -= alpha Ap; s[j + 1, 0] += r · r
    (j = cursor[0])."""
    tol2 = limit[0]
    j = cursor[0]
    alpha = x.dtype(ratio(s[j, rz_col], s[j, 2], s[j, 0] > tol2))
    cg_update_rows(p, ap, alpha, wp.tid(), n, stride, j + 1, s, x, r)


@wp.func_native(
    _CG_POINTERS
    + "const auto* __restrict__ dp = d.data; auto* __restrict__ zp = z.data;"
    + partial_sums(
        "xp[k] += alpha * pp[k]; rp[k] -= alpha * qp[k]; zp[k] = dp[k] * rp[k];",
        {"0": "double(rp[k]) * double(rp[k])", "1": "double(rp[k]) * double(zp[k])"},
    )
)
def cg_update_jacobi_rows(
    p: wp.array(dtype=Any),
    ap: wp.array(dtype=Any),
    d: wp.array(dtype=Any),
    alpha: Any,
    t: int,
    n: int,
    stride: int,
    j: int,
    s: wp.array2d(dtype=wp.float64),
    x: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
    z: wp.array(dtype=Any),
): ...


@wp.kernel(enable_backward=False)
def cg_update_jacobi_kernel(
    p: wp.array(dtype=Any),
    ap: wp.array(dtype=Any),
    d: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
    x: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
    z: wp.array(dtype=Any),
):
    """cg_update_kernel with the Jacobi preconditioner in the same pass (d = 1/diag A):
    alpha = s[j, 1] / s[j, 2]; x += alpha p, r -= alpha Ap, z = d ⊙ r;
    s[j + 1, 0] += r · r, s[j + 1, 1] += r · z (j = cursor[0]). The sums are those of
    cg_update_kernel followed by diagonal_scale_kernel, bit for bit; one pass over r instead of
    two."""
    tol2 = limit[0]
    j = cursor[0]
    alpha = x.dtype(ratio(s[j, 1], s[j, 2], s[j, 0] > tol2))
    cg_update_jacobi_rows(p, ap, d, alpha, wp.tid(), n, stride, j + 1, s, x, r, z)


@wp.func_native(
    """
    const auto* __restrict__ zp = z.data;
    auto* __restrict__ pp = p.data;
    if (stride == 1) for (int i = 0; i < n; ++i) pp[i] = zp[i] + beta * pp[i];
    else for (int i = t; i < n; i += stride) pp[i] = zp[i] + beta * pp[i];
    """
)
def direction_rows(
    z: wp.array(dtype=Any), beta: Any, t: int, n: int, stride: int, p: wp.array(dtype=Any)
): ...


@wp.kernel(enable_backward=False)
def cg_direction_kernel(
    z: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    rz_col: int,
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
    p: wp.array(dtype=Any),
):
    """beta = s[j + 1, rz] / s[j, rz]; p = z + beta p (j = cursor[0])."""
    tol2 = limit[0]
    j = cursor[0]
    beta = p.dtype(ratio(s[j + 1, rz_col], s[j, rz_col], s[j + 1, 0] > tol2))
    direction_rows(z, beta, wp.tid(), n, stride, p)


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        specialize(cg_update_kernel, T, vector_types(T, "p", "ap", "x", "r"))
        specialize(cg_update_jacobi_kernel, T, vector_types(T, "p", "ap", "d", "x", "r", "z"))
        specialize(cg_direction_kernel, T, vector_types(T, "z", "p"))


_overload_all()
