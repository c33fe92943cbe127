"""The ``Examples`` of the public entry points' docstrings run as written and print what they
show (``doctest``)."""

import doctest
import importlib

import pytest

MODULES = ["physml.solvers.heat", "physml.solvers.burgers", "physml.solvers.linalg.krylov",
           "physml.data", "physml.io", "physml.cases.registry"]
NEEDS = {"physml.cases.registry": "gmsh"}  # its run_case example meshes the L-shape with Gmsh
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_print_what_they_show(name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name], reason=f"the examples of {name} need {NEEDS[name]}")
    results = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert results.attempted > 0, f"{name} has no docstring examples"
    assert results.failed == 0, f"{results.failed} of {name}'s examples printed something else"
