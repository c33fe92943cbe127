"""The mesh heat API takes its physics by keyword: ``heat(mesh, u0, dt=..., n_steps=...,
kappa=...)`` and ``heat_stepper(mesh, dt=..., kappa=...)``, as the grid solvers take ``nu`` and
``dt``. The older forms (physics by position, no ``kappa``) still run, with a ``FutureWarning``
that names the keywords to write, and give the same states."""

import ast
import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

import physml.solvers.mesh as pm
from physml.solvers.mesh import pde

gmsh = pytest.importorskip("gmsh", reason="no gmsh for this platform (no Linux aarch64 wheel)")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def disc() -> pm.Mesh:
    return pm.disc(0.3)


@pytest.fixture(scope="module")
def u0(disc: pm.Mesh) -> np.ndarray:
    return np.exp(-4 * (disc.points ** 2).sum(1))


def test_the_physics_parameters_are_keyword_only_and_kappa_has_no_default():
    for function, names in ((pm.heat, ("dt", "n_steps", "kappa", "theta", "dirichlet")),
                            (pde.heat_stepper, ("dt", "kappa", "theta", "dirichlet"))):
        parameters = inspect.signature(function).parameters
        assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in names)
        assert parameters["kappa"].default is inspect.Parameter.empty


def test_the_keyword_form_runs_without_a_warning(disc, u0):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = pm.heat(disc, u0, dt=0.01, n_steps=3, kappa=0.5, theta=0.5)
        stepped = pde.heat_stepper(disc, dt=0.01, kappa=0.5, theta=0.5)(u0, 3)
    np.testing.assert_array_equal(states, stepped)


def test_heat_by_position_warns_naming_the_keywords_and_gives_the_same_states(disc, u0):
    """``heat(mesh, u0, 2, 5)`` used to read 2 as dt without a word."""
    expected = pm.heat(disc, u0, dt=0.01, n_steps=3, kappa=0.5, theta=0.5)
    with pytest.warns(FutureWarning, match=r"dt, n_steps, kappa, theta given by position; "
                                           r"write heat\(\.\.\., dt=\.\.\., n_steps=\.\.\., "
                                           r"kappa=\.\.\., theta=\.\.\.\)") as record:
        states = pm.heat(disc, u0, 0.01, 3, 0.5, 0.5)
    assert len(record) == 1 and record[0].filename == __file__
    np.testing.assert_array_equal(states, expected)


def test_heat_stepper_by_position_warns_and_gives_the_same_states(disc, u0):
    fixed = disc.boundary_vertices()[:3]
    expected = pde.heat_stepper(disc, dt=0.01, kappa=2.0, theta=1.0, dirichlet=fixed)(u0, 2)
    with pytest.warns(FutureWarning, match=r"heat_stepper: dt, kappa, theta, dirichlet given "
                                           "by position"):
        rollout = pde.heat_stepper(disc, 0.01, 2.0, 1.0, fixed)
    np.testing.assert_array_equal(rollout(u0, 2), expected)


@pytest.mark.parametrize("call", [
    lambda disc, u0: pm.heat(disc, u0, dt=0.01, n_steps=2),
    lambda disc, u0: pde.heat_stepper(disc, dt=0.01)(u0, 2),
], ids=["heat", "heat_stepper"])
def test_a_missing_kappa_warns_that_its_default_goes_and_runs_with_one(disc, u0, call):
    expected = pm.heat(disc, u0, dt=0.01, n_steps=2, kappa=1.0)
    with pytest.warns(FutureWarning, match=r"no kappa given; its default of 1\.0 will be "
                                           r"removed .*pass kappa=1\.0"):
        states = call(disc, u0)
    np.testing.assert_array_equal(states, expected)


def test_a_parameter_given_by_position_and_by_keyword_or_too_many_is_refused(disc, u0):
    with pytest.raises(TypeError, match="heat.. takes its physics parameters"):
        pm.heat(disc, u0, 0.01, dt=0.02, n_steps=2, kappa=1.0)
    with pytest.raises(TypeError, match="heat_stepper.. takes its physics parameters"):
        pde.heat_stepper(disc, 0.01, 1.0, 1.0, None, "extra")


def _positional_heat_calls(path: Path) -> list[str]:
    """``file:line`` of each call of ``heat``/``heat_stepper`` (a bare name or an attribute of
    a module such as ``pm``) in ``path`` with physics by position or without ``kappa``."""
    leading = {"heat": 2, "heat_stepper": 1}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "SpectralSolver":
            continue
        if name in leading and (len(node.args) > leading[name]
                                or "kappa" not in {k.arg for k in node.keywords}):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_package_code_calls_the_mesh_heat_api_in_an_older_form():
    folders = ("physml", "solvers", "datasets", "benchmarks")
    files = [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]
    offending = [call for path in files for call in _positional_heat_calls(path)]
    assert offending == []
