"""Numerics layer: differentiable NVIDIA Warp solvers on structured grids.

Importing this package does not import PyTorch and does not initialise Warp.
"""

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
from .sorption import DiffusionSorptionSolver1D as DiffusionSorptionSolver1D
from .thermomigration import ThermomigrationSolver as ThermomigrationSolver
from .thermomigration_temperature import HeatConductionTemperature as HeatConductionTemperature
from .thermomigration_temperature import linear_temperature as linear_temperature
from .timestepping import SCHEMES as SCHEMES
from .timestepping import Tableau as Tableau
