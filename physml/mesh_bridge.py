r"""PyTorch autograd through the mesh operators: gradients with respect to vertex positions.

- :func:`operator_values`: positions $x$ (n, d) $\mapsto$ the CSR values (nnz,) of the stiffness
  $K(x)$ or mass $M(x)$ matrix (topology from :func:`physml.solvers.mesh.pattern`). Backward:
  $\bar t_e = \bar v_{\mathrm{slot}(e)}$ (gather from the CSR slots), then the element kernel's
  Warp adjoint gives $\bar x$.
- :func:`sparse_solve`: $u = A(v)^{-1} b$ for the CSR values $v$ of a symmetric
  positive-definite A: :func:`physml.linalg_bridge.csr_solve` (CG preconditioned by Jacobi or
  AMG, by size: :data:`JACOBI_ROWS`), whose
  backward is the package's one implicit-solve adjoint, a transpose solve
  $\lambda = A^{-T}\bar u$, then $\bar b = \lambda$ and $\bar v_{ij} = -\lambda_i u_j$.
- :func:`poisson_solve`: $-\Delta u = f$ in P1 with Dirichlet values on given vertices,
  $K_{II} u_I = (M f)_I - K_{IB} g$, composed of the two above, so its gradient flows to $x$,
  $f$ and $g$.

Every backward allocates its gradients afresh, so calling backward twice gives the same result.

**torch.func**: ``grad``, ``vjp`` and ``jacrev`` work on :func:`operator_values`,
:func:`sparse_solve` and :func:`poisson_solve`, and ``vmap`` over ``f``, ``g`` or ``b`` (one
solve per sample, a gradient inside it too) and over :func:`operator_values`' points; not
``vmap`` over the matrix of a solve (``poisson_solve``'s points: call once per mesh geometry),
forward mode or second derivatives (:mod:`physml.linalg_bridge`). **torch.compile** runs
:func:`operator_values`, :func:`sparse_solve` and :func:`poisson_solve` eagerly: the graph
breaks around each call, and the model around it still compiles.
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp
import torch
import warp as wp

from .devices import require_tensor_device
from .eager import eager
from .linalg_bridge import (
    csr_solve,
    first_order,
    first_order_only,
    forward_mode_refused,
    one_cotangent_only,
)
from .solvers.kept import LeastRecentlyUsed
from .solvers.linalg import Jacobi, SmoothedAggregationAMG, cg
from .solvers.mesh import Mesh, Pattern, element_triplets, element_triplets_adjoint, pattern
from .solvers.mesh.pde import require_grounded

__all__ = [
    "JACOBI_ROWS", "RESTRICTIONS_PER_MESH", "SOLVE_RTOL", "csr_indices", "operator_values",
    "poisson_solve", "sparse_solve", "spmv",
]

_WP_DTYPES = {torch.float32: wp.float32, torch.float64: wp.float64}
_VEC = {(2, wp.float32): wp.vec2f, (2, wp.float64): wp.vec2d,
        (3, wp.float32): wp.vec3f, (3, wp.float64): wp.vec3d}


def _warp_points(mesh: Mesh, points: torch.Tensor) -> wp.array:
    _require_tensors(points=points)
    require_tensor_device("points", points, str(mesh.device), "the mesh is on")
    if points.shape != mesh.points.shape:
        raise ValueError(f"points must have shape {mesh.points.shape}, got {tuple(points.shape)}")
    if points.dtype not in _WP_DTYPES:
        raise ValueError(f"points must be float32 or float64, got {points.dtype}")
    vec = _VEC[(mesh.dim, _WP_DTYPES[points.dtype])]
    return wp.from_torch(points.detach().contiguous(), dtype=vec)


def _require_tensors(**tensors: object) -> None:
    """Refuse an argument that is not a tensor, naming it (a NumPy array: torch.as_tensor)."""
    for name, value in tensors.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} is a {type(value).__name__}; pass a torch.Tensor "
                             f"(torch.as_tensor({name}))")


class _OperatorValues(torch.autograd.Function):
    """Points (n, d) -> CSR values (nnz,); under ``torch.func.vmap`` (:meth:`vmap`) one
    assembly per vmapped sample of points."""

    @staticmethod
    def forward(points: torch.Tensor, mesh: Mesh, kind: str, check: bool) -> torch.Tensor:
        x = _warp_points(mesh, points)  # checked first
        if check:
            mesh.check_moved_points(x)
        dtype = _WP_DTYPES[points.dtype]
        matrix = pattern(mesh, dtype).assemble(element_triplets(mesh, kind, dtype, x))
        return wp.to_torch(matrix.values)[: matrix.nnz].clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        points, ctx.mesh, ctx.kind, _ = inputs
        ctx.save_for_backward(points)

    @staticmethod
    def backward(ctx, values_grad: torch.Tensor):
        first_order_only("operator_values", values_grad)
        one_cotangent_only("operator_values", values_grad)
        (points,) = ctx.saved_tensors
        mesh, kind = ctx.mesh, ctx.kind

        def adjoint(cotangent: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
            slots = wp.to_torch(pattern(mesh, _WP_DTYPES[at.dtype]).slots).long()
            triplets_grad = wp.from_torch(cotangent.contiguous()[slots].contiguous())
            grad = element_triplets_adjoint(mesh, kind, _warp_points(mesh, at), triplets_grad)
            return wp.to_torch(grad).reshape(at.shape)

        return first_order("operator_values", adjoint, values_grad, points), None, None, None

    @staticmethod
    def jvp(ctx, *tangents):
        raise forward_mode_refused("operator_values")

    @staticmethod
    def vmap(info, in_dims, points, mesh, kind, check):
        samples = points.movedim(in_dims[0], 0)
        return torch.stack([_OperatorValues.apply(p, mesh, kind, check) for p in samples]), 0


@eager  # the Warp assembly runs eagerly
def operator_values(points: torch.Tensor, mesh: Mesh, kind: str = "stiffness") -> torch.Tensor:
    """CSR values of the stiffness (``kind="stiffness"``) or consistent mass (``"mass"``) matrix.

    Args:
        points: (n, d) vertex positions (float32 or float64, on the mesh's device).
        mesh: gives the cells and the CSR topology ``pattern(mesh, dtype).indptr/indices``.
        kind: ``"stiffness"`` or ``"mass"``.

    Returns:
        (nnz,) values, differentiable with respect to ``points``.

    Raises:
        ValueError: ``points`` fold a cell (the message building a
            :class:`~physml.solvers.mesh.Mesh` on them gives), a bad shape or dtype, or a
            device other than the mesh's.
    """
    if kind not in ("stiffness", "mass"):
        raise ValueError(f"kind must be 'stiffness' or 'mass', got {kind!r}")
    return _OperatorValues.apply(points, mesh, kind, True)


SOLVE_RTOL = 1e-13
"""Relative residual of :func:`sparse_solve`'s forward and transpose solves: near float64
round-off, so the solve is exact to what a float64 finite-difference gradient check resolves.
Where the arithmetic's rounding floor lies above it (float32, or large smooth problems), the
solves return the best x that arithmetic gives (``floor="accept"``)."""

JACOBI_ROWS = 50_000
"""Fewest rows for which :func:`sparse_solve` preconditions CG with smoothed-aggregation AMG;
below, with Jacobi. Each call builds its preconditioner (A changes with the points), and AMG's
set-up costs more than the iterations it saves up to here: ``poisson_solve`` forward and
backward, P1 on a disc (one thread, medians), Jacobi / SA-AMG 3.5 / 10.6 ms at 411 vertices,
24.9 / 58.3 ms at 6.0e3, 0.60 / 0.87 s at 4.5e4, 2.4 / 1.2 s at 9.4e4; on a cube 0.21 / 0.38 s
at 2.8e4 vertices, 2.0 / 2.6 s at 9.8e4."""


@eager  # Warp assembly and Krylov solves run eagerly
def sparse_solve(values: torch.Tensor, b: torch.Tensor, indptr: np.ndarray,
                 indices: np.ndarray) -> torch.Tensor:
    r"""$u = A^{-1} b$ for the symmetric positive-definite CSR matrix $A$ = (``values``,
    ``indices``, ``indptr``): CG to :data:`SOLVE_RTOL`, preconditioned by Jacobi below
    :data:`JACOBI_ROWS` rows, by smoothed-aggregation AMG from there.

    Differentiable in ``values`` (nnz,) and ``b`` (n,); the backward costs one more solve with
    the forward's operator and preconditioner (:func:`physml.linalg_bridge.csr_solve`,
    ``symmetric=True``).
    """
    offsets, columns = (torch.as_tensor(np.asarray(a, dtype=np.int64), device=b.device)
                        for a in (indptr, indices))
    preconditioner = Jacobi if len(indptr) - 1 < JACOBI_ROWS else SmoothedAggregationAMG
    return csr_solve(values, b, offsets, columns, solver=cg, preconditioner=preconditioner,
                     symmetric=True, rtol=SOLVE_RTOL, floor="accept")


_RESTRICTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per mesh (held weakly: a mesh dropped by its user is freed with its entries), the
:func:`_restriction` of its :data:`RESTRICTIONS_PER_MESH` last used (dtype, boundary) pairs."""

RESTRICTIONS_PER_MESH = 8


def _restriction(mesh: Mesh, dtype: type, boundary: bytes):
    """Entries of the CSR pattern in the interior block, and the interior block's topology
    (checked: a Dirichlet vertex in every connected part of the mesh); cached per mesh."""
    kept = _RESTRICTIONS.setdefault(mesh, LeastRecentlyUsed(RESTRICTIONS_PER_MESH))
    return kept.get((dtype, boundary), lambda: _interior_block(mesh, dtype, boundary))


def _interior_block(mesh: Mesh, dtype: type, boundary: bytes):
    """:func:`_restriction`'s arrays, computed."""
    pat = pattern(mesh, dtype)
    n = mesh.n_vertices
    fixed = np.frombuffer(boundary, dtype=np.int64)
    interior = np.setdiff1d(np.arange(n), fixed)
    positions = sp.csr_matrix((np.arange(pat.nnz, dtype=np.int64) + 1, pat.indices, pat.indptr),
                              shape=(n, n))
    require_grounded(positions, fixed)
    index = positions[interior][:, interior]
    index.sort_indices()
    return interior, index.data - 1, index.indptr, index.indices


_CSR_INDICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per :class:`~physml.solvers.mesh.Pattern` (held weakly: it lives as long as its mesh), the
:func:`csr_indices` on each device it was used on."""


@eager  # NumPy set-up, cached per pattern: nothing to trace
def csr_indices(pat: Pattern, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(nnz,) int64 row and column index of every CSR entry of ``pat``, on ``device``; built
    and copied there once per pattern and device, not on every :func:`spmv`."""
    kept = _CSR_INDICES.setdefault(pat, {})
    if device not in kept:
        rows = np.repeat(np.arange(len(pat.indptr) - 1), np.diff(pat.indptr))
        kept[device] = tuple(torch.as_tensor(a, dtype=torch.long, device=device)
                             for a in (rows, pat.indices))
    return kept[device]


def spmv(values: torch.Tensor, u: torch.Tensor, mesh: Mesh) -> torch.Tensor:
    """$A u$ for CSR values (nnz,) on the mesh's pattern; differentiable in both.

    Raises:
        ValueError: ``values`` not (nnz,) or ``u`` not (n,), or not both float32 or both
            float64 on one device.
    """
    _require_tensors(values=values, u=u)
    pat = pattern(mesh, _WP_DTYPES.get(values.dtype, wp.float64))
    if (values.dtype not in _WP_DTYPES or u.dtype != values.dtype or u.device != values.device
            or tuple(values.shape) != (pat.nnz,) or tuple(u.shape) != (mesh.n_vertices,)):
        raise ValueError(f"spmv needs values ({pat.nnz},) and u ({mesh.n_vertices},) of one "
                         f"dtype, float32 or float64, on one device; got values "
                         f"{tuple(values.shape)} {values.dtype} on {values.device} and u "
                         f"{tuple(u.shape)} {u.dtype} on {u.device}")
    rows, cols = csr_indices(pat, u.device)
    return torch.zeros_like(u).index_add(0, rows, values * u[cols])


@eager  # Warp assembly and Krylov solves run eagerly
def poisson_solve(points: torch.Tensor, mesh: Mesh, f: torch.Tensor,
                  boundary: np.ndarray | None = None, g: torch.Tensor | None = None
                  ) -> torch.Tensor:
    r"""P1 solution of $-\Delta u = f$ with $u = g$ on the ``boundary`` vertices.

    Args:
        points: (n, d) vertex positions (float64 for gradcheck).
        mesh: the mesh (topology).
        f: (n,) nodal source values; the load is $M(x) f$.
        boundary: Dirichlet vertex indices (default: ``mesh.boundary_vertices()``).
        g: (len(boundary),) Dirichlet values (default 0).

    Returns:
        (n,) nodal values, differentiable in ``points``, ``f`` and ``g``.

    Raises:
        ValueError: no Dirichlet vertex (the pure Neumann problem is singular), the
            tensors differ in dtype or device, or ``points`` fold a cell
            (:func:`operator_values`).
    """
    _require_tensors(points=points, f=f, g=g)
    given = boundary is not None
    boundary = np.asarray(boundary) if given else mesh.boundary_vertices()
    if len(boundary) == 0:
        raise ValueError("poisson_solve needs Dirichlet vertices (the pure Neumann problem is "
                         "singular): " + ("boundary is empty; give at least one vertex index, "
                                          "or leave it out for the mesh's boundary" if given
                                          else "the mesh has no boundary (a closed surface); "
                                          "give boundary= vertex indices"))
    n = mesh.n_vertices
    if (boundary.ndim != 1 or not np.issubdtype(boundary.dtype, np.integer)
            or boundary.min() < 0 or boundary.max() >= n
            or len(np.unique(boundary)) != len(boundary)):
        raise ValueError(f"boundary must be distinct vertex indices in [0, {n}); got "
                         f"{len(boundary)} values in [{boundary.min()}, {boundary.max()}]")
    for name, tensor, size in (("f", f, n), ("g", g, len(boundary))):
        if tensor is not None and tuple(tensor.shape) != (size,):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; poisson_solve needs "
                             f"({size},)")
    given = {"points": points, "f": f, **({"g": g} if g is not None else {})}
    if len({(t.dtype, t.device) for t in given.values()}) > 1 or points.dtype not in _WP_DTYPES:
        shown = ", ".join(f"{k} {t.dtype} on {t.device}" for k, t in given.items())
        raise ValueError(f"poisson_solve needs points, f and g of one dtype (float32 or "
                         f"float64) on one device; got {shown}")
    dtype = _WP_DTYPES[points.dtype]
    interior, sub_entries, sub_indptr, sub_indices = _restriction(
        mesh, dtype, np.unique(boundary).astype(np.int64).tobytes())
    k_values = operator_values(points, mesh, "stiffness")
    load = spmv(_OperatorValues.apply(points, mesh, "mass", False), f, mesh)  # points checked
    u_b = torch.zeros_like(f)
    if g is not None:
        u_b = u_b.index_put((torch.as_tensor(boundary, device=f.device),), g)
    rhs = (load - spmv(k_values, u_b, mesh))[torch.as_tensor(interior, device=f.device)]
    u_i = sparse_solve(k_values[torch.as_tensor(sub_entries, device=f.device)], rhs, sub_indptr,
                       sub_indices)
    return u_b.index_put((torch.as_tensor(interior, device=f.device),), u_i)
