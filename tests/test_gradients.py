"""Gradient checks in float64 of one step and 50-step rollouts, and checkpointed backward."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from physml import bridge
from physml.solvers import (
    BC,
    AdvectionSolver1D,
    AdvectionSolver2D,
    AllenCahnSolver1D,
    AllenCahnSolver2D,
    BoundaryConditions,
    BurgersSolver1D,
    BurgersSolver2D,
    DiffusionReactionSolver1D,
    DiffusionSorptionSolver1D,
    Grid,
    HeatSolver,
    HeatSolver1D,
    HeatSolver2D,
    dirichlet,
    neumann,
)

G1 = Grid((6,), (0.0,), (1.0,))
G2 = Grid((4, 3), (0.0, 0.0), (1.0, 1.0))
G2_WIDE = Grid((5, 5), (0.0, 0.0), (1.0, 1.0))  # the periodic MUSCL stencil needs 5 cells
G3 = Grid((3, 2, 3), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
# Rising Dirichlet data keep the Burgers state monotone, where the limiter and the Rusanov
# speed are smooth functions of the state (they are only piecewise smooth in general).
RISING_1D = BoundaryConditions(((BC("dirichlet", 0.3), BC("dirichlet", 1.0)),))
RISING_2D = BoundaryConditions((RISING_1D.sides[0], RISING_1D.sides[0]))

CASES = {
    "heat1d": (lambda: HeatSolver1D(G1, dirichlet(1, 0.2), nu=0.01, dt=0.02), ["nu"]),
    "heat1d_imex": (lambda: HeatSolver1D(G1, neumann(1, 0.1), nu=0.02, dt=0.05, scheme="imex"),
                    ["nu"]),
    "heat2d": (lambda: HeatSolver2D(G2, nu=0.01, dt=0.02), ["nu"]),
    "heat2d_imex": (
        lambda: HeatSolver2D(G2, dirichlet(2, 0.5), nu=0.05, dt=0.05, scheme="imex"), ["nu"]
    ),
    "heat3d": (lambda: HeatSolver(G3, dirichlet(3, 0.2), nu=0.01, dt=0.02), ["nu"]),
    "heat3d_imex": (
        lambda: HeatSolver(G3, neumann(3, 0.1), nu=0.05, dt=0.05, scheme="imex"), ["nu"]
    ),
    "advection1d": (lambda: AdvectionSolver1D(G1, beta=0.8, dt=0.02), ["beta"]),
    "advection1d_central": (
        lambda: AdvectionSolver1D(G1, beta=0.8, dt=0.02, space="central", scheme="rk4"), ["beta"]
    ),
    "advection2d": (lambda: AdvectionSolver2D(G2_WIDE, beta=(0.5, -0.3), dt=0.02), ["beta"]),
    "burgers1d": (lambda: BurgersSolver1D(G1, RISING_1D, nu=0.01, dt=0.02), ["nu"]),
    "burgers1d_imex": (
        lambda: BurgersSolver1D(G1, RISING_1D, nu=0.05, dt=0.02, scheme="imex"), ["nu"]
    ),
    "burgers2d": (lambda: BurgersSolver2D(G2, RISING_2D, nu=0.01, dt=0.02), ["nu"]),
    "allen_cahn1d": (lambda: AllenCahnSolver1D(G1, nu=0.002, rho=1.0, dt=0.02), ["nu", "rho"]),
    "allen_cahn2d": (lambda: AllenCahnSolver2D(G2, nu=0.002, rho=1.0, dt=0.02), ["nu", "rho"]),
    "diffusion_reaction1d": (
        lambda: DiffusionReactionSolver1D(G1, nu=0.005, rho=2.0, dt=0.02), ["nu", "rho"]
    ),
    "diffusion_sorption1d": (
        lambda: DiffusionSorptionSolver1D(G1, dt=2.0), ["D", "porosity", "k_f", "n_f"]
    ),
}


def rising_state(shape):
    ramps = np.meshgrid(*(np.linspace(0.0, 1.0, n) for n in shape), indexing="ij")
    u = 0.4 + 0.25 * sum(ramps) + 0.01 * np.random.default_rng(1).random(shape)
    return torch.tensor(u, dtype=torch.float64, requires_grad=True)


def inputs(solver, names):
    """State and parameters; parameters are given in units of their value (so each is 1.0)
    and multiplied back inside the checked function, which keeps finite differences of
    tiny constants such as k_f = 3.5e-4 meaningful."""
    params = [torch.ones(np.size(getattr(solver, n)), dtype=torch.float64, requires_grad=True)
              for n in names]
    return rising_state(solver.grid.shape), params


def scaled(solver, names, params):
    return {n: p * torch.as_tensor(np.atleast_1d(getattr(solver, n))) for n, p in
            zip(names, params)}


@pytest.mark.parametrize("n_steps", [1, 6, pytest.param(50, marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck_state_and_parameters(case, n_steps):
    build, names = CASES[case]
    solver = build()
    u0, params = inputs(solver, names)

    def run(u, *p):
        return bridge.rollout(solver, u, n_steps, save_every=max(1, n_steps // 2),
                              parameters=scaled(solver, names, p))

    assert torch.autograd.gradcheck(run, (u0, *params), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("case", ["heat1d_imex", "burgers2d", "diffusion_sorption1d"])
def test_backward_twice_gives_the_same_gradient(case):
    build, names = CASES[case]
    solver = build()
    u0, params = inputs(solver, names)
    out = bridge.rollout(solver, u0, 20, parameters=scaled(solver, names, params))
    loss = (out**2).sum()
    first = torch.autograd.grad(loss, (u0, *params), retain_graph=True)
    second = torch.autograd.grad(loss, (u0, *params))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("linear", [True, False])
def test_a_second_derivative_is_refused_not_zero(linear):
    """A loss linear in the states gives the reverse sweep a constant cotangent: its gradient
    depended on u0 only through the held states, so it came back without a graph and a
    gradient penalty built on it silently added zero. Both kinds of loss now refuse."""
    solver = CASES["burgers1d"][0]()
    u0 = torch.linspace(0.4, 0.9, 6, dtype=torch.float64, requires_grad=True)
    out = bridge.rollout(solver, u0, 5)[-1]
    weights = torch.linspace(1.0, 2.0, 6, dtype=torch.float64)
    loss = (out * weights).sum() if linear else (out**2 * weights).sum()
    (g,) = torch.autograd.grad(loss, u0, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="not differentiable again"):
        (g**2).sum().backward()


def test_backward_passes_on_warp_s_tape_run_from_threads():
    """Warp keeps one active tape per process: two threads' IMEX backward passes (each with
    its own solver) failed with "entering a tape while one is already active"."""
    def gradient(seed):
        solver = CASES["heat1d_imex"][0]()
        u0 = torch.linspace(0.1, 0.6, 6, dtype=torch.float64).add(0.01 * seed)
        u0.requires_grad_()
        (bridge.rollout(solver, u0, 10) ** 2).sum().backward()
        return u0.grad

    serial = [gradient(seed) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(gradient, range(8)))
    for a, b in zip(serial, threaded):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_changing_u0_in_place_before_backward_is_refused():
    """The held states start from u0's memory: an in-place change after the forward pass
    gave a gradient 2.5e-2 off without a word; autograd's version check now refuses it."""
    solver = HeatSolver1D(G1, dirichlet(1, 0.2), nu=0.01, dt=0.02)
    u0 = torch.linspace(0.1, 0.6, 6, dtype=torch.float64, requires_grad=True)
    loss = (bridge.rollout(solver, u0, 10, 10) ** 2).sum()
    with torch.no_grad():
        u0.mul_(3.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("checkpoint_every", [None, 3])
def test_changing_the_solver_after_the_forward_pass_leaves_the_gradient_of_what_ran(
        checkpoint_every):
    """The backward pass steps the solver as it was when the rollout ran: setting a new dt
    before calling backward (say, for the next rollout of the same loss) moved the gradient
    of u0 by 5e-2 and that of nu by 1e-1 without a word."""
    grid = Grid((16,), (0.0,), (1.0,))
    u0 = torch.tensor(0.5 + 0.2 * np.random.default_rng(0).random(16), requires_grad=True)
    weights = torch.tensor(np.random.default_rng(1).random((3, 16)))

    def gradient(change):
        solver = BurgersSolver1D(grid, nu=0.01, dt=1e-3)
        nu = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
        out = bridge.rollout(solver, u0, 10, 5, parameters={"nu": nu},
                             checkpoint_every=checkpoint_every)
        if change:
            solver.dt = 2e-3
        return torch.autograd.grad((out * weights).sum(), (u0, nu))

    for kept, changed in zip(gradient(False), gradient(True)):
        torch.testing.assert_close(changed, kept, rtol=0, atol=0)


def checkpoint_comparison(n, steps):
    grid = Grid((n, n), (0.0, 0.0), (2 * np.pi, 2 * np.pi))
    x, y = grid.mesh()
    u0_np = 0.5 + 0.3 * np.sin(x) * np.cos(y)
    probe = BurgersSolver2D(grid, nu=0.01, dt=None)
    solver = probe.with_dt(0.5 * probe.stable_dt(u0_np))
    grads, memories = [], []
    for checkpoint in (None, "auto"):
        u0 = torch.tensor(u0_np, requires_grad=True)
        nu = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
        memory = bridge.RolloutMemory()
        out = bridge.rollout(solver, u0, steps, save_every=steps, parameters={"nu": nu},
                             checkpoint_every=checkpoint, memory=memory)
        loss = (out[-1] * torch.tensor(np.cos(2 * x))).sum()
        grads.append(torch.autograd.grad(loss, (u0, nu)))
        memories.append(memory.peak_states)
    return grads, memories


def assert_checkpointing_matches(n, steps):
    (full, checkpointed), (full_states, ckpt_states) = checkpoint_comparison(n, steps)
    assert full_states == steps  # all states kept without checkpointing
    assert ckpt_states <= 100  # O(sqrt(n)): ceil(n/k) + k with k = ceil(sqrt(n))
    assert ckpt_states <= 2 * np.ceil(np.sqrt(steps)) + 1
    for a, b in zip(full, checkpointed):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_checkpointed_backward_matches_and_keeps_sqrt_n_states_on_a_short_rollout():
    assert_checkpointing_matches(8, 64)


@pytest.mark.slow
def test_checkpointed_backward_matches_and_keeps_sqrt_n_states():
    assert_checkpointing_matches(24, 2000)


@pytest.mark.slow
def test_checkpointed_backward_256_squared_2000_steps():
    assert_checkpointing_matches(256, 2000)
