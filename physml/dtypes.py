"""The PyTorch floating-point type of a run, named as the solvers name theirs."""

from __future__ import annotations

from typing import Any

import torch

from .solvers.dtypes import float_name


def torch_dtype(dtype: Any) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` from a name or a NumPy, PyTorch or Warp dtype
    (:func:`physml.solvers.dtypes.float_name`; a ValueError for any other)."""
    return getattr(torch, float_name(dtype))
