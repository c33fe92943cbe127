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
from .initial_conditions import INITIAL_CONDITIONS
from .problems import build_solver
from .spec import DatasetSpec


def initial_state(spec: DatasetSpec, grid, seed: int) -> np.ndarray:
    """u0 of sample ``seed``, from ``default_rng([spec.seed, seed])``."""
    rng = np.random.default_rng([spec.seed, seed])
    initial = INITIAL_CONDITIONS[spec.initial_condition.kind]
    return initial(grid, rng, **spec.initial_condition.options)


def choose_scheme(spec: DatasetSpec, solver, u0: np.ndarray) -> str | None:
    """The spec's scheme; for "auto", "imex" when explicit diffusion would need a step
    under half the convective/reactive one (diffusion-dominated), else the solver default.
    IMEX's explicit part is forward Euler: the diffusion-dominated samples trade time accuracy
    (first order) for steps as long as the other terms allow."""
    if spec.solver.scheme != "auto":
        return spec.solver.scheme
    if solver.diffusion_parameter is None:
        return None
    rates = solver.rates(float(np.max(np.abs(u0))))
    diffusive = rates["diffusion"] / solver.tableau.real_limit
    other = rates["advection"] / 0.5 + rates["reaction"] / solver.tableau.real_limit
    return "imex" if diffusive > 2 * other else None


def step_plan(spec: DatasetSpec, solver, u0: np.ndarray) -> tuple[int, int, float]:
    """``(n_steps, save_every, dt)`` of the sample from ``u0``: ``n_saves`` equal intervals,
    each of ``save_every`` steps no longer than ``cfl`` times the stable step."""
    intervals = spec.n_saves - 1
    dt_target = min(spec.solver.cfl * solver.stable_dt(u0), spec.t_end / intervals)
    save_every = max(1, math.ceil(spec.t_end / intervals / dt_target))
    n_steps = save_every * intervals
    return n_steps, save_every, spec.t_end / n_steps


def solve_sample(spec: DatasetSpec, solver, u0: np.ndarray) -> np.ndarray:
    """The trajectory from ``u0`` saved at ``n_saves`` equal intervals: ``(n_saves, *grid)``."""
    n_steps, save_every, dt = step_plan(spec, solver, u0)
    return solver.with_dt(dt).rollout(u0, n_steps, save_every)


def solve_batch(spec: DatasetSpec, solver, u0: np.ndarray) -> np.ndarray:
    """The trajectories of a batch ``(B, *grid)`` in one batched rollout, each with its own
    step plan: ``(B, n_saves, *grid)``, each bitwise :func:`solve_sample`'s. A solver that
    is not a :class:`~physml.solvers.base.GridSolver` (the spectral Navier–Stokes solver)
    advances one state at a time, so its samples are solved one by one."""
    if not isinstance(solver, GridSolver):
        return np.stack([solve_sample(spec, solver, u) for u in u0])
    plans = np.array([step_plan(spec, solver, u) for u in u0])
    counts, every, dts = plans[:, 0].astype(int), plans[:, 1].astype(int), plans[:, 2]
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
