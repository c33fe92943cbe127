"""A blow-up in ``physml.bridge.rollout`` is found at the steps ``solver.rollout`` checks (every
saved step, every ``check_every``-th step, the last) and reported as it reports it; no saved
state holding a NaN/Inf is returned."""

import numpy as np
import pytest
import torch

from physml import bridge
from physml.solvers import BurgersSolver1D, Grid, HeatSolver1D, periodic
from physml.solvers.errors import BlowUpError

GRID = Grid((64,), (0.0,), (1.0,))
X = GRID.coords(0)
U0 = np.sin(2 * np.pi * X) + 1e-3 * np.cos(31 * np.pi * X)


def _unchecked(solver, dt):
    """``solver`` stepping with ``dt``, its stability check switched off (to reach a blow-up)."""
    solver.dt = dt
    solver.check_stability = lambda u=None, bound=None: None
    return solver


def _burgers(scheme="ssp_rk3", dt=2e-2, check_every=50):
    """Burgers at ``dt`` far above its stable step: the explicit one is NaN from step 5."""
    return _unchecked(BurgersSolver1D(GRID, periodic(1), nu=0.05, dt=1e-5, scheme=scheme,
                                      check_every=check_every), dt)


def _reports(error):
    return error.step, error.t, error.last_good_step


def _assert_same_blow_up(solver, u0, n_steps, save_every, requires_grad=False, *, dt=None,
                         parameters=None):
    """The bridge's blow-up is ``solver.rollout``'s (step, time, last good step and state), for
    per-sample ``dt`` and ``parameters`` (NumPy arrays) too."""
    with pytest.raises(BlowUpError) as wanted:
        solver.rollout(u0, n_steps, save_every, dt=dt, parameters=parameters)
    tensors = {name: torch.tensor(value) for name, value in (parameters or {}).items()}
    with pytest.raises(BlowUpError) as got:
        bridge.rollout(solver, torch.tensor(u0, requires_grad=requires_grad), n_steps, save_every,
                       tensors, dt=None if dt is None else torch.tensor(dt))
    assert _reports(got.value) == _reports(wanted.value)
    np.testing.assert_array_equal(got.value.last_good_state, wanted.value.last_good_state)
    return got.value


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("save_every, step", [(1, 5), (10, 10), (30, 30), (105, 50)])
def test_a_blow_up_is_reported_at_the_step_the_numpy_rollout_reports(save_every, step, batched,
                                                                     requires_grad):
    """Checks every 50 steps; the saved steps are checked too, as ``solver.rollout`` does."""
    u0 = np.stack([0.1 * U0, U0, U0]) if batched else U0
    error = _assert_same_blow_up(_burgers(), u0, 210, save_every, requires_grad)
    assert error.step == step


def _heat(dt=2e-3, check_every=50):
    """Heat at 20 times its stable step: NaN from step 67."""
    return _unchecked(HeatSolver1D(GRID, periodic(1), nu=1.0, dt=1e-5, check_every=check_every),
                      dt)


@pytest.mark.parametrize("make, u0, reports", [
    (lambda: _burgers("imex", 0.05, check_every=7), 4.0 * U0, (14, 0.7, 10)),
    (_heat, U0, (70, 0.14, 60)),
])
def test_a_blow_up_after_a_saved_step_keeps_its_state_as_the_last_good_one(make, u0, reports):
    """Saves every 10 steps: the state saved at the checked step before the blow-up is the last
    finite one."""
    error = _assert_same_blow_up(make(), u0, 200, 10)
    assert _reports(error) == pytest.approx(reports)


def test_a_batch_stepped_sample_by_sample_reports_the_earliest_blow_up():
    """IMEX steps sample by sample; alone, sample 0 (amplitude 3) blows up at step 19, sample 1
    (amplitude 4) at step 13: the batch reports sample 1, as the batch's ``solver.rollout``
    does (every step checked)."""
    solver = _burgers("imex", 0.05, check_every=1)
    u0 = np.sin(2 * np.pi * X)[None] * np.array([3.0, 4.0, 3.0])[:, None]
    error = _assert_same_blow_up(solver, u0, 200, 1)
    assert (error.step, error.last_good_step) == (13, 12)


def _poison_step(monkeypatch, step, sample):
    """The bridge's ``step``-th step returns a NaN in ``sample`` while the next step goes on
    from the finite state (a non-finite state that the following states do not show)."""
    call = bridge._Stepper.__call__
    count = {"n": 0}

    def poisoned(self, u):
        out = call(self, u)
        count["n"] += 1
        if count["n"] == step:
            out.view(-1, GRID.size)[sample, 3] = float("nan")
        return out

    monkeypatch.setattr(bridge._Stepper, "__call__", poisoned)


@pytest.mark.parametrize("batched", [False, True])
def test_a_saved_state_holding_a_nan_is_never_returned(monkeypatch, batched):
    solver = _burgers(dt=1e-4)
    u0 = np.stack([U0, U0]) if batched else U0
    _poison_step(monkeypatch, 2, 1 if batched else 0)
    with pytest.raises(BlowUpError) as error:
        bridge.rollout(solver, torch.tensor(u0), 6)
    assert _reports(error.value) == (2, 2e-4, 1)
    np.testing.assert_array_equal(error.value.last_good_state,
                                  solver.rollout(u0, 1)[..., 1, :].reshape(-1, 64)[-1])


def test_a_state_whose_sum_overflows_is_not_a_blow_up():
    """A constant $10^{307}$ stays put under diffusion; its sum over 64 cells is infinite."""
    solver = HeatSolver1D(GRID, periodic(1), nu=0.1, dt=1e-5)
    out = bridge.rollout(solver, torch.full((2, 64), 1e307, dtype=torch.float64), 4, 2)
    np.testing.assert_array_equal(out.numpy(), solver.rollout(np.full((2, 64), 1e307), 4, 2))
