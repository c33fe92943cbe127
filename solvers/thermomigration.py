r"""Cahn–Hilliard dynamics of a binary alloy in a temperature field (thermomigration), on Warp.

The solute mole fraction $c$ obeys

$$c_t = -\nabla\cdot J,\qquad J = -M(c,T)\Big[(\nabla\mu)_T + \frac{Q^*}{T}\nabla T\Big],\qquad
\mu = \frac{\partial f}{\partial c}(c, T) - \kappa\nabla^2 c,$$

with $f$ a homogeneous free energy of :mod:`physml.solvers.free_energy` [J/mol], $\kappa$ the
gradient-energy coefficient [J m^2/mol] and $Q^*$ the heat of transport [J/mol].
$(\nabla\mu)_T$ is the gradient of $\mu$ at fixed temperature (de Groot–Mazur): temperature acts on
the flux only through the $Q^*$ term and through $f$'s local equilibrium.

**Sign of $Q^*$.** The thermal part of the flux is $-MQ^*\nabla T/T$: for $Q^* > 0$ solute flows
down the temperature gradient, to the cold side; for $Q^* < 0$ (e.g. carbon in iron as used in
the cases) it collects on the hot side. For the dilute model the zero-flux state is
$c \propto \exp(Q^*/(RT))$.

**Units.** Inputs are SI. Internally (:class:`Units`) lengths are measured in the cell width
$\ell$ of axis 0, temperatures in $T_{ref}$, energies in $RT_{ref}$, time in
$\tau = \ell^2/D_{ref}$ with $D_{ref} = D(T_{ref})$; the equation keeps its form with
$\tilde M = M RT_{ref}/D_{ref}$, $\tilde\kappa = \kappa/(RT_{ref}\ell^2)$,
$\tilde Q^* = Q^*/(RT_{ref})$. Results come back in SI.

**Space.** Cell-centred finite volumes (:mod:`physml.solvers.grid`), 1D/2D/3D, each axis
periodic or no-flux ($\partial_n c = 0$ and $J\cdot n = 0$). The flux through the face between
cells $l$ and $h$ is

$$J_f = -M(\bar c, T_f)\,\frac{[\mu_0(c_h, T_f) - \mu_0(c_l, T_f)] - \kappa(\Delta_h c_h -
\Delta_h c_l) + Q^* T_f (1/T_l - 1/T_h)}{\Delta x},$$

$T_f$, $\bar c$ the face averages: each face flux is computed once and taken by both cells
(kernels in :mod:`physml.solvers.cahn_hilliard_kernels`; the factors that depend on $T$ only
are computed when $T$ is set), so solute is conserved to rounding (in float64; float32: see
``dtype`` of :class:`ThermomigrationSolver`), and for the dilute model the
discrete zero-flux state is exactly $c_i \propto \exp(Q^*/(RT_i))$. Second order in space.

**Time.** The linearly stabilised semi-implicit scheme (Shen & Yang 2010) in increment form,

$$\big(I + \Delta t\,(s_2\Lambda + s_4\Lambda^2)\big)(c^{n+1} - c^n) = \Delta t\,R(c^n),$$

$R$ the explicit right-hand side above, $\Lambda = -\Delta_h$, $s_2$ a bound of the effective
diffusivity $M\,\partial^2 f/\partial c^2$ and $s_4 = 2\max M\,\kappa$: energy stable at any step
for constant mobility while the composition stays where $s_2$ bounds $M f''$, first order, with
the same steady states as the PDE. For the double well that is between the wells: $s_2$ is its
curvature at the wells, and outside them $f''$ grows quadratically (8.9 times the wells' at
c = 0 for PFHub 1's wells at 0.3 and 0.7), so a start far outside the wells stepped at fixed
steps far beyond the accuracy limit (:meth:`rollout` at dt = 1e4 on PFHub 1) can blow up; the
adaptive :meth:`run` keeps its steps at the error tolerance. The system
has constant coefficients and is solved by FFT/DCT (:mod:`physml.solvers.spectral_solve`);
its zero mode is the identity, which keeps the mass; the Euler increment's mean, zero but for
rounding that grows with $\Delta t$, is dropped there, so that the mass stays at rounding
level at any fixed step. The step size adapts to a local error
estimate, relative to $\max|c_0|$: the controller aims each next step at ``tolerance`` and a
step is redone (a quarter as long) only when its estimate exceeds 4 ``tolerance`` (in the
shipped cases accepted steps stay near or below the tolerance); the estimate is the larger of
the splitting error
$\lVert\Delta t\,R(c^n) - \delta_n\rVert_\infty = \lVert\Delta t(s_2\Lambda + s_4\Lambda^2)
\delta_n\rVert_\infty$ (how far the stabilisation slows the step against explicit Euler) and
the truncation error $\tfrac12\lVert\delta_n - (\Delta t_n/\Delta t_{n-1})\delta_{n-1}
\rVert_\infty \approx \tfrac12\Delta t^2\lVert c_{tt}\rVert_\infty$; both are $O(\Delta t^2)$.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import warp as wp

from .built_solver import BuiltSolver
from .cahn_hilliard_kernels import (
    RowLaunch,
    add_kernel,
    divergence_kernel,
    face_coefficients_kernel,
    face_flux_kernel,
    laplacian_kernel,
    step_error_kernel,
)
from .checks import check_counts, finite_state, require
from .dtypes import warp_dtype
from .errors import BlowUpError, is_real
from .free_energy import GAS_CONSTANT, FreeEnergy
from .grid import BCKind, BoundaryConditions, Grid, periodic
from .runtime import warp_device
from .spectral_solve import SpectralSolve
from .thermomigration_trajectory import Trajectory

DEFAULT_TOLERANCE = 3e-5
"""Default local error per step (relative to $\\max|c_0|$). Chosen from
``benchmarks/phasefield_tolerance.py`` (spinodal decomposition, PFHub 1, against fixed steps
extrapolated to $\\Delta t \\to 0$, every time unit to t = 50): the free energy's largest error
while the phases separate, near t = 15 where it falls fastest, is 6.1 % at 1e-3, 1.7 % at 1e-4,
0.88 % at 3e-5 and 0.50 % at 1e-5, at 1050, 3440, 6330 and 11000 steps to t = 50; the error
falls as $\\sqrt{tol}$ (a first-order scheme) and the steps rise as $1/\\sqrt{tol}$.
3e-5 is the loosest that keeps it below 1 %. The tolerance bounds each step's local error;
the composition field's error, what the steps' errors add up to and the phase boundaries'
shift, is far larger: at 3e-5 on PFHub 1 (``variant=cpu``, 100² cells, against fixed steps
extrapolated to $\\Delta t \\to 0$) about 1 %, 3 % and 6 % of $\\max|c_0|$ at t = 5, 10 and 20
(0.4 % in the free energy to t = 20; 2024 steps), 10 % at 1e-4 and 1 % at 1e-6 (11,335 steps)
at t = 20."""

# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """The scales of the dimensionless equations.

    Attributes:
        length: $\\ell$ [m], the cell width along axis 0.
        temperature: $T_{ref}$ [K].
        diffusivity: $D_{ref} = D(T_{ref})$ [m^2/s].
    """

    length: float
    temperature: float
    diffusivity: float

    @property
    def energy(self) -> float:
        """$RT_{ref}$ [J/mol]."""
        return GAS_CONSTANT * self.temperature

    @property
    def time(self) -> float:
        """$\\tau = \\ell^2/D_{ref}$ [s]."""
        return self.length**2 / self.diffusivity


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------


class ThermomigrationSolver(BuiltSolver):
    """Cahn–Hilliard with thermomigration; see the module docstring for the equations.

    Args:
        grid: the grid [m]; ``c`` has shape ``grid.shape``.
        free_energy: :class:`~physml.solvers.free_energy.DiluteSolution`, ``DoubleWell`` or
            ``RegularSolution``.
        temperature: $T$ [K]: an array of shape ``grid.shape`` (fixed in time, e.g.
            :func:`~physml.solvers.thermomigration_temperature.linear_temperature`) or a
            callable ``t [s] -> array`` (e.g.
            :class:`~physml.solvers.thermomigration_temperature.HeatConductionTemperature`).
        kappa: gradient-energy coefficient $\\kappa$ [J m^2/mol], >= 0.
        heat_of_transport: $Q^*$ [J/mol] (sign: see the module docstring).
        bc: periodic or no-flux (Neumann 0) per axis (default periodic).
        T_ref: reference temperature [K] of the units (default: mean initial temperature).
        tolerance: local error per step allowed in $c$, relative to $\\max|c_0|$ (adaptive
            $\\Delta t$): it bounds each step's error, not the solution's, which the steps'
            errors add up to (see :data:`DEFAULT_TOLERANCE` for the error it gives). The steps
            grow as $1/\\sqrt{tol}$ (PFHub 1 on 50² cells to t = 5: 221 steps at 3e-5, 4025
            at 1e-7, by that rate 1.2e6 at 1e-12). At least the dtype's machine epsilon (1.2e-7 in
            float32, 2.2e-16 in float64): each step rounds $c$ to about that, relative to
            $\\max|c|$, so a smaller one asks for what the arithmetic does not hold, and is
            refused.
        dt_max: largest step [s] (default: unlimited).
        stabilisation: factor on $s_2$ (>= 1/2 for energy stability).
        device: "cpu", "cuda" or "cuda:N". dtype: "float64" (default) or "float32"; with the
            dilute model float32 is not for long runs: near the steady state the rounding of
            $\\ln c$ (5e-7) dominates the step's error estimate and caps the step (the Fe–C
            case took 92,242 steps against 1,836 in float64). In float32 the mass drifts:
            the increments sum to zero, but the rounding of $c + \\delta$ in each cell
            repeats from step to step and builds up, to a relative 1.8e-6 on PFHub 1
            (``variant=cpu``) by t = 50 (5,600 steps) and 3.3e-5 in the single-precipitate
            case (``variant=small``, 34,000 steps), against 1e-16 in float64.
        fft_backend: "scipy" or "torch" (default: scipy on the CPU, torch on CUDA).
        threads: host threads for the kernels and FFTs on the CPU, at most one per grid row
            (default: every available core, on grids large enough to gain from it); results
            do not depend on it.
        check_every: steps between NaN/Inf checks.

    ``kappa``, ``heat_of_transport``, ``stabilisation``, ``tolerance`` and ``dt_max`` may be
    set on a built solver: each is checked when the next :meth:`rollout` or :meth:`run` starts,
    and the coefficients made from the first three are derived again then, or at the next
    :meth:`rhs` or :meth:`increment` if one comes first (which checks them too);
    ``check_every`` may be set as well, and is checked as it is set. The rest
    (grid, bc, free_energy, device, dtype, units, the temperature the solver holds, ...) is
    read-only (:class:`~physml.solvers.built_solver.BuiltSolver`): build a new solver to
    change them. It has no differentiable counterpart: a tensor that requires grad is refused.

    A solver pickles (into a ``DataLoader`` worker, say) as its settings and the temperature
    it holds (with a ``HeatConductionTemperature``, its heat solver and the heat steps taken
    so far); the unpickled one rebuilds its Warp arrays and FFT plans on the same device and
    steps bitwise as the original. ``copy.copy`` and ``copy.deepcopy`` do the same: the copy
    has Warp arrays of its own. The adaptive step of :meth:`run` and its error history belong
    to the call, not the solver: a run continued by another call passes ``dt0`` and
    ``error_scale``.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("kappa", "heat_of_transport")
    SETTABLE = ("stabilisation", "tolerance", "dt_max", "check_every")
    GRADIENTS = None
    _WARP_STATE: ClassVar[tuple[str, ...]] = (
        "periodic_axes", "_shape3", "_launch", "_faces", "_flux", "_lap", "_euler", "_error",
        "_row_errors", "_p", "_spectral", "_q", "_T")

    def __init__(
        self,
        grid: Grid,
        free_energy: FreeEnergy,
        temperature: np.ndarray | Callable[[float], np.ndarray],
        *,
        kappa: float = 0.0,
        heat_of_transport: float = 0.0,
        bc: BoundaryConditions | None = None,
        T_ref: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        dt_max: float | None = None,
        stabilisation: float = 1.0,
        device: str = "cpu",
        dtype: str = "float64",
        fft_backend: str | None = None,
        threads: int | None = None,
        check_every: int = 20,
    ) -> None:
        self.grid, self.free_energy = grid, free_energy
        self.bc = periodic(grid.ndim) if bc is None else bc
        for axis, (lo, hi) in enumerate(self.bc.sides):
            for side in (lo, hi):
                require(side.kind == BCKind.PERIODIC or (side.kind == BCKind.NEUMANN
                                                          and side.value == 0),
                        f"bc on axis {axis}: Cahn–Hilliard supports periodic or no-flux "
                        f"(neumann 0), got {side.kind.name.lower()} {side.value:g}")
        require(all(n >= 3 for n in grid.shape),
                f"grid shape={grid.shape}: every axis needs >= 3 cells for the 4th-order stencil")
        self.device, self.dtype = warp_device(device), warp_dtype(dtype)
        self.np_dtype = np.float64 if self.dtype == wp.float64 else np.float32
        self.kappa, self.heat_of_transport = kappa, heat_of_transport  # a tensor with grad: refused
        self.tolerance, self.dt_max = tolerance, dt_max
        self.stabilisation, self.check_every = stabilisation, check_every
        self._check_settings()
        self.kappa, self.heat_of_transport = float(kappa), float(heat_of_transport)
        self.tolerance, self.stabilisation = float(tolerance), float(stabilisation)
        self._temperature_source = temperature
        T0 = self._temperature_array(0.0)
        T_ref = float(np.mean(T0)) if T_ref is None else float(T_ref)
        require(T_ref > 0, f"T_ref={T_ref} must be > 0 K")
        self.units = Units(grid.dx[0], T_ref, float(free_energy.diffusion_coefficient(T_ref)))
        self._initial_temperature = T0  # an evolving temperature is not asked back in time
        self.temperature, self._temperature_time = T0, 0.0
        self._build_arrays(threads, fft_backend)
        self.fix_attributes()

    def _check_settings(self) -> None:
        """ValueError naming the first setting out of its range: what the constructor is
        given, and what was set since, when a rollout or run starts."""
        for name, low in (("kappa", 0.0), ("heat_of_transport", -np.inf)):
            value = getattr(self, name)
            require(is_real(value) and np.isfinite(value) and value >= low,
                    f"{name}={value!r} must be a finite number"
                    + (" >= 0 J m^2/mol" if low == 0 else " (J/mol)"))
        tolerance, dt_max = self.tolerance, self.dt_max
        require(is_real(tolerance) and np.isfinite(tolerance) and tolerance > 0,
                f"tolerance={tolerance} must be > 0")
        resolution = float(np.finfo(self.np_dtype).eps)
        require(tolerance >= resolution,
                f"tolerance={tolerance:g} is below what {np.dtype(self.np_dtype).name} "
                f"resolves: each step rounds c to about {resolution:.1e} of max|c|; allowed: "
                f"tolerance >= {resolution:.1e}"
                + (" (or dtype float64)" if self.np_dtype == np.float32 else ""))
        require(dt_max is None or (is_real(dt_max) and dt_max > 0),
                f"dt_max={dt_max} must be > 0 s (or None: unlimited)")
        require(is_real(self.stabilisation) and np.isfinite(self.stabilisation)
                and self.stabilisation >= 0.5,
                f"stabilisation={self.stabilisation} must be a finite number >= 1/2")

    def _build_arrays(self, threads: int | None, fft_backend: str | None) -> None:
        """The Warp arrays, kernel launches and FFT plans made from the grid, bc, free energy,
        units, dtype and device, and the coefficients of :meth:`_derive_coefficients` (by the
        constructor, and again by :meth:`__setstate__`)."""
        grid, padding = self.grid, 3 - self.grid.ndim
        self.__dict__["periodic_axes"] = wp.vec3i(*[1] * padding + [
            int(self.bc.is_periodic(d)) for d in range(grid.ndim)])
        self._threads, self._shape3 = threads, (1,) * padding + tuple(grid.shape)
        self._launch = RowLaunch(self._shape3, self.device, self.dtype, threads=threads)
        self._faces = [wp.zeros((3, *self._shape3), dtype=self.dtype, device=self.device)
                       for _ in range(3)]
        self._flux = wp.zeros_like(self._faces[0])
        self._lap, self._euler = (wp.zeros(self._shape3, dtype=self.dtype, device=self.device)
                                  for _ in range(2))
        self._error = wp.zeros(len(self._launch.chunks), dtype=self.dtype, device=self.device)
        self._row_errors: wp.array | None = None  # one per launched row of cells
        self._p = self._array(self.free_energy.scaled_parameters(self.units.temperature))
        self._spectral = SpectralSolve(grid.shape, tuple(h / self.units.length for h in grid.dx),
                                       tuple(self.bc.is_periodic(d) for d in range(grid.ndim)),
                                       self.device, fft_backend,
                                       workers=len(self._launch.chunks))
        self._derive_coefficients()

    def _derive_coefficients(self) -> None:
        """The scaled $\\kappa$ and $Q^*$ (``_q``, with the inverse cell widths), the face
        coefficients and $s_2$ from ``kappa``, ``heat_of_transport``, ``stabilisation`` and
        the temperature held; again when a rollout or run starts after one of them was set."""
        inv_dx = [0.0] * (3 - self.grid.ndim) + [1.0 / (h / self.units.length)
                                                  for h in self.grid.dx]
        self._kappa_scaled = float(self.kappa) / (self.units.energy * self.units.length**2)
        self._q = self._array([self._kappa_scaled,
                               float(self.heat_of_transport) / self.units.energy, *inv_dx])
        self._settings = self._settings_now()
        self._set_temperature(self.temperature, self._temperature_time)

    def _start(self) -> None:
        """If a setting was set since the coefficients were derived, check the settings and
        derive them again (a comparison otherwise: the checks cost a short rollout 8 %)."""
        settings = self._settings_now()
        if settings is None or settings != self._settings:
            self._check_settings()
            self._derive_coefficients()

    def _settings_now(self) -> tuple | None:
        """The settable settings as floats (None kept): copies, which an in-place change of a
        0-d array set as a setting does not reach; None if one is not a number."""
        try:
            return tuple(None if (v := getattr(self, n)) is None else float(v)
                         for n in ("kappa", "heat_of_transport", "stabilisation", "tolerance",
                                   "dt_max"))
        except (TypeError, ValueError):
            return None

    def warp_state(self) -> tuple[tuple[str, ...], dict]:
        """:data:`_WARP_STATE` (the settings and the temperature held are pickled), rebuilt
        with the FFT backend it used."""
        return self._WARP_STATE, {"fft_backend": self._spectral.backend}

    def rebuild_warp_state(self, fft_backend: str | None) -> None:
        self._build_arrays(self._threads, fft_backend)

    # ----------------------------------------------------------------------------- helpers

    def _array(self, values) -> wp.array:
        return wp.array(np.asarray(values, dtype=self.np_dtype), dtype=self.dtype,
                        device=self.device)

    def _temperature_array(self, t: float) -> np.ndarray:
        source = self._temperature_source
        T = finite_state(source(t) if callable(source) else source, self.grid.shape,
                         "temperature")
        require(float(np.min(T)) > 0, "temperature must be > 0 K everywhere")
        return T

    def _set_temperature(self, T: np.ndarray, t: float) -> None:
        self.__dict__.update(temperature=T, _temperature_time=t)
        self._T = self._array((T / self.units.temperature).reshape(self._shape3))
        self._launch(face_coefficients_kernel,
                     [self._T, self._p, self._q, int(self.free_energy.kind), self._launch.shape,
                      self.periodic_axes], self._faces)
        D_bound = self.free_energy.diffusivity_bound(float(T.min()), float(T.max()))
        self._s2 = self.stabilisation * D_bound / self.units.diffusivity

    def _update_temperature(self, t: float) -> None:
        if callable(self._temperature_source) and t != self._temperature_time:
            self._set_temperature(self._initial_temperature if t == 0.0
                                  else self._temperature_array(t), t)

    def to_warp(self, c: Any, name: str = "c0") -> wp.array:
        """A Warp copy of the composition ``c`` (shape ``grid.shape``), validated; shaped
        ``(n0, n1, n2)`` with leading axes of one cell below 3D."""
        arr = finite_state(c, self.grid.shape, name)
        self.free_energy.check_composition(arr)
        return self._array(arr.reshape(self._shape3))

    def to_numpy(self, c: wp.array) -> np.ndarray:
        """A state as a float64 NumPy array of shape ``grid.shape``."""
        return c.numpy().reshape(self.grid.shape).astype(np.float64)

    # --------------------------------------------------------------------------- operators

    def _require_cells(self, **arrays: wp.array) -> None:
        """ValueError naming the first array that is not a contiguous cell field (the kernels
        address them as flat memory)."""
        for name, array in arrays.items():
            require(array.is_contiguous and tuple(array.shape) == self._shape3,
                    f"{name} must be a contiguous array of shape {self._shape3}, got "
                    f"shape {tuple(array.shape)}{'' if array.is_contiguous else ' (strided)'}")

    def rhs(self, c: wp.array, scale: float = 1.0, out: wp.array | None = None) -> wp.array:
        """``scale`` $\\cdot R(c)$, $R = -\\nabla_h\\cdot\\tilde J$ the scaled rate
        $\\partial c/\\partial\\tilde t$ (``scale`` = $\\Delta t$: the Euler increment), into
        ``out`` if given, else a new array; ``c`` and ``out`` contiguous and shaped as
        :meth:`to_warp` gives. A ``kappa``, ``heat_of_transport`` or ``stabilisation`` set
        since the coefficients were last derived is checked, and used, from this call on.

        Raises:
            ValueError: such a setting out of its range, or ``c`` or ``out`` of another shape.
        """
        self._start()
        out = wp.empty_like(c) if out is None else out
        self._require_cells(c=c, out=out)
        shape, periodic_axes = self._launch.shape, self.periodic_axes
        self._launch(laplacian_kernel, [c, self._q, shape, periodic_axes], [self._lap],
                     streaming=True)
        self._launch(face_flux_kernel,
                     [c, self._lap, *self._faces, self._p, self._q, int(self.free_energy.kind),
                      shape, periodic_axes], [self._flux])
        self._launch(divergence_kernel,
                     [self._flux, self._q, shape, periodic_axes, self.dtype(scale)], [out],
                     streaming=True)
        return out

    def mobility_bound(self, c: np.ndarray) -> float:
        """Largest scaled mobility $\\tilde M$ over ``c`` and the temperature field."""
        M = self.free_energy.mobility(c, self.temperature)
        return float(np.max(M)) * self.units.energy / self.units.diffusivity

    def increment(self, c: wp.array, dt: float, s4: float) -> tuple[wp.array, wp.array]:
        """$\\delta = c^{n+1} - c^n$ of one stabilised step of scaled size ``dt`` (a new array),
        and the explicit Euler increment $\\Delta t\\,R(c^n)$ (a work array, overwritten by the
        next call); with the settings :meth:`rhs` takes."""
        euler = self.rhs(c, dt, out=self._euler)
        return self._spectral.solve(euler, dt, self._s2, s4, zero_mean=True), euler

    def _step_error(self, c: wp.array, delta: wp.array, euler: wp.array,
                    previous: tuple[wp.array, float] | None, h: float) -> float:
        """The local error estimate of a step of size ``h`` from ``c`` (see the module
        docstring), reduced on the device: one value per launch chunk leaves it (a single one
        on CUDA). Infinite if the step is not finite or leaves the model's compositions (a
        dilute model's c > 0, a regular solution's 0 < c < 1), so that it is retried smaller."""
        self._error.zero_()
        ratio = 0.0 if previous is None else h / previous[1]
        lower, upper = self.free_energy.compositions
        rows = self.grid.size // self._launch.row
        if self._row_errors is None or self._row_errors.shape[0] != rows:
            self._row_errors = wp.empty(rows, dtype=self.dtype, device=self.device)
        self._launch(step_error_kernel,
                     [c, delta, euler, delta if previous is None else previous[0],
                      self.dtype(ratio), int(previous is not None), self.dtype(lower),
                      self.dtype(upper)],
                     [self._row_errors, self._error],
                     chunk_slot=True)
        return float(self._error.numpy().max())

    def _advance(self, c: wp.array, delta: wp.array) -> None:
        """$c \\leftarrow c + \\delta$ in place."""
        self._require_cells(c=c, delta=delta)
        self._launch(add_kernel, [delta], [c], streaming=True)

    def _checked(self, c: wp.array, step: int, t: float, last_good: tuple, advice: str
                 ) -> np.ndarray:
        """``c`` as NumPy, or :class:`BlowUpError` at ``step`` (time ``t`` [s]) if not finite
        or outside the model's compositions (a dilute or regular solution's c outside (0, 1):
        a step too long for the free energy), with the caller's ``advice``."""
        state = self.to_numpy(c)
        if not np.all(np.isfinite(state)):
            raise BlowUpError(step=step, t=t, field="c", last_good_step=last_good[0],
                              last_good_state=last_good[1])
        low, high = self.free_energy.compositions
        if not (state.min() > low and state.max() < high):
            raise BlowUpError(step=step, t=t, field="c", last_good_step=last_good[0],
                              last_good_state=last_good[1],
                              what=f"left the model's compositions ({low:g}, {high:g}): "
                                   f"min {state.min():.3g}, max {state.max():.3g},",
                              advice=advice)
        return state

    def _s4(self, c: np.ndarray) -> float:
        return 2.0 * self.mobility_bound(c) * self._kappa_scaled

    # ------------------------------------------------------------------------ diagnostics

    def total_mass(self, c: np.ndarray) -> float:
        """$\\int c\\,dV$ [m^d], summed with compensation (``math.fsum``)."""
        return math.fsum(np.asarray(c, dtype=np.float64).ravel()) * float(np.prod(self.grid.dx))

    def total_free_energy(self, c: np.ndarray) -> float:
        """$\\int f(c, T) + \\tfrac\\kappa2|\\nabla_h c|^2\\,dV$ [J m^d/mol], forward differences
        over interior and periodic faces (the discrete energy the scheme dissipates)."""
        c = np.asarray(c, dtype=np.float64)
        bulk = np.sum(self.free_energy.free_energy(c, self.temperature))
        gradient = 0.0
        for axis, h in enumerate(self.grid.dx):
            diff = (np.roll(c, -1, axis) - c if self.bc.is_periodic(axis)
                    else np.diff(c, axis=axis))
            gradient += np.sum(diff**2) / h**2
        return float((bulk + 0.5 * self.kappa * gradient) * np.prod(self.grid.dx))

    # --------------------------------------------------------------------------- stepping

    def step(self, c: Any, *, dt: float) -> np.ndarray:
        """One step of ``dt`` [s] (no adaptivity): NumPy array in, new array out."""
        return self.rollout(c, 1, dt=dt)[-1]

    def rollout(self, c0: Any, n_steps: int, save_every: int = 1, *, dt: float) -> np.ndarray:
        """``n_steps`` steps of fixed size ``dt`` [s] from ``c0`` (temperature held at t = 0).
        ``dt`` is keyword-only: the third argument is ``save_every``, as in every solver's
        ``rollout(state0, n_steps, save_every)``.

        Returns:
            Array ``(n_steps // save_every + 1, *grid.shape)``: $c$ at steps 0, save_every, ...

        Raises:
            BlowUpError: a NaN/Inf appeared, or c left the model's compositions (checked at
                saves and every ``check_every`` steps).
        """
        n_steps, save_every = check_counts(n_steps, save_every)
        require(np.isfinite(dt) and dt > 0, f"dt={dt} must be a positive number of seconds")
        self._start()
        c = self.to_warp(c0)
        saved = [self.to_numpy(c)]
        self._update_temperature(0.0)  # whatever time a run before left it at
        s4, h = self._s4(saved[0]), dt / self.units.time
        last_good = (0, saved[0])
        for step in range(1, n_steps + 1):
            self._advance(c, self.increment(c, h, s4)[0])
            if step % save_every == 0 or step % self.check_every == 0:
                state = self._checked(c, step, step * dt, last_good,
                                      "take shorter steps (or run(), whose steps adapt)")
                last_good = (step, state)
                if step % save_every == 0:
                    saved.append(state)
        return np.stack(saved)

    def run(
        self,
        c0: Any,
        t_end: float,
        save_times: np.ndarray | None = None,
        dt0: float | None = None,
        t0: float = 0.0,
        callback: Callable[[float, int, np.ndarray | None], None] | None = None,
        error_scale: float | None = None,
    ) -> Trajectory:
        """Integrate from ``c0`` at ``t0`` to ``t_end`` [s] with adaptive steps.

        Args:
            c0: initial composition, shape ``grid.shape``.
            t_end: final time [s].
            save_times: times [s] in (t0, t_end] at which to save (t0 and t_end are always
                saved; default: t_end only). Steps land exactly on them.
            dt0: first step [s] (default: 1e-3 of the diffusion time $\\tau$).
            callback: ``callback(t, step, state)`` after each accepted step; ``state`` is the
                NumPy composition at save times and None otherwise.
            error_scale: the $\\max|c|$ the ``tolerance`` is relative to (default: that of
                ``c0``; 0, an all-zero start, makes it absolute). A run continued call by call
                from its snapshots passes its first start's, so that its steps do not loosen
                as $\\max|c|$ grows.

        Raises:
            BlowUpError: $c$ became NaN/Inf, left the model's compositions (a step the error
                estimate accepted), or could not be advanced; carries the step and the last
                good state.
        """
        require(np.isfinite(t_end) and t_end > t0, f"t_end={t_end} must be > t0={t0} s")
        self._start()
        require(error_scale is None or (np.isfinite(error_scale) and error_scale >= 0),
                f"error_scale={error_scale} must be a number >= 0 (or None: max|c0|)")
        require(dt0 is None or (np.isfinite(dt0) and dt0 > 0),
                f"dt0={dt0} must be a positive number of seconds (or None: 1e-3 of the "
                "diffusion time)")
        targets = np.array([t_end] if save_times is None else save_times, dtype=np.float64)
        require(targets.ndim == 1 and targets.size > 0,
                f"save_times={save_times!r}: give times in ({t0}, {t_end}], or None to save "
                "t_end only")
        slack = 1e-12 * abs(t_end)  # of the time, whatever its sign
        require(bool(np.all(np.diff(targets) > 0)) and targets[0] > t0 and
                targets[-1] <= t_end + slack,
                f"save_times must increase within ({t0}, {t_end}]")
        if targets[-1] < t_end - slack:  # the run goes on to t_end, which it saves
            targets = np.append(targets, t_end)
        tau = self.units.time
        c = self.to_warp(c0)
        state = self.to_numpy(c)
        out = Trajectory()
        self._save(out, t0, state, 0)
        self._update_temperature(t0)  # the mobility bound reads the temperature at t0
        s4 = self._s4(state)
        scale = float(np.max(np.abs(state)) if error_scale is None else error_scale) or 1.0
        t = t0 / tau
        dt = (1e-3 if dt0 is None else dt0 / tau)
        dt_max = np.inf if self.dt_max is None else self.dt_max / tau
        previous: tuple[wp.array, float] | None = None
        last_good, step = (0, state), 0
        for target in targets / tau:
            while t < target - 1e-14 * abs(target):
                self._update_temperature(t * tau)
                h = min(dt, dt_max, target - t)
                delta, euler = self.increment(c, h, s4)
                error = self._step_error(c, delta, euler, previous, h) / scale
                if not np.isfinite(error) or error > 4 * self.tolerance:
                    out.rejected += 1
                    dt = h / 4
                    if dt * tau < 1e-12 * max(abs(t_end), 1.0):  # c itself is still finite
                        raise BlowUpError(step=step + 1, t=t * tau, field="c",
                                          last_good_step=step, last_good_state=self.to_numpy(c),
                                          what="could not be advanced (every smaller step's "
                                               "error estimate was NaN/Inf or above 4x the "
                                               "tolerance)",
                                          advice="lower dt_max or the tolerance, or check the "
                                                 "inputs (the initial field, and the temperature "
                                                 "and heat of transport or their non-dimensional "
                                                 "counterparts)")
                    continue
                self._advance(c, delta)
                t, step = t + h, step + 1
                previous = (delta, h)
                out.dt.append(h * tau)
                grow = 2.0 if error == 0 else min(2.0, max(0.5, 0.9 * np.sqrt(self.tolerance
                                                                             / error)))
                if h == min(dt, dt_max):  # a step cut short by a save time keeps dt
                    dt = h * grow
                at_save = t >= target - 1e-14 * abs(target)
                snapshot = None
                if at_save or step % self.check_every == 0:
                    snapshot = self._checked(c, step, t * tau, last_good,
                                             "lower the tolerance or dt_max: the error "
                                             "estimate accepted a step that left them")
                    last_good = (step, snapshot)
                if at_save:
                    self._save(out, target * tau, snapshot, step)
                if callback is not None:
                    callback(t * tau, step, snapshot if at_save else None)
        return out

    def _save(self, out: Trajectory, t: float, state: np.ndarray, step: int) -> None:
        out.times.append(float(t))
        out.states.append(state)
        out.mass.append(self.total_mass(state))
        out.free_energy.append(self.total_free_energy(state))
        out.steps.append(step)

    def __repr__(self) -> str:
        return (f"ThermomigrationSolver(shape={self.grid.shape}, {self.free_energy}, "
                f"kappa={self.kappa:.4g}, Q*={self.heat_of_transport:.4g}, "
                f"device={self.device!r}, dtype={self.dtype.__name__})")
