r"""PyTorch autograd over the Warp solvers: differentiable steps and rollouts, batched.

:func:`rollout` runs a solver on a PyTorch tensor (CPU or CUDA, zero-copy through
``wp.from_torch``/``wp.to_torch``) and returns the saved states as a tensor whose gradient flows
to the initial state and to the solver's physical parameters (``nu``, ``beta``, ``rho``, ...).
A batch of states ``(B, *grid.shape)`` advances in one launch per stage (solvers on the fused
explicit path; IMEX and PDEs with their own right-hand side run sample by sample) with
parameters per sample ``(B,)`` or as fields, and time steps per sample (``dt``, constants:
no gradient flows to them); the result is ``(B, T, *grid.shape)``.

**torch.func.** ``vmap`` over an unbatched rollout runs the vmapped samples as that one batched
rollout (its parameters per sample, shared or fields alike), so code written for one state
batches without change; ``grad``, ``vjp`` and ``jacrev`` (one reverse sweep per cotangent)
work on a rollout and on a vmapped one. Not supported: ``vmap`` over a gradient (per-sample
gradients: differentiate the batch's summed loss instead, the samples being independent),
forward-mode ``jvp``/``jacfwd``, second derivatives, and PyTorch's legacy batched cotangents
(``torch.autograd.grad(..., is_grads_batched=True)``, ``torch.autograd.functional.jacobian(...,
vectorize=True)``: refused, naming ``vectorize=False`` and ``jacrev``, which work).

**torch.compile.** :func:`rollout` and :func:`step` run eagerly under ``torch.compile``: the
graph breaks around each call (the model around it still compiles), the solver's Python and
Warp's calls are not traced, and a new input value does not recompile.

**Dtypes.** The solver's dtype is the compute dtype. Floating-point inputs (state and
parameters) are converted to it with ``Tensor.to``, which autograd follows, so each gradient
comes back in its input's dtype; the output is in the solver's dtype. Other dtypes are refused.
Inputs must be on the solver's device (never moved silently).

**Where it is not differentiable.** The MUSCL slope limiters (minmod, van Leer, MC) and the
Rusanov speed $\max(|u_L|, |u_R|)$ are piecewise smooth: at a kink (a slope changing sign at
an extremum; for minmod left and right slopes of equal size, for MC one three times the
other; $|u_L| = |u_R|$) the backward pass returns, cell by cell, the derivative of the branch
the forward pass took. Where one cell sits at a kink that is a one-sided derivative; where
several do at once (a linear profile puts every cell at minmod's) it mixes branches and need
not equal either one-sided derivative, and finite differences across the kink disagree with
it. So is upwind advection in its velocity
$\beta$: the upwind side follows $\operatorname{sign}\beta$, and at $\beta = 0$ (or a zero
component of a per-sample velocity) the derivative in $\beta$ is a one-sided one (in 1D,
that from $\beta > 0$). Diffusion and the reactions are smooth.

Backward pass: for each step $u_{s} = \Phi(u_{s-1}; p)$, in reverse,
$\bar u_{s-1} = (\partial\Phi/\partial u)^T \bar u_s$ and
$\bar p \mathrel{+}= (\partial\Phi/\partial p)^T \bar u_s$. On the CPU, the explicit steps of
the fused convection–diffusion–reaction solvers take their adjoint in native loops
(:mod:`physml.solvers.step_adjoint`: the step's stage inputs recomputed, each stage's
vector–Jacobian product vectorised over a padded copy of each sample, samples on host threads:
on 1D Burgers a rollout and its gradient 12–18× faster than with Warp's generated adjoint,
``benchmarks/bridge.py``); other
steps (IMEX, a PDE's own right-hand side, a GPU) are re-run on a fresh ``wp.Tape`` whose
generated adjoint kernels give the products (implicit solves add their own transpose solve).
The two agree to rounding (tests). Each call starts from zeroed buffers, so calling backward
twice on one graph gives the same gradient.

Memory: where no gradient can be asked for (gradients off, inference mode, or no input
that requires grad) the rollout holds no state beyond the saved ones, as ``solver.rollout``.
Otherwise, without checkpointing, the forward pass keeps all $n + 1$ states. With
``checkpoint_every=k`` it keeps every $k$-th state and, in the backward pass, recomputes one
segment of $k$ states at a time, so at most $\lceil n/k\rceil + k$ states are held at once
($\approx 2\sqrt n$ for ``"auto"``, $k = \lceil\sqrt n\rceil$); the price is one extra forward
pass (backward costs about 2 forward passes plus the adjoint kernels, instead of 1 + adjoint).
These counts exclude the returned tensor, which holds the ``n // save_every + 1`` saved states,
and the work arrays: the steps' own (about eight state-sized arrays) and, on the CPU's native
reverse pass, about $3s + 9$ more for a scheme of $s$ stages (18 for SSP-RK3: the stage inputs,
their cotangents and the parameters' per-cell cotangents) and one sample's padded block twice
per host thread.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import warp as wp

from .devices import require_tensor_device
from .eager import eager
from .linalg_bridge import forward_mode_refused, one_cotangent_only
from .solvers import step_adjoint
from .solvers.base import GridSolver
from .solvers.checks import check_counts
from .solvers.errors import BlowUpError, UnstableStepError, whole_number
from .solvers.host_threads import ForkSafeLock
from .solvers.implicit_diffusion import NonFiniteStepError
from .solvers.rk_stages import StageWork

__all__ = ["RolloutMemory", "rollout", "step"]

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


@eager  # the Warp steps run eagerly
def rollout(
    solver: GridSolver,
    u0: torch.Tensor,
    n_steps: int,
    save_every: int = 1,
    parameters: Mapping[str, torch.Tensor | npt.ArrayLike] | None = None,
    checkpoint_every: int | Literal["auto"] | None = None,
    memory: RolloutMemory | None = None,
    *,
    dt: float | npt.ArrayLike | torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable rollout of ``solver`` from ``u0``.

    Args:
        solver: any :class:`~physml.solvers.GridSolver`, with ``dt`` set unless ``dt`` is
            given.
        u0: initial state, shape ``grid.shape``, or a batch ``(B, *grid.shape)``, on the
            solver's device (floating point; converted to the solver's dtype).
        n_steps: number of time steps (a multiple of ``save_every``).
        save_every: keep every ``save_every``-th state.
        parameters: physical parameters by name in ``solver.parameter_names``, as tensors
            (numbers and arrays are constants, without gradient): one
            value (``()`` or ``(1,)``; ``(ndim,)`` for a velocity), one per sample ``(B,)``
            (``(B, ndim)``), or a field ``(B, *grid.shape)``, ``(1, *grid.shape)`` (or
            ``grid.shape`` for one state) scaling its term cell by cell
            (:meth:`~physml.solvers.GridSolver.batch_parameter_arrays`). The others keep the
            solver's values (no gradient).
        checkpoint_every: ``None`` (keep all states), an integer segment length, or
            ``"auto"`` ($\\lceil\\sqrt{n}\\rceil$, memory $O(\\sqrt n)$ states).
        memory: optional :class:`RolloutMemory` that records the peak number of held states.
        dt: time steps [s] replacing ``solver.dt``: one value, or one per sample ``(B,)``
            (a number, array or tensor), each positive and neither 0 nor infinity in the
            solver's dtype; each sample steps forward and back with its own, and the result
            is bitwise that of ``solver.rollout(..., dt=dt)``. A constant: no gradient flows
            to it, and a tensor that requires grad, or one a ``torch.func`` transform maps
            over (``vmap`` over ``dt``: pass the batch's ``(B,)`` time steps instead), is
            refused.

    Returns:
        ``(n_steps // save_every + 1, *grid.shape)``, or ``(B, n_steps // save_every + 1,
        *grid.shape)`` for a batch, in the solver's dtype.

    Raises:
        ValueError: a parameter outside its range or of another shape (the checks of
            :meth:`~physml.solvers.GridSolver.batch_parameter_arrays`), a bad state, dtype,
            device, count or time step, or a ``dt`` that requires grad or is vmapped.
        UnstableStepError: ``dt`` too large for a sample's ``u0`` and parameters.
        BlowUpError: a NaN/Inf appeared at a step ``solver.rollout`` checks (every saved
            step, every ``solver.check_every``-th step, the last; an IMEX step whose implicit
            solve finds its right-hand side NaN/Inf): its step, time and the last finite state
            (for a batch, of the first sample that blew up there), as ``solver.rollout`` gives
            them. No saved state holding a NaN/Inf is returned.
    """
    if not isinstance(solver, GridSolver):
        raise ValueError(f"solver is a {type(solver).__name__}; the bridge differentiates the "
                         "Warp grid solvers (physml.solvers.GridSolver: heat, advection, Burgers, "
                         "reaction-diffusion, sorption), not the spectral Navier-Stokes or the "
                         "phase-field solvers")
    n_steps, save_every = check_counts(n_steps, save_every)
    if dt is None:
        solver._require_dt()
    if not isinstance(u0, torch.Tensor):
        raise ValueError(f"u0 is a {type(u0).__module__}.{type(u0).__name__}; the bridge takes a "
                         "torch.Tensor (torch.as_tensor(u0)); solver.rollout takes NumPy arrays")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ValueError(f"parameters is a {type(parameters).__name__}; give a mapping of "
                         f"parameter name to value ({', '.join(solver.parameter_names)})")
    batched = u0.dim() == solver.grid.ndim + 1
    u0 = _converted(solver, u0, "u0")
    batch = u0.shape[0] if batched else 1
    expected = (batch, *solver.grid.shape) if batched else solver.grid.shape
    if tuple(u0.shape) != tuple(expected) or batch == 0:
        raise ValueError(f"u0 has shape {tuple(u0.shape)}; expected {solver.grid.shape} or "
                         f"(B, *{solver.grid.shape}) with B >= 1")
    steps = _time_steps(solver, dt, batch)
    given = {n: _parameter(solver, n, v, u0.device) for n, v in (parameters or {}).items()}
    shapes = solver.batch_parameter_shapes(batch, {n: tuple(v.shape) for n, v in given.items()})
    if batched and batch > 1 and not solver.fused:
        samples = [(u0[b], {n: _sample(solver, n, v.reshape(shapes[n]), b)
                            for n, v in given.items()}, _sample_dt(solver, steps, b))
                   for b in range(batch)]
        for u, p, h in samples:  # every sample's checks (a rollout of no step) before any runs
            rollout(solver, u, 0, parameters=p, dt=h)
        return _sample_rollouts(solver, samples, n_steps, save_every, checkpoint_every, memory)
    defaults = solver.parameter_arrays()
    values = [given[n].reshape(shapes[n]) if n in given else _tensor(defaults[n], u0)
              for n in solver.parameter_names]
    segment = _segment_length(checkpoint_every, n_steps)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (u0, *given.values()))):
        segment = max(n_steps, 1)  # no backward pass can run: hold no state beyond the saves
    # the backward pass steps a copy: the solver as it is now (dt, boundary conditions), even
    # if the caller changes it before calling backward
    flat = _Rollout.apply(copy.copy(solver), n_steps, save_every, segment, memory, _Held(),
                          steps, u0.reshape(-1), *values)
    out = flat.reshape(flat.shape[0], batch, *solver.grid.shape)
    return out.transpose(0, 1) if batched else out[:, 0]


def _sample_rollouts(solver: GridSolver, samples: list[tuple], n_steps: int, save_every: int,
                     checkpoint_every: int | str | None, memory: RolloutMemory | None
                     ) -> torch.Tensor:
    """A batch rolled out sample by sample (``samples``: each one's state, parameters and time
    step) as ``(B, T, *grid.shape)``; a blow-up is the one the batch's ``solver.rollout``
    reports (:func:`_earliest_blow_up`)."""
    outs = []
    for b, (u, p, h) in enumerate(samples):
        try:
            outs.append(rollout(solver, u, n_steps, save_every, p, checkpoint_every, memory,
                                dt=h))
        except BlowUpError as error:
            raise _earliest_blow_up(solver, samples[b + 1:], save_every, error) from None
    return torch.stack(outs)


def _earliest_blow_up(solver: GridSolver, later: list[tuple], save_every: int,
                      error: BlowUpError) -> BlowUpError:
    """The blow-up a batch's ``solver.rollout`` reports (its first checked step holding a
    NaN/Inf, and the first sample there), given the first sample that blew up, ``error``,
    and the samples after it (``later``: state, parameters, time step). Each of these runs,
    without gradient, to the first saved step at or after ``error.step``: the steps checked
    up to there are those of the whole rollout."""
    with torch.no_grad():
        for u, p, h in later:
            n_steps = -(-error.step // save_every) * save_every
            try:
                rollout(solver, u, n_steps, save_every, p, dt=h)
            except BlowUpError as other:
                if other.step < error.step:
                    error = other
    return error


@eager  # the Warp steps run eagerly
def step(
    solver: GridSolver,
    u: torch.Tensor,
    parameters: Mapping[str, torch.Tensor | npt.ArrayLike] | None = None,
) -> torch.Tensor:
    """One differentiable time step of ``solver``: ``u`` of shape ``grid.shape`` (or
    ``(B, *grid.shape)``) in and out."""
    out = rollout(solver, u, 1, parameters=parameters)
    return out[:, -1] if u.dim() == solver.grid.ndim + 1 else out[-1]


def _time_steps(solver: GridSolver, dt, batch: int) -> np.ndarray | None:
    """The time steps of :func:`rollout`: None for ``solver.dt``, else one per sample
    ``(batch,)`` in float64, checked as ``solver.rollout`` checks them."""
    if dt is None:
        return None
    if isinstance(dt, torch.Tensor):
        if torch._C._functorch.is_functorch_wrapped_tensor(dt):
            raise ValueError("dt is a tensor inside a torch.func transform (vmap over dt, or dt "
                             "an argument of grad/vjp); physml.bridge.rollout takes the time "
                             "steps as constants, so they cannot be mapped over: pass the "
                             "batch's time steps as dt of shape (B,) to one batched rollout of "
                             "u0 (B, *grid.shape)")
        if dt.requires_grad:
            raise ValueError("dt is a tensor that requires grad; physml.bridge.rollout takes "
                             "the time steps as constants (no gradient with respect to dt): "
                             "pass dt.detach()")
        dt = dt.detach().cpu().numpy()
    return solver.checked_time_steps(dt, batch)


def _sample_dt(solver: GridSolver, steps: np.ndarray | None, b: int) -> float:
    """Sample ``b``'s time step."""
    return solver.dt if steps is None else float(steps[b])


def _as_tensor(value, device: torch.device, name: str) -> torch.Tensor:
    """A parameter's value as a tensor: a tensor as it is, numbers and arrays in float64 (as
    given: neither rounded to PyTorch's float32 default nor yet to the solver's dtype)."""
    if isinstance(value, torch.Tensor):
        return value
    if value is None:
        raise ValueError(f"parameters[{name!r}] is None; give a number, array or tensor, or "
                         f"leave {name!r} out to keep the solver's value")
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)
    except (TypeError, ValueError) as err:
        raise ValueError(f"parameters[{name!r}] = {value!r} is not a number, array or tensor "
                         f"({err})") from None


def _parameter(solver: GridSolver, name: str, value, device: torch.device) -> torch.Tensor:
    """A parameter's value as a tensor in the solver's dtype. A value that the conversion
    narrows (a number, an array or a float64 tensor for a float32 solver) has its values
    checked as given first (:meth:`~physml.solvers.GridSolver.check_parameter_values`), so
    that one the conversion would round to 0 or infinity is refused as the value it is, with
    the cure; inside a ``torch.func`` transform, where its values cannot be read, the forward
    pass checks the converted values."""
    given = _as_tensor(value, device, name)
    converted = _converted(solver, given, name)
    if converted.dtype.itemsize < given.dtype.itemsize and \
            not torch._C._functorch.is_functorch_wrapped_tensor(given):
        solver.check_parameter_values(name, given.detach().cpu().numpy())
    return converted


def _converted(solver: GridSolver, t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` in the solver's dtype (floating point only), checked to be on its device."""
    if not torch.is_floating_point(t):
        raise ValueError(f"{name} has dtype {t.dtype}; expected a floating-point tensor "
                         f"(converted to the solver's {_TORCH_DTYPES[solver.dtype]})")
    require_tensor_device(name, t, solver.device)
    return t.to(_TORCH_DTYPES[solver.dtype])


def _sample(solver: GridSolver, name: str, value: torch.Tensor, b: int) -> torch.Tensor:
    """Sample ``b``'s value of a parameter given for a batch, in the shape
    :meth:`~physml.solvers.GridSolver.batch_parameter_shapes` gives."""
    return value[b] if _per_sample(solver, name, value.shape) else value


def _per_sample(solver: GridSolver, name: str, shape: tuple[int, ...]) -> bool:
    """Whether a parameter of this (batch) shape holds one value or field per sample."""
    return shape[0] > 1 and (len(shape) == 2 or name != solver.velocity_parameter)


def _tensor(array: wp.array, like: torch.Tensor) -> torch.Tensor:
    """A solver-held parameter array as a tensor (no gradient)."""
    return torch.as_tensor(array.numpy(), dtype=like.dtype, device=like.device)


def _segment_length(checkpoint_every: int | str | None, n_steps: int) -> int | None:
    if checkpoint_every is None:
        return None
    if checkpoint_every == "auto":
        return max(1, math.ceil(math.sqrt(n_steps)))
    try:
        return whole_number(checkpoint_every, "checkpoint_every", 1)
    except ValueError:
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be None, 'auto' or a "
                         "whole number >= 1") from None


def _warp(t: torch.Tensor, grad: torch.Tensor | None = None) -> wp.array:
    """Zero-copy Warp view of a contiguous tensor, same shape (with a gradient buffer)."""
    t = t.detach().contiguous()
    return wp.from_torch(t) if grad is None else wp.from_torch(t, grad=grad)


class _Stepper:
    """Steps of ``solver`` with ``params`` and the time steps ``steps`` (:func:`_time_steps`)
    on flat tensors, in work arrays of its own: each call advances its state one step
    (replaying the step's recorded launches once they exist, as a NumPy rollout does) and
    returns the new state as a new tensor (the forward pass holds it). A state is copied in
    unless it is the tensor the last call returned, whose step continues from the work array
    it came from."""

    def __init__(self, solver: GridSolver, params: dict[str, wp.array],
                 steps: np.ndarray | None) -> None:
        self.solver, self.params = solver, params
        self.work = StageWork(reuse=True)
        self.dt = solver.time_step_array(steps)
        self._returned: torch.Tensor | None = None
        self._output: wp.array | None = None

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        solver = self.solver
        state = self._output
        if u is not self._returned:
            state = self.work.array("u0", _warp(u), requires_grad=False)
            wp.to_torch(state).copy_(u.reshape(-1))
        self._output, _ = solver.replay_steps(state, self.params, self.dt, self.work,
                                                 u.numel() // solver.grid.size, 1)
        self._returned = wp.to_torch(self._output).clone()
        return self._returned


def _vjp(
    solver: GridSolver, u: torch.Tensor, values: list[torch.Tensor], dt: wp.array,
    adjoint: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Vector-Jacobian products of one step $\\Phi$ of time steps ``dt``
    (:meth:`~physml.solvers.GridSolver.time_step_array`) with the adjoint $\\bar u$.

    Returns $(\\partial\\Phi/\\partial u)^T\\bar u$ and $(\\partial\\Phi/\\partial p)^T\\bar u$.
    """
    grad_u = torch.zeros_like(u)
    grad_p = [torch.zeros_like(v) for v in values]
    params = {name: _warp(v, g) for name, v, g in zip(solver.parameter_names, values, grad_p)}
    tape = wp.Tape()
    with _TAPE_LOCK:  # Warp has one active tape per process: threads' backward passes queue
        with tape, solver.stages.step_lock:
            out = solver.advance(_warp(u, grad_u), params, tape=tape, dt=dt)
        tape.backward(grads={out: _warp(adjoint)})
    return grad_u, grad_p


_TAPE_LOCK = ForkSafeLock()


_PER_SAMPLE_GRADIENTS = (
    "vmap over the gradient of a rollout (per-sample gradients) is not supported: roll out the "
    "batch (B, *grid.shape) in one call and differentiate the sum of the per-sample losses; "
    "the samples are independent, so each sample's gradient is its own")


class _Held:
    """The states a forward pass keeps for its backward pass (``held``: step -> flat state)
    and the memory record, handed from ``forward`` to ``setup_context``."""

    held: dict[int, torch.Tensor]
    memory: RolloutMemory


def _check_values(solver: GridSolver, u0: torch.Tensor, values: tuple[torch.Tensor, ...],
                  params: dict[str, wp.array], steps: np.ndarray | None) -> None:
    """The checks that read values: a finite state, parameters in range, a stable time step
    for every sample (u0 flat, values in
    :meth:`~physml.solvers.GridSolver.batch_parameter_shapes`' shapes, steps of
    :func:`_time_steps`)."""
    if not torch.isfinite(u0).all():
        raise ValueError("u0 contains NaN/Inf values; the state must be finite")
    for name, value in zip(solver.parameter_names, values):
        solver.check_parameter_values(name, value.detach().cpu().numpy())
    states = u0.detach().cpu().numpy().reshape(-1, solver.grid.size).astype("float64")
    solver.check_state(states)
    batch = states.shape[0]
    for b in range(batch):
        try:
            solver.sample_solver(params, b, _sample_dt(solver, steps, b)).check_stability(
                states[b])
        except UnstableStepError as error:
            if batch == 1:
                raise
            raise UnstableStepError(
                f"sample {b} of the batch of {batch}{_sample_values(solver, values, b, batch)}: "
                f"{error} (where a network sets the states or parameters, bound its output)",
                dt=error.dt, dt_max=error.dt_max) from None


def _sample_values(solver: GridSolver, values: tuple[torch.Tensor, ...], b: int, batch: int
                   ) -> str:
    """`` (nu=10)``: sample ``b``'s per-sample parameters (shape ``(batch,)``), for a message;
    empty when none is given per sample."""
    named = [f"{name}={float(value[b]):.6g}" for name, value in zip(solver.parameter_names, values)
             if value.shape == (batch,)]
    return f" ({', '.join(named)})" if named else ""


class _CheckedSaves:
    """The saved states of a rollout's forward pass, ``out`` ``(T, B N)`` (row k: step
    ``k * save_every``), checked for NaN/Inf at the steps ``solver.rollout`` checks: every
    saved step, every ``solver.check_every``-th step and the last (u0 is checked before).

    Each :meth:`check` copies the states saved since the last one into ``out`` at once and
    checks them and the state of its step in one sum (NaN/Inf if and only if a term is, or
    the sum overflows: only then is each value checked), so a healthy rollout pays one
    reduction over its saved states and one check every ``check_every`` steps, however often
    it saves. A blow-up is reported as ``solver.rollout`` reports it: the first checked step
    holding a NaN/Inf, its first such sample, and that sample's state at the checked step
    before."""

    def __init__(self, solver: GridSolver, steps: np.ndarray | None, n_steps: int,
                 save_every: int, u0: torch.Tensor) -> None:
        self.solver, self.steps, self.save_every = solver, steps, save_every
        self.out = u0.new_empty((n_steps // save_every + 1, u0.numel()))
        self.out[0] = u0
        self.written = 1  # rows of out written (and checked)
        self.pending: list[torch.Tensor] = []
        self.good_step, self.good_state = 0, u0

    def append(self, u: torch.Tensor) -> None:
        """Save the flat state ``u`` of the next saved step."""
        self.pending.append(u)

    def check(self, step: int, u: torch.Tensor) -> None:
        """Write the states saved since the last check to ``out``, and check them and ``u``,
        the flat state of ``step``.

        Raises:
            BlowUpError: one of them holds a NaN/Inf.
        """
        end = self.written + len(self.pending)
        window = self.out[self.written:end]
        if self.pending:
            torch.stack(self.pending, out=window)
        at = [k * self.save_every for k in range(self.written, end)]
        if step % self.save_every:
            window, at = torch.cat([window, u[None]]), [*at, step]
        if not math.isfinite(window.sum()):
            self._raise_if_blown_up(window, at)
        self.written, self.pending = end, []
        self.good_step, self.good_state = step, u

    def blown_up_in(self, step: int) -> BlowUpError:
        """The error for a state that became NaN/Inf in step ``step``, found by its implicit
        solve before a check (:class:`~physml.solvers.implicit_diffusion.NonFiniteStepError`;
        one sample: IMEX batches step sample by sample). The states saved since the last
        check are checked first, as ``solver.rollout`` checks each saved step.

        Raises:
            BlowUpError: one of those saved states holds a NaN/Inf.
        """
        if self.pending:
            last_saved = (self.written + len(self.pending) - 1) * self.save_every
            self.check(last_saved, self.pending[-1])
        return BlowUpError(
            step=step,
            t=step * _sample_dt(self.solver, self.steps, 0),
            last_good_step=self.good_step,
            last_good_state=self.good_state.reshape(self.solver.grid.shape).cpu().numpy(),
        )

    def _raise_if_blown_up(self, window: torch.Tensor, at: list[int]) -> None:
        """Raise the error for the first non-finite state of ``window`` (checked steps ``at``,
        B N), if one is."""
        finite = torch.isfinite(window.reshape(len(at), -1, self.solver.grid.size)).all(dim=2)
        if finite.all():  # the sum overflowed
            return
        i = int(torch.argmin(finite.all(dim=1).int()))  # the first checked step that blew up
        b = int(torch.argmin(finite[i].int()))  # its first sample that did
        good_step, good = (self.good_step, self.good_state) if i == 0 else (at[i - 1],
                                                                           window[i - 1])
        raise BlowUpError(
            step=at[i],
            t=at[i] * _sample_dt(self.solver, self.steps, b),
            last_good_step=good_step,
            last_good_state=good.reshape(-1, *self.solver.grid.shape)[b].cpu().numpy(),
        )


class _Rollout(torch.autograd.Function):
    """Flat u0 (B N,) and the parameters in their batch shapes -> the saved states (T, B N),
    each sample stepping with its time step (``steps``: :func:`_time_steps`).

    A ``torch.func`` transform may wrap it: ``vmap`` becomes one batched rollout
    (:meth:`vmap`), ``grad`` and ``vjp`` take :meth:`backward`; a transform of the backward
    pass (``jacrev``: ``vmap`` over cotangents) runs one adjoint sweep per cotangent."""

    @staticmethod
    def forward(solver, n_steps, save_every, segment, memory, store, steps, u0, *values):
        memory = memory if memory is not None else RolloutMemory()
        params = {n: _warp(v) for n, v in zip(solver.parameter_names, values)}
        flat0 = u0.detach().contiguous().reshape(-1)
        _check_values(solver, flat0, values, params, steps)
        keep_every = 1 if segment is None else segment
        held = {0: flat0}
        saves = _CheckedSaves(solver, steps, n_steps, save_every, flat0)
        u = flat0
        advance = _Stepper(solver, params, steps)
        for s in range(1, n_steps + 1):
            try:
                u = advance(u)
            except NonFiniteStepError:
                raise saves.blown_up_in(s) from None
            if s % save_every == 0:
                saves.append(u)
            if s % solver.check_every == 0 or s == n_steps:
                saves.check(s, u)
            if s % keep_every == 0 and s < n_steps:
                held[s] = u
            memory.observe(len(held))
        store.held, store.memory = held, memory
        return saves.out

    @staticmethod
    def setup_context(ctx, inputs, output):
        solver, n_steps, save_every, segment, _, store, steps, u0, *values = inputs
        # under vmap, the vmap rule ran a batched rollout of its own: this call holds nothing
        # to differentiate (an error only if a gradient reaches it)
        ctx.vmapped = not hasattr(store, "held")
        if ctx.vmapped:
            return
        ctx.solver, ctx.n_steps, ctx.save_every, ctx.steps = solver, n_steps, save_every, steps
        ctx.keep_every = 1 if segment is None else segment
        ctx.held, ctx.memory = store.held, store.memory
        # u0 only for autograd's version check: the held states start from its memory (no
        # copy), so changing it in place before backward is refused, as for any saved tensor
        ctx.save_for_backward(u0, *values)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.vmapped:
            raise RuntimeError(_PER_SAMPLE_GRADIENTS)
        one_cotangent_only("the rollout", grad_out, "torch.autograd.functional.jacobian(..., "
                           "vectorize=False) or torch.func.jacrev")
        u0, *values = ctx.saved_tensors
        return (None, None, None, None, None, None, None,
                *_Adjoint.apply(ctx.solver, ctx.n_steps, ctx.save_every, ctx.keep_every,
                                ctx.memory, ctx.held, ctx.steps, grad_out, u0, *values))

    @staticmethod
    def jvp(ctx, *tangents):
        raise forward_mode_refused("a rollout")

    @staticmethod
    def vmap(info, in_dims, solver, n_steps, save_every, segment, memory, store, steps, u0,
             *values):
        """``torch.func.vmap`` over a rollout: one batched rollout of the vmapped samples."""
        count, n = info.batch_size, solver.grid.size
        u = u0.movedim(in_dims[7], 0) if in_dims[7] is not None else u0.expand(count, -1)
        batch = u.shape[1] // n
        params = {}
        for name, value, dim in zip(solver.parameter_names, values, in_dims[8:]):
            if dim is None and not _per_sample(solver, name, value.shape):
                if name == solver.velocity_parameter:  # one vector, also given as (1, ndim)
                    value = value.reshape(-1)
                params[name] = _public(solver, name, value)
                continue
            value = value.movedim(dim, 0) if dim is not None else value.expand(count,
                                                                               *value.shape)
            if name == solver.velocity_parameter and value.dim() == 2:  # one vector per call
                value = value[:, None]
            value = value.expand(count, batch, *value.shape[2:])
            params[name] = _public(solver, name, value.reshape(count * batch, *value.shape[2:]))
        out = rollout(solver, u.reshape(count * batch, *solver.grid.shape), n_steps,
                      save_every, params, segment, memory,
                      dt=None if steps is None else np.tile(steps, count))
        saves = out.shape[1]
        if batch == 1:  # the usual case: a view
            return out.reshape(count, saves, n), 0
        return out.reshape(count, batch, saves, n).permute(2, 0, 1, 3).reshape(
            saves, count, batch * n), 1


def _public(solver: GridSolver, name: str, value: torch.Tensor) -> torch.Tensor:
    """A parameter from its batch shape back to a shape :func:`rollout` takes (a field
    ``(B, N)`` as ``(B, *grid.shape)``)."""
    field = value.dim() == 2 and name != solver.velocity_parameter
    return value.reshape(value.shape[0], *solver.grid.shape) if field else value


class _Adjoint(torch.autograd.Function):
    """The reverse sweep of a rollout: the cotangent of its saved states (T, B N) -> those
    of u0 and of the parameters (not differentiable again). ``u0`` is an input only so that
    the result depends on it for autograd: a gradient that depends on u0 alone (a loss
    linear in the states) then refuses a second derivative instead of returning zero."""

    @staticmethod
    def forward(solver, n, save_every, k, memory, held, steps, grad_out, u0, *values):
        params = {name: _warp(v) for name, v in zip(solver.parameter_names, values)}
        grad_out = grad_out.reshape(grad_out.shape[0], -1)
        held = dict(held)
        adj = torch.zeros_like(grad_out[0])
        adj_p = [torch.zeros_like(v) for v in values]
        native = None  # the steps' adjoint in native loops where it applies, else Warp's tape
        if step_adjoint.supported(solver) and adj.device.type == "cpu":
            native = step_adjoint.ExplicitStepAdjoint(solver, params,
                                                      adj.numel() // solver.grid.size, steps)
        advance = _Stepper(solver, params, steps)
        for start in sorted(held, reverse=True):
            end = min(start + k, n)
            states = [held.pop(start)]
            for _ in range(start + 1, end):
                states.append(advance(states[-1]))
            memory.observe(len(held) + len(states))
            for s in range(end, start, -1):
                if s % save_every == 0:
                    adj = adj + grad_out[s // save_every]
                state = states[s - start - 1]
                if native is not None:
                    adj = torch.from_numpy(native.vjp(state.detach().numpy(),
                                                      adj.detach().numpy()))
                    continue
                adj, dp = _vjp(solver, state, values, advance.dt, adj)
                adj_p = [a + d for a, d in zip(adj_p, dp)]
        if native is not None:
            grads = native.parameter_grads()
            adj_p = [torch.from_numpy(grads[name]).reshape(v.shape)
                     for name, v in zip(solver.parameter_names, values)]
        return adj + grad_out[0], *adj_p

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("the gradient of a rollout is not differentiable again (no second "
                           "derivatives through the Warp adjoint)")

    @staticmethod
    def vmap(info, in_dims, solver, n, save_every, k, memory, held, steps, grad_out, u0,
             *values):
        """Several cotangents of one rollout (``torch.func.jacrev``, ``vmap`` over ``vjp``):
        one reverse sweep each."""
        if any(dim is not None for dim in in_dims[8:]):
            raise RuntimeError(_PER_SAMPLE_GRADIENTS)
        cotangents = grad_out.movedim(in_dims[7], 0)
        sweeps = [_Adjoint.apply(solver, n, save_every, k, memory, held, steps, c, u0, *values)
                  for c in cotangents]
        return tuple(torch.stack(parts) for parts in zip(*sweeps)), 0
