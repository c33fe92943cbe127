r"""Convection failure modes: PINN against Lagrangian PINN for u_t + beta u_x = 0.

The Lagrangian PINN differs from the vanilla PINN in three ways: two networks in the
characteristics' frame, the exact initial condition, and the periodic embedding
$(\cos x, \sin x, t)$. The middle method keeps the PINN's frame and one network but takes the
other two, so the table separates them:

* ``pinn``: ``cases/convection.yaml``, soft initial and periodic conditions
  (Krishnapriyan et al. 2021);
* ``pinn_periodic_hard``: the same case with the periodic embedding and $u = u_0 + tN$;
* ``lpinn``: ``cases/convection_lpinn.yaml`` (Mojgani et al.), embedding and exact $u_0$ too.

For each beta (10, 20, 30, 40, 50) and seed (0, 1, 2) each method trains with the same budget
(network size, collocation points, Adam and L-BFGS steps); reported: the relative L2 error
against the exact solution sin(x - beta t) on a 256 x 101 grid and the training wall time
(the trainer's own, CUDA-synchronised), as a JSON table and a PNG of error against beta. Run
from the repository root (about 25 minutes on two CPU cores)::

    python benchmarks/convection.py [--adam 500 --lbfgs 500 --points 2000]
                                    [--betas 10 30 --seeds 0]
    python benchmarks/convection.py --plot-only benchmarks/results/convection.json

``--plot-only REPORT`` redraws the figure (the report's name with ``.png``) from the report
alone, training nothing, with the same drawing as a run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import at_least, provenance, read_report  # noqa: E402

from physml.cases.pinn import build_trainer  # noqa: E402
from physml.cases.registry import load_case  # noqa: E402

CASES = Path(__file__).parents[1] / "cases"
METHODS = {
    "pinn": (CASES / "convection.yaml", []),
    "pinn_periodic_hard": (CASES / "convection.yaml",
                           ["model.periodic_embedding=true", "model.hard_constraints=true"]),
    "lpinn": (CASES / "convection_lpinn.yaml", []),
}
MARKERS = {"pinn": "o", "pinn_periodic_hard": "^", "lpinn": "s"}


def train(method: str, beta: float, seed: int, args) -> dict:
    path, overrides = METHODS[method]
    case = load_case(
        path,
        [
            *overrides,
            f"pde.beta={beta}",
            f"seed={seed}",
            f"training.adam.steps={args.adam}",
            f"training.lbfgs.steps={args.lbfgs}",
            f"training.collocation.points={args.points}",
            f"evaluation.every={args.adam + args.lbfgs}",
        ],
    )
    trainer = build_trainer(case)
    trainer.fit()
    result = {**trainer.evaluate(), "wall_s": trainer.elapsed_s}
    print(
        f"{method:>18} beta={beta:>2} seed={seed}: relative L2 {result['rel_l2']:.2e} "
        f"({result['wall_s']:.0f} s)",
        flush=True,
    )
    return result


def plot(report: dict, path: Path) -> None:
    """Relative L2 error (median, min-max over the seeds) against beta, a line per method, the
    title giving the training budget (steps, points, seeds) from the report."""
    table, budget = report["table"], report["budget"]
    betas = sorted(int(b) for b in table["pinn"])
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for method, marker in MARKERS.items():
        errors = np.array([[r["rel_l2"] for r in table[method][str(b)]] for b in betas])
        ax.errorbar(
            betas,
            np.median(errors, axis=1),
            yerr=[np.median(errors, 1) - errors.min(1), errors.max(1) - np.median(errors, 1)],
            marker=marker,
            capsize=3,
            label=method,
        )
    ax.set(yscale="log", xlabel="beta", ylabel="relative L2 error (median, min-max over seeds)")
    ax.set_title(f"u_t + beta u_x = 0: {budget['adam_steps']} Adam + {budget['lbfgs_steps']} "
                 f"L-BFGS steps,\n{budget['points']} points, {len(budget['seeds'])} seeds",
                 fontsize=10)
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adam", type=at_least(1), default=500)
    parser.add_argument("--lbfgs", type=at_least(1), default=500)
    parser.add_argument("--points", type=at_least(1), default=2000)
    parser.add_argument("--betas", type=int, nargs="+", default=[10, 20, 30, 40, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/convection.json"))
    parser.add_argument("--plot-only", type=Path, default=None, metavar="REPORT",
                        help="redraw REPORT's figure (REPORT.png) from it; no training")
    args = parser.parse_args()
    if args.plot_only is not None:
        plot(read_report(parser, args.plot_only, "table"), args.plot_only.with_suffix(".png"))
        print(f"wrote {args.plot_only.with_suffix('.png')}")
        return
    betas, seeds = args.betas, args.seeds
    table = {m: {str(b): [train(m, b, s, args) for s in seeds] for b in betas} for m in METHODS}
    median = {m: {str(b): float(np.median([r["rel_l2"] for r in table[m][str(b)]]))
                  for b in betas} for m in METHODS}
    worst = {m: max(r["rel_l2"] for b in betas for r in table[m][str(b)]) for m in METHODS}
    summary = {"median_rel_l2": median, "max_rel_l2": worst,
               "lpinn_below_5e-2_at_every_beta": worst["lpinn"] <= 5e-2}
    budget = {"adam_steps": args.adam, "lbfgs_steps": args.lbfgs, "points": args.points,
              "seeds": seeds}
    report = {"provenance": provenance(), "budget": budget, "summary": summary, "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
