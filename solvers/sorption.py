r"""Diffusion–sorption in PDEBench's 1D form (contaminant transport with Freundlich sorption).

$$u_t = \frac{D}{R(u)}\,u_{xx},\qquad
R(u) = 1 + \frac{1-\phi}{\phi}\,\rho_s\,k_f\,n_f\,(u + \epsilon)^{n_f - 1},$$

on $x\in(0,1)$ [m], $t\in(0,500]$ [s], with PDEBench's constants $D = 5\times10^{-4}$ m²/s,
porosity $\phi = 0.29$, bulk density $\rho_s = 2880$ kg/m³, Freundlich parameter
$k_f = 3.5\times10^{-4}$ (m³/kg)$^{n_f}$, exponent $n_f = 0.874$ and $\epsilon = 10^{-6}$ (which
keeps $R$ finite at $u = 0$). Boundaries as PDEBench's finite-volume generator: a ghost cell
$u_{-1} = u_{left}$ (= 1, the source concentration) on the left, and on the right the ghost
$u_N = D\,(u_{N-2} - u_{N-1})/\Delta x$ (an outflow condition $u \approx -D u_x$ at $x = 1$).
Space: the three-point Laplacian on cell centres; time: explicit RK (the problem is mildly
stiff: $\Delta t \lesssim 0.7\,\Delta x^2 R/D$).

**First order in space.** The left ghost puts $u_{left}$ at the ghost cell's centre, half a cell
outside the face $x = 0$ where the boundary value belongs, so the solution converges at first
order, not the interior stencil's second; PDEBench's generator does the same, and the closure
is kept for agreement with PDEBench's data. From $u = 0.2$ to $t = 100$ s (rk4), the cell
averages of successive refinements from 32 to 512 cells differ by at most 2.9e-2, 1.45e-2,
7.3e-3 and 3.6e-3: orders 0.994, 0.999, 1.000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import warp as wp

from .base import GridSolver
from .checks import require
from .grid import Grid, dirichlet
from .kernel_launch import launch, specialize
from .parameters import Parameter
from .solver_options import GridOptions, Unpack

EPSILON = 1e-6
U_LEFT = Parameter("u_left", "1", "source concentration", lower=0.0)
"""The left ghost value: a boundary datum, checked like a parameter but not differentiated."""


@wp.func
def retardation(u: Any, porosity: Any, rho_s: Any, k_f: Any, n_f: Any):
    """R(u) = 1 + (1 - phi)/phi rho_s k_f n_f (u + eps)^(n_f - 1)."""
    one = u.dtype(1.0)
    return one + (one - porosity) / porosity * rho_s * k_f * n_f * wp.pow(
        u + u.dtype(EPSILON), n_f - one
    )


@wp.kernel
def diffusion_sorption_rhs_1d(
    u: wp.array(dtype=Any),
    n: int,
    inv_dx: Any,
    u_left: Any,
    diffusivity: wp.array(dtype=Any),
    porosity: wp.array(dtype=Any),
    rho_s: wp.array(dtype=Any),
    k_f: wp.array(dtype=Any),
    n_f: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out_i = D / R(u_i) (u_{i-1} - 2 u_i + u_{i+1}) / dx^2 with PDEBench's ghost cells.

    Reads u and the parameter arrays (shape (1,)); writes out.
    """
    i = wp.tid()
    d = diffusivity[0]
    left = u_left
    if i > 0:
        left = u[i - 1]
    right = d * (u[n - 2] - u[n - 1]) * inv_dx
    if i < n - 1:
        right = u[i + 1]
    c = u[i]
    lap = ((left - c) + (right - c)) * inv_dx * inv_dx
    out[i] = d / retardation(c, porosity[0], rho_s[0], k_f[0], n_f[0]) * lap


for _T in (wp.float32, wp.float64):
    _arr = wp.array(dtype=_T)
    specialize(
        diffusion_sorption_rhs_1d,
        _T,
        {
            "u": _arr,
            "inv_dx": _T,
            "u_left": _T,
            "diffusivity": _arr,
            "porosity": _arr,
            "rho_s": _arr,
            "k_f": _arr,
            "n_f": _arr,
            "out": _arr,
        },
    )


class DiffusionSorptionSolver1D(GridSolver):
    r"""Solver of PDEBench's diffusion–sorption equation (see the module docstring): first order
    in space, from PDEBench's left boundary closure.

    Args:
        grid: a 1D grid (PDEBench: 1024 cells on [0, 1]); ``u`` has shape ``(nx,)``.
        D: effective diffusivity [m^2/s], > 0.
        porosity: $\phi$ in (0, 1].
        rho_s: bulk density [kg/m^3], >= 0.
        k_f: Freundlich parameter, >= 0.
        n_f: Freundlich exponent, in (0, 1].
        u_left: concentration of the left ghost cell (source), >= 0.
        dt, scheme, device, dtype, check_every, threads: see :class:`GridSolver` (the
            last four: :class:`~physml.solvers.solver_options.GridOptions`).
    """

    ndim = 1
    PARAMETERS = (
        Parameter("D", "m^2/s", "effective diffusivity", lower=0.0, lower_open=True),
        Parameter("porosity", "1", "porosity", lower=0.0, upper=1.0, lower_open=True),
        Parameter("rho_s", "kg/m^3", "bulk density", lower=0.0),
        Parameter("k_f", "(m^3/kg)^n_f", "Freundlich parameter", lower=0.0),
        Parameter("n_f", "1", "Freundlich exponent", lower=0.0, upper=1.0, lower_open=True),
    )

    def __init__(
        self,
        grid: Grid,
        *,
        D: float = 5e-4,
        porosity: float = 0.29,
        rho_s: float = 2880.0,
        k_f: float = 3.5e-4,
        n_f: float = 0.874,
        u_left: float = 1.0,
        dt: float | None,
        scheme: str = "rk4",
        **options: Unpack[GridOptions],
    ) -> None:
        require(
            scheme != "imex",
            "scheme='imex' is not supported for diffusion-sorption "
            "(its diffusivity depends on u); use 'euler', 'ssp_rk3' or 'rk4'",
        )
        self.u_left = U_LEFT.check(u_left, 1)
        parameters = {"D": D, "porosity": porosity, "rho_s": rho_s, "k_f": k_f, "n_f": n_f}
        super().__init__(
            grid, dirichlet(1, self.u_left), parameters=parameters, dt=dt, scheme=scheme, **options
        )

    def check_state(self, u: np.ndarray, name: str = "u0") -> None:
        """A concentration is >= 0: the isotherm's $u^{n_f - 1}$ has no real value below."""
        low = float(np.min(u, initial=0.0))
        if low < 0:
            raise ValueError(f"{name} has negative concentrations (down to {low:.4g}); "
                             "diffusion-sorption needs u >= 0")

    def rates(self, u_max: float) -> dict[str, float]:
        """Diffusive rate $\\max(4, 3 + 2 D/\\Delta x)\\, D / (R_{min} \\Delta x^2)$,
        $R_{min} = R(\\max(u_{max}, u_{left}))$: Gershgorin's bound on the operator's rows. An
        interior row's is $4/\\Delta x^2$; the last row's, through the outflow ghost
        $u_N = D (u_{N-2} - u_{N-1})/\\Delta x$, is $(3 + 2 D/\\Delta x)/\\Delta x^2$, the larger
        one from $\\Delta x < 2 D$ (above 1000 cells with PDEBench's D, its 1024 included,
        where the step is 0.6 % below the interior rows' limit; a step at that limit blows up at
        4096 cells)."""
        u = max(u_max, self.u_left) + EPSILON
        r_min = 1 + (1 - self.porosity) / self.porosity * self.rho_s * self.k_f * self.n_f * (
            u ** (self.n_f - 1)
        )
        dx = self.grid.dx[0]
        return {
            "diffusion": max(4.0, 3.0 + 2.0 * self.D / dx) * self.D / r_min / dx**2,
            "advection": 0.0,
            "reaction": 0.0,
        }

    def rhs(self, u: wp.array, params: dict[str, wp.array], with_diffusion: bool = True):
        """$F(u) = D\\,\\partial_{xx} u / R(u)$ as a new flat array (the ghost cells as the
        module docstring says), as :meth:`GridSolver.rhs <physml.solvers.base.GridSolver.rhs>`."""
        out = self.layout.empty(u.requires_grad or any(p.requires_grad for p in params.values()))
        T = self.dtype
        launch(
            diffusion_sorption_rhs_1d,
            self.dtype,
            dim=self.grid.size,
            inputs=[
                u,
                self.grid.size,
                T(1.0 / self.grid.dx[0]),
                T(self.u_left),
                params["D"],
                params["porosity"],
                params["rho_s"],
                params["k_f"],
                params["n_f"],
            ],
            outputs=[out],
            device=self.device,
        )
        return out
