"""Field files: our layout and PDEBench's, read back by xarray, h5py and the torch Dataset."""

import re
import subprocess
import sys
import textwrap
import warnings

import h5py
import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from physml import data as field_data
from physml import io
from physml.data import FieldDataset
from physml.solvers import Grid


def sample_file(tmp_path, n=5, name="shard-00000.h5"):
    grid = Grid((16, 8), (0.0, 0.0), (1.0, 2.0))
    rng = np.random.default_rng(3)
    states = rng.standard_normal((n, 4, 16, 8)).astype(np.float32)
    ds = io.samples_dataset(states, np.linspace(0, 1, 4), grid, np.arange(10, 10 + n),
                            {"nu": np.full(n, 0.1)}, attrs={"pde": "heat2d", "nu": 0.1,
                                                            "grid_shape": (16, 8)})
    path = io.write_dataset(ds, tmp_path / name)
    return path, states, grid


def test_round_trip_xarray_and_h5py(tmp_path):
    path, states, grid = sample_file(tmp_path)
    ds = xr.open_dataset(path)
    assert ds["u"].dims == ("sample", "time", "x", "y")
    np.testing.assert_array_equal(ds["u"].values, states)
    np.testing.assert_array_equal(ds["sample"], np.arange(10, 15))
    np.testing.assert_allclose(ds["x"], grid.coords(0))
    np.testing.assert_allclose(ds["y"], grid.coords(1))
    np.testing.assert_allclose(ds["nu"], 0.1)
    assert ds.attrs["pde"] == "heat2d" and list(ds.attrs["grid_shape"]) == [16, 8]
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["u"][...], states)
        assert f["u"].chunks == (1, 4, 16, 8)  # one sample per chunk
        assert f["u"].compression == "gzip"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_attrs_of_strings_and_numpy_bools_round_trip(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    attrs = {"bcs": ["periodic", "dirichlet"], "scheme": np.str_("weno5"),
             "names": np.asarray(["u", "v"]), "stiff": np.True_, "flags": [True, False]}
    path = io.write_dataset(io.trajectory_dataset(np.zeros((2, 8)), [0.0, 1.0], grid,
                                                  attrs=attrs), tmp_path / "a.h5")
    with io.open_dataset(path) as ds:
        assert ds.attrs["bcs"] == ["periodic", "dirichlet"] and ds.attrs["names"] == ["u", "v"]
        assert ds.attrs["scheme"] == "weno5" and ds.attrs["stiff"] == 1
        assert list(ds.attrs["flags"]) == [1, 0]
    with h5py.File(path) as f:
        assert list(f.attrs["bcs"]) == ["periodic", "dirichlet"]  # variable-length strings


def test_open_dataset_joins_shards_lazily(tmp_path):
    pytest.importorskip("dask")  # the core dependencies read shards eagerly
    _, first, _ = sample_file(tmp_path, 3, "shard-00000.h5")
    _, second, _ = sample_file(tmp_path, 2, "shard-00001.h5")
    ds = io.open_dataset(tmp_path)
    assert ds["u"].chunks is not None  # Dask-backed: nothing read yet
    np.testing.assert_array_equal(ds["u"].values, np.concatenate([first, second]))


def test_open_dataset_reads_in_forked_loader_workers_after_the_parent_read(tmp_path):
    """Dask's threaded scheduler pool, made by the parent's first read, has no threads in a
    forked child: both DataLoader workers waited for ever on it. Run apart, so that a wait
    fails the test instead of blocking the run."""
    _, first, _ = sample_file(tmp_path, 3, "shard-00000.h5")
    _, second, _ = sample_file(tmp_path, 2, "shard-00001.h5")
    script = textwrap.dedent(f"""
        import multiprocessing, sys, torch
        from physml import io

        class Samples(torch.utils.data.Dataset):
            def __init__(self):
                self.ds = io.open_dataset({str(tmp_path)!r})
            def __len__(self):
                return self.ds.sizes["sample"]
            def __getitem__(self, i):
                return torch.from_numpy(self.ds.u.isel(sample=i).values)

        data = Samples()
        data[0]  # the parent reads first: Dask makes its pool here
        loader = torch.utils.data.DataLoader(
            data, batch_size=1, num_workers=2, timeout=10,
            multiprocessing_context=multiprocessing.get_context("fork"))
        torch.save(torch.cat(list(loader)), sys.argv[1])
    """)
    out = tmp_path / "read.pt"
    run = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    read = torch.load(out).numpy()
    np.testing.assert_array_equal(read.view(np.uint32),
                                  np.concatenate([first, second]).view(np.uint32))


def test_read_pdebench_stacked_layout_with_extra_time_entry(tmp_path):
    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    data = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = data
        f["x-coordinate"] = np.linspace(0.0625, 0.9375, 8)
        f["t-coordinate"] = np.arange(6) * 0.01  # T + 1 entries, as PDEBench writes them
        f.attrs["Nu"] = 0.01
    ds = io.read_pdebench(path)
    np.testing.assert_array_equal(ds["u"].values, data)
    np.testing.assert_allclose(ds["time"], np.arange(5) * 0.01)
    assert ds["u"].dims == ("sample", "time", "x") and ds.attrs["Nu"] == 0.01
    assert_cf(ds)


def test_read_pdebench_per_seed_groups(tmp_path):
    path = tmp_path / "1D_diff-sorp_NA_NA.h5"
    rng = np.random.default_rng(1)
    blocks = [rng.random((4, 6, 1)) for _ in range(2)]
    with h5py.File(path, "w") as f:
        for i, block in enumerate(blocks):
            group = f.create_group(f"{i:04d}")
            group["data"] = block
            group["grid/x"] = np.linspace(0, 1, 6)
            group["grid/t"] = np.linspace(0, 500, 4)
    ds = io.read_pdebench(path)
    assert ds["u"].shape == (2, 4, 6)
    np.testing.assert_array_equal(ds["u"].values, np.stack(blocks)[..., 0])
    np.testing.assert_array_equal(ds["sample"], [0, 1])
    np.testing.assert_allclose(ds["time"], np.linspace(0, 500, 4))


def test_write_pdebench_2d_in_seed_groups_reads_back_with_h5py(tmp_path):
    """PDEBench's loaders read a 4-D tensor as steady Darcy flow: 2D fields go in per-seed
    groups, as PDEBench's own 2D data."""
    path, states, grid = sample_file(tmp_path)
    ds = xr.open_dataset(path)
    ds = ds.assign_coords(nu=("sample", [0.1, 0.1, 0.2, 0.2, 0.3]))  # may vary per sample
    out = io.write_pdebench(ds, tmp_path / "2D_heat.hdf5")
    with h5py.File(out) as f:
        assert "tensor" not in f and sorted(f) == [f"{s:04d}" for s in range(10, 15)]
        np.testing.assert_array_equal(f["0012/data"][...], states[2][..., None])
        np.testing.assert_allclose(f["0012/grid/x"][...], grid.coords(0), rtol=1e-6)
        np.testing.assert_allclose(f["0012/grid/y"][...], grid.coords(1), rtol=1e-6)
        np.testing.assert_allclose(f["0012/grid/t"][...], np.linspace(0, 1, 4), rtol=1e-6)
        assert f.attrs["nu"] == pytest.approx(0.1) and f.attrs["pde"] == "heat2d"
    back = io.read_pdebench(out)
    np.testing.assert_array_equal(back["u"].values, states)
    np.testing.assert_array_equal(back["sample"], np.arange(10, 15))
    np.testing.assert_allclose(back["nu"], [0.1, 0.1, 0.2, 0.2, 0.3])
    with pytest.raises(ValueError, match="layout='stacked' holds 1D fields only"):
        io.write_pdebench(ds, tmp_path / "stacked.hdf5", layout="stacked")


def test_write_pdebench_1d_stacked_with_pdebench_s_names_and_times(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    states = np.random.default_rng(0).standard_normal((3, 4, 8))
    ds = io.samples_dataset(states, np.array([0.0, 0.5, 1.0, 1.5]), grid, np.arange(3),
                            attrs={"pde": "burgers1d_pdebench", "nu": 0.01,
                                   "solver_nu": 0.01 / np.pi})
    out = io.write_pdebench(ds, tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5")
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["tensor"][...], states, rtol=1e-6)
        np.testing.assert_allclose(f["t-coordinate"][...], [0, 0.5, 1, 1.5, 2.0])
        np.testing.assert_allclose(f["x-coordinate"][...], grid.coords(0), rtol=1e-6)
        assert f.attrs["Nu"] == 0.01 and "nu" not in f.attrs  # PDEBench's name
    back = io.read_pdebench(out)
    np.testing.assert_allclose(back["time"], [0, 0.5, 1, 1.5])
    assert back.attrs["nu"] == 0.01 and "Nu" not in back.attrs  # physml's name, read back
    groups = io.write_pdebench(ds.assign_coords(nu=("sample", [0.01, 0.02, 0.04])),
                               tmp_path / "groups.h5", layout="seed_groups")
    first = io.read_pdebench(groups)
    np.testing.assert_allclose(first["nu"], [0.01, 0.02, 0.04])
    again = io.read_pdebench(io.write_pdebench(first, tmp_path / "again.h5",
                                               layout="seed_groups"))
    # the config text read back once nested inside the new one, growing with each round trip
    np.testing.assert_array_equal(again["config"].values, first["config"].values)
    # the Dirichlet Burgers problem on [-1, 1] is not PDEBench's: its nu keeps its name
    dirichlet = io.write_pdebench(ds.assign_attrs(pde="burgers1d"), tmp_path / "dirichlet.h5")
    with h5py.File(dirichlet) as f:
        assert f.attrs["nu"] == 0.01 and "Nu" not in f.attrs


def test_a_stacked_file_keeps_its_samples_numbers_where_pdebench_does_not_look(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    states = np.random.default_rng(1).standard_normal((3, 4, 8)).astype(np.float32)
    ds = io.samples_dataset(states, np.linspace(0, 1, 4), grid, [280, 283, 281],
                            {"beta": np.full(3, 0.4)}, attrs={"pde": "advection1d"})
    out = io.write_pdebench(ds, tmp_path / "1D_Advection_Sols_beta0.4.hdf5")
    with h5py.File(out) as f:
        assert sorted(f) == ["sample", "t-coordinate", "tensor", "x-coordinate"]
        np.testing.assert_array_equal(f["sample"][...], [280, 283, 281])
        assert f["sample"].dtype == np.int64
    back = io.read_pdebench(out)
    np.testing.assert_array_equal(back["sample"], [280, 283, 281])
    np.testing.assert_array_equal(back["u"].values, states)
    assert set(back.data_vars) == {"u"} and back.attrs["beta"] == pytest.approx(0.4)
    with h5py.File(out, "a") as f:
        del f["sample"]
        f["sample"] = [1, 2]
    with pytest.raises(ValueError, match=r"'sample' has 2 entries for axis 0 of 'tensor' "
                       r"\(3, 4, 8\)"):
        io.read_pdebench(out)


def test_seed_groups_read_back_in_numeric_seed_order(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    seeds = np.array([2, 9999, 10000, 12, 100000])
    states = np.arange(5.0)[:, None, None] * np.ones((5, 3, 8))
    ds = io.samples_dataset(states, np.linspace(0, 1, 3), grid, seeds)
    out = io.write_pdebench(ds, tmp_path / "groups.h5", layout="seed_groups")
    back = io.read_pdebench(out)
    np.testing.assert_array_equal(back["sample"], [2, 12, 9999, 10000, 100000])
    np.testing.assert_array_equal(back["u"].values[:, 0, 0], [0, 3, 1, 2, 4])


def test_pdebench_and_dataset_paths_are_named_in_clear_errors(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    ds = io.samples_dataset(np.zeros((1, 2, 8)), np.linspace(0, 1, 2), grid, np.arange(1))
    missing = tmp_path / "no_such_folder"
    with pytest.raises(ValueError, match=re.escape(f"output folder '{missing}' does not exist")):
        io.write_pdebench(ds, missing / "x.h5")
    with pytest.raises(ValueError, match=re.escape(f"'{tmp_path}' is a folder; give one of")):
        io.read_pdebench(tmp_path)
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
        io.write_dataset(ds, tmp_path / "data" / split / "shard-00000.h5")
    with pytest.raises(ValueError, match="with splits: pass split= one of train, test$"):
        io.open_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match=re.escape(f"'{missing / 'shard-00000.h5'}' does not "
                                                   "exist")):
        io.open_dataset(missing / "shard-00000.h5")


@pytest.mark.parametrize("dims", ["trajectory", "mesh"])
def test_torch_dataset_refuses_fields_that_are_not_sample_then_time(tmp_path, dims):
    """A ``physml solve`` trajectory u(time, x) or a steady mesh dataset u(sample, node) is
    not read as (sample, time, ...)."""
    if dims == "trajectory":
        grid = Grid((16,), (0.0,), (1.0,))
        ds = io.trajectory_dataset(np.zeros((5, 16)), np.linspace(0, 1, 5), grid)
        found = "time, x"
    else:
        ds = xr.Dataset({"u": (("sample", "node"), np.zeros((3, 4)))},
                        coords={"sample": np.arange(3)})
        ds["u"].attrs.update(long_name="u", units="1")
        found = "sample, node"
    path = io.write_dataset(ds, tmp_path / "field.h5")
    with pytest.raises(ValueError, match=f"field.h5: variable 'u' has dims \\({found}\\)"):
        FieldDataset(path)


def test_torch_dataset_reads_pdebench_s_tensor_of_unnamed_axes(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    states = np.random.default_rng(0).standard_normal((3, 4, 8))
    ds = io.samples_dataset(states, np.arange(4.0), grid, np.arange(3),
                            attrs={"pde": "burgers1d_pdebench", "nu": 0.01})
    path = io.write_pdebench(ds, tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5")
    data = FieldDataset(path, variable="tensor", pairs=1)
    assert len(data) == 9 and data[0][0].shape == (8,)
    np.testing.assert_allclose(data[0][1].numpy(), states[0, 1], rtol=1e-6)


def test_read_pdebench_names_the_steady_darcy_layout(tmp_path):
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 1, 4, 4))
        f["nu"] = np.ones((2, 4, 4))
        f["x-coordinate"] = np.linspace(0, 1, 4)
    with pytest.raises(ValueError, match="no 't-coordinate' \\(PDEBench's steady Darcy"):
        io.read_pdebench(path)


def test_torch_dataset_trajectories_and_pairs(tmp_path):
    _, first, _ = sample_file(tmp_path, 3, "shard-00000.h5")
    _, second, _ = sample_file(tmp_path, 2, "shard-00001.h5")
    everything = np.concatenate([first, second])
    data = FieldDataset(tmp_path, split="")
    assert len(data) == 5
    torch.testing.assert_close(data[4], torch.from_numpy(everything[4]))
    pairs = FieldDataset(tmp_path, split="", pairs=2)
    assert len(pairs) == 5 * 2
    u_t, u_next = pairs[3]  # sample 1, t = 1
    torch.testing.assert_close(u_t, torch.from_numpy(everything[1, 1]))
    torch.testing.assert_close(u_next, torch.from_numpy(everything[1, 3]))
    loader = torch.utils.data.DataLoader(pairs, batch_size=4, num_workers=2, shuffle=False)
    batches = [b for b, _ in loader]
    torch.testing.assert_close(torch.cat(batches), torch.from_numpy(everything[:, :2].reshape(
        10, 16, 8)))
    torch.testing.assert_close(data[-1], data[4])  # negative: from the end, as a sequence's
    torch.testing.assert_close(pairs[-7][1], u_next)
    for index in (5, -6):
        with pytest.raises(IndexError, match=f"index {index} out of range for 5 items"):
            data[index]



def test_a_field_dataset_names_each_item_s_sample_and_parameters(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    rng = np.random.default_rng(5)
    for shard, seeds in enumerate(([7, 3, 11], [20, 4])):
        n = len(seeds)
        ds = io.samples_dataset(rng.standard_normal((n, 4, 8)).astype(np.float32),
                                np.linspace(0, 1, 4), grid, seeds,
                                {"nu": rng.uniform(0.1, 1.0, n),
                                 "scheme": np.asarray(["rk4", "euler", "rk4"][:n])})
        io.write_dataset(ds, tmp_path / f"shard-{shard:05d}.h5")
    joined = io.open_dataset(tmp_path).load()

    def expected(k):
        one = joined.isel(sample=k)
        return {"sample_index": k, "sample": int(one["sample"]), "nu": float(one["nu"]),
                "scheme": str(one["scheme"].values)}

    data = FieldDataset(tmp_path, split="")
    for i in range(len(data)):
        assert data.sample_of(i) == expected(i)
        np.testing.assert_array_equal(data[i].numpy(), joined["u"].values[i])
    assert data.sample_of(-1) == expected(4) and data.sample_of(3)["sample"] == 20
    pairs = FieldDataset(tmp_path, split="", pairs=2)  # 4 - 2 = 2 pairs per sample
    for j in range(len(pairs)):
        assert pairs.sample_of(j) == {**expected(j // 2), "t": j % 2}
        np.testing.assert_array_equal(pairs[j][1].numpy(), joined["u"].values[j // 2, j % 2 + 2])
    with pytest.raises(IndexError, match="index 10 out of range for 10 items"):
        pairs.sample_of(10)


def test_pairs_decompress_each_trajectory_once_within_their_budget(tmp_path, monkeypatch):
    """A pair is sliced from its sample's kept trajectory: a chunk holds a whole trajectory,
    which HDF5 decompresses whole, and reading it again for every pair made an epoch of pairs
    27 times slower; the kept trajectories stay within SAMPLE_CACHE_BYTES."""
    _, states, _ = sample_file(tmp_path, 3)
    reads = []
    read = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__",
                        lambda self, key: reads.append(key) or read(self, key))
    pairs = FieldDataset(tmp_path, split="", pairs=1)
    for index in range(len(pairs)):  # 3 samples x 3 pairs
        u_t, u_next = pairs[index]
        sample, t = divmod(index, 3)
        torch.testing.assert_close(u_t, torch.from_numpy(states[sample, t]))
        torch.testing.assert_close(u_next, torch.from_numpy(states[sample, t + 1]))
    assert len(reads) == 3
    with pytest.warns(UserWarning, match="more than cache_bytes=.* a larger cache_bytes"):
        one = FieldDataset(tmp_path, split="", pairs=1, cache_bytes=states[0].nbytes)
    reads.clear()
    for index in (0, 1, 3, 4, 0):  # samples 0, 0, 1, 1, 0
        one[index]
    assert len(reads) == 3 and one._trajectories.used == states[0].nbytes
    u_t, u_next = one[4]
    u_t += 100.0  # an item is the caller's: changing it changes no later item
    torch.testing.assert_close(one[4][0], torch.from_numpy(states[1, 1]))
    torch.testing.assert_close(one[3][1], torch.from_numpy(states[1, 1]))


def test_pairs_over_a_split_beyond_their_cache_warn_and_the_default_split_stays_quiet(tmp_path):
    """Past SAMPLE_CACHE_BYTES shuffled pairs decompressed a trajectory per item (80x slower on
    a 340 MB split) without a word."""
    _, states, _ = sample_file(tmp_path, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FieldDataset(tmp_path, split="", pairs=1)
        FieldDataset(tmp_path, split="", cache_bytes=0)  # whole trajectories keep nothing
    with pytest.warns(UserWarning, match=r"take 0 MiB decompressed, more than cache_bytes=10 "):
        FieldDataset(tmp_path, split="", pairs=1, cache_bytes=10)
    with h5py.File(tmp_path / "contiguous.h5", "w") as f:  # a pair reads its two states alone
        f["u"] = states
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FieldDataset(tmp_path / "contiguous.h5", pairs=1, cache_bytes=10)
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="cache_bytes=.* whole number of bytes"):
            FieldDataset(tmp_path, split="", pairs=1, cache_bytes=bad)


def test_a_field_dataset_keeps_at_most_its_bound_of_shard_files_open(tmp_path, monkeypatch):
    """The constructor reads the shards' shapes and closes them, and items keep at most
    MAX_OPEN_SHARDS files open (every shard stayed open: 1,000 shards ran out of file
    descriptors and took 0.6 MB each)."""
    samples = [sample_file(tmp_path, 2, f"shard-{k:05d}.h5")[1] for k in range(4)]
    everything = np.concatenate(samples)

    def open_files() -> int:
        return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))

    before = open_files()
    monkeypatch.setattr(field_data, "MAX_OPEN_SHARDS", 2)
    data = FieldDataset(tmp_path, split="")
    assert open_files() == before
    for index in [0, 2, 4, 6, 1, 7, 3]:  # every shard, some twice
        torch.testing.assert_close(data[index], torch.from_numpy(everything[index]))
        assert open_files() - before <= 2


def test_a_field_dataset_reads_a_big_endian_file(tmp_path):
    """A file of big-endian floats (as netCDF classic stores them) gave its pairs, and its
    samples raised PyTorch's "byte order different from the native byte order"."""
    (tmp_path / "train").mkdir()
    grid = Grid((16, 8), (0.0, 0.0), (1.0, 2.0))
    states = np.random.default_rng(3).standard_normal((2, 4, 16, 8)).astype(">f4")
    ds = io.samples_dataset(states, np.linspace(0, 1, 4), grid, np.arange(2),
                            {"nu": np.full(2, 0.1)}, attrs={"pde": "heat2d"})
    with h5py.File(io.write_dataset(ds, tmp_path / "train" / "shard-00000.h5")) as f:
        assert f["u"].dtype == np.dtype(">f4")
    for dtype in (torch.float32, torch.float64):
        sample = FieldDataset(tmp_path, "train", dtype=dtype)[1]
        assert sample.dtype == dtype
        np.testing.assert_array_equal(sample.numpy(), states[1])
        first, second = FieldDataset(tmp_path, "train", pairs=1, dtype=dtype)[4]  # t = 1
        np.testing.assert_array_equal(torch.stack([first, second]).numpy(), states[1, 1:3])


def test_pairs_of_a_big_endian_file_chunked_per_state_come_in_the_asked_dtype(tmp_path):
    """A file chunked one state per chunk (as PDEBench's are) reads a pair's two states alone;
    those states, big-endian floats, must still come back in the asked dtype."""
    states = np.random.default_rng(3).standard_normal((2, 4, 16, 8)).astype(">f4")
    with h5py.File(tmp_path / "states.h5", "w") as f:
        f.create_dataset("u", data=states, chunks=(1, 1, 16, 8))
    for dtype in (torch.float32, torch.float64):
        first, second = FieldDataset(tmp_path / "states.h5", pairs=1, dtype=dtype)[4]  # t = 1
        assert first.dtype is second.dtype is dtype
        np.testing.assert_array_equal(torch.stack([first, second]).numpy(), states[1, 1:3])


def test_a_field_dataset_refuses_a_variable_without_a_space_axis(tmp_path):
    path = tmp_path / "series.h5"
    with h5py.File(path, "w") as f:  # (sample, time), no axis named
        f.create_dataset("u", data=np.zeros((2, 4), dtype="f4"))
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: variable 'u' has dims (?, ?); FieldDataset reads (sample, time, *space) "
            "fields")):
        FieldDataset(path)


def test_pair_items_read_no_hdf5_metadata(tmp_path, monkeypatch):
    """A shard's layout is read once, when the dataset is made: reading its chunk shape (an
    HDF5 call) for every pair, with the checks and NumPy searches around it, left shuffled
    pairs at 0.6-0.7x the rate of a tuned h5py reader of the same files."""
    _, states, _ = sample_file(tmp_path, 3)
    pairs = FieldDataset(tmp_path, split="", pairs=2, dtype="float64")
    chunks = []
    monkeypatch.setattr(h5py.Dataset, "chunks", property(lambda self: chunks.append(self)))
    for index in np.random.default_rng(0).permutation(len(pairs)):  # 3 samples x 2 pairs
        sample, t = divmod(int(index), 2)
        u_t, u_next = pairs[index]
        assert u_t.dtype is u_next.dtype is torch.float64
        np.testing.assert_array_equal(u_t.numpy(), states[sample, t])
        np.testing.assert_array_equal(u_next.numpy(), states[sample, t + 2])
    assert not chunks


def test_chunks_of_whole_trajectories_are_read_past_hdf5_s_chunk_cache(tmp_path):
    """An item reads whole chunks, so HDF5's chunk cache only copied each once more and held
    the copy (up to 8 MiB per open shard with HDF5 2.0); chunks of a few states still use it."""
    _, states, _ = sample_file(tmp_path, 3)
    with h5py.File(tmp_path / "steps.h5", "w") as f:  # a chunk of two states
        f.create_dataset("u", data=states, chunks=(1, 2, 16, 8))

    def cache_bytes(data: FieldDataset) -> int:  # (slots, bytes, eviction weight)
        return data._dataset(0).id.get_access_plist().get_chunk_cache()[1]

    for pairs in (None, 1):
        data = FieldDataset(tmp_path / "shard-00000.h5", pairs=pairs)
        assert cache_bytes(data) == 0
        np.testing.assert_array_equal(data[-1][0].numpy(), states[2, -2 if pairs else 0])
    assert cache_bytes(FieldDataset(tmp_path / "steps.h5", pairs=1)) > 0

def assert_cf(ds):
    """CF long_name and units on every variable and coordinate; fields (sample, time, space)."""
    for name, variable in ds.variables.items():
        assert variable.attrs.get("long_name") and variable.attrs.get("units"), name
    for field in ds.data_vars.values():
        order = [d for d in ("sample", "time", "x", "y", "z") if d in field.dims]
        assert list(field.dims[: len(order)]) == order


def test_outputs_carry_cf_attributes_and_one_dim_order(tmp_path):
    path, _, grid = sample_file(tmp_path)
    ds = xr.open_dataset(path)
    assert_cf(ds)
    assert (ds["time"].units, ds["x"].units, ds["nu"].units) == ("s", "m", "m2 s-1")
    trajectory = io.trajectory_dataset(np.zeros((3, 16, 8)), np.arange(3.0), grid)
    assert_cf(trajectory)
    swapped = xr.Dataset({"u": (("x", "sample", "time"), np.zeros((2, 3, 4)))})
    assert io.with_cf_metadata(swapped)["u"].dims == ("sample", "time", "x")
    with pytest.raises(ValueError, match="no CF long_name/units for 'pressure'; pass them"):
        io.with_cf_metadata(swapped.assign(pressure=swapped["u"]))
    named = io.with_cf_metadata(swapped.assign(p=swapped["u"]), {"p": ("pressure", "Pa")})
    assert named["p"].attrs == {"long_name": "pressure", "units": "Pa"}


def test_open_dataset_attrs_hold_only_what_every_shard_agrees_on(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    for shard, nu in enumerate((0.1, 0.2)):
        ds = io.samples_dataset(np.zeros((2, 3, 8)), np.arange(3.0), grid,
                                np.arange(2) + 2 * shard, {"nu": np.full(2, nu)},
                                attrs={"pde": "heat1d", "solver_nu": nu})
        io.write_dataset(ds, tmp_path / f"shard-{shard:05d}.h5")
    joined = io.open_dataset(tmp_path)
    assert joined.attrs["pde"] == "heat1d" and "solver_nu" not in joined.attrs
    np.testing.assert_array_equal(joined["nu"], [0.1, 0.1, 0.2, 0.2])


def one_d_shard(folder, name, pde="heat1d", cells=8, upper=1.0, t_end=2.0, nu=None):
    grid = Grid((cells,), (0.0,), (upper,))
    ds = io.samples_dataset(np.zeros((2, 3, cells)), np.linspace(0.0, t_end, 3), grid,
                            np.arange(2), None if nu is None else {"nu": np.full(2, nu)},
                            attrs={"pde": pde})
    io.write_dataset(ds, folder / name)


@pytest.mark.parametrize(("other", "difference"), [
    ({"pde": "burgers1d_pdebench"}, "pde 'burgers1d_pdebench', shard shard-00000.h5 'heat1d'"),
    ({"cells": 4}, "4 x cells, shard shard-00000.h5 8"),
    ({"upper": 2.0}, "x from 0.125 to 1.875, shard shard-00000.h5 from 0.0625 to 0.9375"),
    ({"t_end": 1.0}, "time from 0 to 1, shard shard-00000.h5 from 0 to 2"),
    ({"nu": 0.1}, r"per-sample coordinates \(nu\), shard shard-00000.h5 \(\)"),
])
def test_shards_of_another_pde_grid_time_axis_or_parameters_are_refused(tmp_path, other,
                                                                       difference):
    """A folder pooling shards of several generations was joined with NaN padding (or mixed
    by FieldDataset); now both name the two shards and what differs."""
    one_d_shard(tmp_path, "shard-00000.h5")
    one_d_shard(tmp_path, "shard-00001.h5")
    assert io.open_dataset(tmp_path).sizes == {"sample": 4, "time": 3, "x": 8}
    one_d_shard(tmp_path, "shard-00002.h5", **other)
    message = (re.escape(f"'{tmp_path}': shard shard-00002.h5 has ") + difference
               + ": a dataset's shards share one PDE, grid")
    with pytest.raises(ValueError, match=message):
        io.open_dataset(tmp_path)
    with pytest.raises(ValueError, match=message):
        FieldDataset(tmp_path, split=None, pairs=1)


def fields_dataset(path, fields, listed):
    """Shards at ``path`` of ``fields`` [(name, dtype), ...], one per shard: in split
    ``train`` with a manifest that lists them where ``listed``, else in ``path`` itself."""
    import json

    folder = path / "train" if listed else path
    folder.mkdir(parents=True)
    grid = Grid((8,), (0.0,), (1.0,))
    for k, (name, dtype) in enumerate(fields):
        ds = io.samples_dataset(np.zeros((2, 3, 8), dtype), np.linspace(0.0, 2.0, 3), grid,
                                np.arange(2 * k, 2 * k + 2), name=name, attrs={"pde": "heat1d"},
                                metadata={"v": ("solution v", "1")})
        io.write_dataset(ds, folder / f"shard-{k:05d}.h5")
    if listed:
        names = [f"shard-{k:05d}.h5" for k in range(len(fields))]
        (path / "dataset.json").write_text(json.dumps({"splits": {"train": names}}))
    return folder


@pytest.mark.parametrize("listed", [False, True])
def test_a_shard_of_other_fields_is_refused_even_where_a_manifest_lists_it(tmp_path, listed):
    """A shard whose field was named otherwise was joined with its samples' u all NaN and a
    variable v that was NaN everywhere else; FieldDataset refused it."""
    split = "train" if listed else None
    same = fields_dataset(tmp_path / "same", [("u", "f4")] * 2, listed)
    assert list(io.open_dataset(same.parent if listed else same, split).data_vars) == ["u"]
    for case, (field, described) in enumerate([(("v", "f4"), "v(sample, time, x) float32"),
                                               (("u", "f8"), "u(sample, time, x) float64")]):
        folder = fields_dataset(tmp_path / str(case), [("u", "f4"), ("u", "f4"), field], listed)
        with pytest.raises(ValueError, match=re.escape(
                f"'{folder}': shard shard-00002.h5 has data variables {described}, shard "
                "shard-00000.h5 u(sample, time, x) float32: a dataset's shards hold the same "
                "fields")):
            io.open_dataset(folder.parent if listed else folder, split)


def test_write_pdebench_refuses_a_parameter_that_varies_over_the_samples(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    ds = io.samples_dataset(np.zeros((4, 3, 8)), np.arange(3.0), grid, np.arange(4),
                            {"nu": np.array([0.1, 0.1, 0.2, 0.2])})
    out = tmp_path / "1D_heat.hdf5"
    with pytest.raises(ValueError, match=r"'nu' takes 2 values over the samples \(0.1, 0.2\); "
                       "a PDEBench file holds one value per parameter: select one first"):
        io.write_pdebench(ds, out)
    assert not list(tmp_path.iterdir())
    io.write_pdebench(ds.isel(sample=ds["nu"] == 0.2), out)
    with h5py.File(out) as f:
        assert f.attrs["nu"] == 0.2 and f["tensor"].shape == (2, 3, 8)


def test_read_pdebench_carries_each_seed_groups_config_into_sample_coords(tmp_path):
    path = tmp_path / "2D_rdb_NA_NA.h5"
    with h5py.File(path, "w") as f:
        for seed, radius in ((3, 0.4), (4, 0.6)):
            group = f.create_group(f"{seed:04d}")
            group["data"] = np.zeros((2, 5, 1))
            group["grid/x"] = np.linspace(0, 1, 5)
            group["grid/t"] = np.linspace(0, 1, 2)
            config = f"name: rdb\nsim:\n  seed: {seed}\n  dam_radius: {radius}\n  x: 1.0\n"
            if seed == 3:
                group.attrs["config"] = config
            else:  # the file-level spelling of PDEBench's diffusion-sorption generator
                f.attrs[f"{seed:04d}/config"] = config
        f.attrs["pde"] = "swe"
    ds = io.read_pdebench(path)
    np.testing.assert_array_equal(ds["seed"], [3, 4])
    np.testing.assert_allclose(ds["dam_radius"], [0.4, 0.6])
    np.testing.assert_allclose(ds["config.sim.x"], [1.0, 1.0])  # "x" is the space coordinate
    assert "dam_radius: 0.6" in ds["config"].values[1]
    assert ds["seed"].dims == ("sample",) and ds.attrs == {"pde": "swe"}
    assert_cf(ds)


def stacked(f, shape=(2, 6, 16), t=6, x=16):
    f["tensor"] = np.zeros(shape)
    f["t-coordinate"] = np.arange(t) * 0.1
    if x:
        f["x-coordinate"] = np.linspace(0, 1, x)


def seed_groups(f, shapes=((6, 16, 1), (6, 16, 1)), grid=True, t=6):
    for seed, shape in enumerate(shapes):
        group = f.create_group(f"{seed:04d}")
        group["data"] = np.zeros(shape)
        if grid:
            group["grid/x"] = np.linspace(0, 1, 16)
            group["grid/t"] = np.arange(t) * 0.1


@pytest.mark.parametrize(("write", "message"), [
    (lambda f: stacked(f, t=4), "'t-coordinate' has 4 entries for the 6 saved states of "
     "'tensor' (2, 6, 16) (T or T + 1 are read)"),
    (lambda f: stacked(f, x=10), "'x-coordinate' has 10 entries for axis 2 of 'tensor' "
     "(2, 6, 16), of length 16"),
    (lambda f: stacked(f, shape=(2, 6)), "'tensor' of shape (2, 6) has 2 axes, and the file 1 "
     "space coordinates (x-coordinate): the stacked layout is 'tensor' [N, T, X] with"),
    (lambda f: stacked(f, x=0), "'tensor' of shape (2, 6, 16) has 3 axes, and the file 0 "
     "space coordinates (none)"),  # its X axis was read as 16 channels
    (lambda f: seed_groups(f, shapes=((6, 16, 1), (6, 8, 1))), "seed group '0001' has 'data' "
     "of shape (6, 8, 1), group '0000' (6, 16, 1): a file's seed groups share one grid"),
    (lambda f: seed_groups(f, grid=False), "seed group '0000' has 'data' and no 'grid/t'"),
    (lambda f: seed_groups(f, t=5), "'grid/t' has 5 entries for axis 0 of '0000/data' "
     "(6, 16, 1), of length 6"),
])
def test_read_pdebench_names_the_file_and_dataset_of_a_malformed_layout(tmp_path, write,
                                                                          message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        write(f)
    with pytest.raises(ValueError, match=re.escape(f"'{path}': {message}")):
        io.read_pdebench(path)


@pytest.mark.parametrize(("write", "message"), [
    (lambda f: f.__setitem__("x-coordinate", 1.0), "'x-coordinate' is of shape ()"),
    (lambda f: f.__setitem__("t-coordinate", np.array([b"a", b"b", b"c"])),
     "'t-coordinate' is of dtype |S1"),
    (lambda f: f.create_group("x-coordinate"), "'x-coordinate' is a group"),
    (lambda f: f.__setitem__("sample", np.array([b"a", b"b"])), "'sample' is of dtype |S1"),
    (lambda f: f.__setitem__("0000/grid/x", 1.0), "'0000/grid/x' is of shape ()"),
])
def test_read_pdebench_names_a_coordinate_that_is_not_a_vector_of_numbers(tmp_path, write,
                                                                         message):
    """A scalar x-coordinate gave a bare TypeError (len() of unsized object), and a string
    t-coordinate a ValueError naming neither the file nor the dataset."""
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        if "0000" in message:
            f["0000/data"] = np.zeros((3, 4, 1))
            f["0000/grid/t"] = np.arange(3.0)
        else:
            f["tensor"] = np.zeros((2, 3, 4))
            for name, values in (("x-coordinate", np.arange(4.0)), ("t-coordinate",
                                                                    np.arange(3.0))):
                if name not in message:
                    f[name] = values
        write(f)
    with pytest.raises(ValueError, match=re.escape(f"'{path}': {message}; expected a 1-D array "
                                                   "of numbers, one per entry of its axis")):
        io.read_pdebench(path)


def test_seed_groups_carry_string_coordinates_through_any_number_of_round_trips(tmp_path):
    """The scheme went into each group's config and came back only inside the config text;
    written again, it was gone for good."""
    grid = Grid((8,), (0.0,), (1.0,))
    ds = io.samples_dataset(np.random.default_rng(2).standard_normal((3, 4, 8)),
                            np.linspace(0, 1, 4), grid, [4, 5, 6],
                            {"nu": np.array([0.01, 0.1, 0.01]),
                             "scheme": np.array(["ssp_rk3", "imex", "ssp_rk3"])},
                            attrs={"pde": "burgers1d_pdebench", "seed": 7})
    first = io.read_pdebench(io.write_pdebench(ds, tmp_path / "a.h5", layout="seed_groups"))
    np.testing.assert_array_equal(first["scheme"], ["ssp_rk3", "imex", "ssp_rk3"])
    np.testing.assert_array_equal(first["nu"], [0.01, 0.1, 0.01])
    assert first["scheme"].dims == ("sample",)
    second = io.read_pdebench(io.write_pdebench(first, tmp_path / "b.h5",
                                                layout="seed_groups"))
    xr.testing.assert_identical(second, first)


def test_pdebench_files_call_the_sample_number_sample_and_older_ones_still_read(tmp_path):
    """The sample number j was written as a seed, next to the spec's seed attribute (a sample
    draws from default_rng([seed, j])): reseeding with it gave another initial condition."""
    grid = Grid((8,), (0.0,), (1.0,))
    states = np.random.default_rng(3).standard_normal((2, 4, 8)).astype(np.float32)
    ds = io.samples_dataset(states, np.linspace(0, 1, 4), grid, [3, 9],
                            {"nu": np.array([0.1, 0.2])}, attrs={"pde": "heat1d", "seed": 7})
    stacked_file = io.write_pdebench(ds.isel(sample=[0]), tmp_path / "stacked.h5")
    groups = io.write_pdebench(ds, tmp_path / "groups.h5", layout="seed_groups")
    with h5py.File(stacked_file) as f:
        assert "seed" not in f and f["sample"][...].tolist() == [3] and f.attrs["seed"] == 7
    with h5py.File(groups) as f:
        assert yaml.safe_load(f["0009"].attrs["config"]) == {"nu": 0.2}
    assert io.read_pdebench(groups)["sample"].values.tolist() == [3, 9]
    assert FieldDataset(stacked_file, variable="tensor").sample_of(0)["sample"] == 3
    with h5py.File(stacked_file, "a") as f:  # as physml wrote it before
        f.move("sample", "seed")
    back = io.read_pdebench(stacked_file)
    assert back["sample"].values.tolist() == [3] and "seed" not in back.coords


def test_write_pdebench_names_the_variables_a_missing_one_could_be(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    ds = io.samples_dataset(np.zeros((1, 2, 8)), np.arange(2.0), grid, np.arange(1))
    with pytest.raises(ValueError, match=r"^variable='v' is no variable of the dataset; "
                       "allowed: u$"):
        io.write_pdebench(ds, tmp_path / "x.h5", variable="v")


def test_write_pdebench_refuses_mesh_and_steady_fields_in_one_message(tmp_path):
    from physml.solvers.mesh import Mesh

    mesh = Mesh(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), [[0, 1, 2], [0, 2, 3]])
    on_mesh = io.mesh_dataset(mesh, {"u": np.zeros((2, 3, 4))}, times=[0.0, 0.5, 1.0],
                              samples=np.arange(2))
    steady_mesh = io.mesh_dataset(mesh, {"u": np.zeros((2, 4))}, samples=np.arange(2))
    steady_grid = xr.Dataset({"u": (("sample", "x"), np.zeros((2, 8)))},
                             coords={"sample": np.arange(2), "x": np.linspace(0, 1, 8)})
    for ds, dims in ((on_mesh, "sample, time, node"), (steady_mesh, "sample, node"),
                     (steady_grid, "sample, x")):
        for layout in (None, "stacked", "seed_groups"):
            with pytest.raises(ValueError, match=re.escape(
                    "PDEBench layouts hold grid fields (sample, time, x[, y[, z]]); 'u' has dims "
                    f"({dims}): a mesh dataset (dims with node) or a steady one (no time) has no "
                    "PDEBench layout")):
                io.write_pdebench(ds, tmp_path / "x.h5", layout=layout)
    assert not (tmp_path / "x.h5").exists()


def test_mesh_fields_round_trip_with_topology_and_tags(tmp_path):
    from physml.solvers.mesh import Mesh

    points = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    mesh = Mesh(points, [[0, 1, 2], [0, 2, 3]], cell_tags=[1, 1], facets=[[0, 1], [1, 2]],
                facet_tags=[2, 3], tag_names={"domain": 1, "bottom": 2, "right": 3})
    u = np.arange(12.0).reshape(3, 4)
    ds = io.mesh_dataset(mesh, {"u": u}, times=[0.0, 0.5, 1.0], attrs={"pde": "heat"})
    path = io.write_dataset(ds, tmp_path / "mesh.h5")
    back, fields = io.read_mesh_dataset(path)
    np.testing.assert_array_equal(back.points, mesh.points)
    np.testing.assert_array_equal(back.cells, mesh.cells)
    np.testing.assert_array_equal(back.facets, mesh.facets)
    assert back.tag_names == mesh.tag_names and list(back.boundary_vertices("right")) == [1, 2]
    assert fields["u"].dims == ("time", "node") and fields.attrs["pde"] == "heat"
    np.testing.assert_array_equal(fields["u"].values, u)
    opened = xr.open_dataset(path)  # plain xarray and h5py read it too, UGRID-style
    assert opened["mesh"].attrs["face_node_connectivity"] == "cell_nodes"
    assert opened["u"].attrs["location"] == "node"
    with h5py.File(path) as f:
        assert f["cell_nodes"].shape == (2, 3) and f["node_x"].shape == (4,)
    with pytest.raises(ValueError, match=r"field 'v' has shape \(3,\); expected \(3, 4\)"):
        io.mesh_dataset(mesh, {"v": np.zeros(3)}, times=[0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="holds no mesh topology"):
        io.mesh_of(xr.Dataset({"u": ("node", np.zeros(4))}))


def _ugrid_attrs(path):
    """Every variable's attributes as h5py reads them, less the netCDF/HDF5 bookkeeping."""
    def plain(value):
        value = value.decode() if isinstance(value, bytes) else value
        return value.tolist() if isinstance(value, np.ndarray) else value

    with h5py.File(path) as f:
        return {name: {key: plain(value) for key, value in f[name].attrs.items()
                       if not key.startswith("_Netcdf4") and key not in
                       ("CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "_FillValue")}
                for name in f}


def test_a_tetrahedral_mesh_file_has_what_ugrid_requires_of_a_3d_mesh(tmp_path):
    """UGRID 1.0, fully 3D unstructured mesh: the mesh variable (cf_role mesh_topology) needs
    topology_dimension 3, node_coordinates, volume_node_connectivity and volume_shape_type. The
    connectivity (cf_role volume_node_connectivity) is nVolumes x MaxNumNodesPerVolume, its
    indexing given by start_index on it, _FillValue only where a volume has fewer corners; the
    shape variable is a flag variable, one flag per volume; data variables name their mesh and
    location (node, volume). The file lacked volume_shape_type and its variable, the cf_role and
    start_index of the connectivity, and mesh/location on the per-cell tags."""
    from physml.solvers.mesh import Mesh

    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                       [1.0, 1.0, 1.0]])
    cells = np.array([[0, 1, 2, 3], [1, 2, 4, 3]])
    mesh = Mesh(points, cells, cell_tags=[5, 6])
    u = np.arange(5.0)
    path = io.write_dataset(io.mesh_dataset(mesh, {"u": u}), tmp_path / "tets.h5")
    with xr.open_dataset(path) as ds:
        topology = ds["mesh"].attrs
        assert topology["cf_role"] == "mesh_topology" and topology["topology_dimension"] == 3
        coordinates = topology["node_coordinates"].split()
        assert len(coordinates) == 3
        node_dim = ds[coordinates[0]].dims
        assert all(ds[name].dims == node_dim for name in coordinates)
        np.testing.assert_array_equal(np.stack([ds[name].values for name in coordinates], 1),
                                      points)
        connectivity = ds[topology["volume_node_connectivity"]]
        assert connectivity.attrs["cf_role"] == "volume_node_connectivity"
        assert "volume_dimension" not in topology  # so the volume dimension comes first
        assert connectivity.shape == (2, 4) and connectivity.dtype.kind == "i"  # not masked
        start = connectivity.attrs["start_index"]
        assert start in (0, 1)
        np.testing.assert_array_equal(connectivity.values - start, cells)
        volume_dim = connectivity.dims[0]
        shapes = ds[topology["volume_shape_type"]]
        assert shapes.dims == (volume_dim,) and shapes.attrs["cf_role"] == "volume_shape_type"
        meanings = dict(zip(np.atleast_1d(shapes.attrs["flag_values"]).tolist(),
                            shapes.attrs["flag_meanings"].split(), strict=True))
        assert [meanings[flag] for flag in shapes.values.tolist()] == ["tetrahedron"] * 2
        for name, location, dims in (("u", "node", node_dim), ("cell_tags", "volume",
                                                              (volume_dim,))):
            assert ds[name].attrs["mesh"] == "mesh" and ds[name].attrs["location"] == location
            assert ds[name].dims == dims
        np.testing.assert_array_equal(ds["u"].values, u)
        np.testing.assert_array_equal(ds["cell_tags"].values, [5, 6])
    with h5py.File(path) as f:  # h5py sees the same attributes
        assert "_FillValue" not in f["cell_nodes"].attrs  # every volume has its 4 corners
    attrs = _ugrid_attrs(path)
    assert attrs["cell_nodes"]["cf_role"] == "volume_node_connectivity"
    assert attrs["mesh"]["volume_shape_type"] == "cell_shape"
    assert "face_node_connectivity" not in attrs["mesh"]
    back, fields = io.read_mesh_dataset(path)
    np.testing.assert_array_equal(back.cells, cells)
    assert list(fields.data_vars) == ["u"]


def test_a_triangle_mesh_file_keeps_its_ugrid_attributes(tmp_path):
    """Every attribute a triangle mesh file had is still written with its value; the
    connectivity gained its cf_role and start_index and the cell tags their mesh and location,
    and no variable came or went."""
    from physml.solvers.mesh import Mesh

    mesh = Mesh(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
                [[0, 1, 2], [0, 2, 3]], cell_tags=[1, 1], facets=[[0, 1], [1, 2]],
                facet_tags=[2, 3], tag_names={"domain": 1, "bottom": 2, "right": 3})
    path = io.write_dataset(io.mesh_dataset(mesh, {"u": np.zeros(4)}), tmp_path / "tri.h5")
    before = {  # as written before tetrahedral files followed UGRID
        "node_x": {"long_name": "x coordinate of the vertex", "units": "m"},
        "node_y": {"long_name": "y coordinate of the vertex", "units": "m"},
        "cell_nodes": {"long_name": "vertex indices of each cell (0-based)", "units": "1"},
        "cell_tags": {"long_name": "physical tag of each cell", "units": "1"},
        "facet_nodes": {"long_name": "vertex indices of each tagged boundary facet (0-based)",
                        "units": "1"},
        "facet_tags": {"long_name": "physical tag of each boundary facet", "units": "1"},
        "mesh": {"cf_role": "mesh_topology", "topology_dimension": [2],
                 "node_coordinates": "node_x node_y", "face_node_connectivity": "cell_nodes",
                 "start_index": [0], "tag_names": '{"domain": 1, "bottom": 2, "right": 3}',
                 "long_name": "mesh topology", "units": "1"},
        "u": {"mesh": "mesh", "location": "node", "long_name": "solution u", "units": "1"},
        "node": {"long_name": "vertex index", "units": "1"},
        "cell": {"long_name": "cell index", "units": "1"},
        "corner": {"long_name": "vertex slot within a cell", "units": "1"},
        "facet": {"long_name": "tagged boundary facet index", "units": "1"},
        "facet_corner": {"long_name": "vertex slot within a facet", "units": "1"},
    }
    added = {"cell_nodes": {"cf_role": "face_node_connectivity", "start_index": [0]},
             "cell_tags": {"mesh": "mesh", "location": "face"}}
    assert _ugrid_attrs(path) == {name: attrs | added.get(name, {})
                                  for name, attrs in before.items()}


def test_a_field_dataset_refuses_a_dtype_or_pairs_of_another_kind(tmp_path):
    grid = Grid((8,), (0.0,), (1.0,))
    ds = io.samples_dataset(np.zeros((3, 4, 8)), np.arange(4.0), grid, np.arange(3))
    path = io.write_dataset(ds, tmp_path / "field.h5")
    for dtype in (torch.float16, torch.bfloat16, torch.int32, "double"):
        with pytest.raises(ValueError, match=r"dtype=.* is not supported; allowed: float32, "
                                             "float64"):
            FieldDataset(path, dtype=dtype)
    with pytest.raises(ValueError, match="pairs=1.5; pass a whole number of steps"):
        FieldDataset(path, pairs=1.5)
    for pairs in (2, np.int64(2), np.array(2), torch.tensor(2)):
        assert len(FieldDataset(path, pairs=pairs)) == 6  # 3 samples x (4 - 2) pairs


def test_a_field_dataset_takes_its_dtype_named_as_the_solvers_take_it(tmp_path):
    """Only torch dtypes were taken, and float16 passed although the message listed float32
    and float64."""
    import warp as wp

    grid = Grid((8,), (0.0,), (1.0,))
    ds = io.samples_dataset(np.zeros((3, 4, 8)), np.arange(4.0), grid, np.arange(3))
    path = io.write_dataset(ds, tmp_path / "field.h5")
    for dtype in ("float64", np.float64, wp.float64, torch.float64):
        assert FieldDataset(path, dtype=dtype)[0].dtype is torch.float64
    assert repr(FieldDataset(path, pairs=1, dtype="float32")) == (
        "FieldDataset(variable='u', samples=3, times=4, pairs=1, shards=1, dtype=torch.float32)")


def test_a_comparison_keeps_a_solver_grid_s_units_unless_told_its_axes_are_an_evaluation_grid():
    """The MoE kinds compare on a solver's grid (model time in s, cell centres in m); the PINN
    kinds pass their dimensionless evaluation axes."""
    from physml.cases.run_folder import comparison_dataset, evaluation_axes_metadata

    coords = {"sample": np.arange(2), "time": np.linspace(0, 1, 3), "x": np.linspace(0, 1, 4)}
    values = np.zeros((2, 3, 4))
    solver = comparison_dataset(values, values, coords, {})
    assert solver["time"].attrs["units"] == "s" and solver["x"].attrs["units"] == "m"
    pinn = comparison_dataset(values, values, coords, {}, evaluation_axes_metadata(coords))
    assert pinn["x"].attrs == {"long_name": "x (evaluation grid)", "units": "1"}
    assert pinn["sample"].attrs == solver["sample"].attrs


GRID_1D = Grid((8,), (0.0,), (1.0,))
TIMES = np.arange(3.0)


@pytest.mark.parametrize("call, message", [
    (lambda: io.trajectory_dataset(np.zeros((2, 3, 8)), TIMES, GRID_1D),
     "states has shape (2, 3, 8); expected (n_times, 8) with n_times = len(times) = 3; for a "
     "batch use samples_dataset"),
    (lambda: io.trajectory_dataset(np.zeros((8, 3)), TIMES, GRID_1D),
     "states has shape (8, 3); expected (n_times, 8)"),
    (lambda: io.trajectory_dataset(np.zeros((3, 8)), None, GRID_1D),
     "times is None; expected a 1-D array, one entry per saved state"),
    (lambda: io.trajectory_dataset(np.zeros((3, 8)), TIMES, None),
     "grid is a NoneType; expected a physml.solvers.Grid"),
    (lambda: io.samples_dataset(np.zeros((1, 3, 8)), TIMES, GRID_1D, [0, 1]),
     "states has shape (1, 3, 8); expected (n_samples, n_times, 8) with n_samples = "
     "len(seeds) = 2, n_times = len(times) = 3"),
    (lambda: io.samples_dataset(np.zeros((1, 3, 8)), TIMES, GRID_1D, None),
     "seeds is None; expected a 1-D array, one entry per sample"),
    (lambda: io.samples_dataset(np.zeros((1, 3, 8)), TIMES, GRID_1D, [0], {"nu": [0.1, 0.2]}),
     "sample_coords['nu'] has shape (2,); expected (n_samples,) with n_samples = len(seeds) = 1"),
    (lambda: io.samples_dataset(np.zeros((2, 3, 8)), TIMES, GRID_1D, [101.7, 7.9]),
     "seeds must be whole numbers, one per sample; got [101.7, 7.9]"),  # were cut to 101, 7
    (lambda: io.samples_dataset(np.zeros((2, 3, 8)), TIMES, GRID_1D, [3, 3]),
     "seeds repeat; each sample's seed is its coordinate"),
    (lambda: io.trajectory_dataset(np.zeros((3, 8)), [0.0, 2.0, 1.0], GRID_1D),
     "times must be finite and increasing, one per saved state; got [0.0, 2.0, 1.0]"),
])
def test_states_seeds_and_coordinates_are_checked_against_the_grid_and_times(call, message):
    """A batch or transposed states, too many seeds or a per-sample coordinate of the wrong
    length gave xarray's messages (one holding the array's repr); None for grid, times or seeds
    an AttributeError or TypeError."""
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_write_dataset_and_mesh_dataset_name_a_wrong_argument(tmp_path):
    """A folder as the path named the hidden temporary file (IsADirectoryError); an array for
    ``ds`` or ``fields`` failed on a missing ``to_netcdf``/``items``."""
    from physml.solvers.mesh import Mesh

    ds = io.trajectory_dataset(np.zeros((3, 8)), TIMES, GRID_1D)
    with pytest.raises(ValueError, match=re.escape(f"'{tmp_path}' is a folder; give the path of "
                                                   "the file to write")):
        io.write_dataset(ds, tmp_path)
    with pytest.raises(ValueError, match="ds is a ndarray; expected an xarray.Dataset"):
        io.write_dataset(np.zeros((3, 8)), tmp_path / "x.h5")
    mesh = Mesh(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), [[0, 1, 2]])
    with pytest.raises(ValueError, match="fields is a ndarray; expected a mapping of field names"):
        io.mesh_dataset(mesh, np.ones(3))
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_hdf5_is_named_by_every_reader(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not HDF5")
    for read in (io.read_pdebench, io.open_dataset, FieldDataset):
        with pytest.raises(ValueError, match=re.escape(f"'{path}' is not an HDF5 file (file "
                                                       "signature not found)")):
            read(path)


def test_a_damaged_shard_is_named_with_how_to_write_it_again(tmp_path):
    import json

    (tmp_path / "d" / "train").mkdir(parents=True)
    for shard in ("shard-00000.h5", "shard-00001.h5"):
        sample_file(tmp_path / "d" / "train", 2, shard)
    (tmp_path / "d" / "spec.yaml").write_text("pde: heat2d\n")
    manifest = tmp_path / "d" / "dataset.json"
    manifest.write_text(json.dumps({"splits": {"train": ["shard-00000.h5", "shard-00001.h5"]}}))
    damaged = tmp_path / "d" / "train" / "shard-00001.h5"
    damaged.write_bytes(damaged.read_bytes()[:500])
    named = re.escape(f"'{damaged}' is a damaged or truncated HDF5 file (truncated file: ")
    again = re.escape(f"`physml datasets generate '{tmp_path / 'd' / 'spec.yaml'}' --out "
                      f"'{tmp_path / 'd'}'` again: it writes damaged shards again")
    complete = (f"{named}.*; delete '{re.escape(str(manifest))}' \\(the mark of a complete "
                f"dataset\\) and run {again}")
    for read in (io.open_dataset, FieldDataset, lambda folder, split: io.read_pdebench(damaged)):
        with pytest.raises(ValueError, match=complete):
            read(tmp_path / "d", "train")
    manifest.unlink()  # an unfinished generation: resuming it writes the shard again
    with pytest.raises(ValueError, match=f"{named}.*\\); run {again}"):
        io.open_dataset(tmp_path / "d", "train", allow_partial=True)


def _two_shards_the_second_damaged(tmp_path):
    """A complete split of two shards of two samples whose second shard has its first chunk
    (sample 2 of the split) overwritten: (that shard, the manifest, its states)."""
    import json

    (tmp_path / "d" / "train").mkdir(parents=True)
    for shard in ("shard-00000.h5", "shard-00001.h5"):
        _, states, _ = sample_file(tmp_path / "d" / "train", 2, shard)
    (tmp_path / "d" / "spec.yaml").write_text("pde: heat2d\n")
    manifest = tmp_path / "d" / "dataset.json"
    manifest.write_text(json.dumps({"splits": {"train": ["shard-00000.h5", "shard-00001.h5"]}}))
    damaged = tmp_path / "d" / "train" / "shard-00001.h5"
    with h5py.File(damaged) as f:
        chunk = f["u"].id.get_chunk_info(0)
    with open(damaged, "r+b") as file:
        file.seek(chunk.byte_offset + 10)
        file.write(b"\xff" * 64)
    return damaged, manifest, states


HDF5_REASON = r"(filter returned failure during read|inflate\(\) failed)"
"""HDF5's reason for a chunk that does not decompress, in the words of its versions."""


def test_a_shard_whose_data_do_not_decompress_is_named_with_how_to_write_it_again(tmp_path):
    """A shard with a whole header and a damaged chunk opened, and reading that chunk gave a
    bare OSError (filter returned failure during read) naming no file."""
    damaged, manifest, states = _two_shards_the_second_damaged(tmp_path)
    message = re.escape(f"'{damaged}' is damaged: HDF5 cannot read its data (")
    message += HDF5_REASON + re.escape(
        f"); delete '{damaged}' and '{manifest}' (the mark of a complete dataset) and run "
        f"`physml datasets generate '{tmp_path / 'd' / 'spec.yaml'}' --out '{tmp_path / 'd'}'` "
        "again: it writes the missing shard and keeps the others")
    for pairs in (None, 1):
        data = FieldDataset(tmp_path / "d", "train", pairs=pairs)
        with pytest.raises(ValueError, match=message):
            data[2 if pairs is None else 6]
        item, state = (data[3], states[1]) if pairs is None else (data[9][0], states[1, 0])
        np.testing.assert_array_equal(item.numpy(), state)  # the shard's other chunk


def test_open_dataset_names_a_shard_whose_data_do_not_decompress_when_read(tmp_path):
    """Opened lazily, a shard with a damaged chunk opened, and reading that chunk through
    xarray (values, load, compute) gave h5py's bare OSError naming no file."""
    pytest.importorskip("dask")  # without it, shards are read whole when opened
    damaged, manifest, states = _two_shards_the_second_damaged(tmp_path)
    named = (re.escape(f"'{damaged}' is damaged: HDF5 cannot read its data (") + HDF5_REASON
             + re.escape(")"))
    message = named + re.escape(
        f"; delete '{damaged}' and '{manifest}' (the mark of a complete dataset) and run "
        f"`physml datasets generate '{tmp_path / 'd' / 'spec.yaml'}' --out '{tmp_path / 'd'}'` "
        "again: it writes the missing shard and keeps the others")
    ds = io.open_dataset(tmp_path / "d", "train")  # lazy: the damaged chunk is not read yet
    for read in (lambda: ds["u"].values, lambda: ds.isel(sample=2).load(), ds.compute):
        with pytest.raises(ValueError, match=message):
            read()
    np.testing.assert_array_equal(ds["u"].isel(sample=3).values, states[1])  # its other chunk
    with pytest.raises(ValueError, match=named):  # one file, opened without Dask
        io.open_dataset(damaged)["u"][0].load()


def test_open_dataset_names_a_damaged_shard_without_dask(tmp_path, monkeypatch):
    """Without Dask (an optional extra) the shards are read whole when opened, through the
    same reader that names a shard whose data do not decompress."""
    damaged, _, _ = _two_shards_the_second_damaged(tmp_path)
    monkeypatch.setitem(sys.modules, "dask", None)  # import dask raises ImportError
    with pytest.raises(ValueError, match=re.escape(
            f"'{damaged}' is damaged: HDF5 cannot read its data (") + HDF5_REASON):
        io.open_dataset(tmp_path / "d", "train")


def test_a_system_error_reading_a_shard_is_raised_as_it_is(tmp_path):
    """Only HDF5's own failures (no errno) mean damaged data; an error of the system reading
    the file (EIO, a file gone from a network disk) is not the shard's to write again."""
    import errno

    from xarray.core import indexing

    from physml.datasets.store import _ShardArray

    class Failing:
        shape, dtype = (2, 3), np.dtype("f4")

        def __init__(self, err):
            self.err = err

        def __getitem__(self, key):
            raise self.err

    key = indexing.BasicIndexer((slice(None), slice(None)))
    system = OSError(errno.EIO, "Input/output error")
    with pytest.raises(OSError) as raised:
        _ShardArray(tmp_path / "shard-00000.h5", Failing(system))[key]
    assert raised.value is system
    with pytest.raises(ValueError, match="shard-00000.h5' is damaged: HDF5 cannot read its "
                                         "data \\(filter returned failure\\)"):
        _ShardArray(tmp_path / "shard-00000.h5",
                    Failing(OSError("Can't read data (filter returned failure)")))[key]


def test_pdebench_files_are_pointed_to_read_pdebench_in_a_short_message(tmp_path):
    groups = tmp_path / "2D_diff-react_NA_NA.h5"
    with h5py.File(groups, "w") as f:
        seed_groups(f, shapes=[(6, 16, 1)] * 1000)
    stacked_file = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    with h5py.File(stacked_file, "w") as f:
        stacked(f)
    reader = "read it whole with physml.io.read_pdebench\\('{}'\\)$"
    with pytest.raises(ValueError, match="has no variable 'u'; has 0000, 0001, 0002, 0003, "
                       "0004, ... \\(1000 in all\\): a file in a PDEBench layout; "
                       + reader.format(groups)) as refused:
        FieldDataset(groups)
    assert "0005" not in str(refused.value)
    with pytest.raises(ValueError, match="pass variable= one of tensor, or "
                       + reader.format(stacked_file)):
        FieldDataset(stacked_file)
    for path in (groups, stacked_file):
        with pytest.raises(ValueError, match=re.escape(
                f"'{path}' is in a PDEBench layout, not the field data model (its arrays have no "
                f"named dims): read it with physml.io.read_pdebench('{path}')")):
            io.open_dataset(path)


@pytest.mark.parametrize("axes", ["x", "xy", "xyz"])
def test_read_pdebench_reads_compressible_navier_stokes_fields(tmp_path, axes):
    """PDEBench's CFD files: density, pressure, Vx(, Vy, Vz) [N, T, X(, Y, Z)]."""
    sizes = {"x": 8, "y": 6, "z": 4}
    shape = (2, 3, *(sizes[a] for a in axes))
    rng = np.random.default_rng(5)
    fields = {name: rng.standard_normal(shape).astype(np.float32)
              for name in ["density", "pressure", *(f"V{a}" for a in axes)]}
    path = tmp_path / f"{len(axes)}D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train.hdf5"
    with h5py.File(path, "w") as f:
        for name, values in fields.items():
            f[name] = values
        for a in axes:
            f[f"{a}-coordinate"] = np.linspace(0, 1, sizes[a])
        f["t-coordinate"] = np.arange(4) * 0.05  # T + 1
        f.attrs.update(eta=0.01, zeta=0.01, M=0.1)
    ds = io.read_pdebench(path)
    assert sorted(ds.data_vars) == sorted(fields)
    for name, values in fields.items():
        assert ds[name].dims == ("sample", "time", *axes)
        np.testing.assert_array_equal(ds[name].values, values)
    for a in axes:
        np.testing.assert_allclose(ds[a], np.linspace(0, 1, sizes[a]))
    np.testing.assert_allclose(ds["time"], np.arange(3) * 0.05)
    assert {k: ds.attrs[k] for k in ("eta", "zeta", "M")} == {"eta": 0.01, "zeta": 0.01, "M": 0.1}
    assert ds["density"].attrs["units"] == "1"
    assert_cf(ds)


def test_read_pdebench_says_which_layouts_it_reads_for_incompressible_navier_stokes(tmp_path):
    path = tmp_path / "ns_incom_inhom_2d_512-0.h5"
    with h5py.File(path, "w") as f:
        f["velocity"] = np.zeros((1, 3, 8, 8, 2))
        f["force"] = np.zeros((1, 8, 8, 2))
        f["t"] = np.zeros((1, 3))
    with pytest.raises(ValueError, match=re.escape(
            f"'{path}' is in none of the PDEBench layouts read here: stacked fields with "
            "'t-coordinate' ('tensor', or the compressible Navier-Stokes 'density', ")) as refused:
        io.read_pdebench(path)
    assert "2D incompressible Navier-Stokes files, 'velocity' with 't', are not read" in str(
        refused.value)


def test_json_files_are_strict_json_with_non_finite_figures_as_null(tmp_path):
    """metrics.json wrote NaN and Infinity as bare words, which strict readers (JavaScript's
    JSON.parse) refuse: they are null."""
    import json

    from physml.cases.run_folder import write_metrics

    figures = {"energy": float("nan"), "deviation": np.float32("inf"), "rate": 1.5,
               "curve": [1.0, float("-inf"), (2.0, np.nan)]}
    write_metrics(tmp_path, "case", figures, [{"step": 0, "loss": float("nan")}])

    def refuse(name):
        raise ValueError(f"{name} in metrics.json")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["summary"] == {"energy": None, "deviation": None, "rate": 1.5,
                                  "curve": [1.0, None, [2.0, None]]}
    assert metrics["history"] == [{"step": 0, "loss": None}]


def per_seed_file(path, config=None, shape=(3, 4, 1), chunked=False):
    """Two seed groups of ``data`` [T, X, 1] (``chunked``: declared, never written) with
    ``config`` attributes."""
    with h5py.File(path, "w") as f:
        for seed in ("0000", "0001"):
            group = f.create_group(seed)
            if chunked:
                group.create_dataset("data", shape=shape, dtype="f4", chunks=(1,) * len(shape))
            else:
                group["data"] = np.zeros(shape, "f4")
            group["grid/t"] = np.arange(shape[0], dtype="f4")
            group["grid/x"] = np.arange(shape[1], dtype="f4")
            if config is not None:
                group.attrs["config"] = config
    return path


@pytest.mark.parametrize(("config", "message"), [
    ("a0: &a0 {" + ", ".join(f"k{j}: 1" for j in range(10)) + "}\n" + "".join(
        f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(10)) + "}\n"
        for i in range(1, 4)), "uses a YAML alias (*name)"),
    ("[" * 5000 + "]" * 5000, "nests deeper than 32 levels"),
    ("\n".join(f"k{j}: {j}" for j in range(501)), "holds more than 1,000 values"),
])
def test_read_pdebench_refuses_a_config_of_aliases_deep_nesting_or_too_many_values(
        tmp_path, config, message):
    """A 348-character config of nested YAML aliases took 150 s and made 11,115 coordinates,
    and 5000 nested lists a bare RecursionError: refused at once, naming file and group."""
    path = per_seed_file(tmp_path / "config.h5", config)
    with pytest.raises(ValueError, match=re.escape(f"'{path}': the 'config' attribute of seed "
                                                   f"group '0000' {message}")):
        io.read_pdebench(path)
    ds = io.read_pdebench(per_seed_file(tmp_path / "fine.h5", "sim: {nu: 0.5, seed: 1}"))
    np.testing.assert_array_equal(ds["nu"], [0.5, 0.5])


def test_read_pdebench_refuses_datasets_declared_beyond_memory_before_reading(tmp_path,
                                                                              monkeypatch):
    """A 1.6 MB file declaring 37 GiB of unwritten chunks gave a bare MemoryError (and one just
    under the machine's memory went to the OOM killer): the declared sizes are checked first,
    here against a machine of 16 MiB."""
    from physml.datasets import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 2**24)
    path = per_seed_file(tmp_path / "huge.h5", shape=(1500, 1000, 1), chunked=True)
    with pytest.raises(ValueError, match=re.escape(
            f"reading PDEBench file '{path}' ('0000/data' of shape (1500, 1000, 1), float32, "
            "and 3 more dataset(s)) needs about 0.0 GiB, more than this machine's memory")):
        io.read_pdebench(path)
    stacked_path = tmp_path / "stacked.h5"
    with h5py.File(stacked_path, "w") as f:
        f.create_dataset("tensor", shape=(50, 100, 1000), dtype="f4", chunks=(1, 1, 1000))
        f["t-coordinate"] = np.arange(101.0)
        f["x-coordinate"] = np.arange(1000.0)
    with pytest.raises(ValueError, match=r"'tensor' of shape \(50, 100, 1000\), float32, and 2 "
                       r"more dataset\(s\)\) needs about .* more than this machine's memory"):
        io.read_pdebench(stacked_path)
    io.read_pdebench(per_seed_file(tmp_path / "small.h5", shape=(100, 1000, 1), chunked=True))


def test_the_sample_coordinate_says_how_to_draw_the_sample_again(tmp_path):
    """It was labelled 'random seed of the sample', but NumPy seeded with it alone does not
    give the sample back: its draws come from default_rng([seed, j]), seed an attribute."""
    from physml.datasets.generate import generate
    from physml.datasets.initial_conditions import INITIAL_CONDITIONS
    from physml.datasets.spec import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("pde: advection1d\ngrid: [16]\nparameters: {beta: 0.5}\nt_end: 0.1\n"
                    "n_saves: 2\ninitial_condition: {kind: pdebench_sines}\nsamples: 2\n"
                    "seed: 7\n")
    generate(load_spec(spec), tmp_path / "d", workers=0)
    ds = io.open_dataset(tmp_path / "d", "train").load()
    assert "numpy.random.default_rng([seed, j])" in ds["sample"].attrs["long_name"]
    j = int(ds["sample"][0])
    rng = np.random.default_rng([ds.attrs["seed"], j])  # as the label says
    u0 = INITIAL_CONDITIONS["pdebench_sines"](Grid((16,), (0.0,), (1.0,)), rng)
    np.testing.assert_allclose(ds["u"].isel(sample=0, time=0), u0, rtol=1e-6)
