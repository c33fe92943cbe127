r"""Experts on overlapping blocks blended by a partition of unity: continuous by construction.

Each expert $k$ of a :class:`~physml.constraints.BlockRouter` widens its block by ``overlap``
cells on each inner side (along the split axes; across the seam of an axis the router marks
periodic too, where the blocks wrap around), solves the
residual rows whose whole stencil lies in its widened block, on its own field
$u_k = b\cdot\omega_k$ (the basis is defined on the whole grid), independently of the other
experts (one batch of $BK$ problems of $N$ unknowns, as the paper's experts), and the
prediction blends the experts' fields,
$$u = \sum_k \varphi_k\,u_k,\qquad \varphi_k = \frac{w_k}{\sum_l w_l},$$
with $w_k$ the product over axes of trapezoids: 1 on the block, falling linearly to 0 across
the overlap. Every $u_k$ is smooth, so $u$ has no jump (only kinks of size $|u_k - u_l|$ times
the ramp's slope); each expert fits the rows of its widened block by least squares (as
:class:`~physml.constraints.HardConstraint`), and the blend meets them only approximately in the
overlaps, where it mixes the experts' fits. Cost: each expert evaluates the rows on the
whole grid ($K$ times the rows of one field per evaluation) for $M_k \approx M/K$ rows.

Rows that read $u$ only through differences in space (a streamfunction: the velocity and the
vorticity are its derivatives) leave every expert a free constant $c_k(t)$ per time level, and
blending fields that differ by such constants puts $(c_k - c_l)\,\Delta\varphi_k$ into the
observed derivatives. With ``align_constants`` the experts' fields are first shifted,
$u_k \leftarrow u_k - c_k(t)$, by the constants that make them agree on the overlaps in the
least-squares sense,
$$\min_c \sum_{k<l}\sum_x w_k w_l\,\big(u_k - c_k - u_l + c_l\big)^2
  \;\Leftrightarrow\; \mathcal L\,c = r,$$
with $\mathcal L = \operatorname{diag}(W\mathbf 1) - W$, $W_{kl} = \sum_x w_k w_l$ and
$r_k = \sum_x w_k\,(u_k \sum_l w_l - \sum_l w_l u_l)$ per time level. $\mathcal L$ leaves one
constant common to the experts present at the level free (the rows do not see it either); a
rank-one term $s\,\mathbf p\mathbf p^T$ on those experts fixes it (their constants sum to
zero). A $K \times K$ solve per sample and level, differentiable.
"""

from __future__ import annotations

import torch
from torch import nn

from ..devices import require_torch_device
from ..solvers.errors import whole_number
from .experts import BlockRouter, padded_rows, solve_level_laplacian
from .hard import (
    DEFAULT_SOLVER,
    Rows,
    check_basis_size,
    check_inputs,
    check_rows_accept,
    check_rows_read_u,
    probed_dependence,
    warn_dropped_rows,
)
from .implicit import least_squares_solution
from .levenberg_marquardt import LevenbergMarquardt, LMResult


def trapezoid_weights(router: BlockRouter, overlap: int) -> torch.Tensor:
    """$w_k$ on the grid of ``router``, shape (K, *shape) float64 (module docstring): the
    product over the axes of a profile that, on a split axis, is 1 on block k's points and
    $1 - d/(\\mathrm{overlap} + 1)$ at d points outside them (the nearer way round on a periodic
    axis), so positive on the block widened by ``overlap`` points on each side and 0 beyond,
    and is 1 on an axis in one block. Not normalised: $\\varphi_k = w_k / \\sum_l w_l$."""
    profiles = []  # per axis (k_a, n_a)
    for axis, (n, k, b) in enumerate(zip(router.shape, router.blocks, router.block_shape,
                                         strict=True)):
        start = torch.arange(k, dtype=torch.float64)[:, None] * b
        i = torch.arange(n, dtype=torch.float64)
        shifts = (0, -n, n) if router.wraps(axis) else (0,)  # periodic: the nearer way round
        outside = torch.stack([(start - (i + s)).clamp_min(0) + (i + s - (start + b - 1))
                               .clamp_min(0) for s in shifts]).amin(0)
        profiles.append((1 - outside / (overlap + 1)).clamp_min(0) if k > 1
                        else torch.ones(1, n, dtype=torch.float64))
    experts, points = "abc"[: len(profiles)], "ijk"[: len(profiles)]
    spec = ",".join(e + p for e, p in zip(experts, points, strict=True))
    return torch.einsum(f"{spec}->{experts}{points}", *profiles).reshape(-1, *router.shape)


class PartitionOfUnity(nn.Module):
    """Overlapping experts blended by a partition of unity (module docstring).

    Args:
        rows: the problem's residual rows, ``rows(u (B, *grid), phi (B, ...)) -> (B, M)``;
            probed once at construction on ``device`` (rows holding tensors on a GPU, a
            coefficient field, need that GPU there), in forward on the inputs' device. Rows
            that no widened block holds (a global constraint) are dropped with a warning.
        router: the experts' blocks.
        phi_shape: the shape of one sample's conditioning input.
        overlap: cells each block is widened by on each inner side, a whole number >= 1.
        solver: the inner Levenberg–Marquardt solver.
        align_constants: shift the experts' fields by their least-squares constants per time
            level before blending (rows blind to such constants; module docstring).
        condition_rows: the last rows that are initial or boundary conditions, not the PDE
            (an expert that owns no row of the PDE is refused).
        device: where the rows are probed and the layer's buffers are built ("cpu", "cuda",
            "cuda:N"); move the layer with ``.to`` as any module.

    ``forward(basis (B, N, *grid), phi (B, ...)) -> u (B, *grid)`` (other shapes: a ValueError
    naming them; a NaN/Inf gives a non-finite u). A basis of more functions $N$ than some
    expert's rows (``expert_rows``) or than the points of its widened block
    (``expert_cells``) is refused: that expert's $\\omega$ would not be unique.
    """

    def __init__(self, rows: Rows, router: BlockRouter, phi_shape: tuple[int, ...], *,
                 overlap: int = 2, solver: LevenbergMarquardt = DEFAULT_SOLVER,
                 align_constants: bool = False, condition_rows: int = 0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        device = torch.device(require_torch_device(device))
        overlap = whole_number(overlap, "overlap", 1)
        self.rows, self.router, self.solver = rows, router, solver
        self.align_constants = align_constants
        check_rows_accept(rows, router, phi_shape, device)
        self.phi_shape = tuple(phi_shape)
        weights = trapezoid_weights(router, overlap).to(device)
        self.register_buffer("weights", weights, persistent=False)
        self.register_buffer("blend", weights / weights.sum(0), persistent=False)
        outside = probed_dependence(rows, phi_shape, weights == 0)  # (K, M)
        check_rows_read_u(probed_dependence(rows, phi_shape, torch.ones_like(weights[:1]) > 0))
        per_expert = [torch.nonzero(~out)[:, 0] for out in outside]
        self.register_buffer("owned", padded_rows(per_expert, outside.shape[1],
                                                  outside.shape[1] - condition_rows),
                             persistent=False)  # (K, width)
        self.expert_rows = tuple(len(rows) for rows in per_expert)  # (K,)
        self.expert_cells = tuple((weights > 0).flatten(1).sum(1).tolist())  # (K,)
        warn_dropped_rows(outside.all(0), f"overlapping experts (overlap={overlap})",
                          "keep them with a wider overlap, or with HardConstraint's "
                          "continuity=INTERFACE_ROWS, or with one expert")
        self.last_solve: LMResult | None = None

    def _expert_rows(self, omega, basis, phi):
        batch, n = basis.shape[:2]
        experts = self.router.experts
        fields = torch.einsum("bn...,bkn->bk...", basis, omega.reshape(batch, experts, n))
        r = self.rows(fields.flatten(0, 1), phi.repeat_interleave(experts, 0))
        r = torch.cat([r, r.new_zeros(len(r), 1)], dim=1).reshape(batch, experts, -1)
        picked = torch.gather(r, 2, self.owned.expand(batch, -1, -1))
        return picked.reshape(batch * experts, -1)

    def forward(self, basis: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        check_inputs(basis, phi, self.router, self.phi_shape)
        batch, n = basis.shape[:2]
        check_basis_size(n, self.expert_rows, self.expert_cells,
                         "fewer experts, a wider overlap or a finer grid")
        basis64, phi64 = basis.to(torch.float64), phi.to(torch.float64)
        omega0 = basis64.new_zeros(batch * self.router.experts, n)
        self.last_solve = least_squares_solution(self._expert_rows, self.solver, omega0,
                                                 basis64, phi64)
        omega = self.last_solve.omega.reshape(batch, self.router.experts, n)
        fields = torch.einsum("bn...,bkn->bk...", basis64, omega)
        if self.align_constants:
            fields = self._aligned(fields)
        return (self.blend * fields).sum(1).to(basis.dtype)

    def _aligned(self, fields: torch.Tensor) -> torch.Tensor:
        """``fields`` (B, K, nt, *space) less each expert's least-squares constant per level."""
        w = self.weights.flatten(2)  # (K, nt, S)
        u = fields.flatten(3)  # (B, K, nt, S)
        coupling = torch.einsum("kts,lts->tkl", w, w)
        laplacian = torch.diag_embed(coupling.sum(-1)) - coupling
        total, blended = w.sum(0), (w * u).sum(1)  # (nt, S), (B, nt, S)
        r = torch.einsum("kts,bkts->btk", w, u * total - blended[:, None])
        # the experts present at a level share one constant the rows do not see (fixed by
        # their constants summing to zero); an absent expert keeps its field
        present = (coupling.diagonal(dim1=1, dim2=2) > 0).to(w.dtype)  # (nt, K)
        c = solve_level_laplacian(laplacian, r, present)  # (B, nt, K)
        return fields - c.transpose(1, 2)[(...,) + (None,) * (fields.dim() - 3)]
