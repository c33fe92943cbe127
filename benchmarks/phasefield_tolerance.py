r"""Accuracy of the Cahn–Hilliard adaptive step against its tolerance, on a spinodal decomposition.

The problem is ``cases/thermomigration_spinodal_pfhub1.yaml``, ``variant=cpu`` (PFHub benchmark
1a, non-dimensional: $f = 5(c - 0.3)^2(0.7 - c)^2$, $M = 5$, $\kappa = 2$, periodic 200 x 200
square on 100 x 100 cells), in float64. The early stage, while the composition separates, is
the transient that a loose step gets wrong; the free energy
$F = \int f + \tfrac\kappa2|\nabla c|^2\,dA$ falls from 319 to about 165 by $t = 50$.

Reference: the same stabilised scheme at fixed steps $\Delta t$ and $\Delta t/2$
(:meth:`ThermomigrationSolver.rollout`), Richardson-extrapolated for its first order,
$F_{ref} = 2F_{\Delta t/2} - F_{\Delta t}$; the JSON records $|F_{\Delta t/2} - F_{ref}|$, the
error left in the finer run, which bounds the reference's own. Each tolerance then runs
:meth:`ThermomigrationSolver.run` from the same start, and the table gives the largest
relative error $|F - F_{ref}|/F_{ref}$ over the save times, every time unit to $t = 50$ (it
peaks near $t = 15$, where $F$ falls fastest), and the accepted and rejected steps to
$t = 50$. Run from the repository root::

    python benchmarks/phasefield_tolerance.py [--out results.json] [--quick]

``--quick`` checks the script on a shorter span with a coarser reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import warp as wp
from _common import provenance

import physml
from physml.cases.registry import load_case
from physml.cases.thermomigration_build import build_solver

CASE = Path(__file__).resolve().parents[1] / "cases" / "thermomigration_spinodal_pfhub1.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "phasefield_tolerance.json"
TOLERANCES = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6)


def reference(save_times: np.ndarray, dt: float) -> dict:
    """Free energies at ``save_times`` from fixed steps ``dt`` and ``dt/2``, extrapolated."""
    solver, c0 = build_solver(load_case(CASE, ["variant=cpu"]))
    energies = {}
    for h in (dt, dt / 2):
        every = int(round(save_times[0] / h))
        n_steps = int(round(save_times[-1] / h))
        states = solver.rollout(c0, n_steps, every, dt=h)
        saved = np.arange(len(states)) * every * h
        energies[h] = np.array([solver.total_free_energy(states[np.argmin(np.abs(saved - t))])
                                for t in save_times])
    extrapolated = 2 * energies[dt / 2] - energies[dt]
    return {"dt": dt, "free_energy": extrapolated.tolist(),
            "finer_run_error": np.abs(energies[dt / 2] - extrapolated).tolist()}


def adaptive(tolerance: float, save_times: np.ndarray) -> dict:
    solver, c0 = build_solver(load_case(CASE, ["variant=cpu", f"solver.tolerance={tolerance}"]))
    started = time.perf_counter()
    run = solver.run(c0, save_times[-1], save_times=save_times)
    return {"tolerance": tolerance, "free_energy": run.free_energy[1:],
            "steps": run.steps[-1], "rejected": run.rejected,
            "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="t <= 10, coarser reference")
    args = parser.parse_args()
    wp.config.log_level = wp.LOG_WARNING
    save_times = np.arange(1.0, (10.0 if args.quick else 50.0) + 0.5)
    ref = reference(save_times, 0.02 if args.quick else 0.005)
    F_ref = np.array(ref["free_energy"])
    rows = []
    print(f"reference F = {np.round(F_ref, 4).tolist()} at t = {save_times.tolist()} "
          f"(finer run within {max(ref['finer_run_error'] / F_ref):.1e})")
    print(f"{'tolerance':>10} {'max rel. error of F':>20} {'at t':>6} {'steps':>7} "
          f"{'rejected':>9}")
    for tolerance in TOLERANCES:
        row = adaptive(tolerance, save_times)
        error = np.abs(np.array(row["free_energy"]) - F_ref) / F_ref
        row["relative_error"] = error.tolist()
        row["max_relative_error"] = float(error.max())
        rows.append(row)
        print(f"{tolerance:>10.0e} {error.max():>20.2e} {save_times[np.argmax(error)]:>6g} "
              f"{row['steps']:>7} {row['rejected']:>9}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "case": f"{CASE.name} variant=cpu", "save_times": save_times.tolist(),
        "reference": ref, "tolerances": rows, "quick": args.quick,
        "versions": {"physml": physml.__version__, "warp": wp.__version__},
        "provenance": provenance(),
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
