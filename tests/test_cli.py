"""The physml command: solve writes HDF5 that xarray and h5py read; mistakes exit with 2."""

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

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
        (["solve", "burgers1d", "--nu", "-1"], "nu=-1.0 must be >= 0 and finite (viscosity"),
        (["solve", "navier"], "unknown PDE 'navier'; allowed: heat1d"),
        (["solve", "burgers1d", "--dt", "0.01"], "exceeds the stability limit"),
        (["solve", "heat1d", "--nx", "2"], "too small for this stencil"),
        (["solve", "heat1d", "--t-end", "-1"], "--t-end=-1.0 must be a positive number"),
        (["solve", "heat1d", "--nx", "ten"], "invalid int value: 'ten'"),
        (["solve", "heat1d", "--scheme", "rk45"], "unknown scheme 'rk45'; allowed: euler"),
        (["solve", "burgers1d", "--nx", "100000000000"], "grid [100000000000]: the solver's "
         "working state (10 fields of 100000000000 cells) needs about "),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    try:
        code = main([*args, "--out", str(tmp_path / "u.h5")])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "u.h5").exists()


def test_bad_input_exits_2_from_a_real_process(tmp_path):
    result = run_cli("solve", "burgers1d", "--nu", "-1", "--out", str(tmp_path / "u.h5"))
    assert result.returncode == 2
    assert "nu=-1.0 must be >= 0" in result.stderr and "Traceback" not in result.stderr


def test_missing_output_folder(tmp_path):
    result = run_cli("solve", "heat1d", "--out", str(tmp_path / "no" / "u.h5"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def solve_error(capsys, *args) -> str:
    """Run ``physml solve`` in-process; assert exit status 2 and return the one stderr line."""
    try:
        code = main(["solve", *args, "--quiet"])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "pde, flag",
    [("heat1d", "--nu"), ("allen_cahn1d", "--rho"), ("burgers1d", "--nu"), ("heat1d", "--dt"),
     ("advection2d", "--beta")],
)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_numbers_are_refused(capsys, tmp_path, pde, flag, value):
    given = value if flag != "--beta" else f"1,{value}"
    err = solve_error(capsys, pde, f"{flag}={given}", "--out", str(tmp_path / "u.h5"))
    assert f"argument {flag}: expected " in err and "finite number" in err


def test_out_is_checked_before_any_computation(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --nu -1 would be refused by the solver: the --out error comes first
    for out, message in [(".", "'.' is a folder; give a file name"),
                         (str(tmp_path), "is a folder"),
                         ("/proc/u.h5", "cannot write in folder '/proc'")]:
        if out.startswith("/proc") and not Path("/proc").is_dir():
            continue
        assert message in solve_error(capsys, "heat1d", "--nu", "-1", "--out", out)
    (tmp_path / "u.h5").write_text("keep")
    err = solve_error(capsys, "heat1d", "--nx", "16", "--out", "u.h5")
    assert "--out: 'u.h5' exists; pass --overwrite to replace it" in err
    assert (tmp_path / "u.h5").read_text() == "keep"
    assert main(["solve", "heat1d", "--nx", "16", "--n-saves", "3", "--out", "u.h5",
                 "--overwrite", "--quiet"]) == 0
    assert xr.open_dataset(tmp_path / "u.h5")["u"].shape == (3, 16)
    assert not list(tmp_path.glob(".physml-write-test-*"))


@pytest.mark.parametrize(
    "args, count",
    [(["--t-end", "1e300"], "4.77e+302"), (["--dt", "1e-300"], "1e+300"),
     (["--dt", "1e-8"], "100000000")],
)
def test_runs_beyond_the_step_limit_are_refused_with_the_count(capsys, tmp_path, args, count):
    err = solve_error(capsys, "heat1d", *args, "--out", str(tmp_path / "u.h5"))
    assert f"needs {count} time steps, more than --max-steps=10000000" in err
    assert ("--max-steps 100000000 to run them anyway" in err) == (count == "100000000")


def test_a_step_limit_set_by_diffusion_offers_the_implicit_scheme(capsys, tmp_path):
    """A larger --dt is no cure where explicit diffusion sets the limit: --scheme imex is."""
    out = str(tmp_path / "u.h5")
    err = solve_error(capsys, "heat1d", "--nu", "1e5", "--out", out)
    assert "needs 476803300 time steps" in err and "a larger --dt" not in err
    assert err.rstrip().endswith("or a smaller --t-end, or --scheme imex (implicit diffusion: "
                                 "no diffusive step limit)")
    err = solve_error(capsys, "heat1d", "--nu", "1e5", "--dt", "0.01", "--out", out)
    assert "exceeds the stability limit" in err and "or --scheme imex" in err
    assert main(["solve", "heat1d", "--nu", "1e5", "--scheme", "imex", "--nx", "16",
                 "--out", out, "--quiet"]) == 0


def test_saves_beyond_the_machine_s_memory_are_refused_before_the_solve(capsys, tmp_path,
                                                                        monkeypatch):
    from physml.datasets import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 2**30)
    err = solve_error(capsys, "heat1d", "--nx", "4096", "--n-saves", "40000", "--out",
                      str(tmp_path / "u.h5"))
    assert err.startswith("physml: error: --n-saves=40000 states of 4096 cells (float64) needs "
                          "about 1.2 GiB, more than this machine's memory (1.0 GiB)")
    assert not (tmp_path / "u.h5").exists()


def test_a_blow_up_at_a_chosen_step_names_where_the_step_came_from(capsys, tmp_path):
    """The forcing speeds the flow past the step chosen from the initial state: the cure is
    --cfl or --dt, options the user never set."""
    out = tmp_path / "w.h5"
    assert main(["solve", "navier_stokes2d", "--nx", "32", "--forcing", "1", "--t-end", "6",
                 "--n-saves", "3", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "omega became NaN/Inf at step" in err and "was chosen once, as --cfl=0.5 times " \
        "the stable step of the initial state" in err and "pass a smaller --cfl or a --dt" in err
    assert (tmp_path / "w.last_good.h5").is_file()


def test_a_rate_beyond_float64_is_named_not_divided_by(capsys, tmp_path):
    err = solve_error(capsys, "advection1d", "--beta", "1e308", "--out", str(tmp_path / "u.h5"))
    assert err.strip() == ("physml: error: the advection term's rate is not finite (its "
                           "parameters, or the state, are beyond float64 on this grid): no time "
                           "step is stable")


def test_max_steps_is_a_limit_the_user_sets(capsys, tmp_path):
    out = str(tmp_path / "u.h5")
    err = solve_error(capsys, "heat1d", "--nx", "16", "--max-steps", "10", "--out", out)
    assert "needs 100 time steps, more than --max-steps=10" in err
    # the saves set the step here (the stable step is longer): say so, not a dt it never takes
    assert "one step per save interval (dt=0.01, shorter than 0.5 x the stable step" in err
    assert err.rstrip().endswith("fewer --n-saves or a smaller --t-end")
    assert main(["solve", "heat1d", "--nx", "16", "--max-steps", "100", "--out", out,
                 "--quiet"]) == 0


def test_max_steps_counts_the_steps_and_the_dt_the_run_takes(capsys, tmp_path):
    """heat1d on 118 cells: 0.5 x the stable step fits just over once in a save interval of
    0.01, so the run takes 2 steps of 0.005 per save, 200 in all, not the 101 of the ratio."""
    out = str(tmp_path / "u.h5")
    err = solve_error(capsys, "heat1d", "--nx", "118", "--max-steps", "199", "--out", out)
    assert "dt=0.005 (the longest step up to 0.5 x the stable step" in err
    assert "needs 200 time steps, more than --max-steps=199; pass --max-steps 200 " in err
    assert main(["solve", "heat1d", "--nx", "118", "--max-steps", "200", "--out", out,
                 "--quiet"]) == 0
    assert xr.open_dataset(out).attrs["n_steps"] == 200
    # --dt: 0.1 / 0.01 is 10.000000000000002 in floating point, and the run takes 110 steps
    given = ["advection1d", "--nx", "32", "--t-end", "1.1", "--dt", "0.01", "--n-saves", "11"]
    out = str(tmp_path / "a.h5")
    err = solve_error(capsys, *given, "--max-steps", "109", "--out", out)
    assert "needs 110 time steps, more than --max-steps=109; pass --max-steps 110 " in err
    assert main(["solve", *given, "--max-steps", "110", "--out", out, "--quiet"]) == 0
    assert xr.open_dataset(out).attrs["n_steps"] == 110


@pytest.mark.parametrize(
    "args, reason",
    [(["--nx", "256", "--dt", "1"], "does not divide --t-end=1 into 100 equal save intervals "
      "and exceeds the stability limit"),
     (["--nx", "256", "--dt", "0.004"], "does not divide"),
     (["--nx", "256", "--dt", "0.005"], "exceeds the stability limit")],
)
def test_a_refused_dt_comes_with_a_step_the_next_run_accepts(capsys, tmp_path, args, reason):
    out = str(tmp_path / "u.h5")
    err = solve_error(capsys, "heat1d", *args, "--out", out)
    assert reason in err
    suggested = re.search(r"pass --dt=(\S+),", err).group(1)
    assert main(["solve", "heat1d", "--nx", "256", "--dt", suggested, "--n-saves", "101",
                 "--out", out, "--quiet"]) == 0
    assert xr.open_dataset(out).attrs["dt"] == pytest.approx(float(suggested), rel=1e-6)


def test_parameter_flags_come_from_the_solvers():
    from physml.cli_parser import build_parser
    from physml.datasets.problems import PROBLEMS

    solve = build_parser()._subparsers._group_actions[0].choices["solve"]
    flags = {a.dest: a for a in solve._actions}
    for prob in PROBLEMS.values():
        for parameter in prob.solver.PARAMETERS:
            assert parameter.unit in flags[parameter.name].help


def test_implicit_heat_takes_one_step_per_save_and_exact_dt_divisions_are_accepted(tmp_path):
    assert main(["solve", "heat2d", "--nx", "8", "--scheme", "imex", "--t-end", "0.1",
                 "--n-saves", "3", "--out", str(tmp_path / "h.h5"), "--quiet"]) == 0
    assert xr.open_dataset(tmp_path / "h.h5").attrs["n_steps"] == 2
    assert main(["solve", "heat1d", "--t-end", "0.3", "--n-saves", "101", "--dt", "0.0003",
                 "--out", str(tmp_path / "d.h5"), "--quiet"]) == 0
    assert xr.open_dataset(tmp_path / "d.h5").attrs["n_steps"] == 1000


def test_a_new_grid_pde_is_one_solver_class_plus_one_registry_line(monkeypatch, tmp_path):
    """Advection-diffusion $u_t + a u_x = \\kappa u_{xx}$ from existing terms: the class
    declares its parameters and terms; the problem registry line makes it a ``physml solve``
    PDE with its flags, checks and stability limit, and the result is the exact
    $e^{-\\kappa t}\\sin(x - a t)$ to 2e-3 at 128 cells (its convergence order is the
    limited MUSCL scheme's, checked for the bundled solvers in ``test_convergence``)."""
    from physml.datasets import problems
    from physml.solvers import FluxKind, GridSolver, Parameter, Term

    class AdvectionDiffusionSolver1D(GridSolver):
        ndim = 1
        flux_kind = FluxKind.LINEAR_UPWIND
        PARAMETERS = (
            Parameter("a", "m/s", "advection velocity", per_axis=True, term=Term.ADVECTION),
            Parameter("kappa", "m^2/s", "diffusivity", lower=0.0, term=Term.DIFFUSION),
        )

        def __init__(self, grid, bc=None, *, a, kappa, dt, **options):
            super().__init__(grid, bc, parameters={"a": a, "kappa": kappa}, dt=dt, **options)

    line = problems.Problem(AdvectionDiffusionSolver1D, "u_t + a u_x = kappa u_xx", (0.0,),
                            (2 * np.pi,), "periodic", {"a": 1.0, "kappa": 0.1}, np.sin, 1.0,
                            initial_text="sin(x)")
    monkeypatch.setitem(problems.PROBLEMS, "advection_diffusion1d", line)
    out = tmp_path / "u.h5"
    with pytest.raises(SystemExit) as exit_:
        main(["solve", "advection_diffusion1d", "--kappa=inf", "--out", str(out)])
    assert exit_.value.code == 2
    assert main(["solve", "advection_diffusion1d", "--kappa", "-1", "--out", str(out),
                 "--quiet"]) == 2
    assert main(["solve", "advection_diffusion1d", "--nx", "128", "--kappa", "0.2", "--n-saves",
                 "2", "--out", str(out), "--quiet"]) == 0
    ds = xr.open_dataset(out)
    x = ds["x"].values
    exact = np.exp(-0.2) * np.sin(x - 1.0)
    assert np.abs(ds["u"][-1].values - exact).max() < 2e-3
    assert float(ds.attrs["kappa"]) == 0.2


@pytest.mark.parametrize(
    "args, message",
    [
        (["validate", "{bad}"], "bad.yaml: not UTF-8 text (byte 3)"),
        (["validate", "/dev/null"], "'/dev/null' is not a regular file; expected a case file"),
        (["datasets", "generate", "{folder}", "--out", "{folder}/out"],
         "is not a file (a folder or a device); give the spec's YAML file"),
        (["validate", "teng_heat", "variant=cpu", "training.dt=10"],
         "training.dt=10.0 gives no time step over domain.t (a span of 4)"),
        (["validate", "pcg_poisson", "variant=tiny", "evaluation.rtols=[-1.0]"],
         "evaluation.rtols.0: Input should be greater than 0"),
        (["validate", "poisson_lshape_pinn", "evaluation.grid=[-1, -1]"],
         "evaluation.grid.0: Input should be greater than or equal to 2"),
        (["solve", "heat1d", "--ny", "8", "--out", "{folder}/u.h5"],
         "--ny: heat1d is one-dimensional; give its cells with --nx"),
        (["run", "burgers", "--log-every", "-1"], "--log-every=-1.0 must be >= 0 seconds"),
        (["solve", "heat2d", "--nx", "8", "--ny", "0", "--out", "{folder}/u.h5"],
         "--ny=0 must be a whole number of cells >= 1"),
        (["run", "burgers", "--resume", "{bad}"], "bad.yaml' is not a folder"),
        (["run", "burgers", "training.adam.lr=1e38"],
         "training.adam.lr: Input should be less than or equal to 1000000"),
        (["validate", "moe_diffusion_sorption", "training.lr=2e6"],
         "training.lr: Input should be less than or equal to 1000000"),
        (["validate", "shape_poisson", "optimisation.lr=1e7"],
         "optimisation.lr: Input should be less than or equal to 1000000"),
        # a value no member of a union takes, or one a member takes with a problem inside
        (["validate", "poisson_lshape_pinn", "pde=[u_t, u_x]"],
         "pde: Input should be a string or a mapping (got ['u_t', 'u_x'])"),
        (["validate", "poisson_lshape_pinn", "conditions.0.value=[1]"],
         "conditions.0.value: Input should be a string or a number (got [1])"),
        (["validate", "poisson_lshape_pinn", "pde={{u: 1}}"],
         "pde.u: Input should be a valid string (got 1)"),
    ],
)
def test_user_mistakes_found_before_any_work_exit_2_naming_them(tmp_path, cli_in_process,
                                                                 args, message):
    (tmp_path / "bad.yaml").write_bytes(b"a: \x94\n")
    filled = [a.format(bad=tmp_path / "bad.yaml", folder=tmp_path) for a in args]
    result = cli_in_process(*filled)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_misspelt_required_key_is_named_beside_the_missing_one(tmp_path, cli_in_process):
    from physml.cases import bundled_cases

    text = bundled_cases()["poisson_lshape_pinn"].read_text()
    (tmp_path / "case.yaml").write_text(text.replace("\npde:", "\npdee:"))
    result = cli_in_process("validate", str(tmp_path / "case.yaml"))
    assert result.returncode == 2
    assert "pde: Field required (unknown key 'pdee' given; allowed: kind, name," in result.stderr


@pytest.mark.parametrize("command, message", [
    (["solve", "heat1d"], "physml: interrupted; nothing was written"),
    (["datasets", "generate", "burgers1d"], "the finished shards are kept: run the same command"),
])
def test_ctrl_c_in_solve_and_generate_ends_on_one_line(tmp_path, monkeypatch, capsys, command,
                                                      message):
    from physml import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "solve_command", interrupted)
    monkeypatch.setattr(cli, "generate_command", interrupted)
    assert main([*command, "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_dask_scheduler_is_named(monkeypatch):
    pytest.importorskip("distributed")  # --scheduler needs the dask extra
    from physml.datasets import generate

    monkeypatch.setattr(generate, "SCHEDULER_TIMEOUT_S", 1)
    with pytest.raises(ValueError, match="--scheduler 'tcp://127.0.0.1:1': no Dask scheduler "
                                         "answered within 1 s"):
        generate.connect_scheduler("tcp://127.0.0.1:1")


def test_a_solve_that_blows_up_ends_on_its_one_line_and_keeps_the_last_state(tmp_path):
    out = tmp_path / "w.h5"
    result = subprocess.run(
        [sys.executable, "-m", "physml.cli", "solve", "navier_stokes2d", "--nx", "16",
         "--forcing", "1e300", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 1 and "Warning" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("physml: error: omega became NaN/Inf at step 1")
    assert (tmp_path / "w.last_good.h5").is_file()


def test_a_command_other_than_solve_builds_its_parser_without_the_solvers():
    """solve's per-PDE flags import Warp and the solvers (about a second); physml --help,
    cases or validate need neither (a fresh process: this one has imported them)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom physml import cli\ntry:\n    cli.main(['--help'])\n"
             "except SystemExit:\n    pass\nprint('imported:', 'warp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120).stdout
    assert "solve" in out and out.strip().endswith("imported: False")
    from physml.cli_parser import build_parser, command_of

    assert command_of(["--quiet", "solve", "heat1d"]) == "solve" and command_of([]) is None
    light = build_parser(solve_options=False)._subparsers._group_actions[0].choices["solve"]
    assert "--nu" not in light._option_string_actions


@pytest.fixture
def unfinished_run(tmp_path):
    """A burgers run folder whose checkpoint holds step 0 of 50 (a run stopped early, or still
    training), as the run writes it before its first step."""
    import torch

    from physml.cases.pinn import build_trainer
    from physml.cases.registry import load_case

    case = load_case("burgers", ["training.adam.steps=50", "training.lbfgs.steps=0",
                                 "model.width=8", "model.depth=2", "evaluation.nx=8",
                                 "evaluation.nt=3"])
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(case.to_yaml())
    torch.save(build_trainer(case).state_dict(), folder / "checkpoint.pt")
    np.savetxt(tmp_path / "p.csv", [[0.1, 0.2]], delimiter=",", header="x,t", comments="")
    return folder


@pytest.mark.parametrize("command, out", [
    (["predict", "{run}", "--points", "{folder}/p.csv"], "u.csv"),
    (["export", "{run}"], "u.pt"),
])
def test_an_unfinished_run_s_network_is_used_with_a_note_of_its_state(
        unfinished_run, cli_in_process, command, out):
    """predict and export alike say which checkpoint they use; a resume is not the one cure
    of a stopped run (a NaN/Inf stop replays into the same failure), nor any of a run still
    training (its folder held by that run)."""
    from physml.cases.run_lock import holding

    args = [a.format(run=unfinished_run, folder=unfinished_run.parent) for a in command]
    result = cli_in_process(*args, "--out", str(unfinished_run.parent / out))
    assert result.returncode == 0, result.stderr
    assert f"physml {command[0]}: note: the network of {str(unfinished_run)!r} is its " \
        "checkpoint at step 0 of 50 (the run was interrupted: resume it to finish)" \
        in result.stderr
    assert result.stdout.startswith(f"wrote {unfinished_run.parent / out}")
    (unfinished_run / "stopped.txt").write_text("the loss became NaN/Inf at step 1\n")
    result = cli_in_process(*args, "--out", str(unfinished_run.parent / out), "--overwrite")
    assert "step 0 of 50 (the run stopped: the loss became NaN/Inf at step 1; a resume fails " \
        "the same way: start a new run)" in result.stderr
    (unfinished_run / "stopped.txt").unlink()
    with holding(unfinished_run):
        result = cli_in_process(*args, "--out", str(unfinished_run.parent / out), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "step 0 of 50 (the run is still training: this is its latest checkpoint)" \
        in result.stderr and "resume" not in result.stderr


def test_a_resume_of_a_folder_another_run_holds_is_refused_without_saying_it_resumes(
        unfinished_run, cli_in_process):
    """The refusal is the one line about the folder: its checkpoint, being written by the run
    that holds it, is not read to say where a resume would go on from."""
    from physml.cases.run_lock import holding

    with holding(unfinished_run):
        result = cli_in_process("run", "burgers", "training.adam.steps=50",
                                "training.lbfgs.steps=0", "model.width=8", "model.depth=2",
                                "evaluation.nx=8", "evaluation.nt=3",
                                "--resume", str(unfinished_run))
    assert result.returncode == 2
    heading, refusal = result.stderr.splitlines()  # no "resuming ... from its checkpoint"
    assert heading.startswith("physml run burgers: ")
    assert refusal.startswith(f"physml: error: {str(unfinished_run)!r} is in use by another "
                              "physml run")


def test_predict_records_the_run_folder_absolute(unfinished_run, cli_in_process, monkeypatch):
    monkeypatch.chdir(unfinished_run.parent)
    result = cli_in_process("predict", "run", "--points", "p.csv", "--out", "u.h5")
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(unfinished_run.parent / "u.h5") as ds:
        assert ds.attrs["run"] == str(unfinished_run.resolve())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_exported_files_name_their_columns(unfinished_run, cli_in_process):
    import onnx
    import torch

    names = {"inputs": "x,t", "outputs": "u", "physml_version": __version__}
    out = unfinished_run.parent
    assert cli_in_process("export", str(unfinished_run), "--out", str(out / "u.pt")).returncode == 0
    extra = dict.fromkeys(names, "")
    torch.jit.load(str(out / "u.pt"), _extra_files=extra)
    assert {key: value.decode() for key, value in extra.items()} == names
    assert cli_in_process("export", str(unfinished_run), "--out",
                          str(out / "u.onnx")).returncode == 0
    props = {p.key: p.value for p in onnx.load(str(out / "u.onnx")).metadata_props}
    assert props == names

@pytest.mark.parametrize("args, message", [
    (["datasets"], "physml datasets: error: the following arguments are required: {{generate}}"),
    (["predict", "{run}", "--points", "{folder}", "--out", "{folder}/u.csv"],
     "--points: '{folder}' is a folder; give a .npy or .csv file"),
    (["datasets", "generate", "burgers1d", "--out", "{folder}/p.csv"],
     "--out '{folder}/p.csv' is a file; give a folder (a dataset is a folder of shards)"),
    (["datasets", "generate", "burgers1d", "--out", "{folder}/d", "--scheduler", "foo"],
     "--scheduler 'foo': expected a Dask scheduler's address, [protocol://]host:port, e.g. "
     "tcp://127.0.0.1:8786"),
    (["datasets", "generate", "burgers1d", "--out", "{folder}/d", "--scheduler",
      "tcp://127.0.0.1:8786", "--workers", "2"],
     "--workers and --scheduler: give one (--scheduler's workers solve the samples; --workers "
     "starts local ones)"),
])
def test_a_mistake_is_named_as_the_user_gave_it(unfinished_run, capsys, args, message):
    folder = unfinished_run.parent
    filled = [a.format(run=unfinished_run, folder=folder) for a in args]
    with pytest.raises(SystemExit) if args == ["datasets"] else contextlib.nullcontext():
        assert main(filled) == 2
    err = capsys.readouterr().err
    assert message.format(folder=folder) in err.strip().splitlines()[-1]
    if args != ["datasets"]:  # one line: no banner of a generation that does not start
        assert len(err.strip().splitlines()) == 1
    assert not (folder / "d").exists()


def test_results_go_to_stdout_and_log_lines_are_not_wrapped(tmp_path, monkeypatch, capsys):
    """solve and datasets generate, as run, predict and export: progress and notes on stderr,
    the result on stdout; neither is wrapped at 80 columns where it is not a terminal."""
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    deep = tmp_path / ("a-long-folder-name-" * 4)
    deep.mkdir()
    assert main(["solve", "burgers1d", "--nx", "16", "--t-end", "0.01", "--n-saves", "2",
                 "--out", str(deep / "u.h5")]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"wrote {deep / 'u.h5'} (") and "wrote" not in printed.err
    assert "scheme='ssp_rk3'" in next(line for line in printed.err.splitlines()
                                      if "BurgersSolver1D(" in line)
    assert any(f"saved states -> {deep / 'u.h5'}" in line for line in printed.err.splitlines())
    spec = _advection_spec(tmp_path, samples=1)
    assert main(["datasets", "generate", str(spec), "--out", str(deep / "d"), "--workers",
                 "0"]) == 0
    printed = capsys.readouterr()
    assert printed.out == (f"wrote 1 samples (train 1, valid 0, test 0) to {deep / 'd'} (open "
                           f"with physml.io.open_dataset({str(deep / 'd')!r}, split='train'))\n")
    assert "wrote" not in printed.err


def test_a_shape_run_that_tangles_its_mesh_keeps_its_steps_and_is_not_resumed(tmp_path,
                                                                              cli_in_process):
    """The stopped folder kept no metrics.json, and --resume reloaded the mesh and recomputed
    the step into the same fold (exit 1) instead of refusing at once."""
    import json

    overrides = ["mesh.h=0.2", "optimisation.lr=0.5", "optimisation.quality_weight=0",
                 "optimisation.steps=5", f"output.folder={tmp_path}"]
    assert cli_in_process("run", "shape_poisson", *overrides, "--quiet").returncode == 1
    (folder,) = tmp_path.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [record["step"] for record in metrics["history"]] == [0]  # the start; update 1 tangled
    summary = metrics["summary"]
    assert summary["stopped"] == (folder / "stopped.txt").read_text().strip()
    assert summary["stopped"].startswith("the update of step 1 tangled the mesh (folded cells")
    assert (summary["stopped_step"], summary["checkpoint_step"], summary["steps"],
            summary["passed"]) == (1, 0, 1, False)
    resumed = cli_in_process("run", "shape_poisson", *overrides, "--resume", str(folder))
    assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1
    assert f"--resume: {str(folder)!r} holds stopped.txt: its run stopped (the update of step " \
        "1 tangled the mesh" in resumed.stderr
    assert resumed.stderr.endswith("; a resume would replay the same steps into the same "
                                   "failure: change the case (a lower learning rate or time "
                                   "step) and start a new run\n")


def test_datasets_generate_gives_each_split_s_samples_and_warns_of_an_empty_one(tmp_path,
                                                                             capsys):
    """6 samples came out all train with 'wrote 6 samples' and no word of the empty valid and
    test splits; the progress line repeated '0/6 samples' while the kernels compiled and the
    shard was solved."""
    spec = _advection_spec(tmp_path, samples=3)
    assert main(["datasets", "generate", str(spec), "--out", str(tmp_path / "d"), "--workers",
                 "0", "--log-every", "0"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"wrote 3 samples (train 3, valid 0, test 0) to {tmp_path}")
    lines = printed.err.splitlines()
    assert any(line.endswith("advection1d 0/3 samples, compiling kernels") for line in lines)
    assert any(line.endswith("advection1d 0/3 samples, shard 1/1 in progress")
               for line in lines)
    for split in ("valid", "test"):
        assert f"physml: warning: split '{split}' is empty: 3 samples per parameter " \
            "combination at the fraction 0.1 give it none" in printed.err
    assert "split 'train'" not in printed.err


def test_python_m_physml_is_the_command():
    result = subprocess.run([sys.executable, "-m", "physml", "--version"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("physml ")


def _advection_spec(tmp_path: Path, samples: int, shard_size: int | None = None) -> Path:
    """A spec of ``samples`` short 16-cell advection samples, written in ``tmp_path``."""
    spec = tmp_path / "spec.yaml"
    shards = "" if shard_size is None else f"shard_size: {shard_size}\n"
    spec.write_text("pde: advection1d\ngrid: [16]\nparameters: {beta: 0.5}\nt_end: 0.1\n"
                    "n_saves: 3\ninitial_condition: {kind: pdebench_sines}\n"
                    f"samples: {samples}\n{shards}")
    return spec


def _shards_refused(monkeypatch, error: OSError) -> None:
    """``os.replace`` raises ``error`` for every rename onto a shard (the last step of its
    atomic write)."""
    import os

    replace = os.replace

    def refused(src, dst, *args, **kwargs):
        if Path(dst).name.startswith("shard-"):
            raise error
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", refused)


def _full_disk_at(monkeypatch, name: str, call: int) -> None:
    """``os.replace`` refuses its ``call``-th rename onto a file called ``name`` with ENOSPC
    (the disk full as the save ends), as an atomic write's last step would."""
    import errno
    import os

    replace, seen = os.replace, []

    def full(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen.append(dst)
            if len(seen) == call:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)


TINY_BURGERS = ["training.adam.steps=20", "training.lbfgs.steps=0", "model.width=8",
                "model.depth=2", "evaluation.nx=8", "evaluation.nt=3",
                "training.checkpoint_every=5", "output.figures=false"]


def test_a_full_disk_mid_run_keeps_the_checkpoint_and_says_how_to_resume(
        tmp_path, monkeypatch, cli_in_process):
    """A checkpoint the disk has no room for ended in a traceback with exit status 1, a
    diverged run's; it is one line naming the file and the system's reason, what is kept and
    the resume command an interruption gives, exit status 74 (EX_IOERR)."""
    overrides = [*TINY_BURGERS, f"output.folder={tmp_path}"]
    with monkeypatch.context() as patch:
        _full_disk_at(patch, "checkpoint.pt", 2)  # the first after the one of step 0
        stopped = cli_in_process("run", "burgers", *overrides, "--quiet")
    [folder] = tmp_path.iterdir()
    assert stopped.returncode == 74 and "Traceback" not in stopped.stderr
    assert stopped.stderr == (
        f"physml: error: could not write {str(folder / 'checkpoint.pt')!r} (No space left on "
        f"device); {folder} keeps its checkpoint at step 0 of 20. Continue with:\n  "
        f"physml run burgers {' '.join(overrides)} --resume {folder}\n")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "config.yaml"]
    resumed = cli_in_process("run", "burgers", *overrides, "--resume", str(folder), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((folder / "metrics.json").read_text())["history"][-1]["step"] == 20


def test_a_full_disk_before_the_first_checkpoint_removes_the_new_run_s_folder(
        tmp_path, monkeypatch, cli_in_process):
    with monkeypatch.context() as patch:
        _full_disk_at(patch, "checkpoint.pt", 1)
        stopped = cli_in_process("run", "burgers", *TINY_BURGERS,
                                 f"output.folder={tmp_path}", "--quiet")
    assert stopped.returncode == 74 and "Traceback" not in stopped.stderr
    folder = re.escape(str(tmp_path / "burgers-"))
    assert re.fullmatch(rf"physml: error: could not write '{folder}[-\d]+/checkpoint.pt' \(No "
                        rf"space left on device\) before the first checkpoint; nothing to "
                        rf"resume \(removed {folder}[-\d]+\)\n", stopped.stderr)
    assert not any(tmp_path.iterdir())


def test_a_full_disk_as_a_run_starts_is_named_with_the_folder(tmp_path, monkeypatch,
                                                              cli_in_process):
    """The lock's process id written to a full disk ended in a traceback."""
    import errno

    from physml.cases import run_lock

    open_own = run_lock.open_own

    def on_a_full_disk(path, mode):
        handle = open_own(path, mode)

        def flush():
            raise OSError(errno.ENOSPC, "No space left on device")

        handle.flush = flush
        return handle

    monkeypatch.setattr(run_lock, "open_own", on_a_full_disk)
    refused = cli_in_process("run", "burgers", *TINY_BURGERS, f"output.folder={tmp_path}",
                             "--quiet")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert re.fullmatch(r"physml: error: '.*burgers-[-\d]+' cannot be written \(no space left "
                        r"on device\): a run writes its checkpoints, figures and results "
                        r"there\n", refused.stderr)
    assert not any(tmp_path.iterdir())


def test_a_full_disk_mid_generation_keeps_the_finished_shards(tmp_path, monkeypatch,
                                                              cli_in_process):
    """A shard the disk had no room for ended in a traceback with exit status 1; the same
    command, run again once there is room, finishes the dataset."""
    spec = _advection_spec(tmp_path, samples=3, shard_size=1)
    command = ["datasets", "generate", str(spec), "--out", str(tmp_path / "d"), "--workers",
               "0", "--quiet"]
    with monkeypatch.context() as patch:
        _full_disk_at(patch, "shard-00001.h5", 1)
        stopped = cli_in_process(*command)
    assert stopped.returncode == 74 and "Traceback" not in stopped.stderr
    [shard] = (tmp_path / "d").rglob("shard-00000.h5")
    assert stopped.stderr == (
        f"physml: error: could not write {str(shard.with_name('shard-00001.h5'))!r} (No space "
        "left on device); the finished shards are kept: run the same command again to go on\n")
    assert not list((tmp_path / "d").rglob(".*.tmp-*"))
    assert cli_in_process(*command).returncode == 0
    assert len(list((tmp_path / "d").rglob("shard-*.h5"))) == 3


@pytest.mark.parametrize("error", [TimeoutError(110, "Connection timed out"),
                                   ConnectionResetError(104, "Connection reset by peer")])
def test_an_error_that_is_no_write_failure_is_not_told_as_one(tmp_path, monkeypatch,
                                                               cli_in_process, error):
    """Any OSError was told as "could not write" with exit status 74 and the advice to run
    again: a lost Dask scheduler, a file that cannot be read."""

    spec = _advection_spec(tmp_path, samples=2, shard_size=1)

    _shards_refused(monkeypatch, error)
    with pytest.raises(type(error)):
        cli_in_process("datasets", "generate", str(spec), "--out", str(tmp_path / "d"),
                       "--workers", "0", "--quiet")


def test_a_permission_taken_away_mid_generation_is_a_write_failure_there_only(
        tmp_path, monkeypatch, cli_in_process):
    """EACCES on a shard in the output (a folder's permission changed mid-run) ended in a
    traceback; on a file elsewhere (an input that cannot be read) it is no write failure."""
    import errno
    import os

    from physml.interrupts import is_write_failure

    spec = _advection_spec(tmp_path, samples=2, shard_size=1)
    with monkeypatch.context() as patch:
        _shards_refused(patch, PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                                               str(tmp_path / "d" / "train" / "shard-00000.h5")))
        stopped = cli_in_process("datasets", "generate", str(spec), "--out",
                                 str(tmp_path / "d"), "--workers", "0", "--quiet")
    assert stopped.returncode == 74 and "(Permission denied); the finished shards" in stopped.stderr
    elsewhere = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "mesh.msh"))
    assert not is_write_failure(elsewhere, tmp_path / "d")


@pytest.mark.parametrize("leftovers", [
    [".physml-run.lock", ".checkpoint.pt.tmp-12345.pt", "frames.f64"],
    [".physml-run.lock", "checkpoint_states/000000.npy", ".checkpoint.npz.tmp-12345.npz"],
])
def test_a_run_killed_before_its_first_checkpoint_is_named_as_one_to_remove(
        tmp_path, cli_in_process, leftovers):
    """A run killed by SIGKILL (or the system out of memory) before its first checkpoint
    leaves its lock and its saves cut short: --resume said only 'not a run folder'."""
    folder = tmp_path / "burgers-20260101-000000"
    for name in leftovers:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"12345")
    refused = cli_in_process("run", "burgers", "--resume", str(folder))
    assert refused.returncode == 2
    assert refused.stderr == (
        f"physml: error: --resume: {str(folder)!r} is a run killed before its first "
        "checkpoint (it has no config.yaml, only what the run had begun); nothing can be "
        f"resumed: remove {str(folder)!r} and start a new run\n")
    (folder / "figures").mkdir()  # a save cut short below it: the folder of runs is no run
    (folder / "figures" / ".u.png.tmp-12345.png").write_bytes(b"1")
    refused = cli_in_process("run", "burgers", "--resume", str(tmp_path))
    assert refused.returncode == 2 and "is not a run folder (no config.yaml)" in refused.stderr
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    (other / ".notes.txt.tmp-12345.txt").write_text("mine")  # a stray temporary: not a run
    refused = cli_in_process("run", "burgers", "--resume", str(other))
    assert refused.returncode == 2 and "is not a run folder (no config.yaml)" in refused.stderr


def test_predict_reads_a_csv_that_opens_with_a_byte_order_mark(unfinished_run, cli_in_process):
    """Excel's "CSV UTF-8" starts with a byte-order mark: the header's x was read as
    '\\ufeffx' and refused as missing."""
    folder = unfinished_run.parent
    (folder / "bom.csv").write_bytes(b"\xef\xbb\xbfx,t\r\n0.1,0.2\r\n")
    result = cli_in_process("predict", str(unfinished_run), "--points", str(folder / "bom.csv"),
                            "--out", str(folder / "u.csv"))
    assert result.returncode == 0, result.stderr
    assert np.loadtxt(folder / "u.csv", delimiter=",", skiprows=1)[:2].tolist() == [0.1, 0.2]


@pytest.mark.parametrize("points, message", [
    ("complex.npy", "holds complex128 values; need an array of real numbers (integers or "
                    "floats)"),
    ("twice.csv", "names the column 'x' twice; name each once"),
    ("fifo.csv", "is not a regular file (standard input, a pipe and a device are not read); "
                 "give a .npy or .csv file"),
    ("-", "is not a regular file (standard input, a pipe and a device are not read)"),
])
def test_points_predict_would_misread_are_refused_by_what_they_are(
        unfinished_run, cli_in_process, points, message):
    """A complex array lost its imaginary part with a NumPy warning, a column named twice
    was read from its first place, and a pipe or '-' was said not to exist."""
    import os

    folder = unfinished_run.parent
    np.save(folder / "complex.npy", np.full((2, 2), 0.1 + 0.5j))
    (folder / "twice.csv").write_text("x,x,t\n0.1,0.3,0.2\n")
    if points == "fifo.csv":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes on this system")
        os.mkfifo(folder / points)
    path = points if points == "-" else str(folder / points)
    result = cli_in_process("predict", str(unfinished_run), "--points", path, "--out",
                            str(folder / "u.csv"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"physml: error: --points: {path!r} {message}")
    assert result.stderr.count("\n") == 1 and not (folder / "u.csv").exists()


def test_non_finite_predictions_are_stated_and_no_numpy_warning_shows(tmp_path, cli_in_process):
    """Points of 1e300 (finite) on the disk: NumPy's 'overflow encountered in multiply' from
    the domain test leaked, and the file held inf without a word."""
    import warnings

    import torch

    from physml.cases.equation import build_trainer
    from physml.cases.registry import load_case

    case = load_case("heat_disk", ["model.width=8", "model.depth=2", "training.adam.steps=5"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(case.to_yaml())
    torch.save(build_trainer(case).state_dict(), run / "checkpoint.pt")
    np.save(tmp_path / "p.npy", [[0.1, 0.2, 0.3], [1e300, 1e300, 0.5], [0.9, 0.9, 0.5]])
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = cli_in_process("predict", str(run), "--points", str(tmp_path / "p.npy"),
                                "--out", str(tmp_path / "u.npy"))
    assert not shown, [str(w.message) for w in shown]
    assert result.returncode == 0, result.stderr  # the network's values, written as computed
    u = np.load(tmp_path / "u.npy")[:, 0]
    assert np.isfinite(u).tolist() == [True, False, True]
    assert "physml predict: warning: 1 of 3 predictions (rows [1]) are NaN or infinite: the " \
        "network's arithmetic overflows at those points; they are written as they are" \
        in result.stderr
    assert "1 of 3 points lie outside the box" in result.stderr
    assert "1 of 3 points lie inside that box but outside the domain" in result.stderr


@pytest.mark.parametrize("command, out", [(["export", "{run}"], ".pt"),
                                          (["export", "{run}"], ".onnx"),
                                          (["predict", "{run}", "--points", "{p}"], ".csv")])
def test_an_out_named_by_a_suffix_alone_is_refused_as_such(unfinished_run, cli_in_process,
                                                            command, out):
    """--out .pt was refused as not ending in .pt: its name is '.pt', a name with no suffix."""
    folder = unfinished_run.parent
    args = [a.format(run=unfinished_run, p=folder / "p.csv") for a in command]
    result = cli_in_process(*args, "--out", str(folder / out))
    assert result.returncode == 2
    assert result.stderr == (f"physml: error: --out: {str(folder / out)!r} has no name before "
                             f"{out}; give one, e.g. {str(folder / ('u' + out))!r}\n")


@pytest.mark.parametrize("command, unit", [
    (["datasets", "generate", "burgers1d", "--out", "{folder}/d"], "sample"),
    (["solve", "heat1d", "--out", "{folder}/u.h5"], "step"),
])
def test_log_every_is_refused_in_the_unit_its_command_counts(tmp_path, cli_in_process,
                                                             command, unit):
    result = cli_in_process(*[a.format(folder=tmp_path) for a in command], "--log-every", "-3")
    assert result.returncode == 2
    assert f"--log-every=-3.0 must be >= 0 seconds (0: every {unit})\n" in result.stderr


def test_a_lagrangian_convection_run_of_0_2_1_is_refused_not_read_as_another_network(
        tmp_path, cli_in_process):
    """0.2.2 reads the network's N_x as x = xi + t(beta + N_x), where 0.2.1 wrote it for
    x = xi + max(|beta|, 1) t N_x: an old run resumed, predicted or exported at positions off
    by up to 1 without a word. A checkpoint without the version that wrote it is refused."""
    import torch

    tiny = ["training.adam.steps=4", "training.lbfgs.steps=0", "model.width=8", "model.depth=2",
            "training.collocation.points=64", "evaluation.nx=8", "evaluation.nt=3",
            "evaluation.every=2", "output.figures=false", f"output.folder={tmp_path}"]
    assert cli_in_process("run", "convection_lpinn", *tiny, "--quiet").returncode == 0
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    checkpoint = folder / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert state.pop("physml_version") == __version__
    torch.save(state, checkpoint)  # as 0.2.1 wrote it
    for command in (["run", "convection_lpinn", *tiny, "--resume", str(folder)],
                    ["export", str(folder), "--out", str(tmp_path / "u.pt")]):
        refused = cli_in_process(*command)
        assert refused.returncode == 2 and "written by physml 0.2.1 or before" in refused.stderr


def test_validate_refuses_a_device_this_machine_lacks(capsys):
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"
    assert main(["validate", "burgers", f"device={missing}"]) == 2
    assert f"device={missing!r} is not available; available: " in capsys.readouterr().err


def test_an_error_in_a_bundled_case_named_by_name_names_the_case_not_its_path(capsys):
    assert main(["validate", "burgers", "training.adam.step=3"]) == 2
    err = capsys.readouterr().err
    assert "bundled case 'burgers': unknown key 'training.adam.step'" in err
    assert "case_files" not in err


@pytest.mark.parametrize("command", ["run", "validate"])
def test_run_and_validate_help_name_variants(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "variant=NAME" in " ".join(capsys.readouterr().out.split())


def test_a_modified_mlp_run_of_0_2_2_is_refused_not_read_as_another_network(
        tmp_path, cli_in_process):
    """0.2.3's modified MLP takes its first layer as H_1, where 0.2.2's took it as the first
    gate: an old run loaded without a word and predicted other values (0.824 -> 0.851)."""
    import torch

    tiny = ["training.adam.steps=2", "training.lbfgs.steps=0", "model.kind=modified",
            "model.width=8", "model.depth=2", "training.collocation.points=64",
            "evaluation.nx=8", "evaluation.nt=3", "evaluation.every=2", "output.figures=false",
            f"output.folder={tmp_path}"]
    assert cli_in_process("run", "burgers", *tiny, "--quiet").returncode == 0
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    checkpoint = folder / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["physml_version"] = "0.2.2"
    torch.save(state, checkpoint)
    for command in (["run", "burgers", *tiny, "--resume", str(folder)],
                    ["export", str(folder), "--out", str(tmp_path / "u.pt")]):
        refused = cli_in_process(*command)
        assert refused.returncode == 2 and "holds a modified MLP written by physml 0.2.2" in \
            refused.stderr


def test_cases_lists_each_case_s_variants(cli_in_process):
    import yaml

    from physml.cases.registry import bundled_cases

    listing = cli_in_process("cases")
    assert listing.returncode == 0
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if line.strip()}
    offered = 0
    for name, path in bundled_cases().items():
        variants = yaml.safe_load(path.read_text(encoding="utf-8")).get("variants") or {}
        offered += len(variants)
        if variants:
            assert lines[name].endswith(f"[variants: {', '.join(variants)}]")
        else:
            assert "[variants" not in lines[name]
    assert offered > 0


TINY_TENG_HEAT = ["domain.y=null", "conditions.initial.kind=sine", "model.width=8",
                  "model.depth=2", "training.points=64", "training.subsample=64",
                  "training.iterations=2", "training.dt=0.05", "training.initial_points=128",
                  "training.checkpoint_every=2", "domain.t=[0, 0.2]", "evaluation.nx=32",
                  "evaluation.every=2", "evaluation.times=[0.2]", "output.figures=false"]


@pytest.mark.parametrize("case, overrides, stop, kept", [
    ("burgers", TINY_BURGERS, 7, "step 5 of 20"),
    pytest.param("teng_heat", TINY_TENG_HEAT, 3, "step 2 of 4", marks=pytest.mark.slow),
    ("thermomigration_fe_c", ["grid.shape=[64]", "time.saves=4", "output.figures=false"], 1,
     "snapshot 1 of 3, t = 300"),
])
def test_a_resumed_run_says_where_it_goes_on_from(tmp_path, cli_in_process, case, overrides,
                                                  stop, kept):
    """A resume looked like a new start but for its counter; one of a finished run said
    nothing of it either."""
    import shutil

    from physml.cases.registry import load_case, run_case

    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()

    def interrupt_copy(entry):  # the folder as a run stopped at this record leaves it
        if entry.get("step") == stop and not part.exists():
            shutil.copytree(whole, part)

    run_case(load_case(case, overrides), whole, on_step=interrupt_copy)
    for folder, said in [(part, f"resuming {part} from its checkpoint at {kept}\n"),
                         (whole, f"{whole} is complete (")]:
        resumed = cli_in_process("run", case, *overrides, "--resume", str(folder),
                                 "--log-every", "inf")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stderr.splitlines(keepends=True)[1].startswith(said)
    total = kept.split(" of ")[1].split(",")[0]
    assert f" {total} of {total}" in resumed.stderr


@pytest.mark.parametrize("checkpoint, said", [
    ({"t": 0.6}, "resuming {folder} from its checkpoint at step 2 of 4"),
    ({"t": 0.7}, "{folder} is complete (step 4 of 4): its results are computed and written "
                 "again"),
    ({"t": 0.5}, "resuming {folder} from its checkpoint at step 0 of 4 (no step taken yet)"),
], ids=["part", "whole", "none"])
def test_a_resumed_teng_run_counts_its_steps_from_the_start_of_its_domain(tmp_path, checkpoint,
                                                                          said):
    """A TENG checkpoint records the time reached, counted in steps from ``domain.t[0]``."""
    import torch

    from physml.cases.registry import case_kind, load_case
    from physml.cli_cases import _resumed_from

    case = load_case("teng_heat", [*TINY_TENG_HEAT, "domain.t=[0.5, 0.7]",
                                   "evaluation.times=[0.7]"])
    kind = case_kind(case)
    torch.save(checkpoint, tmp_path / kind.checkpoint)
    assert _resumed_from(tmp_path, kind, case) == said.format(folder=tmp_path)


def test_solve_help_states_each_pde_s_start_domain_and_defaults_and_an_example(capsys):
    from physml.cli_parser import SOLVE_EXAMPLE
    from physml.datasets.problems import PROBLEMS

    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "not given (default 0.5)" in " ".join(text.split())  # --cfl
    assert "saved states including u0 (default 101)" in text
    for name, prob in PROBLEMS.items():
        equation, where, defaults = lines[lines.index(f"  {name}: {prob.equation}"):][:3]
        assert where.endswith(f"; u0 = {prob.initial_text}")
        assert f"--t-end {prob.t_end:g}" in defaults
    burgers = lines[lines.index("  burgers1d: u_t + (u^2/2)_x = nu u_xx") + 1:][:2]
    assert burgers == ["      on [-1, 1], Dirichlet u = 0; u0 = -sin(pi*x)",
                       "      defaults: --nu 0.003183098861837907, --t-end 1"]
    assert lines[-2:] == ["example:", f"  {SOLVE_EXAMPLE}"]


def test_each_stated_initial_condition_is_the_problem_s():
    from physml.datasets.problems import PROBLEMS
    from physml.expressions import compile_expression, parse
    from physml.solvers import Grid

    for name, prob in PROBLEMS.items():
        names = ("x", "y")[:prob.ndim]
        grid = Grid((16,) * prob.ndim, prob.lower, prob.upper)
        mesh = np.broadcast_arrays(*grid.mesh())
        stated = compile_expression(parse(prob.initial_text, names, name))
        u0 = np.broadcast_to(stated(dict(zip(names, mesh))), mesh[0].shape)  # "0.1": a number
        np.testing.assert_allclose(u0, prob.initial(*grid.mesh()), rtol=1e-14, atol=1e-15,
                                   err_msg=name)


def test_solve_records_the_initial_condition(tmp_path):
    out = tmp_path / "u.h5"
    assert main(["solve", "burgers1d", "--nx", "16", "--t-end", "0.01", "--n-saves", "2",
                 "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.attrs["initial_condition"] == "-sin(pi*x)"
        np.testing.assert_allclose(ds["u"][0], -np.sin(np.pi * ds["x"]), atol=1e-15)
