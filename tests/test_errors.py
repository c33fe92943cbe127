"""Bad input gets one clear error naming the argument and the allowed range."""

import numpy as np
import pytest
import torch

from physml import bridge
from physml.solvers import (
    BlowUpError,
    BurgersSolver1D,
    Grid,
    HeatSolver1D,
    UnstableStepError,
    boundary_conditions,
)

GRID = Grid((32,), (0.0,), (1.0,))


def test_negative_viscosity_is_refused():
    with pytest.raises(ValueError, match=r"nu=-0.1 must be >= 0"):
        BurgersSolver1D(GRID, nu=-0.1, dt=1e-3)


def test_grid_too_small_for_the_stencil():
    with pytest.raises(ValueError, match=r"shape\[0\]=4 is too small.*at least 5 cells"):
        BurgersSolver1D(Grid((4,), (0.0,), (1.0,)), nu=0.1, dt=1e-3)


def test_bad_grid_and_boundaries():
    with pytest.raises(ValueError, match="upper=0.0 must be greater than lower=1.0"):
        Grid((8,), (1.0,), (0.0,))
    with pytest.raises(ValueError, match="unknown boundary condition kind 'wall'"):
        boundary_conditions("wall", 1)


def test_unstable_step_names_the_largest_stable_one():
    with pytest.raises(UnstableStepError, match=r"dt=0.1 exceeds .* pass dt<=0.000\d+") as err:
        HeatSolver1D(GRID, nu=1.0, dt=0.1)
    assert err.value.dt_max == pytest.approx(2.7853 / (4 / GRID.dx[0] ** 2))


def test_state_dependent_cfl_is_checked_when_a_rollout_starts():
    solver = BurgersSolver1D(GRID, nu=1e-3, dt=0.01)  # fine for the diffusion term
    u0 = 5 * np.sin(2 * np.pi * GRID.coords(0))  # but max|u| dt / dx = 1.6 > 1/2
    with pytest.raises(UnstableStepError, match="pass dt<="):
        solver.rollout(u0, 10)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_initial_state(bad):
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    u0 = np.zeros(32)
    u0[3] = bad
    with pytest.raises(ValueError, match="u0 contains 1 NaN/Inf"):
        solver.rollout(u0, 1)
    with pytest.raises(ValueError, match="u0 contains NaN/Inf"):
        bridge.rollout(solver, torch.tensor(u0), 1)


def test_wrong_shape_dtype_and_parameter_names_in_the_bridge():
    solver = HeatSolver1D(GRID, nu=0.1, dt=1e-4)
    with pytest.raises(ValueError, match="expected the grid shape|expected \\(32,\\)"):
        bridge.rollout(solver, torch.zeros(31, dtype=torch.float64), 1)
    with pytest.raises(ValueError, match="dtype torch.float32; the solver uses torch.float64"):
        bridge.rollout(solver, torch.zeros(32), 1)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['rho'\].*allowed: nu"):
        bridge.rollout(solver, torch.zeros(32, dtype=torch.float64), 1,
                       params={"rho": torch.tensor(1.0)})


def test_blow_up_names_the_step_and_keeps_the_last_finite_state():
    # The stability checks make a blow-up hard to reach on purpose: switch them off and force
    # a step 50x past the explicit limit.
    solver = HeatSolver1D(GRID, nu=1.0, dt=1e-4, check_every=5)
    solver.dt = 5e-3  # 20x the stable step: the highest mode grows by |R| ~ 1e5 per step
    u0 = np.sin(2 * np.pi * GRID.coords(0)) + 1e-3 * np.cos(31 * np.pi * GRID.coords(0))
    solver.check_stability = lambda u=None: None
    with pytest.raises(BlowUpError, match=r"NaN/Inf at step \d+") as err:
        solver.rollout(u0, 2000, save_every=1000)
    assert err.value.step > 0 and err.value.step % 5 == 0
    assert err.value.last_good_step == err.value.step - 5
    assert np.all(np.isfinite(err.value.last_good_state))
