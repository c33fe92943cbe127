"""``benchmarks/solvers.py``'s options: the copy measured on the thread count of the grid it is
compared with, and ``--device`` handling."""


def test_solvers_sets_a_grid_against_the_copy_on_its_own_thread_count(script):
    """The STREAM-like copy on as many threads as physml's stages took, capped at the cores
    measured."""
    solvers = script("solvers")
    references = {"stream_copy_gb_s": {"1_threads": {"median": 2.0},
                                       "2_threads": {"median": 4.0}}}
    one = {"physml_host_threads": 1, "physml_bandwidth_gb_s": 1.0}
    many = {"physml_host_threads": 8, "physml_bandwidth_gb_s": 1.0}
    assert solvers.bandwidth_fractions(one, references) == {"bandwidth_fraction_of_copy": 0.5}
    assert solvers.bandwidth_fractions(many, references) == {"bandwidth_fraction_of_copy": 0.25}


def test_solvers_runs_the_batched_row_on_the_device_and_names_it(script, monkeypatch, tmp_path):
    """``--device cuda`` (a stand-in: the device check and Warp's device name answered) runs the
    batched row on the device Warp names and records it in the machine record."""
    import json
    import sys
    from types import SimpleNamespace

    solvers = script("solvers")
    monkeypatch.setattr(solvers, "check_device", lambda parser, device, resolve: None)
    monkeypatch.setattr(solvers, "warp_device", lambda device: "cuda:0")
    monkeypatch.setattr(solvers, "batched_throughput", lambda device: {"ran_on": device})
    monkeypatch.setattr(solvers.wp, "get_device", lambda device: SimpleNamespace(name="Fake"))
    out = tmp_path / "solvers.json"
    monkeypatch.setattr(sys, "argv", ["solvers.py", "--only", "batched", "--device", "cuda",
                                      "--out", str(out)])
    solvers.main()
    report = json.loads(out.read_text())
    assert report["batched"] == {"ran_on": "cuda:0"}
    assert report["machine"]["device"] == "cuda:0" and report["machine"]["device_name"] == "Fake"
    assert report["settings"]["heat"].endswith("cuda:0")
