r"""Exact solutions used to verify the solvers (the shared problem catalogue).

All functions are NumPy, float64, and take coordinates from :meth:`Grid.mesh` or
:meth:`Grid.coords`.
"""

from __future__ import annotations

import numpy as np


def heat_fourier_mode(
    coords: tuple[np.ndarray, ...],
    nu: float,
    t: float,
    wavenumbers: tuple[float, ...],
    dx: tuple[float, ...] | None = None,
) -> np.ndarray:
    r"""$u = e^{-\nu\lambda t}\prod_d \sin(k_d x_d)$ solving $u_t = \nu\Delta u$.

    With ``dx=None``, $\lambda = \sum_d k_d^2$ (the PDE). With the grid spacing ``dx``,
    $\lambda = \sum_d 4\sin^2(k_d\Delta x_d/2)/\Delta x_d^2$: the exact solution of the
    semi-discrete (central-difference) system, which isolates the time-stepping error.
    """
    ks = np.asarray(wavenumbers, dtype=np.float64)
    if dx is None:
        rate = float(np.sum(ks**2))
    else:
        h = np.asarray(dx, dtype=np.float64)
        rate = float(np.sum(4 * np.sin(ks * h / 2) ** 2 / h**2))
    shape = np.prod([np.sin(k * x) for k, x in zip(ks, coords)], axis=0)
    return np.exp(-nu * rate * t) * shape


def advected_sine(
    coords: tuple[np.ndarray, ...],
    beta: tuple[float, ...],
    t: float,
    wavenumbers: tuple[float, ...],
    dx: tuple[float, ...] | None = None,
) -> np.ndarray:
    r"""$u = \sin(\sum_d k_d (x_d - c_d t))$ solving $u_t + \beta\cdot\nabla u = 0$.

    With ``dx=None`` the phase speed is $c_d = \beta_d$ (the PDE); with the grid spacing,
    $c_d = \beta_d \sin(k_d\Delta x_d)/(k_d\Delta x_d)$, the exact solution of the central
    semi-discretisation.
    """
    phase = 0.0
    for d, (k, x, b) in enumerate(zip(wavenumbers, coords, beta)):
        c = b if dx is None else b * np.sin(k * dx[d]) / (k * dx[d])
        phase = phase + k * (x - c * t)
    return np.sin(phase)


def burgers_cole_hopf(x: np.ndarray, t: float, nu: float, n_quad: int = 4001) -> np.ndarray:
    r"""Exact viscous Burgers solution for $u_0 = -\sin(\pi x)$ (Cole–Hopf).

    Solves $u_t + u u_x = \nu u_{xx}$ on the line (and hence on $[-1, 1]$ with $u(\pm1) = 0$,
    by odd symmetry):

    $$u(x,t) = -\frac{\int \sin(\pi(x-\eta))\,\phi(x-\eta)\,e^{-\eta^2/(4\nu t)}\,d\eta}
    {\int \phi(x-\eta)\,e^{-\eta^2/(4\nu t)}\,d\eta},\qquad
    \phi(y) = e^{-\cos(\pi y)/(2\pi\nu)}.$$

    The integrals are evaluated with the trapezoidal rule on $|\eta| \le 12\sqrt{4\nu t}$
    (``n_quad`` points; spectrally accurate for this smooth, rapidly decaying integrand),
    with the exponents shifted by their maximum to avoid overflow for small $\nu$.

    Args:
        x: points, any shape.
        t: time (> 0).
        nu: viscosity (> 0).
        n_quad: quadrature points in $\eta$, a whole number >= 2 (not checked); the work and
            memory grow as ``x.size * n_quad``.
    """
    x = np.asarray(x, dtype=np.float64)
    width = np.sqrt(4 * nu * t)
    eta = np.linspace(-12 * width, 12 * width, n_quad)
    y = x.reshape(-1, 1) - eta.reshape(1, -1)
    exponent = -np.cos(np.pi * y) / (2 * np.pi * nu) - eta**2 / (4 * nu * t)
    weight = np.exp(exponent - exponent.max(axis=1, keepdims=True))
    u = -np.sum(np.sin(np.pi * y) * weight, axis=1) / np.sum(weight, axis=1)
    return u.reshape(x.shape)


def allen_cahn_front(x: np.ndarray, t: float, nu: float, rho: float, x0: float = 0.0) -> np.ndarray:
    r"""Travelling front of $u_t = \nu u_{xx} + \rho(u - u^3)$ from $u = 0$ to $u = 1$.

    $$u = \tfrac12\left[1 + \tanh\left(\frac{x - x_0 - ct}{2\delta}\right)\right],\quad
    \delta = \sqrt{2\nu/\rho},\quad c = -\tfrac32\sqrt{2\nu\rho}:$$

    the stable state $u = 1$ (right) invades the unstable state $u = 0$ (left), so the front
    moves to the left at speed $|c|$. With $u = 1/(1 + e^{-z/\delta})$, $z = x - ct$, one has
    $u' = u(1-u)/\delta$ and $u'' = u(1-u)(1-2u)/\delta^2$, so the PDE reduces to
    $-c/\delta = \nu(1-2u)/\delta^2 + \rho(1+u)$ for all $u$: $\delta^2 = 2\nu/\rho$ and
    $c = -\tfrac32\rho\delta$.
    """
    delta = np.sqrt(2 * nu / rho)
    c = -1.5 * np.sqrt(2 * nu * rho)
    return 0.5 * (1 + np.tanh((np.asarray(x) - x0 - c * t) / (2 * delta)))


def fisher_kpp_wave(x: np.ndarray, t: float, nu: float, rho: float, x0: float = 0.0) -> np.ndarray:
    r"""Exact travelling wave of $u_t = \nu u_{xx} + \rho u(1-u)$ (Ablowitz–Zeppetella).

    $$u = \left[1 + e^{(x - x_0 - ct)/\ell}\right]^{-2},\quad \ell = \sqrt{6\nu/\rho},\quad
    c = 5\sqrt{\rho\nu/6}:$$ the state $u = 1$ (left) invades $u = 0$ (right).
    """
    ell = np.sqrt(6 * nu / rho)
    c = 5 * np.sqrt(rho * nu / 6)
    return (1 + np.exp((np.asarray(x) - x0 - c * t) / ell)) ** -2.0
