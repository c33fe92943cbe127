"""Trainers (PINN, Lagrangian PINN, TENG, mixture-of-experts FNO), their problems, samplers, loss
balancing and the least-squares machinery of TENG.

A physics-informed run composes a :class:`PINNProblem` from conditions (:class:`Initial`,
:class:`Dirichlet`, :class:`Neumann`, ...), with coefficients (:class:`Scalar`,
:class:`FieldCoefficient`) and :class:`Observations` for an inverse problem, and trains it with
:class:`PINNTrainer`; TENG evolves a network through a :class:`TENGPDE`. Each name is imported
from its module on first use, so importing one module of the package (``physml.train.sampling``)
loads no other."""

from typing import TYPE_CHECKING

from ..solvers.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .balancing import ConFIG as ConFIG
    from .balancing import FixedWeights as FixedWeights
    from .balancing import LearningRateAnnealing as LearningRateAnnealing
    from .conditions import Condition as Condition
    from .conditions import Dirichlet as Dirichlet
    from .conditions import Initial as Initial
    from .conditions import InitialRate as InitialRate
    from .conditions import Neumann as Neumann
    from .conditions import Periodic as Periodic
    from .conditions import Robin as Robin
    from .moe import MoETrainer as MoETrainer
    from .observations import Observations as Observations
    from .pinn import PINNTrainer as PINNTrainer
    from .problems import FieldCoefficient as FieldCoefficient
    from .problems import PINNProblem as PINNProblem
    from .problems import Scalar as Scalar
    from .problems import exact_reference as exact_reference
    from .sampling import DomainSampler as DomainSampler
    from .teng import TENG as TENG
    from .teng import TENGPDE as TENGPDE
    from .teng import FitToleranceWarning as FitToleranceWarning

__all__ = [
    "ConFIG", "Condition", "Dirichlet", "DomainSampler", "FieldCoefficient", "FitToleranceWarning",
    "FixedWeights", "Initial", "InitialRate", "LearningRateAnnealing", "MoETrainer", "Neumann",
    "Observations", "PINNProblem", "PINNTrainer", "Periodic", "Robin", "Scalar", "TENG", "TENGPDE",
    "exact_reference",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "balancing": ("ConFIG", "FixedWeights", "LearningRateAnnealing"),
        "conditions": (
            "Condition", "Dirichlet", "Initial", "InitialRate", "Neumann", "Periodic", "Robin",
        ),
        "moe": ("MoETrainer",),
        "observations": ("Observations",),
        "pinn": ("PINNTrainer",),
        "problems": ("FieldCoefficient", "PINNProblem", "Scalar", "exact_reference"),
        "sampling": ("DomainSampler",),
        "teng": ("FitToleranceWarning", "TENG", "TENGPDE"),
    },
)
