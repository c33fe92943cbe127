"""Warp's start-up, kept off the console unless asked for, and the devices a run may name.

Warp prints a banner when it initialises (Python logging at ``LOG_INFO``) and, on a machine
without a CUDA driver, a "Warp CUDA warning" that its native library writes straight to file
descriptor 2. :func:`quiet_warp` initialises Warp for the device a run uses: the banner is
hidden, and so is the native output of the start-up itself when that device is the CPU, or a
CUDA device on a machine where Warp finds none (the caller then refuses the device with its own
message); where Warp finds a CUDA device, its start-up output is shown, because there it reports
a real fault.
Set ``PHYSML_WARP_VERBOSE=1`` (or pass ``verbose=True``) to see Warp's own start-up output;
the variable reaches Dask workers started from the same environment.

:func:`warp_device` refuses, in one ValueError, a name that is no device name
(:data:`ALLOWED`) and a device Warp does not have here.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

VERBOSE_VARIABLE = "PHYSML_WARP_VERBOSE"

ALLOWED = "cpu, cuda, cuda:N"
"""The device names physml runs on (:func:`is_device_name`)."""


def is_device_name(device: str) -> bool:
    """Whether ``device`` names a device physml runs on (:data:`ALLOWED`), present or not."""
    return re.fullmatch(r"cpu|cuda(:(0|[1-9][0-9]*))?", device) is not None


def device_name(device: Any) -> str:
    """The name of ``device`` (a name, a ``torch.device`` or a Warp device; "cpu:0" is "cpu"),
    with a ValueError naming it and :data:`ALLOWED` unless it is one of them (present here or
    not: see :func:`warp_device`)."""
    name = "cpu" if str(device) == "cpu:0" else str(device)
    if not is_device_name(name):
        raise ValueError(f"device={name!r} is not a device name; allowed: {ALLOWED}")
    return name


def _verbose_from_environment() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def quiet_warp(device: str = "cpu", verbose: bool | None = None) -> None:
    """Initialise Warp for ``device`` without its banner and without the native CUDA-driver
    messages of a machine that has no CUDA device for it.

    Args:
        device: the device the caller will use ("cpu", "cuda", "cuda:N"). The native start-up
            output (file descriptor 2) is discarded on "cpu", and on CUDA where Warp finds no
            CUDA device; where it finds one, that output is written to standard error.
        verbose: True keeps Warp's banner and warnings; None reads ``PHYSML_WARP_VERBOSE``.

    Warp's default log level (``LOG_INFO``, which prints the banner) becomes ``LOG_WARNING``
    unless ``verbose``; any other ``wp.config.log_level``, one the user set before, stays.
    Calling it again, or after Warp has initialised, only does that.
    """
    import warp as wp

    if verbose is None:
        verbose = _verbose_from_environment()
    if not verbose and wp.config.log_level == wp.LOG_INFO:
        wp.config.log_level = wp.LOG_WARNING
    if verbose:
        _init(wp)
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        failed = True
        try:
            os.dup2(capture.fileno(), 2)
            _init(wp)
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            written = capture.read().decode(errors="replace")
            if failed:
                sys.stderr.write(written)  # a failed start-up keeps its account
    if device != "cpu" and wp.get_cuda_device_count() > 0:
        sys.stderr.write(written)
    elif device != "cpu" and written.strip():
        _cuda_start_up.append(written.strip().splitlines()[0])


def _init(wp: Any) -> None:
    """``wp.init()``, with a ValueError naming the kernel cache where Warp cannot write it."""
    try:
        wp.init()
    except OSError as err:
        raise ValueError(f"Warp cannot set up its kernel cache ({err.filename}: {err.strerror});"
                         " set WARP_CACHE_PATH to a writable folder") from None


_cuda_start_up: list[str] = []
"""The first line Warp's start-up wrote where it found no CUDA device (its reason, for the
"not available" message of :func:`warp_device`)."""


_started: set[str] = set()


def start_warp(device: str) -> None:
    """:func:`quiet_warp` for ``device`` the first time this process asks for it (what every
    solver calls before its first launch); later calls do nothing, so a log level the user
    set, before or afterwards, stays."""
    if device not in _started:
        quiet_warp(device)
        _started.add(device)


def warp_device(device: Any) -> str:
    """Canonical Warp device name ("cpu", "cuda:0", ...) of a device name, a ``torch.device``
    or a Warp device, with a ValueError naming it and what is allowed (:func:`device_name`) or
    available here. Warp starts without its banner (and, where it finds no CUDA device, without
    its CUDA-driver messages) unless ``PHYSML_WARP_VERBOSE=1``."""
    import warp as wp

    name = device_name(device)
    start_warp("cpu" if name == "cpu" else "cuda")

    def unavailable(reason: str = "") -> ValueError:
        available = ", ".join(str(d) for d in wp.get_devices())
        return ValueError(f"device={name!r} is not available; available: {available}{reason}")

    if name != "cpu" and wp.get_cuda_device_count() == 0:
        # asked without a CUDA device, Warp would print its driver errors before refusing
        raise unavailable(f" ({_cuda_start_up[0]})" if _cuda_start_up else "")
    try:
        return str(wp.get_device(name))
    except (RuntimeError, ValueError) as exc:
        raise unavailable() from exc
