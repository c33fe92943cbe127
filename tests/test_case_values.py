"""Case values that the schema's types admit but a run cannot honour are refused by ``physml
validate`` (and so by ``physml run`` before it starts) with one message naming the keys, exit 2."""

from pathlib import Path

import pytest
import yaml

from physml.cases.registry import bundled_cases, load_case, run_case
from physml.cli import main


def validate_error(capsys, *args: str) -> str:
    """``physml validate`` in-process: assert exit status 2 and return its one stderr line."""
    code = main(["validate", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def case_without_kind(tmp_path: Path, name: str, misspelt: str | None) -> Path:
    """Bundled case ``name`` written to ``tmp_path`` with its ``kind`` line under the key
    ``misspelt``, or without it (None)."""
    raw = yaml.safe_load(bundled_cases()[name].read_text())
    kind = raw.pop("kind")
    if misspelt is not None:
        raw = {misspelt: kind, **raw}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("name", ["poisson_lshape", "poisson_lshape_pinn"])
@pytest.mark.parametrize("misspelt", ["kindx", "Kind"])
def test_a_misspelt_kind_is_named_with_the_kinds(tmp_path, capsys, name, misspelt):
    err = validate_error(capsys, str(case_without_kind(tmp_path, name, misspelt)))
    assert f"kind: not given (unknown key {misspelt!r} given; kind takes: pinn, teng" in err
    assert "read as kind pinn" in err and "mesh_pde" in err and "equation" in err


def test_a_missing_kind_says_the_case_is_read_as_kind_pinn(tmp_path, capsys):
    err = validate_error(capsys, str(case_without_kind(tmp_path, "poisson_lshape_pinn", None)))
    assert "(no kind given: read as kind pinn; kind takes: pinn, teng" in err


def test_a_section_given_a_scalar_is_asked_for_a_mapping_not_a_class(capsys):
    err = validate_error(capsys, "burgers", "training.adam=3")
    assert "training.adam: Input should be a mapping (got 3)" in err
    assert "Spec" not in err and "instance" not in err


@pytest.mark.parametrize("folder", ["/proc/physml_no_such_dir/runs", "FILE/runs"])
def test_validate_refuses_an_output_folder_run_cannot_make(tmp_path, capsys, folder):
    (tmp_path / "FILE").write_text("a file, not a folder")
    folder = folder.replace("FILE", str(tmp_path / "FILE"))
    err = validate_error(capsys, "burgers", f"output.folder={folder}")
    assert f"output.folder={folder!r}: cannot make the run folder there" in err


def test_validate_makes_no_folder_for_an_output_folder_it_accepts(tmp_path, capsys):
    assert main(["validate", "burgers", f"output.folder={tmp_path / 'new' / 'runs'}"]) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("nu", ["1e4", "1e30"])
def test_an_observations_solve_beyond_the_step_cap_is_refused(capsys, nu):
    err = validate_error(capsys, "burgers_inverse", f"observations.solve.parameters.nu={nu}")
    assert f"observations.solve.parameters.nu={float(nu):g}" in err
    assert "observations.solve.nx=512" in err and "domain.time=[0.0, 1.0]" in err
    expected = "2086553400 time steps" if nu == "1e4" else "2.09e+35 time steps"
    assert expected in err and "more than 1e+07" in err


def test_an_moe_data_solve_beyond_the_step_cap_is_refused(capsys):
    err = validate_error(capsys, "moe_navier_stokes", "variant=cpu", "problem.t_end=1e30")
    assert "problem.t_end=1e+30 with problem.nx=16" in err and "more than 1e+07" in err


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_heat_step_whose_amplification_rounds_to_one_gives_no_decay_verdict(tmp_path):
    """Crank–Nicolson with time.dt=1e30: G = -1 to double precision, an expected rate of 0 (a
    division by zero and a relative error of -inf before)."""
    case = load_case("heat_surface", ["variant=quick", "time.dt=1e30", "time.steps=4",
                                      "time.save_every=2", "output.figures=false"])
    summary = run_case(case, tmp_path)[1]
    assert "decay_rate" not in summary and summary["passed"] is None
    assert summary["decay_rate_skipped"].startswith(
        "the scheme's amplification of the first mode is -1 at time.dt=1e+30")


def test_a_pinn_coefficient_whose_loss_overflows_the_dtype_is_refused(capsys):
    err = validate_error(capsys, "convection", "pde.beta=1e30")
    assert "pde.beta=1e+30 makes a residual term of about 1e+30" in err
    assert "largest float32 number (3.4e+38); use a pde.beta below 1.8e+19" in err
    assert "no kind given" not in err  # a pinn case's own key: its kind is not in doubt
    assert main(["validate", "convection", "pde.beta=1e30", "dtype=float64"]) == 0


@pytest.mark.parametrize("case, override", [
    ("thermomigration_fe_c", "free_energy.diffusivity=1e30"),
    ("thermomigration_fe_c", "free_energy.diffusivity=1100"),
    ("thermomigration_spinodal_pfhub1", "free_energy.mobility=1e30")])
def test_a_diffusivity_that_settles_before_the_first_save_is_refused(capsys, case, override):
    err = validate_error(capsys, case, override)
    key = override.partition("=")[0]
    assert f"{key}=" in err and "settles across grid.length=" in err
    assert f"use a smaller {key} or a longer grid.length" in err


def test_a_diffusivity_a_million_times_the_case_s_still_validates():
    assert main(["validate", "thermomigration_fe_c", "free_energy.diffusivity=1.1"]) == 0
