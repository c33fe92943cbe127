r"""Reaction–diffusion equations with a pointwise source $\rho\,r(u)$ (1D, 2D).

* Allen–Cahn: $u_t = \nu\,\Delta u + \rho\,(u - u^3)$; stable states $\pm1$, interfaces of width
  $\sim\sqrt{\nu/\rho}$. Exact travelling front in :mod:`physml.solvers.exact`.
* Diffusion–reaction (Fisher–KPP), PDEBench's 1D form:
  $u_t = \nu\,u_{xx} + \rho\,u(1-u)$ on $x\in(0,1)$, periodic, $\nu\in\{0.5,1,2,5\}$,
  $\rho\in\{1,2,5,10\}$, $t\in(0,1]$.

Space: central differences (second order). Time: explicit RK or ``scheme="imex"``.
"""

from __future__ import annotations

from .base import GridSolver
from .dimension_docs import IMEX_THETA, dimension_docstring
from .grid import BoundaryConditions, Grid
from .operators import ReactionKind
from .parameters import Parameter, Term
from .solver_options import GridOptions, Unpack


class _ReactionDiffusionSolver(GridSolver):
    PARAMETERS = (
        Parameter("nu", "m^2/s", "diffusivity", lower=0.0, lower_open=True, term=Term.DIFFUSION),
        Parameter("rho", "1/s", "reaction rate", lower=0.0, term=Term.REACTION),
    )

    def __init__(
        self,
        grid: Grid,
        bc: BoundaryConditions | None = None,
        *,
        nu: float,
        rho: float,
        dt: float | None,
        scheme: str = "rk4",
        **options: Unpack[GridOptions],
    ) -> None:
        parameters = {"nu": nu, "rho": rho}
        super().__init__(grid, bc, parameters=parameters, dt=dt, scheme=scheme, **options)


class AllenCahnSolver(_ReactionDiffusionSolver):
    r"""Solver of $u_t = \nu\,\Delta u + \rho\,(u - u^3)$.

    Args:
        grid: the grid; ``u`` has shape ``grid.shape``.
        bc: boundary conditions (default periodic).
        nu: diffusivity $\nu$ [m^2/s], > 0.
        rho: reaction rate $\rho$ [1/s], >= 0.
        dt (required; ``None``: unset), scheme, theta, device, dtype, check_every, threads:
            see :class:`GridSolver`.
    """

    reaction_kind = ReactionKind.ALLEN_CAHN


_ALLEN_CAHN_PARAMETERS = """\
        nu: diffusivity $\\nu$ [m^2/s], > 0.
        rho: reaction rate $\\rho$ [1/s], >= 0.
"""
_ALLEN_CAHN_OPTIONS = """\
        scheme: "rk4" (default), "euler", "heun", "ssp_rk3", or "imex" (implicit diffusion).
""" + IMEX_THETA
_ALLEN_CAHN = r"$u_t = \nu\,\Delta u + \rho\,(u - u^3)$"


class AllenCahnSolver1D(AllenCahnSolver):
    __doc__ = dimension_docstring(_ALLEN_CAHN, "AllenCahnSolver", 1, _ALLEN_CAHN_PARAMETERS,
                                 _ALLEN_CAHN_OPTIONS)

    ndim = 1


class AllenCahnSolver2D(AllenCahnSolver):
    __doc__ = dimension_docstring(_ALLEN_CAHN, "AllenCahnSolver", 2, _ALLEN_CAHN_PARAMETERS,
                                 _ALLEN_CAHN_OPTIONS)

    ndim = 2


class DiffusionReactionSolver1D(_ReactionDiffusionSolver):
    r"""Solver of PDEBench's 1D diffusion–reaction $u_t = \nu\,u_{xx} + \rho\,u(1-u)$.

    Args:
        grid: a 1D grid (PDEBench: 1024 cells on [0, 1]); ``u`` has shape ``(nx,)``.
        bc: boundary conditions (default periodic, as PDEBench).
        nu: diffusivity $\nu$ [m^2/s], > 0.
        rho: reaction rate $\rho$ [1/s], >= 0.
        dt (required; ``None``: unset), scheme, theta, device, dtype, check_every, threads:
            see :class:`GridSolver`.
    """

    ndim = 1
    reaction_kind = ReactionKind.FISHER
