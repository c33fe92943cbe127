r"""How many CPU threads PyTorch uses for a run, and how its waiting threads behave.

PyTorch's default is one intra-op thread per core with OpenMP's default wait policy: a thread
that reaches a barrier spins before it sleeps. When any other process runs, a spinning thread
takes the core its partner needs, and each parallel region waits a scheduler slice: on two
shared, loaded cores (load average 5 to 10), Adam steps of the Burgers PINN ran 5 to 20 times
slower with two threads than with one, at 1000 to 16000 collocation points
(``benchmarks/results/threads.json``). With ``OMP_WAIT_POLICY=passive`` waiting threads sleep
at once and two threads do not collapse, but they gain nothing reliable over one: 0.7x
of one thread at 1000 and 16000 points on the machine alone, 1.4x and 2.8x beside an extra busy
process, in single fresh-process blocks of a noisy machine. So the automatic count stays at
one thread up to ``POINTS_PER_THREAD`` points per thread, and the policy is passive anyway.

OpenMP reads the wait policy when PyTorch loads it, so :func:`prefer_passive_wait` must run
before ``import torch`` (the CLI's first lines); :func:`apply_threads` sets the thread count
afterwards, and the run records the count it returns.
"""

from __future__ import annotations

import os
import sys

POINTS_PER_THREAD = 32000
"""Collocation points each thread of an automatic count gets: no measured size (up to 16000
on two loaded cores) gained from a second thread. A measurement on an idle machine may lower
it."""


def available_cores() -> int:
    """:func:`physml.solvers.host_threads.available_cores`, imported when asked: the solvers
    load Warp and SciPy, which importing this module (the CLI's first lines) should not."""
    from .solvers.host_threads import available_cores as cores

    return cores()


def prefer_passive_wait() -> bool:
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
    $\min(\text{cores}, \max(1, \lfloor \text{points} / P \rfloor))$ with
    $P$ = ``POINTS_PER_THREAD``, otherwise 1 (threads that spin collapse as soon as another
    process runs). A number is used as given.

    Args:
        points: collocation points per step (the size of each batched kernel).
        requested: "auto" or a thread count >= 1.
        passive: whether ``OMP_WAIT_POLICY=passive`` is in effect (:func:`prefer_passive_wait`).
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
