"""Files written whole or not at all (:func:`atomic_write`: a temporary file in the same folder,
flushed to the disk and renamed into place) and strict JSON (:func:`json_text`): every file a
dataset, a run folder or a trained network writes goes through here."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import numpy as np


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system allows it."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a hidden temporary name in the folder of ``path``
    (``.NAME.tmp-PID.SUFFIX``: the target's suffix last, for writers that choose the format by
    it), flush the file to the disk, rename it to ``path`` and flush the rename: a crash
    leaves either no file under ``path`` or the whole one. On any failure (``KeyboardInterrupt``
    included) the temporary file is removed and ``path`` is untouched. Returns ``path``.

    Raises:
        OSError: the write failed (a full disk, a read-only file system, a quota); one with
            the system's error number names ``path`` as its ``filename``, not the temporary.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno is None:  # a writer's own OSError, with no system error to name
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` with :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±Inf) as None, through dicts, lists and
    tuples."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON: a non-finite float is written ``null`` (Python's ``NaN`` and
    ``Infinity`` are no JSON, and strict readers, JavaScript's among them, refuse the file)."""
    return json.dumps(_strict(value), indent=indent, allow_nan=False)


def write_array(file: BinaryIO, array: np.ndarray, npy: bool = False) -> None:
    """Write ``array`` to the open binary ``file`` through Python's writes, raw (C order) or as
    an ``.npy`` file (``npy``): a full disk then raises ``OSError(ENOSPC)`` (NumPy's own
    writer, ``tofile``, reports a short write without the system's error number, which a
    caller cannot tell from any other failure)."""
    if npy:  # NumPy writes in chunks through any object with ``write`` that is not a file
        np.save(SimpleNamespace(write=file.write), array, allow_pickle=False)
    else:
        file.write(memoryview(np.ascontiguousarray(array)).cast("B"))


def array_writer(array: np.ndarray, npy: bool = False) -> Callable[[Path], None]:
    """The ``write`` for :func:`atomic_write` that writes ``array`` to its file by
    :func:`write_array` (raw, or ``.npy`` with ``npy``)."""
    def write(path: Path) -> None:
        with open(path, "wb") as file:
            write_array(file, array, npy=npy)

    return write
