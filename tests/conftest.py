import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import warp as wp

wp.config.log_level = wp.LOG_ERROR


def observed_order(hs, errors) -> float:
    """Least-squares slope of log(error) against log(h)."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


def damage_a_tensor(path) -> str:
    """Flip 8 bytes inside the largest tensor of the ``torch.save`` archive at ``path`` (its
    zip structure intact); returns the damaged part's name."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        part = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = bytearray(Path(path).read_bytes())
    header = part.header_offset  # the local header's name and extra lengths: bytes 26 to 29
    start = header + 30 + int.from_bytes(raw[header + 26 : header + 28], "little") \
        + int.from_bytes(raw[header + 28 : header + 30], "little") + 16
    raw[start : start + 8] = bytes(b ^ 0xFF for b in raw[start : start + 8])
    Path(path).write_bytes(bytes(raw))
    return part.filename.split("/")[-1]


def shard_stamps(folder, but) -> dict:
    """(modification time, inode) of every shard under ``folder`` except ``but``: unchanged by
    a resume that leaves those shards alone."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.rglob("shard-*.h5")
            if p != but}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_in_process(capsys):
    """``physml ARGS`` run by its ``main`` in this process: the exit status and what it
    printed, without an interpreter start-up (for the many refusals of a bad case; a few
    tests run the real ``physml`` process)."""
    from physml.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        printed = capsys.readouterr()
        return CliResult(code, printed.out, printed.err)

    return run


@pytest.fixture
def saved_figures(monkeypatch, tmp_path):
    """Figures passed to ``savefig``, kept for inspection (an empty file is written in their
    stead, with ``tmp_path`` the working folder)."""
    import matplotlib.figure

    figures = []

    def save(fig, path, *args, **kwargs):
        figures.append(fig)
        Path(path).touch()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", save)
    return figures


@pytest.fixture
def script(monkeypatch):
    """``script(name)``: benchmarks/<name>.py imported as a module (its ``_common`` found)."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}",
                                                      root / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def slowed_figures(monkeypatch, module, seconds: float = 0.3) -> list[list[str]]:
    """Make ``module.plot_training(case, trainer, folder, ...)`` note the files of ``folder``
    as it starts, then take ``seconds`` longer; returns the notes, one per call."""
    import time

    written, plot_training = [], module.plot_training

    def slow_figures(case, trainer, folder, *rest):
        written.append(sorted(p.name for p in folder.iterdir()))
        time.sleep(seconds)
        plot_training(case, trainer, folder, *rest)

    monkeypatch.setattr(module, "plot_training", slow_figures)
    return written

