"""Sparse linear algebra on Warp arrays: operators, Krylov solvers and preconditioners, and
the model problems (SciPy matrices) that tests, benchmarks and examples solve.

Every implicit solve of the package goes through here. Importing it does not import PyTorch
and does not initialise Warp.
"""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .incomplete_cholesky import IncompleteCholesky as IncompleteCholesky
    from .krylov import bicgstab as bicgstab
    from .krylov import cg as cg
    from .krylov import prepare as prepare
    from .krylov_outcome import SolveResult as SolveResult
    from .linear_operator import CsrOperator as CsrOperator
    from .linear_operator import LinearOperator as LinearOperator
    from .linear_operator import StencilOperator as StencilOperator
    from .linear_operator import csr_from_scipy as csr_from_scipy
    from .linear_operator import csr_to_scipy as csr_to_scipy
    from .model_problems import convection_diffusion_2d as convection_diffusion_2d
    from .model_problems import layered_coefficient as layered_coefficient
    from .model_problems import poisson_2d as poisson_2d
    from .preconditioners import PRECONDITIONERS as PRECONDITIONERS
    from .preconditioners import Jacobi as Jacobi
    from .preconditioners import Preconditioner as Preconditioner
    from .preconditioners import RugeStubenAMG as RugeStubenAMG
    from .preconditioners import SmoothedAggregationAMG as SmoothedAggregationAMG
    from .restarted_gmres import gmres as gmres
    from .sparse_inverse import FactorizedSparseInverse as FactorizedSparseInverse
    from .sparse_inverse import SparseInverseFactor as SparseInverseFactor
    from .triangular import CholeskyFactor as CholeskyFactor
    from .triangular import LowerPattern as LowerPattern

__all__ = [
    "CholeskyFactor", "CsrOperator", "FactorizedSparseInverse", "IncompleteCholesky", "Jacobi",
    "LinearOperator", "LowerPattern", "PRECONDITIONERS", "Preconditioner", "RugeStubenAMG",
    "SmoothedAggregationAMG", "SolveResult", "SparseInverseFactor", "StencilOperator", "bicgstab",
    "cg", "convection_diffusion_2d", "csr_from_scipy", "csr_to_scipy", "gmres",
    "layered_coefficient", "poisson_2d", "prepare",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "restarted_gmres": ("gmres",),
        "incomplete_cholesky": ("IncompleteCholesky",),
        "krylov": ("bicgstab", "cg", "prepare"),
        "krylov_outcome": ("SolveResult",),
        "linear_operator": (
            "CsrOperator", "LinearOperator", "StencilOperator", "csr_from_scipy", "csr_to_scipy",
        ),
        "model_problems": ("convection_diffusion_2d", "layered_coefficient", "poisson_2d"),
        "preconditioners": (
            "PRECONDITIONERS", "Jacobi", "Preconditioner", "RugeStubenAMG",
            "SmoothedAggregationAMG",
        ),
        "sparse_inverse": ("FactorizedSparseInverse", "SparseInverseFactor"),
        "triangular": ("CholeskyFactor", "LowerPattern"),
    },
)
