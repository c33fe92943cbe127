r"""Reading and writing field data: the data model of :mod:`physml.datasets.store` and
PDEBench's layouts (:mod:`physml.datasets.pdebench`), and fields on meshes
(:mod:`physml.datasets.mesh_store`), under one name.

* Build a dataset: :func:`trajectory_dataset` (one trajectory, dims ``(time, x, ...)``),
  :func:`samples_dataset` (many, ``(sample, time, x, ...)``), :func:`with_cf_metadata` (dims in
  that order, CF ``long_name``/``units`` on every variable).
* Write and read: :func:`write_dataset`, :func:`open_dataset` (one file or a sharded folder).
* PDEBench's HDF5 layouts: :func:`read_pdebench`, :func:`write_pdebench`.
* Fields on a mesh: :func:`mesh_dataset` (fields with the topology), :func:`read_mesh_dataset`,
  :func:`mesh_of` (the :class:`~physml.solvers.mesh.Mesh` of such a dataset).

Example: the heat equation's decaying sine mode $u = e^{-\nu t}\sin x$ as one trajectory,
written to HDF5 and read back with its coordinates and attributes:

>>> import pathlib, tempfile
>>> import numpy as np
>>> from physml import io
>>> from physml.solvers import Grid
>>> grid = Grid((32,), (0.0,), (2 * np.pi,))
>>> times = np.linspace(0.0, 1.0, 6)
>>> states = np.exp(-0.1 * times)[:, None] * np.sin(grid.coords(0))  # (time, x)
>>> ds = io.trajectory_dataset(states, times, grid, attrs={"pde": "heat", "nu": 0.1})
>>> with tempfile.TemporaryDirectory() as folder:
...     path = io.write_dataset(ds, pathlib.Path(folder) / "heat.h5")
...     with io.open_dataset(path) as back:
...         print(dict(back.sizes), back.attrs["pde"], back.attrs["nu"])
...         print(back["u"].dims, bool(np.array_equal(back["u"].values, states)))
{'time': 6, 'x': 32} heat 0.1
('time', 'x') True
"""

from .datasets.mesh_store import mesh_dataset as mesh_dataset
from .datasets.mesh_store import mesh_of as mesh_of
from .datasets.mesh_store import read_mesh_dataset as read_mesh_dataset
from .datasets.pdebench import read_pdebench as read_pdebench
from .datasets.pdebench import write_pdebench as write_pdebench
from .datasets.store import open_dataset as open_dataset
from .datasets.store import samples_dataset as samples_dataset
from .datasets.store import trajectory_dataset as trajectory_dataset
from .datasets.store import with_cf_metadata as with_cf_metadata
from .datasets.store import write_dataset as write_dataset

__all__ = [
    "mesh_dataset", "mesh_of", "open_dataset", "read_mesh_dataset", "read_pdebench",
    "samples_dataset", "trajectory_dataset", "with_cf_metadata", "write_dataset", "write_pdebench",
]
