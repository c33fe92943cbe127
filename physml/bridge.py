r"""PyTorch autograd over the Warp solvers: differentiable steps and rollouts.

:func:`rollout` runs a solver on a PyTorch tensor (CPU or CUDA, zero-copy through
``wp.from_torch``/``wp.to_torch``) and returns the saved states as a tensor whose gradient flows
to the initial state and to the solver's physical parameters (``nu``, ``beta``, ``rho``, ...).

Backward pass: for each step $u_{s} = \Phi(u_{s-1}; p)$, in reverse, the step is re-run on a
fresh ``wp.Tape`` and its adjoint kernels give $\bar u_{s-1} = (\partial\Phi/\partial u)^T \bar u_s$
and $\bar p \mathrel{+}= (\partial\Phi/\partial p)^T \bar u_s$ (implicit solves add their own
transpose solve). Each call starts from zeroed buffers, so calling backward twice on one graph
gives the same gradient.

Memory: without checkpointing the forward pass keeps all $n + 1$ states. With
``checkpoint_every=k`` it keeps every $k$-th state and, in the backward pass, recomputes one
segment of $k$ states at a time, so at most $\lceil n/k\rceil + k$ states are held at once
($\approx 2\sqrt n$ for ``"auto"``, $k = \lceil\sqrt n\rceil$); the price is one extra forward
pass (backward costs about 2 forward passes plus the adjoint kernels, instead of 1 + adjoint).
These counts exclude the returned tensor, which holds the ``n // save_every + 1`` saved states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import warp as wp
from torch.autograd.function import once_differentiable

from .solvers.base import GridSolver, check_counts
from .solvers.errors import BlowUpError

_TORCH_DTYPES = {wp.float32: torch.float32, wp.float64: torch.float64}


@dataclass
class RolloutMemory:
    """Counts the states a rollout holds for its backward pass.

    Attributes:
        peak_states: the largest number of states held at once (forward and backward).
    """

    peak_states: int = 0

    def observe(self, n_states: int) -> None:
        self.peak_states = max(self.peak_states, n_states)


def rollout(
    solver: GridSolver,
    u0: torch.Tensor,
    n_steps: int,
    save_every: int = 1,
    params: dict[str, torch.Tensor] | None = None,
    checkpoint_every: int | str | None = None,
    memory: RolloutMemory | None = None,
) -> torch.Tensor:
    """Differentiable rollout of ``solver`` from ``u0``.

    Args:
        solver: any :class:`~physml.solvers.GridSolver` with ``dt`` set.
        u0: initial state, shape ``grid.shape``, on the solver's device, in its dtype.
        n_steps: number of time steps.
        save_every: keep every ``save_every``-th state.
        params: physical parameters as tensors (scalars or shape ``(k,)``), by name in
            ``solver.parameter_names``; the others keep the solver's values (no gradient).
        checkpoint_every: ``None`` (keep all states), an integer segment length, or
            ``"auto"`` ($\\lceil\\sqrt{n}\\rceil$, memory $O(\\sqrt n)$ states).
        memory: optional :class:`RolloutMemory` that records the peak number of held states.

    Returns:
        Tensor of shape ``(n_steps // save_every + 1, *grid.shape)``.

    Raises:
        ValueError: a parameter outside its range (the check of the solver's constructor,
            :func:`~physml.solvers.parameters.check_parameters`), or a bad state or count.
        UnstableStepError: ``dt`` too large for ``u0`` with these parameters.
        BlowUpError: a NaN/Inf appeared (with the step).
    """
    n_steps, save_every = check_counts(n_steps, save_every)
    solver._require_dt()
    _check_tensor(solver, u0, "u0")
    if not torch.isfinite(u0).all():
        raise ValueError("u0 contains NaN/Inf values; the state must be finite")
    values = _parameter_tensors(solver, u0, params or {})
    given = {n: v.detach().cpu().numpy() for n, v in zip(solver.parameter_names, values)}
    solver.with_parameters(**given).check_stability(u0.detach().cpu().numpy())
    segment = _segment_length(checkpoint_every, n_steps)
    return _Rollout.apply(solver, n_steps, save_every, segment, memory, u0, *values)


def step(
    solver: GridSolver, u: torch.Tensor, params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """One differentiable time step of ``solver``: ``u`` of shape ``grid.shape`` in and out."""
    return rollout(solver, u, 1, params=params)[-1]


def _check_tensor(solver: GridSolver, t: torch.Tensor, name: str) -> None:
    expected = _TORCH_DTYPES[solver.dtype]
    if tuple(t.shape) != solver.grid.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {solver.grid.shape}")
    if t.dtype != expected:
        raise ValueError(f"{name} has dtype {t.dtype}; the solver uses {expected}")
    if str(wp.device_from_torch(t.device)) != solver.device:
        raise ValueError(f"{name} is on {t.device}; the solver runs on {solver.device}")


def _parameter_tensors(
    solver: GridSolver, like: torch.Tensor, params: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    unknown = set(params) - set(solver.parameter_names)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for {type(solver).__name__}; "
            f"allowed: {', '.join(solver.parameter_names)}"
        )
    defaults = solver.parameters()
    return [
        torch.as_tensor(params.get(name, defaults[name])).to(dtype=like.dtype, device=like.device)
        for name in solver.parameter_names
    ]


def _segment_length(checkpoint_every: int | str | None, n_steps: int) -> int | None:
    if checkpoint_every is None:
        return None
    if checkpoint_every == "auto":
        return max(1, math.ceil(math.sqrt(n_steps)))
    if isinstance(checkpoint_every, int) and checkpoint_every >= 1:
        return checkpoint_every
    raise ValueError(
        f"checkpoint_every={checkpoint_every!r} must be None, 'auto' or a positive integer"
    )


def _warp(t: torch.Tensor, grad: torch.Tensor | None = None) -> wp.array:
    """Zero-copy flat Warp view of a contiguous tensor (with an attached gradient buffer)."""
    flat = t.detach().contiguous().reshape(-1)
    return wp.from_torch(flat) if grad is None else wp.from_torch(flat, grad=grad.reshape(-1))


def _advance(solver: GridSolver, u: torch.Tensor, params: dict[str, wp.array]) -> torch.Tensor:
    return wp.to_torch(solver.advance(_warp(u), params))


def _vjp(
    solver: GridSolver, u: torch.Tensor, values: list[torch.Tensor], adjoint: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Vector-Jacobian products of one step $\\Phi$ with the adjoint $\\bar u$.

    Returns $(\\partial\\Phi/\\partial u)^T\\bar u$ and $(\\partial\\Phi/\\partial p)^T\\bar u$.
    """
    grad_u = torch.zeros_like(u)
    grad_p = [torch.zeros(v.numel(), dtype=v.dtype, device=v.device) for v in values]
    params = {name: _warp(v, g) for name, v, g in zip(solver.parameter_names, values, grad_p)}
    tape = wp.Tape()
    with tape:
        out = solver.advance(_warp(u, grad_u), params, tape=tape)
    tape.backward(grads={out: _warp(adjoint)})
    return grad_u, grad_p


class _Rollout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, solver, n_steps, save_every, segment, memory, u0, *values):
        memory = memory if memory is not None else RolloutMemory()
        params = {n: _warp(v) for n, v in zip(solver.parameter_names, values)}
        keep_every = 1 if segment is None else segment
        flat0 = u0.detach().contiguous().reshape(-1)
        held = {0: flat0}
        saved = [flat0]
        u = flat0
        last_good, good_state = 0, flat0
        for s in range(1, n_steps + 1):
            u = _advance(solver, u, params)
            if s % solver.check_every == 0 or s == n_steps:
                if not torch.isfinite(u).all():
                    raise BlowUpError(
                        step=s,
                        t=s * solver.dt,
                        last_good_step=last_good,
                        last_good_state=good_state.cpu().numpy().reshape(solver.grid.shape),
                    )
                last_good, good_state = s, u
            if s % keep_every == 0 and s < n_steps:
                held[s] = u
            if s % save_every == 0:
                saved.append(u)
            memory.observe(len(held))
        ctx.solver, ctx.n_steps, ctx.save_every, ctx.keep_every = (
            solver,
            n_steps,
            save_every,
            keep_every,
        )
        ctx.held, ctx.memory = held, memory
        ctx.save_for_backward(*values)
        return torch.stack(saved).reshape(len(saved), *solver.grid.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        solver, n, save_every, k = ctx.solver, ctx.n_steps, ctx.save_every, ctx.keep_every
        values = list(ctx.saved_tensors)
        params = {name: _warp(v) for name, v in zip(solver.parameter_names, values)}
        grad_out = grad_out.reshape(grad_out.shape[0], -1)
        held = dict(ctx.held)
        adj = torch.zeros_like(grad_out[0])
        adj_p = [torch.zeros(v.numel(), dtype=v.dtype, device=v.device) for v in values]
        for start in sorted(held, reverse=True):
            end = min(start + k, n)
            states = [held.pop(start)]
            for _ in range(start + 1, end):
                states.append(_advance(solver, states[-1], params))
            ctx.memory.observe(len(held) + len(states))
            for s in range(end, start, -1):
                if s % save_every == 0:
                    adj = adj + grad_out[s // save_every]
                adj, dp = _vjp(solver, states[s - start - 1], values, adj)
                adj_p = [a + d for a, d in zip(adj_p, dp)]
        adj = adj + grad_out[0]
        grads_p = [g.reshape(v.shape) for g, v in zip(adj_p, values)]
        return (None, None, None, None, None, adj.reshape(solver.grid.shape), *grads_p)
