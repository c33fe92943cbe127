r"""Damped linear least squares for TENG's Gauss–Newton updates:
$$\delta = \arg\min_\delta \|J\delta - r\|^2 + \lambda\|\delta\|^2,
\qquad J\in\mathbb{R}^{n\times m},$$
with $\lambda$ = ``damping`` times the mean diagonal of the smaller Gram matrix
($\lVert J\rVert_F^2/\min(n, m)$), so that ``damping`` is relative. The two solvers damp alike
only as $\lambda \to 0$: the SVD applies Tikhonov's filter factors $s^2/(s^2 + \lambda)$, the
Gram solver's refinement step makes them iterated Tikhonov's $1 - (\lambda/(s^2 + \lambda))^2$,
closer to the undamped solution at the same ``damping`` (on a random 200 × 50 system at
``damping`` 1e-2 the two solutions differ by 2 % relative).

Both solvers take $J$ as consecutive row blocks (an iterable of $(n_b, m)$ tensors covering the
rows of $r$), factor once, and then :meth:`solve` for any number of dampings (the
Levenberg–Marquardt retries of a fit reuse the factorisation's inputs):

* :class:`GramSolver`: the smaller Gram matrix, Cholesky in float64 with $\lambda$ as jitter (at
  least ``MIN_DAMPING``) and one step of iterative refinement (iterated Tikhonov).
  Parameter space ($n \ge m$): $G = \sum_b J_b^\top J_b$ and $c = \sum_b J_b^\top r_b$ are
  accumulated block by block and the blocks dropped, so $J$ never exists in one piece: memory
  $O(m^2 + n_b m)$, the only way a 512² x 1500 float64 Jacobian (3.1 GB) is solved on a device
  it does not fit; $(G + \lambda I)\delta = c$, refined with $c - G\delta$.
  Sample space ($n < m$, Woodbury/SPRING form): $\delta = J^\top y$,
  $(JJ^\top + \lambda I)y = r$, the minimum-norm solution as $\lambda\to 0$; $J$ is kept
  ($nm < m^2$). Cost: one GEMM, $O(nm\min(n, m))$, and a Cholesky of size $\min(n, m)$.
* :class:`SVDSolver`: the thin SVD of $J$, singular values below ``rcond`` times the largest
  dropped (LAPACK ``gelsd``'s rule, on CPU and CUDA alike; ``torch.linalg.lstsq``'s CPU
  default, pivoted QR without a useful cut-off, lost three orders of accuracy on TENG's
  ill-conditioned Jacobians), Tikhonov filter factors $s/(s^2 + \lambda)$; holds $J$, cost
  $O(nm\min(n, m))$ with a large constant.

Each solver adds the seconds of its own arithmetic (not the building of the blocks) to
``seconds``, measured by a device-synchronised :class:`~physml.devices.Stopwatch`.

Where the damped Gram matrix is not numerically positive definite (Cholesky breaks down: a
rank-deficient $J$ in float32, whose rounding exceeds the jitter), :class:`GramSolver` solves
that system by :func:`lstsq` instead; it counts these fallbacks in
``lstsq_fallbacks`` and states the last one's cause in ``fallback_reason``, for its caller to
report (:class:`~physml.train.teng.TENG` warns and puts them in its ``fallbacks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

import torch

from ..devices import Stopwatch

MIN_DAMPING = 1e-12  # the smallest relative damping, also the Cholesky jitter's floor
RCOND = 1e-10  # singular values below RCOND * the largest are dropped by SVDSolver


GELSD_DEVICE_TYPES = ("cpu",)
"""The device types where ``torch.linalg.lstsq`` has LAPACK's ``gelsd`` driver (on CUDA its only
driver, ``gels``, assumes full rank: on a rank-deficient A it returns a huge solution)."""


def lstsq(A: torch.Tensor, b: torch.Tensor, full_rank: bool = False) -> torch.Tensor:
    r"""The minimum-norm least-squares solution of $A x = b$ (``b`` of shape (m,) or (m, k)),
    the same bits on every call: for a ``full_rank`` A (m >= n, a damped system) by Householder
    QR (``geqrf``), $Q^T b$ applied by its reflectors (``ormqr``, Q never formed) and a
    triangular solve; otherwise, and where R is singular after all, by the SVD with singular
    values up to $\epsilon \max(m, n)$ times the largest dropped: LAPACK's ``gelsd`` where
    PyTorch has it (:data:`GELSD_DEVICE_TYPES`), elsewhere :class:`SVDSolver` with gelsd's cut,
    so CPU and CUDA give the same solution for a rank-deficient A.
    ``torch.linalg.lstsq``'s CPU default, ``gelsy``, returned results that differ in the
    twelfth digit between identical calls, so two runs of one seed drifted apart; the QR path
    takes about its time, ``gelsd`` about twice."""
    column = b.dim() == 1
    rhs = b[:, None] if column else b
    x = None
    if full_rank:
        n = A.shape[1]
        reflectors, tau = torch.geqrf(A)
        qtb = torch.ormqr(reflectors, tau, rhs, left=True, transpose=True)[:n]
        x = torch.linalg.solve_triangular(reflectors[:n].triu(), qtb, upper=True)
        if not bool(torch.isfinite(x).all()):  # R singular: not full rank after all
            x = None
    if x is None and A.device.type in GELSD_DEVICE_TYPES:
        x = torch.linalg.lstsq(A, rhs, driver="gelsd").solution
    elif x is None:
        x = SVDSolver([A], rhs, rcond=torch.finfo(A.dtype).eps * max(A.shape)).solve()
    return x[:, 0] if column else x


class GramSolver:
    """Damped least squares through the smaller Gram matrix; see the module docstring."""

    def __init__(self, blocks: Iterable[torch.Tensor], r: torch.Tensor) -> None:
        blocks = iter(blocks)
        first = next(blocks, None)
        if first is None:
            raise ValueError("GramSolver needs at least one block of the Jacobian")
        m = first.shape[1]
        self.sample_space, self.r, self.J = r.numel() < m, r, None
        self.watch = Stopwatch(first.device)
        self.lstsq_fallbacks, self.fallback_reason = 0, ""
        if self.sample_space:
            self.J = torch.cat([first, *blocks])
            with self.watch:
                G, c = self.J @ self.J.T, None
        else:
            G = torch.zeros(m, m, dtype=first.dtype, device=first.device)
            c = torch.zeros(m, dtype=first.dtype, device=first.device)
            offset = 0
            for block in chain([first], blocks):  # the blocks' building is not timed
                with self.watch:
                    G.addmm_(block.T, block)
                    c.addmv_(block.T, r[offset : offset + block.shape[0]])
                offset += block.shape[0]
            if offset != r.numel():
                raise ValueError(f"the Jacobian's blocks cover {offset} rows, the residual has "
                                 f"{r.numel()}")
        self.G, self.c = G, c
        self.scale = float(G.diagonal().mean().clamp_min(torch.finfo(G.dtype).tiny))

    @property
    def seconds(self) -> float:
        """Seconds of this solver's arithmetic so far (device-synchronised)."""
        return self.watch.seconds

    def solve(self, damping: float = MIN_DAMPING) -> torch.Tensor:
        """$\\delta$ for the relative ``damping`` (at least ``MIN_DAMPING``)."""
        with self.watch:
            return self._solve(max(damping, MIN_DAMPING))

    def _solve(self, damping: float) -> torch.Tensor:
        damped = self.G.clone()
        damped.diagonal().add_(damping * self.scale)
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) != 0:  # not numerically positive definite: least squares on the system
            self.lstsq_fallbacks += 1
            self.fallback_reason = (
                f"the damped Gram matrix ({damped.shape[0]}x{damped.shape[0]}, {damped.dtype}, "
                f"relative damping {damping:.0e}) is not numerically positive definite (Cholesky "
                f"breaks down at pivot {int(info)}); solved by least squares (an SVD) instead")

            def gram_inverse(rhs):
                return lstsq(damped, rhs)
        else:
            def gram_inverse(rhs):
                return torch.cholesky_solve(rhs[:, None], factor)[:, 0]
        if self.sample_space:
            delta = self.J.T @ gram_inverse(self.r)
            delta += self.J.T @ gram_inverse(self.r - self.J @ delta)
        else:
            delta = gram_inverse(self.c)
            delta += gram_inverse(self.c - self.G @ delta)
        return delta


class SVDSolver:
    """Damped least squares by the thin SVD of $J$, for ``r`` of shape (n,) or (n, k); see the
    module docstring."""

    def __init__(self, blocks: Iterable[torch.Tensor], r: torch.Tensor,
                 rcond: float = RCOND) -> None:
        J = torch.cat(list(blocks))
        self.watch = Stopwatch(J.device)
        with self.watch:
            U, S, Vh = torch.linalg.svd(J, full_matrices=False)
            keep = S > rcond * S[0]
            self.S, self.V = S[keep], Vh[keep].T
            self.projected = U[:, keep].T @ r
            self.scale = float(S.square().sum()) / min(J.shape)

    @property
    def seconds(self) -> float:
        """Seconds of this solver's arithmetic so far (device-synchronised)."""
        return self.watch.seconds

    def solve(self, damping: float = 0.0) -> torch.Tensor:
        """$\\delta$ for the relative ``damping`` (0: the truncated pseudo-inverse)."""
        with self.watch:
            return (self.V * (self.S / (self.S.square() + damping * self.scale))) @ self.projected
