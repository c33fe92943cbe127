r"""Symmetric Gauss–Seidel to entrywise relative accuracy, for solutions spanning many decades.

Some solves need every entry of $x$ to a relative accuracy, not the norm of the residual: the
heat step of the heat method, $(M + tK)u = \delta_s$ with $t = h^2$, has a solution that falls
off like $e^{-d^2/4t}$, to $10^{-60}$ of its peak across a $4\cdot 10^4$-vertex sphere and
$10^{-137}$ across $1.6\cdot 10^5$, and the method uses the direction of $\nabla u$ there. A
Krylov method bounds $\|b - Ax\|$ relative to $\|b\|$, so far from the source its $x$ is noise;
a sparse LU resolves the tiny values but fills in (SciPy's SuperLU took 10.5 s at
$1.6\cdot 10^5$ vertices with COLAMD, and did not finish in minutes at $6.6\cdot 10^5$).

Gauss–Seidel computes each entry from its own row only,
$x_i \leftarrow (b_i - \sum_{j\ne i} a_{ij} x_j) / a_{ii}$, so an entry is as accurate relative
to its own size as its neighbours are: for an M-matrix (positive diagonal, non-positive
off-diagonal, as $M + tK$ is on a mesh without obtuse angles) from $x = 0$ every term is
non-negative and the iterates rise monotonically to $x$. Swept in the order of the breadth-first
distance from where $b$ is nonzero, one forward sweep carries the solution across the whole
mesh; for the heat step ($a_{ii}$ dominating its row by a fixed factor) each symmetric sweep then
gains a fixed number of digits everywhere. The sweeps stop when a bound on every entry's
remaining error meets ``rtol`` of its own size: with $c_k$ the largest relative change of an
entry in sweep k and $\rho$ the contraction per sweep, measured over the last sweeps, the
changes still to come sum to about $c_k \rho / (1 - \rho)$ (a geometric series), taken twice
(:func:`error_bound`). Where convergence is slow ($\rho$ near 1: $tK$ large against $M$) that
is many times $c_k$: a rule on $c_k$ alone left errors of 10-70x ``rtol`` there.

The sweeps are sequential (a native loop over raw pointers in one Warp launch) and run on the
CPU, whatever device the caller's data live on, like the factorisation they replace.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import warp as wp
from scipy.sparse.csgraph import breadth_first_order as breadth_first_order_from

from ..errors import ConvergenceError


@wp.func_native(
    """
    const double* __restrict__ av = values.data;
    const int* __restrict__ ap = offsets.data;
    const int* __restrict__ ac = columns.data;
    const double* __restrict__ bp = b.data;
    double* __restrict__ xp = x.data;
    double worst = 0.0;
    for (int pass = 0; pass < 2; ++pass)
        for (int step = 0; step < n; ++step) {
            const int i = pass == 0 ? step : n - 1 - step;
            double sum = bp[i], diagonal = 0.0;
            for (int k = ap[i]; k < ap[i + 1]; ++k) {
                const int j = ac[k];
                if (j == i) diagonal += av[k];
                else sum -= av[k] * xp[j];
            }
            const double updated = sum / diagonal;
            const double change = wp::abs(updated - xp[i]);
            const double size = wp::abs(updated);
            if (change > 0.0) {
                const double relative = size > 0.0 ? change / size : INFINITY;
                if (!(relative <= worst)) worst = relative;  // NaN wins
            }
            xp[i] = updated;
        }
    change_out[0] = worst;
    """
)
def symmetric_sweep(
    values: wp.array(dtype=wp.float64),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    b: wp.array(dtype=wp.float64),
    n: int,
    change_out: wp.array(dtype=wp.float64),
    x: wp.array(dtype=wp.float64),
): ...


@wp.kernel(enable_backward=False)
def symmetric_sweep_kernel(
    values: wp.array(dtype=wp.float64),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    b: wp.array(dtype=wp.float64),
    n: int,
    change_out: wp.array(dtype=wp.float64),
    x: wp.array(dtype=wp.float64),
):
    """One forward (rows 0 .. n-1) then one backward Gauss–Seidel sweep of x (one thread);
    change_out[0] = the largest |change| / |new value| of any entry in either sweep."""
    symmetric_sweep(values, offsets, columns, b, n, change_out, x)


def breadth_first_order(A: sp.csr_matrix, sources: np.ndarray) -> np.ndarray:
    """(n,) int32: the vertices of A's graph by breadth-first distance from ``sources``, then
    any vertex not reached (another component) in index order (SciPy's search from a hub
    vertex joined to every source)."""
    n = A.shape[0]
    sources = np.unique(sources)
    size = A.nnz + sources.size  # the pattern (explicit zeros too), then the hub's row
    edges = sp.csr_matrix((np.ones(size), np.concatenate([A.indices, sources]),
                           np.concatenate([A.indptr, [size]])), shape=(n + 1, n + 1))
    reached = breadth_first_order_from(edges, n, directed=True, return_predecessors=False)[1:]
    rest = np.setdiff1d(np.arange(n), reached)
    return np.concatenate([reached, rest]).astype(np.int32)


def gauss_seidel_entrywise(
    A: sp.spmatrix, b: np.ndarray, *, rtol: float = 1e-14, max_sweeps: int = 10_000
) -> tuple[np.ndarray, int]:
    r"""$x = A^{-1} b$ with every entry to relative accuracy ``rtol``, by symmetric Gauss–Seidel
    sweeps ordered by breadth-first distance from the support of b.

    Args:
        A: (n, n) sparse, positive diagonal; the iteration converges for symmetric positive
            definite A and for diagonally dominant A, and is accurate entry by entry for
            M-matrices (see the module docstring).
        b: (n,) right-hand side.
        rtol: stop after the first symmetric sweep k whose largest relative change of an
            entry $c_k$ (entries that stay exactly 0 never count) bounds the error left below
            ``rtol``: :func:`error_bound` $= 2 c_k \rho / (1 - \rho) \le$ ``rtol``, $\rho$
            the contraction per sweep over the last sweeps (a sweep changing no entry beyond
            :data:`ROUNDING` of it ends at once: float64's floor).
        max_sweeps: at most this many symmetric sweeps.

    Returns:
        x (n,) float64, and the number of symmetric sweeps run.

    Raises:
        ConvergenceError: ``max_sweeps`` sweeps did not reach ``rtol`` (its residual is the
            last sweep's $c_k$), or x became NaN/Inf.
    """
    b = np.asarray(b, dtype=np.float64)
    n = A.shape[0]
    support = np.flatnonzero(b)
    if support.size == 0:
        return np.zeros(n), 0
    # renumbered by distance from the support, so each sweep walks outwards through memory too
    csr = sp.csr_matrix(A, dtype=np.float64)
    order = breadth_first_order(csr, support)
    csr = csr[order][:, order]
    csr.sort_indices()
    device = "cpu"
    x = wp.zeros(n, dtype=wp.float64, device=device)
    change = wp.zeros(1, dtype=wp.float64, device=device)
    inputs = [
        wp.array(csr.data, dtype=wp.float64, device=device),
        wp.array(csr.indptr.astype(np.int32), dtype=wp.int32, device=device),
        wp.array(csr.indices.astype(np.int32), dtype=wp.int32, device=device),
        wp.array(b[order], dtype=wp.float64, device=device),
        n,
    ]
    sweep = wp.launch(symmetric_sweep_kernel, dim=1, inputs=inputs, outputs=[change, x],
                      device=device, record_tape=False, record_cmd=True)
    history = []
    for sweeps in range(1, max_sweeps + 1):
        sweep.launch()
        history.append(float(change.numpy()[0]))
        if error_bound(history) <= rtol:
            solution = np.empty(n)
            solution[order] = x.numpy()
            return solution, sweeps
        if not np.isfinite(history[-1]) and not np.isfinite(x.numpy()).all():
            break
    ratio = history[-1] / history[-2] if len(history) > 1 and history[-2] > 0 else np.nan
    raise ConvergenceError(
        method="gauss_seidel",
        iterations=len(history),
        residual=history[-1],
        tolerance=rtol,
        residuals=np.asarray(history),
        reason="did not converge" if np.isfinite(history[-1]) else "broke down (NaN/Inf)",
        advice=(f"the residual is the last sweep's largest relative change of an entry, "
                f"multiplied by about {ratio:.4g} a sweep; raise max_sweeps, or solve a system "
                "whose diagonal dominates its rows more"),
    )


ROUNDING = 2.0 * float(np.finfo(np.float64).eps)
"""A sweep whose largest relative change of an entry is at most this changed only the last
bits: x is at float64's floor, whatever ``rtol`` asked."""


SAFETY = 2.0
r"""The factor on the geometric series' bound: the entry of largest error is not always the one
of largest change, nor its rate the measured one (without it the error reached 1.2 rtol on a
slowly contracting system); it costs $\log 2 / \log(1/\rho)$ sweeps, 2 % of them at
$\rho = 0.98$."""

CONTRACTION_WINDOW = 8
r"""The fewest sweeps over which the contraction is measured, $\rho = (c_k / c_{k-w})^{1/w}$,
$w = \max(8, k / 8)$: near float64's floor the changes come in whole units of roundoff, and
the ratio of two successive ones (1, then 0.97) underestimated a contraction of 0.983."""


def error_bound(changes: list[float]) -> float:
    r"""The bound :data:`SAFETY` $\cdot c_k \rho / (1 - \rho)$ on every entry's relative
    error after sweep k, from the sweeps' largest relative changes ``changes`` $= c_1 .. c_k$:
    the changes still to come, contracting by $\rho = (c_k / c_{k-w})^{1/w}$ a sweep, w
    the larger of :data:`CONTRACTION_WINDOW` and k / 8 (at most k - 1); 0 once
    $c_k \le$ :data:`ROUNDING`, inf before three sweeps or while $\rho \ge 1$ (or NaN)."""
    last = changes[-1]
    if last <= ROUNDING:
        return 0.0
    if len(changes) < 3:
        return np.inf
    window = min(len(changes) - 1, max(CONTRACTION_WINDOW, len(changes) // 8))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (last / changes[-1 - window]) ** (1.0 / window)
    return SAFETY * last * rho / (1.0 - rho) if rho < 1.0 else np.inf
