"""PDEBench's HDF5 layouts, read and written, so data moves both ways.

* Stacked (advection, Burgers, diffusion–reaction, 2D problems): a dataset ``tensor`` of shape
  ``[N, T, X]`` or ``[N, T, X, Y]``, datasets ``x-coordinate`` (``y-coordinate``) and
  ``t-coordinate``, and parameters as file attributes (``beta``, ``Nu``, ``rho``, ...).
  ``t-coordinate`` may hold ``T + 1`` entries (PDEBench's generators append one); the first
  ``T`` are the times of the saved states.
* Per-seed groups (diffusion–sorption, shallow water, ...): groups ``0000``, ``0001``, ...
  each holding ``data`` of shape ``[T, X(, Y), C]`` and ``grid/x`` (``grid/y``), ``grid/t``,
  and a ``config`` attribute: the YAML of the generator's configuration, with the sample's
  parameters and seed (on the group, or on the file as ``"0000/config"``).

Both read into the field data model of :mod:`physml.datasets.store`: variable ``u(sample,
time, x[, y])`` (a trailing channel axis of size 1 is dropped; more channels become
``u0, u1, ...``). A per-seed ``config`` becomes per-sample coordinates: ``config`` (the YAML
text) and one coordinate per number in it present in every group, named by its key
(``seed``, ``dam_radius``, ...), or ``config.<dotted path>`` where two keys share a name or
the key is already a name of the dataset (``config.sim.x``).

PDEBench's data are non-dimensional: fields, coordinates and parameters read from a file get
the CF units ``"1"``, and time and space their usual long names.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import xarray as xr
import yaml

from .store import AXES, CF_METADATA, with_cf_metadata

NON_DIMENSIONAL = {
    "sample": ("sample (seed group number or index)", "1"),
    "time": ("model time", "1"),
    **{axis: (f"{axis} coordinate", "1") for axis in AXES},
}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _attrs(h5obj, skip: set[str] = frozenset()) -> dict:
    return {k: _text(v) for k, v in h5obj.attrs.items() if k not in skip}


def _numbers(tree, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], float | int]:
    """The numeric and boolean leaves of a nested mapping, by key path."""
    if isinstance(tree, dict):
        leaves = {}
        for key, value in tree.items():
            leaves.update(_numbers(value, (*path, str(key))))
        return leaves
    if isinstance(tree, bool | int | float) and path:
        return {path: tree}
    return {}


def _parse(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _config_coords(configs: list[str], taken: set[str]) -> dict[str, np.ndarray]:
    """Per-sample coordinates from the groups' config YAML texts (see the module docstring);
    a key that is ambiguous or in ``taken`` is named ``config.<dotted path>``."""
    leaves = [_numbers(_parse(text)) for text in configs]
    shared = [p for p in leaves[0] if all(p in other for other in leaves[1:])]
    names = [p[-1] for p in shared]
    coords = {"config": np.asarray(configs, dtype=object)}
    for path in shared:
        unique = names.count(path[-1]) == 1 and path[-1] not in taken | {"config"}
        name = path[-1] if unique else "config." + ".".join(path)
        coords[name] = np.asarray([other[path] for other in leaves])
    return coords


def _build(
    data: np.ndarray,
    times: np.ndarray,
    coords: list[np.ndarray],
    seeds,
    attrs,
    sample_coords: dict[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """Dataset from data [N, T, *space(, C)] (C present when data has one more axis)."""
    ndim = len(coords)
    dims = ("sample", "time", *AXES[:ndim])
    coord_map = {
        "sample": ("sample", np.asarray(seeds, dtype=np.int64)),
        "time": ("time", np.asarray(times, dtype=np.float64)),
    }
    for axis, values in enumerate(coords):
        coord_map[AXES[axis]] = (AXES[axis], np.asarray(values, dtype=np.float64))
    if data.ndim == ndim + 3:  # trailing channel axis
        channels = data.shape[-1]
        variables = (
            {"u": (dims, data[..., 0])}
            if channels == 1
            else {f"u{c}": (dims, data[..., c]) for c in range(channels)}
        )
    else:
        variables = {"u": (dims, data)}
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
    """Read a PDEBench HDF5 file (stacked or per-seed layout) into memory."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"PDEBench file {str(path)!r} does not exist")
    with h5py.File(path, "r") as f:
        if "tensor" in f:
            data = f["tensor"][...]
            n_times = data.shape[1]
            t = f["t-coordinate"][...][:n_times]
            coords = [f[f"{a}-coordinate"][...] for a in AXES if f"{a}-coordinate" in f]
            return _build(data, t, coords, np.arange(data.shape[0]), _attrs(f))
        groups = sorted(k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k])
        if not groups:
            raise ValueError(f"{str(path)!r} has neither a 'tensor' dataset nor seed groups")
        first = f[groups[0]]
        coords = [first["grid"][a][...] for a in AXES if a in first["grid"]]
        data = np.stack([f[g]["data"][...] for g in groups])
        seeds = [int(g) if g.isdigit() else i for i, g in enumerate(groups)]
        on_file = {f"{g}/config" for g in groups}
        configs = [_text(f[g].attrs.get("config", f.attrs.get(f"{g}/config"))) for g in groups]
        taken = {"sample", "time", "u", *AXES, *(f"u{c}" for c in range(data.shape[-1]))}
        sample_coords = _config_coords(configs, taken) if all(configs) else None
        return _build(
            data, first["grid"]["t"][...], coords, seeds, _attrs(f, on_file), sample_coords
        )


def write_pdebench(ds: xr.Dataset, path: str | os.PathLike, variable: str = "u") -> Path:
    """Write ``ds[variable]`` in PDEBench's stacked layout (float32 ``tensor``).

    ``t-coordinate`` gets ``T + 1`` entries as PDEBench's generators write them (the last one
    extrapolated by the last step). The dataset's attrs are copied, and so is every per-sample
    coordinate (a swept parameter, the scheme) as one attr, which PDEBench's layout allows only
    when it takes one value over the samples written.

    Raises:
        ValueError: a per-sample coordinate takes several values (the message names it and
            how to select one), before anything is written.
    """
    path = Path(path)
    constant = {}
    for key, coord in ds.coords.items():
        if coord.dims != ("sample",) or key == "sample":
            continue
        values = np.unique(coord.values).tolist()
        if len(values) > 1:
            shown = ", ".join(map(str, values[:4])) + (", ..." if len(values) > 4 else "")
            raise ValueError(
                f"{key!r} takes {len(values)} values over the samples ({shown}); a PDEBench "
                f"file holds one value per parameter: select one first, e.g. "
                f"ds.isel(sample=(ds[{key!r}] == {values[0]!r}).values), or drop it with "
                f"ds.drop_vars({key!r})"
            )
        constant[key] = values[0]
    field = ds[variable].transpose("sample", "time", *[a for a in AXES if a in ds[variable].dims])
    t = ds["time"].values
    t_ext = np.append(t, t[-1] + (t[-1] - t[-2] if t.size > 1 else 1.0))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("tensor", data=field.values.astype(np.float32))
            f.create_dataset("t-coordinate", data=t_ext.astype(np.float32))
            for axis in AXES:
                if axis in field.dims:
                    f.create_dataset(f"{axis}-coordinate", data=ds[axis].values.astype(np.float32))
            for key, value in {**ds.attrs, **constant}.items():
                f.attrs[key] = value
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
