r"""Krylov solvers for $A x = b$ over the :class:`~physml.solvers.linalg.LinearOperator` protocol.

:func:`cg` (preconditioned conjugate gradients, A and M symmetric positive definite) and
:func:`bicgstab` (BiCGStab, right-preconditioned, any nonsingular A) stop when

$$\|r_j\|_2 \le \max(\text{rtol}\,\|b\|_2,\ \text{atol}),\qquad r_j = b - A x_j$$

for the recursively updated residual, and then check the true one, $b - A x_j$, once: where
rounding has let the two part (float32, or an ill-conditioned A), they restart from $x_j$
with the true residual, until it meets the tolerance or stops halving from one restart to the
next (the arithmetic's floor: the answer comes with an
:class:`~physml.solvers.errors.InaccurateSolveWarning`). Every scalar stays on the device
(:mod:`~physml.solvers.linalg.scalar_table`); the host reads the residuals once every
``check_every`` iterations, and the kernels freeze the iterate at the first one that met the
tolerance, so the answer and the iteration count are those of a check every iteration. An
iteration's launches are recorded once per solve and replayed every iteration.
Vectors are float32 or float64 on any Warp device; reductions accumulate in float64.
Not ``warp.optim.linear``: see :mod:`~physml.solvers.linalg.kernels` for why.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import warp as wp

from ..errors import ConvergenceError, InaccurateSolveWarning, whole_number
from .kernels import (
    BNORM,
    RESIDUAL,
    bicgstab_direction_kernel,
    bicgstab_half_kernel,
    bicgstab_update_kernel,
    cg_direction_kernel,
    cg_update_jacobi_kernel,
    cg_update_kernel,
    dot2_kernel,
    dot_kernel,
    recorded_sweep,
    residual_kernel,
)
from .linear_operator import LinearOperator, check_vectors
from .preconditioners import Preconditioner
from .scalar_table import ScalarTable, TableCell


@dataclass(frozen=True)
class SolveResult:
    """The outcome of a converged Krylov solve.

    Attributes:
        x: the solution, a new Warp array of shape (n,).
        iterations: iterations run until the tolerance was met.
        residuals: $\\|r_j\\|_2$ for j = 0..iterations, shape (iterations + 1,): the
            recursive residuals, but for the start of each restart and the last entry, which
            are true residuals $\\|b - A x_j\\|_2$.
        b_norm: $\\|b\\|_2$.
    """

    x: wp.array
    iterations: int
    residuals: np.ndarray
    b_norm: float

    @property
    def relative_residual(self) -> float:
        """$\\|b - A x\\| / \\|b\\|$ of the answer (the true residual)."""
        return float(self.residuals[-1] / self.b_norm) if self.b_norm > 0 else 0.0


def cg(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None = None,
    *,
    preconditioner: Preconditioner | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    check_every: int = 10,
    floor: str = "warn",
) -> SolveResult:
    """Preconditioned conjugate gradients for $A x = b$, A symmetric positive definite.

    Per iteration, replayed from recorded launches: one product with A, one preconditioner apply
    (each also giving the dot product that follows it, $p^T A p$ and $r^T z$, where it offers
    ``bind_dot``; else a dot kernel after it), and two fused vector kernels; a diagonal
    preconditioner (one with an ``inverse_diagonal`` array, :class:`~.preconditioners.Jacobi`)
    is applied inside the first of them, in the same pass over r:
    $\\alpha = r^T z / p^T A p$, $x \\mathrel{+}= \\alpha p$, $r \\mathrel{-}= \\alpha A p$,
    $z = M^{-1} r$, $p = z + (r_+^T z_+ / r^T z)\\, p$.

    Args:
        A: the operator, shape (n, n).
        b: right-hand side, shape (n,), A's dtype and device.
        x0: initial guess (zeros if None); not modified.
        preconditioner: $M^{-1}$ (symmetric positive definite), or None.
        rtol, atol: stop when $\\|r\\| \\le \\max(rtol\\,\\|b\\|, atol)$ (b = 0 and atol = 0:
            x = 0 at once).
        maxiter: at most this many iterations (10 n if None).
        check_every: iterations between host reads of the residual.
        floor: what to do when the true residual stays above the tolerance through restarts
            (the arithmetic's rounding floor lies above it): ``"warn"`` returns x with an
            :class:`~physml.solvers.errors.InaccurateSolveWarning`, ``"accept"`` returns it
            silently (a tolerance set at the arithmetic's limit on purpose), ``"raise"``
            raises :class:`ConvergenceError`.

    Returns:
        :class:`SolveResult`.

    Raises:
        ConvergenceError: the tolerance is not met within ``maxiter`` iterations, the
            residual became NaN/Inf, or (``floor="raise"``) the true residual stays above the
            tolerance; it carries the residual reached.
    """
    maxiter = check_arguments(A, b, x0, rtol, atol, maxiter, check_every, preconditioner,
                              floor)
    with _workspace("cg", A, preconditioner, b, check_every, _cg_launches) as work:
        return _solve("cg", work, b, x0, rtol, atol, maxiter, check_every, floor)


def _cg_launches(A: LinearOperator, preconditioner: Preconditioner | None,
                 work: _Workspace) -> None:
    """CG's vectors, its start (r = b - A x, z = M r, s[0, rz] = r · z, p = z) and the
    launches of one iteration, recorded into ``work``."""
    x, r, table = work.x, work.r, work.table
    s, cursor, limit = table.s, table.cursor, table.limit
    if preconditioner is None:
        z, rz_col = r, RESIDUAL
    else:
        z, rz_col = wp.empty_like(r), 1
        work.start += [_bound(preconditioner, "apply", r, z),
                       recorded_sweep(dot_kernel, [r, z], table.cell(0, rz_col).address, [s])]
    p, ap = wp.empty_like(r), wp.empty_like(r)
    work.start.append(partial(wp.copy, p, z))
    inverse_diagonal = getattr(preconditioner, "inverse_diagonal", None)
    work.plan += _with_dot(A, "matvec", p, ap, table.cell(0, 2))
    if inverse_diagonal is not None:  # a diagonal M: applied inside the update's pass
        work.plan.append(recorded_sweep(cg_update_jacobi_kernel, [p, ap, inverse_diagonal],
                                        [cursor, limit], [s, x, r, z]))
    else:
        work.plan.append(recorded_sweep(cg_update_kernel, [p, ap], [cursor, rz_col, limit],
                                        [s, x, r]))
        if preconditioner is not None:
            work.plan += _with_dot(preconditioner, "apply", r, z, table.cell(1, rz_col))
    work.plan.append(recorded_sweep(cg_direction_kernel, [z], [cursor, rz_col, limit], [s, p]))
    work.breakdown = partial(_cg_breakdown, rz_col=rz_col)


def bicgstab(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None = None,
    *,
    preconditioner: Preconditioner | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int | None = None,
    check_every: int = 10,
    floor: str = "warn",
) -> SolveResult:
    """BiCGStab (van der Vorst 1992) for $A x = b$, A nonsingular, right-preconditioned.

    Per iteration: two products with A, two preconditioner applies and five vector kernels;
    $\\hat r = r_0$, $h = r - \\alpha A\\hat p$, $\\omega = (t^T h)/(t^T t)$ with $t = A\\hat h$,
    $x \\mathrel{+}= \\alpha\\hat p + \\omega\\hat h$, $r = h - \\omega t$,
    $p = r + \\beta(p - \\omega A\\hat p)$, where $\\hat p = M^{-1}p$, $\\hat h = M^{-1}h$.
    Arguments, result and errors as :func:`cg`.
    """
    maxiter = check_arguments(A, b, x0, rtol, atol, maxiter, check_every, preconditioner,
                              floor)
    with _workspace("bicgstab", A, preconditioner, b, check_every, _bicgstab_launches) as work:
        return _solve("bicgstab", work, b, x0, rtol, atol, maxiter, check_every, floor)


def _bicgstab_launches(A: LinearOperator, preconditioner: Preconditioner | None,
                       work: _Workspace) -> None:
    """BiCGStab's vectors, its start (s[0, 1] = r · r, r̂ = p = r) and the launches of one
    iteration, recorded into ``work``."""
    x, r, table = work.x, work.r, work.table
    s, cursor, limit = table.s, table.cursor, table.limit
    rhat, p = wp.empty_like(r), wp.empty_like(r)
    work.start += [recorded_sweep(dot_kernel, [r, r], table.cell(0, 1).address, [s]),
                   partial(wp.copy, rhat, r), partial(wp.copy, p, r)]
    v, h, tv = (wp.empty_like(r) for _ in range(3))
    phat, hhat = (p, h) if preconditioner is None else (wp.empty_like(r), wp.empty_like(r))
    launches = [
        None if preconditioner is None else _bound(preconditioner, "apply", p, phat),
        _bound(A, "matvec", phat, v),
        recorded_sweep(dot_kernel, [rhat, v], table.cell(0, 2).address, [s]),
        recorded_sweep(bicgstab_half_kernel, [r, v], [cursor, limit, s], [h]),
        None if preconditioner is None else _bound(preconditioner, "apply", h, hhat),
        _bound(A, "matvec", hhat, tv),
        recorded_sweep(dot2_kernel, [tv, h], table.cell(0, 4).address, [s]),
        recorded_sweep(bicgstab_update_kernel, [phat, hhat, h, tv, rhat], [cursor, limit],
                       [s, x, r]),
        recorded_sweep(bicgstab_direction_kernel, [r, v], [cursor, limit], [s, p]),
    ]
    work.plan += [launch for launch in launches if launch is not None]
    work.breakdown = _bicgstab_breakdown


def check_arguments(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None,
    rtol: float,
    atol: float,
    maxiter: int | None,
    check_every: int,
    preconditioner: Any = None,
    floor: str = "warn",
) -> int:
    """Validate the arguments; return maxiter (10 n if None)."""
    if floor not in FLOOR_ACTIONS:
        raise ValueError(f"floor={floor!r}; allowed: {', '.join(map(repr, FLOOR_ACTIONS))}")
    if not isinstance(A, LinearOperator) or isinstance(A, type):
        raise ValueError(f"A is a {type(A).__name__}; the solvers take a LinearOperator: "
                         "CsrOperator(csr_from_scipy(A, wp.float64, device)) for a SciPy "
                         "matrix, StencilOperator for a function that writes A x")
    n = A.shape[0]
    check_vectors("the operator", n, A.dtype, A.device, b=b, x0=x0)
    if preconditioner is not None and (isinstance(preconditioner, type)
                                       or not callable(getattr(preconditioner, "apply", None))):
        given = (f"the class {preconditioner.__name__}" if isinstance(preconditioner, type)
                 else f"a {type(preconditioner).__name__} ({preconditioner!r})")
        raise ValueError(f"preconditioner is {given}; pass one built for the operator, e.g. "
                         "Jacobi(A) or PRECONDITIONERS['ic0'](A)")
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol={rtol}, atol={atol}: tolerances must be >= 0")
    check_every = whole_number(check_every, "check_every", 1)
    return 10 * n if maxiter is None else whole_number(maxiter, "maxiter", 1)


def prepare(A: LinearOperator, b: wp.array, *, preconditioner: Preconditioner | None = None,
            method: str = "cg", check_every: int = 10) -> None:
    """Build and keep the workspace of a ``method`` solve (``"cg"`` or ``"bicgstab"``) with
    ``A`` and ``preconditioner`` for right-hand sides like ``b``: its vectors and recorded
    launches (about 1 ms on the CPU), which the first solve would otherwise build. For timing
    the solves alone, or before a time loop; a no-op for an operator without ``bind``, whose
    workspace is not kept."""
    if method not in _BUILDERS:
        raise ValueError(f"method={method!r}; allowed: {', '.join(_BUILDERS)}")
    check_arguments(A, b, None, 0.0, 0.0, None, check_every, preconditioner)
    with _workspace(method, A, preconditioner, b, check_every, _BUILDERS[method]):
        pass


class _Workspace:
    """The vectors, scalar table and recorded launches of one Krylov method on one operator and
    preconditioner: ``b`` (a copy of the right-hand side), ``x``, ``r`` and the table are made
    here; the method's builder adds its own vectors, the launches of its start (after
    r = b - A x and the table's row 0) and those of one iteration. Built on a first solve and
    reused by the next ones with the same operator, preconditioner and ``check_every``, so a
    solve in a time loop pays Warp's launch packing (about 1 ms on the CPU) once, not every
    step."""

    def __init__(self, A: LinearOperator, b: wp.array, columns: int, check_every: int) -> None:
        self.b = wp.empty_like(b, requires_grad=False)
        self.x = wp.zeros_like(b, requires_grad=False)
        self.r = wp.empty_like(b, requires_grad=False)
        self.table = ScalarTable(check_every + 1, columns, b.device)
        self.start: list[Callable[[], None]] = [
            _bound(A, "matvec", self.x, self.r),
            recorded_sweep(residual_kernel, [self.b], [], [self.table.s, self.r]),
        ]
        self.plan: list[Callable[[], None]] = []
        # the method's breakdown test of a block's table rows (set by its builder)
        self.breakdown: Breakdown = _no_breakdown
        self.lock = threading.Lock()

    def begin(self, b: wp.array, x0: wp.array | None) -> None:
        """b and x0 (zeros if None) into the workspace, a fresh table, and the start run."""
        wp.copy(self.b, b)
        if x0 is None:
            self.x.zero_()
        else:
            wp.copy(self.x, x0)
        self.table.reset()
        for launch in self.start:
            launch()


_COLUMNS = {"cg": 4, "bicgstab": 6}


@contextmanager
def _workspace(method: str, A: LinearOperator, preconditioner: Preconditioner | None,
               b: wp.array, check_every: int,
               build: Callable[[LinearOperator, Preconditioner | None, _Workspace], None]
               ) -> Iterator[_Workspace]:
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
        work = _Workspace(A, b, _COLUMNS[method], check_every)
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


_BUILDERS = {"cg": _cg_launches, "bicgstab": _bicgstab_launches}


def _same_key(a: tuple, b: tuple) -> bool:
    return a[0] is b[0] and a[1:] == b[1:]


FLOOR_ACTIONS = ("warn", "accept", "raise")
"""What :func:`cg` and :func:`bicgstab` may do at a rounding floor above the tolerance."""


def _solve(method: str, work: _Workspace, b: wp.array, x0: wp.array | None, rtol: float,
           atol: float, maxiter: int, check_every: int, floor_action: str) -> SolveResult:
    """Iterate until the recursive residual meets the tolerance, then check the true one,
    $b - A x$: where rounding has let the two part (float32, ill-conditioned A), restart from x
    with the true residual. Once a restart no longer halves the true residual of the one
    before, the rounding floor lies above the tolerance: x is returned, its true residual last
    in the history, as ``floor_action`` says (see :func:`cg`'s ``floor``)."""
    work.begin(b, x0)
    iterations, norms, b_norm = _iterate(method, work.plan, work.table, rtol, atol, maxiter,
                                         check_every, work.breakdown)
    if b_norm == 0.0 and atol == 0.0:  # b = 0: the solution is 0, whatever x0
        work.x.zero_()
        return SolveResult(wp.clone(work.x), iterations, norms, b_norm)
    tol = max(rtol * b_norm, atol)
    floor = np.inf
    while True:
        true = _true_residual(work)
        norms = np.append(norms[:-1], true)  # iteration j's true residual replaces its own
        if true <= tol:
            break
        if not true < 0.5 * floor:
            single = work.x.dtype == wp.float32
            wider = "solve in float64, " if single else ""
            advice = (f"the rounding floor of {'float32' if single else 'float64'} arithmetic "
                      "on this system; "
                      f"{wider}loosen rtol, or precondition to lower A's condition number")
            if floor_action == "raise":
                raise convergence_failure(method, iterations, norms, b_norm, tol,
                                          stagnated=advice)
            if floor_action == "warn":
                warnings.warn(
                    f"{method}: the true relative residual |b - A x| / |b| = "
                    f"{true / b_norm:.3e} stays above the tolerance {tol / b_norm:.3e} that the "
                    f"recursive residual met, after {iterations} iterations: {advice}",
                    InaccurateSolveWarning, stacklevel=3)
            break
        floor = true
        for launch in work.start[2:]:  # the method's start from r = b - A x
            launch()
        iterations, norms, _ = _iterate(method, work.plan, work.table, rtol, atol, maxiter,
                                        check_every, work.breakdown, iterations, norms[:-1])
    return SolveResult(wp.clone(work.x), iterations, norms, b_norm)


def _true_residual(work: _Workspace) -> float:
    """$\\|b - A x\\|_2$ for the workspace's x, leaving r = b - A x and a fresh table whose
    row 0 holds $r^T r$ and $b^T b$ (the state after the first two launches of a start)."""
    work.table.reset()
    for launch in work.start[:2]:
        launch()
    return float(np.sqrt(work.table.read()[0][RESIDUAL]))



def _bound(obj: Any, method: str, a: wp.array, b: wp.array) -> Callable[[], None]:
    """``obj.<method>(a, b)`` as a call without arguments: ``obj.bind(a, b)`` (a recorded
    launch) where the operator or preconditioner offers it."""
    bind = getattr(obj, "bind", None)
    return bind(a, b) if bind is not None else partial(getattr(obj, method), a, b)


def _with_dot(
    obj: Any, method: str, x: wp.array, y: wp.array, cell: TableCell
) -> list[Callable[[], None]]:
    """``obj.<method>(x, y)`` (a product or a preconditioner apply) and ``cell`` +=
    $x \\cdot y$: one fused launch where ``obj`` offers ``bind_dot``, else two."""
    bind_dot = getattr(obj, "bind_dot", None)
    if bind_dot is not None:
        return [bind_dot(x, y, cell)]
    return [_bound(obj, method, x, y),
            recorded_sweep(dot_kernel, [x, y], cell.address, [cell.table])]


Breakdown = Callable[[np.ndarray, float], "tuple[int, str, str] | None"]
"""A method's breakdown test: the table rows 0..m of a block of m iterations and the squared
tolerance -> the first iteration (0-based in the block) whose step divided by zero while its
residual was above the tolerance, what vanished and what that says of A or M; or None."""


def _no_breakdown(rows: np.ndarray, tol2: float) -> None:
    return None


def _first(broken: np.ndarray, what: str, why: str) -> tuple[int, str, str] | None:
    """The first iteration flagged in ``broken``, with ``what`` and ``why``; None if none is."""
    found = np.flatnonzero(broken)
    return (int(found[0]), what, why) if found.size else None


def _earliest(*found: tuple[int, str, str] | None) -> tuple[int, str, str] | None:
    """The breakdown of the earliest iteration; within one iteration the first of ``found``,
    which lists the denominators in the order the iteration computes them."""
    return min((f for f in found if f is not None), key=lambda f: f[0], default=None)


def _cg_breakdown(rows: np.ndarray, tol2: float, rz_col: int) -> tuple[int, str, str] | None:
    """CG divides by $p^T A p$ (column 2) and by $r^T z$ (column ``rz_col``), both positive
    for a symmetric positive definite A and M while $r \\ne 0$."""
    if rows[:-1, 2].all() and rows[:-1, rz_col].all():  # no zero denominator: the usual case
        return None
    active = rows[:-1, RESIDUAL] > tol2
    return _earliest(  # r^T z of row k ends iteration k - 1; p^T A p is iteration k's
        _first(active & (rows[:-1, rz_col] == 0.0), "r^T z = 0 with r != 0",
               "the preconditioner is not positive definite"),
        _first(active & (rows[:-1, 2] == 0.0), "p^T A p = 0",
               "A is not positive definite: CG needs a symmetric positive definite A (gmres or "
               "bicgstab solve others)"))


def _bicgstab_breakdown(rows: np.ndarray, tol2: float) -> tuple[int, str, str] | None:
    """BiCGStab divides by $\\rho = \\hat r^T r$ (column 1), $\\hat r^T v$ (column 2) and, in
    the next direction, by $\\omega = t^T h / t^T t$ (columns 4, 5) where the residual is not
    yet met."""
    if rows[:-1, 1:3].all() and rows[:-1, 4:6].all():  # no zero denominator: the usual case
        return None
    active = rows[:-1, RESIDUAL] > tol2
    going_on = active & (rows[1:, RESIDUAL] > tol2)
    return _earliest(  # rho and r0^T v come before omega in an iteration
        _first(active & ((rows[:-1, 1] == 0.0) | (rows[:-1, 2] == 0.0)),
               "r0^T r = 0 or r0^T v = 0",
               "the shadow residual is orthogonal to the Krylov space; use gmres"),
        _first(going_on & ((rows[:-1, 4] == 0.0) | (rows[:-1, 5] == 0.0)), "omega = 0",
               "the stabilising step made no progress; use gmres"))


def _iterate(
    method: str,
    step: list[Callable[[], None]],
    table: ScalarTable,
    rtol: float,
    atol: float,
    maxiter: int,
    check_every: int,
    breakdown: Breakdown,
    done: int = 0,
    earlier: np.ndarray | None = None,
) -> tuple[int, np.ndarray, float]:
    """Run the iterations in blocks of ``check_every``, reading the table once per block;
    return the iterations, the residual norms and $\\|b\\|$. A restart passes the
    iterations ``done`` before it and their residual norms ``earlier``: the counts, the norms
    and ``maxiter`` are then the whole solve's. ``breakdown`` finds an iteration
    of a block whose step divided by zero (the kernels take a zero step there), which stops the
    solve at once with that reason.

    ``step`` is the launches of one iteration, most of them recorded, all reading the local
    iteration j from the table's cursor and the tolerance from its ``limit``, replayed every
    iteration. On the CPU, where the launches run synchronously and the table is a view
    on the host, a block also stops at the iteration that met the tolerance; elsewhere the
    kernels run the rest of the block frozen."""
    start = table.read()[0]
    b_norm = float(np.sqrt(start[BNORM]))
    if b_norm == 0.0 and atol == 0.0:  # A x = 0: x = 0 exactly (the caller sets it), as SciPy
        return 0, np.zeros(1), b_norm
    tol = max(rtol * b_norm, atol)
    tol2 = tol * tol
    table.set_limit(tol2)
    history = [*(np.square(earlier) if earlier is not None else ()), float(start[RESIDUAL])]
    iterations = done
    plan = [*step, table.advance]
    live = table.live
    while not history[-1] <= tol2:
        if iterations >= maxiter or not np.isfinite(history[-1]):
            raise convergence_failure(method, iterations, np.sqrt(history), b_norm, tol)
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
    return iterations, np.sqrt(np.asarray(history)), b_norm


def convergence_failure(method: str, iterations: int, norms: np.ndarray, b_norm: float,
                        tol: float, breakdown: tuple[str, str] | None = None,
                        stagnated: str | None = None) -> ConvergenceError:
    """The error of a solve that stopped at ``iterations`` with residual norms ``norms``
    (the last one reached; NaN/Inf: a breakdown) against the absolute tolerance ``tol``; a
    non-finite start names its input (b, or A and x0) rather than the method; ``breakdown``:
    (what vanished, what it means for A or the preconditioner); ``stagnated``: the advice for
    a true residual, the last of ``norms``, that restarts no longer lower."""
    norms = np.asarray(norms, dtype=np.float64)
    finite = np.isfinite(norms[-1])
    advice = {}
    reason = "did not converge" if finite else "broke down (NaN/Inf)"
    if breakdown is not None:
        reason, advice = f"broke down ({breakdown[0]})", {"advice": breakdown[1]}
    elif stagnated is not None:
        reason = "stagnated (its true residual b - A x stays above the tolerance)"
        advice = {"advice": stagnated}
    elif not np.isfinite(b_norm):
        advice = {"advice": "b holds NaN/Inf values: check the right-hand side"}
    elif not np.isfinite(norms[0]):
        advice = {"advice": "the initial residual b - A x0 is NaN/Inf: check A's values and x0"}
    return ConvergenceError(
        method=method,
        iterations=iterations,
        residual=float(norms[-1] / b_norm) if b_norm > 0 else float(norms[-1]),
        tolerance=tol / b_norm if b_norm > 0 else tol,
        residuals=norms,
        reason=reason,
        **advice,
    )
