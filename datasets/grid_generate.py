"""Shards of a dataset on a grid (:class:`~physml.datasets.spec.DatasetSpec`): check the
spec's parameters and initial condition before anything is written, warm the Warp kernel cache,
and solve and write one shard.

The planning and seeds are :mod:`physml.datasets.generate`'s, the resume
:mod:`~physml.datasets.output_folder`'s and the engines :mod:`~physml.datasets.shard_engines`';
the samples are solved by :mod:`physml.datasets.grid_samples`, grouped by time-stepping scheme
in batches of the task's ``batch_size``. A parameter the spec sweeps (a list of several values)
is per sample, a coordinate on ``sample`` both in the spec's convention (``nu``) and as the
solver uses it (``solver_nu``); the attrs hold only what is constant over the whole dataset (a
constant parameter, given or left at the problem's default, in both conventions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..solvers.base import GridSolver
from ..solvers.errors import BlowUpError
from ..solvers.runtime import quiet_warp
from .grid_samples import (
    ToleranceNotMet,
    choose_scheme,
    initial_state,
    planned_scheme,
    solve_batch,
    solve_sample,
    spec_solver,
)
from .memory import check_shard_fits
from .problems import PROBLEMS, Problem
from .spec import DatasetSpec, SpecRefused
from .store import (
    in_storage_dtype,
    samples_dataset,
    scaled_parameter_metadata,
    write_dataset,
)

if TYPE_CHECKING:  # generate imports this module
    from .generate import ShardTask

SAME_FAILURE = ("the same command again keeps the finished shards and stops at this sample "
                "again; a changed spec needs another --out or --overwrite")
"""How a sample's numerical failure ends its message: a resume solves it as before."""


def write_shard(task: ShardTask) -> str:
    """Solve the samples of one shard and write it (atomically). Returns its path.

    Raises:
        FloatingPointError: a sample blew up (:func:`sample_blew_up`, naming its seed).
    """
    quiet_warp(task.device)
    spec = DatasetSpec.model_validate(_yaml_load(task.spec_yaml))
    solver = spec_solver(spec, task.parameters, task.device)
    solvers = {None: solver}
    initial = [initial_state(spec, solver.grid, seed) for seed in task.seeds]
    schemes, plans = [], []
    for seed, u0 in zip(task.seeds, initial, strict=True):
        try:
            scheme, plan = planned_scheme(spec, solvers, u0, task.parameters, task.device)
        except ToleranceNotMet as err:
            raise ValueError(f"{task.path}: sample with seed {seed}: {err}") from None
        except FloatingPointError as err:  # imex's step-doubling rollouts
            raise sample_blew_up(task.path, seed, task.parameters, err) from None
        schemes.append(solvers[scheme].scheme)
        plans.append(plan)
    states = np.empty((len(initial), spec.n_saves, *solver.grid.shape))
    size = task.batch_size or len(initial)
    for scheme_solver in {s.scheme: s for s in solvers.values()}.values():
        members = [i for i, name in enumerate(schemes) if name == scheme_solver.scheme]
        for start in range(0, len(members), size):
            batch = members[start : start + size]
            states[batch] = _solve_or_name_the_seed(spec, scheme_solver, initial, plans, batch,
                                                    task)
    schemes = [str(name) for name in schemes]
    times = np.linspace(0.0, spec.t_end, spec.n_saves)
    problem = PROBLEMS[spec.pde]
    swept = spec.swept_parameters()
    solver_values = {f"solver_{k}": v for k, v in solver.parameters().items()}
    per_sample = {f"solver_{k}" for k in swept}
    attrs = {
        "pde": spec.pde,
        "equation": problem.equation,
        "split": task.split,
        "solver": type(solver).__name__,
        "cfl": spec.solver.cfl,
        "solver_dtype": spec.solver.dtype,
        "grid_shape": solver.grid.shape,
        "grid_lower": solver.grid.lower,
        "grid_upper": solver.grid.upper,
        "bc": problem.bc or "pdebench",
        "initial_condition": spec.initial_condition.kind,
        "seed": spec.seed,
        "physml_version": __version__,
        "spec": task.spec_yaml,
        "device": solver.device,
        **{k: v for k, v in spec_parameters(problem, solver, task.parameters).items()
           if k not in swept},
        **{k: v for k, v in solver_values.items() if k not in per_sample},
    }
    sample_coords = {k: np.full(len(task.seeds), v) for k, v in task.parameters.items()}
    for name in per_sample:
        sample_coords[name] = np.full(len(task.seeds), solver_values[name].item())
    sample_coords["scheme"] = np.asarray(schemes)
    ds = samples_dataset(
        in_storage_dtype(states, spec.storage_dtype, task.path),
        times,
        solver.grid,
        np.asarray(task.seeds),
        sample_coords,
        attrs=attrs,
        metadata={"u": problem.quantity, **scaled_parameter_metadata(problem.scale)},
    )
    Path(task.path).parent.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, task.path)
    return task.path


def spec_parameters(problem: Problem, solver, given: dict[str, float]) -> dict[str, Any]:
    """Every parameter of ``solver`` in the spec's convention: the value ``given`` by the spec,
    else the problem's default, else the solver's own (the problem scales only parameters it
    sets, so the solver's default needs no conversion)."""
    own = {name: getattr(solver, name) for name in solver.parameter_names}
    return {**own, **problem.parameters, **given}


def _solve_or_name_the_seed(spec, solver, initial, plans, batch, task) -> np.ndarray:
    """:func:`~physml.datasets.grid_samples.solve_batch` of the samples ``batch`` with their
    step ``plans``; on a blow-up, the sample that blew up is found by solving them one by one,
    and named by its seed."""
    try:
        return solve_batch(spec, solver, np.stack([initial[i] for i in batch]),
                           [plans[i] for i in batch])
    except FloatingPointError:
        for i in batch:
            try:
                solve_sample(spec, solver, initial[i], plans[i])
            except FloatingPointError as err:
                raise sample_blew_up(task.path, task.seeds[i], task.parameters, err) from None
        raise


def sample_blew_up(path: str, seed: int, parameters: dict[str, float],
                   err: FloatingPointError) -> FloatingPointError:
    """The blow-up ``err`` of the sample ``seed`` (of the parameter combination
    ``parameters``) of the shard ``path`` as one line: where it happened and what in the spec
    can change it (a FloatingPointError, which the command line ends with exit status 1; a
    plain one, which Dask's workers can send back)."""
    where = (f"{err.field} {err.what} at step {err.step} (t={err.t:.6g})"
             if isinstance(err, BlowUpError) else str(err))
    values = ", ".join(f"{name}={value:g}" for name, value in parameters.items())
    sample = f"seed {seed}" + (f" ({values})" if values else "")
    return FloatingPointError(
        f"{path}: sample with {sample}: {where}; a smaller solver.cfl shortens the steps "
        "(solver.cfl times the stable step of the initial state, which a growing state can "
        "outgrow); a PDE whose solution itself blows up from this initial state needs other "
        f"parameters, initial_condition options or a shorter t_end; {SAME_FAILURE}")


def _yaml_load(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def check_parameters(spec: DatasetSpec, device: str) -> None:
    """Check that a shard fits in this machine's memory
    (:func:`~physml.datasets.memory.check_shard_fits`), then build the solver of every
    parameter combination and draw the first initial condition, so that a value the solver
    refuses (out of its range) or initial-condition options the generator refuses stop the run
    before anything is written.

    Raises:
        ValueError: naming the sizes of a shard too large.
        SpecRefused: naming the combination and the solver's reason, or the initial
            condition's key and the generator's reason.
    """
    check_shard_fits(spec, spec.n_saves, math.prod(spec.grid),
                     f"grid={spec.grid}, n_saves={spec.n_saves}")
    solvers = []
    for params in spec.parameter_grid():
        try:
            solvers.append(spec_solver(spec, params, device))
        except ValueError as err:
            shown = ", ".join(f"{k}={v:g}" for k, v in params.items()) or "the defaults"
            scale = PROBLEMS[spec.pde].scale
            scaled = "".join(f"; the solver's {k} is the spec's times {scale[k]:.6g}"
                             for k in params if k in scale)
            raise SpecRefused(f"spec parameters ({shown}) on grid={list(spec.grid)}: "
                             f"{err}{scaled}") from None
    if spec.solver.scheme not in (None, "auto"):
        try:
            spec_solver(spec, spec.parameter_grid()[0], device, spec.solver.scheme)
        except ValueError as err:
            raise SpecRefused(f"solver.scheme: {err}") from None
    check_initial_condition(spec, solvers[0])


def check_initial_condition(spec: DatasetSpec, solver) -> None:
    """Draw the initial condition of sample 0 on ``solver``'s grid (the generator's dimension
    is checked with the spec, against :data:`~.initial_conditions.FIELD_DIMENSIONS`); where
    the solver restricts its states (a concentration >= 0), draw every sample's and check
    them as it will (drawing costs little beside solving).

    Raises:
        SpecRefused: the generator refuses its options (``initial_condition.options``), or the
            solver a sample's state (``initial_condition``, naming the sample).
    """
    kind = spec.initial_condition.kind
    try:
        initial_state(spec, solver.grid, 0)
    except ValueError as err:
        raise SpecRefused(f"initial_condition.options of {kind}: {err}") from None
    check = getattr(type(solver), "check_state", GridSolver.check_state)
    if check is GridSolver.check_state:  # every finite state allowed
        return
    samples = sum(spec.split_sizes().values()) * len(spec.parameter_grid())
    for seed in range(samples):
        try:
            solver.check_state(np.asarray(initial_state(spec, solver.grid, seed)), "u0")
        except ValueError as err:
            raise SpecRefused(f"initial_condition (kind {kind}): the sample of seed {seed}: "
                             f"{err}") from None


def warm_kernel_cache(spec: DatasetSpec, device: str) -> None:
    """Compile the solver's Warp kernels in this process (one step on a tiny state)."""
    params = spec.parameter_grid()[0]
    solver = spec_solver(spec, params, device)
    u0 = np.full(solver.grid.shape, 0.1)
    schemes = {None, choose_scheme(spec, solver, u0)}
    if spec.solver.scheme == "auto" and solver.diffusion_parameter is not None:  # IMEX later
        schemes.add("imex")
    for scheme in schemes:
        probe = spec_solver(spec, params, device, scheme)
        probe.with_dt(min(0.5 * probe.stable_dt(u0), spec.t_end / (spec.n_saves - 1))).step(u0)
