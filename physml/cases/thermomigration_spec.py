"""The schema of a ``kind: thermomigration`` case file: the grid, temperature, free-energy,
initial-state, time and solver sections and :class:`ThermomigrationCase`, which checks them
against each other (an example case in :mod:`~.thermomigration`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..datasets.spec import AbsolutePath
from ..solvers.free_energy import DiluteSolution, DoubleWell, RegularSolution
from ..solvers.thermomigration import DEFAULT_TOLERANCE
from .initial_fields import check_expression, check_field, read_field
from .run_folder import KindSection, Section
from .sections import BYTES, CaseBase

NONDIMENSIONAL_TEMPERATURE = 1.0

_ISOTHERMAL = "units 'nondimensional' is isothermal: remove {}"


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


class TemperatureSpec(KindSection):
    """``linear``: $T = T_{mean} + G(x - x_{mid})$, fixed. ``heat``: starts uniform at ``mean``
    and is evolved by the heat solver with Dirichlet ends $T_{mean} \\mp G L/2$ (diffusivity
    ``thermal_diffusivity``), no flux on the other axes, by backward Euler on its own steps
    $h_n = \\max(\\Delta x^2/\\alpha,\\ r\\,t_n)$, $r$ = ``step_growth``: steps that follow the
    temperature's own decay, not the Cahn–Hilliard step nor an explicit limit (see
    :class:`~physml.solvers.thermomigration_temperature.HeatConductionTemperature`); error below
    $0.04\\,r$ of the temperature span after the first 5 % of $L^2/(\\pi^2\\alpha)$, exact at
    the steady state."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "linear": (), "heat": ("thermal_diffusivity", "step_growth")}

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


DOUBLE_WELL_OPTIONS = ("mobility", "barrier", "rho", "c_alpha", "c_beta", "slope_alpha",
                       "slope_beta")
"""The ``free_energy`` options only the double well reads (and ``T0``, with a slope)."""


class FreeEnergySpec(KindSection):
    """The homogeneous free energy and the transport coefficient. The double well
    $f = \\rho(c - c_\\alpha)^2(c - c_\\beta)^2$ is given by its barrier $W = \\rho\\Delta c^4/16$
    or by $\\rho$, and its transport by the diffusivity $D_0$ or by the constant mobility $M$
    ($D = M f''_{eq} = 2M\\rho\\Delta c^2$); the other models take ``diffusivity``. ``T0``
    is read with a slope only (the wells move with T about it)."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "dilute": (), "regular_solution": ("interaction",),
        "double_well": (*DOUBLE_WELL_OPTIONS, "T0"),
        "double_well without a slope": DOUBLE_WELL_OPTIONS}

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
        return self

    @property
    def option_kind(self) -> str:
        if self.kind == "double_well" and self.slope_alpha == self.slope_beta == 0:
            return "double_well without a slope"
        return self.kind

    def describe_kind(self) -> str:
        return f"kind {self.kind!r}" + (" without a slope" if self.option_kind != self.kind
                                        else "")

    @property
    def curvature_scale(self) -> float:
        """The double well's $\\rho$ [J/mol]."""
        gap = self.c_beta - self.c_alpha
        return self.rho if self.rho is not None else 16 * self.barrier / gap**4


class InitialSpec(KindSection):
    """``uniform``: c = value. ``precipitates``: discs/spheres at ``centres`` [m] with
    ``radii`` [m] in the matrix with no flux in equilibrium with the largest at its
    temperature.
    ``random_precipitates``: ``count`` particles of radius in ``radius_range`` [m], placed at
    random (``seed``) at least ``spacing`` [m] apart (surface to surface). ``expression``: a
    formula in the cell centres ``x``, ``y``, ``z`` (NumPy functions, ``pi``; e.g.
    ``0.5 + 0.01*cos(0.105*x)*cos(0.11*y)``). ``file``: the variable ``variable`` of the
    xarray/HDF5 file ``path`` (read from the working folder, recorded absolute), of the grid's
    shape; a leading ``time`` axis (a run's ``trajectory.h5``) is indexed by ``time_index``."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "uniform": ("value",), "precipitates": ("centres", "radii"),
        "random_precipitates": ("count", "radius_range", "spacing", "seed"),
        "expression": ("expression",), "file": ("path", "variable", "time_index")}

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
    saves: int = Field(21, ge=2, description="snapshots, t = 0 included: evenly spaced, or "
                       "log-spaced from time.first")
    first: float | None = Field(None, gt=0, description="the first snapshot after t = 0 [s]; "
                                "given, the later ones are log-spaced from it to time.end "
                                "(a transient early in a long run)")

    @model_validator(mode="after")
    def _first_before_end(self) -> TimeSpec:
        if self.first is not None and not (self.first < self.end and self.saves >= 3):
            raise ValueError(f"time.first={self.first:g} needs time.end > time.first (got "
                             f"{self.end:g}) and time.saves >= 3 (got {self.saves}): t = 0, "
                             "time.first, ..., time.end")
        return self

    def save_times(self) -> np.ndarray:
        """The snapshots' times [s], shape ``(saves,)``: 0, then ``saves - 1`` evenly spaced to
        ``end``, or log-spaced from ``first`` to ``end``."""
        if self.first is None:
            return np.linspace(0.0, self.end, self.saves)
        return np.concatenate([[0.0], np.geomspace(self.first, self.end, self.saves - 1)])


class SolverSpec(Section):
    tolerance: float = Field(
        DEFAULT_TOLERANCE, gt=0, lt=1,
        description="local error of each step, relative to max|c0| (not the error of the "
        "solution, which the steps' errors add up to); the default 3e-5 keeps the free energy "
        "within 0.9 % of a converged solution while a spinodal decomposition separates (1.7 % "
        "at 1e-4 with 0.54x the steps, 6.1 % at 1e-3, 0.5 % at 1e-5 with 1.7x the steps; "
        "benchmarks/phasefield_tolerance.py), while the composition field is off by about 6 % "
        "of max|c0| at t = 20 on PFHub 1 (variant=cpu; 0.4 % in the free energy there, 1 % in "
        "the field at 1e-6 with 5.6x the steps); at least the dtype's machine epsilon "
        "(1.2e-7 in float32)")
    dt_max: float | None = Field(None, gt=0)


PARTICLE_INITIALS = ("precipitates", "random_precipitates")
"""The ``initial.kind`` values that start a double well from particles, whose tracks are drawn
(``tracked.png``, the centroids on ``snapshots.png``) and measured (two particles' volume
ratio, one particle's migration); a ``file`` start counts as the start of the run that wrote
it (:func:`~.thermomigration_analysis.initial_kind`). A uniform or expression start
decomposes into a bicontinuous network, no set of particles, though ``tracked.json`` records
what the tracker finds."""

WORK_VALUES = 32
"""Numbers held per cell while a case runs besides its snapshots, measured: the solver's state,
stages, error estimate, fluxes and chemical potential, and the tracking and results written
(the PFHub case, 3 snapshots: 492 MB above the process on 1000^2 cells, 1.35 GB on 2000^2,
287 bytes a cell between the two, 31 numbers with the snapshots' share taken off)."""

SNAPSHOT_VALUES = 2
"""Numbers held per cell for each snapshot, measured: the trajectory, and a copy as it is
written (1000^2 cells: 12 bytes a cell more for each of 10 more snapshots, 1.5 numbers)."""

SETTLING_FRACTION = 1e-6
"""Shortest diffusion time across the domain a case may have, as a fraction of its first save
interval (the bundled cases: 20 to 130; Fe-C with a diffusivity 1e6 times its own, 7e-5, runs
in seconds, 1e9 times, 7e-8, for minutes)."""

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

    @model_validator(mode="before")
    @classmethod
    def _no_temperature_when_nondimensional(cls, data: Any) -> Any:
        """Refused before the section's own fields are checked, whose message (a required
        ``temperature.mean``) would ask for what is then refused."""
        if isinstance(data, dict) and data.get("units") == "nondimensional" and (
                data.get("temperature") is not None):
            raise ValueError(_ISOTHERMAL.format("temperature"))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ThermomigrationCase:
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
        placed = self.initial.kind == "precipitates"  # another kind lets its particles be
        for centre, radius in zip(self.initial.centres, self.initial.radii) if placed else ():
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
        if self.units == "si" and kind == "double_well":
            self._mole_fractions()
        elif self.initial.kind == "file":  # the SI double well reads it whole, above
            check_field(self.initial.path, self.initial.variable, tuple(self.grid.shape),
                        self.initial.time_index)
        return self

    @model_validator(mode="after")
    def _diffusion_not_instant(self) -> ThermomigrationCase:
        """Refuse a diffusivity (or mobility) so large that the composition settles across
        the domain, in its diffusion time $L^2/D_{max}$ (the longest ``grid.length``, $D$ at
        the hot end), within :data:`SETTLING_FRACTION` of the first save interval: the
        snapshots would show the steady state alone, after adaptive steps that resolve the
        transient at that speed (minutes to hours)."""
        spec = self.temperature_spec
        span = abs(spec.gradient) * self.grid.length[spec.axis] / 2
        diffusivity = build_free_energy(self).diffusivity_bound(spec.mean - span,
                                                                spec.mean + span)
        settling = max(self.grid.length) ** 2 / diffusivity
        first_save = float(self.time.save_times()[1])
        if settling < SETTLING_FRACTION * first_save:
            given = ("mobility" if self.free_energy.mobility is not None else "diffusivity")
            raise ValueError(
                f"free_energy.{given}={getattr(self.free_energy, given):g} gives a diffusivity "
                f"up to {diffusivity:.3g}: the composition settles across grid.length="
                f"{list(self.grid.length)} in a time of {settling:.3g}, under "
                f"{SETTLING_FRACTION:g} of the first save's, t = {first_save:g} (time); use a "
                f"smaller free_energy.{given} or a longer grid.length")
        return self

    def _mole_fractions(self) -> None:
        """In SI units the double well's c is a mole fraction: refuse ``free_energy.c_alpha``,
        ``c_beta``, a ``uniform`` start's ``initial.value`` or the values of a ``file`` start
        (read here) outside [0, 1], as a start from precipitates is refused
        (:func:`~.thermomigration_build.initial_state`)."""
        given = {"free_energy.c_alpha": self.free_energy.c_alpha,
                 "free_energy.c_beta": self.free_energy.c_beta}
        if self.initial.kind == "uniform":
            given["initial.value"] = self.initial.value
        for key, value in given.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{key}={value:g}: in SI units a composition is a mole "
                                 f"fraction, 0 <= {key} <= 1")
        spec = self.initial
        if spec.kind == "file":
            c0 = read_field(spec.path, spec.variable, tuple(self.grid.shape), spec.time_index)
            low, high = float(np.min(c0)), float(np.max(c0))
            if not (0 <= low and high <= 1):
                raise ValueError(f"initial.path {str(spec.path)!r}: {spec.variable} spans "
                                 f"[{low:.3g}, {high:.3g}], but in SI units c is a mole "
                                 "fraction, 0 <= c <= 1")

    def memory_needs(self) -> dict[str, float]:
        """Bytes the run holds, about, by the keys that set them: each cell's
        :data:`WORK_VALUES` and :data:`SNAPSHOT_VALUES` for each of ``time.saves`` snapshots.
        Refused beyond this machine's memory."""
        cells = float(np.prod(self.grid.shape, dtype=float))
        saves = self.time.saves
        return {f"grid.shape={list(self.grid.shape)} ({cells:,.0f} cells), time.saves={saves}":
                cells * (WORK_VALUES + SNAPSHOT_VALUES * saves) * BYTES}

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
            raise ValueError(_ISOTHERMAL.format(given[0]))

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
