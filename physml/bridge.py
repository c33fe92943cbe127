r"""PyTorch autograd over the Warp solvers: differentiable steps and rollouts, batched.

:func:`rollout` runs a solver on a PyTorch tensor (CPU or CUDA, zero-copy through
``wp.from_torch``/``wp.to_torch``) and returns the saved states as a tensor whose gradient flows
to the initial state and to the solver's physical parameters (``nu``, ``beta``, ``rho``, ...).
A batch of states ``(B, *grid.shape)`` advances in one launch per stage (solvers on the fused
explicit path; IMEX and PDEs with their own right-hand side run sample by sample) with
parameters per sample ``(B,)`` or as fields; the result is ``(B, T, *grid.shape)``.

**Dtypes.** The solver's dtype is the compute dtype. Floating-point inputs (state and
parameters) are converted to it with ``Tensor.to``, which autograd follows, so each gradient
comes back in its input's dtype; the output is in the solver's dtype. Other dtypes are refused.
Inputs must be on the solver's device (never moved silently).

**Where it is not differentiable.** The MUSCL slope limiters (minmod, van Leer, MC) and the
Rusanov speed $\max(|u_L|, |u_R|)$ are piecewise smooth: at a kink (a slope changing sign at
an extremum, equal left and right slopes for minmod/MC, $|u_L| = |u_R|$) the backward pass
returns the derivative of the branch the forward pass took, a one-sided derivative, and
finite differences across the kink disagree with it. Linear fluxes, diffusion and the
reactions are smooth.

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

import numpy as np
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
        u0: initial state, shape ``grid.shape``, or a batch ``(B, *grid.shape)``, on the
            solver's device (floating point; converted to the solver's dtype).
        n_steps: number of time steps.
        save_every: keep every ``save_every``-th state.
        params: physical parameters as tensors, by name in ``solver.parameter_names``: one
            value (``()`` or ``(1,)``; ``(ndim,)`` for a velocity), one per sample ``(B,)``
            (``(B, ndim)``), or a field ``(B, *grid.shape)``, ``(1, *grid.shape)`` (or
            ``grid.shape`` for one state) scaling its term cell by cell
            (:meth:`~physml.solvers.GridSolver.batch_parameter_arrays`). The others keep the
            solver's values (no gradient).
        checkpoint_every: ``None`` (keep all states), an integer segment length, or
            ``"auto"`` ($\\lceil\\sqrt{n}\\rceil$, memory $O(\\sqrt n)$ states).
        memory: optional :class:`RolloutMemory` that records the peak number of held states.

    Returns:
        ``(n_steps // save_every + 1, *grid.shape)``, or ``(B, n_steps // save_every + 1,
        *grid.shape)`` for a batch, in the solver's dtype.

    Raises:
        ValueError: a parameter outside its range or of another shape (the checks of
            :meth:`~physml.solvers.GridSolver.batch_parameter_arrays`), or a bad state,
            dtype, device or count.
        UnstableStepError: ``dt`` too large for a sample's ``u0`` and parameters.
        BlowUpError: a NaN/Inf appeared (with the step).
    """
    n_steps, save_every = check_counts(n_steps, save_every)
    solver._require_dt()
    batched = u0.dim() == solver.grid.ndim + 1
    u0 = _converted(solver, u0, "u0")
    batch = u0.shape[0] if batched else 1
    expected = (batch, *solver.grid.shape) if batched else solver.grid.shape
    if tuple(u0.shape) != tuple(expected):
        raise ValueError(f"u0 has shape {tuple(u0.shape)}; expected {solver.grid.shape} or "
                         f"(B, *{solver.grid.shape})")
    if not torch.isfinite(u0).all():
        raise ValueError("u0 contains NaN/Inf values; the state must be finite")
    given = {n: _converted(solver, torch.as_tensor(v, device=u0.device), n)
             for n, v in (params or {}).items()}
    arrays = solver.batch_parameter_arrays(batch, {n: v.detach().cpu().numpy()
                                                   for n, v in given.items()})
    states = u0.detach().cpu().numpy().reshape(batch, -1).astype("float64")
    for b in range(batch):
        solver._sample_solver(arrays, b, solver.dt).check_stability(states[b])
    if batched and batch > 1 and not solver.fused:
        return torch.stack([
            rollout(solver, u0[b], n_steps, save_every,
                    {n: _sample(solver, n, v, arrays[n], b) for n, v in given.items()},
                    checkpoint_every, memory)
            for b in range(batch)
        ])
    values = [given[n].reshape(arrays[n].shape) if n in given else _tensor(arrays[n], u0)
              for n in solver.parameter_names]
    segment = _segment_length(checkpoint_every, n_steps)
    flat = _Rollout.apply(solver, n_steps, save_every, segment, memory, u0.reshape(-1), *values)
    out = flat.reshape(flat.shape[0], batch, *solver.grid.shape)
    return out.transpose(0, 1) if batched else out[:, 0]


def step(
    solver: GridSolver, u: torch.Tensor, params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """One differentiable time step of ``solver``: ``u`` of shape ``grid.shape`` (or
    ``(B, *grid.shape)``) in and out."""
    out = rollout(solver, u, 1, params=params)
    return out[:, -1] if u.dim() == solver.grid.ndim + 1 else out[-1]


def _converted(solver: GridSolver, t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` in the solver's dtype (floating point only), checked to be on its device."""
    if not torch.is_floating_point(t):
        raise ValueError(f"{name} has dtype {t.dtype}; expected a floating-point tensor "
                         f"(converted to the solver's {_TORCH_DTYPES[solver.dtype]})")
    if str(wp.device_from_torch(t.device)) != solver.device:
        raise ValueError(f"{name} is on {t.device}; the solver runs on {solver.device}")
    return t.to(_TORCH_DTYPES[solver.dtype])


def _sample(solver: GridSolver, name: str, value: torch.Tensor, array: wp.array,
            b: int) -> torch.Tensor:
    """Sample ``b``'s value of a parameter given for a batch."""
    shaped = value.reshape(array.shape)
    per_sample = array.shape[0] > 1 and (array.ndim == 2 or name != solver.velocity_parameter)
    return shaped[b] if per_sample else shaped


def _unbatched(flat: np.ndarray, solver: GridSolver) -> np.ndarray:
    """A flat state as ``grid.shape`` (one sample) or ``(B, *grid.shape)``."""
    states = flat.reshape(-1, *solver.grid.shape)
    return states[0] if states.shape[0] == 1 else states


def _tensor(array: wp.array, like: torch.Tensor) -> torch.Tensor:
    """A solver-held parameter array as a tensor (no gradient)."""
    return torch.as_tensor(array.numpy(), dtype=like.dtype, device=like.device)


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
    """Zero-copy Warp view of a contiguous tensor, same shape (with a gradient buffer)."""
    t = t.detach().contiguous()
    return wp.from_torch(t) if grad is None else wp.from_torch(t, grad=grad)


def _advance(solver: GridSolver, u: torch.Tensor, params: dict[str, wp.array]) -> torch.Tensor:
    return wp.to_torch(solver.advance(_warp(u), params))


def _vjp(
    solver: GridSolver, u: torch.Tensor, values: list[torch.Tensor], adjoint: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Vector-Jacobian products of one step $\\Phi$ with the adjoint $\\bar u$.

    Returns $(\\partial\\Phi/\\partial u)^T\\bar u$ and $(\\partial\\Phi/\\partial p)^T\\bar u$.
    """
    grad_u = torch.zeros_like(u)
    grad_p = [torch.zeros_like(v) for v in values]
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
                        last_good_state=_unbatched(good_state.cpu().numpy(), solver),
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
        return torch.stack(saved)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        solver, n, save_every, k = ctx.solver, ctx.n_steps, ctx.save_every, ctx.keep_every
        values = list(ctx.saved_tensors)
        params = {name: _warp(v) for name, v in zip(solver.parameter_names, values)}
        grad_out = grad_out.reshape(grad_out.shape[0], -1)
        held = dict(ctx.held)
        adj = torch.zeros_like(grad_out[0])
        adj_p = [torch.zeros_like(v) for v in values]
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
        return (None, None, None, None, None, adj, *adj_p)
