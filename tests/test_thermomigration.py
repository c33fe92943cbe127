"""Cahn–Hilliard thermomigration: conservation, energy, steady states, migration, coarsening."""

from __future__ import annotations

import multiprocessing
import re

import numpy as np
import pytest
import warp as wp

from physml.solvers import BlowUpError, Grid, neumann, periodic
from physml.solvers.cahn_hilliard_kernels import RowLaunch
from physml.solvers.free_energy import (
    GAS_CONSTANT,
    DiluteSolution,
    DoubleWell,
    RegularSolution,
)
from physml.solvers.grid import BC, BoundaryConditions
from physml.solvers.precipitates import (
    Particle,
    matrix_composition,
    migration_velocity,
    precipitate_field,
    track_particles,
)
from physml.solvers.spectral_solve import SpectralSolve
from physml.solvers.thermomigration import DEFAULT_TOLERANCE, ThermomigrationSolver
from physml.solvers.thermomigration_temperature import linear_temperature

T_REF = 1000.0
CASES = __import__("pathlib").Path(__file__).parents[1] / "cases"
CELL = 1e-6  # m; with D = 1e-12 m^2/s the time unit is 1 s
LOOSE = 1e-3  # tolerance of the runs that check conservation, direction or a slow rate, not a
# transient's accuracy (the default 1e-4 is chosen for that, at about 3x the steps)


def noflux_x_periodic_y() -> BoundaryConditions:
    return BoundaryConditions(((BC("neumann"), BC("neumann")), (BC("periodic"), BC("periodic"))))


def two_phase_model() -> DoubleWell:
    return DoubleWell(barrier=0.25 * GAS_CONSTANT * T_REF, c_alpha=0.1, c_beta=0.9,
                      slope_alpha=1e-4, T0=T_REF, diffusivity=1e-12)


def precipitate_problem(shape, scaled_gradient, centres, radii, width=1.2):
    """Solver and initial state: precipitates (centres, radii in cells) in a matrix with no flux,
    T = T_REF + G (x - centre), G = scaled_gradient * T_REF / CELL."""
    grid = Grid(shape, (0.0, 0.0), tuple(n * CELL for n in shape))
    bc = noflux_x_periodic_y()
    gradient = scaled_gradient * T_REF / CELL
    T = linear_temperature(grid, T_REF - gradient * grid.upper[0] / 2, gradient)
    model = two_phase_model()
    kappa = model.gradient_coefficient(width * CELL)
    Q = -2.8 * GAS_CONSTANT * T_REF
    matrix, precipitate = matrix_composition(model, T, Q, kappa, max(radii) * CELL, 2)
    c0 = precipitate_field(grid, matrix, precipitate, [tuple(CELL * x for x in p) for p in centres],
                           [r * CELL for r in radii], width * CELL)
    solver = ThermomigrationSolver(grid, model, T, kappa=kappa, heat_of_transport=Q, bc=bc,
                                   tolerance=LOOSE)
    return solver, c0, gradient


def particles(solver, c):
    return track_particles(c, solver.grid, solver.bc, 0.1, 0.9)


# ------------------------------------------------------------------------ steady state, order


def test_dilute_steady_state_matches_exp_q_over_rt():
    grid = Grid((64,), (0.0,), (1e-3,))
    T = linear_temperature(grid, 900.0, 2e5)
    model = DiluteSolution(diffusivity=1.1e-6, activation_energy=80e3)
    solver = ThermomigrationSolver(grid, model, T, heat_of_transport=-96e3, bc=neumann(1))
    c0 = np.full(grid.shape, 0.001)
    run = solver.run(c0, 1e5 * solver.units.time)
    exact = np.exp(-96e3 / (GAS_CONSTANT * T))
    exact *= c0.mean() / exact.mean()
    assert np.max(np.abs(run.states[-1] - exact)) / np.max(exact) <= 1e-4
    assert abs(run.mass[-1] - run.mass[0]) <= 1e-12 * run.mass[0]
    assert np.argmax(run.states[-1]) == grid.shape[0] - 1  # Q* < 0: solute on the hot side



def test_heat_conduction_temperature_follows_the_fourier_series():
    """A bar uniform at T_m between ends held at T_m -+ G L/2: against the series
    T = T_m + G(x - L/2) + sum_{n even} 2GL/(n pi) sin(n pi x/L) exp(-alpha (n pi/L)^2 t),
    through the transient and to the steady state, in a few hundred steps."""
    from physml.solvers.heat import HeatSolver
    from physml.solvers.thermomigration_temperature import HeatConductionTemperature

    length, alpha, mean, gradient = 2e-3, 2e-5, 1000.0, 1e5
    grid = Grid((100,), (0.0,), (length,))
    span = gradient * length
    bc = BoundaryConditions(((BC("dirichlet", mean - span / 2),
                              BC("dirichlet", mean + span / 2)),))
    heat = HeatSolver(grid, bc, nu=alpha, dt=None, scheme="imex", theta=1.0)
    field = HeatConductionTemperature(heat, np.full(grid.shape, mean),
                                      first_step=grid.dx[0] ** 2 / alpha)
    x = grid.coords(0)
    n = np.arange(2, 4002, 2)[:, None]
    tau = length**2 / (np.pi**2 * alpha)

    def exact(t):
        series = 2 * span / (n * np.pi) * np.sin(n * np.pi * x / length)
        return mean + gradient * (x - length / 2) + np.sum(
            series * np.exp(-alpha * (n * np.pi / length) ** 2 * t), axis=0)

    errors = [np.max(np.abs(field(t) - exact(t))) / span for t in (0.05 * tau, 0.3 * tau,
                                                                     tau, 3 * tau)]
    assert max(errors) <= 3e-3, errors
    steady = field(3e6)  # the Fe-C case's end: 1.5e8 slowest decay times
    np.testing.assert_allclose(steady, exact(np.inf), rtol=0, atol=1e-9 * span)
    assert field.steps <= 600


def test_heat_conduction_case_runs_to_the_end_and_reaches_the_steady_profile(tmp_path):
    """``temperature.kind: heat`` (the Fe-C case's ``heat`` variant) runs to t = 3e6 s: the
    temperature starts uniform and ends on the linear steady state, carbon on exp(Q*/RT)."""
    import xarray as xr

    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / "thermomigration_fe_c.yaml",
                     ["variant=heat", "grid.shape=[50]", "temperature.step_growth=0.2",
                      "output.figures=false"])
    folder, summary = run_case(case, tmp_path)
    with xr.open_dataset(folder / "trajectory.h5", engine="h5netcdf") as ds:
        T, x = ds["T"].values, ds["x"].values
    assert T.shape == (31, 50)
    np.testing.assert_array_equal(T[0], 1000.0)
    np.testing.assert_allclose(T[-1], 1000.0 + 1e5 * (x - 1e-3), rtol=0, atol=1e-8)
    assert summary["steady_profile_error"] <= 1e-4 and summary["mass_drift"] <= 1e-12

def test_rhs_is_second_order_in_space():
    """Dilute flux with Arrhenius D and a smooth periodic T against its exact divergence."""
    model = DiluteSolution(diffusivity=1e-12, activation_energy=50e3)
    q_star, errors = -30e3, []
    for n in (32, 64, 128):
        grid = Grid((n,), (0.0,), (1e-6,))
        x = grid.coords(0) / grid.upper[0]
        T = T_REF * (1 + 0.1 * np.sin(2 * np.pi * x))
        c = 0.01 * (1 + 0.5 * np.cos(2 * np.pi * x))
        solver = ThermomigrationSolver(grid, model, T, heat_of_transport=q_star, T_ref=T_REF)
        rate = solver.rhs(solver.to_warp(c)).numpy().ravel()
        # exact, in the solver's units (x measured in cells of this grid)
        s = 2 * np.pi / n
        Tt = 1 + 0.1 * np.sin(s * (np.arange(n) + 0.5))
        Tx = 0.1 * s * np.cos(s * (np.arange(n) + 0.5))
        Txx = -0.1 * s**2 * np.sin(s * (np.arange(n) + 0.5))
        cc = 0.01 * (1 + 0.5 * np.cos(s * (np.arange(n) + 0.5)))
        cx = -0.005 * s * np.sin(s * (np.arange(n) + 0.5))
        cxx = -0.005 * s**2 * np.cos(s * (np.arange(n) + 0.5))
        Qd, Qs = 50e3 / (GAS_CONSTANT * T_REF), q_star / (GAS_CONSTANT * T_REF)
        D = np.exp(Qd * (1 - 1 / Tt))
        Dx = D * Qd * Tx / Tt**2
        a = Qs * Tx / Tt**2
        ax = Qs * (Txx / Tt**2 - 2 * Tx**2 / Tt**3)
        exact = Dx * (cx + cc * a) + D * (cxx + cx * a + cc * ax)
        errors.append(np.max(np.abs(rate - exact)) / np.max(np.abs(exact)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.9), (errors, orders)


def test_rhs_with_no_flux_walls_is_mirror_symmetric():
    """No-flux walls reflect: with T symmetric under x -> L - x (and y -> L - y), the rate of a
    mirrored c is the mirrored rate, wall cells included (kappa > 0 and Q* != 0)."""
    grid = Grid((32, 8), (0.0, 0.0), (32 * CELL, 8 * CELL))
    x, y = (grid.coords(axis) / grid.upper[axis] for axis in (0, 1))
    T = T_REF * (1 + 0.05 * np.outer(np.cos(2 * np.pi * x), np.cos(2 * np.pi * y)))
    model = two_phase_model()
    solver = ThermomigrationSolver(grid, model, T, kappa=model.gradient_coefficient(1.5 * CELL),
                                   heat_of_transport=-10e3, T_ref=T_REF, bc=neumann(2))
    c = 0.4 + 0.05 * np.random.default_rng(0).standard_normal(grid.shape)

    def rate(c):
        return solver.rhs(solver.to_warp(np.ascontiguousarray(c))).numpy().reshape(grid.shape)

    r = rate(c)
    for axis in (0, 1):
        mirrored = np.flip(rate(np.flip(c, axis)), axis)
        assert np.max(np.abs(mirrored - r)) <= 1e-12 * np.max(np.abs(r)), axis


@pytest.mark.parametrize("model_name", ["dilute", "double_well"])
def test_rhs_with_gradient_energy_is_second_order_in_space(model_name):
    """kappa > 0 (the fourth-order kappa Lap^2 c part of the face fluxes) and the double well,
    with Q* != 0 and a periodic T, against a spectral evaluation of div M[(grad mu)_T +
    Q* grad T/T] at the cell centres."""
    length, fine = 1e-6, 2048
    if model_name == "dilute":
        model = DiluteSolution(diffusivity=1e-6, activation_energy=80e3)
        kappa, q_star = 1e-14 * GAS_CONSTANT * T_REF, -50e3

        def composition(x):
            return 0.01 * (1 + 0.3 * np.sin(2 * np.pi * x / length)
                           + 0.1 * np.cos(4 * np.pi * x / length))
    else:
        model = DoubleWell(barrier=2000.0, c_alpha=0.2, c_beta=0.8, diffusivity=1e-6,
                           activation_energy=80e3)
        kappa, q_star = 1e-13 * GAS_CONSTANT * T_REF, 30e3

        def composition(x):
            return (0.5 + 0.2 * np.sin(2 * np.pi * x / length)
                    + 0.05 * np.cos(6 * np.pi * x / length))

    def temperature(x):
        return T_REF + 60 * np.sin(2 * np.pi * x / length + 0.5)

    wavenumbers = 2 * np.pi * np.fft.fftfreq(fine, length / fine)

    def ddx(f):
        return np.real(np.fft.ifft(1j * wavenumbers * np.fft.fft(f)))

    errors = []
    for n in (32, 64, 128):
        grid = Grid((n,), (0.0,), (length,))
        x = grid.coords(0)
        solver = ThermomigrationSolver(grid, model, temperature(x), kappa=kappa,
                                       heat_of_transport=q_star)
        rate = solver.rhs(solver.to_warp(composition(x))).numpy().ravel() / solver.units.time
        xf = x[0] + np.arange(fine) * length / fine  # a periodic grid through the cell centres
        c, T = composition(xf), temperature(xf)
        step = 1e-7
        mu_c = (model.chemical_potential(c + step, T)
                - model.chemical_potential(c - step, T)) / (2 * step)  # d mu_0/dc at fixed T
        flux = -model.mobility(c, T) * (mu_c * ddx(c) - kappa * ddx(ddx(ddx(c)))
                                        + q_star * ddx(T) / T)
        exact = -ddx(flux)[:: fine // n]
        errors.append(np.max(np.abs(rate - exact)) / np.max(np.abs(exact)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.9), (errors, orders)


@pytest.mark.parametrize("shape", [(12,), (10, 14), (6, 8, 10)])
@pytest.mark.parametrize("model_name", ["dilute", "double_well", "regular"])
def test_launch_geometries_agree(shape, model_name):
    """The CUDA launch geometry (a thread per cell), run on the CPU, and rows split between three
    host threads, against one thread per row on one host thread."""
    rng = np.random.default_rng(3)
    grid = Grid(shape, (0.0,) * len(shape), tuple(n * CELL for n in shape))
    bc = BoundaryConditions(tuple((BC(kind), BC(kind)) for kind in
                                  ("neumann", "periodic", "neumann")[:len(shape)]))
    T = T_REF * (1 + 0.05 * rng.random(shape))
    model = {"dilute": DiluteSolution(diffusivity=1e-12, activation_energy=40e3),
             "double_well": two_phase_model(),
             "regular": RegularSolution(interaction=2.5 * GAS_CONSTANT * T_REF,
                                        diffusivity=1e-12, activation_energy=40e3)}[model_name]
    solver, threaded = (ThermomigrationSolver(grid, model, T, kappa=1e-12, heat_of_transport=-20e3,
                                              bc=bc, threads=threads) for threads in (1, 3))
    assert len(solver._launch.chunks) == 1 and len(threaded._launch.chunks) == min(3, grid.size
                                                                                   // shape[-1])
    c = solver.to_warp(0.1 + 0.8 * rng.random(shape))
    per_row = solver.rhs(c).numpy()
    np.testing.assert_array_equal(threaded.rhs(c).numpy(), per_row)
    assert not np.any(threaded.rhs(c, 0.0).numpy())
    delta, euler, previous = (solver.to_warp(0.05 + 0.01 * rng.random(shape)) for _ in range(3))
    error = solver._step_error(c, delta, euler, (previous, 1.0), 0.5)
    d, e, p = (a.numpy() for a in (delta, euler, previous))
    assert error == np.max(np.maximum(np.abs(e - d), np.abs(d - 0.5 * p) / 2))  # bit for bit
    assert solver._step_error(c, delta, euler, None, 0.5) == np.max(np.abs(e - d))
    assert threaded._step_error(c, delta, euler, (previous, 1.0), 0.5) == error
    down = solver._array(-2 * c.numpy())  # c + delta = -c: outside the dilute and regular
    below = solver._step_error(c, down, down, None, 0.5)  # models' compositions: retried
    assert below == (np.inf if model.compositions[0] == 0 else 0.0)
    solver._launch = RowLaunch(tuple(solver._launch.shape), solver.device, solver.dtype,
                               per_cell=True)
    solver._set_temperature(T, 0.0)
    per_cell = solver.rhs(c).numpy()
    assert np.abs(per_row).max() > 0
    np.testing.assert_allclose(per_cell, per_row, rtol=0, atol=1e-14 * np.abs(per_row).max())
    assert solver._step_error(c, delta, euler, (previous, 1.0), 0.5) == error  # per cell too


@pytest.mark.parametrize("model", [
    DiluteSolution(diffusivity=1e-12),
    DoubleWell(barrier=2000.0, diffusivity=1e-12, c_alpha=0.2, c_beta=0.8, slope_alpha=1e-4,
               slope_beta=-2e-4, T0=900.0),
    RegularSolution(interaction=2.5 * GAS_CONSTANT * T_REF, diffusivity=1e-12),
], ids=lambda m: m.kind.name.lower())
def test_each_model_s_chemical_potential_is_the_derivative_of_its_free_energy(model):
    c, T, h = np.linspace(0.05, 0.95, 19), np.full(19, 950.0), 1e-6
    slope = (model.free_energy(c + h, T) - model.free_energy(c - h, T)) / (2 * h)
    np.testing.assert_allclose(model.chemical_potential(c, T), slope, rtol=1e-7,
                               atol=1e-7 * np.abs(slope).max())
    lower, upper = model.compositions
    if np.isfinite(lower):
        with pytest.raises(ValueError, match=r"c0 spans \[0, 0.5\]; .* needs 0 < c < 1"):
            model.check_composition(np.array([0.0, 0.5]))
    model.check_composition(np.array([0.05, 0.95]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("per_cell", [False, True])
def test_a_step_leaving_the_model_s_compositions_has_an_infinite_error(dtype, per_cell):
    """Below 0 and from 1 up for the dilute and regular models (c is a mole fraction); the
    double well has no bound. On the row launch (CPU) and the per-cell one (as on CUDA)."""
    shape = (6, 10)
    grid = Grid(shape, (0.0, 0.0), tuple(n * CELL for n in shape))
    T = np.full(shape, T_REF)
    models = {"dilute": DiluteSolution(diffusivity=1e-12),
              "regular": RegularSolution(interaction=2.5 * GAS_CONSTANT * T_REF,
                                         diffusivity=1e-12),
              "double_well": two_phase_model()}
    for name, model in models.items():
        solver = ThermomigrationSolver(grid, model, T, kappa=1e-12, dtype=dtype)
        if per_cell:
            solver._launch = RowLaunch(tuple(solver._launch.shape), solver.device, solver.dtype,
                                       per_cell=True)
        c = solver.to_warp(np.full(shape, 0.5))
        step = np.zeros(solver._shape3)
        for value, outside in ((-0.6, name != "double_well"), (0.6, name != "double_well"),
                               (0.4, False)):
            step.flat[7] = value  # one cell
            delta = solver._array(step)
            error = solver._step_error(c, delta, delta, None, 1.0)
            assert error == (np.inf if outside else 0.0), (name, value)


def test_time_stepping_is_first_order():
    grid = Grid((32, 32), (0.0, 0.0), (32 * CELL, 32 * CELL))
    model = two_phase_model()
    rng = np.random.default_rng(0)
    c0 = 0.5 + 0.05 * rng.standard_normal(grid.shape)
    solver = ThermomigrationSolver(grid, model, np.full(grid.shape, T_REF),
                                   kappa=model.gradient_coefficient(1.5 * CELL))
    t_end = 2.0

    def march(steps):
        c = c0
        for _ in range(steps):
            c = solver.step(c, dt=t_end / steps)
        return c

    reference = march(256)
    errors = [np.max(np.abs(march(k) - reference)) for k in (8, 16, 32)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 0.8) & (orders < 1.3)), (errors, orders)


# ------------------------------------------------------------------- conservation and energy


@pytest.mark.parametrize("bc", ["periodic", "no_flux"])
@pytest.mark.parametrize("model_name", ["double_well", "regular_solution"])
def test_isothermal_mass_conserved_and_energy_decreasing(bc, model_name):
    grid = Grid((48, 48), (0.0, 0.0), (48 * CELL, 48 * CELL))
    if model_name == "double_well":
        model = two_phase_model()
        kappa = model.gradient_coefficient(1.5 * CELL)
    else:
        model = RegularSolution(interaction=2.6 * GAS_CONSTANT * T_REF, diffusivity=1e-12)
        kappa = 2.0 * GAS_CONSTANT * T_REF * CELL**2
    rng = np.random.default_rng(1)
    c0 = 0.4 + 0.05 * rng.standard_normal(grid.shape)
    solver = ThermomigrationSolver(grid, model, np.full(grid.shape, T_REF), kappa=kappa,
                                   bc=periodic(2) if bc == "periodic" else neumann(2),
                                   tolerance=LOOSE)
    run = solver.run(c0, 2000.0, save_times=np.linspace(20.0, 2000.0, 100))
    mass = np.array(run.mass)
    assert np.max(np.abs(mass - mass[0])) <= 1e-12 * mass[0]
    energy = np.array(run.free_energy)
    assert np.all(np.diff(energy) <= 1e-12 * abs(energy[0]))
    assert energy[-1] < energy[0] - 0.5 * abs(energy[0])  # it did coarsen
    assert np.ptp(run.states[-1]) > 0.5  # phase separated


@pytest.mark.parametrize("bc", ["periodic", "no_flux"])
def test_mass_stays_at_rounding_level_at_any_fixed_step(bc):
    """50 steps of 1e6 s (1e6 time units) with 100 times the gradient energy: the Euler
    increment's mean, rounding of about eps * sum|dt R|, reached 8e-11 of the mass when the
    solve passed it on."""
    grid = Grid((64, 64), (0.0, 0.0), (64 * CELL, 64 * CELL))
    model = DoubleWell(barrier=2078.6, c_alpha=0.1, c_beta=0.9, T0=T_REF, diffusivity=1e-12)
    c0 = 0.5 + 0.05 * (np.random.default_rng(5).random(grid.shape) - 0.5)
    solver = ThermomigrationSolver(grid, model, np.full(grid.shape, T_REF),
                                   kappa=100 * model.gradient_coefficient(1.5 * CELL),
                                   bc=periodic(2) if bc == "periodic" else neumann(2))
    states = solver.rollout(c0, 50, 50, dt=1e6)
    mass = [solver.total_mass(c) for c in states]
    assert abs(mass[-1] / mass[0] - 1) <= 1e-14


def test_double_well_energy_falls_where_its_wells_are_wider_than_at_t0():
    """Wells 0.3/0.7 at T0 = 1000 K moving to 0.2/0.8 at 1100 K: M f'' at the wells is
    D (0.6/0.4)^2, and s2 bounded it by D alone, so the free energy rose in 82 of 300 steps
    at the default stabilisation (the same f and M written without slopes: in none)."""
    grid = Grid((64, 64), (0.0, 0.0), (64 * CELL, 64 * CELL))
    model = DoubleWell(barrier=2000.0, c_alpha=0.3, c_beta=0.7, slope_alpha=-1e-3,
                       slope_beta=1e-3, T0=T_REF, diffusivity=1e-12)
    assert model.diffusivity_bound(1100.0, 1100.0) == pytest.approx(2.25e-12, rel=1e-12)
    c0 = 0.5 + 0.2 * (np.random.default_rng(3).random(grid.shape) - 0.5)
    solver = ThermomigrationSolver(grid, model, np.full(grid.shape, 1100.0),
                                   kappa=model.gradient_coefficient(2 * CELL))
    energy = [solver.total_free_energy(c) for c in solver.rollout(c0, 300, dt=1000.0)]
    assert np.all(np.diff(energy) <= 1e-13 * max(map(abs, energy)))


def test_3d_no_flux_run_conserves_mass():
    grid = Grid((16, 16, 16), (0.0,) * 3, (16 * CELL,) * 3)
    model = two_phase_model()
    T = linear_temperature(grid, 990.0, 20.0 / (16 * CELL))
    rng = np.random.default_rng(2)
    c0 = 0.45 + 0.05 * rng.standard_normal(grid.shape)
    solver = ThermomigrationSolver(grid, model, T, kappa=model.gradient_coefficient(1.5 * CELL),
                                   heat_of_transport=-10e3, bc=neumann(3), tolerance=LOOSE)
    run = solver.run(c0, 200.0)
    assert abs(run.mass[-1] - run.mass[0]) <= 1e-12 * run.mass[0]
    assert np.ptp(run.states[-1]) > 0.5


# ------------------------------------------------------------------------------ precipitates


def test_single_precipitate_migrates_to_hot_side_keeping_its_size():
    """Direction only: at R = 6.7 interface widths of 1.2 cells and a loose tolerance the speed
    is no check of the estimate (see the case test below)."""
    solver, c0, gradient = precipitate_problem((64, 64), 1e-3, [(32, 32)], [8])
    times = np.linspace(1000.0, 5000.0, 5)
    run = solver.run(c0, times[-1], save_times=times)
    found = [particles(solver, c)[0] for c in run.states]
    x = np.array([p.centroid[0] for p in found])
    radius = np.array([p.radius for p in found])
    measured = np.polyfit(times, x[1:], 1)[0]
    expected = migration_velocity(solver.free_energy, gradient, T_REF,
                                  solver.heat_of_transport, 2)
    assert expected > 0 and measured > 0  # up the gradient: the hot side
    assert np.max(np.abs(radius / radius[0] - 1)) <= 0.02


@pytest.mark.slow
def test_single_precipitate_case_migrates_at_the_sharp_interface_rate(tmp_path):
    """``variant=small`` at the default tolerance: R = 16 interface widths of 1.5 cells, where
    the diffuse interface's excess speed (about delta/R) leaves the estimate within 10 %
    (1.24x with R = 5.3 widths)."""
    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / "thermomigration_single_precipitate.yaml", ["variant=small"])
    assert case.solver.tolerance == DEFAULT_TOLERANCE
    _, summary = run_case(case, tmp_path)
    assert abs(summary["velocity_ratio"] - 1) <= 0.10, summary["velocity_ratio"]
    assert summary["radius_change"] <= 0.02


@pytest.mark.parametrize("scaled_gradient", [0.0, 3e-3])
def test_two_precipitates_gradient_reverses_coarsening(scaled_gradient):
    """Small particle on the hot side: it grows under the gradient, shrinks without it."""
    solver, c0, _ = precipitate_problem((96, 48), scaled_gradient, [(30, 24), (70, 24)], [10, 6])
    run = solver.run(c0, 3000.0)
    before = particles(solver, run.states[0])
    after = particles(solver, run.states[-1])
    assert len(before) == 2
    small_before = min(before, key=lambda p: p.volume).volume
    small_after = min(after, key=lambda p: p.volume).volume if len(after) == 2 else 0.0
    if scaled_gradient == 0:
        assert small_after < 0.9 * small_before
    else:
        assert small_after > 1.05 * small_before


def test_a_precipitate_start_holds_the_matrix_at_equilibrium_with_the_largest_at_its_own_t():
    """Two-precipitate case: the far matrix beside the large particle (x = 60 um, 946 K, 54 K
    below the mean) is its Gibbs-Thomson composition at that temperature (it was at the mean
    temperature's, 0.0066 under-saturated there, and the particle shrank 1.5 % at once)."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import _kappa, build_solver

    case = load_case(CASES / "thermomigration_two_precipitates.yaml")
    solver, c0 = build_solver(case)
    column = slice(59, 61)  # the cells either side of the centre's x; y = 0 is 28 um off it
    T_centre = float(np.mean(solver.temperature[column, 0]))
    assert abs(T_centre - 946.0) < 1e-9
    expected, _ = matrix_composition(solver.free_energy, np.array(T_centre),
                                     case.heat_of_transport, _kappa(case, solver.free_energy),
                                     2.0e-5, 2, T0=T_centre)
    np.testing.assert_allclose(np.mean(c0[column, 0]), expected, rtol=0, atol=1e-9)


def test_particle_field_centre_of_mass_moves_to_hot_side():
    centres = [(20, 12), (44, 20), (30, 44), (52, 50), (12, 40)]
    solver, c0, _ = precipitate_problem((64, 64), 2e-3, centres, [6, 5, 6, 5, 6])
    run = solver.run(c0, 3000.0)
    x = solver.grid.mesh()[0]

    def centre_of_mass(c):
        phi = np.clip((c - 0.1) / 0.8, 0, 1)
        return float(np.sum(phi * x) / np.sum(phi))

    shift = centre_of_mass(run.states[-1]) - centre_of_mass(run.states[0])
    assert shift > 1.0 * CELL


# ------------------------------------------------------------------------- linear solve, errors


@pytest.mark.parametrize("periodic_axes", [(True, True), (False, True), (False, False)])
def test_spectral_solve_inverts_the_operator_on_both_backends(periodic_axes):
    import warp as wp

    shape, spacing = (12, 10), (1.0, 0.7)
    r = np.random.default_rng(3).standard_normal(shape)
    dt, a, b = 0.3, 1.3, 0.4
    solutions = []
    for backend in ("scipy", "torch"):
        solve = SpectralSolve(shape, spacing, periodic_axes, "cpu", backend)
        solutions.append(solve.solve(wp.array(r, dtype=wp.float64), dt, a, b).numpy())
        centred = solve.solve(wp.array(r, dtype=wp.float64), dt, a, b, zero_mean=True).numpy()
        np.testing.assert_allclose(centred, solutions[-1] - solutions[-1].mean(), atol=1e-12)
        assert abs(centred.sum()) <= 1e-13
    np.testing.assert_allclose(solutions[0], solutions[1], atol=1e-12)

    def neg_laplacian(u):
        out = np.zeros_like(u)
        for axis, (h, p) in enumerate(zip(spacing, periodic_axes)):
            mode = "wrap" if p else "edge"
            pad = [(0, 0)] * u.ndim
            pad[axis] = (1, 1)
            up = np.pad(u, pad, mode=mode)
            lo = np.take(up, range(0, u.shape[axis]), axis=axis)
            hi = np.take(up, range(2, u.shape[axis] + 2), axis=axis)
            out += (2 * u - lo - hi) / h**2
        return out

    x = solutions[0]
    lap = neg_laplacian(x)
    residual = x + dt * (a * lap + b * neg_laplacian(lap)) - r
    assert np.max(np.abs(residual)) < 1e-11


def test_a_tolerance_below_what_the_dtype_resolves_is_refused():
    """float32 at 1e-9 ran on for 24,000+ steps (a minute) without a word."""
    grid = Grid((16, 16), (0.0, 0.0), (16 * CELL, 16 * CELL))
    model = two_phase_model()
    T = np.full(grid.shape, T_REF)
    with pytest.raises(ValueError, match=r"tolerance=1e-09 is below what float32 resolves: .* "
                       r"allowed: tolerance >= 1\.2e-07 \(or dtype float64\)"):
        ThermomigrationSolver(grid, model, T, tolerance=1e-9, dtype="float32")
    with pytest.raises(ValueError, match=r"allowed: tolerance >= 2\.2e-16$"):
        ThermomigrationSolver(grid, model, T, tolerance=1e-17)
    ThermomigrationSolver(grid, model, T, tolerance=1e-9)
    ThermomigrationSolver(grid, model, T, tolerance=2e-7, dtype="float32")


def test_bad_inputs_name_the_argument():
    grid = Grid((16, 16), (0.0, 0.0), (16 * CELL, 16 * CELL))
    model = two_phase_model()
    T = np.full(grid.shape, T_REF)
    with pytest.raises(ValueError, match="kappa"):
        ThermomigrationSolver(grid, model, T, kappa=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        ThermomigrationSolver(grid, model, np.full((4, 4), T_REF))
    with pytest.raises(ValueError, match="bc on axis 0"):
        ThermomigrationSolver(grid, model, T, bc=BoundaryConditions(((BC("dirichlet"),) * 2,
                                                                      (BC("periodic"),) * 2)))
    with pytest.raises(ValueError, match="3 cells"):
        ThermomigrationSolver(Grid((2, 16), (0, 0), (1, 1)), model, np.full((2, 16), T_REF))
    with pytest.raises(ValueError, match="barrier"):
        DoubleWell(barrier=-1.0, diffusivity=1e-12)
    with pytest.raises(ValueError, match="diffusivity"):
        DiluteSolution(diffusivity=0.0)
    solver = ThermomigrationSolver(grid, model, T)
    with pytest.raises(ValueError, match="c0 contains 1 NaN"):
        solver.run(np.where(np.eye(16) * np.arange(16) == 1, np.nan, 0.5), 1.0)
    dilute = ThermomigrationSolver(grid, DiluteSolution(diffusivity=1e-12), T)
    with pytest.raises(ValueError, match="it needs 0 < c < 1"):
        dilute.run(np.zeros(grid.shape), 1.0)
    # a NaN first step looped for ever, 0 divided by zero, -1 blamed the tolerance
    for dt0 in (np.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match=f"dt0={dt0} must be a positive number of seconds"):
            solver.run(np.full(grid.shape, 0.5), 1.0, dt0=dt0)
    with pytest.raises(ValueError, match="stabilisation=inf must be a finite number >= 1/2"):
        ThermomigrationSolver(grid, model, T, stabilisation=np.inf)


def test_a_fixed_step_that_leaves_the_model_s_compositions_is_stopped():
    """A regular solution at 0.4 T_c stepped at 50 s: its ninth step went below c = 0 and was
    returned; the next call refused it as c0. The rollout now stops there, naming it."""
    grid = Grid((32, 32), (0.0, 0.0), (32 * CELL, 32 * CELL))
    model = RegularSolution(interaction=2 * GAS_CONSTANT * 2500.0, diffusivity=1e-12)
    solver = ThermomigrationSolver(grid, model, np.full(grid.shape, T_REF), check_every=1)
    c0 = 0.3 + 0.02 * np.random.default_rng(0).uniform(-1.0, 1.0, grid.shape)
    with pytest.raises(BlowUpError, match=r"c left the model's compositions \(0, 1\).*take "
                                          r"shorter steps \(or run\(\)") as info:
        solver.rollout(c0, 40, dt=50.0)
    assert info.value.last_good_state.min() > 0


def test_blow_up_reports_the_step_and_keeps_the_last_state():
    grid = Grid((16,), (0.0,), (16 * CELL,))
    model = DiluteSolution(diffusivity=1e-12)
    # a strong uphill heat of transport across a sharp temperature step drives c below zero
    T = np.where(np.arange(16) < 8, 500.0, 2000.0)
    solver = ThermomigrationSolver(grid, model, T, heat_of_transport=5e6, bc=neumann(1),
                                   tolerance=10.0, check_every=1)
    with pytest.raises(BlowUpError) as info:
        solver.run(np.full(grid.shape, 1e-3), 1e6)
    assert info.value.step >= 1
    assert info.value.last_good_state is not None
    assert np.all(np.isfinite(info.value.last_good_state))


# ----------------------------------------------------------------------------------- cases

TINY_PRECIPITATE = ["grid.shape=[32, 32]", "grid.length=[3.2e-5, 3.2e-5]",
                    "initial.centres=[[1.6e-5, 1.6e-5]]", "initial.radii=[6.0e-6]",
                    "time.end=400.0", "time.saves=5", f"solver.tolerance={LOOSE}"]


def test_fe_c_case_reaches_the_analytical_profile(tmp_path):
    import xarray as xr

    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / "thermomigration_fe_c.yaml", [f"output.folder={tmp_path}"])
    folder, summary = run_case(case, tmp_path)
    assert summary["steady_profile_error"] <= 1e-4
    assert summary["mass_drift"] <= 1e-12
    assert (folder / "profile.png").is_file() and (folder / "trajectory.h5").is_file()
    with xr.open_dataset(folder / "trajectory.h5", engine="h5netcdf") as ds:
        times, c = ds["time"].values, ds["c"].values
    # snapshots log-spaced from 300 s: profile.png shows the approach (steady by about 1e5 s)
    np.testing.assert_allclose(times[[1, 2, -1]], [300.0, 300.0 * 1e4 ** (1 / 29), 3e6])
    assert np.max(np.abs(c[1] / c[-1] - 1)) > 0.5
    # the free energy is no Lyapunov functional under a temperature gradient: not reported
    assert "free_energy_max_increase" not in summary


def test_a_case_s_snapshots_are_titled_with_its_name(monkeypatch, tmp_path):
    from physml.cases import microstructure_figures
    from physml.cases.registry import load_case, run_case

    titles = []
    draw = microstructure_figures.plot_snapshots

    def plot_snapshots(*args, **kwargs):
        draw(*args, **kwargs)
        titles.append(microstructure_figures.plt.gcf().get_suptitle())

    monkeypatch.setattr(microstructure_figures.plt, "close", lambda *a: None)
    monkeypatch.setattr(microstructure_figures, "plot_snapshots", plot_snapshots)
    case = load_case(CASES / "thermomigration_single_precipitate.yaml",
                     [*TINY_PRECIPITATE, "time.saves=2"])
    run_case(case, tmp_path)
    assert titles and titles[0].startswith(f"{case.name}: composition, 32 × 32 cells"), titles


def test_precipitate_case_writes_outputs_and_resumes_bitwise(tmp_path):
    import json

    import xarray as xr

    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / "thermomigration_single_precipitate.yaml", TINY_PRECIPITATE)
    (tmp_path / "whole").mkdir()
    folder, summary = run_case(case, tmp_path / "whole")
    for name in ("trajectory.h5", "tracked.json", "metrics.json", "snapshots.png",
                 "microstructure.gif", "tracked.png"):
        assert (folder / name).is_file(), name
    tracked = json.loads((folder / "tracked.json").read_text())
    assert len(tracked) == 5 and len(tracked[-1]["particles"]) == 1
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"case", "summary", "history", "environment"}
    assert metrics["summary"] == summary
    assert [r["t"] for r in metrics["history"]] == [r["t"] for r in tracked]
    assert metrics["history"][0]["step"] == 0 < metrics["history"][-1]["step"]
    assert summary["velocity"] > 0 and summary["mass_drift"] <= 1e-12
    assert summary["centre_of_mass_shift"] > 0  # towards the hot end, along a no-flux axis
    with xr.open_dataset(folder / "trajectory.h5", engine="h5netcdf") as ds:
        assert ds["c"].shape == (5, 32, 32) and ds["T"].shape == (32, 32)
        assert ds["c"].dims == ("time", "x", "y") and ds["T"].attrs["units"] == "K"
        assert ds.attrs["initial_kind"] == "precipitates"
        assert all({"long_name", "units"} <= set(ds[n].attrs) for n in ds.variables)
        whole = ds["c"].values[-1]
    # stop after the third snapshot, then resume to the end
    short = load_case(CASES / "thermomigration_single_precipitate.yaml",
                      [*TINY_PRECIPITATE, "time.end=200.0", "time.saves=3"])
    part = tmp_path / "part"
    part.mkdir()
    run_case(short, part)
    (part / "config.yaml").write_text(case.to_yaml())
    steps = []
    run_case(case, part, resume=True, on_step=lambda record: steps.append(record["step"]))
    assert steps == [3, 4]  # only the snapshots after the checkpoint are computed
    with xr.open_dataset(part / "trajectory.h5", engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["c"].values[-1], whole)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grid.bc=[periodic, dirichlet]", "grid.bc.1"),
        ("free_energy.kind=double_wel", "free_energy.kind"),
        ("temperature.axis=2", "temperature.axis"),
        ("initial.radii=[1.0e-5, 2.0e-5]", "initial.centres"),
        ("free_energy.colour=1", "unknown key 'free_energy.colour'"),
        ("grid.length=[5.0e-5, 5.0e-5]", "lies outside the domain [0, 5e-05] x [0, 5e-05] m"),
        ("initial.radii=[0.0]", "initial.radii entry 0 m must be > 0"),
        ("grid.shape=[24, 24]", "interface_width=1.5e-06 m is narrower than a cell"),
        ("device=tpu", "device: not a device name; allowed: cpu, cuda, cuda:N (got 'tpu')"),
    ],
)
def test_case_errors_exit_2_naming_the_key(override, message, capsys):
    from physml.cli import main

    code = main(["run", str(CASES / "thermomigration_single_precipitate.yaml"), override])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _threaded_rate_in_child(solver, c, queue) -> None:
    queue.put(solver.rhs(c).numpy())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_host_threads_work_in_a_forked_child():
    """A child forked after the parent used the host thread pool gets a pool of its own (the
    parent's threads do not exist in it: submitting to the inherited pool would hang)."""
    shape = (16, 12)
    grid = Grid(shape, (0.0, 0.0), tuple(n * CELL for n in shape))
    solver = ThermomigrationSolver(grid, two_phase_model(), np.full(shape, T_REF), kappa=1e-12,
                                   threads=2)
    c = solver.to_warp(0.1 + 0.8 * np.random.default_rng(0).random(shape))
    expected = solver.rhs(c).numpy()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_threaded_rate_in_child, args=(solver, c, queue))
    child.start()
    try:
        rate = queue.get(timeout=60)
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(rate, expected)


def test_rhs_refuses_strided_or_misshapen_arrays():
    grid = Grid((8, 6), (0.0, 0.0), (8e-6, 6e-6))
    solver = ThermomigrationSolver(grid, DiluteSolution(diffusivity=1e-12),
                                   np.full(grid.shape, 1000.0), heat_of_transport=-20e3,
                                   bc=periodic(2))
    c = solver.to_warp(np.full(grid.shape, 0.1))
    wide = wp.zeros((1, 8, 12), dtype=solver.dtype)
    with pytest.raises(ValueError, match=r"c must be a contiguous array of shape \(1, 8, 6\)"):
        solver.rhs(wide[:, :, ::2])
    with pytest.raises(ValueError, match="out must be"):
        solver.rhs(c, out=wp.zeros((1, 6, 8), dtype=solver.dtype))


def test_row_launch_refuses_grids_beyond_32_bit_offsets():
    with pytest.raises(ValueError, match="1073741824 cells is too large"):
        RowLaunch((1024, 1024, 1024), "cpu", wp.float64)


# ------------------------------------------------------ non-dimensional model, initial fields

PFHUB = "thermomigration_spinodal_pfhub1.yaml"
PFHUB_SMALL = ["variant=cpu", "grid.shape=[50, 50]", "grid.length=[100.0, 100.0]",
               "time.end=20.0", "time.saves=3", "output.figures=false"]


def nondimensional_case(shape, length, expression, **changes):
    from physml.cases.registry import validate_case

    raw = {"kind": "thermomigration", "name": "ch", "units": "nondimensional",
           "grid": {"shape": shape, "length": length, "bc": ["periodic"] * len(shape)},
           "free_energy": {"kind": "double_well", "rho": 5.0, "c_alpha": 0.3, "c_beta": 0.7,
                           "mobility": 5.0},
           "kappa": 2.0, "initial": {"kind": "expression", "expression": expression},
           "time": {"end": 1.0, "saves": 2}}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        raw[section] = {**raw[section], name: value} if name else value
    return validate_case(raw, "test")


def test_nondimensional_model_grows_the_unstable_mode_at_the_linear_rate():
    """c = 0.5 + a cos(kx) with M = 5, rho = 5, kappa = 2 (PFHub 1): the discrete linear rate
    sigma = -M lambda (f''(0.5) + kappa lambda), lambda = (2 sin(k dx/2)/dx)^2, f''(0.5) = -0.8."""
    from physml.cases.thermomigration_build import build_solver

    n, mode, amplitude, t_end = 64, 6, 1e-5, 20.0
    k = 2 * np.pi * mode / n
    case = nondimensional_case([n], [float(n)], f"0.5 + {amplitude}*cos({k!r}*x)")
    solver, c0 = build_solver(case)
    lam = (2 * np.sin(k / 2)) ** 2
    sigma = -5.0 * lam * (-0.8 + 2.0 * lam)
    x = solver.grid.coords(0)

    def rate(dt):  # measured growth exponent over sigma t_end
        steps = int(round(t_end / dt))
        c = solver.rollout(c0, steps, steps, dt=dt)[-1]
        return np.log(2 * np.mean((c - 0.5) * np.cos(k * x)) / amplitude) / (sigma * t_end)

    coarse, fine = rate(0.02), rate(0.01)
    assert np.exp(sigma * t_end) > 50  # the mode grows well beyond its start
    assert 1.8 <= (coarse - 1) / (fine - 1) <= 2.2  # the scheme's first order in time
    assert abs(2 * fine - coarse - 1) <= 0.01  # extrapolated to dt -> 0


def test_pfhub_spinodal_case_energy_and_restart_from_its_file(tmp_path):
    """PFHub 1 from its case file: F(0) equals the benchmark's functional on the grid, F falls,
    mass is kept; then a case starting from the run's trajectory.h5 starts from its last c."""
    import xarray as xr

    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / PFHUB, [*PFHUB_SMALL, "output.figures=true"])
    (tmp_path / "first").mkdir()
    folder, summary = run_case(case, tmp_path / "first")
    # a bicontinuous network: no particles to track, the benchmark's free energy instead
    assert not (folder / "tracked.png").exists() and (folder / "free_energy.png").is_file()
    x, y = (np.arange(50) + 0.5) * 2.0, (np.arange(50) + 0.5) * 2.0
    x, y = np.meshgrid(x, y, indexing="ij")
    c0 = 0.5 + 0.01 * (np.cos(0.105 * x) * np.cos(0.11 * y)
                       + (np.cos(0.13 * x) * np.cos(0.087 * y)) ** 2
                       + np.cos(0.025 * x - 0.15 * y) * np.cos(0.07 * x - 0.02 * y))
    bulk = 5.0 * (c0 - 0.3) ** 2 * (0.7 - c0) ** 2
    gradient = sum((np.roll(c0, -1, axis) - c0) ** 2 / 4.0 for axis in (0, 1))
    F0 = float(np.sum(bulk + 0.5 * 2.0 * gradient) * 4.0)
    with xr.open_dataset(folder / "trajectory.h5", engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds["c"].values[0], c0, rtol=0, atol=1e-15)
        last = ds["c"].values[-1]
        assert "T" not in ds and ds.attrs["units"].startswith("non-dimensional")
        assert ds.attrs["initial_kind"] == "expression"
    energy = [r["free_energy"] for r in __import__("json").loads(
        (folder / "tracked.json").read_text())]
    assert energy[0] == pytest.approx(F0, rel=1e-12)
    assert energy[-1] < 0.9 * energy[0] and summary["free_energy_max_increase"] == 0.0
    assert summary["mass_drift"] <= 1e-12
    assert "centre_of_mass_shift" not in summary  # periodic: a mean position has no meaning
    restart = load_case(CASES / PFHUB, [*PFHUB_SMALL, "initial.kind=file",
                                        "initial.expression=null",
                                        f"initial.path={folder / 'trajectory.h5'}",
                                        "time.end=5.0", "time.saves=2",
                                        "output.figures=true"])
    (tmp_path / "second").mkdir()
    folder, summary = run_case(restart, tmp_path / "second")
    with xr.open_dataset(folder / "trajectory.h5", engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["c"].values[0], last)
        assert ds.attrs["initial_kind"] == "expression"  # the spinodal start, carried on
    # its network is still no set of particles
    assert not (folder / "tracked.png").exists() and "smaller_volume_ratio" not in summary


def test_initial_field_errors_name_the_file_and_variable(tmp_path):
    import xarray as xr

    path = tmp_path / "c0.h5"
    xr.Dataset({"phi": (("x", "y"), np.full((8, 8), 0.5))}).to_netcdf(path, engine="h5netcdf")
    base = {"shape": [8, 8], "length": [8.0, 8.0], "expression": "0.5"}
    for initial, message in [
        ({"kind": "file", "path": str(tmp_path / "none.h5")}, "none.h5' does not exist"),
        ({"kind": "file", "path": str(path)}, "has no variable 'c'; it has: phi"),
        ({"kind": "file", "path": str(path), "variable": "phi"}, None),
        ({"kind": "expression", "expression": "0.5 + w"}, "unknown name 'w'"),
        ({"kind": "expression", "expression": "__import__('os')"}, "only calls of"),
        ({"kind": "expression", "expression": "0.5 + z"}, "unknown name 'z'"),
        ({"kind": "expression", "expression": "sin"}, "function 'sin' is not called"),
        ({"kind": "expression", "expression": "sin(x, y)"}, "sin takes 1 argument"),
        ({"kind": "expression", "expression": "maximum(x)"}, "maximum takes 2 argument"),
    ]:
        if message is None:
            nondimensional_case(base["shape"], base["length"], "0.5", initial=initial)
            continue
        with pytest.raises(ValueError, match=message):
            nondimensional_case(base["shape"], base["length"], "0.5", initial=initial)
    with pytest.raises(ValueError, match=r"phi has shape \(8, 8\), the grid \(16, 16\)"):
        nondimensional_case([16, 16], [16.0, 16.0], "0.5",
                            initial={"kind": "file", "path": str(path), "variable": "phi"})



def test_initial_field_is_read_by_dimension_names(tmp_path):
    import xarray as xr

    from physml.cases.initial_fields import read_field

    c = np.arange(12.0).reshape(4, 3)  # (x, y) on a 4 x 3 grid
    times = np.stack([c, 2 * c])  # (time, x, y)
    path = tmp_path / "c0.h5"
    xr.Dataset({"c": (("x", "y"), c), "u": (("y", "time", "x"), times.transpose(2, 0, 1)),
                "w": (("a", "b"), c)}).to_netcdf(path, engine="h5netcdf")
    square = np.arange(9.0).reshape(3, 3)  # (x, y), written as (y, x) by another tool
    xr.Dataset({"s": (("y", "x"), square.T)}).to_netcdf(tmp_path / "s.h5", engine="h5netcdf")
    np.testing.assert_array_equal(read_field(tmp_path / "s.h5", "s", (3, 3)), square)
    np.testing.assert_array_equal(read_field(path, "c", (4, 3)), c)
    np.testing.assert_array_equal(read_field(path, "u", (4, 3)), 2 * c)
    np.testing.assert_array_equal(read_field(path, "u", (4, 3), time_index=0), c)
    with pytest.raises(ValueError, match=r"c0.h5':w has dimensions \(a, b\); the grid's are "
                                         r"\(x, y\)"):
        read_field(path, "w", (4, 3))
    with pytest.raises(ValueError, match=r"s has shape \(3, 3\), the grid \(2, 3\) over "
                                         r"\(x, y\)"):
        read_field(tmp_path / "s.h5", "s", (2, 3))
    xr.Dataset({"n": xr.DataArray(c)}).to_netcdf(tmp_path / "n.h5", engine="h5netcdf")
    np.testing.assert_array_equal(read_field(tmp_path / "n.h5", "n", (4, 3)), c)  # dim_0, dim_1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": {"mean": 1000.0}}, "isothermal: remove temperature"),
        ({"temperature": {"gradient": 5.0}}, "isothermal: remove temperature"),  # no mean
        ({"heat_of_transport": -1.0}, "isothermal: remove heat_of_transport"),
        ({"free_energy__slope_alpha": 1e-4}, "remove free_energy.slope_alpha"),
        ({"free_energy__mobility": None, "free_energy__diffusivity": 1.0}, "free_energy.mobility"),
        ({"free_energy__barrier": 1.0}, "one of free_energy.barrier and free_energy.rho"),
        ({"free_energy__rho": 0.0}, "free_energy.rho"),
        ({"free_energy__mobility": -5.0}, "free_energy.mobility"),
        ({"free_energy__c_beta": 0.2}, "c_alpha=0.3 must be below"),
        ({"free_energy__c_beta": 0.3}, "c_alpha=0.3 must be below free_energy.c_beta=0.3"),
        ({"grid__shape": [2]}, r"grid.shape=\[2\]: every axis needs >= 3 cells"),
        ({"solver": {"tolerance": 1.0}}, "solver.tolerance"),
        ({"kappa": 0.0}, "kappa=0: a two-phase free energy needs kappa > 0"),
        ({"interface_width": 2.0}, "give interface_width or kappa, not both"),
    ],
)
def test_nondimensional_case_refuses_what_it_cannot_mean(changes, message):
    with pytest.raises(ValueError, match=message):
        nondimensional_case([8], [8.0], "0.5", **changes)


@pytest.mark.parametrize(("override", "message"), [
    ("temperature.step_growth=0.0", "temperature.step_growth"),
    ("temperature.step_growth=2.0", "temperature.step_growth"),
    ("temperature.thermal_diffusivity=-1.0", "temperature.thermal_diffusivity"),
    ("initial.value=.inf", "initial.value"),
    ("initial.value=0.0", "initial.value=0: the dilute model needs a composition 0 < c < 1"),
    ("initial.value=5", "initial.value=5: the dilute model needs a composition 0 < c < 1"),
    ("temperature.gradient=2e6", "gives -1000 K at the cold end: T must stay > 0 K"),
    ("grid.bc=[periodic]", "temperature.gradient along axis 0, a periodic axis of grid.bc"),
])
def test_heat_variant_keys_are_checked(override, message):
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=message):
        load_case(CASES / "thermomigration_fe_c.yaml", ["variant=heat", override])


@pytest.mark.parametrize(("case", "overrides", "message"), [
    ("fe_c", ["interface_width=1e-5"], "interface_width applies to free_energy.kind "
     "'double_well' (its width sets kappa); give kappa for kind 'dilute'"),
    ("fe_c", ["free_energy.kind=regular_solution", "free_energy.interaction=1e4"],
     "free_energy.kind 'regular_solution' needs kappa"),
    ("fe_c", ["free_energy.kind=regular_solution", "free_energy.interaction=1e4",
              "kappa=1e-12", "initial.value=1.5"],
     "initial.value=1.5: the regular solution model needs a composition 0 < c < 1"),
    ("particles", ["grid.shape=[48, 48]", "grid.length=[4.8e-5, 4.8e-5]", "initial.count=1",
                   "initial.radius_range=[3e-5, 4e-5]"],
     "initial.radius_range's largest radius (4e-05 m) plus initial.spacing"),
    ("particles", ["initial.count=2000"], "initial.count=2000 particles of radius >= 7e-06 m "
     "at spacing 6e-06 m would cover 959% of the domain; random placement jams at about 55% "
     "in 2D"),  # placement retried for hours
    ("fe_c", ["temperature.thermal_diffusivity=1e-5"], "override "
     "'temperature.thermal_diffusivity=1e-5': temperature: thermal_diffusivity does not apply "
     "to kind 'linear' (of the kind-specific options it takes: none of them)"),
    ("fe_c", ["free_energy.c_alpha=0.1"], "free_energy: c_alpha does not apply to kind "
     "'dilute'"),
    ("spinodal_pfhub1", ["free_energy.T0=900"], "free_energy: T0 does not apply to kind "
     "'double_well' without a slope (of the kind-specific options it takes: mobility, barrier, "
     "rho, c_alpha, c_beta, slope_alpha, slope_beta)"),
    ("single_precipitate", ["initial.value=0.3"], "initial: value does not apply to kind "
     "'precipitates' (of the kind-specific options it takes: centres, radii)"),
    ("fe_c", ["initial.expression=1/0"], "initial: expression does not apply to kind "
     "'uniform'"),
    ("fe_c", ["variant=heat", "temperature.kind=linear", "temperature.step_growth=0.1"],
     "override 'temperature.step_growth=0.1': temperature: step_growth does not apply to kind "
     "'linear'"),  # set for the kind that the override switched to: refused
    ("fe_c", ["initial.kind=precipitates", "initial.centres=[[1e-4]]", "initial.radii=[1e-5]"],
     "initial.kind 'precipitates' needs "
     "free_energy.kind 'double_well'"),
    ("fe_c", ["time.first=3e6"], "time.first=3e+06 needs time.end > time.first (got 3e+06)"),
    ("fe_c", ["time.saves=2"], "and time.saves >= 3 (got 2): t = 0, time.first, ..., time.end"),
])
def test_keys_a_case_would_not_read_are_refused_by_name(case, overrides, message):
    """Each would change nothing (or crash later): the message names the key and its kind."""
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=re.escape(message)):
        load_case(CASES / f"thermomigration_{case}.yaml", overrides)


@pytest.mark.parametrize(("case", "overrides", "let_be"), [
    ("fe_c", ["variant=heat", "temperature.kind=linear"], "temperature.thermal_diffusivity"),
    ("single_precipitate", ["initial.kind=uniform", "initial.value=0.5"], "initial.centres"),
    ("spinodal_pfhub1", ["initial.kind=uniform", "initial.value=0.5"], "initial.expression"),
    ("single_precipitate", ["free_energy.kind=regular_solution", "free_energy.interaction=1e4",
                            "interface_width=null", "kappa=1e-12", "initial.kind=uniform",
                            "initial.value=0.5"], "free_energy.barrier"),
])
def test_an_override_switching_a_kind_lets_the_former_kind_s_options_be(
        case, overrides, let_be, tmp_path):
    """The options the file (or a variant) set for the kind an override switched are neither
    refused nor written to config.yaml, which validates again as the same run."""
    from physml.cases.registry import load_case

    loaded = load_case(CASES / f"thermomigration_{case}.yaml", overrides)
    section, key = let_be.split(".")
    assert getattr(getattr(loaded, section), key) is not None
    (tmp_path / "config.yaml").write_text(loaded.to_yaml())
    assert key not in loaded.resolved()[section]
    assert load_case(tmp_path / "config.yaml").same_run(loaded)


def test_a_run_folder_s_own_config_may_hold_keys_its_kinds_do_not_read(tmp_path, capsys):
    """A config.yaml written before unread keys were refused still resumes: the keys are
    dropped, as the config written now leaves them out."""
    from physml.cases.registry import load_case
    from physml.cli import main

    args = ["run", str(CASES / "thermomigration_fe_c.yaml"), "grid.shape=[20]",
            "time.saves=3", "output.figures=false", f"output.folder={tmp_path}", "--quiet"]
    assert main(args) == 0
    (folder,) = tmp_path.iterdir()
    config = folder / "config.yaml"
    assert "step_growth" not in config.read_text()
    config.write_text(config.read_text().replace("temperature:\n",
                                                 "temperature:\n  step_growth: 0.1\n"))
    with pytest.raises(ValueError, match="temperature: step_growth does not apply to kind "
                                         "'linear'"):
        load_case(config)
    assert "step_growth" not in load_case(config, recorded=True).to_yaml()
    assert main([*args, "--resume", str(folder)]) == 0, capsys.readouterr().err


def test_a_migration_velocity_is_fitted_through_two_snapshots_at_least(tmp_path):
    """With two snapshots the second half held one: the fitted line was arbitrary (185x the
    estimate, where three snapshots give 1.2x)."""
    import warnings

    from physml.cases.registry import load_case, run_case

    ratios = []
    for saves in (2, 3):
        case = load_case(CASES / "thermomigration_single_precipitate.yaml", [
            "variant=small", "grid.shape=[32, 32]", "grid.length=[3.2e-5, 3.2e-5]",
            "initial.centres=[[1.6e-5, 1.6e-5]]", "initial.radii=[6e-6]", "time.end=200",
            f"time.saves={saves}", "output.figures=false"])
        (tmp_path / str(saves)).mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no RankWarning from a fit through one point
            ratios.append(run_case(case, tmp_path / str(saves))[1]["velocity_ratio"])
    assert 0.5 < ratios[0] < 2 and 0.5 < ratios[1] < 2


def test_default_tolerance_keeps_the_free_energy_within_one_percent_where_it_errs_most():
    """Spinodal decomposition (PFHub 1 on 50 x 50 cells of 2 units): the free energy at t = 13,
    where the phases separate fastest and the error peaks, from the default adaptive step
    against fixed steps extrapolated to dt -> 0 (benchmarks/phasefield_tolerance.py measures
    the whole curve)."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_solver

    solver, c0 = build_solver(load_case(CASES / PFHUB, PFHUB_SMALL))
    t_end = 13.0
    fixed = [solver.total_free_energy(solver.rollout(c0, round(t_end / dt), round(t_end / dt),
                                                     dt=dt)[-1])
             for dt in (0.01, 0.005)]
    reference = 2 * fixed[1] - fixed[0]
    adaptive = solver.run(c0, t_end).free_energy[-1]
    assert abs(fixed[1] - reference) <= 5e-3 * reference  # 0.29 %: dt = 0.005 is near already
    assert abs(adaptive / reference - 1) < 1e-2  # 0.92 % (1.75 % at the old 1e-4)


def test_a_case_run_snapshot_by_snapshot_takes_the_steps_of_one_call(tmp_path):
    """The case runner calls run() once per snapshot: the error was relative to max|c| at each
    snapshot, which grows as the phases separate, so the steps loosened (PFHub 1 to t = 50:
    5578 steps and 0.938 % against 6333 and 0.880 % in one call)."""
    import json

    from physml.cases.registry import load_case, run_case
    from physml.cases.thermomigration_build import build_solver

    case = load_case(CASES / PFHUB, ["variant=cpu", "grid.shape=[32, 32]",
                                     "grid.length=[64.0, 64.0]", "time.end=20.0",
                                     "time.saves=11", "output.figures=false"])
    solver, c0 = build_solver(case)
    one = solver.run(c0, case.time.end, save_times=case.time.save_times()[1:])
    folder, _ = run_case(case, tmp_path)
    history = json.loads((folder / "metrics.json").read_text())["history"]
    assert [record["step"] for record in history] == one.steps  # before: 309, not 312, by t = 6
    with pytest.raises(ValueError, match=r"error_scale=-1.0 must be a number >= 0"):
        solver.run(c0, 1.0, error_scale=-1.0)


def test_a_heat_conducting_run_with_a_temperature_dependent_mobility_resumes_bitwise(tmp_path):
    """The stabilisation's mobility bound reads the temperature at the start of each
    segment, in a fresh run as in a resumed one."""
    import xarray as xr

    from physml.cases.registry import run_case, validate_case

    def case(end, saves):
        return validate_case({
            "kind": "thermomigration", "name": "heat_resume",
            "grid": {"shape": [48], "length": [4.8e-5], "bc": ["no_flux"]},
            "temperature": {"kind": "heat", "mean": 1000.0, "gradient": 1.0e6,
                            "thermal_diffusivity": 1.0e-11},
            "free_energy": {"kind": "double_well", "barrier": 2078.6, "c_alpha": 0.1,
                            "c_beta": 0.9, "diffusivity": 1.7e-7, "activation_energy": 1.0e5},
            "interface_width": 1.5e-6, "heat_of_transport": -23280.0,
            "initial": {"kind": "expression",
                        "expression": "0.5 + 0.4*tanh((x - 2.4e-5)/1.5e-6)"},
            "time": {"end": end, "saves": saves}, "output": {"figures": False}}, "test")

    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()
    full = case(40.0, 5)
    run_case(full, whole)
    run_case(case(20.0, 3), part)  # stops at the third snapshot
    (part / "config.yaml").write_text(full.to_yaml())
    run_case(full, part, resume=True)
    with xr.open_dataset(whole / "trajectory.h5", engine="h5netcdf") as a, \
            xr.open_dataset(part / "trajectory.h5", engine="h5netcdf") as b:
        np.testing.assert_array_equal(a["c"].values, b["c"].values)


def test_a_precipitate_on_a_periodic_seam_wraps_round():
    grid = Grid((32, 32), (0.0, 0.0), (1.0, 1.0))
    bc = BoundaryConditions(((BC("neumann"), BC("neumann")), (BC("periodic"), BC("periodic"))))
    centred = precipitate_field(grid, 0.1, 0.9, [(0.5, 0.5)], [0.2], 0.02, bc)
    seam = precipitate_field(grid, 0.1, 0.9, [(0.5, 0.0)], [0.2], 0.02, bc)
    np.testing.assert_allclose(seam.sum(), centred.sum(), rtol=1e-12)  # the whole disc
    np.testing.assert_allclose(seam, np.roll(centred, 16, axis=1), atol=1e-12)
    cut = precipitate_field(grid, 0.1, 0.9, [(0.5, 0.0)], [0.2], 0.02)  # no periodic axis
    assert (cut - 0.1).sum() < 0.6 * (centred - 0.1).sum()  # half a disc


def test_a_dilute_step_that_would_make_c_negative_is_retried_smaller():
    """Near a steep zero-flux profile (c about 1e-10 at the cold end) an accepted step left
    c < 0, after which every step was NaN at any tolerance."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_solver

    case = load_case(CASES / "thermomigration_fe_c.yaml",
                     ["grid.shape=[20]", "heat_of_transport=-1e6"])
    solver, c0 = build_solver(case)
    run = solver.run(c0, 3e4)
    assert run.rejected > 0 and min(state.min() for state in run.states) > 0
    assert run.mass[-1] == pytest.approx(run.mass[0], rel=1e-12)


def test_a_blow_up_names_the_run_s_step_and_the_checkpoint_kept(tmp_path, monkeypatch):
    """A run integrates snapshot by snapshot: a failure in a later segment counted its steps
    from that segment's start and named a state no file holds. The stopped run keeps a
    ``metrics.json`` of the snapshots so far, as the other kinds' stopped runs do."""
    import json

    from physml.cases.registry import load_case, run_case
    from physml.solvers.thermomigration import ThermomigrationSolver

    real, calls = ThermomigrationSolver.run, []

    def failing_second_segment(self, c0, t_end, **kwargs):
        calls.append(t_end)
        if len(calls) == 2:
            raise BlowUpError(step=3, t=0.5 * (kwargs["t0"] + t_end), field="c",
                              last_good_step=2, last_good_state=c0)
        return real(self, c0, t_end, **kwargs)

    monkeypatch.setattr(ThermomigrationSolver, "run", failing_second_segment)
    case = load_case(CASES / "thermomigration_fe_c.yaml",
                     ["grid.shape=[20]", "time.saves=4", "output.figures=false"])
    with pytest.raises(BlowUpError) as caught:
        run_case(case, tmp_path)
    done = int(np.load(tmp_path / "checkpoint.npz")["steps"][-1])
    assert done > 3 and caught.value.step == done + 3
    assert f"at step {done + 3} " in str(caught.value)
    assert f"the checkpoint at t={calls[0]:.6g} s (step {done}) is kept" in str(caught.value)
    assert "last finite state kept" not in str(caught.value)
    metrics = json.loads((tmp_path / "metrics.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    summary = metrics["summary"]
    assert summary["passed"] is False and summary["stopped"] == str(caught.value)
    assert summary["stopped_step"] == done + 3
    assert summary["checkpoint_step"] == summary["steps"] == done
    assert [(e["step"], e["t"]) for e in metrics["history"]] == [(0, 0.0), (done, calls[0])]


FE_C_SAVES = ["grid.shape=[64]", "time.saves=6", "output.figures=false"]


def test_a_checkpoint_save_writes_the_new_snapshot_not_the_run_so_far(tmp_path, monkeypatch):
    """Each save rewrote every snapshot so far: the bytes a save wrote grew with the run,
    the bytes over a run with the square of its snapshots."""
    from physml.cases import thermomigration
    from physml.cases.registry import load_case, run_case

    real, written = thermomigration.atomic_write, [0]

    def counting(path, write):
        real(path, write)
        written[-1] += path.stat().st_size
        if path.name == thermomigration.CHECKPOINT:  # the index: a save's last file
            written.append(0)

    monkeypatch.setattr(thermomigration, "atomic_write", counting)
    run_case(load_case(CASES / "thermomigration_fe_c.yaml", FE_C_SAVES), tmp_path)
    per_save = written[:-1]
    assert len(per_save) == 5
    assert per_save[-1] - per_save[1] < 64 * 8  # the whole run: 3 snapshots more


@pytest.mark.parametrize("layout", ["snapshot_files", "single_file"])
def test_a_run_stopped_while_saving_resumes_bitwise(tmp_path, monkeypatch, layout):
    """Stopped after a save's snapshot and before its index, the checkpoint holds the
    snapshots before it; --resume computes the rest as the uninterrupted run does, also
    from a checkpoint of the single-file layout (every snapshot in ``checkpoint.npz``)."""
    import shutil

    import xarray as xr

    from physml.cases import thermomigration
    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / "thermomigration_fe_c.yaml", FE_C_SAVES)
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()
    run_case(case, whole)
    real, indexes = thermomigration.atomic_write, []

    def stopping(path, write):
        if path.name == thermomigration.CHECKPOINT:
            indexes.append(path)
            if len(indexes) == 3:
                raise KeyboardInterrupt
        return real(path, write)

    monkeypatch.setattr(thermomigration, "atomic_write", stopping)
    with pytest.raises(KeyboardInterrupt):
        run_case(case, part)
    monkeypatch.undo()
    if layout == "single_file":
        index = dict(np.load(part / thermomigration.CHECKPOINT))
        states = [np.load(part / thermomigration.STATES / f"{k:06d}.npy")
                  for k in range(len(index["times"]))]
        np.savez(part / thermomigration.CHECKPOINT, states=np.stack(states), **index)
        shutil.rmtree(part / thermomigration.STATES)
    steps = []
    run_case(case, part, resume=True, on_step=lambda record: steps.append(record["step"]))
    assert steps == [3, 4, 5]  # snapshots 0-2 were kept
    with xr.open_dataset(whole / "trajectory.h5", engine="h5netcdf") as a, \
            xr.open_dataset(part / "trajectory.h5", engine="h5netcdf") as b:
        np.testing.assert_array_equal(a["c"].values, b["c"].values)


def test_a_rollout_holds_the_temperature_at_t0_after_a_run():
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_solver

    case = load_case(CASES / "thermomigration_fe_c.yaml", ["variant=heat", "grid.shape=[20]"])
    fresh, c0 = build_solver(case)
    used, _ = build_solver(case)
    used.run(c0, 1e4)  # the evolving temperature has moved on
    np.testing.assert_array_equal(used.rollout(c0, 5, dt=1.0), fresh.rollout(c0, 5, dt=1.0))


def test_a_second_run_on_a_heat_conducting_solver_repeats_the_first():
    """The heat steps are fixed in advance: asked for an earlier time, the temperature marches
    again from T0 (it refused: 'temperature asked at t=0.02 s, before the last heat step')."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_solver

    case = load_case(CASES / "thermomigration_fe_c.yaml", ["variant=heat", "grid.shape=[20]"])
    solver, c0 = build_solver(case)
    first = solver.run(c0, 1e4)
    solver.rollout(c0, 3, dt=1.0)
    second = solver.run(c0, 1e4)
    np.testing.assert_array_equal(second.states[-1], first.states[-1])
    assert second.times == first.times


def test_a_run_goes_on_to_t_end_after_the_last_save_time():
    """save_times ending before t_end stopped the run there without a word."""
    n = 16
    grid = Grid((n, n), (0.0, 0.0), (n * CELL, n * CELL))
    energy = DoubleWell(barrier=2000.0, c_alpha=0.1, c_beta=0.9, diffusivity=1e-12)
    solver = ThermomigrationSolver(grid, energy, np.full((n, n), T_REF),
                                   kappa=energy.gradient_coefficient(2 * CELL), tolerance=LOOSE)
    c0 = 0.5 + 0.05 * np.random.default_rng(0).standard_normal((n, n))
    tau = solver.units.time
    run = solver.run(c0, 20 * tau, save_times=np.array([2 * tau, 5 * tau]))
    np.testing.assert_allclose(run.times, [0.0, 2 * tau, 5 * tau, 20 * tau], rtol=1e-12)
    assert sum(run.dt) == pytest.approx(20 * tau, rel=1e-12)
    # times before 0: the end's slack was relative to t_end's sign (refused as not within
    # (t0, t_end]); an empty save_times raised IndexError
    before = solver.run(c0, -18 * tau, t0=-20 * tau)
    np.testing.assert_allclose(before.times, [-20 * tau, -18 * tau], rtol=1e-12)
    with pytest.raises(ValueError, match=r"save_times=\[\]: give times in"):
        solver.run(c0, 20 * tau, save_times=[])


# ------------------------------------------------------------------ particle identity, tracking


def two_precipitate_tracking(states):
    """``track`` and ``summarise`` of the two-precipitate case (192 x 96 cells of 1 um, no flux
    along x, periodic along y) over synthetic ``states``, as if run at 0 .. 3.5e4 s."""
    import types

    from physml.cases.registry import load_case
    from physml.cases.thermomigration_analysis import summarise, track
    from physml.cases.thermomigration_build import build_free_energy, build_grid
    from physml.solvers.thermomigration_trajectory import Trajectory

    case = load_case(CASES / "thermomigration_two_precipitates.yaml")
    grid, bc = build_grid(case)
    solver = types.SimpleNamespace(free_energy=build_free_energy(case), grid=grid, bc=bc)
    n = len(states)
    run = Trajectory(times=list(np.linspace(0.0, 3.5e4, n)), states=list(states), mass=[1.0] * n,
                     free_energy=[-float(k) for k in range(n)], steps=list(range(n)))
    records = track(case, solver, run)
    return records, summarise(case, solver, run, records, None), grid, bc


def test_particle_ids_survive_a_size_crossing_and_the_volume_ratio_follows_them():
    """Cold particle shrinks 20 -> 12 um, hot one grows 12 -> 20 um: the size order swaps at
    mid-run, the ids do not, and the ratio is the hot particle's own (about (20/12)^2; ranked by
    size it read about 1: the cold particle's final volume over the hot one's initial)."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_grid

    grid, bc = build_grid(load_case(CASES / "thermomigration_two_precipitates.yaml"))
    states = [precipitate_field(grid, 0.1, 0.9, [((60 + 2 * k) * CELL, 48 * CELL),
                                                 ((140 + 2 * k) * CELL, 48 * CELL)],
                                [(20 - 8 * k / 7) * CELL, (12 + 8 * k / 7) * CELL], 1.5 * CELL,
                                bc) for k in range(8)]
    records, summary, grid, bc = two_precipitate_tracking(states)
    hot = [next(p for p in r["particles"] if p["centroid"][0] > 100 * CELL) for r in records]
    cold = [next(p for p in r["particles"] if p["centroid"][0] < 100 * CELL) for r in records]
    assert {p["id"] for p in hot} == {1} and {p["id"] for p in cold} == {0}
    assert records[-1]["particles"][0]["id"] == 1  # largest first: the order did swap
    found = [track_particles(c, grid, bc, 0.1, 0.9) for c in (states[0], states[-1])]
    hot_volumes = [max(f, key=lambda p: p.centroid[0]).volume for f in found]
    own = hot_volumes[1] / hot_volumes[0]
    np.testing.assert_allclose(summary["smaller_volume_ratio"], own, rtol=1e-12)
    assert 2.5 < summary["smaller_volume_ratio"] < 2.9


def test_particle_ids_follow_a_particle_across_a_periodic_seam():
    """A particle crossing the periodic seam at y = 0 keeps its id: its centroid jumps from
    (20, 62) to (20, 1) cells, 3 apart by the minimum image but 61 measured straight, farther
    than the other particle's centroid (44, 40), 46 away."""
    from physml.solvers.precipitates import particle_ids

    grid = Grid((64, 64), (0.0, 0.0), (64 * CELL, 64 * CELL))
    bc = noflux_x_periodic_y()
    ids = particle_ids([
        track_particles(precipitate_field(grid, 0.1, 0.9, [(20 * CELL, y * CELL),
                                                           (44 * CELL, 40 * CELL)],
                                          [6 * CELL, 5 * CELL], 1.2 * CELL, bc), grid, bc, 0.1, 0.9)
        for y in (59, 62, 65, 68)], grid, bc)
    assert ids == [[0, 1]] * 4
    other = Particle((44.0, 40.0), 5.0, 78.0)
    straight = particle_ids([[Particle((20.0, 62.0), 6.0, 113.0), other],
                             [Particle((20.0, 1.0), 6.0, 113.0), other]],
                            grid=Grid((64, 64), (0.0, 0.0), (64.0, 64.0)), bc=neumann(2))
    assert straight == [[0, 1], [2, 1]]  # without the seam the crossing one is a new particle


def test_particle_ids_are_new_for_a_split_s_farther_piece_and_never_reused():
    from physml.solvers.precipitates import particle_ids

    grid, bc = Grid((100, 100), (0.0, 0.0), (100.0, 100.0)), neumann(2)

    def at(*xs):
        return [Particle((x, 50.0), 5.0, 80.0) for x in xs]

    ids = particle_ids([at(20, 60), at(21, 52, 70), at(21, 53), at(21, 53, 90), at(21), at(30)],
                       grid, bc)
    # 60 splits (52 nearer: keeps id 1; 70 new: 2); 70 vanishes; 90 appears (3, not 2);
    # 53 and 90 vanish; 21 -> 30 are each other's nearest, so the id holds
    assert ids == [[0, 1], [0, 1, 2], [0, 1], [0, 1, 3], [0], [0]]


def test_centre_of_mass_is_the_precipitates_not_the_matrix_s():
    """Two equal particles at x = 60 and 140 um in a matrix whose composition rises from 0.079
    to 0.136 along x (the zero-flux profile): the matrix's phase-fraction weight put the centre
    of mass 6.9 um to the hot side; the precipitates' is 100 um, but for their diffuse rims'
    share of matrix (0.16 um)."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_grid

    grid, bc = build_grid(load_case(CASES / "thermomigration_two_precipitates.yaml"))
    x = grid.mesh()[0]
    centres, radii = [(60 * CELL, 48 * CELL), (140 * CELL, 48 * CELL)], [16 * CELL] * 2
    uniform = precipitate_field(grid, 0.1, 0.9, centres, radii, 1.5 * CELL, bc)
    sloped = precipitate_field(grid, 0.079 + 0.057 * x / grid.upper[0], 0.9, centres, radii,
                               1.5 * CELL, bc)
    phi = np.clip((sloped - 0.1) / 0.8, 0, 1)
    assert np.sum(phi * x) / np.sum(phi) - 100 * CELL > 5 * CELL  # what the matrix did
    records, summary, _, _ = two_precipitate_tracking([uniform, sloped])
    np.testing.assert_allclose(records[0]["phase_centre_of_mass"], 100 * CELL, rtol=1e-12)
    assert abs(summary["centre_of_mass_shift"]) < 0.3 * CELL


def test_a_run_whose_precipitates_all_dissolve_reports_no_centre_of_mass():
    """The precipitates' centre of mass of no particle is null in tracked.json and the
    summary, and the headline says so (a NaN was written to metrics.json)."""
    from physml.cases.thermomigration import headline
    from physml.cases.thermomigration_analysis import _precipitate_centre_of_mass

    assert _precipitate_centre_of_mass([], 0) is None
    line = headline({"mass_drift": 1e-16, "centre_of_mass_shift": None,
                     "units": {"centre_of_mass_shift": "m"}, "steps": 10, "wall_s": 1.0})
    assert "no precipitate left to locate" in line and "nan" not in line


def test_particle_ids_do_not_pass_to_a_particle_appearing_far_from_a_dissolved_one():
    """A particle that dissolves while another appears 0.8 of the domain away: the two are each
    other's nearest, but farther apart than their radii plus two cells, so the new one gets a
    new id."""
    from physml.solvers.precipitates import particle_ids

    grid = Grid((100, 100), (0.0, 0.0), (1.0, 1.0))
    ids = particle_ids([[Particle((0.1, 0.5), 0.05, 0.008)], [Particle((0.9, 0.5), 0.05, 0.008)]],
                       grid, neumann(2))
    assert ids == [[0], [1]]


def test_smaller_volume_ratio_is_zero_when_the_small_particle_dissolves_and_another_appears():
    """Large particle at x = 60 cells (R 20) stays; the small one at x = 170 (R 8) dissolves
    while an equal one appears at x = 120, 50 cells off (nearer it than the large one): the
    small one's id is gone, so its volume ratio is 0."""
    from physml.cases.registry import load_case
    from physml.cases.thermomigration_build import build_grid

    grid, bc = build_grid(load_case(CASES / "thermomigration_two_precipitates.yaml"))
    states = [precipitate_field(grid, 0.1, 0.9, [(60 * CELL, 48 * CELL), (x * CELL, 48 * CELL)],
                                [20 * CELL, 8 * CELL], 1.5 * CELL, bc) for x in (170, 120)]
    records, summary, _, _ = two_precipitate_tracking(states)
    assert [p["id"] for p in records[-1]["particles"]] == [0, 2]
    assert summary["smaller_volume_ratio"] == 0.0


@pytest.mark.parametrize(("initial", "final", "said"), [
    (0, 2, "no precipitate to locate at the start"),
    (2, 0, "no precipitate left to locate at the end"),
    (0, 0, "no precipitate to locate at either end")])
def test_the_headline_says_which_end_has_no_precipitate(initial, final, said):
    from physml.cases.thermomigration import headline

    line = headline({"mass_drift": 1e-16, "centre_of_mass_shift": None,
                     "particle_count": {"initial": initial, "final": final},
                     "units": {"centre_of_mass_shift": "m"}, "steps": 10, "wall_s": 1.0})
    assert f", {said}, " in line


@pytest.mark.parametrize(("kind", "recorded", "tracked"), [
    ("precipitates", None, True), ("random_precipitates", None, True),
    ("uniform", None, False), ("expression", None, False),
    ("file", "precipitates", True), ("file", "random_precipitates", True),
    ("file", "expression", False), ("file", None, False)])
def test_particles_are_tracked_for_a_start_from_particles_only(kind, recorded, tracked,
                                                               tmp_path):
    """A ``file`` start counts as the start its file records (a run's ``trajectory.h5``): a
    precipitate run continued keeps its tracks, a spinodal one continued or a file recording
    no start has none."""
    import types

    import xarray as xr

    from physml.cases.registry import load_case
    from physml.cases.thermomigration_analysis import starts_from_particles
    from physml.cases.thermomigration_build import build_free_energy

    case = load_case(CASES / "thermomigration_two_precipitates.yaml")
    path = tmp_path / "trajectory.h5"
    xr.Dataset({"c": (("x", "y"), np.full(case.grid.shape, 0.5))},
               attrs={} if recorded is None else {"initial_kind": recorded}).to_netcdf(
        path, engine="h5netcdf")
    initial = case.initial.model_copy(update={"kind": kind, "path": path})
    restarted = case.model_copy(update={"initial": initial})
    solver = types.SimpleNamespace(free_energy=build_free_energy(case))
    assert starts_from_particles(restarted, solver) is tracked
    solver.free_energy = object()  # not a double well: never
    assert not starts_from_particles(restarted, solver)


def test_a_damaged_snapshot_is_named_by_its_own_file(tmp_path):
    """A snapshot cut short is named, not the intact index beside it."""
    from physml.cases import thermomigration
    from physml.cases.registry import load_case, run_case

    case = load_case(CASES / "thermomigration_fe_c.yaml", FE_C_SAVES)
    run_case(case, tmp_path)
    damaged = tmp_path / thermomigration.STATES / "000002.npy"
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(ValueError) as err:
        run_case(case, tmp_path, resume=True)
    assert str(err.value).startswith(f"--resume: {str(damaged)!r} cannot be read as a snapshot "
                                     "of the checkpoint (")


def test_rollout_takes_save_every_third_and_dt_only_by_keyword():
    """``rollout(c0, 10, 5)`` means save_every=5 in every solver: here it ran ten 5 s steps
    saving all 11 states; without ``dt=`` it is now refused, naming it."""
    from physml.solvers import DiluteSolution

    grid = Grid((16,), (0.0,), (16 * CELL,))
    solver = ThermomigrationSolver(grid, DiluteSolution(diffusivity=1e-12),
                                   np.full(grid.shape, T_REF), heat_of_transport=1e4)
    c0 = 0.02 + 0.001 * np.sin(2 * np.pi * grid.coords(0) / (16 * CELL))
    with pytest.raises(TypeError, match="keyword-only argument: 'dt'"):
        solver.rollout(c0, 10, 5)
    with pytest.raises(TypeError, match="positional argument"):
        solver.step(c0, 1.0)
    assert solver.rollout(c0, 10, 5, dt=1.0).shape == (3, 16)
    np.testing.assert_array_equal(solver.step(c0, dt=1.0), solver.rollout(c0, 1, dt=1.0)[-1])


def test_a_precipitate_start_whose_mole_fraction_leaves_0_1_is_refused_in_si_units_only():
    """Q* = -1e9 J/mol tilts the zero-flux matrix by 9.6 per K: the start spanned c in
    [-224, 224] and the run went on with a mole fraction far outside [0, 1]. The
    non-dimensional double well's c may take any value (wells at -1 and 1, say)."""
    from physml.cases import thermomigration_build as build
    from physml.cases.registry import load_case

    def start(case):
        grid, bc = build.build_grid(case)
        T = build.build_temperature(case, grid)
        return build.initial_state(case, grid, bc, build.build_free_energy(case), T)

    tilted = load_case(CASES / "thermomigration_single_precipitate.yaml",
                       ["grid.shape=[32, 32]", "grid.length=[9.6e-5, 9.6e-5]",
                        "initial.centres=[[4.8e-5, 4.8e-5]]", "initial.radii=[8.0e-6]",
                        "interface_width=6e-6", "heat_of_transport=-1e9"])
    with pytest.raises(ValueError, match=r"initial.kind 'precipitates': c0 spans \[-224, 224\], "
                       r"but in SI units c is a mole fraction, 0 <= c <= 1; .* changes by "
                       r"-heat_of_transport/\(f'' T0\) = 9.62 per K .* lower "
                       r"\|heat_of_transport\|, temperature.gradient or grid.length"):
        start(tilted)
    symmetric = load_case(CASES / "thermomigration_spinodal_pfhub1.yaml", [
        "grid.shape=[32, 32]", "grid.length=[64.0, 64.0]", "free_energy.c_alpha=-1.0",
        "free_energy.c_beta=1.0", "initial.kind=precipitates", "initial.centres=[[32.0, 32.0]]",
        "initial.radii=[10.0]"])
    c0 = start(symmetric)
    assert c0.min() < -0.9 and c0.max() > 0.9


SMALL_PRECIPITATE = ["variant=small", "grid.shape=[32, 32]", "interface_width=6e-6"]


@pytest.mark.parametrize(("override", "key", "value"), [
    ("free_energy.c_alpha=-0.1", "free_energy.c_alpha", "-0.1"),
    ("free_energy.c_beta=1.2", "free_energy.c_beta", "1.2"),
    ("initial={kind: uniform, value: 1.5}", "initial.value", "1.5"),
])
def test_a_double_well_composition_outside_0_1_is_refused_in_si_units(override, key, value):
    """A start from precipitates was refused outside [0, 1] in SI units, the wells and a
    uniform start were not: the run went on with a mole fraction that means nothing."""
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=re.escape(
            f"{key}={value}: in SI units a composition is a mole fraction, 0 <= {key} <= 1")):
        load_case(CASES / "thermomigration_single_precipitate.yaml",
                  [*SMALL_PRECIPITATE, override])


def test_a_file_start_outside_0_1_is_refused_in_si_units_only(tmp_path):
    """The file's values are read where the case is checked; the non-dimensional double
    well's c may take any value, as before."""
    import xarray as xr

    from physml.cases.registry import load_case

    path = tmp_path / "c0.h5"
    c0 = np.linspace(-0.2, 1.3, 32 * 32).reshape(32, 32)
    xr.Dataset({"c": (("x", "y"), c0)}).to_netcdf(path, engine="h5netcdf")
    start = f"initial={{kind: file, path: {path}}}"
    with pytest.raises(ValueError, match=re.escape(
            f"initial.path {str(path)!r}: c spans [-0.2, 1.3], but in SI units c is a mole "
            "fraction, 0 <= c <= 1")):
        load_case(CASES / "thermomigration_single_precipitate.yaml", [*SMALL_PRECIPITATE, start])
    case = load_case(CASES / "thermomigration_spinodal_pfhub1.yaml",
                     ["grid.shape=[32, 32]", "grid.length=[64.0, 64.0]", start])
    assert case.initial.kind == "file"


def small_heated_bar(tolerance=LOOSE, kappa_factor=1.0):
    """A 1D two-phase bar whose temperature a heat solver evolves from uniform to a gradient,
    and a composition across both wells."""
    from physml.solvers.heat import HeatSolver
    from physml.solvers.thermomigration_temperature import HeatConductionTemperature

    grid = Grid((32,), (0.0,), (32 * CELL,))
    bc = BoundaryConditions(((BC("dirichlet", T_REF - 10.0), BC("dirichlet", T_REF + 10.0)),))
    heat = HeatSolver(grid, bc, nu=1e-9, dt=None, scheme="imex", theta=1.0)
    temperature = HeatConductionTemperature(heat, np.full(grid.shape, T_REF), first_step=0.01)
    model = two_phase_model()
    solver = ThermomigrationSolver(grid, model, temperature,
                                   kappa=kappa_factor * model.gradient_coefficient(1.2 * CELL),
                                   heat_of_transport=-2.8 * GAS_CONSTANT * T_REF, bc=neumann(1),
                                   tolerance=tolerance)
    return solver, 0.5 + 0.35 * np.cos(np.linspace(0.0, 3.0, 32))


def test_what_a_thermomigration_solver_is_built_from_cannot_be_set():
    """grid, bc, dtype, ... were accepted after construction and ignored (the arrays, FFT
    plans and scaled coefficients keep the old ones); the parameters and tolerances may be
    set, are checked, and a new kappa is used as if the solver had been built with it."""
    solver, c0 = small_heated_bar()
    for name in ("grid", "bc", "dtype", "device", "free_energy", "units", "temperature"):
        with pytest.raises(AttributeError, match=re.escape(
                f"ThermomigrationSolver.{name} is fixed when the solver is built")):
            setattr(solver, name, getattr(solver, name))
    solver.run(c0, 1.0)  # with the first kappa
    solver.kappa, solver.tolerance = 3 * solver.kappa, 2 * LOOSE
    built, _ = small_heated_bar(tolerance=2 * LOOSE, kappa_factor=3.0)
    assert built.kappa == solver.kappa
    runs = [s.run(c0, 2.0) for s in (solver, built)]
    np.testing.assert_array_equal(runs[0].states[-1], runs[1].states[-1])
    assert runs[0].dt == runs[1].dt
    solver.kappa = -1.0
    with pytest.raises(ValueError, match=re.escape("kappa=-1.0 must be a finite number >= 0")):
        solver.rollout(c0, 1, dt=0.1)


def test_a_kappa_set_is_used_by_rhs_and_increment_at_once():
    """After solver.kappa was set, rhs() and increment() used the old kappa until the next
    rollout or run (2.3e-3 off), while total_free_energy used the new one. They check and use
    it at once, bitwise as a solver built with it."""
    solver, c0 = small_heated_bar()
    built, _ = small_heated_bar(kappa_factor=3.0)
    solver.kappa = 3 * solver.kappa
    c, c_built = solver.to_warp(c0), built.to_warp(c0)
    np.testing.assert_array_equal(solver.rhs(c, 1.0).numpy(), built.rhs(c_built, 1.0).numpy())
    solver.stabilisation = built.stabilisation = 2.0
    s4 = built._s4(c0)
    np.testing.assert_array_equal(solver.increment(c, 1e-3, s4)[0].numpy(),
                                  built.increment(c_built, 1e-3, s4)[0].numpy())
    assert solver.total_free_energy(c0) == built.total_free_energy(c0)
    solver.kappa = -1.0
    with pytest.raises(ValueError, match=re.escape("kappa=-1.0 must be a finite number >= 0")):
        solver.rhs(c, 1.0)


def test_a_pickled_thermomigration_solver_steps_bitwise_as_the_original():
    """Pickling failed (Warp arrays, FFT plans); the unpickled solver, and a copy, go on from
    the original's temperature (its heat steps marched so far) bitwise as the original."""
    import copy
    import pickle

    solver, c0 = small_heated_bar()
    first = solver.run(c0, 2.0)
    clones = [pickle.loads(pickle.dumps(solver)), copy.copy(solver), copy.deepcopy(solver)]
    go_on = {"t0": 2.0, "dt0": first.dt[-1], "error_scale": float(np.max(np.abs(c0)))}
    runs = [s.run(first.states[-1], 4.0, **go_on) for s in (solver, *clones)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.states[-1], runs[0].states[-1])
        assert (run.dt, run.rejected) == (runs[0].dt, runs[0].rejected)
    np.testing.assert_array_equal(clones[0].rollout(c0, 5, dt=0.1), solver.rollout(c0, 5, dt=0.1))


def test_a_kappa_changed_in_place_is_checked_and_used():
    """A 0-d array set as kappa and then changed in place skipped the settings check (the
    check compared the same object with itself): a rollout ran with kappa = -1."""
    solver, c0 = small_heated_bar()
    built, _ = small_heated_bar(kappa_factor=3.0)
    kappa = np.array(float(solver.kappa))
    solver.kappa = kappa
    solver.rollout(c0, 1, 1, dt=1e-3)
    kappa *= 3.0
    c, c_built = solver.to_warp(c0), built.to_warp(c0)
    np.testing.assert_array_equal(solver.rhs(c, 1.0).numpy(), built.rhs(c_built, 1.0).numpy())
    kappa[...] = -1.0
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        solver.rollout(c0, 1, 1, dt=1e-3)


def test_a_gpu_the_torch_backend_cannot_reach_is_refused_when_built():
    """A CPU build of PyTorch (the README's install) failed inside PyTorch at the first step of
    a solver on CUDA."""
    import torch

    from physml.solvers.spectral_solve import SpectralSolve

    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=rf"device 'cuda:{count}': the torch FFT backend needs "
                                         rf"a PyTorch that sees this GPU.*sees {count}; install"):
        SpectralSolve((8, 8), (1.0, 1.0), (True, False), device=f"cuda:{count}")


def test_a_run_s_wall_s_includes_the_writing_of_its_results(tmp_path, monkeypatch):
    """wall_s (metrics.json, the headline) is the whole run's, as the README says: it left out
    the writing of the trajectory and figures, which can outlast the integration."""
    import json
    import time

    from physml.cases import thermomigration_results
    from physml.cases.registry import load_case, run_case

    real, slow = thermomigration_results.write_dataset, 0.5

    def slow_write(*args, **kwargs):
        time.sleep(slow)
        return real(*args, **kwargs)

    monkeypatch.setattr(thermomigration_results, "write_dataset", slow_write)
    folder, summary = run_case(load_case(CASES / "thermomigration_fe_c.yaml", FE_C_SAVES),
                               tmp_path)
    integrated = float(np.load(folder / "checkpoint.npz")["wall_s"])  # to the last snapshot
    recorded = json.loads((folder / "metrics.json").read_text())["summary"]["wall_s"]
    assert recorded == summary["wall_s"] >= integrated + slow
