r"""The device table of a Krylov solve's scalars, and the cursor that says which row is current.

A solve runs in blocks of k iterations and keeps its scalars (squared residual norms, the dot
products of the step lengths) in a float64 table ``s`` of shape ``(k + 1, columns)`` on the
device: row 0 holds those at the start of the block, row j + 1 those after local iteration j.
The current local iteration j lives on the device too, in a one-entry int32 *cursor*; every
kernel of an iteration reads it (``j = cursor[0] + shift``), so the launches of one iteration
are the same for every j: a solve records them once and replays them each iteration. After each
iteration a one-thread launch advances the cursor; after each block another copies the last
filled row into row 0, zeroes the rest and rewinds the cursor. The host reads the table once per
block. None of this needs a host synchronisation inside a block, on the CPU or on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import warp as wp

from ..replay import Replay
from .kernels import advance_kernel, roll_kernel


@dataclass(frozen=True)
class TableCell:
    """The entry ``table[cursor[0] + shift, col]`` that a fused kernel adds a dot product to.

    ``address`` is the kernel arguments that name it (``cursor, shift, col``, before ``table``
    among the outputs), the form every kernel with a fused reduction takes
    (:mod:`~physml.solvers.linalg.kernels`, :mod:`~physml.solvers.linalg.cg_kernels`,
    :mod:`~physml.solvers.linalg.bicgstab_kernels`).
    """

    table: wp.array
    cursor: wp.array
    shift: int
    col: int

    @property
    def address(self) -> list[Any]:
        return [self.cursor, self.shift, self.col]


def scratch_cell(device: Any) -> TableCell:
    """A cell nobody reads: where a plain product or apply puts the dot product its kernel
    computes anyway (a (1, 1) table and a zero cursor of its own)."""
    return TableCell(wp.zeros((1, 1), dtype=wp.float64, device=device),
                     wp.zeros(1, dtype=wp.int32, device=device), 0, 0)


class ScalarTable:
    """The table ``s`` (``rows = k + 1`` by ``columns``, float64, zeros), its cursor (0) and
    ``limit``, the one-entry float64 array of the squared absolute tolerance the kernels read.

    Args:
        rows: k + 1 for blocks of k iterations.
        columns: the scalars a solver keeps per iteration.
        device: Warp device.
    """

    def __init__(self, rows: int, columns: int, device: Any) -> None:
        self.s = wp.zeros((rows, columns), dtype=wp.float64, device=device)
        self.cursor = wp.zeros(1, dtype=wp.int32, device=device)
        self.limit = wp.zeros(1, dtype=wp.float64, device=device)
        self._host = self.s.numpy() if self.s.device.is_cpu else None  # a view on the CPU
        self.advance: Callable[[], None] = self._recorded(advance_kernel, [self.cursor])
        """Move the cursor to the next local iteration (a replayed one-thread launch)."""
        self.roll: Callable[[], None] = self._recorded(roll_kernel, [self.cursor, self.s])
        """Start a new block: row 0 = the row of the cursor, other rows 0, cursor 0."""

    def reset(self) -> None:
        """Zeros in the table, the cursor and the limit: the state of a new table."""
        self.s.zero_()
        self.cursor.zero_()
        self.limit.zero_()

    def set_limit(self, tol2: float) -> None:
        """``limit[0] = tol2``."""
        self.limit.fill_(tol2)

    def cell(self, shift: int, col: int) -> TableCell:
        """``s[j + shift, col]`` for the current local iteration j."""
        return TableCell(self.s, self.cursor, shift, col)

    @property
    def live(self) -> np.ndarray | None:
        """On the CPU, the table itself as a NumPy view (what the kernels last wrote, read without
        a copy or a launch); None on other devices."""
        return self._host

    def read(self) -> np.ndarray:
        """The table on the host, shape (rows, columns) (a view on the CPU, else a copy)."""
        return self._host if self._host is not None else self.s.numpy()

    def _recorded(self, kernel: wp.Kernel, outputs: list[wp.array]) -> Callable[[], None]:
        return Replay(wp.launch(kernel, dim=1, outputs=outputs, device=self.s.device,
                                record_tape=False, record_cmd=True))
