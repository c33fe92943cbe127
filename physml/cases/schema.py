"""The case-file schema: one pydantic model per section, unknown keys refused.

A case reads top-down like the problem statement::

    name: burgers
    pde: {name: burgers, nu: 0.0031831}
    domain: {x: [-1, 1], t: [0, 1]}
    conditions: {initial: {amplitude: -1.0, wavenumber: 3.14159}}
    model: {kind: mlp, width: 32, depth: 6, hard_constraints: true}
    training: {adam: {steps: 2000}, lbfgs: {steps: 2000}, collocation: {points: 4000}}
    evaluation: {every: 500, nx: 256, nt: 101, threshold: 1.0e-2}
    seed: 0

Dotted overrides (``training.adam.steps=100``) are applied to the raw mapping before
validation, so they are checked like the file itself. ``variant=NAME`` applies the case's
``variants.NAME`` overrides first (e.g. a reduced CPU variant of a GPU-scale case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..datasets.spec import describe_error, read_yaml_mapping


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PDESpec(_Section):
    """The PDE and its physical parameters."""

    name: Literal["burgers", "convection", "helmholtz", "heat", "allen_cahn"]
    nu: float | None = Field(None, ge=0, description="viscosity / diffusivity")
    beta: float | None = Field(None, description="advection speed (convection)")
    nu_diffusion: float = Field(0.0, ge=0, description="diffusivity (convection-diffusion)")
    a1: float = 1.0
    a2: float = 4.0
    k: float = 1.0

    @model_validator(mode="after")
    def _parameters_present(self) -> PDESpec:
        needed = {"burgers": "nu", "convection": "beta", "heat": "nu", "allen_cahn": "nu"}.get(
            self.name
        )
        if needed and getattr(self, needed) is None:
            raise ValueError(f"{self.name} needs pde.{needed}")
        return self


class DomainSpec(_Section):
    """Bounds of the space-time (or 2D space) domain."""

    x: tuple[float, float]
    t: tuple[float, float] | None = None
    y: tuple[float, float] | None = None

    @field_validator("x", "t", "y")
    @classmethod
    def _non_empty(cls, bounds):
        if bounds is not None and not bounds[1] > bounds[0]:
            raise ValueError(f"upper bound must exceed lower bound, got {list(bounds)} (empty)")
        return bounds


class InitialSpec(_Section):
    """``sine``: $u_0 = A\\sin(kx)$; ``cosh_sinh`` (2D, the TENG problems):
    $u_0 = A\\cosh(3\\sin x)\\sinh(\\sin y)$."""

    kind: Literal["sine", "cosh_sinh"] = "sine"
    amplitude: float = 1.0
    wavenumber: float = 1.0


class ConditionsSpec(_Section):
    initial: InitialSpec = Field(default_factory=InitialSpec)


class ModelSpec(_Section):
    kind: Literal["mlp", "fourier", "modified", "periodic"] = "mlp"
    width: int = Field(32, gt=0)
    depth: int = Field(4, gt=0)
    activation: Literal["tanh", "sin", "gelu", "silu"] = "tanh"
    hard_constraints: bool = True
    periodic_embedding: bool = True
    fourier_scale: float = Field(1.0, gt=0)
    harmonics: int = Field(1, gt=0, description="periodic embedding frequencies")


class CollocationSpec(_Section):
    points: int = Field(4000, gt=0)
    boundary_points: int = Field(256, gt=0)
    sampler: Literal["uniform", "sobol"] = "sobol"
    resample_every: int = Field(0, ge=0, description="steps between redraws (0: fixed points)")
    resample: Literal["residual", "random"] = "residual"


class AdamSpec(_Section):
    steps: int = Field(1000, ge=0)
    lr: float = Field(1e-3, gt=0)
    decay: float = Field(1.0, gt=0, le=1, description="learning-rate factor per 1000 steps")


class LBFGSSpec(_Section):
    steps: int = Field(0, ge=0)
    lr: float = Field(1.0, gt=0)
    history: int = Field(50, gt=0)


class BalancerSpec(_Section):
    kind: Literal["fixed", "annealing", "config"] = "fixed"
    weights: dict[str, float] = Field(default_factory=dict)
    every: int = Field(10, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class TENGSpec(_Section):
    """Time-evolving natural gradient settings (:class:`physml.train.teng.TENG`)."""

    scheme: Literal["euler", "heun", "rk4"] = "heun"
    dt: float = Field(5e-3, gt=0)
    points: int = Field(1024, gt=0, description="sample points per time step")
    subsample: int = Field(1536, gt=0, description="parameters updated per iteration")
    iterations: int = Field(5, gt=0, description="Gauss-Newton iterations per fit")
    solver: Literal["auto", "gram", "dense"] = "auto"
    initial_points: int = Field(2048, gt=0)
    initial_iterations: int = Field(400, gt=0, description="iterations of the initial fit")
    checkpoint_every: int = Field(50, gt=0, description="time steps between checkpoints")


class TrainingSpec(_Section):
    method: Literal["pinn", "lpinn", "teng"] = "pinn"
    teng: TENGSpec = Field(default_factory=TENGSpec)
    collocation: CollocationSpec = Field(default_factory=CollocationSpec)
    adam: AdamSpec = Field(default_factory=AdamSpec)
    lbfgs: LBFGSSpec = Field(default_factory=LBFGSSpec)
    balancer: BalancerSpec = Field(default_factory=BalancerSpec)
    checkpoint_every: int = Field(500, gt=0)


class EvaluationSpec(_Section):
    every: int = Field(500, gt=0)
    nx: int = Field(256, ge=8)
    nt: int = Field(101, ge=2)
    threshold: float | None = Field(None, gt=0, description="relative L2 error to reach")
    times: list[float] = Field(default_factory=list, description="times reported (TENG)")


class OutputSpec(_Section):
    folder: str = "runs"
    figures: bool = True


class CaseSpec(_Section):
    """A whole case file."""

    name: str
    description: str = ""
    pde: PDESpec
    domain: DomainSpec
    conditions: ConditionsSpec = Field(default_factory=ConditionsSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    seed: int = Field(0, ge=0)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named sets of dotted overrides (variant=NAME)"
    )
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _method_fits_pde(self) -> CaseSpec:
        method, pde = self.training.method, self.pde.name
        allowed = {
            "pinn": ("burgers", "convection", "helmholtz"),
            "lpinn": ("burgers", "convection"),
            "teng": ("heat", "allen_cahn", "burgers"),
        }[method]
        if pde not in allowed:
            raise ValueError(
                f"training.method {method!r} supports pde.name {', '.join(allowed)}, not {pde!r}"
            )
        if method == "teng":
            if self.model.kind != "periodic":
                raise ValueError("training.method 'teng' needs model.kind 'periodic'")
            lower = [self.domain.x[0]] + ([self.domain.y[0]] if self.domain.y else [])
            if any(bound != 0 for bound in lower) or (
                self.domain.y and self.domain.y[1] != self.domain.x[1]
            ):
                raise ValueError("training.method 'teng' needs domain.x = domain.y = [0, L]")
        return self

    @model_validator(mode="after")
    def _domain_fits_pde(self) -> CaseSpec:
        time_dependent = self.pde.name != "helmholtz"
        if time_dependent and self.domain.t is None:
            raise ValueError(f"domain.t is required for {self.pde.name}")
        if self.conditions.initial.kind == "cosh_sinh" and self.domain.y is None:
            raise ValueError("conditions.initial.kind 'cosh_sinh' is 2D: domain.y is required")
        if not time_dependent and self.domain.y is None:
            raise ValueError("domain.y is required for helmholtz")
        return self

    @property
    def total_steps(self) -> int:
        """Optimisation steps (PINN, LPINN) or time steps over ``domain.t`` (TENG)."""
        if self.training.method == "teng":
            return round((self.domain.t[1] - self.domain.t[0]) / self.training.teng.dt)
        return self.training.adam.steps + self.training.lbfgs.steps

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` entries (values parsed as YAML) in a nested mapping."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key.subkey=value")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return raw


def load_case(path: str | Path, overrides: list[str] | None = None) -> CaseSpec | BaseModel:
    """Read, override and validate a case file, with one clear error naming the key.

    A file with ``kind: thermomigration`` is a phase-field case
    (:class:`~physml.cases.thermomigration_schema.ThermomigrationCase`); any other is a
    training case (:class:`CaseSpec`).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; expected a case file (physml cases lists "
                         "them)")
    if not path.is_file():
        raise ValueError(f"case file {str(path)!r} does not exist")
    overrides = list(overrides or [])
    raw = read_yaml_mapping(path, "case")
    for item in [o for o in overrides if o.startswith("variant=")]:
        name = item.partition("=")[2]
        variants = raw.get("variants") or {}
        if name not in variants:
            allowed = ", ".join(variants) or "none defined"
            raise ValueError(f"case {path}: unknown variant {name!r}; allowed: {allowed}")
        overrides.remove(item)
        overrides[:0] = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                         for key, value in variants[name].items()]
    raw = apply_overrides(raw, overrides)
    spec: type[BaseModel] = CaseSpec
    if raw.get("kind") == "thermomigration":
        from .thermomigration_schema import ThermomigrationCase

        spec = ThermomigrationCase
    try:
        return spec.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"case {path}: {describe_error(err, spec)}") from None
