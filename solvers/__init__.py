"""Numerics layer: differentiable NVIDIA Warp solvers on structured grids.

* Grid solvers (``step``, ``rollout``, ``stable_dt``): :class:`HeatSolver1D`,
  :class:`HeatSolver2D`, :class:`BurgersSolver1D`, :class:`BurgersSolver2D`,
  :class:`AdvectionSolver1D`, :class:`AdvectionSolver2D`, :class:`AllenCahnSolver1D`,
  :class:`AllenCahnSolver2D`, :class:`DiffusionReactionSolver1D`,
  :class:`DiffusionSorptionSolver1D`, :class:`NavierStokesSolver2D`; their dimension-generic
  classes (:class:`HeatSolver`, :class:`BurgersSolver`, :class:`AdvectionSolver`,
  :class:`AllenCahnSolver`) and base :class:`GridSolver`.
* Grids and boundaries: :class:`Grid`, :class:`GridLayout`, :class:`BC`, :class:`BCKind`,
  :class:`BoundaryConditions`, :func:`boundary_conditions`, :func:`periodic`,
  :func:`dirichlet`, :func:`neumann`.
* Schemes and fluxes: :data:`SCHEMES`, :class:`Tableau`, :class:`FluxKind`, :class:`Limiter`.
* Parameters: :class:`Parameter`, :class:`Term`; the grid solvers' keyword options:
  :class:`GridOptions`.
* Cahn–Hilliard with thermomigration: :class:`ThermomigrationSolver`, the free energies
  :class:`DoubleWell`, :class:`RegularSolution`, :class:`DiluteSolution`, and the temperature
  fields :class:`HeatConductionTemperature`, :func:`linear_temperature`.
* Errors: :class:`UnstableStepError`, :class:`BlowUpError`.

Public subpackages: :mod:`physml.solvers.mesh` (P1 operators and PDEs on triangle and
tetrahedron meshes) and :mod:`physml.solvers.linalg` (Krylov solvers, preconditioners, sparse
operators). The modules that define the names above hold their full documentation (for
instance :mod:`physml.solvers.heat`); every other module is an implementation detail.

Importing this package does not import PyTorch and does not initialise Warp.
"""

from typing import TYPE_CHECKING

from .lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .advection import AdvectionSolver as AdvectionSolver
    from .advection import AdvectionSolver1D as AdvectionSolver1D
    from .advection import AdvectionSolver2D as AdvectionSolver2D
    from .base import GridSolver as GridSolver
    from .burgers import BurgersSolver as BurgersSolver
    from .burgers import BurgersSolver1D as BurgersSolver1D
    from .burgers import BurgersSolver2D as BurgersSolver2D
    from .errors import BlowUpError as BlowUpError
    from .errors import UnstableStepError as UnstableStepError
    from .free_energy import DiluteSolution as DiluteSolution
    from .free_energy import DoubleWell as DoubleWell
    from .free_energy import RegularSolution as RegularSolution
    from .grid import BC as BC
    from .grid import BCKind as BCKind
    from .grid import BoundaryConditions as BoundaryConditions
    from .grid import Grid as Grid
    from .grid import boundary_conditions as boundary_conditions
    from .grid import dirichlet as dirichlet
    from .grid import neumann as neumann
    from .grid import periodic as periodic
    from .grid_layout import GridLayout as GridLayout
    from .heat import HeatSolver as HeatSolver
    from .heat import HeatSolver1D as HeatSolver1D
    from .heat import HeatSolver2D as HeatSolver2D
    from .navier_stokes import NavierStokesSolver2D as NavierStokesSolver2D
    from .operators import FluxKind as FluxKind
    from .operators import Limiter as Limiter
    from .parameters import Parameter as Parameter
    from .parameters import Term as Term
    from .reaction_diffusion import AllenCahnSolver as AllenCahnSolver
    from .reaction_diffusion import AllenCahnSolver1D as AllenCahnSolver1D
    from .reaction_diffusion import AllenCahnSolver2D as AllenCahnSolver2D
    from .reaction_diffusion import DiffusionReactionSolver1D as DiffusionReactionSolver1D
    from .solver_options import GridOptions as GridOptions
    from .sorption import DiffusionSorptionSolver1D as DiffusionSorptionSolver1D
    from .thermomigration import ThermomigrationSolver as ThermomigrationSolver
    from .thermomigration_temperature import HeatConductionTemperature as HeatConductionTemperature
    from .thermomigration_temperature import linear_temperature as linear_temperature
    from .timestepping import SCHEMES as SCHEMES
    from .timestepping import Tableau as Tableau

__all__ = [
    "AdvectionSolver", "AdvectionSolver1D", "AdvectionSolver2D", "AllenCahnSolver",
    "AllenCahnSolver1D", "AllenCahnSolver2D", "BC", "BCKind", "BlowUpError", "BoundaryConditions",
    "BurgersSolver", "BurgersSolver1D", "BurgersSolver2D", "DiffusionReactionSolver1D",
    "DiffusionSorptionSolver1D", "DiluteSolution", "DoubleWell", "FluxKind", "Grid", "GridLayout",
    "GridOptions", "GridSolver", "HeatConductionTemperature", "HeatSolver", "HeatSolver1D",
    "HeatSolver2D", "Limiter", "NavierStokesSolver2D", "Parameter", "RegularSolution", "SCHEMES",
    "Tableau", "Term", "ThermomigrationSolver", "UnstableStepError", "boundary_conditions",
    "dirichlet", "linear_temperature", "neumann", "periodic",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "advection": ("AdvectionSolver", "AdvectionSolver1D", "AdvectionSolver2D"),
        "base": ("GridSolver",),
        "burgers": ("BurgersSolver", "BurgersSolver1D", "BurgersSolver2D"),
        "errors": ("BlowUpError", "UnstableStepError"),
        "free_energy": ("DiluteSolution", "DoubleWell", "RegularSolution"),
        "grid": (
            "BC", "BCKind", "BoundaryConditions", "Grid", "boundary_conditions", "dirichlet",
            "neumann", "periodic",
        ),
        "grid_layout": ("GridLayout",),
        "heat": ("HeatSolver", "HeatSolver1D", "HeatSolver2D"),
        "navier_stokes": ("NavierStokesSolver2D",),
        "operators": ("FluxKind", "Limiter"),
        "parameters": ("Parameter", "Term"),
        "reaction_diffusion": (
            "AllenCahnSolver", "AllenCahnSolver1D", "AllenCahnSolver2D",
            "DiffusionReactionSolver1D",
        ),
        "solver_options": ("GridOptions",),
        "sorption": ("DiffusionSorptionSolver1D",),
        "thermomigration": ("ThermomigrationSolver",),
        "thermomigration_temperature": ("HeatConductionTemperature", "linear_temperature"),
        "timestepping": ("SCHEMES", "Tableau"),
    },
)
