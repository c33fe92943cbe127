r"""Random initial conditions for benchmark datasets, drawn from a NumPy ``Generator``.

* ``pdebench_sines`` (1D): PDEBench's generator for advection, Burgers and diffusion–reaction.
  With $L = x_{N-1} - x_0$, two draws from $\{1..K\}$ ($K = 4$) give multiplicities $s_n$ and
  wavenumbers $k_n = 2\pi n s_n / L$; then
  $u = \sum_{n=1}^{K} A_n\sin(k_n x + \varphi_n)$, $A_n\sim U(0,1)$, $\varphi_n\sim U(0,2\pi)$;
  with probability 0.1 $u \leftarrow |u|$; a random sign; with probability 0.1 a window
  $\tfrac12[\tanh((x-x_L)/0.01) - \tanh((x-x_R)/0.01)]$, $x_L\sim U(0.1,0.45)$,
  $x_R = x_L + 0.45$; optionally rescaled to $[0, 1]$ (diffusion–reaction).
* ``uniform_constant`` (any dimension): a constant $u_0\sim U(a, b)$, $a \le b$ (PDEBench's
  diffusion–sorption, $U(0, 0.2)$).
* ``fourier_2d``: $u = a\,\tilde u/\max|\tilde u|$ with
  $\tilde u = \sum_{k} c_k \cos(k_x x + k_y y + \varphi_k)/(1 + k_x^2 + k_y^2)$ over the
  integer wavevectors with $|k_x|,|k_y|\le K$, each mode once ($k$ and $-k$ are one mode:
  $k_y > 0$, or $k_y = 0$ and $k_x \ge 0$), $c_k\sim N(0,1)$, $\varphi_k\sim U(0, 2\pi)$:
  smooth periodic fields of amplitude $a$, statistically the same under $x \leftrightarrow y$.
* ``gaussian_random_field_2d``: a zero-mean periodic Gaussian random field drawn in Fourier
  space: each of the grid's angular wavevectors $k \ne 0$ of the box (sides $L_x, L_y$) gets
  a complex normal coefficient of variance $\propto e^{-\ell^2|k|^2/2}$ ($k = 0$, the mean,
  gets none), and the field is scaled to standard deviation $a$ over the grid (the 2D
  Navier–Stokes initial vorticity of the MoE paper, $\ell = 0.8$). Its covariance is the
  squared exponential $e^{-|r|^2/2\ell^2}$ summed over the box's periodic images, less a
  constant (the mean left out): close to the squared exponential of length scale $\ell$ only
  for $\ell$ well below the box (unit square, $\ell = 0.1$: correlation 0.81, 0.42, -0.02 at
  lags 1/16, 1/8, 1/4 along an axis, against 0.82, 0.46, 0.04). For $\ell$ near the box's
  size the lowest modes take nearly all the variance: on the unit square at $\ell = 0.8$ each
  of the next modes, $|k| = 2\sqrt2\,\pi$, has $e^{-2\pi^2\ell^2} = 3.3\times10^{-6}$ of the
  variance of one of the four lowest, $k = 2\pi(\pm1, 0), 2\pi(0, \pm1)$, which hold all but
  3 parts per million of it: a sample is $a_1\cos(2\pi x + \varphi_1) + a_2\cos(2\pi y +
  \varphi_2)$ up to a remainder of about 0.2 % of its standard deviation, a four-mode field,
  whose correlation is $\tfrac12(\cos 2\pi r_x + \cos 2\pi r_y)$ (0.96, 0.85, 0.50 at those
  lags, against the squared exponential's 0.997, 0.988, 0.952).

Each generator takes ``(grid, rng)`` and then its options; the options' annotations (types and
ranges) are what a dataset spec's ``initial_condition.options`` is validated against, and a
generator raises ValueError for options that are wrong together (``low > high``).
:data:`FIELD_DIMENSIONS` says on which grids each one draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import numpy as np
from pydantic import Field

from ..solvers.grid import Grid


def pdebench_sines(
    grid: Grid,
    rng: np.random.Generator,
    k_tot: Annotated[int, Field(ge=1)] = 4,
    normalize: bool = False,
) -> np.ndarray:
    """PDEBench's random superposition of sines on a 1D grid (see the module docstring).

    Raises:
        ValueError: waves finer than the grid resolves: a wavenumber index drawn twice
            doubles, so up to $2 k_{tot}$ periods, more than half the cells.
    """
    cells = grid.shape[0]
    if 4 * k_tot > cells:
        raise ValueError(f"k_tot={k_tot} draws waves of up to {2 * k_tot} periods, more than "
                         f"the grid's {cells} cells resolve ({cells // 2}, two cells a period: "
                         "finer waves alias); take k_tot <= "
                         f"{max(cells // 4, 1)} or a finer grid")
    x = grid.coords(0)
    length = x[-1] - x[0]
    counts = np.bincount(rng.integers(0, k_tot, size=2), minlength=k_tot)
    k = 2 * np.pi * np.arange(1, k_tot + 1) * counts / length
    amplitude = rng.uniform(0.0, 1.0, k_tot)
    phase = rng.uniform(0.0, 2 * np.pi, k_tot)
    u = np.sum(amplitude[:, None] * np.sin(k[:, None] * x[None, :] + phase[:, None]), axis=0)
    if rng.uniform() < 0.1:
        u = np.abs(u)
    u = u * rng.choice([-1.0, 1.0])
    if rng.uniform() < 0.1:
        x_left = rng.uniform(0.1, 0.45)
        x_right = x_left + 0.45
        u = u * 0.5 * (np.tanh((x - x_left) / 0.01) - np.tanh((x - x_right) / 0.01))
    if normalize:
        u = u - u.min()
        u = u / max(u.max(), np.finfo(np.float64).tiny)
    return u


def uniform_constant(
    grid: Grid, rng: np.random.Generator, low: float = 0.0, high: float = 0.2
) -> np.ndarray:
    """A spatially constant state drawn from U(low, high).

    Raises:
        ValueError: ``low > high``.
    """
    if low > high:
        raise ValueError(f"low={low:g} > high={high:g}; U(low, high) needs low <= high")
    return np.full(grid.shape, rng.uniform(low, high))


def fourier_2d(
    grid: Grid,
    rng: np.random.Generator,
    k_max: Annotated[int, Field(ge=0)] = 4,
    amplitude: float = 1.0,
) -> np.ndarray:
    """A smooth random periodic field on a 2D grid (see the module docstring).

    Raises:
        ValueError: ``k_max`` periods along an axis with fewer than ``2 k_max`` cells (finer
            waves alias).
    """
    cells = min(grid.shape)
    if 2 * k_max > cells:
        raise ValueError(f"k_max={k_max} draws waves of up to {k_max} periods along each "
                         f"axis, more than {cells} cells resolve ({cells // 2}, two cells a "
                         f"period: finer waves alias); take k_max <= {cells // 2} or a finer "
                         "grid")
    x, y = grid.mesh()
    scale_x = 2 * np.pi / (grid.upper[0] - grid.lower[0])
    scale_y = 2 * np.pi / (grid.upper[1] - grid.lower[1])
    u = np.zeros(grid.shape)
    for kx in range(-k_max, k_max + 1):
        for ky in range(0 if kx >= 0 else 1, k_max + 1):  # (-kx, 0) is the mode (kx, 0)
            c, phase = rng.standard_normal(), rng.uniform(0, 2 * np.pi)
            u += c * np.cos(kx * scale_x * x + ky * scale_y * y + phase) / (1 + kx**2 + ky**2)
    return amplitude * u / np.abs(u).max()


def gaussian_random_field_2d(
    grid: Grid,
    rng: np.random.Generator,
    length_scale: Annotated[float, Field(gt=0)] = 0.8,
    amplitude: Annotated[float, Field(gt=0)] = 1.0,
) -> np.ndarray:
    """A periodic Gaussian random field on a 2D grid (see the module docstring)."""
    lengths = [b - a for a, b in zip(grid.lower, grid.upper, strict=True)]
    kx = 2 * np.pi * np.fft.fftfreq(grid.shape[0], lengths[0] / grid.shape[0])[:, None]
    ky = 2 * np.pi * np.fft.fftfreq(grid.shape[1], lengths[1] / grid.shape[1])[None, :]
    density = np.exp(-0.25 * length_scale**2 * (kx**2 + ky**2))  # sqrt of the spectral density
    density[0, 0] = 0.0
    noise = rng.standard_normal(grid.shape) + 1j * rng.standard_normal(grid.shape)
    u = np.fft.ifft2(density * noise).real
    return amplitude * u / u.std()


INITIAL_CONDITIONS: dict[str, Callable[..., np.ndarray]] = {
    "pdebench_sines": pdebench_sines,
    "uniform_constant": uniform_constant,
    "fourier_2d": fourier_2d,
    "gaussian_random_field_2d": gaussian_random_field_2d,
}
"""Initial-condition generators by spec name; each takes (grid, rng, **options)."""

FIELD_DIMENSIONS: dict[str, tuple[int, ...]] = {
    "pdebench_sines": (1,),
    "uniform_constant": (1, 2, 3),
    "fourier_2d": (2,),
    "gaussian_random_field_2d": (2,),
}
"""The grid dimensions each generator of :data:`INITIAL_CONDITIONS` draws fields on."""
