"""IC(0), level-scheduled triangular solves and the factor preconditioners against references."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import warp as wp

from physml.solvers.linalg import (
    PRECONDITIONERS,
    CholeskyFactor,
    CsrOperator,
    IncompleteCholesky,
    LowerPattern,
    bicgstab,
    cg,
    csr_from_scipy,
    gmres,
)
from physml.solvers.linalg.model_problems import layered_coefficient, poisson_2d


def dense_ic0(a: np.ndarray) -> np.ndarray:
    """Textbook IC(0) (right-looking, dense loops, fill outside A's pattern dropped)."""
    n = a.shape[0]
    keep = np.tril(a != 0)
    l = np.tril(a).astype(float)  # noqa: E741
    for k in range(n):
        l[k, k] = np.sqrt(l[k, k])
        for i in range(k + 1, n):
            if keep[i, k]:
                l[i, k] /= l[k, k]
        for j in range(k + 1, n):
            for i in range(j, n):
                if keep[i, j] and keep[i, k] and keep[j, k]:
                    l[i, j] -= l[i, k] * l[j, k]
    return l


def fem_like(n: int, seed: int) -> sp.csr_matrix:
    """A random SPD matrix with an irregular pattern and positive off-diagonals too."""
    rng = np.random.default_rng(seed)
    b = sp.random(n, n, density=4 / n, random_state=rng, format="csr")
    a = b @ b.T + sp.diags(rng.uniform(0.5, 1.5, n))
    return sp.csr_matrix(a + sp.diags(np.asarray(abs(a).sum(axis=1)).ravel() * 0.05))


MATRICES = {
    "poisson": lambda: poisson_2d(9, layered_coefficient(9, 100.0, seed=1)),
    "irregular": lambda: fem_like(60, seed=3),
}


@pytest.mark.parametrize("by_levels", [False, True])
@pytest.mark.parametrize("name", list(MATRICES))
def test_ic0_equals_dense_reference(name, by_levels):
    a = MATRICES[name]()
    op = CsrOperator(csr_from_scipy(a, wp.float64, "cpu"))
    ic = IncompleteCholesky(op, by_levels=by_levels)
    assert ic.shift == 0.0
    l_ref = dense_ic0(a.toarray())
    p = ic.pattern
    l = np.zeros_like(l_ref)  # noqa: E741
    l[p.rows, p.columns] = ic.values.numpy()
    np.testing.assert_allclose(l, l_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [wp.float32, wp.float64])
@pytest.mark.parametrize("by_levels", [False, True])
def test_triangular_solves_equal_scipy(by_levels, dtype):
    rng = np.random.default_rng(0)
    a = fem_like(80, seed=5)
    pattern = LowerPattern(a, "cpu", by_levels=by_levels)
    values = rng.uniform(-1, 1, pattern.nnz)
    values[pattern.diagonal.numpy()] = rng.uniform(1, 2, pattern.n)
    l = sp.csr_matrix((values, (pattern.rows, pattern.columns)), shape=a.shape)  # noqa: E741
    np_dtype = np.float32 if dtype == wp.float32 else np.float64
    factor = CholeskyFactor(pattern, wp.array(values.astype(np_dtype), dtype=dtype))
    r = rng.standard_normal(pattern.n)
    y, z = (wp.zeros(pattern.n, dtype=dtype) for _ in range(2))
    factor.solve_lower(wp.array(r.astype(np_dtype), dtype=dtype), y)
    y_ref = spla.spsolve_triangular(l, r, lower=True)
    tol = 1e-12 if dtype == wp.float64 else 2e-5
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=tol, atol=tol)
    factor.solve_upper(wp.array(y_ref.astype(np_dtype), dtype=dtype), z)
    z_ref = spla.spsolve_triangular(sp.csr_matrix(l.T), y_ref, lower=False)
    np.testing.assert_allclose(z.numpy(), z_ref, rtol=tol, atol=tol)
    if by_levels:
        assert pattern.forward.launches == pattern.levels > 1


def test_level_schedule_of_a_grid_has_2m_minus_1_levels():
    m = 7
    pattern = LowerPattern(poisson_2d(m), "cpu", by_levels=True)
    assert pattern.levels == 2 * m - 1
    assert pattern.backward.launches == 2 * m - 1


def test_ic0_shifts_an_indefinite_pivot_instead_of_failing():
    # SPD but not an M-matrix: IC(0) on the pattern breaks down without a shift.
    a = sp.csr_matrix(np.array([[3.0, -2, 0, 2], [-2, 3, -2, 0], [0, -2, 3, -2], [2, 0, -2, 3]]))
    assert np.linalg.eigvalsh(a.toarray()).min() > 0
    ic = IncompleteCholesky(CsrOperator(csr_from_scipy(a, wp.float64, "cpu")))
    assert ic.shift > 0
    assert np.all(ic.diagonal() > 0)


@pytest.mark.parametrize("name", sorted(PRECONDITIONERS))
def test_pcg_reaches_1e_10_with_every_preconditioner(name):
    a = poisson_2d(16, layered_coefficient(16, 50.0, seed=2))
    op = CsrOperator(csr_from_scipy(a, wp.float64, "cpu"))
    x_true = np.random.default_rng(1).standard_normal(a.shape[0])
    b = wp.array(a @ x_true, dtype=wp.float64)
    result = cg(op, b, preconditioner=PRECONDITIONERS[name](op), rtol=1e-10, check_every=1)
    true_residual = np.linalg.norm(a @ result.x.numpy() - b.numpy()) / np.linalg.norm(b.numpy())
    assert true_residual < 1e-9
    assert result.relative_residual <= 1e-10


def dense_fsai(a: np.ndarray) -> np.ndarray:
    """FSAI row by row: on row i's lower pattern P_i, g = A[P_i, P_i]^{-1} e_i scaled so that
    (G A G^T)_ii = 1."""
    n = a.shape[0]
    g = np.zeros_like(a)
    for i in range(n):
        cols = np.flatnonzero(np.tril(a)[i])
        unit = (cols == i).astype(float)
        row = np.linalg.solve(a[np.ix_(cols, cols)], unit)
        g[i, cols] = row / np.sqrt(row[cols == i])
    return g


@pytest.mark.parametrize("name", list(MATRICES))
def test_fsai_equals_a_dense_reference_and_its_apply_is_g_transpose_g(name):
    a = MATRICES[name]()
    op = CsrOperator(csr_from_scipy(a, wp.float64, "cpu"))
    fsai = PRECONDITIONERS["fsai"](op)
    p = fsai.pattern
    g = sp.csr_matrix((fsai.values.numpy(), p.columns, np.r_[0, np.cumsum(np.bincount(
        p.rows, minlength=p.n))]), shape=a.shape).toarray()
    g_ref = dense_fsai(a.toarray())
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.diag(g @ a.toarray() @ g.T), 1.0, rtol=1e-10)
    r = np.random.default_rng(0).standard_normal(a.shape[0])
    z = wp.empty(a.shape[0], dtype=wp.float64)
    fsai.apply(wp.array(r, dtype=wp.float64), z)
    np.testing.assert_allclose(z.numpy(), g.T @ (g @ r), rtol=1e-12, atol=1e-12)


def test_cholesky_factor_apply_is_the_two_triangular_solves():
    a = MATRICES["irregular"]()
    ic = IncompleteCholesky(CsrOperator(csr_from_scipy(a, wp.float64, "cpu")))
    p = ic.pattern
    l = sp.csr_matrix((ic.values.numpy(), p.columns, np.r_[0, np.cumsum(np.bincount(  # noqa: E741
        p.rows, minlength=p.n))]), shape=a.shape)
    r = np.random.default_rng(1).standard_normal(a.shape[0])
    z = wp.empty(a.shape[0], dtype=wp.float64)
    ic.apply(wp.array(r, dtype=wp.float64), z)
    y = spla.spsolve_triangular(l, r, lower=True)
    np.testing.assert_allclose(z.numpy(), spla.spsolve_triangular(l.T.tocsr(), y, lower=False),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(PRECONDITIONERS))
def test_a_preconditioner_for_another_matrix_is_refused_naming_both(name):
    """Another size or dtype was refused at the first apply, naming the solver's own r."""
    preconditioner = PRECONDITIONERS[name](CsrOperator(csr_from_scipy(poisson_2d(8), wp.float64,
                                                                      "cpu")))
    for size, dtype, other in ((10, wp.float64, "float64 with 100"),
                               (8, wp.float32, "float32 with 64")):
        A = CsrOperator(csr_from_scipy(poisson_2d(size), dtype, "cpu"))
        b = wp.ones(size * size, dtype=dtype)
        for solve in (cg, bicgstab, gmres):
            with pytest.raises(ValueError, match=f"the {name} preconditioner was built for a "
                                                 f"float64 matrix of 64 unknowns on cpu; A is "
                                                 f"{other} on cpu: build it for this A"):
                solve(A, b, preconditioner=preconditioner)


@pytest.mark.parametrize("name", sorted(PRECONDITIONERS))
def test_a_matrix_that_is_not_an_operator_is_refused_naming_csr_operator(name):
    """Jacobi took any object with diagonal(): a SciPy matrix or ndarray then failed on
    .numpy(), a tensor in Warp's 'Invalid device identifier: cpu'."""
    a = poisson_2d(4)
    for matrix in (a, a.toarray(), torch.tensor(a.toarray())):
        with pytest.raises(ValueError, match=rf"needs .*, got a {type(matrix).__name__}\b.*"
                                             r"pass a CsrOperator \(CsrOperator\(csr_from_scipy"):
            PRECONDITIONERS[name](matrix)


@pytest.mark.parametrize("name", ["ic0", "fsai"])
def test_solves_in_several_threads_may_share_a_factor(name):
    from concurrent.futures import ThreadPoolExecutor

    a = poisson_2d(40, layered_coefficient(40, 50.0, seed=2))
    op = CsrOperator(csr_from_scipy(a, wp.float64, "cpu"))
    M = PRECONDITIONERS[name](op)
    rhs = [wp.array(np.random.default_rng(k).standard_normal(a.shape[0]), dtype=wp.float64)
           for k in range(4)]
    alone = [cg(op, b, preconditioner=M, rtol=1e-8) for b in rhs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: cg(op, b, preconditioner=M, rtol=1e-8), rhs))
    for one, other in zip(alone, together):
        assert one.iterations == other.iterations
        np.testing.assert_array_equal(one.x.numpy(), other.x.numpy())


def test_fsai_and_ic0_refuse_a_matrix_that_is_not_positive_definite():
    a = sp.csr_matrix(-poisson_2d(6))  # negative definite
    op = CsrOperator(csr_from_scipy(a, wp.float64, "cpu"))
    with pytest.raises(ValueError, match="FSAI needs a symmetric positive definite matrix"):
        PRECONDITIONERS["fsai"](op)
    with pytest.raises(ValueError, match="non-positive pivot in row 0"):
        IncompleteCholesky(op)  # the first row, not the last one that fails


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_ic0_refuses_a_non_finite_entry_naming_it(bad):
    """A factor from such a matrix divides by it: a zero for an unknown, not an error."""
    a = sp.csr_matrix(poisson_2d(4))
    a[5, 4] = bad
    with pytest.raises(ValueError, match=rf"entry {bad} in row 5 \(column 4\); an incomplete "
                                         "Cholesky factor needs finite values"):
        IncompleteCholesky(CsrOperator(csr_from_scipy(a, wp.float64, "cpu")))


def test_ic0_names_the_first_of_several_non_finite_entries_in_csr_order():
    """The entry named (its value, row and column) is the first, not another one."""
    a = sp.csr_matrix(poisson_2d(4))
    a[5, 4], a[10, 9] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"entry nan in row 5 \(column 4\)"):
        IncompleteCholesky(CsrOperator(csr_from_scipy(a, wp.float64, "cpu")))


@pytest.mark.parametrize("name", ["amg_sa", "amg_rs"])
def test_an_amg_apply_is_one_v_cycle_of_its_hierarchy(name):
    """apply is pyamg's V-cycle preconditioner of the same hierarchy, bit for bit; a W-cycle,
    which visits the levels below the second twice, gives other values (these hierarchies have
    four and five levels)."""
    a = poisson_2d(32)
    amg = PRECONDITIONERS[name](CsrOperator(csr_from_scipy(a, wp.float64, "cpu")))
    assert len(amg.hierarchy.levels) >= 3
    r = np.random.default_rng(0).standard_normal(a.shape[0])
    z = wp.zeros(a.shape[0], dtype=wp.float64)
    amg.apply(wp.array(r, dtype=wp.float64), z)
    v_cycle = amg.hierarchy.aspreconditioner(cycle="V") @ r
    np.testing.assert_array_equal(z.numpy(), v_cycle)
    w_cycle = amg.hierarchy.aspreconditioner(cycle="W") @ r
    assert np.abs(w_cycle - v_cycle).max() > 1e-2 * np.abs(v_cycle).max()  # 3 % here
