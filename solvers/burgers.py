r"""Viscous Burgers equation $u_t + \sum_d \partial_d(u^2/2) = \nu\,\Delta u$ (1D, 2D).

In 2D this is the scalar equation $u_t + u(u_x + u_y) = \nu\Delta u$. Space: MUSCL
reconstruction with a slope limiter and the Rusanov flux for the convective term (TVD, so
$\nu \to 0$ gives non-oscillatory shocks; second order on smooth data away from extrema),
central differences for diffusion. Time: explicit RK with CFL $\max|u|\,\Delta t\sum_d
1/\Delta x_d \le 1/2$, or ``scheme="imex"`` with implicit diffusion. Reference: the exact
Cole–Hopf solution in :mod:`physml.solvers.exact`.

A Dirichlet side the flow leaves through ($u$ pointing out of the domain) over-determines the
inviscid equation: the Rusanov flux of the last face reads the side's value, so with
$\nu = 0$ (or a boundary layer $\nu/|u|$ thinner than a cell) the last cell keeps an error
that refinement does not remove (a 10 % wave leaving through $u = 1$: 0.0044 with van Leer,
0.05 unlimited, at 128 to 512 cells; the interior converges, L1 second order). Give such a side
a Neumann condition, or a $\nu$ that resolves its layer.
"""

from __future__ import annotations

from .advection import limiter_from_name
from .base import GridSolver
from .dimension_docs import IMEX_THETA, dimension_docstring
from .grid import BoundaryConditions, Grid
from .operators import FluxKind
from .parameters import Parameter, Term
from .solver_options import GridOptions, Unpack


class BurgersSolver(GridSolver):
    r"""Solver of $u_t + \sum_d \partial_d (u^2/2) = \nu\,\Delta u$.

    Args:
        grid: the grid; ``u`` has shape ``grid.shape``.
        bc: boundary conditions (default periodic).
        nu: viscosity $\nu$ [m^2/s], >= 0 (0: inviscid).
        limiter: slope limiter ("van_leer", "minmod", "mc", "none").
        dt (required; ``None``: unset), scheme, theta, device, dtype, check_every, threads:
            see :class:`GridSolver`.
    """

    PARAMETERS = (Parameter("nu", "m^2/s", "viscosity", lower=0.0, term=Term.DIFFUSION),)
    flux_kind = FluxKind.BURGERS

    def __init__(
        self,
        grid: Grid,
        bc: BoundaryConditions | None = None,
        *,
        nu: float,
        dt: float | None,
        limiter: str = "van_leer",
        scheme: str = "ssp_rk3",
        **options: Unpack[GridOptions],
    ) -> None:
        self.limiter = limiter_from_name(limiter)
        super().__init__(grid, bc, parameters={"nu": nu}, dt=dt, scheme=scheme, **options)


_PARAMETERS = """\
        nu: viscosity $\\nu$ [m^2/s], >= 0 (0: inviscid).
"""
_OPTIONS = """\
        limiter: slope limiter: "van_leer" (default), "minmod", "mc" or "none".
        scheme: "ssp_rk3" (default), "euler", "heun", "rk4", or "imex" (implicit diffusion).
""" + IMEX_THETA
_EQUATION = r"$u_t + \sum_d \partial_d (u^2/2) = \nu\,\Delta u$"
_EXAMPLES_1D = r"""
    Examples:
        $u_0 = -\sin \pi x$ on $[-1, 1]$ with $u = 0$ at both ends steepens into a front at
        x = 0; at t = 0.5 the rollout (every 100th of 500 steps kept) is within 1e-3 of the
        exact Cole–Hopf solution:

        >>> import numpy as np
        >>> from physml.solvers import BurgersSolver1D, Grid, dirichlet
        >>> from physml.solvers.exact import burgers_cole_hopf
        >>> grid = Grid((128,), (-1.0,), (1.0,))
        >>> solver = BurgersSolver1D(grid, dirichlet(1), nu=0.05, dt=1e-3)
        >>> u = solver.rollout(-np.sin(np.pi * grid.coords(0)), n_steps=500, save_every=100)
        >>> u.shape
        (6, 128)
        >>> exact = burgers_cole_hopf(grid.coords(0), t=0.5, nu=0.05)
        >>> f"{np.abs(u[-1] - exact).max():.1e}"
        '7.7e-04'
    """


class BurgersSolver1D(BurgersSolver):
    __doc__ = dimension_docstring(_EQUATION, "BurgersSolver", 1, _PARAMETERS, _OPTIONS) \
        + _EXAMPLES_1D

    ndim = 1


class BurgersSolver2D(BurgersSolver):
    __doc__ = dimension_docstring(_EQUATION, "BurgersSolver", 2, _PARAMETERS, _OPTIONS)

    ndim = 2
