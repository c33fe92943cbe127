r"""Space–time blocks for a mixture of experts, and the jump of a stitched field across them.

A :class:`BlockRouter` splits an ``(nt, nx)`` grid into ``kt x kx`` equal blocks of
``(nt/kt, nx/kx)`` points, numbered time-major ($k = j_t k_x + j_x$); $K = k_t k_x$ experts.
Equal blocks stack into a batch dimension, so all experts are one batched problem.

The interface jump measures continuity of any field on the grid. Across an interface between
points $i$ and $i+1$ (in $x$ or $t$), each side extrapolates linearly to the interface,
$e_- = \tfrac32 u_i - \tfrac12 u_{i-1}$ and $e_+ = \tfrac32 u_{i+1} - \tfrac12 u_{i+2}$, and the
jump is $|e_- - e_+|$: $O(h^2 |u''|)$ for a smooth field, the size of the step for a stitched
one. :func:`interface_differences` returns every $e_- - e_+$ (the continuity rows of coupled
experts); :func:`interface_jump` their largest magnitude per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlockRouter:
    """Equal blocks of an ``(nt, nx)`` grid: ``blocks = (kt, kx)`` divides ``shape``."""

    shape: tuple[int, int]
    blocks: tuple[int, int]

    def __post_init__(self) -> None:
        for n, k, name in zip(self.shape, self.blocks, ("nt", "nx"), strict=True):
            if k < 1 or n % k or (k > 1 and n // k < 2):
                raise ValueError(f"blocks={self.blocks}: {k} must divide {name}={n} into "
                                 f"blocks of at least 2 points")

    @property
    def experts(self) -> int:
        """$K = k_t k_x$."""
        return self.blocks[0] * self.blocks[1]

    @property
    def block_shape(self) -> tuple[int, int]:
        return self.shape[0] // self.blocks[0], self.shape[1] // self.blocks[1]

    def split(self, field: torch.Tensor) -> torch.Tensor:
        """``(..., nt, nx)`` -> ``(..., K, nt/kt, nx/kx)``."""
        (kt, kx), (bt, bx) = self.blocks, self.block_shape
        lead = field.shape[:-2]
        pieces = field.reshape(*lead, kt, bt, kx, bx).transpose(-3, -2)
        return pieces.reshape(*lead, kt * kx, bt, bx)

    def stitch(self, pieces: torch.Tensor) -> torch.Tensor:
        """``(..., K, nt/kt, nx/kx)`` -> ``(..., nt, nx)``; the inverse of :meth:`split`."""
        (kt, kx), (bt, bx) = self.blocks, self.block_shape
        lead = pieces.shape[:-3]
        field = pieces.reshape(*lead, kt, kx, bt, bx).transpose(-3, -2)
        return field.reshape(*lead, *self.shape)

    def labels(self) -> torch.Tensor:
        """The expert of every grid point, ``(nt, nx)`` integers."""
        ids = torch.arange(self.experts, dtype=torch.float64)[:, None, None]
        return self.stitch(ids.expand(-1, *self.block_shape)).long()


def interface_differences(u: torch.Tensor, router: BlockRouter) -> torch.Tensor:
    """$e_- - e_+$ at every interface point, ``(B, n_interface_points)``; ``u`` is (B, nt, nx)."""
    diffs = []
    for axis, (k, b) in enumerate(zip(router.blocks, router.block_shape, strict=True)):
        line = u if axis == 0 else u.transpose(1, 2)  # interfaces across dim 1
        for j in range(1, k):
            i = j * b
            minus = 1.5 * line[:, i - 1] - 0.5 * line[:, i - 2]
            plus = 1.5 * line[:, i] - 0.5 * line[:, i + 1]
            diffs.append(minus - plus)
    if not diffs:
        return u.new_zeros(u.shape[0], 0)
    return torch.cat(diffs, dim=1)


def interface_jump(u: torch.Tensor, router: BlockRouter) -> torch.Tensor:
    """The largest $|e_- - e_+|$ over all interfaces, per sample ``(B,)`` (0 for one block)."""
    diffs = interface_differences(u, router).abs()
    return torch.cat([diffs, diffs.new_zeros(u.shape[0], 1)], dim=1).amax(dim=1)
