"""The compute devices a run may name: PyTorch and Warp must both reach them."""

from __future__ import annotations

ALLOWED = "cpu, cuda, cuda:N"


def available_devices() -> list[str]:
    """"cpu" and every CUDA device PyTorch sees ("cuda:0", ...)."""
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def require_device(device: str) -> None:
    """ValueError naming ``device`` and what is available, unless it is usable here."""
    import torch

    from .solvers.base import warp_device

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device name; allowed: {ALLOWED}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: allowed: {ALLOWED}")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        available = ", ".join(available_devices())
        raise ValueError(f"device={device!r} is not available; available: {available}")
    warp_device(device)
