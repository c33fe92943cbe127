"""What the benchmark scripts share: the summary of a side's repeated measurements, and the
refusal of a device this machine lacks as a command-line error. The scripts run as
``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they import it as
``_common``."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable


def summary(values: list[float], kept_as: str | None = None) -> dict:
    """``{"median", "min", "max"}`` of ``values``, and the values themselves under the key
    ``kept_as`` where one is given (the scripts' JSON names them "runs" or "rounds")."""
    out: dict = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    if kept_as is not None:
        out[kept_as] = values
    return out


def check_device(parser: argparse.ArgumentParser, device: str,
                 require: Callable[[str], object]) -> None:
    """``require(device)``, physml's check of the device the script's work runs on
    (:func:`~physml.devices.require_device` where PyTorch and Warp both run there,
    :func:`~physml.devices.require_torch_device` or
    :func:`~physml.solvers.runtime.warp_device` where one of them does), its ValueError, naming
    the device and what is allowed or available, reported by ``parser.error``: one line on
    standard error and exit status 2, before any work."""
    try:
        require(device)
    except ValueError as err:
        parser.error(f"--device: {err}")
