"""The ``physml`` command line's parser: one sub-command per ``_add_<command>``, the argument
types that refuse NaN and infinities, and the checks of the options several commands share
(``--log-every``, ``--out``). The commands themselves live in the other ``physml.cli_*`` modules.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from ._version import __version__
from .progress import LOG_INTERVAL_S
from .solvers.checks import MAX_SOLVE_STEPS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


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


SOLVE_HELP = "run a Warp solver and write the trajectory as HDF5"

BOUNDARIES = {"periodic": "periodic", "dirichlet": "Dirichlet u = 0"}
"""A problem's ``bc`` as ``solve --help`` states it (None: the solver's own, PDEBench's)."""

SOLVE_EXAMPLE = "physml solve burgers1d --nx 1024 --t-end 1 --n-saves 101 --out u.h5"


def _pi_multiple(value: float) -> str:
    """``value`` as text, a whole multiple of pi as one (``2pi``)."""
    turns = value / math.pi
    if value != 0 and math.isclose(turns, round(turns), rel_tol=1e-12):
        return {1: "pi", -1: "-pi"}.get(round(turns), f"{round(turns)}pi")
    return f"{value:g}"


def _option_value(value: float | tuple[float, ...]) -> str:
    """A parameter's value as its option takes it, every digit that tells it apart (one entry
    per axis: ``1,0.5``), so that the printed value gives the same run."""
    values = value if isinstance(value, tuple) else (value,)
    return ",".join(repr(float(v)).removesuffix(".0") for v in values)


def _solve_epilog() -> str:
    """``solve --help``'s list of the problems (equation; domain, boundaries, u0 and the
    defaults of its parameters and final time) and an example."""
    import inspect

    from .datasets.problems import PROBLEMS

    lines = ["PDEs (x, y the cell centres; the defaults apply where an option is not given):"]
    for name, prob in PROBLEMS.items():
        domain = " x ".join(f"[{_pi_multiple(a)}, {_pi_multiple(b)}]"
                            for a, b in zip(prob.lower, prob.upper))
        bc = BOUNDARIES.get(prob.bc, prob.bc) if prob.bc else "the solver's own (PDEBench's)"
        own = inspect.signature(prob.solver).parameters  # the solver's, where the problem has none
        values = {p.name: prob.parameters.get(p.name, getattr(own.get(p.name), "default", None))
                  for p in prob.solver.PARAMETERS}
        defaults = [f"--{key.replace('_', '-')} {_option_value(value)}"
                    for key, value in values.items()
                    if value is not None and value is not inspect.Parameter.empty]
        defaults.append(f"--t-end {prob.t_end:g}")
        lines += [f"  {name}: {prob.equation}",
                  f"      on {domain}, {bc}; u0 = {prob.initial_text}",
                  f"      defaults: {', '.join(defaults)}"]
    return "\n".join([*lines, "", "example:", f"  {SOLVE_EXAMPLE}"])


def build_parser(solve_options: bool = True) -> argparse.ArgumentParser:
    """The ``physml`` command line: one sub-command per ``_add_<command>``.

    Args:
        solve_options: give ``solve`` its options, whose per-PDE flags are read from the
            solvers' parameter tables (importing Warp and the solvers: about a second); without
            them ``solve`` is listed by name and help only, for a command line that runs
            another command (:func:`command_of`).
    """
    parser = _Parser(prog="physml", description="Simulation-first scientific ML for PDEs.")
    parser.add_argument("--version", action="version", version=f"physml {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    if solve_options:
        _add_solve(sub)
    else:
        sub.add_parser("solve", help=SOLVE_HELP)
    for add in (_add_run, _add_validate, _add_predict, _add_export, _add_cases, _add_datasets):
        add(sub)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The sub-command a command line names: its first item that is not an option."""
    return next((item for item in argv if not item.startswith("-")), None)


def _add_solve(sub: argparse._SubParsersAction) -> None:
    """``physml solve PDE``: a standard problem by a Warp solver, written as HDF5."""
    from .datasets.problems import PROBLEMS, parameters_by_name

    solve = sub.add_parser(
        "solve",
        help=SOLVE_HELP,
        description="Run one of the standard PDE problems below by a Warp solver and write\n"
        "u(time, x[, y]), with the run's parameters as attributes, to an HDF5 file.",
        epilog=_solve_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
            help=f"{meaning} [{first.unit}]{example}: {allowed} (default: the PDE's, below)",
        )
    solve.add_argument("--t-end", type=_finite, default=None,
                       help="final time [s] (default: the PDE's, below)")
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
        help="fraction of the largest stable step used when --dt is not given "
        "(default %(default)s)",
    )
    solve.add_argument(
        "--max-steps",
        type=int,
        default=MAX_SOLVE_STEPS,
        help=f"refuse a run of more time steps than this (default {MAX_SOLVE_STEPS:.0e})",
    )
    solve.add_argument("--n-saves", type=int, default=101,
                       help="saved states including u0 (default %(default)s)")
    solve.add_argument("--scheme", default=None,
                       help="euler, heun, ssp_rk3, rk4, or imex where the PDE allows it; "
                            "navier_stokes2d: ifrk4 (default: the solver's, shown as the run "
                            "starts)")
    solve.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default "
                       "%(default)s)")
    solve.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                       help="floating-point precision of the solve (default %(default)s)")
    solve.add_argument("--out", type=Path, required=True, help="output HDF5 file")
    solve.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_progress_options(solve)


OVERRIDES_HELP = ("dotted key=value overrides of the case's settings (training.adam.steps=500 "
                  "device=cuda ...), and variant=NAME for a variant the case defines (physml "
                  "cases lists them: e.g. variant=cpu, a smaller setting of a paper-scale case)")


def _add_run(sub: argparse._SubParsersAction) -> None:
    """``physml run CASE [overrides] [--resume RUN_DIR]``."""
    run = sub.add_parser(
        "run",
        help="run a case file (a path, or a bundled case by name)",
        description="Run a case: physml run cases/burgers.yaml (or: physml run burgers) "
        "[training.adam.steps=500 device=cuda variant=cpu ...] [--resume RUN_DIR]",
    )
    run.add_argument("case", help="case file, or the name of a bundled case (physml cases)")
    run.add_argument("overrides", nargs="*", default=[], help=OVERRIDES_HELP)
    run.add_argument("--resume", type=Path, default=None, help="run folder to continue")
    _add_progress_options(run)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    """``physml validate CASE [overrides]``."""
    validate = sub.add_parser(
        "validate", help="check a case file without running it",
        description="Check a case file, with its overrides, as physml run would read it: keys, "
        "types and values, and the sizes against this machine's memory; prints the resolved "
        "case's summary and exits 0, or names what is wrong and exits 2.")
    validate.add_argument("case", help="case file, or the name of a bundled case (physml cases)")
    validate.add_argument("overrides", nargs="*", default=[], help=OVERRIDES_HELP)


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
    cases = sub.add_parser(
        "cases", help="list the bundled case files",
        description="List the case files that ship with physml: each name (for physml run "
        "NAME), its kind and what it solves, with the variants it offers (variant=NAME).")
    cases.add_argument("--names", action="store_true", help="only the names, one per line")


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    """``physml datasets generate SPEC --out FOLDER``."""
    datasets = sub.add_parser("datasets", help="benchmark datasets")
    datasets_sub = datasets.add_subparsers(  # no dest: a missing one is named by its choices
        parser_class=_Parser, required=True)
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
        help="local Dask worker processes (default: the cores this process may use, on the CPU; "
        "0: in-process, the default on CUDA); not with --scheduler",
    )
    generate.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler, e.g. tcp://host:8786 (its workers solve the "
        "samples)",
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
    (``unit``: what it counts, kept as ``progress_unit`` for :func:`log_interval`)."""
    command.add_argument("--quiet", action="store_true", help="no progress display")
    command.add_argument(
        "--log-every",
        type=float,
        default=LOG_INTERVAL_S,
        help="seconds between progress lines when the output is not a terminal "
        f"(default {LOG_INTERVAL_S:g}; 0: every {unit})",
    )
    command.set_defaults(progress_unit=unit)


def log_interval(args: argparse.Namespace) -> float:
    """``--log-every``, checked.

    Raises:
        ValueError: it is negative or NaN.
    """
    if not args.log_every >= 0:
        raise ValueError(f"--log-every={args.log_every} must be >= 0 seconds (0: every "
                         f"{args.progress_unit})")
    return args.log_every


def check_output_file(out: Path, overwrite: bool) -> None:
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
