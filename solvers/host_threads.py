"""Host threads for CPU work: the cores this process may use, and one shared pool.

Warp runs a CPU launch on the calling thread, and SciPy's and NumPy's loops release the GIL, so
work split into parts (rows of a grid, row blocks of a sparse matrix) runs on several cores when
the parts are handed to host threads; :func:`in_parallel` does that on one pool per process.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_POOL_THREAD = threading.local()
"""``marked`` is True on the pools' own threads."""


def _mark_pool_thread() -> None:
    _POOL_THREAD.marked = True


@functools.cache
def host_pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of ``workers`` host threads for concurrent CPU launches (a forked child
    starts new pools: the parent's threads do not exist there). Work run on a pool must not
    wait for work it submits to a pool (:func:`in_parallel` runs such parts in turn)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="physml-rows",
                              initializer=_mark_pool_thread)


def in_parallel(work: Callable[[int], None], count: int) -> None:
    """``work(0)`` on this thread and ``work(1) .. work(count - 1)`` on the host pool; returns
    when all are done (raising the first error). Called on a pool's own thread, it runs the
    parts one after the other on that thread: the pool's workers may all be waiting for this
    one, so parts queued to them could wait for ever."""
    if count == 1 or getattr(_POOL_THREAD, "marked", False):
        for part in range(count):
            work(part)
        return
    pending = [host_pool(count - 1).submit(work, k) for k in range(1, count)]
    try:
        work(0)
    finally:  # no part may still write its outputs when this returns or raises
        wait(pending)
    for job in pending:
        job.result()


def _forget_pools() -> None:
    """In a forked child: no pool threads exist there, and the forking thread is not one."""
    host_pool.cache_clear()
    _POOL_THREAD.marked = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)
