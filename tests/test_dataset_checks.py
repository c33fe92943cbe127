"""The data layer's checks and records: initial conditions checked before anything is written,
every parameter in the attrs, partial systems datasets refused, split sums spelled out, and a
quiet Ctrl-C under Dask."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from physml import io
from physml.cli import main
from physml.datasets.generate import generate
from physml.datasets.initial_conditions import fourier_2d
from physml.datasets.linear_systems import read_systems
from physml.datasets.spec import load_spec
from physml.solvers import Grid

SPEC = """
pde: {pde}
grid: {grid}
t_end: 0.05
n_saves: 3
initial_condition: {initial}
samples: 3
shard_size: 2
seed: 1
"""


def write_spec(folder, pde="advection1d", grid="[16]", initial="{kind: pdebench_sines}",
               extra="", name="spec.yaml"):
    path = folder / name
    path.write_text(SPEC.format(pde=pde, grid=grid, initial=initial) + extra)
    return path


@pytest.mark.parametrize(
    ("pde", "grid", "initial", "message"),
    [
        ("advection1d", "[16]", "{kind: fourier_2d}",
         "initial_condition.kind: fourier_2d makes 2D fields; advection1d is 1D (kinds for 1D: "
         "pdebench_sines, uniform_constant)"),
        ("heat2d", "[8, 8]", "{kind: pdebench_sines}",
         "initial_condition.kind: pdebench_sines makes 1D fields; heat2d is 2D"),
        ("advection1d", "[16]", "{kind: uniform_constant, options: {low: 1.0, high: 0.0}}",
         "initial_condition.options of uniform_constant: low=1 > high=0; U(low, high) needs "
         "low <= high"),
        ("heat2d", "[16, 16]", "{kind: fourier_2d, options: {k_max: 40}}",
         "initial_condition.options of fourier_2d: k_max=40 draws waves of up to 40 periods "
         "along each axis, more than 16 cells resolve (8, two cells a period: finer waves "
         "alias); take k_max <= 8 or a finer grid"),
        ("advection1d", "[12]", "{kind: pdebench_sines}",
         "initial_condition.options of pdebench_sines: k_tot=4 draws waves of up to 8 "
         "periods, more than the grid's 12 cells resolve (6, two cells a period: finer waves "
         "alias); take k_tot <= 3 or a finer grid"),
        ("diffusion_sorption1d", "[16]", "{kind: pdebench_sines}",
         "initial_condition (kind pdebench_sines): the sample of seed 1: u0 has negative "
         "concentrations"),
    ],
)
def test_an_unfit_initial_condition_is_refused_before_anything_is_written(
        tmp_path, capsys, pde, grid, initial, message):
    out = tmp_path / "d"
    args = ["datasets", "generate", "--out", str(out), "--workers", "0", "--quiet"]
    spec = write_spec(tmp_path, pde, grid, initial)
    assert main([*args[:2], str(spec), *args[2:]]) == 2
    err = capsys.readouterr().err
    assert f"physml: error: spec {spec}: {message}" in err and "Traceback" not in err
    assert not out.exists()
    fixed = write_spec(tmp_path, pde, grid, "{kind: uniform_constant}", name="fixed.yaml")
    assert main([*args[:2], str(fixed), *args[2:]]) == 0  # the corrected spec, same folder


MESH_SPEC = """
pde: poisson_mesh
mesh: {domain: disc, h: 0.3}
parameters: {shift: 1.0}
initial_condition: {kind: random_bumps}
samples: 2
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC.format(pde="advection1d", grid="[16]", initial="{kind: pdebench_sines}")
         + "solver: {scheme: bogus}\n", "solver.scheme: unknown scheme 'bogus'"),
        (SPEC.format(pde="diffusion_reaction1d", grid="[16]", initial="{kind: pdebench_sines}")
         + "parameters: {nu: [0.1, -1.0]}\n", "spec parameters (nu=-1) on grid=[16]"),
        (MESH_SPEC, "parameters.shift: mesh disc (h = 0.3) has a boundary"),
    ],
)
def test_a_spec_refused_by_its_solver_or_mesh_names_the_spec_file(tmp_path, capsys, text,
                                                                 message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    out = tmp_path / "d"
    assert main(["datasets", "generate", str(spec), "--out", str(out), "--workers", "0",
                 "--quiet"]) == 2
    assert f"physml: error: spec {spec}: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_initial_conditions_take_the_finest_waves_their_grid_resolves_and_no_finer():
    """Two cells a period along every axis: fourier_2d's bound is set by the coarser axis of a
    grid that is not square; pdebench_sines' waves double, so 4 k_tot cells at least."""
    from physml.datasets.initial_conditions import pdebench_sines

    def rng():
        return np.random.default_rng(0)

    for shape in [(32, 9), (9, 32)]:
        grid = Grid(shape, (0.0, 0.0), (1.0, 1.0))
        assert fourier_2d(grid, rng(), k_max=4).shape == shape
        with pytest.raises(ValueError, match="k_max=5 draws waves of up to 5 periods along "
                                             "each axis, more than 9 cells resolve"):
            fourier_2d(grid, rng(), k_max=5)
    for cells, k_tot in [(16, 4), (20, 5)]:
        assert pdebench_sines(Grid((cells,), (0.0,), (1.0,)), rng(), k_tot=k_tot).shape == (
            cells,)
        with pytest.raises(ValueError, match=f"k_tot={k_tot} draws waves of up to {2 * k_tot} "
                                             f"periods, more than the grid's {cells - 1} cells"):
            pdebench_sines(Grid((cells - 1,), (0.0,), (1.0,)), rng(), k_tot=k_tot)


def test_fourier_2d_fields_are_statistically_the_same_under_swapping_x_and_y():
    """x-only and y-only modes carry the same variance (the (k_x, 0) modes drawn twice gave
    x-only modes 2x; over 1000 fixed seeds the ratio's spread is about 0.04)."""
    grid = Grid((8, 8), (0.0, 0.0), (2 * np.pi, 2 * np.pi))
    power = np.zeros(grid.shape)
    for seed in range(1000):
        field = fourier_2d(grid, np.random.default_rng([3, seed]), k_max=2)
        power += np.abs(np.fft.fft2(field)) ** 2
    assert power[1:, 0].sum() / power[0, 1:].sum() == pytest.approx(1.0, abs=0.25)


def test_parameters_left_at_their_default_are_attrs_in_both_conventions(tmp_path):
    default = load_spec(write_spec(tmp_path, pde="burgers1d_pdebench"))
    given = load_spec(write_spec(tmp_path, pde="burgers1d_pdebench", name="given.yaml",
                                 extra="parameters: {nu: 0.01}\n"))
    generate(default, tmp_path / "default", workers=0)
    generate(given, tmp_path / "given", workers=0)
    ds = io.open_dataset(tmp_path / "default", "train").load()
    assert ds.attrs["nu"] == pytest.approx(0.01)  # the problem's default, PDEBench's Nu
    assert ds.attrs["solver_nu"] == pytest.approx(0.01 / np.pi)
    explicit = io.open_dataset(tmp_path / "given", "train").load()
    np.testing.assert_array_equal(ds["u"].values, explicit["u"].values)
    sorption = load_spec(write_spec(tmp_path, pde="diffusion_sorption1d", name="ds.yaml",
                                    initial="{kind: uniform_constant}"))
    generate(sorption, tmp_path / "sorption", workers=0)
    attrs = io.open_dataset(tmp_path / "sorption", "train").attrs
    for name in ("D", "porosity", "rho_s", "k_f", "n_f"):  # D the problem's, the rest the solver's
        assert attrs[name] == pytest.approx(attrs[f"solver_{name}"]), name


def test_a_swept_pdebench_nu_is_labelled_as_pi_times_the_viscosity(tmp_path):
    spec = load_spec(write_spec(tmp_path, pde="burgers1d_pdebench",
                                extra="parameters: {nu: [0.01, 1.0]}\n"))
    generate(spec, tmp_path / "b", workers=0)
    ds = io.open_dataset(tmp_path / "b", "train")
    assert (ds["nu"].long_name, ds["nu"].units) == (
        "parameter nu of the equation; the viscosity or diffusivity nu is solver_nu = "
        "nu / 3.14159", "m2 s-1")
    assert ds["solver_nu"].long_name == "viscosity or diffusivity nu as the solver uses it"
    heat = io.samples_dataset(np.zeros((1, 1, 4)), [0.0], Grid((4,), (0.0,), (1.0,)), [0],
                              {"nu": [0.1]}, attrs={"pde": "heat1d"})
    assert heat["nu"].long_name == "viscosity or diffusivity nu"  # nu is the solver's


def test_read_systems_refuses_an_interrupted_dataset_unless_asked(tmp_path):
    spec = tmp_path / "systems.yaml"
    spec.write_text("systems: poisson_grid\nsize: 4\nsamples: 5\nshard_size: 2\n")
    out = tmp_path / "systems"
    generate(load_spec(spec), out, workers=0)
    complete = read_systems(out / "train")
    assert len(complete) == 4
    (out / "dataset.json").unlink()
    with pytest.raises(ValueError, match="holds an incomplete dataset .* allow_partial=True"):
        read_systems(out / "train")
    partial = read_systems(out / "train", allow_partial=True)
    np.testing.assert_array_equal(partial[3].x, complete[3].x)
    generate(load_spec(spec), out, workers=0)  # finished: the manifest is back
    (out / "train" / "shard-00001.h5").unlink()
    with pytest.raises(ValueError, match="1 shard\\(s\\) of the train split .* missing"):
        read_systems(out / "train")


def test_split_fractions_that_do_not_sum_to_one_are_listed_with_the_defaulted_ones(tmp_path):
    spec = write_spec(tmp_path, extra="splits: {train: 0.9, test: 0.1}\n")
    with pytest.raises(ValueError, match=r"splits: train 0.9 \+ valid 0.1 \(default\) \+ "
                                         r"test 0.1 = 1.1; they must sum to 1"):
        load_spec(spec)


@pytest.mark.slow  # a Dask cluster started twice, and a reference run
def test_ctrl_c_under_dask_prints_one_line_and_resumes_to_the_same_dataset(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the workers leave
    the stopping to the main process, so stderr holds physml's one line only."""
    spec_path = write_spec(tmp_path, grid="[1024]", extra="parameters: {beta: [0.5, 1.0]}\n")
    spec_path.write_text(spec_path.read_text().replace("t_end: 0.05", "t_end: 4.0")
                         .replace("samples: 3", "samples: 10"))
    reference = tmp_path / "reference"
    generate(load_spec(spec_path), reference, workers=0)
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "physml.cli", "datasets", "generate", str(spec_path),
               "--out", str(out), "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/shard-*.h5")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.splitlines() == ["physml: interrupted; the finished shards are kept: run the "
                                "same command again to go on"]
    assert not (out / "dataset.json").exists(), "the interrupt should land mid-run"
    assert subprocess.run(command).returncode == 0
    for split in ("train", "valid", "test"):
        resumed = io.open_dataset(out, split).load()
        expected = io.open_dataset(reference, split).load()
        xr.testing.assert_identical(resumed.drop_attrs(), expected.drop_attrs())
        np.testing.assert_array_equal(resumed["u"].values, expected["u"].values)


def test_a_damaged_shard_is_written_again_when_a_dataset_resumes(tmp_path):
    """An empty or truncated file under a shard's name (a crash of the disk or the network
    file system) was taken as written: the "complete" dataset then failed to open."""
    spec = load_spec(write_spec(tmp_path, pde="burgers1d_pdebench"))
    whole = tmp_path / "whole"
    generate(spec, whole, workers=0)
    expected = io.open_dataset(whole, "train").load()
    (whole / "dataset.json").unlink()
    (whole / "train" / "shard-00000.h5").write_bytes(b"")
    data = (whole / "train" / "shard-00001.h5").read_bytes()
    (whole / "train" / "shard-00001.h5").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = generate(spec, whole, workers=0)
    assert sum("is damaged or holds other samples" in str(w.message) for w in caught) == 2
    assert manifest["splits"]["train"] == ["shard-00000.h5", "shard-00001.h5"]
    again = io.open_dataset(whole, "train").load()
    np.testing.assert_array_equal(again["u"].values, expected["u"].values)


def test_a_dataset_written_to_a_relative_folder_lists_its_planned_shards(tmp_path, monkeypatch):
    """Workers of a scheduler resolved a relative --out against their own working folders:
    the shards went elsewhere and the manifest, read off the disk, listed none."""
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path))
    from physml.datasets import generate as module

    written = []
    monkeypatch.setattr(module, "run_in_process",
                        lambda tasks, done, writer: written.extend(t.path for t in tasks))
    with pytest.raises(ValueError, match="shard\\(s\\) were not written, .*shard-00000.h5"):
        generate(spec, "relative", workers=0)
    assert all(Path(p).is_absolute() for p in written)


def test_the_reference_solution_falls_back_to_a_direct_solve_where_amg_stalls(monkeypatch):
    """pyamg's CG stopped at its iteration cap with a residual of 0.027 (log_std 5, 450^2),
    stored without a word as the reference x."""
    import pyamg

    from physml.datasets import linear_systems
    from physml.datasets.linear_systems import LinearSystemSpec, make_system

    class Stalled:
        def solve(self, b, **options):
            return np.zeros_like(b)

    monkeypatch.setattr(linear_systems, "DIRECT_LIMIT", 10)
    monkeypatch.setattr(pyamg, "ruge_stuben_solver", lambda matrix: Stalled())
    spec = LinearSystemSpec.model_validate({"systems": "poisson_grid", "size": 8,
                                            "samples": 1})
    system = make_system(spec, 0)
    residual = np.linalg.norm(system.matrix @ system.x - system.b) / np.linalg.norm(system.b)
    assert residual < 1e-12


def test_a_stalled_amg_whose_best_iterate_misses_the_tolerance_is_solved_directly(monkeypatch):
    """pyamg hands every iterate to its callback: where the best of them is still off by more
    than REFERENCE_RTOL (relative residuals from 0.027 down to 5e-4), the direct solve gives
    the stored x, not that iterate."""
    import pyamg
    import scipy.sparse.linalg as spla

    from physml.datasets import linear_systems
    from physml.datasets.linear_systems import LinearSystemSpec, make_system

    direct, exact_solve = [], spla.spsolve

    class Stalled:
        def __init__(self, matrix):
            self.matrix = matrix

        def solve(self, b, maxiter, callback=None, **options):
            exact = exact_solve(self.matrix.tocsc(), b)
            for k in range(1, maxiter + 1):
                x = exact * (1 + 0.027 / k)  # relative residual 0.027 / k
                callback(x)
            return x

    monkeypatch.setattr(linear_systems, "DIRECT_LIMIT", 10)
    monkeypatch.setattr(linear_systems.spla, "spsolve",
                        lambda *args: direct.append(1) or exact_solve(*args))
    monkeypatch.setattr(pyamg, "ruge_stuben_solver", Stalled)
    spec = LinearSystemSpec.model_validate({"systems": "poisson_grid", "size": 8,
                                            "samples": 1})
    system = make_system(spec, 0)
    residual = np.linalg.norm(system.matrix @ system.x - system.b) / np.linalg.norm(system.b)
    assert direct == [1] and residual < 1e-12


def test_bad_generate_arguments_and_a_systems_dataset_s_top_folder_are_named(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(ValueError, match="batch_size=2.0 must be a whole number >= 1"):
        generate(spec, tmp_path / "bs", workers=0, batch_size=2.0)
    systems = tmp_path / "systems.yaml"
    systems.write_text("systems: poisson_grid\nsize: 4\nsamples: 5\nshard_size: 2\n")
    generate(load_spec(systems), tmp_path / "sys", workers=0)
    with pytest.raises(ValueError, match="is a dataset with splits \\(train, valid, test\\): read "
                                         "one split's folder, read_systems\\("):
        read_systems(tmp_path / "sys")


def test_an_automatic_scheme_warms_the_imex_kernels_too(monkeypatch, tmp_path):
    """Workers compiled IMEX's module themselves, all at once, when the first combination's
    probe chose the explicit scheme and a later sample IMEX."""
    from physml.datasets import grid_generate as module

    spec = load_spec(write_spec(tmp_path, pde="burgers1d_pdebench",
                                extra="solver: {scheme: auto}\n"))
    probed = []
    original = module.spec_solver

    def record(spec, params, device, scheme=None):
        probed.append(scheme)
        return original(spec, params, device, scheme)

    monkeypatch.setattr(module, "spec_solver", record)
    module.warm_kernel_cache(spec, "cpu")
    assert "imex" in probed


def test_the_default_worker_count_is_the_cores_the_process_may_use(monkeypatch, tmp_path):
    """It read os.cpu_count(), which ignores an affinity mask (taskset, batch schedulers)."""
    from physml.datasets import generate as module

    counts = []
    monkeypatch.setattr(module, "available_cores", lambda: 1)
    monkeypatch.setattr(module, "dask_available", lambda: True)
    monkeypatch.setattr(module, "run_on_dask",
                        lambda tasks, done, workers, client, writer, folder: counts.append(workers))
    with pytest.raises(ValueError, match="were not written"):
        generate(load_spec(write_spec(tmp_path)), tmp_path / "d")
    assert counts == [1]


def test_a_mesh_sample_that_is_not_finite_is_a_numerical_failure(tmp_path, monkeypatch):
    """A non-finite mesh solution was a ValueError (exit 2, the status of a bad spec)."""
    from physml.datasets import mesh_generate

    path = tmp_path / "mesh.yaml"
    path.write_text("pde: poisson_mesh\nmesh: {domain: icosphere, level: 1}\n"
                    "initial_condition: {kind: random_bumps}\nsamples: 2\nshard_size: 1\n")
    spec = load_spec(path)
    monkeypatch.setattr(mesh_generate, "solve_sample",
                        lambda spec, mesh, parameters, data: np.full_like(data, np.nan))
    with pytest.raises(FloatingPointError, match=r"shard-00000.h5: sample with seed 0: the "
                       r"solution is not finite; shorter steps would not help .* change the "
                       r"parameters or the mesh; the same command again keeps"):
        generate(spec, tmp_path / "d", workers=0)


def test_windows_physical_memory_comes_from_global_memory_status_ex(monkeypatch):
    """Windows has no ``sysconf``: every check against the machine's memory was skipped."""
    import ctypes
    from types import SimpleNamespace

    from physml.datasets import memory

    lengths = []

    def global_memory_status_ex(status):
        lengths.append(status._obj.dwLength)
        status._obj.ullTotalPhys = 16 * 2**30
        return 1

    kernel32 = SimpleNamespace(GlobalMemoryStatusEx=global_memory_status_ex)
    monkeypatch.setattr(ctypes, "windll", SimpleNamespace(kernel32=kernel32), raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delattr(os, "sysconf")
    assert memory.physical_memory() == 16 * 2**30 and lengths == [64]  # sizeof(MEMORYSTATUSEX)
    with pytest.raises(ValueError, match=r"^x needs about 32\.0 GiB, more than this machine's "
                                         r"memory \(16\.0 GiB\)$"):
        memory.check_fits_in_memory(32 * 2**30, "x")
    kernel32.GlobalMemoryStatusEx = lambda status: 0  # the call failed
    assert memory.physical_memory() is None


def test_off_windows_memory_without_sysconf_or_its_names_is_not_known(monkeypatch):
    """macOS has ``SC_PHYS_PAGES``; a system without it, or without ``sysconf``, gets no memory
    check, and Windows' call is made only on Windows."""
    import ctypes
    from types import SimpleNamespace

    from physml.datasets import memory

    def refused(status):
        raise AssertionError("GlobalMemoryStatusEx called off Windows")

    monkeypatch.setattr(ctypes, "windll", SimpleNamespace(kernel32=SimpleNamespace(
        GlobalMemoryStatusEx=refused)), raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(os, "sysconf", lambda name: 2**14 if name == "SC_PAGE_SIZE" else 2**20)
    assert memory.physical_memory() == 16 * 2**30

    def no_phys_pages(name):
        if name == "SC_PHYS_PAGES":
            raise ValueError("unrecognized configuration name")
        return 2**14

    monkeypatch.setattr(os, "sysconf", no_phys_pages)
    assert memory.physical_memory() is None
    memory.check_fits_in_memory(2**60, "x")  # not known: no check
    monkeypatch.delattr(os, "sysconf")
    assert memory.physical_memory() is None


def test_a_stalled_amg_reference_keeps_its_best_iterate_and_stops_at_its_cap(monkeypatch):
    """AMG-CG at the float64 floor reached 1.5e-11 after 10 iterations, then drifted (5.8e-6
    after 500): all 500 ran and their result was thrown away for a direct solve, 6 to 10 times
    an ordinary sample's time (5.2e5 unknowns). Here an AMG-CG whose iterates reach 1e-12 and
    then drift: the best is stored, no direct solve runs, and the solve stops at
    REFERENCE_ITERATIONS. A solve that converges stores its last iterate, bitwise."""
    import pyamg
    import scipy.sparse.linalg as spla

    from physml.datasets import linear_systems
    from physml.datasets.linear_systems import LinearSystemSpec, make_system

    direct, iterations, exact_solve = [], [], spla.spsolve

    class Drifting:
        def __init__(self, matrix):
            self.matrix = matrix

        def solve(self, b, maxiter, callback=None, **options):
            exact = exact_solve(self.matrix.tocsc(), b)
            for k in range(1, maxiter + 1):
                error = 10.0 ** -k if k <= 12 else min(1e-12 * 2.0 ** (k - 12), 1e-2)
                x = exact * (1 + error)  # relative residual = error
                iterations.append(k)
                if callback is not None:
                    callback(x)
            return x

    spec = LinearSystemSpec.model_validate({"systems": "poisson_grid", "size": 8,
                                            "samples": 1})
    monkeypatch.setattr(linear_systems, "DIRECT_LIMIT", 10)
    monkeypatch.setattr(linear_systems.spla, "spsolve",
                        lambda *args: direct.append(1) or exact_solve(*args))
    converged = make_system(spec, 0)
    assert direct == []
    reference = pyamg.ruge_stuben_solver(converged.matrix).solve(
        converged.b, tol=1e-12, accel="cg", maxiter=500)
    np.testing.assert_array_equal(converged.x, reference)

    monkeypatch.setattr(pyamg, "ruge_stuben_solver", Drifting)
    system = make_system(spec, 0)
    residual = np.linalg.norm(system.matrix @ system.x - system.b) / np.linalg.norm(system.b)
    assert direct == [] and residual < 1e-11
    assert len(iterations) == linear_systems.REFERENCE_ITERATIONS <= 50


def test_a_random_field_is_formed_in_blocks_of_rows_bitwise_as_at_once():
    """The field formed its (n, 256) cosines at once: 32 GiB at ``size: 4096``, 2.4 GB of peak
    at 5.2e5 unknowns for a stored system of 40 MB."""
    import tracemalloc

    from physml.datasets import linear_systems
    from physml.datasets.linear_systems import gaussian_field

    rng = np.random.default_rng(3)
    points = rng.uniform(size=(2 * linear_systems.FIELD_ROWS + 1, 2))
    omega = rng.standard_normal((2, 256)) / 0.1
    phase = rng.uniform(0, 2 * np.pi, 256)
    expected = np.sqrt(2.0 / 256) * np.cos(points @ omega + phase).sum(axis=1)

    class Recorded:  # the generator's draws, as gaussian_field makes them
        def standard_normal(self, shape):
            return omega * 0.1

        def uniform(self, low, high, size):
            return phase

    np.testing.assert_array_equal(gaussian_field(points, 0.1, Recorded()), expected)
    many = rng.uniform(size=(40_000, 2))
    tracemalloc.start()
    try:
        gaussian_field(many, 0.1, rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20  # (n, 256) at once: 78 MiB a temporary


def test_a_systems_dataset_beyond_memory_is_refused_before_anything_is_generated(
        monkeypatch, tmp_path, capsys):
    """``size: 4096`` passed and died in its first random field with a traceback (32 GiB): no
    memory check was made for linear systems. A spec whose shard's generation exceeds the
    machine's memory is refused with its size, before anything is written."""
    from physml.datasets import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 2**30)
    spec = tmp_path / "big.yaml"
    spec.write_text("systems: poisson_grid\nsize: 1024\nsamples: 2\n")
    out = tmp_path / "d"
    assert main(["datasets", "generate", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert ("size=1024, samples=2: generating a shard of 2 poisson_grid system(s) of about "
            "1,048,576 unknowns needs about 1.2 GiB, more than this machine's memory (1.0 GiB)"
            in err and "Traceback" not in err and not out.exists())


def test_a_shard_s_generation_counts_the_reference_solve_its_systems_get(monkeypatch):
    """Up to DIRECT_LIMIT unknowns a system's reference is a direct solve, whose factors count
    (GENERATION_BYTES' first number per unknown); above, AMG's hierarchy (the second)."""
    from physml.datasets import linear_systems
    from physml.datasets.linear_systems import LinearSystemSpec, generation_bytes

    spec = LinearSystemSpec.model_validate({"systems": "poisson_grid", "size": 64,
                                            "samples": 4})
    n = 64 * 64
    direct, amg = linear_systems.GENERATION_BYTES["poisson_grid"]
    monkeypatch.setattr(linear_systems, "DIRECT_LIMIT", n)
    solved_directly = generation_bytes(spec)
    monkeypatch.setattr(linear_systems, "DIRECT_LIMIT", n - 1)
    assert solved_directly - generation_bytes(spec) == (direct - amg) * n != 0


def test_the_pcg_case_s_memory_counts_its_dataset_s_generation(monkeypatch):
    """The case counted the systems it reads and their graphs, not what generating them holds:
    ``dataset.size=2048`` passed at 11.2 GiB and died allocating 8 GiB for a random field."""
    from physml.cases import load_case
    from physml.cases.pcg import dataset_spec
    from physml.datasets import memory
    from physml.datasets.linear_systems import generation_bytes

    monkeypatch.setattr(memory, "physical_memory", lambda: None)
    case = load_case("pcg_poisson", ["dataset.size=128"])
    ((_, needed),) = case.memory_needs().items()
    generating = generation_bytes(dataset_spec(case))
    monkeypatch.setattr(memory, "physical_memory", lambda: needed - generating / 2)
    with pytest.raises(ValueError, match=r"dataset\.samples=40, dataset\.size=128 .*more than "
                                         "this machine's memory"):
        load_case("pcg_poisson", ["dataset.size=128"])
