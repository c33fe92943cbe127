"""One sample of a dataset on a grid: its initial state, its time-stepping scheme and step
plan, and its trajectory, solved alone or with others in one batched rollout.

Sample ``j`` of a spec draws its initial condition from ``numpy.random.default_rng([spec.seed,
j])``; a sample's trajectory ``(n_saves, *grid)`` is bitwise the same whether solved alone
(:func:`solve_sample`) or in a batch ``(B, n_saves, *grid)`` (:func:`solve_batch`). Used by the
shard writer (:mod:`physml.datasets.grid_generate`) and by training that draws its samples on the
fly.
"""

from __future__ import annotations

import math

import numpy as np

from ..solvers.base import GridSolver
from ..solvers.built_solver import shallow_copy
from .initial_conditions import INITIAL_CONDITIONS
from .problems import build_solver
from .spec import DatasetSpec


def initial_state(spec: DatasetSpec, grid, seed: int) -> np.ndarray:
    """u0 of sample ``seed``, from ``default_rng([spec.seed, seed])``."""
    rng = np.random.default_rng([spec.seed, seed])
    initial = INITIAL_CONDITIONS[spec.initial_condition.kind]
    return initial(grid, rng, **spec.initial_condition.options)


class ToleranceNotMet(ValueError):
    """Implicit diffusion would need steps shorter than an explicit scheme's stable one to
    meet ``solver.tolerance`` (:func:`step_plan`)."""


def choose_scheme(spec: DatasetSpec, solver, u0: np.ndarray) -> str | None:
    """The spec's scheme; for "auto", "imex" when explicit diffusion would need a step
    under half the convective/reactive one (diffusion-dominated), else the solver default.
    IMEX's explicit part is forward Euler (first order); :func:`step_plan` bounds its step by
    ``solver.tolerance`` (:func:`planned_scheme` falls back to the solver default where that
    bound would take steps shorter than an explicit scheme's)."""
    if spec.solver.scheme != "auto":
        return spec.solver.scheme
    if solver.diffusion_parameter is None:
        return None
    rates = solver.rates(float(np.max(np.abs(u0))))
    diffusive = rates["diffusion"] / solver.tableau.real_limit
    other = rates["advection"] / 0.5 + rates["reaction"] / solver.tableau.real_limit
    return "imex" if diffusive > 2 * other else None


def step_plan(spec: DatasetSpec, solver, u0: np.ndarray) -> tuple[int, int, float]:
    r"""``(n_steps, save_every, dt)`` of the sample from ``u0``: ``n_saves`` equal intervals,
    each of ``save_every`` steps no longer than ``cfl`` times the stable step. With implicit
    diffusion (``imex``) stability does not bound $\nu\,\Delta t\,k^2$: ``save_every`` is
    then doubled until the step-doubling estimate over the first save interval (where
    transients are fastest), $\max|u_{\Delta t} - u_{\Delta t/2}|$, is at most
    ``solver.tolerance`` $\cdot\max|u_0|$, and the finer plan is taken (the trajectory then
    starts with :func:`_rannacher_rollout`'s backward-Euler steps)."""
    intervals = spec.n_saves - 1
    dt_target = min(spec.solver.cfl * solver.stable_dt(u0), spec.t_end / intervals)
    save_every = max(1, math.ceil(spec.t_end / intervals / dt_target))
    if solver.scheme == "imex":
        save_every = _accurate_save_every(spec, solver, u0, save_every)
    n_steps = save_every * intervals
    return n_steps, save_every, spec.t_end / n_steps


def _accurate_save_every(spec: DatasetSpec, solver, u0: np.ndarray, save_every: int) -> int:
    """The doubled ``save_every`` of :func:`step_plan` with implicit diffusion.

    Raises:
        ToleranceNotMet: the estimate still above ``solver.tolerance`` with steps shorter than
            explicit forward Euler's stable one.
    """
    interval = spec.t_end / (spec.n_saves - 1)
    size = float(np.max(np.abs(u0)))
    shortest = 1 / sum(solver.rates(size).values())
    save_every = max(save_every, 2)  # the first step is Rannacher's start (_rannacher_rollout)
    fine = _first_save(solver, u0, save_every, interval)
    while True:
        coarse, save_every = fine, 2 * save_every
        fine = _first_save(solver, u0, save_every, interval)
        estimate = float(np.max(np.abs(fine - coarse)))
        if estimate <= spec.solver.tolerance * size:
            return save_every
        if interval / save_every < shortest:
            raise ToleranceNotMet(
                f"solver.tolerance={spec.solver.tolerance:g} is not met: the step-doubling "
                f"estimate over the first save interval is still {estimate / size:.1e} x "
                f"max|u0| with steps of {interval / save_every:.1e}, shorter than an explicit "
                f"scheme's; give a larger solver.tolerance or name an explicit solver.scheme")


def _first_save(solver, u0: np.ndarray, save_every: int, interval: float) -> np.ndarray:
    """The state one save ``interval`` on from ``u0``, in ``save_every`` steps."""
    return _rannacher_rollout(solver.with_dt(interval / save_every), u0, save_every, save_every)[-1]


def _rannacher_rollout(solver, u0: np.ndarray, n_steps: int | np.ndarray,
                       save_every: int | np.ndarray, dt: np.ndarray | None = None) -> np.ndarray:
    r"""``solver.rollout(u0, n_steps, save_every, dt=dt)`` (one state or a batch) with
    Rannacher's start: the first step is four backward-Euler quarter steps, which damp the
    stiff modes of ``u0`` that Crank–Nicolson (amplification $\to -1$ as
    $\nu\,\Delta t\,k^2$ grows) would carry on. ``save_every`` >= 2."""
    batched = np.ndim(u0) == solver.grid.ndim + 1
    quarter = {"dt": np.asarray(dt) / 4} if batched else {}
    backward = shallow_copy(solver, theta=1.0).with_dt(solver.dt / 4)
    start = backward.rollout(u0, 4, 4, **quarter)
    axis = int(batched)
    first = solver.rollout(np.take(start, -1, axis), np.asarray(save_every) - 1,
                           np.asarray(save_every) - 1, dt=dt)
    rest = solver.rollout(np.take(first, -1, axis), np.asarray(n_steps) - save_every,
                          save_every, dt=dt)
    return np.concatenate([np.take(start, [0], axis), rest], axis)


def planned_scheme(spec: DatasetSpec, solvers: dict, u0: np.ndarray,
                   parameters: dict[str, float], device: str
                   ) -> tuple[str | None, tuple[int, int, float]]:
    """The scheme of the sample from ``u0`` (:func:`choose_scheme`; ``None`` the solver
    default) and its :func:`step_plan`. ``solvers`` maps a scheme to its solver (with the
    spec's ``parameters`` on ``device``: :func:`spec_solver`), holds the default's under
    ``None``, and gains the schemes chosen. Under "auto", a sample whose
    IMEX plan would take steps shorter than an explicit scheme's stable one to meet
    ``solver.tolerance`` is solved by the default scheme.

    Raises:
        ToleranceNotMet: an ``imex`` the spec names cannot meet its tolerance.
    """
    scheme = choose_scheme(spec, solvers[None], u0)
    if scheme not in solvers:
        solvers[scheme] = spec_solver(spec, parameters, device, scheme)
    try:
        return scheme, step_plan(spec, solvers[scheme], u0)
    except ToleranceNotMet:
        if spec.solver.scheme != "auto":
            raise
    return None, step_plan(spec, solvers[None], u0)


def solve_sample(spec: DatasetSpec, solver, u0: np.ndarray,
                 plan: tuple[int, int, float] | None = None) -> np.ndarray:
    """The trajectory from ``u0`` saved at ``n_saves`` equal intervals: ``(n_saves, *grid)``;
    ``plan``: its :func:`step_plan`, where known."""
    n_steps, save_every, dt = plan or step_plan(spec, solver, u0)
    if solver.scheme == "imex":
        return _rannacher_rollout(solver.with_dt(dt), u0, n_steps, save_every)
    return solver.with_dt(dt).rollout(u0, n_steps, save_every)


def solve_batch(spec: DatasetSpec, solver, u0: np.ndarray,
                plans: list[tuple[int, int, float]] | None = None) -> np.ndarray:
    """The trajectories of a batch ``(B, *grid)`` in one batched rollout, each with its own
    step plan (``plans``, where known): ``(B, n_saves, *grid)``, each bitwise
    :func:`solve_sample`'s. A solver that is not a :class:`~physml.solvers.base.GridSolver`
    (the spectral Navier–Stokes solver) advances one state at a time, so its samples are
    solved one by one."""
    plans = plans or [step_plan(spec, solver, u) for u in u0]
    if not isinstance(solver, GridSolver):
        return np.stack([solve_sample(spec, solver, u, plan) for u, plan in zip(u0, plans)])
    plans = np.array(plans)
    counts, every, dts = plans[:, 0].astype(int), plans[:, 1].astype(int), plans[:, 2]
    if solver.scheme == "imex":
        return _rannacher_rollout(solver.with_dt(float(dts[0])), u0, counts, every, dts)
    return solver.with_dt(float(dts[0])).rollout(u0, counts, every, dt=dts)


def spec_solver(
    spec: DatasetSpec, parameters: dict[str, float], device: str, scheme: str | None = None
):
    """The solver of ``spec``'s PDE and grid with ``parameters`` on ``device`` (``scheme``:
    another time-stepping scheme than the PDE's default)."""
    options = {"dtype": spec.solver.dtype, "device": device}
    if scheme is not None:
        options["scheme"] = scheme
    solver, _ = build_solver(spec.pde, tuple(spec.grid), parameters, **options)
    return solver
