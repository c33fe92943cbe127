"""physml: simulation-first scientific ML for PDEs.

The public API is these modules (each lists its names in ``__all__``):

* Numerics, no PyTorch: :mod:`physml.solvers` (Warp solvers on grids, with the subpackages
  :mod:`physml.solvers.mesh` and :mod:`physml.solvers.linalg`), :mod:`physml.datasets`
  (benchmark dataset generation), :mod:`physml.io` (reading and writing field datasets).
* PyTorch over the solvers: :mod:`physml.bridge` (autograd through a solver's rollout),
  :mod:`physml.linalg_bridge` (through sparse solves), :mod:`physml.mesh_bridge` (through
  mesh operators), :mod:`physml.spectral` (a pseudo-spectral reference solver).
* Learning: :mod:`physml.train` (PINN, TENG and mixture-of-experts trainers, problems,
  conditions), :mod:`physml.geometry` (domains), :mod:`physml.models` (networks),
  :mod:`physml.fno` (Fourier neural operators), :mod:`physml.data` (``FieldDataset`` for
  PyTorch), :mod:`physml.constraints` (hard constraints, experts),
  :mod:`physml.preconditioners` (learned preconditioners).
* Results: :func:`load_run` (:mod:`physml.trained`), which reads back the network of a
  ``pinn``, ``equation`` or ``moe`` run, and the exceptions in :mod:`physml.errors`.
* Case files from Python: the names in :mod:`physml.cases`' ``__all__`` (``load_case``,
  ``run_case``, ``bundled_cases``, ``Case``, ``KINDS``), and
  ``physml.cases.moe_trained`` (the ``TrainedMoE`` that :func:`load_run` returns for a ``moe``
  run, and ``load_trained``, which it calls). The rest of ``physml.cases`` (one module per
  case kind, their schemas, the run-folder helpers) is not a stable API.

The other modules (``cli*``, ``devices``, ``dtypes``, ``expressions``, ``interrupts``,
``progress``, ``threads``, ``torch_files``) serve the command line and the modules above; they
are not a stable API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from pathlib import Path

    from .cases.moe_trained import TrainedMoE
    from .trained import TrainedModel

__all__ = ["load_run"]


def load_run(run_dir: str | Path, device: str | None = None) -> TrainedModel | TrainedMoE:
    """The trained network of a run folder.

    Args:
        run_dir: a folder written by ``physml run`` for a case of kind ``pinn``,
            ``equation`` or ``moe`` (it holds ``config.yaml`` and ``checkpoint.pt``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: the run's device, or the CPU
            on a machine without it).

    Returns:
        For a ``pinn`` or ``equation`` run, a :class:`~physml.trained.TrainedModel`:
        ``model(X)`` maps rows of inputs ``(n, d_in)`` (names in ``model.inputs``) to a NumPy
        array, ``(n,)`` for one output, else ``(n, m)``; ``model.field`` is the differentiable
        ``torch.nn.Module``; ``export_onnx`` and ``export_torchscript`` write it for use
        without physml. For a ``moe`` run, a :class:`~physml.cases.moe_trained.TrainedMoE`:
        ``trained.predict(u0)`` maps initial states ``(S, *space)`` to trajectories
        ``(S, nt, *space)``; ``trained.model`` is the ``torch.nn.Module``. A type checker
        sees the union: ``physml.trained.load_run`` returns a ``TrainedModel`` alone (it
        refuses a ``moe`` run), or narrow with ``isinstance(model, TrainedModel)``.

    Raises:
        ValueError: not a run folder (no ``config.yaml``, e.g. a missing folder), a run of
            another kind (``teng``, ``pcg``, ...: no trained network), no checkpoint or one
            that cannot be read or does not fit the configuration, or a ``device`` this
            machine does not have.
    """
    from .trained import load_network

    return load_network(run_dir, device)
