r"""Residual rows of 2D incompressible Navier–Stokes (vorticity form) on a space–time grid.

The unknown field is the streamfunction $\psi$ on the cell centres of the periodic box
$[0, L)^2$ (``(nx, ny)`` cells) at times $t_n = n\Delta t$, so the velocity
$\mathbf u = (\partial_y\psi, -\partial_x\psi)$ is divergence-free by construction and the hard
constraint is the vorticity equation of :class:`~physml.solvers.NavierStokesSolver2D`,
$$\omega_t + \mathbf u\cdot\nabla\omega = \nu\Delta\omega + f,\qquad \omega = -\Delta\psi,$$
with its forcing $f = A[\sin 2\pi(x+y)/L + \cos 2\pi(x+y)/L]$. Space: second-order central
differences ($\Delta_h$ the 5-point Laplacian, $D_x, D_y$ centred first differences, periodic),
so a row reaches two cells in each direction. Time: the implicit midpoint rule,
$$\omega^{n+1} - \omega^{n} + \Delta t\big[\bar u D_x\bar\omega + \bar v D_y\bar\omega
  - \nu\Delta_h\bar\omega - f\big],\qquad \bar\psi = \tfrac12(\psi^n + \psi^{n+1}),$$
second order, quadratic in $\psi$ (the inner solve is a nonlinear least-squares problem),
followed by the initial-condition rows $w_0(\omega^0_{ij} - \omega_{0,ij})$.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..solvers.errors import is_real, whole_number
from ..solvers.navier_stokes import NavierStokesSolver2D
from ..solvers.parameters import check_parameters


@dataclass(frozen=True)
class NavierStokesRows:
    """Residual rows on an ``(nt, nx, ny)`` grid of the box $[0, L)^2$, levels ``dt`` [s] apart.

    ``rows(psi, omega0)``: ``psi`` (B, nt, nx, ny), ``omega0`` (B, nx, ny) ->
    (B, (nt - 1) nx ny + nx ny).

    Args:
        nx, ny: cells along x and y, whole numbers >= 4.
        dt: time between levels [s], > 0.
        nu: kinematic viscosity $\\nu$ [m^2/s], >= 0.
        forcing: forcing amplitude $A$ [1/s^2].
        length: box side $L$ [m], > 0.
        initial_weight: $w_0$, the weight of the initial-condition rows.

    Raises:
        ValueError: a value outside its range, or one that is not a finite number.
    """

    periodic_space: ClassVar[bool] = True
    """The box is periodic in both space axes: the seam of a split axis is an interface."""

    level_constant_free: ClassVar[bool] = True
    r"""A constant added to $\psi$ at a time level changes no row (only its differences
    enter: the velocity and the vorticity)."""

    nx: int
    ny: int
    dt: float
    nu: float = 1e-4
    forcing: float = 0.1
    length: float = 1.0
    initial_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "nx", whole_number(self.nx, "nx", 4))
        object.__setattr__(self, "ny", whole_number(self.ny, "ny", 4))
        if not (is_real(self.dt) and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt={self.dt!r} must be a number > 0 (seconds between grid levels)")
        check_parameters(NavierStokesSolver2D.PARAMETERS,  # the solver's ranges
                         self.physical_parameters(), 2)
        if not (is_real(self.length) and math.isfinite(self.length) and self.length > 0):
            raise ValueError(f"length={self.length!r} must be a finite box side > 0 [m]")
        if not (is_real(self.initial_weight) and math.isfinite(self.initial_weight)):
            raise ValueError(f"initial_weight={self.initial_weight!r} must be a finite number")

    def physical_parameters(self) -> dict[str, float]:
        """The solver's parameters these rows hold, by the solver's names (nu, forcing)."""
        return {p.name: getattr(self, p.name) for p in NavierStokesSolver2D.PARAMETERS}

    @property
    def space_shape(self) -> tuple[int, int]:
        return self.nx, self.ny

    @property
    def condition_rows(self) -> int:
        """The initial rows, which end the rows: one per cell."""
        return self.nx * self.ny

    @property
    def spacing(self) -> tuple[float, float]:
        return self.length / self.nx, self.length / self.ny

    @staticmethod
    def _inner(f: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
        """``f`` without its outermost cells on each side, shifted by ``(dx, dy)`` cells
        (``dx, dy`` in -1, 0, 1): a view, no copy."""
        nx, ny = f.shape[-2] - 2, f.shape[-1] - 2
        return f[..., 1 + dx: 1 + dx + nx, 1 + dy: 1 + dy + ny]

    def _laplacian_and_gradient(self, f: torch.Tensor):
        """$\\Delta_h f$, $D_x f$, $D_y f$ of a field padded by (at least) one cell on each side;
        the results are one cell smaller on each side."""
        hx, hy = self.spacing
        c = self._inner(f)
        e, w = self._inner(f, 1, 0), self._inner(f, -1, 0)
        n, s = self._inner(f, 0, 1), self._inner(f, 0, -1)
        return ((e - 2 * c + w) / hx**2 + (n - 2 * c + s) / hy**2, (e - w) / (2 * hx),
                (n - s) / (2 * hy))

    def laplacian(self, f: torch.Tensor) -> torch.Tensor:
        """$\\Delta_h f$ over the last two axes (periodic)."""
        return self._laplacian_and_gradient(_periodic_pad(f, 1))[0]

    def observe(self, psi: torch.Tensor) -> torch.Tensor:
        """The vorticity $\\omega = -\\Delta_h\\psi$: the field compared with the reference."""
        return -self.laplacian(psi)

    def forcing_field(self, like: torch.Tensor) -> torch.Tensor:
        """$f$ on the cell centres $((i + 1/2) h_x, (j + 1/2) h_y)$ of $[0, L)^2$,
        ``(nx, ny)`` in ``like``'s dtype and device: the solver's forcing, whose phase runs
        from the grid's lower corner, on a box whose lower corner is 0 (the rows have no other;
        the ``navier_stokes2d`` problem they are built for is the unit square from (0, 0))."""
        hx, hy = self.spacing
        x = (torch.arange(self.nx, dtype=like.dtype, device=like.device) + 0.5) * hx
        y = (torch.arange(self.ny, dtype=like.dtype, device=like.device) + 0.5) * hy
        phase = 2 * math.pi * (x[:, None] + y[None, :]) / self.length
        return self.forcing * (torch.sin(phase) + torch.cos(phase))

    def rows(self, psi: torch.Tensor, omega0: torch.Tensor) -> torch.Tensor:
        padded = _periodic_pad(psi, 2)  # one pad; every stencil below reads views of it
        lap_psi, psi_x, psi_y = self._laplacian_and_gradient(padded)  # halo 1 left
        omega = -lap_psi
        mean_omega = 0.5 * (omega[:, 1:] + omega[:, :-1])
        lap_omega, omega_x, omega_y = self._laplacian_and_gradient(mean_omega)
        u = 0.5 * self._inner(psi_y[:, 1:] + psi_y[:, :-1])
        v = -0.5 * self._inner(psi_x[:, 1:] + psi_x[:, :-1])
        rhs = self.nu * lap_omega + self.forcing_field(psi) - (u * omega_x + v * omega_y)
        inner = self._inner(omega)
        pde = inner[:, 1:] - inner[:, :-1] - self.dt * rhs
        initial = self.initial_weight * (inner[:, 0] - omega0)
        return torch.cat([pde.flatten(1), initial.flatten(1)], dim=1)


def _periodic_pad(f: torch.Tensor, width: int) -> torch.Tensor:
    """``f`` (..., nx, ny) extended periodically by ``width`` cells on each side."""
    f = torch.cat([f[..., -width:, :], f, f[..., :width, :]], dim=-2)
    return torch.cat([f[..., -width:], f, f[..., :width]], dim=-1)
