"""Progress of a long command, readable on a terminal and in a log file alike.

On a terminal, a live bar (rich). When the console is not a terminal (``nohup``, a batch
scheduler, ``> log``), a live bar shows nothing until the end, so a plain line is printed
instead every ``interval`` seconds and once at the end::

    [  42.1 s] burgers 1250/5500 loss 3.214e-04 rel L2 8.12e-03

A timer prints the line too when the work gives no update for an interval (a first step that
waits for Warp to compile its kernels, a long sample), with the count reached so far.

SIGINT or SIGTERM is acknowledged at once, on the line (or the bar) and on every line after,
although the work stops only when the main thread returns to Python (Warp's kernel build, on
a first run, finishes first)::

    [   150.2 s] burgers 0/5500 SIGINT received; stopping after the current step or kernel build

Under :func:`~physml.interrupts.stops_deferred` (``physml run``) the line says what the stop
waits for: the end of the step under way, with its checkpoint, where a step loop runs
(:func:`~physml.interrupts.step_loop`), else only the kernel build or solve under way::

    [  42.4 s] burgers 1216/5500 SIGTERM received; checkpointing and stopping after this step
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import ExitStack

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .interrupts import deferring_stops, interrupts_noticed, stops_at_step_end

LOG_INTERVAL_S = 30.0


class PipeConsole(Console):
    """A rich ``Console`` whose closed pipe raises Python's ``BrokenPipeError`` (which the
    command line answers with exit status 141, quietly) instead of rich's exit status 1, and
    which writes each line whole where the output is not a terminal (a log, a pipe: no wrap
    at rich's 80 columns there)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.soft_wrap = self.soft_wrap or not self.is_terminal

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


class RunProgress:
    """A progress display for ``total`` units of work named ``description``: that of
    ``physml run``, ``physml solve`` and ``physml datasets generate``.

    Args:
        description: what runs (the case's name, the PDE).
        total: units of work (steps, samples) at completion.
        console: where to write (stderr in the CLI).
        quiet: show nothing.
        interval: seconds between plain lines when the console is not a terminal.
    """

    def __init__(self, description: str, total: int, console: Console, quiet: bool = False,
                 interval: float = LOG_INTERVAL_S) -> None:
        self.description, self.total, self.console = description, total, console
        self.quiet, self.interval = quiet, interval
        self.live = console.is_terminal and not quiet
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[status]}"),
            TimeElapsedColumn(), console=console, disable=not self.live)
        self._task = self._bar.add_task(escape(description), total=total, status="")
        self._started = self._last_line = time.perf_counter()
        self._state = (0, "")
        # the state of the last line printed; the start counts as printed, so that a run with
        # nothing left to do (a finished run resumed) prints no "0/total" line
        self._printed: tuple[int, str] = self._state
        self._stopped = False
        self._notice: str | None = None  # the acknowledgement of an interrupt, once received
        self._watch = ExitStack()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._timer = threading.Thread(target=self._lines, daemon=True,
                                       name="physml-progress")

    def __enter__(self) -> RunProgress:
        self._bar.__enter__()
        if not self.quiet:
            self._watch.enter_context(interrupts_noticed(self._interrupted))
        if not (self.live or self.quiet) and 0 < self.interval < threading.TIMEOUT_MAX:
            self._timer.start()  # (an interval of inf: lines at the end only)
        return self

    def __exit__(self, *exc) -> None:
        self._end_lines()
        self._bar.__exit__(*exc)
        if exc[0] is None and not (self.live or self.quiet or self._stopped) \
                and self._printed != self._state:
            self._line()

    def stop(self) -> None:
        """End the display (before printing a message of one's own): no line follows."""
        self._end_lines()
        self._bar.stop()
        self._stopped = True

    def _line_if_due(self) -> None:
        """A plain line where none was printed for ``interval`` seconds."""
        with self._lock:
            if not self._done.is_set() and \
                    time.perf_counter() - self._last_line >= self.interval:
                self._line()

    def _lines(self) -> None:
        """The plain lines' timer, for units of work longer than ``interval``."""
        while not self._done.wait(self._last_line + self.interval - time.perf_counter()):
            self._line_if_due()

    def _interrupted(self, signum: int) -> None:
        """Say at once that signal ``signum`` was received (called off the main thread, which
        may be held in native code), and keep it as the status of the lines after."""
        if stops_at_step_end():
            stopping = "checkpointing and stopping after this step"
        elif deferring_stops():
            stopping = "stopping once the kernel build or solve under way returns"
        else:
            stopping = "stopping after the current step or kernel build"
        self._notice = f"{signal.Signals(signum).name} received; {stopping}"
        self._state = (self._state[0], self._notice)
        if self.live:
            self._bar.update(self._task, status=self._notice)
            return
        with self._lock:
            if not self._done.is_set():
                self._line()

    def _end_lines(self) -> None:
        self._watch.close()
        self._done.set()
        if self._timer.is_alive() and self._timer is not threading.current_thread():
            self._timer.join()

    @property
    def done(self) -> int:
        """The units of work done so far (the last :meth:`update`'s count)."""
        return self._state[0]

    def update(self, completed: int, status: str = "") -> None:
        """``completed`` units done; ``status`` is shown after the count (after an interrupt,
        its acknowledgement instead)."""
        status = self._notice or status
        self._state = (completed, status)
        if self.live:
            self._bar.update(self._task, completed=completed, status=status)
        elif not self.quiet:
            self._line_if_due()

    def _line(self) -> None:
        self._last_line = now = time.perf_counter()
        completed, status = self._printed = self._state
        self.console.print(f"[{now - self._started:8.1f} s] {self.description} "
                           f"{completed}/{self.total} {status}".rstrip(), markup=False,
                           highlight=False, soft_wrap=True)
