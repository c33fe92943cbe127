"""TENG: initial fit, Heun beating Euler to 1e-5 on 1D heat, and the least-squares solvers."""

import math

import pytest
import torch

from physml.models import PeriodicMLP
from physml.train.least_squares import GramSolver, SVDSolver
from physml.train.teng import TENG, TENGPDE


def u0(X):
    return torch.sin(X[:, 0]) + 0.5 * torch.cos(2 * X[:, 0])


def exact(X, t, nu=0.1):
    return math.exp(-nu * t) * torch.sin(X[:, 0]) + 0.5 * math.exp(-4 * nu * t) * torch.cos(
        2 * X[:, 0])


def make(scheme, **kw):
    torch.manual_seed(0)
    model = PeriodicMLP(1, 1, width=16, depth=2)
    return TENG(model, TENGPDE("heat", 0.1), scheme=scheme, dt=0.01, points=256,
                iterations=3, dim=1, **kw)


@pytest.fixture(scope="module")
def initial_state():
    teng = make("heun")
    error = teng.fit_initial(u0, points=1024)
    return teng.theta.clone(), error


def test_initial_condition_is_fitted_below_1e9(initial_state):
    assert initial_state[1] <= 1e-9


def final_error(scheme, theta, t_end=0.5, **kw):
    teng = make(scheme, **kw)
    teng.theta = theta.clone()
    teng.run(t_end)
    # Test points on a shifted grid: never training points.
    test = torch.linspace(0, 2 * math.pi, 301, dtype=torch.float64)[:-1, None] + 0.01
    reference = exact(test, t_end)
    return float((teng.value(teng.theta, test) - reference).norm() / reference.norm())


def test_heun_reaches_1e5_and_beats_euler(initial_state):
    heun = final_error("heun", initial_state[0])
    euler = final_error("euler", initial_state[0])
    assert heun <= 1e-5
    assert euler > 10 * heun


@pytest.mark.parametrize("n, m", [(200, 50), (50, 200)])  # over- and under-determined
def test_gram_and_svd_least_squares_agree(n, m):
    gen = torch.Generator().manual_seed(1)
    J = torch.randn(n, m, generator=gen, dtype=torch.float64)
    r = torch.randn(n, generator=gen, dtype=torch.float64)
    gram, svd = GramSolver(torch.split(J, 64), r), SVDSolver([J], r)
    assert torch.allclose(gram.solve(), svd.solve(), atol=1e-10)
    assert torch.allclose(gram.solve(), GramSolver([J], r).solve(), atol=1e-12)
    for solver in (gram, svd):  # damping shortens the step
        assert solver.solve(1.0).norm() < 0.9 * solver.solve().norm()


def test_gram_solver_in_parameter_space_keeps_no_block():
    """The Jacobian is never held in one piece: every block is freed once accumulated."""
    import gc
    import weakref

    gen = torch.Generator().manual_seed(2)
    J = torch.randn(1000, 30, generator=gen, dtype=torch.float64)
    r = torch.randn(1000, generator=gen, dtype=torch.float64)
    alive = []

    def blocks():
        for start in range(0, 1000, 100):
            block = J[start : start + 100].clone()
            alive.append(weakref.ref(block))
            yield block

    solver = GramSolver(blocks(), r)
    gc.collect()
    assert len(alive) == 10 and all(ref() is None for ref in alive)
    assert torch.allclose(solver.solve(), torch.linalg.lstsq(J, r[:, None]).solution[:, 0],
                          atol=1e-12)
    with pytest.raises(ValueError, match="cover 100 rows, the residual has 1000"):
        GramSolver([J[:100]], r)


def test_fit_damps_an_update_that_would_raise_the_residual():
    torch.manual_seed(0)
    teng = TENG(PeriodicMLP(1, 1, width=8, depth=2), TENGPDE("heat", 0.1), points=64,
                iterations=1, dim=1)
    X = teng.sample(64)
    target = torch.sign(torch.sin(3 * X[:, 0]))  # far from the network's tangent space
    start = float((target - teng.value(teng.theta, X)).norm())
    columns = torch.arange(teng.theta.numel())
    plain = teng.theta + teng.least_squares(teng.theta, X, columns,
                                            target - teng.value(teng.theta, X)).solve()
    assert float((target - teng.value(plain, X)).norm()) > 100 * start  # Gauss-Newton overshoots
    fitted = teng.fit(teng.theta, X, target)
    assert float((target - teng.value(fitted, X)).norm()) < 0.99 * start


def test_jacobian_by_chunks_matches_one_piece():
    teng = make("euler")
    X = teng.sample(300)
    columns = torch.randperm(teng.theta.numel())[:40]
    whole = teng.jacobian(teng.theta, X, columns)
    teng.chunk = 64
    assert torch.equal(teng.jacobian(teng.theta, X, columns), whole)
    assert whole.shape == (300, 40)


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown TENG pde 'wave'"):
        TENGPDE("wave", 0.1)
    with pytest.raises(ValueError, match="unknown solver 'qr'"):
        make("heun", solver="qr")
    with pytest.raises(ValueError, match="unknown scheme 'rk9'"):
        make("rk9")


TINY_TENG = ["domain.y=null", "conditions.initial.kind=sine", "conditions.initial.amplitude=1.0",
             "model.width=8", "model.depth=2", "training.points=64",
             "training.subsample=64", "training.iterations=2", "training.dt=0.05",
             "training.initial_points=128", "training.checkpoint_every=2",
             "domain.t=[0, 0.2]", "evaluation.nx=32", "evaluation.every=2",
             "evaluation.times=[0.1, 0.2]", "evaluation.threshold=1.0e-2"]


def test_teng_case_writes_the_error_curve_and_resumes_to_the_same_result(tmp_path):
    import json
    from pathlib import Path

    from physml.cases.registry import load_case, run_case

    path = Path(__file__).parents[1] / "cases" / "teng_heat.yaml"
    case = load_case(path, [*TINY_TENG, f"output.folder={tmp_path}"])
    (tmp_path / "whole").mkdir()
    folder, result = run_case(case, tmp_path / "whole")
    assert result["passed"] and set(result["errors_at"]) == {"0.1", "0.2"}
    curve = json.loads((folder / "errors.json").read_text())
    assert curve["t"][0] == 0.0 and len(curve["t"]) == len(curve["rel_l2"]) == 3
    assert (folder / "errors.png").is_file() and (folder / "predictions.h5").is_file()
    # Interrupt at t = 0.1 (the step-2 checkpoint), then resume to the end.
    short = load_case(path, [*TINY_TENG, "domain.t=[0, 0.1]", "evaluation.times=[0.1]"])
    part = tmp_path / "part"
    part.mkdir()
    run_case(short, part)
    (part / "config.yaml").write_text(case.to_yaml())
    _, resumed = run_case(case, part, resume=True)
    # Same to rounding, not bitwise: LAPACK's float64 solves on this CPU differ at ~1e-10
    # between identical calls, and the Gauss-Newton fits carry that into the parameters.
    assert resumed["rel_l2"] == pytest.approx(result["rel_l2"], rel=1e-2)
    history = json.loads((part / "metrics.json").read_text())["history"]
    assert [round(e["t"], 9) for e in history] == [0.0, 0.1, 0.2]


def test_teng_case_errors_name_the_key():
    from pathlib import Path

    from physml.cases.registry import load_case

    path = Path(__file__).parents[1] / "cases" / "teng_heat.yaml"
    with pytest.raises(ValueError, match="needs model.kind 'periodic'"):
        load_case(path, ["model.kind=mlp"])
    with pytest.raises(ValueError, match="unknown variant 'gpu'; allowed: cpu"):
        load_case(path, ["variant=gpu"])
    with pytest.raises(ValueError, match="supports pde.name heat, allen_cahn, burgers"):
        load_case(path, ["pde.name=convection", "pde.beta=1.0"])


def test_outer_product_jacobian_matches_autodiff():
    teng = make("euler")
    assert teng._outer_jacobian is not None
    X = teng.sample(300)
    columns = torch.randperm(teng.theta.numel())[:100]
    outer = teng.jacobian(teng.theta, X, columns)
    teng._outer_jacobian = None  # the vmap(jacrev) path
    assert torch.allclose(outer, teng.jacobian(teng.theta, X, columns), rtol=1e-13, atol=1e-15)


class Scaled(torch.nn.Module):
    """A network with a parameter outside its linear layers."""

    def __init__(self):
        super().__init__()
        self.inner = PeriodicMLP(1, 1, width=8, depth=2)
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.scale * self.inner(x)


class Shared(torch.nn.Module):
    """A network that applies one linear layer twice."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))


@pytest.mark.parametrize("network", [Scaled, Shared])
def test_jacobian_of_other_networks_falls_back_to_autodiff(network):
    torch.manual_seed(0)
    teng = TENG(network(), TENGPDE("heat", 0.1), points=32, dim=1)
    assert teng._outer_jacobian is None
    X = teng.sample(32)
    columns = torch.arange(teng.theta.numel())
    J = teng.jacobian(teng.theta, X, columns)
    step = 1e-6 * torch.eye(teng.theta.numel(), dtype=torch.float64)
    difference = torch.stack([(teng.value(teng.theta + e, X) - teng.value(teng.theta - e, X))
                              / 2e-6 for e in step], dim=1)
    assert torch.allclose(J, difference, atol=1e-8)
