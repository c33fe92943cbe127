"""A tiny mixture-of-experts hard-constraint training run on diffusion–sorption (the paper's
residual loss, no solution data)."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from physml.cases.moe import ConstraintSpec, headline, training_history
from physml.cases.registry import load_case, run_case
from physml.constraints import Continuity, LevenbergMarquardt
from physml.datasets.grid_samples import initial_state, solve_sample
from physml.errors import NonFiniteLossError
from physml.train.moe import (
    PROBLEMS,
    Budget,
    MoETrainer,
    build_model,
    evaluate,
    fit,
    initial_conditions,
    problem_rows,
    sample_setup,
    trajectories,
)


def test_a_few_moe_training_steps_repeat_bitwise_and_lower_the_loss():
    """The training loop in the default run: three Adam steps of two experts on synthetic
    initial conditions (the residual loss needs no solution data)."""
    nx, nt = 8, 6
    u0 = torch.linspace(0.02, 0.18, 4, dtype=torch.float64)[:, None].expand(4, nx).contiguous()
    u = u0[:, None].expand(4, nt, nx).contiguous()  # only the test error reads it
    rows = problem_rows("diffusion_sorption", (nx,), nt)

    def trained() -> dict:
        model = build_model("hard", rows, nt, basis=3, width=4, modes=(2, 2), experts=2,
                            solver=LevenbergMarquardt(tol=1e-8, max_iter=10))
        return fit(model, rows, (u0, u), (u0, u), Budget(iterations=3, lr=1e-2, batch=4))

    first, again = trained(), trained()
    assert again["losses"] == first["losses"] and again["test_rel_l2"] == first["test_rel_l2"]
    assert first["losses"][-1] < first["losses"][0]


def test_the_test_error_solves_a_training_batch_at_a_time():
    """The test samples were predicted in one batch, their least-squares systems all held at
    once: they are taken ``budget.batch`` at a time, and the error is the one-batch error to
    rounding (the solves are per sample; the batched kernels round with the batch size)."""
    nx, nt = 8, 6
    u0 = torch.linspace(0.02, 0.18, 5, dtype=torch.float64)[:, None].expand(5, nx).contiguous()
    u = u0[:, None].expand(5, nt, nx).contiguous()
    rows = problem_rows("diffusion_sorption", (nx,), nt)
    model = build_model("hard", rows, nt, basis=3, width=4, modes=(2, 2), experts=2,
                        solver=LevenbergMarquardt(tol=1e-8, max_iter=10))
    trainer = MoETrainer(model, rows, (u0, u), (u0, u), Budget(iterations=1, batch=2))
    solved = []
    model.constraint.register_forward_pre_hook(lambda _, args: solved.append(len(args[0])))
    chunked = trainer.evaluate()
    assert solved == [2, 2, 1] and model.constraint.last_solve.converged.all()
    whole = evaluate(model, rows, (u0, u), 5)
    assert solved[-1] == 5
    assert chunked["test_rel_l2"] == pytest.approx(whole["test_rel_l2"], rel=1e-6)
    assert chunked["interface_jump"] == pytest.approx(whole["interface_jump"], rel=1e-4)


def _soft_trainer(iterations: int, lr: float) -> MoETrainer:
    """A soft-head trainer on four constant diffusion-sorption samples of 8 cells x 6 levels."""
    nx, nt = 8, 6
    u0 = torch.linspace(0.02, 0.18, 4, dtype=torch.float64)[:, None].expand(4, nx).contiguous()
    u = u0[:, None].expand(4, nt, nx).contiguous()
    rows = problem_rows("diffusion_sorption", (nx,), nt)
    model = build_model("soft", rows, nt, basis=3, width=4, modes=(2, 2),
                        solver=LevenbergMarquardt())
    return MoETrainer(model, rows, (u0, u), (u0, u), Budget(iterations=iterations, lr=lr,
                                                            batch=4))


def test_a_blow_up_names_its_step_and_leaves_the_model_finite():
    trainer = _soft_trainer(20, 1e6)
    model = trainer.model
    saved = []
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(on_checkpoint=lambda: saved.append(trainer.step), checkpoint_every=1,
                    saved_step=0)
    assert err.value.step == trainer.step + 1 > 1 and err.value.checkpoint_step == saved[-1]
    assert f"at step {trainer.step + 1}; the checkpoint of step {saved[-1]} is kept" in \
        str(err.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the step not taken


def test_the_rows_take_every_constant_of_the_dataset_spec():
    spec = PROBLEMS["diffusion_sorption"].load()
    edited = spec.model_copy(update={"parameters": {"D": 1e-3, "porosity": 0.3, "n_f": 0.9,
                                                    "u_left": 0.5}})
    rows = PROBLEMS["diffusion_sorption"].rows((8,), 1.0, edited)
    assert (rows.D, rows.porosity, rows.n_f, rows.u_left) == (1e-3, 0.3, 0.9, 0.5)


@pytest.mark.parametrize("overrides, message", [
    (["problem.nx=16", "constraint.experts=16", "constraint.continuity=independent"],
     "constraint.experts=16 with constraint.continuity=independent on problem.nx=16: expert(s)"),
    (["problem.nx=9", "constraint.experts=1"], "problem.nx=9 must be even for navier_stokes"),
])
def test_experts_without_pde_rows_and_odd_grids_are_refused_before_any_data(overrides,
                                                                          message):
    with pytest.raises(ValueError) as err:
        load_case("cases/moe_navier_stokes.yaml", ["variant=cpu", *overrides])
    assert message in str(err.value)


def test_checking_a_case_of_independent_experts_does_not_warn_of_the_rows_they_drop():
    """The check builds a constraint of its own: its warning would repeat the run's with
    another count."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_case("moe_diffusion_sorption", ["variant=cpu", "constraint.continuity=independent"])


@pytest.mark.slow  # 15 Adam steps through the inner solves: ~15 s idle, ~50 s on a loaded CPU
def test_tiny_moe_training_lowers_the_test_error():
    nx, nt = 16, 11
    u0, u = trajectories("diffusion_sorption", (nx,), nt, 6)
    train, test = (u0[:4], u[:4]), (u0[4:], u[4:])
    rows = problem_rows("diffusion_sorption", (nx,), nt)
    model = build_model("hard", rows, nt, basis=4, width=8, modes=(4, 4), experts=2,
                        continuity=Continuity.INTERFACE_ROWS,
                        solver=LevenbergMarquardt(tol=1e-6, max_iter=6))
    before = evaluate(model, rows, test, 2)["test_rel_l2"]
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
    assert 0 < summary["rel_l2"] < 10 and summary["passed"] in (True, False)
    predictions = xr.open_dataset(folder / "predictions.h5")
    assert predictions["error"].shape == (1, 8, 8)
    assert predictions.attrs["D"] == 5e-4 and predictions.attrs["n_f"] == 0.874  # the rows'


def test_a_moe_run_s_network_reloads_to_its_predictions_bit_for_bit(tmp_path):
    """``physml.load_run`` loads a moe run as ``load_trained`` does; the field loader of
    ``physml predict`` and ``physml export`` still refuses it, naming ``physml.load_run``."""
    import physml
    from physml.cases.moe_trained import TrainedMoE, load_trained
    from physml.trained import load_run as load_field

    case = load_case("cases/moe_diffusion_sorption.yaml", [
        "variant=cpu", "problem.nx=8", "problem.nt=8", "problem.train=2", "problem.test=2",
        "model.basis=3", "model.width=4", "model.modes=[2, 2]", "training.iterations=2",
        "training.batch=2", "output.figures=false", f"output.folder={tmp_path}"])
    folder, _ = run_case(case)
    with xr.open_dataset(folder / "predictions.h5") as predictions:
        written = predictions["prediction"].values
    for trained in (physml.load_run(folder), load_trained(folder)):
        assert isinstance(trained, TrainedMoE) and not trained.model.training
        u0 = trained.test_initial_conditions()
        assert u0.shape == (2, 8)
        np.testing.assert_array_equal(trained.predict(u0).numpy(), written)
    with pytest.raises(ValueError, match=r"is a 'moe' run; .*physml\.load_run also loads"):
        load_field(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no run"):
        load_trained(tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a run folder"):
        physml.load_run(tmp_path / "empty")
    (folder / "checkpoint.pt").unlink()
    for load in (load_trained, physml.load_run):
        with pytest.raises(ValueError, match="has no checkpoint.pt; no network to load"):
            load(folder)


def test_the_moe_history_is_one_record_per_step_with_the_test_errors_where_taken():
    losses = [1.0 / k for k in range(1, 22)]  # 21 updates; test errors after 0, 10 and 20
    records = training_history(losses, [0.9, 0.5, 0.4])
    assert [r["step"] for r in records] == list(range(22))
    assert records[0] == {"step": 0, "test_rel_l2": 0.9}
    assert records[10] == {"step": 10, "loss": 0.1, "test_rel_l2": 0.5}
    assert records[20]["test_rel_l2"] == 0.4 and "test_rel_l2" not in records[21]
    assert [r["loss"] for r in records[1:]] == losses


TINY = ["variant=cpu", "problem.nx=8", "problem.nt=8", "problem.train=2", "problem.test=1",
        "model.basis=3", "model.width=4", "model.modes=[2, 2]", "training.iterations=4",
        "training.batch=2", "training.checkpoint_every=2", "output.figures=false"]


@pytest.mark.slow  # three short runs with data generation: ~90 s on the loaded 2-core VM
def test_moe_case_resumes_to_the_uninterrupted_run(tmp_path):
    """Stopped after the third update (checkpoint after the second), resumed: the same losses
    and parameters, bit for bit, and the resumed run does the third update again."""
    case = load_case("cases/moe_diffusion_sorption.yaml", TINY)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir()
    stopped.mkdir()
    run_case(case, whole)

    def stop(record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_case(case, stopped, on_step=stop)
    assert not (stopped / "metrics.json").exists()
    steps = []
    run_case(case, stopped, resume=True, on_step=lambda r: steps.append(r["step"]))
    assert steps == [3, 4]
    metrics = [json.loads((f / "metrics.json").read_text()) for f in (whole, stopped)]
    assert metrics[0] == metrics[1] | {"summary": metrics[0]["summary"]}  # bar the timings
    assert set(metrics[0]) == {"case", "summary", "history", "environment"}
    history = metrics[0]["history"]
    assert [r["step"] for r in history] == [0, 1, 2, 3, 4]
    assert "loss" not in history[0] and all("loss" in r for r in history[1:])
    assert "test_rel_l2" in history[0] and not any("test_rel_l2" in r for r in history[1:])
    states = [torch.load(f / "checkpoint.pt", weights_only=False)["model"]
              for f in (whole, stopped)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a_moe_case_pins_its_threads_records_them_and_resumes_only_with_them(tmp_path,
                                                                          cli_in_process):
    """``moe`` cases refused ``threads`` (unknown key), ran on PyTorch's default count and left
    it out of metrics.json, so a resume on another machine changed the numbers unseen."""
    case = load_case("cases/moe_diffusion_sorption.yaml", [*TINY, "threads=1"])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        folder, summary = run_case(case, tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert summary["threads"] == 1
    assert json.loads((folder / "metrics.json").read_text())["summary"]["threads"] == 1
    assert "threads: 1" in (folder / "config.yaml").read_text()
    other = cli_in_process("run", "cases/moe_diffusion_sorption.yaml", *TINY, "threads=2",
                           "--resume", str(folder))
    assert other.returncode == 2
    assert "threads: 2 here, 1 in the run" in other.stderr


def test_a_moe_run_writes_metrics_json_after_its_predictions_and_figures(tmp_path,
                                                                        monkeypatch):
    """metrics.json came before predictions.h5 and the figures: a run stopped while writing
    them kept a final-looking metrics.json without its results."""
    from physml.cases import moe

    written = []
    plot = moe._plot

    def recording_plot(ds, pred, model, folder, problem):
        written.append(sorted(p.name for p in folder.iterdir()))
        plot(ds, pred, model, folder, problem)

    monkeypatch.setattr(moe, "_plot", recording_plot)
    case = load_case("cases/moe_diffusion_sorption.yaml", [*TINY, "output.figures=true"])
    folder, _ = run_case(case, tmp_path)
    assert "predictions.h5" in written[0] and "metrics.json" not in written[0]
    assert (folder / "metrics.json").is_file()


def test_a_moe_run_s_wall_s_is_read_after_its_predictions_and_figures(tmp_path, monkeypatch):
    """``wall_s`` is the whole run's time, the predictions and figures written included:
    the figures here take 100 s of the run's clock."""
    import time

    from physml.cases import moe

    late = [0.0]
    monkeypatch.setattr(moe, "time", SimpleNamespace(
        perf_counter=lambda: time.perf_counter() + late[0]))

    def slow_plot(ds, pred, model, folder, problem):
        late[0] = 100.0

    monkeypatch.setattr(moe, "_plot", slow_plot)
    case = load_case("cases/moe_diffusion_sorption.yaml", [*TINY, "output.figures=true"])
    folder, summary = run_case(case, tmp_path)
    written = json.loads((folder / "metrics.json").read_text())["summary"]["wall_s"]
    assert written == summary["wall_s"] >= 100.0


def test_resume_without_a_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    case = load_case("cases/moe_diffusion_sorption.yaml", TINY)
    with pytest.raises(ValueError, match="nothing to resume"):
        run_case(case, tmp_path, resume=True)


@pytest.mark.parametrize("problem, space, nt", [("diffusion_sorption", (16,), 6),
                                                ("navier_stokes", (8, 8), 3)])
def test_trajectories_are_the_samples_solved_one_by_one(problem, space, nt):
    u0, u = trajectories(problem, space, nt, 3, first=5)
    spec, solver = sample_setup(problem, space, nt, None)
    alone = [solve_sample(spec, solver, initial_state(spec, solver.grid, 5 + i))
             for i in range(3)]
    assert torch.equal(u, torch.from_numpy(np.stack(alone)))
    assert torch.equal(initial_conditions(problem, space, 3, first=5), u0)
    assert u0.dtype == u.dtype == torch.float64 and u.shape == (3, nt, *space)


def test_a_soft_head_reports_no_inner_solves():
    """It solves nothing: the headline said 'inner solves converged 100 %'."""
    assert _soft_trainer(2, 1e-3).fit()["inner_solves_converged"] is None


def test_the_diffusion_sorption_case_caps_its_inner_solves_where_they_converge():
    """The cpu variant's 200 steps: with 8 iterations 2.2 % of the solves of steps without a
    point at R's kink stopped short of their tolerance, with 12 none (16 and 24 gained under
    2 % on the steps with one); the schema's default is the same cap."""
    for overrides in ([], ["variant=cpu"]):
        case = load_case("cases/moe_diffusion_sorption.yaml", overrides)
        assert case.constraint.max_iter == 12
    assert ConstraintSpec().max_iter == 12


def test_the_summary_reports_the_share_of_training_points_at_the_kink_of_r():
    """Diffusion-sorption's rows clip R's argument at 0, where the implicit gradient is not the
    gradient: the mean share over the steps is reported, kept for a resume and headlined."""
    trainer = _soft_trainer(2, 1e-3)
    result = trainer.fit()
    assert len(trainer.at_kink) == 2 and trainer.state_dict()["at_kink"] == trainer.at_kink
    assert result["cells_at_kink"] == pytest.approx(np.mean(trainer.at_kink))
    assert 0 <= result["cells_at_kink"] <= 1
    assert "cells at the kink of R" in headline({**result, "rel_l2": result["test_rel_l2"],
                                                 "threshold": None})


@pytest.mark.parametrize("problem, symbol", [("navier_stokes", "w"), ("diffusion_sorption", "u")])
def test_the_solution_figure_names_the_problem_s_field(tmp_path, monkeypatch, problem, symbol):
    from physml.cases import figures
    from physml.cases import moe as moe_case
    from physml.cases.run_folder import comparison_dataset

    shown = []
    monkeypatch.setattr(figures, "plot_solution", lambda ds, path, **kw: shown.append(ds))
    space = {"x": [0.25, 0.75], "y": [0.25, 0.75]} if problem == "navier_stokes" else {
        "x": [0.25, 0.75]}
    shape = (1, 2, *[2] * len(space))
    ds = comparison_dataset(np.zeros(shape), np.ones(shape), {"sample": [0], "time": [0.0, 1.0],
                                                              **space},
                            {}, moe_case._metadata(problem))
    moe_case._plot(ds, torch.zeros(shape), SimpleNamespace(constraint=None), tmp_path, problem)
    assert figures._field_label(shown[0], "1") == f"{symbol} [1]"


def test_the_last_step_s_test_error_is_in_the_history():
    """The history held the errors at 0, 10, ..., but not the last step's: a run of 20 steps
    ended at step 10, although its summary evaluated step 20."""
    summary = _soft_trainer(20, 1e-3).fit()
    assert len(summary["history"]) == 3
    assert summary["history"][-1] == summary["test_rel_l2"]
    assert training_history(summary["losses"], summary["history"])[20]["test_rel_l2"] == \
        summary["test_rel_l2"]


def test_a_soft_head_measures_no_interface_jump_and_takes_no_experts():
    """It reported interface_jump 0.0 and reference_jump 0.0 (placeholders, not measured), and
    constraint.experts, which it ignores, was validated against the grid."""
    from physml.cases.moe import headline

    trainer = _soft_trainer(1, 1e-3)
    summary = trainer.fit()
    assert summary["interface_jump"] is None and summary["reference_jump"] is None
    case_summary = {**summary, "rel_l2": summary["test_rel_l2"], "threshold": None,
                    "passed": None}
    assert "interface jump" not in headline(case_summary)
    hard = {**case_summary, "interface_jump": 0.24, "reference_jump": 0.26}
    assert "interface jump 2.4e-01 (the reference's 2.6e-01)" in headline(hard)
    with pytest.raises(ValueError, match="constraint: experts does not apply to method 'soft'"):
        load_case("cases/moe_diffusion_sorption.yaml",
                  ["variant=cpu", "constraint.method=soft", "constraint.experts=3"])
    soft = load_case("cases/moe_diffusion_sorption.yaml", ["variant=cpu", "constraint.method=soft"])
    assert soft.resolved()["constraint"] == {"method": "soft"}  # what the run reads


def test_build_model_seeds_its_network_and_leaves_the_caller_s_random_stream_where_it_was():
    rows = problem_rows("diffusion_sorption", (8,), 6)

    def weights() -> list[torch.Tensor]:
        model = build_model("soft", rows, 6, basis=3, width=4, modes=(2, 2), seed=5,
                            solver=LevenbergMarquardt())
        return [p.detach().clone() for p in model.parameters()]

    torch.manual_seed(123)
    expected = torch.rand(4)[1:]
    torch.manual_seed(123)
    torch.rand(1)
    first = weights()
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(7)
    assert all(torch.equal(a, b) for a, b in zip(weights(), first))  # from seed, not the stream


def test_a_moe_run_stopped_on_a_nan_keeps_its_steps_in_metrics_json(tmp_path):
    """A loss driven to Inf stops the run with the step named; metrics.json keeps the losses
    of the steps taken and why it stopped."""
    case = load_case("cases/moe_diffusion_sorption.yaml",
                     TINY + ["training.lr=1e6", "training.iterations=8"])
    with pytest.raises(NonFiniteLossError) as err:
        run_case(case, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    summary = metrics["summary"]
    assert summary["stopped_step"] == err.value.step and summary["passed"] is False
    assert summary["stopped"] == str(err.value)
    assert [h["step"] for h in metrics["history"]] == list(range(err.value.step))  # 0: untrained


def test_the_summary_reports_the_test_evaluation_s_own_inner_solves(tmp_path):
    """A test prediction whose inner solve stopped at the iteration cap went unreported: the
    converged share was the training steps' alone. One Levenberg-Marquardt iteration leaves
    the solves of this nonlinear problem short of their tolerance, twelve meet it; a soft head
    solves nothing."""
    for max_iter, converged in ((1, 0.0), (12, 1.0)):
        case = load_case("cases/moe_diffusion_sorption.yaml",
                         TINY + ["training.iterations=1", f"constraint.max_iter={max_iter}"])
        (tmp_path / str(max_iter)).mkdir()
        folder, summary = run_case(case, tmp_path / str(max_iter))
        saved = json.loads((folder / "metrics.json").read_text())["summary"]
        assert saved["test_inner_solves_converged"] == converged
        shown = headline(summary)
        assert ("100 % of the test evaluation's inner solves did not converge" in shown) == (
            converged == 0)
        assert ("test evaluation" in shown) == (converged < 1)
    assert _soft_trainer(1, 1e-3).evaluate()["test_inner_solves_converged"] is None
