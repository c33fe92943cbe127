"""physml against DeepXDE on the Burgers PINN of ``cases/burgers.yaml``, in one run.

Both train the same problem ($u_t + u u_x = \\nu u_{xx}$, $\\nu = 0.01/\\pi$, $u_0 = -\\sin\\pi x$,
hard initial/boundary conditions through the same output transform
$u = -\\sin\\pi x + t(1 - x^2) N(x, t)$) with the same network (tanh MLP, 5 x 32, Xavier-normal),
the same 4000 Sobol collocation points (fixed: no resampling), and the same schedule: Adam at
lr 1e-3, then L-BFGS (torch's, history 50, strong-Wolfe line search; physml takes one iteration
per step, DeepXDE up to 1000 per call). The headline is loss-and-gradient evaluations per
second (one per Adam step; each function evaluation of L-BFGS, its line search included), the
same work in both libraries, where an L-BFGS iteration is not: the two count iterations and
line-search evaluations differently. Also reported: iterations per second, wall time, and the
relative L2 error of each against the Warp solver's reference on the 256 x 101 evaluation
grid. Each library trains ``--repeats`` times, the two alternating (physml first, then DeepXDE
first, ...): the report gives each rate's median, min and max, the ratio of the medians and
the spread of the paired ratios, and every run. Timers synchronise CUDA when it is in use.
DeepXDE (PyTorch backend) is needed only here::

    pip install deepxde
    python benchmarks/pinn_burgers.py [--adam 500] [--lbfgs 5000] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from _common import at_least, provenance, summary

from physml.cases.pinn import build_trainer
from physml.cases.registry import load_case
from physml.devices import Stopwatch

CASE = Path(__file__).parents[1] / "cases" / "burgers.yaml"


def lbfgs_counts(optimizer: torch.optim.LBFGS) -> tuple[int, int]:
    """(iterations, function evaluations) a torch L-BFGS optimiser has made."""
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    return int(state.get("n_iter", 0)), int(state.get("func_evals", 0))


def run_physml(adam: int, lbfgs: int) -> tuple[dict, np.ndarray, object]:
    case = load_case(CASE, [f"training.adam.steps={adam}", f"training.lbfgs.steps={lbfgs}",
                            "training.collocation.resample_every=0"])
    trainer = build_trainer(case)
    evaluations = 0
    losses = trainer.losses

    def counted_losses():
        nonlocal evaluations
        evaluations += 1
        return losses()

    trainer.losses = counted_losses
    with Stopwatch(trainer.device) as adam_clock:
        trainer.fit(until=adam)
    adam_s = adam_clock.seconds
    adam_evaluations, evaluations = evaluations, 0
    with Stopwatch(trainer.device) as lbfgs_clock:
        trainer.fit()  # L-BFGS: repeats of the last evaluation are cached, not counted
    lbfgs_s = lbfgs_clock.seconds
    iterations = lbfgs_counts(trainer.lbfgs)[0]
    result = {"adam_s": adam_s, "lbfgs_s": lbfgs_s, "adam_evaluations": adam_evaluations,
              "lbfgs_iterations": iterations, "lbfgs_function_evaluations": evaluations,
              **trainer.evaluate()}
    return result, trainer.points.cpu().numpy(), trainer


def run_deepxde(points: np.ndarray, trainer, adam: int, lbfgs: int) -> dict:
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde

    problem = trainer.problem
    (a, b), (t0, t1) = problem.bounds
    dde.config.set_random_seed(0)
    geometry = dde.geometry.GeometryXTime(
        dde.geometry.Interval(a, b), dde.geometry.TimeDomain(t0, t1)
    )

    def pde(x, y):
        u_x = dde.grad.jacobian(y, x, i=0, j=0)
        u_t = dde.grad.jacobian(y, x, i=0, j=1)
        u_xx = dde.grad.hessian(y, x, i=0, j=0)
        return u_t + y * u_x - problem.nu * u_xx

    data = dde.data.TimePDE(geometry, pde, [], num_domain=0, anchors=points, num_test=None)
    net = dde.nn.FNN([2] + [32] * 5 + [1], "tanh", "Glorot normal")
    net.apply_output_transform(lambda X, raw: problem.constrain(X, raw))
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    with Stopwatch(trainer.device) as adam_clock:
        model.train(iterations=adam, display_every=max(adam, 1), verbose=0)
    adam_s = adam_clock.seconds
    dde.optimizers.set_LBFGS_options(maxcor=50, maxiter=lbfgs, maxls=25)
    per_call = min(1000, lbfgs)  # DeepXDE's own chunking of L-BFGS iterations per call
    dde.optimizers.config.LBFGS_options.update(
        iter_per_step=per_call, fun_per_step=int(1.25 * per_call)
    )
    model.compile("L-BFGS")
    with Stopwatch(trainer.device) as lbfgs_clock:
        model.train(display_every=max(lbfgs, 1), verbose=0)
    lbfgs_s = lbfgs_clock.seconds
    iterations, evaluations = lbfgs_counts(model.opt)
    x, t = trainer.eval_axes
    grid = np.stack(np.meshgrid(x, t, indexing="xy"), axis=-1).reshape(-1, 2)
    prediction = model.predict(grid.astype(np.float32)).reshape(trainer.reference.shape)
    error = prediction - trainer.reference
    return {"adam_s": adam_s, "lbfgs_s": lbfgs_s, "adam_evaluations": adam,
            "lbfgs_iterations": iterations,
            "lbfgs_function_evaluations": evaluations,
            "rel_l2": float(np.linalg.norm(error) / np.linalg.norm(trainer.reference)),
            "max_error": float(np.abs(error).max()), "version": dde.__version__}


def rates(result: dict, adam: int) -> dict:
    """Adds loss-and-gradient evaluations per second (the headline) and iterations per second."""
    evaluations = result["adam_evaluations"] + result["lbfgs_function_evaluations"]
    return {**result,
            "evaluations_per_s": evaluations / (result["adam_s"] + result["lbfgs_s"]),
            "adam_evaluations_per_s": result["adam_evaluations"] / result["adam_s"],
            "adam_it_per_s": adam / result["adam_s"],
            "lbfgs_it_per_s": result["lbfgs_iterations"] / result["lbfgs_s"],
            "lbfgs_evaluations_per_s": result["lbfgs_function_evaluations"] / result["lbfgs_s"]}


RATES = ("evaluations_per_s", "adam_evaluations_per_s", "lbfgs_evaluations_per_s",
         "adam_it_per_s", "lbfgs_it_per_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adam", type=at_least(1), default=500)
    parser.add_argument("--lbfgs", type=at_least(1), default=5000)
    parser.add_argument("--repeats", type=at_least(1), default=3,
                        help="runs of each library, alternating which goes first")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pinn_burgers.json"))
    args = parser.parse_args()
    if importlib.util.find_spec("deepxde") is None:  # before physml's minutes of training
        raise SystemExit("pinn_burgers.py compares with DeepXDE: pip install deepxde first")
    runs: dict[str, list[dict]] = {"physml": [], "deepxde": []}
    points, trainer = None, None
    for repeat in range(args.repeats):
        # physml first on even repeats; DeepXDE reads its collocation points, reference and
        # transform from physml's first trainer (the same on every repeat: seeded, Sobol)
        for name in ("physml", "deepxde") if repeat % 2 == 0 else ("deepxde", "physml"):
            if name == "physml":
                result, points, trainer = run_physml(args.adam, args.lbfgs)
            else:
                result = run_deepxde(points, trainer, args.adam, args.lbfgs)
            runs[name].append(rates(result, args.adam))
            r = runs[name][-1]
            print(f"repeat {repeat + 1}/{args.repeats} {name:>8}: {r['evaluations_per_s']:6.1f} "
                  f"loss-and-gradient evaluations/s (Adam {r['adam_evaluations_per_s']:.1f}, "
                  f"L-BFGS {r['lbfgs_evaluations_per_s']:.1f}; {r['lbfgs_iterations']} L-BFGS it,"
                  f" {r['lbfgs_function_evaluations']} evaluations), relative L2 "
                  f"{r['rel_l2']:.3e}", flush=True)
    sides = {name: {key: summary([r[key] for r in records]) for key in (*RATES, "rel_l2")}
             for name, records in runs.items()}
    paired = {key: summary([p[key] / d[key] for p, d in zip(runs["physml"], runs["deepxde"])])
              for key in RATES}
    result = {"adam_steps": args.adam, "lbfgs_steps": args.lbfgs, "repeats": args.repeats,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "deepxde_version": runs["deepxde"][0]["version"], "medians": sides,
              "physml_over_deepxde": {key: sides["physml"][key]["median"]
                                      / sides["deepxde"][key]["median"] for key in RATES},
              "physml_over_deepxde_paired": paired, "provenance": provenance(), "runs": runs}
    print("physml / DeepXDE (ratio of medians; paired ratios min-max): " + ", ".join(
        f"{key} {result['physml_over_deepxde'][key]:.2f}x "
        f"[{paired[key]['min']:.2f}-{paired[key]['max']:.2f}]" for key in RATES))
    if not all(math.isfinite(r["rel_l2"]) for r in runs["physml"]):
        raise SystemExit("physml's error is not finite")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
