r"""The discrete operator of
:class:`~physml.solvers.thermomigration.ThermomigrationSolver` on the device, as its base class
:class:`ThermomigrationOperator`: the settings' checks, the Warp arrays, launches and FFT plans
built from the settings, the coefficients derived from them and from the temperature held, and
the launches a step is made of: the right-hand side $R(c)$, the stabilised increment, the
step's error estimate and $c \leftarrow c + \delta$ (the equations, units and scheme are in
:mod:`physml.solvers.thermomigration`, the error estimate in
:mod:`physml.solvers.thermomigration_run`).
"""

from __future__ import annotations

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
from .checks import finite_state, require
from .errors import is_real
from .spectral_solve import SpectralSolve


class ThermomigrationOperator(BuiltSolver):
    """The device side of :class:`~physml.solvers.thermomigration.ThermomigrationSolver`.

    It reads the settings the solver's constructor sets (``grid``, ``bc``, ``free_energy``,
    ``units``, ``device``, ``dtype``, ``np_dtype``, ``kappa``, ``heat_of_transport``,
    ``stabilisation``, ``tolerance``, ``dt_max``, and ``temperature`` with its source and
    time) and builds from them, with :meth:`_build_arrays`, the Warp state that
    :meth:`warp_state` names. Its operators take and give scaled quantities (lengths in cells,
    time in $\tau$: :class:`~physml.solvers.thermomigration.Units`).
    """

    _WARP_STATE: ClassVar[tuple[str, ...]] = (
        "periodic_axes", "_shape3", "_launch", "_faces", "_flux", "_lap", "_euler", "_error",
        "_row_errors", "_p", "_spectral", "_q", "_T")

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
        """The local error estimate of a step of size ``h`` from ``c`` (see
        :mod:`physml.solvers.thermomigration_run`), reduced on the device: one value per launch
        chunk leaves it (a single one on CUDA). Infinite if the step is not finite or leaves the
        model's compositions (a dilute model's c > 0, a regular solution's 0 < c < 1), so that
        it is retried smaller."""
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

    def _s4(self, c: np.ndarray) -> float:
        return 2.0 * self.mobility_bound(c) * self._kappa_scaled
