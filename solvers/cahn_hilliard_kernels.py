r"""Warp kernels of the thermomigration Cahn–Hilliard right-hand side (dimensionless units).

**Layout.** Cell fields are 3D arrays ``(n0, n1, n2)`` whose leading axes have one cell in 1D and
2D, so the last axis is always the grid's last (contiguous) axis. Face fields are 4D arrays
``(3, n0, n1, n2)``: entry ``[a, i, j, k]`` belongs to the face between cell ``(i, j, k)`` and
its upper neighbour along axis ``a``.

**Launch geometry.** Each thread updates ``row`` consecutive cells of the last axis: one cell on
CUDA (one thread per cell), a whole row on the CPU, where Warp runs threads one after another.
A row thread hands the cells whose neighbours sit at fixed offsets to one run
(:func:`laplacian_run`, :func:`flux_run`, :func:`divergence_run`), and each end cell whose
neighbour (or face) wraps or mirrors to a run of one cell. The runs are native C++ over
contiguous memory, the same source on CPU and CUDA (where a run has at most one cell). On the
CPU the compiler vectorises a row's run, which Warp's generated array indexing prevents (the
flux pass at 256^2 went from 0.66 to 0.14 ms). On the CPU,
large grids' rows are further split between host threads, one launch each, which run on
separate cores. :class:`RowLaunch` picks the geometry.

The right-hand side $R = -\nabla_h\cdot\tilde J$ takes three passes:

1. :data:`laplacian_kernel`: $\Delta_h c$;
2. :data:`face_flux_kernel`: every face flux once, from face coefficients that depend on the
   temperature only (:data:`face_coefficients_kernel`, rerun when $T$ changes);
3. :data:`divergence_kernel`: $s\,R$ for a scale $s$ (1, or $\Delta t$ for the Euler increment).

``q`` = [kappa, Q*, 1/dx0, 1/dx1, 1/dx2] holds the scaled constants of every kernel (1/dx = 0
on the padding axes).
"""

from __future__ import annotations

from typing import Any

import warp as wp

from .errors import whole_number
from .free_energy import FreeEnergyKind
from .host_threads import available_cores, in_parallel
from .kernel_launch import launch, specialize

# No adjoints: the thermomigration solver is not differentiated through.
wp.set_module_options({"enable_backward": False})

DOUBLE_WELL = wp.constant(int(FreeEnergyKind.DOUBLE_WELL))


@wp.func
def neighbour(i: int, n: int, is_periodic: int, step: int):
    """Index of the neighbour ``i + step`` (step = +-1): wrapped if periodic, else clamped."""
    j = i + step
    if j < 0:
        j = n - 1 if is_periodic != 0 else 0
    if j >= n:
        j = 0 if is_periodic != 0 else n - 1
    return j


@wp.func
def row_cells(block: int, row: int, shape: wp.vec3i):
    """Row ``(i, j)`` of thread ``block`` and the range ``[k_first, k_end)`` of its cells."""
    per_row = shape[2] // row
    line = block // per_row
    k_first = (block - line * per_row) * row
    return line // shape[1], line % shape[1], k_first, k_first + row


@wp.func
def upper_row(axis: int, i: int, j: int, shape: wp.vec3i, periodic_axes: wp.vec3i):
    """``(i', j', dk)``: the upper neighbour along ``axis`` of cell ``(i, j, k)`` is
    ``(i', j', k + dk)`` (away from the end of the last axis)."""
    if axis == 0:
        return neighbour(i, shape[0], periodic_axes[0], 1), j, 0
    if axis == 1:
        return i, neighbour(j, shape[1], periodic_axes[1], 1), 0
    return i, j, 1


@wp.func
def upper_end(axis: int, last: int, shape: wp.vec3i, periodic_axes: wp.vec3i):
    """Last-axis index of the upper neighbour along ``axis`` of a row's last cell ``last``."""
    if axis == 2:
        return neighbour(last, shape[2], periodic_axes[2], 1)
    return last


@wp.func
def mobility_temperature_factor(kind: int, T: Any, p: wp.array(dtype=Any)):
    """The part of $\\tilde M(c, \\tilde T)$ that depends on $\\tilde T$ only: $\\tilde D/\\tilde T$
    (dilute, regular solution) or $\\tilde D/\\tilde f''_{eq}$ (double well), with
    $\\tilde D = \\exp(\\tilde Q_d(1 - 1/\\tilde T))$."""
    one = type(T)(1.0)
    diffusivity = wp.exp(p[0] * (one - one / T))
    if kind == DOUBLE_WELL:
        return diffusivity / p[6]
    return diffusivity / T


# ------------------------------------------------------------------ runs of consecutive cells
# Native C++ through raw pointers: Warp's array indexing (a stride multiply and a
# negative-index check per access) keeps the compiler from vectorising these loops. Offsets are
# flat element offsets into contiguous arrays: cell (i, j, k) is (i n1 + j) n2 + k, face
# [a, i, j, k] is a N + that (N cells; int32 offsets, so grids up to 2^31 / 3 cells).

LAPLACIAN_RUN = """
using real = decltype(w0 + w0);
const real* __restrict__ x = c.data;
real* __restrict__ y = out.data + cell;
const real *centre = x + cell, *lo0 = x + i_lo, *hi0 = x + i_hi, *lo1 = x + j_lo,
           *hi1 = x + j_hi, *lo2 = x + k_lo, *hi2 = x + k_hi;
for (int m = 0; m < count; ++m) {
    const real twice = centre[m] + centre[m];
    y[m] = w0 * (lo0[m] - twice + hi0[m]) + w1 * (lo1[m] - twice + hi1[m])
           + w2 * (lo2[m] - twice + hi2[m]);
}
"""


@wp.func_native(LAPLACIAN_RUN)
def laplacian_run(c: wp.array3d(dtype=Any), cell: int, i_lo: int, i_hi: int, j_lo: int,
                  j_hi: int, k_lo: int, k_hi: int, count: int, w0: Any, w1: Any, w2: Any,
                  out: wp.array3d(dtype=Any)):
    """out[cell + m] = $\\sum_a w_a(c_{a,lo} - 2c + c_{a,hi})$ for m < count: the
    neighbours of axis a at offsets ``*_lo + m``, ``*_hi + m``; weights $1/\\Delta x_a^2$."""
    ...


FLUX_RUN = """
using real = decltype(kappa + kappa);
const real one = real(1), two = real(2), half = real(0.5);
const real* __restrict__ c_lo = c.data + lo;
const real* __restrict__ c_hi = c.data + hi;
const real* __restrict__ lap_lo = lap.data + lo;
const real* __restrict__ lap_hi = lap.data + hi;
const real* __restrict__ T_f = T_face.data + face;
const real* __restrict__ M_f = mobility.data + face;
const real* __restrict__ thermal_f = thermal.data + face;
real* __restrict__ J = flux.data + face;
auto sweep = [&](auto potential, auto composition) {
    for (int m = 0; m < count; ++m) {
        const real T = T_f[m];
        J[m] = -M_f[m] * composition(half * (c_lo[m] + c_hi[m]))
               * (potential(c_hi[m], T) - potential(c_lo[m], T)
                  - kappa * (lap_hi[m] - lap_lo[m]) + thermal_f[m]);
    }
};
if (kind == DILUTE_KIND) {
    sweep([=](real x, real T) { return T * wp::log(x); }, [=](real x) { return x; });
} else if (kind == DOUBLE_WELL_KIND) {
    const real A = p.data[1], a0 = p.data[2], b0 = p.data[3], sa = p.data[4], sb = p.data[5];
    sweep([=](real x, real T) {
              const real a = a0 + sa * (T - one), b = b0 + sb * (T - one);
              return two * A * (x - a) * (x - b) * (two * x - a - b);
          },
          [=](real) { return one; });
} else {
    const real omega = p.data[1];
    sweep([=](real x, real T) { return T * wp::log(x / (one - x)) + omega * (one - two * x); },
          [=](real x) { return x * (one - x); });
}
""".replace("DILUTE_KIND", str(int(FreeEnergyKind.DILUTE))).replace(
    "DOUBLE_WELL_KIND", str(int(FreeEnergyKind.DOUBLE_WELL)))


@wp.func_native(FLUX_RUN)
def flux_run(kind: int, c: wp.array3d(dtype=Any), lap: wp.array3d(dtype=Any),
             T_face: wp.array4d(dtype=Any), mobility: wp.array4d(dtype=Any),
             thermal: wp.array4d(dtype=Any), p: wp.array(dtype=Any), kappa: Any, lo: int,
             hi: int, face: int, count: int, flux: wp.array4d(dtype=Any)):
    """$\\tilde J_f = -\\tilde M_f\\,[\\tilde\\mu_0(c_h, T_f) - \\tilde\\mu_0(c_l, T_f) -
    \\tilde\\kappa(\\Delta_h c_h - \\Delta_h c_l) + \\text{thermal}_f]$ into flux[face + m]
    for m < count, lower cell ``lo + m``, upper cell ``hi + m``; $\\tilde M_f$ is the face's
    temperature factor times the composition factor at $\\bar c = \\tfrac12(c_l + c_h)$, and
    $\\tilde\\mu_0 = \\partial\\tilde f/\\partial c$ at fixed $\\tilde T$: $\\tilde T\\ln c$
    (dilute), $2A(c - a)(c - b)(2c - a - b)$ with $a, b$ linear in $\\tilde T$ (double well),
    $\\tilde T\\ln(c/(1 - c)) + \\Omega(1 - 2c)$ (regular solution); composition factors
    $\\bar c$, 1, $\\bar c(1 - \\bar c)$ (parameters ``p``: see ``scaled_parameters`` of the
    free energies)."""
    ...


DIVERGENCE_RUN = """
using real = decltype(w0 + w0);
const real* __restrict__ f = flux.data;
real* __restrict__ y = out.data + cell;
const real *up0 = f + cell, *down0 = f + low0, *up1 = f + n_cells + cell,
           *down1 = f + n_cells + low1, *up2 = f + 2 * n_cells + cell,
           *down2 = f + 2 * n_cells + low2;
for (int m = 0; m < count; ++m) {
    y[m] = w0 * (up0[m] - h0 * down0[m]) + w1 * (up1[m] - h1 * down1[m])
           + w2 * (up2[m] - h2 * down2[m]);
}
"""


@wp.func_native(DIVERGENCE_RUN)
def divergence_run(flux: wp.array4d(dtype=Any), n_cells: int, cell: int, low0: int,
                   low1: int, low2: int, h0: Any, h1: Any, h2: Any, w0: Any, w1: Any,
                   w2: Any, count: int, out: wp.array3d(dtype=Any)):
    """out[cell + m] = $\\sum_a w_a(J_a[\\text{cell} + m] - h_a J_a[\\text{low}_a + m])$ for
    m < count: the upper face minus the lower face of each axis (``h_a`` = 0 drops it); $J_a$
    starts at face offset ``a n_cells``."""
    ...


@wp.func
def row_start(i: int, j: int, shape: wp.vec3i):
    """Flat offset of cell ``(i, j, 0)``."""
    return (i * shape[1] + j) * shape[2]


@wp.kernel
def laplacian_kernel(
    c: wp.array3d(dtype=Any),
    q: wp.array(dtype=Any),
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    row: int,
    first: int,
    out: wp.array3d(dtype=Any),
):
    """out = $\\Delta_h c$ (3-point per axis; no-flux axes mirror). Reads c; writes out."""
    i, j, k_first, k_end = row_cells(first + wp.tid(), row, shape)
    # flat offsets of the starts of this row and of its neighbour rows along axes 0 and 1
    here = row_start(i, j, shape)
    row_i_lo = row_start(neighbour(i, shape[0], periodic_axes[0], -1), j, shape)
    row_i_hi = row_start(neighbour(i, shape[0], periodic_axes[0], 1), j, shape)
    row_j_lo = row_start(i, neighbour(j, shape[1], periodic_axes[1], -1), shape)
    row_j_hi = row_start(i, neighbour(j, shape[1], periodic_axes[1], 1), shape)
    w0, w1, w2 = q[2] * q[2], q[3] * q[3], q[4] * q[4]
    last = shape[2] - 1
    k = wp.max(k_first, 1)
    stop = wp.min(k_end, last)
    if k < stop:  # cells 1 .. last - 1: both last-axis neighbours in the row
        laplacian_run(c, here + k, row_i_lo + k, row_i_hi + k, row_j_lo + k, row_j_hi + k,
                      here + k - 1, here + k + 1, stop - k, w0, w1, w2, out)
    if k_first == 0:  # the first cell: its lower neighbour wraps or mirrors
        laplacian_run(c, here, row_i_lo, row_i_hi, row_j_lo, row_j_hi,
                      here + neighbour(0, shape[2], periodic_axes[2], -1),
                      here + neighbour(0, shape[2], periodic_axes[2], 1), 1, w0, w1, w2, out)
    if k_end == shape[2] and last > 0:  # the last cell: its upper neighbour wraps or mirrors
        laplacian_run(c, here + last, row_i_lo + last, row_i_hi + last, row_j_lo + last,
                      row_j_hi + last, here + last - 1,
                      here + neighbour(last, shape[2], periodic_axes[2], 1), 1, w0, w1, w2, out)


@wp.kernel
def face_coefficients_kernel(
    T: wp.array3d(dtype=Any),
    p: wp.array(dtype=Any),
    q: wp.array(dtype=Any),
    kind: int,
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    row: int,
    first: int,
    T_face: wp.array4d(dtype=Any),
    mobility: wp.array4d(dtype=Any),
    thermal: wp.array4d(dtype=Any),
):
    """Per face: $T_f = \\tfrac12(T_l + T_h)$, the mobility's temperature factor over
    $\\Delta x$ (zero on no-flux boundary faces), and the thermal potential jump
    $\\tilde Q^* T_f (1/T_l - 1/T_h)$. Reads T."""
    i, j, k_first, k_end = row_cells(first + wp.tid(), row, shape)
    one = type(q[0])(1.0)
    for axis in range(3):
        if shape[axis] > 1:
            i_hi, j_hi, dk = upper_row(axis, i, j, shape, periodic_axes)
            for k in range(k_first, k_end):
                k_hi = k + dk
                if k == shape[2] - 1:
                    k_hi = upper_end(axis, k, shape, periodic_axes)
                T_lo = T[i, j, k]
                T_hi = T[i_hi, j_hi, k_hi]
                face_T = (T_lo + T_hi) / (one + one)
                T_face[axis, i, j, k] = face_T
                thermal[axis, i, j, k] = q[1] * face_T * (one / T_lo - one / T_hi)
                factor = mobility_temperature_factor(kind, face_T, p) * q[2 + axis]
                index = wp.vec3i(i, j, k)
                if periodic_axes[axis] == 0 and index[axis] == shape[axis] - 1:
                    factor = one - one
                mobility[axis, i, j, k] = factor


@wp.kernel
def face_flux_kernel(
    c: wp.array3d(dtype=Any),
    lap: wp.array3d(dtype=Any),
    T_face: wp.array4d(dtype=Any),
    mobility: wp.array4d(dtype=Any),
    thermal: wp.array4d(dtype=Any),
    p: wp.array(dtype=Any),
    q: wp.array(dtype=Any),
    kind: int,
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    row: int,
    first: int,
    flux: wp.array4d(dtype=Any),
):
    """$\\tilde J_f$ (see :func:`flux_run`, $\\tilde M_f$ includes $1/\\Delta x$) on every upper
    face. Reads c, lap and the face coefficients; writes flux (faces of axes with one cell:
    untouched)."""
    i, j, k_first, k_end = row_cells(first + wp.tid(), row, shape)
    here = row_start(i, j, shape)
    n_cells = shape[0] * shape[1] * shape[2]
    last = shape[2] - 1
    stop = wp.min(k_end, last)
    for axis in range(3):
        if shape[axis] > 1:
            i_hi, j_hi, dk = upper_row(axis, i, j, shape, periodic_axes)
            upper_row_start = row_start(i_hi, j_hi, shape)
            face_row_start = axis * n_cells + here
            if k_first < stop:  # faces of cells 0 .. last - 1: upper cells at a fixed offset
                flux_run(kind, c, lap, T_face, mobility, thermal, p, q[0], here + k_first,
                         upper_row_start + k_first + dk, face_row_start + k_first,
                         stop - k_first, flux)
            if k_end == shape[2]:  # the last cell's face: along axis 2 it wraps or mirrors
                flux_run(kind, c, lap, T_face, mobility, thermal, p, q[0], here + last,
                         upper_row_start + upper_end(axis, last, shape, periodic_axes),
                         face_row_start + last, 1, flux)


@wp.kernel
def divergence_kernel(
    flux: wp.array4d(dtype=Any),
    q: wp.array(dtype=Any),
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    scale: Any,
    row: int,
    first: int,
    out: wp.array3d(dtype=Any),
):
    """out = scale $\\cdot(-\\nabla_h\\cdot\\tilde J)$; boundary faces of no-flux axes carry no
    flux. Reads flux; writes out."""
    i, j, k_first, k_end = row_cells(first + wp.tid(), row, shape)
    here = row_start(i, j, shape)
    n_cells = shape[0] * shape[1] * shape[2]
    zero, one = type(scale)(0.0), type(scale)(1.0)
    # lower faces along axes 0 and 1: the neighbour row's, absent (weight 0) at no-flux walls
    row_i_lo = row_start(neighbour(i, shape[0], periodic_axes[0], -1), j, shape)
    row_j_lo = row_start(i, neighbour(j, shape[1], periodic_axes[1], -1), shape)
    has_i_lo, has_j_lo = one, one
    if periodic_axes[0] == 0 and i == 0:
        has_i_lo = zero
    if periodic_axes[1] == 0 and j == 0:
        has_j_lo = zero
    w0, w1, w2 = -scale * q[2], -scale * q[3], -scale * q[4]
    k = wp.max(k_first, 1)
    if k < k_end:  # cells 1 .. last: the lower face along axis 2 is the previous cell's
        divergence_run(flux, n_cells, here + k, row_i_lo + k, row_j_lo + k, here + k - 1,
                       has_i_lo, has_j_lo, one, w0, w1, w2, k_end - k, out)
    if k_first == 0:  # the first cell: its lower face along axis 2 wraps, or is a wall
        has_k_lo = zero
        if periodic_axes[2] != 0:
            has_k_lo = one
        divergence_run(flux, n_cells, here, row_i_lo, row_j_lo, here + shape[2] - 1, has_i_lo,
                       has_j_lo, has_k_lo, w0, w1, w2, 1, out)


ADD_RUN = """
auto* __restrict__ y = out.data + cell;
const auto* __restrict__ x = delta.data + cell;
for (int m = 0; m < count; ++m) {
    y[m] += x[m];
}
"""


@wp.func_native(ADD_RUN)
def add_run(delta: wp.array3d(dtype=Any), cell: int, count: int, out: wp.array3d(dtype=Any)):
    """out[cell + m] += delta[cell + m] for m < count."""
    ...


@wp.kernel
def add_kernel(delta: wp.array3d(dtype=Any), row: int, first: int, c: wp.array3d(dtype=Any)):
    """c += delta (thread ``b`` owns the cells ``[b row, (b + 1) row)``)."""
    add_run(delta, (first + wp.tid()) * row, row, c)


ERROR_RUN = """
using real = decltype(ratio + ratio);
const real* __restrict__ x = c.data + cell;
const real* __restrict__ d = delta.data + cell;
const real* __restrict__ e = euler.data + cell;
const real* __restrict__ p = previous.data + cell;
const real infinity = real(INFINITY);
real largest = real(0);
int bad = 0;  // a non-finite error or a composition outside (lower, upper)
if (use_previous != 0) {
    for (int m = 0; m < count; ++m) {
        const real first = wp::abs(e[m] - d[m]);
        const real second = wp::abs(d[m] - ratio * p[m]) / real(2);
        const real error = first > second ? first : second;
        const real next = x[m] + d[m];
        bad |= !(error < infinity) | !(next > lower) | !(next < upper);
        largest = error > largest ? error : largest;
    }
} else {
    for (int m = 0; m < count; ++m) {
        const real error = wp::abs(e[m] - d[m]);
        const real next = x[m] + d[m];
        bad |= !(error < infinity) | !(next > lower) | !(next < upper);
        largest = error > largest ? error : largest;
    }
}
rows.data[index] = bad ? infinity : largest;
"""


@wp.func_native(ERROR_RUN)
def error_run(c: wp.array3d(dtype=Any), delta: wp.array3d(dtype=Any),
              euler: wp.array3d(dtype=Any), previous: wp.array3d(dtype=Any), ratio: Any,
              use_previous: int, lower: Any, upper: Any, cell: int, count: int, index: int,
              rows: wp.array(dtype=Any)):
    """rows[index] <- the largest step error over cells ``[cell, cell + count)`` (see
    :func:`step_error_kernel`), infinite where one is not finite or leaves (lower, upper)."""
    ...


@wp.kernel
def step_error_kernel(
    c: wp.array3d(dtype=Any),
    delta: wp.array3d(dtype=Any),
    euler: wp.array3d(dtype=Any),
    previous: wp.array3d(dtype=Any),
    ratio: Any,
    use_previous: int,
    lower: Any,
    upper: Any,
    row: int,
    first: int,
    chunk: int,
    rows: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out[chunk] <- max(out[chunk], max over the launch's cells of $|e - \\delta|$ and, if
    ``use_previous``, $\\tfrac12|\\delta - r\\,\\delta_{prev}|$), with $e$ the Euler increment
    and $r$ = ``ratio``; infinite if any of them is not finite or the step leaves the model's
    compositions, $c + \\delta \\notin$ (``lower``, ``upper``). Start with out = 0. (Warp's
    atomics are not atomic between CPU threads: concurrent chunks need a slot each.) Thread
    ``b`` reads the cells ``[b row, (b + 1) row)`` in one native run (:data:`ERROR_RUN`),
    which leaves their largest error in ``rows[b]`` (one slot per row of the grid)."""
    b = first + wp.tid()
    error_run(c, delta, euler, previous, ratio, use_previous, lower, upper, b * row, row, b,
              rows)
    wp.atomic_max(out, chunk, rows[b])


def _overload_kernels() -> None:
    for T in (wp.float32, wp.float64):
        a, cells, faces = wp.array(dtype=T), wp.array3d(dtype=T), wp.array4d(dtype=T)
        specialize(laplacian_kernel, T, {"c": cells, "q": a, "out": cells})
        specialize(face_coefficients_kernel, T, {"T": cells, "p": a, "q": a, "T_face": faces,
                                                 "mobility": faces, "thermal": faces})
        specialize(face_flux_kernel, T, {"c": cells, "lap": cells, "T_face": faces,
                                         "mobility": faces, "thermal": faces, "p": a, "q": a,
                                         "flux": faces})
        specialize(divergence_kernel, T, {"flux": faces, "q": a, "scale": T, "out": cells})
        specialize(add_kernel, T, {"delta": cells, "c": cells})
        specialize(step_error_kernel, T, {"c": cells, "delta": cells, "euler": cells,
                                          "previous": cells, "ratio": T, "lower": T,
                                          "upper": T, "rows": a, "out": a})


_overload_kernels()


class RowLaunch:
    """Launches the kernels above over the cells of a 3D shape on one device.

    On the CPU one thread per row of the last axis (``n0 n1`` threads, ``row = n2``); on CUDA
    one thread per cell (``N`` threads, ``row = 1``); ``per_cell`` overrides the choice.

    On the CPU the rows are split into ``chunks`` contiguous ranges launched concurrently from
    a pool of host threads (Warp runs one CPU launch on one core; a launch releases the GIL):
    ``threads`` of them (at most one per row), by default one per available core while chunks
    keep about :data:`MIN_CELLS_PER_THREAD` cells, or :data:`MIN_CELLS_PER_STREAMING_THREAD`
    for a kernel launched with ``streaming=True`` (little arithmetic per byte moved: the cores
    share the memory bandwidth). Chunks write disjoint cells, so the result does not depend on
    the thread count. ``row`` and the chunk's first thread index are appended to every
    launch's inputs, and the chunk's index too for reductions (``chunk_slot``, launched over
    ``chunks``: one output slot each).

    The kernels address contiguous arrays by 32-bit flat offsets, so a grid has at most
    ``MAX_OFFSET // 3`` cells (a ValueError beyond).
    """

    def __init__(self, shape3: tuple[int, int, int], device: str, dtype: type,
                 per_cell: bool | None = None, threads: int | None = None):
        self.dtype, self.device = dtype, device
        self.shape = wp.vec3i(*shape3)
        cells = shape3[0] * shape3[1] * shape3[2]
        if 3 * cells > MAX_OFFSET:
            raise ValueError(f"a grid of {cells} cells is too large: the kernels' 32-bit face "
                             f"offsets allow at most {MAX_OFFSET // 3}")
        on_cpu = wp.get_device(device).is_cpu
        per_cell = not on_cpu if per_cell is None else per_cell
        self.row = 1 if per_cell else shape3[2]
        if threads is not None:
            threads = whole_number(threads, "threads", 1)
        blocks = cells // self.row

        def split(min_cells: int) -> list[tuple[int, int]]:
            if not on_cpu:
                count = 1
            elif threads is None:
                count = min(available_cores(), max(1, cells // min_cells))
            else:
                count = min(int(threads), blocks)
            bounds = [blocks * k // count for k in range(count + 1)]
            return [(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]

        self.chunks = split(MIN_CELLS_PER_THREAD)
        self.streaming_chunks = split(MIN_CELLS_PER_STREAMING_THREAD)

    def __call__(self, kernel: wp.Kernel, inputs: list, outputs: list,
                 chunk_slot: bool = False, streaming: bool = False) -> None:
        chunks = self.streaming_chunks if streaming else self.chunks

        def run(index: int) -> None:
            first, count = chunks[index]
            extra = [self.row, first, index] if chunk_slot else [self.row, first]
            launch(kernel, self.dtype, dim=count, inputs=[*inputs, *extra], outputs=outputs,
                   device=self.device)

        in_parallel(run, len(chunks))


MAX_OFFSET = 2**31 - 1
"""Largest flat offset the kernels address (int32): a grid has at most a third of it in cells."""

MIN_CELLS_PER_THREAD = 131072
"""Fewest cells a CPU chunk gets by default: handing a launch to another host thread costs
about 0.1 ms, more than splitting a smaller chunk saves (measured on a 2-core x86_64 VM: at
256^2 two threads were slower than one, at 512^2 faster)."""

MIN_CELLS_PER_STREAMING_THREAD = 1 << 20
"""The same for streaming kernels (Laplacian, divergence, c += delta), which two cores of that
VM run little faster than one: at 512^2 and 64^3 splitting them was slower (the Laplacian 0.21
against 0.31 ms at 512^2), at 128^3 faster (3.4 against 2.0 ms)."""
