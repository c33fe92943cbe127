"""The output folder of a generation: prepare it (refusing files a dataset did not write, or
a dataset of another spec unless overwritten; the complete dataset of the same spec is left as
it is) and, on a resume, read which shards it already holds and on which device they were
written.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .atomic_files import write_text
from .spec import SampledSpec, load_spec
from .store import MANIFEST, SHARD_GLOB, SPLITS

if TYPE_CHECKING:  # generate imports this module
    from .generate import ShardTask


def prepare_folder(spec: SampledSpec, folder: Path, overwrite: bool) -> bool:
    """Create ``folder`` (or check it may be resumed) and record the spec in it; or, where
    it holds the manifest of a dataset of this very spec (its ``spec.yaml`` is the spec's
    YAML, to the character) and ``overwrite`` is false, leave it as it is and return True (a
    rerun of the same command: the caller checks its shards).

    Raises:
        ValueError: ``folder`` is a file, the folder holds files a dataset did not write
            (whatever ``overwrite`` says), a dataset (complete or partial) of another spec
            and ``overwrite`` is false, or it cannot be written.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(folder)!r} is a file; give a folder (a dataset is a "
                         "folder of shards)")
    spec_file = folder / "spec.yaml"
    foreign = _foreign_files(folder)
    if foreign:
        raise ValueError(
            f"--out {str(folder)!r} holds files that are not part of a physml dataset "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); choose "
            "another folder (--overwrite deletes only a dataset's own files)"
        )
    if overwrite:
        for name in (*SPLITS, MANIFEST, "spec.yaml"):
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif (folder / MANIFEST).exists():
        recorded_text = spec_file.read_text(encoding="utf-8") if spec_file.is_file() else None
        if recorded_text == spec.to_yaml():
            return True
        raise ValueError(
            f"--out {str(folder)!r} holds a complete dataset of another spec"
            f"{_first_difference(recorded_text, spec.to_yaml())}; pass --overwrite to "
            "regenerate it"
        )
    elif spec_file.exists() and (recorded := _recorded_yaml(spec_file)) != spec.to_yaml():
        raise ValueError(
            f"--out {str(folder)!r} holds a partial dataset of another spec"
            f"{_first_difference(recorded, spec.to_yaml())}; use another folder or pass "
            "--overwrite"
        )
    elif spec_file.exists() and (missing := _keys(recorded)
                                 - _keys(spec_file.read_text(encoding="utf-8"))):
        raise ValueError(  # an older physml: keys it did not know, steps it took otherwise
            f"--out {str(folder)!r} holds a partial dataset written by another physml version "
            f"(its spec.yaml has no {', '.join(sorted(missing))}); its shards were solved "
            "otherwise: use another folder or pass --overwrite"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            (folder / split).mkdir(exist_ok=True)
            for tmp in (folder / split).glob(".shard-*.tmp-*"):
                if not _writer_runs(tmp):
                    tmp.unlink(missing_ok=True)
        write_text(spec_file, spec.to_yaml())
    except OSError as err:
        raise ValueError(f"--out {str(folder)!r} cannot be written: {err.strerror}") from None
    return False


def _writer_runs(tmp: Path) -> bool:
    """Whether the process that writes the temporary shard ``tmp`` (``.NAME.tmp-PID.SUFFIX``,
    :func:`~physml.datasets.atomic_files.atomic_write`) still runs on this machine: a generation
    that starts while another writes into the same folder leaves that one's files alone and removes
    only those a stopped run left. Where no process can be looked up (not POSIX), every
    temporary file is kept (``--overwrite`` removes them with their split folders)."""
    if os.name != "posix":
        return True
    pid = re.search(r"\.tmp-(\d+)", tmp.name)
    if pid is None:
        return False
    try:
        os.kill(int(pid.group(1)), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, and belongs to another user
        pass
    return True


def _recorded_yaml(spec_file: Path) -> str | None:
    """A folder's ``spec.yaml`` read through the spec model and written again, as
    :func:`~physml.datasets.generate.generate` writes a spec (a relative mesh file path in it
    reads from the working folder); None if it does not validate."""
    try:
        return load_spec(spec_file).to_yaml()
    except ValueError:
        return None


def _keys(text: str) -> set[str]:
    """The dotted key paths of a spec's YAML text (``solver.tolerance``, ...)."""

    def paths(node: object, prefix: str) -> set[str]:
        if not isinstance(node, dict):
            return set()
        return {f"{prefix}{k}" for k in node} | {
            p for k, v in node.items() for p in paths(v, f"{prefix}{k}.")}

    return paths(yaml.safe_load(text), "")


def _first_difference(recorded: str | None, given: str) -> str:
    """`` (spec.yaml has ..., the spec gives ...)``: the first line in which two specs' YAML
    differ (a changed mesh file shows as its ``sha256``), or nothing."""
    if recorded is None:
        return ""
    for old, new in zip(recorded.splitlines(), given.splitlines()):
        if old != new:
            return f" (spec.yaml has {old.strip()!r}, the spec gives {new.strip()!r})"
    return ""


DAMAGED_SHARD = object()
"""What :func:`written_device` returns for a shard it removed."""


def written_device(task: ShardTask) -> object:
    """The device recorded by the shard at ``task.path`` (None: assembled on the host), read
    in the one open that checks the shard is whole: it opens and holds the task's samples. A
    damaged one (an empty or truncated file left by a crash of the disk or the network file
    system) is removed, with a warning, to be written again: then :data:`DAMAGED_SHARD`."""
    import h5py

    try:
        with h5py.File(task.path, "r") as f:
            if "sample" in f and tuple(f["sample"][:].tolist()) == task.seeds:
                written = f.attrs.get("device")
                return written.decode() if isinstance(written, bytes) else written
    except OSError:
        pass
    warnings.warn(f"shard {task.path!r} is damaged or holds other samples; writing it again",
                  stacklevel=3)
    Path(task.path).unlink()
    return DAMAGED_SHARD


def check_resumed_device(written: str | None, device: str, folder: Path) -> None:
    """Refuse to resume on a CPU a dataset begun on a GPU, or the reverse: their samples
    differ in the last bits (contracted products, other library functions), and a dataset is
    one device's. Shards that record no device (``written`` None: assembled on the host) pass.

    Raises:
        ValueError: a shard was written on another kind of device (``written``) than ``device``.
    """
    if written is None:
        return
    written = str(written)
    if written.startswith("cuda") != str(device).startswith("cuda"):
        raise ValueError(
            f"--out {str(folder)!r} holds a partial dataset generated on {written!r}; resume "
            f"it with --device {written} (samples from {device!r} would differ in the last "
            "bits), or pass --overwrite")


def _foreign_files(folder: Path) -> list[str]:
    """What in ``folder`` a dataset would write over and did not write itself: a
    ``spec.yaml`` that is not a dataset spec, or a split folder's files other than shards
    (complete or temporary)."""
    foreign = []
    spec_file = folder / "spec.yaml"
    if spec_file.is_file():
        try:
            load_spec(spec_file)
        except ValueError:
            foreign.append(str(spec_file))
    for split in SPLITS:
        if (folder / split).is_dir():
            foreign.extend(str(f) for f in sorted((folder / split).iterdir())
                           if not (f.match(SHARD_GLOB) or f.match(".shard-*.tmp-*")))
    return foreign
