r"""Residual rows of PDEBench's diffusion–sorption equation on a space–time grid.

$$R(u)\,u_t = D\,u_{xx},\qquad R(u) = 1 + \frac{1-\phi}{\phi}\,\rho_s k_f n_f
(u + \epsilon)^{n_f - 1},$$
on cell centres $x_i = (i + \tfrac12)\Delta x$ of $[0, 1]$ and times $t_n = n\Delta t$, with the
boundaries of :class:`~physml.solvers.DiffusionSorptionSolver1D` (left ghost $u_{-1} =
u_{left}$, right ghost $u_N = D(u_{N-2} - u_{N-1})/\Delta x$). The rows are the Crank–Nicolson
discretisation, second order in space and time, at the half levels $n + \tfrac12$:
$$\Delta t\Big[R(\bar u)\frac{u^{n+1}_i - u^n_i}{\Delta t}
- \frac{D}{2}\big(L u^{n+1} + L u^{n}\big)_i\Big],\qquad \bar u = \tfrac12(u^n_i + u^{n+1}_i)$$
($L$ the three-point Laplacian with the ghosts; $\bar u$ is clipped at 0 inside $R$), except the
first step, backward Euler ($R(u^1)(u^1 - u^0) - \Delta t\,D\,L u^1$): the initial field meets
the left boundary's $u_{left} = 1$ in a jump, which Crank–Nicolson (amplification $\to -1$ for
$D\Delta t k^2 \gg 1$) carries on as an oscillation that goes negative (the field meeting the
rows exactly was 3.2 % from the reference trajectories at 256 cells and 101 levels; 0.51 % with
the first step backward Euler, Rannacher's start). The initial-condition rows
$w_0 (u^0_i - u_{0,i})$ follow. The rows are affine in $u^{n}$, $u^{n+1}$ up
to the factor $R(\bar u)$: the inner solve is a nonlinear least-squares problem.

The clip is a kink: $R$ is flat for $\bar u < 0$ and falls with slope
$(n_f - 1)\,c\,\epsilon^{n_f - 2} \approx -1.6\times10^{6}$ just above 0 ($c$ the factor
of $R$). A fit that undershoots (the physical field stays positive) can leave points at
$\bar u \le 0$, and its least-squares optimum then tends to sit at or next to the kink, where
the rows are not differentiable: there the implicit-function gradient of a hard constraint is
not the gradient, and its inner solve converges slowly. :meth:`DiffusionSorptionRows.kink_share`
measures how many points are affected (a ``kind: moe`` run reports it as ``cells_at_kink``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..solvers.errors import is_real, whole_number
from ..solvers.parameters import check_parameters
from ..solvers.sorption import EPSILON, DiffusionSorptionSolver1D


@dataclass(frozen=True)
class DiffusionSorptionRows:
    """Residual rows on an ``(nt, nx)`` grid with spacing ``dt`` [s] (PDEBench's constants).

    ``rows(u, u0)``: ``u`` (B, nt, nx), ``u0`` (B, nx) -> (B, (nt - 1) nx + nx); a ``u`` of
    another number of cells is refused.

    Args:
        nx: cells on $[0, 1]$, a whole number >= 2.
        dt: time between levels [s], > 0.
        D: effective diffusivity [m^2/s], > 0.
        porosity: $\\phi$, in (0, 1].
        rho_s: bulk density $\\rho_s$ [kg/m^3], >= 0.
        k_f: Freundlich parameter $k_f$ [(m^3/kg)^n_f], >= 0.
        n_f: Freundlich exponent $n_f$, in (0, 1].
        u_left: the left boundary value $u_{left}$ (the left ghost cell's).
        initial_weight: $w_0$, the weight of the initial-condition rows.

    Raises:
        ValueError: a value outside its range, or one that is not a finite number; in
            ``rows``, a grid of other than ``nx`` cells.
    """

    periodic_space: ClassVar[bool] = False
    """The domain has boundaries: its ends are no interface."""

    level_constant_free: ClassVar[bool] = False
    """The rows see the concentration itself (the sorption term), not only its differences."""

    nx: int
    dt: float
    D: float = 5e-4
    porosity: float = 0.29
    rho_s: float = 2880.0
    k_f: float = 3.5e-4
    n_f: float = 0.874
    u_left: float = 1.0
    initial_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "nx", whole_number(self.nx, "nx", 2))
        if not (is_real(self.dt) and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt={self.dt!r} must be a number > 0 (seconds between grid levels)")
        check_parameters(DiffusionSorptionSolver1D.PARAMETERS,  # the solver's ranges
                         self.physical_parameters(), 1)
        for name in ("u_left", "initial_weight"):
            if not (is_real(getattr(self, name)) and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a finite number")

    def physical_parameters(self) -> dict[str, float]:
        """The solver's parameters these rows hold, by the solver's names (D, porosity,
        rho_s, k_f, n_f)."""
        return {p.name: getattr(self, p.name) for p in DiffusionSorptionSolver1D.PARAMETERS}

    @property
    def space_shape(self) -> tuple[int]:
        return (self.nx,)

    @property
    def condition_rows(self) -> int:
        """The initial rows, which end the rows: one per cell."""
        return self.nx

    def observe(self, u: torch.Tensor) -> torch.Tensor:
        """The field compared with the reference: $u$ itself."""
        return u

    def retardation(self, u: torch.Tensor) -> torch.Tensor:
        """$R(u)$, with $u$ clipped at 0 (a kink: module docstring)."""
        factor = (1 - self.porosity) / self.porosity * self.rho_s * self.k_f * self.n_f
        return 1 + factor * (u.clamp_min(0) + EPSILON) ** (self.n_f - 1)

    def laplacian(self, u: torch.Tensor) -> torch.Tensor:
        """Three-point Laplacian over the last axis with the solver's ghost cells."""
        dx = 1.0 / self.nx
        left = torch.full_like(u[..., :1], self.u_left)
        right = self.D * (u[..., -2:-1] - u[..., -1:]) / dx
        padded = torch.cat([left, u, right], dim=-1)
        return (padded[..., :-2] - 2 * u + padded[..., 2:]) / dx**2

    @staticmethod
    def retardation_points(u: torch.Tensor) -> torch.Tensor:
        """Where the rows take $R$: $u^1$ for the first step, $\\bar u$ for the others,
        ``u`` (B, nt, nx) -> (B, nt - 1, nx)."""
        return torch.cat([u[:, 1:2], 0.5 * (u[:, 2:] + u[:, 1:-1])], dim=1)

    def kink_share(self, u: torch.Tensor) -> torch.Tensor:
        """The share of :meth:`retardation_points` of ``u`` (B, nt, nx) at which $R$'s argument
        is $\\le 0$, where the rows are clipped (module docstring), per sample (B,)."""
        return (self.retardation_points(u) <= 0).flatten(1).double().mean(1)

    def rows(self, u: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
        """The rows of ``u`` (B, nt, nx) from ``u0`` (B, nx) (class docstring); a ``u`` whose
        last axis is not these rows' ``nx`` cells is refused (its cell size is not theirs)."""
        if u.shape[-1] != self.nx:
            raise ValueError(f"u has {u.shape[-1]} cells on its last axis (shape "
                             f"{tuple(u.shape)}) but these diffusion-sorption rows were built "
                             f"for nx={self.nx} (cell size 1/{self.nx}); build the rows with "
                             "the grid's number of cells")
        lap = self.laplacian(u)
        theta = torch.full((u.shape[1] - 1, 1), 0.5, dtype=u.dtype, device=u.device)
        theta[:1] = 1.0  # the first step backward Euler: implicit weight 1
        r = self.retardation(self.retardation_points(u))
        pde = r * (u[:, 1:] - u[:, :-1]) - self.dt * self.D * (
            theta * lap[:, 1:] + (1 - theta) * lap[:, :-1])
        initial = self.initial_weight * (u[:, 0] - u0)
        return torch.cat([pde.flatten(1), initial], dim=1)
