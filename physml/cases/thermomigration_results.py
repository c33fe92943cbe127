"""Writing a finished thermomigration run's results into its run folder (the files of
:mod:`~.thermomigration`): ``trajectory.h5``, ``tracked.json``, ``metrics.json`` and the
figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .._version import __version__
from ..datasets.atomic_files import json_text
from ..datasets.store import with_cf_metadata, write_dataset
from ..devices import Stopwatch
from .run_folder import write_metrics, write_text
from .thermomigration_analysis import initial_kind, starts_from_particles, steady_profile
from .thermomigration_spec import ThermomigrationCase


def _cf_metadata(case: ThermomigrationCase, dims: tuple[str, ...]) -> dict:
    """CF ``long_name``/``units`` of ``trajectory.h5``: SI, or the case's own units."""
    si = case.units != "nondimensional"
    metadata = {"c": ("solute mole fraction c" if si else "composition c", "1"),
                "T": ("temperature", "K"),
                "time": ("model time", "s" if si else "1")}
    metadata.update({d: (f"{d} coordinate of the cell centre", "m" if si else "1") for d in dims})
    return metadata


def snapshot_history(run) -> list[dict]:
    """``metrics.json``'s history of ``run`` (a
    :class:`~physml.solvers.thermomigration_trajectory.Trajectory`): per snapshot, the
    accepted steps so far, the time, the mass and the free energy."""
    return [{"step": step, "t": t, "mass": mass, "free_energy": energy}
            for step, t, mass, energy in zip(run.steps, run.times, run.mass, run.free_energy)]


def write_thermomigration_results(case, solver, run, records, summary, folder: Path,
                                  temperatures: np.ndarray | None, clock: Stopwatch) -> None:
    """The run folder's results (see :mod:`~.thermomigration`); ``temperatures`` is
    :func:`~.thermomigration_analysis.temperature_history` (None: the fixed
    ``solver.temperature``). ``metrics.json`` comes last, once ``summary["wall_s"]`` is set to
    ``clock``'s reading (the run's seconds, the other files' writing included)."""
    grid = solver.grid
    dims = ("x", "y", "z")[: grid.ndim]
    coords = {d: grid.coords(i) for i, d in enumerate(dims)}
    fields = {"c": (("time", *dims), np.stack(run.states))}
    attrs = {"case": case.name, "pde": "cahn_hilliard_thermomigration",
             "free_energy": case.free_energy.kind, "initial_kind": initial_kind(case),
             "physml_version": __version__}
    if case.units == "nondimensional":
        attrs.update(units="non-dimensional (the case's own units)",
                     mobility=case.free_energy.mobility, rho=case.free_energy.curvature_scale,
                     kappa=solver.kappa)
    else:
        fields["T"] = (dims, solver.temperature) if temperatures is None else (
            ("time", *dims), temperatures)
        attrs.update(heat_of_transport_J_per_mol=case.heat_of_transport,
                     kappa_J_m2_per_mol=solver.kappa,
                     units="x, y, z in m; time in s; T in K; c mole fraction")
    ds = xr.Dataset(fields, coords={"time": np.array(run.times), **coords}, attrs=attrs)
    write_dataset(with_cf_metadata(ds, _cf_metadata(case, dims)), folder / "trajectory.h5")
    write_text(folder / "tracked.json", json_text(records, indent=1))
    if case.output.figures:
        from .microstructure_figures import (
            MODEL_UNITS,
            SI_UNITS,
            animate_microstructure,
            plot_free_energy,
            plot_profile,
            plot_snapshots,
            plot_tracked,
        )

        units = MODEL_UNITS if case.units == "nondimensional" else SI_UNITS
        volume = "" if grid.ndim == 1 else f"^{grid.ndim}"
        energy_unit = (f"model energy x length{volume}" if case.units == "nondimensional"
                       else f"J m{volume}/mol")
        plot_free_energy(run.times, run.free_energy, folder / "free_energy.png", units,
                         energy_unit, f"{case.name}: total free energy")

        if grid.ndim == 1:
            T_end = solver.temperature if temperatures is None else temperatures[-1]
            plot_profile(coords["x"], run.times, run.states,
                         steady_profile(case, solver, run, T_end), folder / "profile.png", units)
        else:
            particles = starts_from_particles(case, solver)
            gradient = case.temperature_spec.axis, case.temperature_spec.gradient
            centroids = ([[p["centroid"] for p in r["particles"]] for r in records]
                         if particles else None)
            plot_snapshots(grid, run.times, run.states, folder / "snapshots.png", *gradient,
                           centroids, units, case=case.name)
            animate_microstructure(grid, run.times, run.states, folder / "microstructure.gif",
                                   *gradient, units)
            if particles:
                plot_tracked(records, case.temperature_spec.axis, folder / "tracked.png",
                             summary.get("velocity_estimate"), units,
                             case.temperature_spec.gradient)
    summary["wall_s"] = clock.read()
    write_metrics(folder, case.name, summary, snapshot_history(run))
