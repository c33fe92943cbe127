"""Cahn–Hilliard thermomigration, ``kind: thermomigration``: build the solver, integrate with
checkpoints, track the precipitates, and write the run folder.

Run folder::

    config.yaml           the resolved case
    checkpoint.npz        snapshots so far, their diagnostics and the last step size
    trajectory.h5         c(time, x, y, z) and T as xarray/HDF5: T(x, y, z) for a linear
                          temperature, T(time, x, y, z) for ``heat``, none for
                          ``units: nondimensional``
    tracked.json          a list, one record per snapshot (below)
    metrics.json          the summary: mass drift, energy monotonicity, migration velocity
                          against the sharp-interface estimate, steady-profile error, the
                          initially smaller of two particles' volume ratio, the
                          precipitates' centre-of-mass shift
    free_energy.png       the total free energy against time, on log axes as PFHub compares
                          its benchmarks (:func:`~.figures.plot_free_energy`; with figures
                          on, as below)
    profile.png           1D cases: c(x) at the snapshots
    snapshots.png         2D/3D: the microstructure at four times (the particles' starting
                          and current centroids marked as tracked.png is drawn, below)
    microstructure.gif    2D/3D: the whole time series, animated (3D: the mid-plane)
    tracked.png           2D/3D double well started from anything but a spinodal start
                          (``initial.kind`` uniform or expression,
                          :data:`SPINODAL_INITIALS`): particle positions and radii against
                          time; none for a spinodal decomposition, whose bicontinuous
                          network is no set of particles

A ``tracked.json`` record (:func:`track`)::

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
    initial: {kind: precipitates, centres: [[1.28e-4, 1.28e-4]], radii: [1.6e-5]}
    time: {end: 2.0e4, saves: 41}

``units: nondimensional`` states the isothermal double-well model in the case's own units
instead (PFHub benchmark 1: ``cases/thermomigration_spinodal_pfhub1.yaml``)::

    units: nondimensional
    free_energy: {kind: double_well, rho: 5.0, c_alpha: 0.3, c_beta: 0.7, mobility: 5.0}
    kappa: 2.0
    initial: {kind: expression, expression: "0.5 + 0.01*cos(0.105*x)*cos(0.11*y)"}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field, ValidationInfo, model_validator

from .._version import __version__
from ..datasets.spec import AbsolutePath
from ..datasets.store import with_cf_metadata, write_dataset
from ..solvers.errors import BlowUpError
from ..solvers.free_energy import GAS_CONSTANT, DiluteSolution, DoubleWell, RegularSolution
from ..solvers.grid import BC, BoundaryConditions, Grid
from ..solvers.heat import HeatSolver
from ..solvers.precipitates import (
    Particle,
    matrix_composition,
    migration_velocity,
    particle_ids,
    precipitate_field,
    track_particles,
)
from ..solvers.thermomigration import (
    DEFAULT_TOLERANCE,
    HeatConductionTemperature,
    ThermomigrationSolver,
    Trajectory,
    linear_temperature,
)
from .initial_fields import check_expression, check_field, evaluate_expression, read_field
from .kind import CaseKind, OnStep
from .run_folder import CONFIG, Section, atomic_write, read_checkpoint, write_text
from .sections import CaseBase


class GridSpec(Section):
    shape: list[int] = Field(min_length=1, max_length=3, description="cells per axis")
    length: list[float] = Field(min_length=1, max_length=3, description="domain size per axis [m]")
    bc: list[Literal["periodic", "no_flux"]] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _same_axes(self) -> GridSpec:
        if not len(self.shape) == len(self.length) == len(self.bc):
            raise ValueError("grid.shape, grid.length and grid.bc need one entry per axis")
        if any(n < 3 for n in self.shape):
            raise ValueError(f"grid.shape={list(self.shape)}: every axis needs >= 3 cells")
        if any(not length > 0 for length in self.length):
            raise ValueError(f"grid.length={list(self.length)}: every axis needs a length > 0 m")
        return self


class TemperatureSpec(Section):
    """``linear``: $T = T_{mean} + G(x - x_{mid})$, fixed. ``heat``: starts uniform at ``mean``
    and is evolved by the heat solver with Dirichlet ends $T_{mean} \\mp G L/2$ (diffusivity
    ``thermal_diffusivity``), no flux on the other axes, by backward Euler on its own steps
    $h_n = \\max(\\Delta x^2/\\alpha,\\ r\\,t_n)$, $r$ = ``step_growth``: steps that follow the
    temperature's own decay, not the Cahn–Hilliard step nor an explicit limit (see
    :class:`~physml.solvers.thermomigration.HeatConductionTemperature`); error below
    $0.04\\,r$ of the temperature span after the first 5 % of $L^2/(\\pi^2\\alpha)$, exact at
    the steady state."""

    kind: Literal["linear", "heat"] = "linear"
    mean: float = Field(gt=0, description="temperature at the domain centre [K]")
    gradient: float = Field(0.0, description="dT/dx along axis [K/m]")
    axis: int = Field(0, ge=0, le=2)
    thermal_diffusivity: float | None = Field(None, gt=0, description="[m^2/s], kind heat")
    step_growth: float = Field(0.05, gt=0, le=1, description="kind heat: step / elapsed time")

    @model_validator(mode="after")
    def _heat_needs_diffusivity(self) -> TemperatureSpec:
        if self.kind == "heat" and self.thermal_diffusivity is None:
            raise ValueError("temperature.kind 'heat' needs temperature.thermal_diffusivity")
        return self


class FreeEnergySpec(Section):
    """The homogeneous free energy and the transport coefficient. The double well
    $f = \\rho(c - c_\\alpha)^2(c - c_\\beta)^2$ is given by its barrier $W = \\rho\\Delta c^4/16$
    or by $\\rho$, and its transport by the diffusivity $D_0$ or by the constant mobility $M$
    ($D = M f''_{eq} = 2M\\rho\\Delta c^2$); the other models take ``diffusivity``."""

    kind: Literal["dilute", "double_well", "regular_solution"]
    diffusivity: float | None = Field(None, gt=0, description="D0 [m^2/s]")
    mobility: float | None = Field(None, gt=0, description="double well: M [mol m^2/(J s)]")
    activation_energy: float = Field(0.0, ge=0, description="Q_d [J/mol]")
    barrier: float | None = Field(None, gt=0, description="double-well barrier W [J/mol]")
    rho: float | None = Field(None, gt=0, description="double well: rho = 16 W / dc^4 [J/mol]")
    c_alpha: float = Field(0.0, description="matrix well")
    c_beta: float = Field(1.0, description="precipitate well")
    slope_alpha: float = Field(0.0, description="dc_alpha/dT [1/K]")
    slope_beta: float = Field(0.0, description="dc_beta/dT [1/K]")
    T0: float = Field(1000.0, gt=0, description="temperature of c_alpha, c_beta [K]")
    interaction: float | None = Field(None, gt=0, description="regular-solution Omega [J/mol]")

    @model_validator(mode="after")
    def _parameters_present(self) -> FreeEnergySpec:
        double_well = self.kind == "double_well"
        if (self.diffusivity is None) == (self.mobility is None if double_well else True):
            raise ValueError(f"free_energy.kind {self.kind!r} needs "
                             + ("one of free_energy.diffusivity and free_energy.mobility"
                                if double_well else "free_energy.diffusivity"))
        if double_well and (self.barrier is None) == (self.rho is None):
            raise ValueError("free_energy.kind 'double_well' needs one of free_energy.barrier "
                             "and free_energy.rho")
        if double_well and not self.c_alpha < self.c_beta:
            raise ValueError(f"free_energy.c_alpha={self.c_alpha} must be below "
                             f"free_energy.c_beta={self.c_beta}")
        if self.kind == "regular_solution" and self.interaction is None:
            raise ValueError("free_energy.kind 'regular_solution' needs free_energy.interaction")
        unused = [k for k in ("mobility", "barrier", "rho") if not double_well
                  and getattr(self, k) is not None]
        if unused:
            raise ValueError(f"free_energy.{unused[0]} applies to kind 'double_well' only")
        return self

    @property
    def curvature_scale(self) -> float:
        """The double well's $\\rho$ [J/mol]."""
        gap = self.c_beta - self.c_alpha
        return self.rho if self.rho is not None else 16 * self.barrier / gap**4


class InitialSpec(Section):
    """``uniform``: c = value. ``precipitates``: discs/spheres at ``centres`` [m] with
    ``radii`` [m] in the matrix with no flux in equilibrium with the largest.
    ``random_precipitates``: ``count`` particles of radius in ``radius_range`` [m], placed at
    random (``seed``) at least ``spacing`` [m] apart (surface to surface). ``expression``: a
    formula in the cell centres ``x``, ``y``, ``z`` (NumPy functions, ``pi``; e.g.
    ``0.5 + 0.01*cos(0.105*x)*cos(0.11*y)``). ``file``: the variable ``variable`` of the
    xarray/HDF5 file ``path`` (read from the working folder, recorded absolute), of the grid's
    shape; a leading ``time`` axis (a run's ``trajectory.h5``) is indexed by ``time_index``."""

    kind: Literal["uniform", "precipitates", "random_precipitates", "expression", "file"]
    value: float | None = None
    expression: str | None = None
    path: AbsolutePath | None = None
    variable: str = "c"
    time_index: int = -1
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
        if self.kind == "expression" and not self.expression:
            raise ValueError("initial.kind 'expression' needs initial.expression")
        if self.kind == "file" and not self.path:
            raise ValueError("initial.kind 'file' needs initial.path")
        if self.kind == "precipitates" and (not self.radii or len(self.radii) != len(self.centres)):
            raise ValueError("initial.kind 'precipitates' needs as many initial.centres as radii")
        if self.kind == "random_precipitates" and (self.count < 1 or self.radius_range is None):
            raise ValueError("initial.kind 'random_precipitates' needs initial.count >= 1 and "
                             "initial.radius_range")
        if self.radius_range is not None and not 0 < self.radius_range[0] <= self.radius_range[1]:
            raise ValueError(f"initial.radius_range {list(self.radius_range)} needs "
                             "0 < low <= high")
        return self


class TimeSpec(Section):
    end: float = Field(gt=0, description="model time [s]")
    saves: int = Field(21, ge=2, description="snapshots, evenly spaced, t = 0 included")


class SolverSpec(Section):
    tolerance: float = Field(
        DEFAULT_TOLERANCE, gt=0, lt=1,
        description="local error per step, relative to max|c0|; the default 1e-4 keeps the "
        "free energy within 0.8 % of a converged solution while a spinodal decomposition "
        "separates (2.2 % at 1e-3, 0.25 % at 1e-5 with 3x the steps; "
        "benchmarks/phasefield_tolerance.py)")
    dt_max: float | None = Field(None, gt=0)


SPINODAL_INITIALS = ("uniform", "expression")
"""The ``initial.kind`` values whose double-well start decomposes into a bicontinuous network
(a uniform or perturbed field), so no particle tracks (``tracked.png``, the centroids on
``snapshots.png``) are drawn, though ``tracked.json`` records what the tracker finds. The
other kinds start from particles (``precipitates``, ``random_precipitates``) or continue a
run (``file``, a restart), and get them drawn."""

INITIAL_KEYS = {"uniform": ("value",), "precipitates": ("centres", "radii"),
                "random_precipitates": ("count", "radius_range", "spacing", "seed"),
                "expression": ("expression",), "file": ("path", "variable", "time_index")}
"""The keys of the ``initial`` section each kind reads."""

MODELS = {"dilute": DiluteSolution, "double_well": DoubleWell,
          "regular_solution": RegularSolution}


class ThermomigrationCase(CaseBase):
    """A whole thermomigration case file."""

    kind: Literal["thermomigration"]
    units: Literal["si", "nondimensional"] = Field(
        "si", description="si: every input in SI; nondimensional: the classic isothermal "
        "Cahn-Hilliard model in the case's own units (double well, mobility, kappa)")
    grid: GridSpec
    temperature: TemperatureSpec | None = None
    free_energy: FreeEnergySpec
    interface_width: float | None = Field(None, gt=0, description="double well: delta [m]")
    kappa: float | None = Field(None, ge=0, description="gradient energy [J m^2/mol]")
    heat_of_transport: float = Field(0.0, description="Q* [J/mol]; < 0: solute to the hot side")
    initial: InitialSpec
    time: TimeSpec
    solver: SolverSpec = Field(default_factory=SolverSpec)
    dtype: Literal["float32", "float64"] = "float64"

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ThermomigrationCase:
        ndim = len(self.grid.shape)
        if self.units == "nondimensional":
            self._nondimensional_model()
        elif self.temperature is None:
            raise ValueError("units 'si' needs a temperature section")
        if self.temperature is not None and self.temperature.axis >= ndim:
            raise ValueError(f"temperature.axis {self.temperature.axis} is not an axis of the "
                             f"{ndim}D grid")
        kind = self.free_energy.kind
        two_phase = kind != "dilute"
        if self.initial.kind not in ("uniform", "expression", "file") and kind != "double_well":
            raise ValueError(f"initial.kind {self.initial.kind!r} needs free_energy.kind "
                             "'double_well'")
        if not (info.context or {}).get("recorded", False):  # a run's own config: dropped
            self._no_unread_keys()
        if self.interface_width is not None and kind != "double_well":
            raise ValueError(f"interface_width applies to free_energy.kind 'double_well' (its "
                             f"width sets kappa); give kappa for kind {kind!r}")
        if two_phase and self.interface_width is None and self.kappa is None:
            raise ValueError("free_energy.kind 'double_well' needs interface_width or kappa"
                             if kind == "double_well" else f"free_energy.kind {kind!r} needs "
                             "kappa (the gradient energy)")
        if self.interface_width is not None and self.kappa is not None:
            raise ValueError("give interface_width or kappa, not both (each sets the other)")
        if two_phase and self.kappa is not None and not self.kappa > 0:
            raise ValueError(f"kappa={self.kappa:g}: a two-phase free energy needs kappa > 0 "
                             "(its interfaces have a width)")
        lengths = self.grid.length
        spec = self.temperature
        if spec is not None and spec.gradient != 0:
            if self.grid.bc[spec.axis] == "periodic":
                raise ValueError(f"temperature.gradient along axis {spec.axis}, a periodic axis "
                                 "of grid.bc: the temperature would jump by gradient x length "
                                 "at the seam; make that axis no_flux")
            span = abs(spec.gradient) * lengths[spec.axis] / 2
            if spec.mean - span <= 0:
                raise ValueError(f"temperature.mean={spec.mean:g} K with gradient="
                                 f"{spec.gradient:g} K/m over {lengths[spec.axis]:g} m gives "
                                 f"{spec.mean - span:g} K at the cold end: T must stay > 0 K")
        lower, upper = MODELS[kind].compositions
        if self.initial.kind == "uniform" and not lower < self.initial.value < upper:
            needed = f"c > {lower:g}" if upper == np.inf else f"{lower:g} < c < {upper:g}"
            raise ValueError(f"initial.value={self.initial.value:g}: the "
                             f"{kind.replace('_', ' ')} model needs a composition {needed}")
        if self.initial.kind == "random_precipitates":
            self._placeable(ndim, lengths)
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
        if self.initial.kind == "expression":
            check_expression(self.initial.expression, ndim)
        if self.initial.kind == "file":
            check_field(self.initial.path, self.initial.variable, tuple(self.grid.shape),
                        self.initial.time_index)
        return self

    def _placeable(self, ndim: int, lengths: list[float]) -> None:
        """Refuse random particles that random placement cannot fit: one larger (with its
        spacing) than half the domain, or more than fit even at their smallest radius (with
        half the spacing around each): they would cover more of the domain than random
        sequential addition reaches before it jams (the parking constants 0.748, 0.547 and
        0.384 in 1D, 2D and 3D), and placement would retry for hours."""
        spec = self.initial
        if not spec.radius_range[1] + spec.spacing < min(lengths) / 2:
            raise ValueError(f"initial.radius_range's largest radius ({spec.radius_range[1]:g} "
                             f"m) plus initial.spacing ({spec.spacing:g} m) must be below half "
                             f"the smallest grid.length ({min(lengths) / 2:g} m)")
        r = spec.radius_range[0] + spec.spacing / 2
        ball = (2 * r, np.pi * r**2, 4 / 3 * np.pi * r**3)[ndim - 1]
        covered = spec.count * ball / float(np.prod(lengths))
        jammed = (0.748, 0.547, 0.384)[ndim - 1]
        if covered > jammed:
            raise ValueError(f"initial.count={spec.count} particles of radius >= "
                             f"{spec.radius_range[0]:g} m at spacing {spec.spacing:g} m would "
                             f"cover {covered:.0%} of the domain; random placement jams at "
                             f"about {jammed:.0%} in {ndim}D: lower initial.count or the radii")

    def unused_keys(self) -> set[str]:
        """The keys this case's kinds do not read: a linear temperature's heat-solver keys,
        the double well's keys under another free energy (and ``T0`` without a slope), the
        interaction outside the regular solution, the other initial kinds' keys."""
        unused = set()
        if self.temperature is not None and self.temperature.kind == "linear":
            unused |= {"temperature.thermal_diffusivity", "temperature.step_growth"}
        energy = self.free_energy
        if energy.kind != "double_well":
            unused |= {f"free_energy.{key}" for key in ("c_alpha", "c_beta", "slope_alpha",
                                                         "slope_beta", "T0")}
        elif energy.slope_alpha == 0 and energy.slope_beta == 0:
            unused.add("free_energy.T0")
        if energy.kind != "regular_solution":
            unused.add("free_energy.interaction")
        read = INITIAL_KEYS[self.initial.kind]
        return unused | {f"initial.{key}" for keys in INITIAL_KEYS.values() for key in keys
                         if key not in read}

    def _no_unread_keys(self) -> None:
        """Refuse a key of :meth:`unused_keys` set to other than its default (a value that
        would change nothing); one message naming it and what the kind reads."""
        for key in sorted(self.unused_keys()):
            section, name = key.split(".")
            spec = getattr(self, section)
            default = type(spec).model_fields[name].get_default(call_default_factory=True)
            if getattr(spec, name) != default:
                readers = {"temperature": "temperature.kind 'heat'",
                           "free_energy": ("free_energy.kind 'regular_solution'"
                                           if name == "interaction" else
                                           "free_energy.kind 'double_well'" + (
                                               " with a slope" if name == "T0" else "")),
                           "initial": "initial.kind " + " or ".join(
                               repr(k) for k, keys in INITIAL_KEYS.items() if name in keys)}
                raise ValueError(f"{key} applies to {readers[section]} only; this case does "
                                 f"not read it (remove it, or set it to {json.dumps(default)})")

    def _nondimensional_model(self) -> None:
        """The non-dimensional form is the isothermal double well with constant mobility:
        $c_t = \\nabla\\cdot M\\nabla(f'(c) - \\kappa\\nabla^2 c)$,
        $f = \\rho(c - c_\\alpha)^2(c - c_\\beta)^2$; no temperature enters."""
        energy = self.free_energy
        if energy.kind != "double_well" or energy.mobility is None:
            raise ValueError("units 'nondimensional' needs free_energy.kind 'double_well' with "
                             "free_energy.mobility")
        thermal = {"temperature": self.temperature is not None,
                   "heat_of_transport": self.heat_of_transport != 0,
                   "free_energy.activation_energy": energy.activation_energy != 0,
                   "free_energy.slope_alpha": energy.slope_alpha != 0,
                   "free_energy.slope_beta": energy.slope_beta != 0}
        given = [key for key, present in thermal.items() if present]
        if given:
            raise ValueError(f"units 'nondimensional' is isothermal: remove {given[0]}")

    @property
    def temperature_spec(self) -> TemperatureSpec:
        """The temperature section; the non-dimensional model runs at a uniform
        ``NONDIMENSIONAL_TEMPERATURE`` that enters nothing (no activation energy, slopes or
        heat of transport)."""
        if self.temperature is not None:
            return self.temperature
        return TemperatureSpec(kind="linear", mean=NONDIMENSIONAL_TEMPERATURE)

    @property
    def total_steps(self) -> int:
        """Snapshots after t = 0 (the progress bar's units)."""
        return self.time.saves - 1


CHECKPOINT = "checkpoint.npz"
NONDIMENSIONAL_TEMPERATURE = 1.0


def build_grid(case: ThermomigrationCase) -> tuple[Grid, BoundaryConditions]:
    spec = case.grid
    grid = Grid(tuple(spec.shape), (0.0,) * len(spec.shape), tuple(spec.length))
    sides = tuple((BC("periodic"),) * 2 if kind == "periodic" else (BC("neumann"),) * 2
                  for kind in spec.bc)
    return grid, BoundaryConditions(sides)


def build_free_energy(case: ThermomigrationCase) -> DiluteSolution | DoubleWell | RegularSolution:
    """The free energy; a double well given by $\\rho$ and a mobility $M$ becomes
    ``DoubleWell(barrier=`` $\\rho\\Delta c^4/16$ ``, diffusivity=`` $2M\\rho\\Delta c^2$ ``)``."""
    spec = case.free_energy
    if spec.kind == "dilute":
        return DiluteSolution(diffusivity=spec.diffusivity,
                              activation_energy=spec.activation_energy)
    if spec.kind == "regular_solution":
        return RegularSolution(interaction=spec.interaction, diffusivity=spec.diffusivity,
                               activation_energy=spec.activation_energy)
    gap, rho = spec.c_beta - spec.c_alpha, spec.curvature_scale
    diffusivity = (spec.diffusivity if spec.mobility is None
                   else 2 * spec.mobility * rho * gap**2)
    return DoubleWell(barrier=rho * gap**4 / 16, c_alpha=spec.c_alpha, c_beta=spec.c_beta,
                      slope_alpha=spec.slope_alpha, slope_beta=spec.slope_beta, T0=spec.T0,
                      diffusivity=diffusivity, activation_energy=spec.activation_energy)


def build_temperature(case: ThermomigrationCase, grid: Grid):
    """The fixed linear field, or a :class:`HeatConductionTemperature` (kind ``heat``)."""
    spec = case.temperature_spec
    half = grid.upper[spec.axis] / 2
    cold = spec.mean - spec.gradient * half
    if spec.kind == "linear":
        return linear_temperature(grid, cold, spec.gradient, spec.axis)
    sides = [(BC("neumann"), BC("neumann")) for _ in range(grid.ndim)]
    sides[spec.axis] = (BC("dirichlet", cold), BC("dirichlet", spec.mean + spec.gradient * half))
    heat = HeatSolver(grid, BoundaryConditions(tuple(sides)), nu=spec.thermal_diffusivity,
                      dt=None, scheme="imex", theta=1.0, device=case.device, dtype=case.dtype)
    return HeatConductionTemperature(heat, np.full(grid.shape, spec.mean),
                                     first_step=min(grid.dx) ** 2 / spec.thermal_diffusivity,
                                     growth=spec.step_growth)


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


def initial_state(case: ThermomigrationCase, grid: Grid, bc: BoundaryConditions, model,
                  T: np.ndarray) -> np.ndarray:
    """$c_0$: uniform, an expression, a file's field, or precipitates in a zero-flux matrix in
    equilibrium with the largest."""
    spec = case.initial
    if spec.kind == "uniform":
        return np.full(grid.shape, float(spec.value))
    if spec.kind == "expression":
        return evaluate_expression(spec.expression, grid.mesh())
    if spec.kind == "file":
        return read_field(spec.path, spec.variable, grid.shape, spec.time_index)
    centres, radii = ((spec.centres, spec.radii) if spec.kind == "precipitates"
                      else _random_particles(case, grid))
    kappa = _kappa(case, model)
    matrix, precipitate = matrix_composition(model, T, case.heat_of_transport, kappa,
                                             max(radii), grid.ndim)
    width = model.interface_width(kappa)
    return precipitate_field(grid, matrix, precipitate, [tuple(c) for c in centres], radii, width,
                             bc)


def build_solver(case: ThermomigrationCase) -> tuple[ThermomigrationSolver, np.ndarray]:
    grid, bc = build_grid(case)
    model = build_free_energy(case)
    temperature = build_temperature(case, grid)
    T0 = temperature(0.0) if callable(temperature) else temperature
    solver = ThermomigrationSolver(
        grid, model, temperature, kappa=_kappa(case, model),
        heat_of_transport=case.heat_of_transport, bc=bc, T_ref=case.temperature_spec.mean,
        tolerance=case.solver.tolerance, dt_max=case.solver.dt_max, device=case.device,
        dtype=case.dtype,
    )
    return solver, initial_state(case, grid, bc, model, T0)


# ------------------------------------------------------------------------------ analysis


def track(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory) -> list:
    """Per snapshot: time, mass, free energy and, for two-phase cases, the particles with ids
    stable across snapshots (:func:`~physml.solvers.precipitates.particle_ids`) and their
    centre of mass (:func:`_precipitate_centre_of_mass`); the records of the module docstring's
    ``tracked.json``."""
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
    "mass_drift": "relative", "free_energy_max_increase": "J m^d/mol (d: grid dimension)",
    "steady_profile_error": "relative to max c", "centre_of_mass_shift": "m",
    "smaller_volume_ratio": "final / initial volume (the initially smaller particle, by id)",
    "velocity": "m/s",
    "velocity_estimate": "m/s (sharp-interface)", "velocity_ratio": "measured / estimate",
    "radius_change": "relative, largest", "displacement": "m", "steps": "accepted time steps",
    "rejected_steps": "time steps", "wall_s": "s",
}
"""Units of the entries of a thermomigration run's ``metrics.json``."""

NONDIMENSIONAL_UNITS = {
    "free_energy_max_increase": "model energy x length^d", "centre_of_mass_shift": "model length",
    "velocity": "model length / model time", "velocity_estimate": "not applicable",
    "displacement": "model length",
}
"""The entries of :data:`SUMMARY_UNITS` whose units differ for ``units: nondimensional``."""


def summarise(case: ThermomigrationCase, solver: ThermomigrationSolver, run: Trajectory,
              records: list, T_end: np.ndarray) -> dict:
    """Mass drift, energy monotonicity and the case's own check (profile or migration);
    ``T_end`` the temperature [K] at the last snapshot."""
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
        if counts[0] == 2 and counts[-1] >= 1:
            summary["smaller_volume_ratio"] = _smaller_volume_ratio(records)
        if (counts[0] == 1 and all(c == 1 for c in counts) and solver.grid.ndim in (2, 3)
                and case.temperature_spec.gradient != 0):
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


# -------------------------------------------------------------------------------- running


def _save_checkpoint(folder: Path, run: Trajectory, dt: float, wall_s: float) -> None:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, times=run.times, states=np.stack(run.states), mass=run.mass,
                     free_energy=run.free_energy, steps=run.steps, rejected=run.rejected,
                     dt=dt, wall_s=wall_s)

    atomic_write(folder / CHECKPOINT, write)


def _load_checkpoint(folder: Path) -> tuple[Trajectory, float, float]:
    """The run so far, its next step size and the wall seconds it took."""
    data = read_checkpoint(folder, lambda path: dict(np.load(path)), CHECKPOINT)
    run = Trajectory(times=list(data["times"]), states=list(data["states"]),
                     mass=list(data["mass"]), free_energy=list(data["free_energy"]),
                     steps=[int(s) for s in data["steps"]], rejected=int(data["rejected"]))
    return run, float(data["dt"]), float(data["wall_s"]) if "wall_s" in data else 0.0


def run(case: ThermomigrationCase, folder: Path, resume: bool = False,
        on_step: OnStep | None = None) -> dict:
    """Integrate ``case`` snapshot by snapshot, checkpointing after each, and write results;
    returns the summary. ``config.yaml`` is written with the first checkpoint, so a run folder
    with a configuration can always be resumed."""
    started = time.perf_counter()
    solver, c0 = build_solver(case)
    save_times = np.linspace(0.0, case.time.end, case.time.saves)
    if resume:
        run, dt, before = _load_checkpoint(folder)
    else:
        run, dt, before = Trajectory(), None, 0.0
    while len(run.times) < len(save_times):
        k = max(len(run.times), 1)
        start = run.states[-1] if run.states else c0
        try:
            segment = solver.run(start, save_times[k], save_times=save_times[k:k + 1], dt0=dt,
                                 t0=save_times[k - 1])
        except BlowUpError as err:  # steps counted from the run's start, the checkpoint named
            raise _in_run(err, run) from None
        _extend(run, segment, 1 if run.states else 0)
        # the last step of a segment is cut to land on the snapshot: go on with the one before
        dt = segment.dt[-2] if len(segment.dt) > 1 else segment.dt[-1]
        _save_checkpoint(folder, run, dt, before + time.perf_counter() - started)
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
    summary["wall_s"] = before + time.perf_counter() - started  # over every resumed part
    write_thermomigration_results(case, solver, run, records, summary, folder, temperatures)
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


def _cf_metadata(case: ThermomigrationCase, dims: tuple[str, ...]) -> dict:
    """CF ``long_name``/``units`` of ``trajectory.h5``: SI, or the case's own units."""
    si = case.units != "nondimensional"
    metadata = {"c": ("solute mole fraction c" if si else "composition c", "1"),
                "T": ("temperature", "K"),
                "time": ("model time", "s" if si else "1")}
    metadata.update({d: (f"{d} coordinate of the cell centre", "m" if si else "1") for d in dims})
    return metadata


def write_thermomigration_results(case, solver, run, records, summary, folder: Path,
                                  temperatures: np.ndarray | None) -> None:
    """The run folder's results (see the module docstring); ``temperatures`` is
    :func:`temperature_history` (None: the fixed ``solver.temperature``)."""
    grid = solver.grid
    dims = ("x", "y", "z")[: grid.ndim]
    coords = {d: grid.coords(i) for i, d in enumerate(dims)}
    fields = {"c": (("time", *dims), np.stack(run.states))}
    attrs = {"case": case.name, "pde": "cahn_hilliard_thermomigration",
             "free_energy": case.free_energy.kind, "physml_version": __version__}
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
    write_text(folder / "tracked.json", json.dumps(records, indent=1))
    write_text(folder / "metrics.json", json.dumps(summary, indent=1))
    if case.output.figures:
        from .figures import (
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
            particles = draws_particles(case, solver)
            gradient = case.temperature_spec.axis, case.temperature_spec.gradient
            centroids = ([[p["centroid"] for p in r["particles"]] for r in records]
                         if particles else None)
            plot_snapshots(grid, run.times, run.states, folder / "snapshots.png", *gradient,
                           centroids, units)
            animate_microstructure(grid, run.times, run.states, folder / "microstructure.gif",
                                   *gradient, units)
            if particles:
                plot_tracked(records, case.temperature_spec.axis, folder / "tracked.png",
                             summary.get("velocity_estimate"), units,
                             case.temperature_spec.gradient)


def draws_particles(case: ThermomigrationCase, solver: ThermomigrationSolver) -> bool:
    """Whether the particle figures (``tracked.png``, the centroids on ``snapshots.png``) are
    drawn: a double well whose start is not a spinodal one (:data:`SPINODAL_INITIALS`)."""
    return (isinstance(solver.free_energy, DoubleWell)
            and case.initial.kind not in SPINODAL_INITIALS)


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
