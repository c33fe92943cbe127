"""The schema of thermomigration (phase-field) case files, ``kind: thermomigration``.

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

from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from .schema import OutputSpec, _Section


class GridSpec(_Section):
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


class TemperatureSpec(_Section):
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


class FreeEnergySpec(_Section):
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


class InitialSpec(_Section):
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


class TimeSpec(_Section):
    end: float = Field(gt=0, description="model time [s]")
    saves: int = Field(21, ge=2, description="snapshots, evenly spaced, t = 0 included")


class SolverSpec(_Section):
    tolerance: float = Field(1e-3, gt=0, description="local error per step, relative")
    dt_max: float | None = Field(None, gt=0)


class ThermomigrationCase(_Section):
    """A whole thermomigration case file."""

    kind: Literal["thermomigration"]
    name: str
    description: str = ""
    grid: GridSpec
    temperature: TemperatureSpec
    free_energy: FreeEnergySpec
    interface_width: float | None = Field(None, gt=0, description="double well: delta [m]")
    kappa: float | None = Field(None, ge=0, description="gradient energy [J m^2/mol]")
    heat_of_transport: float = Field(0.0, description="Q* [J/mol]; < 0: solute to the hot side")
    initial: InitialSpec
    time: TimeSpec
    solver: SolverSpec = Field(default_factory=SolverSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    device: str = "cpu"
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

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
