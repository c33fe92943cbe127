"""Operators: exact on the polynomials their stencils reproduce, and discrete identities."""

import numpy as np
import pytest
import warp as wp

from physml.solvers import BC, BoundaryConditions, Grid, dirichlet, neumann, periodic
from physml.solvers.grid_layout import GridLayout
from physml.solvers.operators import (
    FLUXES,
    REACTIONS,
    FluxKind,
    Limiter,
    ReactionKind,
)


def layout(grid, bc, ghost=2, dtype=wp.float64):
    return GridLayout(grid, bc, ghost, dtype, "cpu")


def field(lay, values):
    return wp.array(np.asarray(values, dtype=np.float64).ravel(), dtype=lay.dtype, device="cpu")


@pytest.mark.parametrize("dtype", [wp.float32, wp.float64])
def test_laplacian_exact_on_quadratics_2d(dtype):
    grid = Grid((12, 10), (0.0, -1.0), (1.0, 2.0))
    lay = layout(grid, dirichlet(2), dtype=dtype)
    x, y = grid.mesh()
    u = 3 * x**2 - 2 * x * y + 0.5 * y**2 + x
    lap = lay.laplacian(field(lay, u)).numpy().reshape(grid.shape)
    tol = 1e-9 if dtype == wp.float64 else 2e-3
    np.testing.assert_allclose(lap[1:-1, 1:-1], 6.0 + 1.0, atol=tol)


def test_central_and_upwind_derivatives_exact_where_expected():
    grid = Grid((16,), (0.0,), (2.0,))
    lay = layout(grid, neumann(1))
    x = grid.coords(0)
    quad = field(lay, x**2)
    central = lay.derivative(quad, 0, FluxKind.LINEAR_CENTRAL).numpy()
    np.testing.assert_allclose(central[1:-1], 2 * x[1:-1], atol=1e-12)
    lin = field(lay, 3 * x - 1)
    for limiter in Limiter:
        upwind = lay.derivative(lin, 0, FluxKind.LINEAR_UPWIND, limiter).numpy()
        np.testing.assert_allclose(upwind[2:-2], 3.0, atol=1e-12)


def limited_slopes(a, b, limiter):
    """Textbook MUSCL slopes from backward/forward differences a, b (zero where a b <= 0)."""
    same = a * b > 0
    minmod = np.where(same, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0)
    if limiter == Limiter.NONE:
        return 0.5 * (a + b)
    if limiter == Limiter.MINMOD:
        return minmod
    if limiter == Limiter.VAN_LEER:
        return np.where(same, 2 * a * b / np.where(same, a + b, 1.0), 0.0)
    return np.where(same, np.sign(a) * np.minimum(2 * np.minimum(np.abs(a), np.abs(b)),
                                                  0.5 * np.abs(a + b)), 0.0)


@pytest.mark.parametrize("flux", [FluxKind.LINEAR_UPWIND, FluxKind.BURGERS],
                         ids=lambda kind: kind.name.lower())
def test_upwind_derivatives_use_each_limiter_s_slope_on_a_kinked_field(flux):
    """u = |x - 0.3| - 2 (x - 0.7)^2 + 0.3 (a kink, an extremum and both signs): the MUSCL
    states u_i +- s_i / 2 with each limiter's slope s_i, and the Rusanov flux (unit speed, or
    u^2/2 with alpha = max(|u_l|, |u_r|)), give the flux difference computed here."""
    grid = Grid((24,), (0.0,), (1.0,))
    lay = layout(grid, periodic(1))
    x = grid.coords(0)
    u = np.abs(x - 0.3) - 2 * (x - 0.7) ** 2 + 0.3
    assert (u.min() < 0 < u.max())
    up = np.concatenate([u[-2:], u, u[:2]])  # two periodic ghost layers
    d = np.diff(up)
    slopes = {}
    for limiter in Limiter:
        s = limited_slopes(d[:-1], d[1:], limiter)  # cells -1 .. n
        ul, ur = up[1:-1][:-1] + 0.5 * s[:-1], up[1:-1][1:] - 0.5 * s[1:]  # faces -1/2 .. n-1/2
        if flux == FluxKind.BURGERS:
            alpha = np.maximum(np.abs(ul), np.abs(ur))
            f = 0.25 * (ul**2 + ur**2) - 0.5 * alpha * (ur - ul)
        else:
            f = 0.5 * (ul + ur) - 0.5 * (ur - ul)
        expected = np.diff(f) / grid.dx[0]
        got = lay.derivative(field(lay, u), 0, flux, limiter).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        slopes[limiter] = s
    for a, b in zip(list(Limiter), list(Limiter)[1:]):  # the field tells the limiters apart
        assert np.abs(slopes[a] - slopes[b]).max() > 1e-3


def test_periodic_flux_divergence_sums_to_zero(rng):
    """Discrete divergence theorem: a conservative flux difference has zero periodic sum."""
    grid = Grid((32, 24), (0.0, 0.0), (1.0, 1.0))
    lay = layout(grid, periodic(2))
    u = field(lay, rng.standard_normal(grid.shape))
    for axis in (0, 1):
        div = lay.derivative(u, axis, FluxKind.BURGERS).numpy()
        assert abs(div.sum()) < 1e-11 * np.abs(div).sum()


def test_neumann_laplacian_integrates_to_boundary_flux(rng):
    """Summation by parts: sum_i (Lu)_i dx = q_hi - q_lo for Neumann data q."""
    grid = Grid((40,), (0.0,), (2.0,))
    bc = BoundaryConditions(((BC("neumann", -0.7), BC("neumann", 1.9)),))
    lay = layout(grid, bc, ghost=1)
    lap = lay.laplacian(field(lay, rng.standard_normal(40))).numpy()
    assert lap.sum() * grid.dx[0] == pytest.approx(1.9 - (-0.7), rel=1e-12)


def test_dirichlet_ghost_cells_put_the_value_on_the_face():
    grid = Grid((8,), (0.0,), (1.0,))
    bc = BoundaryConditions(((BC("dirichlet", 2.0), BC("dirichlet", -1.0)),))
    lay = layout(grid, bc)
    x = grid.coords(0)
    u = 2.0 - 3.0 * x  # linear: the odd reflection is exact
    up = lay.pad(field(lay, u)).numpy()
    h = grid.dx[0]
    xp = np.concatenate([x[0] - h * np.array([2, 1]), x, x[-1] + h * np.array([1, 2])])
    np.testing.assert_allclose(up, 2.0 - 3.0 * xp, atol=1e-13)


def test_every_flux_and_reaction_kind_has_its_stability_row():
    assert set(FLUXES) == set(FluxKind) and set(REACTIONS) == set(ReactionKind)
    assert REACTIONS[ReactionKind.ALLEN_CAHN](2.0) == 11.0  # |d(u - u^3)/du| = 3u^2 - 1
    assert REACTIONS[ReactionKind.FISHER](2.0) == 5.0  # |d(u(1 - u))/du| = |1 - 2u|
    np.testing.assert_array_equal(FLUXES[FluxKind.BURGERS].wave_speed(np.zeros(2), 3.0), 3.0)


def test_allen_cahn_at_its_stable_step_stays_bounded_once_the_state_reaches_one():
    """A small start is drawn to +-1, where r'(u) = -2: a step bounded by the start's slope
    (1) was twice too long there (Euler ended in a 2-cycle at |u| = 1.41)."""
    from physml.solvers import AllenCahnSolver1D, Grid

    assert REACTIONS[ReactionKind.ALLEN_CAHN](0.1) == 2.0
    grid = Grid((64,), (0.0,), (2 * np.pi,))
    solver = AllenCahnSolver1D(grid, nu=1e-6, rho=1.0, dt=None, scheme="euler")
    u0 = 0.1 * np.sin(grid.coords(0))
    dt = solver.stable_dt(u0)
    at_limit = solver.with_dt(dt).rollout(u0, 800, 800)[-1]
    assert np.abs(at_limit).max() < 1.02  # neutrally stable about +-1, not a 2-cycle at 1.41
    half = solver.with_dt(dt / 2).rollout(u0, 800, 800)[-1]  # the CLI's default cfl
    assert np.abs(half).max() <= 1.0 + 1e-12
