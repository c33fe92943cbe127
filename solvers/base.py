r"""The shared machinery of the grid solvers: parameters, stability, stepping and rollouts.

A solver advances $u_t = F(u; p)$ on a :class:`~physml.solvers.grid.Grid`, where $p$ are its
physical parameters. Most PDEs of this package are instances of one
convection–diffusion–reaction operator

$$F(u) = -\sum_d \partial_d f_d(u) + \nu\,\Delta u + \rho\, r(u),$$

evaluated by one Warp kernel (:mod:`physml.solvers.operators`); a PDE class only says which
flux $f$ and reaction $r$ it has (``flux_kind``, ``reaction_kind``) and lists its parameters
with their units, ranges and terms (``PARAMETERS``, :mod:`physml.solvers.parameters`). The
stability rates, the parameter checks and the command-line flags follow from these.

Time stepping is explicit Runge–Kutta (:mod:`physml.solvers.timestepping`) or, with
``scheme="imex"``, the $\theta$-method on the diffusion term with the rest explicit:

$$(I - \theta\Delta t\,\nu L)\,u^{n+1} = u^n + \Delta t\,N(u^n) + (1-\theta)\Delta t\,\nu L u^n,$$

solved by conjugate gradients in Warp (Crank–Nicolson for $\theta = 1/2$: second order for pure
diffusion, first order otherwise; $\theta = 1$ is L-stable).

Explicit steps of the convection–diffusion–reaction operator run one fused launch per stage
(:mod:`physml.solvers.rk_stages`) on a batch of states ``(B, *grid.shape)`` with per-sample
or field coefficients. A step recorded on a ``wp.Tape`` (what the PyTorch bridge,
:mod:`physml.bridge`, differentiates) builds new arrays from its inputs; a NumPy rollout
reuses its work arrays between steps.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import warp as wp

from .dtypes import warp_dtype
from .errors import BlowUpError, UnstableStepError, whole_number
from .grid import BCKind, BoundaryConditions, Grid, periodic
from .linalg import StencilOperator, cg
from .operators import (
    FLUXES,
    REACTIONS,
    FluxKind,
    GridLayout,
    Limiter,
    ReactionKind,
    axpy,
    axpy_kernel,
    implicit_operator_kernel,
    implicit_tridiagonal_kernel,
    launch,
    narrow_kernel,
    scaled_axpy_kernel,
    weighted_dot_kernel,
    widen_kernel,
)
from .parameters import Parameter, Term, check_parameters
from .rk_stages import Coefficient, FusedStages, StageWork
from .runtime import warp_device
from .timestepping import Tableau, explicit_rk_step, tableau

TVD_CFL = 0.5
"""CFL limit of the MUSCL (TVD) flux: $\\max|f'|\\,\\Delta t/\\Delta x \\le 1/2$."""

Solver = TypeVar("Solver")

MAX_REPLAYED_STEPS = 64
"""Most rollout steps replayed in one go (:meth:`GridSolver._replayed_steps`; a rollout with
a callback replays one step at a time)."""

def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def shallow_copy(solver: Solver, **changes: Any) -> Solver:
    """A copy of ``solver`` without running its constructor: it shares every attribute's value
    (grids, kernels, Warp buffers), except the attributes set from ``changes``. Nothing is
    re-checked: the caller checks the values it changes."""
    clone = object.__new__(type(solver))
    clone.__dict__.update(solver.__dict__)
    clone.__dict__.update(changes)
    return clone


def finite_state(u: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``u`` as a float64 array of ``shape``, with a ValueError naming ``name`` if it has
    another shape or holds NaN/Inf."""
    arr = np.asarray(u, dtype=np.float64)
    require(arr.shape == shape, f"{name} has shape {arr.shape}; expected the grid shape {shape}")
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    require(bad == 0, f"{name} contains {bad} NaN/Inf value(s); the state must be finite")
    return arr


def check_counts(n_steps: int, save_every: int) -> tuple[int, int]:
    """``(n_steps, save_every)`` as ints, with a ValueError unless n_steps >= 0 and
    save_every >= 1 are integers and n_steps is a multiple of save_every (the steps past the
    last saved state would run and be lost)."""
    n, every = whole_number(n_steps, "n_steps", 0), whole_number(save_every, "save_every", 1)
    if n % every:
        raise ValueError(
            f"n_steps={n} is not a multiple of save_every={every}: the last {n % every} "
            f"step(s) would run and not be saved; pass n_steps={n - n % every} or "
            f"{n - n % every + every}")
    return n, every


class GridSolver:
    """Base class of the structured-grid solvers.

    Args:
        grid: the grid; the state has shape ``grid.shape``.
        bc: boundary conditions (default: periodic on every axis).
        parameters: the values of the parameters in ``PARAMETERS``, by name (checked
            against their ranges).
        dt: time step [s]; checked against the scheme's stability limit when the solver is
            built (linear terms) and when a rollout starts (state-dependent speeds). ``None``
            leaves it unset: call :meth:`stable_dt` and :meth:`with_dt`.
        scheme: "euler", "heun", "ssp_rk3", "rk4", or "imex" (diffusive solvers only).
        theta: implicitness of the IMEX diffusion step, in [1/2, 1].
        device: "cpu", "cuda" or "cuda:N".
        dtype: "float32" or "float64".
        check_every: steps between NaN/Inf checks during a rollout.
        threads: host threads of the CPU stage kernels (default: by grid and batch size;
            results do not depend on it).

    A PDE is a subclass that sets ``PARAMETERS``, ``flux_kind`` and ``reaction_kind`` (and
    ``ndim`` for a fixed dimension); the parameter values become float (per-axis: tuple)
    attributes. ``parameter_names`` and the names of the parameters scaling the diffusion,
    advection and reaction terms (``diffusion_parameter``, ``velocity_parameter``,
    ``reaction_parameter``; None when absent) are derived from ``PARAMETERS``.
    """

    PARAMETERS: ClassVar[tuple[Parameter, ...]] = ()
    parameter_names: ClassVar[tuple[str, ...]] = ()
    flux_kind: ClassVar[FluxKind] = FluxKind.NONE
    reaction_kind: ClassVar[ReactionKind] = ReactionKind.NONE
    diffusion_parameter: ClassVar[str | None] = None
    velocity_parameter: ClassVar[str | None] = None
    reaction_parameter: ClassVar[str | None] = None
    ndim: ClassVar[int | None] = None
    limiter: Limiter = Limiter.VAN_LEER

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.parameter_names = tuple(p.name for p in cls.PARAMETERS)
        roles = {}
        for term in Term:
            names = [p.name for p in cls.PARAMETERS if p.term == term]
            if len(names) > 1:
                raise TypeError(f"{cls.__name__}: parameters {names} all scale the {term.value}")
            roles[term] = names[0] if names else None
        cls.diffusion_parameter = roles[Term.DIFFUSION]
        cls.velocity_parameter = roles[Term.ADVECTION]
        cls.reaction_parameter = roles[Term.REACTION]

    def __init__(
        self,
        grid: Grid,
        bc: BoundaryConditions | None = None,
        *,
        parameters: Mapping[str, Any],
        dt: float | None,
        scheme: str = "ssp_rk3",
        theta: float = 0.5,
        device: str = "cpu",
        dtype: str = "float64",
        check_every: int = 50,
        threads: int | None = None,
    ) -> None:
        if self.ndim is not None and grid.ndim != self.ndim:
            raise ValueError(
                f"{type(self).__name__} needs a {self.ndim}D grid; got shape {grid.shape}"
            )
        for name, value in check_parameters(self.PARAMETERS, parameters, grid.ndim).items():
            setattr(self, name, value)
        self.grid = grid
        self.bc = periodic(grid.ndim) if bc is None else bc
        self.device = warp_device(device)
        self.dtype = warp_dtype(dtype)
        self.np_dtype = np.float64 if self.dtype == wp.float64 else np.float32
        self.scheme = scheme
        if scheme == "imex":
            require(
                self.diffusion_parameter is not None,
                f"scheme='imex' needs a diffusion term; {type(self).__name__} has none. "
                "Use 'euler', 'ssp_rk3' or 'rk4'",
            )
            require(0.5 <= theta <= 1.0, f"theta={theta} must lie in [0.5, 1]")
            self.tableau: Tableau | None = None
        else:
            self.tableau = tableau(scheme)
        self.theta = float(theta)
        self.check_every = whole_number(check_every, "check_every", 1)
        ghost_width = FLUXES[self.flux_kind].ghost_width
        self.layout = GridLayout(grid, self.bc, ghost_width, self.dtype, self.device)
        if threads is not None:  # None: by grid and batch size
            threads = whole_number(threads, "threads", 1)
        self.stages = FusedStages(grid, self.bc, ghost_width, self.flux_kind, self.limiter,
                                  self.reaction_kind, self.dtype, self.device, threads)
        self._zeros = wp.zeros(3, dtype=self.dtype, device=self.device)
        self.dt = None if dt is None else float(dt)
        if self.dt is not None:
            require(np.isfinite(self.dt) and self.dt > 0, f"dt={dt} must be a positive number")
            self.check_stability()

    # ----------------------------------------------------------------------------- parameters

    def parameters(self) -> dict[str, np.ndarray]:
        """Physical parameters as float64 arrays of shape ``(k,)`` (``(1,)`` for scalars)."""
        return {
            n: np.atleast_1d(np.asarray(getattr(self, n), dtype=np.float64))
            for n in self.parameter_names
        }

    def parameter_arrays(self) -> dict[str, wp.array]:
        """Parameters as Warp arrays in the solver's dtype and device (what kernels read)."""
        return {
            n: wp.array(v, dtype=self.dtype, device=self.device)
            for n, v in self.parameters().items()
        }

    def _kept_parameter_arrays(self) -> dict[str, wp.array]:
        """:meth:`parameter_arrays`, the same arrays while the values stay (kernels only read
        them): the recorded stage launches of one rollout then replay in the next instead of
        being re-packed for new arrays."""
        values = self.parameters()
        key = tuple((name, value.tobytes()) for name, value in values.items())
        kept = getattr(self, "_parameter_arrays_kept", None)
        if kept is None or kept[0] != key:
            kept = (key, {n: wp.array(v, dtype=self.dtype, device=self.device)
                          for n, v in values.items()})
            self._parameter_arrays_kept = kept
        return kept[1]

    def batch_parameter_arrays(self, batch: int, values: Mapping[str, Any]) -> dict[str, wp.array]:
        """Parameters for a batch of ``batch`` states, each given value checked against its
        range (the others keep the solver's values).

        A parameter scaling a term takes one value, one per sample (shape ``(batch,)``), or a
        field (``(batch, *grid.shape)`` or ``(1, *grid.shape)``; for one unbatched state also
        ``grid.shape``) that multiplies its term cell by cell: $\\nu_i (\\Delta_h u)_i$,
        $\\rho_i r(u_i)$. A velocity takes one vector ``(ndim,)`` or one per sample
        ``(batch, ndim)``. Fields are read by the fused explicit stages only.

        Returns:
            Warp arrays: ``(1,)`` or ``(ndim,)`` shared, ``(batch,)`` or ``(batch, ndim)`` per
            sample, ``(1, N)`` or ``(batch, N)`` fields (N = ``grid.size``). Those of the
            solver's own values are the same arrays from call to call: read them only.

        Raises:
            ValueError: an unknown parameter, a shape other than these, or a value outside
                its range.
        """
        shapes = self.batch_parameter_shapes(batch, {n: np.shape(v) for n, v in values.items()})
        arrays = dict(self._kept_parameter_arrays())
        for name, value in values.items():
            flat = np.asarray(value, dtype=np.float64).reshape(shapes[name])
            self.check_parameter_values(name, flat)
            arrays[name] = wp.array(flat, dtype=self.dtype, device=self.device)
        return arrays

    def batch_parameter_shapes(self, batch: int, shapes: Mapping[str, tuple[int, ...]]
                               ) -> dict[str, tuple[int, ...]]:
        """The shapes :meth:`batch_parameter_arrays` gives values of these shapes (no value is
        read: the check of names and shapes alone).

        Raises:
            ValueError: an unknown parameter or a shape it does not take.
        """
        table = {p.name: p for p in self.PARAMETERS}
        unknown = sorted(set(shapes) - set(table))
        require(not unknown, f"unknown parameter(s) {unknown} for {type(self).__name__}; "
                f"allowed: {', '.join(self.parameter_names)}")
        out = {}
        for name, shape in shapes.items():
            out[name] = _coefficient_shape(table[name], tuple(shape), batch, self.grid)
            require(table[name].term is not None or len(out[name]) == 1,
                    f"{name}: {type(self).__name__} takes no field of {name}")
            field = len(out[name]) == 2 and not table[name].per_axis
            require(not field or self.fused, self._field_refused(name))
        return out

    def _field_refused(self, name: str) -> str:
        """The message refusing a field of ``name`` to a solver stepped sample by sample."""
        return (f"{name}: a field of {name} needs an explicit scheme with the fused stages; "
                f"{type(self).__name__} steps it sample by sample")

    def check_parameter_values(self, name: str, values: np.ndarray) -> None:
        """Check every value of parameter ``name`` (any shape) against its range.

        Raises:
            ValueError: the first value outside the range, with what is allowed.
        """
        parameter = next(p for p in self.PARAMETERS if p.name == name)
        bad = [float(v) for v in np.ravel(values) if not parameter.admits(float(v))]
        require(not bad, f"{name}={bad[0]!r} must be {parameter.allowed} "
                f"({parameter.meaning} in {parameter.unit})" if bad else "")

    def _coefficient(self, name: str | None, params: dict[str, wp.array]) -> Coefficient:
        """How the stage kernels read parameter ``name`` (zeros when the PDE has none)."""
        if name is None:
            return Coefficient(self._zeros)
        array = params[name]
        per_axis = name == self.velocity_parameter
        if array.ndim == 2:
            flat = array.flatten()
            if per_axis:
                return Coefficient(flat, (array.shape[1], 0))
            return Coefficient(flat, (array.shape[1] if array.shape[0] > 1 else 0, 1))
        return Coefficient(array, (0, 0) if per_axis or array.shape[0] == 1 else (1, 0))

    def with_parameters(self, **values) -> GridSolver:
        """A copy of this solver with other physical parameter values (numbers, or arrays of
        shape (k,)), checked as the constructor checks them; ``dt`` is not re-checked.

        Raises:
            ValueError: an unknown parameter or a value outside its range.
        """
        current = {n: getattr(self, n) for n in self.parameter_names}
        checked = check_parameters(self.PARAMETERS, {**current, **values}, self.grid.ndim)
        return shallow_copy(self, **checked)

    _SHARED_ON_COPY = ("layout", "stages", "_zeros", "_parameter_arrays_kept")
    """Attributes holding Warp arrays (constants, caches keyed by their values, and scratch
    whose users take turns under a lock), which a copy shares, as :meth:`with_dt`'s do."""

    def __deepcopy__(self, memo: dict) -> GridSolver:
        """A copy with its own settings (``copy.deepcopy`` of a module holding a solver):
        the Warp buffers of :data:`_SHARED_ON_COPY` are shared, the rest copied."""
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            clone.__dict__[name] = (value if name in self._SHARED_ON_COPY
                                    else copy.deepcopy(value, memo))
        return clone

    def with_dt(self, dt: float) -> GridSolver:
        """A copy of this solver with time step ``dt`` (checked for stability)."""
        require(np.isfinite(dt) and dt > 0, f"dt={dt} must be a positive number")
        clone = shallow_copy(self, dt=float(dt))
        clone.check_stability()
        return clone

    # ------------------------------------------------------------------------------ stability

    @property
    def time_order(self) -> int:
        """Order of accuracy in time of the chosen scheme."""
        if self.tableau is not None:
            return self.tableau.order
        pure_diffusion = self.flux_kind == FluxKind.NONE and self.reaction_kind == ReactionKind.NONE
        return 2 if (self.theta == 0.5 and pure_diffusion) else 1

    def rates(self, u_max: float) -> dict[str, float]:
        """Spectral-radius estimates [1/s] of the diffusive, advective and reactive terms.

        Diffusion: $\\nu\\sum_d 4/\\Delta x_d^2$; advection: $\\sum_d |f_d'|/\\Delta x_d$ with the
        wave speed of ``flux_kind``; reaction: $\\rho \\max|r'(u)|$ with the slope bound of
        ``reaction_kind`` (:data:`~physml.solvers.operators.FLUXES`, ``REACTIONS``).

        Args:
            u_max: bound on $|u|$ (enters nonlinear fluxes and reactions).
        """
        inv_dx = np.array([1.0 / h for h in self.grid.dx])
        params = self.parameters()
        velocity = (
            np.zeros(self.grid.ndim)
            if self.velocity_parameter is None
            else params[self.velocity_parameter]
        )
        speed = FLUXES[self.flux_kind].wave_speed(velocity, u_max)
        rates = {"diffusion": 0.0, "advection": float(np.sum(speed * inv_dx)), "reaction": 0.0}
        if self.diffusion_parameter is not None:
            rates["diffusion"] = float(params[self.diffusion_parameter][0] * 4 * np.sum(inv_dx**2))
        if self.reaction_parameter is not None:
            slope = REACTIONS[self.reaction_kind](u_max)
            rates["reaction"] = float(params[self.reaction_parameter][0] * slope)
        return rates

    def stable_dt(self, u: np.ndarray | None = None) -> float:
        """Largest stable time step for the state ``u`` (or for linear terms only if None).

        The limit combines the terms as $\\Delta t \\le 1 / \\sum_k (\\lambda_k / L_k)$ with
        $\\lambda_k$ from :meth:`rates` and $L_k$ the scheme's stability limit for that term
        (real axis: diffusion and reaction; imaginary axis: central advection; 1/2 for the
        TVD flux). With ``scheme="imex"`` diffusion is implicit and drops out.
        """
        return _limit(self._costs(u, self.tableau is None))

    def state_bound(self, u: np.ndarray) -> float:
        """$\\max|u|$ over the cells of ``u`` (one state or a batch) and its Dirichlet ghost
        cells ($2v - u$ of the cells they mirror): the values the fluxes and reactions see,
        what :meth:`rates` needs (a boundary value above the state sets the wave speed)."""
        return float(np.max(self.state_bounds(u), initial=0.0))

    def check_state(self, u: np.ndarray, name: str = "u0") -> None:
        """Raise ValueError if the finite state ``u`` (any shape) lies outside the values
        the PDE is posed for; every finite state is allowed unless a solver says otherwise."""

    def state_bounds(self, u: np.ndarray) -> np.ndarray:
        """:meth:`state_bound` of each state of ``u`` (one state or a batch, each of
        ``grid.shape`` or flat): shape ``(B,)``.

        Raises:
            ValueError: ``u`` of another shape, naming the allowed ones."""
        u = np.asarray(u, dtype=np.float64)
        shape, size = self.grid.shape, self.grid.size
        require(u.size and (u.shape in (shape, (size,))
                            or (u.ndim > 1 and u.shape[1:] in (shape, (size,)))),
                f"u has shape {u.shape}; expected a state {shape} (or flat, ({size},)) or a "
                f"batch (B, *{shape}) with B >= 1")
        cells = u.reshape(-1, *shape)
        batch = len(cells)
        bound = np.max(np.abs(cells.reshape(batch, -1)), axis=1, initial=0.0)
        for d, sides in enumerate(self.bc.sides):
            for side, condition in enumerate(sides):
                if condition.kind != BCKind.DIRICHLET or condition.value == 0:
                    continue  # a zero value mirrors |u|
                n = self.grid.shape[d]
                layers = range(min(2, n)) if side == 0 else range(n - min(2, n), n)
                ghosts = 2 * condition.value - np.take(cells, list(layers), axis=1 + d)
                bound = np.maximum(bound, np.max(np.abs(ghosts.reshape(batch, -1)), axis=1,
                                                  initial=0.0))
        return bound

    def _costs(self, u: np.ndarray | None, implicit_diffusion: bool,
               bound: float | None = None) -> dict[str, float]:
        """$\\lambda_k / L_k$ per term [1/s] (see :meth:`stable_dt`) for the state ``u`` (or
        the :meth:`state_bound` ``bound``); the explicit part of IMEX is forward Euler."""
        u_max = bound if bound is not None else 0.0 if u is None else self.state_bound(u)
        rates = self.rates(u_max)
        explicit = self._explicit_part(implicit_diffusion)
        costs = {
            "diffusion": 0.0 if implicit_diffusion else rates["diffusion"] / explicit.real_limit,
            "advection": 0.0,
            "reaction": rates["reaction"] / explicit.real_limit,
        }
        if rates["advection"] > 0:
            limit = explicit.imag_limit
            if FLUXES[self.flux_kind].tvd:  # a limiter keeps forward Euler TVD up to CFL 1/2;
                # Fromm's unlimited slopes amplify under it at every CFL (the multi-stage
                # schemes stay stable at 1/2)
                limit = 0.0 if self._unlimited_euler(explicit) else TVD_CFL
            costs["advection"] = np.inf if limit == 0 else rates["advection"] / limit
        return costs

    def _explicit_part(self, implicit_diffusion: bool) -> Tableau:
        """The explicit scheme: forward Euler for the explicit part of IMEX."""
        return tableau("euler") if implicit_diffusion else self.tableau

    def _unlimited_euler(self, explicit: Tableau) -> bool:
        """Whether the advection is Fromm's unlimited MUSCL flux stepped by forward Euler
        (``scheme='euler'``, or the explicit part of ``'imex'``): unstable at every step."""
        return (FLUXES[self.flux_kind].tvd and self.limiter == Limiter.NONE
                and explicit.name == "euler")

    def check_stability(self, u: np.ndarray | None = None, *, bound: float | None = None
                        ) -> None:
        """Raise :class:`UnstableStepError` if ``self.dt`` exceeds :meth:`stable_dt` of the state
        ``u`` (or of a state whose :meth:`state_bound` is ``bound``).

        The message names the term that sets the limit, and offers ``scheme='imex'`` only
        where diffusion sets it and an implicit diffusion step would allow a larger ``dt``.
        """
        costs = self._costs(u, self.tableau is None, bound)
        dt_max = _limit(costs)
        if self.dt <= dt_max * (1 + 1e-12):
            return
        name = type(self).__name__
        if dt_max == 0:  # the advection's explicit step cannot be stable (as _costs found)
            raise UnstableStepError(
                "the unlimited MUSCL flux (limiter 'none', Fromm's scheme) is unstable with a "
                f"forward-Euler advection step (scheme '{self.scheme}') at any dt; use a "
                f"limiter (van_leer, minmod, mc) or scheme 'heun', 'ssp_rk3' or 'rk4' ({name})"
                if self._unlimited_euler(self._explicit_part(self.tableau is None)) else
                f"central differences for advection are unstable with scheme '{self.scheme}' at "
                f"any dt; use scheme 'ssp_rk3' or 'rk4', or space='upwind' ({name})",
                dt=self.dt,
                dt_max=0.0,
            )
        binding = max(costs, key=costs.get)
        hint = ""
        if binding == "diffusion" and self.diffusion_parameter is not None:
            imex_max = _limit(self._costs(u, implicit_diffusion=True, bound=bound))
            if imex_max > dt_max:
                unknown = u is None and bound is None and self.flux_kind != FluxKind.NONE
                rest = (f"dt<={imex_max:.4g}" if not np.isinf(imex_max) else
                        "the advection term's limit, set by the state, then applies" if unknown
                        else "no limit left")
                hint = f", or scheme='imex' (implicit diffusion; {rest})"
        raise UnstableStepError(
            f"dt={self.dt:.4g} exceeds the stability limit {dt_max:.4g} of scheme "
            f"'{self.scheme}' for {name} on a grid with dx={_fmt(self.grid.dx)}, set by its "
            f"{binding} term; pass dt<={dt_max:.4g}{hint}",
            dt=self.dt,
            dt_max=dt_max,
        )

    # ------------------------------------------------------------------------------ operators

    def rhs(
        self, u: wp.array, params: dict[str, wp.array], with_diffusion: bool = True
    ) -> wp.array:
        """$F(u)$ as a new flat array for a flat state of one or more samples (diffusion left
        out for the explicit part of IMEX)."""
        grad = u.requires_grad or any(p.requires_grad for p in params.values())
        out = wp.empty_like(u, requires_grad=grad)
        self.stages.launch(u, u.size // self.grid.size, *self._operator_coefficients(params),
                           out, with_diffusion=with_diffusion, record=grad)
        return out

    def _operator_coefficients(self, params: dict[str, wp.array]) -> tuple[Coefficient, ...]:
        return tuple(
            self._coefficient(name, params)
            for name in (self.diffusion_parameter, self.velocity_parameter, self.reaction_parameter)
        )

    # --------------------------------------------------------------------------------- steps

    @property
    def fused(self) -> bool:
        """Whether explicit steps run the fused stage kernels (the PDE's right-hand side is
        the convection–diffusion–reaction operator, not a ``rhs`` of its own)."""
        return type(self).rhs is GridSolver.rhs and self.tableau is not None

    def advance(
        self,
        u: wp.array,
        params: dict[str, wp.array],
        tape: wp.Tape | None = None,
        *,
        dt: wp.array | None = None,
        work: StageWork | None = None,
    ) -> wp.array:
        """One time step of the flat state ``u``; ``u`` untouched.

        Args:
            u: flat Warp array of ``B * grid.size`` values: B samples, one after another.
            params: :meth:`parameter_arrays` or :meth:`batch_parameter_arrays` (or arrays
                with gradients, for a tape).
            tape: the ``wp.Tape`` recording this step, if any (the implicit solve records its
                adjoint, a transpose solve, on it).
            dt: per-sample time steps, shape ``(B,)`` (default: ``self.dt`` for all).
            work: reusable work arrays (:class:`StageWork`; never while a tape records):
                the result is then one of them, valid until the next step with ``work``.
                Without it every intermediate is a new array.
        """
        self._require_dt()
        batch = u.size // self.grid.size
        if self.fused:
            if dt is None:
                dt = wp.array(np.full(1, self.dt), dtype=self.dtype, device=self.device)
            return self._fused_step(u, params, dt, batch, work or StageWork())
        return self._per_sample_step(u, params, dt, batch, tape)

    def _fused_step(self, u: wp.array, params: dict[str, wp.array], dt: wp.array, batch: int,
                    work: StageWork) -> wp.array:
        """Explicit RK: one fused launch per stage (:mod:`physml.solvers.rk_stages`)."""
        grad = u.requires_grad or any(p.requires_grad for p in params.values())
        step_size = Coefficient(dt, (0, 0) if dt.shape[0] == 1 else (1, 0))
        operator = self._operator_coefficients(params)
        ks: tuple[wp.array, ...] = ()
        v = u
        for c, k_name, w_name, read_later in self.stages.tableau_plan(self.tableau):
            k = work.array(k_name, u, grad)
            w = work.array(w_name, u, grad)
            self.stages.launch(v, batch, *operator, k, u=u, ks=ks, c=c, dt=step_size,
                               w_out=w, record=grad, keep_k=read_later)
            ks = (*ks, k)
            v = w
        return v

    def _per_sample_step(self, u: wp.array, params: dict[str, wp.array], dt: wp.array | None,
                         batch: int, tape: wp.Tape | None) -> wp.array:
        """IMEX steps, or explicit steps of a PDE with its own ``rhs``: one sample at a time
        (per-sample parameters of shape (B,); fields are refused)."""
        if batch == 1 and dt is None:
            return self._single_step(u, params, self.dt, tape)
        steps = np.full(batch, self.dt) if dt is None else np.broadcast_to(dt.numpy(), batch)
        n = self.grid.size
        parts = []
        for b in range(batch):
            sample = {}
            for name, array in params.items():
                if name == self.velocity_parameter:
                    sample[name] = array if array.ndim == 1 else array[b]
                    continue
                require(array.ndim == 1, self._field_refused(name))
                sample[name] = array if array.shape[0] == 1 else array[b : b + 1]
            parts.append(self._single_step(u[b * n : (b + 1) * n], sample, float(steps[b]), tape))
        if batch == 1:
            return parts[0]
        out = wp.empty_like(u, requires_grad=any(p.requires_grad for p in parts))
        for b, part in enumerate(parts):
            wp.copy(out, part, dest_offset=b * n, count=n)
        return out

    def _single_step(self, u: wp.array, params: dict[str, wp.array], dt: float,
                     tape: wp.Tape | None) -> wp.array:
        solver = self
        if dt != self.dt:  # a sample's own step (already checked for stability)
            solver = shallow_copy(self, dt=dt)
        if solver.tableau is not None:
            return explicit_rk_step(lambda v: solver.rhs(v, params), u, dt, solver.tableau)
        return solver._imex_step(u, params, tape)

    def _imex_step(
        self, u: wp.array, params: dict[str, wp.array], tape: wp.Tape | None
    ) -> wp.array:
        lay, dt, theta = self.layout, self.dt, self.theta
        nu = params[self.diffusion_parameter]
        explicit = axpy(u, self.rhs(u, params, with_diffusion=False), dt)
        b = self._scaled_axpy(explicit, nu, (1 - theta) * dt, lay.laplacian(u))
        zeros = lay.empty(False)
        zeros.zero_()
        b = self._scaled_axpy(b, nu, theta * dt, lay.laplacian(zeros))  # boundary values
        x = lay.empty(b.requires_grad)
        self._solve_implicit(b, nu, x)
        if tape is not None:
            tape.record_func(lambda: self._imex_adjoint(b, nu, x), arrays=[b, x, nu])
        return x

    def _imex_adjoint(self, b: wp.array, nu: wp.array, x: wp.array) -> None:
        """Adjoint of $A(\\nu) x = b$ with A symmetric.

        $\\lambda = A^{-1}\\bar x$, then $\\bar b \\mathrel{+}= \\lambda$ and
        $\\bar\\nu \\mathrel{+}= \\theta\\Delta t\\,\\lambda^T L_0 x$.
        """
        lam = self.layout.empty(False)
        self._solve_implicit(x.grad, nu, lam)
        launch(
            axpy_kernel,
            self.dtype,
            dim=lam.shape[0],
            inputs=[b.grad, lam, b.dtype(1.0)],
            outputs=[b.grad],
            device=self.device,
            record_tape=False,
        )
        if nu.grad is not None:
            lx = self.layout.laplacian(x, homogeneous=True)
            launch(
                weighted_dot_kernel,
                self.dtype,
                dim=lam.shape[0],
                inputs=[lam, lx, b.dtype(self.theta * self.dt)],
                outputs=[nu.grad],
                device=self.device,
                record_tape=False,
            )

    def _scaled_axpy(self, x: wp.array, coeff: wp.array, a: float, y: wp.array) -> wp.array:
        out = wp.empty_like(x, requires_grad=x.requires_grad or coeff.requires_grad)
        launch(
            scaled_axpy_kernel,
            self.dtype,
            dim=x.shape[0],
            inputs=[x, coeff, x.dtype(a), y],
            outputs=[out],
            device=self.device,
        )
        return out

    def _solve_implicit(self, b: wp.array, nu: wp.array, x: wp.array) -> int:
        """Solve $(I - \\theta\\Delta t\\,\\nu L_0)x = b$ (x overwritten), in float64 whatever
        the solver's dtype: a float32 solver's ``b`` and ``nu`` are widened for the solve and x
        rounded back (at the condition numbers of long implicit steps,
        $1 + 4 d\\,\\theta\\Delta t\\,\\nu / h^2$, float32's rounding floor lies far above any
        useful tolerance).
        Launches are not recorded on a tape. Returns the number of iterations.
        """
        if self.dtype == wp.float64:
            return self._solve_implicit_float64(b, nu, x, self.layout, rtol=1e-13)
        wide = [wp.empty(a.shape[0], dtype=wp.float64, device=self.device) for a in (b, nu, x)]
        for a, a64 in zip((b, nu), wide):
            wp.launch(widen_kernel, dim=a.shape[0], inputs=[a], outputs=[a64],
                      device=self.device, record_tape=False)
        # 1e-9: below what the float32 result resolves
        iterations = self._solve_implicit_float64(*wide, self.layout.in_dtype(wp.float64),
                                                  rtol=1e-9)
        wp.launch(narrow_kernel, dim=x.shape[0], inputs=[wide[2]], outputs=[x],
                  device=self.device, record_tape=False)
        return iterations

    def _solve_implicit_float64(self, b: wp.array, nu: wp.array, x: wp.array,
                                lay: GridLayout, rtol: float) -> int:
        """:meth:`_solve_implicit` on float64 arrays and ``lay``, a float64 layout: directly
        in 1D, else by conjugate gradients (:func:`~physml.solvers.linalg.cg`, matrix-free)
        to ``rtol``. $L_0$ is the Laplacian with homogeneous boundary values: symmetric
        negative semi-definite, so the operator is SPD with eigenvalues in
        $[1, 1 + \\theta\\Delta t\\,\\nu\\lambda_{max}]$."""
        if self.grid.ndim == 1:
            return self._solve_tridiagonal(b, nu, x, lay)
        T, dev = wp.float64, self.device
        n = self.grid.size
        xp = wp.empty(lay.padded_size, dtype=T, device=dev)
        theta_dt = T(self.theta * self.dt)

        def apply(v, out):
            lay.pad(v, homogeneous=True, out=xp, record_tape=False)
            launch(implicit_operator_kernel, T, dim=n,
                   inputs=[xp, lay.shape, lay.ghost, self.grid.ndim, lay.inv_dx, nu, theta_dt,
                           T(1.0), v, T(0.0)],
                   outputs=[out], device=dev, record_tape=False)

        operator = StencilOperator(n, apply, dtype=T, device=dev)
        # x0 = b: exact as nu dt -> 0; rtol is at float64's limit on purpose: at the condition
        # numbers of long steps the rounding floor lies above it, and x is as good as it gets
        result = cg(operator, b, b, rtol=rtol, maxiter=10 * n + 10, floor="accept")
        wp.copy(x, result.x)
        return result.iterations

    def _solve_tridiagonal(self, b: wp.array, nu: wp.array, x: wp.array,
                           lay: GridLayout) -> int:
        """The 1D implicit system solved directly (Thomas / Sherman–Morrison), O(n)."""
        T, n = lay.dtype, self.grid.size
        ghost_lo, ghost_hi = lay.reflection_x
        work = [wp.empty(n, dtype=T, device=self.device) for _ in range(3)]
        launch(
            implicit_tridiagonal_kernel,
            T,
            dim=1,
            inputs=[
                b,
                nu,
                T(self.theta * self.dt / self.grid.dx[0] ** 2),
                n,
                T(ghost_lo),
                T(ghost_hi),
                int(self.bc.is_periodic(0)),
                *work,
            ],
            outputs=[x],
            device=self.device,
            record_tape=False,
        )
        return 1

    # -------------------------------------------------------------------------- public stepping

    def _require_dt(self) -> None:
        if self.dt is None:
            raise ValueError(
                "dt is not set; pass dt=... or use solver.with_dt(solver.stable_dt(u0))"
            )

    def to_warp(self, u: Any, name: str = "u0") -> wp.array:
        """A flat Warp copy of the state ``u`` (NumPy-like, shape ``grid.shape``), validated."""
        arr = finite_state(u, self.grid.shape, name)
        return wp.array(arr.ravel().astype(self.np_dtype), dtype=self.dtype, device=self.device)

    def step(self, u: Any) -> np.ndarray:
        """One time step: NumPy array of shape ``grid.shape`` (or ``(B, *grid.shape)``) in,
        new NumPy array out."""
        batched = np.ndim(u) == self.grid.ndim + 1
        finite_state(u, (np.shape(u)[0], *self.grid.shape) if batched else self.grid.shape, "u")
        return np.take(self.rollout(u, 1), -1, axis=-self.grid.ndim - 1)

    def rollout(
        self,
        u0: Any,
        n_steps: int | Any,
        save_every: int | Any = 1,
        callback: Callable[[int], None] | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        dt: Any = None,
    ) -> np.ndarray:
        """Advance ``n_steps`` steps from ``u0`` and return the saved states.

        A batch of states advances together (one launch per stage on the fused path) and
        each sample's result is bitwise the result of its own rollout. The work arrays (a
        few states' worth, the largest batch's) stay with the solver for its next rollout.

        Args:
            u0: initial state, shape ``grid.shape``, or a batch ``(B, *grid.shape)``.
            n_steps: number of steps (>= 0, a multiple of ``save_every``); for a batch also
                one per sample, shape (B,).
            save_every: keep every ``save_every``-th state; for a batch also one per sample
                (``n_steps // save_every`` must then be the same for all samples).
            callback: called with the number of steps done after each step (progress bars).
            parameters: values replacing the solver's, per sample or as fields
                (:meth:`batch_parameter_arrays`).
            dt: per-sample time steps [s], shape (B,) (default ``self.dt``).

        Returns:
            ``(n_saved, *grid.shape)`` for one state, ``(B, n_saved, *grid.shape)`` for a
            batch: $u$ at steps 0, save_every, 2 save_every, ..., in the solver's dtype (u0
            rounded to it).

        Raises:
            UnstableStepError: ``dt`` too large for a sample's ``u0`` and parameters.
            BlowUpError: a NaN/Inf appeared; carries the step and the last finite state
                (for a batch, of the first sample that blew up).
        """
        self._require_dt()
        batched = np.ndim(u0) == self.grid.ndim + 1
        states = np.asarray(u0, dtype=np.float64)
        batch = states.shape[0] if batched else 1
        require(batch > 0, f"u0 has shape {states.shape}: a batch of no state")
        require(states.shape[batched:] == self.grid.shape,
                f"u0 has shape {states.shape}; expected {self.grid.shape} or (B, "
                f"*{self.grid.shape})")
        states = finite_state(states, (batch, *self.grid.shape) if batched else self.grid.shape,
                              "u0").reshape(batch, -1)
        self.check_state(states)
        counts = _per_sample(n_steps, batch, "n_steps")
        every = _per_sample(save_every, batch, "save_every")
        for n, k in set(zip(counts.tolist(), every.tolist())):
            check_counts(n, k)
        saves = counts // every
        require(np.all(saves == saves[0]), f"n_steps // save_every differs between samples "
                f"({sorted(set(saves.tolist()))}); every sample must save as many states")
        steps = np.full(batch, self.dt) if dt is None else _per_sample(dt, batch, "dt", float)
        require(np.all(np.isfinite(steps) & (steps > 0)), "dt must be positive numbers")
        require(parameters is None or isinstance(parameters, Mapping),
                f"parameters is a {type(parameters).__name__}; pass a mapping of names to "
                f"values, e.g. {{{self.parameter_names[0]!r}: ...}}" if self.parameter_names
                else "parameters: this solver takes none")
        arrays = self.batch_parameter_arrays(batch, parameters or {})
        self._check_samples(arrays, states, steps)
        if np.all(counts[:-1] >= counts[1:]):  # longest first already: active samples lead
            saved = self._rollout_sorted(states, counts, every, steps, arrays, callback)
        else:
            order = np.argsort(-counts, kind="stable")
            arrays = {name: self._samples(name, a, order) for name, a in arrays.items()}
            in_order = self._rollout_sorted(states[order], counts[order], every[order],
                                            steps[order], arrays, callback)
            saved = np.empty_like(in_order)
            saved[order] = in_order
        out = saved.reshape(batch, saves[0] + 1, *self.grid.shape)
        return out if batched else out[0]

    def _rollout_sorted(self, states, counts, every, steps, arrays, callback) -> np.ndarray:
        """Rollout of a batch sorted by decreasing step count: after step s only the samples
        with more than s steps advance (a prefix of the batch)."""
        with self.stages.rollout_work() as work:
            return self._rollout_with(work, states, counts, every, steps, arrays, callback)

    def _rollout_with(self, work, states, counts, every, steps, arrays, callback) -> np.ndarray:
        """:meth:`_rollout_sorted` in the work arrays ``work``."""
        batch, n = states.shape
        saved = np.empty((batch, int(counts[0] // every[0]) + 1 if batch else 1, n),
                         dtype=self.np_dtype)
        saved[:, 0] = states
        u = work.filled("u0", states.astype(self.np_dtype, copy=False), self.dtype, self.device)
        dt = work.filled("dt", steps.astype(self.np_dtype), self.dtype, self.device)
        last_good = (0, states)
        # the steps that end, save or check a sample; the bookkeeping below is skipped at
        # the others (~10 us a step)
        last = int(counts.max(initial=0))
        due = np.zeros(last + 1, dtype=bool)
        due[counts] = True
        for interval in {*every.tolist(), self.check_every}:
            due[interval::interval] = True
        active = batch
        due_steps = np.flatnonzero(due)
        step = 0
        while step < last:
            if counts[active - 1] <= step:
                active = int(np.count_nonzero(counts > step))
                arrays = {name: self._samples(name, a, slice(0, active))
                          for name, a in arrays.items()}
                u, dt = u[: active * n], dt[:active]
            # up to the next step that saves, checks or ends a sample, in one go when replayed
            # (step by step for a callback, which hears of each step when it is done)
            upto = step + 1 if callback is not None else min(
                int(due_steps[np.searchsorted(due_steps, step + 1)]), step + MAX_REPLAYED_STEPS)
            u, done = self._replayed_steps(u, arrays, dt, work, active, upto - step)
            step += done
            saving = step % every[:active] == 0
            if due[step] and (saving.any() or step % self.check_every == 0
                              or np.any(counts[:active] == step)):
                current = u.numpy().reshape(active, n)  # a work array: the next step writes it
                bad = ~np.all(np.isfinite(current), axis=1)
                if bad.any():
                    b = int(np.argmax(bad))
                    raise BlowUpError(step=step, t=step * float(steps[b]),
                                      last_good_step=last_good[0],
                                      last_good_state=last_good[1][b].reshape(self.grid.shape))
                if saving.all() and np.all(every[:active] == every[0]):
                    saved[:active, step // every[0]] = current
                else:
                    rows = np.flatnonzero(saving)
                    saved[rows, step // every[rows]] = current[rows]
                if step < last:
                    last_good = (step, current.astype(np.float64))
            if callback is not None:
                callback(step)
        return saved

    def _replayed_steps(self, u: wp.array, arrays: dict[str, wp.array], dt: wp.array,
                        work: StageWork, active: int, most: int) -> tuple[wp.array, int]:
        """Up to ``most`` :meth:`advance` steps of a rollout, and how many ran.

        A fused step is the same stage launches on the same arrays whenever its active
        samples, input array, time steps and parameter arrays are: ``work.replays`` keeps
        each such step's recorded calls with the output they wrote and the arrays they read,
        also from one rollout to the next (the work arrays they name stay alive in ``work``).
        Steps found there, unless a launch was re-packed for other arrays since, are replayed
        together (:meth:`~physml.solvers.rk_stages.FusedStages.run`: where the host threads'
        chunks hold whole samples, each thread runs its chunk of every step without waiting
        for the others); otherwise one step runs, and a fused one is recorded (an IMEX step
        or a PDE's own right-hand side launches more than its stages, so it never replays)."""
        read = (dt, *arrays.values())
        replays = work.replays
        with self.stages.step_lock:
            launches, out, done = [], u, 0
            while done < most:
                kept = replays.get((active, out.ptr))
                if kept is None or kept[2] != self.stages.repacks or not all(
                        map(operator.is_, kept[3], read)):
                    break
                launches.extend(kept[0])
                out = kept[1]
                done += 1
            if done:
                self.stages.run(*launches, batch=active)
                return out, done
            with self.stages.capturing() as captured:
                out = self.advance(u, arrays, dt=dt, work=work)
            # a fused step is its stage launches; another (IMEX, a PDE's own rhs) is more
            if self.fused and captured and all(calls is not None for calls in captured):
                if len(replays) >= work.MAX_REPLAYS:
                    replays.clear()
                replays[(active, u.ptr)] = (list(captured), out, self.stages.repacks, read)
            return out, 1

    def _samples(self, name: str, array: wp.array, index: np.ndarray | slice) -> wp.array:
        """The samples ``index`` of a per-sample parameter array (a shared one as it is)."""
        per_sample = array.shape[0] > 1 and (array.ndim == 2 or name != self.velocity_parameter)
        if not per_sample:
            return array
        if isinstance(index, slice):
            return array[index]
        return wp.array(array.numpy()[index], dtype=array.dtype, device=array.device)

    def _check_samples(self, arrays: dict[str, wp.array], states: np.ndarray,
                       steps: np.ndarray) -> None:
        r""":meth:`check_stability` of every sample (states ``(B, n)``, steps ``(B,)``), raising
        for the first that fails. Samples sharing their parameters and time step are checked
        as one: the limit depends on a state only through its :meth:`state_bound`, and
        monotonically (:meth:`rates` bounds wave speeds, reaction slopes and the sorption
        retardation over $|u| \le$ the bound), so the group passes when its states of the
        smallest and the largest bound do; a group that does not is checked sample by
        sample, for the error of the first failing one."""
        if all(array.shape[0] == 1 for array in arrays.values()):
            u_max = self.state_bounds(states)
            try:
                for dt in np.unique(steps):
                    solver = self._sample_solver(arrays, 0, dt)
                    group = u_max[steps == dt]
                    for extreme in (group.min(), group.max()):
                        solver.check_stability(bound=float(extreme))
                return
            except UnstableStepError:
                pass
        for b in range(len(states)):
            self._sample_solver(arrays, b, steps[b]).check_stability(states[b])

    def _sample_solver(self, arrays: dict[str, wp.array], b: int, dt: float) -> GridSolver:
        """A copy with sample ``b``'s largest parameter values and its ``dt`` (what its
        stability check needs)."""
        values = {}
        for name, array in arrays.items():
            data = self._samples(name, array, np.array([b])).numpy() if array.shape[0] > 1 else (
                array.numpy())
            if name == self.velocity_parameter:
                values[name] = np.max(np.abs(data.reshape(-1, self.grid.ndim)), axis=0)
            else:
                values[name] = np.max(data)
        solver = self.with_parameters(**values)
        solver.dt = float(dt)
        return solver

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_fmt(getattr(self, k))}" for k in self.parameter_names)
        return (
            f"{type(self).__name__}(shape={self.grid.shape}, {params}, dt={self.dt}, "
            f"scheme={self.scheme!r}, device={self.device!r}, dtype={self.dtype.__name__})"
        )


def _per_sample(value: Any, batch: int, name: str, kind: type = int) -> np.ndarray:
    """A count or step for every sample, shape (batch,), from one value or one per sample
    (numbers: not strings, not bools)."""
    given = np.asarray(value)
    require(given.dtype.kind in "iuf",
            f"{name}={value!r} must be a number, or one per sample (whole numbers for a count)")
    array = given.astype(np.float64)
    require(array.ndim == 0 or array.shape == (batch,),
            f"{name} has shape {array.shape}; expected one value or one per sample ({batch},)")
    array = np.broadcast_to(array, (batch,))
    if kind is int:
        require(np.all(array == np.round(array)), f"{name}={value!r} must hold whole numbers")
        return array.astype(np.int64)
    return array.astype(np.float64)


def _coefficient_shape(parameter: Parameter, shape: tuple[int, ...], batch: int,
                       grid: Grid) -> tuple[int, ...]:
    """The shape :meth:`GridSolver.batch_parameter_arrays` hands the kernels for a value of
    ``shape`` (checked)."""
    n = grid.size
    if parameter.per_axis:
        shapes = {(grid.ndim,): (grid.ndim,), (batch, grid.ndim): (batch, grid.ndim)}
        if grid.ndim == 1:
            shapes.update({(): (1,), (batch,): (batch, 1)})
        allowed = f"(ndim,) or (B, ndim) = ({grid.ndim},) or ({batch}, {grid.ndim})"
    else:
        shapes = {(): (1,), (1,): (1,), (batch,): (batch,), (batch, *grid.shape): (batch, n),
                  (1, *grid.shape): (1, n)}
        if batch == 1:
            shapes[grid.shape] = (1, n)
        allowed = f"a number, ({batch},) per sample, or a field (B or 1, *{grid.shape})"
    require(shape in shapes, f"{parameter.name} has shape {shape}; allowed: {allowed}")
    return shapes[shape]


def _limit(costs: dict[str, float]) -> float:
    """$\\Delta t_{max} = 1/\\sum_k c_k$ from the per-term costs (inf when all are 0)."""
    total = sum(costs.values())
    return float(np.inf) if total == 0 else float(1.0 / total)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple | list | np.ndarray):
        return "(" + ", ".join(f"{v:.4g}" for v in value) + ")"
    return f"{value:.4g}"
