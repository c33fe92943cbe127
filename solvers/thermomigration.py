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
level at any fixed step. The step size adapts to a local error estimate.

**Modules.** Here: the units and the solver's settings, diagnostics and fixed steps.
:mod:`physml.solvers.thermomigration_operator` holds its device side (a base class: the
settings' checks, the Warp arrays, $R$, the increment and the error estimate),
:mod:`physml.solvers.thermomigration_run` the adaptive :meth:`~ThermomigrationSolver.run` and
its step control, :mod:`physml.solvers.thermomigration_temperature` the temperature fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import warp as wp

from .checks import check_counts, require
from .dtypes import warp_dtype
from .free_energy import GAS_CONSTANT, FreeEnergy
from .grid import BCKind, BoundaryConditions, Grid, periodic
from .runtime import warp_device
from .thermomigration_operator import ThermomigrationOperator
from .thermomigration_run import adaptive_run, checked_state
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


class ThermomigrationSolver(ThermomigrationOperator):
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
        device: "cpu", "cuda" or "cuda:N".
        dtype: "float64" (default) or "float32"; with the dilute model float32 is not for
            long runs: near the steady state the rounding of $\\ln c$ (5e-7) dominates the
            step's error estimate and caps the step (the Fe–C case took 92,242 steps against
            1,836 in float64). In float32 the mass drifts: the increments sum to zero, but the
            rounding of $c + \\delta$ in each cell repeats from step to step and builds up, to
            a relative 1.8e-6 on PFHub 1 (``variant=cpu``) by t = 50 (5,600 steps) and 3.3e-5
            in the single-precipitate case (``variant=small``, 34,000 steps), against 1e-16 in
            float64.
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
                state = checked_state(self, c, step, step * dt, last_good,
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
        """Integrate from ``c0`` at ``t0`` to ``t_end`` [s] with adaptive steps (the step
        control: :mod:`physml.solvers.thermomigration_run`).

        Args:
            c0: initial composition, shape ``grid.shape``.
            t_end: final time [s].
            save_times: times [s] in (t0, t_end] at which to save (t0 and t_end are always
                saved; default: t_end only). Steps land exactly on them.
            dt0: first step [s] (default: 1e-3 of the diffusion time $\\tau$).
            t0: the time [s] of ``c0``, < ``t_end``; a temperature that varies in time is read
                from t0 on, so a run continued from a snapshot passes the snapshot's time.
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
        return adaptive_run(self, c0, t_end, save_times, dt0, t0, callback, error_scale)

    def __repr__(self) -> str:
        return (f"ThermomigrationSolver(shape={self.grid.shape}, {self.free_energy}, "
                f"kappa={self.kappa:.4g}, Q*={self.heat_of_transport:.4g}, "
                f"device={self.device!r}, dtype={self.dtype.__name__})")
