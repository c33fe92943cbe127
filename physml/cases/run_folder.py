"""What every case kind shares about its run folder: the ``output`` section, atomic writes
(:func:`~physml.datasets.atomic_files.atomic_write` and ``write_text``, from the data layer), the
checkpoint's name, folder creation, the resolved ``config.yaml`` and the one layout of
``metrics.json`` (:func:`write_metrics`).

A run folder is ``output.folder/<name>-<YYYYmmdd-HHMMSS>``; each kind documents the files it
writes there. Its data files (checkpoint, ``config.yaml``, metrics, predictions) are written
under a temporary name and renamed when complete, so an interrupted run never leaves a
half-written one under its final name, and its figures the same way (:func:`save_figure`).
What a run writes in place (its lock, appended records) it opens with
:func:`~.run_lock.open_own`. Either way, a link at a file's name (a run folder from someone
else, resumed) is never written through.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import xarray as xr
from pydantic import (
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._version import __version__
from ..datasets.atomic_files import atomic_write as atomic_write
from ..datasets.atomic_files import json_text
from ..datasets.atomic_files import write_text as write_text
from ..datasets.spec import StrictModel
from ..datasets.store import with_cf_metadata
from ..torch_files import load_checked
from .run_lock import LOCK

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..errors import NonFiniteLossError
    from ..solvers.errors import BlowUpError

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
METRICS = "metrics.json"


class Section(StrictModel):
    """A case-file section: as a dataset spec's sections (:class:`~physml.datasets.spec.
    StrictModel`), unknown keys refused, values frozen, NaN and infinity refused for every
    number, and a boolean refused where a number is expected (YAML's ``true`` would otherwise
    count as 1)."""


class KindSection(Section):
    """A section whose kind (``option_kind``: its ``kind`` key, or what its settings make it)
    decides which of its options are read (``KIND_OPTIONS``: the kind-specific options each
    kind reads). An option of another kind, set to other than its default, is an option set
    for nothing: :func:`~physml.cases.registry.load_case` refuses it where the case file (the
    context's ``strict_kinds``) or a command-line override sets it, lets it be where a variant
    or an override switched the kind of a section that set it, and the resolved case (a run
    folder's ``config.yaml``) leaves it out."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {}

    @property
    def option_kind(self) -> str:
        """The key of ``KIND_OPTIONS`` that applies."""
        return self.kind

    def describe_kind(self) -> str:
        return f"kind {self.option_kind!r}"

    def unread(self) -> set[str]:
        """The kind-specific options of the other kinds, which this section's kind does not
        read."""
        own = self.KIND_OPTIONS[self.option_kind]
        return {k for keys in self.KIND_OPTIONS.values() for k in keys if k not in own}

    def foreign(self, given: dict[str, object] | None = None) -> list[str]:
        """The options :meth:`unread` among those ``given`` (a raw mapping of options to
        values; default: this section's own) with a value other than None and the option's
        default."""
        fields = type(self).model_fields
        given = {k: getattr(self, k) for k in fields} if given is None else given
        unread = self.unread()
        return [k for k, value in given.items() if k in unread and value is not None
                and value != fields[k].get_default(call_default_factory=True)]

    def foreign_message(self, key: str) -> str:
        own = self.KIND_OPTIONS[self.option_kind]
        return (f"{key} does not apply to {self.describe_kind()} (of the kind-specific options "
                f"it takes: {', '.join(own) if own else 'none of them'})")

    @model_validator(mode="after")
    def _options_of_the_kind(self, info: ValidationInfo) -> KindSection:
        if (info.context or {}).get("strict_kinds"):
            for key in self.foreign()[:1]:
                raise ValueError(self.foreign_message(key))
        return self


def foreign_options(given: object, model: object, path: str = "") -> str | None:
    """The first option set in ``given`` (a raw mapping: a case file's, or an override's as
    a nested mapping) that the kind of its section in the validated ``model`` does not read,
    as ``"dotted.path: message"``; None if there is none."""
    if isinstance(model, KindSection) and isinstance(given, dict):
        for key in model.foreign({k: v for k, v in given.items() if isinstance(k, str)})[:1]:
            return f"{path.rstrip('.')}: {model.foreign_message(key)}"
    entries = (given.items() if isinstance(given, dict)
               else enumerate(given) if isinstance(given, list) else ())
    for key, value in entries:
        found = foreign_options(value, _child(model, key), f"{path}{key}.")
        if found:
            return found
    return None


def _child(model: object, key: object) -> object:
    """``model``'s field, entry or item ``key`` (an item also by its decimal digits, as a
    dotted override names it; None where it has none)."""
    if isinstance(model, BaseModel):
        return getattr(model, str(key), None)
    if isinstance(model, dict):
        return model.get(key)
    if isinstance(key, str) and key.isdecimal():
        key = int(key)
    if isinstance(model, list | tuple) and isinstance(key, int) and 0 <= key < len(model):
        return model[key]
    return None


def drop_foreign(model: object, data: object) -> None:
    """Remove from ``data`` (``model``'s dump) the kind-specific options each
    :class:`KindSection` of ``model`` does not read, at every depth."""
    if isinstance(model, KindSection) and isinstance(data, dict):
        for key in model.unread() & data.keys():
            data.pop(key)
    entries = (data.items() if isinstance(data, dict)
               else enumerate(data) if isinstance(data, list) else ())
    for key, value in entries:
        drop_foreign(_child(model, key), value)


class OutputSpec(Section):
    folder: str = "runs"
    figures: bool = True
    log_error: bool = Field(False, description="error panels of the figures on a log scale")
    tensorboard: bool = Field(False, description="TensorBoard scalars of every loss term, "
                              "weight and error in RUN_DIR/tensorboard")

    @field_validator("tensorboard")
    @classmethod
    def _installed(cls, value: bool) -> bool:
        if value:
            from .scalar_log import require_tensorboard

            require_tensorboard()
        return value


def new_run_folder(name: str, output: OutputSpec) -> Path:
    """``output.folder/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if taken), created.

    Raises:
        ValueError: the folder cannot be made there (``output.folder`` is a file, or not
            writable), naming ``output.folder``.
    """
    check_output_folder(output)
    base = Path(output.folder) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:  # mkdir decides: a run started in the same second takes the next suffix
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                folder, n = base.with_name(f"{base.name}-{n}"), n + 1
    except FileExistsError:  # from the parent: a file or a dangling link is in the way
        raise _unmakeable(output, _IN_THE_WAY) from None
    except OSError as err:
        raise _unmakeable(output, err.strerror) from None


def check_output_folder(output: OutputSpec) -> None:
    """Refuse an ``output.folder`` under which no run folder can be made, without making one:
    the nearest existing path on it must be a folder that takes a new folder (a trial folder
    is made there and removed), as ``physml validate`` and :func:`new_run_folder` both check.

    Raises:
        ValueError: naming ``output.folder`` and why (a file in the way, a permission, a
            read-only or virtual file system such as ``/proc``).
    """
    path = Path(output.folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise _unmakeable(output, _IN_THE_WAY)
    try:
        Path(tempfile.mkdtemp(prefix=".physml-probe-", dir=existing)).rmdir()
    except OSError as err:
        raise _unmakeable(output, err.strerror) from None


_IN_THE_WAY = "a file or a link to nothing is in the way"


def _unmakeable(output: OutputSpec, why: str) -> ValueError:
    return ValueError(f"output.folder={str(output.folder)!r}: cannot make the run folder there "
                      f"({why})")


STOPPED = "stopped.txt"
"""Why a run stopped on a numerical failure (NaN/Inf), beside the checkpoint it kept: read by
``physml predict`` and ``export``; ``physml run --resume`` refuses the folder (the same case
replays the same steps into the same failure)."""


def save_figure(fig: Figure, path: Path, **savefig: Any) -> None:
    """Save the Matplotlib figure ``fig`` to ``path`` (``fig.savefig(path, **savefig)``, the
    format by the suffix) with :func:`atomic_write`: a link at ``path`` is replaced, never
    written through, and an interrupted save leaves the figure that was there. ``fig`` is
    closed after, also when the save fails (pyplot keeps every open figure)."""
    from matplotlib import pyplot  # loaded already by whoever drew fig

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, **savefig))
    finally:
        pyplot.close(fig)


def sweep_temporaries(folder: Path) -> None:
    """Remove what saves killed mid-write left in ``folder`` and below: the hidden temporary
    files of :func:`~physml.datasets.atomic_files.atomic_write` (``.NAME.tmp-PID.SUFFIX``). Only
    while :func:`holding` the folder: no other run writes there then."""
    for stale in folder.rglob(".*.tmp-*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


EARLY_FILES = ("checkpoint.pt", "checkpoint.npz", "checkpoint_states", "frames.f64", "datasets")
"""What a run of some kind writes before its ``config.yaml``: its first checkpoint, a mesh heat
run's frames, a ``pcg`` run's dataset."""


def killed_at_start(folder: Path) -> bool:
    """Whether ``folder``, a folder without :data:`CONFIG`, is what a run killed before it
    (SIGKILL, the system out of memory, a power cut: nothing to remove the folder) left: its
    :data:`LOCK` (the system lets go of a killed process's lock, not the file), or a save's
    temporary file (:func:`sweep_temporaries`) in it, not below it (a folder of runs, one of
    them killed mid-save, is no killed run), and nothing but what a run writes before its
    configuration (a folder of the user's files with a stray temporary is none either)."""
    entries = list(folder.iterdir())
    leftovers = [p for p in entries
                 if p.name == LOCK or (p.name.startswith(".") and ".tmp-" in p.name)]
    return bool(leftovers) and all(p in leftovers or p.name in EARLY_FILES for p in entries)


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it exists and holds nothing (a run refused or stopped at once)."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def write_metrics(folder: Path, case: str, summary: dict, history: list[dict]) -> None:
    """Write the run's ``metrics.json``, in the one layout of every case kind::

        {"case": name, "summary": {...}, "history": [{"step": k, ...}, ...],
         "environment": {"physml": version, "python": ..., "torch": ..., ...}}

    Args:
        folder: the run folder.
        case: the case's name.
        summary: the run's final figures: with ``threshold`` and ``passed`` where the case
            has a verdict, and ``units`` (entry name to unit) where its entries have units.
        history: one record per recorded step (a training update, a time step or a
            snapshot), each with its ``step``: updates counted from 1, 0 before the first.
    """
    write_text(folder / METRICS, json_text(
        {"case": case, "summary": summary, "history": history, "environment": environment()},
        indent=1))


def write_stopped_metrics(folder: Path, case: str, error: NonFiniteLossError | BlowUpError,
                          history: list[dict], **summary: object) -> None:
    """Write the ``metrics.json`` of a run that ``error`` stopped (a NaN/Inf loss or gradient,
    a folded mesh, a field that blew up), in :func:`write_metrics`'s layout: ``history`` up
    to the last finite step (the steps after the checkpoint kept included), and a summary of
    ``stopped`` (why: the message ``stopped.txt`` holds), ``stopped_step`` (the step it
    names), ``checkpoint_step`` (that of the checkpoint kept: a NonFiniteLossError's own; a
    BlowUpError names none, and its run gives it in ``summary``), ``passed`` false and
    ``summary`` (the steps taken, the time)."""
    write_metrics(folder, case, {"stopped": str(error), "stopped_step": error.step,
                                 "checkpoint_step": getattr(error, "checkpoint_step", None),
                                 "passed": False, **summary}, history)


RECORDED_PACKAGES = ("numpy", "scipy", "torch", "warp-lang", "h5py", "xarray", "pyamg", "gmsh",
                     "meshio", "sympy", "torch_geometric")
"""The libraries whose versions a run records (:func:`environment`)."""


def environment() -> dict[str, str]:
    """The versions a run's numbers depend on: physml's, Python's, the platform's and those of
    :data:`RECORDED_PACKAGES` (an absent one is left out)."""
    import platform
    from importlib import metadata

    versions = {"physml": __version__, "python": platform.python_version(),
                "platform": platform.platform()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_checkpoint(folder: Path, read: Callable[[Path], Any] = load_checked,
                    name: str = CHECKPOINT, use: str = "--resume",
                    remedy: str = "start a new run instead",
                    missing: str = "nothing to resume") -> Any:
    """What ``read`` (default :func:`~physml.torch_files.load_checked`: ``torch.load`` after
    the archive's checksums) makes of the checkpoint in ``folder``, or a ValueError naming the
    file (after ``use``, what needed it) when there is none (with ``missing``) or it cannot be
    read (with ``remedy``: a copy cut short, a damaged one, or another program's file: whatever
    the reader raises then, the checkpoint is of no use)."""
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{use}: {str(folder)!r} has no {name}; {missing}")
    try:
        return read(path)
    except CheckpointPartError:  # names its own file
        raise
    except Exception as error:  # noqa: BLE001 (every reader's own way of failing)
        raise ValueError(unreadable(path, "a checkpoint", error, use, remedy)) from None


class CheckpointPartError(ValueError):
    """A file a checkpoint refers to (a snapshot kept beside it) cannot be read; the message
    names that file (:func:`unreadable`)."""


def unreadable(path: Path, what: str, error: Exception, use: str = "--resume",
               remedy: str = "start a new run instead") -> str:
    """The message for a file at ``path`` that cannot be read as ``what``: the reader's
    exception and the first sentence of its message."""
    reason = str(error).split(". ")[0]
    return (f"{use}: {str(path)!r} cannot be read as {what} ({type(error).__name__}: "
            f"{reason}); {remedy}")


@contextmanager
def restoring(folder: Path) -> Iterator[None]:
    """Around the restoring of the checkpoint's state (``folder / CHECKPOINT``) into a run's
    model, optimiser or trainer: a state that does not fit them (another run's checkpoint
    copied in: other sizes, other keys) becomes a ValueError naming the file, instead of
    PyTorch's traceback."""
    try:
        yield
    except (RuntimeError, KeyError, IndexError, TypeError) as error:
        if "out of memory" in str(error):  # the state may fit; the device's memory does not
            raise
        reason = (str(error).splitlines() or [""])[0].split(". ")[0][:200]
        raise ValueError(f"--resume: {str(folder / CHECKPOINT)!r} does not fit the run its "
                         f"config.yaml describes ({type(error).__name__}: {reason}); start a "
                         "new run instead") from None


FIELD_METADATA = {
    "prediction": ("prediction of u", "1"),
    "reference": ("reference solution u", "1"),
    "error": ("prediction minus reference", "1"),
    "field": ("name of the field (a system's output)", "1"),
}


def comparison_dataset(prediction: np.ndarray, reference: np.ndarray,
                       coords: dict[str, np.ndarray], attrs: dict,
                       metadata: dict[str, tuple[str, str]] | None = None) -> xr.Dataset:
    """``prediction``, ``reference`` and their difference on a grid, as the run folder's
    ``predictions.h5`` holds them: dims named by ``coords`` (``time``, ``x``, ``y``; arrays
    indexed in the order of ``coords``), reordered time first, then space, with CF
    ``long_name``/``units`` on every variable and coordinate (``metadata`` adds to or
    overrides the defaults: a solver grid's cell centres and model time)."""
    dims = tuple(coords)
    fields = {"prediction": prediction, "reference": reference,
              "error": prediction - reference}
    ds = xr.Dataset({name: (dims, np.asarray(v)) for name, v in fields.items()},
                    coords=coords, attrs=attrs)
    return with_cf_metadata(ds, {**FIELD_METADATA, **(metadata or {})})


def run_attrs(case, **attrs: object) -> dict:
    """The attrs of a run's ``predictions.h5``: as a dataset file's (DESIGN §3), the case's
    name, ``attrs`` (the PDE and its physical parameters, the error), the seed, the physml
    version and the resolved configuration."""
    return {"case": case.name, **attrs, "seed": case.seed, "physml_version": __version__,
            "config": case.to_yaml()}


def pde_attrs(pde: KindSection) -> dict:
    """A case's ``pde`` section as attrs: ``pde``, its name, and the physical parameters that
    PDE reads (``nu`` for Burgers; the options of other PDEs left out)."""
    unread = pde.unread()
    return {"pde": pde.name, **{k: v for k, v in pde.model_dump(exclude={"name"}).items()
                                if k not in unread}}


def evaluation_axes_metadata(dims) -> dict[str, tuple[str, str]]:
    """CF metadata of the axes of an evaluation grid: points of the problem's own,
    dimensionless inputs (not a solver's cell centres in metres or seconds)."""
    return {d: (f"{d} (evaluation grid)", "1") for d in dims if d not in ("field", "sample")}
