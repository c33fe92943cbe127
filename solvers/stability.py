r"""The stability analysis of a grid solver's time step.

Each term $k$ of $F(u)$ (diffusion, advection, reaction) has a spectral-radius estimate
$\lambda_k$ [1/s] (:meth:`~physml.solvers.base.GridSolver.rates`) and the scheme a stability
limit $L_k$ on its axis (real: diffusion and reaction; imaginary: central advection; 1/2 for the
TVD flux). The step is stable when

$$\Delta t \le 1 / \sum_k (\lambda_k / L_k);$$

with ``scheme="imex"`` diffusion is implicit and drops out, and the explicit part is forward
Euler. The rates of nonlinear terms depend on a state only through a bound on $|u|$
(:func:`cell_and_ghost_bounds`), monotonically.
"""

from __future__ import annotations

import decimal
import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import warp as wp

from .checks import require
from .errors import UnstableStepError
from .grid import BCKind, BoundaryConditions, Grid
from .operators import FLUXES, REACTIONS, FluxKind, Limiter
from .timestepping import Tableau, tableau

if TYPE_CHECKING:
    from .base import GridSolver

TVD_CFL = 0.5
"""CFL limit of the MUSCL (TVD) flux: $\\max|f'|\\,\\Delta t/\\Delta x \\le 1/2$."""


def operator_rates(solver: GridSolver, u_max: float) -> dict[str, float]:
    """The rates of the convection–diffusion–reaction operator of ``solver`` for $|u| \\le$
    ``u_max`` (what :meth:`~physml.solvers.base.GridSolver.rates` returns)."""
    inv_dx, inv_dx2_sum = _inverse_spacings(solver.grid)
    params = solver.parameters()
    velocity = (
        np.zeros(solver.grid.ndim)
        if solver.velocity_parameter is None
        else params[solver.velocity_parameter]
    )
    speed = FLUXES[solver.flux_kind].wave_speed(velocity, u_max)
    with np.errstate(over="ignore"):  # an infinite rate is told by term_costs
        rates = {"diffusion": 0.0, "advection": float(np.sum(speed * inv_dx)), "reaction": 0.0}
        if solver.diffusion_parameter is not None:
            rates["diffusion"] = float(params[solver.diffusion_parameter][0] * 4 * inv_dx2_sum)
        if solver.reaction_parameter is not None:
            slope = REACTIONS[solver.reaction_kind](u_max)
            rates["reaction"] = float(params[solver.reaction_parameter][0] * slope)
    return rates


@functools.lru_cache(maxsize=64)
def _inverse_spacings(grid: Grid) -> tuple[np.ndarray, np.float64]:
    """$1/\\Delta x_d$ per axis (read only) and $\\sum_d 1/\\Delta x_d^2$ of ``grid``: made once
    per grid, not at each stability check."""
    inv_dx = np.array([1.0 / h for h in grid.dx])
    inv_dx.flags.writeable = False
    return inv_dx, np.sum(inv_dx**2)


def cell_and_ghost_bounds(grid: Grid, bc: BoundaryConditions, u: np.ndarray) -> np.ndarray:
    """$\\max|u|$ of each state of ``u`` (one state or a batch, each of ``grid.shape`` or
    flat) over its cells and its Dirichlet ghost cells ($2v - u$ of the cells they mirror):
    shape ``(B,)``.

    Raises:
        ValueError: ``u`` of another shape, naming the allowed ones."""
    u = np.asarray(u, dtype=np.float64)
    shape, size = grid.shape, grid.size
    require(u.size and (u.shape in (shape, (size,))
                        or (u.ndim > 1 and u.shape[1:] in (shape, (size,)))),
            f"u has shape {u.shape}; expected a state {shape} (or flat, ({size},)) or a "
            f"batch (B, *{shape}) with B >= 1")
    cells = u.reshape(-1, *shape)
    batch = len(cells)
    bound = np.abs(cells.reshape(batch, -1)).max(axis=1, initial=0.0)
    for d, sides in enumerate(bc.sides):
        for side, condition in enumerate(sides):
            if condition.kind != BCKind.DIRICHLET or condition.value == 0:
                continue  # a zero value mirrors |u|
            n = grid.shape[d]
            layers = range(min(2, n)) if side == 0 else range(n - min(2, n), n)
            ghosts = 2 * condition.value - np.take(cells, list(layers), axis=1 + d)
            bound = np.maximum(bound, np.max(np.abs(ghosts.reshape(batch, -1)), axis=1,
                                              initial=0.0))
    return bound


def term_costs(solver: GridSolver, u: np.ndarray | None, implicit_diffusion: bool,
               bound: float | None = None) -> dict[str, float]:
    """$\\lambda_k / L_k$ per term [1/s] for the state ``u`` (or the
    :meth:`~physml.solvers.base.GridSolver.state_bound` ``bound``; linear terms only if both
    are None); the explicit part of IMEX is forward Euler.

    Raises:
        ValueError: a term's rate is not finite (its parameters or the state beyond float64 on
            this grid: no step is stable), naming the term.
    """
    u_max = bound if bound is not None else 0.0 if u is None else solver.state_bound(u)
    rates = solver.rates(u_max)
    infinite = [term for term, rate in rates.items() if not np.isfinite(rate)]
    if infinite:
        raise ValueError(f"the {infinite[0]} term's rate is not finite (its parameters, or "
                         "the state, are beyond float64 on this grid): no time step is stable")
    explicit = _explicit_part(solver, implicit_diffusion)
    costs = {
        "diffusion": 0.0 if implicit_diffusion else rates["diffusion"] / explicit.real_limit,
        "advection": 0.0,
        "reaction": rates["reaction"] / explicit.real_limit,
    }
    if rates["advection"] > 0:
        limit = explicit.imag_limit
        if FLUXES[solver.flux_kind].tvd:  # a limiter keeps forward Euler TVD up to CFL 1/2;
            # Fromm's unlimited slopes amplify under it at every CFL (the multi-stage
            # schemes stay stable at 1/2)
            limit = 0.0 if _unlimited_euler(solver, explicit) else TVD_CFL
        costs["advection"] = np.inf if limit == 0 else rates["advection"] / limit
    return costs


def require_a_stable_step(solver: GridSolver) -> None:
    """Raise :class:`UnstableStepError` (``dt_max`` 0) if the advection's explicit step is
    unstable at every dt and every nonzero wave speed (a given velocity of 0 passes), whatever
    the state and the step: central differences under a scheme whose stability region holds
    no stretch of the imaginary axis, Fromm's unlimited flux under forward Euler. Checked at
    construction and for new parameters, with or without a
    ``dt``, so that :meth:`~physml.solvers.base.GridSolver.stable_dt` never has 0 to offer."""
    if solver.flux_kind == FluxKind.NONE or (  # a linear flux at speed 0 moves nothing
            solver.velocity_parameter is not None
            and not np.any(solver.parameters()[solver.velocity_parameter])):
        return
    explicit = _explicit_part(solver, solver.tableau is None)
    name = type(solver).__name__
    if _unlimited_euler(solver, explicit):
        message = ("the unlimited MUSCL flux (limiter 'none', Fromm's scheme) is unstable with "
                   f"a forward-Euler advection step (scheme '{solver.scheme}') at any dt; use a "
                   f"limiter (van_leer, minmod, mc) or scheme 'heun', 'ssp_rk3' or 'rk4' ({name})")
    elif not FLUXES[solver.flux_kind].tvd and explicit.imag_limit == 0:
        message = (f"central differences for advection are unstable with scheme "
                   f"'{solver.scheme}' at any dt; use scheme 'ssp_rk3' or 'rk4', or "
                   f"space='upwind' ({name})")
    else:
        return
    raise UnstableStepError(message, dt=solver.dt, dt_max=0.0)


def stability_limit(costs: dict[str, float]) -> float:
    """$\\Delta t_{max} = 1/\\sum_k c_k$ from the per-term costs (inf when all are 0)."""
    total = sum(costs.values())
    return float(np.inf) if total == 0 else float(1.0 / total)


def _explicit_part(solver: GridSolver, implicit_diffusion: bool) -> Tableau:
    """The explicit scheme: forward Euler for the explicit part of IMEX."""
    return tableau("euler") if implicit_diffusion else solver.tableau


def _unlimited_euler(solver: GridSolver, explicit: Tableau) -> bool:
    """Whether the advection is Fromm's unlimited MUSCL flux stepped by forward Euler
    (``scheme='euler'``, or the explicit part of ``'imex'``): unstable at every step."""
    return (FLUXES[solver.flux_kind].tvd and solver.limiter == Limiter.NONE
            and explicit.name == "euler")


def implicit_diffusion_limit(solver: GridSolver, u: np.ndarray | None = None, *,
                             bound: float | None = None) -> float | None:
    """The stable step with implicit diffusion (``scheme='imex'``) where diffusion sets the
    explicit scheme's limit and an implicit diffusion step allows a larger one (inf: no limit
    left), else None; for the state ``u`` or a bound on it, as :func:`check_step_stability`."""
    costs = term_costs(solver, u, solver.tableau is None, bound)
    if max(costs, key=costs.get) != "diffusion" or solver.diffusion_parameter is None:
        return None
    imex_max = stability_limit(term_costs(solver, u, implicit_diffusion=True, bound=bound))
    return imex_max if imex_max > stability_limit(costs) else None


def check_step_stability(solver: GridSolver, u: np.ndarray | None = None, *,
                    bound: float | None = None) -> None:
    """Raise :class:`UnstableStepError` if ``solver.dt`` exceeds the stable step of the state
    ``u`` (or of a state whose bound is ``bound``; linear terms only if both are None).

    The message names the term that sets the limit, and offers ``scheme='imex'`` only
    where diffusion sets it and an implicit diffusion step would allow a larger ``dt``.
    """
    costs = term_costs(solver, u, solver.tableau is None, bound)
    dt_max = stability_limit(costs)
    if solver.dt <= dt_max * (1 + 1e-12):
        return
    name = type(solver).__name__
    require_a_stable_step(solver)  # dt_max = 0 only where no step is stable
    binding = max(costs, key=costs.get)
    hint = ""
    imex_max = implicit_diffusion_limit(solver, u, bound=bound)
    if imex_max is not None:
        unknown = u is None and bound is None and solver.flux_kind != FluxKind.NONE
        rest = (f"dt<={imex_max:.4g}" if not np.isinf(imex_max) else
                "the advection term's limit, set by the state, then applies" if unknown
                else "no limit left")
        hint = f", or scheme='imex' (implicit diffusion; {rest})"
    given, limit = distinct_digits(solver.dt, dt_max)
    raise UnstableStepError(
        f"dt={given} exceeds the stability limit {limit} of scheme "
        f"'{solver.scheme}' for {name} on a grid with dx={format_values(solver.grid.dx)}, set "
        f"by its {binding} term; pass dt<={rounded_down(dt_max)}{hint}",
        dt=solver.dt,
        dt_max=dt_max,
    )


def distinct_digits(a: float, b: float, digits: int = 4) -> tuple[str, str]:
    """``a`` and ``b`` printed with ``digits`` significant digits, or as many more as tell
    them apart (a step just above its limit printed the same number twice)."""
    while digits < 17 and f"{a:.{digits}g}" == f"{b:.{digits}g}":
        digits += 1
    return f"{a:.{digits}g}", f"{b:.{digits}g}"


def rounded_down(x: float, digits: int = 4) -> str:
    """Positive ``x`` printed with ``digits`` significant digits, rounded towards zero, so a
    suggested step within a limit stays within it once read back."""
    with decimal.localcontext() as context:  # (its keyword arguments need Python 3.11)
        context.prec, context.rounding = digits, decimal.ROUND_DOWN
        return f"{context.plus(decimal.Decimal(repr(float(x)))).normalize():g}"


def check_samples(solver: GridSolver, arrays: dict[str, wp.array], states: np.ndarray,
                  steps: np.ndarray) -> None:
    r""":func:`check_step_stability` of every sample of a batch (states ``(B, n)``, steps
    ``(B,)``, parameter arrays of
    :meth:`~physml.solvers.base.GridSolver.batch_parameter_arrays`), raising for the first
    that fails. Samples sharing their parameters and time step are checked as one: the limit
    depends on a state only through its bound, and monotonically (the rates bound wave speeds,
    reaction slopes and the sorption retardation over $|u| \le$ the bound), so the group
    passes when its states of the smallest and the largest bound do; a group that does not is
    checked sample by sample, for the error of the first failing one."""
    if all(array.shape[0] == 1 for array in arrays.values()):
        u_max = solver.state_bounds(states)
        try:
            for dt in steps if len(steps) == 1 else np.unique(steps):
                sample = solver.shared_sample_solver(arrays, dt)
                group = u_max[steps == dt]
                for extreme in {float(group.min()), float(group.max())}:  # one: one sample
                    sample.check_stability(bound=extreme)
            return
        except UnstableStepError:
            pass
    for b in range(len(states)):
        solver.sample_solver(arrays, b, steps[b]).check_stability(states[b])


def format_values(value: Any) -> str:
    """A number, or a tuple of them (per axis), to 4 significant digits."""
    if isinstance(value, tuple | list | np.ndarray):
        return "(" + ", ".join(f"{v:.4g}" for v in value) + ")"
    return f"{value:.4g}"
