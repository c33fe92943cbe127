"""Running a case: build the trainer from the case, train with progress and checkpoints,
and write the run folder.

Run folder (``output.folder/<name>-<date>-<time>``)::

    config.yaml        the resolved case (after overrides)
    checkpoint.pt      trainer state at the last checkpoint (resume from here)
    metrics.json       history of loss terms, weights and errors, and the summary
    predictions.h5     prediction, reference and error on the evaluation grid (xarray)
    solution.png       prediction | reference | |error|
    losses.png         loss terms and relative L2 error against the step
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import xarray as xr

from ..datasets.store import write_dataset
from ..models import MODELS, TwoBranchNetwork
from ..train.balancing import BALANCERS
from ..train.pinn import PINNTrainer
from ..train.problems import (
    BurgersProblem,
    ConvectionProblem,
    HelmholtzProblem,
    LagrangianBurgersProblem,
    LagrangianConvectionProblem,
    PINNProblem,
)
from ..train.sampling import BoxSampler
from .schema import CaseSpec

CHECKPOINT = "checkpoint.pt"


def build_problem(case: CaseSpec) -> PINNProblem:
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


def build_trainer(case: CaseSpec) -> PINNTrainer:
    """A :class:`PINNTrainer` configured by ``case`` (seeded: same case, same run on CPU)."""
    torch.manual_seed(case.seed)
    problem = build_problem(case)
    spec = case.model
    options = {"width": spec.width, "depth": spec.depth, "act": spec.activation}
    if spec.kind == "fourier":
        options["scale"] = spec.fourier_scale
    if case.training.method == "lpinn":
        model = TwoBranchNetwork(
            MODELS[spec.kind], problem.input_dim, problem.output_dim, **options
        )
    else:
        model = MODELS[spec.kind](problem.input_dim, problem.output_dim, **options)
    training = case.training
    balance = training.balancer
    annealing = {"every": balance.every, "momentum": balance.momentum}
    balancer = BALANCERS[balance.kind](
        balance.weights, **(annealing if balance.kind == "annealing" else {})
    )
    evaluation = case.evaluation
    return PINNTrainer(
        model,
        problem,
        balancer=balancer,
        sampler=BoxSampler(problem.bounds, training.collocation.sampler, case.seed),
        points=training.collocation.points,
        condition_points=training.collocation.boundary_points,
        hard_constraints=spec.hard_constraints,
        adam_steps=training.adam.steps,
        adam_lr=training.adam.lr,
        adam_decay=training.adam.decay,
        lbfgs_steps=training.lbfgs.steps,
        lbfgs_lr=training.lbfgs.lr,
        lbfgs_history=training.lbfgs.history,
        resample_every=training.collocation.resample_every,
        resample=training.collocation.resample,
        eval_every=evaluation.every,
        eval_shape=(evaluation.nx, evaluation.nt),
        device=case.device,
        dtype={"float32": torch.float32, "float64": torch.float64}[case.dtype],
        seed=case.seed,
    )


def new_run_folder(case: CaseSpec) -> Path:
    """``output.folder/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if taken)."""
    base = Path(case.output.folder) / f"{case.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while folder.exists():
        folder, n = base.with_name(f"{base.name}-{n}"), n + 1
    folder.mkdir(parents=True)
    return folder


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(trainer: PINNTrainer, folder: Path) -> None:
    _atomic(folder / CHECKPOINT, lambda p: torch.save(trainer.state_dict(), p))


def load_checkpoint(trainer: PINNTrainer, folder: Path) -> None:
    path = folder / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"--resume: {str(path)!r} does not exist")
    trainer.load_state_dict(torch.load(path, weights_only=False))


def summary(case: CaseSpec, trainer: PINNTrainer) -> dict:
    final = trainer.evaluate()
    threshold = case.evaluation.threshold
    return {
        **final,
        "steps": trainer.step,
        "threshold": threshold,
        "passed": None if threshold is None else final["rel_l2"] <= threshold,
    }


def write_results(case: CaseSpec, trainer: PINNTrainer, folder: Path, elapsed: float) -> dict:
    """metrics.json, predictions.h5 and the figures; returns the summary."""
    result = {**summary(case, trainer), "wall_s": elapsed}
    metrics = {"case": case.name, "summary": result, "history": trainer.history}
    _atomic(folder / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=1)))
    first, second = trainer.problem.names
    a, b = trainer.eval_axes
    prediction = trainer.prediction()
    dims = (second, first)
    ds = xr.Dataset(
        {
            "prediction": (dims, prediction),
            "reference": (dims, trainer.reference),
            "error": (dims, prediction - trainer.reference),
        },
        coords={first: a, second: b},
        attrs={
            "case": case.name,
            "pde": case.pde.name,
            "rel_l2": result["rel_l2"],
            "config": case.to_yaml(),
        },
    )
    write_dataset(ds, folder / "predictions.h5")
    if case.output.figures:
        from .figures import plot_losses, plot_solution

        plot_solution(ds, folder / "solution.png")
        plot_losses(trainer.history, folder / "losses.png", f"{case.name}: losses and error",
                    case.training.adam.steps, case.training.collocation.resample_every)
    return result


def run_case(
    case: CaseSpec,
    folder: Path | None = None,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
) -> tuple[Path, dict]:
    """Train ``case`` in ``folder`` (new if None), resuming from its checkpoint if asked."""
    folder = new_run_folder(case) if folder is None else folder
    if getattr(case, "kind", None) == "thermomigration":
        from .thermomigration_runner import run_thermomigration_case

        return run_thermomigration_case(case, folder, resume, on_step)
    if case.training.method == "teng":
        from .teng_runner import run_teng_case

        return run_teng_case(case, folder, resume, on_step)
    trainer = build_trainer(case)
    if resume:
        load_checkpoint(trainer, folder)
    else:
        _atomic(folder / "config.yaml", lambda p: p.write_text(case.to_yaml()))
    started = time.perf_counter()
    trainer.fit(
        on_step=on_step,
        on_checkpoint=lambda: save_checkpoint(trainer, folder),
        checkpoint_every=case.training.checkpoint_every,
    )
    return folder, write_results(case, trainer, folder, time.perf_counter() - started)
