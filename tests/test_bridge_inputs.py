"""The bridges' handling of calls outside the plain gradient: rollouts that need no gradient,
folded vertex positions, legacy batched cotangents, bad spmv operands, spectral coefficients
given as tensors, and upwind advection's one-sided derivative at zero velocity."""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from physml import bridge
from physml.constraints import BlockRouter, HardConstraint
from physml.linalg_bridge import csr_solve, implicit_solve
from physml.mesh_bridge import operator_values, poisson_solve, sparse_solve, spmv
from physml.solvers import AdvectionSolver1D, Grid, HeatSolver1D, periodic
from physml.solvers import mesh as pm
from physml.spectral import SpectralSolver

GRID = Grid((16,), (0.0,), (1.0,))


def _heat() -> HeatSolver1D:
    return HeatSolver1D(GRID, periodic(1), nu=0.01, dt=1e-3, scheme="euler")


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "no_input_requires_grad"])
def test_a_rollout_that_needs_no_gradient_holds_no_state_beyond_the_saves(mode):
    solver = _heat()
    u0 = torch.rand(3, 16, dtype=torch.float64)
    with torch.enable_grad():
        wanted = bridge.rollout(solver, u0.clone().requires_grad_(), 40, 20)
    memory = bridge.RolloutMemory()
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
               "no_input_requires_grad": torch.enable_grad}[mode]
    with context():
        got = bridge.rollout(solver, u0, 40, 20, memory=memory)
    assert memory.peak_states == 1
    assert torch.equal(got, wanted.detach())


def _inner_vertex(mesh: pm.Mesh) -> int:
    boundary = set(mesh.boundary_vertices().tolist())
    return next(i for i in range(mesh.n_vertices) if i not in boundary)


def _disc_at_z() -> pm.Mesh:
    disc = pm.disc(0.4)
    return pm.Mesh(np.c_[disc.points, np.full(disc.n_vertices, 2.5)], disc.cells)


@pytest.mark.parametrize("make", [lambda: pm.disc(0.4), _disc_at_z, lambda: pm.box(0.7)])
def test_positions_that_fold_a_cell_are_refused_as_mesh_refuses_them(make):
    mesh = make()
    points = torch.tensor(mesh.points)
    points[_inner_vertex(mesh), 0] += 3.0
    with pytest.raises(ValueError) as by_mesh:
        pm.Mesh(points.numpy(), mesh.cells)
    assert "folded cells" in str(by_mesh.value)
    f = torch.ones(mesh.n_vertices, dtype=torch.float64)
    for call in (lambda: poisson_solve(points, mesh, f),
                 lambda: operator_values(points.float(), mesh, "mass")):
        with pytest.raises(ValueError) as by_bridge:
            call()
        assert str(by_bridge.value) == str(by_mesh.value)


def test_positions_that_collapse_a_cell_are_refused_as_mesh_refuses_them():
    """An inner vertex moved onto the opposite edge of one of its cells: operator_values
    returned NaN, and poisson_solve blamed b."""
    mesh = pm.disc(0.4)
    vertex = _inner_vertex(mesh)
    cell = mesh.cells[np.flatnonzero((mesh.cells == vertex).any(axis=1))[0]]
    a, b = (v for v in cell if v != vertex)
    points = torch.tensor(mesh.points)
    points[vertex] = (points[a] + points[b]) / 2
    with pytest.raises(ValueError) as by_mesh:
        pm.Mesh(points.numpy(), mesh.cells)
    assert "zero-area cells" in str(by_mesh.value)
    f = torch.ones(mesh.n_vertices, dtype=torch.float64)
    for call in (lambda: poisson_solve(points, mesh, f),
                 lambda: operator_values(points, mesh, "stiffness")):
        with pytest.raises(ValueError) as by_bridge:
            call()
        assert str(by_bridge.value) == str(by_mesh.value)


def test_a_mirror_image_is_accepted_on_the_device_without_the_host_check(monkeypatch):
    """Reflected positions flip the sign of every cell, which is no fold: the screen on the
    points' device passes them, so the points are not copied to the host and checked in
    NumPy (which cost 13 times the assembly on 180,000 cells)."""
    host = []
    monkeypatch.setattr("physml.solvers.mesh.mesh.check_cell_shapes",
                        lambda *args: host.append(args))
    for mesh in (pm.disc(0.4), _disc_at_z(), pm.box(0.7)):
        mirrored = torch.tensor(mesh.points)
        mirrored[:, 0] *= -1
        assert operator_values(mirrored, mesh).isfinite().all()
    assert host == []


def test_poisson_solve_checks_the_points_once(monkeypatch):
    checked = []
    check = pm.Mesh.check_moved_points
    monkeypatch.setattr(pm.Mesh, "check_moved_points",
                        lambda mesh, points: checked.append(check(mesh, points)))
    mesh = pm.disc(0.4)
    poisson_solve(torch.tensor(mesh.points), mesh,
                  torch.ones(mesh.n_vertices, dtype=torch.float64))
    assert len(checked) == 1


def test_a_mesh_with_its_cells_listed_in_mixed_orientation_is_not_folded():
    mesh = pm.box(0.7)
    cells = mesh.cells.copy()
    cells[::2, [0, 1]] = cells[::2, [1, 0]]
    mixed = pm.Mesh(mesh.points, cells)
    moved = torch.tensor(mesh.points) * torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    assert operator_values(moved, mixed).isfinite().all()


@pytest.mark.parametrize("call", ["rollout", "csr_solve", "poisson_solve"])
@pytest.mark.parametrize("batched", ["jacobian", "is_grads_batched"])
def test_legacy_batched_cotangents_are_refused_naming_the_alternative(call, batched):
    mesh = pm.disc(0.5)
    points = torch.tensor(mesh.points)
    matrix = sp.csr_matrix(np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]]))
    function, x = {
        "rollout": (lambda u: bridge.rollout(_heat(), u, 4, 2)[-1],
                    torch.rand(16, dtype=torch.float64)),
        "csr_solve": (lambda b: csr_solve(torch.tensor(matrix.data), b, matrix.indptr,
                                          matrix.indices),
                      torch.ones(3, dtype=torch.float64)),
        "poisson_solve": (lambda f: poisson_solve(points, mesh, f),
                          torch.ones(mesh.n_vertices, dtype=torch.float64)),
    }[call]
    with pytest.raises(RuntimeError, match=r"vectorize=False"):
        if batched == "jacobian":
            torch.autograd.functional.jacobian(function, x, vectorize=True)
        else:
            x.requires_grad_()
            y = function(x)
            torch.autograd.grad(y, x, torch.eye(len(y), dtype=y.dtype), is_grads_batched=True)
    assert torch.autograd.functional.jacobian(function, x.detach()).isfinite().all()


@pytest.mark.parametrize("change", ["longer u", "float16", "float32 u", "values length",
                                    "meta u"])
def test_spmv_refuses_operands_that_do_not_fit_the_operator(change):
    mesh = pm.disc(0.5)
    values = operator_values(torch.tensor(mesh.points), mesh, "mass")
    u = torch.ones(mesh.n_vertices, dtype=torch.float64)
    values, u = {"longer u": (values, torch.ones(mesh.n_vertices + 3, dtype=torch.float64)),
                 "float16": (values.half(), u.half()),
                 "float32 u": (values, u.float()),
                 "values length": (values[:-1], u),
                 "meta u": (values, u.to("meta"))}[change]  # another device, as CUDA is
    with pytest.raises(ValueError, match=r"spmv needs values \(\d+,\) and u \(\d+,\)"):
        spmv(values, u, mesh)


def test_the_spectral_solver_differentiates_in_u0_and_refuses_a_nu_that_requires_grad():
    u0 = torch.rand(16, dtype=torch.float64, requires_grad=True)
    solver = SpectralSolver.burgers((16,), nu=0.1, dt=1e-2)
    assert torch.autograd.gradcheck(lambda u: solver.rollout(u, 3, 3), (u0,))
    nu = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="nu is a tensor that requires grad"):
        SpectralSolver.burgers((16,), nu=nu, dt=1e-2)
    assert SpectralSolver.burgers((16,), nu=nu.detach(), dt=1e-2).nu == 0.1


def test_upwind_advection_at_zero_velocity_returns_the_derivative_from_positive_velocity():
    solver = AdvectionSolver1D(GRID, periodic(1), beta=1.0, dt=1e-3)
    u0 = torch.from_numpy(np.random.default_rng(0).random(16))
    beta = torch.zeros(1, dtype=torch.float64, requires_grad=True)

    def final(b: torch.Tensor) -> torch.Tensor:
        return bridge.rollout(solver, u0, 6, 6, parameters={"beta": b})[-1]

    (grad,) = torch.autograd.grad(final(beta).square().sum(), beta)
    eps = 1e-6
    right = (final(beta.detach() + eps).square().sum() - final(beta.detach()).square().sum()) / eps
    left = (final(beta.detach()).square().sum() - final(beta.detach() - eps).square().sum()) / eps
    assert abs(float(grad) - float(right)) < 1e-4 < abs(float(grad) - float(left))


def test_a_parameter_given_as_none_is_named_as_none():
    """``parameters={"nu": None}`` was reported as "nu=nan must be > 0 and finite": a NaN the
    caller never passed (``np.asarray(None, float)``)."""
    with pytest.raises(ValueError, match=r"parameters\['nu'\] is None; give a number, array or "
                                         "tensor, or leave 'nu' out to keep the solver's value"):
        bridge.rollout(_heat(), torch.zeros(16, dtype=torch.float64), 1, parameters={"nu": None})


@pytest.mark.parametrize(("given", "message"), [
    (1e-50, r"nu[0]=1e-50 is 0.0 in float32"), (1e50, r"nu[0]=1e+50 is inf in float32")])
def test_a_float64_parameter_a_float32_solver_cannot_hold_is_named_as_given(given, message):
    """The values were checked after the conversion to the solver's dtype: 1e-50 was reported
    as "nu=0.0 must be > 0 and finite", a value the caller never passed."""
    solver = HeatSolver1D(Grid((16,), (0.0,), (1.0,)), periodic(1), nu=0.01, dt=1e-3,
                          dtype="float32")
    nu = torch.tensor([given, 0.01], dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape(message) + ", the solver's dtype; pass "
                                         "dtype='float64'"):
        bridge.rollout(solver, torch.zeros(2, 16), 1, parameters={"nu": nu})


@pytest.mark.parametrize(("given", "message"), [
    (1e-50, "nu=1e-50 is 0.0 in float32"), (np.float64(1e50), "nu=1e+50 is inf in float32"),
    (np.array([0.02, 1e-50]), "nu[1]=1e-50 is 0.0 in float32")])
def test_a_number_or_array_a_float32_solver_cannot_hold_is_named_as_given(given, message):
    """Numbers and NumPy arrays were rounded to float32 before the check: 1e-50 was reported
    as "nu=0.0 must be > 0 and finite", with no cure."""
    solver = HeatSolver1D(GRID, periodic(1), nu=0.01, dt=1e-3, dtype="float32")
    with pytest.raises(ValueError, match=re.escape(message) + ", the solver's dtype; pass "
                                         "dtype='float64'"):
        bridge.rollout(solver, torch.zeros(2, 16), 1, parameters={"nu": given})
    u0 = torch.sin(torch.linspace(0, 2 * np.pi, 17)[:-1])
    np.testing.assert_array_equal(
        bridge.rollout(solver, u0, 3, parameters={"nu": 0.013}).numpy(),
        solver.with_parameters(nu=0.013).rollout(u0.numpy(), 3))


def _meta(t: torch.Tensor) -> torch.Tensor:
    return t.to("meta")  # a device PyTorch has that physml does not run on, as "mps"


def _heat_rows(u: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Implicit-Euler heat residuals, boundary values and the initial condition phi."""
    laplacian = u[:, 1:, :-2] - 2 * u[:, 1:, 1:-1] + u[:, 1:, 2:]
    pde = (u[:, 1:, 1:-1] - u[:, :-1, 1:-1]) - 0.3 * laplacian
    return torch.cat([pde.flatten(1), u[:, :, 0], u[:, :, -1], u[:, 0] - phi], 1)


def _csr() -> tuple[torch.Tensor, ...]:
    matrix = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(8, 8), format="csr")
    return (torch.tensor(matrix.data), torch.ones(8, dtype=torch.float64),
            torch.tensor(matrix.indptr), torch.tensor(matrix.indices))


U0 = torch.sin(torch.linspace(0, 2 * np.pi, 17, dtype=torch.float64)[:-1])


@pytest.mark.parametrize("call, message", [
    (lambda: bridge.rollout(_heat(), _meta(U0), 2), "u0 is on meta; the solver runs on cpu"),
    (lambda: bridge.rollout(_heat(), U0, 2, parameters={"nu": _meta(torch.tensor(0.01))}),
     "nu is on meta; the solver runs on cpu"),
    (lambda: operator_values(_meta(torch.tensor(pm.disc(0.5).points)), pm.disc(0.5)),
     "points is on meta; the mesh is on cpu"),
    (lambda: csr_solve(*(_meta(t) for t in _csr())), "b is on meta; allowed: cpu, cuda, cuda:N"),
    (lambda: csr_solve(*_csr()[:2], *(_meta(t) for t in _csr()[2:])),
     "indptr is on meta; allowed: cpu, cuda, cuda:N"),
    (lambda: SpectralSolver((16,), nu=0.1, dt=0.1).rollout(_meta(U0), 2),
     "u0 is on meta; allowed: cpu, cuda, cuda:N"),
    (lambda: HardConstraint(_heat_rows, BlockRouter((6, 8), (1, 1)), (8,))(
        _meta(torch.zeros(2, 5, 6, 8, dtype=torch.float64)), torch.zeros(2, 8)),
     "basis is on meta; allowed: cpu, cuda, cuda:N"),
])
def test_a_tensor_on_a_device_physml_does_not_run_on_is_named_with_its_device(call, message):
    """Such a tensor failed deep inside Warp or PyTorch ("Unsupported Torch device type
    meta", "Cannot copy out of meta tensor")."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


def test_a_cuda_tensor_under_a_side_stream_is_refused_before_warp_reads_it(monkeypatch):
    """Warp's launches are ordered against PyTorch's default stream only: under
    torch.cuda.stream(s) Warp could read an input before s had written it."""
    from types import SimpleNamespace

    from physml.devices import require_tensor_device

    tensor = SimpleNamespace(device=torch.device("cuda:0"))
    default, side = object(), object()
    monkeypatch.setattr(torch.cuda, "default_stream", lambda device=None: default)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: default)
    assert require_tensor_device("u0", tensor) == "cuda:0"
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: side)
    with pytest.raises(ValueError, match=r"u0: PyTorch's current stream on cuda:0 is not its "
                                         r"default stream.*outside `with torch.cuda.stream"):
        require_tensor_device("u0", tensor)


def test_forward_mode_differentiation_of_a_rollout_is_refused_naming_reverse_mode():
    u = torch.rand(16, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match=r"forward-mode .* use torch\.func\.vjp"):
        torch.func.jvp(lambda v: bridge.rollout(_heat(), v, 4, 2)[-1], (u,), (torch.ones_like(u),))


def test_an_unstable_sample_of_a_batch_is_named_with_its_parameters():
    u = torch.zeros(3, 16, dtype=torch.float64)
    nu = torch.tensor([0.01, 10.0, 0.01], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"sample 1 of the batch of 3 \(nu=10\): dt=.*bound "
                                         r"its output"):
        bridge.rollout(_heat(), u, 4, parameters={"nu": nu})


def _compiled_calls():
    """Each public differentiable entry point of the bridges as a function of one float64
    tensor, with two values of that tensor."""
    mesh = pm.disc(0.5)
    points = torch.tensor(mesh.points)
    f = torch.ones(mesh.n_vertices, dtype=torch.float64)
    matrix = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(6, 6), format="csr")
    values, indptr, indices = (torch.tensor(a) for a in (matrix.data, matrix.indptr,
                                                         matrix.indices))
    dense = torch.tensor(matrix.toarray())
    u0 = torch.sin(torch.linspace(0.0, 6.0, 16, dtype=torch.float64))
    heat = _heat()
    return {
        "rollout": (lambda u: bridge.rollout(heat, u, 4, 2), u0),
        "step": (lambda u: bridge.step(heat, u), u0),
        "csr_solve": (lambda v: csr_solve(v, torch.ones(6, dtype=torch.float64), indptr,
                                          indices), values),
        "implicit_solve": (lambda b: implicit_solve(
            b, [dense], matvec=lambda theta, x: theta[0] @ x,
            solve=lambda rhs: torch.linalg.solve(dense, rhs),
            solve_transpose=lambda g: torch.linalg.solve(dense.T, g)), values[:6]),
        "operator_values": (lambda p: operator_values(p, mesh), points),
        "sparse_solve": (lambda v: sparse_solve(v, torch.ones(6, dtype=torch.float64),
                                                matrix.indptr, matrix.indices), values),
        "poisson_solve": (lambda p: poisson_solve(p, mesh, f), points),
    }


def test_torch_compile_runs_the_solvers_eagerly_without_tracing_or_recompiling_them():
    from torch._dynamo.convert_frame import input_codes
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    package = Path(bridge.__file__).parent
    calls = _compiled_calls()
    for name, (function, x) in calls.items():
        def loss(t, function=function):
            return (1.0 + function(2.0 * t)).square().sum() * 3.0

        compiled = torch.compile(loss, backend="eager")
        for k, value in enumerate((x, x * 1.01)):
            frames = counters["frames"]["total"]
            got, want = value.clone().requires_grad_(), value.clone().requires_grad_()
            out, expected = compiled(got), loss(want)
            out.backward()
            expected.backward()
            assert torch.equal(out, expected) and torch.equal(got.grad, want.grad), name
            if k:  # a new input value runs the frames compiled for the first
                assert counters["frames"]["total"] == frames, name
    traced = {Path(code.co_filename) for code in (ref() for ref in input_codes.seen) if code}
    assert not [p for p in traced if package in p.parents or "warp" in p.parts]
    assert counters["stats"]["unique_graphs"] >= len(calls)  # the model around them compiled
