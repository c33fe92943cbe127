"""What the benchmark scripts share: the summary of a side's repeated measurements, the
refusal of a device this machine lacks as a command-line error, the machine's cores and load
as a report records them on any platform, the code and machine a report was made with, and
for their figures a legend beside the axes and the report that ``--plot-only`` redraws. The
scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they
import it as ``_common``."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import physml


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


def keep_heap_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB (``mallopt``; True if applied, False
    without glibc). NumPy allocates fresh temporaries for every array expression; above the mmap
    threshold (at most 32 MiB by default: a 2048^2 float64 array) each is mapped, page-faulted
    and unmapped again, which slows a NumPy twin by up to half; with the thresholds raised they
    reuse heap memory, the twin's best case."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD,
                                                                        1 << 30))


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout these scripts sit in, or None outside a git
    checkout or without git."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, check=False)
    except OSError:  # no git
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict:
    """What a report records of the code and conditions that made it: ``physml_version``,
    ``git_commit`` (:func:`git_commit`), ``machine`` (platform, processor, CPU count) and the
    ``load_average`` (:func:`load_average`) when called."""
    return {"physml_version": physml.__version__, "git_commit": git_commit(),
            "machine": {"platform": platform.platform(),
                        "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count()},
            "load_average": load_average()}


def legend_beside(ax, **kwargs) -> None:
    """``ax``'s legend outside the axes, level with their top right corner (inside, it covered
    curves); keyword arguments go to ``ax.legend``. The figure keeps it with constrained layout
    or when saved with ``bbox_inches="tight"``."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **kwargs)


def read_report(parser: argparse.ArgumentParser, path: Path, *keys: str) -> dict:
    """The JSON report at ``path`` that ``--plot-only`` redraws, refused (``parser.error``: one
    line, exit status 2) where there is no such file, it is not JSON, or it holds none of
    ``keys`` (a report of another script)."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        parser.error(f"--plot-only {path}: no such report")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        parser.error(f"--plot-only {path}: not a JSON report ({err})")
    if not isinstance(report, dict) or not any(key in report for key in keys):
        parser.error(f"--plot-only {path}: it holds no {' or '.join(map(repr, keys))}; give a "
                     f"report this script wrote")
    return report
