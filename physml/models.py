r"""Neural-network ansätze for physics-informed training: plain ``torch.nn.Module``s.

All map coordinates of shape ``(n, d_in)`` to fields of shape ``(n, d_out)``.

* :class:`MLP`: $z_{k+1} = \sigma(W_k z_k + b_k)$, linear output layer, Xavier-normal weights.
* :class:`FourierFeatureMLP`: an MLP on $[\cos(2\pi B x), \sin(2\pi B x)]$ with a fixed random
  $B_{ij}\sim N(0, s^2)$ (Tancik et al. 2020), which lets the network fit high frequencies.
* :class:`PeriodicMLP`: an MLP on $\cos, \sin$ of the periodic inputs (the others passed
  through): periodic by construction in those inputs.
* :class:`ModifiedMLP`: the gated network of Wang, Teng & Perdikaris (2021):
  $U = \sigma(W_u x + b_u)$, $V = \sigma(W_v x + b_v)$, $H_1 = \sigma(W_0 x + b_0)$, then for
  $k = 1, \dots, \text{depth} - 1$: $Z_k = \sigma(W_k H_k + b_k)$,
  $H_{k+1} = (1 - Z_k)\odot U + Z_k\odot V$; output $W H_\text{depth} + b$.

:func:`build_model` builds each of them (and the two-branch network of any of them) from the
names a case file uses (``MODELS``); runners call it, so every kind a case may name is built
by one path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS", "MODELS", "MLP", "FourierFeatureMLP", "ModifiedMLP", "PeriodicMLP", "Sine",
    "TwoBranchNetwork", "activation", "build_model",
]

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


def _check_sizes(model: str, **sizes: tuple[int, int]) -> None:
    """Refuse a size ``name=(value, least)`` that is not a whole number >= ``least``."""
    for name, (value, least) in sizes.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
            raise ValueError(f"{model}: {name}={value!r}; it must be a whole number >= {least}")


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Fully connected network ``d_in -> width x depth -> d_out``: ``(n, d_in)`` to
    ``(n, d_out)``.

    Args:
        d_in, d_out: input and output widths (>= 1).
        width: neurons per hidden layer (>= 1).
        depth: number of hidden layers (>= 1).
        act: activation: ``"tanh"``, ``"sin"``, ``"gelu"`` or ``"silu"``.

    Raises:
        ValueError: a size that is not a whole number >= 1, or an unknown activation.
    """

    def __init__(
        self, d_in: int, d_out: int, width: int = 32, depth: int = 4, act: str = "tanh"
    ) -> None:
        super().__init__()
        _check_sizes("MLP", d_in=(d_in, 1), d_out=(d_out, 1), width=(width, 1), depth=(depth, 1))
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
    r"""An :class:`MLP` on random Fourier features $[\cos(2\pi B x), \sin(2\pi B x)]$ of the
    input: ``(n, d_in)`` to ``(n, d_out)``.

    Args:
        d_in, d_out, width, depth, act: as for :class:`MLP`.
        features: number of frequencies, the columns of $B$ (>= 1); the MLP sees twice as many.
        scale: standard deviation $s$ of the fixed random frequencies $B_{ij}\sim N(0, s^2)$.

    Raises:
        ValueError: a size that is not a whole number >= 1, or an unknown activation.
    """

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
        _check_sizes("FourierFeatureMLP", d_in=(d_in, 1), features=(features, 1))
        self.register_buffer("frequencies", scale * torch.randn(d_in, features))
        # 2 pi as a float64 tensor, not a Python float (which an ONNX export stores in float32)
        self.register_buffer("two_pi", torch.tensor(2 * math.pi, dtype=torch.float64),
                             persistent=False)
        self.mlp = MLP(2 * features, d_out, width, depth, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = (x @ self.frequencies.to(x.dtype)) * self.two_pi.to(x.dtype)
        return self.mlp(torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1))


class ModifiedMLP(nn.Module):
    """The gated MLP of Wang, Teng & Perdikaris (see the module docstring): ``depth`` hidden
    layers, the first giving $H_1$ and each other a gate $Z_k$: ``(n, d_in)`` to ``(n, d_out)``.

    Args:
        d_in, d_out: input and output widths (>= 1).
        width: neurons per hidden layer (>= 1).
        depth: number of hidden layers (>= 2).
        act: activation: ``"tanh"``, ``"sin"``, ``"gelu"`` or ``"silu"``.

    Raises:
        ValueError: ``depth`` below 2 (no gate: $U$ and $V$ would go unused), another size that
            is not a whole number >= 1, or an unknown activation.
    """

    def __init__(
        self, d_in: int, d_out: int, width: int = 32, depth: int = 4, act: str = "tanh"
    ) -> None:
        super().__init__()
        _check_sizes("ModifiedMLP", d_in=(d_in, 1), d_out=(d_out, 1), width=(width, 1),
                     depth=(depth, 1))
        if depth < 2:
            raise ValueError(f"depth={depth}: the modified MLP needs depth >= 2 (a first "
                             "layer and at least one gate)")
        self.encode_u = _linear(d_in, width)
        self.encode_v = _linear(d_in, width)
        self.hidden = nn.ModuleList(
            [_linear(d_in, width)] + [_linear(width, width) for _ in range(depth - 1)]
        )
        self.out = _linear(width, d_out)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.act(self.encode_u(x)), self.act(self.encode_v(x))
        h = self.act(self.hidden[0](x))
        for layer in self.hidden[1:]:
            z = self.act(layer(h))
            h = (1 - z) * u + z * v
        return self.out(h)


class PeriodicMLP(nn.Module):
    r"""An :class:`MLP` on the periodic embedding
    $[\cos(2\pi m x_i/L_i), \sin(2\pi m x_i/L_i)]_{i \in P,\, m \le M}$ of the periodic inputs
    $P$ (``harmonics`` $M$), followed by the other inputs unchanged: periodic with period $L_i$
    in each input of $P$ by construction (the TENG ansatz).

    Args:
        d_in, d_out, width, depth, act: as for :class:`MLP`.
        period: $L$ of every input (a number), or one entry per input: a period, or None for
            an input that is not periodic (e.g. the time of a space-time network).
        harmonics: $M$, the frequencies per periodic input (>= 1).

    Features: $2 M |P| + (d_\mathrm{in} - |P|)$.

    Raises:
        ValueError: a size that is not a whole number >= 1, a ``period`` of another length
            than ``d_in`` or not > 0, or an unknown activation.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int = 32,
        depth: int = 4,
        act: str = "tanh",
        period: float | Sequence[float | None] = 2 * math.pi,
        harmonics: int = 1,
    ) -> None:
        super().__init__()
        _check_sizes("PeriodicMLP", d_in=(d_in, 1), harmonics=(harmonics, 1))
        periods = [period] * d_in if isinstance(period, (int, float)) else list(period)
        if len(periods) != d_in:
            raise ValueError(f"period has {len(periods)} entries; expected one per input ({d_in})")
        if any(p is not None and not p > 0 for p in periods):
            raise ValueError(f"period={period!r}: every period must be > 0 (None: not periodic)")
        periodic = [i for i, p in enumerate(periods) if p is not None]
        lengths = torch.tensor([periods[i] for i in periodic], dtype=torch.float64)
        # index tensors, not a boolean mask: integer indexing works under torch.func.vmap
        self.register_buffer("periodic", torch.tensor(periodic, dtype=torch.long))
        self.register_buffer(
            "other", torch.tensor([i for i in range(d_in) if i not in periodic], dtype=torch.long)
        )
        self.register_buffer(
            "frequencies", (2 * math.pi / lengths)[:, None] * torch.arange(1.0, harmonics + 1)
        )
        features = 2 * len(lengths) * harmonics + d_in - len(lengths)
        self.mlp = MLP(features, d_out, width, depth, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = (x[..., self.periodic, None] * self.frequencies.to(x.dtype)).flatten(-2)
        features = [torch.cos(angle), torch.sin(angle), x[..., self.other]]
        return self.mlp(torch.cat(features, dim=-1))


MODELS = {
    "mlp": MLP,
    "fourier": FourierFeatureMLP,
    "modified": ModifiedMLP,
    "periodic": PeriodicMLP,
}


class TwoBranchNetwork(nn.Module):
    """One independent network per output (the two-branch Lagrangian network: the
    characteristic curves and the state along them), outputs concatenated: ``(n, branches)``.

    Args:
        branch: the network class of each branch (e.g. :class:`MLP`).
        d_in: input width.
        branches: number of branches (= outputs, >= 1).
        **options: passed to each branch (width, depth, act, ...).

    Raises:
        ValueError: ``branches`` not a whole number >= 1, or what ``branch`` refuses.
    """

    def __init__(self, branch: type[nn.Module], d_in: int, branches: int = 2, **options) -> None:
        super().__init__()
        _check_sizes("TwoBranchNetwork", branches=(branches, 1))
        self.branches = nn.ModuleList([branch(d_in, 1, **options) for _ in range(branches)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(x) for net in self.branches], dim=-1)


def build_model(
    kind: str,
    d_in: int,
    d_out: int,
    *,
    width: int = 32,
    depth: int = 4,
    activation: str = "tanh",
    fourier_scale: float = 1.0,
    harmonics: int = 1,
    periods: Sequence[float | None] | None = None,
    per_output: bool = False,
) -> nn.Module:
    """The network a case names: ``MODELS[kind]`` mapping ``(n, d_in)`` to ``(n, d_out)``.

    Args:
        kind: a key of ``MODELS`` (mlp, fourier, modified, periodic).
        d_in, d_out: input and output widths (whole numbers >= 1); with ``per_output``,
            ``d_out`` is the number of single-output networks.
        width, depth, activation: hidden width, number of hidden layers, activation name.
        fourier_scale: $s$ of the Fourier features' frequencies (kind fourier).
        harmonics, periods: $M$ and the period of each input, None where an input is not
            periodic (kind periodic; required there).
        per_output: one independent network per output, outputs concatenated
            (:class:`TwoBranchNetwork`, the Lagrangian PINN's ansatz).

    Raises:
        ValueError: an unknown kind, or kind periodic without ``periods``.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODELS)}")
    options: dict = {"width": width, "depth": depth, "act": activation}
    if kind == "fourier":
        options["scale"] = fourier_scale
    if kind == "periodic":
        if periods is None:
            raise ValueError("model kind 'periodic' needs periods (one per input, None: not "
                             "periodic)")
        options.update(period=list(periods), harmonics=harmonics)
    if per_output:
        return TwoBranchNetwork(MODELS[kind], d_in, d_out, **options)
    return MODELS[kind](d_in, d_out, **options)
