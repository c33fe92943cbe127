r"""Heat / diffusion equation $u_t = \nu\,\Delta u$ on a uniform grid (1D, 2D, 3D).

Boundaries: periodic, Dirichlet or Neumann per side. Space: second-order central differences.
Time: explicit RK (stable for $\nu\Delta t\sum_d 4/\Delta x_d^2 \le$ the scheme's real-axis
limit) or ``scheme="imex"`` (Crank–Nicolson, unconditionally stable, second order).
"""

from __future__ import annotations

from .base import GridSolver
from .dimension_docs import IMEX_THETA, dimension_docstring
from .grid import BoundaryConditions, Grid
from .parameters import Parameter, Term
from .solver_options import GridOptions, Unpack


class HeatSolver(GridSolver):
    r"""Solver of $u_t = \nu\,\Delta u$.

    Args:
        grid: the grid; ``u`` has shape ``grid.shape``.
        bc: boundary conditions (default periodic).
        nu: diffusivity $\nu$ [m^2/s], > 0.
        dt (required; ``None``: unset), scheme, theta, device, dtype, check_every, threads:
            see :class:`GridSolver`.
    """

    PARAMETERS = (
        Parameter("nu", "m^2/s", "diffusivity", lower=0.0, lower_open=True, term=Term.DIFFUSION),
    )

    def __init__(
        self,
        grid: Grid,
        bc: BoundaryConditions | None = None,
        *,
        nu: float,
        dt: float | None,
        scheme: str = "rk4",
        **options: Unpack[GridOptions],
    ) -> None:
        super().__init__(grid, bc, parameters={"nu": nu}, dt=dt, scheme=scheme, **options)


_PARAMETERS = """\
        nu: diffusivity $\\nu$ [m^2/s], > 0.
"""
_OPTIONS = """\
        scheme: "rk4" (default), "euler", "heun", "ssp_rk3", or "imex" (implicit diffusion).
""" + IMEX_THETA
_EQUATION = r"$u_t = \nu\,\Delta u$"
_EXAMPLES_1D = r"""
    Examples:
        A sine mode on a periodic grid decays as $e^{-\nu t}$; the rollout keeps every 10th of
        100 steps (t = 0, 0.1, ..., 1), and its error at t = 1 is the central differences',
        $\nu t\,\Delta x^2 e^{-\nu t} / 12$:

        >>> import numpy as np
        >>> from physml.solvers import Grid, HeatSolver1D, periodic
        >>> from physml.solvers.exact import heat_fourier_mode
        >>> grid = Grid((64,), (0.0,), (2 * np.pi,))
        >>> solver = HeatSolver1D(grid, periodic(1), nu=0.1, dt=0.01)
        >>> u = solver.rollout(np.sin(grid.coords(0)), n_steps=100, save_every=10)
        >>> u.shape
        (11, 64)
        >>> exact = heat_fourier_mode((grid.coords(0),), nu=0.1, t=1.0, wavenumbers=(1,))
        >>> f"{np.abs(u[-1] - exact).max():.1e}"
        '7.3e-05'
    """


class HeatSolver1D(HeatSolver):
    __doc__ = dimension_docstring(_EQUATION, "HeatSolver", 1, _PARAMETERS, _OPTIONS) \
        + _EXAMPLES_1D

    ndim = 1


class HeatSolver2D(HeatSolver):
    __doc__ = dimension_docstring(_EQUATION, "HeatSolver", 2, _PARAMETERS, _OPTIONS)

    ndim = 2
