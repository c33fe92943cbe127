"""What the physics-informed case kinds (``pinn``, ``equation``) share below them: the
``training`` section (collocation, Adam, L-BFGS, loss balancing), the trainer options it
resolves to, the checkpoint, the training of a trainer in its run folder, and its summary and
figures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from .._version import __version__
from ..devices import Stopwatch
from ..errors import NonFiniteLossError
from ..torch_files import save_torch_file
from ..train.balancing import BALANCERS
from ..train.pinn import PINNTrainer, Resample
from ..train.sampling import DomainSampler
from .kind import OnStep
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    KindSection,
    Section,
    read_checkpoint,
    restoring,
    write_stopped_metrics,
    write_text,
)
from .sections import LearningRate, threshold_passed

if TYPE_CHECKING:
    import torch
    import xarray as xr

    from ..train.problems import PINNProblem


class CollocationSpec(KindSection):
    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {"fixed": (), "redrawn": ("resample",)}

    points: int = Field(4000, gt=0)
    boundary_points: int = Field(256, gt=0)
    sampler: Literal["uniform", "sobol"] = "sobol"
    resample_every: int = Field(0, ge=0, description="steps between redraws (0: fixed points)")
    resample: Resample = "residual"

    @property
    def option_kind(self) -> str:
        return "redrawn" if self.resample_every else "fixed"

    def describe_kind(self) -> str:
        return f"resample_every={self.resample_every} (0 keeps the points drawn first)"


class AdamSpec(Section):
    steps: int = Field(1000, ge=0)
    lr: LearningRate = 1e-3
    decay: float = Field(1.0, gt=0, le=1, description="learning-rate factor per 1000 steps")


class LBFGSSpec(Section):
    steps: int = Field(0, ge=0)
    lr: LearningRate = 1.0
    history: int = Field(50, gt=0)


class BalancerSpec(KindSection):
    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "fixed": (), "config": (), "annealing": ("every", "momentum")}

    kind: Literal["fixed", "annealing", "config"] = "fixed"
    weights: dict[str, float] = Field(default_factory=dict)
    every: int = Field(10, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class TrainingSpec(Section):
    method: Literal["pinn", "lpinn"] = "pinn"
    collocation: CollocationSpec = Field(default_factory=CollocationSpec)
    adam: AdamSpec = Field(default_factory=AdamSpec)
    lbfgs: LBFGSSpec = Field(default_factory=LBFGSSpec)
    balancer: BalancerSpec = Field(default_factory=BalancerSpec)
    checkpoint_every: int = Field(500, gt=0)

    @model_validator(mode="after")
    def _trains(self) -> TrainingSpec:
        if self.adam.steps + self.lbfgs.steps == 0:
            raise ValueError("adam.steps + lbfgs.steps must be > 0 (a run trains at least "
                             "one step)")
        return self


def check_loss_options(training: TrainingSpec, problem: PINNProblem, hard: bool,
                       terms: list[str], strict: bool = True) -> None:
    """``training`` sets options of the loss's terms only: ``training.balancer.weights`` weighs
    those of ``terms`` (the residuals, every condition and the observations) that the output
    transform does not impose (with ``hard``: ``problem.hard_conditions()``), and
    ``training.collocation.boundary_points``, set to other than its default, needs a condition
    that is a loss term to draw points for (``problem.soft_conditions(hard)``).
    ``training.balancer.kind: annealing`` reweighs the conditions and observations against the
    residuals, so it too needs one of them to be a loss term (a Lagrangian PINN, or a problem
    whose every condition is exact, has none). Without ``strict`` (a run folder's recorded
    case, read back as it ran) a weight of an exact condition, the count, or annealing is let
    be: it does nothing.

    Raises:
        ValueError: naming the first such key, and for an exact condition the cure.
    """
    exact = problem.hard_conditions() if hard else set()
    for name in training.balancer.weights:
        if strict and name in exact:
            raise ValueError(f"training.balancer.weights.{name}: the condition {name!r} is "
                             "imposed exactly by the output transform, not a loss term; set "
                             "model.hard_constraints: false to make it one, or drop the key")
        if name not in terms:
            raise ValueError(f"training.balancer.weights.{name}: not a loss term; the terms "
                             f"are {', '.join(t for t in terms if t not in exact)}")
    default = CollocationSpec.model_fields["boundary_points"].default
    if strict and training.collocation.boundary_points != default \
            and not problem.soft_conditions(hard):
        imposed = [name for name in terms if name in exact]
        cure = (f" ({', '.join(imposed)}: imposed exactly by the output transform); set "
                "model.hard_constraints: false to make them loss terms, or drop the key"
                if imposed else "; drop the key")
        raise ValueError("training.collocation.boundary_points: points for the conditions that "
                         f"are loss terms, and this case has none{cure}")
    reweighed = ({c.name for c in problem.conditions} - exact) | {"observations"}
    if strict and training.balancer.kind == "annealing" and reweighed.isdisjoint(terms):
        raise ValueError("training.balancer.kind: annealing reweighs the condition terms against "
                         "the residuals, and this problem has none; use fixed or config")


def trainer_options(case, problem) -> dict:
    """The :class:`PINNTrainer` keywords that ``case.training`` (and the case's seed, device
    and dtype) set."""
    training = case.training
    balance = training.balancer
    annealing = {"every": balance.every, "momentum": balance.momentum}
    balancer = BALANCERS[balance.kind](
        balance.weights, **(annealing if balance.kind == "annealing" else {})
    )
    return dict(
        balancer=balancer,
        sampler=DomainSampler(problem.geometry, problem.time, training.collocation.sampler,
                              case.seed),
        points=training.collocation.points,
        condition_points=training.collocation.boundary_points,
        adam_steps=training.adam.steps,
        adam_lr=training.adam.lr,
        adam_decay=training.adam.decay,
        lbfgs_steps=training.lbfgs.steps,
        lbfgs_lr=training.lbfgs.lr,
        lbfgs_history=training.lbfgs.history,
        resample_every=training.collocation.resample_every,
        resample=training.collocation.resample,
        eval_every=case.evaluation.every,
        device=case.device,
        dtype=case.dtype,
        seed=case.seed,
    )


def save_checkpoint(trainer: PINNTrainer, folder: Path, wall_s: float = 0.0) -> None:
    """The trainer's state, ``wall_s`` (the run's seconds so far) and the physml version."""
    save_torch_file(folder / CHECKPOINT, {**trainer.state_dict(), "wall_s": wall_s,
                                          "physml_version": __version__})


def _version(state: dict) -> tuple[int, ...]:
    """The physml version a checkpoint records as numbers ((0, 2, 1) where it records none:
    0.2.1 and before kept no version)."""
    return tuple(int(part) for part in re.findall(r"\d+", str(state.get("physml_version",
                                                                        "0.2.1")))[:3])


def refuse_older_networks(state: dict, problem: object, model: torch.nn.Module,
                          path: Path) -> None:
    r"""Refuse the checkpoint ``state`` (read from ``path``) of a network this version reads as
    another function: a Lagrangian convection problem's of physml 0.2.1 or before (its $N_x$
    is that of $x = \xi + \max(|\beta|, 1)\,t N_x$, read now as $\xi + t(\beta + N_x)$), and
    a :class:`~physml.models.ModifiedMLP`'s of 0.2.2 or before (its first layer's output was
    the first gate; it is now $H_1$).

    Raises:
        ValueError: naming the file and what to do.
    """
    from ..models import ModifiedMLP
    from ..train.bundled import LagrangianConvectionProblem

    if (isinstance(problem, LagrangianConvectionProblem) and not problem.burgers
            and "physml_version" not in state):
        raise ValueError(f"{str(path)!r} was written by physml 0.2.1 or before, whose Lagrangian "
                         "characteristics x = xi + max(|beta|, 1) t N_x this version reads as "
                         "xi + t(beta + N_x): run the case again")
    if _version(state) < (0, 2, 3) and any(isinstance(m, ModifiedMLP) for m in model.modules()):
        raise ValueError(f"{str(path)!r} holds a modified MLP written by physml "
                         f"{state.get('physml_version', '0.2.1 or before')}, whose first layer "
                         "was the first gate (this version's is H_1, as in Wang, Teng & "
                         "Perdikaris): run the case again")


def load_checkpoint(trainer: PINNTrainer, folder: Path) -> float:
    """Restore ``trainer`` from the folder's checkpoint; returns the run's seconds there (of a
    checkpoint of physml 0.2.0 or before, which kept no ``wall_s``: its training's)."""
    state = read_checkpoint(folder)
    if isinstance(state, dict):
        refuse_older_networks(state, trainer.problem, trainer.model, folder / CHECKPOINT)
    with restoring(folder):
        trainer.load_state_dict(state)
    return state.get("wall_s", trainer.elapsed_s)


def train_in_folder(case, trainer: PINNTrainer, folder: Path, resume: bool,
                    on_step: OnStep | None, clock: Stopwatch) -> None:
    """Fit ``trainer`` (of a ``pinn`` or ``equation`` case) in its run folder, ``clock``
    running since the run started (the run's ``wall_s`` over every resumed part): a resumed run
    loads the folder's checkpoint first (and adds the seconds of the parts before it to
    ``clock``); a new one writes
    its checkpoint at step 0 before ``config.yaml``, so a run folder with a configuration can
    always be resumed. Training writes a checkpoint every ``training.checkpoint_every`` steps
    and at the step a deferred stop ends (:func:`~physml.interrupts.stops_deferred`);
    a NaN/Inf loss stops it with a ``metrics.json`` of the steps taken
    (:func:`~.run_folder.write_stopped_metrics`).

    Raises:
        NonFiniteLossError: a loss or its gradient became NaN/Inf (the step not taken).
    """
    if resume:
        clock.seconds += load_checkpoint(trainer, folder)
    else:
        save_checkpoint(trainer, folder, clock.read())
        write_text(folder / CONFIG, case.to_yaml())
    try:
        trainer.fit(on_step=on_step,
                    on_checkpoint=lambda: save_checkpoint(trainer, folder, clock.read()),
                    checkpoint_every=case.training.checkpoint_every,
                    saved_step=trainer.step)  # the checkpoint written above, or the one resumed
    except NonFiniteLossError as error:
        write_stopped_metrics(folder, case.name, error, trainer.history, steps=trainer.step,
                              wall_s=clock.read())
        raise


METHOD_NAMES = {"pinn": "PINN", "lpinn": "Lagrangian PINN"}
"""``training.method`` as a description or a figure names it."""


def training_summary(case: Any, trainer: PINNTrainer, threads: int, clock: Stopwatch) -> dict:
    """The summary of a trained ``pinn`` or ``equation`` case, for ``metrics.json``
    (:func:`~.run_folder.write_metrics`, with the trainer's history).

    Returns:
        The errors of ``trainer.evaluate()``, ``steps``, ``threshold`` and ``passed``
        (``rel_l2`` against ``evaluation.threshold``, and for several fields each field's,
        ``rel_l2_fields``: every one must reach it), ``wall_s`` (the run's seconds over
        every resumed part, to this evaluation: reference, observations, training),
        ``train_s`` (the training's alone, ``trainer.elapsed_s``) and ``threads`` (the
        PyTorch threads of this part).
    """
    final = trainer.evaluate()
    threshold = case.evaluation.threshold
    passed = threshold_passed(final.get("rel_l2"), threshold) and all(
        threshold_passed(error, threshold) for error in final.get("rel_l2_fields", {}).values())
    return {**final, "steps": trainer.step, "threshold": threshold, "passed": passed,
            "wall_s": clock.read(), "train_s": trainer.elapsed_s, "threads": threads}


def plot_training(case: Any, trainer: PINNTrainer, folder: Path,
                  solution: xr.Dataset) -> None:
    """With ``output.figures``: ``solution.png`` from ``solution`` (prediction, reference and
    error, or the prediction alone without a reference; a row per field of a system:
    :func:`~.figures.plot_solution`) and ``losses.png`` (the loss terms and the error against
    the step) of a ``pinn`` or ``equation`` run."""
    if not case.output.figures:
        return
    from .figures import plot_losses, plot_solution

    optimisers = " + ".join(name for name, steps in (("Adam", case.training.adam.steps),
                                                     ("L-BFGS", case.training.lbfgs.steps))
                            if steps)
    plot_solution(solution, folder / "solution.png",
                  scheme=f"{METHOD_NAMES[case.training.method]}, {optimisers}",
                  step=trainer.step, log_error=case.output.log_error)
    plot_losses(trainer.history, folder / "losses.png", f"{case.name}: losses and error",
                case.training.adam.steps, case.training.collocation.resample_every)
