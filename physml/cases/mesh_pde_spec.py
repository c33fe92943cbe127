"""The schema of a ``kind: mesh_pde`` case file: closed-form nodal fields, the boundary
conditions, the PDE and its data, the time and optimisation sections, and
:class:`MeshPDECase`, which checks that they fit the PDE (an example case in
:mod:`~.mesh_pde`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from ..datasets.mesh_spec import MeshSpec
from .run_folder import KindSection, Section
from .sections import CaseBase, LearningRate


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
        """Zero everywhere: a zero amplitude, or a plane wave of wavevector 0."""
        return self.amplitude == 0 or (self.kind == "plane_wave" and not np.any(self.wavevector))

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
    exact: NodalField | None = Field(None, description="exact solution (poisson, geodesic)")
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
    loss_drop: float = Field(100.0, gt=1, description="target factor of the match term, "
                             "match(x0) / match(x_final)")
    checkpoint_every: int = Field(50, gt=0)

    @model_validator(mode="after")
    def _positive_axes(self) -> OptimisationSpec:
        if min(self.target_semi_axes) <= 0:
            raise ValueError(f"target_semi_axes {self.target_semi_axes} must be > 0")
        return self


PDE_KEYS = {"poisson": {"source", "exact"}, "heat": {"initial", "kappa"},
            "geodesic": {"source_point", "exact"}, "shape_optimisation": {"source"}}
"""The keys of ``pde`` each PDE reads (besides ``name``)."""


HEAT_MAX_AMPLITUDE = 1e150
"""The largest |amplitude| of a heat run's initial field and Dirichlet values: its diagnostics
hold the Dirichlet energy $\\tfrac12 u^\\top K u$, a quadratic form, which overflows float64
(1.8e308) once |u| passes about 1e154 (sooner on a large mesh). The heat equation is linear: a
field scaled down gives the same run, scaled."""


_SECTION_OF = {"heat": "time", "shape_optimisation": "optimisation"}
"""The section each PDE that needs one reads (the others refuse it)."""


def _refuse_sections_of_other_pdes(name: str, present: Callable[[str], bool]) -> None:
    """Refuse a section of :data:`_SECTION_OF` that pde.name ``name`` does not read."""
    for pde, section in _SECTION_OF.items():
        if name != pde and present(section):
            raise ValueError(f"the {section} section applies to pde.name {pde!r} only; "
                             f"pde.name {name!r} does not read it")


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

    @model_validator(mode="before")
    @classmethod
    def _no_section_of_another_pde(cls, data: Any) -> Any:
        """:func:`_refuse_sections_of_other_pdes` before the sections' own fields are
        checked, whose message (a required ``time.dt``) would ask for what is then refused;
        a name that is no PDE is left to the field's own message."""
        pde = data.get("pde") if isinstance(data, dict) else None
        name = pde.get("name") if isinstance(pde, dict) else getattr(pde, "name", None)
        if isinstance(name, str) and name in PDE_KEYS:
            _refuse_sections_of_other_pdes(name, lambda section: data.get(section) is not None)
        return data

    @model_validator(mode="after")
    def _sections_fit_pde(self) -> MeshPDECase:
        name = self.pde.name
        if name in _SECTION_OF and getattr(self, _SECTION_OF[name]) is None:
            raise ValueError(f"pde.name {name!r} needs the {_SECTION_OF[name]} section")
        _refuse_sections_of_other_pdes(name, lambda section: getattr(self, section) is not None)
        defaults = MeshPDESpec(name=name)  # keys at their defaults change nothing
        unread = sorted(key for key in MeshPDESpec.model_fields
                        if key != "name" and key not in PDE_KEYS[name]
                        and getattr(self.pde, key) != getattr(defaults, key))
        if unread:
            raise ValueError(f"pde.{unread[0]} does not apply to pde.name {name!r} (it reads "
                             f"{', '.join(sorted(PDE_KEYS[name]))})")
        parts = self.mesh.boundary_parts
        for i, spec in enumerate(self.boundary):
            if parts is not None and spec.part not in ("all", *parts):
                raise ValueError(f"boundary[{i}].part: mesh.domain {self.mesh.domain!r} has no "
                                 f"boundary part {spec.part!r}; allowed: "
                                 f"{', '.join(('all', *parts))}")
            if parts == () and spec.kind == "dirichlet":  # DOMAIN_PARTS: a closed surface
                raise ValueError(f"boundary[{i}].part: mesh.domain {self.mesh.domain!r} is a "
                                 f"closed surface, which has no boundary: part {spec.part!r} "
                                 "holds no vertex to fix; leave out the dirichlet entry")
        if name == "geodesic" and self.boundary:
            raise ValueError("pde.name 'geodesic' takes no boundary conditions (the distance "
                             "from pde.source_point)")
        if name == "heat":
            fields = {"pde.initial": self.pde.initial, **{
                f"boundary[{i}].value": b.value for i, b in enumerate(self.boundary)
                if b.kind == "dirichlet"}}
            for key, field in fields.items():
                if not abs(field.amplitude) <= HEAT_MAX_AMPLITUDE:
                    raise ValueError(
                        f"{key}.amplitude={field.amplitude:g}: a heat run's Dirichlet energy "
                        "1/2 u^T K u is quadratic in u and overflows float64 past |u| ~ 1e154; "
                        f"give |amplitude| <= {HEAT_MAX_AMPLITUDE:g} (the heat equation is "
                        "linear: scale u down)")
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
            raise ValueError("refine needs pde.name 'poisson' on a generated mesh.domain "
                             "(pass refine=[] to leave it out)")
        if any(not h > 0 for h in self.refine):
            raise ValueError(f"refine {self.refine}: edge lengths must be > 0")
        for i, h in enumerate(self.refine):  # the limits of mesh.h, each named by its entry
            try:
                type(self.mesh).model_validate({**self.mesh.model_dump(), "h": h})
            except ValidationError as err:
                reason = err.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"refine[{i}]: {reason.replace('mesh.h=', 'h=')}") from None
        if self.refine and (self.pde.exact is None or self.pde.exact.is_zero):
            raise ValueError("refine needs a non-zero pde.exact: the refine meshes are solved "
                             "for the observed orders of the errors against it")
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
