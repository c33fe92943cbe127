"""A batched bridge rollout that steps its samples one by one reports the blow-up the batch's
``solver.rollout`` reports: the earliest checked step, the first sample there (each sample with
its own time step and parameters), and that sample's last good state."""

import numpy as np
import pytest
from test_bridge_blowup_saves import U0, X, _assert_same_blow_up, _burgers, _reports

SINE = np.sin(2 * np.pi * X)


def test_sample_by_sample_a_later_sample_blowing_up_between_saves_is_found():
    """Saves every 10 steps, checks every step: sample 0 (amplitude 3) blows up at 19, sample 1
    (amplitude 4) at 13, which a run of sample 1 to step 10 (19 rounded down) misses."""
    solver = _burgers("imex", 0.05, check_every=1)
    error = _assert_same_blow_up(solver, SINE[None] * np.array([3.0, 4.0])[:, None], 200, 10)
    assert (error.step, error.last_good_step) == (13, 12)


def test_sample_by_sample_a_later_sample_is_reported_at_a_step_the_rollout_checks():
    """Checks every 7 steps and saves every 10: sample 1's blow-up at 13 is seen at 14, not at 13
    (a later run saving every step would check 13)."""
    solver = _burgers("imex", 0.05, check_every=7)
    error = _assert_same_blow_up(solver, SINE[None] * np.array([3.0, 4.0])[:, None], 200, 10)
    assert (error.step, error.last_good_step) == (14, 10)


def test_sample_by_sample_a_tie_reports_the_first_sample():
    """Saves every 25 steps, checks every 50: samples 0 (blows up at 19) and 1 (at 13) are both
    first seen at step 25; the batch reports sample 0 and its state at step 0."""
    solver = _burgers("imex", 0.05, check_every=50)
    u0 = SINE[None] * np.array([3.0, 4.0])[:, None]
    error = _assert_same_blow_up(solver, u0, 200, 25)
    assert error.step == 25
    np.testing.assert_array_equal(error.last_good_state, u0[0])


def test_sample_by_sample_later_samples_step_with_their_own_dt():
    """solver.dt is stable; the samples' own dt are not: sample 1 (amplitude 4, dt 0.05) blows
    up at 13, before sample 0 (amplitude 3) at 19. A later sample run at solver.dt never blows
    up."""
    solver = _burgers("imex", 1e-3, check_every=1)
    u0 = SINE[None] * np.array([3.0, 4.0])[:, None]
    error = _assert_same_blow_up(solver, u0, 200, 1, dt=np.array([0.05, 0.05]))
    assert _reports(error) == (13, pytest.approx(0.65), 12)


def test_a_batch_reports_its_first_blown_sample_s_state_and_time():
    """Fused Burgers, per-sample dt, saves every 10 steps, checks every 50: samples 1 and 2
    (dt 2e-2) are NaN from step 5, sample 0 (dt 3e-3) from step 25. The check at step 50 finds
    step 10 the first non-finite one, and sample 1 its first sample there (at step 50 sample 0
    is NaN too): the report is sample 1's state at step 0 and t = 10 * 2e-2."""
    solver = _burgers()
    u0 = np.stack([U0, 0.5 * U0, U0])
    error = _assert_same_blow_up(solver, u0, 210, 10, dt=np.array([3e-3, 2e-2, 2e-2]))
    assert _reports(error) == (10, pytest.approx(0.2), 0)
    np.testing.assert_array_equal(error.last_good_state, u0[1])


def test_sample_by_sample_later_samples_step_with_their_own_parameters():
    """Sample 1 (amplitude 4) blows up at 13 with the solver's nu = 0.05 but not with its own
    nu = 5 (IMEX: implicit diffusion damps it): the batch reports sample 0's blow-up at 19."""
    solver = _burgers("imex", 0.05, check_every=1)
    u0 = SINE[None] * np.array([3.0, 4.0])[:, None]
    error = _assert_same_blow_up(solver, u0, 200, 1, parameters={"nu": np.array([0.05, 5.0])})
    assert error.step == 19
