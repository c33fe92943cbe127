r"""Linear advection $u_t + \boldsymbol\beta\cdot\nabla u = 0$ on a uniform grid (1D, 2D).

Space: ``space="central"`` (second-order central differences, non-dissipative; needs an RK
scheme with an imaginary-axis stability interval: ``ssp_rk3`` or ``rk4``, CFL
$\sum_d|\beta_d|\Delta t/\Delta x_d \le \sqrt3$ or $2\sqrt2$; periodic boundaries only: at a
wall the reflected ghost cells of a Dirichlet or Neumann side hold a value the outgoing wave
does not carry, and the central operator gains a non-decaying sawtooth mode that grows linearly,
so a pulse that should leave the domain stays and grows) or ``space="upwind"`` (MUSCL
reconstruction with a slope limiter and the upwind/Rusanov flux: TVD, second order on smooth
data away from extrema, CFL $\le 1/2$). A wall side a wave leaves through (its outflow) holds
no data of a hyperbolic problem; its ghost cells still hold the side's condition, which the
limiter clips to a first-order reconstruction in the last cell (max error first order there,
second order in L1); the unlimited reconstruction (``limiter="none"``, Fromm's scheme) reads the
odd-reflected ghost of a Dirichlet side and leaves a sawtooth that refinement does not remove,
so it is refused with a Dirichlet side.
"""

from __future__ import annotations

from .base import GridSolver
from .checks import require
from .dimension_docs import dimension_docstring
from .grid import BCKind, BoundaryConditions, Grid
from .operators import FluxKind, Limiter
from .parameters import Parameter, Term
from .solver_options import GridOptions, Unpack

SPACE_SCHEMES = {"central": FluxKind.LINEAR_CENTRAL, "upwind": FluxKind.LINEAR_UPWIND}


def limiter_from_name(name: str) -> Limiter:
    """Resolve a limiter name ("van_leer", "minmod", "mc", "none")."""
    try:
        return Limiter[name.upper()]
    except KeyError:
        allowed = ", ".join(m.name.lower() for m in Limiter)
        raise ValueError(f"unknown limiter {name!r}; allowed: {allowed}") from None


class AdvectionSolver(GridSolver):
    r"""Solver of $u_t + \boldsymbol\beta\cdot\nabla u = 0$.

    Args:
        grid: the grid; ``u`` has shape ``grid.shape``.
        bc: boundary conditions (default periodic).
        beta: advection velocity [m/s]: a number (1D) or one entry per axis.
        space: "upwind" (TVD, default) or "central" (periodic boundaries only).
        limiter: slope limiter of the upwind scheme ("van_leer", "minmod", "mc", "none"; "none"
            not with a Dirichlet side).
        dt (required; ``None``: unset), scheme, device, dtype, check_every, threads: see
            :class:`GridSolver`.
    """

    PARAMETERS = (
        Parameter("beta", "m/s", "advection velocity", per_axis=True, term=Term.ADVECTION),
    )

    def __init__(
        self,
        grid: Grid,
        bc: BoundaryConditions | None = None,
        *,
        beta,
        dt: float | None,
        space: str = "upwind",
        limiter: str = "van_leer",
        scheme: str = "ssp_rk3",
        **options: Unpack[GridOptions],
    ) -> None:
        require(
            space in SPACE_SCHEMES,
            f"space={space!r} is not supported; allowed: {', '.join(SPACE_SCHEMES)}",
        )
        self.space = space
        self.flux_kind = SPACE_SCHEMES[space]
        self.limiter = limiter_from_name(limiter)
        super().__init__(grid, bc, parameters={"beta": beta}, dt=dt, scheme=scheme, **options)
        walls = [axis for axis in range(grid.ndim) if not self.bc.is_periodic(axis)]
        if space == "central" and walls:  # after the base class has checked bc against grid
            raise ValueError(f"space='central' needs periodic boundaries; axis {walls[0]} has a "
                             "wall (central differences keep and amplify a wave at a Dirichlet "
                             "or Neumann side instead of letting it leave): use space='upwind'")
        fixed = [axis for axis in walls if BCKind.DIRICHLET in
                 (side.kind for side in self.bc.sides[axis])]
        if self.limiter == Limiter.NONE and fixed:
            raise ValueError(f"limiter='none' cannot take the Dirichlet side of axis {fixed[0]}: "
                             "the unlimited reconstruction reads its reflected ghost cells "
                             "where a wave leaves, and its error there does not shrink under "
                             "refinement; use a limiter ('van_leer', 'minmod' or 'mc': first "
                             "order in the outflow cell) or a Neumann or periodic side")


_VELOCITY = {1: """\
        beta: advection velocity $\\beta$ [m/s], a number.
""", 2: """\
        beta: advection velocity $\\beta$ [m/s]: two entries, one per axis.
"""}
_OPTIONS = """\
        space: "upwind" (TVD, default) or "central" (periodic boundaries only).
        limiter: slope limiter of the upwind scheme: "van_leer" (default), "minmod", "mc" or
            "none" (not with a Dirichlet side).
        scheme: "ssp_rk3" (default), "euler", "heun" or "rk4" (no diffusion: no "imex").
"""
_EQUATION = r"$u_t + \boldsymbol\beta\cdot\nabla u = 0$"


class AdvectionSolver1D(AdvectionSolver):
    __doc__ = dimension_docstring(_EQUATION, "AdvectionSolver", 1, _VELOCITY[1], _OPTIONS)

    ndim = 1


class AdvectionSolver2D(AdvectionSolver):
    __doc__ = dimension_docstring(_EQUATION, "AdvectionSolver", 2, _VELOCITY[2], _OPTIONS)

    ndim = 2
