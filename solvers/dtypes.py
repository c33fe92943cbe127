"""The floating-point types the solvers compute in, from the ways users name them, and real
input values in float64. Importing this module does not import Warp."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_NAMES = ("float32", "float64")


def float_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` from a name or a NumPy, PyTorch or Warp dtype.

    Raises:
        ValueError: any other type, named with the allowed ones.
    """
    if isinstance(dtype, str) or dtype is None:  # (np.dtype(None) is float64)
        name = dtype
    elif getattr(dtype, "__module__", "").partition(".")[0] == "warp":
        name = warp_scalar_name(dtype)
    else:
        try:
            name = np.dtype(dtype).name  # NumPy dtypes
        except TypeError:  # a PyTorch dtype prints as "torch.float32"
            name = str(dtype).removeprefix("torch.")
    if name not in FLOAT_NAMES:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(FLOAT_NAMES)}")
    return name


def warp_scalar_name(dtype: Any) -> str | None:
    """NumPy's name of a Warp scalar type (``"float32"`` for ``wp.float32``), None for another
    Warp type. Asked of Warp: ``np.dtype(wp.float32)`` is ``dtype('O')`` before NumPy 2.4 and
    Warp 1.19."""
    import warp as wp

    try:
        return np.dtype(wp.dtype_to_numpy(dtype)).name
    except (TypeError, KeyError, AttributeError):
        return None


def warp_dtype(dtype: Any) -> type:
    """``wp.float32`` or ``wp.float64`` from the names :func:`float_name` takes (a ValueError
    for any other)."""
    import warp as wp

    return getattr(wp, float_name(dtype))


def real_values(values: Any, name: str) -> np.ndarray:
    """``values`` as a float64 array; a ValueError names ``name`` unless they are real numbers
    (complex values would lose their imaginary part, None or text has no value)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        given = f"{name}={values!r}" if array.ndim == 0 else f"{name} has dtype {array.dtype}"
        raise ValueError(f"{given}; expected real numbers")
    return np.asarray(array, dtype=np.float64)
