"""A finished (or stopped) ``moe`` run's network read back from its run folder: its case, the
network its checkpoint holds and the problem's rows, predicting trajectories from initial
states as the run did (``predictions.h5`` bit for bit). ``physml.load_run`` gives it for a
``moe`` run folder::

    trained = physml.load_run("runs/moe_diffusion_sorption-20261206-101500")
    u = trained.predict(trained.test_initial_conditions())  # (S, nt, *space)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..torch_files import load_checked
from ..train.moe import ConstrainedFNO, Rows, initial_conditions, predict
from .moe import MoECase, build
from .registry import load_case
from .run_folder import CONFIG, read_checkpoint


@dataclass(frozen=True)
class TrainedMoE:
    """A ``moe`` run's network as its checkpoint holds it (:func:`load_trained`,
    ``physml.load_run``): its case, the network and the problem's rows."""

    case: MoECase
    model: ConstrainedFNO
    rows: Rows

    def predict(self, u0: torch.Tensor) -> torch.Tensor:
        """The trajectories (S, nt, *space) the network predicts from the initial states
        ``u0`` (S, *space), on the CPU, as ``predictions.h5`` holds them for the test samples
        (``training.batch`` samples a solve)."""
        device = next(self.model.parameters()).device
        return self.rows.observe(predict(self.model, u0.to(device),
                                         self.case.training.batch)).cpu()

    def test_initial_conditions(self) -> torch.Tensor:
        """The run's test samples' initial states (S, *space), in ``predictions.h5``'s order
        (sample seeds ``problem.train`` on)."""
        p = self.case.problem
        return initial_conditions(p.name, self.case.space, p.test, first=p.train)


def load_trained(folder: str | Path, device: str | torch.device = "cpu") -> TrainedMoE:
    """The network of the ``moe`` run in ``folder`` (its ``config.yaml`` and the model of its
    ``checkpoint.pt``: the finished network, or where a stopped run got to), in eval mode on
    ``device`` (whatever device the run trained on). ``physml.load_run`` calls it for a
    ``moe`` run, by default on the run's device where this machine has it.

    Raises:
        ValueError: ``folder`` holds no ``moe`` run (no or another kind's ``config.yaml``) or
            no readable checkpoint.
    """
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise ValueError(f"{str(folder)!r} holds no run (no {CONFIG})")
    case = load_case(folder / CONFIG, recorded=True)
    if not isinstance(case, MoECase):
        raise ValueError(f"{str(folder)!r} holds a {case.kind!r} run, not a moe run (use "
                         "physml.load_run for PINN and equation runs)")
    rows, model = build(case)
    state = read_checkpoint(folder, lambda path: load_checked(path, map_location="cpu"),
                            use="load_trained", remedy="finish or resume the run",
                            missing="no network to load")
    model.load_state_dict(state["model"])
    return TrainedMoE(case, model.to(torch.device(device)).eval(), rows)
