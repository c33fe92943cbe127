"""Reading and writing fields as xarray Datasets in HDF5 (netCDF4 flavour, via h5netcdf).

A file written here opens with both ``xarray.open_dataset(path)`` and plain ``h5py``. Writes
go to a temporary name in the same folder and are renamed when complete, so an interrupted
write never leaves a partial file under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .solvers.grid import Grid

AXES = ("x", "y", "z")


def trajectory_dataset(
    states: np.ndarray, times: np.ndarray, grid: Grid, name: str = "u",
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """A Dataset with variable ``name`` of dims ``(time, x[, y[, z]])`` and cell-centre coords.

    Args:
        states: array of shape ``(n_times, *grid.shape)``.
        times: model times, shape ``(n_times,)``.
        grid: the grid the states live on.
        attrs: metadata (numbers, strings or flat lists of them).
    """
    dims = ("time", *AXES[: grid.ndim])
    coords = {"time": ("time", np.asarray(times, dtype=np.float64))}
    for axis, dim in enumerate(dims[1:]):
        coords[dim] = (dim, grid.coords(axis))
    ds = xr.Dataset({name: (dims, states)}, coords=coords)
    ds.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
    return ds


def _attr(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, tuple | list):
        return np.asarray(value)
    return value


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` as HDF5 atomically (temporary name, then rename)."""
    path = Path(path)
    if not path.parent.exists():
        raise ValueError(f"output folder {str(path.parent)!r} does not exist")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
