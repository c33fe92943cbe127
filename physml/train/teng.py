r"""TENG: time-evolving natural gradient (Chen, McCarran, Vizcaino, Soljačić & Luo, ICML 2024).

A network $u_\theta(x)$ is carried through time by fitting, at every step, the explicit
Runge–Kutta target built from the PDE's right-hand side $F[u]$ (``heat``: $\nu\Delta u$;
``allen_cahn``: $\nu\Delta u + u - u^3$; ``burgers``: $\nu\Delta u - u\sum_i\partial_i u$):

* stage $i$ of a tableau $(a, b)$: fit $u_{\theta_i} \approx u_n + \Delta t\sum_{j<i} a_{ij}k_j$
  and take $k_i = F[u_{\theta_i}]$ (stage 1 is $\theta_n$ itself);
* the step: fit $u_{\theta_{n+1}} \approx u_n + \Delta t\sum_i b_i k_i$.

``euler`` is TENG-Euler, ``heun`` TENG-Heun (the paper's two methods), ``ssp_rk3`` and ``rk4`` the
third- and fourth-order variants. The scheme is the paper's; the settings differ from the authors'
code, which runs 7 updates in a step's first fit (the first over 1536 parameters, then 1024), 65,536
points on a quadrature grid and a network with a learnable cosine first layer: here every fit
runs ``iterations`` updates over ``subsample`` parameters, the points are uniform random, and
the bundled cases' network is the fixed periodic embedding of
:class:`~physml.models.PeriodicMLP`. Every value lives on one set of $n$ sample points $X$ drawn
afresh each step, so the fits are least-squares problems in function space: sub-sampled
Gauss–Newton (natural-gradient) updates with Levenberg–Marquardt damping
(:mod:`physml.train.gauss_newton`, :meth:`TENG.fit`). The network is evaluated, differentiated
in $x$ and in $\theta$ as a function of the flat $\theta$ by :mod:`physml.train.flat_network`
(which also states the memory its Jacobian takes); the initial condition is fitted by
:mod:`physml.train.initial_fit` (:meth:`TENG.fit_initial`).

The least-squares solve (``solver``, :mod:`physml.train.least_squares`): ``"dense"``, the thin
SVD of $J_S$ with small singular values dropped; ``"gram"``, Cholesky of the smaller Gram
matrix ($J_S^\top J_S$, or $J_SJ_S^\top$ in sample space when $n < |S|$: the Woodbury/SPRING
form) with one refinement step; ``"auto"``: ``"gram"``. ``solver_used`` names the one used.

Fallbacks are counted in ``fallbacks`` (their causes in ``fallback_reasons``) and each kind is
warned once per :class:`TENG` (``RuntimeWarning``): ``"full_jacobian"``, a Jacobian built by
``vmap(jacrev)`` with all $p$ columns per point, $O(\text{chunk}\cdot p)$ memory, because the
network is not one of linear layers each run once; ``"lstsq"``, a Gram solve whose damped
matrix Cholesky could not factor, solved by least squares instead
(:func:`~physml.train.least_squares.lstsq`, an SVD).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..devices import Stopwatch, require_torch_device
from ..solvers.errors import BlowUpError, is_real, whole_number
from ..solvers.timestepping import SCHEMES, Tableau
from . import gauss_newton, initial_fit
from .flat_network import FlatNetwork
from .flat_network import input_width as input_width
from .gauss_newton import MAX_DAMPING as MAX_DAMPING
from .gauss_newton import relative_error as relative_error
from .gauss_newton import scaled_norm as scaled_norm
from .initial_fit import FitProgress as FitProgress
from .initial_fit import FitToleranceWarning as FitToleranceWarning
from .jacobian import LinearLayerJacobian
from .least_squares import GramSolver, SVDSolver

PDES = ("heat", "allen_cahn", "burgers")
FALLBACKS = ("lstsq", "full_jacobian")  # the kinds counted in TENG.fallbacks


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


class TENG:
    """Time-evolving natural gradient for a network on a periodic box $[0, L)^d$.

    Args:
        model: network mapping points (n, ``dim``) to values (n, 1); float64 is used
            throughout. Where its input width is known (:func:`input_width`) it must be
            ``dim``. It is used as a function of ``theta``: its own parameters keep their
            initial values until :meth:`write_theta_to_model`.
        pde: the PDE (:class:`TENGPDE`).
        scheme: ``"euler"``, ``"heun"``, ``"ssp_rk3"`` or ``"rk4"`` (or any :class:`Tableau`).
        dt: time step, finite and > 0.
        points: sample points per step (uniform random in the box), >= 1.
        subsample: parameters updated per inner iteration, >= 1 (all if >= the parameter
            count).
        iterations: Gauss–Newton iterations per fit, >= 1.
        solver: ``"auto"``, ``"gram"`` or ``"dense"`` (see the module docstring).
        length: box length $L$ per axis, finite and > 0.
        dim: space dimension $d$ of the box $[0, L)^d$, >= 1.
        chunk: points per block of the Jacobian and of the right-hand side, >= 1 (the
            memory it bounds: see :mod:`physml.train.flat_network`).
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
        history: one dict per step taken (:meth:`step`, :meth:`run`), what :meth:`run`
            returns: ``step`` (counted from t = 0, ``round(t / dt)``), ``t`` (the time
            reached), ``wall_s`` (seconds of the steps so far, device-synchronised), and the
            totals so far of ``solves``, ``solve_s`` (``solve_seconds``) and ``fallbacks``.

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
        self.device = torch.device(require_torch_device(device))
        self.model = model.to(self.device, torch.float64)
        self.network = FlatNetwork(self.model, dim, self.device, self._fallback)
        self.pde = pde
        if isinstance(scheme, str) and scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r} for TENG; allowed: "
                             f"{', '.join(SCHEMES)} (or a Tableau)")
        self.tableau = SCHEMES[scheme] if isinstance(scheme, str) else scheme
        self.dt, self.n_points, self.iterations = dt, points, iterations
        self.solver, self.length, self.dim, self.chunk = solver, length, dim, chunk
        self.theta = self.network.flat_parameters()
        self.solver_used = "dense" if solver == "dense" else "gram"
        self.subsample = min(subsample, self.theta.numel())
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.t = 0.0
        self.solve_seconds = 0.0
        self.solves = 0
        self.fallbacks = dict.fromkeys(FALLBACKS, 0)
        self.fallback_reasons: dict[str, str] = {}
        self._warned: set[str] = set()
        self.initial_error: float | None = None
        self.history: list[dict] = []

    def state_dict(self) -> dict:
        """What a resumed run needs: parameters, time, random stream, solve counters,
        fallbacks, the initial fit's error and the steps' ``history`` (under
        ``"step_history"``; tensors as they are: ``torch.save`` them)."""
        return {"theta": self.theta, "t": self.t, "generator": self.generator.get_state(),
                "solve_seconds": self.solve_seconds, "solves": self.solves,
                "fallbacks": dict(self.fallbacks), "fallback_reasons": dict(self.fallback_reasons),
                "initial_error": self.initial_error,
                "step_history": [dict(record) for record in self.history]}

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
        saved = state.get("step_history", [])  # none in a state saved before it was kept
        self.history = [dict(record) for record in saved]

    def write_theta_to_model(self) -> nn.Module:
        """Copy ``theta`` into ``model``'s parameters and return the model (its own
        parameters otherwise keep their initial values)."""
        return self.network.write(self.theta)

    def _fallback(self, kind: str, reason: str, count: int = 1) -> None:
        """Count ``count`` fallbacks of ``kind``; warn the first time in this object."""
        self.fallbacks[kind] += count
        self.fallback_reasons[kind] = reason
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"TENG {kind} fallback: {reason}", RuntimeWarning, stacklevel=3)

    # -- the network as a function of flat parameters (physml.train.flat_network) -------
    @property
    def _outer_jacobian(self) -> LinearLayerJacobian | None:
        return self.network.outer_jacobian

    def _scalar(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.network.scalar(theta, x)

    def value(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """$u_\\theta(X)$, shape (n,)."""
        return self.network.value(theta, X)

    def rhs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """$F[u_\\theta](X)$, shape (n,), by exact automatic derivatives in x."""
        return self.network.rhs(theta, X, self.pde.rhs, self.chunk)

    def jacobian_blocks(self, theta: torch.Tensor, X: torch.Tensor,
                        columns: torch.Tensor) -> Iterator[torch.Tensor]:
        """$\\partial u_\\theta(X)/\\partial\\theta_S$ for the parameter indices ``columns``, in
        row blocks of at most ``chunk`` points, shape (chunk, |S|) each
        (:meth:`~physml.train.flat_network.FlatNetwork.jacobian_blocks`)."""
        return self.network.jacobian_blocks(theta, X, columns, self.chunk)

    def jacobian(self, theta: torch.Tensor, X: torch.Tensor, columns: torch.Tensor):
        """The blocks of :meth:`jacobian_blocks` in one piece, shape (n, |S|)."""
        return self.network.jacobian(theta, X, columns, self.chunk)

    def output_columns(self) -> torch.Tensor:
        r"""Indices in $\theta$ of the last linear layer (the network is linear in them)."""
        return self.network.output_columns()

    # -- least squares ------------------------------------------------------------------
    def least_squares(self, theta: torch.Tensor, X: torch.Tensor, columns: torch.Tensor,
                      r: torch.Tensor) -> GramSolver | SVDSolver:
        """The configured solver of $\\min_\\delta\\|J_S\\delta - r\\|$ at ``theta`` on ``X``,
        factored and ready to :meth:`~GramSolver.solve` for any damping."""
        kind = SVDSolver if self.solver == "dense" else GramSolver
        return kind(self.jacobian_blocks(theta, X, columns), r)

    def fit(self, theta: torch.Tensor, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``iterations`` sub-sampled Gauss–Newton updates of ``theta`` towards ``target``
        (:func:`~physml.train.gauss_newton.fit`).

        Raises:
            BlowUpError: the residual's norm is not finite, or no damping gives an update
                whose residual's norm is: no update could be kept, and ``theta`` would stay
                frozen while the run went on (the step is that of :meth:`step`).
        """
        return gauss_newton.fit(self, theta, X, target)

    def sample(self, n: int) -> torch.Tensor:
        """Uniform random points in the box, shape (n, dim)."""
        u = torch.rand(n, self.dim, generator=self.generator, dtype=torch.float64)
        return (u * self.length).to(self.device)

    def step(self) -> None:
        """Advance parameters by one time step ``dt`` and append its record to ``history``.

        Raises:
            BlowUpError: a stage's target or the step's target (so a right-hand side) is
                NaN/Inf, found before any fit to it, or a fit could keep no update (its
                residual's norm, or that of every update, not finite: :meth:`fit`); ``theta``,
                ``t`` and ``history`` stay those of the last good step (the step is counted
                from t = 0, ``round(t / dt) + 1``).
        """
        with Stopwatch(self.device) as clock:
            self._advance()
        self.history.append(self._step_record(clock.seconds))

    def _step_record(self, seconds: float) -> dict:
        """The ``history`` record of the step just taken, which took ``seconds``."""
        before = self.history[-1]["wall_s"] if self.history else 0.0
        return {"step": round(self.t / self.dt), "t": self.t, "wall_s": before + seconds,
                "solves": self.solves, "solve_s": self.solve_seconds,
                "fallbacks": dict(self.fallbacks)}

    def _advance(self) -> None:
        """The step of :meth:`step`: ``theta`` and ``t`` one ``dt`` on."""
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

    def run(self, t_end: float, on_step: Callable[[TENG], None] | None = None) -> list[dict]:
        """Step until ``t_end`` (a whole number of steps from the current time); ``on_step``
        receives the TENG after each step.

        Returns:
            The history, a list of one dict per step taken since the TENG was built
            (``history``, kept across calls and in :meth:`state_dict`): ``step``, ``t``,
            ``wall_s`` and the totals so far of ``solves``, ``solve_s`` and ``fallbacks``.

        Raises:
            ValueError: ``t_end`` is not finite or not a whole number of steps ``dt`` on
                from ``t``.
            BlowUpError: a step blew up (:meth:`step`).
        """
        if not (is_real(t_end) and math.isfinite(t_end)):
            raise ValueError(f"t_end={t_end!r} must be a finite number")
        steps = round((t_end - self.t) / self.dt)
        if abs(self.t + steps * self.dt - t_end) > 1e-9 * max(1.0, t_end) or steps < 0:
            raise ValueError(f"t_end={t_end} is not a whole number of steps dt={self.dt} away")
        for _ in range(steps):
            self.step()
            if on_step is not None:
                on_step(self)
        return self.history

    def fit_initial(
        self,
        u0: Callable[[torch.Tensor], torch.Tensor],
        points: int = 2048,
        tolerance: float = 1e-10,
        max_iterations: int = 400,
        on_iteration: Callable[[FitProgress], None] | None = None,
    ) -> float:
        """Fit all parameters to ``u0`` on random points; returns the relative L2 error on fresh
        points, also kept in ``initial_error`` (the fitted parameters are ``theta``: with
        :meth:`state_dict` a run can checkpoint here and resume straight into time stepping).

        Levenberg–Marquardt with variable projection
        (:func:`~physml.train.initial_fit.fit_initial`), until the training error reaches
        ``tolerance``, after ``max_iterations``, or when no damping up to 1e8 lowers the error;
        stopped above ``tolerance``, it warns (:class:`FitToleranceWarning`) with the training
        error reached.

        Args:
            u0: the initial condition, points (n, dim) -> finite values (n,), not zero at
                every point (the relative error would be undefined).
            points: fit points, drawn from the random stream, >= 1.
            tolerance: relative L2 training error to stop at, a finite number >= 0.
            max_iterations: most Levenberg–Marquardt iterations, >= 0.
            on_iteration: called after every iteration with its :class:`FitProgress` (for
                progress lines: the fit takes minutes for the 2D cases).
        """
        self.theta, self.initial_error = initial_fit.fit_initial(
            self, u0, points, tolerance, max_iterations, on_iteration)
        return self.initial_error
