r"""Physical parameters of the grid PDEs, declared as data: name, unit, meaning, range, term.

A grid solver lists its parameters once, as a tuple of :class:`Parameter` (its
``PARAMETERS``). Everything else is derived from that tuple: the solver's attributes and
``parameter_names``, which parameter scales which term of
$F(u) = -\sum_d \partial_d f_d(u) + \nu\,\Delta u + \rho\, r(u)$ (and so the stability
rates), the checks made when a solver is built or given new values (also on the PyTorch path,
:func:`physml.bridge.rollout`), and the ``physml solve`` flags.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


class Term(enum.Enum):
    """The term of the convection–diffusion–reaction operator a parameter scales."""

    DIFFUSION = "diffusion"  # nu in nu Laplacian(u)
    ADVECTION = "advection"  # the velocity a_d of a linear flux f_d = a_d u
    REACTION = "reaction"  # rho in rho r(u)


@dataclass(frozen=True)
class Parameter:
    """A physical parameter and the interval it must lie in.

    Attributes:
        name: keyword, attribute and command-line name (``nu`` gives ``--nu``).
        unit: SI unit as text ("m^2/s", "1/s"; "1" for dimensionless).
        meaning: a few words ("viscosity").
        lower, upper: bounds of the allowed interval (the value is always finite).
        lower_open, upper_open: whether the bound itself is excluded.
        per_axis: a vector with one entry per grid axis (a velocity), else a number.
        term: the operator term it scales, or None (a solver with its own ``rhs``).
    """

    name: str
    unit: str
    meaning: str
    lower: float = -math.inf
    upper: float = math.inf
    lower_open: bool = False
    upper_open: bool = False
    per_axis: bool = False
    term: Term | None = None

    @property
    def allowed(self) -> str:
        """The allowed values in words: ">= 0 and finite", "in (0, 1]", "finite"."""
        low, high = math.isfinite(self.lower), math.isfinite(self.upper)
        if low and high:
            return (
                f"in {'(' if self.lower_open else '['}{self.lower:g}, "
                f"{self.upper:g}{')' if self.upper_open else ']'}"
            )
        if low:
            return f"{'>' if self.lower_open else '>='} {self.lower:g} and finite"
        if high:
            return f"{'<' if self.upper_open else '<='} {self.upper:g} and finite"
        return "finite"

    def admits(self, v: float) -> bool:
        """Whether the number ``v`` is finite and inside the interval."""
        above = v > self.lower if self.lower_open else v >= self.lower
        below = v < self.upper if self.upper_open else v <= self.upper
        return math.isfinite(v) and above and below

    def check(self, value: Any, ndim: int) -> float | tuple[float, ...]:
        """``value`` as a float (a tuple of ``ndim`` floats if ``per_axis``).

        Raises:
            ValueError: naming the parameter, the value, the allowed range and the unit (also
                for None, and for text or a bool: :func:`refuse_text_and_bools`).
        """
        if value is None:
            raise ValueError(f"{self.name}=None: give a number ({self.meaning} in {self.unit})")
        refuse_text_and_bools(self.name, value)
        given = np.asarray(value, dtype=np.float64)
        flat = np.atleast_1d(given).ravel()
        size = ndim if self.per_axis else 1
        shown = _show(given)
        if flat.size != size:
            count = f"one entry per grid axis ({ndim})" if self.per_axis else "a single number"
            raise ValueError(f"{self.name}={shown} must be {count} ({self.meaning} in {self.unit})")
        if not all(self.admits(float(v)) for v in flat):
            raise ValueError(
                f"{self.name}={shown} must be {self.allowed} ({self.meaning} in {self.unit})"
            )
        return tuple(float(v) for v in flat) if self.per_axis else float(flat[0])


def refuse_text_and_bools(name: str, value: Any) -> None:
    """Refuse text and booleans as the value of parameter ``name`` (alone, at any depth of
    lists and tuples, or in an array: NumPy's, an object array's items, PyTorch's), which
    NumPy would read as numbers ("0.01" as 0.01, True as 1): a number written as text in a
    configuration, or a flag passed for a value, is a mistake to report.

    Raises:
        ValueError: naming ``name`` and the value.
    """
    for leaf in _leaves(value):
        dtype = getattr(leaf, "dtype", None)
        kind = getattr(dtype, "kind", None) or ("b" if str(dtype) == "torch.bool" else "")
        if isinstance(leaf, str | bytes) or kind in ("U", "S"):
            raise ValueError(f"{name}={value!r} must be a number, not text")
        if isinstance(leaf, bool) or kind == "b":
            raise ValueError(f"{name}={value!r} must be a number, not a bool")


def _leaves(value: Any) -> Iterator[Any]:
    """The items of ``value`` through lists, tuples and object arrays; any other array whole."""
    if isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, np.ndarray) and value.dtype.kind == "O":
        for item in value.ravel():
            yield from _leaves(item)
    else:
        yield value


def check_parameters(
    table: tuple[Parameter, ...], values: Mapping[str, Any], ndim: int
) -> dict[str, float | tuple[float, ...]]:
    """Check the values of ``table``'s parameters (all of them, by name) for an ``ndim``-D grid.

    The one check behind a solver's constructor, its ``with_parameters`` and the PyTorch
    bridge. Returns the values as floats (tuples for per-axis parameters).

    Raises:
        ValueError: a parameter is missing, unknown, or outside its range.
    """
    names = [p.name for p in table]
    unknown = sorted(set(values) - set(names))
    missing = [n for n in names if n not in values]
    if unknown or missing:
        problem = f"unknown parameter(s) {unknown}" if unknown else f"missing {missing}"
        raise ValueError(f"{problem}; the parameters are: {', '.join(names)}")
    return {p.name: p.check(values[p.name], ndim) for p in table}


def check_parameter_set(table: tuple[Parameter, ...], name: str, value: Any, ndim: int,
                        dtype: type) -> float | tuple[float, ...]:
    """``table``'s parameter ``name`` set alone on a built solver of an ``ndim``-D grid and
    NumPy ``dtype``, checked as its constructor checks it (:meth:`Parameter.check`, then
    :func:`check_representable`) and kept as the constructor keeps it.

    Raises:
        ValueError: naming the parameter, the value and what is allowed.
    """
    (parameter,) = (p for p in table if p.name == name)
    checked = parameter.check(value, ndim)
    check_representable({name: checked}, dtype)
    return checked


def check_representable(values: Mapping[str, Any], dtype: type, *, indexed: bool = False
                        ) -> None:
    """Refuse a parameter value or time step that the solver's ``dtype`` rounds to 0 or to
    infinity (its kernels read them in that dtype: a checked value would reach them as another).

    Args:
        values: numbers, tuples or arrays (any shape), by name; checked as given, before any
            cast to ``dtype``.
        dtype: the NumPy scalar type of the solver (``np.float32``, ``np.float64``).
        indexed: name the entry of an array in the message (``nu[1]=1e-50 ...``).

    Raises:
        ValueError: naming the value (and its index), what the dtype makes of it and the cure.
    """
    for name, value in values.items():
        given = np.asarray(value, dtype=np.float64)
        with np.errstate(over="ignore", under="ignore"):
            rounded = given.astype(dtype)
        lost = np.flatnonzero((given != 0) & ((rounded == 0) | ~np.isfinite(rounded)))
        if lost.size:
            at = np.unravel_index(lost[0], given.shape)
            where = f"[{', '.join(str(int(i)) for i in at)}]" if indexed and at else ""
            raise ValueError(f"{name}{where}={given[at]:g} is {rounded[at]} in "
                             f"{np.dtype(dtype).name}, the solver's dtype; pass dtype='float64'")


def _show(values: np.ndarray, most: int = 6) -> str:
    """``values`` as text: a number, up to ``most`` entries, or past that the first three,
    the last, the shape and the count (a field is not printed whole)."""
    flat = values.ravel()
    if flat.size == 1:
        return repr(float(flat[0]))
    if flat.size <= most:
        return "(" + ", ".join(repr(float(v)) for v in flat) + ")"
    head = ", ".join(repr(float(v)) for v in flat[:3])
    return f"({head}, ..., {float(flat[-1])!r}) (shape {values.shape}, {flat.size} values)"
