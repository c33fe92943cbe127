r"""Loss balancing for multi-term physics-informed losses: strategies passed to a trainer.

Each strategy turns the loss terms $L_i$ (a dict: the PDE residual under ``"residual"``, or one
term per equation of a system, named by ``backward``'s ``residuals``) into parameter gradients
with :meth:`backward`, and into one scalar with :meth:`total` (for line-search optimisers such
as L-BFGS).

* :class:`FixedWeights`: $\nabla\sum_i \lambda_i L_i$ with constant $\lambda_i$ (default 1).
* :class:`LearningRateAnnealing` (Wang, Teng & Perdikaris 2021, Alg. 1): every ``every`` steps
  ($L_r$ the residual, the sum of the residual terms for a system; their weights stay fixed)
  $\hat\lambda_i = \max_l\max|\nabla_{W_l} L_r| / \operatorname{mean}_l\overline{|\nabla_{W_l}
  (\lambda_i L_i)|}$ over the weight matrices $W_l$ (statistics per layer, then across layers,
  and the gradient of the currently weighted term, as in the authors' implementation: this
  damps the update, whose fixed point is $\lambda_i^2 = $ the gradient ratio) and
  $\lambda_i \leftarrow \alpha\lambda_i + (1-\alpha)\hat\lambda_i$ ($\alpha = 0.9$).
* :class:`ConFIG` (Liu et al. 2024): with unit gradients $\hat g_i$, the direction
  $v = \hat G^{+}\mathbf 1$ (equal positive projection on every $\hat g_i$, so no term's loss
  increases to first order), normalised, scaled by $\sum_i g_i\cdot\hat v$.

Under ``torch.distributed`` the gradients the weights and directions are computed from are
averaged over the processes first, so every process holds the one-process weights.
"""

from __future__ import annotations

import torch

from ..solvers.errors import whole_number
from .distributed import average


def _flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
    )


def _layer_gradients(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """|gradient| of ``loss`` for each weight matrix (parameters with 2 or more dims), the
    gradient averaged over the processes first."""
    weights = [p for p in params if p.dim() >= 2]
    grads = torch.autograd.grad(loss, weights, retain_graph=True, allow_unused=True)
    return [average(g if g is not None else torch.zeros_like(w)).abs()
            for g, w in zip(grads, weights)]


def _assign(flat: torch.Tensor, params: list[torch.Tensor]) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


class FixedWeights:
    """Constant weights $\\lambda_i$ per term (missing terms weigh 1)."""

    averages_gradients = False
    """Whether :meth:`backward` leaves the gradients it writes averaged over the processes
    already (the trainer then does not average them again)."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(weights or {})

    def weight(self, name: str) -> float:
        return self.weights.get(name, 1.0)

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weight(k) * v for k, v in losses.items())

    def backward(self, losses, params, step: int, residuals=("residual",)) -> torch.Tensor:
        """Gradients of the weighted terms into ``params``; returns the total. ``residuals``:
        the names of the PDE's residual terms among ``losses``."""
        total = self.total(losses)
        total.backward()
        return total

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])


class LearningRateAnnealing(FixedWeights):
    """Gradient-statistics weights of Wang et al., updated every ``every`` steps.

    Args:
        weights: the starting weight of each loss term by name (default 1 each).
        every: steps between updates (the weights hold in between).
        momentum: the share of the old weight kept at an update, in [0, 1): the new weight is
            ``momentum * old + (1 - momentum) * estimate``, the estimate the ratio of the
            residual's largest gradient entry to the term's mean gradient over the layers.
    """

    def __init__(
        self, weights: dict[str, float] | None = None, every: int = 10, momentum: float = 0.9
    ) -> None:
        super().__init__(weights)
        if not (isinstance(momentum, int | float) and not isinstance(momentum, bool)
                and 0 <= momentum < 1):
            raise ValueError(f"momentum={momentum!r} must lie in [0, 1)")
        self.every, self.momentum = whole_number(every, "every", 1), momentum

    def backward(self, losses, params, step: int, residuals=("residual",)) -> torch.Tensor:
        reference = [name for name in residuals if name in losses]
        if step % self.every == 0 and reference and len(losses) > len(reference):
            residual = sum(losses[name] for name in reference)
            residual = max(g.max() for g in _layer_gradients(residual, params))
            for name, loss in losses.items():
                if name in reference:
                    continue
                layers = _layer_gradients(self.weight(name) * loss, params)
                mean = torch.stack([g.mean() for g in layers]).mean()
                estimate = float(residual / mean.clamp_min(1e-30))
                self.weights[name] = (
                    self.momentum * self.weight(name) + (1 - self.momentum) * estimate
                )
        return super().backward(losses, params, step, residuals)


class ConFIG(FixedWeights):
    """Conflict-free gradient directions (weights only enter :meth:`total`), from the terms'
    gradients averaged over the processes."""

    averages_gradients = True

    def backward(self, losses, params, step: int, residuals=("residual",)) -> torch.Tensor:
        grads = average(torch.stack([_flat_grad(loss, params) for loss in losses.values()]))
        units = grads / grads.norm(dim=1, keepdim=True).clamp_min(1e-30)
        ones = torch.ones(len(losses), dtype=grads.dtype, device=grads.device)
        direction = torch.linalg.pinv(units) @ ones  # minimum-norm solution of units v = 1
        direction = direction / direction.norm().clamp_min(1e-30)
        _assign((grads @ direction).sum() * direction, params)
        return self.total(losses).detach()


BALANCERS = {"fixed": FixedWeights, "annealing": LearningRateAnnealing, "config": ConFIG}
