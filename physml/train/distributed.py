"""Data parallelism over ``torch.distributed``: each process takes its share of a batch and
the gradients are averaged, so ``world`` processes follow the single-process trajectory.

Launch one process per GPU with ``torchrun --nproc_per_node=G script.py`` (NCCL); on CPU the
gloo backend runs several processes on one machine. Without an initialised process group every
helper is the identity (one process, rank 0). For hard constraints the samples of a batch are
independent inner problems, so splitting samples splits the inner solves; equal shares keep
the averaged loss equal to the full batch's mean.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This process's share of ``indices``: every ``world``-th from its rank. The batch size
    must be a multiple of ``world`` so all shares are equal."""
    rank, world = rank_and_world()
    if len(indices) % world:
        raise ValueError(f"batch={len(indices)} must be a multiple of the {world} processes")
    return indices[rank::world]


def average(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the processes (a copy; ``value`` itself without a group)."""
    _, world = rank_and_world()
    if world == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world


def average_gradients(module: nn.Module) -> None:
    """Replace every parameter gradient by its mean over the processes."""
    _, world = rank_and_world()
    if world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
