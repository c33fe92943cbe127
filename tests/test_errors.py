"""Bad input gets one clear error naming the argument and the allowed range."""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import warp as wp

from physml import bridge
from physml.solvers import (
    BC,
    AdvectionSolver1D,
    AdvectionSolver2D,
    AllenCahnSolver1D,
    BlowUpError,
    BoundaryConditions,
    BurgersSolver1D,
    DiffusionSorptionSolver1D,
    Grid,
    HeatSolver1D,
    NavierStokesSolver2D,
    UnstableStepError,
    boundary_conditions,
)
from physml.solvers.grid import BCKind
from physml.solvers.linalg import csr_from_scipy

GRID = Grid((32,), (0.0,), (1.0,))


def test_negative_viscosity_is_refused():
    with pytest.raises(ValueError, match=r"nu=-0.1 must be >= 0"):
        BurgersSolver1D(GRID, nu=-0.1, dt=1e-3)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: BurgersSolver1D(GRID, nu=np.inf, dt=None), r"nu=inf must be >= 0 and finite"),
        (lambda: HeatSolver1D(GRID, nu=np.nan, dt=None), r"nu=nan must be > 0 and finite"),
        (lambda: AllenCahnSolver1D(GRID, nu=0.1, rho=np.inf, dt=None),
         r"rho=inf must be >= 0 and finite \(reaction rate in 1/s\)"),
        (lambda: AdvectionSolver2D(Grid((8, 8), (0, 0), (1, 1)), beta=(1.0, np.nan), dt=None),
         r"beta=\(1.0, nan\) must be finite \(advection velocity in m/s\)"),
        (lambda: AdvectionSolver2D(Grid((8, 8), (0, 0), (1, 1)), beta=1.0, dt=None),
         r"beta=1.0 must be one entry per grid axis \(2\)"),
        (lambda: DiffusionSorptionSolver1D(GRID, porosity=1.5, dt=None),
         r"porosity=1.5 must be in \(0, 1\]"),
        (lambda: DiffusionSorptionSolver1D(GRID, u_left=np.inf, dt=None),
         r"u_left=inf must be >= 0 and finite"),
    ],
)
def test_non_finite_or_out_of_range_parameters_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("bad", [8.5, np.nan, 0, "8"])
def test_fractional_or_invalid_cell_counts_are_refused(bad):
    with pytest.raises(ValueError, match=r"shape\[1\]=.* must be a whole number of cells"):
        Grid((8, bad), (0.0, 0.0), (1.0, 1.0))
    assert Grid((8.0,), (0.0,), (1.0,)).shape == (8,)


def test_grid_too_small_for_the_stencil():
    with pytest.raises(ValueError, match=r"shape\[0\]=4 is too small.*at least 5 cells"):
        BurgersSolver1D(Grid((4,), (0.0,), (1.0,)), nu=0.1, dt=1e-3)


def test_bad_grid_and_boundaries():
    with pytest.raises(ValueError, match="upper=0.0 must be greater than lower=1.0"):
        Grid((8,), (1.0,), (0.0,))
    with pytest.raises(ValueError, match="unknown boundary condition kind 'wall'"):
        boundary_conditions("wall", 1)


def test_a_boundary_kind_by_name_and_a_missing_corner_are_refused_by_name():
    """bc="periodic" failed on 'str' object has no attribute 'ndim'; lower=None in float()."""
    with pytest.raises(ValueError, match=re.escape("bc='periodic' is a str; pass "
                                                   "BoundaryConditions, e.g. periodic(1)")):
        BurgersSolver1D(GRID, "periodic", nu=0.01, dt=1e-3)
    with pytest.raises(ValueError, match=re.escape("grid lower=None must give one coordinate")):
        Grid((64,), None, (1.0,))


def test_a_rollout_refuses_complex_values_and_a_tensor_that_requires_grad():
    """A complex u0 ran on its real part (a ComplexWarning at most); a tensor that requires
    grad failed in torch's numpy(), pointing nowhere near bridge.rollout."""
    solver = HeatSolver1D(GRID, nu=0.01, dt=1e-3)
    mode = np.exp(2j * np.pi * GRID.coords(0))
    for u0 in (mode, torch.tensor(mode), np.stack([mode, mode])):
        with pytest.raises(ValueError, match="u0 has dtype complex128; expected real numbers"):
            solver.rollout(u0, 2)
    with pytest.raises(ValueError, match=r"requires grad; .*physml\.bridge\.rollout for "
                                         r"gradients, or pass u0\.detach\(\)"):
        solver.rollout(torch.tensor(mode.real, requires_grad=True), 2)


def test_a_dtype_of_none_is_refused_not_taken_as_float64():
    with pytest.raises(ValueError, match="dtype=None is not supported; allowed: float32, float64"):
        csr_from_scipy(sp.eye(3, format="csr"), None, "cpu")


def test_unstable_step_names_the_largest_stable_one():
    with pytest.raises(UnstableStepError, match=r"dt=0.1 exceeds .* pass dt<=0.000\d+") as err:
        HeatSolver1D(GRID, nu=1.0, dt=0.1)
    assert err.value.dt_max == pytest.approx(2.7852935 / (4 / GRID.dx[0] ** 2))


def test_a_step_just_above_its_limit_prints_two_numbers_and_a_step_that_passes():
    """dt 1e-6 above the limit printed "dt=0.0001346 exceeds the stability limit 0.0001346",
    and the suggestion, rounded to nearest, could itself exceed the limit."""
    limit = HeatSolver1D(GRID, nu=1.0, dt=None).stable_dt()
    with pytest.raises(UnstableStepError) as err:
        HeatSolver1D(GRID, nu=1.0, dt=limit * (1 + 1e-6))
    message = str(err.value)
    given, shown = re.search(r"dt=(\S+) exceeds the stability limit (\S+) ", message).groups()
    assert given != shown and float(shown) == pytest.approx(limit, rel=1e-5)
    suggested = float(re.search(r"pass dt<=([0-9.e+-]+)", message).group(1))
    assert suggested <= limit
    HeatSolver1D(GRID, nu=1.0, dt=suggested)


@pytest.mark.parametrize("scheme", ["euler", "imex"])
def test_the_unlimited_muscl_flux_is_refused_under_a_forward_euler_advection_step(scheme):
    """Fromm's scheme (limiter 'none') amplifies under forward Euler at every CFL (1.0099 at
    CFL 1/4, 1.089 at 1/2): the solver took its step for the limited flux's 1/2 and blew up.
    Refused with or without a dt (without one, stable_dt had only 0 to offer)."""
    grid = Grid((32,), (0.0,), (1.0,))
    u0 = np.sin(2 * np.pi * grid.coords(0))
    for dt in (None, 1e-4):
        with pytest.raises(UnstableStepError, match="the unlimited MUSCL flux \\(limiter "
                                                    "'none', Fromm's scheme\\) is unstable with "
                                                    "a forward-Euler advection step"):
            BurgersSolver1D(grid, nu=0.01, dt=dt, limiter="none", scheme=scheme)
    heun = BurgersSolver1D(grid, nu=0.0, dt=None, limiter="none", scheme="heun")
    u = heun.with_dt(heun.stable_dt(u0)).rollout(u0, 400)[-1]
    assert np.abs(u).max() < 1.5  # stable at CFL 1/2 (inviscid: a shock forms)


@pytest.mark.parametrize("dt", [None, 1e-4])
def test_central_advection_under_a_scheme_without_imaginary_axis_is_refused(dt):
    """Heun's region holds no stretch of the imaginary axis: no step is stable."""
    grid = Grid((64,), (0.0,), (1.0,))
    with pytest.raises(UnstableStepError, match="central differences for advection are "
                                                "unstable with scheme 'heun' at any dt"):
        AdvectionSolver1D(grid, beta=1.0, dt=dt, space="central", scheme="heun")
    assert AdvectionSolver1D(grid, beta=1.0, dt=None, space="central", scheme="rk4").dt is None
    still = AdvectionSolver1D(grid, beta=0.0, dt=dt, space="central", scheme="heun")  # no speed
    with pytest.raises(UnstableStepError, match="unstable with scheme 'heun' at any dt"):
        still.with_parameters(beta=0.5)


@pytest.mark.parametrize("kind", ["dirichlet", "neumann"])
def test_central_advection_is_refused_at_a_wall(kind):
    """Central differences at a Dirichlet or Neumann wall keep a pulse that should leave and
    grow it linearly (max |u| 193 at t = 5 from a unit pulse on 256 cells); upwind lets it out."""
    grid = Grid((64, 32), (0.0, 0.0), (1.0, 1.0))
    wall = BC(BCKind[kind.upper()])
    bc = BoundaryConditions(((BC(BCKind.PERIODIC),) * 2, (wall, wall)))
    with pytest.raises(ValueError, match="space='central' needs periodic boundaries; axis 1 "
                                         "has a wall .* use space='upwind'"):
        AdvectionSolver2D(grid, bc, beta=(1.0, 0.5), dt=None, space="central", scheme="rk4")
    upwind = AdvectionSolver2D(grid, bc, beta=(1.0, 0.5), dt=None, space="upwind")
    assert upwind.space == "upwind"
    periodic = AdvectionSolver2D(grid, beta=(1.0, 0.5), dt=None, space="central", scheme="rk4")
    assert periodic.space == "central"
    one_axis = BoundaryConditions(((BC(BCKind.PERIODIC),) * 2,))
    with pytest.raises(ValueError, match="bc has 1 axes but the grid has 2"):
        AdvectionSolver2D(grid, one_axis, beta=(1.0, 0.5), dt=None, space="central",
                          scheme="rk4")


def test_unlimited_upwind_advection_refuses_a_dirichlet_side():
    """Fromm's scheme reads the reflected ghost of a Dirichlet outflow side: a pulse leaving
    through it keeps an error of 0.24 at every resolution from 64 to 512 cells."""
    grid = Grid((64, 32), (0.0, 0.0), (1.0, 1.0))
    lid = BoundaryConditions(((BC(BCKind.PERIODIC),) * 2,
                              (BC(BCKind.NEUMANN), BC(BCKind.DIRICHLET, 1.0))))
    with pytest.raises(ValueError, match="limiter='none' cannot take the Dirichlet side of "
                                         "axis 1: .* use a limiter"):
        AdvectionSolver2D(grid, lid, beta=(1.0, 0.5), dt=None, limiter="none")
    assert AdvectionSolver2D(grid, lid, beta=(1.0, 0.5), dt=None).limiter.name == "VAN_LEER"
    walls = BoundaryConditions(((BC(BCKind.PERIODIC),) * 2, (BC(BCKind.NEUMANN),) * 2))
    assert AdvectionSolver2D(grid, walls, beta=(1.0, 0.5), dt=None, limiter="none")


def test_unlimited_upwind_advection_refuses_a_dirichlet_side_on_either_end_of_an_axis():
    """Each side of each axis is checked, the low side as the high."""
    grid = Grid((64, 32), (0.0, 0.0), (1.0, 1.0))
    wall = BC(BCKind.DIRICHLET, 1.0)
    for axis, sides in [(0, (wall, BC(BCKind.NEUMANN))), (0, (BC(BCKind.NEUMANN), wall)),
                        (1, (wall, BC(BCKind.NEUMANN)))]:
        bc = BoundaryConditions(tuple(sides if a == axis else (BC(BCKind.PERIODIC),) * 2
                                      for a in range(2)))
        with pytest.raises(ValueError, match="limiter='none' cannot take the Dirichlet side "
                                             f"of axis {axis}: "):
            AdvectionSolver2D(grid, bc, beta=(1.0, 0.5), dt=None, limiter="none")


def test_state_dependent_cfl_is_checked_when_a_rollout_starts():
    solver = BurgersSolver1D(GRID, nu=1e-3, dt=0.01)  # fine for the diffusion term
    u0 = 5 * np.sin(2 * np.pi * GRID.coords(0))  # but max|u| dt / dx = 1.6 > 1/2
    with pytest.raises(UnstableStepError, match="set by its advection term; pass dt<=") as err:
        solver.rollout(u0, 10)
    assert "imex" not in str(err.value)  # implicit diffusion would not lift this limit


def test_a_batched_rollout_names_the_same_unstable_sample_as_its_own_check():
    solver = BurgersSolver1D(GRID, nu=1e-3, dt=0.006)  # max|u| dt / dx <= 1/2 needs max|u| < 2.7
    base = np.sin(2 * np.pi * GRID.coords(0))
    u0 = np.stack([0.5 * base, 3 * base, 1.0 * base, 6 * base])  # 3x and 6x are too fast
    with pytest.raises(UnstableStepError) as batched:
        solver.rollout(u0, 2)
    with pytest.raises(UnstableStepError) as alone:
        solver.check_stability(u0[1])
    assert str(batched.value) == str(alone.value)
    assert solver.rollout(u0[[0, 2]], 2).shape == (2, 3, 32)  # the stable ones run


def test_imex_is_offered_only_where_diffusion_sets_the_limit():
    with pytest.raises(UnstableStepError, match=r"diffusion term.*scheme='imex' \(implicit "
                       r"diffusion; no limit left\)"):
        HeatSolver1D(GRID, nu=1.0, dt=0.1)
    # Burgers with a large viscosity: diffusion binds, IMEX leaves the advective limit
    u0 = 0.1 * np.sin(2 * np.pi * GRID.coords(0))
    solver = BurgersSolver1D(GRID, nu=1.0, dt=1e-4)
    solver.dt = 0.01
    with pytest.raises(UnstableStepError, match=r"diffusion term.*scheme='imex' \(implicit "
                       r"diffusion; dt<=0.157\)"):  # 1/2 dx / max|u| = 0.5 / 32 / 0.0995
        solver.check_stability(u0)
    imex = BurgersSolver1D(GRID, nu=1.0, dt=0.15, scheme="imex")
    assert imex.rollout(u0, 2).shape == (3, 32)
    # before a state is known the advective limit is not: "no limit left" would be wrong
    with pytest.raises(UnstableStepError, match=r"scheme='imex' \(implicit diffusion; the "
                       r"advection term's limit, set by the state, then applies\)"):
        BurgersSolver1D(GRID, nu=1.0, dt=0.01)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_initial_state(bad):
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    u0 = np.zeros(32)
    u0[3] = bad
    with pytest.raises(ValueError, match="u0 contains 1 NaN/Inf"):
        solver.rollout(u0, 1)
    with pytest.raises(ValueError, match="u0 contains NaN/Inf"):
        bridge.rollout(solver, torch.tensor(u0), 1)


def test_a_negative_concentration_is_refused_by_name():
    """The isotherm's u^(n_f - 1) has no real value below 0: a negative cell ran into NaN and
    a blow-up message that blamed the step."""
    solver = DiffusionSorptionSolver1D(Grid((8,), (0.0,), (1.0,)), dt=1.0)
    u0 = np.full(8, 0.5)
    u0[2] = -0.1
    message = "u0 has negative concentrations \\(down to -0.1\\); diffusion-sorption needs"
    with pytest.raises(ValueError, match=message):
        solver.rollout(u0, 3)
    with pytest.raises(ValueError, match=message):
        bridge.rollout(solver, torch.tensor(u0), 3)


@pytest.mark.parametrize(
    "solver, params, message",
    [
        (HeatSolver1D(GRID, nu=0.1, dt=1e-4), {"nu": -0.1}, r"nu=-0.1 must be > 0"),
        (BurgersSolver1D(GRID, nu=0.1, dt=1e-4), {"nu": np.inf}, r"nu=inf must be >= 0"),
        (AllenCahnSolver1D(GRID, nu=0.1, rho=1.0, dt=1e-4), {"rho": np.nan}, r"rho=nan"),
    ],
)
def test_the_bridge_refuses_what_the_solver_refuses(solver, params, message):
    """One check on both paths: the constructor and a differentiable rollout."""
    name, value = next(iter(params.items()))
    with pytest.raises(ValueError, match=message):
        type(solver)(GRID, **{**solver.parameters(), name: value}, dt=1e-4)
    tensors = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True)}
    with pytest.raises(ValueError, match=message):
        bridge.rollout(solver, torch.zeros(32, dtype=torch.float64), 1, parameters=tensors)
    with pytest.raises(ValueError, match=message):
        solver.with_parameters(**params)


def test_the_bridge_names_a_solver_it_does_not_differentiate():
    from physml.solvers import NavierStokesSolver2D

    solver = NavierStokesSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), nu=0.01, dt=0.01)
    with pytest.raises(ValueError, match="solver is a NavierStokesSolver2D; the bridge "
                                         "differentiates the Warp grid solvers"):
        bridge.rollout(solver, torch.zeros(8, 8, dtype=torch.float64), 2)


def test_wrong_shape_dtype_and_parameter_names_in_the_bridge():
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    with pytest.raises(ValueError, match="expected the grid shape|expected \\(32,\\)"):
        bridge.rollout(solver, torch.zeros(31, dtype=torch.float64), 1)
    with pytest.raises(ValueError, match="dtype torch.int64; expected a floating-point"):
        bridge.rollout(solver, torch.zeros(32, dtype=torch.int64), 1)
    u0 = torch.sin(torch.linspace(0, 3, 32))  # float32: converted to the solver's float64
    out = bridge.rollout(solver, u0, 2)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, bridge.rollout(solver, u0.double(), 2), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['rho'\].*allowed: nu"):
        bridge.rollout(solver, torch.zeros(32, dtype=torch.float64), 1,
                       parameters={"rho": torch.tensor(1.0)})


def test_step_names_its_own_argument():
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    with pytest.raises(ValueError, match=r"^u contains 32 NaN/Inf value\(s\)"):
        solver.step(np.full(32, np.nan))
    with pytest.raises(ValueError, match=r"^u has shape \(7,\)"):
        solver.step(np.ones(7))
    assert solver.step(np.ones((3, 32))).shape == (3, 32)


def test_an_empty_batch_and_a_state_of_another_size_are_refused_by_name():
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    with pytest.raises(ValueError, match=r"u0 has shape \(0, 32\).*B >= 1"):
        bridge.rollout(solver, torch.zeros(0, 32, dtype=torch.float64), 5)
    for bad in (np.ones(7), np.ones(64), np.ones((2, 31))):  # 64 cells: not two states
        with pytest.raises(ValueError, match=r"u has shape .*expected a state \(32,\)"):
            solver.stable_dt(bad)
    assert solver.stable_dt(np.ones((3, 32))) == solver.stable_dt(np.ones(32))


@pytest.mark.parametrize("call, message", [
    (lambda s, u: bridge.rollout(s, torch.as_tensor(u), None),
     "n_steps=None must be a whole number >= 0"),
    (lambda s, u: bridge.rollout(s, torch.as_tensor(u), 4, True),
     "save_every=True must be a whole number >= 1"),
    (lambda s, u: s.rollout(u, "3"), "n_steps='3' must be a number, or one per sample"),
    (lambda s, u: s.rollout(u, 4, True), "save_every=True must be a number, or one per sample"),
    (lambda s, u: HeatSolver1D(GRID, nu=0.1, dt=1e-4, threads="2"),
     "threads='2' must be a whole number >= 1"),
    (lambda s, u: HeatSolver1D(GRID, nu=0.1, dt=1e-4, threads=True),
     "threads=True must be a whole number >= 1"),
    (lambda s, u: bridge.rollout(s, torch.as_tensor(u), 4, checkpoint_every=True),
     "checkpoint_every=True must be None, 'auto' or a whole number >= 1"),
    (lambda s, u: s.rollout(u, 10, 3), "n_steps=10 is not a multiple of save_every=3: the "
     "last 1 step(s) would run and not be saved; pass n_steps=9 or 12"),
    (lambda s, u: s.rollout(np.stack([u, u]), [6, 10], [2, 3]),
     "n_steps=10 is not a multiple of save_every=3"),
    (lambda s, u: bridge.rollout(s, torch.as_tensor(u), 5, 2),
     "n_steps=5 is not a multiple of save_every=2"),
])
def test_counts_are_whole_numbers_and_named_as_given(call, message):
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    with pytest.raises(ValueError, match=re.escape(message)):
        call(solver, np.zeros(32))


def test_numpy_counts_a_torch_device_and_numpy_dtypes_are_accepted():
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4, device=torch.device("cpu"))
    u0 = torch.sin(torch.linspace(0, 3, 32, dtype=torch.float64))
    out = bridge.rollout(solver, u0, np.int64(4), checkpoint_every=np.int64(2))
    torch.testing.assert_close(out, bridge.rollout(solver, u0, 4), rtol=0, atol=0)
    assert HeatSolver1D(GRID, nu=0.1, dt=1e-4, device="cpu:0").device == "cpu"
    for dtype in (np.float32, np.dtype("float32"), torch.float32, "float32"):
        assert NavierStokesSolver2D(Grid((8, 8), (0, 0), (1, 1)), nu=1e-3, dt=None,
                                    dtype=dtype).dtype is wp.float32
    for count in (np.array(4), torch.tensor(4), np.int32(4), 4.0):
        torch.testing.assert_close(bridge.rollout(solver, u0, count), out, rtol=0, atol=0)


def test_blow_up_names_the_step_and_keeps_the_last_finite_state():
    # The stability checks make a blow-up hard to reach on purpose: switch them off and force
    # a step 50x past the explicit limit.
    solver = HeatSolver1D(GRID, nu=1.0, dt=1e-4, check_every=5)
    solver.dt = 5e-3  # 20x the stable step: the highest mode grows by |R| ~ 1e5 per step
    u0 = np.sin(2 * np.pi * GRID.coords(0)) + 1e-3 * np.cos(31 * np.pi * GRID.coords(0))
    solver.check_stability = lambda u=None, bound=None: None
    with pytest.raises(BlowUpError, match=r"NaN/Inf at step \d+") as err:
        solver.rollout(u0, 2000, save_every=1000)
    assert err.value.step > 0 and err.value.step % 5 == 0
    assert err.value.last_good_step == err.value.step - 5
    assert np.all(np.isfinite(err.value.last_good_state))


def test_a_ragged_count_is_named_and_a_float_count_is_stored_as_an_int():
    from physml.constraints import LevenbergMarquardt
    from physml.solvers.errors import whole_number

    with pytest.raises(ValueError, match=re.escape("n_steps=[[1], [2, 3]] must be a whole")):
        whole_number([[1], [2, 3]], "n_steps", 0)
    assert LevenbergMarquardt(max_iter=5.0).max_iter == 5 and whole_number(
        np.float64(3.0), "n", 0) == 3


def test_a_parameter_the_solver_s_dtype_cannot_hold_is_refused_by_its_given_value():
    """1e-50 is 0 in float32: the kernels would read nu = 0, and the first rollout refused a
    'nu=0.0' nobody gave."""
    from physml.solvers import HeatSolver1D

    grid = Grid((16,), (0.0,), (1.0,))
    with pytest.raises(ValueError, match=re.escape(
            "nu=1e-50 is 0.0 in float32, the solver's dtype; pass dtype='float64'")):
        HeatSolver1D(grid, nu=1e-50, dt=None, dtype="float32")
    assert HeatSolver1D(grid, nu=1e-50, dt=None).nu == 1e-50


def cannot_hold(value: str) -> str:
    return re.escape(f"{value} in float32, the solver's dtype; pass dtype='float64'")


def test_a_time_step_the_solver_s_dtype_cannot_hold_is_refused_wherever_it_is_set():
    # 1e-50 is 0 in float32: every step would add dt * F(u) = 0 and the state never move
    grid = Grid((16,), (0.0,), (1.0,))
    with pytest.raises(ValueError, match=cannot_hold("dt=1e-50 is 0.0")):
        HeatSolver1D(grid, nu=1.0, dt=1e-50, dtype="float32")
    solver = HeatSolver1D(grid, nu=1.0, dt=1e-5, dtype="float32")
    with pytest.raises(ValueError, match=cannot_hold("dt=1e-50 is 0.0")):
        solver.with_dt(1e-50)
    u = np.zeros((2, 16))
    with pytest.raises(ValueError, match=cannot_hold("dt[0]=1e-50 is 0.0")):
        solver.rollout(u, 10, 10, dt=[1e-50, 1e-5])
    with pytest.raises(ValueError, match=cannot_hold("dt=1e-50 is 0.0")):
        solver.rollout(u, 10, 10, dt=1e-50)
    assert HeatSolver1D(grid, nu=1.0, dt=1e-50).with_dt(1e-60).dt == 1e-60


@pytest.mark.parametrize("values, message", [
    ([1e-50, 1.0], "nu[0]=1e-50 is 0.0"),
    ([1.0, 1e50], "nu[1]=1e+50 is inf"),
    (np.where(np.arange(32).reshape(2, 16) == 19, 1e-50, 1.0), "nu[1, 3]=1e-50 is 0.0"),
])
def test_a_per_sample_parameter_the_solver_s_dtype_cannot_hold_is_named_as_given(values,
                                                                                  message):
    # checked before the cast: not "nu=0.0 must be > 0", and no overflow warning from it
    solver = HeatSolver1D(Grid((16,), (0.0,), (1.0,)), nu=1.0, dt=1e-5, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=cannot_hold(message)):
            solver.rollout(np.zeros((2, 16)), 10, 10, parameters={"nu": values})


def test_errors_cross_a_process_boundary_whole():
    """BlowUpError and ConvergenceError did not unpickle (their __init__ takes keywords), so
    one raised in a DataLoader or Dask worker became a TypeError; NonFiniteLossError came back
    with its message garbled ("at step the loss or its gradient became NaN/Inf at step 5")."""
    import pickle

    import numpy as np
    import warp as wp

    from physml.errors import BlowUpError, ConvergenceError, NonFiniteLossError
    from physml.solvers.runtime import warp_device

    converging = ConvergenceError(method="cg", iterations=3, residual=0.1, tolerance=1e-8,
                                  residuals=np.ones(4), reason="diverged (...)")
    converging.x = wp.array(np.arange(3.0), dtype=wp.float64, device=warp_device("cpu"))
    errors = [BlowUpError(step=3, t=0.1, last_good_step=2, last_good_state=np.zeros(2)),
              NonFiniteLossError(5, 3), converging]
    for error in errors:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
        assert again.args == error.args
    assert pickle.loads(pickle.dumps(errors[0])).last_good_state.tolist() == [0.0, 0.0]
    assert pickle.loads(pickle.dumps(errors[1])).checkpoint_step == 3
    restored = pickle.loads(pickle.dumps(converging))
    assert restored.reason == "diverged (...)" and restored.x.numpy().tolist() == [0.0, 1.0, 2.0]
