"""Cahn–Hilliard thermomigration, ``kind: thermomigration``: build the solver, integrate with
checkpoints, track the precipitates, and write the run folder.

Run folder::

    config.yaml           the resolved case
    checkpoint.npz        snapshots so far, their diagnostics and the last step size
    trajectory.h5         c(time, x, y, z) and T(x, y, z) as xarray/HDF5 (SI attrs)
    tracked.json          per snapshot: time, mass, free energy, particles (centroid, radius,
                          volume), the precipitate phase's centre of mass
    metrics.json          the summary: mass drift, energy monotonicity, migration velocity
                          against the sharp-interface estimate, steady-profile error
    snapshots.png         the microstructure at four times; profile.png for 1D cases
    microstructure.gif    the whole time series, animated (2D/3D: the mid-plane)
    tracked.png           particle positions and radii against time

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
    initial: {kind: precipitates, centres: [[1.28e-4, 1.28e-4]], radii: [1.6e-5]}
    time: {end: 2.0e4, saves: 41}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from .._version import __version__
from ..datasets.store import write_dataset
from ..solvers.free_energy import GAS_CONSTANT, DiluteSolution, DoubleWell, RegularSolution
from ..solvers.grid import BC, BoundaryConditions, Grid
from ..solvers.heat import HeatSolver
from ..solvers.precipitates import (
    matrix_composition,
    migration_velocity,
    precipitate_field,
    track_particles,
)
from ..solvers.thermomigration import (
    HeatConductionTemperature,
    ThermomigrationSolver,
    Trajectory,
    linear_temperature,
)
from .kind import CaseKind, OnStep
from .run_folder import CONFIG, Section, atomic_write, require_checkpoint, write_text
from .sections import CaseBase


class GridSpec(Section):
    shape: list[int] = Field(min_length=1, max_length=3, description="cells per axis")
    length: list[float] = Field(min_length=1, max_length=3, description="domain size per axis [m]")
    bc: list[Literal["periodic", "no_flux"]] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _same_axes(self) -> GridSpec:
        if not len(self.shape) == len(self.length) == len(self.bc):
            raise ValueError("grid.shape, grid.length and grid.bc need one entry per axis")
        if any(n < 3 for n in self.shape) or any(not length > 0 for length in self.length):
            raise ValueError("grid.shape needs >= 3 cells and grid.length > 0 m per axis")
        return self


class TemperatureSpec(Section):
    """``linear``: $T = T_{mean} + G(x - x_{mid})$, fixed. ``heat``: starts uniform at ``mean``
    and is evolved by the heat solver with Dirichlet ends $T_{mean} \\mp G L/2$ (diffusivity
    ``thermal_diffusivity``), no flux on the other axes."""

    kind: Literal["linear", "heat"] = "linear"
    mean: float = Field(gt=0, description="temperature at the domain centre [K]")
    gradient: float = Field(0.0, description="dT/dx along axis [K/m]")
    axis: int = Field(0, ge=0, le=2)
    thermal_diffusivity: float | None = Field(None, gt=0, description="[m^2/s], kind heat")

    @model_validator(mode="after")
    def _heat_needs_diffusivity(self) -> TemperatureSpec:
        if self.kind == "heat" and self.thermal_diffusivity is None:
            raise ValueError("temperature.kind 'heat' needs temperature.thermal_diffusivity")
        return self


class FreeEnergySpec(Section):
    kind: Literal["dilute", "double_well", "regular_solution"]
    diffusivity: float = Field(gt=0, description="D0 [m^2/s]")
    activation_energy: float = Field(0.0, ge=0, description="Q_d [J/mol]")
    barrier: float | None = Field(None, gt=0, description="double-well barrier [J/mol]")
    c_alpha: float = 0.0
    c_beta: float = 1.0
    slope_alpha: float = Field(0.0, description="dc_alpha/dT [1/K]")
    slope_beta: float = Field(0.0, description="dc_beta/dT [1/K]")
    T0: float = Field(1000.0, gt=0, description="temperature of c_alpha, c_beta [K]")
    interaction: float | None = Field(None, gt=0, description="regular-solution Omega [J/mol]")

    @model_validator(mode="after")
    def _parameters_present(self) -> FreeEnergySpec:
        needed = {"double_well": "barrier", "regular_solution": "interaction"}.get(self.kind)
        if needed and getattr(self, needed) is None:
            raise ValueError(f"free_energy.kind {self.kind!r} needs free_energy.{needed}")
        return self


class InitialSpec(Section):
    """``uniform``: c = value. ``precipitates``: discs/spheres at ``centres`` [m] with
    ``radii`` [m] in the matrix with no flux in equilibrium with the largest.
    ``random_precipitates``: ``count`` particles of radius in ``radius_range`` [m], placed at
    random (``seed``) at least ``spacing`` [m] apart (surface to surface)."""

    kind: Literal["uniform", "precipitates", "random_precipitates"]
    value: float | None = None
    centres: list[list[float]] = Field(default_factory=list)
    radii: list[float] = Field(default_factory=list)
    count: int = Field(0, ge=0)
    radius_range: tuple[float, float] | None = None
    spacing: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> InitialSpec:
        if self.kind == "uniform" and self.value is None:
            raise ValueError("initial.kind 'uniform' needs initial.value")
        if self.kind == "precipitates" and (not self.radii or len(self.radii) != len(self.centres)):
            raise ValueError("initial.kind 'precipitates' needs as many initial.centres as radii")
        if self.kind == "random_precipitates" and (self.count < 1 or self.radius_range is None):
            raise ValueError("initial.kind 'random_precipitates' needs initial.count >= 1 and "
                             "initial.radius_range")
        return self


class TimeSpec(Section):
    end: float = Field(gt=0, description="model time [s]")
    saves: int = Field(21, ge=2, description="snapshots, evenly spaced, t = 0 included")


class SolverSpec(Section):
    tolerance: float = Field(1e-3, gt=0, description="local error per step, relative")
    dt_max: float | None = Field(None, gt=0)


class ThermomigrationCase(CaseBase):
    """A whole thermomigration case file."""

    kind: Literal["thermomigration"]
    grid: GridSpec
    temperature: TemperatureSpec
    free_energy: FreeEnergySpec
    interface_width: float | None = Field(None, gt=0, description="double well: delta [m]")
    kappa: float | None = Field(None, ge=0, description="gradient energy [J m^2/mol]")
    heat_of_transport: float = Field(0.0, description="Q* [J/mol]; < 0: solute to the hot side")
    initial: InitialSpec
    time: TimeSpec
    solver: SolverSpec = Field(default_factory=SolverSpec)
    dtype: Literal["float32", "float64"] = "float64"

    @model_validator(mode="after")
    def _consistent(self) -> ThermomigrationCase:
        ndim = len(self.grid.shape)
        if self.temperature.axis >= ndim:
            raise ValueError(f"temperature.axis {self.temperature.axis} is not an axis of the "
                             f"{ndim}D grid")
        two_phase = self.free_energy.kind != "dilute"
        if self.initial.kind != "uniform" and self.free_energy.kind != "double_well":
            raise ValueError(f"initial.kind {self.initial.kind!r} needs free_energy.kind "
                             "'double_well'")
        if two_phase and self.interface_width is None and self.kappa is None:
            raise ValueError("a two-phase free energy needs interface_width or kappa")
        lengths = self.grid.length
        for centre, radius in zip(self.initial.centres, self.initial.radii):
            if len(centre) != ndim:
                raise ValueError(f"initial.centres entry {centre} needs {ndim} coordinates")
            if not all(0 <= x <= length for x, length in zip(centre, lengths)):
                box = " x ".join(f"[0, {length:g}]" for length in lengths)
                raise ValueError(f"initial.centres entry {centre} lies outside the domain {box} m")
            if not 0 < radius < min(lengths) / 2:
                raise ValueError(f"initial.radii entry {radius:g} m must be > 0 and below half "
                                 f"the smallest domain length ({min(lengths) / 2:g} m)")
        cell = max(length / n for length, n in zip(lengths, self.grid.shape))
        if two_phase and self.interface_width is not None and self.interface_width < cell:
            raise ValueError(f"interface_width={self.interface_width:g} m is narrower than a "
                             f"cell ({cell:g} m): refine grid.shape or widen the interface")
        return self

    @property
    def total_steps(self) -> int:
        """Snapshots after t = 0 (the progress bar's units)."""
        return self.time.saves - 1


CHECKPOINT = "checkpoint.npz"


def build_grid(case: ThermomigrationCase) -> tuple[Grid, BoundaryConditions]:
    spec = case.grid
    grid = Grid(tuple(spec.shape), (0.0,) * len(spec.shape), tuple(spec.length))
    sides = tuple((BC("periodic"),) * 2 if kind == "periodic" else (BC("neumann"),) * 2
                  for kind in spec.bc)
    return grid, BoundaryConditions(sides)


def build_free_energy(case: ThermomigrationCase) -> DiluteSolution | DoubleWell | RegularSolution:
    spec = case.free_energy
    common = {"diffusivity": spec.diffusivity, "activation_energy": spec.activation_energy}
    if spec.kind == "dilute":
        return DiluteSolution(**common)
    if spec.kind == "regular_solution":
        return RegularSolution(interaction=spec.interaction, **common)
    return DoubleWell(barrier=spec.barrier, c_alpha=spec.c_alpha, c_beta=spec.c_beta,
                      slope_alpha=spec.slope_alpha, slope_beta=spec.slope_beta, T0=spec.T0,
                      **common)


def build_temperature(case: ThermomigrationCase, grid: Grid):
    """The fixed linear field, or a :class:`HeatConductionTemperature` (kind ``heat``)."""
    spec = case.temperature
    half = grid.upper[spec.axis] / 2
    cold = spec.mean - spec.gradient * half
    if spec.kind == "linear":
        return linear_temperature(grid, cold, spec.gradient, spec.axis)
    sides = [(BC("neumann"), BC("neumann")) for _ in range(grid.ndim)]
    sides[spec.axis] = (BC("dirichlet", cold), BC("dirichlet", spec.mean + spec.gradient * half))
    dt = 0.05 * min(grid.dx) ** 2 / spec.thermal_diffusivity
    heat = HeatSolver(grid, BoundaryConditions(tuple(sides)), nu=spec.thermal_diffusivity, dt=dt,
                      scheme="imex", theta=1.0, device=case.device, dtype=case.dtype)
    return HeatConductionTemperature(heat, np.full(grid.shape, spec.mean))


def _kappa(case: ThermomigrationCase, model) -> float:
    if case.kappa is not None:
        return case.kappa
    if case.interface_width is None:
        return 0.0
    return model.gradient_coefficient(case.interface_width)


def _random_particles(case: ThermomigrationCase, grid: Grid) -> tuple[list, list]:
    spec = case.initial
    rng = np.random.default_rng(spec.seed)
    centres, radii = [], []
    for _ in range(10000 * spec.count):
        if len(radii) == spec.count:
            break
        radius = rng.uniform(*spec.radius_range)
        centre = [rng.uniform(a + radius + spec.spacing, b - radius - spec.spacing)
                  for a, b in zip(grid.lower, grid.upper)]
        if all(np.linalg.norm(np.subtract(centre, c)) >= radius + r + spec.spacing
               for c, r in zip(centres, radii)):
            centres.append(centre)
            radii.append(radius)
    if len(radii) < spec.count:
        raise ValueError(f"initial: could not place {spec.count} particles of radius "
                         f"{spec.radius_range} at spacing {spec.spacing} m in the domain")
    return centres, radii


def initial_state(case: ThermomigrationCase, grid: Grid, model, T: np.ndarray) -> np.ndarray:
    """$c_0$: uniform, or precipitates in a zero-flux matrix in equilibrium with the largest."""
    spec = case.initial
    if spec.kind == "uniform":
        return np.full(grid.shape, float(spec.value))
    centres, radii = ((spec.centres, spec.radii) if spec.kind == "precipitates"
                      else _random_particles(case, grid))
    kappa = _kappa(case, model)
    matrix, precipitate = matrix_composition(model, T, case.heat_of_transport, kappa,
                                             max(radii), grid.ndim)
    width = model.interface_width(kappa)
    return precipitate_field(grid, matrix, precipitate, [tuple(c) for c in centres], radii, width)


def build_solver(case: ThermomigrationCase) -> tuple[ThermomigrationSolver, np.ndarray]:
    grid, bc = build_grid(case)
    model = build_free_energy(case)
    temperature = build_temperature(case, grid)
    T0 = temperature(0.0) if callable(temperature) else temperature
    solver = ThermomigrationSolver(
        grid, model, temperature, kappa=_kappa(case, model),
        heat_of_transport=case.heat_of_transport, bc=bc, T_ref=case.temperature.mean,
        tolerance=case.solver.tolerance, dt_max=case.solver.dt_max, device=case.device,
        dtype=case.dtype,
    )
    return solver, initial_state(case, grid, model, T0)


# ------------------------------------------------------------------------------ analysis


def track(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory) -> list:
    """Per snapshot: time, mass, free energy and, for two-phase cases, the particles."""
    records = []
    model = solver.free_energy
    x = solver.grid.mesh()[case.temperature.axis]
    for t, c, mass, energy in zip(run.times, run.states, run.mass, run.free_energy):
        record = {"t": t, "mass": mass, "free_energy": energy}
        if isinstance(model, DoubleWell):
            a, b = model.c_alpha, model.c_beta
            phi = np.clip((c - a) / (b - a), 0.0, 1.0)
            record["phase_centre_of_mass"] = float(np.sum(phi * x) / max(np.sum(phi), 1e-300))
            record["particles"] = [
                {"centroid": list(p.centroid), "radius": p.radius, "volume": p.volume}
                for p in track_particles(c, solver.grid, solver.bc, a, b)
            ]
        records.append(record)
    return records


def steady_profile(case: ThermomigrationCase, solver: ThermomigrationSolver,
                   run: Trajectory) -> np.ndarray | None:
    """The dilute model's zero-flux state $c \\propto \\exp(Q^*/RT)$ with the run's mean
    composition, for a fixed temperature; None otherwise."""
    if not isinstance(solver.free_energy, DiluteSolution) or case.temperature.kind != "linear":
        return None
    exact = np.exp(case.heat_of_transport / (GAS_CONSTANT * solver.temperature))
    return exact * np.mean(run.states[0]) / np.mean(exact)


SUMMARY_UNITS = {
    "mass_drift": "relative", "free_energy_max_increase": "J m^d/mol (d: grid dimension)",
    "steady_profile_error": "relative to max c", "centre_of_mass_shift": "m",
    "smaller_volume_ratio": "final / initial volume", "velocity": "m/s",
    "velocity_estimate": "m/s (sharp-interface)", "velocity_ratio": "measured / estimate",
    "radius_change": "relative, largest", "displacement": "m", "steps": "accepted time steps",
    "rejected_steps": "time steps", "wall_s": "s",
}
"""Units of the entries of a thermomigration run's ``metrics.json``."""


def summarise(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory,
              records: list) -> dict:
    """Mass drift, energy monotonicity and the case's own check (profile or migration)."""
    mass = np.array(run.mass)
    energy = np.array(run.free_energy)
    summary = {
        "units": SUMMARY_UNITS,
        "mass_drift": float(np.max(np.abs(mass - mass[0])) / abs(mass[0])),
        "free_energy_max_increase": float(max(0.0, np.max(np.diff(energy)))),
        "steps": int(run.steps[-1]),
        "rejected_steps": int(run.rejected),
    }
    model = solver.free_energy
    exact = steady_profile(case, solver, run)
    if exact is not None:
        summary["steady_profile_error"] = float(np.max(np.abs(run.states[-1] - exact))
                                                / np.max(exact))
    if isinstance(model, DoubleWell):
        counts = [len(r["particles"]) for r in records]
        summary["particle_count"] = {"initial": counts[0], "final": counts[-1]}
        shift = records[-1]["phase_centre_of_mass"] - records[0]["phase_centre_of_mass"]
        summary["centre_of_mass_shift"] = shift
        volumes = [sorted(p["volume"] for p in r["particles"]) for r in records]
        if counts[0] == 2 and counts[-1] >= 1:
            small = volumes[-1][0] if counts[-1] == 2 else 0.0
            summary["smaller_volume_ratio"] = small / volumes[0][0]
        if counts[0] == 1 and all(c == 1 for c in counts) and solver.grid.ndim in (2, 3):
            summary.update(_migration(case, solver, run, records))
    return summary


def _migration(case, solver, run, records) -> dict:
    """Velocity of a single particle (fit over the second half) against the estimate."""
    axis = case.temperature.axis
    times = np.array(run.times)
    x = np.array([r["particles"][0]["centroid"][axis] for r in records])
    radius = np.array([r["particles"][0]["radius"] for r in records])
    later = slice(len(times) // 2, None)
    velocity = float(np.polyfit(times[later], x[later], 1)[0])
    centre_T = float(case.temperature.mean + case.temperature.gradient
                     * (x[0] - solver.grid.upper[axis] / 2))
    estimate = migration_velocity(solver.free_energy, case.temperature.gradient, centre_T,
                                  case.heat_of_transport, solver.grid.ndim)
    return {
        "velocity": velocity,
        "velocity_estimate": estimate,
        "velocity_ratio": velocity / estimate if estimate else float("nan"),
        "radius_change": float(np.max(np.abs(radius / radius[0] - 1))),
        "displacement": float(x[-1] - x[0]),
    }


# -------------------------------------------------------------------------------- running


def _save_checkpoint(folder: Path, run: Trajectory, dt: float) -> None:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, times=run.times, states=np.stack(run.states), mass=run.mass,
                     free_energy=run.free_energy, steps=run.steps, rejected=run.rejected,
                     dt=dt)

    atomic_write(folder / CHECKPOINT, write)


def _load_checkpoint(folder: Path) -> tuple[Trajectory, float]:
    data = np.load(require_checkpoint(folder, CHECKPOINT))
    run = Trajectory(times=list(data["times"]), states=list(data["states"]),
                     mass=list(data["mass"]), free_energy=list(data["free_energy"]),
                     steps=[int(s) for s in data["steps"]], rejected=int(data["rejected"]))
    return run, float(data["dt"])


def run(case: ThermomigrationCase, folder: Path, resume: bool = False,
        on_step: OnStep | None = None) -> dict:
    """Integrate ``case`` snapshot by snapshot, checkpointing after each, and write results;
    returns the summary. ``config.yaml`` is written with the first checkpoint, so a run folder
    with a configuration can always be resumed."""
    started = time.perf_counter()
    solver, c0 = build_solver(case)
    save_times = np.linspace(0.0, case.time.end, case.time.saves)
    if resume:
        run, dt = _load_checkpoint(folder)
    else:
        run, dt = Trajectory(), None
    while len(run.times) < len(save_times):
        k = max(len(run.times), 1)
        start = run.states[-1] if run.states else c0
        segment = solver.run(start, save_times[k], save_times=save_times[k:k + 1], dt0=dt,
                             t0=save_times[k - 1])
        _extend(run, segment, 1 if run.states else 0)
        # the last step of a segment is cut to land on the snapshot: go on with the one before
        dt = segment.dt[-2] if len(segment.dt) > 1 else segment.dt[-1]
        _save_checkpoint(folder, run, dt)
        if not (folder / CONFIG).is_file():
            write_text(folder / CONFIG, case.to_yaml())
        if on_step is not None:
            on_step({"step": k, "t": run.times[-1]})
    records = track(case, solver, run)
    summary = summarise(case, solver, run, records)
    summary["wall_s"] = time.perf_counter() - started
    write_thermomigration_results(case, solver, run, records, summary, folder)
    return summary


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


def write_thermomigration_results(case, solver, run, records, summary, folder: Path) -> None:
    grid = solver.grid
    dims = ("x", "y", "z")[: grid.ndim]
    coords = {d: grid.coords(i) for i, d in enumerate(dims)}
    ds = xr.Dataset(
        {
            "c": (("time", *dims), np.stack(run.states)),
            "T": (dims, solver.temperature),
        },
        coords={"time": np.array(run.times), **coords},
        attrs={
            "case": case.name,
            "pde": "cahn_hilliard_thermomigration",
            "free_energy": case.free_energy.kind,
            "heat_of_transport_J_per_mol": case.heat_of_transport,
            "kappa_J_m2_per_mol": solver.kappa,
            "units": "x, y, z in m; time in s; T in K; c mole fraction",
            "physml_version": __version__,
        },
    )
    write_dataset(ds, folder / "trajectory.h5")
    write_text(folder / "tracked.json", json.dumps(records, indent=1))
    write_text(folder / "metrics.json", json.dumps(summary, indent=1))
    if case.output.figures:
        from .figures import animate_microstructure, plot_profile, plot_snapshots, plot_tracked

        if grid.ndim == 1:
            plot_profile(coords["x"], run.times, run.states, steady_profile(case, solver, run),
                         folder / "profile.png")
        else:
            two_phase = isinstance(solver.free_energy, DoubleWell)
            gradient = case.temperature.axis, case.temperature.gradient
            centroids = ([[p["centroid"] for p in r["particles"]] for r in records]
                         if two_phase else None)
            plot_snapshots(grid, run.times, run.states, folder / "snapshots.png", *gradient,
                           centroids)
            animate_microstructure(grid, run.times, run.states, folder / "microstructure.gif",
                                   *gradient)
            if two_phase:
                plot_tracked(records, case.temperature.axis, folder / "tracked.png",
                             summary.get("velocity_estimate"))


def describe(case: ThermomigrationCase) -> str:
    shape = "x".join(str(n) for n in case.grid.shape)
    T = case.temperature
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
        parts.append(f"smaller particle volume x{summary['smaller_volume_ratio']:.2f}")
    if "centre_of_mass_shift" in summary:
        parts.append(f"centre of mass moved {summary['centre_of_mass_shift']:+.3e} m")
    return ", ".join(parts) + f", {summary['steps']} steps, {summary['wall_s']:.0f} s"


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
