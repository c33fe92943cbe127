r"""The workspace and the solve loop of the Krylov solvers (:mod:`~physml.solvers.linalg.krylov`).

A workspace holds the vectors, scalar table and recorded launches of one method on one operator
and preconditioner, kept on the operator between solves. Every scalar stays on the device
(:mod:`~physml.solvers.linalg.scalar_table`); the loop reads the residuals once every
``check_every`` iterations, and the kernels freeze the iterate at the first one that met the
tolerance, so the answer and the iteration count are those of a check every iteration. An
iteration's launches are recorded once per solve and replayed every iteration. Once the
recursive residual meets the tolerance the loop checks the true one, $b - A x$, and restarts
from $x_j$ where rounding has let the two part; near the arithmetic's rounding floor it also
checks the true one as the recursive one falls, keeps the x of smallest true residual, and
stops when restarts no longer lower it (:class:`_FloorWatch`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any

import numpy as np
import warp as wp

from ..errors import ConvergenceError
from ..kernel_launch import launch as launch_kernel
from ..kernel_launch import specialize
from ..replay import Replay
from .kernels import (
    BNORM,
    RESIDUAL,
    dot_kernel,
    recorded_sweep,
    residual_kernel,
    vector_types,
)
from .krylov_outcome import (
    DIVERGED_ABOVE_FLOOR,
    Breakdown,
    SolveResult,
    carrying_iterate,
    convergence_failure,
    no_breakdown,
    rounding_floor,
)
from .linear_operator import CsrOperator, LinearOperator
from .preconditioners import Preconditioner
from .scalar_table import ScalarTable, TableCell


class Workspace:
    """The vectors, scalar table and recorded launches of one Krylov method on one operator and
    preconditioner: ``b`` (a copy of the right-hand side), ``x``, ``r`` and the table are made
    here; the method's builder adds its own vectors, the launches of its start (after
    r = b - A x and the table's row 0) and those of one iteration. Built on a first solve and
    reused by the next ones with the same operator, preconditioner and ``check_every``, so a
    solve in a time loop pays Warp's launch packing (about 1 ms on the CPU) once, not every
    step."""

    def __init__(self, A: LinearOperator, preconditioner: Preconditioner | None, b: wp.array,
                 columns: int, check_every: int) -> None:
        self.preconditioner = preconditioner
        self.b = wp.empty_like(b, requires_grad=False)
        self.x = wp.zeros_like(b, requires_grad=False)
        self.r = wp.empty_like(b, requires_grad=False)
        self.table = ScalarTable(check_every + 1, columns, b.device)
        self.start: list[Callable[[], None]] = [
            bound_method(A, "matvec", self.x, self.r),
            recorded_sweep(residual_kernel, [self.b], [], [self.table.s, self.r]),
        ]
        self.check_table = wp.zeros((1, BNORM + 1), dtype=wp.float64, device=b.device)
        self.spare = wp.empty_like(b, requires_grad=False)
        self.check: list[Callable[[], None]] = [
            bound_method(A, "matvec", self.x, self.spare),
            recorded_sweep(residual_kernel, [self.b], [], [self.check_table, self.spare]),
        ]
        """Launches writing $\\|b - A x\\|^2$ into ``check_table[0, 0]`` (zeroed first), the
        iterate and its recursion untouched."""
        self.empty_row = wp.zeros(1, dtype=wp.int32, device=b.device)
        self.check_rows = _rows_check(A, self.b, self.empty_row)
        """A launch writing $n - i$ into ``empty_row[0]`` (zeroed first) for the first row i
        of A that is empty where b is not (:func:`empty_row_kernel`); None for an operator
        other than a :class:`CsrOperator`."""
        self.best = wp.empty_like(b, requires_grad=False)
        self.lowest = wp.empty_like(b, requires_grad=False)
        self.origin = wp.empty_like(b, requires_grad=False)  # x at the start of a run
        self.plan: list[Callable[[], None]] = []
        # the method's breakdown test of a block's table rows (set by its builder)
        self.breakdown: Breakdown = no_breakdown
        self.lock = threading.Lock()

    def begin(self, b: wp.array, x0: wp.array | None, scale: float = 1.0) -> None:
        """b / scale and x0 / scale (zeros if None) into the workspace, a fresh table, and the
        start run."""
        wp.copy(self.b, b)
        if x0 is None:
            self.x.zero_()
        else:
            wp.copy(self.x, x0)
        if scale != 1.0:  # on the host: a rescaled b is rare
            for v in (self.b, self.x):
                v.assign(v.numpy() / scale)
        self.table.reset()
        for launch in self.start:
            launch()


_COLUMNS = {"cg": 4, "bicgstab": 6}


@wp.kernel(enable_backward=False)
def empty_row_kernel(
    offsets: wp.array(dtype=wp.int32),
    values: wp.array(dtype=Any),
    b: wp.array(dtype=Any),
    last: wp.array(dtype=wp.int32),
):
    """last[0] = max(last[0], n - i) for each row i of A (CSR ``offsets``, ``values``) with no
    nonzero stored value where $b_i \\ne 0$: n minus the first such row. Reads offsets,
    values, b; writes last."""
    i = wp.tid()
    if b[i] == b.dtype(0.0):
        return
    for k in range(offsets[i], offsets[i + 1]):
        if values[k] != values.dtype(0.0):
            return
    wp.atomic_max(last, 0, b.shape[0] - i)


for _T in (wp.float32, wp.float64):
    specialize(empty_row_kernel, _T, vector_types(_T, "values", "b", table=False))


def _rows_check(A: LinearOperator, b: wp.array, last: wp.array) -> Callable[[], None] | None:
    """:func:`empty_row_kernel` on A's matrix, ``b`` and ``last``, recorded; None unless A is a
    :class:`CsrOperator`."""
    if not isinstance(A, CsrOperator) or A.shape[0] == 0:
        return None
    matrix = A.matrix
    values = matrix.values.reshape((matrix.values.shape[0],))
    return Replay(launch_kernel(empty_row_kernel, A.dtype, dim=A.shape[0],
                                inputs=[matrix.offsets, values, b], outputs=[last],
                                device=b.device, record_tape=False, record_cmd=True))


def check_solvable_rows(work: Workspace) -> None:
    """Refuse a :class:`CsrOperator` A with an empty row (no nonzero stored value) where the
    workspace's b is not 0: $(A x)_i = 0$ for every x, so $A x = b$ has no solution, and a
    method would run to ``maxiter`` or diverge. One pass over A's entries on its device
    (O(nnz), a recorded launch) and a read of one number; other operators are not checked.

    Raises:
        ValueError: naming the first such row and its $b_i$.
    """
    if work.check_rows is None:
        return
    work.empty_row.zero_()
    work.check_rows()
    n = work.b.shape[0]
    row = n - int(work.empty_row.numpy()[0])
    if row < n:
        raise ValueError(f"row {row} of A is empty (no nonzero entry) while b[{row}] = "
                         f"{float(work.b[row : row + 1].numpy()[0]):.6g}: A x = b has no "
                         "solution, and no method or preconditioner finds one; assemble that "
                         "row's equation, or set b there to 0")


@contextmanager
def workspace_for(method: str, A: LinearOperator, preconditioner: Preconditioner | None,
               b: wp.array, check_every: int,
               build: Callable[[LinearOperator, Preconditioner | None, Workspace], None]
               ) -> Iterator[Workspace]:
    """The workspace of ``method`` for ``A`` and ``preconditioner``: the one kept on ``A`` from
    the last solve with them (one per method), else a new one, kept on ``A`` when ``A`` offers
    ``bind`` (its recorded products then hold its arrays, not ``A`` itself) and takes
    attributes. A workspace in use by another thread is not shared: that solve gets its own."""
    storage = getattr(A, "storage", None)  # a matrix whose arrays were replaced: a new one
    key = (preconditioner, check_every, b.shape[0], b.dtype, str(b.device),
           storage() if storage is not None else None)
    kept: dict[str, tuple] = getattr(A, "_krylov_workspaces", None) or {}
    entry = kept.get(method)
    work = entry[1] if entry is not None and _same_key(entry[0], key) else None
    if work is None or not work.lock.acquire(blocking=False):
        work = Workspace(A, preconditioner, b, _COLUMNS[method], check_every)
        build(A, preconditioner, work)
        work.lock.acquire()
        if hasattr(A, "bind"):
            kept[method] = (key, work)
            with suppress(AttributeError, TypeError):
                A._krylov_workspaces = kept
    try:
        yield work
    finally:
        work.lock.release()



def _same_key(a: tuple, b: tuple) -> bool:
    return a[0] is b[0] and a[1:] == b[1:]


def solve_in_workspace(method: str, work: Workspace, b: wp.array, x0: wp.array | None,
                       rtol: float, atol: float, maxiter: int, check_every: int,
                       floor_action: str) -> SolveResult:
    """Iterate until the recursive residual meets the tolerance, then check the true one,
    $b - A x$: where rounding has let the two part (float32, ill-conditioned A), restart from x
    with the true residual. Once restarts no longer lower the true residual
    (:class:`_FloorWatch`), the rounding floor lies above the tolerance: the x of smallest true
    residual checked is returned, that residual last in the history, as ``floor_action`` says
    (see :func:`cg`'s ``floor``). A b whose
    $\\|b\\|^2$ under- or overflows float64 is solved as $A (x / s) = b / s$
    (:func:`rhs_scale`). A :class:`ConvergenceError` carries the iterate it stopped at."""
    work.begin(b, x0)
    check_solvable_rows(work)
    scale = rhs_scale(b, work.table.read()[0][BNORM])
    with carrying_iterate(work.x, scale):
        if scale != 1.0:
            work.begin(b, x0, scale)
            return in_units_of_b(partial(_solve_from_start, method, work, rtol, atol / scale,
                                         maxiter, check_every, floor_action, stacklevel=5), scale)
        return _solve_from_start(method, work, rtol, atol, maxiter, check_every, floor_action,
                                 stacklevel=4)


def _solve_from_start(method: str, work: Workspace, rtol: float, atol: float, maxiter: int,
                      check_every: int, floor_action: str, stacklevel: int) -> SolveResult:
    """:func:`solve_in_workspace` from the workspace's start (run by ``work.begin``);
    ``stacklevel`` places a rounding-floor warning at the user's call of cg or bicgstab,
    counted from here."""
    start = work.table.read()[0]
    watch = _FloorWatch(work, float(np.sqrt(start[BNORM])), float(np.sqrt(start[RESIDUAL])))
    iterations, norms, b_norm = _iterate(method, work.plan, work.table, rtol, atol, maxiter,
                                         check_every, work.breakdown, work.preconditioner,
                                         watch=watch)
    if b_norm == 0.0 and atol == 0.0:  # b = 0: the solution is 0, whatever x0
        work.x.zero_()
        return SolveResult(wp.clone(work.x), iterations, norms, b_norm)
    tol = max(rtol * b_norm, atol)
    while True:
        true = _true_residual(work)
        stalled = not true <= tol and watch.stalled(true)
        if (stalled or watch.diverged) and true > watch.best:  # x drifted off: to the best one
            wp.copy(work.x, work.best)
            true = _true_residual(work)
        norms = np.append(norms[:-1], true)  # iteration j's true residual replaces its own
        if true <= tol:
            break
        if stalled:
            floor = watch.floor_at_x()
            if watch.runaways and true > DIVERGED_ABOVE_FLOOR * floor:
                raise convergence_failure(method, iterations, norms, b_norm, tol,
                                          diverged=(*watch.runaway, watch.runaways, floor))
            rounding_floor(method, floor_action, work.x.dtype, iterations, norms, b_norm, tol,
                           stacklevel=stacklevel, above_floor=true / floor)
            break
        for launch in work.start[2:]:  # the method's start from r = b - A x
            launch()
        watch.restart(true)
        iterations, norms, _ = _iterate(method, work.plan, work.table, rtol, atol, maxiter,
                                        check_every, work.breakdown, work.preconditioner,
                                        iterations, norms[:-1], watch, watch.target(true))
    return SolveResult(wp.clone(work.x), iterations, norms, b_norm)


FLOOR_ULPS = 100
"""Below ``FLOOR_ULPS`` units of roundoff of the vectors' dtype times $\\|b\\|$ the
recursive residual may have parted from the true one (the floor of float32 arithmetic on a
Poisson system lies between 3e-7 and 2e-6 of $\\|b\\|$ for a rough b, and from 7e-6 up,
growing with the grid, for a smooth one: :data:`~.krylov.DEFAULT_RTOL`): :class:`_FloorWatch`
checks the true one from there."""


class _FloorWatch:
    """Where a solve meets the rounding floor: the best iterate, when to restart, when to stop.

    Below the floor estimate $e$ = ``FLOOR_ULPS`` $\\cdot$ eps $\\cdot \\|b\\|$ (eps of the
    vectors' dtype), at every halving of the recursive residual since the last check, a call
    computes the true residual of x (into a vector of its own: the iteration goes on as it
    was) and ends the run of iterations when it did not halve since that check: the two have
    parted, and iterating on only lets x drift. Above $e$ a call copies x, at every halving of
    the recursive residual, into ``work.lowest``, and ends a run whose recursive residual has
    grown to $1 / (\\text{FLOOR\\_ULPS} \\cdot \\text{eps})$ times its smallest since the
    run's start, at any iteration of the block (each one's residual is tested, so a check
    every iteration finds the same runaway), with x set to that copy (``diverged``;
    ``runaways`` counts them, ``runaway`` keeps the first one's iteration, smallest and grown
    residual; where that copy's recursive residual lies above twice the smallest, x is instead
    the iterate of the smallest, found by running the run again from its start, kept in
    ``work.origin``, to that iteration): the rounding of so large a residual exceeds the
    smallest, and the recursion no longer follows $b - A x$ (BiCGStab on a system it is
    unstable on, CG on a singular A with b outside its range, or either in float32 on a system
    whose floor lies far above the tolerance, which would otherwise run on to ``maxiter`` or
    overflow); the next run starts from the best x. A restart from a true residual $t \\le e$ is
    a refinement step, iterating until the recursive residual is $t / 2$. The iterate with the
    smallest true residual seen, at the start, a check or a restart, is kept in ``work.best``; a
    solve stops when a diverged run from the best x did not lower it, when, while the best lies
    above $e$, a restart did not halve the true residual of the one before (after a divergence:
    the best one's), or, once it lies below, two restarts in a row did not lower it. A stop
    after a runaway is the floor only where the best true residual lies within
    :data:`~.krylov_outcome.DIVERGED_ABOVE_FLOOR` times the rounding floor of the best x;
    above, the method diverged. In float64 $e$ lies near 1e-14 of $\\|b\\|$, under every
    tolerance that float64 meets, and a growth of 4e13 is no converging solve's, so such a
    solve runs as without the watch (iterations, x, products with A)."""

    def __init__(self, work: Workspace, b_norm: float, start: float) -> None:
        """``start``: the true residual of x0, kept as the first best."""
        self.work, self.b_norm = work, b_norm
        self.eps = float(np.finfo(wp.dtype_to_numpy(work.x.dtype)).eps)
        self.estimate = FLOOR_ULPS * self.eps * b_norm
        self.growth = 1.0 / (FLOOR_ULPS * self.eps)
        self.best, self.floor, self.stalls = np.inf, np.inf, 0
        self.runaway: tuple[int, float, float] | None = None
        self.runaways = 0
        self.restart(np.inf)
        self.keep(start)
        self.best_before, self.from_best = self.best, True

    def keep(self, true: float) -> None:
        """Keep x in ``work.best`` if its true residual ``true`` is the smallest seen."""
        if true < self.best:
            wp.copy(self.work.best, self.work.x)
            self.best = true

    def stalled(self, true: float) -> bool:
        """Whether x, of true residual ``true`` (above the tolerance) at the end of a run of
        iterations, is as close as restarts get (the caller then returns the best x; after a
        divergence it restarts from it otherwise)."""
        self.keep(true)
        if self.diverged:  # the next run would start from the best x
            if self.from_best and not self.best < self.best_before:  # and run as this one
                return True
            true = self.best
        if self.best > self.estimate:
            stalled = not true < 0.5 * self.floor
        else:
            self.stalls = 0 if self.best < self.best_before else self.stalls + 1
            stalled = self.stalls >= 2
        self.floor = true
        return stalled

    def floor_at_x(self) -> float:
        """$\\text{eps}\\,(\\|A (x \\circ s)\\|_2 + \\|b\\|_2)$ for ``work.x`` and fixed random
        signs $s_i = \\pm 1$: rounding x to the dtype moves each $x_i$ by up to eps $|x_i| / 2$,
        and $b - A x$ by about $0.3\\,\\text{eps}\\,\\|A (x \\circ s)\\|$, a product with A
        errs by about as much, and rounding b (and the subtraction) by up to eps $|b_i| / 2$; no
        true residual of the dtype lies far below (nor is the floor 0, even at x = 0). One
        product (the check's, with x signed for it and restored), on the host's copy of x."""
        work = self.work
        x = work.x.numpy().copy()  # a view of x on the CPU
        signs = np.random.default_rng(0).integers(0, 2, x.size).astype(x.dtype)
        work.x.assign(x * (2 * signs - 1))
        work.check[0]()  # A x into spare
        work.x.assign(x)
        return self.eps * (norm_of(work.spare.numpy().astype(np.float64)) + self.b_norm)

    def target(self, true: float) -> float:
        """The recursive residual a restart from a true residual ``true`` iterates to (besides
        the tolerance): half of it below the floor estimate, else 0."""
        return 0.5 * true if true <= self.estimate else 0.0

    def restart(self, true: float) -> None:
        """A (re)start from an iterate whose true residual is ``true``: x kept in
        ``work.origin``."""
        wp.copy(self.work.origin, self.work.x)
        self.recursive, self.true, self.best_before = true, true, self.best
        self.smallest, self.copied, self.diverged = true, np.inf, False
        self.ran, self.smallest_at = 0, 0  # iterations into the run, and that of the smallest
        self.from_best = true <= self.best

    def rerun(self, iterations: int) -> None:
        """x = the iterate ``iterations`` iterations into the run: the run again from its
        start, ``work.origin``, under the same tolerance (its launches are deterministic)."""
        work, table = self.work, self.work.table
        tol2 = float(table.limit.numpy()[0])
        wp.copy(work.x, work.origin)
        _true_residual(work)
        table.set_limit(tol2)
        for launch in work.start[2:]:
            launch()
        rows = table.s.shape[0] - 1
        for done in range(0, iterations, rows):
            for _ in range(min(rows, iterations - done)):
                for launch in work.plan:
                    launch()
                table.advance()
            table.roll()

    def __call__(self, block: np.ndarray, iterations: int) -> bool:
        """After a block whose iterations, the last of them ``iterations``, ended at recursive
        residuals ``block``: True to stop iterating."""
        work = self.work
        seen = np.append(self.smallest, block)
        smallest = np.minimum.accumulate(seen)[1:]
        grown = np.flatnonzero(block > self.growth * smallest)
        upto = int(grown[0]) + 2 if grown.size else seen.size
        at_smallest = int(np.argmin(seen[:upto]))  # 0: before this block
        if at_smallest:
            self.smallest_at = self.ran + at_smallest
        self.ran += block.size
        self.smallest = float(smallest[-1])
        recursive = float(block[-1])
        if grown.size:
            at = int(grown[0])
            if self.runaway is None:
                self.runaway = (iterations - block.size + at + 1, float(smallest[at]),
                                float(block[at]))
            self.runaways += 1
            if smallest[at] < 0.5 * self.copied:
                self.rerun(self.smallest_at)
            else:
                wp.copy(work.x, work.lowest)
            self.diverged = True
            return True
        if recursive > self.estimate and recursive <= 0.5 * self.copied:
            wp.copy(work.lowest, work.x)
            self.copied = recursive
        if recursive > min(self.estimate, 0.5 * self.recursive):
            return False
        work.check_table.zero_()
        for launch in work.check:
            launch()
        true = float(np.sqrt(work.check_table.numpy()[0, RESIDUAL]))
        self.keep(true)
        parted = not true < 0.5 * self.true
        self.recursive, self.true = recursive, true
        return parted


def _true_residual(work: Workspace) -> float:
    """$\\|b - A x\\|_2$ for the workspace's x, leaving r = b - A x and a fresh table whose
    row 0 holds $r^T r$ and $b^T b$ (the state after the first two launches of a start)."""
    work.table.reset()
    for launch in work.start[:2]:
        launch()
    return float(np.sqrt(work.table.read()[0][RESIDUAL]))


def bound_method(obj: Any, method: str, a: wp.array, b: wp.array) -> Callable[[], None]:
    """``obj.<method>(a, b)`` as a call without arguments: ``obj.bind(a, b)`` (a recorded
    launch) where the operator or preconditioner offers it."""
    bind = getattr(obj, "bind", None)
    return bind(a, b) if bind is not None else partial(getattr(obj, method), a, b)


def with_dot(
    obj: Any, method: str, x: wp.array, y: wp.array, cell: TableCell
) -> list[Callable[[], None]]:
    """``obj.<method>(x, y)`` (a product or a preconditioner apply) and ``cell`` +=
    $x \\cdot y$: one fused launch where ``obj`` offers ``bind_dot``, else two."""
    bind_dot = getattr(obj, "bind_dot", None)
    if bind_dot is not None:
        return [bind_dot(x, y, cell)]
    return [bound_method(obj, method, x, y),
            recorded_sweep(dot_kernel, [x, y], cell.address, [cell.table])]


def _iterate(
    method: str,
    step: list[Callable[[], None]],
    table: ScalarTable,
    rtol: float,
    atol: float,
    maxiter: int,
    check_every: int,
    breakdown: Breakdown,
    preconditioner: Preconditioner | None,
    done: int = 0,
    earlier: np.ndarray | None = None,
    watch: Callable[[np.ndarray, int], bool] | None = None,
    stop_at: float = 0.0,
) -> tuple[int, np.ndarray, float]:
    """Run the iterations in blocks of ``check_every``, reading the table once per block;
    return the iterations, the residual norms and $\\|b\\|$. A restart passes the
    iterations ``done`` before it and their residual norms ``earlier``: the counts, the norms
    and ``maxiter`` are then the whole solve's. ``breakdown`` finds an iteration
    of a block whose step divided by zero (the kernels take a zero step there), which stops the
    solve at once with that reason; a NaN/Inf residual stops it naming ``preconditioner``.

    ``step`` is the launches of one iteration, most of them recorded, all reading the local
    iteration j from the table's cursor and the tolerance from its ``limit``, replayed every
    iteration. ``watch`` (a :class:`_FloorWatch`), called after each block with the recursive
    residual norms of its iterations and the iterations run, may end the run there (returning
    True); ``stop_at`` ends it at that recursive residual norm if above the tolerance (a
    refinement step). On the CPU, where the launches run synchronously and the table is a view
    on the host, a block also stops at the iteration that met the tolerance; elsewhere the
    kernels run the rest of the block frozen."""
    start = table.read()[0]
    b_norm = float(np.sqrt(start[BNORM]))
    if b_norm == 0.0 and atol == 0.0:  # A x = 0: x = 0 exactly (the caller sets it), as SciPy
        return 0, np.zeros(1), b_norm
    tol = max(rtol * b_norm, atol)
    tol2 = max(tol, stop_at) ** 2
    table.set_limit(tol2)
    history = [*(np.square(earlier) if earlier is not None else ()), float(start[RESIDUAL])]
    iterations = done
    plan = [*step, table.advance]
    live = table.live
    while not history[-1] <= tol2:
        if iterations >= maxiter or not np.isfinite(history[-1]):
            raise convergence_failure(method, iterations, np.sqrt(history), b_norm, tol,
                                      preconditioner=preconditioner)
        m = min(check_every, maxiter - iterations)
        ran = 0
        while ran < m:
            for launch in plan:
                launch()
            ran += 1
            if live is not None and not live[ran, RESIDUAL] > tol2:
                break  # the CPU's table is a view: no iteration past the one that converged
        rows = table.read()[: ran + 1]
        block = rows[1:, RESIDUAL]
        done = np.flatnonzero(~(block > tol2))  # met the tolerance, or NaN
        taken = int(done[0]) + 1 if done.size else ran
        broken = breakdown(rows[: taken + 1], tol2)
        if broken is not None:
            at, *why = broken
            history.extend(block[:at].tolist())
            raise convergence_failure(method, iterations + at, np.sqrt(history), b_norm, tol,
                                      breakdown=tuple(why))
        history.extend(block[:taken].tolist())
        iterations += taken
        table.roll()
        if history[-1] > tol2 and watch is not None and watch(np.sqrt(history[-taken:]),
                                                              iterations):
            break
    return iterations, np.sqrt(np.asarray(history)), b_norm


SQUARES_KEPT = (2.0 ** -600, 2.0 ** 600)
"""The $\\|b\\|^2$ solved as given: the squares that a solve sums, from its right-hand side's
down to its residuals' at the tolerance (about $\\text{rtol}^2 \\|b\\|^2 / n$), stay normal
float64 numbers."""


def rhs_scale(b: wp.array, b_dot_b: float) -> float:
    """1 where $\\|b\\|^2$ = ``b_dot_b`` lies in :data:`SQUARES_KEPT` or b = 0; else the power
    of two s just below $\\|b\\|$, and the solve is of $A (x / s) = b / s$ (exact: a power of
    two), so that a b of entries near 1e-170 (whose square underflows) or 1e160 (overflows) is
    solved, not taken as zero or infinite. Reads b on the host only then.

    Raises:
        ValueError: b holds NaN/Inf values, or its norm overflows float64.
    """
    if SQUARES_KEPT[0] <= b_dot_b <= SQUARES_KEPT[1]:
        return 1.0
    values = b.numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"b holds NaN/Inf values in rows {bad[:10].tolist()}; the right-hand "
                         "side must be finite")
    norm = norm_of(values)
    if norm == math.inf:
        raise ValueError(f"b's norm overflows float64 (its largest entry is "
                         f"{np.abs(values).max():.3e}); scale the system down")
    return math.ldexp(0.5, math.frexp(norm)[1]) if norm > 0.0 else 1.0  # 2^k <= |b| < 2^(k+1)


def norm_of(values: np.ndarray) -> float:
    """$\\|v\\|_2$ of a float64 vector as $m \\|v / m\\|_2$, $m = \\max_i |v_i|$: no square
    under- or overflows (inf only for a norm beyond float64, or an infinite entry)."""
    largest = float(np.abs(values).max(initial=0.0))
    if not 0.0 < largest < math.inf:
        return largest
    return largest * float(np.linalg.norm(values / largest))


def in_units_of_b(solve: Callable[[], SolveResult], scale: float) -> SolveResult:
    """The result of ``solve()``, a solve of $A (x / s) = b / s$ for s = ``scale``, in b's
    units: x, the residual norms and $\\|b\\|$ times s (also the norms of the
    :class:`ConvergenceError` it raises; its x is scaled by :func:`carrying_iterate`)."""
    try:
        result = solve()
    except ConvergenceError as error:
        error.residuals = error.residuals * scale
        raise
    result.x.assign(result.x.numpy() * scale)
    return SolveResult(result.x, result.iterations, result.residuals * scale,
                       result.b_norm * scale)
