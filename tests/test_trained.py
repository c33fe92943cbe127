"""A trained network exported for use without physml."""

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def float32_run(tmp_path_factory):
    """A float32 Burgers run folder: config and the checkpoint of an untrained small network."""
    from physml.cases.pinn import build_trainer
    from physml.cases.pinn_training import save_checkpoint
    from physml.cases.registry import load_case

    folder = tmp_path_factory.mktemp("run")
    case = load_case(str(Path(__file__).parents[1] / "cases" / "burgers.yaml"),
                     [f"output.folder={folder}", "model.width=4", "model.depth=1",
                      "dtype=float32", "evaluation.nx=16", "evaluation.nt=5"])
    save_checkpoint(build_trainer(case), folder)
    (folder / "config.yaml").write_text(case.to_yaml())
    return folder


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_torchscript_export_casts_its_input_to_the_trained_dtype(float32_run, tmp_path):
    from physml import load_run

    model = load_run(float32_run)
    model.export_torchscript(tmp_path / "u.pt")
    scripted = torch.jit.load(str(tmp_path / "u.pt"))
    X = np.array([[0.1, 0.2], [-0.5, 0.9], [0.75, 0.0]])
    single = scripted(torch.as_tensor(X, dtype=torch.float32))
    double = scripted(torch.as_tensor(X, dtype=torch.float64))  # was a TorchScript error
    assert single.dtype == double.dtype == torch.float32
    assert torch.equal(single, double)
    np.testing.assert_array_equal(single.numpy()[:, 0], model(X))
