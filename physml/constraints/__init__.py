"""Hard physical constraints: inner least-squares solves with an implicit-function backward,
and mixtures of experts over space–time blocks."""

from .implicit import least_squares_solution as least_squares_solution
from .implicit import objective_hessian as objective_hessian
from .levenberg_marquardt import LevenbergMarquardt as LevenbergMarquardt
from .levenberg_marquardt import LMResult as LMResult
from .levenberg_marquardt import batched_jacobian as batched_jacobian
