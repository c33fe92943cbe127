"""The native step adjoint of a batch whose samples step with their own time steps: one
reverse pass for the batch, bitwise each sample's own and, for equal steps, bitwise the
one-step adjoint."""

import numpy as np
import pytest
import torch

from physml import bridge
from physml.solvers import (
    AdvectionSolver1D,
    AdvectionSolver2D,
    AllenCahnSolver2D,
    BurgersSolver1D,
    Grid,
    dirichlet,
    step_adjoint,
)
from physml.solvers.batch_parameters import sample_rows
from physml.solvers.built_solver import shallow_copy

G1 = Grid((24,), (0.0,), (1.0,))
G2 = Grid((8, 6), (0.0, 0.0), (1.0, 1.0))
DT = np.array([1e-3, 4e-4, 7e-4])

# a solver of each kind of tableau and parameter, and per-sample parameter values (B = 3)
CASES = {
    "burgers1d_ssp_rk3": (lambda dtype: BurgersSolver1D(G1, dirichlet(1, 0.2), nu=0.01, dt=1e-3,
                                                        dtype=dtype),
                          {"nu": [0.01, 0.02, 0.005]}),
    "advection1d_rk4": (lambda dtype: AdvectionSolver1D(G1, beta=0.8, dt=1e-3, space="central",
                                                        scheme="rk4", dtype=dtype),
                        {"beta": [[0.8], [-0.5], [0.3]]}),
    "advection2d_heun": (lambda dtype: AdvectionSolver2D(G2, beta=(0.5, -0.3), dt=1e-3,
                                                         scheme="heun", dtype=dtype),
                         {"beta": [[0.5, -0.3], [-0.2, 0.4], [0.1, 0.1]]}),
    "allen_cahn2d_euler": (lambda dtype: AllenCahnSolver2D(G2, nu=0.002, rho=1.0, dt=1e-3,
                                                           scheme="euler", dtype=dtype),
                           {"rho": np.linspace(0.5, 2.0, 3 * 48).reshape(3, 8, 6)}),
}


@pytest.fixture(params=[(case, dtype) for case in sorted(CASES)
                        for dtype in ("float32", "float64")], ids="-".join)
def batch(request):
    """A case's solver in a dtype, its per-sample values and their parameter arrays, and three
    states and a cotangent, flat, in the solver's NumPy dtype."""
    case, dtype = request.param
    make, values = CASES[case]
    solver = make(dtype)
    rng = np.random.default_rng(1)
    u = 0.5 + 0.3 * rng.random((3, solver.grid.size))
    return (solver, values, solver.batch_parameter_arrays(3, values),
            u.ravel().astype(solver.np_dtype), rng.standard_normal(u.size).astype(solver.np_dtype))


def _sweep(solver, params, steps, u, adjoint, batch=3):
    """Two steps' reverse pass: the state's cotangent and the parameters'."""
    sweep = step_adjoint.ExplicitStepAdjoint(solver, params, batch, steps)
    u_bar = sweep.vjp(u, adjoint).copy()
    u_bar = sweep.vjp(u, u_bar).copy()
    return u_bar, sweep.parameter_grads()


def test_equal_time_steps_are_bitwise_the_adjoint_of_the_solvers_time_step(batch):
    solver, _, params, u, adjoint = batch
    one_u, one_p = _sweep(solver, params, None, u, adjoint)
    each_u, each_p = _sweep(solver, params, np.full(3, solver.dt), u, adjoint)
    assert one_u.dtype == solver.np_dtype
    assert np.array_equal(each_u, one_u)
    for name in one_p:
        assert np.array_equal(each_p[name], one_p[name])


def test_each_samples_rows_are_bitwise_its_own_time_steps_adjoint(batch):
    solver, values, params, u, adjoint = batch
    batch_u, batch_p = _sweep(solver, params, DT, u, adjoint)
    n, shared = solver.grid.size, {name: 0.0 for name in values.keys() ^ params.keys()}
    for b, dt in enumerate(DT):
        rows = np.array([b])
        own = {name: sample_rows(solver, name, array, rows) for name, array in params.items()}
        own_u, own_p = _sweep(shallow_copy(solver, dt=float(dt)), own, None,
                              u[b * n:(b + 1) * n], adjoint[b * n:(b + 1) * n], batch=1)
        assert np.array_equal(batch_u[b * n:(b + 1) * n], own_u)
        for name in values:
            assert np.array_equal(batch_p[name][b:b + 1], own_p[name])
        for name in shared:  # the samples' sum: in another order
            shared[name] = shared[name] + own_p[name].astype(np.float64)
    for name, total in shared.items():
        np.testing.assert_allclose(batch_p[name], total,
                                   rtol=1e-5 if solver.np_dtype == np.float32 else 1e-13)


def test_a_batch_of_distinct_time_steps_runs_one_reverse_pass(monkeypatch):
    solver = BurgersSolver1D(G1, dirichlet(1, 0.2), nu=0.01, dt=1e-3)
    adjoint_class, built = step_adjoint.ExplicitStepAdjoint, []

    def counted(*args):
        built.append(args)
        return adjoint_class(*args)

    monkeypatch.setattr(step_adjoint, "ExplicitStepAdjoint", counted)
    u0 = torch.tensor(0.5 + 0.3 * np.sin(np.arange(3 * 24).reshape(3, 24)), requires_grad=True)
    bridge.rollout(solver, u0, 4, 2, dt=DT).square().sum().backward()
    assert len(built) == 1
    assert np.array_equal(built[0][3], DT)
