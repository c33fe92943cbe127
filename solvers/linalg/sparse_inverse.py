r"""Factored sparse approximate inverse $M^{-1} = G^T G$, applied by two sparse products.

G is lower triangular on a :class:`~.triangular.LowerPattern` (the lower pattern of A), so
$G^T G$ is symmetric positive semi-definite by construction, and definite when G's diagonal
is nonzero. The apply $z = G^T (G r)$ is two CSR products (the row-per-thread kernel of
:mod:`~physml.solvers.linalg.kernels`) with no triangular solve, hence no sequence of levels:
every row is independent on a GPU. Cost per apply: two passes over the nnz of G.

G comes from a learned model (the sparse-approximate-inverse head of
``physml.preconditioners``) or from :class:`FactorizedSparseInverse`, the classical FSAI of
Kolotilina & Yeremin (1993): row i of G solves A restricted to the pattern $P_i$ of that row,
$A_{P_i P_i} g = e_i$, scaled so that $(G A G^T)_{ii} = 1$; then $G A G^T \approx I$, that is
$A^{-1} \approx G^T G$. Its set-up solves one dense $k\times k$ system per row ($k$ = entries in
the row, ≤ 4 for a 7-point stencil's lower triangle), batched over rows of equal $k$ on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import warp as wp

from .incomplete_cholesky import assembled_matrix
from .kernels import csr_matvec_kernel, recorded_sweep, sweep
from .linear_operator import LinearOperator, check_vectors, csr_to_scipy, summary_repr
from .scalar_table import scratch_cell
from .triangular import LowerPattern, SharedVector, gather_values


class SparseInverseFactor:
    """$z = G^T G r$ with G on a :class:`~.triangular.LowerPattern` (lower, CSR values).

    Args:
        pattern: the pattern of G.
        values: (nnz,) Warp array of G's values in the pattern's CSR order; held, not copied
            (call :meth:`refresh` after changing it in place).
        name: the name the preconditioner reports.
    """

    def __init__(self, pattern: LowerPattern, values: wp.array, name: str = "sparse_inverse"):
        if values.shape != (pattern.nnz,) or values.device != pattern.device:
            raise ValueError(f"values has shape {values.shape} on {values.device}; the pattern "
                             f"needs ({pattern.nnz},) on {pattern.device}")
        self.name, self.pattern, self.values = name, pattern, values
        self.upper_values = wp.empty_like(values)
        self._y = SharedVector()  # apply's intermediate G r
        self._scratch = scratch_cell(pattern.device)  # takes the unread dot products
        self.refresh()

    def refresh(self) -> None:
        """Re-derive the values of $G^T$ from those of G."""
        gather_values(self.values, self.pattern.transpose_index, self.upper_values)

    def apply(self, r: wp.array, z: wp.array) -> None:
        """$z = G^T (G r)$ (one apply at a time: the intermediate vector is shared)."""
        with self._y.like(r) as y:
            for arrays, outputs in self._products(r, z, y):
                sweep(csr_matvec_kernel, arrays, self._scratch.address, outputs)

    def bind(self, r: wp.array, z: wp.array) -> Callable[[], None]:
        """``apply(r, z)`` with its two launches recorded for these arrays (and an
        intermediate vector of their own, so that solves in several threads may share G)."""
        calls = [recorded_sweep(csr_matvec_kernel, arrays, self._scratch.address, outputs)
                 for arrays, outputs in self._products(r, z, wp.empty_like(r))]

        def run() -> None:
            for call in calls:
                call()

        return run

    @property
    def built_for(self) -> tuple[int, Any, Any]:
        """(n, dtype, device) of the matrix this preconditioner was built for: the vectors it
        takes (checked at each apply, and by the solvers up front)."""
        return self.pattern.n, self.values.dtype, self.pattern.device

    def __repr__(self) -> str:
        """Also the number of entries of G and the name the preconditioner reports."""
        return summary_repr(self, *self.built_for, nnz=self.pattern.nnz, name=self.name)

    def _products(self, r: wp.array, z: wp.array, y: wp.array) -> list[tuple[list, list]]:
        """The two products $y = G r$, $z = G^T y$ as (inputs, outputs) of the CSR kernel."""
        p = self.pattern
        check_vectors(f"the {self.name} preconditioner", *self.built_for, r=r, z=z)
        table = self._scratch.table
        return [([r, self.values, p.offsets, p.column_array], [table, y]),
                ([y, self.upper_values, p.upper_offsets, p.upper_columns], [table, z])]


def fsai_values(matrix: sp.spmatrix | sp.sparray, pattern: LowerPattern) -> np.ndarray:
    """FSAI values of G on ``pattern`` for the SPD ``matrix`` (host), shape (nnz,)."""
    a = sp.csr_matrix(matrix)
    a.sum_duplicates()
    a.sort_indices()
    n = a.shape[0]
    keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(a.indptr)) * n + a.indices
    offsets = np.concatenate([[0], np.cumsum(np.bincount(pattern.rows, minlength=n))])
    lengths = np.diff(offsets)
    values = np.empty(pattern.nnz)
    for k in np.unique(lengths):
        rows = np.flatnonzero(lengths == k)
        cols = pattern.columns[offsets[rows][:, None] + np.arange(k)]  # (rows, k), sorted
        query = cols[:, :, None].astype(np.int64) * n + cols[:, None, :]
        at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        block = np.where(keys[at] == query, a.data[at], 0.0)  # (rows, k, k) = A[P_i, P_i]
        unit = np.zeros((rows.size, k, 1))
        unit[:, -1] = 1.0  # the diagonal is the last (largest) column of each row
        try:
            g = np.linalg.solve(block, unit)[:, :, 0]
        except np.linalg.LinAlgError:
            g = np.full((rows.size, k), np.nan)
        bad = ~(g[:, -1] > 0)  # g_ii = (A[P_i, P_i]^{-1})_ii > 0 for an SPD A
        if bad.any():
            raise ValueError(f"FSAI needs a symmetric positive definite matrix; the block of "
                             f"row {int(rows[np.argmax(bad)])} is singular or indefinite (use "
                             f"an AMG preconditioner instead)")
        g /= np.sqrt(g[:, -1:])  # (G A G^T)_ii = g_i^T A g = g_ii before scaling
        values[offsets[rows][:, None] + np.arange(k)] = g
    return values


class FactorizedSparseInverse(SparseInverseFactor):
    """FSAI: $M^{-1} = G^T G$ with G from :func:`fsai_values` on A's lower pattern.

    Args:
        A: a :class:`~physml.solvers.linalg.CsrOperator`, symmetric positive definite.
    """

    name = "fsai"

    def __init__(self, A: LinearOperator) -> None:
        host = csr_to_scipy(assembled_matrix(A, self))
        pattern = LowerPattern(host, A.device, by_levels=False)
        values = wp.array(fsai_values(host, pattern), dtype=A.dtype, device=A.device)
        super().__init__(pattern, values, name=self.name)
