"""Time steps of the bridge's rollout: ``dt`` one value or one per sample, bitwise the NumPy
rollout's, each sample's adjoint stepping with its own, and no gradient to ``dt`` itself."""

import numpy as np
import pytest
import torch

from physml import bridge
from physml.errors import BlowUpError
from physml.solvers import (
    AdvectionSolver2D,
    BurgersSolver1D,
    DiffusionReactionSolver1D,
    DiffusionSorptionSolver1D,
    Grid,
    HeatSolver1D,
    periodic,
    step_adjoint,
)

GRID = Grid((16,), (0.0,), (1.0,))
X = np.linspace(0.0, 1.0, 16, endpoint=False)
U0 = np.stack([np.sin(2 * np.pi * X), 0.5 * np.cos(2 * np.pi * X), np.sin(4 * np.pi * X)])
DT = np.array([1e-3, 5e-4, 2e-3])


def _burgers(dt: float | None = 1e-3) -> BurgersSolver1D:
    return BurgersSolver1D(GRID, periodic(1), nu=0.01, dt=dt)


def _heat_imex(dt: float | None = 1e-3) -> HeatSolver1D:
    return HeatSolver1D(GRID, periodic(1), nu=0.01, dt=dt, scheme="imex")


def _sorption(dt: float | None = 1e-3) -> DiffusionSorptionSolver1D:
    """A PDE with its own right-hand side: the batch runs sample by sample."""
    return DiffusionSorptionSolver1D(GRID, dt=dt)


@pytest.mark.parametrize("make", [_burgers, _heat_imex])
@pytest.mark.parametrize("dt", [DT, torch.tensor(DT), 7e-4])
def test_a_rollout_with_time_steps_is_bitwise_the_numpy_rollout(make, dt):
    solver = make()
    wanted = solver.rollout(U0, 6, 2, dt=dt.numpy() if isinstance(dt, torch.Tensor) else dt)
    got = bridge.rollout(solver, torch.tensor(U0), 6, 2, dt=dt)
    assert np.array_equal(got.numpy(), wanted)
    assert not np.array_equal(got.numpy(), solver.rollout(U0, 6, 2))


@pytest.mark.parametrize("native", [True, False])
def test_per_sample_time_steps_pass_a_float64_gradcheck_with_checkpoints(native, monkeypatch):
    if not native:  # the backward on Warp's tape, as on a GPU
        monkeypatch.setattr(step_adjoint, "supported", lambda solver: False)
    solver = _burgers()
    u0 = torch.tensor(U0, requires_grad=True)
    nu = torch.tensor([0.01, 0.02, 0.015], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, v: bridge.rollout(solver, u, 4, 1, {"nu": v}, checkpoint_every=2, dt=DT),
        (u0, nu))


@pytest.mark.parametrize("beta", [[1.0, 0.5], [[1.0, 0.5], [0.3, -0.7], [0.8, 0.2]]])
def test_a_velocity_shared_or_per_sample_gets_its_gradient_from_every_time_step(beta):
    """The samples of one time step share a reverse pass: a shared velocity's cotangent sums
    over them, a per-sample one's rows come from theirs (the unlimited reconstruction: smooth
    in the state)."""
    solver = AdvectionSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), periodic(2),
                               beta=(1.0, 0.5), dt=1e-3, limiter="none")
    u0 = torch.tensor(np.random.default_rng(0).random((3, 8, 8)), requires_grad=True)
    velocity = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, v: bridge.rollout(solver, u, 4, 2, {"beta": v}, dt=DT), (u0, velocity))


def test_the_imex_rollout_with_per_sample_time_steps_passes_a_gradcheck():
    solver = _heat_imex()
    u0 = torch.tensor(U0[:2], requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: bridge.rollout(solver, u, 3, dt=DT[:2]), (u0,))


@pytest.mark.parametrize("native", [True, False])
def test_each_sample_gradient_is_that_of_a_solver_built_with_its_time_step(native, monkeypatch):
    if not native:
        monkeypatch.setattr(step_adjoint, "supported", lambda solver: False)
    solver = _burgers()
    u0 = torch.tensor(U0, requires_grad=True)
    nu = torch.tensor([0.01, 0.02, 0.015], dtype=torch.float64, requires_grad=True)
    bridge.rollout(solver, u0, 6, 2, {"nu": nu}, checkpoint_every=2, dt=DT).square().sum(
    ).backward()
    for b in range(len(DT)):
        u_b = torch.tensor(U0[b], requires_grad=True)
        nu_b = nu[b:b + 1].detach().clone().requires_grad_()
        bridge.rollout(_burgers(DT[b]), u_b, 6, 2, {"nu": nu_b}).square().sum().backward()
        assert torch.equal(u0.grad[b], u_b.grad)
        assert torch.equal(nu.grad[b:b + 1], nu_b.grad)


def test_vmap_over_a_rollout_with_one_time_step_is_the_batched_rollout():
    solver = _burgers()
    u0 = torch.tensor(U0)
    got = torch.func.vmap(lambda u: bridge.rollout(solver, u, 4, 2, dt=7e-4))(u0)
    assert torch.equal(got, bridge.rollout(solver, u0, 4, 2, dt=7e-4))


def test_a_time_step_that_requires_grad_is_refused():
    dt = torch.tensor(DT, requires_grad=True)
    with pytest.raises(ValueError, match=r"dt is a tensor that requires grad.*no gradient "
                                         r"with respect to dt.*dt\.detach\(\)"):
        bridge.rollout(_burgers(), torch.tensor(U0), 2, dt=dt)


@pytest.mark.parametrize("dt, message", [
    (np.array([1e-3, 1e-3]), r"dt has shape \(2,\); expected one value or one per sample \(3,\)"),
    (np.array([1e-3, -1e-3, 1e-3]), "must be positive numbers"),
    (1e-60, "is 0.0 in float32"),
])
def test_bad_time_steps_are_refused_as_the_numpy_rollout_refuses_them(dt, message):
    solver = BurgersSolver1D(GRID, periodic(1), nu=0.01, dt=1e-3, dtype="float32")
    with pytest.raises(ValueError, match=message):
        bridge.rollout(solver, torch.tensor(U0), 2, dt=dt)


def test_a_time_step_too_large_for_a_sample_is_refused_naming_the_sample():
    with pytest.raises(ValueError, match="sample 1 of the batch of 3"):
        bridge.rollout(_burgers(), torch.tensor(U0), 2, dt=np.array([1e-3, 1.0, 1e-3]))


def test_vmap_over_time_steps_is_refused_naming_the_batched_rollout():
    rollout = torch.func.vmap(lambda u, h: bridge.rollout(_burgers(), u, 4, 2, dt=h))
    with pytest.raises(ValueError, match=r"dt is a tensor inside a torch.func transform.*dt of "
                                         r"shape \(B,\) to one batched rollout"):
        rollout(torch.tensor(U0), torch.tensor(DT))


@pytest.mark.parametrize("built_dt", [1e-3, None])
def test_a_batch_blow_up_carries_the_first_blown_samples_state_as_the_numpy_rollout(built_dt):
    """Fisher's $u_t = \\nu u_{xx} + \\rho u (1 - u)$ from $u_0 = -1$ runs to $-\\infty$ in
    finite time (sample 1), with each step well inside its stability limit."""
    solver = DiffusionReactionSolver1D(GRID, periodic(1), nu=0.001, rho=20.0, dt=built_dt,
                                       scheme="rk4")
    solver.check_every = 10
    u0 = np.stack([np.full(16, 0.5), np.full(16, -1.0), np.full(16, 0.5)])
    dts = np.array([1e-3, 2e-3, 4e-3])
    with pytest.raises(BlowUpError) as numpy_error:
        solver.rollout(u0, 200, 10, dt=dts)
    with pytest.raises(BlowUpError) as bridge_error:
        bridge.rollout(solver, torch.tensor(u0), 200, 10, dt=dts)
    wanted, got = numpy_error.value, bridge_error.value
    assert (got.step, got.t, got.last_good_step) == (wanted.step, wanted.t, wanted.last_good_step)
    assert got.last_good_step > 0 and got.t == got.step * dts[1]
    assert np.array_equal(got.last_good_state, wanted.last_good_state)
    assert got.last_good_state.shape == GRID.shape


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("make", [_burgers, _heat_imex, _sorption])
@pytest.mark.parametrize("u0, dt", [(U0, DT), (U0, 7e-4), (U0[1], 7e-4)])
def test_a_solver_built_without_dt_differentiates_with_the_time_steps_given(make, u0, dt, native,
                                                                            monkeypatch):
    """Bitwise the rollout and gradient of a solver built with a dt of its own."""
    if not native:
        monkeypatch.setattr(step_adjoint, "supported", lambda solver: False)
    u0 = 0.1 * (u0 + 1.5)  # a concentration, for the sorption
    results = []
    for solver in (make(None), make(1e-3)):
        u = torch.tensor(u0, requires_grad=True)
        out = bridge.rollout(solver, u, 4, 2, checkpoint_every=2, dt=dt)
        out.square().sum().backward()
        results.append((out.detach(), u.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert np.array_equal(results[0][0].numpy(), make(None).rollout(u0, 4, 2, dt=dt))


def test_a_solver_built_without_dt_refuses_a_rollout_given_none():
    with pytest.raises(ValueError, match=r"dt is not set: build the solver with dt=\.\.\."):
        bridge.rollout(_burgers(None), torch.tensor(U0), 2)
