r"""Warp kernels of BiCGStab (:func:`~physml.solvers.linalg.bicgstab`): the half step, the update
of x and r and the new direction.

Columns of the scalar table: 0 = r·r, 1 = rho = r̂·r, 2 = r̂·v, 3 = b·b (row 0 only),
4 = c t·h, 5 = c² t·t, with c the power of two nearest $|\alpha|$ (:func:`omega_scale`): t = A ĥ
carries A's scale, and $t^T t$ its square, which under- or overflows float64 for an A of entries
near 1e-160 or 1e160; c t·h and c² t·t are of the order of $\|h\|^2$ whatever that scale, and
$\omega = c\,(c\,t^T h)/(c^2 t^T t)$ is bit for bit $t^T h / t^T t$ where neither leaves float64's
normal range. The reductions, the scalar table and its cursor and the freezing at the tolerance
are those of :mod:`~physml.solvers.linalg.kernels`, whose docstring explains them. Vectors are
float32 or float64 (overloads declared below).
"""

from __future__ import annotations

from typing import Any

import warp as wp

from ..kernel_launch import specialize
from .kernels import ratio, vector_types


@wp.func
def bicgstab_alpha(s: wp.array2d(dtype=wp.float64), j: int, tol2: wp.float64):
    return ratio(s[j, 1], s[j, 2], s[j, 0] > tol2)


@wp.func
def omega_scale(s: wp.array2d(dtype=wp.float64), j: int, tol2: wp.float64):
    """The power of two nearest $|\\alpha_j| = |\\rho_j / \\hat r^T v|$, about $1 / \\|A\\|$
    (1 where alpha is 0 or not finite): c t has the scale of h."""
    alpha = wp.abs(bicgstab_alpha(s, j, tol2))
    if alpha == wp.float64(0.0) or not wp.isfinite(alpha):
        return wp.float64(1.0)
    return wp.pow(wp.float64(2.0), wp.round(wp.log2(alpha)))


@wp.func
def bicgstab_omega(s: wp.array2d(dtype=wp.float64), j: int, tol2: wp.float64):
    """$\\omega_j = t^T h / t^T t = c\\,(c\\,t^T h) / (c^2 t^T t)$ from columns 4 and 5."""
    return omega_scale(s, j, tol2) * ratio(s[j, 4], s[j, 5], s[j, 0] > tol2)


@wp.kernel(enable_backward=False)
def bicgstab_omega_dots_kernel(
    tv: wp.array(dtype=Any),
    h: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
):
    """s[j, 4] += (c t) · h, s[j, 5] += (c t) · (c t), c = omega_scale (j = cursor[0])."""
    t = wp.tid()
    j = cursor[0]
    c = omega_scale(s, j, limit[0])
    th = wp.float64(0.0)
    tt = wp.float64(0.0)
    for i in range(t, n, stride):
        ct = c * wp.float64(tv[i])
        th += ct * wp.float64(h[i])
        tt += ct * ct
    wp.atomic_add(s, j, 4, th)
    wp.atomic_add(s, j, 5, tt)


@wp.kernel(enable_backward=False)
def bicgstab_half_kernel(
    r: wp.array(dtype=Any),
    v: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
    h: wp.array(dtype=Any),
):
    """alpha = rho_j / (r̂ · v); h = r - alpha v (the half-step residual; j = cursor[0])."""
    tol2 = limit[0]
    t = wp.tid()
    j = cursor[0]
    alpha = r.dtype(bicgstab_alpha(s, j, tol2))
    for i in range(t, n, stride):
        h[i] = r[i] - alpha * v[i]


@wp.kernel(enable_backward=False)
def bicgstab_update_kernel(
    phat: wp.array(dtype=Any),
    hhat: wp.array(dtype=Any),
    h: wp.array(dtype=Any),
    tv: wp.array(dtype=Any),
    rhat: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
    x: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
):
    """omega = bicgstab_omega; x += alpha p̂ + omega ĥ; r = h - omega t;
    s[j + 1, 0] += r · r, s[j + 1, 1] += r̂ · r (j = cursor[0])."""
    tol2 = limit[0]
    t = wp.tid()
    j = cursor[0]
    alpha = x.dtype(bicgstab_alpha(s, j, tol2))
    omega = x.dtype(bicgstab_omega(s, j, tol2))
    rr = wp.float64(0.0)
    rho = wp.float64(0.0)
    for i in range(t, n, stride):
        x[i] = x[i] + alpha * phat[i] + omega * hhat[i]
        r[i] = h[i] - omega * tv[i]
        ri = wp.float64(r[i])
        rr += ri * ri
        rho += wp.float64(rhat[i]) * ri
    wp.atomic_add(s, j + 1, 0, rr)
    wp.atomic_add(s, j + 1, 1, rho)


@wp.kernel(enable_backward=False)
def bicgstab_direction_kernel(
    r: wp.array(dtype=Any),
    v: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    limit: wp.array(dtype=wp.float64),
    s: wp.array2d(dtype=wp.float64),
    p: wp.array(dtype=Any),
):
    """beta = (rho_{j+1} / rho_j)(alpha / omega); p = r + beta (p - omega v) (j = cursor[0])."""
    tol2 = limit[0]
    t = wp.tid()
    j = cursor[0]
    active = s[j + 1, 0] > tol2
    omega = bicgstab_omega(s, j, tol2)
    beta = ratio(s[j + 1, 1], s[j, 1], active) * ratio(bicgstab_alpha(s, j, tol2), omega, active)
    b = p.dtype(beta)
    w = p.dtype(omega)
    for i in range(t, n, stride):
        p[i] = r[i] + b * (p[i] - w * v[i])



def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        specialize(bicgstab_omega_dots_kernel, T, vector_types(T, "tv", "h"))
        specialize(bicgstab_half_kernel, T, vector_types(T, "r", "v", "h"))
        specialize(bicgstab_update_kernel, T,
                   vector_types(T, "phat", "hhat", "h", "tv", "rhat", "x", "r"))
        specialize(bicgstab_direction_kernel, T, vector_types(T, "r", "v", "p"))


_overload_all()
