"""Hard constraints with a mixture of experts, ``kind: moe``: an FNO basis on 1D
diffusion–sorption or 2D vorticity Navier–Stokes with a soft, single hard or MoE hard head
(:mod:`physml.train.moe`), trained on generator data and measured on held-out initial
conditions.

Run folder::

    config.yaml        the resolved case
    checkpoint.pt      model, optimiser, batch generator, step, losses and test-error history
                       (every ``training.checkpoint_every`` steps; ``--resume`` continues it)
    metrics.json       the summary (``rel_l2``: the test samples' mean relative L2, with
                       ``threshold`` and ``passed``; interface jump of the prediction and of
                       the reference (null for a soft head), ``wall_s``: the run's seconds
                       over every resumed part, seconds per step, the fraction of
                       inner least-squares solves that converged over the training steps,
                       ``inner_solves_converged``, and in the final test evaluation,
                       ``test_inner_solves_converged``, the share of points where
                       diffusion–sorption's rows clip $R$'s argument at 0, ``cells_at_kink``,
                       where the implicit gradient is not the gradient, ``threads``: the
                       PyTorch threads of the last part) and the history (the loss of every
                       step, the test error every 10)
    predictions.h5     prediction, reference and error on the test samples (sample, time, x[, y];
                       Navier–Stokes: the vorticity)
    solution.png       prediction | reference | |error| of the first test sample (Navier–Stokes:
                       at the last time)
    interface_jump.png the jump of the stitched prediction and of the reference across each
                       expert interface against time, on the test sample whose prediction
                       jumps most (MoE hard heads)

A case::

    kind: moe
    name: moe_diffusion_sorption
    problem: {name: diffusion_sorption, nx: 1024, nt: 101, train: 512, test: 100}
    model: {basis: 32, width: 32, modes: [12, 16]}
    constraint: {method: hard, experts: 4, continuity: interface_rows}
    training: {iterations: 4000, lr: 1.0e-3, batch: 8, loss: physics}
    evaluation: {threshold: 0.036}
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field, ValidationInfo, model_validator

from ..constraints import (
    BlockRouter,
    Continuity,
    LevenbergMarquardt,
    interface_jump,
    interface_profiles,
)
from ..datasets.grid_samples import step_plan
from ..datasets.memory import WORKING_FIELDS
from ..datasets.store import write_dataset
from ..errors import NonFiniteLossError
from ..fno import most_modes
from ..solvers.checks import MAX_SOLVE_STEPS
from ..threads import apply_threads
from ..torch_files import save_torch_file
from ..train.moe import (
    EVALUATE_EVERY,
    PROBLEMS,
    Budget,
    ConstrainedFNO,
    Loss,
    MoETrainer,
    Rows,
    build_constraint,
    build_model,
    expert_blocks,
    initial_states,
    predict,
    problem_rows,
    relative_l2,
    sample_setup,
    trajectories,
)
from .kind import CaseKind, OnStep
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    KindSection,
    Section,
    comparison_dataset,
    read_checkpoint,
    restoring,
    run_attrs,
    save_figure,
    write_metrics,
    write_stopped_metrics,
    write_text,
)
from .sections import (
    BYTES,
    NETWORK_COPIES,
    CaseBase,
    LearningRate,
    Seed,
    Threads,
    is_final,
    threshold_passed,
    threshold_verdict,
)

SPACE_AXES = {"diffusion_sorption": 1, "navier_stokes": 2}


class ProblemSpec(Section):
    """PDEBench's diffusion–sorption on ``nx`` cells, or Navier–Stokes on ``nx`` x ``nx``
    cells, with ``nt`` levels of [0, ``t_end``] (default: the dataset spec's, 500 s and 10 s)."""

    name: Literal["diffusion_sorption", "navier_stokes"] = "diffusion_sorption"
    nx: int = Field(1024, ge=4)
    nt: int = Field(101, ge=4)
    t_end: float | None = Field(None, gt=0, description="final time [s]")
    train: int = Field(512, gt=0, description="training initial conditions")
    test: int = Field(100, gt=0, description="held-out initial conditions")


class FNOSpec(Section):
    basis: int = Field(32, gt=0, description="basis functions N (FNO output channels)")
    width: int = Field(32, gt=0)
    modes: tuple[int, ...] = Field((12, 16), description="Fourier modes per axis, time first")


class ConstraintSpec(KindSection):
    """The head: ``soft`` (one learned combination of the basis) reads none of the hard
    head's options."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "soft": (), "hard": ("experts", "continuity", "tol", "max_iter")}

    method: Literal["soft", "hard"] = "hard"
    experts: int = Field(1, gt=0, description="space blocks K (1: one hard constraint)")
    continuity: Literal["independent", "interface_rows", "partition_of_unity"] = "interface_rows"
    tol: float = Field(1e-6, gt=0, description="Levenberg–Marquardt tolerance")
    max_iter: int = Field(12, gt=0, description="Levenberg–Marquardt iteration cap")

    @property
    def option_kind(self) -> str:
        return self.method

    def describe_kind(self) -> str:
        return f"method {self.method!r}"


class TrainingSpec(Section):
    iterations: int = Field(4000, gt=0)
    lr: LearningRate = 1e-3
    batch: int = Field(8, gt=0)
    loss: Literal["physics", "data"] = "physics"
    checkpoint_every: int = Field(50, gt=0, description="steps between checkpoints")


class MoEEvaluationSpec(Section):
    threshold: float | None = Field(None, gt=0, description="test relative L2 to reach")


FNO_LAYERS = 3
"""Spectral blocks of the basis FNO (:func:`~physml.train.moe.build_model`)."""

FNO_BYTES = 4
"""Bytes of a number of the FNO (float32)."""

FNO_VALUES = 43
"""float32 numbers a training step holds per FNO channel and grid point of each sample of the
batch, measured: the activations of the lift, spectral blocks and projection and their
gradients (diffusion–sorption, 32 cells x 51 levels, batch 8, basis 8: 1.34 GB more at width
256 than at 16, of which 0.80 GB the spectral weights with their optimiser state)."""

LS_FIELDS = {"diffusion_sorption": 24, "navier_stokes": 36}
"""float64 fields of a sample's grid that each forward product of the hard head's Jacobian holds
while formed, by problem: its direction, column and the rows' intermediates (fitted to the
measured peaks of :meth:`MoECase._least_squares_bytes`)."""


class MoECase(CaseBase):
    """A whole ``kind: moe`` case file."""

    kind: Literal["moe"]
    problem: ProblemSpec = Field(default_factory=ProblemSpec)
    model: FNOSpec = Field(default_factory=FNOSpec)
    constraint: ConstraintSpec = Field(default_factory=ConstraintSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: MoEEvaluationSpec = Field(default_factory=MoEEvaluationSpec)
    seed: Seed = 0
    threads: Threads = Field(
        "auto", description="PyTorch threads on the CPU; auto: from the grid points of a "
        "training step's batch (physml.threads.choose_threads), recorded in metrics.json")

    @property
    def space(self) -> tuple[int, ...]:
        """The cells per space axis."""
        return (self.problem.nx,) * SPACE_AXES[self.problem.name]

    @property
    def step_points(self) -> int:
        """Grid points of a training step's batch, batch x nt x cells: the problem size an
        automatic ``threads`` count is chosen from."""
        return self.training.batch * self.problem.nt * math.prod(self.space)

    @model_validator(mode="after")
    def _blocks_fit(self) -> MoECase:
        p, k, modes = self.problem, self.constraint.experts, self.model.modes
        blocks = expert_blocks(len(self.space), k)
        if p.name == "navier_stokes" and p.nx % 2:
            raise ValueError(f"problem.nx={p.nx} must be even for navier_stokes (the "
                             "generator's Fourier grid)")
        if self.constraint.method == "hard" and any(p.nx % b or p.nx // b < 2
                                                    for b in blocks[1:]):
            raise ValueError(f"constraint.experts={k} ({' x '.join(map(str, blocks[1:]))} "
                             f"blocks) must divide problem.nx={p.nx} into blocks of at least 2 "
                             "cells")
        if len(modes) != 1 + len(self.space):
            raise ValueError(f"model.modes={list(modes)} needs {1 + len(self.space)} entries "
                             f"for {p.name} (time, then each space axis)")
        sizes = (p.nt, *self.space)
        for axis, (m, n) in enumerate(zip(modes, sizes, strict=True)):
            limit = most_modes(n, last=axis == len(sizes) - 1)
            if not 1 <= m <= limit:
                raise ValueError(f"model.modes[{axis}]={m} must lie in [1, {limit}] for "
                                 f"{n} points on that axis (its frequencies below Nyquist)")
        if self.training.batch > self.problem.train:
            raise ValueError(f"training.batch={self.training.batch} exceeds problem.train="
                             f"{self.problem.train}")
        self._experts_own_pde_rows()
        return self

    @model_validator(mode="after")
    def _data_solve_fits(self, info: ValidationInfo) -> MoECase:
        """Refuse data whose solve takes more time steps than ``physml solve`` runs by default
        (:data:`~physml.solvers.checks.MAX_SOLVE_STEPS`), counted for the first sample
        (its step is ``solver.cfl`` times the stable step of its initial state)."""
        if not is_final(info):
            return self
        p = self.problem
        spec, solver = sample_setup(p.name, self.space, p.nt, p.t_end)
        steps, _, _ = step_plan(spec, solver, initial_states(spec, solver, 1, 0)[0])
        if steps > MAX_SOLVE_STEPS:
            raise ValueError(
                f"problem.t_end={spec.t_end:g} with problem.nx={p.nx}, problem.nt={p.nt}: the "
                f"data's solve needs {steps:.3g} time steps a sample, more than "
                f"{MAX_SOLVE_STEPS:.0e} (as physml solve refuses); use a shorter problem.t_end")
        return self

    def memory_needs(self) -> dict[str, float]:
        """Bytes the run holds, about, by the keys that set them: the samples made, float64,
        each of ``nt`` levels and :data:`~physml.datasets.memory.WORKING_FIELDS` fields while
        solved (32 cells x 51 levels: 27.6 MB more for 2040 more samples, measured; 31.9 MB
        estimated); the FNO's spectral weights with their optimiser state
        (:data:`~.sections.NETWORK_COPIES`); a training step's batch through the FNO,
        :data:`FNO_VALUES` per channel and point. Refused beyond this machine's memory. The
        data are made on the host whatever the device; on a GPU the FNO's items and the hard
        head's least-squares systems are the card's memory, not this machine's, and are left
        out. The least-squares systems (:meth:`_least_squares_bytes`) grow as the basis size."""
        p, m = self.problem, self.model
        cells = float(math.prod(self.space))
        kept = math.prod([2 * k for k in m.modes[:-1]] + [m.modes[-1]])
        data = {f"problem.train={p.train}, problem.test={p.test} with problem.nx={p.nx}, "
                f"problem.nt={p.nt} (the data)":
                (p.train + p.test) * cells * (p.nt + WORKING_FIELDS) * BYTES}
        if self.device != "cpu":
            return data
        return data | {
            f"model.width={m.width}, model.modes={list(m.modes)} (the FNO)":
            float(FNO_LAYERS) * m.width**2 * kept * 2 * FNO_BYTES * NETWORK_COPIES,
            f"training.batch={self.training.batch} with problem.nx={p.nx}, problem.nt={p.nt}, "
            f"model.width={m.width}, model.basis={m.basis} (a training step's FNO)":
            float(self.training.batch) * p.nt * cells * FNO_VALUES * (m.width + m.basis)
            * FNO_BYTES} | self._least_squares_bytes()

    def _least_squares_bytes(self) -> dict[str, float]:
        """The hard head's inner solve, by the keys that set it, for the $S$ samples solved
        together (the training batch; the test samples are evaluated a batch at a time): its
        Jacobian, $E N$ fields of the grid per sample ($E = K$ experts coupled by interface
        rows, 1 independent), and the $N$ forward products of one group of experts formed at
        once (:meth:`~physml.constraints.HardConstraint.jacobian`), :data:`LS_FIELDS` fields
        each: 8 S nt cells N (E + LS_FIELDS) bytes. Measured, the peak of the evaluation
        above a soft head's (CPU variants, batch 4): diffusion–sorption (4 experts, 32 cells
        x 51 levels) 8, 21, 46 and 88 MiB at basis 8, 16, 32 and 64, against 11, 22, 45 and
        89 estimated; Navier–Stokes (2 x 2 experts, 16 x 16 cells x 9 levels) 17 and 90 MiB
        at basis 8 and 32, against 22 and 90. None for a soft head."""
        p, m, c = self.problem, self.model, self.constraint
        if c.method != "hard":
            return {}
        jacobian = c.experts if c.continuity == "interface_rows" else 1
        return {f"model.basis={m.basis}, constraint.experts={c.experts}, constraint.continuity="
                f"{c.continuity}, training.batch={self.training.batch} with problem.nx={p.nx}, "
                f"problem.nt={p.nt} (the hard head's least-squares systems)":
                8.0 * self.training.batch * p.nt * math.prod(self.space) * m.basis
                * (jacobian + LS_FIELDS[p.name])}

    def _experts_own_pde_rows(self) -> None:
        """Independent experts and a partition of unity solve each expert on the rows its
        block holds: refuse blocks that hold no row of the PDE (before any data is made)."""
        p, c = self.problem, self.constraint
        if c.method != "hard" or c.experts == 1 or c.continuity == "interface_rows":
            return
        # the experts split space only and the rows join two levels: three levels own the
        # same rows per level as nt
        rows = problem_rows(p.name, self.space, 3, p.t_end)
        try:
            with warnings.catch_warnings():  # the run's own constraint warns of dropped rows
                warnings.simplefilter("ignore", UserWarning)
                build_constraint(rows, 3, c.experts, Continuity(c.continuity),
                                 LevenbergMarquardt(tol=c.tol, max_iter=c.max_iter))
        except ValueError as err:
            raise ValueError(f"constraint.experts={c.experts} with constraint.continuity="
                             f"{c.continuity} on problem.nx={p.nx}: {err}") from None


def training_history(losses: list[float], errors: list[float]) -> list[dict]:
    """The trainer's losses (one per iteration) and test errors (one every
    :data:`~physml.train.moe.EVALUATE_EVERY` iterations, from 0) as ``metrics.json`` records:
    ``{"step": k, "loss": ...}`` after k iterations, with ``test_rel_l2`` where it was
    evaluated (step 0 has no loss)."""
    records = [{"step": k, "loss": loss} for k, loss in enumerate(losses, start=1)]
    records.insert(0, {"step": 0})
    for j, error in enumerate(errors):
        if EVALUATE_EVERY * j < len(records):
            records[EVALUATE_EVERY * j]["test_rel_l2"] = error
    return records


def build(case: MoECase) -> tuple[Rows, ConstrainedFNO]:
    """The problem's rows and the untrained network of ``case``, on the CPU, as a run builds
    them (the network initialised from the case's seed)."""
    p, m, c = case.problem, case.model, case.constraint
    rows = problem_rows(p.name, case.space, p.nt, p.t_end)
    model = build_model(c.method, rows, p.nt, basis=m.basis, width=m.width, modes=m.modes,
                        experts=c.experts, continuity=Continuity(c.continuity),
                        solver=LevenbergMarquardt(tol=c.tol, max_iter=c.max_iter),
                        seed=case.seed)
    return rows, model


def run(case: MoECase, folder: Path, resume: bool = False, on_step: OnStep | None = None) -> dict:
    """Generate the data, train (from the checkpoint if ``resume``), evaluate and write the run
    folder; returns the summary. The untrained state is the first checkpoint, written before
    ``config.yaml``, so a configured run folder always resumes. PyTorch's threads are set
    first (``case.threads``), for the data and the training alike."""
    started = time.perf_counter()
    threads = apply_threads(case.step_points, case.threads)
    p, t = case.problem, case.training
    checkpoint = read_checkpoint(folder) if resume else None
    # the seconds of the parts before; a checkpoint of an earlier version has the steps' alone
    before = 0.0 if checkpoint is None else checkpoint.get("wall_s", checkpoint["seconds"])
    device = torch.device(case.device)  # the data are made on the CPU, then moved
    u0, u = (v.to(device) for v in trajectories(p.name, case.space, p.nt, p.train + p.test,
                                                p.t_end))
    train, test = (u0[: p.train], u[: p.train]), (u0[p.train:], u[p.train:])
    rows, model = build(case)
    model = model.to(device)
    budget = Budget(iterations=t.iterations, lr=t.lr, batch=t.batch, loss=Loss(t.loss))
    trainer = MoETrainer(model, rows, train, test, budget, seed=case.seed)

    def elapsed() -> float:
        return before + time.perf_counter() - started

    def save() -> None:
        save_torch_file(folder / CHECKPOINT, {**trainer.state_dict(), "wall_s": elapsed()})

    if checkpoint is not None:
        with restoring(folder):
            trainer.load_state_dict(checkpoint)
    else:
        save()
        write_text(folder / CONFIG, case.to_yaml())
    try:
        result = trainer.fit(on_step, on_checkpoint=save, checkpoint_every=t.checkpoint_every,
                             saved_step=trainer.step)  # the checkpoint written or resumed
    except NonFiniteLossError as error:
        write_stopped_metrics(folder, case.name, error,
                              training_history(trainer.losses, trainer.history),
                              steps=trainer.step, wall_s=elapsed())
        raise
    history = training_history(result.pop("losses"), result.pop("history"))
    threshold = case.evaluation.threshold
    result = {"rel_l2": result.pop("test_rel_l2"), **result}
    result.update(threshold=threshold, steps=t.iterations,
                  passed=threshold_passed(result["rel_l2"], threshold), threads=threads)
    pred = rows.observe(predict(model, test[0], t.batch)).cpu()
    test = (test[0].cpu(), test[1].cpu())
    spec = PROBLEMS[p.name].load()
    t_end = p.t_end or spec.t_end
    centres = ((torch.arange(p.nx, dtype=torch.float64) + 0.5) / p.nx).numpy()
    coords = {"sample": np.arange(p.train, p.train + len(pred)),  # the test samples' seeds
              "time": torch.linspace(0, t_end, p.nt, dtype=torch.float64).numpy(),
              **{axis: centres for axis in ("x", "y")[: len(case.space)]}}
    ds = comparison_dataset(pred.numpy(), test[1].numpy(), coords,
                            run_attrs(case, pde=p.name, **rows.physical_parameters(),
                                      rel_l2=float(relative_l2(pred, test[1]).mean())),
                            _metadata(p.name))
    write_dataset(ds, folder / "predictions.h5")
    if case.output.figures:
        _plot(ds, pred, model, folder, p.name)
    result["wall_s"] = elapsed()
    write_metrics(folder, case.name, result, history)  # last: the results are all there
    return result


FIELDS = {"navier_stokes": ("vorticity", "w"), "diffusion_sorption": ("concentration", "u")}
"""Each problem's compared field: its name and symbol."""


def _metadata(problem: str) -> dict[str, tuple[str, str]]:
    """CF ``long_name``/``units`` of a problem's ``predictions.h5``: the compared field by its
    name (the vorticity for Navier–Stokes), the test samples' seeds, cell centres as fractions
    of the domain, and time (PDEBench's diffusion–sorption in seconds, Navier–Stokes in its
    own units)."""
    field = " ".join(FIELDS[problem])
    return {"prediction": (f"prediction of the {field}", "1"),
            "reference": (f"reference {field}", "1"),
            "error": ("prediction minus reference", "1"),
            "sample": ("random seed of the test sample", "1"),
            "time": ("time", "s" if problem == "diffusion_sorption" else "1"),
            **{axis: (f"{axis}: cell centre as a fraction of the domain", "1")
               for axis in ("x", "y")}}


def _plot(ds, pred: torch.Tensor, model, folder: Path, problem: str) -> None:
    """``solution.png`` (the last time of a 2D field) of the problem's field, by its symbol,
    and, with experts, ``interface_jump.png``."""
    from .figures import plot_solution

    first = ds.isel(sample=0).assign_coords(field=FIELDS[problem][1])
    if "y" in first.dims:
        first = first.isel(time=-1).assign_attrs(t=float(first["time"][-1]))
    plot_solution(first, folder / "solution.png",
                  pooled=f"as the mean over the {len(pred)} test samples")
    router = None if model.constraint is None else model.constraint.router
    if router is not None and router.experts > 1:
        plot_interface_jump(pred, torch.as_tensor(ds["reference"].values), router, ds["time"],
                            ds["sample"].values, folder / "interface_jump.png")


def plot_interface_jump(u: torch.Tensor, reference: torch.Tensor, router: BlockRouter,
                        times: xr.DataArray, samples: np.ndarray, path: Path) -> None:
    """The largest $|e_- - e_+|$ along each space interface against ``times`` (labelled by
    its CF units), one colour per interface (log scale): of the prediction ``u`` (S, nt, ...)
    (solid) and of ``reference`` (dashed), both on the test sample whose prediction jumps
    most (named by its entry of ``samples`` (S,)), so that the top of the solid lines is the
    summary's ``interface_jump``; the summary's ``reference_jump``, the reference's largest
    jump over every sample, is a dotted line."""
    import matplotlib.pyplot as plt

    worst = int(interface_jump(u, router).argmax())
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    pairs = zip(interface_profiles(u[worst:worst + 1], router),
                interface_profiles(reference[worst:worst + 1], router), strict=True)
    for (axis, index, diff), (_, _, reference_diff) in pairs:
        if axis == 0:
            continue
        name, colour = ("x", "y")[axis - 1], None
        for d, style, whose in ((diff, "-", "prediction"), (reference_diff, "--", "reference")):
            jump = d[0].abs().flatten(1).amax(1) if d.dim() > 2 else d[0].abs()
            (drawn,) = ax.semilogy(times.values, jump.clamp_min(1e-16).numpy(), style,
                                   color=colour, label=f"{whose}, {name} interface at cell {index}")
            colour = drawn.get_color()
    ax.axhline(float(interface_jump(reference, router).max()), color="0.4", ls=":",
               label="reference, largest over the test samples")
    ax.set(xlabel=f"time [{times.attrs.get('units', '1')}]", ylabel="|jump| of the stitched field",
           title=f"continuity across experts (test sample {samples[worst]}: the largest jump)")
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=120)


def describe(case: MoECase) -> str:
    """One line: the grid, the head and the training budget."""
    p, c, t = case.problem, case.constraint, case.training
    head = "soft constraint" if c.method == "soft" else (
        f"hard constraint, {c.experts} expert(s), {c.continuity}")
    grid = "x".join(map(str, (*case.space, p.nt)))
    return (f"{p.name.replace('_', '-')} {grid}, FNO basis N={case.model.basis}, {head}, "
            f"{t.iterations} Adam steps ({t.loss} loss), {p.train}/{p.test} samples")


def headline(result: dict) -> str:
    """The held-out error with the threshold's verdict, and the interface jump (a hard
    head's) beside the reference's own (the data jump across the interfaces too); the
    training steps' converged inner solves and, where some did not converge, the test
    evaluation's."""
    converged = result.get("inner_solves_converged")
    inner = "" if converged is None else f", inner solves converged {100 * converged:.0f} %"
    kink = result.get("cells_at_kink")
    inner += "" if kink is None else f", cells at the kink of R {100 * kink:.2f} %"
    test = result.get("test_inner_solves_converged")
    if test is not None and test < 1:
        inner += (f", {100 * (1 - test):.3g} % of the test evaluation's inner solves did not "
                  "converge")
    jump = result["interface_jump"]
    jump = "" if jump is None else (f"interface jump {jump:.1e} (the reference's "
                                    f"{result['reference_jump']:.1e}), ")
    return (f"test relative L2 {result['rel_l2']:.3e}{threshold_verdict(result)}, "
            f"{jump}{result['seconds_per_iteration']:.2f} s per step{inner}")


KIND = CaseKind(
    name="moe",
    summary="hard constraints with a mixture of experts on an FNO basis (diffusion-sorption, "
            "Navier-Stokes)",
    schema=MoECase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.training.iterations,
    checkpoint=CHECKPOINT,
)
