"""physml: simulation-first scientific ML for PDEs.

Subpackages: :mod:`physml.solvers` (Warp numerics, no PyTorch), :mod:`physml.datasets`
(dataset generation), :mod:`physml.bridge` (PyTorch autograd over the solvers).
:func:`load_run` gives the trained network of a run folder as a callable model.
"""

from ._version import __version__ as __version__


def load_run(run_dir, device=None):
    """The trained network of a physics-informed run folder (see :mod:`physml.trained`)."""
    from .trained import load_run as _load_run

    return _load_run(run_dir, device)
