r"""Reverse Cuthill–McKee numbering of a symmetric sparsity pattern, the same on every machine.

Cuthill–McKee numbers a graph breadth first: from a start node of smallest degree, each node
in turn numbers its not yet numbered neighbours by increasing degree; reversing that order
(George 1971) gives a narrow band and, on meshes, an order that sweeps the domain front by
front. Every choice here breaks ties by node index (the start node of each connected
component: the lowest-numbered node of smallest degree; neighbours: by degree, then index), and
every sort is stable, so the numbering depends on the pattern alone. SciPy's
``reverse_cuthill_mckee`` leaves its ties to an unstable sort whose outcome changes with the
CPU's vector instructions, which would make a dataset's matrices differ between machines.

The breadth-first search runs level by level in NumPy: a node of the next level belongs to the
first node of the current level that reaches it, and the level is ordered by (that parent's
place, degree, index), which is the queue order of the node-by-node algorithm. Cost
$O(\text{nnz} \log \text{nnz})$, a few NumPy calls per level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def reverse_cuthill_mckee(matrix: sp.spmatrix | sp.sparray) -> np.ndarray:
    """The reverse Cuthill–McKee permutation of a square matrix with a symmetric pattern.

    Args:
        matrix: (n, n) sparse matrix; its pattern is read as an undirected graph (the
            diagonal and stored zeros included, which changes no neighbour order).

    Returns:
        ``order`` (n,) int64: row/column ``order[k]`` of ``matrix`` becomes number k, i.e.
        ``matrix[order][:, order]`` is the renumbered matrix.
    """
    a = sp.csr_matrix(matrix)
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"matrix has shape {a.shape}; a square matrix is needed")
    indptr, indices = a.indptr.astype(np.int64), a.indices.astype(np.int64)
    degree = np.diff(indptr)
    place = np.full(n, -1, dtype=np.int64)
    levels: list[np.ndarray] = []
    numbered = 0
    while numbered < n:
        free = np.flatnonzero(place < 0)
        start = free[np.argmin(degree[free])]  # argmin: the first of equal degrees
        level = np.array([start])
        while level.size:
            place[level] = np.arange(numbered, numbered + level.size)
            numbered += level.size
            levels.append(level)
            level = _next_level(level, indptr, indices, degree, place)
    return np.concatenate(levels)[::-1].copy()


def _next_level(level: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                degree: np.ndarray, place: np.ndarray) -> np.ndarray:
    """The not yet numbered neighbours of ``level`` in Cuthill–McKee order."""
    counts = indptr[level + 1] - indptr[level]
    total = int(counts.sum())
    offsets = np.repeat(indptr[level] - np.cumsum(counts) + counts, counts)
    neighbour = indices[offsets + np.arange(total)]
    parent = np.repeat(np.arange(level.size), counts)
    fresh = place[neighbour] < 0
    neighbour, parent = neighbour[fresh], parent[fresh]
    by_node = np.lexsort((parent, neighbour))  # each node with its first parent first
    neighbour, parent = neighbour[by_node], parent[by_node]
    first = np.ones(neighbour.size, dtype=bool)
    first[1:] = neighbour[1:] != neighbour[:-1]
    neighbour, parent = neighbour[first], parent[first]
    return neighbour[np.lexsort((neighbour, degree[neighbour], parent))]
