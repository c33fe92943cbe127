r"""Cotangent-Laplacian assembly: physml's Warp kernels against libigl and robust-laplacian.

On icospheres of $10\cdot 4^\ell + 2$ vertices ($\ell = 5 \dots 8$: 1.0e4 to 6.6e5 vertices) the
script times, alternately in one run, ``REPEATS`` times each:

- ``physml cold``: a fresh mesh: the CSR pattern (Warp's ``bsr_set_from_triplets`` with its
  triplet map and the triplet slots) plus the values — what a first assembly costs;
- ``physml warm``: the values only on a mesh whose pattern is cached (vertices moved, e.g. in a
  shape optimisation), ``bsr_set_from_mapped_values`` plus a copy;
- ``igl.cotmatrix`` (libigl, Eigen triplets ``setFromTriplets``);
- ``robust_laplacian.mesh_laplacian`` (intrinsic Delaunay Laplacian plus its lumped mass, so it
  does more work than the others).

physml's result is checked against libigl's (max abs difference) before timing. Medians with the
min and max are written as JSON (thread counts and load average included) with a log-log plot.
Timings are reported, never asserted. Run from the repository root::

    python benchmarks/mesh.py [--levels 5 6 7 8] [--out benchmarks/results/mesh.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import warp as wp

import physml
from physml.solvers.mesh import Mesh, cotan_laplacian, icosphere, to_scipy

REPEATS = 3
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "mesh.json"


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_level(level: int) -> dict:
    import igl
    import robust_laplacian

    sphere = icosphere(level)
    V, F = sphere.points, sphere.cells
    warm_mesh = Mesh(V, F, check=False)
    difference = abs(to_scipy(cotan_laplacian(warm_mesh)) - igl.cotmatrix(V, F)).max()

    def cold():
        cotan_laplacian(Mesh(V, F, check=False))

    sides = {
        "physml cold": cold,
        "physml warm": lambda: cotan_laplacian(warm_mesh),
        "libigl": lambda: igl.cotmatrix(V, F),
        "robust-laplacian": lambda: robust_laplacian.mesh_laplacian(V, F),
    }
    times = {name: [] for name in sides}
    for _ in range(REPEATS):
        for name, fn in sides.items():
            times[name].append(_time(fn))
    return {
        "level": level, "vertices": len(V), "faces": len(F),
        "max_abs_difference_vs_libigl": float(difference),
        "seconds": {name: {"median": statistics.median(t), "min": min(t), "max": max(t)}
                    for name, t in times.items()},
        "ratio_libigl_over_physml_cold": statistics.median(times["libigl"])
        / statistics.median(times["physml cold"]),
        "ratio_libigl_over_physml_warm": statistics.median(times["libigl"])
        / statistics.median(times["physml warm"]),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    n = [r["vertices"] for r in results]
    for name in results[0]["seconds"]:
        med = np.array([r["seconds"][name]["median"] for r in results])
        lo = med - np.array([r["seconds"][name]["min"] for r in results])
        hi = np.array([r["seconds"][name]["max"] for r in results]) - med
        ax.errorbar(n, med, yerr=[lo, hi], marker="o", capsize=3, label=name)
    ax.set(xscale="log", yscale="log", xlabel="vertices", ylabel="seconds (median, min-max)",
           title="cotangent Laplacian assembly, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[5, 6, 7, 8])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    wp.config.log_level = wp.LOG_ERROR
    wp.init()
    cotan_laplacian(icosphere(1))  # compile the kernels outside the timings
    results = []
    for level in args.levels:
        results.append(bench_level(level))
        r = results[-1]
        print(f"{r['vertices']:>9} vertices: "
              + ", ".join(f"{k} {v['median']:.4f}s" for k, v in r["seconds"].items())
              + f"  |diff| {r['max_abs_difference_vs_libigl']:.1e}")
    report = {
        "benchmark": "cotangent Laplacian assembly (float64, CPU)",
        "physml": physml.__version__, "warp": wp.__version__,
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "threads": {"warp_cpu": 1, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "load_average": os.getloadavg(), "repeats": REPEATS, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
