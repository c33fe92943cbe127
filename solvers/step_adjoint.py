r"""The reverse pass of one explicit Runge–Kutta step of a fused grid solver, on the CPU.

For a step $u' = u + \Delta t \sum_i b_i k_i$, $k_i = F(v_i)$,
$v_i = u + \Delta t \sum_{j<i} a_{ij} k_j$ ($\Delta t$ each sample's own), the cotangent
$\bar u'$ gives, stage by stage in reverse ($\bar k_i$ starting at $\Delta t\, b_i \bar u'$):

$$\bar v_i = (\partial F/\partial v)^T(v_i)\,\bar k_i,\qquad
\bar u \mathrel{+}= \bar v_i,\qquad \bar k_j \mathrel{+}= \Delta t\, a_{ij}\,\bar v_i\ (j < i),$$

$\bar u$ starting at $\bar u'$, and each stage adds its parameters' cotangents. The stage inputs
come from the native forward stages, the products from
:class:`~physml.solvers.stage_adjoint.StageVJP`; the parameters' per-cell cotangents are summed
to each parameter's shape by the index the stage kernels read it with. What Warp's generated
adjoint of the per-cell stage computes, in native loops (the bridge's backward on the CPU).
"""

from __future__ import annotations

import numpy as np
import warp as wp

from .rk_stages import Coefficient, time_step_coefficient
from .stage_adjoint import StageVJP


def supported(solver) -> bool:
    """Whether :class:`ExplicitStepAdjoint` handles ``solver``'s steps: fused explicit stages on
    the CPU, a grid of one or two axes, every parameter scaling a term of the operator."""
    roles = {solver.diffusion_parameter, solver.velocity_parameter, solver.reaction_parameter}
    return (solver.fused and solver.stages.on_cpu and solver.grid.ndim <= 2
            and set(solver.parameter_names) <= roles)


class ExplicitStepAdjoint:
    """The reverse pass of steps of ``solver`` (:func:`supported`) with the parameters
    ``params`` (:meth:`~physml.solvers.GridSolver.batch_parameter_arrays` shapes) on
    ``batch`` samples, of the time steps ``steps`` [s] (None: ``solver.dt`` for every
    sample; else one per sample, ``(batch,)``): :meth:`vjp` per step, from the last to the
    first, then :meth:`parameter_grads`.

    Built once per reverse sweep: the coefficients per cell, the stage inputs' and
    cotangents' arrays and the recorded launches are the same for every step, so a step's
    forward stages and adjoint kernels replay (each thread its own samples)."""

    def __init__(self, solver, params: dict[str, wp.array], batch: int,
                 steps: np.ndarray | None = None) -> None:
        n = solver.grid.size
        self.solver, self.params, self.batch, self.n = solver, params, batch, n
        stages = solver.stages
        self.coefficients = solver._operator_coefficients(params)
        nu_c, velocity_c, rho_c = self.coefficients
        nu, rho = _cells(nu_c, batch, n, stages), _cells(rho_c, batch, n, stages)
        speeds = _speeds(solver, velocity_c, batch)
        self.dt = time_step_coefficient(solver.time_step_array(steps))
        dt = np.full(1, solver.dt) if steps is None else np.asarray(steps, dtype=np.float64)
        self.b_factors = [_step_factors(solver, dt, weight, batch)
                          for weight in solver.tableau.b]
        self.a_factors = [[_step_factors(solver, dt, weight, batch) for weight in row[:i]]
                          for i, row in enumerate(solver.tableau.a)]
        size = batch * n
        count = len(solver.tableau.b)
        self.inputs = [wp.empty(size, dtype=solver.dtype, device=solver.device)
                       for _ in range(count)]
        self.ks = [wp.empty(size, dtype=solver.dtype, device=solver.device)
                   for _ in range(count - 1)]
        # the stages' cotangents (read by the adjoint kernels in place), the state's and a
        # scaled product: every step reuses them, so no step allocates
        k_bars = [wp.empty(size, dtype=solver.dtype, device=solver.device)
                  for _ in range(count)]
        self.k_bars = [k.numpy() for k in k_bars]
        self.adjoint = StageVJP(stages, self.inputs, k_bars, nu, rho, speeds, batch)
        self.u_bar = np.empty(size, dtype=solver.np_dtype)
        self._scaled = np.empty(size, dtype=solver.np_dtype)
        self.nu_bar = np.zeros((batch, n), dtype=solver.np_dtype)
        self.rho_bar = np.zeros((batch, n), dtype=solver.np_dtype)
        self.speed_bar = np.zeros((batch, 2), dtype=solver.np_dtype)

    def vjp(self, u: np.ndarray, adjoint: np.ndarray) -> np.ndarray:
        """$(\\partial\\Phi/\\partial u)^T \\bar u'$ of the step from the flat states ``u``
        for the cotangent ``adjoint`` of its result (both ``(B N,)``), in an array of this
        object's (overwritten by the next call); the parameters' cotangents are added to
        those :meth:`parameter_grads` returns."""
        solver, tableau, rows = self.solver, self.solver.tableau, (self.batch, self.n)
        self._stage_inputs(u)
        u_bar, k_bar, scaled = self.u_bar, self.k_bars, self._scaled
        np.copyto(u_bar, adjoint)
        for k, factor in zip(k_bar, self.b_factors):
            np.multiply(u_bar.reshape(rows), factor, out=k.reshape(rows))
        terms = [(self.nu_bar, 0, solver.diffusion_parameter),
                 (self.rho_bar, 1, solver.reaction_parameter)]
        for i in reversed(range(len(self.inputs))):
            v_bar, *parts = self.adjoint(i)
            u_bar += v_bar
            for j, weight in enumerate(tableau.a[i][:i]):
                if weight != 0.0:
                    np.multiply(v_bar.reshape(rows), self.a_factors[i][j],
                                out=scaled.reshape(rows))
                    k_bar[j] += scaled
            for total, part, name in terms:
                if name is not None:
                    total += parts[part].reshape(self.batch, self.n)
            self.speed_bar += parts[2].reshape(self.batch, 2)
        return u_bar

    def parameter_grads(self) -> dict[str, np.ndarray]:
        """The parameters' cotangents summed over the steps so far, each in its shape."""
        solver, batch, n = self.solver, self.batch, self.n
        nu_c, velocity_c, rho_c = self.coefficients
        grads = {}
        for name, array in self.params.items():
            if name == solver.diffusion_parameter:
                grads[name] = _summed(self.nu_bar, nu_c, array, batch, n)
            elif name == solver.reaction_parameter:
                grads[name] = _summed(self.rho_bar, rho_c, array, batch, n)
            else:
                grads[name] = _velocity_grad(solver, self.speed_bar, velocity_c, array, batch)
        return grads

    def _stage_inputs(self, u: np.ndarray) -> None:
        r"""$v_0 = u, v_1, \ldots$: the input of every stage of the step from ``u``, into
        :attr:`inputs`."""
        solver, stages = self.solver, self.solver.stages
        self.inputs[0].numpy()[:] = u
        operator = self.coefficients
        plan = stages.tableau_plan(solver.tableau)
        with stages.step_lock:  # the stages' recorded launches are shared with any rollout
            for i, (c, _, _, _) in enumerate(plan[:-1]):
                stages.launch(self.inputs[i], self.batch, *operator, self.ks[i],
                              u=self.inputs[0], ks=tuple(self.ks[:i]), c=c, dt=self.dt,
                              w_out=self.inputs[i + 1])


def _step_factors(solver, dt: np.ndarray, weight: float, batch: int) -> np.ndarray:
    r"""``(batch, 1)``: $\Delta t_b\, w$ per sample for a tableau weight $w$, the product in
    float64 and then rounded to the solver's NumPy dtype (as a scalar $\Delta t\, w$ is where
    it scales a float32 array)."""
    return np.broadcast_to(dt * weight, batch).astype(solver.np_dtype)[:, None]


def _cell_index(coefficient: Coefficient, batch: int, n: int) -> np.ndarray:
    """``(batch, n)``: the entry of the coefficient's values each cell reads,
    ``b s_b + i s_n``."""
    return (np.arange(batch)[:, None] * coefficient.strides[0]
            + np.arange(n)[None, :] * coefficient.strides[1])


def _velocity_index(velocity: Coefficient, batch: int, ndim: int) -> np.ndarray:
    """``(batch, ndim)``: the entry of the velocity's values each sample reads per axis."""
    return np.arange(batch)[:, None] * velocity.strides[0] + np.arange(ndim)[None, :]


def _cells(coefficient: Coefficient, batch: int, n: int, stages) -> wp.array:
    """A diffusion or reaction coefficient as one value per cell, flat ``(B N,)``."""
    values = coefficient.values.numpy()[_cell_index(coefficient, batch, n)]
    return wp.array(values.ravel(), dtype=stages.dtype, device=stages.device)


def _speeds(solver, velocity: Coefficient, batch: int) -> wp.array:
    """The linear flux's speed per sample along kernel axes 1 and 2, flat ``(B 2,)`` (zero
    along an axis the grid lacks)."""
    speeds = np.zeros((batch, 2))
    if solver.velocity_parameter is not None:
        ndim = solver.grid.ndim
        speeds[:, 2 - ndim:] = velocity.values.numpy()[_velocity_index(velocity, batch, ndim)]
    return wp.array(speeds.ravel(), dtype=solver.dtype, device=solver.device)


def _summed(per_cell: np.ndarray, coefficient: Coefficient, array: wp.array, batch: int,
            n: int) -> np.ndarray:
    """Per-cell cotangents summed onto the entries of ``array`` the cells read."""
    index = _cell_index(coefficient, batch, n)
    total = np.bincount(index.ravel(), weights=per_cell.ravel(), minlength=array.size)
    return total.astype(per_cell.dtype).reshape(array.shape)


def _velocity_grad(solver, speed_bar: np.ndarray, velocity: Coefficient, array: wp.array,
                   batch: int) -> np.ndarray:
    """The speeds' cotangents per sample and kernel axis summed onto the velocity's entries."""
    ndim = solver.grid.ndim
    index = _velocity_index(velocity, batch, ndim)
    total = np.bincount(index.ravel(), weights=speed_bar[:, 2 - ndim:].ravel(),
                        minlength=array.size)
    return total.astype(speed_bar.dtype).reshape(array.shape)
