"""Each public callable's Google-style "Args:" section names every parameter of its signature
(``self``, ``cls``, ``*args`` and ``**kwargs`` aside)."""

import importlib
import inspect
import re

import pytest

from physml.datasets.store import samples_dataset, trajectory_dataset
from physml.models import build_model
from physml.preconditioners.training import fit
from physml.solvers.exact import burgers_cole_hopf
from physml.solvers.mesh.pde import heat_geodesic
from physml.solvers.thermomigration import ThermomigrationSolver
from physml.solvers.thermomigration_temperature import linear_temperature

_ENTRY = re.compile(r"([*\w][\w*, ]*):(?:\s|$)")
_NOTE = re.compile(r"\s*\([^()]*\)")  # "name (type):", "a (required), b:"
MODULES = ["physml", "physml.bridge", "physml.linalg_bridge", "physml.mesh_bridge", "physml.data",
           "physml.spectral", "physml.models", "physml.fno", "physml.io", "physml.constraints",
           "physml.preconditioners", "physml.geometry", "physml.datasets", "physml.solvers",
           "physml.solvers.mesh", "physml.solvers.linalg", "physml.train", "physml.trained",
           "physml.errors"]
def args_entries(doc: str) -> set[str] | None:
    """The names the "Args:" section of ``doc`` documents, or None without one. An entry is a
    line at the section's first indent, ``name: ...``; it may name several (``a, b: ...``)."""
    lines = doc.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return None
    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    names: set[str] = set()
    entry_indent = None
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= indent:
            break
        entry_indent = depth if entry_indent is None else entry_indent
        head = line.strip()
        while _NOTE.search(head):
            head = _NOTE.sub("", head)
        match = _ENTRY.match(head) if depth == entry_indent else None
        if match:
            names.update(name.strip().lstrip("*") for name in match.group(1).split(","))
    return names


def undocumented(obj) -> list[str]:
    """The parameters of ``obj`` its docstring's Args section leaves out."""
    documented = args_entries(inspect.getdoc(obj) or "") or set()
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [name for name, parameter in inspect.signature(obj).parameters.items()
            if parameter.kind not in skipped and name not in ("self", "cls")
            and name not in documented]


def test_args_entries_reads_google_style_sections():
    doc = inspect.cleandoc("""Summary.

        Args:
            a, b: two names.
            **options: passed on,
                c: not an entry (a continuation line).

        Raises:
            d: not an Args entry.
        """)
    assert args_entries(doc) == {"a", "b", "options"}
    assert args_entries("Args:\n    e (int, (>= 0)), f: two names.") == {"e", "f"}
    assert args_entries("Summary only.") is None


@pytest.mark.parametrize("obj", [build_model, fit, heat_geodesic, trajectory_dataset,
                                 samples_dataset, linear_temperature, burgers_cole_hopf,
                                 ThermomigrationSolver.run], ids=lambda obj: obj.__qualname__)
def test_args_section_names_every_parameter(obj):
    assert undocumented(obj) == [], f"{obj.__qualname__}'s Args section leaves them out"


def _public_callables() -> dict[str, object]:
    """Each public function and class of :data:`MODULES` (their ``__all__``, else the public
    names they define) and each public method of those classes, once."""
    found: dict[int, tuple[str, object]] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        publics = getattr(module, "__all__", None) or [
            name for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module_name]
        for public in publics:
            value = getattr(module, public)
            named = [(f"{module_name}.{public}", value)] if callable(value) else []
            if inspect.isclass(value):
                named += [(f"{module_name}.{public}.{name}", getattr(value, name))
                          for name, member in vars(value).items()
                          if not name.startswith("_") and (
                              inspect.isfunction(member)
                              or isinstance(member, (staticmethod, classmethod)))]
            for name, obj in named:
                found.setdefault(id(obj), (name, obj))
    return dict(found.values())


def test_every_documented_args_section_is_complete():
    checked = {name: obj for name, obj in _public_callables().items()
               if args_entries(inspect.getdoc(obj) or "") is not None}
    assert len(checked) > 100
    missing = {name: undocumented(obj) for name, obj in checked.items()}
    assert {name: left for name, left in missing.items() if left} == {}
