r"""Soft, single hard and mixture-of-experts hard constraints on one base network.

Problems (:data:`PROBLEMS`), each learned as the operator $\varphi = u(0) \mapsto u(t, \cdot)$
on a ``(nt, *space)`` grid from our own generator's data (a dataset spec, its solver and its
initial conditions, on a smaller grid):

* ``diffusion_sorption``: PDEBench's 1D diffusion–sorption
  (:class:`~physml.constraints.DiffusionSorptionRows`), $t\in[0, 500]$ s, spec
  ``diffusion_sorption1d``; experts split $x$.
* ``navier_stokes``: 2D vorticity Navier–Stokes on the periodic unit square
  (:class:`~physml.constraints.NavierStokesRows`; the network's field is the streamfunction,
  the compared field the vorticity), spec ``navier_stokes2d``; experts split $x$ and $y$.

The base network is one :class:`~physml.fno.FNO` over $(t, x[, y])$ whose input is $u(0)$
broadcast in time and whose $N$ output channels are basis functions $b$. The three methods
differ only in how $b$ becomes $u$, and share the training loss (:class:`Loss`): ``PHYSICS``,
the paper's, is the mean squared residual rows of $u$ (no solution data); ``DATA`` is
$\lVert u - u_{ref}\rVert^2/\lVert u_{ref}\rVert^2$, plus ``soft_weight`` times the mean squared
rows for the soft head.

* soft: $u = b\cdot\omega$ with one learned $\omega$ for all samples (the rows as a penalty);
* hard: $\omega$ per sample from :class:`~physml.constraints.HardConstraint` with one block;
* MoE hard: the same with ``experts`` blocks (and its :class:`~physml.constraints.Continuity`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..constraints import (
    BlockRouter,
    Continuity,
    DiffusionSorptionRows,
    HardConstraint,
    LevenbergMarquardt,
    NavierStokesRows,
    PartitionOfUnity,
    UnconvergedSolveWarning,
    interface_jump,
)
from ..datasets.grid_samples import initial_state, solve_batch
from ..datasets.problems import build_solver
from ..datasets.spec import DatasetSpec, load_spec
from ..errors import NonFiniteLossError, adam_can_step
from ..fno import FNO
from ..interrupts import raise_pending, step_loop
from .distributed import agreed_stop, average, average_gradients, from_first_rank, shard

if TYPE_CHECKING:
    from ..solvers.base import GridSolver

Rows = DiffusionSorptionRows | NavierStokesRows


@dataclass(frozen=True)
class MoEProblem:
    """A problem of this module: its dataset ``spec`` and its residual rows on a grid.

    ``rows(space_shape, dt, spec)`` builds the rows for ``dt`` seconds between levels, with
    the spec's physical parameters.
    """

    spec: str
    rows: Callable[[tuple[int, ...], float, DatasetSpec], Rows]

    def load(self) -> DatasetSpec:
        return load_spec(self.spec)


PROBLEMS = {
    "diffusion_sorption": MoEProblem(
        "diffusion_sorption1d",
        lambda space, dt, spec: DiffusionSorptionRows(space[0], dt, **{
            name: value for name, value in spec.parameters.items()
            if name in {f.name for f in fields(DiffusionSorptionRows)}})),
    "navier_stokes": MoEProblem(
        "navier_stokes2d",
        lambda space, dt, spec: NavierStokesRows(*space, dt, nu=spec.parameters["nu"],
                                                 forcing=spec.parameters["forcing"])),
}


def problem_rows(name: str, space: tuple[int, ...], nt: int, t_end: float | None = None) -> Rows:
    """The rows of problem ``name`` on ``space`` cells and ``nt`` levels of $[0, t_{end}]$
    (the spec's $t_{end}$ by default)."""
    spec = PROBLEMS[name].load()
    return PROBLEMS[name].rows(space, (t_end or spec.t_end) / (nt - 1), spec)


def sample_setup(name: str, space: tuple[int, ...], nt: int, t_end: float | None
                 ) -> tuple[DatasetSpec, GridSolver]:
    """Problem ``name``'s dataset spec on the grid of ``space`` cells per axis (1 entry for
    ``diffusion_sorption``, 2 for ``navier_stokes``) with ``nt`` saved levels of
    $[0, t_{end}]$ (the spec's $t_{end}$ where ``t_end`` is None), and its solver on that
    grid, on the CPU, in the spec's dtype (the solver of :func:`trajectories`)."""
    spec = PROBLEMS[name].load()
    spec = spec.model_copy(update={"grid": list(space), "n_saves": nt,
                                   "t_end": t_end or spec.t_end})
    solver, _ = build_solver(spec.pde, tuple(space), dict(spec.parameter_grid()[0]),
                             dtype=spec.solver.dtype, device="cpu")
    return spec, solver


def initial_states(spec: DatasetSpec, solver: GridSolver, samples: int, first: int
                   ) -> np.ndarray:
    """The initial states of ``spec``'s sample seeds ``first, first + 1, ...``, ``samples``
    of them, on ``solver``'s grid: shape (S, *space), S = ``samples``, in the solver's dtype
    (``spec`` and ``solver`` as :func:`sample_setup` gives them)."""
    return np.stack([initial_state(spec, solver.grid, first + i)
                     for i in range(samples)]).astype(solver.np_dtype)


def initial_conditions(name: str, space: tuple[int, ...], samples: int, first: int = 0
                       ) -> torch.Tensor:
    """The ``u0`` (S, *space) of :func:`trajectories` without solving: sample seeds
    ``first, first + 1, ...`` of problem ``name``'s spec (what a timing of the layers needs)."""
    spec, solver = sample_setup(name, space, 2, None)
    return torch.from_numpy(initial_states(spec, solver, samples, first))


def trajectories(name: str, space: tuple[int, ...], nt: int, samples: int,
                 t_end: float | None = None, first: int = 0):
    """``samples`` trajectories of problem ``name``'s dataset spec on ``space`` cells and
    ``nt`` levels of $[0, t_{end}]$, sample seeds ``first, first + 1, ...``, in one batched
    solve: ``u0`` (S, *space), ``u`` (S, nt, *space), float64."""
    spec, solver = sample_setup(name, space, nt, t_end)
    u = solve_batch(spec, solver, initial_states(spec, solver, samples, first))
    return torch.from_numpy(u[:, 0].copy()), torch.from_numpy(u)


def expert_blocks(space_axes: int, experts: int) -> tuple[int, ...]:
    """Blocks of the ``(nt, *space)`` grid for ``experts`` space experts: ``(1, K)`` in 1D,
    ``(1, K / k_y, k_y)`` in 2D with $k_y$ the largest divisor of $K$ up to $\\sqrt K$."""
    if space_axes == 1:
        return 1, experts
    ky = max(d for d in range(1, math.isqrt(experts) + 1) if experts % d == 0)
    return 1, experts // ky, ky


class ConstrainedFNO(nn.Module):
    """$u(0)$ (B, *space) -> $u$ (B, nt, *space) through an FNO basis and a soft or hard head.

    Args:
        fno: an FNO over (t, *space) with one input and $N$ output channels.
        nt: time levels.
        constraint: a :class:`HardConstraint` or :class:`PartitionOfUnity`, or None for the
            soft head (one learned $\\omega$).
    """

    def __init__(self, fno: FNO, nt: int,
                 constraint: HardConstraint | PartitionOfUnity | None = None) -> None:
        super().__init__()
        self.fno, self.nt, self.constraint = fno, nt, constraint
        n = fno.project[-1].out_features
        self.omega = nn.Parameter(torch.full((n,), 1.0 / n)) if constraint is None else None

    def forward(self, u0: torch.Tensor) -> torch.Tensor:
        broadcast = u0[:, None, None].expand(-1, 1, self.nt, *u0.shape[1:])
        basis = self.fno(broadcast.to(next(self.fno.parameters()).dtype))
        if self.constraint is None:
            return torch.einsum("bn...,n->b...", basis, self.omega).to(u0.dtype)
        return self.constraint(basis, u0).to(u0.dtype)


def relative_l2(u: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-sample $\\lVert u - u_{ref}\\rVert / \\lVert u_{ref}\\rVert$, shape (B,)."""
    return (u - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)


class Loss(Enum):
    """The training loss (module docstring)."""

    PHYSICS = "physics"
    DATA = "data"


@dataclass(frozen=True)
class Budget:
    """Training shared by every method: Adam ``iterations`` at ``lr`` on ``batch`` samples."""

    iterations: int = 60
    lr: float = 3e-3
    batch: int = 4
    loss: Loss = Loss.PHYSICS
    soft_weight: float = 1.0


def build_model(method: str, rows: Rows, nt: int, *, basis: int, width: int,
                modes: tuple[int, ...], experts: int = 1,
                continuity: Continuity = Continuity.INTERFACE_ROWS,
                solver: LevenbergMarquardt, seed: int = 0, coloured: bool = True
                ) -> ConstrainedFNO:
    """``method`` is "soft" or "hard" (``experts`` space blocks, :func:`expert_blocks`; 1 is
    the single hard constraint); ``modes`` has one entry per grid axis (time first);
    ``coloured`` as in :class:`HardConstraint`. The FNO is initialised from ``seed`` so every
    method starts the same (PyTorch's global generator is left as it was)."""
    if method not in ("soft", "hard"):
        raise ValueError(f"method={method!r}; allowed: soft, hard")
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        fno = FNO(1, basis, modes, width=width, layers=3)
        if method == "soft":
            return ConstrainedFNO(fno, nt)
        return ConstrainedFNO(fno, nt, build_constraint(rows, nt, experts, continuity, solver,
                                                        coloured))


def build_constraint(rows: Rows, nt: int, experts: int, continuity: Continuity,
                     solver: LevenbergMarquardt, coloured: bool = True
                     ) -> HardConstraint | PartitionOfUnity:
    """The hard head of :func:`build_model` on ``experts`` space blocks.

    Raises:
        ValueError: an expert solves no row of the PDE (independent experts or a partition of
            unity on blocks narrower than the PDE's stencil reaches).
    """
    space = rows.space_shape
    router = BlockRouter((nt, *space), expert_blocks(len(space), experts),
                         periodic=(False, *[rows.periodic_space] * len(space)))
    if continuity is Continuity.PARTITION_OF_UNITY:
        return PartitionOfUnity(rows.rows, router, space, solver=solver,
                                align_constants=rows.level_constant_free,
                                condition_rows=rows.condition_rows)
    align = rows.level_constant_free and continuity is Continuity.INDEPENDENT
    return HardConstraint(rows.rows, router, space, continuity=continuity, solver=solver,
                          coloured=coloured, align_constants=align,
                          condition_rows=rows.condition_rows)


EVALUATE_EVERY = 10
"""Iterations between two test errors of :class:`MoETrainer` (``history[j]`` is the test
error after ``EVALUATE_EVERY * j`` iterations)."""


class MoETrainer:
    """Adam on a :class:`ConstrainedFNO` with the shared loss; resumable.

    Trains on ``train = (u0, u)`` and reports on ``test``. Under ``torch.distributed`` each
    process starts from rank 0's parameters and batch generator and takes its share of every
    batch (:mod:`~physml.train.distributed`); the losses are the mean over the processes. The
    test error is recorded every :data:`EVALUATE_EVERY` iterations from 0, the last
    iteration's included where it is one of them.
    :meth:`state_dict` holds the model, the optimiser, the batch generator, the step, the
    losses, the history, the inner solves' convergence and the training seconds, so a run
    resumed from it continues bitwise as the uninterrupted run.

    A hard head's implicit gradient holds at a minimum of its inner least squares: the fraction
    of inner solves that met their tolerance is recorded per iteration (``converged``) and
    reported, so that a tolerance or iteration cap the solve does not reach shows up; the
    final test evaluation reports its own (:func:`evaluate`). Rows that
    clip their field where it is not differentiable (``kink_share``, diffusion–sorption's $R$
    at $\\bar u \\le 0$) have the share of the training predictions' points at the clip recorded
    likewise (``cells_at_kink``): the implicit gradient is not the gradient there.

    Args:
        model: the network and its head (soft, hard or MoE hard).
        rows: the problem's residual rows (:class:`~physml.constraints.DiffusionSorptionRows`
            or :class:`~physml.constraints.NavierStokesRows`), the physics loss and the
            observed field.
        train, test: ``(u0, u)`` pairs of tensors, initial states (S, *space) and their
            trajectories (S, nt, *space).
        budget: iterations, learning rate, batch size, loss and soft weight.
        seed: seeds the batch generator (the order in which training samples are drawn).
    """

    def __init__(self, model: ConstrainedFNO, rows: Rows, train, test, budget: Budget,
                 seed: int = 0) -> None:
        self.model, self.rows, self.train, self.test, self.budget = (model, rows, train, test,
                                                                     budget)
        self.optimiser = torch.optim.Adam(model.parameters(), lr=budget.lr)
        self.generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        generator_state = self.generator.get_state().to(device)
        from_first_rank([*model.parameters(), *model.buffers(), generator_state])
        self.generator.set_state(generator_state.cpu())
        self.step, self.losses, self.history, self.seconds = 0, [], [], 0.0
        self.converged: list[float] = []
        self.at_kink: list[float] = []

    def _loss(self, pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss on the samples ``pick`` and the prediction it was taken on."""
        u0, u = self.train
        pred = self.model(u0[pick])
        physics = self.rows.rows(pred, u0[pick]).square().mean()
        if self.budget.loss is Loss.PHYSICS:
            return physics, pred
        loss = relative_l2(self.rows.observe(pred), u[pick]).square().mean()
        if self.model.constraint is None:
            loss = loss + self.budget.soft_weight * physics
        return loss, pred

    def fit(self, on_step: Callable[[dict], None] | None = None,
            on_checkpoint: Callable[[], None] | None = None, checkpoint_every: int = 50,
            saved_step: int | None = None) -> dict:
        """Train to ``budget.iterations``; ``on_step`` receives ``{"step", "loss"}`` after every
        iteration, ``on_checkpoint`` is called every ``checkpoint_every`` iterations, at the
        end, and at the iteration a stop deferred to its end
        (:func:`~physml.interrupts.stops_deferred`) is raised at. ``saved_step`` is the step
        of a checkpoint already kept when ``fit`` starts (a blow-up names it).

        Returns:
            The summary, one dict: :meth:`evaluate`'s keys, with ``history`` (the test errors,
            one every :data:`EVALUATE_EVERY` iterations from 0), ``losses`` (one per
            iteration), ``seconds_per_iteration``, ``inner_solves_converged`` and
            ``cells_at_kink``. The history is in the trainer too: ``losses`` and ``history``
            (kept across calls and in :meth:`state_dict`).

        Raises:
            NonFiniteLossError: the loss or a gradient became NaN/Inf (names the step; that
                step is not taken, so the model keeps its last finite parameters).
        """
        last_checkpoint = saved_step
        with step_loop():
            while self.step < self.budget.iterations:
                if self._owes_test_error():
                    self.history.append(self.evaluate()["test_rel_l2"])
                start = time.perf_counter()  # the training step alone, not the test evaluation
                pick = shard(torch.randperm(len(self.train[0]), generator=self.generator)
                             [: self.budget.batch])
                loss, pred = self._loss(pick)
                self.optimiser.zero_grad()
                with warnings.catch_warnings():  # the solves' convergence is recorded below
                    warnings.simplefilter("ignore", UnconvergedSolveWarning)
                    loss.backward()
                average_gradients(self.model)
                mean_loss = average(loss.detach())  # every process decides alike
                if not adam_can_step(mean_loss, self.model.parameters()):
                    raise NonFiniteLossError(self.step + 1, last_checkpoint)
                self.optimiser.step()
                self.losses.append(float(mean_loss))
                fraction = self._converged_fraction()
                if fraction is not None:  # a soft head solves nothing
                    self.converged.append(fraction)
                if hasattr(self.rows, "kink_share"):
                    self.at_kink.append(float(average(self.rows.kink_share(pred.detach()).mean())))
                self.seconds += time.perf_counter() - start
                self.step += 1
                if on_step is not None:
                    on_step({"step": self.step, "loss": self.losses[-1]})
                done = self.step == self.budget.iterations
                stopping = agreed_stop(self.train[0].device)  # every process at one step
                if on_checkpoint is not None and (self.step % checkpoint_every == 0 or done
                                                  or stopping):
                    on_checkpoint()
                    last_checkpoint = self.step
                if stopping:
                    raise_pending(stopping)
        summary = self.evaluate()
        if self._owes_test_error():  # the last step's, where one is due
            self.history.append(summary["test_rel_l2"])
        return {**summary, "history": list(self.history), "losses": list(self.losses),
                "seconds_per_iteration": self.seconds / max(self.step, 1),
                "inner_solves_converged": (float(np.mean(self.converged)) if self.converged
                                           else None),
                "cells_at_kink": float(np.mean(self.at_kink)) if self.at_kink else None}

    def _owes_test_error(self) -> bool:
        """Whether the history lacks the test error of this step, one of every
        :data:`EVALUATE_EVERY`."""
        return self.step % EVALUATE_EVERY == 0 and len(self.history) == self.step // EVALUATE_EVERY

    def _converged_fraction(self) -> float | None:
        """The fraction of the last forward pass's inner solves that converged (None without
        any: a soft head)."""
        solve = getattr(self.model.constraint, "last_solve", None)
        if solve is None:
            return None
        return float(average(solve.converged.double().mean()))

    def evaluate(self) -> dict:
        """Mean test relative L2 of the compared field and its largest interface jump, the
        test samples taken a training batch at a time."""
        return evaluate(self.model, self.rows, self.test, self.budget.batch)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "generator": self.generator.get_state(), "step": self.step,
                "losses": list(self.losses), "history": list(self.history),
                "converged": list(self.converged), "at_kink": list(self.at_kink),
                "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.step, self.seconds = state["step"], state["seconds"]
        self.losses, self.history = list(state["losses"]), list(state["history"])
        self.converged = list(state["converged"])
        self.at_kink = list(state.get("at_kink", []))  # older checkpoints lack it


def fit(model: ConstrainedFNO, rows: Rows, train, test, budget: Budget, seed: int = 0,
        on_step: Callable[[dict], None] | None = None) -> dict:
    """Train from scratch with :class:`MoETrainer`.

    Returns:
        The summary, one dict: that of :meth:`MoETrainer.fit` (its ``losses`` and ``history``
        hold the history).
    """
    return MoETrainer(model, rows, train, test, budget, seed).fit(on_step)


def predict(model: ConstrainedFNO, u0: torch.Tensor, batch: int) -> torch.Tensor:
    """The prediction (S, nt, *space) of ``u0`` (S, *space) without gradients, ``batch`` samples
    at a time: a hard head's least squares are solved per sample, so the chunks give the
    prediction of one batch of all S (to the rounding of batched kernels, which differs with
    the batch size) while holding the systems of ``batch`` samples only."""
    return _predict_solved(model, u0, batch)[0]


def _predict_solved(model: ConstrainedFNO, u0: torch.Tensor, batch: int
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`predict`, and whether each of its inner solves met its tolerance (bool, one per
    solve of every chunk; None for a soft head, which solves nothing)."""
    chunks, converged = [], []
    with torch.no_grad():
        for chunk in u0.split(batch):
            chunks.append(model(chunk))
            solve = getattr(model.constraint, "last_solve", None)
            if solve is not None:
                converged.append(solve.converged)
    return torch.cat(chunks), torch.cat(converged) if converged else None


def evaluate(model: ConstrainedFNO, rows: Rows, test, batch: int) -> dict:
    """Mean test relative L2 of the compared field (``rows.observe``), its largest interface
    jump (hard heads; 0 with one block), and the same measure on the reference: the floor a
    smooth field reaches on that grid. A soft head has no experts: both jumps are None (not
    measured). The test samples are predicted ``batch`` at a time (:func:`predict`);
    ``test_inner_solves_converged`` is the fraction of their inner solves that met the
    tolerance (None for a soft head): a test prediction whose solve stopped at the iteration
    cap shows there, where the training steps' fraction does not see it."""
    prediction, converged = _predict_solved(model, test[0], batch)
    pred = rows.observe(prediction)
    jump = reference = None
    if model.constraint is not None:
        jump = float(interface_jump(pred, model.constraint.router).max())
        reference = float(interface_jump(test[1], model.constraint.router).max())
    return {"test_rel_l2": float(relative_l2(pred, test[1]).mean()), "interface_jump": jump,
            "reference_jump": reference,
            "test_inner_solves_converged": (None if converged is None
                                            else float(converged.double().mean()))}
