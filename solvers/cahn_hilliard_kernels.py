r"""Warp kernels of the thermomigration Cahn–Hilliard right-hand side (dimensionless units).

**Layout.** A field is a flat array of the ``N = n0 n1 n2`` cells of a 3D shape in C order,
whose leading axes have one cell in 1D and 2D, so the last axis is always the grid's last
(contiguous) axis. Face quantities are flat arrays of ``3N``: entry ``a N + l`` belongs to the
face between cell ``l`` and its upper neighbour along axis ``a`` (kernels call ``l`` ``flat``).

**Launch geometry.** Each thread updates ``row`` consecutive cells of the last axis: one cell on
CUDA (one thread per cell), a whole row on the CPU, where Warp runs threads one after another
and long threads with flat indices amortise the per-thread and per-index cost (about 4x faster
at 256^2 than one thread per 3D-indexed cell). :class:`RowLaunch` picks the geometry.

The right-hand side $R = -\nabla_h\cdot\tilde J$ takes three passes:

1. :data:`laplacian_kernel`: $\Delta_h c$;
2. :data:`face_flux_kernel`: every face flux once, from face coefficients that depend on the
   temperature only (:data:`face_coefficients_kernel`, rerun when $T$ changes);
3. :data:`divergence_kernel`: $s\,R$ for a scale $s$ (1, or $\Delta t$ for the Euler increment).
"""

from __future__ import annotations

from typing import Any

import warp as wp

from .free_energy import FreeEnergyKind
from .operators import launch, specialize, unravel

# No adjoints: the thermomigration solver is not differentiated through.
wp.set_module_options({"enable_backward": False})

DILUTE = wp.constant(int(FreeEnergyKind.DILUTE))
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
def row_origin(block: int, row: int, shape: wp.vec3i):
    """3D index ``(i, j, k)`` of the first cell of thread ``block``'s row."""
    i, j, k = unravel(block * row, shape)
    return wp.vec3i(i, j, k)


@wp.func
def offset(cell: wp.vec3i, axis: int, shape: wp.vec3i, periodic_axes: wp.vec3i, step: int):
    """Flat offset from ``cell`` to its neighbour ``step`` (+-1) along ``axis``."""
    stride = 1
    if axis == 0:
        stride = shape[1] * shape[2]
    if axis == 1:
        stride = shape[2]
    return (neighbour(cell[axis], shape[axis], periodic_axes[axis], step) - cell[axis]) * stride


@wp.func
def scaled_potential(kind: int, c: Any, T: Any, p: wp.array(dtype=Any)):
    """$\\tilde\\mu_0 = \\partial\\tilde f/\\partial c$ at fixed $\\tilde T$ (parameters: see
    ``scaled_parameters`` of the free energies)."""
    one = type(c)(1.0)
    if kind == DILUTE:
        return T * wp.log(c)
    if kind == DOUBLE_WELL:
        a = p[2] + p[4] * (T - one)
        b = p[3] + p[5] * (T - one)
        return type(c)(2.0) * p[1] * (c - a) * (c - b) * (type(c)(2.0) * c - a - b)
    return T * wp.log(c / (one - c)) + p[1] * (one - type(c)(2.0) * c)


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


@wp.func
def mobility_composition_factor(kind: int, c: Any):
    """The part of $\\tilde M$ that depends on $c$: $c$, 1 or $c(1 - c)$."""
    one = type(c)(1.0)
    if kind == DILUTE:
        return c
    if kind == DOUBLE_WELL:
        return one
    return c * (one - c)


@wp.kernel
def laplacian_kernel(
    c: wp.array(dtype=Any),
    q: wp.array(dtype=Any),
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    row: int,
    out: wp.array(dtype=Any),
):
    """out = $\\Delta_h c$ (3-point per axis; no-flux axes mirror); q = [kappa, Q*, 1/dx0,
    1/dx1, 1/dx2]. Reads c; writes out."""
    block = wp.tid()
    cell = row_origin(block, row, shape)
    i_lo, i_hi = offset(cell, 0, shape, periodic_axes, -1), offset(cell, 0, shape, periodic_axes, 1)
    j_lo, j_hi = offset(cell, 1, shape, periodic_axes, -1), offset(cell, 1, shape, periodic_axes, 1)
    w0, w1, w2 = q[2] * q[2], q[3] * q[3], q[4] * q[4]
    two = type(w0)(2.0)
    flat = block * row
    end = flat + row
    while flat < end:
        centre = c[flat]
        out[flat] = (
            w0 * (c[flat + i_lo] - two * centre + c[flat + i_hi])
            + w1 * (c[flat + j_lo] - two * centre + c[flat + j_hi])
            + w2 * (c[flat + offset(cell, 2, shape, periodic_axes, -1)] - two * centre
                    + c[flat + offset(cell, 2, shape, periodic_axes, 1)])
        )
        cell[2] = cell[2] + 1
        flat = flat + 1


@wp.kernel
def face_coefficients_kernel(
    T: wp.array(dtype=Any),
    p: wp.array(dtype=Any),
    q: wp.array(dtype=Any),
    kind: int,
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    row: int,
    T_face: wp.array(dtype=Any),
    mobility: wp.array(dtype=Any),
    thermal: wp.array(dtype=Any),
):
    """Per face: $T_f = \\tfrac12(T_l + T_h)$, the mobility's temperature factor over
    $\\Delta x$ (zero on no-flux boundary faces), and the thermal potential jump
    $\\tilde Q^* T_f (1/T_l - 1/T_h)$. q = [kappa, Q*, 1/dx0, 1/dx1, 1/dx2]. Reads T."""
    block = wp.tid()
    cell = row_origin(block, row, shape)
    size = shape[0] * shape[1] * shape[2]
    one = type(q[0])(1.0)
    flat = block * row
    end = flat + row
    while flat < end:
        T_lo = T[flat]
        for axis in range(3):
            if shape[axis] > 1:
                T_hi = T[flat + offset(cell, axis, shape, periodic_axes, 1)]
                face = axis * size + flat
                face_T = (T_lo + T_hi) / (one + one)
                T_face[face] = face_T
                thermal[face] = q[1] * face_T * (one / T_lo - one / T_hi)
                factor = mobility_temperature_factor(kind, face_T, p) * q[2 + axis]
                if periodic_axes[axis] == 0 and cell[axis] == shape[axis] - 1:
                    factor = one - one
                mobility[face] = factor
        cell[2] = cell[2] + 1
        flat = flat + 1


@wp.kernel
def face_flux_kernel(
    c: wp.array(dtype=Any),
    lap: wp.array(dtype=Any),
    T_face: wp.array(dtype=Any),
    mobility: wp.array(dtype=Any),
    thermal: wp.array(dtype=Any),
    p: wp.array(dtype=Any),
    q: wp.array(dtype=Any),
    kind: int,
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    row: int,
    flux: wp.array(dtype=Any),
):
    """$\\tilde J_f = -\\tilde M_f\\,[\\tilde\\mu_0(c_h, T_f) - \\tilde\\mu_0(c_l, T_f) -
    \\tilde\\kappa(\\Delta_h c_h - \\Delta_h c_l) + \\text{thermal}_f]/\\Delta x$ on every upper
    face, $\\tilde M_f$ at $\\bar c = \\tfrac12(c_l + c_h)$. Reads c, lap and the face
    coefficients; writes flux."""
    block = wp.tid()
    cell = row_origin(block, row, shape)
    size = shape[0] * shape[1] * shape[2]
    kappa = q[0]
    half = type(kappa)(0.5)
    flat = block * row
    end = flat + row
    while flat < end:
        c_lo = c[flat]
        lap_lo = lap[flat]
        for axis in range(3):
            if shape[axis] > 1:
                hi = flat + offset(cell, axis, shape, periodic_axes, 1)
                c_hi = c[hi]
                face = axis * size + flat
                face_T = T_face[face]
                chemical = (scaled_potential(kind, c_hi, face_T, p)
                            - scaled_potential(kind, c_lo, face_T, p))
                flux[face] = -(
                    mobility[face] * mobility_composition_factor(kind, half * (c_lo + c_hi))
                    * (chemical - kappa * (lap[hi] - lap_lo) + thermal[face])
                )
        cell[2] = cell[2] + 1
        flat = flat + 1


@wp.kernel
def divergence_kernel(
    flux: wp.array(dtype=Any),
    q: wp.array(dtype=Any),
    shape: wp.vec3i,
    periodic_axes: wp.vec3i,
    scale: Any,
    row: int,
    out: wp.array(dtype=Any),
):
    """out = scale $\\cdot(-\\nabla_h\\cdot\\tilde J)$; boundary faces of no-flux axes carry no
    flux. Reads flux; writes out."""
    block = wp.tid()
    cell = row_origin(block, row, shape)
    size = shape[0] * shape[1] * shape[2]
    zero = scale - scale
    flat = block * row
    end = flat + row
    while flat < end:
        total = zero
        for axis in range(3):
            if shape[axis] > 1:
                face = axis * size + flat
                lower = zero
                if periodic_axes[axis] != 0 or cell[axis] > 0:
                    lower = flux[face + offset(cell, axis, shape, periodic_axes, -1)]
                total = total - (flux[face] - lower) * q[2 + axis]
        out[flat] = scale * total
        cell[2] = cell[2] + 1
        flat = flat + 1


@wp.kernel
def step_error_kernel(
    delta: wp.array(dtype=Any),
    euler: wp.array(dtype=Any),
    previous: wp.array(dtype=Any),
    ratio: Any,
    use_previous: int,
    row: int,
    out: wp.array(dtype=Any),
):
    """out[0] <- max(out[0], max over cells of $|e - \\delta|$ and, if ``use_previous``,
    $\\tfrac12|\\delta - r\\,\\delta_{prev}|$), with $e$ the Euler increment and $r$ =
    ``ratio``; infinite if any of them is not finite. Start with out[0] = 0."""
    flat = wp.tid() * row
    end = flat + row
    largest = ratio - ratio
    while flat < end:
        error = wp.abs(euler[flat] - delta[flat])
        if use_previous != 0:
            error = wp.max(error, wp.abs(delta[flat] - ratio * previous[flat]) / type(ratio)(2.0))
        if not wp.isfinite(error):
            error = type(ratio)(wp.inf)
        largest = wp.max(largest, error)
        flat = flat + 1
    wp.atomic_max(out, 0, largest)


def _overload_kernels() -> None:
    for T in (wp.float32, wp.float64):
        a = wp.array(dtype=T)
        specialize(laplacian_kernel, T, {"c": a, "q": a, "out": a})
        specialize(face_coefficients_kernel, T, {"T": a, "p": a, "q": a, "T_face": a,
                                                 "mobility": a, "thermal": a})
        specialize(face_flux_kernel, T, {"c": a, "lap": a, "T_face": a, "mobility": a,
                                         "thermal": a, "p": a, "q": a, "flux": a})
        specialize(divergence_kernel, T, {"flux": a, "q": a, "scale": T, "out": a})
        specialize(step_error_kernel, T, {"delta": a, "euler": a, "previous": a, "ratio": T,
                                          "out": a})


_overload_kernels()


class RowLaunch:
    """Launches the kernels above over the cells of a 3D shape on one device.

    On the CPU one thread per row of the last axis (``n0 n1`` threads, ``row = n2``); on CUDA
    one thread per cell (``N`` threads, ``row = 1``); ``per_cell`` overrides the choice. The
    kernels that take ``shape`` get it from the caller; ``row`` is appended to every launch's
    inputs.
    """

    def __init__(self, shape3: tuple[int, int, int], device: str, dtype: type,
                 per_cell: bool | None = None):
        self.dtype, self.device = dtype, device
        self.shape = wp.vec3i(*shape3)
        cells = shape3[0] * shape3[1] * shape3[2]
        per_cell = not wp.get_device(device).is_cpu if per_cell is None else per_cell
        self.row = 1 if per_cell else shape3[2]
        self.dim = cells // self.row

    def __call__(self, kernel: wp.Kernel, inputs: list, outputs: list) -> None:
        launch(kernel, self.dtype, dim=self.dim, inputs=[*inputs, self.row], outputs=outputs,
               device=self.device)
