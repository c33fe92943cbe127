r"""Sparse triangular factors $L$ (lower, A's lower pattern) and $M^{-1} = L^{-T} L^{-1}$.

A :class:`LowerPattern` is the sparsity of the lower triangle of a symmetric matrix A
(diagonal included), stored twice on the device: as the CSR of $L$ (rows, sorted columns, the
diagonal last in each row) and as the CSR of $L^T$ (the diagonal first), with the permutation
that maps the values of $L$ to those of $L^T$. A :class:`CholeskyFactor` is such a pattern with
values; as a :class:`~physml.solvers.linalg.Preconditioner` it applies

$$z = (L L^T)^{-1} r:\qquad L y = r\ \text{(forward)},\qquad L^T z = y\ \text{(backward)},$$

the form shared by incomplete Cholesky (:mod:`.incomplete_cholesky`) and by factors a network
predicts (``physml.preconditioners``): both fill the values of one pattern.

Scheduling. Row i of the forward solve needs the rows $j < i$ of its pattern; its *level* is
$1 + \max_j \text{level}(j)$ (0 without such j), so the rows of one level are independent.
On CUDA each level is one launch, a thread per row (level scheduling, Anderson & Saad 1989);
a 5-point grid of $m^2$ unknowns has $2m - 1$ levels. On the CPU a Warp launch runs on one
thread, so the rows go in their natural order in a single launch (a topological order too, and
a cache-friendly one); ``by_levels=True`` forces the level order there (tests use it to check
the schedule). The levels themselves come from one sequential pass (a single thread, also on
CUDA: a set-up cost paid once per pattern, not per apply), computed only where a schedule uses
them. The row loops are native snippets over raw pointers, as in
:mod:`~physml.solvers.linalg.kernels` (Warp's generated indexing is several times slower on the
CPU). Cost per apply: two passes over the nnz of $L$; memory: the
values twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import warp as wp

from ..host_threads import ForkSafeLock
from ..kernel_launch import launch, specialize
from ..replay import Replay
from ..runtime import warp_device
from .linear_operator import check_vectors, summary_repr

# ------------------------------------------------------------------------------------ kernels


@wp.func_native(
    """
    const int* op = offsets.data; const int* cp = columns.data; const int* dp = diagonal.data;
    const int* qp = order.data; const auto* vp = values.data; const auto* bp = rhs.data;
    const auto* ip = pivots.data;
    auto* xp = x.data;
    // the row this thread solved last stays in a register: its term is subtracted last, so
    // the chain from row to row is a product, a difference and the pivot's product, without
    // a reload of the value just stored
    using real = decltype(bp[0] + bp[0]);  // unevaluated: no read of an empty rhs
    int last = -1;
    real last_x = real(0);
    for (int q = begin + t; q < end; q += stride) {
        const int i = qp[q];
        const int d = dp[i];
        real acc = bp[i];
        real last_v = real(0);
        bool reads_last = false;
        for (int k = op[i]; k < op[i + 1]; ++k) {
            const int c = cp[k];
            if (k == d) continue;
            if (c == last) { last_v = vp[k]; reads_last = true; }
            else acc -= vp[k] * xp[c];
        }
        if (reads_last) acc -= last_v * last_x;
        last_x = acc * ip[i];
        xp[i] = last_x;
        last = i;
    }
    """
)
def substitute_rows(
    values: wp.array(dtype=Any),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    diagonal: wp.array(dtype=wp.int32),
    pivots: wp.array(dtype=Any),
    order: wp.array(dtype=wp.int32),
    rhs: wp.array(dtype=Any),
    begin: int,
    end: int,
    t: int,
    stride: int,
    x: wp.array(dtype=Any),
): ...


@wp.kernel(enable_backward=False)
def triangular_solve_kernel(
    values: wp.array(dtype=Any),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    diagonal: wp.array(dtype=wp.int32),
    pivots: wp.array(dtype=Any),
    order: wp.array(dtype=wp.int32),
    rhs: wp.array(dtype=Any),
    begin: int,
    end: int,
    stride: int,
    x: wp.array(dtype=Any),
):
    """Substitution for the rows ``order[begin:end]`` of a triangular CSR matrix T:
    $x_i = (\\text{rhs}_i - \\sum_{k \\ne d_i} T_{ik} x_{c_k})\\, p_i$, where ``diagonal[i]``
    is the position of $T_{ii}$ in the row and ``pivots[i]`` is $p_i = 1/T_{ii}$ (a product in
    the chain from row to row where a division would take three to four times as long). Every
    column the row reads must be final (an earlier level). Reads values, offsets, columns,
    diagonal, pivots, order, rhs; writes x."""
    substitute_rows(values, offsets, columns, diagonal, pivots, order, rhs, begin, end,
                    wp.tid(), stride, x)


@wp.func_native(
    """
    const int* op = offsets.data; const int* cp = columns.data;
    int* lp = level.data;
    for (int i = 0; i < n; ++i) {
        int li = 0;
        for (int k = op[i]; k < op[i + 1]; ++k) {
            const int j = cp[k];
            if (j != i && lp[j] + 1 > li) li = lp[j] + 1;
        }
        lp[i] = li;
    }
    """
)
def level_rows(offsets: wp.array(dtype=wp.int32), columns: wp.array(dtype=wp.int32), n: int,
               level: wp.array(dtype=wp.int32)): ...


@wp.kernel(enable_backward=False)
def level_kernel(offsets: wp.array(dtype=wp.int32), columns: wp.array(dtype=wp.int32), n: int,
                 level: wp.array(dtype=wp.int32)):
    """level_i = 1 + max level_j over the columns j < i of row i of a lower CSR matrix (0 if
    none), in one sequential pass (launch with dim=1). Reads offsets, columns; writes level."""
    level_rows(offsets, columns, n, level)


@wp.kernel(enable_backward=False)
def reciprocal_gather_kernel(source: wp.array(dtype=Any), index: wp.array(dtype=wp.int32),
                             target: wp.array(dtype=Any)):
    """target_i = 1 / source_{index_i}. Reads source, index; writes target."""
    i = wp.tid()
    target[i] = source.dtype(1.0) / source[index[i]]


@wp.kernel(enable_backward=False)
def gather_kernel(source: wp.array(dtype=Any), index: wp.array(dtype=wp.int32),
                  target: wp.array(dtype=Any)):
    """target_k = source_{index_k}. Reads source, index; writes target."""
    k = wp.tid()
    target[k] = source[index[k]]


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(triangular_solve_kernel, T, {"values": arr, "pivots": arr, "rhs": arr,
                                                "x": arr})
        specialize(gather_kernel, T, {"source": arr, "target": arr})
        specialize(reciprocal_gather_kernel, T, {"source": arr, "target": arr})


_overload_all()


def gather_values(source: wp.array, index: wp.array, target: wp.array) -> None:
    """``target[k] = source[index[k]]`` (the values of a transposed pattern)."""
    launch(gather_kernel, source.dtype, dim=target.shape[0], inputs=[source, index],
           outputs=[target], device=source.device, record_tape=False)


# ---------------------------------------------------------------------------------- patterns


def lower_triangle(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """The lower triangle (diagonal included) of a square sparse matrix: CSR, duplicates
    summed, columns sorted, explicit zeros kept (so its entries are those of the pattern
    whatever their values). The input is not modified."""
    a = sp.csr_matrix(matrix)
    if not a.has_canonical_format:
        a = a.copy()
        a.sum_duplicates()
    n = a.shape[0]
    rows = np.repeat(np.arange(n), np.diff(a.indptr))
    keep = a.indices <= rows
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=n))])
    return sp.csr_matrix((a.data[keep], a.indices[keep], indptr), shape=a.shape)



@dataclass(frozen=True)
class Schedule:
    """An order of rows and the launches that cover it: rows ``order[ptr[l]:ptr[l + 1]]`` of
    launch l are independent. ``ptr`` lives on the host, ``order`` on the device."""

    order: wp.array
    ptr: np.ndarray

    @property
    def launches(self) -> int:
        return len(self.ptr) - 1


class LowerPattern:
    """The lower-triangular pattern of a symmetric matrix (diagonal included), on a device.

    Args:
        matrix: a square SciPy sparse matrix; only its lower triangle is read (and kept, values
            included, as ``lower``), and every diagonal entry must be stored.
        device: "cpu", "cuda", "cuda:N", a Warp device or a ``torch.device``; one this machine
            lacks is refused (:func:`~physml.solvers.runtime.warp_device`).
        by_levels: one launch per level (True) or one sequential launch (False); default:
            levels on CUDA, sequential on the CPU.

    Attributes:
        n, nnz: unknowns and stored entries of L.
        rows, columns: (nnz,) host int arrays, the entry coordinates of L in CSR order (the
            order of every vector of L's values).
        lower: the lower triangle of ``matrix`` (:func:`lower_triangle`), on the host; on the
            CPU the pattern's device arrays share its index arrays, so it is not to be
            modified in place.
        levels: the number of levels of the forward solve.
    """

    def __init__(self, matrix: sp.spmatrix | sp.sparray, device: Any = "cpu",
                 by_levels: bool | None = None) -> None:
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix has shape {matrix.shape}; a square matrix is needed")
        self.device = wp.get_device(warp_device(device))
        self.lower = lower = lower_triangle(matrix)
        n = lower.shape[0]
        self.n, self.nnz = n, lower.nnz
        self.rows = np.repeat(np.arange(n, dtype=np.int32), np.diff(lower.indptr))
        self.columns = lower.indices.astype(np.int32)
        on_diagonal = self.rows == self.columns
        if np.count_nonzero(on_diagonal) != n:
            missing = np.setdiff1d(np.arange(n), self.rows[on_diagonal])
            raise ValueError(f"matrix has no stored diagonal entry in rows {missing[:10].tolist()};"
                             " a triangular factor needs every diagonal entry")
        self.by_levels = self.device.is_cuda if by_levels is None else by_levels
        # L^T in CSR: the transpose of a matrix whose values are the positions 0..nnz-1.
        upper = sp.csr_matrix((np.arange(self.nnz, dtype=np.float64), lower.indices,
                               lower.indptr), shape=(n, n)).T.tocsr()
        upper.sort_indices()
        self.transpose_index = self._int(upper.data)
        self.offsets, self.column_array = self._int(lower.indptr), self._int(lower.indices)
        self.upper_offsets, self.upper_columns = self._int(upper.indptr), self._int(upper.indices)
        self.diagonal = self._int(lower.indptr[1:] - 1)  # sorted: the diagonal ends each row
        self.upper_diagonal = self._int(upper.indptr[:-1])  # ... and starts each row of L^T
        level = self._levels() if self.by_levels else None  # row order needs no levels
        if level is not None:
            self.__dict__["levels"] = int(level.max()) + 1 if n else 0  # the cached property
        self.forward = self._schedule(level, reverse=False)
        self.backward = self._schedule(
            None if level is None else self._backward_levels(upper), reverse=True)

    @functools.cached_property
    def levels(self) -> int:
        """The number of levels of the forward solve (computed on first use)."""
        return int(self._levels().max()) + 1 if self.n else 0

    def _int(self, a: np.ndarray) -> wp.array:
        """``a`` as int32 on the device (on the CPU a view of the host array, not a copy)."""
        return wp.array(np.ascontiguousarray(a, dtype=np.int32), dtype=wp.int32,
                        device=self.device, copy=not self.device.is_cpu)

    def _levels(self) -> np.ndarray:
        level = wp.zeros(self.n, dtype=wp.int32, device=self.device)
        wp.launch(level_kernel, dim=1, inputs=[self.offsets, self.column_array, self.n],
                  outputs=[level], device=self.device)
        return level.numpy()

    def _backward_levels(self, upper: sp.csr_matrix) -> np.ndarray:
        """Levels of the backward solve (rows of L^T, last row first): row i waits for the
        rows j > i of its pattern; by symmetry of the DAG, the reversed forward levels of the
        transposed graph. Computed as the forward levels of the reversed ordering."""
        n = self.n
        flipped = sp.csr_matrix((upper.data, n - 1 - upper.indices, upper.indptr),
                                shape=(n, n))[::-1]
        flipped = sp.csr_matrix(flipped)
        flipped.sort_indices()
        reversed_level = wp.zeros(n, dtype=wp.int32, device=self.device)
        wp.launch(level_kernel, dim=1, inputs=[self._int(flipped.indptr),
                                               self._int(flipped.indices), n],
                  outputs=[reversed_level], device=self.device)
        return reversed_level.numpy()[::-1].copy()

    def _schedule(self, level: np.ndarray | None, reverse: bool) -> Schedule:
        n = self.n
        if not self.by_levels:
            order = np.arange(n, dtype=np.int32)
            return Schedule(self._int(order[::-1].copy() if reverse else order),
                            np.array([0, n]))
        order = np.argsort(level, kind="stable").astype(np.int32)
        ptr = np.concatenate([[0], np.cumsum(np.bincount(level))])
        return Schedule(self._int(order), ptr)


class SharedVector:
    """The intermediate vector of a factor's unrecorded applies, taken by one apply at a time
    (a recorded apply owns its own, so that solves in several threads may share the factor)."""

    def __init__(self) -> None:
        self._vector: wp.array | None = None
        self._lock = ForkSafeLock()

    @contextmanager
    def like(self, r: wp.array) -> Iterator[wp.array]:
        """The vector, of ``r``'s dtype, held for the ``with`` block."""
        with self._lock:
            if self._vector is None or self._vector.dtype != r.dtype:
                self._vector = wp.empty_like(r)
            yield self._vector


class CholeskyFactor:
    """$M = L L^T$ with L on a :class:`LowerPattern`: the preconditioner $z = L^{-T} L^{-1} r$.

    Args:
        pattern: the pattern of L.
        values: (nnz,) Warp array of L's values in the pattern's CSR order (float32 or
            float64, on the pattern's device), positive on the diagonal. It is held, not
            copied (a ``wp.from_torch`` view of a network's output works); call
            :meth:`refresh` after changing it in place.
        name: the name the preconditioner reports.
    """

    def __init__(self, pattern: LowerPattern, values: wp.array, name: str = "cholesky_factor"):
        if values.shape != (pattern.nnz,) or values.device != pattern.device:
            raise ValueError(f"values has shape {values.shape} on {values.device}; the pattern "
                             f"needs ({pattern.nnz},) on {pattern.device}")
        self.name = name
        self.pattern = pattern
        self.values = values
        self.upper_values = wp.empty_like(values)
        self.pivots = wp.empty(pattern.n, dtype=values.dtype, device=values.device)
        """$1/L_{ii}$, shape (n,): the diagonal of L and of $L^T$ alike."""
        self._y = SharedVector()  # apply's intermediate L^{-1} r
        self.refresh()

    def refresh(self) -> None:
        """Re-derive the values of $L^T$ and the reciprocal pivots from those of L."""
        gather_values(self.values, self.pattern.transpose_index, self.upper_values)
        launch(reciprocal_gather_kernel, self.values.dtype, dim=self.pattern.n,
               inputs=[self.values, self.pattern.diagonal], outputs=[self.pivots],
               device=self.values.device, record_tape=False)

    def diagonal(self) -> np.ndarray:
        """The diagonal of L (host copy), shape (n,)."""
        return self.values.numpy()[self.pattern.diagonal.numpy()]

    def apply(self, r: wp.array, z: wp.array) -> None:
        """$z = L^{-T} L^{-1} r$ (one apply at a time: the intermediate vector is shared)."""
        with self._y.like(r) as y:
            for call in self._launches(r, z, y, record=False):
                call()

    def bind(self, r: wp.array, z: wp.array) -> Callable[[], None]:
        """``apply(r, z)`` with its launches recorded for these two arrays (and an
        intermediate vector of their own, so that solves in several threads may share the
        factor)."""
        calls = self._launches(r, z, wp.empty_like(r), record=True)

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
        """Also the number of entries of L and the name the preconditioner reports."""
        return summary_repr(self, *self.built_for, nnz=self.pattern.nnz, name=self.name)

    def solve_lower(self, r: wp.array, y: wp.array) -> None:
        """$y = L^{-1} r$."""
        check_vectors(f"the {self.name} preconditioner", *self.built_for, r=r, y=y)
        for call in self._sweeps(self.values, self.pattern.offsets, self.pattern.column_array,
                                 self.pattern.diagonal, self.pattern.forward, r, y, False):
            call()

    def solve_upper(self, y: wp.array, z: wp.array) -> None:
        """$z = L^{-T} y$."""
        p = self.pattern
        check_vectors(f"the {self.name} preconditioner", *self.built_for, y=y, z=z)
        for call in self._sweeps(self.upper_values, p.upper_offsets, p.upper_columns,
                                 p.upper_diagonal, p.backward, y, z, False):
            call()

    def _launches(self, r: wp.array, z: wp.array, y: wp.array, record: bool
                  ) -> list[Callable[[], None]]:
        """The sweeps of $y = L^{-1} r$, then $z = L^{-T} y$."""
        p = self.pattern
        check_vectors(f"the {self.name} preconditioner", *self.built_for, r=r, z=z)
        return [*self._sweeps(self.values, p.offsets, p.column_array, p.diagonal, p.forward, r,
                              y, record),
                *self._sweeps(self.upper_values, p.upper_offsets, p.upper_columns,
                              p.upper_diagonal, p.backward, y, z, record)]

    def _sweeps(self, values, offsets, columns, diagonal, schedule: Schedule, rhs, x,
                record: bool) -> list[Callable[[], None]]:
        calls = []
        for level in range(schedule.launches):
            begin, end = int(schedule.ptr[level]), int(schedule.ptr[level + 1])
            threads = end - begin if self.pattern.by_levels else 1
            options = dict(dim=threads, inputs=[values, offsets, columns, diagonal, self.pivots,
                                                schedule.order, rhs, begin, end, threads],
                           outputs=[x], device=self.pattern.device, record_tape=False)
            if record:
                calls.append(Replay(launch(triangular_solve_kernel, values.dtype,
                                           record_cmd=True, **options)))
            else:
                calls.append(lambda o=options: launch(triangular_solve_kernel, values.dtype, **o))
        return calls
