"""FieldDataset's batches (``__getitems__``, which ``DataLoader`` calls for a batch): the items
``[data[i] for i in indices]`` gives, bit for bit, in every mode and layout, through loaders
with and without workers, with no more reads than item by item, each plain (no list
selection), and with the same errors."""

import re
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from test_field_dataset_reads import TIMES, assert_bitwise, write_shards
from torch.utils.data import DataLoader, Dataset

from physml import io
from physml.data import FieldDataset
from physml.solvers import Grid


def assert_same_items(got: list, want: list) -> None:
    assert len(got) == len(want)
    for item, expected in zip(got, want):
        assert_bitwise(item, expected)


def batches(length: int) -> list[list[int]]:
    """Shuffled batches over ``range(length)``, a last short one, one counted from the end and
    one repeating items."""
    order = np.random.default_rng(3).permutation(length).tolist()
    return [order[:4], order[4:], [-1, -length, 0, length - 1], [2, 2, 0, 2], []]


@pytest.mark.parametrize("pairs", [None, 1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_is_its_items_bit_for_bit_over_shards_of_2_3_and_1(tmp_path, pairs, dtype):
    write_shards(tmp_path)
    data = FieldDataset(tmp_path, split="", pairs=pairs, dtype=dtype)
    for indices in batches(len(data)):  # on a fresh dataset: nothing open or kept yet
        got = FieldDataset(tmp_path, split="", pairs=pairs, dtype=dtype).__getitems__(indices)
        assert_same_items(got, [data[i] for i in indices])
        assert_same_items(data.__getitems__(indices), [data[i] for i in indices])


@pytest.mark.parametrize("layout", ["chunk per state", "contiguous big-endian"])
@pytest.mark.parametrize("pairs", [None, 2])
def test_a_batch_of_a_file_without_a_chunk_per_trajectory_is_its_items(tmp_path, layout, pairs):
    """PDEBench's chunk of one state, and an unchunked file of big-endian floats (read as
    float64): pairs read the states they need."""
    states = np.random.default_rng(2).standard_normal((4, TIMES, 16, 8)).astype(np.float32)
    with h5py.File(tmp_path / "states.h5", "w") as f:
        if layout == "chunk per state":
            f.create_dataset("u", data=states, chunks=(1, 1, 16, 8), compression="gzip")
        else:
            f.create_dataset("u", data=states.astype(">f4"))
    data = FieldDataset(tmp_path / "states.h5", pairs=pairs, dtype=np.float64)
    for indices in batches(len(data)):
        assert_same_items(data.__getitems__(indices), [data[i] for i in indices])


@pytest.mark.parametrize("pairs", [None, 1])
def test_batch_items_are_the_caller_s_and_share_no_memory(tmp_path, pairs):
    write_shards(tmp_path)
    data = FieldDataset(tmp_path, split="", pairs=pairs)
    want = [data[i] for i in (1, 1, 3)]
    got = data.__getitems__([1, 1, 3])
    arrays = [a.numpy() for item in got for a in (item if pairs else (item,))]
    assert all(a.flags.writeable for a in arrays)
    assert not any(np.shares_memory(a, b) for k, a in enumerate(arrays) for b in arrays[k + 1:])
    if pairs is None:  # a trajectory holds only its own memory, as an item does
        assert all(item.untyped_storage().nbytes() == item.nbytes for item in got)
    for array in arrays:
        array += 100.0  # changes no later item: a kept trajectory is not a batch's
    assert_same_items(data.__getitems__([1, 1, 3]), want)


def write_layout(folder, layout: str):
    """One split of 6 samples: physml's shards of 2, 3 and 1 (a chunk per trajectory), or one
    file with a chunk per state (PDEBench's), or contiguous."""
    if layout == "chunk per trajectory":
        write_shards(folder)
        return folder
    states = np.random.default_rng(2).standard_normal((6, TIMES, 16)).astype(np.float32)
    with h5py.File(folder / "states.h5", "w") as f:
        f.create_dataset("u", data=states, **({"chunks": (1, 1, 16)} if layout ==
                                                "chunk per state" else {}))
    return folder / "states.h5"


def recorded_reads(monkeypatch, read) -> Counter:
    """The HDF5 reads ``read()`` makes, counted by key (as ``repr`` writes it)."""
    reads: Counter = Counter()
    plain = h5py.Dataset.__getitem__
    with monkeypatch.context() as patched:
        patched.setattr(h5py.Dataset, "__getitem__",
                        lambda self, key: reads.update([repr(key)]) or plain(self, key))
        read()
    return reads


@pytest.mark.parametrize("layout", ["chunk per trajectory", "chunk per state", "contiguous"])
@pytest.mark.parametrize("pairs", [None, 1])
def test_a_batch_makes_only_the_plain_reads_its_items_make(tmp_path, monkeypatch, layout, pairs):
    """h5py's selection of a list of samples or steps is several times slower than one read
    per sample: a batch reads as its items do (a sample, a pair's slice), at most as often."""
    path = write_layout(tmp_path, layout)
    split = "" if layout == "chunk per trajectory" else "train"
    length = len(FieldDataset(path, split=split, pairs=pairs))
    indices = [*np.random.default_rng(4).permutation(length).tolist(), 1, 1, 0]

    def reads(batched: bool) -> Counter:
        data = FieldDataset(path, split=split, pairs=pairs)  # nothing open or kept yet
        return recorded_reads(monkeypatch, lambda: data.__getitems__(indices) if batched
                              else [data[i] for i in indices])

    in_a_batch, item_by_item = reads(batched=True), reads(batched=False)
    assert in_a_batch and in_a_batch <= item_by_item
    if pairs is None or layout == "chunk per trajectory":  # each sample once
        assert in_a_batch.total() == 6


class ItemByItem(FieldDataset):
    """A FieldDataset that ``DataLoader`` reads one item at a time (it calls ``__getitems__``
    only where it is set)."""

    __getitems__ = None


def write_split(folder, samples_per_shard=(40, 40, 17), times=4) -> None:
    """Shards of (sample, time, x) samples of a seeded normal field, the last one short."""
    grid, rng = Grid((12,), (0.0,), (1.0,)), np.random.default_rng(5)
    for shard, n in enumerate(samples_per_shard):
        states = rng.standard_normal((n, times, 12)).astype(np.float32)
        ds = io.samples_dataset(states, np.linspace(0, 1, times), grid,
                                np.arange(shard * 100, shard * 100 + n))
        io.write_dataset(ds, folder / f"shard-{shard:05d}.h5")


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize(("pairs", "dtype"), [(1, np.float32), (2, np.float64), (None, np.float32)])
def test_shuffled_loader_batches_are_those_read_item_by_item(tmp_path, workers, pairs, dtype):
    write_split(tmp_path)
    data = FieldDataset(tmp_path, split="", pairs=pairs, dtype=dtype)

    def loader(dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=64, shuffle=True, num_workers=workers,
                          generator=torch.Generator().manual_seed(7))

    one_by_one = ItemByItem(tmp_path, split="", pairs=pairs, dtype=dtype)
    got, want = list(loader(data)), list(loader(one_by_one))
    assert len(got) == len(want) == -(-len(data) // 64)
    for batch, expected in zip(got, want):
        assert_same_items(list(batch) if pairs else [batch], list(expected) if pairs else
                          [expected])


def test_a_bad_index_in_a_batch_raises_as_for_an_item(tmp_path):
    write_shards(tmp_path)
    data = FieldDataset(tmp_path, split="", pairs=1)
    for bad in (len(data), -len(data) - 1):
        with pytest.raises(IndexError, match=re.escape(f"index {bad} out of range for "
                                                       f"{len(data)} items")):
            data.__getitems__([0, bad, 10**30])
    with pytest.raises(IndexError, match=f"index {10**31} out of range"):
        data.__getitems__([0, 10**31])
    with pytest.raises(TypeError, match="'<=' not supported"):
        data.__getitems__([0, "1"])


def test_a_batch_from_a_damaged_shard_is_refused_naming_it(tmp_path):
    paths = write_shards(tmp_path)
    with h5py.File(paths[1]) as f:
        chunk = f["u"].id.get_chunk_info(0)  # sample 2 of the split
    with open(paths[1], "r+b") as file:
        file.seek(chunk.byte_offset + 10)
        file.write(b"\xff" * 64)
    for pairs in (None, 1):
        data = FieldDataset(tmp_path, split="", pairs=pairs)
        item = 2 if pairs is None else 2 * (TIMES - 1)
        with pytest.raises(ValueError) as single:
            data[item]
        assert "is damaged: HDF5 cannot read its data" in str(single.value)
        with pytest.raises(ValueError, match=re.escape(str(single.value))):
            data.__getitems__([0, item])


def test_shards_of_other_spatial_shapes_are_read_and_a_batch_spanning_them_item_by_item(
        tmp_path):
    """Plain HDF5 files (no grid to compare when the shards are listed) of two resolutions in
    one split: each item is read, a batch within one shard is one tensor, a batch spanning
    both is its items (one tensor cannot hold both shapes)."""
    for shard, nx in enumerate((12, 6)):
        with h5py.File(tmp_path / f"shard-{shard:05d}.h5", "w") as f:
            f["u"] = np.random.default_rng(shard).standard_normal((2, TIMES, nx)).astype("f4")
    for pairs in (None, 1):
        data = FieldDataset(tmp_path, split="", pairs=pairs)
        half = len(data) // 2
        for indices in ([0, half - 1], [half, len(data) - 1], [len(data) - 1, 0, half - 1, 1]):
            assert_same_items(data.__getitems__(indices), [data[i] for i in indices])
        firsts = [batch if pairs is None else batch[0] for batch in DataLoader(data)]
        assert {first.shape[-1] for first in firsts} == {12, 6}
