"""The numerics and dataset layers import without PyTorch and without side effects: every
module of ``physml.solvers`` and ``physml.datasets``, imported one by one in a fresh
interpreter, leaves ``torch`` out of ``sys.modules`` and Warp uninitialised."""

import subprocess
import sys

import pytest

TORCH_MODULES: list[str] = []
"""Known exceptions, imported last (none): an entry that stops importing torch fails the test,
so it cannot outlive its reason."""

WALK = """
import importlib, pkgutil, sys
import warp
exempt = sys.argv[1:]
names = []
for root in ("physml.solvers", "physml.datasets"):
    package = importlib.import_module(root)
    names += [root] + [m.name for m in pkgutil.walk_packages(package.__path__, root + ".")]
for name in [n for n in names if n not in exempt]:
    importlib.import_module(name)
    assert "torch" not in sys.modules, f"importing {name} imported torch"
assert warp._src.context.runtime is None, "importing the solvers initialised Warp"
for name in exempt:
    assert name in names, f"{name} is no module of physml.solvers or physml.datasets"
    module = importlib.import_module(name)
    assert "torch" in vars(module), f"{name} no longer imports torch: remove its exemption"
print(len(names), " ".join(names))
"""


def test_every_solvers_and_datasets_module_imports_without_torch():
    result = subprocess.run([sys.executable, "-c", WALK, *TORCH_MODULES], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    count, names = result.stdout.split(" ", 1)
    assert {"physml.datasets.generate", "physml.solvers.exact"} <= set(names.split())
    assert int(count) >= 20


SOLVER_RUN = """
import numpy as np
from physml.solvers import Grid, HeatSolver1D, periodic
grid = Grid((32,), (0.0,), (2 * np.pi,))
solver = HeatSolver1D(grid, periodic(1), nu=0.1, dt=1e-3)
print(solver.rollout(np.sin(grid.coords(0)), 4, 4).shape)
"""


def test_a_solver_from_python_keeps_warp_start_up_off_the_output():
    """Building a solver starts Warp quietly on the CPU; PHYSML_WARP_VERBOSE=1 shows it."""
    import os

    def run(**env):
        return subprocess.run([sys.executable, "-c", SOLVER_RUN], capture_output=True,
                              text=True, env={**os.environ, **env})

    quiet = run()
    assert quiet.returncode == 0, quiet.stderr
    assert "Warp" not in quiet.stdout + quiet.stderr and "(2, 32)" in quiet.stdout
    verbose = run(PHYSML_WARP_VERBOSE="1")
    assert verbose.returncode == 0 and "Warp" in verbose.stdout + verbose.stderr


LIGHT = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(" ".join(m for m in ("warp", "pyamg", "scipy.sparse") if m in sys.modules))
"""


def test_modules_that_need_no_warp_import_neither_warp_nor_scipy_sparse():
    light = ["physml.solvers", "physml.solvers.errors", "physml.solvers.dtypes",
             "physml.solvers.mesh", "physml.solvers.linalg", "physml.geometry",
             "physml.spectral", "physml.train.pinn", "physml.data", "physml.dtypes"]
    result = subprocess.run([sys.executable, "-c", LIGHT, *light], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_every_name_a_package_exports_resolves_to_its_module():
    import importlib

    for root in ("physml.solvers", "physml.solvers.mesh", "physml.solvers.linalg"):
        package = importlib.import_module(root)
        assert len(package.__all__) >= 20
        for name in package.__all__:
            value = getattr(package, name)
            assert getattr(value, "__name__", name) == name or not callable(value), (root, name)
        with pytest.raises(AttributeError, match="has no attribute 'HeatSolver9D'"):
            _ = package.HeatSolver9D


def test_an_exported_name_may_not_be_a_module_name():
    from physml.solvers.lazy_exports import lazy_exports

    with pytest.raises(ValueError, match=r"\['gmres'\] are also module names"):
        lazy_exports("physml.solvers.linalg", {"gmres": ("gmres",)})


SUBMODULES = """
import physml.solvers as solvers
names = dir(solvers)
assert "HeatSolver1D" in names and "Grid" in names, names
print(solvers.heat.__name__, solvers.linalg.restarted_gmres.__name__, solvers.linalg.gmres.__name__)
"""


def test_a_lazy_package_lists_its_names_and_reaches_its_submodules_as_an_eager_one_did():
    """dir() listed only the helper, and physml.solvers.heat raised AttributeError unless
    something had imported it before."""
    result = subprocess.run([sys.executable, "-c", SUBMODULES], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["physml.solvers.heat",
                                     "physml.solvers.linalg.restarted_gmres", "gmres"]
