r"""Fitting a :class:`~.learned.FactorModel` to systems of one family, and measuring it.

A :class:`TrainingSystem` is one matrix with a solution and right-hand side from the family's
distribution (scaled as in :mod:`.graph`). :func:`fit` runs Adam on mini-batches of systems
(block-diagonal graphs) with one of the losses of :mod:`.losses` (the loop,
:func:`adam_on_batches`, also trains the smoother of :mod:`.smoother`); :func:`mean_iterations`
counts PCG iterations of any preconditioner factory over held-out systems, the measure the
training is for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
import torch
import warp as wp

from ..devices import require_torch_device
from ..errors import NonFiniteLossError, adam_can_step
from ..solvers.errors import whole_number
from ..solvers.linalg import CsrOperator, LinearOperator, Preconditioner, cg, csr_from_scipy
from ..solvers.linalg.factor_network import require_symmetric
from ..solvers.linalg.linear_operator import require_finite
from ..solvers.runtime import warp_device
from .graph import SystemGraph, batch_graphs, system_graph
from .learned import FactorModel
from .losses import factor_loss

System = TypeVar("System")


@dataclass
class TrainingSystem:
    """A system $A x = b$ as the network sees it: its graph and the scaled x and b (n,)."""

    graph: SystemGraph
    x: torch.Tensor
    b: torch.Tensor

    def to(self, device: torch.device | str) -> TrainingSystem:
        """This system on ``device`` ("cpu", "cuda", "cuda:N"; a ValueError naming it and what
        is allowed or available otherwise)."""
        device = require_torch_device(device)
        return TrainingSystem(self.graph.to(device), self.x.to(device), self.b.to(device))


def training_system(matrix: sp.spmatrix | sp.sparray, x: np.ndarray, b: np.ndarray
                    ) -> TrainingSystem:
    """Scale ``x`` and ``b`` of $A x = b$: $\\tilde x = D^{1/2}x$, $\\tilde b = D^{-1/2}b$.

    Raises:
        ValueError: b or x is zero (the data loss divides by their norms), is not (n,) for
            an (n, n) matrix or has a non-finite entry, or the matrix has one or is not
            symmetric.
    """
    n = matrix.shape[0]
    for name, v in (("b", b), ("x", x)):
        if np.shape(v) != (n,):
            raise ValueError(f"{name} has shape {np.shape(v)}; the matrix is {matrix.shape}, so "
                             f"{name} needs ({n},)")
    given = sp.csr_matrix(matrix)
    square = sp.csr_matrix(given, dtype=np.float64)
    require_finite(square)
    require_symmetric(given)  # in its own precision: float32 a few roundings, as the factor
    for name, v in (("b", b), ("x", x)):
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise ValueError(f"{name} has the non-finite entry {np.asarray(v)[bad[0]]} at index "
                             f"{bad[0]}; a training system needs finite values")
        if not np.any(np.asarray(v)):
            raise ValueError(f"{name} is zero; a training system needs a nonzero right-hand side "
                             "and solution (the data loss is relative to their norms)")
    graph = system_graph(matrix)
    d = graph.sqrt_diagonal
    return TrainingSystem(graph, torch.as_tensor(x, dtype=torch.float64) * d,
                          torch.as_tensor(b, dtype=torch.float64) / d)


def fit(model: FactorModel, systems: Sequence[TrainingSystem], *, loss: str, steps: int,
        learning_rate: float = 3e-3, batch_size: int = 4, seed: int = 0,
        on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Adam on ``loss`` over random mini-batches of ``systems``.
    ``on_step(updates_done, loss)`` follows each update (counted from 1).

    Args:
        model: the factor network, trained in place.
        systems: the training systems (:func:`training_system`).
        loss: "data", "frobenius" or "combined" (:func:`~physml.preconditioners.factor_loss`).
        steps: Adam updates.
        learning_rate: Adam's step size.
        batch_size: systems per update, drawn without replacement within an update.
        seed: seeds the mini-batches and the Frobenius probes (not PyTorch's global
            generator: the caller's random stream is left as it was).
        on_step: called after each update with the updates done (from 1) and that update's
            loss as a float; None: no callback.

    Returns:
        The history, a list of one float per step: entry k - 1 the mini-batch loss update k
        was taken on (before it). The model, trained in place, keeps no history.

    Raises:
        ValueError: an unknown loss, no systems, or steps or batch_size not whole numbers
            (>= 0 and >= 1).
        NonFiniteLossError: the loss or a gradient turned NaN/Inf (names the step, which is
            not taken).
    """
    if not systems:
        raise ValueError("systems is empty; fit needs at least one training system")

    def batch_loss(batch: list[TrainingSystem], generator: torch.Generator) -> torch.Tensor:
        graph = batch_graphs([s.graph for s in batch])
        x, b = torch.cat([s.x for s in batch]), torch.cat([s.b for s in batch])
        return factor_loss(model.kind, loss, graph, model.scaled_factor(graph), x, b, generator)

    return adam_on_batches(model, systems, batch_loss, steps=steps, learning_rate=learning_rate,
                           batch_size=batch_size, seed=seed, on_step=on_step)


def adam_on_batches(model: FactorModel, systems: Sequence[System],
                    batch_loss: Callable[[list[System], torch.Generator], torch.Tensor], *,
                    steps: int, learning_rate: float, batch_size: int, seed: int,
                    on_step: Callable[[int, float], None] | None, cosine: bool = False
                    ) -> list[float]:
    """Adam on ``batch_loss(batch, generator)`` over random mini-batches of ``systems`` (the
    learning rate decayed to 0 on a cosine where ``cosine``); ``seed`` seeds the batches and
    the generator (PyTorch's global generator is left as it was). Returns the loss per step;
    ``on_step(updates_done, loss)`` follows each update (counted from 1).

    Raises:
        ValueError: steps or batch_size not whole numbers (>= 0 and >= 1), or a
            learning_rate not > 0.
        NonFiniteLossError: the loss or a gradient turned NaN/Inf (names the step, which is
            not taken).
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be > 0 (e.g. 3e-3)")
    steps = whole_number(steps, "steps", 0)
    batch_size = whole_number(batch_size, "batch_size", 1)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
                if cosine else None)
    history = []
    for step in range(steps):
        chosen = rng.choice(len(systems), size=min(batch_size, len(systems)), replace=False)
        value = batch_loss([systems[k] for k in chosen], generator)
        optimiser.zero_grad()
        value.backward()
        if not adam_can_step(value.detach(), model.parameters()):
            raise NonFiniteLossError(step + 1)
        optimiser.step()
        if schedule is not None:
            schedule.step()
        history.append(value.item())
        if on_step is not None:
            on_step(step + 1, history[-1])  # the updates done, as the NaN error counts them
    return history


def mean_iterations(factory: Callable[[LinearOperator], Preconditioner],
                    systems: Sequence[tuple[sp.spmatrix, np.ndarray]], rtol: float = 1e-8,
                    device: str = "cpu") -> float:
    """Mean PCG iterations to ``rtol`` over ``systems``, ``(A, b)`` pairs (a SciPy sparse SPD
    matrix and a NumPy right-hand side; float64, zero initial guess) on ``device`` (a name or a
    ``torch.device``), each preconditioned by ``factory(A)`` (a factory of
    :data:`~physml.solvers.linalg.PRECONDITIONERS` or a
    :class:`~physml.preconditioners.LearnedPreconditioner`)."""
    device = warp_device(device)
    counts = []
    for matrix, b in systems:
        A = CsrOperator(csr_from_scipy(matrix, wp.float64, device))
        rhs = wp.array(np.asarray(b, dtype=np.float64), dtype=wp.float64, device=device)
        counts.append(cg(A, rhs, preconditioner=factory(A), rtol=rtol).iterations)
    return float(np.mean(counts))
