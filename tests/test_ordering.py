import numpy as np
import pytest
import scipy.sparse as sp

from physml.solvers.linalg.model_problems import poisson_2d
from physml.solvers.linalg.ordering import reverse_cuthill_mckee


def queue_rcm(matrix: sp.csr_matrix) -> np.ndarray:
    """Cuthill–McKee node by node with a queue (George & Liu's statement), reversed."""
    n = matrix.shape[0]
    degree = np.diff(matrix.indptr)
    seen = np.zeros(n, dtype=bool)
    order: list[int] = []
    while len(order) < n:
        start = min(np.flatnonzero(~seen), key=lambda u: (degree[u], u))
        queue, seen[start] = [int(start)], True
        while queue:
            v = queue.pop(0)
            order.append(v)
            row = matrix.indices[matrix.indptr[v]:matrix.indptr[v + 1]]
            for u in sorted({int(u) for u in row if not seen[u]}, key=lambda u: (degree[u], u)):
                seen[u] = True
                queue.append(u)
    return np.array(order[::-1])


def symmetric_random(n: int, density: float, seed: int) -> sp.csr_matrix:
    m = sp.random(n, n, density=density, random_state=seed)
    return sp.csr_matrix(m + m.T + sp.eye(n))


@pytest.mark.parametrize("seed", range(12))
def test_rcm_is_cuthill_mckee_node_by_node_reversed(seed):
    rng = np.random.default_rng(seed)
    matrix = symmetric_random(int(rng.integers(1, 80)), rng.uniform(0.0, 0.12), seed)
    np.testing.assert_array_equal(reverse_cuthill_mckee(matrix), queue_rcm(matrix))


def test_rcm_numbers_every_component_and_narrows_a_shuffled_grid():
    m = 12
    grid = poisson_2d(m)
    shuffle = np.random.default_rng(1).permutation(m * m)
    shuffled = sp.csr_matrix(grid[shuffle][:, shuffle])
    two = sp.block_diag([shuffled, shuffled], format="csr")  # two components
    order = reverse_cuthill_mckee(two)
    np.testing.assert_array_equal(np.sort(order), np.arange(2 * m * m))
    renumbered = two[order][:, order].tocoo()
    assert np.abs(renumbered.row - renumbered.col).max() <= m + 1
    coo = shuffled.tocoo()
    assert np.abs(coo.row - coo.col).max() > 5 * m
