"""Meshes: checks, IO, Gmsh domains, P1 operators against references, convergence orders,
and position gradients through the torch bridge."""

import gc
import re
import subprocess
import sys
import weakref
from pathlib import Path

import meshio
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import warp as wp

from conftest import observed_order
from physml import mesh_bridge
from physml.linalg_bridge import csr_solve
from physml.mesh_bridge import operator_values, poisson_solve, sparse_solve
from physml.solvers import mesh as pm
from physml.solvers.linalg import Jacobi, SmoothedAggregationAMG, csr_to_scipy
from physml.solvers.mesh.checks import RepairableMeshError, facets_of, row_ids
from physml.solvers.mesh.operators import (
    csr_pattern,
    element_triplets,
    element_triplets_adjoint,
)

gmsh = pytest.importorskip("gmsh", reason="no gmsh for this platform (no Linux aarch64 wheel)")

SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
CUBE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1],
                 [1, 1, 1]], dtype=float)
CUBE_TETS = np.array([[0, 1, 3, 7], [0, 1, 7, 5], [0, 5, 7, 4], [0, 3, 2, 7], [0, 2, 6, 7],
                      [0, 6, 4, 7]])


def unit_square(n: int) -> pm.Mesh:
    xs = np.linspace(0.0, 1.0, n + 1)
    points = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    a = (np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]).ravel()
    cells = np.concatenate([np.c_[a, a + 1, a + n + 2], np.c_[a, a + n + 2, a + n + 1]])
    return pm.Mesh(points, cells)


# --- checks --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "points, cells, words",
    [
        (np.array([[0, 0], [1, 0], [2, 0.0]]), [[0, 1, 2]], "zero-area cells: cells 0 (1 in all)"),
        (np.r_[CUBE[[0, 1, 2, 4]], [[1, 1, 0]]], [[0, 1, 2, 3], [0, 1, 2, 4]],
         "zero-volume cells: cells 1 (1 in all)"),
        (np.r_[SQUARE, [[0.3, 0.8]]], [[0, 1, 2], [0, 1, 4], [1, 2, 3]], "folded cells"),
        (np.r_[SQUARE, [[0.5, -1.0]]], [[0, 1, 2], [0, 2, 3], [0, 4, 2]], "non-manifold"),
        (np.r_[SQUARE, [[5.0, 5.0]]], [[0, 1, 2], [0, 2, 3]], "unreferenced vertices 4"),
        (np.r_[SQUARE, [[0.0, 0.0]]], [[0, 1, 2], [4, 2, 3]], "duplicate vertices 4"),
        (SQUARE, [[0, 1, 7]], "reference vertices outside"),
    ],
)
def test_degenerate_meshes_are_refused_naming_the_cells(points, cells, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        pm.Mesh(points, cells)


def test_a_fold_is_named_by_its_two_cells_and_mixed_vertex_orders_are_accepted():
    """Cells 0 and 1 both lie above their shared edge 0-1 (a fold, whatever order they list
    their vertices in); two triangles listed in opposite orders on either side of an edge are
    a valid mesh (meshers mix the orders), with the operators of the consistent one."""
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"folded cells .*: cells 0, 1 \(2 in all\)"):
        pm.Mesh(points, [[0, 1, 2], [1, 0, 3]])
    with pytest.raises(ValueError, match=r"folded cells .*: cells 0, 1"):  # a plane at z = 0
        pm.Mesh(np.c_[points, np.zeros(4)], [[0, 1, 2], [1, 0, 3]])
    mixed = pm.Mesh(SQUARE, [[0, 1, 2], [0, 3, 2]])
    np.testing.assert_allclose(pm.to_scipy(pm.stiffness_matrix(mixed)).toarray(),
                               pm.to_scipy(pm.stiffness_matrix(
                                   pm.Mesh(SQUARE, [[0, 1, 2], [0, 2, 3]]))).toarray())
    flipped = CUBE_TETS.copy()
    flipped[::2, [0, 1]] = flipped[::2, [1, 0]]  # every other tetrahedron listed the other way
    np.testing.assert_allclose(pm.to_scipy(pm.stiffness_matrix(pm.Mesh(CUBE, flipped))).toarray(),
                               pm.to_scipy(pm.stiffness_matrix(pm.Mesh(CUBE, CUBE_TETS))).toarray(),
                               atol=1e-14)


@pytest.mark.parametrize("make", [lambda: unit_square(12), lambda: pm.icosphere(2),
                                  lambda: pm.torus(0.4), lambda: pm.box(0.5),
                                  lambda: pm.Mesh(CUBE, CUBE_TETS)])
def test_row_ids_are_unique_over_rows_of_the_facets(make):
    """The checks' int64-key ids of facets (triangles' edges, tetrahedra's faces, planar and
    surface meshes) are those of ``np.unique(axis=0)``, with the rank taken first where a key
    would pass int64 (indices near 2**40)."""
    cells = make().cells
    for faces in (facets_of(cells), facets_of(cells.astype(np.int64) + 2**40)):
        _, inverse, counts = np.unique(faces, axis=0, return_inverse=True, return_counts=True)
        ids, found = row_ids(faces)
        np.testing.assert_array_equal(ids, inverse.ravel())
        np.testing.assert_array_equal(found, counts)


def test_row_ids_are_np_unique_s_for_entries_up_to_int64_s_largest():
    """Entries near 2**62 or at int64's largest value (the key's rank times n overflowed)."""
    rng = np.random.default_rng(0)
    for largest in (2**40, 2**62, 2**63 - 1):
        rows = rng.integers(0, largest, size=(40, 3), dtype=np.int64, endpoint=True)
        rows[20:] = rows[:20]
        rows[0, 2] = largest
        _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        ids, found = row_ids(rows)
        np.testing.assert_array_equal(ids, inverse.ravel())
        np.testing.assert_array_equal(found, counts)
    np.testing.assert_array_equal(row_ids(np.array([[0, 0], [1, 0], [2, 2**62]]))[0],
                                  [0, 1, 2])


def test_a_cell_that_repeats_a_vertex_is_named_before_the_vertex_it_leaves_unused():
    """It was reported as 'unreferenced vertices 2', and the repair dropped it unsaid."""
    points, cells = SQUARE, [[0, 1, 1], [0, 3, 1]]
    with pytest.raises(RepairableMeshError, match=r"^collapsed cells 0 \(1 in all\) list a "
                                                  r"vertex twice .* to drop them$"):
        pm.Mesh(points, cells)
    repaired = pm.Mesh(points, cells, check=False).repaired()
    np.testing.assert_array_equal(repaired.points, SQUARE[[0, 1, 3]])
    np.testing.assert_array_equal(repaired.cells, [[0, 2, 1]])


def test_repaired_merges_duplicates_and_drops_unreferenced_vertices():
    points = np.r_[SQUARE, [[0.0, 0.0], [9.0, 9.0]]]
    mesh = pm.Mesh(points, [[0, 1, 2], [4, 2, 3]], check=False).repaired()
    assert mesh.n_vertices == 4
    np.testing.assert_array_equal(mesh.cells, [[0, 1, 2], [0, 2, 3]])


def test_coincident_vertices_either_side_of_a_rounding_boundary_are_found():
    """Two vertices 2e-17 apart across a boundary of the 1e-12 rounding grid the check once
    keyed on: accepted, a crack along the split edge, and not merged by repaired()."""
    q = 0.5e-12 * np.sqrt(2.0)
    points = np.r_[SQUARE, [[0.5, q - 1e-17], [0.5, q + 1e-17]]]
    cells = [[0, 4, 3], [4, 2, 3], [5, 1, 2]]
    with pytest.raises(ValueError, match="duplicate"):
        pm.Mesh(points, cells)
    assert pm.Mesh(points, cells, check=False).repaired().n_vertices == 5


def test_the_edge_length_of_a_tetrahedron_counts_its_six_edges():
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    expected = (3 * 1.0 + 2 * np.sqrt(2.0) + np.sqrt(3.0)) / 6  # four of them gave 1.183
    assert pm.Mesh(points, [[0, 1, 2, 3]]).edge_length() == pytest.approx(expected, rel=1e-14)


# --- IO ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["msh", "vtu", "xdmf", "obj", "ply", "stl"])
def test_round_trip(tmp_path, ext):
    mesh = pm.icosphere(1)
    path = tmp_path / f"sphere.{ext}"
    pm.write_mesh(path, mesh)
    back = pm.read_mesh(path)
    assert (back.n_vertices, back.n_cells) == (mesh.n_vertices, mesh.n_cells)
    np.testing.assert_allclose(_triangles(back), _triangles(mesh), atol=1e-6)


def _triangles(mesh):
    """Cells as sorted vertex coordinates, in sorted order (independent of numbering)."""
    x = np.round(mesh.points[mesh.cells], 5)
    x = np.take_along_axis(x, np.lexsort(x.transpose(2, 0, 1)[::-1])[..., None], axis=1)
    x = x.reshape(len(x), -1)
    return x[np.lexsort(x.T[::-1])]


@pytest.mark.parametrize("ext", ["vtu", "xdmf"])
def test_fields_are_written_for_paraview(tmp_path, ext):
    mesh = unit_square(3)
    u, area = mesh.points[:, 0] ** 2, mesh.measures()
    pm.write_mesh(tmp_path / f"u.{ext}", mesh, point_data={"u": u}, cell_data={"area": area})
    data = meshio.read(tmp_path / f"u.{ext}")
    np.testing.assert_allclose(data.point_data["u"], u)
    np.testing.assert_allclose(data.cell_data["area"][0], area)


def test_xdmf_does_not_overwrite_another_h5(tmp_path):
    from physml import io

    mesh = unit_square(3)
    u = mesh.points[:, 0]
    pm.write_mesh(tmp_path / "u.xdmf", mesh, point_data={"u": u})
    pm.write_mesh(tmp_path / "u.xdmf", mesh, point_data={"u": 2 * u})  # its own arrays: rewritten
    np.testing.assert_allclose(meshio.read(tmp_path / "u.xdmf").point_data["u"], 2 * u)
    io.write_dataset(io.mesh_dataset(mesh, {"u": u}), tmp_path / "v.h5")
    with pytest.raises(ValueError, match=r"v.xdmf': its arrays go to '.*v.h5', which exists"):
        pm.write_mesh(tmp_path / "v.xdmf", mesh, point_data={"u": u})
    np.testing.assert_allclose(io.read_mesh_dataset(tmp_path / "v.h5")[1]["u"].values, u)

def test_msh_keeps_gmsh_tags(tmp_path):
    mesh = pm.annulus(0.3)
    pm.write_mesh(tmp_path / "a.msh", mesh)
    back = pm.read_mesh(tmp_path / "a.msh")
    assert back.tag_names == mesh.tag_names
    for name in ("inner", "outer"):
        np.testing.assert_array_equal(back.boundary_vertices(name), mesh.boundary_vertices(name))


def test_gmsh_tags_numbered_per_dimension_keep_their_parts_apart(tmp_path):
    """Gmsh counts physical tags per dimension: the curve "inflow" and the surface "fluid"
    are both 1 in the file; the boundary parts stay the curves', the cell tag is none."""
    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        surface = gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
        gmsh.model.occ.synchronize()
        curves = [t for _, t in gmsh.model.getBoundary([(2, surface)], oriented=False)]
        assert gmsh.model.addPhysicalGroup(1, curves[:1], name="inflow") == 1
        gmsh.model.addPhysicalGroup(1, curves[1:], name="walls")
        gmsh.model.addPhysicalGroup(2, [surface], tag=1, name="fluid")
        gmsh.option.setNumber("Mesh.MeshSizeMax", 0.25)
        gmsh.model.mesh.generate(2)
        gmsh.write(str(tmp_path / "square.msh"))
    finally:
        gmsh.finalize()
    mesh = pm.read_mesh(tmp_path / "square.msh")
    assert mesh.boundary_parts() == ["inflow", "walls"]
    inflow = mesh.points[mesh.boundary_vertices("inflow")]
    assert len(inflow) > 2 and (np.ptp(inflow[:, 0]) == 0 or np.ptp(inflow[:, 1]) == 0)  # one side
    with pytest.raises(ValueError, match=r"no boundary part named 'fluid'; known: \['inflow', "
                                         r"'walls'\]"):
        mesh.boundary_vertices("fluid")
    both = mesh.boundary_vertices(["inflow", "walls"])  # was "no boundary part named [...]"
    np.testing.assert_array_equal(both, np.union1d(mesh.boundary_vertices("inflow"),
                                                   mesh.boundary_vertices("walls")))
    with pytest.raises(ValueError, match=r"no boundary part named 'fluid'"):
        mesh.boundary_vertices(["inflow", "fluid"])
    with pytest.raises(ValueError, match=r"no part name given \(an empty list\)"):
        mesh.boundary_vertices([])
    pm.write_mesh(tmp_path / "again.msh", mesh)
    again = pm.read_mesh(tmp_path / "again.msh")
    assert again.tag_names == mesh.tag_names
    np.testing.assert_array_equal(again.boundary_vertices("inflow"),
                                  mesh.boundary_vertices("inflow"))


@pytest.mark.parametrize("z", [0.0, 2.0, "noise"])
def test_triangles_at_one_z_to_rounding_read_as_planar_and_are_checked_for_folds(tmp_path, z):
    """z = const != 0 or a z of rounding noise (CAD, STL) read as planar (a surface would skip
    the fold check); a spread of 1e-3 of the size is a surface."""
    mesh = unit_square(3)
    rng = np.random.default_rng(0)
    height = 1e-14 * rng.standard_normal(mesh.n_vertices) if z == "noise" else z
    points = np.c_[mesh.points, np.zeros(mesh.n_vertices) + height]
    meshio.Mesh(points, [("triangle", mesh.cells)]).write(tmp_path / "flat.vtu")
    back = pm.read_mesh(tmp_path / "flat.vtu")
    assert back.dim == 2
    np.testing.assert_array_equal(back.points, mesh.points)
    points[5, :2] = [0.9, 0.9]  # an inner vertex moved across its neighbours: folds
    meshio.Mesh(points, [("triangle", mesh.cells)]).write(tmp_path / "folded.vtu")
    with pytest.raises(ValueError, match=r"folded\.vtu': mesh has folded cells"):
        pm.read_mesh(tmp_path / "folded.vtu")
    points = np.c_[mesh.points, 1e-3 * rng.standard_normal(mesh.n_vertices)]
    meshio.Mesh(points, [("triangle", mesh.cells)]).write(tmp_path / "tilted.vtu")
    assert pm.read_mesh(tmp_path / "tilted.vtu").dim == 3


def test_obj_files_with_texture_and_normal_indices_are_read(tmp_path):
    """meshio refused the ``v/vt/vn`` corners exporters (Blender) write; negative indices
    count back from the last vertex."""
    vertices = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
    faces = {"full": "vt 0 0\nvt 1 0\nvt 1 1\nvn 0 0 1\nf 1/1/1 2/2/1 3/3/1\nf 1/1/1 3/3/1 4/2/1\n",
             "normal": "vn 0 0 1\ns off\ng part\nf 1//1 2//1 3//1\nf 1//1 3//1 4//1\n",
             "texture": "vt 0 0\nvt 1 0\nvt 1 1\nf 1/1 2/2 3/3\nf 1/1 3/3 4/2\n",
             "negative": "f -4 -3 -2\nf -4 -2 -1\n"}
    for name, text in faces.items():
        path = tmp_path / f"{name}.obj"
        path.write_text(f"# {name}\n{vertices}{text}")
        mesh = pm.read_mesh(path)
        assert mesh.dim == 2, name
        np.testing.assert_array_equal(mesh.points, SQUARE)
        np.testing.assert_array_equal(mesh.cells, [[0, 1, 2], [0, 2, 3]])
    (tmp_path / "quad.obj").write_text(f"{vertices}f 1/1 2/2 3/3 4/4\n")
    with pytest.raises(ValueError, match=r"quad\.obj' as a \.obj file \(line 5: a face of 4 "
                                         r"corners; physml's meshes are triangles only"):
        pm.read_mesh(tmp_path / "quad.obj")
    (tmp_path / "zero.obj").write_text(f"{vertices}f 0 1 2\n")
    with pytest.raises(ValueError, match=r"line 5: vertex index 0 with 4 vertices before it"):
        pm.read_mesh(tmp_path / "zero.obj")


def test_an_obj_file_starting_with_a_byte_order_mark_keeps_its_first_vertex(tmp_path):
    """The mark stuck to the first ``v``: that vertex was skipped, every index shifted by one
    and the faces referred to a vertex past the end."""
    path = tmp_path / "bom.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3\nf 1 3 4\n",
                    encoding="utf-8-sig")
    mesh = pm.read_mesh(path)
    np.testing.assert_array_equal(mesh.points, SQUARE)
    np.testing.assert_array_equal(mesh.cells, [[0, 1, 2], [0, 2, 3]])


def test_obj_comments_after_data_on_a_line_are_skipped(tmp_path):
    """``f 1 3 4 # c`` was refused: ``#`` read as a vertex index."""
    path = tmp_path / "comments.obj"
    path.write_text("v 0 0 0 # origin\nv 1 0 0\nv 1 1 0#corner\nv 0 1 0\n"
                    "f 1 2 3 # first\nf 1/1 3/3 4/2# second\n")
    mesh = pm.read_mesh(path)
    np.testing.assert_array_equal(mesh.points, SQUARE)
    np.testing.assert_array_equal(mesh.cells, [[0, 1, 2], [0, 2, 3]])


def test_a_binary_stl_with_float32_noise_in_z_reads_as_planar(tmp_path):
    """Binary STL stores float32: z = 0.1 computed as 0.3 - 0.2 in float32 at some vertices
    (a spread of 5e-9 of the size, one unit of roundoff) was read as a 3-D surface; a relief
    of 1e-5 of the size is a surface still."""
    mesh = unit_square(4)
    z = np.full(mesh.n_vertices, np.float32(0.1))
    z[::3] = np.float32(0.3) - np.float32(0.2)
    assert np.ptp(z) > 0
    points = np.c_[mesh.points, z].astype(np.float32)
    meshio.write(tmp_path / "flat.stl", meshio.Mesh(points, [("triangle", mesh.cells)]),
                 binary=True)
    back = pm.read_mesh(tmp_path / "flat.stl", repair=True)
    assert back.dim == 2
    np.testing.assert_allclose(np.sort(back.points, axis=0), np.sort(mesh.points, axis=0),
                               atol=1e-7)
    points[5, 2] += np.float32(1e-5)
    meshio.write(tmp_path / "relief.stl", meshio.Mesh(points, [("triangle", mesh.cells)]),
                 binary=True)
    assert pm.read_mesh(tmp_path / "relief.stl", repair=True).dim == 3


def test_a_legacy_vtk_polydata_file_is_refused_with_what_to_convert_it_to(tmp_path):
    path = tmp_path / "surface.vtk"
    path.write_text("# vtk DataFile Version 3.0\nsurface\nASCII\nDATASET POLYDATA\n"
                    "POINTS 4 float\n0 0 0 1 0 0 1 1 0 0 1 0\nPOLYGONS 2 8\n3 0 1 2\n3 0 2 3\n")
    with pytest.raises(ValueError, match=r"^cannot read mesh file '.*surface\.vtk': a legacy VTK "
                                         r"POLYDATA file, .*convert it to \.vtu, \.ply or \.obj"):
        pm.read_mesh(path)


def test_unreadable_file_names_the_file_and_the_formats(tmp_path):
    path = tmp_path / "mesh.xyz"
    path.write_text("not a mesh")
    with pytest.raises(ValueError, match=r"mesh\.xyz.*formats allowed: .*\.msh.*\.vtu"):
        pm.read_mesh(path)
    corrupt = tmp_path / "corrupt.msh"  # meshio exits the process on a file it fails to parse
    corrupt.write_text("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$Nodes\n3\n1 0 0\n")
    with pytest.raises(ValueError, match=r"cannot read mesh file .*corrupt\.msh"):
        pm.read_mesh(corrupt)


@pytest.mark.parametrize(("text", "reason"), [
    ("hello\n", ""),  # meshio prints its own error line and exits the process
    ("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$Nodes\n3\n1 0 0\n",
     " (meshio: ValueError: cannot reshape")])
def test_a_file_of_a_known_extension_that_fails_to_parse_is_one_message(tmp_path, capfd,
                                                                          text, reason):
    """The extension is one meshio reads, so the message says the file is not such a file
    rather than listing the formats, and meshio's own printing is held back."""
    path = tmp_path / "g.msh"
    path.write_text(text)
    with pytest.raises(ValueError) as refused:
        pm.read_mesh(path)
    assert str(refused.value).startswith(f"cannot read mesh file {str(path)!r} as a .msh file"
                                         f"{reason}")
    assert "formats allowed" not in str(refused.value)
    assert capfd.readouterr() == ("", "")


def test_cells_a_mesh_cannot_hold_are_refused_by_type_and_cell_fields_not_lost(tmp_path):
    points = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [2, 1, 0.0]])
    meshio.Mesh(points, [("triangle", np.array([[0, 1, 2], [0, 2, 3]])),
                         ("quad", np.array([[1, 4, 5, 2]]))]).write(tmp_path / "mixed.vtu")
    with pytest.raises(ValueError, match="holds quad cells beside its triangles"):
        pm.read_mesh(tmp_path / "mixed.vtu")
    annulus = pm.annulus(0.4)
    with pytest.raises(ValueError, match=r"carries its tags, not cell fields \(area\)"):
        pm.write_mesh(tmp_path / "a.msh", annulus, cell_data={"area": annulus.measures()})


def test_a_med_file_with_a_field_reads_as_its_mesh(tmp_path, cli_in_process):
    """meshio puts MED's field names in ``field_data`` ({"med:nom": [["u"]]}), where Gmsh's
    [tag, dim] pairs go: reading them as tags was a bare TypeError, a traceback from
    ``physml run``."""
    mesh = unit_square(4)
    path = tmp_path / "u.med"
    pm.write_mesh(path, mesh, point_data={"u": mesh.points[:, 0]})
    back = pm.read_mesh(path)
    np.testing.assert_array_equal(back.points, mesh.points)
    np.testing.assert_array_equal(back.cells, mesh.cells)
    assert back.tag_names == {}
    case = tmp_path / "med.yaml"
    case.write_text(f"kind: mesh_pde\nname: med\nmesh: {{file: {path}}}\n"
                    "pde: {name: poisson, source: 1.0}\nboundary: [{part: all}]\n"
                    f"output: {{folder: {tmp_path / 'runs'}, figures: false}}\n")
    assert cli_in_process("run", str(case), "--quiet").returncode == 0


@pytest.mark.parametrize(("ext", "holds", "has"), [
    (".stl", "triangle", "tetra"), (".off", "triangle", "tetra"), (".ply", "triangle", "tetra"),
    (".obj", "triangle", "tetra"), (".WKT", "triangle", "tetra"), (".node", "tetra", "triangle"),
    (".ele", "tetra", "triangle")])
def test_a_format_that_cannot_hold_the_mesh_s_cells_is_refused_before_writing(tmp_path, ext,
                                                                               holds, has):
    """meshio skipped the cells with a printed warning and left a file without them (the
    TetGen one hangs meshio's reader)."""
    mesh = pm.Mesh(CUBE, CUBE_TETS) if has == "tetra" else unit_square(2)
    path = tmp_path / f"m{ext}"
    with pytest.raises(ValueError, match=rf"^cannot write mesh file '.*m\{ext}': a "
                                         rf"{ext.lower()} file holds {holds} cells only, this "
                                         rf"mesh has {has} cells; use \.vtu, \.xdmf or \.msh$"):
        pm.write_mesh(path, mesh)
    assert not any(tmp_path.iterdir())


def test_an_upper_case_msh_extension_writes_gmsh_with_the_tags(tmp_path):
    """``.MSH`` wrote meshio's other .msh format (ANSYS Fluent), without the tags, and read
    a Fluent file that a ``.msh`` name refuses."""
    mesh = pm.annulus(0.4)
    path = tmp_path / "A.MSH"
    pm.write_mesh(path, mesh)
    assert path.read_bytes().startswith(b"$MeshFormat\n2.2")
    assert pm.read_mesh(path).tag_names == mesh.tag_names
    fluent = tmp_path / "fluent.MSH"
    meshio.Mesh(np.c_[SQUARE, np.zeros(4)], [("triangle", np.array([[0, 1, 2], [0, 2, 3]]))]
                ).write(fluent, file_format="ansys")
    with pytest.raises(ValueError, match=r"fluent\.MSH' as a \.msh file$"):
        pm.read_mesh(fluent)


def test_read_repair_merges_an_stl_style_soup(tmp_path):
    soup = SQUARE[[0, 1, 2, 0, 2, 3]]
    meshio.Mesh(np.c_[soup, np.zeros(6)], [("triangle", np.arange(6).reshape(2, 3))]).write(
        tmp_path / "soup.vtu")
    with pytest.raises(ValueError, match="duplicate vertices"):
        pm.read_mesh(tmp_path / "soup.vtu")
    assert pm.read_mesh(tmp_path / "soup.vtu", repair=True).n_vertices == 4


def test_a_read_mesh_s_check_messages_name_the_file(tmp_path):
    soup = SQUARE[[0, 1, 2, 0, 2, 3]]
    meshio.Mesh(np.c_[soup, np.zeros(6)], [("triangle", np.arange(6).reshape(2, 3))]).write(
        tmp_path / "soup.vtu")
    with pytest.raises(RepairableMeshError, match=r"^mesh file '.*soup.vtu': duplicate vertices "
                                                  r"3, 4 \(2 in all\) .*read_mesh\(\.\.\., "
                                                  r"repair=True\)\) to merge them$"):
        pm.read_mesh(tmp_path / "soup.vtu")


def test_repair_names_non_finite_positions_as_the_check_does(tmp_path):
    """The coincidence test (a k-d tree) once ran first and failed with SciPy's 'data must
    be finite', naming neither the file nor the vertex."""
    points = np.r_[SQUARE, [[np.nan, 0.0]]]
    cells = [[0, 1, 2], [0, 2, 4]]
    message = r"non-finite vertex positions at vertices 4 \(1 in all\)"
    with pytest.raises(ValueError, match=message):
        pm.Mesh(points, cells, check=False).repaired()
    meshio.Mesh(np.c_[points, np.zeros(5)], [("triangle", np.array(cells))]).write(
        tmp_path / "nan.vtu")
    with pytest.raises(ValueError, match=rf"^mesh file '.*nan.vtu': {message}$"):
        pm.read_mesh(tmp_path / "nan.vtu", repair=True)


# --- domains -------------------------------------------------------------------------------

def _euler(mesh):
    edges = np.unique(np.sort(mesh.cells[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    return mesh.n_vertices - len(edges) + mesh.n_cells


@pytest.mark.parametrize(
    "make, measure, euler",
    [
        (lambda: pm.disc(0.15), np.pi, 1),
        (lambda: pm.annulus(0.15), 0.75 * np.pi, 0),
        (lambda: pm.l_shape(0.2), 3.0, 1),
        (lambda: pm.box(0.3), 1.0, None),
        (lambda: pm.sphere(0.2), 4 * np.pi, 2),
        (lambda: pm.torus(0.15), 4 * np.pi**2 * 0.4, 0),
        (lambda: pm.double_torus(0.2), None, -2),
    ],
)
def test_gmsh_domains(make, measure, euler):
    mesh = make()
    assert not gmsh.isInitialized()
    if measure is not None:
        assert abs(mesh.measures().sum() - measure) < 0.03 * measure
    if euler is not None:
        assert _euler(mesh) == euler


@pytest.mark.parametrize("call, message", [
    (lambda: pm.disc("0.5"), "target edge length h='0.5' must be a number > 0"),
    (lambda: pm.disc(0.5, radius=0), "radius=0 must be a number > 0"),
    (lambda: pm.icosphere(-1), "level=-1 must be a whole number >= 0"),
    (lambda: pm.icosphere(1.5), "level=1.5 must be a whole number >= 0"),
])
def test_domain_sizes_are_refused_by_name_before_gmsh_sees_them(call, message):
    """A text h failed on '>' between str and int, radius 0 in Gmsh's own exception;
    icosphere(-1) was silently level 0."""
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
    assert not gmsh.isInitialized()


GMSH_CURE = (r"install it \(pip install gmsh.*apt install libglu1-mesa .*or read the mesh from "
             r"a file instead \(mesh\.file in a case, physml\.solvers\.mesh\.read_mesh\)")


def test_a_gmsh_domain_without_gmsh_names_the_domain_the_import_error_and_the_cure(
        monkeypatch, tmp_path):
    """Gmsh was imported with the package: a machine without it (no Linux aarch64 wheel) or
    without its X11/GL libraries (a headless node: OSError) could not load any case."""
    monkeypatch.setitem(sys.modules, "gmsh", None)
    with pytest.raises(ValueError, match=r"^the annulus domain is meshed with Gmsh, which cannot "
                                         r"be imported here \(import of gmsh halted.*\); "
                                         + GMSH_CURE):
        pm.annulus(0.3)
    assert pm.icosphere(1).n_vertices == 42  # needs no Gmsh
    (tmp_path / "gmsh.py").write_text('raise OSError("libGLU.so.1: cannot open shared object '
                                      'file: No such file or directory")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gmsh")
    with pytest.raises(ValueError, match=r"^the box domain is meshed with Gmsh, which cannot be "
                                         r"imported here \(libGLU\.so\.1: cannot open.*\); "
                                         + GMSH_CURE):
        pm.box(0.5)


def test_the_mesh_package_loads_without_gmsh():
    """A fresh process (this one has imported Gmsh) in which Gmsh cannot be imported."""
    probe = ("import sys; sys.modules['gmsh'] = None\n"
             "from physml.solvers import mesh as pm\n"
             "print(pm.icosphere(1).n_vertices)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "42", result.stderr


def test_a_gmsh_mesh_case_without_gmsh_exits_2_on_one_line(monkeypatch, tmp_path,
                                                            cli_in_process):
    monkeypatch.setitem(sys.modules, "gmsh", None)
    monkeypatch.chdir(tmp_path)
    result = cli_in_process("run", "poisson_lshape", "variant=quick")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.fullmatch(r"physml: error: the l_shape domain is meshed with Gmsh, which cannot be "
                        r"imported here .*" + GMSH_CURE + "\n",
                        result.stderr.splitlines(True)[-1])


@pytest.mark.slow
def test_without_gmsh_a_grid_case_validates_and_a_gmsh_mesh_case_ends_on_one_line(tmp_path):
    """The whole command in a fresh process where Gmsh cannot be imported: loading the cases
    needs no Gmsh, and a case on a Gmsh domain ends with exit 2 and the line naming the cure."""
    probe = ("import sys; sys.modules['gmsh'] = None\n"
             "from physml.cli import main\n"
             "print(main(['validate', 'burgers']), main(['run', 'poisson_lshape', "
             "'variant=quick']))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.stdout.split()[-2:] == ["0", "2"], result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"^physml: error: the l_shape domain is meshed with Gmsh, which cannot be "
                     r"imported here .*" + GMSH_CURE, result.stderr, re.MULTILINE)


# --- operators -----------------------------------------------------------------------------

def cotan_reference(points, cells):
    """Dense $L_{ij} = \\tfrac12(\\cot\\alpha + \\cot\\beta)$, $L_{ii} = -\\sum_j L_{ij}$."""
    L = np.zeros((len(points), len(points)))
    for tri in cells:
        for k in range(3):
            i, j, o = tri[(k + 1) % 3], tri[(k + 2) % 3], tri[k]
            a, b = points[i] - points[o], points[j] - points[o]
            cot = a @ b / np.linalg.norm(np.cross(a, b))
            L[i, j] += 0.5 * cot
            L[j, i] += 0.5 * cot
    return L - np.diag(L.sum(axis=1))


@pytest.mark.parametrize("dtype, tol", [(wp.float64, 1e-12), (wp.float32, 1e-5)])
def test_cotan_laplacian_matches_the_reference_formula(rng, dtype, tol):
    mesh = pm.icosphere(1)
    points = mesh.points * (1 + 0.1 * rng.random((mesh.n_vertices, 1)))
    mesh = pm.Mesh(points, mesh.cells)
    L = pm.to_scipy(pm.cotan_laplacian(mesh, dtype)).toarray()
    np.testing.assert_allclose(L, cotan_reference(points, mesh.cells), atol=tol * np.abs(L).max())


@pytest.mark.parametrize("dtype, height, tol", [(wp.float64, 1e-8, 1e-7),
                                                 (wp.float64, 1e-10, 1e-5),
                                                 (wp.float32, 1e-3, 1e-3)])
def test_a_thin_triangle_keeps_its_area_and_cotangents(dtype, height, tol):
    """A vertex 1e-8 off the diagonal of the unit square: two triangles of height ~1e-8 that
    the checks accept. Their areas and cotangents come from cross products, not from
    |a|^2 |b|^2 - (a.b)^2, which cancelled to half the digits there and to NaN below."""
    points = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5 + height]])
    cells = np.array([[0, 1, 2], [0, 2, 4], [0, 4, 3], [4, 2, 3]])
    mesh = pm.Mesh(points, cells)
    K = pm.to_scipy(pm.stiffness_matrix(mesh, dtype)).toarray()
    flat = np.hstack([points, np.zeros((5, 1))])
    reference = -cotan_reference(flat, cells)
    assert np.isfinite(K).all()
    np.testing.assert_allclose(K, reference, rtol=tol, atol=tol * np.abs(reference).max())
    area = np.abs(np.cross(flat[cells[:, 1]] - flat[cells[:, 0]],
                           flat[cells[:, 2]] - flat[cells[:, 0]]))[:, 2] / 2
    np.testing.assert_allclose(pm.cell_measures(mesh, dtype).numpy(), area, rtol=tol)


@pytest.mark.parametrize("offset", [0.0, 1e5, 1e6])
def test_float32_operators_keep_their_accuracy_on_a_mesh_far_from_the_origin(rng, offset):
    """The operators are translation invariant; float32 positions cast from the absolute
    coordinates lost |x| 2^-24 (1e-2 relative at 1e5, NaN at 1e6, as map coordinates are)."""
    mesh = unit_square(8)
    inner = np.setdiff1d(np.arange(mesh.n_vertices), mesh.boundary_vertices())
    points = 0.7 * mesh.points + 0.123456789
    points[inner] += 0.01 * rng.standard_normal((len(inner), 2))
    reference = pm.Mesh(points, mesh.cells)
    shifted = pm.Mesh(points + offset, mesh.cells)
    for operator in (pm.stiffness_matrix, pm.mass_matrix):
        expected = pm.to_scipy(operator(reference)).toarray()
        for given in (None, shifted.points):
            got = pm.to_scipy(operator(shifted, wp.float32, points=given)).toarray()
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_float32_operators_cast_a_mesh_s_positions_once():
    """A mesh's points are read-only: its float32 positions relative to its centre are cast
    once for every operator (they were recomputed at each call, 1 ms at 1e5 vertices), and
    the cached ones give the operator computed afresh."""
    from physml.solvers.mesh.operators import _points

    mesh = pm.Mesh(unit_square(6).points + 1e5, unit_square(6).cells)
    first = _points(mesh, wp.float32, None)
    assert _points(mesh, wp.float32, None) is first
    np.testing.assert_array_equal(first.numpy(), (mesh.points - mesh.centre).astype(np.float32))
    fresh = pm.to_scipy(pm.mass_matrix(mesh, wp.float32, points=mesh.points)).toarray()
    cached = pm.to_scipy(pm.mass_matrix(mesh, wp.float32)).toarray()
    np.testing.assert_array_equal(cached, fresh)


def test_cotan_laplacian_matches_libigl(rng):
    igl = pytest.importorskip("igl")
    mesh = pm.torus(0.3)
    L = pm.to_scipy(pm.cotan_laplacian(mesh))
    assert abs(L - igl.cotmatrix(mesh.points, mesh.cells)).max() < 1e-12


def test_tet_operators_match_the_reference():
    mesh = pm.Mesh(CUBE, CUBE_TETS)
    K = pm.to_scipy(pm.stiffness_matrix(mesh)).toarray()
    M = pm.to_scipy(pm.mass_matrix(mesh)).toarray()
    K_ref, M_ref = np.zeros((8, 8)), np.zeros((8, 8))
    for tet in CUBE_TETS:
        J = (CUBE[tet[1:]] - CUBE[tet[0]]).T
        G = np.r_[[-np.linalg.inv(J).sum(axis=0)], np.linalg.inv(J)]
        V = abs(np.linalg.det(J)) / 6
        K_ref[np.ix_(tet, tet)] += V * G @ G.T
        M_ref[np.ix_(tet, tet)] += V / 20 * (np.ones((4, 4)) + np.eye(4))
    np.testing.assert_allclose(K, K_ref, atol=1e-14)
    np.testing.assert_allclose(M, M_ref, atol=1e-15)
    np.testing.assert_allclose(pm.lumped_mass(mesh).numpy(), M_ref.sum(axis=1), atol=1e-15)


def test_to_scipy_is_the_linear_algebra_layers_csr_to_scipy():
    """One conversion of a 1x1-block Warp matrix to SciPy CSR serves both packages: the mesh
    name calls the linear-algebra function, and it gives exactly the stored entries of a matrix
    whose host entry count is only an upper bound (a sum of two matrices)."""
    K = pm.stiffness_matrix(pm.Mesh(CUBE, CUBE_TETS))
    by_mesh, by_linalg = pm.to_scipy(K), csr_to_scipy(K)
    assert by_mesh.nnz == by_linalg.nnz == K.nnz_sync() and (by_mesh != by_linalg).nnz == 0
    summed = csr_to_scipy(K + K)
    assert summed.data.size == summed.indices.size == by_mesh.nnz
    np.testing.assert_array_equal(summed.toarray(), 2 * by_mesh.toarray())


@pytest.mark.parametrize("points, cells", [
    (np.r_[CUBE, [[2.0, 2.0, 2.0]]], CUBE_TETS),  # vertex 8 in no cell: a diagonal entry only
    (pm.icosphere(2).points, pm.icosphere(2).cells[::-1]),
])
def test_csr_pattern_and_slots_follow_the_cells(points, cells):
    n, (m, k) = len(points), cells.shape
    indptr, indices, slots = (a.numpy() for a in csr_pattern(np.asarray(cells, np.int32), n))
    rows, cols = np.repeat(cells, k, axis=1).ravel(), np.tile(cells, (1, k)).ravel()
    adjacency = sp.coo_matrix((np.ones(m * k * k), (rows, cols)), shape=(n, n)).tocsr()
    expected = (adjacency + sp.identity(n, format="csr")).tocsr()
    expected.sort_indices()
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    np.testing.assert_array_equal(indices[slots], cols)  # each triplet's slot: its column ...
    np.testing.assert_array_equal(np.searchsorted(indptr, slots, side="right") - 1, rows)  # row


@pytest.mark.parametrize("dim", [2, 3])
def test_stiffness_summed_from_cells_equals_the_triplet_path_bitwise(rng, dim):
    mesh = unit_square(6) if dim == 2 else pm.icosphere(2)
    mesh = pm.Mesh(mesh.points * (1 + 0.1 * rng.random((mesh.n_vertices, 1))), mesh.cells)
    direct = pm.to_scipy(pm.stiffness_matrix(mesh))
    taped = pm.to_scipy(pm.stiffness_matrix(mesh, points=mesh.warp_points(requires_grad=True)))
    np.testing.assert_array_equal(direct.indices, taped.indices)
    np.testing.assert_array_equal(direct.data, taped.data)


@pytest.mark.parametrize("make", [lambda: unit_square(4), lambda: pm.icosphere(1),
                                  lambda: pm.Mesh(CUBE, CUBE_TETS)])
def test_gradient_divergence_and_stiffness_agree(rng, make):
    mesh = make()
    a = rng.normal(size=mesh.dim)
    linear = pm.gradient(mesh, wp.array(mesh.points @ a, dtype=wp.float64)).numpy()
    if not mesh.is_surface:  # the gradient of a linear field is exact in the plane and in 3D
        np.testing.assert_allclose(linear, np.broadcast_to(a, linear.shape), atol=1e-12)
    u = rng.normal(size=mesh.n_vertices)
    div_grad = pm.divergence(mesh, pm.gradient(mesh, wp.array(u, dtype=wp.float64))).numpy()
    K = pm.to_scipy(pm.stiffness_matrix(mesh))
    np.testing.assert_allclose(div_grad, -(K @ u), atol=1e-12)


def test_measures_and_normals_of_a_sphere():
    mesh = pm.icosphere(2)
    normals = pm.face_normals(mesh).numpy()
    centres = mesh.points[mesh.cells].mean(axis=1)
    assert np.all(np.einsum("ij,ij->i", normals, centres) > 0.99 * np.linalg.norm(centres,
                                                                                 axis=1))
    np.testing.assert_allclose(pm.cell_measures(mesh).numpy(), mesh.measures(), rtol=1e-12)


# --- convergence ---------------------------------------------------------------------------

def test_laplace_beltrami_eigenvalues_on_the_unit_sphere_converge_at_order_2():
    exact = np.array([2, 2, 2, 6, 6, 6, 6, 6], dtype=float)  # l(l+1), l = 1, 2
    hs, errors = [], []
    for level in (2, 3, 4):
        mesh = pm.icosphere(level)
        K = pm.to_scipy(pm.stiffness_matrix(mesh))
        M = pm.to_scipy(pm.mass_matrix(mesh))
        # dense: a Lanczos solve for 9 eigenvalues may miss one copy of the five-fold l = 2
        # eigenvalue (it did at level 2, returning an l = 3 one), depending on the CPU's BLAS
        w = sla.eigh(K.toarray(), M.toarray(), eigvals_only=True, subset_by_index=[0, 8])
        assert abs(w[0]) < 1e-10
        hs.append(mesh.edge_length())
        errors.append(np.abs(w[1:] - exact).max())
    assert errors[-1] < 0.02
    assert 1.8 < observed_order(hs, errors) < 2.3


def _quadrature(mesh):
    """Degree-2 rule: (m, q, k) barycentric points and (q,) weights summing to 1."""
    k = mesh.cells.shape[1]
    if k == 3:
        bary = np.full((3, 3), 1 / 6) + np.eye(3) / 2
    else:
        a, b = 0.5854101966249685, 0.1381966011250105
        bary = np.full((4, 4), b) + np.eye(4) * (a - b)
    return bary, np.full(len(bary), 1 / len(bary))


def p1_errors(mesh, u_h, u, grad_u):
    """True L2 and H1-seminorm errors of the P1 field u_h against u, grad_u (callables)."""
    bary, weights = _quadrature(mesh)
    x = np.einsum("qk,mkd->mqd", bary, mesh.points[mesh.cells])
    uh_q = np.einsum("qk,mk->mq", bary, u_h[mesh.cells])
    duh = pm.gradient(mesh, wp.array(u_h, dtype=wp.float64)).numpy()
    measure = mesh.measures()[:, None]
    l2 = np.sum(measure * weights * (u(x) - uh_q) ** 2)
    h1 = np.sum(measure * weights * np.sum((grad_u(x) - duh[:, None]) ** 2, axis=-1))
    return np.sqrt(l2), np.sqrt(h1)


@pytest.mark.parametrize("make, sizes", [(pm.l_shape, (0.2, 0.1, 0.05)),
                                         (pm.box, (0.4, 0.25, 0.15))])
def test_poisson_manufactured_solution_orders(make, sizes):
    k = np.array([1.0, 2.0, 1.0])

    def u(x):
        return np.sin(x @ k[: x.shape[-1]])

    def grad_u(x):
        return np.cos(x @ k[: x.shape[-1]])[..., None] * k[: x.shape[-1]]

    hs, l2, h1 = [], [], []
    for h in sizes:
        mesh = make(h)
        d = mesh.dim
        f = np.sum(k[:d] ** 2) * u(mesh.points)
        boundary = mesh.boundary_vertices()
        u_h = pm.poisson(mesh, f, boundary, u(mesh.points[boundary]))
        e0, e1 = p1_errors(mesh, u_h, u, grad_u)
        hs.append(mesh.edge_length())
        l2.append(e0)
        h1.append(e1)
    assert 1.8 < observed_order(hs, l2) < 2.4
    assert 0.85 < observed_order(hs, h1) < 1.3


def two_discs(h=0.25):
    """Two unit discs 3 apart: a mesh of two connected parts."""
    disc = pm.disc(h)
    n = disc.n_vertices
    points = np.vstack([disc.points, disc.points + [3.0, 0.0]])
    return pm.Mesh(points, np.vstack([disc.cells, disc.cells + n])), n


def test_a_mesh_part_without_a_source_or_a_dirichlet_vertex_is_named():
    """A part no source reaches is at infinite distance (it came out 0); a part without a
    Dirichlet vertex makes Poisson singular there (CG once ran to maxiter and advised
    raising it)."""
    mesh, n = two_discs()
    d = pm.heat_geodesic(mesh, 0)
    assert np.isfinite(d[:n]).all() and d[0] == 0.0 and d[:n].max() > 0.8
    assert np.isinf(d[n:]).all()
    both = pm.heat_geodesic(mesh, [0, n])
    np.testing.assert_allclose(both[n:], both[:n], rtol=1e-9, atol=1e-12)
    boundary = mesh.boundary_vertices()
    with pytest.raises(ValueError, match=r"the mesh has 2 connected parts and the one of vertices "
                                         rf"\[{n}, .* has no Dirichlet vertex"):
        pm.poisson(mesh, np.ones(2 * n), boundary[boundary < n])
    assert np.isfinite(pm.poisson(mesh, np.ones(2 * n), boundary[boundary < n], shift=1.0)).all()


def test_mesh_heat_and_poisson_name_a_bad_diffusivity_shift_or_dirichlet_value():
    """kappa = -1 ran the backward heat equation (max |u| 1 -> 5108 in 5 steps, no word);
    NaN values failed inside AMG or CG naming nothing of the caller's."""
    disc = pm.disc(0.25)
    u0 = disc.points[:, 0]
    for kappa in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=f"kappa={kappa} must be a finite diffusivity"):
            pm.heat(disc, u0, dt=0.01, n_steps=5, kappa=kappa)
    ones = np.ones(disc.n_vertices)
    with pytest.raises(ValueError, match="g holds NaN/Inf values"):
        pm.poisson(disc, ones, g=float("nan"))
    with pytest.raises(ValueError, match="shift=nan must be a finite number >= 0"):
        pm.poisson(disc, ones, shift=float("nan"))


@pytest.mark.parametrize("t", [0.0, -1e-3, float("nan")])
def test_the_heat_method_refuses_a_diffusion_time_that_is_not_positive(t):
    with pytest.raises(ValueError, match=f"t={t} must be a positive diffusion time"):
        pm.heat_geodesic(pm.icosphere(1), 0, t=t)


def test_heat_method_distance_converges_to_great_circle_distance():
    hs, errors = [], []
    for level in (2, 3, 4):
        mesh = pm.icosphere(level)
        d = pm.heat_geodesic(mesh, 0)
        exact = np.arccos(np.clip(mesh.points @ mesh.points[0], -1, 1))
        hs.append(mesh.edge_length())
        errors.append(np.abs(d - exact).max() / np.pi)
    assert errors[-1] < 0.015
    assert observed_order(hs, errors) > 0.7


def test_heat_method_distance_to_two_sources_is_zero_at_the_nearer_one():
    """Two sources a quarter circle apart on the unit sphere: phi is 0 at a source and nowhere
    below, and within 0.125 of the great-circle distance to the nearer source (0.117 at this
    level, against 0.051 for one source: the ridge where the nearer source changes is
    smoothed)."""
    mesh = pm.icosphere(3)
    P = mesh.points
    sources = np.array([0, np.argmin(np.abs(P @ P[0]))])
    phi = pm.heat_geodesic(mesh, sources)
    exact = np.arccos(np.clip(P @ P[sources].T, -1, 1)).min(axis=1)
    assert phi[sources].min() == 0.0 and phi.min() == 0.0
    assert np.abs(phi - exact).max() < 0.125


def test_heat_method_directions_of_gradients_too_small_to_square():
    from physml.solvers.mesh.pde import descent_directions

    grad = np.array([[3e-200, -4e-200, 0.0], [0.0, 0.0, 0.0], [1e-300, 0.0, 0.0], [2.0, 0, 0]])
    np.testing.assert_allclose(descent_directions(grad),
                               [[-0.6, 0.8, 0.0], [0, 0, 0], [-1, 0, 0], [-1, 0, 0]], rtol=1e-15)


def test_entrywise_gauss_seidel_matches_a_factorisation_entry_by_entry():
    from physml.errors import ConvergenceError
    from physml.solvers.linalg.relaxation import gauss_seidel_entrywise

    mesh = pm.icosphere(4)
    A = (pm.to_scipy(pm.mass_matrix(mesh, lumped=True))
         + mesh.edge_length() ** 2 * pm.to_scipy(pm.stiffness_matrix(mesh)))
    b = np.zeros(mesh.n_vertices)
    b[[0, 7]] = [1.0, 0.5]
    x, sweeps = gauss_seidel_entrywise(A, b, rtol=1e-14)
    reference = spla.spsolve(A.tocsc(), b)
    assert reference.min() < 1e-12  # the solution spans more than twelve decades
    assert np.max(np.abs(x - reference) / reference) < 1e-12
    assert 1 < sweeps < 200
    np.testing.assert_array_equal(gauss_seidel_entrywise(A, np.zeros_like(b))[0], 0.0)
    with pytest.raises(ConvergenceError, match="gauss_seidel did not converge in 3"):
        gauss_seidel_entrywise(A, b, rtol=1e-14, max_sweeps=3)


@pytest.mark.parametrize("s", [10.0, 100.0])
def test_entrywise_gauss_seidel_meets_rtol_where_the_sweeps_contract_slowly(s):
    """The sweeps stopped once no entry changed by rtol: 10-70x rtol short at s = 10, 100."""
    from physml.solvers.linalg.model_problems import poisson_2d
    from physml.solvers.linalg.relaxation import gauss_seidel_entrywise

    P = poisson_2d(32).tocsr()
    A = (sp.identity(P.shape[0]) + s * 4.0 * P / P.diagonal().max()).tocsr()
    b = np.zeros(P.shape[0])
    b[P.shape[0] // 2 + 16] = 1.0
    reference = spla.spsolve(A.tocsc(), b)
    for rtol in (1e-4, 1e-8):
        x, _ = gauss_seidel_entrywise(A, b, rtol=rtol)
        assert np.max(np.abs(x - reference) / reference) <= rtol


def test_the_heat_method_names_a_heat_step_its_sweeps_do_not_converge(monkeypatch):
    """The error named a maxiter and a preconditioner that heat_geodesic does not take."""
    import functools

    from physml.errors import ConvergenceError
    from physml.solvers.mesh import pde

    few = functools.partial(pde.gauss_seidel_entrywise, max_sweeps=3)
    monkeypatch.setattr(pde, "gauss_seidel_entrywise", few)
    mesh = pm.icosphere(1)
    with pytest.raises(ConvergenceError, match=r"heat_geodesic did not converge .* t=.* "
                       r"\(1 h², .* a t above 10 h² is solved by a sparse factorisation") as info:
        pm.heat_geodesic(mesh, 0)
    assert "maxiter" not in str(info.value) and "preconditioner" not in str(info.value)


def test_the_heat_method_at_a_large_diffusion_time_is_near_the_great_circle_distance():
    """At 1000 h² the heat step's 10,000 Gauss–Seidel sweeps did not converge, and
    heat_geodesic raised; it is a sparse factorisation above 10 h², which agrees with the
    sweeps where both run."""
    from physml.solvers.mesh import pde

    mesh = pm.icosphere(3)
    h2 = mesh.edge_length() ** 2
    exact = np.arccos(np.clip(mesh.points @ mesh.points[0], -1, 1))
    d = pm.heat_geodesic(mesh, 0, t=1000 * h2)
    assert d[0] == 0.0 and np.abs(d - exact).max() < 0.045  # 0.051 at the default t
    factorised = pm.heat_geodesic(mesh, 0, t=100 * h2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pde, "HEAT_STEP_DIRECT_RATIO", np.inf)
        swept = pm.heat_geodesic(mesh, 0, t=100 * h2)
    np.testing.assert_allclose(factorised, swept, rtol=0, atol=1e-10)


def test_the_heat_method_at_the_default_diffusion_time_is_gauss_seidel_bitwise(monkeypatch):
    """Up to 10 h² the heat step stays the sweeps: the same bits with the factorisation
    ruled out."""
    from physml.solvers.mesh import pde

    mesh = pm.icosphere(3)
    h2 = mesh.edge_length() ** 2
    default, ten = pm.heat_geodesic(mesh, 0), pm.heat_geodesic(mesh, 0, t=10 * h2)
    monkeypatch.setattr(pde, "HEAT_STEP_DIRECT_RATIO", np.inf)
    np.testing.assert_array_equal(default, pm.heat_geodesic(mesh, 0))
    np.testing.assert_array_equal(ten, pm.heat_geodesic(mesh, 0, t=10 * h2))


@pytest.mark.parametrize("theta, order", [(1.0, 1), (0.5, 2)])
def test_heat_time_order(theta, order):
    mesh = pm.icosphere(2)
    u0 = mesh.points[:, 2] + mesh.points[:, 0] ** 2
    reference = pm.heat(mesh, u0, dt=1e-3 / 64, n_steps=64, kappa=1.0, theta=0.5)[-1]
    errors = [np.abs(pm.heat(mesh, u0, dt=1e-3 / s, n_steps=s, kappa=1.0, theta=theta)[-1]
                     - reference).max() for s in (2, 4, 8)]
    assert abs(observed_order([1 / 2, 1 / 4, 1 / 8], errors) - order) < 0.2


def test_heat_dirichlet_values_stay_fixed():
    mesh = unit_square(6)
    fixed = mesh.boundary_vertices()
    states = pm.heat(mesh, mesh.points[:, 0], dt=0.01, n_steps=5, kappa=1.0, dirichlet=fixed)
    np.testing.assert_array_equal(states[:, fixed], np.broadcast_to(mesh.points[fixed, 0],
                                                                    (6, len(fixed))))


# --- gradients through the torch bridge ----------------------------------------------------

@pytest.mark.parametrize("make", [lambda: pm.disc(0.5), lambda: pm.icosphere(0),
                                  lambda: pm.box(0.7)])
@pytest.mark.parametrize("kind", ["stiffness", "mass"])
def test_operator_values_gradcheck(make, kind):
    mesh = make()
    x = torch.tensor(mesh.points, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: operator_values(p, mesh, kind), (x,))


def test_poisson_solve_keeps_no_dropped_mesh_alive():
    """The interior block's set-up is cached per mesh, weakly: a loop making a mesh per
    iteration kept the last 32 alive (+115 MiB at 8937 vertices)."""
    mesh = pm.disc(0.4)
    x = torch.tensor(mesh.points)
    first = poisson_solve(x, mesh, torch.ones(mesh.n_vertices, dtype=torch.float64))
    again = poisson_solve(x, mesh, torch.ones(mesh.n_vertices, dtype=torch.float64))
    torch.testing.assert_close(first, again, rtol=0, atol=0)  # the cached set-up, the same
    dropped = weakref.ref(mesh)
    del mesh
    gc.collect()
    assert dropped() is None


def test_poisson_solve_names_tensors_of_mixed_dtypes():
    mesh = pm.disc(0.4)
    x = torch.tensor(mesh.points)
    f = torch.ones(mesh.n_vertices, dtype=torch.float32)
    with pytest.raises(ValueError, match="one dtype .* got points torch.float64 on cpu, f "
                                         "torch.float32 on cpu"):
        poisson_solve(x, mesh, f)


def test_poisson_solve_checks_its_boundary_and_lengths_and_refuses_double_backward():
    mesh = pm.disc(0.4)
    x = torch.tensor(mesh.points, requires_grad=True)
    f = torch.ones(mesh.n_vertices, dtype=torch.float64)
    n = mesh.n_vertices
    for boundary in ([0, n], [-1, 0], [0, 0]):
        with pytest.raises(ValueError, match=f"distinct vertex indices in \\[0, {n}\\)"):
            poisson_solve(x, mesh, f, boundary=np.array(boundary))
    with pytest.raises(ValueError, match="g has shape \\(1,\\); poisson_solve needs \\(2,\\)"):
        poisson_solve(x, mesh, f, boundary=np.array([0, 1]), g=torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="f has shape"):
        poisson_solve(x, mesh, f[:-1])
    with pytest.raises(ValueError, match="boundary is empty; give at least one vertex"):
        poisson_solve(x, mesh, f, boundary=[])
    sphere = pm.icosphere(1)
    with pytest.raises(ValueError, match="the mesh has no boundary \\(a closed surface\\)"):
        poisson_solve(torch.tensor(sphere.points), sphere,
                      torch.ones(sphere.n_vertices, dtype=torch.float64))
    u = poisson_solve(x, mesh, f)
    with pytest.raises(RuntimeError, match="first order"):
        torch.autograd.grad(u.square().sum(), x, create_graph=True)
    v = operator_values(x, mesh)
    with pytest.raises(RuntimeError, match="operator_values's backward is first order"):
        torch.autograd.grad(v.square().sum(), x, create_graph=True)


@pytest.mark.parametrize("jacobi_rows", [mesh_bridge.JACOBI_ROWS, 0], ids=["jacobi", "amg"])
@pytest.mark.parametrize("make", [lambda: pm.disc(0.5), lambda: pm.box(0.7)])
def test_poisson_solve_gradcheck_and_backward_twice(make, jacobi_rows, monkeypatch):
    monkeypatch.setattr(mesh_bridge, "JACOBI_ROWS", jacobi_rows)
    used = []
    monkeypatch.setattr(mesh_bridge, "csr_solve", lambda *a, **k: used.append(
        k["preconditioner"]) or csr_solve(*a, **k))
    mesh = make()
    torch.manual_seed(0)
    x = torch.tensor(mesh.points, requires_grad=True)
    f = torch.randn(mesh.n_vertices, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, f: poisson_solve(p, mesh, f), (x, f))
    u = poisson_solve(x, mesh, f)
    w = torch.randn_like(u)
    first = torch.autograd.grad((u * w).sum(), (x, f), retain_graph=True)
    second = torch.autograd.grad((u * w).sum(), (x, f))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    np.testing.assert_allclose(u.detach().numpy(), pm.poisson(mesh, f.detach().numpy()),
                               atol=1e-12)
    assert set(used) == {Jacobi if jacobi_rows else SmoothedAggregationAMG}


def test_sparse_solve_gradcheck_in_values_and_right_hand_side():
    mesh = pm.disc(0.5)
    pattern = pm.pattern(mesh)
    values = operator_values(torch.tensor(mesh.points), mesh, "mass").requires_grad_()
    b = torch.randn(mesh.n_vertices, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, b: sparse_solve(v, b, pattern.indptr, pattern.indices), (values, b))


def test_reading_a_mesh_then_differentiating(tmp_path):
    path = Path(tmp_path) / "disc.msh"
    pm.write_mesh(path, pm.disc(0.4))
    mesh = pm.read_mesh(path)
    x = torch.tensor(mesh.points, requires_grad=True)
    area = operator_values(x, mesh, "mass").sum()  # sum of M = area
    (grad,) = torch.autograd.grad(area, x)
    assert abs(area.item() - mesh.measures().sum()) < 1e-12
    boundary = mesh.boundary_vertices()
    interior = np.setdiff1d(np.arange(mesh.n_vertices), boundary)
    assert np.abs(grad.numpy()[interior]).max() < 1e-12  # moving inner vertices keeps the area


def test_mesh_pdes_name_an_input_of_the_wrong_shape_or_index():
    mesh = pm.disc(0.2)
    n = mesh.n_vertices
    for call, message in (
            (lambda: pm.poisson(mesh, np.ones(n - 1)), f"f has shape ({n - 1},); the mesh has {n}"),
            (lambda: pm.poisson(mesh, np.ones((n, 1))), f"f has shape ({n}, 1)"),
            (lambda: pm.poisson(mesh, np.ones(n), g=[1.0, 2.0]), "g has shape (2,); pass one "
                                                                 "value or one per Dirichlet"),
            (lambda: pm.poisson(mesh, np.ones(n), dirichlet=[n + 5]),
             f"dirichlet: vertex indices must be whole numbers in [0, {n - 1}]"),
            (lambda: pm.heat(mesh, np.ones(n + 1), dt=0.01, n_steps=2, kappa=1.0),
             f"u0 has shape ({n + 1},)"),
            (lambda: pm.heat(mesh, np.ones(n), dt=0.01, n_steps=2.5, kappa=1.0),
             "n_steps=2.5 must be a whole number"),
            (lambda: pm.heat(mesh, np.ones(n), dt=-0.01, n_steps=2, kappa=1.0),
             "dt=-0.01 must be a positive number"),
            (lambda: pm.heat_geodesic(mesh, 0.5), "source: vertex indices must be whole"),
            (lambda: operator_values(mesh.points, mesh), "points is a ndarray; pass a "
                                                         "torch.Tensor")):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    np.testing.assert_array_equal(to_dense(pm.stiffness_matrix(mesh, np.float64)),
                                  to_dense(pm.stiffness_matrix(mesh, wp.float64)))


def test_a_dirichlet_vertex_listed_twice_is_refused_in_poisson_and_heat():
    """Two boundary parts joined with np.r_ share a corner: its last value silently won."""
    mesh = pm.Mesh(np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], float),
                   np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]))
    left, bottom = np.array([0, 3]), np.array([0, 1])
    message = re.escape("dirichlet must be distinct vertex indices; vertices [0] are listed "
                        "more than once")
    with pytest.raises(ValueError, match=message):
        pm.poisson(mesh, np.zeros(5), np.r_[left, bottom], np.r_[[1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=message):
        pm.heat(mesh, np.zeros(5), dt=0.1, n_steps=1, kappa=1.0, dirichlet=np.r_[left, bottom])


def test_complex_values_and_none_for_g_are_refused_by_name():
    """Complex f or flux ran on the real part (a ComplexWarning at most); g=None failed in
    NumPy's isfinite."""
    mesh = pm.icosphere(1)
    ones = np.ones(mesh.n_vertices)
    for call, message in (
            (lambda: pm.poisson(mesh, ones * (1 + 1j), [0]), "f has dtype complex128"),
            (lambda: pm.poisson(mesh, ones, [0], flux=ones * 1j), "flux has dtype complex128"),
            (lambda: pm.heat(mesh, ones * 1j, dt=0.1, n_steps=1, kappa=1.0),
             "u0 has dtype complex128"),
            (lambda: pm.poisson(mesh, ones, [0, 1, 2, 3], None), "g=None")):
        with pytest.raises(ValueError, match=re.escape(f"{message}; expected real numbers")):
            call()


def to_dense(matrix) -> np.ndarray:
    return pm.to_scipy(matrix).toarray()


def test_operator_inputs_of_another_length_or_type_are_refused_and_numpy_is_taken():
    """A shorter array was read past its end (NaN or garbage, no error); NumPy input failed
    inside Warp."""
    mesh = pm.disc(0.3)
    n, m = mesh.n_vertices, mesh.n_cells
    with pytest.raises(ValueError, match=rf"u is a Warp array of shape \(10,\).*\({n},\)"):
        pm.gradient(mesh, wp.array(np.ones(10), dtype=wp.float64))
    with pytest.raises(ValueError, match=rf"field is a Warp array of shape \(5,\).*\({m},\)"):
        pm.divergence(mesh, wp.array(np.ones((5, 2)), dtype=wp.vec2d))
    with pytest.raises(ValueError, match=rf"points is a Warp array of shape \(5,\).*\({n},\)"):
        pm.stiffness_matrix(mesh, points=wp.array(np.zeros((5, 2)), dtype=wp.vec2d))
    with pytest.raises(ValueError, match=r"u has shape \(3,\)"):
        pm.gradient(mesh, np.ones(3))
    with pytest.raises(ValueError, match=r"out is a Warp array of shape \(4,\)"):
        element_triplets(mesh, "stiffness", out=wp.empty(4, dtype=wp.float64))
    with pytest.raises(ValueError, match=r"triplets_grad is a Warp array of shape \(3,\)"):
        element_triplets_adjoint(mesh, "stiffness", mesh.warp_points(),
                                 wp.zeros(3, dtype=wp.float64))
    u = mesh.points[:, 0] + 2 * mesh.points[:, 1]
    grad = pm.gradient(mesh, u).numpy()
    np.testing.assert_allclose(grad, np.tile([1.0, 2.0], (m, 1)), atol=1e-12)
    div = pm.divergence(mesh, grad).numpy()
    np.testing.assert_allclose(div, -pm.to_scipy(pm.stiffness_matrix(mesh)) @ u, atol=1e-12)


@pytest.mark.parametrize("cells, facets, words", [
    ([[0, 2**32 + 1, 2], [0, 2, 3]], None, "cells reference vertices outside [0, 3]"),
    ([[0, 1.7, 2], [0, 2, 3.9]], None, "cells must hold whole-number vertex indices"),
    ([[0, 1, 2], [0, 2, 3]], [[0, 9]], "facets reference vertices outside [0, 3]"),
])
def test_vertex_indices_are_checked_before_they_are_cast(cells, facets, words):
    """An index past 2^31 wrapped and a fraction was truncated into a valid-looking mesh."""
    tags = {} if facets is None else {"facets": facets, "facet_tags": [1],
                                      "tag_names": {"b": 1}}
    with pytest.raises(ValueError, match=re.escape(words)):
        pm.Mesh(SQUARE, np.array(cells), **tags)


def test_msh_keeps_the_facet_tags_of_a_mesh_without_cell_tags(tmp_path):
    mesh = pm.Mesh(SQUARE, [[0, 1, 2], [0, 2, 3]], facets=[[0, 1], [1, 2]], facet_tags=[5, 6],
                   tag_names={"bottom": 5, "right": 6})
    pm.write_mesh(tmp_path / "m.msh", mesh)
    back = pm.read_mesh(tmp_path / "m.msh")
    assert back.boundary_parts() == ["bottom", "right"]
    assert back.boundary_vertices("right").tolist() == [1, 2]


def test_poisson_solve_names_a_connected_part_without_a_dirichlet_vertex():
    """The bridge ran CG to its iteration limit and blamed the solver."""
    disc = pm.disc(0.3)
    points = np.vstack([disc.points, disc.points + [5.0, 0.0]])
    mesh = pm.Mesh(points, np.vstack([disc.cells, disc.cells + disc.n_vertices]))
    with pytest.raises(ValueError, match="2 connected parts .* has no Dirichlet vertex"):
        poisson_solve(torch.tensor(points), mesh, torch.ones(mesh.n_vertices,
                                                              dtype=torch.float64),
                      disc.boundary_vertices())


def test_vmap_of_operator_values_gives_each_sample_the_matrix_of_its_own_points():
    """Moved non-uniformly (a uniform scaling leaves a 2D stiffness matrix as it is), so each
    sample's matrix differs from the others'."""
    mesh = pm.disc(0.5)
    points = torch.tensor(mesh.points)
    moved = torch.stack([points, points * torch.tensor([1.2, 1.0], dtype=torch.float64),
                         points * torch.tensor([1.0, 0.7], dtype=torch.float64)])
    for kind in ("stiffness", "mass"):
        expected = torch.stack([operator_values(p, mesh, kind) for p in moved])
        apart = [(expected[i] - expected[j]).abs().max() for i, j in ((0, 1), (0, 2), (1, 2))]
        assert min(apart) > 1e-2 * expected.abs().max(), kind
        torch.testing.assert_close(
            torch.func.vmap(lambda p, kind=kind: operator_values(p, mesh, kind))(moved), expected)


@pytest.mark.slow
def test_poisson_solve_runs_under_torch_compile_on_a_mesh_s_first_solve():
    """Dynamo traced into the cached NumPy set-up of a mesh never solved before and failed
    (``Expected np.nditer base, got bytes``); the set-up is now left to eager Python."""
    mesh = pm.disc(h=0.3)
    points = torch.tensor(mesh.points, requires_grad=True)
    f = torch.ones(mesh.n_vertices, dtype=torch.float64)
    compiled = torch.compile(lambda p: poisson_solve(p, mesh, f).sum(), backend="eager")(points)
    eager = poisson_solve(points, pm.disc(h=0.3), f).sum()
    assert float(compiled) == pytest.approx(float(eager), rel=1e-10)


def test_spmv_is_the_assembled_product_and_gradchecks():
    mesh = pm.disc(0.5)
    A = pm.to_scipy(pm.stiffness_matrix(mesh))
    torch.manual_seed(1)
    values = operator_values(torch.tensor(mesh.points), mesh).requires_grad_()
    u = torch.randn(mesh.n_vertices, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(mesh_bridge.spmv(values, u, mesh).detach().numpy(),
                               A @ u.detach().numpy(), rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(lambda v, u: mesh_bridge.spmv(v, u, mesh), (values, u))


def test_spmv_builds_its_index_arrays_once_per_pattern_and_device(monkeypatch):
    """spmv rebuilt the rows with np.repeat and copied two nnz-long index arrays to the device
    on every call (4.8 ms of a 2.7 ms product at 180k cells)."""
    mesh = unit_square(6)
    values = operator_values(torch.tensor(mesh.points), mesh).requires_grad_()
    u = torch.randn(mesh.n_vertices, dtype=torch.float64, requires_grad=True)
    repeats = []
    repeat = np.repeat
    monkeypatch.setattr(np, "repeat", lambda *a, **k: repeats.append(1) or repeat(*a, **k))
    outputs = [mesh_bridge.spmv(values, u, mesh) for _ in range(3)]
    grads = [torch.autograd.grad(out, (values, u), torch.arange(len(out), dtype=out.dtype))
             for out in outputs]
    assert len(repeats) == 1
    pat = pm.pattern(mesh, wp.float64)
    first, again = (mesh_bridge.csr_indices(pat, u.device) for _ in range(2))
    assert all(a is b for a, b in zip(first, again))
    for out, grad in zip(outputs[1:], grads[1:]):
        torch.testing.assert_close(out, outputs[0], rtol=0, atol=0)
        for g, g0 in zip(grad, grads[0]):
            torch.testing.assert_close(g, g0, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda v, u: mesh_bridge.spmv(v, u, mesh), (values, u))


def test_a_python_sigterm_handler_outlives_gmsh(tmp_path):
    """Gmsh installs its own SIGTERM handler at initialize: a run on a generated mesh died from
    SIGTERM without printing its resume command."""
    import subprocess
    import sys

    script = tmp_path / "term.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('handled', flush=True), sys.exit(0)))\n"
        "from physml.solvers import mesh as pm\n"
        "pm.disc(0.5)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "handled"


def test_a_mesh_keeps_read_only_arrays_that_later_edits_of_the_callers_do_not_reach():
    """Edits of the arrays passed in (a flipped diagonal, a moved vertex that folds cells)
    would otherwise change the mesh behind its checks, while its cached topology and operator
    patterns stayed those of the old cells."""
    square = unit_square(4)
    points, cells = square.points.copy(), square.cells.copy()
    tags, facets = np.arange(len(cells), dtype=np.int32), cells[:1, :2].copy()
    mesh = pm.Mesh(points, cells, tags, facets, np.array([1], dtype=np.int32))
    mass = lambda m: pm.to_scipy(pm.mass_matrix(m)).toarray()  # noqa: E731
    before = mass(mesh)
    cells[0], cells[16] = (0, 1, 5), (1, 6, 5)  # the diagonal 0-6 of the first square: 1-5
    assert not np.array_equal(mass(pm.Mesh(points, cells)), before)
    points[6] = (5.0, 5.0)
    tags[:], facets[:] = 7, 0
    np.testing.assert_array_equal(mass(mesh), before)
    np.testing.assert_array_equal(mesh.points, square.points)
    np.testing.assert_array_equal(mesh.cells, square.cells)
    assert mesh.cell_tags[0] == 0 and mesh.facets.any()
    for name in ("points", "cells", "cell_tags", "facets", "facet_tags"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(mesh, name)[0] = 0


@pytest.mark.parametrize("cells", [
    [("line3", [[0, 1, 4]]), ("triangle6", [[0, 1, 2, 4, 5, 6]])],
    [("triangle6", [[0, 1, 2, 4, 5, 6]]), ("tetra10", [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])],
])
def test_a_second_order_mesh_file_is_refused_as_second_order(tmp_path, cells):
    """Gmsh's second-order meshes were refused as holding no triangles or tetrahedra."""
    points = np.vstack([np.eye(4, 3)[[3, 0, 1, 2]], np.random.default_rng(0).random((6, 3))])
    path = tmp_path / "curved.msh"
    meshio.write(path, meshio.Mesh(points, [(kind, np.array(c)) for kind, c in cells]),
                 file_format="gmsh22", binary=False)
    types = sorted(kind for kind, _ in cells)
    with pytest.raises(ValueError, match=re.escape(
            f"mesh file {str(path)!r} holds second- or higher-order (curved) cells (cell "
            f"types: {types}), which are not supported")) as error:
        pm.read_mesh(path)
    assert "export a first-order mesh (Gmsh: -order 1, or Mesh.ElementOrder = 1)" in str(
        error.value)


def _count_set_ups(monkeypatch, name: str = "SmoothedAggregationAMG") -> list:
    """Patch the heat solver's preconditioner ``name`` (its AMG or Jacobi) so that each one it
    builds is recorded."""
    from physml.solvers.mesh import pde

    built = []
    original = getattr(pde, name)

    class Counted(original):
        def __init__(self, *args, **kwargs):
            built.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pde, name, Counted)
    return built


def _heat_reference(mesh, u0, dt, n_steps, theta, fixed):
    """The θ-scheme's states by SciPy's sparse LU."""
    K = pm.to_scipy(pm.stiffness_matrix(mesh))
    M = pm.to_scipy(pm.mass_matrix(mesh))
    free = np.setdiff1d(np.arange(mesh.n_vertices), fixed)
    A, E = M + theta * dt * K, M - (1 - theta) * dt * K
    lu = spla.splu(A[free][:, free].tocsc())
    states = [u0]
    for _ in range(n_steps):
        u = states[-1].copy()
        u[free] = lu.solve((E @ states[-1] - A[:, fixed] @ u[fixed])[free])
        states.append(u)
    return np.stack(states)


def test_a_mass_dominated_heat_step_is_jacobi_cg_without_an_amg_hierarchy(monkeypatch):
    """Each step built and applied smoothed-aggregation AMG, though M + θ dt K at the steps a
    rollout takes is well conditioned: Jacobi-CG was 4x faster at 2.4e4 vertices. At dt = 5 h²
    the stiffness ratio (34 with θ = 1/2, 68 with θ = 1) is far below HEAT_AMG_RATIO."""
    built = _count_set_ups(monkeypatch)
    mesh = pm.disc(0.1)
    h2 = mesh.edge_length() ** 2
    u0 = np.exp(-10 * (mesh.points ** 2).sum(1))
    fixed = mesh.boundary_vertices()[:5]
    for theta in (0.5, 1.0):
        states = pm.heat(mesh, u0, dt=5 * h2, n_steps=10, kappa=1.0, theta=theta,
                         dirichlet=fixed)
        reference = _heat_reference(mesh, u0, 5 * h2, 10, theta, fixed)
        np.testing.assert_allclose(states, reference, rtol=0, atol=1e-12)
    assert built == []


def test_a_stiff_heat_step_is_amg_cg_from_the_first_step(monkeypatch):
    """A step whose stiffness ratio exceeds HEAT_AMG_RATIO (6.8e3 at dt = 1e3 h², θ = 1/2)
    builds one AMG hierarchy with the stepper, before any step, and no Jacobi preconditioner;
    every step, in every segment, converges with it."""
    from physml.solvers.mesh import pde

    built, jacobi = _count_set_ups(monkeypatch), _count_set_ups(monkeypatch, "Jacobi")
    mesh = pm.disc(0.1)
    dt = 1e3 * mesh.edge_length() ** 2
    u0 = np.exp(-10 * (mesh.points ** 2).sum(1))
    rollout = pde.heat_stepper(mesh, dt=dt, kappa=1.0, theta=0.5)
    assert len(built) == 1
    first = rollout(u0, 3)
    states = np.concatenate([first, rollout(first[-1], 3)[1:]])
    assert len(built) == 1 and jacobi == []
    np.testing.assert_allclose(states, _heat_reference(mesh, u0, dt, 6, 0.5, []), rtol=0,
                               atol=1e-12)


def test_a_stiff_heat_run_in_two_segments_is_one_run_bitwise():
    """A heat run resumed builds its stepper anew: the steps after the resume must be those of
    the run not stopped. The first solve that needed over 500 Jacobi-CG iterations switched to
    AMG-CG for the rest of a stepper's life, so the resumed stepper took that solve again from
    Jacobi and differed by up to 9e-15."""
    mesh = pm.disc(0.02)
    dt = 1e4 * mesh.edge_length() ** 2  # Jacobi-CG: over 520 iterations a step
    u0 = np.exp(-10 * (mesh.points ** 2).sum(1))
    whole = pm.heat(mesh, u0, dt=dt, n_steps=4, kappa=1.0, theta=0.5)
    first = pm.heat(mesh, u0, dt=dt, n_steps=2, kappa=1.0, theta=0.5)
    second = pm.heat(mesh, first[-1], dt=dt, n_steps=2, kappa=1.0, theta=0.5)
    np.testing.assert_array_equal(np.concatenate([first, second[1:]]), whole)


def test_a_heat_rollout_holds_its_states_once():
    """The rollout writes each state into its (n_steps + 1, n) output as it is solved: it held a
    list of the states and stacked it at the end, twice the states at its peak."""
    import tracemalloc

    from physml.solvers.mesh import pde

    mesh = pm.disc(0.05)
    rollout = pde.heat_stepper(mesh, dt=1e-3, kappa=1.0)
    u0 = np.exp(-10 * (mesh.points ** 2).sum(1))
    tracemalloc.start()
    try:
        states = rollout(u0, 200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert states.shape == (201, mesh.n_vertices)
    assert peak < 1.3 * states.nbytes


def test_a_heat_rollout_keeps_every_save_every_th_state():
    """``save_every`` keeps steps 0, k, 2k, ...: the same states, bitwise, as every step kept;
    an n_steps it does not divide is refused."""
    from physml.solvers.mesh import pde

    mesh = pm.disc(0.1)
    rollout = pde.heat_stepper(mesh, dt=1e-2, kappa=1.0, theta=0.5)
    u0 = np.exp(-10 * (mesh.points ** 2).sum(1))
    np.testing.assert_array_equal(rollout(u0, 6, save_every=3), rollout(u0, 6)[::3])
    with pytest.raises(ValueError, match="n_steps=5 is not a multiple of save_every=3"):
        rollout(u0, 5, save_every=3)


def test_torch_func_transforms_of_the_mesh_bridge_equal_eager_calls_or_are_refused():
    mesh = pm.disc(0.5)
    points = torch.tensor(mesh.points)
    f = torch.tensor(np.random.default_rng(0).standard_normal((2, mesh.n_vertices)))

    def loss(p, source):
        return poisson_solve(p, mesh, source).square().sum()

    def eager_grads(source):
        p, s = points.clone().requires_grad_(), source.clone().requires_grad_()
        loss(p, s).backward()
        return p.grad, s.grad

    grads = [eager_grads(source) for source in f]
    close = torch.testing.assert_close
    close(torch.func.vmap(lambda s: poisson_solve(points, mesh, s))(f),
          torch.stack([poisson_solve(points, mesh, s) for s in f]))
    close(torch.func.grad(loss, argnums=(0, 1))(points, f[0]), grads[0])
    per_sample = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)), in_dims=(None, 0))
    close(per_sample(points, f), tuple(torch.stack(g) for g in zip(*grads)))
    moved = torch.stack([points, 1.1 * points])
    close(torch.func.vmap(lambda p: operator_values(p, mesh))(moved),
          torch.stack([operator_values(p, mesh) for p in moved]))
    close(torch.func.jacrev(lambda p: operator_values(p, mesh, "mass"))(points),
          torch.autograd.functional.jacobian(lambda p: operator_values(p, mesh, "mass"), points))
    with pytest.raises(RuntimeError, match="vmap over the matrix of a sparse solve"):
        torch.func.vmap(lambda p: poisson_solve(p, mesh, f[0]))(moved)
    with pytest.raises(NotImplementedError, match=r"forward-mode .* of operator_values"):
        torch.func.jvp(lambda p: operator_values(p, mesh), (points,), (points,))
    with pytest.raises(RuntimeError, match="operator_values's backward is first order"):
        torch.func.grad(lambda p: torch.func.grad(
            lambda q: operator_values(q, mesh).square().sum())(p).sum())(points)
