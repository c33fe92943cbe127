r"""The parameters of a batch of states: the shapes a value may take and their checks, how
the fused stage kernels read each array, and one sample's share of it.

A parameter scaling a term is one value ``(1,)``, one per sample ``(B,)``, or a field
``(1, N)`` or ``(B, N)`` (N = ``grid.size``) multiplying its term cell by cell; a velocity is
one vector ``(ndim,)`` or one per sample ``(B, ndim)``
(:meth:`~physml.solvers.base.GridSolver.batch_parameter_arrays`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import warp as wp

from .checks import require
from .grid import Grid
from .parameters import Parameter, check_representable
from .rk_stages import Coefficient

if TYPE_CHECKING:
    from .base import GridSolver


def batch_shapes(solver: GridSolver, batch: int, shapes: Mapping[str, tuple[int, ...]]
                 ) -> dict[str, tuple[int, ...]]:
    """The shapes :meth:`~physml.solvers.base.GridSolver.batch_parameter_arrays` gives
    values of these shapes, by name (no value is read: the check of names and shapes alone).

    Raises:
        ValueError: an unknown parameter or a shape it does not take.
    """
    table = {p.name: p for p in solver.PARAMETERS}
    unknown = sorted(set(shapes) - set(table))
    require(not unknown, f"unknown parameter(s) {unknown} for {type(solver).__name__}; "
            f"allowed: {', '.join(solver.parameter_names)}")
    out = {}
    for name, shape in shapes.items():
        out[name] = coefficient_shape(table[name], tuple(shape), batch, solver.grid)
        require(table[name].term is not None or len(out[name]) == 1,
                f"{name}: {type(solver).__name__} takes no field of {name}")
        field = len(out[name]) == 2 and not table[name].per_axis
        require(not field or solver.fused, field_refused(solver, name))
    return out


def field_refused(solver: GridSolver, name: str) -> str:
    """The message refusing a field of ``name`` to a solver stepped sample by sample."""
    return (f"{name}: a field of {name} needs an explicit scheme with the fused stages; "
            f"{type(solver).__name__} steps it sample by sample")


def coefficient_shape(parameter: Parameter, shape: tuple[int, ...], batch: int,
                      grid: Grid) -> tuple[int, ...]:
    """The shape :meth:`~physml.solvers.base.GridSolver.batch_parameter_arrays` hands the
    kernels for a value of ``shape`` (checked)."""
    n = grid.size
    if parameter.per_axis:
        shapes = {(grid.ndim,): (grid.ndim,), (batch, grid.ndim): (batch, grid.ndim)}
        if grid.ndim == 1:
            shapes.update({(): (1,), (batch,): (batch, 1)})
        allowed = f"(ndim,) or (B, ndim) = ({grid.ndim},) or ({batch}, {grid.ndim})"
    else:
        shapes = {(): (1,), (1,): (1,), (batch,): (batch,), (batch, *grid.shape): (batch, n),
                  (1, *grid.shape): (1, n)}
        if batch == 1:
            shapes[grid.shape] = (1, n)
        allowed = f"a number, ({batch},) per sample, or a field (B or 1, *{grid.shape})"
    require(shape in shapes, f"{parameter.name} has shape {shape}; allowed: {allowed}")
    return shapes[shape]


def check_values(parameters: tuple[Parameter, ...], name: str, values: np.ndarray,
                 dtype: type) -> None:
    """Check every value of parameter ``name`` of ``parameters`` (any shape, as given, before
    the cast to the solver's NumPy scalar type ``dtype``) against its range and that ``dtype``
    holds it (neither 0 nor infinity there unless it is 0).

    Raises:
        ValueError: the first value outside the range, with what is allowed; else the first
            value ``dtype`` cannot hold, with its index, as
            :func:`~physml.solvers.parameters.check_representable` names it.
    """
    parameter = next(p for p in parameters if p.name == name)
    bad = [float(v) for v in np.ravel(values) if not parameter.admits(float(v))]
    require(not bad, f"{name}={bad[0]!r} must be {parameter.allowed} "
            f"({parameter.meaning} in {parameter.unit})" if bad else "")
    check_representable({name: values}, dtype, indexed=True)


def kernel_coefficient(array: wp.array, per_axis: bool) -> Coefficient:
    """How the stage kernels read a parameter array of a batch (``per_axis``: a velocity)."""
    if array.ndim == 2:
        flat = array.flatten()
        if per_axis:
            return Coefficient(flat, (array.shape[1], 0))
        return Coefficient(flat, (array.shape[1] if array.shape[0] > 1 else 0, 1))
    return Coefficient(array, (0, 0) if per_axis or array.shape[0] == 1 else (1, 0))


def sample_rows(solver: GridSolver, name: str, array: wp.array,
                index: np.ndarray | slice) -> wp.array:
    """The samples ``index`` of a per-sample parameter array (a shared one as it is)."""
    per_sample = array.shape[0] > 1 and (array.ndim == 2 or name != solver.velocity_parameter)
    if not per_sample:
        return array
    if isinstance(index, slice):
        return array[index]
    return wp.array(array.numpy()[index], dtype=array.dtype, device=array.device)


def sample_maxima(solver: GridSolver, arrays: dict[str, wp.array], b: int
                  ) -> dict[str, np.ndarray | float]:
    """Sample ``b``'s largest parameter values, by name (a velocity's largest $|v_d|$ per
    axis): what its stability check needs."""
    values = {}
    for name, array in arrays.items():
        data = sample_rows(solver, name, array, np.array([b])).numpy() if array.shape[0] > 1 else (
            array.numpy())
        if name == solver.velocity_parameter:
            values[name] = np.max(np.abs(data.reshape(-1, solver.grid.ndim)), axis=0)
        else:
            values[name] = np.max(data)
    return values


def sample_parameters(solver: GridSolver, params: dict[str, wp.array], b: int
                      ) -> dict[str, wp.array]:
    """Sample ``b``'s parameter arrays, for a step of that sample alone: ``(1,)`` (a
    velocity: ``(ndim,)``) from one shared or per-sample value.

    Raises:
        ValueError: a field, which only the fused stages read.
    """
    sample = {}
    for name, array in params.items():
        if name == solver.velocity_parameter:
            sample[name] = array if array.ndim == 1 else array[b]
            continue
        require(array.ndim == 1, field_refused(solver, name))
        sample[name] = array if array.shape[0] == 1 else array[b : b + 1]
    return sample
