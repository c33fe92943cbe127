"""What the benchmark scripts share: the summary of a side's repeated measurements, the
refusal of a device this machine lacks as a command-line error, and the machine's cores and
load as a report records them on any platform. The scripts run as
``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they import it as
``_common``."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable


def at_least(minimum: float, kind: type = int, strictly: bool = False) -> Callable[[str], float]:
    """An ``argparse`` type: ``kind(text)``, refused with one line (exit 2) below ``minimum``
    (or at it, ``strictly``): a count of 0 ended in a traceback far into a run."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if not (value > minimum if strictly else value >= minimum):  # NaN fails too
            raise argparse.ArgumentTypeError(
                f"{text} must be {'>' if strictly else '>='} {minimum:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


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


def usable_cores() -> int:
    """Cores this process may run on: :func:`physml.solvers.host_threads.available_cores`, its
    CPU affinity where the platform reports one (Linux), else the machine's count."""
    # imported here: threads.py's own process loads neither Warp nor PyTorch
    from physml.solvers.host_threads import available_cores

    return available_cores()


def load_average() -> list[float] | None:
    """The system's load averages over 1, 5 and 15 minutes, or None where the platform has
    none (Windows), which a report's JSON records as ``null``."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):  # no such call; or none to read
        return None
