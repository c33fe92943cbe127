"""physml: simulation-first scientific ML for PDEs.

Subpackages: :mod:`physml.solvers` (Warp numerics, no PyTorch), :mod:`physml.datasets`
(dataset generation), :mod:`physml.bridge` (PyTorch autograd over the solvers).
"""

from ._version import __version__ as __version__
