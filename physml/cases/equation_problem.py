"""A physics-informed problem from the expressions of a case file (``kind: equation``): the
geometry, the residuals, the conditions, the reference, the coefficients and the observations,
each built from its section with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..dtypes import scalar_constant
from ..expressions import CONSTANTS, compile_expression, derivative_symbols, parse
from ..geometry import Ball, Box, Difference, Intersection, Polygon, Union
from ..models import MLP
from ..train.conditions import Dirichlet, Initial, InitialRate, Neumann, Periodic, Robin
from ..train.observations import read_observations, read_variable
from ..train.problems import FieldCoefficient, PINNProblem, Scalar, exact_reference
from .pinn_training import check_loss_options

CONDITION_KINDS = {"initial": Initial, "initial_rate": InitialRate, "dirichlet": Dirichlet,
                   "neumann": Neumann, "robin": Robin, "periodic": Periodic}


def build_geometry(spec, key: str = "domain.geometry"):
    """The geometry of a ``ShapeSpec`` (recursively for CSG)."""
    kind = spec.kind
    if kind in ("union", "intersection", "difference"):
        if spec.a is None or spec.b is None:
            raise ValueError(f"{key}: kind {kind!r} needs 'a' and 'b'")
        operation = {"union": Union, "intersection": Intersection, "difference": Difference}
        a, b = build_geometry(spec.a, f"{key}.a"), build_geometry(spec.b, f"{key}.b")
        try:
            return operation[kind](a, b)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None
    dimension = {"interval": 1, "rectangle": 2, "disk": 2}.get(kind)
    corner = "centre" if kind in ("disk", "ball") else "lower"
    given = getattr(spec, corner, None)
    if dimension is not None and given is not None and len(given) != dimension:
        raise ValueError(f"{key}: kind {kind!r} is {dimension}-D, but {corner} has "
                         f"{len(given)} entries ('box' and 'ball' take any dimension)")
    try:
        if kind in ("interval", "rectangle", "box"):
            return Box(_need(spec, "lower", key), _need(spec, "upper", key), spec.names)
        if kind in ("disk", "ball"):
            return Ball(_need(spec, "centre", key), _need(spec, "radius", key),
                        spec.name or "boundary")
        if kind == "mesh":
            from ..geometry.mesh_domain import MeshDomain

            return MeshDomain(_need(spec, "mesh", key).build())
        return Polygon(_need(spec, "vertices", key), spec.names)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def _need(spec, field: str, key: str):
    value = getattr(spec, field)
    if value is None:
        raise ValueError(f"{key}.{field} is required for kind {spec.kind!r}")
    return value


class _Expression:
    """A parsed expression as a function of a ``Derivatives`` or of inputs ``X``."""

    def __init__(self, text, allowed, key, parameters):
        self.expr = parse(text, [*allowed, *parameters], key, known=parameters)
        try:
            self.function = compile_expression(self.expr)
        except ValueError as err:
            raise ValueError(f"{key}: {text!r}: {err}") from None
        self.parameters = parameters
        self.names = {s.name for s in self.expr.free_symbols}

    def of_inputs(self, inputs):
        def value(X):
            values = {name: X[:, i : i + 1] for i, name in enumerate(inputs)}
            result = self.function({**self.parameters, **values})
            return result if isinstance(result, torch.Tensor) else (
                torch.zeros_like(X[:, :1]) + scalar_constant(result))  # float64 in an export
        return value


def build_equation_problem(case, solved: Path | None = None, read_data: bool = True,
                           check_parameters: bool = True) -> PINNProblem:
    """The :class:`PINNProblem` of a ``kind: equation`` case; ``solved`` is the file of the
    observations a solver made (``observations.solve``; without it they are left out).
    Without ``read_data``, a problem without reference and observations (a trained field
    needs neither): no data file is read. Without ``check_parameters``, a parameter no
    expression reads, and a loss option of a condition the output transform imposes
    (:func:`~.pinn_training.check_loss_options`), are not refused (for a run folder's
    recorded case, read back as it ran)."""
    geometry = build_geometry(case.domain.geometry)
    space = tuple(case.domain.space or ("x", "y", "z")[: geometry.dim])
    time = tuple(case.domain.time) if case.domain.time is not None else None
    inputs = (*space, "t") if time else space
    outputs = tuple(case.fields)
    _check_names(space, time is not None, outputs, geometry.dim)
    parameters = dict(case.parameters)
    derivatives = derivative_symbols(outputs, inputs)
    read_as_derivative = [f for f in outputs if f in derivatives]
    if read_as_derivative:
        name = read_as_derivative[0]
        field, *wrt = derivatives[name]
        raise ValueError(f"fields: {name!r} reads as the derivative of {field} in "
                         f"{', '.join(wrt)} in an expression; name the field otherwise")
    clash = sorted(set(parameters) & {*inputs, *outputs, *derivatives, *case.coefficients})
    if clash:
        raise ValueError(f"parameters.{clash[0]}: the name of an input, field, derivative or "
                         "coefficient")
    for section, names in (("parameters", parameters), ("fields", outputs),
                           ("coefficients", case.coefficients), ("domain.space", inputs)):
        constant = [name for name in names if name in CONSTANTS]
        if constant:  # an expression would read the name, not the constant, everywhere
            key = f"{section}.{constant[0]}" if isinstance(names, dict) else section
            raise ValueError(f"{key}: {constant[0]!r} is the name of a constant "
                             f"({', '.join(CONSTANTS)}); name it otherwise")
    allowed = [*inputs, *outputs, *derivatives, *case.coefficients]
    equations = case.pde if isinstance(case.pde, dict) else {"residual": case.pde}
    residuals = {}
    for name, text in equations.items():
        key = f"pde.{name}" if isinstance(case.pde, dict) else "pde"
        residuals[name] = _Expression(text, allowed, key, parameters)
        if not residuals[name].names & {*outputs, *derivatives}:
            raise ValueError(f"{key}: {text!r} involves no field ({', '.join(outputs)}) and no "
                             "derivative of one: a residual constrains the fields")
    if len(equations) < len(outputs):
        raise ValueError(f"pde: {len(equations)} equation(s) for the {len(outputs)} fields "
                         f"({', '.join(outputs)}); give at least one equation per field, as a "
                         "mapping of names to expressions")
    read = {n if n in outputs else n.rsplit("_", 1)[0] for r in residuals.values()
            for n in r.names if n in outputs or n in derivatives}
    unread = [f for f in outputs if f not in read]
    if unread:
        raise ValueError(f"pde: the field {unread[0]!r} appears in no equation (neither it nor "
                         "a derivative of it), so nothing determines it; use it in an equation "
                         "or leave it out of fields")
    if not case.conditions and case.observations is None:
        raise ValueError("conditions: none given, and no observations: the pde alone does not "
                         "determine the fields; give boundary conditions (and, with "
                         "domain.time, an initial one) or observations")
    read_symbols = sorted({n for r in residuals.values() for n in r.names if n in derivatives})
    if time:
        _check_time_order(read_symbols, derivatives)
    for kind, in_time, needed in (  # any derivative at least once (twice) in t, mixed ones too
            ("initial", 1, "the initial value of {f}"),
            ("initial_rate", 2, "the initial rate {f}_t as well as {f}")):
        given = {f for c in case.conditions if c.kind == kind for f in (c.fields or outputs)}
        if case.observations is not None:  # data on the field determine it as well
            given.add(case.observations.field)
        undetermined = [(derivatives[n][0], n) for n in read_symbols
                        if time and derivatives[n][0] not in given
                        and derivatives[n][1:].count("t") >= in_time]
        if undetermined:
            field, symbol = undetermined[0]
            raise ValueError(f"pde: {symbol} needs {needed.format(f=field)}: add the "
                             f"condition {{kind: {kind}, value: ..., fields: [{field}]}}")
    second_order = {derivatives[n][0] for n in read_symbols if derivatives[n][1:].count("t") >= 2}
    for i, spec in enumerate(case.conditions):  # a rate of a field first order in t
        over = [f for f in (spec.fields or outputs) if f not in second_order]
        if spec.kind == "initial_rate" and time and over:
            field = over[0]
            raise ValueError(
                f"conditions[{i}]: initial_rate gives {field}_t at the start time, but the pde "
                f"has no derivative of {field} second order in t ({field}_tt): first order in "
                f"t, {field} is determined by its initial value alone, and a rate would "
                "over-determine it; remove the condition" + (
                    f" or give it fields: [{', '.join(f for f in outputs if f in second_order)}]"
                    if second_order else ""))

    # what each residual reads, in sorted order: a set's order follows the process's hash
    # seed, and the order the derivatives are taken in decides how their gradients are summed
    reads = {name: [s for s in sorted(expression.names) if s not in parameters]
             for name, expression in residuals.items()}

    def residual(d):
        out = {}
        for name, expression in residuals.items():
            values = {s: d(*derivatives[s]) if s in derivatives else d[s] for s in reads[name]}
            out[name] = expression.function({**parameters, **values})
        return out

    built = [_condition(spec, i, inputs, parameters) for i, spec in enumerate(case.conditions)]
    conditions, values = [c for c, _ in built], [v for _, read in built for v in read]
    exact = _exact_expressions(case, inputs, outputs, parameters)
    if check_parameters:
        _check_read("parameters", parameters, [*residuals.values(), *values, *(exact or ())],
                    "expression (the pde, the conditions' values, exact)")
        _check_read("coefficients", case.coefficients, residuals.values(), "pde expression")
    for i, spec in enumerate(case.conditions):
        if spec.boundary is not None and "boundary" in spec.KIND_OPTIONS[spec.kind]:
            geometry.require_parts(spec.boundary, where=f"conditions[{i}].boundary")
    if time is not None and not time[1] > time[0]:
        raise ValueError(f"domain.time: {list(time)}: the end must exceed the start")
    for name in case.coefficients:
        if name in (*inputs, *outputs, *derivatives):
            raise ValueError(f"coefficients.{name}: the name of an input, field or derivative")
    coefficients = {name: _coefficient(spec, len(inputs), f"coefficients.{name}")
                    for name, spec in case.coefficients.items()}
    reference = _reference(case, inputs, outputs, exact, solved) if read_data else None
    observations = (_observations(case, inputs, outputs, solved, geometry, conditions)
                    if read_data else None)
    terms = [c.name for c in conditions] + ["observations"] * (case.observations is not None)
    for name in equations:
        if name in terms:
            raise ValueError(f"pde.{name}: the name of a loss term of the conditions or "
                             f"observations ({', '.join(terms)}); give the equation another")
    try:
        problem = PINNProblem(residual, geometry, time=time, conditions=conditions,
                              outputs=outputs, space=space, reference=reference,
                              coefficients=coefficients, observations=observations,
                              periods=_periods(conditions, space, inputs, outputs, geometry))
    except ValueError as err:
        raise ValueError(_condition_message(str(err), conditions)) from None
    _check_evaluation_and_loss(case, inputs, problem, [*equations, *terms], check_parameters)
    return problem


def _check_time_order(symbols, derivatives) -> None:
    """No derivative symbol the pde reads is more than second order in ``t``: the initial
    conditions give $u$ and $u_t$ at the start time (``initial``, ``initial_rate``), not the
    $u_{tt}$ an equation third order in time needs as well.

    Raises:
        ValueError: naming ``pde`` and the symbol.
    """
    for symbol in symbols:
        in_time = derivatives[symbol][1:].count("t")
        if in_time > 2:
            raise ValueError(f"pde: {symbol} is of order {in_time} in t, but the initial "
                             "conditions give a field and its rate (initial, initial_rate) "
                             "only: write an equation at most second order in t")


def _condition_message(message: str, conditions) -> str:
    """A :class:`PINNProblem`'s error about ``conditions``, naming the entry by its index
    (``conditions[1]: ...``) where it names the condition by its name, which may be a
    default the case file never wrote."""
    if message.startswith("conditions["):
        return message
    for i, condition in enumerate(conditions):
        prefix = f"condition {condition.name!r}: "
        if message.startswith(prefix):
            return f"conditions[{i}]: {message.removeprefix(prefix)}"
    return f"conditions: {message}"


def _check_names(space, has_time: bool, outputs, dim: int) -> None:
    """One space name per axis of the ``dim``-dimensional geometry, distinct and not ``t``
    when there is time; fields distinct and not named like an input.

    Raises:
        ValueError: naming ``domain.space`` or ``fields``.
    """
    if len(space) != dim:
        raise ValueError(f"domain.space: {list(space)}: {len(space)} name(s) for a {dim}-D "
                         f"geometry; give {dim}")
    if len(set(space)) != len(space) or (has_time and "t" in space):
        raise ValueError(f"domain.space: {list(space)}: the space inputs need distinct names"
                         + (", none of them t (the time input)" if has_time else ""))
    inputs = {*space, "t"} if has_time else set(space)
    if len(set(outputs)) != len(outputs) or inputs & set(outputs):
        raise ValueError(f"fields: {list(outputs)}: the fields need distinct names, none of "
                         f"them an input ({', '.join(sorted(inputs))})")


def _periods(conditions, space, inputs, outputs, geometry) -> tuple[float | None, ...]:
    """The period of the solution in each input: the box's length along a space axis where a
    periodic condition holds for every field, else None (what ``model.kind: periodic``
    builds in; the problem refuses a periodic condition on any other axis or domain)."""
    periods: list[float | None] = [None] * len(inputs)
    for condition in conditions:
        if isinstance(condition, Periodic) and set(condition.fields or outputs) == set(outputs) \
                and condition.axis in space and isinstance(geometry, Box):
            i = space.index(condition.axis)
            periods[i] = float(np.ptp(geometry.bounds[i]))
    return tuple(periods)


def _check_evaluation_and_loss(case, inputs, problem, terms, strict: bool) -> None:
    """``evaluation.grid`` has one count per input; ``training`` sets options of loss terms
    only (:func:`~.pinn_training.check_loss_options`, of ``problem`` with the loss ``terms``).

    Raises:
        ValueError: naming the key and what is allowed.
    """
    grid = case.evaluation.grid
    if grid is not None and len(grid) != len(inputs):
        raise ValueError(f"evaluation.grid: {len(grid)} count(s) for the inputs "
                         f"{', '.join(inputs)}: give one per input")
    check_loss_options(case.training, problem, case.model.hard_constraints, terms, strict)


def _condition(spec, i, inputs, parameters):
    """The condition ``conditions[i]`` and the expressions it reads: its value's, and a Robin
    condition's ``alpha`` and ``beta`` (constants: numbers or expressions in the parameters).

    Raises:
        ValueError: naming the key (an ``alpha`` reading an input, both coefficients zero).
    """
    key = f"conditions[{i}]"
    kind = CONDITION_KINDS[spec.kind]
    options = {"fields": tuple(spec.fields) if spec.fields is not None else None}
    if spec.name is not None:
        options["name"] = spec.name
    if spec.kind == "periodic":
        return kind(axis=spec.axis or "x", derivatives=spec.derivatives, **options), []
    value = _Expression(spec.value, inputs, f"{key}.value", parameters)
    options["value"] = value.of_inputs(inputs)
    read = [value]
    if "boundary" in spec.KIND_OPTIONS[spec.kind]:
        options["on"] = tuple(spec.boundary) if spec.boundary is not None else None
    if spec.kind == "robin":
        for name in ("alpha", "beta"):
            try:
                read.append(_Expression(getattr(spec, name), (), f"{key}.{name}", parameters))
            except ValueError as err:
                raise ValueError(f"{err} ({name} is a constant: a number or an expression in "
                                 "the parameters)") from None
            options[name] = float(read[-1].function(parameters))
    try:
        return kind(**options), read
    except ValueError as err:  # a robin condition's alpha = beta = 0 from its parameters
        raise ValueError(f"{key}: {err}") from None


def _coefficient(spec, n_inputs, key: str):
    if spec.kind == "field":
        return FieldCoefficient(MLP(n_inputs, 1, width=spec.width, depth=spec.depth),
                                positive=spec.positive)
    try:
        return Scalar(spec.value, trainable=spec.trainable, positive=spec.positive)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def _check_read(section: str, names, expressions, where: str) -> None:
    """Every one of ``names`` (the case's ``parameters`` or ``coefficients``) is read by one of
    ``expressions``: one none reads is a misspelt name or a leftover (a coefficient would be
    trained for nothing).

    Raises:
        ValueError: naming ``<section>.<name>`` and ``where`` such names are read.
    """
    read = set().union(*(e.names for e in expressions if e is not None))
    unread = [name for name in names if name not in read]
    if unread:
        raise ValueError(f"{section}.{unread[0]}: read by no {where}; use it there or remove "
                         "it")


def _exact_expressions(case, inputs, outputs, parameters):
    """The expressions of ``exact``, one per field in the fields' order (None without it)."""
    if case.exact is None:
        return None
    texts = case.exact if isinstance(case.exact, dict) else {outputs[0]: case.exact}
    missing = [f for f in outputs if f not in texts]
    if missing:
        raise ValueError(f"exact: no expression for field {missing[0]!r}")
    extra = [f for f in texts if f not in outputs]
    if extra:
        raise ValueError(f"exact.{extra[0]}: not a field; the fields are "
                         f"{', '.join(outputs)}")
    expressions = [_Expression(texts[f], inputs, f"exact.{f}" if isinstance(case.exact,
                               dict) else "exact", parameters) for f in outputs]
    if all(e.expr.is_zero for e in expressions):
        raise ValueError("exact: zero everywhere, so no relative error can be measured; "
                         "leave exact out (the run then reports the residual)")
    return expressions


def _reference(case, inputs, outputs, exact, solved):
    """The reference: the exact solution (its expressions ``exact``), a reference file or
    the solver-made observations (``solved``), or None. A file's variable is one field: a
    system (several ``outputs``) is measured against ``exact`` only, and refuses a reference
    file (its solver-made observations are data, not its reference).

    Raises:
        ValueError: a reference file for a system.
    """
    if exact is not None:
        functions = [e.of_inputs(inputs) for e in exact]
        return exact_reference(lambda X: torch.cat([f(X) for f in functions], dim=1))
    if len(outputs) > 1:
        if case.reference is not None:
            raise ValueError(f"reference: a file's variable is one field, and the case has "
                             f"{len(outputs)} ({', '.join(outputs)}); give exact for each "
                             "field, or leave reference out (the run then reports the residual)")
        return None
    if case.reference is not None:
        return data_reference(Path(case.reference.file), case.reference.variable, inputs,
                              "reference")
    if solved is not None:
        return data_reference(solved, case.observations.variable, inputs, "observations")
    return None


def data_reference(path: Path, variable: str, inputs, key: str):
    """A reference read from ``variable`` of an xarray/HDF5 file, linearly interpolated to the
    evaluation grid (dims named like the inputs, ``time`` read as ``t``); extrapolated only
    within half a spacing of the data (from cell centres to the walls).

    Raises:
        ValueError: (when evaluated) the grid reaches further beyond the data.
    """
    data = read_variable(path, variable, inputs, key)

    def on_grid(axes):
        for name, axis in zip(inputs, axes):
            known = np.asarray(data[name].values, dtype=np.float64)
            margin = 0.5 * (np.ptp(known) / max(len(known) - 1, 1)) * (1 + 1e-9)
            if axis.min() < known.min() - margin or axis.max() > known.max() + margin:
                raise ValueError(f"{key}: the evaluation grid spans {name} in [{axis.min():g}, "
                                 f"{axis.max():g}], beyond the data's [{known.min():g}, "
                                 f"{known.max():g}] (its domain is not the case's)")
        values = data.interp({name: axis for name, axis in zip(inputs, axes)},
                             kwargs={"fill_value": "extrapolate"})  # cell centres to walls
        return np.asarray(values.transpose(*reversed(inputs)).values)

    return on_grid


def _observations(case, inputs, outputs, solved, geometry, conditions):
    spec = case.observations
    if spec is None:
        return None
    if spec.field not in outputs:
        raise ValueError(f"observations.field: {spec.field!r} is not a field; allowed: "
                         f"{', '.join(outputs)}")
    if spec.solve is not None:
        if case.domain.time is None or case.domain.time[0] != 0:
            raise ValueError("observations.solve needs domain.time starting at 0")
        if solved is None:
            _check_solved_problem(spec.solve, spec.field, geometry, conditions)
            return None
    path = solved if spec.solve is not None else spec.file
    return read_observations(path, spec.variable, inputs, spec.points, spec.noise,
                             case.seed if spec.seed is None else spec.seed, spec.field)


def _check_solved_problem(spec, field: str, geometry, conditions) -> None:
    """The solver behind ``observations.solve`` poses the case's problem: its domain is the
    case's and its initial state the case's initial condition (where the case gives one).

    Raises:
        ValueError: naming ``observations.solve`` and what differs.
    """
    from ..datasets.problems import build_solver

    try:
        solver, u0 = build_solver(spec.pde, (spec.nx,), dict(spec.parameters), dtype="float64")
    except (KeyError, ValueError) as err:
        raise ValueError(f"observations.solve: {err}") from None
    lower, upper = solver.grid.lower, solver.grid.upper
    if geometry.dim != len(lower) or not np.allclose(geometry.bounds.T, [lower, upper]):
        raise ValueError(f"observations.solve: {spec.pde} is solved on "
                         f"{[list(b) for b in zip(lower, upper)]}, the case's domain is "
                         f"{geometry.bounds.tolist()}: they must be the same")
    initial = next((c for c in conditions if isinstance(c, Initial)
                    and (c.fields is None or field in c.fields)), None)
    if initial is None:
        return
    centres = solver.grid.coords(0)[:, None]
    X = torch.as_tensor(np.hstack([centres, np.zeros_like(centres)]), dtype=torch.float64)
    given = np.asarray(initial.value(X))[:, 0]
    scale = max(float(np.abs(u0).max()), 1e-300)
    if np.abs(given - np.asarray(u0).reshape(-1)).max() > 1e-6 * scale:
        raise ValueError(f"observations.solve: {spec.pde} starts from its own initial state, "
                         "which the case's initial condition is not: observations of another "
                         "problem")


def solve_observations(spec, time, path: Path) -> None:
    """Run the physml solver ``spec.pde`` (float64, half the stable step) to ``time[1]`` and
    write its trajectory (``spec.n_saves`` states) to ``path``."""
    from ..datasets.problems import PROBLEMS
    from ..io import trajectory_dataset, write_dataset
    from ..train.observations import observation_solver, solve_steps_per_save

    solver, u0 = observation_solver(spec)
    intervals = spec.n_saves - 1
    t_end = time[1]
    save_every = int(solve_steps_per_save(solver.stable_dt(u0), t_end, spec.n_saves))
    n_steps = save_every * intervals
    states = solver.with_dt(t_end / n_steps).rollout(u0, n_steps, save_every)
    times = np.arange(spec.n_saves) * save_every * (t_end / n_steps)
    attrs = {"pde": spec.pde, **spec.parameters, "solver": type(solver).__name__}
    write_dataset(trajectory_dataset(states, times, solver.grid, attrs=attrs,
                                     metadata={"u": PROBLEMS[spec.pde].quantity}), path)
