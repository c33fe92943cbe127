"""The ``physml`` command.

    physml --version
    physml solve burgers1d --nx 1024 --nu 0.01 --t-end 1 --out u.h5

Mistakes in the input end with one line on stderr and exit status 2; a numerical blow-up ends
with the step it happened at and exit status 1, after saving the last finite state; a file that
``run`` or ``datasets generate`` cannot write (a full disk, a read-only file system, a quota)
ends with its name and exit status 74, the work done kept as Ctrl-C keeps it; Ctrl-C and
SIGTERM stop a command alike (exit status 130 and 143).

This module dispatches a parsed command line (``physml.cli_parser``) to its command
(``physml.cli_solve``, ``cli_datasets``, ``cli_cases``, ``cli_trained``) and turns errors and
Ctrl-C (and SIGTERM) into one line and an exit status.
"""

from __future__ import annotations

import os
import re
import sys

from .cli_cases import cases_command, run_command, validate_command
from .cli_datasets import KEPT, generate_command
from .cli_parser import build_parser, command_of
from .cli_solve import solve_command
from .cli_trained import export_command, predict_command
from .interrupts import exit_status, sigterm_as_interrupt, stops_end_the_process
from .threads import prefer_passive_wait

INTERRUPTED = {
    "solve": "physml: interrupted; nothing was written",
    "datasets": f"physml: interrupted; {KEPT}",
}
"""What Ctrl-C (or SIGTERM) leaves, per command (``run`` tells it from the run folder)."""


OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")
"""A case override, ``dotted.key=value``."""


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` and return its exit status. Without ``argv``, the process's
    own command line (``sys.argv``): the process then exits, and a SIGINT or SIGTERM from
    here on ends it quietly (:func:`~physml.interrupts.stops_end_the_process`)."""
    prefer_passive_wait()  # before PyTorch starts its OpenMP threads
    try:
        with sigterm_as_interrupt():
            return _main(argv)
    finally:
        if argv is None:
            stops_end_the_process()


def _main(argv: list[str] | None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    try:  # building solve's options imports Warp and the solvers: a second a Ctrl-C may fall in
        parser = build_parser(solve_options=command_of(arguments) == "solve")
    except KeyboardInterrupt as interrupt:
        print("physml: interrupted", file=sys.stderr)
        return exit_status(interrupt)
    args, extra = parser.parse_known_args(arguments)
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
            "solve": solve_command,
            "datasets": generate_command,
            "run": run_command,
            "validate": validate_command,
            "cases": cases_command,
            "predict": predict_command,
            "export": export_command,
        }
        return commands[args.command](args)
    except ValueError as err:
        print(f"physml: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # ``run`` says more itself
        print(INTERRUPTED.get(args.command, "physml: interrupted"), file=sys.stderr)
        return exit_status(interrupt)
    except BrokenPipeError:  # the reader went away (physml cases | head -1): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
