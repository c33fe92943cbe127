r"""Fused Runge–Kutta stages of the convection–diffusion–reaction operator, batched.

One launch per stage $i$ of an explicit scheme evaluates
$k_i = F(v_i)$, $F(u) = -\sum_d \partial_d f_d(u) + \nu\,\Delta u + \rho\, r(u)$
(:mod:`physml.solvers.operators` has the stencils) and writes the next stage's input (or, at
the last stage, the new state)

$$w = u + \Delta t \Big(\sum_{j<i} c_j k_j + c_i k_i\Big),$$

$c$ a row of the Butcher tableau (the next stage's $a$, or $b$). Boundary conditions are
applied inside the stencil: a neighbour index outside the grid is mapped to its interior
source cell and the ghost value $a\,u_{src} + b$ of :mod:`physml.solvers.grid` (no padded copy).

**Batches and coefficients.** A state is ``B`` samples of ``N`` cells, flat (sample-major).
Each coefficient ($\nu$, $\rho$, $\Delta t$) is read as ``p[b s_b + n s_n]`` for sample
``b`` and cell ``n``, with strides :class:`Coefficient` derives from its shape: one value
(0, 0), one per sample (1, 0), one field for all samples (0, 1) or a field per sample (N, 1).
The velocity of a linear flux is one vector, or one per sample. Samples never mix: the
arithmetic of a sample does not depend on the batch around it.

**Layout.** A grid of ``ndim`` axes is a 3D block ``(n0, n1, n2)`` with leading axes of one
cell, so the grid's last axis is always the contiguous one.

**Three kernels, one arithmetic.** :data:`stage_cells_kernel` gives each cell a thread and
evaluates both faces of every axis: it is what CUDA runs and what a ``wp.Tape`` records (its
adjoint is Warp's). On the CPU without a tape (no adjoint), :data:`stage_runs_kernel` gives
each host thread a run of row segments of the last axis as one call of native C++ loops
(:data:`INTERIOR_RUN`; the rows' neighbours and ghost cells worked out there too, so a row
costs no Warp code) that the compiler vectorises: each face of the last axis is computed once
into a tile buffer, then the cells of the tile, then their Runge–Kutta combination; with
coefficient fields :data:`stage_rows_kernel` gives each thread one segment in Warp. The
kernels evaluate the same expressions in the same order, so they agree bit for bit. Speed comes
from one pass per stage, vectorised loops, halved flux work along the last axis and host
threads over segments.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import warp as wp

from .cahn_hilliard_kernels import available_cores, in_parallel
from .grid import BCKind, BoundaryConditions, Grid
from .kept import held_if_free
from .operators import ghost_source, launch, limited_slope, reaction_term, rusanov_flux, specialize
from .replay import Replay
from .timestepping import Tableau
from .vector_width import wide_vector_options

# Both kernels must round identically: no fused multiply-adds (the generated per-cell code and
# the native runs would contract different products). The native runs' loops take 512-bit
# vectors where the CPU has them (one thread, a Xeon with AVX-512 FP16: 2D Burgers 1.2x faster
# at 256^2, 1.03-1.05x at 1024^2 and 2048^2, where the rows leave the caches; bit for bit).
MODULE_OPTIONS = {"fuse_fp": False} | wide_vector_options()
wp.set_module_options(MODULE_OPTIONS)

RECORDED_PER_STAGE = 3
"""Sets of recorded row-kernel launches a stage keeps (:meth:`FusedStages._recorded`): the two
between which a rollout's work arrays alternate and the first step's, from the initial state
(so that the next rollout on these arrays replays all three). Each holds the arrays it was
recorded with (alive until it is re-packed)."""

MIN_CELLS_PER_THREAD = 1 << 17
"""Fewest cells a host thread gets by default on the CPU, a cell of a stage with limited (MUSCL)
fluxes counting :data:`LIMITED_FLUX_WEIGHT` times. A stage costs a few to tens of nanoseconds
per cell, and a second thread pays only where it saves more than it costs to hand over
(measured on 2-core VMs: 2D Burgers 1.5x faster on two threads at 256^2 cells and 0.8x at
128^2, 1D Burgers 1.1x at 2^16 and 0.7x at 2^15, heat 0.8-0.9x at 2^16)."""

LIMITED_FLUX_WEIGHT = 4
"""How many central-difference cells a cell with limited fluxes counts for in the thread
count: its stage computes van Leer slopes and Rusanov fluxes, several times the work."""


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


# ------------------------------------------------------------------ interior runs, native
# Row segments, each tile by tile, as C++ loops over restrict-qualified raw pointers that the
# compiler's loop vectoriser takes (Warp compiles CPU modules with -march=native, and this module
# prefers 512-bit vectors: 8 doubles per instruction with AVX-512, 4 with AVX2; -O2, no fast-math).
# A tile at an end of the row reads a copy of its cells with the row's ghost cells in place; a
# neighbour row that is a ghost row is mapped into a buffer once per tile. What keeps a loop scalar
# is removed: the flux kind, limiter and present axes are template tags (no branch on them in a
# loop), the limiters are selects (both sides computed, one kept: no branch), the slopes and then
# the faces of the last axis are computed into tile buffers first (no value carried from one cell to
# the next; each cell's slope once, not once per face; along axis 1 a row takes its lower faces and
# its slopes from the row before it, so a cell computes one slope and one face there; along axis 0
# three slopes for its two faces, not four), the Runge–Kutta combination is its own loop over the
# tile with only the earlier stages it uses, and every scalar a loop reads is a local copy (clang
# ignores restrict on local pointers, so a value read through a lambda's captures would be reloaded
# after every store, which keeps the loop scalar). The arithmetic is that of the wp.funcs above,
# operation for operation and in the same order (IEEE, no contraction on the CPU target; a select
# evaluates the same expression as the branch it replaces), so the per-cell kernel agrees bit for
# bit. The outputs must not overlap the inputs (:meth:`FusedStages.launch` checks it), which
# restrict promises.

GHOST_SOURCE = """
// index i in [-ghost, n + ghost) of kernel axis ``axis`` (n cells): its interior source cell
// (into src) and its ghost row (returned; 0: interior), as operators.ghost_source
auto ghost_source = [&](int i, int n, int axis, int& src) -> int {
    if (i < 0) {
        const int m = -i;
        src = kinds_lo[axis] == 0 ? i + n : m - 1;
        return 1 + (2 * axis) * ghost + (m - 1);
    }
    if (i >= n) {
        const int m = i - n + 1;
        src = kinds_hi[axis] == 0 ? i - n : n - m;
        return 1 + (2 * axis + 1) * ghost + (m - 1);
    }
    src = i;
    return 0;
};
"""
"""Native snippet of the ghost-cell mapping (arguments ``ghost``, ``kinds_lo``, ``kinds_hi``),
shared by the native stage loops and their adjoint."""

INTERIOR_RUN = """
using real = decltype(inv_dx.data[0] + inv_dx.data[0]);
constexpr int TILE = 512;
const real zero = real(0), half = real(0.5), two = real(2), one = real(1);
const real* __restrict__ x = v.data;
const real* __restrict__ g = coef.data;
real* __restrict__ ko = k_out.data;
const int n0 = shape[0], n1 = shape[1], n2 = shape[2];
const bool has0 = n0 > 1, has1 = n1 > 1;
const int lines = n0 * n1, n_cells = lines * n2, per_row = (n2 + segment - 1) / segment;
const real inv0 = inv_dx.data[0], inv1 = inv_dx.data[1], inv2 = inv_dx.data[2];
""" + GHOST_SOURCE + """
// flat start of the row ``offset`` rows from row (i0, i1) along axis 0 or 1 of sample
// ``base`` and its ghost row (into row), as the Warp row_start
auto row_start = [&](int base, int i0, int i1, int axis, int offset, int& row) -> int {
    int index[2] = {i0, i1};
    row = 0;
    const int n = axis == 0 ? n0 : n1;
    if (n > 1 && (offset == 1 || offset == -1 || ghost > 1))
        row = ghost_source(index[axis] + offset, n, axis, index[axis]);
    return base + (index[0] * n1 + index[1]) * n2;
};
auto slope_of = [&](real a, real b, auto lim) -> real {
    if (lim() == 0) return half * (a + b);
    const real aa = wp::abs(a), bb = wp::abs(b);
    const real sign = a < zero ? -real(1.0) : real(1.0);
    real slope;
    if (lim() == 1) slope = sign * wp::min(aa, bb);
    else if (lim() == 2) slope = two * a * b / (a + b);
    else slope = sign * wp::min(wp::min(two * aa, two * bb), half * (aa + bb));
    return a * b > zero ? slope : zero;
};
// the Rusanov flux from the reconstructed states left and right of a face
auto flux = [&](real ul, real ur, real a, auto kind) -> real {
    real fl = a * ul, fr = a * ur, alpha = wp::abs(a);
    if (kind() == 3) {
        fl = half * ul * ul;
        fr = half * ur * ur;
        alpha = wp::max(wp::abs(ul), wp::abs(ur));
    }
    return half * (fl + fr) - half * alpha * (ur - ul);
};
// the fluxes through the two faces of cell u0 along an axis of neighbours m2 m1 u0 p1 p2
// (into lo, hi), the three slopes they read computed once (as the faces of operators.face_flux);
// the slope of p1 into s_p1
auto faces_of = [&](real m2, real m1, real u0, real p1, real p2, real a, auto kind, auto lim,
                    real& lo, real& hi, real& s_p1) {
    const real s_m1 = slope_of(m1 - m2, u0 - m1, lim);
    const real s_u0 = slope_of(u0 - m1, p1 - u0, lim);
    s_p1 = slope_of(p1 - u0, p2 - p1, lim);
    lo = flux(m1 + half * s_m1, u0 - half * s_u0, a, kind);
    hi = flux(u0 + half * s_u0, p1 - half * s_p1, a, kind);
};
auto advective = [&](real f_lo, real f_hi, real um1, real up1, real inv, real a,
                     auto kind) -> real {
    if (kind() == 1) return a * ((up1 - um1) * (inv * half));
    if (kind() >= 2) return (f_hi - f_lo) * inv;
    return zero;
};
auto second = [&](real um1, real u0, real up1, real inv) -> real {
    return ((um1 - u0) + (up1 - u0)) * (inv * inv);
};
// a neighbour row's ghost mapping, constant along the row: value or a value + b
struct Ghost { bool on; real a, b; };
auto ghost_of = [&](int row) -> Ghost { return Ghost{row != 0, g[2 * row], g[2 * row + 1]}; };
// what changes from one row segment to the next (set in the loop over segments at the end)
int here = 0, lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0, lo0b = 0, hi0b = 0, lo1b = 0, hi1b = 0;
int seg_first = 0, seg_count = 0;
// whether the row before this one (axis 1) was the last row this call worked on, so that its
// faces and slopes along axis 1 are in row_faces and above_slope
bool reuse_row = false;
Ghost glo0{}, ghi0{}, glo1{}, ghi1{}, glo0b{}, ghi0b{}, glo1b{}, ghi1b{};
real speed0 = zero, speed1 = zero, speed2 = zero, nu_b = zero, rho_b = zero, step = zero;
auto mapped = [&](const Ghost& m, real value) -> real {
    return m.on ? m.a * value + m.b : value;
};
const bool diffuse = with_diffusion != 0;
real faces[TILE + 1];
real slopes[TILE + 2];
// along axis 1 (MUSCL), per cell of the row's first ROW_CACHE cells: the faces below and
// above the row (two row buffers that swap roles from one row to the next, so the faces above
// the last row worked on are the next row's faces below) and the slope of the row above, which
// the next row reads as its own (so a cell computes one slope and one face along axis 1, not
// three and two); past ROW_CACHE, a tile's own buffers, computed in full
constexpr int ROW_CACHE = 4096;
real row_faces[2][ROW_CACHE], above_slope[ROW_CACHE];
real below1[TILE], above1[TILE], spare_slope[TILE];
// which of row_faces holds the faces below the current row (flips from one row to the next)
int below_buffer = 0;
// a tile's k when k_out is not kept (empty): the combination reads it from here
real k_tile[TILE];
// a row's ghost cells along the last axis (the same for every row): source cells in the
// row and ghost mappings (the second layer only where read)
int end_src[4] = {0, 0, 0, 0};
Ghost end_map[4] = {};
end_map[1] = ghost_of(ghost_source(-1, n2, 2, end_src[1]));
end_map[2] = ghost_of(ghost_source(n2, n2, 2, end_src[2]));
if (ghost > 1) {
    end_map[0] = ghost_of(ghost_source(-2, n2, 2, end_src[0]));
    end_map[3] = ghost_of(ghost_source(n2 + 1, n2, 2, end_src[3]));
}
real pad[TILE + 4];
// cells k0 .. k0 + n - 1 of the neighbour row at ``start``, mapped into buffer ``slot`` when
// the row is a ghost row (so the stencil loop reads plain values: no select in it)
real mapped_rows[8][TILE];
auto neighbour_row = [&](const Ghost& m, int start, int slot, int k0, int n) -> const real* {
    const real* __restrict__ source = x + start + k0;
    if (!m.on) return source;
    real* __restrict__ copy = mapped_rows[slot];
    const real a = m.a, b = m.b;
    for (int j = 0; j < n; ++j) copy[j] = a * source[j] + b;
    return copy;
};
// The stencil of cells k0 .. k0 + n - 1 (n <= TILE) into ko, per flux kind, limiter and
// present axes (tags with constant calls, so no branch on them is left in the loops). A tile
// at an end of the row reads a copy of its cells with the ghost cells in place.
auto tile = [&](int k0, int n, auto kind, auto lim, auto with0, auto with1) {
    // the captured scalars as locals: read through the closure, the loops would have to
    // reload them after every store (clang ignores restrict on local pointers)
    const real sp0 = speed0, sp1 = speed1, sp2 = speed2, in0 = inv0, in1 = inv1, in2 = inv2;
    const real nu_c = nu_b, rho_c = rho_b;
    const bool diffusive = diffuse;
    const int reaction_c = reaction_kind;
    real* __restrict__ fc = faces;
    const bool at_end = k0 < 2 || k0 + n + 2 > n2;
    if (at_end) {  // pad[i - k0 + 2] holds cell i of the row, i in [k0 - 2, k0 + n + 2)
        const int lo = wp::max(k0 - 2, 0), hi = wp::min(k0 + n + 2, n2);
        for (int i = lo; i < hi; ++i) pad[i - k0 + 2] = x[here + i];
        for (int i = k0 - 2; i < 0; ++i)  // ghost cells -2, -1: entries 0, 1
            pad[i - k0 + 2] = mapped(end_map[i + 2], x[here + end_src[i + 2]]);
        for (int i = n2; i < k0 + n + 2; ++i)  // ghost cells n2, n2 + 1: entries 2, 3
            pad[i - k0 + 2] = mapped(end_map[i - n2 + 2], x[here + end_src[i - n2 + 2]]);
    }
    const real* __restrict__ row = at_end ? pad + 2 : x + here + k0;
    if (kind() >= 2) {
        // each cell's limited slope once (a face reads those of its two cells: computing
        // them per face would take every slope, and its division, twice): slopes[j + 1] is
        // the slope of cell k0 + j, j in [-1, n]
        real* __restrict__ sl = slopes;
        for (int j = -1; j <= n; ++j)
            sl[j + 1] = slope_of(row[j] - row[j - 1], row[j + 1] - row[j], lim);
        for (int j = 0; j <= n; ++j)  // face j: between cells k0 + j - 1 and k0 + j
            fc[j] = flux(row[j - 1] + half * sl[j], row[j] - half * sl[j + 1], sp2, kind);
    }
    const bool wide = kind() >= 2;
    const real* __restrict__ a_m1 = with0() ? neighbour_row(glo0, lo0, 0, k0, n) : x;
    const real* __restrict__ a_p1 = with0() ? neighbour_row(ghi0, hi0, 1, k0, n) : x;
    const real* __restrict__ a_m2 = with0() && wide ? neighbour_row(glo0b, lo0b, 2, k0, n) : x;
    const real* __restrict__ a_p2 = with0() && wide ? neighbour_row(ghi0b, hi0b, 3, k0, n) : x;
    const real* __restrict__ b_m1 = with1() ? neighbour_row(glo1, lo1, 4, k0, n) : x;
    const real* __restrict__ b_p1 = with1() ? neighbour_row(ghi1, hi1, 5, k0, n) : x;
    const real* __restrict__ b_m2 = with1() && wide ? neighbour_row(glo1b, lo1b, 6, k0, n) : x;
    const real* __restrict__ b_p2 = with1() && wide ? neighbour_row(ghi1b, hi1b, 7, k0, n) : x;
    const real* __restrict__ f1_lo = below1;
    const real* __restrict__ f1_hi = above1;
    if (with1() && wide) {
        // the faces along axis 1 (as faces_of), the face below and this row's slope taken
        // from the row below where it was the last row worked on (the same expressions on
        // the same values: the same bits)
        const int at = k0 - seg_first;
        const bool kept = at + n <= ROW_CACHE;
        real* __restrict__ face_lo = kept ? row_faces[below_buffer] + at : below1;
        real* __restrict__ face_hi = kept ? row_faces[1 - below_buffer] + at : above1;
        real* __restrict__ slope_up = kept ? above_slope + at : spare_slope;
        if (kept && reuse_row) {
            for (int j = 0; j < n; ++j) {
                const real u0 = row[j], p1 = b_p1[j];
                const real s_p1 = slope_of(p1 - u0, b_p2[j] - p1, lim);
                face_hi[j] = flux(u0 + half * slope_up[j], p1 - half * s_p1, sp1, kind);
                slope_up[j] = s_p1;
            }
        } else {
            for (int j = 0; j < n; ++j) {
                real lo = zero, hi = zero, s_p1 = zero;
                faces_of(b_m2[j], b_m1[j], row[j], b_p1[j], b_p2[j], sp1, kind, lim, lo, hi, s_p1);
                face_lo[j] = lo;
                face_hi[j] = hi;
                slope_up[j] = s_p1;
            }
        }
        f1_lo = face_lo;
        f1_hi = face_hi;
    }
    real* __restrict__ out = keep_k ? ko + here + k0 : k_tile;
    for (int j = 0; j < n; ++j) {
        const real u0 = row[j], um1 = row[j - 1], up1 = row[j + 1];
        real adv = zero, lap = zero;
        if (with0()) {
            const real m1 = a_m1[j], p1 = a_p1[j];
            real g_lo = zero, g_hi = zero, g_slope = zero;
            if (kind() >= 2) {
                faces_of(a_m2[j], m1, u0, p1, a_p2[j], sp0, kind, lim, g_lo, g_hi, g_slope);
            }
            adv = adv + advective(g_lo, g_hi, m1, p1, in0, sp0, kind);
            lap = lap + second(m1, u0, p1, in0);
        }
        if (with1()) {
            const real m1 = b_m1[j], p1 = b_p1[j];
            real h_lo = zero, h_hi = zero;
            if (kind() >= 2) {
                h_lo = f1_lo[j];
                h_hi = f1_hi[j];
            }
            adv = adv + advective(h_lo, h_hi, m1, p1, in1, sp1, kind);
            lap = lap + second(m1, u0, p1, in1);
        }
        real f_lo = zero, f_hi = zero;
        if (kind() >= 2) {
            f_lo = fc[j];
            f_hi = fc[j + 1];
        }
        adv = adv + advective(f_lo, f_hi, um1, up1, in2, sp2, kind);
        lap = lap + second(um1, u0, up1, in2);
        const real diffusion = diffusive ? nu_c * lap : zero;
        real reaction = zero;
        if (reaction_c == 1) reaction = u0 - u0 * u0 * u0;
        else if (reaction_c == 2) reaction = u0 * (one - u0);
        out[j] = diffusion - adv + rho_c * reaction;
    }
};
// w = u + (dt c_j) k_j over the earlier stages with nonzero c_j, in order, + (dt c_3) k
// (the weights dt c_j of a sample's time step)
int used = 0;
const real* __restrict__ kp[3] = {nullptr, nullptr, nullptr};
real dk[3] = {zero, zero, zero};
real d3 = zero;
auto set_weights = [&]() {
    used = 0;
    if (!write_w) return;  // c, u and w_out are empty
    const real* stages[3] = {k0.data, k1.data, k2.data};
    for (int j = 0; j < 3 && j < n_prev; ++j) {
        if (c.data[j] != zero) {
            kp[used] = stages[j];
            dk[used] = step * c.data[j];
            ++used;
        }
    }
    d3 = step * c.data[3];
};
auto combine = [&](int k0, int n) {
    const int t0 = here + k0;
    const real* __restrict__ s = u.data + t0;
    const real* __restrict__ kn = keep_k ? ko + t0 : k_tile;
    real* __restrict__ w = w_out.data + t0;
    const real* __restrict__ p0 = kp[0] + (used > 0 ? t0 : 0);
    const real* __restrict__ p1 = kp[1] + (used > 1 ? t0 : 0);
    const real* __restrict__ p2 = kp[2] + (used > 2 ? t0 : 0);
    const real e0 = dk[0], e1 = dk[1], e2 = dk[2];
    if (used == 0) for (int j = 0; j < n; ++j) w[j] = s[j] + d3 * kn[j];
    else if (used == 1) for (int j = 0; j < n; ++j) w[j] = (s[j] + e0 * p0[j]) + d3 * kn[j];
    else if (used == 2)
        for (int j = 0; j < n; ++j) w[j] = ((s[j] + e0 * p0[j]) + e1 * p1[j]) + d3 * kn[j];
    else
        for (int j = 0; j < n; ++j)
            w[j] = (((s[j] + e0 * p0[j]) + e1 * p1[j]) + e2 * p2[j]) + d3 * kn[j];
};
// the tiles of a segment: at most TILE cells each; on a row of more than 2 END_TILE cells, the
// END_TILE cells at each end of the row (the only ones whose stencil reaches a ghost cell) are
// tiles of their own, so that only they are copied with their ghost cells
constexpr int END_TILE = 8;
auto run = [&](auto kind, auto lim, auto with0, auto with1) {
    const int stop = seg_first + seg_count, tail = n2 - END_TILE;
    for (int k0 = seg_first; k0 < stop;) {
        int n = wp::min(TILE, stop - k0);
        if (n2 > 2 * END_TILE) {
            if (k0 < 2) n = wp::min(n, END_TILE);
            else if (k0 < tail && k0 + n + 2 > n2) n = tail - k0;
        }
        tile(k0, n, kind, lim, with0, with1);
        if (write_w) combine(k0, n);
        k0 += n;
    }
};
struct Tag0 { constexpr int operator()() const { return 0; } };
struct Tag1 { constexpr int operator()() const { return 1; } };
struct Tag2 { constexpr int operator()() const { return 2; } };
struct Tag3 { constexpr int operator()() const { return 3; } };
struct Yes { constexpr bool operator()() const { return true; } };
struct No { constexpr bool operator()() const { return false; } };
auto by_axes = [&](auto kind, auto lim) {
    if (has0 && has1) run(kind, lim, Yes(), Yes());
    else if (has1) run(kind, lim, No(), Yes());
    else if (has0) run(kind, lim, Yes(), No());
    else run(kind, lim, No(), No());
};
auto by_limiter = [&](auto kind) {
    if (limiter == 0) by_axes(kind, Tag0());
    else if (limiter == 1) by_axes(kind, Tag1());
    else if (limiter == 2) by_axes(kind, Tag2());
    else by_axes(kind, Tag3());
};
auto by_kind = [&]() {
    if (flux_kind == 0) by_axes(Tag0(), Tag0());  // no faces: the limiter is not used
    else if (flux_kind == 1) by_axes(Tag1(), Tag0());
    else if (flux_kind == 2) by_limiter(Tag2());
    else by_limiter(Tag3());
};
// the row segments first .. first + count - 1 (``segment`` cells each, rows of n2 cells
// numbered sample-major), one after the other
int sample = -1;
for (int block = first; block < first + count; ++block) {
    const int line = block / per_row;
    seg_first = (block - line * per_row) * segment;
    seg_count = wp::min(seg_first + segment, n2) - seg_first;
    const int b = line / lines;
    const int i0 = (line - b * lines) / n1, i1 = line % n1;
    const int base = b * n_cells;
    here = base + (i0 * n1 + i1) * n2;
    int row = 0;
    lo0 = row_start(base, i0, i1, 0, -1, row);
    glo0 = ghost_of(row);
    hi0 = row_start(base, i0, i1, 0, 1, row);
    ghi0 = ghost_of(row);
    lo1 = row_start(base, i0, i1, 1, -1, row);
    glo1 = ghost_of(row);
    hi1 = row_start(base, i0, i1, 1, 1, row);
    ghi1 = ghost_of(row);
    lo0b = row_start(base, i0, i1, 0, -2, row);
    glo0b = ghost_of(row);
    hi0b = row_start(base, i0, i1, 0, 2, row);
    ghi0b = ghost_of(row);
    lo1b = row_start(base, i0, i1, 1, -2, row);
    glo1b = ghost_of(row);
    hi1b = row_start(base, i0, i1, 1, 2, row);
    ghi1b = ghost_of(row);
    if (b != sample) {  // the sample's coefficients, velocity and time step
        sample = b;
        const real no_speed = velocity.data[0] - velocity.data[0];  // as axis_speed
        const int at = b * velocity_stride - axis_offset;
        speed0 = n0 > 1 ? velocity.data[at] : no_speed;
        speed1 = n1 > 1 ? velocity.data[at + 1] : no_speed;
        speed2 = n2 > 1 ? velocity.data[at + 2] : no_speed;
        nu_b = nu.data[b * nu_strides[0]];
        rho_b = rho.data[b * rho_strides[0]];
        step = write_w ? dt.data[b * dt_strides[0]] : zero;  // one value per sample
        set_weights();
    }
    // rows follow one another along axis 1 when a segment is a whole row
    reuse_row = block > first && i1 > 0 && per_row == 1;
    by_kind();
    below_buffer = 1 - below_buffer;  // this row's faces above are the next row's below
}
"""


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
    """One thread per cell: k_out = F(v), w_out = :func:`combine` (w_out of length 0: not
    written). Reads v, u, k0..k2, the coefficients; writes k_out, w_out."""
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


# ------------------------------------------------------------------------------- host side


@dataclass(frozen=True)
class Coefficient:
    """A coefficient as the stage kernels read it: ``values[b s_b + n s_n]`` for sample b and
    cell n (``strides = (s_b, s_n)``; for a velocity, ``values[b s_b + d]``)."""

    values: wp.array
    strides: tuple[int, int] = (0, 0)


class FusedStages:
    """Launches the fused stage kernels of one grid, boundary conditions and operator.

    Args:
        grid, bc: the grid and its boundary conditions.
        ghost: stencil half-width (1: central, 2: MUSCL).
        flux_kind, limiter, reaction_kind: the operator (:mod:`physml.solvers.operators`).
        dtype, device: Warp dtype and device.
        threads: host threads on the CPU (default: one per available core while each gets
            :data:`MIN_CELLS_PER_THREAD` cells, weighted by :data:`LIMITED_FLUX_WEIGHT`). The
            result does not depend on it.
    """

    def __init__(self, grid: Grid, bc: BoundaryConditions, ghost: int, flux_kind: int,
                 limiter: int, reaction_kind: int, dtype: type, device: str,
                 threads: int | None = None) -> None:
        offset = 3 - grid.ndim
        self.grid, self.dtype, self.device, self.ghost = grid, dtype, device, int(ghost)
        self.shape = wp.vec3i(*([1] * offset + list(grid.shape)))
        kinds = [(0, 0)] * offset + [bc.kinds(d) for d in range(grid.ndim)]
        self.kinds_lo = wp.vec3i(*(k[0] for k in kinds))
        self.kinds_hi = wp.vec3i(*(k[1] for k in kinds))
        self.axis_offset = offset
        inv_dx = [1.0] * offset + [1.0 / h for h in grid.dx]
        self.inv_dx = wp.array(inv_dx, dtype=dtype, device=device)
        self.coef = wp.array(_ghost_table(grid, bc, ghost), dtype=dtype, device=device)
        self.operator = (int(flux_kind), int(limiter), int(reaction_kind))
        self.on_cpu = wp.get_device(device).is_cpu
        self.threads = threads
        self._empty = wp.empty(0, dtype=dtype, device=device)
        self.size = grid.size
        self._launches: dict[tuple, list[tuple[list[Replay], list]]] = {}
        self._splits: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        self._constants: dict[tuple[float, ...], wp.array] = {}
        self._plans: dict[Tableau, list[tuple[wp.array, str, str, bool]]] = {}
        # a rollout's work arrays, kept between rollouts: fresh arrays of a large grid cost
        # more in first-touch page faults than several steps on them
        self._kept_work = StageWork(reuse=True)
        self._kept_in_use = threading.Lock()
        self.step_lock = threading.Lock()
        """Held through each rollout step: the recorded launches and their re-packing are
        shared by every rollout of these stages, so steps of concurrent rollouts take turns."""
        self._capture: list[list[Replay] | None] | None = None
        self.repacks = 0
        """Recorded launches re-packed for other arrays so far (calls captured before a
        re-pack may now name other arrays)."""

    def constant(self, values: list[float]) -> wp.array:
        """A (cached) array of tableau coefficients."""
        key = tuple(float(v) for v in values)
        if key not in self._constants:
            self._constants[key] = wp.array(key, dtype=self.dtype, device=self.device)
        return self._constants[key]

    def tableau_plan(self, scheme: Tableau) -> list[tuple[wp.array, str, str, bool]]:
        """Per stage of ``scheme``: its coefficients ``c`` (:meth:`launch`: the row of ``a``
        after it, or ``b``, over the earlier stages, then its own), the names of its k and
        output in a :class:`StageWork` and whether a later stage reads its k (computed once
        per scheme)."""
        if scheme not in self._plans:
            plan = []
            for i in range(scheme.stages):
                last = i == scheme.stages - 1
                row = scheme.b if last else scheme.a[i + 1]
                coefficients = [row[j] if j < i else 0.0 for j in range(3)] + [row[i]]
                later = [*scheme.a[i + 2:], scheme.b] if not last else []
                read_later = any(len(r) > i and r[i] != 0.0 for r in later)
                plan.append((self.constant(coefficients), f"k{i}",
                             "out" if last else f"v{i % 2}", read_later))
            self._plans[scheme] = plan
        return self._plans[scheme]

    def launch(self, v: wp.array, batch: int, nu: Coefficient, velocity: Coefficient,
               rho: Coefficient, k_out: wp.array, *, u: wp.array | None = None,
               ks: tuple[wp.array, ...] = (), c: wp.array | None = None,
               dt: Coefficient | None = None, w_out: wp.array | None = None,
               with_diffusion: bool = True, record: bool = False, keep_k: bool = True) -> None:
        """k_out = F(v) and, with ``w_out``, w_out = u + dt (sum_j c_j ks_j + c_3 k_out).

        Args:
            v, u, ks, k_out, w_out: flat arrays of ``batch * grid.size`` values (ks: up to 3).
            c: (4,) tableau coefficients of ks and of the new k.
            record: launch the per-cell kernel, which a ``wp.Tape`` can differentiate.
            keep_k: False: k_out need not be written (a stage whose k nothing reads later;
                with ``w_out``): the native runs then leave it alone, saving its memory
                traffic.
        """
        empty = self._empty
        ks = tuple(ks) + (empty,) * (3 - len(ks))
        dt = dt if dt is not None else Coefficient(empty)
        inputs = [
            v, empty if u is None else u, *ks, empty if c is None else c, dt.values,
            nu.values, velocity.values, rho.values, self.inv_dx, self.coef,
            tuple(dt.strides), tuple(nu.strides), int(velocity.strides[0]),
            tuple(rho.strides), self.shape, self.kinds_lo, self.kinds_hi, self.axis_offset,
            self.ghost, *self.operator, int(with_diffusion), len([k for k in ks if k.size]),
        ]
        outputs = [k_out, empty if w_out is None else w_out]
        if record or not self.on_cpu:
            if self._capture is not None:
                self._capture.append(None)  # not a replayable launch
            launch(stage_cells_kernel, self.dtype, dim=batch * self.size, inputs=inputs,
                   outputs=outputs, device=self.device, record_tape=record)
            return
        segment, chunks = self._split(batch)
        native = nu.strides[1] == 0 and rho.strides[1] == 0
        if native and not keep_k and w_out is not None:
            outputs[0] = empty
        calls = self._recorded((batch, inputs[-1], id(inputs[5]), native), inputs, outputs,
                               segment, chunks, native)
        if self._capture is not None:
            self._capture.append(calls)
        self.run(calls)

    @contextmanager
    def rollout_work(self) -> Iterator[StageWork]:
        """The work arrays of one rollout: the kept set, or a private one when another rollout
        holds it (one started from a callback, or in another thread, also through a
        ``with_parameters``/``with_dt`` copy of the solver, which shares these stages)."""
        with held_if_free(self._kept_in_use) as kept:
            yield self._kept_work if kept else StageWork(reuse=True)

    @contextmanager
    def capturing(self) -> Iterator[list[list[Replay] | None]]:
        """Within the block, the recorded calls of every CPU launch are also appended to the
        list it yields (``None`` for a launch that was not recorded): what :meth:`run`
        repeats. A caller that keeps the arrays of those launches alive and unchanged may
        replay them without going through :meth:`launch` again, as long as :attr:`repacks`
        has not changed since, and only where those launches are all the block's work (work
        done outside them, as other kernels or host code, is not captured)."""
        self._capture = []
        try:
            yield self._capture
        finally:
            self._capture = None

    def run(self, *launches: list[Replay], batch: int | None = None) -> None:
        """Run launches' recorded calls (one per chunk of row segments), the chunks after the
        first on the host pool, each launch after the one before.

        Each launch waits for all chunks of the one before it, unless ``batch`` is given and
        each chunk of its split holds whole samples (:meth:`samples_apart`): a sample's
        stages read only that sample, so each chunk then runs its calls of every launch in
        order on one thread, and the launches wait only once, at the end (a wake-up of a
        host thread costs tens of microseconds on a virtual machine; a stage of 256
        1024-cell samples about 115 per thread)."""
        chained = batch is not None and len(launches) > 1 and self.samples_apart(batch)
        for group in [launches] if chained else [[calls] for calls in launches]:
            _run_chunks(group)

    def host_threads(self, batch: int) -> int:
        """Host threads the stages of a ``batch``-sample state run on (1 off the CPU)."""
        return len(self._split(batch)[1]) if self.on_cpu else 1

    def samples_apart(self, batch: int) -> bool:
        """Whether each chunk of row segments of a ``batch``-sample state (one per host
        thread) holds whole samples, so that its stage calls depend on no other chunk."""
        segment, chunks = self._split(batch)
        per_sample = self.shape[0] * self.shape[1] * -(-self.shape[2] // segment)
        return all(first % per_sample == 0 and count % per_sample == 0
                   for first, count in chunks)

    def _recorded(self, stage: tuple, inputs: list, outputs: list, segment: int,
                  chunks: list[tuple[int, int]], native: bool) -> list[Replay]:
        """The recorded launches (one per chunk of row segments) for these arguments: of
        :data:`stage_runs_kernel` (``native``) or :data:`stage_rows_kernel`.

        Packing the thirty arguments of a launch costs more than the kernel on small grids,
        so each stage keeps up to :data:`RECORDED_PER_STAGE` sets of recorded launches, with
        the arguments they were recorded for: a rollout's work arrays alternate between two
        sets (and start from a third), which then replay without re-packing anything.
        Arguments no set was recorded for re-pack the least recently used set where they
        differ (and are checked for overlap first: the native runs' restrict pointers)."""
        values = [*inputs, *outputs]
        recorded = self._launches.setdefault(stage, [])
        for position, (replays, last) in enumerate(recorded):
            if all(map(operator.is_, values, last)) or all(
                    a is b or _same_value(a, b) for a, b in zip(values, last)):
                if position:
                    recorded.insert(0, recorded.pop(position))
                return replays
        _require_disjoint(outputs, inputs[:5])
        if len(recorded) < RECORDED_PER_STAGE:
            replays = [
                Replay(launch(stage_runs_kernel if native else stage_rows_kernel, self.dtype,
                              dim=1 if native else count,
                              inputs=[*inputs, segment, first, *([count] if native else [])],
                              outputs=outputs, device=self.device, record_tape=False,
                              record_cmd=True))
                for first, count in chunks]
            recorded.insert(0, (replays, values))
            return replays
        replays, last = recorded.pop()
        self.repacks += 1
        between = 3 if native else 2  # segment, first (, count): between inputs and outputs
        for i, (new, old) in enumerate(zip(values, last)):
            if new is not old and not _same_value(new, old):
                index = i if i < len(inputs) else i + between
                for replay in replays:
                    replay.set(index, new)
        recorded.insert(0, (replays, values))
        return replays

    def _split(self, batch: int) -> tuple[int, list[tuple[int, int]]]:
        """Segment length and ``(first, count)`` ranges of row segments, one per host thread."""
        if batch not in self._splits:
            self._splits[batch] = self._segments(batch)
        return self._splits[batch]

    def _segments(self, batch: int) -> tuple[int, list[tuple[int, int]]]:
        cells = batch * self.size
        n2 = self.shape[2]
        lines = cells // n2
        if self.threads is None:
            weight = LIMITED_FLUX_WEIGHT if self.ghost > 1 else 1  # two ghost layers: MUSCL
            count = max(1, min(available_cores(), cells * weight // MIN_CELLS_PER_THREAD))
        else:
            count = int(self.threads)
        parts = max(1, -(-count // lines))  # split rows when there are fewer rows than threads
        segment = -(-n2 // parts)
        blocks = lines * (-(-n2 // segment))
        count = min(count, blocks)
        bounds = [blocks * j // count for j in range(count + 1)]
        return segment, [(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _run_chunks(launches: tuple[list[Replay], ...] | list[list[Replay]]) -> None:
    """Chunk j's calls of every launch in order, each chunk on its own host thread; returns
    when every chunk is done."""

    def chunk(j: int) -> None:
        for calls in launches:
            calls[j]()

    in_parallel(chunk, len(launches[0]))


def _require_disjoint(outputs: list[wp.array], inputs: list[wp.array]) -> None:
    """Refuse an output whose memory overlaps an input or the other output (arrays of one
    dtype)."""
    item = wp.types.type_size_in_bytes(outputs[0].dtype)
    written = [(a.ptr, a.ptr + a.size * item) for a in outputs if a.size]
    spans = written + [(a.ptr, a.ptr + a.size * item) for a in inputs if a.size]
    for i, (lo, hi) in enumerate(written):
        if any(other_lo < hi and lo < other_hi for other_lo, other_hi in spans[i + 1:]):
            raise ValueError("a fused stage's output overlaps one of its inputs")


def _same_value(a: Any, b: Any) -> bool:
    """Whether two kernel arguments that are not one object pack the same (arrays never)."""
    if isinstance(a, wp.array) or isinstance(b, wp.array):
        return False
    return type(a) is type(b) and a == b


def _ghost_table(grid: Grid, bc: BoundaryConditions, ghost: int) -> np.ndarray:
    """Rows (a, b) with ghost = a u_src + b (:mod:`physml.solvers.grid`), row
    ``1 + (2 axis + side) ghost + m - 1`` for ghost layer m of a side of kernel axis ``axis``;
    row 0 is the identity."""
    rows = np.zeros((1 + 6 * ghost, 2))
    rows[:, 0] = 1.0
    offset = 3 - grid.ndim
    for d in range(grid.ndim):
        for side, condition in enumerate(bc.sides[d]):
            for m in range(1, ghost + 1):
                row = 1 + (2 * (d + offset) + side) * ghost + (m - 1)
                if condition.kind == BCKind.DIRICHLET:
                    rows[row] = (-1.0, 2.0 * condition.value)
                elif condition.kind == BCKind.NEUMANN:
                    direction = -1.0 if side == 0 else 1.0
                    rows[row] = (1.0, direction * (2 * m - 1) * grid.dx[d] * condition.value)
    return rows


class StageWork:
    """Where the fused steps of :meth:`~physml.solvers.GridSolver.advance` put their arrays.

    Args:
        reuse: False (default): every request is a new array, so a ``wp.Tape`` can record the
            step. True: arrays are kept by name and handed out again (grown when a larger
            state asks), so a rollout allocates nothing after its first step; a step's output
            (``"out"``) is whichever of two arrays its input is not, so a step may read the
            previous step's output. A smaller state gets the same view of a kept array at
            every request (recorded launches that read it replay).
    """

    MAX_VIEWS = 64
    """Views of kept arrays remembered (beyond it they are forgotten and made anew)."""

    MAX_REPLAYS = 64
    """Recorded steps :attr:`replays` remembers (beyond it they are forgotten)."""

    def __init__(self, reuse: bool = False) -> None:
        self.reuse = reuse
        self._arrays: dict[str, wp.array] = {}
        self._views: dict[tuple[str, int], wp.array] = {}
        self.replays: dict[tuple[int, int], tuple] = {}
        """The recorded launches of the rollout steps run in these arrays, by the active
        samples and the input's address (:meth:`~physml.solvers.GridSolver._replayed_steps`
        keeps and checks them)."""

    def array(self, name: str, like: wp.array, requires_grad: bool) -> wp.array:
        """A flat array of ``like``'s size, dtype and device (uninitialised); for ``"out"``,
        kept arrays ``"out0"`` or ``"out1"``, not the one ``like`` lies in."""
        if not self.reuse or requires_grad:
            return wp.empty_like(like, requires_grad=requires_grad)
        if name == "out":
            name = "out1" if self._arrays.get("out0") is not None and (
                self._arrays["out0"].ptr == like.ptr) else "out0"
        kept = self._arrays.get(name)
        if kept is None or kept.size < like.size or (kept.device is not like.device
                                                     and kept.device != like.device):
            kept = wp.empty(like.size, dtype=like.dtype, device=like.device)
            self._arrays[name] = kept
        return self._sized(name, kept, like.size)

    def filled(self, name: str, values: np.ndarray, dtype: type, device: str) -> wp.array:
        """A kept flat array named ``name`` holding ``values`` (converted to ``dtype``); the
        same array object while the size stays (recorded launches that read it replay)."""
        device = wp.get_device(device)
        kept = self._arrays.get(name)
        if kept is None or kept.size < values.size or kept.dtype != dtype or (
                kept.device != device):
            kept = wp.empty(values.size, dtype=dtype, device=device)
            self._arrays[name] = kept
        view = self._sized(name, kept, values.size)
        view.assign(values.ravel())
        return view

    def _sized(self, name: str, kept: wp.array, size: int) -> wp.array:
        """The first ``size`` values of the kept array ``name``: itself, or one view per
        size."""
        if kept.size == size:
            return kept
        view = self._views.get((name, size))
        if view is None or view.ptr != kept.ptr:
            if len(self._views) >= self.MAX_VIEWS:
                self._views.clear()
            view = kept[:size]
            self._views[(name, size)] = view
        return view
