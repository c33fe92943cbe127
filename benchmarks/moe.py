"""Soft, single hard and mixture-of-experts hard constraints on 1D diffusion–sorption, side by
side in one run (same FNO base, initialisation, data and budget for all).

Part ``accuracy``: test relative L2 on held-out initial conditions, the interface jump and the
seconds per training iteration. Part ``timing``: one training step (forward and implicit
backward) and one inference of the hard-constraint layer on a fixed FNO, as the constrained
points grow (``--points-nx``: cells, times ``nt`` levels) and as K goes 1, 2, 4, 8, for
independent experts and for interface rows, with the peak device memory (CUDA only) and the
speed-up over the single hard constraint (K = 1) at the same points.

    python benchmarks/moe.py --variant cpu    # 32 cells x 51 levels, 8/4 samples, 200 Adam steps
    python benchmarks/moe.py --variant full --device cuda   # PDEBench's 1024 x 101, 4000 steps

Methods: ``soft``; ``hard`` (K = 1); ``moe-independent`` (the paper: experts solved apart) and
``moe-interface`` (ours: interface and continuity rows) for each K in ``--experts``.
``--loss physics`` (default) trains on the residual rows alone, as the paper; ``--loss data``
on the reference trajectories. Results go to JSON (``--out``), written after each method.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import torch

from physml.constraints import Continuity, DiffusionSorptionRows, LevenbergMarquardt
from physml.devices import Stopwatch
from physml.train.moe import T_END, Budget, Loss, build_model, fit, sorption_trajectories

VARIANTS = {
    "cpu": {"nx": 32, "nt": 51, "train": 8, "test": 4, "basis": 8, "width": 16, "modes": (8, 8),
            "budget": Budget(iterations=200, lr=3e-3, batch=4), "points_nx": [16, 32, 64, 128]},
    "full": {"nx": 1024, "nt": 101, "train": 512, "test": 100, "basis": 32, "width": 32,
             "modes": (12, 16), "budget": Budget(iterations=4000, lr=1e-3, batch=8),
             "points_nx": [8, 64, 256, 1024]},  # x 101 levels: 8e2 ... 1e5 points
}
SOLVER = LevenbergMarquardt(tol=1e-6, max_iter=8)


def _timed(fn, device: str, repeats: int = 2) -> float:
    """Best of ``repeats`` wall times of ``fn()`` (device-synchronised)."""
    best = float("inf")
    for _ in range(repeats):
        with Stopwatch(device) as watch:
            fn()
        best = min(best, watch.seconds)
    return best


def timing(v: dict, device: str, experts: list[int]) -> list[dict]:
    """Seconds per training step and inference against K and the number of points."""
    records = []
    for nx in v["points_nx"]:
        rows = DiffusionSorptionRows(nx, T_END / (v["nt"] - 1))
        u0 = torch.linspace(0.02, 0.18, v["budget"].batch, dtype=torch.float64, device=device)
        u0 = u0[:, None].expand(-1, nx).contiguous()
        for k in [e for e in experts if nx % e == 0 and nx // e >= 2]:
            for continuity in Continuity:
                model = build_model("hard", rows, v["nt"], basis=v["basis"], width=v["width"],
                                    modes=v["modes"], experts=k, continuity=continuity,
                                    solver=SOLVER).to(device)
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats(device)

                def step(model=model, u0=u0):
                    model(u0).square().mean().backward()

                def infer(model=model, u0=u0):
                    with torch.no_grad():
                        model(u0)

                record = {"points": nx * v["nt"], "nx": nx, "experts": k,
                          "continuity": continuity.value, "train_step_s": _timed(step, device),
                          "inference_s": _timed(infer, device)}
                if device.startswith("cuda"):
                    record["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
                records.append(record)
                print(record, flush=True)
    for r in records:
        single = next(s for s in records if s["points"] == r["points"] and s["experts"] == 1
                      and s["continuity"] == r["continuity"])
        r["train_speedup_vs_single"] = single["train_step_s"] / r["train_step_s"]
        r["inference_speedup_vs_single"] = single["inference_s"] / r["inference_s"]
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="cpu")
    parser.add_argument("--experts", type=int, nargs="+", default=[4],
                        help="K of the accuracy part (the timing part takes 1, 2, 4, 8)")
    parser.add_argument("--parts", nargs="+", choices=["accuracy", "timing"],
                        default=["accuracy", "timing"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--loss", choices=[loss.value for loss in Loss], default="physics",
                        help="physics: the paper's residual loss; data: supervised")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moe.json"))
    args = parser.parse_args()
    v = VARIANTS[args.variant]
    budget = dataclasses.replace(v["budget"], loss=Loss(args.loss))
    results = {"variant": args.variant, "budget": {**dataclasses.asdict(budget),
                                                   "loss": budget.loss.value},
               "machine": platform.processor() or platform.machine(), "device": args.device,
               "threads": torch.get_num_threads(), "methods": {}}
    if "timing" in args.parts:
        results["timing"] = timing(v, args.device, [1, 2, 4, 8])
        _write(args.out, results)
    if "accuracy" in args.parts:
        accuracy(v, budget, args.experts, args.device, results, args.out)


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def accuracy(v: dict, budget: Budget, experts: list[int], device: str, results: dict,
             out: Path) -> None:
    """Train every method and record its test error, interface jump and time per step."""
    u0, u = (t.to(device) for t in sorption_trajectories(v["nx"], v["nt"],
                                                        v["train"] + v["test"]))
    train, test = (u0[: v["train"]], u[: v["train"]]), (u0[v["train"]:], u[v["train"]:])
    rows = DiffusionSorptionRows(v["nx"], T_END / (v["nt"] - 1))
    runs = [("soft", "soft", 1, Continuity.INTERFACE_ROWS), ("hard", "hard", 1,
                                                             Continuity.INTERFACE_ROWS)]
    for k in experts:
        runs += [(f"moe-independent-K{k}", "hard", k, Continuity.INDEPENDENT),
                 (f"moe-interface-K{k}", "hard", k, Continuity.INTERFACE_ROWS)]
    for name, method, k, continuity in runs:
        model = build_model(method, rows, v["nt"], basis=v["basis"], width=v["width"],
                            modes=v["modes"], experts=k, continuity=continuity,
                            solver=SOLVER).to(device)
        results["methods"][name] = fit(model, rows, train, test, budget)
        print(name, {key: val for key, val in results["methods"][name].items()
                     if key not in ("history", "losses")}, flush=True)
        _write(out, results)


if __name__ == "__main__":
    main()
