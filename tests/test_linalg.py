"""The sparse linear-algebra layer: CG/BiCGStab/GMRES stopping rules, errors, preconditioners,
agreement with SciPy, and the implicit-solve adjoint."""

import os
import re
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import warp as wp
import warp.sparse as wps

from physml.errors import ConvergenceError, InaccurateSolveWarning
from physml.linalg_bridge import csr_solve
from physml.solvers.linalg import (
    CsrOperator,
    IncompleteCholesky,
    Jacobi,
    RugeStubenAMG,
    SmoothedAggregationAMG,
    StencilOperator,
    bicgstab,
    cg,
    csr_from_scipy,
    csr_to_scipy,
    gmres,
)
from physml.solvers.linalg.model_problems import (
    convection_diffusion_2d,
    layered_coefficient,
    poisson_2d,
)
from physml.solvers.linalg.scalar_table import ScalarTable

DTYPES = {"float32": (wp.float32, np.float32, 1e-4), "float64": (wp.float64, np.float64, 1e-10)}


def warp_system(A, b, dtype):
    T, np_dtype, _ = DTYPES[dtype]
    op = CsrOperator(csr_from_scipy(A, T, "cpu"))
    return op, wp.array(b.astype(np_dtype), dtype=T, device="cpu")


def relative_residual(A, x, b):
    return np.linalg.norm(b - A @ x.astype(np.float64)) / np.linalg.norm(b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cg_stops_at_requested_relative_residual(dtype, rng):
    A = poisson_2d(24)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, dtype)
    rtol = DTYPES[dtype][2]
    results = [cg(op, bw, rtol=rtol, check_every=k) for k in (1, 7)]
    first, sparse_checks = results
    # the first iterate below the tolerance, whatever the check interval
    assert first.iterations == sparse_checks.iterations
    np.testing.assert_array_equal(first.x.numpy(), sparse_checks.x.numpy())
    relative = first.residuals / first.b_norm
    assert relative[-1] <= rtol < relative[-2]
    assert len(first.residuals) == first.iterations + 1
    assert relative_residual(A, first.x.numpy(), b) <= 3 * rtol  # the true residual



def test_table_cells_follow_the_device_cursor(rng):
    A = poisson_2d(4)
    op, _ = warp_system(A, rng.standard_normal(16), "float64")
    xh = rng.standard_normal(16)
    x = wp.array(xh, dtype=wp.float64, device="cpu")
    table = ScalarTable(rows=4, columns=2, device="cpu")
    product = op.bind_dot(x, wp.empty_like(x), table.cell(1, 1))  # s[cursor + 1, 1] += x · Ax
    for _ in range(2):
        product()
        table.advance()
    expected = np.zeros((4, 2))
    expected[1, 1] = expected[2, 1] = xh @ (A @ xh)
    np.testing.assert_allclose(table.read(), expected, rtol=1e-14)
    table.roll()  # after 2 iterations: row 0 = row 2, the rest zeroed, the cursor rewound
    expected[1:] = 0.0
    expected[0, 1] = xh @ (A @ xh)
    np.testing.assert_allclose(table.read(), expected, rtol=1e-14)
    assert table.cursor.numpy()[0] == 0


@pytest.mark.parametrize(("solver", "precondition"),
                         [(cg, False), (cg, True), (bicgstab, True)])
def test_a_solve_records_its_launches_once_whatever_its_length(solver, precondition, rng,
                                                               monkeypatch):
    A = poisson_2d(24)
    b = rng.standard_normal(A.shape[0])
    launch = wp.launch
    launches = []

    def counting_launch(*args, **kwargs):
        launches.append(kwargs.get("record_cmd", False))
        return launch(*args, **kwargs)

    monkeypatch.setattr(wp, "launch", counting_launch)
    counts = []
    for maxiter in (3, 40):  # less than one block of check_every = 10; four blocks
        op, bw = warp_system(A, b, "float64")  # a new operator: nothing kept from before
        M = Jacobi(op) if precondition else None
        launches.clear()
        with pytest.raises(ConvergenceError):
            solver(op, bw, preconditioner=M, rtol=1e-14, maxiter=maxiter, check_every=10)
        counts.append(len(launches))
        assert all(launches)  # every launch recorded, none packed anew per iteration
        launches.clear()  # the same operator and preconditioner again: nothing to record
        again = solver(op, bw, preconditioner=M, rtol=1e-6, check_every=10)
        assert launches == []
        assert relative_residual(A, again.x.numpy(), b) <= 1e-6
    assert counts[0] == counts[1] > 0


def test_a_kept_workspace_gives_the_bits_of_a_new_one_and_results_stay_the_callers(rng):
    A = poisson_2d(16)
    op, b1 = warp_system(A, rng.standard_normal(A.shape[0]), "float64")
    _, b2 = warp_system(A, rng.standard_normal(A.shape[0]), "float64")
    M = Jacobi(op)
    first = cg(op, b1, preconditioner=M, rtol=1e-10)
    kept = first.x.numpy().copy()
    second = cg(op, b2, b1, preconditioner=M, rtol=1e-10)  # the kept workspace, x0 = b1
    fresh_op, _ = warp_system(A, b1.numpy(), "float64")
    fresh = cg(fresh_op, b2, b1, preconditioner=Jacobi(fresh_op), rtol=1e-10)
    np.testing.assert_array_equal(first.x.numpy(), kept)  # not overwritten by the next solve
    np.testing.assert_array_equal(second.x.numpy(), fresh.x.numpy())
    np.testing.assert_array_equal(second.residuals, fresh.residuals)


class _HiddenDiagonal:
    """A Jacobi preconditioner that CG cannot fuse: its apply only, with its dot product."""

    name = "jacobi"

    def __init__(self, op):
        self._jacobi = Jacobi(op)

    def apply(self, r, z):
        self._jacobi.apply(r, z)

    def bind_dot(self, r, z, cell):
        return self._jacobi.bind_dot(r, z, cell)


@pytest.mark.parametrize("dtype", DTYPES)
def test_jacobi_applied_inside_the_cg_update_gives_the_same_bits(dtype, rng):
    A = sp.diags(rng.uniform(1.0, 50.0, 576)) @ poisson_2d(24) @ sp.diags(rng.uniform(1, 2, 576))
    A = (A + A.T).tocsr()  # symmetric, rows of very different scales
    op, bw = warp_system(A, rng.standard_normal(A.shape[0]), dtype)
    fused = cg(op, bw, preconditioner=Jacobi(op), rtol=DTYPES[dtype][2])
    apart = cg(op, bw, preconditioner=_HiddenDiagonal(op), rtol=DTYPES[dtype][2])
    assert fused.iterations == apart.iterations > 10
    np.testing.assert_array_equal(fused.x.numpy(), apart.x.numpy())
    np.testing.assert_array_equal(fused.residuals, apart.residuals)


@pytest.mark.parametrize("check_every", [1, 10, 64])
def test_a_cpu_solve_runs_no_iteration_past_the_one_that_converged(check_every, rng):
    A = poisson_2d(16)
    products = []

    def apply(x, y):
        products.append(1)
        y.assign(A @ x.numpy())

    op = StencilOperator(A.shape[0], apply, dtype=wp.float64, device="cpu",
                         diagonal=wp.array(A.diagonal(), dtype=wp.float64, device="cpu"))
    b = wp.array(rng.standard_normal(A.shape[0]), dtype=wp.float64, device="cpu")
    result = cg(op, b, preconditioner=Jacobi(op), rtol=1e-9, check_every=check_every)
    assert result.iterations % 10 != 0 or check_every == 1
    # r0 = b - A x0, one per iteration, then the true residual b - A x of the answer
    assert len(products) == 2 + result.iterations


@pytest.mark.parametrize("solve", [cg, bicgstab])
def test_a_solve_whose_true_residual_drifted_restarts_until_it_meets_the_tolerance(solve, rng):
    # from an x0 1e8 times too large the recursive residual falls 18 orders, and the true one
    # stops near 2e-5 of |b| when the recursive one meets 1e-10; a restart from x mends it
    A = poisson_2d(16)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, "float64")
    x0 = wp.array(1e8 * rng.standard_normal(A.shape[0]), dtype=wp.float64, device="cpu")
    result = solve(op, bw, x0, rtol=1e-10)
    true = relative_residual(A, result.x.numpy(), b)
    assert true <= 1e-10
    assert result.relative_residual == pytest.approx(true, rel=1e-3)
    assert len(result.residuals) == result.iterations + 1


@pytest.mark.parametrize("solve", [cg, bicgstab, gmres])
def test_a_tolerance_below_float32_s_floor_warns_and_reports_the_true_residual(solve, rng):
    """GMRES ran all 10 n steps (3 s) and then advised raising maxiter."""
    A = poisson_2d(32)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, "float32")
    with pytest.warns(InaccurateSolveWarning, match=r"float32 arithmetic.*solve in float64"):
        result = solve(op, bw, rtol=1e-8)
    assert result.iterations < 200
    true = relative_residual(A, result.x.numpy(), b)
    assert true > 1e-8
    # b - A x evaluated in float32: at the floor its rounding is of the residual's own size
    assert result.relative_residual == pytest.approx(true, rel=0.5)


@pytest.mark.parametrize("solve", [cg, bicgstab])
def test_a_tolerance_far_below_float32_s_floor_returns_the_best_x_checked(solve, rng):
    """The last x came back, twice the true residual a looser tolerance reached, after
    iterations growing with log(1/rtol)."""
    A = poisson_2d(64)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, "float32")
    near, far = (solve(op, bw, rtol=rtol, floor="accept") for rtol in (1e-6, 1e-12))
    assert relative_residual(A, far.x.numpy(), b) <= 1.1 * relative_residual(A, near.x.numpy(), b)
    assert far.iterations <= 2 * near.iterations
    assert len(far.residuals) == far.iterations + 1
    assert far.relative_residual == pytest.approx(relative_residual(A, far.x.numpy(), b), rel=0.5)


@pytest.mark.parametrize("solve", [cg, bicgstab, gmres])
def test_the_default_tolerance_is_met_in_float32_and_unchanged_in_float64(solve, rng):
    """The default rtol 1e-8 lay below float32's floor: every float32 solve warned."""
    A = poisson_2d(48)
    b = rng.standard_normal(A.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = solve(*warp_system(A, b, "float32"))
    assert relative_residual(A, single.x.numpy(), b) <= 2e-5 and single.relative_residual <= 1e-5
    double = solve(*warp_system(A, b, "float64"))
    explicit = solve(*warp_system(A, b, "float64"), rtol=1e-8)
    assert double.iterations == explicit.iterations
    np.testing.assert_array_equal(double.x.numpy(), explicit.x.numpy())


def test_a_float32_bicgstab_whose_residual_runs_away_stops_with_its_best_x():
    """On a float32 system whose rounding floor (2e-4, the exact x rounded to float32) lies
    above the tolerance, the recursive residual never came near the floor: it grew from 2e-2
    to NaN over 6150 iterations, and the error blamed the operator's values."""
    m = 48
    A = poisson_2d(m, layered_coefficient(m, contrast=1e4))
    b = np.ones(A.shape[0])
    op, bw = warp_system(A, b, "float32")
    with pytest.warns(InaccurateSolveWarning, match=r"float32 arithmetic.*solve in float64"):
        result = bicgstab(op, bw)
    assert result.iterations < 3000
    true = relative_residual(A, result.x.numpy(), b)
    assert true < 5e-3  # the best x checked, not the last one
    assert result.relative_residual == pytest.approx(true, rel=0.5)
    with pytest.raises(ConvergenceError, match=r"bicgstab stagnated .* float32 arithmetic"):
        bicgstab(op, bw, floor="raise")


def _central_differences(m, peclet=0.0, shift=0.0):
    """$-\\Delta u + \\text{peclet}\\,(u_x + u_y) - \\text{shift}\\,u$ on an m x m grid of
    spacing 1 / (m + 1), central differences throughout, and a b of a random exact x."""
    h = 1.0 / (m + 1)
    second = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], (m, m)) / h**2
    first = sp.diags([-1.0, 1.0], [-1, 1], (m, m)) / (2 * h)
    eye = sp.identity(m)
    A = (sp.kron(second, eye) + sp.kron(eye, second) + peclet * (sp.kron(first, eye)
         + sp.kron(eye, first)) - shift * sp.identity(m * m)).tocsr()
    return A, A @ np.random.default_rng(1).standard_normal(m * m)


def test_a_float32_bicgstab_that_diverges_far_above_the_floor_raises_naming_it():
    """Convection-dominated (Pe 5000) central differences: float32 BiCGStab runs away again
    after every restart and stopped at 7e-3 with a warning blaming float32's floor (1e-7 of
    |b| here: float32 LU reaches 4e-7, and float64 BiCGStab breaks down too)."""
    A, b = _central_differences(64, peclet=5000.0)
    op, bw = warp_system(A, b, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InaccurateSolveWarning)
        with pytest.raises(ConvergenceError, match=r"bicgstab diverged \(its recursive residual "
                           r"grew .* at iteration \d+.* times above the rounding floor.*"
                           r"use a preconditioner or gmres") as caught:
            bicgstab(op, bw, rtol=1e-5)
    assert "float64" not in str(caught.value)
    assert 1e-3 < caught.value.residual < 1e-1  # the best x's true residual
    assert gmres(op, bw, rtol=1e-5).relative_residual <= 1e-5  # as the error advises


def test_a_diverging_float32_bicgstab_fails_the_same_way_whatever_check_every():
    """An indefinite shifted Laplacian: float32 BiCGStab's recursive residual runs away, and it
    stopped at 8e-6 of |b|, 70 times its rounding floor (float32 LU reaches 2e-7), returning
    that x with the float32 floor warning at check_every=1 and 10 alike."""
    A, b = _central_differences(64, shift=800.0)
    op, bw = warp_system(A, b, "float32")
    for check_every in (1, 10):
        with warnings.catch_warnings():
            warnings.simplefilter("error", InaccurateSolveWarning)
            with pytest.raises(ConvergenceError, match=r"bicgstab diverged"):
                bicgstab(op, bw, rtol=1e-6, check_every=check_every)


@pytest.mark.parametrize("solve", [cg, gmres])
def test_the_floor_argument_accepts_or_raises_and_a_bad_one_is_named(solve, rng):
    A = poisson_2d(32)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, "float32")
    name = solve.__name__
    with pytest.raises(ConvergenceError, match=rf"{name} stagnated .* float32 arithmetic") as info:
        solve(op, bw, rtol=1e-8, floor="raise")
    assert info.value.residual > 1e-8 and len(info.value.residuals) == info.value.iterations + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert solve(op, bw, rtol=1e-8, floor="accept").relative_residual > 1e-8
    with pytest.raises(ValueError, match=r"floor='loud'; allowed: 'warn', 'accept', 'raise'"):
        solve(op, bw, floor="loud")


def test_cg_raises_with_the_residual_reached_when_maxiter_is_too_small(rng):
    A = poisson_2d(24)
    op, bw = warp_system(A, rng.standard_normal(A.shape[0]), "float64")
    with pytest.raises(ConvergenceError, match=r"cg did not converge in 5 iterations") as info:
        cg(op, bw, rtol=1e-10, maxiter=5, check_every=3)
    err = info.value
    assert err.iterations == 5 and len(err.residuals) == 6
    assert err.residual == pytest.approx(err.residuals[-1] / np.linalg.norm(bw.numpy()))
    assert err.residual > 1e-10
    assert f"{err.residual:.3e}" in str(err)


@pytest.mark.parametrize("solve", [cg, bicgstab, gmres])
@pytest.mark.parametrize("scale", [1.0, 1e-170])
def test_a_solve_that_runs_out_of_iterations_carries_its_iterate(solve, scale, rng):
    """The error carried the residual reached but not x: 5 iterations of work were lost, and a
    second solve could not go on from them. Its x is in b's units, also where b's square
    underflows and the solve runs on b / s."""
    A = poisson_2d(24)
    b = rng.standard_normal(A.shape[0]) * scale
    op, bw = warp_system(A, b, "float64")
    with pytest.raises(ConvergenceError, match="did not converge") as info:
        solve(op, bw, rtol=1e-10, maxiter=5)
    x = info.value.x.numpy()
    assert info.value.x.device == bw.device and info.value.x.dtype == bw.dtype
    reached = relative_residual(A, x / scale, b / scale)
    assert reached == pytest.approx(info.value.residual, rel=1e-6) and reached < 0.9
    again = solve(op, bw, info.value.x, rtol=1e-10)  # goes on from where it stopped
    assert again.residuals[0] / again.b_norm == pytest.approx(reached, rel=1e-6)
    assert again.relative_residual <= 1e-10


@pytest.mark.parametrize("check_every", [1, 2, 10, 50])
def test_an_error_s_iterate_is_the_one_it_reports_or_none_after_a_breakdown(check_every):
    """On a singular A with b outside its range CG divides by zero: the x past the breakdown
    was zeros, NaN or 1e153 depending on check_every, none of them the iterate whose residual
    was reported."""
    A = sp.block_diag([sp.identity(38), np.ones((2, 2))]).tocsr()
    b = np.r_[np.ones(39), -1.0]
    op, bw = warp_system(A, b, "float64")
    with pytest.raises(ConvergenceError) as caught:
        cg(op, bw, check_every=check_every)
    error = caught.value
    if error.reason.startswith("broke down"):
        assert error.x is None
    else:  # the runaway caught first: its best iterate
        assert relative_residual(A, error.x.numpy(), b) == pytest.approx(error.residual)


def test_gmres_carries_its_last_cycle_s_iterate_at_a_zero_pivot():
    """GMRES stops before it updates x: its x at a zero pivot is the last cycle's, whose
    residual the error reports (it was dropped with CG's and BiCGStab's)."""
    A = sp.diags(np.r_[np.ones(39), 0.0]).tolil()
    for i in range(38):
        A[i, i + 1] = 0.3
    A = A.tocsr()
    b = np.ones(40)
    op, bw = warp_system(A, b, "float64")
    with pytest.raises(ConvergenceError, match="zero pivot") as caught:
        gmres(op, bw, rtol=1e-10, maxiter=200, restart=10)
    assert relative_residual(A, caught.value.x.numpy(), b) == pytest.approx(
        caught.value.residual, rel=1e-9)


def test_a_diverged_solve_carries_its_best_iterate():
    A, b = _central_differences(64, peclet=5000.0)
    op, bw = warp_system(A, b, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InaccurateSolveWarning)
        with pytest.raises(ConvergenceError, match=r"bicgstab diverged") as caught:
            bicgstab(op, bw, rtol=1e-5)
    assert relative_residual(A, caught.value.x.numpy(), b) == pytest.approx(
        caught.value.residual, rel=1e-3)


@pytest.mark.parametrize("solve", [cg, bicgstab, gmres])
def test_a_non_finite_input_is_named_not_the_method(solve, rng):
    A = poisson_2d(6)
    b = rng.standard_normal(A.shape[0])
    b[3] = np.nan
    op, bw = warp_system(A, b, "float64")
    with pytest.raises(ValueError, match=r"b holds NaN/Inf values in rows \[3\]"):
        solve(op, bw)
    huge = wp.array(np.full(A.shape[0], 1e308), dtype=wp.float64, device="cpu")
    with pytest.raises(ValueError, match=r"b's norm overflows float64"):
        solve(op, huge)
    bad = A.copy()
    bad.data[5] = np.inf
    op, bw = warp_system(bad, rng.standard_normal(A.shape[0]), "float64")
    with pytest.raises(ConvergenceError, match=r"initial residual b - A x0 is NaN/Inf"):
        solve(op, bw)


@pytest.mark.parametrize("solve, words", [
    (cg, r"cg broke down \(p\^T A p = 0\) in 0 iterations.* A is not positive definite"),
    # r0^T v = 0 comes before omega = 0 (which follows from the zero step) in iteration 0
    (bicgstab, r"bicgstab broke down \(r0\^T r = 0 or r0\^T v = 0\) in 0 iterations.* "
               r"use gmres"),
])
def test_a_division_by_zero_stops_the_solve_at_once(solve, words):
    """A = blockdiag([[0, 1], [1, 0]]), b = (1, 0, 1, 0, ...): the step's denominator is zero
    from the first iteration; the kernels take a zero step there, and the solve once idled
    to maxiter (10 n: 8.5 s for CG at n = 2e4) before advising to raise it."""
    A = sp.kron(sp.eye(500), sp.csr_matrix([[0.0, 1.0], [1.0, 0.0]])).tocsr()
    op, bw = warp_system(A, np.tile([1.0, 0.0], 500), "float64")
    with pytest.raises(ConvergenceError, match=words) as info:
        solve(op, bw, check_every=7)
    assert info.value.iterations == 0 and info.value.residual == 1.0


class _Overflowing:
    """A preconditioner whose third apply overflows (a factor with a tiny diagonal)."""

    name = "overflowing"

    def __init__(self):
        self.applies = 0

    def apply(self, r, z):
        self.applies += 1
        wp.copy(z, wp.array(r.numpy() * (1e300 if self.applies < 3 else np.inf)))


@pytest.mark.parametrize("solve", [cg, bicgstab, gmres])
def test_a_nan_in_the_middle_of_a_solve_names_the_preconditioner_or_the_operator(solve):
    """The advice was "raise maxiter, use a preconditioner" (and GMRES raised SciPy's "array must
    not contain infs or NaNs")."""
    A = poisson_2d(6)
    op, bw = warp_system(A, np.ones(A.shape[0]), "float64")
    with pytest.raises(ConvergenceError, match=r"broke down \(NaN/Inf\) .*; the 'overflowing' "
                                               r"preconditioner's apply or the operator produced "
                                               r"a non-finite value: check the preconditioner"):
        solve(op, bw, preconditioner=_Overflowing())
    products = []

    def apply(x, y):  # NaN from the third product on
        products.append(1)
        y.assign(A @ x.numpy() * (1.0 if len(products) < 3 else np.nan))

    stencil = StencilOperator(A.shape[0], apply, dtype=wp.float64, device="cpu")
    with pytest.raises(ConvergenceError, match=r"broke down \(NaN/Inf\) .*; the operator "
                                               r"produced a non-finite value: check its values"):
        solve(stencil, bw)


def test_cg_names_an_indefinite_preconditioner():
    A = poisson_2d(6)
    op, bw = warp_system(A, np.ones(A.shape[0]), "float64")

    class Indefinite:  # z = M r with r^T M r = 0 for every r: a rotation of pairs
        def apply(self, r, z):
            v = r.numpy()
            wp.copy(z, wp.array(np.stack([-v[1::2], v[0::2]], 1).ravel(), dtype=wp.float64))

    with pytest.raises(ConvergenceError, match=r"cg broke down \(r\^T z = 0 with r != 0\) .*"
                                               r"the preconditioner is not positive definite"):
        cg(op, bw, preconditioner=Indefinite())


def test_gmres_names_a_singular_system():
    op, bw = warp_system(sp.csr_matrix(np.diag([1.0, 0.0])), np.array([1.0, 1.0]), "float64")
    with pytest.raises(ConvergenceError, match=r"gmres broke down \(a zero pivot in the "
                                               r"least-squares solve\) .* A is singular"):
        gmres(op, bw)


def test_a_matrix_whose_entries_outgrow_its_arrays_is_followed_not_read_past_its_end(rng):
    """warp.sparse replaces a matrix's arrays when new entries outgrow them: the operator kept
    a view of the old values (NaN), and a solve reused the workspace recorded on them (a
    segmentation fault)."""
    A1 = poisson_2d(16)
    n = A1.shape[0]
    op = CsrOperator(csr_from_scipy(A1, wp.float64, "cpu"))
    b = rng.standard_normal(n)
    bw = wp.array(b, dtype=wp.float64, device="cpu")
    cg(op, bw)
    A2 = (A1 + 0.5 * sp.eye(n) - 0.2 * (sp.eye(n, k=17) + sp.eye(n, k=-17))).tocoo()
    wps.bsr_set_from_triplets(op.matrix, wp.array(A2.row, dtype=wp.int32),
                              wp.array(A2.col, dtype=wp.int32),
                              wp.array(A2.data, dtype=wp.float64))
    y = wp.empty(n, dtype=wp.float64, device="cpu")
    op.matvec(bw, y)
    np.testing.assert_allclose(y.numpy(), A2.tocsr() @ b, rtol=1e-13, atol=1e-13)
    x = cg(op, bw, rtol=1e-10).x.numpy()
    assert np.linalg.norm(A2.tocsr() @ x - b) <= 1e-9 * np.linalg.norm(b)


def test_operators_and_options_of_the_wrong_kind_are_named(rng):
    P = poisson_2d(4)
    op, bw = warp_system(P, rng.standard_normal(16), "float64")
    for A in (P, P.toarray()):
        with pytest.raises(ValueError, match=f"A is a {type(A).__name__}; the solvers take a "
                                             "LinearOperator"):
            cg(A, bw)
    with pytest.raises(ValueError, match="maxiter=2.5 must be a whole number >= 1"):
        cg(op, bw, maxiter=2.5)
    with pytest.raises(ValueError, match="matrix is complex"):
        csr_from_scipy(sp.eye(3, dtype=complex) * (1 + 1j), wp.float64, "cpu")
    stencil = StencilOperator(16, op.matvec, dtype=np.float64, device="cpu",
                              diagonal=op.diagonal())
    assert stencil.dtype == wp.float64
    np.testing.assert_allclose(cg(stencil, bw, preconditioner=Jacobi(stencil), rtol=1e-10).x
                               .numpy(), cg(op, bw, rtol=1e-10).x.numpy(), rtol=1e-8)
    with pytest.raises(ValueError, match=r"diagonal is a ndarray; the operator needs a Warp"):
        StencilOperator(16, op.matvec, dtype="float64", device="cpu", diagonal=np.ones(16))
    op32, _ = warp_system(P, rng.standard_normal(16), "float32")
    with pytest.raises(ValueError, match="the amg_sa preconditioner was built for a float32 "
                                         "matrix of 16 unknowns on cpu; A is float64"):
        cg(op, bw, preconditioner=SmoothedAggregationAMG(op32))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_model_problems_store_only_their_stencils_entries(m):
    """A block format's dense blocks kept zeros (m <= 3), which IC(0) took into its pattern."""
    for A in (poisson_2d(m), convection_diffusion_2d(m, 0.1, (1.0, -1.0))):
        assert A.nnz == 5 * m * m - 4 * m and np.all(A.data != 0)


def test_bad_arguments_are_refused(rng):
    op, bw = warp_system(poisson_2d(4), rng.standard_normal(16), "float64")
    with pytest.raises(ValueError, match="b has shape"):
        cg(op, wp.zeros(3, dtype=wp.float64, device="cpu"))
    with pytest.raises(ValueError, match="float32"):
        cg(op, wp.zeros(16, dtype=wp.float32, device="cpu"))
    with pytest.raises(ValueError, match="maxiter=0"):
        cg(op, bw, maxiter=0)
    for solve, bad in ((cg, {"rtol": "1e-8"}), (gmres, {"atol": None}),
                       (bicgstab, {"rtol": float("nan")}), (cg, {"atol": -1.0})):
        name, value = next(iter(bad.items()))
        with pytest.raises(ValueError, match=re.escape(f"{name}={value!r}: a tolerance is a real")):
            solve(op, bw, **bad)
    stencil = StencilOperator(16, op.matvec, dtype=wp.float64, device="cpu")
    with pytest.raises(ValueError, match="no diagonal"):
        Jacobi(stencil)

    class Bare:  # the LinearOperator protocol and nothing more
        shape, dtype, device = op.shape, op.dtype, op.device
        matvec = op.matvec

    with pytest.raises(ValueError, match=r"Jacobi \('jacobi'\) needs the operator's diagonal, got "
                                         r"a Bare without diagonal\(\)"):
        Jacobi(Bare())
    with pytest.raises(ValueError, match="assembled matrix"):
        SmoothedAggregationAMG(stencil)
    zero_diagonal = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        Jacobi(CsrOperator(csr_from_scipy(zero_diagonal, wp.float64, "cpu")))
    for device, message in (("gpu", "is not a device name; allowed: cpu, cuda, cuda:N"),
                            ("cuda:7", "is not available; available: ")):
        with pytest.raises(ValueError, match=rf"device='{device}' {message}"):
            csr_from_scipy(zero_diagonal, wp.float64, device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_preconditioners_cut_iterations_on_variable_coefficient_poisson(dtype, rng):
    A = poisson_2d(32, layered_coefficient(32, contrast=1e3))
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, dtype)
    rtol = DTYPES[dtype][2]
    exact = spla.spsolve(A.tocsc(), b)
    iterations = {}
    for name, factory in [
        ("none", None),
        ("jacobi", Jacobi),
        ("amg_sa", SmoothedAggregationAMG),
        ("amg_rs", RugeStubenAMG),
    ]:
        M = None if factory is None else factory(op)
        result = cg(op, bw, preconditioner=M, rtol=rtol, maxiter=5000)
        iterations[name] = result.iterations
        assert relative_residual(A, result.x.numpy(), b) <= 5 * rtol
        if dtype == "float64":
            np.testing.assert_allclose(
                result.x.numpy(), exact, rtol=0, atol=1e-7 * abs(exact).max()
            )
    assert iterations["jacobi"] < 0.7 * iterations["none"]
    assert iterations["amg_sa"] < 0.2 * iterations["jacobi"]
    assert iterations["amg_rs"] < 0.2 * iterations["jacobi"]


def test_smoothed_aggregation_built_in_threads_is_the_sequential_one():
    A = poisson_2d(48, layered_coefficient(48, contrast=50.0, seed=3))
    op = CsrOperator(csr_from_scipy(A, wp.float64, "cpu"))
    probe = np.random.default_rng(1).standard_normal(A.shape[0])
    expected = SmoothedAggregationAMG(op).cycle @ probe
    np.random.seed(7)  # noqa: NPY002 (the caller's global stream, which the builds leave as is)
    stream = np.random.rand(3)  # noqa: NPY002
    np.random.seed(7)  # noqa: NPY002
    start, cycled = threading.Barrier(8), [None] * 8

    def build(k):
        start.wait()
        cycled[k] = SmoothedAggregationAMG(op).cycle @ probe

    threads = [threading.Thread(target=build, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(c, expected) for c in cycled)
    assert np.array_equal(np.random.rand(3), stream)  # noqa: NPY002


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_child_forked_during_a_pyamg_build_starts_from_the_caller_s_global_stream(
        monkeypatch):
    """The build seeds NumPy's global generator and restores it after; a child forked from
    another thread meanwhile has no build to restore it, and drew from the seeded state."""
    op = CsrOperator(csr_from_scipy(poisson_2d(8), wp.float64, "cpu"))
    building, forked = threading.Event(), threading.Event()
    original = SmoothedAggregationAMG.build

    def build(*args, **kwargs):
        building.set()
        forked.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(SmoothedAggregationAMG, "build", staticmethod(build))
    np.random.seed(7)  # noqa: NPY002 (the caller's global stream)
    stream = np.random.rand(3)  # noqa: NPY002
    np.random.seed(7)  # noqa: NPY002
    builder = threading.Thread(target=SmoothedAggregationAMG, args=(op,))
    builder.start()
    try:
        assert building.wait(10)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its first draws and leave
            try:
                os.write(write, np.random.rand(3).tobytes())  # noqa: NPY002
            finally:
                os._exit(0)
    finally:
        forked.set()
        builder.join()
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        drawn = np.frombuffer(pipe.read(), dtype=np.float64)
    assert np.array_equal(drawn, stream)
    assert np.array_equal(np.random.rand(3), stream)  # noqa: NPY002


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("precondition", [False, True])
def test_bicgstab_solves_convection_diffusion(dtype, precondition, rng):
    A = convection_diffusion_2d(24, epsilon=0.01, velocity=(1.0, -0.5))
    assert abs(A - A.T).max() > 1.0  # strongly non-symmetric
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, dtype)
    rtol = DTYPES[dtype][2]
    M = Jacobi(op) if precondition else None
    result = bicgstab(op, bw, preconditioner=M, rtol=rtol)
    assert result.relative_residual <= rtol
    assert relative_residual(A, result.x.numpy(), b) <= 5 * rtol
    exact = spla.spsolve(A.tocsc(), b)
    tol = 1e-8 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(result.x.numpy(), exact, rtol=0, atol=tol * abs(exact).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("precondition", [False, True])
def test_gmres_solves_convection_diffusion_like_scipy(dtype, precondition, rng):
    A = convection_diffusion_2d(24, epsilon=0.01, velocity=(1.0, -0.5))
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, dtype)
    rtol = DTYPES[dtype][2]
    M = Jacobi(op) if precondition else None
    result = gmres(op, bw, preconditioner=M, rtol=rtol, restart=20)
    assert relative_residual(A, result.x.numpy(), b) <= rtol  # the residual it reports is true
    assert result.relative_residual <= rtol
    assert len(result.residuals) == result.iterations + 1
    exact = spla.spsolve(A.tocsc(), b)
    tol = 1e-8 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(result.x.numpy(), exact, rtol=0, atol=tol * abs(exact).max())
    if dtype == "float64" and not precondition:  # the same Krylov spaces as SciPy's GMRES(20)
        steps = []
        spla.gmres(A, b, rtol=rtol, restart=20, callback=steps.append, callback_type="pr_norm")
        assert abs(result.iterations - len(steps)) <= 1


def test_gmres_on_the_host_takes_the_steps_of_its_kernels(rng, monkeypatch):
    """Float64 rows on the CPU are orthogonalised by BLAS (the kernels' loops took 5-7x SciPy's
    time): the same iterations and solution as the kernels give."""
    gmres_module = sys.modules[gmres.__module__]
    A = convection_diffusion_2d(16, epsilon=0.01, velocity=(1.0, -0.5))
    op, bw = warp_system(A, rng.standard_normal(A.shape[0]), "float64")
    calls = []
    host = gmres_module._Arnoldi._orthogonalize_on_host
    monkeypatch.setattr(gmres_module._Arnoldi, "_orthogonalize_on_host",
                        lambda self, j: calls.append(j) or host(self, j))
    on_host = gmres(op, bw, rtol=1e-10, restart=10)
    assert len(calls) == on_host.iterations
    monkeypatch.setattr(gmres_module._Arnoldi, "HOST_DTYPES", ())
    kernels = gmres(op, bw, rtol=1e-10, restart=10)
    assert len(calls) == on_host.iterations == kernels.iterations
    np.testing.assert_allclose(on_host.residuals, kernels.residuals, rtol=0,
                               atol=1e-12 * kernels.residuals[0])
    np.testing.assert_allclose(on_host.x.numpy(), kernels.x.numpy(), rtol=0, atol=1e-10)


def test_float32_gmres_on_the_host_is_orthogonalised_by_blas(rng, monkeypatch):
    """Float32 rows kept Warp's scalar loops: 3-5x float64's time per step on the CPU."""
    gmres_module = sys.modules[gmres.__module__]
    A = poisson_2d(32)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(A, b, "float32")
    calls = []
    host = gmres_module._Arnoldi._orthogonalize_on_host
    monkeypatch.setattr(gmres_module._Arnoldi, "_orthogonalize_on_host",
                        lambda self, j: calls.append(j) or host(self, j))
    on_host = gmres(op, bw, rtol=1e-5)
    assert len(calls) == on_host.iterations
    monkeypatch.setattr(gmres_module._Arnoldi, "HOST_DTYPES", ())
    kernels = gmres(op, bw, rtol=1e-5)
    assert len(calls) == on_host.iterations <= kernels.iterations
    assert relative_residual(A, on_host.x.numpy(), b) <= 1e-5


def test_gmres_minimises_the_residual_within_a_cycle(rng):
    A = convection_diffusion_2d(12, epsilon=0.05, velocity=(1.0, 0.3))
    op, bw = warp_system(A, rng.standard_normal(A.shape[0]), "float64")
    full = gmres(op, bw, rtol=1e-12, restart=A.shape[0])
    assert np.all(np.diff(full.residuals) <= 1e-12 * full.b_norm)  # monotone without restarts
    restarted = gmres(op, bw, rtol=1e-12, restart=5)
    assert restarted.iterations > full.iterations


def test_gmres_ends_at_a_floor_just_above_the_tolerance_with_a_warning():
    """At 1e-15, just under float64's floor (about 1.3e-15 here), the estimate stalled with the
    true residual: the cycles repeated until maxiter and raised, advising to raise it."""
    A = poisson_2d(64)
    b = np.random.default_rng(64).standard_normal(A.shape[0])
    op, bw = warp_system(A, b, "float64")
    with pytest.warns(InaccurateSolveWarning, match=r"float64 arithmetic"):
        result = gmres(op, bw, rtol=1e-15, restart=50, maxiter=2000)
    assert result.iterations < 1000
    true = relative_residual(A, result.x.numpy(), b)
    assert 1e-15 < true < 2e-15
    assert result.relative_residual == pytest.approx(true, rel=0.1)


@pytest.mark.parametrize("n, rtol, restart", [(96, 3e-6, 30), (128, None, 30), (64, 1e-5, 10)])
def test_float32_gmres_just_above_its_floor_converges_without_a_warning(n, rtol, restart):
    """Restarts that lowered the true residual a few per mille a cycle, its estimate 1-10 %
    below it, were taken for the floor: 96^2 at 3e-6 stopped at 3.15e-6 after 618 steps, the
    default tolerance warned at 128^2."""
    A = poisson_2d(n)
    b = np.random.default_rng(n).standard_normal(A.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gmres(*warp_system(A, b, "float32"), rtol=rtol, restart=restart)
    tolerance = 1e-5 if rtol is None else rtol
    assert result.relative_residual <= tolerance
    assert relative_residual(A, result.x.numpy(), b) <= 1.01 * tolerance


def test_gmres_at_the_floor_returns_the_x_of_smallest_true_residual(monkeypatch):
    """The x of the last cycle came back, 8 % above the best one computed."""
    gmres_module = sys.modules[gmres.__module__]
    computed = []
    residual = gmres_module._Arnoldi.residual
    monkeypatch.setattr(gmres_module._Arnoldi, "residual",
                        lambda self, x, r: computed.append(residual(self, x, r)) or computed[-1])
    A = poisson_2d(24)
    b = np.random.default_rng(24).standard_normal(A.shape[0])
    result = gmres(*warp_system(A, b, "float32"), rtol=1e-8, floor="accept")
    assert result.residuals[-1] == min(computed) < computed[-1]
    assert len(result.residuals) == result.iterations + 1
    assert result.relative_residual == pytest.approx(
        relative_residual(A, result.x.numpy(), b), rel=0.5)


def test_gmres_raises_with_the_residual_reached(rng):
    A = convection_diffusion_2d(24, epsilon=0.01, velocity=(1.0, -0.5))
    op, bw = warp_system(A, rng.standard_normal(A.shape[0]), "float64")
    with pytest.raises(ConvergenceError, match=r"gmres did not converge in 7 iterations") as info:
        gmres(op, bw, rtol=1e-10, restart=3, maxiter=7)
    assert info.value.residual > 1e-10 and len(info.value.residuals) == 8
    for restart in (0, 2.5, "30"):
        with pytest.raises(ValueError, match=f"restart={restart!r} must be a whole number >= 1"):
            gmres(op, bw, restart=restart)


def test_stencil_operator_and_scipy_round_trip_agree_with_the_matrix(rng):
    A = poisson_2d(5, layered_coefficient(5, contrast=10.0))
    A = A + sp.csr_matrix(([0.0], ([0], [A.shape[0] - 1])), shape=A.shape)  # explicit zero
    A.sum_duplicates()  # canonical: sorted columns, the order csr_from_scipy keeps
    M = csr_from_scipy(A, wp.float64, "cpu")
    back = csr_to_scipy(M)
    assert back.nnz == A.nnz
    np.testing.assert_array_equal(back.indptr, A.indptr)
    np.testing.assert_array_equal(back.indices, A.indices)
    np.testing.assert_array_equal(back.data, A.data)
    op = CsrOperator(M)
    x = wp.array(rng.standard_normal(A.shape[0]), dtype=wp.float64, device="cpu")
    y = wp.empty_like(x)
    op.matvec(x, y)
    np.testing.assert_allclose(y.numpy(), A @ x.numpy(), rtol=1e-14)
    np.testing.assert_allclose(op.diagonal().numpy().ravel(), A.diagonal())
    stencil = StencilOperator(A.shape[0], op.matvec, dtype=wp.float64, device="cpu")
    b = wp.array(A @ np.ones(A.shape[0]), dtype=wp.float64, device="cpu")
    np.testing.assert_allclose(cg(stencil, b, rtol=1e-12).x.numpy(), 1.0, rtol=1e-10)


# ------------------------------------------------------------------------- implicit adjoint


def weighted_graph_laplacian(n):
    """values(w) of A = I + sum_e w_e (e_i - e_j)(e_i - e_j)^T on a path graph, in CSR order:
    SPD for w > 0, assembled from the edge weights w (what a mesh solve does with positions)."""
    pattern = sp.csr_matrix(
        sp.diags_array([np.ones(n - 1), np.ones(n), np.ones(n - 1)], offsets=[-1, 0, 1])
    )
    indptr, indices = torch.tensor(pattern.indptr), torch.tensor(pattern.indices)

    def values(w):
        vals = []
        for i in range(n):
            left = w[i - 1] if i > 0 else w.new_zeros(())
            right = w[i] if i < n - 1 else w.new_zeros(())
            row = ([-left] if i > 0 else []) + [1 + left + right] + ([-right] if i < n - 1 else [])
            vals.extend(row)
        return torch.stack(vals)

    return values, indptr, indices


def test_csr_solve_gradcheck_through_assembled_values_with_cg():
    n = 6
    values, indptr, indices = weighted_graph_laplacian(n)
    gen = torch.Generator().manual_seed(0)
    w = (0.5 + torch.rand(n - 1, generator=gen, dtype=torch.float64)).requires_grad_()
    b = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(w, b):
        return csr_solve(values(w), b, indptr, indices, solver=cg, rtol=1e-13)

    assert torch.autograd.gradcheck(f, (w, b), eps=1e-6, atol=1e-7)
    A = sp.csr_matrix((values(w).detach().numpy(), indices.numpy(), indptr.numpy())).toarray()
    np.testing.assert_allclose(f(w, b).detach().numpy(), np.linalg.solve(A, b.detach().numpy()))



def test_a_symmetric_csr_solve_builds_its_preconditioner_once_for_the_same_gradient():
    """symmetric=True: the backward solve reuses the forward's operator and preconditioner
    (an SA-AMG set-up was most of a small mesh Poisson solve's forward and backward), with
    the gradient bit for bit that of building them for the transpose."""
    n = 6
    values, indptr, indices = weighted_graph_laplacian(n)
    gen = torch.Generator().manual_seed(1)
    w0 = 0.5 + torch.rand(n - 1, generator=gen, dtype=torch.float64)
    b0 = torch.randn(n, generator=gen, dtype=torch.float64)
    built = []

    def jacobi(A):
        built.append(A)
        return Jacobi(A)

    grads = []
    for symmetric in (False, True):
        built.clear()
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        x = csr_solve(values(w), b, indptr, indices, solver=cg, preconditioner=jacobi,
                      symmetric=symmetric, rtol=1e-12)
        (x * torch.arange(n)).sum().backward()
        grads.append((w.grad, b.grad, len(built)))
    (w_grad, b_grad, builds), (w_kept, b_kept, kept_builds) = grads
    assert (builds, kept_builds) == (2, 1)
    torch.testing.assert_close(w_kept, w_grad, rtol=0, atol=0)
    torch.testing.assert_close(b_kept, b_grad, rtol=0, atol=0)

def test_csr_solve_works_as_a_process_s_first_warp_call_and_checks_its_lengths():
    script = ("import torch\n"
              "from physml.linalg_bridge import csr_solve\n"
              "x = csr_solve(torch.tensor([2.0, 4.0], dtype=torch.float64),\n"
              "              torch.tensor([2.0, 2.0], dtype=torch.float64),\n"
              "              torch.tensor([0, 1, 2]), torch.tensor([0, 1]))\n"
              "print(x.tolist())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1.0, 0.5]"
    with pytest.raises(ValueError, match="need \\(n,\\), \\(n \\+ 1,\\)"):
        csr_solve(torch.ones(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                  torch.tensor([0, 1, 2]), torch.tensor([0, 1]))


@pytest.mark.parametrize("column", [-1, 7])
def test_csr_solve_refuses_columns_outside_the_matrix(column):
    """An out-of-range column was dropped from the forward solve (which then ran CG on a
    non-symmetric matrix) while the backward pass wrapped it (-1) or failed on it (7)."""
    A = sp.csr_matrix(np.diag([4.0, 5.0, 6.0, 7.0]) + sp.coo_matrix(
        ([1.0, 1.0], ([0, 3], [3, 0])), shape=(4, 4))).sorted_indices()
    indices = A.indices.copy()
    indices[1] = column
    b = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=f"indices must be column numbers in \\[0, 4\\); "
                                         f"they span \\[{min(column, 0)}, {max(column, 3)}\\]"):
        csr_solve(torch.tensor(A.data), b, A.indptr, indices)
    falling = A.indptr.copy()
    falling[2] = 0
    with pytest.raises(ValueError, match="indptr must rise from 0 to nnz = 6 without falling; "
                                         "it runs from 0 to 6, falling at row 1"):
        csr_solve(torch.tensor(A.data), b, falling, A.indices)


def test_csr_solve_refuses_fractional_indices_and_a_solver_s_name():
    """indptr + 0.5 was refused with "it runs from 0 to 6" (int() truncated the 0.5 it objected
    to), fractional column indices were truncated without a word, and solver="cg" failed with
    "'str' object is not callable"."""
    A = sp.csr_matrix(np.diag([4.0, 5.0, 6.0])).sorted_indices()
    values, b = torch.tensor(A.data), torch.ones(3, dtype=torch.float64)
    for name, indptr, indices in (("indptr", A.indptr + 0.5, A.indices),
                                  ("indices", A.indptr, A.indices + 0.5)):
        with pytest.raises(ValueError, match=f"{name} holds fractional or non-finite values "
                                             r"\(torch.float64\); pass whole numbers"):
            csr_solve(values, b, indptr, indices)
    with pytest.raises(ValueError, match="solver='cg' must be a solve function: cg, bicgstab or "
                                         "gmres of physml.solvers.linalg"):
        csr_solve(values, b, A.indptr, A.indices, solver="cg")
    for built in (Jacobi, "ic0"):  # a built one, or a name: "... object is not callable"
        given = Jacobi(CsrOperator(csr_from_scipy(A, wp.float64, "cpu"))) if built is Jacobi \
            else built
        with pytest.raises(ValueError, match="must be a factory A -> Preconditioner"):
            csr_solve(values, b, A.indptr, A.indices, preconditioner=given)
    x = csr_solve(values, b, A.indptr.astype(float), A.indices.astype(float))  # whole: accepted
    torch.testing.assert_close(x, 1 / torch.tensor([4.0, 5.0, 6.0], dtype=torch.float64))


def test_a_float32_csr_solve_with_the_default_tolerance_does_not_warn():
    A = poisson_2d(32).tocsr().sorted_indices()
    values = torch.tensor(A.data, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(np.random.default_rng(0).standard_normal(A.shape[0]), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = csr_solve(values, b, torch.tensor(A.indptr), torch.tensor(A.indices),
                      preconditioner=Jacobi)
        (x**2).sum().backward()
    assert relative_residual(A, x.detach().numpy(), b.numpy().astype(np.float64)) <= 2e-5


def test_csr_solve_refuses_a_double_backward_it_would_get_wrong():
    n = 6
    values, indptr, indices = weighted_graph_laplacian(n)
    w = torch.full((n - 1,), 1.5, dtype=torch.float64, requires_grad=True)
    x = csr_solve(values(w), torch.ones(n, dtype=torch.float64), indptr, indices, rtol=1e-12)
    with pytest.raises(RuntimeError, match="first order: create_graph=True"):
        torch.autograd.grad(x.square().sum(), w, create_graph=True)
    (plain,) = torch.autograd.grad(
        csr_solve(values(w), torch.ones(n, dtype=torch.float64), indptr, indices,
                  rtol=1e-12).square().sum(), w)
    assert torch.isfinite(plain).all()


@pytest.mark.parametrize("solver", [bicgstab, gmres])
def test_csr_solve_gradcheck_with_a_nonsymmetric_solver_and_backward_twice(solver):
    A = sp.csr_matrix(convection_diffusion_2d(3, epsilon=0.5, velocity=(1.0, 2.0)))
    indptr, indices = torch.tensor(A.indptr), torch.tensor(A.indices)
    gen = torch.Generator().manual_seed(1)
    values = torch.tensor(A.data).requires_grad_()
    b = torch.randn(A.shape[0], generator=gen, dtype=torch.float64, requires_grad=True)

    def f(values, b):
        return csr_solve(
            values, b, indptr, indices, solver=solver, preconditioner=Jacobi, rtol=1e-13
        )

    assert torch.autograd.gradcheck(f, (values, b), eps=1e-6, atol=1e-7)
    x = f(values, b)
    loss = (x * torch.arange(len(x), dtype=torch.float64)).sum()
    first = torch.autograd.grad(loss, (values, b), retain_graph=True)
    second = torch.autograd.grad(loss, (values, b))
    for g1, g2 in zip(first, second):
        torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    # grad_values[k] = -lambda[row_k] x[col_k], lambda = A^-T d(loss)/dx
    lam = np.linalg.solve(A.toarray().T, np.arange(len(x), dtype=np.float64))
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    expected = -lam[rows] * x.detach().numpy()[A.indices]
    np.testing.assert_allclose(first[0].numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", [cg, bicgstab, gmres])
@pytest.mark.parametrize("scale", [1e-170, 1e160])
def test_a_right_hand_side_whose_square_under_or_overflows_is_solved(solver, scale, rng):
    """|b|^2 underflowed (x = 0 returned as converged) or overflowed (x = 0, residual NaN)."""
    A = poisson_2d(6)
    b = rng.standard_normal(A.shape[0])
    exact = spla.spsolve(A.tocsc(), b)
    op, _ = warp_system(A, b, "float64")
    bw = wp.array(scale * b, dtype=wp.float64, device="cpu")
    start = scale * rng.standard_normal(A.shape[0])
    x0 = wp.array(start, dtype=wp.float64, device="cpu")
    result = solver(op, bw, x0, rtol=1e-10)
    np.testing.assert_allclose(result.x.numpy() / scale, exact, rtol=1e-8)
    assert result.b_norm == pytest.approx(scale * np.linalg.norm(b))
    assert result.relative_residual <= 1e-10 and result.iterations > 0
    np.testing.assert_array_equal(x0.numpy(), start)
    with pytest.raises(ConvergenceError) as info:  # its norms in b's units
        solver(op, bw, rtol=1e-10, maxiter=1)
    assert info.value.residuals[0] == pytest.approx(result.b_norm)
    with warnings.catch_warnings(record=True) as caught:  # a floor warning at this line, as
        warnings.simplefilter("always")  # for a b of ordinary size (it named a solver module)
        solver(op, bw, rtol=1e-17)
    assert [(w.category, w.filename) for w in caught] == [(InaccurateSolveWarning, __file__)]


@pytest.mark.parametrize("solver", [cg, bicgstab, gmres])
@pytest.mark.parametrize("scale", [1e-170, 1e160])
def test_an_operator_whose_squares_under_or_overflow_is_solved(solver, scale, rng):
    """GMRES's |A v|^2 underflowed (the Krylov space taken as invariant: one step a cycle) or
    overflowed (SciPy's "array must not contain infs or NaNs"); BiCGStab's |A h|^2 alike (see
    test_a_system_scaled_as_a_whole_is_solved_as_the_unscaled_one)."""
    A = poisson_2d(6)
    b = rng.standard_normal(A.shape[0])
    op, bw = warp_system(scale * A, b, "float64")
    result = solver(op, bw, rtol=1e-10)
    np.testing.assert_allclose(result.x.numpy() * scale, spla.spsolve(A.tocsc(), b), rtol=1e-8)
    assert result.iterations == solver(*warp_system(A, b, "float64"), rtol=1e-10).iterations


@pytest.mark.parametrize("solver", [cg, bicgstab, gmres])
@pytest.mark.parametrize("scale", [1e-170, 1e-160, 1e150, 1e160])
def test_a_system_scaled_as_a_whole_is_solved_as_the_unscaled_one(solver, scale, rng):
    """BiCGStab's t^T t = |A h|^2 underflowed (a false "omega = 0" breakdown) or overflowed
    (omega = 0 every step: no convergence) for an A of entries near 1e-160 or 1e160, though
    x is of order 1; SciPy's cg, bicgstab and gmres fail there too but for gmres at 1e150."""
    A = poisson_2d(4)
    b = rng.standard_normal(A.shape[0])
    result = solver(*warp_system(scale * A, scale * b, "float64"), rtol=1e-10)
    np.testing.assert_allclose(result.x.numpy(), spla.spsolve(A.tocsc(), b), rtol=1e-10)
    assert result.iterations == solver(*warp_system(A, b, "float64"), rtol=1e-10).iterations


@pytest.mark.parametrize("scale", [1e-160, 1e160])
def test_bicgstab_still_names_a_true_breakdown_of_a_scaled_system(scale):
    """The shadow residual r0 = b = (1, 0, 1, 0, ...) is orthogonal to A r0 = (0, 1, 0, 1, ...)."""
    A = sp.kron(sp.eye(50), sp.csr_matrix([[0.0, 1.0], [1.0, 0.0]])).tocsr()
    op, bw = warp_system(scale * A, scale * np.tile([1.0, 0.0], 50), "float64")
    with pytest.raises(ConvergenceError, match=r"bicgstab broke down \(r0\^T r = 0 or r0\^T v = "
                                               r"0\) in 0 iterations"):
        bicgstab(op, bw)


@pytest.mark.parametrize("solver", [cg, bicgstab, gmres])
def test_a_zero_right_hand_side_gives_zero_at_once_whatever_x0(solver, rng):
    op, _ = warp_system(poisson_2d(6), rng.standard_normal(36), "float64")
    zero = wp.zeros(36, dtype=wp.float64, device="cpu")
    x0 = wp.array(rng.standard_normal(36), dtype=wp.float64, device="cpu")
    result = solver(op, zero, x0, preconditioner=IncompleteCholesky(op))
    assert result.iterations == 0
    np.testing.assert_array_equal(result.x.numpy(), 0.0)


def test_a_solve_names_an_argument_of_the_wrong_kind():
    """A NumPy or torch right-hand side, a preconditioner's class or name, a SciPy matrix:
    each gets one message naming it and what to pass (they were AttributeErrors)."""
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(10, 10)).tocsr()
    op = CsrOperator(csr_from_scipy(A, "float64", "cpu"))  # a name as a dtype too
    b = wp.ones(10, dtype=wp.float64)
    for args, kwargs, message in (
            ((np.ones(10),), {}, "b is a ndarray; the operator needs a Warp array"),
            ((torch.ones(10, dtype=torch.float64),), {}, "b is a Tensor; the operator needs a "
                                                         "Warp array"),
            ((b,), {"preconditioner": Jacobi}, "preconditioner is the class Jacobi; pass one "
                                               "built for the operator"),
            ((b,), {"preconditioner": "jacobi"}, "preconditioner is a str ('jacobi')")):
        for solve in (cg, bicgstab, gmres):
            with pytest.raises(ValueError, match=re.escape(message)):
                solve(op, *args, **kwargs)
    with pytest.raises(ValueError, match="matrix is a csr_matrix; CsrOperator takes a "
                                         "warp.sparse matrix"):
        CsrOperator(A)
    with pytest.raises(ValueError, match="dtype='int8' is not supported"):
        csr_from_scipy(A, "int8", "cpu")
    assert cg(op, b).iterations > 0
    with pytest.raises(ValueError, match="values is ndarray; pass a float32 or float64"):
        csr_solve(A.data, torch.ones(10, dtype=torch.float64), A.indptr, A.indices)
    x = csr_solve(torch.as_tensor(A.data), torch.ones(10, dtype=torch.float64), A.indptr,
                  A.indices)  # SciPy's own index arrays
    np.testing.assert_allclose(A @ x.numpy(), 1.0, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_operators_preconditioners_and_results_pickle(dtype):
    """CsrOperator, the preconditioners and a solve's SolveResult held Warp arrays and devices,
    which do not pickle (a spawned worker could take none of them). Each pickles as its SciPy
    matrix (or NumPy x) and is rebuilt on its device: the same products, applies and x."""
    import pickle

    A = poisson_2d(12)
    op = CsrOperator(csr_from_scipy(A, dtype, "cpu"))
    restored = pickle.loads(pickle.dumps(op))
    assert restored.dtype == op.dtype and restored.device == op.device
    assert (csr_to_scipy(restored.matrix) != csr_to_scipy(op.matrix)).nnz == 0
    b = wp.array(np.random.default_rng(0).standard_normal(A.shape[0]), dtype=op.dtype)
    for build in (Jacobi, IncompleteCholesky, SmoothedAggregationAMG, RugeStubenAMG):
        M = build(op)
        M2 = pickle.loads(pickle.dumps(M))
        z, z2 = wp.empty_like(b), wp.empty_like(b)
        M.apply(b, z)
        M2.apply(b, z2)
        np.testing.assert_array_equal(z2.numpy(), z.numpy())
        result = cg(op, b, preconditioner=M, rtol=1e-5)
        again = pickle.loads(pickle.dumps(result))
        np.testing.assert_array_equal(again.x.numpy(), result.x.numpy())
        assert again.x.dtype == op.dtype and again.iterations == result.iterations
        assert again.relative_residual == result.relative_residual


@pytest.mark.parametrize("solve", [cg, bicgstab])
def test_an_empty_row_where_b_is_not_zero_is_refused_by_name(solve):
    """A x has a 0 in an empty row whatever x: CG ran away and raised "diverged ... use a
    preconditioner or gmres", which cannot help. A row of stored zeros is empty too; where b
    is 0 there the system is consistent and solved."""
    A = sp.csr_matrix((np.r_[np.ones(39), 0.0], np.arange(40), np.arange(41)))  # row 39: a 0
    op, bw = warp_system(A, np.ones(40), "float64")
    with pytest.raises(ValueError, match=r"row 39 of A is empty .* while b\[39\] = 1: A x = b "
                                         r"has no solution"):
        solve(op, bw)
    _, consistent = warp_system(A, np.r_[np.ones(39), 0.0], "float64")
    assert solve(op, consistent).relative_residual <= 1e-8


def _inconsistent_system():
    """Poisson on 6^2 cells beside the singular block [[1, 1], [1, 1]], b = (1, -1) there: no
    solution, no empty row; the least-squares residual is 0.21 of |b|."""
    A = sp.block_diag([poisson_2d(6), np.ones((2, 2))]).tocsr()
    b = np.random.default_rng(4).standard_normal(38)
    b[-2:] = (1.0, -1.0)
    return A, b


def test_a_diverged_cg_carries_its_best_iterate_and_names_an_inconsistent_system():
    """CG's recursive residual fell to 0.40 of |b| by iteration 2 and ran away from there.
    The best iterate was only copied at block ends (iteration 10 already lay above |b|), so
    the error carried x0 = 0 (residual 1.0), printed a rounding floor of 0.0e+00 (that of
    x = 0) and advised a preconditioner or gmres, which cannot solve it either."""
    A, b = _inconsistent_system()
    op, bw = warp_system(A, b, "float64")
    with pytest.raises(ConvergenceError, match=r"cg diverged") as caught:
        cg(op, bw)
    error = caught.value
    assert relative_residual(A, error.x.numpy(), b) == pytest.approx(error.residual)
    assert error.residual < 0.5
    assert "0.0e+00" not in str(error)
    assert "A may be singular (or indefinite) and b not in its range" in str(error)
    assert "use a preconditioner or gmres" not in str(error)


def _neumann_system(seed):
    """Pure-Neumann Poisson on 6^2 cells (singular: constants span its null space) and a b
    of mean 0.1, outside its range."""
    m = 6
    second = sp.diags([-np.ones(m - 1), np.r_[1.0, 2 * np.ones(m - 2), 1.0], -np.ones(m - 1)],
                      [-1, 0, 1])
    A = (sp.kron(sp.identity(m), second) + sp.kron(second, sp.identity(m))).tocsr()
    b = np.random.default_rng(seed).standard_normal(m * m)
    b += 0.1 - b.mean()
    return A, b


def test_a_stalled_cg_far_above_the_rounding_floor_does_not_blame_the_floor():
    """CG stalled at the residual of x = 0, 1.0 of |b|, with a warning blaming float64's
    rounding floor (whose estimate at x = 0 was 0)."""
    op, bw = warp_system(*_neumann_system(1), "float64")
    with pytest.warns(InaccurateSolveWarning) as warned:
        cg(op, bw)
    message = str(warned[0].message)
    assert re.search(r"\de\+\d+ times above the rounding floor of the arithmetic at its x: A "
                     r"may be singular \(or indefinite\) and b not in its range", message)
    assert "rounding floor of float64 arithmetic" not in message


def test_a_solve_out_of_iterations_above_its_start_names_an_inconsistent_system_second():
    """CG ran its 360 iterations to a residual of 3e12 |b| with the generic advice to raise
    maxiter or precondition; CG's residual also rises on solvable systems, so that advice
    comes first."""
    op, bw = warp_system(*_neumann_system(4), "float64")
    with pytest.raises(ConvergenceError, match=r"did not converge .* raise maxiter or use a "
                                               r"preconditioner \(a Krylov residual may rise "
                                               r"before it falls\); if it keeps rising, A may be "
                                               r"singular"):
        cg(op, bw)


def test_csr_solve_refuses_a_nonsymmetric_matrix_passed_as_symmetric():
    """symmetric=True on a convection-diffusion matrix gave a gradient 65 % off, silently."""
    A = convection_diffusion_2d(5, 0.01, (1.0, 0.5)).tocsr()
    A.sort_indices()
    assert abs(A - A.T).max() > 0.1
    values = torch.as_tensor(A.data).requires_grad_()
    b = torch.ones(A.shape[0], dtype=torch.float64)
    x = csr_solve(values, b, A.indptr, A.indices, solver=gmres, symmetric=True)
    with pytest.raises(ValueError, match=r"symmetric=True but A is not symmetric: A\[0, 1\] = "
                                         r".* and A\[1, 0\] = "):
        x.sum().backward()
    S = (A + A.T).tocsr()  # symmetric, and within the tolerance after a rounding
    S.sort_indices()
    near = torch.as_tensor(S.data * (1 + 1e-15 * np.random.default_rng(0).standard_normal(S.nnz)))
    csr_solve(near.requires_grad_(), b, S.indptr, S.indices, solver=gmres,
              symmetric=True).sum().backward()
    pattern = S.tolil()
    pattern[0, 3] = 1e-3  # stored on one side only
    pattern = pattern.tocsr()
    x = csr_solve(torch.as_tensor(pattern.data).requires_grad_(), b, pattern.indptr,
                  pattern.indices, solver=gmres, symmetric=True)
    with pytest.raises(ValueError, match=r"A\[0, 3\] = 0.001 and A\[3, 0\] = 0 differ"):
        x.sum().backward()


def test_torch_func_transforms_of_csr_solve_equal_eager_calls_or_are_refused():
    A = (sp.random(12, 12, density=0.3, random_state=1) + 5 * sp.eye(12)).tocsr()
    A.sort_indices()
    values = torch.tensor(A.data)
    indptr, indices = torch.tensor(A.indptr), torch.tensor(A.indices)
    b = torch.tensor(np.random.default_rng(0).standard_normal((3, 12)))

    def solve(v, rhs):
        return csr_solve(v, rhs, indptr, indices, solver=gmres, rtol=1e-13)

    def loss(v, rhs):
        return solve(v, rhs).square().sum()

    def eager_grads(rhs):
        v, r = values.clone().requires_grad_(), rhs.clone().requires_grad_()
        loss(v, r).backward()
        return v.grad, r.grad

    grads = [eager_grads(rhs) for rhs in b]
    close = torch.testing.assert_close
    close(torch.func.vmap(solve, in_dims=(None, 0))(values, b),
          torch.stack([solve(values, rhs) for rhs in b]))
    close(torch.func.grad(loss, argnums=(0, 1))(values, b[0]), grads[0])
    per_sample = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)), in_dims=(None, 0))
    close(per_sample(values, b), tuple(torch.stack(g) for g in zip(*grads)))
    close(torch.func.jacrev(solve, argnums=(0, 1))(values, b[0]),
          torch.autograd.functional.jacobian(solve, (values, b[0])))
    with pytest.raises(RuntimeError, match="vmap over the matrix of a sparse solve"):
        torch.func.vmap(solve, in_dims=(0, None))(torch.stack([values, 2 * values]), b[0])
    with pytest.raises(NotImplementedError, match="forward-mode differentiation .* jacrev"):
        torch.func.jacfwd(solve, argnums=1)(values, b[0])
    with pytest.raises(RuntimeError, match="backward is first order: second derivatives"):
        torch.func.grad(lambda r: torch.func.grad(loss, argnums=1)(values, r).sum())(b[0])


def test_poisson_2d_refuses_a_coefficient_that_is_not_one_per_face():
    with pytest.raises(ValueError, match=r"shape \(6, 6\); expected \(2, 7, 6\)"):
        poisson_2d(6, np.ones((6, 6)))  # a value per node
    faces = np.ones((2, 7, 6))
    faces[1, 3, 2] = 0.0
    with pytest.raises(ValueError, match="finite and positive"):
        poisson_2d(6, faces)
    faces[1, 3, 2] = 2.0
    assert (poisson_2d(6, faces) != poisson_2d(6)).nnz > 0
    for other in (faces.astype(complex), faces.astype(str)):
        with pytest.raises(ValueError, match="expected real numbers"):
            poisson_2d(6, other)


def test_poisson_2d_refuses_inf_and_a_transposed_face_layout():
    import numpy as np

    from physml.solvers.linalg.model_problems import poisson_2d
    faces = np.ones((2, 7, 6))
    faces[0, 1, 1] = np.inf
    with pytest.raises(ValueError, match="finite and positive"):
        poisson_2d(6, faces)
    with pytest.raises(ValueError, match=r"expected \(2, 7, 6\)"):
        poisson_2d(6, np.ones((2, 6, 7)))  # as many entries, the wrong layout
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SciPy warned of mixed integer and float products
        assert (poisson_2d(6, np.ones((2, 7, 6), dtype=int)) != poisson_2d(6)).nnz == 0  # MQ5


@pytest.mark.parametrize("level", [wp.LOG_DEBUG, wp.LOG_ERROR])
def test_the_first_warp_start_up_keeps_a_log_level_the_user_set(monkeypatch, level):
    from physml.solvers import runtime

    monkeypatch.setattr(runtime, "_started", set())
    monkeypatch.setattr(wp.config, "log_level", level)
    runtime.start_warp("cpu")
    assert wp.config.log_level == level


def test_the_first_warp_start_up_lowers_warps_default_log_level(monkeypatch):
    from physml.solvers import runtime

    monkeypatch.setattr(runtime, "_started", set())
    monkeypatch.setattr(wp.config, "log_level", wp.LOG_INFO)  # Warp's default: its banner
    monkeypatch.delenv(runtime.VERBOSE_VARIABLE, raising=False)
    runtime.start_warp("cpu")
    assert wp.config.log_level == wp.LOG_WARNING


def test_the_readme_imports_linear_algebra_only_by_public_names():
    """Every ``from physml.solvers.linalg... import`` of the README names the package itself
    and names in its ``__all__`` (the model problems of its example included)."""
    import ast
    from pathlib import Path

    import physml.solvers.linalg as linalg

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    imports = [node for block in blocks for node in ast.walk(ast.parse(block))
               if isinstance(node, ast.ImportFrom)
               and (node.module or "").startswith("physml.solvers.linalg")]
    assert imports, "the README has a linear-algebra example"
    for node in imports:
        assert node.module == "physml.solvers.linalg"
        assert {alias.name for alias in node.names} <= set(linalg.__all__)
