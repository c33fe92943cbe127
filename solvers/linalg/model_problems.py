r"""Standard sparse test matrices (SciPy CSR), for tests, benchmarks and examples.

All are on the unit square with $m \times m$ interior nodes, $h = 1/(m + 1)$, homogeneous
Dirichlet boundaries, lexicographic order (x fastest), so $n = m^2$ and the matrices are
scaled by $h^{-2}$.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _difference(m: int) -> sp.csr_matrix:
    """Forward differences $(u_{i} - u_{i-1})/h$ on the m + 1 faces, shape (m + 1, m)."""
    h = 1.0 / (m + 1)
    return sp.diags_array([np.ones(m), -np.ones(m)], offsets=[0, -1], shape=(m + 1, m)) / h


def poisson_2d(m: int, coefficient: np.ndarray | None = None) -> sp.csr_matrix:
    """$-\\nabla\\cdot(k\\nabla u)$ by the 5-point stencil, SPD, shape (m², m²).

    Args:
        m: interior nodes per side.
        coefficient: k on the faces, shape (2, m + 1, m): x-faces as (face, row) then
            y-faces as (face, column); 1 everywhere if None (the Laplacian, $-\\Delta_h$).

    Raises:
        ValueError: ``coefficient`` of another shape (a value per node, (m, m), is not a value
            per face), or with an entry that is not finite and positive.
    """
    if coefficient is not None:
        coefficient = np.asarray(coefficient)
        if not (np.issubdtype(coefficient.dtype, np.floating)
                or np.issubdtype(coefficient.dtype, np.integer)):
            raise ValueError(f"coefficient has dtype {coefficient.dtype}; expected real numbers "
                             "(the matrix is SPD only for a real, positive k)")
        if coefficient.shape != (2, m + 1, m):
            raise ValueError(f"coefficient has shape {coefficient.shape}; expected (2, {m + 1}, "
                             f"{m}): k on the x-faces then the y-faces (average a per-node k "
                             "onto the faces first)")
        if not (np.isfinite(coefficient).all() and (coefficient > 0).all()):
            raise ValueError("coefficient must be finite and positive on every face (the "
                             "matrix is SPD only then)")
        if np.issubdtype(coefficient.dtype, np.integer):  # SciPy's products of mixed dtypes
            coefficient = coefficient.astype(np.float64)
    d, eye = _difference(m), sp.identity(m)
    # x fastest: x-faces per row, y-faces per column; CSR, as a block format stores its
    # blocks' zeros (m <= 3), which would enter every pattern built from the matrix
    gx, gy = sp.kron(eye, d, format="csr"), sp.kron(d, eye, format="csr")
    if coefficient is None:
        coefficient = np.ones((2, m + 1, m))
    kx = sp.diags_array(coefficient[0].T.ravel())
    ky = sp.diags_array(coefficient[1].ravel())
    return sp.csr_matrix(gx.T @ kx @ gx + gy.T @ ky @ gy)


def layered_coefficient(m: int, contrast: float, seed: int = 0) -> np.ndarray:
    """Face coefficients $k = \\text{contrast}^{\\xi}$, $\\xi \\sim U(0, 1)$ per face, shape
    (2, m + 1, m): a rough, high-contrast medium on which Jacobi and AMG matter."""
    rng = np.random.default_rng(seed)
    return contrast ** rng.uniform(size=(2, m + 1, m))


def convection_diffusion_2d(m: int, epsilon: float, velocity: tuple[float, float]) -> sp.csr_matrix:
    """$-\\epsilon\\Delta u + v\\cdot\\nabla u$, upwind convection, non-symmetric, (m², m²).

    Args:
        m: interior nodes per side.
        epsilon: diffusivity (> 0).
        velocity: constant $(v_x, v_y)$; the cell Péclet number is $|v| h / (2\\epsilon)$.
    """
    h = 1.0 / (m + 1)
    eye = sp.identity(m)
    upwind = []
    for v in velocity:  # (u_i - u_{i-1})/h for v > 0, (u_{i+1} - u_i)/h for v < 0
        offset = -1 if v >= 0 else 1
        stencil = sp.diags_array([np.ones(m), -np.ones(m - 1)], offsets=[0, offset])
        upwind.append(abs(v) / h * stencil)
    convection = sp.kron(eye, upwind[0], format="csr") + sp.kron(upwind[1], eye, format="csr")
    return sp.csr_matrix(epsilon * poisson_2d(m) + convection)
