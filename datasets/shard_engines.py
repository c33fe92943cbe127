"""The engines that write a generation's pending shards: in this process, or on Dask
distributed (a local cluster of single-threaded processes started and stopped here, or the
client of an existing scheduler), with a Ctrl-C closing a local cluster in order.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .grid_generate import write_shard

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
    cluster with Dask's logging silenced and lets the KeyboardInterrupt go on; a shard that
    fails (a sample that blew up) closes it the same way, its error raised here alone (the
    workers log no "Compute Failed" record of it). Once every shard is written, the workers'
    Dask logging is silenced before the cluster is closed: a worker's heartbeat that the close
    cuts off logs a traceback that says nothing about the run."""
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
    except BaseException:  # Ctrl-C, or a shard that failed (its error goes on, told once)
        if cluster is not None:  # shards being written are dropped, workers mid-write killed
            with _logging_silenced("distributed"):
                client.run(_silence_dask_logging, on_error="ignore")
                _close(client, cluster)
            cluster = None
        raise
    finally:
        if cluster is not None:  # every shard is written
            client.run(_silence_dask_logging, on_error="ignore")
            _close(client, cluster)


def _close(client, cluster) -> None:
    """Close the client, then the local cluster. Its workers have written and renamed their
    shards by then; one that takes longer to exit than Dask waits (4 s, often passed on a
    loaded machine) is killed, without the nanny's warning, which reads as a failure."""
    client.close()
    with _logging_silenced("distributed.nanny"):
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
