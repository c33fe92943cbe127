"""Derivatives of third and fourth order in a case's ``pde`` (KdV ``u_xxx``, beams and
Kuramoto–Sivashinsky ``u_xxxx``, mixed ``u_xxy``, ``u_xxt``): the symbols, their values on an
analytic field and on a network, the limit, and a KdV soliton trained from a case file."""

from __future__ import annotations

import json

import pytest
import torch

from physml.cases.equation_problem import build_equation_problem
from physml.cases.registry import load_case, run_case
from physml.expressions import derivative_symbols, parse
from physml.models import MLP
from physml.train.derivatives import Derivatives

FIELD = "sin(x) * cos(2 * y) * exp(-t)"
"""An analytic field whose derivatives of every order are known in closed form."""

DERIVATIVES = {  # symbol: its value on FIELD, written out by hand
    "u_xxx": "-cos(x) * cos(2 * y) * exp(-t)",
    "u_xxxx": "sin(x) * cos(2 * y) * exp(-t)",
    "u_yyyy": "16 * sin(x) * cos(2 * y) * exp(-t)",
    "u_xxy": "2 * sin(x) * sin(2 * y) * exp(-t)",
    "u_xxt": "sin(x) * cos(2 * y) * exp(-t)",
    "u_xyyt": "4 * cos(x) * cos(2 * y) * exp(-t)",
    "u_yxyx": "4 * sin(x) * cos(2 * y) * exp(-t)",
}

ANALYTIC = f"""\
kind: equation
name: analytic
domain: {{geometry: {{kind: rectangle, lower: [0.0, 0.0], upper: [1.0, 1.0]}}, time: [0.0, 1.0]}}
pde:
{chr(10).join(f"  {symbol}: {symbol} - ({value})" for symbol, value in DERIVATIVES.items())}
conditions:
  - {{kind: initial, value: sin(x) * cos(2 * y)}}
  - {{kind: dirichlet, value: {FIELD}}}
exact: {FIELD}
dtype: float64
"""

KDV = """\
kind: equation
name: kdv_soliton
description: u_t + 6 u u_x + u_xxx = 0, one soliton u = c/2 sech^2(sqrt(c)/2 (x - c t - x0))
parameters: {c: 1.0, x0: -2.0}
domain: {geometry: {kind: interval, lower: [-6.0], upper: [6.0]}, time: [0.0, 1.0]}
pde: u_t + 6 * u * u_x + u_xxx
conditions:
  - {kind: initial, value: c/2 / cosh(sqrt(c)/2 * (x - x0))^2}
  - {kind: dirichlet, value: c/2 / cosh(sqrt(c)/2 * (x - c*t - x0))^2}
exact: c/2 / cosh(sqrt(c)/2 * (x - c*t - x0))^2
model: {kind: mlp, width: 32, depth: 3, activation: tanh, hard_constraints: false}
training:
  collocation: {points: 300, sampler: sobol}
  adam: {steps: 800, lr: 3.0e-3}
evaluation: {every: 800, grid: [41, 11]}
seed: 0
dtype: float64
"""


def test_the_symbols_reach_fourth_order_in_any_mix_of_inputs():
    symbols = derivative_symbols(["u"], ["x", "t"])
    assert len(symbols) == 2 + 4 + 8 + 16
    assert symbols["u_xxx"] == ("u", "x", "x", "x")
    assert symbols["u_xxxx"] == ("u", "x", "x", "x", "x")
    assert symbols["u_xxt"] == ("u", "x", "x", "t")
    assert "u_xxxxx" not in symbols
    assert derivative_symbols(["u"], ["x", "y"])["u_xxy"] == ("u", "x", "x", "y")


def test_a_fifth_order_is_refused_naming_it_and_the_limit():
    allowed = ["u", "x", "t", *derivative_symbols(["u"], ["x", "t"])]
    assert parse("u_t + u_xxxx", allowed, "pde") is not None
    with pytest.raises(ValueError, match=(
            r"^pde: 'u_xxxxx' in 'u_t \+ u_xxxxx' is a derivative of order 5; expressions take "
            r"derivatives up to order 4: introduce a field w = u_xxxx \(the equation w - "
            r"u_xxxx in a system\) and write w_x$")):
        parse("u_t + u_xxxxx", allowed, "pde")
    for beyond in ("u_" + "x" * 9, "u_ttttt"):  # w_xxxxx and w = u_tttt refused too
        with pytest.raises(ValueError, match=r"introduce fields for intermediate derivatives "
                                             r"\(each an equation such as w - u_xx in a "
                                             r"system\), none of order above 4 or above 2 "
                                             r"in t$"):
            parse(f"u_t + {beyond}", allowed, "pde")


def test_an_unknown_symbol_lists_the_low_orders_and_sums_up_the_high_ones():
    allowed = ["u", "x", "y", *derivative_symbols(["u"], ["x", "y"])]
    with pytest.raises(ValueError) as refused:
        parse("u_zz", sorted(allowed), "pde")
    assert str(refused.value).endswith(
        "allowed: u, u_x, u_xx, u_xy, u_y, u_yx, u_yy, x, y, pi, e and the derivatives of "
        "order 3 to 4 in the same letters (u_xxx, u_xxxx ...)")


def test_a_case_pde_takes_third_and_fourth_derivatives_of_an_analytic_field_exactly(tmp_path):
    """Each residual of the case is a derivative symbol minus its closed form: zero to
    rounding on the field itself (float64), through the residual a training evaluates."""
    path = tmp_path / "analytic.yaml"
    path.write_text(ANALYTIC)
    problem = build_equation_problem(load_case(str(path)))
    X = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X.requires_grad_(True)
    x, y, t = X[:, :1], X[:, 1:2], X[:, 2:]
    u = torch.sin(x) * torch.cos(2 * y) * torch.exp(-t)
    residuals = problem.residuals(X, u)
    assert sorted(residuals) == sorted(DERIVATIVES)
    for name, residual in residuals.items():
        assert residual.abs().max().item() < 1e-12, name


def test_network_derivatives_of_fourth_order_match_nested_autograd():
    torch.manual_seed(0)
    net = MLP(3, 1, width=8, depth=2).double()
    X = torch.rand(16, 3, dtype=torch.float64, requires_grad=True)
    out = net(X)
    d = Derivatives(X, out, ("x", "y", "t"), ("u",))

    def nested(f, *columns):
        for i in columns:
            f = torch.autograd.grad(f.sum(), X, create_graph=True)[0][:, i : i + 1]
        return f

    for wrt, columns in ((("x", "x", "x"), (0, 0, 0)), (("x", "x", "x", "x"), (0, 0, 0, 0)),
                         (("x", "x", "y"), (0, 0, 1)), (("x", "y", "t", "t"), (0, 1, 2, 2))):
        torch.testing.assert_close(d("u", *wrt), nested(out, *columns), rtol=1e-12, atol=1e-12)


def test_a_third_order_in_time_is_refused(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text(ANALYTIC.replace("  u_xxt: u_xxt", "  u_ttt: u_ttt"))
    with pytest.raises(ValueError, match="pde: u_ttt is of order 3 in t, but the initial "
                       "conditions give a field and its rate"):
        build_equation_problem(load_case(str(path)))


def test_a_kdv_soliton_validates_runs_and_lowers_its_residual(tmp_path):
    path = tmp_path / "kdv.yaml"
    path.write_text(KDV)
    case = load_case(str(path), [f"output.folder={tmp_path}", "output.figures=false"])
    folder, result = run_case(case)
    history = json.loads((folder / "metrics.json").read_text())["history"]
    first, last = history[0]["loss_residual"], history[-1]["loss_residual"]
    assert last < first / 100
    assert result["rel_l2"] < 0.05  # 0.013; 0.22 after the first 200 steps
