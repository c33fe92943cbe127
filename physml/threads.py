r"""How many CPU threads PyTorch uses for a run, and how its waiting threads behave.

PyTorch's default is one intra-op thread per core with OpenMP's default wait policy: a thread
that reaches a barrier spins before it sleeps. When any other process runs, a spinning thread
takes the core its partner needs, and each parallel region waits a scheduler slice: on two
cores with one other busy process, Adam steps of the Burgers PINN ran 5 to 25 times slower
with two threads than with one (``benchmarks/results/threads.json``). With
``OMP_WAIT_POLICY=passive`` waiting threads sleep at once and two threads no longer collapse.

OpenMP reads the wait policy when PyTorch loads it, so :func:`passive_wait_policy` must run
before ``import torch`` (the CLI's first lines); :func:`apply_threads` sets the thread count
afterwards, and the run records the count it returns.
"""

from __future__ import annotations

import os
import sys

POINTS_PER_THREAD = 1000
"""Collocation points per extra thread: below this a thread's share of each kernel is too
small to pay for waking it."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which batch schedulers set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def passive_wait_policy() -> bool:
    """Set ``OMP_WAIT_POLICY=passive`` unless a policy is already set, if PyTorch is not yet
    imported; returns whether the passive policy is in effect for this process."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    return os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive"


def choose_threads(
    points: int, requested: int | str = "auto", *, passive: bool, cores: int | None = None
) -> int:
    r"""The intra-op thread count for a problem of ``points`` collocation points.

    ``requested`` "auto": with the passive wait policy
    $\min(\text{cores}, \max(1, \lfloor \text{points} / 1000 \rfloor))$, otherwise 1 (threads
    that spin collapse as soon as another process runs). A number is used as given.

    Args:
        points: collocation points per step (the size of each batched kernel).
        requested: "auto" or a thread count >= 1.
        passive: whether ``OMP_WAIT_POLICY=passive`` is in effect (:func:`passive_wait_policy`).
        cores: cores available (default :func:`available_cores`).

    Raises:
        ValueError: ``requested`` is neither "auto" nor an integer >= 1.
    """
    if requested != "auto":
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads={requested!r}: expected 'auto' or an integer >= 1")
        return requested
    if not passive:
        return 1
    cores = available_cores() if cores is None else cores
    return max(1, min(cores, points // POINTS_PER_THREAD))


def apply_threads(points: int, requested: int | str = "auto") -> int:
    """:func:`choose_threads` for this process (wait policy from its environment), passed to
    ``torch.set_num_threads``; returns the count, for the run's metrics."""
    import torch

    passive = os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive"
    threads = choose_threads(points, requested, passive=passive)
    torch.set_num_threads(threads)
    return threads
