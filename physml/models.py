r"""Neural-network ansätze for physics-informed training: plain ``torch.nn.Module``s.

All map coordinates of shape ``(n, d_in)`` to fields of shape ``(n, d_out)``.

* :class:`MLP`: $z_{k+1} = \sigma(W_k z_k + b_k)$, linear output layer, Xavier-normal weights.
* :class:`FourierFeatureMLP`: an MLP on $[\cos(2\pi B x), \sin(2\pi B x)]$ with a fixed random
  $B_{ij}\sim N(0, s^2)$ (Tancik et al. 2020), which lets the network fit high frequencies.
* :class:`PeriodicMLP`: an MLP on $\cos, \sin$ of the inputs: periodic by construction.
* :class:`ModifiedMLP`: the gated network of Wang, Teng & Perdikaris (2021):
  $U = \sigma(W_u x + b_u)$, $V = \sigma(W_v x + b_v)$, $H_1 = \sigma(W_1 x + b_1)$,
  $Z_k = \sigma(W_k H_k + b_k)$, $H_{k+1} = (1 - Z_k)\odot U + Z_k\odot V$, output $W H + b$.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "sin": None, "gelu": nn.GELU, "silu": nn.SiLU}


class Sine(nn.Module):
    """$\\sin(x)$ as a module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (tanh, sin, gelu, silu)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return Sine() if name == "sin" else ACTIVATIONS[name]()


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Fully connected network ``d_in -> width x depth -> d_out``."""

    def __init__(
        self, d_in: int, d_out: int, width: int = 32, depth: int = 4, act: str = "tanh"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        n = d_in
        for _ in range(depth):
            layers += [_linear(n, width), activation(act)]
            n = width
        layers.append(_linear(n, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FourierFeatureMLP(nn.Module):
    """An :class:`MLP` on random Fourier features of the input (``features`` frequencies)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int = 32,
        depth: int = 4,
        act: str = "tanh",
        features: int = 64,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.register_buffer("frequencies", scale * torch.randn(d_in, features))
        self.mlp = MLP(2 * features, d_out, width, depth, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * x @ self.frequencies.to(x.dtype)
        return self.mlp(torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1))


class ModifiedMLP(nn.Module):
    """The gated MLP of Wang, Teng & Perdikaris (see the module docstring)."""

    def __init__(
        self, d_in: int, d_out: int, width: int = 32, depth: int = 4, act: str = "tanh"
    ) -> None:
        super().__init__()
        self.encode_u = _linear(d_in, width)
        self.encode_v = _linear(d_in, width)
        self.hidden = nn.ModuleList(
            [_linear(d_in, width)] + [_linear(width, width) for _ in range(depth - 1)]
        )
        self.out = _linear(width, d_out)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.act(self.encode_u(x)), self.act(self.encode_v(x))
        h = x
        for layer in self.hidden:
            z = self.act(layer(h))
            h = (1 - z) * u + z * v
        return self.out(h)


class PeriodicMLP(nn.Module):
    r"""An :class:`MLP` on the periodic embedding
    $[\cos(2\pi m x_i/L), \sin(2\pi m x_i/L)]_{i \le d,\, m \le M}$ (``harmonics`` $M$):
    periodic with period $L$ in every input by construction (the TENG ansatz)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int = 32,
        depth: int = 4,
        act: str = "tanh",
        period: float = 2 * math.pi,
        harmonics: int = 1,
    ) -> None:
        super().__init__()
        self.register_buffer("frequencies", 2 * math.pi / period * torch.arange(1.0, harmonics + 1))
        self.mlp = MLP(2 * d_in * harmonics, d_out, width, depth, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = (x[..., :, None] * self.frequencies.to(x.dtype)).flatten(-2)
        return self.mlp(torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1))


MODELS = {"mlp": MLP, "fourier": FourierFeatureMLP, "modified": ModifiedMLP}


class TwoBranchNetwork(nn.Module):
    """One independent network per output (the two-branch Lagrangian network: the
    characteristic curves and the state along them), outputs concatenated: ``(n, branches)``.

    Args:
        branch: the network class of each branch (e.g. :class:`MLP`).
        d_in: input width.
        branches: number of branches (= outputs).
        **options: passed to each branch (width, depth, act, ...).
    """

    def __init__(self, branch: type[nn.Module], d_in: int, branches: int = 2, **options) -> None:
        super().__init__()
        self.branches = nn.ModuleList([branch(d_in, 1, **options) for _ in range(branches)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(x) for net in self.branches], dim=-1)
