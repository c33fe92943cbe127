"""The mesh PDE case kind's checks against exact facts and its refusals: Poisson's errors are
the true errors (by quadrature, not against the nodal interpolant), an exact solution with a
zero norm gives finite figures and valid JSON, and boundary parts that hold nothing or that a
mesh file lacks are refused naming ``boundary[i].part``."""

import json

import numpy as np
import pytest

from physml.cases.mesh_pde import KIND
from physml.cases.mesh_pde_spec import FieldSpec
from physml.cases.registry import run_case, validate_case
from physml.solvers import mesh as pm


def run(raw, folder):
    folder.mkdir()
    return run_case(validate_case(raw, "test"), folder)[1]


def poisson_case(mesh, exact, source, **extra):
    return {"kind": "mesh_pde", "name": "check", "mesh": mesh,
            "pde": {"name": "poisson", "source": source, "exact": exact},
            "boundary": [{"part": "all", "kind": "dirichlet", "value": exact}],
            "output": {"figures": False}, **extra}


def test_poisson_errors_are_the_true_errors_on_triangles_and_tetrahedra(tmp_path):
    """u = sin(k.x), -lap u = |k|^2 u: the true errors converge at 2 (L2) and 1 (H1); their
    nodal-interpolant versions read 1.56 for H1 on the L-shape and 0.57 in the box."""
    wave = {"kind": "plane_wave", "wavevector": [2.0, 1.0]}
    summary = run(poisson_case({"domain": "l_shape", "h": 0.1}, wave,
                               {**wave, "amplitude": 5.0}, refine=[0.05]), tmp_path / "lshape")
    assert summary["rel_l2"] == pytest.approx(4.09e-3, rel=1e-2)
    assert summary["rel_h1"] == pytest.approx(6.65e-2, rel=1e-2)
    assert 1.9 < summary["order_l2"] < 2.1 and 0.9 < summary["order_h1"] < 1.1
    assert summary["rel_h1_nodal"] < summary["rel_h1"] / 10
    wave = {"kind": "plane_wave", "wavevector": [2.0, 1.0, 1.0]}
    summary = run(poisson_case({"domain": "box", "h": 0.2}, wave, {**wave, "amplitude": 6.0},
                               refine=[0.1]), tmp_path / "box")
    assert summary["rel_l2"] == pytest.approx(2.47e-2, rel=2e-2)  # scikit-fem's P1 figures
    assert summary["rel_h1"] == pytest.approx(0.220, rel=2e-2)
    assert 0.9 < summary["order_h1"] < 1.3


def test_the_h1_error_on_a_surface_takes_the_tangential_gradient():
    """A planar mesh tilted into 3D and a field whose gradient leaves the plane give the
    planar figures: the normal part of the gradient is dropped."""
    from physml.cases.mesh_pde_solves import errors_against

    mesh = pm.l_shape(0.3)
    frame = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    tilted = pm.Mesh(mesh.points @ frame[:, :2].T, mesh.cells)
    u = np.random.default_rng(1).standard_normal(mesh.n_vertices)
    flat = errors_against(FieldSpec(kind="plane_wave", wavevector=[2.0, 1.0]), mesh, u)
    steep = frame @ [2.0, 1.0, 0.0] + 5.0 * frame[:, 2]  # sin(k.x) is the same on the plane
    errors = errors_against(FieldSpec(kind="plane_wave", wavevector=list(steep)), tilted, u)
    assert errors == pytest.approx(flat, rel=1e-8)


def test_a_constant_exact_solution_gives_no_nan_and_no_order(tmp_path):
    summary = run(poisson_case({"domain": "disc", "h": 0.2}, 2.0, 0.0, refine=[0.1]),
                  tmp_path / "run")
    assert summary["rel_l2"] < 1e-12 and summary["h1_error"] < 1e-10
    assert "rel_h1" not in summary and "rel_h1_nodal" not in summary
    assert summary["order_l2"] is None and summary["order_h1"] is None
    text = (tmp_path / "run" / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert ("(absolute: the exact solution is constant) on the case's mesh (h 0.185), no "
            "observed orders: the errors are at round-off") in KIND.headline(summary)


def test_the_exact_solution_takes_a_number_as_a_constant():
    case = validate_case(poisson_case({"domain": "disc", "h": 0.2}, 2.0, 0.0), "test")
    assert case.pde.exact == FieldSpec(kind="constant", amplitude=2.0)


@pytest.mark.parametrize("pde", [
    {"name": "heat", "initial": {"kind": "gaussian", "centre": [1.4, 0.0, 0.0]}},
    {"name": "poisson", "source": 1.0}])
def test_a_dirichlet_part_on_a_closed_surface_is_refused(tmp_path, pde):
    time = {"time": {"dt": 0.01, "steps": 2}} if pde["name"] == "heat" else {}
    raw = {"kind": "mesh_pde", "name": "closed", "mesh": {"domain": "torus", "h": 0.3},
           "pde": pde, "output": {"figures": False}, **time,
           "boundary": [{"part": "all", "kind": "neumann"}, {"part": "all"}]}
    with pytest.raises(ValueError, match=r"boundary\[1\].part: mesh.domain 'torus' is a closed "
                                         r"surface, which has no boundary"):
        validate_case(raw, "test")
    path = tmp_path / "sphere.vtu"  # a mesh file: known once read
    pm.write_mesh(path, pm.icosphere(1))
    case = validate_case({**raw, "mesh": {"file": str(path)}}, "test")
    with pytest.raises(ValueError, match=r"boundary\[1\].part: no vertex of the mesh lies on "
                                         r"part 'all': the mesh is a closed surface"):
        run_case(case, tmp_path / "run")


def test_a_part_a_mesh_file_lacks_is_named_with_its_index(tmp_path):
    tagged, untagged = tmp_path / "tagged.msh", tmp_path / "untagged.msh"
    mesh = pm.l_shape(0.3)
    pm.write_mesh(tagged, mesh)
    pm.write_mesh(untagged, pm.Mesh(mesh.points, mesh.cells))
    raw = {"kind": "mesh_pde", "name": "parts", "pde": {"name": "poisson", "source": 1.0},
           "boundary": [{"part": "all"}, {"part": "top"}], "output": {"figures": False}}
    for path, message in ((tagged, r"boundary\[1\].part: no boundary part named 'top'; known: "
                                   r"\['boundary'\]"),
                          (untagged, r"boundary\[1\].part: the mesh tags no boundary part \(a "
                                     r"mesh file without physical groups\), so none is named "
                                     r"'top'; use part: all")):
        case = validate_case({**raw, "mesh": {"file": str(path)}}, "test")
        with pytest.raises(ValueError, match=message):
            run_case(case, tmp_path / path.stem)


def test_a_constant_exact_solution_the_solve_misses_gives_an_l2_order_only(tmp_path):
    """-lap u = 1 against u = 1: the L2 order is fitted and H1 has none (a constant has no
    H1 seminorm to divide by); the headline and convergence.png failed on the missing order."""
    case = poisson_case({"domain": "disc", "h": 0.2}, 1.0, 1.0, refine=[0.1])
    case["output"] = {"figures": True}
    summary = run(case, tmp_path / "run")
    assert summary["order_l2"] is not None and summary["order_h1"] is None
    assert "observed orders L2 " in KIND.headline(summary)
    assert "H1 " not in KIND.headline(summary).split("observed orders")[1]
    assert (tmp_path / "run" / "convergence.png").stat().st_size > 0


@pytest.mark.parametrize("refine, message", [
    ([1e-4], r"refine\[0\]: h=0.0001 makes about 6.9e\+08 elements of mesh.domain 'l_shape'"),
    ([0.2, 1e300], r"refine\[1\]: h=1e\+300 exceeds mesh.domain 'l_shape' itself"),
])
def test_refine_edge_lengths_keep_the_limits_of_mesh_h(refine, message):
    """mesh.h's limits did not reach refine: 1e-4 passed validation (7e8 elements), 1e300 ran
    an 8-vertex mesh into the fitted orders."""
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=message):
        load_case("poisson_lshape", [f"refine={refine}"])


@pytest.mark.parametrize("overrides, key", [
    (["pde.initial.amplitude=1e300"], r"pde.initial.amplitude=1e\+300"),
    (["mesh.domain=disc", "boundary=[{part: all, kind: dirichlet, value: -1e200}]"],
     r"boundary\[0\].value.amplitude=-1e\+200"),
])
def test_a_heat_field_whose_energy_would_overflow_is_refused(overrides, key):
    """amplitude 1e300 ran with NumPy's overflow warnings and NaN energy and decay rate in the
    metrics, exit 0: 1/2 u^T K u overflows float64 past |u| ~ 1e154."""
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=rf"{key}: a heat run's Dirichlet energy 1/2 u\^T K u is "
                       r"quadratic in u .* give \|amplitude\| <= 1e\+150"):
        load_case("heat_surface", overrides)
    load_case("heat_surface", ["pde.initial.amplitude=-1e150"])
