r"""Dataset generation throughput with 1 and 2 local Dask workers, and read throughput of the
PyTorch :class:`~physml.data.FieldDataset` against plain h5py reads of the same arrays.

Generation: PDEBench's 1D Burgers (1024 cells, $t\in[0,2]$, 201 saved states, random sines,
$\nu = 0.001$, explicit SSP-RK3) for ``--samples`` samples, once on a local Dask cluster of one
worker process and once on two, each into a fresh folder; samples/s counts the whole command
(cluster start-up included). The two datasets are checked to be identical.

Reading: every sample of the generated training split, read ``--repeats`` times, through
``FieldDataset`` (one item per sample) and through h5py (``f["u"][i]``), alternately; MB/s and
the ratio FieldDataset/h5py.

Run from the repository root (a few minutes on two cores)::

    python benchmarks/datasets.py [--samples 16] [--out benchmarks/results/datasets.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import h5py
import numpy as np
import warp as wp

import physml
from physml.data import FieldDataset
from physml.datasets.generate import generate
from physml.datasets.spec import DatasetSpec
from physml.datasets.store import shard_files
from physml.devices import Stopwatch

DEVICE = "cpu"  # where generation and reading run: datasets are generated on the CPU


def burgers_spec(samples: int) -> DatasetSpec:
    return DatasetSpec.model_validate({
        "pde": "burgers1d_pdebench", "grid": [1024], "parameters": {"nu": 0.001},
        "t_end": 2.0, "n_saves": 201, "initial_condition": {"kind": "pdebench_sines"},
        "samples": samples, "splits": {"train": 1.0, "valid": 0.0, "test": 0.0},
        "shard_size": 1, "seed": 2022,
    })


def time_generation(spec: DatasetSpec, folder: Path, workers: int) -> float:
    with Stopwatch(DEVICE) as watch:
        generate(spec, folder, workers=workers)
    return spec.samples / watch.seconds


def read_h5py(files: list[Path]) -> int:
    total = 0
    for file in files:
        with h5py.File(file, "r") as f:
            for i in range(f["u"].shape[0]):
                total += f["u"][i].nbytes
    return total


def read_field_dataset(folder: Path) -> int:
    data = FieldDataset(folder, split="train")
    total = 0
    for i in range(len(data)):
        item = data[i]
        total += item.numel() * item.element_size()
    return total


def megabytes_per_second(read, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        with Stopwatch(DEVICE) as watch:
            n_bytes = read()
        rates.append(n_bytes / 2**20 / watch.seconds)
    return statistics.median(rates)


def main() -> None:
    wp.config.log_level = wp.LOG_ERROR
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/datasets.json"))
    args = parser.parse_args()
    spec = burgers_spec(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "one", Path(tmp) / "two"
        rate_1 = time_generation(spec, one, workers=1)
        rate_2 = time_generation(spec, two, workers=2)
        files = [shard_files(folder / "train") for folder in (one, two)]
        for a, b in zip(*files):
            with h5py.File(a) as fa, h5py.File(b) as fb:
                assert np.array_equal(fa["u"][...], fb["u"][...]), f"{a.name} differs"
        h5py_rates, dataset_rates = [], []
        for _ in range(2):  # alternate to share the machine's noise
            h5py_rates.append(megabytes_per_second(lambda: read_h5py(files[0]), args.repeats))
            dataset_rates.append(megabytes_per_second(lambda: read_field_dataset(one),
                                                      args.repeats))
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "physml": physml.__version__,
        "generation": {"problem": "burgers1d_pdebench nu=0.001, 1024 cells, 201 states",
                       "samples": args.samples, "samples_per_s_1_worker": rate_1,
                       "samples_per_s_2_workers": rate_2, "speedup": rate_2 / rate_1},
        "reading": {"field_dataset_mb_s": max(dataset_rates), "h5py_mb_s": max(h5py_rates),
                    "ratio": max(dataset_rates) / max(h5py_rates)},
    }
    print(f"generation: 1 worker {rate_1:.3f} samples/s, 2 workers {rate_2:.3f} samples/s, "
          f"speed-up {rate_2 / rate_1:.2f}x")
    print(f"reading: FieldDataset {max(dataset_rates):.0f} MB/s, h5py {max(h5py_rates):.0f} "
          f"MB/s, ratio {result['reading']['ratio']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
