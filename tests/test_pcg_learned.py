"""Learned preconditioners: SPD by construction, losses, training, save/load, datasets."""

import copy
import json
import pickle
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import warp as wp
import yaml

from conftest import damage_a_tensor, shard_stamps
from physml.cases.pcg import PCGCase, dataset_spec
from physml.datasets.generate import generate
from physml.datasets.linear_systems import LinearSystemSpec, make_system, read_systems
from physml.datasets.spec import load_spec
from physml.errors import NonFiniteLossError
from physml.preconditioners import (
    FactorModel,
    LearnedPreconditioner,
    LearnedSmootherAMG,
    factor_loss,
    fit,
    mean_iterations,
    system_graph,
    training_system,
)
from physml.preconditioners.network import network_weights
from physml.solvers import host_threads
from physml.solvers.linalg import (
    CsrOperator,
    Jacobi,
    LowerPattern,
    cg,
    csr_from_scipy,
    factor_network,
)
from physml.solvers.linalg.factor_network import NetworkFactor
from physml.solvers.linalg.factor_network_source import TILE


def perturbed(kind: str, seed: int) -> FactorModel:
    """A model with every weight random (not the zero-initialised decoders)."""
    torch.manual_seed(seed)
    model = FactorModel(kind, width=8, steps=2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def small_systems():
    grid = LinearSystemSpec(systems="poisson_grid", size=6, samples=1)
    heat = LinearSystemSpec(systems="heat_mesh", size=4, samples=1, domain="l_shape")
    return [make_system(grid, 0).matrix, make_system(heat, 1).matrix]


@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
def test_every_learned_preconditioner_is_spd(kind):
    for seed in range(3):
        for matrix in small_systems():
            graph = system_graph(matrix)
            with torch.no_grad():
                values = perturbed(kind, seed)(graph).numpy()
            f = sp.csr_matrix((values, (graph.lower_rows.numpy(), graph.lower_columns.numpy())),
                              shape=matrix.shape).toarray()
            m = f @ f.T if kind == "cholesky" else f.T @ f
            np.testing.assert_allclose(m, m.T, atol=1e-12)
            assert np.linalg.eigvalsh(m).min() > 0


def message_passing_by_the_formula(network, graph):
    """The encode-process-decode network written as its formula, one row per node or edge:
    e_ji += phi_e([h_i, h_j, e_ji]), h_i += phi_h([h_i, sum_j e_ji])."""
    silu = torch.nn.functional.silu
    h = network.node_encoder(graph.node_features)
    e = network.edge_encoder(graph.edge_features)
    source, target = graph.edge_index
    for step in network.steps:
        first = torch.cat([step.edge_target.weight, step.edge_source.weight,
                           step.edge_in.weight], dim=1)  # acts on [h_i, h_j, e_ji]
        hidden = torch.cat([h[target], h[source], e], dim=1) @ first.T + step.edge_in.bias
        e = e + step.edge_out(silu(hidden))
        incoming = torch.zeros_like(h).index_add(0, target, e)
        h = h + step.node_update_mlp(torch.cat([h, incoming], dim=1))
    return (network.edge_decoder(e[graph.lower_edge]).squeeze(1),
            network.node_decoder(h).squeeze(1))


def test_the_graph_of_a_pattern_s_lower_triangle_is_the_graph_of_the_matrix():
    for matrix in small_systems():
        direct = system_graph(matrix)
        shared = system_graph(LowerPattern(matrix).lower, is_lower=True)
        for field in ("edge_index", "node_features", "edge_features", "lower_rows",
                      "lower_columns", "strict", "lower_edge", "diagonal", "scaled_values",
                      "sqrt_diagonal"):
            assert torch.equal(getattr(direct, field), getattr(shared, field)), field
    with pytest.raises(ValueError, match="is_lower"):
        system_graph(sp.csc_matrix(matrix), is_lower=True)


def test_the_network_computes_its_formula():
    network = perturbed("cholesky", 0).network.double()
    for matrix in small_systems():
        graph = system_graph(matrix)
        graph.node_features = graph.node_features.double()
        graph.edge_features = graph.edge_features.double()
        with torch.no_grad():
            for got, expected in zip(network(graph), message_passing_by_the_formula(network,
                                                                                    graph)):
                torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def float64_features(graph):
    """The graph's features from its float64 scaled values, without the float32 rounding of
    system_graph (the native forward's inputs in float64)."""
    v = graph.scaled_values[graph.strict]
    i, j = graph.lower_rows[graph.strict], graph.lower_columns[graph.strict]
    n = graph.n
    row_sum = (torch.zeros(n, dtype=torch.float64).index_add(0, graph.lower_rows,
                                                              graph.scaled_values)
               .index_add(0, j, v))
    degree = torch.bincount(i, minlength=n) + torch.bincount(j, minlength=n)
    direction = torch.cat([torch.ones_like(v), -torch.ones_like(v)])
    both = torch.cat([v, v])
    graph.node_features = torch.stack([row_sum, torch.log1p(degree.double())], dim=1)
    graph.edge_features = torch.stack([both, both.abs(), direction], dim=1)
    return graph


def uneven_rows(n: int = 40) -> sp.csr_matrix:
    """A diagonally dominant SPD matrix whose rows hold from no neighbour (the last row) to
    more than twice the 8 a row's short paths cover, on both sides of the diagonal."""
    rng = np.random.default_rng(3)
    lower = sp.lil_matrix((n, n))
    for i in range(1, n - 1):
        for j in rng.choice(i, size=min(i, int(rng.integers(0, 20))), replace=False):
            lower[i, j] = -rng.uniform(0.1, 1.0)
    off = sp.csr_matrix(lower) + sp.csr_matrix(lower).T
    matrix = sp.csr_matrix(off - sp.diags(np.asarray(off.sum(axis=1)).ravel() - 0.5))
    lower, upper = (np.diff(part.indptr) for part in (sp.tril(matrix, -1, "csr"),
                                                      sp.triu(matrix, 1, "csr")))
    assert lower.max() > 16 and upper.max() > 16 and lower[-1] == upper[-1] == 0
    return matrix


@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
@pytest.mark.parametrize("steps, width", [(0, 6), (2, 6), (1, 4)])  # width 4: its own layers
def test_the_native_forward_is_the_network_in_float64(kind, steps, width):
    torch.manual_seed(steps)
    model = FactorModel(kind, width=width, steps=steps).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    native = NetworkFactor(network_weights(model.network), kind, dtype=wp.float64)
    several_tiles = make_system(LinearSystemSpec(systems="poisson_grid", size=24, samples=1), 2)
    assert LowerPattern(several_tiles.matrix).nnz > 3 * TILE
    for matrix in [*small_systems(), several_tiles.matrix, uneven_rows()]:
        pattern = LowerPattern(matrix)
        graph = float64_features(system_graph(pattern.lower, is_lower=True))
        with torch.no_grad():
            expected = model(graph).numpy()
        np.testing.assert_allclose(native.values(pattern, csr_from_scipy(matrix, wp.float64,
                                                                         "cpu")).numpy(),
                                   expected, rtol=1e-12,
                                   atol=1e-14 * np.abs(expected).max())


@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
@pytest.mark.parametrize("dtype", [wp.float32, wp.float64])
def test_the_native_forward_in_parts_is_bitwise_the_forward_in_one(kind, dtype):
    """Split into 2, 3 or 7 parts (chunks of rows that split rows of 9 to 40 edges, tiles, and
    runs of up to 8 summed 8 wide), run at once on host threads or one after the other on a
    pool's own thread, the factor is bit for bit the one-part factor; the refusals name the
    same rows."""
    weights = network_weights(perturbed(kind, 3).network)
    grid = make_system(LinearSystemSpec(systems="poisson_grid", size=37, samples=1), 1).matrix
    for matrix in (uneven_rows(), grid):
        pattern = LowerPattern(matrix)
        A = csr_from_scipy(matrix, wp.float64, "cpu")
        native = NetworkFactor(weights, kind, dtype=dtype)
        whole = native.values(pattern, A, threads=1).numpy()
        for threads in (2, 3, 7, 2):
            np.testing.assert_array_equal(native.values(pattern, A, threads=threads).numpy(),
                                          whole)
        with ThreadPoolExecutor(1, initializer=host_threads._mark_pool_thread) as pool:
            in_turn = pool.submit(native.values, pattern, A, threads=3).result().numpy()
        np.testing.assert_array_equal(in_turn, whole)
    negative = sp.csr_matrix(grid, copy=True)
    negative.setdiag(grid.diagonal() * np.where(np.arange(grid.shape[0]) == 700, -1.0, 1.0))
    for threads in (1, 3):
        with pytest.raises(ValueError, match="in row 700; a learned factor needs a positive"):
            NetworkFactor(weights, kind).values(LowerPattern(negative),
                                                csr_from_scipy(negative, wp.float64, "cpu"),
                                                threads=threads)
    with pytest.raises(ValueError, match="threads=0; allowed"):
        NetworkFactor(weights, kind).values(LowerPattern(grid), csr_from_scipy(grid, wp.float64,
                                                                               "cpu"), threads=0)


def test_the_forward_s_parts_running_at_once_give_the_one_part_factor_every_time():
    """Parts that overlap in time (a 128² grid, two parts or more) share no scratch: every
    factor is bit for bit the one-part factor (parts writing each other's scratch change the
    factor of only some calls, hence 100 calls each)."""
    grid = make_system(LinearSystemSpec(systems="poisson_grid", size=128, samples=1), 1).matrix
    pattern, A = LowerPattern(grid), csr_from_scipy(grid, wp.float64, "cpu")
    native = NetworkFactor(network_weights(perturbed("cholesky", 3).network), "cholesky")
    whole = native.values(pattern, A, threads=1).numpy()
    settings = [2, *(["auto"] if factor_network.forward_parts(pattern.n) > 1 else [])]
    for threads in settings:
        assert factor_network.forward_parts(pattern.n, threads) > 1
        differing = sum(not np.array_equal(native.values(pattern, A, threads=threads).numpy(),
                                           whole) for _ in range(100))
        assert differing == 0, f"threads={threads!r}: {differing} of 100 factors differ"


def test_a_float64_network_trains_and_gives_the_native_forward_s_factor(monkeypatch):
    """A model made ``.double()`` reads the graph's float32 features in float64 (it raised a
    dtype error in training and on the PyTorch path)."""
    matrix = small_systems()[0]
    x = np.random.default_rng(0).standard_normal(matrix.shape[0])
    torch.manual_seed(0)
    model = FactorModel("cholesky", width=4, steps=1).double()
    history = fit(model, [training_system(matrix, x, matrix @ x)], loss="combined", steps=3)
    assert np.isfinite(history).all()
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    native = LearnedPreconditioner(model)(A).values.numpy()
    monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    np.testing.assert_allclose(LearnedPreconditioner(model)(A).values.numpy(), native,
                               rtol=2e-6)



def test_the_pytorch_path_leaves_a_training_model_in_training_mode(monkeypatch):
    """The factor of the PyTorch path (CUDA, or a system too large for the native forward)
    is computed in eval mode without leaving a model being trained in it."""
    matrix = small_systems()[0]
    model = FactorModel("cholesky", width=4, steps=1)
    model.train()
    monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    LearnedPreconditioner(model)(CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu")))
    assert model.training

def test_the_native_forward_keeps_its_scratch_per_size_and_thread_safely(monkeypatch):
    """A factor computed after another size's, or beside other threads' (the scratch arrays
    are kept between calls), is bit for bit a fresh network's."""
    weights = network_weights(perturbed("cholesky", 2).network)
    shared = NetworkFactor(weights, "cholesky")
    hosts = [make_system(LinearSystemSpec(systems="poisson_grid", size=size, samples=1),
                         0).matrix for size in (48, 64)]  # forwards long enough to overlap
    patterns = [LowerPattern(host) for host in hosts]
    matrices = [csr_from_scipy(host, wp.float64, "cpu") for host in hosts]
    fresh = [NetworkFactor(weights, "cholesky").values(p, m).numpy()
             for p, m in zip(patterns, matrices)]
    for k, expected in enumerate([*fresh, *fresh]):
        np.testing.assert_array_equal(shared.values(patterns[k % 2], matrices[k % 2]).numpy(),
                                      expected)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: shared.values(patterns[k % 2],
                                                        matrices[k % 2]).numpy(), range(32)))
    for k, got in enumerate(results):
        np.testing.assert_array_equal(got, fresh[k % 2])
    same_shape = hosts[1] + sp.identity(patterns[1].n) * 0.25  # other values
    warp_same_shape = csr_from_scipy(same_shape, wp.float64, "cpu")
    np.testing.assert_array_equal(
        shared.values(LowerPattern(same_shape), warp_same_shape).numpy(),
        NetworkFactor(weights, "cholesky").values(LowerPattern(same_shape),
                                                  warp_same_shape).numpy())
    for out in (wp.float32, wp.float64):  # a recording per factor dtype, then a new size
        shared.values(patterns[0], csr_from_scipy(hosts[0], out, "cpu"), out=out)
    shared.values(patterns[1], matrices[1])
    kept = shared._scratch[1]
    assert all(all(held is array for held, array in zip(arguments[16:20], kept))
               for _, arguments in shared._recorded.values())  # none holds an older scratch
    other = 0 if shared._scratch[0][:2] == (patterns[1].n, patterns[1].nnz) else 1
    monkeypatch.setattr(factor_network, "KEPT_SCRATCH_BYTES", 0)  # a large system's is freed
    np.testing.assert_array_equal(shared.values(patterns[other], matrices[other]).numpy(),
                                  fresh[other])
    assert shared._scratch is None


@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
def test_a_preconditioner_s_factor_is_its_network_s_and_follows_training(kind):
    """The factor a LearnedPreconditioner builds (native, float32 network) equals the PyTorch
    network's output, also after the parameters change in place."""
    model = perturbed(kind, 1)
    factory = LearnedPreconditioner(model)
    matrix = small_systems()[0]
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    for _ in range(2):
        with torch.no_grad():
            expected = model(system_graph(matrix)).numpy()
        got = factory(A).values.numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())
        for p in model.parameters():
            p.data.mul_(1.5)  # a change no version counter of the parameters records
    first = next(model.parameters())
    first.data = first.data + 0.25  # new storage: the kept views see the old one
    with torch.no_grad():
        expected = model(system_graph(matrix)).numpy()
    got = factory(A).values.numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def test_the_native_forward_refuses_inconsistent_weights_and_precisions():
    weights = network_weights(FactorModel("cholesky", width=4, steps=1).network)
    with pytest.raises(ValueError, match="weights hold"):
        # a last decoder layer of H outputs where the network has one
        NetworkFactor(replace(weights, edge_decoder=(weights.edge_decoder[0],
                                                     weights.edge_decoder[0])), "cholesky")
    with pytest.raises(ValueError, match="float64 factor"):
        NetworkFactor(weights, "cholesky", dtype=wp.float64).values(
            LowerPattern(small_systems()[0]), csr_from_scipy(small_systems()[0], wp.float32,
                                                             "cpu"), out=wp.float32)


def test_the_native_forward_refuses_a_matrix_without_a_positive_diagonal():
    matrix = sp.csr_matrix(small_systems()[0], copy=True)
    matrix.setdiag(matrix.diagonal() * np.where(np.arange(matrix.shape[0]) == 3, -1.0, 1.0))
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    with pytest.raises(ValueError, match=r"entry -[0-9.]+ in row 3; .*positive diagonal"):
        LearnedPreconditioner(perturbed("cholesky", 0))(A)
    matrix.setdiag(np.where(np.arange(matrix.shape[0]) == 0, np.nan, matrix.diagonal()))
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    with pytest.raises(ValueError, match="entry nan in row 0"):
        LearnedPreconditioner(perturbed("sparse_inverse", 0))(A)


def test_a_training_blow_up_names_its_step_and_is_not_taken():
    matrix = small_systems()[0]
    system = training_system(matrix, np.ones(matrix.shape[0]), matrix @ np.ones(matrix.shape[0]))
    model = FactorModel("cholesky", width=4, steps=1)
    losses = []
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, [system], loss="combined", steps=50, learning_rate=1e8,
            on_step=lambda step, loss: losses.append(loss))
    assert err.value.step == len(losses) + 1 and "gradient became NaN/Inf" in str(err.value)
    assert all(np.isfinite(losses))  # the first step whose loss or gradient is not finite


@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
def test_learned_pcg_reaches_1e_10(kind):
    matrix = small_systems()[1]
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    b = np.random.default_rng(0).standard_normal(matrix.shape[0])
    M = LearnedPreconditioner(perturbed(kind, 0))(A)
    result = cg(A, wp.array(b, dtype=wp.float64), preconditioner=M, rtol=1e-10, check_every=1)
    x = result.x.numpy()
    assert np.linalg.norm(matrix @ x - b) / np.linalg.norm(b) < 1e-9


@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
@pytest.mark.parametrize("loss", ["data", "frobenius", "combined"])
def test_losses_gradcheck_in_float64(kind, loss):
    matrix = small_systems()[0]
    system = training_system(matrix, np.ones(matrix.shape[0]), matrix @ np.ones(matrix.shape[0]))
    rng = np.random.default_rng(0)
    factor = torch.tensor(rng.uniform(0.5, 1.0, system.graph.lower_rows.numel()),
                          requires_grad=True)

    def value(f):
        return factor_loss(kind, loss, system.graph, f, system.x, system.b,
                           torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(value, (factor,))


def test_frobenius_loss_is_zero_for_the_exact_cholesky_factor():
    matrix = small_systems()[0]
    graph = system_graph(matrix)
    a = graph.scaled_values.numpy()
    full = sp.csr_matrix((a, (graph.lower_rows.numpy(), graph.lower_columns.numpy())),
                         shape=matrix.shape).toarray()
    full = full + np.tril(full, -1).T
    exact = np.linalg.cholesky(full)  # dense: fills in, so compare on a full lower pattern
    dense = sp.csr_matrix(np.tril(np.ones_like(full)) * (np.abs(full) + 1))
    dense_graph = system_graph(dense)
    rows, cols = dense_graph.lower_rows.numpy(), dense_graph.lower_columns.numpy()
    dense_graph.scaled_values = torch.tensor(full[rows, cols])
    loss = factor_loss("cholesky", "frobenius", dense_graph, torch.tensor(exact[rows, cols]),
                       torch.zeros(graph.n), torch.ones(graph.n))
    assert loss.item() < 1e-24


@pytest.fixture
def one_thread():
    """Train on one PyTorch thread: two threads on the shared two-core machine run these small
    layers several times slower (see physml.threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_lowers_loss_and_iterations_on_held_out_systems(one_thread):
    spec = LinearSystemSpec(systems="poisson_grid", size=16, samples=1, log_std=1.0)
    systems = [make_system(spec, seed) for seed in range(16)]
    train, held_out = systems[:12], systems[12:]
    data = [training_system(s.matrix, s.x, s.b) for s in train]
    torch.manual_seed(0)
    model = FactorModel("cholesky", width=16, steps=2)
    pairs = [(s.matrix, s.b) for s in held_out]
    before = mean_iterations(LearnedPreconditioner(model), pairs, rtol=1e-8)
    history = fit(model, data, loss="combined", steps=200, learning_rate=5e-3, batch_size=4)
    after = mean_iterations(LearnedPreconditioner(model), pairs, rtol=1e-8)
    assert np.mean(history[-20:]) < 0.2 * np.mean(history[:5])
    assert after <= before - 2  # 23.25 -> 19.75 iterations measured (IC(0): 20.75)


def test_saved_preconditioner_works_on_a_new_matrix_in_two_lines(tmp_path):
    model = perturbed("cholesky", 3)
    LearnedPreconditioner(model).save(tmp_path / "m.pt")
    matrix = small_systems()[0]
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    b = wp.array(np.ones(matrix.shape[0]), dtype=wp.float64)
    M = LearnedPreconditioner.load(tmp_path / "m.pt")
    result = cg(A, b, preconditioner=M(A), rtol=1e-10)
    reference = cg(A, b, preconditioner=LearnedPreconditioner(model)(A), rtol=1e-10)
    assert result.iterations == reference.iterations
    np.testing.assert_array_equal(result.x.numpy(), reference.x.numpy())
    with pytest.raises(ValueError, match="no trained preconditioner"):
        LearnedPreconditioner.load(tmp_path / "missing.pt")
    name = damage_a_tensor(tmp_path / "m.pt")  # torch.load reads it without a word
    with pytest.raises(ValueError, match=rf"m.pt' is not a trained preconditioner \(ValueError: "
                                         rf"its part '.*/{name}' fails its checksum"):
        LearnedPreconditioner.load(tmp_path / "m.pt")


@pytest.mark.parametrize("family", ["poisson_grid", "heat_mesh", "wave_mesh", "poisson_tet"])
def test_generated_systems_are_spd_and_solved(tmp_path, family):
    size = {"poisson_grid": 8, "heat_mesh": 5, "wave_mesh": 5, "poisson_tet": 3}[family]
    spec = LinearSystemSpec(systems=family, size=size, samples=4, shard_size=2,
                            splits={"train": 0.5, "valid": 0.25, "test": 0.25})
    manifest = generate(spec, tmp_path, workers=0)
    assert manifest["samples"] == 4
    systems = read_systems(tmp_path / "train")
    assert len(systems) == 2
    for s in systems:
        a = s.matrix.toarray()
        np.testing.assert_allclose(a, a.T, atol=1e-12)
        assert np.linalg.eigvalsh(a).min() > 0
        np.testing.assert_allclose(s.matrix @ s.x, s.b, rtol=1e-8, atol=1e-10)
    first = (tmp_path / "train" / "shard-00000.h5").read_bytes()
    others = shard_stamps(tmp_path, but=tmp_path / "train" / "shard-00000.h5")
    (tmp_path / "dataset.json").unlink()
    (tmp_path / "train" / "shard-00000.h5").unlink()
    generate(spec, tmp_path, workers=0)  # resume: rewrites the missing shard only
    assert (tmp_path / "train" / "shard-00000.h5").read_bytes() == first
    assert shard_stamps(tmp_path, but=tmp_path / "train" / "shard-00000.h5") == others


def _bandwidth(matrix: sp.csr_matrix) -> int:
    coo = matrix.tocoo()
    return int(np.abs(coo.row - coo.col).max())


@pytest.mark.parametrize("family", ["heat_mesh", "wave_mesh", "poisson_tet"])
def test_rcm_numbering_renumbers_the_same_system_into_a_narrower_band(family):
    size = {"heat_mesh": 8, "wave_mesh": 6, "poisson_tet": 4}[family]
    spec = LinearSystemSpec(systems=family, size=size, samples=1)
    assert spec.ordering == "rcm"  # the mesh families' default
    rcm = make_system(spec, 3)
    mesher = make_system(spec.model_copy(update={"ordering": "mesher"}), 3)
    # the same nodes: points map one to one, and A, b, x follow the map
    order = np.lexsort(mesher.points.T)
    back = np.lexsort(rcm.points.T)
    np.testing.assert_array_equal(rcm.points[back], mesher.points[order])
    perm = np.empty_like(order)
    perm[back] = order  # rcm node back[i] is mesher node order[i]
    np.testing.assert_allclose(rcm.matrix.toarray(),
                               mesher.matrix[perm][:, perm].toarray(), rtol=0, atol=0)
    np.testing.assert_array_equal(rcm.b, mesher.b[perm])
    np.testing.assert_allclose(rcm.x, mesher.x[perm], rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(rcm.log_coefficient, mesher.log_coefficient[perm])
    assert rcm.matrix.has_canonical_format
    assert _bandwidth(rcm.matrix) < _bandwidth(mesher.matrix)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "physml.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_a_bad_systems_spec_is_refused_naming_the_key(tmp_path):
    spec = tmp_path / "systems.yaml"
    spec.write_text("systems: poisson_grid\nsize: 8\nsamples: 4\ncoefficient: 2\n")
    result = _cli("datasets", "generate", str(spec), "--out", "out", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown key 'coefficient'" in result.stderr and "log_std" in result.stderr
    assert not (tmp_path / "out").exists()
    spec.write_text("systems: poisson_grids\nsize: 8\nsamples: 4\n")
    with pytest.raises(ValueError, match="systems: Input should be 'poisson_grid'"):
        load_spec(spec)


@pytest.mark.parametrize("systems, key, value", [
    ("poisson_grid", "ordering", "rcm"), ("poisson_grid", "domain", "l_shape"),
    ("poisson_grid", "dt", 0.5), ("poisson_tet", "domain", "annulus"),
    ("poisson_tet", "dt", 0.1)])
def test_an_option_a_family_ignores_is_refused_by_name(systems, key, value):
    with pytest.raises(ValueError, match=f"{key}: {value!r} applies to .*; {systems} takes none"):
        LinearSystemSpec(systems=systems, size=8, samples=2, **{key: value})


def test_the_family_s_options_default_and_reach_the_case_s_dataset(tmp_path, cli_in_process):
    grid = LinearSystemSpec(systems="poisson_grid", size=8, samples=2)
    assert (grid.ordering, grid.domain, grid.dt) == (None, None, None)
    heat = LinearSystemSpec(systems="heat_mesh", size=8, samples=2)
    assert (heat.ordering, heat.domain, heat.dt) == ("rcm", "disc", 0.01)
    tet = LinearSystemSpec(systems="poisson_tet", size=8, samples=2)
    assert (tet.ordering, tet.domain, tet.dt) == ("rcm", None, None)
    assert LinearSystemSpec.model_validate(yaml.safe_load(heat.to_yaml())) == heat
    case = PCGCase.model_validate({"kind": "pcg", "name": "t", "dataset": {
        "systems": "heat_mesh", "size": 5, "samples": 4, "ordering": "mesher"}})
    assert dataset_spec(case).ordering == "mesher"
    path = tmp_path / "case.yaml"
    path.write_text("kind: pcg\nname: t\ndataset: {systems: poisson_grid, ordering: mesher}\n")
    result = cli_in_process("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("dataset: ordering: 'mesher' applies to heat_mesh, wave_mesh, poisson_tet"
            in result.stderr)


@pytest.mark.slow
def test_the_pcg_case_runs_and_writes_its_table(tmp_path):
    result = _cli("run", "pcg_poisson", "variant=tiny", f"output.folder={tmp_path}",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (metrics,) = tmp_path.glob("pcg_poisson-*/metrics.json")
    written = json.loads(metrics.read_text())
    assert set(written) == {"case", "summary", "history", "environment"}
    assert [r["step"] for r in written["history"]][:2] == [1, 2]
    summary = written["summary"]
    assert set(summary["table"]) == {"jacobi", "ic0", "fsai", "amg_sa", "amg_rs",
                                     "learned_cholesky"}
    assert summary["table"]["ic0"]["rtol=1e-08"]["iterations"] < summary["table"]["jacobi"][
        "rtol=1e-08"]["iterations"]
    assert (metrics.parent / "residuals.png").is_file()
    assert (metrics.parent / "preconditioner.pt").is_file()
    dataset = Path(summary["dataset"])  # recorded absolute, as every input path of a run
    assert dataset.is_absolute() and dataset.is_dir()


def test_a_pcg_run_writes_metrics_json_last_with_its_wall_s_read_then(tmp_path, monkeypatch):
    """metrics.json comes after the figure, so a run stopped while drawing it leaves no
    final-looking metrics.json; its ``wall_s`` counts the figure (100 s of the run's clock)."""
    import time
    from types import SimpleNamespace

    from physml.cases import pcg
    from physml.cases.registry import load_case, run_case

    written, late = [], [0.0]
    monkeypatch.setattr(pcg, "time", SimpleNamespace(
        perf_counter=lambda: time.perf_counter() + late[0]))

    def slow_plot(histories, path, *args):
        written.append(sorted(p.name for p in path.parent.iterdir()))
        late[0] = 100.0

    monkeypatch.setattr(pcg, "plot_residuals", slow_plot)
    case = load_case("pcg_poisson", [
        "variant=tiny", f"output.folder={tmp_path}", "dataset.size=6", "dataset.samples=4",
        "training.steps=2", "evaluation.preconditioners=[ic0]", "evaluation.rtols=[1e-6]"])
    folder, summary = run_case(case)
    assert "preconditioner.pt" in written[0] and "metrics.json" not in written[0]
    metrics = json.loads((folder / "metrics.json").read_text())["summary"]
    assert metrics["wall_s"] == summary["wall_s"] >= 100.0


def test_a_training_system_with_a_zero_right_hand_side_is_refused():
    matrix = small_systems()[0]
    zero = np.zeros(matrix.shape[0])
    with pytest.raises(ValueError, match="b is zero"):
        training_system(matrix, zero, zero)


@pytest.mark.parametrize("device, message", [
    ("gpu", r"device='gpu' is not a device name; allowed: cpu, cuda, cuda:N$"),
    ("cpu:1", r"device='cpu:1' is not a device name"),
    (torch.device("meta"), r"device='meta' is not a device name"),
    (None, r"device='None' is not a device name"),
    ("cuda:99", r"device='cuda:99' is not available; available: cpu"),
])
def test_moving_a_training_system_checks_the_device_as_every_device_argument(device, message):
    """The moves went straight to Tensor.to: PyTorch's own errors, or a meta system that
    failed later inside fit."""
    matrix = small_systems()[0]
    system = training_system(matrix, np.ones(matrix.shape[0]), matrix @ np.ones(matrix.shape[0]))
    for move in (system.to, system.graph.to):
        with pytest.raises(ValueError, match=message):
            move(device)
    moved = system.to(wp.get_device("cpu"))
    assert moved.x.device == moved.graph.edge_index.device == torch.device("cpu")


def test_training_mistakes_are_named():
    """Each failed inside torch.cat, in a size mismatch naming no argument, or not at all."""
    matrix = small_systems()[0]
    n = matrix.shape[0]
    x = np.linspace(1.0, 2.0, n)
    b = matrix @ x
    with pytest.raises(ValueError, match=f"x has shape \\(10,\\); the matrix is \\({n}, {n}\\)"):
        training_system(matrix, x[:10], b)
    with pytest.raises(ValueError, match="is not symmetric"):
        training_system(matrix + sp.eye(n, k=1), x, b)
    system = training_system(matrix, x, b)
    model = FactorModel(width=4, steps=1)
    with pytest.raises(ValueError, match="systems is empty"):
        fit(model, [], loss="data", steps=2)
    with pytest.raises(ValueError, match="batch_size=0 must be a whole number >= 1"):
        fit(model, [system], loss="data", steps=2, batch_size=0)
    with pytest.raises(ValueError, match="steps=-1 must be a whole number >= 0"):
        fit(model, [system], loss="data", steps=-1)
    with pytest.raises(ValueError, match="width=0 must be a whole number >= 1"):
        FactorModel(width=0)
    assert mean_iterations(Jacobi, [(matrix, b)], device=torch.device("cpu")) > 0


def test_a_used_learned_preconditioner_copies_and_pickles():
    """Its native forward's weights (pointers) made deepcopy and pickle fail once called."""
    matrix = small_systems()[0]
    preconditioner = LearnedPreconditioner(perturbed("cholesky", 0))
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    b = wp.array(np.ones(matrix.shape[0]), dtype=wp.float64)
    iterations = cg(A, b, preconditioner=preconditioner(A)).iterations
    for clone in (copy.deepcopy(preconditioner), pickle.loads(pickle.dumps(preconditioner))):
        assert cg(A, b, preconditioner=clone(A)).iterations == iterations
    older = LearnedPreconditioner.__new__(LearnedPreconditioner)  # pickled without `threads`
    older.__dict__.update({k: v for k, v in preconditioner.__getstate__().items()
                           if k != "threads"})
    assert cg(A, b, preconditioner=older(A)).iterations == iterations


def test_a_system_the_split_forward_cannot_address_takes_the_pytorch_path(monkeypatch):
    """A matrix that fits the forward's 32-bit offsets in one part but not in the parts its
    threads ask for is factored by PyTorch, not refused."""
    matrix = make_system(LinearSystemSpec(systems="poisson_grid", size=20, samples=1), 0).matrix
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    preconditioner = LearnedPreconditioner(perturbed("cholesky", 0))
    expected = preconditioner.factor(A)[1].numpy()
    monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: parts == 1)
    preconditioner.threads = 3
    np.testing.assert_allclose(preconditioner.factor(A)[1].numpy(), expected, rtol=1e-5)


def test_a_model_reading_extra_node_features_is_refused_as_a_preconditioner():
    with pytest.raises(ValueError, match="reads 3 node features"):
        LearnedPreconditioner(FactorModel("cholesky", width=4, steps=1, node_features=3))


def test_loading_a_file_that_is_not_a_preconditioner_names_it(tmp_path):
    torch.save({"model": {}}, tmp_path / "checkpoint.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    (tmp_path / "short.pt").write_text("hello")  # a pickle opcode torch's reader cannot place
    for name in ("checkpoint.pt", "text.pt", "short.pt"):
        with pytest.raises(ValueError, match=f"{name}' is not a trained preconditioner"):
            LearnedPreconditioner.load(tmp_path / name)
    with pytest.raises(ValueError, match="no trained preconditioner at .*a folder"):
        LearnedPreconditioner.load(tmp_path)
    with pytest.raises(ValueError, match=r"no file; give the file LearnedSmootherAMG\.save"):
        LearnedSmootherAMG.load(tmp_path / "missing.pt")  # the class asked for, not its base
    with pytest.raises(ValueError, match=r"a file LearnedSmootherAMG\.save wrote holds"):
        LearnedSmootherAMG.load(tmp_path / "checkpoint.pt")
    LearnedPreconditioner(FactorModel("cholesky", width=4, steps=1)).save(tmp_path / "p.pt")
    if not torch.cuda.is_available():  # a good file, a device this machine lacks
        with pytest.raises(ValueError, match="device='cuda' is not available"):
            LearnedPreconditioner.load(tmp_path / "p.pt", map_location="cuda")


@pytest.mark.parametrize("path", ["native", "torch"])
@pytest.mark.parametrize("kind", ["cholesky", "sparse_inverse"])
def test_a_factor_whose_diagonal_vanishes_in_its_precision_is_refused(monkeypatch, path, kind):
    """A scaled diagonal e^-10 = 4.5e-5 is below sqrt(eps) of float32 (3.5e-4), where the
    pivot of M against the scaled matrix's unit diagonal is below float32's eps (a dense row's
    5e-23 made CG break down with NaN), and above float64's (1.5e-8)."""
    if path == "torch":
        monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    model = FactorModel(kind, width=4, steps=1)
    with torch.no_grad():
        model.network.node_decoder[-1].bias.fill_(-10.0)
    factory = LearnedPreconditioner(model)
    matrix = small_systems()[0]
    factory(CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu")))
    with pytest.raises(ValueError, match=f"learned_{kind}: the network's factor for this "
                                         r"matrix has a non-finite or vanishing entry \(row 0\)"):
        factory(CsrOperator(csr_from_scipy(matrix, wp.float32, "cpu")))


@pytest.mark.parametrize("path", ["native", "torch"])
@pytest.mark.parametrize("hub", [0, 150])
@pytest.mark.parametrize("dtype", [wp.float64, wp.float32])
def test_a_factor_that_overflows_names_the_preconditioner_not_the_matrix(
        monkeypatch, path, hub, dtype):
    """A star graph's hub (199 neighbours) drives the network's diagonal exponential to inf:
    CG then said 'p^T A p = 0: A is not positive definite' of an SPD A. The native forward
    checks its factor in the same call, PyTorch's (CUDA, or a system too large for the native
    one) after it; both name the hub's row, in either precision of the factor."""
    if path == "torch":
        monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    n = 200
    others = np.delete(np.arange(n), hub)
    centre = np.full(n - 1, hub)
    adjacency = sp.csr_matrix((np.ones(2 * (n - 1)), (np.r_[centre, others],
                                                       np.r_[others, centre])), shape=(n, n))
    A = (sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency + sp.eye(n)).tocsr()
    torch.manual_seed(0)
    model = FactorModel("cholesky", width=8, steps=2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    with pytest.raises(ValueError, match="learned_cholesky: the network's factor for this matrix "
                                         rf"has a non-finite or vanishing entry \(row {hub}\)"):
        LearnedPreconditioner(model)(CsrOperator(csr_from_scipy(A, dtype, "cpu")))


def with_entry(matrix: sp.csr_matrix, row: int, column: int, value: float) -> sp.csr_matrix:
    """``matrix`` with the entry (row, column) set to ``value`` (stored, even a zero)."""
    coo = matrix.tocoo()
    keep = ~((coo.row == row) & (coo.col == column))
    return sp.csr_matrix((np.r_[coo.data[keep], value], (np.r_[coo.row[keep], row],
                                                          np.r_[coo.col[keep], column])),
                         shape=matrix.shape)


def learned_factories() -> list:
    return [LearnedPreconditioner(perturbed("cholesky", 0)),
            LearnedPreconditioner(perturbed("sparse_inverse", 0)),
            LearnedSmootherAMG(FactorModel("sparse_inverse", width=4, steps=1))]


@pytest.mark.parametrize("path", ["native", "torch"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_a_non_finite_entry_of_the_matrix_is_named_not_blamed_on_the_training(
        monkeypatch, path, value):
    """An Inf at (1, 0) was accepted by training_system (its symmetry test is False for NaN and
    Inf), and the learned preconditioners blamed the training for the factor it spread to,
    from row 0 on."""
    if path == "torch":
        monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    matrix = with_entry(small_systems()[0], 1, 0, value)
    n = matrix.shape[0]
    message = rf"matrix has the non-finite entry {value} in row 1 \(column 0\)"
    with pytest.raises(ValueError, match=message):
        training_system(matrix, np.ones(n), np.ones(n))
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    for factory in learned_factories():
        with pytest.raises(ValueError, match=message):
            factory(A)
    if path == "native":  # the upper triangle: read by the native forward's symmetry check
        A = CsrOperator(csr_from_scipy(with_entry(small_systems()[0], 0, 1, value), wp.float64,
                                       "cpu"))
        with pytest.raises(ValueError, match=rf"entry {value} in row 0 \(column 1\)"):
            learned_factories()[0](A)
    matrix = small_systems()[0]
    for name, x, b in (("x", np.r_[np.ones(n - 1), value], np.ones(n)),
                       ("b", np.ones(n), np.r_[np.ones(n - 1), value])):
        with pytest.raises(ValueError, match=f"{name} has the non-finite entry {value} at "
                                             f"index {n - 1}"):
            training_system(matrix, x, b)


@pytest.mark.parametrize("entry", [(1, 0), (0, 1)])
@pytest.mark.parametrize("path", ["native", "torch"])
def test_a_matrix_that_is_not_symmetric_is_refused_as_training_system_refuses_it(
        monkeypatch, entry, path):
    """Only the lower triangle was read: a non-symmetric A got the factor of another matrix
    (CG then ran 10 n iterations, or converged for the wrong reason), on either path (the
    PyTorch one: CUDA, or a system too large for the native forward)."""
    if path == "torch":
        monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    matrix = with_entry(small_systems()[0], *entry, -0.5)
    n = matrix.shape[0]
    with pytest.raises(ValueError, match="is not symmetric") as refused:
        training_system(matrix, np.ones(n), np.ones(n))
    A = CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))
    for factory in learned_factories():
        with pytest.raises(ValueError, match=re.escape(str(refused.value))):
            factory(A)


def test_a_matrix_not_symmetric_in_the_last_part_s_rows_is_refused_on_any_threads():
    """Every part reports the asymmetry of its own rows: A_{9001,9000} of a 100² grid, past
    the first of 2 or 3 chunks, is refused on one thread or several."""
    grid = make_system(LinearSystemSpec(systems="poisson_grid", size=100, samples=1), 1).matrix
    matrix = with_entry(grid, 9001, 9000, 1.5 * grid[9001, 9000])
    pattern, A = LowerPattern(matrix), csr_from_scipy(matrix, wp.float64, "cpu")
    native = NetworkFactor(network_weights(perturbed("cholesky", 3).network), "cholesky")
    for threads in (1, 2, 3, "auto"):
        with pytest.raises(ValueError, match="is not symmetric"):
            native.values(pattern, A, threads=threads)


def test_a_matrix_symmetric_but_for_rounding_or_a_stored_zero_is_accepted():
    """The native forward flags a row stored unlike its mirror; the whole matrix's test has
    the last word."""
    matrix = small_systems()[0]
    rounded = with_entry(matrix, 1, 0, matrix[1, 0] * (1 + 1e-15))
    stored_zero = with_entry(matrix, 0, 5, 0.0)
    factory = LearnedPreconditioner(perturbed("cholesky", 0))
    expected = factory(CsrOperator(csr_from_scipy(matrix, wp.float64, "cpu"))).values.numpy()
    for accepted in (rounded, stored_zero):  # the zero is above the diagonal: L's pattern
        values = factory(CsrOperator(csr_from_scipy(accepted, wp.float64, "cpu"))).values
        np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("path", ["native", "torch"])
def test_a_float32_matrix_a_few_roundings_from_symmetric_is_accepted(monkeypatch, path):
    """A float32 assembly by atomic adds in no fixed order (CUDA) leaves A_ij and A_ji a few
    ulps apart: accepted in float32, where float64 keeps its 1e-12."""
    if path == "torch":
        monkeypatch.setattr(NetworkFactor, "fits", lambda self, n, nnz, parts=1: False)
    matrix = small_systems()[0].astype(np.float32)
    ulps = with_entry(matrix, 1, 0, np.float32(matrix[1, 0]) * np.float32(1 + 4e-7))
    assert ulps[1, 0] != ulps[0, 1]
    factory = LearnedPreconditioner(perturbed("cholesky", 0))
    factory(CsrOperator(csr_from_scipy(ulps.astype(np.float32), wp.float32, "cpu")))
    n = matrix.shape[0]
    training_system(ulps.astype(np.float32), np.ones(n), np.ones(n))  # and trained on
    with pytest.raises(ValueError, match="is not symmetric"):
        factory(CsrOperator(csr_from_scipy(ulps.astype(np.float64), wp.float64, "cpu")))
    with pytest.raises(ValueError, match="is not symmetric"):
        training_system(ulps.astype(np.float64), np.ones(n), np.ones(n))


def test_fit_leaves_the_caller_s_random_stream_where_it_was():
    """The seed seeds fit's own generators: the caller's next global draw continues its stream
    (fit reseeded the global generator to ``seed``, so the caller drew its numbers again)."""
    matrix = small_systems()[0]
    x = np.random.default_rng(0).standard_normal(matrix.shape[0])
    torch.manual_seed(0)
    model = FactorModel("cholesky", width=4, steps=1)
    torch.manual_seed(123)
    torch.rand(1)
    state = torch.get_rng_state()
    fit(model, [training_system(matrix, x, matrix @ x)], loss="combined", steps=2, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", ["pcg_poisson", "pcg_heat_mesh"])
def test_a_pcg_case_beyond_memory_is_refused_naming_its_samples(name):
    """``dataset.samples`` had no bound: 1e8 systems passed validation and the run grew until
    the machine ran out of memory. The systems and their training graphs are estimated and
    refused beyond memory, naming the keys; on a GPU the graphs are left to the card."""
    from physml.cases import load_case

    with pytest.raises(ValueError, match=r"dataset\.samples=100000000, dataset\.size=\d+ .*"
                                         "more than this machine's memory"):
        load_case(name, ["dataset.samples=100000000"])
    ((key, cpu),) = load_case(name).memory_needs().items()
    ((_, gpu),) = load_case(name, ["device=cuda"]).memory_needs().items()
    assert key.startswith("dataset.samples=40, ") and 0 < gpu < cpu < 2**30


def test_the_case_s_times_are_medians_over_the_systems(monkeypatch):
    """One timing a system: a moment of load on one system (here 100 s) set the mean."""
    from types import SimpleNamespace

    from physml.cases import pcg as pcg_case
    from physml.solvers.linalg.model_problems import poisson_2d

    ticks = iter(np.cumsum([0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 2.0, 0.0, 100.0, 0.0, 200.0]))
    monkeypatch.setattr(pcg_case, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    matrix = poisson_2d(4).tocsr()
    systems = [SimpleNamespace(matrix=matrix, b=np.ones(16)) for _ in range(3)]
    table = pcg_case.measure({"none": lambda A: None}, systems, [1e-8], "cpu")
    row = table["none"]["table"]["rtol=1e-08"]
    assert (row["setup_s"], row["solve_s"], row["total_s"]) == (1.0, 2.0, 3.0)


def test_the_residuals_figure_s_clock_is_the_table_s_medians(monkeypatch, saved_figures):
    """It drew the first system's one timing (here 100 s and 200 s, a moment of load) where
    the table gives the medians (1 s and 2 s)."""
    from types import SimpleNamespace

    from physml.cases import pcg as pcg_case
    from physml.solvers.linalg.model_problems import poisson_2d

    ticks = iter(np.cumsum([0.0, 100.0, 0.0, 200.0, 0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 2.0]))
    monkeypatch.setattr(pcg_case, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    matrix = poisson_2d(4).tocsr()
    systems = [SimpleNamespace(matrix=matrix, b=np.ones(16)) for _ in range(3)]
    results = pcg_case.measure({"none": lambda A: None}, systems, [1e-8], "cpu")
    pcg_case.plot_residuals(pcg_case.residual_histories(results, "rtol=1e-08"),
                            Path("unused.png"), "demo", "median set-up + median solve")
    clock = saved_figures[-1].axes[1]
    x = clock.lines[0].get_xdata()
    assert (x[0], x[-1]) == (1e3, 3e3)  # ms: from the median set-up to set-up + solve
    assert len(x) == len(results["none"]["history"])  # the first system's residuals
    assert clock.get_title() == "residual vs wall-clock\n(median set-up + median solve)"


def test_the_cosine_schedule_decays_the_learning_rate_to_zero_over_the_run():
    """adam_on_batches with ``cosine`` (as the learned smoother trains): on a loss of constant
    gradient each Adam update moves the weight by the learning rate, which must follow
    lr (1 + cos(pi k / steps)) / 2 for the updates k = 0 .. steps - 1, falling to 0 after the
    last one (a cosine of period ``steps`` would reach 0 at mid-run and climb back to lr)."""
    from physml.preconditioners.training import adam_on_batches

    model = torch.nn.Linear(1, 1, bias=False, dtype=torch.float64)
    weights = [model.weight.item()]
    adam_on_batches(model, [None], lambda batch, generator: model.weight.sum(), steps=10,
                    learning_rate=0.1, batch_size=1, seed=0, cosine=True,
                    on_step=lambda updates, loss: weights.append(model.weight.item()))
    k = np.arange(10)
    np.testing.assert_allclose(-np.diff(weights), 0.05 * (1 + np.cos(np.pi * k / 10)), rtol=1e-6)
