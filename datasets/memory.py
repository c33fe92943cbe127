"""Whether a generation fits in this machine's memory, checked before anything is written or
allocated: the machine's physical memory, and what a shard of a dataset needs."""

from __future__ import annotations

import ctypes
import math
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .spec import SampledSpec

GIB = 2**30

WORKING_FIELDS = 10
"""Fields of a sample's size (float64) that solving it holds besides its saved states, an
estimate: the state, a stage value and a stage sum for each of up to four Runge–Kutta stages,
and the last good state."""

PLAN_SHARD_BYTES = 1024
"""Bytes a generation holds per shard to plan and track it, an estimate (about 700 measured):
its task with its path, its place in the queue and its name in the manifest."""

PLAN_SAMPLE_BYTES = 32
"""Bytes a generation's plan holds per sample: its seed in its shard's task (about 28
measured)."""


class _MemoryStatusEx(ctypes.Structure):
    """Windows' ``MEMORYSTATUSEX`` (64 bytes), filled by ``GlobalMemoryStatusEx``."""

    _fields_ = [("dwLength", ctypes.c_uint32), ("dwMemoryLoad", ctypes.c_uint32),
                ("ullTotalPhys", ctypes.c_uint64), ("ullAvailPhys", ctypes.c_uint64),
                ("ullTotalPageFile", ctypes.c_uint64), ("ullAvailPageFile", ctypes.c_uint64),
                ("ullTotalVirtual", ctypes.c_uint64), ("ullAvailVirtual", ctypes.c_uint64),
                ("ullAvailExtendedVirtual", ctypes.c_uint64)]


def _windows_physical_memory() -> int | None:
    """``ullTotalPhys`` of ``GlobalMemoryStatusEx`` (kernel32); None where the call fails."""
    status = _MemoryStatusEx(dwLength=ctypes.sizeof(_MemoryStatusEx))
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return status.ullTotalPhys or None


def physical_memory() -> int | None:
    """This machine's physical memory [bytes]: ``GlobalMemoryStatusEx`` on Windows,
    ``sysconf`` (``SC_PAGE_SIZE * SC_PHYS_PAGES``) on Linux, macOS and other Unixes; None where
    it is not known (no ``sysconf``, or a system without these names), and no memory check is
    made."""
    if sys.platform == "win32":
        return _windows_physical_memory()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf, or not these names
        return None
    return memory if memory > 0 else None


def check_fits_in_memory(needed: int, what: str) -> None:
    """Refuse ``needed`` bytes beyond this machine's physical memory (no check where that is not
    known).

    Raises:
        ValueError: '``what`` needs about N GiB, more than this machine's memory (M GiB)'.
    """
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise ValueError(f"{what} needs about {needed / GIB:,.1f} GiB, more than this "
                         f"machine's memory ({memory / GIB:,.1f} GiB)")


def refuse_beyond_memory(needs: dict[str, float]) -> None:
    """:func:`check_fits_in_memory` for each ``{what: bytes}`` of ``needs`` (a case's
    ``memory_needs``), each on its own."""
    for what, needed in needs.items():
        check_fits_in_memory(needed, what)


def check_shard_fits(spec: SampledSpec, saved: int, values: int, sizes: str) -> None:
    """Refuse ``spec`` where one shard would not fit in this machine's memory. A shard holds
    ``samples`` samples (``shard_size``, or fewer where a split holds fewer per parameter
    combination), each of ``saved`` states of ``values`` values, in float64 as solved and in
    the storage dtype as written, and :data:`WORKING_FIELDS` float64 fields of ``values`` while
    solved::

        bytes = samples * values * (saved * (8 + storage bytes) + 8 * WORKING_FIELDS)

    Raises:
        ValueError: naming ``sizes`` (the keys that set ``saved`` and ``values``, with their
            values) and the key that sets ``samples``.
    """
    largest = max(spec.split_sizes().values())
    samples = min(spec.shard_size, largest)
    key = f"shard_size={spec.shard_size}" if spec.shard_size <= largest else (
        f"samples={spec.samples}")
    storage = np.dtype(spec.storage_dtype).itemsize
    needed = samples * values * (saved * (8 + storage) + 8 * WORKING_FIELDS)
    check_fits_in_memory(needed, f"{sizes}, {key}: a shard of {samples} sample(s) x {saved} "
                                 f"state(s) x {values} values")


def check_plan_fits(spec: SampledSpec) -> None:
    """Refuse ``spec`` where the plan of its shards (every shard's task, every sample's seed)
    would not fit in this machine's memory, from the counts alone (nothing of the dataset's
    size is built)::

        bytes = shards * PLAN_SHARD_BYTES + samples in all * PLAN_SAMPLE_BYTES

    Raises:
        ValueError: naming ``samples`` (the spec's, or ``--samples``), the parameter
            combinations, the shards, and about how many samples per combination fit.
    """
    memory = physical_memory()
    if memory is None:
        return
    combinations = math.prod(len(v) if isinstance(v, list) else 1
                             for v in spec.parameters.values())
    sizes = spec.split_sizes().values()
    shards = combinations * sum(-(-size // spec.shard_size) for size in sizes)
    needed = shards * PLAN_SHARD_BYTES + combinations * spec.samples * PLAN_SAMPLE_BYTES
    if needed > memory:
        per_sample = combinations * (PLAN_SAMPLE_BYTES + PLAN_SHARD_BYTES / spec.shard_size)
        raise ValueError(
            f"samples={spec.samples} (--samples or the spec's samples) x {combinations} "
            f"parameter combination(s) in shards of {spec.shard_size}: the plan of its "
            f"{shards:,} shards needs about {needed / GIB:,.1f} GiB, more than this machine's "
            f"memory ({memory / GIB:,.1f} GiB); at most about {int(memory // per_sample):,} "
            "samples per combination fit")
