r"""TENG: time-evolving natural gradient (Chen, McCarran, Vizcaino, Soljačić & Luo, ICML 2024).

A network $u_\theta(x)$ is carried through time by fitting, at every step, the explicit
Runge–Kutta target built from the PDE's right-hand side $F[u]$ (``heat``: $\nu\Delta u$;
``allen_cahn``: $\nu\Delta u + u - u^3$; ``burgers``: $\nu\Delta u - u\sum_i\partial_i u$):

* stage $i$ of a tableau $(a, b)$: fit $u_{\theta_i} \approx u_n + \Delta t\sum_{j<i} a_{ij}k_j$
  and take $k_i = F[u_{\theta_i}]$ (stage 1 is $\theta_n$ itself);
* the step: fit $u_{\theta_{n+1}} \approx u_n + \Delta t\sum_i b_i k_i$.

``euler`` is TENG-Euler, ``heun`` TENG-Heun (the paper's two methods) and ``rk4`` the
fourth-order variant. The scheme is the paper's; the settings differ from the authors' code,
which runs 7 updates in a step's first fit (the first over 1536 parameters, then 1024), 65,536
points on a quadrature grid and a network with a learnable cosine first layer: here every fit
runs ``iterations`` updates over ``subsample`` parameters, the points are uniform random, and
the bundled cases' network is the fixed periodic embedding of
:class:`~physml.models.PeriodicMLP`. Every value lives on one set of $n$ sample points $X$ drawn
afresh each step, so the fits are least-squares problems in function space. A fit runs
``iterations`` Gauss–Newton (natural-gradient) updates from the previous stage's parameters:
with the residual $r = \text{target} - u_\theta(X)$ and a random subset $S$ of ``subsample``
parameters,
$$\delta_S = \arg\min_\delta \|J_S\,\delta - r\|_2,\quad
J_S = \partial u_\theta(X)/\partial\theta_S \in\mathbb{R}^{n\times|S|},\quad
\theta_S \leftarrow \theta_S + \delta_S.$$
Each update is solved with Tikhonov damping $\lambda\|\delta\|^2$, from $\lambda$ = 1e-12 of
the scale; one that would raise the residual is solved again with $\lambda$ growing 100-fold
(Levenberg–Marquardt, :meth:`TENG.fit`):
without it, one overshooting Gauss–Newton step of a small network on Burgers sent the
parameters from norm 14 to 5e5 and the error to 25.

The least-squares solve (``solver``, :mod:`physml.train.least_squares`): ``"dense"``, the thin
SVD of $J_S$ with small singular values dropped; ``"gram"``, Cholesky of the smaller Gram
matrix ($J_S^\top J_S$, or $J_SJ_S^\top$ in sample space when $n < |S|$: the Woodbury/SPRING
form) with one refinement step; ``"auto"``: ``"gram"``. ``solver_used`` names the one used.

Memory: $J_S$ is built in chunks of ``chunk`` points. For networks of linear layers (the
MLPs here) a chunk costs one forward and one backward pass, $O(\text{chunk}\cdot w L)$ for
width $w$ and depth $L$, plus its $\text{chunk}\cdot|S|$ columns (:mod:`physml.train.jacobian`);
for other networks it holds its full Jacobian, $O(\text{chunk}\cdot p)$. The Gram solve in
parameter space ($n \ge |S|$, the paper-scale cases) accumulates $J_S^\top J_S$ and
$J_S^\top r$ chunk by chunk, so $J_S$ never exists in one piece: the peak is
$O(|S|^2 + \text{chunk}\cdot|S|)$ floats, whatever $n$ (512² points x 1500 columns would be
3.1 GB in float64; its Gram matrix is 18 MB). In sample space $J_S$ is kept, $O(n|S|)$ with
$n < |S|$, no more than the Gram matrix of the other side. The dense SVD solve holds $J_S$.

Fallbacks are counted in ``fallbacks`` (their causes in ``fallback_reasons``) and each kind is
warned once per :class:`TENG` (``RuntimeWarning``): ``"full_jacobian"``, a Jacobian built by
``vmap(jacrev)`` with all $p$ columns per point, $O(\text{chunk}\cdot p)$ memory, because the
network is not one of linear layers each run once; ``"lstsq"``, a Gram solve whose damped
matrix Cholesky could not factor, solved by least squares instead
(:func:`~physml.train.least_squares.lstsq`, an SVD).

The initial condition is fitted by Levenberg–Marquardt with variable projection on all
parameters (:meth:`TENG.fit_initial`), down to ``tolerance`` (1e-10) on its points where the
network can: 2.4e-10 for the 1D tests. The reduced 2D network (641 parameters) converges
linearly and slowly, measured on fresh points: 1.4e-6 after 400 iterations, 2.0e-7 after 2000,
2.5e-8 after 7800 (cases: ``training.teng.initial_iterations``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..devices import Stopwatch, require_torch_device
from ..models import MLP, FourierFeatureMLP, ModifiedMLP, PeriodicMLP
from ..solvers.errors import BlowUpError, is_real, whole_number
from ..solvers.timestepping import Tableau, tableau
from .jacobian import LinearLayerJacobian, NotLinearLayers
from .least_squares import MIN_DAMPING, GramSolver, SVDSolver, lstsq

PDES = ("heat", "allen_cahn", "burgers")
MAX_DAMPING = 1e2  # largest relative Tikhonov damping of a fit update (see fit)

_INPUT_WIDTH: dict[type[nn.Module], Callable[[nn.Module], int]] = {
    MLP: lambda model: model.net[0].in_features,
    ModifiedMLP: lambda model: model.encode_u.in_features,
    FourierFeatureMLP: lambda model: model.frequencies.shape[0],
    PeriodicMLP: lambda model: model.periodic.numel() + model.other.numel(),
}


def input_width(model: nn.Module) -> int | None:
    """How many input columns ``model`` reads: its ``d_in`` if it is a network of
    :mod:`physml.models`, else None (not known). :class:`TENG` checks its ``dim`` against it:
    a :class:`~physml.models.PeriodicMLP` picks its columns by index, so points (n, d) with
    d above its ``d_in`` would run, the extra coordinates left out of $u$."""
    width = _INPUT_WIDTH.get(type(model))
    return None if width is None else width(model)


class FitToleranceWarning(RuntimeWarning):
    """:meth:`TENG.fit_initial` stopped above its tolerance (the error reached is in the
    message and in ``initial_error``)."""


@dataclass(frozen=True)
class TENGPDE:
    r"""Right-hand side $F[u]$ of $u_t = F[u]$ on a periodic box: $\nu\Delta u$ plus
    $u - u^3$ (``allen_cahn``) or $-u\sum_i\partial_i u$ (``burgers``).

    Args:
        name: one of :data:`PDES`.
        nu: the viscosity or diffusivity $\nu$, a finite number >= 0.
    """

    name: str
    nu: float

    def __post_init__(self) -> None:
        if self.name not in PDES:
            raise ValueError(f"unknown TENG pde {self.name!r}; allowed: {', '.join(PDES)}")
        if not (is_real(self.nu) and math.isfinite(self.nu) and self.nu >= 0):
            raise ValueError(f"nu={self.nu!r} must be a finite number >= 0")

    def rhs(self, u: torch.Tensor, grad: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
        """$F$ from values (n,), gradients (n, d) and Laplacians (n,)."""
        out = self.nu * laplacian
        if self.name == "allen_cahn":
            out = out + u - u**3
        elif self.name == "burgers":
            out = out - u * grad.sum(-1)
        return out


@dataclass(frozen=True)
class FitProgress:
    r"""One iteration of :meth:`TENG.fit_initial`, as its ``on_iteration`` callback sees it.

    Attributes:
        iteration: iterations done (1, 2, ...).
        error: relative L2 error $\|u_\theta(X) - u_0(X)\| / \|u_0(X)\|$ on the fit's points.
        damping: the Levenberg–Marquardt damping the next iteration starts from.
        elapsed_s: seconds since the fit began (device-synchronised).
    """

    iteration: int
    error: float
    damping: float
    elapsed_s: float


FALLBACKS = ("lstsq", "full_jacobian")  # the kinds counted in TENG.fallbacks


class TENG:
    """Time-evolving natural gradient for a network on a periodic box $[0, L)^d$.

    Args:
        model: network mapping points (n, ``dim``) to values (n, 1); float64 is used
            throughout. Where its input width is known (:func:`input_width`) it must be
            ``dim``. It is used as a function of ``theta``: its own parameters keep their
            initial values until :meth:`write_theta_to_model`.
        pde: the PDE (:class:`TENGPDE`).
        scheme: ``"euler"``, ``"heun"`` or ``"rk4"`` (or any :class:`Tableau`).
        dt: time step, finite and > 0.
        points: sample points per step (uniform random in the box), >= 1.
        subsample: parameters updated per inner iteration, >= 1 (all if >= the parameter
            count).
        iterations: Gauss–Newton iterations per fit, >= 1.
        solver: ``"auto"``, ``"gram"`` or ``"dense"`` (see the module docstring).
        length: box length $L$ per axis, finite and > 0.
        dim: space dimension $d$ of the box $[0, L)^d$, >= 1.
        chunk: points per block of the Jacobian and of the right-hand side, >= 1 (the
            memory it bounds: see the module docstring).
        device: where the network and the points live ("cpu", "cuda", "cuda:N").
        seed: random stream of points and subsets, >= 0.

    Counts are whole numbers.

    Raises:
        ValueError: an argument outside these ranges, an unknown ``solver`` or ``scheme``, a
            ``dim`` other than the model's input width, or a model whose output width is not
            1 (one message naming the argument, its value and what is allowed).

    Attributes:
        theta: the flat parameters, shape (p,), float64: the fitted and evolved state.
            ``model``'s own parameters are not updated by :meth:`fit_initial` or :meth:`run`
            (evaluate with :meth:`value`, or call :meth:`write_theta_to_model` first).
        t: the time reached.
        solver_used: ``"gram"`` or ``"dense"``, the least-squares solver the fits use.
        solve_seconds, solves: device-synchronised seconds of the least-squares arithmetic, and
            the number of solves (damping retries included).
        fallbacks: ``{"lstsq": n, "full_jacobian": m}``, how often each fallback of the module
            docstring happened; ``fallback_reasons``: the cause of each that did.
        initial_error: the relative L2 error of :meth:`fit_initial` on fresh points (None
            before the fit).

    :meth:`state_dict` and :meth:`load_state_dict` carry everything a resumed run needs.
    """

    def __init__(
        self,
        model: nn.Module,
        pde: TENGPDE,
        *,
        scheme: str | Tableau = "heun",
        dt: float = 5e-3,
        points: int = 1024,
        subsample: int = 1536,
        iterations: int = 5,
        solver: str = "auto",
        length: float = 2 * math.pi,
        dim: int = 2,
        chunk: int = 4096,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if solver not in ("auto", "gram", "dense"):
            raise ValueError(f"unknown solver {solver!r}; allowed: auto, gram, dense")
        points, subsample, iterations, dim, chunk, seed = (
            whole_number(value, name, least) for name, value, least in (
                ("points", points, 1), ("subsample", subsample, 1),
                ("iterations", iterations, 1), ("dim", dim, 1), ("chunk", chunk, 1),
                ("seed", seed, 0)))
        for name, value in (("dt", dt), ("length", length)):
            if not (is_real(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a finite number > 0")
        width = input_width(model)
        if width not in (None, dim):
            raise ValueError(f"dim={dim} does not match the model: its {type(model).__name__} "
                             f"takes points of {width} coordinates; pass dim={width} or a model "
                             f"of input width {dim}")
        self.device = torch.device(require_torch_device(device))
        self.model = model.to(self.device, torch.float64)
        with torch.no_grad():
            shape = self.model(torch.zeros(1, dim, dtype=torch.float64, device=self.device)).shape
        if tuple(shape) != (1, 1):
            raise ValueError(f"model maps one point to values of shape {tuple(shape)}; TENG "
                             "evolves one scalar field: give a model of output width 1")
        self.pde = pde
        self.tableau = tableau(scheme) if isinstance(scheme, str) else scheme
        self.dt, self.n_points, self.iterations = dt, points, iterations
        self.solver, self.length, self.dim, self.chunk = solver, length, dim, chunk
        self._names = [name for name, _ in self.model.named_parameters()]
        self._shapes = [p.shape for _, p in self.model.named_parameters()]
        self.theta = torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])
        self.solver_used = "dense" if solver == "dense" else "gram"
        try:
            self._outer_jacobian, self._full_jacobian_reason = (
                LinearLayerJacobian.for_model(self.model, dim), "")
        except NotLinearLayers as exc:
            self._outer_jacobian, self._full_jacobian_reason = None, (
                f"{exc}, so the Jacobian is built by vmap(jacrev) with all "
                f"{self.theta.numel()} columns per point: O(chunk * p) memory, not O(chunk * |S|)")
        self.subsample = min(subsample, self.theta.numel())
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.t = 0.0
        self.solve_seconds = 0.0
        self.solves = 0
        self.fallbacks = dict.fromkeys(FALLBACKS, 0)
        self.fallback_reasons: dict[str, str] = {}
        self._warned: set[str] = set()
        self.initial_error: float | None = None

    def state_dict(self) -> dict:
        """What a resumed run needs: parameters, time, random stream, solve counters,
        fallbacks and the initial fit's error (tensors as they are; ``torch.save`` them)."""
        return {"theta": self.theta, "t": self.t, "generator": self.generator.get_state(),
                "solve_seconds": self.solve_seconds, "solves": self.solves,
                "fallbacks": dict(self.fallbacks), "fallback_reasons": dict(self.fallback_reasons),
                "initial_error": self.initial_error}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`: the next steps are those the saved run would take.

        Raises:
            ValueError: the saved parameter vector is not this model's size (another model's
                state).
        """
        theta = state["theta"]
        if tuple(theta.shape) != tuple(self.theta.shape):
            raise ValueError(f"the state's theta has shape {tuple(theta.shape)}; this model's "
                             f"parameters make {tuple(self.theta.shape)}: load the state of a "
                             "TENG built on the same network")
        self.theta = theta.to(self.device, torch.float64)
        self.t = state["t"]
        self.generator.set_state(state["generator"])
        self.solve_seconds, self.solves = state["solve_seconds"], state["solves"]
        self.fallbacks = {**dict.fromkeys(FALLBACKS, 0), **state["fallbacks"]}
        self.fallback_reasons = dict(state["fallback_reasons"])
        self.initial_error = state["initial_error"]

    def write_theta_to_model(self) -> nn.Module:
        """Copy ``theta`` into ``model``'s parameters and return the model (its own
        parameters otherwise keep their initial values)."""
        params = self._params(self.theta)
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                parameter.copy_(params[name])
        return self.model

    def _fallback(self, kind: str, reason: str, count: int = 1) -> None:
        """Count ``count`` fallbacks of ``kind``; warn the first time in this object."""
        self.fallbacks[kind] += count
        self.fallback_reasons[kind] = reason
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"TENG {kind} fallback: {reason}", RuntimeWarning, stacklevel=3)

    # -- the network as a function of flat parameters ------------------------------------
    def _params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, shape in zip(self._names, self._shapes):
            size = math.prod(shape)
            out[name] = theta[offset : offset + size].reshape(shape)
            offset += size
        return out

    def _scalar(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self._params(theta), (x[None],))[0, 0]

    def value(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """$u_\\theta(X)$, shape (n,)."""
        with torch.no_grad():
            return functional_call(self.model, self._params(theta), (X,))[:, 0]

    def rhs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """$F[u_\\theta](X)$, shape (n,), by exact automatic derivatives in x."""
        grad_x = jacrev(self._scalar, argnums=1)
        hess_x = jacrev(grad_x, argnums=1)
        parts = []
        for x in torch.split(X, self.chunk):
            u = vmap(self._scalar, in_dims=(None, 0))(theta, x)
            g = vmap(grad_x, in_dims=(None, 0))(theta, x)
            lap = vmap(hess_x, in_dims=(None, 0))(theta, x).diagonal(dim1=-2, dim2=-1).sum(-1)
            parts.append(self.pde.rhs(u, g, lap).detach())
        return torch.cat(parts)

    def jacobian_blocks(self, theta: torch.Tensor, X: torch.Tensor,
                        columns: torch.Tensor) -> Iterator[torch.Tensor]:
        """$\\partial u_\\theta(X)/\\partial\\theta_S$ for the parameter indices ``columns``, in
        row blocks of at most ``chunk`` points, shape (chunk, |S|) each (see the memory note in
        the module docstring): by outer products for networks of linear layers
        (:mod:`physml.train.jacobian`), else by ``vmap(jacrev)`` (a ``"full_jacobian"``
        fallback)."""
        if self._outer_jacobian is not None:
            params = self._params(theta)
            for x in torch.split(X, self.chunk):
                block = torch.empty(columns.numel(), x.shape[0], dtype=x.dtype, device=x.device)
                self._outer_jacobian.transposed(params, x, columns, block)
                yield block.T
        else:
            self._fallback("full_jacobian", self._full_jacobian_reason)
            jac = vmap(jacrev(self._scalar, argnums=0), in_dims=(None, 0))
            for x in torch.split(X, self.chunk):
                yield jac(theta, x)[:, columns].detach()

    def jacobian(self, theta: torch.Tensor, X: torch.Tensor, columns: torch.Tensor):
        """The blocks of :meth:`jacobian_blocks` in one piece, shape (n, |S|)."""
        return torch.cat(list(self.jacobian_blocks(theta, X, columns)))

    # -- least squares ------------------------------------------------------------------
    def least_squares(self, theta: torch.Tensor, X: torch.Tensor, columns: torch.Tensor,
                      r: torch.Tensor) -> GramSolver | SVDSolver:
        """The configured solver of $\\min_\\delta\\|J_S\\delta - r\\|$ at ``theta`` on ``X``,
        factored and ready to :meth:`~GramSolver.solve` for any damping."""
        kind = SVDSolver if self.solver == "dense" else GramSolver
        return kind(self.jacobian_blocks(theta, X, columns), r)

    def fit(self, theta: torch.Tensor, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``iterations`` sub-sampled Gauss–Newton updates of ``theta`` towards ``target``.

        An update is kept only if it lowers the residual on ``X``; otherwise the damping grows
        100-fold from ``MIN_DAMPING`` (Levenberg–Marquardt) and the update is solved again, up
        to ``MAX_DAMPING``, past which the iteration leaves ``theta`` as it is. The first try
        is damped at ``MIN_DAMPING`` (1e-12 of the scale: Gauss–Newton with a floor that keeps
        the normal equations positive definite), and where it lowers the residual it is kept.
        The residuals'
        norms are taken scaled (:func:`scaled_norm`), so finite values compare whatever their size.

        Raises:
            BlowUpError: the residual's norm is not finite, or no damping gives an update
                whose residual's norm is: no update could be kept, and ``theta`` would stay
                frozen while the run went on (the step is that of :meth:`step`).
        """
        theta = theta.clone()
        p = theta.numel()
        for _ in range(self.iterations):
            columns = torch.randperm(p, generator=self.generator)[: self.subsample].to(self.device)
            r = target - self.value(theta, X)
            residual, damping, finite = scaled_norm(r), MIN_DAMPING, False
            if not math.isfinite(residual):
                raise self._blow_up(f"is too far from a fit's target: the residual's norm is "
                                    f"{residual}")
            solver = self.least_squares(theta, X, columns, r)
            while damping <= MAX_DAMPING:
                trial = theta.clone()
                trial[columns] += solver.solve(damping)
                self.solves += 1
                trial_residual = scaled_norm(target - self.value(trial, X))
                finite = finite or math.isfinite(trial_residual)
                if trial_residual < residual:
                    theta = trial
                    break
                damping *= 100
            if not finite:
                raise self._blow_up(f"became NaN/Inf in every update of a fit (relative "
                                    f"damping {MIN_DAMPING:.0e} to {MAX_DAMPING:.0e})")
            self.solve_seconds += solver.seconds
            if isinstance(solver, GramSolver) and solver.lstsq_fallbacks:
                self._fallback("lstsq", solver.fallback_reason, solver.lstsq_fallbacks)
        return theta

    def sample(self, n: int) -> torch.Tensor:
        """Uniform random points in the box, shape (n, dim)."""
        u = torch.rand(n, self.dim, generator=self.generator, dtype=torch.float64)
        return (u * self.length).to(self.device)

    def step(self) -> None:
        """Advance parameters by one time step ``dt``.

        Raises:
            BlowUpError: a stage's target or the step's target (so a right-hand side) is
                NaN/Inf, found before any fit to it, or a fit could keep no update (its
                residual's norm, or that of every update, not finite: :meth:`fit`); ``theta``
                and ``t`` stay those of the last good step (the step is counted from t = 0,
                ``round(t / dt) + 1``).
        """
        X = self.sample(self.n_points)
        u_n = self.value(self.theta, X)
        a, b = self.tableau.a, self.tableau.b
        stages: list[torch.Tensor] = []
        theta = self.theta
        for row in a:
            if any(row):
                target = u_n + self.dt * sum(coef * k for coef, k in zip(row, stages))
                theta = self.fit(theta, X, self._finite(target))
            stages.append(self.rhs(theta if any(row) else self.theta, X))
        target = u_n + self.dt * sum(coef * k for coef, k in zip(b, stages))
        self.theta = self.fit(theta, X, self._finite(target))
        self.t += self.dt

    def _finite(self, target: torch.Tensor) -> torch.Tensor:
        """``target`` of the step from ``t``, or :class:`BlowUpError` if it is not finite
        (a fit would reject every update and leave ``theta`` frozen without a word)."""
        if not torch.isfinite(target).all():
            raise self._blow_up("became NaN/Inf in a fit's target u_n + dt * F[u]")
        return target

    def _blow_up(self, what: str) -> BlowUpError:
        """The :class:`BlowUpError` of the step from ``t`` (counted from t = 0), ``u``
        having done ``what``; ``theta`` keeps the last good step (none where ``theta`` itself
        is not finite)."""
        step = round(self.t / self.dt) + 1
        state = self.theta.detach().cpu().numpy()
        good = bool(torch.isfinite(self.theta).all())  # (theta set to NaN by hand: none)
        return BlowUpError(step=step, t=self.t + self.dt, field="u", what=what,
                           last_good_step=step - 1 if good else None,
                           last_good_state=state if good else None,
                           advice=("theta keeps the last good step; lower dt or check the "
                                   "network and the initial condition") if good else
                                  "theta holds NaN/Inf before the step: set a finite theta")

    def run(
        self,
        t_end: float,
        on_step: Callable[[TENG], None] | None = None,
    ) -> None:
        """Step until ``t_end`` (a whole number of steps from the current time)."""
        if not (is_real(t_end) and math.isfinite(t_end)):
            raise ValueError(f"t_end={t_end!r} must be a finite number")
        steps = round((t_end - self.t) / self.dt)
        if abs(self.t + steps * self.dt - t_end) > 1e-9 * max(1.0, t_end) or steps < 0:
            raise ValueError(f"t_end={t_end} is not a whole number of steps dt={self.dt} away")
        for _ in range(steps):
            self.step()
            if on_step is not None:
                on_step(self)

    def output_columns(self) -> torch.Tensor:
        r"""Indices in $\theta$ of the last linear layer (the network is linear in them)."""
        last = [name for name, m in self.model.named_modules() if isinstance(m, nn.Linear)][-1]
        columns, offset = [], 0
        for name, shape in zip(self._names, self._shapes):
            size = math.prod(shape)
            if name.rsplit(".", 1)[0] == last:
                columns.append(torch.arange(offset, offset + size))
            offset += size
        return torch.cat(columns).to(self.device)

    def fit_initial(
        self,
        u0: Callable[[torch.Tensor], torch.Tensor],
        points: int = 2048,
        tolerance: float = 1e-10,
        max_iterations: int = 400,
        on_iteration: Callable[[FitProgress], None] | None = None,
    ) -> float:
        r"""Fit all parameters to ``u0`` on random points; returns the relative L2 error on fresh
        points, also kept in ``initial_error`` (the fitted parameters are ``theta``: with
        :meth:`state_dict` a run can checkpoint here and resume straight into time stepping).

        Each iteration is a Levenberg–Marquardt step (the damped system solved by QR,
        $[J; \sqrt{\lambda s}I]\delta = [r; 0]$, not by normal equations, which would square
        the conditioning) followed by the exact least-squares solve for the output layer
        (variable projection); it stops when the training error reaches ``tolerance``, after
        ``max_iterations``, or when no damping up to 1e8 lowers the error; stopped above
        ``tolerance``, it warns (:class:`FitToleranceWarning`) with the training error reached.

        Args:
            u0: the initial condition, points (n, dim) -> finite values (n,), not zero at
                every point (the relative error would be undefined).
            points: fit points, drawn from the random stream, >= 1.
            tolerance: relative L2 training error to stop at, a finite number >= 0.
            max_iterations: most Levenberg–Marquardt iterations, >= 0.
            on_iteration: called after every iteration with its :class:`FitProgress` (for
                progress lines: the fit takes minutes for the 2D cases).
        """
        points, max_iterations = (whole_number(value, name, least) for name, value, least in (
            ("points", points, 1), ("max_iterations", max_iterations, 0)))
        if not (is_real(tolerance) and math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"tolerance={tolerance!r} must be a finite number >= 0")
        X = self.sample(points)
        target = _initial_values(u0, X)
        theta, damping, ran = self.theta.clone(), 1e-3, 0
        error = relative_error(self.value(theta, X) - target, target)
        with Stopwatch(self.device) as watch:
            for iteration in range(1, max_iterations + 1):
                if error <= tolerance or damping > 1e8:
                    break
                theta, error, damping = self._initial_fit_step(theta, X, target, error, damping)
                ran = iteration
                if on_iteration is not None:
                    on_iteration(FitProgress(iteration, error, damping, watch.read()))
        self.theta = theta
        if error > tolerance:
            why = ("no damping up to 1e8 lowered it: loosen tolerance or widen the network"
                   if damping > 1e8 else "raise max_iterations or loosen tolerance")
            warnings.warn(f"TENG.fit_initial stopped at training error {error:.3e} > "
                          f"tolerance={tolerance:g} after {ran} iterations (max_iterations="
                          f"{max_iterations}); {why}", FitToleranceWarning, stacklevel=2)
        test = self.sample(points)
        reference = _initial_values(u0, test)
        self.initial_error = relative_error(self.value(theta, test) - reference, reference)
        return self.initial_error

    def _initial_fit_step(self, theta: torch.Tensor, X: torch.Tensor, target: torch.Tensor,
                          error: float, damping: float) -> tuple[torch.Tensor, float, float]:
        """One iteration of :meth:`fit_initial` from ``theta`` (training ``error``): the damping
        grows 4-fold until a step lowers the error (then it shrinks 3-fold for the next), or
        passes 1e8, which leaves ``theta`` as it is. Returns (theta, error, damping)."""
        p = theta.numel()
        J = self.jacobian(theta, X, torch.arange(p, device=self.device))
        r = target - self.value(theta, X)
        scale = float(J.square().sum(0).mean())
        zeros = torch.zeros(p, dtype=target.dtype, device=self.device)
        eye = torch.eye(p, dtype=target.dtype, device=self.device)
        output = self.output_columns()
        while damping <= 1e8:
            A = torch.cat([J, math.sqrt(damping * scale) * eye])
            trial = theta + lstsq(A, torch.cat([r, zeros]), full_rank=True)  # damped
            rest = target - self.value(trial, X)
            J_out = self.jacobian(trial, X, output)
            trial[output] += lstsq(J_out, rest)
            trial_error = relative_error(self.value(trial, X) - target, target)
            if trial_error < error:
                return trial, trial_error, max(damping / 3, 1e-15)
            damping *= 4
        return theta, error, damping


def _initial_values(u0: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """``u0(X)``, shape (n,), refused unless it is a tensor of that shape, finite, and not
    zero at every point (a ValueError naming u0)."""
    values = u0(X)
    if not isinstance(values, torch.Tensor) or values.shape != (len(X),):
        raise ValueError(f"u0 returned {tuple(getattr(values, 'shape', ()))} values for "
                         f"{len(X)} points; expected a tensor of shape ({len(X)},)")
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise ValueError(f"u0 returned NaN/Inf at {bad} of {len(X)} points; the initial "
                         "condition must be finite")
    if not values.any():
        raise ValueError(f"u0 is zero at all {len(X)} points: the fit's relative error "
                         "||u - u0|| / ||u0|| is undefined; give a nonzero initial condition")
    return values


def scaled_norm(v: torch.Tensor) -> float:
    r"""$\|v\|_2$ as $m\,\|v/m\|_2$, $m = \max_i|v_i|$: inf only where the norm itself is
    beyond the float range (the plain norm overflows once $|v_i| \gtrsim 10^{154}$), NaN or
    inf where ``v`` holds NaN or Inf."""
    scale = v.abs().max()
    if not (torch.isfinite(scale) and scale > 0):
        return float(v.norm())
    return float(scale * (v / scale).norm())


def relative_error(error: torch.Tensor, reference: torch.Tensor) -> float:
    r"""$\|e\|_2 / \|r\|_2$ with both norms scaled (:func:`scaled_norm`: finite for finite
    values however large); inf for a zero reference."""
    size = scaled_norm(reference)
    return scaled_norm(error) / size if size else math.inf
