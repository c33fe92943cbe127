"""Numerics layer: differentiable NVIDIA Warp solvers on structured grids.

Importing this package does not import PyTorch and does not initialise Warp.
"""

from .lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
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
        "sorption": ("DiffusionSorptionSolver1D",),
        "thermomigration": ("ThermomigrationSolver",),
        "thermomigration_temperature": ("HeatConductionTemperature", "linear_temperature"),
        "timestepping": ("SCHEMES", "Tableau"),
    },
)
