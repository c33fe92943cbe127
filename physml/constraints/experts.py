r"""Space–time blocks for a mixture of experts, and the jump of a stitched field across them.

A :class:`BlockRouter` splits a ``(nt, n_1, ..., n_d)`` grid (time first, then 1 or 2 space
axes) into ``k_0 x k_1 x ...`` equal blocks of ``(nt/k_0, n_1/k_1, ...)`` points, numbered
row-major with time first ($k = j_0 k_1 + j_1$ on a ``(nt, nx)`` grid); $K = \prod_a k_a$
experts. Equal blocks stack into a batch dimension, so all experts are one batched problem.

The interface jump measures continuity of any field on the grid. Across an interface between
points $i$ and $i+1$ along any axis, each side extrapolates linearly to the interface,
$e_- = \tfrac32 u_i - \tfrac12 u_{i-1}$ and $e_+ = \tfrac32 u_{i+1} - \tfrac12 u_{i+2}$, and the
jump is $|e_- - e_+|$: $O(h^2 |u''|)$ for a smooth field, the size of the step for a stitched
one. :func:`interface_differences` returns every $e_- - e_+$ (the continuity rows of coupled
experts); :func:`interface_jump` their largest magnitude per sample. Interfaces are the inner
block boundaries and, on an axis the router marks ``periodic`` (split into several blocks), its
seam, where the last block meets the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..solvers.errors import whole_number

AXIS_NAMES = ("nt", "nx", "ny")


@dataclass(frozen=True)
class BlockRouter:
    """Equal blocks of a ``(nt, n_1, ...)`` grid: ``blocks[a]`` divides ``shape[a]`` into
    blocks of at least 2 points (or is 1); ``periodic[a]``: axis ``a`` wraps around, so its
    last block meets its first (empty: no axis does)."""

    shape: tuple[int, ...]
    blocks: tuple[int, ...]
    periodic: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.blocks) or not 2 <= len(self.shape) <= 3:
            raise ValueError(f"blocks={self.blocks} must give one count per axis of the "
                             f"(time, space...) grid shape={self.shape} (2 or 3 axes)")
        if self.periodic and len(self.periodic) != len(self.shape):
            raise ValueError(f"periodic={self.periodic} must give one flag per axis of "
                             f"shape={self.shape} (or none)")
        object.__setattr__(self, "shape", tuple(  # frozen: the counts as ints, once
            whole_number(n, f"shape[{name}]", 1) for n, name in zip(self.shape, AXIS_NAMES)))
        object.__setattr__(self, "blocks", tuple(
            whole_number(k, f"blocks[{name}]", 1) for k, name in zip(self.blocks, AXIS_NAMES)))
        for n, k, name in zip(self.shape, self.blocks, AXIS_NAMES, strict=False):
            if n % k or (k > 1 and n // k < 2):
                raise ValueError(f"blocks={self.blocks}: {k} must divide {name}={n} into "
                                 f"blocks of at least 2 points")

    @property
    def experts(self) -> int:
        """$K = \\prod_a k_a$."""
        return math.prod(self.blocks)

    def wraps(self, axis: int) -> bool:
        """Whether ``axis`` is periodic and split, so that its seam is an interface."""
        return bool(self.periodic) and self.periodic[axis] and self.blocks[axis] > 1

    @property
    def block_shape(self) -> tuple[int, ...]:
        return tuple(n // k for n, k in zip(self.shape, self.blocks, strict=True))

    def split(self, field: torch.Tensor) -> torch.Tensor:
        """``(..., nt, n_1, ...)`` -> ``(..., K, nt/k_0, n_1/k_1, ...)``."""
        d = len(self.shape)
        lead = field.shape[:-d]
        pairs = zip(self.blocks, self.block_shape, strict=True)
        interleaved = [m for k, b in pairs for m in (k, b)]
        pieces = field.reshape(*lead, *interleaved)
        L = len(lead)
        order = [*range(L), *(L + 2 * a for a in range(d)), *(L + 2 * a + 1 for a in range(d))]
        return pieces.permute(order).reshape(*lead, self.experts, *self.block_shape)

    def stitch(self, pieces: torch.Tensor) -> torch.Tensor:
        """``(..., K, nt/k_0, n_1/k_1, ...)`` -> ``(..., nt, n_1, ...)`` (inverts :meth:`split`)."""
        d = len(self.shape)
        lead = pieces.shape[:-d - 1]
        field = pieces.reshape(*lead, *self.blocks, *self.block_shape)
        L = len(lead)
        order = [*range(L), *(m for a in range(d) for m in (L + a, L + d + a))]
        return field.permute(order).reshape(*lead, *self.shape)

    def masks(self) -> torch.Tensor:
        """(K, *shape) bool: the points of each expert's block."""
        ids = torch.arange(self.experts).reshape(-1, *[1] * len(self.shape))
        return self.labels()[None] == ids

    def labels(self) -> torch.Tensor:
        """The expert of every grid point, integers of ``shape``."""
        ids = torch.arange(self.experts, dtype=torch.float64).reshape(-1, *[1] * len(self.shape))
        return self.stitch(ids.expand(-1, *self.block_shape)).long()


def padded_rows(per_expert: list[torch.Tensor], missing: int, pde_rows: int | None = None,
                cure: str = "use fewer experts or a finer grid") -> torch.Tensor:
    """The row indices each expert solves, padded with ``missing`` to one width: (K, width).
    Rows ``0 .. pde_rows - 1`` are the PDE's (default: all), the rest initial or boundary
    conditions; ``cure`` ends the refusal below.

    Raises:
        ValueError: an expert solves no row of the PDE (its block is narrower than the PDE's
            stencil reaches: with no row its weights would be unconstrained, the field 0 and
            the gradients NaN; with condition rows alone its field would follow no physics).
    """
    pde_rows = missing if pde_rows is None else pde_rows
    empty = [k for k, rows in enumerate(per_expert) if not bool((rows < pde_rows).any())]
    if empty:
        raise ValueError(f"expert(s) {empty} of {len(per_expert)} solve no row of the PDE: "
                         f"their blocks are narrower than its stencil reaches; {cure}")
    width = max(len(i) for i in per_expert)
    return torch.stack([torch.cat([i, i.new_full((width - len(i),), missing)])
                        for i in per_expert])


def interface_profiles(u: torch.Tensor, router: BlockRouter) -> list[tuple[int, int, torch.Tensor]]:
    """$e_- - e_+$ on each interface of ``router``'s blocks: ``(axis, index, diff)`` with
    ``index`` the first point after the interface along ``axis`` (0: a periodic seam) and
    ``diff`` of shape (B, the other axes in order); ``u`` is ``(B, nt, n_1, ...)``, a field on
    the router's grid (``router.shape``) per sample."""
    profiles = []
    for axis, (k, b) in enumerate(zip(router.blocks, router.block_shape, strict=True)):
        line = u.movedim(axis + 1, 1)  # interfaces across dim 1
        seam = [0] if router.wraps(axis) else []
        for i in [j * b for j in range(1, k)] + seam:  # index i - 1 < 0 wraps to the end
            minus = 1.5 * line[:, i - 1] - 0.5 * line[:, i - 2]
            plus = 1.5 * line[:, i] - 0.5 * line[:, i + 1]
            profiles.append((axis, i, minus - plus))
    return profiles


def solve_level_laplacian(laplacian: torch.Tensor, rhs: torch.Tensor, present: torch.Tensor
                          ) -> torch.Tensor:
    """The experts' constants $c$ (B, nt, K) from $\\mathcal L c = r$ per level: ``laplacian``
    (nt, K, K) couples the experts present at a level (``present`` (nt, K), 0 or 1), ``rhs``
    (B, nt, K). $\\mathcal L$ leaves one constant common to the present experts free; a
    rank-one term fixes it (their constants sum to zero); an absent expert's row is the
    identity. Differentiable."""
    scale = laplacian.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1) / present.sum(-1)
    system = (laplacian + torch.diag_embed(1 - present)
              + scale[:, None, None] * present[:, :, None] * present[:, None, :])
    return torch.linalg.solve(system, rhs[..., None])[..., 0]


def level_constants(u: torch.Tensor, router: BlockRouter) -> torch.Tensor:
    r"""``u`` (B, nt, *space) stitched from experts less, on each expert's block, the constant
    per time level that best joins the experts across the space interfaces: the constants $c$
    minimise $\sum (e_- - c_k - e_+ + c_l)^2$ over the interface points between experts $k$
    and $l$ at the level ($e_\pm$ as :func:`interface_profiles`, which see a constant on a
    block of at least two points as itself). For rows that read $u$ only through its
    differences in space, each expert's own solve leaves such a constant free. A graph
    Laplacian solve per sample and level; the experts at a level share one free constant,
    fixed by their constants summing to zero; differentiable."""
    experts = router.experts
    labels = router.labels()  # (nt, *space), built on the host
    present = torch.stack([torch.bincount(level.flatten(), minlength=experts) > 0
                           for level in labels]).to(u)  # (nt, K)
    labels = labels.to(u.device)
    eye = torch.eye(experts, dtype=u.dtype, device=u.device)
    system = u.new_zeros(router.shape[0], experts, experts)
    rhs = u.new_zeros(u.shape[0], router.shape[0], experts)
    for axis, index, diff in interface_profiles(u, router):
        if axis == 0:  # between time levels: constants of different levels
            continue
        line = labels.movedim(axis, 0)
        incidence = eye[line[index - 1]] - eye[line[index]]  # (nt, ..., K): e_k - e_l
        incidence = incidence.flatten(1, -2)  # (nt, P, K)
        system = system + torch.einsum("tpk,tpl->tkl", incidence, incidence)
        rhs = rhs + torch.einsum("tpk,btp->btk", incidence, diff.flatten(2))
    c = solve_level_laplacian(system, rhs, present)  # (B, nt, K)
    time = torch.arange(router.shape[0], device=u.device).reshape(-1, *[1] * (u.dim() - 2))
    return u - c[:, time, labels]


def interface_differences(u: torch.Tensor, router: BlockRouter) -> torch.Tensor:
    """$e_- - e_+$ at every interface point of ``router``'s blocks (in the order of
    :func:`interface_profiles`), ``(B, n_interface_points)``; ``u`` is ``(B, nt, n_1, ...)``,
    a field on the router's grid (``router.shape``) per sample."""
    diffs = [diff.flatten(1) for _, _, diff in interface_profiles(u, router)]
    return torch.cat(diffs, dim=1) if diffs else u.new_zeros(u.shape[0], 0)


def interface_jump(u: torch.Tensor, router: BlockRouter) -> torch.Tensor:
    """The largest $|e_- - e_+|$ over all interfaces of ``router``'s blocks, per sample ``(B,)``
    (0 for one block), of ``u`` ``(B, nt, n_1, ...)``, a field on the router's grid
    (``router.shape``) per sample."""
    diffs = interface_differences(u, router).abs()
    return torch.cat([diffs, diffs.new_zeros(u.shape[0], 1)], dim=1).amax(dim=1)
