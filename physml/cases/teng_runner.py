"""Running a TENG case: fit the initial condition, step in time, measure against the spectral
reference, checkpoint, and write the run folder.

Run folder::

    config.yaml        the resolved case
    checkpoint.pt      parameters, time, random state and history at the last checkpoint
    metrics.json       relative L2 error against time (history) and the summary
    errors.json        the error-versus-time curve alone: {"t": [...], "rel_l2": [...]}
    predictions.h5     prediction, reference and error at the final time (xarray)
    errors.png         relative L2 error against time (log scale)
    solution.png       prediction | reference | |error| at the final time (2D cases)

The reference is the ETDRK4 spectral solver on twice ``evaluation.nx`` nodes per axis with
steps of at most 2.5e-3; errors are measured on every other node (``evaluation.nx`` per axis),
and the training points are drawn uniformly at random each step, so they are never
evaluation points.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..datasets.store import write_dataset
from ..errors import NonFiniteLossError
from ..models import PeriodicMLP
from ..solvers.spectral import SpectralSolver
from ..train.problems import sine
from ..train.teng import TENG, TENGPDE
from .runner import CHECKPOINT, _atomic
from .schema import CaseSpec

REFERENCE_DT = 2.5e-3  # largest ETDRK4 step of the reference (self-converged to ~1e-10)


def initial_condition(case: CaseSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    """$u_0$ of the case as a function of points (n, d)."""
    spec = case.conditions.initial
    if spec.kind == "cosh_sinh":
        return lambda X: spec.amplitude * torch.cosh(3 * torch.sin(X[:, 0])) * torch.sinh(
            torch.sin(X[:, 1])
        )
    return lambda X: sine(X[:, 0], spec.amplitude, spec.wavenumber)


def build_teng(case: CaseSpec) -> TENG:
    torch.manual_seed(case.seed)
    dim = 2 if case.domain.y is not None else 1
    spec, settings = case.model, case.training.teng
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
    """The spectral reference of a case at the evaluation times, on the evaluation grid."""

    def __init__(self, case: CaseSpec, times: list[float], teng_dt: float) -> None:
        dim = 2 if case.domain.y is not None else 1
        substeps = math.ceil(teng_dt / REFERENCE_DT - 1e-9)
        pde, n = case.pde, case.evaluation.nx + case.evaluation.nx % 2
        kind = {"heat": SpectralSolver.heat, "allen_cahn": SpectralSolver.allen_cahn,
                "burgers": SpectralSolver.burgers}[pde.name]
        # Solved on twice the evaluation resolution, read off at every other node.
        solver = kind((2 * n,) * dim, pde.nu, teng_dt / substeps, length=case.domain.x[1],
                      device=case.device)
        fine = solver.mesh()
        u0 = initial_condition(case)(torch.stack([m.reshape(-1) for m in fine], dim=1))
        every_other = (slice(None),) + (slice(None, None, 2),) * dim
        self.states = solver.solve(u0.reshape(fine[0].shape), times)[every_other]
        self.coords = [c[::2].cpu().numpy() for c in solver.coords()]
        mesh = torch.meshgrid(*(c[::2] for c in solver.coords()), indexing="ij")
        self.points = torch.stack([m.reshape(-1) for m in mesh], dim=1)
        self.times = times

    def error(self, teng: TENG, theta: torch.Tensor, index: int) -> tuple[float, np.ndarray]:
        reference = self.states[index].reshape(-1)
        prediction = teng.value(theta, self.points)
        return float((prediction - reference).norm() / reference.norm()), prediction.cpu().numpy()


def evaluation_steps(case: CaseSpec) -> list[int]:
    """TENG steps at which the error is measured: every ``evaluation.every`` steps, at each of
    ``evaluation.times`` and at the end."""
    dt, (t0, t1), total = case.training.teng.dt, case.domain.t, case.total_steps
    steps = set(range(0, total + 1, case.evaluation.every)) | {total}
    steps |= {round((t - t0) / dt) for t in case.evaluation.times if t0 <= t <= t1}
    return sorted(steps)


def run_teng_case(
    case: CaseSpec,
    folder: Path,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
) -> tuple[Path, dict]:
    """Run ``case`` (``training.method: teng``) in ``folder``; returns the folder and summary."""
    teng = build_teng(case)
    steps = evaluation_steps(case)
    dt, t0 = teng.dt, case.domain.t[0]
    started = time.perf_counter()
    reference = Reference(case, [t0 + s * dt for s in steps], dt)
    reference_s = time.perf_counter() - started
    history: list[dict] = []
    if resume:
        path = folder / CHECKPOINT
        if not path.is_file():
            raise ValueError(f"--resume: {str(path)!r} does not exist")
        state = torch.load(path, weights_only=False)
        teng.theta, teng.t, history = state["theta"], state["t"], state["history"]
        teng.generator.set_state(state["generator"])
        teng.solve_seconds, teng.solves = state["solve_seconds"], state["solves"]
        initial_error = state["initial_error"]
    else:
        _atomic(folder / "config.yaml", lambda p: p.write_text(case.to_yaml()))
        fit = case.training.teng
        initial_error = teng.fit_initial(initial_condition(case), fit.initial_points,
                                         max_iterations=fit.initial_iterations)
    step = round((teng.t - t0) / dt) if resume else 0
    total = steps[-1]
    last_checkpoint = step if resume else None
    teng.t = t0 + step * dt
    wall_offset = history[-1]["wall_s"] if history else 0.0
    clock = time.perf_counter()

    def record(step: int) -> dict:
        entry = {"step": step, "t": t0 + step * dt, "wall_s": wall_offset + time.perf_counter()
                 - clock}
        if step in steps:
            entry["rel_l2"] = reference.error(teng, teng.theta, steps.index(step))[0]
        return entry

    if not history:
        history.append(record(0))
    while step < total:
        teng.step()
        step += 1
        if not torch.isfinite(teng.theta).all():
            raise NonFiniteLossError(step, last_checkpoint)
        entry = record(step)
        if "rel_l2" in entry:
            history.append(entry)
        if on_step is not None:
            on_step(entry)
        if step % case.training.teng.checkpoint_every == 0 or step == total:
            state = {"theta": teng.theta, "t": teng.t, "history": history,
                     "generator": teng.generator.get_state(), "solve_seconds": teng.solve_seconds,
                     "solves": teng.solves, "initial_error": initial_error}
            _atomic(folder / CHECKPOINT, lambda p, state=state: torch.save(state, p))
            last_checkpoint = step
    elapsed = time.perf_counter() - started
    return folder, write_teng_results(case, teng, reference, history, folder, {
        "initial_fit_rel_l2": initial_error, "reference_s": reference_s, "wall_s": elapsed})


def write_teng_results(case, teng, reference, history, folder: Path, extra: dict) -> dict:
    final, prediction = reference.error(teng, teng.theta, len(reference.times) - 1)
    at_times = {f"{t:g}": e["rel_l2"] for t in case.evaluation.times for e in history
                if abs(e["t"] - t) < 1e-9}
    threshold = case.evaluation.threshold
    steps = case.total_steps
    result = {
        "rel_l2": final, "steps": steps, "errors_at": at_times, "threshold": threshold,
        "passed": None if threshold is None else final <= threshold,
        "solve_s_per_step": teng.solve_seconds / max(steps, 1), "solver": teng.solver,
        "parameters": teng.theta.numel(), **extra,
    }
    metrics = {"case": case.name, "summary": result, "history": history}
    _atomic(folder / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=1)))
    curve = {"t": [e["t"] for e in history], "rel_l2": [e["rel_l2"] for e in history]}
    _atomic(folder / "errors.json", lambda p: p.write_text(json.dumps(curve)))
    shape = reference.states.shape[1:]
    axes = reference.coords
    names = ("x", "y")[: len(shape)]
    dims = names[::-1]  # (y, x): rows are y, as the figures expect
    truth = reference.states[-1].cpu().numpy()
    predicted = prediction.reshape(shape)
    ds = xr.Dataset(
        {name: (dims, field.T) for name, field in
         (("prediction", predicted), ("reference", truth), ("error", predicted - truth))},
        coords=dict(zip(names, axes)),
        attrs={"case": case.name, "pde": case.pde.name, "t": reference.times[-1],
               "rel_l2": final, "config": case.to_yaml()},
    )
    write_dataset(ds, folder / "predictions.h5")
    if case.output.figures:
        from .figures import plot_error_curve, plot_solution

        plot_error_curve(curve, folder / "errors.png", case.name)
        if len(shape) == 2:
            plot_solution(ds, folder / "solution.png")
    return result
