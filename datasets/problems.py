"""The standard problems of ``physml solve`` and of dataset specs: each PDE with its domain,
boundaries, default parameters and initial condition, resolved from names and command-line
values in one registry.

A problem names its solver class; what the PDE's parameters are (units, ranges, which term
they scale) is declared once, by the solver (``PARAMETERS``), and :func:`parameters_by_name`
collects them for the command line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import solvers as s
from .memory import WORKING_FIELDS, check_fits_in_memory


def _teng_initial(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.04 * np.cosh(3 * np.sin(x)) * np.sinh(np.sin(y))


@dataclass(frozen=True)
class Problem:
    """A named PDE problem.

    Attributes:
        solver: the solver class.
        equation: the PDE, as text for metadata and ``--help``.
        lower, upper: domain bounds per axis [m].
        bc: boundary kind on every side ("periodic", "dirichlet", "neumann"), or None when
            the solver fixes its own boundaries.
        parameters: default physical parameters.
        initial: u0 as a function of the cell-centre coordinates.
        t_end: default final time [s].
        initial_text: ``initial`` as a formula of x (and y) in a case file's expression
            syntax: ``physml solve --help`` states it and its output keeps it.
        options: extra solver options (scheme, space, ...).
        scale: factors from the problem's parameter convention to the solver's (PDEBench's
            Burgers uses a viscosity of Nu/pi: ``{"nu": 1/pi}``).
        quantity: CF ``(long_name, units)`` of the stored field ``u``.
    """

    solver: type
    equation: str
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    bc: str | None
    parameters: dict[str, float | tuple[float, ...]]
    initial: Callable[..., np.ndarray]
    t_end: float
    initial_text: str
    options: dict[str, str] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    quantity: tuple[str, str] = ("solution u", "1")

    @property
    def ndim(self) -> int:
        return len(self.lower)


TWO_PI = 2 * np.pi
BURGERS_VELOCITY = ("velocity u", "m s-1")
"""Burgers' u: with x in m, t in s and nu in m2 s-1, u_t + u u_x = nu u_xx balances in m s-2."""

PROBLEMS: dict[str, Problem] = {
    "heat1d": Problem(
        s.HeatSolver1D,
        "u_t = nu u_xx",
        (0.0,),
        (TWO_PI,),
        "periodic",
        {"nu": 0.1},
        lambda x: np.sin(x) + 0.5 * np.sin(3 * x),
        1.0,
        initial_text="sin(x) + 0.5*sin(3*x)",
    ),
    "heat2d": Problem(
        s.HeatSolver2D,
        "u_t = nu (u_xx + u_yy)",
        (0.0, 0.0),
        (TWO_PI, TWO_PI),
        "periodic",
        {"nu": 0.1},
        _teng_initial,
        1.0,
        initial_text="0.04*cosh(3*sin(x))*sinh(sin(y))",
    ),
    "advection1d": Problem(
        s.AdvectionSolver1D,
        "u_t + beta u_x = 0",
        (0.0,),
        (1.0,),
        "periodic",
        {"beta": 1.0},
        lambda x: np.sin(2 * np.pi * x),
        1.0,
        initial_text="sin(2*pi*x)",
    ),
    "advection2d": Problem(
        s.AdvectionSolver2D,
        "u_t + beta_x u_x + beta_y u_y = 0",
        (0.0, 0.0),
        (1.0, 1.0),
        "periodic",
        {"beta": (1.0, 0.5)},
        lambda x, y: np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.01),
        1.0,
        initial_text="exp(-((x - 0.5)**2 + (y - 0.5)**2)/0.01)",
    ),
    "burgers1d": Problem(
        s.BurgersSolver1D,
        "u_t + (u^2/2)_x = nu u_xx",
        (-1.0,),
        (1.0,),
        "dirichlet",
        {"nu": 0.01 / np.pi},
        lambda x: -np.sin(np.pi * x),
        1.0,
        initial_text="-sin(pi*x)",
        quantity=BURGERS_VELOCITY,
    ),
    "burgers1d_pdebench": Problem(
        s.BurgersSolver1D,
        "u_t + (u^2/2)_x = (nu/pi) u_xx",
        (0.0,),
        (1.0,),
        "periodic",
        {"nu": 0.01},
        lambda x: np.sin(2 * np.pi * x),
        2.0,
        initial_text="sin(2*pi*x)",
        scale={"nu": 1 / np.pi},
        quantity=BURGERS_VELOCITY,
    ),
    "burgers2d": Problem(
        s.BurgersSolver2D,
        "u_t + (u^2/2)_x + (u^2/2)_y = nu (u_xx + u_yy)",
        (0.0, 0.0),
        (TWO_PI, TWO_PI),
        "periodic",
        {"nu": 0.01},
        _teng_initial,
        4.0,
        initial_text="0.04*cosh(3*sin(x))*sinh(sin(y))",
        quantity=BURGERS_VELOCITY,
    ),
    "allen_cahn1d": Problem(
        s.AllenCahnSolver1D,
        "u_t = nu u_xx + rho (u - u^3)",
        (-1.0,),
        (1.0,),
        "periodic",
        {"nu": 1e-4, "rho": 5.0},
        lambda x: x**2 * np.cos(np.pi * x),
        1.0,
        initial_text="x**2*cos(pi*x)",
    ),
    "allen_cahn2d": Problem(
        s.AllenCahnSolver2D,
        "u_t = nu (u_xx + u_yy) + rho (u - u^3)",
        (0.0, 0.0),
        (TWO_PI, TWO_PI),
        "periodic",
        {"nu": 0.005, "rho": 1.0},
        _teng_initial,
        4.0,
        initial_text="0.04*cosh(3*sin(x))*sinh(sin(y))",
    ),
    "diffusion_reaction1d": Problem(
        s.DiffusionReactionSolver1D,
        "u_t = nu u_xx + rho u (1 - u)",
        (0.0,),
        (1.0,),
        "periodic",
        {"nu": 0.5, "rho": 1.0},
        lambda x: 0.5 + 0.4 * np.sin(2 * np.pi * x),
        1.0,
        initial_text="0.5 + 0.4*sin(2*pi*x)",
    ),
    "diffusion_sorption1d": Problem(
        s.DiffusionSorptionSolver1D,
        "u_t = D / R(u) u_xx",
        (0.0,),
        (1.0,),
        None,
        {"D": 5e-4},
        lambda x: np.full_like(x, 0.1),
        500.0,
        initial_text="0.1",
    ),
    "navier_stokes2d": Problem(
        s.NavierStokesSolver2D,
        "w_t + u . grad w = nu lap w + f, -lap psi = w, u = (psi_y, -psi_x)",
        (0.0, 0.0),
        (1.0, 1.0),
        "periodic",
        {"nu": 1e-4, "forcing": 0.1},
        lambda x, y: np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y),
        10.0,
        initial_text="sin(2*pi*x)*sin(2*pi*y)",
        quantity=("vorticity omega", "s-1"),
    ),
}


def parameters_by_name() -> dict[str, list[tuple[str, s.Parameter]]]:
    """Every parameter of the problems' solvers by name, each with the problems that have it
    (in registry order): the ``physml solve`` flags."""
    table: dict[str, list[tuple[str, s.Parameter]]] = {}
    for key, prob in PROBLEMS.items():
        for parameter in prob.solver.PARAMETERS:
            table.setdefault(parameter.name, []).append((key, parameter))
    return table


def problem(name: str) -> Problem:
    """The problem called ``name``, with a clear error listing the known ones."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown PDE {name!r}; allowed: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]


def build_solver(
    name: str,
    shape: tuple[int, ...],
    parameters: dict[str, float | tuple[float, ...]],
    **options,
) -> tuple[s.GridSolver, np.ndarray]:
    """The solver of problem ``name`` on ``shape`` cells (``dt`` unset) and its u0.

    Raises:
        ValueError: an unknown problem or parameter, a shape of another dimension, or one whose
            working state (:data:`~physml.datasets.memory.WORKING_FIELDS` float64 fields) would
            not fit in this machine's memory.
    """
    prob = problem(name)
    if len(shape) != prob.ndim:
        raise ValueError(f"{name} needs {prob.ndim} grid size(s); got {len(shape)}")
    cells = math.prod(shape)
    check_fits_in_memory(8 * WORKING_FIELDS * cells, f"grid {list(shape)}: the solver's "
                         f"working state ({WORKING_FIELDS} fields of {cells} cells)")
    grid = s.Grid(shape, prob.lower, prob.upper)
    unknown = set(parameters) - set(prob.solver.parameter_names)
    if unknown:
        allowed = ", ".join(prob.solver.parameter_names)
        raise ValueError(f"{name} has no parameter(s) {sorted(unknown)}; allowed: {allowed}")
    values = {**prob.parameters, **parameters}
    for name, factor in prob.scale.items():
        values[name] = factor * values[name]
    args = {**values, **prob.options, **options}
    if prob.bc is not None:
        args["bc"] = s.boundary_conditions(prob.bc, grid.ndim)
    solver = prob.solver(grid, dt=None, **args)
    return solver, prob.initial(*grid.mesh())
