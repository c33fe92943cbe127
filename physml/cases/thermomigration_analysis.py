"""What a thermomigration run measured: the precipitates tracked snapshot by snapshot, the
temperature history, the dilute model's steady profile, and the summary (mass drift, energy
monotonicity, migration against the sharp-interface estimate) with its units."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..solvers.free_energy import GAS_CONSTANT, DiluteSolution, DoubleWell
from ..solvers.grid import Grid
from ..solvers.precipitates import Particle, migration_velocity, particle_ids, track_particles
from ..solvers.thermomigration import ThermomigrationSolver
from ..solvers.thermomigration_trajectory import Trajectory
from .thermomigration_build import build_temperature
from .thermomigration_spec import PARTICLE_INITIALS, ThermomigrationCase


def initial_kind(case: ThermomigrationCase) -> str:
    """The ``initial.kind`` the case's trajectory started from: its own, or for a ``file``
    start the one the file records (the attribute ``initial_kind`` of a run's
    ``trajectory.h5``, so a restart of a restart too; ``file`` where it records none)."""
    if case.initial.kind != "file":
        return case.initial.kind
    with xr.open_dataset(case.initial.path, engine="h5netcdf", phony_dims="sort") as ds:
        return str(ds.attrs.get("initial_kind", "file"))


def starts_from_particles(case: ThermomigrationCase, solver: ThermomigrationSolver) -> bool:
    """Whether the run's particles are tracked in its figures and summary: a double well
    started from particles (:data:`~.thermomigration_spec.PARTICLE_INITIALS`)."""
    return (isinstance(solver.free_energy, DoubleWell)
            and initial_kind(case) in PARTICLE_INITIALS)


def track(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory) -> list:
    """Per snapshot: time, mass, free energy and, for two-phase cases, the particles with ids
    stable across snapshots (:func:`~physml.solvers.precipitates.particle_ids`) and their
    centre of mass (:func:`_precipitate_centre_of_mass`); the records of ``tracked.json``
    (:mod:`~.thermomigration`)."""
    model = solver.free_energy
    if not isinstance(model, DoubleWell):
        return [{"t": t, "mass": mass, "free_energy": energy}
                for t, mass, energy in zip(run.times, run.mass, run.free_energy)]
    axis = case.temperature_spec.axis
    # along a periodic axis a mean position depends on where the seam is: none is recorded
    seamless = case.grid.bc[axis] != "periodic"
    found = [track_particles(c, solver.grid, solver.bc, model.c_alpha, model.c_beta)
             for c in run.states]
    ids = particle_ids(found, solver.grid, solver.bc)
    records = []
    for t, mass, energy, particles, numbers in zip(run.times, run.mass, run.free_energy, found,
                                                   ids):
        record = {"t": t, "mass": mass, "free_energy": energy}
        if seamless:
            record["phase_centre_of_mass"] = _precipitate_centre_of_mass(particles, axis)
        record["particles"] = [
            {"id": number, "centroid": list(p.centroid), "radius": p.radius, "volume": p.volume}
            for number, p in zip(numbers, particles)
        ]
        records.append(record)
    return records


def _precipitate_centre_of_mass(particles: list[Particle], axis: int) -> float | None:
    """$\\bar x = \\sum_p V_p x_p / \\sum_p V_p$ [m] along a non-periodic ``axis``: the
    precipitates' centre of mass, $\\int\\phi\\,x\\,dV / \\int\\phi\\,dV$ over the tracked
    particles' regions only (:func:`~physml.solvers.precipitates.track_particles`:
    $\\phi > 1/2$ grown by two cells), so the matrix beyond them, whose composition follows the
    temperature, carries no weight. None when there is no particle."""
    volume = sum(p.volume for p in particles)
    if volume == 0:
        return None
    return float(sum(p.volume * p.centroid[axis] for p in particles) / volume)


def temperature_history(case: ThermomigrationCase, grid: Grid, times: list[float]
                        ) -> np.ndarray | None:
    """$T$ [K] at ``times`` [s], shape ``(len(times), *grid.shape)``, for ``temperature.kind``
    heat (a fresh heat field: its steps do not depend on the run's); None for a fixed field."""
    if case.temperature_spec.kind != "heat":
        return None
    field = build_temperature(case, grid)
    return np.stack([field(t) for t in times])


def steady_profile(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory,
                   T_end: np.ndarray) -> np.ndarray | None:
    """The dilute model's zero-flux state $c \\propto \\exp(Q^*/RT)$ in the final temperature
    ``T_end`` [K] with the run's mean composition (for ``heat``: the temperature's own steady
    state by then); None for the other models."""
    if not isinstance(solver.free_energy, DiluteSolution):
        return None
    exact = np.exp(case.heat_of_transport / (GAS_CONSTANT * T_end))
    return exact * np.mean(run.states[0]) / np.mean(exact)


SUMMARY_UNITS = {
    "mass_drift": "relative",
    "free_energy_max_increase": "J m^d/mol (d: grid dimension); isothermal runs only",
    "steady_profile_error": "relative to max c", "centre_of_mass_shift": "m",
    "smaller_volume_ratio": "final / initial volume (the initially smaller particle, by id)",
    "velocity": "m/s",
    "velocity_estimate": "m/s (sharp-interface)", "velocity_ratio": "measured / estimate",
    "radius_change": "relative, largest", "displacement": "m", "steps": "accepted time steps",
    "rejected_steps": "time steps", "wall_s": "s",
}
"""Units of the entries of a thermomigration run's ``metrics.json``. The free energy's largest
rise between snapshots checks the energy's monotonicity, so it is reported only without a
temperature gradient: under one, $\\int f(c, T) + \\tfrac\\kappa2|\\nabla c|^2$ is no
Lyapunov functional of the flux's thermal part, and a correct run may raise it."""

NONDIMENSIONAL_UNITS = {
    "free_energy_max_increase": "model energy x length^d", "centre_of_mass_shift": "model length",
    "velocity": "model length / model time", "velocity_estimate": "not applicable",
    "displacement": "model length",
}
"""The entries of :data:`SUMMARY_UNITS` whose units differ for ``units: nondimensional``."""


def summarise(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory,
              records: list, T_end: np.ndarray) -> dict:
    """Mass drift, energy monotonicity (isothermal runs only: :data:`SUMMARY_UNITS`) and the
    case's own check (profile or migration); ``T_end`` the temperature [K] at the last
    snapshot; the particles' volume ratio and migration only for a start from particles
    (:func:`starts_from_particles`). ``threshold`` and ``passed`` are null: a thermomigration
    case sets no target."""
    mass = np.array(run.mass)
    energy = np.array(run.free_energy)
    summary = {
        "units": SUMMARY_UNITS,
        "mass_drift": float(np.max(np.abs(mass - mass[0])) / abs(mass[0])),
        "threshold": None, "passed": None,
    }
    if case.temperature_spec.gradient == 0:
        summary["free_energy_max_increase"] = float(max(0.0, np.max(np.diff(energy))))
    summary.update(steps=int(run.steps[-1]), rejected_steps=int(run.rejected))
    model = solver.free_energy
    exact = steady_profile(case, solver, run, T_end)
    if exact is not None:
        summary["steady_profile_error"] = float(np.max(np.abs(run.states[-1] - exact))
                                                / np.max(exact))
    if isinstance(model, DoubleWell):
        counts = [len(r["particles"]) for r in records]
        summary["particle_count"] = {"initial": counts[0], "final": counts[-1]}
        if "phase_centre_of_mass" in records[0]:  # None (null) where no precipitate is left
            first, last = (records[i]["phase_centre_of_mass"] for i in (0, -1))
            summary["centre_of_mass_shift"] = (None if first is None or last is None
                                               else last - first)
        particles = starts_from_particles(case, solver)
        if particles and counts[0] == 2 and counts[-1] >= 1:
            summary["smaller_volume_ratio"] = _smaller_volume_ratio(records)
        if (particles and counts[0] == 1 and all(c == 1 for c in counts)
                and solver.grid.ndim in (2, 3) and case.temperature_spec.gradient != 0):
            summary.update(_migration(case, solver, run, records))
    return summary


def _smaller_volume_ratio(records: list) -> float:
    """$V_s(t_{end}) / V_s(0)$ of the particle $s$ that is the smaller at $t = 0$, followed by
    its id, whatever the sizes' order later; 0 once its id is gone (dissolved, or merged into
    a particle that kept the other's id)."""
    first = min(records[0]["particles"], key=lambda p: p["volume"])
    final = [p["volume"] for p in records[-1]["particles"] if p["id"] == first["id"]]
    return (final[0] if final else 0.0) / first["volume"]


def _migration(case, solver, run, records) -> dict:
    """Velocity of a single particle (a line fitted over the second half of the snapshots, or
    over all of them when that half holds one) against the estimate."""
    axis = case.temperature_spec.axis
    times = np.array(run.times)
    x = np.array([r["particles"][0]["centroid"][axis] for r in records])
    radius = np.array([r["particles"][0]["radius"] for r in records])
    half = len(times) // 2
    later = slice(half if len(times) - half >= 2 else 0, None)
    velocity = float(np.polyfit(times[later], x[later], 1)[0])
    centre_T = float(case.temperature_spec.mean + case.temperature_spec.gradient
                     * (x[0] - solver.grid.upper[axis] / 2))
    estimate = migration_velocity(solver.free_energy, case.temperature_spec.gradient, centre_T,
                                  case.heat_of_transport, solver.grid.ndim)
    return {
        "velocity": velocity,
        "velocity_estimate": estimate,
        "velocity_ratio": velocity / estimate if estimate else float("nan"),
        "radius_change": float(np.max(np.abs(radius / radius[0] - 1))),
        "displacement": float(x[-1] - x[0]),
    }
