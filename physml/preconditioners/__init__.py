"""Learned preconditioners for conjugate gradients: a graph network on A's sparsity graph
predicts a factor ($M = L L^T$ or $M^{-1} = G^T G$) that the linear-algebra layer applies, or
the finest-level smoother $G^T G$ of RS-AMG (:mod:`.smoother`).

* Graphs: :class:`SystemGraph`, :func:`system_graph`, :func:`batch_graphs`.
* The factor network and its use: :class:`FactorModel` (kinds :data:`KINDS`),
  :class:`LearnedPreconditioner`; training: :func:`fit`, :func:`factor_loss` (losses
  :data:`LOSSES`), :class:`TrainingSystem`, :func:`training_system`, :func:`mean_iterations`.
* The learned AMG smoother: :class:`LearnedSmootherAMG`, :func:`fit_smoother`,
  :class:`SmootherSystem`, :func:`smoother_system`, :func:`two_grid_loss`,
  :func:`two_grid_rate`.
"""

from .graph import SystemGraph as SystemGraph
from .graph import batch_graphs as batch_graphs
from .graph import system_graph as system_graph
from .learned import KINDS as KINDS
from .learned import FactorModel as FactorModel
from .learned import LearnedPreconditioner as LearnedPreconditioner
from .losses import LOSSES as LOSSES
from .losses import factor_loss as factor_loss
from .smoother import LearnedSmootherAMG as LearnedSmootherAMG
from .smoother import SmootherSystem as SmootherSystem
from .smoother import fit_smoother as fit_smoother
from .smoother import smoother_system as smoother_system
from .smoother import two_grid_loss as two_grid_loss
from .smoother import two_grid_rate as two_grid_rate
from .training import TrainingSystem as TrainingSystem
from .training import fit as fit
from .training import mean_iterations as mean_iterations
from .training import training_system as training_system

__all__ = [
    "KINDS", "LOSSES", "FactorModel", "LearnedPreconditioner", "LearnedSmootherAMG",
    "SmootherSystem", "SystemGraph", "TrainingSystem", "batch_graphs", "factor_loss", "fit",
    "fit_smoother", "mean_iterations", "smoother_system", "system_graph", "training_system",
    "two_grid_loss", "two_grid_rate",
]
