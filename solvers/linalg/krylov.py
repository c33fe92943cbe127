r"""Krylov solvers for $A x = b$ over the :class:`~physml.solvers.linalg.LinearOperator` protocol.

:func:`cg` (preconditioned conjugate gradients, A and M symmetric positive definite) and
:func:`bicgstab` (BiCGStab, right-preconditioned, any nonsingular A) stop when

$$\|r_j\|_2 \le \max(\text{rtol}\,\|b\|_2,\ \text{atol}),\qquad r_j = b - A x_j$$

for the recursively updated residual, and then check the true one, $b - A x_j$, once: where
rounding has let the two part (float32, or an ill-conditioned A), they restart from $x_j$
with the true residual, until it meets the tolerance or restarts stop lowering it (the
arithmetic's floor: the x of smallest true residual checked is returned, with an
:class:`~physml.solvers.errors.InaccurateSolveWarning`; near the floor the true residual is
also checked as the recursive one falls, so a tolerance far below the floor costs no more
iterations than one just below it). A run whose recursive residual grows to
$1 / (100\,\text{eps})$ times its smallest (BiCGStab on a system it is unstable on, or in
float32 on one whose floor lies far above the tolerance: its recursion then no longer follows
$b - A x$) ends there, and the solve goes on from the best x; where restarts then stop lowering
the true residual, that is the floor as above only if it lies within 10 times the rounding
floor of the best x, $\text{eps}\,(\|A (x \circ s)\| + \|b\|)$ for random signs s, else
the method diverged: a :class:`~physml.solvers.errors.ConvergenceError`. Every scalar stays on
the device (:mod:`~physml.solvers.linalg.scalar_table`); the host reads the residuals once every
``check_every`` iterations, and the kernels freeze the iterate at the first one that met the
tolerance, so the answer and the iteration count are those of a check every iteration (up to
the first check of the true residual near the floor or runaway: the runs after it start from
where a block ended, and their path depends on ``check_every``). An
iteration's launches are recorded once per solve and replayed every iteration.
Vectors are float32 or float64 on any Warp device; reductions accumulate in float64.
Not ``warp.optim.linear``: see :mod:`~physml.solvers.linalg.kernels` for why.
The solvers' workspace and solve loop are in :mod:`~physml.solvers.linalg.krylov_iteration`,
their result and errors in :mod:`~physml.solvers.linalg.krylov_outcome`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import warp as wp

from ..errors import is_real, whole_number
from .bicgstab_kernels import (
    bicgstab_direction_kernel,
    bicgstab_half_kernel,
    bicgstab_omega_dots_kernel,
    bicgstab_update_kernel,
)
from .cg_kernels import cg_direction_kernel, cg_update_jacobi_kernel, cg_update_kernel
from .kernels import RESIDUAL, dot_kernel, recorded_sweep
from .krylov_iteration import Workspace, bound_method, solve_in_workspace, with_dot, workspace_for
from .krylov_outcome import SolveResult, bicgstab_breakdown, cg_breakdown
from .linear_operator import LinearOperator, check_vectors
from .preconditioners import Preconditioner


def cg(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None = None,
    *,
    preconditioner: Preconditioner | None = None,
    rtol: float | None = None,
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
            x = 0 at once); rtol None: :data:`DEFAULT_RTOL` of the vectors' dtype (1e-8 in
            float64, 1e-5 in float32, whose rounding floor, about eps |A| |x| / |b|, can lie
            above it: see there).
        maxiter: at most this many iterations (10 n if None).
        check_every: iterations between host reads of the residual.
        floor: what to do when the true residual stays above the tolerance through restarts
            (the arithmetic's rounding floor lies above it): ``"warn"`` returns the x of
            smallest true residual checked with an
            :class:`~physml.solvers.errors.InaccurateSolveWarning`, ``"accept"`` returns it
            silently (a tolerance set at the arithmetic's limit on purpose), ``"raise"``
            raises :class:`ConvergenceError`.

    Returns:
        :class:`SolveResult`.

    Raises:
        ConvergenceError: the tolerance is not met within ``maxiter`` iterations, the
            residual became NaN/Inf, the recursive residual ran away and the true residual of
            the best x stays over 10 times its rounding floor (the method diverged, whatever
            ``floor``), or (``floor="raise"``) the true residual stays above the tolerance; it
            carries the residual reached and a copy of the iterate it stopped at (``x``; for a
            divergence, the best one), which may serve as ``x0`` of another solve.
        ValueError: b holds NaN/Inf values, or its norm overflows float64, or (A a
            :class:`~.linear_operator.CsrOperator`) A has an empty row where b is not 0, so
            that $A x = b$ has no solution (checked in one O(nnz) pass on A's device).

    Examples:
        The 5-point Laplacian of :func:`~.model_problems.poisson_2d` on 32 x 32 nodes
        (n = 1024), with the right-hand side whose solution is all ones; smoothed-aggregation
        AMG as the preconditioner cuts the iterations from 68 to 8:

        >>> import numpy as np
        >>> import warp as wp
        >>> from physml.solvers.linalg import (CsrOperator, SmoothedAggregationAMG, cg,
        ...                                    csr_from_scipy, poisson_2d)
        >>> matrix = poisson_2d(32)
        >>> A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
        >>> b = wp.array(matrix @ np.ones(1024), dtype=wp.float64, device="cpu")
        >>> result = cg(A, b, rtol=1e-10)
        >>> result.iterations, f"{result.relative_residual:.1e}"
        (68, '5.3e-11')
        >>> f"{np.abs(result.x.numpy() - 1.0).max():.1e}"
        '3.4e-11'
        >>> cg(A, b, preconditioner=SmoothedAggregationAMG(A), rtol=1e-10).iterations
        8
    """
    maxiter, rtol = check_arguments(A, b, x0, rtol, atol, maxiter, check_every,
                                    preconditioner, floor)
    with workspace_for("cg", A, preconditioner, b, check_every, _cg_launches) as work:
        return solve_in_workspace("cg", work, b, x0, rtol, atol, maxiter, check_every, floor)


def _cg_launches(A: LinearOperator, preconditioner: Preconditioner | None,
                 work: Workspace) -> None:
    """CG's vectors, its start (r = b - A x, z = M r, s[0, rz] = r · z, p = z) and the
    launches of one iteration, recorded into ``work``."""
    x, r, table = work.x, work.r, work.table
    s, cursor, limit = table.s, table.cursor, table.limit
    if preconditioner is None:
        z, rz_col = r, RESIDUAL
    else:
        z, rz_col = wp.empty_like(r), 1
        work.start += [bound_method(preconditioner, "apply", r, z),
                       recorded_sweep(dot_kernel, [r, z], table.cell(0, rz_col).address, [s])]
    p, ap = wp.empty_like(r), wp.empty_like(r)
    work.start.append(partial(wp.copy, p, z))
    inverse_diagonal = getattr(preconditioner, "inverse_diagonal", None)
    work.plan += with_dot(A, "matvec", p, ap, table.cell(0, 2))
    if inverse_diagonal is not None:  # a diagonal M: applied inside the update's pass
        work.plan.append(recorded_sweep(cg_update_jacobi_kernel, [p, ap, inverse_diagonal],
                                        [cursor, limit], [s, x, r, z]))
    else:
        work.plan.append(recorded_sweep(cg_update_kernel, [p, ap], [cursor, rz_col, limit],
                                        [s, x, r]))
        if preconditioner is not None:
            work.plan += with_dot(preconditioner, "apply", r, z, table.cell(1, rz_col))
    work.plan.append(recorded_sweep(cg_direction_kernel, [z], [cursor, rz_col, limit], [s, p]))
    work.breakdown = partial(cg_breakdown, rz_col=rz_col)


def bicgstab(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None = None,
    *,
    preconditioner: Preconditioner | None = None,
    rtol: float | None = None,
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
    Arguments as :func:`cg`'s (``x0``, ``rtol``, ``atol``, ``maxiter``, ``check_every`` and
    ``floor`` mean the same), except that neither A nor the preconditioner need be symmetric;
    result and errors as :func:`cg`'s.
    """
    maxiter, rtol = check_arguments(A, b, x0, rtol, atol, maxiter, check_every,
                                    preconditioner, floor)
    with workspace_for("bicgstab", A, preconditioner, b, check_every, _bicgstab_launches) as work:
        return solve_in_workspace("bicgstab", work, b, x0, rtol, atol, maxiter, check_every, floor)


def _bicgstab_launches(A: LinearOperator, preconditioner: Preconditioner | None,
                       work: Workspace) -> None:
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
        None if preconditioner is None else bound_method(preconditioner, "apply", p, phat),
        bound_method(A, "matvec", phat, v),
        recorded_sweep(dot_kernel, [rhat, v], table.cell(0, 2).address, [s]),
        recorded_sweep(bicgstab_half_kernel, [r, v], [cursor, limit, s], [h]),
        None if preconditioner is None else bound_method(preconditioner, "apply", h, hhat),
        bound_method(A, "matvec", hhat, tv),
        recorded_sweep(bicgstab_omega_dots_kernel, [tv, h], [cursor, limit], [s]),
        recorded_sweep(bicgstab_update_kernel, [phat, hhat, h, tv, rhat], [cursor, limit],
                       [s, x, r]),
        recorded_sweep(bicgstab_direction_kernel, [r, v], [cursor, limit], [s, p]),
    ]
    work.plan += [launch for launch in launches if launch is not None]
    work.breakdown = bicgstab_breakdown


def check_arguments(
    A: LinearOperator,
    b: wp.array,
    x0: wp.array | None,
    rtol: float | None,
    atol: float,
    maxiter: int | None,
    check_every: int,
    preconditioner: Any = None,
    floor: str = "warn",
) -> tuple[int, float]:
    """Validate the arguments; return maxiter (10 n if None) and rtol (:data:`DEFAULT_RTOL`
    of A's dtype if None)."""
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
    check_built_for(A, preconditioner)
    if rtol is None:
        rtol = DEFAULT_RTOL.get(A.dtype, DEFAULT_RTOL[wp.float64])
    for name, tolerance in (("rtol", rtol), ("atol", atol)):
        if not (is_real(tolerance) and tolerance >= 0):
            raise ValueError(f"{name}={tolerance!r}: a tolerance is a real number >= 0")
    check_every = whole_number(check_every, "check_every", 1)
    return 10 * n if maxiter is None else whole_number(maxiter, "maxiter", 1), rtol


def check_built_for(A: LinearOperator, preconditioner: Any) -> None:
    """Refuse a preconditioner built for a matrix of another size, dtype or device than A's
    (O(1)), by its ``built_for``; one without it is checked at its first apply."""
    built = getattr(preconditioner, "built_for", None)
    if built is None:
        return
    n, dtype, device = built
    if (n, dtype, device) != (A.shape[0], A.dtype, A.device):
        raise ValueError(f"the {preconditioner.name} preconditioner was built for a "
                         f"{dtype.__name__} matrix of {n} unknowns on {device}; A is "
                         f"{A.dtype.__name__} with {A.shape[0]} on {A.device}: build it for "
                         "this A (M(A) with the factory M it came from)")


def prepare(A: LinearOperator, b: wp.array, *, preconditioner: Preconditioner | None = None,
            method: str = "cg", check_every: int = 10) -> None:
    """Build and keep the workspace of a ``method`` solve (``"cg"`` or ``"bicgstab"``) with
    ``A`` and ``preconditioner`` for right-hand sides like ``b``: its vectors and recorded
    launches (about 1 ms on the CPU), which the first solve would otherwise build. For timing
    the solves alone, or before a time loop; a no-op for an operator without ``bind``, whose
    workspace is not kept. ``check_every`` (a whole number >= 1: iterations between host reads
    of the residual) should be the one the solves pass: a solve with another value builds a
    workspace of its own. Arguments are checked as :func:`cg` checks them, and another
    ``method`` is refused."""
    if method not in _BUILDERS:
        raise ValueError(f"method={method!r}; allowed: {', '.join(_BUILDERS)}")
    check_arguments(A, b, None, 0.0, 0.0, None, check_every, preconditioner)
    with workspace_for(method, A, preconditioner, b, check_every, _BUILDERS[method]):
        pass


_BUILDERS = {"cg": _cg_launches, "bicgstab": _bicgstab_launches}


DEFAULT_RTOL = {wp.float32: 1e-5, wp.float64: 1e-8}
"""The rtol of :func:`cg`, :func:`bicgstab` and :func:`~.gmres.gmres` given None, by the
vectors' dtype. float32's rounding floor, about $\\text{eps}\\,\\|A\\|\\,\\|x\\| / \\|b\\|$,
depends on b as well as on A: on a 5-point Poisson grid of $m^2$ cells a rough b (random
entries, x of the order of $b / \\|A\\|$) leaves it low (CG: 3e-7 at 32^2, 2e-6 at 256^2),
and the default converges, while a smooth b (b = 1, x of the order of $m^2 b$) raises it
about as $m^2$: 7e-6 at 32^2, 3.5e-5 at 64^2, 1.8e-4 at 128^2, 9.6e-4 at 256^2, where from
64^2 on the default returns the best x with an
:class:`~physml.solvers.errors.InaccurateSolveWarning` (solve in float64, or loosen rtol)."""


FLOOR_ACTIONS = ("warn", "accept", "raise")
"""What :func:`cg`, :func:`bicgstab` and :func:`~.gmres.gmres` may do at a rounding floor above
the tolerance."""

