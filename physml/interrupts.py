"""SIGTERM handled as Ctrl-C, and the exit status of a command stopped by a file it could not
write.

Batch systems and tools stop a job with SIGTERM (Slurm at its time limit, ``timeout``,
``docker stop``, systemd), where Python's default is to die at once: no message, and a run
stopped before its first checkpoint left an empty folder. Under :func:`sigterm_as_interrupt`
SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, so that a stopped command leaves
what Ctrl-C leaves (a run its last checkpoint and the command that resumes it). A write that
fails mid-command (a full disk, a read-only file system, a quota, an I/O error) leaves the same,
with :data:`EX_IOERR` and :func:`unwritten`'s line.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Python raises ``KeyboardInterrupt`` for SIGINT."""


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal stopped: 143 for
    SIGTERM, 130 for SIGINT."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


EX_IOERR = 74
"""The exit status of a command stopped by a file it could not write: ``EX_IOERR`` of
``sysexits.h`` (1 is a numerical failure's, 2 a mistake in the input's)."""


WRITE_FAILURES = frozenset(getattr(errno, name) for name in
                           ("ENOSPC", "EDQUOT", "EROFS", "EFBIG", "EIO") if hasattr(errno, name))
"""The system's refusals to write that stop a run with :data:`EX_IOERR` (a full disk, a quota,
a read-only file system, a file too large, an I/O error): the work kept can go on once they
are mended. Any other error (a file that cannot be read, a lost connection) is not one."""


PERMISSION_REFUSALS = frozenset((errno.EACCES, errno.EPERM))
"""Refusals that are write failures where they name a file in the folder being written (a
permission taken away mid-run), and not elsewhere (an input that cannot be read)."""


def is_write_failure(error: BaseException, folder: os.PathLike) -> bool:
    """Whether ``error`` is one of :data:`WRITE_FAILURES`, or a permission refused on a file in
    ``folder``, the run's or the dataset's."""
    if not isinstance(error, OSError):
        return False
    if error.errno in WRITE_FAILURES:
        return True
    if error.errno in PERMISSION_REFUSALS and error.filename is not None:
        return Path(os.path.abspath(error.filename)).is_relative_to(os.path.abspath(folder))
    return False


def unwritten(error: OSError, folder: os.PathLike) -> str:
    """The line that names what ``error`` refused: "could not write FILE (the system's
    reason)", FILE the file ``error`` names, else the ``folder`` written in."""
    reason = os.strerror(error.errno) if error.errno else error.strerror or str(error)
    return f"could not write {str(error.filename or folder)!r} ({reason})"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` (off the main thread, where no handler can be
    installed, nothing changes); the former handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_noticed(notify: Callable[[int], None]) -> Iterator[None]:
    """Within: ``notify(signum)`` runs on a thread of its own as soon as the first SIGINT or
    SIGTERM arrives, also while the main thread is held in native code (Warp building its
    kernels, a long solve), where Python runs its own handler (the ``KeyboardInterrupt``)
    only once that code returns. The signals' handling is otherwise unchanged. Off the main
    thread, or where a wakeup file descriptor is set already (an event loop's), nothing is
    watched.

    The signal module writes each signal's number to a socket (``signal.set_wakeup_fd``),
    which the thread reads."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    previous = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # another's: left as it was
        signal.set_wakeup_fd(previous)
        receiver.close()
        sender.close()
        yield
        return

    def watch() -> None:
        while data := receiver.recv(64):  # b"" once the sending end is closed
            stops = [n for n in data if n in (signal.SIGINT, signal.SIGTERM)]
            if stops:
                notify(stops[0])
                return

    watcher = threading.Thread(target=watch, daemon=True, name="physml-interrupts")
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        sender.shutdown(socket.SHUT_WR)  # the end of data, also where a forked child holds it
        sender.close()
        watcher.join()
        receiver.close()
