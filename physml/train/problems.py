r"""Physics-informed problems: residuals, conditions, hard-constraint transforms, references.

Inputs are rows of coordinates ``X`` of shape ``(n, 2)``: ``(x, t)`` for evolution problems,
``(x, y)`` for Helmholtz. Residuals use torch autograd, so they work for any network.

* :class:`BurgersProblem`: $u_t + u u_x - \nu u_{xx} = 0$ on $[a, b]\times[0, T]$,
  $u(x, 0) = A\sin(kx)$, $u(a, t) = u(b, t) = 0$; reference: the Warp Burgers solver on a
  grid four times finer than the evaluation grid, interpolated.
* :class:`ConvectionProblem`: $u_t + \beta u_x = 0$ on $[0, 2\pi)$ periodic,
  $u(x, 0) = A\sin(kx)$; reference: the exact $A\sin(k(x - \beta t))$.
* :class:`HelmholtzProblem`: $\Delta u + k^2 u = q$ on $[-1,1]^2$ with
  $q = (k^2 - (a_1\pi)^2 - (a_2\pi)^2)\,u^*$, $u^* = \sin(a_1\pi x)\sin(a_2\pi y)$, $u = 0$ on the
  boundary (Wang, Teng & Perdikaris 2021); reference: $u^*$.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..solvers import BurgersSolver1D, Grid, dirichlet, periodic


def gradient(u: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """$\\partial u/\\partial X$ row by row, shape ``(n, d)`` (graph kept for higher orders)."""
    return torch.autograd.grad(u, X, torch.ones_like(u), create_graph=True)[0]


def sine(x, amplitude: float, wavenumber: float):
    """$A\\sin(kx)$ for a NumPy array or a tensor."""
    return amplitude * (torch.sin if isinstance(x, torch.Tensor) else np.sin)(wavenumber * x)


class PINNProblem:
    """Common interface. Attributes: ``names`` of the coordinates, ``bounds`` (d, 2)."""

    names: tuple[str, str]
    bounds: np.ndarray
    output_dim = 1
    residual_names: tuple[str, ...] = ("residual",)

    def residual(self, X: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def residuals(self, X: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Residual terms by name (one PDE residual unless a problem has more)."""
        return {"residual": self.residual(X, out)}

    def condition_loss(self, name: str, field, X: torch.Tensor, target: torch.Tensor):
        """Mean-squared mismatch of a soft condition."""
        return (field(X) - target).square().mean()

    def conditions(
        self, n: int, rng: np.random.Generator
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Soft-constraint points and targets by term name (initial, boundary, ...)."""
        raise NotImplementedError

    def constrain(self, X: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Network output -> field satisfying the conditions exactly (hard constraints)."""
        raise NotImplementedError

    def embed(self, X: torch.Tensor) -> torch.Tensor:
        """Network input features (identity unless the problem builds in periodicity)."""
        return X

    def reference(self, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evaluation axes (first, second) and the reference field of shape ``(n2, n1)``."""
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        return 2

    @property
    def input_periods(self) -> tuple[float | None, ...]:
        """Period of the solution in each network input (of ``embed(X)``), None where it is not
        periodic: what a periodic network (``model.kind: periodic``) may build in."""
        return (None,) * self.input_dim


def _wall_period(bounds: np.ndarray) -> float:
    r"""$2(b - a)$: a solution that vanishes at the walls $a, b$ of an equation symmetric under
    $x \to -x$, $u \to -u$ extends by odd reflection across both walls to this period."""
    return float(2 * (bounds[1] - bounds[0]))


class BurgersProblem(PINNProblem):
    names = ("x", "t")

    def __init__(
        self,
        nu: float,
        x: tuple[float, float],
        t: tuple[float, float],
        amplitude: float,
        wavenumber: float,
    ) -> None:
        self.nu, self.amplitude, self.wavenumber = nu, amplitude, wavenumber
        self.bounds = np.array([x, t], dtype=np.float64)

    def initial(self, x):
        return sine(x, self.amplitude, self.wavenumber)

    def residual(self, X, u):
        du = gradient(u, X)
        u_x, u_t = du[:, :1], du[:, 1:]
        u_xx = gradient(u_x, X)[:, :1]
        return u_t + u * u_x - self.nu * u_xx

    def conditions(self, n, rng):
        (a, b), (t0, t1) = self.bounds
        x0 = rng.uniform(a, b, (n, 1))
        initial = np.hstack([x0, np.full_like(x0, t0)])
        tb = rng.uniform(t0, t1, (n, 1))
        side = np.where(rng.random((n, 1)) < 0.5, a, b)
        boundary = np.hstack([side, tb])
        return {"initial": (initial, self.initial(x0)), "boundary": (boundary, np.zeros((n, 1)))}

    def constrain(self, X, raw):
        (a, b), (t0, _) = self.bounds
        x, t = X[:, :1], X[:, 1:]
        return self.initial(x) + (t - t0) * (x - a) * (b - x) * raw

    def reference(self, n1, n2):
        return burgers_reference(self, n1, n2, dirichlet(1))

    @property
    def input_periods(self):
        """x: the odd extension across the zero walls; t: not periodic."""
        return (_wall_period(self.bounds[0]), None)


def burgers_reference(problem, n1: int, n2: int, bc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Warp Burgers solver (boundary ``bc``) on a grid four times finer than the ``n1 x n2``
    evaluation grid, interpolated to it: axes ``x`` (n1), ``t`` (n2) and ``u`` (n2, n1)."""
    (a, b), (t0, t1) = problem.bounds
    x = np.linspace(a, b, n1)
    t = np.linspace(t0, t1, n2)
    fine = Grid((4 * n1,), (a,), (b,))
    solver = BurgersSolver1D(fine, bc, nu=problem.nu, dt=None)
    u0 = problem.initial(fine.coords(0))
    intervals = n2 - 1
    dt = 0.5 * solver.stable_dt(u0)
    save_every = math.ceil((t1 - t0) / intervals / dt)
    n_steps = save_every * intervals
    states = solver.with_dt((t1 - t0) / n_steps).rollout(u0, n_steps, save_every)
    # Boundary values: the Dirichlet wall (zero), or the periodic average of the end cells.
    edge = [0.5 * (s[:1] + s[-1:]) if bc.is_periodic(0) else np.zeros(1) for s in states]
    xc = np.concatenate([[a], fine.coords(0), [b]])
    u = np.stack([np.interp(x, xc, np.concatenate([e, s, e])) for e, s in zip(edge, states)])
    return x, t, u


class ConvectionProblem(PINNProblem):
    r"""$u_t + \beta u_x = \nu u_{xx}$, periodic; with ``periodic_embedding`` the network sees
    $(\cos, \sin)$ of $x$, otherwise periodicity is a soft condition $u(a, t) = u(b, t)$."""

    names = ("x", "t")

    def __init__(
        self,
        beta: float,
        x: tuple[float, float],
        t: tuple[float, float],
        amplitude: float,
        wavenumber: float,
        nu: float = 0.0,
        periodic_embedding: bool = True,
    ) -> None:
        self.beta, self.nu, self.amplitude, self.wavenumber = beta, nu, amplitude, wavenumber
        self.bounds = np.array([x, t], dtype=np.float64)
        self.period = x[1] - x[0]
        self.periodic_embedding = periodic_embedding

    def initial(self, x):
        return sine(x, self.amplitude, self.wavenumber)

    def residual(self, X, u):
        du = gradient(u, X)
        r = du[:, 1:] + self.beta * du[:, :1]
        if self.nu:
            r = r - self.nu * gradient(du[:, :1], X)[:, :1]
        return r

    def conditions(self, n, rng):
        """Initial points; without the embedding also periodic pairs (x = a and x = b at the
        same t: the "target" of ``periodic`` holds the partner points)."""
        (a, b), (t0, t1) = self.bounds
        x0 = rng.uniform(a, b, (n, 1))
        conditions = {"initial": (np.hstack([x0, np.full_like(x0, t0)]), self.initial(x0))}
        if not self.periodic_embedding:
            tb = rng.uniform(t0, t1, (n, 1))
            conditions["periodic"] = (
                np.hstack([np.full_like(tb, a), tb]),
                np.hstack([np.full_like(tb, b), tb]),
            )
        return conditions

    def condition_loss(self, name, field, X, target):
        if name == "periodic":
            return (field(X) - field(target)).square().mean()
        return super().condition_loss(name, field, X, target)

    def embed(self, X):
        r"""$(\cos(2\pi x/L), \sin(2\pi x/L), t)$: periodic in x by construction."""
        if not self.periodic_embedding:
            return X
        phase = 2 * math.pi * X[:, :1] / self.period
        return torch.cat([torch.cos(phase), torch.sin(phase), X[:, 1:]], dim=1)

    @property
    def input_dim(self) -> int:
        return 3 if self.periodic_embedding else 2

    @property
    def input_periods(self):
        """x: the period (unless the embedding already makes the inputs periodic)."""
        return (None,) * 3 if self.periodic_embedding else (self.period, None)

    def constrain(self, X, raw):
        t0 = self.bounds[1, 0]
        return self.initial(X[:, :1]) + (X[:, 1:] - t0) * raw

    def reference(self, n1, n2):
        (a, b), (t0, t1) = self.bounds
        x = np.linspace(a, b, n1)
        t = np.linspace(t0, t1, n2)
        s = t[:, None] - t0
        decay = np.exp(-self.nu * self.wavenumber**2 * s)
        u = self.amplitude * decay * np.sin(self.wavenumber * (x[None, :] - self.beta * s))
        return x, t, u


class HelmholtzProblem(PINNProblem):
    names = ("x", "y")

    def __init__(
        self, a1: float, a2: float, k: float, x: tuple[float, float], y: tuple[float, float]
    ) -> None:
        self.a1, self.a2, self.k = a1, a2, k
        self.bounds = np.array([x, y], dtype=np.float64)

    def exact(self, x, y):
        sin = torch.sin if isinstance(x, torch.Tensor) else np.sin
        return sin(self.a1 * math.pi * x) * sin(self.a2 * math.pi * y)

    def residual(self, X, u):
        du = gradient(u, X)
        u_xx = gradient(du[:, :1], X)[:, :1]
        u_yy = gradient(du[:, 1:], X)[:, 1:]
        factor = self.k**2 - (self.a1 * math.pi) ** 2 - (self.a2 * math.pi) ** 2
        source = factor * self.exact(X[:, :1], X[:, 1:])
        return u_xx + u_yy + self.k**2 * u - source

    def conditions(self, n, rng):
        """``n`` points on each of the four edges (4n in all)."""
        (a, b), (c, d) = self.bounds
        s = rng.uniform(0, 1, (4 * n, 1))
        side = np.repeat(np.arange(4), n)[:, None]
        x = np.where(side == 0, a, np.where(side == 1, b, a + (b - a) * s))
        y = np.where(side == 2, c, np.where(side == 3, d, c + (d - c) * s))
        return {"boundary": (np.hstack([x, y]), self.exact(x, y))}

    def condition_loss(self, name, field, X, target):
        """The sum of the four per-edge mean-squared errors (edges hold equal point counts),
        as in Wang, Teng & Perdikaris."""
        return 4 * super().condition_loss(name, field, X, target)

    def embed(self, X):
        """Inputs standardised by the mean and standard deviation of uniform points in the
        box (centre, half-width / sqrt 3), as the authors normalise their inputs."""
        centre = torch.as_tensor(self.bounds.mean(axis=1), dtype=X.dtype, device=X.device)
        std = torch.as_tensor(np.ptp(self.bounds, axis=1) / np.sqrt(12.0), dtype=X.dtype,
                              device=X.device)
        return (X - centre) / std

    def constrain(self, X, raw):
        (a, b), (c, d) = self.bounds
        x, y = X[:, :1], X[:, 1:]
        return (x - a) * (b - x) * (y - c) * (d - y) * raw

    @property
    def input_periods(self):
        """Both axes: the odd extension across the zero walls (the source is odd about them for
        integer $a_1, a_2$), in standardised inputs."""
        return tuple(_wall_period(side) * np.sqrt(12.0) / np.ptp(side) for side in self.bounds)

    def reference(self, n1, n2):
        (a, b), (c, d) = self.bounds
        x = np.linspace(a, b, n1)
        y = np.linspace(c, d, n2)
        return x, y, self.exact(x[None, :], y[:, None])


class LagrangianConvectionProblem(ConvectionProblem):
    r"""Lagrangian PINN (Mojgani, Balajewicz & Hassanzadeh) for $u_t + c\,u_x = \nu u_{xx}$.

    Along characteristics $x(\xi, t)$ with $\partial_t x = c$ ($c = \beta$, or $c = u$ for
    Burgers) the PDE becomes $\partial_t u|_\xi = \nu u_{xx}$, with
    $u_x = u_\xi / x_\xi$ and $u_{xx} = \partial_\xi(u_x)/x_\xi$. The two-branch network gives
    $(x, u)$ from $(\xi, t)$; the initial conditions $x(\xi, 0) = \xi$, $u(\xi, 0) = u_0(\xi)$
    are exact ($x = \xi + c_0 t N_x$ with the speed scale $c_0 = |\beta|$, or $\max|u_0|$ for
    Burgers, so that $N_x = O(1)$; $u = u_0(\xi) + t N_u$) and periodicity in $\xi$ is built
    into the input embedding, so the loss is the two residuals ``residual`` (the state) and
    ``characteristic`` (the curves), equally weighted. Fields on the Eulerian grid are
    interpolated from the characteristics at each time.
    """

    output_dim = 2
    residual_names = ("residual", "characteristic")

    burgers = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, periodic_embedding=True, **kwargs)

    def conditions(self, n, rng):
        return {}

    def constrain(self, X, raw):
        xi, t = X[:, :1], X[:, 1:] - self.bounds[1, 0]
        speed = abs(self.amplitude) if self.burgers else abs(self.beta)
        x = xi + max(speed, 1.0) * t * raw[:, :1]
        return torch.cat([x, self.initial(xi) + t * raw[:, 1:]], dim=1)

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

    def __init__(
        self,
        nu: float,
        x: tuple[float, float],
        t: tuple[float, float],
        amplitude: float,
        wavenumber: float,
    ) -> None:
        periods = wavenumber * (x[1] - x[0]) / (2 * math.pi)
        if abs(periods - round(periods)) > 1e-9 or round(periods) == 0:
            raise ValueError(
                "the Lagrangian Burgers problem is periodic: conditions.initial.wavenumber "
                f"times the length of domain.x must be a nonzero multiple of 2 pi, got {periods:g}"
                " periods"
            )
        super().__init__(0.0, x, t, amplitude, wavenumber, nu=nu)

    def reference(self, n1, n2):
        return burgers_reference(self, n1, n2, periodic(1))
