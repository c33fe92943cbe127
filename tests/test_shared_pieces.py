"""Pieces the case kinds and the preconditioners share: the threshold's verdict and the
refusal of a matrix-free operator by a preconditioner built from matrix entries."""

import json
import math

import numpy as np
import pytest
import warp as wp

from physml.cases.sections import threshold_passed, threshold_verdict
from physml.preconditioners import FactorModel, LearnedPreconditioner
from physml.solvers.linalg import (
    FactorizedSparseInverse,
    IncompleteCholesky,
    RugeStubenAMG,
    SmoothedAggregationAMG,
    StencilOperator,
)


@pytest.mark.parametrize("error, threshold, passed", [
    (0.5, 1.0, True), (1.0, 1.0, True), (2.0, 1.0, False), (math.nan, 1.0, False),
    (np.float64(0.5), 1.0, True), (np.float64(np.nan), 1.0, False),
    (0.5, None, None), (None, 1.0, None), (None, None, None)])
def test_threshold_passed_takes_an_error_at_most_the_threshold(error, threshold, passed):
    verdict = threshold_passed(error, threshold)
    assert verdict is passed  # a Python bool or None: metrics.json takes it
    json.dumps(verdict)
    summary = {"threshold": threshold, "passed": verdict}
    expected = "" if threshold is None else f" (target {threshold:.0e}: " + (
        "reached)" if passed else "missed)")
    assert threshold_verdict(summary) == expected


def _learned(kind: str) -> LearnedPreconditioner:
    return LearnedPreconditioner(FactorModel(kind, width=4, steps=1))


@pytest.mark.parametrize("build, name", [
    (IncompleteCholesky, "IncompleteCholesky ('ic0')"),
    (FactorizedSparseInverse, "FactorizedSparseInverse ('fsai')"),
    (SmoothedAggregationAMG, "SmoothedAggregationAMG ('amg_sa')"),
    (RugeStubenAMG, "RugeStubenAMG ('amg_rs')"),
    (_learned("cholesky"), "LearnedPreconditioner ('learned_cholesky')"),
    (_learned("sparse_inverse"), "LearnedPreconditioner ('learned_sparse_inverse')")])
def test_a_matrix_free_operator_is_refused_in_one_message(build, name):
    stencil = StencilOperator(4, lambda x, y: wp.copy(y, x), dtype=wp.float64, device="cpu")
    with pytest.raises(ValueError) as refused:
        build(stencil)
    assert str(refused.value) == (
        f"{name} needs an assembled matrix, got a StencilOperator: pass a CsrOperator "
        "(CsrOperator(csr_from_scipy(matrix, wp.float64, device)) makes one from a SciPy "
        "matrix), or use Jacobi for a matrix-free operator (a StencilOperator built with "
        "diagonal=...)")
