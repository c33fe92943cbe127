"""Batched grid solves: bitwise equal to one-by-one solves, field coefficients, gradients."""

import re

import numpy as np
import pytest
import torch
import warp as wp

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
    HeatSolver1D,
    HeatSolver2D,
    dirichlet,
    neumann,
    rk_stages,
    stage_kernels,
)
from physml.solvers.base import GridSolver
from physml.solvers.built_solver import shallow_copy
from physml.solvers.rk_stages import RECORDED_PER_STAGE

G1 = Grid((40,), (0.0,), (1.0,))
G2 = Grid((12, 10), (0.0, 0.0), (1.0, 1.0))
MIXED_2D = BoundaryConditions(((BC("dirichlet", 0.5), BC("neumann", -0.2)),
                               (BC("periodic"), BC("periodic"))))

# solver, per-sample parameter values (B = 3)
CASES = {
    "heat1d": (HeatSolver1D(G1, dirichlet(1, 0.2), nu=0.01, dt=1e-3), {"nu": [0.01, 0.02, 0.005]}),
    "heat2d_mixed": (HeatSolver2D(G2, MIXED_2D, nu=0.01, dt=5e-4), {"nu": [0.01, 0.03, 0.02]}),
    "heat1d_imex": (HeatSolver1D(G1, neumann(1, 0.1), nu=0.02, dt=5e-3, scheme="imex"),
                    {"nu": [0.02, 0.05, 0.01]}),
    "advection1d_central": (AdvectionSolver1D(G1, beta=0.8, dt=5e-3, space="central",
                                              scheme="rk4"), {"beta": [0.8, -0.5, 0.3]}),
    "advection2d": (AdvectionSolver2D(G2, beta=(0.5, -0.3), dt=5e-3),
                    {"beta": [[0.5, -0.3], [-0.2, 0.4], [0.1, 0.1]]}),
    "burgers1d": (BurgersSolver1D(G1, dirichlet(1, 0.1), nu=0.01, dt=2e-3),
                  {"nu": [0.01, 0.0, 0.02]}),
    "burgers2d": (BurgersSolver2D(G2, nu=0.01, dt=1e-3, limiter="mc"), {"nu": [0.01, 0.0, 0.005]}),
    "allen_cahn1d": (AllenCahnSolver1D(G1, nu=0.002, rho=1.0, dt=2e-3),
                     {"nu": [0.002, 0.001, 0.003], "rho": [1.0, 2.0, 0.5]}),
    "allen_cahn2d": (AllenCahnSolver2D(G2, nu=0.002, rho=1.0, dt=1e-3, scheme="euler"),
                     {"rho": [1.0, 2.0, 0.5]}),
    "diffusion_reaction1d": (DiffusionReactionSolver1D(G1, nu=0.005, rho=2.0, dt=2e-3),
                             {"rho": [2.0, 1.0, 5.0]}),
    "diffusion_sorption1d": (DiffusionSorptionSolver1D(G1, dt=2.0), {"D": [5e-4, 3e-4, 1e-4]}),
}


def initial_states(grid, batch, seed=0):
    rng = np.random.default_rng(seed)
    mesh = grid.mesh()
    base = 0.5 + 0.3 * np.sin(2 * np.pi * mesh[0]) * (np.cos(2 * np.pi * mesh[1])
                                                      if grid.ndim == 2 else 1.0)
    return np.stack([base * (1 + 0.3 * b) + 0.05 * rng.random(grid.shape)
                     for b in range(batch)])


def per_cell_states(solver, u0, n_steps, values=None):
    """The states after ``n_steps`` steps of the per-cell stage kernel: the kernel a tape
    records, launched for a state that carries gradients (the rows kernels run otherwise)."""
    params = solver.batch_parameter_arrays(len(u0), values or {})
    u = wp.array(u0.ravel(), dtype=solver.dtype, device=solver.device, requires_grad=True)
    for _ in range(n_steps):
        u = solver.advance(u, params)
    return u.numpy().reshape(u0.shape)


def one_by_one(solver, u0, values, n_steps, save_every, dts=None):
    runs = []
    for b in range(len(u0)):
        sample = solver.with_parameters(**{n: v[b] for n, v in values.items()})
        if dts is not None:
            sample = sample.with_dt(dts[b])
        runs.append(sample.rollout(u0[b], n_steps[b] if np.ndim(n_steps) else n_steps,
                                   save_every[b] if np.ndim(save_every) else save_every))
    return np.stack(runs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_rollout_is_bitwise_the_one_by_one_rollouts(case):
    solver, values = CASES[case]
    u0 = initial_states(solver.grid, 3)
    batched = solver.rollout(u0, 6, 3, parameters={n: np.asarray(v) for n, v in values.items()})
    np.testing.assert_array_equal(batched, one_by_one(solver, u0, values, 6, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_rollout_returns_states_in_the_solver_s_dtype(dtype):
    """A float32 rollout once came back as float64, its first state u0 unrounded."""
    solver = BurgersSolver1D(G1, nu=0.01, dt=1e-3, dtype=dtype)
    u0 = 0.5 + np.sin(G1.coords(0)) / 3
    out = solver.rollout(u0, 4, 2)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out[0], u0.astype(dtype))

@pytest.mark.parametrize("case", ["burgers1d", "heat2d_mixed", "heat1d_imex"])
def test_per_sample_steps_and_counts_are_bitwise_the_one_by_one_rollouts(case):
    solver, values = CASES[case]
    u0 = initial_states(solver.grid, 3, seed=1)
    dts = np.array([1.0, 0.5, 0.25]) * solver.dt
    counts, every = np.array([4, 8, 16]), np.array([2, 4, 8])
    params = {n: np.asarray(v) for n, v in values.items()}
    batched = solver.rollout(u0, counts, every, parameters=params, dt=dts)
    np.testing.assert_array_equal(batched, one_by_one(solver, u0, values, counts, every, dts))


def counted_launches(solver, monkeypatch):
    """A list that grows by one at each stage launch built (not replayed) by ``solver``."""
    built = []
    launch = type(solver.stages).launch

    def counting(self, *args, **kwargs):
        built.append(1)
        return launch(self, *args, **kwargs)

    monkeypatch.setattr(type(solver.stages), "launch", counting)
    return built


@pytest.mark.parametrize("threads", [1, 2])
def test_replayed_rollout_steps_are_bitwise_the_steps_built_anew(threads, monkeypatch):
    grid = Grid((64, 48), (0.0, 0.0), (1.0, 1.0))
    solver = BurgersSolver2D(grid, MIXED_2D, nu=0.01, dt=1e-3, threads=threads)
    u0 = initial_states(grid, 3, seed=2)
    dts = np.array([1.0, 0.5, 0.25]) * solver.dt
    counts, every = np.array([6, 12, 24]), np.array([1, 2, 4])  # the active samples shrink
    built = counted_launches(solver, monkeypatch)
    replayed = solver.rollout(u0, counts, every, dt=dts)
    assert 0 < len(built) < 24 * 3 // 2  # most of the 24 three-stage steps replayed

    def built_anew(self, u, arrays, dt, work, active, most):
        self.stages._launches.clear()  # no recorded launch of the replayed rollout is reused
        work.replays.clear()
        return self.advance(u, arrays, dt=dt, work=work), 1

    monkeypatch.setattr(GridSolver, "replay_steps", built_anew)
    np.testing.assert_array_equal(replayed, solver.rollout(u0, counts, every, dt=dts))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_rollout_replays_the_steps_of_the_last_one_only_on_the_same_arrays(threads,
                                                                               monkeypatch):
    grid = Grid((40,), (0.0,), (1.0,))
    solver = BurgersSolver1D(grid, dirichlet(1, 0.3), nu=0.01, dt=1e-3, threads=threads)
    u0 = initial_states(grid, 4, seed=3)
    first = solver.rollout(u0, 30, 10)
    built = counted_launches(solver, monkeypatch)
    # the same arrays: every step replayed, in groups up to the saves (two threads: chunks
    # of whole samples, chained), and the same bits
    np.testing.assert_array_equal(solver.rollout(u0, 30, 10), first)
    assert not built
    # other values in the arrays the steps read (initial states, time steps): replayed, and
    # the bits of a new solver
    fresh = BurgersSolver1D(grid, dirichlet(1, 0.3), nu=0.01, dt=1e-3, threads=threads)
    v0 = initial_states(grid, 4, seed=4)
    dts = np.array([1.0, 0.5, 0.5, 0.25]) * solver.dt
    np.testing.assert_array_equal(solver.rollout(v0, 30, 10, dt=dts),
                                  fresh.rollout(v0, 30, 10, dt=dts))
    # new parameter arrays, or a copy with other values: built anew, never the old launches
    nu = np.array([0.01, 0.02, 0.03, 0.04])
    np.testing.assert_array_equal(solver.rollout(u0, 30, 10, parameters={"nu": nu}),
                                  fresh.rollout(u0, 30, 10, parameters={"nu": nu}))
    assert built
    other = solver.with_parameters(nu=0.05)
    np.testing.assert_array_equal(
        other.rollout(u0, 30, 10),
        BurgersSolver1D(grid, dirichlet(1, 0.3), nu=0.05, dt=1e-3).rollout(u0, 30, 10))


def test_replayed_steps_run_chained_by_whole_samples_and_a_callback_hears_each_step(
        monkeypatch):
    grid = Grid((40,), (0.0,), (1.0,))
    solver = BurgersSolver1D(grid, dirichlet(1, 0.3), nu=0.01, dt=1e-3, threads=2)
    u0 = initial_states(grid, 4, seed=3)
    reference = solver.rollout(u0, 30, 10)  # recorded
    groups = []
    run = rk_stages._run_chunks
    monkeypatch.setattr(rk_stages, "_run_chunks",
                        lambda launches: groups.append(len(launches)) or run(launches))
    np.testing.assert_array_equal(solver.rollout(u0, 30, 10), reference)
    assert groups == [3 * 10] * 3  # three groups of ten three-stage steps, one wait each
    heard = []
    solver.rollout(u0, 30, 10, callback=heard.append)
    assert heard == list(range(1, 31))


class OwnRhsHeat(HeatSolver1D):
    """A PDE with a right-hand side of its own (its steps are not the fused stages)."""

    def rhs(self, u, params, with_diffusion=True):
        return super().rhs(u, params, with_diffusion)


@pytest.mark.parametrize("make", [
    lambda: HeatSolver1D(G1, dirichlet(1, 0.2), nu=0.02, dt=5e-3, scheme="imex"),
    lambda: BurgersSolver1D(G1, nu=0.01, dt=2e-3, scheme="imex"),
    lambda: OwnRhsHeat(G1, nu=0.01, dt=1e-3, scheme="ssp_rk3"),
])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_steps_that_are_not_the_fused_stages_are_never_replayed(make, steps):
    solver = make()
    a, b = initial_states(G1, 2, seed=9)
    solver.rollout(a, steps)
    np.testing.assert_array_equal(solver.rollout(b, steps), make().rollout(b, steps))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_host_threads_and_the_per_cell_kernel_give_the_same_bits(threads):
    grid = Grid((64, 48), (0.0, 0.0), (1.0, 1.0))
    solver = BurgersSolver2D(grid, MIXED_2D, nu=0.01, dt=1e-3, threads=threads)
    u0 = initial_states(grid, 2)
    rows = solver.rollout(u0, 4)
    reference = BurgersSolver2D(grid, MIXED_2D, nu=0.01, dt=1e-3, threads=1).rollout(u0, 4)
    np.testing.assert_array_equal(rows, reference)
    # a tape-recordable step launches the per-cell kernel: same bits as the row kernel
    np.testing.assert_array_equal(per_cell_states(solver, u0, 4), rows[:, -1])
    # one row split into segments: the carried face fluxes are the recomputed ones
    line = Grid((64,), (0.0,), (1.0,))
    split = BurgersSolver1D(line, dirichlet(1, 0.3), nu=0.0, dt=1e-3, threads=threads)
    whole = BurgersSolver1D(line, dirichlet(1, 0.3), nu=0.0, dt=1e-3, threads=1)
    v0 = initial_states(line, 1)[0]
    np.testing.assert_array_equal(split.rollout(v0, 4), whole.rollout(v0, 4))


LONG_1D = Grid((1100,), (0.0,), (1.0,))  # rows longer than two tiles of the native loops
LONG_2D = Grid((5, 530), (0.0, 0.0), (1.0, 1.0))
MIXED_LONG = BoundaryConditions(((BC("neumann", 0.1), BC("dirichlet", 0.4)),
                                 (BC("dirichlet", 0.5), BC("neumann", -0.2))))
# every flux kind, limiter and reaction of the native interior loops, with boundary rows
ROW_CASES = {
    **{f"burgers_{lim}": BurgersSolver1D(LONG_1D, dirichlet(1, 0.3), nu=0.001, dt=2e-4,
                                        limiter=lim)
       for lim in ("none", "minmod", "van_leer", "mc")},
    "burgers2d_minmod": BurgersSolver2D(LONG_2D, MIXED_LONG, nu=0.001, dt=1e-4,
                                        limiter="minmod"),
    # rows past the native loops' cache of the faces along axis 1, on two threads
    "burgers2d_van_leer_wide": BurgersSolver2D(Grid((7, 4700), (0.0, 0.0), (1.0, 1.0)),
                                               MIXED_LONG, nu=1e-6, dt=5e-5, threads=2),
    "advection2d_mc": AdvectionSolver2D(LONG_2D, MIXED_LONG, beta=(0.5, -0.3), dt=2e-4,
                                        limiter="mc"),
    "advection1d_central": AdvectionSolver1D(LONG_1D, beta=0.8, dt=2e-4, space="central",
                                             scheme="rk4"),
    "heat2d": HeatSolver2D(LONG_2D, MIXED_LONG, nu=0.01, dt=1e-7),
    "allen_cahn1d": AllenCahnSolver1D(LONG_1D, neumann(1, 0.1), nu=1e-6, rho=1.0, dt=1e-3),
    "diffusion_reaction1d": DiffusionReactionSolver1D(LONG_1D, nu=1e-6, rho=2.0, dt=1e-3),
}


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_the_vectorised_row_loops_give_the_per_cell_kernels_bits(case):
    solver = ROW_CASES[case]
    u0 = initial_states(solver.grid, 2, seed=4)
    rows = solver.rollout(u0, 3)
    np.testing.assert_array_equal(per_cell_states(solver, u0, 3), rows[:, -1])


def test_the_rows_kernel_of_coefficient_fields_gives_the_per_cell_kernels_bits():
    solver = BurgersSolver2D(LONG_2D, MIXED_LONG, nu=0.001, dt=1e-4, threads=2)
    u0 = initial_states(solver.grid, 2, seed=5)
    field = 0.001 * (1 + np.random.default_rng(6).random(u0.shape))
    rows = solver.rollout(u0, 3, parameters={"nu": field})
    np.testing.assert_array_equal(per_cell_states(solver, u0, 3, {"nu": field}), rows[:, -1])


def test_launches_on_new_arrays_re_pack_the_recorded_launches_to_the_same_bits():
    # more sets of arrays than a stage keeps recorded launches for: the later ones re-pack the
    # least recently used launches (all arrays stay alive, so no address is met twice)
    solver = ROW_CASES["heat2d"]
    operator = solver._operator_coefficients(solver.parameter_arrays())
    states = [solver.to_warp(initial_states(solver.grid, 1, seed=s)[0])
              for s in range(RECORDED_PER_STAGE + 3)]
    rows = [wp.empty_like(v) for v in states]
    cells = [wp.empty_like(v) for v in states]
    for v, k_rows, k_cells in zip(states, rows, cells):
        solver.stages.launch(v, 1, *operator, k_rows)
        solver.stages.launch(v, 1, *operator, k_cells, record=True)
    assert max(len(sets) for sets in solver.stages._launches.values()) == RECORDED_PER_STAGE
    for k_rows, k_cells in zip(rows, cells):
        np.testing.assert_array_equal(k_rows.numpy(), k_cells.numpy())


def test_a_stage_output_overlapping_its_input_is_refused():
    solver, _ = CASES["heat1d"]
    state = solver.to_warp(initial_states(G1, 1)[0])
    operator = solver._operator_coefficients(solver.parameter_arrays())
    with pytest.raises(ValueError, match="overlaps one of its inputs"):
        solver.stages.launch(state, 1, *operator, state)


def test_a_field_coefficient_scales_its_term_cell_by_cell():
    solver, _ = CASES["heat2d_mixed"]
    u0 = initial_states(solver.grid, 2)
    field = 0.01 + 0.02 * np.random.default_rng(3).random((2, *solver.grid.shape))
    unit = solver.rhs(solver.to_warp(u0[0]), solver.parameter_arrays())  # nu = 0.01
    rates = solver.with_parameters(nu=1.0)
    flat = rates.rhs(solver.to_warp(u0[0]), rates.parameter_arrays()).numpy()
    np.testing.assert_allclose(unit.numpy(), 0.01 * flat, rtol=1e-12, atol=1e-12)
    arrays = solver.batch_parameter_arrays(2, {"nu": field})
    states = solver.to_warp(u0[0])
    scaled = solver.rhs(states, {"nu": arrays["nu"][:1]}).numpy()
    np.testing.assert_array_equal(scaled, field[0].ravel() * flat)


def test_parameters_of_another_shape_or_range_are_refused():
    solver, _ = CASES["heat1d"]
    with pytest.raises(ValueError, match=r"nu has shape \(2,\); allowed"):
        solver.rollout(initial_states(G1, 3), 2, parameters={"nu": [0.1, 0.2]})
    with pytest.raises(ValueError, match="nu=-0.1 must be > 0"):
        solver.rollout(initial_states(G1, 2), 2, parameters={"nu": [0.1, -0.1]})
    with pytest.raises(ValueError, match="n_steps // save_every differs"):
        solver.rollout(initial_states(G1, 2), np.array([4, 6]), 2)
    imex, _ = CASES["heat1d_imex"]
    for u0, field in ((initial_states(G1, 2), np.full((2, 40), 0.02)),
                      (initial_states(G1, 1)[0], np.full(40, 0.02))):
        with pytest.raises(ValueError, match="a field of nu needs an explicit scheme"):
            bridge.rollout(imex, torch.tensor(u0), 2, parameters={"nu": torch.tensor(field)})


def test_batched_bridge_gradcheck_with_per_sample_and_field_parameters():
    grid = Grid((8,), (0.0,), (1.0,))
    solver = AllenCahnSolver1D(grid, nu=0.002, rho=1.0, dt=0.02)
    u0 = torch.tensor(initial_states(grid, 2), requires_grad=True)
    nu = torch.tensor([1.0, 1.5], dtype=torch.float64, requires_grad=True)
    rho = torch.tensor(1.0 + 0.2 * np.random.default_rng(2).random((2, 8)), requires_grad=True)

    def run(u, n, r):
        return bridge.rollout(solver, u, 3, parameters={"nu": 0.002 * n, "rho": r})

    assert run(u0, nu, rho).shape == (2, 4, 8)
    assert torch.autograd.gradcheck(run, (u0, nu, rho), atol=1e-7, rtol=1e-5)
    loss = (run(u0, nu, rho) ** 2).sum()
    first = torch.autograd.grad(loss, (u0, nu, rho), retain_graph=True)
    second = torch.autograd.grad(loss, (u0, nu, rho))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_batched_bridge_matches_one_by_one_and_numpy():
    solver, values = CASES["burgers2d"]
    u0 = initial_states(solver.grid, 3)
    nu = torch.tensor(values["nu"], dtype=torch.float64)
    out = bridge.rollout(solver, torch.tensor(u0), 4, 2, parameters={"nu": nu})
    for b in range(3):
        single = bridge.rollout(solver, torch.tensor(u0[b]), 4, 2, parameters={"nu": nu[b]})
        torch.testing.assert_close(out[b], single, rtol=0, atol=0)
    np.testing.assert_array_equal(out.numpy(), solver.rollout(u0, 4, 2,
                                                              parameters={"nu": values["nu"]}))


@pytest.mark.parametrize("case", ["burgers1d", "advection2d", "allen_cahn1d", "heat1d_imex"])
def test_vmap_over_a_rollout_is_bitwise_the_batched_rollout(case):
    """``torch.func.vmap`` of an unbatched rollout runs as one batched rollout: per-sample
    parameters (a velocity too), fields, shared ones, a nested vmap, the sample-by-sample
    IMEX path."""
    solver, values = CASES[case]
    u0 = torch.tensor(initial_states(solver.grid, 3))
    params = {n: torch.tensor(v, dtype=torch.float64) for n, v in values.items()}
    names = sorted(params)

    def single(u, *p):
        return bridge.rollout(solver, u, 4, 2, parameters=dict(zip(names, p)))

    expected = bridge.rollout(solver, u0, 4, 2, parameters=params)
    got = torch.func.vmap(single)(u0, *(params[n] for n in names))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    shared = {n: v[0] for n, v in params.items()}
    got = torch.func.vmap(lambda u: single(u, *(shared[n] for n in names)))(u0)
    torch.testing.assert_close(got, bridge.rollout(solver, u0, 4, 2, parameters=shared),
                               rtol=0, atol=0)
    pairs = torch.stack([u0[:2], u0[1:]])
    got = torch.func.vmap(torch.func.vmap(lambda u: single(u, *(shared[n] for n in names))))(
        pairs)
    torch.testing.assert_close(got[1], bridge.rollout(solver, u0[1:], 4, 2, parameters=shared),
                               rtol=0, atol=0)
    if solver.fused and "nu" in params:
        field = torch.tensor(1.0 + 0.2 * np.random.default_rng(3).random((3, *solver.grid.shape)))
        scale = params["nu"].reshape(3, *[1] * solver.grid.ndim)
        fields = {**params, "nu": scale * field}
        got = torch.func.vmap(single)(u0, *(fields[n] for n in names))
        torch.testing.assert_close(got, bridge.rollout(solver, u0, 4, 2, parameters=fields),
                                   rtol=0, atol=0)


def test_gradients_through_vmap_and_torch_func_transforms():
    """Backward through a vmapped rollout, ``torch.func.grad`` of it and ``jacrev`` of a
    rollout equal the batched rollout's gradients and the Jacobian column by column; vmap
    over a gradient (per-sample gradients) is refused with what to do instead."""
    solver, values = CASES["burgers1d"]
    u0 = torch.tensor(initial_states(solver.grid, 3))
    nu = torch.tensor(values["nu"], dtype=torch.float64) + 0.001

    def single(u, n):
        return bridge.rollout(solver, u, 5, parameters={"nu": n})

    def loss(u, n):
        return torch.func.vmap(single)(u, n).square().sum()

    u, n = u0.clone().requires_grad_(True), nu.clone().requires_grad_(True)
    expected = torch.autograd.grad(bridge.rollout(solver, u, 5, parameters={"nu": n})
                                   .square().sum(), (u, n))
    u, n = u0.clone().requires_grad_(True), nu.clone().requires_grad_(True)
    through_vmap = torch.autograd.grad(loss(u, n), (u, n))
    transformed = torch.func.grad(loss, argnums=(0, 1))(u0, nu)
    for a, b, c in zip(expected, through_vmap, transformed):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        torch.testing.assert_close(c, a, rtol=0, atol=0)

    def last(v, n):
        return single(v, n)[-1]

    jacobian = torch.func.jacrev(last, argnums=(0, 1))(u0[0], nu[0])
    columns = torch.autograd.functional.jacobian(last, (u0[0], nu[0]))
    for a, b in zip(jacobian, columns):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="per-sample gradients.*sum of the per-sample losses"):
        torch.func.vmap(torch.func.grad(lambda v: single(v, nu[0]).square().sum()))(u0)


def test_vmap_takes_the_shapes_a_rollout_takes_and_a_rollout_without_gradient_under_grad():
    """A 1D velocity given as (1,), a batched call inside vmap with one (1, ndim) velocity, and
    per-sample gradients of a loss whose rollout only supplies a target (no gradient reaches
    it): each as the plain calls give it."""
    solver = AdvectionSolver1D(G1, beta=0.8, dt=5e-3)
    u0 = torch.tensor(initial_states(G1, 3))
    beta = torch.tensor([0.5], dtype=torch.float64)
    got = torch.func.vmap(lambda u: bridge.rollout(solver, u, 4, parameters={"beta": beta}))(u0)
    torch.testing.assert_close(got, bridge.rollout(solver, u0, 4, parameters={"beta": beta}),
                               rtol=0, atol=0)
    plane, _ = CASES["advection2d"]
    u2 = torch.tensor(initial_states(G2, 3))
    one = torch.tensor([[-0.2, 0.4]], dtype=torch.float64)
    got = torch.func.vmap(lambda u: bridge.rollout(plane, u[None], 4, parameters={"beta": one}))(u2)
    torch.testing.assert_close(got[:, 0], bridge.rollout(plane, u2, 4, parameters={"beta": one[0]}),
                               rtol=0, atol=0)
    burgers, _ = CASES["burgers1d"]
    w = torch.linspace(0.5, 1.5, 40, dtype=torch.float64)
    u1 = torch.tensor(initial_states(G1, 3))

    def loss(w, u):
        return (w * u - bridge.rollout(burgers, u, 3)[-1]).square().sum()

    got = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(w, u1)
    expected = torch.stack([torch.func.grad(loss)(w, u) for u in u1])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_bad_sample_stops_a_sample_by_sample_batch_before_any_step(monkeypatch):
    """On the sample-by-sample (IMEX) path every sample is checked before the first runs."""
    solver, _ = CASES["heat1d_imex"]
    steps = []
    advance = bridge._Stepper.__call__
    monkeypatch.setattr(bridge._Stepper, "__call__", lambda *a: steps.append(1) or advance(*a))
    bad = torch.tensor(initial_states(G1, 3))
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match="u0 contains NaN"):
        bridge.rollout(solver, bad, 20)
    with pytest.raises(ValueError, match="nu=-1.0 must be"):
        bridge.rollout(solver, bad.nan_to_num(0.5), 20,
                       parameters={"nu": torch.tensor([0.02, 0.05, -1.0], dtype=torch.float64)})
    assert not steps


def test_rollouts_started_inside_or_beside_a_rollout_keep_their_own_work_arrays():
    """A rollout from a callback, or in another thread, of the solver or of a copy sharing its
    stages, gets private work arrays: both results stay bitwise their own."""
    import threading

    solver = BurgersSolver1D(Grid((64,), (0.0,), (1.0,)), nu=0.01, dt=1e-3)
    x = solver.grid.coords(0)
    u0, v0 = 0.5 + 0.3 * np.sin(2 * np.pi * x), np.cos(2 * np.pi * x)
    reference = solver.rollout(u0, 20, save_every=20)
    for other in (solver, solver.with_parameters(nu=0.02)):
        inner = {}

        def callback(step, other=other, inner=inner):
            if step == 10:
                inner["got"] = other.rollout(v0, 3)

        np.testing.assert_array_equal(solver.rollout(u0, 20, save_every=20, callback=callback),
                                      reference)
        np.testing.assert_array_equal(inner["got"], other.rollout(v0, 3))
    results = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(
        k, solver.rollout(u0 if k % 2 else v0, 200, save_every=200))) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alone = {k: solver.rollout(u0 if k % 2 else v0, 200, save_every=200) for k in (0, 1)}
    for k, got in results.items():
        np.testing.assert_array_equal(got, alone[k % 2])


def test_a_dirichlet_value_above_the_state_sets_the_stable_step():
    """The boundary's ghost cells (2 v - u) carry the wave speed the state lacks: at the
    stable step of u0 = 0.1 sin with u = 3 on both sides the rollout stays bounded."""
    grid = Grid((200,), (0.0,), (1.0,))
    u0 = 0.1 * np.sin(2 * np.pi * grid.coords(0))
    solver = BurgersSolver1D(grid, dirichlet(1, 3.0), nu=1e-4, dt=None)
    dt = solver.stable_dt(u0)
    assert dt * 5.9 / grid.dx[0] <= 0.5 + 1e-12  # the TVD limit at the ghosts' speed 6 - 0.1
    out = solver.with_dt(dt).rollout(u0, 400, save_every=400)
    assert np.all(np.isfinite(out)) and out.min() >= -0.1 - 1e-9 and out.max() <= 3.0 + 1e-9
    assert solver.stable_dt(u0) < BurgersSolver1D(grid, nu=1e-4, dt=None).stable_dt(u0)


def test_the_bridge_takes_python_numbers_in_the_solver_s_precision():
    solver = HeatSolver1D(G1, dirichlet(1, 0.2), nu=0.01, dt=1e-3)
    u0 = np.sin(np.pi * G1.coords(0))
    expected = solver.with_parameters(nu=0.013).rollout(u0, 5)
    got = bridge.rollout(solver, torch.as_tensor(u0), 5, parameters={"nu": 0.013})
    np.testing.assert_array_equal(got.numpy(), expected)
    with pytest.raises(ValueError, match="u0 is a numpy.ndarray; the bridge takes a torch"):
        bridge.rollout(solver, u0, 5)
    with pytest.raises(ValueError, match="parameters is a list"):
        bridge.rollout(solver, torch.as_tensor(u0), 5, parameters=[0.01])
    with pytest.raises(ValueError, match="a batch of no state"):
        solver.rollout(np.zeros((0, 40)), 2)


def test_a_rollout_names_a_state_parameters_or_dtype_of_another_kind():
    grid = Grid((64,), (0.0,), (1.0,))
    solver = BurgersSolver1D(grid, nu=0.01, dt=1e-3)
    u0 = np.sin(2 * np.pi * grid.coords(0))
    with pytest.raises(ValueError, match=re.escape("u0 has shape (64, 1); expected (64,) or "
                                                   "(B, *(64,))")):
        solver.rollout(u0[:, None], 2)
    with pytest.raises(ValueError, match="parameters is a list; pass a mapping of names to "
                                         "values, e.g. {'nu': ...}"):
        solver.rollout(u0, 2, parameters=[0.1])
    assert BurgersSolver1D(grid, nu=0.01, dt=1e-3, dtype=torch.float32).dtype == wp.float32
    with pytest.raises(ValueError, match="dtype=torch.int32 is not supported"):
        BurgersSolver1D(grid, nu=0.01, dt=1e-3, dtype=torch.int32)


def test_the_cpu_only_row_kernels_are_not_in_the_per_cell_kernel_s_module():
    """A CUDA device builds the per-cell kernel's module; the row kernels' native loops
    (CPU-only) would multiply its build time by 16 (sm_90, NVRTC)."""
    cells = stage_kernels.stage_cells_kernel.module
    assert stage_kernels.stage_runs_kernel.module is not cells
    assert stage_kernels.stage_rows_kernel.module is not cells
    for kernel in (stage_kernels.stage_runs_kernel, stage_kernels.stage_rows_kernel):
        assert kernel.module.options["fuse_fp"] is False  # rounding as the per-cell kernel


def held_bytes(stages: rk_stages.FusedStages) -> int:
    """Bytes of the distinct allocations that the recorded launches and the kept work arrays
    of ``stages`` name (a view counts as the array it is a view of)."""
    def arrays(value):
        if isinstance(value, wp.array):
            yield value
        elif isinstance(value, (list, tuple, dict)):
            for item in value.values() if isinstance(value, dict) else value:
                yield from arrays(item)

    work = stages._kept_work
    owners = {}
    for array in arrays([stages._launches, work._arrays, work._views, work.replays]):
        while isinstance(array._ref, wp.array):
            array = array._ref
        owners[id(array)] = array.capacity
    return sum(owners.values())


def test_a_growing_batch_keeps_a_few_generations_of_work_arrays_not_all():
    # each larger batch replaces the kept work arrays; the launches recorded for each smaller
    # one would otherwise keep every replaced generation alive
    grid = Grid((32, 32), (0.0, 0.0), (1.0, 1.0))
    u = initial_states(grid, 1, seed=4)[0]
    largest = HeatSolver2D(grid, nu=0.01, dt=1e-3)
    largest.rollout(np.tile(u, (40, 1, 1)), 2, 1)
    solver = HeatSolver2D(grid, nu=0.01, dt=1e-3)
    for batch in range(1, 41):
        solver.rollout(np.tile(u, (batch, 1, 1)), 2, 1)
    stages = solver.stages
    assert len({stage[0] for stage in stages._launches}) <= rk_stages.RECORDED_BATCHES
    assert len(stages._splits) <= rk_stages.RECORDED_BATCHES
    assert held_bytes(stages) <= (rk_stages.RECORDED_BATCHES + 1) * held_bytes(largest.stages)
    np.testing.assert_array_equal(solver.rollout(np.tile(u, (7, 1, 1)), 2, 1),
                                  largest.rollout(np.tile(u, (7, 1, 1)), 2, 1))


def test_host_threads_asked_beside_rollouts_of_many_batch_sizes_keeps_the_splits_whole():
    """A backward pass asks the stages' host threads outside the step lock, beside rollouts
    whose batch sizes evict older splits and their recorded launches."""
    import threading

    solver = BurgersSolver1D(Grid((64,), (0.0,), (1.0,)), nu=0.01, dt=1e-4, threads=2)
    states = {b: 0.5 + 0.2 * np.random.default_rng(b).random((b, 64)) for b in range(1, 9)}
    errors, stop = [], threading.Event()

    def ask():
        i = 0
        while not stop.is_set():
            try:
                solver.stages.host_threads(1 + i % 9)
            except RuntimeError as error:
                errors.append(error)
                stop.set()
            i += 1

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for asker in askers:
        asker.start()
    try:
        for i in range(200):
            if stop.is_set():
                break
            solver.rollout(states[1 + i % 8], 4, 2)
    finally:
        stop.set()
        for asker in askers:
            asker.join()
    assert not errors
    assert len(solver.stages._splits) <= rk_stages.RECORDED_BATCHES
    np.testing.assert_array_equal(solver.rollout(states[3], 4, 2),
                                  BurgersSolver1D(solver.grid, nu=0.01, dt=1e-4,
                                                  threads=2).rollout(states[3], 4, 2))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_solver_built_without_dt_rolls_out_with_the_time_steps_given(case):
    solver, values = CASES[case]
    unset = shallow_copy(solver, dt=None)
    u0 = initial_states(solver.grid, 3, seed=2)
    params = {n: np.asarray(v) for n, v in values.items()}
    for dt in (np.array([1.0, 0.5, 0.25]) * solver.dt, solver.dt):
        np.testing.assert_array_equal(unset.rollout(u0, 4, 2, parameters=params, dt=dt),
                                      solver.rollout(u0, 4, 2, parameters=params, dt=dt))
    np.testing.assert_array_equal(unset.rollout(u0[1], 4, 2, dt=solver.dt),
                                  solver.rollout(u0[1], 4, 2))
    with pytest.raises(ValueError, match=r"dt is not set: build the solver with dt=\.\.\."):
        unset.rollout(u0, 4, 2)
