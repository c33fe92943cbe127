"""What the training entry points return: TENG's history as the PINN trainer's (one record
per step, kept across calls and resumes), each return documented alike, and the public
sample helpers of the mixture-of-experts trainer."""

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch

from physml.models import PeriodicMLP
from physml.train.teng import TENG, TENGPDE

RECORD_KEYS = {"step", "t", "wall_s", "solves", "solve_s", "fallbacks"}


def tiny_teng(**kw) -> TENG:
    torch.manual_seed(0)
    return TENG(PeriodicMLP(1, 1, width=4, depth=1), TENGPDE("heat", 0.1), scheme="heun",
                dt=0.01, points=16, iterations=1, dim=1, **kw)


def test_teng_run_returns_one_record_per_step_kept_across_calls():
    teng = tiny_teng()
    history = teng.run(0.02)
    assert [record["step"] for record in history] == [1, 2]
    assert [record["t"] for record in history] == pytest.approx([0.01, 0.02])
    assert all(set(record) == RECORD_KEYS for record in history)
    # heun: two fits of one iteration each per step, each one solve at least
    assert 2 <= history[0]["solves"] < history[1]["solves"] == teng.solves
    assert history[1]["solve_s"] == teng.solve_seconds
    assert 0 < history[0]["wall_s"] <= history[1]["wall_s"]
    assert history[1]["fallbacks"] == teng.fallbacks
    again = teng.run(0.03)
    assert again is teng.history and [record["step"] for record in again] == [1, 2, 3]


def test_teng_history_resumes_from_the_state_dict():
    whole = tiny_teng()
    whole.run(0.02)
    state = whole.state_dict()
    resumed = tiny_teng(seed=3)
    resumed.load_state_dict(state)
    assert resumed.history == whole.history and resumed.history is not whole.history
    history = resumed.run(0.03)
    assert [record["step"] for record in history] == [1, 2, 3]
    assert history[2]["wall_s"] >= history[1]["wall_s"]


def test_a_teng_state_without_a_history_loads_with_none():
    teng = tiny_teng()
    state = teng.state_dict()
    del state["step_history"]
    teng.load_state_dict(state)
    assert teng.history == []


def _trainers():
    from physml.preconditioners import fit as fit_preconditioner
    from physml.train.moe import MoETrainer
    from physml.train.moe import fit as fit_moe
    from physml.train.pinn import PINNTrainer

    return {"PINNTrainer.fit": PINNTrainer.fit, "TENG.run": TENG.run,
            "MoETrainer.fit": MoETrainer.fit, "physml.train.moe.fit": fit_moe,
            "physml.preconditioners.fit": fit_preconditioner}


@pytest.mark.parametrize("name", list(_trainers()))
def test_each_trainer_documents_its_return_in_one_form(name):
    """A ``Returns:`` section that starts by naming what comes back: the history, or the
    summary (which then says where the history is)."""
    doc = inspect.getdoc(_trainers()[name])
    returned = re.search(r"^Returns:\n\s+The (history|summary)\b(.*?)(?:\n\n|\Z)", doc,
                         re.MULTILINE | re.DOTALL)
    assert returned, f"{name} documents no 'Returns:' section naming what it returns"
    if returned[1] == "summary":
        assert "history" in returned[2], f"{name} does not say where its history is"


def test_the_moe_case_uses_only_public_names_of_the_trainer():
    import physml.train.moe as moe

    source = Path(inspect.getfile(moe)).parents[1] / "cases" / "moe.py"
    imported = [alias.name for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module == "train.moe"
                for alias in node.names]
    assert {"sample_setup", "initial_states"} <= set(imported)
    assert [name for name in imported if name.startswith("_")] == []
    assert not hasattr(moe, "_sample_setup") and not hasattr(moe, "_initial_states")
    assert "(S, *space)" in moe.initial_states.__doc__


def test_the_public_sample_helpers_give_the_trajectories_initial_states():
    from physml.train.moe import initial_states, sample_setup, trajectories

    spec, solver = sample_setup("diffusion_sorption", (16,), 3, None)
    states = initial_states(spec, solver, 2, 4)
    assert states.shape == (2, 16) and states.dtype == solver.np_dtype
    u0, _ = trajectories("diffusion_sorption", (16,), 3, 2, first=4)
    assert torch.equal(u0, torch.from_numpy(states))
