r"""Selected columns of a network's per-sample Jacobian $\partial u_\theta(X)/\partial\theta_S$
by outer products, for networks whose parameters are all weights and biases of ``nn.Linear``
layers (the MLPs of :mod:`physml.models`).

A linear layer $z = Wa + b$ met once in the forward pass contributes, for sample $k$,
$$\frac{\partial u_k}{\partial W_{ij}} = g_{ki}\,a_{kj},\qquad
\frac{\partial u_k}{\partial b_i} = g_{ki},\qquad g_k = \frac{\partial u_k}{\partial z_k},$$
and since samples do not interact, $g$ for all samples at once is the gradient of
$\sum_k u_k$ with respect to the layer's output (one backward pass). Column $c$ of the result
is then one product of a column of $g$ and a column of $[a, 1]$: the cost is one forward and
one backward pass plus $O(n|S|)$, and the memory $O(n|S|)$ plus the activations, where
``vmap(jacrev)`` builds all $p$ columns per sample first ($O(np)$ work and memory: 9 s against
0.3 s on two CPU cores for the 6801-parameter TENG network, 16384 points x 1536 columns).
"""

from __future__ import annotations

from itertools import accumulate

import torch
from torch import nn
from torch.func import functional_call


class NotLinearLayers(ValueError):
    """A network :class:`LinearLayerJacobian` does not apply to; the message says why."""


class LinearLayerJacobian:
    """Per-sample Jacobian columns of ``model``'s scalar output; see the module docstring.

    Build it with :meth:`for_model`, which raises :class:`NotLinearLayers`, saying why, where
    the method does not apply (a parameter outside a linear layer, or a layer used other than
    once per forward pass).
    """

    def __init__(self, model: nn.Module, layers: list[nn.Linear], signal_row: torch.Tensor,
                 input_row: torch.Tensor) -> None:
        self.model = model
        self.layers = layers
        # For every flat parameter index, its row in the stacked signals g^T of all layers
        # and its row in the stacked inputs [a, 1]^T (a bias reads the row of ones).
        self.signal_row, self.input_row = signal_row, input_row

    @classmethod
    def for_model(cls, model: nn.Module, d_in: int) -> LinearLayerJacobian:
        """The Jacobian of ``model`` (inputs (n, ``d_in``)), or :class:`NotLinearLayers`."""
        linear = {name: module for name, module in model.named_modules()
                  if isinstance(module, nn.Linear)}
        owners: list[tuple[nn.Linear, str]] = []
        for name, _ in model.named_parameters():
            owner, _, kind = name.rpartition(".")
            if owner not in linear or kind not in ("weight", "bias"):
                raise NotLinearLayers(f"parameter {name!r} is not the weight or bias of an "
                                      "nn.Linear")
            owners.append((linear[owner], kind))
        layers = list(dict.fromkeys(layer for layer, _ in owners))
        first_signal = dict(zip(layers, accumulate([0] + [m.out_features for m in layers])))
        first_input = dict(zip(layers, accumulate([0] + [m.in_features + 1 for m in layers])))
        signal_row, input_row = [], []
        for layer, kind in owners:
            rows = first_signal[layer] + torch.arange(layer.out_features)
            if kind == "weight":
                i, j = torch.meshgrid(rows, first_input[layer] + torch.arange(layer.in_features),
                                      indexing="ij")
            else:
                i, j = rows, torch.full_like(rows, first_input[layer] + layer.in_features)
            signal_row.append(i.reshape(-1))
            input_row.append(j.reshape(-1))
        if not layers:
            raise NotLinearLayers("the network has no parameters")
        probe = next(model.parameters())
        calls = cls._record(model, layers, torch.zeros(2, d_in, dtype=probe.dtype,
                                                       device=probe.device), None)[1]
        names = {module: name for name, module in linear.items()}
        for layer, c in zip(layers, calls):
            if len(c) != 1:
                raise NotLinearLayers(f"layer {names[layer]!r} runs {len(c)} times per forward "
                                      "pass, not once")
        return cls(model, layers, torch.cat(signal_row).to(probe.device),
                   torch.cat(input_row).to(probe.device))

    @staticmethod
    def _record(model: nn.Module, layers: list[nn.Linear], X: torch.Tensor,
                params: dict[str, torch.Tensor] | None):
        """Forward pass recording each layer's (input, output) per call."""
        calls: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in layers]
        handles = [layer.register_forward_hook(
            lambda module, args, output, k=k: calls[k].append((args[0], output)))
            for k, layer in enumerate(layers)]
        try:
            out = model(X) if params is None else functional_call(model, params, (X,))
        finally:
            for handle in handles:
                handle.remove()
        return out, calls

    def transposed(self, params: dict[str, torch.Tensor], X: torch.Tensor,
                   columns: torch.Tensor, out: torch.Tensor) -> None:
        r"""Write $(\partial u(X)/\partial\theta_S)^\top$, shape (|S|, n), into ``out`` for
        the flat parameter indices ``columns`` and the parameters ``params`` (name -> tensor).
        Transposed, so that each column is one contiguous gather-and-multiply."""
        with torch.enable_grad():
            params = {name: p.detach().requires_grad_() for name, p in params.items()}
            prediction, calls = self._record(self.model, self.layers, X, params)
            signals = torch.autograd.grad(prediction[:, 0].sum(), [c[0][1] for c in calls])
        ones = torch.ones(1, X.shape[0], dtype=X.dtype, device=X.device)
        inputs = torch.cat([part for c in calls for part in (c[0][0].detach().T, ones)])
        signals = torch.cat([g.T for g in signals])
        torch.mul(signals.index_select(0, self.signal_row[columns]),
                  inputs.index_select(0, self.input_row[columns]), out=out)
