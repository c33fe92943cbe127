r"""Hard physical constraints: inner least-squares solves with an implicit-function backward,
and mixtures of experts over space–time blocks.

* The constrained layer: :class:`HardConstraint` ($u = b\cdot\omega$, $\omega$ from an inner
  least squares), :class:`Continuity` (how experts meet), :func:`probed_dependence`,
  :func:`row_owners`.
* Inner solves: :func:`least_squares_solution` (implicit-function backward),
  :func:`objective_hessian`, :class:`UnconvergedSolveWarning`; :class:`LevenbergMarquardt`,
  :class:`LMResult`, :func:`batched_jacobian`.
* Residual rows of the constrained PDEs: :class:`DiffusionSorptionRows`,
  :class:`NavierStokesRows`.
* Experts over blocks: :class:`BlockRouter`, :class:`PartitionOfUnity`,
  :func:`trapezoid_weights`, :func:`interface_jump`, :func:`interface_differences`,
  :func:`interface_profiles`; coloured Jacobians: :class:`ExpertColouring`,
  :func:`greedy_colours`.
"""

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

__all__ = [
    "BlockRouter", "Continuity", "DiffusionSorptionRows", "ExpertColouring", "HardConstraint",
    "LMResult", "LevenbergMarquardt", "NavierStokesRows", "PartitionOfUnity",
    "UnconvergedSolveWarning", "batched_jacobian", "greedy_colours", "interface_differences",
    "interface_jump", "interface_profiles", "least_squares_solution", "objective_hessian",
    "probed_dependence", "row_owners", "trapezoid_weights",
]
