r"""The adjoint of the convection–diffusion–reaction operator in native loops (CPU).

A Runge–Kutta step's reverse pass needs, at each stage input $v$, the vector–Jacobian product
of the operator $F(v) = -\sum_d \partial_d f_d(v) + \nu\,\Delta v + \rho\, r(v)$ of
:mod:`physml.solvers.rk_stages` with the stage's cotangent $\bar k$:

$$\bar v = (\partial F/\partial v)^T \bar k,\quad
\bar\nu_i = \bar k_i (\Delta_h v)_i,\quad \bar\rho_i = \bar k_i\, r(v_i),\quad
\bar a_d = \sum_i \bar k_i\, \partial F_i/\partial a_d,$$

the last for a linear flux's velocity, per sample. Warp can generate this adjoint from the
per-cell stage kernel, but its CPU code runs one cell at a time through generic neighbour
lookups (about 130 ns per cell and stage for 1D Burgers); here each sample is copied once into
a padded block with its ghost cells ($a\,v_{src} + b$, :func:`~physml.solvers.rk_stages.
_ghost_table`), every axis is swept line by line in loops the compiler vectorises (the MUSCL
slopes and faces recomputed once per line, their adjoints gathered per cell), and the ghost
cells' adjoints are folded back into their sources ($\bar v_{src} \mathrel{+}= a\,\bar g$).

Kinks follow the per-cell kernel's generated adjoint: ``min``/``max`` give the derivative to the
operand they returned (the second on a tie), ``|x|`` has slope 1 at 0, and the limiters'
``a b > 0`` test and sign are constants. The two adjoints agree to rounding (tests).

Per-cell coefficients ($\nu$, $\rho$) come in expanded to one value per cell; their cotangents
go out per cell (the caller sums them to a parameter's shape), the velocity's per sample and
axis. A sample's work lies in its own thread's scratch, so samples run on host threads apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import warp as wp

from .kernel_launch import launch, specialize
from .replay import Replay
from .stage_native_source import GHOST_SOURCE
from .vector_width import wide_vector_options

wp.set_module_options({"fuse_fp": False} | wide_vector_options())

COLUMN_BLOCK = 8
"""Columns the sweep along the first of two axes takes side by side (so its loops vectorise
across them)."""

STAGE_VJP = """
using real = decltype(inv_dx.data[0] + inv_dx.data[0]);
const real zero = real(0), half = real(0.5), two = real(2), one = real(1);
const int n1 = shape[1], n2 = shape[2], n_cells = n1 * n2;
const bool has1 = n1 > 1;
const int g = ghost, g1 = has1 ? ghost : 0;
const int C = n2 + 2 * g, R = n1 + 2 * g1;
// a line buffer: cells -g - 2 .. n + g + 1 of a row, or of BLOCK columns side by side
constexpr int BLOCK = """ + str(COLUMN_BLOCK) + """;
const int row_span = n2 + 2 * g + 4, block_span = has1 ? (n1 + 2 * g + 4) * BLOCK : 0;
const int span = row_span > block_span ? row_span : block_span;
const real* __restrict__ gt = coef.data;
real* __restrict__ P = scratch.data + offset;
real* __restrict__ Q = P + R * C;
real* __restrict__ buf = Q + R * C;
// line buffers, each indexed from cell -g - 2 (entry 0)
real* __restrict__ lx = buf;                 // the line's values (axis 1: gathered)
real* __restrict__ lq = lx + span;           // their cotangents
real* __restrict__ kb = lq + span;           // kbar, zero outside the cells
real* __restrict__ ln = kb + span;           // nu per cell
real* __restrict__ lnb = ln + span;          // nu's cotangent per cell (this axis' part)
real* __restrict__ sl = lnb + span;          // limited slopes
real* __restrict__ sa = sl + span;           // s_bar * ds/da
real* __restrict__ sb = sa + span;           // s_bar * ds/db
real* __restrict__ ulb = sb + span;          // cotangent of each face's left state
real* __restrict__ urb = ulb + span;         // and right state
real* __restrict__ abp = urb + span;         // each face's part of the speed's cotangent
const int o = g + 2;                          // entry of cell 0
""" + GHOST_SOURCE + """
auto sgn = [&](real x) -> real { return x < zero ? -one : one; };  // as Warp's adjoint of abs
// slope s(a, b) and its partial derivatives (as operators.limited_slope and its Warp adjoint),
// for the limiter of the tag lim, without branches (selects): the loops over it vectorise
auto slope_of = [&](real a, real b, real& da, real& db, auto lim) -> real {
    if (lim() == 0) { da = half; db = half; return half * (a + b); }
    const bool on = a * b > zero;
    const real sign = a < zero ? -one : one;
    const real aa = wp::abs(a), bb = wp::abs(b);
    const bool left = aa < bb;  // min(aa, bb) is aa (Warp's min gives the second on a tie)
    if (lim() == 1) {
        da = on && left ? sign * sgn(a) : zero;
        db = on && !left ? sign * sgn(b) : zero;
        return on ? sign * (left ? aa : bb) : zero;
    }
    if (lim() == 2) {
        const real s = a + b;
        da = on ? two * b * b / (s * s) : zero;
        db = on ? two * a * a / (s * s) : zero;
        return on ? two * a * b / s : zero;
    }
    const real m = left ? two * aa : two * bb, h = half * (aa + bb);
    const bool by_m = m < h;
    da = on ? (by_m ? (left ? sign * two * sgn(a) : zero) : sign * half * sgn(a)) : zero;
    db = on ? (by_m ? (left ? zero : sign * two * sgn(b)) : sign * half * sgn(b)) : zero;
    return on ? sign * (by_m ? m : h) : zero;
};
// W lines of n cells side by side along an axis with spacing 1/inv and speed a, for the flux
// kind, limiter and width of the tags kind, lim and width: entry e of line w at index
// e W + w of each buffer (neighbours along the line W apart); lx holds cells -g .. n + g - 1
// (entries 2 .. n + 2g + 1), kb and ln the cells' kbar and nu (zero elsewhere). Adds the
// cotangents of the lines' values to lq, writes nu's (this axis' part) to lnb and returns the
// speed's. Every loop gathers (no loop writes an entry another iteration reads), so each
// vectorises: along a line for W = 1 (rows), across the lines otherwise (blocks of columns).
auto sweep = [&](int n, real inv, real a, auto kind, auto lim, auto width) -> real {
    constexpr int W = decltype(width){}();
    real a_bar = zero;
    const int used = (n + 2 * g + 4) * W;  // entries of the lines (up to span W)
    const int lo = o * W, hi = (o + n) * W;  // the cells
    for (int j = 0; j < used; ++j) { lq[j] = zero; lnb[j] = zero; sl[j] = zero; }
    if (kind() >= 2) {
        // slopes of cells -1 .. n (the faces 0 .. n read them), zero elsewhere
        for (int j = 0; j < used; ++j) { sa[j] = zero; sb[j] = zero; ulb[j] = zero; urb[j] = zero; }
        for (int j = lo - W; j < hi + W; ++j) {
            real da, db;
            sl[j] = slope_of(lx[j] - lx[j - W], lx[j + W] - lx[j], da, db, lim);
            sa[j] = da;
            sb[j] = db;
        }
        // faces 0 .. n (face j between cells j - 1 and j): flux cotangent inv (kb_j - kb_{j-1})
        for (int j = lo; j < hi + W; ++j) {
            const real ul = lx[j - W] + half * sl[j - W], ur = lx[j] - half * sl[j];
            const real f_bar = inv * (kb[j] - kb[j - W]);
            real dl, dr;
            if (kind() == 3) {
                const real al = wp::abs(ul), ar = wp::abs(ur);
                const bool by_left = al > ar;  // Warp's max gives the second on a tie
                const real alpha = by_left ? al : ar;
                const real jump = -half * (ur - ul);  // d flux / d alpha
                dl = half * ul + half * alpha + (by_left ? jump * sgn(ul) : zero);
                dr = half * ur - half * alpha + (by_left ? zero : jump * sgn(ur));
            } else {
                const real s = wp::abs(a);
                dl = half * a + half * s;
                dr = half * a - half * s;
                abp[j] = f_bar * (half * (ul + ur) - half * sgn(a) * (ur - ul));
            }
            ulb[j] = f_bar * dl;
            urb[j] = f_bar * dr;
        }
        if (kind() == 2)
            for (int j = lo; j < hi + W; ++j) a_bar += abp[j];
        // slope cotangents of cells -1 .. n, times their partials: s(j) feeds face j + 1's
        // left state (+ s / 2) and face j's right state (- s / 2)
        for (int j = lo - W; j < hi + W; ++j) {
            const real s_bar = half * ulb[j + W] - half * urb[j];
            sa[j] = s_bar * sa[j];
            sb[j] = s_bar * sb[j];
        }
        for (int j = lo - 2 * W; j < hi + 2 * W; ++j)
            lq[j] += ulb[j + W] + urb[j] + (sa[j] - sb[j]) + sb[j - W] - sa[j + W];
    } else if (kind() == 1) {
        const real w = a * (inv * half);
        for (int j = lo - W; j < hi + W; ++j) lq[j] += (kb[j + W] - kb[j - W]) * w;
        for (int j = lo; j < hi; ++j) a_bar -= kb[j] * ((lx[j + W] - lx[j - W]) * (inv * half));
    }
    if (with_diffusion) {
        const real w = inv * inv;
        real* __restrict__ d = sl;  // nu kbar / dx^2 per cell, zero elsewhere
        for (int j = 0; j < used; ++j) d[j] = zero;
        for (int j = lo; j < hi; ++j) {
            d[j] = ln[j] * kb[j] * w;
            lnb[j] = kb[j] * (((lx[j - W] - lx[j]) + (lx[j + W] - lx[j])) * w);
        }
        for (int j = lo - W; j < hi + W; ++j) lq[j] += (d[j - W] + d[j + W]) - two * d[j];
    }
    return a_bar;
};
struct Tag0 { constexpr int operator()() const { return 0; } };
struct Tag1 { constexpr int operator()() const { return 1; } };
struct Tag2 { constexpr int operator()() const { return 2; } };
struct Tag3 { constexpr int operator()() const { return 3; } };
struct One { constexpr int operator()() const { return 1; } };
struct Wide { constexpr int operator()() const { return BLOCK; } };
// sweep() for this operator's flux kind and limiter, as tags, on W = width() lines
auto sweep_lines = [&](int n, real inv, real a, auto width) -> real {
    if (flux_kind <= 1)
        return flux_kind == 0 ? sweep(n, inv, a, Tag0(), Tag0(), width)
                              : sweep(n, inv, a, Tag1(), Tag0(), width);
    auto with_limiter = [&](auto kind) -> real {
        if (limiter == 0) return sweep(n, inv, a, kind, Tag0(), width);
        if (limiter == 1) return sweep(n, inv, a, kind, Tag1(), width);
        if (limiter == 2) return sweep(n, inv, a, kind, Tag2(), width);
        return sweep(n, inv, a, kind, Tag3(), width);
    };
    return flux_kind == 2 ? with_limiter(Tag2()) : with_limiter(Tag3());
};
// visit(p, src, a, b) for each ghost cell read of the block (the ghost columns of every row,
// the ghost rows' cells below and above the rows): its entry p in the block and the cell src
// of the sample it mirrors, ghost = a v[src] + b
auto each_ghost = [&](auto visit) {
    for (int r = 0; r < n1; ++r)
        for (int c = -g; c < n2 + g; ++c) {
            if (c >= 0 && c < n2) continue;
            int src = 0;
            const int row = ghost_source(c, n2, 2, src);
            visit((r + g1) * C + c + g, r * n2 + src, gt[2 * row], gt[2 * row + 1]);
        }
    for (int r = -g1; r < n1 + g1; ++r) {
        if (r >= 0 && r < n1) continue;
        int src = 0;
        const int row = ghost_source(r, n1, 1, src);
        for (int c = 0; c < n2; ++c)
            visit((r + g1) * C + c + g, src * n2 + c, gt[2 * row], gt[2 * row + 1]);
    }
};
for (int b = first; b < first + count; ++b) {
    const real* __restrict__ x = v.data + b * n_cells;
    const real* __restrict__ kbar_b = kbar.data + b * n_cells;
    const real* __restrict__ nu_b = nu.data + b * n_cells;
    real* __restrict__ out = v_bar.data + b * n_cells;
    real* __restrict__ nub = nu_bar.data + b * n_cells;
    // the padded block: the cells, then every ghost cell from its source
    for (int r = 0; r < n1; ++r)
        for (int c = 0; c < n2; ++c) P[(r + g1) * C + c + g] = x[r * n2 + c];
    each_ghost([&](int p, int src, real a, real shift) { P[p] = a * x[src] + shift; });
    for (int i = 0; i < R * C; ++i) Q[i] = zero;
    for (int i = 0; i < n_cells; ++i) nub[i] = zero;
    real a1 = zero, a2 = zero;
    // axis 2: each row of the block is a line in place
    for (int r = 0; r < n1; ++r) {
        real* __restrict__ row_p = P + (r + g1) * C;
        real* __restrict__ row_q = Q + (r + g1) * C;
        for (int j = 0; j < C + 4; ++j) { kb[j] = zero; ln[j] = zero; lx[j] = zero; }
        for (int j = 0; j < C; ++j) lx[j + 2] = row_p[j];
        for (int j = 0; j < n2; ++j) {
            kb[o + j] = kbar_b[r * n2 + j];
            ln[o + j] = nu_b[r * n2 + j];
        }
        a2 += sweep_lines(n2, inv_dx.data[2], speeds.data[2 * b + 1], One());
        for (int j = 0; j < C; ++j) row_q[j] += lq[j + 2];
        for (int j = 0; j < n2; ++j) nub[r * n2 + j] += lnb[o + j];
    }
    // axis 1: blocks of BLOCK columns gathered side by side, then the columns left one by one
    auto columns = [&](int c0, auto width) {
        constexpr int W = decltype(width){}();
        for (int j = 0; j < (n1 + 2 * g + 4) * W; ++j) { kb[j] = zero; ln[j] = zero; lx[j] = zero; }
        for (int r = 0; r < R; ++r)
            for (int w = 0; w < W; ++w) lx[(r + 2) * W + w] = P[r * C + c0 + w + g];
        for (int r = 0; r < n1; ++r)
            for (int w = 0; w < W; ++w) {
                kb[(o + r) * W + w] = kbar_b[r * n2 + c0 + w];
                ln[(o + r) * W + w] = nu_b[r * n2 + c0 + w];
            }
        const real part = sweep_lines(n1, inv_dx.data[1], speeds.data[2 * b], width);
        for (int r = 0; r < R; ++r)
            for (int w = 0; w < W; ++w) Q[r * C + c0 + w + g] += lq[(r + 2) * W + w];
        for (int r = 0; r < n1; ++r)
            for (int w = 0; w < W; ++w) nub[r * n2 + c0 + w] += lnb[(o + r) * W + w];
        return part;
    };
    if (has1) {
        int c0 = 0;
        for (; c0 + BLOCK <= n2; c0 += BLOCK) a1 += columns(c0, Wide());
        for (; c0 < n2; ++c0) a1 += columns(c0, One());
    }
    speed_bar.data[2 * b] = a1;
    speed_bar.data[2 * b + 1] = a2;
    // the reaction, per cell
    const real* __restrict__ rho_b = rho.data + b * n_cells;
    real* __restrict__ rhob = rho_bar.data + b * n_cells;
    for (int r = 0; r < n1; ++r)
        for (int c = 0; c < n2; ++c) {
            const int i = r * n2 + c, p = (r + g1) * C + c + g;
            const real u0 = P[p], k = kbar_b[i];
            real value = zero, slope = zero;
            if (reaction_kind == 1) { value = u0 - u0 * u0 * u0; slope = one - real(3) * u0 * u0; }
            else if (reaction_kind == 2) { value = u0 * (one - u0); slope = one - two * u0; }
            rhob[i] = k * value;
            Q[p] += rho_b[i] * k * slope;
        }
    // the cells' cotangents, then each ghost cell's folded into its source
    for (int r = 0; r < n1; ++r)
        for (int c = 0; c < n2; ++c) out[r * n2 + c] = Q[(r + g1) * C + c + g];
    each_ghost([&](int p, int src, real a, real) { out[src] += a * Q[p]; });
}
"""


@wp.func_native(STAGE_VJP)
def stage_vjp_native(v: wp.array(dtype=Any), kbar: wp.array(dtype=Any),
                     nu: wp.array(dtype=Any), rho: wp.array(dtype=Any),
                     speeds: wp.array(dtype=Any), inv_dx: wp.array(dtype=Any),
                     coef: wp.array2d(dtype=Any), shape: wp.vec3i, kinds_lo: wp.vec3i,
                     kinds_hi: wp.vec3i, ghost: int, flux_kind: int, limiter: int,
                     reaction_kind: int, with_diffusion: int, first: int, count: int,
                     scratch: wp.array(dtype=Any), offset: int,
                     v_bar: wp.array(dtype=Any), nu_bar: wp.array(dtype=Any),
                     rho_bar: wp.array(dtype=Any), speed_bar: wp.array(dtype=Any)):
    """:data:`stage_vjp_kernel`'s body (:data:`STAGE_VJP`)."""
    ...


@wp.kernel(enable_backward=False)
def stage_vjp_kernel(v: wp.array(dtype=Any), kbar: wp.array(dtype=Any),
                     nu: wp.array(dtype=Any), rho: wp.array(dtype=Any),
                     speeds: wp.array(dtype=Any), inv_dx: wp.array(dtype=Any),
                     coef: wp.array2d(dtype=Any), shape: wp.vec3i, kinds_lo: wp.vec3i,
                     kinds_hi: wp.vec3i, ghost: int, flux_kind: int, limiter: int,
                     reaction_kind: int, with_diffusion: int, first: int, count: int,
                     scratch: wp.array(dtype=Any), offset: int,
                     v_bar: wp.array(dtype=Any), nu_bar: wp.array(dtype=Any),
                     rho_bar: wp.array(dtype=Any), speed_bar: wp.array(dtype=Any)):
    """Samples ``first .. first + count - 1`` of the operator's vector–Jacobian product, one
    thread (launch dim 1), its work in ``scratch`` from ``offset``."""
    stage_vjp_native(v, kbar, nu, rho, speeds, inv_dx, coef, shape, kinds_lo, kinds_hi,
                     ghost, flux_kind, limiter, reaction_kind, with_diffusion, first, count,
                     scratch, offset, v_bar, nu_bar, rho_bar, speed_bar)


for _T in (wp.float32, wp.float64):
    _arr = wp.array(dtype=_T)
    specialize(stage_vjp_kernel, _T,
               {**{name: _arr for name in ("v", "kbar", "nu", "rho", "speeds", "inv_dx",
                                           "scratch", "v_bar", "nu_bar", "rho_bar",
                                           "speed_bar")},
                "coef": wp.array2d(dtype=_T)})


def scratch_size(shape: tuple[int, int, int], ghost: int) -> int:
    """Values of scratch one thread needs for a sample of kernel ``shape`` (n0 = 1): the
    padded block and its cotangents, and eleven line buffers."""
    n1, n2 = shape[1], shape[2]
    g1 = ghost if n1 > 1 else 0
    span = max(n2 + 2 * ghost + 4, (n1 + 2 * ghost + 4) * COLUMN_BLOCK if n1 > 1 else 0)
    return 2 * (n1 + 2 * g1) * (n2 + 2 * ghost) + 11 * span


class StageVJP:
    """$(\bar v, \bar\nu, \bar\rho, \bar a)$ of the operator of ``stages`` (a
    :class:`~physml.solvers.rk_stages.FusedStages`, on the CPU) at each of the flat states
    ``inputs`` (``batch`` samples each: a step's stage inputs) for the cotangent of the same
    index in ``kbars``, the arrays read when called: ``nu``, ``rho`` one value per cell
    (``batch * N``), ``speeds`` the linear flux's speed per sample along kernel axes 1 and 2
    (``(batch * 2,)``).

    Calling it with an input's index runs the recorded launches (the samples split between as
    many host threads as the forward stages take) and returns host views of the output arrays,
    which the inputs share: ``batch * N`` values (the first three) and ``batch * 2``, valid
    until the next call."""

    def __init__(self, stages: Any, inputs: list[wp.array], kbars: list[wp.array],
                 nu: wp.array, rho: wp.array, speeds: wp.array, batch: int,
                 with_diffusion: bool = True) -> None:
        per_thread = scratch_size(tuple(stages.shape), stages.ghost)
        threads = min(stages.host_threads(batch), batch)
        bounds = [batch * j // threads for j in range(threads + 1)]
        device, dtype = stages.device, stages.dtype
        self._scratch = wp.empty(per_thread * threads, dtype=dtype, device=device)
        size = inputs[0].size
        self.outputs = [wp.empty(size, dtype=dtype, device=device) for _ in range(3)] + [
            wp.empty(2 * batch, dtype=dtype, device=device)]
        flux_kind, limiter, reaction_kind = stages.operator
        self._calls = [[
            Replay(launch(stage_vjp_kernel, dtype, dim=1,
                          inputs=[v, kbar, nu, rho, speeds, stages.inv_dx, stages.coef,
                                  stages.shape, stages.kinds_lo, stages.kinds_hi,
                                  stages.ghost, flux_kind, limiter, reaction_kind,
                                  int(with_diffusion), bounds[j], bounds[j + 1] - bounds[j],
                                  self._scratch, j * per_thread],
                          outputs=self.outputs, device=device, record_cmd=True))
            for j in range(threads)] for v, kbar in zip(inputs, kbars)]
        self._stages = stages
        self._views = [a.numpy() for a in self.outputs]

    def __call__(self, stage: int) -> list[np.ndarray]:
        self._stages.run(self._calls[stage])
        return self._views
