"""PDEBench's HDF5 layouts, read and written, so data moves both ways.

* Stacked (advection, Burgers, diffusion–reaction, 2D problems): a dataset ``tensor`` of shape
  ``[N, T, X]`` or ``[N, T, X, Y]``, datasets ``x-coordinate`` (``y-coordinate``) and
  ``t-coordinate``, and parameters as file attributes (``beta``, ``Nu``, ``rho``, ...).
  ``t-coordinate`` may hold ``T + 1`` entries (PDEBench's generators append one); the first
  ``T`` are the times of the saved states.
* Per-seed groups (diffusion–sorption, shallow water, ...): groups ``0000``, ``0001``, ...
  each holding ``data`` of shape ``[T, X(, Y), C]`` and ``grid/x`` (``grid/y``), ``grid/t``.

Both read into the field data model of :mod:`physml.datasets.store`: variable ``u(sample,
time, x[, y])`` (a trailing channel axis of size 1 is dropped; more channels become
``u0, u1, ...``).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from .store import AXES


def _attrs(h5obj) -> dict:
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5obj.attrs.items()}


def _build(
    data: np.ndarray, times: np.ndarray, coords: list[np.ndarray], seeds, attrs
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
    ds = xr.Dataset(variables, coords=coord_map)
    ds.attrs.update(attrs)
    return ds


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
        return _build(data, first["grid"]["t"][...], coords, seeds, _attrs(f))


def write_pdebench(ds: xr.Dataset, path: str | os.PathLike, variable: str = "u") -> Path:
    """Write ``ds[variable]`` in PDEBench's stacked layout (float32 ``tensor``).

    ``t-coordinate`` gets ``T + 1`` entries as PDEBench's generators write them (the last one
    extrapolated by the last step). Scalar attrs are copied; per-sample parameter coordinates
    that are constant become attrs too.
    """
    path = Path(path)
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
            for key, value in ds.attrs.items():
                f.attrs[key] = value
            for key, coord in ds.coords.items():
                if coord.dims == ("sample",) and key != "sample":
                    values = np.unique(coord.values)
                    if values.size == 1:
                        f.attrs[key] = values[0]
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
