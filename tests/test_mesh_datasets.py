"""Mesh datasets: specs with a ``mesh`` section, generated shards with the topology beside
the fields, solutions that satisfy their discrete equations, resume, clear errors."""

import numpy as np
import pytest
import xarray as xr

from conftest import shard_stamps
from physml import io
from physml.cli import main
from physml.datasets.generate import generate
from physml.datasets.mesh_spec import MeshDatasetSpec
from physml.datasets.mesh_store import mesh_of
from physml.datasets.spec import load_spec
from physml.solvers import mesh as pm
from physml.solvers.mesh import mass_matrix, stiffness_matrix, to_scipy

POISSON = """
pde: poisson_mesh
mesh: {domain: disc, h: 0.3}
parameters: {kappa: [0.5, 2.0]}
initial_condition: {kind: random_bumps, options: {count: 2, width: 0.4}}
samples: 4
shard_size: 2
seed: 3
storage_dtype: float64
"""

HEAT = """
pde: heat_mesh
mesh: {domain: icosphere, level: 2}
parameters: {kappa: 0.5}
t_end: 0.2
n_saves: 3
initial_condition: {kind: random_bumps}
solver: {theta: 0.5, steps_per_save: 2}
samples: 3
splits: {train: 1.0, valid: 0.0, test: 0.0}
storage_dtype: float64
"""


def spec_file(folder, text, **replace):
    for key, value in replace.items():
        text = text.replace(key, value)
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def test_bundled_mesh_specs_are_valid():
    for name in ("heat_torus", "poisson_lshape"):
        assert isinstance(load_spec(name), MeshDatasetSpec)


def test_poisson_samples_solve_their_discrete_equation_and_resume_bitwise(tmp_path):
    spec = load_spec(spec_file(tmp_path, POISSON))
    generate(spec, tmp_path / "a", workers=0)
    ds = io.open_dataset(tmp_path / "a", "train").load()
    # 2 kappas x 3: of 4 samples at 0.8 / 0.1 / 0.1, one goes to valid
    assert ds["u"].dims == ("sample", "node") and ds.sizes["sample"] == 6
    mesh = mesh_of(ds)
    K, M = to_scipy(stiffness_matrix(mesh)), to_scipy(mass_matrix(mesh))
    boundary = mesh.boundary_vertices()
    interior = np.setdiff1d(np.arange(mesh.n_vertices), boundary)
    for i in range(ds.sizes["sample"]):
        u, f, kappa = ds["u"].values[i], ds["f"].values[i], float(ds["kappa"].values[i])
        residual = (kappa * K @ u - M @ f)[interior]
        assert np.abs(residual).max() < 1e-7 * np.abs(M @ f).max()
        assert np.all(u[boundary] == 0)
    assert len(set(ds["sample"].values)) == 6  # one seed per sample
    # resume: a missing shard is rewritten identically, the others are kept
    first = tmp_path / "a" / "train" / "shard-00000.h5"
    reference = xr.open_dataset(first).load()
    kept = shard_stamps(tmp_path / "a", but=first)
    assert kept
    first.unlink()
    (tmp_path / "a" / "dataset.json").unlink()
    generate(spec, tmp_path / "a", workers=0)
    xr.testing.assert_identical(xr.open_dataset(first).load(), reference)
    assert shard_stamps(tmp_path / "a", but=first) == kept


def test_heat_samples_conserve_mass_on_a_closed_surface(tmp_path):
    spec = load_spec(spec_file(tmp_path, HEAT))
    generate(spec, tmp_path / "h", workers=0)
    ds = io.open_dataset(tmp_path / "h", "train").load()
    assert ds["u"].dims == ("sample", "time", "node")
    np.testing.assert_allclose(ds["time"].values, [0.0, 0.1, 0.2])
    M = to_scipy(mass_matrix(mesh_of(ds)))
    for u in ds["u"].values:
        mass = u @ M.T @ np.ones(M.shape[0])
        np.testing.assert_allclose(mass, mass[0], rtol=1e-9, atol=1e-12)
        assert np.ptp(u[-1]) < np.ptp(u[0])  # diffusion flattens the field


@pytest.mark.parametrize("replace, message", [
    ({"pde: poisson_mesh": "pde: wave_mesh"}, "pde: unknown mesh PDE 'wave_mesh'; allowed:"),
    ({"h: 0.3": "h: 0.3, colour: red"}, "unknown key 'mesh.colour'; allowed: file, domain"),
    ({"domain: disc, h: 0.3": "domain: disc"}, "mesh.domain 'disc' needs mesh.h"),
    ({"domain: disc, h: 0.3": "file: nowhere.msh"}, "nowhere.msh' does not exist"),
    ({"h: 0.3": "h: 0.3, level: 5"}, "mesh.level does not apply to mesh.domain 'disc'"),
    ({"h: 0.3": "h: 0.3, repair: true"}, "mesh.repair does not apply to mesh.domain 'disc'"),
    ({"domain: disc, h: 0.3": "domain: icosphere, level: 1, h: 0.3"},
     "mesh.h does not apply to mesh.domain 'icosphere'"),
    ({"{kappa:": "{nu:"}, "parameters: poisson_mesh has no parameter 'nu'"),
    ({"[0.5, 2.0]": "[0.5, -2.0]"}, "parameters: kappa must lie in [1e-100, 1e+100]"),
    ({"[0.5, 2.0]": "[0.5, 1.0e-310]"}, "parameters: kappa must lie in [1e-100, 1e+100]"),
    ({"kind: random_bumps": "kind: noise"}, "initial_condition.kind: unknown kind 'noise'; "
     "allowed: random_bumps"),
    ({"seed: 3": "seed: 3\nt_end: 1.0"}, "poisson_mesh is steady: leave out t_end and n_saves"),
    # a steady problem took time-stepping options, and a boundary made shift a dead label
    ({"seed: 3": "seed: 3\nsolver: {theta: 1.0}"}, "solver: poisson_mesh is steady and takes "
     "no time-stepping options"),
    ({"{kappa: [0.5, 2.0]}": "{shift: [1.0, 50.0]}"}, "parameters.shift: mesh disc (h = 0.3) "
     "has a boundary"),
    ({"seed: 3": "seed: 100000000000000000000000"}, "seed: "),
    # an edge length that would mesh for hours; YAML's true is no number
    ({"h: 0.3": "h: 0.0001"}, "mesh.h=0.0001 makes about 7.3e+08 elements of mesh.domain "
     "'disc', more than 1e+07; use h >= 0.00085"),
    ({"h: 0.3": "h: true"}, "mesh.h: True is a boolean; a number is expected"),
])
def test_bad_mesh_specs_exit_2_naming_the_key(tmp_path, capsys, replace, message):
    spec = spec_file(tmp_path, POISSON, **replace)
    assert main(["datasets", "generate", str(spec), "--out", str(tmp_path / "d"),
                 "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_a_shard_of_more_states_than_fit_in_memory_is_refused_before_anything_is_written(
        tmp_path, capsys):
    spec = spec_file(tmp_path, HEAT, **{"n_saves: 3": "n_saves: 1000000000"})
    assert main(["datasets", "generate", str(spec), "--out", str(tmp_path / "d"),
                 "--workers", "0"]) == 2
    assert ("n_saves=1000000000, solver.steps_per_save=2, mesh icosphere(2), samples=3: a shard "
            "of 3 sample(s) x 1999999999 state(s) x 162 values needs about ") in \
        capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_relative_mesh_file_is_recorded_absolute(tmp_path, monkeypatch):
    """A spec or case names its mesh file from the working folder; what it records (a
    dataset's spec.yaml, a run's config.yaml) names it from anywhere."""
    from physml.datasets.mesh_spec import MeshSpec

    monkeypatch.chdir(tmp_path)
    pm.write_mesh("part.msh", pm.disc(0.5))
    spec = MeshSpec(file="part.msh")
    assert spec.file == str(tmp_path / "part.msh")
    monkeypatch.chdir(tmp_path.parent)
    assert spec.build().n_vertices == pm.read_mesh(tmp_path / "part.msh").n_vertices


def test_a_partial_dataset_whose_spec_recorded_a_relative_mesh_file_resumes(tmp_path,
                                                                            monkeypatch):
    """Its spec.yaml names the file as written; read from the same working folder it is the
    same spec as the one now given."""
    monkeypatch.chdir(tmp_path)
    pm.write_mesh("part.msh", pm.disc(0.3))
    spec = load_spec(spec_file(tmp_path, POISSON, **{"domain: disc, h: 0.3": "file: part.msh"}))
    generate(spec, tmp_path / "d", workers=0)
    recorded = tmp_path / "d" / "spec.yaml"
    recorded.write_text(recorded.read_text().replace(str(tmp_path / "part.msh"), "part.msh"))
    (tmp_path / "d" / "dataset.json").unlink()
    (tmp_path / "d" / "train" / "shard-00000.h5").unlink()
    generate(spec, tmp_path / "d", workers=0)
    assert (tmp_path / "d" / "train" / "shard-00000.h5").is_file()


def test_a_mesh_file_that_changed_since_a_partial_dataset_was_begun_is_refused(tmp_path,
                                                                              monkeypatch):
    """The spec records the file's SHA-256: a resume on a file whose vertices moved mixed two
    meshes in one dataset without a word."""
    monkeypatch.chdir(tmp_path)
    mesh = pm.disc(0.3)
    pm.write_mesh("part.msh", mesh)
    spec = load_spec(spec_file(tmp_path, POISSON, **{"domain: disc, h: 0.3": "file: part.msh"}))
    generate(spec, tmp_path / "d", workers=0)
    (tmp_path / "d" / "dataset.json").unlink()
    (tmp_path / "d" / "train" / "shard-00000.h5").unlink()
    moved = mesh.points.copy()
    inner = np.setdiff1d(np.arange(mesh.n_vertices), mesh.boundary_vertices())
    moved[inner] *= 0.9
    pm.write_mesh("part.msh", pm.Mesh(moved, mesh.cells))
    changed = load_spec(tmp_path / "spec.yaml")
    with pytest.raises(ValueError, match="partial dataset of another spec .*sha256"):
        generate(changed, tmp_path / "d", workers=0)
    with pytest.raises(ValueError, match="mesh.file .* changed since the spec recorded it"):
        spec.mesh.build()  # a shard's solve reads the file through the recorded spec


def test_poisson_on_a_mesh_with_a_boundary_records_no_shift(tmp_path):
    """u = 0 on the boundary makes the problem well posed and no shift is applied; the shard
    recorded shift = 1 all the same."""
    generate(load_spec(spec_file(tmp_path, POISSON)), tmp_path / "a", workers=0)
    attrs = io.open_dataset(tmp_path / "a", "train").attrs
    assert "shift" not in attrs
    assert attrs["equation"] == "-kappa Laplacian u = f, u = 0 on the boundary"


def test_mesh_shards_record_the_equation_and_solver_as_grid_shards_do(tmp_path):
    generate(load_spec(spec_file(tmp_path, HEAT)), tmp_path / "h", workers=0)
    attrs = io.open_dataset(tmp_path / "h", "train").attrs
    assert attrs["equation"] == "u_t = kappa Laplacian u, zero Neumann on any boundary"
    assert attrs["solver"] == "physml.solvers.mesh.heat"
    assert (attrs["theta"], attrs["steps_per_save"]) == (0.5, 2)
    closed = spec_file(tmp_path, POISSON, **{"domain: disc, h: 0.3": "domain: icosphere, level: 1"})
    generate(load_spec(closed), tmp_path / "p", workers=0)
    attrs = io.open_dataset(tmp_path / "p", "train").attrs
    assert attrs["equation"] == "-kappa Laplacian u + shift u = f" and attrs["shift"] == 1.0
    assert attrs["solver"] == "physml.solvers.mesh.poisson"


def test_a_process_keeps_a_few_meshes_not_every_one_it_generated():
    """The mesh cache had no bound: a process generating many mesh datasets kept them all."""
    from physml.datasets import mesh_generate
    from physml.datasets.mesh_spec import MeshSpec

    mesh_generate._mesh.cache_clear()
    for h in (0.5, 0.45, 0.4, 0.35, 0.3, 0.25):
        mesh_generate._mesh(MeshSpec(domain="l_shape", h=h), "cpu")
    assert mesh_generate._mesh.cache_info().currsize == mesh_generate.KEPT_MESHES
