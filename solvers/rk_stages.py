r"""Fused Runge–Kutta stages of the convection–diffusion–reaction operator, batched.

One launch per stage $i$ of an explicit scheme evaluates
$k_i = F(v_i)$, $F(u) = -\sum_d \partial_d f_d(u) + \nu\,\Delta u + \rho\, r(u)$
(:mod:`physml.solvers.operators` has the stencils) and writes the next stage's input (or, at
the last stage, the new state)

$$w = u + \Delta t \Big(\sum_{j<i} c_j k_j + c_i k_i\Big),$$

$c$ a row of the Butcher tableau (the next stage's $a$, or $b$). Boundary conditions are
applied inside the stencil: a neighbour index outside the grid is mapped to its interior
source cell and the ghost value $a\,u_{src} + b$ of :mod:`physml.solvers.grid` (no padded copy).

**Batches and coefficients.** A state is ``B`` samples of ``N`` cells, flat (sample-major).
Each coefficient ($\nu$, $\rho$, $\Delta t$) is read as ``p[b s_b + n s_n]`` for sample
``b`` and cell ``n``, with strides :class:`Coefficient` derives from its shape: one value
(0, 0), one per sample (1, 0), one field for all samples (0, 1) or a field per sample (N, 1).
The velocity of a linear flux is one vector, or one per sample. Samples never mix: the
arithmetic of a sample does not depend on the batch around it.

**Layout.** A grid of ``ndim`` axes is a 3D block ``(n0, n1, n2)`` with leading axes of one
cell, so the grid's last axis is always the contiguous one.

**Kernels.** :mod:`physml.solvers.stage_kernels` holds the kernels (one thread per cell for
CUDA and a ``wp.Tape``, row segments on host threads for the CPU), built from the functions of
:mod:`physml.solvers.stage_functions` and the native loops of
:mod:`physml.solvers.stage_native_source`. Here :class:`FusedStages` chooses a kernel, splits
the rows over host threads and records and replays its launches; :class:`StageWork` holds a
fused step's arrays.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import warp as wp

from .grid import BCKind, BoundaryConditions, Grid
from .host_threads import ForkSafeLock, available_cores, in_parallel
from .kept import held_if_free
from .kernel_launch import launch
from .replay import Replay
from .stage_kernels import stage_cells_kernel, stage_rows_kernel, stage_runs_kernel
from .timestepping import Tableau

RECORDED_PER_STAGE = 3
"""Sets of recorded row-kernel launches a stage keeps (:meth:`FusedStages._recorded`): the two
between which a rollout's work arrays alternate and the first step's, from the initial state
(so that the next rollout on these arrays replays all three). Each holds the arrays it was
recorded with (alive until it is re-packed, or its batch size is dropped:
:data:`RECORDED_BATCHES`)."""

RECORDED_BATCHES = 4
"""Batch sizes a :class:`FusedStages` keeps row splits and recorded launches for: the ones it
split most recently. The recorded launches of a batch size hold the work arrays they were
recorded with, which :class:`StageWork` replaces when a larger batch asks, so keeping every
batch size's would keep each generation of those arrays alive."""

MIN_CELLS_PER_THREAD = 1 << 17
"""Fewest cells a host thread gets by default on the CPU, a cell of a stage with limited (MUSCL)
fluxes counting :data:`LIMITED_FLUX_WEIGHT` times. A stage costs a few to tens of nanoseconds
per cell, and a second thread pays only where it saves more than it costs to hand over
(measured on 2-core VMs: 2D Burgers 1.5x faster on two threads at 256^2 cells and 0.8x at
128^2, 1D Burgers 1.1x at 2^16 and 0.7x at 2^15, heat 0.8-0.9x at 2^16)."""

LIMITED_FLUX_WEIGHT = 4
"""How many central-difference cells a cell with limited fluxes counts for in the thread
count: its stage computes van Leer slopes and Rusanov fluxes, several times the work."""

BLOCK_BYTES = 1 << 19
"""Most bytes of stage arrays (:data:`STAGE_ARRAYS` of them) one block of samples spans. A host
thread whose chunk holds whole samples runs the replayed steps of a rollout
(:meth:`FusedStages.run`) block by block, each block through every step, so that its arrays stay
in the core's L2 cache (1-2 MB on current CPUs) from one stage to the next. Swept whole at each
stage, a chunk of 256 1024-cell float64 samples (2 MB per array) took 1.2-1.35x the time per
sample of blocks of 10 (2-core Zen 4 VM, one thread); blocks of 2-3 samples lose it again to the
calls' own cost (about a microsecond each)."""

STAGE_ARRAYS = 6
"""Arrays of a state's size a stage reads or writes: its input, the state, up to three ks and
its output."""


class RowSplit(NamedTuple):
    """The row segments of a batch's stage split over host threads, and into blocks.

    Attributes:
        segment: cells of a row segment.
        chunks: ``(first, count)`` row segments of each host thread.
        blocks: the chunks' blocks, one after another: ``(first, count)`` ranges of whole
            samples spanning at most :data:`BLOCK_BYTES` of stage arrays (a chunk that does
            not hold whole samples is one block).
        chunk_blocks: the blocks of each chunk, ``(lo, hi)`` indices into ``blocks``.
        samples_apart: whether every chunk holds whole samples, so that its stage calls
            depend on no other chunk.
    """

    segment: int
    chunks: list[tuple[int, int]]
    blocks: list[tuple[int, int]]
    chunk_blocks: list[tuple[int, int]]
    samples_apart: bool


@dataclass(frozen=True)
class Coefficient:
    """A coefficient as the stage kernels read it: ``values[b s_b + n s_n]`` for sample b and
    cell n (``strides = (s_b, s_n)``; for a velocity, ``values[b s_b + d]``)."""

    values: wp.array
    strides: tuple[int, int] = (0, 0)


def time_step_coefficient(dt: wp.array) -> Coefficient:
    """The stage kernels' view of the time steps ``dt``: one for every sample ``(1,)``, or one
    per sample ``(B,)``."""
    return Coefficient(dt, (0, 0) if dt.shape[0] == 1 else (1, 0))


class FusedStages:
    """Launches the fused stage kernels of one grid, boundary conditions and operator.

    Args:
        grid, bc: the grid and its boundary conditions.
        ghost: stencil half-width (1: central, 2: MUSCL).
        flux_kind, limiter, reaction_kind: the operator (:mod:`physml.solvers.operators`).
        dtype, device: Warp dtype and device.
        threads: host threads on the CPU (default: one per available core while each gets
            :data:`MIN_CELLS_PER_THREAD` cells, weighted by :data:`LIMITED_FLUX_WEIGHT`). The
            result does not depend on it.
    """

    def __init__(self, grid: Grid, bc: BoundaryConditions, ghost: int, flux_kind: int,
                 limiter: int, reaction_kind: int, dtype: type, device: str,
                 threads: int | None = None) -> None:
        offset = 3 - grid.ndim
        self.grid, self.dtype, self.device, self.ghost = grid, dtype, device, int(ghost)
        self.shape = wp.vec3i(*([1] * offset + list(grid.shape)))
        kinds = [(0, 0)] * offset + [bc.kinds(d) for d in range(grid.ndim)]
        self.kinds_lo = wp.vec3i(*(k[0] for k in kinds))
        self.kinds_hi = wp.vec3i(*(k[1] for k in kinds))
        self.axis_offset = offset
        inv_dx = [1.0] * offset + [1.0 / h for h in grid.dx]
        self.inv_dx = wp.array(inv_dx, dtype=dtype, device=device)
        self.coef = wp.array(_ghost_table(grid, bc, ghost), dtype=dtype, device=device)
        self.operator = (int(flux_kind), int(limiter), int(reaction_kind))
        self.on_cpu = wp.get_device(device).is_cpu
        self.threads = threads
        self._empty = wp.empty(0, dtype=dtype, device=device)
        self.size = grid.size
        self._launches: dict[tuple, list[tuple[list[Replay], list]]] = {}
        self._splits: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        """By batch size, least recently used first (:meth:`_split`)."""
        self._cache_lock = ForkSafeLock()
        """Held while :attr:`_splits` or the keys of :attr:`_launches` change or are read:
        :meth:`host_threads` is asked outside :attr:`step_lock` (a backward pass's set-up)."""
        self._constants: dict[tuple[float, ...], wp.array] = {}
        self._plans: dict[Tableau, list[tuple[wp.array, str, str, bool]]] = {}
        # a rollout's work arrays, kept between rollouts: fresh arrays of a large grid cost
        # more in first-touch page faults than several steps on them
        self._kept_work = StageWork(reuse=True)
        self._kept_in_use = threading.Lock()
        self.step_lock = ForkSafeLock()
        """Held through each rollout step: the recorded launches and their re-packing are
        shared by every rollout of these stages, so steps of concurrent rollouts take turns
        (a process forked during a step finds it free)."""
        self._capture: list[list[Replay] | None] | None = None
        self.repacks = 0
        """Recorded launches re-packed for other arrays so far (calls captured before a
        re-pack may now name other arrays)."""

    def constant(self, values: list[float]) -> wp.array:
        """A (cached) array of tableau coefficients."""
        key = tuple(float(v) for v in values)
        if key not in self._constants:
            self._constants[key] = wp.array(key, dtype=self.dtype, device=self.device)
        return self._constants[key]

    def tableau_plan(self, scheme: Tableau) -> list[tuple[wp.array, str, str, bool]]:
        """Per stage of ``scheme``: its coefficients ``c`` (:meth:`launch`: the row of ``a``
        after it, or ``b``, over the earlier stages, then its own), the names of its k and
        output in a :class:`StageWork` and whether a later stage reads its k (computed once
        per scheme)."""
        if scheme not in self._plans:
            plan = []
            for i in range(scheme.stages):
                last = i == scheme.stages - 1
                row = scheme.b if last else scheme.a[i + 1]
                coefficients = [row[j] if j < i else 0.0 for j in range(3)] + [row[i]]
                later = [*scheme.a[i + 2:], scheme.b] if not last else []
                read_later = any(len(r) > i and r[i] != 0.0 for r in later)
                plan.append((self.constant(coefficients), f"k{i}",
                             "out" if last else f"v{i % 2}", read_later))
            self._plans[scheme] = plan
        return self._plans[scheme]

    def launch(self, v: wp.array, batch: int, nu: Coefficient, velocity: Coefficient,
               rho: Coefficient, k_out: wp.array, *, u: wp.array | None = None,
               ks: tuple[wp.array, ...] = (), c: wp.array | None = None,
               dt: Coefficient | None = None, w_out: wp.array | None = None,
               with_diffusion: bool = True, record: bool = False, keep_k: bool = True) -> None:
        """k_out = F(v) and, with ``w_out``, w_out = u + dt (sum_j c_j ks_j + c_3 k_out).

        Args:
            v, u, ks, k_out, w_out: flat arrays of ``batch * grid.size`` values (ks: up to 3).
            c: (4,) tableau coefficients of ks and of the new k.
            record: launch the per-cell kernel, which a ``wp.Tape`` can differentiate.
            keep_k: False: k_out need not be written (a stage whose k nothing reads later;
                with ``w_out``): the native runs then leave it alone, saving its memory
                traffic.
        """
        empty = self._empty
        ks = tuple(ks) + (empty,) * (3 - len(ks))
        dt = dt if dt is not None else Coefficient(empty)
        inputs = [
            v, empty if u is None else u, *ks, empty if c is None else c, dt.values,
            nu.values, velocity.values, rho.values, self.inv_dx, self.coef,
            tuple(dt.strides), tuple(nu.strides), int(velocity.strides[0]),
            tuple(rho.strides), self.shape, self.kinds_lo, self.kinds_hi, self.axis_offset,
            self.ghost, *self.operator, int(with_diffusion), len([k for k in ks if k.size]),
        ]
        outputs = [k_out, empty if w_out is None else w_out]
        if record or not self.on_cpu:
            if self._capture is not None:
                self._capture.append(None)  # not a replayable launch
            launch(stage_cells_kernel, self.dtype, dim=batch * self.size, inputs=inputs,
                   outputs=outputs, device=self.device, record_tape=record)
            return
        split = self._split_with_blocks(batch)
        native = nu.strides[1] == 0 and rho.strides[1] == 0
        if native and not keep_k and w_out is not None:
            outputs[0] = empty
        calls = self._recorded((batch, inputs[-1], id(inputs[5]), native), inputs, outputs,
                               split, native)
        if self._capture is not None:
            self._capture.append(calls)
        self.run(calls)

    @contextmanager
    def rollout_work(self) -> Iterator[StageWork]:
        """The work arrays of one rollout: the kept set, or a private one when another rollout
        holds it (one started from a callback, or in another thread, also through a
        ``with_parameters``/``with_dt`` copy of the solver, which shares these stages)."""
        with held_if_free(self._kept_in_use) as kept:
            yield self._kept_work if kept else StageWork(reuse=True)

    @contextmanager
    def capturing(self) -> Iterator[list[list[Replay] | None]]:
        """Within the block, the recorded calls of every CPU launch are also appended to the
        list it yields (``None`` for a launch that was not recorded): what :meth:`run`
        repeats. A caller that keeps the arrays of those launches alive and unchanged may
        replay them without going through :meth:`launch` again, as long as :attr:`repacks`
        has not changed since, and only where those launches are all the block's work (work
        done outside them, as other kernels or host code, is not captured)."""
        self._capture = []
        try:
            yield self._capture
        finally:
            self._capture = None

    def run(self, *launches: list[Replay], batch: int | None = None) -> None:
        """Run launches' recorded calls (one per chunk of row segments, or, as :meth:`launch`
        records them, :class:`BlockCalls`), the chunks after the first on the host pool, each
        launch after the one before.

        Each launch waits for all chunks of the one before it, unless ``batch`` is given and
        each chunk of the split its calls were recorded with held whole samples
        (``BlockCalls.samples_apart``; the split now may differ, where the host threads
        available changed since): a sample's
        stages read only that sample, so each chunk then runs its calls of every launch on
        one thread, block by block (each block through every launch, while its arrays stay
        in the cache: :data:`BLOCK_BYTES`), and the launches wait only once, at the end (a
        wake-up of a host thread costs tens of microseconds on a virtual machine; a stage of
        256 1024-cell samples about 115 per thread)."""
        chained = batch is not None and len(launches) > 1 and all(
            getattr(calls, "samples_apart", False) and calls.chunks == launches[0].chunks
            for calls in launches)
        for group in [launches] if chained else [[calls] for calls in launches]:
            _run_chunks(group)

    def host_threads(self, batch: int) -> int:
        """Host threads the stages of a ``batch``-sample state run on (1 off the CPU)."""
        return len(self._split(batch)[1]) if self.on_cpu else 1

    def _whole_samples(self, segment: int, first: int, count: int) -> int:
        """The samples in the row segments ``first .. first + count`` (of ``segment`` cells),
        0 unless they are whole samples."""
        per_sample = self.shape[0] * self.shape[1] * -(-self.shape[2] // segment)
        whole = first % per_sample == 0 and count % per_sample == 0
        return count // per_sample if whole else 0

    def _recorded(self, stage: tuple, inputs: list, outputs: list, split: RowSplit,
                  native: bool) -> BlockCalls:
        """The recorded launches (one per block of row segments of ``split``) for these
        arguments: of
        :data:`~physml.solvers.stage_kernels.stage_runs_kernel` (``native``) or
        :data:`~physml.solvers.stage_kernels.stage_rows_kernel`.

        Packing the thirty arguments of a launch costs more than the kernel on small grids,
        so each stage keeps up to :data:`RECORDED_PER_STAGE` sets of recorded launches, with
        the arguments they were recorded for: a rollout's work arrays alternate between two
        sets (and start from a third), which then replay without re-packing anything.
        Arguments no set was recorded for re-pack the least recently used set where they
        differ (and are checked for overlap first: the native runs' restrict pointers)."""
        values = [*inputs, *outputs]
        with self._cache_lock:
            recorded = self._launches.setdefault(stage, [])
        for position, (replays, last) in enumerate(recorded):
            if all(map(operator.is_, values, last)) or all(
                    a is b or _same_value(a, b) for a, b in zip(values, last)):
                if position:
                    recorded.insert(0, recorded.pop(position))
                return replays
        _require_disjoint(outputs, inputs[:5])
        if len(recorded) < RECORDED_PER_STAGE:
            replays = BlockCalls((
                Replay(launch(stage_runs_kernel if native else stage_rows_kernel, self.dtype,
                              dim=1 if native else count,
                              inputs=[*inputs, split.segment, first,
                                      *([count] if native else [])],
                              outputs=outputs, device=self.device, record_tape=False,
                              record_cmd=True))
                for first, count in split.blocks), split.chunk_blocks, split.samples_apart)
            recorded.insert(0, (replays, values))
            return replays
        replays, last = recorded.pop()
        self.repacks += 1
        between = 3 if native else 2  # segment, first (, count): between inputs and outputs
        for i, (new, old) in enumerate(zip(values, last)):
            if new is not old and not _same_value(new, old):
                index = i if i < len(inputs) else i + between
                for replay in replays:
                    replay.set(index, new)
        recorded.insert(0, (replays, values))
        return replays

    def _split(self, batch: int) -> tuple[int, list[tuple[int, int]]]:
        """Segment length and ``(first, count)`` ranges of row segments, one per host thread."""
        split = self._split_with_blocks(batch)
        return split.segment, split.chunks

    def _split_with_blocks(self, batch: int) -> RowSplit:
        """:meth:`_split` and the blocks of its chunks (:class:`RowSplit`).

        Kept for the :data:`RECORDED_BATCHES` batch sizes split most recently; a batch size
        dropped from them takes its recorded launches along."""
        with self._cache_lock:
            split = self._splits.pop(batch, None)
            if split is None:
                segment, chunks = self._segments(batch)
                per_chunk = [self._blocks(segment, *chunk) for chunk in chunks]
                ends = np.cumsum([0] + [len(blocks) for blocks in per_chunk]).tolist()
                apart = all(self._whole_samples(segment, *chunk) for chunk in chunks)
                split = RowSplit(segment, chunks, [b for blocks in per_chunk for b in blocks],
                                 list(zip(ends[:-1], ends[1:])), apart)
            self._splits[batch] = split
            if len(self._splits) > RECORDED_BATCHES:
                oldest = next(iter(self._splits))
                del self._splits[oldest]
                for stage in [stage for stage in self._launches if stage[0] == oldest]:
                    del self._launches[stage]
        return split

    def _blocks(self, segment: int, first: int, count: int) -> list[tuple[int, int]]:
        """The chunk ``first .. first + count`` of row segments as blocks of whole samples
        (:data:`BLOCK_BYTES`), or as one block where it does not hold whole samples."""
        samples = self._whole_samples(segment, first, count)
        sample_bytes = STAGE_ARRAYS * self.size * wp.types.type_size_in_bytes(self.dtype)
        per_block = max(1, BLOCK_BYTES // sample_bytes)
        if samples <= per_block:
            return [(first, count)]
        rows = count // samples * per_block
        return [(lo, min(rows, first + count - lo)) for lo in range(first, first + count, rows)]

    def _segments(self, batch: int) -> tuple[int, list[tuple[int, int]]]:
        cells = batch * self.size
        n2 = self.shape[2]
        lines = cells // n2
        if self.threads is None:
            weight = LIMITED_FLUX_WEIGHT if self.ghost > 1 else 1  # two ghost layers: MUSCL
            count = max(1, min(available_cores(), cells * weight // MIN_CELLS_PER_THREAD))
        else:
            count = int(self.threads)
        parts = max(1, -(-count // lines))  # split rows when there are fewer rows than threads
        segment = -(-n2 // parts)
        blocks = lines * (-(-n2 // segment))
        count = min(count, blocks)
        bounds = [blocks * j // count for j in range(count + 1)]
        return segment, [(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]


class BlockCalls(list):
    """A launch's recorded calls, one per block of row segments, the blocks each host thread
    runs (``chunks``, ``(lo, hi)`` index ranges) and whether each thread's blocks hold whole
    samples (``samples_apart``), as the split they were recorded with had them
    (:meth:`FusedStages.run`)."""

    def __init__(self, calls: Iterable[Replay], chunks: list[tuple[int, int]],
                 samples_apart: bool) -> None:
        super().__init__(calls)
        self.chunks, self.samples_apart = chunks, samples_apart


def _run_chunks(launches: tuple[list[Replay], ...] | list[list[Replay]]) -> None:
    """Each chunk's calls on its own host thread (a :class:`BlockCalls`' chunks, else call j
    of each launch for chunk j), block by block (a block's call of every launch in order, then
    the next block's); returns when every chunk is done."""
    chunks = getattr(launches[0], "chunks", None) or [(j, j + 1) for j in range(len(launches[0]))]

    def chunk(j: int) -> None:
        for block in range(*chunks[j]):
            for calls in launches:
                calls[block]()

    in_parallel(chunk, len(chunks))


def _require_disjoint(outputs: list[wp.array], inputs: list[wp.array]) -> None:
    """Refuse an output whose memory overlaps an input or the other output (arrays of one
    dtype)."""
    item = wp.types.type_size_in_bytes(outputs[0].dtype)
    written = [(a.ptr, a.ptr + a.size * item) for a in outputs if a.size]
    spans = written + [(a.ptr, a.ptr + a.size * item) for a in inputs if a.size]
    for i, (lo, hi) in enumerate(written):
        if any(other_lo < hi and lo < other_hi for other_lo, other_hi in spans[i + 1:]):
            raise ValueError("a fused stage's output overlaps one of its inputs")


def _same_value(a: Any, b: Any) -> bool:
    """Whether two kernel arguments that are not one object pack the same (arrays never)."""
    if isinstance(a, wp.array) or isinstance(b, wp.array):
        return False
    return type(a) is type(b) and a == b


def _ghost_table(grid: Grid, bc: BoundaryConditions, ghost: int) -> np.ndarray:
    """Rows (a, b) with ghost = a u_src + b (:mod:`physml.solvers.grid`), row
    ``1 + (2 axis + side) ghost + m - 1`` for ghost layer m of a side of kernel axis ``axis``;
    row 0 is the identity."""
    rows = np.zeros((1 + 6 * ghost, 2))
    rows[:, 0] = 1.0
    offset = 3 - grid.ndim
    for d in range(grid.ndim):
        for side, condition in enumerate(bc.sides[d]):
            for m in range(1, ghost + 1):
                row = 1 + (2 * (d + offset) + side) * ghost + (m - 1)
                if condition.kind == BCKind.DIRICHLET:
                    rows[row] = (-1.0, 2.0 * condition.value)
                elif condition.kind == BCKind.NEUMANN:
                    direction = -1.0 if side == 0 else 1.0
                    rows[row] = (1.0, direction * (2 * m - 1) * grid.dx[d] * condition.value)
    return rows


class StageWork:
    """Where the fused steps of :meth:`~physml.solvers.GridSolver.advance` put their arrays.

    Args:
        reuse: False (default): every request is a new array, so a ``wp.Tape`` can record the
            step. True: arrays are kept by name and handed out again (grown when a larger
            state asks), so a rollout allocates nothing after its first step; a step's output
            (``"out"``) is whichever of two arrays its input is not, so a step may read the
            previous step's output. A smaller state gets the same view of a kept array at
            every request (recorded launches that read it replay). A kept array replaced by a
            larger one is let go, with its views and the recorded steps (:attr:`replays`):
            the arrays held stay those of the largest state.
    """

    MAX_VIEWS = 64
    """Views of kept arrays remembered (beyond it they are forgotten and made anew)."""

    MAX_REPLAYS = 64
    """Recorded steps :attr:`replays` remembers (beyond it they are forgotten)."""

    def __init__(self, reuse: bool = False) -> None:
        self.reuse = reuse
        self._arrays: dict[str, wp.array] = {}
        self._views: dict[tuple[str, int], wp.array] = {}
        self.replays: dict[tuple[int, int], tuple] = {}
        """The recorded launches of the rollout steps run in these arrays, by the active
        samples and the input's address (:func:`~physml.solvers.rollout.replayed_steps`
        keeps and checks them)."""

    def array(self, name: str, like: wp.array, requires_grad: bool) -> wp.array:
        """A flat array of ``like``'s size, dtype and device (uninitialised); for ``"out"``,
        kept arrays ``"out0"`` or ``"out1"``, not the one ``like`` lies in."""
        if not self.reuse or requires_grad:
            return wp.empty_like(like, requires_grad=requires_grad)
        if name == "out":
            name = "out1" if self._arrays.get("out0") is not None and (
                self._arrays["out0"].ptr == like.ptr) else "out0"
        kept = self._arrays.get(name)
        if kept is None or kept.size < like.size or (kept.device is not like.device
                                                     and kept.device != like.device):
            kept = self._replaced(name, wp.empty(like.size, dtype=like.dtype,
                                                 device=like.device))
        return self._sized(name, kept, like.size)

    def filled(self, name: str, values: np.ndarray, dtype: type, device: str) -> wp.array:
        """A kept flat array named ``name`` holding ``values`` (converted to ``dtype``); the
        same array object while the size stays (recorded launches that read it replay)."""
        device = wp.get_device(device)
        kept = self._arrays.get(name)
        if kept is None or kept.size < values.size or kept.dtype != dtype or (
                kept.device != device):
            kept = self._replaced(name, wp.empty(values.size, dtype=dtype, device=device))
        view = self._sized(name, kept, values.size)
        if device.is_cpu:  # in place: assign() goes through a temporary Warp array
            np.copyto(view.numpy(), values.ravel())
        else:
            view.assign(values.ravel())
        return view

    def _replaced(self, name: str, kept: wp.array) -> wp.array:
        """Keep ``kept`` as ``name``, forgetting the views of the array it replaces, if any,
        and the recorded steps, which may read that array (so that it can be freed)."""
        if name in self._arrays:
            self._views = {key: view for key, view in self._views.items() if key[0] != name}
            self.replays.clear()
        self._arrays[name] = kept
        return kept

    def _sized(self, name: str, kept: wp.array, size: int) -> wp.array:
        """The first ``size`` values of the kept array ``name``: itself, or one view per
        size."""
        if kept.size == size:
            return kept
        view = self._views.get((name, size))
        if view is None or view.ptr != kept.ptr:
            if len(self._views) >= self.MAX_VIEWS:
                self._views.clear()
            view = kept[:size]
            self._views[(name, size)] = view
        return view
