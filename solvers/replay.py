r"""Replaying a recorded Warp launch on the CPU at the cost of one native call.

A recorded command (``wp.launch(..., record_cmd=True)``) keeps its arguments packed, but on the
CPU each ``Launch.launch()`` still builds a fresh ctypes structure of them, one ``setattr`` per
argument (warp-lang 1.19: about 5 µs for ten arguments, 15 µs for thirty), before the native
call. A Krylov iteration or a Runge–Kutta stage on $10^4$–$10^5$ unknowns takes 20–200 µs of
arithmetic, so that rebuilding is a tenth to a half of its time. :class:`Replay` builds the
structure once and then only calls the kernel's native entry point with it; an argument that
changes between calls is written into the structure in place (:meth:`Replay.set`).

On a CUDA device, and for a launch of a kernel Warp runs in blocks on the CPU, a replay is
``Launch.launch()`` itself: the structure is Warp's to build there.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import warp as wp


class Replay:
    """A recorded launch as a call without arguments.

    Args:
        command: a ``wp.Launch`` (from ``wp.launch(..., record_cmd=True)``), forward only.

    Calling the replay runs the kernel on the arguments recorded (or last :meth:`set`); the
    arrays it names must stay alive, which the replay ensures by holding the command.
    """

    def __init__(self, command: wp.Launch) -> None:
        self.command = command
        self._args = None
        self._call = command.launch
        # the fast path reads Warp's packed launch (warp-lang 1.19); without those fields, or
        # for a launch Warp runs in blocks, a replay is Launch.launch itself
        hooks, params = getattr(command, "hooks", None), getattr(command, "params", None)
        forward = getattr(hooks, "forward", None)
        blocks, adjoint = getattr(command, "block_dim", 1), getattr(command, "adjoint", False)
        if command.device.is_cpu and forward is not None and params is not None and (
                blocks <= 1 and not adjoint):
            names = [arg.label for arg in command.kernel.adj.args]
            fields = tuple((name, type(p)) for name, p in zip(names, params[1:]))
            self._args = _structure(fields)()
            for (name, _), value in zip(fields, params[1:]):
                setattr(self._args, name, value)
            self._names = names
            bounds, args = ctypes.byref(params[0]), ctypes.byref(self._args)
            self._call = lambda: forward(bounds, args)

    def __call__(self) -> None:
        self._call()

    def set(self, index: int, value: Any) -> None:
        """Change the kernel's argument ``index`` (inputs then outputs, as in ``wp.launch``)
        for this and later calls; Warp converts ``value`` as it would in a launch."""
        self.command.set_param_at_index(index, value)
        if self._args is not None:
            setattr(self._args, self._names[index], self.command.params[index + 1])


@functools.cache
def _structure(fields: tuple[tuple[str, type], ...]) -> type[ctypes.Structure]:
    """The ctypes structure of a kernel's packed arguments (a new type costs about 0.1 ms, so
    one per signature)."""
    return type("ReplayArgs", (ctypes.Structure,), {"_fields_": list(fields)})
