"""PyTorch datasets over field files written by :mod:`physml.datasets`.

:class:`FieldDataset` reads samples lazily from HDF5 with h5py (one chunk per sample, so one
item is one chunk read) and opens its files on first use in each process (a ``DataLoader``
worker, forked or spawned, opens its own and never touches an inherited one), at most
:data:`MAX_OPEN_SHARDS` at a time. It can serve
autoregressive pairs $(u_t, u_{t+k})$: a pair's two states come from its sample's trajectory,
decompressed once and kept while :data:`SAMPLE_CACHE_BYTES` allow. A ``DataLoader`` fetches a
batch at once (:meth:`FieldDataset.__getitems__`) with the plain reads of its items, a batch of
pairs into one new tensor whose views the items are.
"""

from __future__ import annotations

import bisect
import math
import operator
import os
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets.store import (
    dataset_shards,
    open_hdf5,
    pdebench_layout,
    per_sample_coordinates,
    unreadable_data,
)
from .dtypes import torch_dtype
from .solvers.dtypes import float_name
from .solvers.kept import LeastRecentlyUsed

__all__ = ["MAX_OPEN_SHARDS", "SAMPLE_CACHE_BYTES", "FieldDataset"]

MAX_OPEN_SHARDS = 64
"""Shard files a :class:`FieldDataset` keeps open per process, the least recently used closed
first: an open HDF5 file holds a file descriptor and about 0.6 MB of metadata, so a split of
thousands of shards would exhaust both."""

SAMPLE_CACHE_BYTES = 256 * 2**20
"""Decompressed trajectories a :class:`FieldDataset` serving pairs keeps, per process (each
``DataLoader`` worker has its own), the least recently used dropped first. A sample's
trajectory is one compressed chunk, which HDF5 decompresses whole to give any two of its
states: a split that fits is decompressed once, and pairs in order (or a sampler that visits
a sample's pairs together) hit whatever the split's size."""


class FieldDataset(Dataset):
    r"""Trajectories of a field dataset as tensors.

    Args:
        path: a dataset folder (``physml datasets generate --out``) or one HDF5 file.
        split: the split of a folder ("train", "valid", "test").
        variable: the field to read.
        pairs: None for whole trajectories; ``k`` for pairs $(u_t, u_{t+k})$.
        dtype: dtype of the returned tensors, float32 or float64, named as the solvers take
            it (``"float32"``, ``np.float32``, ``torch.float32``, ``wp.float32``).
        allow_partial: read a dataset whose generation has not finished (no manifest).
        cache_bytes: bytes of decompressed trajectories kept per process for ``pairs``
            (default :data:`SAMPLE_CACHE_BYTES`); a split whose chunks are whole trajectories
            (physml's layout) and larger than this is read with a warning:
            shuffled pairs then decompress a whole trajectory for nearly every item (80x
            slower on a 340 MB split than with the split kept).

    Items: without ``pairs``, a tensor of shape ``(time, *space)`` per sample; with ``pairs=k``,
    ``(u[t], u[t + k])`` each of shape ``space``, for every sample and ``t < T - k``
    (``len = samples * (T - k)``). Samples come in the order of
    ``physml.io.open_dataset(path, split)`` (its shards in order): item ``i`` is its sample
    ``i``, pair ``j`` its sample ``j // (T - k)`` at ``t = j % (T - k)``. Items are bare
    tensors; :meth:`sample_of` gives an item's sample (position and number) and per-sample
    parameters. ``DataLoader`` reads a batch through :meth:`__getitems__`, in no more HDF5 reads
    than item by item, with the same items.

    Raises:
        ValueError: see :func:`~physml.datasets.store.dataset_shards`; or a file lacks the
            variable (for a file in a PDEBench layout the message says how to read it), or
            its dims are not ``(sample, time, *space)`` (a ``physml solve``
            trajectory ``(time, x)``, a mesh dataset ``(sample, node)``), or shards disagree
            on the number of saved times. Plain HDF5 shards of different spatial shapes
            are read (a batch of pairs spanning them item by item, see
            :meth:`__getitems__`).

    Examples:
        Three samples of the heat equation's sine mode $e^{-\nu t}\sin x$, one per $\nu$,
        six saved times each, written with :func:`physml.io.samples_dataset` and
        :func:`physml.io.write_dataset`; as pairs one step apart, each pair's second state is
        its first times $e^{-\nu \Delta t}$:

        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from physml import io
        >>> from physml.data import FieldDataset
        >>> from physml.solvers import Grid
        >>> grid = Grid((32,), (0.0,), (2 * np.pi,))
        >>> times, nu = np.linspace(0.0, 1.0, 6), np.array([0.1, 0.2, 0.4])
        >>> states = np.exp(-nu[:, None, None] * times[None, :, None]) * np.sin(grid.coords(0))
        >>> ds = io.samples_dataset(states, times, grid, seeds=np.arange(3),
        ...                         sample_coords={"nu": nu})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = io.write_dataset(ds, pathlib.Path(folder) / "heat.h5")
        ...     trajectories = FieldDataset(path, dtype="float64")
        ...     print(len(trajectories), tuple(trajectories[0].shape))
        ...     pairs = FieldDataset(path, pairs=1, dtype="float64")
        ...     u_t, u_next = pairs[7]
        ...     print(len(pairs), tuple(u_t.shape), pairs.sample_of(7))
        ...     print(round(float(u_next[8] / u_t[8]), 6), round(float(np.exp(-0.2 * 0.2)), 6))
        3 (6, 32)
        15 (32,) {'sample_index': 1, 'sample': 1, 't': 2, 'nu': 0.2}
        0.960789 0.960789
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        variable: str = "u",
        pairs: int | None = None,
        dtype: torch.dtype = torch.float32,
        allow_partial: bool = False,
        cache_bytes: int | None = None,
    ) -> None:
        dtype = torch_dtype(dtype)
        if pairs is not None:
            try:
                pairs = operator.index(pairs)  # ints, NumPy integers, 0-d integer arrays
            except TypeError:
                raise ValueError(f"pairs={pairs!r}; pass a whole number of steps (or None)"
                                 ) from None
        cache_bytes = SAMPLE_CACHE_BYTES if cache_bytes is None else cache_bytes
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int | np.integer) \
                or cache_bytes < 0:
            raise ValueError(f"cache_bytes={cache_bytes!r}; pass a whole number of bytes >= 0")
        self.files = dataset_shards(path, split, allow_partial)
        self.variable, self.dtype, self.cache_bytes = variable, dtype, int(cache_bytes)
        self._numpy_dtype = np.dtype(float_name(dtype))
        self._open_caches()
        self._layouts = [_shard_layout(file, variable) for file in self.files]
        times = {layout.times for layout in self._layouts}
        if len(times) != 1:
            raise ValueError(f"shards disagree on the number of saved times: {sorted(times)}")
        (self.n_times,) = times
        if pairs is not None and not 1 <= pairs < self.n_times:
            raise ValueError(f"pairs={pairs} must lie in [1, {self.n_times - 1}]")
        self.pairs = pairs
        self.offsets = np.concatenate([[0], np.cumsum([layout.samples
                                                       for layout in self._layouts])])
        self._starts = self.offsets[:-1].tolist()  # each shard's first sample
        self._span = 1 if pairs is None else self.n_times - pairs  # items per sample
        self._length = self.n_samples * self._span
        decompressed = sum(layout.nbytes for layout in self._layouts if layout.whole_chunks)
        if pairs is not None and decompressed > self.cache_bytes:
            warnings.warn(
                f"FieldDataset: the trajectories read take {decompressed / 2**20:,.0f} MiB "
                f"decompressed, more than cache_bytes={self.cache_bytes:,} per process: "
                "shuffled pairs decompress a whole trajectory for nearly every item (several to "
                "80 times slower); pass a larger cache_bytes, or a sampler that visits a sample's "
                "pairs together", stacklevel=2)

    def __repr__(self) -> str:
        return (f"FieldDataset(variable={self.variable!r}, samples={self.n_samples}, "
                f"times={self.n_times}, pairs={self.pairs}, shards={len(self.files)}, "
                f"dtype={self.dtype})")

    @property
    def n_samples(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self._length

    def _open_caches(self) -> None:
        """This process's open shards (file, dataset) and kept trajectories, both empty."""
        self._shards = LeastRecentlyUsed(MAX_OPEN_SHARDS, drop=lambda opened: opened[0].close())
        self._trajectories = LeastRecentlyUsed(self.cache_bytes, size=lambda a: a.nbytes)
        self._pid = os.getpid()

    def _in_this_process(self) -> None:
        """Make the caches again in a new process: never reuse a parent's handles."""
        if self._pid != os.getpid():
            self._open_caches()

    def _dataset(self, shard: int) -> h5py.Dataset:
        """The variable's dataset in ``shard``, kept open in this process (a new
        ``h5py.Dataset`` object per item would also drop what HDF5 keeps for it). Where a
        chunk holds a whole trajectory, HDF5's chunk cache is off: an item reads whole
        chunks (a pair's trajectory is then kept here), which the cache only copied once
        more, holding up to its size per open shard (1 MiB by default, 8 MiB from HDF5 2.0)
        and making a sample's read about 10% slower."""
        def opened() -> tuple[h5py.File, h5py.Dataset]:
            f = open_hdf5(self.files[shard])
            access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
            if self._layouts[shard].whole_chunks:
                access.set_chunk_cache(0, 0, 1.0)  # slots, bytes, eviction weight
            return f, h5py.Dataset(h5py.h5d.open(f.id, self.variable.encode(), access),
                                   readonly=True)

        return self._shards.get(shard, opened)[1]

    def _trajectory(self, shard: int, local: int) -> np.ndarray:
        """Sample ``local`` of ``shard``, shape (time, *space), in the file's dtype: kept (read
        on first use, within :data:`SAMPLE_CACHE_BYTES`), for a shard whose chunks hold whole
        trajectories."""
        return self._trajectories.get((shard, local), lambda: self._dataset(shard)[local])

    def _pair_states(self, shard: int, local: int, t: int) -> np.ndarray:
        """States t and t + k of sample ``local`` of ``shard``, shape (2, *space), in the
        file's dtype: a view of the sample's kept trajectory where a chunk holds whole
        trajectories, else read alone (two states cost two states)."""
        k = self.pairs
        if self._layouts[shard].whole_chunks:
            return self._trajectory(shard, local)[t : t + k + 1 : k]
        return self._dataset(shard)[local, t : t + k + 1 : k]

    def _pair(self, shard: int, local: int, t: int) -> np.ndarray:
        """States t and t + k of sample ``local`` of ``shard``, shape (2, *space), a new array
        of the items' dtype (:meth:`_pair_states`, copied unless read alone)."""
        states = self._pair_states(shard, local, t)
        return states.astype(self._numpy_dtype, copy=not states.flags.owndata)

    def _read_shard_pairs(self, out: np.ndarray, shard: int, local: np.ndarray,
                          t: np.ndarray) -> None:
        """Into ``out`` (m, 2, *space): the pairs of samples ``local`` of ``shard`` at steps
        ``t``, both of shape (m,), each copied from its sample's kept trajectory or read alone
        (:meth:`_pair_states`)."""
        for row, sample, step in zip(out, local.tolist(), t.tolist()):
            row[...] = self._pair_states(shard, sample, step)

    def _unreadable(self, shard: int, err: OSError) -> OSError | ValueError:
        """The error to raise for ``err``, raised reading ``shard``: a system's error (a file
        gone, ...) as it is, HDF5's failing to read the data as
        :func:`~physml.datasets.store.unreadable_data` names it."""
        return err if err.errno is not None else unreadable_data(self.files[shard], err)

    def _position(self, index: int) -> int:
        """Item ``index``'s place in ``range(len(self))``.

        Raises:
            TypeError: ``index`` is not an int (a float, a bool, a list).
            IndexError: ``index`` out of range (negative: counted from the end).
        """
        if isinstance(index, bool | np.bool_ | float | np.floating):
            raise TypeError(f"index {index!r} must be an int, not {type(index).__name__}")
        if not -self._length <= index < self._length:  # TypeError for text or a sequence
            raise IndexError(f"index {index} out of range for {self._length} items")
        return operator.index(index) % self._length

    def _located(self, index: int) -> tuple[int, int, int]:
        """Item ``index``'s shard, its sample's place in the shard, and its step ``t``
        (0 without pairs).

        Raises:
            IndexError: ``index`` out of range (negative: counted from the end).
        """
        sample, t = divmod(self._position(index), self._span)
        shard = bisect.bisect_right(self._starts, sample) - 1
        return shard, sample - self._starts[shard], t

    def __getitem__(self, index: int):
        """Item ``index`` (negative: counted from the end, as a sequence's).

        Raises:
            TypeError: ``index`` is not an int (a float, a bool, a list).
            ValueError: HDF5 cannot read the item's data (a damaged shard: the message names
                it and how to write it again, :func:`~physml.datasets.store.unreadable_data`).
        """
        shard, local, t = self._located(index)
        self._in_this_process()
        try:
            if self.pairs is None:  # no copy if the file holds the items' dtype, native order
                sample = self._dataset(shard)[local]
                return torch.from_numpy(sample.astype(self._numpy_dtype, copy=False))
            pair = self._pair(shard, local, t)
        except OSError as err:
            raise self._unreadable(shard, err) from None
        return torch.from_numpy(pair[0]), torch.from_numpy(pair[1])

    def __getitems__(self, indices: Sequence[int]) -> list:
        """Items ``indices`` at once, as ``[self[i] for i in indices]`` gives them, bit for
        bit: what ``DataLoader`` calls to fetch a batch, passing the list to its
        ``collate_fn``. The items are read with the plain reads of items (h5py's selection of
        a list of samples or steps is several times slower). A whole trajectory is read as an
        item is, a new tensor (one asked for again, a copy of its first read). Pairs are
        copied from their samples' kept trajectories (or each read alone, where a chunk does
        not hold a whole trajectory) into one new tensor of shape ``(n, 2, *space)``, each
        item the tuple of its two states, views of it: a pair kept beyond its batch keeps that
        whole tensor alive (``n`` times the pair's size), so ``.clone()`` the states of a pair
        you keep (a ``collate_fn`` that keeps items should). Every item is the caller's, none
        sharing memory with another. A batch of pairs spanning plain HDF5 shards of different
        spatial shapes, which no one tensor holds, is ``[self[i] for i in indices]``; the
        default ``collate_fn`` cannot stack such a batch either (one that keeps lists, or a
        sampler that draws each batch from one shard, can).

        Raises:
            TypeError: an index that is not an int (as for an item).
            IndexError: an index out of range, the first (as for an item).
            ValueError: HDF5 cannot read the data of an item (as for an item).
        """
        samples, steps = self._samples_and_steps(indices)
        self._in_this_process()
        if self.pairs is None:
            return self._trajectories_of(samples)
        order = np.argsort(samples, kind="stable")  # items by sample, so by shard
        samples, steps = samples[order], steps[order]
        bounds = np.searchsorted(samples, self.offsets)  # shard s: items [b[s], b[s + 1])
        shards = np.flatnonzero(np.diff(bounds)).tolist()
        spaces = {self._layouts[shard].space for shard in shards}
        if len(spaces) > 1:  # one tensor holds one shape
            return [self[i] for i in indices]
        space = spaces.pop() if spaces else self._layouts[0].space
        batch = np.empty((len(order), 2, *space), self._numpy_dtype)
        for shard in shards:
            first, end = bounds[shard : shard + 2].tolist()
            try:
                self._read_shard_pairs(batch[first:end], shard,
                                       samples[first:end] - self._starts[shard], steps[first:end])
            except OSError as err:
                raise self._unreadable(shard, err) from None
        pairs = torch.from_numpy(batch)
        views = list(zip(pairs[:, 0].unbind(), pairs[:, 1].unbind()))
        return [views[place] for place in np.argsort(order).tolist()]

    def _trajectories_of(self, samples: np.ndarray) -> list[torch.Tensor]:
        """The whole trajectories of ``samples`` (places in the split, shape (n,)) as items,
        each sample read once: one asked for again is a copy of its first read."""
        read: dict[int, torch.Tensor] = {}
        return [read[sample].clone() if sample in read else read.setdefault(sample, self[sample])
                for sample in samples.tolist()]

    def _samples_and_steps(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Items ``indices``' samples (places in the split) and steps ``t`` (0 without pairs),
        each of shape (n,).

        Raises:
            TypeError, IndexError: the first index that is not an int or out of range (as
                :meth:`_position` words it).
        """
        positions = _int_positions(indices)
        if positions is None:  # each taken as an item's index (refused as its item's would be)
            positions = np.array([self._position(index) for index in indices], dtype=np.int64)
        outside = (positions < -self._length) | (positions >= self._length)
        if outside.any():
            self._position(indices[int(np.argmax(outside))])
        return np.divmod(positions % self._length, self._span)

    def sample_of(self, index: int) -> dict[str, Any]:
        """Where item ``index`` (negative: counted from the end) comes from: ``sample_index``,
        the position of its sample in the split (``open_dataset(path, split).isel(sample=
        sample_index)`` holds the same trajectory); ``sample``, the sample's number (that
        dataset's ``sample`` coordinate: sample ``j`` of a generated dataset drew from
        ``numpy.random.default_rng([seed, j])``, ``seed`` the dataset's attribute; None for a
        file without one, such as PDEBench's own); for pairs ``t``, the step of the pair's
        first state; then every per-sample coordinate by name (swept parameters such as
        ``beta``, the ``scheme``), as Python numbers and strings.

        Raises:
            IndexError: ``index`` out of range (as for an item).
        """
        shard, local, t = self._located(index)
        self._in_this_process()
        f = self._dataset(shard).file
        where: dict[str, Any] = {"sample_index": self._starts[shard] + local,
                                 "sample": int(f["sample"][local]) if "sample" in f else None}
        if self.pairs is not None:
            where["t"] = t
        for name in per_sample_coordinates(f):
            dataset = f[name]
            where[name] = (dataset.asstr()[local] if h5py.check_string_dtype(dataset.dtype)
                           else dataset[local].item())
        return where

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_shards"], state["_trajectories"]
        state["_pid"] = -1  # the caches are made again on first use
        return state


def _int_positions(indices: Sequence[int]) -> np.ndarray | None:
    """``indices`` as an int array of shape (n,) where every one is an int (Python's or
    NumPy's; not a bool, which NumPy would read as 0 or 1), else None."""
    if isinstance(indices, list | tuple) and not all(
            issubclass(kind, int | np.integer) and not issubclass(kind, bool)
            for kind in {type(index) for index in indices}):
        return None
    positions = np.asarray(indices)
    return positions if positions.dtype.kind == "i" and positions.ndim == 1 else None


class _ShardLayout(NamedTuple):
    """How a shard stores the variable read: ``samples`` and ``times`` (its first two axes),
    ``space`` (the others), ``whole_chunks`` (:func:`_whole_trajectory_chunks`) and ``nbytes``,
    its size decompressed."""

    samples: int
    times: int
    space: tuple[int, ...]
    whole_chunks: bool
    nbytes: int


def _shard_layout(file, variable: str) -> _ShardLayout:
    """The layout of ``variable`` in the shard ``file``, its dims checked; the file is closed
    after.

    Raises:
        ValueError: the file does not open (:func:`~physml.datasets.store.open_hdf5`), lacks
            the variable, or its dims are not ``(sample, time, *space)`` (:func:`_check_dims`).
    """
    with open_hdf5(file) as f:
        try:
            field = h5py.Dataset(h5py.h5d.open(f.id, variable.encode()))
        except KeyError:  # no such object, or not a dataset
            raise ValueError(_no_variable(file, variable, f)) from None
        _check_dims(file, variable, field)
        shape = field.shape
        return _ShardLayout(shape[0], shape[1], shape[2:], _whole_trajectory_chunks(field),
                            math.prod(shape) * field.dtype.itemsize)


def _whole_trajectory_chunks(dataset: h5py.Dataset) -> bool:
    """Whether each chunk of ``dataset`` (sample, time, ...) holds one sample's whole
    trajectory, which HDF5 decompresses whole to give any of its states."""
    chunks = dataset.chunks
    return chunks is not None and chunks[0] == 1 and chunks[1] == dataset.shape[1]


def _no_variable(file, variable: str, f: h5py.File) -> str:
    """Why ``file`` (open as ``f``) has no ``variable``: the names it has (the first few and
    their count) and, for a file in a PDEBench layout, how to read it."""
    names = list(f)
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
    message = f"{file} has no variable {variable!r}; has {shown or 'nothing'}"
    if not pdebench_layout(f):
        return message
    fields = [name for name in names if isinstance(f[name], h5py.Dataset) and f[name].ndim >= 3]
    choose = f"pass variable= one of {', '.join(fields)}, or " if fields else ""
    return (f"{message}: a file in a PDEBench layout; {choose}read it whole with "
            f"physml.io.read_pdebench({str(file)!r})")


def _dim_names(variable: h5py.Dataset, axes: int | None = None) -> list[str]:
    """The netCDF dimension names of an h5netcdf variable (its HDF5 dimension scales) for its
    first ``axes`` axes (all by default); ``"?"`` for an axis without one (a file not written
    through netCDF)."""
    # through h5ds (iterate stops at the first scale, giving its path): about a third of the
    # time of h5py's variable.dims, read for each shard
    return [h5py.h5ds.iterate(variable.id, axis, h5py.h5i.get_name).decode().rsplit("/", 1)[-1]
            if h5py.h5ds.get_num_scales(variable.id, axis) else "?"
            for axis in range(variable.ndim if axes is None else min(axes, variable.ndim))]


def _check_dims(file, name: str, variable: h5py.Dataset) -> None:
    """Refuse a variable that is not ``(sample, time, *space)``: fewer than three axes, or
    named axes in other places (an axis without a name, as in PDEBench's ``tensor``, is
    taken as it stands).

    Raises:
        ValueError: naming the file, the variable and the dims it has.
    """
    leading = _dim_names(variable, 2)  # the others' names are read only to refuse
    if variable.ndim < 3 or any(d not in (want, "?")
                                for d, want in zip(leading, ("sample", "time"))):
        raise ValueError(f"{file}: variable {name!r} has dims "
                         f"({', '.join(_dim_names(variable))}); "
                         "FieldDataset reads (sample, time, *space) fields, as "
                         "`physml datasets generate` writes them")
