r"""2D incompressible Navier–Stokes in vorticity–streamfunction form, Fourier pseudo-spectral.

$$\omega_t + \mathbf u\cdot\nabla\omega = \nu\,\Delta\omega + f,\qquad
-\Delta\psi = \omega,\qquad \mathbf u = (\partial_y\psi,\ -\partial_x\psi),$$
on a periodic box $[a_x, b_x)\times[a_y, b_y)$ (lengths $L_x, L_y$), so $\nabla\cdot\mathbf u = 0$
exactly. The forcing is the one of Li et al.'s Navier–Stokes benchmark (FNO, PINO),
$f = A\,[\sin 2\pi(x/L_x + y/L_y) + \cos 2\pi(x/L_x + y/L_y)]$, amplitude $A$ (0 turns it off).

Space: Fourier pseudo-spectral on the cell centres of a :class:`~physml.solvers.grid.Grid`
(spectral accuracy for smooth fields); the product $\mathbf u\cdot\nabla\omega$ is formed on the
grid and de-aliased by the 2/3 rule (modes with $|k_i| \ge n_i/3$ of it are zeroed); the mean
of $\psi$ is 0. Time: Lawson's integrating-factor RK4 on $\hat v = e^{\nu|k|^2 t}\hat\omega$ (fourth
order; the viscous term is exact, so the step is limited only by advection:
$\Delta t\,\tfrac{2\pi}{3}(\max|u|/\Delta x + \max|v|/\Delta y) \le 2\sqrt2$). Taylor–Green
vortices, on which $\mathbf u\cdot\nabla\omega = 0$, decay exactly as $e^{-\nu|k|^2 t}$.
Units: lengths [m], $\nu$ [m^2/s], $\omega$ [1/s], $A$ [1/s^2].

NumPy and ``scipy.fft`` on the CPU (no Warp kernel: the work is FFTs). Reference: Canuto,
Hussaini, Quarteroni & Zang, *Spectral Methods* (2006), §3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.fft

from .built_solver import BuiltSolver, shallow_copy
from .checks import DT_NOT_SET, check_callback, check_counts, finite_state, require
from .dtypes import warp_dtype
from .errors import BlowUpError, UnstableStepError, refuse_grad, whole_number
from .grid import BoundaryConditions, Grid, periodic
from .parameters import Parameter, check_parameters, check_representable
from .runtime import device_name

RK4_IMAGINARY_LIMIT = 2 * math.sqrt(2)
"""RK4 is stable for purely imaginary $\\lambda\\Delta t$ up to $|\\lambda\\Delta t| = 2\\sqrt2$."""

_DTYPES = {"float32": (np.float32, np.complex64), "float64": (np.float64, np.complex128)}


class NavierStokesSolver2D(BuiltSolver):
    """Pseudo-spectral vorticity solver (module docstring). State: $\\omega$, shape ``(nx, ny)``.

    Args:
        grid: a 2D grid (even cell counts >= 4); fields live on its cell centres.
        bc: boundary conditions: periodic on every side (the default and the only choice).
        nu: kinematic viscosity [m^2/s], >= 0.
        forcing: forcing amplitude $A$ [1/s^2].
        dt: time step [s] (None: unset; see :meth:`stable_dt` and :meth:`with_dt`). Refused
            where ``dtype`` rounds it to 0 or infinity (the steps run in that dtype).
        scheme: "ifrk4" (integrating-factor RK4, order 4).
        device: "cpu" (the FFTs run in NumPy/SciPy).
        dtype: "float32" or "float64" (a name, or a NumPy, PyTorch or Warp float type).
        check_every: steps between NaN/Inf checks in a rollout.

    ``nu``, ``forcing``, ``dt`` and ``check_every`` may be set on a built solver (``nu`` and
    ``forcing`` checked as the constructor checks them,
    :meth:`~physml.solvers.built_solver.BuiltSolver.checked_parameter`); the rest is
    read-only (:class:`~physml.solvers.built_solver.BuiltSolver`). It computes with NumPy and has no
    differentiable counterpart: a tensor that requires grad is refused.
    """

    PARAMETERS: ClassVar[tuple[Parameter, ...]] = (
        Parameter("nu", "m^2/s", "kinematic viscosity", lower=0.0),
        Parameter("forcing", "1/s^2", "forcing amplitude"),
    )
    parameter_names: ClassVar[tuple[str, ...]] = ("nu", "forcing")
    diffusion_parameter: ClassVar[str | None] = None  # viscosity is integrated exactly
    time_order: ClassVar[int] = 4
    ndim: ClassVar[int] = 2
    GRADIENTS = None

    def __init__(self, grid: Grid, bc: BoundaryConditions | None = None, *, nu: float,
                 forcing: float = 0.0, dt: float | None, scheme: str = "ifrk4",
                 device: str = "cpu", dtype: Any = "float64", check_every: int = 50) -> None:
        require(grid.ndim == 2, f"NavierStokesSolver2D needs a 2D grid; got shape {grid.shape}")
        require(all(n >= 4 and n % 2 == 0 for n in grid.shape),
                f"grid shape={grid.shape}: every axis needs an even cell count >= 4")
        require(bc is None or all(bc.is_periodic(d) for d in range(2)),
                "NavierStokesSolver2D is periodic on every side; pass bc=None or periodic(2)")
        require(device_name(device) == "cpu",
                f"device={device!r}: NavierStokesSolver2D runs on the CPU (NumPy/SciPy FFTs)")
        require(scheme == "ifrk4", f"scheme={scheme!r}; allowed: ifrk4")
        self.dtype = warp_dtype(dtype)  # as a grid solver: a Warp dtype from any dtype or name
        self.refuse_grad_parameters({"nu": nu, "forcing": forcing})
        values = check_parameters(self.PARAMETERS, {"nu": nu, "forcing": forcing}, 2)
        self.nu, self.forcing = values["nu"], values["forcing"]
        self.grid, self.bc = grid, periodic(2)
        self.device, self.scheme = "cpu", scheme
        self.check_every = whole_number(check_every, "check_every", 1)
        self.np_dtype, self.complex_dtype = _DTYPES[self.dtype.__name__]
        check_representable(values, self.np_dtype)
        lengths = [b - a for a, b in zip(grid.lower, grid.upper, strict=True)]
        kx = 2 * np.pi * scipy.fft.fftfreq(grid.shape[0], lengths[0] / grid.shape[0])
        ky = 2 * np.pi * scipy.fft.rfftfreq(grid.shape[1], lengths[1] / grid.shape[1])
        self.kx, self.ky = kx[:, None], ky[None, :]
        k2 = self.kx**2 + self.ky**2
        self.inverse_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
        self.k2 = k2
        index_x = np.abs(scipy.fft.fftfreq(grid.shape[0], 1 / grid.shape[0]))[:, None]
        index_y = scipy.fft.rfftfreq(grid.shape[1], 1 / grid.shape[1])[None, :]
        # first derivatives: zero for the Nyquist mode (k = n/2 of the even axes), whose
        # slope the grid cannot represent (its +k and -k halves are one coefficient); the
        # second derivatives keep it
        self.dx_k = np.where(index_x == grid.shape[0] / 2, 0.0, self.kx)
        self.dy_k = np.where(index_y == grid.shape[1] / 2, 0.0, self.ky)
        self.dealias = (index_x < grid.shape[0] / 3) & (index_y < grid.shape[1] / 3)
        self.dt = None if dt is None else float(dt)
        if self.dt is not None:
            require(np.isfinite(self.dt) and self.dt > 0, f"dt={dt} must be a positive number")
            check_representable({"dt": self.dt}, self.np_dtype)
        self.fix_attributes()

    # ------------------------------------------------------------------------------ fields

    def forcing_field(self) -> np.ndarray:
        """$f$ on the cell centres, shape ``(nx, ny)`` [1/s^2]."""
        x, y = self.grid.mesh()
        phase = 2 * np.pi * sum((c - a) / (b - a) for c, a, b in
                                zip((x, y), self.grid.lower, self.grid.upper, strict=True))
        return self.forcing * (np.sin(phase) + np.cos(phase))

    def transform(self, field: np.ndarray) -> np.ndarray:
        return scipy.fft.rfft2(field)

    def inverse(self, spectrum: np.ndarray) -> np.ndarray:
        return scipy.fft.irfft2(spectrum, s=self.grid.shape)

    def streamfunction(self, omega: np.ndarray) -> np.ndarray:
        """$\\psi$ with $-\\Delta\\psi = \\omega$ and zero mean, shape ``(nx, ny)``."""
        return self.inverse(self.transform(omega) * self.inverse_k2)

    def velocity(self, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """$(u, v) = (\\partial_y\\psi, -\\partial_x\\psi)$ [m/s], each ``(nx, ny)``."""
        psi_hat = self.transform(omega) * self.inverse_k2
        return self.inverse(1j * self.dy_k * psi_hat), self.inverse(-1j * self.dx_k * psi_hat)

    def _tendency(self, omega_hat: np.ndarray, forcing_hat: np.ndarray) -> np.ndarray:
        """$\\widehat{-\\mathbf u\\cdot\\nabla\\omega + f}$ (de-aliased), rfft layout."""
        psi_hat = omega_hat * self.inverse_k2
        u, v = self.inverse(1j * self.dy_k * psi_hat), self.inverse(-1j * self.dx_k * psi_hat)
        wx, wy = (self.inverse(1j * self.dx_k * omega_hat),
                  self.inverse(1j * self.dy_k * omega_hat))
        advection = self.transform(u * wx + v * wy)
        return (forcing_hat - advection * self.dealias).astype(self.complex_dtype)

    # ----------------------------------------------------------------------------- stability

    def stable_dt(self, u: Any | None = None) -> float:
        """The largest stable step for vorticity ``u`` (inf when the flow is at rest or ``u``
        is None: viscosity and forcing never limit the step)."""
        if u is None:
            return math.inf
        u = np.asarray(u, dtype=np.float64)
        require(u.shape == self.grid.shape, f"u has shape {u.shape}; expected the grid shape "
                f"{self.grid.shape}")
        vx, vy = self.velocity(u)
        dx, dy = self.grid.dx
        rate = 2 * np.pi / 3 * (np.abs(vx).max() / dx + np.abs(vy).max() / dy)
        return math.inf if rate == 0 else RK4_IMAGINARY_LIMIT / rate

    def check_stability(self, u: Any | None = None) -> None:
        """Raise :class:`UnstableStepError` when ``dt`` exceeds :meth:`stable_dt` of ``u``."""
        limit = self.stable_dt(u)
        if self.dt is not None and self.dt > limit:
            raise UnstableStepError(
                f"dt={self.dt:.6g} exceeds the advective limit {limit:.6g} of the "
                f"integrating-factor RK4 step; pass dt<={limit:.6g}", dt=self.dt, dt_max=limit)

    def parameters(self) -> dict[str, np.ndarray]:
        """Physical parameters as float64 arrays of shape ``(1,)``."""
        return {n: np.atleast_1d(np.float64(getattr(self, n))) for n in self.parameter_names}

    def with_dt(self, dt: float) -> NavierStokesSolver2D:
        """A copy with time step ``dt`` (refused where the solver's dtype rounds it to 0 or
        infinity)."""
        require(np.isfinite(dt) and dt > 0, f"dt={dt} must be a positive number")
        check_representable({"dt": dt}, self.np_dtype)
        return shallow_copy(self, dt=float(dt))

    # ------------------------------------------------------------------------------ stepping

    def _require_dt(self) -> None:
        require(self.dt is not None, DT_NOT_SET.partition("; a rollout")[0])

    def _stepper(self) -> Callable[[np.ndarray], np.ndarray]:
        """One Lawson IF-RK4 step of $\\hat\\omega$ (the factors computed once)."""
        h = self.dt
        full = np.exp(-self.nu * self.k2 * h).astype(self.complex_dtype)
        half = np.exp(-self.nu * self.k2 * h / 2).astype(self.complex_dtype)
        f_hat = self.transform(self.forcing_field().astype(self.np_dtype))

        def step(w: np.ndarray) -> np.ndarray:
            a = self._tendency(w, f_hat)
            b = self._tendency(half * (w + h / 2 * a), f_hat)
            c = self._tendency(half * w + h / 2 * b, f_hat)
            d = self._tendency(full * w + h * half * c, f_hat)
            return full * w + h / 6 * (full * a + 2 * half * (b + c) + d)

        return step

    def step(self, u: Any) -> np.ndarray:
        """One time step of the vorticity ``u`` (nx, ny); a new array."""
        self._require_dt()
        refuse_grad(u, "u", "NavierStokesSolver2D.step", self.GRADIENTS)
        omega = finite_state(u, self.grid.shape, "u").astype(self.np_dtype)
        self.check_stability(omega)
        return self.inverse(self._stepper()(self.transform(omega))).astype(self.np_dtype)

    def rollout(self, u0: Any, n_steps: int, save_every: int = 1,
                callback: Callable[[int], None] | None = None) -> np.ndarray:
        """Vorticity at steps 0, ``save_every``, ... up to ``n_steps``:
        ``(n_steps // save_every + 1, nx, ny)``.

        Raises:
            TypeError: a ``callback`` that is not callable.
            ValueError: a bad state or count.
            UnstableStepError: ``dt`` too large for ``u0``.
            BlowUpError: a NaN/Inf appeared (step, time and the last finite state).
        """
        check_callback(callback, "NavierStokesSolver2D.rollout",
                       "set the parameters on the solver (solver.nu = ...)")
        self._require_dt()
        n_steps, save_every = check_counts(n_steps, save_every)
        refuse_grad(u0, "u0", "NavierStokesSolver2D.rollout", self.GRADIENTS)
        omega = finite_state(u0, self.grid.shape, "u0").astype(self.np_dtype)
        self.check_stability(omega)
        step = self._stepper()
        w = self.transform(omega).astype(self.complex_dtype)
        saved, last_good = [omega], (0, omega)
        for n in range(1, n_steps + 1):
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported below
                w = step(w)
            if n % save_every == 0 or n % self.check_every == 0 or n == n_steps:
                state = self.inverse(w).astype(self.np_dtype)
                if not np.all(np.isfinite(state)):
                    raise BlowUpError(step=n, t=n * self.dt, field="omega",
                                      last_good_step=last_good[0], last_good_state=last_good[1])
                last_good = (n, state)
                if n % save_every == 0:
                    saved.append(state)
            if callback is not None:
                callback(n)
        return np.stack(saved)

    def __repr__(self) -> str:
        return (f"NavierStokesSolver2D(shape={self.grid.shape}, nu={self.nu:g}, "
                f"forcing={self.forcing:g}, dt={self.dt}, scheme={self.scheme!r}, "
                f"device='cpu', dtype={self.dtype.__name__})")
