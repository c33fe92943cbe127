"""The solver objects as a training loop uses them: which attributes may be set after they are
built, pickling (a ``DataLoader`` worker under spawn), and tensors that require grad."""

import copy
import pickle
import re

import numpy as np
import pytest
import torch

from physml.solvers import (
    AdvectionSolver1D,
    BurgersSolver1D,
    Grid,
    HeatSolver1D,
    HeatSolver2D,
    NavierStokesSolver2D,
    dirichlet,
    periodic,
)
from physml.solvers import mesh as pm

G1 = Grid((32,), (0.0,), (1.0,))
U1 = np.sin(2 * np.pi * G1.coords(0))


def test_what_a_solver_is_built_with_is_read_only():
    """scheme, limiter, bc, dtype, ... were read once into the solver's kernels and arrays: a
    new value was silently ignored (while repr showed it). Setting one is refused; the
    parameters, dt and theta stay settable and are honoured."""
    heat = HeatSolver1D(G1, periodic(1), nu=0.01, dt=4e-2, scheme="rk4")
    for name, value in (("scheme", "euler"), ("bc", dirichlet(1)), ("dtype", "float32"),
                        ("limiter", "minmod"), ("grid", G1), ("device", "cpu")):
        with pytest.raises(AttributeError, match=re.escape(
                f"HeatSolver1D.{name} is fixed when the solver is built")):
            setattr(heat, name, value)
    assert "scheme='rk4'" in repr(heat)
    with pytest.raises(AttributeError, match="BurgersSolver1D.limiter is fixed"):
        BurgersSolver1D(G1, nu=0.01, dt=1e-3).limiter = "minmod"
    with pytest.raises(AttributeError, match="AdvectionSolver1D.space is fixed"):
        AdvectionSolver1D(G1, beta=1.0, dt=1e-3).space = "central"
    ns = NavierStokesSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), nu=1e-3, dt=1e-3)
    for name in ("grid", "dtype", "scheme"):
        with pytest.raises(AttributeError, match=f"NavierStokesSolver2D.{name} is fixed"):
            setattr(ns, name, None)
    ns.nu, ns.forcing, ns.dt = 2e-3, 0.1, 2e-3

    heat.nu, heat.dt = 0.02, 2e-2
    fresh = HeatSolver1D(G1, periodic(1), nu=0.02, dt=2e-2, scheme="rk4")
    np.testing.assert_array_equal(heat.rollout(U1, 4), fresh.rollout(U1, 4))
    imex = HeatSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), nu=0.01, dt=1e-2, scheme="imex")
    imex.theta = 1.0
    u2 = np.outer(np.sin(np.pi * np.arange(8) / 8), np.ones(8))
    np.testing.assert_array_equal(
        imex.rollout(u2, 3), HeatSolver2D(imex.grid, nu=0.01, dt=1e-2, scheme="imex",
                                          theta=1.0).rollout(u2, 3))



def test_theta_and_check_every_set_on_a_built_solver_are_checked_as_the_constructor_does():
    """theta outside [1/2, 1] set on an IMEX solver was used by the next rollout (the
    constructor refuses it), and check_every = 0 or 2.5 failed there in slicing or a modulo.
    Each is refused as it is set, with the constructor's message, and the solver keeps its
    value; a whole float is kept as an int."""
    imex = HeatSolver1D(G1, nu=0.01, dt=1e-2, scheme="imex")
    for theta in (0.2, 5.0):
        message = re.escape(f"theta={theta} must lie in [0.5, 1]")
        with pytest.raises(ValueError, match=message):
            HeatSolver1D(G1, nu=0.01, dt=1e-2, scheme="imex", theta=theta)
        with pytest.raises(ValueError, match=message):
            imex.theta = theta
    with pytest.raises(ValueError, match=re.escape("theta='0.7' must be a number in [0.5, 1]")):
        imex.theta = "0.7"
    assert imex.theta == 0.5
    ns = NavierStokesSolver2D(Grid((8, 8), (0.0, 0.0), (1.0, 1.0)), nu=1e-3, dt=1e-3)
    for solver in (imex, ns):
        for value in (0, 2.5, "2"):
            with pytest.raises(ValueError, match=re.escape(
                    f"check_every={value!r} must be a whole number >= 1")):
                solver.check_every = value
        assert solver.check_every == 50
        solver.check_every = 2.0
        assert type(solver.check_every) is int and solver.check_every == 2
    np.testing.assert_array_equal(imex.rollout(U1, 3), HeatSolver1D(
        G1, nu=0.01, dt=1e-2, scheme="imex", check_every=2).rollout(U1, 3))


def test_with_parameters_refuses_a_tensor_that_requires_grad_by_name():
    """with_parameters(nu=<tensor that requires grad>) met PyTorch's "Can't call numpy() on
    Tensor that requires grad"; it is refused as the constructor and setting nu refuse it."""
    nu = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    solver = HeatSolver1D(G1, nu=0.01, dt=1e-3)
    with pytest.raises(ValueError, match=re.escape(
            "nu is a tensor that requires grad; HeatSolver1D does not differentiate: use "
            "physml.bridge.rollout(solver, u0, n_steps, parameters={'nu': nu}) for gradients "
            "in nu, or pass nu.detach()")):
        solver.with_parameters(nu=nu)
    assert solver.with_parameters(nu=nu.detach()).nu == 0.02

@pytest.mark.parametrize("make, name, value, per_sample", [
    (lambda: BurgersSolver1D(G1, nu=0.01, dt=1e-3, limiter="minmod", threads=2),
     "nu", 0.015, [0.01, 0.02]),
    (lambda: HeatSolver1D(G1, dirichlet(1, 0.3), nu=0.01, dt=1e-3, scheme="imex",
                          dtype="float32"), "nu", 0.02, [0.01, 0.03]),
    (lambda: AdvectionSolver1D(G1, beta=1.0, dt=5e-3, space="central", scheme="rk4"),
     "beta", (1.5,), [[1.0], [-0.5]]),
], ids=["burgers", "heat_imex_float32", "advection_central"])
def test_a_grid_solver_pickles_and_rolls_out_bitwise(make, name, value, per_sample):
    """A grid solver holds Warp arrays and devices, which do not pickle, so a Dataset holding
    one failed in a DataLoader worker under spawn or forkserver. It pickles as its settings
    (those set after it was built included) and rebuilds its Warp state."""
    solver = make()
    setattr(solver, name, value)
    solver.dt *= 0.5
    solver.rollout(U1, 2)  # work arrays and recorded launches, which are not pickled
    restored = pickle.loads(pickle.dumps(solver))
    assert copy.copy(solver).stages is solver.stages  # a copy shares the Warp state
    assert repr(restored) == repr(solver)
    assert restored.stages.threads == solver.stages.threads
    assert restored.bc == solver.bc and restored.limiter == solver.limiter
    np.testing.assert_array_equal(restored.rollout(U1, 6, 2), solver.rollout(U1, 6, 2))
    batch = np.stack([U1, 0.5 * U1])
    np.testing.assert_array_equal(restored.rollout(batch, 4, parameters={name: per_sample}),
                                  solver.rollout(batch, 4, parameters={name: per_sample}))
    with pytest.raises(AttributeError, match="scheme is fixed"):
        restored.scheme = "euler"


def test_a_tensor_that_requires_grad_is_refused_with_what_differentiates():
    """A parameter, a Navier-Stokes state and the mesh solvers' inputs that require grad met
    PyTorch's "Can't call numpy() on Tensor that requires grad", which names no way to get
    gradients. Each is refused naming the differentiable path (or that there is none)."""
    nu = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
    bridge = re.escape("use physml.bridge.rollout(solver, u0, n_steps, parameters={'nu': nu}) "
                       "for gradients in nu, or pass nu.detach()")
    with pytest.raises(ValueError, match="nu is a tensor that requires grad; BurgersSolver1D "
                                         "does not differentiate: " + bridge):
        BurgersSolver1D(G1, nu=nu, dt=1e-3)
    solver = HeatSolver1D(G1, nu=0.01, dt=1e-3)
    with pytest.raises(ValueError, match="HeatSolver1D does not differentiate: " + bridge):
        solver.nu = nu
    assert solver.nu == 0.01
    with pytest.raises(ValueError, match=re.escape("parameters['nu'] is a tensor that requires "
                                                   "grad; solver.rollout does not differentiate")):
        solver.rollout(U1, 2, parameters={"nu": nu})
    np.testing.assert_array_equal(solver.rollout(U1, 2, parameters={"nu": nu.detach()}),
                                  solver.rollout(U1, 2))

    grid = Grid((8, 8), (0.0, 0.0), (1.0, 1.0))
    none = "does not differentiate, and physml has no differentiable counterpart"
    with pytest.raises(ValueError, match="nu is a tensor that requires grad; "
                                         "NavierStokesSolver2D " + none):
        NavierStokesSolver2D(grid, nu=nu, dt=1e-3)
    ns = NavierStokesSolver2D(grid, nu=1e-3, dt=1e-3)
    omega = torch.ones(8, 8, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="u0 is a tensor that requires grad; "
                                         "NavierStokesSolver2D.rollout " + none):
        ns.rollout(omega, 2)
    with pytest.raises(ValueError, match="NavierStokesSolver2D " + none):
        ns.forcing = nu

    mesh = pm.disc(0.3)
    f = torch.ones(mesh.n_vertices, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=re.escape(
            "f is a tensor that requires grad; mesh.poisson does not differentiate: use "
            "physml.mesh_bridge.poisson_solve for gradients, or pass f.detach()")):
        pm.poisson(mesh, f)
    with pytest.raises(ValueError, match="g is a tensor that requires grad"):
        pm.poisson(mesh, np.ones(mesh.n_vertices), g=nu)
    with pytest.raises(ValueError, match="u0 is a tensor that requires grad; mesh.heat does "
                                         "not differentiate: compose physml.mesh_bridge"):
        pm.heat(mesh, f, dt=0.01, n_steps=2, kappa=1.0)
    with pytest.raises(ValueError, match="kappa is a tensor that requires grad"):
        pm.heat(mesh, f.detach(), dt=0.01, n_steps=2, kappa=nu)


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_warp_float_types_are_named_without_numpy_reading_them(monkeypatch, name):
    """Before NumPy 2.4 and Warp 1.19, ``np.dtype(wp.float32)`` is ``dtype('O')``: every mesh
    solve and ``csr_from_scipy`` refused Warp's own float types ("dtype=... is not supported")
    on the versions pyproject.toml admits (and on every Python 3.10 install)."""
    import warp as wp

    from physml.solvers.dtypes import float_name, warp_dtype

    warp_type = getattr(wp, name)
    monkeypatch.delattr(warp_type, "__numpy_dtype__", raising=False)
    assert np.dtype(warp_type) == np.dtype(object)  # what older NumPy and Warp see
    assert float_name(warp_type) == name
    assert warp_dtype(warp_type) is warp_type
    with pytest.raises(ValueError, match="allowed: float32, float64"):
        float_name(wp.float16)


def test_step_refuses_a_tensor_that_requires_grad_as_rollout_does():
    """``step`` raised PyTorch's RuntimeError ("Can't call numpy() on Tensor that requires
    grad") where ``rollout`` points to the bridge."""
    heat = HeatSolver1D(G1, nu=0.01, dt=1e-3)
    u = torch.tensor(U1, requires_grad=True)
    with pytest.raises(ValueError, match=re.escape(
            "u is a tensor that requires grad; solver.step does not differentiate: use "
            "physml.bridge.rollout for gradients, or pass u.detach()")):
        heat.step(u)
    np.testing.assert_array_equal(heat.step(u.detach()), heat.rollout(U1, 1)[-1])


@pytest.mark.parametrize(("value", "what"), [
    ("0.01", "text"), (b"0.01", "text"), (np.array(["0.01"]), "text"), (True, "a bool"),
    (np.bool_(True), "a bool"), ([True], "a bool"), (torch.tensor(True), "a bool"),
    ([[True]], "a bool"), ([0.01, True], "a bool"), ([np.array(True)], "a bool"),
    (np.array([0.01, True], dtype=object), "a bool"), ([["0.01"]], "text")])
def test_physical_parameters_refuse_text_and_bools(value, what):
    """``nu="0.01"`` and ``nu=True`` were read as 0.01 and 1 (``n_steps=True`` is refused);
    refused when built, set, given to ``with_parameters`` or to a rollout."""
    message = f"nu={value!r} must be a number, not {what}"
    with pytest.raises(ValueError, match=re.escape(message)):
        HeatSolver1D(G1, nu=value, dt=1e-4)
    heat = HeatSolver1D(G1, nu=0.01, dt=1e-4)
    with pytest.raises(ValueError, match=re.escape(message)):
        heat.with_parameters(nu=value)
    with pytest.raises(ValueError, match=re.escape(message)):
        heat.nu = value
    with pytest.raises(ValueError, match=re.escape(f"parameters['nu']={value!r} must be a "
                                                   f"number, not {what}")):
        heat.rollout(U1, 1, parameters={"nu": value})
    with pytest.raises(ValueError, match=re.escape(f"beta={value!r} must be a number")):
        AdvectionSolver1D(G1, beta=value, dt=1e-4)
    heat.nu = np.float32(0.02)  # numbers of any kind stay accepted
    heat.nu = torch.tensor(0.02, dtype=torch.float64)
    assert HeatSolver1D(G1, nu=np.int64(1), dt=1e-4).nu == 1.0
