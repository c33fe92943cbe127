"""The public API as ``help()``, ``dir()`` and editors show it: each package's ``__all__`` and
docstring, and the arguments the most-used classes refuse."""

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

PACKAGES = ["physml.io", "physml.constraints", "physml.preconditioners", "physml.geometry",
            "physml.datasets", "physml.solvers"]
MODULES = ["physml", "physml.bridge", "physml.linalg_bridge", "physml.mesh_bridge", "physml.data",
           "physml.spectral", "physml.models", "physml.fno", *PACKAGES]


@pytest.mark.parametrize("name", MODULES)
def test_all_holds_the_public_names_only(name):
    module = importlib.import_module(name)
    assert len(module.__all__) == len(set(module.__all__)) > 0
    for public in module.__all__:
        value = getattr(module, public)
        assert not inspect.ismodule(value), f"{name}.{public} is a module"
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("physml"), f"{name}.{public} is not physml's"
    assert not {"np", "torch", "wp", "math", "copy", "annotations", "dataclass"} & set(
        module.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_docstring_lists_its_names(name):
    module = importlib.import_module(name)
    missing = [public for public in module.__all__ if public not in module.__doc__]
    assert not missing, f"{name}'s docstring does not name {missing}"
    assert set(module.__all__) <= set(dir(module))


def test_top_level_docstring_names_the_public_modules():
    import physml

    for public in ("solvers", "datasets", "io", "bridge", "linalg_bridge", "mesh_bridge",
                   "spectral", "train", "geometry", "models", "fno", "data", "constraints",
                   "preconditioners", "trained", "errors"):
        assert f":mod:`physml.{public}`" in physml.__doc__, public
    for section in ("Args:", "Returns:", "Raises:"):
        assert section in physml.load_run.__doc__


def test_lazy_packages_import_no_warp():
    code = ("import sys, physml.datasets, physml.solvers, physml.geometry; "
            "dir(physml.datasets); print('warp' in sys.modules, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split()[0] == "False"


@pytest.mark.parametrize("family", ["Burgers", "Heat", "Advection", "AllenCahn"])
@pytest.mark.parametrize("dim", [1, 2])
def test_dimension_solvers_document_their_options(family, dim):
    import physml.solvers as S

    doc = inspect.getdoc(getattr(S, f"{family}Solver{dim}D"))
    options = ["grid", "bc", "dt", "scheme", "device", "dtype", "check_every", "threads"]
    options += ["theta"] if family != "Advection" else ["beta", "space", "limiter"]
    for option in options:
        assert f"\n    {option}: " in doc, option
    assert "required" in doc


def test_element_triplets_refuse_an_unknown_kind():
    import warp as wp

    import physml.solvers.mesh as pm
    from physml.solvers.mesh.operators import element_triplets, element_triplets_adjoint

    mesh = pm.Mesh(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
                   [[0, 1, 2], [0, 2, 3]])
    with pytest.raises(ValueError, match=r"kind='bogus'.*allowed: mass, stiffness"):
        element_triplets(mesh, "bogus")
    with pytest.raises(ValueError, match=r"kind='bogus'.*allowed: mass, stiffness"):
        element_triplets_adjoint(mesh, "bogus", None, wp.zeros(18, dtype=wp.float64))


@pytest.mark.parametrize("build, name", [
    (lambda M: M.MLP(2, 1, width=0), "width=0"),
    (lambda M: M.MLP(2, 1, depth=-1), "depth=-1"),
    (lambda M: M.MLP(2, 1, depth=0), "depth=0"),
    (lambda M: M.MLP(0, 1), "d_in=0"),
    (lambda M: M.MLP(2, 0), "d_out=0"),
    (lambda M: M.MLP(2, 1, width=2.5), "width=2.5"),
    (lambda M: M.FourierFeatureMLP(2, 1, features=0), "features=0"),
    (lambda M: M.FourierFeatureMLP(0, 1), "d_in=0"),
    (lambda M: M.FourierFeatureMLP(2, 1, width=0), "width=0"),
    (lambda M: M.ModifiedMLP(2, 1, width=0), "width=0"),
    (lambda M: M.ModifiedMLP(0, 1), "d_in=0"),
    (lambda M: M.ModifiedMLP(2, 1, depth=1), "depth >= 2"),
    (lambda M: M.PeriodicMLP(2, 1, harmonics=0), "harmonics=0"),
    (lambda M: M.PeriodicMLP(0, 1), "d_in=0"),
    (lambda M: M.PeriodicMLP(2, 1, depth=-1), "depth=-1"),
    (lambda M: M.TwoBranchNetwork(M.MLP, 2, branches=0), "branches=0"),
])
def test_models_refuse_bad_sizes(build, name):
    import physml.models as M

    with pytest.raises(ValueError, match=name.replace("+", r"\+")):
        build(M)


def test_models_accept_the_smallest_sizes():
    import physml.models as M

    x = torch.zeros(3, 2)
    assert M.MLP(2, 1, width=1, depth=1)(x).shape == (3, 1)
    assert M.ModifiedMLP(2, 1, width=1, depth=2)(x).shape == (3, 1)
    assert M.FourierFeatureMLP(2, 1, features=1, depth=1)(x).shape == (3, 1)


def test_teng_scheme_message_names_the_allowed_schemes():
    from physml.models import PeriodicMLP
    from physml.train.teng import TENG, TENGPDE

    with pytest.raises(ValueError, match="unknown scheme 'imex' for TENG; allowed: ") as raised:
        TENG(PeriodicMLP(2, 1, width=4, depth=1), TENGPDE("heat", 0.1), scheme="imex")
    assert "ssp_rk3" in str(raised.value) and "where supported" not in str(raised.value)
    assert '``"ssp_rk3"``' in inspect.getdoc(TENG)
