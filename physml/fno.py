r"""Fourier neural operator (Li et al., ICLR 2021) in 1, 2 or 3 dimensions.

A :class:`SpectralConv` multiplies the lowest Fourier modes of its input by learned complex
weights and drops the rest:
$$(\mathcal K v)(x) = \mathcal F^{-1}\big[W(k)\,\mathcal F v(k)\big](x),\qquad
W(k)\in\mathbb C^{c_{out}\times c_{in}}\ \text{for}\ -m_i \le k_i < m_i\ (0 \le k_d < m_d
\text{ on the last axis, whose negative half the real FFT implies}),\ 0\ \text{otherwise}$$
(the band of Li et al.'s FNO). On a band-limited input it is resolution-independent: the same
weights give the same function on any grid whose kept frequencies lie below its Nyquist
frequency: more than $2m_i$ points on every axis but the last, more than $2(m_d - 1)$ on it.

:class:`FNO`: the input channels and the grid coordinates in $[0, 1]^d$ are lifted pointwise to
``width`` channels, ``layers`` blocks $v \leftarrow \sigma(\mathcal K v + W v)$ follow (GELU; no
activation after the last), and a pointwise two-layer projection gives the output channels.
Shapes: ``(B, in_channels, n_1, ..., n_d) -> (B, out_channels, n_1, ..., n_d)``. Cost per layer
$O(B\,c\,n\log n + B\,c^2 \prod_i 2m_i)$; parameters $\approx$ ``layers`` $c^2\prod_i 2m_i$.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

__all__ = ["FNO", "SpectralConv", "most_modes"]


def most_modes(points: int, last: bool) -> int:
    """The most modes m an axis of ``points`` points keeps below its Nyquist frequency:
    $n \\ge 2m + 1$ ($-m \\le k < m$), or $n \\ge 2m - 1$ on the last axis ($0 \\le k < m$)."""
    return (points + 1) // 2 if last else (points - 1) // 2


class SpectralConv(nn.Module):
    """Fourier-space convolution keeping ``modes`` (one per axis) frequencies per axis.

    Input ``(B, in_channels, n_1, ..., n_d)`` with $n_i > 2 m_i$ (the last axis $n_d > 2(m_d - 1)$);
    output ``(B, out_channels, n_1, ..., n_d)``.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: tuple[int, ...]) -> None:
        super().__init__()
        if not 1 <= len(modes) <= 3 or not all(
                isinstance(m, numbers.Integral) and not isinstance(m, bool) and m >= 1
                for m in modes):
            raise ValueError(f"modes={modes} must hold 1 to 3 positive integers (one per axis)")
        if min(in_channels, out_channels) < 1:
            raise ValueError(f"in_channels={in_channels}, out_channels={out_channels}: each "
                             "must be >= 1")
        self.modes = tuple(modes)
        kept = [2 * m for m in modes[:-1]] + [modes[-1]]
        scale = 1 / (in_channels * out_channels)
        # W as real and imaginary parts in a last axis of 2: a real parameter, so that
        # ``.double()``, ``.to(dtype)`` and float64 gradient checks convert it like the others
        self.weight = nn.Parameter(torch.view_as_real(
            scale * torch.randn(in_channels, out_channels, *kept, dtype=torch.cfloat)).clone())

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        d = len(self.modes)
        shape = v.shape[-d:]
        for axis, (n, m) in enumerate(zip(shape, self.modes, strict=True)):
            if m > most_modes(n, last=axis == d - 1):
                raise ValueError(f"axis {axis} has {n} points: at most "
                                 f"{most_modes(n, last=axis == d - 1)} modes below its Nyquist "
                                 f"frequency; modes={m}")
        dims = tuple(range(-d, 0))
        spectrum = torch.fft.rfftn(v, dim=dims)
        low = spectrum[..., : self.modes[-1]]
        for axis, m in enumerate(self.modes[:-1]):  # keep k = 0 .. m - 1 and -m .. -1
            dim = axis - d
            low = torch.cat([low.narrow(dim, 0, m), low.narrow(dim, low.shape[dim] - m, m)], dim)
        weight = torch.view_as_complex(self.weight).to(low.dtype)
        mixed = torch.einsum("bi...,io...->bo...", low, weight)
        for axis, m in enumerate(self.modes[:-1]):  # put the zeros back in the middle
            dim = axis - d
            gap = list(mixed.shape)
            gap[dim] = shape[axis] - 2 * m
            mixed = torch.cat([mixed.narrow(dim, 0, m), mixed.new_zeros(gap),
                               mixed.narrow(dim, m, m)], dim)
        return torch.fft.irfftn(mixed, s=shape, dim=dims)


class FNO(nn.Module):
    """Fourier neural operator (module docstring).

    Args:
        in_channels: input channels (without the coordinates, which are appended).
        out_channels: output channels (e.g. the $N$ basis functions of a hard constraint).
        modes: Fourier modes kept per axis; its length is the dimension $d$ (1, 2 or 3).
        width: hidden channels.
        layers: spectral blocks.
        projection: hidden channels of the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: tuple[int, ...], *,
                 width: int = 32, layers: int = 4, projection: int = 64) -> None:
        super().__init__()
        if isinstance(modes, int) or not 1 <= len(modes) <= 3:
            raise ValueError(f"modes={modes!r}: one count per axis, 1 to 3 axes (e.g. (16,) "
                             "in 1D, (12, 12) in 2D)")
        sizes = {"in_channels": in_channels, "out_channels": out_channels, "width": width,
                 "layers": layers, "projection": projection}
        for name, size in sizes.items():
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(f"{name}={size!r} must be a whole number >= 1")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.ndim = len(modes)
        self.lift = nn.Linear(in_channels + self.ndim, width)
        self.spectral = nn.ModuleList(SpectralConv(width, width, modes) for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.project = nn.Sequential(nn.Linear(width, projection), nn.GELU(),
                                     nn.Linear(projection, out_channels))

    def coordinates(self, v: torch.Tensor) -> torch.Tensor:
        """The grid coordinates in $[0, 1]^d$, ``(B, d, n_1, ..., n_d)``: point j of n at
        $j/(n - 1)$, both ends included, as on a grid of nodes from 0 to 1. On a periodic grid
        (n points at $j/n$) a point gets a slightly different coordinate at another resolution:
        the spectral layers transfer across resolutions exactly, this channel to O(1/n)."""
        axes = [torch.linspace(0, 1, n, dtype=v.dtype, device=v.device) for n in v.shape[2:]]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        return grid.expand(v.shape[0], *grid.shape)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` (B, in_channels, n_1, ..., n_d) -> (B, out_channels, n_1, ..., n_d), in the
        model's dtype and device."""
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"the input is a {type(v).__name__}; FNO takes a tensor")
        expected = f"(B, {self.in_channels}, " + ", ".join(f"n_{k + 1}" for k in range(
            self.ndim)) + ")"
        if v.dim() != self.ndim + 2 or v.shape[1] != self.in_channels or 0 in v.shape[2:]:
            raise ValueError(f"the input has shape {tuple(v.shape)}; this FNO takes {expected}")
        weight = self.lift.weight
        if v.dtype != weight.dtype or v.device != weight.device:
            raise ValueError(f"the input is {v.dtype} on {v.device}, the model {weight.dtype} "
                             f"on {weight.device}: convert one of them (v.to(...) or "
                             "model.to(...))")
        if v.shape[0] == 0:  # an empty batch (MKL's FFT refuses one)
            return v.new_zeros((0, self.out_channels, *v.shape[2:]))
        v = torch.cat([v, self.coordinates(v)], dim=1)
        v = self.lift(v.movedim(1, -1)).movedim(-1, 1)
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise,
                                                      strict=True)):
            v = spectral(v) + pointwise(v.movedim(1, -1)).movedim(-1, 1)
            if i < len(self.spectral) - 1:
                v = nn.functional.gelu(v)
        return self.project(v.movedim(1, -1)).movedim(-1, 1)

