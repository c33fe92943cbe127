"""The distance function of an interval, $\\varphi = 4(x - a)(b - x)/(b - a)^2$: 1 at the
middle of any interval, 0 at the ends, positive inside; bit for bit $(x - a)(b - x)$ on
$[-1, 1]$; a hard-constrained field on a long interval that keeps the network's size, and a
KdV soliton on [-10, 10] trained with hard constraints."""

import numpy as np
import pytest
import torch
from test_equation_high_order import KDV

from physml.cases.registry import load_case, run_case
from physml.geometry import Box, Interval
from physml.train import Dirichlet, Initial, PINNProblem

INTERVALS = ((-1.0, 1.0), (0.0, 1.0), (-10.0, 10.0), (0.0, 2 * np.pi), (5.0, 5.5),
             (-1e3, 2e3), (1e-3, 2e-3))


KDV_ON_A_LONG_INTERVAL = ["domain.geometry.lower=[-10.0]", "domain.geometry.upper=[10.0]",
                          "model.hard_constraints=true", "training.adam.steps=100",
                          "evaluation.every=100"]
"""Overrides of :data:`test_equation_high_order.KDV` (a soliton from x0 = -2, t in [0, 1]): on
[-10, 10], initial and boundary values imposed by the output transform, 100 Adam steps."""


def _points(a, b, n=201):
    """``n`` points from ``a`` to ``b``, ends included, shape ``(n, 1)``."""
    return np.linspace(a, b, n)[:, None]


@pytest.mark.parametrize("a, b", INTERVALS)
def test_an_interval_s_distance_peaks_at_one_in_the_middle_and_vanishes_at_its_ends(a, b):
    """For NumPy and float64 PyTorch points: phi((a + b)/2) = 1, phi(a) = phi(b) = 0 (to
    rounding at b), 0 < phi <= 1 inside, phi < 0 outside."""
    interval = Interval(a, b)
    P = _points(a, b)
    for phi in (interval.distance(P)[:, 0],
                interval.distance(torch.tensor(P)).numpy()[:, 0]):
        np.testing.assert_allclose(phi[100], 1.0, rtol=1e-12)
        assert phi[0] == 0.0 and abs(phi[-1]) <= 1e-12
        assert np.all(phi[1:-1] > 0) and phi.max() <= 1.0 + 1e-12
    outside = interval.distance(np.array([[a - (b - a) / 10], [b + (b - a) / 10]]))
    assert np.all(outside < 0)


def test_an_interval_s_distance_has_slope_four_over_its_length_at_its_ends():
    """phi'(a) = 4 / (b - a): the slope of a field phi N at the ends scales with 1/length,
    not with the length."""
    for a, b in INTERVALS:
        X = torch.tensor([[a], [b]], dtype=torch.float64, requires_grad=True)
        (slope,) = torch.autograd.grad(Interval(a, b).distance(X).sum(), X)
        np.testing.assert_allclose(slope[:, 0].numpy(), [4 / (b - a), -4 / (b - a)],
                                   rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_minus_one_to_one_the_distance_and_its_derivatives_are_the_unscaled_ones_bitwise(
        dtype):
    """On [-1, 1] the factor 4/(b - a)^2 is exactly 1.0: phi, phi' and phi'' equal those of
    (x + 1)(1 - x), in NumPy and in PyTorch of either precision, so every result on [-1, 1]
    stays as it was."""
    P = np.random.default_rng(0).uniform(-1.2, 1.2, (257, 1))
    assert np.array_equal(Interval(-1.0, 1.0).distance(P), (P + 1.0) * (1.0 - P))
    X = torch.tensor(P, dtype=dtype, requires_grad=True)
    for interval in (Interval(-1.0, 1.0), Box([-1.0], [1.0])):
        phi, unscaled = interval.distance(X), (X + 1.0) * (1.0 - X)
        assert phi.dtype == dtype and torch.equal(phi, unscaled)
        (slope,) = torch.autograd.grad(phi.sum(), X, create_graph=True)
        (unscaled_slope,) = torch.autograd.grad(unscaled.sum(), X, create_graph=True)
        assert torch.equal(slope, unscaled_slope)
        assert torch.equal(torch.autograd.grad(slope.sum(), X)[0],
                           torch.autograd.grad(unscaled_slope.sum(), X)[0])


def test_a_hard_constrained_field_on_a_long_interval_starts_at_the_network_s_size():
    """u = u0 + g(x, t) - g(x, t0) + (t - t0) phi(x) N: with N = 1 on [-10, 10] x [0, 2],
    u - u0 is at most t - t0 = 2 (the unscaled (x - a)(b - x) made it 200: 100 times the
    network's output, 400 times a unit soliton's peak; a KdV soliton on [-10, 10] trained to
    5.3e-2 with hard constraints instead of 2.3e-3, 1500 Adam + 300 L-BFGS steps)."""
    problem = PINNProblem(lambda d: d("u", "t") + d("u", "x", "x", "x"), Interval(-10.0, 10.0),
                          time=(0.0, 2.0), conditions=[Initial(0.0), Dirichlet(0.0)])
    assert problem.hard_conditions() == {"initial", "boundary"}
    x, t = np.meshgrid(np.linspace(-10, 10, 41), np.linspace(0, 2, 11))
    X = torch.tensor(np.stack([x.ravel(), t.ravel()], axis=1))
    u = problem.constrain(X, torch.ones(len(X), 1, dtype=torch.float64))
    assert u.max().item() == pytest.approx(2.0, rel=1e-12)


def test_a_kdv_soliton_on_a_long_interval_trains_with_hard_constraints(tmp_path):
    """100 Adam steps reach a relative L2 error of 7.4e-3 (3.1 with the unscaled distance,
    whose start field was 100 times the soliton; u_xxx and 6 u u_x amplified it)."""
    path = tmp_path / "kdv.yaml"
    path.write_text(KDV)
    case = load_case(str(path), [*KDV_ON_A_LONG_INTERVAL, f"output.folder={tmp_path}",
                                 "output.figures=false"])
    _, result = run_case(case)
    assert result["rel_l2"] < 0.05


def test_the_bundled_burgers_transform_written_out_is_the_interval_s_on_any_interval():
    """``BurgersProblem.constrain`` writes $u_0 + (t - t_0)\\varphi N$ out by hand: with
    :class:`Interval`'s $\\varphi$ on [0, 2] (factor 1), [0, 4] (1/4) and [-1, 1] (exactly)."""
    from physml.train.bundled import BurgersProblem

    for a, b in ((0.0, 2.0), (0.0, 4.0), (-1.0, 1.0)):
        problem = BurgersProblem(0.01, (a, b), (0.0, 1.0), amplitude=1.0,
                                 wavenumber=2 * np.pi / (b - a))
        X = torch.tensor(np.column_stack([np.linspace(a, b, 9), np.linspace(0.0, 1.0, 9)]))
        raw = torch.linspace(-2.0, 3.0, 9, dtype=torch.float64)[:, None]
        general = (problem.initial(X[:, :1])
                   + X[:, 1:] * Interval(a, b).distance(X[:, :1]) * raw)
        torch.testing.assert_close(problem.constrain(X, raw), general, rtol=1e-15, atol=1e-15)
