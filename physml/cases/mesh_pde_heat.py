r"""The ``heat`` run of ``kind: mesh_pde``: $u_t = \kappa\Delta u$, θ-scheme
(:func:`physml.solvers.mesh.heat`), Dirichlet values held, zero flux elsewhere. Checks
against exact facts: mass $\int u$ is conserved without Dirichlet parts, the Dirichlet energy
$\tfrac12 u^\top K u$ never grows, and the late-time decay rate of $\|u - \bar u\|_M$ matches
the scheme's amplification of the first non-zero eigenvalue $\lambda_1$ of
$K v = \lambda M v$ within :data:`DECAY_RATE_TOLERANCE` (the verdict ``passed``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from ..datasets.atomic_files import array_writer, write_array
from ..devices import Stopwatch
from ..interrupts import raise_pending, step_loop
from ..solvers import mesh as pm
from ..solvers.mesh.pde import heat_stepper
from ..torch_files import save_torch_file
from .kind import OnStep
from .mesh_pde_assembly import dirichlet_data, stiffness_and_mass
from .mesh_pde_results import Result
from .mesh_pde_spec import MeshPDECase
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    atomic_write,
    read_checkpoint,
    restoring,
    write_text,
)
from .run_lock import open_own
from .sections import threshold_passed


def first_eigenvalue(K, M) -> float:
    """Smallest non-zero $\\lambda$ of $K v = \\lambda M v$ on a connected mesh (closed
    surface or zero-flux boundary: the simple $\\lambda_0 = 0$ is skipped), by shift-invert
    Lanczos from a fixed start (ARPACK's own is random: the value differed in its last bits
    between two runs)."""
    start = np.random.default_rng(0).standard_normal(K.shape[0])
    values = spla.eigsh(K.tocsc(), k=2, M=M.tocsc(), sigma=-1e-3, which="LM", v0=start,
                        return_eigenvectors=False)
    return float(np.sort(values)[1])


def heat_record(step: int, t: float, u: np.ndarray, K, M) -> dict:
    """Mass $1^\\top M u$, Dirichlet energy $\\tfrac12 u^\\top K u$, range and $\\|u - \\bar
    u\\|_M$ ($\\bar u$ the mean) of a state."""
    mass = float((M @ u).sum())
    deviation = u - mass / M.sum()
    return {"step": step, "t": t, "mass": mass, "energy": float(0.5 * u @ K @ u),
            "min": float(u.min()), "max": float(u.max()),
            "deviation": float(np.sqrt(deviation @ M @ deviation))}


FRAMES = "frames.f64"
"""A heat run's saved frames in its run folder: (n,) float64 values each, raw, appended one
per save before the checkpoint that counts them is written (so a save is one frame's
writing); the first ones, one per record of the checkpoint's history, are the run's, any
after them the part of a save cut short, dropped on ``--resume``."""


def append_frame(folder: Path, u: np.ndarray) -> None:
    """Append ``u`` to ``folder``'s :data:`FRAMES` and flush it to the disk; a link there is
    refused (:func:`~.run_lock.open_own`)."""
    with open_own(folder / FRAMES, "ab") as file:
        write_array(file, np.asarray(u, dtype=np.float64))
        file.flush()
        os.fsync(file.fileno())


def kept_frames(folder: Path, count: int, n: int) -> list[np.ndarray]:
    """The first ``count`` (n,) frames of ``folder``'s :data:`FRAMES`, the file cut after them;
    a ValueError naming the file if it holds fewer, or is a link
    (:func:`~.run_lock.open_own`)."""
    path, size = folder / FRAMES, count * n * 8
    missing = ValueError(f"--resume: {str(path)!r} is missing or holds fewer than the "
                         f"checkpoint's {count} frames of {n} vertices; start a new run instead")
    try:
        file = open_own(path, "rb+")
    except FileNotFoundError:
        raise missing from None
    with file:
        if file.seek(0, os.SEEK_END) < size:
            raise missing
        file.truncate(size)
        file.seek(0)
        return list(np.fromfile(file, dtype=np.float64).reshape(count, n))


def upgrade_frames(folder: Path, state: dict) -> None:
    """Move the frames of a checkpoint of the earlier layout (``state["frames"]``, tensors)
    to ``folder``'s :data:`FRAMES`, in place: the file first, then the checkpoint without
    them, so an interruption leaves one layout or the other, both resumable."""
    frames = [u.numpy() for u in state.pop("frames")]
    state["vertices"] = frames[0].shape[0]
    atomic_write(folder / FRAMES, array_writer(np.stack(frames).astype(np.float64)))
    save_torch_file(folder / CHECKPOINT, state)


def run_heat(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
             on_step: OnStep, clock: Stopwatch) -> Result:
    """θ-scheme in segments of ``time.save_every`` steps on one set-up
    (:func:`~physml.solvers.mesh.pde.heat_stepper`), a frame and a checkpoint after each (a
    stop deferred to the end of the step, :func:`~physml.interrupts.stops_deferred`, waits
    for the end of the segment and its checkpoint). A
    checkpoint holds the run's seconds so far (``clock``'s, as ``wall_s``) and the steps'
    (``stepping_s``, over every resumed part: the summary's ``step_s`` per step)."""
    spec, steps = case.time, case.time.steps
    fixed, g = dirichlet_data(case, mesh)
    K, M = stiffness_and_mass(mesh)
    rollout = heat_stepper(mesh, dt=spec.dt, kappa=case.pde.kappa, theta=spec.theta,
                           dirichlet=fixed)

    def save(state: dict, u: np.ndarray) -> None:
        state["wall_s"] = clock.read()
        append_frame(folder, u)
        save_torch_file(folder / CHECKPOINT, state)

    if resume:
        state = read_checkpoint(folder)
        if "frames" in state:  # written before the frames had a file of their own
            upgrade_frames(folder, state)
        with restoring(folder):
            vertices, count = state["vertices"], len(state["history"])
        if vertices != mesh.n_vertices:
            raise ValueError(f"--resume: the checkpoint holds {vertices} vertices, the mesh "
                             f"{mesh.n_vertices}")
        frames = kept_frames(folder, count, mesh.n_vertices)
        state.setdefault("stepping_s", state["wall_s"])  # earlier wall_s: the steps alone
        clock.seconds += state["wall_s"]
    else:
        u0 = case.pde.initial.values(mesh.points)
        u0[fixed] = g
        frames = [u0]
        state = {"step": 0, "vertices": mesh.n_vertices,
                 "history": [heat_record(0, 0.0, u0, K, M)], "stepping_s": 0.0}
        (folder / FRAMES).unlink(missing_ok=True)
        save(state, u0)
        write_text(folder / CONFIG, case.to_yaml())
    offset, start = state["stepping_s"], time.perf_counter()
    with step_loop():
        while state["step"] < steps:
            n = min(spec.save_every, steps - state["step"])
            u = rollout(frames[-1], n)
            for j in range(1, n + 1):
                on_step({"step": state["step"] + j, "t": (state["step"] + j) * spec.dt})
            state["step"] += n
            frames.append(u[-1])
            record = heat_record(state["step"], state["step"] * spec.dt, u[-1], K, M)
            state["history"].append(record)
            state["stepping_s"] = offset + time.perf_counter() - start
            save(state, u[-1])
            raise_pending()  # a stop recorded: after this segment's checkpoint
    history = state["history"]
    frames = np.stack(frames)
    summary = heat_summary(case, history, K, M, closed=len(fixed) == 0)
    summary |= {"vertices": mesh.n_vertices, "h": mesh.edge_length(), "steps": steps,
                "step_s": state["stepping_s"] / steps}
    return Result(mesh, {"u0": frames[0], "u": frames[-1]}, summary, history,
                  (np.array([r["t"] for r in history]), frames))


DECAY_RATE_TOLERANCE = 1e-3
"""Relative tolerance of a heat run's late decay rate against the expected one. The
discretisation reaches 9e-5 on the bundled torus (h 0.1, 1940 vertices, t = 4), where the
rate between saves levels off at the mesh's split of the torus's degenerate first eigenpair
($\\lambda$ = 1.030724 and 1.030817); 1.4e-4 on the ``quick`` variant (h 0.2, t = 2) and
5.3e-4 on ``genus2`` (t = 4, still falling). A run that ends before the first mode dominates
misses it (``quick`` stopped at t = 1: 2.4e-2)."""

ROUNDOFF_DEVIATION = 1e-10
"""A heat run's $\\|u - \\bar u\\|_M$ at most this fraction of $\\max|u_0|\\,|\\Omega|^{1/2}$
is round-off: a constant field gives about $10^{-16}$, and a decaying one levels off at about
$10^{-12}$, where the implicit step's change is of the order of the solve's tolerance (the
quick variant from t = 25); far below any perturbation whose decay is measured."""


def heat_summary(case: MeshPDECase, history: list[dict], K, M, closed: bool) -> dict:
    """Energy monotonicity, maximum-principle overshoot and, without Dirichlet parts (where
    mass is conserved), the mass drift and the late-time decay rate against the scheme's
    amplification of $\\lambda_1$: $-\\log|G|/dt$, $G = (1 - (1-\\theta)\\,dt\\,
    \\kappa\\lambda_1) / (1 + \\theta\\,dt\\,\\kappa\\lambda_1)$; ``passed`` when their
    relative difference is within :data:`DECAY_RATE_TOLERANCE` (its ``threshold``). The
    rate is read between the last two saves whose $\\|u - \\bar u\\|_M$ is above round-off
    (:data:`ROUNDOFF_DEVIATION`), their times in ``decay_rate_interval``; never over the
    first interval, which holds the start's fast modes. No rate and no verdict, the reason in
    ``decay_rate_skipped``, where no such interval is left (a constant start: nothing to
    decay; two saves only; round-off reached by the end of the second interval), or on a
    mesh in several connected parts (each keeps its own mean: $\\lambda = 0$ is repeated and
    $\\|u - \\bar u\\|_M$ need not decay to 0), or where $|G|$ rounds to 1
    (:func:`decay_rate_check`)."""
    first, last = history[0], history[-1]
    energy = np.array([r["energy"] for r in history])
    span = max(first["max"] - first["min"], 1e-300)
    summary = {
        "t": last["t"],
        "energy_monotone": bool(np.all(np.diff(energy) <= 1e-12 * energy[0])),
        "overshoot": max(0.0, max(r["max"] for r in history) - first["max"],
                         first["min"] - min(r["min"] for r in history)) / span,
        "final_deviation": last["deviation"] / max(first["deviation"], 1e-300),
    }
    if not closed:
        return summary
    summary["mass_drift"] = abs(last["mass"] - first["mass"]) / max(abs(first["mass"]), 1e-300)
    magnitude = max(abs(first["min"]), abs(first["max"])) * float(np.sqrt(M.sum()))
    roundoff = ROUNDOFF_DEVIATION * magnitude
    measured = [k for k in range(2, len(history)) if history[k]["deviation"] > roundoff]
    if first["deviation"] <= roundoff:
        summary["decay_rate_skipped"] = (
            f"initial deviation from the mean {first['deviation']:.1e} is round-off "
            f"(max|u0| sqrt(area) {magnitude:.1e})")
    elif len(history) == 2:
        summary["decay_rate_skipped"] = (
            f"two saves only (time.save_every {case.time.save_every} >= time.steps "
            f"{case.time.steps}): the rate is read after the first interval, which holds the "
            "start's fast modes; lower time.save_every")
    elif not measured:
        summary["decay_rate_skipped"] = (
            f"deviation from the mean {history[2]['deviation']:.1e} is round-off (max|u0| "
            f"sqrt(area) {magnitude:.1e}) by t = {history[2]['t']:g}, the end of the second "
            "interval; lower time.save_every")
    elif (parts := connected_components(M, directed=False)[0]) > 1:  # M_ij > 0 on each edge
        summary["decay_rate_skipped"] = (
            f"the mesh has {parts} connected parts: each keeps its own mean, so the deviation "
            "from the global mean need not decay to 0 and no single rate is expected")
    else:
        summary |= decay_rate_check(case, history[measured[-1] - 1], history[measured[-1]],
                                    first_eigenvalue(K, M))
    return summary


def decay_rate_check(case: MeshPDECase, previous: dict, end: dict, lam: float) -> dict:
    """The decay rate of $\\|u - \\bar u\\|_M$ between the saves ``previous`` and ``end``
    against the scheme's $-\\log|G|/dt$ for $\\lambda_1$ = ``lam`` (see :func:`heat_summary`);
    no rate and no verdict, the reason in ``decay_rate_skipped``, where $|G|$ rounds to 1
    (``time.dt`` so large that Crank–Nicolson's $G \\to -1$, or so small that $G \\to 1$):
    the expected rate is then 0 to double precision and a relative error has no meaning."""
    dt, theta, kappa = case.time.dt, case.time.theta, case.pde.kappa
    amplification = (1 - (1 - theta) * dt * kappa * lam) / (1 + theta * dt * kappa * lam)
    expected = -np.log(abs(amplification)) / dt
    if not expected > 0:
        return {"lambda_1": lam, "decay_rate_skipped": (
            f"the scheme's amplification of the first mode is {amplification:.17g} at "
            f"time.dt={dt:g} (time.theta={theta:g}, kappa lambda_1={kappa * lam:.4g} /s): "
            f"no decay to compare in double precision; a time.dt near 1/(kappa lambda_1)="
            f"{1 / (kappa * lam):.3g} s measures it")}
    observed = np.log(previous["deviation"] / end["deviation"]) / (end["t"] - previous["t"])
    error = float(abs(observed - expected) / expected)
    return {"lambda_1": lam, "decay_rate": float(observed),
            "decay_rate_interval": [previous["t"], end["t"]],
            "decay_rate_expected": float(expected), "decay_rate_error": error,
            "decay_rate_tolerance": DECAY_RATE_TOLERANCE, "threshold": DECAY_RATE_TOLERANCE,
            "passed": threshold_passed(error, DECAY_RATE_TOLERANCE)}
