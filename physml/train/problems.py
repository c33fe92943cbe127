r"""Physics-informed problems: a residual function over a geometry (plus optional time), with
conditions on named boundary parts, an optional reference, trainable coefficients and
observations. The bundled PDEs are instances of it (:mod:`physml.train.bundled`).

Inputs are rows ``X`` of shape ``(n, d_in)``, the space coordinates then the time; the
network's field has shape ``(n, m)``, one column per output name. The residual function gets
a :class:`~physml.train.derivatives.Derivatives` ``d`` and returns one residual ``(n, 1)``,
or a dict of named residuals (a system)::

    problem = PINNProblem(
        lambda d: d("u", "t") - 0.1 * d.laplacian("u"),
        Disk((0, 0), 1), time=(0, 1),
        conditions=[Initial(lambda X: 1 - X[:, :1] ** 2 - X[:, 1:2] ** 2), Dirichlet(0.0)])

Exact conditions (``hard``): with an initial condition $u_0$ (evaluated at $t_0$) and a
Dirichlet condition $g$ on the whole boundary (its function extends $g$ into the domain), the
output transform is
$u = u_0 + g(x, t) - g(x, t_0) + (t - t_0)\,\varphi(x)\,N$ ($\varphi$: the geometry's
distance function; the $g$ terms vanish for a constant $g$); with only one of them
$u = u_0 + (t - t_0) N$ or $u = g + \varphi N$. The pair is exact only where the data agree,
$u_0 = g(\cdot, t_0)$ on the boundary (checked at :data:`COMPATIBILITY_POINTS` boundary points
when the problem is built): otherwise the transform would hold $u_0$ on the boundary for all
time, so the Dirichlet condition stays a loss term (a heat problem with $u_0 = 1$ and $g = 0$).
A condition's ``fields`` may list the outputs in any order. Every other condition stays a soft
loss term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..dtypes import scalar_constant
from ..geometry import Geometry
from .conditions import Condition, Dirichlet, Initial, condition_names, evaluate_value
from .derivatives import Derivatives
from .sampling import time_span

SPACE_NAMES = ("x", "y", "z")
COMPATIBILITY_POINTS = 256
"""Boundary points at which an exact initial condition and an exact Dirichlet condition must
agree at $t_0$ (to 1e-9 of the data's size) for both to be imposed by the transform."""
Residual = Callable[[Derivatives], "torch.Tensor | Mapping[str, torch.Tensor]"]
Reference = Callable[[list[np.ndarray]], np.ndarray]
"""``reference(axes)``: the field on the grid of ``axes`` (one array per input, in input
order), shape ``(len(axes[-1]), ..., len(axes[0]))`` (time first), plus ``(m,)`` for
``m > 1`` outputs."""


class PINNProblem:
    """A residual over space(-time) with conditions (see the module docstring).

    Args:
        residual: ``residual(d) -> (n, 1)`` tensor or dict of them (a system). ``d`` gives
            by name, each ``(n, 1)``: an output, input or coefficient ``d["u"]``, ``d["x"]``,
            ``d["nu"]``; a partial derivative ``d("u", "t")``, ``d("u", "x", "x")``;
            ``d.laplacian("u")`` over the space inputs, ``d.divergence(("u", "v"))``, and
            ``d.gradient("u")`` ``(n, dim)``. There are no keys such as ``"u_t"``
            (:class:`~physml.train.derivatives.Derivatives`).
        geometry: the space domain (:mod:`physml.geometry`).
        time: $(t_0, t_1)$, or None for a steady problem.
        conditions: :mod:`~physml.train.conditions` objects, each a loss term by its name.
        outputs: names of the network's outputs.
        space: names of the space inputs (default x, y, z).
        reference: a :data:`Reference` (see :func:`exact_reference`), or None: the run then
            reports losses and residuals only.
        coefficients: named modules ``c(X)`` giving a scalar or ``(n, 1)``, available to the
            residual as ``d[name]`` (trainable ones are trained with the network).
        observations: an :class:`~physml.train.observations.Observations` loss term.
        embedding: network input features from ``X`` (default: ``X`` itself).
        periods: period of the solution in each embedded input (None: not periodic).
    """

    def __init__(
        self,
        residual: Residual,
        geometry: Geometry,
        *,
        time: tuple[float, float] | None = None,
        conditions: Sequence[Condition] = (),
        outputs: Sequence[str] = ("u",),
        space: Sequence[str] | None = None,
        reference: Reference | None = None,
        coefficients: Mapping[str, nn.Module] | None = None,
        observations=None,
        embedding: Callable[[torch.Tensor], torch.Tensor] | None = None,
        periods: Sequence[float | None] | None = None,
    ) -> None:
        self.residual_function, self.geometry = residual, geometry
        self.space = tuple(space or SPACE_NAMES[: geometry.dim])
        if len(self.space) != geometry.dim:
            raise ValueError(f"space names {list(self.space)} need {geometry.dim} entries")
        self.time = time_span(time)
        self.inputs = (*self.space, "t") if time is not None else self.space
        self.outputs = tuple(outputs)
        rows = [geometry.bounds] + ([np.array([self.time])] if time is not None else [])
        self.bounds = np.concatenate(rows).astype(np.float64)
        self.conditions = tuple(conditions)
        condition_names(self.conditions)
        for condition in self.conditions:
            condition.check(self)
        self.reference_function = reference
        self.coefficients = nn.ModuleDict(dict(coefficients or {}))
        clash = set(self.coefficients) & {*self.inputs, *self.outputs}
        if clash:
            raise ValueError(f"coefficient {sorted(clash)[0]!r} has the name of an input or "
                             "output")
        self.observations = observations
        if observations is not None:
            observations.check(self)
        self._exact_pair = self._exact_conditions()
        self.embedding = embedding
        self.periods = periods

    def __repr__(self) -> str:
        """One line: the inputs and outputs, the geometry, the time span, the conditions and
        coefficients by name, the number of observed points, and whether a reference is
        given (no arrays)."""
        observed = None if self.observations is None else len(self.observations.points)
        return (f"{type(self).__name__}(inputs={self.inputs}, outputs={self.outputs}, "
                f"geometry={self.geometry!r}, time={self.time}, "
                f"conditions={[c.name for c in self.conditions]}, "
                f"coefficients={list(self.coefficients)}, observations={observed}, "
                f"reference={self.reference_function is not None})")

    # --- names and sizes -------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The input names (space, then ``t``)."""
        return self.inputs

    @property
    def _start(self) -> torch.Tensor | None:
        """The start time as a :func:`~physml.dtypes.scalar_constant`, None for a steady
        problem (read when used: a problem whose ``time`` is changed follows it)."""
        return None if self.time is None else scalar_constant(self.time[0])

    @property
    def output_dim(self) -> int:
        return len(self.outputs)

    @property
    def input_dim(self) -> int:
        """Width of the network's input (of :meth:`embed`)."""
        probe = torch.as_tensor(self.bounds.mean(axis=1)[None], dtype=torch.float64)
        return int(self.embed(probe).shape[1])

    @property
    def input_periods(self) -> tuple[float | None, ...]:
        """Period of the solution in each network input, None where it is not periodic: what
        a periodic network (``model.kind: periodic``) may build in."""
        return tuple(self.periods) if self.periods is not None else (None,) * self.input_dim

    # --- the network's field ---------------------------------------------------------------
    def embed(self, X: torch.Tensor) -> torch.Tensor:
        """Network input features (``X`` unless the problem has an embedding)."""
        return X if self.embedding is None else self.embedding(X)

    def _exact(self) -> tuple[Initial | None, Dirichlet | None]:
        return self._exact_pair

    def _exact_conditions(self) -> tuple[Initial | None, Dirichlet | None]:
        """The initial and the whole-boundary Dirichlet condition the transform can impose
        (the Dirichlet one dropped where it disagrees with the initial one at $t_0$)."""
        initial = next((c for c in self.conditions if isinstance(c, Initial)
                        and len(c.columns(self)) == self.output_dim), None)
        boundary = next((c for c in self.conditions if type(c) is Dirichlet
                         and c.covers(self)), None)
        if initial is not None and boundary is not None and not self._agree(initial, boundary):
            boundary = None
        return initial, boundary

    def _agree(self, initial: Initial, boundary: Dirichlet) -> bool:
        """$u_0 = g(\\cdot, t_0)$ at :data:`COMPATIBILITY_POINTS` boundary points, to 1e-9 of
        the data's size (the largest $|u_0|$, $|g|$ there and at as many interior points: a
        size of the data's own units, so that values of 1e-12 are not all "equal")."""
        rng = np.random.default_rng(0)
        P, _ = self.geometry.sample_boundary(COMPATIBILITY_POINTS, rng)
        inside = self.geometry.sample_interior(COMPATIBILITY_POINTS, rng)
        X = torch.as_tensor(np.hstack([np.vstack([P, inside]),
                                       np.full((len(P) + len(inside), 1), self.time[0])]),
                            dtype=torch.float64)
        with torch.no_grad():
            u0 = self._value(initial, X).numpy()
            g = self._value(boundary, X).numpy()
        size = max(np.abs(u0).max(), np.abs(g).max())
        return bool(np.all(np.abs(u0[: len(P)] - g[: len(P)]) <= 1e-9 * size))

    def _value(self, condition: Initial | Dirichlet, X: torch.Tensor) -> torch.Tensor:
        """A condition's value at ``X`` with its columns in the outputs' order."""
        values = evaluate_value(condition.value, X, self.output_dim)
        order = np.argsort(condition.columns(self))
        return values if (order == np.arange(order.size)).all() else values[:, order]

    def hard_conditions(self) -> set[str]:
        """Names of the conditions the output transform imposes exactly."""
        return {c.name for c in self._exact() if c is not None}

    def constrain(self, X: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Network output -> field with the exact conditions (see the module docstring)."""
        initial, boundary = self._exact()
        if initial is not None:
            t0 = self._start
            at_start = torch.cat([X[:, :-1], torch.zeros_like(X[:, -1:]) + t0], dim=1)
            base = self._value(initial, at_start)
            scale = X[:, -1:] - t0
            if boundary is not None:
                if callable(boundary.value):
                    base = base + self._value(boundary, X) - self._value(boundary, at_start)
                scale = scale * self.geometry.distance(X)
            return base + scale * raw
        if boundary is not None:
            return self._value(boundary, X) + self.geometry.distance(X) * raw
        return raw

    # --- loss terms ------------------------------------------------------------------------
    def coefficient_values(self, X: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every coefficient at ``X`` (scalars or ``(n, 1)``)."""
        return {name: c(X) for name, c in self.coefficients.items()}

    def derivatives(self, X: torch.Tensor, out: torch.Tensor) -> Derivatives:
        return Derivatives(X, out, self.inputs, self.outputs, self.space,
                           self.coefficient_values(X))

    residual_names: tuple[str, ...] = ("residual",)
    """The names a bundled problem's :meth:`residuals` gives its terms (the Lagrangian ones add
    ``characteristic``), for checking a case's loss weights; a system built from a case's
    ``pde`` mapping names them by its keys, and the trainer takes as residual terms whatever
    is not a condition or the observations."""

    def residuals(self, X: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Residual terms by name (``residual`` for a single equation)."""
        r = self.residual_function(self.derivatives(X, out))
        return dict(r) if isinstance(r, Mapping) else {"residual": r}

    def soft_conditions(self, hard: bool) -> list[Condition]:
        """The conditions that are loss terms (all, or those the transform does not impose)."""
        exact = self.hard_conditions() if hard else set()
        return [c for c in self.conditions if c.name not in exact]

    def draw_conditions(self, n: int, rng: np.random.Generator, hard: bool = False
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Points and data of each soft condition by name."""
        return {c.name: c.draw(self, n, rng) for c in self.soft_conditions(hard)}

    def condition_loss(self, name: str, field, X: torch.Tensor, data: torch.Tensor):
        """The soft condition ``name``'s mean-squared mismatch."""
        condition = next(c for c in self.conditions if c.name == name)
        return condition.loss(self, field, X, data)

    # --- evaluation ------------------------------------------------------------------------
    def eval_axes(self, shape: Sequence[int]) -> list[np.ndarray]:
        """Evenly spaced points along each input over the bounding box."""
        if len(shape) != len(self.inputs):
            raise ValueError(f"evaluation shape {list(shape)} needs one count per input "
                             f"({', '.join(self.inputs)})")
        return [np.linspace(a, b, n) for (a, b), n in zip(self.bounds, shape)]

    def reference(self, axes: list[np.ndarray]) -> np.ndarray | None:
        """The reference on the grid of ``axes`` (NaN outside the domain), or None."""
        if self.reference_function is None:
            return None
        values = np.asarray(self.reference_function(axes), dtype=np.float64)
        return np.where(_mask(self, axes).reshape(values.shape[: len(axes)] + (1,) * (
            values.ndim - len(axes))), values, np.nan)

    def inside_grid(self, axes: list[np.ndarray]) -> np.ndarray:
        """Which grid points lie in the domain, grid-shaped (time first)."""
        return _mask(self, axes)

    def checked_reference(self, axes: list[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
        """:meth:`reference` and :meth:`inside_grid` on the grid of ``axes``, the reference
        checked for what would make the relative error meaningless.

        Raises:
            ValueError: no grid point lies in the domain (the message starts with
                ``evaluation.grid:``), the reference is NaN/Inf at a grid point in the domain
                (an exact solution singular there), or zero (to 1e-12) at every one."""
        inside = self.inside_grid(axes)
        size = " x ".join(str(len(a)) for a in axes)
        if not inside.any():
            raise ValueError(f"evaluation.grid: none of the {size} grid points lies inside the "
                             "domain (a grid spans its bounding box, ends included); give more "
                             "points per axis")
        reference = self.reference(axes)
        if reference is None:
            return None, inside
        values = reference[inside]
        if not np.isfinite(values).all():
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise ValueError(f"the reference is NaN/Inf at {bad} point(s) of the {size} "
                             "evaluation grid in the domain: an error against it cannot be "
                             "measured; give one finite on the whole domain")
        if not np.max(np.abs(values)) > 1e-12:
            raise ValueError(f"the reference is zero (to 1e-12) at every point of the evaluation "
                             f"grid (its {size} points fall on its zeros): no relative error can "
                             "be measured; evaluate on another grid")
        return reference, inside


def grid_points(axes: list[np.ndarray]) -> np.ndarray:
    """The points of the grid of ``axes`` as rows ``(N, d_in)`` in input order, the last
    input varying slowest (the grid's arrays are indexed time first)."""
    mesh = np.meshgrid(*reversed(axes), indexing="ij")
    return np.stack(mesh[::-1], axis=-1).reshape(-1, len(axes))


def _mask(problem: PINNProblem, axes: list[np.ndarray]) -> np.ndarray:
    shape = tuple(len(a) for a in reversed(axes))
    P = grid_points(axes)[:, : problem.geometry.dim]
    return problem.geometry.inside(P).reshape(shape)


def exact_reference(solution: Callable[[torch.Tensor], torch.Tensor]) -> Reference:
    """A :data:`Reference` from an exact solution ``solution(X) -> (n, m)`` (float64; one
    output may also come as ``(n,)``, as a condition's value may)."""

    def on_grid(axes):
        X = torch.as_tensor(grid_points(axes), dtype=torch.float64)
        with torch.no_grad():
            values = torch.as_tensor(solution(X), dtype=torch.float64).numpy()
        if values.ndim == 1:
            values = values[:, None]
        shape = tuple(len(a) for a in reversed(axes))
        return values.reshape(shape) if values.shape[-1] == 1 else values.reshape(
            (*shape, values.shape[-1]))

    return on_grid


class Scalar(nn.Module):
    """A scalar coefficient; ``trainable`` makes it a parameter, ``positive`` trains its log.

    Returns a 0-dim tensor for any ``X``.
    """

    def __init__(self, value: float, trainable: bool = False, positive: bool = False) -> None:
        super().__init__()
        if positive and not value > 0:
            raise ValueError(f"a positive coefficient needs a positive value, got {value}")
        self.positive = positive
        raw = torch.tensor(float(np.log(value) if positive else value), dtype=torch.float64)
        if trainable:
            self.raw = nn.Parameter(raw)
        else:
            self.register_buffer("raw", raw)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        value = self.raw.exp() if self.positive else self.raw
        return value.to(X.dtype)

    def value(self) -> float:
        raw = self.raw.detach()
        return float(raw.exp() if self.positive else raw)


class FieldCoefficient(nn.Module):
    r"""A coefficient field $c(X)$ given by a small network of the inputs, ``(n, 1)``;
    ``positive`` makes it $e^{\text{net}(X)}$."""

    def __init__(self, net: nn.Module, positive: bool = False) -> None:
        super().__init__()
        self.net = net
        self.positive = positive

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        value = self.net(X)
        return value.exp() if self.positive else value


def sine(x, amplitude: float, wavenumber: float):
    """$A\\sin(kx)$ for a NumPy array or a tensor (then with $A$ and $k$ as :func:`scalar`)."""
    if isinstance(x, torch.Tensor):
        return scalar_constant(amplitude) * torch.sin(scalar_constant(wavenumber) * x)
    return amplitude * np.sin(wavenumber * x)
