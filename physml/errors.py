"""physml's exceptions. The command line turns each into one line and exit status 2
(:class:`ConfigError`, ``ValueError``) or 1 (numerical failures)."""

from .solvers.errors import BlowUpError as BlowUpError
from .solvers.errors import ConvergenceError as ConvergenceError
from .solvers.errors import UnstableStepError as UnstableStepError


class ConfigError(ValueError):
    """A case file, spec or command-line value is invalid (the message names the key)."""


class NonFiniteLossError(FloatingPointError):
    """A training loss, or its gradient, became NaN/Inf (the step is not taken).

    Attributes:
        step: the optimisation step.
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
