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

Engines (:mod:`physml.datasets.shard_engines`): in-process, or Dask distributed (a local
cluster of K single-threaded processes, or an existing scheduler). The Warp kernel cache is
filled in the calling process before any worker starts, so workers only load compiled kernels.
Every process initialises Warp with :func:`physml.solvers.runtime.quiet_warp` for the
generation's device.

This module plans the shards and runs a generation. A grid sample's initial state and solve
are :mod:`physml.datasets.grid_samples`'s, a grid dataset's checks and shards
:mod:`physml.datasets.grid_generate`'s (meshes: :mod:`physml.datasets.mesh_generate`, linear
systems: :mod:`physml.datasets.linear_systems`), and preparing the folder and finding the
shards written before a resume :mod:`physml.datasets.output_folder`'s.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._version import __version__
from ..solvers.host_threads import available_cores
from ..solvers.runtime import quiet_warp, warp_device
from .atomic_files import json_text, write_text
from .grid_generate import check_parameters, warm_kernel_cache, write_shard
from .linear_systems import (
    LinearSystemSpec,
    check_generation_fits,
    warm_systems_cache,
    write_systems_shard,
)
from .memory import check_plan_fits
from .mesh_generate import check_mesh_spec, warm_mesh_kernels, write_mesh_shard
from .mesh_spec import MeshDatasetSpec
from .output_folder import DAMAGED_SHARD, check_resumed_device, prepare_folder, written_device
from .shard_engines import TIMEOUTS, dask_available, logging_silenced, run_in_process, run_on_dask
from .spec import DatasetSpec, SampledSpec
from .store import MANIFEST, SPLITS


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
            seeds = range(next_seed, next_seed + sizes[split])
            next_seed += sizes[split]
            for start in range(0, len(seeds), spec.shard_size):
                chunk = tuple(seeds[start : start + spec.shard_size])
                path = folder / split / f"shard-{index:05d}.h5"
                tasks.append(
                    ShardTask(str(path), split, params, chunk, yaml_text, device, batch_size)
                )
                index += 1
    return tasks


Writer = Callable[[ShardTask], str]


def _check_systems(spec: LinearSystemSpec, device: str) -> None:
    """Linear-system specs are checked by their schema; here, that a shard's generation fits
    in this machine's memory (:func:`~physml.datasets.linear_systems.check_generation_fits`)."""
    check_generation_fits(spec)


def _family(spec: SampledSpec | LinearSystemSpec) -> tuple[Callable, Callable, Writer]:
    """(check, warm the kernel cache, write a shard) for the kind of dataset ``spec`` is."""
    if isinstance(spec, MeshDatasetSpec):
        return check_mesh_spec, warm_mesh_kernels, write_mesh_shard
    if isinstance(spec, LinearSystemSpec):
        return _check_systems, warm_systems_cache, write_systems_shard
    return check_parameters, warm_kernel_cache, write_shard


SCHEDULER_TIMEOUT_S = 10
"""Seconds ``--scheduler`` is given to answer before generation is refused."""

CONNECT_GRACE_S = 5
"""Seconds given to a connection past :data:`SCHEDULER_TIMEOUT_S` (Dask's own time-out of a
refused port ends in that time) before it is given up."""


def connect_scheduler(scheduler: str):
    """A Dask client of the scheduler at ``scheduler``, connected within
    :data:`SCHEDULER_TIMEOUT_S` (and a few seconds more): a port that accepts the connection
    but does not answer as a scheduler (its dashboard, another server) is refused as well.

    Raises:
        ValueError: no scheduler answered within :data:`SCHEDULER_TIMEOUT_S`.
    """
    from dask.distributed import Client

    answer: list = []

    def connect() -> None:  # Dask's timeout alone waits forever on a server that is not Dask
        try:
            answer.append(Client(scheduler, timeout=SCHEDULER_TIMEOUT_S))
        except (OSError, *TIMEOUTS) as error:
            answer.append(error)

    thread = threading.Thread(target=connect, name="physml-connect-scheduler", daemon=True)
    thread.start()
    thread.join(SCHEDULER_TIMEOUT_S + CONNECT_GRACE_S)
    if answer and not isinstance(answer[0], BaseException):
        return answer[0]
    cause = type(answer[0]).__name__ if answer else "no answer as a Dask scheduler"
    raise ValueError(f"--scheduler {scheduler!r}: no Dask scheduler answered within "
                     f"{SCHEDULER_TIMEOUT_S} s ({cause}); start one (dask scheduler; its "
                     "port is 8786 unless told, 8787 is its dashboard) or leave --scheduler "
                     "out for a local cluster")


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
    status: Callable[[str], None] | None = None,
) -> dict:
    """Generate (or resume) the dataset of ``spec`` in ``folder``; returns the manifest:
    ``pde``, ``samples`` (in all), ``split_samples`` (``{split: samples}``, 0 for an empty
    split), ``physml_version`` and ``splits`` (``{split: shard file names}``). A folder that
    holds the complete dataset of this very spec, every shard there and whole, is left as it
    is, its manifest returned, with no call of ``progress`` (nothing to solve or write); a
    shard missing or damaged there is written again, as on a resume.

    Args:
        spec: the validated spec (fields on a grid or a mesh, or linear systems).
        folder: output folder.
        device: "cpu", "cuda" or "cuda:N": where every worker solves (checked first).
        workers: local Dask worker processes (default: on the CPU the cores this process may
            use, when Dask is installed; on CUDA none: one process drives the GPU, where each
            worker would open a context of its own on it); 0 runs in this process.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        overwrite: replace a complete dataset (of this spec too), or one of another spec.
        progress: called with (samples done, samples in total), as each shard is written
            (its samples are solved together: the count moves a shard at a time).
        batch_size: samples solved together (default: a whole shard); the dataset is the
            same for any value.
        status: called with what runs while the count waits: ``"compiling kernels"``, then
            ``"shard k/K in progress"`` before each shard solved in this process, or
            ``"K shards in progress on Dask"``.
    """
    folder = Path(folder).resolve()  # workers of a scheduler have working folders of their own
    quiet_warp(device)
    device = warp_device(device)
    if scheduler is None and workers not in (None, 0) and not dask_available():
        raise ValueError("--workers needs Dask: pip install 'physml[dask]' (or --workers 0)")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size} must be a whole number >= 1")
    check_plan_fits(spec)  # before the per-sample checks of check(): they loop over samples
    check, warm, writer = _family(spec)
    check(spec, device)
    client = connect_scheduler(scheduler) if scheduler is not None else None
    try:
        return _generate(spec, folder, device, workers, client, overwrite, progress,
                         batch_size, warm, writer, status or (lambda text: None))
    finally:
        if client is not None:  # a lost scheduler's reconnection, cut off here, is not logged
            with logging_silenced("distributed.client"):
                client.close()


def _generate(spec, folder: Path, device: str, workers: int | None, client, overwrite: bool,
              progress: Callable[[int, int], None] | None, batch_size: int | None,
              warm: Callable, writer: Writer, status: Callable[[str], None]) -> dict:
    """:func:`generate` once the spec, the device and the scheduler (``client``) are checked:
    nothing is deleted before."""
    complete = prepare_folder(spec, folder, overwrite)  # its manifest written, this spec's
    tasks = plan_shards(spec, folder, device, batch_size)
    total = sum(len(t.seeds) for t in tasks)
    written = {t.path: written_device(t) for t in tasks if Path(t.path).exists()}
    written = {path: recorded for path, recorded in written.items()
               if recorded is not DAMAGED_SHARD}
    pending = [t for t in tasks if t.path not in written]
    if complete and not pending:  # every shard there and whole: nothing to do
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if pending:
        for recorded in written.values():
            check_resumed_device(recorded, device, folder)
    count = [total - sum(len(t.seeds) for t in pending)]

    def done(task: ShardTask) -> None:
        count[0] += len(task.seeds)
        if progress is not None:
            progress(count[0], total)

    position = {t.path: k for k, t in enumerate(pending, start=1)}

    def announced(task: ShardTask) -> str:  # in this process: each shard as it starts
        status(f"shard {position[task.path]}/{len(pending)} in progress")
        return writer(task)

    if progress is not None:
        progress(count[0], total)
    if pending:
        status("compiling kernels")
        warm(spec, device)
        if workers is None and device != "cpu":
            workers = 0
        use_dask = client is not None or (workers != 0 and dask_available())
        if use_dask:
            status(f"{len(pending)} shards in progress on Dask")
            run_on_dask(pending, done, workers or available_cores(), client, writer,
                        folder)
        else:
            run_in_process(pending, done, announced)
    missing = [t.path for t in tasks if not Path(t.path).exists()]
    if missing:
        raise ValueError(f"{len(missing)} shard(s) were not written, {missing[0]!r} the "
                           "first: the workers wrote elsewhere or failed without a word; run "
                           "workers that see the output folder at the same path (a shared "
                           "file system mounted there), then the same command again")
    manifest = {
        "pde": spec.pde,
        "samples": total,
        "split_samples": {s: sum(len(t.seeds) for t in tasks if t.split == s)
                          for s in SPLITS},
        "physml_version": __version__,
        "splits": {s: sorted(Path(t.path).name for t in tasks if t.split == s)
                   for s in SPLITS},
    }
    write_text(folder / MANIFEST, json_text(manifest, indent=2))
    return manifest
