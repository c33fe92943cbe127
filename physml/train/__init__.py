"""Trainers (PINN, Lagrangian PINN, TENG, mixture-of-experts FNO), their problems, samplers, loss
balancing and the least-squares machinery of TENG.

A physics-informed run composes a :class:`PINNProblem` from conditions (:class:`Initial`,
:class:`Dirichlet`, :class:`Neumann`, ...) and trains it with :class:`PINNTrainer`; TENG evolves
a network through a :class:`TENGPDE`."""

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
from .pinn import PINNTrainer as PINNTrainer
from .problems import PINNProblem as PINNProblem
from .problems import exact_reference as exact_reference
from .sampling import DomainSampler as DomainSampler
from .teng import TENG as TENG
from .teng import TENGPDE as TENGPDE


def __getattr__(name: str):
    """``MoETrainer`` is imported on first use (it loads the dataset and constraint layers)."""
    if name == "MoETrainer":
        from .moe import MoETrainer

        return MoETrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
