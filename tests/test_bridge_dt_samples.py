"""Per-sample time steps in :func:`physml.bridge.rollout` where samples share a step (the
gradients of each stay its own, on the native and the tape backward, through checkpoints), the
time a blow-up reports, each sample's step checked, ``vmap`` over a batch with its own steps, and
the sample-by-sample (IMEX) path checking each sample with its own step."""
import numpy as np
import pytest
import torch

from physml import bridge
from physml.solvers import BurgersSolver1D, Grid, periodic, step_adjoint
from physml.solvers.errors import BlowUpError

GRID = Grid((16,), (0.0,), (1.0,))
X = np.linspace(0.0, 1.0, 16, endpoint=False)
U0 = np.stack([np.sin(2 * np.pi * X), 0.5 * np.cos(2 * np.pi * X), np.sin(4 * np.pi * X)])
DT = np.array([1e-3, 5e-4, 2e-3])
SHARED = np.array([1e-3, 5e-4, 1e-3])  # samples 0 and 2 share a time step: a group of two


def _burgers(dt=1e-3, **kw):
    return BurgersSolver1D(GRID, periodic(1), nu=0.01, dt=dt, **kw)


@pytest.mark.parametrize("native", [True, False])
def test_samples_sharing_a_time_step_get_their_own_gradients(native, monkeypatch):
    if not native:
        monkeypatch.setattr(step_adjoint, "supported", lambda solver: False)
    u0 = torch.tensor(U0, requires_grad=True)
    nu = torch.tensor([0.01, 0.02, 0.015], dtype=torch.float64, requires_grad=True)
    bridge.rollout(_burgers(), u0, 6, 2, {"nu": nu}, checkpoint_every=2, dt=SHARED
                   ).square().sum().backward()
    for b in range(3):
        u_b = torch.tensor(U0[b], requires_grad=True)
        nu_b = nu[b:b + 1].detach().clone().requires_grad_()
        bridge.rollout(_burgers(SHARED[b]), u_b, 6, 2, {"nu": nu_b}).square().sum().backward()
        torch.testing.assert_close(u0.grad[b], u_b.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(nu.grad[b:b + 1], nu_b.grad, rtol=1e-12, atol=1e-14)


def test_a_blow_up_reports_the_time_of_the_sample_that_blew_up(monkeypatch):
    call = bridge._Stepper.__call__
    count = {"n": 0}

    def poisoned(self, u):
        out = call(self, u)
        count["n"] += 1
        if count["n"] == 2:
            out.view(3, -1)[1, 3] = float("nan")
        return out

    monkeypatch.setattr(bridge._Stepper, "__call__", poisoned)
    solver = _burgers(check_every=1)
    with pytest.raises(BlowUpError) as error:
        bridge.rollout(solver, torch.tensor(U0), 4, dt=DT)
    assert error.value.step == 2
    assert error.value.t == pytest.approx(2 * DT[1])


@pytest.mark.parametrize("dt, message", [
    (np.array([1e-3, 0.0, 1e-3]), "must be positive numbers"),
    (np.array([1e-3, np.inf, 1e-3]), "must be positive numbers"),
    (np.array([1e-3, 1e-60, 1e-3]), "is 0.0 in float32"),
])
def test_each_sample_time_step_is_checked(dt, message):
    solver = BurgersSolver1D(GRID, periodic(1), nu=0.01, dt=1e-3, dtype="float32")
    with pytest.raises(ValueError, match=message):
        bridge.rollout(solver, torch.tensor(U0, dtype=torch.float32), 2, dt=dt)


def test_vmap_over_a_batched_rollout_with_per_sample_time_steps():
    solver = _burgers()
    u0 = torch.tensor(np.stack([U0, 0.5 * U0]))
    got = torch.func.vmap(lambda u: bridge.rollout(solver, u, 4, 2, dt=DT))(u0)
    wanted = torch.stack([bridge.rollout(solver, u, 4, 2, dt=DT) for u in u0])
    assert torch.equal(got, wanted)


def test_a_sample_by_sample_rollout_checks_each_sample_with_its_own_time_step():
    solver = _burgers(dt=1.0, scheme="imex")  # solver.dt unstable (CFL), the given ones fine
    got = bridge.rollout(solver, torch.tensor(U0[:2]), 3, dt=DT[:2])
    assert np.array_equal(got.numpy(), solver.rollout(U0[:2], 3, dt=DT[:2]))
