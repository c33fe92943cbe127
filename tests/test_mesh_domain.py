"""A mesh as a physics-informed domain: sampling, membership, named parts, normals, distance."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from physml.geometry import MeshDomain
from physml.solvers import mesh as pm

CASES = Path(__file__).parents[1] / "cases"


@pytest.fixture(scope="module")
def annulus():
    return MeshDomain(pm.annulus(0.1))


def test_an_annulus_mesh_samples_measures_and_bounds_like_its_polygons(annulus):
    rng = np.random.default_rng(0)
    assert annulus.part_names == ["inner", "outer"]
    measures = dict(zip(annulus.part_names, (p.measure for p in annulus.parts())))
    np.testing.assert_allclose([measures["inner"], measures["outer"]], [np.pi, 2 * np.pi],
                               rtol=2e-3)  # inscribed polygons of the circles
    P = annulus.sample_interior(4000, rng, "sobol")
    assert annulus.inside(P).all() and (annulus.distance(P) > 0).all()
    box = np.ptp(annulus.bounds, axis=1).prod()
    fraction = annulus.inside(annulus.bounds[:, 0] + np.ptp(annulus.bounds, axis=1)
                              * rng.random((100000, 2))).mean()
    area = annulus.mesh.measures().sum()
    assert fraction * box == pytest.approx(area, rel=1e-2)  # Monte Carlo of the membership
    B, index = annulus.sample_boundary(400, rng)
    np.testing.assert_allclose(annulus.distance(B), 0.0, atol=1e-12)
    N = annulus.normals(B, index)
    radial = B / np.linalg.norm(B, axis=1, keepdims=True)
    outer = index == annulus.part_names.index("outer")
    assert (np.sum(N * radial, axis=1)[outer] > 0.99).all()  # away from the centre
    assert (np.sum(N * radial, axis=1)[~outer] < -0.99).all()  # into the hole
    assert not annulus.interior(B + 1e-6 * N).any() and annulus.interior(B - 1e-3 * N).all()
    X = torch.as_tensor(P[:8], dtype=torch.float64)
    np.testing.assert_allclose(annulus.distance(X).numpy(), annulus.distance(P[:8]))


def test_a_tetrahedral_box_is_a_domain_with_outward_face_normals():
    box = MeshDomain(pm.box(0.3))
    rng = np.random.default_rng(1)
    assert box.part_names == ["boundary"]
    Q = rng.uniform(-0.2, 1.2, (3000, 3))
    np.testing.assert_array_equal(box.inside(Q), np.all((Q >= 0) & (Q <= 1), axis=1))
    P = box.sample_interior(1000, rng)
    assert box.inside(P).all() and (box.distance(P) > 0).all()
    assert (box.distance(Q[~box.inside(Q)]) < 0).all()
    B, index = box.sample_boundary(300, rng)
    np.testing.assert_allclose(box.distance(B), 0.0, atol=1e-12)
    N = box.normals(B, index)
    np.testing.assert_allclose(np.abs(N).max(axis=1), 1.0, atol=1e-12)  # axis-aligned faces
    assert (np.sum(N * (B - 0.5), axis=1) > 0.49).all()


def test_a_tetrahedral_domain_in_time_takes_rows_with_the_time_last():
    """The hard-constraint transform passes (x, y, z, t) rows: the 3-D distance once broadcast
    the time into the coordinates and failed; it reads the space columns only."""
    box = MeshDomain(pm.box(0.5))
    P = box.sample_interior(16, np.random.default_rng(2))
    X = np.hstack([P, np.full((16, 1), 0.7)])
    np.testing.assert_array_equal(box.distance(X), box.distance(P))
    Xt = torch.as_tensor(X)
    np.testing.assert_allclose(box.distance(Xt).numpy(), box.distance(P), rtol=1e-12)


def test_a_tetrahedral_domain_classifies_a_regular_grid_exactly():
    """A grid's points lie on the planes through the boundary triangles' shared edges (the
    diagonals of the box's faces): a ray along an axis would cross two triangles there, or
    none."""
    box = MeshDomain(pm.box(0.25))
    g = np.linspace(-0.1, 1.1, 25)
    Q = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    off_the_boundary = np.all(np.abs(Q) > 1e-9, axis=1) & np.all(np.abs(Q - 1) > 1e-9, axis=1)
    Q = Q[off_the_boundary]
    inside = np.all((Q > 0) & (Q < 1), axis=1)
    np.testing.assert_array_equal(box.inside(Q), inside)
    assert np.array_equal(box.distance(Q)[:, 0] > 0, inside)


def test_a_surface_mesh_is_refused():
    with pytest.raises(ValueError, match="a surface mesh has no interior"):
        MeshDomain(pm.icosphere(1))


def test_a_nearly_flat_surface_file_is_refused_naming_the_file_and_its_z_range(tmp_path):
    square = pm.l_shape(0.5)  # (a file with this z noise reads as planar: built in memory)
    z = 2.0 + 1e-9 * np.random.default_rng(0).standard_normal(square.n_vertices)
    flat = pm.Mesh(np.c_[square.points, z], square.cells, source=str(tmp_path / "l.vtu"))
    with pytest.raises(ValueError, match=r"^mesh file '.*l\.vtu': a surface mesh has no interior"
                                         r".*all its vertices lie within \d\.\de-09 of the plane "
                                         r"z = 2, a spread of \d\.\de-09 of its diameter"):
        MeshDomain(flat)
    with pytest.raises(ValueError, match=r"^a surface mesh has no interior.*tetrahedra$"):
        MeshDomain(pm.icosphere(1))


def test_membership_and_distance_at_large_coordinates_raise_no_overflow_warnings():
    """A level edge's ray test divided by 1e-300, which overflowed (a RuntimeWarning) once
    the coordinates reached 1e6; the membership was and is right."""
    mesh = pm.l_shape(0.25)
    P = np.random.default_rng(0).uniform(-1.2, 1.2, (500, 2))
    small = MeshDomain(mesh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        large = MeshDomain(pm.Mesh(1e6 * mesh.points, mesh.cells))
        np.testing.assert_array_equal(large.inside(1e6 * P), small.inside(P))
        np.testing.assert_array_equal(large.interior(1e6 * P), small.interior(P))
        distance = large.distance(1e6 * P)
    assert np.isfinite(distance).all()
    np.testing.assert_array_equal(distance > 0, small.distance(P) > 0)


def test_a_mesh_case_names_the_mesh_parts_when_one_is_unknown(tmp_path):
    from physml.cases.registry import load_case

    text = (CASES / "poisson_annulus_mesh.yaml").read_text().replace(
        "boundary: [inner]", "boundary: [hole]")
    (tmp_path / "case.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"'hole' does not exist; allowed: inner, outer"):
        load_case(tmp_path / "case.yaml")


def _grid(n, x0=0.0):
    """Triangles of an n x n grid on [x0, x0 + 1] x [0, 1]: points (p, 2), cells (2 n^2, 3)."""
    x, y = np.meshgrid(np.linspace(x0, x0 + 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    points = np.c_[x.ravel(), y.ravel()]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = (i * (n + 1) + j).ravel()
    cells = np.r_[np.c_[a, a + n + 1, a + n + 2], np.c_[a, a + n + 2, a + 1]]
    return points, cells


def _write(path, points, cells, cell_type="triangle"):
    import meshio

    meshio.Mesh(np.c_[points, np.zeros(len(points))] if points.shape[1] == 2 else points,
                [(cell_type, cells)]).write(path)


@pytest.mark.parametrize("noise", [1e-10, 1e-8, "float32"])
def test_a_triangle_soup_with_rounding_noise_is_refused_then_merged_into_one_mesh(tmp_path,
                                                                                  noise):
    """Each triangle with its own corners, the copies apart by round-off (below 1e-6 of the
    mesh's size): a cracked mesh, refused; repairing merges the copies into the mesh."""
    points, cells = _grid(6)
    rng = np.random.default_rng(0)
    soup = points[cells].reshape(-1, 2)
    soup = (soup.astype(np.float32).astype(np.float64) + np.spacing(soup.astype(np.float32))
            * rng.integers(0, 2, soup.shape) if noise == "float32"
            else soup + noise * rng.standard_normal(soup.shape))
    _write(tmp_path / "soup.vtu", soup, np.arange(len(soup)).reshape(-1, 3))
    with pytest.raises(pm.checks.RepairableMeshError,
                       match=r"soup\.vtu': duplicate vertices .*\(\d+ in all\) coincide "
                             r"with earlier vertices"):
        pm.read_mesh(tmp_path / "soup.vtu")
    mesh = pm.read_mesh(tmp_path / "soup.vtu", repair=True)
    assert (mesh.n_vertices, mesh.n_cells) == (len(points), len(cells))
    assert len(mesh.boundary_vertices()) == 24
    exact = pm.Mesh(points, cells)
    order = np.lexsort(np.round(mesh.points, 6).T)
    np.testing.assert_allclose(pm.poisson(mesh, np.ones(mesh.n_vertices))[order],
                               pm.poisson(exact, np.ones(len(points)))[
                                   np.lexsort(np.round(points, 6).T)], atol=1e-6)


def test_a_valid_mesh_with_an_edge_below_the_duplicate_distance_reads_unchanged(tmp_path):
    """Vertices 1e-9 apart joined by an edge (a thin boundary-layer row) stay apart: no
    vertex closer than a thousandth of the shortest edge is merged."""
    points, cells = _grid(4)
    top = points[:, 1] == 1
    layer = np.c_[points[top, 0], np.full(top.sum(), 1 + 1e-9)]
    below, above = np.flatnonzero(top), len(points) + np.arange(top.sum())
    strip = np.r_[np.c_[below[:-1], below[1:], above[1:]], np.c_[below[:-1], above[1:],
                                                                 above[:-1]]]
    points, cells = np.r_[points, layer], np.r_[cells, strip]
    _write(tmp_path / "layer.vtu", points, cells)
    for repair in (False, True):
        mesh = pm.read_mesh(tmp_path / "layer.vtu", repair=repair)
        np.testing.assert_array_equal(mesh.points, points)
        np.testing.assert_array_equal(mesh.cells, cells)


def test_a_non_conforming_interface_is_refused_with_the_mesher_s_cure_even_repaired(tmp_path):
    """Two squares meshed apart (3 and 4 vertices on their shared side): the inner ones lie
    inside the other square's edges (hanging nodes), a crack that merging does not close."""
    (a, ca), (b, cb) = _grid(2), _grid(3, x0=1.0)
    _write(tmp_path / "two.vtu", np.r_[a, b], np.r_[ca, cb + len(a)])
    message = (r"two\.vtu': non-conforming mesh: boundary vertices .*\(3 in all\) lie inside "
               r"boundary edges they are not corners of \(vertex \d+ at \(1, 0\.\d+\)\).*"
               r"conforming shared curves \(Gmsh: fragment.*it does not split edges")
    for repair in (False, True):
        with pytest.raises(ValueError, match=message):
            pm.read_mesh(tmp_path / "two.vtu", repair=repair)


def test_a_crack_is_named_before_duplicates_whose_merging_collapses_a_cell():
    """The two squares' crack beside a cell listing vertex 0 and an exact copy of it, which
    merging collapses (and repairing drops): non-conforming, not repairable."""
    (a, ca), (b, cb) = _grid(2), _grid(3, x0=1.0)
    points = np.r_[a, b, a[:1]]
    cells = np.r_[ca, cb + len(a), [[0, len(points) - 1, 3]]]
    with pytest.raises(ValueError, match="non-conforming mesh") as refused:
        pm.Mesh(points, cells)
    assert not isinstance(refused.value, pm.checks.RepairableMeshError)


def test_a_tetrahedral_mesh_with_a_vertex_inside_a_boundary_face_is_non_conforming():
    """Vertex 4 inside the face a b c of one tetrahedron, corner of the three on its other
    side: refused; with the tetrahedron split at 4 as well, the mesh conforms. A vertex in a
    face's plane beyond its edge (3, past the edge 1-2 of the obtuse face 0 1 2) is not inside
    it."""
    a, b, c, m = [1.0, 0, 0], [1.0, 1, 0], [1.0, 0, 1], [1.0, 0.25, 0.25]
    points = np.array([a, b, c, [0.0, 0, 0], m, [2.0, 0.3, 0.3]])
    fan = [[0, 1, 4, 5], [1, 2, 4, 5], [2, 0, 4, 5]]
    with pytest.raises(ValueError, match=r"non-conforming mesh: boundary vertices 4 \(1 in all\)"
                                         r" lie inside boundary faces"):
        pm.Mesh(points, [[0, 1, 2, 3], *fan])
    pm.Mesh(points, [[0, 1, 4, 3], [1, 2, 4, 3], [2, 0, 4, 3], *fan])
    obtuse = np.array([[0.5, 0.1, 0], [0.0, 0, 0], [1.0, 0, 0], [0.5, -0.1, 0], [0.5, 0, 1]])
    pm.Mesh(obtuse, [[0, 1, 2, 4], [1, 2, 3, 4]])


def _two_triangles_with_a_copy(apart, height=1.0, shift=0.0):
    """The rectangle [0, 1] x [0, height] moved by ``shift``, in two triangles, the second
    with vertex 4 in place of vertex 0: ``apart`` from it up and to the left (at least that
    far from every edge), or its float32 rounding where ``apart`` is "float32"."""
    points = shift + np.array([[0.0, 0.0], [1.0, 0.0], [1.0, height], [0.0, height]])
    copy = (points[0].astype(np.float32).astype(np.float64) if apart == "float32"
            else points[0] + apart * np.array([-1.0, 1.0]) / np.sqrt(2))
    return np.r_[points, [copy]], [[0, 1, 2], [4, 2, 3]]


@pytest.mark.parametrize("height, distance", [(1.0, 1e-6 * np.sqrt(2)), (1e-4, 1e-3 * 1e-4)])
def test_vertices_within_the_duplicate_distance_are_one_and_twice_as_far_two(height, distance):
    """The distance is 1e-6 of the mesh's size (here its diagonal, sqrt 2) or a thousandth of
    its shortest edge (here 1e-4), whichever is less: half of it apart, duplicates; twice, two
    vertices of a valid mesh."""
    with pytest.raises(pm.checks.RepairableMeshError, match="duplicate vertices 4 "):
        pm.Mesh(*_two_triangles_with_a_copy(distance / 2, height))
    pm.Mesh(*_two_triangles_with_a_copy(2 * distance, height))


def test_a_float32_copy_of_a_vertex_far_from_the_origin_is_a_duplicate():
    """The mesh's size counts its largest coordinate: a unit square at 1e4, whose float32
    copies lie 5.5e-4 apart (1e-6 of its diagonal is 1.4e-6), still has duplicates."""
    points, cells = _two_triangles_with_a_copy("float32", shift=1e4 + 0.1)
    assert 1e-4 < np.linalg.norm(points[4] - points[0]) < 1e-3
    with pytest.raises(pm.checks.RepairableMeshError, match="duplicate vertices 4 "):
        pm.Mesh(points, cells)


def test_a_planar_file_with_z_rounding_noise_is_read_planar_and_checked_for_folds(tmp_path):
    """z noise of 1e-9 of the x-y extent is a plane (its folds refused); 1e-3 a surface."""
    points, cells = _grid(4)
    rng = np.random.default_rng(0)
    for scale, dim in ((1e-9, 2), (1e-3, 3)):
        noisy = np.c_[points, scale * rng.standard_normal(len(points))]
        _write(tmp_path / "flat.vtu", noisy, cells)
        assert pm.read_mesh(tmp_path / "flat.vtu").dim == dim
    noisy = np.c_[points, 1e-9 * rng.standard_normal(len(points))]
    noisy[6, :2] = [0.9, 0.9]  # an inner vertex dragged across its neighbours
    _write(tmp_path / "folded.vtu", noisy, cells)
    with pytest.raises(ValueError, match=r"folded\.vtu': mesh has folded cells"):
        pm.read_mesh(tmp_path / "folded.vtu")


def test_gmsh_files_without_the_domain_s_cells_name_the_setting_to_change(tmp_path):
    """Quads only, boundary groups only (Gmsh then saves those alone), and Mesh.SaveAll with
    groups (MSH 2.2: every tag 0; MSH 4.1: unreadable by meshio)."""
    import meshio

    gmsh = pytest.importorskip("gmsh", reason="no gmsh for this platform")

    points, cells = _grid(2)
    quads = np.c_[cells[: len(cells) // 2, :2], cells[len(cells) // 2:, [2, 1]]]
    _write(tmp_path / "quads.vtu", points, quads, "quad")
    with pytest.raises(ValueError, match=r"quads\.vtu' holds no triangles or tetrahedra "
                                         r"\(cell types: \['quad'\]\); .*without recombination"):
        pm.read_mesh(tmp_path / "quads.vtu")
    lines = np.array([[0, 1], [1, 2]])
    boundary = meshio.Mesh(np.c_[points, np.zeros(len(points))], [("line", lines)],
                           cell_data={"gmsh:physical": [np.ones(2, int)],
                                      "gmsh:geometrical": [np.ones(2, int)]},
                           field_data={"wall": np.array([1, 1])})
    boundary.write(tmp_path / "wall.msh", file_format="gmsh22")
    with pytest.raises(ValueError, match=r"wall\.msh' holds no triangles.*\['line'\]\); Gmsh "
                                         r"saves only the elements of its physical groups.*"
                                         r"add a Physical Surface"):
        pm.read_mesh(tmp_path / "wall.msh")
    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        square = gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
        gmsh.model.occ.synchronize()
        side = gmsh.model.getBoundary([(2, square)], oriented=False)[0][1]
        gmsh.model.addPhysicalGroup(1, [side], name="inflow")
        gmsh.option.setNumber("Mesh.MeshSizeMax", 0.5)
        gmsh.option.setNumber("Mesh.SaveAll", 1)
        gmsh.model.mesh.generate(2)
        for version in (2.2, 4.1):
            gmsh.option.setNumber("Mesh.MshFileVersion", version)
            gmsh.write(str(tmp_path / f"saveall_{version}.msh"))
    finally:
        gmsh.finalize()
    with pytest.raises(ValueError, match=r"names physical groups \['inflow'\] but tags every "
                                         r"element 0 \(Gmsh writes that with Mesh.SaveAll"):
        pm.read_mesh(tmp_path / "saveall_2.2.msh")
    with pytest.raises(ValueError, match=r"saveall_4\.1\.msh' as a \.msh file \(meshio: .*; "
                                         r"Gmsh's Mesh.SaveAll = 1 beside physical groups"):
        pm.read_mesh(tmp_path / "saveall_4.1.msh")


def test_an_ascii_stl_file_reads_without_warnings(tmp_path, capsys):
    """meshio's binary-or-ASCII probe multiplies the header's uint32 by 50, which overflows on
    an ASCII file's text: harmless (the sizes then differ, as they must), and not shown."""
    import meshio

    points, cells = _grid(2)
    meshio.Mesh(np.c_[points, np.zeros(len(points))], [("triangle", cells)]).write(
        tmp_path / "square.stl", binary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mesh = pm.read_mesh(tmp_path / "square.stl")
    assert (mesh.n_vertices, mesh.n_cells) == (9, 8)
    assert capsys.readouterr().err == ""
