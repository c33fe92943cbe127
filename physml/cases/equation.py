"""Physics-informed networks for equations written in the case file, ``kind: equation``.

The residuals, conditions, exact solution and coefficients are expressions (parsed by
:mod:`physml.expressions`, no Python evaluated) in the inputs (``x, y, z`` then ``t``), the
fields, their derivatives (``u_x``, ``u_xx``, ``u_t`` ...), the ``parameters`` and the
``coefficients``; a condition's ``value`` reads the inputs and the parameters, a robin
condition's ``alpha`` and ``beta`` the parameters only (constants)::

    kind: equation
    name: heat_disk
    parameters: {h: 2.0}
    domain: {geometry: {kind: disk, centre: [0, 0], radius: 1, name: rim}, time: [0, 1]}
    pde: u_t - (u_xx + u_yy) + exp(-t) * (5 + x^2 + y^2)
    conditions:
      - {kind: initial, value: "1 + x^2 + y^2"}
      - {kind: robin, boundary: [rim], alpha: 2.0, beta: 1.0, value: "(2 + 2*h) * exp(-t)"}
    exact: exp(-t) * (1 + x^2 + y^2)

Run folder: as ``kind: pinn`` (``config.yaml``, ``checkpoint.pt``, ``metrics.json``,
``predictions.h5`` with NaN outside the domain and the domain's mask ``inside``,
``solution.png`` at the last time (and the middle plane in 3D; curves for a steady 1D case),
``losses.png``); ``metrics.json`` carries the history of every scalar coefficient and, for a
system, each field's relative L2 error ``rel_l2_fields`` beside all fields' ``rel_l2`` (the
threshold must hold for every one), ``predictions.h5`` every field coefficient on the
evaluation grid (``coefficient_<name>``), and ``coefficients.png`` draws each trainable scalar
coefficient against the step.
Observations made by a solver (``observations.solve``) are written to ``observations.h5``: the
solved field, and the points drawn from it with their noisy values, the network's data
(``observed_<input>`` and ``observed_<variable>`` along ``observation``, :func:`add_observed`);
without ``exact`` or ``reference``, the solved field is the reference. A trainable
scalar coefficient named as one of that solver's parameters has a known true value
(:func:`true_coefficients`): the summary adds ``true_<name>`` and ``relative_error_<name>``
($|c / c_{true} - 1|$), the headline and ``coefficients.png`` show both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..datasets.memory import refuse_beyond_memory
from ..datasets.mesh_spec import MeshSpec
from ..datasets.spec import AbsolutePath
from ..datasets.store import with_cf_metadata, write_dataset
from ..devices import Stopwatch
from ..models import build_model
from ..threads import apply_threads
from ..train.pinn import PINNTrainer
from ..train.problems import FieldCoefficient, PINNProblem
from .equation_problem import CONDITION_KINDS, build_equation_problem, solve_observations
from .kind import CaseKind, OnStep
from .pinn_training import (
    TrainingSpec,
    plot_training,
    train_in_folder,
    trainer_options,
    training_summary,
)
from .run_folder import (
    FIELD_METADATA,
    KindSection,
    Section,
    evaluation_axes_metadata,
    run_attrs,
    write_metrics,
)
from .sections import (
    CaseBase,
    ModelSpec,
    Seed,
    Threads,
    is_final,
    network_needs,
    point_needs,
    threshold_verdict,
)

Expression = str | float


_BOX = ("lower", "upper", "names")
_BALL = ("centre", "radius", "name")
_CSG = ("a", "b")


class ShapeSpec(KindSection):
    """A domain: a primitive, or a CSG combination of two (``a``, ``b``)."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "interval": _BOX, "rectangle": _BOX, "box": _BOX, "disk": _BALL, "ball": _BALL,
        "polygon": ("vertices", "names"), "mesh": ("mesh",), "union": _CSG,
        "intersection": _CSG, "difference": _CSG}

    kind: Literal["interval", "rectangle", "box", "disk", "ball", "polygon", "mesh", "union",
                  "intersection", "difference"]
    lower: list[float] | None = None
    upper: list[float] | None = None
    centre: list[float] | None = None
    radius: float | None = Field(None, gt=0)
    name: str | None = Field(None, description="boundary part name (disk, ball)")
    vertices: list[tuple[float, float]] | None = None
    names: list[str] | None = Field(None, description="edge names (polygon) or face names "
                                    "(interval, rectangle, box: lower, upper face per axis)")
    mesh: MeshSpec | None = Field(None, description="a mesh file or a generated domain (mesh): "
                                  "its tagged boundary facets are the named parts")
    a: ShapeSpec | None = None
    b: ShapeSpec | None = None


class EquationDomainSpec(Section):
    geometry: ShapeSpec
    time: tuple[float, float] | None = None
    space: list[str] | None = Field(None, description="space input names (default x, y, z)")


class ConditionSpec(KindSection):
    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "initial": ("value",), "initial_rate": ("value",), "dirichlet": ("value", "boundary"),
        "neumann": ("value", "boundary"), "robin": ("value", "boundary", "alpha", "beta"),
        "periodic": ("axis", "derivatives")}  # besides fields and name, which every kind reads

    kind: Literal["initial", "initial_rate", "dirichlet", "neumann", "robin", "periodic"]
    value: Expression = Field(0.0, description="u (initial_rate: u_t at the start time, "
                              "neumann: du/dn, robin: alpha u + beta du/dn)")
    boundary: list[str] | None = Field(None, min_length=1,
                                       description="boundary parts (default: all)")
    fields: list[str] | None = Field(None, min_length=1,
                                     description="the fields it holds for (default: all)")
    alpha: Expression = Field(1.0, description="robin: a number or an expression in the "
                              "parameters (a constant, not a function of the inputs)")
    beta: Expression = Field(1.0, description="robin: as alpha")
    axis: str | None = Field(None, description="input along which a periodic condition holds")
    derivatives: int = Field(1, ge=0, le=1, description="periodic: match u and its "
                             "derivatives along axis up to this order (0: values only)")
    name: str | None = Field(None, description="loss term name (default: from the kind)")

    @model_validator(mode="before")
    @classmethod
    def _recorded_before_derivatives(cls, data: object, info: ValidationInfo) -> object:
        """A periodic condition in a run folder's configuration written before periodic
        conditions matched derivatives (no ``derivatives`` key) is read as it ran: values
        only, so a ``--resume`` names the difference instead of training another loss."""
        if (isinstance(data, dict) and data.get("kind") == "periodic"
                and "derivatives" not in data and (info.context or {}).get("recorded")):
            return {**data, "derivatives": 0}
        return data

    @model_validator(mode="after")
    def _robin_constrains_something(self) -> ConditionSpec:
        if self.kind == "robin" and self.alpha == 0 and self.beta == 0:
            raise ValueError("a robin condition alpha u + beta du/dn = value with alpha = beta "
                             "= 0 constrains nothing; give alpha or beta nonzero")
        return self


class CoefficientSpec(KindSection):
    """A scalar (``value``, ``trainable``) or a field given by a network of the inputs
    (``width``, ``depth``; always trained); ``positive`` trains the logarithm of either."""

    KIND_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "scalar": ("value", "trainable"), "field": ("width", "depth")}

    kind: Literal["scalar", "field"] = "scalar"
    value: float = 1.0
    trainable: bool = False
    positive: bool = False
    width: int = Field(16, gt=0)
    depth: int = Field(2, gt=0)


class ObservationSolveSpec(Section):
    """Observations made by a physml solver (``physml solve`` names and parameters)."""

    pde: str
    parameters: dict[str, float] = Field(default_factory=dict)
    nx: int = Field(512, ge=8)
    n_saves: int = Field(101, ge=2)


class ObservationSpec(Section):
    file: AbsolutePath | None = None
    solve: ObservationSolveSpec | None = None
    variable: str = "u"
    field: str = "u"
    points: int = Field(200, gt=0)
    noise: float = Field(0.0, ge=0, description="Gaussian noise, relative to the RMS value")
    seed: int | None = Field(None, ge=0, description="default: the case's seed")

    @model_validator(mode="after")
    def _one_source(self) -> ObservationSpec:
        if (self.file is None) == (self.solve is None):
            raise ValueError("give observations.file or observations.solve (one of them)")
        return self


class ReferenceFileSpec(Section):
    file: AbsolutePath
    variable: str = "u"


class EquationEvaluationSpec(Section):
    every: int = Field(500, gt=0)
    grid: list[Annotated[int, Field(ge=2)]] | None = Field(
        None, description="points per input, at least 2 (default 64 per space input, 11 in "
        "time)")
    threshold: float | None = Field(None, gt=0)


class EquationCase(CaseBase):
    """A whole ``kind: equation`` case file."""

    refuses_unused_keys: ClassVar[bool] = True

    kind: Literal["equation"] = "equation"
    parameters: dict[str, float] = Field(default_factory=dict)
    domain: EquationDomainSpec
    fields: list[str] = Field(default_factory=lambda: ["u"])
    pde: str | dict[str, str]
    conditions: list[ConditionSpec] = Field(default_factory=list)
    exact: Expression | dict[str, Expression] | None = None
    reference: ReferenceFileSpec | None = None
    coefficients: dict[str, CoefficientSpec] = Field(default_factory=dict)
    observations: ObservationSpec | None = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EquationEvaluationSpec = Field(default_factory=EquationEvaluationSpec)
    seed: Seed = 0
    dtype: Literal["float32", "float64"] = "float32"
    threads: Threads = "auto"

    @field_validator("training")
    @classmethod
    def _pinn_method(cls, training):
        if training.method != "pinn":
            raise ValueError("kind equation trains a PINN: method must be 'pinn'")
        return training

    @model_validator(mode="after")
    def _builds(self, info: ValidationInfo) -> EquationCase:
        """Parse every expression and build the problem now (one message naming the key);
        the data files are read unless the context's ``read_data`` is false, and a recorded
        case (a run folder's) may keep a parameter no expression reads."""
        if self.exact is not None and self.reference is not None:
            raise ValueError("give exact or reference, not both")
        context = info.context or {}
        problem = build_equation_problem(self, read_data=context.get("read_data", True),
                                         check_parameters=not context.get("recorded", False))
        if self.model.kind == "periodic" and not any(problem.input_periods):
            raise ValueError("model.kind: periodic builds in the period of a periodic "
                             "condition that holds for every field ({kind: periodic, axis: "
                             "x} on a box); this case has none")
        shape = evaluation_shape(self, problem)
        if is_final(info):  # the case that runs, not each of its variants
            refuse_beyond_memory(
                _evaluation_needs(shape, len(problem.inputs), len(problem.outputs))
                | network_needs(self.model)
                | point_needs(self.model, self.training.collocation, len(problem.inputs)))
        try:  # on the evaluation grid now: a data file's span, an exact solution's poles
            if is_final(info):
                problem.checked_reference(problem.eval_axes(shape))
        except ValueError as err:
            message = str(err)
            if message.startswith("evaluation.grid:"):
                raise
            if self.exact is not None:
                message = f"exact: {message}"
            elif not message.startswith(("reference:", "observations:")):
                message = f"reference: {message}"
            raise ValueError(message) from None
        return self

    def unused_keys(self) -> set[str]:
        return {"model.periodic_embedding"}  # the other kinds' options: drop_foreign


def build_trainer(case: EquationCase, solved: Path | None = None) -> PINNTrainer:
    """The trainer of ``case``; ``solved``: the file of solver-made observations."""
    torch.manual_seed(case.seed)
    problem = build_equation_problem(case, solved, check_parameters=False)  # checked on load
    spec = case.model
    model = build_model(spec.kind, problem.input_dim, problem.output_dim, width=spec.width,
                        depth=spec.depth, activation=spec.activation,
                        fourier_scale=spec.fourier_scale, harmonics=spec.harmonics,
                        periods=problem.input_periods)
    return PINNTrainer(model, problem, hard_constraints=spec.hard_constraints,
                       eval_shape=evaluation_shape(case, problem), **trainer_options(case, problem))


def evaluation_shape(case: EquationCase, problem: PINNProblem) -> tuple[int, ...]:
    """Points of the evaluation grid along each input: ``evaluation.grid``, or 64 per space
    axis and 11 in time."""
    grid = case.evaluation.grid or [64] * problem.geometry.dim + [11] * (problem.time is not None)
    return tuple(grid)


def _evaluation_needs(shape: tuple[int, ...], inputs: int, outputs: int) -> dict[str, float]:
    """Bytes of an evaluation grid of ``shape``, by the key that sets it, an estimate: float64
    coordinates three times over (the grid's axes spread out, its rows, the network's input)
    and the reference, prediction and error of each output, ``8 (3 inputs + 3 outputs)`` bytes
    a point."""
    points = math.prod(shape)
    return {f"evaluation.grid: {list(shape)} ({points:,} points)":
            8 * (3 * inputs + 3 * outputs) * points}


def data_units(case: EquationCase, solved: Path | None) -> dict[str, str]:
    """The CF units the case's data state: of the observed variable (as ``"field"``) and its
    coordinates, from the observations (``solved``, the file a solver wrote, or the case's
    file), else from the reference file; none without data. A field trained on data carries
    the data's units."""
    sources = [(solved or (case.observations.file if case.observations else None),
                case.observations.variable if case.observations else None)]
    if case.reference is not None:
        sources.append((case.reference.file, case.reference.variable))
    path, variable = next(((p, v) for p, v in sources if p is not None), (None, None))
    if path is None:
        return {}
    with xr.open_dataset(path) as ds:
        data = ds[variable]
        units = {str(name): c.attrs["units"] for name, c in data.coords.items()
                 if "units" in c.attrs}
        if "units" in data.attrs:
            units["field"] = data.attrs["units"]
    return units


INSIDE_LONG_NAME = ("whether the grid point lies in the domain (prediction, reference, error "
                    "and field coefficients are NaN where it does not)")
"""The ``long_name`` of ``predictions.h5``'s ``inside`` mask."""


def results_dataset(case: EquationCase, trainer: PINNTrainer, rel_l2: float | None,
                    units: dict[str, str] | None = None) -> xr.Dataset:
    """Prediction (and reference, error) on the evaluation grid, time first, NaN outside the
    domain, with the boolean mask ``inside`` of the points in it; the axes and the field (of a
    one-field case) in ``units`` where given (:func:`data_units`), else dimensionless."""
    inputs = trainer.problem.inputs
    dims = tuple({"t": "time"}.get(n, n) for n in reversed(inputs))
    coords = dict(zip(dims, reversed(trainer.eval_axes)))
    fields = {"prediction": trainer.prediction()}
    if trainer.reference is not None:
        fields.update(reference=trainer.reference, error=fields["prediction"] - trainer.reference)
    extra = ("field",) if trainer.problem.output_dim > 1 else ()
    if extra:
        coords["field"] = list(trainer.problem.outputs)
    else:  # a scalar coordinate: the figures and readers name the case's own field
        coords["field"] = trainer.problem.outputs[0]
    attrs = run_attrs(case, pde=str(case.pde), **({} if rel_l2 is None else {"rel_l2": rel_l2}))
    variables = {k: (dims + extra, v) for k, v in fields.items()}
    variables["inside"] = (dims, trainer.inside)
    named = ", ".join(trainer.problem.outputs)
    units = units or {}
    # one units attribute covers a system's fields: the data's units name one field only
    field_units = units.get("field", "1") if trainer.problem.output_dim == 1 else "1"
    metadata = {**FIELD_METADATA,
                **{d: (name, units.get(d, "1"))
                   for d, (name, _) in evaluation_axes_metadata(dims).items()},
                "prediction": (f"prediction of {named}", field_units),
                "reference": (f"reference solution {named}", field_units),
                "error": (FIELD_METADATA["error"][0], field_units),
                "inside": (INSIDE_LONG_NAME, "1")}
    for name, values in coefficient_fields(trainer).items():
        variables[f"coefficient_{name}"] = (dims, values)
        metadata[f"coefficient_{name}"] = (f"coefficient field {name} (trained)", "1")
    # time first, then the space inputs in their order (as x, y, z are for any names: the
    # figures draw the last one vertically)
    space = [n for n in inputs if n != "t"]
    ds = xr.Dataset(variables, coords=coords, attrs=attrs).transpose(
        *(["time"] if "time" in dims else []), *space, ...)
    return with_cf_metadata(ds, metadata)


def coefficient_fields(trainer: PINNTrainer) -> dict[str, np.ndarray]:
    """Each field coefficient on the evaluation grid (time first, NaN outside the domain)."""
    out = {}
    for name, coefficient in trainer.problem.coefficients.items():
        if isinstance(coefficient, FieldCoefficient):
            with torch.no_grad():
                values = coefficient(trainer.eval_points).cpu().numpy()[:, 0]
            out[name] = trainer.on_eval_grid(values)
    return out


def solution_snapshot(ds: xr.Dataset) -> xr.Dataset:
    """What :func:`~.figures.plot_solution` draws of a results dataset: the field itself in
    1D and 2D (space, or space and time); beyond that the last time (attribute ``t``) and then
    the middle plane of the first space axis (attribute ``plane``, ``"z = 0.5"``). A system
    keeps all its fields (the ``field`` dimension, last)."""
    while ds["prediction"].ndim - ("field" in ds.dims) > 2:
        if "time" in ds.dims:
            ds = ds.isel(time=-1).assign_attrs(t=float(ds["time"][-1]))
        else:
            axis = ds["prediction"].dims[0]
            middle = ds.sizes[axis] // 2
            ds = ds.isel({axis: middle}).assign_attrs(
                plane=f"{axis} = {float(ds[axis][middle]):.4g}")
    return ds


def run(case: EquationCase, folder: Path, resume: bool = False,
        on_step: OnStep | None = None) -> dict:
    """Train ``case`` in ``folder``, resuming from its checkpoint if asked, and write the run
    folder; returns the summary (:func:`~.pinn_training.training_summary`). Solver-made
    observations are written to ``observations.h5`` first (kept when resumed); a new run
    writes its checkpoint at step 0 before ``config.yaml``
    (:func:`~.pinn_training.train_in_folder`). ``metrics.json`` comes last, after
    ``predictions.h5`` and the figures, its ``wall_s`` read then (the whole run's)."""
    with Stopwatch(case.device) as clock:  # the run's wall_s: to its summary
        threads = apply_threads(case.training.collocation.points, case.threads)
        solved = None
        if case.observations is not None and case.observations.solve is not None:
            solved = folder / "observations.h5"
            if not solved.is_file():
                if on_step is not None:
                    on_step({"status": "solving the observations (Warp compiles its kernels on "
                                       "a first run)"})
                solve_observations(case.observations.solve, case.domain.time, solved)
        trainer = build_trainer(case, solved)
        if solved is not None:
            add_observed(solved, case, trainer.problem)
        train_in_folder(case, trainer, folder, resume, on_step, clock)
        result = training_summary(case, trainer, threads, clock)
        truth = true_coefficients(case)
        if truth:
            result |= identification(result, truth)
        ds = results_dataset(case, trainer, result.get("rel_l2"), data_units(case, solved))
        write_dataset(ds, folder / "predictions.h5")
        plot_training(case, trainer, folder, solution_snapshot(ds))
        trained = trainable_scalars(case)
        if case.output.figures and trained:
            from .verdict_figures import plot_coefficients

            plot_coefficients(trainer.history, trained, truth, folder / "coefficients.png",
                              f"{case.name}: trainable coefficients", case.training.adam.steps)
        result["wall_s"] = clock.read()
        write_metrics(folder, case.name, result, trainer.history)
    return result


def add_observed(path: Path, case: EquationCase, problem: PINNProblem) -> None:
    """Add to the solved field in ``path`` the observations ``problem`` fits, drawn from it
    (once: a resumed run finds them): along the dimension ``observation``, each input's
    coordinate ``observed_<input>`` (``time`` for ``t``) and the noisy values
    ``observed_<variable>`` (attributes ``noise``, relative to the variable's root mean
    square, and ``seed``, the draw's), in the solved field's units."""
    spec, observations = case.observations, problem.observations
    with xr.open_dataset(path) as solved:
        if f"observed_{spec.variable}" in solved:
            return
        solved.load()
    variables = {}
    for k, name in enumerate(problem.inputs):
        dim = {"t": "time"}.get(name, name)
        variables[f"observed_{dim}"] = ("observation", observations.points[:, k], {
            "long_name": f"{dim} of the observed point (a point of the solved grid)",
            "units": solved[dim].attrs["units"]})
    u = solved[spec.variable].attrs
    variables[f"observed_{spec.variable}"] = ("observation", observations.values[:, 0], {
        "long_name": f"observed {u['long_name']}: the solved value plus Gaussian noise of "
                     "standard deviation noise times its root mean square over the grid",
        "units": u["units"], "noise": spec.noise,
        "seed": case.seed if spec.seed is None else spec.seed})
    write_dataset(solved.merge(xr.Dataset(variables)), path)


def trainable_scalars(case: EquationCase) -> list[str]:
    """The names of the case's trainable scalar coefficients, in the case's order."""
    return [name for name, spec in case.coefficients.items()
            if spec.kind == "scalar" and spec.trainable]


def true_coefficients(case: EquationCase) -> dict[str, float]:
    """The true value of each trainable scalar coefficient that the case knows: one named as
    a parameter of the solver that made its observations (``observations.solve``), with the
    value that solver ran with: that section's ``parameters`` entry or else the problem's
    default, times the problem's own scaling (PDEBench's Burgers runs with $\\nu/\\pi$), as
    the observations satisfy the equation with it. A true value of 0 is left out (no relative
    error exists). Empty without solver-made observations."""
    solve = case.observations.solve if case.observations is not None else None
    if solve is None:
        return {}
    from ..datasets.problems import problem

    prob = problem(solve.pde)
    made_with = {**prob.parameters, **solve.parameters}
    truth = {name: float(made_with[name]) * prob.scale.get(name, 1.0)
             for name in trainable_scalars(case) if isinstance(made_with.get(name), int | float)}
    return {name: value for name, value in truth.items() if value != 0}


def identification(result: dict, truth: dict[str, float]) -> dict[str, float]:
    """``true_<name>`` and ``relative_error_<name>`` = $|c / c_{true} - 1|$ for each
    coefficient of ``truth`` whose identified value ``coefficient_<name>`` ``result`` holds."""
    out = {}
    for name, true in truth.items():
        identified = result.get(f"coefficient_{name}")
        if identified is not None:
            out |= {f"true_{name}": true,
                    f"relative_error_{name}": abs(identified / true - 1)}
    return out


def describe(case: EquationCase) -> str:
    pde = case.pde if isinstance(case.pde, str) else "; ".join(case.pde.values())
    kinds = ", ".join(sorted({c.kind for c in case.conditions} & set(CONDITION_KINDS)))
    return (f"{pde} = 0 ({kinds}), PINN, {case.model.kind} {case.model.width}x"
            f"{case.model.depth}, {case.training.adam.steps} Adam + "
            f"{case.training.lbfgs.steps} L-BFGS steps")


def headline(result: dict) -> str:
    """The error (or residual; a system's relative error of all fields together, then each
    field's), each scalar coefficient with, where known, its true value and relative error,
    the steps and the time."""
    coefficients = ""
    for key, value in result.items():
        if not key.startswith("coefficient_"):
            continue
        name = key.removeprefix("coefficient_")
        coefficients += f", {name} = {value:.5g}"
        if f"true_{name}" in result:
            coefficients += (f" (true {result[f'true_{name}']:.4g}, relative error "
                             f"{result[f'relative_error_{name}']:.2%})")
    if "rel_l2" in result:
        fields = ", ".join(f"{name} {value:.2e}"
                           for name, value in result.get("rel_l2_fields", {}).items())
        error = (f"relative L2 error {result['rel_l2']:.3e}{f' ({fields})' if fields else ''}"
                 f"{threshold_verdict(result)}")
    else:
        error = f"residual RMS {result['residual_rms']:.3e} (no reference)"
    return f"{error}{coefficients} after {result['steps']} steps, {result['wall_s']:.0f} s"


KIND = CaseKind(
    name="equation",
    summary="physics-informed network for an equation written in the case (expressions)",
    schema=EquationCase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.training.adam.steps + case.training.lbfgs.steps,
    checkpoint="checkpoint.pt",
)
