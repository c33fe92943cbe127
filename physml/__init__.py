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
* Results: :func:`load_run` (:mod:`physml.trained`), and the exceptions in
  :mod:`physml.errors`.
* Case files from Python: the names in :mod:`physml.cases`' ``__all__`` (``load_case``,
  ``run_case``, ``bundled_cases``, ``Case``, ``KINDS``), and
  ``physml.cases.moe_trained.load_trained`` (with the ``TrainedMoE`` it returns), which reads
  back a ``moe`` run's network where :func:`load_run` takes ``pinn`` and ``equation`` runs.
  The rest of ``physml.cases`` (one module per case kind, their schemas, the run-folder
  helpers) is not a stable API.

The other modules (``cli*``, ``devices``, ``dtypes``, ``expressions``, ``interrupts``,
``progress``, ``threads``, ``torch_files``) serve the command line and the modules above; they
are not a stable API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from pathlib import Path

    from .trained import TrainedModel

__all__ = ["load_run"]


def load_run(run_dir: str | Path, device: str | None = None) -> TrainedModel:
    """The trained network of a physics-informed run folder as a callable model.

    Args:
        run_dir: a folder written by ``physml run`` for a case of kind ``pinn`` or
            ``equation`` (it holds ``config.yaml`` and ``checkpoint.pt``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: the run's device, or the CPU
            on a machine without it).

    Returns:
        A :class:`~physml.trained.TrainedModel`: ``model(X)`` maps rows of inputs ``(n, d_in)``
        (names in ``model.inputs``) to a NumPy array, ``(n,)`` for one output, else ``(n, m)``;
        ``model.field`` is the differentiable ``torch.nn.Module``; ``export_onnx`` and
        ``export_torchscript`` write it for use without physml.

    Raises:
        ValueError: not a run folder (no ``config.yaml``, e.g. a missing folder), a run of
            another kind (``teng``, ``moe``, ...: no network field), no checkpoint or one that
            cannot be read or does not fit the configuration, or a ``device`` this machine
            does not have.
    """
    from .trained import load_run as _load_run

    return _load_run(run_dir, device)
