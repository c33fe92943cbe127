"""Files of ``torch.save``: written whole or not at all (:func:`save_torch_file`), and read with
the checksums of their zip archive verified (:func:`load_checked`): ``torch.load`` does not
check them, so bytes damaged inside a tensor (a copy gone wrong, a failing disk) were read
without a word."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from .datasets.atomic_files import atomic_write


def load_checked(path: str | Path, map_location: Any = None) -> Any:
    """``torch.load(path, map_location=map_location, weights_only=True)`` (tensors and plain
    containers: no code runs) after every part of the archive passed its CRC-32 check (a file
    of the layout before archives, which has none, is read as it is).

    Raises:
        ValueError: a part fails its checksum (named).
    """
    import torch

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise ValueError(f"its part {damaged!r} fails its checksum: the file is damaged")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_torch_file(path: str | Path, state: Any) -> Path:
    """``torch.save(state)`` to ``path`` through a temporary file renamed into place
    (:func:`~physml.datasets.atomic_files.atomic_write`), written through a Python file object
    so that a full disk or a read-only file system raises an ``OSError`` naming ``path`` and
    the system's reason (PyTorch's own writer raises ``RuntimeError: ... unexpected pos``)."""
    import torch

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file:
            torch.save(state, file)

    return atomic_write(path, write)
