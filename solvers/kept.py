"""What calls keep for the calls after them.

A solver keeps the work arrays of its last call so that the next one allocates nothing; a call
made while another holds them (from a callback, or in another thread) takes its own instead of
waiting, so that such calls still run side by side (:func:`held_if_free`). Values made once
and read again (open files, decompressed data, set-ups) are kept within a budget, the least
recently used dropped first (:class:`LeastRecentlyUsed`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def held_if_free(lock: threading.Lock) -> Iterator[bool]:
    """Whether the block holds ``lock``: taken if free and released after the block, never
    waited for (False: another call holds the kept arrays; use new ones)."""
    taken = lock.acquire(blocking=False)
    try:
        yield taken
    finally:
        if taken:
            lock.release()


class LeastRecentlyUsed:
    """Values by key within a budget of their summed ``size``, the least recently used dropped
    first (the newest kept whatever its size), ``drop`` called on each value dropped."""

    def __init__(self, budget: int, size: Callable[[Any], int] = lambda value: 1,
                 drop: Callable[[Any], None] = lambda value: None) -> None:
        self.budget, self.size, self.drop, self.used = budget, size, drop, 0
        self.values: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under ``key``, else ``make()``'s, kept."""
        if key in self.values:
            self.values.move_to_end(key)
            return self.values[key]
        value = self.values[key] = make()
        self.used += self.size(value)
        while self.used > self.budget and len(self.values) > 1:
            dropped = self.values.popitem(last=False)[1]
            self.used -= self.size(dropped)
            self.drop(dropped)
        return value
