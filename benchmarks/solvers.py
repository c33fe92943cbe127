r"""Time steps per second of physml's Burgers and heat solvers against vectorised NumPy twins.

Burgers: $u_t + \sum_d \partial_d(u^2/2) = \nu\,\Delta u$, MUSCL with the van Leer limiter,
Rusanov flux, central diffusion, SSP-RK3. Heat: $u_t = \nu\,\Delta u$, central differences,
classical RK4. Both float64 on a cell-centred periodic grid on $[0, 2\pi)^d$, the RK schemes as
Butcher tableaus on both sides. physml runs :class:`~physml.solvers.BurgersSolver1D` /
``BurgersSolver2D`` / ``HeatSolver1D`` / ``HeatSolver2D`` (Warp on ``--device``: the CPU by
default, fused stage kernels with its automatic host-thread count; on CUDA one thread per cell)
through ``solver.rollout``; the NumPy twins use ``np.roll`` for the neighbours (NumPy's
element-wise operations run on one thread) and stay on the CPU. Every timing synchronises
physml's device (:class:`physml.devices.Stopwatch`); on CUDA a rollout's time includes copying
u0 to the device and its two saved states back (it takes and returns NumPy arrays), which
``--seconds`` of steps make a small part of.

For each grid (1D: 2^10, 2^16, 2^20 cells; 2D: 256^2, 1024^2, 2048^2) the script checks that
both sides run the same scheme (their increments over three steps from the benchmark's state
plus 1e-3 of noise in every cell agree to 1e-9 relative: the noise's modes near the stability
limit tell time schemes and stencils apart), sizes each measurement to about ``--seconds``
(at least one step), then times the two alternately ``REPEATS`` times: median steps/s, the
spread (min, max) and the ratio physml/NumPy (> 1: physml is faster). On CUDA the agreement
compares the device's results, copied back, with the NumPy twin's.

Achieved bandwidth (``physml_bandwidth_gb_s``): the compulsory memory traffic of physml's stage
kernels (each stage reads its input, the state and the earlier stages it combines, and writes
its output and its k: on the CPU only where a later stage reads it, on CUDA always; 8 bytes per
cell each) over the measured time. On the CPU it is set against a STREAM-like copy measured in
the same run on as many threads as physml's stages took (``np.copyto`` of 2^24 float64 in
equal parts, counted as read + write; ``stream_copy_gb_s``, ``bandwidth_fraction_of_copy``).
Grids whose arrays fit the caches (2^10 cells) are above the copy: their traffic is the
caches'. On CUDA it is set against a device-to-device copy measured in the same run
(``wp.copy`` of 2^26 float64, 512 MiB, ten copies a timing, read + write, the median of five
timings; ``device_copy_gb_s``, ``bandwidth_fraction_of_device_copy``); the small grids there
are bound by kernel launches, not memory. ``--peak-gb-s`` gives the device's nominal bandwidth,
which each grid is also set against (``nominal_peak_gb_s``,
``bandwidth_fraction_of_nominal_peak``).

PhiFlow 3.4 (``pip install phiflow``; skipped if absent), the differentiable-solver peer a user
would pick instead, runs its own Burgers on the same grid, u0 and dt: ``diffuse.explicit`` then
``advect.semi_lagrangian`` of u by the velocity (u, ..., u), on its default NumPy backend (its
PyTorch backend's ``grid_sample`` fails on these 1D grids). That scheme is first order, not
physml's, so it is compared in steps per second only (its distance from physml after a few steps
is stored, not checked).

Batched throughput: 256 samples of 1024-cell Burgers advanced together in one batched rollout
against 256 one-by-one rollouts on physml's device (on the CPU also the batch on one host
thread), samples/s of each, alternately (in reversed order every other repeat). Each sample of
the batch must equal its own rollout bit for bit (``bitwise_equal``); on CUDA the JSON says
where that was checked (``bitwise_checked_on``): on the device, or, where the device's results
differ, on the CPU, with the device's largest difference (``device_max_abs_difference``).

NumPy's allocator: the twins allocate fresh temporaries for every array expression, and from
2048^2 cells (32 MiB a float64 array) glibc maps each one anew (its mmap threshold), page-faults
it and unmaps it, which made the twin 1.41x slower per step there; from 1024^2 cells down the
heap reuses them. ``--keep-heap`` raises glibc's mmap and trim thresholds to 1 GiB (``mallopt``
before anything runs; the same as ``MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=1073741824`` in the script's environment) so that the temporaries reuse
heap memory, the twin's best case; physml's solvers allocate their arrays once per solver, so
the setting changes the NumPy side only. The JSON records it (``glibc_heap_thresholds_raised``).

``--only grids`` or ``--only batched`` runs one part (the JSON then holds that part alone).
On CUDA the JSON's machine record names the device (``device``, ``device_name``).

Run from the repository root::

    python benchmarks/solvers.py [--out results.json] [--seconds 1.0] [--keep-heap]
                                 [--device cuda] [--peak-gb-s 3350] [--only {grids,batched}]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import warp as wp
from _common import at_least, check_device, keep_heap_memory, load_average, provenance, summary

import physml
from physml.devices import Stopwatch
from physml.solvers import BurgersSolver1D, BurgersSolver2D, Grid, HeatSolver1D, HeatSolver2D
from physml.solvers.host_threads import available_cores
from physml.solvers.runtime import warp_device
from physml.solvers.timestepping import SCHEMES

GRID_SHAPES = ((2**10,), (2**16,), (2**20,), (256, 256), (1024, 1024), (2048, 2048))
PDES = ("burgers", "heat")
NU = 0.01
CFL_FRACTION = 0.5  # dt = CFL_FRACTION * solver.stable_dt(u0)
AGREEMENT_STEPS, AGREEMENT_TOL, AGREEMENT_NOISE = 3, 1e-9, 1e-3
REPEATS = 3
BATCH, BATCH_CELLS, BATCH_STEPS = 256, 1024, 20
STREAM_SIZE = 2**24
DEVICE_COPY_SIZE, DEVICE_COPIES = 2**26, 10  # float64 (512 MiB), copies per timing
PARTS = ("grids", "batched")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "solvers.json"

Rollout = Callable[[int], np.ndarray]  # n_steps -> final state


# ------------------------------------------------------------------------------- NumPy twins


def van_leer_slope(back: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """2ab/(a+b) where ab > 0, else 0 (a: backward difference, b: forward difference)."""
    product = back * forward
    return np.divide(2.0 * product, back + forward, out=np.zeros_like(product), where=product > 0.0)


def numpy_laplacian(u: np.ndarray, dx: tuple[float, ...]) -> np.ndarray:
    """sum_d (u_{i-1} - 2u_i + u_{i+1}) / dx_d^2 (periodic)."""
    lap = np.zeros_like(u)
    for axis, h in enumerate(dx):
        lap += ((np.roll(u, 1, axis) - u) + (np.roll(u, -1, axis) - u)) / h**2
    return lap


def numpy_burgers_rhs(u: np.ndarray, dx: tuple[float, ...]) -> np.ndarray:
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
        rhs += NU * ((u_prev - u) + (u_next - u)) / h**2
    return rhs


def numpy_rk_step(u: np.ndarray, dt: float, rhs: Callable[[np.ndarray], np.ndarray],
                  scheme: str) -> np.ndarray:
    """One explicit RK step of a Butcher tableau (same order of operations as physml)."""
    tab = SCHEMES[scheme]
    stages: list[np.ndarray] = []
    for row in tab.a:
        stage = u
        for a_ij, k_j in zip(row, stages):
            if a_ij != 0.0:
                stage = stage + (dt * a_ij) * k_j
        stages.append(rhs(stage))
    out = u
    for b_i, k_i in zip(tab.b, stages):
        out = out + (dt * b_i) * k_i
    return out


def numpy_rollout(pde: str, u0: np.ndarray, n_steps: int, dt: float,
                  dx: tuple[float, ...]) -> np.ndarray:
    """The state after ``n_steps`` steps of the NumPy twin of ``pde``."""
    if pde == "burgers":
        rhs, scheme = (lambda v: numpy_burgers_rhs(v, dx)), "ssp_rk3"
    else:
        rhs, scheme = (lambda v: NU * numpy_laplacian(v, dx)), "rk4"
    u = u0.copy()
    for _ in range(n_steps):
        u = numpy_rk_step(u, dt, rhs, scheme)
    return u


# ------------------------------------------------------------------------------- the cases


def initial_state(grid: Grid) -> np.ndarray:
    """u0 = 0.5 + sin(x) in 1D, 0.5 + sin(x) cos(y) in 2D, at the cell centres."""
    mesh = grid.mesh()
    return 0.5 + np.sin(mesh[0]) * (np.cos(mesh[1]) if grid.ndim == 2 else 1.0)


def build_solver(pde: str, grid: Grid, device: str, threads: int | None = None):
    """physml's solver of ``pde`` on ``grid`` and ``device`` (dt unset)."""
    if pde == "burgers":
        cls = BurgersSolver1D if grid.ndim == 1 else BurgersSolver2D
        return cls(grid, nu=NU, dt=None, scheme="ssp_rk3", device=device, threads=threads)
    cls = HeatSolver1D if grid.ndim == 1 else HeatSolver2D
    return cls(grid, nu=NU, dt=None, scheme="rk4", device=device, threads=threads)


def build_rollouts(pde: str, shape: tuple[int, ...], device: str, noise: float = 0.0
                   ) -> tuple[dict[str, Rollout], float, object]:
    """The physml (on ``device``, its final state copied back) and NumPy rollouts for one grid
    (same u0 and dt), that dt and the solver; with ``noise``, u0 plus that amplitude of uniform
    noise (seed 0) in every cell and no PhiFlow side."""
    grid = Grid(shape, (0.0,) * len(shape), (2 * math.pi,) * len(shape))
    solver = build_solver(pde, grid, device)
    u0 = initial_state(grid) + noise * np.random.default_rng(0).uniform(-1, 1, shape)
    dt = CFL_FRACTION * solver.stable_dt(u0)
    solver = solver.with_dt(dt)
    rollouts = {
        "physml": lambda n: solver.rollout(u0, n, save_every=max(n, 1))[-1],
        "numpy": lambda n: numpy_rollout(pde, u0, n, dt, grid.dx),
    }
    phiflow = phiflow_rollout(u0, dt) if pde == "burgers" and not noise else None
    if phiflow is not None:
        rollouts["phiflow"] = phiflow
    return rollouts, dt, solver


def phiflow_rollout(u0: np.ndarray, dt: float) -> Rollout | None:
    r"""PhiFlow's Burgers from ``u0`` on $[0, 2\pi)^d$ periodic (see the module docstring), or
    None without PhiFlow."""
    if importlib.util.find_spec("phi") is None:
        return None
    from phi.flow import Box, CenteredGrid, advect, diffuse, extrapolation, vec
    from phi.flow import math as phimath

    names = "xy"[: u0.ndim]
    velocity = vec(**{name: 1.0 for name in names})
    start = CenteredGrid(phimath.tensor(u0, phimath.spatial(*names)), extrapolation.PERIODIC,
                         bounds=Box(**{name: 2 * math.pi for name in names}))

    def run(n_steps: int) -> np.ndarray:
        u = start
        for _ in range(n_steps):
            u = diffuse.explicit(u, NU, dt)
            u = advect.semi_lagrangian(u, u * velocity, dt)
        return u.values.numpy(names)

    return run


def check_agreement(pde: str, shape: tuple[int, ...], label: str, device: str) -> float:
    r"""$\max|\Delta_{physml} - \Delta_{NumPy}| / \max|\Delta_{NumPy}|$ for the increments
    $\Delta = u_3 - u_0$ of AGREEMENT_STEPS steps from the benchmark's state plus noise in
    every cell; aborts above AGREEMENT_TOL. The noise puts the modes near the stability
    limit into the state, which another time scheme or stencil changes by a sizeable part of
    their increment (the smooth benchmark state alone changes too little in three steps to
    tell schemes apart)."""
    rollouts, _, _ = build_rollouts(pde, shape, device, noise=AGREEMENT_NOISE)
    start = rollouts["numpy"](0)
    ours, theirs = rollouts["physml"](AGREEMENT_STEPS), rollouts["numpy"](AGREEMENT_STEPS)
    difference = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs - start)))
    if not difference < AGREEMENT_TOL:
        raise SystemExit(
            f"{label}: physml's and NumPy's increments over {AGREEMENT_STEPS} steps differ by "
            f"{difference:.3e} relative (tolerance {AGREEMENT_TOL:.0e}); the benchmark compares "
            f"different schemes")
    return difference


def seconds_for(device: str, run: Callable[..., object], *args) -> float:
    """Wall-clock seconds of ``run(*args)``, ``device`` (physml's) synchronised."""
    with Stopwatch(device) as watch:
        run(*args)
    return watch.seconds


def steps_for(device: str, run: Rollout, seconds: float) -> int:
    """Number of steps (>= 1) that ``run`` takes about ``seconds`` to do (doubling probe)."""
    n_steps, elapsed = 1, seconds_for(device, run, 1)
    while elapsed < min(0.1, seconds / 4):
        n_steps *= 2
        elapsed = seconds_for(device, run, n_steps)
    return max(1, round(n_steps * seconds / elapsed))


def stage_bytes_per_cell(solver) -> int:
    """Compulsory bytes per cell and step of the fused stages: per stage its input, the state,
    each earlier k with a nonzero coefficient (reads), its output and its k (writes): on the
    CPU only where a later stage reads it (the native loops keep the other k's in a tile
    buffer), on CUDA every k (one thread per cell writes it)."""
    scheme, arrays = solver.tableau, 0
    plan = solver.stages.tableau_plan(scheme)
    for i, (_, _, _, read_later) in enumerate(plan):
        row = scheme.b if i == scheme.stages - 1 else scheme.a[i + 1]
        writes_k = read_later or not solver.stages.on_cpu
        arrays += (1 if i == 0 else 2) + sum(1 for c in row[:i] if c != 0.0) + 1 + writes_k
    return 8 * arrays


def benchmark_grid(pde: str, shape: tuple[int, ...], seconds: float, device: str) -> dict:
    """Agreement, step counts, steps/s and bandwidth of both implementations on one grid
    (physml on ``device``)."""
    label = f"{pde} " + "x".join(map(str, shape))
    difference = check_agreement(pde, shape, label, device)  # also compiles both
    rollouts, dt, solver = build_rollouts(pde, shape, device)
    if "phiflow" in rollouts:  # another scheme: its distance is reported, not checked
        phiflow_distance = float(np.max(np.abs(rollouts["phiflow"](AGREEMENT_STEPS)
                                               - rollouts["physml"](AGREEMENT_STEPS))))
    n_steps = {name: steps_for(device, run, seconds) for name, run in rollouts.items()}
    rates: dict[str, list[float]] = {name: [] for name in rollouts}
    for repeat in range(REPEATS):  # the sides alternate, in reversed order every other time
        order = list(rollouts) if repeat % 2 == 0 else list(rollouts)[::-1]
        for name in order:
            rates[name].append(n_steps[name] / seconds_for(device, rollouts[name],
                                                           n_steps[name]))
    median = {name: statistics.median(values) for name, values in rates.items()}
    cells = int(np.prod(shape))
    row = {
        "pde": pde,
        "grid": "x".join(map(str, shape)),
        "cells": cells,
        "dt": dt,
        "relative_increment_difference": difference,
        **({"physml_host_threads": solver.stages.host_threads(1)} if device == "cpu" else {}),
        "steps": n_steps,
        "steps_per_s": {name: summary(values, "runs") for name, values in rates.items()},
        "ratio_physml_over_numpy": median["physml"] / median["numpy"],
        "physml_bandwidth_gb_s": median["physml"] * cells * stage_bytes_per_cell(solver) / 1e9,
    }
    if "phiflow" in rollouts:
        row["ratio_physml_over_phiflow"] = median["physml"] / median["phiflow"]
        row["phiflow_max_abs_distance"] = phiflow_distance
    print(f"{label:>18}: physml {median['physml']:9.2f} steps/s, NumPy {median['numpy']:9.2f}"
          f" steps/s, ratio {row['ratio_physml_over_numpy']:5.2f}, "
          f"{row['physml_bandwidth_gb_s']:.2f} GB/s"
          + (f", PhiFlow {median['phiflow']:.2f} steps/s" if "phiflow" in median else ""),
          flush=True)
    return row


def stream_copy_gb_s(threads: int, repeats: int = 5) -> dict:
    """STREAM-like copy bandwidth [GB/s]: np.copyto of STREAM_SIZE float64, read + write, in
    ``threads`` equal parts on as many threads (NumPy releases the GIL while it copies)."""
    a, b = np.random.default_rng(0).random(STREAM_SIZE), np.empty(STREAM_SIZE)
    bounds = [STREAM_SIZE * j // threads for j in range(threads + 1)]
    parts = [(b[lo:hi], a[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    rates = []
    with ThreadPoolExecutor(threads) as pool:
        for repeat in range(repeats + 1):  # the first one pages the arrays in
            start = time.perf_counter()
            list(pool.map(lambda part: np.copyto(*part), parts))
            if repeat:
                rates.append(2 * a.nbytes / (time.perf_counter() - start) / 1e9)
    return summary(rates, "runs")


def device_copy_gb_s(device: str, repeats: int = 5) -> dict:
    """Device-to-device copy bandwidth [GB/s] on ``device``: ``wp.copy`` of DEVICE_COPY_SIZE
    float64 (far beyond the caches), read + write, DEVICE_COPIES copies per timing, the device
    synchronised around them; ``repeats`` timings after one that warms up."""
    source = wp.full(DEVICE_COPY_SIZE, 1.0, dtype=wp.float64, device=device)
    target = wp.empty_like(source)
    rates = []
    for repeat in range(repeats + 1):
        with Stopwatch(device) as watch:
            for _ in range(DEVICE_COPIES):
                wp.copy(target, source)
        if repeat:
            rates.append(2 * DEVICE_COPIES * source.capacity / watch.seconds / 1e9)
    return summary(rates, "runs")


def copy_references(device: str, peak_gb_s: float | None) -> dict:
    """The copy bandwidths [GB/s] physml's is set against, measured now: on the CPU the
    STREAM-like copy on 1 .. available_cores() threads (``stream_copy_gb_s``), on CUDA the
    device-to-device copy (``device_copy_gb_s``); and ``nominal_peak_gb_s`` where given."""
    if device == "cpu":
        stream = {threads: stream_copy_gb_s(threads)
                  for threads in range(1, available_cores() + 1)}
        print("STREAM-like copy: " + ", ".join(f"{v['median']:.2f} GB/s on {k} thread(s)"
                                               for k, v in stream.items()), flush=True)
        references = {"stream_copy_gb_s": {f"{k}_threads": v for k, v in stream.items()}}
    else:
        copy = device_copy_gb_s(device)
        print(f"device copy (wp.copy on {device}): {copy['median']:.1f} GB/s", flush=True)
        references = {"device_copy_gb_s": copy}
    return references | ({"nominal_peak_gb_s": peak_gb_s} if peak_gb_s is not None else {})


def bandwidth_fractions(row: dict, references: dict) -> dict:
    """``row``'s physml bandwidth over each of ``references`` (:func:`copy_references`): the
    STREAM-like copy on as many threads as physml's stages took, the device copy, the nominal
    peak."""
    achieved, fractions = row["physml_bandwidth_gb_s"], {}
    if "stream_copy_gb_s" in references:
        stream = references["stream_copy_gb_s"]
        threads = min(row["physml_host_threads"], len(stream))
        fractions["bandwidth_fraction_of_copy"] = (
            achieved / stream[f"{threads}_threads"]["median"])
    if "device_copy_gb_s" in references:
        fractions["bandwidth_fraction_of_device_copy"] = (
            achieved / references["device_copy_gb_s"]["median"])
    if "nominal_peak_gb_s" in references:
        fractions["bandwidth_fraction_of_nominal_peak"] = (
            achieved / references["nominal_peak_gb_s"])
    return fractions


def benchmark_grids(pdes: list[str], largest: int, seconds: float, device: str,
                    peak_gb_s: float | None) -> dict:
    """The copy references (:func:`copy_references`) and the grids up to ``largest`` cells of
    ``pdes`` (:func:`benchmark_grid`), each with its bandwidth fractions."""
    references = copy_references(device, peak_gb_s)
    results = [benchmark_grid(pde, shape, seconds, device) for pde in pdes
               for shape in GRID_SHAPES if int(np.prod(shape)) <= largest]
    for row in results:
        row.update(bandwidth_fractions(row, references))
    return {**references, "grids": results}


def batched_bitwise_check(solver, u0: np.ndarray, together: np.ndarray,
                          alone: np.ndarray) -> dict:
    """The batched rollout's samples against their one-by-one rollouts, bitwise: on the
    solver's device where they agree there; where a CUDA device's differ, the same check on
    the CPU, and that device's largest difference. Aborts where the CPU's differ. On CUDA the
    record names where the check ran (``bitwise_checked_on``)."""
    device = str(solver.device)
    if np.array_equal(together, alone):
        return {"bitwise_equal": True} | (
            {"bitwise_checked_on": device} if device != "cpu" else {})
    assert device != "cpu", "batched and one-by-one rollouts differ"
    cpu = build_solver("burgers", solver.grid, "cpu").with_dt(solver.dt)
    on_cpu = cpu.rollout(u0, BATCH_STEPS, BATCH_STEPS)
    alone_on_cpu = np.stack([cpu.rollout(u, BATCH_STEPS, BATCH_STEPS) for u in u0])
    assert np.array_equal(on_cpu, alone_on_cpu), "batched and one-by-one rollouts differ on the CPU"
    return {"bitwise_equal": True, "bitwise_checked_on": "cpu",
            "device_max_abs_difference": float(np.max(np.abs(together - alone)))}


def batched_throughput(device: str) -> dict:
    """Samples/s of BATCH BATCH_CELLS-cell Burgers samples advanced together and one by one
    on ``device`` (on the CPU also together on one host thread)."""
    grid = Grid((BATCH_CELLS,), (0.0,), (2 * math.pi,))
    solver = build_solver("burgers", grid, device)
    x = grid.coords(0)
    u0 = np.stack([0.5 + np.sin(x + 0.01 * b) * (0.5 + b / BATCH) for b in range(BATCH)])
    solver = solver.with_dt(CFL_FRACTION * solver.stable_dt(u0))
    on_cpu = device == "cpu"
    runs = {"batched": lambda: solver.rollout(u0, BATCH_STEPS, BATCH_STEPS)}
    if on_cpu:  # automatic threads split a batch by samples: one thread for a single sample
        one_thread = build_solver("burgers", grid, device, threads=1).with_dt(solver.dt)
        runs["batched_one_thread"] = lambda: one_thread.rollout(u0, BATCH_STEPS, BATCH_STEPS)
    runs["one_by_one"] = lambda: [solver.rollout(u, BATCH_STEPS, BATCH_STEPS) for u in u0]
    bitwise = batched_bitwise_check(solver, u0, runs["batched"](),
                                    np.stack(runs["one_by_one"]()))
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(REPEATS):  # in reversed order every other repeat
        for name in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
            rates[name].append(BATCH / seconds_for(device, runs[name]))
    median = {name: statistics.median(v) for name, v in rates.items()}
    result = {
        "case": f"{BATCH} samples x {BATCH_CELLS} cells, Burgers, {BATCH_STEPS} steps",
        **({"host_threads": {"batched": len(solver.stages._split(BATCH)[1]),
                             "batched_one_thread": 1,
                             "one_by_one": len(solver.stages._split(1)[1])}} if on_cpu else {}),
        "samples_per_s": {name: summary(v, "runs") for name, v in rates.items()},
        "speedup": median["batched"] / median["one_by_one"],
        **({"speedup_one_thread": median["batched_one_thread"] / median["one_by_one"]}
           if on_cpu else {}),
        **bitwise,
    }
    print(batched_line(median, result, device), flush=True)
    return result


def batched_line(median: dict[str, float], result: dict, device: str) -> str:
    """The printed summary of :func:`batched_throughput`."""
    if device != "cpu":
        return (f"batched throughput on {device}: {median['batched']:.1f} samples/s together, "
                f"{median['one_by_one']:.1f} one by one: speed-up {result['speedup']:.1f}x")
    return (f"batched throughput: {median['batched']:.1f} samples/s together "
            f"({median['batched_one_thread']:.1f} on one thread), {median['one_by_one']:.1f} one "
            f"by one: speed-up {result['speedup']:.1f}x ({result['speedup_one_thread']:.1f}x at "
            "equal threads)")


# ------------------------------------------------------------------------------- reporting


def environment(seconds: float, heap_kept: bool, device: str) -> dict:
    """Machine, versions and settings, stored beside the numbers (on CUDA with the device's
    name and model)."""
    machine = {
        "processor": platform.processor(),
        "architecture": platform.machine(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
    }
    if device != "cpu":
        machine |= {"device": device, "device_name": wp.get_device(device).name}
    return {
        "machine": machine,
        "versions": {"physml": physml.__version__, "warp": wp.__version__, "numpy": np.__version__,
                     "phiflow": importlib.metadata.version("phiflow")
                     if importlib.util.find_spec("phi") else None},
        "settings": {
            "burgers": f"nu={NU}, periodic, van Leer + Rusanov, ssp_rk3, float64, {device}",
            "heat": f"nu={NU}, periodic, central, rk4, float64, {device}",
            "dt": f"{CFL_FRACTION} * stable_dt(u0)",
            "seconds_per_measurement": seconds,
            "numpy_threads": 1,
            "glibc_heap_thresholds_raised": heap_kept,
        },
        "statistic": f"median (min, max) of {REPEATS} alternating runs",
    }


def parse_arguments() -> tuple[argparse.Namespace, str]:
    """The command line and physml's device as Warp names it ("cpu", "cuda:0", ...); a bad
    option or a device this machine lacks is one line on standard error and exit status 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--seconds", type=at_least(0.0, float, strictly=True), default=1.0,
                        help="seconds per measurement")
    parser.add_argument("--pdes", nargs="+", default=list(PDES), choices=PDES)
    parser.add_argument("--largest", type=at_least(min(int(np.prod(s)) for s in GRID_SHAPES)),
                        default=2**22, help="skip grids above this (cells)")
    parser.add_argument("--keep-heap", action="store_true",
                        help="raise glibc's mmap and trim thresholds for NumPy's temporaries")
    parser.add_argument("--device", default="cpu",
                        help="physml's device (cpu, cuda, cuda:N); the NumPy twins run on the CPU")
    parser.add_argument("--peak-gb-s", type=at_least(0.0, float, strictly=True),
                        help="the device's nominal memory bandwidth [GB/s], reported against too")
    parser.add_argument("--only", choices=PARTS, help="run this part alone (default: both)")
    args = parser.parse_args()
    if args.peak_gb_s is not None and args.only == "batched":
        parser.error("--peak-gb-s sets the grids' bandwidth against a peak; --only batched runs "
                     "no grid")
    if args.keep_heap and not keep_heap_memory():
        parser.error("--keep-heap sets glibc's malloc thresholds: this platform has no glibc")
    wp.config.log_level = wp.LOG_WARNING  # no Warp greeting or module-load lines
    check_device(parser, args.device, warp_device)  # what the solvers themselves accept
    return args, warp_device(args.device)


def main() -> None:
    args, device = parse_arguments()
    parts = [args.only] if args.only else list(PARTS)
    load_before = load_average()
    measured = {}
    if "grids" in parts:
        measured |= benchmark_grids(args.pdes, args.largest, args.seconds, device,
                                    args.peak_gb_s)
    if "batched" in parts:
        measured["batched"] = batched_throughput(device)
    result = {**environment(args.seconds, args.keep_heap, device), "provenance": provenance(),
              "load_average_before": load_before,
              "load_average_after": load_average(), **measured}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
