r"""Preconditioned CG: physml's Warp CG against SciPy's on the same matrix, CPU.

Each case solves $A x = b$ to $\|r\| \le 10^{-8}\|b\|$ ($b$ standard normal, seed 0, float64),
where A is the 5-point $-\Delta_h$ on the unit square with $m^2$ unknowns
(:func:`~physml.solvers.linalg.model_problems.poisson_2d`), plus one variable-coefficient case
(face coefficients $10^{3\xi}$, $\xi \sim U(0,1)$). Sides, all on the same matrix and right-hand
side: Warp CG without preconditioner, with Jacobi and with pyamg smoothed-aggregation AMG
(:func:`~physml.solvers.linalg.cg`), against ``scipy.sparse.linalg.cg`` without preconditioner
and with the same pyamg V-cycle as ``M``. The hierarchy set-up is timed apart from the solves.
After a warm-up (kernel compilation), the sides run alternately, in reversed order every other
repeat; the script reports per side the median and the spread (min, max) of the total time and of
the time per iteration, the iterations, and the ratio Warp/SciPy of the median time per
iteration (< 1: Warp is faster). Warp runs a CPU launch on one thread; SciPy is run with the
thread count recorded (``OMP_NUM_THREADS``), and the load average before and after is kept.
Timings are reported, never asserted.

Run from the repository root::

    python benchmarks/linalg.py [--sizes 100 256 512] [--large] [--repeats 3] [--out FILE]

``--large`` adds $m = 1000$ ($10^6$ unknowns).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import pyamg
import scipy
import scipy.sparse.linalg as spla
import warp as wp
from _common import at_least, load_average, provenance, summary, usable_cores

import physml
from physml.solvers.linalg import CsrOperator, Jacobi, SmoothedAggregationAMG, cg, csr_from_scipy
from physml.solvers.linalg.model_problems import layered_coefficient, poisson_2d

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RTOL = 1e-8
CONTRAST = 1e3
VARIABLE_SIZE = 256
RESULTS = Path(__file__).resolve().parent / "results"

Side = Callable[[], int]  # runs one solve, returns its iterations


def sides(A, b: np.ndarray) -> tuple[dict[str, Side], dict[str, float]]:
    """The solves to time on one matrix, and the set-up times of their preconditioners."""
    setup = {}
    op = CsrOperator(csr_from_scipy(A, wp.float64, "cpu"))
    bw = wp.array(b, dtype=wp.float64, device="cpu")
    start = time.perf_counter()
    amg = SmoothedAggregationAMG(op)
    setup["warp_amg_sa"] = time.perf_counter() - start
    jacobi = Jacobi(op)
    start = time.perf_counter()
    scipy_amg = pyamg.smoothed_aggregation_solver(A).aspreconditioner(cycle="V")
    setup["scipy_amg_sa"] = time.perf_counter() - start

    def warp_side(preconditioner) -> Side:
        # an operator of its own per side: an operator keeps the workspace of its last
        # preconditioner only, so shared ones would rebuild it on every solve
        own = CsrOperator(op.matrix)
        return lambda: cg(own, bw, preconditioner=preconditioner, rtol=RTOL).iterations

    def scipy_side(M) -> Side:
        def run() -> int:
            count = [0]
            x, info = spla.cg(
                A,
                b,
                rtol=RTOL,
                M=M,
                maxiter=20 * A.shape[0],
                callback=lambda _: count.__setitem__(0, count[0] + 1),
            )
            if info != 0:
                raise RuntimeError(f"scipy cg did not converge (info={info})")
            return count[0]

        return run

    runs = {
        "warp_none": warp_side(None),
        "warp_jacobi": warp_side(jacobi),
        "warp_amg_sa": warp_side(amg),
        "scipy_none": scipy_side(None),
        "scipy_amg_sa": scipy_side(scipy_amg),
    }
    return runs, setup


def measure(runs: dict[str, Side], repeats: int) -> dict[str, dict]:
    """Alternate the sides ``repeats`` times; medians and (min, max) per side."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    iterations: dict[str, int] = {}
    order = list(runs)
    for repeat in range(repeats):
        for name in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            iterations[name] = runs[name]()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, ts in times.items():
        per = [t / iterations[name] for t in ts]
        out[name] = {
            "iterations": iterations[name],
            "total_s": summary(ts),
            "per_iteration_s": summary(per),
        }
    return out


def case(label: str, A, repeats: int) -> dict:
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    runs, setup = sides(A, b)
    for run in runs.values():  # warm-up: compile the kernels, touch the memory
        run()
    result = measure(runs, repeats)
    per = {name: r["per_iteration_s"]["median"] for name, r in result.items()}
    ratios = {
        "warp_none/scipy_none": per["warp_none"] / per["scipy_none"],
        "warp_amg_sa/scipy_amg_sa": per["warp_amg_sa"] / per["scipy_amg_sa"],
    }
    print(
        f"{label:>24}  n={A.shape[0]:>8}  "
        + "  ".join(
            f"{name}: {r['iterations']} it {r['per_iteration_s']['median'] * 1e3:.3f} ms/it"
            for name, r in result.items()
        )
        + "  "
        + "  ".join(f"{k}={v:.2f}" for k, v in ratios.items())
    )
    return {
        "label": label,
        "n": A.shape[0],
        "nnz": int(A.nnz),
        "setup_s": setup,
        "sides": result,
        "per_iteration_ratio": ratios,
    }


def plot(cases: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    poisson = [c for c in cases if c["label"].startswith("poisson")]
    n = [c["n"] for c in poisson]
    for name in poisson[0]["sides"]:
        for ax, key in zip(axes, ("total_s", "per_iteration_s")):
            ax.loglog(n, [c["sides"][name][key]["median"] for c in poisson], "o-", label=name)
    for ax, title in zip(axes, ("time to 1e-8 [s]", "time per iteration [s]")):
        ax.set_xlabel("unknowns n")
        ax.set_title(f"5-point Poisson, CPU: {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=at_least(2), nargs="+", default=[100, 256, 512])
    parser.add_argument("--large", action="store_true", help="add m = 1000 (10^6 unknowns)")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "linalg.json")
    args = parser.parse_args()
    wp.config.quiet = True
    wp.init()
    sizes = args.sizes + ([1000] if args.large else [])
    load_before = load_average()
    cases = [case(f"poisson {m}x{m}", poisson_2d(m), args.repeats) for m in sizes]
    coefficient = layered_coefficient(VARIABLE_SIZE, CONTRAST)
    cases.append(
        case(
            f"variable k {VARIABLE_SIZE}x{VARIABLE_SIZE}",
            poisson_2d(VARIABLE_SIZE, coefficient),
            args.repeats,
        )
    )
    report = {
        "machine": {
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": usable_cores(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "threads": {"warp_cpu": 1, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "versions": {
            "physml": physml.__version__,
            "warp": wp.__version__,
            "scipy": scipy.__version__,
            "pyamg": pyamg.__version__,
        },
        "settings": {
            "rtol": RTOL,
            "dtype": "float64",
            "device": "cpu",
            "repeats": args.repeats,
            "variable_coefficient_contrast": CONTRAST,
        },
        "provenance": provenance(),
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(cases, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
