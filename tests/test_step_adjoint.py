"""The native adjoint of a fused Runge–Kutta step against Warp's generated adjoint."""

import threading

import numpy as np
import pytest
import torch
import warp as wp
from test_batched import CASES, ROW_CASES, initial_states

from physml import bridge
from physml.solvers import (
    AdvectionSolver2D,
    BurgersSolver1D,
    Grid,
    HeatSolver2D,
    dirichlet,
    step_adjoint,
)

FUSED = {name: solver for name, (solver, _) in CASES.items() if step_adjoint.supported(solver)}
FUSED |= {f"rows_{name}": solver for name, solver in ROW_CASES.items()}


def tape_vjp(solver, u0, values, adjoint):
    """Warp's generated adjoint of one step (the per-cell stage kernel on a tape)."""
    params = solver.batch_parameter_arrays(len(u0), values)
    u = wp.array(u0.ravel(), dtype=solver.dtype, requires_grad=True)
    params = {k: wp.array(v.numpy(), dtype=solver.dtype, requires_grad=True)
              for k, v in params.items()}
    tape = wp.Tape()
    with tape:
        out = solver.advance(u, params, tape=tape)
    tape.backward(grads={out: wp.array(adjoint, dtype=solver.dtype)})
    return u.grad.numpy(), {k: v.grad.numpy() for k, v in params.items()}


def native_vjp(solver, u0, values, adjoint, steps=1):
    params = solver.batch_parameter_arrays(len(u0), values)
    sweep = step_adjoint.ExplicitStepAdjoint(solver, params, len(u0))
    for _ in range(steps):
        u_bar = sweep.vjp(u0.ravel(), adjoint)
    return u_bar, sweep.parameter_grads()


def parameter_options(solver, batch, rng):
    """No values, per-sample values, and a field per sample of every field-able parameter."""
    options = [{}]
    for name in (solver.diffusion_parameter, solver.reaction_parameter):
        if name is not None:
            scale = getattr(solver, name)
            options.append({name: scale * (1 + rng.random(batch))})
            options.append({name: scale * (1 + 0.5 * rng.random((batch, *solver.grid.shape)))})
    if solver.velocity_parameter is not None:
        velocity = np.atleast_1d(getattr(solver, solver.velocity_parameter))
        options.append({solver.velocity_parameter: velocity * (1 + rng.random((batch, 1)))})
    return options


def assert_close(native, reference, rtol):
    scale = max(np.abs(reference).max(), 1e-300)
    assert native.shape == reference.shape
    assert np.abs(native - reference).max() <= rtol * scale


@pytest.mark.parametrize("case", sorted(FUSED))
def test_native_step_adjoint_is_warps_generated_adjoint(case):
    solver = FUSED[case]
    rng = np.random.default_rng(7)
    u0 = initial_states(solver.grid, 3, seed=1)
    adjoint = rng.standard_normal(u0.size)
    for values in parameter_options(solver, 3, rng):
        reference_u, reference_p = tape_vjp(solver, u0, values, adjoint)
        u_bar, grads = native_vjp(solver, u0, values, adjoint)
        assert_close(u_bar, reference_u, 1e-12)
        assert set(grads) == set(reference_p)
        for name in grads:  # a parameter's cotangent sums many cells: rounding grows
            assert_close(grads[name], reference_p[name], 1e-11)


def test_parameter_cotangents_add_up_over_the_steps_of_a_sweep():
    solver, values = CASES["allen_cahn1d"]
    u0 = initial_states(solver.grid, 3, seed=2)
    adjoint = np.random.default_rng(3).standard_normal(u0.size)
    _, once = native_vjp(solver, u0, values, adjoint)
    _, thrice = native_vjp(solver, u0, values, adjoint, steps=3)
    for name in once:
        np.testing.assert_allclose(thrice[name], 3 * once[name], rtol=1e-13)


def test_float32_step_adjoint_matches_warps():
    grid = Grid((48, 40), (0.0, 0.0), (1.0, 1.0))
    solver = HeatSolver2D(grid, dirichlet(2, 0.3), nu=0.01, dt=2e-4, dtype="float32")
    u0 = initial_states(grid, 2, seed=4).astype(np.float32)
    adjoint = np.random.default_rng(5).standard_normal(u0.size).astype(np.float32)
    reference_u, reference_p = tape_vjp(solver, u0, {}, adjoint)
    u_bar, grads = native_vjp(solver, u0, {}, adjoint)
    assert u_bar.dtype == np.float32
    assert_close(u_bar, reference_u, 1e-5)
    assert_close(grads["nu"], reference_p["nu"], 1e-4)


def test_a_cpu_rollout_backward_takes_the_native_adjoint(monkeypatch):
    grid = Grid((64,), (0.0,), (1.0,))
    solver = BurgersSolver1D(grid, dirichlet(1, 0.2), nu=0.01, dt=2e-3)
    u0 = torch.tensor(initial_states(grid, 2, seed=6), requires_grad=True)
    nu = torch.tensor([0.01, 0.02], dtype=torch.float64, requires_grad=True)
    loss = bridge.rollout(solver, u0, 10, parameters={"nu": nu})[:, -1].square().sum()
    native = torch.autograd.grad(loss, (u0, nu), retain_graph=True)

    def tape_only(*args):
        raise AssertionError("the tape adjoint ran")

    monkeypatch.setattr(bridge, "_vjp", tape_only)
    again = torch.autograd.grad(loss, (u0, nu))
    for a, b in zip(native, again):
        assert torch.equal(a, b)
    monkeypatch.undo()
    monkeypatch.setattr(step_adjoint, "supported", lambda solver: False)
    loss = bridge.rollout(solver, u0, 10, parameters={"nu": nu})[:, -1].square().sum()
    for a, b in zip(native, torch.autograd.grad(loss, (u0, nu))):  # the tape's, to rounding
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", ["burgers_none", "burgers_minmod", "burgers_van_leer",
                                  "burgers_mc", "advection2d_mc"])
def test_kinks_take_the_branch_warps_adjoint_takes(case):
    # states on a grid of quarters: equal slopes (limiter ties), zero slopes and |u_L| = |u_R|
    # on every row, where the one-sided derivatives differ
    solver = ROW_CASES[case]
    rng = np.random.default_rng(8)
    u0 = rng.integers(-2, 3, size=(2, *solver.grid.shape)) / 4.0
    u0[0, ..., ::3] = u0[0, ..., 1::3]  # runs of equal values
    adjoint = rng.standard_normal(u0.size)
    reference_u, reference_p = tape_vjp(solver, u0, {}, adjoint)
    u_bar, grads = native_vjp(solver, u0, {}, adjoint)
    assert_close(u_bar, reference_u, 1e-12)
    for name in grads:
        assert_close(grads[name], reference_p[name], 1e-11)


@pytest.mark.parametrize("scheme", ["euler", "heun", "rk4"])
def test_every_scheme_with_a_resting_velocity_component_and_a_shared_field(scheme):
    # a velocity component of exactly 0 (|a| has slope 1 there, as in Warp's adjoint), one
    # field shared by the samples, a batch of one
    grid = Grid((12, 9), (0.0, 0.0), (1.0, 1.0))
    solver = AdvectionSolver2D(grid, beta=(0.5, 0.0), dt=2e-3, scheme=scheme)
    heat = HeatSolver2D(grid, dirichlet(2, 0.1), nu=0.02, dt=2e-4, scheme=scheme)
    rng = np.random.default_rng(10)
    cases = [(solver, 2, {}), (solver, 2, {"beta": np.array([[0.5, 0.0], [0.0, -0.3]])}),
             (solver, 1, {}), (heat, 2, {"nu": 0.02 * (1 + rng.random((1, *grid.shape)))})]
    for model, batch, values in cases:
        u0 = initial_states(grid, batch, seed=11)
        adjoint = rng.standard_normal(u0.size)
        reference_u, reference_p = tape_vjp(model, u0, values, adjoint)
        u_bar, grads = native_vjp(model, u0, values, adjoint)
        assert_close(u_bar, reference_u, 1e-12)
        for name in grads:
            assert_close(grads[name], reference_p[name], 1e-11)


def test_the_reverse_pass_waits_for_a_rollout_holding_the_stages():
    # the stage inputs are recomputed with the stages' recorded launches, which a rollout in
    # another thread may be replaying or capturing: the reverse pass takes their lock
    grid = Grid((64,), (0.0,), (1.0,))
    solver = BurgersSolver1D(grid, dirichlet(1, 0.2), nu=0.01, dt=2e-3)
    u0 = torch.tensor(initial_states(grid, 2, seed=12), requires_grad=True)
    loss = bridge.rollout(solver, u0, 5)[:, -1].square().sum()
    expected = torch.autograd.grad(loss, u0, retain_graph=True)[0]
    result = {}
    worker = threading.Thread(target=lambda: result.update(g=torch.autograd.grad(loss, u0)[0]))
    with solver.stages.step_lock:
        worker.start()
        worker.join(0.3)
        assert worker.is_alive()  # waiting for the lock
    worker.join()
    assert torch.equal(result["g"], expected)
