r"""Linear operators $y = A x$ on Warp vectors: a sparse matrix or a matrix-free stencil.

Anything with ``shape`` ``(n, n)``, ``dtype`` (``wp.float32`` or ``wp.float64``), ``device`` and
``matvec(x, y)`` (writes $y = A x$ into the Warp array ``y``, both of length n) is a
:class:`LinearOperator`; the Krylov solvers and preconditioners need nothing else. An operator
may also offer ``bind(x, y)``, returning a call without arguments that repeats ``matvec(x, y)``
on those two arrays more cheaply (a recorded launch), and ``bind_dot(x, y, cell)``, the same
that also adds $x \\cdot y$ to a :class:`~.scalar_table.TableCell` of a solver's scalar table
(its row read on the device at each call); the solvers use them where they exist. Two
come with the package: :class:`CsrOperator` over a ``warp.sparse.BsrMatrix`` with 1×1 blocks
(CSR), whose product is a row-per-thread CSR kernel, and :class:`StencilOperator` over a
callable. Conversions to and from ``scipy.sparse.csr_matrix`` keep the order of the stored
entries (rows, then sorted columns), so a vector of CSR values means the same on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import warp as wp
import warp.sparse as wps

from ..dtypes import warp_dtype
from ..runtime import warp_device
from .kernels import csr_matvec_kernel, recorded_sweep, sweep
from .scalar_table import TableCell, scratch_cell


@runtime_checkable
class LinearOperator(Protocol):
    """$y = A x$ for Warp vectors of length n; ``shape == (n, n)``."""

    shape: tuple[int, int]
    dtype: Any  # wp.float32 or wp.float64 (Warp types them as its scalar classes)
    device: wp.context.Device

    def matvec(self, x: wp.array, y: wp.array) -> None:
        """Write $A x$ into ``y`` (``x`` untouched; ``x`` and ``y`` distinct)."""
        ...


class CsrOperator:
    """A sparse matrix with 1×1 blocks (CSR) as a :class:`LinearOperator`.

    Args:
        matrix: a ``warp.sparse.BsrMatrix`` of scalar blocks, square, float32 or float64.

    The product is a row-per-thread CSR kernel (:mod:`~physml.solvers.linalg.kernels`), not
    ``warp.sparse.bsr_mv``, which is written for general blocks and on the CPU took about 5× as
    long as SciPy's product on a 256² Poisson matrix (warp-lang 1.19). Cost O(nnz).

    It pickles as its SciPy CSR matrix, dtype and device, and is rebuilt on that device.
    """

    def __init__(self, matrix: wps.BsrMatrix) -> None:
        if not isinstance(matrix, wps.BsrMatrix):
            raise ValueError(f"matrix is a {type(matrix).__name__}; CsrOperator takes a "
                             "warp.sparse matrix: csr_from_scipy(matrix, wp.float64, device) "
                             "makes one from a SciPy matrix")
        if matrix.block_shape != (1, 1):
            raise ValueError(
                f"matrix has blocks of shape {matrix.block_shape}; CsrOperator takes 1x1 blocks"
            )
        if matrix.nrow != matrix.ncol:
            raise ValueError(f"matrix has shape {matrix.shape}; a square matrix is needed")
        self.matrix = matrix
        self._scratch = scratch_cell(matrix.device)  # takes the unread x · Ax
        self.shape = (matrix.nrow, matrix.ncol)
        self.dtype = matrix.scalar_type
        self.device = matrix.device

    def matvec(self, x: wp.array, y: wp.array) -> None:
        """$y = A x$."""
        sweep(csr_matvec_kernel, self._inputs(x), self._scratch.address, [self._scratch.table, y])

    def bind(self, x: wp.array, y: wp.array) -> Callable[[], None]:
        """``matvec(x, y)`` recorded for these two arrays: a call without arguments that repeats
        it at a fraction of a launch's cost (see :func:`~.kernels.recorded_sweep`)."""
        return self.bind_dot(x, y, self._scratch)

    def bind_dot(self, x: wp.array, y: wp.array, cell: TableCell) -> Callable[[], None]:
        """As :meth:`bind`, and each call also adds $x \\cdot A x$ to ``cell`` (an entry of a
        float64 scalar table), in the same launch and pass."""
        return recorded_sweep(csr_matvec_kernel, self._inputs(x), cell.address, [cell.table, y])

    def _inputs(self, x: wp.array) -> list[wp.array]:
        """The kernel's arrays, read from the matrix now: ``warp.sparse`` replaces them when
        new entries outgrow them (``bsr_set_from_triplets``)."""
        values = self.matrix.values
        return [x, values.reshape((values.shape[0],)), self.matrix.offsets, self.matrix.columns]

    def storage(self) -> tuple[int, ...]:
        """Where the matrix's arrays are and its entry count: a solver's workspace, whose
        recorded products hold those arrays, serves only while they stay the same."""
        m = self.matrix
        return (m.values.ptr, m.offsets.ptr, m.columns.ptr, m.nnz)

    def diagonal(self) -> wp.array:
        """The diagonal of A, shape (n,)."""
        return wps.bsr_get_diag(self.matrix)

    def transpose(self) -> CsrOperator:
        """$A^T$ as a new operator (a transposed copy of the matrix)."""
        return CsrOperator(wps.bsr_transposed(self.matrix))

    def __reduce__(self) -> tuple:
        return rebuilt, (csr_to_scipy(self.matrix), self.dtype.__name__, str(self.device))

    def __repr__(self) -> str:
        return summary_repr(self, self.shape[0], self.dtype, self.device, nnz=self.matrix.nnz)


def rebuilt(matrix: sp.csr_matrix, dtype: str, device: str, factory: Callable | None = None,
            options: dict[str, Any] | None = None) -> Any:
    """The :class:`CsrOperator` of ``matrix`` (SciPy CSR) in ``dtype`` on ``device``, or
    ``factory(operator, **options)`` (a preconditioner built for it): how an operator, and a
    preconditioner that pickles as the matrix it was built for, are unpickled."""
    operator = CsrOperator(csr_from_scipy(matrix, dtype, device))
    return operator if factory is None else factory(operator, **(options or {}))


class StencilOperator:
    """A matrix-free operator given by a function that writes $A x$.

    Args:
        n: the number of unknowns.
        apply: ``apply(x, y)`` writes $A x$ into ``y`` (Warp arrays of length n).
        dtype: float32 or float64 (a Warp type, NumPy dtype or name).
        device: Warp device (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
        diagonal: the diagonal of A (a Warp array of shape (n,), dtype and device), for the
            Jacobi preconditioner; optional.
    """

    def __init__(
        self,
        n: int,
        apply: Callable[[wp.array, wp.array], None],
        *,
        dtype: type,
        device: Any,
        diagonal: wp.array | None = None,
    ) -> None:
        self.shape = (n, n)
        self.dtype = warp_dtype(dtype)
        self.device = wp.get_device(warp_device(device))
        check_vectors("the operator", n, self.dtype, self.device, diagonal=diagonal)
        self._apply, self._diagonal = apply, diagonal

    def matvec(self, x: wp.array, y: wp.array) -> None:
        """$y = A x$."""
        self._apply(x, y)

    def diagonal(self) -> wp.array:
        """The diagonal given at construction (ValueError if none was given)."""
        if self._diagonal is None:
            raise ValueError("this StencilOperator has no diagonal; pass diagonal=... to build it")
        return self._diagonal

    def __repr__(self) -> str:
        return summary_repr(self, self.shape[0], self.dtype, self.device,
                            diagonal=self._diagonal is not None)


def summary_repr(owner: object, n: int, dtype: Any, device: Any, **more: Any) -> str:
    """The one-line repr of an operator or a preconditioner: its class, the length ``n`` of the
    vectors it takes, ``more`` as ``key=value``, its Warp ``dtype`` and ``device``, e.g.
    ``CsrOperator(n=123, nnz=559, dtype=float64, device='cpu')``."""
    fields = [f"n={n}", *(f"{key}={value!r}" for key, value in more.items()),
              f"dtype={dtype.__name__}", f"device={str(device)!r}"]
    return f"{type(owner).__name__}({', '.join(fields)})"


def csr_from_scipy(matrix: sp.spmatrix | sp.sparray, dtype: Any, device: Any) -> wps.BsrMatrix:
    """A Warp CSR matrix (1×1 blocks) with the entries of a SciPy sparse matrix; ``dtype``
    float32 or float64 (a Warp type, NumPy dtype or name), ``device`` the device that holds it
    (``"cpu"``, ``"cuda:0"``, a ``torch.device`` or a Warp device). Another dtype, a complex
    matrix or a device this machine lacks is refused.

    Duplicates are summed and columns sorted; explicit zeros are kept, so the stored pattern,
    and the order of its ``nnz`` values, is that of ``scipy.sparse.csr_matrix(matrix)`` after
    ``sum_duplicates()``.
    """
    device = warp_device(str(device))  # a clear error for a device this machine lacks
    dtype = warp_dtype(dtype)
    if np.iscomplexobj(getattr(matrix, "data", np.zeros(0))):
        raise ValueError(f"matrix is complex ({matrix.dtype}); the solvers take real float32 or "
                         "float64 matrices (split a complex system into real and imaginary "
                         "blocks)")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int32), np.diff(csr.indptr))
    np_dtype = np.float32 if dtype == wp.float32 else np.float64
    return wps.bsr_from_triplets(
        csr.shape[0],
        csr.shape[1],
        wp.array(rows, dtype=wp.int32, device=device),
        wp.array(csr.indices.astype(np.int32), dtype=wp.int32, device=device),
        wp.array(csr.data.astype(np_dtype), dtype=dtype, device=device),
        prune_numerical_zeros=False,
    )


def check_vectors(owner: str, n: int, dtype: Any, device: Any, **vectors: wp.array | None
                  ) -> None:
    """Refuse a vector (None: absent) that is not a contiguous ``(n,)`` array of ``dtype`` on
    ``device``: kernels take their length from ``owner`` (an operator or a preconditioner), so a
    shorter vector would be read and written past its end."""
    for name, v in vectors.items():
        if v is None:
            continue
        if not isinstance(v, wp.array):
            raise ValueError(f"{name} is a {type(v).__name__}; {owner} needs a Warp array "
                             f"(wp.array(x, dtype=wp.{dtype.__name__}, device={str(device)!r}), "
                             "or wp.from_torch(tensor) for a tensor, without a copy)")
        if v.shape != (n,) or not v.is_contiguous:
            raise ValueError(f"{name} has shape {v.shape} (contiguous: {v.is_contiguous}); "
                             f"{owner} needs a contiguous ({n},) array")
        if v.dtype != dtype or v.device != device:
            raise ValueError(f"{name} is {v.dtype.__name__} on {v.device}; {owner} is "
                             f"{dtype.__name__} on {device}: convert {name} first")


def require_finite(matrix: sp.csr_matrix, needs: str = "a learned factor") -> None:
    """Refuse a matrix with a NaN or Inf entry, naming its row and column (O(nnz)): a factor
    made from it is not a preconditioner of anything (a learned factor's messages spread it;
    an incomplete Cholesky factor divides by it and zeroes an unknown without a word).

    Args:
        matrix: SciPy CSR (A, or the triangle a factor is made from: the rows and columns
            named are A's).
        needs: what needs finite values, for the message.

    Raises:
        ValueError: naming the first non-finite entry in CSR order.
    """
    bad = np.flatnonzero(~np.isfinite(matrix.data))
    if bad.size:
        row = int(np.searchsorted(matrix.indptr, bad[0], side="right")) - 1
        raise ValueError(f"matrix has the non-finite entry {matrix.data[bad[0]]} in row {row} "
                         f"(column {matrix.indices[bad[0]]}); {needs} needs finite "
                         "values: check how A was assembled")


def csr_to_scipy(matrix: wps.BsrMatrix) -> sp.csr_matrix:
    """The ``scipy.sparse.csr_matrix`` (nrow, ncol) of a compact Warp matrix with 1×1 blocks on
    any device, copied to the host in the order of its stored entries; the mesh package's
    :func:`~physml.solvers.mesh.to_scipy` is this function.

    The entry count is read with ``nnz_sync()``: the host's ``matrix.nnz`` is only an upper
    bound after a topology change (an assembly from triplets, a sum), and on a GPU its exact
    value may still be on its way from the device.
    """
    nnz = matrix.nnz_sync()
    return sp.csr_matrix(
        (
            matrix.values.numpy()[:nnz].reshape(nnz),
            matrix.columns.numpy()[:nnz],
            matrix.offsets.numpy()[: matrix.nrow + 1],
        ),
        shape=matrix.shape,
    )
