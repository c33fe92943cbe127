"""SIGTERM handled as Ctrl-C, and the exit status of a command stopped by a file it could not
write.

Batch systems and tools stop a job with SIGTERM (Slurm at its time limit, ``timeout``,
``docker stop``, systemd), where Python's default is to die at once: no message, and a run
stopped before its first checkpoint left an empty folder. Under :func:`sigterm_as_interrupt`
SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, so that a stopped command leaves
what Ctrl-C leaves (a run its last checkpoint and the command that resumes it). A write that
fails mid-command (a full disk, a read-only file system, a quota, an I/O error) leaves the same,
with :data:`EX_IOERR` and :func:`unwritten`'s line.

Under :func:`stops_deferred` (``physml run``) a stop keeps the work of the step it waited for:
the first SIGINT or SIGTERM that arrives while a step loop runs (:func:`step_loop`) is
recorded, and the loop, at the end of its step (:func:`stop_pending`), writes its checkpoint
there and raises it (:func:`raise_pending`)::

    with step_loop():
        while step < total:
            ...  # one step
            stopping = stop_pending()
            if step % checkpoint_every == 0 or stopping:
                save()
            if stopping:
                raise_pending()

Outside the loops, or a second signal, raises at once; so does every signal where no
:func:`stops_deferred` is entered (the library, used from Python, unless its caller enters it).
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


_pending: KeyboardInterrupt | None = None  # the stop recorded, raised at the end of the step
_loops = 0  # the step loops running on the main thread
_deferring = False  # whether stops_deferred's handlers are installed


@contextmanager
def stops_deferred() -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM that arrives while a :func:`step_loop` runs is
    recorded, for the loop to raise at the end of its step (``KeyboardInterrupt``, or
    :class:`Terminated` for SIGTERM); outside the loops, or a SIGINT while one is recorded (a
    second Ctrl-C: the user insists), the signal raises at once. A SIGTERM while one is
    recorded changes nothing: a batch system and ``torchrun`` may each send one (a stop that
    cannot wait comes as SIGKILL). Off the main thread nothing changes; the former handlers
    are restored after, and a stop left recorded is dropped."""
    global _pending, _deferring
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def deferred(signum: int, frame: object) -> None:
        global _pending
        interrupt = _interrupt(signum)
        if _loops and _pending is None:
            _pending = interrupt
            return
        if _pending is not None and signum == signal.SIGTERM:
            return  # the stop recorded stands
        _pending = None
        raise interrupt

    previous = {s: signal.signal(s, deferred) for s in (signal.SIGINT, signal.SIGTERM)}
    _deferring = True
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _deferring, _pending = False, None


@contextmanager
def step_loop() -> Iterator[None]:
    """Within: a step loop runs, which calls :func:`stop_pending` at the end of each step.
    Leaving the outermost one with a stop recorded after its last step's check raises it."""
    global _loops
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _loops += 1
    try:
        yield
    finally:
        _loops -= 1
    if not _loops and _pending is not None:
        raise_pending()


def stop_pending() -> bool:
    """Whether a stop is recorded: the step loop writes its checkpoint at this step, then
    calls :func:`raise_pending`."""
    return _pending is not None


def pending_signal() -> int:
    """The signal of the stop recorded (``signal.SIGINT`` or ``signal.SIGTERM``), 0 for none:
    what processes training together compare, to stop at the same step
    (:func:`~physml.train.distributed.agreed_stop`)."""
    if _pending is None:
        return 0
    return signal.SIGTERM if isinstance(_pending, Terminated) else signal.SIGINT


def raise_pending(agreed: int = 0) -> None:
    """Raise the stop recorded, if any (a ``KeyboardInterrupt``, or :class:`Terminated`); with
    ``agreed``, a signal another process recorded (:func:`pending_signal`), that signal's
    stop, whether or not this process recorded one."""
    global _pending
    interrupt, _pending = _pending, None
    if agreed:
        interrupt = _interrupt(agreed)
    if interrupt is not None:
        raise interrupt


def _interrupt(signum: int) -> KeyboardInterrupt:
    """The stop of signal ``signum``: :class:`Terminated` for SIGTERM, else Ctrl-C's."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def stops_at_step_end() -> bool:
    """Whether a signal arriving now would be recorded for the end of the step (within
    :func:`stops_deferred`, a :func:`step_loop` running), not raised at once."""
    return _deferring and _loops > 0


def deferring_stops() -> bool:
    """Whether :func:`stops_deferred` is entered (a signal outside a step loop raises at once,
    as soon as the main thread returns to Python)."""
    return _deferring


def stops_end_the_process() -> None:
    """From here on SIGINT and SIGTERM end the process at once and quietly, as they end a
    program that handles neither (a shell reports 130 and 143). For a command that has told
    its user why it ends and chosen its exit status: a further stop (a second Ctrl-C) would
    otherwise raise in the interpreter's own exit (``atexit`` handlers and finalizers: PyTorch's,
    Warp's, h5py's) and print a traceback. Off the main thread nothing changes."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)


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
