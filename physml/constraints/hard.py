r"""Hard physical constraints: a basis network's output made to satisfy the PDE by least squares.

Given $N$ basis functions $b_j$ on an ``(nt, nx)`` space–time grid (from a base network) and the
residual rows $r(u, \varphi)$ of a problem (PDE rows plus initial/boundary rows; $\varphi$ the
conditioning input, e.g. the initial condition), the prediction is
$$u = \sum_j b_j\,\omega_j,\qquad
\omega = \arg\min_\omega \lVert r(b\cdot\omega, \varphi)\rVert^2,$$
solved per sample by Levenberg–Marquardt in float64 and differentiated implicitly
(:func:`~physml.constraints.least_squares_solution`). A residual affine in $u$ gives one linear
least-squares solve; a nonlinear one (diffusion–sorption's $R(u)$) iterates.

Mixture of experts (Chalapathi, Du & Krishnapriyan, ICLR 2024): a :class:`BlockRouter` splits the
grid into $K$ blocks; expert $k$ has its own $\omega_k$ and uses the basis restricted to its
block, so $u = b|_k\cdot\omega_k$ on block $k$. A residual row is *owned* by an expert when its
stencil lies inside that expert's block; rows whose stencil straddles an interface are
*interface rows*. Ownership is found once, by probing the rows' linearisation with a random
direction supported on each block. Two ways to couple experts (:class:`Continuity`):

* ``INDEPENDENT`` (the paper): interface rows are dropped and each expert solves its own rows,
  all $K$ experts as one batch of $B K$ problems of $N$ unknowns (padding rows are zero). Cost
  per iteration $O(M N^2)$ for $M$ rows; the stitched field may jump across interfaces.
* ``INTERFACE_ROWS`` (ours): the interface rows are kept and continuity rows
  $w\,(e_- - e_+)$ (the one-sided extrapolations of :mod:`~physml.constraints.experts` from both
  sides) are added, which couples neighbours: one least-squares problem of $K N$ unknowns per
  sample, cost $O(M K^2 N^2 + K^3 N^3)$ per iteration.

With one block both are the single global hard constraint.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
from torch import nn
from torch.func import jvp

from .experts import BlockRouter, interface_differences
from .implicit import least_squares_solution
from .levenberg_marquardt import LevenbergMarquardt, LMResult

DEFAULT_SOLVER = LevenbergMarquardt()
Rows = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (u (B,nt,nx), phi) -> (B, M)


class Continuity(Enum):
    """How experts meet at their interfaces (see the module docstring)."""

    INDEPENDENT = "independent"
    INTERFACE_ROWS = "interface_rows"


def row_owners(rows: Rows, router: BlockRouter, phi: torch.Tensor) -> torch.Tensor:
    """The expert owning each row (M,): its index, -1 for interface rows, -2 for rows that
    depend on no grid value. ``phi`` is one sample's conditioning input, shape (1, ...)."""
    g = torch.Generator().manual_seed(0)
    u = 0.05 + 0.5 * torch.rand(1, *router.shape, dtype=torch.float64, generator=g)
    labels = router.labels()
    depends = []
    for k in range(router.experts):
        direction = torch.rand(1, *router.shape, dtype=torch.float64, generator=g) * (labels == k)
        depends.append(jvp(lambda v: rows(v, phi), (u,), (direction,))[1][0] != 0)
    depends = torch.stack(depends)  # (K, M)
    count = depends.sum(0)
    owner = depends.long().argmax(0)
    return torch.where(count == 1, owner, torch.where(count == 0, -2, -1))


class HardConstraint(nn.Module):
    """$u = b\\cdot\\omega$ with $\\omega$ from the inner least squares (module docstring).

    Args:
        rows: the problem's residual rows, ``rows(u (B, nt, nx), phi (B, ...)) -> (B, M)``.
        router: the experts' blocks (``blocks=(1, 1)`` for the single hard constraint).
        phi_shape: the shape of one sample's conditioning input (e.g. ``(nx,)``).
        continuity: :class:`Continuity`.
        solver: the inner Levenberg–Marquardt solver.
        interface_weight: $w$ of the continuity rows (``INTERFACE_ROWS`` only), > 0.

    ``forward(basis (B, N, nt, nx), phi (B, ...)) -> u (B, nt, nx)`` in ``basis``'s dtype; the
    inner solve's :class:`LMResult` of the last call is kept in ``last_solve``.
    """

    def __init__(self, rows: Rows, router: BlockRouter, phi_shape: tuple[int, ...], *,
                 continuity: Continuity = Continuity.INTERFACE_ROWS,
                 solver: LevenbergMarquardt = DEFAULT_SOLVER,
                 interface_weight: float = 10.0) -> None:
        super().__init__()
        if not interface_weight > 0:
            raise ValueError(f"interface_weight={interface_weight} must be > 0")
        self.rows, self.router, self.continuity = rows, router, continuity
        self.solver, self.interface_weight = solver, interface_weight
        owners = row_owners(rows, router, torch.zeros(1, *phi_shape, dtype=torch.float64))
        self.register_buffer("used", torch.nonzero(owners >= -1)[:, 0], persistent=False)
        per_expert = [torch.nonzero(owners == k)[:, 0] for k in range(router.experts)]
        width = max(len(i) for i in per_expert)
        padded = [torch.cat([i, i.new_full((width - len(i),), len(owners))]) for i in per_expert]
        self.register_buffer("owned", torch.stack(padded), persistent=False)  # (K, width)
        self.last_solve: LMResult | None = None

    def field(self, omega: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """$u$ (B, nt, nx) from ``omega`` (B, K, N) and ``blocks`` (B, K, N, bt, bx)."""
        return self.router.stitch(torch.einsum("bknij,bkn->bkij", blocks, omega))

    def _independent_rows(self, omega, blocks, phi):
        batch, experts, n = blocks.shape[:3]
        r = self.rows(self.field(omega.reshape(batch, experts, n), blocks), phi)
        r = torch.cat([r, r.new_zeros(batch, 1)], dim=1)
        return r[:, self.owned].reshape(batch * experts, -1)

    def _coupled_rows(self, omega, blocks, phi):
        u = self.field(omega.reshape(blocks.shape[:3]), blocks)
        jumps = self.interface_weight * interface_differences(u, self.router)
        return torch.cat([self.rows(u, phi)[:, self.used], jumps], dim=1)

    def forward(self, basis: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        batch, n = basis.shape[:2]
        blocks = self.router.split(basis.to(torch.float64)).transpose(1, 2).contiguous()
        phi64 = phi.to(torch.float64)
        experts = self.router.experts
        if self.continuity is Continuity.INDEPENDENT:
            residual, shape = self._independent_rows, (batch * experts, n)
        else:
            residual, shape = self._coupled_rows, (batch, experts * n)
        omega0 = torch.zeros(shape, dtype=torch.float64, device=basis.device)
        self.last_solve = least_squares_solution(residual, self.solver, omega0, blocks, phi64)
        u = self.field(self.last_solve.omega.reshape(batch, experts, n), blocks)
        return u.to(basis.dtype)
