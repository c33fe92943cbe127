r"""A learned finest-level smoother for Ruge–Stüben AMG: $x \mathrel{+}= G^T G\,(b - A x)$.

The ``"sparse_inverse"`` :class:`~.learned.FactorModel` ($M^{-1} = G^T G$: two sparse products,
no triangular solve, parallel as a GPU smoother wants) is trained here as the pre- and
post-smoother of the finest level of pyamg's RS hierarchy rather than as a preconditioner of
its own. On the scaled system $\tilde A = D^{-1/2} A D^{-1/2}$ (:mod:`.graph`), with P the RS
interpolation of the finest level (``levels[0].P``) and $\hat P = D^{1/2} P$, one two-grid
cycle propagates the error by

$$E = S C S,\qquad S = I - \tilde G^T \tilde G \tilde A,\qquad C = I - W \tilde A,\qquad
W = \hat P (\hat P^T \tilde A \hat P)^{-1} \hat P^T,$$

similar (by $D^{1/2}$) to the two-grid operator on A itself; the loss
(:func:`two_grid_loss`) estimates $\log \rho(E)$. The training systems are dense
(:func:`smoother_system`, at most :data:`MAX_UNKNOWNS` unknowns): train small, then
:class:`LearnedSmootherAMG` applies the smoother, sparse, at any size. The loss follows
Katrutsa et al. 2020 (multigrid parameters by a stochastic estimate of the spectral radius).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..solvers.host_threads import available_cores, in_parallel
from ..solvers.kept import held_if_free
from ..solvers.linalg import LinearOperator, RugeStubenAMG
from ..solvers.linalg.factor_network import NODE_FEATURES
from ..solvers.linalg.row_blocks import RowBlockProduct, block_count
from .graph import SystemGraph, batch_graphs, system_graph
from .learned import FactorModel, LearnedPreconditioner
from .training import adam_on_batches

MAX_UNKNOWNS = 4096
"""The largest training system: two dense (n, n) float64 matrices (128 MiB each at n = 4096)."""
PROBES, POWER_ITERATIONS = 8, 4
"""The loss's random probes and the detached power iterations applied to them first."""


@dataclass
class SmootherSystem:
    r"""One matrix as the smoother's loss sees it (dense float64, n <= :data:`MAX_UNKNOWNS`).

    Attributes:
        graph: the matrix's :class:`~.graph.SystemGraph`.
        scaled: $\tilde A$, (n, n).
        coarse: $W = \hat P (\hat P^T \tilde A \hat P)^{-1} \hat P^T$, (n, n), the coarse
            correction $C = I - W \tilde A$ of pyamg's RS interpolation P.
    """

    graph: SystemGraph
    scaled: torch.Tensor
    coarse: torch.Tensor


def smoother_system(matrix: sp.spmatrix | sp.sparray) -> SmootherSystem:
    r"""The training data of one SPD matrix: its graph, $\tilde A$ and W (dense).

    Cost: O(n^2) memory; O(n^2 n_c) time for W (n_c coarse unknowns, about n / 2 on grids).

    Raises:
        ValueError: more than :data:`MAX_UNKNOWNS` unknowns, too few for a coarse level, or a
            matrix :func:`~.graph.system_graph` refuses (no positive diagonal).
    """
    n = matrix.shape[0]
    if n > MAX_UNKNOWNS:
        raise ValueError(f"matrix has {n} unknowns; smoother_system holds A and its coarse "
                         f"correction dense, so it takes at most MAX_UNKNOWNS={MAX_UNKNOWNS} "
                         "(a 64 x 64 grid): train on smaller systems of the family (the "
                         "smoother then applies at any size)")
    graph = system_graph(matrix)
    csr = sp.csr_matrix(matrix, dtype=np.float64)
    # the builder LearnedSmootherAMG's hierarchy uses, so that the loss trains against the
    # interpolation the smoother is applied with (levels[0].P as in a full hierarchy)
    levels = RugeStubenAMG.build(csr, max_levels=2).levels
    if len(levels) < 2:
        raise ValueError(f"matrix has {n} unknowns, which RS-AMG solves on one level: there is "
                         "no coarse level, so nothing for a smoother to train against")
    d = graph.sqrt_diagonal.numpy()
    scaled = (sp.diags(1 / d) @ csr @ sp.diags(1 / d)).toarray()
    prolongation = d[:, None] * levels[0].P.toarray()
    coarse = prolongation @ np.linalg.solve(prolongation.T @ scaled @ prolongation,
                                            prolongation.T)
    return SmootherSystem(graph, torch.from_numpy(scaled), torch.from_numpy(coarse))


def _smooth(factor: torch.Tensor, system: SmootherSystem, z: torch.Tensor) -> torch.Tensor:
    r"""$S z = z - \tilde G^T \tilde G \tilde A z$, $\tilde G$ applied entry by entry
    (O(nnz_L) per probe); z is (n, K)."""
    rows, columns = system.graph.lower_rows, system.graph.lower_columns
    y = system.scaled @ z
    gy = torch.zeros_like(y).index_add(0, rows, factor[:, None] * y[columns])
    return z - torch.zeros_like(y).index_add(0, columns, factor[:, None] * gy[rows])


def _two_grid(factor: torch.Tensor, system: SmootherSystem, z: torch.Tensor) -> torch.Tensor:
    """$E z = S C S z$, z (n, K)."""
    z = _smooth(factor, system, z)
    return _smooth(factor, system, z - system.coarse @ (system.scaled @ z))


def two_grid_loss(factor: torch.Tensor, system: SmootherSystem, generator: torch.Generator,
                  probes: int = PROBES, power: int = POWER_ITERATIONS) -> torch.Tensor:
    r"""$\tfrac12 \log\bigl(\tfrac1K \sum_k \|E z_k\|_{\tilde A}^2 / \|z_k\|_{\tilde A}^2\bigr)$,
    an estimate of $\log \rho(E)$ from below.

    The K = ``probes`` Gaussian vectors first take ``power`` power iterations
    $z \leftarrow E z / \|E z\|_{\tilde A}$ without gradient. E is self-adjoint in the
    $\tilde A$ inner product (so is S, for a symmetric $G^T G$, and $W \tilde A$ is the
    $\tilde A$-orthogonal projection on the range of $\hat P$), so each quotient is at most
    $\rho(E)^2$ and tends to it. Cost: (power + 1) x (4 products with $\tilde A$ and one with
    W, dense, O(n^2 K)).

    The gradient holds the probes fixed: it is the derivative of the quotients at those
    probes, not of the returned value through the power iterations, and it tends to
    $\nabla \log \rho(E)$ as the probes converge to E's dominant eigenvector (E
    self-adjoint: the eigenvalue's derivative is the quotient's at its eigenvector). At the
    defaults it is a training direction, not that derivative (an 8 x 8 Poisson system: cosine
    0.67 with $\nabla \log \rho(E)$ after 4 power iterations, relative error 4e-2 after
    30, 5e-9 after 300).

    Args:
        factor: $\tilde G$ on the lower pattern, (nnz_L,) float64 (``model.scaled_factor``).
        system: the matrix (:func:`smoother_system`).
        generator: draws the probes (float64, on its device; then moved to the device and
            dtype of ``system``).
        probes: K, the number of probe vectors.
        power: the power iterations the probes take first.

    Returns:
        A scalar tensor, differentiable in ``factor``.
    """
    # drawn on the generator's device, then moved: the same z for a matrix on the CPU or CUDA
    z = torch.randn(system.graph.n, probes, dtype=torch.float64, generator=generator,
                    device=generator.device).to(system.scaled)
    with torch.no_grad():
        for _ in range(power):
            z = _two_grid(factor, system, z)
            z = z / (z * (system.scaled @ z)).sum(0).sqrt()
    ez = _two_grid(factor, system, z)
    ratio = (ez * (system.scaled @ ez)).sum(0) / (z * (system.scaled @ z)).sum(0)
    return 0.5 * torch.log(ratio.mean())


def two_grid_rate(model: FactorModel, system: SmootherSystem, *, power: int = 30,
                  probes: int = 4, seed: int = 0) -> float:
    """The two-grid convergence rate $\\rho(E)$ of ``model``'s smoother on ``system``, estimated
    (from below) by :func:`two_grid_loss` from ``probes`` Gaussian probe vectors after ``power``
    power iterations; ``seed`` seeds the probes, so a call is repeatable."""
    with torch.no_grad():
        loss = two_grid_loss(model.scaled_factor(system.graph), system,
                             torch.Generator().manual_seed(seed), probes, power)
    return float(torch.exp(loss))


def fit_smoother(model: FactorModel, systems: Sequence[SmootherSystem], *, steps: int,
                 learning_rate: float = 3e-3, batch_size: int = 4, seed: int = 0,
                 on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Adam, learning rate decayed to 0 on a cosine, on the mean :func:`two_grid_loss` of
    random mini-batches of ``systems``; returns the loss per step. ``steps`` Adam updates from
    the initial ``learning_rate``, each on ``batch_size`` systems (all of them if fewer);
    ``seed`` seeds PyTorch, the choice of the mini-batches and the probe vectors.
    ``on_step(updates_done, loss)`` follows each update (counted from 1). About 0.09 s a step
    for 4 systems of 32 x 32 at width 4 (one thread).

    Raises:
        ValueError: a model not of the ``"sparse_inverse"`` form, no systems or ones not made
            by :func:`smoother_system`, a learning_rate not > 0, or steps or batch_size not
            whole numbers (>= 0 and >= 1).
        NonFiniteLossError: the loss or a gradient turned NaN/Inf (names the step, which is
            not taken).
    """
    _require_sparse_inverse(model)
    if not systems:
        raise ValueError("systems is empty; fit_smoother needs at least one smoother_system(A)")
    wrong = [type(s).__name__ for s in systems if not isinstance(s, SmootherSystem)]
    if wrong:
        raise ValueError(f"systems holds a {wrong[0]}; fit_smoother trains on the dense "
                         "systems smoother_system(A) returns")
    features = model.config["node_features"]
    if features != NODE_FEATURES:
        raise ValueError(f"the model reads {features} node features; a smoother's systems have "
                         f"the matrix's own {NODE_FEATURES} (row sum and degree): build "
                         "FactorModel('sparse_inverse', node_features=2)")

    def batch_loss(batch: list[SmootherSystem], generator: torch.Generator) -> torch.Tensor:
        factors = model.scaled_factor(batch_graphs([s.graph for s in batch])).split(
            [s.graph.lower_rows.numel() for s in batch])
        return sum(two_grid_loss(f, s, generator) for f, s in zip(factors, batch)) / len(batch)

    return adam_on_batches(model, systems, batch_loss, steps=steps, learning_rate=learning_rate,
                           batch_size=batch_size, seed=seed, on_step=on_step, cosine=True)


class _LearnedSmootherCycle(RugeStubenAMG):
    """RS-AMG's V-cycle with the learned finest-level smoother, under its own name."""

    name = "learned_amg"


class LearnedSmootherAMG(LearnedPreconditioner):
    """RS-AMG, one V-cycle, whose finest level smooths by a trained G: $x \\mathrel{+}=
    G^T G (b - A x)$ before and after the coarse correction; a factory ``A -> Preconditioner``
    (:class:`~physml.solvers.linalg.RugeStubenAMG` with a finest-level smoother).

    Set-up per matrix: pyamg's RS hierarchy on the host and (see ``threads``: on a second
    host thread at the same time) G as :class:`LearnedPreconditioner` computes it (the native
    forward on the CPU; on CUDA by PyTorch, then copied to the host) as SciPy CSR; then a
    check that the smoother converges.
    Apply: one V-cycle on the host, as pyamg runs it; each finest-level smoothing costs a
    product with A, one with G and one with $G^T$ (:class:`ProductSmoother`: row blocks on
    ``threads`` host threads, where pyamg's Gauss–Seidel runs on one; $G^T G$ is not formed: on
    a 5-point grid it has 7 entries a row against G's 3). The V-cycle
    is symmetric, and positive definite when the smoother converges in the A-norm,
    $\\lambda_{max}(G^T G A) < 2$: training drives it there, and a matrix on which a power
    estimate of $\\lambda_{max}$ reaches 2 is refused (an estimate from below: a smoother just
    past the bound can pass). Saved with the role ``"smoother"``
    (:meth:`LearnedPreconditioner.load` refuses the file, and this class's ``load`` a
    preconditioner's).

    Args:
        model: a ``"sparse_inverse"`` :class:`FactorModel` (``node_features=2``), trained by
            :func:`fit_smoother`.

    Attributes:
        threads: host threads of the set-up and of the smoother's products, ``"auto"`` (the
            default: the available cores; G beside the hierarchy from :data:`OVERLAP_ROWS`
            rows, else G's forward split as :class:`LearnedPreconditioner` splits it; the
            products' row blocks at most one per
            :data:`~physml.solvers.linalg.row_blocks.ROWS_PER_THREAD` rows) or a count
            (1: everything on the calling thread); read at each set-up.

    Raises:
        ValueError: a ``"cholesky"`` model, or one reading other node features.
    """

    ROLE = "smoother"

    def __init__(self, model: FactorModel) -> None:
        _require_sparse_inverse(model)
        super().__init__(model)
        self.name = _LearnedSmootherCycle.name

    def __call__(self, A: LinearOperator) -> RugeStubenAMG:
        """The V-cycle preconditioner for A (a :class:`~physml.solvers.linalg.CsrOperator`):
        G is computed on a second host thread while pyamg builds the hierarchy on this one
        where :meth:`_overlaps` says so (the network's native forward releases the GIL), else
        one after the other.

        Raises:
            ValueError: the smoother diverges on A (:data:`SMOOTHER_CHECK_ITERATIONS` power
                iterations estimate $\\lambda_{max}(G^T G A) \\ge 2$, or not at all: a
                factor whose products overflow).
        """
        parts: list = [None, None]  # the hierarchy on this thread (in_parallel's part 0)

        def part(index: int) -> None:
            parts[index] = _LearnedSmootherCycle(A) if index == 0 else self.factor(A)

        if self._overlaps(A.shape[0]):
            in_parallel(part, 2)
        else:
            part(0)
            part(1)
        cycle, (pattern, values) = parts
        lower = pattern.lower
        factor = sp.csr_matrix((values.numpy(), lower.indices, lower.indptr), shape=lower.shape)
        smoother = ProductSmoother(cycle.hierarchy.levels[0].A, factor, self.threads)
        largest = smoother.largest_eigenvalue()
        if not largest < 2:  # NaN too: a factor whose products overflow
            raise ValueError(f"{self.name}: the learned smoother diverges on this matrix "
                             f"(a power estimate of lambda_max(G^T G A) is {largest:.3g}, not "
                             "below 2, so the V-cycle is not positive definite): the matrix is "
                             "far from those it was trained on; train on such matrices, or use "
                             "amg_rs")
        cycle.smooth_finest_level(smoother)
        return cycle

    def _overlaps(self, rows: int) -> bool:
        """Whether the set-up computes G beside the hierarchy for ``rows`` rows: under
        ``"auto"`` on two or more cores from :data:`OVERLAP_ROWS` rows, else with a count > 1
        (checked as :func:`~physml.solvers.linalg.row_blocks.block_count` checks it)."""
        if self.threads == "auto":
            return available_cores() > 1 and rows >= OVERLAP_ROWS
        return block_count(rows, self.threads) > 1


OVERLAP_ROWS = 1 << 14
"""Fewest rows for which ``threads="auto"`` computes G beside the hierarchy. Both threads'
Python parts take turns on the GIL, so the overlap loses where the set-up is mostly Python:
medians of 31 alternating set-ups (one thread against two, a 2-core x86_64 VM) 5.8 against
7.7 ms at 32^2, 10.5 against 11.7 ms at 64^2, 26.7 against 25.0 ms at 128^2, 93 against
80 ms at 256^2; 431 against 354 ms at 512^2 (15 set-ups; pyamg's alone 306 ms)."""

SMOOTHER_CHECK_ITERATIONS = 8
"""Power iterations of :class:`LearnedSmootherAMG`'s convergence check (three sparse products
each, in the smoother's row blocks: at 1024² 0.21 s on one host thread, 0.12-0.14 s on two)."""


class ProductSmoother:
    r"""$x \mathrel{+}= G^T (G (b - A x))$ by three sparse products whose row blocks run on the
    host's threads (:class:`~physml.solvers.linalg.row_blocks.RowBlockProduct`): the rows of
    each product are independent, where a Gauss–Seidel sweep goes row after row. Called by
    pyamg's V-cycle as ``smoother(A, x, b)`` with the finest level's A, the matrix it was
    built with (the argument is not read again), x and b of A's dtype. Two work vectors of A's
    size are kept; a call made while another holds them (one cycle applied in two threads)
    takes new ones.

    Args:
        matrix: A, SciPy CSR (n, n).
        factor: G, SciPy CSR (n, n) (its transpose is stored as CSR too, 3 entries a row on a
            5-point grid).
        threads: ``"auto"`` (the available cores, at most one per
            :data:`~physml.solvers.linalg.row_blocks.ROWS_PER_THREAD` rows) or a count.
    """

    def __init__(self, matrix: sp.csr_matrix, factor: sp.csr_matrix,
                 threads: int | str = "auto") -> None:
        blocks = block_count(matrix.shape[0], threads)
        self.matrix, self.factor, self.transpose = (
            RowBlockProduct(m, blocks) for m in (matrix, factor, factor.T.tocsr()))
        self.work = np.empty((2, matrix.shape[0]), dtype=matrix.dtype)
        self._work_lock = threading.Lock()

    def __call__(self, matrix: sp.csr_matrix, x: np.ndarray, b: np.ndarray) -> None:
        with self._work_vectors() as (residual, scratch):
            self.matrix.residual(x, b, residual)
            self.factor.multiply(residual, scratch)
            self.transpose.accumulate(scratch, x)

    def largest_eigenvalue(self) -> float:
        r"""$\lambda_{max}(G^T G A)$ estimated from below by :data:`SMOOTHER_CHECK_ITERATIONS`
        power iterations in the A inner product, where $G^T G A$ is self-adjoint: the Rayleigh
        quotient $\|G A v\|^2 / v^T A v$ of the last iterate."""
        with self._work_vectors() as (av, gav):
            v = np.random.default_rng(0).standard_normal(av.shape[0]).astype(av.dtype,
                                                                              copy=False)
            estimate = 0.0
            with np.errstate(over="ignore", invalid="ignore"):  # overflow ends in NaN: refused
                for _ in range(SMOOTHER_CHECK_ITERATIONS):
                    self.matrix.multiply(v, av)
                    self.factor.multiply(av, gav)
                    estimate = float(gav @ gav / (v @ av))
                    self.transpose.multiply(gav, v)
                    v /= np.linalg.norm(v)
        return estimate

    @contextmanager
    def _work_vectors(self) -> Iterator[np.ndarray]:
        """The two kept work vectors, (2, n), or new ones while another call holds them."""
        with held_if_free(self._work_lock) as kept:
            yield self.work if kept else np.empty_like(self.work)


def _require_sparse_inverse(model: FactorModel) -> None:
    if model.kind != "sparse_inverse":
        raise ValueError(f"model.kind={model.kind!r}; a learned smoother is the "
                         "'sparse_inverse' form M^-1 = G^T G (two sparse products per sweep, "
                         "no triangular solve): build FactorModel('sparse_inverse', ...)")
