"""Soft, single hard and mixture-of-experts hard constraints side by side in one run (same FNO
base, initialisation, data and budget for all), on 1D diffusion–sorption or 2D Navier–Stokes.

Part ``accuracy``: test relative L2 on held-out initial conditions (Navier–Stokes: of the
vorticity), the interface jump and the seconds per training iteration, plus a figure of the
test error against the iteration for every method. Part ``timing``: one training step (forward
and implicit backward) and one inference of the hard-constraint layer on a fixed FNO, as the
constrained points grow (``points_nx``: cells per space axis, times ``nt`` levels) and as K
goes 1, 2, 4, 8, for independent experts and for interface rows (with the coloured Jacobian
and with one forward product per unknown), with the peak memory of a step (CUDA: the
allocator's; CPU: the growth of the process's peak resident memory) and the speed-up over the
single hard constraint (K = 1) at the same points; each configuration runs in a fresh process.

    python benchmarks/moe.py --variant cpu    # diffusion-sorption 32 x 51, 8/4 samples
    python benchmarks/moe.py --problem navier_stokes --variant cpu   # 16^2 x 9, 8/4 samples
    python benchmarks/moe.py --variant full --device cuda   # PDEBench's 1024 x 101, 4000 steps
    python benchmarks/moe.py --problem navier_stokes --variant full --device cuda  # 64^2 x 64

Methods: ``soft``; ``hard`` (K = 1); ``moe-independent`` (the paper: experts solved apart) and
``moe-interface`` (ours: interface and continuity rows) and ``moe-pou`` (ours: overlapping
experts blended by a partition of unity) for each K in ``--experts``.
``--loss physics`` (default) trains on the residual rows alone, as the paper; ``--loss data``
on the reference trajectories. Results go to JSON (``--out``), written after each method,
with the figures beside it (``.png``: test error against the iteration; ``.timing.png``);
``python benchmarks/moe.py --plot-only REPORT`` redraws them from a report alone, measuring
nothing, with the same drawing as a run.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import math
import multiprocessing
import platform
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from _common import at_least, check_device, load_average, provenance, read_report

from physml.cases.moe import ConstraintSpec
from physml.constraints import Continuity, LevenbergMarquardt, UnconvergedSolveWarning
from physml.devices import Stopwatch, require_torch_device
from physml.fno import most_modes
from physml.train.moe import (
    EVALUATE_EVERY,
    Budget,
    Loss,
    build_model,
    fit,
    initial_conditions,
    problem_rows,
    trajectories,
)

VARIANTS = {
    ("diffusion_sorption", "cpu"): {
        "nx": 32, "nt": 51, "train": 8, "test": 4, "basis": 8, "width": 16, "modes": (8, 8),
        "budget": Budget(iterations=200, lr=3e-3, batch=4),
        "points_nx": [8, 64, 512, 2048]},  # x 51 levels: 4e2 ... 1e5 points
    ("diffusion_sorption", "full"): {
        "nx": 1024, "nt": 101, "train": 512, "test": 100, "basis": 32, "width": 32,
        "modes": (12, 16), "budget": Budget(iterations=4000, lr=1e-3, batch=8),
        "points_nx": [8, 64, 256, 1024]},  # x 101 levels: 8e2 ... 1e5 points
    ("navier_stokes", "cpu"): {
        "nx": 16, "nt": 9, "t_end": 4.0, "train": 8, "test": 4, "basis": 8, "width": 12,
        "modes": (4, 6, 6), "budget": Budget(iterations=400, lr=3e-3, batch=4),
        "points_nx": [16, 32]},  # x 9 levels: 2.3e3, 9.2e3 points
    ("navier_stokes", "full"): {
        "nx": 64, "nt": 64, "t_end": 10.0, "train": 512, "test": 100, "basis": 32,
        "width": 32, "modes": (16, 12, 12), "budget": Budget(iterations=4000, lr=1e-3, batch=8),
        "points_nx": [32, 64, 100], "timing_nt": 10},  # x 10 levels: 1.0e4 ... 1e5 points
}
DEFAULTS = ConstraintSpec()
SOLVER = LevenbergMarquardt(tol=DEFAULTS.tol, max_iter=DEFAULTS.max_iter)  # as a case's
LAYERS = [(Continuity.INDEPENDENT, False), (Continuity.INTERFACE_ROWS, True),
          (Continuity.INTERFACE_ROWS, False),  # interface rows: coloured and dense Jacobians
          (Continuity.PARTITION_OF_UNITY, False)]


def _timed(fn, device: str, at_least: int = 2, seconds: float = 1.0) -> float:
    """The shortest wall time of ``fn()`` (device-synchronised) over ``at_least`` calls, and
    more until ``seconds`` have passed (the first call's one-time set-up is left out by the
    minimum)."""
    times: list[float] = []
    while len(times) < at_least or sum(times) < seconds:
        with Stopwatch(device) as watch:
            fn()
        times.append(watch.seconds)
    return min(times)


def _resident_memory_follows_tensors() -> bool:
    """From now on, every block from 64 KiB up is its own mapping, returned to the system
    when freed, and the free memory held so far is returned too (glibc's ``mallopt`` and
    ``malloc_trim``), so that this process's resident memory follows its live tensors; and
    its peak resident memory is reset to the current value (Linux ``/proc/self/clear_refs``).
    False where either is not possible."""
    try:
        libc = ctypes.CDLL(None)
        if not libc.mallopt(-3, 64 * 1024):  # M_MMAP_THRESHOLD
            return False
        libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except (AttributeError, OSError):
        return False
    return True


def _resident_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def _space(problem: str, nx: int) -> tuple[int, ...]:
    """The space grid of ``nx`` cells per axis."""
    return (nx,) if problem == "diffusion_sorption" else (nx, nx)


def measure(problem: str, v: dict, nx: int, k: int, continuity: Continuity, coloured: bool,
            device: str, threads: int) -> dict:
    """Seconds of one training step and one inference of a hard-constraint layer (the FNO
    included), then the peak memory of one more step: on CUDA the allocator's peak, on the
    CPU the growth of the process's peak resident memory over the step, with the allocator
    returning freed blocks (:func:`_resident_memory_follows_tensors`, set after the timings:
    it slows a step, 1.5x at 2.6e4 points). Meant for a fresh process, so that no earlier
    configuration's memory is counted."""
    torch.set_num_threads(threads)
    # untrained bases leave inner solves unconverged: what is timed, not what is trained
    warnings.simplefilter("ignore", UnconvergedSolveWarning)
    nt, space = v.get("timing_nt", v["nt"]), _space(problem, nx)
    # no more Fourier modes than the timing grid resolves below its Nyquist frequency
    sizes = (nt, *space)
    modes = tuple(min(m, most_modes(n, last=axis == len(sizes) - 1))
                  for axis, (m, n) in enumerate(zip(v["modes"], sizes, strict=True)))
    rows = problem_rows(problem, space, nt, v.get("t_end"))
    u0 = initial_conditions(problem, space, v["budget"].batch).to(device)
    model = build_model("hard", rows, nt, basis=v["basis"], width=v["width"], modes=modes,
                        experts=k, continuity=continuity, solver=SOLVER,
                        coloured=coloured).to(device)

    def step():
        model(u0).square().mean().backward()

    def infer():
        with torch.no_grad():
            model(u0)

    record = {"train_step_s": _timed(step, device), "inference_s": _timed(infer, device)}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        step()
        record["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    elif _resident_memory_follows_tensors():
        before = _resident_mb("VmRSS")
        step()
        record["peak_memory_mb"] = _resident_mb("VmHWM") - before
    return record


def timing(problem: str, v: dict, device: str, experts: list[int]) -> list[dict]:
    """Seconds per training step and inference, and peak memory, against K and the number of
    points; each configuration in a fresh process, one after the other. A configuration the
    layer refuses (experts whose blocks are narrower than the PDE's stencil) is reported and
    left out."""
    configurations = [(nx, k, continuity, coloured) for nx in v["points_nx"]
                      for k in experts if nx % k == 0 and nx // k >= 2
                      for continuity, coloured in LAYERS]
    records = []
    spawn = multiprocessing.get_context("spawn")
    for nx, k, continuity, coloured in configurations:
        record = {"points": math.prod(_space(problem, nx)) * v.get("timing_nt", v["nt"]),
                  "nx": nx, "experts": k, "continuity": continuity.value, "coloured": coloured}
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as fresh:
            try:
                record.update(fresh.submit(measure, problem, v, nx, k, continuity, coloured,
                                           device, torch.get_num_threads()).result())
            except ValueError as refused:
                print(f"skipped nx={nx}, K={k}, {continuity.value}: {refused}", flush=True)
                continue
        records.append(record)
        print(record, flush=True)
    for r in records:
        single = next(s for s in records if s["points"] == r["points"] and s["experts"] == 1
                      and s["continuity"] == r["continuity"] and s["coloured"] == r["coloured"])
        r["train_speedup_vs_single"] = single["train_step_s"] / r["train_step_s"]
        r["inference_speedup_vs_single"] = single["inference_s"] / r["inference_s"]
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=["diffusion_sorption", "navier_stokes"],
                        default="diffusion_sorption")
    parser.add_argument("--variant", choices=["cpu", "full"], default="cpu")
    parser.add_argument("--experts", type=at_least(1), nargs="+", default=[4],
                        help="K of the accuracy part (the timing part takes 1, 2, 4, 8)")
    parser.add_argument("--parts", nargs="+", choices=["accuracy", "timing"],
                        default=["accuracy", "timing"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--loss", choices=[loss.value for loss in Loss], default="physics",
                        help="physics: the paper's residual loss; data: supervised")
    parser.add_argument("--points-nx", type=at_least(2), nargs="+", default=None,
                        help="cells per space axis of the timing part (default: the variant's)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="accuracy part: only these methods (e.g. hard moe-pou-K4)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moe.json"))
    parser.add_argument("--plot-only", type=Path, default=None, metavar="REPORT",
                        help="redraw REPORT's figures from it; no run")
    args = parser.parse_args()
    if args.plot_only is not None:
        plot_report(read_report(parser, args.plot_only, "methods", "timing"), args.plot_only)
        return
    check_device(parser, args.device, require_torch_device)
    v = VARIANTS[args.problem, args.variant]
    if args.points_nx is not None:
        v = {**v, "points_nx": args.points_nx}
    budget = dataclasses.replace(v["budget"], loss=Loss(args.loss))
    results = {"problem": args.problem, "variant": args.variant,
               "load_average": load_average(), "budget": {**dataclasses.asdict(budget),
                                                   "loss": budget.loss.value},
               "machine": platform.processor() or platform.machine(), "device": args.device,
               "threads": torch.get_num_threads(), "provenance": provenance(), "methods": {}}
    if "timing" in args.parts:
        results["timing"] = timing(args.problem, v, args.device, [1, 2, 4, 8])
        _write(args.out, results)
        _plot_timing(results, args.out.with_suffix(".timing.png"))
    if "accuracy" in args.parts:
        accuracy(args.problem, v, budget, args.experts, args.device, results, args.out,
                 args.methods)


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def accuracy(problem: str, v: dict, budget: Budget, experts: list[int], device: str,
             results: dict, out: Path, methods: list[str] | None = None) -> None:
    """Train every method and record its test error, interface jump and time per step; plot
    the test errors against the iteration beside the JSON."""
    space = (v["nx"],) if problem == "diffusion_sorption" else (v["nx"], v["nx"])
    u0, u = (t.to(device) for t in trajectories(problem, space, v["nt"],
                                                v["train"] + v["test"], v.get("t_end")))
    train, test = (u0[: v["train"]], u[: v["train"]]), (u0[v["train"]:], u[v["train"]:])
    rows = problem_rows(problem, space, v["nt"], v.get("t_end"))
    runs = [("soft", "soft", 1, Continuity.INTERFACE_ROWS), ("hard", "hard", 1,
                                                             Continuity.INTERFACE_ROWS)]
    for k in experts:
        runs += [(f"moe-independent-K{k}", "hard", k, Continuity.INDEPENDENT),
                 (f"moe-interface-K{k}", "hard", k, Continuity.INTERFACE_ROWS),
                 (f"moe-pou-K{k}", "hard", k, Continuity.PARTITION_OF_UNITY)]
    unknown = sorted(set(methods or ()) - {name for name, *_ in runs})
    if unknown:
        raise SystemExit(f"--methods: {', '.join(unknown)} match no method; with --experts "
                         f"{' '.join(map(str, experts))} they are {', '.join(n for n, *_ in runs)}")
    for name, method, k, continuity in runs:
        if methods is not None and name not in methods:
            continue
        model = build_model(method, rows, v["nt"], basis=v["basis"], width=v["width"],
                            modes=v["modes"], experts=k, continuity=continuity,
                            solver=SOLVER).to(device)
        results["methods"][name] = fit(model, rows, train, test, budget)
        print(name, {key: val for key, val in results["methods"][name].items()
                     if key not in ("history", "losses")}, flush=True)
        _write(out, results)
        _plot(results, out.with_suffix(".png"))


def plot_report(results: dict, report: Path) -> None:
    """The figures a run draws beside ``report`` from its ``results``: the methods' test errors
    (``report`` with ``.png``) and the timing part's (``.timing.png``), each where it ran."""
    for part, suffix, draw in (("methods", ".png", _plot), ("timing", ".timing.png",
                                                            _plot_timing)):
        if results.get(part):
            draw(results, report.with_suffix(suffix))
            print(f"wrote {report.with_suffix(suffix)}", flush=True)


def _plot(results: dict, path: Path) -> None:
    """Test relative L2 against the iteration, one line per method, the methods drawn named in
    the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4), constrained_layout=True)
    for name, r in results["methods"].items():
        steps = [EVALUATE_EVERY * i for i in range(len(r["history"]))] + [len(r["losses"])]
        jump = r["interface_jump"]  # None for a soft head: no interface to jump across
        ax.semilogy(steps, [*r["history"], r["test_rel_l2"]],
                    label=f"{name}: {r['test_rel_l2']:.3f}"
                    + ("" if jump is None else f", jump {jump:.1e}"))
    ax.set(xlabel="Adam iteration", ylabel="test relative L2")
    ax.set_title(f"{results['problem']} ({results['variant']})\n"
                 + " vs ".join(results["methods"]), fontsize=10)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_timing(results: dict, path: Path) -> None:
    """Seconds per training step (top) and peak memory of a step (bottom) against the
    constrained points, one panel per way of coupling the experts, one line per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = results["timing"]
    memory = all("peak_memory_mb" in r for r in records)
    fig, axes = plt.subplots(2 if memory else 1, len(LAYERS), figsize=(3.2 * len(LAYERS), 5.6),
                             sharex=True, sharey="row", squeeze=False,
                             constrained_layout=True)
    for column, (continuity, coloured) in enumerate(LAYERS):
        layer = [r for r in records if r["continuity"] == continuity.value
                 and r["coloured"] == coloured]
        title = continuity.value.replace("_", " ") + (" (coloured)" if coloured else "")
        for k in sorted({r["experts"] for r in layer}):
            line = sorted((r for r in layer if r["experts"] == k), key=lambda r: r["points"])
            points = [r["points"] for r in line]
            axes[0, column].loglog(points, [r["train_step_s"] for r in line], "o-",
                                   label=f"K = {k}")
            if memory:
                axes[1, column].loglog(points, [r["peak_memory_mb"] for r in line], "o-")
        axes[0, column].set_title(title, fontsize=9)
        axes[-1, column].set_xlabel("constrained points")
    axes[0, 0].set_ylabel("s per training step")
    if memory:
        axes[1, 0].set_ylabel("peak memory of a step [MiB]")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{results['problem']}, variant {results['variant']}, on {results['device']}: "
                 "hard-constraint layers against the points", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
