"""Fourier pseudo-spectral ETDRK4 references: exact heat decay, Burgers against Cole–Hopf,
Allen–Cahn against closed forms, fourth order in time, spectral accuracy in space, band-limited
interpolation."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import ellipj, ellipk

from physml.solvers.errors import BlowUpError
from physml.solvers.exact import burgers_cole_hopf
from physml.spectral import SpectralSolver


def relative(a, b):
    return float((a - b).norm() / b.norm())


def test_heat_matches_the_exact_decay_in_2d():
    solver = SpectralSolver.heat((32, 32), 0.1, dt=0.05)
    X, Y = solver.mesh()
    modes = [(1.0, 1, 2, 0.0), (0.3, 3, 1, 0.7)]  # amplitude, kx, ky, phase
    def exact(t):
        return sum(a * math.exp(-0.1 * (kx**2 + ky**2) * t) * torch.cos(kx * X + ky * Y + p)
                   for a, kx, ky, p in modes)
    states = solver.solve(exact(0.0), [0.0, 1.0, 4.0])
    for state, t in zip(states, [0.0, 1.0, 4.0]):
        assert relative(state, exact(t)) <= 1e-12


def test_heat_matches_the_exact_decay_on_a_period_other_than_two_pi():
    solver = SpectralSolver.heat((256,), 0.1, dt=0.01, length=4.0)
    (x,) = solver.mesh()
    states = solver.solve(torch.sin(math.pi / 2 * x) + torch.cos(math.pi * x), [0.0, 0.5])
    exact = (math.exp(-0.1 * (math.pi / 2) ** 2 * 0.5) * torch.sin(math.pi / 2 * x)
             + math.exp(-0.1 * math.pi ** 2 * 0.5) * torch.cos(math.pi * x))
    assert relative(states[-1], exact) <= 1e-13


@pytest.mark.parametrize("make", [
    lambda n, dt: SpectralSolver.allen_cahn((n,), 0.02, dt),
    lambda n, dt: SpectralSolver.burgers((n,), 0.1, dt),
])
def test_fourth_order_in_time_and_spectral_in_space(make):
    def solve(n, dt):
        solver = make(n, dt)
        (x,) = solver.mesh()
        return solver.solve(0.5 * torch.sin(x) + 0.3 * torch.cos(2 * x + 0.4), [1.0])[-1]

    fine = solve(256, 1 / 800)
    errors = [relative(solve(256, dt), fine) for dt in (1 / 50, 1 / 100, 1 / 200)]
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all((3.7 < orders) & (orders < 4.6)), orders
    assert errors[-1] < 1e-8  # so the 1/800 reference carries about 1e-10 (4^-4 of it)
    # Resolution: 128 and 256 points agree to 1e-10 on the common nodes.
    assert relative(solve(128, 1 / 800), fine[::2]) < 1e-10


def test_burgers_is_fourth_order_in_time_against_cole_hopf():
    """$u_0 = -\\sin(\\pi x)$ is 2-periodic, so Cole–Hopf on the line is the exact periodic
    solution on $[0, 2)$. At 128 nodes the space error is below 1e-10 (256 nodes agree)."""
    nu, t_end = 0.05, 0.5
    errors = []
    for dt in (1 / 50, 1 / 100, 1 / 200):
        solver = SpectralSolver.burgers((128,), nu, dt, length=2.0)
        (x,) = solver.mesh()
        u = solver.solve(-torch.sin(math.pi * x), [t_end])[-1]
        exact = torch.from_numpy(burgers_cole_hopf(x.numpy(), t_end, nu))
        errors.append(relative(u, exact))
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all((3.9 < orders) & (orders < 4.1)), orders
    assert errors[-1] < 2e-9


def test_2d_burgers_matches_the_diagonal_cole_hopf_solution():
    """$u(x, y, t) = w(x + y, 2t)$, $w$ the 1D Cole–Hopf solution: on $u = v(x + y)$ the 2D
    equation $u_t = \\nu\\Delta u - u(u_x + u_y)$ reads $v_t = 2\\nu v'' - 2vv'$."""
    nu, t_end, n = 0.05, 0.5, 64
    solver = SpectralSolver.burgers((n, n), nu, dt=1 / 100, length=2.0)
    X, Y = solver.mesh()
    u = solver.solve(-torch.sin(math.pi * (X + Y)), [t_end])[-1]
    # x_i + y_j = (i + j) dx takes 2n - 1 values: evaluate the quadrature there only
    i, j = np.indices(solver.n)
    sums = np.arange(2 * n - 1) * (2.0 / n)
    exact = torch.from_numpy(burgers_cole_hopf(sums, 2 * t_end, nu)[i + j])
    assert relative(u, exact) < 5e-7


def test_uniform_allen_cahn_state_is_fourth_order_against_its_closed_form():
    """A uniform state solves $u' = \\rho(u - u^3)$, i.e. $(u^2)' = 2\\rho u^2(1 - u^2)$:
    $u = u_0e^{\\rho t}/\\sqrt{1 - u_0^2 + u_0^2e^{2\\rho t}}$."""
    rho, u0, t_end = 2.0, 0.2, 2.0
    growth = math.exp(rho * t_end)
    exact = u0 * growth / math.sqrt(1 - u0**2 + (u0 * growth) ** 2)
    errors = []
    for dt in (1 / 8, 1 / 16, 1 / 32):
        solver = SpectralSolver.allen_cahn((8,), 0.1, dt, rho=rho)
        u = solver.solve(torch.full((8,), u0, dtype=torch.float64), [t_end])[-1]
        errors.append(float((u - exact).abs().max()))
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all((3.9 < orders) & (orders < 4.6)), orders
    assert errors[-1] < 2e-7


def test_allen_cahn_keeps_the_jacobi_sn_steady_state():
    """$u = A\\,\\mathrm{sn}(Bx\\,|\\,m)$, with
    $\\mathrm{sn}'' = -(1 + m)\\mathrm{sn} + 2m\\,\\mathrm{sn}^3$, solves
    $\\nu u'' + \\rho(u - u^3) = 0$ when $B^2 = \\rho/(\\nu(1 + m))$ and $A^2 = 2m/(1 + m)$; it is
    periodic on $L = 4K(m)/B$. Diffusion and the cubic balance only with both right."""
    nu, rho, m = 0.01, 1.0, 0.8
    B, A = math.sqrt(rho / (nu * (1 + m))), math.sqrt(2 * m / (1 + m))
    solver = SpectralSolver.allen_cahn((128,), nu, 0.05, rho=rho, length=4 * ellipk(m) / B)
    (x,) = solver.mesh()
    steady = A * torch.from_numpy(ellipj(B * x.numpy(), m)[0])
    for u in solver.solve(steady, [1.0, 4.0]):
        assert float((u - steady).abs().max()) < 1e-13


def test_interpolation_is_exact_for_band_limited_fields():
    solver = SpectralSolver.heat((16, 12), 0.1, dt=0.1)
    X, Y = solver.mesh()
    def field(x, y):
        return torch.sin(3 * x) * torch.cos(2 * y) + torch.cos(x + 5 * y) + 0.2
    points = torch.rand(50, 2, dtype=torch.float64) * 2 * math.pi
    values = solver.interpolate(field(X, Y), points)
    assert torch.allclose(values, field(points[:, 0], points[:, 1]), atol=1e-13)
    with pytest.raises(ValueError, match=r"need \(16, 12\) and \(m, 2\)"):
        solver.interpolate(field(X, Y), points[:, :1])  # one coordinate for a 2D field


@pytest.mark.parametrize("n, length", [((24,), 2 * math.pi), ((12, 18), (2 * math.pi, 3.0)),
                                       ((30,), 0.7), ((90,), 1.0), ((30, 66), (0.7, 2 * math.pi))],
                         ids=["1d", "2d", "1d-n30-L0.7", "1d-n90-L1", "2d-n30-66"])
def test_products_are_truncated_by_the_two_thirds_rule(n, length):
    """The nonlinear term keeps exactly the modes whose index is below n_i / 3 on every axis
    (here 8 of the 13 rfft modes of 24 nodes; 7 x 6 of 12 x 18): mode n / 3 is dropped, so the
    product of two kept modes never aliases into the kept band."""
    solver = SpectralSolver.burgers(n, 0.1, 1e-3, length=length)
    indices = [np.fft.fftfreq(m, 1 / m) for m in n[:-1]] + [np.fft.rfftfreq(n[-1], 1 / n[-1])]
    kept = np.ones((), dtype=bool)
    for axis, (index, m) in enumerate(zip(indices, n)):
        kept = kept & (np.abs(index) < m / 3).reshape([-1 if i == axis else 1
                                                       for i in range(len(n))])
    np.testing.assert_array_equal(solver.dealias.numpy(), kept)
    assert kept.sum() == {(24,): 8, (12, 18): 42, (30,): 10, (90,): 30, (30, 66): 19 * 22}[n]


def test_the_unresolved_fraction_sees_a_spectrum_cut_off_too_early():
    solver = SpectralSolver.heat((64, 32), 0.1, 0.01)
    X, Y = solver.mesh()
    assert solver.unresolved_fraction(torch.sin(3 * X) * torch.cos(2 * Y)) < 1e-14
    # mode (0, 10) is in the last quarter of the kept band on 64 x 32 nodes, (0, 8) is not
    assert solver.unresolved_fraction(torch.sin(3 * X) + torch.cos(8 * Y)) < 1e-14
    mixed = torch.sin(3 * X) + 1e-3 * torch.cos(10 * Y)
    assert solver.unresolved_fraction(mixed) == pytest.approx(1e-3 / math.sqrt(1 + 1e-6), rel=1e-9)
    assert solver.unresolved_fraction((X > 3).double()) > 1e-2
    assert solver.unresolved_fraction(torch.zeros(64, 32)) == 0.0


def test_bad_input_and_blow_up():
    with pytest.raises(ValueError, match="even sizes"):
        SpectralSolver.heat((15,), 0.1, 0.1)
    with pytest.raises(ValueError, match="nu must be a finite number >= 0"):
        SpectralSolver.heat((16,), -1.0, 0.1)
    with pytest.raises(ValueError, match="unknown nonlinearity 'quartic'"):
        SpectralSolver((16,), nu=0.1, dt=0.1, nonlinearity="quartic")
    with pytest.raises(ValueError, match="device='gpu' is not a device name"):
        SpectralSolver((16,), nu=0.1, dt=0.1, device="gpu")
    with pytest.raises(ValueError, match="n_steps=5 is not a multiple of save_every=2"):
        SpectralSolver.heat((16,), 0.1, 0.1).rollout(np.zeros(16), 5, 2)
    solver = SpectralSolver.allen_cahn((16,), 0.0, dt=0.5)
    with pytest.raises(ValueError, match="shape"):
        solver.rollout(np.zeros(8), 2)
    with pytest.raises(BlowUpError) as err:
        solver.rollout(np.full(16, 50.0), 200, save_every=10)
    assert err.value.step % 10 == 0 and err.value.last_good_state is not None
    with pytest.raises(BlowUpError) as err:  # solve() checks its states too
        solver.solve(np.full(16, 50.0), [1.0, 100.0])
    assert err.value.step == 2 and err.value.last_good_step == 0
    for bad in ({"nu": float("nan")}, {"nu": float("inf")}, {"dt": float("inf")},
                {"reaction": float("nan")}):
        options = {"nu": 0.1, "dt": 0.1, **bad}
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a finite"):
            SpectralSolver((16,), **options)


def test_an_int_size_and_numpy_dtypes_are_taken_and_complex_or_text_refused_by_name():
    """SpectralSolver(32, ...) failed on 'int' object is not iterable, a NumPy dtype inside
    rfftfreq, a text dt in math.isfinite; a complex u0 ran on its real part."""
    x = 2 * np.pi * np.arange(32) / 32
    reference = SpectralSolver((32,), nu=0.01, dt=1e-3).rollout(np.sin(x), 2)
    torch.testing.assert_close(SpectralSolver(32, nu=0.01, dt=1e-3).rollout(np.sin(x), 2),
                               reference, rtol=0, atol=0)
    listed = SpectralSolver(32, nu=0.01, dt=1e-3).rollout(np.sin(x).tolist(), 2)  # no float32
    torch.testing.assert_close(listed, reference, rtol=0, atol=0)
    for dtype in (np.float32, "float32", torch.float32):
        assert SpectralSolver(32, nu=0.01, dt=1e-3, dtype=dtype).dtype is torch.float32
    with pytest.raises(ValueError, match="dtype=torch.float16 is not supported; allowed: "
                                         "float32, float64"):
        SpectralSolver(32, nu=0.01, dt=1e-3, dtype=torch.float16)
    with pytest.raises(ValueError, match="dt must be a finite positive number, got '1e-3'"):
        SpectralSolver(32, nu=0.01, dt="1e-3")
    with pytest.raises(ValueError, match="u0 has dtype torch.complex128; expected real numbers"):
        SpectralSolver(32, nu=0.01, dt=1e-3).rollout(torch.tensor(np.exp(1j * x)), 2)


def test_float32_coefficients_are_the_float64_ones_rounded():
    """The contour means are taken in float64: in float32 they were up to 9.4e-4 off, relative,
    near hL = -1."""
    single = SpectralSolver.heat([64], nu=0.05, dt=0.02, dtype=torch.float32)
    double = SpectralSolver.heat([64], nu=0.05, dt=0.02, dtype=torch.float64)
    assert (single.linear * single.dt).min() < -1 < (single.linear * single.dt).max()
    for a, b in zip(single._coefficients, double._coefficients):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b.float(), rtol=2e-7, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: SpectralSolver.burgers((16,), nu=0.1, dt=1e-2),
                                  lambda: SpectralSolver.allen_cahn((8, 8), nu=0.05, dt=1e-2)])
def test_torch_compile_runs_the_rollout_eagerly_with_the_same_values_and_gradients(make):
    """Traced, the unrolled steps compiled for minutes and ran about 2x slower than eagerly;
    the graph breaks around the rollout and the code around it still compiles."""
    solver, graphs = make(), []

    def backend(graph, inputs):
        graphs.append(graph)
        return graph.forward

    def loss(u):
        return (1.0 + solver.rollout(2.0 * u, 4, 2)).square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, backend=backend)
    got = torch.rand(solver.n, dtype=torch.float64, requires_grad=True)
    want = got.detach().clone().requires_grad_()
    out, expected = compiled(got), loss(want)
    out.backward()
    expected.backward()
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(got.grad, want.grad, rtol=1e-14, atol=0)
    traced = {str(node.target) for graph in graphs for node in graph.graph.nodes}
    assert graphs and not [op for op in traced if "fft" in op]


def test_function_transforms_differentiate_the_rollout_as_autograd_does():
    solver = SpectralSolver.burgers((16,), nu=0.1, dt=1e-2)
    u0 = torch.rand(16, dtype=torch.float64, requires_grad=True)

    def last(u):
        return solver.rollout(u, 4, 2)[-1]

    assert torch.autograd.gradcheck(last, (u0,))
    jacobian = torch.autograd.functional.jacobian(last, u0.detach())
    torch.testing.assert_close(torch.func.jacrev(last)(u0.detach()), jacobian)
    torch.testing.assert_close(torch.func.jacfwd(last)(u0.detach()), jacobian)
    tangent = torch.ones(16, dtype=torch.float64)
    torch.testing.assert_close(torch.func.jvp(last, (u0.detach(),), (tangent,))[1],
                               jacobian @ tangent)
    torch.testing.assert_close(torch.func.grad(lambda u: last(u).sum())(u0.detach()),
                               jacobian.sum(0))


def test_nu_and_dt_by_position_still_work_with_a_future_warning_naming_the_keywords():
    x = 2 * np.pi * np.arange(16) / 16
    wanted = (r"SpectralSolver: nu, dt given by position; "
              r"write SpectralSolver\(\.\.\., nu=\.\.\., dt=\.\.\.\)")
    with pytest.warns(FutureWarning, match=wanted):
        positional = SpectralSolver((16,), 0.1, 1e-2, nonlinearity="burgers")
    with pytest.warns(FutureWarning, match=r"SpectralSolver: nu given by position"):
        SpectralSolver((16,), 0.1, dt=1e-2)
    keyword = SpectralSolver((16,), nu=0.1, dt=1e-2, nonlinearity="burgers")
    assert repr(positional) == repr(keyword)
    torch.testing.assert_close(positional.rollout(np.sin(x), 2), keyword.rollout(np.sin(x), 2),
                               rtol=0, atol=0)


@pytest.mark.parametrize("args, kwargs, message", [
    ((0.1, 1e-2, 0.0), {}, r"SpectralSolver\(\) takes its physics parameters \(nu, dt\)"),
    ((0.1,), {"nu": 0.1, "dt": 1e-2}, r"SpectralSolver\(\) takes its physics parameters"),
    ((), {"nu": 0.1}, "missing 1 required keyword-only argument: 'dt'"),
])
def test_nu_and_dt_given_twice_too_often_or_not_at_all_are_refused(args, kwargs, message):
    with pytest.raises(TypeError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        SpectralSolver((16,), *args, **kwargs)


def test_the_keyword_form_and_the_named_builders_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpectralSolver((16,), nu=0.1, dt=1e-2)
        SpectralSolver.heat((16,), 0.1, 1e-2)
        SpectralSolver.allen_cahn((16,), 0.1, 1e-2, rho=2.0)
        SpectralSolver.burgers((16,), 0.1, 1e-2)
