r"""Fields on a mesh in the data model of :mod:`physml.datasets.store`: a ``node`` dimension
and the mesh topology stored beside the fields, in the same HDF5 (netCDF4-flavour) file.

The layout follows the UGRID conventions (a dummy ``mesh`` variable with
``cf_role = "mesh_topology"`` names the coordinate and connectivity variables), so
``xarray.open_dataset`` and UGRID-aware readers (xugrid, ParaView's UGRID reader) see a mesh:

==================  =======================  ==========================================
variable            dims                     holds
==================  =======================  ==========================================
``mesh``            ()                       topology attributes (UGRID)
``node_x``, ...     (node,)                  vertex coordinates [m] (``node_z`` in 3D)
``cell_nodes``      (cell, corner)           0-based vertex indices, int32
``cell_shape``      (cell,)                  tetrahedra only: UGRID shape flag, 0 (tetrahedron)
``cell_tags``       (cell,)                  optional Gmsh physical tag per cell
``facet_nodes``     (facet, facet_corner)    optional tagged boundary facets
``facet_tags``      (facet,)                 their tags; ``tag_names`` (JSON) in attrs
fields              ([sample,] [time,] node)  one variable per field, ``location: node``
==================  =======================  ==========================================

Triangles are UGRID faces (``topology_dimension`` 2, ``location: face``), tetrahedra UGRID
volumes (``topology_dimension`` 3, ``location: volume``, with the ``volume_shape_type`` flag
variable the conventions require of 3D meshes). ``cell_nodes`` carries the ``cf_role`` of its
connectivity and ``start_index`` 0; every cell has all its corners, so it has no ``_FillValue``.

A mesh dataset is written with :func:`~physml.datasets.store.write_dataset` and read back
with :func:`read_mesh_dataset`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..solvers.mesh import Mesh
from .store import _attr, with_cf_metadata

MESH = "mesh"
_COORDS = ("node_x", "node_y", "node_z")
_TOPOLOGY = (MESH, *_COORDS, "cell_nodes", "cell_shape", "cell_tags", "facet_nodes",
             "facet_tags", "cell", "corner", "facet", "facet_corner")
_METADATA: dict[str, tuple[str, str]] = {
    MESH: ("mesh topology", "1"),
    "node": ("vertex index", "1"),
    "cell": ("cell index", "1"),
    "corner": ("vertex slot within a cell", "1"),
    "facet": ("tagged boundary facet index", "1"),
    "facet_corner": ("vertex slot within a facet", "1"),
    "node_x": ("x coordinate of the vertex", "m"),
    "node_y": ("y coordinate of the vertex", "m"),
    "node_z": ("z coordinate of the vertex", "m"),
    "cell_nodes": ("vertex indices of each cell (0-based)", "1"),
    "cell_shape": ("shape of each cell", "1"),
    "cell_tags": ("physical tag of each cell", "1"),
    "facet_nodes": ("vertex indices of each tagged boundary facet (0-based)", "1"),
    "facet_tags": ("physical tag of each boundary facet", "1"),
}


def _topology(mesh: Mesh) -> dict[str, tuple]:
    location = "volume" if mesh.cell_dim == 3 else "face"
    on_cells = {"mesh": MESH, "location": location}
    variables: dict[str, tuple] = {
        name: ("node", mesh.points[:, axis]) for axis, name in enumerate(_COORDS[: mesh.dim])
    }
    variables["cell_nodes"] = (("cell", "corner"), mesh.cells, {
        "cf_role": f"{location}_node_connectivity", "start_index": np.int32(0)})
    if mesh.cell_tags is not None:
        variables["cell_tags"] = ("cell", mesh.cell_tags, on_cells)
    if mesh.facets is not None:
        variables["facet_nodes"] = (("facet", "facet_corner"), mesh.facets)
        variables["facet_tags"] = ("facet", mesh.facet_tags)
    topology = {
        "cf_role": "mesh_topology", "topology_dimension": mesh.cell_dim,
        "node_coordinates": " ".join(_COORDS[: mesh.dim]),
        f"{location}_node_connectivity": "cell_nodes", "start_index": 0,
        "tag_names": json.dumps(mesh.tag_names)}
    if mesh.cell_dim == 3:
        variables["cell_shape"] = ("cell", np.zeros(mesh.n_cells, np.int8), {
            "cf_role": "volume_shape_type", "flag_values": np.int8(0),
            "flag_meanings": "tetrahedron"})
        topology["volume_shape_type"] = "cell_shape"
    variables[MESH] = ((), np.int32(0), topology)
    return variables


def mesh_dataset(
    mesh: Mesh,
    fields: Mapping[str, np.ndarray],
    times: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
    metadata: Mapping[str, tuple[str, str]] | None = None,
    samples: np.ndarray | None = None,
    sample_coords: Mapping[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """Nodal fields on ``mesh`` with the mesh's topology, as one :class:`xarray.Dataset`.

    Args:
        mesh: the mesh (points in m).
        fields: name -> (n,) values per vertex, (n_times, n) with ``times``, and a leading
            (n_samples,) axis with ``samples``.
        times: model times [s], shape (n_times,): the ``time`` coordinate.
        samples: the random seed of each sample, (n_samples,): the ``sample`` coordinate.
        sample_coords: further per-sample coordinates (e.g. swept parameters).
        attrs: dataset metadata (numbers, strings or flat lists of them).
        metadata: CF ``(long_name, units)`` of the field names beyond
            :data:`~physml.datasets.store.CF_METADATA`.

    Raises:
        ValueError: ``fields`` is not a mapping, a field's shape does not match the mesh (and
            ``times``), or a name lacks CF metadata.
    """
    if not isinstance(fields, Mapping):
        raise ValueError(f"fields is a {type(fields).__name__}; expected a mapping of field "
                         "names to values, e.g. {'u': values}")
    n = mesh.n_vertices
    expected = (n,) if times is None else (len(times), n)
    dims = ("node",) if times is None else ("time", "node")
    if samples is not None:
        expected, dims = (len(samples), *expected), ("sample", *dims)
    variables = _topology(mesh)
    for name, values in fields.items():
        values = np.asarray(values)
        if values.shape != expected:
            raise ValueError(f"field {name!r} has shape {values.shape}; expected {expected} "
                             f"({', '.join(map(str, expected))}: "
                             f"{'n_samples, ' if samples is not None else ''}"
                             f"{'n_times, ' if times is not None else ''}n)")
        if name in _TOPOLOGY:
            raise ValueError(f"field name {name!r} is taken by the mesh topology")
        variables[name] = (dims, values, {"mesh": MESH, "location": "node"})
    coords: dict[str, Any] = {"node": np.arange(n), "cell": np.arange(mesh.n_cells),
                              "corner": np.arange(mesh.cells.shape[1])}
    if mesh.facets is not None:
        coords |= {"facet": np.arange(len(mesh.facets)),
                   "facet_corner": np.arange(mesh.facets.shape[1])}
    if times is not None:
        coords["time"] = np.asarray(times, dtype=np.float64)
    if samples is not None:
        coords["sample"] = np.asarray(samples, dtype=np.int64)
        for key, values in (sample_coords or {}).items():
            coords[key] = ("sample", np.asarray(values))
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
    return with_cf_metadata(ds, {**_METADATA, **(metadata or {})})


def mesh_of(ds: xr.Dataset, device: str = "cpu") -> Mesh:
    """The :class:`Mesh` stored in a mesh dataset (checked on construction), its arrays on
    ``device`` ("cpu", "cuda" or "cuda:N").

    Raises:
        ValueError: ``ds`` holds no mesh topology (no ``mesh`` variable).
    """
    if MESH not in ds.variables or ds[MESH].attrs.get("cf_role") != "mesh_topology":
        raise ValueError("the dataset holds no mesh topology (no 'mesh' variable with "
                         "cf_role 'mesh_topology'); write it with mesh_dataset")
    names = ds[MESH].attrs["node_coordinates"].split()
    points = np.stack([ds[name].values for name in names], axis=1)
    has_facets = "facet_nodes" in ds.variables
    return Mesh(
        points, ds["cell_nodes"].values,
        cell_tags=ds["cell_tags"].values if "cell_tags" in ds.variables else None,
        facets=ds["facet_nodes"].values if has_facets else None,
        facet_tags=ds["facet_tags"].values if has_facets else None,
        tag_names=json.loads(ds[MESH].attrs.get("tag_names", "{}")),
        device=device,
    )


def read_mesh_dataset(path: str | Path, device: str = "cpu") -> tuple[Mesh, xr.Dataset]:
    """Read a file written from :func:`mesh_dataset`: the mesh, and the fields (dims
    ``([sample,] [time,] node)``, attrs kept) without the topology variables and dims. Loaded
    into memory; the mesh's arrays on ``device`` ("cpu", "cuda" or "cuda:N")."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    mesh = mesh_of(ds, device)
    return mesh, ds.drop_vars([name for name in _TOPOLOGY if name in ds.variables])
