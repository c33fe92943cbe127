"""The public API as type checkers and editors see it: the names of the lazily importing
packages, the ``py.typed`` marker, and the annotations that callers' code is checked
against."""

import ast
import functools
import importlib
import inspect
import typing
from pathlib import Path

import pytest

LAZY_PACKAGES = ["physml.solvers", "physml.solvers.linalg", "physml.solvers.mesh",
                 "physml.datasets", "physml.train"]


def _declared_exports(source: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """A lazy package's literal ``__all__``, its ``if TYPE_CHECKING:`` imports (name ->
    module) and its ``lazy_exports`` table (name -> module), read from its source."""
    tree = ast.parse(source)
    names = checked = table = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            names = ast.literal_eval(node.value)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            checked = {alias.asname: imported.module for imported in node.body
                       for alias in imported.names if alias.asname == alias.name}
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            modules = ast.literal_eval(node.value.args[1])
            table = {name: module for module, exported in modules.items() for name in exported}
    assert None not in (names, checked, table), "no literal __all__, TYPE_CHECKING or table"
    return names, checked, table


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_a_lazy_package_declares_its_names_for_type_checkers(name):
    """Type checkers cannot run ``lazy_exports``: they read the literal ``__all__`` and the
    ``if TYPE_CHECKING:`` imports, which must say what the lazy table imports at runtime."""
    package = importlib.import_module(name)
    names, checked, table = _declared_exports(Path(package.__file__).read_text())
    assert names == sorted(names) == package.__all__
    assert set(names) == set(checked) == set(table)
    assert checked == table, {n: (checked[n], table[n]) for n in names if checked[n] != table[n]}
    assert set(names) <= set(dir(package))


@pytest.mark.parametrize("name", ["physml.train", "physml.geometry"])
def test_dir_lists_every_lazily_imported_name(name):
    package = importlib.import_module(name)
    assert set(package.__all__) <= set(dir(package))
    assert typing.get_type_hints(package.__getattr__)["return"] is typing.Any


def test_the_package_ships_its_py_typed_marker():
    """PEP 561: without ``physml/py.typed`` in the wheel, mypy skips the package."""
    tomllib = pytest.importorskip("tomllib")
    import physml

    assert (Path(physml.__file__).parent / "py.typed").is_file()
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("run from an installed copy: no pyproject.toml")
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["physml"]


EAGER = {"bridge": {"rollout", "step"}, "linalg_bridge": {"implicit_solve", "csr_solve"},
         "mesh_bridge": {"operator_values", "sparse_solve", "csr_indices", "poisson_solve"},
         "spectral": {"SpectralSolver.rollout"}}


@pytest.mark.parametrize("module", sorted(EAGER))
def test_functions_run_eagerly_under_compile_keep_their_signature_for_type_checkers(module):
    """``torch.compiler.disable`` is not annotated, so the functions it decorates lose their
    types; :func:`physml.eager.eager` wraps it with its argument's type."""
    imported = importlib.import_module(f"physml.{module}")
    decorated = {
        node.name: [ast.unparse(d) for d in node.decorator_list]
        for node in ast.walk(ast.parse(inspect.getsource(imported)))
        if isinstance(node, ast.FunctionDef) and node.decorator_list
    }
    assert not [n for n, ds in decorated.items() if "torch.compiler.disable" in ds]
    assert {n for n, ds in decorated.items() if ds == ["eager"]} == {
        name.rpartition(".")[2] for name in EAGER[module]}
    for name in EAGER[module]:
        function = functools.reduce(getattr, name.split("."), imported)
        assert inspect.signature(function) == inspect.signature(function.__wrapped__)


def _annotations(function) -> dict[str, str]:
    """The annotations as written (every module here uses postponed annotations)."""
    return dict(inspect.unwrap(function).__annotations__)


def test_annotations_admit_what_the_functions_accept():
    import physml
    from physml import bridge
    from physml.datasets.generate import generate
    from physml.datasets.spec import load_spec
    from physml.spectral import SpectralSolver
    from physml.train.pinn import PINNTrainer

    assert _annotations(PINNTrainer.__init__)["eval_shape"] == "tuple[int, ...]"
    for build in (SpectralSolver.heat, SpectralSolver.allen_cahn, SpectralSolver.burgers):
        hints = _annotations(build)
        assert (hints["n"], hints["return"]) == ("int | Sequence[int]", "SpectralSolver")
    for function in (bridge.rollout, bridge.step):
        assert _annotations(function)["parameters"] == (
            "Mapping[str, torch.Tensor | npt.ArrayLike] | None")
    assert _annotations(bridge.rollout)["checkpoint_every"] == "int | Literal['auto'] | None"
    assert _annotations(physml.load_run) == {
        "run_dir": "str | Path", "device": "str | None", "return": "TrainedModel | TrainedMoE"}
    assert _annotations(load_spec)["return"] == _annotations(generate)["spec"]
    assert "LinearSystemSpec" in load_spec.__doc__


def test_the_linalg_protocols_admit_the_shipped_operators_and_preconditioners():
    """Warp types ``wp.float64`` as a scalar class, not as ``type``, and the preconditioners
    name themselves in class variables: the protocols ask for any ``dtype`` and a read-only
    ``name``, so that :class:`CsrOperator` and the AMG classes satisfy them statically."""
    from physml.solvers.linalg import LinearOperator, Preconditioner

    assert _annotations(LinearOperator)["dtype"] == "Any"
    name = inspect.getattr_static(Preconditioner, "name")
    assert isinstance(name, property) and name.fset is None


GRID_SOLVERS = [("heat", "HeatSolver"), ("burgers", "BurgersSolver"),
                ("advection", "AdvectionSolver"), ("reaction_diffusion", "AllenCahnSolver"),
                ("sorption", "DiffusionSorptionSolver1D")]


def _keyword_only(function) -> set[str]:
    return {name for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind is parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("module, name", GRID_SOLVERS)
def test_grid_solver_options_are_typed_for_type_checkers(module, name):
    """A grid solver's ``**options`` go on to ``GridSolver.__init__``: typed as
    ``Unpack[GridOptions]``, a misspelt ``thread=2`` is a type error and editors complete the
    names; its keys are exactly the keywords the constructor leaves to ``GridSolver``."""
    from physml.solvers.base import GridSolver
    from physml.solvers.solver_options import GridOptions

    solver = getattr(importlib.import_module(f"physml.solvers.{module}"), name)
    assert _annotations(solver.__init__)["options"] == "Unpack[GridOptions]"
    left_to_base = _keyword_only(GridSolver.__init__) - _keyword_only(solver.__init__)
    assert GridOptions.__optional_keys__ == left_to_base - {"parameters"}  # from its own
    assert not GridOptions.__required_keys__


def test_grid_options_have_the_types_grid_solver_takes():
    """:class:`GridOptions` types each option as ``GridSolver.__init__`` does, and at run time
    a misspelt option is still refused there."""
    from physml.solvers import Grid, HeatSolver1D
    from physml.solvers.base import GridSolver
    from physml.solvers.solver_options import GridOptions

    options = typing.get_type_hints(GridOptions)
    hints = typing.get_type_hints(GridSolver.__init__)
    assert options == {name: hints[name] for name in options}
    with pytest.raises(TypeError, match="unexpected keyword argument 'thread'"):
        HeatSolver1D(Grid((8,), (0.0,), (1.0,)), nu=0.1, dt=1e-3, thread=2)


def test_the_keyword_only_decorator_keeps_the_signature_type_checkers_see():
    """``formerly_positional`` returns the decorated function's own type (``F`` to ``F``), so a
    type checker reads ``heat``'s and ``SpectralSolver``'s keyword-only parameters and their
    types, not ``(*Any, **Any) -> Any``."""
    from physml.solvers import keyword_only

    assert _annotations(keyword_only.formerly_positional)["return"] == "Callable[[F], F]"
    assert keyword_only.F.__bound__ is not None


def test_the_solvers_type_hints_resolve_at_run_time():
    """``typing.get_type_hints`` (and so pydantic's ``validate_call`` and
    ``inspect.signature(eval_str=True)``) reads every grid solver constructor's hints, the
    options ``Unpack[GridOptions]`` included."""
    from physml.solvers import (
        AdvectionSolver,
        AllenCahnSolver,
        BurgersSolver,
        DiffusionReactionSolver1D,
        DiffusionSorptionSolver1D,
        GridOptions,
        HeatSolver,
    )

    for solver in (AdvectionSolver, AllenCahnSolver, BurgersSolver, DiffusionReactionSolver1D,
                   DiffusionSorptionSolver1D, HeatSolver):
        hints = typing.get_type_hints(solver.__init__)
        assert typing.get_args(hints["options"]) == (GridOptions,), solver
        inspect.signature(solver.__init__, eval_str=True)
