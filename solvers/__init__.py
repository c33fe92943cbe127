"""Numerics layer: differentiable NVIDIA Warp solvers on structured grids.

* Grid solvers (``step``, ``rollout``, ``stable_dt``): :class:`HeatSolver1D`,
  :class:`HeatSolver2D`, :class:`BurgersSolver1D`, :class:`BurgersSolver2D`,
  :class:`AdvectionSolver1D`, :class:`AdvectionSolver2D`, :class:`AllenCahnSolver1D`,
  :class:`AllenCahnSolver2D`, :class:`DiffusionReactionSolver1D`,
  :class:`DiffusionSorptionSolver1D`, :class:`NavierStokesSolver2D`; their dimension-generic
  classes (:class:`HeatSolver`, :class:`BurgersSolver`, :class:`AdvectionSolver`,
  :class:`AllenCahnSolver`) and base :class:`GridSolver`.
* Grids and boundaries: :class:`Grid`, :class:`GridLayout`, :class:`BC`, :class:`BCKind`,
  :class:`BoundaryConditions`, :func:`boundary_conditions`, :func:`periodic`,
  :func:`dirichlet`, :func:`neumann`.
* Schemes and fluxes: :data:`SCHEMES`, :class:`Tableau`, :class:`FluxKind`, :class:`Limiter`.
* Parameters: :class:`Parameter`, :class:`Term`.
* Cahn–Hilliard with thermomigration: :class:`ThermomigrationSolver`, the free energies
  :class:`DoubleWell`, :class:`RegularSolution`, :class:`DiluteSolution`, and the temperature
  fields :class:`HeatConductionTemperature`, :func:`linear_temperature`.
* Errors: :class:`UnstableStepError`, :class:`BlowUpError`.

Public subpackages: :mod:`physml.solvers.mesh` (P1 operators and PDEs on triangle and
tetrahedron meshes) and :mod:`physml.solvers.linalg` (Krylov solvers, preconditioners, sparse
operators). The modules that define the names above hold their full documentation (for
instance :mod:`physml.solvers.heat`); every other module is an implementation detail.

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
