"""Cahn–Hilliard thermomigration, ``kind: thermomigration``: integrate the case's solver with
checkpoints, then track the precipitates and write the run folder. The schema is
:mod:`~.thermomigration_spec`, the solver is built by :mod:`~.thermomigration_build`, the
tracking and summary are :mod:`~.thermomigration_analysis`, the files
:mod:`~.thermomigration_results`.

Run folder::

    config.yaml           the resolved case
    checkpoint.npz        the snapshots' times and diagnostics so far, the last step size
    checkpoint_states/    the snapshots so far, one ``NNNNNN.npy`` each (c at snapshot N);
                          a save writes the new ones and then the index checkpoint.npz,
                          each atomically, so the index names only complete snapshots
    trajectory.h5         c(time, x, y, z) and T as xarray/HDF5: T(x, y, z) for a linear
                          temperature, T(time, x, y, z) for ``heat``, none for
                          ``units: nondimensional``; its attribute ``initial_kind`` is the
                          start (:func:`~.thermomigration_analysis.initial_kind`)
    tracked.json          a list, one record per snapshot (below)
    metrics.json          the summary: mass drift, energy monotonicity (isothermal runs:
                          under a temperature gradient the free energy may rise), migration
                          velocity against the sharp-interface estimate, steady-profile
                          error, the initially smaller of two particles' volume ratio
                          (these two for a start from particles, as tracked.png), the
                          precipitates' centre-of-mass shift; the history: per snapshot the
                          accepted steps so far, time, mass and free energy; a run a
                          blow-up stopped keeps the snapshots' history so far and says
                          why and at which step (:func:`~.run_folder.write_stopped_metrics`)
    free_energy.png       the total free energy against time, on log axes as PFHub compares
                          its benchmarks
                          (:func:`~.microstructure_figures.plot_free_energy`; with figures on,
                          as below)
    profile.png           1D cases: c(x) at the snapshots
    snapshots.png         2D/3D: the microstructure at four times (the particles' starting
                          and current centroids marked as tracked.png is drawn, below)
    microstructure.gif    2D/3D: the whole time series, animated (3D: the mid-plane)
    tracked.png           2D/3D double well started from particles (``initial.kind``
                          precipitates or random_precipitates, or a file whose run started
                          so: :data:`~.thermomigration_spec.PARTICLE_INITIALS`): particle
                          positions and radii against time; none for a spinodal
                          decomposition, whose bicontinuous network is no set of particles

A ``tracked.json`` record (:func:`~.thermomigration_analysis.track`)::

    {"t": 5000.0,                   time [s]
     "mass": 1.5e-9,                $\\int c\\,dV$ [m^d]
     "free_energy": -1.2e-4,        $\\int f + \\tfrac\\kappa2|\\nabla c|^2\\,dV$ [J m^d/mol]
     # the double well only:
     "phase_centre_of_mass": 1.1e-4,    the precipitates' centre of mass along the
                                        temperature axis [m], $\\sum_p V_p x_p/\\sum_p V_p$
                                        over the particles below (the matrix carries no
                                        weight); null with no particle; absent when
                                        that axis is periodic
     "particles": [                 largest first
       {"id": 0,                    int >= 0, the same particle in every snapshot: matched
                                    to the previous snapshot's by mutual nearest centroid
                                    (minimum image on periodic axes); a particle that
                                    appears, or the farther piece of a split, gets a new
                                    id; a vanished particle's id is never reused
        "centroid": [6.0e-5, 4.8e-5],   $\\phi$-weighted mean position [m], one per axis
        "radius": 2.0e-5,           of the disc (sphere, 1D: half-length) of equal volume [m]
        "volume": 1.26e-9}]}        $\\int\\phi\\,dV$ over the particle [m^d]

Every quantity is SI: lengths in m, temperatures in K, energies in J/mol, diffusivities in
m^2/s, times in s::

    kind: thermomigration
    name: thermomigration_single_precipitate
    grid: {shape: [256, 256], length: [2.56e-4, 2.56e-4], bc: [no_flux, periodic]}
    temperature: {kind: linear, mean: 1000.0, gradient: 5.0e5, axis: 0}
    free_energy: {kind: double_well, barrier: 2078.6, c_alpha: 0.1, c_beta: 0.9,
                  slope_alpha: 1.0e-4, diffusivity: 1.0e-12}
    interface_width: 1.5e-6
    heat_of_transport: -23280.0
    initial: {kind: precipitates, centres: [[1.28e-4, 1.28e-4]], radii: [2.4e-5]}
    time: {end: 2.0e4, saves: 41}

``units: nondimensional`` states the isothermal double-well model in the case's own units
instead (PFHub benchmark 1: ``cases/thermomigration_spinodal_pfhub1.yaml``)::

    units: nondimensional
    free_energy: {kind: double_well, rho: 5.0, c_alpha: 0.3, c_beta: 0.7, mobility: 5.0}
    kappa: 2.0
    initial: {kind: expression, expression: "0.5 + 0.01*cos(0.105*x)*cos(0.11*y)"}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets.atomic_files import array_writer
from ..devices import Stopwatch
from ..solvers.errors import BlowUpError
from ..solvers.thermomigration_trajectory import Trajectory
from .kind import CaseKind, OnStep
from .run_folder import (
    CONFIG,
    CheckpointPartError,
    atomic_write,
    read_checkpoint,
    unreadable,
    write_stopped_metrics,
    write_text,
)
from .thermomigration_analysis import (
    NONDIMENSIONAL_UNITS,
    SUMMARY_UNITS,
    summarise,
    temperature_history,
    track,
)
from .thermomigration_build import build_solver
from .thermomigration_results import snapshot_history, write_thermomigration_results
from .thermomigration_spec import ThermomigrationCase

CHECKPOINT = "checkpoint.npz"
STATES = "checkpoint_states"


def _state_path(folder: Path, k: int) -> Path:
    return folder / STATES / f"{k:06d}.npy"


def _save_checkpoint(folder: Path, run: Trajectory, dt: float, wall_s: float,
                     saved: int) -> int:
    """Write the snapshots of ``run`` after the first ``saved`` (those on disk already), one
    file each, then the index ``checkpoint.npz``, each atomically: a save writes the new
    snapshots, not the whole run again, and a crash at any point leaves an index naming only
    complete snapshots. Returns the count of snapshots now saved."""
    (folder / STATES).mkdir(exist_ok=True)
    for k in range(saved, len(run.states)):
        atomic_write(_state_path(folder, k), array_writer(run.states[k], npy=True))

    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, times=run.times, mass=run.mass, free_energy=run.free_energy,
                     steps=run.steps, rejected=run.rejected, dt=dt, wall_s=wall_s)

    atomic_write(folder / CHECKPOINT, write)
    return len(run.states)


def _read_checkpoint(path: Path) -> dict:
    """The index at ``path`` with its ``states``: read from ``checkpoint_states/``, or from
    the index itself as a checkpoint written before the snapshots had files of their own
    holds them."""
    data = dict(np.load(path))
    if "states" not in data:
        data["states"] = [_read_state(_state_path(path.parent, k))
                          for k in range(len(data["times"]))]
    return data


def _read_state(path: Path) -> np.ndarray:
    """One snapshot of ``checkpoint_states/``, or a :class:`CheckpointPartError` naming it."""
    try:
        return np.load(path)
    except Exception as error:  # noqa: BLE001 (NumPy's many ways of failing on a damaged file)
        raise CheckpointPartError(unreadable(path, "a snapshot of the checkpoint", error)
                                  ) from None


def _load_checkpoint(folder: Path) -> tuple[Trajectory, float, float, int]:
    """The run so far, its next step size, the wall seconds it took and the count of its
    snapshots in ``checkpoint_states/`` (0 for a checkpoint of the older, single-file
    layout: the next save writes them all)."""
    data = read_checkpoint(folder, _read_checkpoint, CHECKPOINT)
    run = Trajectory(times=list(data["times"]), states=list(data["states"]),
                     mass=list(data["mass"]), free_energy=list(data["free_energy"]),
                     steps=[int(s) for s in data["steps"]], rejected=int(data["rejected"]))
    saved = 0 if isinstance(data["states"], np.ndarray) else len(run.states)
    return run, float(data["dt"]), float(data["wall_s"]) if "wall_s" in data else 0.0, saved


def run(case: ThermomigrationCase, folder: Path, resume: bool = False,
        on_step: OnStep | None = None) -> dict:
    """Integrate ``case`` snapshot by snapshot, checkpointing after each, and write results;
    returns the summary, whose ``wall_s`` is the run's seconds over every resumed part, its
    results' writing included. ``config.yaml`` is written with the first checkpoint, so a run
    folder with a configuration can always be resumed."""
    with Stopwatch(case.device) as clock:
        solver, c0 = build_solver(case)
        save_times = case.time.save_times()
        error_scale = float(np.max(np.abs(c0)))  # the tolerance is relative to the start's max|c|
        if resume:
            run, dt, before, saved = _load_checkpoint(folder)
            clock.seconds += before
        else:
            run, dt, saved = Trajectory(), None, 0
        while len(run.times) < len(save_times):
            k = max(len(run.times), 1)
            start = run.states[-1] if run.states else c0
            try:
                segment = solver.run(start, save_times[k], save_times=save_times[k:k + 1],
                                     dt0=dt, t0=save_times[k - 1], error_scale=error_scale)
            except BlowUpError as err:  # steps counted from the run's start, the checkpoint named
                stopped, done = _in_run(err, run), run.steps[-1] if run.steps else 0
                write_stopped_metrics(folder, case.name, stopped, snapshot_history(run),
                                      steps=done, checkpoint_step=done if run.steps else None,
                                      wall_s=clock.read())
                raise stopped from None
            _extend(run, segment, 1 if run.states else 0)
            # the last step of a segment is cut to land on the snapshot: go on with the one before
            dt = segment.dt[-2] if len(segment.dt) > 1 else segment.dt[-1]
            saved = _save_checkpoint(folder, run, dt, clock.read(), saved)
            if not (folder / CONFIG).is_file():
                write_text(folder / CONFIG, case.to_yaml())
            if on_step is not None:
                on_step({"step": k, "t": run.times[-1]})
        records = track(case, solver, run)
        temperatures = temperature_history(case, solver.grid, run.times)
        T_end = solver.temperature if temperatures is None else temperatures[-1]
        summary = summarise(case, solver, run, records, T_end)
        if case.units == "nondimensional":
            summary["units"] = {key: NONDIMENSIONAL_UNITS.get(key, unit)
                                for key, unit in SUMMARY_UNITS.items()}
        write_thermomigration_results(case, solver, run, records, summary, folder, temperatures,
                                      clock)
    return summary


def _in_run(err: BlowUpError, run: Trajectory) -> BlowUpError:
    """``err`` of a segment told in the run's terms: its step counted from the run's start,
    and the checkpoint kept (the last snapshot, if one was written) instead of a state the
    segment held in memory."""
    done = run.steps[-1] if run.steps else 0
    kept = (f"; the checkpoint at t={run.times[-1]:.6g} s (step {done}) is kept" if run.times
            else "")
    return BlowUpError(step=done + err.step, t=err.t, field=err.field, what=err.what,
                       advice=err.advice + kept)


def _extend(run: Trajectory, segment: Trajectory, skip: int) -> None:
    """Append ``segment``'s snapshots (after the first ``skip``), steps counted on."""
    offset = run.steps[-1] if run.steps else 0
    run.times += segment.times[skip:]
    run.states += segment.states[skip:]
    run.mass += segment.mass[skip:]
    run.free_energy += segment.free_energy[skip:]
    run.steps += [offset + s for s in segment.steps[skip:]]
    run.dt += segment.dt
    run.rejected += segment.rejected


def describe(case: ThermomigrationCase) -> str:
    shape = "x".join(str(n) for n in case.grid.shape)
    if case.units == "nondimensional":
        energy = case.free_energy
        return (f"Cahn-Hilliard, non-dimensional double well, {shape} cells, "
                f"M = {energy.mobility:g}, rho = {energy.curvature_scale:g}, "
                f"kappa = {case.kappa if case.kappa is not None else 'from interface_width'}, "
                f"t = {case.time.end:g}")
    T = case.temperature_spec
    return (f"Cahn-Hilliard thermomigration, {case.free_energy.kind}, {shape} cells, "
            f"grad T = {T.gradient:g} K/m, Q* = {case.heat_of_transport:g} J/mol, "
            f"t = {case.time.end:g} s")


def headline(summary: dict) -> str:
    """One line for the console."""
    parts = [f"mass drift {summary['mass_drift']:.1e}"]
    if "steady_profile_error" in summary:
        parts.append(f"steady profile error {summary['steady_profile_error']:.2e}")
    if "velocity_ratio" in summary:
        parts.append(f"velocity {summary['velocity']:.3e} m/s = "
                     f"{summary['velocity_ratio']:.3f} x estimate, radius change "
                     f"{100 * summary['radius_change']:.2f}%")
    if "smaller_volume_ratio" in summary:
        parts.append(f"initially smaller particle's volume x{summary['smaller_volume_ratio']:.2f}")
    if summary.get("centre_of_mass_shift") is not None:
        unit = summary["units"]["centre_of_mass_shift"]
        parts.append(f"centre of mass moved {summary['centre_of_mass_shift']:+.3e} {unit}")
    elif "centre_of_mass_shift" in summary:
        parts.append(_no_centre_of_mass(summary.get("particle_count")))
    return ", ".join(parts) + f", {summary['steps']} steps, {summary['wall_s']:.0f} s"


def _no_centre_of_mass(count: dict | None) -> str:
    """Why the centre of mass has no shift: which end of the run (by ``particle_count``'s
    ``initial`` and ``final``; "one end" when that is absent) holds no precipitate."""
    if count is None:
        return "no precipitate left to locate at one end"
    start, end = count["initial"] == 0, count["final"] == 0
    if start and end:
        return "no precipitate to locate at either end"
    return ("no precipitate to locate at the start" if start
            else "no precipitate left to locate at the end")


KIND = CaseKind(
    name="thermomigration",
    summary="Cahn-Hilliard thermomigration (phase field) in a temperature gradient, SI units",
    schema=ThermomigrationCase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.total_steps,
    checkpoint=CHECKPOINT,
)
