"""A stop under ``physml run`` (SIGINT, SIGTERM) waits for the end of the step under way and
writes its checkpoint there: the resumed run is the uninterrupted one, bit for bit, and the
stop message names the step the checkpoint holds."""

import json
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import xarray as xr
from test_teng import TINY_TENG

from physml.cases.registry import load_case, run_case
from physml.interrupts import (
    Terminated,
    pending_signal,
    raise_pending,
    step_loop,
    stop_pending,
    stops_deferred,
)

TINY_BURGERS = ["training.adam.steps=20", "training.lbfgs.steps=0", "model.width=8",
                "model.depth=2", "evaluation.nx=8", "evaluation.nt=3", "evaluation.every=4",
                "training.checkpoint_every=5", "output.figures=false"]


def _signal_at(step: int, signum: int = signal.SIGTERM, key: str = "step"):
    """An ``on_step`` that sends ``signum`` to this process at record ``step``."""
    def on_step(record: dict) -> None:
        if record.get(key) == step:
            signal.raise_signal(signum)
    return on_step


def _stopped_and_resumed(case, tmp_path, stop_at: int, **kwargs):
    """``case`` run whole in ``tmp_path/whole``, and in ``tmp_path/stopped`` stopped by a
    SIGTERM at step ``stop_at`` under :func:`stops_deferred`; returns the two folders and the
    stopped run's checkpoint, read before it is resumed to the end."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir()
    stopped.mkdir()
    run_case(case, whole)
    with stops_deferred(), pytest.raises(Terminated):
        run_case(case, stopped, on_step=_signal_at(stop_at, **kwargs))
    assert not (stopped / "metrics.json").exists()
    checkpoint = torch.load(stopped / "checkpoint.pt", weights_only=False)
    run_case(case, stopped, resume=True)
    return whole, stopped, checkpoint


def _same_metrics(whole, stopped, timed=("wall_s", "train_s", "step_s", "stepping_s")):
    """The two runs' ``metrics.json`` agree bar the timings."""
    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k not in timed}
        if isinstance(value, list):
            return [untimed(v) for v in value]
        return value

    metrics = [json.loads((f / "metrics.json").read_text()) for f in (whole, stopped)]
    assert untimed(metrics[0]["history"]) == untimed(metrics[1]["history"])
    summary = [{k: v for k, v in m["summary"].items() if "s" not in k.split("_")}
               for m in metrics]  # timings: wall_s, solve_s_per_step, ...
    assert untimed(summary[0]) == untimed(summary[1])


def _same_arrays(whole, stopped, name):
    with xr.open_dataset(whole / name) as a, xr.open_dataset(stopped / name) as b:
        assert set(a.data_vars) == set(b.data_vars)
        for key in a.data_vars:
            np.testing.assert_array_equal(a[key].values, b[key].values)


def test_a_stopped_pinn_run_keeps_the_step_it_stopped_at_and_resumes_bitwise(tmp_path):
    case = load_case("burgers", TINY_BURGERS)
    whole, stopped, checkpoint = _stopped_and_resumed(case, tmp_path, stop_at=7)
    assert checkpoint["step"] == 7 and len(checkpoint["history"]) == 7  # not 5, the last kept
    _same_metrics(whole, stopped)
    _same_arrays(whole, stopped, "predictions.h5")
    models = [torch.load(f / "checkpoint.pt", weights_only=False)["model"]
              for f in (whole, stopped)]
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])


def test_a_second_signal_stops_at_once_keeping_the_last_checkpoint(tmp_path):
    case = load_case("burgers", TINY_BURGERS)
    after = []

    def insist(record: dict) -> None:
        if record.get("step") == 7:
            signal.raise_signal(signal.SIGTERM)  # recorded for the end of the step
            assert stop_pending()
            signal.raise_signal(signal.SIGINT)  # the user insists: raised here
            after.append(record["step"])

    with stops_deferred(), pytest.raises(KeyboardInterrupt) as raised:
        run_case(case, tmp_path, on_step=insist)
    assert type(raised.value) is KeyboardInterrupt and not after  # SIGINT's, at once
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 5
    assert not stop_pending()


def test_deferral_holds_inside_step_loops_only_and_is_undone_after():
    """Outside a step loop (a reference solve, a kernel build, the results' writing) a signal
    raises at once; inside, it is recorded until the loop raises it; without
    :func:`stops_deferred` (the library) nothing is deferred."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stops_deferred():
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        with step_loop():
            signal.raise_signal(signal.SIGINT)
            assert stop_pending()
            with pytest.raises(KeyboardInterrupt) as raised:
                raise_pending()
            assert type(raised.value) is KeyboardInterrupt and not stop_pending()
        with pytest.raises(Terminated):  # arrived after the loop's last check: raised on leaving
            with step_loop():
                signal.raise_signal(signal.SIGTERM)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    with step_loop(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_repeated_sigterm_leaves_the_stop_at_the_step_end_and_an_agreed_stop_is_raised():
    """A batch system and ``torchrun`` may each send SIGTERM: the second one is no insisting
    Ctrl-C. A stop another process recorded (``agreed``) is raised here too."""
    with stops_deferred():
        with step_loop():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)  # no Terminated here
            assert pending_signal() == signal.SIGTERM
            with pytest.raises(Terminated):
                raise_pending()
            assert pending_signal() == 0
            raise_pending()  # nothing recorded: nothing raised
            with pytest.raises(Terminated):
                raise_pending(agreed=signal.SIGTERM)
            with pytest.raises(KeyboardInterrupt) as raised:
                raise_pending(agreed=signal.SIGINT)
            assert type(raised.value) is KeyboardInterrupt


def test_the_progress_line_says_what_a_stop_waits_for():
    import io

    from physml.progress import PipeConsole, RunProgress

    def notice() -> str:
        log = io.StringIO()
        with RunProgress("burgers", 4, PipeConsole(file=log, force_terminal=False),
                         interval=60) as progress:
            progress._interrupted(signal.SIGTERM)  # as the watcher calls it
        return log.getvalue().split("SIGTERM received; ")[1].strip()

    assert notice() == "stopping after the current step or kernel build"
    with stops_deferred():
        assert notice() == "stopping once the kernel build or solve under way returns"
        with step_loop():
            assert notice() == "checkpointing and stopping after this step"


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_physml_run_stopped_names_the_step_its_checkpoint_holds(tmp_path, monkeypatch,
                                                                cli_in_process, signum,
                                                                status):
    from physml.train.pinn import PINNTrainer

    one_step = PINNTrainer._one_step

    def signalled(trainer):
        if trainer.step == 11:  # the twelfth step
            signal.raise_signal(signum)
        return one_step(trainer)

    monkeypatch.setattr(PINNTrainer, "_one_step", signalled)
    overrides = [*TINY_BURGERS, f"output.folder={tmp_path}"]
    stopped = cli_in_process("run", "burgers", *overrides, "--quiet")
    [folder] = tmp_path.iterdir()
    assert stopped.returncode == status
    assert stopped.stderr == (
        f"physml: interrupted; {folder} keeps its checkpoint at step 12 of 20. Continue "
        f"with:\n  physml run burgers {' '.join(overrides)} --resume {folder}\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler



def test_a_stopped_teng_run_keeps_the_step_it_stopped_at_and_resumes_bitwise(tmp_path):
    """The initial fit is cut short: a stop and resume after it need no accurate fit."""
    case = load_case("teng_heat", [*TINY_TENG, "training.initial_iterations=20"])
    whole, stopped, checkpoint = _stopped_and_resumed(case, tmp_path, stop_at=3)
    assert checkpoint["t"] == pytest.approx(0.15)  # step 3 of 4, not the 2 last kept
    _same_metrics(whole, stopped)
    _same_arrays(whole, stopped, "predictions.h5")
    thetas = [torch.load(f / "checkpoint.pt", weights_only=False)["theta"]
              for f in (whole, stopped)]
    assert torch.equal(thetas[0], thetas[1])


def test_a_stopped_moe_training_keeps_the_step_it_stopped_at_and_resumes_bitwise():
    import copy

    from physml.constraints import LevenbergMarquardt
    from physml.train.moe import Budget, MoETrainer, build_model, problem_rows

    nx, nt = 8, 6
    u0 = torch.linspace(0.02, 0.18, 4, dtype=torch.float64)[:, None].expand(4, nx).contiguous()
    u = u0[:, None].expand(4, nt, nx).contiguous()
    rows = problem_rows("diffusion_sorption", (nx,), nt)

    def trainer() -> MoETrainer:
        model = build_model("hard", rows, nt, basis=3, width=4, modes=(2, 2), experts=2,
                            solver=LevenbergMarquardt(tol=1e-8, max_iter=10))
        return MoETrainer(model, rows, (u0, u), (u0, u), Budget(iterations=5, lr=1e-2, batch=2))

    whole = trainer().fit()
    stopping, saved = trainer(), []
    with stops_deferred(), pytest.raises(Terminated):
        stopping.fit(on_step=_signal_at(3),
                     on_checkpoint=lambda: saved.append(copy.deepcopy(stopping.state_dict())),
                     checkpoint_every=2)
    assert [state["step"] for state in saved] == [2, 3]
    resumed = trainer()
    resumed.load_state_dict(saved[-1])
    result = resumed.fit()
    assert result["losses"] == whole["losses"] and result["history"] == whole["history"]
    assert result["test_rel_l2"] == whole["test_rel_l2"]


HEAT_SMALL = ["mesh.h=0.3", "time.steps=40", "time.dt=0.05", "time.save_every=10",
              "output.figures=false"]


def test_a_stopped_mesh_heat_run_keeps_the_segment_under_way_and_resumes_bitwise(tmp_path):
    """A heat run steps in segments of ``time.save_every`` steps, each saved: a stop during
    one keeps the segment's end (today's steps are reported after the segment's solve)."""
    case = load_case("heat_surface", HEAT_SMALL)
    whole, stopped, checkpoint = _stopped_and_resumed(case, tmp_path, stop_at=25)
    assert checkpoint["step"] == 30  # the segment under way, not the 20 of the last one done
    _same_metrics(whole, stopped)
    _same_arrays(whole, stopped, "fields.h5")


def test_a_stopped_shape_run_keeps_the_step_it_stopped_at_and_resumes_bitwise(tmp_path):
    case = load_case("shape_poisson", ["mesh.h=0.3", "optimisation.steps=6",
                                       "optimisation.lr=0.008", "output.figures=false"])
    whole, stopped, checkpoint = _stopped_and_resumed(case, tmp_path, stop_at=3)
    assert checkpoint["step"] == 4  # its record 3 is measured before update 4, taken first
    _same_metrics(whole, stopped)
    _same_arrays(whole, stopped, "fields.h5")


def test_a_stopped_thermomigration_run_names_the_snapshot_and_time_it_keeps(tmp_path,
                                                                           monkeypatch,
                                                                           cli_in_process):
    """Its state between snapshots is not checkpointed: the stop comes at once, and the
    message says which snapshot, at which time, the checkpoint holds."""
    from physml.cases import thermomigration

    save, saves = thermomigration._save_checkpoint, []

    def signalled(*args, **kwargs):
        saved = save(*args, **kwargs)
        saves.append(saved)
        if len(saves) == 3:
            signal.raise_signal(signal.SIGTERM)
        return saved

    monkeypatch.setattr(thermomigration, "_save_checkpoint", signalled)
    overrides = ["grid.shape=[64]", "time.saves=6", "output.figures=false",
                 f"output.folder={tmp_path}"]
    stopped = cli_in_process("run", "thermomigration_fe_c", *overrides, "--quiet")
    [folder] = tmp_path.iterdir()
    with np.load(folder / thermomigration.CHECKPOINT) as index:
        times = index["times"]
    assert stopped.returncode == 143 and len(times) == 4  # the first save writes two
    assert f"keeps its checkpoint at snapshot 3 of 5, t = {times[-1]:.6g}. Continue" in (
        stopped.stderr)


def test_a_stop_recorded_then_an_error_leaves_no_stale_stop():
    with pytest.raises(RuntimeError):
        with stops_deferred(), step_loop():
            signal.raise_signal(signal.SIGTERM)
            raise RuntimeError("a failure in the step")
    assert pending_signal() == 0
    with stops_deferred(), step_loop():
        assert not stop_pending()


def test_an_insisting_sigint_clears_the_record_at_once():
    with stops_deferred():
        with pytest.raises(KeyboardInterrupt), step_loop():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
        assert not stop_pending()
        with pytest.raises(Terminated):  # a later SIGTERM outside a loop raises at once
            signal.raise_signal(signal.SIGTERM)


def test_leaving_an_inner_step_loop_leaves_the_stop_to_the_outer():
    with stops_deferred(), step_loop():
        with step_loop():
            signal.raise_signal(signal.SIGTERM)
        assert stop_pending()
        with pytest.raises(Terminated):
            raise_pending()


def test_stops_deferred_off_the_main_thread_changes_nothing():
    errors = []

    def work():
        try:
            with stops_deferred():
                pass
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors


def test_a_library_step_loop_promises_no_checkpoint():
    import io

    from physml.progress import PipeConsole, RunProgress
    log = io.StringIO()
    with step_loop(), RunProgress("burgers", 4, PipeConsole(file=log, force_terminal=False),
                                  interval=60) as progress:
        progress._interrupted(signal.SIGTERM)
    assert "stopping after the current step or kernel build" in log.getvalue()


def test_a_stop_message_with_an_unreadable_checkpoint_keeps_to_what_it_knows(
        tmp_path, monkeypatch, cli_in_process):
    from physml import torch_files
    from physml.train.pinn import PINNTrainer
    one_step = PINNTrainer._one_step

    def signalled(trainer):
        if trainer.step == 11:
            def unreadable(*a, **k):
                raise ValueError("damaged")
            monkeypatch.setattr(torch_files, "load_checked", unreadable)
            signal.raise_signal(signal.SIGTERM)
        return one_step(trainer)

    monkeypatch.setattr(PINNTrainer, "_one_step", signalled)
    stopped = cli_in_process("run", "burgers", *TINY_BURGERS, f"output.folder={tmp_path}",
                             "--quiet")
    assert stopped.returncode == 143
    assert "keeps the last checkpoint. Continue with" in stopped.stderr


EXIT_INTERRUPTED = """
import atexit, os, signal, sys
from physml.cli import main
atexit.register(os.kill, os.getpid(), signal.{signal})  # a stop while the interpreter exits
sys.argv = ["physml", "cases"]
sys.exit(main())
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_after_the_command_ends_the_process_quietly(signum):
    """A second Ctrl-C while the process exited (its atexit handlers and finalizers: PyTorch's,
    Warp's, h5py's) printed a KeyboardInterrupt's traceback."""
    script = EXIT_INTERRUPTED.format(signal=signal.Signals(signum).name)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == -signum and "Traceback" not in result.stderr, result.stderr


def test_a_command_run_in_process_leaves_the_signal_handlers_as_they_were():
    from physml.cli import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(["cases"]) == 0
    assert {s: signal.getsignal(s) for s in handlers} == handlers
