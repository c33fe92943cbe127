"""Observed orders of convergence against exact solutions (least-squares slopes)."""

import numpy as np
import pytest

from conftest import observed_order
from physml.solvers import (
    BC,
    AdvectionSolver1D,
    AdvectionSolver2D,
    AllenCahnSolver1D,
    AllenCahnSolver2D,
    BoundaryConditions,
    BurgersSolver1D,
    BurgersSolver2D,
    DiffusionReactionSolver1D,
    DiffusionSorptionSolver1D,
    Grid,
    HeatSolver,
    HeatSolver1D,
    HeatSolver2D,
    dirichlet,
    neumann,
)
from physml.solvers.exact import (
    advected_sine,
    allen_cahn_front,
    burgers_cole_hopf,
    fisher_kpp_wave,
    heat_fourier_mode,
)
from physml.solvers.timestepping import SCHEMES


def run_to(solver, u0, t_end, safety=0.5):
    """Roll out to exactly t_end with the largest step below safety * stable_dt."""
    n = int(np.ceil(t_end / (safety * solver.stable_dt(u0))))
    return solver.with_dt(t_end / n).rollout(u0, n, save_every=n)[-1]


def rel_l2(u, exact):
    return float(np.linalg.norm(u - exact) / np.linalg.norm(exact))


def test_heat_1d_periodic_space_order_two():
    hs, errors = [], []
    for nx in (16, 32, 64, 128):
        grid = Grid((nx,), (0.0,), (2 * np.pi,))
        (x,) = grid.mesh()
        solver = HeatSolver1D(grid, nu=0.3, dt=None, scheme="rk4")
        u = run_to(solver, np.sin(2 * x), 0.5)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, heat_fourier_mode((x,), 0.3, 0.5, (2,))))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.1)


def test_heat_2d_dirichlet_space_order_two():
    hs, errors = [], []
    for n in (8, 16, 32):
        grid = Grid((n, n), (0.0, 0.0), (np.pi, np.pi))
        x, y = grid.mesh()
        solver = HeatSolver2D(grid, dirichlet(2), nu=0.5, dt=None, scheme="rk4")
        u = run_to(solver, np.sin(x) * np.sin(y), 0.4)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, heat_fourier_mode((x, y), 0.5, 0.4, (1, 1))))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("scheme, expected",
                         [("euler", 1), ("heun", 2), ("ssp_rk3", 3), ("rk4", 4)])
def test_explicit_time_orders(scheme, expected):
    """Against the exact semi-discrete solution, only the time error remains."""
    grid = Grid((12,), (0.0,), (2 * np.pi,))
    (x,) = grid.mesh()
    exact = heat_fourier_mode((x,), 1.0, 1.0, (1,), dx=grid.dx)
    dts, errors = [], []
    for n in (32, 64, 128, 256):
        solver = HeatSolver1D(grid, nu=1.0, dt=1.0 / n, scheme=scheme)
        dts.append(1.0 / n)
        errors.append(rel_l2(solver.rollout(np.sin(x), n, save_every=n)[-1], exact))
    order = observed_order(dts, errors)
    assert solver.time_order == expected
    if expected == 4:
        assert order >= 3.8
    else:
        assert order == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("scheme, expected", [("heun", 2), ("ssp_rk3", 3), ("rk4", 4)])
def test_explicit_time_orders_on_nonlinear_burgers(scheme, expected):
    """The nonlinear MUSCL stages (no limiter, so the right-hand side is smooth), where a
    tableau must meet the order conditions that a linear problem does not test; successive
    differences of the final states, halving dt."""
    grid = Grid((64,), (0.0,), (1.0,))
    (x,) = grid.mesh()
    u0 = 0.5 + 0.4 * np.sin(2 * np.pi * x)
    dts, states = [], []
    for n in (50, 100, 200, 400):
        solver = BurgersSolver1D(grid, nu=1e-3, dt=0.2 / n, limiter="none", scheme=scheme)
        dts.append(0.2 / n)
        states.append(solver.rollout(u0, n, save_every=n)[-1])
    diffs = [np.max(np.abs(a - b)) for a, b in zip(states[:-1], states[1:])]
    order = observed_order(dts[:-1], diffs)
    assert solver.time_order == expected
    if expected == 4:
        assert order >= 3.8
    else:
        assert order == pytest.approx(expected, abs=0.1)


def test_crank_nicolson_imex_is_second_order_and_stable_beyond_explicit_limit():
    grid = Grid((128,), (0.0,), (2 * np.pi,))
    (x,) = grid.mesh()
    exact = heat_fourier_mode((x,), 1.0, 2.0, (1,), dx=grid.dx)
    explicit_limit = HeatSolver1D(grid, nu=1.0, dt=None).stable_dt()
    dts, errors = [], []
    for n in (10, 20, 40, 80):
        solver = HeatSolver1D(grid, nu=1.0, dt=2.0 / n, scheme="imex")
        assert solver.dt > 10 * explicit_limit
        dts.append(2.0 / n)
        errors.append(rel_l2(solver.rollout(np.sin(x), n, save_every=n)[-1], exact))
    assert solver.time_order == 2
    assert observed_order(dts, errors) == pytest.approx(2.0, abs=0.1)


def test_advection_central_space_order_two_2d():
    hs, errors = [], []
    for n in (16, 32, 64):
        grid = Grid((n, n), (0.0, 0.0), (2 * np.pi, 2 * np.pi))
        x, y = grid.mesh()
        beta = (1.0, 0.5)
        solver = AdvectionSolver2D(grid, beta=beta, dt=None, space="central", scheme="rk4")
        u = run_to(solver, np.sin(x + y), 1.0, safety=0.25)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, advected_sine((x, y), beta, 1.0, (1, 1))))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.1)


def test_advection_upwind_tvd_converges_and_does_not_oscillate():
    hs, errors = [], []
    for nx in (64, 128, 256, 512):
        grid = Grid((nx,), (0.0,), (1.0,))
        (x,) = grid.mesh()
        solver = AdvectionSolver1D(grid, beta=1.0, dt=None, space="upwind")
        u = run_to(solver, np.sin(2 * np.pi * x), 1.0, safety=0.8)
        hs.append(grid.dx[0])
        errors.append(np.abs(u - np.sin(2 * np.pi * x)).mean())
    assert observed_order(hs, errors) >= 1.7
    grid = Grid((200,), (0.0,), (1.0,))
    (x,) = grid.mesh()
    square = np.where(np.abs(x - 0.5) < 0.2, 1.0, 0.0)
    u = run_to(AdvectionSolver1D(grid, beta=1.0, dt=None), square, 0.5, safety=0.9)
    assert u.min() >= -1e-12 and u.max() <= 1 + 1e-12  # TVD: no new extrema


def test_burgers_cole_hopf_error_below_1e3_and_second_order():
    """nu = 0.01/pi, x in [-1, 1], t = 1/pi (the steep front of Raissi et al.)."""
    nu, t_end = 0.01 / np.pi, 1 / np.pi
    hs, errors = [], []
    for nx in (256, 512, 1024):
        grid = Grid((nx,), (-1.0,), (1.0,))
        (x,) = grid.mesh()
        solver = BurgersSolver1D(grid, dirichlet(1), nu=nu, dt=None)
        u = run_to(solver, -np.sin(np.pi * x), t_end, safety=0.8)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, burgers_cole_hopf(x, t_end, nu)))
    assert errors[-1] < 1e-3
    assert observed_order(hs, errors) >= 1.8


def test_allen_cahn_travelling_front_order_two():
    nu, rho, t_end = 1.0, 1.0, 2.0
    bc = BoundaryConditions(((BC("dirichlet", 0.0), BC("dirichlet", 1.0)),))
    hs, errors = [], []
    for nx in (60, 120, 240):
        grid = Grid((nx,), (-30.0,), (30.0,))
        (x,) = grid.mesh()
        solver = AllenCahnSolver1D(grid, bc, nu=nu, rho=rho, dt=None)
        u = run_to(solver, allen_cahn_front(x, 0.0, nu, rho, x0=5.0), t_end)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, allen_cahn_front(x, t_end, nu, rho, x0=5.0)))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.15)


def test_diffusion_reaction_fisher_wave_order_two():
    nu, rho, t_end = 1.0, 1.0, 2.0
    bc = BoundaryConditions(((BC("dirichlet", 1.0), BC("dirichlet", 0.0)),))
    hs, errors = [], []
    for nx in (60, 120, 240):
        grid = Grid((nx,), (-40.0,), (40.0,))
        (x,) = grid.mesh()
        solver = DiffusionReactionSolver1D(grid, bc, nu=nu, rho=rho, dt=None)
        u = run_to(solver, fisher_kpp_wave(x, 0.0, nu, rho, x0=-10.0), t_end)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, fisher_kpp_wave(x, t_end, nu, rho, x0=-10.0)))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.15)


def test_diffusion_sorption_self_convergence():
    """No closed form: successive refinements converge at the order of the boundary closure."""
    solutions = []
    for nx in (32, 64, 128, 256):
        grid = Grid((nx,), (0.0,), (1.0,))
        (x,) = grid.mesh()
        solver = DiffusionSorptionSolver1D(grid, dt=None)
        u = run_to(solver, 0.1 + 0.05 * np.cos(np.pi * x), 50.0)
        solutions.append(u.reshape(-1, nx // 32).mean(axis=1))  # restrict to 32 cells
    diffs = [np.abs(a - b).max() for a, b in zip(solutions, solutions[1:])]
    assert observed_order([1 / 32, 1 / 64, 1 / 128], diffs) >= 0.9
    assert np.all(solutions[-1] > 0) and np.all(solutions[-1] < 1)


def test_diffusion_sorption_rhs_is_pdebenchs_finite_volume_operator():
    """PDEBench's generator (sim_diff_sorp.py): F_i = D / R(u_i) (u_{i-1} - 2 u_i + u_{i+1})/dx^2
    with R(u) = 1 + (1 - phi)/phi rho_s k_f n_f (u + 1e-6)^(n_f - 1), the ghosts u_{-1} = 1 and
    u_N = D (u_{N-2} - u_{N-1})/dx. Inside, F is D u_xx / R(u) up to the Laplacian's remainder
    dx^2/12 |u''''| D / R(u_i) (u = 0.3 + 0.2 cos 3x: |u''''| <= 16.2)."""
    nx, D, phi, rho_s, k_f, n_f = 32, 5e-4, 0.29, 2880.0, 3.5e-4, 0.874
    grid = Grid((nx,), (0.0,), (1.0,))
    (x,) = grid.mesh()
    solver = DiffusionSorptionSolver1D(grid, dt=None)
    u, dx = 0.3 + 0.2 * np.cos(3 * x), 1.0 / nx
    rhs = solver.rhs(solver.to_warp(u), solver.parameter_arrays()).numpy()
    retardation = 1 + (1 - phi) / phi * rho_s * k_f * n_f * (u + 1e-6) ** (n_f - 1)
    padded = np.concatenate([[1.0], u, [D * (u[-2] - u[-1]) / dx]])
    finite_volume = D / retardation * (padded[:-2] - 2 * u + padded[2:]) / dx**2
    np.testing.assert_allclose(rhs, finite_volume, rtol=1e-12, atol=0)
    pde = D / retardation * (-1.8 * np.cos(3 * x))
    bound = dx**2 / 12 * 16.2 * D / retardation
    assert np.all(np.abs(rhs - pde)[1:-1] <= bound[1:-1])


@pytest.mark.parametrize("nx", [4096, 8192])
def test_diffusion_sorption_runs_at_its_stable_step_on_fine_grids(nx):
    """Below dx = 2 D the outflow row's rate (3 + 2 D/dx)/dx^2 exceeds the interior's 4/dx^2:
    a step at the interior limit blew up at the first step on 4096 cells."""
    grid = Grid((nx,), (0.0,), (1.0,))
    u0 = np.ones(nx)
    solver = DiffusionSorptionSolver1D(grid, dt=None)
    u = solver.with_dt(solver.stable_dt(u0)).rollout(u0, 500, 500)
    assert np.isfinite(u).all() and np.abs(u).max() <= 1.0 + 1e-12


def test_heat_3d_neumann_space_order_two():
    """cos modes satisfy zero-flux boundaries: the 3D path of every kernel."""
    hs, errors = [], []
    for n in (6, 12, 24):
        grid = Grid((n, n, n), (0.0, 0.0, 0.0), (np.pi, np.pi, np.pi))
        x, y, z = grid.mesh()
        solver = HeatSolver(grid, neumann(3), nu=0.2, dt=None)
        u = run_to(solver, np.cos(x) * np.cos(y) * np.cos(z), 0.5)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, np.exp(-0.2 * 3 * 0.5) * np.cos(x) * np.cos(y) * np.cos(z)))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.1)


def test_the_burgers_pinn_reference_is_within_1e4_of_cole_hopf():
    """The bundled case's reference (the Warp solver, interpolated to 256 x 101 points): at 4
    cells per point its own error was 1.05e-3, half the trained network's reported error."""
    from physml.train.bundled import BurgersProblem

    problem = BurgersProblem(0.01 / np.pi, (-1.0, 1.0), (0.0, 1.0), -1.0, np.pi)
    x, t = problem.eval_axes((256, 101))
    exact = np.stack([burgers_cole_hopf(x, s, 0.01 / np.pi) if s > 0 else -np.sin(np.pi * x)
                      for s in t])
    assert rel_l2(problem.reference([x, t]), exact) < 1e-4


def test_burgers_2d_diagonal_cole_hopf_order_two():
    """$u(x, y, t) = w(x + y, 2t)$ with $w$ the 1D Cole–Hopf solution: on $u = v(x + y)$ the
    2D equation $u_t + u(u_x + u_y) = \\nu\\Delta u$ reads $v_t + 2vv' = 2\\nu v''$."""
    nu, t_end = 0.05, 0.25
    hs, errors = [], []
    for n in (16, 32, 64):
        grid = Grid((n, n), (-1.0, -1.0), (1.0, 1.0))
        x, y = grid.mesh()
        solver = BurgersSolver2D(grid, nu=nu, dt=None)
        u = run_to(solver, -np.sin(np.pi * (x + y)), t_end)
        # x_i + y_j takes 2n - 1 values: evaluate the quadrature there only
        sums = 2 * grid.lower[0] + (np.arange(2 * n - 1) + 1.0) * grid.dx[0]
        i, j = np.indices(grid.shape)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, burgers_cole_hopf(sums, 2 * t_end, nu)[i + j]))
    assert errors[-1] < 3e-3
    assert observed_order(hs, errors) >= 1.9


@pytest.mark.parametrize("limiter, order", [("none", 2.0), ("van_leer", 1.7)])
def test_advection_upwind_2d_order(limiter, order):
    """MUSCL + Rusanov on an oblique sine: second order unlimited (Fromm); the van Leer
    limiter clips the extrema, which costs a few tenths of an order at these resolutions."""
    beta = (1.0, 0.5)
    hs, errors = [], []
    for n in (16, 32, 64):
        grid = Grid((n, n), (0.0, 0.0), (2 * np.pi, 2 * np.pi))
        x, y = grid.mesh()
        solver = AdvectionSolver2D(grid, beta=beta, dt=None, space="upwind", limiter=limiter)
        u = run_to(solver, np.sin(x + y), 1.0, safety=0.8)
        hs.append(grid.dx[0])
        errors.append(rel_l2(u, advected_sine((x, y), beta, 1.0, (1, 1))))
    assert observed_order(hs, errors) == pytest.approx(order, abs=0.1)


@pytest.mark.parametrize("axis", [0, 1])
def test_allen_cahn_2d_travelling_front_order_two(axis):
    """The exact front along one axis (Dirichlet 0 and 1 at its ends), constant along the
    other (zero-flux sides): both axes of the 2D kernel, one at a time."""
    nu, rho, t_end = 1.0, 1.0, 2.0
    hs, errors = [], []
    for n in (60, 120, 240):
        shape, lower, upper = [4, 4], [0.0, 0.0], [1.0, 1.0]
        shape[axis], lower[axis], upper[axis] = n, -30.0, 30.0
        grid = Grid(tuple(shape), tuple(lower), tuple(upper))
        sides = [(BC("neumann"), BC("neumann"))] * 2
        sides[axis] = (BC("dirichlet", 0.0), BC("dirichlet", 1.0))
        solver = AllenCahnSolver2D(grid, BoundaryConditions(tuple(sides)), nu=nu, rho=rho, dt=None)
        along = grid.mesh()[axis]
        u = run_to(solver, allen_cahn_front(along, 0.0, nu, rho, x0=5.0), t_end)
        hs.append(grid.dx[axis])
        errors.append(rel_l2(u, allen_cahn_front(along, t_end, nu, rho, x0=5.0)))
    assert observed_order(hs, errors) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("theta, order", [(0.5, 2.0), (1.0, 1.0)])
def test_imex_conjugate_gradient_time_order_2d(theta, order):
    """The 2D implicit step (conjugate gradients, with the Dirichlet boundary value 1/2 on
    the right-hand side) against the exact semi-discrete solution
    $1/2 + e^{-\\lambda_h t}\\sin x \\sin y$, at steps 3.7 to 15 times the explicit limit:
    Crank–Nicolson is second order, backward Euler first."""
    grid = Grid((16, 16), (0.0, 0.0), (np.pi, np.pi))
    x, y = grid.mesh()
    exact = heat_fourier_mode((x, y), 1.0, 1.0, (1, 1), dx=grid.dx)
    explicit_limit = HeatSolver2D(grid, nu=1.0, dt=None).stable_dt()
    dts, errors = [], []
    for n in (5, 10, 20):
        solver = HeatSolver2D(grid, dirichlet(2, 0.5), nu=1.0, dt=1.0 / n, scheme="imex",
                              theta=theta)
        assert solver.dt > 3.5 * explicit_limit
        u = solver.rollout(0.5 + np.sin(x) * np.sin(y), n, save_every=n)[-1]
        dts.append(1.0 / n)
        errors.append(rel_l2(u - 0.5, exact))
    assert solver.time_order == order
    assert observed_order(dts, errors) == pytest.approx(order, abs=0.1)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_each_scheme_is_stable_at_its_stated_limits(name):
    """$|R(z)| \\le 1$ at $z = -$``real_limit`` and $z = i\\,$``imag_limit``, with R the
    scheme's stability polynomial evaluated from its tableau (the step of $u' = \\lambda u$)."""
    scheme = SCHEMES[name]

    def amplification(z: complex) -> complex:
        k = []
        for i in range(scheme.stages):
            k.append(z * (1 + sum(a * kj for a, kj in zip(scheme.a[i], k))))
        return 1 + sum(b * kj for b, kj in zip(scheme.b, k))

    assert abs(amplification(-scheme.real_limit)) <= 1.0
    assert abs(amplification(1j * scheme.imag_limit)) <= 1.0 + 1e-12
    assert abs(amplification(-scheme.real_limit * 1.001)) > 1.0  # the limit is tight


def test_a_float32_implicit_step_is_solved_in_float64():
    """A float32 CG stopped on its recursive residual, which at a step's condition number of
    1e7 drifts far from the true one: backward Euler with dt = 1e3 on 48 x 40 cells returned a
    mean 480 times the one Neumann walls conserve. The implicit solve now runs in float64."""
    grid = Grid((48, 40), (0.0, 0.0), (1.0, 3.0))
    x, y = grid.mesh()
    u0 = np.sin(np.pi * x) * np.sin(np.pi * y / 3)
    states = {dtype: HeatSolver2D(grid, neumann(2), nu=1.0, dt=1e3, scheme="imex", theta=1.0,
                                  dtype=dtype).rollout(u0, 1)[-1].astype(np.float64)
              for dtype in ("float32", "float64")}
    assert states["float32"].mean() == pytest.approx(u0.mean(), rel=1e-6)
    assert np.abs(states["float32"] - states["float64"]).max() < 1e-5


def test_a_float32_implicit_rollout_builds_its_float64_layout_once(monkeypatch):
    """A rollout steps throwaway copies of the solver (its dt read back in float32): each
    built its own float64 layout, 200 for 200 steps."""
    from physml.solvers.grid_layout import GridLayout

    grid = Grid((24, 20), (0.0, 0.0), (1.0, 1.0))
    solver = HeatSolver2D(grid, dirichlet(2, 0.5), nu=1.0, dt=0.01, scheme="imex",
                          dtype="float32")
    built = []
    init = GridLayout.__init__
    monkeypatch.setattr(GridLayout, "__init__",
                        lambda self, *a, **k: (built.append(a[3]), init(self, *a, **k))[1])
    x, y = grid.mesh()
    solver.rollout(np.sin(np.pi * x) * np.sin(np.pi * y), 50)
    solver.rollout(np.stack([np.sin(np.pi * x)] * 2), 20)
    assert len(built) == 1


def muscl_rusanov_burgers_rhs(u, dx, nu, limiter):
    """-sum_d (F_{i+1/2} - F_{i-1/2}) / dx_d + nu sum_d (u_{i-1} - 2 u_i + u_{i+1}) / dx_d^2 on a
    periodic grid: slopes limited from a = u_i - u_{i-1}, b = u_{i+1} - u_i (none: (a + b)/2;
    where ab > 0, else 0: minmod sign(a) min(|a|, |b|), van Leer 2ab/(a + b), MC sign(a)
    min(2|a|, 2|b|, (|a| + |b|)/2)), states u_L = u_i + s_i/2, u_R = u_{i+1} - s_{i+1}/2 and the
    Rusanov flux (f(u_L) + f(u_R))/2 - max(|u_L|, |u_R|) (u_R - u_L)/2 of f = u^2/2."""
    out = np.zeros_like(u)
    for axis, h in enumerate(dx):
        a = u - np.roll(u, 1, axis)
        b = np.roll(u, -1, axis) - u
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = {"none": (a + b) / 2,
                     "minmod": np.sign(a) * np.minimum(abs(a), abs(b)),
                     "van_leer": 2 * a * b / (a + b),
                     "mc": np.sign(a) * np.minimum(np.minimum(2 * abs(a), 2 * abs(b)),
                                                   (abs(a) + abs(b)) / 2)}[limiter]
        if limiter != "none":
            slope = np.where(a * b > 0, slope, 0.0)
        left, right = u + slope / 2, np.roll(u - slope / 2, -1, axis)  # at face i + 1/2
        flux = (left**2 + right**2) / 4 - np.maximum(abs(left), abs(right)) * (right - left) / 2
        out += -(flux - np.roll(flux, 1, axis)) / h + nu * (b - a) / h**2
    return out


@pytest.mark.parametrize("limiter", ["none", "minmod", "van_leer", "mc"])
def test_burgers_muscl_steps_are_those_of_a_numpy_twin(limiter):
    """Three SSP-RK3 steps (Shu-Osher form) of the MUSCL-Rusanov scheme agree with a NumPy
    twin to 1e-14 in 1D (a square wave of 1 and -1/2, a smooth profile, random values: every
    branch of every limiter) and in 2D. A minmod taking the larger slope where it should take
    the smaller is 0.1 off here."""
    rng = np.random.default_rng(0)
    nu, dt, steps = 1e-3, 1e-3, 3
    grid1 = Grid((64,), (0.0,), (1.0,))
    (x,) = grid1.mesh()
    grid2 = Grid((16, 12), (0.0, 0.0), (1.0, 0.75))
    x2, y2 = grid2.mesh()
    cases = [(grid1, BurgersSolver1D, np.where(np.abs(x - 0.5) < 0.25, 1.0, -0.5)),
             (grid1, BurgersSolver1D, np.sin(2 * np.pi * x) + 0.3 * np.cos(6 * np.pi * x)),
             (grid1, BurgersSolver1D, rng.uniform(-1, 1, 64)),
             (grid2, BurgersSolver2D, np.sin(2 * np.pi * x2) * np.cos(2 * np.pi * y2 / 0.75)
              + 0.5 * rng.uniform(-1, 1, grid2.shape))]
    for grid, cls, u0 in cases:
        solver = cls(grid, nu=nu, dt=dt, limiter=limiter, scheme="ssp_rk3")
        u = u0
        for _ in range(steps):
            u1 = u + dt * muscl_rusanov_burgers_rhs(u, grid.dx, nu, limiter)
            u2 = 0.75 * u + 0.25 * (u1 + dt * muscl_rusanov_burgers_rhs(u1, grid.dx, nu, limiter))
            u = u / 3 + 2 / 3 * (u2 + dt * muscl_rusanov_burgers_rhs(u2, grid.dx, nu, limiter))
        np.testing.assert_allclose(solver.rollout(u0, steps)[-1], u, rtol=0, atol=1e-14)


@pytest.mark.parametrize("scheme", ["ssp_rk3", "imex"])
def test_a_linear_state_with_its_slopes_as_neumann_values_is_steady(scheme):
    """u = g . x + c has zero Laplacian and du/dx_d = g_d on every side, so with
    neumann(g_d) there (the value is du/dx_d, low and high side alike) it stays put: the
    reflected ghost cell m of a side is u_src -/+ (2m - 1) dx g, which continues the line.
    The explicit stages and the implicit solve (whose right-hand side carries the boundary
    values) each build these ghost cells; one off by dx g (2m for 2m - 1) moves the boundary
    cells by nu dt g / dx a step."""
    def sides(g):
        return (BC("neumann", g), BC("neumann", g))

    grid1 = Grid((16,), (0.0,), (1.0,))
    (x,) = grid1.mesh()
    grid2 = Grid((12, 10), (0.0, 0.0), (1.0, 0.5))
    x2, y2 = grid2.mesh()
    cases = [(HeatSolver1D(grid1, neumann(1, 0.7), nu=0.1, dt=1e-3, scheme=scheme),
              0.7 * x + 0.2),
             (HeatSolver2D(grid2, BoundaryConditions((sides(0.7), sides(-0.4))), nu=0.1,
                           dt=1e-3, scheme=scheme), 0.7 * x2 - 0.4 * y2 + 0.2)]
    for solver, u0 in cases:
        np.testing.assert_allclose(solver.rollout(u0, 20)[-1], u0, rtol=0, atol=1e-12)
