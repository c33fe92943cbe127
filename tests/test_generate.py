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
from physml.data import FieldDataset
from physml.datasets.generate import generate
from physml.datasets.problems import PROBLEMS
from physml.datasets.spec import SPEC_FOLDER, load_spec
from physml.solvers import Grid

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



@pytest.mark.parametrize("pde", ["burgers1d", "burgers1d_pdebench", "burgers2d"])
def test_a_burgers_field_is_stored_as_a_velocity(pde):
    """u_t + u u_x = nu u_xx with x in m, t in s and nu in m2 s-1 holds for u in m s-1 (the
    field was stored as dimensionless, beside those coordinates and nu)."""
    assert PROBLEMS[pde].quantity == ("velocity u", "m s-1")
    assert PROBLEMS["heat1d"].quantity[1] == "1"

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


def test_a_generation_removes_only_the_temporary_shards_of_writers_that_stopped(tmp_path):
    """A generation that started while another wrote into the same folder removed that one's
    temporary shard, whose rename then failed; a stopped run's temporary shard is removed."""
    from physml.datasets.output_folder import prepare_folder

    spec, out = load_spec(write_spec(tmp_path)), tmp_path / "d"
    prepare_folder(spec, out, overwrite=False)
    stopped = subprocess.Popen([sys.executable, "-c", ""])
    stopped.wait()
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        kept = [out / "train" / f".shard-00000.h5.tmp-{pid}.h5"
                for pid in (os.getpid(), running.pid)]
        removed = out / "valid" / f".shard-00001.h5.tmp-{stopped.pid}.h5"
        for tmp in (*kept, removed):
            tmp.write_bytes(b"being written")
        prepare_folder(spec, out, overwrite=False)  # the second generation starts
    finally:
        running.communicate(b"")
    assert all(tmp.exists() for tmp in kept) and not removed.exists()


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


def test_a_partial_dataset_of_an_older_physml_is_not_resumed(tmp_path):
    """Its spec.yaml read through today's model equals the spec, but its shards were solved by
    the older step plan (implicit diffusion without Rannacher's start and the tolerance): a
    resume mixed both."""
    spec = load_spec(write_spec(tmp_path, nx=32, t_end=0.1))
    out = tmp_path / "out"
    generate(spec, out, workers=0)
    (out / "dataset.json").unlink()  # a generation stopped before its end
    older = (out / "spec.yaml").read_text().replace("  tolerance: 0.001\n", "")
    assert older != (out / "spec.yaml").read_text()
    (out / "spec.yaml").write_text(older)
    with pytest.raises(ValueError, match=r"holds a partial dataset written by another physml "
                                         r"version \(its spec.yaml has no solver.tolerance\)"):
        generate(spec, out, workers=0)


def test_a_partial_dataset_resumes_only_on_its_kind_of_device(tmp_path):
    import h5py

    spec = load_spec(write_spec(tmp_path))
    out = tmp_path / "d"
    generate(spec, out, workers=0)
    shards = sorted(out.rglob("shard-*.h5"))
    (out / "dataset.json").unlink()
    shards[-1].unlink()
    with h5py.File(shards[0], "r+") as f:  # as a GPU would have written it
        assert f.attrs["device"] == "cpu"
        f.attrs["device"] = "cuda:0"
    with pytest.raises(ValueError, match="generated on 'cuda:0'; resume it with --device cuda:0"):
        generate(spec, out, workers=0)
    assert not shards[-1].exists()


def test_complete_dataset_is_not_overwritten(tmp_path, capsys):
    spec = write_spec(tmp_path)
    args = ["datasets", "generate", str(spec), "--out", str(tmp_path / "d"), "--workers", "0",
            "--device", "cpu", "--quiet"]
    assert main(args) == 0
    before = (tmp_path / "d" / "train" / "shard-00000.h5").stat().st_mtime_ns
    assert main([*args, "--samples", "4"]) == 2
    assert ("holds a complete dataset of another spec (spec.yaml has 'samples: 10', the spec "
            "gives 'samples: 4'); pass --overwrite") in capsys.readouterr().err
    assert (tmp_path / "d" / "train" / "shard-00000.h5").stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0


def test_the_same_command_on_a_complete_dataset_does_nothing_and_succeeds(tmp_path, capsys):
    """A rerun to resume found the dataset complete and exited 2 (pass --overwrite), failing
    a workflow step that had nothing to do."""
    spec = write_spec(tmp_path)
    out = tmp_path / "d"
    args = ["datasets", "generate", str(spec), "--out", str(out), "--workers", "0", "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    files = sorted(out.rglob("*"))
    before = {f: f.stat().st_mtime_ns for f in files}
    assert main(args) == 0
    assert capsys.readouterr().out.startswith(f"{out} holds this dataset, complete: 20 samples "
                                              "(train 16, valid 2, test 2); nothing to do")
    assert sorted(out.rglob("*")) == files
    assert {f: f.stat().st_mtime_ns for f in files} == before
    calls = []
    manifest = generate(load_spec(spec), out, workers=0, progress=lambda *a: calls.append(a))
    assert calls == [] and manifest["split_samples"] == {"train": 16, "valid": 2, "test": 2}


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_the_same_command_writes_a_shard_a_complete_dataset_lost_again(tmp_path, capsys, damage):
    """A manifest and the same spec are not a complete dataset when a shard is gone or cut
    short: the rerun said "complete, nothing to do" and the dataset did not open."""
    spec = write_spec(tmp_path)
    out = tmp_path / "d"
    args = ["datasets", "generate", str(spec), "--out", str(out), "--workers", "0", "--quiet"]
    assert main(args) == 0
    shard = sorted((out / "train").glob("shard-*.h5"))[1]
    whole = shard.read_bytes()
    if damage == "deleted":
        shard.unlink()
    else:
        shard.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("wrote 20 samples")
    assert shard.read_bytes() == whole
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out


def test_a_generation_that_cannot_start_shows_no_progress_bar(tmp_path, monkeypatch, capsys):
    from physml.datasets import generate as generation

    monkeypatch.setattr(generation, "SCHEDULER_TIMEOUT_S", 1)
    assert main(["datasets", "generate", str(write_spec(tmp_path)), "--out",
                 str(tmp_path / "d"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "no Dask scheduler answered" in err and "/None" not in err  # no "0/None samples"


def test_overwrite_deletes_nothing_until_the_run_can_start(tmp_path, monkeypatch):
    from physml.datasets import generate as generation

    spec = load_spec(write_spec(tmp_path))
    generate(spec, tmp_path / "d", workers=0)
    before = sorted(p.name for p in (tmp_path / "d").rglob("*"))
    with pytest.raises(ValueError, match="batch_size=0 must be a whole number"):
        generate(spec, tmp_path / "d", workers=0, overwrite=True, batch_size=0)
    monkeypatch.setattr(generation, "SCHEDULER_TIMEOUT_S", 1)
    with pytest.raises(ValueError, match="no Dask scheduler answered"):
        generate(spec, tmp_path / "d", overwrite=True, scheduler="tcp://127.0.0.1:1")
    assert sorted(p.name for p in (tmp_path / "d").rglob("*")) == before
    assert (tmp_path / "d" / "dataset.json").exists()


def test_overwrite_refuses_a_folder_with_files_a_dataset_did_not_write(tmp_path, capsys):
    project = tmp_path / "project"
    (project / "train").mkdir(parents=True)
    (project / "train" / "img001.txt").write_text("mine")
    (project / "spec.yaml").write_text("lr: 0.1\n")
    args = ["datasets", "generate", str(write_spec(tmp_path)), "--out", str(project),
            "--workers", "0", "--quiet"]
    for extra in ([], ["--overwrite"]):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert "holds files that are not part of a physml dataset" in err
        assert "img001.txt" in err and "spec.yaml" in err
    assert (project / "train" / "img001.txt").read_text() == "mine"
    assert (project / "spec.yaml").read_text() == "lr: 0.1\n"


@pytest.mark.parametrize("samples, fractions, sizes", [
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (5, (0.8, 0.1, 0.1), (4, 1, 0)),  # the sample left goes to the larger remainder (a tie:
    (64, (0.8, 0.1, 0.1), (51, 7, 6)),  # the earlier split)
    (3, (0.0, 0.5, 0.5), (0, 2, 1)),  # never negative, a fraction of 0 gets none
    (1, (0.0, 0.5, 0.5), (0, 1, 0)),
    (30, (0.7, 0.2, 0.1), (21, 6, 3)),  # 0.7 * 30 is 20.999...: still 21
    (2, (0.7, 0.2, 0.1), (2, 0, 0)),  # remainders 0.4, 0.4 in exact arithmetic: a tie, train
    (8, (0.7, 0.2, 0.1), (6, 1, 1)),  # (2 * 0.7 - 1 is 0.3999..., which gave valid the sample)
    (14, (0.1, 0.3, 0.6), (2, 4, 8)),
])
def test_split_sizes_are_the_largest_remainders(tmp_path, samples, fractions, sizes):
    train, valid, test = fractions
    spec = load_spec(write_spec(tmp_path, **{
        "samples: 10": f"samples: {samples}\nsplits: {{train: {train}, valid: {valid}, "
                       f"test: {test}}}"}))
    assert tuple(spec.split_sizes().values()) == sizes


def test_every_sample_has_its_own_initial_condition_from_its_seed(tmp_path):
    """Sample j's u0 is the spec's initial condition drawn from default_rng([spec.seed, j]):
    a spec differing only in its seed gives other data."""
    from physml.datasets.grid_samples import initial_state
    from physml.datasets.initial_conditions import INITIAL_CONDITIONS

    spec = load_spec(write_spec(tmp_path))
    generate(spec, tmp_path / "d", workers=0)
    train = io.open_dataset(tmp_path / "d", "train").load()
    grid = Grid((32,), (0.0,), (1.0,))
    u0 = train["u"].isel(time=0).values
    assert len({row.tobytes() for row in u0}) == len(u0)
    (tmp_path / "other").mkdir()
    other = load_spec(write_spec(tmp_path / "other", **{"seed: 7": "seed: 8"}))
    for k, seed in enumerate(train["sample"].values):
        drawn = INITIAL_CONDITIONS["pdebench_sines"](grid, np.random.default_rng([7, int(seed)]))
        np.testing.assert_allclose(u0[k], drawn, rtol=1e-6)
        assert not np.allclose(initial_state(other, grid, int(seed)), u0[k])


def test_automatic_implicit_diffusion_meets_its_tolerance_against_a_fine_reference(tmp_path):
    """scheme auto sends diffusion-dominated samples to IMEX, whose step is not bounded by
    stability: Crank-Nicolson at the save interval barely damped the stiff modes (errors of
    0.2-0.5 here). Against explicit RK steps 1000 times shorter, the error stays within a small
    factor of solver.tolerance x max|u0|, a batch is bitwise its samples alone, and a tolerance
    out of reach is one message naming solver.tolerance."""
    from physml.datasets.grid_samples import (
        choose_scheme,
        initial_state,
        solve_batch,
        solve_sample,
        spec_solver,
        step_plan,
    )

    spec = load_spec(write_spec(tmp_path, nx=64, t_end=0.1, **{
        "pde: advection1d": "pde: diffusion_reaction1d", "beta: [0.5, 1.0]": "nu: 5, rho: 10",
        "n_saves: 5": "n_saves: 11", "seed: 7": "seed: 7\nsolver: {scheme: auto}",
        "pdebench_sines}": "pdebench_sines, options: {normalize: true}}"}))
    parameters = {"nu": 5.0, "rho": 10.0}
    imex = spec_solver(spec, parameters, "cpu", "imex")
    u0 = np.stack([initial_state(spec, imex.grid, seed) for seed in (0, 1)])
    batch = solve_batch(spec, imex, u0)
    explicit = spec_solver(spec, parameters, "cpu").with_dt(0.01 / 1000)
    for u, alone in zip(u0, batch):
        assert choose_scheme(spec, explicit, u) == "imex"
        np.testing.assert_array_equal(alone, solve_sample(spec, imex, u))
        error = np.abs(alone - explicit.rollout(u, 10000, 1000)).max()
        assert error < 2 * spec.solver.tolerance * np.abs(u).max()
    unreachable = spec.model_copy(update={"solver": spec.solver.model_copy(
        update={"tolerance": 1e-9})})
    with pytest.raises(ValueError, match="solver.tolerance=1e-09 is not met: "):
        step_plan(unreachable, imex, u0[0])


def test_automatic_schemes_fall_back_to_explicit_steps_where_imex_would_need_shorter_ones(
        tmp_path):
    """Under scheme auto, one sample whose IMEX plan could not meet solver.tolerance with
    steps longer than an explicit scheme's stopped the whole generation, again on every resume,
    without naming the sample; an imex the spec names still stops, naming the seed."""
    from physml.datasets.grid_samples import planned_scheme, spec_solver, step_plan

    replace = {"pde: advection1d": "pde: diffusion_reaction1d",
               "beta: [0.5, 1.0]": "nu: 5, rho: 10", "samples: 10": "samples: 2",
               "pdebench_sines}": "pdebench_sines, options: {normalize: true}}"}
    spec = load_spec(write_spec(tmp_path, nx=32, t_end=0.1, **replace,
                                **{"seed: 7": "seed: 7\nsolver: {scheme: auto, tolerance: 1e-9}"}))
    parameters = {"nu": 5.0, "rho": 10.0}
    solvers = {None: spec_solver(spec, parameters, "cpu")}
    u0 = np.ones(32) + 0.1 * np.sin(2 * np.pi * (np.arange(32) + 0.5) / 32)
    scheme, plan = planned_scheme(spec, solvers, u0, parameters, "cpu")
    assert "imex" in solvers and scheme is None  # IMEX was chosen first, then given up
    assert plan == step_plan(spec, solvers[None], u0)
    generate(spec, tmp_path / "auto", workers=0)
    schemes = io.open_dataset(tmp_path / "auto", "train")["scheme"].values
    assert set(schemes) == {solvers[None].scheme}
    named = load_spec(write_spec(tmp_path, nx=32, t_end=0.1, **replace,
                                 **{"seed: 7": "seed: 7\nsolver: {scheme: imex, tolerance: 1e-9}"}))
    with pytest.raises(ValueError, match=r"shard-00000.h5: sample with seed 0: solver.tolerance"):
        generate(named, tmp_path / "imex", workers=0)


def test_an_incomplete_or_damaged_dataset_is_not_read_as_complete(tmp_path):
    spec = load_spec(write_spec(tmp_path, **{"samples: 10": "samples: 5"}))
    folder = tmp_path / "d"
    generate(spec, folder, workers=0)
    with pytest.raises(ValueError, match="split='training'; allowed: train, valid, test"):
        io.open_dataset(folder, "training")
    with pytest.raises(ValueError, match="the test split of .* holds no samples"):
        io.open_dataset(folder, "test")  # 5 samples at 0.8 / 0.1 / 0.1: 4 / 1 / 0
    (folder / "train" / "shard-00001.h5").unlink()
    with pytest.raises(ValueError, match=r"1 shard\(s\) of the train split .* are missing"):
        FieldDataset(folder, "train")
    (folder / "dataset.json").unlink()
    for read in (io.open_dataset, FieldDataset):
        with pytest.raises(ValueError, match="holds an incomplete dataset .* generate` again"):
            read(folder, "train")
    assert io.open_dataset(folder, "train", allow_partial=True).sizes["sample"] == 7  # 8 - 1


def test_a_systems_dataset_is_not_opened_as_fields_and_the_cli_names_its_reader(tmp_path,
                                                                               capsys):
    spec = tmp_path / "systems.yaml"
    spec.write_text("systems: poisson_grid\nsize: 4\nsamples: 4\nshard_size: 2\n")
    assert main(["datasets", "generate", str(spec), "--out", str(tmp_path / "s"),
                 "--workers", "0"]) == 0
    assert "read_systems(" in capsys.readouterr().out  # the result line, on stdout
    with pytest.raises(ValueError, match="holds linear systems; read them with"):
        io.open_dataset(tmp_path / "s", "train")


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"seed: 7": "seed: 7\nsolver: {scheme: rk5}"},
         "solver.scheme: unknown scheme 'rk5'; allowed:"),
        ({"seed: 7": "seed: 7\nsolver: {tolerance: 0}"},
         "solver.tolerance: Input should be greater than 0"),
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
        # sizes that cannot fit in memory, refused before spec.yaml or a split folder
        ({"grid: [32]": "grid: [100000000000]"}, "grid=[100000000000], n_saves=5, "
         "shard_size=3: a shard of 3 sample(s) x 5 state(s) x 100000000000 values needs about "),
        ({"n_saves: 5": "n_saves: 1000000000"}, "grid=[32], n_saves=1000000000, shard_size=3: "
         "a shard of 3 sample(s) x 1000000000 state(s) x 32 values needs about "),
        # YAML's true is no count
        ({"samples: 10": "samples: true"}, "samples: True is a boolean; a number is expected"),
        ({"grid: [32]": "grid: [true]"}, "grid: [True] is a boolean; a number is expected"),
        ({"shard_size: 3": "shard_size: true"},
         "shard_size: True is a boolean; a number is expected"),
        # a misspelt required key is named beside the missing one
        ({"n_saves: 5": "nsaves: 5"}, "n_saves: Field required (unknown key 'nsaves' given; "
         "allowed: pde, grid, parameters, t_end, n_saves,"),
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
    assert "spec parameters (nu=-1) on grid=[32]: nu=-1.0 must be" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_refused_scaled_parameter_says_how_the_solver_scales_it(tmp_path, capsys):
    """PDEBench's Burgers takes Nu and its solver nu = Nu/pi: the refusal quoted a value the
    spec never held."""
    spec = write_spec(tmp_path).read_text().replace("advection1d", "burgers1d_pdebench")
    (tmp_path / "spec.yaml").write_text(spec.replace("{beta: [0.5, 1.0]}", "{nu: [-1.0]}"))
    assert main(["datasets", "generate", str(tmp_path / "spec.yaml"), "--out",
                 str(tmp_path / "d"), "--workers", "0", "--quiet"]) == 2
    assert "; the solver's nu is the spec's times 0.31831" in capsys.readouterr().err


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
    assert "device='gpu' is not a device name; allowed: cpu, cuda, cuda:N" in \
        capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="a CUDA driver is here")
def test_cuda_without_a_driver_is_one_message_and_cpu_start_up_is_silent(tmp_path):
    spec = str(write_spec(tmp_path))
    for command in (["datasets", "generate", spec, "--out", str(tmp_path / "d"), "--quiet"],
                    ["solve", "heat1d", "--out", str(tmp_path / "u.h5")]):
        cuda = subprocess.run([sys.executable, "-m", "physml.cli", *command, "--device", "cuda"],
                              capture_output=True, text=True)
        assert cuda.returncode == 2  # physml's refusal alone: no Warp driver lines before it
        assert cuda.stderr.startswith("physml: error: device='cuda' is not available; "
                                      "available: cpu")
        assert cuda.stderr.count("\n") == 1  # Warp's reason, if any, in the same line
    cpu = subprocess.run([sys.executable, "-m", "physml.cli", "datasets", "generate", spec,
                          "--out", str(tmp_path / "c"), "--device", "cpu", "--workers", "0",
                          "--samples", "1", "--quiet"], capture_output=True, text=True)
    assert cpu.returncode == 0 and cpu.stderr == ""  # --quiet: the result line alone
    assert cpu.stdout.startswith("wrote ") and cpu.stdout.count("\n") == 1


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


def test_a_failed_warp_start_up_keeps_what_it_wrote(monkeypatch, capfd):
    import os

    import warp as wp

    from physml.solvers import runtime

    def failing_init():
        os.write(2, b"driver says why\n")
        raise RuntimeError("no start")

    monkeypatch.setattr(wp, "init", failing_init)
    with pytest.raises(RuntimeError, match="no start"):
        runtime.quiet_warp("cuda", verbose=False)
    assert "driver says why" in capfd.readouterr().err
    os.write(2, b"after\n")  # file descriptor 2 is the console again
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("workers, engine", [(None, "in_process"), (2, "dask")])
def test_cuda_generates_in_the_calling_process_unless_workers_are_asked(
        tmp_path, monkeypatch, workers, engine):
    from physml.datasets import generate as generation

    used = []
    monkeypatch.setattr(generation, "warp_device", lambda device: "cuda:0")
    monkeypatch.setattr(generation, "_family", lambda spec: (
        lambda spec, device: None, lambda spec, device: None, None))
    monkeypatch.setattr(generation, "dask_available", lambda: True)
    monkeypatch.setattr(generation, "run_in_process", lambda *a: used.append("in_process"))
    monkeypatch.setattr(generation, "run_on_dask", lambda *a: used.append("dask"))
    with pytest.raises(ValueError, match="shard\\(s\\) were not written"):  # nothing solved
        generate(load_spec(write_spec(tmp_path)), tmp_path / "d", device="cuda",
                 workers=workers)
    assert used == [engine]


def test_numbers_written_without_a_point_are_numbers(tmp_path):
    """YAML 1.1 reads 5e-1 as text; a spec (and a case file) read it as the number."""
    spec = load_spec(write_spec(tmp_path, **{"beta: [0.5, 1.0]": "beta: [5e-1, 1E0]",
                                             "t_end: 0.2": "t_end: 2e-1"}))
    assert spec.parameters["beta"] == [0.5, 1.0] and spec.t_end == 0.2


def test_values_beyond_float32_are_refused_not_stored_as_inf(tmp_path):
    spec = load_spec(write_spec(tmp_path, **{
        "initial_condition: {{kind: pdebench_sines}}".format(): "initial_condition: {kind: "
        "uniform_constant, options: {low: 1.0e39, high: 2.0e39}}"}))
    with pytest.raises(ValueError, match=r"the solution reaches 1\.\d+e\+39, beyond the range "
                                         r"of storage_dtype float32 \(3\.4e\+38\); set "
                                         r"storage_dtype: float64"):
        generate(spec, tmp_path / "d", workers=0)
    generate(spec.model_copy(update={"storage_dtype": "float64"}), tmp_path / "d64", workers=0)


def test_values_beyond_float32_are_refused_next_to_a_nan():
    from physml.datasets.store import in_storage_dtype

    with pytest.raises(ValueError, match=r"shard 3: the solution reaches 2e\+39, beyond"):
        in_storage_dtype(np.array([np.nan, -2e39, 1e39, np.inf]), "float32", "shard 3")
    stored = in_storage_dtype(np.array([np.nan, 1.0, np.inf]), "float32", "shard 3")
    assert stored.dtype == np.float32 and np.isnan(stored[0]) and stored[1:].tolist() == [
        1.0, np.inf]


def test_closing_a_finished_local_cluster_shows_no_nanny_warning():
    import logging

    from physml.datasets.shard_engines import _close

    shown, closed = [], []
    nanny = logging.getLogger("distributed.nanny")
    handler = logging.Handler()
    handler.emit = shown.append
    nanny.addHandler(handler)

    class Client:
        def close(self):
            closed.append("client")

    class Cluster:  # its workers outlast Dask's wait, as on a loaded machine
        def close(self):
            closed.append("cluster")
            nanny.warning("Worker process still alive after 4.0 seconds, killing")

    level = nanny.level
    try:
        _close(Client(), Cluster())
    finally:
        nanny.removeHandler(handler)
    assert closed == ["client", "cluster"] and shown == []
    assert nanny.level == level


@pytest.mark.slow  # a Dask cluster started and closed
def test_what_the_workers_log_as_a_finished_local_cluster_closes_is_not_shown(capfd):
    """A heartbeat cut off by the close printed a CommClosedError traceback after a run that
    wrote every shard; here a worker logs an error as it is closed, in the same way."""
    from physml.datasets.shard_engines import run_on_dask

    def writer(task):  # runs in the worker
        import logging
        import threading

        from distributed import get_worker
        from distributed.core import Status

        worker = get_worker()

        def log_at_close():
            while worker.status not in (Status.closing, Status.closed):
                time.sleep(0.001)
            logging.getLogger("distributed.worker").error("a heartbeat cut off by the close")

        threading.Thread(target=log_at_close, daemon=True).start()

    done = []
    run_on_dask(["shard"], done.append, workers=1, writer=writer)
    assert done == ["shard"]
    assert "cut off by the close" not in capfd.readouterr().err


def test_a_sample_that_blows_up_exits_1_naming_its_seed_and_the_keys_that_change_it(
        tmp_path, capsys):
    """It exited 2, the status of a bad spec, advised "reduce dt", no key of a spec, and said a
    last finite state was kept where nothing is. u0 < 0 makes the logistic reaction blow up in
    finite time (at ln(1 + 1/|min u0|) / rho without diffusion): with rho = 0.8 by t = 1 from
    seed 2 (min u0 -1.55), not from seeds 0 (min -0.87, |u| 345 at t = 1) and 1 (min 0.40)."""
    replace = {"pde: advection1d": "pde: diffusion_reaction1d",
               "beta: [0.5, 1.0]": "nu: 0.001, rho: 0.8", "samples: 10": "samples: 4",
               "shard_size: 3": "shard_size: 2", "seed: 7": "seed: 2022",
               "pdebench_sines}": "pdebench_sines, options: {normalize: false}}"}
    spec = write_spec(tmp_path, t_end=1.0, **replace)
    args = ["datasets", "generate", str(spec), "--out", str(tmp_path / "d"), "--workers", "0",
            "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    named = "sample with seed 2 (nu=0.001, rho=0.8): u became NaN/Inf"  # and its parameters
    assert err.startswith("physml: error: ") and f"shard-00001.h5: {named} at step" in err
    assert "smaller solver.cfl" in err and "parameters, initial_condition options or a " \
        "shorter t_end" in err and "kept from step" not in err and "reduce dt" not in err
    assert "the same command again keeps the finished shards and stops at this sample again" \
        in err
    finished = tmp_path / "d" / "train" / "shard-00000.h5"
    before = finished.stat().st_mtime_ns
    assert main(args) == 1
    assert named in capsys.readouterr().err
    assert finished.stat().st_mtime_ns == before
    # on Dask workers: the same exit status, the error told once (the workers logged it too)
    import subprocess
    import sys

    workers = [a if a != "0" else "1" for a in args]
    workers[workers.index(str(tmp_path / "d"))] = str(tmp_path / "dask")
    result = subprocess.run([sys.executable, "-c", "import sys; from physml.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *workers], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count(named) == 1, result.stderr


def test_the_manifest_counts_each_split_and_a_shard_in_progress_is_told(tmp_path):
    """The count moves a shard at a time (its samples are solved together): it stayed at 0
    for minutes while the kernels compiled and the first shard was solved, saying nothing
    else; and an empty split was told only by the reader's refusal."""
    spec = load_spec(write_spec(tmp_path, nx=16, **{"samples: 10": "samples: 4"}))
    told = []
    manifest = generate(spec, tmp_path / "d", workers=0,
                        progress=lambda done, total: told.append(f"{done}/{total}"),
                        status=told.append)
    # 4 samples per beta at 0.8/0.1/0.1: 3 train, 1 valid, 0 test; one shard each
    assert manifest["split_samples"] == {"train": 6, "valid": 2, "test": 0}
    assert told == ["0/8", "compiling kernels", "shard 1/4 in progress", "3/8",
                    "shard 2/4 in progress", "6/8", "shard 3/4 in progress", "7/8",
                    "shard 4/4 in progress", "8/8"]


def test_a_dataset_too_large_to_plan_is_refused_before_anything_is_written(
        tmp_path, monkeypatch, capsys):
    """--samples 10^12 ended in a MemoryError traceback (the plan listed every seed) after
    spec.yaml and the split folders were written, and that folder refused the corrected
    command as a partial dataset of another spec."""
    from physml.datasets import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 16 * memory.GIB)
    out = tmp_path / "d"
    assert main(["datasets", "generate", "heat2d", "--out", str(out), "--samples",
                 "1000000000000", "--workers", "0"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("physml: error: samples=1000000000000 (--samples or the spec's "
                           "samples) x 3 parameter combination(s) in shards of 10: the plan "
                           "of its 300,000,000,000 shards needs about")
    assert last.endswith("more than this machine's memory (16.0 GiB); at most about "
                         "42,608,802 samples per combination fit")
    assert not out.exists()


@pytest.fixture
def in_process_cluster(monkeypatch):
    """A Dask scheduler in this process with no worker, its client, and a one-second wait for
    workers."""
    from dask.distributed import Client, LocalCluster

    from physml.datasets import shard_engines

    monkeypatch.setattr(shard_engines, "WORKERS_TIMEOUT_S", 1)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, timeout=5) as client:
        yield cluster, client


def slow_writer(task):
    """A shard writer that takes 3 s (and writes nothing)."""
    time.sleep(3)


def shard_task(folder, name="shard-00000.h5"):
    from types import SimpleNamespace

    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text("pde: advection1d\n")
    return SimpleNamespace(path=str(folder / "train" / name))


@pytest.mark.timeout(20)
def test_a_scheduler_without_workers_is_refused_not_waited_on(tmp_path, in_process_cluster):
    from physml.datasets.shard_engines import run_on_dask

    cluster, client = in_process_cluster
    start = time.monotonic()
    with pytest.raises(ValueError, match="has no worker after 1 s: start workers"):
        run_on_dask([shard_task(tmp_path)], lambda task: None, 0, client, folder=tmp_path)
    assert time.monotonic() - start < 10


@pytest.mark.timeout(20)
def test_workers_that_cannot_run_physml_or_see_the_folder_are_named(
        tmp_path, in_process_cluster, monkeypatch):
    from physml.datasets import shard_engines
    from physml.datasets.shard_engines import run_on_dask

    cluster, client = in_process_cluster
    cluster.scale(1)
    client.wait_for_workers(1, timeout=10)
    written = []
    task = shard_task(tmp_path)
    with pytest.raises(ValueError, match="do not see the output folder .*at the same path"):
        run_on_dask([task], lambda t: None, 0, client, written.append, tmp_path / "elsewhere")

    def no_physml(file):
        raise ModuleNotFoundError("No module named 'physml'")

    monkeypatch.setattr(shard_engines, "_sees", no_physml)
    with pytest.raises(ValueError, match="cannot run physml.*No module named 'physml'.*install"):
        run_on_dask([task], lambda t: None, 0, client, written.append, tmp_path)
    assert written == []  # nothing was sent


@pytest.mark.timeout(30)
def test_a_scheduler_that_loses_every_worker_mid_run_stops_with_an_error(
        tmp_path, in_process_cluster):
    import threading

    from physml.datasets.shard_engines import DaskLost, run_on_dask

    cluster, client = in_process_cluster
    cluster.scale(1)
    client.wait_for_workers(1, timeout=10)
    threading.Timer(0.5, cluster.scale, args=(0,)).start()  # the worker lost mid-shard
    with pytest.raises(DaskLost, match="has had no worker for 1 s"):
        run_on_dask([shard_task(tmp_path)], lambda t: None, 0, client, slow_writer, tmp_path)


@pytest.mark.timeout(20)
def test_each_written_shard_is_released_as_it_is_counted(tmp_path, in_process_cluster):
    """A worker lost late made Dask compute again every shard it had written: their results
    were held until the end."""
    from physml.datasets.shard_engines import run_on_dask

    cluster, client = in_process_cluster
    cluster.scale(1)
    client.wait_for_workers(1, timeout=10)
    tasks = [shard_task(tmp_path, f"shard-{k:05d}.h5") for k in range(4)]
    held = []

    def done(task):
        deadline = time.monotonic() + 1  # a release reaches the client's loop soon after
        while len(client.futures) > len(tasks) - len(held) and time.monotonic() < deadline:
            time.sleep(0.01)
        held.append(len(client.futures))

    run_on_dask(tasks, done, 0, client, lambda task: None, tmp_path)
    assert held == [4, 3, 2, 1]  # those not counted yet


@pytest.mark.timeout(30)
def test_a_scheduler_lost_mid_run_exits_69_and_keeps_the_finished_shards(
        tmp_path, monkeypatch, capsys):
    from physml.datasets import generate as generation
    from physml.datasets.shard_engines import DaskLost

    def lost(*args):
        raise DaskLost("lost the Dask scheduler (CommClosedError)")

    monkeypatch.setattr(generation, "run_on_dask", lost)
    monkeypatch.setattr(generation, "dask_available", lambda: True)
    assert main(["datasets", "generate", str(write_spec(tmp_path)), "--out",
                 str(tmp_path / "d"), "--workers", "2", "--quiet"]) == 69
    err = capsys.readouterr().err
    assert ("physml: error: lost the Dask scheduler (CommClosedError); the finished shards "
            "are kept: run the same command again" in err) and "Traceback" not in err


@pytest.mark.slow  # the client waits for the lost scheduler a few seconds
@pytest.mark.timeout(60)
def test_the_client_losing_its_scheduler_is_told_as_a_lost_scheduler(tmp_path, monkeypatch):
    import threading

    import dask
    from dask.distributed import Client, LocalCluster

    from physml.datasets import shard_engines
    from physml.datasets.shard_engines import DaskLost, run_on_dask

    monkeypatch.setattr(shard_engines, "WORKERS_TIMEOUT_S", 1)
    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=":0")
    client = Client(cluster.scheduler_address, timeout=2)
    threading.Timer(1, cluster.sync, args=(cluster.scheduler.close,)).start()  # its workers live
    try:
        with pytest.raises(DaskLost, match="lost the Dask scheduler"):
            run_on_dask([shard_task(tmp_path)], lambda t: None, 0, client, slow_writer,
                        tmp_path)
    finally:
        client.close()
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # not 30 s
            cluster.close()  # of a scheduler closed already


@pytest.mark.timeout(20)
def test_a_port_that_is_not_a_dask_scheduler_is_refused_in_time(tmp_path, monkeypatch):
    import socket

    from physml.datasets import generate as generation

    monkeypatch.setattr(generation, "SCHEDULER_TIMEOUT_S", 1)
    monkeypatch.setattr(generation, "CONNECT_GRACE_S", 1)
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, never answers
        port = server.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ValueError, match="no Dask scheduler answered within 1 s"):
            generation.connect_scheduler(f"tcp://127.0.0.1:{port}")
        assert time.monotonic() - start < 5


def test_shards_written_elsewhere_advise_workers_that_see_the_folder(tmp_path, monkeypatch):
    from physml.datasets import generate as generation

    monkeypatch.setattr(generation, "dask_available", lambda: True)
    monkeypatch.setattr(generation, "run_on_dask", lambda *a: None)  # workers wrote elsewhere
    with pytest.raises(ValueError, match="run workers that see the output folder at the same "
                                         "path"):
        generate(load_spec(write_spec(tmp_path)), tmp_path / "d", workers=2)


@pytest.mark.timeout(30)
def test_a_local_cluster_takes_no_busy_dashboard_port(monkeypatch):
    import socket
    import warnings

    from physml.datasets.shard_engines import run_on_dask

    try:
        busy = socket.create_server(("", 8787))
    except OSError:  # in use already: the case itself
        busy = None
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            run_on_dask([], lambda task: None, 0)
    finally:
        if busy is not None:
            busy.close()
    assert not [w for w in shown if "already in use" in str(w.message)]
