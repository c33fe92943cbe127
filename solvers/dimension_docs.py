"""The docstrings of the grid solvers' 1-D and 2-D classes (``BurgersSolver1D``, ...): each
family's arguments written once, the grid's dimension and the state's shape filled in, so
that ``help()`` and editors show every argument on the class a user builds."""

from __future__ import annotations

_SHAPES = {1: "``(nx,)``", 2: "``(nx, ny)``"}

_DT = """\
        dt: time step [s], required (keyword); checked against the stability limit. ``None``
            leaves it unset: call :meth:`stable_dt` and :meth:`with_dt`.
"""

IMEX_THETA = """\
        theta: implicitness of the "imex" diffusion step, in [1/2, 1] (default 0.5,
            Crank–Nicolson; 1: backward Euler).
"""
"""The ``theta`` line of a family with an "imex" scheme (for its ``options``)."""

_COMMON = """\
        device: "cpu" (default), "cuda" or "cuda:N".
        dtype: "float64" (default) or "float32".
        check_every: steps between NaN/Inf checks in a rollout (default 50).
        threads: host threads of the CPU kernels (default: by grid and batch size).
"""


def dimension_docstring(equation: str, family: str, ndim: int, parameters: str,
                        options: str) -> str:
    """The docstring of ``family``'s ``ndim``-D class: the ``equation`` it solves, its
    ``parameters`` (Args lines, 8-space indented, each ending in a newline) before ``dt``, its
    ``options`` (limiter, scheme, theta, ... lines) after it, then the options every grid
    solver takes."""
    return (f"Solver of {equation} on a {ndim}D grid;\n    ``u`` has shape {_SHAPES[ndim]}.\n\n"
            f"    Args:\n"
            f"        grid: a {ndim}D :class:`Grid`.\n"
            f"        bc: boundary conditions (default periodic).\n"
            f"{parameters}{_DT}{options}{_COMMON}\n"
            f"    The options in full: :class:`{family}` and :class:`GridSolver`.\n    ")
