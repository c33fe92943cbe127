"""Native C++ source of the CPU row runs of the fused Runge–Kutta stages.

:data:`INTERIOR_RUN` is the body of :func:`~physml.solvers.stage_kernels.interior_runs`, the
loops :data:`~physml.solvers.stage_kernels.stage_runs_kernel` runs over row segments of the last
axis; :data:`GHOST_SOURCE`, its ghost-cell mapping, is shared with the adjoint's native loops
(:mod:`physml.solvers.stage_adjoint`).
"""

# Row segments, each tile by tile, as C++ loops over restrict-qualified raw pointers that the
# compiler's loop vectoriser takes (Warp compiles CPU modules with -march=native, and the row
# kernels' modules prefer 512-bit vectors: 8 doubles per instruction with AVX-512, 4 with AVX2;
# -O2, no fast-math). A tile at an end of the row reads a copy of its cells with the row's ghost
# cells in place; a neighbour row that is a ghost row is mapped into a buffer once per tile. What
# keeps a loop scalar is removed: the flux kind, limiter and present axes are template tags (no
# branch on them in a loop), the limiters are selects (both sides computed, one kept: no branch),
# the slopes and then the faces of the last axis are computed into tile buffers first (no value
# carried from one cell to the next; each cell's slope once, not once per face; along axis 1 a row
# takes its lower faces and its slopes from the row before it, so a cell computes one slope and
# one face there; along axis 0 three slopes for its two faces, not four), the Runge–Kutta
# combination is its own loop over the tile with only the earlier stages it uses, and every scalar
# a loop reads is a local copy (clang ignores restrict on local pointers, so a value read through
# a lambda's captures would be reloaded after every store, which keeps the loop scalar). The
# arithmetic is that of stage_functions' wp.funcs, operation for operation and in the same order
# (IEEE, no contraction on the CPU target; a select evaluates the same expression as the branch it
# replaces), so the per-cell kernel agrees bit for bit. The outputs must not overlap the inputs
# (rk_stages.FusedStages.launch checks it), which restrict promises.

GHOST_SOURCE = """
// index i in [-ghost, n + ghost) of kernel axis ``axis`` (n cells): its interior source cell
// (into src) and its ghost row (returned; 0: interior), as ghost_cells.ghost_source
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
