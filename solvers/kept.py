"""Work arrays kept between calls and shared by the calls that find them free.

A solver keeps the arrays of its last call so that the next one allocates nothing; a call made
while another holds them (from a callback, or in another thread) takes its own instead of
waiting, so that such calls still run side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
