r"""Physics-informed network trainer (Raissi et al. 2019), with the options of the field.

The loss is $\sum_i \lambda_i L_i$ with the residual term $L_r = \overline{r(x)^2}$ over the
collocation points (one per residual of a system), one mean-squared term per initial/boundary
condition that the network's output transform does not impose exactly (``hard_constraints``),
and an ``observations`` term for an inverse problem, whose trainable coefficients are
optimised with the network. The weights $\lambda_i$ come from a balancing strategy
(:mod:`physml.train.balancing`).
Optimisation: Adam (with optional exponential decay) for ``adam_steps`` steps, then L-BFGS with a
strong-Wolfe line search for ``lbfgs_steps`` iterations. Collocation points are drawn by a
:class:`~physml.train.sampling.DomainSampler` and, with ``resample_every > 0``, redrawn by
residual-based adaptive resampling or, as fresh random batches, together with the condition
points (the mini-batch training of Wang et al.). Errors are measured on a grid against the problem's
reference (a Warp solver or an exact solution), never on training points; without a reference
the evaluation reports the residual's root mean square on that grid.

Data parallel: under an initialised ``torch.distributed`` process group (``torchrun``, gloo on
CPU, NCCL on GPUs) every process starts from rank 0's parameters and points and takes every
``world``-th collocation and condition point, and the gradients and losses are averaged, so the
processes follow the one-process trajectory (point counts must be multiples of the number of
processes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from ..devices import Stopwatch, require_torch_device
from ..dtypes import torch_dtype
from ..errors import NonFiniteLossError, adam_can_step, all_finite
from ..geometry import Ball, Box, Geometry
from ..interrupts import raise_pending, step_loop
from ..solvers.errors import is_real, whole_number
from .balancing import FixedWeights
from .distributed import (
    agreed_stop,
    average,
    average_gradients,
    from_first_rank,
    rank_and_world,
)
from .problems import PINNProblem, grid_points
from .sampling import DomainSampler

"""The training precisions, by the names a case file uses."""

Resample = Literal["residual", "random"]
"""How :class:`PINNTrainer` redraws its collocation points (``resample``)."""


class PINNField(nn.Module):
    """The trained field $u(X)$: ``model(problem.embed(X))``, through the problem's output
    transform if ``hard``. Maps ``(n, d_in)`` to ``(n, m)``; traceable by TorchScript."""

    def __init__(self, model: nn.Module, problem: PINNProblem, hard: bool) -> None:
        super().__init__()
        self.model, self.problem, self.hard = model, problem, hard

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        raw = self.model(self.problem.embed(X))
        return self.problem.constrain(X, raw) if self.hard else raw


PROBE_POINTS = 4096
"""Points drawn uniformly in a problem's bounds (seed 0) at which a sampler's geometry must
agree with the problem's on inside and outside."""

RESIDUAL_BATCH = 8192
"""Points per batch at which the residual is evaluated for resampling and for the metrics
(bounding the memory its autograd graph takes)."""


def _check_sampler(sampler: DomainSampler, problem: PINNProblem) -> None:
    """Refuse a sampler that cannot draw ``problem``'s domain: another number of inputs, other
    bounds or time span, another kind of geometry (a Box and an Interval or a Rectangle, a
    Ball and a Disk, of the same bounds are one domain), or a shape of the same kind and
    bounds that puts one of :data:`PROBE_POINTS` points of the bounds on the other side of its
    boundary (two polygons, meshes or CSG shapes; the same shape listed in another order or
    with other boundary names is taken: the sampler draws inside points only, the conditions'
    points come from the problem's geometry).

    Raises:
        ValueError: naming ``sampler`` and what differs.
    """
    inputs = ", ".join(problem.inputs)
    if sampler.bounds.shape != problem.bounds.shape:
        raise ValueError(f"sampler: draws points of {len(sampler.bounds)} input(s), but the "
                         f"problem has {len(problem.bounds)} ({inputs}); build it as "
                         "DomainSampler(problem.geometry, problem.time)")
    if not np.array_equal(sampler.bounds, problem.bounds):
        raise ValueError(f"sampler: bounds {sampler.bounds.tolist()} differ from the problem's "
                         f"{problem.bounds.tolist()} (inputs {inputs}); build it as "
                         "DomainSampler(problem.geometry, problem.time)")
    if _shape_kind(sampler.geometry) is not _shape_kind(problem.geometry):
        raise ValueError(f"sampler: {_a(sampler.geometry)} geometry, but the problem's is "
                         f"{_a(problem.geometry)}; build it as "
                         "DomainSampler(problem.geometry, problem.time)")
    if sampler.geometry is problem.geometry:
        return
    low, high = problem.geometry.bounds[:, 0], problem.geometry.bounds[:, 1]
    probes = np.random.default_rng(0).uniform(low, high, (PROBE_POINTS, len(low)))
    differ = np.flatnonzero(sampler.geometry.inside(probes) != problem.geometry.inside(probes))
    if differ.size:
        raise ValueError(f"sampler: its geometry is another shape than the problem's (of "
                         f"{PROBE_POINTS} points in the bounds, {differ.size} lie inside one and "
                         f"outside the other, e.g. {probes[differ[0]].tolist()}); build it as "
                         "DomainSampler(problem.geometry, problem.time)")


def _shape_kind(geometry: Geometry) -> type:
    """:class:`Box` for a box (an Interval, a Rectangle), :class:`Ball` for a ball (a Disk),
    else the geometry's class: two geometries of one such kind with the same bounds are the
    same domain."""
    return next((kind for kind in (Box, Ball) if isinstance(geometry, kind)), type(geometry))


def _a(geometry: Geometry) -> str:
    """The geometry's class name after its article: "a Disk", "an Interval", "a Union"."""
    name = type(geometry).__name__
    return f"{'an' if name[0] in 'AEIO' else 'a'} {name}"


def _check_model_widths(model: nn.Module, problem: PINNProblem) -> None:
    """Refuse a ``model`` that does not map ``(n, problem.input_dim)`` to
    ``(n, problem.output_dim)``, by one probe on two points at the domain's centre, with the
    model in eval mode (batch-norm statistics untouched) and PyTorch's random state kept (a
    probe through dropout draws nothing training would); gradients stay on, for a model that
    differentiates inside its forward."""
    parameter = next(iter(model.parameters()), None)
    like = {} if parameter is None else {"dtype": parameter.dtype, "device": parameter.device}
    centre = torch.as_tensor(problem.bounds.mean(axis=1), **like).expand(2, -1)
    devices = [like["device"]] if like and like["device"].type == "cuda" else []
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            features = problem.embed(centre)
            try:
                out = model(features)
            except RuntimeError as error:
                raise ValueError(f"model failed on the problem's network input, (2, "
                                 f"{features.shape[1]}) for inputs "
                                 f"{', '.join(problem.names)}: {error}") from None
    finally:
        for module, training in modes:
            module.train(training)
    if out.dim() != 2 or out.shape[1] != problem.output_dim:
        raise ValueError(f"model gives {tuple(out.shape)} for 2 points; the problem has "
                         f"{problem.output_dim} output(s) ({', '.join(problem.outputs)}): "
                         f"expected (2, {problem.output_dim})")


class PINNTrainer:
    """Trains ``model`` on ``problem``.

    Args:
        model: network mapping ``problem.embed(X)`` of shape ``(n, input_dim)`` to
            ``(n, problem.output_dim)``.
        problem: the :class:`~physml.train.problems.PINNProblem`.
        balancer: loss-balancing strategy.
        sampler: collocation sampler over the problem's domain: its geometry's kind and
            its bounds, time span included, those of ``problem``.
        points: number of collocation points.
        condition_points: points per soft condition.
        hard_constraints: impose the conditions through ``problem.constrain``.
        adam_steps, adam_lr, adam_decay: Adam schedule (lr x decay per 1000 steps).
        lbfgs_steps, lbfgs_lr, lbfgs_history: L-BFGS iterations and settings.
        resample_every: steps between redraws of the collocation points (0: never).
        resample: "residual" (adaptive, RAD) or "random" (fresh batches, conditions too).
        eval_every: steps between evaluations against the reference.
        eval_shape: evaluation grid (points along each input, space then time).
        device, dtype: where ("cpu", "cuda", "cuda:N") and in which precision to train:
            float32 or float64, named as the solvers take it (``"float64"``, ``np.float64``,
            ``torch.float64``, ``wp.float64``); the trainer's ``dtype`` is PyTorch's.
        seed: seed of the default sampler (the network is initialised by the caller).

    Counts are whole numbers: ``points``, ``condition_points``, ``lbfgs_history``,
    ``eval_every`` and each entry of ``eval_shape`` >= 1; ``adam_steps``, ``lbfgs_steps``,
    ``resample_every`` and ``seed`` >= 0. The learning rates are finite and > 0;
    ``adam_decay`` lies in (0, 1].

    Raises:
        ValueError: an argument outside these ranges (one message naming it, its value and
            what is allowed), point counts that are not multiples of the number of processes,
            ``hard_constraints=False`` for a problem that imposes its initial conditions
            through its output transform only, a ``sampler`` over another domain (another
            number of inputs, other bounds or time span, another kind of geometry), or a
            ``model`` that does not map ``(n, problem.input_dim)`` to
            ``(n, problem.output_dim)``.

    Attributes:
        elapsed_s: wall time spent in :meth:`fit` over the whole run [s], carried through
            :meth:`state_dict`, so that a resumed run's ``wall_s`` continues from its checkpoint.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        problem: PINNProblem,
        *,
        balancer=None,
        sampler: DomainSampler | None = None,
        points: int = 4000,
        condition_points: int = 256,
        hard_constraints: bool = True,
        adam_steps: int = 1000,
        adam_lr: float = 1e-3,
        adam_decay: float = 1.0,
        lbfgs_steps: int = 0,
        lbfgs_lr: float = 1.0,
        lbfgs_history: int = 50,
        resample_every: int = 0,
        resample: str = "residual",
        eval_every: int = 500,
        eval_shape: tuple[int, ...] = (256, 101),
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        (points, condition_points, adam_steps, lbfgs_steps, lbfgs_history, resample_every,
         eval_every, seed) = (whole_number(value, name, least) for name, value, least in (
            ("points", points, 1), ("condition_points", condition_points, 1),
            ("adam_steps", adam_steps, 0), ("lbfgs_steps", lbfgs_steps, 0),
            ("lbfgs_history", lbfgs_history, 1), ("resample_every", resample_every, 0),
            ("eval_every", eval_every, 1), ("seed", seed, 0)))
        eval_shape = tuple(whole_number(n, f"eval_shape[{axis}]", 1)
                           for axis, n in enumerate(eval_shape))
        for name, rate in (("adam_lr", adam_lr), ("lbfgs_lr", lbfgs_lr)):
            if not (is_real(rate) and math.isfinite(rate) and rate > 0):
                raise ValueError(f"{name}={rate!r} must be a finite number > 0")
        if not (is_real(adam_decay) and 0 < adam_decay <= 1):
            raise ValueError(f"adam_decay={adam_decay!r} must be a number in (0, 1] (the "
                             "learning-rate factor per 1000 steps)")
        if resample not in get_args(Resample):
            raise ValueError(f"resample={resample!r} is not a way to redraw the points; "
                             f"allowed: {', '.join(get_args(Resample))}")
        if not isinstance(hard_constraints, (bool, np.bool_)):
            raise ValueError(f"hard_constraints={hard_constraints!r} must be True or False")
        device = require_torch_device(device)
        dtype = torch_dtype(dtype)
        if not hard_constraints and getattr(problem, "needs_hard_constraints", False):
            raise ValueError(f"{type(problem).__name__} imposes its initial conditions through "
                             "its output transform only (no loss term holds them): train it "
                             "with hard_constraints=True")
        if sampler is not None:
            _check_sampler(sampler, problem)
        self.device, self.dtype = torch.device(device), dtype
        self.model = model.to(self.device, dtype)
        _check_model_widths(self.model, problem)
        self.problem = problem
        problem.coefficients.to(self.device, dtype)
        self.trained = nn.ModuleList([self.model, problem.coefficients])
        from_first_rank([*self.trained.parameters(), *self.trained.buffers()])
        self.field_module = PINNField(self.model, problem, hard_constraints)
        self.balancer = balancer if balancer is not None else FixedWeights()
        self.sampler = sampler if sampler is not None else DomainSampler(
            problem.geometry, problem.time, seed=seed)
        _, world = rank_and_world()
        if points % world or condition_points % world:
            raise ValueError(f"points={points} and condition_points={condition_points} must be "
                             f"multiples of the {world} processes")
        self.n_points, self.n_condition_points = points, condition_points
        self.hard_constraints = hard_constraints
        self.adam_steps, self.lbfgs_steps = adam_steps, lbfgs_steps
        self.resample_every, self.eval_every = resample_every, eval_every
        self.resample = resample
        params = [p for p in self.trained.parameters() if p.requires_grad]
        self.adam = torch.optim.Adam(params, lr=adam_lr)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.adam, lambda s: adam_decay ** (s / 1000)
        )
        self.lbfgs = torch.optim.LBFGS(
            params,
            lr=lbfgs_lr,
            max_iter=1,
            max_eval=25,
            history_size=lbfgs_history,
            line_search_fn="strong_wolfe",
        )
        self.step = 0
        self.elapsed_s = 0.0
        self._last_evaluation = None  # (flat parameters, terms, total, gradients) for L-BFGS
        self.history: list[dict] = []
        self.points = self._tensor(self.sampler.draw(points))
        self.conditions = self._draw_conditions()
        self._share_points()
        observations = problem.observations
        self.observed = None if observations is None else (
            self._tensor(observations.points), self._tensor(observations.values))
        self.eval_axes = problem.eval_axes(eval_shape)
        self.reference, self.inside = problem.checked_reference(self.eval_axes)
        self.eval_points = self._tensor(grid_points(self.eval_axes)[self.inside.reshape(-1)])

    @property
    def total_steps(self) -> int:
        return self.adam_steps + self.lbfgs_steps

    def __repr__(self) -> str:
        """One line: the problem's inputs and outputs, the network and its number of trained
        parameters, the point counts, the steps done and planned, the device and dtype."""
        problem = self.problem
        trained = sum(p.numel() for p in self.trained.parameters() if p.requires_grad)
        return (f"PINNTrainer(problem={type(problem).__name__}(inputs={problem.inputs}, "
                f"outputs={problem.outputs}), model={type(self.model).__name__}, "
                f"parameters={trained}, points={self.n_points}, "
                f"condition_points={self.n_condition_points}, step={self.step}, "
                f"adam_steps={self.adam_steps}, lbfgs_steps={self.lbfgs_steps}, "
                f"device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')})")

    def _draw_conditions(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        drawn = self.problem.draw_conditions(self.n_condition_points, self.sampler.rng,
                                             self.hard_constraints)
        return {name: (self._tensor(x), self._tensor(y)) for name, (x, y) in drawn.items()}

    def _redraw(self) -> None:
        """New collocation (and condition) points. In the L-BFGS phase its curvature memory
        is dropped too: its pairs (s, y) are differences of the old points' loss, and the first
        pair after a redraw would mix two losses (runs went NaN a few steps after a redraw
        with 500 points); the next step starts L-BFGS afresh on the new loss."""
        self._last_evaluation = None
        if self.step >= self.adam_steps:
            self.lbfgs.state.clear()
        if self.resample == "random":
            self.points = self._tensor(self.sampler.draw(self.n_points))
            self.conditions = self._draw_conditions()
        else:
            self.points = self._tensor(self.sampler.resample(self.n_points, self._residual_numpy))
        self._share_points()

    def _share_points(self) -> None:
        """Every process takes rank 0's collocation and condition points, so that samplers
        seeded differently still shard one set of points."""
        from_first_rank([self.points, *(t for pair in self.conditions.values() for t in pair)])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """``array`` in the trainer's dtype and device, with memory of its own (a condition's
        constant target comes broadcast, strides 0, which a collective would overrun)."""
        return torch.as_tensor(array, dtype=self.dtype, device=self.device).contiguous()

    def field(self, X: torch.Tensor) -> torch.Tensor:
        """The network's field $u(X)$, shape ``(n, m)`` (with the output transform if hard)."""
        return self.field_module(X)

    def losses(self) -> dict[str, torch.Tensor]:
        """Mean-squared loss terms over this process's share of the points: the residuals,
        each soft condition and the observations."""
        rank, world = rank_and_world()
        X = self.points[rank::world].clone().requires_grad_(True)
        terms = {k: r.square().mean() for k, r in self.problem.residuals(X, self.field(X)).items()}
        for name, (x, data) in self.conditions.items():
            x, data = x[rank::world], data[rank::world]
            terms[name] = self.problem.condition_loss(name, self.field, x, data)
        if self.observed is not None:
            terms["observations"] = self.problem.observations.loss(self.problem, self.field,
                                                                   *self.observed)
        return terms

    def predict(self, X: torch.Tensor | np.ndarray, batch: int = 16384) -> np.ndarray:
        """The field at ``X`` ``(n, d_in)`` (a tensor or an array, in the trainer's dtype and
        device), ``(n,)`` for one output, else ``(n, m)``."""
        return predict(self.field_module, points_tensor(X, self.problem.inputs, self.dtype,
                                                        self.device), batch)

    def prediction(self) -> np.ndarray:
        """The field on the evaluation grid (time first; NaN outside the domain), with a
        trailing output axis for several outputs."""
        if hasattr(self.problem, "eulerian"):
            return self.problem.eulerian(self.field, *self.eval_axes[:2], self._tensor)
        return self.on_eval_grid(self.predict(self.eval_points))

    def on_eval_grid(self, values: np.ndarray) -> np.ndarray:
        """``values`` at :attr:`eval_points` ``(n_inside, ...)`` placed on the evaluation grid
        (time first; NaN outside the domain), shape ``inside.shape + values.shape[1:]``."""
        grid = np.full(self.inside.shape + values.shape[1:], np.nan)
        grid[self.inside] = values
        return grid

    @cached_property
    def _residual_points(self) -> np.ndarray:
        """The evaluation points off the boundary (all of them if none is), where
        :meth:`evaluate` measures the residual; classified once (a mesh domain casts rays)."""
        points = self.eval_points.cpu().numpy()
        interior = self.problem.geometry.interior(points[:, : self.problem.geometry.dim])
        return points[interior] if interior.any() else points

    def evaluate(self) -> dict:
        r"""Relative L2 and max errors against the reference on the evaluation grid (the
        points inside the domain), or without one the residual's root mean square at the grid
        points off the boundary, where the PDE holds (on it, a distance function's derivatives
        are not defined); plus the scalar coefficients' values.

        The relative L2 error ``rel_l2`` of several fields is that of all of them together,
        $\|u - u_{ref}\| / \|u_{ref}\|$ over every field's values, so a field of small values
        weighs little in it; ``rel_l2_fields`` then gives each field's own,
        $\|u_k - u_{k,ref}\| / \|u_{k,ref}\|$ (relative to all fields' norm where the field's
        reference is zero)."""
        values = {f"coefficient_{k}": v for k, v in self.coefficients().items()}
        if self.reference is None:
            residual = self._residual_numpy(self._residual_points)
            return {"residual_rms": float(np.sqrt(np.mean(residual**2))), **values}
        error = (self.prediction() - self.reference)[self.inside]
        reference = self.reference[self.inside]
        norm = np.linalg.norm(reference)
        result = {"rel_l2": float(np.linalg.norm(error) / norm),
                  "max_error": float(np.abs(error).max())}
        if error.ndim > 1:  # (points, fields)
            result["rel_l2_fields"] = {
                name: float(np.linalg.norm(error[:, k]) / (np.linalg.norm(reference[:, k]) or norm))
                for k, name in enumerate(self.problem.outputs)}
        return {**result, **values}

    def _residual_numpy(self, X: np.ndarray) -> np.ndarray:
        """The residuals' norm at the points ``X`` (n,), in batches of ``RESIDUAL_BATCH``, with
        autograd on for the derivatives whatever the caller's grad mode."""
        parts = []
        with torch.enable_grad():
            for i in range(0, len(X), RESIDUAL_BATCH):
                Xt = self._tensor(X[i : i + RESIDUAL_BATCH]).requires_grad_(True)
                residuals = self.problem.residuals(Xt, self.field(Xt))
                total = sum(r.square() for r in residuals.values()).sqrt()
                parts.append(total.detach().cpu().numpy().reshape(-1))
        return np.concatenate(parts)

    def _lbfgs_closure(self) -> torch.Tensor:
        """Loss and gradient for L-BFGS, reused when the parameters are those of the last call.

        One L-BFGS iteration per step means ``LBFGS.step`` opens each step by evaluating the
        point its last line search accepted; the cache turns that repeat into a copy, so an
        iteration costs its line-search evaluations only (about 1.1 instead of 2.1).
        """
        params = self.adam.param_groups[0]["params"]
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        cached = self._last_evaluation
        if cached is not None and torch.equal(cached[0], flat):
            for p, g in zip(params, cached[3]):
                p.grad = g.clone()
            return cached[2]
        self.lbfgs.zero_grad()
        terms = self.losses()
        total = self.balancer.total(terms)
        total.backward()
        average_gradients(self.trained)
        total = average(total)
        grads = [p.grad.detach().clone() for p in params]
        terms = {k: average(v.detach()) for k, v in terms.items()}
        self._last_evaluation = (flat, terms, total.detach(), grads)
        return total

    def _one_step(self) -> dict[str, float]:
        """One Adam or L-BFGS step and its loss terms; a step whose gradient (or, L-BFGS, new
        parameters) are not finite is not taken, and its ``loss`` is NaN."""
        params = self.adam.param_groups[0]["params"]
        if self.step < self.adam_steps:
            self.adam.zero_grad()
            terms = self.losses()
            residuals = [k for k in terms if k not in self.conditions and k != "observations"]
            total = average(self.balancer.backward(terms, params, self.step, residuals))
            if not getattr(self.balancer, "averages_gradients", False):  # (a balancer of own)
                average_gradients(self.trained)
            terms = {k: average(v.detach()) for k, v in terms.items()}
            taken = adam_can_step(total.detach(), params)
            if taken:
                self.adam.step()
                self.schedule.step()
        else:
            # the loss before the update, as Adam's (LBFGS.step's own first call reuses it):
            # the line search's last evaluation may be a trial point it then rejects
            self._lbfgs_closure()
            terms, total, grads = self._last_evaluation[1:4]
            taken = all_finite([total, *grads])
            if taken:
                before = [p.detach().clone() for p in params]
                self.lbfgs.step(self._lbfgs_closure)
                last_total, last_grads = self._last_evaluation[2:4]
                taken = all_finite([*params, last_total, *last_grads])
                if not taken:
                    with torch.no_grad():
                        for p, value in zip(params, before):
                            p.copy_(value)
        values = {f"loss_{k}": float(v.detach()) for k, v in terms.items()}
        values["loss"] = float(total.detach()) if taken else float("nan")
        return values

    def fit(
        self,
        until: int | None = None,
        on_step: Callable[[dict], None] | None = None,
        on_checkpoint: Callable[[], None] | None = None,
        checkpoint_every: int = 500,
        saved_step: int | None = None,
    ) -> list[dict]:
        """Train to step ``until`` (default: the end of the schedule).

        ``on_step`` receives each step's record; ``on_checkpoint`` is called every
        ``checkpoint_every`` steps with finite losses (save the trainer there), and at the step
        a stop deferred to its end (:func:`~physml.interrupts.stops_deferred`) is raised at.
        ``saved_step`` is the step of a checkpoint already kept when ``fit`` starts (default:
        the current step, if past 0: a resumed trainer); a blow-up names it.

        Returns:
            The history, a list of one dict per step taken since the trainer was built
            (``history``, kept across calls and in :meth:`state_dict`): ``step``, ``loss``
            and each ``loss_<term>``, the balancer's ``weights``, each
            ``coefficient_<name>``, ``wall_s`` (training seconds so far) and, every
            ``eval_every`` steps and at the last, :meth:`evaluate`'s errors.

        Raises:
            NonFiniteLossError: a loss or its gradient became NaN/Inf (names the step; the
                step is not taken, so the model keeps its last finite parameters).
        """
        end = self.total_steps if until is None else min(until, self.total_steps)
        last_checkpoint = saved_step if saved_step is not None else (
            self.step if self.step > 0 else None)  # resumed from a checkpoint
        offset = self.elapsed_s
        with Stopwatch(self.device) as clock, step_loop():
            while self.step < end:
                if self.resample_every and self.step and self.step % self.resample_every == 0:
                    self._redraw()
                record = self._one_step()
                if not np.isfinite(record["loss"]):
                    raise NonFiniteLossError(self.step + 1, last_checkpoint)
                self.step += 1
                record = {"step": self.step, **record}  # updates done; the loss before the last
                record["weights"] = {k[5:]: self.balancer.weight(k[5:]) for k in record
                                     if k.startswith("loss_")}
                record.update({f"coefficient_{k}": v for k, v in self.coefficients().items()})
                if self.step % self.eval_every == 0 or self.step == self.total_steps:
                    record.update(self.evaluate())
                self.elapsed_s = offset + clock.read()  # the work, not its queueing (CUDA)
                record["wall_s"] = self.elapsed_s
                self.history.append(record)
                if on_step is not None:
                    on_step(record)
                stopping = agreed_stop(self.device)  # every process at the same step
                if on_checkpoint is not None and (
                    self.step % checkpoint_every == 0 or self.step == end or stopping
                ):
                    on_checkpoint()
                    last_checkpoint = self.step
                if stopping:
                    raise_pending(stopping)
        return self.history

    def coefficients(self) -> dict[str, float]:
        """The values of the problem's scalar coefficients (trainable or not)."""
        return {name: c.value() for name, c in self.problem.coefficients.items()
                if hasattr(c, "value")}

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "model": self.model.state_dict(),
            "coefficients": self.problem.coefficients.state_dict(),
            "adam": self.adam.state_dict(),
            "schedule": self.schedule.state_dict(),
            "lbfgs": self.lbfgs.state_dict(),
            "balancer": self.balancer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "points": self.points,
            "conditions": self.conditions,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`; each of its keys is required (a ``KeyError``
        names the first one missing, which :func:`~physml.cases.run_folder.restoring` turns
        into a ValueError naming the checkpoint)."""
        self.step, self.elapsed_s = state["step"], state["elapsed_s"]
        self.model.load_state_dict(state["model"])
        self.problem.coefficients.load_state_dict(state["coefficients"])
        self.adam.load_state_dict(state["adam"])
        self.schedule.load_state_dict(state["schedule"])
        self.lbfgs.load_state_dict(state["lbfgs"])
        self._last_evaluation = None
        self.balancer.load_state_dict(state["balancer"])
        self.sampler.load_state_dict(state["sampler"])
        self.points = state["points"].to(self.device, self.dtype)
        self.conditions = {
            k: (x.to(self.device, self.dtype), y.to(self.device, self.dtype))
            for k, (x, y) in state["conditions"].items()
        }
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"])


def points_tensor(X: torch.Tensor | np.ndarray, inputs: Sequence[str], dtype: torch.dtype,
                  device: torch.device | str) -> torch.Tensor:
    """Points ``X`` (a tensor, an array or nested lists) as a ``(n, len(inputs))`` tensor of
    ``dtype`` on ``device``; a ValueError names the shape expected and the columns otherwise."""
    X = torch.as_tensor(X if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64),
                        dtype=dtype, device=device)
    if X.dim() != 2 or X.shape[1] != len(inputs) or len(X) == 0:
        raise ValueError(f"points need shape (n, {len(inputs)}), n >= 1, with columns "
                         f"{', '.join(inputs)}; got {tuple(X.shape)}")
    return X


def predict(field: nn.Module, X: torch.Tensor, batch: int = 16384) -> np.ndarray:
    """``field`` at ``X`` in batches without gradients: ``(n,)`` for one output, else
    ``(n, m)``."""
    with torch.no_grad():
        parts = [field(X[i : i + batch]) for i in range(0, len(X), batch)]
    values = torch.cat(parts).cpu().numpy()
    return values.reshape(-1) if values.shape[1] == 1 else values
