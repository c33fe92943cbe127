r"""PDEs on meshes with P1 elements: Poisson, heat, and geodesic distance by the heat method.

- :func:`poisson`: $-\Delta u = f$, $u = g$ on Dirichlet vertices, natural (zero Neumann)
  elsewhere, plus an optional boundary flux: $K u = M f + b$ solved on the free vertices.
- :func:`heat`: $u_t = \kappa\Delta u$, θ-scheme $(M + \theta\,dt\,\kappa K)u^{n+1} =
  (M - (1-\theta)dt\,\kappa K)u^n$: implicit Euler ($\theta = 1$, order 1) or Crank–Nicolson
  ($\theta = 1/2$, order 2); Dirichlet values held fixed, zero Neumann elsewhere;
  :func:`heat_stepper` for a rollout in segments on one set-up.
- :func:`heat_geodesic`: Crane, Weischedel & Wardetzky (2013): $(M + t K)u = \delta_s$ with
  $t = h^2$, $X = -\nabla u/|\nabla u|$, then $K\phi = -\operatorname{div} X$, shifted so the
  source is at 0.

Every system here is symmetric positive definite (stiffness plus mass, restricted to the free
vertices) and is solved by the package's CG (:func:`physml.solvers.linalg.cg`) to a relative
residual of :data:`RTOL` (:func:`_spd_solver`): the Poisson solves (stiffness only)
preconditioned by one smoothed-aggregation AMG V-cycle, the heat steps by Jacobi or, where the
step's matrix is stiffness-dominated beyond :data:`HEAT_AMG_RATIO`, by AMG (chosen once from
the matrix, so every step of a run, in any segments, is solved alike).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import warp as wp
from scipy.sparse.csgraph import connected_components

from ..checks import check_counts
from ..dtypes import real_values
from ..errors import ConvergenceError, is_real, refuse_grad
from ..keyword_only import formerly_positional
from ..linalg import CsrOperator, Jacobi, SmoothedAggregationAMG, cg, csr_from_scipy
from ..linalg.relaxation import gauss_seidel_entrywise
from .mesh import Mesh
from .operators import divergence, gradient, mass_matrix, stiffness_matrix, to_scipy

_HEAT_GRADIENTS = ("compose physml.mesh_bridge.operator_values and sparse_solve for "
                   "differentiable theta-steps (there is no differentiable heat rollout)")

RTOL = 1e-13
"""Relative residual $\\|b - A u\\| / \\|b\\|$ every solve reaches, or float64's rounding floor
where that lies above it (large meshes with smooth data; the solve then returns the best x
float64 gives, see :func:`~physml.solvers.linalg.cg`'s ``floor``): far below the P1
discretisation error, so the observed convergence orders are those of the discretisation, and
small enough that a heat rollout conserves $\\sum_i (M u)_i$ to about 1e-13 over tens of steps
(the residual is all that changes it)."""


HEAT_STEP_RTOL = 1e-10
"""Entrywise relative accuracy of the heat method's heat step (the distances agree to seven
digits with those of a 1e-14 solve on icospheres of 2.6e3 to 1.6e5 vertices)."""


HEAT_STEP_DIRECT_RATIO = 10.0
r"""Above this $t / h^2$ (h the mean edge length) the heat method's heat step is a sparse LU
solve (SciPy's SuperLU, COLAMD ordering) instead of Gauss–Seidel: the sweeps grow with
$t / h^2$, the factorisation's cost does not depend on t. Seconds on one core (L + U holding
F times the nonzeros of $M + tK$; the distances of the two solves agree to 1e-12):

================  ======  ===============================  ===========================
mesh              n       Gauss–Seidel at 1, 10, 100 h²    SuperLU (any t), F, memory
================  ======  ===============================  ===========================
``icosphere(4)``  2562    0.02, 0.09, 0.62                 0.04, 12x, 3 MiB
``icosphere(5)``  10242   0.09, 0.37, 2.2                  0.26, 19x, 15 MiB
``icosphere(6)``  40962   0.64, 2.3, 15                    2.4, 25x, 82 MiB
``disc(0.006)``   101653  1.6, 6.8, 32                     5.0, 25x, 200 MiB
================  ======  ===============================  ===========================

At $1000 h^2$ the sweeps do not converge in 10,000. Up to $10 h^2$ Gauss–Seidel is at most 2x
slower (0.05 s on ``icosphere(4)``) and needs no fill-in, whose time and memory grow faster
than n (SuperLU took 10.5 s at 1.6e5 vertices and did not finish in minutes at 6.6e5), so the
default $t = h^2$ keeps Gauss–Seidel on every mesh."""


HEAT_AMG_RATIO = 2000.0
r"""Stiffness ratio of a heat step's matrix $A = M + \theta\,dt\,\kappa K$ above which its
solves are AMG-CG, Jacobi-CG at or below it (:func:`heat_stepper` decides once, from A alone,
so a run stepped in segments, or resumed, solves every step alike).

The ratio is the 99th percentile, over the free vertices, of $\theta\,dt\,\kappa\,K_{ii} /
M_{ii}$: about $8\theta\,\kappa\,dt / h^2$ (h the mean edge length; $K_{ii} / M_{ii}$ is
$8 / h^2$ at the median vertex of ``disc``, ``torus`` and ``icosphere`` meshes, 10 to
$14 / h^2$ at the 99th percentile, which the boundary's vertices set, and up to $25 / h^2$ at
single ill-shaped vertices). Jacobi-CG's iterations grow with the ratio where the slowest
modes live, which a few ill-shaped vertices do not change, so the largest entry would
over-state it; a graded mesh's refined part holds many vertices, and the percentile follows
any refinement that holds one vertex in a hundred. Where the refined part is small in extent
Jacobi's iterations level off and AMG is taken early: on a disc graded from $h = 0.04$ to
0.004 in a spot of radius 0.02 (2943 vertices) the ratio passes the threshold at
$\kappa\,dt / h^2 = 10$, where Jacobi-CG needs 114 iterations (223 at 100, 311 at 1000),
which costs up to 3x per step by the table below. The other mistake, Jacobi at a stiff step,
costs more the finer the mesh: Jacobi's iterations grow like $\sqrt{\kappa\,dt} / h$ up to
order $1/h$, while AMG-CG's stay near 20.

Milliseconds per Crank–Nicolson step from the last state to :data:`RTOL`, Jacobi-CG
(iterations); AMG-CG (iterations), and the ratio on each mesh, on :func:`~.domains.disc`
meshes, one thread, medians of five steps, on two cores shared with other work (load
average 3):

===================  ============  ======================  ======================
$\kappa\,dt / h^2$   ratio         23604 vertices          93705 vertices
===================  ============  ======================  ======================
1                    5; 5          3.3 (18); 26 (5)        14 (17); 70 (5)
10                   51; 46        14 (65); 48 (10)        41 (59); 163 (10)
100                  507; 461      52 (230); 72 (15)       210 (213); 230 (15)
200                  1015; 923     67 (319); 85 (18)       286 (309); 337 (18)
300                  1522; 1384    86 (374); 92 (19)       382 (386); 358 (19)
500                  2537; 2307    105 (443); 100 (20)     484 (502); 425 (21)
700                  3552; 3230    114 (496); 99 (21)      578 (589); 418 (22)
1000                 5075; 4614    118 (572); 94 (22)      613 (693); 429 (22)
10000                50747; 46140  181 (806); 114 (24)     1051 (1383); 362 (28)
===================  ============  ======================  ======================

The threshold lies where the two cost the same, at $\kappa\,dt / h^2$ between 300 and 500
on the first mesh, between 200 and 300 on the second (within 15 % of each other from 300 to
500 on both): $\kappa\,dt / h^2$ about 400 for Crank–Nicolson, 200 for implicit Euler. At
the steps a rollout usually takes ($\kappa\,dt / h^2$ of order 1 to 10) Jacobi-CG needs tens
of iterations and no set-up, and is 3 to 8 times faster. A closed surface crosses over
earlier: on ``icosphere(6)`` (40962 vertices) AMG-CG was already faster at a ratio of 445
(52 against 74 ms a step) and 1.9 times faster at 1334, where the rule keeps Jacobi-CG.

AMG's set-up took 42 to 75 ms at 23604 vertices and 0.15 to 0.23 s at 93705. The results of
the two agree to 7e-13 of max|u|. A sparse factorisation reused for every step is faster per
step still (SciPy's SuperLU: 85 ms at 95196 vertices and $dt/h^2 = 26$), but it costs 3.1 s to
build there and its fill-in's time and memory grow faster than n (see
:data:`HEAT_STEP_DIRECT_RATIO`), while CG needs only A. Jacobi's residual keeps more of the
smooth components that carry $\sum_i (M u)_i$: over the 400 steps of the bundled
``heat_surface`` case (ratio 7.5, Jacobi-CG) the mass drifts by 2.7e-12 (3.4e-13 with
AMG-CG)."""


def _spd_solver(A: sp.csr_matrix, amg: bool, device: str = "cpu"
                ) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    r"""``solve(b, u0=None)`` $= A^{-1} b$ (float64) for a sparse symmetric positive-definite
    $A$ (a heat step's $M + \theta\,dt\,\kappa K$, a stiffness): CG from ``u0`` (zeros if
    None) to :data:`RTOL`, preconditioned by A's smoothed-aggregation AMG hierarchy (built here,
    once) if ``amg``, else by Jacobi (:data:`HEAT_AMG_RATIO` says which suits a heat step).
    Every solve uses the one preconditioner, so a result depends on A, b and ``u0`` only.

    Raises:
        ConvergenceError: CG did not reach :data:`RTOL` within its ``maxiter`` (10 times A's
            size; A is not positive definite).
    """
    op = CsrOperator(csr_from_scipy(A, wp.float64, device))
    preconditioner = SmoothedAggregationAMG(op) if amg else Jacobi(op)

    def solve(b: np.ndarray, u0: np.ndarray | None = None) -> np.ndarray:
        start = None if u0 is None else wp.array(u0, dtype=wp.float64, device=device)
        rhs = wp.array(b, dtype=wp.float64, device=device)
        return cg(op, rhs, start, preconditioner=preconditioner, rtol=RTOL,
                  floor="accept").x.numpy()

    return solve


def _solve(A: sp.csr_matrix, b: np.ndarray, device: str = "cpu") -> np.ndarray:
    """$A^{-1} b$ for a sparse symmetric positive-definite $A$ (one AMG-CG
    :func:`_spd_solver` solve from zeros)."""
    return _spd_solver(A, True, device)(b)


def _nodal(mesh: Mesh, values: Any, name: str) -> np.ndarray:
    """``values`` as a finite (n,) float64 array of vertex values; a ValueError names ``name``
    otherwise."""
    array = real_values(values, name)
    if array.shape != (mesh.n_vertices,):
        raise ValueError(f"{name} has shape {array.shape}; the mesh has {mesh.n_vertices} "
                         f"vertices: pass ({mesh.n_vertices},) values")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _vertices(mesh: Mesh, indices: Any, name: str) -> np.ndarray:
    """``indices`` as int64 vertex indices (any shape, flattened); a ValueError names ``name``
    unless each is a whole number in [0, n)."""
    array = np.asarray(indices)
    if array.size and not (np.issubdtype(array.dtype, np.integer) and array.min() >= 0
                           and array.max() < mesh.n_vertices):
        raise ValueError(f"{name}: vertex indices must be whole numbers in [0, "
                         f"{mesh.n_vertices - 1}]; got {array.ravel()[:5].tolist()}"
                         f"{' ...' if array.size > 5 else ''}")
    return array.astype(np.int64).ravel()


def require_distinct(indices: np.ndarray, name: str) -> None:
    """Refuse vertices that ``indices`` list more than once: their Dirichlet values could
    conflict, and the last would silently win.

    Raises:
        ValueError: naming ``name`` and the first repeated vertices."""
    vertices, counts = np.unique(indices, return_counts=True)
    repeated = vertices[counts > 1]
    if repeated.size:
        raise ValueError(f"{name} must be distinct vertex indices; vertices "
                         f"{repeated[:5].tolist()}{' ...' if repeated.size > 5 else ''} are "
                         "listed more than once (each takes one Dirichlet value: list it once)")


def _split(mesh: Mesh, dirichlet: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    fixed = np.unique(np.asarray([] if dirichlet is None else dirichlet, dtype=np.int64))
    return fixed, np.setdiff1d(np.arange(mesh.n_vertices), fixed)


def _components(K: sp.spmatrix) -> np.ndarray:
    """(n,) the connected component of each vertex (labels 0, 1, ...): the graph of K's
    pattern, the mesh's edges (a vertex no cell holds is a component of its own)."""
    return connected_components(K, directed=False)[1]


def require_grounded(K: sp.spmatrix, dirichlet: np.ndarray, cure: str = "") -> None:
    r"""Refuse Dirichlet vertices ``dirichlet`` (indices into the n vertices) that leave a
    connected part of the mesh (of the pattern of K, an (n, n) matrix such as the stiffness)
    without one: $-\Delta u = f$ with Neumann conditions all around that part is singular.

    Raises:
        ValueError: naming the part's first vertices and its size; ``cure`` ends the message."""
    labels = _components(K)
    floating = np.setdiff1d(labels, labels[np.asarray(dirichlet, dtype=np.int64)])
    if floating.size:
        part = np.flatnonzero(labels == floating[0])
        raise ValueError(f"the mesh has {labels.max() + 1} connected parts and the one of "
                         f"vertices {part[:5].tolist()}{' ...' if part.size > 5 else ''} "
                         f"({part.size} vertices) has no Dirichlet vertex: a pure Neumann "
                         f"problem there is singular; add Dirichlet vertices in it {cure}".rstrip())


def poisson(mesh: Mesh, f: np.ndarray, dirichlet: np.ndarray | None = None,
            g: np.ndarray | float = 0.0, flux: np.ndarray | None = None,
            shift: float = 0.0) -> np.ndarray:
    r"""P1 solution (n,) of $-\Delta u + \sigma u = f$ ($\sigma$ = ``shift`` >= 0).

    Args:
        mesh: the mesh.
        f: (n,) nodal source values (the load is $M f$).
        dirichlet: vertex indices where $u = g$ (default: ``mesh.boundary_vertices()``).
        g: Dirichlet values, scalar or (len(dirichlet),).
        flux: optional (n,) integrated Neumann load $b_i = \int_{\partial\Omega}
            \partial_n u\,\phi_i$ added to the right-hand side.
        shift: $\sigma$; with $\sigma > 0$ the problem is well posed without Dirichlet
            vertices (``dirichlet=[]``: zero Neumann, or a closed surface).

    Raises:
        ValueError: no shift and a connected part of the mesh without a Dirichlet vertex (a pure
            Neumann problem there: singular); ``f``, ``g`` or ``flux`` a tensor that requires
            grad (:func:`physml.mesh_bridge.poisson_solve` differentiates).
    """
    for name, value in (("f", f), ("g", g), ("flux", flux)):
        refuse_grad(value, name, "mesh.poisson",
                    "use physml.mesh_bridge.poisson_solve for gradients")
    dirichlet = (mesh.boundary_vertices() if dirichlet is None
                 else _vertices(mesh, dirichlet, "dirichlet"))
    require_distinct(dirichlet, "dirichlet")
    f = _nodal(mesh, f, "f")
    flux = None if flux is None else _nodal(mesh, flux, "flux")
    g = real_values(g, "g")
    if g.ndim != 0 and g.shape != (len(dirichlet),):
        raise ValueError(f"g has shape {g.shape}; pass one value or one per Dirichlet "
                         f"vertex ({len(dirichlet)},)")
    if not np.isfinite(g).all():
        raise ValueError("g holds NaN/Inf values; the Dirichlet values must be finite")
    if not (np.isfinite(shift) and shift >= 0):
        raise ValueError(f"shift={shift} must be a finite number >= 0")
    if len(dirichlet) == 0 and shift == 0:
        raise ValueError("poisson needs Dirichlet vertices or shift > 0 (the pure Neumann "
                         "problem is singular); pass dirichlet=[...] or shift=...")
    M = to_scipy(mass_matrix(mesh))
    K = to_scipy(stiffness_matrix(mesh)) + shift * M
    if shift == 0:
        require_grounded(K, dirichlet, "or pass shift > 0")
    rhs = M @ f
    if flux is not None:
        rhs = rhs + flux
    u = np.zeros(mesh.n_vertices)
    u[np.asarray(dirichlet, dtype=np.int64)] = g
    fixed, free = _split(mesh, dirichlet)
    u[free] = _solve(K[free][:, free], (rhs - K @ u)[free], mesh.device)
    return u


@formerly_positional(("dt", "n_steps", "kappa", "theta", "dirichlet"), {"kappa": 1.0})
def heat(mesh: Mesh, u0: np.ndarray, *, dt: float, n_steps: int, kappa: float,
         theta: float = 1.0, dirichlet: np.ndarray | None = None) -> np.ndarray:
    r"""θ-scheme rollout of $u_t = \kappa\Delta u$; returns (n_steps + 1, n) states, the first
    ``u0``.

    Args:
        mesh: the mesh (n vertices).
        u0: (n,) finite initial values; on ``dirichlet`` vertices they stay fixed.
        dt: time step [s], finite and > 0 (keyword).
        n_steps: number of steps, a whole number >= 0 (keyword).
        kappa: diffusivity [m^2/s], finite and >= 0 (keyword).
        theta: implicitness in [0.5, 1], where the scheme is stable for every ``dt`` (other
            values are refused): 1 is implicit Euler (order 1), 0.5 Crank–Nicolson (order 2).
        dirichlet: distinct vertex indices in [0, n) held at their ``u0`` values (default none:
            zero Neumann on the whole boundary).

    The physics is keyword-only, as for the grid solvers: ``heat(mesh, u0, dt=1e-3,
    n_steps=100, kappa=0.1)``. The older forms still run, each with a ``FutureWarning``:
    ``dt``, ``n_steps``, ... given by position (``heat(mesh, u0, 2, 5)`` read 2 as ``dt``), and
    no ``kappa`` (taken as 1.0 m^2/s).

    ``theta`` defaults to 1 (implicit Euler, first order), where the grid solvers'
    ``scheme="imex"`` defaults to 0.5 (Crank–Nicolson, second order): implicit Euler is
    L-stable, its factor $1 / (1 + dt\,\kappa\lambda)$ on a mode of eigenvalue $\lambda$ of
    $M^{-1}K$ tending to 0 on the stiffest modes, while Crank–Nicolson's tends to $-1$, so
    rough mesh data (random fields, a jump between ``u0`` and the Dirichlet values, the short
    edges of a graded mesh) would oscillate from step to step instead of decaying. Pass
    ``theta=0.5`` for second order on smooth data.

    Raises:
        ValueError: ``theta`` is not a number in [0.5, 1]; ``dt`` is not a finite number > 0;
            ``kappa`` is not a finite number >= 0; ``dirichlet`` holds an index that is not a
            whole number in [0, n) or lists a vertex twice; ``u0`` is not (n,) finite real
            values; ``n_steps`` is not a whole number >= 0; ``u0``, ``dt``, ``kappa`` or ``theta``
            is a tensor that requires grad (:mod:`physml.mesh_bridge` has no heat rollout).
    """
    return heat_stepper(mesh, dt=dt, kappa=kappa, theta=theta, dirichlet=dirichlet)(u0, n_steps)


@formerly_positional(("dt", "kappa", "theta", "dirichlet"), {"kappa": 1.0})
def heat_stepper(mesh: Mesh, *, dt: float, kappa: float, theta: float = 1.0,
                 dirichlet: np.ndarray | None = None
                 ) -> Callable[[np.ndarray, int], np.ndarray]:
    r"""``rollout(u0, n_steps, save_every=1)``: :func:`heat`'s states from ``u0`` at steps 0,
    ``save_every``, 2 ``save_every``, ..., ``n_steps`` (n_steps // save_every + 1, n), its
    matrices and solver (:func:`_spd_solver`: AMG-CG if the step's stiffness ratio exceeds
    :data:`HEAT_AMG_RATIO`, else Jacobi-CG) built here once, so a run stepped in segments
    (saving between them) pays them once, and each step, a function of A and the state before
    it alone, is the same in one :func:`heat` call, in segments or in a resumed run.
    Arguments as :func:`heat`'s, keyword-only past ``mesh`` (``heat_stepper(mesh, dt=1e-3,
    kappa=0.1)``; by position, or without ``kappa``, it runs with a ``FutureWarning``);
    ``save_every`` a whole number >= 1 that divides ``n_steps`` (else a ValueError). The
    rollout holds the returned states and two more: a long run keeps ``save_every`` > 1, or
    steps in segments and writes each away.

    ``theta`` defaults to 1 (implicit Euler, first order; the grid solvers' ``imex`` defaults
    to 0.5, Crank–Nicolson): L-stable, it damps the stiff modes of rough mesh data where
    Crank–Nicolson lets them oscillate (see :func:`heat`)."""
    for name, value in (("dt", dt), ("kappa", kappa), ("theta", theta)):
        refuse_grad(value, name, "mesh.heat", _HEAT_GRADIENTS)
    if not (is_real(theta) and 0.5 <= theta <= 1.0):
        raise ValueError(f"theta={theta!r} must be in [0.5, 1] (unconditionally stable range)")
    if not (is_real(dt) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r} must be a positive number of seconds")
    if not (is_real(kappa) and np.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa={kappa!r} must be a finite diffusivity >= 0 (a negative one "
                         "runs the heat equation backwards, which no step size keeps stable)")
    if dirichlet is not None:
        dirichlet = _vertices(mesh, dirichlet, "dirichlet")
        require_distinct(dirichlet, "dirichlet")
    K = to_scipy(stiffness_matrix(mesh))
    M = to_scipy(mass_matrix(mesh))
    fixed, free = _split(mesh, dirichlet)
    implicit = M + theta * dt * kappa * K
    explicit = M - (1.0 - theta) * dt * kappa * K
    stiffness = theta * dt * kappa * K.diagonal()[free] / M.diagonal()[free]
    ratio = np.percentile(stiffness, 99) if free.size else 0.0
    solve = _spd_solver(implicit[free][:, free].tocsr(), ratio > HEAT_AMG_RATIO, mesh.device)

    def rollout(u0: np.ndarray, n_steps: int, save_every: int = 1) -> np.ndarray:
        refuse_grad(u0, "u0", "mesh.heat", _HEAT_GRADIENTS)
        u = _nodal(mesh, u0, "u0").copy()
        n_steps, save_every = check_counts(n_steps, save_every)
        states = np.empty((n_steps // save_every + 1, u.size))
        states[0] = u
        for step in range(1, n_steps + 1):
            rhs = explicit @ u - implicit[:, fixed] @ u[fixed]
            u[free] = solve(rhs[free], u[free])
            if step % save_every == 0:
                states[step // save_every] = u
        return states

    return rollout


def descent_directions(grad: np.ndarray) -> np.ndarray:
    """(m, d) unit vectors $-g/|g|$ of the rows of ``grad`` (0 where a row is 0).

    Each row is divided by its largest component before its norm is taken: far from the source
    the heat step's u is as small as 1e-277 (6.6e5 vertices), and the squares of its gradient
    would underflow to 0.
    """
    largest = np.abs(grad).max(axis=1, keepdims=True)
    scaled = np.divide(grad, largest, out=np.zeros_like(grad), where=largest > 0)
    return -scaled / np.maximum(np.linalg.norm(scaled, axis=1, keepdims=True), 1.0)


def heat_geodesic(mesh: Mesh, source: int | np.ndarray, t: float | None = None) -> np.ndarray:
    r"""(n,) approximate geodesic distance to the ``source`` vertex (or vertices), heat method;
    ``inf`` on the connected parts of the mesh that hold no source.

    Args:
        mesh: the mesh (n vertices; a planar or volume mesh, or a surface in 3D).
        source: a vertex index or an array of them, each a whole number in [0, n) (at least
            one; a repeated index counts once); the distance is to the nearest.
        t: diffusion time [length²], > 0 (default $h^2$, h the mean edge length). A larger t
            smooths the distances; above :data:`HEAT_STEP_DIRECT_RATIO` $h^2$ the heat step is
            a sparse factorisation (its time and memory grow faster than n: 5 s and 200 MiB
            at 1e5 vertices).

    The method inherits the cotangent Laplacian's accuracy: on triangles with angles near
    180° (a Delaunay triangulation of random points whose boundary triangles reach 179.96°)
    the distances are off by up to 0.45 of a unit square's side where the same interior with
    a regular boundary gives 0.018; mesh such domains with well-shaped triangles (Gmsh).

    Convergence at the default $t = h^2$ is about first order on coarse meshes and slows as they
    are refined: on ``icosphere(2)`` to ``icosphere(6)`` (162 to 40,962 vertices, h = 0.30 to
    0.019, radius 1) the largest error against the great-circle distance is 9.66e-2, 5.07e-2,
    2.92e-2, 1.89e-2 and 1.38e-2 (orders 0.94, 0.80, 0.63, 0.45; mean errors 4.5e-2 to 6.5e-3),
    and on :func:`~physml.solvers.mesh.domains.disc` ``(0.2)`` to ``(0.025)`` (source at the
    centre vertex, r < 0.7) 4.3e-2, 1.7e-2, 7.8e-3 and 5.9e-3 (orders 1.49, 1.11, 0.40): all
    with one source. Where the shortest path bends round a boundary it converges more slowly:
    on :func:`~physml.solvers.mesh.domains.annulus` ``(0.1)`` to ``(0.0125)`` (0.5 < r < 1,
    source at (-0.75, 0)) the largest error is 0.246, 0.161, 0.099 and 0.061 (orders about
    0.7, about 5 % of the distance, where the path hugs the hole), 8.7e-3 at the finest where
    the source is in sight. Several sources smooth the ridge where the nearest one changes: two 90°
    apart on ``icosphere(2)`` to ``(4)`` give 0.168, 0.117 and 0.064 (antipodal 0.052, 0.026,
    0.015), and the distance is 0 at the nearest source, 1.2e-2 to 1.3e-4 at the others. That is
    the method's error at $t = h^2$, not the solves': a plain SciPy heat method (sparse LU for
    both solves) gives the same distances to 3e-13.

    The heat step is not the AMG-CG solve of the other PDEs here: $u$ falls off like
    $e^{-d^2/4t}$, to 1e-30 of its peak and far below across the mesh, and the method uses only
    the direction of $\nabla u$ there; CG bounds the residual relative to $\|b\|$, so far from
    the source its $u$ is noise (on ``icosphere(4)`` the distance error grew from 0.9 % to 4 %
    of $\pi$ with AMG-CG to 1e-12). Up to $t =$ :data:`HEAT_STEP_DIRECT_RATIO` $h^2$ it is
    solved entry by entry to a relative :data:`HEAT_STEP_RTOL` by symmetric Gauss–Seidel swept
    outwards from the source (:func:`~physml.solvers.linalg.relaxation.gauss_seidel_entrywise`),
    which resolves the tiny values as a factorisation does, without its fill-in (at 6.6e5
    vertices u reaches 1e-277; much finer meshes underflow float64 far from the source at
    $t = h^2$). Its sweeps grow with $t / h^2$ (on ``icosphere(5)``: 98 at $h^2$, 452 at
    $10 h^2$; 10,000 do not suffice at $1000 h^2$), so a larger t is solved by SuperLU, whose
    triangular solves resolve the far field entry by entry too (for an M-matrix the factors'
    terms add with one sign): on ``icosphere(5)`` at $100 h^2$ the two agree to 5e-11 of each
    entry, and at $1000 h^2$ the distance is within 0.011 of the great-circle one (radius 1,
    0.019 at $h^2$). The second solve, for $\phi$, is an ordinary Poisson problem, solved by
    AMG-CG to :data:`RTOL`.
    """
    source = np.atleast_1d(_vertices(mesh, source, "source"))
    if source.size == 0:
        raise ValueError("source: give at least one vertex")
    if t is not None and not (np.isfinite(t) and t > 0):
        raise ValueError(f"t={t} must be a positive diffusion time (default: the mean edge "
                         "length squared)")
    K = to_scipy(stiffness_matrix(mesh))
    M = to_scipy(mass_matrix(mesh, lumped=True))
    h2 = mesh.edge_length() ** 2
    t = h2 if t is None else t
    delta = np.zeros(mesh.n_vertices)
    delta[source] = 1.0
    if t / h2 > HEAT_STEP_DIRECT_RATIO:
        heat_u = spla.splu((M + t * K).tocsc()).solve(delta)
    else:
        try:
            heat_u, _ = gauss_seidel_entrywise(M + t * K, delta, rtol=HEAT_STEP_RTOL)
        except ConvergenceError as error:
            raise ConvergenceError(
                method="heat_geodesic", iterations=error.iterations, residual=error.residual,
                tolerance=error.tolerance, residuals=error.residuals,
                advice=(f"the heat step's Gauss–Seidel sweeps at t={t:.4g} ({t / h2:.4g} h², h "
                        "the mean edge length) converge too slowly, their number growing with "
                        "t over the squared edge lengths (edges far shorter than h in places "
                        f"slow them); a t above {HEAT_STEP_DIRECT_RATIO:g} h² is solved by a "
                        "sparse factorisation instead")) from error
    grad = gradient(mesh, wp.array(heat_u, dtype=wp.float64, device=mesh.device)).numpy()
    X = descent_directions(grad)
    vec = wp.vec3d if mesh.dim == 3 else wp.vec2d
    div = divergence(mesh, wp.array(X, dtype=vec, device=mesh.device)).numpy()
    # phi is defined up to a constant per connected part: pin one source in each part that
    # holds one, and shift each so that its nearest source is at 0
    labels = _components(K)
    parts = np.unique(labels[source])
    pinned = [source[labels[source] == part][0] for part in parts]
    reached = np.isin(labels, parts)
    free = np.flatnonzero(reached & ~np.isin(np.arange(mesh.n_vertices), pinned))
    phi = np.where(reached, 0.0, np.inf)
    phi[free] = _solve(K[free][:, free], -div[free], mesh.device)
    for part in parts:
        phi[labels == part] -= phi[source[labels[source] == part]].min()
    return phi
