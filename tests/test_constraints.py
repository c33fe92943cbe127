"""Hard-constraint machinery: the Levenberg–Marquardt solve and its implicit-function gradient."""

import re
import warnings

import numpy as np
import pytest
import torch

from physml.constraints import (
    BlockRouter,
    Continuity,
    DiffusionSorptionRows,
    HardConstraint,
    LevenbergMarquardt,
    NavierStokesRows,
    PartitionOfUnity,
    UnconvergedSolveWarning,
    batched_jacobian,
    interface_jump,
    interface_profiles,
    least_squares_solution,
)
from physml.datasets.initial_conditions import gaussian_random_field_2d
from physml.solvers import DiffusionSorptionSolver1D, Grid, NavierStokesSolver2D

SOLVER = LevenbergMarquardt(tol=1e-13, atol=1e-14, max_iter=200)


def exponential_fit(omega, t, y):
    """r_i = a exp(k t_i) - y_i for omega = (a, k) per sample."""
    return omega[:, :1] * torch.exp(omega[:, 1:] * t) - y


def test_lm_reaches_its_tolerance_on_a_known_solution():
    t = torch.linspace(0, 1, 20, dtype=torch.float64)
    truth = torch.tensor([[2.0, -1.5], [0.5, 0.7], [-1.0, 2.0]], dtype=torch.float64)
    y = truth[:, :1] * torch.exp(truth[:, 1:] * t)
    result = SOLVER.solve(lambda w: exponential_fit(w, t, y), torch.ones(3, 2, dtype=torch.float64))
    assert bool(result.converged.all())
    np.testing.assert_allclose(result.omega, truth, rtol=0, atol=1e-11)
    assert float(result.residual_norm.max()) < 1e-11
    assert int(result.iterations.max()) < 40


@pytest.mark.parametrize("condition", [1.0, 1e8])
def test_lm_solves_an_affine_residual_in_a_few_iterations(condition):
    # at the default damping, also where J^T J is ill-conditioned (a damped step alone needs
    # many iterations there: it shrinks the error along small singular directions slowly)
    g = torch.Generator().manual_seed(1)
    U = torch.linalg.qr(torch.randn(4, 60, 8, dtype=torch.float64, generator=g))[0]
    V = torch.linalg.qr(torch.randn(4, 8, 8, dtype=torch.float64, generator=g))[0]
    singular = torch.logspace(0, -np.log10(condition) / 2, 8, dtype=torch.float64)
    A = U @ torch.diag_embed(singular.expand(4, 8)) @ V.transpose(1, 2)
    y = torch.randn(4, 60, dtype=torch.float64, generator=g)
    result = LevenbergMarquardt(tol=1e-10).solve(
        lambda w: torch.einsum("bmn,bn->bm", A, w) - y, torch.zeros(4, 8, dtype=torch.float64))
    expected = torch.linalg.lstsq(A, y[..., None]).solution[..., 0]
    assert bool(result.converged.all())
    np.testing.assert_allclose(result.omega, expected, rtol=1e-8 * condition ** 0.5, atol=0)
    assert int(result.iterations.max()) <= 3


def cubic(omega, A, y):
    """r = A w + 0.1 (A w)^3 - y: nonlinear in w, overdetermined, nonzero at the minimum."""
    z = torch.einsum("bmn,bn->bm", A, omega)
    return z + 0.1 * z**3 - y


def cubic_inputs(seed=0, batch=2, m=10, n=3):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(batch, m, n, dtype=torch.float64, generator=g) / 3
    w = torch.randn(batch, n, dtype=torch.float64, generator=g)
    z = torch.einsum("bmn,bn->bm", A, w)
    y = z + 0.1 * z**3 + 0.05 * torch.randn(batch, m, dtype=torch.float64, generator=g)
    return A, y


def unrolled_gauss_newton(A, y, steps=80):
    """Plain Gauss–Newton with the Jacobian written out, differentiated by unrolling."""
    w = torch.zeros(A.shape[0], A.shape[2], dtype=A.dtype)
    for _ in range(steps):
        z = torch.einsum("bmn,bn->bm", A, w)
        J = (1 + 0.3 * z**2)[..., None] * A
        r = z + 0.1 * z**3 - y
        w = w - torch.linalg.solve(J.transpose(1, 2) @ J, torch.einsum("bmn,bm->bn", J, r))
    return w


def test_implicit_gradient_equals_the_unrolled_solver_gradient():
    A, y = cubic_inputs()
    c = torch.randn(A.shape[0], A.shape[2], dtype=torch.float64)
    grads = []

    def implicit(a, b):
        return least_squares_solution(cubic, SOLVER, torch.zeros_like(c), a, b).omega

    for solve in (implicit, unrolled_gauss_newton):
        a, b = A.clone().requires_grad_(), y.clone().requires_grad_()
        omega = solve(a, b)
        grads.append(torch.autograd.grad((c * omega).sum(), (a, b)))
        assert float(cubic(omega.detach(), A, y).norm()) > 1e-2  # a nonzero residual
    for implicit, unrolled in zip(*grads, strict=True):
        np.testing.assert_allclose(implicit, unrolled, rtol=1e-8, atol=1e-10)


def test_implicit_gradient_passes_gradcheck_and_repeats():
    A, y = cubic_inputs(seed=3, batch=1, m=5, n=2)
    A.requires_grad_()
    y.requires_grad_()

    def omega(a, b):
        return least_squares_solution(cubic, SOLVER, torch.zeros(1, 2, dtype=torch.float64),
                                      a, b).omega

    assert torch.autograd.gradcheck(omega, (A, y), eps=1e-6, atol=1e-7)
    out = omega(A, y)
    first = torch.autograd.grad(out.sum(), (A, y), retain_graph=True)
    second = torch.autograd.grad(out.sum(), (A, y))
    for f, s in zip(first, second, strict=True):
        assert torch.equal(f, s)


def test_a_gradient_penalty_through_the_implicit_gradient_is_refused():
    """The backward pass is first order: create_graph=True would give a gradient whose own
    derivative is missing (None under allow_unused), so it is refused by name."""
    A, y = cubic_inputs(seed=3, batch=1, m=5, n=2)
    a = A.clone().requires_grad_()
    omega = least_squares_solution(cubic, SOLVER, torch.zeros(1, 2, dtype=torch.float64),
                                   a, y).omega
    with pytest.raises(RuntimeError, match="the least-squares solution's backward is first "
                                           "order: create_graph=True"):
        torch.autograd.grad(omega.sum(), a, create_graph=True)


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_an_exact_fit_converges_at_any_residual_scale(scale):
    """Where the fit is exact the residual left is rounding, whose orthogonality to J is noise:
    at scales 1e3 and above the orthogonality test never passed and the solve spent max_iter
    iterations on an exact omega, reporting it unconverged. The step test ends it."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(200, 8, dtype=torch.float64, generator=g)
    truth = torch.randn(8, dtype=torch.float64, generator=g)
    y = B @ truth
    result = LevenbergMarquardt().solve(lambda w: scale * (w @ B.T - y),
                                        torch.zeros(1, 8, dtype=torch.float64))
    assert bool(result.converged.all()) and int(result.iterations.max()) <= 3
    np.testing.assert_allclose(result.omega[0], truth, rtol=0, atol=1e-13)


def test_a_sample_with_a_zero_jacobian_does_not_stop_the_batch():
    """Sample 0's rows do not depend on omega (a basis zero on its block): it is done at once,
    and its singular system once failed the whole batch's solve."""
    def residual(w):
        return torch.tensor([[0.0], [1.0]], dtype=w.dtype) * w - torch.tensor(
            [[0.0], [2.0]], dtype=w.dtype)

    result = LevenbergMarquardt().solve(residual, torch.zeros(2, 1, dtype=torch.float64))
    assert result.converged.tolist() == [True, True]
    assert result.omega[1, 0] == pytest.approx(2.0, abs=1e-14)


def _heat_rows(u, phi):
    """Implicit-Euler heat rows, zero walls and the initial row on a (B, nt, nx) field."""
    lap = u[:, 1:, :-2] - 2 * u[:, 1:, 1:-1] + u[:, 1:, 2:]
    pde = (u[:, 1:, 1:-1] - u[:, :-1, 1:-1]) - 0.3 * lap
    return torch.cat([pde.flatten(1), u[:, :, 0], u[:, :, -1], u[:, 0] - phi], 1)


def test_scaling_one_basis_function_changes_no_solution():
    """The floor of the normal equations was relative to the mean diagonal: a basis function
    1e6 times larger than the others (same span) moved u by 28 % without converging."""
    torch.manual_seed(0)
    layer = HardConstraint(_heat_rows, BlockRouter((6, 8), (1, 1)), (8,))
    phi = torch.randn(1, 8, dtype=torch.float64)
    basis = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    u = layer(basis, phi)
    for scale in (1e6, 1e8, 1e-6):
        scaled = basis.clone()
        scaled[:, 0] *= scale
        np.testing.assert_allclose(layer(scaled, phi), u, rtol=0, atol=1e-9 * u.abs().max())
        assert bool(layer.last_solve.converged.all())


def test_a_basis_zero_on_its_block_has_a_zero_gradient():
    """A Hessian of zeros took a ridge of 1e-312 (subnormal): its solve gave inf, the
    gradient NaN."""
    layer = HardConstraint(_heat_rows, BlockRouter((6, 8), (1, 1)), (8,))
    basis = torch.zeros(1, 4, 6, 8, dtype=torch.float64, requires_grad=True)
    u = layer(basis, torch.randn(1, 8, dtype=torch.float64))
    u.square().sum().backward()
    assert u.abs().max() == 0 and basis.grad.abs().max() == 0


def test_the_implicit_gradient_of_an_unconverged_solve_warns():
    A, y = cubic_inputs()
    a = A.clone().requires_grad_()
    short = LevenbergMarquardt(tol=1e-13, atol=0.0, xtol=0.0, max_iter=1)
    result = least_squares_solution(cubic, short, torch.zeros(2, 3, dtype=torch.float64), a, y)
    assert not bool(result.converged.any())
    with pytest.warns(UnconvergedSolveWarning,
                      match="2 of 2 least-squares solves stopped before their tolerance") as seen:
        result.omega.sum().backward()
    assert seen[0].filename == __file__  # the line that called backward, not autograd's


@pytest.mark.parametrize("bad", [{"damping": 0.0}, {"tol": -1.0}, {"max_iter": 0},
                                 {"xtol": -1.0}])
def test_lm_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        LevenbergMarquardt(**bad)


def smooth_basis(nt, nx, n_x=4, n_t=3):
    """cos(pi i x) exp(-j t) on the unit square: (1, n_x n_t, nt, nx) float64."""
    t = torch.linspace(0, 1, nt, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 1, nx, dtype=torch.float64)[None]
    return torch.stack([torch.cos(np.pi * i * x) * torch.exp(-j * t)
                        for i in range(n_x) for j in range(n_t)])[None]


def test_router_split_and_stitch_are_inverse():
    router = BlockRouter((6, 8), (2, 4))
    u = torch.randn(3, 6, 8)
    assert torch.equal(router.stitch(router.split(u)), u)
    assert router.labels()[5, 7] == 7
    with pytest.raises(ValueError, match="blocks"):
        BlockRouter((6, 8), (1, 3))


def test_interface_rows_make_experts_continuous():
    """Diffusion–sorption from u0 = 0.1 on 4 space blocks: the stitched field of independent
    experts (the paper) jumps by O(1) (2.1 measured), coupled experts by under 2e-3 (2e-4),
    overlapping experts blended by a partition of unity by 0.074 (its kinks)."""
    nt, nx = 20, 32
    rows = DiffusionSorptionRows(nx, dt=5.0)
    router = BlockRouter((nt, nx), (1, 4))
    basis, u0 = smooth_basis(nt, nx), torch.full((1, nx), 0.1, dtype=torch.float64)
    jumps = {}
    for continuity in (Continuity.INDEPENDENT, Continuity.INTERFACE_ROWS):
        layer = HardConstraint(rows.rows, router, (nx,), continuity=continuity,
                               solver=LevenbergMarquardt(tol=1e-8, max_iter=30))
        u = layer(basis, u0)
        jumps[continuity] = float(interface_jump(u, router)[0])
    pou = PartitionOfUnity(rows.rows, router, (nx,), overlap=2,
                           solver=LevenbergMarquardt(tol=1e-8, max_iter=30))
    assert torch.allclose(pou.blend.sum(0), torch.ones(nt, nx, dtype=torch.float64))
    jumps["pou"] = float(interface_jump(pou(basis, u0), router)[0])
    assert jumps[Continuity.INTERFACE_ROWS] < 2e-3 < jumps["pou"] < 0.15
    assert jumps[Continuity.INDEPENDENT] > 0.1


def test_partition_of_unity_aligns_the_constants_the_rows_cannot_see():
    """Navier–Stokes rows see the streamfunction only through its differences, so experts
    may differ by a constant per time level: blended as they are, the constants put spurious
    vorticity into the overlaps; aligned, the blend has the experts' common vorticity. The
    alignment is differentiable (gradcheck, with experts absent from some levels)."""
    nt, n = 3, 16
    rows = NavierStokesRows(n, n, dt=0.1)
    router = BlockRouter((nt, n, n), (1, 2, 2))
    pou = PartitionOfUnity(rows.rows, router, (n, n), align_constants=True)
    generator = torch.Generator().manual_seed(0)
    common = torch.randn(2, 1, nt, n, n, dtype=torch.float64, generator=generator)
    experts = common + 5 * torch.randn(2, 4, nt, 1, 1, dtype=torch.float64, generator=generator)
    vorticity = rows.observe(common[:, 0])
    shifted = rows.observe((pou.blend * experts).sum(1))
    aligned = rows.observe((pou.blend * pou._aligned(experts)).sum(1))
    assert float((shifted - vorticity).abs().max()) > 10
    np.testing.assert_allclose(aligned, vorticity, rtol=0,
                               atol=1e-12 * float(vorticity.abs().max()))
    small = PartitionOfUnity(NavierStokesRows(8, 8, dt=0.1).rows, BlockRouter((4, 8, 8), (2, 2, 2)),
                             (8, 8), overlap=1, align_constants=True)
    fields = torch.randn(1, 8, 4, 8, 8, dtype=torch.float64, requires_grad=True)  # time split
    assert torch.autograd.gradcheck(small._aligned, (fields,))


def test_router_splits_and_stitches_space_time_in_two_space_dimensions():
    router = BlockRouter((4, 6, 8), (2, 3, 2))
    u = torch.randn(2, 4, 6, 8)
    assert router.experts == 12 and router.split(u).shape == (2, 12, 2, 2, 4)
    assert torch.equal(router.stitch(router.split(u)), u)
    assert router.labels()[3, 5, 7] == 11 and router.labels()[0, 2, 4] == 3
    with pytest.raises(ValueError, match="blocks"):
        BlockRouter((4, 6, 8), (1, 2))


def spectral_solution(n, nt=5, t_end=1.0):
    """The pseudo-spectral solver's vorticity and streamfunction (nt, n, n) from a smooth field."""
    grid = Grid((n, n), (0.0, 0.0), (1.0, 1.0))
    w0 = gaussian_random_field_2d(grid, np.random.default_rng(3), 0.5, 1.0)
    save_every = -(-200 // (nt - 1))  # at least 200 steps, nt - 1 equal intervals
    n_steps = save_every * (nt - 1)
    solver = NavierStokesSolver2D(grid, nu=1e-3, forcing=0.1, dt=t_end / n_steps)
    omega = solver.rollout(w0, n_steps, save_every)
    psi = np.stack([solver.streamfunction(w) for w in omega])
    return torch.from_numpy(omega), torch.from_numpy(psi)


def test_navier_stokes_rows_are_second_order_consistent_with_the_spectral_solver():
    """The rows of the pseudo-spectral solution shrink as h^2 (with dt ~ h)."""
    sizes, largest = [16, 32, 64], []
    for n in sizes:
        omega, psi = spectral_solution(n, nt=n // 4 + 1)
        rows = NavierStokesRows(n, n, 1.0 / (n // 4), nu=1e-3, forcing=0.1)
        largest.append(float(rows.rows(psi[None], omega[:1]).abs().max()))
        vorticity_error = float((rows.observe(psi) - omega).abs().max() / omega.abs().max())
        assert vorticity_error < 40 / n**2
    order = -np.polyfit(np.log(sizes), np.log(largest), 1)[0]
    assert 1.8 < order < 2.3, (largest, order)


def test_diffusion_sorption_rows_are_crank_nicolson_consistent_with_the_solver():
    """On the solver's trajectory (16 cells, RK4 at dt/20) the rows share the solver's
    Laplacian and ghosts, so only the time scheme's truncation is left: dt O(dt^2) per
    Crank–Nicolson row, dt O(dt) in the first step's backward-Euler rows."""
    grid = Grid((16,), (0.0,), (1.0,))
    (x,) = grid.mesh()
    solver = DiffusionSorptionSolver1D(grid, dt=None)
    steps, first, later = [2.5, 1.25, 0.625], [], []
    for dt in steps:
        n = round(20.0 / dt)
        u = solver.with_dt(dt / 20).rollout(0.1 + 0.05 * np.cos(np.pi * x), 20 * n, 20)
        u = torch.from_numpy(u)[None]
        rows = DiffusionSorptionRows(16, dt=dt).rows(u, u[:, 0]).abs()
        first.append(float(rows[:, :16].max()))
        later.append(float(rows[:, 16:-16].max()))
    assert 2.7 < np.polyfit(np.log(steps), np.log(later), 1)[0] < 3.2, later
    assert 1.8 < np.polyfit(np.log(steps), np.log(first), 1)[0] < 2.3, first


def test_diffusion_sorption_rows_count_the_points_where_r_is_clipped():
    """R is taken at u^1 in the first step and at the mean of two levels after it; the points
    where that argument is <= 0 sit at R's kink (the clip at 0)."""
    u = torch.tensor([[[0.5, 0.5, 0.5, 0.5],
                       [0.2, 0.0, -0.1, 0.3],     # first step: 2 of 4 at <= 0
                       [-0.2, 0.1, 0.1, -0.4]]],  # means 0, 0.05, 0, -0.05: 3 of 4
                     dtype=torch.float64)
    rows = DiffusionSorptionRows(4, dt=1.0)
    assert rows.kink_share(u).tolist() == [5 / 8]
    assert rows.kink_share(u.abs() + 0.01).tolist() == [0.0]


def test_the_first_diffusion_sorption_step_damps_the_jump_at_the_inlet():
    """The initial field meets the inlet's u = 1 in a jump; Crank–Nicolson's first step
    (D dt / dx^2 = 41) carried it on as an oscillation: 1.32 at the inlet, -0.012 downstream,
    where R(u) has its kink."""
    from scipy.optimize import root

    rows = DiffusionSorptionRows(128, dt=5.0)
    u0 = torch.full((1, 128), 0.05, dtype=torch.float64)

    def first_step(u1):
        u = torch.stack([u0[0], torch.from_numpy(u1)])[None]
        return rows.rows(u, u0)[0, :128].numpy()

    u1 = root(first_step, u0[0].numpy(), method="hybr", tol=1e-12).x
    assert np.abs(first_step(u1)).max() < 1e-10
    assert 0 < u1.min() and u1.max() < 1 and np.all(np.diff(u1) <= 1e-12)


@pytest.mark.parametrize("problem, blocks, colours", [
    ("diffusion_sorption", (1, 4), 2), ("navier_stokes", (1, 2, 2), 4),
    ("navier_stokes", (1, 4, 1), 2)])
@pytest.mark.parametrize("continuity, coloured", [
    (Continuity.INTERFACE_ROWS, True), (Continuity.INTERFACE_ROWS, False),
    (Continuity.INDEPENDENT, False)])
def test_the_layers_jacobian_equals_the_dense_one(problem, blocks, colours, continuity,
                                                  coloured):
    """The layer's Jacobian, formed from one field per forward product (C N of them for coupled
    experts coloured, K N uncoloured, N independent), equals the dense one of its residual
    (a chain of blocks, periodic or not, needs 2 colours; 2 x 2 blocks with periodic seams
    need 4)."""
    if problem == "diffusion_sorption":
        rows, shape, phi = DiffusionSorptionRows(16, dt=5.0), (6, 16), torch.full((2, 16), 0.1)
    else:
        rows, shape = NavierStokesRows(16, 8, dt=0.5), (3, 16, 8)  # blocks >= stencil width
        phi = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    router = BlockRouter(shape, blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # independent experts drop interface rows
        layer = HardConstraint(rows.rows, router, phi.shape[1:], continuity=continuity,
                               coloured=coloured)
    if coloured:
        assert layer.colouring.count == colours
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(2, 3, *shape, dtype=torch.float64, generator=g)
    split = router.split(basis).transpose(1, 2)
    omega = torch.randn(2, router.experts * 3, dtype=torch.float64, generator=g)
    if continuity is Continuity.INDEPENDENT:
        omega, residual = omega.reshape(-1, 3), layer._independent_rows
    else:
        residual = layer._coupled_rows
    np.testing.assert_allclose(layer.jacobian(omega, split, phi.double()),
                               batched_jacobian(lambda w: residual(w, split, phi.double()), omega),
                               rtol=0, atol=1e-12)


def test_experts_whose_blocks_the_stencil_outreaches_are_refused():
    # blocks of 2 cells along x on an 8x8 vorticity grid: every PDE row straddles two blocks,
    # so an independent expert owns none (its weights would be free, the field 0, the
    # gradient NaN)
    from physml.constraints import BlockRouter, Continuity, HardConstraint, NavierStokesRows

    rows = NavierStokesRows(8, 8, dt=0.1)
    router = BlockRouter((3, 8, 8), (1, 4, 1))
    with pytest.raises(ValueError, match="solve no row"):
        HardConstraint(rows.rows, router, (8, 8), continuity=Continuity.INDEPENDENT)


def test_experts_that_own_only_initial_rows_are_refused():
    # diffusion-sorption on 8 cells, 4 experts of 2 cells: every PDE row of an inner block
    # reaches a neighbour block; those experts own only their initial rows (a 1-cell stencil),
    # and a field fitted to them alone would follow no physics after t = 0
    from physml.constraints import (
        BlockRouter,
        Continuity,
        DiffusionSorptionRows,
        HardConstraint,
        PartitionOfUnity,
    )

    rows = DiffusionSorptionRows(8, dt=10.0)
    router = BlockRouter((4, 8), (1, 4))
    with pytest.raises(ValueError, match=r"expert\(s\) \[1, 2\] of 4 solve no row of the PDE"):
        HardConstraint(rows.rows, router, (8,), continuity=Continuity.INDEPENDENT,
                       condition_rows=rows.condition_rows)
    # overlapping blocks reach their neighbours' rows: accepted
    PartitionOfUnity(rows.rows, router, (8,), condition_rows=rows.condition_rows)


def test_a_periodic_axis_seam_is_an_interface():
    # a ramp along x is smooth inside the box and jumps by 1 where x wraps around: only a
    # router that knows the axis is periodic sees (and couples) that interface
    nt, n = 3, 16
    ramp = (torch.arange(n, dtype=torch.float64) / n).reshape(1, 1, n, 1).expand(1, nt, n, n)
    periodic = BlockRouter((nt, n, n), (1, 2, 1), periodic=(False, True, True))
    walled = BlockRouter((nt, n, n), (1, 2, 1))
    assert [(axis, i) for axis, i, _ in interface_profiles(ramp, periodic)] == [(1, 8), (1, 0)]
    assert float(interface_jump(ramp, walled)[0]) < 1e-12
    np.testing.assert_allclose(float(interface_jump(ramp, periodic)[0]), 1.0, rtol=1e-12)
    # the partition of unity's blocks overlap across the seam too
    pou = PartitionOfUnity(NavierStokesRows(n, n, dt=0.1).rows, periodic, (n, n), overlap=2)
    assert torch.allclose(pou.blend.sum(0), torch.ones(nt, n, n, dtype=torch.float64))
    assert float(pou.weights[0, 0, -1, 0]) > 0 and float(pou.weights[1, 0, 0, 0]) > 0


def test_independent_experts_constants_are_joined_across_interfaces():
    # independent experts' streamfunctions, equal but for a constant per expert and level:
    # joined across the (periodic) interfaces, they give the common vorticity back, which the
    # stitched field misses by the constants' jumps; the join is differentiable
    from physml.constraints.experts import level_constants

    nt, n = 3, 16
    rows = NavierStokesRows(n, n, dt=0.1)
    router = BlockRouter((nt, n, n), (1, 2, 2), periodic=(False, True, True))
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(n, dtype=torch.float64) * 2 * np.pi / n
    common = (torch.sin(x)[:, None] * torch.cos(2 * x)[None]).expand(1, nt, n, n)
    shifts = 5 * torch.randn(1, 4, nt, 1, 1, dtype=torch.float64, generator=generator)
    stitched = router.stitch(router.split(common) + shifts)
    vorticity = rows.observe(common)
    joined = level_constants(stitched, router)
    assert float((rows.observe(stitched) - vorticity).abs().max()) > 10
    np.testing.assert_allclose(rows.observe(joined), vorticity, rtol=0,
                               atol=1e-10 * float(vorticity.abs().max()))
    small = BlockRouter((4, 4, 4), (2, 2, 1), periodic=(False, True, True))  # time split too
    field = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: level_constants(u, small), (field,))


def test_level_constants_stay_on_the_field_s_device():
    """Every tensor of the constants' solve follows u's device (the meta device stands in for
    CUDA here: a CPU-built tensor meeting it fails as on a GPU)."""
    from physml.constraints import BlockRouter
    from physml.constraints.experts import level_constants

    router = BlockRouter((3, 8, 8), (1, 2, 2), periodic=(False, True, True))
    u = torch.randn(1, 3, 8, 8, dtype=torch.float64, device="meta")
    shifted = level_constants(u, router)
    assert shifted.device == u.device and shifted.shape == u.shape


@pytest.mark.parametrize("layer_class", ["hard", "pou"])
def test_inputs_of_the_wrong_shape_are_named(layer_class):
    nt, nx = 8, 16
    rows = DiffusionSorptionRows(nx, dt=5.0)
    router = BlockRouter((nt, nx), (1, 2))
    build = (lambda shape: HardConstraint(rows.rows, router, shape)) if layer_class == "hard" \
        else (lambda shape: PartitionOfUnity(rows.rows, router, shape))
    with pytest.raises(ValueError, match=r"fail on the grid \(8, 16\) with phi_shape=\(17,\)"):
        build((17,))
    layer = build((nx,))
    basis, u0 = smooth_basis(nt, nx), torch.full((1, nx), 0.1, dtype=torch.float64)
    assert layer(basis, u0).shape == (1, nt, nx)
    with pytest.raises(ValueError, match=r"basis has shape \(1, 4, 8, 18\); expected "
                                         r"\(B, N, 8, 16\)"):
        layer(smooth_basis(nt, nx + 2)[:, :4], u0)
    with pytest.raises(ValueError, match=r"basis has shape \(1, 8, 16\)"):
        layer(basis[:, 0], u0)
    with pytest.raises(ValueError, match=r"phi has shape \(2, 16\); expected \(1, 16\)"):
        layer(basis, u0.repeat(2, 1))
    with pytest.raises(ValueError, match=r"phi has shape \(1, 17\)"):
        layer(basis, torch.zeros(1, nx + 1, dtype=torch.float64))


@pytest.mark.parametrize("layer_class", ["hard", "pou"])
def test_an_int_phi_shape_and_numpy_inputs_are_refused_by_name(layer_class):
    """phi_shape=16 failed in an unpacking (TypeError: "Value after * must be an iterable") and
    a NumPy basis on a missing ``is_floating_point``."""
    nt, nx = 8, 16
    rows = DiffusionSorptionRows(nx, dt=5.0)
    router = BlockRouter((nt, nx), (1, 2))
    layer = HardConstraint if layer_class == "hard" else PartitionOfUnity
    with pytest.raises(ValueError, match=re.escape("phi_shape=16 must be a tuple: the shape of "
                                                   "one sample's conditioning input, e.g. (nx,)")):
        layer(rows.rows, router, nx)
    basis, u0 = smooth_basis(nt, nx), torch.full((1, nx), 0.1, dtype=torch.float64)
    built = layer(rows.rows, router, (nx,))
    with pytest.raises(ValueError, match="basis is ndarray; expected a floating-point "
                                         "torch.Tensor"):
        built(basis.numpy(), u0)
    with pytest.raises(ValueError, match="phi is torch.int64; expected a floating-point"):
        built(basis, u0.long())


@pytest.mark.parametrize("build, message", [
    (lambda: LevenbergMarquardt(max_iter=2.5), "max_iter=2.5 must be a whole number >= 1"),
    (lambda: LevenbergMarquardt(max_iter=True), "max_iter=True must be a whole number >= 1"),
    (lambda: DiffusionSorptionRows(nx=8, dt=1.0, porosity=0.0), "porosity"),
    (lambda: DiffusionSorptionRows(nx=8, dt=1.0, D=-1.0), "D"),
    (lambda: DiffusionSorptionRows(16, dt="5"), "dt='5' must be a number > 0"),
    (lambda: HardConstraint(DiffusionSorptionRows(16, dt=5.0).rows, BlockRouter((4, 16), (1, 2)),
                            (16,), interface_weight="10"),
     "interface_weight='10' must be a number > 0"),
    (lambda: NavierStokesRows(4, 4, float("inf")), "dt=inf must be a number > 0"),
    (lambda: NavierStokesRows(4, 4, "5"), "dt='5' must be a number > 0"),
    (lambda: NavierStokesRows(4, 4, 0.1, initial_weight="1"), "initial_weight='1' must be a "
                                                               "finite number"),
    (lambda: HardConstraint(None, BlockRouter((4, 16), (1, 2)), (16,)),
     "rows is a NoneType; pass the residual rows, a function rows(u (B, *grid), phi (B, ...))"),
    (lambda: NavierStokesRows(4, 4, 0.1, length=0.0), "length=0.0 must be a finite box side"),
    (lambda: BlockRouter((4.5, 8), (1, 2)), "shape[nt]=4.5 must be a whole number >= 1"),
])
def test_bad_constructor_arguments_are_named(build, message):
    """They were accepted (a negative diffusivity ran; an infinite step gave u = 0 without a
    word) or failed inside PyTorch."""
    with pytest.raises(ValueError, match=re.escape(message)):
        build()
    assert BlockRouter((4.0, 8), (1, 2)).shape == (4, 8)


@pytest.mark.parametrize("layer_class", ["hard", "pou"])
def test_an_empty_batch_is_refused_naming_b(layer_class):
    """B = 0 failed inside a reshape ("cannot reshape tensor of 0 elements")."""
    nt, nx = 8, 16
    rows = DiffusionSorptionRows(nx, dt=5.0)
    router = BlockRouter((nt, nx), (1, 2))
    layer = (HardConstraint if layer_class == "hard" else PartitionOfUnity)(rows.rows, router,
                                                                            (nx,))
    with pytest.raises(ValueError, match=r"basis has shape \(0, \d+, 8, 16\); expected \(B, N, 8, "
                                         r"16\): B >= 1 samples"):
        layer(smooth_basis(nt, nx)[:0], torch.zeros(0, nx, dtype=torch.float64))


def test_a_fractional_overlap_is_refused():
    """overlap=1.5 gave fractional trapezoid widths although whole cells are asked for."""
    rows = DiffusionSorptionRows(16, dt=5.0)
    with pytest.raises(ValueError, match=r"^overlap=1.5 must be a whole number >= 1"):
        PartitionOfUnity(rows.rows, BlockRouter((8, 16), (1, 2)), (16,), overlap=1.5)


def _variable_diffusion(dx: float, dt: float):
    """Rows of u_t = (a u_x)_x with the diffusivity a = phi (B, nx) (zero-flux ends), then the
    initial rows u(0) = 1: a residual whose dependence on u passes through phi."""
    def rows(u, a):
        flux = 0.5 * (a[:, None, 1:] + a[:, None, :-1]) * (u[:, :, 1:] - u[:, :, :-1]) / dx
        flux = torch.nn.functional.pad(flux, (1, 1))
        pde = u[:, 1:] - u[:, :-1] - dt * (flux[:, 1:, 1:] - flux[:, 1:, :-1]) / dx
        return torch.cat([pde.flatten(1), u[:, 0] - 1.0], 1)
    return rows


def test_rows_whose_coefficients_come_from_phi_are_owned_as_they_read_u():
    """Ownership was probed at phi = 0, where these rows read no u: with one expert every PDE
    row was dropped (u = 0); with two, the rows across the interface were given to one expert,
    coupling the 'independent' solves (no convergence on an affine problem, a wrong gradient)."""
    nt, nx = 4, 12
    rows = _variable_diffusion(1.0 / nx, 1e-3)
    g = torch.Generator().manual_seed(0)
    a = 1.0 + torch.rand(1, nx, dtype=torch.float64, generator=g)
    basis = torch.rand(1, 4, nt, nx, dtype=torch.float64, generator=g)
    single = HardConstraint(rows, BlockRouter((nt, nx), (1, 1)), (nx,), solver=SOLVER)
    u = single(basis, a)
    fitted = torch.linalg.lstsq(torch.func.jacrev(lambda w: rows(
        torch.einsum("bn...,n->b...", basis, w), a)[0])(torch.zeros(4, dtype=torch.float64)),
        -rows(torch.zeros(1, nt, nx, dtype=torch.float64), a)[0]).solution
    np.testing.assert_allclose(u[0], torch.einsum("n...,n->...", basis[0], fitted), atol=1e-10)
    independent = HardConstraint(rows, BlockRouter((nt, nx), (1, 2)), (nx,), solver=SOLVER,
                                 continuity=Continuity.INDEPENDENT, condition_rows=nx)
    independent(basis, a)
    assert bool(independent.last_solve.converged.all())
    assert int(independent.last_solve.iterations.max()) <= 3


def _upwind_advection(dx: float, dt: float):
    """Rows of u_t + c u_x = 0 with the velocity c = phi (B, nx), upwinded by its sign
    (zero-gradient ends), then the initial rows u(0) = 1: a stencil that switches with phi."""
    def rows(u, c):
        padded = torch.nn.functional.pad(u, (1, 1), mode="replicate")
        back, forward = padded[..., 1:-1] - padded[..., :-2], padded[..., 2:] - padded[..., 1:-1]
        flux = torch.where(c[:, None] > 0, c[:, None] * back, c[:, None] * forward) / dx
        pde = u[:, 1:] - u[:, :-1] + dt * flux[:, :-1]
        return torch.cat([pde.flatten(1), u[:, 0] - 1.0], 1)
    return rows


@pytest.mark.filterwarnings("ignore:independent experts drop:UserWarning")
@pytest.mark.parametrize("continuity, blocks, coloured", [
    (Continuity.INDEPENDENT, (1, 2), True), (Continuity.INTERFACE_ROWS, (1, 3), True),
    (Continuity.INTERFACE_ROWS, (1, 3), False)])
def test_rows_whose_stencil_switches_with_phi_s_sign_are_owned_by_every_cell_they_read(
        continuity, blocks, coloured):
    """Ownership and the colouring were probed at one positive phi: with a negative velocity
    the upwind rows read the other neighbour, the 'independent' solves were coupled and the
    coloured Jacobian wrong (no convergence on an affine problem)."""
    nt, nx = 4, 12
    rows = _upwind_advection(1.0 / nx, 1e-2)
    g = torch.Generator().manual_seed(0)
    basis = torch.rand(1, 6, nt, nx, dtype=torch.float64, generator=g)
    condition_rows = nx if continuity is Continuity.INDEPENDENT else 0
    layer = HardConstraint(rows, BlockRouter((nt, nx), blocks), (nx,), solver=SOLVER,
                           continuity=continuity, coloured=coloured, condition_rows=condition_rows)
    for velocity in (1.0, -1.0):
        layer(basis, torch.full((1, nx), velocity, dtype=torch.float64))
        assert bool(layer.last_solve.converged.all())
        assert int(layer.last_solve.iterations.max()) <= 3


@pytest.mark.filterwarnings("ignore:independent experts drop:UserWarning")
def test_a_coefficient_undefined_for_a_negative_phi_keeps_the_rows_owners():
    """phi and -phi are probed; a diffusivity sqrt(phi) is NaN at -phi, which must not make
    every row read every block (then no expert would own a row of the PDE)."""
    nt, nx = 4, 12
    rows = _variable_diffusion(1.0 / nx, 1e-3)
    layers = [HardConstraint(lambda u, a, f=f: rows(u, f(a)), BlockRouter((nt, nx), (1, 2)),
                             (nx,), continuity=Continuity.INDEPENDENT, condition_rows=nx)
              for f in (torch.sqrt, lambda a: a)]
    assert torch.equal(layers[0].owned, layers[1].owned)


@pytest.mark.parametrize("layer_class", [HardConstraint, PartitionOfUnity])
def test_rows_that_read_no_value_of_u_are_refused(layer_class):
    """They were dropped without a word, and the layer returned u = 0."""
    with pytest.raises(ValueError, match=r"residual rows \[0, 1, 2, 3, 4\] \.\.\. \(24 of 24\) "
                                         r"depend on no value of the output u"):
        layer_class(lambda u, p: torch.cat([p, p], 1), BlockRouter((5, 12), (1, 2)), (12,))


def test_an_error_in_the_rows_is_not_blamed_on_phi_shape():
    """An off-by-one in the user's stencil was reported as a wrong phi_shape, its traceback
    dropped."""
    def heat(u, p):
        lap = u[:, :, 2:] - 2 * u[:, :, 1:-1] + u[:, :, :-2]
        pde = u[:, 1:, 1:-1] - u[:, :-1, 1:-1] - 0.01 * lap[:, :-1, :-1]  # lap sliced wrong
        return torch.cat([pde.flatten(1), u[:, 0] - p], 1)

    with pytest.raises(ValueError, match=r"raise on one sample of the grid \(5, 12\) "
                                         r"\(RuntimeError: The size of tensor a") as err:
        HardConstraint(heat, BlockRouter((5, 12), (1, 2)), (12,))
    assert "phi_shape" not in str(err.value) and isinstance(err.value.__cause__, RuntimeError)


@pytest.mark.parametrize("layer_class", [HardConstraint, PartitionOfUnity])
def test_rows_not_shaped_b_by_m_are_refused_naming_both_shapes(layer_class):
    """(B, nt, nx) rows passed the constructor and failed in forward inside torch.cat."""
    with pytest.raises(ValueError, match=r"return shape \(1, 5, 12\) for one sample of the grid "
                                         r"\(5, 12\); expected \(1, M\)"):
        layer_class(lambda u, p: u - p[:, None], BlockRouter((5, 12), (1, 2)), (12,))


def _dropped_row_warnings(record) -> list[str]:
    """The messages of the dropped-row warnings in ``record``."""
    return [str(w.message) for w in record if "independent experts drop" in str(w.message)]


@pytest.mark.parametrize("blocks, periodic", [((1, 2), ()), ((1, 3), ()),
                                              ((1, 3), (False, True))])
def test_independent_experts_name_the_cure_for_a_global_row(blocks, periodic):
    """Mass rows read every block: independent experts dropped them without a word (with 2
    blocks, or 3 on a periodic axis, where every block touches the others), or refused them
    asking for 'a finer grid', which cannot help."""
    nt, nx = 5, 12

    def conservation(u, phi):  # the mass at each level is the initial mass; the initial rows
        return torch.cat([u.sum(-1) - phi.sum(-1)[:, None], u[:, 0] - phi], dim=1)

    router = BlockRouter((nt, nx), blocks, periodic)
    with pytest.warns(UserWarning) as record:
        HardConstraint(conservation, router, (nx,), continuity=Continuity.INDEPENDENT)
    dropped = _dropped_row_warnings(record)
    assert len(dropped) == 1 and re.match(
        r"independent experts drop the 5 residual rows that read more than one block \(rows "
        r"\[0, 1, 2, 3, 4\]\): .* continuity=INTERFACE_ROWS or one expert$", dropped[0])
    with pytest.raises(ValueError, match=r"global constraint\) need continuity=INTERFACE_ROWS"):
        HardConstraint(conservation, router, (nx,), continuity=Continuity.INDEPENDENT,
                       condition_rows=nx)


def test_independent_experts_say_how_many_interface_rows_they_drop():
    """The rows of a stencil across an interface were dropped without a word."""
    rows = DiffusionSorptionRows(16, dt=5.0)
    with pytest.warns(UserWarning) as record:  # 3 interfaces, 2 rows each, 3 levels
        HardConstraint(rows.rows, BlockRouter((4, 16), (1, 4)), (16,),
                       continuity=Continuity.INDEPENDENT, condition_rows=rows.condition_rows)
    dropped = _dropped_row_warnings(record)
    assert len(dropped) == 1 and dropped[0].startswith(
        "independent experts drop the 18 residual rows that read more than one block (rows "
        "[3, 4, 7, 8, 11] ...)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # coupled experts drop nothing
        HardConstraint(rows.rows, BlockRouter((4, 16), (1, 4)), (16,))


def _meta_coefficient_rows(nx: int):
    """Heat rows u_t = a u_xx with the diffusivity a held on the meta device (standing in for a
    coefficient field kept on CUDA: a CPU tensor meeting it fails as on a GPU), then the
    initial rows u(0) = phi."""
    a = torch.ones(nx - 2, dtype=torch.float64, device="meta")

    def rows(u, phi):
        pde = u[:, 1:, 1:-1] - u[:, :-1, 1:-1] - 0.01 * a * (
            u[:, :-1, 2:] - 2 * u[:, :-1, 1:-1] + u[:, :-1, :-2])
        return torch.cat([pde.flatten(1), u[:, 0] - phi], 1)
    return rows


@pytest.mark.parametrize("layer_class", [HardConstraint, PartitionOfUnity])
def test_rows_holding_a_tensor_on_another_device_name_the_device_argument(layer_class):
    """Such rows failed at construction ("Tensor on device cpu is not on the expected device")
    without a word of the cure, though they would run in forward."""
    with pytest.raises(ValueError, match=r"raise on one sample of the grid \(5, 12\) made on "
                                         r"device='cpu' \(RuntimeError: .*device.*\).*pass that "
                                         r"device as device=") as err:
        layer_class(_meta_coefficient_rows(12), BlockRouter((5, 12), (1, 2)), (12,))
    assert isinstance(err.value.__cause__, RuntimeError)


def test_the_probes_run_on_the_given_device():
    """The rows' check and the dependence probes were made on the CPU whatever the rows held."""
    from physml.constraints.hard import check_rows_accept, probed_dependence

    rows, router = _meta_coefficient_rows(12), BlockRouter((5, 12), (1, 2))
    check_rows_accept(rows, router, (12,), torch.device("meta"))
    depends = probed_dependence(rows, (12,), router.masks().to("meta"))
    assert depends.device.type == "meta" and depends.shape == (2, 4 * 10 + 12)


def test_the_coloured_jacobian_moves_with_its_layer_and_copies_nothing_per_call():
    """The row dependence and the colours were copied from the host on every Jacobian."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Devices(TorchDispatchMode):
        """The devices of every tensor an operation reads (Python numbers, 0-dim, aside)."""

        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            for value in torch.utils._pytree.tree_leaves((args, kwargs or {})):
                if isinstance(value, torch.Tensor) and value.dim():
                    self.seen.add(value.device.type)
            return func(*args, **(kwargs or {}))

    router = BlockRouter((6, 16), (1, 4))
    layer = HardConstraint(DiffusionSorptionRows(16, dt=5.0).rows, router, (16,))
    colouring = layer.colouring
    depends, colours = colouring.depends, colouring.colours
    g = torch.Generator().manual_seed(1)
    blocks = router.split(torch.randn(2, 3, 6, 16, dtype=torch.float64, generator=g))
    omega = torch.randn(2, 4 * 3, dtype=torch.float64, generator=g)
    phi = torch.full((2, 16), 0.1, dtype=torch.float64)

    def jacobian(blocks, phi, omega):
        return layer.jacobian(omega, blocks.transpose(1, 2), phi)

    first = jacobian(blocks, phi, omega)
    assert torch.equal(jacobian(blocks, phi, omega), first)
    assert colouring.depends is depends and colouring.colours is colours
    layer.to("meta")
    assert colouring.depends.device.type == colouring.colours.device.type == "meta"
    assert layer.colouring is colouring and colouring.count == 2
    assert layer.groups.device.type == "meta"
    on_meta = [value.to("meta") for value in (blocks, phi, omega)]
    with Devices() as mode:
        J = jacobian(*on_meta)
    assert mode.seen == {"meta"} and J.shape == first.shape


@pytest.mark.parametrize("coloured", [True, False])
def test_the_layers_jacobian_reads_the_rows_in_one_forward_mode_pass(coloured):
    """All groups' directions (C N coloured, K N not) go through one vectorised pass: a pass
    per group cost its fixed overhead C (or K) times, slower than before at small bases."""
    router = BlockRouter((6, 16), (1, 4))
    layer = HardConstraint(DiffusionSorptionRows(16, dt=5.0).rows, router, (16,),
                           coloured=coloured)
    calls = []
    rows = layer.rows
    layer.rows = lambda u, phi: calls.append(u.shape) or rows(u, phi)
    g = torch.Generator().manual_seed(1)
    blocks = router.split(torch.randn(2, 3, 6, 16, dtype=torch.float64, generator=g))
    omega = torch.randn(2, 4 * 3, dtype=torch.float64, generator=g)
    J = layer.jacobian(omega, blocks.transpose(1, 2), torch.full((2, 16), 0.1).double())
    assert len(calls) == 1 and J.shape[::2] == (2, 4 * 3)


def test_overlapping_experts_warn_of_the_global_rows_they_drop():
    """Mass rows read beyond every widened block: the partition of unity dropped them without
    a word."""
    nt, nx = 5, 12

    def conservation(u, phi):  # the mass at each level is the initial mass; the initial rows
        return torch.cat([u.sum(-1) - phi.sum(-1)[:, None], u[:, 0] - phi], dim=1)

    with pytest.warns(UserWarning) as record:
        PartitionOfUnity(conservation, BlockRouter((nt, nx), (1, 3)), (nx,))
    dropped = [str(w.message) for w in record if "drop the" in str(w.message)]
    assert len(dropped) == 1 and re.match(
        r"overlapping experts \(overlap=2\) drop the 5 residual rows that read more than one "
        r"block \(rows \[0, 1, 2, 3, 4\]\): .* wider overlap, .*continuity=INTERFACE_ROWS, or "
        r"with one expert$", dropped[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # local rows: every row has an expert
        PartitionOfUnity(DiffusionSorptionRows(16, dt=5.0).rows, BlockRouter((4, 16), (1, 4)),
                         (16,))


def test_the_rows_give_the_solver_parameters_they_hold():
    """What a run's predictions record: the diffusion-sorption run recorded none (its
    dataset spec gives none; the rows hold PDEBench's constants)."""
    assert DiffusionSorptionRows(16, dt=5.0, D=1e-3).physical_parameters() == {
        "D": 1e-3, "porosity": 0.29, "rho_s": 2880.0, "k_f": 3.5e-4, "n_f": 0.874}
    assert NavierStokesRows(4, 4, 0.1, nu=2e-4).physical_parameters() == {"nu": 2e-4,
                                                                         "forcing": 0.1}


def test_diffusion_sorption_rows_refuse_a_grid_of_another_width():
    """Rows built for 16 cells took 20 or 32 with the cell size 1/16 and no message; the
    layer's phi_shape advice then led to a call it accepted on the wrong grid."""
    rows = DiffusionSorptionRows(16, dt=10.0)
    u = torch.rand(1, 4, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"u has 32 cells on its last axis \(shape \(1, 4, 32\)\) "
                                         r"but these diffusion-sorption rows were built for "
                                         r"nx=16"):
        rows.rows(u, u[:, 0])
    for phi_shape in [(16,), (20,)]:  # neither phi_shape makes the 20-cell grid acceptable
        with pytest.raises(ValueError, match=r"u has 20 cells .* built for nx=16"):
            HardConstraint(rows.rows, BlockRouter((3, 20), (1, 2)), phi_shape)
        with pytest.raises(ValueError, match=r"u has 20 cells .* built for nx=16"):
            PartitionOfUnity(rows.rows, BlockRouter((3, 20), (1, 2)), phi_shape)


@pytest.mark.parametrize(("build", "fixed", "message"), [
    (lambda r: HardConstraint(r, BlockRouter((3, 8), (1, 2)), (8,),
                              continuity=Continuity.INDEPENDENT), 10,
     r"expert 0 of 2 has 10 residual rows on 12 grid points, which fix at most 10 unknowns"),
    (lambda r: HardConstraint(r, BlockRouter((3, 8), (1, 2)), (8,)), 12,
     r"expert 0 of 2 has 17 residual rows on 12 grid points, which fix at most 12 unknowns"),
    (lambda r: PartitionOfUnity(r, BlockRouter((3, 8), (1, 2)), (8,)), 16,
     r"expert 0 of 2 has 16 residual rows on 18 grid points, which fix at most 16 unknowns"),
])
def test_a_basis_larger_than_an_expert_can_fix_is_refused(build, fixed, message):
    """Two experts on 3 x 8 cells took a basis of N=12 silently: an expert's 10 rows left its
    weights free, and the implicit gradient differed from the layer's finite differences by
    10.4 (gradients of 6.2)."""
    layer = build(DiffusionSorptionRows(8, dt=10.0).rows)
    g = torch.Generator().manual_seed(0)
    basis = 0.3 + torch.rand(1, fixed + 1, 3, 8, dtype=torch.float64, generator=g)
    u0 = torch.rand(1, 8, dtype=torch.float64, generator=g)
    with pytest.raises(ValueError, match=rf"the basis has N={fixed + 1} functions but {message}: "
                                         r"its least squares has no unique solution .* use at "
                                         rf"most {fixed} basis functions, or fewer experts"):
        layer(basis, u0)
    assert layer(basis[:, :fixed], u0).shape == (1, 3, 8)
