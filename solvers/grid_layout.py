r"""Grid layout: what Warp kernels need to know about a grid and its boundaries, and its operators.

:class:`GridLayout` derives once from a grid, its boundary conditions and a ghost width the
kernel arguments (padded shape, boundary kinds, ghost coefficients, $1/\Delta x$), pads fields
(:func:`~physml.solvers.ghost_cells.pad_kernel`) and launches the two kernels below, which apply
the stencils of :mod:`physml.solvers.operators` at every interior cell:

* ``laplacian_kernel``: $\sum_d (u_{i-1} - 2u_i + u_{i+1})/\Delta x_d^2$;
* ``derivative_kernel``: $\partial_{axis} f(u)$ (central or MUSCL–Rusanov), $f = u$ or $u^2/2$.

Fields are flat, ``(grid.size,)``; padded fields ``(padded_size,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import warp as wp

from .ghost_cells import pad_kernel, padded_centre
from .grid import BCKind, BoundaryConditions, Grid
from .kernel_launch import launch, specialize
from .operators import FluxKind, Limiter, advective_term, second_difference

# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


@wp.kernel
def laplacian_kernel(
    up: wp.array(dtype=Any),
    shape: wp.vec3i,
    ghost: wp.vec3i,
    ndim: int,
    inv_dx: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out = sum_d (u_{i-1} - 2u_i + u_{i+1}) / dx_d^2. Reads padded up; writes out."""
    t = wp.tid()
    c, s0, s1, s2 = padded_centre(t, shape, ghost)
    lap = second_difference(up, c, s0, inv_dx[0] * inv_dx[0])
    if ndim > 1:
        lap += second_difference(up, c, s1, inv_dx[1] * inv_dx[1])
    if ndim > 2:
        lap += second_difference(up, c, s2, inv_dx[2] * inv_dx[2])
    out[t] = lap


@wp.kernel
def derivative_kernel(
    up: wp.array(dtype=Any),
    shape: wp.vec3i,
    ghost: wp.vec3i,
    axis: int,
    inv_dx: wp.array(dtype=Any),
    flux_kind: int,
    limiter: int,
    out: wp.array(dtype=Any),
):
    """out = d f(u) / dx_axis for a unit linear speed (central or upwind) or the Burgers flux.

    Reads padded up; writes out.
    """
    t = wp.tid()
    c, s0, s1, s2 = padded_centre(t, shape, ghost)
    s = s0
    if axis == 1:
        s = s1
    elif axis == 2:
        s = s2
    one = inv_dx.dtype(1.0)
    out[t] = advective_term(up, c, s, inv_dx[axis], flux_kind, one, limiter)


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(laplacian_kernel, T, {"up": arr, "inv_dx": arr, "out": arr})
        specialize(derivative_kernel, T, {"up": arr, "inv_dx": arr, "out": arr})


_overload_all()


# ---------------------------------------------------------------------------------------------
# Host-side layout: what a kernel needs to know about a grid and its boundaries
# ---------------------------------------------------------------------------------------------


class GridLayout:
    """Kernel arguments derived once from a grid, its boundary conditions and a ghost width.

    Args:
        grid: the grid.
        bc: its boundary conditions (one pair per axis).
        ghost: ghost layers per side (1 for centred stencils, 2 for MUSCL).
        dtype: ``wp.float32`` or ``wp.float64``.
        device: Warp device string.
    """

    def __init__(
        self, grid: Grid, bc: BoundaryConditions, ghost: int, dtype: type, device: str
    ) -> None:
        if not isinstance(bc, BoundaryConditions):
            raise ValueError(f"bc={bc!r} is a {type(bc).__name__}; pass BoundaryConditions, e.g. "
                             f"periodic({grid.ndim}) or boundary_conditions('dirichlet', "
                             f"{grid.ndim})")
        if bc.ndim != grid.ndim:
            raise ValueError(f"bc has {bc.ndim} axes but the grid has {grid.ndim}")
        for axis, n in enumerate(grid.shape):
            lo, hi = bc.sides[axis]
            # A periodic stencil must not wrap onto itself; a reflected one needs g + 1 cells.
            minimum = 2 * ghost + 1 if lo.kind == BCKind.PERIODIC else ghost + 1
            if n < minimum:
                raise ValueError(
                    f"grid shape[{axis}]={n} is too small for this stencil ({2 * ghost + 1} "
                    f"points, {lo.kind.name.lower()} boundaries); need at least {minimum} cells"
                )
        self.grid, self.bc, self.ghost_width = grid, bc, ghost
        self.dtype, self.device = dtype, device
        dims = list(grid.shape) + [1] * (3 - grid.ndim)
        self.shape = wp.vec3i(*dims)
        self.ghost = wp.vec3i(*([ghost] * grid.ndim + [0] * (3 - grid.ndim)))
        kinds = [bc.kinds(d) for d in range(grid.ndim)] + [(0, 0)] * (3 - grid.ndim)
        self.kinds_lo = wp.vec3i(*(k[0] for k in kinds))
        self.kinds_hi = wp.vec3i(*(k[1] for k in kinds))
        self.padded_size = int(np.prod([n + 2 * g for n, g in zip(dims, self.ghost)]))
        inv_dx = [1.0 / h for h in grid.dx] + [1.0] * (3 - grid.ndim)
        self.inv_dx = wp.array(inv_dx, dtype=dtype, device=device)
        self.coef = wp.array(
            self._ghost_coefficients(homogeneous=False), dtype=dtype, device=device
        )
        homogeneous = self._ghost_coefficients(homogeneous=True)
        self.coef_homogeneous = wp.array(homogeneous, dtype=dtype, device=device)
        self.reflection_x = (float(homogeneous[1, 0]), float(homogeneous[1 + ghost, 0]))
        """Ghost factor a (ghost = a u_src) on the low and high side of axis 0, homogeneous."""

    def _ghost_coefficients(self, homogeneous: bool) -> np.ndarray:
        """Rows (a, b) with ghost = a u_src + b; row 0 is the identity for interior cells."""
        g = self.ghost_width
        rows = np.zeros((1 + 2 * 3 * g, 2))
        rows[:, 0] = 1.0
        for axis in range(self.grid.ndim):
            dx = self.grid.dx[axis]
            for side, bc in enumerate(self.bc.sides[axis]):
                value = 0.0 if homogeneous else bc.value
                for m in range(1, g + 1):
                    row = 1 + (2 * axis + side) * g + (m - 1)
                    if bc.kind == BCKind.DIRICHLET:
                        rows[row] = (-1.0, 2.0 * value)
                    elif bc.kind == BCKind.NEUMANN:
                        direction = -1.0 if side == 0 else 1.0
                        rows[row] = (1.0, direction * (2 * m - 1) * dx * value)
        return rows

    def in_dtype(self, dtype: type) -> GridLayout:
        """This layout in ``dtype``: itself, or a twin built once and kept (solvers copied
        from one another share their layout, and so the twin)."""
        if dtype == self.dtype:
            return self
        twins = self.__dict__.setdefault("_twins", {})
        if dtype not in twins:
            twins[dtype] = GridLayout(self.grid, self.bc, self.ghost_width, dtype, self.device)
        return twins[dtype]

    def empty(self, requires_grad: bool = False) -> wp.array:
        """A new flat field array (uninitialised)."""
        return wp.empty(
            self.grid.size, dtype=self.dtype, device=self.device, requires_grad=requires_grad
        )

    def pad(
        self,
        u: wp.array,
        homogeneous: bool = False,
        out: wp.array | None = None,
        record_tape: bool = True,
    ) -> wp.array:
        """Ghost-padded copy of the flat field ``u`` (boundary values zero if homogeneous),
        written to ``out`` if given (a work buffer of ``padded_size``), else to a new array."""
        if out is None:
            out = wp.empty(
                self.padded_size,
                dtype=self.dtype,
                device=self.device,
                requires_grad=u.requires_grad,
            )
        coef = self.coef_homogeneous if homogeneous else self.coef
        launch(
            pad_kernel,
            self.dtype,
            dim=self.padded_size,
            inputs=[u, self.shape, self.ghost, self.kinds_lo, self.kinds_hi, coef],
            outputs=[out],
            device=self.device,
            record_tape=record_tape,
        )
        return out

    def laplacian(self, u: wp.array, homogeneous: bool = False) -> wp.array:
        """$\\Delta_h u$ with the boundary conditions applied (flat, interior size)."""
        out = self.empty(u.requires_grad)
        launch(
            laplacian_kernel,
            self.dtype,
            dim=self.grid.size,
            inputs=[self.pad(u, homogeneous), self.shape, self.ghost, self.grid.ndim, self.inv_dx],
            outputs=[out],
            device=self.device,
        )
        return out

    def derivative(
        self, u: wp.array, axis: int, flux: FluxKind, limiter: Limiter = Limiter.VAN_LEER
    ) -> wp.array:
        """$\\partial_{axis} f(u)$: central or upwind derivative of u (unit speed), or of u^2/2."""
        out = self.empty(u.requires_grad)
        launch(
            derivative_kernel,
            self.dtype,
            dim=self.grid.size,
            inputs=[
                self.pad(u),
                self.shape,
                self.ghost,
                axis,
                self.inv_dx,
                int(flux),
                int(limiter),
            ],
            outputs=[out],
            device=self.device,
        )
        return out
