"""The options every grid solver's constructor passes on to
:class:`~physml.solvers.base.GridSolver`, as one ``TypedDict``: a constructor's
``**options: Unpack[GridOptions]`` gives type checkers and editors their names and types (a
misspelt ``thread=2`` is reported, completion offers them), and ``typing.get_type_hints``
resolves them at run time (``Unpack`` is imported here, from ``typing_extensions`` on Python
3.10)."""

from __future__ import annotations

import sys
from typing import TypedDict

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover (Python 3.10)
    from typing_extensions import Unpack

__all__ = ["GridOptions", "Unpack"]


class GridOptions(TypedDict, total=False):
    """The keyword options of a grid solver after its physical parameters, ``dt`` and
    ``scheme``; each may be left out (its default is :class:`GridSolver`'s). At run time an
    unknown one is refused by ``GridSolver.__init__`` with a ``TypeError``."""

    theta: float
    """Implicitness of the ``scheme="imex"`` diffusion step, in [1/2, 1] (default 0.5,
    Crank–Nicolson; 1: backward Euler); unused by the explicit schemes."""

    device: str
    """``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``."""

    dtype: str
    """``"float64"`` (default) or ``"float32"``."""

    check_every: int
    """Steps between NaN/Inf checks during a rollout (default 50), >= 1."""

    threads: int | None
    """Host threads of the CPU stage kernels, >= 1 (default ``None``: by grid and batch size;
    results do not depend on it)."""
