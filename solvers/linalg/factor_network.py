r"""The learned preconditioners' graph network evaluated on the CPU in native loops.

The network is the encode–process–decode network of Li et al. (ICML 2023) that
``physml.preconditioners`` trains in PyTorch. At the widths that pay on the CPU (H = 4–16)
PyTorch spends more on building the graph and on launching some thirty operators than on the
arithmetic; this module evaluates the same function in one native call on the matrix's own rows.
On the symmetrically scaled matrix $\tilde A = D^{-1/2} A D^{-1/2}$, width H:

- node i: features $x_i = [\sum_j \tilde A_{ij},\ \log(1 + \deg i)]$,
  $h_i = \mathrm{MLP}_n(x_i)$; edge $j \to i$ ($j \ne i$): features
  $[\tilde A_{ij}, |\tilde A_{ij}|, \pm 1]$ (+1 where $j < i$), $e_{ji} = \mathrm{MLP}_e(\cdot)$;
- each of K steps: $e_{ji} \leftarrow e_{ji} + W_o\,\sigma(W_e e_{ji} + c_e + W_t h_i + W_s h_j)
  + c_o$, then $h_i \leftarrow h_i + \mathrm{MLP}_h([h_i, \sum_j e_{ji}])$;
- decode: $o_{ij} = \mathrm{MLP}_{d}(e_{ji})$ on the strictly lower entries, $o_i =
  \mathrm{MLP}_{\delta}(h_i)$, and the factor on the lower pattern: Cholesky
  $L_{ij} = \sqrt{d_i}\,\tilde A_{ij}(1 + o_{ij})$, $L_{ii} = \sqrt{d_i}\,e^{o_i}$; sparse
  inverse $G_{ij} = \tilde A_{ij}\,o_{ij}/\sqrt{d_j}$, $G_{ii} = e^{o_i}/\sqrt{d_i}$;

with $\mathrm{MLP}(x) = W_2\,\sigma(W_1 x + c_1) + c_2$ and $\sigma$ the SiLU.

The native loops (the layout of their work arrays, their vectorisation and their exponential)
are :data:`~physml.solvers.linalg.factor_network_source.FORWARD`; this module holds the weights,
the Warp kernel that runs them and :class:`NetworkFactor`, which sizes their scratch and
launches it on the CPU.
"""

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import warp as wp
import warp.sparse as wps

from ..host_threads import available_cores, in_parallel
from ..kept import held_if_free
from ..replay import Replay
from ..vector_width import wide_vector_options
from .factor_network_source import FORWARD, TILE
from .linear_operator import csr_to_scipy, require_finite
from .row_blocks import block_count
from .triangular import LowerPattern

# the edges' layers run 1.2-1.35x faster with 512-bit vectors, the whole forward 1.15x (a Xeon
# with AVX-512 FP16, 6.0e3 unknowns, one thread)
wp.set_module_options(wide_vector_options())

NODE_FEATURES = 2
"""Width of the node features the network reads (row sum, log degree)."""

Layer = tuple[np.ndarray, np.ndarray]
"""A dense layer as (weight (out, in), bias (out,)), PyTorch's ``nn.Linear`` layout."""


@dataclass(frozen=True)
class StepWeights:
    """One message-passing step: the edge update (``edge_in`` acts on $e_{ji}$, ``edge_target``
    and ``edge_source`` (weights only, (H, H)) on $h_i$ and $h_j$, ``edge_out`` after the SiLU)
    and the node update, a two-layer perceptron whose first layer is (H, 2H) on $[h_i, \\sum_j
    e_{ji}]$."""

    edge_in: Layer
    edge_target: np.ndarray
    edge_source: np.ndarray
    edge_out: Layer
    node_first: Layer
    node_last: Layer


@dataclass(frozen=True)
class NetworkWeights:
    """The weights of an encode–process–decode network, as host arrays.

    Attributes:
        node_encoder, edge_encoder: (first, last) layers, inputs 2 and 3, width H.
        steps: one :class:`StepWeights` per message-passing step.
        edge_decoder, node_decoder: (first, last) layers, the last one (1, H).
    """

    node_encoder: tuple[Layer, Layer]
    edge_encoder: tuple[Layer, Layer]
    steps: tuple[StepWeights, ...]
    edge_decoder: tuple[Layer, Layer]
    node_decoder: tuple[Layer, Layer]

    @property
    def width(self) -> int:
        return int(self.node_encoder[0][0].shape[0])

    def flat(self) -> np.ndarray:
        """Every weight in the order
        :data:`~physml.solvers.linalg.factor_network_source.FORWARD` reads them, float64."""
        parts: list[np.ndarray] = []

        def mlp(layers: tuple[Layer, Layer]) -> None:
            for weight, bias in layers:
                parts.extend((weight, bias))

        mlp(self.node_encoder)
        mlp(self.edge_encoder)
        for s in self.steps:
            parts.extend((*s.edge_in, s.edge_target, s.edge_source, *s.edge_out,
                          *s.node_first, *s.node_last))
        mlp(self.edge_decoder)
        mlp(self.node_decoder)
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])


def require_symmetric(matrix: sp.csr_matrix) -> None:
    r"""Refuse a square matrix that is not symmetric: $\max|A - A^T| > \tau \max|A|$ with
    $\tau = \max(10^{-12}, 64\,\epsilon)$ of its dtype (float32: a few roundings, as an
    assembly by atomic adds in no fixed order leaves $A_{ij}$ and $A_{ji}$; finite values;
    O(nnz)).

    Raises:
        ValueError: the matrix is not symmetric (or not square).
    """
    eps = np.finfo(matrix.dtype).eps if np.issubdtype(matrix.dtype, np.floating) else 0.0
    tolerance = max(1e-12, 64 * eps)
    if matrix.shape[0] != matrix.shape[1] or np.max(abs(matrix - matrix.T).data, initial=0.0) > (
            tolerance * np.max(abs(matrix.data), initial=0.0)):
        raise ValueError(f"the matrix ({matrix.shape}) is not symmetric; a learned factor "
                         "L L^T approximates a symmetric positive definite A")


class FactorOutOfRange(ValueError):
    """The network's factor has a non-finite entry, or a scaled diagonal entry at or below
    :data:`~.factor_network_source.SMALLEST_SCALED_DIAGONAL`, first in row :attr:`row`: its
    exponential overflowed (or vanished) on a matrix far from those it was trained on."""

    def __init__(self, row: int) -> None:
        super().__init__(f"the network's factor has a non-finite or vanishing entry (row {row})")
        self.row = row


ROWS_PER_PART = 4096
"""Fewest rows per host thread for which ``threads="auto"`` splits the forward. Below, a
second thread's start costs about what it saves: in ``benchmarks/pcg.py``'s alternation of
set-ups and solves (a 2-core x86_64 VM, heat-step meshes), the learned factor's set-up on two
threads against one took 2.28 against 2.24 ms at 6.0e3 unknowns (a pool thread woken after a
solve starts late), 5.28 against 6.33 ms at 2.3e4 and 18.1 against 20.8 ms at 9.3e4; the
forward alone, called back to back, 0.95x at 6.0e3 and 0.60x at 9.3e4."""


def forward_parts(rows: int, threads: int | str = "auto") -> int:
    """Host threads the forward of a matrix of ``rows`` rows runs on: ``threads`` as given, or
    under ``"auto"`` the available cores, at most one per :data:`ROWS_PER_PART` rows.

    Raises:
        ValueError: ``threads`` is neither "auto" nor an integer >= 1.
    """
    return block_count(rows, threads, ROWS_PER_PART)


def _sched_yield_address() -> int:
    """The address of the C library's ``sched_yield`` (0 where there is none), which the
    forward's parts call while they wait for each other's chunks: a part keeps its core for a
    few hundred spins only, so a machine with fewer free cores than parts runs the others."""
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):
        return 0


SCHED_YIELD = _sched_yield_address()


KEPT_SCRATCH_BYTES = 16 * 2**20
"""The largest scratch a :class:`NetworkFactor` keeps between calls (a system of about 6e4
unknowns at width 4): above it, allocation is a small part of the forward, and the memory is
returned with the call."""


@wp.func_native(FORWARD)
def network_forward(offsets: wp.array(dtype=wp.int32), columns: wp.array(dtype=wp.int32),
                    upper_offsets: wp.array(dtype=wp.int32),
                    upper_columns: wp.array(dtype=wp.int32),
                    transpose_index: wp.array(dtype=wp.int32),
                    diagonal: wp.array(dtype=wp.int32), values: wp.array(dtype=wp.float64),
                    matrix_offsets: wp.array(dtype=wp.int32),
                    matrix_columns: wp.array(dtype=wp.int32),
                    matrix_values: wp.array(dtype=Any), weights: wp.array(dtype=Any),
                    width: int, steps: int, rows: int, entries: int, cholesky: int,
                    work: wp.array(dtype=Any),
                    exact_work: wp.array(dtype=wp.float64), index_work: wp.array(dtype=wp.int32),
                    claims: wp.array(dtype=wp.int32), part: int, parts: int,
                    yield_address: wp.uint64, factor: wp.array(dtype=Any)): ...


@wp.kernel(enable_backward=False)
def network_kernel(offsets: wp.array(dtype=wp.int32), columns: wp.array(dtype=wp.int32),
                   upper_offsets: wp.array(dtype=wp.int32),
                   upper_columns: wp.array(dtype=wp.int32),
                   transpose_index: wp.array(dtype=wp.int32),
                   diagonal: wp.array(dtype=wp.int32), values: wp.array(dtype=wp.float64),
                   matrix_offsets: wp.array(dtype=wp.int32),
                   matrix_columns: wp.array(dtype=wp.int32),
                   matrix_values: wp.array(dtype=Any), weights: wp.array(dtype=Any),
                   width: int, steps: int, rows: int, entries: int, cholesky: int,
                   work: wp.array(dtype=Any),
                   exact_work: wp.array(dtype=wp.float64), index_work: wp.array(dtype=wp.int32),
                   claims: wp.array(dtype=wp.int32), part: int, parts: int,
                   yield_address: wp.uint64, factor: wp.array(dtype=Any)):
    """The whole forward pass and the factor, or a ``part`` of ``parts`` launched at once on
    host threads (launch dim 1, CPU; nothing on CUDA):
    :data:`~physml.solvers.linalg.factor_network_source.FORWARD`. Reads the pattern (with
    its diagonal positions), its values, A (CSR offsets, columns and values) and the weights;
    writes the three work arrays, the phases' claim counts (zero at the start) and the
    factor."""
    network_forward(offsets, columns, upper_offsets, upper_columns, transpose_index,
                    diagonal, values, matrix_offsets, matrix_columns, matrix_values, weights,
                    width, steps, rows, entries, cholesky, work, exact_work, index_work, claims,
                    part, parts, yield_address, factor)


_PART = 20
"""Position of ``part`` among :func:`network_kernel`'s arguments."""

_OVERLOADS = {
    (real, out): wp.overload(network_kernel, {"weights": wp.array(dtype=real),
                                              "work": wp.array(dtype=real),
                                              "matrix_values": wp.array(dtype=out),
                                              "factor": wp.array(dtype=out)})
    for real, out in ((wp.float32, wp.float64), (wp.float32, wp.float32),
                      (wp.float64, wp.float64))
}
"""The kernel per (network precision, factor precision): float32 networks for float64 or
float32 matrices (A's values in the factor's precision), float64 throughout for checks."""


class NetworkFactor:
    """A trained network's factor for any matrix with a positive diagonal, on the CPU.

    Args:
        weights: the network's weights (:class:`NetworkWeights`).
        kind: ``"cholesky"`` (L with $M = L L^T$) or ``"sparse_inverse"`` (G with
            $M^{-1} = G^T G$).
        dtype: the network's precision, ``wp.float32`` (as trained) or ``wp.float64``.
    """

    def __init__(self, weights: NetworkWeights, kind: str, dtype: type = wp.float32) -> None:
        if kind not in ("cholesky", "sparse_inverse"):
            raise ValueError(f"kind={kind!r}; allowed: cholesky, sparse_inverse")
        features = weights.node_encoder[0][0].shape[1]
        if features != NODE_FEATURES:
            raise ValueError(f"the network reads {features} node features; a factor from a "
                             f"matrix alone has {NODE_FEATURES}")
        if dtype not in (wp.float32, wp.float64):
            raise ValueError(f"dtype={dtype!r}; allowed: wp.float32, wp.float64")
        self.kind, self.width, self.dtype = kind, weights.width, dtype
        self.steps = len(weights.steps)
        flat = weights.flat()
        if flat.size != self.weight_count():
            raise ValueError(f"the weights hold {flat.size} numbers; a network of width "
                             f"{self.width} with {self.steps} steps has {self.weight_count()}")
        self.weights = wp.array(flat, dtype=dtype, device="cpu")
        self._scratch: tuple[tuple[int, int, int], tuple[wp.array, ...]] | None = None
        self._scratch_lock = threading.Lock()  # held by the forward using the kept scratch
        # per (factor dtype, part), with the kept scratch
        self._recorded: dict[tuple[type, int], tuple[Replay, list]] = {}

    def weight_count(self) -> int:
        """Numbers in :meth:`NetworkWeights.flat` for this width H and K steps: encoders
        (F H + H + H² + H and 3 H + H + H² + H), K steps of 7 H² + 4 H (the edge update's
        four H² and two biases, the node update's 3 H² and two biases), decoders
        (H² + H + H + 1 each)."""
        h, f = self.width, NODE_FEATURES
        encoders = (f * h + 2 * h + h * h) + (3 * h + 2 * h + h * h)
        return encoders + self.steps * (7 * h * h + 4 * h) + 2 * (h * h + 2 * h + 1)

    def fits(self, n: int, nnz: int, parts: int = 1) -> bool:
        """Whether n rows and nnz entries of L fit the native forward's 32-bit offsets."""
        return self.work_size(n, nnz, parts) < 2**31

    def work_size(self, n: int, nnz: int, parts: int = 1) -> int:
        """Entries of the work array for n rows and nnz entries of L, the forward in ``parts``
        (layout in :data:`~physml.solvers.linalg.factor_network_source.FORWARD`)."""
        rows, edges = -(-n // 16) * 16, -(-(nnz - n) // 16) * 16  # padded, on each side
        return ((5 * self.width + 2) * rows + (2 * self.width + 3) * edges
                + parts * self.width * TILE)

    def values(self, pattern: LowerPattern, matrix: wps.BsrMatrix, out: type = wp.float64,
               threads: int | str = "auto") -> wp.array:
        """The factor's values on ``pattern`` (its CSR order), from the matrix values the
        pattern keeps (``pattern.lower``), shape (nnz,), dtype ``out``; ``matrix`` is A, the
        Warp CSR matrix (on the CPU, of dtype ``out``) the pattern was built from, checked
        symmetric in the same call (a matrix the native loop flags is confirmed by
        :func:`require_symmetric`). The forward runs on :func:`forward_parts` host threads
        (``threads``), bit for bit the same factor on any number.

        Raises:
            ValueError: the pattern is not on the CPU or too large (:meth:`fits`), ``out`` is
                float32 for a float64 network or not A's dtype, ``threads`` is neither
                "auto" nor a whole number >= 1, A has a non-finite entry
                (:func:`require_finite`, looked for only when the call found a fault), a
                diagonal entry is not positive, or A is not symmetric.
            FactorOutOfRange: the factor has a non-finite entry or a scaled diagonal entry
                at or below :data:`~.factor_network_source.SMALLEST_SCALED_DIAGONAL` of
                ``out`` (checked in the same native call).
        """
        if not pattern.device.is_cpu:
            raise ValueError(f"pattern on {pattern.device}; the native network runs on the CPU")
        if (self.dtype, out) not in _OVERLOADS:
            raise ValueError(f"a float64 network gives a float64 factor; out={out!r}")
        if matrix.scalar_type != out:
            raise ValueError(f"matrix is {matrix.scalar_type.__name__}; out={out.__name__} "
                             "needs A in the factor's precision")
        n, nnz = pattern.n, pattern.nnz
        parts = forward_parts(n, threads)
        if not self.fits(n, nnz, parts):
            raise ValueError(f"{n} rows and {nnz} entries at width {self.width} exceed the "
                             "native forward's 32-bit offsets")
        values = pattern.lower.data
        factor = wp.empty(nnz, dtype=out, device="cpu")
        with held_if_free(self._scratch_lock) as kept:  # busy: this call takes its own
            scratch = self._scratch_for(n, nnz, parts, kept)
            scratch[3].zero_()  # the phases' claim counts
            arguments = [
                pattern.offsets, pattern.column_array, pattern.upper_offsets,
                pattern.upper_columns, pattern.transpose_index, pattern.diagonal,
                wp.array(np.ascontiguousarray(values, dtype=np.float64), dtype=wp.float64,
                         device="cpu", copy=False),  # a view where A is float64
                matrix.offsets, matrix.columns, matrix.values,
                self.weights, self.width, self.steps, n, nnz, int(self.kind == "cholesky"),
                *scratch, 0, parts, SCHED_YIELD, factor]
            # the launches packed on this thread (the first also loads the module), then run
            launches = [self._launch(out, [*arguments[:_PART], part, *arguments[_PART + 1:]],
                                     kept and self._scratch is not None)
                        for part in range(parts)]
            in_parallel(lambda part: launches[part](), parts)
            # 1 + the first row with d_i <= 0, with a bad factor entry, and flagged unsymmetric
            row, factor_row, unsymmetric = (int(k) for k in scratch[2].numpy()[-3:])
        if row or factor_row or unsymmetric:  # a NaN or Inf of A causes any of them
            require_finite(csr_to_scipy(matrix))
        if unsymmetric:  # before the factor's range: a factor of the wrong matrix
            require_symmetric(csr_to_scipy(matrix))
        if row:
            entry = float(values[pattern.lower.indptr[row] - 1])
            raise ValueError(f"matrix has the diagonal entry {entry:g} in row {row - 1}; a "
                             "learned factor needs a positive diagonal (an SPD matrix)")
        if factor_row:
            raise FactorOutOfRange(factor_row - 1)
        return factor

    def _launch(self, out: type, arguments: list, kept: bool) -> Replay:
        """The launch of one part of the forward (``arguments[_PART]``), packed, not yet run:
        with the kept scratch (``kept``), its recording, re-packing only the arguments that
        changed since the last call (the pattern's arrays, the view of its values and the
        factor: ``wp.launch`` packs all twenty-four every time; a recording holds its last
        call's arrays, and is dropped when the kept scratch is replaced); else a new one."""
        recorded = self._recorded.get((out, arguments[_PART])) if kept else None
        if recorded is None:
            launch = Replay(wp.launch(_OVERLOADS[(self.dtype, out)], dim=1, device="cpu",
                                      inputs=arguments[:-1], outputs=arguments[-1:],
                                      record_cmd=True))
        else:
            launch, last = recorded
            for index, (argument, before) in enumerate(zip(arguments, last)):
                if argument is not before and not (isinstance(argument, int)
                                                   and argument == before):
                    launch.set(index, argument)
        if kept:
            self._recorded[(out, arguments[_PART])] = (launch, arguments)
        return launch

    def _scratch_for(self, n: int, nnz: int, parts: int, keep: bool) -> tuple[wp.array, ...]:
        """The forward's scratch arrays (work; float64 work, the scaled entries and the
        square roots of the diagonal; int work, the entries' rows, the edges' ends with 24
        spare entries and the three status entries; the phases' claim counts) for n rows and
        nnz entries in ``parts`` (room for the available cores' parts at least, so that calls
        in fewer parts or more, up to those, share it). With ``keep``
        (the caller holds the kept set), those of the last call when its sizes were the same (a
        series of small systems on one mesh allocates and first-touches them once, which costs
        as much as a fifth of their forward), kept up to :data:`KEPT_SCRATCH_BYTES`; else new
        ones."""
        if keep and self._scratch is not None and self._scratch[0][:2] == (n, nnz) and (
                self._scratch[0][2] >= parts):
            return self._scratch[1]
        parts = max(parts, available_cores())
        scratch = (wp.empty(self.work_size(n, nnz, parts), dtype=self.dtype, device="cpu"),
                   wp.empty(nnz + 2 * n, dtype=wp.float64, device="cpu"),
                   wp.empty(nnz + 4 * (nnz - n) + 27, dtype=wp.int32, device="cpu"),
                   wp.empty((parts + 1) * (2 * self.steps + 7), dtype=wp.int32, device="cpu"))
        if keep:
            small = sum(a.capacity for a in scratch) <= KEPT_SCRATCH_BYTES
            self._scratch = ((n, nnz, parts), scratch) if small else None
            self._recorded.clear()  # they hold the scratch they were recorded with
        return scratch
