r"""The PDEs physml ships, as instances of :class:`~physml.train.problems.PINNProblem`.

Inputs ``(x, t)`` for evolution problems, ``(x, y)`` for Helmholtz.

* :class:`BurgersProblem`: $u_t + u u_x - \nu u_{xx} = 0$ on $[a, b]\times[0, T]$,
  $u(x, 0) = A\sin(kx)$, $u(a, t) = u(b, t) = 0$; reference: the Warp Burgers solver on a
  grid 16 times finer than the evaluation grid (:data:`REFERENCE_REFINEMENT`), interpolated.
* :class:`ConvectionProblem`: $u_t + \beta u_x = \nu u_{xx}$ on $[0, 2\pi)$ periodic,
  $u(x, 0) = A\sin(kx)$; reference: the exact $A e^{-\nu k^2 t}\sin(k(x - \beta t))$.
* :class:`HelmholtzProblem`: $\Delta u + k^2 u = q$ on $[-1,1]^2$ with
  $q = (k^2 - (a_1\pi)^2 - (a_2\pi)^2)\,u^*$, $u^* = \sin(a_1\pi x)\sin(a_2\pi y)$, $u = 0$ on the
  boundary (Wang, Teng & Perdikaris 2021); reference: $u^*$.
* :class:`LagrangianConvectionProblem`, :class:`LagrangianBurgersProblem`: the Lagrangian
  PINN's two-output form of the last two (their own residuals and output transform).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..dtypes import scalar_constant
from ..geometry import Interval, Rectangle
from ..solvers import BurgersSolver1D, Grid, dirichlet, periodic
from .conditions import Dirichlet, Initial, Periodic
from .derivatives import gradient
from .problems import PINNProblem, exact_reference, sine


def check_whole_periods(wavenumber: float, x: tuple[float, float], problem: str) -> None:
    """Refuse a sine $\\sin(kx)$ that is not periodic on ``x``: $k(b - a)$ must be a nonzero
    multiple of $2\\pi$ (a periodic problem's reference is then its solution)."""
    periods = wavenumber * (x[1] - x[0]) / (2 * math.pi)
    if abs(periods - round(periods)) > 1e-9 or round(periods) == 0:
        raise ValueError(
            f"the {problem} problem is periodic: conditions.initial.wavenumber times the length "
            f"of domain.x must be a nonzero multiple of 2 pi, got {periods:g} periods")


def _wall_period(bounds) -> float:
    r"""$2(b - a)$: a solution that vanishes at the walls $a, b$ of an equation symmetric under
    $x \to -x$, $u \to -u$ extends by odd reflection across both walls to this period."""
    return float(2 * (bounds[1] - bounds[0]))


class BurgersProblem(PINNProblem):
    """Viscous Burgers with a sine initial condition and zero walls."""

    def __init__(self, nu: float, x: tuple[float, float], t: tuple[float, float],
                 amplitude: float, wavenumber: float) -> None:
        walls = [amplitude * math.sin(wavenumber * end) for end in x]
        if max(abs(w) for w in walls) > 1e-9 * abs(amplitude):
            raise ValueError(
                "the Burgers problem has zero walls: u0 = A sin(k x) must vanish at both ends "
                "of domain.x (k times each end a multiple of pi); conditions.initial.wavenumber"
                f"={wavenumber:g} on domain.x={list(x)} gives {walls[0]:.3g} and "
                f"{walls[1]:.3g}")
        self.nu, self.amplitude, self.wavenumber = nu, amplitude, wavenumber
        super().__init__(
            self._residual, Interval(*x), time=t,
            conditions=[Initial(lambda X: self.initial(X[:, :1])), Dirichlet(0.0)],
            reference=lambda axes: burgers_reference(self, axes, dirichlet(1)),
            periods=(_wall_period(x), None))  # x: odd extension across the walls

    def initial(self, x):
        return sine(x, self.amplitude, self.wavenumber)

    def constrain(self, X, raw):
        r"""The general transform $u_0(x) + (t - t_0)\,\varphi(x)\,N$ with the interval's
        $\varphi = 4(x - a)(b - x)/(b - a)^2$ (:class:`~physml.geometry.Interval`'s, the
        factor exactly 1 on $[-1, 1]$), written out: $u_0$ needs no copy of the inputs at $t_0$
        (fewer operations in every derivative pass)."""
        lower, upper = (float(end) for end in self.bounds[0])
        (a, b), t0 = map(scalar_constant, (lower, upper)), self._start
        scale = scalar_constant(4.0 / (upper - lower) ** 2)
        x, t = X[:, :1], X[:, 1:]
        return self.initial(x) + (t - t0) * (x - a) * (b - x) * scale * raw

    def _residual(self, d):
        return d("u", "t") + d["u"] * d("u", "x") - self.nu * d("u", "x", "x")


REFERENCE_REFINEMENT = 16
"""Cells of the Burgers reference solve per evaluation point. Against the Cole–Hopf solution of
the bundled case (ν = 0.01/π, 256 × 101 points) the reference's own relative L2 error is
1.05e-3 at 4 cells per point, 2.5e-4 at 8, 6.1e-5 at 16 (0.5 s) and 1.5e-5 at 32 (3 s): from
16 it is a few per cent of a trained network's error, not half of it."""


def burgers_reference(problem, axes: list[np.ndarray], bc) -> np.ndarray:
    """The Warp Burgers solver (boundary ``bc``) on a grid :data:`REFERENCE_REFINEMENT` times
    finer than the evaluation grid ``axes = (x, t)``, interpolated to it: ``u`` of shape
    ``(nt, nx)``."""
    x, t = axes
    (a, b), (t0, t1) = problem.bounds
    fine = Grid((REFERENCE_REFINEMENT * len(x),), (a,), (b,))
    solver = BurgersSolver1D(fine, bc, nu=problem.nu, dt=None)
    u0 = problem.initial(fine.coords(0))
    intervals = len(t) - 1
    dt = 0.5 * solver.stable_dt(u0)
    save_every = math.ceil((t1 - t0) / intervals / dt)
    n_steps = save_every * intervals
    states = solver.with_dt((t1 - t0) / n_steps).rollout(u0, n_steps, save_every)
    # Boundary values: the Dirichlet wall (zero), or the periodic average of the end cells.
    edge = [0.5 * (s[:1] + s[-1:]) if bc.is_periodic(0) else np.zeros(1) for s in states]
    xc = np.concatenate([[a], fine.coords(0), [b]])
    return np.stack([np.interp(x, xc, np.concatenate([e, s, e])) for e, s in zip(edge, states)])


class ConvectionProblem(PINNProblem):
    r"""$u_t + \beta u_x = \nu u_{xx}$, periodic; with ``periodic_embedding`` the network sees
    $(\cos, \sin)$ of $x$, otherwise periodicity is a soft condition $u(a, t) = u(b, t)$
    (values only)."""

    field_names: tuple[str, ...] = ("u",)

    def __init__(self, beta: float, x: tuple[float, float], t: tuple[float, float],
                 amplitude: float, wavenumber: float, nu: float = 0.0,
                 periodic_embedding: bool = True) -> None:
        check_whole_periods(wavenumber, x, "convection")
        self.beta, self.nu, self.amplitude, self.wavenumber = beta, nu, amplitude, wavenumber
        self.period = x[1] - x[0]
        self.periodic_embedding = periodic_embedding
        super().__init__(
            self._residual, Interval(*x), time=t, conditions=self._condition_list(),
            outputs=self.field_names, reference=self._exact_on_grid,
            embedding=self._embed if periodic_embedding else None,
            periods=(None,) * 3 if periodic_embedding else (self.period, None))

    def _condition_list(self):
        initial = Initial(lambda X: self.initial(X[:, :1]))
        if self.periodic_embedding:
            return [initial]
        return [initial, Periodic(axis="x", derivatives=0)]

    def initial(self, x):
        return sine(x, self.amplitude, self.wavenumber)

    def _residual(self, d):
        r = d("u", "t") + self.beta * d("u", "x")
        if self.nu:
            r = r - self.nu * d("u", "x", "x")
        return r

    def _embed(self, X):
        r"""$(\cos(2\pi x/L), \sin(2\pi x/L), t)$: periodic in x by construction."""
        two_pi, period = scalar_constant(2 * math.pi), scalar_constant(self.period)
        phase = two_pi * X[:, :1] / period
        return torch.cat([torch.cos(phase), torch.sin(phase), X[:, 1:]], dim=1)

    def _exact_on_grid(self, axes):
        x, t = axes
        s = t[:, None] - self.bounds[1, 0]
        decay = np.exp(-self.nu * self.wavenumber**2 * s)
        return self.amplitude * decay * np.sin(self.wavenumber * (x[None, :] - self.beta * s))


class HelmholtzProblem(PINNProblem):
    """Helmholtz on a rectangle with a manufactured sine solution (see the module docstring)."""

    def __init__(self, a1: float, a2: float, k: float, x: tuple[float, float],
                 y: tuple[float, float]) -> None:
        self.a1, self.a2, self.k = a1, a2, k
        box = np.array([x, y], dtype=np.float64)
        super().__init__(
            self._residual, Rectangle((x[0], y[0]), (x[1], y[1])),
            # the sum of the four per-edge mean-squared errors, as in Wang, Teng & Perdikaris
            conditions=[Dirichlet(lambda X: self.exact(X[:, :1], X[:, 1:]), per_part=True)],
            reference=exact_reference(lambda X: self.exact(X[:, :1], X[:, 1:])),
            embedding=self._standardise,
            # both axes: the odd extension across the zero walls, in standardised inputs
            periods=tuple(_wall_period(side) * np.sqrt(12.0) / np.ptp(side) for side in box))

    def exact(self, x, y):
        if isinstance(x, torch.Tensor):
            k1, k2 = scalar_constant(self.a1 * math.pi), scalar_constant(self.a2 * math.pi)
            return torch.sin(k1 * x) * torch.sin(k2 * y)
        return np.sin(self.a1 * math.pi * x) * np.sin(self.a2 * math.pi * y)

    def _residual(self, d):
        factor = self.k**2 - (self.a1 * math.pi) ** 2 - (self.a2 * math.pi) ** 2
        source = factor * self.exact(d["x"], d["y"])
        return d("u", "x", "x") + d("u", "y", "y") + self.k**2 * d["u"] - source

    def _standardise(self, X):
        """Inputs standardised by the mean and standard deviation of uniform points in the
        box (centre, half-width / sqrt 3), as the authors normalise their inputs."""
        centre = torch.as_tensor(self.bounds.mean(axis=1), dtype=X.dtype, device=X.device)
        std = torch.as_tensor(np.ptp(self.bounds, axis=1) / np.sqrt(12.0), dtype=X.dtype,
                              device=X.device)
        return (X - centre) / std


class LagrangianConvectionProblem(ConvectionProblem):
    r"""Lagrangian PINN (Mojgani, Balajewicz & Hassanzadeh) for $u_t + c\,u_x = \nu u_{xx}$.

    Along characteristics $x(\xi, t)$ with $\partial_t x = c$ ($c = \beta$, or $c = u$ for
    Burgers) the PDE becomes $\partial_t u|_\xi = \nu u_{xx}$, with
    $u_x = u_\xi / x_\xi$ and $u_{xx} = \partial_\xi(u_x)/x_\xi$. The two-branch network gives
    $(x, u)$ from $(\xi, t)$ (outputs ``position``, ``u``); the initial conditions
    $x(\xi, 0) = \xi$, $u(\xi, 0) = u_0(\xi)$ are exact ($u = u_0(\xi) + t N_u$; for convection
    $x = \xi + \beta t + t N_x$: the characteristics start at the known speed, and
    $x_\xi = 1 + t\,\partial_\xi N_x$, which the $\nu$ term divides by, does not scale with
    $\beta$, so a fresh network's map does not fold at a fast speed; for Burgers
    $x = \xi + c_0 t N_x$ with the speed scale $c_0 = \max(\max|u_0|, 1)$) and periodicity in
    $\xi$ is built into the input embedding, so the loss is the two residuals ``residual`` (the
    state) and ``characteristic`` (the curves), equally weighted. Fields on the Eulerian grid
    are interpolated from the characteristics at each time.
    """

    field_names = ("position", "u")
    burgers = False
    needs_hard_constraints = True
    """Its initial conditions exist only in :meth:`constrain`: there is no loss term for them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, periodic_embedding=True, **kwargs)

    def _condition_list(self):
        return []

    def constrain(self, X, raw):
        xi, t = X[:, :1], X[:, 1:] - self._start
        scale, beta = (scalar_constant(max(abs(self.amplitude), 1.0)),
                       scalar_constant(self.beta))
        if self.burgers:
            x = xi + scale * t * raw[:, :1]
        else:
            x = xi + t * (beta + raw[:, :1])
        return torch.cat([x, self.initial(xi) + t * raw[:, 1:]], dim=1)

    residual_names = ("residual", "characteristic")

    def residuals(self, X, out):
        x, u = out[:, :1], out[:, 1:]
        dx, du = gradient(x, X), gradient(u, X)
        speed = u if self.burgers else self.beta
        state = du[:, 1:]
        if self.nu:
            u_x = du[:, :1] / dx[:, :1]
            state = state - self.nu * gradient(u_x, X)[:, :1] / dx[:, :1]
        return {"residual": state, "characteristic": dx[:, 1:] - speed}

    def eulerian(self, field, x_eval, t_eval, tensor, oversample: int = 4):
        """u on the Eulerian grid: for each time, interpolate (x(xi, t), u(xi, t)) in x."""
        (a, b), _ = self.bounds
        xi = np.linspace(a, b, oversample * len(x_eval), endpoint=False)
        rows = []
        for t in t_eval:
            with torch.no_grad():
                out = field(tensor(np.stack([xi, np.full_like(xi, t)], axis=1))).cpu().numpy()
            x = a + np.mod(out[:, 0] - a, self.period)
            order = np.argsort(x)
            rows.append(np.interp(x_eval, x[order], out[order, 1], period=self.period))
        return np.stack(rows)


class LagrangianBurgersProblem(LagrangianConvectionProblem):
    r"""Lagrangian PINN for viscous Burgers $u_t + u u_x = \nu u_{xx}$ on a periodic interval:
    the characteristics move with the state, $\partial_t x = u$, and the state diffuses along
    them, $\partial_t u|_\xi = \nu u_{xx}$. Raissi's problem ($u_0 = -\sin\pi x$ on
    $[-1, 1]$, $u(\pm 1, t) = 0$) is this one: the periodic solution stays odd about $0$ and
    $\pm 1$, so it vanishes there. Reference: the Warp Burgers solver, periodic.
    """

    burgers = True

    def __init__(self, nu: float, x: tuple[float, float], t: tuple[float, float],
                 amplitude: float, wavenumber: float) -> None:
        check_whole_periods(wavenumber, x, "Lagrangian Burgers")
        super().__init__(0.0, x, t, amplitude, wavenumber, nu=nu)
        self.reference_function = lambda axes: burgers_reference(self, axes, periodic(1))
