"""One run at a time in a run folder (:func:`holding`: a lock file held by the operating
system's file lock, released with the process that held it), and files a run writes in place,
opened without following links (:func:`open_own`)."""

from __future__ import annotations

import errno
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import IO

LOCK = ".physml-run.lock"
"""The file a running run holds its folder by (:func:`holding`)."""

@contextmanager
def holding(folder: Path) -> Iterator[None]:
    """Hold the run folder ``folder`` for this process: a second run in it (a ``--resume``
    started while the first still runs) is refused, where both appended to the same files. An
    exclusive lock on :data:`LOCK` (``flock``; on Windows ``msvcrt.locking`` of one byte), which
    the system releases when the process dies (a killed run leaves no stale hold), removed when
    released. Nothing is held on a file system without locks (some network mounts), on a
    system with neither ``fcntl`` nor ``msvcrt`` (said once, by a ``RuntimeWarning``), or for
    a folder that does not exist (the run names it).

    Raises:
        ValueError: another process holds the folder (naming its process id), the folder
            cannot be written (no permission, a read-only file system, a full disk), or its
            :data:`LOCK` is a link (:func:`open_own`).
    """
    locks = _system_locks()
    if locks is None:
        _warn_unheld()
        yield
        return
    with _held_lock(folder / LOCK, locks):
        yield


def held_by_a_run(folder: Path) -> bool:
    """Whether a physml run holds ``folder`` now (:func:`holding`), asked by a lock taken and
    let go at once (shared, where ``flock`` has one): nothing in the folder changes. False
    where nothing can be held (no lock file, no ``fcntl`` or ``msvcrt``, no file locks)."""
    locks = _system_locks()
    try:
        if locks is not None:
            with open(folder / LOCK) as handle:
                locks.probe(handle)
    except BlockingIOError:
        return True
    except OSError:  # no lock file (no run holds it), no file locks
        pass
    return False


class _Flock:
    """POSIX locks: ``fcntl.flock`` on the open lock file, let go when it closes."""

    def __init__(self, fcntl):
        self.fcntl = fcntl

    def lock(self, handle) -> None:
        """Lock ``handle`` or raise ``BlockingIOError`` (another process holds it); OSError
        where the file system has no locks."""
        self.fcntl.flock(handle, self.fcntl.LOCK_EX | self.fcntl.LOCK_NB)

    def probe(self, handle) -> None:
        """As :meth:`lock`, with a shared lock: let go when ``handle`` closes."""
        self.fcntl.flock(handle, self.fcntl.LOCK_SH | self.fcntl.LOCK_NB)

    def remove(self, path: Path, handle) -> None:
        """Remove the lock file ``path`` that ``handle`` opened, before it closes: while held,
        another process opens a new one."""
        path.unlink(missing_ok=True)

    release = remove


class _Locking:
    """Windows locks: ``msvcrt.locking`` of the byte at :attr:`BYTE`, past the process id at
    the start of the file (another process cannot read a locked range). Windows has no
    shared lock, and removes no open file."""

    BYTE = 1 << 30

    def __init__(self, msvcrt):
        self.msvcrt = msvcrt

    def lock(self, handle) -> None:
        """As :meth:`_Flock.lock`."""
        try:
            self._locking(handle, self.msvcrt.LK_NBLCK)
        except OSError as error:
            if error.errno == errno.EACCES:  # locked by another process
                raise BlockingIOError(error.errno, error.strerror) from None
            raise

    def probe(self, handle) -> None:
        """As :meth:`lock`, and let go at once."""
        self.lock(handle)
        self._locking(handle, self.msvcrt.LK_UNLCK)

    def remove(self, path: Path, handle) -> None:
        """Close ``handle``, then remove the lock file ``path`` unless another process has
        opened it meanwhile (then it stays, for that process to lock)."""
        handle.close()
        with suppress(PermissionError):
            path.unlink(missing_ok=True)

    def release(self, path: Path, handle) -> None:
        """Let go of the lock on ``handle``, then :meth:`remove` the file."""
        self._locking(handle, self.msvcrt.LK_UNLCK)
        self.remove(path, handle)

    def _locking(self, handle, mode: int) -> None:
        handle.seek(self.BYTE)
        self.msvcrt.locking(handle.fileno(), mode, 1)


def _system_locks() -> _Flock | _Locking | None:
    """This system's file locks: ``fcntl`` (POSIX), else ``msvcrt`` (Windows), else None."""
    try:
        import fcntl
    except ImportError:
        pass
    else:
        return _Flock(fcntl)
    try:
        import msvcrt
    except ImportError:
        return None
    return _Locking(msvcrt)


@cache
def _warn_unheld() -> None:
    warnings.warn("this system has neither fcntl nor msvcrt file locks: a run folder is not "
                  "held, and a second run in it (a --resume while the first still runs) is not "
                  "refused", RuntimeWarning, stacklevel=4)


@contextmanager
def _held_lock(path: Path, locks: _Flock | _Locking) -> Iterator[None]:
    """The lock file at ``path`` opened and locked, or nothing held (no folder, no file
    locks). A file removed by its holder between this process's open and lock is opened
    again: the lock must be on the file the path names."""
    while True:
        try:
            handle = open_own(path, "a+")  # held for the whole run
        except FileNotFoundError:
            yield
            return
        except OSError as error:  # no permission, a read-only file system
            handle = None
            refusal = error
        if handle is None:
            raise ValueError(_unwritable(path.parent, refusal)) from None
        with handle:
            try:
                locks.lock(handle)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise ValueError(f"{str(path.parent)!r} is in use by another physml run "
                                 f"(process {holder}); wait for it to end, or stop it, then "
                                 "resume") from None
            except OSError:  # no locks on this file system: leave no lock file either
                locks.remove(path, handle)
                yield
                return
            if not path.exists() or os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino:
                continue  # its holder removed it after this open: lock the one the path names
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
            except OSError as error:  # a full disk, a quota
                with suppress(OSError):  # closed, what it could not write dropped
                    handle.close()
                locks.remove(path, handle)
                raise ValueError(_unwritable(path.parent, error)) from None
            try:
                yield
            finally:
                locks.release(path, handle)
            return


def _unwritable(folder: Path, error: OSError) -> str:
    """Why a run cannot start in ``folder``: the system's refusal ``error`` to write there."""
    reason = (error.strerror or type(error).__name__).lower()
    return (f"{str(folder)!r} cannot be written ({reason}): a run writes its checkpoints, "
            "figures and results there")


def open_own(path: Path, mode: str) -> IO:
    """``open(path, mode)`` for a file a run writes in place (its lock, the records it appends),
    refused where ``path`` is a link (symbolic, or a second name of a file: a run folder from
    someone else may hold one to a file of the user's, which writing through it would
    overwrite) or not a plain file.

    Raises:
        ValueError: ``path`` is a link or not a plain file, naming it: to be removed, or for a
            second name of a file (a copied run folder's hard link, whose contents the run
            needs), to be copied to a file of its own.
        OSError: it cannot be opened (no folder, no permission).
    """
    refused = ValueError(f"{str(path)!r} is a link or not a plain file; a run writes only into "
                         "files of its own: remove it, then run again")
    if path.is_symlink():  # where the system has no O_NOFOLLOW (Windows)
        raise refused
    try:
        handle = open(path, mode, opener=_not_following)  # noqa: SIM115 (the caller closes it)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):  # a symbolic link, put there meanwhile
            raise refused from None
        raise
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        handle.close()
        if stat.S_ISREG(info.st_mode):  # its contents may be the run's (a copy by cp -al)
            name = path.name
            raise ValueError(
                f"{str(path)!r} is a link or not a plain file; a run writes only into files of "
                f"its own, and this is one of {info.st_nlink} names of one file (a hard link), "
                "which writing would change under the others: copy it to a file of its own "
                f"(in its folder: cp {name} {name}.tmp && mv {name}.tmp {name}), then run again")
        raise refused
    return handle


def _not_following(path: str, flags: int) -> int:
    """``os.open`` that does not follow a symbolic link at ``path`` (``O_NOFOLLOW``: it fails
    with ``ELOOP``, or ``EMLINK`` on some BSDs), where the system has the flag."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
