r"""The solution of an inner least-squares problem as a differentiable function of its inputs.

For inputs $\theta$ and a residual $r(\omega, \theta)\in\mathbb{R}^{M}$ (per sample of a batch),
$$\omega^\star(\theta) = \arg\min_\omega \phi(\omega, \theta),\qquad
\phi = \tfrac12\lVert r(\omega,\theta)\rVert^2 .$$
The forward pass runs a solver (:class:`~physml.constraints.LevenbergMarquardt`) without autograd.
The backward pass never unrolls it: it applies the implicit function theorem to the optimality
condition $F(\omega^\star, \theta) = \nabla_\omega\phi = J^\top r = 0$ ($J = \partial r/\partial
\omega$):
$$\frac{d\omega^\star}{d\theta} = -H^{-1}\,\partial_\theta\nabla_\omega\phi,\qquad
H = \nabla^2_\omega\phi = J^\top J + \textstyle\sum_i r_i\,\nabla^2_\omega r_i .$$
Given the incoming gradient $\bar g = \partial L/\partial\omega^\star$, one adjoint solve
$H\lambda = \bar g$ ($H$ is symmetric) gives
$$\frac{\partial L}{\partial\theta} = -\nabla_\theta\big(\lambda\cdot\nabla_\omega\phi\big)
= -\Big(\frac{\partial r}{\partial\theta}\Big)^{\!\top} J\lambda
  - \Big(\frac{\partial (J\lambda)}{\partial\theta}\Big)^{\!\top} r ,$$
all evaluated at $(\omega^\star, \theta)$. The Gauss–Newton form ($H \approx J^\top J$ and only
the first term) is exact only where $r(\omega^\star) = 0$; the constrained systems here have more
rows than unknowns and a nonzero residual at the solution, so this module implements the **exact**
form, both terms and the full Hessian. Autograd computes them: $\nabla_\omega\phi$ with a graph,
$H$ by $N$ reverse-over-reverse products, the last line by one more reverse pass. A ridge of
$10^{-12}$ times the mean of $H$'s diagonal (at least $\sqrt{\text{tiny}}$, 1.5e-154 in float64)
keeps a rank-deficient $H$ solvable, and a zero one (a basis that vanishes on the expert's
block) gives a zero gradient. Cost per
backward: $N + 2$ residual-sized reverse passes and a batched $N\times N$ solve. The backward
pass reads only saved tensors, so calling it twice gives the same gradient; it is first order
only (a backward pass that would build a graph, ``create_graph=True``, is refused). It holds at an
optimum only: where a sample's solve stopped short of its tolerance (``converged`` false), the
backward warns (``RuntimeWarning``) and still returns the formula's value there.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..linalg_bridge import first_order_only
from .levenberg_marquardt import Jacobian, LevenbergMarquardt, LMResult, batched_jacobian

BatchedResidual = Callable[..., torch.Tensor]  # (omega (B, N), *inputs) -> (B, M)


class UnconvergedSolveWarning(RuntimeWarning):
    """The backward pass of a solve some of whose samples stopped short of their tolerance: the
    implicit gradient there assumes an optimum they did not reach. A caller that records
    ``LMResult.converged`` itself (the mixture-of-experts trainer) may filter it."""


_LIBRARIES = (str(Path(torch.__file__).parent), str(Path(__file__).parents[1]))


def _caller_outside_libraries() -> int:
    """The ``stacklevel`` of the first frame above the caller that is neither PyTorch's nor
    physml's: the line that called ``backward`` (autograd runs a CPU graph's backward on the
    calling thread, under that line's frames), not autograd's own."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARIES):
        frame, level = frame.f_back, level + 1
    return level


def objective_hessian(residual: BatchedResidual, omega: torch.Tensor,
                         inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """$H_b = \\nabla^2_\\omega\\phi_b$ (B, N, N) and $\\nabla_\\omega\\phi$ (B, N) with its graph,
    $\\phi_b = \\tfrac12\\lVert r_b\\rVert^2$ for the rows ``residual(omega, *inputs)`` (B, M).

    ``omega`` (B, N) must require grad; the returned gradient keeps the graph to ``omega`` and
    ``inputs``.
    """
    r = residual(omega, *inputs)
    (g,) = torch.autograd.grad(0.5 * (r * r).sum(), omega, create_graph=True)
    eye = torch.eye(omega.shape[1], dtype=omega.dtype, device=omega.device)
    rows = [torch.autograd.grad(g, omega, eye[j].expand_as(g), retain_graph=True)[0]
            for j in range(omega.shape[1])]
    return torch.stack(rows, dim=1), g


class _LeastSquaresSolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, residual, solver, jacobian, omega0, *inputs):
        fixed = tuple(x.detach() for x in inputs)
        result = solver.solve(lambda w: residual(w, *fixed), omega0, jacobian)
        ctx.residual = residual
        ctx.unconverged = (int((~result.converged).sum()), result.converged.numel())
        ctx.save_for_backward(result.omega, *inputs)
        ctx.mark_non_differentiable(result.iterations, result.converged, result.residual_norm)
        return result.omega, result.iterations, result.converged, result.residual_norm

    @staticmethod
    def backward(ctx, g_omega, *_):
        first_order_only("the least-squares solution")
        omega, *inputs = ctx.saved_tensors
        unconverged, batch = ctx.unconverged
        if unconverged:
            warnings.warn(f"{unconverged} of {batch} least-squares solves stopped before their "
                          "tolerance: their implicit gradient assumes an optimum they did not "
                          "reach (raise the solver's max_iter, or read LMResult.converged)",
                          UnconvergedSolveWarning, stacklevel=_caller_outside_libraries())
        with torch.enable_grad():
            w = omega.detach().requires_grad_()
            xs = tuple(x.detach().requires_grad_(need) for x, need in
                       zip(inputs, ctx.needs_input_grad[4:], strict=True))
            H, g = objective_hessian(ctx.residual, w, xs)
            ridge = (1e-12 * H.diagonal(dim1=1, dim2=2).mean(1).abs()).clamp_min(
                torch.finfo(H.dtype).tiny ** 0.5)  # a normal number whose inverse is finite
            H = H + torch.diag_embed(ridge[:, None].expand_as(w))
            lam = torch.linalg.solve(H.detach(), g_omega.to(H.dtype))
            wanted = [i for i, x in enumerate(xs) if x.requires_grad]
            grads = torch.autograd.grad(g, [xs[i] for i in wanted], -lam,
                                        materialize_grads=True) if wanted else ()
        out = [None] * len(xs)
        for i, gx in zip(wanted, grads, strict=True):
            out[i] = gx
        return (None, None, None, None, *out)


def least_squares_solution(residual: BatchedResidual, solver: LevenbergMarquardt,
                           omega0: torch.Tensor, *inputs: torch.Tensor,
                           jacobian: Jacobian = batched_jacobian) -> LMResult:
    """$\\omega^\\star(\\theta)$ with the implicit-function backward (see the module docstring).

    Args:
        residual: ``residual(omega, *inputs)`` maps ``omega`` (B, N) to rows (B, M); rows of
            sample ``b`` depend on ``omega[b]`` only. It must work under ``torch.func`` and
            autograd (plain tensor operations).
        solver: the inner solver; it runs in float64.
        omega0: starting point (B, N); it receives no gradient.
        inputs: the tensors $\\theta$ the residual depends on (float64 for exact gradients).
        jacobian: how the solver forms $J$ (e.g. an
            :class:`~physml.constraints.ExpertColouring`'s ``jacobian``).

    Returns:
        An :class:`LMResult` whose ``omega`` is differentiable with respect to ``inputs``.
    """
    return LMResult(*_LeastSquaresSolution.apply(residual, solver, jacobian, omega0, *inputs))
