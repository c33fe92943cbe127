r"""Hard physical constraints: a basis network's output made to satisfy the PDE by least squares.

Given $N$ basis functions $b_j$ on an ``(nt, nx)`` or ``(nt, nx, ny)`` space–time grid (from a
base network) and the residual rows $r(u, \varphi)$ of a problem (PDE rows plus initial/boundary
rows; $\varphi$ the conditioning input, e.g. the initial condition), the prediction is
$$u = \sum_j b_j\,\omega_j,\qquad
\omega = \arg\min_\omega \lVert r(b\cdot\omega, \varphi)\rVert^2,$$
solved per sample by Levenberg–Marquardt in float64 and differentiated implicitly
(:func:`~physml.constraints.least_squares_solution`). A residual affine in $u$ gives one linear
least-squares solve; a nonlinear one (diffusion–sorption's $R(u)$) iterates.

Mixture of experts (Chalapathi, Du & Krishnapriyan, ICLR 2024): a :class:`BlockRouter` splits the
grid into $K$ blocks; expert $k$ has its own $\omega_k$ and uses the basis restricted to its
block, so $u = b|_k\cdot\omega_k$ on block $k$. A residual row is *owned* by an expert when its
stencil lies inside that expert's block; rows whose stencil straddles an interface are
*interface rows*. Ownership is found once, by probing the rows' linearisation at a random $u$
with a random direction supported on each block, at a random $\varphi$ and at $-\varphi$ (away
from 0, so that coefficients taken from $\varphi$ do not vanish; of both signs, so that a
stencil that switches with $\varphi$'s sign, upwinding by a velocity from $\varphi$, is seen
both ways): a row whose stencil changes with $\varphi$ is owned by the union of the cells it
can read. Rows that depend on no value of $u$ are refused. With ``INDEPENDENT``, the interface
rows (stencils across an interface, global constraints) are dropped with a warning. Two ways to
couple experts (:class:`Continuity`):

* ``INDEPENDENT`` (the paper): interface rows are dropped and each expert solves its own rows,
  all $K$ experts as one batch of $B K$ problems of $N$ unknowns (padding rows are zero). Cost
  per iteration $O(M N^2)$ for $M$ rows; the stitched field may jump across interfaces.
* ``INTERFACE_ROWS`` (ours): the interface rows are kept and continuity rows
  $w\,(e_- - e_+)$ (the one-sided extrapolations of :mod:`~physml.constraints.experts` from both
  sides) are added, which couples neighbours: one least-squares problem of $K N$ unknowns per
  sample, cost $O(M K^2 N^2 + K^3 N^3)$ per iteration. Its Jacobian takes $C N$ forward
  products, $C$ the colours of the experts' conflict graph (2 for a chain of blocks;
  :class:`~physml.constraints.ExpertColouring`), instead of one per unknown.

With one block both are the single global hard constraint. A third way, overlapping experts
solved apart and blended by a partition of unity, is :class:`~physml.constraints.PartitionOfUnity`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from enum import Enum

import torch
from torch import nn
from torch.func import jvp, vmap
from torch.nn.functional import one_hot

from ..devices import require_tensor_device, require_torch_device
from ..solvers.errors import is_real
from .colouring import ExpertColouring
from .experts import BlockRouter, interface_differences, level_constants, padded_rows
from .implicit import least_squares_solution
from .levenberg_marquardt import LevenbergMarquardt, LMResult

DEFAULT_SOLVER = LevenbergMarquardt()
Rows = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (u (B, *grid), phi) -> (B, M)


class Continuity(Enum):
    """How experts meet at their interfaces (see the module docstring)."""

    INDEPENDENT = "independent"
    INTERFACE_ROWS = "interface_rows"
    PARTITION_OF_UNITY = "partition_of_unity"  # :class:`~physml.constraints.PartitionOfUnity`


def _row_tangents(field_rows: Callable[[torch.Tensor], torch.Tensor],
                  regions: torch.Tensor) -> torch.Tensor:
    """(R, M): the forward product of ``field_rows(u (1, *grid)) -> (1, M)`` at a random u in
    a random direction supported on region r of ``regions`` (R, *grid) bool (e.g. the experts'
    blocks, :meth:`BlockRouter.masks`): nonzero where row i depends on region r. Drawn on the
    CPU (fixed seed), evaluated on ``regions``' device."""
    g = torch.Generator().manual_seed(0)
    u = 0.05 + 0.5 * torch.rand(1, *regions.shape[1:], dtype=torch.float64, generator=g)
    u = u.to(regions.device)
    tangents = []
    for region in regions:
        direction = torch.rand(1, *region.shape, dtype=torch.float64, generator=g)
        direction = direction.to(region.device) * region
        tangents.append(jvp(field_rows, (u,), (direction,))[1][0])
    return torch.stack(tangents)


def probe_phi(phi_shape: tuple[int, ...]) -> torch.Tensor:
    """The conditioning inputs at which the rows' dependence on u is probed, shape
    (2, 1, *phi_shape) float64: φ uniform in [0.5, 1.5] (fixed seed) and -φ. Away from 0, so
    that coefficients the rows take from φ (a diffusivity, a velocity) do not vanish there as
    they would at φ = 0; of both signs, so that a stencil that switches with φ's sign
    (upwinding by a velocity from φ) is seen both ways."""
    g = torch.Generator().manual_seed(1)
    phi = 0.5 + torch.rand(1, *phi_shape, dtype=torch.float64, generator=g)
    return torch.stack([phi, -phi])


def probed_dependence(rows: Rows, phi_shape: tuple[int, ...],
                      regions: torch.Tensor) -> torch.Tensor:
    """(R, M) bool: whether row i of ``rows(u, φ)`` depends on the grid values in region r of
    ``regions`` (R, *grid) bool (:func:`_row_tangents`), united over the φ of
    :func:`probe_phi` (of ``phi_shape``, one sample's conditioning input): a row whose stencil
    changes with φ depends on every cell it can read. A probe at which a row's linearisation
    is not finite (φ outside the
    domain of a coefficient, a diffusivity under a square root) does not count for that row,
    unless no probe is finite for it. The rows run on ``regions``' device, and so does the
    result."""
    tangents = torch.stack([_row_tangents(lambda u, phi=phi: rows(u, phi), regions)
                            for phi in probe_phi(phi_shape).to(regions.device)])  # (probes, R, M)
    finite = tangents.isfinite().all(1, keepdim=True)
    counted = finite | ~finite.any(0)
    return ((tangents != 0) & counted).any(0)


def check_rows_read_u(depends: torch.Tensor) -> None:
    """Refuse rows that depend on no grid value: ``depends`` (R, M) from :func:`probed_dependence`
    over regions covering the grid (a constraint must involve the output)."""
    blind = torch.nonzero(~depends.any(0))[:, 0].tolist()
    if blind:
        raise ValueError(f"residual rows {blind[:5]}{' ...' if len(blind) > 5 else ''} "
                         f"({len(blind)} of {depends.shape[1]}) depend on no value of the output "
                         "u: a constraint must involve the output; leave them out of the rows")


def row_owners(depends: torch.Tensor) -> torch.Tensor:
    """The expert owning each row (M,), from ``depends`` (K, M) (:func:`probed_dependence` on the
    experts' blocks): its index, or -1 for interface rows."""
    return torch.where(depends.sum(0) == 1, depends.long().argmax(0), -1)


INDEPENDENT_CURE = ("use fewer experts or a finer grid; rows that read several blocks at once (a "
                    "global constraint) need continuity=INTERFACE_ROWS or one expert")


def warn_dropped_rows(dropped: torch.Tensor, experts: str, cure: str) -> None:
    """Warn that ``experts`` (e.g. "independent experts") drop the rows ``dropped`` (M,) bool,
    those no expert solves alone, with their count and ``cure``; no rows, no warning."""
    rows = torch.nonzero(dropped)[:, 0]
    if len(rows):
        more = " ..." if len(rows) > 5 else ""
        warnings.warn(f"{experts} drop the {len(rows)} residual rows that read more than one "
                      f"block (rows {rows[:5].tolist()}{more}): stencils across an interface "
                      f"and global constraints no expert solves alone; {cure}", stacklevel=3)


def check_basis_size(n: int, expert_rows: tuple[int, ...], expert_cells: tuple[int, ...],
                     cure: str) -> None:
    """Refuse a basis of ``n`` functions when an expert has fewer rows or fewer grid points than
    that, ``expert_rows`` (K,) the rows its unknowns enter and ``expert_cells`` (K,) the points
    its field is taken on: its least squares then has no unique $\\omega$, and the
    implicit-function gradient is not the gradient of the field the solve returns. Names the
    expert with the fewest; ``cure`` ends the message."""
    fixed = [min(rows, cells) for rows, cells in zip(expert_rows, expert_cells, strict=True)]
    k = min(range(len(fixed)), key=fixed.__getitem__)
    if n > fixed[k]:
        raise ValueError(f"the basis has N={n} functions but expert {k} of {len(fixed)} has "
                         f"{expert_rows[k]} residual rows on {expert_cells[k]} grid points, "
                         f"which fix at most {fixed[k]} unknowns: its least squares has no "
                         "unique solution and its gradient would not be the field's; use at "
                         f"most {fixed[k]} basis functions, or {cure}")


def check_rows_accept(rows: Rows, router: BlockRouter, phi_shape: tuple[int, ...],
                      device: torch.device) -> None:
    """Refuse ``rows`` that are not callable, a ``phi_shape`` that is not a tuple (or list),
    and residual rows that fail on one sample of ``router``'s grid and a zero conditioning
    input of ``phi_shape`` on ``device`` (naming ``phi_shape`` where the rows accept φ of the
    grid's space shape instead, and ``device=`` where they meet a tensor on another device;
    the rows' own error chained), or that return other than one row vector, (1, M)."""
    if not callable(rows):
        raise ValueError(f"rows is a {type(rows).__name__}; pass the residual rows, a function "
                         "rows(u (B, *grid), phi (B, ...)) -> (B, M)")
    if not isinstance(phi_shape, tuple | list):
        raise ValueError(f"phi_shape={phi_shape!r} must be a tuple: the shape of one sample's "
                         "conditioning input, e.g. (nx,)")
    grid = tuple(router.shape)
    u = torch.zeros(1, *grid, dtype=torch.float64, device=device)
    try:
        r = rows(u, torch.zeros(1, *phi_shape, dtype=torch.float64, device=device))
    except (RuntimeError, IndexError) as error:
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
        if "device" in reason:
            raise ValueError(f"the residual rows raise on one sample of the grid {grid} made on "
                             f"device={str(device)!r} ({reason}); rows that hold tensors on "
                             "another device (a coefficient field) are probed there: pass "
                             "that device as device=") from error
        space = grid[1:]
        if tuple(phi_shape) != space and _accepts(rows, u, space):
            raise ValueError(f"the residual rows fail on the grid {grid} with phi_shape="
                             f"{tuple(phi_shape)} ({reason}) but accept phi of the grid's "
                             f"space shape {space}; give the shape of one sample's "
                             "conditioning input") from error
        raise ValueError(f"the residual rows raise on one sample of the grid {grid} "
                         f"({reason}); the error is in the rows (see the error above)"
                         ) from error
    if r.ndim != 2 or r.shape[0] != 1:
        raise ValueError(f"the residual rows return shape {tuple(r.shape)} for one sample of the "
                         f"grid {grid}; expected (1, M): rows(u (B, *grid), phi) -> (B, M), "
                         "each sample's rows flattened into one axis")


def _accepts(rows: Rows, u: torch.Tensor, phi_shape: tuple[int, ...]) -> bool:
    """Whether ``rows`` evaluate on ``u`` and a zero φ of ``phi_shape`` (on ``u``'s device)."""
    try:
        rows(u, torch.zeros(1, *phi_shape, dtype=torch.float64, device=u.device))
    except (RuntimeError, IndexError):
        return False
    return True


def check_inputs(basis: torch.Tensor, phi: torch.Tensor, router: BlockRouter,
                 phi_shape: tuple[int, ...]) -> None:
    """Refuse a basis or φ that is not a floating-point tensor on a device physml runs on, a
    basis that is not (B, N, *grid) on ``router``'s grid with B, N >= 1, or a φ that is not
    (B, *phi_shape), naming the kinds, devices or shapes given and expected. Values are not
    checked: a NaN/Inf in either gives a non-finite u (where a trainer stops and names the
    step)."""
    for name, value in (("basis", basis), ("phi", phi)):
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} is {kind}; expected a floating-point torch.Tensor")
        require_tensor_device(name, value)
    grid = tuple(router.shape)
    if basis.ndim != 2 + len(grid) or tuple(basis.shape[2:]) != grid or min(basis.shape[:2]) < 1:
        raise ValueError(f"basis has shape {tuple(basis.shape)}; expected (B, N, "
                         f"{', '.join(map(str, grid))}): B >= 1 samples of N >= 1 basis functions "
                         "on the router's grid")
    if tuple(phi.shape) != (basis.shape[0], *phi_shape):
        raise ValueError(f"phi has shape {tuple(phi.shape)}; expected ({basis.shape[0]}, "
                         f"{', '.join(map(str, phi_shape))}): the basis's {basis.shape[0]} "
                         f"samples of phi_shape={tuple(phi_shape)}")


class HardConstraint(nn.Module):
    """$u = b\\cdot\\omega$ with $\\omega$ from the inner least squares (module docstring).

    Args:
        rows: the problem's residual rows, ``rows(u (B, *grid), phi (B, ...)) -> (B, M)``;
            probed once at construction on ``device`` (rows holding tensors on a GPU, a
            coefficient field, need that GPU there), in forward on the inputs' device.
        router: the experts' blocks (``blocks=(1, 1)`` for the single hard constraint).
        phi_shape: the shape of one sample's conditioning input (e.g. ``(nx,)``).
        continuity: :class:`Continuity`.
        solver: the inner Levenberg–Marquardt solver.
        interface_weight: $w$ of the continuity rows (``INTERFACE_ROWS`` only), > 0.
        coloured: form the coupled Jacobian from $C N$ forward products by colouring the
            experts (:class:`~physml.constraints.ExpertColouring`; ``INTERFACE_ROWS`` only)
            rather than from one per unknown, $K N$.
        align_constants: (``INDEPENDENT`` only) shift each expert's field by the constant per
            time level that best joins it to its neighbours
            (:func:`~physml.constraints.experts.level_constants`): for rows blind to such
            constants, which each expert's own solve leaves free.
        condition_rows: the last rows that are initial or boundary conditions, not the PDE
            (``INDEPENDENT`` refuses an expert that owns no row of the PDE).
        device: where the rows are probed and the layer's buffers are built ("cpu", "cuda",
            "cuda:N"); move the layer with ``.to`` as any module.

    ``forward(basis (B, N, *grid), phi (B, ...)) -> u (B, *grid)`` in ``basis``'s dtype (other
    shapes: a ValueError naming them; a NaN/Inf gives a non-finite u); the inner solve's
    :class:`LMResult` of the last call is kept in ``last_solve``. A basis of more functions
    $N$ than the rows some expert's unknowns enter (``expert_rows``: its own rows, and with
    ``INTERFACE_ROWS`` the interface and continuity rows on its block too) or than the points
    of its block (``expert_cells``) is refused: that expert's $\\omega$ would not be unique.
    """

    def __init__(self, rows: Rows, router: BlockRouter, phi_shape: tuple[int, ...], *,
                 continuity: Continuity = Continuity.INTERFACE_ROWS,
                 solver: LevenbergMarquardt = DEFAULT_SOLVER,
                 interface_weight: float = 10.0, coloured: bool = True,
                 align_constants: bool = False, condition_rows: int = 0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        device = torch.device(require_torch_device(device))
        if not (is_real(interface_weight) and interface_weight > 0):
            raise ValueError(f"interface_weight={interface_weight!r} must be a number > 0")
        if continuity is Continuity.PARTITION_OF_UNITY:
            raise ValueError("continuity=PARTITION_OF_UNITY is not a mode of this layer; allowed: "
                             "Continuity.INTERFACE_ROWS, Continuity.INDEPENDENT (for a "
                             "partition of unity use physml.constraints.PartitionOfUnity)")
        self.rows, self.router, self.continuity = rows, router, continuity
        self.solver, self.interface_weight = solver, interface_weight
        if align_constants and continuity is not Continuity.INDEPENDENT:
            raise ValueError("align_constants is for independent experts (coupled experts' "
                             "interface rows already join their constants)")
        self.align_constants = align_constants
        check_rows_accept(rows, router, phi_shape, device)
        self.phi_shape = tuple(phi_shape)
        masks = router.masks().to(device)
        depends = probed_dependence(rows, phi_shape, masks)
        check_rows_read_u(depends)
        owners = row_owners(depends)
        owned = torch.zeros(router.experts, 0, dtype=torch.long, device=device)
        if continuity is Continuity.INDEPENDENT:
            per_expert = [torch.nonzero(owners == k)[:, 0] for k in range(router.experts)]
            owned = padded_rows(per_expert, len(owners), len(owners) - condition_rows,
                                cure=INDEPENDENT_CURE)
            warn_dropped_rows(owners < 0, "independent experts",
                              "keep them with continuity=INTERFACE_ROWS or one expert")
            expert_rows = (owned < len(owners)).sum(1)
        self.register_buffer("owned", owned, persistent=False)  # (K, width)
        groups = torch.ones(1, router.experts)  # every expert's unknown j at once
        self.colouring: ExpertColouring | None = None
        if continuity is Continuity.INTERFACE_ROWS:
            groups = torch.eye(router.experts)  # one expert's unknown j at a time
            stitched = probed_dependence(self._stitched_rows, phi_shape, masks)
            expert_rows = stitched.sum(1)
            if coloured:
                self.colouring = ExpertColouring(stitched)
                groups = one_hot(self.colouring.colours, self.colouring.count).T
        self.expert_rows = tuple(expert_rows.tolist())  # (K,): the rows each expert enters
        self.expert_cells = tuple(masks.flatten(1).sum(1).tolist())  # (K,)
        self.register_buffer("groups", groups.to(device, torch.float64), persistent=False)
        group_of = groups.argmax(0)  # (K,): each expert's group
        self.register_buffer("group_of", group_of.to(device), persistent=False)
        self.last_solve: LMResult | None = None

    def field(self, omega: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """$u$ (B, nt, n_1, ...) from ``omega`` (B, K, N) and ``blocks`` (B, K, N, *block)."""
        return self.router.stitch(torch.einsum("bkn...,bkn->bk...", blocks, omega))

    def _independent_rows(self, omega, blocks, phi):
        return self._owned_rows(self.field(omega.reshape(blocks.shape[:3]), blocks), phi)

    def _owned_rows(self, u, phi):
        """Each expert's own rows of ``u`` (B, *grid), (B K, width), zero-padded."""
        r = self.rows(u, phi)
        r = torch.cat([r, r.new_zeros(len(r), 1)], dim=1)
        return r[:, self.owned].reshape(len(r) * self.router.experts, -1)

    def _stitched_rows(self, u, phi):
        jumps = self.interface_weight * interface_differences(u, self.router)
        return torch.cat([self.rows(u, phi), jumps], dim=1)

    def _coupled_rows(self, omega, blocks, phi):
        return self._stitched_rows(self.field(omega.reshape(blocks.shape[:3]), blocks), phi)

    def jacobian(self, omega: torch.Tensor, blocks: torch.Tensor, phi: torch.Tensor
                 ) -> torch.Tensor:
        """$J$ of the inner least squares' rows at ``omega`` (the solve's (B K, N) or (B, K N))
        for ``blocks`` (B, K, N, *block) and ``phi``: (B K, width, N) or (B, M, K N).

        $u$ is linear in $\\omega$, so the forward product in the direction that moves unknown
        $j$ of the experts in ``groups[d]`` is the rows' linearisation at $u$ in the direction
        of the field $\\sum_k$ ``groups[d, k]`` $b|_k^{(j)}$: $D N$ products ($D$ = 1
        independent, $C$ coloured, $K$ otherwise) in one vectorised pass, their $D N$ fields
        built from the basis once, with no copy of it per product. Expert $k$ takes the columns
        of its group ``group_of[k]``, where a row depends on it when coloured
        (:class:`ExpertColouring`). Memory: $J$, and the $D N$ directions, columns and rows'
        intermediates."""
        batch, experts, n = blocks.shape[:3]
        u = self.field(omega.reshape(batch, experts, n), blocks)
        rows = (self._owned_rows if self.continuity is Continuity.INDEPENDENT
                else self._stitched_rows)
        directions = self.router.stitch(torch.einsum("bkn...,dk->dnbk...", blocks, self.groups))
        columns = vmap(lambda t: jvp(lambda v: rows(v, phi), (u,), (t,))[1])(
            directions.flatten(0, 1)).unflatten(0, (len(self.groups), n))  # (D, N, B, M)
        if self.continuity is Continuity.INDEPENDENT:
            return columns[0].permute(1, 2, 0)  # (B K, width, N)
        J = columns[self.group_of]  # (K, N, B, M)
        if self.colouring is not None:
            J = J * self.colouring.depends[:, None, None, :]
        return J.permute(2, 3, 0, 1).reshape(batch, -1, experts * n)

    def forward(self, basis: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        check_inputs(basis, phi, self.router, self.phi_shape)
        batch, n = basis.shape[:2]
        check_basis_size(n, self.expert_rows, self.expert_cells, "fewer experts or a finer grid")
        blocks = self.router.split(basis.to(torch.float64)).transpose(1, 2).contiguous()
        phi64 = phi.to(torch.float64)
        experts = self.router.experts
        if self.continuity is Continuity.INDEPENDENT:
            residual, shape = self._independent_rows, (batch * experts, n)
        else:
            residual, shape = self._coupled_rows, (batch, experts * n)
        omega0 = torch.zeros(shape, dtype=torch.float64, device=basis.device)
        fixed = blocks.detach(), phi64.detach()
        self.last_solve = least_squares_solution(
            residual, self.solver, omega0, blocks, phi64,
            jacobian=lambda _, omega: self.jacobian(omega, *fixed))
        u = self.field(self.last_solve.omega.reshape(batch, experts, n), blocks)
        if self.align_constants:
            u = level_constants(u, self.router)
        return u.to(basis.dtype)
