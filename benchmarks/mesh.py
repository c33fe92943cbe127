r"""Mesh operators and solves against their peers: cotangent-Laplacian assembly (libigl,
robust-laplacian), a Poisson-type solve (physml's AMG-CG, SciPy Jacobi-CG, pyamg AMG-CG) and the
heat-method geodesic (potpourri3d). A peer that is not installed is skipped (``pip install -e
".[bench]"`` installs them all).

Assembly (``--parts assembly``): on icospheres of $10\cdot 4^\ell + 2$ vertices
($\ell = 5 \dots 8$: 1.0e4 to 6.6e5 vertices) the script times, alternately in one run,
``REPEATS`` times each (every comparison here runs one untimed call of each side first, then
alternates the sides in reversed order every other repeat):

- ``physml cold``: a fresh mesh: the CSR pattern and each cell entry's CSR slot (one native
  pass, :func:`~physml.solvers.mesh.operators.csr_pattern`) plus the values, summed from each
  cell straight into the CSR values — what a first assembly costs;
- ``physml warm``: the values only on a mesh whose pattern is cached (vertices moved, e.g. in a
  shape optimisation);
- ``igl.cotmatrix`` (libigl, Eigen triplets ``setFromTriplets``);
- ``robust_laplacian.mesh_laplacian`` (intrinsic Delaunay Laplacian plus its lumped mass, so it
  does more work than the others).

physml's result is checked against libigl's (max abs difference) before timing.

Solve (``--parts poisson``): the screened Poisson system $(K + \sigma M)u = M\mathbf 1$,
$\sigma$ = ``SHIFT`` (small, so the Laplacian dominates and the conditioning grows as $h^{-2}$),
of the same sphere (SPD, the matrices physml assembles), every side to the same relative residual
``RTOL`` = 1e-8 on the same matrix: physml's Warp CG (:func:`physml.solvers.linalg.cg`) with a
Jacobi preconditioner against ``scipy.sparse.linalg.cg`` with the same one (the ratio of their
times per iteration is the figure that compares the two CGs; physml's solve reuses the
workspace it keeps on the operator, as in a time loop, and ``first solve`` times it as on a new
operator, its vectors allocated and its launches packed), and physml's CG with pyamg's
smoothed-aggregation V-cycle against ``scipy.sparse.linalg.cg`` with the same V-cycle, hierarchy
set-up included on both sides (iterations and the residual reached are reported).

Geodesic (``--parts geodesic``): distance from vertex 0 by ``heat_geodesic`` against
potpourri3d's ``MeshHeatMethodDistanceSolver`` (setup included on both sides), each compared
with the exact great-circle distance.

Medians with the min and max (of ``REPEATS`` timings, ``SHORT_REPEATS`` for solves below 1e5
vertices) are written as JSON (thread counts and load average included) with
a log-log plot per part (``<out stem>_<part>.png``; a side whose geodesic is wrong, its error
over ``WRONG_ANSWER_RATIO`` times physml's, is ringed there). Timings are reported, never
asserted. Run from the repository root::

    python benchmarks/mesh.py [--levels 5 6 7 8] [--parts assembly poisson geodesic]
                              [--out benchmarks/results/mesh.json] [--keep]
    python benchmarks/mesh.py --plot-only benchmarks/results/mesh.json

``--plot-only REPORT`` redraws the figures from the report alone, measuring nothing, with the
same drawing as a run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import warp as wp
from _common import at_least, legend_beside, load_average, provenance, read_report, summary

import physml
from physml.solvers.linalg import CsrOperator, Jacobi, SmoothedAggregationAMG, cg, csr_from_scipy
from physml.solvers.mesh import (
    Mesh,
    cotan_laplacian,
    heat_geodesic,
    icosphere,
    mass_matrix,
    stiffness_matrix,
    to_scipy,
)

REPEATS = 3
SHORT_REPEATS = 15
SHIFT = 1e-2
RTOL = 1e-8
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "mesh.json"


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


PEERS_NEEDED = {"assembly": ("igl", "robust_laplacian")}
"""The peers a part is a comparison with: without them it is skipped."""


def bench_assembly(level: int) -> dict:
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
    times = _alternate(sides)
    return {
        "level": level, "vertices": len(V), "faces": len(F),
        "max_abs_difference_vs_libigl": float(difference), "seconds": _stats(times),
        "ratio_libigl_over_physml_cold": statistics.median(times["libigl"])
        / statistics.median(times["physml cold"]),
        "ratio_libigl_over_physml_warm": statistics.median(times["libigl"])
        / statistics.median(times["physml warm"]),
    }


def bench_poisson(level: int) -> dict:
    sphere = icosphere(level)
    A = (to_scipy(stiffness_matrix(sphere)) + SHIFT * to_scipy(mass_matrix(sphere))).tocsr()
    b = to_scipy(mass_matrix(sphere)) @ np.ones(sphere.n_vertices)
    op = CsrOperator(csr_from_scipy(A, wp.float64, "cpu"))
    b_warp = wp.array(b, dtype=wp.float64, device="cpu")
    reached: dict[str, dict] = {}

    def record(name: str, u: np.ndarray, iterations: int) -> None:
        reached[name] = {"iterations": iterations,
                         "residual": float(np.linalg.norm(b - A @ u) / np.linalg.norm(b))}

    def scipy_cg(name: str, preconditioner) -> None:
        iterations = []
        u, _ = spla.cg(A, b, rtol=RTOL, M=preconditioner, callback=lambda _: iterations.append(1))
        record(name, u, len(iterations))

    # the AMG side solves with an operator of its own: an operator keeps the workspace of its
    # last preconditioner only, so sharing one would rebuild the Jacobi side's every time
    amg_op = CsrOperator(op.matrix)

    def physml_cg(name: str, preconditioner, first: bool = False, on=op) -> None:
        if first:  # as on a new operator: the solve's workspace is built and its launches packed
            on.__dict__.pop("_krylov_workspaces", None)
        result = cg(on, b_warp, preconditioner=preconditioner, rtol=RTOL)
        record(name, result.x.numpy(), result.iterations)

    jacobi, physml_jacobi = sp.diags(1.0 / A.diagonal()), Jacobi(op)  # built outside the timing
    sides = {"physml CG + Jacobi": lambda: physml_cg("physml CG + Jacobi", physml_jacobi),
             "physml CG + Jacobi, first solve": lambda: physml_cg(
                 "physml CG + Jacobi, first solve", physml_jacobi, first=True),
             "scipy CG + Jacobi": lambda: scipy_cg("scipy CG + Jacobi", jacobi),
             "physml AMG-CG (setup included)": lambda: physml_cg(
                 "physml AMG-CG (setup included)", SmoothedAggregationAMG(amg_op), on=amg_op)}
    if importlib.util.find_spec("pyamg"):
        import pyamg

        def amg() -> None:
            ml = pyamg.smoothed_aggregation_solver(A)
            scipy_cg("pyamg AMG-CG (setup included)", ml.aspreconditioner())

        sides["pyamg AMG-CG (setup included)"] = amg
    # solves of a few milliseconds are timed more often: their spread is larger
    seconds = _stats(_alternate(sides, SHORT_REPEATS if sphere.n_vertices < 1e5 else REPEATS))
    jacobi_sides = ("physml CG + Jacobi", "physml CG + Jacobi, first solve", "scipy CG + Jacobi")
    per_iteration = {name: seconds[name]["median"] / reached[name]["iterations"]
                     for name in jacobi_sides}
    return {"level": level, "vertices": sphere.n_vertices, "nnz": A.nnz, "seconds": seconds,
            "reached": reached, "seconds_per_iteration": per_iteration,
            "ratio_physml_over_scipy_per_iteration":
                per_iteration["physml CG + Jacobi"] / per_iteration["scipy CG + Jacobi"],
            "ratio_physml_first_solve_over_scipy_per_iteration":
                per_iteration["physml CG + Jacobi, first solve"]
                / per_iteration["scipy CG + Jacobi"]}


def bench_geodesic(level: int) -> dict:
    sphere = icosphere(level)
    exact = np.arccos(np.clip(sphere.points @ sphere.points[0], -1.0, 1.0))
    errors: dict[str, float] = {}

    def ours() -> None:  # a new mesh each time: nothing cached, as the peer's new solver
        fresh = Mesh(sphere.points, sphere.cells, check=False)
        errors["physml heat_geodesic"] = float(np.abs(heat_geodesic(fresh, 0) - exact).max())

    sides = {"physml heat_geodesic": ours}
    if importlib.util.find_spec("potpourri3d"):
        import potpourri3d

        def peer() -> None:
            solver = potpourri3d.MeshHeatMethodDistanceSolver(sphere.points, sphere.cells)
            errors["potpourri3d"] = float(np.abs(solver.compute_distance(0) - exact).max())

        sides["potpourri3d"] = peer
    return {"level": level, "vertices": sphere.n_vertices,
            "seconds": _stats(_alternate(sides)), "max_error_vs_great_circle": errors}


def _alternate(sides: dict, repeats: int = REPEATS) -> dict[str, list[float]]:
    """``repeats`` timings of each side after one untimed call of each (kernels loaded,
    workspaces built), the sides taking turns in reversed order every other repeat."""
    for fn in sides.values():
        fn()
    times = {name: [] for name in sides}
    for repeat in range(repeats):
        for name in list(sides) if repeat % 2 == 0 else list(sides)[::-1]:
            times[name].append(_time(sides[name]))
    return times


def _stats(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {name: summary(t) for name, t in times.items()}


MARKERS = ("o", "x", "s", "^", "+")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
"""A marker and a line style per side, filled markers taking turns with crossed ones, so that
sides whose timings coincide stay visible."""

WRONG_ANSWER_RATIO = 10.0
"""A side's geodesic counts as a wrong answer where its max error against the great circle
exceeds this many times physml's on the same sphere."""


def wrong_answers(record: dict) -> set[str]:
    """The sides of a geodesic record whose max error against the great circle exceeds
    ``WRONG_ANSWER_RATIO`` times physml's (none in the other parts' records)."""
    errors = record.get("max_error_vs_great_circle", {})
    ours = errors.get("physml heat_geodesic")
    return {name for name, error in errors.items()
            if ours is not None and error > WRONG_ANSWER_RATIO * ours}


def plot(results: list[dict], path: Path, title: str) -> None:
    """Seconds (median, min-max) against the vertices, a marker and line style per side, the
    legend beside the axes; a wrong answer (:func:`wrong_answers`) is ringed, with a note of
    its error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 4.5), constrained_layout=True)
    n = np.array([r["vertices"] for r in results])
    notes = 0
    for k, name in enumerate(results[0]["seconds"]):
        med = np.array([r["seconds"][name]["median"] for r in results])
        lo = med - np.array([r["seconds"][name]["min"] for r in results])
        hi = np.array([r["seconds"][name]["max"] for r in results]) - med
        line = ax.errorbar(n, med, yerr=[lo, hi], marker=MARKERS[k % len(MARKERS)], ms=7,
                           linestyle=LINE_STYLES[k % len(LINE_STYLES)], capsize=3, label=name)
        color = line.lines[0].get_color()
        for r, x, y in zip(results, n, med):
            if name not in wrong_answers(r):
                continue
            errors = r["max_error_vs_great_circle"]
            ax.plot(x, y, "o", ms=16, mfc="none", mec=color, mew=1.5)
            # top left, where the timings, growing with the vertices, leave room
            ax.annotate(f"ringed: {name}'s answer is wrong, max error {errors[name]:.3g}\n"
                        f"against physml's {errors['physml heat_geodesic']:.2g} (over "
                        f"{WRONG_ANSWER_RATIO:g}x)", (x, y), xytext=(0.03, 0.96 - 0.12 * notes),
                        textcoords="axes fraction", va="top", fontsize=8,
                        arrowprops={"arrowstyle": "->", "color": color})
            notes += 1
    ax.set(xscale="log", yscale="log", xlabel="vertices", ylabel="seconds (median, min-max)",
           title=title)
    legend_beside(ax, fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_report(report: dict, out: Path) -> None:
    """A figure per part in ``report`` (the report written to ``out``), each beside it as
    ``<out stem>_<part>.png``."""
    for part, (_, title) in PARTS.items():
        if part in report:
            plot(report[part], out.with_name(f"{out.stem}_{part}.png"), title)


PARTS = {
    "assembly": (bench_assembly, "cotangent Laplacian assembly, CPU"),
    "poisson": (bench_poisson, "(K + 0.01 M) u = M 1 on a sphere, to 1e-8, CPU"),
    "geodesic": (bench_geodesic, "heat-method geodesic from one vertex, CPU"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=at_least(0), nargs="+", default=[5, 6, 7, 8])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true",
                        help="keep the parts already in --out that this run does not measure")
    parser.add_argument("--plot-only", type=Path, default=None, metavar="REPORT",
                        help="redraw REPORT's figures from it; no run")
    args = parser.parse_args()
    if args.plot_only is not None:
        plot_report(read_report(parser, args.plot_only, *PARTS), args.plot_only)
        print(f"wrote a PNG per part beside {args.plot_only}")
        return
    wp.config.log_level = wp.LOG_ERROR
    wp.init()
    heat_geodesic(icosphere(1), 0)  # compile the kernels outside the timings
    report = {
        "benchmark": "mesh operators and solves (float64, CPU)",
        "physml": physml.__version__, "warp": wp.__version__,
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "threads": {"warp_cpu": 1, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "repeats": REPEATS, "load_average_before": load_average(), "provenance": provenance(),
    }
    if args.keep and args.out.exists():  # the parts not measured now stay as they were
        kept = json.loads(args.out.read_text())
        report = {**{k: v for k, v in kept.items() if k.partition("_")[0] in PARTS}, **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        bench, title = PARTS[part]
        missing = [m for m in PEERS_NEEDED.get(part, ()) if not importlib.util.find_spec(m)]
        if missing:  # the part is a comparison with them
            print(f"{part}: skipped, {', '.join(missing)} not installed "
                  f"(pip install -e '.[bench]')", flush=True)
            continue
        report[f"{part}_load_average_before"] = load_average()
        report[f"{part}_provenance"] = provenance()
        results = []
        for level in args.levels:
            results.append(bench(level))
            r = results[-1]
            line = ", ".join(f"{k} {v['median']:.4f}s" for k, v in r["seconds"].items())
            if "reached" in r:
                counts = ", ".join(f"{k} {v['iterations']}" for k, v in r["reached"].items())
                line += f"; iterations: {counts}"
            print(f"{part} {r['vertices']:>9} vertices: {line}", flush=True)
        report[part] = results
        plot(results, args.out.with_name(f"{args.out.stem}_{part}.png"), title)
    report["load_average"] = load_average()
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} and a PNG per part beside it")


if __name__ == "__main__":
    main()
