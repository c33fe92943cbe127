"""Keyword-only physics with a deprecation path: a function whose physical parameters were once
positional keeps taking the older calls, each with a ``FutureWarning`` naming the keywords."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def formerly_positional(names: tuple[str, ...], retiring_defaults: Mapping[str, Any] | None = None
                        ) -> Callable[[F], F]:
    """Decorator for a function whose keyword-only ``names`` were positional, in that order,
    after its positional parameters: such a call still runs, with a ``FutureWarning``.

    Args:
        names: the keyword-only parameters the older signature took by position, in its order.
        retiring_defaults: keyword-only parameters that had a default which will go: a call
            leaving one out takes the default given here, with a ``FutureWarning``.

    Raises (from the decorated function):
        TypeError: more positional arguments than the older signature took, or one parameter
            given both by position and by keyword.
    """
    retiring = dict(retiring_defaults or {})

    def decorate(function: F) -> F:
        leading = sum(p.kind is p.POSITIONAL_OR_KEYWORD
                      for p in inspect.signature(function).parameters.values())
        shown = function.__qualname__.removesuffix(".__init__")

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs = _keywords_from_position(shown, names, args[leading:], kwargs)
            _fill_retiring_defaults(shown, retiring, kwargs)
            return function(*args[:leading], **kwargs)

        return cast(F, call)  # type checkers see the new signature, keywords and types

    return decorate


def _keywords_from_position(shown: str, names: tuple[str, ...], extra: tuple,
                            kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the positional arguments ``extra`` added under ``names`` (in order), with
    a ``FutureWarning`` naming them if there are any (attributed to the caller).

    Raises:
        TypeError: more ``extra`` than ``names``, or a keyword given both ways.
    """
    by_position = dict(zip(names, extra))
    if len(extra) > len(names) or by_position.keys() & kwargs.keys():
        raise TypeError(f"{shown}() takes its physics parameters ({', '.join(names)}) by "
                        "keyword, each once")
    if by_position:
        written = ", ".join(f"{key}=..." for key in by_position)
        warnings.warn(f"{shown}: {', '.join(by_position)} given by position; write {shown}(..., "
                      f"{written}): positional physics parameters will be refused in a future "
                      "release", FutureWarning, stacklevel=3)
    return {**kwargs, **by_position}


def _fill_retiring_defaults(shown: str, retiring: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Set each keyword of ``retiring`` that ``kwargs`` lacks to its default there, with a
    ``FutureWarning`` (attributed to the caller) that the default will go."""
    for key, default in retiring.items():
        if key not in kwargs:
            warnings.warn(f"{shown}: no {key} given; its default of {default!r} will be removed "
                          f"in a future release: pass {key}={default!r} to keep this result",
                          FutureWarning, stacklevel=3)
            kwargs[key] = default
