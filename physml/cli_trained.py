"""``physml predict`` and ``physml export``: the trained network of a run folder evaluated at
points read from a .npy or .csv file ((n, d_in) -> (n, m), written as .npy, .csv or .h5), or
saved as TorchScript or ONNX. Both exports compute in the trained dtype: the TorchScript module
casts its input to it (a float64 ``X`` is rounded to float32 for a float32 run), and the ONNX
graph declares it as its input's type (ONNX Runtime refuses another, naming both).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cli_parser import check_output_file

if TYPE_CHECKING:
    from .trained import TrainedModel


def predict_command(args: argparse.Namespace) -> int:
    from .trained import load_run

    check_output_file(args.out, args.overwrite)
    _check_suffix(args.out, (".npy", ".csv", ".h5"), ".npy, .csv or .h5")
    model = load_run(args.run_dir, args.device)
    points = _read_points(args.points, model.inputs, model.outputs)
    _note_unfinished("predict", args.run_dir, model)  # after the mistakes: they end on one line
    bounds = model.field.problem.bounds  # (d_in, 2): the box the network was trained in
    beyond = np.any((points < bounds[:, 0]) | (points > bounds[:, 1]), axis=1)
    outside = int(np.sum(beyond))
    if outside:
        box = ", ".join(f"{name} in [{a:g}, {b:g}]" for name, (a, b) in zip(model.inputs, bounds))
        print(f"physml predict: note: {outside} of {len(points)} points lie outside the box the "
              f"network was trained in ({box}): it extrapolates there", file=sys.stderr)
    geometry = model.field.problem.geometry  # the space inputs come first
    off_domain = int(np.sum(~geometry.inside(points[~beyond, : geometry.dim])))
    if off_domain:
        print(f"physml predict: note: {off_domain} of {len(points)} points lie inside that box "
              f"but outside the domain ({type(geometry).__name__}): the network was not trained "
              "there", file=sys.stderr)
    values = model(points).reshape(len(points), -1)
    overflowed = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(overflowed):
        print(f"physml predict: warning: {len(overflowed)} of {len(points)} predictions (rows "
              f"{overflowed[:5].tolist()}{', ...' if len(overflowed) > 5 else ''}) are NaN or "
              "infinite: the network's arithmetic overflows at those points; they are written "
              "as they are", file=sys.stderr)
    if args.out.suffix in (".npy", ".csv"):  # whole or not at all, as the .h5 is written
        from .datasets.atomic_files import atomic_write

        def write(path: Path) -> None:
            with open(path, "wb") as file:
                if args.out.suffix == ".npy":
                    np.save(file, values)
                else:
                    digits = 9 if values.dtype == np.float32 else 17  # round-trip digits
                    formats = ["%.17g"] * points.shape[1] + [f"%.{digits}g"] * values.shape[1]
                    np.savetxt(file, np.hstack([points, values]), delimiter=",",
                               header=",".join((*model.inputs, *model.outputs)), comments="",
                               fmt=formats)

        atomic_write(args.out, write)
    else:
        import xarray as xr

        from .datasets.store import with_cf_metadata
        from .io import write_dataset

        columns = {name: ("point", points[:, i]) for i, name in enumerate(model.inputs)}
        columns.update({name: ("point", values[:, i]) for i, name in enumerate(model.outputs)})
        metadata = {name: (f"input {name} of the trained network", "1") for name in model.inputs}
        metadata.update({name: (f"prediction of {name}", "1") for name in model.outputs})
        write_dataset(with_cf_metadata(xr.Dataset(columns, attrs={"run": str(model.run_dir)}),
                                       metadata), args.out)
    print(f"wrote {args.out} ({len(points)} points, outputs {', '.join(model.outputs)})")
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``physml export RUN_DIR --out MODEL``: the network of the run as TorchScript (``.pt``,
    its input cast to the trained dtype) or ONNX (``.onnx``, its input of the trained dtype)."""
    from .trained import load_run

    check_output_file(args.out, args.overwrite)
    writers = {".pt": "export_torchscript", ".onnx": "export_onnx"}
    _check_suffix(args.out, tuple(writers), ".pt (TorchScript) or .onnx")
    model = load_run(args.run_dir, args.device)
    _note_unfinished("export", args.run_dir, model)
    getattr(model, writers[args.out.suffix])(args.out)
    print(f"wrote {args.out} (inputs {', '.join(model.inputs)} -> outputs "
          f"{', '.join(model.outputs)}, {str(model.dtype).removeprefix('torch.')})")
    return 0


def _check_suffix(out: Path, suffixes: tuple[str, ...], allowed: str) -> None:
    """Refuse an ``--out`` that does not end in one of ``suffixes`` (``allowed`` lists them),
    or that is a suffix alone (``.pt``: a hidden file's name, with no suffix)."""
    if out.name in suffixes:
        raise ValueError(f"--out: {str(out)!r} has no name before {out.name}; give one, e.g. "
                         f"{str(out.with_name('u' + out.name))!r}")
    if out.suffix not in suffixes:
        raise ValueError(f"--out: {str(out)!r} must end in {allowed}")


def _note_unfinished(command: str, run_dir: Path, model: TrainedModel) -> None:
    """On stderr, for a network of fewer training steps than its run's total: which checkpoint
    it is, and what finishes the run."""
    if model.steps is None or model.steps >= model.planned_steps:
        return
    from .cases.run_folder import STOPPED
    from .cases.run_lock import held_by_a_run

    if held_by_a_run(run_dir):
        state = "the run is still training: this is its latest checkpoint"
    elif (run_dir / STOPPED).is_file():  # a resume replays the steps into the same failure
        reason = (run_dir / STOPPED).read_text(encoding="utf-8").strip()
        state = f"the run stopped: {reason}; a resume fails the same way: start a new run"
    else:
        state = "the run was interrupted: resume it to finish"
    print(f"physml {command}: note: the network of {str(run_dir)!r} is its checkpoint at step "
          f"{model.steps} of {model.planned_steps} ({state})", file=sys.stderr)


def _read_points(path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...] = ()
                 ) -> np.ndarray:
    """Rows of inputs from a .npy array or a .csv whose header names the inputs (columns
    named like an output are ignored: a CSV ``predict`` wrote reads back; a UTF-8 byte-order
    mark is skipped).

    Raises:
        ValueError: naming ``--points`` and what it holds: not a regular file (a folder, a
            pipe, ``-``), a .npy of values other than integers and floats, a header naming a
            column twice, missing an input or naming another column, rows of another length,
            no rows, or a NaN or infinite coordinate.
    """
    if path.is_dir():
        raise ValueError(f"--points: {str(path)!r} is a folder; give a .npy or .csv file")
    if str(path) == "-" or (path.exists() and not path.is_file()):
        raise ValueError(f"--points: {str(path)!r} is not a regular file (standard input, a pipe "
                         "and a device are not read); give a .npy or .csv file")
    if not path.is_file():
        raise ValueError(f"--points: {str(path)!r} does not exist")
    if path.suffix not in (".npy", ".csv"):
        raise ValueError(f"--points: {str(path)!r} must end in .npy or .csv")
    try:
        if path.suffix == ".npy":
            with path.open("rb") as f:
                try:
                    version = np.lib.format.read_magic(f)
                except ValueError:
                    raise ValueError("is not a NumPy array file (write one with numpy.save)"
                                     ) from None
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                dtype = read_header(f)[2]
                if dtype.hasobject:
                    raise ValueError("holds object values; need a numeric array")
                if dtype.kind not in "iuf":
                    raise ValueError(f"holds {dtype.name} values; need an array of real "
                                     "numbers (integers or floats)")
            points = np.load(path)
        else:
            with path.open(encoding="utf-8-sig") as f:  # "-sig": a byte-order mark is skipped
                header = [h.strip() for h in f.readline().split(",")]
            twice = [name for name, count in Counter(header).items() if count > 1]
            if twice:
                raise ValueError(f"names the column {twice[0]!r} twice; name each once")
            missing = [name for name in inputs if name not in header]
            if missing:
                raise ValueError(f"has no column {missing[0]!r}; the header must name the "
                                 f"inputs {', '.join(inputs)}")
            extra = [name for name in header if name not in (*inputs, *outputs)]
            if extra:
                raise ValueError(f"has a column {extra[0]!r} the network does not read; the "
                                 f"header names the inputs {', '.join(inputs)} (and may "
                                 f"name the outputs {', '.join(outputs)}, which are ignored)")
            with warnings.catch_warnings():  # "input contained no data": said below
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            if table.size == 0:
                raise ValueError("has no rows under its header")
            if table.shape[1] != len(header):
                raise ValueError(f"has rows of {table.shape[1]} values under a header of "
                                 f"{len(header)}")
            points = table[:, [header.index(name) for name in inputs]]
        points = np.asarray(points, dtype=np.float64)
    except (ValueError, TypeError, OSError) as err:
        raise ValueError(f"--points: {str(path)!r} {err}") from None
    if points.ndim != 2 or points.shape[1] != len(inputs) or len(points) == 0:
        raise ValueError(f"--points: {str(path)!r}: need shape (n, {len(inputs)}), n >= 1, "
                         f"with columns {', '.join(inputs)}; got {points.shape}")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if len(bad):
        raise ValueError(f"--points: {str(path)!r}: row(s) {bad[:5].tolist()} hold a NaN or "
                         "infinite value; every coordinate must be a finite number")
    return points
