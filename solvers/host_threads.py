"""Host threads for CPU work: the cores this process may use, and one shared pool.

Warp runs a CPU launch on the calling thread, and SciPy's and NumPy's loops release the GIL, so
work split into parts (rows of a grid, row blocks of a sparse matrix) runs on several cores when
the parts are handed to host threads; :func:`in_parallel` does that on one pool per process.
An explicit thread count above :func:`available_cores` is honoured (the parts are still split
as asked; only their speed-up is capped by the cores).

A process forked while physml works in another of its threads (a ``DataLoader`` with workers, a
``multiprocessing`` pool started beside a rollout) may use physml in the child: the child starts a
new pool, and the locks physml takes (:class:`ForkSafeLock`) are free there.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (which batch schedulers set) where the
    system tells it (Linux), else the machine's cores, else 1 where those are not known."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class ForkSafeLock:
    """A lock (``with lock:``) that a forked child gets free.

    A forked child runs only the thread that forked, so a lock another thread held at the fork
    would stay held there for ever; the child re-creates every one of these (kept in a set of
    weak references, so a lock lives as long as its owner). That is right only for a lock
    never held while code that could fork runs (a user's callback): the forking thread itself
    then holds none of them. What the lock guards is left as its holder had it at the fork; an
    owner whose state the child needs whole restores it in an after-fork hook of its own (as
    a pyamg build's seeded global generator, :mod:`physml.solvers.linalg.preconditioners`).
    Taking it costs one Python call more than a ``threading.Lock``; only a fork walks the
    set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _FORK_SAFE_LOCKS.add(self)

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()


_FORK_SAFE_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()

_pool: tuple[ThreadPoolExecutor, int] | None = None
"""The host pool and its count of workers (:func:`host_pool`)."""
_pool_lock = ForkSafeLock()

_POOL_THREAD = threading.local()
"""``marked`` is True on the pools' own threads."""


def _mark_pool_thread() -> None:
    _POOL_THREAD.marked = True


def host_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of host threads for concurrent CPU launches, of at least
    ``workers`` threads: one pool, replaced by a pool of ``workers`` when more are asked than
    it has (the threads of the one it replaces end once their work is done and nothing holds
    it), so the process keeps as many idle threads as the most it asked for at once, not one
    pool per count. A forked child starts a new pool: the parent's threads do not exist
    there. Work run on the pool must not wait for work it submits to it (:func:`in_parallel`
    runs such parts in turn)."""
    global _pool
    pool = _pool
    if pool is None or pool[1] < workers:
        with _pool_lock:
            if _pool is None or _pool[1] < workers:
                _pool = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="physml-rows",
                                            initializer=_mark_pool_thread), workers)
            pool = _pool
    return pool[0]


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


def _after_fork_in_child() -> None:
    """In a forked child: no pool threads exist there and the forking thread is not one; a
    :class:`ForkSafeLock` held at the fork was held by a thread that is not there either."""
    global _pool
    _pool = None
    _POOL_THREAD.marked = False
    for lock in list(_FORK_SAFE_LOCKS):
        lock._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
