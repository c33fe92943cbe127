"""Data parallelism over ``torch.distributed``: each process takes its share of a batch and
the gradients are averaged, so ``world`` processes follow the single-process trajectory.

Launch one process per GPU with ``torchrun --nproc_per_node=G script.py`` (NCCL); on CPU the
gloo backend runs several processes on one machine. Without an initialised process group every
helper is the identity (one process, rank 0). For hard constraints the samples of a batch are
independent inner problems, so splitting samples splits the inner solves; equal shares keep
the averaged loss equal to the full batch's mean.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from ..interrupts import pending_signal

# torch.distributed.nn's collectives take ``group=group.WORLD`` as a default, evaluated at
# import; imported first after init_process_group (torch.optim imports it through
# torch._dynamo when the first optimizer is built), they would keep the default group and
# its gloo threads alive past destroy_process_group, and a thread releasing a finished
# all_reduce while the interpreter exits aborts it ("terminate called without an active
# exception"). Imported here, with physml before a script's init_process_group, it is None.
if dist.is_available():
    import torch.distributed.nn  # noqa: F401


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


def agreed_stop(device: torch.device) -> int:
    """The stop every process takes at the end of this step: the signal recorded by any of
    them (:func:`~physml.interrupts.pending_signal`; SIGTERM over SIGINT), 0 for none. One
    collective on ``device`` per call in a group, so that the processes stop, and write their
    checkpoint, at the same step: alone, each stopped at the step its own signal came in, and
    rank 0 waited for the others in the next step's collectives."""
    signum = pending_signal()
    _, world = rank_and_world()
    if world == 1:
        return signum
    flag = torch.tensor([signum], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def from_first_rank(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite each of ``tensors`` (contiguous, the same shape on every process) with rank
    0's, in place; nothing without a group. Parameters and buffers given here start every
    process from rank 0's, as ``DistributedDataParallel`` does at construction."""
    _, world = rank_and_world()
    if world == 1:
        return
    with torch.no_grad():
        for tensor in tensors:
            if any(stride == 0 and size > 1 for stride, size in zip(tensor.stride(),
                                                                    tensor.shape)):
                raise ValueError(f"from_first_rank: a tensor of shape {tuple(tensor.shape)} "
                                 f"is a broadcast view (strides {tensor.stride()}), which "
                                 "rank 0's values would overrun; give it memory of its own "
                                 "with .contiguous()")
            dist.broadcast(tensor, src=0)


def average_gradients(module: nn.Module) -> None:
    r"""Replace every parameter gradient by its mean over the processes.

    A parameter that has a gradient on some processes and none on others (an expert no sample
    of this process was routed to) counts as a zero gradient where it has none, so its mean is
    $\frac{1}{W}\sum_r g_r$ over all $W$ processes; one without a gradient anywhere keeps
    none. Every process issues the same collectives in the same order, whatever it used: one
    for the presence of each gradient, then one per dtype for the gradients, flattened in
    parameter order.
    """
    _, world = rank_and_world()
    params = list(module.parameters())
    if world == 1 or not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32,
                           device=params[0].device)
    dist.all_reduce(present)
    used = [p for p, count in zip(params, present.tolist(), strict=True) if count]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in used:
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        _average_flat([p.grad for p in group], world)


def _average_flat(grads: list[torch.Tensor], world: int) -> None:
    """Sum ``grads`` over the processes in one flattened buffer (one collective) and divide
    by ``world``, in place."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
