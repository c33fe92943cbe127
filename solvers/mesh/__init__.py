"""Triangle and tetrahedral meshes: data, checks, IO, Gmsh domains and Warp operators."""

from ..lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
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
