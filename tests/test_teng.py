"""TENG: initial fit, Heun beating Euler to 1e-5 on 1D heat, the least-squares solvers, their
fallbacks and timings, and resuming."""

import math
import re
import shutil

import pytest
import torch
from torch.func import jacrev, vmap

from physml import devices
from physml.devices import Stopwatch
from physml.models import MODELS, PeriodicMLP, build_model
from physml.train.least_squares import GramSolver, SVDSolver
from physml.train.teng import TENG, TENGPDE, input_width


def u0(X):
    return torch.sin(X[:, 0]) + 0.5 * torch.cos(2 * X[:, 0])


def exact(X, t, nu=0.1):
    return math.exp(-nu * t) * torch.sin(X[:, 0]) + 0.5 * math.exp(-4 * nu * t) * torch.cos(
        2 * X[:, 0])


def make(scheme, **kw):
    torch.manual_seed(0)
    model = PeriodicMLP(1, 1, width=16, depth=2)
    return TENG(model, TENGPDE("heat", 0.1), scheme=scheme, dt=0.01, points=256,
                iterations=3, dim=1, **kw)


@pytest.fixture(scope="module")
def initial_state():
    teng, progress = make("heun"), []
    error = teng.fit_initial(u0, points=1024, on_iteration=progress.append)
    return teng.theta.clone(), error, teng, progress


def test_initial_condition_is_fitted_below_1e9(initial_state):
    assert initial_state[1] <= 1e-9


def test_initial_fit_reports_progress_and_keeps_its_result(initial_state):
    theta, error, teng, progress = initial_state
    assert [p.iteration for p in progress] == list(range(1, len(progress) + 1))
    errors = [p.error for p in progress]
    assert errors == sorted(errors, reverse=True) and errors[-1] <= 1e-9 < errors[0]
    elapsed = [p.elapsed_s for p in progress]
    assert 0 < elapsed[0] and elapsed == sorted(elapsed)
    # What a checkpoint after the fit needs: the parameters and the error on fresh points.
    state = teng.state_dict()
    assert torch.equal(state["theta"], theta) and state["initial_error"] == error


def final_error(scheme, theta, t_end=0.5, **kw):
    teng = make(scheme, **kw)
    teng.theta = theta.clone()
    teng.run(t_end)
    # Test points on a shifted grid: never training points.
    test = torch.linspace(0, 2 * math.pi, 301, dtype=torch.float64)[:-1, None] + 0.01
    reference = exact(test, t_end)
    return float((teng.value(teng.theta, test) - reference).norm() / reference.norm())


def test_heun_reaches_1e5_and_beats_euler(initial_state):
    heun = final_error("heun", initial_state[0])
    euler = final_error("euler", initial_state[0])
    assert heun <= 1e-5
    assert euler > 10 * heun


@pytest.mark.parametrize("n, m", [(200, 50), (50, 200)])  # over- and under-determined
def test_gram_and_svd_least_squares_agree(n, m):
    gen = torch.Generator().manual_seed(1)
    J = torch.randn(n, m, generator=gen, dtype=torch.float64)
    r = torch.randn(n, generator=gen, dtype=torch.float64)
    gram, svd = GramSolver(torch.split(J, 64), r), SVDSolver([J], r)
    assert torch.allclose(gram.solve(), svd.solve(), atol=1e-10)
    assert torch.allclose(gram.solve(), GramSolver([J], r).solve(), atol=1e-12)
    for solver in (gram, svd):  # damping shortens the step
        assert solver.solve(1.0).norm() < 0.9 * solver.solve().norm()


def test_gram_solver_in_parameter_space_keeps_no_block():
    """The Jacobian is never held in one piece: every block is freed once accumulated."""
    import gc
    import weakref

    gen = torch.Generator().manual_seed(2)
    J = torch.randn(1000, 30, generator=gen, dtype=torch.float64)
    r = torch.randn(1000, generator=gen, dtype=torch.float64)
    alive = []

    def blocks():
        for start in range(0, 1000, 100):
            block = J[start : start + 100].clone()
            alive.append(weakref.ref(block))
            yield block

    solver = GramSolver(blocks(), r)
    gc.collect()
    assert len(alive) == 10 and all(ref() is None for ref in alive)
    assert torch.allclose(solver.solve(), torch.linalg.lstsq(J, r[:, None]).solution[:, 0],
                          atol=1e-12)
    with pytest.raises(ValueError, match="cover 100 rows, the residual has 1000"):
        GramSolver([J[:100]], r)


def test_fit_damps_an_update_that_would_raise_the_residual():
    torch.manual_seed(0)
    teng = TENG(PeriodicMLP(1, 1, width=8, depth=2), TENGPDE("heat", 0.1), points=64,
                iterations=1, dim=1)
    X = teng.sample(64)
    target = torch.sign(torch.sin(3 * X[:, 0]))  # far from the network's tangent space
    start = float((target - teng.value(teng.theta, X)).norm())
    columns = torch.arange(teng.theta.numel())
    plain = teng.theta + teng.least_squares(teng.theta, X, columns,
                                            target - teng.value(teng.theta, X)).solve()
    assert float((target - teng.value(plain, X)).norm()) > 100 * start  # Gauss-Newton overshoots
    fitted = teng.fit(teng.theta, X, target)
    assert float((target - teng.value(fitted, X)).norm()) < 0.99 * start


def test_gram_solve_falls_back_to_lstsq_and_says_why():
    """float32 and rank 5 of 50: rounding exceeds the 1e-12 jitter and Cholesky breaks down."""
    gen = torch.Generator().manual_seed(3)
    J = torch.randn(200, 5, generator=gen) @ torch.randn(5, 50, generator=gen)
    r = torch.randn(200, generator=gen)
    solver = GramSolver([J], r)
    assert solver.lstsq_fallbacks == 0
    delta = solver.solve()
    solver.solve(0.0)  # clamped to the smallest damping
    assert solver.lstsq_fallbacks == 2 and "Cholesky breaks down" in solver.fallback_reason
    best = torch.linalg.lstsq(J.double(), r.double()[:, None]).solution[:, 0]
    assert float((J @ delta - r).norm()) < 1.2 * float((J.double() @ best - r.double()).norm())
    healthy = GramSolver([J.double()], r.double())
    healthy.solve()
    assert healthy.lstsq_fallbacks == 0 and healthy.fallback_reason == ""


def test_teng_counts_lstsq_fallbacks_and_warns_once(monkeypatch):
    teng = make("euler")
    broken = torch.ones((), dtype=torch.int32)  # Cholesky's "not positive definite"
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda A: (A, broken))
    X = teng.sample(teng.n_points)
    target = teng.value(teng.theta, X) + 0.01 * torch.sin(X[:, 0])
    with pytest.warns(RuntimeWarning, match="TENG lstsq fallback: .*Cholesky") as caught:
        teng.fit(teng.fit(teng.theta, X, target), X, target)
    assert len(caught) == 1
    assert teng.fallbacks == {"lstsq": teng.solves, "full_jacobian": 0} and teng.solves >= 6
    assert "not numerically positive definite" in teng.fallback_reasons["lstsq"]


def test_solve_seconds_are_read_on_a_synchronised_clock(monkeypatch):
    synchronised = []
    monkeypatch.setattr(devices, "synchronize", synchronised.append)
    teng = make("euler")
    X = teng.sample(teng.n_points)
    teng.fit(teng.theta, X, teng.value(teng.theta, X) + 0.01 * torch.sin(X[:, 0]))
    # Each timed block (Gram accumulation and each solve) waits for the device at both ends.
    assert len(synchronised) >= 2 * (teng.iterations + teng.solves)
    assert set(synchronised) == {teng.device} and teng.solve_seconds > 0


def test_stopwatch_synchronises_cuda_and_warp_work(monkeypatch):
    import warp as wp

    calls = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d: calls.append(("torch", d)))
    monkeypatch.setattr(wp, "synchronize_device", lambda d: calls.append(("warp", d)))
    monkeypatch.setattr(devices, "_warp_started", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(wp, "get_cuda_device_count", lambda: 2)
    watch = Stopwatch("cuda:1")
    with watch:
        assert calls == [("torch", "cuda:1"), ("warp", "cuda:1")]
        watch.read()
    assert len(calls) == 6 and watch.seconds > 0
    assert watch.read() == watch.seconds and len(calls) == 6  # nothing running: no wait
    with Stopwatch("cpu"), Stopwatch(torch.device("cpu")):
        pass
    assert len(calls) == 6


def test_stopwatch_sees_that_warp_has_started():
    import warp as wp

    wp.init()
    assert devices._warp_started()


def test_solver_used_is_the_one_that_ran():
    assert make("euler").solver_used == "gram"  # "auto"
    assert make("euler", solver="gram").solver_used == "gram"
    assert make("euler", solver="dense").solver_used == "dense"


def test_state_dict_resumes_bitwise():
    """The steps (Gram, Cholesky, GEMM) are deterministic on the CPU: a run stopped after two
    steps and resumed from its state takes exactly the steps the whole run takes."""
    whole = make("heun")
    whole.run(0.02)
    state = whole.state_dict()
    whole.run(0.04)
    resumed = make("heun", seed=5)  # the state, not the construction, decides what follows
    resumed.load_state_dict(state)
    resumed.run(0.04)
    assert torch.equal(resumed.theta, whole.theta)
    assert (resumed.t, resumed.solves) == (whole.t, whole.solves)
    torch.manual_seed(0)
    wider = TENG(PeriodicMLP(1, 1, width=8, depth=2), TENGPDE("heat", 0.1), scheme="heun",
                 dt=0.01, points=256, iterations=3, dim=1)
    with pytest.raises(ValueError, match="the state's theta has shape .* this model's"):
        wider.load_state_dict(state)  # accepted, then failed at the next run


def test_jacobian_by_chunks_matches_one_piece():
    teng = make("euler")
    X = teng.sample(300)
    columns = torch.randperm(teng.theta.numel())[:40]
    whole = teng.jacobian(teng.theta, X, columns)
    teng.chunk = 64
    assert torch.equal(teng.jacobian(teng.theta, X, columns), whole)
    assert whole.shape == (300, 40)


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown TENG pde 'wave'"):
        TENGPDE("wave", 0.1)
    with pytest.raises(ValueError, match="unknown solver 'qr'"):
        make("heun", solver="qr")
    with pytest.raises(ValueError, match="unknown scheme 'rk9'"):
        make("rk9")


@pytest.mark.parametrize("name, value", [
    ("dt", 0.0), ("dt", float("nan")), ("points", 0), ("subsample", 0), ("iterations", 2.5),
    ("chunk", 0), ("dim", 0), ("dim", 3), ("length", -1.0), ("length", float("inf")),
    ("device", "gpu"), ("seed", -1),
    pytest.param("device", "cuda:0", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                              reason="a GPU is present")),
])
def test_a_bad_teng_argument_is_refused_naming_it_and_its_value(name, value):
    """One ValueError that starts with the argument and its value, not torch.split's error
    (chunk=0) or a run that leaves a coordinate out of u (dim=3 for a PeriodicMLP of two
    inputs, which picks its columns by index)."""
    with pytest.raises(ValueError, match=f"^{re.escape(f'{name}={value!r}')} "):
        TENG(PeriodicMLP(2, 1, width=4, depth=1), TENGPDE("heat", 0.1), **{name: value})


@pytest.mark.parametrize("nu", [float("nan"), float("inf"), -0.1, "0.1"])
def test_a_viscosity_that_is_not_a_finite_number_at_least_0_is_refused(nu):
    with pytest.raises(ValueError, match=f"^{re.escape(f'nu={nu!r}')} must be a finite number "
                                         ">= 0"):
        TENGPDE("heat", nu)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_model_kind_tells_its_input_width_and_a_teng_of_another_dim_is_refused(kind):
    model = build_model(kind, 2, 1, width=4, depth=2, periods=[2 * math.pi, None])
    assert input_width(model) == 2
    with pytest.raises(ValueError, match=f"^dim=1 does not match the model: its "
                                         f"{type(model).__name__} takes points of 2 "
                                         "coordinates; pass dim=2"):
        TENG(model, TENGPDE("heat", 0.1), dim=1)
    assert input_width(torch.nn.Sequential(model)) is None  # not known: not checked


def test_an_initial_state_of_the_wrong_shape_or_zero_is_refused():
    """u0 of shape (n, 1) once broadcast against (n,) to a shape error; amplitude 0 ran and
    reported a NaN blow-up (0/0 relative error) advising a smaller dt."""
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=r"u0 returned \(64, 1\) values for 64 points; "
                                         r"expected a tensor of shape \(64,\)"):
        make("heun").fit_initial(lambda X: torch.sin(X), points=64)
    with pytest.raises(ValueError, match="conditions.initial.amplitude: .*must not be 0"):
        load_case("teng_heat", ["variant=cpu", "conditions.initial.amplitude=0.0"])


def test_a_time_step_that_does_not_divide_the_span_or_the_times_is_refused():
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=r"training.dt=0.3 does not divide domain.t \(a span "
                                         r"of 4\) into whole steps"):
        load_case("teng_heat", ["variant=cpu", "training.dt=0.3"])
    with pytest.raises(ValueError, match="evaluation.times: 0.5 is not a time step of domain.t"):
        load_case("teng_heat", ["variant=cpu", "training.dt=0.4"])


@pytest.mark.parametrize("overrides, message", [
    (["domain.x=[0, 5]", "domain.y=[0, 5]"], "'cosh_sinh' is 2 pi-periodic"),
    (["domain.y=null", "conditions.initial.kind=sine", "conditions.initial.wavenumber=1.5"],
     "wavenumber=1.5 gives 1.5 periods"),
    (["evaluation.nx=33"], "evaluation.nx=33: .* give an even number"),
])
def test_a_case_the_periodic_network_cannot_represent_is_refused(overrides, message):
    from physml.cases.registry import load_case

    with pytest.raises(ValueError, match=message):
        load_case("teng_heat", ["variant=cpu", *overrides])


TINY_TENG = ["domain.y=null", "conditions.initial.kind=sine", "conditions.initial.amplitude=1.0",
             "model.width=8", "model.depth=2", "training.points=64",
             "training.subsample=64", "training.iterations=2", "training.dt=0.05",
             "training.initial_points=128", "training.checkpoint_every=2",
             "domain.t=[0, 0.2]", "evaluation.nx=32", "evaluation.every=2",
             "evaluation.times=[0.1, 0.2]", "evaluation.threshold=1.0e-2"]


def test_a_reference_too_coarse_for_the_threshold_is_refused_before_training(tmp_path):
    """2D Burgers on 16 evaluation nodes per axis: its reference on 32 keeps about 1e-2 of its
    amplitude in its highest modes by t = 1, more than a 1e-5 threshold can tell apart."""
    from physml.cases.registry import load_case, run_case

    case = load_case("teng_burgers", ["variant=cpu", "domain.t=[0, 1]", "evaluation.nx=16",
                                      "evaluation.times=[1.0]", "evaluation.threshold=1e-5",
                                      f"output.folder={tmp_path}"])
    with pytest.raises(ValueError, match=r"evaluation.nx=16: the spectral reference on 32 "
                                         r"nodes per axis keeps .* raise evaluation.nx"):
        run_case(case, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_teng_case_writes_the_error_curve_and_resumes_to_the_same_result(tmp_path):
    import json
    from pathlib import Path

    from physml.cases.registry import load_case, run_case

    path = Path(__file__).parents[1] / "cases" / "teng_heat.yaml"
    case = load_case(path, [*TINY_TENG, f"output.folder={tmp_path}"])
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()

    def interrupt_copy(entry):  # the run as it would be left if stopped during step 3
        if entry.get("step") == 3:
            shutil.copytree(whole, part, dirs_exist_ok=True)

    folder, result = run_case(case, whole, on_step=interrupt_copy)
    assert result["passed"] and set(result["errors_at"]) == {"0.1", "0.2"}
    curve = json.loads((folder / "errors.json").read_text())
    assert curve["t"][0] == 0.0 and len(curve["t"]) == len(curve["rel_l2"]) == 3
    assert (folder / "errors.png").is_file() and (folder / "predictions.h5").is_file()
    # Resume from the step-2 checkpoint (t = 0.1) to the end. Bitwise: the steps' arithmetic
    # (Gram accumulation, Cholesky, GEMM) gives identical results for identical inputs on the
    # CPU. Only the initial fit's QR least squares (MKL's gelsy) differs between identical calls
    # (~1e-10, amplified to ~1e-6 by four steps), which is why both runs share one initial fit.
    assert torch.load(part / "checkpoint.pt", weights_only=False)["t"] == pytest.approx(0.1)
    _, resumed = run_case(case, part, resume=True)
    theta_whole, theta_resumed = (torch.load(f / "checkpoint.pt", weights_only=False)["theta"]
                                  for f in (whole, part))
    assert torch.equal(theta_resumed, theta_whole)
    assert resumed["rel_l2"] == result["rel_l2"]
    history = json.loads((part / "metrics.json").read_text())["history"]
    assert [round(e["t"], 9) for e in history] == [0.0, 0.1, 0.2]


def test_a_resumed_run_shows_its_last_error_at_its_time_and_counts_time_to_its_checkpoint(
        tmp_path, cli_in_process):
    """The error is measured every evaluation.every steps: a later step's progress line showed
    it as if measured at that step's t, and a resumed run's showed none until its next
    measurement. A resumed run's wall_s went on from its last measurement, not its checkpoint."""
    import json

    from physml.cases.registry import load_case, run_case

    overrides = [*TINY_TENG, "evaluation.every=4", "evaluation.times=[0.2]",
                 "output.figures=false", f"output.folder={tmp_path}"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()

    def interrupt_copy(entry):  # as left if stopped during step 3: the checkpoint of step 2
        if entry.get("step") == 3:
            shutil.copytree(whole, part, dirs_exist_ok=True)

    run_case(load_case("teng_heat", overrides), whole, on_step=interrupt_copy)
    saved = torch.load(part / "checkpoint.pt", weights_only=False)
    (first,) = saved["history"]  # measured at t = 0 only
    result = cli_in_process("run", "teng_heat", *overrides, "--resume", str(part),
                            "--log-every", "0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "] teng_heat " in line]
    assert any(f"3/4 t 0.15 rel L2 {first['rel_l2']:.2e} at t 0" in line for line in lines)
    assert "4/4 t 0.2 rel L2 " in lines[-1] and " at t " not in lines[-1]
    assert saved["wall_s"] > first["wall_s"]  # the time of step 2, the checkpoint's
    summary = json.loads((part / "metrics.json").read_text())["summary"]
    assert summary["wall_s"] >= saved["wall_s"]


def test_a_teng_run_s_wall_s_includes_the_writing_of_its_results(tmp_path, monkeypatch):
    """wall_s stopped before errors.json, predictions.h5 and the figures were written."""
    import json
    import time

    from physml.cases import teng
    from physml.cases.registry import load_case, run_case

    write_dataset = teng.write_dataset

    def slow_write(ds, path):
        time.sleep(0.3)
        return write_dataset(ds, path)

    monkeypatch.setattr(teng, "write_dataset", slow_write)
    case = load_case("teng_heat", [*TINY_TENG, "training.initial_iterations=20",
                                   "output.figures=false", f"output.folder={tmp_path}"])
    (tmp_path / "run").mkdir()
    folder, result = run_case(case, tmp_path / "run")
    saved = torch.load(folder / "checkpoint.pt", weights_only=False)
    assert result["wall_s"] >= saved["wall_s"] + 0.3
    assert json.loads((folder / "metrics.json").read_text())["summary"]["wall_s"] == (
        result["wall_s"])


def test_teng_case_errors_name_the_key():
    from pathlib import Path

    from physml.cases.registry import load_case

    path = Path(__file__).parents[1] / "cases" / "teng_heat.yaml"
    with pytest.raises(ValueError, match="needs model.kind 'periodic'"):
        load_case(path, ["model.kind=mlp"])
    with pytest.raises(ValueError, match="unknown variant 'gpu'; allowed: cpu"):
        load_case(path, ["variant=gpu"])
    with pytest.raises(ValueError, match="supports pde.name heat, allen_cahn, burgers"):
        load_case(path, ["pde.name=convection", "pde.beta=1.0"])


def test_outer_product_jacobian_matches_autodiff():
    teng = make("euler")
    assert teng._outer_jacobian is not None
    X = teng.sample(300)
    columns = torch.randperm(teng.theta.numel())[:100]
    outer = teng.jacobian(teng.theta, X, columns)
    autodiff = vmap(jacrev(teng._scalar), in_dims=(None, 0))(teng.theta, X)[:, columns]
    assert torch.allclose(outer, autodiff, rtol=1e-13, atol=1e-15)
    assert teng.fallbacks == {"lstsq": 0, "full_jacobian": 0}


class Scaled(torch.nn.Module):
    """A network with a parameter outside its linear layers."""

    def __init__(self):
        super().__init__()
        self.inner = PeriodicMLP(1, 1, width=8, depth=2)
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.scale * self.inner(x)


class Shared(torch.nn.Module):
    """A network that applies one linear layer twice."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))


@pytest.mark.parametrize("network", [Scaled, Shared])
def test_jacobian_of_other_networks_falls_back_to_autodiff(network):
    torch.manual_seed(0)
    teng = TENG(network(), TENGPDE("heat", 0.1), points=32, dim=1)
    assert teng._outer_jacobian is None
    X = teng.sample(32)
    columns = torch.arange(teng.theta.numel())
    with pytest.warns(RuntimeWarning, match="TENG full_jacobian fallback") as caught:
        J = teng.jacobian(teng.theta, X, columns)
        teng.jacobian(teng.theta, X, columns)
    assert len(caught) == 1 and teng.fallbacks["full_jacobian"] == 2
    why = {Scaled: "parameter 'scale' is not the weight or bias of an nn.Linear",
           Shared: "layer 'layer' runs 2 times per forward pass"}[network]
    assert teng.fallback_reasons["full_jacobian"].startswith(why)
    assert "O(chunk * p) memory" in teng.fallback_reasons["full_jacobian"]
    step = 1e-6 * torch.eye(teng.theta.numel(), dtype=torch.float64)
    difference = torch.stack([(teng.value(teng.theta + e, X) - teng.value(teng.theta - e, X))
                              / 2e-6 for e in step], dim=1)
    assert torch.allclose(J, difference, atol=1e-8)


class SineProduct(torch.nn.Module):
    """$u = a\\sin x\\cos y$: $\\Delta u = -2u$ and $u_x + u_y = a\\cos(x + y)$."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, X):
        return (self.a * torch.sin(X[:, 0]) * torch.cos(X[:, 1]))[:, None]


@pytest.mark.parametrize("name", ["heat", "allen_cahn", "burgers"])
def test_rhs_is_the_pde_operator_of_a_closed_form_field(name):
    """TENG.rhs (automatic x-derivatives, then TENGPDE.rhs) against $F[u]$ by hand."""
    nu = 0.1
    teng = TENG(SineProduct(), TENGPDE(name, nu), points=64, dim=2)
    X = teng.sample(64)
    u = 1.5 * torch.sin(X[:, 0]) * torch.cos(X[:, 1])
    exact = {"heat": -2 * nu * u,
             "allen_cahn": -2 * nu * u + u - u**3,
             "burgers": -2 * nu * u - u * 1.5 * torch.cos(X[:, 0] + X[:, 1])}[name]
    torch.testing.assert_close(teng.rhs(teng.theta, X), exact, rtol=1e-13, atol=1e-14)


def test_a_prediction_that_becomes_non_finite_stops_the_run_at_its_step(tmp_path, monkeypatch):
    """Finite parameters do not make a finite field: the run checks the prediction where it
    measures it, and names the step and the checkpoint kept. The stopped run keeps a
    ``metrics.json`` of the errors measured so far, as the other kinds' stopped runs do."""
    import json

    from physml.cases import teng as teng_case
    from physml.cases.registry import load_case, run_case
    from physml.solvers.errors import BlowUpError

    case = load_case("teng_heat", [*TINY_TENG, "training.initial_iterations=20",
                                   f"output.folder={tmp_path}"])
    real, calls = teng_case.Reference.error, []

    def overflowing(self, teng, theta, index):
        calls.append(index)
        error, prediction = real(self, teng, theta, index)
        return (math.nan, prediction) if len(calls) == 3 else (error, prediction)

    monkeypatch.setattr(teng_case.Reference, "error", overflowing)
    with pytest.raises(BlowUpError, match="the TENG prediction u became NaN/Inf on the "
                                          "evaluation grid at step") as caught:
        run_case(case, tmp_path)
    assert "the checkpoint of step" in str(caught.value) and caught.value.step > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    summary = metrics["summary"]
    assert summary["passed"] is False and summary["stopped"] == str(caught.value)
    assert (summary["stopped_step"], summary["checkpoint_step"], summary["steps"]) == (4, 2, 3)
    assert [e["step"] for e in metrics["history"]] == [0, 2]


@pytest.mark.parametrize("u0_bad, kwargs, message", [
    (lambda X: u0(X) * float("nan"), {}, r"u0 returned NaN/Inf at 32 of 32 points; the initial "
                                         "condition must be finite"),
    (lambda X: 0 * X[:, 0], {}, r"u0 is zero at all 32 points: the fit's relative error "),
    (u0, {"points": 0}, r"points=0 must be a whole number >= 1"),
    (u0, {"points": 32, "tolerance": "1e-4"}, r"tolerance='1e-4' must be a finite number >= 0"),
    (u0, {"points": 32, "max_iterations": -1}, r"max_iterations=-1 must be a whole number >= 0"),
])
def test_an_initial_fit_of_a_non_finite_or_zero_u0_or_a_bad_count_is_refused(u0_bad, kwargs,
                                                                              message):
    """NaN in u0 ended in an MKL DGELSD error and a PyTorch internal assert; a zero u0
    returned inf and points=0 nan, without a word."""
    with pytest.raises(ValueError, match=f"^{message}"):
        make("heun").fit_initial(u0_bad, **{"points": 32, "max_iterations": 1, **kwargs})


@pytest.mark.parametrize("t_end", [float("nan"), float("inf"), "0.01"])
def test_a_run_to_a_time_that_is_not_a_finite_number_is_refused(t_end):
    """nan failed in round() with 'cannot convert float NaN to integer'."""
    with pytest.raises(ValueError, match=f"^{re.escape(f't_end={t_end!r}')} must be a finite"):
        make("euler").run(t_end)


def test_a_model_of_more_than_one_output_is_refused():
    """It ran, evolving output 0 and carrying output 1 along untrained."""
    with pytest.raises(ValueError, match=r"^model maps one point to values of shape \(1, 2\); "
                                         "TENG evolves one scalar field"):
        TENG(PeriodicMLP(1, 2, width=4, depth=1), TENGPDE("heat", 0.1), dim=1)


def test_theta_is_written_into_the_model_only_on_request():
    teng = make("euler")
    teng.fit_initial(u0, points=64, max_iterations=2)
    X = teng.sample(8)
    assert not torch.equal(teng.model(X)[:, 0], teng.value(teng.theta, X))  # left as it was
    assert torch.equal(teng.write_theta_to_model()(X)[:, 0], teng.value(teng.theta, X))


def test_a_non_finite_target_raises_blow_up_before_time_advances():
    """An overflowing right-hand side makes every fit reject its updates: without the check
    the run froze theta while t advanced, silently."""
    from torch import nn

    from physml.solvers.errors import BlowUpError

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        model[2].weight.mul_(1e110)  # u ~ 1e110: u - u**3 overflows
    teng = TENG(model, TENGPDE("allen_cahn", 0.01), scheme="euler", dt=0.01, points=64,
                subsample=64, iterations=1)
    theta0 = teng.theta.clone()
    with pytest.raises(BlowUpError, match=r"u became NaN/Inf .* at step 1 \(t=0.01\)") as caught:
        teng.run(0.05)
    assert (caught.value.step, caught.value.field, caught.value.last_good_step) == (1, "u", 0)
    assert teng.t == 0.0 and torch.equal(teng.theta, theta0)
    assert torch.equal(torch.from_numpy(caught.value.last_good_state), theta0)


def test_a_theta_set_to_nan_by_hand_is_named_with_no_good_step_kept():
    """The error said "last finite state kept from step 0" and kept the NaN theta as it."""
    from physml.solvers.errors import BlowUpError

    teng = make("euler")
    teng.theta = torch.full_like(teng.theta, float("nan"))
    with pytest.raises(BlowUpError, match="theta holds NaN/Inf before the step") as caught:
        teng.run(teng.dt)
    assert caught.value.last_good_step is None and caught.value.last_good_state is None
    assert "last finite state" not in str(caught.value)


def test_a_fit_to_a_finite_target_beyond_1e154_still_updates():
    """The plain 2-norm of a residual of 1e200 overflows to inf and inf < inf is false: every
    update was rejected and theta froze without a word while the run went on."""
    from physml.train.teng import scaled_norm

    teng = make("euler")
    X = teng.sample(64)
    target = teng.value(teng.theta, X) + 1e200 * torch.sin(X[:, 0])
    start = target - teng.value(teng.theta, X)
    assert math.isinf(float(start.norm()))
    fitted = teng.fit(teng.theta, X, target)
    assert scaled_norm(target - teng.value(fitted, X)) < 0.5 * scaled_norm(start)


def test_an_initial_fit_to_values_beyond_1e154_lowers_its_error():
    """The plain norms of u0 ~ 1e200 overflow: the relative error was inf/inf = NaN, so no
    step was kept, fit_initial returned NaN and did not warn."""
    progress = []
    with pytest.warns(RuntimeWarning, match="fit_initial stopped at training error"):
        error = make("euler").fit_initial(lambda X: 1e200 * torch.sin(X[:, 0]), points=64,
                                          max_iterations=1, on_iteration=progress.append)
    assert progress[-1].error < 0.5 and 0 < error < 0.5


@pytest.mark.parametrize("case", ["residual", "updates"])
def test_a_fit_that_can_keep_no_update_raises_blow_up_at_its_step(case, monkeypatch):
    """A residual whose norm is beyond the float range, or updates that all make u NaN/Inf,
    left theta as it was and the run went on: now the step is named."""
    from physml.solvers.errors import BlowUpError

    teng = make("euler")
    X = teng.sample(64)
    target = teng.value(teng.theta, X) + math.sin(1.0)
    if case == "residual":  # finite values, whose norm is not
        target = torch.full_like(target, 1.5e308)
    else:
        real = teng.least_squares

        def diverging(*args):
            solver = real(*args)
            monkeypatch.setattr(solver, "solve", lambda damping: torch.full(
                (teng.subsample,), math.inf, dtype=torch.float64))
            return solver

        monkeypatch.setattr(teng, "least_squares", diverging)
    teng.t = 0.04
    what = {"residual": r"is too far from a fit's target: the residual's norm is inf",
            "updates": r"became NaN/Inf in every update of a fit \(relative damping"}[case]
    with pytest.raises(BlowUpError, match=rf"^u {what}.* at step 5 \(t=0.05\)") as caught:
        teng.fit(teng.theta, X, target)
    assert (caught.value.step, caught.value.last_good_step) == (5, 4)


def test_the_heat_reference_takes_one_exact_step_per_evaluation_time(monkeypatch):
    """ETDRK4 is exact for a linear PDE, yet the reference stepped at 2.5e-3 whatever the span:
    T = 4000 took 1.6 million steps (19 minutes) before the first progress line."""
    from physml.cases.registry import load_case
    from physml.cases.teng import Reference
    from physml.spectral import SpectralSolver

    solver = SpectralSolver.heat((16,), 0.1, 2.5e-3)
    u0 = torch.sin(solver.coords()[0]) + 0.5 * torch.cos(3 * solver.coords()[0])
    stepped = solver.rollout(u0, 400, save_every=200)[1:]  # t = 0.5, 1
    torch.testing.assert_close(solver.solve(u0, [0.5, 1.0]), stepped, rtol=0, atol=1e-13)

    def no_steps(self, v):
        raise AssertionError("the heat reference took an ETDRK4 step")

    monkeypatch.setattr(SpectralSolver, "step_hat", no_steps)
    case = load_case("teng_heat", [*TINY_TENG, "training.dt=40", "domain.t=[0, 4000]",
                                   "evaluation.times=[4000]", "evaluation.every=50"])
    reference = Reference(case, [0.0, 2000.0, 4000.0], 40.0)
    x = torch.from_numpy(reference.coords[0])
    torch.testing.assert_close(reference.states[-1], math.exp(-0.1 * 4000) * torch.sin(x),
                               rtol=0, atol=1e-15)  # u0's rounding, in the mean, stays


def test_a_nonlinear_reference_reports_its_steps_to_the_progress_line(tmp_path, cli_in_process):
    """A long Allen-Cahn or Burgers reference ran for minutes before the first line."""
    from physml.cases.registry import load_case
    from physml.cases.teng import Reference

    case = load_case("teng_allen_cahn", TINY_TENG)
    records = []
    Reference(case, [0.0, 0.1, 0.2], 0.05, records.append)
    assert [r["status"] for r in records[::20]] == [
        f"spectral reference: step {k} of 80" for k in (1, 21, 41, 61)]
    assert records[-1] == {"status": "spectral reference: step 80 of 80"}  # no step: none done
    result = cli_in_process("run", "teng_allen_cahn", *TINY_TENG, "training.initial_iterations=2",
                            "evaluation.threshold=null", f"output.folder={tmp_path}",
                            "--log-every", "0")
    assert result.returncode == 0, result.stderr
    assert "0/4 spectral reference: step 80 of 80" in result.stderr


def test_an_initial_fit_stopped_above_its_tolerance_warns_with_the_error_reached():
    """It returned at max_iterations with the tolerance unmet, without a word."""
    import warnings

    progress = []
    with pytest.warns(RuntimeWarning, match=r"fit_initial stopped at training error \S+ > "
                      r"tolerance=1e-10 after 2 iterations \(max_iterations=2\); raise "
                      r"max_iterations") as caught:
        make("euler").fit_initial(u0, points=64, max_iterations=2, on_iteration=progress.append)
    assert f"{progress[-1].error:.3e}" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make("euler").fit_initial(u0, points=64, tolerance=0.5, max_iterations=2)


@pytest.mark.parametrize("scheme", ["heun", "ssp_rk3", "rk4"])
def test_each_scheme_meets_the_error_its_order_implies_on_heat(initial_state, scheme):
    """Heat's fastest mode here, cos 2x, decays at the rate r = 4 nu; an order-p scheme's
    amplification factor is off by about (r dt)^(p+1) / (p+1)! a step, so after t / dt steps
    the relative error is about (t / dt) (r dt)^(p+1) / (p+1)!: allowed twice that plus the
    fits' floor (1e-8; the initial fit is below 1e-9). ssp_rk3's weights are not symmetric
    (rk4's are, its stages are not): combined in reverse order they leave an error of 3e-5,
    which euler and heun, whose weights are symmetric, cannot show."""
    from physml.solvers.timestepping import tableau

    t_end, dt, rate = 0.2, 0.01, 4 * 0.1
    p = tableau(scheme).order
    truncation = (t_end / dt) * (rate * dt) ** (p + 1) / math.factorial(p + 1)
    assert final_error(scheme, initial_state[0], t_end=t_end) <= 2 * truncation + 1e-8
