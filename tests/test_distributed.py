"""Two gloo processes, each with half of every batch, follow the single-process training."""

import datetime
import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from physml.constraints import DiffusionSorptionRows, LevenbergMarquardt
from physml.train.distributed import average_gradients
from physml.train.moe import Budget, build_model, fit

NX, NT = 8, 6


def tiny_run() -> list[float]:
    """Three Adam steps of a two-expert hard constraint on 4 synthetic initial conditions."""
    u0 = torch.linspace(0.02, 0.18, 4, dtype=torch.float64)[:, None].expand(4, NX).contiguous()
    u = u0[:, None].expand(4, NT, NX).contiguous()  # only the test error reads it
    rows = DiffusionSorptionRows(NX, dt=100.0)
    model = build_model("hard", rows, NT, basis=3, width=4, modes=(2, 2), experts=2,
                        solver=LevenbergMarquardt(tol=1e-8, max_iter=10))
    return fit(model, rows, (u0, u), (u0, u), Budget(iterations=3, lr=1e-2, batch=4))["losses"]


def _worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        losses = tiny_run()
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as f:
        json.dump(losses, f)


@pytest.mark.slow  # two fresh interpreters importing torch and Warp
def test_two_gloo_processes_give_the_single_process_loss(tmp_path):
    """The float32 network's gradients are summed in another order across processes; Adam's
    normalisation carries that rounding into later losses (2e-5 measured after three steps)."""
    single = tiny_run()
    out = str(tmp_path / "losses")
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", out), nprocs=2)
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            losses = json.load(f)
        np.testing.assert_allclose(losses[0], single[0], rtol=1e-6)
        np.testing.assert_allclose(losses, single, rtol=1e-4)


def _experts_gradients(rank: int) -> torch.nn.ModuleList:
    """Two linear experts with the gradients of this rank's batch; rank 0 routes none to
    expert 1, so its parameters have no gradient there."""
    torch.manual_seed(0)
    experts = torch.nn.ModuleList([torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)])
    x = torch.ones(4, 2) * (rank + 1)
    used = [0] if rank == 0 else [0, 1]
    sum(experts[e](x).sum() for e in used).backward()
    return experts


def _unused_worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=5))
    experts = _experts_gradients(rank)
    try:
        average_gradients(experts)
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as f:
        json.dump([p.grad.tolist() for p in experts.parameters()], f)


@pytest.mark.slow  # two fresh interpreters importing torch
def test_a_parameter_unused_on_one_process_averages_with_a_zero_gradient(tmp_path):
    """Rank 0 leaves expert 1 without a gradient: every rank still issues the same
    collectives, and expert 1's gradient is rank 1's halved."""
    out = str(tmp_path / "grads")
    mp.spawn(_unused_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", out), nprocs=2)
    alone = [list(_experts_gradients(rank).parameters()) for rank in range(2)]
    expected = [0.5 * (alone[1][k].grad + (alone[0][k].grad if k < 2 else 0)) for k in range(4)]
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            grads = json.load(f)
        for got, want in zip(grads, expected, strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)
