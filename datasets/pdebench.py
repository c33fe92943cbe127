"""PDEBench's HDF5 layouts, read and written, so data moves both ways.

* Stacked (1D advection, Burgers, diffusion–reaction): a dataset ``tensor`` of shape
  ``[N, T, X]``, datasets ``x-coordinate`` and ``t-coordinate``, and parameters as file
  attributes (``beta``, ``Nu``, ``rho``). ``t-coordinate`` may hold ``T + 1`` entries
  (PDEBench's generators append one); the first ``T`` are the times of the saved states.
  A file :func:`write_pdebench` wrote also holds the samples' numbers, a dataset ``sample``
  [N] (``seed`` in files physml wrote before) that PDEBench's loaders, which read their
  datasets by name, never open.
  (PDEBench's loaders read a 4-D ``tensor`` as steady Darcy flow, ``[N, 1, X, Y]`` with a
  ``nu`` dataset and no time: not a time-dependent layout.)
* Stacked fields (compressible Navier–Stokes, 1D/2D/3D CFD): datasets ``density``,
  ``pressure``, ``Vx`` (``Vy``, ``Vz``) of shape ``[N, T, X(, Y, Z)]``, the
  ``<axis>-coordinate`` datasets and ``t-coordinate`` as above, and parameters as file
  attributes (``eta``, ``zeta``, ``M``).
* Per-seed groups (diffusion–sorption, 2D diffusion–reaction, shallow water, ...): groups
  ``0000``, ``0001``, ... each holding ``data`` of shape ``[T, X(, Y), C]`` and ``grid/x``
  (``grid/y``), ``grid/t``, and a ``config`` attribute: the YAML of the generator's
  configuration, with the sample's parameters and seed (on the group, or on the file as
  ``"0000/config"``).

All read into the field data model of :mod:`physml.datasets.store`: variable ``u(sample,
time, x[, y[, z]])`` (a trailing channel axis of size 1 is dropped; more channels become
``u0, u1, ...``), or one variable per stacked field under its own name (``density(sample,
time, x[, y[, z]])``, ...). A per-seed ``config`` becomes per-sample coordinates: ``config``
(the YAML text) and one coordinate per number, boolean or string in it present in every
group, named by its key (``seed``, ``dam_radius``, ``scheme``, ...), or ``config.<dotted
path>`` where two keys share a name or the key is already a name of the dataset
(``config.sim.x``). Not read: PDEBench's 2D incompressible Navier–Stokes files
(``velocity``, ``particles``, ``force``, ``t``) and its steady Darcy flow.

PDEBench's data are non-dimensional: fields, coordinates and parameters read from a file get
the CF units ``"1"``, and time and space their usual long names.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import xarray as xr
import yaml

from .atomic_files import atomic_write
from .memory import check_fits_in_memory
from .store import AXES, CF_METADATA, open_hdf5, with_cf_metadata

NON_DIMENSIONAL = {
    "sample": ("sample (its number, seed group number or index)", "1"),
    "time": ("model time", "1"),
    **{axis: (f"{axis} coordinate", "1") for axis in AXES},
}

SAMPLES = "sample"
"""The dataset of a stacked file that holds its samples' numbers [N] (int64: the ``sample``
coordinate; sample ``j`` of a generated dataset draws from ``default_rng([seed, j])``, ``seed``
the file's attribute): physml's, not PDEBench's, whose loaders read ``tensor`` and the
coordinates by name and never open it."""

FORMER_SAMPLES = "seed"
"""The name of :data:`SAMPLES` in the stacked files physml wrote before, read alike."""


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _attrs(h5obj, skip: set[str] = frozenset()) -> dict:
    return {k: _text(v) for k, v in h5obj.attrs.items() if k not in skip}


def _scalars(tree, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], float | int | str]:
    """The numeric, boolean and string leaves of a nested mapping, by key path."""
    if isinstance(tree, dict):
        leaves = {}
        for key, value in tree.items():
            leaves.update(_scalars(value, (*path, str(key))))
        return leaves
    if isinstance(tree, bool | int | float | str) and path:
        return {path: tree}
    return {}


CONFIG_DEPTH = 32
"""Most levels of nesting a seed group's ``config`` YAML may have (PDEBench's generator
configurations nest a few)."""

CONFIG_VALUES = 1000
"""Most scalars (keys and values) a seed group's ``config`` YAML may hold (PDEBench's hold some
tens); each number in a mapping becomes a coordinate of the dataset (500 take a second)."""


class _ConfigRefused(Exception):
    """A ``config`` YAML that is not read: why, to be prefixed with the file and attribute."""


class _ConfigLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that refuses aliases (``*name``, which can repeat a mapping
    that repeats a mapping ..., so that a few hundred characters hold millions of values),
    nesting deeper than :data:`CONFIG_DEPTH` and more than :data:`CONFIG_VALUES` scalars, as
    each is met while composing, before the document is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0
        self.scalars = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _ConfigRefused("uses a YAML alias (*name); a configuration is read without "
                                 "aliases: write the values out")
        if self.check_event(yaml.ScalarEvent):
            self.scalars += 1
            if self.scalars > CONFIG_VALUES:
                raise _ConfigRefused(f"holds more than {CONFIG_VALUES:,} values (keys "
                                     "included); a configuration is read up to that many")
        self.depth += 1
        try:
            if self.depth > CONFIG_DEPTH:
                raise _ConfigRefused(f"nests deeper than {CONFIG_DEPTH} levels; a "
                                     "configuration is read up to that depth")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _parse(text: str, where: str):
    """The YAML ``text`` (``where``: the file and attribute it comes from, for messages); None
    where it is no YAML.

    Raises:
        ValueError: ``text`` uses an alias, nests deeper than :data:`CONFIG_DEPTH` or holds
            more than :data:`CONFIG_VALUES` scalars (:class:`_ConfigLoader`), naming ``where``.
    """
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError:
        return None
    except _ConfigRefused as err:
        raise ValueError(f"{where} {err}") from None
    finally:
        loader.dispose()


def _seed_order(name: str) -> tuple[int, int, str]:
    """Sort key of a seed group's name: numeric names by their number (``9999`` before
    ``10000``), then the other names as strings."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _config_coords(file: Path, groups: list[str], configs: list[str],
                   taken: set[str]) -> dict[str, np.ndarray]:
    """Per-sample coordinates from the config YAML texts of the seed groups ``groups`` of
    ``file`` (see the module docstring); a key that is ambiguous or in ``taken`` is named
    ``config.<dotted path>``.

    Raises:
        ValueError: a config that :func:`_parse` refuses, naming the file and the group.
    """
    leaves = [_scalars(_parse(text, f"{str(file)!r}: the 'config' attribute of seed group "
                                    f"{group!r}"))
              for group, text in zip(groups, configs, strict=True)]
    shared = [p for p in leaves[0] if all(p in other for other in leaves[1:])]
    names = Counter(p[-1] for p in shared)
    coords = {"config": np.asarray(configs, dtype=object)}
    for path in shared:
        unique = names[path[-1]] == 1 and path[-1] not in taken | {"config"}
        name = path[-1] if unique else "config." + ".".join(path)
        coords[name] = np.asarray([other[path] for other in leaves])
    return coords


def _channels(data: np.ndarray, ndim: int) -> dict[str, np.ndarray]:
    """The fields of data [N, T, *space(, C)] of ``ndim`` space axes: ``u``, or ``u0, u1,
    ...`` for C > 1 channels (C present when data has one more axis, size 1 dropped)."""
    if data.ndim == ndim + 3 and data.shape[-1] > 1:
        return {f"u{c}": data[..., c] for c in range(data.shape[-1])}
    return {"u": data[..., 0] if data.ndim == ndim + 3 else data}


def _build(
    fields: dict[str, np.ndarray],
    times: np.ndarray,
    coords: list[np.ndarray],
    seeds,
    attrs,
    sample_coords: dict[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """Dataset from ``fields`` ``{name: [N, T, *space]}`` on one grid."""
    dims = ("sample", "time", *AXES[: len(coords)])
    coord_map = {
        "sample": ("sample", np.asarray(seeds, dtype=np.int64)),
        "time": ("time", np.asarray(times, dtype=np.float64)),
    }
    for axis, values in enumerate(coords):
        coord_map[AXES[axis]] = (AXES[axis], np.asarray(values, dtype=np.float64))
    variables = {name: (dims, data) for name, data in fields.items()}
    for name, values in (sample_coords or {}).items():
        coord_map[name] = ("sample", values)
    ds = xr.Dataset(variables, coords=coord_map)
    ds.attrs.update(attrs)
    metadata = {
        name: (CF_METADATA.get(name, (f"{name} (PDEBench)",))[0], "1") for name in ds.variables
    }
    metadata.update(NON_DIMENSIONAL)
    metadata["config"] = ("generator configuration of the sample (YAML)", "1")
    return with_cf_metadata(ds, metadata)


def read_pdebench(path: str | os.PathLike) -> xr.Dataset:
    """Read a PDEBench HDF5 file (stacked, stacked fields or per-seed layout: see the module
    docstring) into memory.

    A file :func:`write_pdebench` wrote (its ``pde`` attribute names a PDE of
    :data:`PDEBENCH_NAMES`) gets physml's parameter names back (``Nu`` is read ``nu``), so a
    round trip returns the dataset's names; its values come back as written, in PDEBench's
    float32, and the samples keep their numbers (a stacked file's ``sample`` dataset, or
    ``seed`` in one physml wrote before; seed groups' names); the samples of a stacked file
    without either (PDEBench's own) are numbered 0 ... N - 1. PDEBench's own files (no
    ``pde`` attribute) keep their attributes' names (``Nu``); a parameter found only in the
    file name is not read.

    Raises:
        ValueError: ``path`` is a folder or does not exist, is not HDF5 or is damaged, is in
            none of the layouts read (the message names those read and those not), or its
            datasets do not fit each other or their coordinates, or a coordinate is not a 1-D
            array of numbers (named), its datasets as declared need more than this machine's
            memory (:func:`_check_fits`), or a seed group's ``config`` uses a YAML alias,
            nests deeper than :data:`CONFIG_DEPTH` or holds more than :data:`CONFIG_VALUES`
            values (named with its group).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"PDEBench file {str(path)!r} is a folder; give one of its HDF5 files")
    if not path.is_file():
        raise ValueError(f"PDEBench file {str(path)!r} does not exist")
    with open_hdf5(path) as f:
        if "tensor" in f and "t-coordinate" not in f:
            raise ValueError(f"{str(path)!r} has a 'tensor' and no 't-coordinate' (PDEBench's "
                             "steady Darcy layout, tensor [N, 1, X, Y] with 'nu'): only "
                             "time-dependent layouts are read")
        stacked = [name for name, item in f.items() if isinstance(item, h5py.Dataset)
                   and not name.endswith("-coordinate")
                   and name not in (SAMPLES, FORMER_SAMPLES)]
        if "t-coordinate" in f and stacked:
            _check_fits(path, list(f.values()))
            t, coords = _stacked_coords(path, f, stacked)
            fields = {"u" if name == "tensor" else name: f[name][...] for name in stacked}
            numbers = next((name for name in (SAMPLES, FORMER_SAMPLES) if name in f), None)
            samples = (_coordinate(path, f, numbers) if numbers
                       else np.arange(f[stacked[0]].shape[0]))
            _check_lengths(path, repr(stacked[0]), f[stacked[0]].shape, 0,
                           {numbers or SAMPLES: samples})
            attrs = _attrs(f)
            ours = _physml_names(attrs)
            return _build(fields, t, coords, samples,
                          {ours.get(k, k): v for k, v in attrs.items()})
        groups = sorted((k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k]),
                        key=_seed_order)
        if not groups:
            raise ValueError(f"{str(path)!r} is in none of the PDEBench layouts read here: "
                             "stacked fields with 't-coordinate' ('tensor', or the compressible "
                             "Navier-Stokes 'density', 'pressure', 'Vx', ...) or seed groups "
                             "holding 'data' (PDEBench's 2D incompressible Navier-Stokes "
                             "files, 'velocity' with 't', are not read)")
        grid = f[groups[0]].get("grid", {})
        _check_fits(path, [f[g]["data"] for g in groups] + list(grid.values()), copies=2)
        times, coords = _group_coords(path, f, groups)
        data = np.stack([f[g]["data"][...] for g in groups])
        fields = _channels(data, len(coords))
        seeds = [int(g) if g.isdigit() else i for i, g in enumerate(groups)]
        on_file = {f"{g}/config" for g in groups}
        configs = [_text(f[g].attrs.get("config", f.attrs.get(f"{g}/config"))) for g in groups]
        taken = {"sample", "time", "u", *AXES, *fields}
        sample_coords = _config_coords(path, groups, configs, taken) if all(configs) else None
        attrs = _attrs(f, on_file)
        ours = _physml_names(attrs)
        return _build(fields, times, coords, seeds,
                      {ours.get(k, k): v for k, v in attrs.items()},
                      {ours.get(k, k): v for k, v in (sample_coords or {}).items()})


def _check_fits(path: Path, items: list, copies: int = 1) -> None:
    """Refuse to read the HDF5 datasets among ``items`` (groups are left out) whole,
    ``copies`` times over (a per-seed file's data are read, then stacked), where their
    declared shapes and dtypes need more than this machine's memory
    (:func:`~physml.datasets.memory.check_fits_in_memory`). Checked before anything is read:
    a small file may declare a shape of many GiB (chunks never written read as the fill value).

    Raises:
        ValueError: naming the file, its largest dataset with shape and dtype, and the GiB
            needed against the machine's memory.
    """
    datasets = [item for item in items if isinstance(item, h5py.Dataset)]
    if not datasets:
        return
    sizes = [copies * (d.size or 0) * d.dtype.itemsize for d in datasets]
    largest = datasets[sizes.index(max(sizes))]
    more = f", and {len(datasets) - 1} more dataset(s)" if len(datasets) > 1 else ""
    check_fits_in_memory(sum(sizes), f"reading PDEBench file {str(path)!r} "
                                     f"({largest.name.lstrip('/')!r} of shape {largest.shape}, "
                                     f"{largest.dtype}{more})")


def _stacked_coords(path: Path, f: h5py.File,
                    fields: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The saved times and the space coordinates of a stacked file, checked against its
    ``fields`` (``tensor``, or ``density``, ``Vx``, ...), each [N, T, X(, Y, Z)] of one
    shape: one ``<axis>-coordinate`` per space axis (no channel axis), each as long as its
    axis, and ``T`` or ``T + 1`` entries of ``t-coordinate`` (the first ``T`` kept).

    Raises:
        ValueError: naming the file and the dataset at fault.
    """
    shape = f[fields[0]].shape
    for name in fields[1:]:
        if f[name].shape != shape:
            raise ValueError(f"{str(path)!r}: {name!r} has shape {f[name].shape}, "
                             f"{fields[0]!r} {shape}: a stacked file's fields share one grid")
    space = [f"{a}-coordinate" for a in AXES if f"{a}-coordinate" in f]
    if not space or len(shape) != 2 + len(space):
        raise ValueError(f"{str(path)!r}: {fields[0]!r} of shape {shape} has {len(shape)} "
                         f"axes, and the file {len(space)} space coordinates "
                         f"({', '.join(space) or 'none'}): the stacked layout is 'tensor' "
                         "[N, T, X] with 'x-coordinate' and 't-coordinate' ('y-coordinate' "
                         "and 'z-coordinate' for axes Y, Z; the fields 'density', 'Vx', ... "
                         "of compressible Navier-Stokes files alike)")
    t = _coordinate(path, f, "t-coordinate")
    if len(t) not in (shape[1], shape[1] + 1):
        raise ValueError(f"{str(path)!r}: 't-coordinate' has {len(t)} entries for the "
                         f"{shape[1]} saved states of {fields[0]!r} {shape} (T or T + 1 are "
                         "read)")
    coords = [_coordinate(path, f, name) for name in space]
    _check_lengths(path, repr(fields[0]), shape, 2, dict(zip(space, coords)))
    return t[: shape[1]], coords


def _group_coords(path: Path, f: h5py.File,
                  groups: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The saved times and the space coordinates of seed groups (the first group's
    ``grid``), checked: every group's ``data`` of one shape [T, X(, Y)(, C)], each
    coordinate as long as its axis.

    Raises:
        ValueError: naming the file and the group or dataset at fault.
    """
    first = f[groups[0]]
    if "t" not in first.get("grid", {}):
        raise ValueError(f"{str(path)!r}: seed group {groups[0]!r} has 'data' and no "
                         "'grid/t': a seed group holds 'data' [T, X(, Y), C] and its "
                         "coordinates 'grid/t', 'grid/x'(, 'grid/y')")
    shape = first["data"].shape
    for g in groups[1:]:
        if f[g]["data"].shape != shape:
            raise ValueError(f"{str(path)!r}: seed group {g!r} has 'data' of shape "
                             f"{f[g]['data'].shape}, group {groups[0]!r} {shape}: a file's "
                             "seed groups share one grid")
    space = [f"grid/{a}" for a in AXES if a in first["grid"]]
    if not space or len(shape) not in (len(space) + 1, len(space) + 2):
        raise ValueError(f"{str(path)!r}: 'data' of seed group {groups[0]!r} of shape {shape} "
                         f"does not fit its coordinates ({', '.join(space) or 'none'}): a "
                         "seed group holds 'data' [T, X(, Y), C] and 'grid/t', "
                         "'grid/x'(, 'grid/y')")
    times = _coordinate(path, first, "grid/t")
    coords = [_coordinate(path, first, name) for name in space]
    _check_lengths(path, f"'{groups[0]}/data'", shape, 0,
                   {"grid/t": times} | dict(zip(space, coords)))
    return times, coords


def _coordinate(path: Path, parent: h5py.Group, name: str) -> np.ndarray:
    """Dataset ``name`` of ``parent`` (the file ``path`` or one of its seed groups), read:
    coordinates and sample numbers are 1-D arrays of numbers.

    Raises:
        ValueError: it is a group, not 1-D (a scalar) or not numbers (strings), naming the
            file and the dataset.
    """
    item = parent[name]
    if not isinstance(item, h5py.Dataset):
        what = "a group"
    elif item.ndim != 1:
        what = f"of shape {item.shape}"
    elif item.dtype.kind not in "iuf":
        what = f"of dtype {item.dtype}"
    else:
        return item[...]
    raise ValueError(f"{str(path)!r}: {item.name.lstrip('/')!r} is {what}; expected a 1-D "
                     "array of numbers, one per entry of its axis")


def _check_lengths(path: Path, where: str, shape: tuple[int, ...], start: int,
                   coords: dict[str, np.ndarray]) -> None:
    """Refuse coordinates whose lengths differ from the axes of ``shape`` they label: axes
    ``start``, ``start + 1``, ... in order (``coords`` by their dataset names in the file,
    ``where`` names the data).

    Raises:
        ValueError: naming the file, the coordinate and the data.
    """
    for axis, (name, values) in enumerate(coords.items(), start):
        if len(values) != shape[axis]:
            raise ValueError(f"{str(path)!r}: {name!r} has {len(values)} entries for axis "
                             f"{axis} of {where} {shape}, of length {shape[axis]}")


PDEBENCH_NAMES = {"burgers1d_pdebench": {"nu": "Nu"}, "diffusion_reaction1d": {"nu": "Nu"}}
"""Parameters PDEBench names otherwise, per physml PDE: ``{pde: {physml name: PDEBench's}}``
(the ``nu`` of PDEBench's Burgers problem, ``burgers1d_pdebench``, and of diffusion–reaction
is PDEBench's ``Nu``, in the same convention; the Dirichlet ``burgers1d`` is not PDEBench's)."""

LAYOUTS = ("stacked", "seed_groups")


def _physml_names(attrs: dict) -> dict[str, str]:
    """{PDEBench's name: physml's} for the parameters of the physml PDE a file's ``pde``
    attribute names (empty for PDEBench's own files, which carry no such attribute)."""
    return {theirs: ours for ours, theirs in PDEBENCH_NAMES.get(str(attrs.get("pde")),
                                                                 {}).items()}


def write_pdebench(ds: xr.Dataset, path: str | os.PathLike, variable: str = "u",
                   layout: str | None = None) -> Path:
    """Write ``ds[variable]`` in one of PDEBench's layouts (float32), atomically.

    Args:
        ds: a field dataset (dims ``sample, time, x[, y[, z]]``).
        path: the file to write.
        variable: the field.
        layout: ``"stacked"`` (a ``tensor`` [N, T, X]; 1D only, as PDEBench's loaders read
            a 4-D ``tensor`` as steady Darcy flow) or ``"seed_groups"`` (one group per sample,
            named by its number, ``data`` [T, X(, Y), 1], as PDEBench's 2D and
            diffusion–sorption data); None picks stacked for 1D and seed groups otherwise.

    Stacked: ``t-coordinate`` gets ``T + 1`` entries as PDEBench's generators write them (the
    last one extrapolated by the last step); the samples' numbers (the ``sample`` coordinate)
    go in a dataset ``sample`` [N] (:data:`SAMPLES`, which PDEBench's loaders do not read, and
    :func:`read_pdebench` reads back); the dataset's attrs are copied (a generated dataset's
    ``seed``: sample ``j`` drew from ``default_rng([seed, j])``), and so is every per-sample
    coordinate (a swept parameter, the scheme) as one attr, which this layout allows only when
    it takes one value over the samples written. Seed groups: each group, named by the
    sample's number, has a ``config`` attribute, the YAML of the sample's per-sample
    coordinates (so they may vary; numbers, booleans and strings, which :func:`read_pdebench`
    reads back as coordinates; none where there are none), ``grid/t`` holds the T saved
    times. Parameters take PDEBench's names (:data:`PDEBENCH_NAMES`: Burgers' ``nu`` is
    written ``Nu``).

    Raises:
        ValueError: the folder of ``path`` does not exist, ``variable`` is no data variable
            of ``ds`` (the message names those there are) or no grid field (its dims are not
            ``sample, time, x[, y[, z]]``), an unknown or unfit layout, or (stacked) a
            per-sample coordinate that takes several values (the message names it and how to
            select one), before anything is written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"output folder {str(path.parent)!r} does not exist")
    if variable not in ds.data_vars:
        raise ValueError(f"variable={variable!r} is no variable of the dataset; allowed: "
                         f"{', '.join(map(str, ds.data_vars))}")
    dims = ds[variable].dims
    axes = [a for a in AXES if a in dims]
    if not axes or set(dims) != {"sample", "time", *axes}:
        raise ValueError(f"PDEBench layouts hold grid fields (sample, time, x[, y[, z]]); "
                         f"{variable!r} has dims ({', '.join(map(str, dims))}): a mesh dataset "
                         "(dims with node) or a steady one (no time) has no PDEBench layout")
    layout = layout or ("stacked" if len(axes) == 1 else "seed_groups")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; allowed: {', '.join(LAYOUTS)}")
    if layout == "stacked" and len(axes) != 1:
        raise ValueError(f"layout='stacked' holds 1D fields only ({variable!r} has axes "
                         f"{', '.join(axes)}; PDEBench reads a 4-D tensor as steady Darcy flow): "
                         "use layout='seed_groups'")
    names = PDEBENCH_NAMES.get(str(ds.attrs.get("pde")), {})
    per_sample = {key: coord.values for key, coord in ds.coords.items()  # a read-back
                  if coord.dims == ("sample",) and key not in ("sample", "config")}  # config:
    # its keys are coordinates of their own, and its text would nest in the new one
    constant = {} if layout == "seed_groups" else _constant(per_sample)
    field = ds[variable].transpose("sample", "time", *axes)
    t = ds["time"].values

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for key, value in {**ds.attrs, **constant}.items():
                f.attrs[names.get(key, key)] = value
            if layout == "stacked":
                t_ext = np.append(t, t[-1] + (t[-1] - t[-2] if t.size > 1 else 1.0))
                f.create_dataset("tensor", data=field.values.astype(np.float32))
                f.create_dataset(SAMPLES, data=ds["sample"].values.astype(np.int64))
                f.create_dataset("t-coordinate", data=t_ext.astype(np.float32))
                for axis in axes:
                    f.create_dataset(f"{axis}-coordinate", data=ds[axis].values.astype(np.float32))
            else:
                values = field.values.astype(np.float32)
                for k, sample in enumerate(ds["sample"].values):
                    group = f.create_group(f"{int(sample):04d}")
                    group.create_dataset("data", data=values[k, ..., None])
                    for axis in [*axes, "t"]:
                        coordinate = t if axis == "t" else ds[axis].values
                        group.create_dataset(f"grid/{axis}", data=coordinate.astype(np.float32))
                    if per_sample:
                        config = {names.get(key, key): np.asarray(values[k]).item()
                                  for key, values in per_sample.items()}
                        group.attrs["config"] = yaml.safe_dump(config, sort_keys=False)

    return atomic_write(path, write)


def _constant(per_sample: dict[str, np.ndarray]) -> dict:
    """The one value of each per-sample coordinate, for a layout with one value per file.

    Raises:
        ValueError: a coordinate takes several values (named, with how to select one).
    """
    constant = {}
    for key, values in per_sample.items():
        distinct = np.unique(values).tolist()
        if len(distinct) > 1:
            shown = ", ".join(map(str, distinct[:4])) + (", ..." if len(distinct) > 4 else "")
            raise ValueError(
                f"{key!r} takes {len(distinct)} values over the samples ({shown}); a PDEBench "
                f"file holds one value per parameter: select one first, e.g. "
                f"ds.isel(sample=(ds[{key!r}] == {distinct[0]!r}).values), drop it with "
                f"ds.drop_vars({key!r}), or write layout='seed_groups' (one config per sample)"
            )
        constant[key] = distinct[0]
    return constant
