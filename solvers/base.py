r"""The shared machinery of the grid solvers: parameters, stability, stepping and rollouts.

A solver advances $u_t = F(u; p)$ on a :class:`~physml.solvers.grid.Grid`, where $p$ are its
physical parameters. Most PDEs of this package are instances of one
convection–diffusion–reaction operator

$$F(u) = -\sum_d \partial_d f_d(u) + \nu\,\Delta u + \rho\, r(u),$$

evaluated by one Warp kernel per stage (:mod:`physml.solvers.stage_kernels`, from the stencils
of :mod:`physml.solvers.operators`); a PDE class only says which
flux $f$ and reaction $r$ it has (``flux_kind``, ``reaction_kind``) and lists its parameters
with their units, ranges and terms (``PARAMETERS``, :mod:`physml.solvers.parameters`). The
stability rates, the parameter checks and the command-line flags follow from these
(the stability analysis: :mod:`physml.solvers.stability`).

Time stepping is explicit Runge–Kutta (:mod:`physml.solvers.timestepping`) or, with
``scheme="imex"``, the $\theta$-method on the diffusion term with the rest explicit
(:mod:`physml.solvers.implicit_diffusion`).

Explicit steps of the convection–diffusion–reaction operator run one fused launch per stage
(:mod:`physml.solvers.rk_stages`) on a batch of states ``(B, *grid.shape)`` with per-sample
or field coefficients (:mod:`physml.solvers.batch_parameters`). A step recorded on a
``wp.Tape`` (what the PyTorch bridge, :mod:`physml.bridge`, differentiates) builds new arrays
from its inputs; a NumPy rollout reuses its work arrays between steps
(:mod:`physml.solvers.rollout`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import warp as wp

from .batch_parameters import (
    batch_shapes,
    check_values,
    kernel_coefficient,
    sample_maxima,
    sample_parameters,
)
from .built_solver import BuiltSolver, shallow_copy
from .checks import (
    DT_NOT_SET,
    check_callback,
    checked_schedule,
    checked_time_step,
    finite_state,
    per_sample,
    require,
)
from .dtypes import real_values, warp_dtype
from .errors import is_real, refuse_grad, whole_number
from .field_arithmetic import axpy
from .grid import BoundaryConditions, Grid, periodic
from .grid_layout import GridLayout
from .implicit_diffusion import ImplicitDiffusion
from .operators import FLUXES, FluxKind, Limiter, ReactionKind
from .parameters import (
    Parameter,
    Term,
    check_parameters,
    check_representable,
    refuse_text_and_bools,
)
from .rk_stages import Coefficient, FusedStages, StageWork, time_step_coefficient
from .rollout import batch_rollout, replayed_steps
from .runtime import warp_device
from .stability import (
    cell_and_ghost_bounds,
    check_samples,
    check_step_stability,
    format_values,
    operator_rates,
    require_a_stable_step,
    stability_limit,
    term_costs,
)
from .timestepping import Tableau, explicit_rk_step, tableau


class GridSolver(BuiltSolver):
    """Base class of the structured-grid solvers.

    Args:
        grid: the grid; the state has shape ``grid.shape``.
        bc: boundary conditions (default: periodic on every axis).
        parameters: the values of the parameters in ``PARAMETERS``, by name (checked
            against their ranges).
        dt: time step [s]; checked against the scheme's stability limit when the solver is
            built (linear terms) and when a rollout starts (state-dependent speeds). ``None``
            leaves it unset: call :meth:`stable_dt` and :meth:`with_dt`. Refused where
            ``dtype`` rounds it to 0 or infinity (as a parameter value is).
        scheme: "euler", "heun", "ssp_rk3", "rk4", or "imex" (diffusive solvers only).
        theta: implicitness of the IMEX diffusion step, in [1/2, 1]: 1/2 Crank–Nicolson, 1
            backward Euler. Crank–Nicolson leaves the stiff modes undamped, so on a state that
            does not meet the boundary values it reaches second order only at small steps and
            can be 10x less accurate than backward Euler at large ones; take ``theta=1``, or
            start with a few backward-Euler steps (figures and an example:
            :mod:`physml.solvers.implicit_diffusion`).
        device: "cpu", "cuda" or "cuda:N".
        dtype: "float32" or "float64". In float32 an explicit scheme rounds each stage's
            increment at the scale of u, with the same sign step after step: heat with rk4 at
            half its stable step ends 3.6e-5 from the exact solution at 256 cells and 6.1e-4
            at 1024 (float64: 2.9e-7), worse as the grid is refined; take float64 for runs of
            more than about 1e4 explicit steps (``imex`` in float32 levels off at 4e-7).
        check_every: steps between NaN/Inf checks during a rollout.
        threads: host threads of the CPU stage kernels (default: by grid and batch size;
            results do not depend on it).

    A PDE's constructor takes its own parameters, ``dt`` and ``scheme``, and passes the other
    keywords on as ``**options: Unpack[GridOptions]``: ``theta``, ``device``, ``dtype``,
    ``check_every`` and ``threads``, typed for type checkers and editors by
    :class:`~physml.solvers.solver_options.GridOptions` (at run time an unknown one is refused
    here with a ``TypeError``).

    A PDE is a subclass that sets ``PARAMETERS``, ``flux_kind`` and ``reaction_kind`` (and
    ``ndim`` for a fixed dimension); the parameter values become float (per-axis: tuple)
    attributes. ``parameter_names`` and the names of the parameters scaling the diffusion,
    advection and reaction terms (``diffusion_parameter``, ``velocity_parameter``,
    ``reaction_parameter``; None when absent) are derived from ``PARAMETERS``.

    The parameters, ``dt``, ``theta`` and ``check_every`` may be set on a built solver (``dt``,
    ``theta`` and ``check_every`` are checked as they are set, the parameters' ranges and the
    step's stability when a rollout starts); the rest (grid, bc, scheme, limiter, dtype,
    device, ...) is read-only (:class:`BuiltSolver`): build a new solver to change them. A
    solver pickles (into a ``DataLoader`` worker, say) as its settings; the unpickled one
    rebuilds its Warp arrays on the same device and steps bitwise as the original.
    :meth:`settings` gives them as the constructor's keywords, a plain dict to log:
    ``type(solver)(solver.grid, solver.bc, **solver.settings())`` rebuilds the solver.

    What a user calls: :meth:`step`, :meth:`rollout`, :meth:`save_times` (the times of a
    rollout's states), :meth:`settings`, :meth:`stable_dt`, :meth:`with_dt`,
    :meth:`with_parameters`, :meth:`parameters`, :meth:`rates`, :meth:`check_stability` and
    :attr:`time_order`, with :func:`physml.bridge.rollout` for gradients; a PDE of one's own
    overrides :meth:`rhs`. The other methods (``advance``, ``replay_steps``, ``sample_solver``,
    ``batch_parameter_arrays`` and their kin, and :class:`BuiltSolver`'s) serve the bridge,
    dataset generation and the subclasses, and may change between versions without notice.
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
    SETTABLE = ("dt", "theta", "check_every")
    FIXED = ("limiter", "flux_kind", "reaction_kind")
    GRADIENTS = ("use physml.bridge.rollout(solver, u0, n_steps, parameters={{'{name}': {name}}}) "
                 "for gradients in {name}")

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
        self.refuse_grad_parameters(parameters)
        for name, value in check_parameters(self.PARAMETERS, parameters, grid.ndim).items():
            setattr(self, name, value)
        self.grid = grid
        self.bc = periodic(grid.ndim) if bc is None else bc
        self.device = warp_device(device)
        self.dtype = warp_dtype(dtype)
        self.np_dtype = np.float64 if self.dtype == wp.float64 else np.float32
        check_representable({n: getattr(self, n) for n in self.parameter_names}, self.np_dtype)
        self.scheme = scheme
        if scheme == "imex":
            require(
                self.diffusion_parameter is not None,
                f"scheme='imex' needs a diffusion term; {type(self).__name__} has none. "
                "Use 'euler', 'ssp_rk3' or 'rk4'",
            )
            self.tableau: Tableau | None = None
        else:
            self.tableau = tableau(scheme)
        self.theta, self.check_every = theta, check_every  # checked as set: checked_setting
        if threads is not None:  # None: by grid and batch size
            threads = whole_number(threads, "threads", 1)
        self._build_arrays(threads)
        self.dt = dt  # checked as set: checked_setting
        require_a_stable_step(self)
        if self.dt is not None:
            self.check_stability()
        self.fix_attributes()

    def checked_setting(self, name: str, value: Any) -> Any:
        """:meth:`BuiltSolver.checked_setting`; ``dt`` as a float, None (unset) or a positive
        number the solver's dtype holds (:meth:`checked_dt`); ``theta`` as a float, in
        [1/2, 1] with ``scheme="imex"`` (unused by the explicit schemes)."""
        if name == "dt":
            return None if value is None else self.checked_dt(value)
        if name != "theta":
            return super().checked_setting(name, value)
        require(is_real(value), f"theta={value!r} must be a number in [0.5, 1]")
        require(self.scheme != "imex" or 0.5 <= value <= 1.0,
                f"theta={value} must lie in [0.5, 1]")
        return float(value)

    def _build_arrays(self, threads: int | None) -> None:
        """Build ``layout``, ``stages`` and ``_zeros``, the Warp state made from the grid, bc,
        operator, dtype and device (by the constructor, and again by :meth:`__setstate__`)."""
        ghost_width = FLUXES[self.flux_kind].ghost_width
        self.__dict__.update(
            layout=GridLayout(self.grid, self.bc, ghost_width, self.dtype, self.device),
            stages=FusedStages(self.grid, self.bc, ghost_width, self.flux_kind, self.limiter,
                               self.reaction_kind, self.dtype, self.device, threads),
            _zeros=wp.zeros(3, dtype=self.dtype, device=self.device))

    def __copy__(self) -> GridSolver:
        """``copy.copy``: a :func:`shallow_copy`, Warp state included (not a pickled copy's
        rebuilt one)."""
        return shallow_copy(self)

    def warp_state(self) -> tuple[tuple[str, ...], dict]:
        """:data:`_SHARED_ON_COPY`, rebuilt with the stage kernels' host threads."""
        return self._SHARED_ON_COPY, {"threads": self.stages.threads}

    def checked_parameter(self, name: str, value: Any) -> Any:
        """:meth:`BuiltSolver.checked_parameter`, whose refusal also says where per-sample
        values and fields go: a rollout's ``parameters=`` (an array is refused here).

        Raises:
            ValueError: naming the parameter, the value and what is allowed.
        """
        refuse_text_and_bools(name, value)  # its own message
        try:
            return super().checked_parameter(name, value)
        except ValueError as err:
            raise ValueError(f"{err}; per-sample values or a field go to a rollout's "
                             f"parameters={{{name!r}: ...}}") from None

    def rebuild_warp_state(self, threads: int | None) -> None:
        self._build_arrays(threads)

    def checked_dt(self, dt: Any) -> float:
        """``dt`` [s] as a float (:func:`~physml.solvers.checks.checked_time_step`: a finite
        positive number, not text or a bool) that the solver's dtype does not round to 0 or
        infinity; its stability is checked separately (:meth:`check_stability`).

        Raises:
            ValueError: naming ``dt``, the value and what is allowed.
        """
        value = checked_time_step(dt)
        check_representable({"dt": value}, self.np_dtype)
        return value

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
                          for n, v in values.items()}, {})
            self._parameter_arrays_kept = kept
        return kept[1]

    _KEPT_SAMPLE_SOLVERS = 16
    """Time steps :meth:`shared_sample_solver` keeps a copy for (beyond it they are made anew)."""

    def shared_sample_solver(self, arrays: dict[str, wp.array], dt: float) -> GridSolver:
        """:meth:`sample_solver` of sample 0 for parameter arrays every sample shares; made
        once per ``dt`` (and kept) where they are the solver's own values, the arrays of
        :meth:`batch_parameter_arrays` without values: their checks and the copy do not
        depend on the states. Read it only: the next call may get it too."""
        kept = self.__dict__.get("_parameter_arrays_kept")
        own = kept is not None and arrays.keys() == kept[1].keys() and all(
            arrays[name] is array for name, array in kept[1].items())
        if not own:
            return self.sample_solver(arrays, 0, dt)
        solvers, dt = kept[2], float(dt)
        solver = solvers.get(dt)
        if solver is None:
            solver = self.sample_solver(arrays, 0, dt)
            del solver.__dict__["_parameter_arrays_kept"]  # it is kept in them: no cycle
            if len(solvers) >= self._KEPT_SAMPLE_SOLVERS:
                solvers.clear()
            solvers[dt] = solver
        return solver

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
            ValueError: an unknown parameter, a shape other than these, a value outside its
                range, or one the solver's dtype rounds to 0 or infinity (named by its index in
                the value given).
        """
        for name, value in values.items():
            refuse_grad(value, f"parameters[{name!r}]", "solver.rollout",
                        "use physml.bridge.rollout for gradients")
            refuse_text_and_bools(f"parameters[{name!r}]", value)
        shapes = self.batch_parameter_shapes(batch, {n: np.shape(v) for n, v in values.items()})
        arrays = dict(self._kept_parameter_arrays())
        for name, value in values.items():
            given = np.asarray(value, dtype=np.float64)
            self.check_parameter_values(name, given)
            arrays[name] = wp.array(given.reshape(shapes[name]), dtype=self.dtype,
                                    device=self.device)
        return arrays

    def batch_parameter_shapes(self, batch: int, shapes: Mapping[str, tuple[int, ...]]
                               ) -> dict[str, tuple[int, ...]]:
        """The shapes :meth:`batch_parameter_arrays` gives values of these shapes (no value is
        read: the check of names and shapes alone).

        Raises:
            ValueError: an unknown parameter or a shape it does not take.
        """
        return batch_shapes(self, batch, shapes)

    def check_parameter_values(self, name: str, values: np.ndarray) -> None:
        """Check every value of parameter ``name`` (any shape) against its range, and that the
        solver's dtype holds it (:func:`~physml.solvers.batch_parameters.check_values`).

        Raises:
            ValueError: the first value outside the range, with what is allowed, or the first
                one the dtype rounds to 0 or infinity, with its index and the cure.
        """
        check_values(self.PARAMETERS, name, values, self.np_dtype)

    def _coefficient(self, name: str | None, params: dict[str, wp.array]) -> Coefficient:
        """How the stage kernels read parameter ``name`` (zeros when the PDE has none)."""
        if name is None:
            return Coefficient(self._zeros)
        return kernel_coefficient(params[name], name == self.velocity_parameter)

    def with_parameters(self, **values) -> GridSolver:
        """A copy of this solver with other physical parameter values (numbers, or arrays of
        shape (k,)), checked as the constructor checks them (the solver's dtype holds them
        too); ``dt`` is not re-checked.

        Raises:
            ValueError: an unknown parameter or a value outside its range;
                :class:`~physml.solvers.errors.UnstableStepError` for a speed its advection
                step is unstable at whatever the dt (see the constructor).
        """
        self.refuse_grad_parameters(values)
        current = {n: getattr(self, n) for n in self.parameter_names}
        checked = check_parameters(self.PARAMETERS, {**current, **values}, self.grid.ndim)
        check_representable(checked, self.np_dtype)
        clone = shallow_copy(self, **checked)
        require_a_stable_step(clone)  # a speed given where there was none
        return clone

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
        """A copy of this solver with time step ``dt`` (checked for stability, and refused
        where the solver's dtype rounds it to 0 or infinity)."""
        clone = shallow_copy(self, dt=self.checked_dt(dt))
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
        return operator_rates(self, u_max)

    def stable_dt(self, u: np.ndarray | None = None) -> float:
        """Largest stable time step for the state ``u`` (or for linear terms only if None).

        The limit combines the terms as $\\Delta t \\le 1 / \\sum_k (\\lambda_k / L_k)$ with
        $\\lambda_k$ from :meth:`rates` and $L_k$ the scheme's stability limit for that term
        (real axis: diffusion and reaction; imaginary axis: central advection; 1/2 for the
        TVD flux). With ``scheme="imex"`` diffusion is implicit and drops out.
        """
        return stability_limit(term_costs(self, u, self.tableau is None))

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
        return cell_and_ghost_bounds(self.grid, self.bc, u)

    def check_stability(self, u: np.ndarray | None = None, *, bound: float | None = None
                        ) -> None:
        """Raise :class:`~physml.solvers.errors.UnstableStepError` if ``self.dt`` exceeds
        :meth:`stable_dt` of the state ``u`` (or of a state whose :meth:`state_bound` is
        ``bound``).

        The message names the term that sets the limit, and offers ``scheme='imex'`` only
        where diffusion sets it and an implicit diffusion step would allow a larger ``dt``.
        A solver without ``dt`` is refused (:data:`~physml.solvers.checks.DT_NOT_SET`).
        """
        self._require_dt()
        check_step_stability(self, u, bound=bound)

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
            dt: per-sample time steps, shape ``(B,)`` (default: ``self.dt`` for all, which
                must then be set).
            work: reusable work arrays (:class:`StageWork`; never while a tape records):
                the result is then one of them, valid until the next step with ``work``.
                Without it every intermediate is a new array.
        """
        if dt is None:
            self._require_dt()
        batch = u.size // self.grid.size
        if self.fused:
            if dt is None:
                dt = self.time_step_array(None)
            return self._fused_step(u, params, dt, batch, work or StageWork())
        return self._per_sample_step(u, params, dt, batch, tape)

    def _fused_step(self, u: wp.array, params: dict[str, wp.array], dt: wp.array, batch: int,
                    work: StageWork) -> wp.array:
        """Explicit RK: one fused launch per stage (:mod:`physml.solvers.rk_stages`)."""
        grad = u.requires_grad or any(p.requires_grad for p in params.values())
        step_size = time_step_coefficient(dt)
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
            sample = sample_parameters(self, params, b)
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
        nu = params[self.diffusion_parameter]
        explicit = axpy(u, self.rhs(u, params, with_diffusion=False), self.dt)
        return ImplicitDiffusion(self.layout, self.theta, self.dt).step(u, explicit, nu, tape)

    # -------------------------------------------------------------------------- public stepping

    def checked_time_steps(self, dt: Any, batch: int) -> np.ndarray:
        """One time step per sample, ``(batch,)`` in float64: ``self.dt`` for None, else
        ``dt`` (one value or one per sample), each positive and neither 0 nor infinity in the
        solver's dtype (what a rollout's ``dt`` must be)."""
        steps = np.full(batch, self.dt) if dt is None else per_sample(dt, batch, "dt", float)
        require(np.all(np.isfinite(steps) & (steps > 0)), f"dt={dt!r} must be positive numbers")
        if dt is not None:  # self.dt was checked when it was set
            check_representable({"dt": steps if np.ndim(dt) else steps[0]}, self.np_dtype,
                                indexed=True)
        return steps

    def time_step_array(self, steps: np.ndarray | None) -> wp.array:
        """The time steps as the stages read them: ``(1,)`` for ``self.dt`` (``steps``
        None), else ``steps``, one per sample ``(B,)``."""
        values = np.full(1, self.dt) if steps is None else steps
        return wp.array(values, dtype=self.dtype, device=self.device)

    def _require_dt(self) -> None:
        if self.dt is None:
            raise ValueError(DT_NOT_SET)

    def to_warp(self, u: Any, name: str = "u0") -> wp.array:
        """A flat Warp copy of the state ``u`` (NumPy-like, shape ``grid.shape``), validated."""
        arr = finite_state(u, self.grid.shape, name)
        return wp.array(arr.ravel().astype(self.np_dtype), dtype=self.dtype, device=self.device)

    def step(self, u: Any) -> np.ndarray:
        """One time step: NumPy array of shape ``grid.shape`` (or ``(B, *grid.shape)``) in,
        new NumPy array out.

        Raises:
            ValueError: ``u`` of another shape, holding NaN/Inf, or a tensor that requires
                grad (:func:`physml.bridge.rollout` differentiates).
        """
        refuse_grad(u, "u", "solver.step", "use physml.bridge.rollout for gradients")
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
            callback: called with the number of steps done after each step (progress bars);
                a mapping here is refused (``parameters`` is keyword-only).
            parameters: values replacing the solver's, per sample or as fields
                (:meth:`batch_parameter_arrays`).
            dt: per-sample time steps [s], shape (B,) (default ``self.dt``, which must then
                be set; given, a solver built without ``dt`` runs); each positive and
                neither 0 nor infinity in the solver's dtype.

        Returns:
            ``(n_saved, *grid.shape)`` for one state, ``(B, n_saved, *grid.shape)`` for a
            batch: $u$ at steps 0, save_every, 2 save_every, ..., in the solver's dtype (u0
            rounded to it); their times: :meth:`save_times`.

        Raises:
            TypeError: a ``callback`` that is not callable (:func:`check_callback`).
            ValueError: a bad state, count, time step or parameter.
            UnstableStepError: ``dt`` too large for a sample's ``u0`` and parameters.
            BlowUpError: a NaN/Inf appeared; carries the step and the last finite state
                (for a batch, of the first sample that blew up).
        """
        check_callback(callback, "solver.rollout", "pass parameters=...")
        if dt is None:
            self._require_dt()
        refuse_grad(u0, "u0", "solver.rollout", "use physml.bridge.rollout for gradients")
        batched = np.ndim(u0) == self.grid.ndim + 1
        states = real_values(u0, "u0")
        batch = states.shape[0] if batched else 1
        require(batch > 0, f"u0 has shape {states.shape}: a batch of no state")
        require(states.shape[batched:] == self.grid.shape,
                f"u0 has shape {states.shape}; expected {self.grid.shape} or (B, "
                f"*{self.grid.shape})")
        states = finite_state(states, (batch, *self.grid.shape) if batched else self.grid.shape,
                              "u0").reshape(batch, -1)
        self.check_state(states)
        counts, every, n_saved = checked_schedule(n_steps, save_every, batch)
        steps = self.checked_time_steps(dt, batch)
        require(parameters is None or isinstance(parameters, Mapping),
                f"parameters is a {type(parameters).__name__}; pass a mapping of names to "
                f"values, e.g. {{{self.parameter_names[0]!r}: ...}}" if self.parameter_names
                else "parameters: this solver takes none")
        arrays = self.batch_parameter_arrays(batch, parameters or {})
        check_samples(self, arrays, states, steps)
        saved = batch_rollout(self, states, counts, every, steps, arrays, callback)
        out = saved.reshape(batch, n_saved, *self.grid.shape)
        return out if batched else out[0]

    def save_times(self, n_steps: int | Any, save_every: int | Any = 1, t0: float = 0.0, *,
                   dt: Any = None) -> np.ndarray:
        """The times [s] of the states :meth:`rollout` returns for the same ``n_steps``,
        ``save_every`` and ``dt``: $t_0 + k\\,\\Delta t$ at the saved steps
        $k = 0, s, 2s, \\dots, n$ ($s$ = ``save_every``, $n$ = ``n_steps``; the initial state
        first), in float64.

        Args:
            n_steps, save_every, dt: as :meth:`rollout` takes them (each one value, or one per
                sample of shape (B,); ``dt`` None: ``self.dt``, which must then be set).
            t0: the time [s] of the initial state.

        Returns:
            ``(n_saved,)`` where all three are single values, ``(B, n_saved)`` where one is
            given per sample (``n_saved = n_steps // save_every + 1``, as the rollout's).

        Raises:
            ValueError: a count, time step or ``t0`` :meth:`rollout` would refuse (or a
                ``t0`` that is not a finite number), or per-sample values of two lengths.
        """
        refuse_text_and_bools("t0", t0)
        require(is_real(t0) and np.isfinite(t0), f"t0={t0!r} must be a finite number")
        if dt is None:
            self._require_dt()
        given = [np.asarray(value) for value in (n_steps, save_every, dt)]
        sizes = {array.size for array in given if array.ndim}
        require(len(sizes) <= 1, f"n_steps, save_every and dt give one value per sample for "
                f"batches of {sorted(sizes)} samples; give them for one batch size")
        batch = sizes.pop() if sizes else 1
        _, every, n_saved = checked_schedule(n_steps, save_every, batch)
        steps = self.checked_time_steps(dt, batch)
        times = float(t0) + (steps * every)[:, None] * np.arange(n_saved)
        return times if any(array.ndim for array in given) else times[0]

    def settings(self) -> dict[str, Any]:
        """The keyword arguments of this solver's constructor, with the values the solver holds
        now (its parameters, ``dt``, ``theta`` and ``check_every`` as last set): plain
        numbers, tuples and names (``dtype="float64"``, ``limiter="van_leer"``), so the dict
        can be logged or written as JSON or YAML. ``type(solver)(solver.grid, solver.bc,
        **solver.settings())`` builds a solver whose rollouts are bitwise this one's
        (``type(solver)(solver.grid, **solver.settings())`` for a constructor without ``bc``,
        such as :class:`~physml.solvers.DiffusionSorptionSolver1D`'s).

        Each argument of the constructor that can be passed by keyword, but its first two
        positional ones (the grid and the boundary conditions, whatever their names; the grid
        alone where the rest are keyword-only), is read from the attribute of its name (a
        subclass's own arguments included); a constructor taking ``**options`` passes on
        :class:`GridSolver`'s keywords it does not list (``parameters`` too, unless it takes
        every parameter by name). A parameter comes back as a float (a tuple of floats per
        axis), as the solver keeps it however it was given (:meth:`checked_parameter`).

        Raises:
            TypeError: a constructor keyword the solver keeps no attribute of that name for.
        """
        names = _keyword_names(type(self).__init__)
        if _takes_options(type(self).__init__):
            listed = {*names, *(("parameters",) if set(self.parameter_names) <= set(names)
                                else ())}
            names += [name for name in _keyword_names(GridSolver.__init__)
                      if name not in listed]
        return {name: self._setting(name) for name in names}

    def _setting(self, name: str) -> Any:
        """The value of constructor keyword ``name`` that rebuilds this solver."""
        if name == "parameters":
            return {n: getattr(self, n) for n in self.parameter_names}
        if name == "dtype":
            return np.dtype(self.np_dtype).name
        if name == "threads":
            return self.stages.threads
        if name == "limiter":
            return self.limiter.name.lower()
        if name not in self.__dict__:
            raise TypeError(f"{type(self).__name__}.settings(): the constructor takes {name}=, "
                            f"which the solver keeps no attribute {name!r} for")
        return getattr(self, name)

    def replay_steps(self, u: wp.array, arrays: dict[str, wp.array], dt: wp.array,
                        work: StageWork, active: int, most: int) -> tuple[wp.array, int]:
        """Up to ``most`` :meth:`advance` steps of a rollout, and how many ran, replaying the
        recorded launches of fused steps (:func:`~physml.solvers.rollout.replayed_steps`)."""
        return replayed_steps(self, u, arrays, dt, work, active, most)

    def sample_solver(self, arrays: dict[str, wp.array], b: int, dt: float) -> GridSolver:
        """A copy with sample ``b``'s largest parameter values and its ``dt`` (what its
        stability check needs)."""
        solver = self.with_parameters(**sample_maxima(self, arrays, b))
        solver.dt = float(dt)
        return solver

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={format_values(getattr(self, k))}" for k in self.parameter_names)
        return (
            f"{type(self).__name__}(shape={self.grid.shape}, {params}, dt={self.dt}, "
            f"scheme={self.scheme!r}, device={self.device!r}, dtype={self.dtype.__name__})"
        )


_POSITIONAL_SETTINGS = 3
"""How many positional arguments of a constructor :meth:`GridSolver.settings` leaves out:
``self``, the grid and the boundary conditions (passed by position, whatever their names)."""


def _keyword_names(function: Callable) -> list[str]:
    """The names of ``function``'s arguments that can be passed by keyword, in order, but its
    first :data:`_POSITIONAL_SETTINGS` positional ones (fewer where it takes fewer: a
    constructor without boundary conditions)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    arguments = list(inspect.signature(function).parameters.values())
    positional = [p for p in arguments if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                       inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    left_out = {p.name for p in positional[:_POSITIONAL_SETTINGS]}
    return [p.name for p in arguments if p.kind in kinds and p.name not in left_out]


def _takes_options(function: Callable) -> bool:
    """Whether ``function`` takes ``**options`` (keywords it passes on)."""
    return any(p.kind is inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(function).parameters.values())
