r"""The fused Runge–Kutta stage kernels of the convection–diffusion–reaction operator, batched.

Each launch evaluates a stage $k_i = F(v_i)$ of the samples of a flat state and writes the next
stage's input (or the new state) $w = u + \Delta t (\sum_{j<i} c_j k_j + c_i k_i)$, with the
batches, coefficients and layout of :mod:`physml.solvers.rk_stages` (whose
:class:`~physml.solvers.rk_stages.FusedStages` launches them), from the functions of
:mod:`physml.solvers.stage_functions`. Each kernel has float32 and float64 overloads, declared
at import.

**Three kernels, one arithmetic.** :data:`stage_cells_kernel` gives each cell a thread and
evaluates both faces of every axis: it is what CUDA runs and what a ``wp.Tape`` records (its
adjoint is Warp's). On the CPU without a tape (no adjoint), :data:`stage_runs_kernel` gives each
host thread a run of row segments of the last axis as one call of native C++ loops
(:data:`~physml.solvers.stage_native_source.INTERIOR_RUN`; the rows' neighbours and ghost cells
worked out there too, so a row costs no Warp code) that the compiler vectorises: each face of
the last axis is computed once into a tile buffer, then the cells of the tile, then their
Runge–Kutta combination; with coefficient fields :data:`stage_rows_kernel` gives each thread one
segment in Warp. The kernels evaluate the same expressions in the same order, so they agree bit
for bit. Speed comes from one pass per stage, vectorised loops, halved flux work along the last
axis and host threads over segments.
"""

from typing import Any

import warp as wp

from .kernel_launch import specialize
from .stage_functions import (
    advective_difference,
    axis_speed,
    coefficient,
    combine,
    face_flux,
    ghost_affine,
    neighbour,
    pointwise_terms,
    row_start,
    second_difference,
)
from .stage_native_source import INTERIOR_RUN
from .vector_width import wide_vector_options

# Both kernels must round identically: no fused multiply-adds (the generated per-cell code and
# the native runs would contract different products). The native runs' loops take 512-bit
# vectors where the CPU has them (one thread, a Xeon with AVX-512 FP16: 2D Burgers 1.2x faster
# at 256^2, 1.03-1.05x at 1024^2 and 2048^2, where the rows leave the caches; bit for bit).
MODULE_OPTIONS = {"fuse_fp": False} | wide_vector_options()
wp.set_module_options(MODULE_OPTIONS)


@wp.func_native(INTERIOR_RUN)
def interior_runs(v: wp.array(dtype=Any), u: wp.array(dtype=Any), k0: wp.array(dtype=Any),
                  k1: wp.array(dtype=Any), k2: wp.array(dtype=Any), c: wp.array(dtype=Any),
                  dt: wp.array(dtype=Any), nu: wp.array(dtype=Any),
                  velocity: wp.array(dtype=Any), rho: wp.array(dtype=Any),
                  inv_dx: wp.array(dtype=Any), coef: wp.array2d(dtype=Any),
                  dt_strides: wp.vec2i, nu_strides: wp.vec2i, velocity_stride: int,
                  rho_strides: wp.vec2i, shape: wp.vec3i, kinds_lo: wp.vec3i,
                  kinds_hi: wp.vec3i, axis_offset: int, ghost: int, flux_kind: int,
                  limiter: int, reaction_kind: int, with_diffusion: int, n_prev: int,
                  segment: int, first: int, count: int, write_w: int, keep_k: int,
                  k_out: wp.array(dtype=Any), w_out: wp.array(dtype=Any)):
    """:data:`stage_runs_kernel`'s body: the row segments ``first .. first + count - 1``
    (``segment`` cells each), each with its neighbour rows, ghost cells and its sample's
    coefficients worked out in C++ (no per-row Warp code)."""
    ...


# ------------------------------------------------------------------------------------ kernels


@wp.kernel
def stage_cells_kernel(
    v: wp.array(dtype=Any),
    u: wp.array(dtype=Any),
    k0: wp.array(dtype=Any),
    k1: wp.array(dtype=Any),
    k2: wp.array(dtype=Any),
    c: wp.array(dtype=Any),
    dt: wp.array(dtype=Any),
    nu: wp.array(dtype=Any),
    velocity: wp.array(dtype=Any),
    rho: wp.array(dtype=Any),
    inv_dx: wp.array(dtype=Any),
    coef: wp.array2d(dtype=Any),
    dt_strides: wp.vec2i,
    nu_strides: wp.vec2i,
    velocity_stride: int,
    rho_strides: wp.vec2i,
    shape: wp.vec3i,
    kinds_lo: wp.vec3i,
    kinds_hi: wp.vec3i,
    axis_offset: int,
    ghost: int,
    flux_kind: int,
    limiter: int,
    reaction_kind: int,
    with_diffusion: int,
    n_prev: int,
    k_out: wp.array(dtype=Any),
    w_out: wp.array(dtype=Any),
):
    """One thread per cell: k_out = F(v), w_out =
    :func:`~physml.solvers.stage_functions.combine` (w_out of length 0: not written). Reads
    v, u, k0..k2, the coefficients; writes k_out, w_out."""
    t = wp.tid()
    n_cells = shape[0] * shape[1] * shape[2]
    b = t // n_cells
    n = t - b * n_cells
    base = b * n_cells
    cell = wp.vec3i(n // (shape[1] * shape[2]), (n // shape[2]) % shape[1], n % shape[2])
    u0 = v[t]
    zero = u0 - u0
    adv = zero
    lap = zero
    for a in range(3):
        if shape[a] > 1:
            um1 = neighbour(v, base, cell, a, -1, shape, kinds_lo, kinds_hi, coef, ghost)
            up1 = neighbour(v, base, cell, a, 1, shape, kinds_lo, kinds_hi, coef, ghost)
            speed = axis_speed(velocity, b, velocity_stride, a, axis_offset, shape)
            f_lo = zero
            f_hi = zero
            if flux_kind >= 2:
                um2 = neighbour(v, base, cell, a, -2, shape, kinds_lo, kinds_hi, coef, ghost)
                up2 = neighbour(v, base, cell, a, 2, shape, kinds_lo, kinds_hi, coef, ghost)
                f_lo = face_flux(um2, um1, u0, up1, flux_kind, speed, limiter)
                f_hi = face_flux(um1, u0, up1, up2, flux_kind, speed, limiter)
            adv = adv + advective_difference(f_lo, f_hi, um1, up1, inv_dx[a], flux_kind, speed)
            lap = lap + second_difference(um1, u0, up1, inv_dx[a])
    k = pointwise_terms(
        u0,
        adv,
        lap,
        coefficient(nu, b, n, nu_strides),
        coefficient(rho, b, n, rho_strides),
        reaction_kind,
        with_diffusion,
    )
    k_out[t] = k
    if w_out.shape[0] > 0:
        w_out[t] = combine(u, k0, k1, k2, n_prev, c, coefficient(dt, b, n, dt_strides), t, k)



# The row kernels run on the CPU only: each is a module of its own, so that a CUDA device
# builds the per-cell kernel's module without them (NVRTC builds that module for sm_90 in 7 s
# alone, 117 s with the native runs' loops, buffers and lambdas).
@wp.kernel(enable_backward=False, module="unique", module_options=MODULE_OPTIONS)
def stage_rows_kernel(
    v: wp.array(dtype=Any),
    u: wp.array(dtype=Any),
    k0: wp.array(dtype=Any),
    k1: wp.array(dtype=Any),
    k2: wp.array(dtype=Any),
    c: wp.array(dtype=Any),
    dt: wp.array(dtype=Any),
    nu: wp.array(dtype=Any),
    velocity: wp.array(dtype=Any),
    rho: wp.array(dtype=Any),
    inv_dx: wp.array(dtype=Any),
    coef: wp.array2d(dtype=Any),
    dt_strides: wp.vec2i,
    nu_strides: wp.vec2i,
    velocity_stride: int,
    rho_strides: wp.vec2i,
    shape: wp.vec3i,
    kinds_lo: wp.vec3i,
    kinds_hi: wp.vec3i,
    axis_offset: int,
    ghost: int,
    flux_kind: int,
    limiter: int,
    reaction_kind: int,
    with_diffusion: int,
    n_prev: int,
    segment: int,
    first: int,
    k_out: wp.array(dtype=Any),
    w_out: wp.array(dtype=Any),
):
    """:data:`stage_cells_kernel` with one thread per segment of ``segment`` cells of a row of
    the last axis (thread ``first + tid``), a Warp loop over the segment that computes the
    flux through the face between two of its cells once: the CPU path with coefficient
    fields (without them, :data:`stage_runs_kernel` runs the native loops)."""
    block = first + wp.tid()
    n2 = shape[2]
    per_row = (n2 + segment - 1) // segment
    line = block // per_row
    k_first = (block - line * per_row) * segment
    k_end = wp.min(k_first + segment, n2)
    n_cells = shape[0] * shape[1] * n2
    lines = shape[0] * shape[1]
    b = line // lines
    i0 = (line - b * lines) // shape[1]
    i1 = line % shape[1]
    base = b * n_cells
    here = base + (i0 * shape[1] + i1) * n2
    # neighbour rows along axes 0 and 1: their flat starts and ghost rows
    lo0, row_lo0 = row_start(base, i0, i1, 0, -1, shape, kinds_lo, kinds_hi, ghost)
    hi0, row_hi0 = row_start(base, i0, i1, 0, 1, shape, kinds_lo, kinds_hi, ghost)
    lo1, row_lo1 = row_start(base, i0, i1, 1, -1, shape, kinds_lo, kinds_hi, ghost)
    hi1, row_hi1 = row_start(base, i0, i1, 1, 1, shape, kinds_lo, kinds_hi, ghost)
    lo0b, row_lo0b = row_start(base, i0, i1, 0, -2, shape, kinds_lo, kinds_hi, ghost)
    hi0b, row_hi0b = row_start(base, i0, i1, 0, 2, shape, kinds_lo, kinds_hi, ghost)
    lo1b, row_lo1b = row_start(base, i0, i1, 1, -2, shape, kinds_lo, kinds_hi, ghost)
    hi1b, row_hi1b = row_start(base, i0, i1, 1, 2, shape, kinds_lo, kinds_hi, ghost)
    speed0 = axis_speed(velocity, b, velocity_stride, 0, axis_offset, shape)
    speed1 = axis_speed(velocity, b, velocity_stride, 1, axis_offset, shape)
    speed2 = axis_speed(velocity, b, velocity_stride, 2, axis_offset, shape)
    # what is constant along the row, read once (the loop passes no arrays to functions)
    inv0, inv1, inv2 = inv_dx[0], inv_dx[1], inv_dx[2]
    zero = inv0 - inv0
    a_lo0, b_lo0 = coef[row_lo0, 0], coef[row_lo0, 1]
    a_hi0, b_hi0 = coef[row_hi0, 0], coef[row_hi0, 1]
    a_lo1, b_lo1 = coef[row_lo1, 0], coef[row_lo1, 1]
    a_hi1, b_hi1 = coef[row_hi1, 0], coef[row_hi1, 1]
    a_lo0b, b_lo0b = coef[row_lo0b, 0], coef[row_lo0b, 1]
    a_hi0b, b_hi0b = coef[row_hi0b, 0], coef[row_hi0b, 1]
    a_lo1b, b_lo1b = coef[row_lo1b, 0], coef[row_lo1b, 1]
    a_hi1b, b_hi1b = coef[row_hi1b, 0], coef[row_hi1b, 1]
    nu_row = nu[b * nu_strides[0]]
    rho_row = rho[b * rho_strides[0]]
    write_w = w_out.shape[0] > 0
    step = zero
    d0, d1, d2, d3 = zero, zero, zero, zero
    use0, use1, use2 = False, False, False
    if write_w:
        step = dt[b * dt_strides[0]]  # a time step is one value per sample, never a field
        d0, d1, d2, d3 = step * c[0], step * c[1], step * c[2], step * c[3]
        use0 = n_prev > 0 and c[0] != zero
        use1 = n_prev > 1 and c[1] != zero
        use2 = n_prev > 2 and c[2] != zero
    # the segment in Warp (a coefficient field is read cell by cell)
    cell = wp.vec3i(i0, i1, k_first)
    um2 = neighbour(v, base, cell, 2, -2, shape, kinds_lo, kinds_hi, coef, ghost)
    um1 = neighbour(v, base, cell, 2, -1, shape, kinds_lo, kinds_hi, coef, ghost)
    u0 = v[here + k_first]
    up1 = neighbour(v, base, cell, 2, 1, shape, kinds_lo, kinds_hi, coef, ghost)
    f_lo = zero
    if flux_kind >= 2:
        f_lo = face_flux(um2, um1, u0, up1, flux_kind, speed2, limiter)
    for k in range(k_first, k_end):
        up2 = zero
        if k + 2 < n2:
            up2 = v[here + k + 2]
        else:
            up2 = neighbour(
                v, base, wp.vec3i(i0, i1, k), 2, 2, shape, kinds_lo, kinds_hi, coef,
                ghost,
            )
        adv = zero
        lap = zero
        if shape[0] > 1:
            a_m1 = ghost_affine(v[lo0 + k], row_lo0, a_lo0, b_lo0)
            a_p1 = ghost_affine(v[hi0 + k], row_hi0, a_hi0, b_hi0)
            g_lo = zero
            g_hi = zero
            if flux_kind >= 2:
                a_m2 = ghost_affine(v[lo0b + k], row_lo0b, a_lo0b, b_lo0b)
                a_p2 = ghost_affine(v[hi0b + k], row_hi0b, a_hi0b, b_hi0b)
                g_lo = face_flux(a_m2, a_m1, u0, a_p1, flux_kind, speed0, limiter)
                g_hi = face_flux(a_m1, u0, a_p1, a_p2, flux_kind, speed0, limiter)
            adv = adv + advective_difference(
                g_lo, g_hi, a_m1, a_p1, inv0, flux_kind, speed0
            )
            lap = lap + second_difference(a_m1, u0, a_p1, inv0)
        if shape[1] > 1:
            b_m1 = ghost_affine(v[lo1 + k], row_lo1, a_lo1, b_lo1)
            b_p1 = ghost_affine(v[hi1 + k], row_hi1, a_hi1, b_hi1)
            h_lo = zero
            h_hi = zero
            if flux_kind >= 2:
                b_m2 = ghost_affine(v[lo1b + k], row_lo1b, a_lo1b, b_lo1b)
                b_p2 = ghost_affine(v[hi1b + k], row_hi1b, a_hi1b, b_hi1b)
                h_lo = face_flux(b_m2, b_m1, u0, b_p1, flux_kind, speed1, limiter)
                h_hi = face_flux(b_m1, u0, b_p1, b_p2, flux_kind, speed1, limiter)
            adv = adv + advective_difference(
                h_lo, h_hi, b_m1, b_p1, inv1, flux_kind, speed1
            )
            lap = lap + second_difference(b_m1, u0, b_p1, inv1)
        f_hi = zero
        if flux_kind >= 2:
            f_hi = face_flux(um1, u0, up1, up2, flux_kind, speed2, limiter)
        adv = adv + advective_difference(f_lo, f_hi, um1, up1, inv2, flux_kind, speed2)
        lap = lap + second_difference(um1, u0, up1, inv2)
        t = here + k
        nu_cell = nu_row
        if nu_strides[1] != 0:
            nu_cell = nu[b * nu_strides[0] + (t - base) * nu_strides[1]]
        rho_cell = rho_row
        if rho_strides[1] != 0:
            rho_cell = rho[b * rho_strides[0] + (t - base) * rho_strides[1]]
        value = pointwise_terms(
            u0, adv, lap, nu_cell, rho_cell, reaction_kind, with_diffusion
        )
        k_out[t] = value
        if write_w:
            w = u[t]
            if use0:
                w = w + d0 * k0[t]
            if use1:
                w = w + d1 * k1[t]
            if use2:
                w = w + d2 * k2[t]
            w_out[t] = w + d3 * value
        f_lo = f_hi
        um1 = u0
        u0 = up1
        up1 = up2


@wp.kernel(enable_backward=False, module="unique", module_options=MODULE_OPTIONS)
def stage_runs_kernel(
    v: wp.array(dtype=Any),
    u: wp.array(dtype=Any),
    k0: wp.array(dtype=Any),
    k1: wp.array(dtype=Any),
    k2: wp.array(dtype=Any),
    c: wp.array(dtype=Any),
    dt: wp.array(dtype=Any),
    nu: wp.array(dtype=Any),
    velocity: wp.array(dtype=Any),
    rho: wp.array(dtype=Any),
    inv_dx: wp.array(dtype=Any),
    coef: wp.array2d(dtype=Any),
    dt_strides: wp.vec2i,
    nu_strides: wp.vec2i,
    velocity_stride: int,
    rho_strides: wp.vec2i,
    shape: wp.vec3i,
    kinds_lo: wp.vec3i,
    kinds_hi: wp.vec3i,
    axis_offset: int,
    ghost: int,
    flux_kind: int,
    limiter: int,
    reaction_kind: int,
    with_diffusion: int,
    n_prev: int,
    segment: int,
    first: int,
    count: int,
    k_out: wp.array(dtype=Any),
    w_out: wp.array(dtype=Any),
):
    """:data:`stage_rows_kernel` without coefficient fields, one thread (launch dim 1) for the
    ``count`` segments from ``first``: one :func:`interior_runs` call of native loops, so a
    row costs no Warp code of its own (the CPU path without a tape; no adjoint). A ``k_out``
    of length 0 is not written (only ``w_out``: a last stage's k that nothing reads)."""
    interior_runs(v, u, k0, k1, k2, c, dt, nu, velocity, rho, inv_dx, coef, dt_strides,
                  nu_strides, velocity_stride, rho_strides, shape, kinds_lo, kinds_hi,
                  axis_offset, ghost, flux_kind, limiter, reaction_kind, with_diffusion,
                  n_prev, segment, first, count, int(w_out.shape[0] > 0),
                  int(k_out.shape[0] > 0), k_out, w_out)


def _overload_kernels() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        types = {
            **{name: arr for name in ("v", "u", "k0", "k1", "k2", "c", "dt", "nu", "velocity",
                                      "rho", "inv_dx", "k_out", "w_out")},
            "coef": wp.array2d(dtype=T),
        }
        specialize(stage_cells_kernel, T, types)
        specialize(stage_rows_kernel, T, types)
        specialize(stage_runs_kernel, T, types)


_overload_kernels()
