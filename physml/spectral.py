r"""Fourier pseudo-spectral reference solvers on periodic boxes, with ETDRK4 time stepping.

Semilinear problems $u_t = \mathcal{L}u + \mathcal{N}(u)$ on $[0, L_1)\times\dots$ (1D or 2D),
with the linear part diagonal in Fourier space,
$\hat{\mathcal{L}}(k) = -\nu|k|^2 + \rho$, and the nonlinear part one of

* ``"none"``: $\mathcal{N} = 0$ (heat: $u_t = \nu\Delta u$; ETDRK4 is then exact in time,
  and :meth:`SpectralSolver.solve` takes one exponential step per saved interval);
* ``"cubic"``: $\mathcal{N}(u) = -\rho u^3$ (Allen–Cahn $u_t = \nu\Delta u + \rho(u - u^3)$);
* ``"burgers"``: $\mathcal{N}(u) = -u\sum_i \partial_i u = -\tfrac12\sum_i\partial_i(u^2)$
  (the 2D Burgers of the TENG paper, $u_t = \nu\Delta u - u(u_x + u_y)$).

Time stepping is the exponential time-differencing RK4 of Cox & Matthews with the
coefficients evaluated by the contour integrals of Kassam & Trefethen (2005) (32 points on
a unit circle around each $\hat{\mathcal L}\,\Delta t$), fourth order in $\Delta t$. Products are
formed on the grid and truncated by the 2/3 rule (modes with $|k_i| \ge n_i/3$ of
$\hat{\mathcal N}$ are zeroed): alias-free for Burgers' quadratic product of a field within
that band; the cubic's products alias into the kept band unless the field lies within
$|k_i| < n_i/4$ (the 1/2 rule), so an Allen–Cahn reference is converged by refining the grid
until its error no longer moves, not by the truncation alone. Fields are real, shape ``n``
(``(n_x,)`` or ``(n_x, n_y)``, ``indexing="ij"``), on the nodes $x_j = jL/n$. All arithmetic
is torch (``torch.fft``), so the solver runs on CPU or CUDA; float64 is the default because
these are the references that errors of order 1e-6 are measured against.

It lives in the PyTorch layer (``from physml.spectral import SpectralSolver``) because
:mod:`physml.solvers` is importable without torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from .devices import require_tensor_device, require_torch_device
from .dtypes import torch_dtype
from .eager import eager
from .errors import BlowUpError
from .solvers.checks import check_counts
from .solvers.errors import is_real
from .solvers.keyword_only import formerly_positional
from .solvers.parameters import refuse_text_and_bools

__all__ = ["SpectralSolver"]

Nonlinearity = Literal["none", "cubic", "burgers"]
_CONTOUR_POINTS = 32


class SpectralSolver:
    """ETDRK4 Fourier pseudo-spectral solver for $u_t = \\nu\\Delta u + \\rho u + \\mathcal N(u)$.

    The states are differentiable in ``u0`` by PyTorch's autograd (plain torch operations);
    the coefficients (``nu``, ``dt``, ``reaction``) are numbers, and a tensor that requires
    grad is refused rather than silently detached.

    Args:
        n: grid points per axis (1 or 2 axes, each even; an int for one axis).
        nu: diffusivity $\\nu \\ge 0$ [m^2/s] (keyword-only, as in the grid solvers; given
            by position after ``n`` it is still taken, with a ``FutureWarning``).
        dt: time step [s], > 0 (keyword-only, likewise).
        reaction: the linear coefficient $\\rho$ [1/s] (Allen–Cahn's; 0 otherwise).
        nonlinearity: ``"none"``, ``"cubic"`` or ``"burgers"`` (see the module docstring).
        length: box length $L_i$ [m] per axis, > 0 (default $2\\pi$): the nodes are
            $x_j = jL_i/n_i$ (:meth:`coords`).
        device, dtype: where and in which real precision to compute (float32 or float64, a
            PyTorch or NumPy dtype or its name).
    """

    @formerly_positional(("nu", "dt"))
    def __init__(
        self,
        n: int | Sequence[int],
        *,
        nu: float,
        dt: float,
        reaction: float = 0.0,
        nonlinearity: Nonlinearity = "none",
        length: float | Sequence[float] = 2 * math.pi,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        for name, value in (("nu", nu), ("dt", dt), ("reaction", reaction)):
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise ValueError(f"{name} is a tensor that requires grad; the spectral solver's "
                                 "coefficients are numbers, not differentiable (its states are, "
                                 f"in u0): pass {name}.item(); physml.bridge.rollout "
                                 "differentiates a Warp solver in its parameters")
        self.n = tuple(int(m) for m in np.atleast_1d(n))
        if len(self.n) not in (1, 2) or any(m < 4 or m % 2 for m in self.n):
            raise ValueError(f"n must give 1 or 2 even sizes >= 4 per axis, got {n!r}")
        if not (is_real(nu) and math.isfinite(nu) and nu >= 0):
            raise ValueError(f"nu must be a finite number >= 0, got {nu!r}")
        if not (is_real(dt) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite positive number, got {dt!r}")
        if not (is_real(reaction) and math.isfinite(reaction)):
            raise ValueError(f"reaction must be a finite number, got {reaction!r}")
        if nonlinearity not in ("none", "cubic", "burgers"):
            raise ValueError(
                f"unknown nonlinearity {nonlinearity!r}; allowed: none, cubic, burgers"
            )
        refuse_text_and_bools("length", length)
        lengths = (length,) * len(self.n) if np.isscalar(length) else tuple(length)
        if len(lengths) != len(self.n) or not all(
                is_real(ell) and math.isfinite(ell) and ell > 0 for ell in lengths):
            raise ValueError(f"length must be positive, one per axis, got {length}")
        self.length, self.nu, self.dt = lengths, float(nu), float(dt)
        self.reaction, self.nonlinearity = float(reaction), nonlinearity
        self.device = torch.device(require_torch_device(device))
        self.dtype = torch_dtype(dtype)
        self.wavenumbers = self._wavenumbers()
        k2 = sum(k**2 for k in self.wavenumbers)
        self.linear = -self.nu * k2 + self.reaction  # \hat L(k), shape of the rfft
        self.dealias = self._dealias_mask()
        self._coefficients = _etdrk4_coefficients(self.linear, self.dt)

    def __repr__(self) -> str:
        return (f"SpectralSolver(n={self.n}, nu={self.nu!r}, dt={self.dt!r}, "
                f"reaction={self.reaction!r}, nonlinearity={self.nonlinearity!r}, "
                f"length={self.length}, device={str(self.device)!r}, "
                f"dtype={str(self.dtype).removeprefix('torch.')})")

    @classmethod
    def heat(cls, n: int | Sequence[int], nu: float, dt: float, **kw) -> SpectralSolver:
        """$u_t = \\nu\\Delta u$."""
        return cls(n, nu=nu, dt=dt, **kw)

    @classmethod
    def allen_cahn(
        cls, n: int | Sequence[int], nu: float, dt: float, rho: float = 1.0, **kw
    ) -> SpectralSolver:
        """$u_t = \\nu\\Delta u + \\rho(u - u^3)$."""
        return cls(n, nu=nu, dt=dt, reaction=rho, nonlinearity="cubic", **kw)

    @classmethod
    def burgers(cls, n: int | Sequence[int], nu: float, dt: float, **kw) -> SpectralSolver:
        """$u_t = \\nu\\Delta u - u\\sum_i\\partial_i u$."""
        return cls(n, nu=nu, dt=dt, nonlinearity="burgers", **kw)

    def _wavenumbers(self) -> list[torch.Tensor]:
        """Angular wavenumbers per axis, broadcast to the rfft shape (last axis halved)."""
        ks = []
        ndim = len(self.n)
        for axis, (m, ell) in enumerate(zip(self.n, self.length)):
            scale = 2 * math.pi / ell
            last = axis == ndim - 1
            frequencies = torch.fft.rfftfreq if last else torch.fft.fftfreq
            k = frequencies(m, 1.0 / m, dtype=self.dtype, device=self.device)
            shape = [1] * ndim
            shape[axis] = -1
            ks.append((scale * k).reshape(shape))
        return ks

    def _mode_indices(self) -> list[torch.Tensor]:
        """Per axis, the modes' whole indices $|k_i| L_i / 2\\pi$ (rounded: the angular
        wavenumber's rounding can put index n/3 just below it), broadcast as the wavenumbers."""
        return [torch.round(k.abs() * ell / (2 * math.pi))
                for k, ell in zip(self.wavenumbers, self.length)]

    def _dealias_mask(self) -> torch.Tensor:
        mask = torch.ones((), dtype=torch.bool, device=self.device)
        for index, m in zip(self._mode_indices(), self.n):
            mask = mask & (index < m / 3)
        return mask

    def unresolved_fraction(self, u: torch.Tensor) -> float:
        """$\\sqrt{\\sum_{k\\in S}|\\hat u_k|^2 / \\sum_k|\\hat u_k|^2}$ of a state ``u``
        (shape ``n``), $S$ the modes whose largest index $\\max_i |k_i| L_i/2\\pi$ lies in
        $(n_i/4, n_i/3]$: the last quarter of the band the 2/3 rule keeps. An upper estimate of
        the solution's truncation error (at t = 4 on 256² and 512² nodes: 2D Burgers,
        $\\nu = 0.01$, 2.4e-5 and 3.4e-9 where the 256² solution is 1.3e-6 from the 512² one;
        Allen–Cahn, $\\nu = 0.005$, 2.5e-6 and 3.0e-11 where it is 5.1e-8)."""
        energy = self.transform(u.to(self.device, self.dtype)).abs().square()
        half = energy.shape[-1] - 1  # the last axis holds k >= 0: the others' conjugates count
        energy[..., 1:half] *= 2  # twice (every size is even: index `half` is the Nyquist mode)
        index = torch.zeros((), dtype=self.dtype, device=self.device)
        shell = torch.ones((), dtype=torch.bool, device=self.device)
        for scaled, m in zip(self._mode_indices(), self.n):
            index = torch.maximum(index, scaled / m)  # as a fraction of the axis' nodes
            shell = shell & (scaled <= m / 3)
        shell = shell & (index > 1 / 4)
        total = float(energy.sum())
        return math.sqrt(float(energy[shell.expand_as(energy)].sum()) / total) if total else 0.0

    def coords(self) -> tuple[torch.Tensor, ...]:
        """The nodes the fields live on, every axis at once: a tuple of one 1D PyTorch tensor
        per axis, axis i of shape ``(n_i,)`` holding $x_j = jL_i/n_i$ [m],
        $j = 0, \\dots, n_i - 1$ (the first node at 0, none at $L_i$), in the solver's dtype and
        on its device.

        These are nodes, not the cell centres $(j + 1/2)L/n$ of
        :meth:`physml.solvers.Grid.coords` (one axis per call, a NumPy array): on the same
        box the two point sets are half a spacing apart, so a grid solver's state and this
        solver's are compared after interpolation (:meth:`interpolate` at
        ``grid.coords(axis)``), not index by index."""
        return tuple(
            torch.arange(m, device=self.device, dtype=self.dtype) * (ell / m)
            for m, ell in zip(self.n, self.length)
        )

    def mesh(self) -> tuple[torch.Tensor, ...]:
        """The node coordinates of :meth:`coords` as tensors of the field's shape ``n``
        (``indexing="ij"``)."""
        return torch.meshgrid(*self.coords(), indexing="ij")

    def transform(self, u: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfftn(u, s=self.n, dim=tuple(range(-len(self.n), 0)))

    def inverse(self, u_hat: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfftn(u_hat, s=self.n, dim=tuple(range(-len(self.n), 0)))

    def nonlinear(self, u_hat: torch.Tensor) -> torch.Tensor:
        """$\\hat{\\mathcal N}$ of the field with transform ``u_hat``, de-aliased."""
        if self.nonlinearity == "none":
            return torch.zeros_like(u_hat)
        u = self.inverse(u_hat)
        if self.nonlinearity == "cubic":
            out = -self.reaction * self.transform(u**3)
        else:
            out = -0.5j * sum(self.wavenumbers) * self.transform(u * u)
        return out * self.dealias

    def step_hat(self, v: torch.Tensor) -> torch.Tensor:
        """One ETDRK4 step of the Fourier coefficients ``v``."""
        E, E2, Q, f1, f2, f3 = self._coefficients
        Nv = self.nonlinear(v)
        a = E2 * v + Q * Nv
        Na = self.nonlinear(a)
        b = E2 * v + Q * Na
        Nb = self.nonlinear(b)
        c = E2 * a + Q * (2 * Nb - Nv)
        Nc = self.nonlinear(c)
        return E * v + f1 * Nv + 2 * f2 * (Na + Nb) + f3 * Nc

    def _field(self, u0) -> torch.Tensor:
        if isinstance(u0, torch.Tensor):
            require_tensor_device("u0", u0)
        # a list or array through NumPy: a list of floats is float64 there, float32 in PyTorch
        u = torch.as_tensor(u0 if isinstance(u0, torch.Tensor) else np.asarray(u0),
                            device=self.device)
        if u.is_complex():
            raise ValueError(f"u0 has dtype {u.dtype}; expected real numbers")
        u = u.to(self.dtype)
        if tuple(u.shape) != self.n:
            raise ValueError(f"u0 must have shape {self.n}, got {tuple(u.shape)}")
        if not torch.isfinite(u).all():
            raise ValueError("u0 contains NaN or Inf")
        return u

    @eager  # traced, the unrolled steps compile for minutes and run slower
    def rollout(self, u0, n_steps: int, save_every: int = 1) -> torch.Tensor:
        """States at steps ``0, save_every, ...`` up to ``n_steps``: shape ``(saves, *n)``.

        Under ``torch.compile`` it runs eagerly (the graph breaks around the call; the code
        around it still compiles), differentiable as ever.

        Raises:
            ValueError: ``u0`` is not real, finite and of shape ``n``, or is a tensor on a
                device physml does not run on ("meta", "mps").
            BlowUpError: a saved state is not finite (names the step).
        """
        n_steps, save_every = check_counts(n_steps, save_every)
        u = self._field(u0)
        v = self.transform(u)
        states = [u]
        for step in range(1, n_steps + 1):
            v = self.step_hat(v)
            if step % save_every == 0:
                u = self.inverse(v)
                if not torch.isfinite(u).all():
                    last = states[-1].cpu().numpy()
                    raise BlowUpError(step=step, t=step * self.dt,
                                      last_good_step=step - save_every, last_good_state=last)
                states.append(u)
        return torch.stack(states)

    def solve(self, u0, times: Sequence[float],
              on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """States at ``times`` (each a whole number of steps from 0): shape ``(len, *n)``.

        Without a nonlinearity ETDRK4's step is the exact propagator $e^{\\Delta t\\hat L}$, so
        each interval between ``times``, of $m$ steps, is one multiplication by
        $e^{m\\Delta t\\hat L}$ (the same states as $m$ steps but for rounding, at a cost that
        does not grow with $m$). ``on_step(done, total)`` is told the steps done and the steps
        to the last time after every step (without a nonlinearity: every interval), for a
        caller to show the progress of a long solve.

        Raises:
            BlowUpError: the state at one of ``times`` is not finite (names its step).
        """
        steps = [round(t / self.dt) for t in times]
        for t, s in zip(times, steps):
            if abs(s * self.dt - t) > 1e-9 * max(1.0, abs(t)) or s < 0:
                raise ValueError(f"time {t} is not a whole number of steps dt={self.dt}")
        u, done, out = self._field(u0), 0, []
        v = self.transform(u)
        for s in steps:
            if s < done:
                raise ValueError(f"times must be increasing, got {list(times)}")
            if self.nonlinearity == "none":  # the exact propagator over the whole interval
                hL = (s - done) * self.dt * self.linear.double()
                v = torch.exp(hL).to(self.dtype) * v
                if on_step is not None:
                    on_step(s, steps[-1])
            else:
                for step in range(done + 1, s + 1):
                    v = self.step_hat(v)
                    if on_step is not None:
                        on_step(step, steps[-1])
            u = self.inverse(v)
            if not torch.isfinite(u).all():
                last = (out[-1] if out else self._field(u0)).cpu().numpy()
                raise BlowUpError(step=s, t=s * self.dt, last_good_step=done,
                                  last_good_state=last)
            done = s
            out.append(u)
        return torch.stack(out)

    def interpolate(self, u: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        r"""The trigonometric interpolant of grid field ``u`` at ``points`` (m, ndim), real and
        exact for a band-limited field, so references can be read off anywhere (at test points
        that no network was trained on). The Nyquist coefficient of each axis is split evenly
        between $\pm n/2$. Cost $O(m\prod_i n_i)$, in chunks of 4096 points.

        Raises:
            ValueError: ``u`` is not a field of the grid or ``points`` not (m, ndim).
        """
        ndim = len(self.n)
        if tuple(u.shape) != tuple(self.n) or points.dim() != 2 or points.shape[1] != ndim:
            raise ValueError(f"u has shape {tuple(u.shape)} and points {tuple(points.shape)}; "
                             f"need {tuple(self.n)} and (m, {ndim})")
        c = torch.fft.fftn(u.to(self.device, self.dtype), dim=tuple(range(ndim))) / math.prod(
            self.n
        )
        freqs = []
        for axis, (m, ell) in enumerate(zip(self.n, self.length)):
            nyquist = c.narrow(axis, m // 2, 1) / 2
            c = torch.cat([c.narrow(axis, 0, m // 2), nyquist, nyquist,
                           c.narrow(axis, m // 2 + 1, m // 2 - 1)], dim=axis)
            k = torch.cat([torch.arange(0, m // 2 + 1), torch.arange(-(m // 2), 0)])
            freqs.append(k.to(self.device, self.dtype) * (2 * math.pi / ell))
        out = []
        for chunk in torch.split(points.to(self.device, self.dtype), 4096):
            waves = [torch.exp(1j * chunk[:, a, None] * freqs[a][None, :]) for a in range(ndim)]
            if ndim == 1:
                value = waves[0] @ c
            else:
                value = ((waves[0] @ c) * waves[1]).sum(-1)
            out.append(value.real)
        return torch.cat(out)


def _etdrk4_coefficients(linear: torch.Tensor, dt: float) -> tuple[torch.Tensor, ...]:
    """$E = e^{h\\hat L}$, $E_2 = e^{h\\hat L/2}$, $Q$, $f_1$, $f_2$, $f_3$ of ETDRK4 (Kassam &
    Trefethen eq. 2.5), the $\\varphi$-function means taken on a contour to avoid cancellation,
    in float64 whatever ``linear``'s dtype (in float32 the contour's means were up to 1e-3 off,
    relative, near $h\\hat L = -1$), returned in ``linear``'s."""
    hL = dt * linear.double()
    j = torch.arange(1, _CONTOUR_POINTS + 1, device=linear.device, dtype=torch.float64)
    roots = torch.exp(1j * math.pi * (j - 0.5) / _CONTOUR_POINTS)
    LR = hL[..., None] + roots  # complex
    eLR = torch.exp(LR)

    def mean(values: torch.Tensor) -> torch.Tensor:
        return values.mean(-1).real

    Q = dt * mean((torch.exp(LR / 2) - 1) / LR)
    f1 = dt * mean((-4 - LR + eLR * (4 - 3 * LR + LR**2)) / LR**3)
    f2 = dt * mean((2 + LR + eLR * (LR - 2)) / LR**3)
    f3 = dt * mean((-4 - 3 * LR - LR**2 + eLR * (4 - LR)) / LR**3)
    return tuple(c.to(linear.dtype) for c in (torch.exp(hL), torch.exp(hL / 2), Q, f1, f2, f3))
