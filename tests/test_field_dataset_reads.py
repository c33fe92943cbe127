"""What FieldDataset's items are, read against plain h5py reads of the same arrays: values,
dtypes, shapes and order in both modes, in DataLoader workers and after pickling, and fresh
tensors the caller may write to."""

import pickle

import h5py
import numpy as np
import pytest
import torch

from physml import io
from physml.data import FieldDataset
from physml.solvers import Grid

SAMPLES_PER_SHARD = (2, 3, 1)
TIMES = 5


def write_shards(folder) -> list:
    """Shards of 2, 3 and 1 samples of a (sample, time, x, y) field in physml's layout (a
    chunk per trajectory, shuffled and deflated); their paths, in order."""
    grid = Grid((16, 8), (0.0, 0.0), (1.0, 2.0))
    rng = np.random.default_rng(11)
    paths, first = [], 0
    for shard, n in enumerate(SAMPLES_PER_SHARD):
        states = rng.standard_normal((n, TIMES, 16, 8)).astype(np.float32)
        ds = io.samples_dataset(states, np.linspace(0, 1, TIMES), grid,
                                np.arange(first, first + n), {"nu": np.full(n, 0.1)},
                                attrs={"pde": "heat2d"})
        paths.append(io.write_dataset(ds, folder / f"shard-{shard:05d}.h5"))
        first += n
    return paths


def h5py_samples(paths) -> list[np.ndarray]:
    """Every sample of ``paths`` in order, as plain h5py reads them."""
    samples = []
    for path in paths:
        with h5py.File(path, "r") as f:
            samples += [f["u"][i] for i in range(f["u"].shape[0])]
    return samples


def expected_items(samples, pairs, dtype) -> list:
    """The items FieldDataset promises: each sample, or ``(u[t], u[t + k])`` for every sample
    and ``t < T - k``, in the asked dtype."""
    if pairs is None:
        return [torch.from_numpy(u.astype(dtype)) for u in samples]
    return [(torch.from_numpy(u[t].astype(dtype)), torch.from_numpy(u[t + pairs].astype(dtype)))
            for u in samples for t in range(TIMES - pairs)]


def assert_bitwise(item, expected) -> None:
    for got, want in zip(*((item, expected) if isinstance(item, tuple) else
                           ((item,), (expected,)))):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want) and got.numpy().tobytes() == want.numpy().tobytes()


@pytest.mark.parametrize("pairs", [None, 1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_items_are_h5py_s_reads_bit_for_bit_in_order(tmp_path, pairs, dtype):
    paths = write_shards(tmp_path)
    expected = expected_items(h5py_samples(paths), pairs, dtype)
    data = FieldDataset(tmp_path, split="", pairs=pairs, dtype=dtype)
    assert len(data) == len(expected)
    for index in np.random.default_rng(0).permutation(len(data)):  # shuffled, then in order
        assert_bitwise(data[int(index)], expected[index])
    for index, want in enumerate(expected):
        assert_bitwise(data[index], want)


def test_pairs_of_a_file_chunked_per_state_are_h5py_s_reads(tmp_path):
    """A chunk of one state (PDEBench's layout): a pair reads its two states alone."""
    states = np.random.default_rng(2).standard_normal((3, TIMES, 16, 8)).astype(np.float32)
    with h5py.File(tmp_path / "states.h5", "w") as f:
        f.create_dataset("u", data=states, chunks=(1, 1, 16, 8), compression="gzip")
    expected = expected_items(h5py_samples([tmp_path / "states.h5"]), 2, np.float32)
    data = FieldDataset(tmp_path / "states.h5", pairs=2)
    for index in np.random.default_rng(1).permutation(len(data)):
        assert_bitwise(data[int(index)], expected[index])


@pytest.mark.parametrize("pairs", [None, 2])
def test_items_in_loader_workers_and_after_pickling_are_the_parent_s(tmp_path, pairs):
    """The parent reads first (its shards open, trajectories kept); forked DataLoader workers
    and a pickled copy open their own and give the same items."""
    paths = write_shards(tmp_path)
    expected = expected_items(h5py_samples(paths), pairs, np.float32)
    data = FieldDataset(tmp_path, split="", pairs=pairs)
    for index, want in enumerate(expected):
        assert_bitwise(data[index], want)
    copy = pickle.loads(pickle.dumps(data))
    for index in reversed(range(len(expected))):
        assert_bitwise(copy[index], expected[index])
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    for item, want in zip(loader, expected, strict=True):
        assert_bitwise(tuple(item) if pairs else item, want)


@pytest.mark.parametrize("pairs", [None, 1])
def test_an_item_is_a_fresh_tensor_the_caller_may_write_to(tmp_path, pairs):
    paths = write_shards(tmp_path)
    expected = expected_items(h5py_samples(paths), pairs, np.float32)
    data = FieldDataset(tmp_path, split="", pairs=pairs)
    first = data[1] if pairs is None else data[1][0]
    again = data[1] if pairs is None else data[1][1]
    assert first.numpy().flags.writeable and not np.shares_memory(first.numpy(), again.numpy())
    first += 100.0
    assert_bitwise(data[1], expected[1])
    assert_bitwise(data[0], expected[0])


def test_shards_open_elsewhere_read_the_same(tmp_path):
    """A shard the caller holds open with h5py (as xarray or a notebook may) is read as well,
    and stays open for the caller after the dataset closes its own."""
    paths = write_shards(tmp_path)
    expected = expected_items(h5py_samples(paths), None, np.float32)
    with h5py.File(paths[1], "r") as held:
        data = FieldDataset(tmp_path, split="")
        for index, want in enumerate(expected):
            assert_bitwise(data[index], want)
        del data
        np.testing.assert_array_equal(held["u"][0], expected[2].numpy())


def test_a_group_under_the_variable_s_name_is_refused_naming_the_file(tmp_path):
    """A group named as the variable: reading its dims failed with an AttributeError."""
    path = tmp_path / "grouped.h5"
    with h5py.File(path, "w") as f:
        f.create_group("u")
        f["v"] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=f"{path} has no variable 'u'"):
        FieldDataset(path)
