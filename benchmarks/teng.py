"""TENG-Euler, TENG-Heun and TENG-RK4 against a PINN on the three 2D TENG problems, plus the
inner least-squares solve (SVD against Gram/Cholesky at a fit's damping: Gram faster, to the
same residual).

For each of ``cases/teng_{heat,allen_cahn,burgers}.yaml`` (``--variant cpu`` by default, the
reduced network; ``--variant full`` for the paper-scale setting on a GPU) the initial
condition is fitted once and shared by the three schemes; the relative L2 error against the
spectral reference is recorded at t = 0.5, 1, 2, 4 with the wall time. The PINN baseline is
a space-time network with the same periodic embedding in x, y, the time as a third input, the
initial condition built in ($u = u_0 + tN$), about the same parameter count, trained by Adam
on fresh random points for the wall time TENG-Heun took. The solve comparison takes the
Jacobians of one step and times both solvers on them at the relative damping a fit tries first
(1e-12), with the residual each leaves (``results/teng.json``: Gram 6.5–7.1× faster, its
residual 0.7–0.9× SVD's), and the SVD undamped, its truncated pseudo-inverse (a 26–120×
smaller residual here, which no fit asks for). TENG-Heun is also run end to end with the dense
solver, for the error each solver reaches (there within 1.5× of each other at t = 4). Results go
to JSON, written after each part::

    python benchmarks/teng.py [--variant cpu] [--dt 0.02] [--device cuda]
                              [--parts solve heun ...] [--resume] [--out results.json]

``--resume`` keeps the parts already in ``--out`` and the fitted initial parameters saved
beside it (``<out>.theta0-<problem>.pt``), so a long full-scale run can be done in pieces.
Every time is read on a :class:`~physml.devices.Stopwatch`, which waits for the device's
queued work, so CUDA figures time the kernels, not their launches.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import check_device, provenance

from physml.cases.registry import load_case
from physml.cases.teng import Reference, build_teng, initial_condition
from physml.devices import Stopwatch, require_torch_device
from physml.torch_files import load_checked
from physml.train.least_squares import MIN_DAMPING, GramSolver, SVDSolver

CASES = Path(__file__).parents[1] / "cases"
PROBLEMS = ("heat", "allen_cahn", "burgers")
SCHEMES = ("euler", "heun", "rk4")
PARTS = ("solve", *SCHEMES, "heun_dense", "pinn")
TIMES = (0.5, 1.0, 2.0, 4.0)


def run_scheme(case, scheme: str, theta0: torch.Tensor, reference: Reference,
               solver: str = "auto") -> dict:
    settings = case.training.model_copy(update={"scheme": scheme, "solver": solver})
    teng = build_teng(case.model_copy(update={"training": settings}))
    assert teng.solver == solver and teng.tableau.stages == {"euler": 1, "heun": 2, "rk4": 4}[
        scheme], "the scheme and solver asked for are the ones built"
    teng.theta = theta0.clone()
    errors, walls, watch = {}, {}, Stopwatch(teng.device)
    for index, t in enumerate(TIMES):
        with watch:
            teng.run(t)
        walls[f"{t:g}"] = watch.seconds
        errors[f"{t:g}"] = reference.error(teng, teng.theta, index)[0]
    shown = "  ".join(f"t={k} {v:.2e}" for k, v in errors.items())
    print(f"  TENG-{scheme:5s} ({teng.solver_used}): {shown}  ({walls['4']:.0f} s)", flush=True)
    return {"rel_l2": errors, "wall_s": walls, "solver": teng.solver_used,
            "fallbacks": teng.fallbacks, "solve_s_per_step":
            teng.solve_seconds / round(TIMES[-1] / teng.dt)}


def run_pinn(case, parameters: int, seconds: float, reference: Reference) -> dict:
    """Space-time PINN with a periodic embedding in space, Adam, for ``seconds``."""
    torch.manual_seed(case.seed)
    pde, u0 = case.pde, initial_condition(case)
    width = case.model.width
    while True:  # the widest network with at most TENG's parameter count (+10%)
        net = SpaceTimePINN(width + 1, case.model.depth)
        if sum(p.numel() for p in net.parameters()) > 1.1 * parameters:
            break
        width += 1
    device = reference.points.device
    net = SpaceTimePINN(width, case.model.depth).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    length, steps, watch = case.domain.x[1], 0, Stopwatch(device)
    box = torch.tensor([length, length, TIMES[-1]], dtype=torch.float64, device=device)
    with watch:
        while watch.read() < seconds:
            steps += 1
            adam_step(net, optimiser, pde, u0, torch.rand(2048, 3, dtype=torch.float64,
                                                          device=device) * box)
    errors = {}
    with torch.no_grad():
        for index, t in enumerate(TIMES):
            X = torch.cat([reference.points, torch.full_like(reference.points[:, :1], t)], dim=1)
            truth = reference.states[index].reshape(-1)
            errors[f"{t:g}"] = float((net(X, u0) - truth).norm() / truth.norm())
    count = sum(p.numel() for p in net.parameters())
    print(f"  PINN ({count} parameters, {steps} Adam steps): "
          + "  ".join(f"t={k} {v:.2e}" for k, v in errors.items()), flush=True)
    return {"rel_l2": errors, "parameters": count, "adam_steps": steps, "wall_s": watch.seconds}


def adam_step(net: SpaceTimePINN, optimiser, pde, u0, X: torch.Tensor) -> None:
    """One Adam step on the mean squared residual $u_t - F[u]$ at the points X (n, 3)."""
    X.requires_grad_(True)
    u = net(X, u0)
    du = torch.autograd.grad(u.sum(), X, create_graph=True)[0]
    lap = sum(torch.autograd.grad(du[:, i].sum(), X, create_graph=True)[0][:, i]
              for i in range(2))
    rhs = pde.nu * lap
    if pde.name == "allen_cahn":
        rhs = rhs + u - u**3
    elif pde.name == "burgers":
        rhs = rhs - u * (du[:, 0] + du[:, 1])
    loss = (du[:, 2] - rhs).square().mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


class SpaceTimePINN(torch.nn.Module):
    """$u(x, y, t) = u_0(x, y) + t\\,N(\\cos x, \\sin x, \\cos y, \\sin y, t)$."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layers, n = [], 5
        for _ in range(depth):
            layers += [torch.nn.Linear(n, width, dtype=torch.float64), torch.nn.Tanh()]
            n = width
        layers.append(torch.nn.Linear(n, 1, dtype=torch.float64))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, X: torch.Tensor, u0) -> torch.Tensor:
        x, y, t = X[:, 0], X[:, 1], X[:, 2]
        features = torch.stack([torch.cos(x), torch.sin(x), torch.cos(y), torch.sin(y), t], 1)
        return u0(X[:, :2]) + t * self.net(features)[:, 0]


def compare_solvers(case, theta0: torch.Tensor, repeats: int = 3) -> dict:
    """Both solvers on the Jacobians of one step's fits, at the relative damping a fit tries
    first (``MIN_DAMPING``), and the SVD undamped (its truncated pseudo-inverse): time per
    solve and residual left."""
    teng = build_teng(case)
    teng.theta = theta0.clone()
    X = teng.sample(teng.n_points)
    target = teng.value(teng.theta, X) + teng.dt * teng.rhs(teng.theta, X)
    columns = torch.randperm(teng.theta.numel(), generator=teng.generator)[: teng.subsample]
    J = teng.jacobian(teng.theta, X, columns)
    r = target - teng.value(teng.theta, X)
    result = {"samples": J.shape[0], "columns": J.shape[1], "damping": MIN_DAMPING}
    for name, kind, damping in (("dense_svd", SVDSolver, MIN_DAMPING), ("gram", GramSolver,
                                MIN_DAMPING), ("dense_svd_undamped", SVDSolver, 0.0)):
        with Stopwatch(J.device) as watch:
            for _ in range(repeats):
                delta = kind([J], r).solve(damping)
        result[f"{name}_s"] = watch.seconds / repeats
        result[f"{name}_relative_residual"] = float((J @ delta - r).norm() / r.norm())
    result["speedup"] = result["dense_svd_s"] / result["gram_s"]
    print(f"  solve {J.shape[0]}x{J.shape[1]} at damping {MIN_DAMPING:g}: SVD "
          f"{result['dense_svd_s'] * 1e3:.1f} ms, Gram {result['gram_s'] * 1e3:.1f} ms "
          f"({result['speedup']:.1f}x), residuals {result['dense_svd_relative_residual']:.2e} / "
          f"{result['gram_relative_residual']:.2e} (SVD undamped "
          f"{result['dense_svd_undamped_relative_residual']:.2e})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="cpu", help="case variant ('full': the case as is)")
    parser.add_argument("--dt", type=float, default=None, help="override training.dt")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="what to run per problem (pinn needs heun's wall time)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the case's)")
    parser.add_argument("--resume", action="store_true", help="keep the parts already in --out")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/teng.json"))
    args = parser.parse_args()
    if args.device is not None:
        check_device(parser, args.device, require_torch_device)
    overrides = [] if args.variant == "full" else [f"variant={args.variant}"]
    if args.dt is not None:
        overrides.append(f"training.dt={args.dt}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    settings = {"variant": args.variant, "dt": args.dt, "device": args.device,
                "torch_threads": torch.get_num_threads()}
    results = {**settings, "torch": torch.__version__, "problems": {}}
    if args.resume and args.out.is_file():
        results = json.loads(args.out.read_text())
        missing = [key for key in settings if key not in results]
        if missing:
            raise SystemExit(f"--resume: {args.out} does not record {', '.join(missing)} (written "
                             "before the script kept it); run without --resume or use another "
                             "--out")
        differing = [f"{key}={results[key]!r} (this run: {value!r})"
                     for key, value in settings.items() if results[key] != value]
        if differing:
            raise SystemExit(f"--resume: {args.out} holds {', '.join(differing)}; use another "
                             "--out")
    for name in args.problems:
        case = load_case(CASES / f"teng_{name}.yaml", overrides)
        print(f"{name}: dt={case.training.dt} on {case.device}", flush=True)
        entry = results["problems"].setdefault(name, {})
        theta0 = initial_parameters(case, entry, args.out.with_name(
            f"{args.out.name}.theta0-{name}.pt"), args.resume)
        reference = Reference(case, list(TIMES), case.training.dt)
        for part in args.parts:
            key = part if part in ("solve", "pinn") else f"teng_{part}"
            if key in entry:
                continue
            if part == "solve":
                entry[key] = compare_solvers(case, theta0)
            elif part == "pinn":
                if "teng_heun" not in entry:
                    raise SystemExit("--parts pinn needs heun first (its wall time)")
                entry[key] = run_pinn(case, theta0.numel(), entry["teng_heun"]["wall_s"]["4"],
                                      reference)
            else:
                scheme, _, solver = part.partition("_")
                entry[key] = run_scheme(case, scheme, theta0, reference, solver or "auto")
            results["provenance"] = provenance()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def initial_parameters(case, entry: dict, path: Path, resume: bool) -> torch.Tensor:
    """The fitted initial parameters: from ``path`` when resuming, else fitted (and saved
    there, with the fit's figures in ``entry``)."""
    if resume and path.is_file() and "initial_fit_rel_l2" in entry:
        return load_checked(path).to(case.device)
    teng = build_teng(case)
    fit = case.training
    with Stopwatch(teng.device) as watch:
        initial = teng.fit_initial(initial_condition(case), fit.initial_points,
                                   max_iterations=fit.initial_iterations)
    fit_s = watch.seconds
    print(f"  initial fit {initial:.2e} ({fit_s:.0f} s, {teng.theta.numel()} parameters)")
    entry.clear()
    entry.update({"parameters": teng.theta.numel(), "initial_fit_rel_l2": initial,
                  "initial_fit_s": fit_s, "dt": teng.dt})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(teng.theta.cpu(), path)
    return teng.theta


if __name__ == "__main__":
    main()
