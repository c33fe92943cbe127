"""physml's exceptions. The command line turns each into one line and exit status 2
(a ``ValueError``: a case file, spec or argument that is not allowed) or 1 (numerical
failures)."""

import functools
import operator
from collections.abc import Iterable
from typing import Any

from .solvers.errors import BlowUpError as BlowUpError
from .solvers.errors import ConvergenceError as ConvergenceError
from .solvers.errors import InaccurateSolveWarning as InaccurateSolveWarning
from .solvers.errors import PicklableError
from .solvers.errors import UnstableStepError as UnstableStepError


class NonFiniteLossError(PicklableError, FloatingPointError):
    """A training loss, or its gradient, became NaN/Inf (the step is not taken).

    Attributes:
        step: the update (counted from 1, as the run's history and progress count them) whose
            loss or gradient was not finite.
        checkpoint_step: the step of the last good checkpoint kept on disk (or None).
    """

    def __init__(self, step: int, checkpoint_step: int | None = None) -> None:
        kept = (
            "no checkpoint was written yet"
            if checkpoint_step is None
            else f"the checkpoint of step {checkpoint_step} is kept"
        )
        super().__init__(f"the loss or its gradient became NaN/Inf at step {step}; {kept}")
        self.step, self.checkpoint_step = step, checkpoint_step


def adam_can_step(loss: Any, parameters: Iterable[Any]) -> bool:
    """Whether an Adam step may be taken: the loss finite and every gradient's square finite
    (Adam's second moment squares the gradient: a finite gradient past the square root of the
    largest float overflows it to inf, after which every update of that entry is 0 and the
    training stops moving without a word)."""
    return all_finite([loss, *(p.grad.square() for p in parameters if p.grad is not None)])


def all_finite(tensors: Iterable[Any]) -> bool:
    """Whether every entry of every tensor (PyTorch, on one device) is finite: the test
    before a training step, which :class:`NonFiniteLossError` reports failing; one device
    synchronisation."""
    flags = [t.isfinite().all() for t in tensors]
    return not flags or bool(functools.reduce(operator.and_, flags))
