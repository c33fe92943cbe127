"""Benchmark dataset generation: plan shards, solve samples, write shards, resume.

Layout of a generated dataset folder::

    DIR/spec.yaml                    the resolved spec (written first)
    DIR/{train,valid,test}/shard-NNNNN.h5
    DIR/dataset.json                 manifest, written last: its presence means complete

Each shard holds up to ``shard_size`` samples of one parameter combination and is written by
exactly one process, under a hidden temporary name renamed when complete. Sample ``j`` of a
dataset gets the seed ``j`` (numbered across splits and parameter combinations, so splits
never share a seed) and its initial condition from ``numpy.random.default_rng([spec.seed,
j])``: the result does not depend on which worker ran which shard, and a rerun after an
interruption skips the complete shards and ends bitwise equal to an uninterrupted run.

A shard's samples are solved together, one batched rollout per time-stepping scheme
(:meth:`~physml.solvers.GridSolver.rollout` with per-sample time steps and step counts), in
batches of ``batch_size`` samples (default: the whole shard). A sample's trajectory is bitwise
the same in any batch, so the dataset does not depend on ``batch_size`` either.

Engines: in-process, or Dask distributed (a local cluster of K single-threaded processes, or
an existing scheduler). The Warp kernel cache is filled in the calling process before any
worker starts, so workers only load compiled kernels. Every process initialises Warp with
:func:`physml.solvers.runtime.quiet_warp` for the generation's device.

Parameters: a parameter the spec sweeps (a list of several values) is per sample, a
coordinate on ``sample`` both in the spec's convention (``nu``) and as the solver uses it
(``solver_nu``); the attrs hold only what is constant over the whole dataset (a constant
parameter, given or left at the problem's default, in both conventions).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..solvers.base import GridSolver, warp_device
from ..solvers.cahn_hilliard_kernels import available_cores
from ..solvers.runtime import quiet_warp
from .initial_conditions import INITIAL_CONDITIONS
from .linear_systems import LinearSystemSpec, warm_systems_cache, write_systems_shard
from .mesh_generate import check_mesh_spec, warm_mesh_kernels, write_mesh_shard
from .mesh_spec import MeshDatasetSpec
from .problems import PROBLEMS, Problem, build_solver
from .spec import DatasetSpec, SampledSpec, load_spec
from .store import MANIFEST, SHARD_GLOB, SPLITS, samples_dataset, write_dataset, write_text


@dataclass(frozen=True)
class ShardTask:
    """One shard to write: its samples' seeds and parameter combination, and the device
    ("cpu", "cuda:N") that solves them."""

    path: str
    split: str
    parameters: dict[str, float]
    seeds: tuple[int, ...]
    spec_yaml: str
    device: str
    batch_size: int | None = None


def plan_shards(
    spec: SampledSpec, folder: Path, device: str, batch_size: int | None = None
) -> list[ShardTask]:
    """All shards of ``spec`` in ``folder``, in a fixed order (splits, combinations, chunks);
    each solves its samples in batches of ``batch_size`` (None: all at once)."""
    tasks, next_seed = [], 0
    sizes = spec.split_sizes()
    yaml_text = spec.to_yaml()
    for split in SPLITS:
        index = 0
        for params in spec.parameter_grid():
            seeds = list(range(next_seed, next_seed + sizes[split]))
            next_seed += sizes[split]
            for start in range(0, len(seeds), spec.shard_size):
                chunk = tuple(seeds[start : start + spec.shard_size])
                path = folder / split / f"shard-{index:05d}.h5"
                tasks.append(
                    ShardTask(str(path), split, params, chunk, yaml_text, device, batch_size)
                )
                index += 1
    return tasks


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


def _solver_for(
    spec: DatasetSpec, parameters: dict[str, float], device: str, scheme: str | None = None
):
    options = {"dtype": spec.solver.dtype, "device": device}
    if scheme is not None:
        options["scheme"] = scheme
    solver, _ = build_solver(spec.pde, tuple(spec.grid), parameters, **options)
    return solver


def write_shard(task: ShardTask) -> str:
    """Solve the samples of one shard and write it (atomically). Returns its path."""
    quiet_warp(task.device)
    spec = DatasetSpec.model_validate(_yaml_load(task.spec_yaml))
    solver = _solver_for(spec, task.parameters, task.device)
    solvers = {None: solver}
    initial = [initial_state(spec, solver.grid, seed) for seed in task.seeds]
    schemes = []
    for u0 in initial:
        scheme = choose_scheme(spec, solver, u0)
        if scheme not in solvers:
            solvers[scheme] = _solver_for(spec, task.parameters, task.device, scheme)
        schemes.append(solvers[scheme].scheme)
    states = np.empty((len(initial), spec.n_saves, *solver.grid.shape))
    size = task.batch_size or len(initial)
    for scheme_solver in {s.scheme: s for s in solvers.values()}.values():
        members = [i for i, name in enumerate(schemes) if name == scheme_solver.scheme]
        for start in range(0, len(members), size):
            batch = members[start : start + size]
            states[batch] = _solve_or_name_the_seed(spec, scheme_solver, initial, batch, task)
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
        states.astype(spec.storage_dtype),
        times,
        solver.grid,
        np.asarray(task.seeds),
        sample_coords,
        attrs=attrs,
        metadata={"u": problem.quantity},
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


def _solve_or_name_the_seed(spec, solver, initial, batch, task) -> np.ndarray:
    """:func:`solve_batch` of the samples ``batch``; on a blow-up, the sample that blew up
    is found by solving them one by one, and named by its seed."""
    try:
        return solve_batch(spec, solver, np.stack([initial[i] for i in batch]))
    except FloatingPointError:
        for i in batch:
            try:
                solve_sample(spec, solver, initial[i])
            except FloatingPointError as err:
                raise ValueError(f"{task.path}: sample with seed {task.seeds[i]}: {err}") from None
        raise


def _yaml_load(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def check_parameters(spec: DatasetSpec, device: str) -> None:
    """Build the solver of every parameter combination and draw the first initial condition,
    so that a value the solver refuses (out of its range) or initial-condition options the
    generator refuses stop the run before anything is written.

    Raises:
        ValueError: naming the combination and the solver's reason, or the initial
            condition's key and the generator's reason.
    """
    solvers = []
    for params in spec.parameter_grid():
        try:
            solvers.append(_solver_for(spec, params, device))
        except ValueError as err:
            shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
            raise ValueError(f"spec parameters ({shown}): {err}") from None
    if spec.solver.scheme not in (None, "auto"):
        try:
            _solver_for(spec, spec.parameter_grid()[0], device, spec.solver.scheme)
        except ValueError as err:
            raise ValueError(f"solver.scheme: {err}") from None
    check_initial_condition(spec, solvers[0])


def check_initial_condition(spec: DatasetSpec, solver) -> None:
    """Draw the initial condition of sample 0 on ``solver``'s grid (the generator's dimension
    is checked with the spec, against :data:`~.initial_conditions.FIELD_DIMENSIONS`); where
    the solver restricts its states (a concentration >= 0), draw every sample's and check
    them as it will (drawing costs little beside solving).

    Raises:
        ValueError: the generator refuses its options (``initial_condition.options``), or the
            solver a sample's state (``initial_condition``, naming the sample).
    """
    kind = spec.initial_condition.kind
    try:
        initial_state(spec, solver.grid, 0)
    except ValueError as err:
        raise ValueError(f"initial_condition.options of {kind}: {err}") from None
    check = getattr(type(solver), "check_state", GridSolver.check_state)
    if check is GridSolver.check_state:  # every finite state allowed
        return
    samples = sum(spec.split_sizes().values()) * len(spec.parameter_grid())
    for seed in range(samples):
        try:
            solver.check_state(np.asarray(initial_state(spec, solver.grid, seed)), "u0")
        except ValueError as err:
            raise ValueError(f"initial_condition (kind {kind}): the sample of seed {seed}: "
                             f"{err}") from None


def warm_kernel_cache(spec: DatasetSpec, device: str) -> None:
    """Compile the solver's Warp kernels in this process (one step on a tiny state)."""
    params = spec.parameter_grid()[0]
    solver = _solver_for(spec, params, device)
    u0 = np.full(solver.grid.shape, 0.1)
    schemes = {None, choose_scheme(spec, solver, u0)}
    if spec.solver.scheme == "auto" and solver.diffusion_parameter is not None:  # IMEX later
        schemes.add("imex")
    for scheme in schemes:
        probe = _solver_for(spec, params, device, scheme)
        probe.with_dt(min(0.5 * probe.stable_dt(u0), spec.t_end / (spec.n_saves - 1))).step(u0)


def prepare_folder(spec: SampledSpec, folder: Path, overwrite: bool) -> None:
    """Create ``folder`` (or check it may be resumed) and record the spec in it.

    Raises:
        ValueError: the folder holds files a dataset did not write (whatever ``overwrite``
            says), a complete dataset or one of another spec and ``overwrite`` is false, or
            it cannot be written.
    """
    spec_file = folder / "spec.yaml"
    foreign = _foreign_files(folder)
    if foreign:
        raise ValueError(
            f"--out {str(folder)!r} holds files that are not part of a physml dataset "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); choose "
            "another folder (--overwrite deletes only a dataset's own files)"
        )
    if overwrite:
        for name in (*SPLITS, MANIFEST, "spec.yaml"):
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif (folder / MANIFEST).exists():
        raise ValueError(
            f"--out {str(folder)!r} holds a complete dataset; pass --overwrite to regenerate it"
        )
    elif spec_file.exists() and (recorded := _recorded_yaml(spec_file)) != spec.to_yaml():
        raise ValueError(
            f"--out {str(folder)!r} holds a partial dataset of another spec"
            f"{_first_difference(recorded, spec.to_yaml())}; use another folder or pass "
            "--overwrite"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            (folder / split).mkdir(exist_ok=True)
            for stale in (folder / split).glob(".shard-*.tmp-*"):
                stale.unlink()
        write_text(spec_file, spec.to_yaml())
    except OSError as err:
        raise ValueError(f"--out {str(folder)!r} cannot be written: {err.strerror}") from None


def _recorded_yaml(spec_file: Path) -> str | None:
    """A folder's ``spec.yaml`` read through the spec model and written again, as
    :func:`generate` writes a spec (a relative mesh file path in it reads from the working
    folder); None if it does not validate."""
    try:
        return load_spec(spec_file).to_yaml()
    except ValueError:
        return None


def _first_difference(recorded: str | None, given: str) -> str:
    """`` (spec.yaml has ..., the spec gives ...)``: the first line in which two specs' YAML
    differ (a changed mesh file shows as its ``sha256``), or nothing."""
    if recorded is None:
        return ""
    for old, new in zip(recorded.splitlines(), given.splitlines()):
        if old != new:
            return f" (spec.yaml has {old.strip()!r}, the spec gives {new.strip()!r})"
    return ""


_DAMAGED = object()
"""What :func:`_written_device` returns for a shard it removed."""


def _written_device(task: ShardTask) -> object:
    """The device recorded by the shard at ``task.path`` (None: assembled on the host), read
    in the one open that checks the shard is whole: it opens and holds the task's samples. A
    damaged one (an empty or truncated file left by a crash of the disk or the network file
    system) is removed, with a warning, to be written again: then :data:`_DAMAGED`."""
    import h5py

    try:
        with h5py.File(task.path, "r") as f:
            if "sample" in f and tuple(f["sample"][:].tolist()) == task.seeds:
                written = f.attrs.get("device")
                return written.decode() if isinstance(written, bytes) else written
    except OSError:
        pass
    warnings.warn(f"shard {task.path!r} is damaged or holds other samples; writing it again",
                  stacklevel=3)
    Path(task.path).unlink()
    return _DAMAGED


def _check_resumed_device(written: str | None, device: str, folder: Path) -> None:
    """Refuse to resume on a CPU a dataset begun on a GPU, or the reverse: their samples
    differ in the last bits (contracted products, other library functions), and a dataset is
    one device's. Shards that record no device (``written`` None: assembled on the host) pass.

    Raises:
        ValueError: a shard was written on another kind of device (``written``) than ``device``.
    """
    if written is None:
        return
    written = str(written)
    if written.startswith("cuda") != str(device).startswith("cuda"):
        raise ValueError(
            f"--out {str(folder)!r} holds a partial dataset generated on {written!r}; resume "
            f"it with --device {written} (samples from {device!r} would differ in the last "
            "bits), or pass --overwrite")


def _foreign_files(folder: Path) -> list[str]:
    """What in ``folder`` a dataset would write over and did not write itself: a
    ``spec.yaml`` that is not a dataset spec, or a split folder's files other than shards
    (complete or temporary)."""
    foreign = []
    spec_file = folder / "spec.yaml"
    if spec_file.is_file():
        try:
            load_spec(spec_file)
        except ValueError:
            foreign.append(str(spec_file))
    for split in SPLITS:
        if (folder / split).is_dir():
            foreign.extend(str(f) for f in sorted((folder / split).iterdir())
                           if not (f.match(SHARD_GLOB) or f.match(".shard-*.tmp-*")))
    return foreign


Writer = Callable[[ShardTask], str]


def _no_check(spec: LinearSystemSpec, device: str) -> None:
    """Linear-system specs are fully checked by their schema."""


def _family(spec: SampledSpec | LinearSystemSpec) -> tuple[Callable, Callable, Writer]:
    """(check, warm the kernel cache, write a shard) for the kind of dataset ``spec`` is."""
    if isinstance(spec, MeshDatasetSpec):
        return check_mesh_spec, warm_mesh_kernels, write_mesh_shard
    if isinstance(spec, LinearSystemSpec):
        return _no_check, warm_systems_cache, write_systems_shard
    return check_parameters, warm_kernel_cache, write_shard


def run_in_process(tasks: Iterable[ShardTask], done: Callable[[ShardTask], None],
                   writer: Writer = write_shard) -> None:
    for task in tasks:
        writer(task)
        done(task)


SCHEDULER_TIMEOUT_S = 10
"""Seconds ``--scheduler`` is given to answer before generation is refused."""


def connect_scheduler(scheduler: str):
    """A Dask client of the scheduler at ``scheduler``.

    Raises:
        ValueError: no scheduler answered within :data:`SCHEDULER_TIMEOUT_S`.
    """
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise ValueError(f"--scheduler {scheduler!r}: no Dask scheduler answered within "
                         f"{SCHEDULER_TIMEOUT_S} s ({type(error).__name__}); start one "
                         f"(dask scheduler) or leave --scheduler out for a local cluster"
                         ) from None


WORKER_CONFIG = {"scheduler": "synchronous"}
"""Dask configuration of the local cluster's workers: a shard is written by one process, so
xarray's writer runs synchronously there instead of opening a client of the cluster from the
worker (a client that, when Ctrl-C closes the workers mid-write, complains on stderr)."""


def run_on_dask(
    tasks: list[ShardTask],
    done: Callable[[ShardTask], None],
    workers: int,
    client=None,
    writer: Writer = write_shard,
) -> None:
    """Write the shards on Dask: on ``client``'s scheduler, or (None) on a local cluster of
    ``workers`` processes started and stopped here.

    A local cluster's workers ignore SIGINT (:func:`dask_setup`): a Ctrl-C, which the terminal
    sends to every process of the group, interrupts this process only, which closes the
    cluster with Dask's logging silenced and lets the KeyboardInterrupt go on."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if client is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            preload=[__name__], config=WORKER_CONFIG,
        )
        client = Client(cluster)
    try:
        futures = {client.submit(writer, t, pure=False): t for t in tasks}
        for future in as_completed(futures):
            future.result()
            done(futures[future])
    except KeyboardInterrupt:
        if cluster is not None:  # shards being written are dropped, workers mid-write killed
            with _logging_silenced("distributed"):
                client.run(_silence_dask_logging, on_error="ignore")
                _close(client, cluster)
            cluster = None
        raise
    finally:
        if cluster is not None:
            _close(client, cluster)


def _close(client, cluster) -> None:
    client.close()
    cluster.close()


def _loggers(name: str) -> list[logging.Logger]:
    """The logger ``name`` and every one below it that exists (Dask gives some of its own a
    level and a handler, so silencing the parent does not silence them)."""
    below = [logging.getLogger(key) for key in list(logging.root.manager.loggerDict)
             if key.startswith(f"{name}.")]
    return [logging.getLogger(name), *below]


def _silence_dask_logging() -> None:
    """Show no record of Dask distributed's loggers from now on (in a worker that is about to
    be closed)."""
    for logger in _loggers("distributed"):
        logger.setLevel(logging.CRITICAL + 1)


@contextlib.contextmanager
def _logging_silenced(name: str):
    """No record of the logger ``name`` or of any below it is shown inside the block."""
    loggers = _loggers(name)
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def dask_setup(worker) -> None:
    """Dask's preload hook, run in each worker of the local cluster as it starts (the cluster
    preloads this module): the worker ignores SIGINT, so a Ctrl-C in the terminal stops only
    the process that started the cluster, which then closes the workers in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_available() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def generate(
    spec: DatasetSpec | MeshDatasetSpec | LinearSystemSpec,
    folder: str | os.PathLike,
    *,
    device: str = "cpu",
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
) -> dict:
    """Generate (or resume) the dataset of ``spec`` in ``folder``; returns the manifest.

    Args:
        spec: the validated spec (fields on a grid or a mesh, or linear systems).
        folder: output folder.
        device: "cpu", "cuda" or "cuda:N": where every worker solves (checked first).
        workers: local Dask worker processes (default: the cores this process may use, when
            Dask is installed); 0 runs in this process.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        overwrite: replace a complete dataset, or one of another spec.
        progress: called with (samples done, samples in total).
        batch_size: samples solved together (default: a whole shard); the dataset is the
            same for any value.
    """
    folder = Path(folder).resolve()  # workers of a scheduler have working folders of their own
    quiet_warp(device)
    device = warp_device(device)
    if scheduler is None and workers not in (None, 0) and not dask_available():
        raise ValueError("--workers needs Dask: pip install 'physml[dask]' (or --workers 0)")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size} must be a whole number >= 1")
    check, warm, writer = _family(spec)
    check(spec, device)
    client = connect_scheduler(scheduler) if scheduler is not None else None
    try:
        return _generate(spec, folder, device, workers, client, overwrite, progress,
                         batch_size, warm, writer)
    finally:
        if client is not None:
            client.close()


def _generate(spec, folder: Path, device: str, workers: int | None, client, overwrite: bool,
              progress: Callable[[int, int], None] | None, batch_size: int | None,
              warm: Callable, writer: Writer) -> dict:
    """:func:`generate` once the spec, the device and the scheduler (``client``) are checked:
    nothing is deleted before."""
    prepare_folder(spec, folder, overwrite)
    tasks = plan_shards(spec, folder, device, batch_size)
    total = sum(len(t.seeds) for t in tasks)
    written = {t.path: _written_device(t) for t in tasks if Path(t.path).exists()}
    written = {path: recorded for path, recorded in written.items() if recorded is not _DAMAGED}
    pending = [t for t in tasks if t.path not in written]
    if pending:
        for recorded in written.values():
            _check_resumed_device(recorded, device, folder)
    count = [total - sum(len(t.seeds) for t in pending)]

    def done(task: ShardTask) -> None:
        count[0] += len(task.seeds)
        if progress is not None:
            progress(count[0], total)

    if progress is not None:
        progress(count[0], total)
    if pending:
        warm(spec, device)
        use_dask = client is not None or (workers != 0 and dask_available())
        if use_dask:
            run_on_dask(pending, done, workers or available_cores(), client, writer)
        else:
            run_in_process(pending, done, writer)
    missing = [t.path for t in tasks if not Path(t.path).exists()]
    if missing:
        raise ValueError(f"{len(missing)} shard(s) were not written, {missing[0]!r} the "
                           "first: the workers wrote elsewhere or failed without a word; run "
                           "the command again to resume")
    manifest = {
        "pde": spec.pde,
        "samples": total,
        "physml_version": __version__,
        "splits": {s: sorted(Path(t.path).name for t in tasks if t.split == s)
                   for s in SPLITS},
    }
    write_text(folder / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
