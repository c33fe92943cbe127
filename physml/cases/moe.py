"""Hard constraints with a mixture of experts, ``kind: moe``: an FNO basis on 1D
diffusion–sorption with a soft, single hard or MoE hard head (:mod:`physml.train.moe`), trained
on generator data and measured on held-out initial conditions.

Run folder::

    config.yaml        the resolved case
    checkpoint.pt      the trained parameters (a run takes minutes; it is not resumed)
    metrics.json       the summary (test relative L2, interface jump, seconds per step) and the
                       training losses
    predictions.h5     prediction, reference and error on the test samples (sample, t, x)
    solution.png       prediction | reference | |error| of the first test sample

A case::

    kind: moe
    name: moe_diffusion_sorption
    problem: {nx: 1024, nt: 101, train: 512, test: 100}
    model: {basis: 32, width: 32, modes: [12, 16]}
    constraint: {method: hard, experts: 4, continuity: interface_rows}
    training: {iterations: 4000, lr: 1.0e-3, batch: 8, loss: physics}
    evaluation: {threshold: 0.036}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ..constraints import Continuity, DiffusionSorptionRows, LevenbergMarquardt
from ..datasets.store import write_dataset
from ..train.moe import (
    T_END,
    Budget,
    Loss,
    build_model,
    fit,
    relative_l2,
    sorption_trajectories,
)
from .kind import CaseKind, OnStep
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    Section,
    atomic_write,
    comparison_dataset,
    write_text,
)
from .sections import CaseBase, threshold_verdict


class ProblemSpec(Section):
    """PDEBench's diffusion–sorption on ``nx`` cells and ``nt`` levels of [0, 500] s."""

    name: Literal["diffusion_sorption"] = "diffusion_sorption"
    nx: int = Field(1024, ge=4)
    nt: int = Field(101, ge=4)
    train: int = Field(512, gt=0, description="training initial conditions")
    test: int = Field(100, gt=0, description="held-out initial conditions")


class FNOSpec(Section):
    basis: int = Field(32, gt=0, description="basis functions N (FNO output channels)")
    width: int = Field(32, gt=0)
    modes: tuple[int, int] = (12, 16)


class ConstraintSpec(Section):
    method: Literal["soft", "hard"] = "hard"
    experts: int = Field(1, gt=0, description="space blocks K (1: one hard constraint)")
    continuity: Literal["independent", "interface_rows"] = "interface_rows"
    tol: float = Field(1e-6, gt=0, description="Levenberg–Marquardt tolerance")
    max_iter: int = Field(8, gt=0, description="Levenberg–Marquardt iteration cap")


class TrainingSpec(Section):
    iterations: int = Field(4000, gt=0)
    lr: float = Field(1e-3, gt=0)
    batch: int = Field(8, gt=0)
    loss: Literal["physics", "data"] = "physics"


class MoEEvaluationSpec(Section):
    threshold: float | None = Field(None, gt=0, description="test relative L2 to reach")


class MoECase(CaseBase):
    """A whole ``kind: moe`` case file."""

    kind: Literal["moe"]
    problem: ProblemSpec = Field(default_factory=ProblemSpec)
    model: FNOSpec = Field(default_factory=FNOSpec)
    constraint: ConstraintSpec = Field(default_factory=ConstraintSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: MoEEvaluationSpec = Field(default_factory=MoEEvaluationSpec)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _blocks_fit(self) -> MoECase:
        nx, k = self.problem.nx, self.constraint.experts
        if nx % k or nx // k < 2:
            raise ValueError(f"constraint.experts={k} must divide problem.nx={nx} into blocks "
                             "of at least 2 cells")
        if 2 * self.model.modes[0] > self.problem.nt:
            raise ValueError(f"model.modes[0]={self.model.modes[0]} needs problem.nt >= "
                             f"{2 * self.model.modes[0]}")
        if self.training.batch > self.problem.train:
            raise ValueError(f"training.batch={self.training.batch} exceeds problem.train="
                             f"{self.problem.train}")
        return self


def run(case: MoECase, folder: Path, resume: bool = False, on_step: OnStep | None = None) -> dict:
    """Generate the data, train, evaluate and write the run folder; returns the summary."""
    if resume:
        raise ValueError("kind 'moe' cannot resume: start a new run")
    p, m, c, t = case.problem, case.model, case.constraint, case.training
    u0, u = sorption_trajectories(p.nx, p.nt, p.train + p.test)
    train, test = (u0[: p.train], u[: p.train]), (u0[p.train:], u[p.train:])
    rows = DiffusionSorptionRows(p.nx, T_END / (p.nt - 1))
    write_text(folder / CONFIG, case.to_yaml())
    model = build_model(c.method, rows, p.nt, basis=m.basis, width=m.width, modes=m.modes,
                        experts=c.experts, continuity=Continuity(c.continuity),
                        solver=LevenbergMarquardt(tol=c.tol, max_iter=c.max_iter),
                        seed=case.seed)
    budget = Budget(iterations=t.iterations, lr=t.lr, batch=t.batch, loss=Loss(t.loss))
    result = fit(model, rows, train, test, budget, seed=case.seed, on_step=on_step)
    atomic_write(folder / CHECKPOINT, lambda path: torch.save(model.state_dict(), path))
    losses = result.pop("losses")
    threshold = case.evaluation.threshold
    result.update(threshold=threshold, steps=t.iterations,
                  passed=None if threshold is None else result["test_rel_l2"] <= threshold)
    write_text(folder / "metrics.json", json.dumps(
        {"case": case.name, "summary": result, "losses": losses}, indent=1))
    with torch.no_grad():
        pred = model(test[0])
    x = (torch.arange(p.nx, dtype=torch.float64) + 0.5) / p.nx
    times = torch.linspace(0, T_END, p.nt, dtype=torch.float64)
    coords = {"sample": np.arange(len(pred)), "time": times.numpy(), "x": x.numpy()}
    ds = comparison_dataset(pred.numpy(), test[1].numpy(), coords,
                            {"case": case.name, "config": case.to_yaml(),
                             "rel_l2": float(relative_l2(pred, test[1]).mean())})
    write_dataset(ds, folder / "predictions.h5")
    if case.output.figures:
        from .figures import plot_solution

        plot_solution(ds.isel(sample=0), folder / "solution.png")
    return result


def describe(case: MoECase) -> str:
    """One line: the grid, the head and the training budget."""
    p, c, t = case.problem, case.constraint, case.training
    head = "soft constraint" if c.method == "soft" else (
        f"hard constraint, {c.experts} expert(s), {c.continuity}")
    return (f"diffusion-sorption {p.nx}x{p.nt}, FNO basis N={case.model.basis}, {head}, "
            f"{t.iterations} Adam steps ({t.loss} loss), {p.train}/{p.test} samples")


def headline(result: dict) -> str:
    """The held-out error with the threshold's verdict, and the interface jump."""
    return (f"test relative L2 {result['test_rel_l2']:.3e}{threshold_verdict(result)}, "
            f"interface jump {result['interface_jump']:.1e}, "
            f"{result['seconds_per_iteration']:.2f} s per step")


KIND = CaseKind(
    name="moe",
    summary="hard constraints with a mixture of experts on an FNO basis (diffusion-sorption)",
    schema=MoECase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.training.iterations,
    checkpoint=CHECKPOINT,
)
