"""Trainers (PINN, Lagrangian PINN, TENG, mixture-of-experts FNO), their problems, samplers, loss
balancing and the least-squares machinery of TENG.

A physics-informed run composes a :class:`PINNProblem` from conditions (:class:`Initial`,
:class:`Dirichlet`, :class:`Neumann`, ...), with coefficients (:class:`Scalar`,
:class:`FieldCoefficient`) and :class:`Observations` for an inverse problem, and trains it with
:class:`PINNTrainer`; TENG evolves a network through a :class:`TENGPDE`. Each name is imported
from its module on first use, so importing one module of the package (``physml.train.sampling``)
loads no other."""

from importlib import import_module

_EXPORTS = {
    "balancing": ("ConFIG", "FixedWeights", "LearningRateAnnealing"),
    "conditions": ("Condition", "Dirichlet", "Initial", "InitialRate", "Neumann", "Periodic",
                   "Robin"),
    "moe": ("MoETrainer",),
    "observations": ("Observations",),
    "pinn": ("PINNTrainer",),
    "problems": ("FieldCoefficient", "PINNProblem", "Scalar", "exact_reference"),
    "sampling": ("DomainSampler",),
    "teng": ("TENG", "TENGPDE", "FitToleranceWarning"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """The exported ``name`` from its module, imported on first use."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
