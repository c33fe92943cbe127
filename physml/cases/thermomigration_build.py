"""Building a thermomigration case's solver: its grid and boundary conditions, free energy,
temperature field (fixed or conducted), gradient energy and initial composition."""

from __future__ import annotations

import numpy as np

from ..solvers.free_energy import DoubleWell
from ..solvers.grid import BC, BoundaryConditions, Grid
from ..solvers.heat import HeatSolver
from ..solvers.precipitates import matrix_composition, precipitate_field
from ..solvers.thermomigration import ThermomigrationSolver
from ..solvers.thermomigration_temperature import HeatConductionTemperature, linear_temperature
from .initial_fields import evaluate_expression, read_field
from .thermomigration_spec import ThermomigrationCase
from .thermomigration_spec import build_free_energy as build_free_energy


def build_grid(case: ThermomigrationCase) -> tuple[Grid, BoundaryConditions]:
    spec = case.grid
    grid = Grid(tuple(spec.shape), (0.0,) * len(spec.shape), tuple(spec.length))
    sides = tuple((BC("periodic"),) * 2 if kind == "periodic" else (BC("neumann"),) * 2
                  for kind in spec.bc)
    return grid, BoundaryConditions(sides)


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
    equilibrium with the largest at its own temperature (the mean of ``T`` over it: its
    centre's for a linear field).

    Raises:
        ValueError: in SI units, precipitates whose matrix leaves 0 <= c <= 1 (c is a mole fraction
            there; the non-dimensional double well's c may take any value).
    """
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
    width = model.interface_width(kappa)
    largest = int(np.argmax(radii))
    inside = precipitate_field(grid, 0.0, 1.0, [tuple(centres[largest])], [radii[largest]],
                               width, bc)
    T0 = float(np.sum(inside * T) / np.sum(inside))
    matrix, precipitate = matrix_composition(model, T, case.heat_of_transport, kappa,
                                             radii[largest], grid.ndim, T0=T0)
    if case.units == "si":
        _check_mole_fraction(case, model, matrix, precipitate, T, T0)
    return precipitate_field(grid, matrix, precipitate, [tuple(c) for c in centres], radii, width,
                             bc)


def _check_mole_fraction(case: ThermomigrationCase, model: DoubleWell, matrix: np.ndarray,
                         precipitate: float, T: np.ndarray, T0: float) -> None:
    """Refuse a matrix (the zero-flux profile of :func:`matrix_composition`, which falls by
    $k = Q^*/(f'' T_0)$ per kelvin) or a precipitate composition outside [0, 1]: the
    start's c lies between them."""
    low, high = min(float(np.min(matrix)), precipitate), max(float(np.max(matrix)), precipitate)
    if 0 <= low and high <= 1:
        return
    k = case.heat_of_transport / (model.well_curvature(T0) * T0)
    span = float(np.max(T) - np.min(T))
    raise ValueError(
        f"initial.kind {case.initial.kind!r}: c0 spans [{low:.3g}, {high:.3g}], but in SI units "
        "c is a mole fraction, 0 <= c <= 1; the zero-flux matrix around the precipitates starts "
        "at c_alpha(T0) plus a Gibbs-Thomson shift (free_energy.c_alpha, c_beta, their slopes, "
        f"initial.radii) and changes by -heat_of_transport/(f'' T0) = {-k:.3g} per K over the "
        f"{span:.3g} K of the start's temperature (temperature.gradient across grid.length): "
        "lower |heat_of_transport|, temperature.gradient or grid.length, or raise "
        "free_energy.barrier (or rho), which sets f''")


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
