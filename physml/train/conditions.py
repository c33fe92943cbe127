r"""Initial and boundary conditions of a physics-informed problem, as data.

Each condition holds its value as a number or a function of the inputs ``X`` (a tensor of
shape ``(n, d_in)``, columns ordered space then time, returning ``(n, k)`` for the ``k``
outputs it constrains, or ``(n, 1)`` broadcast to them), the boundary parts it lives on
(by name; None: the whole boundary), and the outputs it constrains (None: all).

As a soft constraint a condition draws points (:meth:`draw`, NumPy, float64) with what its
loss needs beside them (targets, normals or partner points, one array), and its loss is the
mean-squared mismatch over those points (:meth:`loss`):

* :class:`Initial`: $u(x, t_0) = u_0(x)$; :class:`InitialRate`: $\partial u/\partial t
  (x, t_0) = v_0(x)$ (the second initial condition of an equation second order in time).
* :class:`Dirichlet`: $u = g$ on the parts (``per_part``: the same number of points on each
  part and the sum of the per-part means, as Wang, Teng & Perdikaris weigh box edges).
* :class:`Neumann`: $\partial u/\partial n = g$; :class:`Robin`: $\alpha u + \beta\,\partial
  u/\partial n = g$ (outward normal $n$).
* :class:`Periodic`: $u = u$ at the partner point across the box along one input, and by
  default $\partial u/\partial x_i$ too (an equation second order in that input needs both).

Initial conditions and Dirichlet conditions on the whole boundary can instead be exact, by the
problem's output transform (:meth:`~physml.train.problems.PINNProblem.constrain`).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..dtypes import scalar_constant
from ..geometry import Box
from .derivatives import gradient

Value = float | Callable[[torch.Tensor], torch.Tensor]


def evaluate_value(value: Value, X: torch.Tensor, k: int) -> torch.Tensor:
    """A condition's value at ``X``: ``(n, k)`` (a number or ``(n, 1)`` broadcast). Shapes
    follow ``X``'s through tensor operations only, so a traced or exported model takes any
    number of rows."""
    if callable(value):
        out = value(X)
        out = torch.as_tensor(out, dtype=X.dtype, device=X.device)
        if out.dim() == 1:
            out = out[:, None]
        return out.expand(-1, k)  # (n, 1) broadcast, (n, k) as it is: no branch to trace
    return (X[:, :1] * 0 + scalar_constant(value)).expand(-1, k)  # float64 in an export


def _targets(value: Value, X: np.ndarray, k: int) -> np.ndarray:
    with torch.no_grad():
        return evaluate_value(value, torch.as_tensor(X, dtype=torch.float64), k).numpy()


@dataclass(frozen=True)
class Condition:
    """Fields shared by every condition: ``value`` (a number, or a function of the inputs
    ``X`` (n, d_in) giving (n, k) or (n, 1)), ``on`` (the boundary parts by name; None: the
    whole boundary), ``fields`` (the outputs it constrains by name; None: all), ``name`` (the
    loss term's name; two conditions of one kind need their own)."""

    value: Value = 0.0
    on: tuple[str, ...] | None = None
    fields: tuple[str, ...] | None = None
    name: str = "boundary"

    def __post_init__(self) -> None:
        """One name given as ``on`` or ``fields`` is that name (``on="left"`` was read letter
        by letter: "boundary part 'l' does not exist")."""
        for key in ("on", "fields"):
            if isinstance(getattr(self, key), str):
                object.__setattr__(self, key, (getattr(self, key),))

    def columns(self, problem) -> list[int]:
        """Indices of the outputs this condition constrains."""
        names = problem.outputs if self.fields is None else self.fields
        unknown = [f for f in names if f not in problem.outputs]
        if unknown:
            raise ValueError(f"condition {self.name!r}: unknown field {unknown[0]!r}; "
                             f"allowed: {', '.join(problem.outputs)}")
        twice = [f for i, f in enumerate(names) if f in names[:i]]
        if twice:
            raise ValueError(f"condition {self.name!r}: field {twice[0]!r} listed twice in "
                             f"fields {list(names)}")
        return [problem.outputs.index(f) for f in names]

    def check(self, problem) -> None:
        """Refuse unknown parts and fields (when the problem is built)."""
        self.columns(problem)
        problem.geometry.require_parts(self.on, where=f"condition {self.name!r}")

    def _boundary_points(self, problem, n, rng, stratified=False):
        """Space-time points on the parts: times first, then the space points."""
        t = None
        if problem.time is not None:
            t = rng.uniform(*problem.time, (n * (len(self._parts(problem)) if stratified else 1),
                                            1))
        P, index = problem.geometry.sample_boundary(n, rng, self.on, stratified)
        X = P if t is None else np.hstack([P, t])
        return X, P, index

    def _parts(self, problem):
        return problem.geometry.require_parts(self.on)

    def draw(self, problem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Points ``(N, d_in)`` and the data the loss needs beside them."""
        raise NotImplementedError

    def loss(self, problem, field, X: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """Mean-squared mismatch; ``field(X)`` is the constrained network output ``(N, m)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class _AtStart(Condition):
    """A condition on the interior at the start of the time interval $t_0$."""

    def check(self, problem) -> None:
        self.columns(problem)
        if problem.time is None:
            raise ValueError(f"condition {self.name!r}: an initial condition needs a time "
                             "interval")

    def draw(self, problem, n, rng):
        P = problem.geometry.sample_interior(n, rng)
        X = np.hstack([P, np.full((len(P), 1), problem.time[0])])
        return X, _targets(self.value, X, len(self.columns(problem)))


@dataclass(frozen=True)
class Initial(_AtStart):
    """$u(x, t_0) = $ ``value`` (a function of the space columns of ``X``)."""

    name: str = "initial"

    def loss(self, problem, field, X, data):
        return (field(X)[:, self.columns(problem)] - data).square().mean()


@dataclass(frozen=True)
class InitialRate(_AtStart):
    """$\\partial u/\\partial t\\,(x, t_0) = $ ``value`` (a function of the space columns of
    ``X``): with :class:`Initial`, the initial data of an equation second order in time (the
    wave equation's initial velocity). Always a loss term."""

    name: str = "initial_rate"

    def loss(self, problem, field, X, data):
        _, gradients = _column_gradients(field, X, self.columns(problem))
        return (torch.cat([g[:, -1:] for g in gradients], dim=1) - data).square().mean()


@dataclass(frozen=True)
class Dirichlet(Condition):
    """$u = $ ``value`` on the parts ``on``; ``per_part``: draw the same number of points on each
    part and sum the per-part means (as Wang, Teng & Perdikaris weigh box edges), instead of
    points in proportion to each part's measure."""

    per_part: bool = False

    def draw(self, problem, n, rng):
        X, _, _ = self._boundary_points(problem, n, rng, self.per_part)
        return X, _targets(self.value, X, len(self.columns(problem)))

    def loss(self, problem, field, X, data):
        mean = (field(X)[:, self.columns(problem)] - data).square().mean()
        return len(self._parts(problem)) * mean if self.per_part else mean

    def covers(self, problem) -> bool:
        """Whether it fixes every output on the whole boundary (so it can be exact)."""
        every_part = self.on is None or set(self.on) == set(problem.geometry.part_names)
        return every_part and len(self.columns(problem)) == len(problem.outputs)


def _column_gradients(field, X, columns):
    """Each constrained output ``(N, 1)`` at the points ``X`` and its gradient in the inputs
    ``(N, d_in)`` (space columns first, time last)."""
    X = X.detach().requires_grad_(True)
    out = field(X)
    values = [out[:, c : c + 1] for c in columns]
    return values, [gradient(u, X) for u in values]


def _normal_derivative(problem, field, X, normals, columns):
    """$\\partial u/\\partial n$ of each constrained output, ``(N, k)``, and $u$."""
    values, gradients = _column_gradients(field, X, columns)
    dim = problem.geometry.dim
    dn = [(g[:, :dim] * normals).sum(1, keepdim=True) for g in gradients]
    return torch.cat(dn, dim=1), torch.cat(values, dim=1)


@dataclass(frozen=True)
class Robin(Condition):
    """$\\alpha u + \\beta\\,\\partial u/\\partial n = $ ``value`` on the parts ``on``."""

    alpha: float = 1.0
    beta: float = 1.0
    name: str = "robin"

    def __post_init__(self) -> None:
        """Refuse coefficients that are no finite number, or both zero (a condition on
        nothing).

        Raises:
            ValueError: naming the coefficient.
        """
        super().__post_init__()
        for key in ("alpha", "beta"):
            coefficient = getattr(self, key)
            if isinstance(coefficient, bool) or not isinstance(coefficient, numbers.Real) \
                    or not np.isfinite(coefficient):
                raise ValueError(f"condition {self.name!r}: {key} must be a finite number, "
                                 f"got {coefficient!r}")
        if self.alpha == 0 and self.beta == 0:
            raise ValueError(f"condition {self.name!r}: alpha u + beta du/dn = value with "
                             "alpha = beta = 0 constrains nothing; give alpha or beta nonzero")

    def draw(self, problem, n, rng):
        X, P, index = self._boundary_points(problem, n, rng)
        normals = problem.geometry.normals(P, index, self.on)
        target = _targets(self.value, X, len(self.columns(problem)))
        return X, np.hstack([target, normals])

    def loss(self, problem, field, X, data):
        k = len(self.columns(problem))
        dn, u = _normal_derivative(problem, field, X, data[:, k:], self.columns(problem))
        return (self.alpha * u + self.beta * dn - data[:, :k]).square().mean()


@dataclass(frozen=True)
class Neumann(Robin):
    """$\\partial u/\\partial n = $ ``value`` on the parts ``on`` (Robin with $\\alpha = 0$,
    $\\beta = 1$, neither a parameter: a Robin condition takes them)."""

    alpha: float = field(default=0.0, init=False)
    beta: float = field(default=1.0, init=False)
    name: str = "neumann"


@dataclass(frozen=True)
class Periodic(Condition):
    """$\\partial^k u/\\partial x_i^k$ equal at the partner points across the box along input
    ``axis`` $x_i$ (the geometry must be a box there) for each order $k$ from 0 to
    ``derivatives`` (0: the values only; 1, the default: the values and the first derivatives,
    as an equation second order in $x_i$ needs); no ``value``. The loss (one term) is the sum
    over the orders of the mean squared mismatch.

    Raises:
        ValueError: ``derivatives`` not 0 or 1, or ``on`` given (the pairs are the box's faces
            along ``axis``; ``Periodic("y")`` read ``"y"`` as ``on``).
    """

    value: Value = field(default=0.0, init=False)
    axis: str = "x"
    derivatives: int = 1
    name: str = "periodic"

    def __post_init__(self) -> None:
        if self.on is not None:
            raise ValueError(f"condition {self.name!r}: on={self.on!r} is not read: a periodic "
                             "condition pairs the box's faces along its axis (give axis=, as "
                             "Periodic(axis='y'))")
        super().__post_init__()
        if isinstance(self.derivatives, bool) \
                or not isinstance(self.derivatives, numbers.Integral) or self.derivatives > 1 \
                or self.derivatives < 0:
            raise ValueError(f"condition {self.name!r}: derivatives={self.derivatives!r}; "
                             "allowed: 0 (values only) or 1 (values and first derivatives)")

    def check(self, problem) -> None:
        self.columns(problem)
        if self.axis not in problem.space:
            raise ValueError(f"condition {self.name!r}: axis {self.axis!r} is not a space "
                             f"input; allowed: {', '.join(problem.space)}")
        if not isinstance(problem.geometry, Box):
            raise ValueError(f"condition {self.name!r}: periodic along {self.axis!r} needs a "
                             f"box domain (interval, rectangle, box), not a "
                             f"{type(problem.geometry).__name__}: its pairs are the box's "
                             "opposite faces")

    def draw(self, problem, n, rng):
        """Pairs at the lower and upper bound of ``axis``, other inputs drawn uniformly
        (later inputs first: time, then space); the data holds the partner points."""
        i = problem.inputs.index(self.axis)
        others = [j for j in reversed(range(len(problem.inputs))) if j != i]
        lower = np.empty((n, len(problem.inputs)))
        for j in others:
            lower[:, j] = rng.uniform(*problem.bounds[j], n)
        upper = lower.copy()
        lower[:, i], upper[:, i] = problem.bounds[i]
        return lower, upper

    def loss(self, problem, field, X, data):
        columns = self.columns(problem)
        if self.derivatives == 0:
            return (field(X)[:, columns] - field(data)[:, columns]).square().mean()
        i = problem.inputs.index(self.axis)
        (u, du), (v, dv) = (_column_gradients(field, P, columns) for P in (X, data))
        value = (torch.cat(u, dim=1) - torch.cat(v, dim=1)).square().mean()
        slope = torch.cat([a[:, i : i + 1] - b[:, i : i + 1] for a, b in zip(du, dv)], dim=1)
        return value + slope.square().mean()


def condition_names(conditions: Sequence[Condition]) -> list[str]:
    """The names, refusing duplicates (each names one loss term)."""
    names = [c.name for c in conditions]
    for j, condition in enumerate(conditions):
        if condition.name in names[:j]:
            i = names.index(condition.name)
            kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(condition).__name__).lower()
            default = (f", the default name of {kind} conditions"  # the case files' kind
                       if condition.name == type(condition).name else "")
            raise ValueError(f"conditions[{i}] and conditions[{j}] are both named "
                             f"{condition.name!r}{default}; give one of them its own `name`")
    return names
