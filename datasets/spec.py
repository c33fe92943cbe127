"""Dataset specs: the YAML files that say what ``physml datasets generate`` builds.

A spec names a standard problem (:mod:`physml.datasets.problems`), the grid (or a mesh:
:mod:`physml.datasets.mesh_spec`), the parameters
(a list sweeps a parameter: every combination gets ``samples`` samples), the saved times, the
random initial condition, the splits and the solver settings::

    pde: burgers1d_pdebench
    grid: [1024]
    parameters: {nu: [0.001, 0.01, 0.1]}
    t_end: 2.0
    n_saves: 201
    initial_condition: {kind: pdebench_sines}
    samples: 100            # per parameter combination
    splits: {train: 0.8, valid: 0.1, test: 0.1}
    shard_size: 10
    seed: 2022

Bundled specs live beside this module in ``specs/`` and can be named without a path.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import typing
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .initial_conditions import FIELD_DIMENSIONS, INITIAL_CONDITIONS
from .problems import PROBLEMS
from .store import SPLITS
from .validation_messages import annotation_types, describe_error
from .yaml_files import read_yaml_mapping

if TYPE_CHECKING:  # both import this module
    from .linear_systems import LinearSystemSpec
    from .mesh_spec import MeshDatasetSpec

SPEC_FOLDER = Path(__file__).parent / "specs"

AbsolutePath = Annotated[str, AfterValidator(lambda file: str(Path(file).expanduser().resolve()))]
"""A file's path made absolute (read from the working folder), so that a recorded spec or case
(a dataset's ``spec.yaml``, a run's ``config.yaml``) names it wherever it is read again."""


class SpecRefused(ValueError):
    """A validated spec's value refused where it is first used, before anything is written: by
    the solver it builds, its initial condition's generator or its mesh. The message names the
    key; the caller that read the spec names the file (``physml datasets generate`` does)."""


class StrictModel(BaseModel):
    """A spec section: unknown keys refused, values frozen, NaN and infinity refused for every
    number, a boolean refused where a number is expected (YAML's ``true`` would otherwise
    count as 1), at any depth of a list, and anything but a boolean where only a boolean is
    (1 would otherwise count as ``true``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue
            admitted = set(annotation_types(field.annotation))
            if bool in admitted <= {bool, type(None)} and not isinstance(value, bool | None):
                raise PydanticCustomError(  # named whole by describe_error
                    "number_for_boolean", "{key}: {value} is not a boolean; true or false is "
                    "expected", {"key": name, "value": repr(value)})
            if not admitted & {int, float} or bool in admitted:
                continue
            named = ({f"{name}.{key}": v for key, v in value.items()} if isinstance(value, dict)
                     else {name: value})
            for where, v in named.items():
                if any(isinstance(x, bool) for x in _leaves(v)):
                    raise PydanticCustomError(  # named whole by describe_error
                        "boolean_for_number", "{key}: {value} is a boolean; a number is expected",
                        {"key": where, "value": repr(v)})
        return data

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys_with_the_kind_s_options(cls, data: object) -> object:
        """An unknown key of a section whose kind decides the options it reads (``unread``:
        a case file's ``KindSection``) is refused with the keys its kind reads, not every
        kind's."""
        unknown = [name for name in data if name not in cls.model_fields] if isinstance(
            data, dict) and hasattr(cls, "unread") else []
        if not unknown:
            return data
        section = cls.model_construct(**{k: v for k, v in data.items() if k in cls.model_fields})
        kind = getattr(section, "option_kind", None)  # None where a key it reads is absent
        if not isinstance(kind, str) or kind not in cls.KIND_OPTIONS:
            return data  # a bad or absent kind: refused as such
        unread = section.unread()
        allowed = ", ".join(name for name in cls.model_fields if name not in unread)
        raise PydanticCustomError("unknown_key", "unknown key {key!r}; allowed: {allowed}",
                                  {"key": str(unknown[0]), "allowed": allowed})


@functools.cache
def options_model(function: Callable[..., Any]) -> type[BaseModel]:
    """A strict model of ``function``'s options: its parameters after ``(grid, rng)``, with
    their annotations (types and ``Field`` ranges) and defaults; no other key, no coercion
    (4.5 is not an int, 1 is not a bool), every number finite."""
    hints = typing.get_type_hints(function, include_extras=True)
    parameters = list(inspect.signature(function).parameters.values())[2:]
    fields = {p.name: (hints[p.name], p.default) for p in parameters}
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    return create_model(f"{function.__name__}_options", __config__=config, **fields)


class InitialConditionSpec(StrictModel):
    """A random initial field: ``kind``, a generator of :attr:`generators`, and its options."""

    generators: ClassVar[dict[str, Callable[..., Any]]] = INITIAL_CONDITIONS
    kind: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        if kind not in cls.generators:
            raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(cls.generators)}")
        return kind

    @field_validator("options")
    @classmethod
    def _fit_the_generator(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself was refused
            return options
        model = options_model(cls.generators[kind])
        try:
            model.model_validate(options)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            takes = ", ".join(
                f"{name} ({info.annotation.__name__})" for name, info in model.model_fields.items()
            )
            problem = (
                f"unknown option {key!r}"
                if first["type"] == "extra_forbidden"
                else f"{key}={first['input']!r}: {first['msg']}"
            )
            raise ValueError(f"{problem}; {kind} takes {takes}") from None
        return options


class SolverSpec(StrictModel):
    """``scheme`` (or "auto"), ``cfl`` (the step as a fraction of the stable one),
    ``tolerance`` (with implicit diffusion, ``imex``: the bound on a step-doubling estimate of
    the error over the first save interval, relative to max|u0|; see
    :func:`~physml.datasets.grid_samples.step_plan`) and ``dtype``."""

    scheme: str | None = None
    cfl: float = Field(0.5, gt=0, le=1)
    tolerance: float = Field(1e-3, gt=0, lt=1)
    dtype: Literal["float32", "float64"] = "float64"


class SplitSpec(StrictModel):
    train: float = Field(0.8, ge=0, le=1)
    valid: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        total = self.train + self.valid + self.test
        if abs(total - 1) > 1e-9:
            terms = " + ".join(
                f"{name} {getattr(self, name):g}"
                + ("" if name in self.model_fields_set else " (default)")
                for name in SPLITS
            )
            raise ValueError(f"{terms} = {total:g}; they must sum to 1")
        return self


Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A dataset's base seed: NumPy seeds ``default_rng([seed, sample])`` with 64-bit words."""


class SampledSpec(StrictModel):
    """What every dataset spec does with its ``parameters`` (a list of several values sweeps a
    parameter: every combination gets ``samples`` samples, each with the combination as a
    per-sample coordinate), ``samples``, ``splits``, ``shard_size`` and ``seed``.

    The fields are declared by each spec, so that they are listed (in messages and in the
    resolved YAML) in the order a reader expects for that spec."""

    @field_validator("parameters", mode="before", check_fields=False)
    @classmethod
    def _finite_values(cls, parameters: Any) -> Any:
        for name, value in parameters.items() if isinstance(parameters, dict) else ():
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ValueError(f"{name}: an empty list sweeps nothing; give at least one value")
            for item in values:
                number = isinstance(item, int | float) and not isinstance(item, bool)
                if not (number and math.isfinite(item)):
                    raise ValueError(
                        f"{name}={value!r}: every value must be a finite number (got {item!r})"
                    )
        return parameters

    def parameter_grid(self) -> list[dict[str, float]]:
        """Every combination of the swept parameters (lists), in spec order."""
        names = list(self.parameters)
        values = [v if isinstance(v, list) else [v] for v in self.parameters.values()]
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]

    def swept_parameters(self) -> list[str]:
        """The parameters that take more than one value over the dataset (per-sample ones)."""
        return [k for k, v in self.parameters.items() if isinstance(v, list) and len(set(v)) > 1]

    def split_sizes(self) -> dict[str, int]:
        """Samples per split and parameter combination, by largest remainders: each split
        gets the whole part of its share of ``samples``, and the samples left go one each to
        the largest fractional parts (ties to the earlier of train, valid, test). Never
        negative, a fraction of 0 gets none, and the sizes sum to ``samples``. The fractions
        are read as the decimals they print as (0.7 is 7/10), so ties are exact."""
        shares = {name: self.samples * Fraction(repr(getattr(self.splits, name)))
                  for name in SPLITS}
        sizes = {name: math.floor(share) for name, share in shares.items()}
        left = self.samples - sum(sizes.values())
        by_remainder = sorted(SPLITS, key=lambda name: -(shares[name] - sizes[name]))
        for name in by_remainder[:left]:
            sizes[name] += 1
        return sizes

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class DatasetSpec(SampledSpec):
    """A validated grid dataset spec (see the module docstring)."""

    pde: str
    grid: list[int] = Field(min_length=1, max_length=3)
    parameters: dict[str, float | list[float]] = Field(default_factory=dict)
    t_end: float = Field(gt=0)
    n_saves: int = Field(ge=2)
    initial_condition: InitialConditionSpec
    samples: int = Field(gt=0)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    shard_size: int = Field(16, gt=0)
    seed: Seed = 0
    solver: SolverSpec = Field(default_factory=SolverSpec)
    storage_dtype: Literal["float32", "float64"] = "float32"

    @property
    def summary(self) -> str:
        """What is solved where, for progress messages."""
        return f"{self.pde} on {self.grid}"

    @field_validator("pde")
    @classmethod
    def _known_pde(cls, pde: str) -> str:
        if pde not in PROBLEMS:
            raise ValueError(f"unknown PDE {pde!r}; allowed: {', '.join(PROBLEMS)}")
        return pde

    @field_validator("grid")
    @classmethod
    def _positive_cells(cls, grid: list[int]) -> list[int]:
        if any(n < 1 for n in grid):
            raise ValueError(f"cell counts must be positive, got {grid}")
        return grid

    @model_validator(mode="after")
    def _consistent_with_problem(self) -> DatasetSpec:
        problem = PROBLEMS[self.pde]
        if len(self.grid) != problem.ndim:
            raise ValueError(f"grid: {self.pde} needs {problem.ndim} cell count(s)")
        kind = self.initial_condition.kind
        if problem.ndim not in FIELD_DIMENSIONS[kind]:
            fitting = [k for k, dims in FIELD_DIMENSIONS.items() if problem.ndim in dims]
            made = "/".join(f"{d}D" for d in FIELD_DIMENSIONS[kind])
            raise ValueError(
                f"initial_condition.kind: {kind} makes {made} fields; {self.pde} is "
                f"{problem.ndim}D (kinds for {problem.ndim}D: {', '.join(fitting)})"
            )
        allowed = problem.solver.parameter_names
        for name in self.parameters:
            if name not in allowed:
                raise ValueError(
                    f"parameters: {self.pde} has no parameter {name!r}; "
                    f"allowed: {', '.join(allowed)}"
                )
        return self


def resolve_spec_path(spec: str | Path) -> Path:
    """A spec path, or the bundled spec of that name (``burgers1d`` -> specs/burgers1d.yaml)."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.exists():
        raise ValueError(f"spec {str(spec)!r} is not a file (a folder or a device); give the "
                         f"spec's YAML file")
    bundled = SPEC_FOLDER / f"{spec}.yaml"
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(p.stem for p in SPEC_FOLDER.glob("*.yaml")))
    raise ValueError(f"spec file {str(spec)!r} does not exist (bundled specs: {names})")


def load_spec(
    spec: str | Path, samples: int | None = None
) -> DatasetSpec | MeshDatasetSpec | LinearSystemSpec:
    """Read and validate a spec; then ``samples`` overrides its sample count (the file itself
    must be valid first, its own ``samples`` included). A spec with a ``mesh`` section is a
    :class:`~physml.datasets.mesh_spec.MeshDatasetSpec`, one with a ``systems`` section a
    :class:`~physml.datasets.linear_systems.LinearSystemSpec`, else a :class:`DatasetSpec`.

    Raises:
        ValueError: one message naming the file (or ``--samples``), the key and what is allowed.
    """
    path = resolve_spec_path(spec)
    raw = read_yaml_mapping(path, "spec")
    model: type[DatasetSpec | MeshDatasetSpec | LinearSystemSpec] = DatasetSpec
    if "mesh" in raw:  # fields on a mesh (physml.datasets.mesh_spec)
        from .mesh_spec import MeshDatasetSpec

        model = MeshDatasetSpec
    elif "systems" in raw:  # a dataset of linear systems (physml.datasets.linear_systems)
        from .linear_systems import LinearSystemSpec

        model = LinearSystemSpec
    try:
        validated = model.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"spec {path}: {describe_error(err, model)}") from None
    if samples is None:
        return validated
    try:
        return model.model_validate({**raw, "samples": samples})
    except ValidationError as err:
        raise ValueError(f"--samples={samples}: {describe_error(err, model)}") from None


def _leaves(value: object) -> list[object]:
    """The items of ``value`` and of the lists in it, at any depth (``value`` itself if it is
    not a list)."""
    if not isinstance(value, list | tuple):
        return [value]
    return [leaf for item in value for leaf in _leaves(item)]
