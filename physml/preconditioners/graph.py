r"""A sparse SPD matrix as the graph a preconditioner network reads and the factor it writes.

Nodes are the unknowns, edges the off-diagonal entries of A (both directions). The network
sees the symmetrically scaled matrix $\tilde A = D^{-1/2} A D^{-1/2}$, $D = \operatorname{diag}(A)$
(unit diagonal), which makes what it learns independent of the units of A and of a
coefficient's magnitude; it predicts a factor $\tilde L$ for $\tilde A$, and the factor of A is
$L = D^{1/2}\tilde L$ (row scaling), so $L L^T = D^{1/2}\tilde L\tilde L^T D^{1/2}$.

Features (float32):

- node: $\sum_j \tilde A_{ij}$ (row sum: 0 inside a pure-Neumann-like stencil, positive next to
  a Dirichlet boundary or a mass term) and $\log(1 + \text{degree})$, shape (n, 2).
- edge: $\tilde A_{ij}$, $|\tilde A_{ij}|$ and the edge direction (+1 for $i > j$, the lower
  triangle where L lives, −1 for its mirror), shape (2 E, 3).

Edges are ordered: the E strictly lower entries $(i, j)$, $i > j$, in the CSR order of the
lower pattern (:class:`~physml.solvers.linalg.LowerPattern`), then their mirrors in the same
order, so edge e < E is lower entry e and edge E + e its transpose (``lower_edge`` keeps
that map through batching).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..devices import require_torch_device
from ..solvers.linalg.triangular import lower_triangle


@dataclass
class SystemGraph:
    """One matrix (or a batch of them, block-diagonal) as graph tensors.

    Attributes:
        n: unknowns.
        edge_index: (2, 2 E) int64, rows (source j, target i): messages flow j -> i.
        node_features: (n, F) float32.
        edge_features: (2 E, 3) float32.
        lower_rows, lower_columns: (nnz_L,) int64, the entries of the lower pattern (diagonal
            included) in CSR order: the order of a factor's values.
        strict: (E,) int64, positions in that order of the strictly lower entries.
        lower_edge: (E,) int64, the edge (column of ``edge_index``) of each of those entries.
        diagonal: (n,) int64, positions of the diagonal entries.
        scaled_values: (nnz_L,) float64, $\\tilde A$ on the lower pattern.
        sqrt_diagonal: (n,) float64, $D^{1/2}$.
    """

    n: int
    edge_index: torch.Tensor
    node_features: torch.Tensor
    edge_features: torch.Tensor
    lower_rows: torch.Tensor
    lower_columns: torch.Tensor
    strict: torch.Tensor
    lower_edge: torch.Tensor
    diagonal: torch.Tensor
    scaled_values: torch.Tensor
    sqrt_diagonal: torch.Tensor

    def to(self, device: torch.device | str) -> SystemGraph:
        """This graph on ``device`` ("cpu", "cuda", "cuda:N"; a ValueError naming it and what
        is allowed or available otherwise)."""
        device = require_torch_device(device)
        return SystemGraph(self.n, *(getattr(self, f).to(device) for f in _TENSORS))


_TENSORS = ("edge_index", "node_features", "edge_features", "lower_rows", "lower_columns",
            "strict", "lower_edge", "diagonal", "scaled_values", "sqrt_diagonal")


def system_graph(matrix: sp.spmatrix | sp.sparray, *, is_lower: bool = False) -> SystemGraph:
    """The graph of a symmetric matrix with a positive diagonal (entries of L in the order of
    :func:`~physml.solvers.linalg.triangular.lower_triangle`).

    Args:
        matrix: (n, n) SciPy sparse, symmetric, positive diagonal.
        is_lower: ``matrix`` is already the lower triangle :func:`lower_triangle` returns (a
            :class:`~physml.solvers.linalg.LowerPattern`'s ``lower``): not extracted again.
    """
    if is_lower and not (sp.issparse(matrix) and matrix.format == "csr"
                         and matrix.has_sorted_indices):
        raise ValueError("is_lower=True needs the CSR lower triangle with sorted columns that "
                         "lower_triangle returns")
    lower = matrix if is_lower else lower_triangle(sp.csr_matrix(matrix, dtype=np.float64))
    lower = lower.astype(np.float64, copy=False)
    n = lower.shape[0]
    last = lower.indptr[1:] - 1  # the diagonal ends each sorted row
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(lower.indptr))
    cols = lower.indices.astype(np.int64)
    d = lower.data[last]
    stored = cols[last] == np.arange(n)
    bad = np.flatnonzero(~stored | ~(d > 0))
    if bad.size:
        row = int(bad[0])
        found = f"the diagonal entry {float(d[row]):g}" if stored[row] else "no diagonal entry"
        raise ValueError(f"matrix has {found} in row {row}; a learned factor needs a stored, "
                         "positive diagonal (an SPD matrix)")
    s = 1.0 / np.sqrt(d)
    values = lower.data * s[rows] * s[cols]
    strict = np.flatnonzero(rows != cols)
    i, j, v = rows[strict], cols[strict], values[strict]
    count = strict.size
    edge_index = np.empty((2, 2 * count), dtype=np.int64)
    edge_index[0, :count], edge_index[1, :count] = j, i
    edge_index[0, count:], edge_index[1, count:] = i, j
    edge_features = np.empty((2 * count, 3), dtype=np.float32)
    edge_features[:count, 0] = v
    edge_features[count:, 0] = v
    np.abs(edge_features[:, 0], out=edge_features[:, 1])
    edge_features[:count, 2], edge_features[count:, 2] = 1.0, -1.0
    degree = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    row_sum = np.bincount(rows, weights=values, minlength=n) + np.bincount(j, weights=v,
                                                                           minlength=n)
    node_features = np.stack([row_sum, np.log1p(degree)], axis=1)
    t = torch.from_numpy
    return SystemGraph(
        n=n,
        edge_index=t(edge_index),
        node_features=t(node_features.astype(np.float32)),
        edge_features=t(edge_features),
        lower_rows=t(rows),
        lower_columns=t(cols),
        strict=t(strict),
        lower_edge=torch.arange(count),
        diagonal=t(last.astype(np.int64)),
        scaled_values=t(values),
        sqrt_diagonal=t(np.sqrt(d)),
    )


def batch_graphs(graphs: list[SystemGraph]) -> SystemGraph:
    """Several graphs as one block-diagonal graph (indices offset by the nodes and entries
    before them)."""
    nodes = np.cumsum([0] + [g.n for g in graphs])
    entries = np.cumsum([0] + [g.lower_rows.numel() for g in graphs])
    edges = np.cumsum([0] + [g.edge_index.shape[1] for g in graphs])

    def cat(field: str, offsets: np.ndarray | None, dim: int = 0) -> torch.Tensor:
        parts = [getattr(g, field) + (int(offsets[k]) if offsets is not None else 0)
                 for k, g in enumerate(graphs)]
        return torch.cat(parts, dim=dim)

    return SystemGraph(
        n=int(nodes[-1]),
        edge_index=cat("edge_index", nodes, dim=1),
        node_features=cat("node_features", None),
        edge_features=cat("edge_features", None),
        lower_rows=cat("lower_rows", nodes),
        lower_columns=cat("lower_columns", nodes),
        strict=cat("strict", entries),
        lower_edge=cat("lower_edge", edges),
        diagonal=cat("diagonal", entries),
        scaled_values=cat("scaled_values", None),
        sqrt_diagonal=cat("sqrt_diagonal", None),
    )
