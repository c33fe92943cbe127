"""The physml command: solve writes HDF5 that xarray and h5py read; mistakes exit with 2."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from physml import __version__
from physml.cli import main
from physml.solvers.exact import heat_fourier_mode


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "physml.cli", *args], capture_output=True,
                          text=True)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_solve_heat_writes_a_trajectory_readable_by_xarray_and_h5py(tmp_path):
    out = tmp_path / "u.h5"
    code = main(["solve", "heat1d", "--nx", "64", "--nu", "0.2", "--t-end", "0.5",
                 "--n-saves", "6", "--out", str(out), "--quiet"])
    assert code == 0
    ds = xr.open_dataset(out)
    assert ds["u"].dims == ("time", "x") and ds["u"].shape == (6, 64)
    np.testing.assert_allclose(ds["time"], np.linspace(0, 0.5, 6))
    assert ds.attrs["pde"] == "heat1d" and float(ds.attrs["nu"]) == 0.2
    x = ds["x"].values
    exact = heat_fourier_mode((x,), 0.2, 0.5, (1,)) + 0.5 * heat_fourier_mode((x,), 0.2, 0.5, (3,))
    assert np.abs(ds["u"][-1].values - exact).max() < 2e-3
    with h5py.File(out) as f:
        assert f["u"].shape == (6, 64)
    assert not list(tmp_path.glob(".*tmp*"))


def test_solve_2d_with_imex(tmp_path):
    out = tmp_path / "b.h5"
    assert main(["solve", "burgers2d", "--nx", "16", "--t-end", "0.1", "--n-saves", "3",
                 "--scheme", "imex", "--out", str(out), "--quiet"]) == 0
    assert xr.open_dataset(out)["u"].dims == ("time", "x", "y")


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", "burgers1d", "--nu", "-1"], "nu=-1.0 must be >= 0"),
        (["solve", "navier"], "unknown PDE 'navier'; allowed: heat1d"),
        (["solve", "burgers1d", "--dt", "0.01"], "exceeds the stability limit"),
        (["solve", "heat1d", "--nx", "2"], "too small for this stencil"),
        (["solve", "heat1d", "--t-end", "-1"], "--t-end=-1.0 must be a positive number"),
        (["solve", "heat1d", "--nx", "ten"], "invalid int value: 'ten'"),
        (["solve", "heat1d", "--scheme", "rk45"], "unknown scheme 'rk45'; allowed: euler"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = run_cli(*args, "--out", str(tmp_path / "u.h5"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "u.h5").exists()


def test_missing_output_folder(tmp_path):
    result = run_cli("solve", "heat1d", "--out", str(tmp_path / "no" / "u.h5"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_implicit_heat_takes_one_step_per_save_and_exact_dt_divisions_are_accepted(tmp_path):
    assert main(["solve", "heat2d", "--nx", "8", "--scheme", "imex", "--t-end", "0.1",
                 "--n-saves", "3", "--out", str(tmp_path / "h.h5"), "--quiet"]) == 0
    assert xr.open_dataset(tmp_path / "h.h5").attrs["n_steps"] == 2
    assert main(["solve", "heat1d", "--t-end", "0.3", "--n-saves", "101", "--dt", "0.0003",
                 "--out", str(tmp_path / "d.h5"), "--quiet"]) == 0
    assert xr.open_dataset(tmp_path / "d.h5").attrs["n_steps"] == 1000
