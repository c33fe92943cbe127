"""The ``physml`` command.

    physml --version
    physml solve burgers1d --nx 1024 --nu 0.01 --t-end 1 --out u.h5

Mistakes in the input end with one line on stderr and exit status 2; a numerical blow-up ends
with the step it happened at and exit status 1, after saving the last finite state.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._version import __version__
from .progress import LOG_INTERVAL_S
from .threads import passive_wait_policy

if TYPE_CHECKING:  # the case kinds import PyTorch: loaded when a command needs them
    from .cases.kind import CaseKind


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


MAX_STEPS = 10**7
"""Most time steps one ``physml solve`` runs unless ``--max-steps`` allows more."""


def _finite(text: str) -> float:
    """A finite float from the command line (NaN and infinities refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(_finite(v) for v in text.split(","))
    except argparse.ArgumentTypeError:
        message = f"expected comma-separated finite numbers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _bundled_spec_names() -> str:
    """The bundled dataset specs' names, read off their folder (without importing the
    datasets package, which the command line loads only when it needs it)."""
    import importlib.util

    folder = Path(importlib.util.find_spec("physml.datasets").origin).parent / "specs"
    return ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))


def build_parser() -> argparse.ArgumentParser:
    """The ``physml`` command line: one sub-command per ``_add_<command>``."""
    parser = _Parser(prog="physml", description="Simulation-first scientific ML for PDEs.")
    parser.add_argument("--version", action="version", version=f"physml {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in (_add_solve, _add_run, _add_validate, _add_predict, _add_export, _add_cases,
                _add_datasets):
        add(sub)
    return parser


def _add_solve(sub: argparse._SubParsersAction) -> None:
    """``physml solve PDE``: a standard problem by a Warp solver, written as HDF5."""
    from .datasets.problems import PROBLEMS, parameters_by_name

    solve = sub.add_parser(
        "solve",
        help="run a Warp solver and write the trajectory as HDF5",
        description="Run one of the standard PDE problems: "
        + "; ".join(f"{k}: {p.equation}" for k, p in PROBLEMS.items()),
    )
    solve.add_argument("pde", help=f"one of: {', '.join(PROBLEMS)}")
    solve.add_argument("--nx", type=int, default=256, help="cells along x (default 256)")
    solve.add_argument("--ny", type=int, default=None, help="cells along y (2D; default nx)")
    for name, owners in parameters_by_name().items():
        first = owners[0][1]
        meaning = " / ".join(dict.fromkeys(p.meaning for _, p in owners))
        example = ", one entry per axis, e.g. 1,0.5" if first.per_axis else ""
        bounds = {}  # the allowed values per PDE, where the PDEs differ
        for pde, p in owners:
            bounds.setdefault(p.allowed, []).append(pde)
        allowed = "; ".join(f"{rule} ({', '.join(pdes)})" for rule, pdes in bounds.items())
        solve.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_floats if first.per_axis else _finite,
            default=None,
            help=f"{meaning} [{first.unit}]{example}: {allowed}",
        )
    solve.add_argument("--t-end", type=_finite, default=None, help="final time [s]")
    solve.add_argument(
        "--dt",
        type=_finite,
        default=None,
        help="time step [s]: stable, and dividing --t-end into the save intervals "
        "(default: the largest such step up to --cfl times the largest stable step)",
    )
    solve.add_argument(
        "--cfl",
        type=_finite,
        default=0.5,
        help="fraction of the largest stable step used when --dt is not given",
    )
    solve.add_argument(
        "--max-steps",
        type=int,
        default=MAX_STEPS,
        help=f"refuse a run of more time steps than this (default {MAX_STEPS:.0e})",
    )
    solve.add_argument("--n-saves", type=int, default=101, help="saved states including u0")
    solve.add_argument("--scheme", default=None,
                       help="euler, heun, ssp_rk3, rk4, or imex where the PDE allows it; "
                            "navier_stokes2d: ifrk4")
    solve.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    solve.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    solve.add_argument("--out", type=Path, required=True, help="output HDF5 file")
    solve.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_progress_options(solve)


def _add_run(sub: argparse._SubParsersAction) -> None:
    """``physml run CASE [overrides] [--resume RUN_DIR]``."""
    run = sub.add_parser(
        "run",
        help="run a case file (a path, or a bundled case by name)",
        description="Run a case: physml run cases/burgers.yaml (or: physml run burgers) "
        "[training.adam.steps=500 device=cuda ...] [--resume RUN_DIR]",
    )
    run.add_argument("case", help="case file, or the name of a bundled case (physml cases)")
    run.add_argument("overrides", nargs="*", default=[], help="dotted key=value overrides")
    run.add_argument("--resume", type=Path, default=None, help="run folder to continue")
    _add_progress_options(run)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    """``physml validate CASE [overrides]``."""
    validate = sub.add_parser("validate", help="check a case file without running it")
    validate.add_argument("case", help="case file, or the name of a bundled case")
    validate.add_argument("overrides", nargs="*", default=[])


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """``physml predict RUN_DIR --points FILE --out FILE``."""
    predict = sub.add_parser(
        "predict",
        help="evaluate the trained network of a run folder at points",
        description="Evaluate a PINN run's network: --points is a .npy array (n, d_in) or a "
        ".csv with a header naming the inputs (x, y, z, t); --out is .npy, .csv or .h5.",
    )
    predict.add_argument("run_dir", type=Path, help="run folder of physml run")
    predict.add_argument("--points", type=Path, required=True, help="input points file")
    predict.add_argument("--out", type=Path, required=True, help="output file")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    predict.add_argument("--device", default=None,
                         help="where to evaluate (default: the run's device, else cpu)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    """``physml export RUN_DIR --out MODEL``."""
    export = sub.add_parser(
        "export",
        help="save the trained network of a run folder as TorchScript or ONNX",
        description="Export a PINN run's network (inputs (n, d_in) -> outputs (n, m), in the "
        "trained dtype): --out ending in .pt writes TorchScript (torch.jit.load), .onnx an ONNX "
        "graph (input X, output u; needs pip install 'physml[onnx]').",
    )
    export.add_argument("run_dir", type=Path, help="run folder of physml run")
    export.add_argument("--out", type=Path, required=True, help="model file (.pt or .onnx)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.add_argument("--device", default=None,
                        help="device the traced model runs on (default: the run's, else cpu)")


def _add_cases(sub: argparse._SubParsersAction) -> None:
    """``physml cases [--names]``."""
    cases = sub.add_parser("cases", help="list the bundled case files")
    cases.add_argument("--names", action="store_true", help="only the names, one per line")


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    """``physml datasets generate SPEC --out FOLDER``."""
    datasets = sub.add_parser("datasets", help="benchmark datasets")
    datasets_sub = datasets.add_subparsers(
        dest="datasets_command", parser_class=_Parser, required=True
    )
    generate = datasets_sub.add_parser(
        "generate",
        help="generate (or resume) a dataset from a spec",
        description="Generate a dataset from a YAML spec (a path, or a bundled spec name: "
        f"{_bundled_spec_names()}). Rerunning the "
        "same command resumes an interrupted generation.",
    )
    generate.add_argument("spec", help="spec file or bundled spec name")
    generate.add_argument("--out", type=Path, required=True, help="output folder")
    generate.add_argument(
        "--samples",
        type=int,
        default=None,
        help="samples per parameter combination (overrides the spec)",
    )
    generate.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local Dask worker processes (default: the cores this process may use; 0: in-process)",
    )
    generate.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler, e.g. tcp://host:8786",
    )
    generate.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a complete dataset (or one of another spec) in --out",
    )
    generate.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N: where the samples are solved"
    )
    _add_progress_options(generate, unit="sample")


def _add_progress_options(command: argparse.ArgumentParser, unit: str = "step") -> None:
    """``--quiet`` and ``--log-every``: the options of a command's :class:`RunProgress`
    (``unit``: what it counts)."""
    command.add_argument("--quiet", action="store_true", help="no progress display")
    command.add_argument(
        "--log-every",
        type=float,
        default=LOG_INTERVAL_S,
        help="seconds between progress lines when the output is not a terminal "
        f"(default {LOG_INTERVAL_S:g}; 0: every {unit})",
    )


def _log_interval(args: argparse.Namespace) -> float:
    """``--log-every``, checked.

    Raises:
        ValueError: it is negative or NaN.
    """
    if not args.log_every >= 0:
        raise ValueError(f"--log-every={args.log_every} must be >= 0 seconds (0: every step)")
    return args.log_every


def _run_solve(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .datasets.problems import build_solver, parameters_by_name, problem
    from .io import trajectory_dataset, write_dataset
    from .progress import PipeConsole, RunProgress
    from .solvers.errors import BlowUpError
    from .solvers.runtime import quiet_warp

    interval = _log_interval(args)
    _check_output_file(args.out, args.overwrite)
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
    intervals = args.n_saves - 1
    save_every = _steps_per_save(args, t_end, intervals, solver.stable_dt(u0), solver.scheme)
    n_steps = save_every * intervals
    dt = t_end / n_steps
    solver = solver.with_dt(dt)
    solver.check_stability(u0)

    console = PipeConsole(stderr=True, quiet=args.quiet)
    console.print(f"[bold]physml solve[/] {escape(f'{args.pde}: {prob.equation}')}")
    console.print(f"  {solver!r}", markup=False)
    console.print(f"  t_end={t_end:g}, {n_steps} steps, {args.n_saves} saved states -> {args.out}",
                  markup=False)
    started = time.perf_counter()
    with RunProgress(args.pde, n_steps, console, args.quiet, interval) as progress:
        try:
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
        **{k: v for k, v in solver.parameters().items()},
    }
    times = np.arange(args.n_saves) * save_every * dt
    write_dataset(trajectory_dataset(states, times, solver.grid, attrs=attrs,
                                     metadata={"u": prob.quantity}), args.out)
    console.print(
        f"wrote {args.out} ({states.shape}, {elapsed:.1f} s, {n_steps / elapsed:.0f} steps/s)",
        markup=False)
    return 0


def _check_output_file(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``--out`` that cannot become the output file: a folder
    (``.`` included), a file that exists (unless ``overwrite``), or a path in a folder that is
    missing or not writable."""
    if out.is_dir():
        raise ValueError(
            f"--out: {str(out)!r} is a folder; give a file name, e.g. {str(out / 'u.h5')!r}"
        )
    if out.exists() and not overwrite:
        raise ValueError(f"--out: {str(out)!r} exists; pass --overwrite to replace it")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"--out: folder {str(folder)!r} does not exist")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".physml-write-test-")
    except OSError as err:
        message = f"--out: cannot write in folder {str(folder)!r} ({err.strerror})"
        raise ValueError(message) from None
    os.close(handle)
    os.unlink(probe)


def _steps_per_save(
    args: argparse.Namespace, t_end: float, intervals: int, stable: float, scheme: str
) -> int:
    """Time steps per save interval $\\tau = t_{end}/$``intervals``, given the largest stable
    step ``stable`` of ``scheme``.

    Without ``--dt``: the fewest steps whose length $\\tau/k$ is at most ``--cfl`` times the
    stable step. With ``--dt``: $\\tau/$``--dt`` steps, if ``--dt`` divides $\\tau$ (to a
    relative 1e-6) and is stable; otherwise the error suggests the largest step that does both.

    Raises:
        ValueError: ``--dt`` does not divide $\\tau$ or is unstable, or the run would take more
            than ``--max-steps`` steps (the error says how many).
    """
    tau = t_end / intervals
    remedy = "a larger --dt or a smaller --t-end"
    if args.dt is None:
        step = min(args.cfl * stable, tau)
        steps = tau / step
        dt_text = f"dt={step:.3g} ({args.cfl:g} x the stable step)"
        if step == tau:  # the saves, not stability, set the step
            dt_text = (f"one step per save interval (dt={tau:.3g}, shorter than {args.cfl:g} x "
                       f"the stable step {stable:.3g})")
            remedy = "fewer --n-saves or a smaller --t-end"
    else:
        steps = tau / args.dt
        dt_text = f"--dt={args.dt:g}"
    total = steps * intervals
    if not total <= args.max_steps:
        allow = f"--max-steps {math.ceil(total)} to run them anyway, or " if total < 1e15 else ""
        raise ValueError(
            f"--t-end={t_end:g} with {dt_text} needs {total:.3g} time steps, more than "
            f"--max-steps={args.max_steps}; pass {allow}{remedy}"
        )
    if args.dt is None:
        return _fewest_steps(tau, args.cfl * stable)
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
            "largest step up to it that divides the save intervals and is stable"
        )
    return given


def _fewest_steps(tau: float, dt_max: float) -> int:
    """The fewest equal steps $k$ covering the interval $\\tau$ with $\\tau/k \\le$ ``dt_max``
    (to within the 1e-12 slack of the stability check)."""
    return max(1, math.ceil(tau / dt_max * (1 - 1e-12)))


def _run_generate(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .datasets.generate import generate
    from .datasets.linear_systems import LinearSystemSpec
    from .datasets.spec import load_spec
    from .progress import PipeConsole, RunProgress
    from .solvers.base import warp_device
    from .solvers.runtime import quiet_warp

    interval = _log_interval(args)
    if args.samples is not None and args.samples <= 0:
        raise ValueError(f"--samples={args.samples} must be a positive integer")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers={args.workers} must be >= 0")
    quiet_warp(args.device)
    device = warp_device(args.device)
    spec = load_spec(args.spec, samples=args.samples)
    console = PipeConsole(stderr=True, quiet=args.quiet)
    console.print(
        "[bold]physml datasets generate[/] " + escape(
            f"{args.spec}: {spec.summary}, {len(spec.parameter_grid())} parameter "
            f"combination(s) x {spec.samples} samples on {device} -> {args.out}"))
    with contextlib.ExitStack() as stack:
        shown: list[RunProgress] = []  # the display starts with the first count (the total):
        # a failed start shows none

        def report(done: int, total: int) -> None:
            if not shown:
                shown.append(stack.enter_context(
                    RunProgress(spec.pde, total, console, args.quiet, interval)))
            shown[0].update(done, "samples")

        manifest = generate(
            spec,
            args.out,
            device=device,
            workers=args.workers,
            scheduler=args.scheduler,
            overwrite=args.overwrite,
            progress=report,
        )
    reader = (f"physml.datasets.linear_systems.read_systems({str(args.out / 'train')!r})"
              if isinstance(spec, LinearSystemSpec)
              else f"physml.io.open_dataset({str(args.out)!r}, split='train')")
    console.print(f"wrote {manifest['samples']} samples to {args.out} (open with {reader})",
                  markup=False)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from .trained import load_run

    _check_output_file(args.out, args.overwrite)
    if args.out.suffix not in (".npy", ".csv", ".h5"):
        raise ValueError(f"--out: {str(args.out)!r} must end in .npy, .csv or .h5")
    model = load_run(args.run_dir, args.device)
    if model.steps is not None and model.steps < model.planned_steps:
        print(f"physml predict: note: the network of {str(args.run_dir)!r} is its checkpoint "
              f"at step {model.steps} of {model.planned_steps} (the run stopped early; resume "
              "it to finish)", file=sys.stderr)
    points = _read_points(args.points, model.inputs, model.outputs)
    bounds = model.field.problem.bounds  # (d_in, 2): the box the network was trained in
    outside = int(np.sum(np.any((points < bounds[:, 0]) | (points > bounds[:, 1]), axis=1)))
    if outside:
        box = ", ".join(f"{name} in [{a:g}, {b:g}]" for name, (a, b) in zip(model.inputs, bounds))
        print(f"physml predict: note: {outside} of {len(points)} points lie outside the box the "
              f"network was trained in ({box}): it extrapolates there", file=sys.stderr)
    values = model(points).reshape(len(points), -1)
    if args.out.suffix in (".npy", ".csv"):  # whole or not at all, as the .h5 is written
        from .datasets.store import atomic_write

        def write(path: Path) -> None:
            with open(path, "wb") as file:
                if args.out.suffix == ".npy":
                    np.save(file, values)
                else:
                    digits = 9 if values.dtype == np.float32 else 17  # round-trip digits
                    formats = ["%.17g"] * points.shape[1] + [f"%.{digits}g"] * values.shape[1]
                    np.savetxt(file, np.hstack([points, values]), delimiter=",",
                               header=",".join((*model.inputs, *model.outputs)), comments="",
                               fmt=formats)

        atomic_write(args.out, write)
    else:
        import xarray as xr

        from .datasets.store import with_cf_metadata
        from .io import write_dataset

        columns = {name: ("point", points[:, i]) for i, name in enumerate(model.inputs)}
        columns.update({name: ("point", values[:, i]) for i, name in enumerate(model.outputs)})
        metadata = {name: (f"input {name} of the trained network", "1") for name in model.inputs}
        metadata.update({name: (f"prediction of {name}", "1") for name in model.outputs})
        write_dataset(with_cf_metadata(xr.Dataset(columns, attrs={"run": str(args.run_dir)}),
                                       metadata), args.out)
    print(f"wrote {args.out} ({len(points)} points, outputs {', '.join(model.outputs)})")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .trained import load_run

    _check_output_file(args.out, args.overwrite)
    writers = {".pt": "export_torchscript", ".onnx": "export_onnx"}
    if args.out.suffix not in writers:
        raise ValueError(f"--out: {str(args.out)!r} must end in .pt (TorchScript) or .onnx")
    model = load_run(args.run_dir, args.device)
    getattr(model, writers[args.out.suffix])(args.out)
    print(f"wrote {args.out} (inputs {', '.join(model.inputs)} -> outputs "
          f"{', '.join(model.outputs)}, {str(model.dtype).removeprefix('torch.')})")
    return 0


def _read_points(path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...] = ()
                 ) -> np.ndarray:
    """Rows of inputs from a .npy array or a .csv whose header names the inputs (columns
    named like an output are ignored: a CSV ``predict`` wrote reads back)."""
    if not path.is_file():
        raise ValueError(f"--points: {str(path)!r} does not exist")
    if path.suffix not in (".npy", ".csv"):
        raise ValueError(f"--points: {str(path)!r} must end in .npy or .csv")
    try:
        if path.suffix == ".npy":
            with path.open("rb") as f:
                try:
                    version = np.lib.format.read_magic(f)
                except ValueError:
                    raise ValueError("is not a NumPy array file (write one with numpy.save)"
                                     ) from None
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                if read_header(f)[2].hasobject:
                    raise ValueError("holds object values; need a numeric array")
            points = np.load(path)
        else:
            with path.open() as f:
                header = [h.strip() for h in f.readline().split(",")]
            missing = [name for name in inputs if name not in header]
            if missing:
                raise ValueError(f"has no column {missing[0]!r}; the header must name the "
                                 f"inputs {', '.join(inputs)}")
            extra = [name for name in header if name not in (*inputs, *outputs)]
            if extra:
                raise ValueError(f"has a column {extra[0]!r} the network does not read; the "
                                 f"header names the inputs {', '.join(inputs)} (and may "
                                 f"name the outputs {', '.join(outputs)}, which are ignored)")
            with warnings.catch_warnings():  # "input contained no data": said below
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            if table.size == 0:
                raise ValueError("has no rows under its header")
            if table.shape[1] != len(header):
                raise ValueError(f"has rows of {table.shape[1]} values under a header of "
                                 f"{len(header)}")
            points = table[:, [header.index(name) for name in inputs]]
        points = np.asarray(points, dtype=np.float64)
    except (ValueError, TypeError, OSError) as err:
        raise ValueError(f"--points: {str(path)!r} {err}") from None
    if points.ndim != 2 or points.shape[1] != len(inputs) or len(points) == 0:
        raise ValueError(f"--points: {str(path)!r}: need shape (n, {len(inputs)}), n >= 1, "
                         f"with columns {', '.join(inputs)}; got {points.shape}")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if len(bad):
        raise ValueError(f"--points: {str(path)!r}: row(s) {bad[:5].tolist()} hold a NaN or "
                         "infinite value; every coordinate must be a finite number")
    return points


def _run_cases(args: argparse.Namespace) -> int:
    from .cases.registry import DEFAULT_KIND, KINDS, bundled_cases
    from .datasets.spec import read_yaml_mapping

    cases = bundled_cases()
    if args.names:
        print("\n".join(cases))
        return 0
    width = max(map(len, cases))
    for name, path in cases.items():
        raw = read_yaml_mapping(path, "case")
        kind = raw.get("kind", DEFAULT_KIND)
        print(f"{name:{width}s}  {kind:15s}  {raw.get('description', '')}")
    print("\nkinds: " + "; ".join(f"{k}: {kind.summary}" for k, kind in KINDS.items()))
    print(f"files: {next(iter(cases.values())).parent} (run one by name: physml run NAME)")
    return 0


def _run_validate(args: argparse.Namespace) -> int:
    from .cases.registry import case_kind, load_case

    case = load_case(args.case, args.overrides)
    print(f"{args.case}: valid ({case_kind(case).describe(case)})")
    return 0


def _load_run_case(args: argparse.Namespace):
    """The case to run: the file with its overrides, or, with --resume, the run folder's
    configuration (which the file with its overrides must match)."""
    from .cases.registry import case_kind, load_case
    from .cases.run_folder import CONFIG

    requested = load_case(args.case, args.overrides)
    if args.resume is None:
        return requested
    if not args.resume.is_dir():
        raise ValueError(f"--resume: {str(args.resume)!r} is not a folder" if
                         args.resume.exists() else
                         f"--resume: folder {str(args.resume)!r} does not exist")
    if not (args.resume / CONFIG).is_file():
        raise ValueError(f"--resume: {str(args.resume)!r} is not a run folder (no {CONFIG}); "
                         "nothing to resume")
    case = load_case(args.resume / CONFIG, recorded=True)
    keys = requested.differences(case)
    if keys:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise ValueError(
            f"--resume: {args.case} (with overrides) differs from the configuration of "
            f"{args.resume} (a {case.kind} case) in {shown}; resume with the same case"
        )
    kind = case_kind(case)
    if not kind.resumable:
        raise ValueError(f"--resume: kind {kind.name!r} cannot resume: start a new run")
    if not (args.resume / kind.checkpoint).is_file():
        raise ValueError(f"--resume: {str(args.resume)!r} has no {kind.checkpoint} (its run "
                         "keeps none); nothing to resume")
    return case


def _run_case(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .cases.registry import case_kind, run_case
    from .progress import PipeConsole, RunProgress
    from .solvers.runtime import quiet_warp

    interval = _log_interval(args)
    case = _load_run_case(args)
    kind = case_kind(case)
    from .cases.run_folder import new_run_folder, remove_if_empty  # after the case is checked
    from .devices import require_device
    from .errors import NonFiniteLossError
    from .solvers.errors import BlowUpError

    quiet_warp(case.device)
    require_device(case.device)
    folder = args.resume if args.resume is not None else new_run_folder(case.name, case.output)
    console = PipeConsole(stderr=True)
    if not args.quiet:
        console.print("[bold]physml run[/] " + escape(
            f"{case.name}: {kind.describe(case)} on {case.device}"
            + (f" ({case.dtype})" if hasattr(case, "dtype") else "")), soft_wrap=True)
    with RunProgress(case.name, kind.total_steps(case), console, args.quiet,
                     interval) as progress:
        latest = {}

        def on_step(record: dict) -> None:
            if "rel_l2" in record:
                latest["rel_l2"] = record["rel_l2"]
            error = f" rel L2 {latest['rel_l2']:.2e}" if latest else ""
            if "fit_iteration" in record:  # a fit before the first step (TENG)
                progress.update(0, f"initial fit: iteration {record['fit_iteration']}, "
                                   f"error {record['fit_error']:.2e}")
                return
            if "status" in record:  # a step that says what it did itself (a mesh solve)
                progress.update(record["step"] + 1, record["status"])
                return
            # a record's step counts the updates or time steps done
            done = record["step"]
            status = f"loss {record['loss']:.3e}" if "loss" in record else f"t {record['t']:.4g}"
            progress.update(done, status + error)

        failure = None
        try:
            folder, result = run_case(case, folder, resume=args.resume is not None,
                                      on_step=on_step)
        except (NonFiniteLossError, BlowUpError) as err:
            failure = err  # told after the progress display's last line
        except KeyboardInterrupt:
            progress.stop()
            print(_interrupted(args, folder, kind), file=sys.stderr)
            return 130
        except BaseException:
            if not _removed_if_unresumable(args, folder, kind.checkpoint):
                remove_if_empty(folder)
            raise
    if failure is not None:
        if _removed_if_unresumable(args, folder, kind.checkpoint):
            failure = f"{failure} (before the first checkpoint: removed {folder})"
        elif kind.resumable:
            failure = f"{failure} ({folder / kind.checkpoint}; continue with: " \
                      f"{_resume_command(args, folder)})"
        print(f"physml: error: {failure}", file=sys.stderr)
        return 1
    print(kind.headline(result))
    outputs = ", ".join(sorted(p.name for p in folder.iterdir()
                               if p.is_file() and not p.name.startswith(".")))
    print(f"run folder: {folder}  ({outputs})")
    return 0


def _removed_if_unresumable(args: argparse.Namespace, folder: Path, checkpoint: str) -> bool:
    """Remove the folder a new run (not ``--resume``) made if it holds no checkpoint: nothing
    in it can be resumed. Returns whether it did."""
    if args.resume is not None or (folder / checkpoint).is_file():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def _interrupted(args: argparse.Namespace, folder: Path, kind: CaseKind) -> str:
    """What to tell a user who stopped a run with Ctrl-C; a new run's folder with nothing to
    resume is removed (a folder given with ``--resume`` never is)."""
    from .cases.run_folder import CONFIG

    removed = f"physml: interrupted before the first checkpoint; nothing to resume (removed " \
              f"{folder})"
    if _removed_if_unresumable(args, folder, kind.checkpoint):
        return removed
    if not kind.resumable:
        return f"physml: interrupted; kind {kind.name!r} cannot resume: start a new run " \
               f"({folder} keeps its {kind.checkpoint})"
    if args.resume is None and not (folder / CONFIG).is_file():  # stopped before its config
        shutil.rmtree(folder, ignore_errors=True)
        return removed
    return (f"physml: interrupted; {folder} keeps the last checkpoint. Continue with:\n  "
            f"{_resume_command(args, folder)}")


def _resume_command(args: argparse.Namespace, folder: Path) -> str:
    """The command line that resumes the run in ``folder``."""
    return shlex.join(["physml", "run", str(args.case), *args.overrides, "--resume",
                       str(folder)])


INTERRUPTED = {
    "solve": "physml: interrupted; nothing was written",
    "datasets": "physml: interrupted; the finished shards are kept: run the same command "
                "again to go on",
}
"""What Ctrl-C leaves, per command (``run`` tells it from the run folder)."""


OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")
"""A case override, ``dotted.key=value``."""


def main(argv: list[str] | None = None) -> int:
    passive_wait_policy()  # before PyTorch starts its OpenMP threads
    try:  # building the parser imports Warp and PyTorch: seconds a Ctrl-C may fall in
        parser = build_parser()
    except KeyboardInterrupt:
        print("physml: interrupted", file=sys.stderr)
        return 130
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides"):  # overrides after an option: still overrides
        args.overrides += [item for item in extra if OVERRIDE.match(item)]
        extra = [item for item in extra if not OVERRIDE.match(item)]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        commands = {
            "solve": _run_solve,
            "datasets": _run_generate,
            "run": _run_case,
            "validate": _run_validate,
            "cases": _run_cases,
            "predict": _run_predict,
            "export": _run_export,
        }
        return commands[args.command](args)
    except ValueError as err:
        print(f"physml: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # ``run`` says more itself
        print(INTERRUPTED.get(args.command, "physml: interrupted"), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (physml cases | head -1): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
