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
import re
import types
import typing
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

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

SPEC_FOLDER = Path(__file__).parent / "specs"

AbsolutePath = Annotated[str, AfterValidator(lambda file: str(Path(file).expanduser().resolve()))]
"""A file's path made absolute (read from the working folder), so that a recorded spec or case
(a dataset's ``spec.yaml``, a run's ``config.yaml``) names it wherever it is read again."""


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the safe loader keeps
    the last one and drops the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:  # the keys written here; a merge (<<) may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:  # a list or mapping as a key: the safe loader's own refusal
                break
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping (keep one)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e-5, without a point, as text; YAML 1.2 and every user of the field
# read it as a number
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str):
    """The value of a YAML document (safe types only); a key given twice in one mapping is a
    ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The YAML mapping in ``path``, or a ValueError naming the file (``what``: spec, case):
    not YAML, not UTF-8, nested deeper than the parser's recursion allows, or not a mapping."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        where = err.problem_mark or err.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        context = f" ({err.context} at line {err.context_mark.line + 1})" if (
            err.context and err.context_mark) else ""
        raise ValueError(f"{what} {path}: not valid YAML{at}: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{what} {path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path}: not UTF-8 text (byte {err.start}); save the file as "
                         f"UTF-8") from None
    except RecursionError:
        raise ValueError(f"{what} {path}: its lists and mappings are nested too deeply to "
                         "read (a few hundred levels at most)") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {path}: expected a mapping of keys to values")
    return raw


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


def load_spec(spec: str | Path, samples: int | None = None) -> SampledSpec:
    """Read and validate a spec; then ``samples`` overrides its sample count (the file itself
    must be valid first, its own ``samples`` included). A spec with a ``mesh`` section is a
    :class:`~physml.datasets.mesh_spec.MeshDatasetSpec`, else a :class:`DatasetSpec`.

    Raises:
        ValueError: one message naming the file (or ``--samples``), the key and what is allowed.
    """
    path = resolve_spec_path(spec)
    raw = read_yaml_mapping(path, "spec")
    model: type[BaseModel] = DatasetSpec
    if "mesh" in raw:  # fields on a mesh (physml.datasets.mesh_spec)
        from .mesh_spec import MeshDatasetSpec as model
    elif "systems" in raw:  # a dataset of linear systems (physml.datasets.linear_systems)
        from .linear_systems import LinearSystemSpec as model
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


def annotation_types(annotation: object) -> list[type]:
    """The classes an annotation admits, through Optional, unions, Annotated and containers
    (``list[int] | None`` -> int, NoneType; a model is one class, not its fields)."""
    if isinstance(annotation, type):
        return [annotation]
    return [t for arg in typing.get_args(annotation) for t in annotation_types(arg)]


def describe_error(err: ValidationError, root: type[BaseModel], skip: int = 0) -> str:
    """The first problem of a validation error as 'key: message (got value)'. The key leaves
    out the tags pydantic adds for a union's members: a value no member takes is named with
    what the union allows, one that a member takes with that member's problem. An unknown key
    is named with the keys allowed in its section of ``root``, and so is one given beside a
    missing key (a misspelt required key). ``skip`` leading parts of the error's location are
    dropped (the tag of a discriminated union)."""
    errors = [{**error, "loc": error["loc"][skip:]} for error in err.errors()]
    first = errors[0]
    while True:  # a value a union refused: the member that took it and found a problem in it
        keys, unions = _union_tags(first["loc"], root)
        tag = len(first["loc"]) - 1
        if tag not in unions or not _mismatch(first):
            break
        inside = [e for e in errors if e["loc"][:tag] == first["loc"][:tag] and len(
            e["loc"]) > tag and not (len(e["loc"]) == tag + 1 and _mismatch(e))]
        if not inside:
            *others, last = dict.fromkeys(_kind_of(a) for a in unions[tag])
            kinds = f"{', '.join(others)} or {last}" if others else last
            return _keyed(".".join(map(str, keys)), f"Input should be {kinds}", first["input"])
        first = inside[0]
    key = ".".join(str(p) for p in keys)
    loc = first["loc"]
    if first["type"] in ("boolean_for_number", "number_for_boolean"):  # keyed inside a section
        return f"{key}.{first['msg']}" if key else first["msg"]
    if first["type"] == "unknown_key":  # raised by a section, which knows not its own key
        key = ".".join([*map(str, keys), first["ctx"]["key"]])
        return f"unknown key {key!r}; allowed: {first['ctx']['allowed']}"
    if first["type"] == "extra_forbidden":
        return f"unknown key {key!r}; allowed: {', '.join(_allowed_keys(loc, root))}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        unknown = [e["loc"][-1] for e in errors
                   if e["type"] == "extra_forbidden" and e["loc"][:-1] == loc[:-1]]
        if unknown:
            names = ", ".join(repr(str(name)) for name in unknown)
            message += (f" (unknown key{'s' * (len(unknown) > 1)} {names} given; allowed: "
                        f"{', '.join(_allowed_keys(loc, root))})")
    return _keyed(key, message, first.get("input"))


def _keyed(key: str, message: str, received: object) -> str:
    """'key: message (got value)'; a mapping, or a value the message already gives, is not
    shown again."""
    shown = "" if isinstance(received, dict) or f"got {received!r}" in message else (
        f" (got {received!r})")
    return f"{key}: {message}{shown}" if key else f"{message}{shown}"


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """The keys allowed in the section of ``root`` that holds the key at ``loc``."""
    models = [root]
    for part in loc[:-1]:
        owners = [m for m in models if part in m.model_fields]
        if owners:  # a section: the models its annotation admits
            models = [t for m in owners
                      for t in annotation_types(m.model_fields[part].annotation)
                      if issubclass(t, BaseModel)]
        else:  # a union's tag or a list index: the members that tag names, if any
            models = [m for m in models if any(
                part in typing.get_args(f.annotation) for f in m.model_fields.values())
            ] or models
    return list(dict.fromkeys(name for m in models for name in m.model_fields))


def _alternatives(annotation: object) -> list:
    """The members of a union annotation, Annotated and None left out (``str | dict[str, str]
    | None`` -> str, dict[str, str]); any other annotation is its only member."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) if arg is not type(None)
                for a in _alternatives(arg)]
    return [annotation]


def _inside(annotation: object, part: object) -> list:
    """The annotation of ``part`` (a field, a mapping's key, a list's index) within
    ``annotation``; none where ``annotation`` has no such part."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part)
        return [] if field is None else [field.annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return [args[1]]
    return [args[0]] if origin in (list, tuple) and isinstance(part, int) else []


def _union_tags(loc: tuple, root: type[BaseModel]) -> tuple[list, dict[int, list]]:
    """The keys in an error location ``loc`` under ``root``, and its other parts: the tags
    pydantic adds after the key of a value that a union's members refused (``pde.str`` for
    ``pde: str | dict[str, str]``), as {index in ``loc``: the union's members}."""
    annotations, keys, unions = [root], [], {}
    for i, part in enumerate(loc):
        members = [_alternatives(a) for a in annotations]
        if any(len(m) > 1 for m in members):
            unions[i] = annotations = [a for m in members for a in m]
            continue
        keys.append(part)
        annotations = [inner for m in members for a in m for inner in _inside(a, part)]
    return keys, unions


def _mismatch(error: dict) -> bool:
    """Whether ``error`` says its value is not of the type its annotation takes (not that a
    value of that type breaks a rule)."""
    kind = error["type"]
    return kind.endswith(("_type", "_parsing")) or kind == "literal_error"


def _kind_of(annotation: object) -> str:
    """What a message calls a value of ``annotation``: a string, a number, a mapping, ..."""
    if typing.get_origin(annotation) is Literal:
        return " or ".join(repr(value) for value in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    names = {str: "a string", int: "a whole number", float: "a number", bool: "a boolean",
             dict: "a mapping", list: "a list", tuple: "a list"}
    return names.get(typing.get_origin(annotation) or annotation, str(annotation))
