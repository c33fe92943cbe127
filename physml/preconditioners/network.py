r"""Encode–process–decode graph network on a matrix's graph (Li et al., ICML 2023).

Encode node and edge features to width H; process with K residual message-passing steps

$$e_{ji} \leftarrow e_{ji} + \phi_e([h_i, h_j, e_{ji}]),\qquad
h_i \leftarrow h_i + \phi_h\big([h_i, \textstyle\sum_{j} e_{ji}]\big),$$

(``torch_geometric`` :class:`~torch_geometric.nn.MessagePassing`, sum aggregation, which runs
on plain PyTorch scatter: no ``torch_scatter`` wheel needed); decode one number per strictly
lower entry (from its edge) and one per node (the diagonal). Cost per step: two MLPs of width H
over 2 E edges and n nodes, O(H² (E + n)). Shapes follow :class:`~.graph.SystemGraph`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from .graph import SystemGraph


def mlp(inputs: int, width: int, outputs: int) -> nn.Sequential:
    """Two-layer perceptron with a SiLU between."""
    return nn.Sequential(nn.Linear(inputs, width), nn.SiLU(), nn.Linear(width, outputs))


class ProcessStep(MessagePassing):
    """One residual message-passing step: edges from their end nodes, then nodes from the sum
    of their incoming edges. h: (n, H), e: (2 E, H) -> same shapes.

    The edge MLP's first layer acts on $[h_i, h_j, e_{ji}]$; it is computed as
    $W_i h_i + W_j h_j + W_e e_{ji} + c$, the node terms once per node and then gathered, which
    is the same function at a third of the edge work and without a (2 E, 3 H) concatenation.
    """

    def __init__(self, width: int) -> None:
        super().__init__(aggr="add")
        self.edge_in = nn.Linear(width, width)
        self.edge_target = nn.Linear(width, width, bias=False)
        self.edge_source = nn.Linear(width, width, bias=False)
        self.edge_out = nn.Linear(width, width)
        self.node_update_mlp = mlp(2 * width, width, width)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        source, target = edge_index
        hidden = self.edge_in(e) + self.edge_target(h)[target] + self.edge_source(h)[source]
        e = e + self.edge_out(nn.functional.silu(hidden))
        incoming = self.propagate(edge_index, e=e, size=(h.shape[0], h.shape[0]))
        h = h + self.node_update_mlp(torch.cat([h, incoming], dim=1))
        return h, e

    def message(self, e: torch.Tensor) -> torch.Tensor:
        return e


class FactorNetwork(nn.Module):
    """Per-entry outputs on A's lower pattern: (off-diagonal (E,), diagonal (n,)).

    Args:
        node_features: F, the width of ``SystemGraph.node_features``.
        width: H.
        steps: K message-passing steps.
    """

    def __init__(self, node_features: int = 2, width: int = 16, steps: int = 3) -> None:
        super().__init__()
        self.node_encoder = mlp(node_features, width, width)
        self.edge_encoder = mlp(3, width, width)
        self.steps = nn.ModuleList(ProcessStep(width) for _ in range(steps))
        self.edge_decoder = mlp(width, width, 1)
        self.node_decoder = mlp(width, width, 1)

    def forward(self, graph: SystemGraph) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.node_encoder(graph.node_features)
        e = self.edge_encoder(graph.edge_features)
        for step in self.steps:
            h, e = step(h, e, graph.edge_index)
        off = self.edge_decoder(e[graph.lower_edge]).squeeze(1)
        diagonal = self.node_decoder(h).squeeze(1)
        return off, diagonal
