r"""PDEs on meshes, ``kind: mesh_pde``: Poisson, heat, heat-method geodesics and shape
optimisation through a differentiable Poisson solve, on a mesh file or a generated domain.

- ``poisson``: $-\Delta u = f$, $u = g$ on the Dirichlet parts, $\partial_n u = q$ on the
  Neumann parts, zero flux elsewhere (:func:`physml.solvers.mesh.poisson`). Errors against
  ``pde.exact`` on the case's mesh and on the ``refine`` meshes give the observed orders.
- ``heat``: $u_t = \kappa\Delta u$, θ-scheme (:func:`physml.solvers.mesh.heat`), Dirichlet
  values held, zero flux elsewhere. Checks against exact facts: mass $\int u$ is conserved
  without Dirichlet parts, the Dirichlet energy $\tfrac12 u^\top K u$ never grows, and the
  late-time decay rate of $\|u - \bar u\|_M$ matches the scheme's amplification of the first
  non-zero eigenvalue $\lambda_1$ of $K v = \lambda M v$ within
  :data:`DECAY_RATE_TOLERANCE` (the verdict ``passed``).
- ``geodesic``: distance to the vertex nearest ``pde.source_point`` by the heat method
  (:func:`physml.solvers.mesh.heat_geodesic`), compared with ``pde.exact`` if given.
- ``shape_optimisation``: vertex positions $x$ move by Adam to minimise
  $J(x) = \sum_i w_i (u_i(x) - U(x_i))^2 / (|\Omega_0| U_{max}^2) + \beta\,Q(x)$, where $u(x)$
  is the P1 solution of $-\Delta u = f$ (a constant), $u = 0$ on the boundary, on the moved
  mesh (gradients through :func:`physml.mesh_bridge.poisson_solve`), $U(x) = f\,(1 - x^2/a^2
  - y^2/b^2) / (2/a^2 + 2/b^2)$ the exact solution on the ellipse of semi-axes
  ``optimisation.target_semi_axes`` $(a, b)$ (so $J = 0$ exactly when the domain is that
  ellipse, up to the discretisation), $w$ the initial lumped mass, and
  $Q = \operatorname{mean}_c |e|^2/(4\sqrt3 A_c) - 1 \ge 0$ the mean-ratio quality of the
  triangles (0 for equilateral ones, infinite for a collapsed or flipped one).

Run folder::

    config.yaml      the resolved case
    checkpoint.pt    heat: state, saved frames and history; shape_optimisation: positions,
                     Adam state and history (Poisson and geodesic runs are one solve: none)
    metrics.json     the summary (errors, orders, residuals, conservation, timings) and history
    solution.vtu     the (final) mesh with the fields attached, for ParaView
    fields.h5        the same fields on the mesh (node dim and topology, see
                     :func:`physml.io.read_mesh_dataset`); heat: every saved frame
    solution.png     the fields rendered (tripcolor; plot_trisurf on a surface)
    convergence.png  poisson with pde.exact and refine: errors against h (log-log), with the
                     expected slopes on the L-shape with its corner singularity
    decay.png        heat without Dirichlet parts: log ||u - mean||_M against t with the
                     expected slope, and the rate's error between saves against the tolerance
    losses.png       shape_optimisation: the loss terms against the step

A case::

    kind: mesh_pde
    name: poisson_lshape
    mesh: {domain: l_shape, h: 0.05}
    pde: {name: poisson, source: 0, exact: {kind: corner_singular}}
    boundary: [{part: all, kind: dirichlet, value: {kind: corner_singular}}]
    refine: [0.1, 0.025]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import scipy.sparse.linalg as spla
import torch
from pydantic import BeforeValidator, Field, model_validator

from ..datasets.mesh_spec import MeshSpec
from ..datasets.mesh_store import mesh_dataset
from ..datasets.store import write_dataset
from ..errors import NonFiniteLossError, adam_can_step
from ..solvers import mesh as pm
from .kind import CaseKind, OnStep
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    KindSection,
    Section,
    atomic_write,
    read_checkpoint,
    restoring,
    write_text,
)
from .sections import CaseBase, LearningRate, threshold_passed

FIELD_METADATA = {
    "u0": ("initial value of u", "1"), "exact": ("exact solution", "1"),
    "error": ("nodal error u - exact", "1"), "source": ("source term f", "1"),
    "distance": ("geodesic distance", "m"),
}


class FieldSpec(KindSection):
    r"""A nodal field in closed form of the vertex position $x$ [m], with $a$ =
    ``amplitude``, $c$ = ``centre``, $w$ = ``width``, $k$ = ``wavevector``:

    - ``constant``: $a$; ``gaussian``: $a\exp(-|x - c|^2 / 2w^2)$; ``plane_wave``:
      $a\sin(k\cdot x)$;
    - ``corner_singular``: $a\,r^{2/3}\sin(2\theta/3)$, $(r, \theta)$ polar about $c$ in the
      plane, $\theta \in [0, 2\pi)$: harmonic, zero on $\theta = 0$ and $\theta = 3\pi/2$
      (the L-shape's singular solution);
    - ``great_circle``: $a R \arccos(x\cdot c / |x| R)$, $R = |c|$: the geodesic distance from
      $c$ on the sphere of radius $R$.
    """

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "constant": (), "gaussian": ("centre", "width"), "plane_wave": ("wavevector",),
        "corner_singular": ("centre",), "great_circle": ("centre",)}

    kind: Literal["constant", "gaussian", "plane_wave", "corner_singular", "great_circle"]
    amplitude: float = 1.0
    centre: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=2,
                                max_length=3)
    width: float = Field(0.25, gt=0, description="[m]")
    wavevector: list[float] = Field(default_factory=lambda: [1.0, 0.0, 0.0], min_length=2,
                                    max_length=3, description="[1/m]")

    @model_validator(mode="after")
    def _great_circle_centre(self) -> FieldSpec:
        if self.kind == "great_circle" and not np.any(self.centre):
            raise ValueError("great_circle needs a non-zero centre (a point of the sphere)")
        return self

    def values(self, points: np.ndarray) -> np.ndarray:
        """(n,) values at ``points`` (n, d)."""
        d = points.shape[1]
        c = np.pad(self.centre, (0, 3))[:d]
        a = self.amplitude
        if self.kind == "constant":
            return np.full(len(points), a)
        if self.kind == "gaussian":
            return a * np.exp(-np.sum((points - c) ** 2, axis=1) / (2 * self.width ** 2))
        if self.kind == "plane_wave":
            return a * np.sin(points @ np.pad(self.wavevector, (0, 3))[:d])
        if self.kind == "corner_singular":
            dx, dy = (points[:, :2] - c[:2]).T
            theta = np.mod(np.arctan2(dy, dx), 2 * np.pi)
            return a * np.hypot(dx, dy) ** (2 / 3) * np.sin(2 * theta / 3)
        radius = float(np.linalg.norm(c))
        cosine = points @ c / (np.linalg.norm(points, axis=1) * radius)
        return a * radius * np.arccos(np.clip(cosine, -1.0, 1.0))


    @property
    def is_zero(self) -> bool:
        return self.kind == "constant" and self.amplitude == 0

    @property
    def expected_orders(self) -> dict[str, float] | None:
        """The asymptotic orders of P1 finite elements for this exact solution where it is the
        L-shape's corner singularity: ``corner_singular`` centred on the origin (where
        ``mesh.domain: l_shape`` has its re-entrant corner) with a non-zero amplitude,
        $r^{2/3}$ and so in $H^{5/3-\\epsilon}$ only, gives $2/3$ in the H1 seminorm and, by
        duality at that corner, $4/3$ in L2 (keys ``l2``, ``h1``); None otherwise. Whether
        the domain is the L-shape is the case's to say (:attr:`MeshPDECase.expected_orders`)."""
        at_corner = self.kind == "corner_singular" and not np.any(self.centre[:2])
        return {"l2": 4 / 3, "h1": 2 / 3} if at_corner and self.amplitude != 0 else None


def _number_as_constant(value: object) -> object:
    return {"kind": "constant", "amplitude": value} if isinstance(value, int | float) else value


NodalField = Annotated[FieldSpec, BeforeValidator(_number_as_constant)]
"""A :class:`FieldSpec`, or a number ``a`` for ``{kind: constant, amplitude: a}``."""


class BoundarySpec(Section):
    """A condition on a boundary part: a tag name of the mesh, or ``all`` (the whole
    boundary). ``dirichlet``: $u$ = value; ``neumann``: outward flux $\\partial_n u$ = value."""

    part: str = "all"
    kind: Literal["dirichlet", "neumann"] = "dirichlet"
    value: NodalField = Field(0.0, validate_default=True)


class MeshPDESpec(Section):
    """The PDE and its data."""

    name: Literal["poisson", "heat", "geodesic", "shape_optimisation"]
    source: NodalField = Field(0.0, validate_default=True,
                               description="f (poisson, shape_optimisation)")
    initial: NodalField = Field(0.0, validate_default=True, description="u at t = 0 (heat)")
    kappa: float = Field(1.0, gt=0, description="diffusivity [m^2/s] (heat)")
    exact: FieldSpec | None = Field(None, description="exact solution (poisson, geodesic)")
    source_point: list[float] | None = Field(None, min_length=2, max_length=3,
                                             description="geodesic source [m]")


class TimeSpec(Section):
    """θ-scheme time stepping: theta 1 is implicit Euler, 0.5 Crank–Nicolson."""

    theta: float = Field(1.0, ge=0.5, le=1.0)
    dt: float = Field(gt=0, description="[s]")
    steps: int = Field(gt=0)
    save_every: int = Field(10, gt=0, description="steps between saved frames (checkpoints)")


class OptimisationSpec(Section):
    """Adam on the vertex positions (``shape_optimisation``)."""

    target_semi_axes: list[float] = Field(min_length=2, max_length=2,
                                          description="semi-axes (a, b) of the target [m]")
    steps: int = Field(200, gt=0)
    lr: LearningRate = Field(0.01, description="Adam step [m]")
    quality_weight: float = Field(1e-3, ge=0, description="beta, weight of Q")
    loss_drop: float = Field(100.0, gt=1, description="target factor J(x0) / J(x_final)")
    checkpoint_every: int = Field(50, gt=0)

    @model_validator(mode="after")
    def _positive_axes(self) -> OptimisationSpec:
        if min(self.target_semi_axes) <= 0:
            raise ValueError(f"target_semi_axes {self.target_semi_axes} must be > 0")
        return self


PDE_KEYS = {"poisson": {"source", "exact"}, "heat": {"initial", "kappa"},
            "geodesic": {"source_point", "exact"}, "shape_optimisation": {"source"}}
"""The keys of ``pde`` each PDE reads (besides ``name``)."""


class MeshPDECase(CaseBase):
    """A whole ``kind: mesh_pde`` case file."""

    kind: Literal["mesh_pde"]
    mesh: MeshSpec
    pde: MeshPDESpec
    boundary: list[BoundarySpec] = Field(default_factory=list)
    time: TimeSpec | None = None
    optimisation: OptimisationSpec | None = None
    refine: list[float] = Field(default_factory=list,
                                description="further edge lengths h [m] for observed orders")

    @model_validator(mode="after")
    def _sections_fit_pde(self) -> MeshPDECase:
        name = self.pde.name
        needs = {"heat": "time", "shape_optimisation": "optimisation"}
        if name in needs and getattr(self, needs[name]) is None:
            raise ValueError(f"pde.name {name!r} needs the {needs[name]} section")
        for section, pde in needs.items():
            if name != section and getattr(self, pde) is not None:
                raise ValueError(f"the {pde} section applies to pde.name {section!r} only; "
                                 f"pde.name {name!r} does not read it")
        defaults = MeshPDESpec(name=name)  # keys at their defaults change nothing
        unread = sorted(key for key in MeshPDESpec.model_fields
                        if key != "name" and key not in PDE_KEYS[name]
                        and getattr(self.pde, key) != getattr(defaults, key))
        if unread:
            raise ValueError(f"pde.{unread[0]} does not apply to pde.name {name!r} (it reads "
                             f"{', '.join(sorted(PDE_KEYS[name]))})")
        if name == "geodesic" and self.boundary:
            raise ValueError("pde.name 'geodesic' takes no boundary conditions (the distance "
                             "from pde.source_point)")
        if name == "shape_optimisation" and self.pde.source.amplitude == 0:
            raise ValueError("pde.name 'shape_optimisation' needs a non-zero pde.source (the "
                             "loss compares the solution with the target's, scaled by it)")
        if name == "geodesic" and self.pde.source_point is None:
            raise ValueError("pde.name 'geodesic' needs pde.source_point")
        if name in ("poisson", "shape_optimisation") and not any(
                b.kind == "dirichlet" for b in self.boundary):
            raise ValueError(f"pde.name {name!r} needs a dirichlet entry in boundary (the "
                             "pure Neumann problem is singular)")
        if name == "shape_optimisation" and (
                self.pde.source.kind != "constant"
                or any(not b.value.is_zero or b.part != "all" for b in self.boundary)):
            raise ValueError("pde.name 'shape_optimisation' needs a constant pde.source and "
                             "boundary [{part: all, kind: dirichlet, value: 0}]")
        if name != "poisson" and any(b.kind == "neumann" and not b.value.is_zero
                                     for b in self.boundary):
            raise ValueError(f"pde.name {name!r} supports zero Neumann only (the default on "
                             "every part not listed)")
        if self.refine and (name != "poisson" or self.mesh.h is None):
            raise ValueError("refine needs pde.name 'poisson' on a generated mesh.domain")
        if any(not h > 0 for h in self.refine):
            raise ValueError(f"refine {self.refine}: edge lengths must be > 0")
        return self

    def unused_keys(self) -> set[str]:
        return {f"pde.{key}" for key in MeshPDESpec.model_fields
                if key != "name" and key not in PDE_KEYS[self.pde.name]}

    @property
    def expected_orders(self) -> dict[str, float] | None:
        """The asymptotic P1 orders of the errors against ``pde.exact`` (keys ``l2``, ``h1``)
        where they are known: on ``mesh.domain: l_shape`` with the singular solution at its
        re-entrant corner (:attr:`FieldSpec.expected_orders`); None on any other domain or
        mesh file, and for any other exact solution."""
        exact = self.pde.exact
        if exact is None or self.mesh.domain != "l_shape":
            return None
        return exact.expected_orders

    @property
    def total_steps(self) -> int:
        """Progress units: time steps, Adam steps, or solves (meshes)."""
        if self.pde.name == "heat":
            return self.time.steps
        if self.pde.name == "shape_optimisation":
            return self.optimisation.steps
        return 1 + len(self.refine)


@dataclass
class Result:
    """What a runner hands to :func:`write_results`."""

    mesh: pm.Mesh
    fields: dict[str, np.ndarray]
    summary: dict
    history: list[dict] = field(default_factory=list)
    frames: tuple[np.ndarray, np.ndarray] | None = None  # (times, u (n_times, n)) for heat


def _part(mesh: pm.Mesh, name: str) -> np.ndarray:
    return mesh.boundary_vertices(None if name == "all" else name)


def dirichlet_data(case: MeshPDECase, mesh: pm.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """The Dirichlet vertices (sorted) and their values; a later entry wins at shared
    vertices."""
    values = np.full(mesh.n_vertices, np.nan)
    for spec in case.boundary:
        if spec.kind == "dirichlet":
            vertices = _part(mesh, spec.part)
            values[vertices] = spec.value.values(mesh.points[vertices])
    fixed = np.flatnonzero(~np.isnan(values))
    return fixed, values[fixed]


def neumann_load(case: MeshPDECase, mesh: pm.Mesh) -> np.ndarray:
    r"""(n,) $b_i = \int_{\Gamma_N} q\,\phi_i$ by vertex quadrature on each boundary facet
    ($|F| / (k-1)$ per vertex) over the Neumann parts."""
    load = np.zeros(mesh.n_vertices)
    for spec in case.boundary:
        if spec.kind != "neumann":
            continue
        if spec.part == "all":
            facets = mesh.boundary_facets
        else:
            _part(mesh, spec.part)  # raises for an unknown part
            facets = mesh.facets[mesh.facet_tags == mesh.tag_names[spec.part]]
        x = mesh.points[facets]
        if facets.shape[1] == 2:
            measure = np.linalg.norm(x[:, 1] - x[:, 0], axis=1)
        else:
            measure = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)
        q = spec.value.values(mesh.points)
        np.add.at(load, facets, (measure / facets.shape[1])[:, None] * q[facets])
    return load


def _matrices(mesh: pm.Mesh):
    return pm.to_scipy(pm.stiffness_matrix(mesh)), pm.to_scipy(pm.mass_matrix(mesh))


def _order(hs: list[float], errors: list[float]) -> float | None:
    """Least-squares slope of log(error) against log(h); None with fewer than two meshes."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0]) if len(hs) > 1 else None


def solve_poisson(case: MeshPDECase, mesh: pm.Mesh) -> tuple[dict, dict[str, np.ndarray]]:
    """One Poisson solve: its figures (relative residual of the free rows, errors against
    ``pde.exact``: relative L2 $\\|e\\|_M/\\|u_I\\|_M$, relative H1 seminorm
    $\\|e\\|_K/\\|u_I\\|_K$, max) and its fields."""
    fixed, g = dirichlet_data(case, mesh)
    if len(fixed) == 0:
        parts = ", ".join(b.part for b in case.boundary if b.kind == "dirichlet")
        raise ValueError(f"boundary: no vertex of the mesh lies on the Dirichlet part(s) "
                         f"{parts} (a closed surface has no boundary), and Poisson's problem "
                         "needs one")
    f = case.pde.source.values(mesh.points)
    flux = neumann_load(case, mesh)
    start = time.perf_counter()
    u = pm.poisson(mesh, f, fixed, g, flux)
    seconds = time.perf_counter() - start
    K, M = _matrices(mesh)
    free = np.setdiff1d(np.arange(mesh.n_vertices), fixed)
    boundary_values = np.zeros(mesh.n_vertices)
    boundary_values[fixed] = g
    rhs = (M @ f + flux - K @ boundary_values)[free]  # K_II u_I = rhs
    residual = np.linalg.norm((K @ u - M @ f - flux)[free]) / max(np.linalg.norm(rhs), 1e-300)
    figures = {"h": mesh.edge_length(), "vertices": mesh.n_vertices, "solve_s": seconds,
               "residual": float(residual)}
    fields = {"u": u, "source": f}
    if case.pde.exact is not None:
        exact = case.pde.exact.values(mesh.points)
        e = u - exact
        # against the nodal interpolant I_h u: e^T K e is |u_h - I_h u|_1^2, which may converge
        # faster than the true H1 error |u_h - u|_1 (0.82 against 0.66 on the L-shape)
        figures |= {"rel_l2": float(np.sqrt(e @ M @ e / (exact @ M @ exact))),
                    "rel_h1": float(np.sqrt(e @ K @ e / (exact @ K @ exact))),
                    "max_error": float(np.abs(e).max())}
        fields |= {"exact": exact, "error": e}
    return figures, fields


def compile_solve(mesh: pm.Mesh, solve) -> None:
    """Compile the kernels of ``solve(mesh)`` for ``mesh``'s kind of cell and device by
    running it on the mesh's first cell alone, so that a timed solve times the solve, not
    Warp's first compilation (seconds on a cold kernel cache)."""
    cell = mesh.cells[0]
    solve(pm.Mesh(mesh.points[cell], np.arange(len(cell))[None], device=str(mesh.device)))


def run_poisson(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                on_step: OnStep) -> Result:
    """Solve on the case's mesh, then on each ``refine`` mesh; orders from all of them."""
    write_text(folder / CONFIG, case.to_yaml())
    compile_solve(mesh, lambda cell: pm.poisson(cell, np.zeros(cell.n_vertices), [0], 0.0))
    levels = []
    for step, h in enumerate([None, *case.refine]):
        figures, fields = solve_poisson(case, mesh if h is None else build_mesh(case, h))
        levels.append(figures)
        error = f", rel L2 {figures['rel_l2']:.2e}" if "rel_l2" in figures else ""
        on_step({"step": step, "status": f"mesh h {figures['h']:.3g} ({figures['vertices']} "
                                          f"vertices): residual {figures['residual']:.1e}"
                                          f"{error}", **figures})
        if h is None:
            kept = fields
    summary = {**levels[0], "levels": levels}
    if case.pde.exact is not None:
        hs = [level["h"] for level in levels]
        summary |= {"order_l2": _order(hs, [level["rel_l2"] for level in levels]),
                    "order_h1": _order(hs, [level["rel_h1"] for level in levels])}
        expected = case.expected_orders
        if expected is not None and len(levels) > 1:
            summary |= {"order_l2_expected": expected["l2"], "order_h1_expected": expected["h1"]}
    summary["units"] = summary_units(summary)
    return Result(mesh, kept, summary, levels)


def first_eigenvalue(K, M) -> float:
    """Smallest non-zero $\\lambda$ of $K v = \\lambda M v$ (closed surface or zero-flux
    boundary: $\\lambda_0 = 0$ is skipped), by shift-invert Lanczos."""
    values = spla.eigsh(K.tocsc(), k=2, M=M.tocsc(), sigma=-1e-3, which="LM",
                        return_eigenvectors=False)
    return float(np.sort(values)[1])


def heat_record(step: int, t: float, u: np.ndarray, K, M) -> dict:
    """Mass $1^\\top M u$, Dirichlet energy $\\tfrac12 u^\\top K u$, range and $\\|u - \\bar
    u\\|_M$ ($\\bar u$ the mean) of a state."""
    mass = float((M @ u).sum())
    deviation = u - mass / M.sum()
    return {"step": step, "t": t, "mass": mass, "energy": float(0.5 * u @ K @ u),
            "min": float(u.min()), "max": float(u.max()),
            "deviation": float(np.sqrt(deviation @ M @ deviation))}


def run_heat(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
             on_step: OnStep) -> Result:
    """θ-scheme in segments of ``time.save_every`` steps, a frame and a checkpoint after
    each."""
    spec, steps = case.time, case.time.steps
    fixed, g = dirichlet_data(case, mesh)
    K, M = _matrices(mesh)
    start = time.perf_counter()

    def save(state: dict) -> None:  # frames as tensors: the checkpoint loads weights-only
        kept = state | {"frames": [torch.from_numpy(u) for u in state["frames"]]}
        atomic_write(folder / CHECKPOINT, lambda p: torch.save(kept, p))

    if resume:
        state = read_checkpoint(folder)
        state["frames"] = [u.numpy() for u in state["frames"]]
        if state["frames"][0].shape != (mesh.n_vertices,):
            raise ValueError(f"--resume: the checkpoint holds {state['frames'][0].shape[0]} "
                             f"vertices, the mesh {mesh.n_vertices}")
    else:
        u0 = case.pde.initial.values(mesh.points)
        u0[fixed] = g
        state = {"step": 0, "frames": [u0], "history": [heat_record(0, 0.0, u0, K, M)],
                 "wall_s": 0.0}
        save(state)
        write_text(folder / CONFIG, case.to_yaml())
    offset = state["wall_s"]
    while state["step"] < steps:
        n = min(spec.save_every, steps - state["step"])
        u = pm.heat(mesh, state["frames"][-1], spec.dt, n, case.pde.kappa, spec.theta, fixed)
        for j in range(1, n + 1):
            on_step({"step": state["step"] + j, "t": (state["step"] + j) * spec.dt})
        state["step"] += n
        state["frames"].append(u[-1])
        state["history"].append(heat_record(state["step"], state["step"] * spec.dt, u[-1], K, M))
        state["wall_s"] = offset + time.perf_counter() - start
        save(state)
    history = state["history"]
    frames = np.stack(state["frames"])
    summary = heat_summary(case, history, K, M, closed=len(fixed) == 0)
    summary |= {"vertices": mesh.n_vertices, "h": mesh.edge_length(), "steps": steps,
                "step_s": state["wall_s"] / steps, "wall_s": state["wall_s"]}
    summary["units"] = summary_units(summary)
    return Result(mesh, {"u0": frames[0], "u": frames[-1]}, summary, history,
                  (np.array([r["t"] for r in history]), frames))


DECAY_RATE_TOLERANCE = 1e-3
"""Relative tolerance of a heat run's late decay rate against the expected one. The
discretisation reaches 9e-5 on the bundled torus (h 0.1, 1940 vertices, t = 4), where the
rate between saves levels off at the mesh's split of the torus's degenerate first eigenpair
($\\lambda$ = 1.030724 and 1.030817); 1.4e-4 on the ``quick`` variant (h 0.2, t = 2) and
5.3e-4 on ``genus2`` (t = 4, still falling). A run that ends before the first mode dominates
misses it (``quick`` stopped at t = 1: 2.4e-2)."""

ROUNDOFF_DEVIATION = 1e-10
"""A heat run's initial $\\|u - \\bar u\\|_M$ at most this fraction of
$\\max|u_0|\\,|\\Omega|^{1/2}$ is round-off (a constant field gives about $10^{-16}$), far
below any perturbation whose decay is measured."""

SUMMARY_UNITS = {
    "h": "m, mean edge length", "solve_s": "s", "residual": "relative, free rows",
    "rel_l2": "relative, mass-matrix norm", "rel_h1": "relative, stiffness seminorm",
    "max_error": "as u", "order_l2": "slope of log rel_l2 against log h",
    "order_h1": "slope of log rel_h1 against log h", "order_l2_expected": "asymptotic",
    "order_h1_expected": "asymptotic", "t": "s", "mass_drift": "relative",
    "overshoot": "relative to the initial range", "final_deviation": "final / initial",
    "lambda_1": "1/m^2", "decay_rate": "1/s, between the last two saves",
    "decay_rate_expected": "1/s", "decay_rate_error": "relative",
    "decay_rate_tolerance": "relative", "step_s": "s", "wall_s": "s",
}
"""Units of the entries of a Poisson or heat run's summary (``metrics.json``)."""


def summary_units(summary: dict) -> dict[str, str]:
    """The :data:`SUMMARY_UNITS` of the entries ``summary`` holds."""
    return {key: unit for key, unit in SUMMARY_UNITS.items() if key in summary}


def heat_summary(case: MeshPDECase, history: list[dict], K, M, closed: bool) -> dict:
    """Mass drift, energy monotonicity, maximum-principle overshoot and (without Dirichlet
    parts) the late-time decay rate, between the last two saves, against the scheme's
    amplification of $\\lambda_1$: $-\\log|G|/dt$, $G = (1 - (1-\\theta)\\,dt\\,\\kappa
    \\lambda_1) / (1 + \\theta\\,dt\\,\\kappa\\lambda_1)$; ``passed`` when their relative
    difference is within :data:`DECAY_RATE_TOLERANCE`. No rate and no verdict (the reason in
    ``decay_rate_skipped``) when the initial $\\|u - \\bar u\\|_M$ is at most
    :data:`ROUNDOFF_DEVIATION` of $\\max|u_0|\\,|\\Omega|^{1/2}$: a constant start, with
    nothing to decay."""
    first, last = history[0], history[-1]
    energy = np.array([r["energy"] for r in history])
    span = max(first["max"] - first["min"], 1e-300)
    summary = {
        "t": last["t"],
        "mass_drift": abs(last["mass"] - first["mass"]) / max(abs(first["mass"]), 1e-300),
        "energy_monotone": bool(np.all(np.diff(energy) <= 1e-12 * energy[0])),
        "overshoot": max(0.0, max(r["max"] for r in history) - first["max"],
                         first["min"] - min(r["min"] for r in history)) / span,
        "final_deviation": last["deviation"] / max(first["deviation"], 1e-300),
    }
    # a field constant at t = 0 has a deviation of round-off only, nothing to decay
    magnitude = max(abs(first["min"]), abs(first["max"])) * float(np.sqrt(M.sum()))
    if closed and len(history) > 2 and first["deviation"] <= ROUNDOFF_DEVIATION * magnitude:
        summary["decay_rate_skipped"] = (
            f"initial deviation from the mean {first['deviation']:.1e} is round-off "
            f"(max|u0| sqrt(area) {magnitude:.1e})")
    elif closed and len(history) > 2:
        dt, theta, kappa = case.time.dt, case.time.theta, case.pde.kappa
        lam = first_eigenvalue(K, M)
        amplification = (1 - (1 - theta) * dt * kappa * lam) / (1 + theta * dt * kappa * lam)
        previous = history[-2]
        observed = np.log(previous["deviation"] / last["deviation"]) / (last["t"] - previous["t"])
        expected = -np.log(abs(amplification)) / dt
        error = float(abs(observed - expected) / expected)
        summary |= {"lambda_1": lam, "decay_rate": float(observed),
                    "decay_rate_expected": float(expected), "decay_rate_error": error,
                    "decay_rate_tolerance": DECAY_RATE_TOLERANCE,
                    "passed": threshold_passed(error, DECAY_RATE_TOLERANCE)}
    return summary


def run_geodesic(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                 on_step: OnStep) -> Result:
    """Heat-method distance from the vertex nearest ``pde.source_point``."""
    write_text(folder / CONFIG, case.to_yaml())
    point = np.pad(case.pde.source_point, (0, 3))[: mesh.dim]
    source = int(np.argmin(np.linalg.norm(mesh.points - point, axis=1)))
    compile_solve(mesh, lambda cell: pm.heat_geodesic(cell, 0))
    start = time.perf_counter()
    distance = pm.heat_geodesic(mesh, source)
    summary = {"vertices": mesh.n_vertices, "h": mesh.edge_length(), "source": source,
               "solve_s": time.perf_counter() - start, "max_distance": float(distance.max())}
    fields = {"distance": distance}
    if case.pde.exact is not None:
        exact = case.pde.exact.values(mesh.points)
        error = distance - exact
        summary |= {"max_error": float(np.abs(error).max()),
                    "rel_max_error": float(np.abs(error).max() / np.abs(exact).max())}
        fields |= {"exact": exact, "error": error}
    error = f", max error {summary['max_error']:.2e}" if "max_error" in summary else ""
    on_step({"step": 0, "status": f"{mesh.n_vertices} vertices{error}"})
    return Result(mesh, fields, summary, [summary])


def mean_ratio_quality(points: torch.Tensor, cells: torch.Tensor,
                       orientation: torch.Tensor) -> torch.Tensor:
    r"""$Q = \operatorname{mean}_c (|e_0|^2 + |e_1|^2 + |e_2|^2) / (4\sqrt3 A_c) - 1 \ge 0$ for
    planar triangles; ``orientation`` (m,) the sign of each cell's initial area. A cell that
    collapsed or flipped ($A_c \le 0$) makes $Q = \infty$."""
    x = points[cells]
    e0, e1, e2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1], x[:, 0] - x[:, 2]
    area = 0.5 * orientation * (e0[:, 0] * (-e2[:, 1]) - e0[:, 1] * (-e2[:, 0]))
    if bool((area <= 0).any()):
        return torch.full((), torch.inf, dtype=points.dtype)
    squares = (e0 ** 2).sum(1) + (e1 ** 2).sum(1) + (e2 ** 2).sum(1)
    return (squares / (4 * np.sqrt(3) * area)).mean() - 1


def run_shape_optimisation(case: MeshPDECase, mesh: pm.Mesh, folder: Path, resume: bool,
                           on_step: OnStep) -> Result:
    """Adam on the vertex positions through the differentiable Poisson solve."""
    if mesh.dim != 2 or mesh.cell_dim != 2:
        raise ValueError("pde.name 'shape_optimisation' needs a planar triangle mesh "
                         f"(got points of dimension {mesh.dim} and {mesh.cell_dim}D cells)")
    from ..mesh_bridge import poisson_solve

    spec = case.optimisation
    fixed = mesh.boundary_vertices()
    a, b = spec.target_semi_axes
    peak = case.pde.source.amplitude / (2 / a**2 + 2 / b**2)  # U at the centre
    weights = np.asarray(pm.to_scipy(pm.mass_matrix(mesh)).sum(axis=1)).ravel()
    norm = weights.sum() * peak**2
    device = torch.device(str(mesh.device))  # the bridge's tensors live where the mesh does
    as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float64, device=device)  # noqa: E731
    w = as_tensor(weights)
    f = as_tensor(case.pde.source.values(mesh.points))
    cells = torch.as_tensor(mesh.cells, dtype=torch.long, device=device)
    e1, e2 = (mesh.points[mesh.cells[:, i]] - mesh.points[mesh.cells[:, 0]] for i in (1, 2))
    orientation = torch.sign(as_tensor(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]))
    x = as_tensor(mesh.points).clone().requires_grad_(True)
    adam = torch.optim.Adam([x], lr=spec.lr)
    history: list[dict] = []

    def target(points: torch.Tensor) -> torch.Tensor:
        return peak * (1 - (points[:, 0] / a) ** 2 - (points[:, 1] / b) ** 2)

    def terms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        u = poisson_solve(x, mesh, f, fixed)
        match = (w * (u - target(x)) ** 2).sum() / norm
        quality = mean_ratio_quality(x, cells, orientation)
        return match + spec.quality_weight * quality, match, quality, u

    def save(step: int) -> None:
        state = {"step": step, "points": x.detach().clone(), "adam": adam.state_dict(),
                 "history": history}
        atomic_write(folder / CHECKPOINT, lambda p: torch.save(state, p))

    start, last_checkpoint = 0, None
    if resume:
        state = read_checkpoint(folder)
        with restoring(folder), torch.no_grad():
            x.copy_(state["points"])
            adam.load_state_dict(state["adam"])
        start, history, last_checkpoint = state["step"], state["history"], state["step"]
    else:
        save(0)
        write_text(folder / CONFIG, case.to_yaml())
        last_checkpoint = 0
    clock = time.perf_counter()
    for step in range(start, spec.steps):
        adam.zero_grad()
        loss, match, quality, _ = terms()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(step + 1, last_checkpoint)
        loss.backward()
        if not adam_can_step(loss.detach(), [x]):
            raise NonFiniteLossError(step + 1, last_checkpoint)
        adam.step()
        record = {"step": step + 1, "loss": loss.item(), "loss_match": match.item(),
                  "loss_quality": quality.item()}  # the updates done; the loss before the last
        history.append(record)
        on_step(record)
        if (step + 1) % spec.checkpoint_every == 0 or step + 1 == spec.steps:
            save(step + 1)
            last_checkpoint = step + 1
    with torch.no_grad():
        loss, match, quality, u = terms()
    moved = pm.Mesh(x.detach().cpu().numpy(), mesh.cells)
    extent = np.ptp(moved.points, axis=0)
    boundary = moved.points[fixed]
    drop = history[0]["loss_match"] / float(match)
    summary = {
        "vertices": mesh.n_vertices, "steps": spec.steps, "loss_initial": history[0]["loss"],
        "loss_final": float(loss), "match_initial": history[0]["loss_match"],
        "match_final": float(match), "quality_final": float(quality), "loss_drop": drop,
        "loss_drop_target": spec.loss_drop, "passed": drop >= spec.loss_drop,
        "aspect": float(extent[0] / extent[1]), "aspect_target": a / b,
        "boundary_off_ellipse": float(np.abs(np.hypot(boundary[:, 0] / a,
                                                      boundary[:, 1] / b) - 1).max()),
        "step_s": (time.perf_counter() - clock) / max(spec.steps - start, 1),
    }
    exact = target(torch.as_tensor(moved.points)).numpy()
    u = u.cpu().numpy()
    return Result(moved, {"u": u, "exact": exact, "error": u - exact},
                  summary, history)


RUNNERS = {"poisson": run_poisson, "heat": run_heat, "geodesic": run_geodesic,
           "shape_optimisation": run_shape_optimisation}


def write_results(case: MeshPDECase, result: Result, folder: Path) -> None:
    """solution.vtu, fields.h5, metrics.json and the figures."""
    pm.write_mesh(folder / "solution.vtu", result.mesh, point_data=result.fields)
    attrs = {"case": case.name, "pde": case.pde.name, "config": case.to_yaml()}
    if result.frames is None:
        ds = mesh_dataset(result.mesh, result.fields, attrs=attrs, metadata=FIELD_METADATA)
    else:
        times, frames = result.frames
        ds = mesh_dataset(result.mesh, {"u": frames}, times, attrs, FIELD_METADATA)
    write_dataset(ds, folder / "fields.h5")
    metrics = {"case": case.name, "summary": result.summary, "history": result.history}
    write_text(folder / "metrics.json", json.dumps(metrics, indent=1))
    if not case.output.figures:
        return
    plot_checks(case, result, folder)
    if result.mesh.cell_dim != 2:
        return
    from .figures import plot_losses, plot_mesh_fields

    fields = dict(result.fields)
    if "source" in fields and not np.any(fields["source"]):  # -lap u = 0: nothing to show
        del fields["source"]
    titles = {name: FIELD_METADATA[name][0] for name in fields if name in FIELD_METADATA}
    if result.frames is not None:
        times = result.frames[0]
        titles |= {"u0": f"u at t = {times[0]:.4g} s", "u": f"u at t = {times[-1]:.4g} s"}
    units = {name: FIELD_METADATA.get(name, ("", "1"))[1] for name in fields}
    plot_mesh_fields(result.mesh.points, result.mesh.cells, fields, folder / "solution.png",
                     f"{case.name}: {headline(result.summary)}", units, titles)
    if case.pde.name == "shape_optimisation":
        plot_losses(result.history, folder / "losses.png", case.name)


def plot_checks(case: MeshPDECase, result: Result, folder: Path) -> None:
    """The figures of the checks against exact facts: ``convergence.png`` (Poisson errors
    against h over two or more meshes) and ``decay.png`` (the decay rate of a heat run
    without Dirichlet parts)."""
    from .figures import plot_convergence, plot_decay

    summary = result.summary
    if case.pde.name == "poisson" and summary.get("order_l2") is not None:
        expected = ({"l2": summary["order_l2_expected"], "h1": summary["order_h1_expected"]}
                    if "order_l2_expected" in summary else None)
        plot_convergence(summary["levels"], {"l2": summary["order_l2"],
                                             "h1": summary["order_h1"]},
                         expected, folder / "convergence.png",
                         f"{case.name}: errors against h\n{_orders(summary)}")
    if "decay_rate" in summary:
        plot_decay([r["t"] for r in result.history], [r["deviation"] for r in result.history],
                   summary["decay_rate_expected"], summary["decay_rate_tolerance"],
                   folder / "decay.png", f"{case.name}: {_decay(summary)}")


def _orders(summary: dict) -> str:
    """``observed orders L2 1.28 (expected 4/3), H1 0.82 (expected 2/3)``; the expected
    ones where the summary holds them."""
    from .figures import fraction

    parts = []
    for norm in ("l2", "h1"):
        text = f"{norm.upper()} {summary[f'order_{norm}']:.2f}"
        if f"order_{norm}_expected" in summary:
            text += f" (expected {fraction(summary[f'order_{norm}_expected'])})"
        parts.append(text)
    return "observed orders " + ", ".join(parts)


def _decay(summary: dict) -> str:
    """``decay rate 1.0308 /s (expected 1.0307, relative error 8.7e-05, tolerance 1e-03:
    pass)``."""
    verdict = "pass" if summary["passed"] else "fail"
    return (f"decay rate {summary['decay_rate']:.4f} /s (expected "
            f"{summary['decay_rate_expected']:.4f}, relative error "
            f"{summary['decay_rate_error']:.1e}, tolerance "
            f"{summary['decay_rate_tolerance']:.0e}: {verdict})")


def build_mesh(case: MeshPDECase, h: float | None = None) -> pm.Mesh:
    """The case's mesh (edge length ``h`` for a generated domain; default its own) on the
    case's device."""
    mesh = case.mesh.build(h)
    return mesh if case.device == "cpu" else mesh.to(case.device)


def run(case: MeshPDECase, folder: Path, resume: bool = False,
        on_step: OnStep | None = None) -> dict:
    """Build the mesh, run the PDE's runner, write the run folder; returns the summary."""
    mesh = build_mesh(case)
    for spec in case.boundary:  # a part the mesh lacks is named before anything is written
        _part(mesh, spec.part)
    result = RUNNERS[case.pde.name](case, mesh, folder, resume, on_step or (lambda r: None))
    result.summary = {"pde": case.pde.name, **result.summary}
    write_results(case, result, folder)
    return result.summary


def describe(case: MeshPDECase) -> str:
    """One line: the PDE, the mesh and the amount of work."""
    mesh = case.mesh
    where = mesh.file or (f"{mesh.domain} level {mesh.level}" if mesh.domain == "icosphere"
                          else f"{mesh.domain} h={mesh.h:g}")
    work = {"heat": lambda: f"{case.time.steps} steps of dt={case.time.dt:g} "
                            f"theta={case.time.theta:g}",
            "shape_optimisation": lambda: f"{case.optimisation.steps} Adam steps",
            }.get(case.pde.name, lambda: f"{1 + len(case.refine)} mesh(es)")()
    return f"{case.pde.name} on {where}, {work}"


def headline(summary: dict) -> str:
    """The figures that say whether the run is right."""
    pde = summary["pde"]
    if pde == "poisson" and "rel_l2" in summary:
        orders = f", {_orders(summary)}" if summary.get("order_l2") is not None else ""
        return (f"relative L2 error {summary['rel_l2']:.2e}, H1 {summary['rel_h1']:.2e} on the "
                f"case's mesh (h {summary['h']:.3g}){orders}, residual "
                f"{summary['residual']:.1e}")
    if pde == "poisson":
        return f"residual {summary['residual']:.1e} on {summary['vertices']} vertices"
    if pde == "heat":
        decay = (f", {_decay(summary)}" if "decay_rate" in summary
                 else f", decay rate not checked: {summary['decay_rate_skipped']}"
                 if "decay_rate_skipped" in summary else "")
        return f"t={summary['t']:g}: mass drift {summary['mass_drift']:.1e}{decay}"
    if pde == "geodesic":
        error = (f", max error {summary['max_error']:.3e}" if "max_error" in summary else "")
        return f"max distance {summary['max_distance']:.4f}{error}"
    verdict = "reached" if summary["passed"] else "missed"
    return (f"match loss {summary['match_initial']:.2e} -> {summary['match_final']:.2e} "
            f"(drop {summary['loss_drop']:.0f}x, target {summary['loss_drop_target']:g}x: "
            f"{verdict}), aspect {summary['aspect']:.3f} (target {summary['aspect_target']:.3f}), "
            f"boundary off the ellipse by {summary['boundary_off_ellipse']:.1e}")


KIND = CaseKind(
    name="mesh_pde",
    summary="Poisson, heat, geodesics and shape optimisation on triangle/tetrahedral meshes",
    schema=MeshPDECase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.total_steps,
    checkpoint=CHECKPOINT,
)
