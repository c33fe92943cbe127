"""Sparse linear algebra on Warp arrays: operators, Krylov solvers and preconditioners.

Every implicit solve of the package goes through here. Importing it does not import PyTorch
and does not initialise Warp.
"""

from ..lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "restarted_gmres": ("gmres",),
        "incomplete_cholesky": ("IncompleteCholesky",),
        "krylov": ("bicgstab", "cg", "prepare"),
        "krylov_outcome": ("SolveResult",),
        "linear_operator": (
            "CsrOperator", "LinearOperator", "StencilOperator", "csr_from_scipy", "csr_to_scipy",
        ),
        "preconditioners": (
            "PRECONDITIONERS", "Jacobi", "Preconditioner", "RugeStubenAMG",
            "SmoothedAggregationAMG",
        ),
        "sparse_inverse": ("FactorizedSparseInverse", "SparseInverseFactor"),
        "triangular": ("CholeskyFactor", "LowerPattern"),
    },
)
