r"""Native C++ source of the learned factor network's CPU forward.

:data:`FORWARD` is the body of :func:`~physml.solvers.linalg.factor_network.network_forward`:
the whole encode–process–decode network of :mod:`~physml.solvers.linalg.factor_network` and the
factor, in one native call on the matrix's own rows. On the symmetrically scaled matrix
$\tilde A = D^{-1/2} A D^{-1/2}$ (its diagonal checked positive first), width H, K steps, the
weights read in the order of :meth:`~physml.solvers.linalg.factor_network.NetworkWeights.flat`:
the encoders ($h_i$ from $[\sum_j \tilde A_{ij}, \log(1 + \deg i)]$, $e_{ji}$ from
$[\tilde A_{ij}, |\tilde A_{ij}|, \pm 1]$), K steps of $e_{ji} \leftarrow e_{ji} +
W_o\,\sigma(W_e e_{ji} + c_e + W_t h_i + W_s h_j) + c_o$ and $h_i \leftarrow h_i +
\mathrm{MLP}_h([h_i, \sum_j e_{ji}])$, the decoders ($o_{ij}$, $o_i$), then the Cholesky factor
($L_{ij} = \sqrt{d_i}\,\tilde A_{ij}(1 + o_{ij})$, $L_{ii} = \sqrt{d_i}\,e^{o_i}$) or the sparse
inverse ($G_{ij} = \tilde A_{ij}\,o_{ij}/\sqrt{d_j}$, $G_{ii} = e^{o_i}/\sqrt{d_i}$) on the lower
pattern; $\sigma$ is the SiLU.

**Layout.** No graph is built: the edge $j \to i$ lives at the entry (i, j) of a
:class:`~physml.solvers.linalg.LowerPattern` — position k of L where $j < i$, position k of
$L^T$ where $j > i$, with the diagonal left out (position k − i, or k − i − 1 in $L^T$, whose
rows start with it) — so the edges' states are two feature-major arrays (H, nnz − n), each
feature's row padded to a multiple of 64 bytes, and $\sum_j e_{ji}$ is a sum over row i of both
(rows of up to 8 edges per side summed with a fixed trip count: rows of varying length cost
a mispredicted branch each). The work array (size
:meth:`~physml.solvers.linalg.factor_network.NetworkFactor.work_size`) holds, with N and E the
row and edge counts padded to multiples of 16: five node arrays (H N each: h, its next value,
the two ends' products, the incoming sums), the node features and outputs (2 N), the edges'
states (H E each side), the scaled entries of each side and the edge outputs (E each), and
each part's tile of the hidden layer (H :data:`TILE` each); the float64 work holds the scaled
entries, $\sqrt{d_i}$ and $1/\sqrt{d_i}$, the int work the entries' rows, the edges' ends and
the status. Every layer
is a loop over edges (or rows) inside a loop over features, tile by tile, which the compiler
vectorises: 16 floats per instruction where the CPU has AVX-512
(:mod:`~physml.solvers.vector_width`), else 8 (AVX2). Products are summed by explicit fused
multiply-adds (the native code is compiled without contraction, and a separate multiply and
add cost twice the instructions); the exponential of the SiLU is :data:`EXP` (Cody–Waite
reduction, a Taylor polynomial and the exponent set by integer arithmetic: no library call, so
the loop stays vector), within 1.05 units in the last place in float32 (the largest over 2.1e7
arguments in [-87, 88]) and 0.90 in float64 (5e6 arguments), against extended precision; its
argument is clamped to [-87, 88] in float32 and [-708, 709] in float64, so it neither
overflows nor vanishes (the SiLU of a larger argument is its limit all the same). The network
runs in its own precision (float32 as trained; float64 for checks), the scaling and the factor
in float64, as the PyTorch model.

**Parts.** The forward runs as one launch or as several at once on host threads (``parts``,
:class:`~physml.solvers.linalg.factor_network.NetworkFactor`'s ``threads``), in phases that
each need all of the last one's outputs: the diagonal's check (one chunk), the square roots
of the diagonal with the edges' ends, the scaled entries, the edges' values with the symmetry
flag, the encoders, each step's two halves (the ends' products; the edges, the incoming sums and the
node update), the decoders with the factor (``parts`` chunks of rows with their edges, split
near equal counts of L's entries), the factor's check (one chunk). A chunk is claimed by the
first launch to take it, part p trying chunk p first (its rows stay in its core's cache); every
one waits at the end of a phase for the chunks another holds. So
the factor is bit for bit the same on any number of parts, each entry being computed by the
same operations wherever it is, and a part that starts late (or after the others, as on a
pool's own thread) finds the chunks taken and passes through.
"""

EXP = """
// e^x for a float or a double, vectorisable: x = k ln 2 + r (k rounded to nearest by the
// 1.5 2^p addition, ln 2 in two parts), e^r by its Taylor polynomial in fused multiply-adds
// (|r| <= ln 2 / 2; degree 7 for a float, its 1 + r added last, and 13 for a double:
// remainders below 2^-27 and 2^-53), 2^k from k's bits moved into the exponent field.
auto fma_of = [](auto a, auto b, auto c) {  // a b + c, rounded once
    if constexpr (sizeof(a) == 4) return __builtin_fmaf(a, b, c);
    else return __builtin_fma(a, b, c);
};
auto exp_of = [](auto x) {
    using T = decltype(x);
    if constexpr (sizeof(T) == 4) {
        x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
        const float shifted = __builtin_fmaf(x, 1.44269504088896341f, 12582912.0f);
        const float k = shifted - 12582912.0f;
        const float r = __builtin_fmaf(k, 2.12194440e-4f, __builtin_fmaf(k, -0.693359375f, x));
        float p = 1.0f / 5040.0f;
        p = __builtin_fmaf(p, r, 1.0f / 720.0f);
        p = __builtin_fmaf(p, r, 1.0f / 120.0f);
        p = __builtin_fmaf(p, r, 1.0f / 24.0f);
        p = __builtin_fmaf(p, r, 1.0f / 6.0f);
        p = __builtin_fmaf(p, r, 0.5f);
        p = __builtin_fmaf(p, r * r, r);
        p = p + 1.0f;
        unsigned int bits;  // k's bits sit at the bottom of shifted's
        __builtin_memcpy(&bits, &shifted, 4);
        bits = (bits + 127u) << 23;
        float scale;
        __builtin_memcpy(&scale, &bits, 4);
        return p * scale;
    } else {
        x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
        const double shifted = __builtin_fma(x, 1.44269504088896340736, 6755399441055744.0);
        const double k = shifted - 6755399441055744.0;
        const double r = __builtin_fma(k, -1.90821492927058770002e-10,
                                       __builtin_fma(k, -6.93147180369123816490e-01, x));
        double p = 1.0 / 6227020800.0;
        const double inverse_factorial[13] = {
            1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
            1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0,
            0.5, 1.0, 1.0};
        for (int m = 0; m < 13; ++m) p = __builtin_fma(p, r, inverse_factorial[m]);
        unsigned long long bits;
        __builtin_memcpy(&bits, &shifted, 8);
        bits = (bits + 1023ull) << 52;
        double scale;
        __builtin_memcpy(&scale, &bits, 8);
        return p * scale;
    }
};
"""

TILE = 512
"""Entries (or rows) a layer processes at a time: its features stay in the first-level cache."""

SMALLEST_SCALED_DIAGONAL = {"float32": 2.0**-11.5, "float64": 2.0**-26}
r"""Per factor precision, $\sqrt{\epsilon}$: the scaled factor's diagonal ($\tilde L_{ii} =
e^{o_i}$, or $\tilde G_{ii}$) must exceed it, else the pivot $\tilde L_{ii}^2$ of M (or of
$M^{-1}$) against $\tilde A$'s unit diagonal is below the precision's $\epsilon$: M is singular
in that precision, and its triangular solves overflow. :data:`FORWARD` checks its factor
against it, and so does the PyTorch path (``physml.preconditioners``)."""

# CPU only: Clang's builtins and loop pragmas, which NVRTC lacks, so the body is empty on CUDA
# (Warp compiles the whole module for each device it is loaded on; NetworkFactor launches it
# on the CPU alone)
FORWARD = "#if !defined(__CUDA_ARCH__)\n" + EXP + """
// the arrays a gather reads are never written in its loop (the compiler cannot tell: they are
// parts of one work array)
#define GATHER _Pragma("clang loop vectorize(assume_safety)")
using real = decltype(weights.data[0] + weights.data[0]);  // the network's precision
using out_t = decltype(factor.data[0] + factor.data[0]);
const int H = width, K = steps, n = rows, m = entries;
const real one = real(1), zero = real(0);
const int* __restrict__ lo_ptr = offsets.data;
const int* __restrict__ lo_col = columns.data;
const int* __restrict__ up_ptr = upper_offsets.data;
const int* __restrict__ up_col = upper_columns.data;
const int* __restrict__ up_from = transpose_index.data;
const double* __restrict__ a = values.data;
const int* __restrict__ a_ptr = matrix_offsets.data;
const int* __restrict__ a_col = matrix_columns.data;
const out_t* __restrict__ a_full = matrix_values.data;
out_t* __restrict__ f = factor.data;
const int* __restrict__ diagonal_at = diagonal.data;
const int e = m - n;  // edges on each side: the strictly lower (upper) entries
// strides of the feature-major arrays, whole multiples of 16 values (64 bytes or twice that):
// every feature's row starts on a cache line (Warp's host arrays are 64-byte aligned)
const int N = (n + 15) / 16 * 16, E = (e + 15) / 16 * 16;
// float64 work: the scaled entries (m), sqrt(d_i) and 1 / sqrt(d_i) (n each); int work: the
// rows of L's entries (m + 8), the target rows of the lower and of the upper edges (e + 8 each:
// the 8 spare entries take the last row's 8-wide fill), their source rows (e each), then the
// status, three entries (see NetworkFactor.values). Edge c of the lower side is L's entry
// c + i of row i (the diagonal ends each of the rows before); edge c of the upper side is L^T's
// entry c + i + 1 (the diagonal starts each row of L^T), so row i's edges are
// ptr[i] - i ... ptr[i + 1] - i - 1 on both sides. The status: 1 + the first row whose
// diagonal entry is not positive, 1 + the first whose factor is out of range (or 0 each),
// and 1 where A may not be symmetric.
double* __restrict__ scaled = exact_work.data;
double* __restrict__ root = scaled + m;
double* __restrict__ inv = root + n;
int* __restrict__ lo_row = index_work.data;
int* __restrict__ lo_target = lo_row + m + 8;
int* __restrict__ up_target = lo_target + e + 8;
int* __restrict__ lo_source = up_target + e + 8;
int* __restrict__ up_source = lo_source + e;
int* __restrict__ status = up_source + e;
// work (see NetworkFactor.work_size): nodes (H N each): h, h_next, ends_t, ends_s, incoming;
// features / node outputs (2 N); edges (H E each): e_lo, e_up; (E each): s_lo, s_up, o_edge;
// each part's tile of the hidden layer (H TILE). Every layer runs tile by tile (TILE edges or
// rows), so the passes over features stay in the first-level cache.
constexpr int TILE = TILE_ENTRIES;
real* __restrict__ h = work.data;
real* __restrict__ h_next = h + H * N;
real* __restrict__ ends_t = h_next + H * N;
real* __restrict__ ends_s = ends_t + H * N;
real* __restrict__ incoming = ends_s + H * N;
real* __restrict__ features = incoming + H * N;
real* __restrict__ e_lo = features + 2 * N;
real* __restrict__ e_up = e_lo + H * E;
real* __restrict__ s_lo = e_up + H * E;
real* __restrict__ s_up = s_lo + E;
real* __restrict__ o_edge = s_up + E;
real* __restrict__ hidden = o_edge + E + part * H * TILE;  // this part's tile

// y[o] = W[o] . x + c[o] (or y[o] += ..., with ``add``), over columns 0..len of the
// feature-major x (in rows, x_stride apart) into y (out rows, y_stride apart); W (out, in).
// Each y[o][k] is c (or y + c) and then one fused multiply-add per input in the inputs'
// order, on either path: a 4 x 4 layer (width 4, the benchmarks' network) keeps its four
// outputs in registers (the edge layers 12-19 % faster at 6.0e3 unknowns, the forward 12 %),
// any other shape goes output row by output row
auto dense = [&](const real* x, int in, int x_stride, int len, const real* wt,
                 const real* bias, int out, real* y, int y_stride, bool add) {
    if (in == 4 && out == 4) {  // the four outputs in registers: x read once, y written once
        const real* __restrict__ x0 = x;
        const real* __restrict__ x1 = x + x_stride;
        const real* __restrict__ x2 = x + 2 * x_stride;
        const real* __restrict__ x3 = x + 3 * x_stride;
        real* __restrict__ y0 = y;
        real* __restrict__ y1 = y + y_stride;
        real* __restrict__ y2 = y + 2 * y_stride;
        real* __restrict__ y3 = y + 3 * y_stride;
        real w[16], c[4];
        for (int j = 0; j < 16; ++j) w[j] = wt[j];
        for (int j = 0; j < 4; ++j) c[j] = bias ? bias[j] : zero;
        const bool with_bias = bias != nullptr;
        auto first = [&](real* __restrict__ yo, int k, real cj) {
            return add ? (with_bias ? yo[k] + cj : yo[k]) : cj;
        };
        for (int k = 0; k < len; ++k) {
            const real a0 = x0[k], a1 = x1[k], a2 = x2[k], a3 = x3[k];
            real s0 = first(y0, k, c[0]), s1 = first(y1, k, c[1]);
            real s2 = first(y2, k, c[2]), s3 = first(y3, k, c[3]);
            s0 = fma_of(w[3], a3, fma_of(w[2], a2, fma_of(w[1], a1, fma_of(w[0], a0, s0))));
            s1 = fma_of(w[7], a3, fma_of(w[6], a2, fma_of(w[5], a1, fma_of(w[4], a0, s1))));
            s2 = fma_of(w[11], a3, fma_of(w[10], a2, fma_of(w[9], a1, fma_of(w[8], a0, s2))));
            s3 = fma_of(w[15], a3, fma_of(w[14], a2, fma_of(w[13], a1, fma_of(w[12], a0, s3))));
            y0[k] = s0; y1[k] = s1; y2[k] = s2; y3[k] = s3;
        }
        return;
    }
    for (int o = 0; o < out; ++o) {
        real* __restrict__ yo = y + o * y_stride;
        const real c = bias ? bias[o] : zero;
        if (!add) for (int k = 0; k < len; ++k) yo[k] = c;
        else if (bias) for (int k = 0; k < len; ++k) yo[k] = yo[k] + c;
        for (int q = 0; q < in; ++q) {
            const real wq = wt[o * in + q];
            const real* __restrict__ xq = x + q * x_stride;
            for (int k = 0; k < len; ++k) yo[k] = fma_of(wq, xq[k], yo[k]);
        }
    }
};
// the SiLU of a tile's hidden layer (H rows of len)
auto silu = [&](int len) {
    for (int o = 0; o < H; ++o) {
        real* __restrict__ yo = hidden + o * TILE;
        for (int k = 0; k < len; ++k) yo[k] = yo[k] / (one + exp_of(-yo[k]));
    }
};
// body(first, count) for the tiles of begin..end
auto tiles = [&](int begin, int end, auto body) {
    for (int k0 = begin; k0 < end; k0 += TILE) body(k0, end - k0 < TILE ? end - k0 : TILE);
};
// a two-layer perceptron (in -> H -> out), its weights taken from ``at`` (advanced past them)
struct Perceptron { const real* w1; const real* c1; const real* w2; const real* c2; int in, out; };
const real* at = weights.data;
auto take = [&](int in, int out) {
    const Perceptron p{at, at + H * in, at + H * in + H, at + H * in + H + out * H, in, out};
    at = p.c2 + out;
    return p;
};
// y (out, begin..end) = p(x (in, begin..end))
auto apply = [&](const Perceptron& p, const real* x, int x_stride, int begin, int end, real* y,
                 int y_stride) {
    tiles(begin, end, [&](int k0, int count) {
        dense(x + k0, p.in, x_stride, count, p.w1, p.c1, H, hidden, TILE, false);
        silu(count);
        dense(hidden, H, TILE, count, p.w2, p.c2, p.out, y + k0, y_stride, false);
    });
};
// The forward in phases, each needing all of the last one's outputs: a phase is ``count``
// chunks (1, or one per part), each claimed by the first of the ``parts`` launches to take its
// flag, part p trying chunk p first (so that a part keeps its rows, and their values in its
// core's cache, from phase to phase) and then the others; every launch waits until all the
// phase's chunks are done before the next (spinning, then yielding its core with the host's
// sched_yield where its address was given). A part launched late, or after the others, finds
// the chunks taken and passes through, so the result does not depend on how many parts ran
// at once, nor on which ran what. Chunk c of a row phase is the rows first_row(c) ..
// first_row(c + 1), split near equal counts of L's entries at multiples of 16 rows, with
// their edges on both sides.
int* counters = claims.data;  // per phase: parts claim flags, then the count of chunks done
using yield_result = int;  // (Warp's headers define int(x) as a cast)
using yield_function = yield_result (*)();
const yield_function yield_core = reinterpret_cast<yield_function>(yield_address);
auto phase = [&](int count, auto body) {
    int* flags = counters;
    counters += parts + 1;
    for (int j = 0; j < count; ++j) {
        const int c = (part + j) % count;
        if (__atomic_exchange_n(flags + c, 1, __ATOMIC_ACQ_REL) == 0) {
            body(c);
            __atomic_fetch_add(flags + parts, 1, __ATOMIC_RELEASE);
        }
    }
    for (int spins = 0; __atomic_load_n(flags + parts, __ATOMIC_ACQUIRE) < count; ++spins) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (spins >= 256 && yield_core) yield_core();
    }
};
auto first_row = [&](int c) {
    if (c <= 0) return 0;
    if (c >= parts) return n;
    const long long goal = (long long)m * c / parts;
    int low = 0, high = n;  // the first row whose entries start at or past the goal
    while (low < high) {
        const int middle = low + (high - low) / 2;
        if (lo_ptr[middle] < goal) low = middle + 1;
        else high = middle;
    }
    low = (low + 15) / 16 * 16;
    return low < n ? low : n;
};

// one chunk: the diagonal (it ends each row of L), a row whose entry is not positive stops
// the pass (checked first, in a loop of its own: a loop that may stop does not vectorise)
phase(1, [&](int) {
    status[0] = 0;
    status[1] = 0;
    status[2] = 0;
    bool positive = true;
    for (int i = 0; i < n; ++i) positive &= a[diagonal_at[i]] > 0.0;
    if (!positive) {
        for (int i = 0; i < n; ++i)
            if (!(a[diagonal_at[i]] > 0.0)) {
                status[0] = i + 1;
                return;  // from the chunk; every part returns after it
            }
    }
});
if (status[0]) return;
// sqrt(d_i) and its inverse; the rows of L's entries and the edges' ends (a row of up to 8
// takes one 8-wide store, whose tail the next rows overwrite, where that tail stays in the
// chunk's entries or, for the last rows, in the 8 spare entries each of these arrays keeps)
phase(parts, [&](int chunk) {
    const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
    GATHER for (int i = r0; i < r1; ++i) {
        root[i] = wp::sqrt(a[diagonal_at[i]]);
        inv[i] = 1.0 / root[i];
    }
    const int last = chunk == parts - 1 ? 8 : 0;  // room past the chunk's entries
    auto fill = [](int* __restrict__ out, int begin, int end, int limit, int value) {
        if (end - begin <= 8 && begin + 8 <= limit)
            for (int j = 0; j < 8; ++j) out[begin + j] = value;
        else for (int k = begin; k < end; ++k) out[k] = value;
    };
    for (int i = r0; i < r1; ++i) {
        fill(lo_row, lo_ptr[i], lo_ptr[i + 1], lo_ptr[r1] + last, i);
        fill(lo_target, lo_ptr[i] - i, lo_ptr[i + 1] - i - 1, lo_ptr[r1] - r1 + last, i);
        fill(up_target, up_ptr[i] - i, up_ptr[i + 1] - i - 1, up_ptr[r1] - r1 + last, i);
    }
});
// the edges' other ends, the scaled entries and the edges' values; with the upper edges'
// values, A's symmetry, status[2] a flag the caller confirms on the whole matrix (an explicit
// zero stored on one side only is symmetric): where row i of A (CSR, columns sorted) is L's
// row, then L^T's past the diagonal (A starts row i at lo_ptr[i] + up_ptr[i] - i), A_ij of
// the upper edge c (j > i) is A's entry lo_ptr[i + 1] + c (else entry 0 is read, and the
// flag is set already: a chunk checks the starts of its rows and of the next); a row stored
// otherwise (another length or column), or |A_ij - A_ji| not at most 1e-12 |A_ji| (NaN
// included), sets it
phase(parts, [&](int chunk) {
    const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
    const int c0 = lo_ptr[r0] - r0, c1 = lo_ptr[r1] - r1, u0 = up_ptr[r0] - r0;
    const int u1 = up_ptr[r1] - r1;
    GATHER for (int c = c0; c < c1; ++c) lo_source[c] = lo_col[c + lo_target[c]];
    GATHER for (int c = u0; c < u1; ++c) up_source[c] = up_col[c + up_target[c] + 1];
    GATHER for (int k = lo_ptr[r0]; k < lo_ptr[r1]; ++k)
        scaled[k] = a[k] * inv[lo_row[k]] * inv[lo_col[k]];
});
phase(parts, [&](int chunk) {
    const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
    const int c0 = lo_ptr[r0] - r0, c1 = lo_ptr[r1] - r1, u0 = up_ptr[r0] - r0;
    const int u1 = up_ptr[r1] - r1;
    GATHER for (int c = c0; c < c1; ++c) s_lo[c] = real(scaled[c + lo_target[c]]);
    int unsymmetric = 0;
    for (int i = r0; i <= r1; ++i) unsymmetric |= a_ptr[i] != lo_ptr[i] + up_ptr[i] - i;
    const int mirrored = !unsymmetric;
    GATHER for (int c = u0; c < u1; ++c) {
        const int i = up_target[c], k = up_from[c + i + 1], at = mirrored * (lo_ptr[i + 1] + c);
        s_up[c] = real(scaled[k]);
        unsymmetric |= (a_col[at] != up_source[c]) |
                       !(wp::abs(double(a_full[at]) - a[k]) <= 1e-12 * wp::abs(a[k]));
    }
    if (unsymmetric) __atomic_fetch_or(&status[2], 1, __ATOMIC_RELAXED);
});

// encoders: nodes from (row sum, log(1 + degree)); edges from (a, |a|, +1 or -1)
double log_degree[64];  // log(1 + d) for the degrees meshes have
for (int d = 0; d < 64; ++d) log_degree[d] = wp::log(1.0 + double(d));
const Perceptron node_encoder = take(2, H);
const Perceptron edge_encoder = take(3, H);
phase(parts, [&](int chunk) {
    const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
    for (int i = r0; i < r1; ++i) {
        double sum = 0.0;
        for (int k = lo_ptr[i]; k < lo_ptr[i + 1]; ++k) sum += scaled[k];
        for (int k = up_ptr[i] + 1; k < up_ptr[i + 1]; ++k) sum += scaled[up_from[k]];
        const int degree = (lo_ptr[i + 1] - lo_ptr[i]) + (up_ptr[i + 1] - up_ptr[i]) - 2;
        features[i] = real(sum);
        features[N + i] = real(degree < 64 ? log_degree[degree] : wp::log(1.0 + double(degree)));
    }
    apply(node_encoder, features, N, r0, r1, h, N);
    const real* w1 = edge_encoder.w1;
    const real* c1 = edge_encoder.c1;
    for (int side = 0; side < 2; ++side) {
        const real* __restrict__ s = side == 0 ? s_lo : s_up;
        const real sign = side == 0 ? one : -one;
        const int* ptr = side == 0 ? lo_ptr : up_ptr;
        tiles(ptr[r0] - r0, ptr[r1] - r1, [&](int k0, int count) {
            for (int o = 0; o < H; ++o) {
                real* __restrict__ yo = hidden + o * TILE;
                const real* __restrict__ so = s + k0;
                const real p = w1[3 * o], q = w1[3 * o + 1], r = w1[3 * o + 2] * sign + c1[o];
                for (int k = 0; k < count; ++k)
                    yo[k] = fma_of(p, so[k], fma_of(q, wp::abs(so[k]), r));
            }
            silu(count);
            dense(hidden, H, TILE, count, edge_encoder.w2, edge_encoder.c2, H,
                  (side == 0 ? e_lo : e_up) + k0, E, false);
        });
    }
});

for (int step = 0; step < K; ++step) {
    const real* w_in = at;
    const real* c_in = w_in + H * H;
    const real* w_t = c_in + H;
    const real* w_s = w_t + H * H;
    const real* w_out = w_s + H * H;
    const real* c_out = w_out + H * H;
    at = c_out + H;
    const real* w1 = at;
    const real* c1 = w1 + 2 * H * H;
    const real* w2 = c1 + H;
    const real* c2 = w2 + H * H;
    at = c2 + H;
    phase(parts, [&](int chunk) {
        const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
        dense(h + r0, H, N, r1 - r0, w_t, nullptr, H, ends_t + r0, N, false);
        dense(h + r0, H, N, r1 - r0, w_s, nullptr, H, ends_s + r0, N, false);
    });
    phase(parts, [&](int chunk) {
        const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
        // edges: e += W_out silu(W_in e + c_in + (W_t h)[target] + (W_s h)[source]) + c_out
        for (int side = 0; side < 2; ++side) {
            real* edges = side == 0 ? e_lo : e_up;
            const int* __restrict__ target = side == 0 ? lo_target : up_target;
            const int* __restrict__ source = side == 0 ? lo_source : up_source;
            const int* ptr = side == 0 ? lo_ptr : up_ptr;
            tiles(ptr[r0] - r0, ptr[r1] - r1, [&](int k0, int count) {
                dense(edges + k0, H, E, count, w_in, c_in, H, hidden, TILE, false);
                for (int o = 0; o < H; ++o) {
                    real* __restrict__ yo = hidden + o * TILE;
                    const real* __restrict__ t = ends_t + o * N;
                    const real* __restrict__ u = ends_s + o * N;
                    const int* __restrict__ to = target + k0;
                    const int* __restrict__ from = source + k0;
                    GATHER for (int k = 0; k < count; ++k)
                        yo[k] = (yo[k] + t[to[k]]) + u[from[k]];
                }
                silu(count);
                dense(hidden, H, TILE, count, w_out, c_out, H, edges + k0, E, true);
            });
        }
        // nodes: h += MLP([h, sum of the row's edges]), the (H, 2H) first layer in two halves
        // (the features inside the row: a row's lengths repeat H times, which the branch
        // predictor learns; a row of up to 8 edges a side is summed over 8 entries, masked,
        // where those lie in this chunk's edges, which no other part writes now)
        const int lo_last = lo_ptr[r1] - r1, up_last = up_ptr[r1] - r1;
        for (int i = r0; i < r1; ++i) {
            const int lo_begin = lo_ptr[i] - i, lo_end = lo_ptr[i + 1] - i - 1;
            const int up_begin = up_ptr[i] - i, up_end = up_ptr[i + 1] - i - 1;
            const int lo_count = lo_end - lo_begin, up_count = up_end - up_begin;
            if (lo_count <= 8 && up_count <= 8 && lo_begin + 8 <= lo_last
                    && up_begin + 8 <= up_last) {
                for (int o = 0; o < H; ++o) {
                    const real* __restrict__ lo = e_lo + o * E + lo_begin;
                    const real* __restrict__ up = e_up + o * E + up_begin;
                    real total = zero;
                    for (int j = 0; j < 8; ++j) total += j < lo_count ? lo[j] : zero;
                    for (int j = 0; j < 8; ++j) total += j < up_count ? up[j] : zero;
                    incoming[o * N + i] = total;
                }
                continue;
            }
            for (int o = 0; o < H; ++o) {
                const real* __restrict__ lo = e_lo + o * E;
                const real* __restrict__ up = e_up + o * E;
                real total = zero;
                for (int c = lo_begin; c < lo_end; ++c) total += lo[c];
                for (int c = up_begin; c < up_end; ++c) total += up[c];
                incoming[o * N + i] = total;
            }
        }
        tiles(r0, r1, [&](int k0, int count) {
            for (int o = 0; o < H; ++o) {
                real* __restrict__ yo = hidden + o * TILE;
                const real c = c1[o];
                for (int i = 0; i < count; ++i) yo[i] = c;
                for (int q = 0; q < 2 * H; ++q) {
                    const real wq = w1[o * 2 * H + q];
                    const real* __restrict__ xq = (q < H ? h + q * N : incoming + (q - H) * N)
                                                  + k0;
                    for (int i = 0; i < count; ++i) yo[i] = fma_of(wq, xq[i], yo[i]);
                }
            }
            silu(count);
            dense(hidden, H, TILE, count, w2, c2, H, ends_t + k0, N, false);
        });
        const int r_end = chunk == parts - 1 ? N : r1;  // the last chunk the padding too
        for (int o = 0; o < H; ++o)
            for (int k = o * N + r0; k < o * N + r_end; ++k) h_next[k] = h[k] + ends_t[k];
    });
    real* swap = h;
    h = h_next;
    h_next = swap;
}

// decoders: o_ij on L's strictly lower entries, o_i on the nodes; then the factor: the
// strictly lower entries and the diagonal
const Perceptron edge_decoder = take(H, 1);
const Perceptron node_decoder = take(H, 1);
phase(parts, [&](int chunk) {
    const int r0 = first_row(chunk), r1 = first_row(chunk + 1);
    const int c0 = lo_ptr[r0] - r0, c1 = lo_ptr[r1] - r1;
    apply(edge_decoder, e_lo, E, c0, c1, o_edge, E);
    apply(node_decoder, h, N, r0, r1, features, N);
    if (cholesky) {
        GATHER for (int c = c0; c < c1; ++c) {
            const int k = c + lo_target[c];
            f[k] = out_t(scaled[k] * (1.0 + double(o_edge[c])) * root[lo_target[c]]);
        }
        GATHER for (int i = r0; i < r1; ++i)
            f[diagonal_at[i]] = out_t(exp_of(double(features[i])) * root[i]);
    } else {
        GATHER for (int c = c0; c < c1; ++c) {
            const int k = c + lo_target[c];
            f[k] = out_t(scaled[k] * double(o_edge[c]) / root[lo_source[c]]);
        }
        GATHER for (int i = r0; i < r1; ++i)
            f[diagonal_at[i]] = out_t(exp_of(double(features[i])) / root[i]);
    }
});
// the factor's check: the exponential of the diagonal output overflows, or vanishes, in the
// factor's precision on a matrix far from the training data; status[1] = 1 + the first row
// with a non-finite entry or a scaled diagonal entry (L_ii / sqrt(d_i), G_ii sqrt(d_i)) not
// above sqrt(eps) of the factor's precision, where the pivot of M (or of M^-1) against the
// scaled matrix's unit diagonal falls below eps (x - x is 0 for a finite x, NaN for inf and
// NaN; the flags are integers, so both passes vectorise)
phase(1, [&](int) {
    const double tiny = sizeof(out_t) == 4 ? SMALLEST_FLOAT32 : SMALLEST_FLOAT64;
    const double* __restrict__ unscale = cholesky ? inv : root;
    int bad = 0;
    for (int k = 0; k < m; ++k) bad |= !(f[k] - f[k] == out_t(0));
    GATHER for (int i = 0; i < n; ++i) bad |= !(double(f[diagonal_at[i]]) * unscale[i] > tiny);
    if (bad) {
        for (int i = 0; i < n && !status[1]; ++i) {
            bool good = double(f[diagonal_at[i]]) * unscale[i] > tiny;
            for (int k = lo_ptr[i]; k < lo_ptr[i + 1]; ++k) good = good && f[k] - f[k] == out_t(0);
            if (!good) status[1] = i + 1;
        }
    }
});
""".replace("TILE_ENTRIES", str(TILE)).replace(
    "SMALLEST_FLOAT32", repr(SMALLEST_SCALED_DIAGONAL["float32"])).replace(
    "SMALLEST_FLOAT64", repr(SMALLEST_SCALED_DIAGONAL["float64"])) + "#endif\n"
