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
    import meshio

    square = pm.l_shape(0.5)
    z = 2.0 + 1e-9 * np.random.default_rng(0).standard_normal(square.n_vertices)
    meshio.Mesh(np.c_[square.points, z], [("triangle", square.cells)]).write(tmp_path / "l.vtu")
    with pytest.raises(ValueError, match=r"^mesh file '.*l\.vtu': a surface mesh has no interior"
                                         r".*all its vertices lie within \d\.\de-09 of the plane "
                                         r"z = 2, a spread of \d\.\de-09 of its diameter"):
        MeshDomain(pm.read_mesh(tmp_path / "l.vtu"))
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
