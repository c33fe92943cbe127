"""A tiny mixture-of-experts hard-constraint training run on diffusion–sorption (the paper's
residual loss, no solution data)."""

from physml.constraints import Continuity, DiffusionSorptionRows, LevenbergMarquardt
from physml.train.moe import T_END, Budget, build_model, evaluate, fit, sorption_trajectories


def test_tiny_moe_training_lowers_the_test_error():
    nx, nt = 16, 11
    u0, u = sorption_trajectories(nx, nt, 6)
    train, test = (u0[:4], u[:4]), (u0[4:], u[4:])
    rows = DiffusionSorptionRows(nx, T_END / (nt - 1))
    model = build_model("hard", rows, nt, basis=4, width=8, modes=(4, 4), experts=2,
                        continuity=Continuity.INTERFACE_ROWS,
                        solver=LevenbergMarquardt(tol=1e-6, max_iter=6))
    before = evaluate(model, test)["test_rel_l2"]
    after = fit(model, rows, train, test, Budget(iterations=15, lr=1e-2, batch=2))
    assert after["test_rel_l2"] < 0.7 * before
