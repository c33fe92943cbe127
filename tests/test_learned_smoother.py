"""The learned finest-level smoother of RS-AMG: two-grid training, the V-cycle, save/load."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import warp as wp

from physml.datasets.linear_systems import LinearSystemSpec, make_system
from physml.preconditioners import (
    FactorModel,
    LearnedPreconditioner,
    LearnedSmootherAMG,
    fit_smoother,
    mean_iterations,
    smoother_system,
    two_grid_rate,
)
from physml.solvers.linalg import CsrOperator, RugeStubenAMG, cg, csr_from_scipy

SIZE = 16
HELD_OUT = make_system(LinearSystemSpec(systems="poisson_grid", size=SIZE, samples=1), 100_016)


def operator(matrix: sp.csr_matrix) -> CsrOperator:
    return CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))


def untrained() -> FactorModel:
    torch.manual_seed(0)
    return FactorModel("sparse_inverse", width=4, steps=1)


@pytest.fixture(scope="module")
def trained() -> tuple[FactorModel, list[float]]:
    """A smoother fitted on four 16 x 16 systems (about a second)."""
    torch.set_num_threads(1)
    spec = LinearSystemSpec(systems="poisson_grid", size=SIZE, samples=1)
    systems = [smoother_system(make_system(spec, k).matrix) for k in range(4)]
    model = untrained()
    history = fit_smoother(model, systems, steps=60, learning_rate=3e-3, batch_size=4, seed=0)
    return model.eval(), history


def test_training_lowers_the_two_grid_rate_and_the_cg_iterations(trained):
    model, history = trained
    held_out = smoother_system(HELD_OUT.matrix)
    before, after = two_grid_rate(untrained(), held_out), two_grid_rate(model, held_out)
    assert np.mean(history[-10:]) < np.mean(history[:10]) - 1.0
    assert before > 0.8 and after < 0.2  # Jacobi (the untrained G) against a trained smoother
    pair = [(HELD_OUT.matrix, HELD_OUT.b)]
    iterations = [mean_iterations(LearnedSmootherAMG(m), pair) for m in (untrained(), model)]
    assert iterations[1] <= iterations[0] / 2
    assert iterations[1] <= mean_iterations(RugeStubenAMG, pair) + 2


def test_cg_with_the_learned_smoother_reaches_a_tight_true_residual(trained):
    A = operator(HELD_OUT.matrix)
    result = cg(A, wp.array(HELD_OUT.b, dtype=wp.float64), rtol=1e-12,
                preconditioner=LearnedSmootherAMG(trained[0])(A))
    x = result.x.numpy()
    residual = np.linalg.norm(HELD_OUT.b - HELD_OUT.matrix @ x) / np.linalg.norm(HELD_OUT.b)
    assert residual < 1e-10


def columns(preconditioner, n: int) -> np.ndarray:
    """The matrix of a preconditioner: its output for each unit vector."""
    z = wp.zeros(n, dtype=wp.float64)
    out = np.empty((n, n))
    for i in range(n):
        preconditioner.apply(wp.array(np.eye(n)[i], dtype=wp.float64), z)
        out[:, i] = z.numpy()
    return out


def test_the_v_cycle_is_symmetric_positive_definite_and_uses_the_learned_smoother(trained):
    A = operator(HELD_OUT.matrix)
    n = A.shape[0]
    learned = columns(LearnedSmootherAMG(trained[0])(A), n)
    np.testing.assert_allclose(learned, learned.T, atol=1e-12 * np.abs(learned).max())
    assert np.linalg.eigvalsh(0.5 * (learned + learned.T)).min() > 0
    classical = columns(RugeStubenAMG(A), n)  # the same hierarchy, pyamg's own smoother
    assert np.abs(learned - classical).max() > 1e-3 * np.abs(classical).max()


def test_save_and_load_give_the_same_preconditioner(trained, tmp_path):
    path = tmp_path / "smoother.pt"
    LearnedSmootherAMG(trained[0]).save(path)
    loaded = LearnedSmootherAMG.load(path)
    assert isinstance(loaded, LearnedSmootherAMG) and loaded.name == "learned_amg"
    A = operator(HELD_OUT.matrix)
    r = wp.array(np.random.default_rng(0).standard_normal(A.shape[0]), dtype=wp.float64)
    outputs = []
    for factory in (LearnedSmootherAMG(trained[0]), loaded):
        z = wp.zeros_like(r)
        factory(A).apply(r, z)
        outputs.append(z.numpy())
    np.testing.assert_array_equal(*outputs)


def test_a_cholesky_model_is_refused(tmp_path):
    model = FactorModel("cholesky", width=4, steps=1)
    with pytest.raises(ValueError, match="model.kind='cholesky'"):
        LearnedSmootherAMG(model)
    system = smoother_system(HELD_OUT.matrix)
    with pytest.raises(ValueError, match="model.kind='cholesky'"):
        fit_smoother(model, [system], steps=1)
    LearnedPreconditioner(model).save(tmp_path / "cholesky.pt")
    with pytest.raises(ValueError, match="holds a trained preconditioner, not a smoother"):
        LearnedSmootherAMG.load(tmp_path / "cholesky.pt")


def test_a_smoother_and_a_preconditioner_file_are_not_taken_for_each_other(trained, tmp_path):
    LearnedSmootherAMG(trained[0]).save(tmp_path / "smoother.pt")
    with pytest.raises(ValueError, match="holds a trained smoother, not a preconditioner"):
        LearnedPreconditioner.load(tmp_path / "smoother.pt")
    LearnedPreconditioner(trained[0]).save(tmp_path / "factor.pt")
    with pytest.raises(ValueError, match="load it with LearnedPreconditioner.load"):
        LearnedSmootherAMG.load(tmp_path / "factor.pt")


@pytest.mark.parametrize("omega", [1.2, 2.5])
def test_a_smoother_that_diverges_on_the_matrix_is_refused(omega):
    """An untrained G is Jacobi; a diagonal e^{o_i} = sqrt(omega) makes it omega-Jacobi,
    which diverges past omega ~ 1 on this matrix (lambda_max(D^-1 A) is close to 2)."""
    model = untrained()
    with torch.no_grad():
        model.network.node_decoder[-1].bias.fill_(0.5 * np.log(omega))
    A = operator(HELD_OUT.matrix)
    with pytest.raises(ValueError, match="learned_amg: the learned smoother diverges"):
        LearnedSmootherAMG(model)(A)
    LearnedSmootherAMG(untrained())(A)  # plain Jacobi converges: taken


def test_a_model_reading_other_node_features_is_refused_by_fit_smoother():
    model = FactorModel("sparse_inverse", width=4, steps=1, node_features=3)
    with pytest.raises(ValueError, match="reads 3 node features"):
        fit_smoother(model, [smoother_system(HELD_OUT.matrix)], steps=1)


def test_an_oversized_training_system_is_refused():
    n = 4097
    laplacian = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1],
                         format="csr")
    with pytest.raises(ValueError, match="4097 unknowns.*MAX_UNKNOWNS=4096"):
        smoother_system(laplacian)


@pytest.mark.parametrize(("arguments", "named"), [
    ({"steps": -1}, "steps=-1"), ({"steps": 1, "batch_size": 0}, "batch_size=0"),
    ({"steps": 1, "learning_rate": 0.0}, "learning_rate=0.0"),
])
def test_bad_training_arguments_are_refused_by_name(arguments, named):
    system = smoother_system(HELD_OUT.matrix)
    with pytest.raises(ValueError, match=named):
        fit_smoother(untrained(), [system], **arguments)
    with pytest.raises(ValueError, match="systems is empty"):
        fit_smoother(untrained(), [], steps=1)


def test_the_smoother_gives_the_same_bits_on_any_number_of_threads(trained):
    """Its products run in row blocks on host threads: each row's sum is the same."""
    A = operator(HELD_OUT.matrix)
    r = wp.array(np.random.default_rng(0).standard_normal(A.shape[0]), dtype=wp.float64)
    factory = LearnedSmootherAMG(trained[0])
    outputs = []
    for threads in (1, 2, 3):
        factory.threads = threads
        z = wp.zeros_like(r)
        cycle = factory(A)
        assert len(cycle.hierarchy.levels[0].presmoother.matrix.bounds) == threads
        cycle.apply(r, z)
        outputs.append(z.numpy())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_the_smoother_is_x_plus_gt_g_times_the_residual(trained):
    from physml.preconditioners.smoother import ProductSmoother

    A = HELD_OUT.matrix.tocsr()
    G = sp.random(A.shape[0], A.shape[0], density=0.05, format="csr", random_state=3)
    rng = np.random.default_rng(4)
    x, b = rng.standard_normal((2, A.shape[0]))
    smoother = ProductSmoother(A, G, threads=2)
    for _ in range(2):  # the second call finds the work vectors holding the first's
        expected = x + G.T @ (G @ (b - A @ x))
        smoother(A, x, b)
        np.testing.assert_allclose(x, expected, rtol=1e-13, atol=1e-13)


def test_one_cycle_applied_in_two_threads_at_once_gives_each_its_own_result(trained):
    """The smoother's kept work vectors are taken by one call at a time."""
    from concurrent.futures import ThreadPoolExecutor

    A = operator(HELD_OUT.matrix)
    factory = LearnedSmootherAMG(trained[0])
    factory.threads = 2
    cycle = factory(A)
    rng = np.random.default_rng(5)
    vectors = [rng.standard_normal(A.shape[0]) for _ in range(8)]
    alone = [cycle.cycle @ v for v in vectors]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            together = list(pool.map(lambda v: cycle.cycle @ v, vectors))
            for one, other in zip(alone, together):
                np.testing.assert_array_equal(one, other)


def test_the_set_up_computes_g_beside_the_hierarchy_on_large_matrices_and_several_cores(
        monkeypatch, trained):
    from physml.preconditioners import smoother as module

    factory = LearnedSmootherAMG(trained[0])
    monkeypatch.setattr(module, "available_cores", lambda: 2)
    assert not factory._overlaps(module.OVERLAP_ROWS - 1)
    assert factory._overlaps(module.OVERLAP_ROWS)
    factory.threads = 1
    assert not factory._overlaps(module.OVERLAP_ROWS)
    factory.threads = 2
    assert factory._overlaps(100)
    monkeypatch.setattr(module, "available_cores", lambda: 1)
    factory.threads = "auto"
    assert not factory._overlaps(module.OVERLAP_ROWS)


@pytest.mark.parametrize(("threads", "on_pool"), [(1, False), (2, True)])
def test_the_factor_is_computed_on_a_pool_thread_when_the_set_up_overlaps(trained, threads,
                                                                          on_pool):
    import threading

    factory = LearnedSmootherAMG(trained[0])
    factory.threads = threads
    computed_by = []
    factor = factory.factor

    def recorded(A):
        computed_by.append(threading.current_thread().name.startswith("physml-rows"))
        return factor(A)

    factory.factor = recorded
    factory(operator(HELD_OUT.matrix))
    assert computed_by == [on_pool]


def test_a_smoother_whose_products_overflow_is_refused():
    """Entries near 1e170 give an estimate of lambda_max that is NaN, which is not below 2."""
    model = untrained()
    with torch.no_grad():
        model.network.node_decoder[-1].bias.fill_(400.0)
    with pytest.raises(ValueError, match="learned smoother diverges"):
        LearnedSmootherAMG(model)(operator(HELD_OUT.matrix))


def test_the_two_grid_probes_follow_the_matrix_device_and_dtype_with_the_same_values():
    """The probes were drawn float64 on the CPU whatever the matrix: a float32 system (or one
    on CUDA; "meta" stands in for it here) met them in a mismatched product. They are drawn on
    the generator's device and moved, so the CPU float64 loss keeps its value."""
    from dataclasses import replace

    from physml.preconditioners import SmootherSystem, two_grid_loss

    spec = LinearSystemSpec(systems="poisson_grid", size=8, samples=1)
    system = smoother_system(make_system(spec, 0).matrix)
    with torch.no_grad():
        factor = untrained().scaled_factor(system.graph)

    def loss(factor, system):
        return two_grid_loss(factor, system, torch.Generator().manual_seed(0), 2, 3)

    assert float(loss(factor, system)) == pytest.approx(-0.08059102960959035, rel=1e-12)
    single = replace(system, scaled=system.scaled.float(), coarse=system.coarse.float())
    single_loss = loss(factor.float(), single)
    assert single_loss.dtype == torch.float32
    assert float(single_loss) == pytest.approx(float(loss(factor, system)), rel=1e-4)
    from physml.preconditioners.graph import _TENSORS, SystemGraph

    graph = SystemGraph(system.graph.n, *(getattr(system.graph, f).to("meta")
                                          for f in _TENSORS))  # SystemGraph.to refuses meta
    meta = SmootherSystem(graph, system.scaled.to("meta"), system.coarse.to("meta"))
    assert loss(factor.to("meta"), meta).device.type == "meta"


def test_fit_smoother_leaves_the_caller_s_random_stream_where_it_was():
    model = untrained()
    torch.manual_seed(123)
    expected = torch.rand(4)[1:]
    torch.manual_seed(123)
    torch.rand(1)
    fit_smoother(model, [smoother_system(HELD_OUT.matrix)], steps=1, seed=0)
    assert torch.equal(torch.rand(3), expected)
