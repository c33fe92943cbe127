"""FieldDataset's batches (``__getitems__``, which ``DataLoader`` calls for a batch): the items
``[data[i] for i in indices]`` gives, bit for bit, in every mode and layout, through loaders
with and without workers, in few HDF5 reads, with the same errors."""

import re

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
    for array in arrays:
        array += 100.0  # changes no later item: a kept trajectory is not a batch's
    assert_same_items(data.__getitems__([1, 1, 3]), want)


def test_a_batch_reads_each_shard_once_and_each_trajectory_once(tmp_path, monkeypatch):
    """Whole trajectories: one HDF5 read per shard holding items of the batch; pairs: one read
    per sample not kept yet."""
    write_shards(tmp_path)  # samples 0-1, 2-4 and 5
    reads = []
    read = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__",
                        lambda self, key: reads.append(key) or read(self, key))
    trajectories = FieldDataset(tmp_path, split="")
    reads.clear()
    trajectories.__getitems__([4, 0, 2, 5, 3])
    assert len(reads) == 3
    pairs, span = FieldDataset(tmp_path, split="", pairs=1), TIMES - 1
    reads.clear()
    pairs.__getitems__([2 * span + 1, 0, 2 * span, 3, 5 * span])  # samples 2, 0, 2, 0, 5
    assert len(reads) == 3
    pairs.__getitems__([1, 2 * span + 3])
    assert len(reads) == 3


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


def test_shards_of_other_spatial_shapes_are_refused_when_built(tmp_path):
    """A batch holds one spatial shape: a split of plain HDF5 files (no grid to compare when
    the shards are listed) whose shards disagree on it is refused."""
    for shard, nx in enumerate((12, 6)):
        with h5py.File(tmp_path / f"shard-{shard:05d}.h5", "w") as f:
            f["u"] = np.zeros((2, TIMES, nx), np.float32)
    with pytest.raises(ValueError, match=re.escape("shards disagree on the spatial shape: "
                                                   "[(6,), (12,)]")):
        FieldDataset(tmp_path, split="")
