"""Uniform cell-centred grids and boundary conditions, as plain data.

Where values live (stated once, here): the domain $[a_d, b_d]$ along each axis $d$ is split
into $n_d$ equal cells of width $\\Delta x_d = (b_d - a_d)/n_d$, and the unknowns sit at the
cell centres $x_i = a_d + (i + 1/2)\\,\\Delta x_d$, $i = 0, \\dots, n_d - 1$. Boundaries lie on cell
faces. Boundary conditions are imposed through ghost cells filled from the interior
(:meth:`physml.solvers.grid_layout.GridLayout.pad`):

* periodic:  $u_{-m} = u_{n-m}$;
* Dirichlet $u = g$ on the face:  $u_{-m} = 2g - u_{m-1}$ (odd reflection, second order);
* Neumann $\\partial u/\\partial x_d = q$ on the face (derivative along the axis, not the
  outward normal):  $u_{-m} = u_{m-1} - (2m-1)\\,\\Delta x\\,q$ on the low side and
  $u_{n-1+m} = u_{n-m} + (2m-1)\\,\\Delta x\\,q$ on the high side.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from .parameters import refuse_text_and_bools


class BCKind(enum.IntEnum):
    """Kind of a boundary condition; the integer value is what Warp kernels receive."""

    PERIODIC = 0
    DIRICHLET = 1
    NEUMANN = 2


@dataclass(frozen=True)
class BC:
    """A boundary condition on one side of one axis.

    Args:
        kind: periodic, Dirichlet ($u = $ value) or Neumann ($\\partial_x u = $ value).
        value: the prescribed value (ignored for periodic), in the units of $u$
            (Dirichlet) or of $u$ per metre (Neumann).
    """

    kind: BCKind
    value: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, BCKind):
            object.__setattr__(self, "kind", _bc_kind(self.kind))
        refuse_text_and_bools("BC value", self.value)
        try:
            finite = math.isfinite(self.value)
        except TypeError:
            finite = False
        if not finite:
            raise ValueError(f"BC value={self.value!r} must be a finite number")


def _bc_kind(name: str | BCKind) -> BCKind:
    if isinstance(name, BCKind):
        return name
    try:
        return BCKind[str(name).upper()]
    except KeyError:
        allowed = ", ".join(k.name.lower() for k in BCKind)
        raise ValueError(f"unknown boundary condition kind {name!r}; allowed: {allowed}") from None


@dataclass(frozen=True)
class BoundaryConditions:
    """Boundary conditions of a grid: one ``(low, high)`` pair of :class:`BC` per axis."""

    sides: tuple[tuple[BC, BC], ...]

    def __post_init__(self) -> None:
        for axis, (lo, hi) in enumerate(self.sides):
            if (lo.kind == BCKind.PERIODIC) != (hi.kind == BCKind.PERIODIC):
                raise ValueError(
                    f"bc on axis {axis}: periodic must be set on both sides, got "
                    f"{lo.kind.name.lower()} and {hi.kind.name.lower()}"
                )

    @property
    def ndim(self) -> int:
        return len(self.sides)

    def is_periodic(self, axis: int) -> bool:
        return self.sides[axis][0].kind == BCKind.PERIODIC

    def kinds(self, axis: int) -> tuple[int, int]:
        lo, hi = self.sides[axis]
        return int(lo.kind), int(hi.kind)

    def values(self, axis: int) -> tuple[float, float]:
        lo, hi = self.sides[axis]
        return lo.value, hi.value


def periodic(ndim: int) -> BoundaryConditions:
    """Periodic boundaries on every axis."""
    return boundary_conditions(BCKind.PERIODIC, ndim)


def dirichlet(ndim: int, value: float = 0.0) -> BoundaryConditions:
    """The same Dirichlet value on every side."""
    return boundary_conditions(BCKind.DIRICHLET, ndim, value)


def neumann(ndim: int, value: float = 0.0) -> BoundaryConditions:
    """The same Neumann derivative on every side (0: no flux)."""
    return boundary_conditions(BCKind.NEUMANN, ndim, value)


def boundary_conditions(kind: str | BCKind, ndim: int, value: float = 0.0) -> BoundaryConditions:
    """The same kind of condition on every side, by name ("periodic", "dirichlet", "neumann")."""
    kind = _bc_kind(kind)
    side = BC(kind, value)
    return BoundaryConditions(((side, side),) * ndim)


def _cell_count(axis: int, n: object) -> int:
    """The number of cells ``n`` along ``axis`` as an int >= 1; a ValueError for a fraction,
    NaN, a string or a count below 1 (never rounded)."""
    n = n.item() if isinstance(n, np.generic) else n
    whole = (isinstance(n, int) and not isinstance(n, bool)) or (
        isinstance(n, float) and n.is_integer()
    )
    if not whole or n < 1:
        raise ValueError(f"grid shape[{axis}]={n!r} must be a whole number of cells >= 1")
    return int(n)


def _coordinates(name: str, values: object) -> tuple[float, ...]:
    """``values`` (one number per axis) as floats; a ValueError names ``name`` for anything
    else (None, text, a bool)."""
    refuse_text_and_bools(f"grid {name}", values)
    try:
        return tuple(float(v) for v in np.atleast_1d(values))
    except (TypeError, ValueError):
        raise ValueError(f"grid {name}={values!r} must give one coordinate [m] per axis, "
                         "e.g. (0.0,) or (0.0, 0.0)") from None


@dataclass(frozen=True)
class Grid:
    """A uniform cell-centred grid in 1, 2 or 3 dimensions.

    Args:
        shape: number of cells per axis, e.g. ``(nx,)`` or ``(nx, ny)``: whole numbers >= 1
            (``8.0`` is taken as 8; ``8.5`` is refused, never rounded).
        lower: coordinates of the low faces [m].
        upper: coordinates of the high faces [m], each greater than its ``lower``.

    Fields are arrays of shape ``shape``, axis 0 being $x$.
    """

    shape: tuple[int, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        counts = self.shape if isinstance(self.shape, tuple | list) else np.atleast_1d(self.shape)
        shape = tuple(_cell_count(axis, n) for axis, n in enumerate(counts))
        lower, upper = _coordinates("lower", self.lower), _coordinates("upper", self.upper)
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"grid shape={shape} must have 1, 2 or 3 axes")
        if not len(shape) == len(lower) == len(upper):
            raise ValueError(
                f"grid shape={shape}, lower={lower}, upper={upper} must have the same length"
            )
        for axis, (a, b) in enumerate(zip(lower, upper)):
            if not (np.isfinite(a) and np.isfinite(b) and b > a):
                raise ValueError(f"grid axis {axis}: upper={b} must be greater than lower={a}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dx(self) -> tuple[float, ...]:
        """Cell widths per axis [m]."""
        return tuple((b - a) / n for n, a, b in zip(self.shape, self.lower, self.upper))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def coords(self, axis: int) -> np.ndarray:
        """Cell-centre coordinates along ``axis``, shape ``(shape[axis],)``, float64."""
        n, a, dx = self.shape[axis], self.lower[axis], self.dx[axis]
        return a + (np.arange(n) + 0.5) * dx

    def mesh(self) -> tuple[np.ndarray, ...]:
        """Cell-centre coordinates broadcast to ``shape`` (``indexing="ij"``)."""
        return tuple(np.meshgrid(*(self.coords(d) for d in range(self.ndim)), indexing="ij"))
