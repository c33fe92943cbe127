r"""The Jacobian of coupled experts in few forward passes, by colouring the experts.

Coupled experts (:class:`~physml.constraints.Continuity` ``INTERFACE_ROWS``) have $K N$
unknowns $\omega_{k,j}$ per sample, and row $i$ depends only on the experts whose blocks its
stencil touches ($D_{ki} = 1$). Two experts *conflict* when some row depends on both. Colour the
experts so that no two of one colour conflict (greedy, in expert order; a chain of blocks
needs 2 colours, a 2D arrangement at most 4 plus the periodic seams). Then one forward-mode
product with the direction $\sum_{k:\,c(k) = c} e_{k,j}$ gives, in row $i$, the entry of the
only expert of colour $c$ that row $i$ depends on:
$$J_{i,(k,j)} = D_{ki}\,\big[J\textstyle\sum_{k':\,c(k')=c(k)} e_{k',j}\big]_i .$$
Cost: $C N$ residual-sized forward products for $C$ colours instead of $K N$ (Curtis, Powell &
Reid's column grouping, with experts as the groups).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import jvp, vmap


def greedy_colours(depends: torch.Tensor) -> torch.Tensor:
    """Colours (K,) of experts from their row dependence ``depends`` (K, M) bool: experts that
    share a row get different colours (on ``depends``' device)."""
    conflict = (depends.double() @ depends.double().T) > 0
    colours = torch.full((depends.shape[0],), -1, dtype=torch.long, device=depends.device)
    for k in range(depends.shape[0]):
        taken = set(colours[conflict[k]].tolist())
        colours[k] = next(c for c in range(depends.shape[0]) if c not in taken)
    return colours


class ExpertColouring(nn.Module):
    """Coloured Jacobians of a residual of ``K`` experts' unknowns; ``depends`` and the
    colours are buffers, moved with the module (``.to``), so a Jacobian copies nothing from
    the host.

    Args:
        depends: (K, M) bool, whether row ``i`` depends on expert ``k``'s unknowns; ``omega``
            is (B, K N), expert-major, with $N$ unknowns per expert.
    """

    def __init__(self, depends: torch.Tensor) -> None:
        super().__init__()
        colours = greedy_colours(depends)
        self.register_buffer("depends", depends, persistent=False)  # (K, M)
        self.register_buffer("colours", colours, persistent=False)  # (K,)
        self.count = int(colours.max()) + 1  # $C$, the number of colours

    def jacobian(self, residual: Callable[[torch.Tensor], torch.Tensor],
                 omega: torch.Tensor) -> torch.Tensor:
        """$J$ (B, M, K N) of ``residual`` at ``omega`` (B, K N) from $C N$ forward products."""
        experts = self.depends.shape[0]
        n = omega.shape[1] // experts
        member = torch.nn.functional.one_hot(self.colours, self.count).T.to(omega)  # (C, K)
        eye = torch.eye(n, dtype=omega.dtype, device=omega.device)
        directions = (member[:, None, :, None] * eye[None, :, None, :]).reshape(-1, experts * n)
        columns = vmap(lambda v: jvp(residual, (omega,), (v.expand_as(omega),))[1])(directions)
        columns = columns.reshape(self.count, n, *columns.shape[1:])  # (C, N, B, M)
        mask = self.depends.to(omega)  # on omega's device already unless the module is elsewhere
        J = columns[self.colours] * mask[:, None, None, :]  # (K, N, B, M)
        return J.permute(2, 3, 0, 1).reshape(omega.shape[0], -1, experts * n)
