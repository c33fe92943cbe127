"""Atomic writes (one helper for text, bytes, HDF5 and images: a failed write leaves the
target as it was and no temporary file) and the progress lines of ``physml solve`` and
``physml datasets generate`` when the output is not a terminal."""

import os
import re

import h5py
import numpy as np
import pytest

from physml.datasets.atomic_files import atomic_write, write_text
from physml.datasets.store import trajectory_dataset, write_dataset
from physml.solvers import Grid

OLD = b"the file as it was\n"


def _text(tmp):
    tmp.write_text("half a text")


def _bytes(tmp):
    tmp.write_bytes(b"\x00half\xff")


def _hdf5(tmp):
    with h5py.File(tmp, "w") as f:
        f.create_dataset("u", data=np.arange(4.0))


def _png(tmp):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(tmp)  # the format from the temporary name's suffix
    plt.close(fig)


CONTENTS = {"text": (_text, "a.txt"), "bytes": (_bytes, "a.npy"), "hdf5": (_hdf5, "a.h5"),
            "png": (_png, "a.png")}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("kind", list(CONTENTS))
def test_a_write_that_raises_leaves_the_target_and_no_temporary_file(tmp_path, kind, error):
    write, name = CONTENTS[kind]
    target = tmp_path / name
    target.write_bytes(OLD)
    written = []

    def fail(tmp):
        write(tmp)
        written.append(tmp.stat().st_size)
        raise error("stopped mid-write")

    with pytest.raises(error, match="stopped mid-write"):
        atomic_write(target, fail)
    assert written and written[0] > 0  # the temporary file held content when the write failed
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("kind", list(CONTENTS))
def test_a_write_that_completes_replaces_the_target(tmp_path, kind):
    write, name = CONTENTS[kind]
    target = tmp_path / name
    target.write_bytes(OLD)
    assert atomic_write(target, write) == target
    assert target.read_bytes() != OLD
    assert [p.name for p in tmp_path.iterdir()] == [name]


def _dataset():
    grid = Grid((8,), (0.0,), (1.0,))
    return trajectory_dataset(np.zeros((2, 8)), np.array([0.0, 0.1]), grid, attrs={"pde": "x"})


def _write_pdebench(path):
    from physml.datasets.pdebench import write_pdebench

    ds = _dataset().expand_dims(sample=[3])
    write_pdebench(ds, path)


def _animate(path):
    from physml.cases.microstructure_figures import MODEL_UNITS, animate_microstructure

    grid = Grid((4, 4), (0.0, 0.0), (1.0, 1.0))
    animate_microstructure(grid, [0.0, 1.0], [np.zeros((4, 4)), np.ones((4, 4))], path,
                           units=MODEL_UNITS)


WRITERS = {
    "write_text": (lambda path: write_text(path, "text"), "spec.yaml"),
    "write_dataset": (lambda path: write_dataset(_dataset(), path), "u.h5"),
    "write_pdebench": (_write_pdebench, "u_pdebench.hdf5"),
    "animate_microstructure": (_animate, "c.gif"),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_each_writer_is_atomic(tmp_path, monkeypatch, writer):
    """Interrupted at the rename, the target is untouched and the temporary file is gone;
    then a complete write replaces the target (a GIF still a GIF: the temporary name keeps
    the suffix the image writer reads its format from)."""
    write, name = WRITERS[writer]
    target = tmp_path / name
    target.write_bytes(OLD)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write(target)
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == [name]
    write(target)
    assert target.read_bytes() != OLD
    assert [p.name for p in tmp_path.iterdir()] == [name]
    if name.endswith(".gif"):
        assert target.read_bytes()[:4] == b"GIF8"


PROGRESS_LINE = r"^\[ *\d+\.\d s\] {name} (\d+)/(\d+) {unit}$"
"""A plain progress line: ``[   0.1 s] heat1d 12/40 steps``."""

SPEC = """
pde: advection1d
grid: [16]
parameters: {beta: 0.5}
t_end: 0.1
n_saves: 3
initial_condition: {kind: pdebench_sines}
samples: 3
shard_size: 1
seed: 7
"""


@pytest.fixture
def not_a_terminal(monkeypatch):
    """Standard error is no terminal for rich (``> log``, ``nohup``), whatever runs the tests."""
    monkeypatch.setenv("TTY_COMPATIBLE", "0")


@pytest.mark.parametrize("command, name, unit", [
    (["solve", "heat1d", "--nx", "16", "--t-end", "0.01", "--n-saves", "5",
      "--out", "{folder}/u.h5"], "heat1d", "steps"),
    (["datasets", "generate", "{folder}/spec.yaml", "--out", "{folder}/d", "--workers", "0"],
     "advection1d", "samples"),
])
def test_progress_lines_in_a_log(tmp_path, cli_in_process, not_a_terminal, command, name,
                                 unit):
    """With output not a terminal and ``--log-every 0``, a plain line per unit of work, the
    last one the total; ``--quiet`` prints none, and the default interval none on a run this
    short but the last."""
    (tmp_path / "spec.yaml").write_text(SPEC)
    args = [a.format(folder=tmp_path) for a in command]
    line = re.compile(PROGRESS_LINE.format(name=name, unit=unit))

    def counts(stderr: str) -> list[tuple[int, int]]:
        return [(int(m[1]), int(m[2])) for m in map(line.match, stderr.splitlines()) if m]

    result = cli_in_process(*args, "--log-every", "0")
    assert result.returncode == 0, result.stderr
    done = counts(result.stderr)
    assert len(done) >= 3 and done == sorted(set(done))  # each count once, in order
    assert done[-1][0] == done[-1][1] == (3 if unit == "samples" else done[-1][1])
    assert "\x1b[" not in result.stderr  # no terminal codes in a log

    result = cli_in_process(*args, "--overwrite", "--quiet", "--log-every", "0")
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == []

    result = cli_in_process(*args, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == [done[-1]]


def test_a_unit_of_work_longer_than_the_interval_still_gets_its_lines(monkeypatch):
    """A log gets its line every interval even while one unit of work runs on (a first step
    compiling Warp's kernels), with the count reached; none after the display ends; an
    infinite interval (a line at the end only) raises nothing in the timer's thread."""
    import io
    import threading
    import time

    raised = []
    monkeypatch.setattr(threading, "excepthook", raised.append)

    from physml.progress import PipeConsole, RunProgress

    log = io.StringIO()
    console = PipeConsole(file=log, force_terminal=False)
    with RunProgress("fe_c", 41, console, interval=0.05) as progress:
        time.sleep(0.3)
        progress.update(1)
        time.sleep(0.3)
    lines = [re.match(PROGRESS_LINE.format(name="fe_c", unit=""), line.rstrip() + " ")
             for line in log.getvalue().splitlines()]
    counts = [int(m[1]) for m in lines if m]
    assert len(counts) == len(lines) and counts.count(0) >= 3 and counts.count(1) >= 3
    assert counts == sorted(counts)
    printed = log.getvalue()
    time.sleep(0.2)
    assert log.getvalue() == printed
    for interval in (float("inf"), 1e300):  # the command line takes any interval >= 0
        log = io.StringIO()
        with RunProgress("fe_c", 2, PipeConsole(file=log, force_terminal=False),
                         interval=interval) as progress:
            progress.update(2)
        assert log.getvalue().rstrip().endswith("fe_c 2/2")
    assert raised == []


@pytest.mark.parametrize("command", [
    ["solve", "heat1d", "--out", "{folder}/u.h5"],
    ["datasets", "generate", "{folder}/spec.yaml", "--out", "{folder}/d"],
])
def test_a_negative_log_interval_is_refused_before_any_work(tmp_path, cli_in_process,
                                                           command):
    (tmp_path / "spec.yaml").write_text(SPEC)
    result = cli_in_process(*[a.format(folder=tmp_path) for a in command], "--log-every", "-1")
    assert result.returncode == 2
    assert "--log-every=-1.0 must be >= 0 seconds" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_a_mesh_run_s_solution_vtu_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """solution.vtu was written in place: a run killed while writing it (a finished run
    resumed rewrites it) left a torn file beside a complete metrics.json."""
    import errno

    import meshio

    from physml.cases.mesh_pde_results import Result, write_results
    from physml.cases.registry import load_case
    from physml.devices import Stopwatch
    from physml.solvers import mesh as pm

    case = load_case("heat_surface", ["output.figures=false"])
    mesh = pm.disc(0.4)
    write_results(case, Result(mesh, {"u": mesh.points[:, 0]}, {}), tmp_path, Stopwatch())
    vtu = tmp_path / "solution.vtu"
    whole = vtu.read_bytes()
    write = meshio.Mesh.write

    def torn(self, path, *args, **kwargs):  # part of the file written, then the disk is full
        write(self, path, *args, **kwargs)
        with open(path, "r+b") as file:
            file.truncate(len(whole) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(meshio.Mesh, "write", torn)
    with pytest.raises(OSError, match="No space left on device") as refused:
        write_results(case, Result(mesh, {"u": mesh.points[:, 1]}, {}), tmp_path,
                      Stopwatch())
    assert refused.value.filename == str(vtu)
    assert vtu.read_bytes() == whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fields.h5", "metrics.json",
                                                          "solution.vtu"]


def test_a_checkpoint_on_a_full_disk_is_an_os_error_naming_it(tmp_path, monkeypatch):
    """torch.save given a path raised PyTorch's RuntimeError ("unexpected pos") on a full
    disk, a traceback with the divergence's exit status; through a file object it is an
    OSError, which the CLI names with the resume command."""
    import errno
    import io

    import torch

    from physml import torch_files

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "checkpoint.pt"
    torch_files.save_torch_file(path, {"step": 1})
    monkeypatch.setattr(torch_files, "open", lambda name, mode: FullDisk(name, mode),
                        raising=False)
    with pytest.raises(OSError) as caught:
        torch_files.save_torch_file(path, {"step": 2, "weights": torch.ones(1000)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert torch_files.load_checked(path) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize("npy", [False, True])
def test_arrays_are_written_through_python_so_a_full_disk_names_its_error(tmp_path, npy):
    """NumPy's tofile (and np.save on a file) reported a full disk as "N requested and M
    written", an OSError without the system's error number: a thermomigration or mesh heat
    run on a full disk ended in a traceback instead of exit 74."""
    import errno
    import io

    from physml.datasets.atomic_files import write_array

    array = np.arange(12.0).reshape(3, 4)
    with open(tmp_path / "a", "wb") as file:
        write_array(file, array, npy=npy)
    read = np.load(tmp_path / "a") if npy else np.fromfile(tmp_path / "a").reshape(3, 4)
    np.testing.assert_array_equal(read, array)

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with FullDisk(tmp_path / "b", "wb") as file, pytest.raises(OSError) as caught:
        write_array(file, array, npy=npy)
    assert caught.value.errno == errno.ENOSPC


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child")
def test_a_progress_display_closes_while_a_forked_child_lives_on():
    """A child forked within the display (a DataLoader's persistent worker) holds the signal
    socket's writing end: closing it alone did not end the watcher, and the display's end
    waited for the child (for ever with persistent workers)."""
    import io
    import signal
    import time

    from physml.progress import PipeConsole, RunProgress

    with RunProgress("fe_c", 2, PipeConsole(file=io.StringIO(), force_terminal=False),
                     interval=60):
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            time.sleep(30)
            os._exit(0)
        start = time.perf_counter()
    closed = time.perf_counter() - start
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    assert closed < 5.0  # 0.001 s; the child's 30 s before


def test_an_interrupt_is_acknowledged_while_the_main_thread_is_held_in_native_code():
    """Python runs a signal's handler only once the main thread returns from native code:
    during a first run's Warp kernel build, Ctrl-C or SIGTERM went unanswered for most of a
    minute, the progress lines printing on. The line now says at once that it was received,
    and the lines after keep saying it."""
    import hashlib
    import io
    import signal
    import threading
    import time

    from physml.interrupts import Terminated, sigterm_as_interrupt
    from physml.progress import PipeConsole, RunProgress

    log, entering, acknowledged = io.StringIO(), threading.Event(), []

    def send_and_watch() -> None:
        entering.wait()
        time.sleep(0.1)  # the main thread is in the hash by now
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.perf_counter() + 30
        while "SIGTERM received" not in log.getvalue() and time.perf_counter() < deadline:
            time.sleep(0.005)
        acknowledged.append(time.perf_counter())

    sender = threading.Thread(target=send_and_watch)
    sender.start()
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        try:
            with RunProgress("fe_c", 4, PipeConsole(file=log, force_terminal=False),
                             interval=60) as progress:
                progress.update(1, "solving")
                entering.set()
                hashlib.pbkdf2_hmac("sha256", b"x", b"salt", 1_500_000)  # native, GIL released
        finally:
            returned = time.perf_counter()
            sender.join()
    assert acknowledged[0] < returned
    assert re.fullmatch(r"\[ +\d+\.\d s\] fe_c 1/4 SIGTERM received; stopping after the "
                        r"current step or kernel build\n", log.getvalue())


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_is_noticed_on_the_watcher_s_thread_and_the_wakeup_fd_cleared(signum):
    """The watcher calls back with the signal's number as it arrives, and nothing is left
    behind: no wakeup file descriptor, no thread."""
    import signal
    import threading

    from physml.interrupts import interrupts_noticed

    signum, got, noticed = getattr(signal, signum), [], threading.Event()

    def notify(n: int) -> None:
        got.append((n, threading.current_thread().name))
        noticed.set()

    previous = signal.signal(signum, lambda n, frame: None)  # Python's handler: a no-op
    try:
        with interrupts_noticed(notify):
            signal.raise_signal(signum)
            assert noticed.wait(5.0), f"{signum!r} not noticed within 5 s"
    finally:
        signal.signal(signum, previous)
    assert got == [(signum, "physml-interrupts")]
    assert signal.set_wakeup_fd(-1) == -1
    assert "physml-interrupts" not in [t.name for t in threading.enumerate()]


def test_a_progress_display_off_the_main_thread_watches_no_signals():
    """Only the main thread can set a wakeup file descriptor: a display made on another
    thread (a notebook's, a GUI's) shows its lines and watches nothing."""
    import io
    import threading

    from physml.progress import PipeConsole, RunProgress

    log, raised = io.StringIO(), []

    def work() -> None:
        try:
            with RunProgress("fe_c", 1, PipeConsole(file=log, force_terminal=False),
                             interval=60) as progress:
                progress.update(1)
        except Exception as error:  # noqa: BLE001 (handed to the main thread)
            raised.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert raised == []
    assert log.getvalue().rstrip().endswith("fe_c 1/1")


def test_a_wakeup_fd_set_before_a_progress_display_is_left_as_it_was():
    """An event loop's wakeup file descriptor (asyncio sets one) is kept inside and after the
    display, not replaced, nor cleared at its end."""
    import io
    import signal
    import socket

    from physml.progress import PipeConsole, RunProgress

    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    loop_s = sender.fileno()
    signal.set_wakeup_fd(loop_s)
    try:
        with RunProgress("fe_c", 1, PipeConsole(file=io.StringIO(), force_terminal=False),
                         interval=60) as progress:
            inside = signal.set_wakeup_fd(loop_s)
            progress.update(1)
    finally:
        after = signal.set_wakeup_fd(-1)
        receiver.close()
        sender.close()
    assert inside == after == loop_s


def test_an_interrupt_s_acknowledgement_replaces_the_status_of_every_line_after():
    import io
    import signal
    import threading

    from physml.progress import PipeConsole, RunProgress

    log = io.StringIO()
    with RunProgress("fe_c", 4, PipeConsole(file=log, force_terminal=False),
                     interval=60) as progress:
        progress.update(1, "training")
        progress._interrupted(signal.SIGTERM)  # as the watcher calls it
        progress.update(2, "training")
    notice = "SIGTERM received; stopping after the current step or kernel build"
    assert [line.split("] ", 1)[1] for line in log.getvalue().splitlines()] == [
        f"fe_c 1/4 {notice}", f"fe_c 2/4 {notice}"]
    with RunProgress("fe_c", 1, PipeConsole(file=io.StringIO(), force_terminal=False),
                     quiet=True):  # a quiet display watches no signals either
        assert "physml-interrupts" not in [t.name for t in threading.enumerate()]


def test_a_saved_figure_is_closed_whether_its_save_succeeds_or_fails(tmp_path):
    import matplotlib.pyplot as plt

    from physml.cases.run_folder import save_figure

    open_before = set(plt.get_fignums())
    fig = plt.figure()
    save_figure(fig, tmp_path / "done.png")
    assert (tmp_path / "done.png").stat().st_size > 0
    fig = plt.figure()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "figure.unknown-format")
    assert set(plt.get_fignums()) == open_before
    assert not (tmp_path / "figure.unknown-format").exists()
