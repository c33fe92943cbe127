"""Dataset generation: specs, splits, Dask shards, resume after a kill, clear errors."""

import ctypes.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from physml import io
from physml.cli import main
from physml.datasets.generate import generate
from physml.datasets.spec import SPEC_FOLDER, load_spec

SPEC = """
pde: advection1d
grid: [{nx}]
parameters: {{beta: [0.5, 1.0]}}
t_end: {t_end}
n_saves: 5
initial_condition: {{kind: pdebench_sines}}
samples: 10
shard_size: 3
seed: 7
"""


def write_spec(folder, nx=32, t_end=0.2, **replace):
    text = SPEC.format(nx=nx, t_end=t_end)
    for key, value in replace.items():
        text = text.replace(key, value)
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def read_all(folder):
    return {split: io.open_dataset(folder, split).load() for split in ("train", "valid", "test")}


def assert_same_dataset(a, b):
    for split in ("train", "valid", "test"):
        xr.testing.assert_identical(a[split].drop_attrs(), b[split].drop_attrs())
        np.testing.assert_array_equal(a[split]["u"].values, b[split]["u"].values)


def test_bundled_specs_are_valid():
    names = sorted(p.stem for p in SPEC_FOLDER.glob("*.yaml"))
    assert names == ["advection1d", "allen_cahn2d", "burgers1d", "diffusion_reaction1d",
                     "diffusion_sorption1d", "heat2d", "heat_torus", "navier_stokes2d",
                     "poisson_lshape"]
    for name in names:
        load_spec(name)


def test_generation_splits_seeds_and_contents(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    manifest = generate(spec, tmp_path / "data", workers=0)
    assert manifest["samples"] == 20
    data = read_all(tmp_path / "data")
    assert {k: v.sizes["sample"] for k, v in data.items()} == {"train": 16, "valid": 2, "test": 2}
    seeds = [set(v["sample"].values) for v in data.values()]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
    train = data["train"]
    assert sorted(set(train["beta"].values)) == [0.5, 1.0]
    assert train.attrs["split"] == "train" and "advection1d" in train.attrs["spec"]
    # the swept beta is per sample, in the spec's and the solver's convention, never an attr
    np.testing.assert_array_equal(train["solver_beta"], train["beta"])
    assert not {"beta", "solver_beta"} & set(train.attrs) and train.attrs["device"] == "cpu"
    for name, variable in train.variables.items():
        assert {"long_name", "units"} <= set(variable.attrs), name
    assert np.all(np.isfinite(train["u"].values)) and train["u"].dtype == np.float32
    # advection conserves the mean of every sample
    mean = train["u"].mean("x")
    np.testing.assert_allclose(mean - mean.isel(time=0), 0.0, atol=1e-5)


def test_batched_and_one_by_one_generation_give_the_same_dataset(tmp_path):
    # Burgers: every sample has its own step count (its CFL step depends on max|u0|)
    spec = load_spec(write_spec(tmp_path, nx=48, **{"advection1d": "burgers1d_pdebench",
                                                    "beta: [0.5, 1.0]": "nu: [0.01, 0.1]"}))
    generate(spec, tmp_path / "batched", workers=0)
    generate(spec, tmp_path / "single", workers=0, batch_size=1)
    batched = read_all(tmp_path / "batched")
    assert_same_dataset(batched, read_all(tmp_path / "single"))
    assert np.all(np.isfinite(batched["train"]["u"].values))


@pytest.mark.slow
def test_dask_workers_and_an_existing_scheduler_give_the_same_dataset(tmp_path):
    from dask.distributed import LocalCluster

    spec = load_spec(write_spec(tmp_path))
    generate(spec, tmp_path / "serial", workers=0)
    generate(spec, tmp_path / "dask", workers=2)
    serial = read_all(tmp_path / "serial")
    assert_same_dataset(serial, read_all(tmp_path / "dask"))
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        generate(spec, tmp_path / "scheduler", scheduler=cluster.scheduler_address)
    assert_same_dataset(serial, read_all(tmp_path / "scheduler"))


def test_killed_generation_resumes_to_the_identical_dataset(tmp_path):
    spec_path = write_spec(tmp_path, nx=256, t_end=1.0)
    reference = tmp_path / "reference"
    generate(load_spec(spec_path), reference, workers=0)
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "physml.cli", "datasets", "generate", str(spec_path),
               "--out", str(out), "--workers", "0", "--quiet"]
    process = subprocess.Popen(command)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "train").glob("shard-*.h5")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = list(out.rglob("shard-*.h5"))
    assert 0 < len(written) < 10, "the kill should land mid-run"
    assert not (out / "dataset.json").exists()
    for shard in written:  # every file under a final name is complete
        xr.open_dataset(shard).load()
    assert subprocess.run(command).returncode == 0
    assert not list(out.rglob(".*tmp*"))
    assert_same_dataset(read_all(reference), read_all(out))


def test_complete_dataset_is_not_overwritten(tmp_path, capsys):
    spec = write_spec(tmp_path)
    args = ["datasets", "generate", str(spec), "--out", str(tmp_path / "d"), "--workers", "0",
            "--device", "cpu", "--quiet"]
    assert main(args) == 0
    before = (tmp_path / "d" / "train" / "shard-00000.h5").stat().st_mtime_ns
    assert main(args) == 2
    assert "holds a complete dataset; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "d" / "train" / "shard-00000.h5").stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"pde: advection1d": "pde: navier"}, "pde: unknown PDE 'navier'; allowed:"),
        ({"seed: 7": "seed: 7\ncolour: red"}, "unknown key 'colour'; allowed: pde, grid"),
        ({"samples: 10": "samples: many"}, "samples: Input should be a valid integer"),
        ({"samples: 10": "samples: -4"}, "samples: Input should be greater than 0"),
        ({"{beta:": "{rho:"}, "parameters: advection1d has no parameter 'rho'"),
        ({"kind: pdebench_sines": "kind: noise"}, "initial_condition.kind: unknown kind"),
        ({"kind: pdebench_sines}": "kind: pdebench_sines, options: {k: 2}}"},
         "initial_condition.options: unknown option 'k'; pdebench_sines takes k_tot (int), "
         "normalize (bool)"),
        ({"kind: pdebench_sines}": "kind: pdebench_sines, options: {k_tot: 2.5}}"},
         "initial_condition.options: k_tot=2.5: Input should be a valid integer"),
        ({"kind: pdebench_sines}": "kind: pdebench_sines, options: {k_tot: 0}}"},
         "k_tot=0: Input should be greater than or equal to 1"),
        ({"[0.5, 1.0]": "[0.5, .nan]"}, "parameters: beta=[0.5, nan]: every value must be a "
         "finite number (got nan)"),
        ({"t_end: 0.2": "t_end: .inf"}, "t_end: Input should be a finite number"),
        ({"[0.5, 1.0]": "[]"}, "beta: an empty list sweeps nothing"),
    ],
)
def test_bad_specs_exit_2_naming_the_key(tmp_path, capsys, replace, message):
    spec = write_spec(tmp_path, **replace)
    code = main(["datasets", "generate", str(spec), "--out", str(tmp_path / "d"),
                 "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()  # refused before any shard


def test_a_bad_spec_exits_2_from_a_real_process(tmp_path):
    spec = write_spec(tmp_path, **{"pde: advection1d": "pde: navier"})
    result = subprocess.run([sys.executable, "-m", "physml.cli", "datasets", "generate",
                             str(spec), "--out", str(tmp_path / "d"), "--workers", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown PDE 'navier'" in result.stderr and "Traceback" not in result.stderr


def test_out_of_range_sweep_value_is_refused_before_any_shard(tmp_path, capsys):
    spec = write_spec(tmp_path).read_text().replace("advection1d", "diffusion_reaction1d")
    (tmp_path / "spec.yaml").write_text(spec.replace("{beta: [0.5, 1.0]}", "{nu: [0.1, -1.0]}"))
    args = ["datasets", "generate", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "d"),
            "--workers", "0", "--quiet"]
    assert main(args) == 2
    assert "spec parameters (nu=-1): nu=-1.0 must be" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_the_spec_file_is_valid_before_samples_overrides_it(tmp_path, capsys):
    spec = write_spec(tmp_path, **{"samples: 10": "samples: -4"})
    args = ["datasets", "generate", str(spec), "--out", str(tmp_path / "d"), "--workers", "0",
            "--samples", "3", "--quiet"]
    assert main(args) == 2
    assert "samples: Input should be greater than 0 (got -4)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_device_is_checked_up_front(tmp_path, capsys):
    spec = str(write_spec(tmp_path))
    assert main(["datasets", "generate", spec, "--out", str(tmp_path / "d"), "--device", "gpu",
                 "--quiet"]) == 2
    assert "device='gpu' is not available; available: cpu" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="a CUDA driver is here")
def test_cuda_start_up_errors_stay_visible_and_cpu_start_up_is_silent(tmp_path):
    spec = str(write_spec(tmp_path))
    cuda = subprocess.run([sys.executable, "-m", "physml.cli", "datasets", "generate", spec,
                           "--out", str(tmp_path / "d"), "--device", "cuda", "--quiet"],
                          capture_output=True, text=True)
    assert cuda.returncode == 2 and "Traceback" not in cuda.stderr
    assert "Warp CUDA" in cuda.stderr  # Warp's own account of the missing driver
    assert "device='cuda' is not available" in cuda.stderr
    cpu = subprocess.run([sys.executable, "-m", "physml.cli", "datasets", "generate", spec,
                          "--out", str(tmp_path / "c"), "--device", "cpu", "--workers", "0",
                          "--samples", "1", "--quiet"], capture_output=True, text=True)
    assert cpu.returncode == 0 and cpu.stdout + cpu.stderr == ""


API_RUN = """
import sys
from physml.datasets.generate import generate
from physml.datasets.spec import load_spec
generate(load_spec(sys.argv[1], samples=1), sys.argv[2], workers=int(sys.argv[3]))
"""


@pytest.mark.parametrize("workers", [0, 1])
def test_python_api_and_dask_workers_keep_warp_start_up_off_the_output(tmp_path, workers):
    spec = str(write_spec(tmp_path))

    def run(folder, **env):
        return subprocess.run([sys.executable, "-c", API_RUN, spec, str(tmp_path / folder),
                               str(workers)], capture_output=True, text=True,
                              env={**os.environ, **env})

    quiet = run("quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "Warp" not in quiet.stdout + quiet.stderr
    verbose = run("verbose", PHYSML_WARP_VERBOSE="1")
    assert verbose.returncode == 0 and "Warp" in verbose.stdout + verbose.stderr


def test_bad_command_line_values(tmp_path, capsys):
    spec = str(write_spec(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        (["--out", str(blocker / "d")], "cannot be written"),
        (["--out", str(tmp_path / "d"), "--samples", "-3"], "--samples=-3 must be a positive"),
        (["--out", str(tmp_path / "d"), "--workers", "-1"], "--workers=-1 must be >= 0"),
    ]
    for extra, message in cases:
        assert main(["datasets", "generate", spec, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["datasets", "generate", str(tmp_path / "none.yaml"), "--out", "x"]) == 2
    assert "does not exist (bundled specs: advection1d" in capsys.readouterr().err
