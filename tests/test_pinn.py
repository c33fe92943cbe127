"""PINN trainer, loss balancing, models, case files and run folders."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from physml.cases.pinn import build_trainer, save_checkpoint
from physml.cases.registry import load_case, run_case
from physml.errors import NonFiniteLossError
from physml.models import MODELS
from physml.train.balancing import ConFIG, LearningRateAnnealing

CASE = str(Path(__file__).parents[1] / "cases" / "burgers.yaml")
TINY = ["training.adam.steps=20", "training.lbfgs.steps=6", "training.collocation.points=256",
        "training.collocation.resample_every=10", "evaluation.every=10", "evaluation.nx=32",
        "evaluation.nt=11", "training.checkpoint_every=5"]


@pytest.fixture
def tiny_case(tmp_path):
    return load_case(CASE, [*TINY, f"output.folder={tmp_path}",
                                            "model.width=8", "model.depth=2"])


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_models_map_coordinates_to_fields(kind):
    model = MODELS[kind](2, 1, 16, 3, "tanh").double()
    assert model(torch.rand(5, 2, dtype=torch.float64)).shape == (5, 1)


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
    assert len(errors) >= 2 and errors[-1] < errors[0] < 2.0
    ds = xr.open_dataset(folder / "predictions.h5")
    assert ds["prediction"].dims == ("t", "x") and ds.sizes == {"t": 11, "x": 32}
    assert result["rel_l2"] == pytest.approx(float(np.linalg.norm(ds["error"]) /
                                                   np.linalg.norm(ds["reference"])))


def without_timing(history):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in history]


def test_same_case_same_metrics_and_resume_matches(tiny_case, tmp_path):
    whole = build_trainer(tiny_case)
    whole.fit()
    again = build_trainer(tiny_case)
    again.fit()
    assert without_timing(again.history) == without_timing(whole.history)  # reproducible
    interrupted = build_trainer(tiny_case)
    interrupted.fit(until=23)  # inside the L-BFGS phase
    save_checkpoint(interrupted, tmp_path)
    resumed = build_trainer(tiny_case)
    resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
    resumed.fit()
    assert without_timing(resumed.history) == without_timing(whole.history)
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tiny_case, tmp_path):
    trainer = build_trainer(tiny_case)
    residual = trainer.problem.residual

    def poisoned(X, u):
        r = residual(X, u)
        return r * np.nan if trainer.step == 12 else r

    trainer.problem.residual = poisoned
    saved = []
    with pytest.raises(NonFiniteLossError, match="NaN/Inf at step 12; the checkpoint of step 10"):
        trainer.fit(on_checkpoint=lambda: saved.append(trainer.step), checkpoint_every=5)
    assert saved == [5, 10]


def test_annealing_raises_the_weight_of_the_weaker_condition(tmp_path):
    case = load_case(CASE, [*TINY, "model.hard_constraints=false",
                                            "training.balancer.kind=annealing",
                                            f"output.folder={tmp_path}"])
    trainer = build_trainer(case)
    assert isinstance(trainer.balancer, LearningRateAnnealing)
    trainer.fit(until=11)
    weights = trainer.history[-1]["weights"]
    assert set(weights) == {"residual", "initial", "boundary"}
    assert weights["initial"] != 1.0 and weights["boundary"] != 1.0


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
        (["model.kind=transformer"], "model.kind: Input should be 'mlp', 'fourier'"),
    ],
)
def test_bad_cases_exit_2_naming_the_key(overrides, message):
    result = subprocess.run([sys.executable, "-m", "physml.cli", "validate", CASE,
                             *overrides], capture_output=True, text=True)
    assert result.returncode == 2
    assert message.replace("Value error, ", "") in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_case_file_and_listing():
    result = subprocess.run([sys.executable, "-m", "physml.cli", "run", "cases/nope.yaml"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "case file 'cases/nope.yaml' does not exist" in result.stderr
    listing = subprocess.run([sys.executable, "-m", "physml.cli", "cases"], capture_output=True,
                             text=True)
    assert listing.stdout.startswith("burgers ") and "Burgers" in listing.stdout


@pytest.mark.parametrize(
    "device, message",
    [("gpu", "device='gpu' is not a device name; allowed: cpu, cuda, cuda:N"),
     ("cuda:7", "device='cuda:7' is not available; available: cpu"[:37])],
)
def test_unusable_device_exits_2_and_leaves_no_run_folder(tmp_path, device, message):
    result = subprocess.run([sys.executable, "-m", "physml.cli", "run", CASE, f"device={device}",
                             f"output.folder={tmp_path}"], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    case = tmp_path / "broken.yaml"
    case.write_text("name: x\npde: {name: burgers\n")
    result = subprocess.run([sys.executable, "-m", "physml.cli", "validate", str(case)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not valid YAML at line 3, column 1: expected ',' or '}'" in result.stderr


def test_a_folder_given_as_the_case_file():
    result = subprocess.run([sys.executable, "-m", "physml.cli", "run", "cases"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "'cases' is a folder; expected a case file" in result.stderr


def test_lagrangian_fields_map_back_to_the_eulerian_grid():
    """Exact characteristics x = xi + beta t and u = u0(xi) give sin(x - beta t) on the grid."""
    from physml.train.problems import LagrangianConvectionProblem

    problem = LagrangianConvectionProblem(30.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)

    def exact(X):
        return torch.cat([X[:, :1] + 30.0 * X[:, 1:], torch.sin(X[:, :1])], dim=1)

    x, t, reference = problem.reference(128, 11)
    field = problem.eulerian(exact, x, t, lambda a: torch.as_tensor(a, dtype=torch.float64))
    assert np.abs(field - reference).max() < 2e-3  # linear interpolation on 512 characteristics
    X = torch.tensor([[0.3, 0.2], [5.0, 0.9]], dtype=torch.float64, requires_grad=True)
    residuals = problem.residuals(X, exact(X))
    assert all(r.abs().max() < 1e-12 for r in residuals.values())


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
    from physml.train.problems import BurgersProblem, LagrangianBurgersProblem

    args = (0.01 / np.pi, (-1.0, 1.0), (0.0, 1.0), -1.0, np.pi)
    _, _, dirichlet = BurgersProblem(*args).reference(64, 11)
    _, _, periodic = LagrangianBurgersProblem(*args).reference(64, 11)
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
    from physml.train.problems import HelmholtzProblem

    problem = HelmholtzProblem(1.0, 4.0, 1.0, (-1.0, 1.0), (-1.0, 1.0))
    X, target = problem.conditions(64, np.random.default_rng(0))["boundary"]
    assert X.shape == (256, 2) and np.abs(target).max() < 1e-12  # u* vanishes on the edges
    for column, value in ((0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)):
        assert np.sum(X[:, column] == value) == 64
    inside = torch.rand(100000, 2, dtype=torch.float64) * 2 - 1
    features = problem.embed(inside)
    assert torch.allclose(features.std(0), torch.ones(2, dtype=torch.float64), atol=1e-2)
