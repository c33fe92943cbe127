"""An IMEX rollout that blows up: its implicit solve finds the right-hand side NaN/Inf, and
``solver.rollout``, the bridge and ``physml solve`` report a BlowUpError at that step."""

import numpy as np
import pytest
import torch

from physml import bridge
from physml.cli import main
from physml.datasets import problems
from physml.solvers import BurgersSolver2D, Grid
from physml.solvers.base import GridSolver
from physml.solvers.errors import BlowUpError

GRID = Grid((12, 10), (0.0, 0.0), (1.0, 1.0))


def unchecked_imex(check_every: int) -> BurgersSolver2D:
    """Burgers in 2D by IMEX at dt = 0.05, past the advection limit for the states below: the
    stability check is switched off so that the rollout reaches its blow-up."""
    solver = BurgersSolver2D(GRID, nu=0.02, dt=0.05, scheme="imex", check_every=check_every)
    solver.check_stability = lambda u=None, bound=None: None
    return solver


def wave(amplitude: float) -> np.ndarray:
    """A sine wave along x of the given amplitude (3: the step 12 blows up, 4: step 11, 6
    and 7: step 10 at dt = 0.05; 1.5: none within 40 steps)."""
    x, y = np.meshgrid(GRID.coords(0), GRID.coords(1), indexing="ij")
    return amplitude * np.sin(2 * np.pi * x) + 1e-3 * np.cos(15 * np.pi * y)


def blow_up_of(run) -> BlowUpError:
    with pytest.raises(BlowUpError) as caught:
        run()
    return caught.value


def assert_same_blow_up(got: BlowUpError, want: BlowUpError) -> None:
    assert (got.step, got.t, got.last_good_step) == (want.step, want.t, want.last_good_step)
    np.testing.assert_array_equal(got.last_good_state, want.last_good_state)


def test_a_step_checked_each_step_reports_the_state_before_it():
    solver = unchecked_imex(check_every=1)
    error = blow_up_of(lambda: solver.rollout(wave(3.0), 40, 1))
    assert (error.step, error.t, error.last_good_step) == (12, 12 * 0.05, 11)
    np.testing.assert_array_equal(error.last_good_state, solver.rollout(wave(3.0), 11, 11)[-1])


def test_the_step_it_happens_in_is_reported_with_the_last_saved_state():
    """Saves every 4 steps, checks every 7: the state becomes NaN/Inf in step 12, which the
    solve finds there; the last state saved before it is step 8's."""
    solver = unchecked_imex(check_every=7)
    error = blow_up_of(lambda: solver.rollout(wave(3.0), 40, 4))
    assert (error.step, error.last_good_step) == (12, 8)
    np.testing.assert_array_equal(error.last_good_state, solver.rollout(wave(3.0), 8, 8)[-1])
    assert_same_blow_up(blow_up_of(lambda: bridge.rollout(solver, torch.tensor(wave(3.0)), 40,
                                                          4)), error)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_a_batch_reports_its_first_sample_at_the_earliest_step_in_the_bridge_too(
        requires_grad):
    """Samples blowing up at steps 11, none, 10 and 10: the third, at step 10, as for the
    explicit schemes (its state, not the fourth's, is the last good one)."""
    solver = unchecked_imex(check_every=3)
    u0 = np.stack([wave(4.0), wave(1.5), wave(6.0), wave(7.0)])
    dt = np.full(4, 0.05)
    error = blow_up_of(lambda: solver.rollout(u0, 40, 2, dt=dt))
    assert (error.step, error.t, error.last_good_step) == (10, 10 * 0.05, 9)
    np.testing.assert_array_equal(error.last_good_state,
                                  solver.rollout(wave(6.0), 9, 9)[-1])
    tensor = torch.tensor(u0, requires_grad=requires_grad)
    assert_same_blow_up(blow_up_of(lambda: bridge.rollout(solver, tensor, 40, 2,
                                                          dt=torch.tensor(dt))), error)


def test_a_sample_of_its_own_time_step_is_found_in_the_batch():
    """Both samples at amplitude 4: at dt 0.03 the 13th step blows up, at 0.05 the 11th."""
    solver = unchecked_imex(check_every=5)
    u0 = np.stack([wave(4.0), wave(4.0)])
    dt = np.array([0.03, 0.05])
    error = blow_up_of(lambda: solver.rollout(u0, 40, 1, dt=dt))
    assert (error.step, error.t, error.last_good_step) == (11, 11 * 0.05, 10)
    np.testing.assert_array_equal(error.last_good_state,
                                  solver.rollout(u0[1], 10, 10)[-1])
    assert_same_blow_up(blow_up_of(lambda: bridge.rollout(solver, torch.tensor(u0), 40, 1,
                                                          dt=torch.tensor(dt))), error)


def test_physml_solve_ends_on_its_blow_up_line(capsys, monkeypatch, tmp_path):
    """burgers2d by IMEX from a wave 30 times the problem's, with the stability checks off."""
    build = problems.build_solver

    def steep_wave(*args, **options):
        solver, u0 = build(*args, **options)
        return solver, 30 * u0

    monkeypatch.setattr(problems, "build_solver", steep_wave)
    monkeypatch.setattr(GridSolver, "check_stability", lambda self, u=None, bound=None: None)
    monkeypatch.setattr(GridSolver, "stable_dt", lambda self, u=None: 1e9)
    out = tmp_path / "u.h5"
    assert main(["solve", "burgers2d", "--nx", "12", "--scheme", "imex", "--dt", "0.05",
                 "--t-end", "5", "--n-saves", "3", "--out", str(out), "--quiet"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("physml: error: u became NaN/Inf at step 12 (t=0.6); last finite "
                           "state kept from step 0")
    assert (tmp_path / "u.last_good.h5").is_file()
