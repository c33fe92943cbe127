"""The checks behind ``save_times``, ``settings``, a time step set on a solver, the spectral
reference's box lengths and ``PINNProblem``'s repr, value by value."""

import math

import numpy as np
import pytest

from physml.solvers import BurgersSolver1D, Grid, HeatSolver1D
from physml.solvers.base import GridSolver
from physml.solvers.parameters import Parameter, Term
from physml.spectral import SpectralSolver
from physml.train.bundled import ConvectionProblem

LINE = Grid((32,), (0.0,), (1.0,))


@pytest.fixture(scope="module")
def heat():
    return HeatSolver1D(LINE, nu=0.01, dt=1e-4)


def test_save_times_with_only_save_every_per_sample_are_per_sample(heat):
    times = heat.save_times(8, save_every=np.array([2, 2]))
    assert times.shape == (2, 5)
    np.testing.assert_allclose(times, 2e-4 * np.tile(np.arange(5), (2, 1)), rtol=1e-15)


@pytest.mark.parametrize("t0", [math.inf, -math.inf, math.nan])
def test_save_times_refuse_a_t0_that_is_not_finite(heat, t0):
    with pytest.raises(ValueError, match="must be a finite number"):
        heat.save_times(4, t0=t0)


def test_settings_hold_the_limiter_s_name_and_the_threads_as_given():
    settings = BurgersSolver1D(LINE, nu=0.01, dt=1e-4, limiter="minmod", threads=1).settings()
    assert settings["limiter"] == "minmod" and settings["threads"] == 1


class _Forgetful(GridSolver):
    """A PDE whose constructor takes a keyword it keeps no attribute for."""

    ndim = 1
    PARAMETERS = (Parameter("kappa", "m^2/s", "diffusivity", lower=0.0, term=Term.DIFFUSION),)

    def __init__(self, grid, bc=None, *, kappa, dt, gain=1.0):
        super().__init__(grid, bc, parameters={"kappa": kappa}, dt=dt)


def test_settings_name_a_keyword_the_solver_keeps_no_attribute_for():
    with pytest.raises(TypeError, match="takes gain=, which the solver keeps no attribute 'gain'"):
        _Forgetful(LINE, kappa=0.01, dt=1e-3).settings()


class _TwoParameters(GridSolver):
    ndim = 1
    PARAMETERS = (Parameter("kappa", "m^2/s", "diffusivity", lower=0.0, term=Term.DIFFUSION),
                  Parameter("rho", "1/s", "reaction", term=Term.REACTION))
    __init__ = GridSolver.__init__


def test_settings_of_a_base_constructor_hold_every_parameter():
    solver = _TwoParameters(LINE, parameters={"kappa": 0.01, "rho": 0.5}, dt=1e-3)
    assert solver.settings()["parameters"] == {"kappa": 0.01, "rho": 0.5}


@pytest.mark.parametrize("dt", [0.0, math.inf, math.nan, -1e-3])
def test_a_time_step_that_is_not_a_positive_finite_number_is_refused_when_set(heat, dt):
    solver = heat.with_dt(1e-4)
    with pytest.raises(ValueError, match="must be a positive number"):
        solver.dt = dt
    with pytest.raises(ValueError, match="must be a positive number"):
        heat.with_dt(dt)


@pytest.mark.parametrize("length", [math.inf, math.nan])
def test_a_spectral_box_length_that_is_not_finite_is_refused(length):
    with pytest.raises(ValueError, match="length must be positive"):
        SpectralSolver(8, nu=0.01, dt=1e-3, length=length)


def test_a_spectral_length_per_axis_must_match_the_axes():
    with pytest.raises(ValueError, match="one per axis"):
        SpectralSolver((8, 8), nu=0.01, dt=1e-3, length=(1.0, 2.0, 3.0))


def test_a_pinn_problem_repr_counts_observations_and_names_coefficients():
    from torch import nn

    from physml.train.observations import Observations
    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    problem.observations = Observations(np.zeros((7, 2)), np.zeros((7, 1)))
    problem.coefficients = nn.ModuleDict({"speed": nn.Linear(1, 1)})
    problem.reference_function = None
    text = repr(problem)
    assert "observations=7" in text and "reference=False" in text
    assert "coefficients=['speed']" in text


def test_a_time_step_float32_rounds_to_zero_is_refused_when_built_set_and_by_with_dt():
    with pytest.raises(ValueError, match="dt"):
        HeatSolver1D(LINE, nu=0.01, dt=1e-50, dtype="float32")
    solver = HeatSolver1D(LINE, nu=0.01, dt=1e-4, dtype="float32")
    with pytest.raises(ValueError, match="dt"):
        solver.dt = 1e-50
    with pytest.raises(ValueError, match="dt"):
        solver.with_dt(1e-50)
    assert solver.dt == 1e-4


def test_with_dt_refuses_an_unstable_step(heat):
    from physml.solvers.errors import UnstableStepError
    with pytest.raises(UnstableStepError):
        heat.with_dt(1.0)
