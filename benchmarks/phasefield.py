r"""Time steps per second of the thermomigration Cahn–Hilliard solver against a NumPy twin.

Both sides advance the same scheme on the same problem: the double-well alloy of
``cases/thermomigration_single_precipitate.yaml`` (1 um cells, $Q^* = -2.8RT$), a precipitate of
radius 1/8 of the box at its centre, float64, periodic on every axis with a periodic temperature
$T = 1000 + 50\sin(2\pi x/L)$ K, and the stabilised semi-implicit step

$$(I + \Delta t(s_2\Lambda + s_4\Lambda^2))\,\delta = \Delta t\,R(c^n),$$

with the face-flux right-hand side $R$ and the FFT solve (``scipy.fft``, the same library on both
sides). physml runs :meth:`ThermomigrationSolver.rollout` (Warp kernels, device "cpu") twice: as
a user gets it, with its kernels and FFTs split between the cores where the grid is large
enough (``threads`` default), and on one thread. The NumPy twin below writes $R$ with
``np.roll`` (NumPy's element-wise operations run on one core) and gives its FFTs as many
threads as physml's. Each grid (256^2, 512^2, 64^3) is first checked for agreement (1e-10 after
5 steps), then the three are timed alternately five times, each time over about a second of
physml steps. The rate reported is the fastest of the five, the run least disturbed by other
work on the machine (as ``timeit`` advises: on a shared VM single runs vary by up to a third);
the medians are reported beside it.

NumPy allocates fresh temporaries for every array expression; above glibc's mmap threshold each
one is page-faulted in again, which halves the twin's speed and makes it depend on what ran
before. The benchmark therefore raises the threshold (``mallopt``, Linux/glibc) so both sides
reuse heap memory: the twin's best case.

Model time per wall second is steps/s times the mean step the adaptive controller takes on that
problem (measured once with :meth:`ThermomigrationSolver.run` over 200 s of model time, at the
default tolerance, which the JSON records).
Timings are reported, never asserted. Run from the repository root::

    python benchmarks/phasefield.py [--out results.json] [--quick] [--device cuda]

With ``--device cuda`` physml runs on the GPU (FFT through torch) and is compared with the same
NumPy twin on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.fft
import warp as wp
from _common import check_device, keep_heap_memory, provenance

import physml
from physml.devices import Stopwatch
from physml.solvers import DoubleWell, Grid, ThermomigrationSolver, periodic
from physml.solvers.free_energy import GAS_CONSTANT
from physml.solvers.precipitates import precipitate_field
from physml.solvers.runtime import warp_device
from physml.solvers.thermomigration import DEFAULT_TOLERANCE

GRID_SHAPES = ((256, 256), (512, 512), (64, 64, 64))
CELL, T_MEAN, DT = 1e-6, 1000.0, 1.0  # m, K, s
AGREEMENT_STEPS, AGREEMENT_TOL = 5, 1e-10
REPEATS = 5
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "phasefield.json"

Rollout = Callable[[int], np.ndarray]


def build_problem(shape: tuple[int, ...], device: str,
                  threads: int | None = None) -> tuple[ThermomigrationSolver, np.ndarray]:
    grid = Grid(shape, (0.0,) * len(shape), tuple(CELL * n for n in shape))
    model = DoubleWell(barrier=0.25 * GAS_CONSTANT * T_MEAN, c_alpha=0.1, c_beta=0.9,
                       slope_alpha=1e-4, T0=T_MEAN, diffusivity=1e-12)
    x = grid.mesh()[0]
    T = T_MEAN + 50.0 * np.sin(2 * np.pi * x / grid.upper[0])
    kappa = model.gradient_coefficient(1.5 * CELL)
    solver = ThermomigrationSolver(grid, model, T, kappa=kappa, heat_of_transport=-2.8
                                   * GAS_CONSTANT * T_MEAN, bc=periodic(grid.ndim),
                                   T_ref=T_MEAN, device=device, threads=threads)
    centre = tuple(u / 2 for u in grid.upper)
    c0 = precipitate_field(grid, 0.1, 0.9, [centre], [grid.upper[0] / 8], 1.5 * CELL)
    return solver, c0


# ------------------------------------------------------------------------------ NumPy twin


class NumpyTwin:
    """The same step in NumPy: face fluxes with ``np.roll`` (periodic), the temperature's face
    coefficients computed once, ``scipy.fft`` solve with as many workers as ``solver``'s."""

    def __init__(self, solver: ThermomigrationSolver) -> None:
        units = solver.units
        p = solver.free_energy.scaled_parameters(units.temperature)
        self.T = solver.temperature / units.temperature
        self.qd, self.A, self.a0, self.b0, self.sa, self.sb, self.fpp = p
        self.kappa = solver.kappa / (units.energy * units.length**2)
        self.qstar = solver.heat_of_transport / units.energy
        self.inv_dx = [units.length / h for h in solver.grid.dx]
        self.s2 = solver._s2
        self.shape = solver.grid.shape
        axes = [2 * np.pi * np.fft.fftfreq(n) for n in self.shape]
        axes[-1] = axes[-1][: self.shape[-1] // 2 + 1]
        self.lam = sum(np.meshgrid(*[4 * np.sin(k / 2) ** 2 * g**2 for k, g in
                                     zip(axes, self.inv_dx)], indexing="ij", sparse=True))
        self.time_unit = units.time
        self.workers = solver._spectral.workers
        self.faces = []  # per axis: T_f, mobility / dx, thermal jump (fixed temperature)
        for d, h in enumerate(self.inv_dx):
            T_hi = np.roll(self.T, -1, d)
            T_face = 0.5 * (self.T + T_hi)
            mobility = np.exp(self.qd * (1 - 1 / T_face)) / self.fpp * h
            self.faces.append((T_face, mobility, self.qstar * T_face * (1 / self.T - 1 / T_hi)))

    def potential(self, c, T):
        a = self.a0 + self.sa * (T - 1)
        b = self.b0 + self.sb * (T - 1)
        return 2 * self.A * (c - a) * (c - b) * (2 * c - a - b)

    def rhs(self, c):
        lap = sum((np.roll(c, 1, d) + np.roll(c, -1, d) - 2 * c) * h**2
                  for d, h in enumerate(self.inv_dx))
        total = np.zeros_like(c)
        for d, h in enumerate(self.inv_dx):
            T_face, mobility, thermal = self.faces[d]
            c_hi, lap_hi = np.roll(c, -1, d), np.roll(lap, -1, d)
            chemical = self.potential(c_hi, T_face) - self.potential(c, T_face)
            flux = -mobility * (chemical - self.kappa * (lap_hi - lap) + thermal)
            total -= (flux - np.roll(flux, 1, d)) * h
        return total

    def rollout(self, c0: np.ndarray, n_steps: int, s4: float) -> np.ndarray:
        h = DT / self.time_unit
        c = c0.copy()
        denominator = 1.0 + h * self.lam * (self.s2 + s4 * self.lam)
        for _ in range(n_steps):
            spectrum = scipy.fft.rfftn(h * self.rhs(c), workers=self.workers)
            c = c + scipy.fft.irfftn(spectrum / denominator, s=self.shape, workers=self.workers)
        return c


# ------------------------------------------------------------------------------ timing


def seconds_for(run: Rollout, n_steps: int, device: str) -> float:
    """Wall-clock seconds of one rollout of ``n_steps`` steps, ``device`` synchronised."""
    with Stopwatch(device) as watch:
        run(n_steps)
    return watch.seconds


def mean_adaptive_step(solver: ThermomigrationSolver, c0: np.ndarray) -> float:
    """Mean step [s] the adaptive controller takes over 200 s of model time."""
    run = solver.run(c0, 200.0)
    return float(np.mean(run.dt[len(run.dt) // 2:]))


def benchmark_grid(shape: tuple[int, ...], n_steps: int, device: str) -> dict:
    label = "x".join(map(str, shape))
    solver, c0 = build_problem(shape, device)
    single, _ = build_problem(shape, device, threads=1)
    twin = NumpyTwin(solver)
    s4 = solver._s4(c0)
    rollouts = {
        "physml": lambda n: solver.rollout(c0, n, max(n, 1), dt=DT)[-1],
        "physml_1_thread": lambda n: single.rollout(c0, n, max(n, 1), dt=DT)[-1],
        "numpy": lambda n: twin.rollout(c0, n, s4),
    }
    reference = rollouts["numpy"](AGREEMENT_STEPS)
    difference = max(float(np.max(np.abs(rollouts[name](AGREEMENT_STEPS) - reference)))
                     for name in ("physml", "physml_1_thread"))
    if not difference < AGREEMENT_TOL:
        raise SystemExit(f"grid {label}: physml and NumPy differ by {difference:.3e}")
    rates: dict[str, list[float]] = {name: [] for name in rollouts}
    for _ in range(REPEATS):
        for name, run in rollouts.items():
            rates[name].append(n_steps / seconds_for(run, n_steps, device))
    best = {name: max(values) for name, values in rates.items()}
    median = {name: statistics.median(values) for name, values in rates.items()}
    step = mean_adaptive_step(solver, c0)
    return {
        "grid": label,
        "physml_threads": len(solver._launch.chunks),
        "max_abs_difference": difference,
        "steps": n_steps,
        "steps_per_s_runs": rates,
        "steps_per_s": best,
        "steps_per_s_median": median,
        "mean_adaptive_dt_s": step,
        "model_s_per_wall_s": {name: rate * step for name, rate in best.items()},
        "ratio_physml_over_numpy": best["physml"] / best["numpy"],
        "ratio_physml_1_thread_over_numpy": best["physml_1_thread"] / best["numpy"],
        "ratio_of_medians_physml_over_numpy": median["physml"] / median["numpy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="fewer steps per measurement")
    parser.add_argument("--device", default="cpu", help="physml's device (cpu, cuda, cuda:N)")
    args = parser.parse_args()
    check_device(parser, args.device, warp_device)  # what the solver itself accepts
    wp.config.log_level = wp.LOG_WARNING
    heap_kept = keep_heap_memory()
    results = []
    print(f"{'grid':>10} {'threads':>7} {'physml steps/s':>15} {'1 thread':>9} "
          f"{'NumPy steps/s':>14} {'physml/NumPy':>13} {'1 thread/NumPy':>15} "
          f"{'model s/wall s (physml)':>24} {'median ratio':>13}")
    for shape in GRID_SHAPES:
        n_steps = max(5, (40 if args.quick else 600) * 256**2 // int(np.prod(shape)))
        row = benchmark_grid(shape, n_steps, args.device)
        results.append(row)
        rate = row["steps_per_s"]
        print(f"{row['grid']:>10} {row['physml_threads']:>7} {rate['physml']:>15.1f} "
              f"{rate['physml_1_thread']:>9.1f} {rate['numpy']:>14.1f} "
              f"{row['ratio_physml_over_numpy']:>13.2f} "
              f"{row['ratio_physml_1_thread_over_numpy']:>15.2f} "
              f"{row['model_s_per_wall_s']['physml']:>24.1f} "
              f"{row['ratio_of_medians_physml_over_numpy']:>13.2f}", flush=True)
    environment = {
        "machine": {"processor": platform.processor(), "architecture": platform.machine(),
                    "cpu_count": os.cpu_count()},
        "versions": {"physml": physml.__version__, "warp": wp.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__},
        "settings": {"device": args.device, "dt_s": DT, "dtype": "float64",
                     "adaptive_tolerance": DEFAULT_TOLERANCE, "quick": args.quick,
                     "glibc_heap_thresholds_raised": heap_kept},
        "statistic": f"fastest of {REPEATS} alternating runs (medians beside)",
        "provenance": provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**environment, "grids": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
