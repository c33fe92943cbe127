"""Helmholtz with and without learning-rate annealing (Wang, Teng & Perdikaris 2021, Sec. 5.1).

Trains ``cases/helmholtz.yaml`` ($\\Delta u + u = q$ on $[-1,1]^2$, $a_1 = 1$, $a_2 = 4$; soft
boundary conditions summed over the four edges, inputs standardised; 40,000 Adam steps on
fresh batches of 128 residual points and 128 points per edge) twice from the same seed:
with fixed unit loss weights and with learning-rate annealing. Reports the relative L2 errors
against the exact solution and their ratio (the paper: 1.81e-1 plain, 1.27e-2 annealed), as
JSON. Run from the repository root (about 5 minutes on two CPU cores)::

    python benchmarks/helmholtz.py [--steps 40000] [--out benchmarks/results/helmholtz.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import at_least, provenance

from physml.cases.pinn import build_trainer
from physml.cases.registry import load_case
from physml.devices import Stopwatch

CASE = Path(__file__).parents[1] / "cases" / "helmholtz.yaml"


def train(balancer: str, steps: int) -> dict:
    case = load_case(CASE, [f"training.balancer.kind={balancer}", f"training.adam.steps={steps}"])
    trainer = build_trainer(case)
    with Stopwatch(case.device) as watch:
        trainer.fit()
    result = {**trainer.evaluate(), "wall_s": watch.seconds,
              "final_weights": trainer.history[-1]["weights"]}
    print(f"{balancer:>9}: relative L2 {result['rel_l2']:.3e} in {result['wall_s']:.0f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=at_least(1), default=40000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/helmholtz.json"))
    args = parser.parse_args()
    fixed, annealed = train("fixed", args.steps), train("annealing", args.steps)
    result = {"steps": args.steps, "fixed": fixed, "annealing": annealed,
              "ratio_fixed_over_annealed": fixed["rel_l2"] / annealed["rel_l2"],
              "paper": {"fixed": 1.81e-1, "annealing": 1.27e-2}, "provenance": provenance()}
    print(f"fixed / annealed error ratio: {result['ratio_fixed_over_annealed']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
