"""``physml run``, ``physml validate`` and ``physml cases``: a case file run (or continued with
``--resume``), checked, or listed, and what an interrupted or failed run tells its user.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_parser import log_interval
from .interrupts import EX_IOERR, exit_status, is_write_failure, stops_deferred, unwritten

if TYPE_CHECKING:  # the case kinds import PyTorch: loaded when a command needs them
    from .cases.kind import CaseKind


def cases_command(args: argparse.Namespace) -> int:
    from .cases.registry import DEFAULT_KIND, KINDS, bundled_cases
    from .datasets.yaml_files import read_yaml_mapping

    cases = bundled_cases()
    if args.names:
        print("\n".join(cases))
        return 0
    width = max(map(len, cases))
    for name, path in cases.items():
        raw = read_yaml_mapping(path, "case")
        kind = raw.get("kind", DEFAULT_KIND)
        variants = raw.get("variants") or {}
        offered = f" [variants: {', '.join(variants)}]" if variants else ""
        print(f"{name:{width}s}  {kind:15s}  {raw.get('description', '')}{offered}")
    print("\nkinds: " + "; ".join(f"{k}: {kind.summary}" for k, kind in KINDS.items()))
    print(f"files: {next(iter(cases.values())).parent} (run one by name: physml run NAME)")
    return 0


def validate_command(args: argparse.Namespace) -> int:
    from .cases.registry import case_kind, load_case
    from .cases.run_folder import check_output_folder
    from .devices import require_torch_device

    case = load_case(args.case, args.overrides)
    require_torch_device(case.device)  # as run checks it, without starting Warp
    check_output_folder(case.output)  # as run checks it, without making the run folder
    print(f"{args.case}: valid ({case_kind(case).describe(case)})")
    return 0


def _load_run_case(args: argparse.Namespace):
    """The case to run: the file with its overrides, or, with --resume, the run folder's
    configuration (which the file with its overrides must match). A run folder whose run
    stopped on a NaN/Inf (its ``stopped.txt``) is refused: the same case, resumed from the
    same checkpoint, replays the same steps into the same failure."""
    from .cases.registry import case_kind, load_case
    from .cases.run_folder import CONFIG, STOPPED, killed_at_start

    try:
        requested = load_case(args.case, args.overrides)
    except ValueError:
        if args.resume is None or not _refused_now(args.resume / CONFIG):
            raise
        # the run ran with options a rule added since refuses: its case is read as recorded,
        # and must then equal the run's configuration
        requested = load_case(args.case, args.overrides, recorded=True)
    if args.resume is None:
        return requested
    if not args.resume.is_dir():
        raise ValueError(f"--resume: {str(args.resume)!r} is not a folder" if
                         args.resume.exists() else
                         f"--resume: folder {str(args.resume)!r} does not exist")
    if not (args.resume / CONFIG).is_file() and killed_at_start(args.resume):
        raise ValueError(f"--resume: {str(args.resume)!r} is a run killed before its first "
                         f"checkpoint (it has no {CONFIG}, only what the run had begun); "
                         f"nothing can be resumed: remove {str(args.resume)!r} and start a new "
                         "run")
    if not (args.resume / CONFIG).is_file():
        raise ValueError(f"--resume: {str(args.resume)!r} is not a run folder (no {CONFIG}); "
                         "nothing to resume")
    case = load_case(args.resume / CONFIG, recorded=True)
    kind = case_kind(case)
    if not kind.resumable:  # before the settings: matching them would not help
        raise ValueError(f"--resume: kind {kind.name!r} cannot resume: start a new run")
    if (args.resume / STOPPED).is_file():  # its steps are replayed exactly: so is the failure
        reason = (args.resume / STOPPED).read_text(encoding="utf-8").strip()
        raise ValueError(f"--resume: {str(args.resume)!r} holds {STOPPED}: its run stopped "
                         f"({reason}); a resume would replay the same steps into the same "
                         f"failure: {_new_run_advice(case)}")
    # output.folder: the folder is the one --resume names, wherever the run was started
    keys = [k for k in requested.differences(case) if k.split(".")[:2] != ["output", "folder"]]
    if keys:
        raise ValueError(_mismatch(args, case, requested, keys))
    if not (args.resume / kind.checkpoint).is_file():
        raise ValueError(f"--resume: {str(args.resume)!r} has no {kind.checkpoint} (its run "
                         "keeps none); nothing to resume")
    return case


def _new_run_advice(case) -> str:
    """What cures a run stopped on a numerical failure: a new run of a changed case (float64
    offered only to a case that runs in float32)."""
    wider = ", float64" if getattr(case, "dtype", None) == "float32" else ""
    return f"change the case (a lower learning rate or time step{wider}) and start a new run"


def _refused_now(config: Path) -> bool:
    """Whether a run folder's recorded configuration ``config`` holds options this version
    refuses in a new run (a weight on an exactly imposed condition, before such weights were
    refused)."""
    from .cases.registry import load_case

    if not config.is_file():
        return False
    try:
        load_case(config)
    except ValueError:
        return True
    return False


def _mismatch(args: argparse.Namespace, recorded, requested, keys: list[str]) -> str:
    """Why ``--resume`` refuses: the case (with its overrides) differs from the configuration
    the run folder recorded in ``keys``; names each value on both sides and, where the run's
    case is the one given, the overrides it ran with."""
    import yaml

    given, ran = requested.flat(), recorded.flat()
    absent = object()

    def shown(value: object) -> str:
        if value is absent:
            return "absent"
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
        return text.removesuffix("\n...\n").strip()

    with_overrides = f" with {_command_line(args.overrides)}" if args.overrides else ""
    message = (f"--resume: {args.case}{with_overrides} differs from the configuration of "
               f"{args.resume} (a {recorded.kind} case)")
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    if requested.kind != recorded.kind or requested.name != recorded.name:
        return (f"{message} in {', '.join(keys[:5])}{more}; resume with the case the run was "
                f"started with ({recorded.name})")
    listed = "; ".join(f"{key}: {shown(given.get(key, absent))} here, "
                       f"{shown(ran.get(key, absent))} in the run" for key in keys[:5])
    message = f"{message} in {listed}{';' if more else ''}{more}"
    cure = [f"{key}={shown(ran[key])}" for key in keys if key in ran]
    if len(cure) != len(keys):
        return message + "; resume with the case and the overrides the run was started with"
    return message + f"; give the overrides the run was started with: {_command_line(cure)}"


def run_command(args: argparse.Namespace) -> int:
    if "TORCHELASTIC_RUN_ID" in os.environ:  # set by torchrun in each process it starts
        raise ValueError(f"physml run trains in one process, and torchrun started this one "
                         f"(RANK={os.environ.get('RANK', '?')}, WORLD_SIZE="
                         f"{os.environ.get('WORLD_SIZE', '?')}): run it without torchrun, or "
                         "train over several processes with PINNTrainer or MoETrainer in your "
                         "own script after torch.distributed.init_process_group (README, 'Your "
                         "own PDE')")
    from rich.markup import escape

    from .cases.registry import case_kind, run_case
    from .progress import PipeConsole, RunProgress
    from .solvers.runtime import quiet_warp

    interval = log_interval(args)
    case = _load_run_case(args)
    kind = case_kind(case)
    from .cases.run_folder import (  # after the case is checked
        STOPPED,
        new_run_folder,
        remove_if_empty,
    )
    from .cases.run_lock import held_by_a_run
    from .datasets.atomic_files import write_text
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
        if args.resume is not None and not held_by_a_run(folder):  # else refused below
            console.print(_resumed_from(folder, kind, case), markup=False, highlight=False,
                          soft_wrap=True)
    with RunProgress(case.name, kind.total_steps(case), console, args.quiet,
                     interval) as progress:
        latest = {}  # the last error measured, and the time it was measured at (TENG)

        def on_step(record: dict) -> None:
            if "rel_l2" in record:
                latest.update(rel_l2=record["rel_l2"], t=record.get("t"))
            if "fit_iteration" in record:  # a fit before the first step (TENG)
                progress.update(0, f"initial fit: iteration {record['fit_iteration']}, "
                                   f"error {record['fit_error']:.2e}")
                return
            if "step" not in record:  # progress outside the steps: a status is shown at the
                if "status" in record:  # steps done (a reference solve), a resumed run's last
                    progress.update(progress.done, record["status"])  # measurement waits
                return
            if "status" in record:  # a step that says what it did itself (a mesh solve)
                progress.update(record["step"] + 1, record["status"])
                return
            error = f" rel L2 {latest['rel_l2']:.2e}" if latest else ""
            if latest and latest["t"] is not None and latest["t"] != record.get("t"):
                error += f" at t {latest['t']:.4g}"
            # a record's step counts the updates or time steps done
            done = record["step"]
            status = f"loss {record['loss']:.3e}" if "loss" in record else f"t {record['t']:.4g}"
            progress.update(done, status + error)

        failure = None
        try:
            with stops_deferred():  # a stop waits for the end of the step, checkpointed
                folder, result = run_case(case, folder, resume=args.resume is not None,
                                          on_step=on_step)
        except (NonFiniteLossError, BlowUpError) as err:
            failure = err  # told after the progress display's last line
        except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM
            progress.stop()
            print(_stopped(args, folder, kind, case, "interrupted"), file=sys.stderr)
            return exit_status(interrupt)
        except BaseException as error:
            if is_write_failure(error, folder):  # a full disk, read-only, a quota, a permission
                progress.stop()
                print(_stopped(args, folder, kind, case,
                               f"error: {unwritten(error, folder)}"), file=sys.stderr)
                return EX_IOERR
            if not _removed_if_unresumable(args, folder, kind.checkpoint):
                remove_if_empty(folder)
            raise
    if failure is not None:
        if _removed_if_unresumable(args, folder, kind.checkpoint):
            failure = f"{failure} (before the first checkpoint: removed {folder})"
        elif kind.resumable:  # a resume replays the same steps: it would fail the same way
            write_text(folder / STOPPED, f"{failure}\n")
            failure = (f"{failure} ({folder / kind.checkpoint}); a --resume would replay the "
                       f"same steps into the same failure: {_new_run_advice(case)}")
        print(f"physml: error: {failure}", file=sys.stderr)
        return 1
    print(kind.headline(result))
    outputs = ", ".join(sorted(p.name for p in folder.iterdir()
                               if p.is_file() and not p.name.startswith(".")))
    print(f"run folder: {folder}  ({outputs})")
    return 0


def _resumed_from(folder: Path, kind: CaseKind, case) -> str:
    """The line that says where ``--resume`` continues the run in ``folder``, read from its
    checkpoint (:func:`_checkpoint_at`), or that every step is done, the results then
    computed and written again."""
    done, total, at = _checkpoint_at(folder, kind, case)
    if done >= total:
        return f"{folder} is complete ({at}): its results are computed and written again"
    before = " (no step taken yet)" if done == 0 else ""
    return f"resuming {folder} from its checkpoint at {at}{before}"


def _checkpoint_at(folder: Path, kind: CaseKind, case) -> tuple[int, int, str]:
    """Where the checkpoint in ``folder`` stands: the steps done, the case's total and the two
    in words ("step 1216 of 5500"; a thermomigration run's snapshots with the time reached,
    "snapshot 3 of 10, t = 0.5"; a TENG run's checkpoint records the time, counted here in its
    steps)."""
    import numpy as np

    from .cases.run_folder import read_checkpoint
    from .torch_files import load_checked

    def snapshot_times(path: Path) -> np.ndarray:
        with np.load(path) as index:
            return index["times"]

    total, unit, reached = kind.total_steps(case), "step", ""
    if kind.checkpoint.endswith(".npz"):  # a thermomigration run's index of its snapshots
        times = read_checkpoint(folder, snapshot_times, kind.checkpoint)
        done, unit, reached = len(times) - 1, "snapshot", f", t = {times[-1]:.6g}"
    else:
        state = read_checkpoint(folder, lambda path: load_checked(path, map_location="cpu"),
                                kind.checkpoint)
        done = (state["step"] if "step" in state
                else round((state["t"] - case.domain.t[0]) / case.training.dt))
    return done, total, f"{unit} {done} of {total}{reached}"


def _removed_if_unresumable(args: argparse.Namespace, folder: Path, checkpoint: str) -> bool:
    """Remove the folder a new run (not ``--resume``) made if it holds no checkpoint: nothing
    in it can be resumed. Returns whether it did."""
    if args.resume is not None or (folder / checkpoint).is_file():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def _stopped(args: argparse.Namespace, folder: Path, kind: CaseKind, case, why: str) -> str:
    """What to tell a user whose run stopped before its end (``why``: "interrupted" by Ctrl-C,
    or the error of a file it could not write): what is kept (where its checkpoint stands,
    read from it: :func:`_checkpoint_at`) and the command that resumes it;
    a new run's folder with nothing to resume is removed (a folder given with ``--resume``
    never is)."""
    from .cases.run_folder import CONFIG

    removed = f"physml: {why} before the first checkpoint; nothing to resume (removed {folder})"
    if _removed_if_unresumable(args, folder, kind.checkpoint):
        return removed
    if not kind.resumable:
        return f"physml: {why}; kind {kind.name!r} cannot resume: start a new run " \
               f"({folder} keeps its {kind.checkpoint})"
    if args.resume is None and not (folder / CONFIG).is_file():  # stopped before its config
        shutil.rmtree(folder, ignore_errors=True)
        return removed
    try:
        kept = f"its checkpoint at {_checkpoint_at(folder, kind, case)[2]}"
    except (OSError, ValueError):  # a folder that can no longer be read (a permission taken)
        kept = "the last checkpoint"
    return (f"physml: {why}; {folder} keeps {kept}. Continue with:\n  "
            f"{_resume_command(args, folder)}")


def _resume_command(args: argparse.Namespace, folder: Path) -> str:
    """The command line that resumes the run in ``folder``."""
    return _command_line(["physml", "run", str(args.case), *args.overrides, "--resume",
                          str(folder)])


_CMD_SPECIAL = re.compile(r'[()%!^"<>&|]')
"""The characters ``cmd.exe`` acts on in a command line (``&``, ``|`` and ``<``, ``>`` start
another command or a redirection, ``%`` and ``!`` expand variables)."""


def _command_line(words: list[str]) -> str:
    """``words`` as one line to paste into this system's shell: on Windows in double quotes
    where needed, as a program started from ``cmd.exe`` splits its command line
    (``subprocess.list2cmdline``), and, where a word holds a character ``cmd.exe`` acts on,
    every such character of the line (the quotes included) after a ``^``, which ``cmd.exe``
    removes before starting the program; elsewhere quoted for a POSIX shell
    (``shlex.join``)."""
    if sys.platform == "win32":
        line = subprocess.list2cmdline(words)
        if any(_CMD_SPECIAL.search(word) for word in words):
            line = _CMD_SPECIAL.sub(r"^\g<0>", line)
        return line
    return shlex.join(words)
