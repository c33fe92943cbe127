"""Soft, single hard and mixture-of-experts hard constraints on 1D diffusion–sorption, side by
side in one run: test relative L2 on held-out initial conditions, the interface jump, and the
seconds per training iteration (same FNO base, initialisation, data and budget for all).

Variants::

    python benchmarks/moe.py --variant cpu    # 32 cells x 51 levels, 8/4 samples, 200 Adam steps
    python benchmarks/moe.py --variant full   # PDEBench's 1024 x 101, 4000 steps (a GPU)

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
from physml.train.moe import T_END, Budget, Loss, build_model, fit, sorption_trajectories

VARIANTS = {
    "cpu": {"nx": 32, "nt": 51, "train": 8, "test": 4, "basis": 8, "width": 16, "modes": (8, 8),
            "budget": Budget(iterations=200, lr=3e-3, batch=4)},
    "full": {"nx": 1024, "nt": 101, "train": 512, "test": 100, "basis": 32, "width": 32,
             "modes": (12, 16), "budget": Budget(iterations=4000, lr=1e-3, batch=8)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="cpu")
    parser.add_argument("--experts", type=int, nargs="+", default=[4])
    parser.add_argument("--loss", choices=[loss.value for loss in Loss], default="physics",
                        help="physics: the paper's residual loss; data: supervised")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moe.json"))
    args = parser.parse_args()
    v = VARIANTS[args.variant]
    budget = dataclasses.replace(v["budget"], loss=Loss(args.loss))
    u0, u = sorption_trajectories(v["nx"], v["nt"], v["train"] + v["test"])
    train, test = (u0[: v["train"]], u[: v["train"]]), (u0[v["train"]:], u[v["train"]:])
    rows = DiffusionSorptionRows(v["nx"], T_END / (v["nt"] - 1))
    solver = LevenbergMarquardt(tol=1e-6, max_iter=8)
    runs = [("soft", "soft", 1, Continuity.INTERFACE_ROWS), ("hard", "hard", 1,
                                                             Continuity.INTERFACE_ROWS)]
    for k in args.experts:
        runs += [(f"moe-independent-K{k}", "hard", k, Continuity.INDEPENDENT),
                 (f"moe-interface-K{k}", "hard", k, Continuity.INTERFACE_ROWS)]
    results = {"variant": args.variant, "budget": {**dataclasses.asdict(budget),
                                                   "loss": budget.loss.value},
               "machine": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "methods": {}}
    for name, method, k, continuity in runs:
        model = build_model(method, rows, v["nt"], basis=v["basis"], width=v["width"],
                            modes=v["modes"], experts=k, continuity=continuity, solver=solver)
        results["methods"][name] = fit(model, rows, train, test, budget)
        print(name, {key: val for key, val in results["methods"][name].items()
                     if key != "history"}, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
