"""The mesh PDE case kind: the bundled cases validate and run at a reduced size with the
figures they promise, the run folder holds readable results, a heat run resumes exactly, and
bad input is refused with the key named."""

import json
import subprocess
import sys
import warnings
from contextlib import redirect_stdout
from io import StringIO

import meshio
import numpy as np
import pytest
import torch

import physml
from physml import io
from physml.cases import mesh_pde_heat
from physml.cases.mesh_pde import KIND
from physml.cases.mesh_pde_heat import FRAMES
from physml.cases.registry import load_case, run_case, validate_case
from physml.cases.run_folder import CHECKPOINT
from physml.cases.sections import threshold_passed
from physml.solvers.mesh import pde

CASES = ("poisson_lshape", "heat_surface", "shape_poisson")
HEAT_SMALL = ["mesh.h=0.3", "time.steps=40", "time.dt=0.05", "time.save_every=10"]


def run(name, overrides, folder, **kwargs):
    case = load_case(name, overrides)
    return run_case(case, folder, **kwargs)[1]


def vtu_fields(folder):
    return meshio.read(folder / "solution.vtu").point_data


@pytest.mark.parametrize("name", CASES)
def test_the_mesh_cases_validate_with_every_variant(name):
    case = load_case(name)
    assert case.kind == "mesh_pde" and case.name == name
    for variant in case.variants:
        load_case(name, [f"variant={variant}"])


def test_poisson_lshape_error_and_orders_at_the_corner_singularity(tmp_path):
    summary = run("poisson_lshape", ["mesh.h=0.1", "refine=[0.2, 0.05]"], tmp_path)
    assert summary["residual"] < 1e-12
    assert 1e-3 < summary["rel_l2"] < 1e-2
    # u = r^(2/3) sin(2 theta/3) is only in H^(5/3 - eps): L2 order ~4/3, H1 order ~2/3
    assert 1.0 < summary["order_l2"] < 1.6
    assert 0.4 < summary["order_h1"] < 1.0
    fields = vtu_fields(tmp_path)
    assert {"u", "exact", "error"} <= set(fields)
    np.testing.assert_allclose(fields["error"], fields["u"] - fields["exact"])
    mesh, ds = io.read_mesh_dataset(tmp_path / "fields.h5")
    assert mesh.n_vertices == summary["vertices"] and ds["u"].dims == ("node",)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and (tmp_path / "solution.png").is_file()
    # one record per mesh, its step the mesh's index, as the summary's levels
    assert [r["step"] for r in metrics["history"]] == [0, 1, 2]
    assert metrics["history"] == metrics["summary"]["levels"]
    assert "step" not in metrics["summary"]


def test_heat_surface_conserves_mass_and_decays_at_the_first_eigenvalue_rate(tmp_path):
    records = []
    summary = run("heat_surface", HEAT_SMALL + ["output.figures=false"], tmp_path,
                  on_step=records.append)
    assert [r["step"] for r in records] == list(range(1, 41))
    assert summary["mass_drift"] < 1e-12 and summary["energy_monotone"]
    assert summary["overshoot"] == 0.0
    assert summary["decay_rate_error"] < 1e-2  # against eigsh's lambda_1 and the CN factor
    mesh, ds = io.read_mesh_dataset(tmp_path / "fields.h5")
    assert mesh.is_surface and ds["u"].dims == ("time", "node") and ds.sizes["time"] == 5
    assert ds.attrs["physml_version"] == physml.__version__ and ds.attrs["case"] == "heat_surface"
    np.testing.assert_allclose(vtu_fields(tmp_path)["u"], ds["u"].values[-1])


def test_heat_surface_resumes_to_the_same_result(tmp_path):
    overrides = HEAT_SMALL + ["output.figures=false"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "stopped").mkdir()
    whole = run("heat_surface", overrides, tmp_path / "whole")

    def stop(record):
        if record["step"] == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("heat_surface", overrides, tmp_path / "stopped", on_step=stop)
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    with open(tmp_path / "stopped" / FRAMES, "ab") as frames:  # a save cut short
        frames.write(b"\x7f" * 100)
    steps = []
    resumed = run("heat_surface", overrides, tmp_path / "stopped", resume=True,
                  on_step=lambda r: steps.append(r["step"]))
    assert steps == list(range(21, 41))
    u = [io.read_mesh_dataset(tmp_path / run / "fields.h5")[1]["u"].values
         for run in ("stopped", "whole")]
    np.testing.assert_array_equal(u[0], u[1])
    assert resumed["mass_drift"] == whole["mass_drift"]


def test_a_heat_run_stopped_with_the_earlier_checkpoint_layout_resumes(tmp_path):
    """A run folder whose checkpoint still holds its frames (the layout before frames.f64)
    resumes to the same result: the frames move to their file first."""
    overrides = HEAT_SMALL + ["output.figures=false"]
    for name in ("whole", "stopped"):
        (tmp_path / name).mkdir()
    run("heat_surface", overrides, tmp_path / "whole")

    def stop(record):
        if record["step"] == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("heat_surface", overrides, tmp_path / "stopped", on_step=stop)
    folder = tmp_path / "stopped"
    state = torch.load(folder / CHECKPOINT, weights_only=True)
    frames = np.fromfile(folder / FRAMES).reshape(len(state["history"]), state.pop("vertices"))
    torch.save(state | {"frames": [torch.from_numpy(u) for u in frames]}, folder / CHECKPOINT)
    (folder / FRAMES).unlink()
    run("heat_surface", overrides, folder, resume=True)
    u = [io.read_mesh_dataset(tmp_path / name / "fields.h5")[1]["u"].values
         for name in ("stopped", "whole")]
    np.testing.assert_array_equal(u[0], u[1])


def test_heat_surface_sets_up_once_and_writes_one_frame_per_save(tmp_path, monkeypatch):
    """One solver set-up for the run's 40 steps in segments of one, and each save writes its
    frame, not those before it: the checkpoint grows by its history records only."""
    set_ups, sizes = [], []
    spd_solver = pde._spd_solver
    monkeypatch.setattr(pde, "_spd_solver", lambda *a: set_ups.append(a) or spd_solver(*a))

    save_torch_file = mesh_pde_heat.save_torch_file

    def checkpoint_write(path, state):
        save_torch_file(path, state)
        sizes.append(path.stat().st_size)

    monkeypatch.setattr(mesh_pde_heat, "save_torch_file", checkpoint_write)
    summary = run("heat_surface", HEAT_SMALL[:3] + ["time.save_every=1",
                                                    "output.figures=false"], tmp_path)
    frame = 8 * summary["vertices"]
    assert len(set_ups) == 1 and len(sizes) == 41
    assert sizes[-1] - sizes[0] < 4 * frame  # 40 records, not the 40 frames since the first
    assert (tmp_path / FRAMES).stat().st_size == 41 * frame


def test_shape_optimisation_drops_the_match_loss_and_reaches_the_ellipse(tmp_path):
    summary = run("shape_poisson", ["mesh.h=0.2", "optimisation.steps=100",
                                    "optimisation.lr=0.008"], tmp_path)
    assert summary["passed"] and summary["match_drop"] > 1000
    assert summary["aspect"] == pytest.approx(summary["aspect_target"], rel=0.03)
    assert summary["boundary_off_ellipse"] < 0.02
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["step"] for r in metrics["history"]] == list(range(0, 101))
    assert (tmp_path / "losses.png").is_file() and "u" in vtu_fields(tmp_path)


def test_a_finished_shape_run_resumed_keeps_its_timing(tmp_path):
    """A resume after the last step timed no step and wrote the time of none as `step_s`;
    its `wall_s` goes on from the checkpoint's (the resumed part writes the results again)."""
    overrides = ["mesh.h=0.3", "optimisation.steps=6", "optimisation.lr=0.008",
                 "output.figures=false"]
    first = run("shape_poisson", overrides, tmp_path)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)["wall_s"]  # the last step's
    again = run("shape_poisson", overrides, tmp_path, resume=True)
    assert first["wall_s"] > saved > 6 * first["step_s"] > 0 and again["wall_s"] > saved
    assert again["step_s"] == first["step_s"]
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    del state["wall_s"], state["steps_s"]  # a checkpoint of the version before the time was kept
    torch.save(state, tmp_path / CHECKPOINT)
    legacy = run("shape_poisson", overrides, tmp_path, resume=True)
    assert legacy["step_s"] == first["step_s"] and legacy["wall_s"] > again["wall_s"]


def test_a_shape_run_of_0_2_0_resumes_with_its_history_renumbered(tmp_path):
    """0.2.0 recorded as step k the loss before update k (1 to k); resumed, the history held
    both layouts: a step recorded twice with two values."""
    overrides = ["mesh.h=0.3", "optimisation.lr=0.008", "output.figures=false"]
    whole, old = tmp_path / "whole", tmp_path / "old"
    whole.mkdir()
    old.mkdir()
    run("shape_poisson", overrides + ["optimisation.steps=4"], whole)
    run("shape_poisson", overrides + ["optimisation.steps=2"], old)
    state = torch.load(old / CHECKPOINT, weights_only=False)
    assert [r["step"] for r in state["history"]] == [0, 1]
    for record in state["history"]:  # as 0.2.0 wrote them
        record["step"] += 1
    torch.save(state, old / CHECKPOINT)
    run("shape_poisson", overrides + ["optimisation.steps=4"], old, resume=True)
    resumed = json.loads((old / "metrics.json").read_text())["history"]
    expected = json.loads((whole / "metrics.json").read_text())["history"]
    assert [r["step"] for r in resumed] == list(range(5))
    for got, want in zip(resumed, expected, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-9)


def test_the_shape_losses_figure_draws_the_objective_s_weighted_terms(tmp_path, monkeypatch):
    """It drew the quality term without its weight, beside the PINN's axis label."""
    from physml.cases import figures

    drawn = {}
    monkeypatch.setattr(figures, "plot_losses",
                        lambda history, path, title, **kw: drawn.update(history=history, **kw))
    run("shape_poisson", ["mesh.h=0.3", "optimisation.steps=3", "optimisation.lr=0.008",
                          "optimisation.quality_weight=0.25"], tmp_path)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    for record, term in zip(history, drawn["history"], strict=True):
        assert term["loss_0.25 × quality"] == 0.25 * record["loss_quality"]
        assert term["loss_objective"] == record["loss"] == pytest.approx(
            term["loss_match"] + term["loss_0.25 × quality"])
    assert "weighted quality" in drawn["ylabel"]


def test_an_update_that_tangles_the_mesh_stops_the_run_as_a_diverged_one(tmp_path,
                                                                         cli_in_process):
    """It exited 2 with the advice for a bad mesh file ("remove or fix them"), no step, no
    stopped.txt; the fine variant (quality weight 1e-2 at h = 0.05) folded at step 26."""
    result = cli_in_process("run", "shape_poisson", "mesh.h=0.2", "optimisation.lr=0.5",
                            "optimisation.quality_weight=0", "optimisation.steps=5",
                            f"output.folder={tmp_path}", "--quiet")
    assert result.returncode == 1
    assert "the update of step 1 tangled the mesh (folded cells" in result.stderr
    (folder,) = tmp_path.iterdir()
    assert "raise optimisation.quality_weight" in (folder / "stopped.txt").read_text()
    assert load_case("shape_poisson", ["variant=fine"]).optimisation.quality_weight == 0.1


def test_geodesic_on_the_sphere_against_great_circles(tmp_path):
    raw = {"kind": "mesh_pde", "name": "geodesic_sphere", "mesh": {"domain": "icosphere",
           "level": 3}, "pde": {"name": "geodesic", "source_point": [0, 0, 1],
           "exact": {"kind": "great_circle", "centre": [0, 0, 1]}},
           "output": {"figures": False}}
    records = []
    summary = run_case(validate_case(raw, "test"), tmp_path, on_step=records.append)[1]
    assert summary["rel_max_error"] < 0.05
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["step"] == 0
    assert history[0]["max_error"] == summary["max_error"]
    assert records == [{"step": 0, "status": f"{summary['vertices']} vertices, max error "
                                             f"{summary['max_error']:.2e}"}]


def test_a_poisson_run_s_progress_names_each_mesh_and_its_error(tmp_path, cli_in_process):
    result = cli_in_process("run", "poisson_lshape", "mesh.h=0.2", "refine=[0.4]",
                            f"output.folder={tmp_path}", "output.figures=false",
                            "--log-every", "0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "] poisson_lshape " in line]
    assert len(lines) == 2 and "loss" not in result.stderr
    assert "1/2 mesh h 0.192 (116 vertices)" in lines[0] and "2/2 mesh h 0.3" in lines[1]
    assert all("residual" in line and "rel L2" in line for line in lines)
    assert "on the case's mesh (h 0.192)" in result.stdout


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mesh": {"domain": "l_shape"}}, "mesh.domain 'l_shape' needs mesh.h"),
        ({"mesh": {"domain": "disc", "h": 0.1, "file": "nowhere.msh"}},
         "give exactly one of mesh.file and mesh.domain"),
        ({"boundary": []}, "needs a dirichlet entry in boundary"),
        ({"pde": {"name": "heat"}}, "pde.name 'heat' needs the time section"),
        ({"refine": [0.1, -0.05]}, "edge lengths must be > 0"),
        ({"refine": [0.2]}, "refine needs a non-zero pde.exact"),
        ({"refine": [0.2], "pde": {"name": "poisson", "exact": {"kind": "plane_wave",
                                                                "wavevector": [0, 0, 0]}}},
         "refine needs a non-zero pde.exact"),
        ({"pde": {"name": "poisson", "source": {"kind": "gaussian", "width": 0}}},
         "pde.source.width"),
        ({"pde": {"name": "poisson", "source": float("nan")}},
         "pde.source.amplitude: Input should be a finite number"),
        ({"mesh": {"domain": "l_shape", "h": 0.1, "sise": 2}}, "mesh.sise"),
        ({"pde": {"name": "poisson", "kappa": 2.0}},
         r"pde.kappa does not apply to pde.name 'poisson' \(it reads exact, source\)"),
        ({"pde": {"name": "heat", "source": 5.0}, "time": {"dt": 0.1, "steps": 2}},
         "pde.source does not apply to pde.name 'heat'"),
        ({"pde": {"name": "poisson"}, "time": {"dt": 0.1, "steps": 2}},
         "the time section applies to pde.name 'heat' only"),
        ({"pde": {"name": "poisson"}, "time": {"theta": 0.5}},  # not time.dt: required
         "the time section applies to pde.name 'heat' only"),
        ({"pde": {"name": "heet"}, "time": {"dt": 0.1, "steps": 2}},  # not: remove time
         "pde.name: Input should be 'poisson', 'heat'"),
        ({"pde": {"name": "geodesic", "source_point": [0.0, 0.0]}},
         "pde.name 'geodesic' takes no boundary conditions"),
        ({"pde": {"name": "shape_optimisation", "source": 0.0},
          "optimisation": {"target_semi_axes": [1.0, 0.5]}},
         "pde.name 'shape_optimisation' needs a non-zero pde.source"),
    ],
)
def test_bad_input_is_refused_naming_the_key(change, message):
    raw = {"kind": "mesh_pde", "name": "bad", "mesh": {"domain": "l_shape", "h": 0.1},
           "pde": {"name": "poisson"}, "boundary": [{"part": "all"}], **change}
    with pytest.raises(ValueError, match=message):
        validate_case(raw, "case bad")


def test_a_case_built_in_python_refuses_a_section_its_pde_does_not_read():
    from physml.cases.mesh_pde_spec import MeshPDECase, MeshPDESpec, TimeSpec

    with pytest.raises(ValueError, match="the time section applies to pde.name 'heat' only"):
        MeshPDECase(kind="mesh_pde", name="bad", mesh={"domain": "l_shape", "h": 0.1},
                    pde=MeshPDESpec(name="poisson"), boundary=[{"part": "all"}],
                    time=TimeSpec(dt=0.1, steps=2))


def test_poisson_on_a_closed_surface_names_the_boundary_section(tmp_path):
    raw = {"kind": "mesh_pde", "name": "closed", "mesh": {"domain": "torus", "h": 0.3},
           "pde": {"name": "poisson", "source": 1.0}, "boundary": [{"part": "all"}],
           "output": {"figures": False}}
    with pytest.raises(ValueError, match=r"boundary\[0\].part: mesh.domain 'torus' is a "
                                         r"closed surface, which has no boundary"):
        run_case(validate_case(raw, "test"), tmp_path)


def test_an_unknown_boundary_part_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"boundary\[0\].part: mesh.domain 'l_shape' has no "
                                         r"boundary part 'top'; allowed: all, boundary"):
        run("poisson_lshape", ["mesh.h=0.3", "refine=[]", "boundary=[{part: top}]"], tmp_path)


def test_a_run_refused_before_its_first_checkpoint_leaves_no_folder(tmp_path, cli_in_process):
    """The annulus's parts are its two circles; its cell tag ('domain') is none of them."""
    case = tmp_path / "typo.yaml"
    case.write_text("kind: mesh_pde\nname: typo\nmesh: {domain: annulus, h: 0.3}\n"
                    "pde: {name: poisson, source: 1.0}\n"
                    "boundary: [{part: outter, kind: dirichlet, value: 0.0}]\n"
                    f"output: {{folder: {tmp_path / 'runs'}}}\n")
    result = cli_in_process("run", str(case), "--quiet")
    assert result.returncode == 2
    assert ("boundary[0].part: mesh.domain 'annulus' has no boundary part 'outter'; allowed: "
            "all, inner, outer") in result.stderr
    assert not list((tmp_path / "runs").glob("typo*"))


# --------------------------------------------------- meshes of the user's: several parts, repair


def two_squares(path, duplicate=False):
    """Two unit squares 1 apart, each a 5 x 5 grid of vertices (32 triangles); with
    ``duplicate``, a copy of vertex 0 that no cell uses besides."""
    x, y = np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5))
    square = np.c_[x.ravel(), y.ravel()]
    corner = (np.arange(4)[:, None] * 5 + np.arange(4)).ravel()
    cells = np.r_[np.c_[corner, corner + 1, corner + 6], np.c_[corner, corner + 6, corner + 5]]
    points = np.r_[square, square + [2.0, 0.0]]
    cells = np.r_[cells, cells + 25]
    if duplicate:
        points = np.r_[points, points[:1]]
    meshio.Mesh(np.c_[points, np.zeros(len(points))], [("triangle", cells)]).write(path)
    return str(path)


def test_no_verdict_passes_on_a_non_finite_error():
    assert threshold_passed(1e-4, 1e-3) is True
    assert not any(threshold_passed(e, 1e-3) for e in (float("nan"), -np.inf, np.inf))


def test_a_heat_run_on_a_mesh_in_two_parts_gives_no_decay_verdict(tmp_path):
    """lambda = 0 is double there: the 'first non-zero' eigenvalue was another 0, the
    expected rate -0.0 and the error -inf, which passed."""
    raw = {"kind": "mesh_pde", "name": "two", "mesh": {"file": two_squares(tmp_path / "m.vtu")},
           "pde": {"name": "heat", "initial": {"kind": "gaussian", "centre": [0.3, 0.5],
                                               "width": 0.3}},
           "time": {"dt": 0.01, "steps": 60, "save_every": 20}, "output": {"figures": False}}
    summary = run_case(validate_case(raw, "test"), tmp_path)[1]
    assert summary["passed"] is None and "decay_rate" not in summary
    assert summary["decay_rate_skipped"].startswith("the mesh has 2 connected parts")


def test_a_geodesic_with_an_unreached_part_writes_strict_json_and_says_so(tmp_path):
    raw = {"kind": "mesh_pde", "name": "geo", "mesh": {"file": two_squares(tmp_path / "m.vtu")},
           "pde": {"name": "geodesic", "source_point": [0, 0]}, "output": {"figures": False}}
    case = validate_case(raw, "test")
    folder, summary = run_case(case, tmp_path)

    def refuse(constant):
        raise ValueError(constant)

    metrics = json.loads((folder / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["summary"]["unreached_vertices"] == 25
    assert 1.4 < summary["max_distance"] < 1.6  # the far corner of the source's square
    assert "(25 vertices not reached" in KIND.headline(summary)


def test_a_case_s_duplicate_vertices_are_cured_by_the_case_key(tmp_path, cli_in_process):
    path = two_squares(tmp_path / "dup.vtu", duplicate=True)
    case = tmp_path / "dup.yaml"
    case.write_text(f"kind: mesh_pde\nname: dup\nmesh: {{file: {path}}}\n"
                    "pde: {name: poisson, source: 1.0}\nboundary: [{part: all}]\n"
                    f"output: {{folder: {tmp_path / 'runs'}, figures: false}}\n")
    result = cli_in_process("run", str(case), "--quiet")
    assert result.returncode == 2
    assert (f"mesh file {path!r}: duplicate vertices 50 (1 in all) coincide with earlier "
            "vertices; set mesh.repair: true to merge them") in result.stderr
    assert cli_in_process("run", str(case), "mesh.repair=true", "--quiet").returncode == 0


def test_a_heat_run_with_a_dirichlet_part_does_not_lead_with_mass(tmp_path):
    """Mass is not conserved there: its drift read like a failed check."""
    summary = run("heat_surface", ["mesh.domain=disc", "mesh.h=0.3", "time.steps=4",
                                   "pde.initial.centre=[0.0, 0.0]",
                                   "time.save_every=2", "boundary=[{part: all}]",
                                   "output.figures=false"], tmp_path)
    assert "mass_drift" not in summary
    assert KIND.headline(summary).startswith("t=0.04: energy never grew, overshoot")


def test_a_zero_exact_solution_gives_absolute_errors_without_warnings(tmp_path):
    raw = {"kind": "mesh_pde", "name": "zero", "mesh": {"domain": "disc", "h": 0.3},
           "pde": {"name": "poisson", "exact": {"kind": "constant", "amplitude": 0.0}},
           "boundary": [{"part": "all"}],
           "output": {"figures": False}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = run_case(validate_case(raw, "test"), tmp_path)[1]
    assert summary["l2_error"] == summary["h1_error"] == 0.0 and "rel_l2" not in summary
    assert KIND.headline(summary).startswith("L2 error 0.00e+00, H1 0.00e+00 (absolute")


@pytest.mark.parametrize("change, message", [
    ({"pde": {"name": ["poisson"]}}, r"pde.name: Input should be 'poisson', 'heat'"),
    ({"mesh": {"domain": "l_shape", "h": 1e300}}, r"mesh.h=1e\+300 exceeds mesh.domain "
     r"'l_shape' itself \(one element would cover it\); use h <= 2.6"),
    ({"mesh": {"domain": "l_shape", "h": 1e-300}}, r"mesh.h=1e-300 makes about inf elements"),
    ({"mesh": {"domain": "box", "h": 1e300}}, r"use h <= 2"),
    ({"boundary": [{"part": "all"}, {"part": "nope"}]}, r"boundary\[1\].part: mesh.domain "
     r"'l_shape' has no boundary part 'nope'; allowed: all, boundary"),
    ({"mesh": {"domain": "annulus", "h": 0.1}, "boundary": [{"part": "boundary"}]},
     r"boundary\[0\].part: mesh.domain 'annulus' has no boundary part 'boundary'; allowed: "
     r"all, inner, outer"),
])
def test_bad_sizes_and_names_are_refused_naming_the_key(change, message):
    raw = {"kind": "mesh_pde", "name": "bad", "mesh": {"domain": "l_shape", "h": 0.1},
           "pde": {"name": "poisson"}, "boundary": [{"part": "all"}], **change}
    with pytest.raises(ValueError, match=message):
        validate_case(raw, "case bad")


def test_the_parts_of_a_generated_domain_are_its_generator_s(tmp_path):
    from physml.datasets.mesh_spec import DOMAIN_PARTS, MeshSpec

    for domain, h in (("annulus", 0.3), ("l_shape", 0.5)):
        mesh = MeshSpec(domain=domain, h=h).build()
        assert sorted(mesh.boundary_parts()) == list(DOMAIN_PARTS[domain])


def test_a_case_with_a_part_of_the_mesh_left_without_dirichlet_names_the_case_s_cure(tmp_path):
    """The cure named pde.poisson's shift, which a case does not have."""
    x, y = np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 3))
    square = np.c_[x.ravel(), y.ravel(), np.zeros(9)]
    corner = np.array([0, 1, 3, 4])
    cells = np.r_[np.c_[corner, corner + 1, corner + 4], np.c_[corner, corner + 4, corner + 3]]
    path = tmp_path / "two.msh"
    meshio.Mesh(np.r_[square, square + [2.0, 0.0, 0.0]],
                [("triangle", np.r_[cells, cells + 9]), ("line", np.array([[0, 3], [3, 6]]))],
                cell_data={"gmsh:physical": [np.ones(16, int), np.full(2, 2)],
                           "gmsh:geometrical": [np.ones(16, int), np.full(2, 2)]},
                field_data={"domain": np.array([1, 2]), "wallA": np.array([2, 1])},
                ).write(path, file_format="gmsh22")
    raw = {"kind": "mesh_pde", "name": "two", "mesh": {"file": str(path)},
           "pde": {"name": "poisson", "source": 1.0},
           "boundary": [{"part": "wallA", "kind": "dirichlet", "value": 0.0}],
           "output": {"figures": False}}
    with pytest.raises(ValueError, match=r"\(9 vertices\) has no Dirichlet vertex: a pure "
                                         r"Neumann problem there is singular; add Dirichlet "
                                         r"vertices in it \(a boundary entry of kind dirichlet "
                                         r"on a part of it\)$"):
        run_case(validate_case(raw, "test"), tmp_path)


def test_a_bundled_case_s_generated_domain_refused_beside_a_file_says_how_to_swap(tmp_path):
    path = two_squares(tmp_path / "m.vtu")
    with pytest.raises(ValueError, match=r"give exactly one of mesh.file and mesh.domain "
                                         r"\(mesh.domain 'l_shape' is set: .* mesh.domain=null "
                                         r"and mesh.h=null"):
        load_case("poisson_lshape", [f"mesh.file={path}"])
    with pytest.raises(ValueError, match=r"generated mesh.domain \(pass refine=\[\] to leave "
                                         r"it out\)"):
        load_case("poisson_lshape", [f"mesh.file={path}", "mesh.domain=null", "mesh.h=null"])
    case = load_case("poisson_lshape", [f"mesh.file={path}", "mesh.domain=null", "mesh.h=null",
                                        "refine=[]"])
    assert case.mesh.file == path


def test_the_first_eigenvalue_is_the_same_in_every_run():
    """ARPACK starts from a random vector unless given one: the same mesh gave a lambda_1 that
    differed in its last bits between runs (here a ring's K and lumped M, twice in a fresh
    process and twice in this one)."""
    code = ("import numpy as np, scipy.sparse as sp; "
            "from physml.cases.mesh_pde_heat import first_eigenvalue; "
            "n = 400; rng = np.random.default_rng(1); w = rng.uniform(0.5, 2.0, n); "
            "i = np.arange(n); j = (i + 1) % n; "
            "K = sp.csr_matrix((np.r_[w, w, -w, -w], (np.r_[i, j, i, j], np.r_[i, j, j, i])), "
            "shape=(n, n)); M = sp.diags(rng.uniform(0.5, 1.5, n)); "
            "print(repr(first_eigenvalue(K, M))); print(repr(first_eigenvalue(K, M)))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    printed = StringIO()
    with redirect_stdout(printed):
        exec(code, {})  # the same lines in this process, after its own imports
    here = printed.getvalue().splitlines()
    assert len(fresh) == len(here) == 2 and len(set(fresh + here)) == 1, (fresh, here)


@pytest.mark.parametrize("name, overrides", [("heat_surface", HEAT_SMALL),
                                             ("shape_poisson", ["mesh.h=0.3",
                                                                "optimisation.steps=6"])])
def test_a_mesh_run_s_wall_s_includes_its_set_up_and_the_writing_of_its_results(
        name, overrides, tmp_path, monkeypatch):
    """wall_s (metrics.json, the headline) is the whole run's, as the README says: a heat or
    shape run's timed its steps alone, leaving out the mesh, the assembly and the writing of
    its results; metrics.json comes last, after the other results."""
    import time

    from physml.cases import mesh_pde_results

    real, slow, written = mesh_pde_results.plot_checks, 0.3, []

    def slow_figures(case, result, folder):
        written.append(sorted(p.name for p in folder.iterdir()))
        time.sleep(slow)
        real(case, result, folder)

    monkeypatch.setattr(mesh_pde_results, "plot_checks", slow_figures)
    summary = run(name, overrides, tmp_path)
    assert {"solution.vtu", "fields.h5"} <= set(written[0]) and "metrics.json" not in written[0]
    recorded = json.loads((tmp_path / "metrics.json").read_text())["summary"]
    checkpointed = torch.load(tmp_path / CHECKPOINT, weights_only=False)["wall_s"]
    assert recorded["wall_s"] == summary["wall_s"] >= checkpointed + slow
    assert checkpointed > summary["steps"] * summary["step_s"] > 0
    assert "wall_s" in recorded["units"]


def test_a_tetrahedral_run_draws_its_mid_plane(tmp_path, monkeypatch):
    """A tetrahedral mesh's run wrote no solution.png, which every mesh run promises."""
    from physml.cases import mesh_figures

    drawn = []
    monkeypatch.setattr(mesh_figures, "plot_mesh_fields",
                        lambda points, cells, fields, path, title, *a: drawn.append(
                            (points, fields, title)) or path.write_bytes(b"png"))
    run("poisson_lshape", ["mesh.domain=box", "mesh.h=0.5", "refine=[]", "pde.exact=null",
                           "pde.source=1.0"], tmp_path)
    assert (tmp_path / "solution.png").is_file()
    ((points, fields, title),) = drawn
    assert points.shape[1] == 2 and set(fields) == {"u", "source"}
    assert title.startswith("poisson_lshape (the plane z = 0.5 m): residual")


def test_the_mid_plane_of_tetrahedra_interpolates_a_linear_field_exactly():
    from physml.cases.mesh_pde_results import mid_plane
    from physml.solvers.mesh import domains

    mesh = domains.box(0.3)
    u = mesh.points @ np.array([1.0, 2.0, 3.0])
    on_vertex = float(mesh.points[np.argmin(np.abs(mesh.points[:, 2] - 0.5)), 2])
    for z in (0.37, on_vertex):  # through the cells only, and through a vertex
        points, triangles, fields = mid_plane(mesh.points, mesh.cells, {"u": u}, z)
        np.testing.assert_allclose(fields["u"], points @ [1.0, 2.0] + 3.0 * z)
        (ax, ay), (bx, by) = ((points[triangles[:, k]] - points[triangles[:, 0]]).T
                              for k in (1, 2))
        area = 0.5 * np.abs(ax * by - ay * bx)
        assert area.sum() == pytest.approx(1.0)  # the unit square, each part once
