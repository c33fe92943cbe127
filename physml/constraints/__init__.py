"""Hard physical constraints: inner least-squares solves with an implicit-function backward,
and mixtures of experts over space–time blocks."""

from .colouring import ExpertColouring as ExpertColouring
from .colouring import greedy_colours as greedy_colours
from .diffusion_sorption import DiffusionSorptionRows as DiffusionSorptionRows
from .experts import BlockRouter as BlockRouter
from .experts import interface_differences as interface_differences
from .experts import interface_jump as interface_jump
from .experts import interface_profiles as interface_profiles
from .hard import Continuity as Continuity
from .hard import HardConstraint as HardConstraint
from .hard import probed_dependence as probed_dependence
from .hard import row_owners as row_owners
from .implicit import UnconvergedSolveWarning as UnconvergedSolveWarning
from .implicit import least_squares_solution as least_squares_solution
from .implicit import objective_hessian as objective_hessian
from .levenberg_marquardt import LevenbergMarquardt as LevenbergMarquardt
from .levenberg_marquardt import LMResult as LMResult
from .levenberg_marquardt import batched_jacobian as batched_jacobian
from .navier_stokes import NavierStokesRows as NavierStokesRows
from .partition import PartitionOfUnity as PartitionOfUnity
from .partition import trapezoid_weights as trapezoid_weights
