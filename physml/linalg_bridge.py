r"""Differentiable sparse solves: $x = A(\theta)^{-1} b$ with a one-solve adjoint.

For $A(\theta)\,x = b$ and a loss $\ell(x)$ with $g = \partial\ell/\partial x$, the implicit
function theorem gives, with ONE transpose solve,

$$\lambda = A^{-T} g,\qquad \bar b = \lambda,\qquad
\bar\theta = -\frac{\partial}{\partial\theta}\big(\lambda^T A(\theta)\,x\big)
\quad(x, \lambda\ \text{held fixed}).$$

:func:`implicit_solve` is that rule for any solver: it takes the forward and transpose solve as
callables and $A(\theta)x$ as a PyTorch function, whose vector–Jacobian product gives
$\bar\theta$; nothing of the Krylov iteration is recorded. :func:`csr_solve` is the instance for
a CSR matrix with fixed sparsity and differentiable values, where
$\bar a_k = -\lambda_{i_k} x_{j_k}$; gradients with respect to anything the values are assembled
from (vertex positions, coefficients) follow by the chain rule. Tensors pass zero-copy to Warp.
Backward can be called twice and gives the same gradient (no state is kept between calls);
it is first order only: a backward pass that would build a graph (``create_graph=True``, for a
gradient penalty) is refused rather than returning a gradient whose own derivative is wrong,
and so are PyTorch's legacy batched cotangents (``is_grads_batched=True``,
``jacobian(..., vectorize=True)``: use ``vectorize=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import warp as wp
import warp.sparse as wps

from .devices import require_tensor_device
from .solvers.linalg import CsrOperator, LinearOperator, Preconditioner, SolveResult, cg
from .solvers.runtime import start_warp

__all__ = ["SYMMETRY_RTOL", "check_symmetric", "csr_solve", "implicit_solve"]

Solve = Callable[[torch.Tensor], torch.Tensor]
MatVec = Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]


def implicit_solve(
    b: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    matvec: MatVec,
    solve: Solve,
    solve_transpose: Solve,
) -> torch.Tensor:
    """$x = A(\\theta)^{-1} b$, differentiable with respect to ``b`` and ``params``.

    Args:
        b: right-hand side, shape (n,).
        params: the tensors $\\theta$ that A depends on.
        matvec: ``matvec(params, x)`` $= A(\\theta)x$ in PyTorch operations (differentiable in
            ``params``; called only in backward, once).
        solve: $b \\mapsto A^{-1}b$ (not differentiated).
        solve_transpose: $g \\mapsto A^{-T}g$ (the one solve of the backward pass).

    Returns:
        x, shape (n,).
    """
    return _ImplicitSolve.apply(matvec, solve, solve_transpose, b, *params)


def first_order_only(what: str) -> None:
    """Refuse a backward pass that builds a graph (``create_graph=True``, double backward):
    ``what``'s backward is first order, and its gradient's own derivative would be wrong.

    Raises:
        RuntimeError: gradient recording is on inside the backward pass.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(f"{what}'s backward is first order: create_graph=True (double "
                           "backward) is not supported")


def one_cotangent_only(what: str, grad: torch.Tensor,
                       alternatives: str = "torch.autograd.functional.jacobian(..., "
                                           "vectorize=False)") -> None:
    """Refuse a batch of cotangents from PyTorch's legacy batched gradients
    (``torch.autograd.grad(..., is_grads_batched=True)``,
    ``torch.autograd.functional.jacobian(..., vectorize=True)``): ``what``'s backward hands its
    cotangent to Warp or NumPy, which cannot read a batched tensor.

    Raises:
        RuntimeError: ``grad`` is a legacy batched tensor, naming ``alternatives`` (what
            computes the same Jacobian one cotangent at a time).
    """
    if torch._C._functorch.is_legacy_batchedtensor(grad):
        raise RuntimeError(f"{what}'s backward takes one cotangent at a time: batched gradients "
                           "(is_grads_batched=True, jacobian(..., vectorize=True)) are not "
                           f"supported; use {alternatives}")


class _ImplicitSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matvec, solve, solve_transpose, b, *params):
        x = solve(b.detach())
        ctx.matvec, ctx.solve_transpose = matvec, solve_transpose
        ctx.save_for_backward(x, *params)
        return x

    @staticmethod
    def backward(ctx, g):
        first_order_only("the implicit solve")
        one_cotangent_only("the implicit solve", g)
        x, *params = ctx.saved_tensors
        lam = ctx.solve_transpose(g.contiguous())
        wanted = [i for i, _ in enumerate(params) if ctx.needs_input_grad[4 + i]]
        grads: list[torch.Tensor | None] = [None] * len(params)
        if wanted:
            with torch.enable_grad():
                theta = [p.detach().requires_grad_(i in wanted) for i, p in enumerate(params)]
                ax = ctx.matvec(theta, x)
                found = torch.autograd.grad(
                    ax, [theta[i] for i in wanted], grad_outputs=-lam, allow_unused=True
                )
            for i, grad in zip(wanted, found):
                grads[i] = torch.zeros_like(params[i]) if grad is None else grad
        grad_b = lam if ctx.needs_input_grad[3] else None
        return None, None, None, grad_b, *grads


SYMMETRY_RTOL = {torch.float64: 1e-12, torch.float32: 1e-5}
"""How far, relative to the largest |entry|, $a_{ij}$ and $a_{ji}$ may differ in a matrix
passed as symmetric (:func:`csr_solve`): thousands (float64) or tens (float32) of units of
roundoff, above the rounding of a pair of entries assembled in different orders, and not
above the solvers' default tolerance in each dtype (1e-8, 1e-5), so that an asymmetry let
through changes the gradient no more than the solve's own error does."""


def check_symmetric(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    n: int) -> None:
    """Refuse an n x n matrix of entries ``values`` at (``rows``, ``cols``) (duplicates
    summed) that is not symmetric within :data:`SYMMETRY_RTOL`. A stable sort of the entries
    by column lists $A^T$'s in row-major order; where that pairs every entry with its
    transpose (a CSR matrix sorted within rows, symmetric in pattern) only the values are
    compared. Else $A - A^T$ is summed on the union of the two patterns (a sort of the 2 nnz
    positions).

    Raises:
        ValueError: naming ``symmetric=True`` and the first entry, in row-major order, that
            differs from its transpose, with both values.
    """
    if not values.numel():
        return
    rtol = SYMMETRY_RTOL[values.dtype]
    tol = rtol * values.abs().max()
    order = torch.argsort(cols, stable=True)
    if (torch.equal(rows[order], cols) and torch.equal(cols[order], rows)
            and not bool(((values[order] - values).abs() > tol).any())):
        return
    i, j = rows.to(torch.int64), cols.to(torch.int64)
    positions, slot = torch.unique(torch.cat([i * n + j, j * n + i]), return_inverse=True)
    entry = torch.zeros(positions.shape, dtype=values.dtype, device=values.device)
    entry.index_add_(0, slot[: values.numel()], values)  # A on the union, 0 where not stored
    difference = entry.clone().index_add_(0, slot[values.numel():], -values)  # A - A^T
    bad = torch.nonzero(difference.abs() > tol)
    if len(bad):
        k = int(bad[0, 0])
        row, col = divmod(int(positions[k]), n)
        a, a_t = float(entry[k]), float(entry[k] - difference[k])
        raise ValueError(f"symmetric=True but A is not symmetric: A[{row}, {col}] = {a:.6g} "
                         f"and A[{col}, {row}] = {a_t:.6g} differ by more than {rtol:g} of the "
                         "largest |entry|; pass symmetric=False (the backward then solves "
                         "with A^T)")


def csr_solve(
    values: torch.Tensor,
    b: torch.Tensor,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    *,
    solver: Callable[..., SolveResult] = cg,
    preconditioner: Callable[[LinearOperator], Preconditioner] | None = None,
    symmetric: bool = False,
    **options,
) -> torch.Tensor:
    """$x = A^{-1} b$ for the CSR matrix $A$ = (``values``, ``indices``, ``indptr``), differentiable
    with respect to ``values`` and ``b``.

    Args:
        values: the nnz stored entries, float32 or float64, on the device of ``b``.
        b: right-hand side, shape (n,).
        indptr: row pointers, shape (n + 1,); indices: column indices, shape (nnz,), sorted
            within each row, no duplicates (``scipy.sparse.csr_matrix.sorted_indices()``).
        solver: :func:`~physml.solvers.linalg.cg` (A symmetric positive definite),
            :func:`~physml.solvers.linalg.bicgstab` or :func:`~physml.solvers.linalg.gmres`.
        preconditioner: a factory ``A -> Preconditioner`` (e.g. ``Jacobi``), or None; it is
            built for A in the forward solve and for $A^T$ in the backward one.
        symmetric: A equals $A^T$: the backward solve reuses the forward's operator and
            preconditioner instead of building them for $A^T$ (an AMG set-up can cost more
            than the solves). Checked by the backward pass, where it matters (so a
            finite-difference check that perturbs one entry at a time still runs):
            $|a_{ij} - a_{ji}|$ (an entry not stored counting as 0) must not exceed
            :data:`SYMMETRY_RTOL` of the dtype times $\\max |a|$, by a stable sort of the
            column indices (O(nnz log nnz): on the CPU 30 ms on a 256^2 Poisson grid, 3 % of
            its forward and backward CG solves at rtol 1e-8).
        **options: passed to ``solver`` (``rtol``, ``atol``, ``maxiter``; ``check_every`` for
            CG and BiCGStab, ``restart`` for GMRES). Without ``rtol`` the solver's default
            for the tensors' dtype applies (1e-8 in float64, 1e-5 in float32, which float32's
            rounding floor exceeds for a smooth b on large grids, from 64^2 Poisson cells:
            :data:`~physml.solvers.linalg.krylov.DEFAULT_RTOL`).

    Returns:
        x, shape (n,). Cost: one solve forward, one transpose solve backward. The gradient
        with respect to ``values`` is per stored entry, $-\\lambda_i x_j$ at (i, j): not
        symmetric, even for a symmetric A; values assembled symmetrically (from one
        parameter per pair) get the sum of both entries through the chain rule.

    Raises:
        ValueError: ``solver`` or ``preconditioner`` is not callable, ``indptr`` or ``indices``
            holds a non-integer, ``symmetric=True`` and A is not symmetric (by the backward
            pass, naming the first entry, in row-major order, that differs from its transpose),
            ``b``, ``indptr`` and ``values`` disagree in length, ``indptr`` does not rise from 0
            to nnz, a column index lies outside [0, n), or ``b``, ``indptr`` or ``indices`` is
            on a device physml does not run on ("meta", "mps").
    """
    for name, tensor in (("values", values), ("b", b)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype not in (torch.float32,
                                                                         torch.float64):
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} is {kind}; pass a float32 or float64 torch.Tensor")
    if values.dtype != b.dtype or values.device != b.device:
        raise ValueError(f"values are {values.dtype} on {values.device}, b {b.dtype} on "
                         f"{b.device}: they need one dtype and device")
    require_tensor_device("b", b)
    if not callable(solver):
        raise ValueError(f"solver={solver!r} must be a solve function: cg, bicgstab or gmres of "
                         "physml.solvers.linalg (the function, not its name)")
    if preconditioner is not None and not callable(preconditioner):
        raise ValueError(f"preconditioner={preconditioner!r} must be a factory A -> "
                         "Preconditioner (e.g. Jacobi, or PRECONDITIONERS['ic0']): csr_solve "
                         "builds it for A, and for A^T backward; not a built one, not a name")
    indptr, indices = torch.as_tensor(indptr), torch.as_tensor(indices)  # SciPy's arrays too
    for name, tensor in (("indptr", indptr), ("indices", indices)):
        require_tensor_device(name, tensor)
        if tensor.is_floating_point() and not torch.equal(tensor, tensor.round()):
            raise ValueError(f"{name} holds fractional or non-finite values ({tensor.dtype}); "
                             "pass whole numbers (SciPy's csr_matrix.indptr and .indices)")
    n = b.shape[0]
    if b.dim() != 1 or indptr.shape != (n + 1,) or values.shape != indices.shape:
        raise ValueError(f"b has shape {tuple(b.shape)}, indptr {tuple(indptr.shape)}, values "
                         f"{tuple(values.shape)} and indices {tuple(indices.shape)}; need (n,), "
                         "(n + 1,) and two equal (nnz,)")
    falling = torch.nonzero(torch.diff(indptr.to(torch.int64)) < 0)
    if indptr[0] != 0 or indptr[-1] != values.shape[0] or len(falling):
        raise ValueError(f"indptr must rise from 0 to nnz = {values.shape[0]} without falling; "
                         f"it runs from {int(indptr[0])} to {int(indptr[-1])}"
                         + (f", falling at row {int(falling[0, 0])}" if len(falling) else ""))
    if indices.numel() and not (0 <= int(indices.min()) and int(indices.max()) < n):
        raise ValueError(f"indices must be column numbers in [0, {n}); they span "
                         f"[{int(indices.min())}, {int(indices.max())}]")
    start_warp(str(b.device))
    rows = torch.repeat_interleave(
        torch.arange(n, device=b.device, dtype=torch.int32),
        torch.diff(indptr.to(device=b.device, dtype=torch.int64)))
    cols = indices.to(device=b.device, dtype=torch.int32)

    def system(a_rows: torch.Tensor, a_cols: torch.Tensor
               ) -> tuple[CsrOperator, Preconditioner | None]:
        matrix = wps.bsr_from_triplets(
            n,
            n,
            wp.from_torch(a_rows.contiguous()),
            wp.from_torch(a_cols.contiguous()),
            wp.from_torch(values.detach().contiguous()),
            prune_numerical_zeros=False,
        )
        A = CsrOperator(matrix)
        return A, None if preconditioner is None else preconditioner(A)

    forward: list[tuple[CsrOperator, Preconditioner | None]] = []  # kept for a symmetric A

    def warp_solve(a_rows: torch.Tensor, a_cols: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        A, M = forward[0] if symmetric and forward else system(a_rows, a_cols)
        if symmetric and not forward:
            forward.append((A, M))
        result = solver(A, wp.from_torch(rhs.contiguous()), preconditioner=M, **options)
        return wp.to_torch(result.x)

    def transpose_solve(g: torch.Tensor) -> torch.Tensor:
        if symmetric:  # where the flag matters: the forward's A stands for A^T
            check_symmetric(values.detach(), rows, cols, n)
        return warp_solve(cols, rows, g)

    def matvec(theta: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x).index_add(0, rows, theta[0] * x[cols])

    return implicit_solve(
        b,
        [values],
        matvec=matvec,
        solve=lambda rhs: warp_solve(rows, cols, rhs),
        solve_transpose=transpose_solve,
    )
