"""A grid solver's time step is refused as text or a bool wherever it is given, a rollout's
saved times and a solver's settings are one call away, a PINN problem has a one-line repr, and
the spectral reference states its units and what its coordinates are."""

import json
import re

import numpy as np
import pytest
import torch

from physml.solvers import (
    BC,
    AdvectionSolver2D,
    AllenCahnSolver1D,
    BurgersSolver1D,
    DiffusionSorptionSolver1D,
    Grid,
    HeatSolver1D,
    NavierStokesSolver2D,
)
from physml.solvers.base import GridSolver
from physml.solvers.parameters import Parameter, Term
from physml.spectral import SpectralSolver
from physml.train.bundled import ConvectionProblem

LINE = Grid((32,), (0.0,), (1.0,))
PLANE = Grid((16, 8), (0.0, 0.0), (1.0, 2.0))


@pytest.fixture(scope="module")
def heat():
    return HeatSolver1D(LINE, nu=0.01, dt=1e-4)


# ------------------------------------------------------------------ dt as text or a bool


@pytest.mark.parametrize("dt, what", [("1e-4", "text"), (True, "a bool"),
                                      (np.True_, "a bool")])
def test_a_time_step_given_as_text_or_a_bool_is_refused_when_built(dt, what):
    with pytest.raises(ValueError, match=f"dt=.* must be a number, not {what}"):
        HeatSolver1D(LINE, nu=0.01, dt=dt, scheme="imex")


@pytest.mark.parametrize("dt, what", [("1e-4", "text"), (True, "a bool")])
def test_a_time_step_given_as_text_or_a_bool_is_refused_by_with_dt_and_when_set(heat, dt, what):
    with pytest.raises(ValueError, match=f"dt=.* must be a number, not {what}"):
        heat.with_dt(dt)
    solver = heat.with_dt(1e-4)
    with pytest.raises(ValueError, match=f"dt=.* must be a number, not {what}"):
        solver.dt = dt
    assert solver.dt == 1e-4


def test_a_time_step_set_on_a_built_solver_is_checked_as_it_is_set(heat):
    solver = heat.with_dt(1e-4)
    with pytest.raises(ValueError, match="dt=-1 must be a positive number"):
        solver.dt = -1
    solver.dt = np.float32(5e-5)
    assert type(solver.dt) is float and solver.dt == float(np.float32(5e-5))


@pytest.mark.parametrize("length, what", [("6.28", "text"), (True, "a bool"),
                                          ((1.0, False), "a bool")])
def test_a_spectral_box_length_given_as_text_or_a_bool_is_refused(length, what):
    n = (8, 8) if isinstance(length, tuple) else 8
    with pytest.raises(ValueError, match=f"length=.* must be a number, not {what}"):
        SpectralSolver(n, nu=0.01, dt=1e-3, length=length)


# ------------------------------------------------------------------------- save_times


def test_save_times_are_the_times_of_the_states_a_rollout_returns(heat):
    u0 = np.sin(2 * np.pi * LINE.coords(0))
    states = heat.rollout(u0, 10, save_every=5)
    times = heat.save_times(10, save_every=5)
    assert times.shape == states.shape[:1]
    np.testing.assert_allclose(times, [0.0, 5e-4, 1e-3], rtol=1e-15)
    np.testing.assert_allclose(heat.save_times(10, 5, t0=2.0), [2.0, 2.0005, 2.001],
                               rtol=1e-15)


def test_save_times_per_sample_have_the_shape_of_a_batched_rollout(heat):
    u0 = np.tile(np.sin(2 * np.pi * LINE.coords(0)), (2, 1))
    dt = np.array([1e-4, 5e-5])
    states = heat.rollout(u0, 4, save_every=2, dt=dt)
    times = heat.save_times(4, save_every=2, dt=dt)
    assert times.shape == states.shape[:2] == (2, 3)
    np.testing.assert_allclose(times, [[0.0, 2e-4, 4e-4], [0.0, 1e-4, 2e-4]], rtol=1e-15)
    counts = heat.save_times(np.array([4, 8]), save_every=np.array([1, 2]))
    np.testing.assert_allclose(counts, 1e-4 * np.array([[0, 1, 2, 3, 4], [0, 2, 4, 6, 8]]),
                               rtol=1e-15)


def test_save_times_refuse_what_a_rollout_refuses(heat):
    with pytest.raises(ValueError, match="n_steps=7 is not a multiple of save_every=5"):
        heat.save_times(7, 5)
    with pytest.raises(ValueError, match="n_steps // save_every differs between samples"):
        heat.save_times(np.array([4, 8]))
    with pytest.raises(ValueError, match=r"batches of \[2, 3\] samples"):
        heat.save_times(np.array([4, 8]), dt=np.full(3, 1e-4))
    with pytest.raises(ValueError, match="t0='0' must be a number, not text"):
        heat.save_times(4, t0="0")
    with pytest.raises(ValueError, match="dt is not set"):
        HeatSolver1D(LINE, nu=0.01, dt=None).save_times(4)


# --------------------------------------------------------------------------- settings


def _solvers():
    return [
        HeatSolver1D(LINE, nu=0.01, dt=1e-4),
        BurgersSolver1D(LINE, nu=0.01, dt=1e-4, limiter="minmod", threads=1),
        AdvectionSolver2D(PLANE, beta=(1.0, 0.5), dt=1e-3, space="upwind"),
        AllenCahnSolver1D(LINE, nu=1e-3, rho=1.0, dt=1e-4, scheme="imex", theta=1.0,
                          dtype="float32", check_every=7),
    ]


@pytest.mark.parametrize("solver", _solvers(), ids=lambda s: type(s).__name__)
def test_settings_rebuild_a_solver_that_rolls_out_bitwise_the_same(solver):
    settings = solver.settings()
    json.dumps(settings)  # plain data: numbers, tuples, names
    clone = type(solver)(solver.grid, solver.bc, **settings)
    u0 = 1.0 + 0.5 * np.sin(2 * np.pi * solver.grid.mesh()[0])
    np.testing.assert_array_equal(clone.rollout(u0, 6, save_every=3),
                                  solver.rollout(u0, 6, save_every=3))
    assert clone.settings() == settings


def test_settings_hold_the_values_set_after_the_solver_was_built():
    solver = AllenCahnSolver1D(LINE, nu=1e-3, rho=1.0, dt=1e-4, scheme="imex")
    solver.nu, solver.dt, solver.theta = 2e-3, 5e-5, 1.0
    settings = solver.settings()
    assert settings == {"nu": 2e-3, "rho": 1.0, "dt": 5e-5, "scheme": "imex", "theta": 1.0,
                        "device": "cpu", "dtype": "float64", "check_every": 50,
                        "threads": None}


def test_settings_of_a_solver_without_bc_rebuild_it():
    solver = DiffusionSorptionSolver1D(LINE, dt=1.0, u_left=0.5)
    assert solver.settings()["u_left"] == 0.5
    clone = DiffusionSorptionSolver1D(solver.grid, **solver.settings())
    u0 = np.full(LINE.shape, 0.1)
    np.testing.assert_array_equal(clone.rollout(u0, 4), solver.rollout(u0, 4))


class _Diffusion(GridSolver):
    """A PDE of one's own whose constructor passes ``scheme`` and the rest on as options."""

    ndim = 1
    PARAMETERS = (Parameter("kappa", "m^2/s", "diffusivity", lower=0.0, term=Term.DIFFUSION),)

    def __init__(self, grid, bc=None, *, kappa, dt, **options):
        super().__init__(grid, bc, parameters={"kappa": kappa}, dt=dt, **options)


class _Plain(_Diffusion):
    """A PDE that keeps the base constructor (its parameters as one mapping)."""

    __init__ = GridSolver.__init__


def test_settings_of_a_pde_of_ones_own_keep_what_its_options_passed_on():
    solver = _Diffusion(LINE, kappa=0.01, dt=1e-3, scheme="rk4", theta=1.0)
    settings = solver.settings()
    assert settings["scheme"] == "rk4" and settings["theta"] == 1.0
    assert "parameters" not in settings
    clone = _Diffusion(LINE, **settings)
    u0 = np.sin(2 * np.pi * LINE.coords(0))
    np.testing.assert_array_equal(clone.rollout(u0, 3), solver.rollout(u0, 3))
    plain = _Plain(LINE, parameters={"kappa": 0.01}, dt=1e-3)
    assert plain.settings()["parameters"] == {"kappa": 0.01}


# ------------------------------------------------------------------ reprs and docstrings


def test_a_pinn_problem_repr_is_one_line_of_its_settings():
    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    assert repr(problem) == (
        "ConvectionProblem(inputs=('x', 't'), outputs=('u',), "
        f"geometry=Interval(0.0, {2 * np.pi!r}, names=['left', 'right']), time=(0.0, 1.0), "
        "conditions=['initial'], coefficients=[], observations=None, reference=True)")


def test_the_spectral_solver_gives_units_and_says_its_coordinates_are_nodes():
    doc = " ".join(SpectralSolver.__doc__.split())
    for unit in ("[m^2/s]", "time step [s]", "[1/s]", "[m] per axis"):
        assert unit in doc
    coords = " ".join(SpectralSolver.coords.__doc__.split())
    assert "$x_j = jL_i/n_i$ [m]" in coords and "nodes, not the cell centres" in coords


@pytest.mark.parametrize("lower, message", [(("0",), "not text"), ((True,), "not a bool")])
def test_a_grid_refuses_coordinates_given_as_text_or_bools(lower, message):
    """Grid((8,), ("0",), (1.0,)) read "0" as 0.0 and (True,) as 1.0."""
    with pytest.raises(ValueError, match=f"grid lower=.*{message}"):
        Grid((8,), lower, (2.0,))


@pytest.mark.parametrize("value, message", [("1.0", "not text"), (True, "not a bool"),
                                            (None, "a finite number")])
def test_a_boundary_value_given_as_text_a_bool_or_none_is_named(value, message):
    """BC("dirichlet", "1.0") raised NumPy's TypeError from isfinite; True read as 1."""
    with pytest.raises(ValueError, match=f"BC value=.*{message}"):
        BC("dirichlet", value)


# ------------------------------------------- settings and save_times from NumPy and PyTorch


def _rebuilt_from_json(solver):
    """The solver ``type(solver)(grid, bc, **settings)`` builds from its settings written as
    JSON and read back."""
    return type(solver)(solver.grid, solver.bc, **json.loads(json.dumps(solver.settings())))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("nu", [np.float32(0.015), np.asarray(0.015), np.int64(1),
                                torch.tensor(0.015), torch.tensor(0.015, dtype=torch.float64),
                                np.array([0.015])],
                         ids=["np.float32", "0-d array", "np.int64", "tensor", "tensor64",
                              "(1,) array"])
def test_settings_are_plain_numbers_whatever_a_parameter_was_set_from(nu, dtype):
    """A parameter set from a NumPy scalar or a tensor came back as given: not JSON."""
    solver = HeatSolver1D(LINE, nu=0.01, dt=1e-4, dtype=dtype)
    solver.nu = nu
    settings = solver.settings()
    assert type(settings["nu"]) is float
    clone = _rebuilt_from_json(solver)
    u0 = np.sin(2 * np.pi * LINE.coords(0))
    np.testing.assert_array_equal(clone.rollout(u0, 4), solver.rollout(u0, 4))
    assert clone.settings() == settings


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta", [np.array([0.1, 0.2], dtype=np.float32),
                                  np.array([0.1, 0.2]), [0.1, 0.2], torch.tensor([0.1, 0.2])],
                         ids=["float32 array", "array", "list", "tensor"])
def test_settings_give_a_velocity_as_a_tuple_of_floats_however_it_was_set(beta, dtype):
    """An array velocity came back as an array: settings dicts could not be compared."""
    solver = AdvectionSolver2D(PLANE, beta=(0.3, -0.2), dt=1e-3, dtype=dtype)
    solver.beta = beta
    settings = solver.settings()
    assert type(settings["beta"]) is tuple and all(type(v) is float for v in settings["beta"])
    clone = _rebuilt_from_json(solver)
    assert clone.settings() == settings
    u0 = np.random.default_rng(0).standard_normal(PLANE.shape)
    np.testing.assert_array_equal(clone.rollout(u0, 4), solver.rollout(u0, 4))


def test_the_parameters_mapping_of_settings_is_plain_numbers():
    plain = _Plain(LINE, parameters={"kappa": 0.01}, dt=1e-3)
    plain.kappa = torch.tensor(0.02, dtype=torch.float64)
    assert plain.settings()["parameters"] == {"kappa": 0.02}
    json.dumps(plain.settings())


def test_save_times_take_per_sample_counts_and_time_steps_as_tensors(heat):
    """np.size(tensor) is the tensor's size method: a TypeError from NumPy."""
    counts = heat.save_times(torch.tensor([4, 8]), torch.tensor([1, 2]))
    np.testing.assert_array_equal(counts, heat.save_times(np.array([4, 8]), np.array([1, 2])))
    u0 = np.zeros((2, *LINE.shape))
    assert counts.shape == heat.rollout(u0, torch.tensor([4, 8]), torch.tensor([1, 2])).shape[:2]
    steps = heat.save_times(4, 2, dt=torch.tensor([1e-4, 2e-4], dtype=torch.float64))
    np.testing.assert_array_equal(steps, heat.save_times(4, 2, dt=np.array([1e-4, 2e-4])))


class _Positional(GridSolver):
    """A PDE of one's own whose constructor takes its parameter and dt by position too."""

    ndim = 1
    PARAMETERS = _Diffusion.PARAMETERS

    def __init__(self, grid, bc=None, kappa=0.01, dt=None, **options):
        super().__init__(grid, bc, parameters={"kappa": kappa}, dt=dt, **options)


def test_settings_of_a_pde_of_ones_own_read_its_positional_or_keyword_arguments():
    """Only keyword-only arguments were read: parameters= came back, and rebuilding raised
    "got multiple values for keyword argument 'parameters'"."""
    solver = _Positional(LINE, None, 0.02, 1e-4, scheme="euler")
    settings = solver.settings()
    assert settings["kappa"] == 0.02 and settings["dt"] == 1e-4
    assert settings["scheme"] == "euler" and "parameters" not in settings
    clone = _Positional(solver.grid, solver.bc, **settings)
    u0 = np.sin(2 * np.pi * LINE.coords(0))
    np.testing.assert_array_equal(clone.rollout(u0, 5), solver.rollout(u0, 5))


@pytest.mark.parametrize("value", [np.linspace(0.005, 0.02, 32), [0.01, 50.0], -0.01])
def test_a_parameter_set_on_a_built_solver_is_checked_as_the_constructor_checks_it(value):
    """solver.nu = array rolled out with the array's first entry, silently: a field or
    per-sample values belong in a rollout's parameters=."""
    solver = HeatSolver1D(LINE, nu=0.01, dt=1e-4)
    with pytest.raises(ValueError, match="nu=.*must be"):
        solver.nu = value
    assert solver.nu == 0.01


def test_a_parameter_set_on_a_built_solver_rolls_out_as_one_built_with_it():
    solver = HeatSolver1D(LINE, nu=0.01, dt=1e-4)
    solver.nu = np.float32(0.02)
    u0 = np.sin(2 * np.pi * LINE.coords(0))
    np.testing.assert_array_equal(solver.rollout(u0, 5),
                                  HeatSolver1D(LINE, nu=float(np.float32(0.02)), dt=1e-4)
                                  .rollout(u0, 5))
    plane = AdvectionSolver2D(PLANE, beta=(1.0, 0.5), dt=1e-3)
    plane.beta = np.array([0.5, 1.0])
    assert plane.beta == (0.5, 1.0)


@pytest.mark.parametrize("value, became", [(1e40, "inf"), (1e-50, "0.0")])
def test_a_parameter_set_or_given_to_with_parameters_is_refused_where_the_dtype_loses_it(
        value, became):
    """A float32 solver took nu=1e40 as set (then rolled out saying "nu=inf must be > 0")
    though its constructor refuses it."""
    solver = HeatSolver1D(LINE, nu=0.01, dt=1e-4, dtype="float32")
    message = re.escape(f"nu={value:g} is {became} in float32")
    with pytest.raises(ValueError, match=message):
        solver.nu = value
    with pytest.raises(ValueError, match=message):
        solver.with_parameters(nu=value)
    assert solver.nu == 0.01


@pytest.mark.parametrize("value, message", [(-0.01, "nu=-0.01 must be >= 0"),
                                            (float("nan"), "nu=nan must be >= 0"),
                                            (np.array([1e-3, 2e-3]), "must be a single number"),
                                            (None, "nu=None: give a number")])
def test_a_viscosity_set_on_a_navier_stokes_solver_is_checked_as_the_constructor_checks_it(
        value, message):
    """nu=-0.01 set ran anti-diffusion silently, nan was reported as a blow-up."""
    solver = NavierStokesSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), nu=1e-3, dt=1e-3)
    with pytest.raises(ValueError, match=re.escape(message)):
        solver.nu = value
    assert solver.nu == 1e-3
    solver.nu = np.float32(2e-3)
    assert solver.nu == float(np.float32(2e-3)) and type(solver.nu) is float


def test_a_field_refused_as_a_parameter_is_shown_by_a_few_entries_and_its_shape():
    solver = HeatSolver1D(LINE, nu=0.01, dt=1e-4)
    with pytest.raises(ValueError) as refused:
        solver.nu = np.linspace(0.005, 0.035, 256).reshape(16, 16)
    shown = str(refused.value)
    assert "nu=(0.005, 0.00511764705882353, 0.005235294117647059, ..., 0.035)" in shown
    assert "(shape (16, 16), 256 values)" in shown and len(shown) < 300


class _OwnNames(GridSolver):
    """A PDE of one's own naming its grid and boundary conditions as it likes."""

    PARAMETERS = _Diffusion.PARAMETERS

    def __init__(self, mesh, boundary=None, *, kappa, dt):
        super().__init__(mesh, boundary, parameters={"kappa": kappa}, dt=dt)


def test_settings_leave_out_the_grid_and_boundary_conditions_by_position_not_by_name():
    """settings() raised "the constructor takes mesh=, which the solver keeps no attribute
    'mesh' for"."""
    solver = _OwnNames(LINE, None, kappa=0.02, dt=1e-4)
    assert solver.settings() == {"kappa": 0.02, "dt": 1e-4}
    sorption = DiffusionSorptionSolver1D(LINE, D=1e-3, dt=1e-3)
    settings = sorption.settings()
    assert settings["D"] == 1e-3 and "grid" not in settings
    assert DiffusionSorptionSolver1D(LINE, **settings).settings() == settings
