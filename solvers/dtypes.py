"""The floating-point types the solvers compute in, from the ways users name them, and real
input values in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import warp as wp

_DTYPES = {"float32": wp.float32, "float64": wp.float64}


def warp_dtype(dtype: Any) -> type:
    """``wp.float32`` or ``wp.float64`` from a name, a NumPy or PyTorch dtype, or a Warp type.

    Raises:
        ValueError: any other type, named with the allowed ones.
    """
    if dtype is wp.float32 or dtype is wp.float64:  # (a NumPy dtype compares equal to them)
        return dtype
    if isinstance(dtype, str) or dtype is None:  # (np.dtype(None) is float64)
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:  # a PyTorch dtype prints as "torch.float32"
            name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: float32, float64")
    return _DTYPES[name]


def real_values(values: Any, name: str) -> np.ndarray:
    """``values`` as a float64 array; a ValueError names ``name`` unless they are real numbers
    (complex values would lose their imaginary part, None or text has no value)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        given = f"{name}={values!r}" if array.ndim == 0 else f"{name} has dtype {array.dtype}"
        raise ValueError(f"{given}; expected real numbers")
    return np.asarray(array, dtype=np.float64)
