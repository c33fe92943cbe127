r"""Sparse products of a SciPy CSR matrix on the host's threads, its rows split in blocks.

pyamg runs its V-cycles on the host, one thread, in SciPy and its own C++; a smoother that
applies by sparse products (a learned $x \mathrel{+}= G^T G (b - A x)$) has rows that are
independent of each other, so blocks of rows can run on all of the host's cores where
Gauss–Seidel, row after row, cannot. The products here call SciPy's CSR row loop
(``scipy.sparse._sparsetools.csr_matvec``, the kernel behind ``M @ v``, from the module pyamg
also imports its row kernels from): it adds $M v$ into a given vector (no temporary) and releases
the GIL, so the blocks, handed to :func:`~physml.solvers.host_threads.in_parallel`, run at once.
The blocks hold about equal numbers of nonzeros.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse._sparsetools import csr_matvec

from ..host_threads import available_cores, in_parallel

ROWS_PER_THREAD = 1 << 17
"""Rows per block under ``threads="auto"``: at most ``rows // ROWS_PER_THREAD`` blocks (which
then split the nonzeros evenly: a block of long rows can have fewer rows). Measured with the
learned smoother of :mod:`physml.preconditioners.smoother` in pyamg's V-cycle (5-point
grids, a 2-core x86_64 VM): two blocks made a cycle slower at 256^2 (11.6 against 10.7 ms:
handing a block to another thread and the second thread's cache misses cost more than half
a product saves), a little faster at 512^2 (38.5 against 41.6 ms) and 1024^2 (141 against
163 ms)."""


def block_count(rows: int, threads: int | str = "auto",
                rows_per_thread: int = ROWS_PER_THREAD) -> int:
    """Blocks for a matrix of ``rows`` rows: ``threads`` as given, or under ``"auto"`` the
    available cores, at most one per ``rows_per_thread`` rows (at least one).

    Raises:
        ValueError: ``threads`` is neither "auto" nor an integer >= 1.
    """
    if threads == "auto":
        return max(1, min(available_cores(), rows // rows_per_thread))
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads={threads!r}; allowed: 'auto' or a whole number >= 1")
    return int(threads)


class RowBlockProduct:
    """Products with one CSR matrix M, its rows in ``blocks`` blocks run on host threads.

    Args:
        matrix: a SciPy CSR matrix (m, n), float64 or float32; held, not copied (its arrays
            must stay as they are).
        blocks: the number of row blocks (:func:`block_count`).
    """

    def __init__(self, matrix: sp.csr_matrix | sp.csr_array, blocks: int) -> None:
        if not sp.issparse(matrix) or matrix.format != "csr":
            raise ValueError(f"RowBlockProduct takes a SciPy CSR matrix, got {type(matrix)}")
        self.matrix = matrix
        self.shape = matrix.shape
        targets = np.linspace(0, matrix.nnz, blocks + 1)[1:-1]
        inner = np.searchsorted(matrix.indptr, targets).tolist()
        self.bounds = list(zip([0, *inner], [*inner, matrix.shape[0]]))

    def multiply(self, v: np.ndarray, out: np.ndarray) -> None:
        """out = M v (v of shape (n,), out (m,), both of M's dtype).

        Raises:
            ValueError: a vector of another shape or dtype, or an ``out`` that shares memory
                with an input (named; so for the other methods).
        """
        self._check(v=(v, 1), out=(out, 0))

        def block(first: int, last: int) -> None:
            out[first:last] = 0
            self._add(first, last, v, out)

        self._run(block)

    def accumulate(self, v: np.ndarray, out: np.ndarray) -> None:
        """out += M v."""
        self._check(v=(v, 1), out=(out, 0))
        self._run(lambda first, last: self._add(first, last, v, out))

    def residual(self, x: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out = b - M x (a square M)."""
        self._check(x=(x, 1), b=(b, 0), out=(out, 0))

        def block(first: int, last: int) -> None:
            out[first:last] = 0
            self._add(first, last, x, out)
            np.subtract(b[first:last], out[first:last], out=out[first:last])

        self._run(block)

    def _check(self, **vectors: tuple[np.ndarray, int]) -> None:
        """Each named vector has the length of M's axis given beside it, and M's dtype (SciPy's
        row loop reads and writes past the end of a shorter one), and ``out`` shares no memory
        with the others (a block would read entries another has overwritten)."""
        out = vectors["out"][0]
        for name, (vector, _) in vectors.items():
            if name != "out" and np.may_share_memory(vector, out):
                raise ValueError(f"out and {name} share memory; a product writes out while it "
                                 f"reads {name}: give out its own array")
        for name, (vector, axis) in vectors.items():
            length = self.shape[axis]
            if (not isinstance(vector, np.ndarray) or vector.shape != (length,)
                    or vector.dtype != self.matrix.dtype):
                described = (f"shape {vector.shape} and dtype {vector.dtype}"
                             if isinstance(vector, np.ndarray) else f"type {type(vector)}")
                raise ValueError(f"{name} has {described}; a product with this {self.shape} "
                                 f"matrix takes NumPy vectors of shape ({length},) and dtype "
                                 f"{self.matrix.dtype}")

    def _add(self, first: int, last: int, v: np.ndarray, out: np.ndarray) -> None:
        m = self.matrix
        csr_matvec(last - first, m.shape[1], m.indptr[first:last + 1], m.indices, m.data, v,
                   out[first:last])

    def _run(self, block: Callable[[int, int], None]) -> None:
        in_parallel(lambda k: block(*self.bounds[k]), len(self.bounds))
