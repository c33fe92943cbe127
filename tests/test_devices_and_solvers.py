"""Devices a machine lacks are refused by name everywhere (solvers, clocks, the CLI, the
benchmark scripts); least squares gives gelsd's minimum-norm solution off the CPU too; the
CPU-only native network compiles for CUDA; the benchmarks' one summary of repeated runs."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.sparse as sp
import torch
import warp as wp

from physml.devices import Stopwatch, require_device, require_torch_device
from physml.models import PeriodicMLP, build_model
from physml.solvers.linalg.triangular import LowerPattern
from physml.solvers.runtime import warp_device
from physml.train import least_squares
from physml.train.bundled import ConvectionProblem
from physml.train.pinn import PINNTrainer
from physml.train.teng import TENG, TENGPDE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape, rank", [((40, 9), 6), ((5, 12), 3)])
@pytest.mark.parametrize("columns", [None, 3])
def test_lstsq_off_the_cpu_gives_gelsds_minimum_norm_solution(monkeypatch, shape, rank,
                                                               columns):
    """Rank-deficient, tall and wide: the SVD path (what CUDA runs, forced here) agrees with
    LAPACK's gelsd to rounding, where CUDA's gels returned a solution of norm ~1e15."""
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(shape[0], rank, generator=gen, dtype=torch.float64) @ torch.randn(
        rank, shape[1], generator=gen, dtype=torch.float64)
    b = torch.randn(shape[0], *(() if columns is None else (columns,)), generator=gen,
                    dtype=torch.float64)
    gelsd = torch.linalg.lstsq(A, b if columns else b[:, None], driver="gelsd").solution
    gelsd = gelsd if columns else gelsd[:, 0]
    monkeypatch.setattr(least_squares, "GELSD_DEVICE_TYPES", ())
    x = least_squares.lstsq(A, b)
    assert x.shape == gelsd.shape
    torch.testing.assert_close(x, gelsd, rtol=1e-10, atol=1e-12)


def test_network_forward_compiles_for_cuda(tmp_path):
    """Warp compiles the whole module for every device it is loaded on: the CPU-only native
    forward must compile under NVRTC too (it is empty there)."""
    import physml.solvers.linalg.factor_network as factor_network

    if 90 not in wp.get_cuda_supported_archs():
        pytest.skip("this Warp cannot compile for sm_90 (no NVRTC)")
    compiled = wp.compile_aot_module(factor_network.network_kernel.module, arch=90,
                                     module_dir=tmp_path)
    assert compiled and all(path.is_file() for path in compiled)


@pytest.mark.parametrize("device, message", [
    ("cuda:99", r"device='cuda:99' is not available; available: cpu"),
    ("gpu", r"device='gpu' is not a device name; allowed: cpu, cuda, cuda:N$"),
    ("cuda:01", r"device='cuda:01' is not a device name"),  # PyTorch's RuntimeError before
])
def test_a_device_this_machine_lacks_is_one_value_error_naming_it(capfd, device, message):
    matrix = sp.csr_matrix(sp.eye(3))
    for build in (lambda: LowerPattern(matrix, device), lambda: warp_device(device),
                  lambda: require_device(device), lambda: require_torch_device(device)):
        with pytest.raises(ValueError, match=message):
            build()
    assert "CUDA error" not in capfd.readouterr().err  # no native driver lines before it


def test_a_warp_device_the_check_accepts_places_trainers_and_a_loaded_run(tmp_path):
    """The device check takes a Warp device; the PINN and TENG trainers and load_run then
    passed that object itself to torch.device, a TypeError."""
    from physml import load_run
    from physml.cases.pinn import build_trainer
    from physml.cases.pinn_training import save_checkpoint
    from physml.cases.registry import load_case

    device = wp.get_device("cpu")
    problem = ConvectionProblem(1.0, (0.0, 2 * math.pi), (0.0, 1.0), 1.0, 1.0)
    pinn = PINNTrainer(build_model("mlp", problem.input_dim, 1, width=4, depth=1), problem,
                       points=16, device=device)
    teng = TENG(PeriodicMLP(1, 1, width=4, depth=1), TENGPDE("heat", 0.1), points=16, dim=1,
                device=device)
    case = load_case(str(Path(__file__).parents[1] / "cases" / "burgers.yaml"),
                     [f"output.folder={tmp_path}", "model.width=4", "model.depth=1"])
    folder = tmp_path / "run"
    folder.mkdir()
    save_checkpoint(build_trainer(case), folder)
    (folder / "config.yaml").write_text(case.to_yaml())
    loaded = load_run(folder, device)
    assert pinn.device == teng.device == loaded.device == torch.device("cpu")


def test_a_stopwatch_checks_the_name_and_leaves_presence_to_the_work_it_times():
    """Work on Warp alone may time a CUDA device a CPU build of PyTorch lacks; entering the
    clock synchronises only the libraries that have the device."""
    with pytest.raises(ValueError, match=r"device='gpu' is not a device name"):
        Stopwatch("gpu")
    import warp as wp

    wp.init()  # a started Warp without the device is left alone, as PyTorch is
    with Stopwatch("cuda:99") as watch:
        pass
    assert watch.seconds >= 0


def test_the_cli_refuses_a_name_that_is_no_device_as_a_case_file_does(cli_in_process,
                                                                       tmp_path):
    result = cli_in_process("solve", "heat1d", "--out", str(tmp_path / "u.h5"), "--device",
                            "gpu")
    assert result.returncode == 2
    assert "device='gpu' is not a device name; allowed: cpu, cuda, cuda:N" in result.stderr
    assert not (tmp_path / "u.h5").exists()


def test_a_benchmark_refuses_a_missing_device_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "phasefield.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "phasefield.py"),
                          "--device", "cuda:7", "--out", str(out)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stdout == ""
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert errors == [run.stderr.splitlines()[-1]]  # argparse's usage, then one line
    assert errors[0].startswith("phasefield.py: error: --device: device='cuda:7' is not "
                                "available; available: cpu")
    assert not out.exists()


def test_benchmark_summary_keeps_the_scripts_json_keys():
    spec = importlib.util.spec_from_file_location("_common", ROOT / "benchmarks" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert common.summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert list(common.summary([1.0, 2.0], "runs")) == ["median", "min", "max", "runs"]
