"""One-line reprs that say what an object is (sizes, dtype, device), not what it holds."""

import numpy as np
import pytest
import torch
import warp as wp

from physml.models import build_model
from physml.solvers.linalg import (
    CsrOperator,
    FactorizedSparseInverse,
    IncompleteCholesky,
    Jacobi,
    RugeStubenAMG,
    SmoothedAggregationAMG,
    StencilOperator,
    csr_from_scipy,
    poisson_2d,
)
from physml.solvers.mesh import Mesh
from physml.spectral import SpectralSolver
from physml.train.bundled import ConvectionProblem
from physml.train.pinn import PINNTrainer


def square_mesh(n: int) -> Mesh:
    """The unit square cut into n x n squares of two triangles each."""
    x, y = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    index = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = (index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:])
    cells = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)])
    return Mesh(np.stack([x.ravel(), y.ravel()], 1), cells, tag_names={"domain": 1})


def test_a_mesh_repr_gives_its_sizes_not_its_arrays():
    text = repr(square_mesh(12))
    assert text == ("Mesh(dim=2, n_vertices=169, n_cells=288, cells='triangles', "
                    "dtype=float64, device='cpu', tag_names={'domain': 1})")


@pytest.fixture(scope="module")
def poisson():
    return CsrOperator(csr_from_scipy(poisson_2d(8), wp.float64, "cpu"))


def test_an_operator_repr_gives_its_size_entries_dtype_and_device(poisson):
    assert repr(poisson) == "CsrOperator(n=64, nnz=288, dtype=float64, device='cpu')"
    stencil = StencilOperator(5, lambda x, y: None, dtype="float32", device="cpu")
    assert repr(stencil) == "StencilOperator(n=5, diagonal=False, dtype=float32, device='cpu')"


@pytest.mark.parametrize("build, expected", [
    (Jacobi, "Jacobi(n=64, dtype=float64, device='cpu')"),
    (SmoothedAggregationAMG, "SmoothedAggregationAMG(n=64, levels=3, dtype=float64, "
                             "device='cpu')"),
    (lambda A: RugeStubenAMG(A, max_levels=2),
     "RugeStubenAMG(n=64, levels=2, max_levels=2, dtype=float64, device='cpu')"),
    (IncompleteCholesky, "IncompleteCholesky(n=64, nnz=176, name='ic0', dtype=float64, "
                         "device='cpu')"),
    (FactorizedSparseInverse, "FactorizedSparseInverse(n=64, nnz=176, name='fsai', "
                              "dtype=float64, device='cpu')"),
])
def test_a_preconditioner_repr_names_what_it_was_built_for(poisson, build, expected):
    assert repr(build(poisson)) == expected


def test_a_spectral_solver_repr_gives_its_settings():
    solver = SpectralSolver((16, 8), nu=0.01, dt=1e-3, nonlinearity="burgers", length=(1.0, 2.0),
                            dtype="float32")
    assert repr(solver) == ("SpectralSolver(n=(16, 8), nu=0.01, dt=0.001, reaction=0.0, "
                            "nonlinearity='burgers', length=(1.0, 2.0), device='cpu', "
                            "dtype=float32)")


def test_a_pinn_trainer_repr_gives_its_problem_network_and_progress():
    problem = ConvectionProblem(1.0, (0.0, 2 * np.pi), (0.0, 1.0), 1.0, 1.0)
    model = build_model("mlp", problem.input_dim, 1, width=4, depth=1)
    trainer = PINNTrainer(model, problem, points=16, condition_points=8, adam_steps=3,
                          eval_shape=(8, 3), dtype=torch.float64)
    assert repr(trainer) == (
        "PINNTrainer(problem=ConvectionProblem(inputs=('x', 't'), outputs=('u',)), model=MLP, "
        f"parameters={sum(p.numel() for p in model.parameters())}, points=16, "
        "condition_points=8, step=0, adam_steps=3, lbfgs_steps=0, device='cpu', "
        "dtype=float64)")
