r"""Differentiable rollouts: physml's bridge against the same scheme written in PyTorch.

The peer a user of the bridge has is PyTorch itself: the scheme written with tensor operations
and differentiated by autograd. Both sides roll out 1D Burgers
$u_t + (u^2/2)_x = \nu u_{xx}$ (1024 cells, periodic on $[0, 2\pi)$, MUSCL with the van Leer
limiter, Rusanov flux, central diffusion, SSP-RK3, float64, the same dt) from the same batch of
initial states and differentiate $\sum_b \|u_b(T)\|^2$ with respect to $u_0$ and $\nu$ (one
per sample): forward + backward wall-clock, alternating, medians [min, max]. physml runs
``bridge.rollout`` with the step adjoint in native loops (:mod:`physml.solvers.step_adjoint`,
the CPU default) and, as the third side, with Warp's adjoint generated from the per-cell stage
kernel (what the bridge ran on the CPU before, and still runs on a GPU). The final states and
gradients of the three sides are compared (max relative difference). One thread on each side:
PyTorch's, and physml's solver built with ``threads=1`` (its stages and adjoint would otherwise
take both cores from 16 samples of 1024 cells).

Run from the repository root::

    python benchmarks/bridge.py [--out benchmarks/results/bridge.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import warp as wp
from _common import load_average, provenance, summary, usable_cores

import physml
from physml import bridge
from physml.solvers import BurgersSolver1D, Grid, step_adjoint

CELLS, NU = 1024, 0.01
CASES = ((1, 200), (16, 100), (128, 25))  # (samples, steps)
REPEATS = 5
RESULTS = Path(__file__).resolve().parent / "results"


def van_leer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(a * b > 0, 2 * a * b / (a + b), torch.zeros_like(a))


def torch_rhs(u: torch.Tensor, nu: torch.Tensor, dx: float) -> torch.Tensor:
    """The solver's operator in PyTorch: MUSCL–Rusanov Burgers flux plus central diffusion."""
    um, up = torch.roll(u, 1, -1), torch.roll(u, -1, -1)
    slope = van_leer(u - um, up - u)
    ul = u + 0.5 * slope  # the left state at face i + 1/2
    ur = torch.roll(u - 0.5 * slope, -1, -1)  # its right state
    flux = 0.25 * (ul * ul + ur * ur) - 0.5 * torch.maximum(ul.abs(), ur.abs()) * (ur - ul)
    return -(flux - torch.roll(flux, 1, -1)) / dx + nu[:, None] * (up - 2 * u + um) / dx**2


def torch_rollout(u: torch.Tensor, nu: torch.Tensor, steps: int, dt: float,
                  dx: float) -> torch.Tensor:
    """SSP-RK3 steps of :func:`torch_rhs`."""
    for _ in range(steps):
        u1 = u + dt * torch_rhs(u, nu, dx)
        u2 = 0.75 * u + 0.25 * (u1 + dt * torch_rhs(u1, nu, dx))
        u = u / 3 + 2 / 3 * (u2 + dt * torch_rhs(u2, nu, dx))
    return u


def run_case(batch: int, steps: int) -> dict:
    grid = Grid((CELLS,), (0.0,), (2 * math.pi,))
    x = grid.coords(0)
    u0 = np.stack([0.5 + np.sin(x + 0.1 * b) * (1 + b / max(batch, 1)) for b in range(batch)])
    nu0 = NU * (1 + np.arange(batch) / max(batch, 1))
    solver = BurgersSolver1D(grid, nu=NU, dt=None, threads=1)
    solver = solver.with_dt(0.5 * solver.stable_dt(u0))

    def gradients(side: str):
        u = torch.tensor(u0, requires_grad=True)
        nu = torch.tensor(nu0, requires_grad=True)
        if side == "torch":
            final = torch_rollout(u, nu, steps, solver.dt, grid.dx[0])
        else:
            final = bridge.rollout(solver, u, steps, save_every=steps, parameters={"nu": nu})[:, -1]
        final.square().sum().backward()
        return final.detach(), u.grad, nu.grad

    def physml_tape():
        native = step_adjoint.supported
        step_adjoint.supported = lambda solver: False
        try:
            return gradients("physml")
        finally:
            step_adjoint.supported = native

    sides = {"physml": lambda: gradients("physml"), "torch": lambda: gradients("torch"),
             "physml_tape_adjoint": physml_tape}
    results = {name: side() for name, side in sides.items()}
    reference = results["torch"]
    agreement = {name: [float((a - b).abs().max() / b.abs().max()) for a, b in zip(r, reference)]
                 for name, r in results.items() if name != "torch"}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(REPEATS):  # alternating, in reversed order every other repeat
        for name in list(sides) if repeat % 2 == 0 else list(sides)[::-1]:
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(v) for name, v in times.items()}
    row = {
        "samples": batch, "steps": steps, "cells": CELLS,
        "seconds": {name: summary(v, "runs") for name, v in times.items()},
        "speedup_over_torch": median["torch"] / median["physml"],
        "speedup_over_tape_adjoint": median["physml_tape_adjoint"] / median["physml"],
        "max_relative_difference_to_torch": {
            name: dict(zip(("final_state", "grad_u0", "grad_nu"), values))
            for name, values in agreement.items()},
    }
    print(f"{batch:4d} samples x {steps:4d} steps: physml {median['physml'] * 1e3:8.1f} ms, "
          f"PyTorch {median['torch'] * 1e3:8.1f} ms, Warp tape adjoint "
          f"{median['physml_tape_adjoint'] * 1e3:8.1f} ms; physml {row['speedup_over_torch']:.2f}x "
          f"PyTorch, {row['speedup_over_tape_adjoint']:.2f}x the tape adjoint", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "bridge.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = load_average()
    rows = [run_case(batch, steps) for batch, steps in CASES]
    result = {
        "machine": {"processor": platform.processor(), "architecture": platform.machine(),
                    "available_cores": usable_cores()},
        "versions": {"physml": physml.__version__, "warp": wp.__version__,
                     "torch": torch.__version__},
        "settings": {"torch_threads": 1, "physml_host_threads": 1, "repeats": REPEATS,
                     "statistic": "median"},
        "load_average_before": load_before, "load_average_after": load_average(),
        "provenance": provenance(), "cases": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
