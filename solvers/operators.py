r"""Finite-volume terms on uniform grids: their kinds and their stencils along one axis, in Warp.

The stencils read ghost-padded flat fields (:mod:`physml.solvers.ghost_cells`) and never branch
on boundary kinds. Each kind of term is an enum whose integer value the Warp functions branch on,
with a host-side row (:data:`FLUXES`, :data:`REACTIONS`) of what the stability limit needs. The
kernels that apply the stencils at every cell are in :mod:`physml.solvers.grid_layout`,
:mod:`physml.solvers.implicit_diffusion_kernels` and the fused Runge–Kutta stages.

Stencils (each a ``wp.func`` acting along one axis through a flat ``stride``):

* ``second_difference``: $(u_{i-1} - 2u_i + u_{i+1})/\Delta x^2$, exact for quadratics.
* ``central_difference``: $(u_{i+1} - u_{i-1})/(2\Delta x)$, exact for quadratics.
* ``flux_difference``: $(F_{i+1/2} - F_{i-1/2})/\Delta x$ with MUSCL reconstruction
  (slope limiter: none, minmod, van Leer or MC) and the Rusanov (local Lax–Friedrichs) flux
  $F = \tfrac12(f(u_L) + f(u_R)) - \tfrac12\alpha(u_R - u_L)$, $\alpha = \max|f'(u)|$, for the
  linear flux $f = a u$ or the Burgers flux $f = u^2/2$. Second order on smooth data away from
  extrema; total-variation diminishing with a limiter under CFL $\le 1/2$.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import warp as wp


class Limiter(enum.IntEnum):
    """Slope limiter of the MUSCL reconstruction (``NONE`` gives Fromm's unlimited scheme)."""

    NONE = 0
    MINMOD = 1
    VAN_LEER = 2
    MC = 3


class FluxKind(enum.IntEnum):
    """Flux function of a conservation law $u_t + \\sum_d \\partial_d f_d(u) = 0$.

    The integer value is what :func:`advective_term` branches on; :data:`FLUXES` holds each
    kind's stencil width and wave speed (what the stability limit needs).
    """

    NONE = 0
    LINEAR_CENTRAL = 1  # f_d = a_d u, central differences (non-dissipative)
    LINEAR_UPWIND = 2  # f_d = a_d u, MUSCL + Rusanov (upwind, TVD with a limiter)
    BURGERS = 3  # f_d = u^2 / 2, MUSCL + Rusanov


class ReactionKind(enum.IntEnum):
    """Pointwise source $\\rho\\, r(u)$.

    The integer value is what :func:`reaction_term` branches on; :data:`REACTIONS` holds each
    kind's slope bound (what the stability limit needs).
    """

    NONE = 0
    ALLEN_CAHN = 1  # r(u) = u - u^3
    FISHER = 2  # r(u) = u (1 - u)


@dataclass(frozen=True)
class Flux:
    """What the host side knows of a flux kind.

    Attributes:
        ghost_width: ghost layers its stencil reads (1: central, 2: MUSCL).
        wave_speed: $\\max|f_d'(u)|$ per axis [m/s] from the velocity $a$ (shape ``(ndim,)``,
            zeros when the PDE has none) and a bound $u_{max}$ on $|u|$.
        tvd: True for MUSCL (CFL limit 1/2: with a limiter whatever the RK scheme; without
            one, Fromm's scheme, for the multi-stage schemes only, forward Euler amplifying
            at every CFL), False for central differences (limited by the scheme's
            imaginary-axis interval).
    """

    ghost_width: int
    wave_speed: Callable[[np.ndarray, float], np.ndarray]
    tvd: bool


FLUXES: dict[FluxKind, Flux] = {
    FluxKind.NONE: Flux(1, lambda a, u_max: np.zeros_like(a), tvd=False),
    FluxKind.LINEAR_CENTRAL: Flux(1, lambda a, u_max: np.abs(a), tvd=False),
    FluxKind.LINEAR_UPWIND: Flux(2, lambda a, u_max: np.abs(a), tvd=True),
    FluxKind.BURGERS: Flux(2, lambda a, u_max: np.full_like(a, u_max), tvd=True),
}
"""Each flux kind's stencil width and wave speed; a new kind adds a row here and a branch in
:func:`advective_term`."""

REACTIONS: dict[ReactionKind, Callable[[float], float]] = {
    ReactionKind.NONE: lambda u_max: 0.0,
    # r = u - u^3 drives u to +-1 from any start: |u| <= max(1, u_max) for all time, and
    # r'(+-1) = -2, so a small start's bound of 1 gave steps twice too long once u reached 1
    ReactionKind.ALLEN_CAHN: lambda u_max: max(2.0, 3 * u_max**2 - 1),
    ReactionKind.FISHER: lambda u_max: 1 + 2 * u_max,
}
"""Each reaction kind's bound on $|r'(u)|$ over the values a solution starting from
$|u| \\le u_{max}$ takes (the reactive rate is $\\rho$ times it); a new kind adds a row here
and a branch in :func:`reaction_term`."""


# ---------------------------------------------------------------------------------------------
# Stencils along one axis
# ---------------------------------------------------------------------------------------------


@wp.func
def second_difference(up: wp.array(dtype=Any), c: int, s: int, inv_dx2: Any):
    """(u_{i-1} - 2 u_i + u_{i+1}) / dx^2 along the axis of flat stride s."""
    return ((up[c - s] - up[c]) + (up[c + s] - up[c])) * inv_dx2


@wp.func
def central_difference(up: wp.array(dtype=Any), c: int, s: int, inv_dx: Any):
    """(u_{i+1} - u_{i-1}) / (2 dx) along the axis of flat stride s."""
    return (up[c + s] - up[c - s]) * (inv_dx * inv_dx.dtype(0.5))


@wp.func
def limited_slope(a: Any, b: Any, limiter: int):
    """Limited slope from the backward difference a and the forward difference b."""
    zero = a.dtype(0.0)
    half = a.dtype(0.5)
    two = a.dtype(2.0)
    slope = half * (a + b)
    if limiter != 0:
        slope = zero
        if a * b > zero:
            sign = a.dtype(1.0)
            if a < zero:
                sign = -sign
            aa = wp.abs(a)
            bb = wp.abs(b)
            if limiter == 1:
                slope = sign * wp.min(aa, bb)
            elif limiter == 2:
                slope = two * a * b / (a + b)
            else:
                slope = sign * wp.min(wp.min(two * aa, two * bb), half * (aa + bb))
    return slope


@wp.func
def rusanov_flux(ul: Any, ur: Any, kind: int, a: Any):
    """Rusanov flux at a face from the left/right states (linear speed a, or Burgers)."""
    half = ul.dtype(0.5)
    fl = a * ul
    fr = a * ur
    alpha = wp.abs(a)
    if kind == 3:
        fl = half * ul * ul
        fr = half * ur * ur
        alpha = wp.max(wp.abs(ul), wp.abs(ur))
    return half * (fl + fr) - half * alpha * (ur - ul)


@wp.func
def face_flux(up: wp.array(dtype=Any), c: int, s: int, kind: int, a: Any, limiter: int):
    """MUSCL-Rusanov flux through the face between cells c and c+s (needs 2 ghost layers)."""
    half = a.dtype(0.5)
    um = up[c - s]
    u0 = up[c]
    u1 = up[c + s]
    u2 = up[c + 2 * s]
    ul = u0 + half * limited_slope(u0 - um, u1 - u0, limiter)
    ur = u1 - half * limited_slope(u1 - u0, u2 - u1, limiter)
    return rusanov_flux(ul, ur, kind, a)


@wp.func
def flux_difference(
    up: wp.array(dtype=Any), c: int, s: int, inv_dx: Any, kind: int, a: Any, limiter: int
):
    """(F_{i+1/2} - F_{i-1/2}) / dx along the axis of flat stride s."""
    return (face_flux(up, c, s, kind, a, limiter) - face_flux(up, c - s, s, kind, a, limiter)) * (
        inv_dx
    )


@wp.func
def advective_term(
    up: wp.array(dtype=Any), c: int, s: int, inv_dx: Any, kind: int, a: Any, limiter: int
):
    """Discrete d f(u)/dx along one axis for the flux kind (0 when kind is NONE)."""
    result = a.dtype(0.0)
    if kind == 1:
        result = a * central_difference(up, c, s, inv_dx)
    elif kind >= 2:
        result = flux_difference(up, c, s, inv_dx, kind, a, limiter)
    return result


@wp.func
def reaction_term(u: Any, kind: int):
    """r(u): u - u^3 (Allen-Cahn), u (1 - u) (Fisher-KPP), or 0."""
    one = u.dtype(1.0)
    result = u.dtype(0.0)
    if kind == 1:
        result = u - u * u * u
    elif kind == 2:
        result = u * (one - u)
    return result
