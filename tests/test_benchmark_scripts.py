"""The benchmark scripts refuse a bad option in one line before any work, label what they
measure with what they actually ran (pcg's training size, datasets' shard size), say why
``teng.py --resume`` refuses a report, and write their report where the platform lacks Linux's
CPU affinity or load average."""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_main(module, monkeypatch, *argv: str) -> SystemExit:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    with pytest.raises(SystemExit) as exited:
        module.main()
    return exited.value


@pytest.mark.parametrize("name, argv, minimum", [
    ("datasets", ["--repeats", "0"], 1),
    ("datasets", ["--peer-only", "--peer-samples", "0"], 1),
    ("pcg", ["--sizes", "32", "--threads", "0"], 1),
    ("pcg", ["--sizes", "32", "--train-samples", "0"], 1),
    ("pcg", ["--sizes", "32", "--width", "0"], 1),
    ("pcg", ["--sizes", "32", "--train-steps", "0"], 1),  # ran untrained models, wrote NaN
    ("moe", ["--experts", "0"], 1),
    ("moe", ["--points-nx", "1"], 2),  # ran nothing and exited 0
    ("mesh", ["--levels", "-1"], 0),
    ("threads", ["--points", "0"], 1),
    ("convection", ["--adam", "0"], 1),
    ("pinn_burgers", ["--lbfgs", "0"], 1),
])
def test_a_bad_count_is_one_argparse_error_before_any_work(script, monkeypatch, capsys, name,
                                                           argv, minimum, tmp_path):
    exited = run_main(script(name), monkeypatch, *argv, "--out", str(tmp_path / "out.json"))
    assert exited.code == 2
    option, value = argv[-2:]
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: argument {option}: {value} must be >= {minimum}")
    assert not any(tmp_path.iterdir())


def test_pcg_refuses_a_train_size_the_mesh_family_would_ignore(script, monkeypatch, capsys,
                                                               tmp_path):
    exited = run_main(script("pcg"), monkeypatch, "--sizes", "--mesh-sizes", "8",
                      "--train-size", "6", "--out", str(tmp_path / "out.json"))
    assert exited.code == 2
    assert "--train-size is the grids' training side" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def loaded_report(path: Path, records: dict) -> Path:
    path.write_text(json.dumps({"training": records}))
    return path


@pytest.mark.parametrize("records, argv, message", [
    ({"poisson_tet/cholesky": {"loaded": "m.pt"}, "poisson_tet/sparse_inverse": {"loaded": "m.pt"}},
     ["--sizes", "--mesh-family", "poisson_tet", "--mesh-sizes", "16"],
     "do not give the size poisson_tet's models were trained at"),
    ({"poisson_grid/cholesky": {"size": 32}, "poisson_grid/sparse_inverse": {"size": 32}},
     ["--sizes", "32", "--train-size", "16"],
     "--train-size 16: the grids' models in"),
    ({"poisson_tet/cholesky": {"size": 12}, "poisson_tet/sparse_inverse": {"size": 12}},
     ["--sizes", "--mesh-sizes", "4"],  # heat_mesh, the default family: none in the report
     "it holds no heat_mesh models (it has poisson_tet/cholesky, poisson_tet/sparse_inverse)"),
])
def test_pcg_load_takes_the_training_size_from_the_report_or_refuses(script, monkeypatch,
                                                                    capsys, tmp_path, records,
                                                                    argv, message):
    """The generalisation block labelled the run's smallest size (or --train-size) as the
    loaded models' training size."""
    report = loaded_report(tmp_path / "report.json", records)
    exited = run_main(script("pcg"), monkeypatch, *argv, "--load", str(report),
                      "--out", str(tmp_path / "out.json"))
    assert exited.code == 2
    assert message in capsys.readouterr().err


def test_pcg_load_labels_the_loaded_models_training_size(script, tmp_path):
    pcg = script("pcg")
    report = loaded_report(tmp_path / "report.json", {
        f"poisson_tet/{kind}": {"size": 12} for kind in pcg.KINDS})
    assert pcg.loaded_training_size(argparse.ArgumentParser(), report, "poisson_tet") == 12


def test_datasets_records_the_samples_its_pair_shards_hold(script, monkeypatch, tmp_path):
    """With --samples 3 the pair reading's one shard holds 3 samples, not the 16 the JSON
    claimed (shrunk: 64 cells, 5 states, generated in process, no JAX)."""
    datasets = script("datasets")
    generate, full_spec = datasets.generate, datasets.burgers_spec
    monkeypatch.setattr(datasets, "burgers_spec", lambda samples: full_spec(samples).model_copy(
        update={"grid": [64], "t_end": 0.05, "n_saves": 5}))
    monkeypatch.setattr(datasets, "generate",
                        lambda spec, folder, workers: generate(spec, folder, workers=0))
    monkeypatch.setattr(datasets, "GENERATION_ROUNDS", 1)
    monkeypatch.setattr(datasets, "compare_with_jax", lambda samples: None)
    out = tmp_path / "datasets.json"
    monkeypatch.setattr(sys, "argv", ["datasets.py", "--samples", "3", "--repeats", "1",
                                      "--out", str(out)])
    datasets.main()
    pairs = json.loads(out.read_text())["reading_pairs"]
    assert pairs["samples_per_shard"] == 3 and pairs["pairs"] == 3 * 4


@pytest.mark.parametrize("report, message", [
    ({"variant": "cpu", "dt": None, "device": None},
     "does not record torch_threads (written before the script kept it); run without --resume "
     "or use another --out"),
    ({"variant": "full", "dt": None, "device": None, "torch_threads": torch.get_num_threads()},
     "holds variant='full' (this run: 'cpu'); use another --out"),
])
def test_teng_resume_names_the_setting_a_report_lacks_or_differs_in(script, monkeypatch,
                                                                     tmp_path, report, message):
    """The committed teng.json predates torch_threads: --resume blamed "another variant, dt,
    device or thread count"."""
    out = tmp_path / "teng.json"
    out.write_text(json.dumps({**report, "problems": {}}))
    exited = run_main(script("teng"), monkeypatch, "--problems", "heat", "--parts", "euler",
                      "--resume", "--out", str(out))
    assert message in str(exited.code)


def test_phasefield_records_the_tolerance_its_model_time_was_measured_at(script, monkeypatch,
                                                                         tmp_path):
    """Its mean adaptive step (and so model s per wall s) scales with the solver's tolerance,
    whose default changed under a committed report that did not say which it used (shrunk:
    one 32^2 grid, one repeat)."""
    from physml.solvers.thermomigration import DEFAULT_TOLERANCE

    phasefield = script("phasefield")
    monkeypatch.setattr(phasefield, "GRID_SHAPES", ((32, 32),))
    monkeypatch.setattr(phasefield, "REPEATS", 1)
    out = tmp_path / "phasefield.json"
    monkeypatch.setattr(sys, "argv", ["phasefield.py", "--quick", "--out", str(out)])
    phasefield.main()
    assert json.loads(out.read_text())["settings"]["adaptive_tolerance"] == DEFAULT_TOLERANCE


def test_moe_accuracy_figure_takes_a_soft_head_without_an_interface_jump(script, tmp_path):
    """A soft head records its interface jump as null: the figure's label formatted it and the
    run stopped after its first method."""
    moe = script("moe")
    record = {"history": [0.5, 0.2], "losses": [1.0] * 12, "test_rel_l2": 0.17,
              "interface_jump": None}
    moe._plot({"problem": "diffusion_sorption", "variant": "cpu",
               "methods": {"soft": record, "hard": {**record, "interface_jump": 0.0}}},
              tmp_path / "moe.png")
    assert (tmp_path / "moe.png").stat().st_size > 0


def without_linux_calls(monkeypatch) -> None:
    """The ``os`` of Windows: no CPU affinity (nor on macOS) and no load average."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(os, "getloadavg", raising=False)


def test_common_reads_the_cores_and_load_of_any_platform(script, monkeypatch):
    common = script("_common")
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 0.5), raising=False)
    assert common.load_average() == [1.5, 1.0, 0.5]
    without_linux_calls(monkeypatch)
    assert common.usable_cores() == os.cpu_count()
    assert common.load_average() is None


def test_common_load_average_is_none_where_none_can_be_read(script, monkeypatch):
    def unreadable():
        raise OSError("Load averages are unobtainable")

    monkeypatch.setattr(os, "getloadavg", unreadable, raising=False)
    assert script("_common").load_average() is None


def test_threads_writes_its_report_without_affinity_or_load_average(script, monkeypatch,
                                                                    tmp_path):
    """The scripts read both only after measuring: a run on macOS or Windows was lost
    (shrunk: the workers' blocks answer a fixed rate)."""
    threads = script("threads")
    monkeypatch.setattr(threads, "measure",
                        lambda environment, points, seconds: {"steps_per_s": 1.0, "threads": 1})
    without_linux_calls(monkeypatch)
    out = tmp_path / "threads.json"
    monkeypatch.setattr(sys, "argv", ["threads.py", "--points", "8", "--rounds", "1",
                                      "--settings", "1 thread", "--out", str(out)])
    threads.main()
    report = json.loads(out.read_text())
    assert report["affinity"] == os.cpu_count()
    assert report["load_average_before"] is None and report["load_average_after"] is None


def test_datasets_reading_only_times_every_pair_reader_and_keeps_the_generation(
        script, monkeypatch, tmp_path):
    """Shuffled pairs against h5py with a chunk cache that holds the shard and against whole
    arrays read once (the default 1 MiB cache measured only its misses), each side's runs kept;
    ``--reading-only`` replaces the reading alone (shrunk: 64 cells, 5 states)."""
    datasets = script("datasets")
    full_spec = datasets.burgers_spec
    monkeypatch.setattr(datasets, "burgers_spec", lambda samples: full_spec(samples).model_copy(
        update={"grid": [64], "t_end": 0.05, "n_saves": 5}))
    out = tmp_path / "datasets.json"
    out.write_text(json.dumps({"generation": {"samples": 3}, "reading": "old"}))
    monkeypatch.setattr(sys, "argv", ["datasets.py", "--reading-only", "--samples", "3",
                                      "--repeats", "2", "--out", str(out)])
    datasets.main()
    report = json.loads(out.read_text())
    assert report["generation"] == {"samples": 3}
    pairs = report["reading_pairs"]
    assert pairs["h5py_chunk_cache_bytes"] == datasets.PAIR_CHUNK_CACHE
    for side in ("field_dataset", "h5py_chunk_cache", "h5py_whole_array"):
        assert len(pairs[f"{side}_pairs_s"]["runs"]) == 2
    assert {"ratio_over_h5py_chunk_cache", "ratio_over_h5py_whole_array"} <= set(pairs)
    assert len(report["reading"]["h5py_mb_s"]["runs"]) == 2
    assert report["reading_provenance"]["physml_version"]


def test_common_provenance_names_the_version_and_the_commit(script, monkeypatch):
    import subprocess

    import physml

    common = script("_common")
    record = common.provenance()
    assert record["physml_version"] == physml.__version__
    assert {"machine", "load_average"} <= set(record)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert record["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert common.git_commit() is None


REPORTING_SCRIPTS = sorted(path for path in (ROOT / "benchmarks").glob("*.py")
                           if '"--out"' in path.read_text())


@pytest.mark.parametrize("path", REPORTING_SCRIPTS, ids=[p.stem for p in REPORTING_SCRIPTS])
def test_every_benchmark_report_records_its_provenance(path):
    """The version alone cannot tell which code made a figure: each script that writes a report
    (an ``--out`` option) records the commit and machine too."""
    assert "provenance()" in path.read_text()


@pytest.mark.parametrize("applied", [True, False])
def test_solvers_keep_heap_raises_glibc_thresholds_and_records_it(script, monkeypatch, capsys,
                                                                  tmp_path, applied):
    """NumPy's 2048^2 temporaries are mapped anew by glibc each time unless the thresholds are
    raised (shrunk: the measurements answer fixed figures)."""
    solvers = script("solvers")
    monkeypatch.setattr(solvers, "keep_heap_memory", lambda: applied)
    monkeypatch.setattr(solvers, "stream_copy_gb_s", lambda threads: {"median": 1.0})
    monkeypatch.setattr(solvers, "benchmark_grid", lambda pde, shape, seconds, device: {
        "physml_host_threads": 1, "physml_bandwidth_gb_s": 1.0})
    monkeypatch.setattr(solvers, "batched_throughput", lambda device: {})
    out = tmp_path / "solvers.json"
    argv = ["--keep-heap", "--pdes", "heat", "--largest", "1024", "--out", str(out)]
    if not applied:
        assert run_main(solvers, monkeypatch, *argv).code == 2
        assert "--keep-heap sets glibc's malloc thresholds" in capsys.readouterr().err
        return
    monkeypatch.setattr(sys, "argv", ["solvers.py", *argv])
    solvers.main()
    report = json.loads(out.read_text())
    assert report["settings"]["glibc_heap_thresholds_raised"] is True
    assert report["provenance"]["physml_version"]


def unavailable_cuda_device() -> str:
    """"cuda" where this machine has no CUDA device, else the one past its last."""
    from physml.devices import available_devices

    count = len(available_devices()) - 1
    return f"cuda:{count}" if count else "cuda"


@pytest.mark.parametrize("argv, message", [
    (["--device", None], "error: --device: device='{}' is not available; available: cpu"),
    (["--device", "gpu"], "error: --device: device='gpu' is not a device name; allowed: cpu, "
                          "cuda, cuda:N"),
    (["--only", "batched", "--peak-gb-s", "3350"],
     "error: --peak-gb-s sets the grids' bandwidth against a peak; --only batched runs no grid"),
])
def test_solvers_refuses_a_device_or_a_part_it_cannot_run_in_one_line(script, monkeypatch,
                                                                     capsys, tmp_path, argv,
                                                                     message):
    """``--device`` places physml's solvers (the script ran them on the CPU only); a device this
    machine lacks, or a peak with no grid to set against it, is refused before any
    measurement, without a traceback."""
    device = unavailable_cuda_device()
    argv = [device if arg is None else arg for arg in argv]
    exited = run_main(script("solvers"), monkeypatch, *argv, "--out", str(tmp_path / "out.json"))
    assert exited.code == 2
    err = capsys.readouterr().err
    assert message.format(device) in err.splitlines()[-1] and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_solvers_only_batched_runs_the_batched_row_alone(script, monkeypatch, tmp_path):
    """``--only batched`` (shrunk: 4 samples of 64 cells, 2 steps, one repeat) measures no
    grid and no copy, and the CPU's batched row keeps its keys."""
    solvers = script("solvers")
    for name, value in {"BATCH": 4, "BATCH_CELLS": 64, "BATCH_STEPS": 2, "REPEATS": 1}.items():
        monkeypatch.setattr(solvers, name, value)
    out = tmp_path / "solvers.json"
    monkeypatch.setattr(sys, "argv", ["solvers.py", "--only", "batched", "--device", "cpu",
                                      "--out", str(out)])
    solvers.main()
    report = json.loads(out.read_text())
    assert not {"grids", "stream_copy_gb_s", "device_copy_gb_s"} & set(report)
    batched = report["batched"]
    assert batched["case"] == "4 samples x 64 cells, Burgers, 2 steps"
    assert set(batched) == {"case", "host_threads", "samples_per_s", "speedup",
                            "speedup_one_thread", "bitwise_equal"}
    assert batched["bitwise_equal"] is True
    assert {side: len(rates["runs"]) for side, rates in batched["samples_per_s"].items()} == {
        "batched": 1, "batched_one_thread": 1, "one_by_one": 1}
    assert "device" not in report["machine"] and report["settings"]["heat"].endswith("cpu")


def test_solvers_only_grids_sets_the_bandwidth_against_a_nominal_peak(script, monkeypatch,
                                                                      tmp_path):
    """``--only grids --peak-gb-s`` runs no batched row and sets each grid's bandwidth against
    the given peak beside the copy (shrunk: the measurements answer fixed figures)."""
    solvers = script("solvers")
    monkeypatch.setattr(solvers, "stream_copy_gb_s", lambda threads: {"median": 2.0})
    monkeypatch.setattr(solvers, "benchmark_grid", lambda pde, shape, seconds, device: {
        "physml_host_threads": 1, "physml_bandwidth_gb_s": 1.0})
    out = tmp_path / "solvers.json"
    monkeypatch.setattr(sys, "argv", ["solvers.py", "--only", "grids", "--peak-gb-s", "4",
                                      "--pdes", "heat", "--largest", "1024", "--out", str(out)])
    solvers.main()
    report = json.loads(out.read_text())
    assert "batched" not in report and report["nominal_peak_gb_s"] == 4.0
    assert report["grids"] == [{"physml_host_threads": 1, "physml_bandwidth_gb_s": 1.0,
                                "bandwidth_fraction_of_copy": 0.5,
                                "bandwidth_fraction_of_nominal_peak": 0.25}]


def test_solvers_sets_a_cuda_grid_against_the_device_copy(script, monkeypatch):
    """On CUDA the reference is ``wp.copy`` on the device, read + write counted, under its own
    keys (not the CPU's STREAM copy's); shrunk to 2^10 values on the CPU, each timing 1 s."""
    solvers = script("solvers")

    class OneSecond:
        def __init__(self, device):
            self.seconds = 1.0

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            pass

    monkeypatch.setattr(solvers, "DEVICE_COPY_SIZE", 2**10)
    monkeypatch.setattr(solvers, "Stopwatch", OneSecond)
    copy = solvers.device_copy_gb_s("cpu", repeats=3)
    assert copy["runs"] == [2 * solvers.DEVICE_COPIES * 8 * 2**10 / 1e9] * 3
    references = {"device_copy_gb_s": {"median": 4.0}, "nominal_peak_gb_s": 8.0}
    assert solvers.bandwidth_fractions({"physml_bandwidth_gb_s": 2.0}, references) == {
        "bandwidth_fraction_of_device_copy": 0.5, "bandwidth_fraction_of_nominal_peak": 0.25}


def test_solvers_counts_every_k_a_cuda_stage_writes(script):
    """The per-cell CUDA kernel writes each stage's k, also the last one's that no stage reads
    (SSP-RK3: 13 arrays a step on the CPU, 14 on CUDA)."""
    from types import SimpleNamespace

    solvers = script("solvers")
    grid = solvers.Grid((64,), (0.0,), (1.0,))
    solver = solvers.build_solver("burgers", grid, "cpu")
    on_cuda = SimpleNamespace(tableau=solver.tableau, stages=SimpleNamespace(
        tableau_plan=solver.stages.tableau_plan, on_cpu=False))
    assert solvers.stage_bytes_per_cell(solver) == 8 * 13
    assert solvers.stage_bytes_per_cell(on_cuda) == 8 * 14


@pytest.mark.parametrize("equal", [True, False])
def test_solvers_says_where_the_batch_was_checked_bitwise(script, equal):
    """On CUDA the batched row names where its samples were compared with their own rollouts:
    on the device, or on the CPU where the device's differ (shrunk: a stand-in for a CUDA
    solver, 3 samples of 32 cells)."""
    from types import SimpleNamespace

    solvers = script("solvers")
    grid = solvers.Grid((32,), (0.0,), (2 * np.pi,))
    u0 = 0.5 + np.sin(grid.coords(0)) * np.array([[0.5], [0.7], [0.9]])
    dt = solvers.build_solver("burgers", grid, "cpu").stable_dt(u0) / 2
    on_cuda = SimpleNamespace(device="cuda:0", grid=grid, dt=dt)
    together = np.zeros((3, 2, 32))
    alone = together if equal else together + np.array([0.0, 0.0, 1e-15])[:, None, None]
    record = solvers.batched_bitwise_check(on_cuda, u0, together, alone)
    if equal:
        assert record == {"bitwise_equal": True, "bitwise_checked_on": "cuda:0"}
    else:
        assert record == {"bitwise_equal": True, "bitwise_checked_on": "cpu",
                          "device_max_abs_difference": 1e-15}


def test_mesh_warms_every_side_then_alternates_in_reversed_order(script):
    """A side's first call (a workspace built) was one of its three timings at 1e5 vertices and
    above, and the sides always ran in the same order."""
    mesh = script("mesh")
    calls = []
    sides = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = mesh._alternate(sides, repeats=2)
    assert calls == ["a", "b", "c", "a", "b", "c", "c", "b", "a"]
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2, "c": 2}
