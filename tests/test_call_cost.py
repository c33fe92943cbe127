"""What a rollout call does once per solver rather than at every call, and how a host thread
runs a batch larger than its caches; neither changes a result or a refusal."""

import numpy as np
import pytest

from physml.solvers import (
    BurgersSolver1D,
    BurgersSolver2D,
    Grid,
    HeatSolver1D,
    dirichlet,
    rk_stages,
)
from physml.solvers.base import GridSolver
from physml.solvers.errors import UnstableStepError

GRID = Grid((64,), (0.0,), (1.0,))


def states(batch: int, seed: int = 0) -> np.ndarray:
    """A batch of smooth states of amplitude up to 0.9 on GRID."""
    rng = np.random.default_rng(seed)
    x = GRID.coords(0)
    return np.stack([a * np.sin(2 * np.pi * x + p) for a, p in rng.uniform(0.1, 0.9, (batch, 2))])


def test_the_parameter_checks_and_sample_copy_run_once_per_parameter_values_and_dt(
        monkeypatch):
    """Each rollout re-checked the solver's own parameters and copied the solver for its
    stability check (about 10 % of a one-sample call); they do not depend on u0. A new value
    or dt is checked again, and a state's own stability check still runs at every call."""
    u0 = states(3)
    reference = [BurgersSolver1D(GRID, nu=0.01, dt=1e-3).rollout(u, 5) for u in u0]
    solver = BurgersSolver1D(GRID, nu=0.01, dt=1e-3)
    copies = []
    with_parameters = GridSolver.with_parameters
    monkeypatch.setattr(GridSolver, "with_parameters",
                        lambda self, **values: copies.append(values) or with_parameters(
                            self, **values))
    for u, expected in zip(u0, reference):
        np.testing.assert_array_equal(solver.rollout(u, 5), expected)
    assert len(copies) == 1
    solver.rollout(u0, 5)
    assert len(copies) == 1
    with pytest.raises(UnstableStepError, match="exceeds the stability limit"):
        solver.rollout(100 * u0[0], 5)  # the state's bound sets the limit: checked each call
    with pytest.raises(ValueError, match="nu=-1.0 must be >= 0"):
        solver.nu = -1.0  # refused where it is set
    solver.nu = 0.02  # a new value: the next rollout checks it again
    made = len(copies)
    solver.rollout(u0[0], 5)
    assert len(copies) == made + 1
    solver.nu = 0.01
    solver.dt = 1.0
    with pytest.raises(UnstableStepError, match="dt=1 exceeds"):
        solver.rollout(u0[0], 5)
    solver.dt = 1e-3
    np.testing.assert_array_equal(solver.rollout(u0[0], 5), reference[0])
    made = len(copies)
    np.testing.assert_array_equal(solver.rollout(u0[1], 5), reference[1])
    assert len(copies) == made


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [10, 13])
def test_a_host_thread_runs_its_samples_through_every_replayed_step_block_by_block(
        monkeypatch, threads, batch):
    """A host thread swept all its samples at each stage, reading them from memory once they
    outgrew its caches (16 % more time per sample at 256 1024-cell samples). Blocks of whole
    samples within BLOCK_BYTES now run through every replayed step in turn, with the same
    bits as one sample at a time."""
    sample_bytes = rk_stages.STAGE_ARRAYS * GRID.size * 8
    monkeypatch.setattr(rk_stages, "BLOCK_BYTES", 3 * sample_bytes)  # 3 samples a block
    nu = np.linspace(0.005, 0.02, batch)
    u0 = states(batch, seed=threads)
    solver = BurgersSolver1D(GRID, dirichlet(1, 0.2), nu=0.01, dt=1e-3, threads=threads)
    segment, chunks, blocks, per_chunk, apart = solver.stages._split_with_blocks(batch)
    assert apart and len(chunks) == threads
    assert len(per_chunk) == threads
    for (first, count), (lo, hi) in zip(chunks, per_chunk):
        assert blocks[lo][0] == first and sum(c for _, c in blocks[lo:hi]) == count
        assert all(c <= 3 for _, c in blocks[lo:hi])  # one row segment per sample here
    assert len(blocks) > threads
    alone = [BurgersSolver1D(GRID, dirichlet(1, 0.2), nu=n, dt=1e-3, threads=1).rollout(u, 12, 4)
             for n, u in zip(nu, u0)]
    runs = []
    run_chunks = rk_stages._run_chunks
    monkeypatch.setattr(rk_stages, "_run_chunks",
                        lambda launches: runs.append(launches) or run_chunks(launches))
    together = solver.rollout(u0, 12, 4, parameters={"nu": nu})
    np.testing.assert_array_equal(together, np.stack(alone))
    chained = [launches for launches in runs if len(launches) > 1]
    assert chained and all(launches[0].chunks == per_chunk for launches in chained)


def test_a_field_coefficient_runs_in_blocks_with_the_same_bits(monkeypatch):
    """The row kernel (a field of nu) runs in the same blocks."""
    monkeypatch.setattr(rk_stages, "BLOCK_BYTES", 2 * rk_stages.STAGE_ARRAYS * GRID.size * 8)
    u0 = states(5, seed=4)
    field = 0.01 + 0.005 * np.cos(2 * np.pi * GRID.coords(0))
    solver = HeatSolver1D(GRID, nu=0.01, dt=1e-4, threads=1)
    together = solver.rollout(u0, 6, 3, parameters={"nu": np.broadcast_to(field, u0.shape)})
    for u, saved in zip(u0, together):
        np.testing.assert_array_equal(
            saved, HeatSolver1D(GRID, nu=0.01, dt=1e-4).rollout(u, 6, 3,
                                                                   parameters={"nu": field}))


def test_a_step_recorded_with_chunks_that_share_a_sample_is_not_chained_later(monkeypatch):
    """Whether a replayed step's chunks run every launch without waiting was decided from the
    split computed at the time of the replay, the chunks run being those recorded: once the
    cores available changed (a scheduler narrowing the process's affinity), a step recorded
    with two chunks that cut a sample in half ran chained, a data race (2-D Burgers, 255
    samples: 2.6e-6 to 2.1e-5 from one rerun to the next)."""
    grid = Grid((32, 32), (0.0, 0.0), (1.0, 1.0))
    rng = np.random.default_rng(0)
    u0 = 0.3 * np.sin(2 * np.pi * grid.coords(0))[None, :, None] * rng.uniform(
        0.5, 1, (255, 1, 1)) + 0.05 * np.cos(2 * np.pi * grid.coords(1))[None, None, :]
    monkeypatch.setattr(rk_stages, "available_cores", lambda: 2)
    solver = BurgersSolver2D(grid, nu=0.01, dt=2e-4)
    first = solver.rollout(u0, 12, 12)
    segment, chunks, *_ = solver.stages._split_with_blocks(len(u0))
    assert len(chunks) == 2 and chunks[0][1] % (32 * 32 // segment)  # a sample cut in half
    for other in range(3, 3 + rk_stages.RECORDED_BATCHES + 1):  # the split of 255 evicted
        solver.rollout(u0[:other], 2, 2)
    monkeypatch.setattr(rk_stages, "available_cores", lambda: 1)
    runs = []
    run_chunks = rk_stages._run_chunks
    monkeypatch.setattr(rk_stages, "_run_chunks",
                        lambda launches: runs.append(launches) or run_chunks(launches))
    for _ in range(2):
        np.testing.assert_array_equal(solver.rollout(u0, 12, 12), first)
    assert not [launches for launches in runs if len(launches) > 1]
