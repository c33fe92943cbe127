r"""Incomplete Cholesky IC(0): $A \approx L L^T$ with L on the lower pattern of A.

Row by row (the "up-looking" form), for the stored entries $(i, j)$, $j \le i$, of A's lower
triangle:

$$L_{ij} = \frac{1}{L_{jj}}\Big(A_{ij} - \sum_{c < j} L_{ic} L_{jc}\Big),\qquad
L_{ii} = \Big(A_{ii} - \sum_{c < i} L_{ic}^2\Big)^{1/2},$$

the sums running over the pattern only (fill-in outside it is dropped). Row i needs the rows
$j < i$ of its pattern, the dependencies of the forward triangular solve, so the factorisation
uses the same schedule (:class:`~.triangular.LowerPattern`): one launch per level on CUDA, one
sequential launch on the CPU. Each entry merges two sorted rows: cost $O(\sum_i
\text{nnz}_i^2)$, a few times nnz for a stencil. IC(0) exists for M-matrices; for other SPD
matrices a pivot can turn non-positive, and the factorisation is then repeated on
$A + \alpha\,\mathrm{diag}(A)$ with $\alpha = 10^{-3}, 10^{-2}, \dots$ (Manteuffel's shift),
the $\alpha$ used kept in :attr:`IncompleteCholesky.shift`.
"""

from __future__ import annotations

from typing import Any

import warp as wp
import warp.sparse as wps

from ..kernel_launch import launch, specialize
from .linear_operator import LinearOperator, csr_to_scipy, rebuilt, require_finite
from .triangular import CholeskyFactor, LowerPattern


@wp.func_native(
    """
    const int* op = offsets.data; const int* cp = columns.data; const int* qp = order.data;
    const auto* ap = a.data; auto* lp = l.data;
    for (int q = begin + t; q < end; q += stride) {
        const int i = qp[q];
        for (int k = op[i]; k < op[i + 1]; ++k) {
            const int j = cp[k];
            double s = double(ap[k]);
            if (j == i) {
                for (int p = op[i]; p < k; ++p) s -= double(lp[p]) * double(lp[p]);
                if (!(s > 0.0)) { if (failed[0] == 0) failed[0] = i + 1; s = 1.0; }
                lp[k] = sqrt(s);
            } else {
                int p1 = op[i], p2 = op[j];
                const int e2 = op[j + 1] - 1;  // row j without its diagonal: columns < j
                while (p1 < k && p2 < e2) {
                    const int c1 = cp[p1], c2 = cp[p2];
                    if (c1 == c2) { s -= double(lp[p1]) * double(lp[p2]); ++p1; ++p2; }
                    else if (c1 < c2) ++p1;
                    else ++p2;
                }
                lp[k] = s / double(lp[e2]);
            }
        }
    }
    """
)
def factor_rows(
    a: wp.array(dtype=Any),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    order: wp.array(dtype=wp.int32),
    begin: int,
    end: int,
    t: int,
    stride: int,
    failed: wp.array(dtype=wp.int32),
    l: wp.array(dtype=Any),
): ...


@wp.kernel(enable_backward=False)
def ic0_kernel(
    a: wp.array(dtype=Any),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    order: wp.array(dtype=wp.int32),
    begin: int,
    end: int,
    stride: int,
    failed: wp.array(dtype=wp.int32),
    l: wp.array(dtype=Any),
):
    """IC(0) of the rows ``order[begin:end]`` (one level): ``a`` holds A's lower triangle in
    L's CSR order, ``l`` receives L. A non-positive pivot in row i sets ``failed[0] = i + 1``
    (and a unit pivot, so the launch completes). Reads a, offsets, columns, order; writes
    failed, l."""
    factor_rows(a, offsets, columns, order, begin, end, wp.tid(), stride, failed, l)


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(ic0_kernel, T, {"a": arr, "l": arr})


_overload_all()

SHIFTS = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
"""Diagonal shifts $\\alpha$ tried in turn when a pivot breaks down."""


def ic0_factor(pattern: LowerPattern, a: wp.array) -> tuple[wp.array, float]:
    """The IC(0) values of L for A's lower values ``a`` on ``pattern``, and the shift used.

    Raises:
        ValueError: a pivot broke down at every shift of :data:`SHIFTS`.
    """
    failed = wp.zeros(1, dtype=wp.int32, device=pattern.device)
    l = wp.empty_like(a)
    schedule = pattern.forward
    diagonal = pattern.diagonal.numpy()
    for shift in SHIFTS:
        shifted = a
        if shift:
            host = a.numpy().copy()
            host[diagonal] *= 1.0 + shift
            shifted = wp.array(host, dtype=a.dtype, device=a.device)
        failed.zero_()
        for level in range(schedule.launches):
            begin, end = int(schedule.ptr[level]), int(schedule.ptr[level + 1])
            threads = end - begin if pattern.by_levels else 1
            launch(ic0_kernel, a.dtype, dim=threads, device=pattern.device, record_tape=False,
                   inputs=[shifted, pattern.offsets, pattern.column_array, schedule.order,
                           begin, end, threads], outputs=[failed, l])
        row = int(failed.numpy()[0])
        if row == 0:
            return l, shift
    raise ValueError(f"IC(0) broke down (non-positive pivot in row {row - 1}) even with the "
                     f"diagonal shifted by {SHIFTS[-1]:g} diag(A); is A symmetric positive "
                     "definite? Use an AMG preconditioner instead")


def assembled_matrix(A: LinearOperator, preconditioner: Any) -> wps.BsrMatrix:
    """The Warp CSR matrix ``A.matrix`` from which ``preconditioner`` (an object with a
    ``name``, being built) computes its factor or hierarchy.

    Raises:
        ValueError: A has no ``matrix`` (a matrix-free operator); the message names the
            preconditioner and says how to make a :class:`~.linear_operator.CsrOperator`.
    """
    matrix = getattr(A, "matrix", None)
    if matrix is None:
        raise ValueError(
            f"{type(preconditioner).__name__} ({preconditioner.name!r}) needs an assembled "
            f"matrix, got a {type(A).__name__}: pass a CsrOperator "
            "(CsrOperator(csr_from_scipy(matrix, wp.float64, device)) makes one from a SciPy "
            "matrix), or use Jacobi for a matrix-free operator (a StencilOperator built with "
            "diagonal=...)")
    return matrix


class IncompleteCholesky(CholeskyFactor):
    """IC(0) as a preconditioner: $z = (L L^T)^{-1} r$ with L from :func:`ic0_factor`.

    Args:
        A: a :class:`~physml.solvers.linalg.CsrOperator` (symmetric positive definite; the
            lower triangle is read, and refused with a NaN or Inf entry).
        by_levels: see :class:`~.triangular.LowerPattern`.

    Set-up: the pattern analysis (host, O(nnz)) and the factorisation on the device. It
    pickles as A's lower triangle and is factorised again from it on the same device.
    """

    name = "ic0"

    def __init__(self, A: LinearOperator, by_levels: bool | None = None) -> None:
        host = csr_to_scipy(assembled_matrix(A, self))
        pattern = LowerPattern(host, A.device, by_levels)
        require_finite(pattern.lower, needs="an incomplete Cholesky factor")
        a = wp.array(pattern.lower.data, dtype=A.dtype, device=A.device)
        values, self.shift = ic0_factor(pattern, a)
        super().__init__(pattern, values, name=self.name)

    def __reduce__(self) -> tuple:
        p = self.pattern
        return rebuilt, (p.lower, self.values.dtype.__name__, str(p.device), IncompleteCholesky,
                         {"by_levels": p.by_levels})
