"""Sparse products split in row blocks over host threads: equal to SciPy's, bit for bit."""

import numpy as np
import pytest
import scipy.sparse as sp

from physml.solvers.linalg.row_blocks import ROWS_PER_THREAD, RowBlockProduct, block_count


def matrix(n: int, dtype=np.float64) -> sp.csr_matrix:
    """A random sparse matrix with rows of very unequal lengths (blocks split by nonzeros)."""
    rng = np.random.default_rng(1)
    dense = rng.standard_normal((n, n)) * (rng.random((n, n)) < np.linspace(0.02, 0.6, n)[:, None])
    return sp.csr_matrix(dense.astype(dtype))


@pytest.mark.parametrize("blocks", [1, 2, 3, 7])
def test_products_equal_scipys_for_any_number_of_blocks(blocks):
    m = matrix(120)
    rng = np.random.default_rng(2)
    v, b, start = rng.standard_normal((3, 120))
    product = RowBlockProduct(m, blocks)
    assert len(product.bounds) == blocks
    out = np.full(120, np.nan)
    product.multiply(v, out)
    np.testing.assert_array_equal(out, m @ v)
    product.residual(v, b, out)
    np.testing.assert_array_equal(out, b - m @ v)
    out = start.copy()
    product.accumulate(v, out)  # each row's sum starts from out's entry: rounded otherwise
    np.testing.assert_allclose(out, start + m @ v, rtol=1e-14, atol=1e-14)


def test_blocks_hold_about_equal_nonzeros():
    m = matrix(400)
    counts = [m.indptr[last] - m.indptr[first] for first, last in RowBlockProduct(m, 4).bounds]
    assert max(counts) - min(counts) <= 2 * m.getnnz(axis=1).max()  # a row either side
    assert sum(counts) == m.nnz


def test_a_float32_matrix_takes_float32_vectors():
    m = matrix(50, np.float32)
    out = np.empty(50, dtype=np.float32)
    RowBlockProduct(m, 2).multiply(np.ones(50, dtype=np.float32), out)
    np.testing.assert_array_equal(out, m @ np.ones(50, dtype=np.float32))


def test_block_count_reads_auto_and_refuses_other_counts(monkeypatch):
    from physml.solvers.linalg import row_blocks

    monkeypatch.setattr(row_blocks, "available_cores", lambda: 2)
    assert block_count(ROWS_PER_THREAD - 1) == 1
    assert block_count(4 * ROWS_PER_THREAD) == 2
    monkeypatch.setattr(row_blocks, "available_cores", lambda: 4)
    assert block_count(3 * ROWS_PER_THREAD - 1) == 2  # whole blocks of ROWS_PER_THREAD rows
    assert block_count(10, 3) == 3
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(ValueError, match="threads="):
            block_count(100, bad)


def test_a_matrix_that_is_not_scipy_csr_is_refused():
    with pytest.raises(ValueError, match="SciPy CSR"):
        RowBlockProduct(matrix(10).tocsc(), 1)


@pytest.mark.parametrize(("call", "named"), [
    (lambda p, n: p.multiply(np.ones(n), np.empty(n - 1)), "out has shape"),
    (lambda p, n: p.multiply(np.ones(n + 1), np.empty(n)), "v has shape"),
    (lambda p, n: p.accumulate(np.ones(n, dtype=np.float32), np.empty(n)), "v has shape"),
    (lambda p, n: p.residual(np.ones(n), [1.0] * n, np.empty(n)), "b has type"),
])
def test_a_vector_of_another_size_or_dtype_is_named(call, named):
    """SciPy's row loop would read or write past the end of a shorter vector."""
    with pytest.raises(ValueError, match=named):
        call(RowBlockProduct(matrix(30), 2), 30)


def test_a_rectangular_matrix_checks_each_vector_against_its_own_axis():
    m = matrix(40)[:25]  # (25, 40)
    product = RowBlockProduct(m, 2)
    out = np.empty(25)
    product.multiply(np.ones(40), out)
    np.testing.assert_array_equal(out, m @ np.ones(40))
    with pytest.raises(ValueError, match=r"v has shape \(25,\)"):
        product.multiply(np.ones(25), out)
    with pytest.raises(ValueError, match=r"out has shape \(40,\)"):
        product.multiply(np.ones(40), np.empty(40))


@pytest.mark.parametrize("call", [
    lambda p, v: p.multiply(v, v),
    lambda p, v: p.accumulate(v[::-1], v),
    lambda p, v: p.residual(np.ones(30), v, v),
])
def test_an_out_that_shares_memory_with_an_input_is_refused(call):
    """One block would read entries another has already overwritten."""
    with pytest.raises(ValueError, match="share memory"):
        call(RowBlockProduct(matrix(30), 2), np.ones(30))


NESTED = """
from physml.solvers.host_threads import in_parallel
done = []
in_parallel(lambda outer: in_parallel(lambda inner: done.append((outer, inner)), 2), 2)
assert sorted(done) == [(0, 0), (0, 1), (1, 0), (1, 1)], done
"""


def test_parts_run_on_a_pool_thread_run_in_turn_instead_of_waiting_on_the_pool():
    """A part of in_parallel's work that calls in_parallel again would otherwise queue work to
    the pool's one worker, which is itself, and wait for ever (in a child process, so that a
    deadlock fails the test instead of hanging the run)."""
    import subprocess
    import sys

    try:
        result = subprocess.run([sys.executable, "-c", NESTED], capture_output=True, text=True,
                                timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("nested in_parallel deadlocked")
    assert result.returncode == 0, result.stderr


def test_a_child_forked_on_a_pool_thread_runs_its_parts_in_parallel_again():
    import os

    from physml.solvers import host_threads

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")

    def fork_and_report(index: int) -> None:
        if index != 1:
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its thread is no pool thread
            os.write(write, b"1" if getattr(host_threads._POOL_THREAD, "marked", False) else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        reports.append(os.read(read, 1))
        os.close(read)
        os.close(write)

    reports = []
    host_threads.in_parallel(fork_and_report, 2)
    assert reports == [b"0"]


def test_a_sweep_over_thread_counts_leaves_one_pool_of_the_largest_count():
    """Each count's parts run at once (a barrier of all of them), so each count needs its
    threads; a pool replaced by a larger one lets its threads end."""
    import threading
    import time

    from physml.solvers.host_threads import in_parallel

    def pool_threads() -> int:
        return sum(t.name.startswith("physml-rows") for t in threading.enumerate())

    for count in range(2, 9):
        barrier = threading.Barrier(count, timeout=30)
        in_parallel(lambda part, barrier=barrier: barrier.wait(), count)
    deadline = time.monotonic() + 5
    while pool_threads() > 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool_threads() <= 7  # the largest count's 7 workers, not one pool per count


def _exit_code_of_a_child_forked_while_held(locks, work, timeout: float = 30.0) -> int | None:
    """Fork while another thread holds ``locks``; the child runs ``work()`` and exits 0 (1 on
    an error). The child's exit code, or None when it had not exited after ``timeout``
    seconds (then killed)."""
    import os
    import signal
    import threading
    import time
    import traceback
    from contextlib import ExitStack

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test run
            try:
                work()
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
    finally:
        release.set()
        holder.join()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


_NO_FORK = pytest.mark.skipif(not hasattr(__import__("os"), "fork"),
                              reason="no fork on this platform")


@_NO_FORK
def test_a_child_forked_during_another_thread_s_rollout_step_rolls_out_the_same_solver():
    """The child got the step lock held by a thread that does not exist there: its rollout
    on the same solver waited for ever."""
    from physml.solvers import BurgersSolver1D, Grid

    solver = BurgersSolver1D(Grid((256,), (0.0,), (1.0,)), nu=0.01, dt=1e-4, threads=2)
    u0 = 0.5 + 0.2 * np.random.default_rng(0).random((4, 256))
    expected = solver.rollout(u0, 20, 10)

    def child() -> None:
        assert np.array_equal(solver.rollout(u0, 20, 10), expected)

    assert _exit_code_of_a_child_forked_while_held([solver.stages.step_lock], child) == 0


@_NO_FORK
def test_a_child_forked_during_another_thread_s_backward_pass_differentiates_a_rollout():
    """Warp's one tape per process is taken in turn under a lock: held at the fork, the
    child's backward pass waited for ever."""
    import torch

    from physml import bridge
    from physml.solvers import Grid, HeatSolver1D, neumann

    solver = HeatSolver1D(Grid((16,), (0.0,), (1.0,)), neumann(1, 0.1), nu=0.02, dt=0.01,
                          scheme="imex")

    def gradient() -> torch.Tensor:
        u0 = torch.linspace(0.1, 0.6, 16, dtype=torch.float64, requires_grad=True)
        (bridge.rollout(solver, u0, 5) ** 2).sum().backward()
        return u0.grad

    expected = gradient()

    def child() -> None:
        assert torch.equal(gradient(), expected)

    locks = [bridge._TAPE_LOCK, solver.stages.step_lock]
    assert _exit_code_of_a_child_forked_while_held(locks, child) == 0


@_NO_FORK
def test_a_child_forked_during_another_thread_s_factor_apply_applies_the_factor():
    """The intermediate vector of a factor's apply is taken under a lock: held at the fork,
    the child's apply waited for ever."""
    import warp as wp

    from physml.solvers.linalg import CsrOperator, IncompleteCholesky, csr_from_scipy
    from physml.solvers.linalg.model_problems import poisson_2d

    ic = IncompleteCholesky(CsrOperator(csr_from_scipy(poisson_2d(8), wp.float64, "cpu")))
    r = wp.array(np.random.default_rng(0).standard_normal(64), dtype=wp.float64)
    z = wp.empty_like(r)
    ic.apply(r, z)
    expected = z.numpy().copy()

    def child() -> None:
        ic.apply(r, z)
        assert np.array_equal(z.numpy(), expected)

    assert _exit_code_of_a_child_forked_while_held([ic._y._lock], child) == 0
