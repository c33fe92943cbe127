r"""Soft, single hard and mixture-of-experts hard constraints on one base network.

Problem: PDEBench's 1D diffusion–sorption (:class:`~physml.constraints.DiffusionSorptionRows`),
learned as the operator $u_0 \mapsto u(t, x)$ on an ``(nt, nx)`` grid, $t\in[0, 500]$ s. The
data come from our generator (the ``diffusion_sorption1d`` dataset spec, its solver
:class:`~physml.solvers.DiffusionSorptionSolver1D` and its initial conditions, on a smaller grid).

The base network is one :class:`~physml.fno.FNO` over $(t, x)$ whose input is $u_0$ broadcast in
time and whose $N$ output channels are basis functions $b$. The three methods differ only in how
$b$ becomes $u$, and share the training loss (:class:`Loss`): ``PHYSICS``, the paper's, is the
mean squared residual rows of $u$ (no solution data); ``DATA`` is
$\lVert u - u_{ref}\rVert^2/\lVert u_{ref}\rVert^2$, plus ``soft_weight`` times the mean squared
rows for the soft head.

* soft: $u = b\cdot\omega$ with one learned $\omega$ for all samples (the rows as a penalty);
* hard: $\omega$ per sample from :class:`~physml.constraints.HardConstraint` with one block;
* MoE hard: the same with ``experts`` blocks (and its :class:`~physml.constraints.Continuity`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from torch import nn

from ..constraints import (
    BlockRouter,
    Continuity,
    DiffusionSorptionRows,
    HardConstraint,
    LevenbergMarquardt,
    interface_jump,
)
from ..datasets.generate import initial_state, solve_sample
from ..datasets.problems import build_solver
from ..datasets.spec import load_spec
from ..fno import FNO
from .distributed import average, average_gradients, shard

T_END = 500.0


def sorption_trajectories(nx: int, nt: int, samples: int, first: int = 0):
    """``samples`` trajectories of the ``diffusion_sorption1d`` spec on ``nx`` cells and ``nt``
    levels, sample seeds ``first, first + 1, ...``: ``u0`` (S, nx), ``u`` (S, nt, nx), float64."""
    spec = load_spec("diffusion_sorption1d").model_copy(update={"grid": [nx], "n_saves": nt})
    solver, _ = build_solver(spec.pde, (nx,), {}, dtype=spec.solver.dtype, device="cpu")
    u = np.stack([solve_sample(spec, solver, initial_state(spec, solver.grid, first + i))
                  for i in range(samples)])
    return torch.from_numpy(u[:, 0].copy()), torch.from_numpy(u)


class ConstrainedFNO(nn.Module):
    """$u_0$ (B, nx) -> $u$ (B, nt, nx) through an FNO basis and a soft or hard head.

    Args:
        fno: a 2D :class:`FNO` with one input and $N$ output channels.
        nt: time levels.
        constraint: a :class:`HardConstraint`, or None for the soft head (one learned $\\omega$).
    """

    def __init__(self, fno: FNO, nt: int, constraint: HardConstraint | None = None) -> None:
        super().__init__()
        self.fno, self.nt, self.constraint = fno, nt, constraint
        n = fno.project[-1].out_features
        self.omega = nn.Parameter(torch.full((n,), 1.0 / n)) if constraint is None else None

    def forward(self, u0: torch.Tensor) -> torch.Tensor:
        basis = self.fno(u0[:, None, None, :].expand(-1, 1, self.nt, -1).float())
        if self.constraint is None:
            return torch.einsum("bnij,n->bij", basis, self.omega).to(u0.dtype)
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


def build_model(method: str, rows: DiffusionSorptionRows, nt: int, *, basis: int, width: int,
                modes: tuple[int, int], experts: int = 1,
                continuity: Continuity = Continuity.INTERFACE_ROWS,
                solver: LevenbergMarquardt, seed: int = 0) -> ConstrainedFNO:
    """``method`` is "soft" or "hard" (``experts`` space blocks; 1 is the single hard
    constraint); the FNO is initialised from ``seed`` so every method starts the same."""
    torch.manual_seed(seed)
    fno = FNO(1, basis, modes, width=width, layers=3)
    if method == "soft":
        return ConstrainedFNO(fno, nt)
    if method != "hard":
        raise ValueError(f"method={method!r}; allowed: soft, hard")
    router = BlockRouter((nt, rows.nx), (1, experts))
    return ConstrainedFNO(fno, nt, HardConstraint(rows.rows, router, (rows.nx,),
                                                  continuity=continuity, solver=solver))


def fit(model: ConstrainedFNO, rows: DiffusionSorptionRows, train, test, budget: Budget,
        seed: int = 0, on_step: Callable[[dict], None] | None = None) -> dict:
    """Train on ``train = (u0, u)`` and report on ``test``: the final test relative L2 (mean),
    its history every 10 iterations, the training losses, the interface jump and the seconds per
    iteration. Under ``torch.distributed`` each process takes its share of every batch
    (:mod:`~physml.train.distributed`); the losses are the mean over the processes.
    ``on_step`` receives ``{"step", "loss"}`` after every iteration."""
    optimiser = torch.optim.Adam(model.parameters(), lr=budget.lr)
    generator = torch.Generator().manual_seed(seed)
    u0, u = train
    history, losses, start = [], [], time.perf_counter()
    for it in range(budget.iterations):
        if it % 10 == 0:
            history.append(evaluate(model, test)["test_rel_l2"])
        pick = shard(torch.randperm(len(u0), generator=generator)[: budget.batch])
        pred = model(u0[pick])
        physics = rows.rows(pred, u0[pick]).square().mean()
        if budget.loss is Loss.PHYSICS:
            loss = physics
        else:
            loss = relative_l2(pred, u[pick]).square().mean()
            if model.constraint is None:
                loss = loss + budget.soft_weight * physics
        optimiser.zero_grad()
        loss.backward()
        average_gradients(model)
        optimiser.step()
        losses.append(float(average(loss.detach())))
        if on_step is not None:
            on_step({"step": it, "loss": losses[-1]})
    seconds = (time.perf_counter() - start) / budget.iterations
    return {**evaluate(model, test), "history": history, "losses": losses,
            "seconds_per_iteration": seconds}


def evaluate(model: ConstrainedFNO, test) -> dict:
    """Mean test relative L2 and the largest interface jump (hard heads with experts)."""
    with torch.no_grad():
        pred = model(test[0])
    jump = 0.0
    if model.constraint is not None:
        jump = float(interface_jump(pred, model.constraint.router).max())
    return {"test_rel_l2": float(relative_l2(pred, test[1]).mean()), "interface_jump": jump}
