"""PINN trainer, loss balancing, models, case files and run folders."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from conftest import damage_a_tensor, slowed_figures
from physml.cases.pinn import build_trainer
from physml.cases.pinn_training import load_checkpoint, save_checkpoint
from physml.cases.registry import load_case, run_case
from physml.errors import NonFiniteLossError
from physml.models import MODELS, build_model
from physml.train.balancing import ConFIG, LearningRateAnnealing
from physml.train.bundled import BurgersProblem, ConvectionProblem
from physml.train.pinn import PINNTrainer

CASE = str(Path(__file__).parents[1] / "cases" / "burgers.yaml")
TINY = ["training.adam.steps=20", "training.lbfgs.steps=6", "training.collocation.points=256",
        "training.collocation.resample_every=10", "evaluation.every=10", "evaluation.nx=32",
        "evaluation.nt=11", "training.checkpoint_every=5"]


@pytest.fixture
def tiny_case(tmp_path):
    return load_case(CASE, [*TINY, f"output.folder={tmp_path}",
                                            "model.width=8", "model.depth=2"])


@pytest.mark.parametrize(
    "kind", [k if k == "mlp" else pytest.param(k, marks=pytest.mark.slow) for k in sorted(MODELS)]
)
def test_every_model_kind_builds_through_the_factory_and_trains(kind):
    """Each kind a case may name (the schema's list) is built by ``build_model`` with the
    problem's input periods, and 40 Adam steps on a convection PINN lower the loss and the
    error (rel. L2 0.10-0.54 after them, 0.57-1.38 untrained)."""
    from physml.cases.sections import ModelSpec

    assert set(MODELS) == set(ModelSpec.model_fields["kind"].annotation.__args__)
    torch.manual_seed(0)
    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0,
                                periodic_embedding=False)
    model = build_model(kind, problem.input_dim, problem.output_dim, width=16, depth=2,
                        harmonics=2, periods=problem.input_periods)
    trainer = PINNTrainer(model, problem, points=128, adam_steps=40, adam_lr=1e-2,
                          eval_every=40, eval_shape=(16, 5), dtype=torch.float64)
    untrained = trainer.evaluate()["rel_l2"]
    trainer.fit()
    losses = [r["loss"] for r in trainer.history]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    assert trainer.history[-1]["rel_l2"] < min(0.75, 0.8 * untrained)


def test_the_loss_terms_are_the_mean_squares_of_the_residual_and_of_each_condition():
    """On a fixed network and its points, the residual term is mean((u_t + beta u_x)^2) and the
    soft periodic condition's mean((u(a, t) - u(b, t))^2), computed here by autograd."""
    torch.manual_seed(0)
    problem = ConvectionProblem(3.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0,
                                periodic_embedding=False)
    model = build_model("mlp", problem.input_dim, problem.output_dim, width=16, depth=2)
    trainer = PINNTrainer(model, problem, points=128, condition_points=32, adam_steps=1,
                          eval_shape=(16, 5), dtype=torch.float64)
    terms = trainer.losses()
    assert problem.inputs == ("x", "t") and set(terms) == {"residual", "periodic"}
    X = trainer.points.clone().requires_grad_(True)
    u_x, u_t = torch.autograd.grad(trainer.field(X).sum(), X)[0].T
    torch.testing.assert_close(terms["residual"], (u_t + 3.0 * u_x).square().mean(), rtol=1e-12,
                               atol=0)
    t = trainer.conditions["periodic"][0][:, 1:]
    a, b = (trainer.field(torch.hstack([torch.full_like(t, x), t])) for x in (0.0, 2 * np.pi))
    torch.testing.assert_close(terms["periodic"], (a - b).square().mean(), rtol=1e-12, atol=0)


def test_periodic_model_is_periodic_in_the_periodic_inputs_only():
    model = build_model("periodic", 2, 1, width=8, depth=2, harmonics=3,
                        periods=BurgersProblem(0.01, (-1.0, 1.0), (0.0, 1.0), -1.0,
                                               np.pi).input_periods).double()
    X = torch.rand(6, 2, dtype=torch.float64)
    shift = torch.tensor([4.0, 0.0], dtype=torch.float64)  # 2 (b - a) on [-1, 1]
    torch.testing.assert_close(model(X + shift), model(X), rtol=0, atol=1e-12)
    assert (model(X + shift.flip(0)) - model(X)).abs().max() > 1e-3  # t is not periodic
    with pytest.raises(ValueError, match="needs periods"):
        build_model("periodic", 2, 1)
    with pytest.raises(ValueError, match="unknown model kind 'resnet'; allowed: mlp"):
        build_model("resnet", 2, 1)


def test_hard_constraints_hold_exactly(tiny_case):
    trainer = build_trainer(tiny_case)
    x = torch.linspace(-1, 1, 7, dtype=trainer.dtype)[:, None]
    initial = trainer.field(torch.hstack([x, torch.zeros_like(x)]))
    torch.testing.assert_close(initial, -torch.sin(torch.pi * x), atol=1e-6, rtol=0)
    t = torch.rand(5, 1, dtype=trainer.dtype)
    for side in (-1.0, 1.0):
        edge = trainer.field(torch.hstack([torch.full_like(t, side), t]))
        assert edge.abs().max() < 1e-6


def test_run_writes_the_run_folder_and_improves(tiny_case):
    folder, result = run_case(tiny_case)
    for name in ("config.yaml", "checkpoint.pt", "metrics.json", "predictions.h5",
                 "solution.png", "losses.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    errors = [r["rel_l2"] for r in metrics["history"] if "rel_l2" in r]
    assert len(errors) >= 2 and errors[-1] < errors[0]
    assert errors[-1] < 0.55  # 0.46 here, 0.61 untrained
    # checkpoint_every=5 does not divide the 26 steps: the last one is saved all the same, and
    # the checkpoint gives the predictions written (what predict, export and --resume read)
    last = metrics["history"][-1]["step"]
    assert last == 26 and torch.load(folder / "checkpoint.pt", weights_only=False)["step"] == last
    ds = xr.open_dataset(folder / "predictions.h5")
    saved = build_trainer(tiny_case)
    load_checkpoint(saved, folder)
    np.testing.assert_array_equal(saved.prediction(), ds["prediction"].values)
    assert ds["prediction"].dims == ("time", "x") and ds.sizes == {"time": 11, "x": 32}
    for name in ("prediction", "reference", "error", "time", "x"):  # CF metadata everywhere
        assert {"long_name", "units"} <= set(ds[name].attrs)
    assert result["threads"] >= 1 and result["wall_s"] > 0
    assert result["rel_l2"] == pytest.approx(float(np.linalg.norm(ds["error"]) /
                                                   np.linalg.norm(ds["reference"])))


def without_timing(history):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in history]


def test_same_case_same_metrics_and_resume_matches(tiny_case, tmp_path):
    whole = build_trainer(tiny_case)
    every_step = []
    whole.fit(on_step=lambda record: every_step.append(record["step"]))
    again = build_trainer(tiny_case)
    again.fit()
    assert without_timing(again.history) == without_timing(whole.history)  # reproducible
    for cut in (15, 23):  # between two redraws of the Sobol points; inside the L-BFGS phase
        interrupted = build_trainer(tiny_case)
        interrupted.fit(until=cut)
        save_checkpoint(interrupted, tmp_path)
        resumed = build_trainer(tiny_case)
        load_checkpoint(resumed, tmp_path)  # as --resume reads it: weights-only
        steps = []
        resumed.fit(on_step=lambda record, seen=steps: seen.append(record["step"]))
        assert steps == [s for s in every_step if s > cut]  # only the steps after the cut
        assert without_timing(resumed.history) == without_timing(whole.history)
        for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_resumed_run_carries_its_wall_time_over(tiny_case, tmp_path):
    interrupted = build_trainer(tiny_case)
    interrupted.fit(until=8)
    spent = interrupted.elapsed_s
    assert spent == interrupted.history[-1]["wall_s"] > 0
    save_checkpoint(interrupted, tmp_path)
    resumed = build_trainer(tiny_case)
    load_checkpoint(resumed, tmp_path)
    assert resumed.elapsed_s == spent
    resumed.fit(until=12)
    wall = [r["wall_s"] for r in resumed.history]
    assert wall[8] > spent and np.all(np.diff(wall) > 0)  # continues, never restarts at zero
    assert resumed.elapsed_s == wall[-1]


def test_a_checkpoint_missing_a_key_state_dict_writes_is_refused_naming_the_file(tiny_case,
                                                                                 tmp_path):
    """--resume and load_run read every key :meth:`PINNTrainer.state_dict` writes; a
    checkpoint without one is refused with the file and the key named."""
    import physml

    trainer = build_trainer(tiny_case)
    save_checkpoint(trainer, tmp_path)
    (tmp_path / "config.yaml").write_text(tiny_case.to_yaml())
    whole = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("elapsed_s", "coefficients"):
        torch.save({k: v for k, v in whole.items() if k != key}, tmp_path / "checkpoint.pt")
        with pytest.raises(ValueError, match=rf"--resume: '.*checkpoint.pt' does not fit the "
                                             rf"run .*\(KeyError: '{key}'\)"):
            load_checkpoint(trainer, tmp_path)
    with pytest.raises(ValueError, match=r"checkpoint.pt' does not hold the network its "
                                         r"config.yaml describes \(no state dict under "
                                         r"'coefficients'\)"):
        physml.load_run(tmp_path)


def test_a_gradient_too_large_to_square_stops_the_run_instead_of_freezing_adam(tiny_case):
    """A finite gradient past the square root of the largest float overflowed Adam's second
    moment to inf: every later update was 0, the loss stayed where it was, and the run ended
    with exit 0. The residual scaled by max^0.3 keeps the loss (max^0.6) and the gradient
    finite and makes the gradient's square (max^1.2) overflow."""
    trainer = build_trainer(tiny_case)
    residual = trainer.problem.residual_function

    def huge(d):
        r = residual(d)
        return r * torch.finfo(r.dtype).max ** 0.3 if trainer.step == 3 else r

    trainer.problem.residual_function = huge
    with pytest.raises(NonFiniteLossError, match="NaN/Inf at step 4"):  # the fourth update
        trainer.fit()
    assert all(torch.isfinite(v).all() for state in trainer.adam.state.values()
               for v in state.values())


def test_every_adam_loop_refuses_a_gradient_whose_square_overflows():
    from physml.errors import adam_can_step

    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    w.grad = torch.tensor([1.0, torch.finfo(torch.float64).max ** 0.6, 0.0],
                          dtype=torch.float64)
    assert torch.isfinite(w.grad).all() and not adam_can_step(torch.tensor(1.0), [w])
    w.grad = torch.ones(3, dtype=torch.float64)
    assert adam_can_step(torch.tensor(1.0), [w])
    assert not adam_can_step(torch.tensor(float("nan")), [w])


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tiny_case, tmp_path):
    trainer = build_trainer(tiny_case)
    residual = trainer.problem.residual_function

    def poisoned(d):
        r = residual(d)
        return r * np.nan if trainer.step == 12 else r

    trainer.problem.residual_function = poisoned
    saved = []
    with pytest.raises(NonFiniteLossError, match="NaN/Inf at step 13; the checkpoint of step 10"):
        trainer.fit(on_checkpoint=lambda: saved.append(trainer.step), checkpoint_every=5)
    assert saved == [5, 10]


def test_an_lbfgs_step_records_the_loss_before_its_update_as_an_adam_step_does(tmp_path):
    """The record of update k is the loss at the parameters update k starts from, in both
    phases: no value is skipped at the switch, and no line-search trial point is recorded."""
    trainer = build_trainer(load_case(CASE, [  # the same points throughout
        *TINY, "training.collocation.resample_every=0", f"output.folder={tmp_path}",
        "model.width=8", "model.depth=2"]))
    for until in (20, 21, 22, 23):  # 20 Adam steps, then L-BFGS
        trainer.fit(until=until - 1)
        expected = float(trainer.balancer.total(trainer.losses()).detach())
        trainer.fit(until=until)
        assert trainer.history[-1]["step"] == until
        assert trainer.history[-1]["loss"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step", [9, 22])  # an Adam step; an L-BFGS step
def test_a_non_finite_gradient_of_a_finite_loss_stops_before_the_step(tiny_case, step):
    """sqrt(0 r) adds nothing to the loss and NaN to its gradient: the step is not taken, so
    the parameters (and any checkpoint saved later) stay finite."""
    trainer = build_trainer(tiny_case)
    residual = trainer.problem.residual_function

    def poisoned(d):
        r = residual(d)
        return r + torch.sqrt(0 * r) if trainer.step == step else r

    trainer.problem.residual_function = poisoned
    trainer.fit(until=step)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(NonFiniteLossError, match=f"gradient became NaN/Inf at step {step + 1}"):
        trainer.fit()
    for p, q in zip(trainer.model.parameters(), before):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_blow_up_at_the_first_step_names_the_checkpoint_a_run_writes_first(tmp_path,
                                                                              cli_in_process):
    """The loss's NaN is the last line, after the progress line, and names the step-0
    checkpoint the run folder holds."""
    result = cli_in_process("run", CASE, "training.adam.lr=1.0e6", "training.adam.steps=20",
                            "training.lbfgs.steps=0", "training.collocation.points=200",
                            "evaluation.nx=16", f"output.folder={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("physml: error: the loss or its gradient became NaN/Inf at step ")
    (folder,) = tmp_path.iterdir()
    # a resume replays the same steps into the same NaN: not offered as the cure
    assert (f"the checkpoint of step 0 is kept ({folder / 'checkpoint.pt'}); a --resume would "
            "replay the same steps into the same failure: change the case") in last
    assert "--resume " + str(folder) not in last
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["step"] == 0
    # the folder says why it stopped, for predict and export to tell
    assert (folder / "stopped.txt").read_text().startswith(
        "the loss or its gradient became NaN/Inf at step ")


def test_a_resume_names_a_cut_checkpoint_and_the_keys_another_case_changes(tiny_case, tmp_path,
                                                                           cli_in_process):
    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(build_trainer(tiny_case), folder)
    (folder / "config.yaml").write_text(tiny_case.to_yaml())
    other = cli_in_process("run", CASE, "--resume", str(folder))
    assert other.returncode == 2 and "differs from the configuration" in other.stderr
    # each value on both sides, and the overrides the run was started with (output.folder,
    # which differs too, is the folder --resume names: not compared)
    assert "model.depth: 5 here, 2 in the run; model.width: 32 here, 8 in the run" \
        in other.stderr and "output.folder" not in other.stderr
    cure = other.stderr.split("give the overrides the run was started with: ")[1].split()
    assert {"model.depth=2", "model.width=8", *TINY} == set(cure)
    assert cli_in_process("run", CASE, "--resume", str(folder), *TINY, "model.width=8",
                          "model.depth=2", "--quiet").returncode == 0
    (folder / "checkpoint.pt").write_bytes((folder / "checkpoint.pt").read_bytes()[:1000])
    cut = cli_in_process("run", str(folder / "config.yaml"), "--resume", str(folder))
    assert cut.returncode == 2 and "Traceback" not in cut.stderr
    assert "checkpoint.pt' cannot be read as a checkpoint (RuntimeError: " in cut.stderr


@pytest.mark.parametrize("dtype, advice", [
    ("float32", "change the case (a lower learning rate or time step, float64) and start a "
                "new run"),
    ("float64", "change the case (a lower learning rate or time step) and start a new run"),
], ids=["float32", "float64"])
def test_a_resume_of_a_stopped_run_is_refused_before_it_replays_the_failure(
        tmp_path, cli_in_process, dtype, advice):
    """--resume takes the run's own case only: from the same checkpoint it replays the same
    steps into the same NaN (a real run's hours). It reloaded and retrained first; float64 was
    offered to a run already in float64."""
    overrides = [*TINY, "model.width=8", "model.depth=2", f"dtype={dtype}"]
    case = load_case(CASE, [*overrides, f"output.folder={tmp_path}"])
    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(build_trainer(case), folder)
    (folder / "config.yaml").write_text(case.to_yaml())
    (folder / "stopped.txt").write_text("the loss or its gradient became NaN/Inf at step 8; "
                                        "the checkpoint of step 5 is kept\n")
    result = cli_in_process("run", CASE, *overrides, "--resume", str(folder), "--quiet")
    assert result.returncode == 2
    assert result.stderr == (
        f"physml: error: --resume: {str(folder)!r} holds stopped.txt: its run stopped (the "
        "loss or its gradient became NaN/Inf at step 8; the checkpoint of step 5 is kept); a "
        f"resume would replay the same steps into the same failure: {advice}\n")
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["step"] == 0


def test_a_stopped_run_keeps_the_losses_before_its_failure_in_metrics_json(
        tmp_path, cli_in_process, monkeypatch):
    """A NaN/Inf stop left only the checkpoint, config.yaml and stopped.txt: the losses that led
    to it were in the terminal output alone. A float64 run is not told to try float64."""
    import physml.cases.pinn as pinn

    def poisoned_after_7_steps(case):  # a NaN gradient at step 8, 3 after the checkpoint
        trainer = build_trainer(case)
        residual = trainer.problem.residual_function

        def poisoned(d):
            r = residual(d)
            return r + torch.sqrt(0 * r) if trainer.step == 7 else r

        trainer.problem.residual_function = poisoned
        return trainer

    monkeypatch.setattr(pinn, "build_trainer", poisoned_after_7_steps)
    result = cli_in_process("run", CASE, *TINY, "model.width=8", "model.depth=2",
                            "dtype=float64", f"output.folder={tmp_path}", "--quiet")
    assert result.returncode == 1
    assert "failure: change the case (a lower learning rate or time step) and" in result.stderr
    (folder,) = tmp_path.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"case", "summary", "history", "environment"}
    assert [record["step"] for record in metrics["history"]] == list(range(1, 8))
    assert all(np.isfinite(record["loss"]) for record in metrics["history"])
    summary = metrics["summary"]
    assert summary["stopped"] == (folder / "stopped.txt").read_text().strip()
    assert summary["stopped"].startswith("the loss or its gradient became NaN/Inf at step 8; "
                                         "the checkpoint of step 5 is kept")
    assert (summary["stopped_step"], summary["checkpoint_step"], summary["steps"],
            summary["passed"]) == (8, 5, 7, False)
    exported = cli_in_process("export", str(folder), "--out", str(tmp_path / "u.pt"))
    assert exported.returncode == 0, exported.stderr
    assert "checkpoint at step 5 of 26 (the run stopped: " in exported.stderr


def test_a_checkpoint_damaged_inside_a_tensor_is_refused_not_resumed(tiny_case, tmp_path):
    """torch.load does not check the zip's checksums: 8 bytes flipped inside a tensor were
    resumed from, and loaded by load_run, without a word."""
    from physml import load_run
    from physml.cases.run_folder import read_checkpoint

    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(build_trainer(tiny_case), folder)
    (folder / "config.yaml").write_text(tiny_case.to_yaml())
    name = damage_a_tensor(folder / "checkpoint.pt")
    with pytest.raises(ValueError, match=rf"checkpoint.pt' cannot be read as a checkpoint "
                                         rf"\(ValueError: its part '.*/{name}' fails its checksum"):
        read_checkpoint(folder)
    with pytest.raises(ValueError, match=rf"load_run: .* its part '.*/{name}' fails its checksum"):
        load_run(folder)


def test_annealing_weights_are_recorded_in_the_history(tmp_path):
    case = load_case(CASE, [*TINY, "model.hard_constraints=false",
                                            "training.balancer.kind=annealing",
                                            f"output.folder={tmp_path}"])
    trainer = build_trainer(case)
    assert isinstance(trainer.balancer, LearningRateAnnealing)
    trainer.fit(until=11)
    weights = trainer.history[-1]["weights"]
    assert set(weights) == {"residual", "initial", "boundary"}
    assert weights == {k: trainer.balancer.weight(k) for k in weights}
    assert weights["initial"] != trainer.history[0]["weights"]["initial"]  # updated at step 10


def test_annealing_raises_the_weaker_condition_by_the_hand_computed_amount():
    r"""Losses linear in two weight matrices (and a bias), so every gradient is a constant.

    Residual: max over layers of max |g| = 4 (the bias's 100 does not count: weights only).
    ``initial``: layer means of |g| 0.1 and 0.1, mean 0.1 -> estimate 4 / (1 * 0.1) = 40 and
    lambda = 0.9 * 1 + 0.1 * 40 = 4.9 (raised); ``boundary``: layer means 10 and 30, mean 20 ->
    4 / 20 = 0.2 and lambda = 0.9 + 0.02 = 0.92 (lowered). The estimate divides by the weighted
    term's gradient, so repeated updates settle where lambda = 4 / (lambda * mean), i.e.
    lambda^2 = 40 and 0.2."""
    W1 = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    W2 = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    params = [W1, bias, W2]
    A1, A2, B1, B2, C1, C2 = (torch.tensor(c, dtype=torch.float64) for c in (
        [[1.0, -3.0], [0.5, 2.0]], [[4.0, -1.0]],
        [[0.1, -0.1], [0.2, 0.0]], [[0.05, -0.15]],
        [[-10.0, -10.0], [-10.0, -10.0]], [[30.0, 30.0]]))

    def losses():
        return {
            "residual": (A1 * W1).sum() + (A2 * W2).sum() + 100 * bias.sum(),
            "initial": (B1 * W1).sum() + (B2 * W2).sum(),
            "boundary": (C1 * W1).sum() + (C2 * W2).sum(),
        }

    balancer = LearningRateAnnealing(every=2, momentum=0.9)
    balancer.backward(losses(), params, step=0)
    assert balancer.weight("initial") == pytest.approx(4.9, rel=1e-12)
    assert balancer.weight("boundary") == pytest.approx(0.92, rel=1e-12)
    assert balancer.weight("residual") == 1.0
    # the gradient applied is that of the total with the updated weights
    torch.testing.assert_close(W1.grad, A1 + 4.9 * B1 + 0.92 * C1)
    for p in params:
        p.grad = None
    balancer.backward(losses(), params, step=1)  # not an update step
    assert balancer.weight("initial") == pytest.approx(4.9, rel=1e-12)
    balancer.backward(losses(), params, step=2)
    assert balancer.weight("initial") == pytest.approx(0.9 * 4.9 + 0.1 * 4 / 0.49, rel=1e-12)
    for step in range(4, 800, 2):
        balancer.backward(losses(), params, step)
    assert balancer.weight("initial") == pytest.approx(np.sqrt(40.0), rel=1e-9)
    assert balancer.weight("boundary") == pytest.approx(np.sqrt(0.2), rel=1e-9)


def test_config_direction_does_not_increase_any_loss():
    w = torch.tensor([1.0, 1.0], requires_grad=True)
    losses = {"residual": (w[0] - 3) ** 2 + 0.1 * w[1] ** 2, "initial": (w[0] + 2) ** 2}
    ConFIG().backward(losses, [w], step=0)
    for loss in losses.values():
        g = torch.autograd.grad(loss, w, retain_graph=True)[0]
        assert torch.dot(g, w.grad) > 0  # a descent direction for every term


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["colour=red"], "unknown key 'colour'; allowed: kind, name, description, output"),
        (["training.adam.steps=many"], "training.adam.steps: Input should be a valid integer"),
        (["pde.nu=-0.1"], "pde.nu: Input should be greater than or equal to 0"),
        (["domain.x=[1, 1]"], "domain.x: Value error, upper bound must exceed lower bound"),
        (["domain.x=[1.0, -1.0]"],
         "lower bound, got [1.0, -1.0] (empty)\n"),  # the value quoted once, not again
        (["training.checkpoint_every=0"], "Input should be greater than 0 (got 0)"),
        (["model.kind=transformer"], "model.kind: Input should be 'mlp', 'fourier'"),
        (["model.widht=3"], "unknown key 'model.widht'; allowed: kind, width, depth"),
        (["training.adam.stepz=3"], "unknown key 'training.adam.stepz'; allowed: steps, lr"),
        (["training.adam.steps=0", "training.lbfgs.steps=0"],
         "training: adam.steps + lbfgs.steps must be > 0"),
        (["training.adam.steps=[1,"],
         "override 'training.adam.steps=[1,': the value '[1,' is not YAML"),
        (["model.width=true"], "model.width: True is a boolean; a number is expected"),
        (["threads=0"], "threads: must be 'auto' or a whole number of threads >= 1 (got 0)"),
        (["device=tpu"], "device: not a device name; allowed: cpu, cuda, cuda:N (got 'tpu')"),
        # a Lagrangian PINN's initial conditions live in the transform only: without it the
        # run trained no initial condition at all (relative L2 0.996)
        (["training.method=lpinn", "model.hard_constraints=false"],
         "model.hard_constraints: false leaves a Lagrangian PINN without its initial "
         "conditions"),
    ],
)
def test_bad_cases_exit_2_naming_the_key(overrides, message, cli_in_process):
    result = cli_in_process("validate", CASE, *overrides)
    assert result.returncode == 2
    assert message.replace("Value error, ", "") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_recorded_lagrangian_pinn_without_its_transform_still_loads(tmp_path):
    """A run folder written before the rule is read as it ran (predict, resume)."""
    from physml.cases.registry import load_case

    overrides = ["training.method=lpinn", "model.hard_constraints=false"]
    with pytest.raises(ValueError, match="leaves a Lagrangian PINN"):
        load_case(CASE, overrides)
    case = load_case(CASE, overrides, recorded=True)
    assert case.training.method == "lpinn" and not case.model.hard_constraints


def test_missing_case_file_and_listing(cli_in_process):
    result = cli_in_process("run", "cases/nope.yaml")
    assert result.returncode == 2 and "case file 'cases/nope.yaml' does not exist" in result.stderr
    listing = cli_in_process("cases")
    assert listing.stdout.startswith("burgers ") and "Burgers" in listing.stdout


@pytest.mark.parametrize(
    "device, message",
    [("gpu", "device: not a device name; allowed: cpu, cuda, cuda:N (got 'gpu')"),
     ("cuda:7", "device='cuda:7' is not available; available: cpu"[:37])],
)
def test_unusable_device_exits_2_and_leaves_no_run_folder(tmp_path, device, message,
                                                          cli_in_process):
    result = cli_in_process("run", CASE, f"device={device}", f"output.folder={tmp_path}")
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_yaml_syntax_error_names_the_line(tmp_path, cli_in_process):
    case = tmp_path / "broken.yaml"
    case.write_text("name: x\npde: {name: burgers\n")
    result = cli_in_process("validate", str(case))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not valid YAML at line 3, column 1: expected ',' or '}'" in result.stderr


def test_a_key_given_twice_is_refused_with_its_line(tmp_path, cli_in_process):
    case = tmp_path / "twice.yaml"
    case.write_text(Path(CASE).read_text() + "training:\n  adam: {steps: 3}\n")
    result = cli_in_process("validate", str(case))
    lines = len(Path(CASE).read_text().splitlines())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (f"not valid YAML at line {lines + 1}, column 1: the key 'training' is given twice"
            in result.stderr)
    override = cli_in_process("validate", CASE, "training.adam={steps: 1, steps: 2}")
    assert override.returncode == 2 and "the key 'steps' is given twice" in override.stderr
    merged = tmp_path / "merged.yaml"  # a merge (<<) and a key that overrides it: allowed
    merged.write_text(Path(CASE).read_text() + "variants:\n  small: &small {model.width: 16}\n"
                      "  long: {<<: *small, training.adam.steps: 50, model.width: 12}\n")
    result = cli_in_process("validate", str(merged), "variant=long")
    assert result.returncode == 0 and "mlp 12x5, 50 Adam" in result.stdout
    unhashable = cli_in_process("validate", CASE, "model={[1, 2]: 3}")
    assert unhashable.returncode == 2 and "found unhashable key" in unhashable.stderr


def test_overrides_after_an_option_are_still_overrides(tiny_case, tmp_path, cli_in_process,
                                                       capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(build_trainer(tiny_case), folder)
    (folder / "config.yaml").write_text(tiny_case.to_yaml())
    # the overrides after --resume reach the case: it is compared with the run's own
    other = cli_in_process("run", CASE, "--resume", str(folder), *TINY, "model.width=8",
                           "model.depth=2", f"output.folder={tmp_path}", "model.width=12")
    assert other.returncode == 2 and "differs from the configuration" in other.stderr
    assert other.stderr.split("(a pinn case) in ")[1].startswith(
        "model.width: 12 here, 8 in the run; give the overrides the run was started with: "
        "model.width=8")
    from physml.cli import main

    with pytest.raises(SystemExit) as stop:  # argparse's own refusal, exit status 2
        main(["run", CASE, "--log-every", "5", "training.adam.steps=7", "--bogus", "stray"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --bogus stray" in capsys.readouterr().err


def test_a_folder_given_as_the_case_file(cli_in_process):
    result = cli_in_process("run", "cases")
    assert result.returncode == 2 and "'cases' is a folder; expected a case file" in result.stderr


def test_lagrangian_fields_map_back_to_the_eulerian_grid():
    """Exact characteristics x = xi + beta t and u = u0(xi) give sin(x - beta t) on the grid."""
    from physml.train.bundled import LagrangianConvectionProblem

    problem = LagrangianConvectionProblem(30.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)

    def exact(X):
        return torch.cat([X[:, :1] + 30.0 * X[:, 1:], torch.sin(X[:, :1])], dim=1)

    x, t = problem.eval_axes((128, 11))
    reference = problem.reference([x, t])
    field = problem.eulerian(exact, x, t, lambda a: torch.as_tensor(a, dtype=torch.float64))
    assert np.abs(field - reference).max() < 2e-3  # linear interpolation on 512 characteristics
    X = torch.tensor([[0.3, 0.2], [5.0, 0.9]], dtype=torch.float64, requires_grad=True)
    residuals = problem.residuals(X, exact(X))
    assert all(r.abs().max() < 1e-12 for r in residuals.values())
    with pytest.raises(ValueError, match="imposes its initial conditions through its output "
                                         "transform only .* hard_constraints=True"):
        PINNTrainer(build_model("mlp", 2, 2, width=8, depth=2), problem, hard_constraints=False)


@pytest.mark.parametrize("speed, scale", [(0.5, 1.0), (30.0, 30.0)])
def test_the_lagrangian_position_is_the_documented_transform(speed, scale):
    """Convection: x = xi + beta t + t N_x; Burgers: x = xi + c0 t N_x with
    c0 = max(max|u0|, 1), which a speed below 1 leaves unscaled."""
    from physml.train.bundled import LagrangianBurgersProblem, LagrangianConvectionProblem

    X, raw = torch.tensor([[1.0, 0.5]]), torch.tensor([[1.0, 0.0]])
    convection = LagrangianConvectionProblem(speed, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    burgers = LagrangianBurgersProblem(0.01, (-1.0, 1.0), (0.0, 1.0), -speed, np.pi)
    assert convection.constrain(X, raw)[0, 0].item() == pytest.approx(1.0 + 0.5 * (speed + 1))
    assert burgers.constrain(X, raw)[0, 0].item() == pytest.approx(1.0 + 0.5 * scale)
    assert "x = \\xi + \\beta t + t N_x" in LagrangianConvectionProblem.__doc__
    assert "\\max(\\max|u_0|, 1)" in LagrangianConvectionProblem.__doc__


@pytest.mark.parametrize("name, value", [
    ("points", 0), ("points", True), ("condition_points", 0), ("adam_steps", -5),
    ("lbfgs_steps", 1.5), ("lbfgs_history", 0), ("resample_every", -1), ("eval_every", 0),
    ("seed", -1), ("eval_shape", (16, 0)), ("adam_lr", 0.0), ("adam_lr", float("nan")),
    ("lbfgs_lr", float("inf")), ("adam_decay", 0.0), ("adam_decay", 1.5),
    ("resample", "rad"), ("hard_constraints", "no"), ("device", "gpu"),
    pytest.param("device", "cuda:0", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                              reason="a GPU is present")),
    ("dtype", torch.int64),
])
def test_a_bad_trainer_argument_is_refused_naming_it_and_its_value(name, value):
    """Checked when the trainer is built, before any point is drawn: one ValueError that
    starts with the argument and its value, not a division by zero at the first evaluation
    (eval_every=0), NumPy's empty concatenation (points=0) or a run of another kind
    (resample="rad" as "residual", adam_steps=-5 as 0 steps)."""
    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0,
                                periodic_embedding=False)
    model = build_model("mlp", problem.input_dim, problem.output_dim, width=4, depth=1)
    named = "eval_shape[1]=0" if name == "eval_shape" else f"{name}={value!r}"
    with pytest.raises(ValueError) as refused:
        PINNTrainer(model, problem, **{name: value})
    assert str(refused.value).startswith(named)
    assert any(hint in str(refused.value) for hint in ("allowed", "must be", "available: cpu"))


def test_a_sampler_asked_for_no_points_or_a_negative_seed_says_which():
    from physml.geometry import Polygon
    from physml.train.sampling import DomainSampler

    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    sampler = DomainSampler(problem.geometry, problem.time)
    assert sampler.draw(3.0).shape == (3, 2)
    with pytest.raises(ValueError, match="^n=0 must be a whole number >= 1"):
        sampler.draw(0)
    with pytest.raises(ValueError, match="^seed=-1 must be a whole number >= 0"):
        DomainSampler(problem.geometry, problem.time, seed=-1)
    sliver = Polygon([(0, 0), (1, 1), (1, 1.0000001)])  # area 5e-8: the batch grew to 41 GiB
    with pytest.raises(ValueError, match="none of .* points drawn in the bounding box lies "
                                         "inside the Polygon: it is empty or too thin"):
        DomainSampler(sliver, (0.0, 1.0), kind="uniform").draw(200)


def test_lpinn_learns_high_speed_convection(tmp_path):
    case = load_case(str(Path(CASE).with_name("convection_lpinn.yaml")), [
        "training.adam.steps=150", "training.lbfgs.steps=100", "training.collocation.points=512",
        "model.width=16", "model.depth=2", "evaluation.nx=64", "evaluation.nt=11",
        "evaluation.every=250", "dtype=float64", f"output.folder={tmp_path}"])
    trainer = build_trainer(case)
    trainer.fit()
    assert trainer.evaluate()["rel_l2"] < 5e-2


def test_periodic_and_dirichlet_burgers_agree_for_the_odd_initial_condition():
    """u0 = -sin(pi x) stays odd about 0 and +-1, so the periodic Lagrangian problem is Raissi's."""
    from physml.train.bundled import BurgersProblem, LagrangianBurgersProblem

    args = (0.01 / np.pi, (-1.0, 1.0), (0.0, 1.0), -1.0, np.pi)
    axes = BurgersProblem(*args).eval_axes((64, 11))
    dirichlet = BurgersProblem(*args).reference(axes)
    periodic = LagrangianBurgersProblem(*args).reference(axes)
    assert np.abs(dirichlet - periodic).max() < 1e-6
    with pytest.raises(ValueError, match="wavenumber"):
        LagrangianBurgersProblem(0.01, (-1.0, 1.0), (0.0, 1.0), -1.0, 1.0)


def test_lpinn_learns_viscous_burgers_before_the_shock(tmp_path):
    case = load_case(str(Path(CASE).with_name("burgers_lpinn.yaml")), [
        "training.adam.steps=300", "training.lbfgs.steps=200", "training.collocation.points=512",
        "model.width=16", "model.depth=3", "evaluation.nx=64", "evaluation.nt=11",
        "evaluation.every=500", f"output.folder={tmp_path}"])
    trainer = build_trainer(case)
    trainer.fit()
    assert trainer.evaluate()["rel_l2"] < 3e-2


def test_helmholtz_boundary_has_every_edge_and_inputs_are_standardised():
    from physml.train.bundled import HelmholtzProblem

    problem = HelmholtzProblem(1.0, 4.0, 1.0, (-1.0, 1.0), (-1.0, 1.0))
    X, target = problem.draw_conditions(64, np.random.default_rng(0))["boundary"]
    assert X.shape == (256, 2) and np.abs(target).max() < 1e-12  # u* vanishes on the edges
    for column, value in ((0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)):
        assert np.sum(X[:, column] == value) == 64
    inside = torch.rand(100000, 2, dtype=torch.float64) * 2 - 1
    features = problem.embed(inside)
    assert torch.allclose(features.std(0), torch.ones(2, dtype=torch.float64), atol=1e-2)


def test_solution_figure_labels_colour_bars_and_names_scheme_step_and_time(saved_figures):
    from matplotlib.colors import LogNorm

    from physml.cases.figures import plot_solution

    x, t = np.linspace(-1, 1, 8), np.linspace(0, 1, 5)
    reference = np.sin(np.pi * x)[None, :] * np.exp(-t)[:, None]
    ds = xr.Dataset({"prediction": (("time", "x"), reference + 1e-3),
                     "reference": (("time", "x"), reference),
                     "error": (("time", "x"), np.full_like(reference, 1e-3))},
                    coords={"x": ("x", x, {"units": "m"}), "time": t},
                    attrs={"case": "burgers", "rel_l2": 2e-3})
    plot_solution(ds, Path("unused.png"), scheme="PINN, Adam + L-BFGS", step=120,
                  log_error=True)
    fig = saved_figures[-1]
    bars = [ax.get_ylabel() for ax in fig.axes[3:]]
    assert bars == ["u [dimensionless]"] * 2 + ["|error| of u [dimensionless]"]
    assert isinstance(fig.axes[2].images[0].norm, LogNorm)
    assert fig.axes[0].get_xlabel() == "x [m]" and fig.axes[0].get_ylabel() == "time"
    assert fig.get_suptitle() == ("burgers: PINN, Adam + L-BFGS, step 120, time from 0 to 1; "
                                  "relative L2 error 2.00e-03")
    plane = xr.Dataset({name: (("x", "y"), np.outer(ds[name].values[2], ds[name].values[2]))
                        for name in ("prediction", "reference", "error")},
                       coords={"x": x, "y": x}, attrs={"case": "burgers", "rel_l2": 2e-3})
    plot_solution(plane.assign_attrs(t=0.5), Path("unused.png"))  # a snapshot of a 2D field
    assert saved_figures[-1].get_suptitle() == "burgers: t = 0.5; relative L2 error 2.00e-03"
    assert not isinstance(saved_figures[-1].axes[2].images[0].norm, LogNorm)


def test_losses_figure_adds_a_weights_panel_when_the_weights_vary(saved_figures):
    from physml.cases.figures import plot_losses

    def history(weight):
        return [{"step": s, "loss": 1.0 / (s + 1), "loss_residual": 1.0 / (s + 1),
                 "loss_initial": 0.5, "weights": {"residual": 1.0, "initial": weight(s)}}
                for s in range(20)]

    plot_losses(history(lambda s: 1.0), Path("unused.png"), "fixed")
    assert len(saved_figures[-1].axes) == 1
    plot_losses(history(lambda s: 1.0 + s), Path("unused.png"), "annealing", adam_steps=10)
    weights = saved_figures[-1].axes[1]
    assert weights.get_ylabel() == "loss weight λ"
    initial = [line for line in weights.lines if line.get_label() == "initial"][0]
    np.testing.assert_allclose(initial.get_ydata(), np.arange(1.0, 21.0))


def test_threads_default_avoids_spinning_threads_and_scales_with_the_points():
    from physml.threads import apply_threads, choose_threads

    assert choose_threads(16000, passive=False, cores=8) == 1  # spinning threads collapse
    assert [choose_threads(n, passive=True, cores=2) for n in (1000, 63999, 64000, 10**6)] == [
        1, 1, 2, 2]
    assert choose_threads(4000, 3, passive=False) == 3  # a number is used as given
    for bad in (0, -2, 1.5, "many", True):
        with pytest.raises(ValueError, match="expected 'auto' or an integer >= 1"):
            choose_threads(1000, bad, passive=True)
    before = torch.get_num_threads()
    try:
        assert apply_threads(1000, 1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)



def test_available_cores_is_an_int_where_the_system_does_not_tell(monkeypatch):
    """Without CPU affinity (macOS, Windows) the machine's cores; where those are unknown too
    (``os.cpu_count()`` is None), one, not None."""
    from physml import threads

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert threads.available_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert threads.available_cores() == 1
    assert threads.choose_threads(10**6, passive=True) == 1


def test_the_run_s_thread_count_reads_the_solvers_cores_without_importing_them_first(
        monkeypatch):
    """One count of cores for the solvers' host threads and PyTorch's; importing the module
    (the CLI's first lines, before PyTorch) loads neither the solvers nor Warp."""
    from physml import threads
    from physml.solvers import host_threads

    monkeypatch.setattr(host_threads, "available_cores", lambda: 3)
    assert threads.available_cores() == 3
    assert threads.choose_threads(10**6, passive=True) == 3
    code = ("import sys, physml.threads; "
            "print(sorted({'physml.solvers', 'warp'} & set(sys.modules)))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert fresh.stdout.split() == ["[]"]

def test_the_passive_wait_policy_is_set_before_torch_loads_and_not_after():
    code = ("import os, sys; from physml.threads import prefer_passive_wait; "
            "print(prefer_passive_wait(), os.environ.get('OMP_WAIT_POLICY'), "
            "'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert fresh.stdout.split() == ["True", "passive", "False"]
    late = subprocess.run([sys.executable, "-c", "import torch; " + code], capture_output=True,
                          text=True, env=env)
    assert late.stdout.split() == ["False", "None", "True"]


def test_the_trainers_and_the_classes_a_user_composes_are_exported_by_physml_train():
    """``from physml.train import PINNTrainer`` failed: the package's ``__init__`` exported
    nothing."""
    import physml.train as train
    from physml.train import balancing, conditions, moe, pinn, problems, sampling, teng

    for module, names in ((pinn, ["PINNTrainer"]), (teng, ["TENG", "TENGPDE"]),
                          (moe, ["MoETrainer"]), (problems, ["PINNProblem", "exact_reference"]),
                          (sampling, ["DomainSampler"]),
                          (balancing, ["FixedWeights", "LearningRateAnnealing", "ConFIG"]),
                          (conditions, ["Condition", "Initial", "InitialRate", "Dirichlet",
                                        "Robin", "Neumann", "Periodic"])):
        for name in names:
            assert getattr(train, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="has no attribute 'Trainer'"):
        train.Trainer  # noqa: B018


def test_predictions_carry_the_version_the_pde_parameters_and_the_seed(tiny_case):
    """As a dataset file does (DESIGN §3): it held only the case, the PDE's name, the error and
    the configuration."""
    from physml import __version__

    tiny_case = tiny_case.model_copy(update={"seed": 3})
    folder, _ = run_case(tiny_case.model_copy(update={"output": tiny_case.output.model_copy(
        update={"figures": False})}))
    attrs = xr.open_dataset(folder / "predictions.h5").attrs
    assert attrs["physml_version"] == __version__ and attrs["seed"] == 3
    assert attrs["pde"] == "burgers" and attrs["nu"] == tiny_case.pde.nu
    assert "beta" not in attrs and "a1" not in attrs  # the options of other PDEs


def test_a_trainer_predicts_at_arrays_and_float32_tensors_and_names_a_bad_shape():
    """A NumPy array or a float32 tensor failed inside PyTorch (a float64 trainer), where a
    loaded run's model takes both."""
    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    model = build_model("mlp", problem.input_dim, problem.output_dim, width=8, depth=1)
    trainer = PINNTrainer(model, problem, points=16, adam_steps=1, eval_every=1,
                          eval_shape=(4, 3), dtype=torch.float64)
    X = np.array([[0.5, 0.1], [1.0, 0.2]])
    expected = trainer.predict(torch.tensor(X))
    np.testing.assert_array_equal(trainer.predict(X), expected)
    np.testing.assert_allclose(trainer.predict(torch.tensor(X, dtype=torch.float32)), expected,
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"points need shape \(n, 2\), n >= 1, with columns "
                                         r"x, t; got \(2,\)"):
        trainer.predict(X[0])


def test_a_constant_condition_on_several_fields_gets_points_of_its_own_memory():
    """Its target came as a broadcast view (strides 0): n numbers shown as n k, which a
    data-parallel broadcast of the points overran (two processes died in glibc)."""
    from physml.geometry import Rectangle
    from physml.train import Dirichlet, PINNProblem

    problem = PINNProblem(lambda d: d["u"] + d["v"], Rectangle((0, 0), (1, 1)),
                          outputs=("u", "v"), conditions=[Dirichlet(0.0, name="wall")])
    model = build_model("mlp", problem.input_dim, problem.output_dim, width=4, depth=1)
    trainer = PINNTrainer(model, problem, points=16, condition_points=8, adam_steps=1,
                          eval_every=1, eval_shape=(3, 3), hard_constraints=False,
                          dtype=torch.float64)
    tensors = [trainer.points, *(t for pair in trainer.conditions.values() for t in pair)]
    assert trainer.conditions["wall"][1].shape == (8, 2)
    assert all(t.is_contiguous() for t in tensors)


def test_a_trainer_takes_its_dtype_named_as_the_solvers_take_it():
    """"float64" and np.float64 were refused ("allowed: torch.float32, torch.float64"), though
    the solvers take them; each spelling gives the PyTorch dtype."""
    import warp as wp

    from physml.geometry import Interval
    from physml.train import Initial, PINNProblem

    problem = PINNProblem(lambda d: d("u", "t") - d("u", "x", "x"), Interval(0.0, 1.0),
                          time=(0.0, 1.0), conditions=[Initial(0.0)])
    model = build_model("mlp", 2, 1, width=8, depth=2)
    for dtype, expected in (("float64", torch.float64), (np.float64, torch.float64),
                            (wp.float64, torch.float64), (torch.float64, torch.float64),
                            (np.dtype("float32"), torch.float32)):
        trainer = PINNTrainer(model, problem, points=16, condition_points=8, adam_steps=1,
                              eval_shape=(5, 3), dtype=dtype)
        assert trainer.dtype is expected and next(model.parameters()).dtype is expected
    for dtype in (torch.float16, "double", None):
        with pytest.raises(ValueError, match=r"dtype=.* is not supported; allowed: float32, "
                                             "float64"):
            PINNTrainer(model, problem, points=16, adam_steps=1, dtype=dtype)


def test_a_sampler_over_another_domain_or_time_span_is_refused_by_name():
    """A sampler's points are the collocation points: one over (0, 5) trained the residual
    outside the problem's (0, 1) without a word; one without time or of another dimension
    failed inside PyTorch."""
    from physml.geometry import Disk, Interval, Rectangle
    from physml.train import Initial, PINNProblem
    from physml.train.sampling import DomainSampler

    line = Interval(0.0, 1.0)
    problem = PINNProblem(lambda d: d("u", "t") - d("u", "x", "x"), line, time=(0.0, 1.0),
                          conditions=[Initial(0.0)])
    model = build_model("mlp", 2, 1, width=8, depth=2)
    for sampler, message in (
            (DomainSampler(line, time=(0.0, 5.0)), r"sampler: bounds \[\[0.0, 1.0\], \[0.0, "
             r"5.0\]\] differ from the problem's \[\[0.0, 1.0\], \[0.0, 1.0\]\] \(inputs x, t\)"),
            (DomainSampler(line), r"sampler: draws points of 1 input\(s\), but the problem has "
             r"2 \(x, t\)"),
            (DomainSampler(Rectangle((0, 0), (3, 3)), time=(0, 1)), "sampler: draws points of 3"),
            (DomainSampler(Disk((0.5, 0.5), 0.5), time=(0, 1)), "sampler: draws points of 3")):
        with pytest.raises(ValueError, match=message):
            PINNTrainer(model, problem, sampler=sampler, points=16, condition_points=8,
                        adam_steps=1, eval_shape=(5, 3))
    square = PINNProblem(lambda d: d("u", "t") - d.laplacian("u"), Rectangle((0, 0), (1, 1)),
                         time=(0.0, 1.0), conditions=[Initial(0.0)])
    with pytest.raises(ValueError, match="sampler: a Disk geometry, but the problem's is a "
                                         "Rectangle"):
        PINNTrainer(build_model("mlp", 3, 1, width=8, depth=2), square,
                    sampler=DomainSampler(Disk((0.5, 0.5), 0.5), time=(0, 1)), points=16,
                    condition_points=8, adam_steps=1, eval_shape=(3, 3, 3))
    PINNTrainer(model, problem, sampler=DomainSampler(Interval(0, 1), time=(0, 1), seed=3),
                points=16, condition_points=8, adam_steps=1, eval_shape=(5, 3))
    for time in ((2.0, 1.0), (0.0, float("nan")), (0.0, float("inf")), (1.0, 1.0)):
        with pytest.raises(ValueError, match=r"time=\(.*\): give \(start, end\), both finite"):
            DomainSampler(line, time=time)


def test_a_sampler_over_the_same_box_or_ball_as_the_problem_s_is_taken_whatever_its_class():
    """An Interval, a Rectangle and a Disk are a Box and a Ball: a Box sampler over the
    problem's Interval was refused as another geometry ("a Box geometry, but the problem's is
    a Interval"), which 0.2.0 took."""
    from physml.geometry import Ball, Box, Disk, Intersection, Interval, Rectangle
    from physml.train import Initial, PINNProblem
    from physml.train.sampling import DomainSampler

    def trainer(geometry, sampler, inputs):
        problem = PINNProblem(lambda d: d("u", "t") - d.laplacian("u"), geometry,
                              time=(0.0, 1.0), conditions=[Initial(0.0)])
        return PINNTrainer(build_model("mlp", inputs, 1, width=8, depth=2), problem,
                           sampler=DomainSampler(sampler, time=(0, 1)), points=16,
                           condition_points=8, adam_steps=1, eval_shape=(3,) * inputs)

    trainer(Interval(0, 1), Box([0.0], [1.0]), 2)
    trainer(Box([0.0, 0.0], [1.0, 2.0]), Rectangle((0, 0), (1, 2)), 3)
    trainer(Disk((0.5, 0.5), 0.5), Ball([0.5, 0.5], 0.5), 3)
    with pytest.raises(ValueError, match="sampler: an Intersection geometry, but the "
                                         "problem's is an Interval"):
        trainer(Interval(0, 1), Intersection(Interval(0, 1), Interval(-1, 2, ["a", "b"])), 2)


@pytest.mark.parametrize("options, message", [
    ({"momentum": 1.5}, r"momentum=1.5 must lie in \[0, 1\)"),
    ({"momentum": -1}, r"momentum=-1 must lie in \[0, 1\)"),
    ({"every": 0}, "every"),
])
def test_learning_rate_annealing_refuses_settings_it_cannot_use(options, message):
    """momentum=1.5 and -1 were taken, every=0 divided by zero at the first step."""
    with pytest.raises(ValueError, match=message):
        LearningRateAnnealing(**options)


def test_a_sampler_over_another_shape_of_the_same_kind_and_bounds_is_refused():
    """Two polygons, CSG shapes or boundary namings with the same bounds were taken as one
    domain: a square's sampler trained a triangle's residual on points outside it."""
    from physml.geometry import Difference, Disk, Polygon, Rectangle
    from physml.train import Initial, PINNProblem
    from physml.train.sampling import DomainSampler

    def trainer(geometry, sampler):
        problem = PINNProblem(lambda d: d("u", "t") - d.laplacian("u"), geometry,
                              time=(0.0, 1.0), conditions=[Initial(0.0)])
        return PINNTrainer(build_model("mlp", 3, 1, width=8, depth=2), problem,
                           sampler=DomainSampler(sampler, time=(0, 1)), points=16,
                           condition_points=8, adam_steps=1, eval_shape=(3, 3, 3))

    square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    triangle = Polygon([(0, 0), (1, 0), (0, 1)])
    trainer(triangle, Polygon([(0, 0), (1, 0), (0, 1)]))  # equal shapes, built twice
    with pytest.raises(ValueError, match=r"sampler: its geometry is another shape than the "
                                         r"problem's \(of 4096 points in the bounds, \d+ lie"):
        trainer(triangle, Polygon([(1, 0), (1, 1), (0, 1)]))
    holed = Difference(Rectangle((0, 0), (1, 1)), Disk((0.5, 0.5), 0.25))
    with pytest.raises(ValueError, match="another shape"):
        trainer(holed, Difference(Rectangle((0, 0), (1, 1)), Disk((0.5, 0.5), 0.3)))
    trainer(Polygon(square), Polygon(square[::-1], names=["a", "b", "c", "d"]))  # one domain
    trainer(Polygon(square), Polygon(square[2:] + square[:2]))


def test_a_fast_lagrangian_pinn_with_diffusion_trains_instead_of_blowing_up(tmp_path):
    """At beta = 30 the map x = xi + 30 t N_x folded (x_xi <= 0 on a tenth of the points), and
    the diffusion term divides by x_xi twice: NaN at step 1, or a loss of 1e3 to 4e5 after
    150 steps. Started at the known speed the loss falls to about 1e-3."""
    case = load_case(str(Path(CASE).with_name("convection_lpinn.yaml")), [
        "pde.nu_diffusion=0.05", "training.adam.steps=150", "training.lbfgs.steps=0",
        "training.collocation.points=256", "model.width=16", "model.depth=2",
        "evaluation.nx=32", "evaluation.nt=11", "evaluation.every=150", "dtype=float64",
        f"output.folder={tmp_path}"])
    trainer = build_trainer(case)
    trainer.fit()
    assert trainer.history[-1]["loss"] < 0.1
    assert trainer.evaluate()["rel_l2"] < 0.2


def test_a_fresh_lagrangian_map_is_monotone_in_xi_at_a_fast_speed():
    """x_xi > 0 at every collocation point at beta = 50 (it was as low as -22)."""
    from physml.train.derivatives import gradient

    for seed in (0, 1, 2):
        case = load_case(str(Path(CASE).with_name("convection_lpinn.yaml")),
                         ["pde.beta=50", f"seed={seed}"])
        trainer = build_trainer(case)
        X = trainer.points.clone().requires_grad_(True)
        assert gradient(trainer.field(X)[:, :1], X)[:, 0].min() > 0


@pytest.mark.parametrize("case_file, overrides", [
    ("convection_lpinn.yaml", []),  # two residual terms and no condition
    ("burgers.yaml", ["model.hard_constraints=true"]),  # both conditions exact
])
def test_annealing_with_no_condition_term_to_reweigh_is_refused(case_file, overrides,
                                                                 cli_in_process):
    """Learning-rate annealing reweighs the conditions and observations against the residuals;
    with none of them a loss term every weight stayed 1 and the run was a fixed-weight one."""
    path = str(Path(CASE).with_name(case_file))
    result = cli_in_process("validate", path, *overrides, "training.balancer.kind=annealing")
    assert result.returncode == 2
    assert ("training.balancer.kind: annealing reweighs the condition terms against the "
            "residuals, and this problem has none; use fixed or config") in result.stderr
    load_case(CASE, ["model.hard_constraints=false", "training.balancer.kind=annealing"])


def test_evaluate_takes_its_derivatives_under_no_grad_too():
    """Without a reference evaluate() measures the residual: under torch.no_grad it raised
    (its derivatives need autograd)."""
    from physml.geometry import Interval
    from physml.train import Initial, PINNProblem

    problem = PINNProblem(lambda d: d("u", "t") - d.laplacian("u"), Interval(0, 1),
                          time=(0.0, 1.0), conditions=[Initial(0.0)])
    torch.manual_seed(0)
    trainer = PINNTrainer(build_model("mlp", 2, 1, width=8, depth=2), problem, points=16,
                          condition_points=8, adam_steps=1, eval_shape=(5, 3),
                          dtype=torch.float64)
    with torch.no_grad():
        quiet = trainer.evaluate()
    assert quiet == trainer.evaluate() and np.isfinite(quiet["residual_rms"])


def test_the_modified_mlp_is_the_gated_network_of_wang_teng_and_perdikaris():
    """$H_1 = \\sigma(W_0 x + b_0)$, then gates $Z_k = \\sigma(W_k H_k + b_k)$ and
    $H_{k+1} = (1 - Z_k) U + Z_k V$, computed here from the model's own weights."""
    torch.manual_seed(0)
    model = build_model("modified", 2, 1, width=8, depth=3).double()
    x = torch.rand(50, 2, dtype=torch.float64)
    u, v = torch.tanh(model.encode_u(x)), torch.tanh(model.encode_v(x))
    h = torch.tanh(x @ model.hidden[0].weight.T + model.hidden[0].bias)
    for layer in model.hidden[1:]:
        z = torch.tanh(h @ layer.weight.T + layer.bias)
        h = (1 - z) * u + z * v
    torch.testing.assert_close(model(x), h @ model.out.weight.T + model.out.bias,
                               rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="depth >= 2"):
        build_model("modified", 2, 1, width=8, depth=1)
    with pytest.raises(ValueError, match="model.depth=1: kind 'modified' needs depth >= 2"):
        load_case("burgers", ["model.kind=modified", "model.depth=1"])


def test_a_model_of_another_input_or_output_width_is_refused_by_name():
    """One output too many trained on the first column silently; a wrong input width failed
    inside fit() with PyTorch's "mat1 and mat2 shapes cannot be multiplied"."""
    problem = BurgersProblem(0.01, (-1.0, 1.0), (0.0, 1.0), -1.0, np.pi)
    wide = build_model("mlp", problem.input_dim, 2, width=8, depth=2)
    with pytest.raises(ValueError, match=r"model gives \(2, 2\) for 2 points; the problem has 1 "
                                         r"output\(s\) \(u\): expected \(2, 1\)"):
        PINNTrainer(wide, problem)
    narrow = build_model("mlp", problem.input_dim + 1, 1, width=8, depth=2)
    with pytest.raises(ValueError, match=r"model failed on the problem's network input, "
                                         r"\(2, 2\) for inputs x, t"):
        PINNTrainer(narrow, problem)
    normalised = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4),
                                     torch.nn.Linear(4, 1))
    PINNTrainer(normalised, problem)  # the probe leaves batch-norm statistics and modes alone
    assert int(normalised[1].num_batches_tracked) == 0 and normalised.training


def test_one_boundary_part_or_field_may_be_given_as_a_name():
    from physml.train.conditions import Dirichlet, Periodic

    assert Dirichlet(on="left", fields="u").on == ("left",)
    assert Dirichlet(on="left", fields="u").fields == ("u",)
    assert Periodic(axis="x", fields="u").fields == ("u",)


def test_a_bundled_problem_s_constraint_follows_a_changed_parameter():
    """The constraints' constants became float64 scalars for export; built once, a problem
    whose beta was raised (a schedule ramping beta) kept constraining with the old one."""
    from physml.train.bundled import LagrangianConvectionProblem

    ramped = LagrangianConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    ramped.beta = 30.0
    fresh = LagrangianConvectionProblem(30.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    X = torch.tensor([[1.0, 0.5], [2.0, 0.9]], dtype=torch.float64)
    raw = torch.full((2, 2), 0.1, dtype=torch.float64)
    assert torch.equal(ramped.constrain(X, raw), fresh.constrain(X, raw))


def test_metrics_json_is_written_after_the_predictions_and_figures(tiny_case, monkeypatch):
    """A run stopped while writing its results kept a complete, final-looking metrics.json
    without predictions.h5 or figures: metrics.json now comes last, its wall_s read then."""
    from physml.cases import pinn

    written = slowed_figures(monkeypatch, pinn, seconds=0.3)
    folder, result = run_case(tiny_case)
    assert "predictions.h5" in written[0] and "metrics.json" not in written[0]
    summary = json.loads((folder / "metrics.json").read_text())["summary"]
    assert summary["wall_s"] == result["wall_s"] >= result["train_s"] + 0.3

    def failing_figures(case, trainer, folder, ds):
        raise OSError("disk full")

    monkeypatch.setattr(pinn, "plot_training", failing_figures)
    for name in ("metrics.json", "predictions.h5"):  # a finished run resumed rewrites them
        (folder / name).unlink()
    with pytest.raises(OSError, match="disk full"):
        run_case(tiny_case, folder, resume=True)
    assert (folder / "predictions.h5").is_file() and not (folder / "metrics.json").exists()
