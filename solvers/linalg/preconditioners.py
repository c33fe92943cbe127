r"""Preconditioners $z = M^{-1} r$ behind one protocol.

A :class:`Preconditioner` is an object with a ``name`` and ``apply(r, z)``, which writes
$z = M^{-1} r$ into the Warp array ``z`` (``r`` untouched). Building one is its set-up: each
class here is constructed from the :class:`~physml.solvers.linalg.LinearOperator` it
preconditions, ``Jacobi(A)``, so a class is also a factory ``A -> Preconditioner``, the form that
solvers taking a preconditioner accept and that :data:`PRECONDITIONERS` lists by name:
Jacobi, IC(0) (:mod:`.incomplete_cholesky`), FSAI (:mod:`.sparse_inverse`) and pyamg's AMG.
A learned preconditioner (``physml.preconditioners``) is such a factory too. For CG, $M$ must
be symmetric positive definite. Like an operator, a preconditioner may offer ``bind(r, z)``, a
cheaper repeatable ``apply(r, z)`` on two fixed arrays, and ``bind_dot(r, z, cell)``, the same
that also adds $r \\cdot z$ to a :class:`~.scalar_table.TableCell`; the solvers use them where
they exist. A diagonal preconditioner exposes its ``inverse_diagonal`` (:class:`Jacobi`), which
CG applies inside its vector update instead of in a pass of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pyamg
import scipy.sparse as sp
import warp as wp

from ..host_threads import ForkSafeLock
from .incomplete_cholesky import IncompleteCholesky, assembled_matrix
from .kernels import diagonal_scale_kernel, reciprocal_kernel, recorded_sweep, sweep
from .linear_operator import (
    LinearOperator,
    check_vectors,
    csr_to_scipy,
    rebuilt,
    summary_repr,
)
from .scalar_table import TableCell, scratch_cell
from .sparse_inverse import FactorizedSparseInverse


@runtime_checkable
class Preconditioner(Protocol):
    """$z = M^{-1} r$ on Warp vectors of the operator's length, dtype and device. The
    preconditioners here also give ``built_for``, (n, dtype, device) of the matrix they were
    built for, which the solvers compare with A's before they start."""

    @property
    def name(self) -> str:
        """What the preconditioner is called in messages and results (``"jacobi"``)."""
        ...

    def apply(self, r: wp.array, z: wp.array) -> None:
        """Write $M^{-1} r$ into ``z`` (``r`` untouched; ``r`` and ``z`` distinct)."""
        ...


class Jacobi:
    """$M = \\operatorname{diag}(A)$: $z_i = r_i / A_{ii}$, one Warp kernel, O(n) per apply.

    Args:
        A: an operator with ``diagonal()`` (a :class:`CsrOperator`, or a
            :class:`StencilOperator` given its diagonal); no diagonal entry may be zero.

    It pickles as the diagonal of A, and is rebuilt from it on the same device.
    """

    name = "jacobi"

    def __init__(self, A: LinearOperator) -> None:
        if not (isinstance(A, LinearOperator) and callable(getattr(A, "diagonal", None))):
            what = "without diagonal()" if isinstance(A, LinearOperator) else "(not an operator)"
            raise ValueError(
                f"Jacobi ({self.name!r}) needs the operator's diagonal, got a "
                f"{type(A).__name__} {what}: pass a CsrOperator "
                "(CsrOperator(csr_from_scipy(matrix, wp.float64, device)) makes one from a SciPy "
                "matrix), or a StencilOperator built with diagonal=...")
        diagonal = A.diagonal()
        zero = np.flatnonzero(diagonal.numpy() == 0)
        if zero.size:
            raise ValueError(
                f"A has zero diagonal entries in rows {zero[:10].tolist()}; "
                "Jacobi needs a nonzero diagonal (use an AMG preconditioner instead)"
            )
        self._diagonal = diagonal  # what it pickles as
        self.inverse_diagonal = wp.empty_like(diagonal)
        self._scratch = scratch_cell(diagonal.device)  # takes the unread r · z
        sweep(reciprocal_kernel, [diagonal], [], [self.inverse_diagonal])

    def apply(self, r: wp.array, z: wp.array) -> None:
        """$z = D^{-1} r$."""
        self._check(r, z)
        sweep(diagonal_scale_kernel, [self.inverse_diagonal, r], self._scratch.address,
              [self._scratch.table, z])

    def bind(self, r: wp.array, z: wp.array) -> Callable[[], None]:
        """``apply(r, z)`` recorded for these two arrays (a replayed launch, as
        :meth:`CsrOperator.bind <physml.solvers.linalg.CsrOperator.bind>`)."""
        return self.bind_dot(r, z, self._scratch)

    def bind_dot(self, r: wp.array, z: wp.array, cell: TableCell) -> Callable[[], None]:
        """As :meth:`bind`, and each call also adds $r \\cdot z$ to ``cell``."""
        self._check(r, z)
        return recorded_sweep(diagonal_scale_kernel, [self.inverse_diagonal, r], cell.address,
                              [cell.table, z])


    @property
    def built_for(self) -> tuple[int, Any, Any]:
        """(n, dtype, device) of the matrix this preconditioner was built for: the vectors it
        takes (checked at each apply, and by the solvers up front)."""
        d = self.inverse_diagonal
        return d.shape[0], d.dtype, d.device

    def _check(self, r: wp.array, z: wp.array) -> None:
        check_vectors("the jacobi preconditioner", *self.built_for, r=r, z=z)

    def __reduce__(self) -> tuple:
        d = self._diagonal
        return rebuilt, (sp.diags(d.numpy(), format="csr"), d.dtype.__name__, str(d.device),
                         Jacobi)

    def __repr__(self) -> str:
        return summary_repr(self, *self.built_for)


_GLOBAL_GENERATOR = ForkSafeLock()
"""Held while a pyamg build has NumPy's global generator seeded (:class:`_PyAMGPreconditioner`)."""

_saved_state: tuple | None = None
"""The global generator's state that the build holding :data:`_GLOBAL_GENERATOR` restores after
it (None while no build holds it): what a child forked during the build gets back."""


def _restore_in_child() -> None:
    """In a forked child: back to the caller's global generator state where the fork came
    during a pyamg build (the child lacks the building thread, which would restore it)."""
    global _saved_state
    if _saved_state is not None:
        np.random.set_state(_saved_state)  # noqa: NPY002
        _saved_state = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restore_in_child)


class _PyAMGPreconditioner:
    """One V-cycle of a pyamg hierarchy, built on the host from the CSR matrix of ``A``.

    pyamg runs on the CPU with SciPy: on a CUDA device every apply copies r to the host and z
    back (two transfers and a synchronisation per apply). Build cost: the hierarchy set-up,
    roughly a few matrix products of A; apply: O(nnz) per V-cycle.

    The set-up is deterministic: pyamg draws the start vectors of its spectral-radius estimates
    from NumPy's global generator (it takes no generator of its own), which is seeded for the
    build and restored after it, so one matrix always gets the same hierarchy and a solve
    repeated (a backward called twice) gives the same bits. Builds in several threads take
    turns (one lock for the seed, the build and the restore), so each gets that hierarchy and
    the caller's global state is restored after them; another thread that draws from the
    global generator during a build draws from the seeded state, and a child that it forks
    then starts from the caller's state.

    Args:
        A: a :class:`CsrOperator` (anything with a ``matrix`` in Warp CSR form).
        **options: passed to the pyamg solver constructor (e.g. ``strength``, ``max_levels``).

    It pickles as the SciPy matrix it was built for, its options and the finest level's
    smoother given to :meth:`smooth_finest_level` (which must pickle too), and is rebuilt from
    them on the same device: the same hierarchy.
    """

    name: ClassVar[str]
    build: ClassVar[Callable[..., Any]]

    def __init__(self, A: LinearOperator, **options: Any) -> None:
        global _saved_state
        matrix = assembled_matrix(A, self)
        with _GLOBAL_GENERATOR:
            _saved_state = np.random.get_state()  # noqa: NPY002 (pyamg draws from the global one)
            np.random.seed(0)  # noqa: NPY002
            try:
                self.hierarchy = type(self).build(csr_to_scipy(matrix), **options)
            finally:
                np.random.set_state(_saved_state)  # noqa: NPY002
                _saved_state = None
        self.cycle = self.hierarchy.aspreconditioner(cycle="V")
        self.dtype, self.device = matrix.scalar_type, matrix.device
        self._options, self._smoother = options, None  # what it pickles as, with the matrix

    @property
    def built_for(self) -> tuple[int, Any, Any]:
        """(n, dtype, device) of the matrix this preconditioner was built for: the vectors it
        takes (checked at each apply, and by the solvers up front)."""
        return self.hierarchy.levels[0].A.shape[0], self.dtype, self.device

    def smooth_finest_level(self, smoother: Callable[[Any, np.ndarray, np.ndarray], None]
                            ) -> None:
        """Use ``smoother(A, x, b)`` (SciPy A; updates x in place towards $A x = b$) as the
        finest level's pre- and post-smoother in place of pyamg's; for CG it must be
        symmetric and convergent in the A-norm, so that the V-cycle stays SPD."""
        # pyamg's change_smoothers takes only the names of its own smoothers; a level's
        # smoothers are attributes its V-cycle calls as smoother(A, x, b) at every cycle
        # (pyamg 5.4, MultilevelSolver.__solve), so a callable is assigned to them directly
        finest = self.hierarchy.levels[0]
        finest.presmoother = finest.postsmoother = self._smoother = smoother

    def apply(self, r: wp.array, z: wp.array) -> None:
        """$z = $ one V-cycle applied to r (on the host; on the CPU into z's own memory)."""
        check_vectors(f"the {self.name} preconditioner", *self.built_for, r=r, z=z)
        host = r.numpy()
        cycled = self.cycle @ host
        if z.device.is_cpu:
            z.numpy()[...] = cycled  # a view of z: no temporary device array
        else:
            z.assign(cycled.astype(host.dtype, copy=False))

    def __reduce__(self) -> tuple:
        return _rebuilt_amg, (type(self), self.hierarchy.levels[0].A, self.dtype.__name__,
                              str(self.device), self._options, self._smoother)

    def __repr__(self) -> str:
        """Also the number of levels of the hierarchy and the options given to pyamg."""
        return summary_repr(self, *self.built_for, levels=len(self.hierarchy.levels),
                            **self._options)


def _rebuilt_amg(cls: type, matrix: Any, dtype: str, device: str, options: dict[str, Any],
                 smoother: Callable | None) -> _PyAMGPreconditioner:
    """An unpickled pyamg preconditioner (:meth:`_PyAMGPreconditioner.__reduce__`)."""
    amg = rebuilt(matrix, dtype, device, cls, options)
    if smoother is not None:
        amg.smooth_finest_level(smoother)
    return amg


class SmoothedAggregationAMG(_PyAMGPreconditioner):
    """Smoothed-aggregation AMG (``pyamg.smoothed_aggregation_solver``), one V-cycle, built for
    ``A`` (a :class:`CsrOperator`); ``**options`` go to that pyamg constructor."""

    name = "amg_sa"
    build = staticmethod(pyamg.smoothed_aggregation_solver)


class RugeStubenAMG(_PyAMGPreconditioner):
    """Classical Ruge–Stüben AMG (``pyamg.ruge_stuben_solver``), one V-cycle, built for ``A``
    (a :class:`CsrOperator`); ``**options`` go to that pyamg constructor."""

    name = "amg_rs"
    build = staticmethod(pyamg.ruge_stuben_solver)


PRECONDITIONERS: dict[str, Callable[[LinearOperator], Preconditioner]] = {
    cls.name: cls
    for cls in (Jacobi, IncompleteCholesky, FactorizedSparseInverse, SmoothedAggregationAMG,
                RugeStubenAMG)
}
"""Preconditioner factories by the name case files use."""
