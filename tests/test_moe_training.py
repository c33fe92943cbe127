"""A tiny mixture-of-experts hard-constraint training run on diffusion–sorption (the paper's
residual loss, no solution data)."""

import pytest
import xarray as xr

from physml.cases.registry import load_case, run_case
from physml.constraints import Continuity, DiffusionSorptionRows, LevenbergMarquardt
from physml.train.moe import T_END, Budget, build_model, evaluate, fit, sorption_trajectories


@pytest.mark.slow  # 15 Adam steps through the inner solves: ~15 s idle, ~50 s on a loaded CPU
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


@pytest.mark.slow  # data generation, training, HDF5 and a figure: ~35 s on a loaded CPU
def test_moe_case_writes_its_run_folder(tmp_path):
    case = load_case("cases/moe_diffusion_sorption.yaml", [
        "variant=cpu", "problem.nx=8", "problem.nt=8", "problem.train=2", "problem.test=1",
        "model.basis=3", "model.width=4", "model.modes=[2, 2]", "training.iterations=2",
        "training.batch=2", f"output.folder={tmp_path}"])
    folder, summary = run_case(case)
    assert {"config.yaml", "checkpoint.pt", "metrics.json", "predictions.h5",
            "solution.png"} <= {p.name for p in folder.iterdir()}
    assert 0 < summary["test_rel_l2"] < 10 and summary["passed"] in (True, False)
    assert xr.open_dataset(folder / "predictions.h5")["error"].shape == (1, 8, 8)
