"""``physml solve PDE``: a standard problem run by a Warp solver and written as HDF5, with the
choice of the time step (``--dt``, ``--cfl``, ``--max-steps``) that divides the save intervals.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from ._version import __version__
from .cli_parser import check_output_file, log_interval


def solve_command(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .datasets.memory import WORKING_FIELDS, check_fits_in_memory
    from .datasets.problems import build_solver, parameters_by_name, problem
    from .io import trajectory_dataset, write_dataset
    from .progress import PipeConsole, RunProgress
    from .solvers.base import GridSolver
    from .solvers.errors import BlowUpError
    from .solvers.runtime import quiet_warp
    from .solvers.stability import implicit_diffusion_limit

    interval = log_interval(args)
    check_output_file(args.out, args.overwrite)
    prob = problem(args.pde)
    t_end = prob.t_end if args.t_end is None else args.t_end
    if not t_end > 0:
        raise ValueError(f"--t-end={t_end} must be a positive number")
    if args.n_saves < 2:
        raise ValueError(f"--n-saves={args.n_saves} must be >= 2")
    if not 0 < args.cfl <= 1:
        raise ValueError(f"--cfl={args.cfl} must lie in (0, 1]")
    if args.dt is not None and not args.dt > 0:
        raise ValueError(f"--dt={args.dt} must be a positive number")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps={args.max_steps} must be a positive integer")
    if prob.ndim == 1 and args.ny is not None:
        raise ValueError(f"--ny: {args.pde} is one-dimensional; give its cells with --nx")
    for option, cells in (("--nx", args.nx), ("--ny", args.ny)):
        if cells is not None and cells < 1:
            raise ValueError(f"{option}={cells} must be a whole number of cells >= 1")
    quiet_warp(args.device)
    shape = (args.nx,) if prob.ndim == 1 else (args.nx, args.nx if args.ny is None else args.ny)
    params = {
        name: getattr(args, name)
        for name in parameters_by_name()
        if getattr(args, name) is not None
    }
    options = {"dtype": args.dtype, "device": args.device}
    if args.scheme is not None:
        options["scheme"] = args.scheme
    solver, u0 = build_solver(args.pde, shape, params, **options)
    cells = math.prod(shape)
    check_fits_in_memory(  # the saved states are held until written
        (np.dtype(args.dtype).itemsize * args.n_saves + 8 * WORKING_FIELDS) * cells,
        f"--n-saves={args.n_saves} states of {cells} cells ({args.dtype})")
    intervals = args.n_saves - 1
    imex = (implicit_diffusion_limit(solver, u0)  # where --scheme imex would lift the limit
            if isinstance(solver, GridSolver) and solver.scheme != "imex" else None)
    save_every = _steps_per_save(args, t_end, intervals, solver.stable_dt(u0), solver.scheme,
                                 imex)
    n_steps = save_every * intervals
    dt = t_end / n_steps
    solver = solver.with_dt(dt)
    solver.check_stability(u0)

    console = PipeConsole(stderr=True, quiet=args.quiet)
    console.print(f"[bold]physml solve[/] {escape(f'{args.pde}: {prob.equation}')}")
    console.print(f"  {solver!r}", markup=False)
    console.print(f"  t_end={t_end:g}, {n_steps} steps, {args.n_saves} saved states -> {args.out}",
                  markup=False)
    with RunProgress(args.pde, n_steps, console, args.quiet, interval) as progress:
        try:
            warming = time.perf_counter()
            solver.rollout(u0, 1, 1)  # first use loads (compiles) the kernels: not timed
            started = time.perf_counter()
            if started - warming > 1.0:  # a Warp solver compiling, or one long step
                console.print(f"  first step (kernels loaded or compiled on first use) took "
                              f"{started - warming:.0f} s, not counted in the rate",
                              markup=False)
            states = solver.rollout(u0, n_steps, save_every,
                                    callback=lambda step: progress.update(step, "steps"))
        except BlowUpError as err:
            rescue = args.out.with_name(args.out.stem + ".last_good.h5")
            write_dataset(
                trajectory_dataset(
                    err.last_good_state[None],
                    [err.last_good_step * dt],
                    solver.grid,
                    attrs={"pde": args.pde},
                ),
                rescue,
            )
            failure = f"physml: error: {err} (saved to {rescue})"
            if args.dt is None:  # the user set no dt: say where it came from, and the cure
                failure += (f"; dt={dt:.4g} was chosen once, as --cfl={args.cfl:g} times the "
                            "stable step of the initial state, and the state outgrew it (a "
                            "forcing or a reaction can): pass a smaller --cfl or a --dt")
        else:
            failure = None
    if failure is not None:  # after the progress display's last line
        print(failure, file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    attrs = {
        "pde": args.pde,
        "equation": prob.equation,
        "solver": type(solver).__name__,
        "scheme": solver.scheme,
        "dt": dt,
        "n_steps": n_steps,
        "save_every": save_every,
        "grid_shape": solver.grid.shape,
        "grid_lower": solver.grid.lower,
        "grid_upper": solver.grid.upper,
        "bc": prob.bc or "pdebench",
        "device": solver.device,
        "dtype": args.dtype,
        "physml_version": __version__,
        "command": " ".join(sys.argv),
        "initial_condition": prob.initial_text,
        **{k: v for k, v in solver.parameters().items()},
    }
    times = np.arange(args.n_saves) * save_every * dt
    write_dataset(trajectory_dataset(states, times, solver.grid, attrs=attrs,
                                     metadata={"u": prob.quantity}), args.out)
    print(f"wrote {args.out} ({states.shape}, {elapsed:.1f} s, {n_steps / elapsed:.0f} steps/s)")
    return 0


def _steps_per_save(
    args: argparse.Namespace, t_end: float, intervals: int, stable: float, scheme: str,
    imex: float | None = None,
) -> int:
    """Time steps per save interval $\\tau = t_{end}/$``intervals``, given the largest stable
    step ``stable`` of ``scheme`` (and ``imex``, the stable step with implicit diffusion where
    diffusion sets the limit: the errors then offer ``--scheme imex``).

    Without ``--dt``: the fewest steps whose length $\\tau/k$ is at most ``--cfl`` times the
    stable step. With ``--dt``: $\\tau/$``--dt`` steps, if ``--dt`` divides $\\tau$ (to a
    relative 1e-6) and is stable; otherwise the error suggests the largest step that does both.

    Raises:
        ValueError: ``--dt`` does not divide $\\tau$ or is unstable, or the run would take more
            than ``--max-steps`` steps (the error says how many).
    """
    tau = t_end / intervals
    remedy = "a larger --dt or a smaller --t-end"
    implicit = "" if imex is None else (
        ", or --scheme imex (implicit diffusion: "
        + ("no diffusive step limit)" if math.isinf(imex) else f"stable up to dt={imex:.4g})"))
    if imex is not None:
        remedy = "a smaller --t-end"  # a larger step than the stable one is no cure
    if args.dt is None:
        steps = tau / (args.cfl * stable)
        if math.isfinite(steps):  # the whole number the run takes (an overflow is refused below)
            steps = _fewest_steps(tau, args.cfl * stable)
        dt_text = (f"dt={tau / steps:.4g} (the longest step up to {args.cfl:g} x the stable step "
                   "that divides the save intervals)")
        if steps == 1:  # the saves, not stability, set the step
            dt_text = (f"one step per save interval (dt={tau:.3g}, shorter than {args.cfl:g} x "
                       f"the stable step {stable:.3g})")
            remedy = "fewer --n-saves or a smaller --t-end"
            implicit = ""  # a larger stable step would not be taken
    else:
        steps = tau / args.dt
        if math.isfinite(steps) and steps >= 0.5 and math.isclose(tau / round(steps), args.dt,
                                                                   rel_tol=1e-6):
            steps = round(steps)  # the whole number the run takes (tau / dt is 10.000...02)
        dt_text = f"--dt={args.dt:g}"
    total = steps * intervals
    if not total <= args.max_steps:
        needed = f"{math.ceil(total)}" if total < 1e15 else f"{total:.3g}"  # exact if countable
        allow = f"--max-steps {needed} to run them anyway, or " if total < 1e15 else ""
        raise ValueError(
            f"--t-end={t_end:g} with {dt_text} needs {needed} time steps, more than "
            f"--max-steps={args.max_steps}; pass {allow}{remedy}{implicit}"
        )
    if args.dt is None:
        return steps
    given = max(1, round(steps))
    problems = []
    if not math.isclose(tau / given, args.dt, rel_tol=1e-6):
        problems.append(f"does not divide --t-end={t_end:g} into {intervals} equal save intervals")
    if args.dt > stable * (1 + 1e-12):
        problems.append(f"exceeds the stability limit {stable:.4g} of scheme '{scheme}' here")
    if problems:
        suggestion = tau / _fewest_steps(tau, min(args.dt, stable))
        raise ValueError(
            f"--dt={args.dt:g} {' and '.join(problems)}; pass --dt={suggestion:.7g}, the "
            f"largest step up to it that divides the save intervals and is stable{implicit}"
        )
    return given


def _fewest_steps(tau: float, dt_max: float) -> int:
    """The fewest equal steps $k$ covering the interval $\\tau$ with $\\tau/k \\le$ ``dt_max``
    (to within the 1e-12 slack of the stability check)."""
    return max(1, math.ceil(tau / dt_max * (1 - 1e-12)))
