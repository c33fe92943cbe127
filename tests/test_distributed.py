"""Two gloo processes, each with half of every batch, follow the single-process training."""

import datetime
import json
import math
import signal

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from physml import cli
from physml.cases import registry
from physml.constraints import DiffusionSorptionRows, LevenbergMarquardt
from physml.interrupts import stops_deferred
from physml.models import build_model as build_network
from physml.train.balancing import ConFIG, FixedWeights, LearningRateAnnealing
from physml.train.bundled import BurgersProblem
from physml.train.distributed import average_gradients
from physml.train.moe import Budget, MoETrainer, build_model, fit
from physml.train.pinn import PINNTrainer

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


def pinn_run(balancer: str, seed: int = 0) -> dict:
    """Burgers on 16 + 8 soft-condition points, 6 Adam then 3 L-BFGS steps in float64,
    points redrawn every 4 steps; ``seed`` seeds the network and the sampler."""
    balancers = {"fixed": FixedWeights, "config": ConFIG,
                 "annealing": lambda: LearningRateAnnealing(every=2)}
    torch.manual_seed(seed)
    problem = BurgersProblem(0.01 / math.pi, (-1.0, 1.0), (0.0, 1.0), -1.0, math.pi)
    trainer = PINNTrainer(build_network("mlp", 2, 1, width=8, depth=2), problem,
                          balancer=balancers[balancer](), points=16, condition_points=8,
                          hard_constraints=False, adam_steps=6, lbfgs_steps=3, resample_every=4,
                          resample="random", eval_every=100, eval_shape=(5, 3),
                          dtype=torch.float64, seed=seed)
    history = trainer.fit()
    return {"losses": [record["loss"] for record in history],
            "weights": history[-1]["weights"],
            "parameters": [p.tolist() for p in trainer.trained.parameters()]}


def moe_run(seed: int) -> dict:
    """Three Adam steps of a soft head on 4 of 8 samples per batch; ``seed`` seeds the network
    and the batch order."""
    u0 = torch.linspace(0.02, 0.18, 8, dtype=torch.float64)[:, None].expand(8, NX).contiguous()
    u = u0[:, None].expand(8, NT, NX).contiguous()
    rows = DiffusionSorptionRows(NX, dt=100.0)
    model = build_model("soft", rows, NT, basis=3, width=4, modes=(2, 2),
                        solver=LevenbergMarquardt(), seed=seed)
    trainer = MoETrainer(model, rows, (u0, u), (u0, u), Budget(iterations=3, lr=1e-2, batch=4),
                         seed=seed)
    return {"losses": trainer.fit()["losses"],
            "parameters": [p.tolist() for p in model.parameters()]}


RUNS = {"annealing": lambda rank: pinn_run("annealing"),
        "config": lambda rank: pinn_run("config"),
        "pinn_seeded": lambda rank: pinn_run("fixed", seed=rank),
        "moe_seeded": lambda rank: moe_run(seed=rank)}
"""The two-process runs, by name, of a process of rank ``rank``; the seeded ones seed each
process differently, rank 0 as the one-process run."""


def _runs_worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        results = {name: run(rank) for name, run in RUNS.items()}
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as f:
        json.dump(results, f)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory) -> list[dict]:
    """:data:`RUNS` in two gloo processes (one spawn for all): each rank's results."""
    folder = tmp_path_factory.mktemp("runs")
    out = str(folder / "results")
    mp.spawn(_runs_worker, args=(2, f"file://{folder / 'rendezvous'}", out), nprocs=2)
    results = []
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            results.append(json.load(f))
    return results


def _assert_follows(runs: list[dict], single: dict, rtol: float, atol: float = 1e-12) -> None:
    for run in runs:
        np.testing.assert_allclose(run["losses"], single["losses"], rtol=rtol)
        for got, want in zip(run["parameters"], single["parameters"], strict=True):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
        if "weights" in single:  # the loss balancer's, PINN
            assert run["weights"] == pytest.approx(single["weights"], rel=rtol)


@pytest.mark.slow  # two fresh interpreters importing torch and Warp
@pytest.mark.parametrize("balancer", ["annealing", "config"])
def test_adaptive_balancers_in_two_processes_follow_one_process(two_process_runs, balancer):
    """The weights (annealing) and the direction (ConFIG) come from the per-term gradients
    averaged over the processes: both ranks hold the one-process weights and parameters."""
    _assert_follows([runs[balancer] for runs in two_process_runs], pinn_run(balancer), 1e-10)


@pytest.mark.slow  # two fresh interpreters importing torch and Warp
def test_pinn_processes_seeded_differently_start_from_rank_0(two_process_runs):
    """Rank 1 builds its network and draws its points from another seed; it takes rank 0's
    parameters and points (at the start and at every redraw) and ends as the one-process run."""
    _assert_follows([runs["pinn_seeded"] for runs in two_process_runs], pinn_run("fixed"), 1e-10)


@pytest.mark.slow  # two fresh interpreters importing torch and Warp
def test_moe_processes_seeded_differently_start_from_rank_0(two_process_runs):
    """Rank 1's network and batch order come from another seed; it takes rank 0's parameters
    and batch generator and ends as the one-process run. Float32: the gradients are summed in
    another order, and Adam's normalisation carries that into the parameters (3e-6 measured;
    another seed's parameters differ by 1e-1)."""
    _assert_follows([runs["moe_seeded"] for runs in two_process_runs], moe_run(seed=0), 1e-4,
                    atol=1e-5)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_run_under_torchrun_is_refused_before_writing(tmp_path, monkeypatch, capsys, rank):
    """Each process torchrun starts says why (exit 2) and no run folder is made; a WORLD_SIZE
    set by anything else than torchrun is not taken for it."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "burgers", f"output.folder={tmp_path / 'runs'}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"physml run trains in one process, and torchrun started this one (RANK={rank}, " \
           "WORLD_SIZE=2)" in err and "PINNTrainer" in err
    assert not any(tmp_path.iterdir())
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")

    def interrupted(case, folder, resume=False, on_step=None):
        raise KeyboardInterrupt  # the run started: the variable alone was not taken for torchrun

    monkeypatch.setattr(registry, "run_case", interrupted)
    assert cli.main(["run", "burgers", f"output.folder={tmp_path / 'runs'}", "--quiet"]) == 130


def test_from_first_rank_refuses_a_broadcast_view_only(monkeypatch):
    """A channels-last convolution weight (not contiguous, memory of its own) was refused as a
    broadcast view; a view of strides 0 would be overrun."""
    from physml.train import distributed

    sent = []
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 2))
    monkeypatch.setattr(distributed.dist, "broadcast", lambda tensor, src: sent.append(tensor))
    weight = torch.randn(4, 3, 2, 2).to(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    distributed.from_first_rank([weight])
    assert sent == [weight]
    with pytest.raises(ValueError, match=r"a tensor of shape \(8, 2\) is a broadcast view"):
        distributed.from_first_rank([torch.zeros(8, 1).expand(-1, 2)])


@pytest.mark.parametrize("balancer, calls", [(FixedWeights(), 2), (ConFIG(), 0)])
def test_the_trainer_averages_only_gradients_not_averaged_already(monkeypatch, balancer, calls):
    """ConFIG writes gradients averaged over the processes for its projection; the trainer
    averaged them again (a third more traffic, the same values)."""
    from physml.train import pinn

    averaged = []
    monkeypatch.setattr(pinn, "average_gradients", lambda module: averaged.append(module))
    problem = BurgersProblem(0.01 / np.pi, (-1.0, 1.0), (0.0, 1.0), -1.0, np.pi)
    network = build_network("mlp", problem.input_dim, problem.output_dim, width=4, depth=1)
    trainer = PINNTrainer(network, problem, points=16, adam_steps=2, eval_every=2,
                          eval_shape=(4, 3), balancer=balancer, dtype=torch.float64)
    trainer.fit()
    assert len(averaged) == calls


def _stopping_trainer(kind: str) -> PINNTrainer | MoETrainer:
    """Eight steps of a small PINN (Burgers) or six of a two-expert hard constraint."""
    torch.manual_seed(0)
    if kind == "pinn":
        problem = BurgersProblem(0.01 / math.pi, (-1.0, 1.0), (0.0, 1.0), -1.0, math.pi)
        return PINNTrainer(build_network("mlp", 2, 1, width=8, depth=2), problem, points=16,
                           condition_points=8, hard_constraints=False, adam_steps=8,
                           lbfgs_steps=0, eval_every=100, eval_shape=(5, 3),
                           dtype=torch.float64)
    u0 = torch.linspace(0.02, 0.18, 4, dtype=torch.float64)[:, None].expand(4, NX).contiguous()
    u = u0[:, None].expand(4, NT, NX).contiguous()
    rows = DiffusionSorptionRows(NX, dt=100.0)
    model = build_model("hard", rows, NT, basis=3, width=4, modes=(2, 2), experts=2,
                        solver=LevenbergMarquardt(tol=1e-8, max_iter=10))
    return MoETrainer(model, rows, (u0, u), (u0, u), Budget(iterations=6, lr=1e-2, batch=2))


def _stop_worker(rank: int, world: int, init: str, out: str, kind: str,
                 signals: tuple[int, int]) -> None:
    """A ``kind`` run whose rank r receives ``signals[r]`` (0: none) in its step 3 (a signal
    reaches the processes at different moments, or one of them only): the steps each rank
    checkpointed at, the stop it raised and the step it ended at."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    trainer = _stopping_trainer(kind)
    checkpoints, raised = [], None

    def on_step(record: dict) -> None:
        if record["step"] == 3 and signals[rank]:
            signal.raise_signal(signals[rank])

    try:
        with stops_deferred():
            trainer.fit(on_step=on_step, checkpoint_every=100,
                        on_checkpoint=lambda: checkpoints.append(trainer.step))
    except KeyboardInterrupt as stop:
        raised = type(stop).__name__
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"checkpoints": checkpoints, "raised": raised, "step": trainer.step}, f)


@pytest.mark.slow  # two fresh interpreters importing torch and Warp
@pytest.mark.parametrize("kind, signals", [
    ("pinn", (0, signal.SIGTERM)),
    ("moe", (0, signal.SIGTERM)),
    ("pinn", (signal.SIGTERM, signal.SIGTERM)),
    ("pinn", (signal.SIGINT, signal.SIGTERM)),
])
def test_processes_stop_together_at_the_step_one_of_them_was_signalled_in(tmp_path, kind,
                                                                        signals):
    """Each process stopped at the step its own signal came in: rank 0, which writes the
    checkpoint, went on to the next step's collectives and failed there. Now every rank
    checkpoints at step 3 and raises the stop agreed: SIGTERM's (exit 143) where any rank
    received one (torchrun passes SIGTERM to every worker), the larger number, not a sum."""
    out = str(tmp_path / "stops")
    mp.spawn(_stop_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", out, kind, signals),
             nprocs=2)
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            assert json.load(f) == {"checkpoints": [3], "raised": "Terminated", "step": 3}
