"""The compute devices a run may name (PyTorch and Warp must both reach them; the names,
:data:`ALLOWED`, are checked one floor below, in :mod:`physml.solvers.runtime`), and a clock
that waits for the work queued on them."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from .solvers.runtime import ALLOWED as ALLOWED
from .solvers.runtime import device_name, warp_device
from .solvers.runtime import is_device_name as is_device_name

if TYPE_CHECKING:
    import torch


def available_devices() -> list[str]:
    """"cpu" and every CUDA device PyTorch sees ("cuda:0", ...)."""
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def require_device(device: str | object) -> str:
    """``device`` (a name, a ``torch.device`` or a Warp device) as a name, with a ValueError
    naming it and what is allowed or available unless the device it names
    (:func:`is_device_name`) is usable here by PyTorch and Warp."""
    name = require_torch_device(device)
    warp_device(name)
    return name


def require_torch_device(device: str | object) -> str:
    """``device`` (a name, a ``torch.device`` or a Warp device) as a name, with a ValueError
    naming it and what is allowed (:func:`~physml.solvers.runtime.device_name`) or available
    unless PyTorch can use it here; Warp is not started (for the parts that run on PyTorch
    alone), nor PyTorch imported for the CPU."""
    device = device_name(device)
    if device == "cpu":
        return device
    import torch

    if (torch.device(device).index or 0) >= torch.cuda.device_count():
        available = ", ".join(available_devices())
        raise ValueError(f"device={device!r} is not available; available: {available}")
    return device


def require_tensor_device(name: str, tensor: torch.Tensor, device: str | None = None,
                          holder: str = "the solver runs on") -> str:
    """The device ("cpu", "cuda:N") of ``tensor``, the argument ``name``, with a ValueError
    naming the argument and its device unless that is ``device`` ("u0 is on meta; the solver
    runs on cpu": ``holder`` says whose device it is) or, without ``device``, one physml runs
    on (:data:`ALLOWED`): a tensor on another device PyTorch has ("meta", "mps") is refused
    before PyTorch or Warp meet it. On CUDA, PyTorch's current stream must be its default
    one: Warp's launches are ordered against that stream only (Warp's streams block on it),
    so under ``torch.cuda.stream(s)`` Warp could read ``tensor`` before ``s`` has written it."""
    where = str(tensor.device)
    if device is not None and where != device:
        raise ValueError(f"{name} is on {where}; {holder} {device}")
    if not is_device_name(where):
        raise ValueError(f"{name} is on {where}; allowed: {ALLOWED}")
    if tensor.device.type == "cuda":
        import torch

        if torch.cuda.current_stream(tensor.device) != torch.cuda.default_stream(tensor.device):
            raise ValueError(f"{name}: PyTorch's current stream on {where} is not its default "
                             "stream, and physml's Warp launches are ordered against the default "
                             "stream only; call it outside `with torch.cuda.stream(...)`")
    return where


def synchronize(device: str | object) -> None:
    """Wait until the work PyTorch and Warp have queued on ``device`` is done.

    CUDA launches return before the kernels run, so a clock read without this times the
    queueing, not the work. Only a library already started on CUDA, and having that device,
    can have queued work there, so neither is started here and a library without the device
    is left alone. On the CPU both run synchronously and there is nothing to wait for.
    """
    name = str(device)
    if not name.startswith("cuda"):
        return
    index = int(name.partition(":")[2] or 0)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized() and index < torch.cuda.device_count():
        torch.cuda.synchronize(name)
    if _warp_started():
        warp = sys.modules["warp"]
        if index < warp.get_cuda_device_count():
            warp.synchronize_device(name)


def _warp_started() -> bool:
    """Whether Warp's runtime exists (``wp.init`` has run); Warp has no public query for it."""
    warp = sys.modules.get("warp")
    if warp is None:
        return False
    context = sys.modules.get(warp.synchronize_device.__module__)
    return getattr(context, "runtime", None) is not None


class Stopwatch:
    """Wall-clock seconds of the work on ``device``, synchronised whenever the clock is read.

    ``with watch:`` adds the block's seconds to ``watch.seconds`` (the device is synchronised
    on entry, so work queued before is not counted, and on exit, so the block's work is);
    :meth:`read` gives the total so far, including a block in progress::

        watch = Stopwatch("cuda:0")
        with watch:
            teng.step()
        watch.seconds      # seconds of the step's work, kernels included

    Args:
        device: where the timed work runs ("cpu", "cuda", "cuda:N" or a ``torch.device``).

    Raises:
        ValueError: ``device`` is no device name (whether it is present is the timed work's
            own check: work on Warp alone may time a device a CPU build of PyTorch lacks).
    """

    def __init__(self, device: str | object = "cpu") -> None:
        device_name(device)
        self.device = device
        self.seconds = 0.0
        self._started: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = self.read()
        self._started = None

    def read(self) -> float:
        """Seconds so far: the finished blocks plus the one in progress, if any."""
        if self._started is None:
            return self.seconds
        synchronize(self.device)
        return self.seconds + time.perf_counter() - self._started
