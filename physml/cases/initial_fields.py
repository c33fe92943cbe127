"""Initial fields a case file can name: a variable of an xarray/HDF5 file, or an expression in
the cell-centre coordinates.

* :func:`read_field`: ``variable`` of ``path`` (netCDF4-flavoured HDF5 as xarray writes it, or
  plain HDF5 datasets), shape ``grid.shape``. Named dimensions must be the grid's axes ``x``,
  ``y``, ``z`` in any order (the field is transposed to that order), plus an optional ``time``
  (a run's ``trajectory.h5``) indexed by ``time_index``; a plain HDF5 dataset's unnamed axes
  are taken as ``x``, ``y``, ``z`` in order.
* :func:`check_expression` / :func:`evaluate_expression`: arithmetic on numbers, the
  coordinates ``x``, ``y``, ``z``, the constants ``pi`` and ``e`` and the NumPy functions in
  :data:`FUNCTIONS`, e.g. ``0.5 + 0.01*cos(0.105*x)*cos(0.11*y)``; nothing else is evaluated.

Errors are ``ValueError`` naming the file and variable, or the expression and the offending
name, so a case file's validation reports them as the key's problem.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path

import numpy as np
import xarray as xr

FUNCTIONS = {name: getattr(np, name) for name in (
    "sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sinh", "cosh", "arctan", "abs",
    "minimum", "maximum", "where")}
"""Functions an expression may call (NumPy's, elementwise)."""

ARITY = {"minimum": 2, "maximum": 2, "where": 3}
"""Arguments of the functions that take more than one."""

CONSTANTS = {"pi": np.pi, "e": np.e}
COORDINATES = ("x", "y", "z")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Lt: operator.lt,
           ast.Gt: operator.gt, ast.LtE: operator.le, ast.GtE: operator.ge}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def check_expression(text: str, ndim: int) -> ast.Expression:
    """Parse ``text``; ValueError naming the first construct or name it may not use (only the
    first ``ndim`` coordinates are defined)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"expression {text!r} is not valid: {err.msg}") from None
    names = {**CONSTANTS, **dict.fromkeys(COORDINATES[:ndim])}
    called = {id(n.func) for n in ast.walk(tree.body) if isinstance(n, ast.Call)}
    for node in ast.walk(tree.body):
        if isinstance(node, ast.Name):
            if id(node) in called:
                continue  # checked with its call
            if node.id in FUNCTIONS:
                raise ValueError(f"expression {text!r}: function {node.id!r} is not called "
                                 f"(write {node.id}(...))")
            if node.id not in names:
                raise ValueError(f"expression {text!r}: unknown name {node.id!r}; allowed: "
                                 f"{', '.join([*names, *FUNCTIONS])}")
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                    and not node.keywords):
                raise ValueError(f"expression {text!r}: only calls of "
                                 f"{', '.join(FUNCTIONS)} are allowed")
            wanted = ARITY.get(node.func.id, 1)
            if len(node.args) != wanted:
                raise ValueError(f"expression {text!r}: {node.func.id} takes {wanted} "
                                 f"argument(s), got {len(node.args)}")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise ValueError(f"expression {text!r}: constant {node.value!r} is not a number")
        elif isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _BINARY:
                raise ValueError(f"expression {text!r}: only single comparisons < > <= >=")
        elif not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Load, *_BINARY, *_UNARY)):
            raise ValueError(f"expression {text!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
            raise ValueError(f"expression {text!r}: operator {type(node.op).__name__} is not "
                             "allowed")
        if isinstance(node, ast.UnaryOp) and type(node.op) not in _UNARY:
            raise ValueError(f"expression {text!r}: operator {type(node.op).__name__} is not "
                             "allowed")
    return tree


def evaluate_expression(text: str, coordinates: list[np.ndarray]) -> np.ndarray:
    """``text`` evaluated on the cell-centre coordinate arrays ``coordinates`` (``x``, ``y``,
    ``z`` in that order, each of the grid's shape); returns an array of that shape. ValueError
    if a value is not finite."""
    values = {**CONSTANTS, **FUNCTIONS, **dict(zip(COORDINATES, coordinates))}

    def walk(node: ast.AST):
        if isinstance(node, ast.Constant):  # a float: integer powers are never exact bignums
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Compare):
            return _BINARY[type(node.ops[0])](walk(node.left), walk(node.comparators[0]))
        return values[node.func.id](*(walk(arg) for arg in node.args))

    shape = coordinates[0].shape
    with np.errstate(all="ignore"):
        try:
            value = walk(check_expression(text, len(coordinates)).body)
        except (OverflowError, ZeroDivisionError) as err:
            raise ValueError(f"expression {text!r} has no finite value ({err})") from None
        field = np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()
    if not np.all(np.isfinite(field)):
        raise ValueError(f"expression {text!r} is not finite everywhere on the grid")
    return field


def _open(path: Path) -> xr.Dataset:
    if not path.is_file():
        raise ValueError(f"initial field file {str(path)!r} does not exist")
    try:
        return xr.open_dataset(path, engine="h5netcdf", phony_dims="sort")
    except (OSError, ValueError) as err:
        raise ValueError(f"initial field file {str(path)!r} is not an HDF5/netCDF4 file "
                         f"xarray can read: {err}") from None


def _field_array(ds: xr.Dataset, path: Path, variable: str, shape: tuple[int, ...],
                 time_index: int) -> xr.DataArray:
    if variable not in ds.data_vars:
        raise ValueError(f"initial field file {str(path)!r} has no variable {variable!r}; it "
                         f"has: {', '.join(map(str, ds.data_vars)) or 'none'}")
    field = ds[variable]
    if field.ndim == len(shape) + 1 and "time" in field.dims:
        times = field.sizes["time"]
        if not -times <= time_index < times:
            raise ValueError(f"initial field {str(path)!r}:{variable} has {times} "
                             f"times; time_index={time_index} is out of range")
        field = field.isel(time=time_index)
    axes = COORDINATES[:len(shape)]
    dims = tuple(map(str, field.dims))
    # unnamed (plain HDF5's phony_dim_N, xarray's default dim_N): the axes in order
    if not all(re.fullmatch(r"(phony_)?dim_\d+", dim) for dim in dims):
        if sorted(dims) != sorted(axes):
            raise ValueError(f"initial field {str(path)!r}:{variable} has dimensions "
                             f"({', '.join(dims)}); the grid's are ({', '.join(axes)}), in any "
                             "order, with an optional time")
        field = field.transpose(*axes)
    if tuple(field.shape) != tuple(shape):
        raise ValueError(f"initial field {str(path)!r}:{variable} has shape "
                         f"{tuple(field.shape)}, the grid {tuple(shape)} over "
                         f"({', '.join(axes)})")
    return field


def check_field(path: str | Path, variable: str, shape: tuple[int, ...],
                time_index: int = -1) -> None:
    """ValueError unless ``path`` holds ``variable`` of ``shape`` (read without its values)."""
    with _open(Path(path)) as ds:
        _field_array(ds, Path(path), variable, shape, time_index)


def read_field(path: str | Path, variable: str, shape: tuple[int, ...],
               time_index: int = -1) -> np.ndarray:
    """``variable`` of the file ``path`` as float64 of ``shape``, axes ``(x, y[, z])``;
    ValueError naming the file and variable if it is missing, its dimensions are not the
    grid's axes, or it is misshapen or not finite."""
    with _open(Path(path)) as ds:
        field = np.asarray(_field_array(ds, Path(path), variable, shape, time_index).values,
                           dtype=np.float64)
    if not np.all(np.isfinite(field)):
        raise ValueError(f"initial field {str(path)!r}:{variable} has NaN or infinite values")
    return field
