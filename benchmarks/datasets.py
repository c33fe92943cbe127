r"""Dataset generation throughput with 1 and 2 local Dask workers, and read throughput of the
PyTorch :class:`~physml.data.FieldDataset` against plain h5py reads of the same arrays.

Generation: PDEBench's 1D Burgers (1024 cells, $t\in[0,2]$, 201 saved states, random sines,
$\nu = 0.001$, explicit SSP-RK3) for ``--samples`` samples, once on a local Dask cluster of one
worker process and once on two, each into a fresh folder; samples/s counts the whole command
(cluster start-up included). The two datasets are checked to be identical.

Reading: every sample of the generated training split, read ``--repeats`` times, through
``FieldDataset`` (one item per sample) and through h5py (``f["u"][i]``), alternately (in
reversed order every other repeat, after one untimed read of each); MB/s and the ratio
FieldDataset/h5py. Pairs, as an autoregressive model trains on them, from the same samples
generated again into shards of 16 (a spec's default; the generation runs write one sample per
shard): every pair $(u_t, u_{t+1})$ once, in one shuffled order, through
``FieldDataset(pairs=1)`` and through two h5py readers a user of shuffled pairs would write: an
open dataset read with ``d[i, t:t + 2]`` under a chunk cache of ``PAIR_CHUNK_CACHE`` bytes, and
each shard's whole array read once (``f["u"][...]``) then indexed; every side hands out PyTorch
tensors, as a training loop takes them (h5py's through ``torch.from_numpy``, without a copy where
they are views of a kept array; ``FieldDataset``'s items are copies); pairs/s of each, the ratios,
and the samples in the largest shard (fewer than 16 with ``--samples`` below 16). Every timed read
starts with nothing open or kept: each is given a new ``FieldDataset``, made untimed just before
as its set-up (each shard opened and checked: a cost paid once per training run, not per epoch,
which h5py's readers skip), whose seconds are reported with the rates and ratios the set-up
added (``with_setup``); the pairs are read by item number, as a sampler hands them out, the
numbers made with the set-up as h5py's readers are given the (file, sample, t) of each pair.
Each chunk is one sample's gzip'd trajectory, so HDF5's default 1 MiB chunk cache holds about
one and a shuffled order decompresses a whole trajectory for nearly every pair (about 1,000
pairs/s here): that setting measures cache misses, not a reader. Each side's rates are stored as the
median, spread and runs. The same pairs through ``DataLoader(batch_size=LOADER_BATCH,
shuffle=True)`` (one seeded order for every side, in process), every side's batches the pair of
tensors ``(u_t, u_{t+1})`` of shape ``(64, 1024)`` that the default collate stacks:
``FieldDataset``, which the loader reads a batch at a time (``__getitems__``), and also item by
item (a subclass without ``__getitems__``: what it read before); against h5py's whole
arrays (each shard's read once in the timed pass) as a map-style dataset handing out views of
them item by item, and one that gathers a batch with one NumPy index of the split's samples
stacked in one array (``__getitems__``); ``reading_pairs.loader``. Those are a first epoch,
every side reading (decompressing) the split as it goes; ``reading_pairs.loader.later_epoch``
times an epoch of a dataset that the loader has read once in its set-up (h5py's arrays read,
``FieldDataset``'s trajectories kept), the cost of each epoch after the first. Whole
trajectories of the same shards through ``DataLoader(batch_size=LOADER_TRAJECTORY_BATCH,
shuffle=True)`` (``reading.loader``, a first epoch, trajectories/s): ``FieldDataset`` a batch at a
time and item by item, against h5py's whole arrays handing out views item by item.

``--reading-only`` generates the samples in process and measures only the reading, replacing
the ``reading`` and ``reading_pairs`` entries of ``--out`` (its generation and JAX figures
kept, the reading's code and conditions under ``reading_provenance``).

Against PDEBench: the generator a PDEBench user has is PDEBench's JAX script, which advances
all samples of a batch with ``jax.jit(jax.vmap(...))``. The PyPI package ``pdebench`` 0.1.0
could not be installed here (no distribution in this machine's package index), so the peer is a
JAX ``jit`` + ``vmap`` twin of the same scheme as physml's solver (MUSCL with the van Leer
limiter, Rusanov flux, central diffusion, SSP-RK3, float64, periodic), written the way
PDEBench vectorises its generator: ``vmap`` over samples, ``lax.scan`` over saved states and a
``lax.fori_loop`` of each sample's own steps between saves (per-sample time step and step
count, as physml's :func:`~physml.datasets.grid_samples.step_plan`). Both sides solve the same
initial conditions (physml's seeds), same PDE, resolution, saved steps and sample count;
physml's time is the whole ``generate`` call (shards written), JAX's the compiled batched solve
(compile time reported apart); the cores each side kept busy (process CPU time over wall time)
are reported too (XLA's CPU runtime spreads the batched solve over the cores, physml's
in-process generation runs on one). Agreement: max |difference| of the final states, and the mean
and spread (standard deviation) of the final states of each side.

Run from the repository root (a few minutes on two cores)::

    python benchmarks/datasets.py [--samples 16] [--out benchmarks/results/datasets.json]
    python benchmarks/datasets.py --peer-only --peer-samples 32 \
        --out benchmarks/results/datasets_pdebench.json   # only physml against JAX
    python benchmarks/datasets.py --reading-only   # only the reading, into datasets.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch
import warp as wp
from _common import at_least, load_average, provenance, summary
from torch.utils.data import DataLoader, Dataset

import physml
from physml.data import FieldDataset
from physml.datasets.generate import generate
from physml.datasets.spec import DatasetSpec
from physml.datasets.store import shard_files
from physml.devices import Stopwatch

DEVICE = "cpu"  # where generation and reading run: datasets are generated on the CPU
PEER_REPEATS = 3


def jax_burgers_generator(dx: float, nu: float, n_saves: int):
    """The JAX twin: ``f(u0 (B, n), dt (B,), save_every (B,)) -> (B, n_saves, n)``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)

    def rhs(u):
        u_prev, u_next = jnp.roll(u, 1), jnp.roll(u, -1)
        back, forward = u - u_prev, u_next - u
        product = back * forward
        safe = jnp.where(product > 0, back + forward, 1.0)
        slope = jnp.where(product > 0, 2.0 * back * forward / safe, 0.0)
        u_left = u + 0.5 * slope
        u_right = jnp.roll(u - 0.5 * slope, -1)
        speed = jnp.maximum(jnp.abs(u_left), jnp.abs(u_right))
        flux = 0.5 * (0.5 * u_left * u_left + 0.5 * u_right * u_right) - 0.5 * speed * (
            u_right - u_left)
        return -(flux - jnp.roll(flux, 1)) / dx + nu * ((u_prev - u) + (u_next - u)) / dx**2

    def ssp_rk3(u, dt):
        k0 = rhs(u)
        k1 = rhs(u + dt * k0)
        k2 = rhs(u + (dt * 0.25) * k0 + (dt * 0.25) * k1)
        return u + (dt / 6) * k0 + (dt / 6) * k1 + (dt * 2 / 3) * k2

    def solve(u0, dt, save_every):
        def interval(u, _):
            u = lax.fori_loop(0, save_every, lambda i, v: ssp_rk3(v, dt), u)
            return u, u

        _, saved = lax.scan(interval, u0, None, length=n_saves - 1)
        return jnp.concatenate([u0[None], saved])

    return jax.jit(jax.vmap(solve))


def compare_with_jax(samples: int) -> dict:
    """Samples/s of physml's generate and of the JAX twin on the same samples, alternately."""
    from physml.datasets.grid_samples import initial_state, spec_solver, step_plan

    spec = burgers_spec(samples).model_copy(update={"shard_size": samples})
    solver = spec_solver(spec, spec.parameter_grid()[0], DEVICE)
    u0 = np.stack([initial_state(spec, solver.grid, seed) for seed in range(samples)])
    plans = np.array([step_plan(spec, solver, u) for u in u0])
    generator = jax_burgers_generator(solver.grid.dx[0], solver.nu, spec.n_saves)
    every, dts = plans[:, 1].astype(np.int64), plans[:, 2]
    with Stopwatch(DEVICE) as compile_watch:
        generator(u0[:1], dts[:1], every[:1]).block_until_ready()
    rates: dict[str, list[float]] = {"physml": [], "jax": []}
    cores: dict[str, list[float]] = {"physml": [], "jax": []}  # process CPU time / wall time
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(PEER_REPEATS):
            folder = Path(tmp) / f"physml-{repeat}"
            cpu = time.process_time()
            with Stopwatch(DEVICE) as watch:
                generate(spec, folder, workers=0)
            rates["physml"].append(samples / watch.seconds)
            cores["physml"].append((time.process_time() - cpu) / watch.seconds)
            cpu = time.process_time()
            with Stopwatch(DEVICE) as watch:
                peer = np.asarray(generator(u0, dts, every).block_until_ready())
            rates["jax"].append(samples / watch.seconds)
            cores["jax"].append((time.process_time() - cpu) / watch.seconds)
        with h5py.File(shard_files(Path(tmp) / "physml-0" / "train")[0]) as f:
            ours = f["u"][...].astype(np.float64)
    final_ours, final_peer = ours[:, -1], peer[:, -1]
    median = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "peer": "JAX jit+vmap twin of the scheme (pdebench 0.1.0 not installable here)",
        "problem": "burgers1d_pdebench nu=0.001 (nu/pi in the solver), 1024 cells, t in [0, 2], "
                   "201 saved states, pdebench_sines, float64 solve",
        "samples": samples,
        "samples_per_s": {k: summary(v, kept_as="runs") for k, v in rates.items()},
        "ratio_physml_over_jax": median["physml"] / median["jax"],
        "cores_used": {k: statistics.median(v) for k, v in cores.items()},
        "load_average": load_average(),
        "jax_compile_s": compile_watch.seconds,
        "final_state": {
            "max_abs_difference": float(np.max(np.abs(final_ours - final_peer))),
            "physml_mean": float(final_ours.mean()), "jax_mean": float(final_peer.mean()),
            "physml_std": float(final_ours.std()), "jax_std": float(final_peer.std()),
            "note": f"physml's shards store {spec.storage_dtype}",
        },
    }
    print(f"physml {median['physml']:.3f} samples/s, JAX twin {median['jax']:.3f} samples/s, "
          f"ratio {result['ratio_physml_over_jax']:.2f}, cores used {result['cores_used']}; "
          f"final states: max |diff| "
          f"{result['final_state']['max_abs_difference']:.2e}", flush=True)
    return result


def burgers_spec(samples: int) -> DatasetSpec:
    return DatasetSpec.model_validate({
        "pde": "burgers1d_pdebench", "grid": [1024], "parameters": {"nu": 0.001},
        "t_end": 2.0, "n_saves": 201, "initial_condition": {"kind": "pdebench_sines"},
        "samples": samples, "splits": {"train": 1.0, "valid": 0.0, "test": 0.0},
        "shard_size": 1, "seed": 2022,
    })


GENERATION_ROUNDS = 3
"""Generations per worker count (medians reported)."""
PAIR_SHARD_SIZE = 16
"""Samples per shard of the pair reading (a spec's default)."""
PAIR_CHUNK_CACHE = 64 * 2**20
"""h5py's chunk cache (bytes) for the shuffled pairs: what a user reading pairs in random order
sets (``h5py.File(..., rdcc_nbytes=...)``), so that every decompressed chunk of a shard stays
(16 trajectories of 201 x 1024 float32, 13 MB), where HDF5's default 1 MiB holds about one."""
LOADER_BATCH = 64
"""Pairs per batch of the ``DataLoader`` reads."""
LOADER_TRAJECTORY_BATCH = 4
"""Whole trajectories per batch of the ``DataLoader`` reads (4 batches of the 16 samples)."""


def time_generation(spec: DatasetSpec, folder: Path, workers: int) -> float:
    with Stopwatch(DEVICE) as watch:
        generate(spec, folder, workers=workers)
    return spec.samples / watch.seconds


Reader = Callable[[], int]
"""One timed read of a side: every item once; returns the bytes or items it handed out."""


def read_h5py(files: list[Path]) -> int:
    total = 0
    for file in files:
        with h5py.File(file, "r") as f:
            for i in range(f["u"].shape[0]):
                item = torch.from_numpy(f["u"][i])
                total += item.numel() * item.element_size()
    return total


def field_dataset_reader(folder: Path) -> Reader:
    """A new ``FieldDataset`` of the split (its shards checked, none kept open) and its read."""
    data = FieldDataset(folder, split="train")

    def read() -> int:
        total = 0
        for i in range(len(data)):
            item = data[i]
            total += item.numel() * item.element_size()
        return total

    return read


def pair_order(files: list[Path]) -> list[tuple[int, int, int]]:
    """Every pair (file, sample, t) of ``files``, shuffled (seed 0)."""
    pairs = []
    for k, file in enumerate(files):
        with h5py.File(file, "r") as f:
            samples, times = f["u"].shape[:2]
        pairs += [(k, i, t) for i in range(samples) for t in range(times - 1)]
    return [pairs[j] for j in np.random.default_rng(0).permutation(len(pairs))]


def read_pairs_h5py(files: list[Path], order: list[tuple[int, int, int]]) -> int:
    """The pairs through open datasets, with a chunk cache of ``PAIR_CHUNK_CACHE`` bytes."""
    handles = [h5py.File(file, "r", rdcc_nbytes=PAIR_CHUNK_CACHE, rdcc_nslots=10007)
               for file in files]
    datasets = [f["u"] for f in handles]
    for k, i, t in order:
        torch.from_numpy(datasets[k][i, t : t + 2])
    for f in handles:
        f.close()
    return len(order)


def whole_arrays(files: list[Path]) -> list[np.ndarray]:
    """Each shard's whole array, read once (``f["u"][...]``)."""
    arrays = []
    for file in files:
        with h5py.File(file, "r") as f:
            arrays.append(f["u"][...])
    return arrays


def read_pairs_h5py_whole(files: list[Path], order: list[tuple[int, int, int]]) -> int:
    """The pairs indexed from each shard's whole array, read once."""
    arrays = whole_arrays(files)
    for k, i, t in order:
        torch.from_numpy(arrays[k][i, t : t + 2])  # a view of the kept array, no copy
    return len(order)


def field_dataset_pair_reader(folder: Path, order: list[tuple[int, int, int]]) -> Reader:
    """A new ``FieldDataset(pairs=1)`` of the split and its read of the pairs of ``order``, by
    the item numbers a sampler hands out (as the h5py readers get their keys)."""
    data = FieldDataset(folder, split="train", pairs=1)
    span, offsets = data.n_times - 1, data.offsets.tolist()
    items = [(offsets[k] + i) * span + t for k, i, t in order]

    def read() -> int:
        for index in items:
            data[index]
        return len(items)

    return read


class WholeArrayTrajectories(Dataset):
    """h5py's whole arrays as a map-style dataset of trajectories: each shard's read once when
    made, sample ``j`` numbered as ``FieldDataset`` numbers it, handed out as a view of the
    kept array (time, x), item by item."""

    def __init__(self, files: list[Path]) -> None:
        self.arrays = whole_arrays(files)
        self.samples = [(k, i) for k, array in enumerate(self.arrays) for i in range(len(array))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> torch.Tensor:
        k, i = self.samples[index]
        return torch.from_numpy(self.arrays[k][i])


class WholeArrayPairs(WholeArrayTrajectories):
    """h5py's whole arrays as a map-style dataset of pairs: each shard's read once when made,
    pair ``j`` numbered as ``FieldDataset(pairs=1)`` numbers it, ``(u_t, u_{t+1})`` handed out
    as views of the kept array, item by item."""

    def __init__(self, files: list[Path]) -> None:
        super().__init__(files)
        self.span = self.arrays[0].shape[1] - 1  # pairs per sample

    def __len__(self) -> int:
        return len(self.samples) * self.span

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample, t = divmod(index, self.span)
        k, i = self.samples[sample]
        pair = torch.from_numpy(self.arrays[k][i, t : t + 2])
        return pair[0], pair[1]


class BatchedWholeArrayPairs(WholeArrayPairs):
    """:class:`WholeArrayPairs` with ``__getitems__``: a batch gathered with one NumPy index of
    the split's samples stacked in one array (made once with the dataset), its items views of
    the batch."""

    def __init__(self, files: list[Path]) -> None:
        super().__init__(files)
        self.split = np.concatenate(self.arrays)  # (sample, time, x)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sample, t = np.divmod(np.asarray(indices), self.span)
        batch = torch.from_numpy(self.split[sample[:, None], t[:, None] + np.arange(2)])
        return list(zip(batch[:, 0].unbind(), batch[:, 1].unbind()))


class FieldDatasetItemByItem(FieldDataset):
    """``FieldDataset`` as ``DataLoader`` reads a dataset without ``__getitems__``: item by
    item (the loader calls ``__getitems__`` only where it is set)."""

    __getitems__ = None


def loaded_items(dataset: Dataset, batch_size: int = LOADER_BATCH) -> int:
    """Every item of ``dataset`` through ``DataLoader(batch_size, shuffle=True)`` in this
    process, its order seeded (0: every side's loader draws the same batches); the items
    handed out (a batch of pairs is ``[u_t, u_next]``, one of trajectories a tensor)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    return sum(len(batch[0] if isinstance(batch, list) else batch) for batch in loader)


def loader_datasets(folder: Path, files: list[Path]) -> dict[str, Callable[[], Dataset]]:
    """Each side of the loader reads: how its dataset of the split's pairs is made."""
    return {
        "field_dataset": lambda: FieldDataset(folder, split="train", pairs=1),
        "field_dataset_item_by_item": lambda: FieldDatasetItemByItem(folder, split="train",
                                                                     pairs=1),
        "h5py_whole_array": lambda: WholeArrayPairs(files),
        "h5py_whole_array_batched": lambda: BatchedWholeArrayPairs(files)}


def loader_set_up(make: Callable[[], Dataset], epochs: int = 0,
                  batch_size: int = LOADER_BATCH) -> Reader:
    """``make()``'s dataset, read through the loader (``batch_size`` items a batch) ``epochs``
    times, and its read: the set-up of a side whose dataset is made (and its earlier epochs
    read) untimed."""
    data = make()
    for _ in range(epochs):
        loaded_items(data, batch_size)
    return lambda: loaded_items(data, batch_size)


def trajectory_loader_rates(folder: Path, files: list[Path], repeats: int) -> Rates:
    """:class:`Rates` of the whole trajectories of the split through the loader in a first
    epoch: ``FieldDataset`` a batch at a time and item by item (each made as its set-up),
    h5py's arrays read in the timed pass."""
    return alternate_rates({
        "field_dataset": lambda: loader_set_up(lambda: FieldDataset(folder, split="train"),
                                               batch_size=LOADER_TRAJECTORY_BATCH),
        "field_dataset_item_by_item": lambda: loader_set_up(
            lambda: FieldDatasetItemByItem(folder, split="train"),
            batch_size=LOADER_TRAJECTORY_BATCH),
        "h5py_whole_array": lambda: lambda: loaded_items(WholeArrayTrajectories(files),
                                                         LOADER_TRAJECTORY_BATCH)}, repeats)


def loader_rates(folder: Path, files: list[Path], repeats: int) -> tuple[Rates, Rates]:
    """:class:`Rates` of every side's loader in a first epoch (``FieldDataset`` made as its
    set-up, h5py's arrays read in the timed pass, as the pair reads) and in a later one (each
    dataset made and read once through the loader in the set-up: h5py's arrays read,
    ``FieldDataset``'s trajectories kept)."""
    made = loader_datasets(folder, files)
    first = alternate_rates({
        "field_dataset": lambda: loader_set_up(made["field_dataset"]),
        "field_dataset_item_by_item": lambda: loader_set_up(made["field_dataset_item_by_item"]),
        "h5py_whole_array": lambda: lambda: loaded_items(made["h5py_whole_array"]()),
        "h5py_whole_array_batched": lambda: lambda: loaded_items(
            made["h5py_whole_array_batched"]())}, repeats)
    later = alternate_rates({side: lambda make=make: loader_set_up(make, epochs=1)
                             for side, make in made.items()}, repeats)
    return first, later


class Rates(NamedTuple):
    """Per side, a list over the repeats: the rate of the read (bytes or items per second),
    the rate with the set-up's time added, and the set-up's seconds."""

    read: dict[str, list[float]]
    with_setup: dict[str, list[float]]
    setup_s: dict[str, list[float]]


def alternate_rates(readers: dict[str, Callable[[], Reader]], repeats: int) -> Rates:
    """Each side's :class:`Rates`, ``repeats`` times: ``readers[side]()`` sets a read up, timed
    apart (a ``FieldDataset`` made, its shards checked: once per training run, not per epoch;
    nothing for h5py, which opens its files in its read), then the read is timed. The sides
    alternate, in reversed order every other repeat, after one untimed set-up and read of
    each."""
    for make in readers.values():
        make()()
    rates = Rates(*({side: [] for side in readers} for _ in Rates._fields))
    for repeat in range(repeats):
        for side in list(readers) if repeat % 2 == 0 else list(readers)[::-1]:
            with Stopwatch(DEVICE) as setup:
                read = readers[side]()
            with Stopwatch(DEVICE) as watch:
                count = read()
            rates.read[side].append(count / watch.seconds)
            rates.with_setup[side].append(count / (watch.seconds + setup.seconds))
            rates.setup_s[side].append(setup.seconds)
    return rates


def measure_reading(spec: DatasetSpec, one: Path, scratch: Path, repeats: int) -> dict:
    """The ``reading`` (whole trajectories of the one-sample shards in ``one``) and
    ``reading_pairs`` (shuffled pairs of the same samples generated into ``scratch`` in shards
    of ``PAIR_SHARD_SIZE``) entries of the report: rates of the reads, ``FieldDataset``'s
    set-up seconds, its rates with them (``with_setup``) and the ratios of both."""
    files = shard_files(one / "train")
    whole = alternate_rates({"field_dataset": lambda: field_dataset_reader(one),
                             "h5py": lambda: lambda: read_h5py(files)}, repeats)
    generate(spec.model_copy(update={"shard_size": PAIR_SHARD_SIZE}), scratch, workers=0)
    pair_files = shard_files(scratch / "train")
    order = pair_order(pair_files)
    pairs = alternate_rates({
        "field_dataset": lambda: field_dataset_pair_reader(scratch, order),
        "h5py_chunk_cache": lambda: lambda: read_pairs_h5py(pair_files, order),
        "h5py_whole_array": lambda: lambda: read_pairs_h5py_whole(pair_files, order)}, repeats)
    loaders = loader_rates(scratch, pair_files, repeats)
    trajectories = trajectory_loader_rates(scratch, pair_files, repeats)
    mb_s = {side: [rate / 2**20 for rate in rates] for side, rates in whole.read.items()}
    mb_s["field_dataset_with_setup"] = [rate / 2**20
                                        for rate in whole.with_setup["field_dataset"]]
    pair_rates = {**pairs.read, "field_dataset_with_setup": pairs.with_setup["field_dataset"]}
    whole_median, pairs_median = ({side: statistics.median(rates) for side, rates in r.items()}
                                  for r in (mb_s, pair_rates))
    return {
        "reading": {"field_dataset_mb_s": summary(mb_s["field_dataset"], kept_as="runs"),
                    "field_dataset_setup_s": summary(whole.setup_s["field_dataset"]),
                    "field_dataset_with_setup_mb_s": summary(mb_s["field_dataset_with_setup"],
                                                             kept_as="runs"),
                    "h5py_mb_s": summary(mb_s["h5py"], kept_as="runs"),
                    "ratio": whole_median["field_dataset"] / whole_median["h5py"],
                    "ratio_with_setup": (whole_median["field_dataset_with_setup"]
                                         / whole_median["h5py"]),
                    "loader": trajectory_loader_entry(trajectories, spec.samples)},
        "reading_pairs": {
            "pairs": len(order), "order": "shuffled, seed 0",
            "samples_per_shard": min(spec.samples, PAIR_SHARD_SIZE),
            "h5py_chunk_cache_bytes": PAIR_CHUNK_CACHE,
            "field_dataset_setup_s": summary(pairs.setup_s["field_dataset"]),
            **{f"{side}_pairs_s": summary(rates, kept_as="runs")
               for side, rates in pair_rates.items()},
            **{f"ratio{kind}_over_{side}": pairs_median[f"field_dataset{kind}"]
               / pairs_median[side]
               for side in ("h5py_chunk_cache", "h5py_whole_array")
               for kind in ("", "_with_setup")},
            "loader": loader_entry(*loaders)},
    }


def trajectory_loader_entry(rates: Rates, samples: int) -> dict:
    """The ``reading.loader`` entry: trajectories/s of each side through the ``DataLoader``
    in a first epoch, from shards of ``PAIR_SHARD_SIZE`` samples, with ``FieldDataset``'s
    set-up seconds; the ratios of ``FieldDataset`` (a batch at a time) over each other side."""
    median = {side: statistics.median(values) for side, values in rates.read.items()}
    return {
        "batch_size": LOADER_TRAJECTORY_BATCH, "shuffle": True, "workers": 0,
        "samples_per_shard": min(samples, PAIR_SHARD_SIZE),
        "field_dataset_setup_s": summary(rates.setup_s["field_dataset"]),
        **{f"{side}_trajectories_s": summary(values, kept_as="runs")
           for side, values in rates.read.items()},
        **{f"ratio_over_{side}": median["field_dataset"] / median[side]
           for side in ("field_dataset_item_by_item", "h5py_whole_array")}}


def loader_entry(first: Rates, later: Rates) -> dict:
    """The ``reading_pairs.loader`` entry: pairs/s of each side through the ``DataLoader`` in a
    first epoch, with ``FieldDataset``'s set-up seconds and its rate with them, and in a later
    epoch (``later_epoch``); the ratios of ``FieldDataset`` (a batch at a time, in the first
    epoch with and without its set-up) over each other side."""
    others = ("field_dataset_item_by_item", "h5py_whole_array", "h5py_whole_array_batched")
    rates = {**first.read, "field_dataset_with_setup": first.with_setup["field_dataset"]}
    median, later_median = ({side: statistics.median(values) for side, values in r.items()}
                            for r in (rates, later.read))
    return {
        "batch_size": LOADER_BATCH, "shuffle": True, "workers": 0,
        "field_dataset_setup_s": summary(first.setup_s["field_dataset"]),
        **{f"{side}_pairs_s": summary(values, kept_as="runs") for side, values in rates.items()},
        **{f"ratio{kind}_over_{side}": median[f"field_dataset{kind}"] / median[side]
           for side in others for kind in ("", "_with_setup")},
        "later_epoch": {
            **{f"{side}_pairs_s": summary(values, kept_as="runs")
               for side, values in later.read.items()},
            **{f"ratio_over_{side}": later_median["field_dataset"] / later_median[side]
               for side in others}}}


def print_reading(result: dict) -> None:
    whole, pairs = result["reading"], result["reading_pairs"]
    print(f"reading: FieldDataset {whole['field_dataset_mb_s']['median']:.0f} MB/s "
          f"({whole['field_dataset_with_setup_mb_s']['median']:.0f} with its set-up), h5py "
          f"{whole['h5py_mb_s']['median']:.0f} MB/s, ratio {whole['ratio']:.2f} "
          f"({whole['ratio_with_setup']:.2f})")
    loader = whole["loader"]
    print(f"reading trajectories through DataLoader(batch_size={loader['batch_size']}, "
          f"shuffle=True): FieldDataset {loader['field_dataset_trajectories_s']['median']:.1f} "
          f"trajectories/s (item by item "
          f"{loader['field_dataset_item_by_item_trajectories_s']['median']:.1f}, ratio "
          f"{loader['ratio_over_field_dataset_item_by_item']:.2f}), h5py whole arrays item by "
          f"item {loader['h5py_whole_array_trajectories_s']['median']:.1f} (ratio "
          f"{loader['ratio_over_h5py_whole_array']:.2f})")
    print(f"reading pairs (shuffled): FieldDataset "
          f"{pairs['field_dataset_pairs_s']['median']:.0f} pairs/s "
          f"({pairs['field_dataset_with_setup_pairs_s']['median']:.0f} with its set-up), h5py "
          f"with its chunk cache {pairs['h5py_chunk_cache_pairs_s']['median']:.0f} "
          f"(ratio {pairs['ratio_over_h5py_chunk_cache']:.2f}, "
          f"{pairs['ratio_with_setup_over_h5py_chunk_cache']:.2f}), h5py whole arrays "
          f"{pairs['h5py_whole_array_pairs_s']['median']:.0f} "
          f"(ratio {pairs['ratio_over_h5py_whole_array']:.2f}, "
          f"{pairs['ratio_with_setup_over_h5py_whole_array']:.2f})")
    loader = pairs["loader"]
    print(f"reading pairs through DataLoader(batch_size={loader['batch_size']}, shuffle=True): "
          f"FieldDataset {loader['field_dataset_pairs_s']['median']:.0f} pairs/s "
          f"({loader['field_dataset_with_setup_pairs_s']['median']:.0f} with its set-up; "
          f"item by item {loader['field_dataset_item_by_item_pairs_s']['median']:.0f}, ratio "
          f"{loader['ratio_over_field_dataset_item_by_item']:.2f}), h5py whole arrays item by "
          f"item {loader['h5py_whole_array_pairs_s']['median']:.0f} (ratio "
          f"{loader['ratio_over_h5py_whole_array']:.2f}, "
          f"{loader['ratio_with_setup_over_h5py_whole_array']:.2f}), batched "
          f"{loader['h5py_whole_array_batched_pairs_s']['median']:.0f} (ratio "
          f"{loader['ratio_over_h5py_whole_array_batched']:.2f}, "
          f"{loader['ratio_with_setup_over_h5py_whole_array_batched']:.2f})")
    later = loader["later_epoch"]
    print(f"  a later epoch: FieldDataset {later['field_dataset_pairs_s']['median']:.0f} pairs/s "
          f"(item by item {later['field_dataset_item_by_item_pairs_s']['median']:.0f}, ratio "
          f"{later['ratio_over_field_dataset_item_by_item']:.2f}), h5py whole arrays item by "
          f"item {later['h5py_whole_array_pairs_s']['median']:.0f} (ratio "
          f"{later['ratio_over_h5py_whole_array']:.2f}), batched "
          f"{later['h5py_whole_array_batched_pairs_s']['median']:.0f} (ratio "
          f"{later['ratio_over_h5py_whole_array_batched']:.2f})")


def reading_only(args: argparse.Namespace) -> None:
    """Measure the reading alone and replace its entries in ``args.out``."""
    spec = burgers_spec(args.samples)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        generate(spec, Path(tmp) / "one", workers=0)
        reading = measure_reading(spec, Path(tmp) / "one", Path(tmp) / "shards-of-16",
                                  args.repeats)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.update(reading)
    report["reading_provenance"] = {**provenance(), "load_average_before": load_before}
    print_reading(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


def main() -> None:
    wp.config.log_level = wp.LOG_ERROR
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=at_least(1), default=16)
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--peer-samples", type=at_least(1), default=32)
    parser.add_argument("--peer-only", action="store_true", help="only physml against JAX")
    parser.add_argument("--reading-only", action="store_true",
                        help="only the reading, replacing its entries in --out")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/datasets.json"))
    args = parser.parse_args()
    if args.peer_only and args.reading_only:
        parser.error("--peer-only and --reading-only exclude each other")
    if args.reading_only:
        reading_only(args)
        return
    load_before = load_average()
    if importlib.util.find_spec("jax") is not None:
        peer = compare_with_jax(args.peer_samples)
    elif args.peer_only:
        raise SystemExit("--peer-only compares with a JAX twin: pip install jax first")
    else:
        peer = None
        print("JAX is not installed: the PDEBench-style JAX comparison is left out")
    if args.peer_only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "physml": physml.__version__, "provenance": provenance(),
            "load_average_before": load_before, "load_average_after": load_average(),
            "pdebench_peer": peer}, indent=2))
        print(f"wrote {args.out}")
        return
    spec = burgers_spec(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(GENERATION_ROUNDS):  # alternating, the order reversed each round
            for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
                folder = Path(tmp) / f"workers{workers}-{round_}"
                runs[workers].append(time_generation(spec, folder, workers=workers))
        rate_1, rate_2 = (statistics.median(runs[w]) for w in (1, 2))
        one, two = Path(tmp) / "workers1-0", Path(tmp) / "workers2-0"
        files = [shard_files(folder / "train") for folder in (one, two)]
        for a, b in zip(*files):
            with h5py.File(a) as fa, h5py.File(b) as fb:
                assert np.array_equal(fa["u"][...], fb["u"][...]), f"{a.name} differs"
        reading = measure_reading(spec, one, Path(tmp) / "shards-of-16", args.repeats)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "physml": physml.__version__, "provenance": provenance(),
        "generation": {"problem": "burgers1d_pdebench nu=0.001, 1024 cells, 201 states",
                       "samples": args.samples, "samples_per_s_1_worker": rate_1,
                       "samples_per_s_2_workers": rate_2, "speedup": rate_2 / rate_1,
                       "runs_samples_per_s": {f"{w} worker(s)": r for w, r in runs.items()}},
        "load_average_before": load_before, "load_average_after": load_average(),
        "pdebench_peer": peer,
        **reading,
    }
    print(f"generation: 1 worker {rate_1:.3f} samples/s, 2 workers {rate_2:.3f} samples/s, "
          f"speed-up {rate_2 / rate_1:.2f}x")
    print_reading(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
