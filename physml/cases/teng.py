"""Time-evolving natural gradient, ``kind: teng``: fit the initial condition, step in time,
measure against the spectral reference, checkpoint, and write the run folder.

Run folder::

    config.yaml        the resolved case
    checkpoint.pt      parameters, time, random state, history and wall time at the last
                       checkpoint
    metrics.json       relative L2 error against time (history) and the summary; a run
                       a blow-up stopped keeps the errors measured so far and says why and
                       at which step (:func:`~.run_folder.write_stopped_metrics`)
    errors.json        the error-versus-time curve alone: {"t": [...], "rel_l2": [...]}
    predictions.h5     prediction, reference and error at the final time (xarray)
    errors.png         relative L2 error against time (log scale)
    solution.png       prediction | reference | |error| at the final time (2D cases)

The reference is the ETDRK4 spectral solver on twice ``evaluation.nx`` nodes per axis with
steps of at most 2.5e-3 (heat: exact, one exponential step per evaluation time); errors are
measured on every other node (``evaluation.nx`` per axis).
A reference whose highest retained modes hold more of its amplitude than
``evaluation.threshold`` (:meth:`~physml.spectral.SpectralSolver.unresolved_fraction`, in
``metrics.json`` as ``reference_unresolved_fraction``) is refused before training: its own
error could decide the verdict. The training points are drawn uniformly at random each step,
so they are never evaluation points.

A case::

    kind: teng
    name: teng_heat
    pde: {name: heat, nu: 0.1}
    domain: {x: [0, 6.283185307179586], y: [0, 6.283185307179586], t: [0, 4]}
    conditions: {initial: {kind: cosh_sinh, amplitude: 0.04}}
    model: {kind: periodic, width: 40, depth: 5}
    training: {scheme: heun, dt: 0.005, points: 16384, subsample: 1536, iterations: 5}
    evaluation: {every: 20, nx: 256, times: [0.5, 1, 2, 4], threshold: 1.0e-6}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ..datasets.atomic_files import json_text
from ..datasets.store import write_dataset
from ..devices import Stopwatch
from ..interrupts import raise_pending, step_loop, stop_pending
from ..models import PeriodicMLP
from ..solvers.errors import BlowUpError
from ..spectral import SpectralSolver
from ..threads import apply_threads
from ..torch_files import save_torch_file
from ..train.problems import sine
from ..train.teng import TENG, TENGPDE, FitProgress, FitToleranceWarning, relative_error
from .kind import CaseKind, OnStep
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    Section,
    comparison_dataset,
    evaluation_axes_metadata,
    pde_attrs,
    read_checkpoint,
    restoring,
    run_attrs,
    write_metrics,
    write_stopped_metrics,
    write_text,
)
from .sections import BYTES, PhysicsCase, threshold_passed, threshold_verdict


class TENGSpec(Section):
    """Time-evolving natural gradient settings (:class:`physml.train.teng.TENG`)."""

    scheme: Literal["euler", "heun", "rk4"] = "heun"
    dt: float = Field(5e-3, gt=0)
    points: int = Field(1024, gt=0, description="sample points per time step")
    subsample: int = Field(1536, gt=0, description="parameters updated per iteration")
    iterations: int = Field(5, gt=0, description="Gauss-Newton iterations per fit")
    solver: Literal["auto", "gram", "dense"] = "auto"
    initial_points: int = Field(2048, gt=0)
    initial_iterations: int = Field(400, gt=0, description="iterations of the initial fit")
    checkpoint_every: int = Field(50, gt=0, description="time steps between checkpoints")


class TENGCase(PhysicsCase):
    """A whole ``kind: teng`` case file: a periodic network on $[0, L)^d$ carried through
    ``domain.t`` by TENG steps."""

    kind: Literal["teng"]
    training: TENGSpec = Field(default_factory=TENGSpec)

    @model_validator(mode="after")
    def _fits_teng(self) -> TENGCase:
        self._require_pde(("heat", "allen_cahn", "burgers"), "kind 'teng'")
        if self.conditions.initial.kind == "cosh_sinh" and self.domain.y is None:
            raise ValueError("conditions.initial.kind 'cosh_sinh' is 2D: domain.y is required")
        if self.model.kind != "periodic":
            raise ValueError("kind 'teng' needs model.kind 'periodic'")
        lower = [self.domain.x[0]] + ([self.domain.y[0]] if self.domain.y else [])
        if any(bound != 0 for bound in lower) or (
            self.domain.y and self.domain.y[1] != self.domain.x[1]
        ):
            raise ValueError("kind 'teng' needs domain.x = domain.y = [0, L]")
        length, initial = self.domain.x[1], self.conditions.initial
        if initial.kind == "cosh_sinh" and abs(length - 2 * math.pi) > 1e-9:
            raise ValueError(f"conditions.initial.kind 'cosh_sinh' is 2 pi-periodic: domain.x "
                             f"and domain.y must be [0, 2 pi], got [0, {length:g}]")
        if initial.kind == "sine":
            periods = initial.wavenumber * length / (2 * math.pi)
            if abs(periods - round(periods)) > 1e-9 or round(periods) == 0:
                raise ValueError(f"conditions.initial.wavenumber={initial.wavenumber:g} gives "
                                 f"{periods:g} periods over domain.x = [0, {length:g}]: the "
                                 "periodic network and the spectral reference need a whole, "
                                 "non-zero number")
        if self.evaluation.nx % 2:
            raise ValueError(f"evaluation.nx={self.evaluation.nx}: the spectral reference reads "
                             "every other node of a grid twice as fine; give an even number")
        span = self.domain.t[1] - self.domain.t[0]
        if self.total_steps < 1:
            raise ValueError(f"training.dt={self.training.dt} gives no time step over domain.t "
                             f"(a span of {span:g}); it must be at most {span:g}")
        if abs(self.total_steps * self.training.dt - span) > 1e-9 * max(1.0, span):
            raise ValueError(f"training.dt={self.training.dt} does not divide domain.t (a span "
                             f"of {span:g}) into whole steps; e.g. {span / self.total_steps:g}")
        t0, dt = self.domain.t[0], self.training.dt
        for t in self.evaluation.times:
            steps = round((t - t0) / dt)
            if not (t0 <= t <= self.domain.t[1]) or abs(t0 + steps * dt - t) > 1e-9 * max(1, t):
                raise ValueError(f"evaluation.times: {t:g} is not a time step of domain.t "
                                 f"{list(self.domain.t)} with training.dt={dt:g}")
        return self

    def unused_keys(self) -> set[str]:
        return super().unused_keys() | {"model.hard_constraints", "model.periodic_embedding",
                                        "evaluation.nt"}

    def memory_needs(self) -> dict[str, float]:
        """:meth:`PhysicsCase.memory_needs`, with what TENG holds besides, by the keys that set
        it: the initial fit's damped system, :data:`INITIAL_FIT_COPIES` of $(n_0 + p)\\times p$
        for ``training.initial_points`` $n_0$ and the network's $p$ parameters; a step's
        Jacobian columns, ``training.points`` x ``training.subsample`` (at most $p$); the
        spectral reference on $(2\\,$``evaluation.nx``$)^d$ nodes, :data:`REFERENCE_VALUES` a
        node and one value a node for each state it keeps (at most those of
        :func:`evaluation_steps`, counted without listing them)."""
        settings, nx = self.training, self.evaluation.nx
        dim = 2 if self.domain.y is not None else 1
        width, depth, harmonics = self.model.width, self.model.depth, self.model.harmonics
        features = 2 * dim * harmonics  # the periodic embedding, then width x depth -> 1
        parameters = (features + 1) * width + (depth - 1) * (width + 1) * width + width + 1
        network = f"model.width={width}, model.depth={depth}"
        nodes = float(2 * nx) ** dim
        steps = self.total_steps if self.domain.t is not None else 0  # helmholtz: refused
        states = steps // self.evaluation.every + 2 + len(self.evaluation.times)
        return super().memory_needs() | {
            f"training.initial_points={settings.initial_points} with {network} ({parameters} "
            "parameters: the initial fit)": INITIAL_FIT_COPIES * float(
                settings.initial_points + parameters) * parameters * BYTES,
            f"training.points={settings.points}, training.subsample={settings.subsample} (a "
            "step's Jacobian)": float(settings.points) * min(settings.subsample, parameters)
            * BYTES,
            f"evaluation.nx={nx}, evaluation.every={self.evaluation.every}, training.dt="
            f"{settings.dt:g} (the spectral reference: {2 * nx} nodes per axis, {states:,} "
            "states)":
            nodes * (REFERENCE_VALUES + states) * BYTES}

    @property
    def total_steps(self) -> int:
        """Time steps over ``domain.t``."""
        return round((self.domain.t[1] - self.domain.t[0]) / self.training.dt)


INITIAL_FIT_COPIES = 4
"""Copies of the initial fit's damped system $[J; \\sqrt{\\lambda s} I]$, $(n_0 + p) \\times p$,
held at once, measured: the Jacobian, the identity, the system and its QR factors (a periodic
network of 16 x 3, 641 parameters: 217 MB more for 16384 fit points than for 2048, 3.0
copies; of 40 x 5, 6801 parameters, on 2048 points: 1.9 GB above the process, 4.0 copies)."""

REFERENCE_VALUES = 192
"""Numbers held per node of the spectral reference's grid besides its saved states, measured:
the ETDRK4 coefficients' contour means over 32 complex points per Fourier mode (1.49 GB more
on 1024^2 nodes than on 256^2, 190 numbers a node)."""

REFERENCE_DT = 2.5e-3  # largest ETDRK4 step of the reference (self-converged to ~1e-10 at the
# bundled cases' amplitudes; a larger initial state needs smaller steps, and a non-finite
# reference is refused)


def initial_condition(case: TENGCase) -> Callable[[torch.Tensor], torch.Tensor]:
    """$u_0$ of the case as a function of points (n, d)."""
    spec = case.conditions.initial
    if spec.kind == "cosh_sinh":
        return lambda X: spec.amplitude * torch.cosh(3 * torch.sin(X[:, 0])) * torch.sinh(
            torch.sin(X[:, 1])
        )
    return lambda X: sine(X[:, 0], spec.amplitude, spec.wavenumber)


def build_teng(case: TENGCase) -> TENG:
    torch.manual_seed(case.seed)
    dim = 2 if case.domain.y is not None else 1
    spec, settings = case.model, case.training
    length = case.domain.x[1]
    model = PeriodicMLP(dim, 1, spec.width, spec.depth, spec.activation, length, spec.harmonics)
    return TENG(
        model,
        TENGPDE(case.pde.name, case.pde.nu),
        scheme=settings.scheme,
        dt=settings.dt,
        points=settings.points,
        subsample=settings.subsample,
        iterations=settings.iterations,
        solver=settings.solver,
        length=length,
        dim=dim,
        device=case.device,
        seed=case.seed,
    )


class Reference:
    """The spectral reference of a case at the evaluation times (absolute, within
    ``domain.t``), on the evaluation grid. The initial condition holds at ``domain.t[0]``, so
    the spectral solver integrates over the elapsed times ``t - domain.t[0]``: in steps of at
    most :data:`REFERENCE_DT` (heat: one exact exponential step per evaluation time,
    :meth:`~physml.spectral.SpectralSolver.solve`). A nonlinear reference over a long
    ``domain.t`` takes many steps (4000 / 2.5e-3 = 1.6 million): every hundredth of them, and
    the last, is told to ``on_step`` as ``{"status": "spectral reference: step k of n"}``
    (a record without ``step``: no time step is done yet)."""

    def __init__(self, case: TENGCase, times: list[float], teng_dt: float,
                 on_step: OnStep | None = None) -> None:
        dim = 2 if case.domain.y is not None else 1
        substeps = math.ceil(teng_dt / REFERENCE_DT - 1e-9)
        pde, n = case.pde, case.evaluation.nx
        kind = {"heat": SpectralSolver.heat, "allen_cahn": SpectralSolver.allen_cahn,
                "burgers": SpectralSolver.burgers}[pde.name]
        # Solved on twice the evaluation resolution, read off at every other node.
        solver = kind((2 * n,) * dim, pde.nu, teng_dt / substeps, length=case.domain.x[1],
                      device=case.device)
        fine = solver.mesh()
        u0 = initial_condition(case)(torch.stack([m.reshape(-1) for m in fine], dim=1))
        every_other = (slice(None),) + (slice(None, None, 2),) * dim
        elapsed = [t - case.domain.t[0] for t in times]

        def progress(done: int, total: int) -> None:  # every hundredth of the steps, and the last
            if on_step is not None and (done % max(1, total // 100) == 0 or done == total):
                on_step({"status": f"spectral reference: step {done:,} of {total:,}"})

        try:
            solved = solver.solve(u0.reshape(fine[0].shape), elapsed, progress)
        except BlowUpError as err:
            raise ValueError(
                "the spectral reference (ETDRK4, step "
                f"{teng_dt / substeps:.3g}) is not finite by t = "
                f"{case.domain.t[0] + err.t:g}: its fixed step does not resolve this initial "
                "state; lower conditions.initial.amplitude") from None
        # an upper estimate of the reference's own error
        self.unresolved = max(solver.unresolved_fraction(u) for u in solved)
        threshold = case.evaluation.threshold
        if threshold is not None and self.unresolved > threshold:
            raise ValueError(
                f"evaluation.nx={n}: the spectral reference on {2 * n} nodes per axis keeps "
                f"{self.unresolved:.2g} of its amplitude in its highest modes, above "
                f"evaluation.threshold={threshold:g}: its own error could decide the verdict; "
                f"raise evaluation.nx")
        self.states = solved[every_other]
        self.coords = [c[::2].cpu().numpy() for c in solver.coords()]
        mesh = torch.meshgrid(*(c[::2] for c in solver.coords()), indexing="ij")
        self.points = torch.stack([m.reshape(-1) for m in mesh], dim=1)
        self.times = times

    def error(self, teng: TENG, theta: torch.Tensor, index: int) -> tuple[float, np.ndarray]:
        """The relative L2 error of ``theta``'s prediction at evaluation time ``index`` (its
        norms scaled: finite for a finite prediction however large), and the prediction."""
        reference = self.states[index].reshape(-1)
        prediction = teng.value(theta, self.points)
        return relative_error(prediction - reference, reference), prediction.cpu().numpy()


def evaluation_steps(case: TENGCase) -> list[int]:
    """TENG steps at which the error is measured: every ``evaluation.every`` steps, at each of
    ``evaluation.times`` and at the end."""
    dt, (t0, t1), total = case.training.dt, case.domain.t, case.total_steps
    steps = set(range(0, total + 1, case.evaluation.every)) | {total}
    steps |= {round((t - t0) / dt) for t in case.evaluation.times if t0 <= t <= t1}
    return sorted(steps)


def run(case: TENGCase, folder: Path, resume: bool = False, on_step: OnStep | None = None) -> dict:
    """Run ``case`` in ``folder``, resuming from its checkpoint if asked; returns the
    summary. The fitted initial state is the first checkpoint (written before
    ``config.yaml``), so a resumed run never repeats the initial fit; the fit reports its
    progress to ``on_step`` as ``{"fit_iteration", "fit_error", "elapsed_s"}`` records, and a
    resumed run first reports its last measured error as a ``{"t", "rel_l2"}`` record (no
    ``step``: nothing was done). Before both, the spectral reference reports its steps
    (:class:`Reference`)."""
    threads = apply_threads(case.training.points, case.threads)
    teng = build_teng(case)
    steps = evaluation_steps(case)
    dt, t0 = teng.dt, case.domain.t[0]
    clock = Stopwatch(case.device)
    with clock:
        reference = Reference(case, [t0 + s * dt for s in steps], dt, on_step)
    reference_s = clock.seconds
    history: list[dict] = []
    wall_offset = 0.0

    def save() -> None:
        state = {**teng.state_dict(), "history": history, "wall_s": wall_offset + clock.read()}
        save_torch_file(folder / CHECKPOINT, state)

    def fit_progress(progress: FitProgress) -> None:
        if on_step is not None:
            on_step({"fit_iteration": progress.iteration, "fit_error": progress.error,
                     "elapsed_s": progress.elapsed_s})

    if resume:
        state = read_checkpoint(folder)
        with restoring(folder):
            teng.load_state_dict(state)
        history = state["history"]
        # the run's time at its checkpoint (a checkpoint written before it was kept: at its
        # last measurement)
        wall_offset = state.get("wall_s", history[-1]["wall_s"])
        if on_step is not None:  # the last error measured, for the progress line
            on_step({key: history[-1][key] for key in ("t", "rel_l2")})
    else:
        fit = case.training
        with clock, warnings.catch_warnings():
            # the case's budget is its iterations; the error reached is recorded
            # (initial_fit_rel_l2), not warned about
            warnings.simplefilter("ignore", FitToleranceWarning)
            teng.fit_initial(initial_condition(case), fit.initial_points,
                             max_iterations=fit.initial_iterations, on_iteration=fit_progress)
    step = round((teng.t - t0) / dt) if resume else 0
    total = steps[-1]
    teng.t = t0 + step * dt

    def record(step: int) -> dict:
        entry = {"step": step, "t": t0 + step * dt, "wall_s": wall_offset + clock.read()}
        if step in steps:
            entry["rel_l2"] = reference.error(teng, teng.theta, steps.index(step))[0]
        return entry

    if not resume:
        history.append(record(0))
        save()
        write_text(folder / CONFIG, case.to_yaml())
    last_checkpoint = step

    def stopped(error: BlowUpError) -> BlowUpError:
        """``error``, the run's ``metrics.json`` written (each step before its own finite)."""
        write_stopped_metrics(folder, case.name, error, history, steps=error.step - 1,
                              checkpoint_step=last_checkpoint,
                              wall_s=wall_offset + clock.read())
        return error

    with clock, step_loop():
        while step < total:
            try:
                teng.step()
            except BlowUpError as err:  # the step counted in the run, the checkpoint named
                raise stopped(BlowUpError(
                    step=step + 1, t=err.t, field=err.field, what=err.what,
                    advice=f"the checkpoint of step {last_checkpoint} is kept; "
                           "lower training.dt")) from None
            step += 1
            entry = record(step)
            if "rel_l2" in entry and not math.isfinite(entry["rel_l2"]):  # θ finite, u not
                raise stopped(BlowUpError(
                    step=step, t=entry["t"], field="the TENG prediction u",
                    what="became NaN/Inf on the evaluation grid",
                    advice=f"the checkpoint of step {last_checkpoint} is kept; "
                           "lower training.dt"))
            if "rel_l2" in entry:
                history.append(entry)
            if on_step is not None:
                on_step(entry)
            stopping = stop_pending()
            if step % case.training.checkpoint_every == 0 or step == total or stopping:
                save()
                last_checkpoint = step
            if stopping:
                raise_pending()
    with clock:  # the results' writing counts in the run's wall_s
        return write_teng_results(case, teng, reference, history, folder, {
            "initial_fit_rel_l2": teng.initial_error, "reference_s": reference_s,
            "reference_unresolved_fraction": reference.unresolved, "threads": threads},
            lambda: wall_offset + clock.read())


def write_teng_results(case, teng, reference, history, folder: Path, extra: dict,
                       wall_s: Callable[[], float]) -> dict:
    """Write the run's results (``errors.json``, ``predictions.h5``, the figures, then
    ``metrics.json`` with ``wall_s()``, the run's seconds then) and return its summary."""
    final, prediction = reference.error(teng, teng.theta, len(reference.times) - 1)
    at_times = {f"{t:g}": e["rel_l2"] for t in case.evaluation.times for e in history
                if abs(e["t"] - t) < 1e-9}
    threshold = case.evaluation.threshold
    steps = case.total_steps
    result = {
        "rel_l2": final, "steps": steps, "errors_at": at_times, "threshold": threshold,
        "passed": threshold_passed(final, threshold),
        "solve_s_per_step": teng.solve_seconds / max(steps, 1), "solver": teng.solver_used,
        "fallbacks": teng.fallbacks, "fallback_reasons": teng.fallback_reasons,
        "parameters": teng.theta.numel(), **extra,
    }
    curve = {"t": [e["t"] for e in history], "rel_l2": [e["rel_l2"] for e in history]}
    write_text(folder / "errors.json", json_text(curve))
    shape = reference.states.shape[1:]
    axes = reference.coords
    names = ("x", "y")[: len(shape)]
    ds = comparison_dataset(
        prediction.reshape(shape), reference.states[-1].cpu().numpy(), dict(zip(names, axes)),
        run_attrs(case, **pde_attrs(case.pde), t=reference.times[-1], rel_l2=final),
        evaluation_axes_metadata(names))
    write_dataset(ds, folder / "predictions.h5")
    if case.output.figures:
        from .figures import plot_error_curve, plot_solution

        scheme = f"TENG-{case.training.scheme}, dt = {case.training.dt:g}"
        plot_error_curve(curve, folder / "errors.png", case.name, scheme=scheme)
        if len(shape) == 2:
            plot_solution(ds, folder / "solution.png", scheme=scheme, step=case.total_steps,
                          log_error=case.output.log_error)
    result["wall_s"] = wall_s()
    write_metrics(folder, case.name, result, history)  # last: the results are all there
    return result


def describe(case: TENGCase) -> str:
    """One line: the PDE, the scheme and step, the network and the number of time steps."""
    training, model = case.training, case.model
    return (f"{case.pde.name}, TENG-{training.scheme} dt={training.dt:g}, {model.kind} "
            f"{model.width}x{model.depth}, {case.total_steps} time steps")


def headline(result: dict) -> str:
    """The final error against the spectral reference, with the threshold's verdict."""
    at = ", ".join(f"t={t}: {e:.2e}" for t, e in result["errors_at"].items())
    return (f"relative L2 error {result['rel_l2']:.3e}{threshold_verdict(result)} after "
            f"{result['steps']} time steps{f' ({at})' if at else ''}, {result['wall_s']:.0f} s")


KIND = CaseKind(
    name="teng",
    summary="time-evolving natural gradient (TENG) against the spectral reference",
    schema=TENGCase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.total_steps,
    checkpoint=CHECKPOINT,
)
