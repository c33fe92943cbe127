r"""Time steps per second of physml's Burgers solvers against a vectorised NumPy twin.

Both sides advance the viscous Burgers equation $u_t + \sum_d \partial_d(u^2/2) = \nu\,\Delta u$
with the same scheme: float64, a cell-centred periodic grid on $[0, 2\pi)^d$, MUSCL reconstruction
with the van Leer limiter, the Rusanov flux, central diffusion and SSP-RK3 as a Butcher tableau.
physml runs :class:`~physml.solvers.BurgersSolver1D` / ``BurgersSolver2D`` (Warp kernels, device
"cpu") through ``solver.rollout``; the NumPy twin below uses ``np.roll`` for the neighbours.

For each grid (1D: 1024, 8192 cells; 2D: 128^2, 256^2) the script checks that both agree to
1e-10 after 20 steps, warms both up, sizes each measurement to about 2 s (0.2 s with ``--quick``),
then times the two alternately three times and keeps the median. It prints a table and writes
JSON with the machine, the versions and, per grid, steps/s and the ratio physml/NumPy (> 1:
physml is faster). Timings are reported, never asserted.

Run from the repository root::

    python benchmarks/solvers.py [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import warp as wp

import physml
from physml.devices import Stopwatch
from physml.solvers import BurgersSolver1D, BurgersSolver2D, Grid

GRID_SHAPES = ((1024,), (8192,), (128, 128), (256, 256))
NU = 0.01
DEVICE = "cpu"  # physml's device (the NumPy peer runs on the CPU)
CFL_FRACTION = 0.5  # dt = CFL_FRACTION * solver.stable_dt(u0)
SSP_RK3_A = ((), (1.0,), (0.25, 0.25))
SSP_RK3_B = (1 / 6, 1 / 6, 2 / 3)
AGREEMENT_STEPS, AGREEMENT_TOL = 20, 1e-10
REPEATS = 3
SECONDS_PER_MEASUREMENT = 2.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "solvers.json"

Rollout = Callable[[int], np.ndarray]  # n_steps -> final state


# ------------------------------------------------------------------------------- NumPy twin


def van_leer_slope(back: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """2ab/(a+b) where ab > 0, else 0 (a: backward difference, b: forward difference)."""
    product = back * forward
    return np.divide(2.0 * product, back + forward, out=np.zeros_like(product), where=product > 0.0)


def numpy_burgers_rhs(u: np.ndarray, dx: tuple[float, ...], nu: float) -> np.ndarray:
    """-sum_d (F_{i+1/2} - F_{i-1/2})/dx_d + nu sum_d (u_{i-1} - 2u_i + u_{i+1})/dx_d^2."""
    rhs = np.zeros_like(u)
    for axis, h in enumerate(dx):
        u_prev, u_next = np.roll(u, 1, axis), np.roll(u, -1, axis)
        slope = van_leer_slope(u - u_prev, u_next - u)
        u_left = u + 0.5 * slope  # left state at face i+1/2
        u_right = np.roll(u - 0.5 * slope, -1, axis)  # u_{i+1} - slope_{i+1}/2
        speed = np.maximum(np.abs(u_left), np.abs(u_right))
        flux = 0.5 * (0.5 * u_left**2 + 0.5 * u_right**2) - 0.5 * speed * (u_right - u_left)
        rhs -= (flux - np.roll(flux, 1, axis)) / h
        rhs += nu * ((u_prev - u) + (u_next - u)) / h**2
    return rhs


def numpy_ssp_rk3_step(u: np.ndarray, dt: float, rhs: Callable[..., np.ndarray]) -> np.ndarray:
    """One explicit RK step with the SSP-RK3 tableau (same order of operations as physml)."""
    stages: list[np.ndarray] = []
    for row in SSP_RK3_A:
        stage = u
        for a_ij, k_j in zip(row, stages):
            stage = stage + (dt * a_ij) * k_j
        stages.append(rhs(stage))
    out = u
    for b_i, k_i in zip(SSP_RK3_B, stages):
        out = out + (dt * b_i) * k_i
    return out


def numpy_rollout(u0: np.ndarray, n_steps: int, dt: float, dx: tuple[float, ...]) -> np.ndarray:
    """The state after ``n_steps`` steps of the NumPy twin."""
    u = u0.copy()
    for _ in range(n_steps):
        u = numpy_ssp_rk3_step(u, dt, lambda v: numpy_burgers_rhs(v, dx, NU))
    return u


# ------------------------------------------------------------------------------- the cases


def initial_state(grid: Grid) -> np.ndarray:
    """u0 = 0.5 + sin(x) in 1D, 0.5 + sin(x) cos(y) in 2D, at the cell centres."""
    mesh = grid.mesh()
    return 0.5 + np.sin(mesh[0]) * (np.cos(mesh[1]) if grid.ndim == 2 else 1.0)


def build_rollouts(shape: tuple[int, ...]) -> tuple[dict[str, Rollout], float]:
    """The physml and NumPy rollouts for one grid (same u0 and dt), and that dt."""
    grid = Grid(shape, (0.0,) * len(shape), (2 * math.pi,) * len(shape))
    solver_class = BurgersSolver1D if grid.ndim == 1 else BurgersSolver2D
    solver = solver_class(grid, nu=NU, dt=None, scheme="ssp_rk3", device=DEVICE, dtype="float64")
    u0 = initial_state(grid)
    dt = CFL_FRACTION * solver.stable_dt(u0)
    solver = solver.with_dt(dt)
    rollouts = {
        "physml": lambda n: solver.rollout(u0, n, save_every=max(n, 1))[-1],
        "numpy": lambda n: numpy_rollout(u0, n, dt, grid.dx),
    }
    return rollouts, dt


def check_agreement(rollouts: dict[str, Rollout], label: str) -> float:
    """Max |physml - NumPy| after AGREEMENT_STEPS steps; aborts above AGREEMENT_TOL."""
    difference = float(
        np.max(np.abs(rollouts["physml"](AGREEMENT_STEPS) - rollouts["numpy"](AGREEMENT_STEPS)))
    )
    if not difference < AGREEMENT_TOL:
        raise SystemExit(
            f"grid {label}: physml and NumPy differ by {difference:.3e} after {AGREEMENT_STEPS} "
            f"steps (tolerance {AGREEMENT_TOL:.0e}); the benchmark compares different schemes"
        )
    return difference


def seconds_for(run: Rollout, n_steps: int) -> float:
    """Wall-clock seconds of one rollout of ``n_steps`` steps, physml's device synchronised."""
    with Stopwatch(DEVICE) as watch:
        run(n_steps)
    return watch.seconds


def steps_for(run: Rollout, seconds: float) -> int:
    """Number of steps that ``run`` takes about ``seconds`` to do (doubling probe)."""
    n_steps, elapsed = 2, seconds_for(run, 2)
    while elapsed < min(0.1, seconds / 4):
        n_steps *= 2
        elapsed = seconds_for(run, n_steps)
    return max(1, round(n_steps * seconds / elapsed))


def benchmark_grid(shape: tuple[int, ...], seconds: float) -> dict:
    """Agreement, step counts and median steps/s of both implementations on one grid."""
    label = "x".join(map(str, shape))
    rollouts, dt = build_rollouts(shape)
    difference = check_agreement(rollouts, label)  # also compiles and warms up both
    n_steps = {name: steps_for(run, seconds) for name, run in rollouts.items()}
    rates: dict[str, list[float]] = {name: [] for name in rollouts}
    for _ in range(REPEATS):
        for name, run in rollouts.items():  # alternate physml, NumPy, physml, ...
            rates[name].append(n_steps[name] / seconds_for(run, n_steps[name]))
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "grid": label,
        "dt": dt,
        "max_abs_difference": difference,
        "steps": n_steps,
        "steps_per_s_runs": rates,
        "steps_per_s": median,
        "ratio_physml_over_numpy": median["physml"] / median["numpy"],
    }


# ------------------------------------------------------------------------------- reporting


def environment(quick: bool) -> dict:
    """Machine, versions and settings, stored beside the numbers."""
    settings = f"Burgers nu={NU}, periodic, van Leer + Rusanov, ssp_rk3, float64, cpu"
    return {
        "machine": {
            "processor": platform.processor(),
            "architecture": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "versions": {"physml": physml.__version__, "warp": wp.__version__, "numpy": np.__version__},
        "settings": {"case": settings, "dt": f"{CFL_FRACTION} * stable_dt(u0)", "quick": quick},
        "statistic": f"median of {REPEATS} alternating runs",
    }


def print_table(results: list[dict]) -> None:
    print(f"{'grid':>10} {'physml steps/s':>15} {'NumPy steps/s':>14} {'physml/NumPy':>13}")
    for row in results:
        physml_rate, numpy_rate = row["steps_per_s"]["physml"], row["steps_per_s"]["numpy"]
        ratio = row["ratio_physml_over_numpy"]
        print(f"{row['grid']:>10} {physml_rate:>15.1f} {numpy_rate:>14.1f} {ratio:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="10x shorter measurements")
    args = parser.parse_args()
    wp.config.log_level = wp.LOG_WARNING  # no Warp greeting or module-load lines
    seconds = SECONDS_PER_MEASUREMENT / (10 if args.quick else 1)
    results = [benchmark_grid(shape, seconds) for shape in GRID_SHAPES]
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**environment(args.quick), "grids": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
