"""Typed overloads of generic Warp kernels, and their launch.

A kernel generic over its dtype (``wp.array(dtype=Any)``) has its float32 and float64 overloads
declared with :func:`specialize` when its module is imported; :func:`launch` launches the
overload for a dtype directly.
"""

from __future__ import annotations

from typing import Any

import warp as wp

_SPECIALIZED: dict[tuple[int, type], wp.Kernel] = {}


def specialize(kernel: wp.Kernel, dtype: type, arg_types: dict[str, Any]) -> None:
    """Declare the overload of a generic kernel for ``dtype`` (float32 or float64)."""
    _SPECIALIZED[(id(kernel), dtype)] = wp.overload(kernel, arg_types)


def launch(kernel: wp.Kernel, dtype: type, **options) -> wp.Launch | None:
    """``wp.launch`` of ``kernel``'s overload for ``dtype`` (its command with ``record_cmd=True``).

    Launching the declared overload directly skips Warp's matching of argument types on every
    call, which is most of a launch's cost on small grids.
    """
    return wp.launch(_SPECIALIZED[(id(kernel), dtype)], **options)
