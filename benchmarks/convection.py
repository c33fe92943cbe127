"""Convection failure modes: PINN against Lagrangian PINN for u_t + beta u_x = 0.

For beta in {10, 20, 30, 40, 50} and three seeds, trains ``cases/convection.yaml`` (a vanilla
PINN with soft initial and periodic conditions, Krishnapriyan et al. 2021) and
``cases/convection_lpinn.yaml`` (the Lagrangian PINN of Mojgani et al.) with the same budget
(network size, collocation points, Adam and L-BFGS steps), and reports the relative L2 error
against the exact solution sin(x - beta t) on a 256 x 101 grid: a JSON table and a PNG of
error against beta. Run from the repository root (about 15 minutes on two CPU cores)::

    python benchmarks/convection.py [--adam 500 --lbfgs 500 --points 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from physml.cases.pinn import build_trainer  # noqa: E402
from physml.cases.registry import load_case  # noqa: E402

CASES = Path(__file__).parents[1] / "cases"
METHODS = {"pinn": CASES / "convection.yaml", "lpinn": CASES / "convection_lpinn.yaml"}
BETAS = (10, 20, 30, 40, 50)
SEEDS = (0, 1, 2)


def train(method: str, beta: float, seed: int, args) -> dict:
    case = load_case(
        METHODS[method],
        [
            f"pde.beta={beta}",
            f"seed={seed}",
            f"training.adam.steps={args.adam}",
            f"training.lbfgs.steps={args.lbfgs}",
            f"training.collocation.points={args.points}",
            f"evaluation.every={args.adam + args.lbfgs}",
        ],
    )
    trainer = build_trainer(case)
    started = time.perf_counter()
    trainer.fit()
    result = {**trainer.evaluate(), "wall_s": time.perf_counter() - started}
    print(
        f"{method:>5} beta={beta:>2} seed={seed}: relative L2 {result['rel_l2']:.2e} "
        f"({result['wall_s']:.0f} s)",
        flush=True,
    )
    return result


def plot(table: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for method, marker in (("pinn", "o"), ("lpinn", "s")):
        errors = np.array([[r["rel_l2"] for r in table[method][str(b)]] for b in BETAS])
        ax.errorbar(
            BETAS,
            np.median(errors, axis=1),
            yerr=[np.median(errors, 1) - errors.min(1), errors.max(1) - np.median(errors, 1)],
            marker=marker,
            capsize=3,
            label=method.upper(),
        )
    ax.set(yscale="log", xlabel="beta", ylabel="relative L2 error (median, min-max of 3 seeds)")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adam", type=int, default=500)
    parser.add_argument("--lbfgs", type=int, default=500)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/convection.json"))
    args = parser.parse_args()
    table = {m: {str(b): [train(m, b, s, args) for s in SEEDS] for b in BETAS} for m in METHODS}
    worst = {m: {b: max(r["rel_l2"] for r in table[m][str(b)]) for b in BETAS} for m in METHODS}
    best_pinn = {b: min(r["rel_l2"] for r in table["pinn"][str(b)]) for b in BETAS}
    summary = {
        "lpinn_max_error": max(worst["lpinn"].values()),
        "lpinn_below_5e-2_at_every_beta": max(worst["lpinn"].values()) <= 5e-2,
        "pinn_min_error_for_beta_ge_30": min(best_pinn[b] for b in BETAS if b >= 30),
        "pinn_at_least_0.5_for_beta_ge_30": min(best_pinn[b] for b in BETAS if b >= 30) >= 0.5,
    }
    budget = {"adam_steps": args.adam, "lbfgs_steps": args.lbfgs, "points": args.points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"budget": budget, "summary": summary, "table": table}, indent=2)
    )
    plot(table, args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
