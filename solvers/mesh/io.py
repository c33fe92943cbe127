"""Reading and writing meshes and fields with meshio (Gmsh .msh, VTU, XDMF, OBJ, PLY, STL, ...).

:func:`read_mesh` keeps the highest-dimensional cells (tetrahedra if any, else triangles) and
reads Gmsh physical tags of cells and boundary facets (``gmsh:physical`` and ``field_data``).
Triangles whose points all have one z, to within :data:`PLANAR_TOL` of their x-y extent,
or :data:`PLANAR_ULPS` units of roundoff of the largest coordinate where the file stores single
precision (binary STL; CAD and STL exports leave rounding noise there), become a
planar mesh (d = 2, z dropped). Wavefront ``.obj`` files are read here, not by meshio (which
refuses the texture and normal indices most exporters write): their vertices and triangles.
:func:`write_mesh` writes the mesh with optional point and cell fields; VTU and XDMF files open
in ParaView. Tags are written to Gmsh ``.msh`` files only (MSH 2.2; the other formats carry the
fields, not the tags).
"""

from __future__ import annotations

import numbers
import re
import sys
from contextlib import AbstractContextManager, nullcontext, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import h5py
import meshio
import numpy as np

from .checks import RepairableMeshError
from .mesh import Mesh

_CELL_TYPES = {3: "triangle", 4: "tetra"}
_FACET_TYPES = {3: "line", 4: "triangle"}
_OTHER_CELLS = {3: {"quad", "polygon", "quad8", "quad9", "triangle6"},
                4: {"hexahedron", "wedge", "pyramid", "tetra10", "hexahedron20"}}
"""Cells of the same dimension as the kept ones that a mesh cannot hold: refused, since
dropping them would drop part of the domain."""
_HIGHER_ORDER = re.compile(
    r"(line|triangle|quad|tetra|hexahedron|wedge|pyramid)\d+|VTK_LAGRANGE_.*")
"""meshio's names of second- and higher-order (curved) cells, nodes on their edges or inside:
``triangle6``, ``tetra10``, ``line3``, ... (the base name and the number of nodes), and VTK's
Lagrange cells."""
_ONE_CELL_TYPE = {".stl": "triangle", ".off": "triangle", ".ply": "triangle", ".wkt": "triangle",
                  ".obj": "triangle", ".node": "tetra", ".ele": "tetra"}
"""Extensions whose meshio writers hold one of the two cell types only: meshio skips the other
with a printed warning and leaves a file without cells (TetGen's then hangs its reader)."""
PLANAR_TOL = 1e-6
"""Spread of the z coordinates, relative to the diagonal of the x-y bounding box, up to which
triangles are read as planar (the rounding a CAD or ASCII export leaves in z): a mesh that
flat is a plane, whose cells' folds are then checked."""
PLANAR_ULPS = 4
"""Where a file stores coordinates coarser than float64 (float32 in binary STL), the spread of
the z coordinates, in units of roundoff of that type times the largest coordinate's magnitude,
up to which triangles are read as planar as well: the noise that computing and storing them in
that precision leaves (:data:`PLANAR_TOL` lies far below it)."""


def formats() -> list[str]:
    """File extensions meshio reads and writes, sorted."""
    return sorted(meshio.extension_to_filetypes)


def read_mesh(path: str | Path, *, repair: bool = False, device: str = "cpu") -> Mesh:
    """Read a triangle or tetrahedral mesh from any format meshio handles.

    Args:
        path: the file; its extension selects the format.
        repair: merge duplicate and drop unreferenced vertices (:meth:`Mesh.repaired`) instead
            of refusing the mesh; cells that repeat a vertex (as given or after the merge) are
            dropped.
        device: Warp device of the mesh.

    Raises:
        ValueError: meshio cannot read the file: as the format its extension names (with
            meshio's reason where it gives one; a legacy VTK ``POLYDATA`` file with what to
            convert it to), or, an extension meshio does not read, with the formats allowed;
            an ``.obj`` file with a face that is not a triangle or a line that does not parse
            (naming the line); or the file holds no triangles or tetrahedra (second-order
            cells such as ``triangle6`` or ``tetra10``: a message saying so; quads, or Gmsh
            boundary groups alone: the mesher setting to change), or names Gmsh physical groups
            that tag no element (``Mesh.SaveAll`` in MSH 2.2), or the mesh is degenerate (the
            message names the file; a :class:`~physml.solvers.mesh.checks.RepairableMeshError`
            where ``repair`` would fix it; a non-conforming mesh, a boundary vertex inside
            another boundary facet, with ``repair`` too).
    """
    path = Path(path)
    extension = max((e for e in formats() if path.name.lower().endswith(e)), key=len,
                    default=None)
    data = _read_obj(path) if extension == ".obj" else _read_meshio(path, extension)
    k = 4 if any(b.type == "tetra" for b in data.cells) else 3
    blocks = [i for i, b in enumerate(data.cells) if b.type == _CELL_TYPES[k]]
    if not blocks:
        types = sorted({b.type for b in data.cells})
        if any(_HIGHER_ORDER.fullmatch(t) for t in types):
            raise ValueError(
                f"mesh file {str(path)!r} holds second- or higher-order (curved) cells (cell "
                f"types: {types}), which are not supported: physml's meshes are first-order "
                "triangles or tetrahedra; export a first-order mesh (Gmsh: -order 1, or "
                "Mesh.ElementOrder = 1)")
        raise ValueError(f"mesh file {str(path)!r} holds no triangles or tetrahedra "
                         f"(cell types: {types})"
                         f"{_missing_cells_cure(types, 'gmsh:physical' in data.cell_data)}")
    others = sorted({b.type for b in data.cells if b.type in _OTHER_CELLS[k]})
    if others:
        raise ValueError(
            f"mesh file {str(path)!r} holds {', '.join(others)} cells beside its "
            f"{_CELL_TYPES[k]}s; physml's meshes are {_CELL_TYPES[k]}s only (split the others "
            "in the mesher, e.g. Gmsh without recombination)"
        )
    cells = np.concatenate([data.cells[i].data for i in blocks])
    physical = data.cell_data.get("gmsh:physical")
    cell_tags = np.concatenate([physical[i] for i in blocks]) if physical else None
    facets = facet_tags = None
    facet_blocks = [i for i, b in enumerate(data.cells) if b.type == _FACET_TYPES[k]]
    if physical and facet_blocks:
        facets = np.concatenate([data.cells[i].data for i in facet_blocks])
        facet_tags = np.concatenate([physical[i] for i in facet_blocks])
    _refuse_lost_groups(path, data, k, physical, blocks + facet_blocks)
    points = np.asarray(data.points, dtype=np.float64)
    if k == 3 and points.shape[1] == 3 and len(points) and np.ptp(points[:, 2]) <= (
            _planar_tolerance(points, np.asarray(data.points).dtype)):
        points = points[:, :2]
    tag_names, facet_tags = _tag_names(data.field_data, k - 1, facet_tags)
    try:
        mesh = Mesh(points, cells, cell_tags, facets, facet_tags, tag_names, device=device,
                    check=not repair, source=str(path))
        return mesh.repaired() if repair else mesh
    except RepairableMeshError as error:
        raise RepairableMeshError(f"mesh file {str(path)!r}: {error.problem}",
                                  error.remedy) from error
    except ValueError as error:
        raise ValueError(f"mesh file {str(path)!r}: {error}") from error


def _missing_cells_cure(types: list[str], grouped: bool) -> str:
    """The likely cause of a file without triangles or tetrahedra, from its cell types and
    whether it holds Gmsh physical groups (``grouped``)."""
    if set(types) & (_OTHER_CELLS[3] | _OTHER_CELLS[4]):
        return ("; physml's meshes are triangles or tetrahedra only: split the other cells in "
                "the mesher (Gmsh: without recombination, no Recombine and "
                "Mesh.RecombineAll = 0)")
    if grouped and set(types) <= {"vertex", "line"}:
        return ("; Gmsh saves only the elements of its physical groups when there are any: "
                "add a Physical Surface (or Physical Volume) holding the domain beside the "
                "boundary groups")
    return ""


def _refuse_lost_groups(path: Path, data: meshio.Mesh, k: int, physical: list | None,
                        blocks: list[int]) -> None:
    """ValueError where the file names physical groups of the cells' or facets' dimension but
    tags every cell and facet 0: what Gmsh writes in MSH 2.2 with ``Mesh.SaveAll = 1``, which
    loses the groups."""
    names = sorted(name for name, value in data.field_data.items()
                   if len(value) >= 2 and int(value[1]) in (k - 1, k - 2))
    if physical and names and not any(np.any(physical[i]) for i in blocks):
        raise ValueError(
            f"mesh file {str(path)!r} names physical groups {names} but tags every element 0 "
            "(Gmsh writes that with Mesh.SaveAll = 1): the groups are lost; drop "
            "Mesh.SaveAll and give the domain its own Physical Surface (or Physical Volume)")


def _planar_tolerance(points: np.ndarray, stored: np.dtype) -> float:
    """The spread of z up to which triangles of ``points`` ((n, 3) float64, read from a file
    that stores them as ``stored``) are planar: :data:`PLANAR_TOL` of the diagonal of their
    x-y bounding box, or, for a floating type coarser than float64, :data:`PLANAR_ULPS` units of its
    roundoff times the largest coordinate's magnitude, whichever is larger."""
    tolerance = PLANAR_TOL * float(np.linalg.norm(np.ptp(points[:, :2], axis=0)))
    if np.issubdtype(stored, np.floating) and np.finfo(stored).eps > np.finfo(np.float64).eps:
        tolerance = max(tolerance,
                        PLANAR_ULPS * float(np.finfo(stored).eps) * float(np.abs(points).max()))
    return tolerance


def _read_meshio(path: Path, extension: str | None) -> meshio.Mesh:
    """``meshio.read`` of ``path``, with its failures as one ``ValueError`` (see
    :func:`read_mesh`)."""
    said, complaint = StringIO(), StringIO()
    try:  # meshio prints why its readers failed, then its own error line, and exits
        with redirect_stdout(said), redirect_stderr(complaint), _quiet_probe(extension):
            data = meshio.read(path, file_format="gmsh" if path.suffix.lower() == ".msh" else None)
    except (Exception, SystemExit) as error:  # ReadError, KeyError, ... from the readers
        if extension is None:
            raise ValueError(
                f"cannot read mesh file {str(path)!r} ({type(error).__name__}: {error}); "
                f"formats allowed: {', '.join(formats())}"
            ) from error
        if extension == ".vtk" and _is_polydata(path):
            raise ValueError(f"cannot read mesh file {str(path)!r}: a legacy VTK POLYDATA file, "
                             "which meshio (the .vtk reader) does not read; convert it to .vtu, "
                             ".ply or .obj (ParaView: File > Save Data) and read that") from error
        reason = (" ".join(said.getvalue().split()) if isinstance(error, SystemExit)
                  else f"{type(error).__name__}: {error}")
        if "Incompatible cell data 'gmsh:physical'" in reason:
            reason += ("; Gmsh's Mesh.SaveAll = 1 beside physical groups writes MSH 4.1 that "
                       "meshio cannot read: drop Mesh.SaveAll and give the domain its own "
                       "Physical Surface (or Physical Volume)")
        raise ValueError(f"cannot read mesh file {str(path)!r} as a {extension} file"
                         + (f" (meshio: {reason})" if reason else "")) from error
    sys.stderr.write(complaint.getvalue())  # a read that worked: meshio's warnings
    return data


def _quiet_probe(extension: str | None) -> AbstractContextManager:
    """NumPy's overflow warnings off for an STL read: meshio tells binary from ASCII by
    comparing 84 + 50 n with the file's size, n the header's uint32 triangle count, which
    overflows on an ASCII file's text: harmless, the wrapped product is compared as any other
    (it matches no ASCII file's size but by chance, as an unwrapped one would)."""
    return np.errstate(over="ignore") if extension == ".stl" else nullcontext()


def _is_polydata(path: Path) -> bool:
    """Whether the header of a legacy VTK file (its first four lines) says
    ``DATASET POLYDATA``."""
    try:
        with open(path, "rb") as f:
            head = [f.readline() for _ in range(4)]
    except OSError:
        return False
    return any(line.split()[:2] == [b"DATASET", b"POLYDATA"] for line in head)


def _read_obj(path: Path) -> meshio.Mesh:
    """The vertices (``v`` lines: x, y, z, any further numbers ignored) and triangles (``f``
    lines) of a Wavefront OBJ file.

    A face corner is ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn``: only the vertex index is read,
    1-based, or counted back from the last vertex read so far where negative (-1 is the last).
    Every other line (``vt``, ``vn``, groups, materials, ``l`` polylines) is skipped, as are
    comments (from ``#`` to the end of a line, after data too) and a byte-order mark at the
    start, and a line ending in ``\\`` continues on the next.

    Raises:
        ValueError: naming the file and the line: a face of more than three corners (quads
            and polygons are refused, as in the other formats: splitting a polygon into
            triangles is the mesher's choice, and a non-convex or non-planar one has no safe
            default), a face of fewer than three, index 0, or an entry that is not a number;
            or the file cannot be opened.
    """
    try:  # OBJ is ASCII; a name or comment in another encoding does not matter here
        text = path.read_text(encoding="utf-8-sig", errors="replace").replace("\\\n", " ")
    except OSError as error:
        raise ValueError(f"cannot read mesh file {str(path)!r} as a .obj file "
                         f"({type(error).__name__}: {error})") from error
    points, faces = [], []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        try:
            if words[:1] == ["v"]:
                points.append([float(w) for w in words[1:4]])
                if len(points[-1]) < 3:
                    raise ValueError("a vertex needs x, y and z")
            elif words[:1] == ["f"]:
                corners = [int(w.split("/")[0]) for w in words[1:]]
                if len(corners) != 3:
                    raise ValueError(f"a face of {len(corners)} corners; physml's meshes are "
                                     "triangles only: triangulate in the exporter or mesher")
                bad = [c for c in corners if c == 0 or c < -len(points)]
                if bad:
                    raise ValueError(f"vertex index {bad[0]} with {len(points)} vertices "
                                     "before it (OBJ counts from 1, or back from -1 for the "
                                     "last)")
                faces.append([c - 1 if c > 0 else len(points) + c for c in corners])
        except ValueError as error:
            raise ValueError(f"cannot read mesh file {str(path)!r} as a .obj file (line "
                             f"{number}: {error})") from None
    return meshio.Mesh(np.array(points, dtype=np.float64).reshape(-1, 3),
                       [("triangle", np.array(faces, dtype=np.int64).reshape(-1, 3))]
                       if faces else [])


def _tag_names(field_data: dict, cell_dim: int, facet_tags: np.ndarray | None
               ) -> tuple[dict[str, int], np.ndarray | None]:
    """One name -> tag map for the cells and the facets, and the facet tags renumbered where
    Gmsh's numbers (counted per dimension: ``Physical Surface("fluid", 1)`` and ``Physical
    Curve("inflow", 1)`` share the 1) collide with a cell tag; names of other dimensions are
    dropped. A name without a dimension (``field_data`` of length 1) is kept as it is; entries
    that are not numbers (MED's field names, ``{"med:nom": [["u"]]}``) are skipped."""
    field_data = {name: value for name, value in field_data.items()
                  if all(isinstance(x, numbers.Real) for x in value)}

    def of_dim(dim: int) -> dict[str, int]:
        return {name: int(value[0]) for name, value in field_data.items()
                if len(value) < 2 or int(value[1]) == dim}

    cells, facets = of_dim(cell_dim), of_dim(cell_dim - 1)
    taken = set(cells.values())
    free = max([*taken, *facets.values(), 0]) + 1
    renumber = {}
    for tag in sorted(set(facets.values()) & taken):
        if any(len(field_data[name]) >= 2 for name, t in facets.items() if t == tag):
            renumber[tag], free = free, free + 1
    if renumber and facet_tags is not None:
        facet_tags = np.array([renumber.get(int(t), int(t)) for t in facet_tags])
    return {**cells, **{name: renumber.get(tag, tag) for name, tag in facets.items()}}, facet_tags


def _check_xdmf_arrays(path: Path) -> None:
    """ValueError if the HDF5 file an XDMF file's arrays go to (meshio writes ``u.h5`` for
    ``u.xdmf``) exists and is not such a file (datasets ``data0``, ``data1``, ... only): writing
    would overwrite it."""
    arrays = path.with_suffix(".h5")
    if not arrays.exists():
        return
    try:
        with h5py.File(arrays, "r") as f:
            own = not f.attrs and all(re.fullmatch(r"data\d+", name) for name in f)
    except OSError:
        own = False
    if not own:
        raise ValueError(f"cannot write mesh file {str(path)!r}: its arrays go to "
                         f"{str(arrays)!r}, which exists and holds other data; move that file "
                         "or give the mesh file another name")


def write_mesh(
    path: str | Path,
    mesh: Mesh,
    point_data: dict[str, np.ndarray] | None = None,
    cell_data: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``mesh`` with fields to ``path`` (format from the extension).

    Args:
        path: output file, e.g. ``"u.vtu"`` or ``"u.xdmf"`` for ParaView.
        mesh: the mesh.
        point_data: name -> (n,) or (n, c) array of vertex values.
        cell_data: name -> (m,) or (m, c) array of cell values.

    Raises:
        ValueError: a field has the wrong length, cell fields for the ``.msh`` file of a tagged
            mesh (MSH 2.2 keeps the tags there), a format that cannot hold the mesh's cells
            (.stl, .off, .ply and .wkt hold triangles only, TetGen's .node and .ele
            tetrahedra only), an ``.xdmf``/``.xmf`` file whose arrays file (the same name
            with ``.h5``, where meshio writes them) exists and is not an earlier XDMF's, or
            meshio cannot write the format.
        OSError: the system refused the write (a full disk, a read-only file system).
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".xdmf", ".xmf"):
        _check_xdmf_arrays(Path(path))
    cell_type = _CELL_TYPES[mesh.cells.shape[1]]
    if _ONE_CELL_TYPE.get(suffix, cell_type) != cell_type:
        raise ValueError(f"cannot write mesh file {str(path)!r}: a {suffix} file holds "
                         f"{_ONE_CELL_TYPE[suffix]} cells only, this mesh has {cell_type} cells; "
                         "use .vtu, .xdmf or .msh")
    point_data = {k: np.asarray(v) for k, v in (point_data or {}).items()}
    cell_data = {k: np.asarray(v) for k, v in (cell_data or {}).items()}
    for name, values in point_data.items():
        if len(values) != mesh.n_vertices:
            raise ValueError(f"point field {name!r} has {len(values)} rows, the mesh has "
                             f"{mesh.n_vertices} vertices")
    for name, values in cell_data.items():
        if len(values) != mesh.n_cells:
            raise ValueError(f"cell field {name!r} has {len(values)} rows, the mesh has "
                             f"{mesh.n_cells} cells")
    points = mesh.points if mesh.dim == 3 else np.pad(mesh.points, ((0, 0), (0, 1)))
    cells = [(cell_type, mesh.cells)]
    data = {name: [values] for name, values in cell_data.items()}
    field_data = {}
    if suffix == ".msh" and (mesh.cell_tags is not None or mesh.facets is not None):
        # untagged cells of a mesh with tagged facets: physical tag 0, Gmsh's "no group"
        tags = [mesh.cell_tags if mesh.cell_tags is not None else np.zeros(mesh.n_cells, np.int32)]
        if mesh.facets is not None:
            cells.append((_FACET_TYPES[mesh.cells.shape[1]], mesh.facets))
            tags.append(mesh.facet_tags)
        if cell_data:  # element data over the cells but not the facets: unreadable MSH 2.2
            raise ValueError(f"{str(path)!r}: a tagged mesh's .msh file carries its tags, not "
                             f"cell fields ({', '.join(cell_data)}); write those to .vtu or "
                             ".xdmf")
        data = {"gmsh:physical": tags, "gmsh:geometrical": tags}
        cell_tags = set(np.unique(mesh.cell_tags).tolist())
        field_data = {name: np.array([tag, mesh.cell_dim - (tag not in cell_tags)])
                      for name, tag in mesh.tag_names.items()}
    out = meshio.Mesh(points, cells, point_data=point_data, cell_data=data,
                      field_data=field_data)
    try:
        out.write(path, file_format="gmsh22" if suffix == ".msh" else None)
    except OSError:  # the system's refusal (a full disk, no permission), not the format's
        raise
    except Exception as error:
        raise ValueError(
            f"cannot write mesh file {str(path)!r} ({type(error).__name__}: {error}); "
            f"formats allowed: {', '.join(formats())}"
        ) from error
