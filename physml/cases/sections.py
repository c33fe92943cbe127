"""Sections shared by case kinds: the header every case has (:class:`CaseBase`) and the
problem sections of the physics-informed kinds (``pinn``, ``teng``): PDE, domain, conditions,
model and evaluation. Every number must be finite (see :class:`~.run_folder.Section`). Also
the threshold's verdict every kind reports.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..datasets.memory import refuse_beyond_memory
from ..devices import ALLOWED, is_device_name
from .run_folder import KindSection, OutputSpec, Section, drop_foreign

_NOT_IN_FILE_NAMES = '<>:"/\\|?*'
"""Characters no file name may hold on Windows (``/`` nowhere)."""

_DEVICE_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{port}{n}" for port in ("COM", "LPT")
                                                           for n in "0123456789¹²³")})
"""The device names of Windows: a file name that is one, alone or before a dot (``nul.txt``),
names the device."""


def is_final(info: ValidationInfo) -> bool:
    """Whether a validator sees the case that will run (with its variant and overrides
    applied), not the file as written or one of its variants alone: checks against this
    machine (memory) and costly ones run on that case only."""
    return (info.context or {}).get("final", True)


class CaseBase(Section):
    """Keys every case file has, whatever its ``kind``."""

    kind: str = Field(description="the case kind (physml.cases.registry.KINDS)")
    name: str = Field(min_length=1, description="the run folder's name starts with it")
    description: str = ""
    output: OutputSpec = Field(default_factory=OutputSpec)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named sets of dotted overrides (variant=NAME)"
    )
    device: str = Field("cpu", description="cpu, cuda or cuda:N")

    @field_validator("device")
    @classmethod
    def _a_device(cls, value: str) -> str:
        if not is_device_name(value):
            raise ValueError(f"not a device name; allowed: {ALLOWED}")
        return value

    @field_validator("name")
    @classmethod
    def _a_folder_name(cls, value: str) -> str:
        """A name that starts a run folder's name (``<name>-<YYYYmmdd-HHMMSS>``) on every
        system: Windows refuses control characters and ``< > : " / \\ | ? *`` in a file name,
        and reads a device name before a dot as that device (``nul.v2-…`` is NUL; ``nul-…``
        is a folder)."""
        device, dot, _ = value.partition(".")
        if (value in (".", "..") or any(c in _NOT_IN_FILE_NAMES or c < " " for c in value)
                or (dot and device.upper() in _DEVICE_NAMES)):
            raise ValueError(f"{value!r} cannot start a folder's name on every system: no "
                             f"control character or any of {' '.join(_NOT_IN_FILE_NAMES)}, not "
                             "'.' or '..', and no device name of Windows (CON, PRN, AUX, NUL, "
                             "COM0-COM9, LPT0-LPT9) before a '.'")
        return value

    def unused_keys(self) -> set[str]:
        """Dotted keys that do not apply to this case (another PDE's parameters, another
        network's options); kinds extend it."""
        return set()

    refuses_unused_keys: ClassVar[bool] = False
    """Whether a key of :meth:`unused_keys` set to other than None and its default is refused
    (as :class:`~.run_folder.KindSection` refuses another kind's options) rather than dropped."""

    def unused_option(self, given: dict | None = None) -> str | None:
        """The first key of :meth:`unused_keys` that ``given`` (a raw nested mapping, as an
        override makes; default: this case's own values) sets to other than None and its
        default, as a message naming it; None if there is none or the kind lets them be
        (:attr:`refuses_unused_keys`)."""
        if not self.refuses_unused_keys:
            return None
        for key in sorted(self.unused_keys()):
            *sections, last = key.split(".")
            section, node = self, given
            for name in sections:
                section = getattr(section, name)
                node = node.get(name) if isinstance(node, dict) else None
            value = getattr(section, last) if given is None else (
                node.get(last) if isinstance(node, dict) else None)
            default = type(section).model_fields[last].get_default(call_default_factory=True)
            if value is not None and value != default:
                return f"{key} does not apply to this case (kind {self.kind!r}); remove it"
        return None

    def memory_needs(self) -> dict[str, float]:
        """Bytes a run of this case holds, about, by the keys that set them (``"model.width=32,
        model.depth=4"``); refused beyond this machine's memory when the case that runs is
        validated. Kinds whose sizes are set by their keys say what they hold."""
        return {}

    @model_validator(mode="after")
    def _fits_in_memory(self, info: ValidationInfo) -> CaseBase:
        if is_final(info):
            refuse_beyond_memory(self.memory_needs())
        return self

    @model_validator(mode="after")
    def _no_unused_options(self, info: ValidationInfo) -> CaseBase:
        if (info.context or {}).get("strict_kinds"):
            found = self.unused_option()
            if found:
                raise ValueError(found)
        return self

    def resolved(self) -> dict:
        """The case as it runs: variants resolved (so left out), unset optional keys, the
        keys of :meth:`unused_keys` and the options a section's kind does not read dropped."""
        data = self.model_dump(mode="json", exclude={"variants"}, exclude_none=True)
        drop_foreign(self, data)
        for key in self.unused_keys():
            *sections, last = key.split(".")
            node = data
            for section in sections:
                node = node.get(section, {})
            node.pop(last, None)
        return data

    def to_yaml(self) -> str:
        """The resolved case, as written to a run folder's ``config.yaml``."""
        return yaml.safe_dump(self.resolved(), sort_keys=False)

    def same_run(self, other: CaseBase) -> bool:
        """Whether ``other`` describes the same run (what :meth:`resolved` keeps)."""
        return not self.differences(other)

    def differences(self, other: CaseBase) -> list[str]:
        """The dotted keys whose resolved values differ from ``other``'s (sorted)."""
        mine, theirs = self.flat(), other.flat()
        return sorted(key for key in mine.keys() | theirs.keys()
                      if mine.get(key) != theirs.get(key))

    def flat(self) -> dict[str, object]:
        """The resolved case as ``{dotted key: value}`` (an empty section as its own entry)."""
        def flat(node: object, prefix: str = "") -> dict[str, object]:
            if not isinstance(node, dict):
                return {prefix: node}
            return {k: v for key, value in node.items()
                    for k, v in flat(value, f"{prefix}{key}.").items()} or {prefix: node}

        return {key.rstrip("."): value for key, value in flat(self.resolved()).items()}


def _thread_count(value: object) -> object:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError("must be 'auto' or a whole number of threads >= 1")


Threads = Annotated[Literal["auto"] | PositiveInt, BeforeValidator(_thread_count)]
"""PyTorch threads of a case: ``"auto"`` or a whole number >= 1 (one message for both)."""


Seed = Annotated[int, Field(ge=0, le=2**64 - 1,
                            description="seeds PyTorch and NumPy (whole numbers below 2^64)")]
"""A case's seed: a whole number that PyTorch and NumPy both take (below 2^64)."""


BYTES = 8
"""Bytes of a number in the memory estimates (float64, the larger of the two dtypes)."""

NETWORK_COPIES = 4
"""Copies of the network's parameters training holds, an estimate: the parameters, their
gradient and Adam's two moments."""

EVALUATION_VALUES = 8
"""Numbers held per evaluation point, an estimate: the inputs, the prediction, the reference,
the error and the copies written to the run folder."""

POINT_VALUES_PER_INPUT = 7
"""Numbers held per training point, hidden unit and input, an estimate: the activations and
their derivatives to second order in the inputs, forward and backward (float64 numbers: a
Burgers PINN of 32 x 5, two inputs, measured 11-12.5 KB a point in either dtype, estimated
17.9 KB; the heat-disk case, three inputs, about 16 KB, estimated 16.1 KB)."""


def network_needs(model) -> dict[str, float]:
    """Bytes of a ``model`` section's network (width, depth) with its optimiser state
    (:data:`NETWORK_COPIES`), by the keys that set them."""
    width, depth = model.width, model.depth
    parameters = depth * width * width + (depth + 4) * width
    return {f"model.width={width}, model.depth={depth} (the network)":
            float(parameters) * NETWORK_COPIES * BYTES}


def point_needs(model, collocation, inputs: int) -> dict[str, float]:
    """Bytes of the training points through the network (:data:`POINT_VALUES_PER_INPUT` per
    hidden unit and input), by the keys that set them: ``training.collocation`` and the
    model's size."""
    units = float(model.width) * model.depth * POINT_VALUES_PER_INPUT * inputs * BYTES
    return {f"training.collocation.points={collocation.points}, "
            f"boundary_points={collocation.boundary_points} with model.width={model.width}, "
            f"model.depth={model.depth}": (collocation.points + collocation.boundary_points)
            * units}


LearningRate = Annotated[float, Field(gt=0, le=1e6)]
"""An optimiser's learning rate: > 0 and at most 1e6 (Adam moves a parameter by about lr a step,
so anything larger is a mistyped exponent, and past about 3e37 its first step overflows
float32)."""


PDE_PARAMETERS = {
    "burgers": ("nu",),
    "convection": ("beta", "nu_diffusion"),
    "helmholtz": ("a1", "a2", "k"),
    "heat": ("nu",),
    "allen_cahn": ("nu",),
}
"""The ``pde`` keys each PDE uses (the others are left out of a run's ``config.yaml``)."""

MODEL_OPTIONS = {"fourier_scale": "fourier", "harmonics": "periodic"}
"""``model`` options and the one model kind that uses each."""


class PDESpec(KindSection):
    """The PDE and its physical parameters (each PDE reads those of :data:`PDE_PARAMETERS`)."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = PDE_PARAMETERS

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

    @property
    def option_kind(self) -> str:
        return self.name

    def describe_kind(self) -> str:
        return f"the PDE {self.name!r}"


class DomainSpec(Section):
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


class InitialSpec(KindSection):
    """``sine``: $u_0 = A\\sin(kx)$; ``cosh_sinh`` (2D, the TENG problems):
    $u_0 = A\\cosh(3\\sin x)\\sinh(\\sin y)$."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {"sine": ("wavenumber",),
                                                          "cosh_sinh": ()}

    kind: Literal["sine", "cosh_sinh"] = "sine"
    amplitude: float = 1.0
    wavenumber: float = 1.0

    @field_validator("amplitude")
    @classmethod
    def _not_zero(cls, amplitude: float) -> float:
        if amplitude == 0:
            raise ValueError("must not be 0: u0 = 0 stays 0, and an error relative to it is "
                             "undefined")
        return amplitude


class ConditionsSpec(Section):
    initial: InitialSpec = Field(default_factory=InitialSpec)


class ModelSpec(KindSection):
    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        kind: tuple(k for k, used_by in MODEL_OPTIONS.items() if used_by == kind)
        for kind in ("mlp", "fourier", "modified", "periodic")}

    kind: Literal["mlp", "fourier", "modified", "periodic"] = "mlp"
    width: int = Field(32, gt=0)
    depth: int = Field(4, gt=0)
    activation: Literal["tanh", "sin", "gelu", "silu"] = "tanh"
    hard_constraints: bool = True
    periodic_embedding: bool = True
    fourier_scale: float = Field(1.0, gt=0)
    harmonics: int = Field(1, gt=0, description="periodic embedding frequencies")

    @model_validator(mode="after")
    def _gated_depth(self) -> ModelSpec:
        if self.kind == "modified" and self.depth < 2:
            raise ValueError(f"model.depth={self.depth}: kind 'modified' needs depth >= 2 (a "
                             "first layer and at least one gate)")
        return self


class EvaluationSpec(Section):
    every: int = Field(500, gt=0)
    nx: int = Field(256, ge=8)
    nt: int = Field(101, ge=2, description="points in t (helmholtz: in y)")
    threshold: float | None = Field(None, gt=0, description="relative L2 error to reach")
    times: list[float] = Field(default_factory=list, description="times reported (TENG)")


class PhysicsCase(CaseBase):
    """The problem statement shared by the physics-informed kinds: a PDE on a box (space-time
    or 2D space), its initial condition, the network and the evaluation."""

    refuses_unused_keys: ClassVar[bool] = True

    pde: PDESpec
    domain: DomainSpec
    conditions: ConditionsSpec = Field(default_factory=ConditionsSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    seed: Seed = 0
    threads: Threads = Field(
        "auto", description="PyTorch threads on the CPU; auto: from the problem size "
        "(physml.threads.choose_threads), recorded in metrics.json")

    @model_validator(mode="after")
    def _domain_fits_pde(self) -> PhysicsCase:
        time_dependent = self.pde.name != "helmholtz"
        if time_dependent and self.domain.t is None:
            raise ValueError(f"domain.t is required for {self.pde.name}")
        if not time_dependent and self.domain.y is None:
            raise ValueError("domain.y is required for helmholtz")
        outside = [t for t in self.evaluation.times
                   if self.domain.t is None or not self.domain.t[0] <= t <= self.domain.t[1]]
        if outside:
            raise ValueError(f"evaluation.times {outside} lie outside domain.t "
                             f"{list(self.domain.t) if self.domain.t else '(none)'}")
        return self

    def memory_needs(self) -> dict[str, float]:
        """Bytes the run holds, about, by the keys that set them (``"model.width=32,
        model.depth=4"``): the network's parameters with their optimiser state
        (:data:`NETWORK_COPIES`) and the evaluation grid (:data:`EVALUATION_VALUES`); kinds
        add their training points. Refused beyond this machine's memory."""
        evaluation = self.evaluation
        return {**network_needs(self.model),
                f"evaluation.nx={evaluation.nx}, evaluation.nt={evaluation.nt}":
                float(evaluation.nx) * evaluation.nt * EVALUATION_VALUES * BYTES}

    def unused_keys(self) -> set[str]:
        pde, initial = self.pde.name, self.conditions.initial.kind
        unused = {f"pde.{key}" for keys in PDE_PARAMETERS.values() for key in keys
                  if key not in PDE_PARAMETERS[pde]}
        if pde != "convection":
            unused.add("model.periodic_embedding")
        if initial != "sine":
            unused.add("conditions.initial.wavenumber")
        return unused

    def _require_pde(self, allowed: tuple[str, ...], what: str) -> None:
        if self.pde.name not in allowed:
            raise ValueError(f"{what} supports pde.name {', '.join(allowed)}, "
                             f"not {self.pde.name!r}")


def threshold_passed(error: float | None, threshold: float | None) -> bool | None:
    """Whether ``error <= threshold``: None without a threshold or without an error measured;
    a non-finite error (NaN, +-inf: a measurement gone wrong) does not pass."""
    if threshold is None or error is None:
        return None
    return bool(math.isfinite(error) and error <= threshold)


def threshold_verdict(result: dict) -> str:
    """`` (target 1e-02: reached)`` for a summary with a ``threshold``, else ''."""
    if result["threshold"] is None:
        return ""
    return " (target {:.0e}: {})".format(result["threshold"],
                                         "reached" if result["passed"] else "missed")
