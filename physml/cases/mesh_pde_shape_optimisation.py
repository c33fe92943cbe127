r"""The ``shape_optimisation`` run of ``kind: mesh_pde``: vertex positions $x$ move by Adam
to minimise $J(x) = \sum_i w_i (u_i(x) - U(x_i))^2 / (|\Omega_0| U_{max}^2) + \beta\,Q(x)$,
where $u(x)$ is the P1 solution of $-\Delta u = f$ (a constant), $u = 0$ on the boundary, on
the moved mesh (gradients through :func:`physml.mesh_bridge.poisson_solve`), $U(x) = f\,(1 -
x^2/a^2 - y^2/b^2) / (2/a^2 + 2/b^2)$ the exact solution on the ellipse of semi-axes
``optimisation.target_semi_axes`` $(a, b)$ (so $J = 0$ exactly when the domain is that
ellipse, up to the discretisation), $w$ the initial lumped mass, and
$Q = \operatorname{mean}_c |e|^2/(4\sqrt3 A_c) - 1 \ge 0$ the mean-ratio quality of the
triangles (0 for equilateral ones, infinite for a collapsed or flipped one).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..devices import Stopwatch
from ..errors import NonFiniteLossError, adam_can_step
from ..interrupts import raise_pending, step_loop, stop_pending
from ..solvers import mesh as pm
from ..solvers.mesh.checks import TangledCellsError
from ..torch_files import save_torch_file
from .kind import OnStep
from .mesh_pde_results import Result
from .mesh_pde_spec import MeshPDECase
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    read_checkpoint,
    restoring,
    write_stopped_metrics,
    write_text,
)


class FoldedMeshError(NonFiniteLossError):
    """Update ``step`` moved the vertices so that cells collapse or fold: ``problem`` names
    them; the run stops as on a NaN/Inf loss, its checkpoint kept."""

    def __init__(self, step: int, checkpoint_step: int | None, problem: str) -> None:
        super().__init__(step, checkpoint_step)
        kept = str(self).split("; ", 1)[1]
        self.args = (f"the update of step {step} tangled the mesh ({problem}); {kept}; "
                     "raise optimisation.quality_weight or lower optimisation.lr",)


def mean_ratio_quality(points: torch.Tensor, cells: torch.Tensor,
                       orientation: torch.Tensor) -> torch.Tensor:
    r"""$Q = \operatorname{mean}_c (|e_0|^2 + |e_1|^2 + |e_2|^2) / (4\sqrt3 A_c) - 1 \ge 0$ for
    planar triangles; ``orientation`` (m,) the sign of each cell's initial area. A cell that
    collapsed or flipped ($A_c \le 0$) makes $Q = \infty$."""
    x = points[cells]
    e0, e1, e2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1], x[:, 0] - x[:, 2]
    area = 0.5 * orientation * (e0[:, 0] * (-e2[:, 1]) - e0[:, 1] * (-e2[:, 0]))
    if bool((area <= 0).any()):
        return torch.full((), torch.inf, dtype=points.dtype)
    squares = (e0 ** 2).sum(1) + (e1 ** 2).sum(1) + (e2 ** 2).sum(1)
    return (squares / (4 * np.sqrt(3) * area)).mean() - 1


def run_shape_optimisation(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                           on_step: OnStep, clock: Stopwatch) -> Result:
    """Adam on the vertex positions through the differentiable Poisson solve. A NaN/Inf loss
    or gradient, or an update that folds the mesh, stops it (:class:`NonFiniteLossError`,
    :class:`FoldedMeshError`) with a ``metrics.json`` of the steps taken. The history's
    record ``step`` k holds $J$ and its terms at the vertices after k updates: 0 the start,
    ``optimisation.steps`` the end, which the summary's ``*_final`` entries repeat;
    ``match_drop`` is the match term's ratio, first to last, ``passed`` when it reaches
    ``threshold`` (``optimisation.loss_drop``). A checkpoint of physml 0.2.0, whose history
    held as step k the loss before update k (from 1), is resumed with that record as step
    k - 1, the vertices after k - 1 updates it was measured at. A checkpoint holds the run's
    seconds so far (``clock``'s, as ``wall_s``) and the updates' (``steps_s``, over every
    resumed part: the summary's ``step_s`` per update)."""
    if mesh.dim != 2 or mesh.cell_dim != 2:
        raise ValueError("pde.name 'shape_optimisation' needs a planar triangle mesh "
                         f"(got points of dimension {mesh.dim} and {mesh.cell_dim}D cells)")
    from ..mesh_bridge import poisson_solve

    spec = case.optimisation
    fixed = mesh.boundary_vertices()
    a, b = spec.target_semi_axes
    peak = case.pde.source.amplitude / (2 / a**2 + 2 / b**2)  # U at the centre
    weights = np.asarray(pm.to_scipy(pm.mass_matrix(mesh)).sum(axis=1)).ravel()
    norm = weights.sum() * peak**2
    device = torch.device(str(mesh.device))  # the bridge's tensors live where the mesh does
    as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float64, device=device)  # noqa: E731
    w = as_tensor(weights)
    f = as_tensor(case.pde.source.values(mesh.points))
    cells = torch.tensor(mesh.cells, dtype=torch.long, device=device)
    e1, e2 = (mesh.points[mesh.cells[:, i]] - mesh.points[mesh.cells[:, 0]] for i in (1, 2))
    orientation = torch.sign(as_tensor(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]))
    x = torch.tensor(mesh.points, dtype=torch.float64, device=device, requires_grad=True)
    adam = torch.optim.Adam([x], lr=spec.lr)
    history: list[dict] = []

    def target(points: torch.Tensor) -> torch.Tensor:
        return peak * (1 - (points[:, 0] / a) ** 2 - (points[:, 1] / b) ** 2)

    def terms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        u = poisson_solve(x, mesh, f, fixed)
        match = (w * (u - target(x)) ** 2).sum() / norm
        quality = mean_ratio_quality(x, cells, orientation)
        return match + spec.quality_weight * quality, match, quality, u

    def save(step: int) -> None:
        state = {"step": step, "points": x.detach().clone(), "adam": adam.state_dict(),
                 "history": history, "steps_s": elapsed, "wall_s": clock.read()}
        save_torch_file(folder / CHECKPOINT, state)

    def stopped(error: NonFiniteLossError, steps: int) -> NonFiniteLossError:
        """``error``, once ``metrics.json`` holds the ``steps`` updates taken before it."""
        write_stopped_metrics(folder, case.name, error, history, steps=steps,
                              wall_s=clock.read())
        return error

    def record(step: int, loss: torch.Tensor, match: torch.Tensor,
               quality: torch.Tensor) -> None:
        """The history's record of the vertices after ``step`` updates."""
        history.append({"step": step, "loss": loss.item(), "loss_match": match.item(),
                        "loss_quality": quality.item()})
        on_step(history[-1])

    start, last_checkpoint, elapsed = 0, None, 0.0  # elapsed: the steps' time, every session
    if resume:
        state = read_checkpoint(folder)
        with restoring(folder), torch.no_grad():
            x.copy_(state["points"])
            adam.load_state_dict(state["adam"])
        start, history, last_checkpoint = state["step"], state["history"], state["step"]
        if history and history[0]["step"] == 1:  # 0.2.0's layout, renumbered to this one
            history = [{**entry, "step": entry["step"] - 1} for entry in history]
        # earlier versions kept the updates' seconds as wall_s, or no time at all
        elapsed = state.get("steps_s", state.get("wall_s", 0.0))
        timed_steps = spec.steps - start if "wall_s" not in state else spec.steps
        clock.seconds += state.get("wall_s", 0.0)
    else:
        save(0)
        write_text(folder / CONFIG, case.to_yaml())
        last_checkpoint, timed_steps = 0, spec.steps
    started, earlier_s = time.perf_counter(), elapsed
    with step_loop():
        for step in range(start, spec.steps):
            adam.zero_grad()
            try:
                loss, match, quality, _ = terms()
            except TangledCellsError as err:  # the last update tangled the mesh: a run failure
                raise stopped(FoldedMeshError(step, last_checkpoint, err.problem), step) from None
            if not torch.isfinite(loss):
                raise stopped(NonFiniteLossError(step + 1, last_checkpoint), step)
            record(step, loss, match, quality)
            loss.backward()
            if not adam_can_step(loss.detach(), [x]):
                raise stopped(NonFiniteLossError(step + 1, last_checkpoint), step)
            adam.step()
            elapsed = earlier_s + time.perf_counter() - started
            stopping = stop_pending()
            if (step + 1) % spec.checkpoint_every == 0 or step + 1 == spec.steps or stopping:
                save(step + 1)
                last_checkpoint = step + 1
            if stopping:
                raise_pending()
    with torch.no_grad():
        loss, match, quality, u = terms()
    record(spec.steps, loss, match, quality)
    moved = pm.Mesh(x.detach().cpu().numpy(), mesh.cells)
    extent = np.ptp(moved.points, axis=0)
    boundary = moved.points[fixed]
    first, last = history[0], history[-1]
    drop = first["loss_match"] / last["loss_match"]
    summary = {
        "vertices": mesh.n_vertices, "steps": spec.steps, "loss_initial": first["loss"],
        "loss_final": last["loss"], "match_initial": first["loss_match"],
        "match_final": last["loss_match"], "quality_final": last["loss_quality"],
        "match_drop": drop, "threshold": spec.loss_drop, "passed": drop >= spec.loss_drop,
        "aspect": float(extent[0] / extent[1]), "aspect_target": a / b,
        "boundary_off_ellipse": float(np.abs(np.hypot(boundary[:, 0] / a,
                                                      boundary[:, 1] / b) - 1).max()),
    }
    if timed_steps:
        summary["step_s"] = elapsed / timed_steps
    else:  # a run of an earlier version resumed after its last step: its step_s stays
        recorded = _recorded_timing(folder)
        clock.seconds += recorded.pop("wall_s", 0.0)
        summary |= recorded
    exact = target(torch.tensor(moved.points)).numpy()
    u = u.cpu().numpy()
    return Result(moved, {"u": u, "exact": exact, "error": u - exact},
                  summary, history)


def _recorded_timing(folder: Path) -> dict:
    """``step_s`` (and ``wall_s``) as the run's ``metrics.json`` recorded them, if it did."""
    try:
        recorded = json.loads((folder / METRICS).read_text(encoding="utf-8"))["summary"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {key: recorded[key] for key in ("step_s", "wall_s") if key in recorded}
