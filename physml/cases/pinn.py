"""Physics-informed networks, ``kind: pinn`` (the default kind): a PINN or a Lagrangian PINN
(``training.method: pinn | lpinn``) trained with Adam then L-BFGS against the solver's
reference.

A case reads top-down like the problem statement::

    name: burgers
    pde: {name: burgers, nu: 0.0031831}
    domain: {x: [-1, 1], t: [0, 1]}
    conditions: {initial: {amplitude: -1.0, wavenumber: 3.141592653589793}}
    model: {kind: mlp, width: 32, depth: 6, hard_constraints: true}
    training: {adam: {steps: 2000}, lbfgs: {steps: 2000}, collocation: {points: 4000}}
    evaluation: {every: 500, nx: 256, nt: 101, threshold: 1.0e-2}
    seed: 0

Run folder::

    config.yaml        the resolved case (after overrides)
    checkpoint.pt      trainer state at the last checkpoint (resume from here)
    metrics.json       history of loss terms, weights and errors, and the summary
    predictions.h5     prediction, reference and error on the evaluation grid (xarray)
    solution.png       prediction | reference | |error|
    losses.png         loss terms and relative L2 error against the step
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, ValidationInfo, model_validator

from ..datasets.store import write_dataset
from ..devices import Stopwatch
from ..models import build_model
from ..solvers.checks import MAX_SOLVE_STEPS
from ..threads import apply_threads
from ..train.bundled import (
    REFERENCE_REFINEMENT,
    BurgersProblem,
    ConvectionProblem,
    HelmholtzProblem,
    LagrangianBurgersProblem,
    LagrangianConvectionProblem,
)
from ..train.pinn import PINNTrainer
from ..train.problems import PINNProblem
from .kind import CaseKind, OnStep
from .pinn_training import (
    METHOD_NAMES,
    TrainingSpec,
    check_loss_options,
    plot_training,
    train_in_folder,
    trainer_options,
    training_summary,
)
from .run_folder import (
    CHECKPOINT,
    comparison_dataset,
    evaluation_axes_metadata,
    pde_attrs,
    run_attrs,
    write_metrics,
)
from .sections import (
    BYTES,
    EVALUATION_VALUES,
    PDE_PARAMETERS,
    PhysicsCase,
    point_needs,
    threshold_verdict,
)

SQUARED_COEFFICIENTS = frozenset({"k", "a1", "a2"})
"""The ``pde`` coefficients that enter the residual squared: helmholtz's $k^2 u$ and its
source, of size $(a_1\\pi)^2 + (a_2\\pi)^2$."""


class PINNCase(PhysicsCase):
    """A whole ``kind: pinn`` case file."""

    kind: Literal["pinn"] = "pinn"
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    dtype: Literal["float32", "float64"] = "float32"

    def unused_keys(self) -> set[str]:
        steady = {f"conditions.initial.{key}" for key in ("kind", "amplitude", "wavenumber")}
        # a Lagrangian PINN's periodicity in xi is its embedding, whatever the PDE
        embedded = {"model.periodic_embedding"} if self.training.method == "lpinn" else set()
        return (super().unused_keys() - embedded) | {"evaluation.times"} | (
            steady if self.pde.name == "helmholtz" else set())

    @model_validator(mode="after")
    def _method_fits_pde(self, info: ValidationInfo) -> PINNCase:
        method = self.training.method
        allowed = {"pinn": ("burgers", "convection", "helmholtz"),
                   "lpinn": ("burgers", "convection")}[method]
        self._require_pde(allowed, f"training.method {method!r}")
        recorded = (info.context or {}).get("recorded", False)  # a run's own: as it ran
        if method == "lpinn" and not self.model.hard_constraints and not recorded:
            raise ValueError("model.hard_constraints: false leaves a Lagrangian PINN without "
                             "its initial conditions (the output transform is the only place "
                             "they are imposed); training.method 'lpinn' needs it true")
        if method == "lpinn" and not self.model.periodic_embedding and not recorded:
            raise ValueError("model.periodic_embedding: false leaves a Lagrangian PINN without "
                             "its periodicity in xi (the input embedding is the only place it "
                             "is imposed); training.method 'lpinn' needs it true")
        steady = self.pde.name == "helmholtz"
        if self.conditions.initial.kind != "sine":
            raise ValueError(f"conditions.initial.kind {self.conditions.initial.kind!r} is an "
                             "initial state of kind teng; kind pinn takes 'sine'")
        if steady and self.conditions.initial != type(self.conditions.initial)():
            raise ValueError("conditions.initial: helmholtz is steady and has no initial "
                             "condition; remove it")
        if steady and self.domain.t is not None:
            raise ValueError("domain.t: helmholtz is steady, posed in (x, y); remove domain.t")
        if not steady and self.domain.y is not None:
            raise ValueError(f"domain.y: {self.pde.name} is posed in (x, t); remove domain.y")
        steps = self.reference_steps()
        if steps > MAX_SOLVE_STEPS:
            raise ValueError(
                f"pde.nu={self.pde.nu:g} on domain.x={list(self.domain.x)}, "
                f"domain.t={list(self.domain.t)} with evaluation.nx={self.evaluation.nx}: the "
                f"Burgers reference solve needs about {steps:.2g} time steps, more than "
                f"{MAX_SOLVE_STEPS:.0e}; use a smaller pde.nu, domain.t or evaluation.nx")
        problem = build_problem(self)
        check_loss_options(self.training, problem, self.model.hard_constraints,
                           [*problem.residual_names, *(c.name for c in problem.conditions)],
                           strict=not recorded)
        return self

    @model_validator(mode="after")
    def _residual_fits_dtype(self) -> PINNCase:
        r"""Refuse a PDE coefficient whose term of the residual, about $|c|$ for a network
        whose derivatives are of order 1 as training starts ($c^2$ for a wavenumber of
        helmholtz: :data:`SQUARED_COEFFICIENTS`), squares in the loss beyond the largest number
        of ``dtype``: the first loss would be Inf, a NaN/Inf stop at step 1."""
        largest = torch.finfo(getattr(torch, self.dtype)).max
        for key in PDE_PARAMETERS[self.pde.name]:
            value = abs(getattr(self.pde, key))
            power = 2 if key in SQUARED_COEFFICIENTS else 1
            if value**power > math.sqrt(largest):
                limit = largest ** (0.5 / power)
                raise ValueError(
                    f"pde.{key}={value:g} makes a residual term of about {value**power:.2g}, "
                    f"whose square in the loss exceeds the largest {self.dtype} number "
                    f"({largest:.2g}); use a pde.{key} below {limit:.2g}")
        return self

    def reference_steps(self) -> float:
        r"""About how many time steps the Burgers reference solve takes (0 for the other PDEs,
        whose reference is exact): $2(t_1 - t_0)(4\nu/\Delta x^2 + |A|/\Delta x)$ on its grid
        of $\Delta x = (b - a)/(16 n_x)$ (:data:`~physml.train.bundled.REFERENCE_REFINEMENT`),
        at half the stable step of diffusion and advection at the initial amplitude $A$."""
        if self.pde.name != "burgers":
            return 0.0
        (a, b), (t0, t1) = self.domain.x, self.domain.t
        dx = (b - a) / (REFERENCE_REFINEMENT * self.evaluation.nx)
        rate = 4 * self.pde.nu / dx / dx + abs(self.conditions.initial.amplitude) / dx
        return 2 * (t1 - t0) * rate

    def memory_needs(self) -> dict[str, float]:
        """:meth:`PhysicsCase.memory_needs`, with the training points through the network
        (:func:`~.sections.point_needs`; every bundled PDE has two inputs) and the Burgers
        reference's fine grid."""
        needs = super().memory_needs() | point_needs(self.model, self.training.collocation, 2)
        if self.pde.name == "burgers":
            evaluation = self.evaluation
            needs[f"evaluation.nx={evaluation.nx}, evaluation.nt={evaluation.nt} (the Burgers "
                  "reference)"] = (float(REFERENCE_REFINEMENT) * evaluation.nx * evaluation.nt
                                   * EVALUATION_VALUES * BYTES)
        return needs


def build_problem(case: PINNCase) -> PINNProblem:
    """The physics-informed problem a case describes."""
    pde, domain, initial = case.pde, case.domain, case.conditions.initial
    if pde.name == "burgers":
        if case.training.method == "lpinn":
            return LagrangianBurgersProblem(
                pde.nu, domain.x, domain.t, initial.amplitude, initial.wavenumber
            )
        return BurgersProblem(pde.nu, domain.x, domain.t, initial.amplitude, initial.wavenumber)
    if pde.name == "convection":
        args = (pde.beta, domain.x, domain.t, initial.amplitude, initial.wavenumber)
        if case.training.method == "lpinn":
            return LagrangianConvectionProblem(*args, nu=pde.nu_diffusion)
        return ConvectionProblem(
            *args, nu=pde.nu_diffusion, periodic_embedding=case.model.periodic_embedding
        )
    return HelmholtzProblem(pde.a1, pde.a2, pde.k, domain.x, domain.y)


def build_trainer(case: PINNCase) -> PINNTrainer:
    """A :class:`PINNTrainer` configured by ``case`` (seeded: same case, same run on CPU)."""
    torch.manual_seed(case.seed)
    problem = build_problem(case)
    spec = case.model
    model = build_model(spec.kind, problem.input_dim, problem.output_dim, width=spec.width,
                        depth=spec.depth, activation=spec.activation,
                        fourier_scale=spec.fourier_scale, harmonics=spec.harmonics,
                        periods=problem.input_periods,
                        per_output=case.training.method == "lpinn")
    evaluation = case.evaluation
    return PINNTrainer(model, problem, hard_constraints=spec.hard_constraints,
                       eval_shape=(evaluation.nx, evaluation.nt),
                       **trainer_options(case, problem))


def run(case: PINNCase, folder: Path, resume: bool = False, on_step: OnStep | None = None) -> dict:
    """Train ``case`` in ``folder``, resuming from its checkpoint if asked, and write the run
    folder; returns the summary (:func:`~.pinn_training.training_summary`). A new run writes its
    checkpoint at step 0 before ``config.yaml``, so a run folder with a configuration can
    always be resumed (:func:`~.pinn_training.train_in_folder`). ``metrics.json`` comes last,
    after ``predictions.h5`` and the figures, its ``wall_s`` read then (the whole run's)."""
    with Stopwatch(case.device) as clock:  # the run's wall_s: to its summary
        threads = apply_threads(case.training.collocation.points, case.threads)
        if on_step is not None and case.reference_steps() > 0:  # the trainer solves it (minutes
            # on a loaded machine): shown until the first step
            on_step({"status": "solving the reference (Warp compiles its kernels on a first run)"})
        trainer = build_trainer(case)
        train_in_folder(case, trainer, folder, resume, on_step, clock)
        result = training_summary(case, trainer, threads, clock)
        first, second = ({"t": "time"}.get(n, n) for n in trainer.problem.names)
        a, b = trainer.eval_axes
        ds = comparison_dataset(  # evaluation fields are (second, first): rows are t (or y)
            trainer.prediction(), trainer.reference, {second: b, first: a},
            run_attrs(case, **pde_attrs(case.pde), rel_l2=result["rel_l2"]),
            evaluation_axes_metadata((first, second)))
        write_dataset(ds, folder / "predictions.h5")
        plot_training(case, trainer, folder, ds)
        result["wall_s"] = clock.read()
        write_metrics(folder, case.name, result, trainer.history)
    return result


def describe(case: PINNCase) -> str:
    """One line: the PDE, the network and the schedule."""
    training, model = case.training, case.model
    return (f"{case.pde.name}, {METHOD_NAMES[training.method]}, {model.kind} {model.width}x"
            f"{model.depth}, {training.adam.steps} Adam + {training.lbfgs.steps} L-BFGS steps")


def headline(result: dict) -> str:
    """The final error against the reference, with the threshold's verdict."""
    return (f"relative L2 error {result['rel_l2']:.3e}{threshold_verdict(result)} after "
            f"{result['steps']} steps, {result['wall_s']:.0f} s")


KIND = CaseKind(
    name="pinn",
    summary="physics-informed network (PINN or Lagrangian PINN), Adam then L-BFGS",
    schema=PINNCase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.training.adam.steps + case.training.lbfgs.steps,
    checkpoint=CHECKPOINT,
)
