"""The engines that write a generation's pending shards: in this process, or on Dask
distributed (a local cluster of single-threaded processes started and stopped here, or the
client of an existing scheduler), with a Ctrl-C closing a local cluster in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .grid_generate import write_shard

TIMEOUTS = (TimeoutError, asyncio.TimeoutError)
"""A timeout of Dask's waits (one class from Python 3.11; on 3.10 asyncio's is its own)."""

if TYPE_CHECKING:  # generate imports this module
    from .generate import ShardTask, Writer


def run_in_process(tasks: Iterable[ShardTask], done: Callable[[ShardTask], None],
                   writer: Writer = write_shard) -> None:
    for task in tasks:
        writer(task)
        done(task)


WORKER_CONFIG = {"scheduler": "synchronous"}
"""Dask configuration of the local cluster's workers: a shard is written by one process, so
xarray's writer runs synchronously there instead of opening a client of the cluster from the
worker (a client that, when Ctrl-C closes the workers mid-write, complains on stderr)."""


WORKERS_TIMEOUT_S = 30
"""Seconds a Dask scheduler may be without a worker (none joined yet, or every one lost)
before generation stops; also the interval at which a run that sees no shard finish checks
that the scheduler still has workers."""


class DaskLost(RuntimeError):
    """The Dask scheduler, or every one of its workers, was lost before every shard was
    written (the shards written by then are kept)."""


def run_on_dask(
    tasks: list[ShardTask],
    done: Callable[[ShardTask], None],
    workers: int,
    client=None,
    writer: Writer = write_shard,
    folder: Path | None = None,
) -> None:
    """Write the shards on Dask: on ``client``'s scheduler, or (None) on a local cluster of
    ``workers`` processes started and stopped here.

    Before a shard is sent, the scheduler must have a worker within :data:`WORKERS_TIMEOUT_S`,
    and each of its workers must import physml and see the output ``folder`` (its
    ``spec.yaml``) at the same path (None: the folder is not looked for). Each shard's result
    is released once counted, so a worker lost later makes Dask redo only the shards not yet
    written.

    A local cluster's workers ignore SIGINT (:func:`dask_setup`): a Ctrl-C, which the terminal
    sends to every process of the group, interrupts this process only, which closes the
    cluster with Dask's logging silenced and lets the KeyboardInterrupt go on; a shard that
    fails (a sample that blew up) closes it the same way, its error raised here alone (the
    workers log no "Compute Failed" record of it). Once every shard is written, the workers'
    Dask logging is silenced before the cluster is closed: a worker's heartbeat that the close
    cuts off logs a traceback that says nothing about the run.

    Raises:
        ValueError: no worker joined, or a worker cannot import physml or does not see the
            output folder (nothing was sent).
        DaskLost: the scheduler was lost, or it had no worker for :data:`WORKERS_TIMEOUT_S`.
    """
    from dask.distributed import Client, LocalCluster

    cluster = None
    if client is None:
        cluster = LocalCluster(  # the scheduler's HTTP server (no dashboard) on a free port
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            scheduler_kwargs={"dashboard": False}, preload=[__name__], config=WORKER_CONFIG,
        )
        client = Client(cluster)
    try:
        if tasks:
            _check_workers(client, folder)
        pending = {client.submit(writer, t, pure=False): t for t in tasks}
        finished: set = set()
        while pending:
            finished = finished or _finished(client, list(pending))
            future = finished.pop()
            if future.status == "error":
                future.result()  # the shard's error, raised here
            elif future.status != "finished":  # cancelled: the scheduler is gone
                raise DaskLost("lost the Dask scheduler (its shards were cancelled)")
            done(pending.pop(future))  # released with it: its shard is not computed again
    except BaseException:  # Ctrl-C, or a shard that failed (its error goes on, told once)
        if cluster is not None:  # shards being written are dropped, workers mid-write killed
            with logging_silenced("distributed"):
                client.run(_silence_dask_logging, on_error="ignore")
                _close(client, cluster)
            cluster = None
        raise
    finally:
        if cluster is not None:  # every shard is written
            client.run(_silence_dask_logging, on_error="ignore")
            _close(client, cluster)


def _check_workers(client, folder: Path | None) -> None:
    """Refuse (ValueError) a scheduler with no worker within :data:`WORKERS_TIMEOUT_S`, or
    with a worker that cannot import physml or does not see ``folder``'s ``spec.yaml``."""
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except TIMEOUTS:
        raise ValueError(
            f"the Dask scheduler has no worker after {WORKERS_TIMEOUT_S} s: start workers "
            f"(dask worker {client.scheduler.address}) where physml is installed and the "
            "output folder is mounted at the same path") from None
    seen = client.run(_sees, folder and str(folder / "spec.yaml"), on_error="return")
    broken = {worker: answer for worker, answer in seen.items()
              if isinstance(answer, BaseException)}
    if broken:
        worker, error = next(iter(broken.items()))
        told = (str(error) if type(error) is Exception  # Dask's wrapper of a remote error
                else f"{type(error).__name__}: {error}")
        raise ValueError(
            f"{len(broken)} Dask worker(s) cannot run physml, {worker} the first ({told}): "
            "install physml in the workers' environment")
    blind = [worker for worker, answer in seen.items() if answer is not True]
    if blind:
        raise ValueError(
            f"{len(blind)} Dask worker(s) do not see the output folder {str(folder)!r}, "
            f"{blind[0]} the first: run workers that see it at the same path (a shared file "
            "system mounted there)")


def _sees(file: str | None) -> bool:
    """In a worker (its unpickling imports physml): whether ``file`` (None: nothing looked
    for) is a file there."""
    return file is None or Path(file).is_file()


def _finished(client, futures: list) -> set:
    """The futures among ``futures`` that are done (at least one), waiting as long as the
    scheduler has a worker. The client's log of a lost scheduler is not shown: the DaskLost
    raised here tells it.

    Raises:
        DaskLost: the scheduler was lost, or it had no worker for :data:`WORKERS_TIMEOUT_S`.
    """
    from concurrent.futures import CancelledError

    from distributed import wait
    from distributed.comm import CommClosedError

    try:
        with logging_silenced("distributed.client"):
            while True:
                try:
                    return wait(futures, timeout=WORKERS_TIMEOUT_S,
                                return_when="FIRST_COMPLETED").done
                except TIMEOUTS:  # none finished: go on while a worker can finish one
                    try:
                        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
                    except TIMEOUTS:
                        raise DaskLost(f"the Dask scheduler has had no worker for "
                                       f"{WORKERS_TIMEOUT_S} s") from None
    except (CommClosedError, OSError, CancelledError) as error:  # the scheduler is gone
        raise DaskLost(f"lost the Dask scheduler ({type(error).__name__})") from None


def _close(client, cluster) -> None:
    """Close the client, then the local cluster. Its workers have written and renamed their
    shards by then; one that takes longer to exit than Dask waits (4 s, often passed on a
    loaded machine) is killed, without the nanny's warning, which reads as a failure."""
    client.close()
    with logging_silenced("distributed.nanny"):
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
def logging_silenced(name: str):
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
    the process that started the cluster, which then closes the workers in order. A task's
    failure is not logged there: it is raised in that process, which reports it once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(_no_compute_failures)


def _no_compute_failures(record: logging.LogRecord) -> bool:
    """False for a worker's record of a task that raised (shown by the client instead)."""
    return not str(record.msg).startswith("Compute Failed")


def dask_available() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True
