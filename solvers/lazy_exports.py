"""Package namespaces whose names are imported from their modules on first use.

A package built with :func:`lazy_exports` imports none of its modules when it is imported, so
``import physml.solvers.errors`` loads neither Warp nor SciPy's sparse module, and
``from physml.solvers import HeatSolver1D`` loads only what the heat solver needs.

Type checkers and editors cannot run :func:`lazy_exports`, so such a package also writes its
``__all__`` as a literal list and imports its names explicitly inside ``if TYPE_CHECKING:``
(``from .heat import HeatSolver1D as HeatSolver1D``), which runs for them only.
"""

import pkgutil
import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``exports`` map a module (relative to
    the package) to the names it exports (the names of the package's ``__all__``).

    The returned ``__getattr__`` imports a name's module on first use and keeps the name in the
    package's namespace, so later lookups are plain attribute reads; any other name is looked
    up as a submodule (``physml.solvers.heat``, as a package that imported everything had it),
    else ``AttributeError`` as for any module. ``__dir__`` lists the exported names with what
    the package holds and its submodules. A name may not be one of the modules' names (a
    module imported later would replace it in the package's namespace).
    """
    module_of = {name: module for module, names in exports.items() for name in names}
    shadowing = sorted(set(module_of) & set(exports))
    if shadowing:
        raise ValueError(
            f"{package}: exported names {shadowing} are also module names; importing the "
            "module would replace the name in the package's namespace"
        )

    def __getattr__(name: str) -> Any:
        if name in module_of:
            value = getattr(import_module(f".{module_of[name]}", package), name)
        elif not name.isidentifier():  # ("", "a.b": no submodule's name)
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            try:
                value = import_module(f".{name}", package)
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise  # the submodule exists and fails to import something of its own
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        module = sys.modules[package]
        submodules = (info.name for info in pkgutil.iter_modules(module.__path__))
        return sorted({*vars(module), *module_of, *submodules})

    return __getattr__, __dir__
