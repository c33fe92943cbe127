r"""Learned preconditioners: a graph network predicts a sparse factor for each matrix.

Two forms, both on the lower pattern of A and symmetric positive definite by construction:

- ``"cholesky"`` (Li et al. 2023; NeuralIF, Häusner et al. 2024): $M = L L^T$, L lower with a
  positive diagonal, applied by the triangular solves IC(0) uses
  (:class:`~physml.solvers.linalg.CholeskyFactor`);
- ``"sparse_inverse"`` (after Yang et al. 2025): $M^{-1} = G^T G$, G lower with a positive
  diagonal, applied by two sparse products (:class:`~physml.solvers.linalg.SparseInverseFactor`),
  with no triangular solve.

On the scaled matrix $\tilde A = D^{-1/2} A D^{-1/2}$ (:mod:`.graph`) the network's outputs
$(o_{ij}, o_i)$ give $\tilde L_{ij} = \tilde A_{ij}(1 + o_{ij})$, $\tilde L_{ii} = e^{o_i}$ (so
an untrained network, whose last layers start at zero, is the symmetric Gauss–Seidel factor
$\operatorname{tril}(\tilde A)$, unit diagonal as $\tilde A$'s) and
$\tilde G_{ij} = \tilde A_{ij} o_{ij}$, $\tilde G_{ii} = e^{o_i}$ (Jacobi at the start); then
$L = D^{1/2}\tilde L$ and $G = \tilde G D^{-1/2}$. A :class:`LearnedPreconditioner` is a factory
``A -> Preconditioner`` like every class in :data:`~physml.solvers.linalg.PRECONDITIONERS`::

    M = LearnedPreconditioner.load("preconditioner.pt")
    result = cg(A, b, preconditioner=M(A))

Training differentiates the PyTorch network. A preconditioner for a new matrix evaluates the
same function on A's device: on the CPU in one native call on the matrix's own rows
(:class:`~physml.solvers.linalg.factor_network.NetworkFactor`: no graph built, no PyTorch
operator), on CUDA by the PyTorch network, whose output passes to Warp with ``wp.from_torch``
(no copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import torch
import warp as wp
from torch import nn

from ..devices import require_device
from ..solvers.errors import whole_number
from ..solvers.linalg import (
    CholeskyFactor,
    LinearOperator,
    LowerPattern,
    SparseInverseFactor,
    csr_to_scipy,
)
from ..solvers.linalg.factor_network import (
    NODE_FEATURES,
    FactorOutOfRange,
    NetworkFactor,
    forward_parts,
    require_symmetric,
)
from ..solvers.linalg.factor_network_source import SMALLEST_SCALED_DIAGONAL
from ..solvers.linalg.incomplete_cholesky import assembled_matrix
from ..solvers.linalg.linear_operator import require_finite
from ..torch_files import load_checked, save_torch_file
from .graph import SystemGraph, system_graph
from .network import FactorNetwork, network_weights

Kind = Literal["cholesky", "sparse_inverse"]
KINDS: tuple[str, ...] = ("cholesky", "sparse_inverse")


class FactorModel(nn.Module):
    """A graph network that maps a matrix's graph to a factor on its lower pattern.

    Args:
        kind: ``"cholesky"`` ($M = L L^T$) or ``"sparse_inverse"`` ($M^{-1} = G^T G$).
        width: hidden width H of the network.
        steps: message-passing steps K.
        node_features: node feature width (2 for the algebraic features of :mod:`.graph`).
    """

    def __init__(self, kind: Kind = "cholesky", width: int = 16, steps: int = 3,
                 node_features: int = 2) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; allowed: {', '.join(KINDS)}")
        width, steps, node_features = (whole_number(value, name, least) for name, value, least
                                       in (("width", width, 1), ("steps", steps, 0),
                                           ("node_features", node_features, 1)))
        self.kind = kind
        self.config = {"kind": kind, "width": width, "steps": steps,
                       "node_features": node_features}
        self.network = FactorNetwork(node_features, width, steps)
        for decoder in (self.network.edge_decoder, self.network.node_decoder):
            nn.init.zeros_(decoder[-1].weight)
            nn.init.zeros_(decoder[-1].bias)

    def scaled_factor(self, graph: SystemGraph) -> torch.Tensor:
        """$\\tilde L$ (or $\\tilde G$) on the lower pattern, float64, shape (nnz_L,)."""
        off, diagonal = self.network(graph)
        strict = graph.scaled_values.index_select(0, graph.strict)
        off = off.double()
        values = torch.zeros_like(graph.scaled_values)
        values = values.index_copy(0, graph.strict, strict * (1 + off) if self.kind == "cholesky"
                                   else strict * off)
        return values.index_copy(0, graph.diagonal, torch.exp(diagonal.double()))

    def forward(self, graph: SystemGraph) -> torch.Tensor:
        """L (or G) of the unscaled matrix, float64, shape (nnz_L,)."""
        scaled = self.scaled_factor(graph)
        if self.kind == "cholesky":
            return scaled * graph.sqrt_diagonal.index_select(0, graph.lower_rows)
        return scaled / graph.sqrt_diagonal.index_select(0, graph.lower_columns)


@dataclass(frozen=True)
class _NativeWeights:
    """A native forward and the parameters it was built from: their addresses, their bytes
    and, for parameters on the CPU, host views of them (None: copied from the device at each
    comparison)."""

    addresses: list[int]
    values: list[bytes]
    views: list[np.ndarray] | None
    native: NetworkFactor


def _parameter_bytes(parameters: list[torch.Tensor], views: list[np.ndarray] | None
                     ) -> list[bytes]:
    """The parameters' values as bytes, read through ``views`` where given."""
    if views is None:
        return [p.detach().cpu().numpy().tobytes() for p in parameters]
    return [view.tobytes() for view in views]


class LearnedPreconditioner:
    """A trained :class:`FactorModel` as a preconditioner factory ``A -> Preconditioner``.

    Args:
        model: the network (its ``kind`` decides the form of the preconditioner); it must read
            the two node features :func:`~.graph.system_graph` computes from a matrix, the
            scaled row sum and log(1 + degree) (``node_features=2``).

    Attributes:
        threads: host threads of the native CPU forward, ``"auto"`` (the available cores, at
            most one per :data:`~physml.solvers.linalg.factor_network.ROWS_PER_PART` rows)
            or a whole number >= 1; the factor is bit for bit the same on any number. Read at
            each call.

    Raises:
        ValueError: the model reads other node features.
    """

    threads: int | str = "auto"  # on the class: one unpickled from an older physml reads it

    ROLE = "preconditioner"
    """What a saved file holds this model as (:meth:`save`; :meth:`load` refuses another)."""

    def __init__(self, model: FactorModel) -> None:
        features = model.config["node_features"]
        if features != NODE_FEATURES:
            raise ValueError(f"the model reads {features} node features; a preconditioner "
                             f"computes its factor from the matrix alone ({NODE_FEATURES}: row "
                             "sum and degree), so train it with node_features=2")
        self.model = model
        self.name = f"learned_{model.kind}"
        self._parameters = list(model.parameters())
        self._cached: _NativeWeights | None = None

    def __getstate__(self) -> dict:
        """Without the native forward's weights (rebuilt on the next call): they hold
        pointers, which neither ``copy.deepcopy`` nor ``pickle`` can copy."""
        return {**self.__dict__, "_cached": None}

    def __call__(self, A: LinearOperator) -> CholeskyFactor | SparseInverseFactor:
        """The preconditioner for A (a :class:`~physml.solvers.linalg.CsrOperator`): the
        factor computed on A's device, in A's precision."""
        form = CholeskyFactor if self.model.kind == "cholesky" else SparseInverseFactor
        return form(*self.factor(A), name=self.name)

    def factor(self, A: LinearOperator) -> tuple[LowerPattern, wp.array]:
        """A's lower pattern on A's device and the network's L (or G) on it, shape (nnz_L,),
        in A's precision: by the native forward on the CPU, else by PyTorch; checked
        (:meth:`_refuse_factor`; a non-finite entry of A is named first, and an A that is
        not symmetric refused: by the native forward in its own pass, before the PyTorch one).

        Raises:
            ValueError: A has a non-finite entry, is not symmetric, has a diagonal entry that
                is not positive, or the factor is out of range.
        """
        matrix = assembled_matrix(A, self)
        host = csr_to_scipy(matrix)
        # G^T G is applied by products: no triangular solve, so no level schedule
        pattern = LowerPattern(host, A.device,
                               by_levels=None if self.model.kind == "cholesky" else False)
        native = self._native() if pattern.device.is_cpu else None
        if native is not None and native.fits(pattern.n, pattern.nnz,
                                              forward_parts(pattern.n, self.threads)):
            try:  # checked in the native call
                return pattern, native.values(pattern, matrix, out=A.dtype,
                                              threads=self.threads)
            except FactorOutOfRange as err:
                self._refuse_factor(err.row)
        require_finite(host)  # what the native forward checks in its own pass: O(nnz) here
        require_symmetric(host)
        values = self._torch_values(pattern, A.dtype)
        factor = values.numpy()  # a view on the CPU
        at = pattern.diagonal.numpy()
        root = np.sqrt(pattern.lower.data[at])  # sqrt(d_i), d_i > 0 (the network checked)
        scaled = factor[at] / root if self.model.kind == "cholesky" else factor[at] * root
        smallest = SMALLEST_SCALED_DIAGONAL[wp.dtype_to_numpy(A.dtype).__name__]
        vanishing = ~(scaled > smallest)  # (NaN included)
        if np.isfinite(factor).all() and not vanishing.any():
            return pattern, values
        self._refuse_factor(int(np.flatnonzero(vanishing)[0]) if vanishing.any()
                            else int(np.searchsorted(pattern.lower.indptr,
                                                     np.flatnonzero(~np.isfinite(factor))[0],
                                                     side="right")) - 1)

    def _refuse_factor(self, row: int) -> NoReturn:
        """Refuse a factor with a non-finite value or a vanishing diagonal entry (the scaled
        entry at or below the factor precision's
        :data:`~physml.solvers.linalg.factor_network_source.SMALLEST_SCALED_DIAGONAL`), first
        in ``row``: the exponential of the network's diagonal output overflows or vanishes on
        a matrix far from the training data (a row with 199 neighbours gave inf, a dense row
        5e-23), and CG would then blame A or break down.

        Raises:
            ValueError: naming the preconditioner, the row and the cure.
        """
        raise ValueError(f"{self.name}: the network's factor for this matrix has a non-finite "
                         f"or vanishing entry (row {row}): the matrix is far from those it was "
                         "trained on (row degree or scale); train on such matrices, or use "
                         "IC(0) or AMG for it")

    def _native(self) -> NetworkFactor:
        """The model's weights for the native CPU forward, rebuilt when a parameter changed:
        its storage (``p.data = ...``) or its bytes (compared with those the weights were built
        from: optimisers and loaders need not bump a version counter, and ``p.data.mul_(2)``
        bumps none). The parameters are the model's at construction: a module swapped in
        later needs a new LearnedPreconditioner."""
        parameters = self._parameters
        addresses = [p.data_ptr() for p in parameters]
        cached = self._cached
        if (cached is not None and cached.addresses == addresses
                and cached.values == _parameter_bytes(parameters, cached.views)):
            return cached.native
        # host views of CPU parameters, read again at each call (5 us for 26 tensors of a
        # small network, where comparing the tensors took 60)
        views = [p.detach().numpy() for p in parameters] if all(
            p.is_cpu for p in parameters) else None
        self._cached = _NativeWeights(
            addresses, _parameter_bytes(parameters, views), views,
            NetworkFactor(network_weights(self.model.network), self.model.kind))
        return self._cached.native

    def _torch_values(self, pattern: LowerPattern, dtype: type) -> wp.array:
        """The factor by the PyTorch network on the pattern's device (CUDA, or a CPU system
        too large for the native forward): a Warp view of the network's output
        (``wp.from_torch`` keeps the tensor alive). The model is evaluated in eval mode and
        left in the mode it was in; a model on another device is moved to the pattern's (an
        optimiser's state stays where it was: make the optimiser after the first call)."""
        device = torch.device(str(pattern.device))
        if any(p.device != device for p in self.model.parameters()):
            self.model.to(device)  # outside inference mode: the parameters stay trainable
        training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                graph = system_graph(pattern.lower, is_lower=True).to(device)
                values = self.model(graph).to(wp.dtype_to_torch(dtype)).contiguous()
        finally:
            self.model.train(training)
        return wp.from_torch(values)

    def save(self, path: str | Path) -> None:
        """Write the model's configuration, weights and role (``torch.save``), whole or not at
        all (:func:`~physml.torch_files.save_torch_file`)."""
        save_torch_file(path, {"config": self.model.config,
                               "state_dict": self.model.state_dict(), "role": self.ROLE})

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> LearnedPreconditioner:
        """A preconditioner written by :meth:`save`.

        Raises:
            ValueError: no file at ``path``, or one :meth:`save` did not write, one saved in
                another role (a smoother as a preconditioner, or the reverse; a file without
                a role is a preconditioner), or a ``map_location`` this machine lacks.
        """
        require_device(str(map_location))  # a missing device is not a damaged file
        if not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "no file"
            raise ValueError(f"no trained preconditioner at {str(path)!r} ({what}; give the "
                             f"file {cls.__name__}.save wrote)")
        try:
            saved = load_checked(path, map_location=map_location)
        except Exception as err:  # noqa: BLE001 (not a PyTorch file of tensors: torch's many ways)
            reason = (str(err).splitlines() or [""])[0][:120]
            raise ValueError(f"{str(path)!r} is not a trained preconditioner "
                             f"({type(err).__name__}: {reason})") from None
        if not (isinstance(saved, dict) and {"config", "state_dict"} <= saved.keys()):
            raise ValueError(f"{str(path)!r} is not a trained preconditioner (a file "
                             f"{cls.__name__}.save wrote holds config and state_dict)")
        role = saved.get("role", LearnedPreconditioner.ROLE)
        if role != cls.ROLE:
            loader = "LearnedSmootherAMG" if role == "smoother" else "LearnedPreconditioner"
            raise ValueError(f"{str(path)!r} holds a trained {role}, not a {cls.ROLE}: load it "
                             f"with {loader}.load")
        model = FactorModel(**saved["config"])
        model.load_state_dict(saved["state_dict"])
        return cls(model.eval())
