r"""Training losses of a learned factor, on the scaled system $\tilde A\tilde x = \tilde b$.

With $\tilde x = D^{1/2} x$, $\tilde b = D^{-1/2} b$ (:mod:`.graph`) and the network's scaled
factor $\tilde L$ (``cholesky``) or $\tilde G$ (``sparse_inverse``):

- ``data`` (Li et al. 2023): $\|\tilde L\tilde L^T\tilde x - \tilde b\|^2 / \|\tilde b\|^2$ over
  solutions $x$ from the problem's own distribution; for the inverse form
  $\|\tilde G^T\tilde G\tilde b - \tilde x\|^2 / \|\tilde x\|^2$.
- ``frobenius`` (NeuralIF, Häusner et al. 2024): a one-probe estimate of the squared Frobenius
  norm over n, $\|(\tilde L\tilde L^T - \tilde A) z\|^2 / \|z\|^2$ with $z \sim N(0, I)$
  ($\mathbb E\,\|E z\|^2 = \|E\|_F^2$ and $\|z\|^2 \approx n$); for the inverse
  form $\|(\tilde G^T\tilde G\tilde A - I) z\|^2 / \|z\|^2$.
- ``combined``: their sum.

Every product is an ``index_add`` over the lower pattern's entries: O(nnz) per product.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .graph import SystemGraph

LOSSES: tuple[str, ...] = ("data", "frobenius", "combined")


def lower_product(graph: SystemGraph, values: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """$T v$ for T lower with ``values`` on the graph's lower pattern; v (n,) -> (n,)."""
    return torch.zeros_like(v).index_add(0, graph.lower_rows, values * v[graph.lower_columns])


def upper_product(graph: SystemGraph, values: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """$T^T v$ for the same T."""
    return torch.zeros_like(v).index_add(0, graph.lower_columns, values * v[graph.lower_rows])


def scaled_matvec(graph: SystemGraph, v: torch.Tensor) -> torch.Tensor:
    """$\\tilde A v$ from its lower triangle (symmetric)."""
    a = graph.scaled_values
    return lower_product(graph, a, v) + upper_product(graph, a, v) - a[graph.diagonal] * v


def preconditioner_product(kind: str) -> Callable[[SystemGraph, torch.Tensor, torch.Tensor],
                                                   torch.Tensor]:
    """$v \\mapsto \\tilde L\\tilde L^T v$ (``cholesky``) or $\\tilde G^T\\tilde G v$."""
    if kind == "cholesky":
        return lambda g, t, v: lower_product(g, t, upper_product(g, t, v))
    return lambda g, t, v: upper_product(g, t, lower_product(g, t, v))


def factor_loss(kind: str, loss: str, graph: SystemGraph, factor: torch.Tensor,
                x: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """The loss ``loss`` (one of :data:`LOSSES`; others are refused) of the scaled factor
    ``factor`` (nnz_L,) on the lower pattern of ``graph``, of the form ``kind``: ``"cholesky"``
    ($\\tilde L$, preconditioner $\\tilde L\\tilde L^T$) or ``"sparse_inverse"`` ($\\tilde G$,
    $\\tilde G^T\\tilde G$), for systems with scaled solutions ``x`` and right-hand sides ``b``
    (n,) (a batch is one block-diagonal graph); the Frobenius loss's probe vector z is drawn
    from ``generator`` (on its device, then moved to the factor's)."""
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}; allowed: {', '.join(LOSSES)}")
    product = preconditioner_product(kind)
    total = torch.zeros((), dtype=factor.dtype, device=factor.device)
    if loss in ("data", "combined"):
        if kind == "cholesky":
            total = total + (product(graph, factor, x) - b).square().sum() / b.square().sum()
        else:
            total = total + (product(graph, factor, b) - x).square().sum() / x.square().sum()
    if loss in ("frobenius", "combined"):
        # drawn on the generator's device: the same z for a model on the CPU or CUDA
        z = torch.randn(graph.n, dtype=factor.dtype, generator=generator,
                        device=None if generator is None else generator.device
                        ).to(factor.device)
        if kind == "cholesky":
            residual = product(graph, factor, z) - scaled_matvec(graph, z)
        else:
            residual = product(graph, factor, scaled_matvec(graph, z)) - z
        total = total + residual.square().sum() / z.square().sum()
    return total
