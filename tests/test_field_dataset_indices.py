"""A batch's indices out of range are refused as an item's are, naming the first, through
``__getitems__`` and a ``DataLoader`` (no index wraps around)."""

import re

import numpy as np
import pytest
from test_field_dataset_reads import write_shards
from torch.utils.data import DataLoader

from physml.data import FieldDataset


@pytest.mark.parametrize("pairs", [None, 1])
def test_an_int_index_out_of_range_in_a_batch_raises_naming_the_first(tmp_path, pairs):
    """A DataLoader's sampler gives plain ints (NumPy reads the list as int64, the vectorised
    path): an index one past either end raises, naming the first bad index; none wraps."""
    write_shards(tmp_path)
    data = FieldDataset(tmp_path, split="", pairs=pairs)
    n = len(data)
    for indices, bad in (([0, n], n), ([0, -n - 1], -n - 1), ([n, 0, -n - 1], n),
                         ([-n - 1, n + 5], -n - 1), (np.array([1, n]), n)):
        with pytest.raises(IndexError, match=re.escape(f"index {bad} out of range for {n} items")):
            data.__getitems__(indices)
    np.testing.assert_array_equal(data.__getitems__([-n])[0][0] if pairs else
                                  data.__getitems__([-n])[0], (data[0][0] if pairs else data[0]))


def test_a_loader_with_a_sampler_past_the_end_raises(tmp_path):
    write_shards(tmp_path)
    data = FieldDataset(tmp_path, split="")
    loader = DataLoader(data, batch_size=2, sampler=[0, len(data)])
    with pytest.raises(IndexError, match="out of range"):
        list(loader)


@pytest.mark.parametrize("index", [1.5, 1.0, 1e9, True, np.True_, np.float64(1.0), [1]])
def test_an_index_that_is_not_an_int_is_refused_as_an_item_and_in_a_batch(tmp_path, index):
    """ds[1.5] and ds[True] returned item 1."""
    write_shards(tmp_path)
    data = FieldDataset(tmp_path, split="", pairs=1)
    with pytest.raises(TypeError):
        data[index]
    with pytest.raises(TypeError):
        data.__getitems__([0, index])
    np.testing.assert_array_equal(data[np.int64(1)][0], data[1][0])
