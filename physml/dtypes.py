"""The PyTorch floating-point type of a run, named as the solvers name theirs, and the
constants of a field's tensor arithmetic."""

from __future__ import annotations

from typing import Any

import torch

from .solvers.dtypes import float_name


def torch_dtype(dtype: Any) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` from a name or a NumPy, PyTorch or Warp dtype
    (:func:`physml.solvers.dtypes.float_name`; a ValueError for any other)."""
    return getattr(torch, float_name(dtype))


def scalar_constant(value: float) -> torch.Tensor:
    """``value`` as a float64 0-dim CPU tensor: a constant of a field's tensor arithmetic. To
    PyTorch it is the number itself (a CPU scalar takes the other operand's dtype, on any
    device, as a Python float does: the results are bitwise the same), but an ONNX export
    keeps it in float64, where it would store a Python float rounded to float32."""
    return torch.as_tensor(float(value), dtype=torch.float64)
