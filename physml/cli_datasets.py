"""``physml datasets generate SPEC --out FOLDER``: a benchmark dataset generated (or resumed)
from a spec, with a progress display counting samples (and saying what runs while the count
waits: the kernels compiling, a shard being solved); a sample that blows up ends it with exit
status 1, naming the shard and the sample's seed, and a file that cannot be written (a full
disk, a read-only file system, a quota) with exit status 74, naming the file, and a Dask
scheduler lost mid-run (or every one of its workers) with exit status 69
(:data:`EX_UNAVAILABLE`); the finished shards are kept in each case (:data:`KEPT`). The last
line gives the samples of each split, after a warning (none with ``--quiet``) for a split that
the spec's fractions leave empty.
Run again on the complete dataset of the same spec, it writes nothing, says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys

from .cli_parser import log_interval
from .interrupts import EX_IOERR, is_write_failure, unwritten

SCHEDULER_ADDRESS = re.compile(r"(\w+://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d+")
"""A Dask scheduler's address, as ``dask.distributed.Client`` takes it: ``host:port``, an IPv6
host in brackets, with or without a protocol (``tcp://``, ``tls://``)."""

EX_UNAVAILABLE = 69
"""The exit status of a generation stopped by the loss of its Dask scheduler or of every one
of its workers: ``EX_UNAVAILABLE`` of ``sysexits.h``."""

KEPT = "the finished shards are kept: run the same command again to go on"
"""What a generation stopped before its end leaves (each shard is written whole or not at all),
and how it goes on."""


def generate_command(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .datasets.generate import generate
    from .datasets.linear_systems import LinearSystemSpec
    from .datasets.shard_engines import DaskLost
    from .datasets.spec import SpecRefused, load_spec, resolve_spec_path
    from .progress import PipeConsole, RunProgress
    from .solvers.runtime import quiet_warp, warp_device

    interval = log_interval(args)
    if args.samples is not None and args.samples <= 0:
        raise ValueError(f"--samples={args.samples} must be a positive integer")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers={args.workers} must be >= 0")
    if args.scheduler is not None:
        if args.workers is not None:
            raise ValueError("--workers and --scheduler: give one (--scheduler's workers solve "
                             "the samples; --workers starts local ones)")
        if not SCHEDULER_ADDRESS.fullmatch(args.scheduler):
            raise ValueError(f"--scheduler {args.scheduler!r}: expected a Dask scheduler's "
                             "address, [protocol://]host:port, e.g. tcp://127.0.0.1:8786")
    quiet_warp(args.device)
    device = warp_device(args.device)
    spec = load_spec(args.spec, samples=args.samples)
    console = PipeConsole(stderr=True, quiet=args.quiet)
    with contextlib.ExitStack() as stack:
        shown: list[RunProgress] = []  # the banner and the display start with the first count
        # (the total): a start that fails on the spec, the folder or memory shows neither

        def report(done: int, total: int) -> None:
            if not shown:
                console.print(
                    "[bold]physml datasets generate[/] " + escape(
                        f"{args.spec}: {spec.summary}, {len(spec.parameter_grid())} parameter "
                        f"combination(s) x {spec.samples} samples on {device} -> {args.out}"))
                shown.append(stack.enter_context(
                    RunProgress(spec.pde, total, console, args.quiet, interval)))
            shown[0].update(done, "samples")

        def say(text: str) -> None:
            if shown:
                shown[0].update(shown[0].done, f"samples, {text}")

        try:
            manifest = generate(
                spec,
                args.out,
                device=device,
                workers=args.workers,
                scheduler=args.scheduler,
                overwrite=args.overwrite,
                progress=report,
                status=say,
            )
        except SpecRefused as err:  # checked before the first count: nothing shown or written
            raise ValueError(f"spec {resolve_spec_path(args.spec)}: {err}") from None
        except (FloatingPointError, DaskLost) as err:  # told after the progress display
            failure = err
        except OSError as error:  # a full disk, a read-only file system, a quota
            if not is_write_failure(error, args.out):  # e.g. a closed pipe: told by the caller
                raise
            failure = error
        else:
            failure = None
    if isinstance(failure, OSError):
        print(f"physml: error: {unwritten(failure, args.out)}; {KEPT}", file=sys.stderr)
        return EX_IOERR
    if isinstance(failure, DaskLost):
        print(f"physml: error: {failure}; {KEPT}", file=sys.stderr)
        return EX_UNAVAILABLE
    if failure is not None:  # a sample blew up
        print(f"physml: error: {failure}", file=sys.stderr)
        return 1
    reader = (f"physml.datasets.linear_systems.read_systems({str(args.out / 'train')!r})"
              if isinstance(spec, LinearSystemSpec)
              else f"physml.io.open_dataset({str(args.out)!r}, split='train')")
    counts = manifest["split_samples"]
    for split, count in counts.items():
        if count == 0 and getattr(spec.splits, split) > 0 and not args.quiet:
            print(f"physml: warning: split {split!r} is empty: {spec.samples} samples per "
                  f"parameter combination at the fraction {getattr(spec.splits, split):g} give "
                  "it none (README, 'Benchmark datasets'); raise the spec's samples or --samples",
                  file=sys.stderr)
    split_counts = ", ".join(f"{split} {count}" for split, count in counts.items())
    if not shown:  # no count: generate found this dataset complete (else it counts first)
        print(f"{args.out} holds this dataset, complete: {manifest['samples']} samples "
              f"({split_counts}); nothing to do (open with {reader})")
        return 0
    print(f"wrote {manifest['samples']} samples ({split_counts}) to {args.out} (open with "
          f"{reader})")
    return 0
