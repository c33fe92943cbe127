"""A rollout's callback: a mapping in its place (the 4th positional argument of
``solver.rollout``, where the bridge's is ``parameters``) or any other value that is not
callable is refused before a step runs; a callable hears of every step."""

import numpy as np
import pytest

from physml.solvers import Grid, HeatSolver1D, NavierStokesSolver2D, periodic

GRID = Grid((16,), (0.0,), (1.0,))
U0 = np.sin(2 * np.pi * np.linspace(0.0, 1.0, 16, endpoint=False))


def _heat() -> HeatSolver1D:
    return HeatSolver1D(GRID, periodic(1), nu=0.01, dt=1e-3)


def _navier_stokes() -> NavierStokesSolver2D:
    return NavierStokesSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), nu=1e-3, dt=1e-3)


def test_parameters_given_in_the_place_of_the_callback_are_refused_naming_the_keyword():
    with pytest.raises(TypeError, match=r"callback is a dict, not a callable: the 4th "
                                         r"positional argument is callback; pass "
                                         r"parameters=\.\.\."):
        _heat().rollout(U0, 2, 1, {"nu": 0.02})


def test_a_callback_that_is_not_callable_is_refused_before_a_step_runs():
    with pytest.raises(TypeError, match=r"callback=3 is not callable"):
        _heat().rollout(U0, 2, 1, 3)


def test_a_navier_stokes_rollout_refuses_a_mapping_as_its_callback():
    solver = _navier_stokes()
    with pytest.raises(TypeError, match=r"NavierStokesSolver2D\.rollout: callback is a dict, "
                                         r"not a callable: the 4th positional argument is "
                                         r"callback; set the parameters on the solver"):
        solver.rollout(np.zeros((8, 8)), 2, 1, {"nu": 0.02})


@pytest.mark.parametrize("make, u0", [(_heat, U0), (_navier_stokes, np.zeros((8, 8)))])
def test_a_callable_callback_hears_of_every_step(make, u0):
    heard = []
    make().rollout(u0, 3, 1, heard.append)
    assert heard == [1, 2, 3]
