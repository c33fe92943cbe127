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

**torch.func.** ``grad``, ``vjp`` and ``jacrev`` (one transpose solve per cotangent) work;
``vmap`` over ``b`` solves the vmapped right-hand sides one after another (the matrix shared),
and a gradient inside it works too (per-sample gradients). Not supported: ``vmap`` over the
matrix (``values``, ``params``: call once per matrix), forward-mode ``jvp``/``jacfwd`` and
second derivatives. **torch.compile** runs :func:`implicit_solve` and :func:`csr_solve`
eagerly: the graph breaks around each call, and the model around it still compiles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import warp as wp
import warp.sparse as wps

from .devices import require_tensor_device
from .eager import eager
from .solvers.linalg import CsrOperator, LinearOperator, Preconditioner, SolveResult, cg
from .solvers.runtime import start_warp

__all__ = ["SYMMETRY_RTOL", "check_symmetric", "csr_solve", "implicit_solve"]

Solve = Callable[[torch.Tensor], torch.Tensor]
MatVec = Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]


@eager  # the Krylov loops and Warp calls run eagerly
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
    return _ImplicitSolve.apply(matvec, lambda rhs, _: solve(rhs),
                                lambda g, _: solve_transpose(g), b, *params)


def first_order_only(what: str, grad: torch.Tensor | None = None) -> None:
    """Refuse a backward pass that builds a graph (``create_graph=True``, double backward):
    ``what``'s backward is first order, and its gradient's own derivative would be wrong.
    Under ``torch.func.grad`` (whose backward always records, the cotangent ``grad`` then
    being functorch's) it passes: a second derivative is refused where :func:`first_order`
    is differentiated.

    Raises:
        RuntimeError: gradient recording is on inside the backward pass.
    """
    if torch.is_grad_enabled() and not (
            grad is not None and torch._C._functorch.is_functorch_wrapped_tensor(grad)):
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


def forward_mode_refused(what: str) -> NotImplementedError:
    """The error for forward-mode differentiation of ``what``, whose derivative is a
    reverse-mode adjoint."""
    return NotImplementedError(
        f"forward-mode differentiation (torch.func.jvp, jacfwd, hessian, "
        f"torch.autograd.forward_ad) of {what} is not supported: its derivative is a "
        "reverse-mode adjoint; use torch.func.vjp, jacrev or torch.autograd.grad")


def first_order(what: str, function: Callable[..., torch.Tensor], cotangent: torch.Tensor,
                *tensors: torch.Tensor) -> torch.Tensor:
    """``function(cotangent, *tensors)`` inside a backward pass that hands its cotangent to
    Warp: the function sees plain tensors even under ``torch.func.grad``/``vjp``, runs once per
    sample under ``vmap`` (``jacrev``, per-sample gradients), and its result, which depends on
    ``tensors``, refuses to be differentiated again (naming ``what``)."""
    return _FirstOrder.apply(what, function, cotangent, *tensors)


class _FirstOrder(torch.autograd.Function):
    @staticmethod
    def forward(what, function, cotangent, *tensors):
        return function(cotangent, *tensors)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.what = inputs[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(f"{ctx.what}'s backward is first order: second derivatives "
                           "(torch.func.grad of a gradient, hessian) are not supported")

    @staticmethod
    def jvp(ctx, *tangents):
        raise forward_mode_refused(f"the gradient of {ctx.what}")

    @staticmethod
    def vmap(info, in_dims, what, function, *tensors):
        samples = [_FirstOrder.apply(what, function, *(
            t if dim is None else t.select(dim, i) for t, dim in zip(tensors, in_dims[2:])))
            for i in range(info.batch_size)]
        return torch.stack(samples), 0


class _ImplicitSolve(torch.autograd.Function):
    """b and the parameters θ -> x = A(θ)^{-1} b, ``solve(b, θ)`` and
    ``solve_transpose(g, θ)`` taking plain tensors. Under ``torch.func.vmap`` (:meth:`vmap`)
    each vmapped b is solved in turn; ``grad`` and ``vjp`` take :meth:`backward`."""

    @staticmethod
    def forward(matvec, solve, solve_transpose, b, *params):
        return solve(b.detach(), params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        matvec, _, solve_transpose, _, *params = inputs
        ctx.matvec, ctx.solve_transpose = matvec, solve_transpose
        ctx.save_for_backward(output, *params)

    @staticmethod
    def backward(ctx, g):
        first_order_only("the implicit solve", g)
        one_cotangent_only("the implicit solve", g)
        x, *params = ctx.saved_tensors
        lam = first_order("the implicit solve", lambda c, *theta: ctx.solve_transpose(
            c.contiguous(), theta), g, *params)
        wanted = [i for i, _ in enumerate(params) if ctx.needs_input_grad[4 + i]]
        grads: list[torch.Tensor | None] = [None] * len(params)
        if wanted:
            def ax(*chosen: torch.Tensor) -> torch.Tensor:
                theta = list(params)
                for i, value in zip(wanted, chosen):
                    theta[i] = value
                return ctx.matvec(theta, x)

            _, pullback = torch.func.vjp(ax, *(params[i] for i in wanted))
            for i, grad in zip(wanted, pullback(-lam)):
                grads[i] = grad
        grad_b = lam if ctx.needs_input_grad[3] else None
        return None, None, None, grad_b, *grads

    @staticmethod
    def jvp(ctx, *tangents):
        raise forward_mode_refused("the implicit solve")

    @staticmethod
    def vmap(info, in_dims, matvec, solve, solve_transpose, b, *params):
        if any(dim is not None for dim in in_dims[4:]):
            raise RuntimeError("torch.func.vmap over the matrix of a sparse solve (csr_solve's "
                               "values, implicit_solve's params, poisson_solve's points) is "
                               "not supported; vmap over b, or call it once per matrix")
        x = [_ImplicitSolve.apply(matvec, solve, solve_transpose, rhs, *params)
             for rhs in b.movedim(in_dims[3], 0)]
        return torch.stack(x), 0


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


@eager  # the Krylov loops and Warp calls run eagerly
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
        indptr: row pointers, shape (n + 1,).
        indices: column indices, shape (nnz,), sorted within each row, no duplicates
            (``scipy.sparse.csr_matrix.sorted_indices()``).
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

    # the solves take the values and indices from the autograd Function, whose forward and
    # backward see plain tensors under torch.func (Warp cannot read functorch's wrappers)
    def system(a_values: torch.Tensor, a_rows: torch.Tensor, a_cols: torch.Tensor
               ) -> tuple[CsrOperator, Preconditioner | None]:
        matrix = wps.bsr_from_triplets(
            n,
            n,
            wp.from_torch(a_rows.contiguous()),
            wp.from_torch(a_cols.contiguous()),
            wp.from_torch(a_values.detach().contiguous()),
            prune_numerical_zeros=False,
        )
        A = CsrOperator(matrix)
        return A, None if preconditioner is None else preconditioner(A)

    forward: list[tuple[CsrOperator, Preconditioner | None]] = []  # kept for a symmetric A

    def warp_solve(rhs: torch.Tensor, a_values: torch.Tensor, a_rows: torch.Tensor,
                   a_cols: torch.Tensor) -> torch.Tensor:
        A, M = forward[0] if symmetric and forward else system(a_values, a_rows, a_cols)
        if symmetric and not forward:
            forward.append((A, M))
        result = solver(A, wp.from_torch(rhs.contiguous()), preconditioner=M, **options)
        return wp.to_torch(result.x)

    def solve(rhs: torch.Tensor, theta: Sequence[torch.Tensor]) -> torch.Tensor:
        return warp_solve(rhs, *theta)

    def transpose_solve(g: torch.Tensor, theta: Sequence[torch.Tensor]) -> torch.Tensor:
        a_values, a_rows, a_cols = theta
        if symmetric:  # where the flag matters: the forward's A stands for A^T
            check_symmetric(a_values.detach(), a_rows, a_cols, n)
        return warp_solve(g, a_values, a_cols, a_rows)

    def matvec(theta: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        a_values, a_rows, a_cols = theta
        return torch.zeros_like(x).index_add(0, a_rows, a_values * x[a_cols])

    return _ImplicitSolve.apply(matvec, solve, transpose_solve, b, values, rows, cols)
