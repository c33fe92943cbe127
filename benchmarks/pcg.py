r"""Preconditioned CG on held-out systems: learned preconditioners against the classical ones.

Systems: the ``poisson_grid`` family of :mod:`physml.datasets.linear_systems` (5-point
$-\nabla\cdot(k\nabla u) = f$, $k = e^{g}$, g a smooth Gaussian field of correlation length 0.1)
on $m\times m$ grids, m = 64 ... 1024, and optionally a mesh family (``--mesh-family``:
``heat_mesh``, implicit heat steps on Gmsh discs, by default; ``wave_mesh``; ``poisson_tet``,
3-D Poisson on tetrahedra; edge length 1/size, unknowns numbered by reverse Cuthill–McKee,
or as Gmsh left them with ``--mesh-ordering mesher``);
every system from seeds the training never saw. ``--sizes`` with no value leaves the grids out.
One run times every preconditioner on the same matrices and right-hand sides, float64, on
``--device`` (the CPU by default; pyamg's hierarchies stay on the host):
Jacobi, IC(0) and FSAI (ours, Warp), pyamg smoothed-aggregation and Ruge–Stüben AMG (one
V-cycle, via the linear-algebra layer), and the learned $L L^T$ and $G^T G$ factors
(``physml.preconditioners``), all through the same :func:`~physml.solvers.linalg.cg` to
$\|r\| \le \text{rtol}\,\|b\|$ for rtol = 1e-6 and 1e-8. With ``--smoother-steps N`` (or
``--load-smoother FILE``) the grids also get ``learned_amg``: RS-AMG whose finest-level smoother
is a $G^T G$ network trained on the two-grid loss (:mod:`physml.preconditioners.smoother`,
N steps on ``--smoother-samples`` systems of the training size, saved as
``REPORT_poisson_grid_smoother.pt`` beside the report whose models the run uses), and
``learned_amg_one_thread``, the same smoother with its set-up and sparse products on one host
thread (``learned_amg``, on all the host's cores, computes G beside pyamg's hierarchy from 2^14
rows and splits the products in row blocks from 2^18 rows: pyamg's own set-up and
Gauss–Seidel run on one).

Per size and preconditioner: iterations, set-up (IC(0)/FSAI factorisation, AMG hierarchy, or
network inference — native on the CPU, :mod:`physml.solvers.linalg.factor_network` — each
including its pattern analysis, and the CG workspace: its vectors and recorded launches,
:func:`~physml.solvers.linalg.prepare`, so that every tolerance's solve is timed alone),
solve and total wall-clock, and the
cost of 10 right-hand sides with one set-up (set-up + 10 × solve). The sides alternate, in
reversed order every other repeat (medians, min and max); the largest sizes run fewer repeats
(recorded). The learned model is trained first on systems of ``--train-size`` (the grids; a mesh
family's smallest ``--mesh-sizes``; 20–35 s at the default width, one PyTorch thread) or loaded
with ``--load``, whose report gives the size they were trained at; the refinement sweep reports
iterations against n, and the iterations on systems with twice the training unknowns (side
× √2, or ∛2 on tetrahedra, always added to the sizes) and with twice the training side,
against those at the training size.
Warp runs a CPU launch on one thread; PyTorch inference uses ``--threads``; the learned
factors' native forward runs on the host's cores (``threads="auto"``: from
``ROWS_PER_PART`` rows a core), and the Cholesky form is timed a second time with its forward
on one thread (``learned_cholesky_one_thread``). The machine is a shared 2-vCPU VM: the load
average before and after is recorded. Timings are never asserted.

Run from the repository root::

    python benchmarks/pcg.py [--sizes 64 128 256 512 1024] [--mesh-sizes 20 40 80 160 320]
                             [--repeats 7] [--device cuda] [--out FILE]
    python benchmarks/pcg.py --sizes --mesh-family poisson_tet --mesh-sizes 12 16 24 32 48 \
                             --out benchmarks/results/pcg_tet.json
    python benchmarks/pcg.py --sizes 32 64 128 256 512 1024 --smoother-steps 400 \
                             --load benchmarks/results/pcg.json \
                             --out benchmarks/results/pcg_smoother.json
    python benchmarks/pcg.py --plot-only benchmarks/results/pcg.json

The figure (the report's name with ``.png``) has a row per family the report holds;
``--plot-only REPORT`` redraws it from the report alone, measuring nothing, with the same
drawing as a run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import matplotlib
import numpy as np
import pyamg
import scipy
import torch
import warp as wp
from _common import (
    at_least,
    check_device,
    legend_beside,
    load_average,
    provenance,
    read_report,
    summary,
)

import physml
from physml.datasets.linear_systems import LinearSystemSpec, make_system
from physml.devices import require_device
from physml.preconditioners import (
    FactorModel,
    LearnedPreconditioner,
    LearnedSmootherAMG,
    fit,
    fit_smoother,
    mean_iterations,
    smoother_system,
    training_system,
    two_grid_rate,
)
from physml.preconditioners.smoother import OVERLAP_ROWS
from physml.solvers.host_threads import available_cores
from physml.solvers.linalg import PRECONDITIONERS, CsrOperator, cg, csr_from_scipy, prepare
from physml.solvers.linalg.factor_network import ROWS_PER_PART
from physml.solvers.linalg.row_blocks import ROWS_PER_THREAD

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

RTOLS = (1e-6, 1e-8)
RIGHT_HAND_SIDES = 10
HELD_OUT_SEED = 100_000
RESULTS = Path(__file__).resolve().parent / "results"
CLASSICAL = ("jacobi", "ic0", "fsai", "amg_sa", "amg_rs")
KINDS = ("cholesky", "sparse_inverse")  # the learned factors, L L^T and G^T G


def system_spec(family: str, size: int, samples: int, ordering: str | None) -> LinearSystemSpec:
    """The spec of ``family`` at ``size``; ``ordering`` numbers a mesh family's unknowns."""
    return LinearSystemSpec(systems=family, size=size, samples=samples,
                            ordering=None if family == "poisson_grid" else ordering)


def train_model(family: str, size: int, kind: str, steps: int, samples: int, width: int,
                message_steps: int, ordering: str | None, seed: int
                ) -> tuple[LearnedPreconditioner, dict]:
    """Fit a model on ``samples`` systems of ``family`` at ``size`` (``seed``: the initial
    weights and the mini-batches); returns it and a record."""
    spec = system_spec(family, size, samples, ordering)
    systems = [make_system(spec, k) for k in range(samples)]
    data = [training_system(s.matrix, s.x, s.b) for s in systems]
    torch.manual_seed(seed)
    model = FactorModel(kind, width=width, steps=message_steps)
    start = time.perf_counter()
    history = fit(model, data, loss="combined", steps=steps, learning_rate=3e-3, batch_size=4,
                  seed=seed)
    return LearnedPreconditioner(model), {
        "family": family, "size": size, "kind": kind, "samples": samples, "steps": steps,
        "width": width, "message_passing_steps": message_steps, "seed": seed,
        "loss": "combined", "seconds": time.perf_counter() - start,
        "loss_first_20_mean": float(np.mean(history[:20])),
        "loss_last_20_mean": float(np.mean(history[-20:])),
    }


def train_smoother(family: str, size: int, steps: int, samples: int, width: int,
                   message_steps: int, seed: int) -> tuple[LearnedSmootherAMG, dict]:
    """Fit a finest-level smoother (two-grid loss) on ``samples`` systems of ``family`` at
    ``size``; returns it and a record with its two-grid rate on the held-out system there."""
    spec = system_spec(family, size, samples, None)
    data = [smoother_system(make_system(spec, k).matrix) for k in range(samples)]
    torch.manual_seed(seed)
    model = FactorModel("sparse_inverse", width=width, steps=message_steps)
    start = time.perf_counter()
    history = fit_smoother(model, data, steps=steps, learning_rate=3e-3, batch_size=4, seed=seed)
    seconds = time.perf_counter() - start
    held_out = make_system(system_spec(family, size, 1, None), HELD_OUT_SEED + size)
    return LearnedSmootherAMG(model.eval()), {
        "family": family, "size": size, "kind": "sparse_inverse", "samples": samples,
        "steps": steps, "width": width, "message_passing_steps": message_steps, "seed": seed,
        "loss": "two_grid", "seconds": seconds, "loss_first_20_mean": float(np.mean(history[:20])),
        "loss_last_20_mean": float(np.mean(history[-20:])),
        "two_grid_rate_held_out": two_grid_rate(model, smoother_system(held_out.matrix)),
    }


def time_side(factory, op: CsrOperator, b: wp.array, derive: bool) -> dict:
    """Set-up, then one solve per tolerance (times in seconds, iterations, residuals); with
    ``derive``, one solve to the tightest tolerance only, the looser ones read off its history:
    the same iterates, so the iterations are exact and the time is the solve's pro rata."""
    start = time.perf_counter()
    M = factory(op)
    prepare(op, b, preconditioner=M)  # the solve's vectors and recorded launches
    wp.synchronize_device(op.device)
    setup = time.perf_counter() - start
    out = {"setup_s": setup}
    for rtol in sorted(RTOLS) if derive else RTOLS:
        if derive and rtol > min(RTOLS):
            seconds, iterations, residuals = out[min(RTOLS)]
            k = int(np.argmax(residuals <= rtol * residuals[0]))
            out[rtol] = (seconds * k / iterations, k, residuals[: k + 1])
            continue
        start = time.perf_counter()
        result = cg(op, b, preconditioner=M, rtol=rtol, maxiter=20_000)
        wp.synchronize_device(op.device)
        out[rtol] = (time.perf_counter() - start, result.iterations, result.residuals)
    return out


def case(family: str, size: int, factories: dict, repeats: int, derive: bool,
         keep_residuals: bool, device: str, ordering: str | None) -> dict:
    """Every side on one held-out system, alternated ``repeats`` times; the residual histories
    are kept where ``keep_residuals`` (the plotted size)."""
    system = make_system(system_spec(family, size, 1, ordering), HELD_OUT_SEED + size)
    op = CsrOperator(csr_from_scipy(system.matrix, wp.float64, device))
    b = wp.array(system.b, dtype=wp.float64, device=device)
    runs: dict[str, list[dict]] = {name: [] for name in factories}
    order = list(factories)
    for repeat in range(repeats):
        for name in order if repeat % 2 == 0 else order[::-1]:
            runs[name].append(time_side(factories[name], op, b, derive))
    sides = {}
    for name, records in runs.items():
        setup = [r["setup_s"] for r in records]
        side = {"setup_s": summary(setup)}
        for rtol in RTOLS:
            solve = [r[rtol][0] for r in records]
            total = [s + t for s, t in zip(setup, solve)]
            many = [s + RIGHT_HAND_SIDES * t for s, t in zip(setup, solve)]
            side[f"rtol={rtol:g}"] = {
                "iterations": records[0][rtol][1],
                "solve_s": summary(solve),
                "total_s": summary(total),
                f"setup_plus_{RIGHT_HAND_SIDES}_solves_s": summary(many),
            }
            if keep_residuals:
                side[f"rtol={rtol:g}"]["residuals"] = (records[0][rtol][2]
                                                       / records[0][rtol][2][0]).tolist()
        sides[name] = side
    row = "  ".join(f"{k}: {v['rtol=1e-08']['iterations']} it "
                    f"{v['setup_s']['median']:.2f}+{v['rtol=1e-08']['solve_s']['median']:.2f} s"
                    for k, v in sides.items())
    print(f"{family} {size}: n={op.shape[0]}  {row}", flush=True)
    return {"family": family, "size": size, "n": op.shape[0], "nnz": int(system.matrix.nnz),
            "repeats": repeats, "looser_rtol_derived": derive, "sides": sides}


def ratios(result: dict, learned: str) -> dict:
    """Learned against IC(0) and RS-AMG, per tolerance (< 1: the learned side is ahead;
    a side left out at this size has no ratios)."""
    out = {}
    many = f"setup_plus_{RIGHT_HAND_SIDES}_solves_s"
    for rtol in RTOLS:
        key = f"rtol={rtol:g}"
        side = {name: s[key] for name, s in result["sides"].items()}
        ours = side[learned]
        out[key] = {}
        for peer in ("ic0", "amg_rs"):
            if peer not in side:
                continue
            if peer == "ic0":
                out[key]["iterations_vs_ic0"] = ours["iterations"] / side["ic0"]["iterations"]
            out[key] |= {
                f"total_vs_{peer}": ours["total_s"]["median"] / side[peer]["total_s"]["median"],
                f"ten_rhs_vs_{peer}": ours[many]["median"] / side[peer][many]["median"],
            }
    return out


def plot(results: list[dict], path: Path) -> None:
    """A row per family in ``results``: residual against iteration and against wall-clock at
    twice the training size (the size whose residuals are kept; empty panels if it was not
    run), and iterations against n (rtol 1e-8), the legend beside the row."""
    families = list(dict.fromkeys(r["family"] for r in results))
    fig, rows = plt.subplots(len(families), 3, figsize=(16.5, 4.2 * len(families)),
                             squeeze=False, constrained_layout=True)
    for family, axes in zip(families, rows):
        grid = [r for r in results if r["family"] == family]
        kept = [r for r in grid if "residuals" in next(iter(r["sides"].values()))["rtol=1e-08"]]
        shown = kept[0] if kept else grid[-1]
        for name, side in (shown["sides"].items() if kept else ()):
            s = side["rtol=1e-08"]
            residuals = np.asarray(s["residuals"])
            clock = side["setup_s"]["median"] + s["solve_s"]["median"] * np.arange(
                residuals.size) / max(1, residuals.size - 1)
            axes[0].semilogy(residuals, label=name)
            axes[1].semilogy(clock, residuals, label=name)
        for name in shown["sides"]:
            points = [(r["n"], r["sides"][name]["rtol=1e-08"]["iterations"]) for r in grid
                      if name in r["sides"]]
            axes[2].loglog(*zip(*points), "o-", label=name)
        axes[0].set(xlabel="iteration", ylabel="||r|| / ||r0||",
                    title=f"{family} {shown['size']}: residual vs iteration")
        axes[1].set(xlabel="wall-clock incl. set-up [s]", title="residual vs wall-clock")
        axes[2].set(xlabel="unknowns n", ylabel="iterations to 1e-8",
                    title=f"{family}: refinement sweep")
        _label_unknowns(axes[2], [r["n"] for r in grid])
        for ax in axes:
            ax.grid(True, which="both", alpha=0.3)
        legend_beside(axes[2], fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _label_unknowns(ax, n: list[int]) -> None:
    """Label the log n axis at 1, 2 and 5 x 10^k where ``n`` spans under two decades, else at
    the decades only, and leave the minor ticks unlabelled (on a short axis matplotlib labels
    every one, and 2, 3 and 4 x 10^3 run into each other)."""
    subs = (1.0, 2.0, 5.0) if max(n) < 100 * min(n) else (1.0,)
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=subs))
    ax.xaxis.set_major_formatter(ticker.LogFormatterSciNotation(
        labelOnlyBase=False, minor_thresholds=(np.inf, np.inf)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=at_least(3), nargs="*",
                        default=[32, 64, 128, 256, 512, 1024],
                        help="poisson_grid sides (none: no grids)")
    parser.add_argument("--mesh-sizes", type=at_least(3), nargs="*", default=[],
                        help="mesh sizes (1/edge length) to add, with their own model")
    parser.add_argument("--mesh-family", choices=["heat_mesh", "wave_mesh", "poisson_tet"],
                        default="heat_mesh")
    parser.add_argument("--mesh-ordering", choices=["rcm", "mesher"], default="rcm",
                        help="numbering of the meshes' unknowns (mesher: Gmsh's)")
    parser.add_argument("--train-size", type=at_least(3), default=None,
                        help="grid side the models are trained at (default 32, or the loaded "
                             "models'; a mesh family trains at its smallest --mesh-sizes)")
    parser.add_argument("--train-steps", type=at_least(1), default=1600)
    parser.add_argument("--train-samples", type=at_least(1), default=32)
    # the smallest network that still halves IC(0)'s iterations on the grids: its inference
    # is what the set-up costs, and the set-up decides the total time on small systems
    parser.add_argument("--width", type=at_least(1), default=4, help="network width H")
    parser.add_argument("--message-steps", type=at_least(0), default=1,
                        help="message-passing steps K")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--large-repeats", type=at_least(1), default=1,
                        help="repeats at sizes >= 512, where the looser tolerance is also read "
                             "off the tighter solve")
    parser.add_argument("--skip-largest", nargs="*", default=["jacobi", "fsai"],
                        help="preconditioners left out at sizes >= 1024 (the slowest ones)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the networks' initial weights and mini-batches")
    parser.add_argument("--threads", type=at_least(1), default=1,
                        help="PyTorch threads (inference)")
    parser.add_argument("--device", default="cpu",
                        help="Warp device of the systems and preconditioners (cpu, cuda, cuda:N)")
    parser.add_argument("--load", type=Path, default=None,
                        help="reuse the models saved beside this earlier report (REPORT.json "
                             "-> REPORT_<family>_<kind>.pt) instead of training")
    parser.add_argument("--smoother-steps", type=at_least(0), default=0,
                        help="train a learned finest-level smoother of RS-AMG for the grids "
                             "(side learned_amg) for this many steps (0: no such side)")
    parser.add_argument("--smoother-samples", type=at_least(1), default=24,
                        help="training systems of the smoother")
    parser.add_argument("--load-smoother", type=Path, default=None,
                        help="load the grids' learned smoother from this file instead")
    parser.add_argument("--out", type=Path, default=RESULTS / "pcg.json")
    parser.add_argument("--plot-only", type=Path, default=None, metavar="REPORT",
                        help="redraw REPORT's figure (REPORT.png) from its cases; no run")
    args = parser.parse_args()
    if args.plot_only is not None:
        plot(read_report(parser, args.plot_only, "generalisation")["cases"],
             args.plot_only.with_suffix(".png"))
        print(f"wrote {args.plot_only.with_suffix('.png')}")
        return
    if not args.sizes and not args.mesh_sizes:
        parser.error("nothing to run: give --sizes, --mesh-sizes or both")
    if (args.smoother_steps or args.load_smoother) and not args.sizes:
        parser.error("the learned smoother is for the grids: give --sizes")
    if args.smoother_steps and args.load_smoother:
        parser.error("give --smoother-steps (train) or --load-smoother (load), not both")
    if args.train_size is not None and not args.sizes:
        parser.error("--train-size is the grids' training side: give --sizes too (a mesh "
                     "family trains at its smallest --mesh-sizes)")
    families = [("poisson_grid", args.sizes, args.train_size or 32)] if args.sizes else []
    if args.mesh_sizes:  # first: the meshes' systems are smaller and quicker
        families.insert(0, (args.mesh_family, args.mesh_sizes, min(args.mesh_sizes)))
    if args.load is not None:  # the models' own training size labels the generalisation
        families = [(family, sizes, loaded_training_size(parser, args.load, family))
                    for family, sizes, _ in families]
        if args.train_size not in (None, families[-1][2]):  # the grids, last
            parser.error(f"--train-size {args.train_size}: the grids' models in {args.load} "
                         f"were trained at {families[-1][2]}; leave --train-size out")
    check_device(parser, args.device, require_device)  # before minutes of training
    torch.set_num_threads(args.threads)
    wp.config.quiet = True
    wp.init()
    load_before = load_average()
    training = {}
    results, generalisation = [], {}
    machine = {"processor": platform.processor(), "cpu_count": os.cpu_count(),
               "cpus_usable": available_cores(), "load_average_before": load_before}
    settings = {"rtols": RTOLS, "dtype": "float64", "device": args.device,
                "mesh_ordering": args.mesh_ordering,
                "right_hand_sides": RIGHT_HAND_SIDES, "repeats": args.repeats,
                "large_repeats": args.large_repeats, "skipped_at_largest": args.skip_largest}

    def write_report() -> None:  # after every case, so a long run keeps what it measured
        report = {
            "machine": machine | {"load_average_after": load_average()},
            "threads": {"warp_cpu": 1, "torch": torch.get_num_threads(),
                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
            "versions": {"physml": physml.__version__, "warp": wp.__version__,
                         "scipy": scipy.__version__, "pyamg": pyamg.__version__,
                         "torch": torch.__version__},
            "provenance": provenance(), "settings": settings, "training": training,
            "generalisation": generalisation, "cases": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))

    for family, sizes, train_size in families:
        learned = {}
        for kind in KINDS:
            saved = (args.out if args.load is None else args.load).with_name(
                f"{(args.out if args.load is None else args.load).stem}_{family}_{kind}.pt")
            if args.load is not None:
                if not saved.is_file():
                    parser.error(f"--load {args.load}: no {saved.name} beside it (the model a "
                                 f"run with --out {args.load} saved for {family})")
                model = LearnedPreconditioner.load(saved)
                record = {"loaded": str(saved), "size": train_size}
            else:
                model, record = train_model(family, train_size, kind, args.train_steps,
                                            args.train_samples, args.width,
                                            args.message_steps, args.mesh_ordering,
                                            args.seed)
                model.save(saved)
            training[f"{family}/{kind}"] = record
            learned[model.name] = model
            if kind == "cholesky":  # the same model, its forward on one host thread
                serial = copy.copy(model)
                serial.threads, serial.name = 1, f"{model.name}_one_thread"
                learned[serial.name] = serial
                settings["forward_threads"] = {model.name: model.threads, serial.name: 1,
                                               "cores": available_cores(),
                                               "rows_per_part": ROWS_PER_PART}
            print(f"{family}/{kind}: {record}", flush=True)
        if family == "poisson_grid" and (args.smoother_steps or args.load_smoother):
            report = args.out if args.load is None else args.load
            if args.load_smoother is not None:
                smoother = LearnedSmootherAMG.load(args.load_smoother)
                record = {"loaded": str(args.load_smoother)}
            else:
                smoother, record = train_smoother(family, train_size, args.smoother_steps,
                                                  args.smoother_samples, args.width,
                                                  args.message_steps, args.seed)
                smoother.save(report.with_name(f"{report.stem}_{family}_smoother.pt"))
            training[f"{family}/smoother"] = record
            learned[smoother.name] = smoother
            serial = copy.copy(smoother)  # the same model, its products on one host thread
            serial.threads, serial.name = 1, f"{smoother.name}_one_thread"
            learned[serial.name] = serial
            settings["smoother_threads"] = {smoother.name: smoother.threads, serial.name: 1,
                                            "cores": available_cores(),
                                            "rows_per_thread": ROWS_PER_THREAD,
                                            "overlap_rows": OVERLAP_ROWS}
            print(f"{family}/smoother: {record}", flush=True)
        factories = {name: PRECONDITIONERS[name] for name in CLASSICAL} | learned
        warm = make_system(system_spec(family, train_size, 1, args.mesh_ordering), HELD_OUT_SEED)
        for factory in factories.values():  # warm-up: compile the kernels, load the modules
            mean_iterations(factory, [(warm.matrix, warm.b)], device=args.device)
        for size in sorted(set(sizes) | {twice_the_unknowns(family, train_size)}):
            large = size >= 512
            chosen = {k: f for k, f in factories.items()
                      if not (size >= 1024 and k in args.skip_largest)}
            results.append(case(family, size, chosen, args.large_repeats if large
                                else args.repeats, derive=large,
                                keep_residuals=size == 2 * train_size, device=args.device,
                                ordering=args.mesh_ordering))
            results[-1]["ratios"] = {name: ratios(results[-1], name) for name in learned
                                     if name in chosen}
            generalisation[family] = _generalisation(results, family, train_size,
                                                     list(factories))
            write_report()
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(generalisation, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def loaded_training_size(parser: argparse.ArgumentParser, report: Path, family: str) -> int:
    """The size ``family``'s models saved beside ``report`` were trained at, as its training
    records give it; refused (``parser.error``) where they do not."""
    if not report.is_file():
        parser.error(f"--load {report}: no such report")
    training = json.loads(report.read_text()).get("training", {})
    if not any(f"{family}/{kind}" in training for kind in KINDS):
        parser.error(f"--load {report}: it holds no {family} models (it has "
                     f"{', '.join(sorted(training)) or 'none'}); pick its family with "
                     "--mesh-family, or load a report of this one")
    sizes = {training.get(f"{family}/{kind}", {}).get("size") for kind in KINDS}
    if len(sizes) != 1 or None in sizes:
        parser.error(f"--load {report}: its training records do not give the size {family}'s "
                     "models were trained at (an older report); load a report that does, or "
                     "train them again")
    return sizes.pop()


def _generalisation(results: list[dict], family: str, train_size: int, names: list[str]
                    ) -> dict:
    """Iterations (rtol 1e-8) on systems with twice the training unknowns (side × 2^(1/d),
    :func:`twice_the_unknowns`) and with twice the training side (2^d × the unknowns), each
    over those at the training size."""
    by_size = {r["size"]: r for r in results if r["family"] == family}
    out = {}
    for label, larger in (("twice_the_unknowns", twice_the_unknowns(family, train_size)),
                          ("twice_the_side", 2 * train_size)):
        if train_size not in by_size or larger not in by_size:
            continue
        it = {s: {k: v["rtol=1e-08"]["iterations"] for k, v in by_size[s]["sides"].items()}
              for s in (train_size, larger)}
        n_ratio = by_size[larger]["n"] / by_size[train_size]["n"]
        out[label] = {
            name: {"train_size": it[train_size][name], "larger": it[larger][name],
                   "larger_size": larger, "n_ratio": n_ratio,
                   "growth": it[larger][name] / it[train_size][name]}
            for name in names if name in it[train_size] and name in it[larger]}
    return out


def twice_the_unknowns(family: str, size: int) -> int:
    """The size (grid side or 1/edge length; unknowns ∝ size^d, d = 3 on tetrahedra, else 2)
    with about twice the unknowns."""
    return round(size * 2 ** (1 / (3 if family == "poisson_tet" else 2)))


if __name__ == "__main__":
    main()
