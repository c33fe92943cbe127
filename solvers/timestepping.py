r"""Explicit Runge–Kutta schemes as Butcher tableaus, and one generic driver.

A scheme advances $u' = F(u)$ by
$k_i = F(u + \Delta t \sum_{j<i} a_{ij} k_j)$, $u^{n+1} = u^n + \Delta t \sum_i b_i k_i$.
Each tableau carries its order and its linear stability limits: the extent of the stability
region along the negative real axis (diffusion, $|\lambda|\Delta t \le$ ``real_limit``) and along
the imaginary axis (central advection, $|\lambda|\Delta t \le$ ``imag_limit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import warp as wp

from .field_arithmetic import axpy


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta scheme.

    Args:
        name: the name used in case files.
        a: strictly lower-triangular stage matrix, one row per stage.
        b: weights, summing to 1.
        c: nodes, ``c_i = sum_j a_ij``.
        order: order of accuracy.
        real_limit: stability limit on the negative real axis.
        imag_limit: stability limit on the imaginary axis (0: none).
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    real_limit: float
    imag_limit: float

    def __post_init__(self) -> None:
        s = len(self.b)
        if len(self.a) != s or len(self.c) != s:
            raise ValueError(f"tableau {self.name}: a, b, c must have {s} stages")
        if not np.isclose(sum(self.b), 1.0):
            raise ValueError(f"tableau {self.name}: weights b sum to {sum(self.b)}, not 1")
        for i, row in enumerate(self.a):
            if len(row) > i:
                raise ValueError(f"tableau {self.name}: row {i} of a must have at most {i} entries")
            if not np.isclose(sum(row), self.c[i]):
                raise ValueError(f"tableau {self.name}: row {i} of a sums to {sum(row)}, not c")

    @property
    def stages(self) -> int:
        return len(self.b)


SCHEMES: dict[str, Tableau] = {
    "euler": Tableau("euler", ((),), (1.0,), (0.0,), 1, 2.0, 0.0),
    "heun": Tableau("heun", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 2, 2.0, 0.0),
    "ssp_rk3": Tableau(
        "ssp_rk3",
        ((), (1.0,), (0.25, 0.25)),
        (1 / 6, 1 / 6, 2 / 3),
        (0.0, 1.0, 0.5),
        3,
        2.5127,
        np.sqrt(3.0),
    ),
    "rk4": Tableau(
        "rk4",
        ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
        (0.0, 0.5, 0.5, 1.0),
        4,
        2.7852935,  # 2.78529356... rounded down: |R| <= 1 there
        2.0 * np.sqrt(2.0),
    ),
}
"""Explicit schemes by case-file name."""


def tableau(name: str) -> Tableau:
    """The tableau called ``name``, with a clear error for an unknown one."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"unknown scheme {name!r}; allowed: {', '.join(SCHEMES)} (or 'imex' where supported)"
        ) from None


def explicit_rk_step(
    rhs: Callable[[wp.array], wp.array], u: wp.array, dt: float, scheme: Tableau
) -> wp.array:
    """One step of ``scheme`` for $u' = $ ``rhs(u)``; returns a new array, ``u`` untouched.

    Every intermediate is a fresh array, so the step can be recorded on a ``wp.Tape``.
    Cost: ``scheme.stages`` calls of ``rhs`` plus one fused-multiply-add per nonzero coefficient.
    """
    ks: list[wp.array] = []
    for i in range(scheme.stages):
        stage = u
        for j, aij in enumerate(scheme.a[i]):
            if aij != 0.0:
                stage = axpy(stage, ks[j], dt * aij)
        ks.append(rhs(stage))
    out = u
    for bi, k in zip(scheme.b, ks):
        out = axpy(out, k, dt * bi)
    return out
