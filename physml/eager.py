"""Functions that ``torch.compile`` runs eagerly, keeping their types for type checkers.

Torch only (no Warp), so that any layer can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar, cast

import torch

P = ParamSpec("P")
R = TypeVar("R")


def eager(function: Callable[P, R]) -> Callable[P, R]:
    """``torch.compiler.disable(function)``: ``torch.compile`` runs ``function`` eagerly (the
    graph breaks around each call), and type checkers keep its signature and return type
    (``torch.compiler.disable`` is not annotated, so its result is untyped)."""
    return cast(Callable[P, R], torch.compiler.disable(function))
