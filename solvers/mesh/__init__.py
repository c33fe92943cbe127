"""Triangle and tetrahedral meshes: data, checks, IO, Gmsh domains and Warp operators."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .domains import annulus as annulus
    from .domains import box as box
    from .domains import disc as disc
    from .domains import double_torus as double_torus
    from .domains import icosphere as icosphere
    from .domains import l_shape as l_shape
    from .domains import sphere as sphere
    from .domains import torus as torus
    from .io import formats as formats
    from .io import read_mesh as read_mesh
    from .io import write_mesh as write_mesh
    from .mesh import Mesh as Mesh
    from .operators import Pattern as Pattern
    from .operators import basis_gradients as basis_gradients
    from .operators import cell_measures as cell_measures
    from .operators import cotan_laplacian as cotan_laplacian
    from .operators import divergence as divergence
    from .operators import element_triplets as element_triplets
    from .operators import element_triplets_adjoint as element_triplets_adjoint
    from .operators import face_normals as face_normals
    from .operators import gradient as gradient
    from .operators import lumped_mass as lumped_mass
    from .operators import mass_matrix as mass_matrix
    from .operators import pattern as pattern
    from .operators import stiffness_matrix as stiffness_matrix
    from .operators import to_scipy as to_scipy
    from .pde import heat as heat
    from .pde import heat_geodesic as heat_geodesic
    from .pde import poisson as poisson

__all__ = [
    "Mesh", "Pattern", "annulus", "basis_gradients", "box", "cell_measures", "cotan_laplacian",
    "disc", "divergence", "double_torus", "element_triplets", "element_triplets_adjoint",
    "face_normals", "formats", "gradient", "heat", "heat_geodesic", "icosphere", "l_shape",
    "lumped_mass", "mass_matrix", "pattern", "poisson", "read_mesh", "sphere", "stiffness_matrix",
    "to_scipy", "torus", "write_mesh",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "domains": (
            "annulus", "box", "disc", "double_torus", "icosphere", "l_shape", "sphere", "torus",
        ),
        "io": ("formats", "read_mesh", "write_mesh"),
        "mesh": ("Mesh",),
        "operators": (
            "Pattern", "basis_gradients", "cell_measures", "cotan_laplacian", "divergence",
            "element_triplets", "element_triplets_adjoint", "face_normals", "gradient",
            "lumped_mass", "mass_matrix", "pattern", "stiffness_matrix", "to_scipy",
        ),
        "pde": ("heat", "heat_geodesic", "poisson"),
    },
)
