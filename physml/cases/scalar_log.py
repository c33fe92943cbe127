"""TensorBoard scalars of a run (``output.tensorboard: true``): every number of every step's
record, written to ``RUN_DIR/tensorboard`` (``tensorboard --logdir RUN_DIR``).

Tags group the record's keys: ``loss/total`` and ``loss/<term>`` (``loss_<term>``),
``weight/<term>`` (the loss balancer's weights), ``coefficient/<name>`` (trainable
coefficients), ``error/rel_l2``, ``error/max_error``, ``error/residual_rms``, and the rest by
their own names (``t``, ``wall_s``, ...). A resumed run drops the events at and after its
first new step, so a curve is never drawn twice.
"""

from __future__ import annotations

import math
from importlib.util import find_spec
from numbers import Real
from pathlib import Path

ERRORS = ("rel_l2", "max_error", "residual_rms")
"""Record keys shown under ``error/``."""

FOLDER = "tensorboard"
"""The event files' folder inside the run folder."""


def require_tensorboard() -> None:
    """Raise ValueError naming the key unless the ``tensorboard`` package is installed."""
    if find_spec("tensorboard") is None:
        raise ValueError("output.tensorboard needs the tensorboard package: "
                         "pip install 'physml[tensorboard]'")


def scalar_tags(record: dict) -> dict[str, float]:
    """The record's finite numbers by TensorBoard tag (see the module docstring)."""
    tags = {}
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, dict):
            tags.update({f"{'weight' if key == 'weights' else key}/{k}": v
                         for k, v in value.items()})
        elif key == "loss":
            tags["loss/total"] = value
        elif key.startswith(("loss_", "coefficient_")):
            group, name = key.split("_", 1)
            tags[f"{group}/{name}"] = value
        else:
            tags[f"error/{key}" if key in ERRORS else key] = value
    return {tag: float(v) for tag, v in tags.items()
            if isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)}


class ScalarLog:
    """A step callback that writes each record's scalars (records without ``step`` are
    skipped); the writer opens on the first record and :meth:`close` flushes it.

    Args:
        folder: the run folder.
        resume: whether the run continues from a checkpoint (its events from the first new
            step on are replaced).
    """

    def __init__(self, folder: Path, resume: bool) -> None:
        require_tensorboard()
        self.folder, self.resume, self.writer = Path(folder) / FOLDER, resume, None

    def __call__(self, record: dict) -> None:
        step = record.get("step")
        if step is None:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder),
                                        purge_step=int(step) if self.resume else None)
        for tag, value in scalar_tags(record).items():
            self.writer.add_scalar(tag, value, int(step))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
