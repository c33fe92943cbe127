r"""Restarted GMRES for $A x = b$, A any nonsingular operator, right-preconditioned.

GMRES(m) (Saad & Schultz 1986) minimises $\|b - A x\|_2$ over $x_0 + M^{-1}\mathcal K_j$, the
Krylov space of $A M^{-1}$ and $r_0$, building an orthonormal basis $V$ ((m + 1, n) on the
device) by Arnoldi's process with classical Gram–Schmidt applied twice (CGS2: each pass is one
fused projection $h = V_{0..j}^T w$ and one fused update $w \mathrel{-}= V_{0..j} h$, so a step
costs two reads of the basis, where modified Gram–Schmidt costs one launch per basis vector,
and it is as stable as modified Gram–Schmidt in practice). The small Hessenberg least-squares
problem stays on the host, reduced by Givens rotations as it grows, so $|g_{j+1}|$ is the
residual norm of the current iterate without forming it. After m steps (a restart) or on
convergence, $x \mathrel{+}= M^{-1} V_{0..j-1} y$ and the residual is recomputed as
$b - A x$; the solve ends when that true residual meets
$\|r\|_2 \le \max(\text{rtol}\,\|b\|_2, \text{atol})$, or at the arithmetic's rounding
floor, where it lies above the tolerance: when a cycle whose estimate fell below half the true
residual it ends with did not halve the true residual it started from (rounding has let the two
part), or when :data:`STALL_CYCLES` cycles in a row ended on an estimate that met the
tolerance and a true residual that did not, above :data:`STALL_GAP` times the estimate,
without halving the smallest true residual (the floor lies just above the tolerance: the
estimate stalls with the true residual, and the two never part by 2x). The answer is then the x
of smallest true residual computed, with an
:class:`~physml.solvers.errors.InaccurateSolveWarning`, as for :func:`~physml.solvers.linalg.cg`.

Unlike :func:`~physml.solvers.linalg.cg`, GMRES reads $j + 2$ scalars back every iteration (the
Hessenberg column it needs for the rotations): a host round trip per iteration, the price of the
method's optimality on non-symmetric systems. Vectors are float32 or float64; reductions
accumulate in float64. On the CPU the rows are orthogonalised by BLAS products on views of
the basis (the same CGS2; 1.3-1.4x SciPy's time per solve at 4e3-1.6e4 unknowns, where the
kernels' scalar loops took 5-7x): float32 rows by float32 products (``sgemv``), whose
projections are summed over the two passes, and the norm taken, in float64.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import scipy.linalg as sla
import warp as wp

from ..errors import whole_number
from ..kernel_launch import launch, specialize
from .kernels import reduction_threads, residual_kernel
from .krylov import check_arguments
from .krylov_iteration import in_units_of_b, norm_of, rhs_scale
from .krylov_outcome import SolveResult, carrying_iterate, convergence_failure, rounding_floor
from .linear_operator import LinearOperator
from .preconditioners import Preconditioner


@wp.kernel(enable_backward=False)
def project_kernel(
    basis: wp.array2d(dtype=Any),
    w: wp.array(dtype=Any),
    n: int,
    stride: int,
    h: wp.array(dtype=wp.float64),
):
    """h[i] += sum_k basis[i, k] w[k] over k = t, t + T, ... < n; launched over (count, T)."""
    i, t = wp.tid()
    acc = wp.float64(0.0)
    k = t
    while k < n:
        acc += wp.float64(basis[i, k]) * wp.float64(w[k])
        k += stride
    wp.atomic_add(h, i, acc)


@wp.kernel(enable_backward=False)
def orthogonalize_kernel(
    basis: wp.array2d(dtype=Any),
    h: wp.array(dtype=wp.float64),
    count: int,
    n: int,
    stride: int,
    w: wp.array(dtype=Any),
    norm2: wp.array(dtype=wp.float64),
):
    """w[k] -= sum_{i < count} h[i] basis[i, k] for k = t, t + T, ... < n; norm2[0] += |w|^2."""
    t = wp.tid()
    acc = wp.float64(0.0)
    k = t
    while k < n:
        v = wp.float64(w[k])
        for i in range(count):
            v -= h[i] * wp.float64(basis[i, k])
        w[k] = w.dtype(v)
        acc += v * v
        k += stride
    wp.atomic_add(norm2, 0, acc)


@wp.kernel(enable_backward=False)
def combine_kernel(
    basis: wp.array2d(dtype=Any), y: wp.array(dtype=wp.float64), count: int,
    u: wp.array(dtype=Any),
):
    """u[k] = sum_{i < count} y[i] basis[i, k]; launched over k < n."""
    k = wp.tid()
    acc = wp.float64(0.0)
    for i in range(count):
        acc += y[i] * wp.float64(basis[i, k])
    u[k] = u.dtype(acc)


@wp.kernel(enable_backward=False)
def scale_kernel(x: wp.array(dtype=Any), a: Any, y: wp.array(dtype=Any)):
    """y = a x (y may be x)."""
    k = wp.tid()
    y[k] = a * x[k]


@wp.kernel(enable_backward=False)
def add_kernel(x: wp.array(dtype=Any), y: wp.array(dtype=Any)):
    """y += x."""
    k = wp.tid()
    y[k] = y[k] + x[k]


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        vec, mat, f64 = wp.array(dtype=T), wp.array2d(dtype=T), wp.array(dtype=wp.float64)
        specialize(project_kernel, T, {"basis": mat, "w": vec, "h": f64})
        specialize(orthogonalize_kernel, T, {"basis": mat, "h": f64, "w": vec, "norm2": f64})
        specialize(combine_kernel, T, {"basis": mat, "y": f64, "u": vec})
        specialize(scale_kernel, T, {"x": vec, "a": T, "y": vec})
        specialize(add_kernel, T, {"x": vec, "y": vec})


_overload_all()

STALL_CYCLES = 3
"""Cycles in a row whose estimate met the tolerance while the true residual they ended with did
not and lay above :data:`STALL_GAP` times it, none halving the smallest true residual, after
which :func:`gmres` stops at the rounding floor (in exact arithmetic the two are equal; at the
floor restarts lower the true residual by a few percent a cycle, or not at all)."""

STALL_GAP = 1.3
"""Ratio of a cycle's true residual to its estimate from which the cycle counts towards
:data:`STALL_CYCLES`: the rounding error of its update is of the residual's own size. Above the
floor the gap is smaller and restarts go on lowering the true residual (float32 on Poisson's
system, 96^2 to 256^2 cells, rtol 3e-6 to 1e-5: 1-21 % above the estimate, and the solve
converges); at float64's floor there it is 35-95 %."""


class _Arnoldi:
    """Device work arrays of one GMRES(m) solve and the launches over them."""

    HOST_DTYPES = (wp.float32, wp.float64)
    """Vector types orthogonalised by BLAS on the CPU."""

    def __init__(self, A: LinearOperator, b: wp.array, restart: int) -> None:
        self.A, self.b = A, b
        self.n, self.dtype, self.device = b.shape[0], b.dtype, b.device
        self.stride = reduction_threads(self.n, self.device)
        self.basis = wp.zeros((restart + 1, self.n), dtype=b.dtype, device=b.device)
        self.h = wp.zeros(restart + 2, dtype=wp.float64, device=b.device)
        self.norm2 = wp.zeros(1, dtype=wp.float64, device=b.device)
        self.sums = wp.zeros((1, 4), dtype=wp.float64, device=b.device)  # [0, 0]: r · r

    def _launch(self, kernel, dim, inputs, outputs) -> None:
        launch(kernel, self.dtype, dim=dim, inputs=inputs, outputs=outputs, device=self.device)

    def residual(self, x: wp.array, r: wp.array) -> float:
        """r = b - A x; returns |r|."""
        self.A.matvec(x, r)
        self.sums.zero_()
        self._launch(residual_kernel, self.stride, [self.b, self.n, self.stride],
                     [self.sums, r])
        return float(np.sqrt(self.sums.numpy()[0, 0]))

    def scale_into(self, v: wp.array, factor: float, out: wp.array) -> None:
        """out = factor v (out may be v)."""
        self._launch(scale_kernel, self.n, [v, self.dtype(factor)], [out])

    def add_into(self, u: wp.array, x: wp.array) -> None:
        """x += u."""
        self._launch(add_kernel, self.n, [u], [x])

    def orthogonalize(self, j: int) -> np.ndarray:
        """Orthogonalise basis row j + 1 against rows 0..j (CGS2) and normalise it.

        Returns the Hessenberg column $h_{0..j+1, j}$ (j + 2,) in float64."""
        w = self.basis[j + 1]
        if self.device.is_cpu and self.dtype in self.HOST_DTYPES:
            return self._orthogonalize_on_host(j)
        total = np.zeros(j + 2)
        for _ in range(2):
            self.h.zero_()
            self.norm2.zero_()
            self._launch(project_kernel, (j + 1, self.stride),
                         [self.basis, w, self.n, self.stride], [self.h])
            self._launch(orthogonalize_kernel, self.stride,
                         [self.basis, self.h, j + 1, self.n, self.stride], [w, self.norm2])
            total[: j + 1] += self.h.numpy()[: j + 1]
        norm = float(np.sqrt(self.norm2.numpy()[0]))
        if norm in (0.0, np.inf):  # or |w|^2 under- or overflowed: A's entries near 1e-170, 1e160
            norm = norm_of(w.numpy().astype(np.float64))
        total[j + 1] = norm
        if norm > 0:
            self.scale_into(w, 1.0 / norm, w)
        return total

    def _orthogonalize_on_host(self, j: int) -> np.ndarray:
        """:meth:`orthogonalize` of the rows on the CPU, by BLAS products on views of the
        basis (Warp's scalar loops over the rows took 5-7x SciPy's time per step): the
        products $V^T w$ and $w - V h$ in the rows' precision (``sgemv`` for float32 rows),
        the two passes' $h$ summed and $\\|w\\|$ taken in float64."""
        V, w = self.basis.numpy()[: j + 1], self.basis.numpy()[j + 1]
        total = np.zeros(j + 2)
        for _ in range(2):
            h = V @ w
            w -= h @ V
            total[: j + 1] += h
        with np.errstate(over="ignore"):
            wide = w.astype(np.float64, copy=False)
            norm = float(np.sqrt(wide @ wide))
        if norm in (0.0, np.inf):  # |w|^2 under- or overflowed: A's entries near 1e-170, 1e160
            norm = norm_of(wide)
        total[j + 1] = norm
        if norm > 0:
            w /= norm
        return total

    def combine(self, y: np.ndarray, u: wp.array) -> None:
        """u = sum_i y[i] basis[i]."""
        coefficients = wp.array(y, dtype=wp.float64, device=self.device)
        self._launch(combine_kernel, self.n, [self.basis, coefficients, len(y)], [u])


def gmres(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None = None,
    *,
    preconditioner: Preconditioner | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    restart: int = 30,
    maxiter: int | None = None,
    floor: str = "warn",
) -> SolveResult:
    """Restarted, right-preconditioned GMRES(m) for $A x = b$, A nonsingular.

    Args:
        A: the operator, shape (n, n).
        b: right-hand side, shape (n,), A's dtype and device.
        x0: initial guess (zeros if None); not modified.
        preconditioner: $M^{-1}$, applied on the right ($A M^{-1} u = b$, $x = M^{-1} u$), so the
            residual minimised and reported is the true one, $b - A x$.
        rtol, atol: stop when $\\|b - A x\\| \\le \\max(rtol\\,\\|b\\|, atol)$ (b = 0 and
            atol = 0: x = 0 at once); rtol None: :data:`~.krylov.DEFAULT_RTOL` of the vectors'
            dtype (1e-8 in float64, 1e-5 in float32).
        restart: m, the Krylov dimension before a restart (memory: (m + 1) n entries).
        maxiter: at most this many Arnoldi steps in all (10 n if None).
        floor: what to do when the true residual stays above the tolerance through restarts
            (the arithmetic's rounding floor lies above it): ``"warn"`` returns the x of
            smallest true residual computed (at the end of a cycle) with an
            :class:`~physml.solvers.errors.InaccurateSolveWarning`, ``"accept"`` returns it
            silently (a tolerance set at the arithmetic's limit on purpose), ``"raise"``
            raises :class:`~physml.solvers.errors.ConvergenceError`.

    Returns:
        :class:`~physml.solvers.linalg.SolveResult`; ``residuals`` holds $\\|r_0\\|$ and the
        residual norm after every step (the rotated Hessenberg's estimate within a cycle, the
        recomputed true residual at the end of each cycle).

    Raises:
        ConvergenceError: the tolerance is not met within ``maxiter`` steps, the residual
            became NaN/Inf, or (``floor="raise"``) the true residual stays above the
            tolerance; it carries the residual reached and the iterate (``x``).
        ValueError: b holds NaN/Inf values, or its norm overflows float64.
    """
    maxiter, rtol = check_arguments(A, b, x0, rtol, atol, maxiter, 1, preconditioner, floor)
    restart = min(whole_number(restart, "restart", 1), A.shape[0])
    b_norm = _norm(b)
    scale = rhs_scale(b, b_norm * b_norm)
    if scale != 1.0:  # |b|^2 under- or overflows float64: solve A (x / scale) = b / scale
        b, x0 = (None if v is None else wp.array(v.numpy() / scale, dtype=v.dtype,
                                                 device=v.device) for v in (b, x0))
    x = wp.zeros_like(b, requires_grad=False) if x0 is None else wp.clone(x0, requires_grad=False)
    with carrying_iterate(x, scale, kept_at_breakdown=True):
        if scale != 1.0:
            return in_units_of_b(partial(_restarted, A, b, x, preconditioner, rtol,
                                         atol / scale, restart, maxiter, floor, _norm(b),
                                         stacklevel=4), scale)
        return _restarted(A, b, x, preconditioner, rtol, atol, restart, maxiter, floor, b_norm,
                          stacklevel=3)


def _norm(b: wp.array) -> float:
    """$\\|b\\|_2$ in float64 (inf where its square overflows: :func:`rhs_scale` settles)."""
    with np.errstate(over="ignore"):
        return float(np.linalg.norm(b.numpy().astype(np.float64)))


def _restarted(A: LinearOperator, b: wp.array, x: wp.array,
               preconditioner: Preconditioner | None, rtol: float, atol: float, restart: int,
               maxiter: int, floor: str, b_norm: float, stacklevel: int) -> SolveResult:
    """The restarted cycles of :func:`gmres` on checked arguments from the iterate ``x`` (the
    start, updated in place), $\\|b\\|$ = ``b_norm``; ``stacklevel`` places a rounding-floor
    warning at the user's call, counted from here."""
    arnoldi = _Arnoldi(A, b, restart)
    r, u = wp.empty_like(x), wp.empty_like(x)
    z = None if preconditioner is None else wp.empty_like(x)
    if b_norm == 0.0 and atol == 0.0:  # A x = 0: x = 0 exactly, as SciPy
        return SolveResult(wp.zeros_like(b, requires_grad=False), 0, np.zeros(1), b_norm)
    tol = max(rtol * b_norm, atol)
    beta = arnoldi.residual(x, r)
    history = [beta]
    iterations = 0
    best, best_x = beta, wp.clone(x)
    halved_at, stalls = beta, 0  # the best when the stall began, cycles stalled since
    while not beta <= tol:
        if iterations >= maxiter or not np.isfinite(beta):
            raise convergence_failure("gmres", iterations, history, b_norm, tol,
                                      preconditioner=preconditioner)
        start = beta
        arnoldi.scale_into(r, 1.0 / beta, arnoldi.basis[0])
        hessenberg = np.zeros((restart + 1, restart))
        rotations = np.zeros((restart, 2))
        g = np.zeros(restart + 1)
        g[0] = beta
        steps = 0
        for j in range(min(restart, maxiter - iterations)):
            source = arnoldi.basis[j]
            if z is not None:
                preconditioner.apply(source, z)
                source = z
            A.matvec(source, arnoldi.basis[j + 1])
            column = arnoldi.orthogonalize(j)
            invariant = column[j + 1] == 0.0  # the Krylov space is A-invariant: exact solve
            g[j + 1] = _rotate(column, rotations, j, g)
            hessenberg[: j + 2, j] = column
            steps = j + 1
            history.append(abs(g[j + 1]))
            if not abs(g[j + 1]) > tol or invariant:
                break
        if not np.isfinite(history[-1]):  # M^{-1} or A gave a NaN/Inf entry
            raise convergence_failure("gmres", iterations + steps, history, b_norm, tol,
                                      preconditioner=preconditioner)
        if not np.all(np.diagonal(hessenberg[:steps, :steps])):  # rotated: upper triangular
            raise convergence_failure(  # x as the cycle found it: its residual beta
                "gmres", iterations, history[: len(history) - steps], b_norm, tol,
                breakdown=("a zero pivot in the least-squares solve", "A is singular on the "
                           "Krylov space of b (b is not in A's range, or A is singular)"))
        iterations += steps
        y = sla.solve_triangular(hessenberg[:steps, :steps], g[:steps])
        arnoldi.combine(y, u)
        if z is not None:
            preconditioner.apply(u, z)
            u, z = z, u
        arnoldi.add_into(u, x)
        estimate, beta = history[-1], arnoldi.residual(x, r)
        history[-1] = beta
        if beta < best:
            best = beta
            wp.copy(best_x, x)
        if estimate <= tol < beta and beta > STALL_GAP * estimate and not best < 0.5 * halved_at:
            stalls += 1
        else:
            halved_at, stalls = best, 0
        parted = beta > max(tol, 2.0 * estimate) and not beta < 0.5 * start
        stalled = stalls >= STALL_CYCLES
        if parted or stalled:  # the rounding floor: back to the best x
            if best < beta:
                wp.copy(x, best_x)
                history[-1] = best
            rounding_floor("gmres", floor, b.dtype, iterations, history, b_norm, tol,
                           stacklevel=stacklevel)
            break
    return SolveResult(x, iterations, np.asarray(history), b_norm)


def _rotate(column: np.ndarray, rotations: np.ndarray, j: int, g: np.ndarray) -> float:
    """Apply the previous Givens rotations to Hessenberg column j (in place), make and apply
    the one that zeroes its entry j + 1, update g[j]; return the new g[j + 1]."""
    for i in range(j):
        c, s = rotations[i]
        upper, lower = column[i], column[i + 1]
        column[i], column[i + 1] = c * upper + s * lower, -s * upper + c * lower
    radius = np.hypot(column[j], column[j + 1])
    c, s = (1.0, 0.0) if radius == 0 else (column[j] / radius, column[j + 1] / radius)
    rotations[j] = c, s
    column[j], column[j + 1] = radius, 0.0
    g_next = -s * g[j]
    g[j] = c * g[j]
    return g_next
