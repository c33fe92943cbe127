"""The field data model: xarray Datasets stored as HDF5 (netCDF4 flavour, via h5netcdf).

One model for every field dataset:

* dims ``sample``, ``time``, ``x``, ``y``, ``z`` (those that apply), in that order, for every
  field of every output (:func:`with_cf_metadata` puts them so);
* a coordinate for every dim (cell centres for space, model time for ``time``, the sample's
  number ``j`` for ``sample``: a generated sample draws from ``default_rng([seed, j])``) and
  per-sample coordinates for swept parameters (``nu(sample)``);
* one data variable per field (``u``);
* CF ``long_name`` and ``units`` attributes on every variable and coordinate (UDUNITS
  spellings: ``s``, ``m``, ``m2 s-1``; ``1`` for dimensionless numbers and labels);
* attrs: the PDE and its equation, every physical parameter, the solver, scheme and grid,
  the seed, the physml version and the generating spec (YAML text).

Files open with ``xarray.open_dataset`` and with plain ``h5py`` (variables are HDF5 datasets
of the same name). Fields with a ``sample`` dim are chunked one sample per chunk and
compressed (gzip level 4 with shuffle), so reading one sample reads one chunk. Every write goes
to a hidden temporary name in the target folder and is renamed when complete.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray, H5netcdfBackendEntrypoint
from xarray.core import indexing

from ..solvers.grid import Grid
from .atomic_files import atomic_write

AXES = ("x", "y", "z")
FIELD_DIMS = ("sample", "time", *AXES)
SHARD_GLOB = "shard-*.h5"
SPLITS = ("train", "valid", "test")
MANIFEST = "dataset.json"
"""The manifest ``physml datasets generate`` writes last: its presence means complete."""

CF_METADATA: dict[str, tuple[str, str]] = {
    "sample": ("sample number j: its random draws come from numpy.random.default_rng([seed, "
               "j]), seed the file's attribute", "1"),
    "time": ("model time", "s"),
    "x": ("x coordinate of the cell centre", "m"),
    "y": ("y coordinate of the cell centre", "m"),
    "z": ("z coordinate of the cell centre", "m"),
    "u": ("solution u", "1"),
    "scheme": ("time-stepping scheme", "1"),
    "nu": ("viscosity or diffusivity nu", "m2 s-1"),
    "rho": ("reaction rate rho", "s-1"),
    "beta": ("advection velocity beta", "m s-1"),
    "D": ("effective diffusion coefficient D", "m2 s-1"),
    "forcing": ("forcing amplitude A", "s-2"),
}
"""``(long_name, units)`` of the names physml writes; ``solver_<name>`` is ``<name>`` in the
solver's convention (PDEBench's Burgers ``nu`` is the solver's ``nu * pi``: see
:func:`scaled_parameter_metadata`)."""

SOLVER_PREFIX = "solver_"


def scaled_parameter_metadata(scale: Mapping[str, float]) -> dict[str, tuple[str, str]]:
    """``{name: (long_name, units)}`` of parameters stated in another convention than the
    solver's, ``solver_<name> = factor * name`` for each ``{name: factor}`` of ``scale`` (a
    problem's :attr:`~physml.datasets.problems.Problem.scale`: PDEBench's Burgers ``nu`` is pi
    times the viscosity ``solver_nu``), for :func:`with_cf_metadata`'s ``metadata``."""
    return {name: (f"parameter {name} of the equation; the {CF_METADATA[name][0]} is "
                   f"{SOLVER_PREFIX}{name} = {name} / {1 / factor:.6g}", CF_METADATA[name][1])
            for name, factor in scale.items()}


def _cf_pair(name: str, extra: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    if name in extra:
        return extra[name]
    if name in CF_METADATA:
        return CF_METADATA[name]
    base = name.removeprefix(SOLVER_PREFIX)
    if base != name and base in CF_METADATA:
        long_name, units = CF_METADATA[base]
        return f"{long_name} as the solver uses it", units
    return None


def with_cf_metadata(
    ds: xr.Dataset, metadata: Mapping[str, tuple[str, str]] | None = None
) -> xr.Dataset:
    """``ds`` with every field's dims in the order ``(sample, time, x, y, z)`` (those present;
    any other dims follow) and CF ``long_name``/``units`` on every variable and coordinate.

    Args:
        ds: any field dataset.
        metadata: ``{name: (long_name, units)}`` for names beyond :data:`CF_METADATA`, or to
            override it (units in UDUNITS spelling, ``"1"`` when dimensionless). A variable
            that already has both attributes keeps them.

    Raises:
        ValueError: a variable or coordinate has no metadata here, in ``metadata`` or in its
            own attributes (the message names it).
    """
    out = ds.copy()
    for name in out.data_vars:
        out[name] = out[name].transpose(*FIELD_DIMS, ..., missing_dims="ignore")
    missing = []
    for name, variable in out.variables.items():
        if {"long_name", "units"} <= set(variable.attrs):
            continue
        pair = _cf_pair(str(name), metadata or {})
        if pair is None:
            missing.append(str(name))
            continue
        variable.attrs.update(long_name=pair[0], units=pair[1])
    if missing:
        raise ValueError(
            f"no CF long_name/units for {', '.join(map(repr, missing))}; pass them as "
            "metadata={name: (long_name, units)}"
        )
    return out


def _coords(grid: Grid, times: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    coords = {"time": ("time", np.asarray(times, dtype=np.float64))}
    for axis in range(grid.ndim):
        coords[AXES[axis]] = (AXES[axis], grid.coords(axis))
    return coords


def _vector(value: Any, name: str, each: str) -> np.ndarray:
    """``value`` as a 1-D array, one entry per ``each``; a ValueError names ``name`` otherwise."""
    array = np.asarray(value)
    if value is None or array.ndim != 1:
        raise ValueError(f"{name} is {'None' if value is None else f'of shape {array.shape}'}; "
                         f"expected a 1-D array, one entry per {each}")
    return array


def _shaped(value: Any, name: str, counts: Mapping[str, tuple[str, int]],
            space: tuple[int, ...] = (), advice: str = "") -> np.ndarray:
    """``value`` as an array of shape ``(*counts' sizes, *space)``, ``counts`` ``{count: (where
    it comes from, size)}`` (e.g. ``{"n_times": ("len(times)", 3)}``); a ValueError names
    ``name``, the shape given and the shape expected, followed by ``advice``, otherwise."""
    array = np.asarray(value)
    if array.shape != (*(size for _, size in counts.values()), *space):
        axes = [*counts, *map(str, space)]
        raise ValueError(f"{name} has shape {array.shape}; expected ({', '.join(axes)}"
                         f"{',' if len(axes) == 1 else ''}) with "
                         + ", ".join(f"{count} = {where} = {size}"
                                     for count, (where, size) in counts.items()) + advice)
    return array


def _checked_times(grid: Any, times: Any) -> np.ndarray:
    """``times`` as a float64 vector (n_times,), after refusing a ``grid`` that is not a
    :class:`Grid` or ``times`` that is not a 1-D array."""
    if not isinstance(grid, Grid):
        raise ValueError(f"grid is a {type(grid).__name__}; expected a physml.solvers.Grid")
    times = _vector(times, "times", "saved state").astype(np.float64)
    if not (np.isfinite(times).all() and np.all(np.diff(times) > 0)):
        raise ValueError(f"times must be finite and increasing, one per saved state; got "
                         f"{times[:6].tolist()}{' ...' if len(times) > 6 else ''}")
    return times


def _seeds(value: Any) -> np.ndarray:
    """``value`` as distinct int64 seeds (n_samples,): a sample's seed is its coordinate."""
    seeds = _vector(value, "seeds", "sample")
    if not (seeds.dtype.kind in "iu" or (seeds.dtype.kind == "f" and np.isfinite(seeds).all()
                                          and np.all(seeds == np.round(seeds)))):
        raise ValueError(f"seeds must be whole numbers, one per sample; got "
                         f"{seeds[:6].tolist()}{' ...' if len(seeds) > 6 else ''}")
    seeds = seeds.astype(np.int64)
    if len(np.unique(seeds)) != len(seeds):
        raise ValueError("seeds repeat; each sample's seed is its coordinate, so they must be "
                         "distinct")
    return seeds


def _attr(value: Any) -> Any:
    """``value`` (a number, string or flat list of them) as an attribute that h5netcdf writes
    and both xarray engines (h5netcdf, netCDF4) read back: bools (Python's or NumPy's) as 0/1,
    NumPy strings as ``str``, a list of strings as a list of ``str`` (a variable-length string
    array, read back as a list), any other list as an array. As netCDF readers do, xarray reads
    a list of one element back as that element."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, tuple | list | np.ndarray):
        array = np.asarray(value)
        if array.dtype.kind in "US":
            return [str(item) for item in array.tolist()]
        return array.astype(np.int64) if array.dtype.kind == "b" else array
    return value


def trajectory_dataset(
    states: np.ndarray,
    times: np.ndarray,
    grid: Grid,
    name: str = "u",
    attrs: dict[str, Any] | None = None,
    metadata: Mapping[str, tuple[str, str]] | None = None,
) -> xr.Dataset:
    """One trajectory: variable ``name`` of dims ``(time, x[, y[, z]])``.

    Args:
        states: shape ``(n_times, *grid.shape)``.
        times: model times [s], shape ``(n_times,)``.
        grid: the grid the states live on.
        name: the variable's name, not a coordinate's (``time``, ``x``, ...); a name beyond
            :data:`CF_METADATA` needs its entry in ``metadata``.
        attrs: metadata (numbers, strings or flat lists of them).
        metadata: CF ``(long_name, units)`` of names beyond :data:`CF_METADATA`.

    Raises:
        ValueError: ``grid`` is not a :class:`Grid`, ``times`` not 1-D, or ``states`` not of
            shape ``(len(times), *grid.shape)`` (the message names the shapes).
    """
    times = _checked_times(grid, times)
    states = _shaped(states, "states", {"n_times": ("len(times)", len(times))}, grid.shape,
                     "; for a batch use samples_dataset")
    dims = ("time", *AXES[: grid.ndim])
    ds = xr.Dataset({name: (dims, states)}, coords=_coords(grid, times))
    ds.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
    return with_cf_metadata(ds, metadata)


def in_storage_dtype(values: np.ndarray, dtype: str, where: str) -> np.ndarray:
    """``values`` cast to a spec's ``storage_dtype``, refusing finite values that dtype cannot
    hold (float32 beyond 3.4e38 would be stored as inf without a word), whatever NaN or inf
    the rest of ``values`` holds (those are stored as they are).

    Raises:
        ValueError: naming ``where`` (the shard), the largest such value and the cure.
    """
    with np.errstate(over="ignore"):  # told below, with the cure
        stored = values.astype(dtype)
    overflow = np.isfinite(values) & ~np.isfinite(stored)
    if overflow.any():
        largest = float(np.abs(values[overflow]).max())
        raise ValueError(f"{where}: the solution reaches {largest:.3g}, "
                         f"beyond the range of storage_dtype {dtype} "
                         f"({float(np.finfo(dtype).max):.3g}); set storage_dtype: float64")
    return stored


def samples_dataset(
    states: np.ndarray,
    times: np.ndarray,
    grid: Grid,
    seeds: np.ndarray,
    sample_coords: dict[str, np.ndarray] | None = None,
    name: str = "u",
    attrs: dict[str, Any] | None = None,
    metadata: Mapping[str, tuple[str, str]] | None = None,
) -> xr.Dataset:
    """Many trajectories: variable ``name`` of dims ``(sample, time, x[, y[, z]])``.

    Args:
        states: shape ``(n_samples, n_times, *grid.shape)``.
        times: model times [s], shape ``(n_times,)``.
        grid: the grid.
        seeds: the number of each sample, shape ``(n_samples,)``: the ``sample`` coordinate
            (a generated dataset's sample ``j`` draws from ``default_rng([seed, j])``).
        sample_coords: further per-sample coordinates (e.g. swept parameters).
        name: the variable's name, not a coordinate's (``sample``, ``time``, ``x``, ...); a
            name beyond :data:`CF_METADATA` needs its entry in ``metadata``.
        attrs: metadata.
        metadata: CF ``(long_name, units)`` of names beyond :data:`CF_METADATA`.

    Raises:
        ValueError: ``grid`` is not a :class:`Grid`, ``times`` or ``seeds`` not 1-D, ``states``
            not of shape ``(len(seeds), len(times), *grid.shape)`` or a ``sample_coords`` entry
            not of shape ``(len(seeds),)`` (the message names the shapes).
    """
    times = _checked_times(grid, times)
    seeds = _seeds(seeds)
    n_samples = {"n_samples": ("len(seeds)", len(seeds))}
    states = _shaped(states, "states", {**n_samples, "n_times": ("len(times)", len(times))},
                     grid.shape)
    dims = ("sample", "time", *AXES[: grid.ndim])
    coords: dict[str, Any] = {"sample": ("sample", seeds)}
    coords.update(_coords(grid, times))
    for key, values in (sample_coords or {}).items():
        coords[key] = ("sample", _shaped(values, f"sample_coords[{key!r}]", n_samples))
    ds = xr.Dataset({name: (dims, states)}, coords=coords)
    ds.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
    return with_cf_metadata(ds, metadata)


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.dims and var.dims[0] == "sample":
            chunks = (1, *var.shape[1:])
            encoding[name] = {"chunksizes": chunks, "zlib": True, "complevel": 4, "shuffle": True}
    return encoding


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` as HDF5 with :func:`atomic_write`.

    Raises:
        ValueError: ``ds`` is not an :class:`xarray.Dataset`, ``path`` is a folder, or the
            folder of ``path`` does not exist.
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds is a {type(ds).__name__}; expected an xarray.Dataset (from "
                         "trajectory_dataset, samples_dataset or mesh_dataset)")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give the path of the file to write "
                         f"(e.g. {str(path / 'data.h5')!r})")
    if not path.parent.is_dir():
        raise ValueError(f"output folder {str(path.parent)!r} does not exist")
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf",
                                                       encoding=_encoding(ds)))


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The complete shard files of a folder, in order (temporary files are hidden)."""
    return sorted(Path(folder).glob(SHARD_GLOB))


def dataset_shards(path: str | os.PathLike, split: str | None,
                   allow_partial: bool = False) -> list[Path]:
    """The field files to read for ``split`` of ``path``: :func:`checked_shards`, refused when
    they hold linear systems or, unless one generation's manifest lists them, do not belong
    together (:func:`_of_one_grid`: about 1 ms a shard). ``allow_partial`` reads the shards of
    a generation that has not finished (no manifest yet) instead of refusing them.

    Raises:
        ValueError: see :func:`checked_shards`; or the shards hold linear systems, not fields;
            or two shards differ in PDE, grid, saved times or per-sample parameters; or a file
            read is not HDF5, or damaged or truncated (:func:`open_hdf5`).
    """
    files = _fields_only(checked_shards(path, split, allow_partial))
    listed = bool(split) and (Path(path) / MANIFEST).is_file()
    return files if listed else _of_one_grid(files)


def checked_shards(path: str | os.PathLike, split: str | None,
                   allow_partial: bool = False) -> list[Path]:
    """The files to read for ``split`` of ``path``: the file itself, the shards of a folder
    without splits (``split`` None or ""), or those of a split of a generated dataset, checked
    against its manifest.

    Raises:
        ValueError: ``path`` does not exist; ``split`` is not a split; the dataset is
            incomplete (a ``spec.yaml`` and no manifest: generation was interrupted;
            ``allow_partial`` reads it anyway) or lacks a shard its manifest lists; the split
            holds no samples; or no shards (for a dataset with splits and no ``split``, the
            message names the splits to pass).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist (a dataset file or folder is needed)")
    if not split:
        files = shard_files(path)
        if not files:
            raise ValueError(f"no shard files ({SHARD_GLOB}) in {str(path)!r}"
                             f"{_split_hint(path)}")
        return files
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    files = shard_files(path / split)
    manifest = path / MANIFEST
    if manifest.is_file():
        listed = json.loads(manifest.read_text(encoding="utf-8"))["splits"].get(split, [])
        missing = sorted(set(listed) - {f.name for f in files})
        if missing:
            raise ValueError(f"{str(path)!r}: {len(missing)} shard(s) of the {split} split its "
                             f"{MANIFEST} lists are missing ({', '.join(missing[:3])}"
                             f"{', ...' if len(missing) > 3 else ''})")
        if not listed:
            raise ValueError(f"the {split} split of {str(path)!r} holds no samples (its "
                             "fraction of the spec's samples rounds to 0: see splits in "
                             "spec.yaml)")
        return [path / split / name for name in listed]
    if (path / "spec.yaml").is_file() and not allow_partial:
        raise ValueError(f"{str(path)!r} holds an incomplete dataset (no {MANIFEST}: its "
                         "generation was interrupted); run the same `physml datasets "
                         "generate` again to finish it, or pass allow_partial=True")
    if not files:
        raise ValueError(f"no shard files ({SHARD_GLOB}) in {str(path / split)!r}")
    return files


def _split_hint(path: Path) -> str:
    """For a folder with split subfolders (a generated dataset), which split to pass."""
    present = [name for name in SPLITS if (path / name).is_dir()]
    if not present:
        return ""
    return f"; it is a dataset with splits: pass split= one of {', '.join(present)}"


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """``h5py.File(path, "r")``, refusing a file HDF5 cannot open with a message naming it.

    Raises:
        ValueError: ``path`` is not an HDF5 file, or a damaged or truncated one (for a shard
            of a generated dataset, the message says how to write it again).
    """
    try:
        return h5py.File(path, "r")
    except OSError as err:
        if err.errno is not None:  # the system's error (permissions, ...) names the file
            raise
        path = Path(path)
        reason = str(err).partition("(")[2].removesuffix(")") or str(err)
        what = ("a damaged or truncated HDF5 file" if h5py.is_hdf5(path)
                else "not an HDF5 file")
        raise ValueError(f"{str(path)!r} is {what} ({reason}){_rewrite_hint(path)}") from None


def unreadable_data(path: str | os.PathLike, err: OSError) -> ValueError:
    """The error for data of the HDF5 file ``path`` that HDF5 failed to read (``err``, such as
    a chunk that does not decompress: the file opens, as its header is whole, and its other
    chunks read), naming the file and, for a shard of a generated dataset, how to write it
    again (a resume, which checks that a shard opens and holds its samples, keeps it: it is
    deleted first)."""
    path = Path(path)
    reason = str(err).partition("(")[2].removesuffix(")") or str(err)
    return ValueError(f"{str(path)!r} is damaged: HDF5 cannot read its data ({reason})"
                      f"{_rewrite_hint(path, opens=True)}")


def _rewrite_hint(path: Path, opens: bool = False) -> str:
    """For a shard of a generated dataset, how to write it again (``opens``: the shard opens
    and its data are damaged, which a resume does not see: it is deleted first)."""
    folder = path.parent.parent
    if not (path.match(SHARD_GLOB) and path.parent.name in SPLITS
            and (folder / "spec.yaml").is_file()):
        return ""
    written = "the missing shard" if opens else "damaged shards again"
    again = (f"run `physml datasets generate {str(folder / 'spec.yaml')!r} --out "
             f"{str(folder)!r}` again: it writes {written} and keeps the others")
    delete = [repr(str(path))] if opens else []
    if (folder / MANIFEST).is_file():
        delete.append(f"{str(folder / MANIFEST)!r} (the mark of a complete dataset)")
    return f"; delete {' and '.join(delete)} and {again}" if delete else f"; {again}"


def pdebench_layout(f: h5py.File) -> bool:
    """Whether an open file is in one of PDEBench's layouts (:mod:`physml.datasets.pdebench`:
    a ``tensor`` or a ``t-coordinate`` dataset, or seed groups holding ``data``), which has no
    netCDF dims, rather than in the field data model."""
    first = next(iter(f), None)
    return ("tensor" in f or "t-coordinate" in f
            or (isinstance(f.get(first), h5py.Group) and "data" in f[first]))


def _fields_only(files: list[Path]) -> list[Path]:
    """``files``, refused when they hold linear systems (sparse matrices of different sizes do
    not join on ``sample``: :func:`physml.datasets.linear_systems.read_systems` reads them)."""
    with open_hdf5(files[0]) as first:
        if "indptr" in first:
            raise ValueError(f"{str(files[0].parent)!r} holds linear systems; read them with "
                             "physml.datasets.linear_systems.read_systems(folder / split)")
    return files


def per_sample_coordinates(f: h5py.File) -> list[str]:
    """The names of the per-sample coordinates of an open field file (swept parameters, the
    scheme: 1-D datasets along the ``sample`` dimension, the seeds ``sample`` not among them),
    sorted."""
    return sorted(name for name, item in f.items()
                  if isinstance(item, h5py.Dataset) and item.ndim == 1
                  and [scale.name for scale in item.dims[0].values()] == ["/sample"])


def _outline(file: Path) -> dict[str, Any]:
    """What the shards of one dataset share: the ``pde`` attr, the coordinates of time and
    space, and the names of the per-sample coordinates (swept parameters). Attributes and
    coordinates only: no field is read."""
    with open_hdf5(file) as f:
        return {"pde": f.attrs.get("pde"),
                "coords": {name: f[name][...] for name in ("time", *AXES) if name in f},
                "per_sample": per_sample_coordinates(f)}


def _difference(mine: dict[str, Any], theirs: dict[str, Any], other: str) -> str | None:
    """How outline ``mine`` differs from ``theirs`` (shard ``other``'s), or None."""
    if mine["pde"] != theirs["pde"]:
        return f"pde {mine['pde']!r}, shard {other} {theirs['pde']!r}"
    if list(mine["coords"]) != list(theirs["coords"]):
        return (f"coordinates {', '.join(mine['coords'])}, shard {other} "
                f"{', '.join(theirs['coords'])}")
    for name, values in mine["coords"].items():
        given = theirs["coords"][name]
        if values.size != given.size:
            what = "saved times" if name == "time" else f"{name} cells"
            return f"{values.size} {what}, shard {other} {given.size}"
        if not np.array_equal(values, given):
            return (f"{name} from {values[0]:.6g} to {values[-1]:.6g}, shard {other} from "
                    f"{given[0]:.6g} to {given[-1]:.6g}")
    if mine["per_sample"] != theirs["per_sample"]:
        return (f"per-sample coordinates ({', '.join(mine['per_sample'])}), shard {other} "
                f"({', '.join(theirs['per_sample'])})")
    return None


def _of_one_grid(files: list[Path]) -> list[Path]:
    """``files``, refused when two of them differ in PDE, grid (axes, sizes or coordinates),
    saved times or per-sample coordinates (shards pooled from other generations: joined, they
    would be padded with NaN or mix trajectories of other steps and grids).

    Raises:
        ValueError: naming the two shards and what differs.
    """
    if len(files) == 1:
        return files  # nothing to compare, nothing to read
    first = _outline(files[0])
    for file in files[1:]:
        difference = _difference(_outline(file), first, files[0].name)
        if difference:
            raise ValueError(f"{str(file.parent)!r}: shard {file.name} has {difference}: a "
                             "dataset's shards share one PDE, grid, time axis and set of "
                             "per-sample parameters")
    return files


def open_dataset(path: str | os.PathLike, split: str | None = None,
                 allow_partial: bool = False) -> xr.Dataset:
    """Open a field dataset: one file, or a generated dataset folder joined lazily.

    Args:
        path: an HDF5 file, or a folder written by ``physml datasets generate``.
        split: for a folder, the split to open ("train", "valid", "test"); None opens the
            folder's own shards (a folder of shards without splits).
        allow_partial: open a dataset whose generation has not finished (no manifest).

    Raises:
        ValueError: see :func:`dataset_shards` (linear systems included: read them with
            :func:`physml.datasets.linear_systems.read_systems`); a file in a PDEBench layout
            (read it with :func:`physml.datasets.pdebench.read_pdebench`); or a file that is
            not HDF5, or damaged or truncated (see :func:`open_hdf5`); or a shard's data
            variables differ from the first shard's (:func:`_alike_fields`). Reading values
            (``.values``, ``.load()``, ``.compute()``) that HDF5 cannot read, such as a chunk
            that does not decompress, raises :func:`unreadable_data`'s error, naming the shard
            and how to write it again.

    A folder's shards (of one PDE, grid, time axis, set of per-sample parameters and set of
    fields, by name, dims and dtype: others are refused) are concatenated along ``sample``
    and keep only the attrs all of them agree on (a value that differs between shards is per
    sample, never a dataset's). With Dask installed this is lazy (``xarray.open_mfdataset``:
    nothing is read until values are used; a forked process, such as a ``DataLoader`` worker,
    makes its own pools of Dask's threaded scheduler, as the parent's have no threads in it),
    otherwise the shards are read into memory. Reading one sample at a time costs a Dask
    graph per item (100 to 200 samples of 201 x 1024 values a second, several times slower
    than h5py): for training loops, :class:`physml.data.FieldDataset` reads the same samples,
    in the same order, at the speed of plain h5py.
    """
    files = dataset_shards(path, split, allow_partial)
    with open_hdf5(files[0]) as first:
        if pdebench_layout(first):
            raise ValueError(f"{str(files[0])!r} is in a PDEBench layout, not the field data "
                             "model (its arrays have no named dims): read it with "
                             f"physml.io.read_pdebench({str(files[0])!r})")
    try:
        return _joined(files, Path(path).is_file())
    except OSError:  # name the shard HDF5 cannot open, if one is at fault
        for file in files:
            open_hdf5(file).close()
        raise


def _fresh_dask_pools() -> None:
    """Forget, in a forked child, the thread pools of Dask's threaded scheduler (if Dask is
    imported): they were made in the parent and their threads do not exist in the child, so a
    lazy read there (a forked ``DataLoader`` worker reading :func:`open_dataset`'s arrays after
    the parent read a value) would wait for ever. The child makes its own on first use."""
    threaded = sys.modules.get("dask.threaded")
    if threaded is not None:
        threaded.default_pool = None
        threaded.pools.clear()
        threaded.pools_lock = threading.Lock()  # a parent's thread may have held it


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_fresh_dask_pools)


def _alike_fields() -> Callable[[xr.Dataset], xr.Dataset]:
    """A check of each shard as it is opened, in order (``xarray.open_mfdataset``'s
    ``preprocess``): the shard unchanged, refused when its data variables differ from the first
    shard's in name, dims or dtype (joined, a field one shard lacks would be padded with NaN
    there, and one it adds would be NaN in every other shard). It reads no field and opens no
    file of its own, so shards a manifest lists are checked too.

    Raises:
        ValueError: naming the shard, the first shard and the data variables of both.
    """
    first: list[tuple[Path, dict[str, tuple]]] = []

    def check(ds: xr.Dataset) -> xr.Dataset:
        shard = Path(ds.encoding["source"])
        fields = {str(name): (var.dims, var.dtype) for name, var in ds.data_vars.items()}
        if not first:
            first.append((shard, fields))
        elif fields != first[0][1]:
            raise ValueError(f"{str(shard.parent)!r}: shard {shard.name} has data variables "
                             f"{_described(fields)}, shard {first[0][0].name} "
                             f"{_described(first[0][1])}: a dataset's shards hold the same "
                             "fields")
        return ds

    return check


def _described(fields: Mapping[str, tuple]) -> str:
    """``u(sample, time, x) float32, ...``: data variables by name, dims and dtype."""
    return ", ".join(f"{name}({', '.join(map(str, dims))}) {dtype}"
                     for name, (dims, dtype) in fields.items()) or "none"


class _ShardArray(BackendArray):
    """A variable of the HDF5 file ``path``, ``array`` as h5netcdf's backend reads it lazily,
    whose reads name the file and how to write it again when HDF5 fails
    (:func:`unreadable_data`: a chunk that does not decompress)."""

    def __init__(self, path: Path, array: Any):
        self.path, self.array = path, array
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        try:
            return np.asarray(indexing.apply_indexer(self.array, key))
        except OSError as err:
            if err.errno is not None:  # the system's error (a file gone, ...)
                raise
            raise unreadable_data(self.path, err) from None


class _ShardBackend(H5netcdfBackendEntrypoint):
    """h5netcdf's backend (``engine=`` of ``xarray.open_dataset``), each variable it leaves on
    disk (all but strings, which it reads) read through a :class:`_ShardArray` of the file."""

    def open_dataset(self, filename_or_obj: Any, **kwargs: Any) -> xr.Dataset:
        ds = super().open_dataset(filename_or_obj, **kwargs)
        path = Path(filename_or_obj)
        for variable in ds.variables.values():
            if not variable._in_memory:
                variable.data = indexing.LazilyIndexedArray(_ShardArray(path, variable._data))
        return ds


def _joined(files: list[Path], one_file: bool) -> xr.Dataset:
    """:func:`open_dataset`'s dataset of checked ``files`` (of ``one_file``, or shards)."""
    if one_file:
        return xr.open_dataset(files[0], engine=_ShardBackend)
    check = _alike_fields()
    try:
        import dask  # noqa: F401
    except ImportError:
        parts = [check(xr.open_dataset(f, engine=_ShardBackend)).load() for f in files]
        return xr.concat(
            parts,
            dim="sample",
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="exact",
            combine_attrs="drop_conflicts",
        )
    return xr.open_mfdataset(
        files,
        engine=_ShardBackend,
        combine="nested",
        concat_dim="sample",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="drop_conflicts",
        parallel=False,
        preprocess=check,
    )
