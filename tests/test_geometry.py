"""Geometry primitives and CSG: distance functions across scales, membership with rounding,
the faces a difference keeps, and the refusals of bad arguments."""

import numpy as np
import pytest
import torch

from physml.geometry import Ball, Box, Difference, Disk, MeshDomain, Polygon, Rectangle
from physml.solvers import mesh as pm

L_SHAPE = np.array([[0, 0], [1, 0], [1, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]], float)
"""An L-shape whose bounding box's largest side is 1 (scale s = 1/2)."""

SCALES = (1e-3, 1.0, 1e3, 1e6)


def _scaled_domains():
    """Makers ``s -> domain`` of an L-shaped polygon, an L-shaped triangle mesh, a cube's
    tetrahedral mesh, boxes of unequal sides and balls in 2D and 3D, each scaled to a bounding
    box of largest side ``s``."""
    triangles, tetrahedra = pm.l_shape(0.25), pm.box(0.5)
    return {
        "polygon": lambda s: Polygon(s * L_SHAPE),
        "triangles": lambda s: MeshDomain(pm.Mesh(s * (triangles.points + 1) / 2,
                                                  triangles.cells)),
        "tetrahedra": lambda s: MeshDomain(pm.Mesh(s * tetrahedra.points, tetrahedra.cells)),
        "box": lambda s: Box([0, 0], [s / 2, s]),
        "box3": lambda s: Box([0, 0, 0], [s, s / 2, 3 * s / 4]),
        "ball": lambda s: Ball([0, 0], s / 2),
        "ball3": lambda s: Ball([0, 0, 0], s / 2),
    }


def _just_inside_facets(domain, depth):
    """The midpoint of every edge (polygon), face (box) or boundary facet (mesh), or one
    point of a ball's sphere, ``depth`` inward."""
    if not isinstance(domain, MeshDomain):
        parts = domain.parts()
        M = np.concatenate([p.at(np.full((1, 2), 0.5)) for p in parts])
        N = np.concatenate([p.normal(M[i : i + 1]) for i, p in enumerate(parts)])
    else:
        M, N = domain.facet_vertices.mean(axis=1), domain.facet_normals
    return M - depth * N


@pytest.mark.parametrize("kind", ["polygon", "triangles", "tetrahedra", "box", "box3", "ball",
                                  "ball3"])
def test_distance_functions_scale_with_the_domain(kind):
    """phi of the domain scaled by s is s phi at the scaled points, and its gradient the
    same, at every scale; |grad phi| = 1 just inside an edge (at s = 1e6 a unit-scale formula
    gave phi/s 6.25e4 at the centre of a square and |grad phi| 970 near its edge)."""
    make = _scaled_domains()[kind]
    unit = make(1.0)
    assert np.ptp(unit.bounds, axis=1).max() == 1.0
    P = unit.sample_interior(400, np.random.default_rng(0))
    P = P[np.abs(unit.distance(P)[:, 0]) > 1e-2]  # rounding of s P is relative to P, not phi
    slopes = []
    for s in SCALES:
        domain = make(s)
        np.testing.assert_allclose(domain.distance(s * P), s * unit.distance(P), rtol=1e-12)
        X = torch.tensor(_just_inside_facets(domain, 1e-4 * s), requires_grad=True)
        (gradient,) = torch.autograd.grad(domain.distance(X).sum(), X)
        slopes.append(gradient.norm(dim=1).numpy())
    np.testing.assert_allclose(slopes, [slopes[1]] * len(SCALES), rtol=1e-9)
    if kind != "tetrahedra":  # coplanar triangles' trimming discs overlap: 1/sqrt(overlaps)
        # a box's and a ball's phi are quadratic: 1 - |grad phi| grows like depth / side
        # (1.5e-3 here; phi over a ball's radius, not its diameter, would have slope 2)
        quadratic = kind.startswith(("box", "ball"))
        np.testing.assert_allclose(slopes[1], 1.0, atol=2e-3 if quadratic else 1e-5)


@pytest.mark.parametrize("dip", [1e-7, 1e-6, 2e-6, 1e-5])
def test_a_difference_drops_the_face_a_disk_dips_into_however_shallowly(dip):
    """Unit square minus a disk that cuts into its top face to depth ``dip``, less than the
    step inward that tells a face B covers from one B touches: the top keeps its exact length
    and none of its samples lies in the hole."""
    S = Difference(Rectangle([0, 0], [1, 1]), Disk((0.5, 1.5), 0.5 + dip, name="hole"))
    top = next(p for p in S.parts() if p.name == "top")
    assert top.measure == pytest.approx(1 - 2 * np.sqrt((0.5 + dip) ** 2 - 0.25), abs=2e-5)
    P = top.sample(20000, np.random.default_rng(0))
    assert not S.b.interior(P).any() and S.inside(P).all()


def test_a_difference_drops_a_face_another_face_crosses_at_a_shallow_angle():
    """B's lower edge crosses the square's top at x = 0.5 with slope 2e-4: the top is kept on
    [0, 0.5] only, also where B lies less than the inward step above it."""
    B = Polygon([[-0.5, 1 + 2e-4], [1.5, 1 - 2e-4], [1.5, 2], [-0.5, 2]],
                names=["cut", "b1", "b2", "b3"])
    S = Difference(Rectangle([0, 0], [1, 1]), B)
    top = next(p for p in S.parts() if p.name == "top")
    assert top.measure == pytest.approx(0.5, abs=2e-5)
    P = top.sample(20000, np.random.default_rng(0))
    assert P[:, 0].max() <= 0.5 and not B.interior(P).any() and S.inside(P).all()


@pytest.mark.parametrize("centre, radius", [((1e6, 1e6), 1.0), ((1.0, 1.0), 1e-6),
                                            ((1e6, -1e6, 1e6), 1.0)])
def test_a_ball_far_from_the_origin_holds_its_own_boundary_points(centre, radius):
    """The rounding of c + r u is relative to |c|: the membership slack is too (half the rim
    was outside with a slack relative to r)."""
    ball = Ball(centre, radius)
    B, index = ball.sample_boundary(4000, np.random.default_rng(0))
    N = ball.normals(B, index)
    assert ball.inside(B).all() and not ball.interior(B).any()
    assert ball.interior(B - 1e-3 * radius * N).all()
    assert not ball.inside(B + 1e-3 * radius * N).any()


def test_a_disk_of_a_radius_that_is_not_a_number_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^Disk: radius='1' must be a number \(> 0 and "
                                         r"finite\), not a str$"):
        Disk((0, 0), "1")
    with pytest.raises(ValueError, match=r"^Ball: radius=None must be a number"):
        Ball((0, 0, 0), None)


def test_the_square_of_half_side_one_keeps_its_distance_function_bit_for_bit():
    """The scale s is half the bounding box's largest side, 1 for [-1, 1]^2 (the bundled
    L-shape's box): phi is the unit-scale formula's, and the square twice as large has exactly
    twice it."""
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    P = np.array([[0.0, 0.0], [-0.6, 0.4]])
    assert Polygon(square).distance(P)[:, 0].tolist() == [0.5590169943749476, 0.32722188673375713]
    assert Polygon(2 * square).distance(2 * P)[0, 0] == 2 * 0.5590169943749476


@pytest.mark.parametrize("centre", [1e8, 1e9])
def test_a_small_ball_far_from_the_origin_samples_inside_itself(centre):
    """A slack of 1e-12 |c| let a disk of radius 1e-3 at 1e8 sample points 1.09 radii out,
    and at 1e9 its interior held no point."""
    ball = Disk((centre, centre), 1e-3)
    P = ball.sample_interior(2000, np.random.default_rng(0))
    distance = np.linalg.norm(P - ball.centre, axis=1)
    assert ball._slack < 1e-6 and distance.max() <= 1e-3 + ball._slack
    assert ball.interior(P).mean() > 0.99


def test_a_changed_box_or_ball_is_the_distance_function_s_shape():
    """The distance functions read their shape when called, as before their constants became
    float64 scalars for export."""
    box, ball = Rectangle((0, 0), (1, 1)), Disk((0, 0), 1.0)
    box.bounds = np.array([[0.0, 2.0], [0.0, 2.0]])
    ball.radius = 2.0
    P = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    assert float(box.distance(P)) == float(Rectangle((0, 0), (2, 2)).distance(P))
    assert float(ball.distance(P)) == float(Disk((0, 0), 2.0).distance(P))


def _unit_segments_distance(P, A, B):
    """segments_distance's tensor path as it was before the scale (s = 1 written out)."""
    x, y = P[:, 0:1], P[:, 1:2]
    ax, ay, bx, by = A[:, 0], A[:, 1], B[:, 0], B[:, 1]
    length = np.hypot(bx - ax, by - ay)
    cx, cy = 0.5 * (ax + bx), 0.5 * (ay + by)
    ax, ay, bx, by, length, cx, cy = (torch.as_tensor(v, dtype=P.dtype)
                                      for v in (ax, ay, bx, by, length, cx, cy))
    line = ((x - ax) * (by - ay) - (y - ay) * (bx - ax)) / length
    trim = (0.25 * length**2 - (x - cx) ** 2 - (y - cy) ** 2) / length
    bump = (torch.sqrt(trim * trim + line**4) - trim) / 2
    edge = torch.sqrt(line * line + bump * bump)
    inverse = (1 / (edge * edge)).sum(1, keepdim=True)
    rise = by - ay
    rise = rise + (rise == 0)
    crosses = ((ay > y) != (by > y)) & (x < ax + (y - ay) * (bx - ax) / rise)
    sign = (crosses.sum(1, keepdim=True) % 2).to(P.dtype) * 2 - 1
    return sign / torch.sqrt(inverse)


def test_a_training_on_a_domain_of_scale_one_steps_as_before_the_scale():
    """Dividing by s = 1 kept phi and its derivatives bitwise, but added a step to autograd's
    graph, which summed the parameters' gradients in another order: a float64 L-shape PINN
    drifted by one ulp from its fifth step."""
    from physml.geometry.shapes import segments_distance

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8),
                              torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    shape = np.array([[-1, -1], [1, -1], [1, 0], [0, 0], [0, 1], [-1, 1]], float)
    A, B = shape, np.roll(shape, -1, axis=0)
    X = (torch.rand(64, 2, dtype=torch.float64) - 0.5).requires_grad_()
    grads = []
    for distance in (segments_distance, _unit_segments_distance):
        u = distance(X, A, B) * net(X)  # a hard-constrained field, then a Poisson loss's terms
        (du,) = torch.autograd.grad(u.sum(), X, create_graph=True)
        laplacian = sum(torch.autograd.grad(du[:, i].sum(), X, create_graph=True)[0][:, i]
                        for i in range(2))
        loss = (laplacian**2).mean() + (du**2).mean()
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for new, old in zip(*grads):
        assert torch.equal(new, old)
