"""TENG: initial fit, Heun beating Euler to 1e-5 on 1D heat, and the least-squares solvers."""

import math

import pytest
import torch

from physml.models import PeriodicMLP
from physml.train.teng import TENG, TENGPDE, gram_least_squares, svd_least_squares


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


def test_gram_and_svd_least_squares_agree():
    gen = torch.Generator().manual_seed(1)
    for n, m in ((200, 50), (50, 200)):  # over- and under-determined
        J = torch.randn(n, m, generator=gen, dtype=torch.float64)
        r = torch.randn(n, generator=gen, dtype=torch.float64)
        assert torch.allclose(gram_least_squares(J, r), svd_least_squares(J, r), atol=1e-10)


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
