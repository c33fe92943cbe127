"""Warp's start-up, kept off the console unless asked for.

Warp prints a banner when it initialises (Python logging at ``LOG_INFO``) and, on a machine
without a CUDA driver, a "Warp CUDA warning" that its native library writes straight to file
descriptor 2. :func:`quiet_warp` initialises Warp for the device a run uses: the banner is
hidden, and so is the native output of the start-up itself, but only when that device is the
CPU; on a CUDA device every CUDA message stays visible, because there it reports a real fault.
Set ``PHYSML_WARP_VERBOSE=1`` (or pass ``verbose=True``) to see Warp's own start-up output;
the variable reaches Dask workers started from the same environment.
"""

from __future__ import annotations

import os
import sys

VERBOSE_VARIABLE = "PHYSML_WARP_VERBOSE"


def _verbose_from_environment() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def quiet_warp(device: str = "cpu", verbose: bool | None = None) -> None:
    """Initialise Warp for ``device`` without its banner and, on the CPU, without its native
    CUDA-driver warning.

    Args:
        device: the device the caller will use ("cpu", "cuda", "cuda:N"). Only on "cpu" is
            the native start-up output (file descriptor 2) discarded.
        verbose: True keeps Warp's banner and warnings; None reads ``PHYSML_WARP_VERBOSE``.

    Calling it again, or after Warp has initialised, only sets the log level.
    """
    import warp as wp

    if verbose is None:
        verbose = _verbose_from_environment()
    wp.config.log_level = wp.LOG_INFO if verbose else wp.LOG_WARNING
    if verbose or device != "cpu":
        wp.init()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            wp.init()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_started: set[str] = set()


def start_warp(device: str) -> None:
    """:func:`quiet_warp` for ``device`` the first time this process asks for it (what every
    solver calls before its first launch); later calls do nothing, so a log level the user
    set afterwards stays."""
    if device not in _started:
        quiet_warp(device)
        _started.add(device)
