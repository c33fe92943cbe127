"""The pseudo-spectral Navier–Stokes vorticity solver: exact Taylor–Green decay, fourth order in
time, spectral in space, and its dataset spec."""

import numpy as np
import pytest
import xarray as xr

from physml.datasets.generate import generate
from physml.datasets.initial_conditions import gaussian_random_field_2d
from physml.datasets.spec import load_spec
from physml.solvers import Grid, NavierStokesSolver2D, UnstableStepError


def unit_square(n):
    return Grid((n, n), (0.0, 0.0), (1.0, 1.0))


def smooth_vorticity(grid, seed=1, decay=2.0, k_max=6):
    """sum_k c_k exp(-|k|^2/decay) cos(2 pi k.x + phi_k): a smooth, nonlinear test field."""
    rng = np.random.default_rng(seed)
    x, y = grid.mesh()
    w = np.zeros(grid.shape)
    for kx in range(-k_max, k_max + 1):
        for ky in range(k_max + 1):
            c, phase = rng.standard_normal(), rng.uniform(0, 2 * np.pi)
            wave = np.cos(2 * np.pi * (kx * x + ky * y) + phase)
            w += c * np.exp(-(kx**2 + ky**2) / decay) * wave
    return w


def resample(field, n):
    """The trigonometric interpolant of a cell-centred periodic field at the n x n centres."""
    big = field.shape[0]
    k = np.fft.fftfreq(big, 1 / big)
    shift = np.exp(2j * np.pi * k * (0.5 / n - 0.5 / big))
    c = np.fft.fft2(field) / big**2 * shift[:, None] * shift[None, :]
    keep = np.abs(k) < n / 2
    out = np.zeros((n, n), complex)
    index = (k[keep] % n).astype(int)
    out[np.ix_(index, index)] = c[keep][:, keep]
    return (np.fft.ifft2(out) * n * n).real


@pytest.mark.parametrize("modes", [(1, 1), (1, 2), (3, 2)])
def test_taylor_green_decay_is_exact(modes):
    """omega = sin(2 pi a x) sin(2 pi b y) has u.grad(omega) = 0: it decays as
    exp(-nu |k|^2 t), which the integrating factor integrates exactly."""
    a, b = modes
    grid = unit_square(32)
    x, y = grid.mesh()
    w0 = np.sin(2 * np.pi * a * x) * np.sin(2 * np.pi * b * y)
    solver = NavierStokesSolver2D(grid, nu=1e-2, forcing=0.0, dt=0.01)
    states = solver.rollout(w0, 200, 50)
    times = np.arange(5)[:, None, None] * 0.5
    exact = w0 * np.exp(-1e-2 * 4 * np.pi**2 * (a**2 + b**2) * times)
    np.testing.assert_allclose(states, exact, rtol=0, atol=1e-10)
    u, v = solver.velocity(states[-1])
    divergence = np.fft.ifft2(2j * np.pi * (np.fft.fftfreq(32, 1 / 32)[:, None] * np.fft.fft2(u)
                                            + np.fft.fftfreq(32, 1 / 32)[None] * np.fft.fft2(v)))
    assert np.abs(divergence).max() < 1e-12


def test_a_nyquist_mode_has_no_first_derivative_on_either_axis():
    """omega = sin(pi n x) cos(2 pi y) on an n x n grid: x's Nyquist mode. Its velocity is
    v = -psi_x = 0 (the grid cannot represent the mode's slope) and u = psi_y the exact one;
    the same with the axes swapped."""
    n = 8
    grid = unit_square(n)
    x, y = grid.mesh()
    solver = NavierStokesSolver2D(grid, nu=1e-2, forcing=0.0, dt=0.01)
    k2 = (np.pi * n) ** 2 + (2 * np.pi) ** 2
    for omega, psi_y in [(np.sin(np.pi * n * x) * np.cos(2 * np.pi * y),
                          -2 * np.pi * np.sin(np.pi * n * x) * np.sin(2 * np.pi * y) / k2),
                         (np.cos(2 * np.pi * x) * np.sin(np.pi * n * y), None)]:
        u, v = solver.velocity(omega)
        if psi_y is None:  # y's Nyquist mode: u = psi_y = 0, v = -psi_x exact
            np.testing.assert_allclose(u, 0.0, atol=1e-14)
            exact_v = 2 * np.pi * np.sin(2 * np.pi * x) * np.sin(np.pi * n * y) / k2
            np.testing.assert_allclose(v, exact_v, atol=1e-14)
        else:
            np.testing.assert_allclose(v, 0.0, atol=1e-14)
            np.testing.assert_allclose(u, psi_y, atol=1e-14)


def test_time_self_convergence_is_fourth_order():
    grid = unit_square(32)
    w0 = 2 * smooth_vorticity(grid, decay=8.0, k_max=3)
    solver = NavierStokesSolver2D(grid, nu=1e-3, forcing=0.1, dt=None)
    t_end = 0.5
    reference = solver.with_dt(t_end / 512).rollout(w0, 512, 512)[-1]
    steps = np.array([32, 64, 128])
    errors = [np.abs(solver.with_dt(t_end / n).rollout(w0, n, n)[-1] - reference).max()
              for n in steps]
    order = np.polyfit(np.log(t_end / steps), np.log(errors), 1)[0]
    assert solver.time_order == 4
    assert 3.8 < order < 4.3, (errors, order)


def test_space_self_convergence_is_spectral():
    """Errors against 64^2 at equal dt fall faster than any power: 5.6e-4, 2.3e-6, 8.1e-9,
    1.8e-12 measured at 12, 16, 24, 32 cells per axis."""
    t_end, steps = 0.25, 100
    finals = {}
    for n in (12, 16, 24, 32, 64):
        grid = unit_square(n)
        solver = NavierStokesSolver2D(grid, nu=1e-2, forcing=0.1, dt=t_end / steps)
        finals[n] = solver.rollout(smooth_vorticity(grid), steps, steps)[-1]
    sizes = np.array([12, 16, 24, 32])
    errors = np.array([np.abs(resample(finals[64], n) - finals[n]).max() for n in sizes])
    local_orders = -np.diff(np.log(errors)) / np.diff(np.log(sizes))
    assert errors[-1] < 1e-10
    assert np.all(local_orders > 10), local_orders  # no finite-difference order comes close


def test_the_first_step_follows_the_advection_and_viscosity_of_a_known_field():
    """psi = sin x + cos 2y on [0, 2 pi)^2: omega = -lap psi = sin x + 4 cos 2y,
    (u, v) = (psi_y, -psi_x) = (-2 sin 2y, -cos x), so u.grad(omega) = 6 cos x sin 2y (not 0:
    omega is no function of psi) and omega_t = -6 cos x sin 2y - nu (sin x + 16 cos 2y).
    (omega(dt) - omega0)/dt differs from it by dt/2 omega_tt + O(dt^2), ~4.8 dt here."""
    grid = Grid((16, 16), (0.0, 0.0), (2 * np.pi, 2 * np.pi))
    x, y = grid.mesh()
    nu, w0 = 0.05, np.sin(x) + 4 * np.cos(2 * y)
    tendency = -6 * np.cos(x) * np.sin(2 * y) - nu * (np.sin(x) + 16 * np.cos(2 * y))
    solver = NavierStokesSolver2D(grid, nu=nu, forcing=0.0, dt=2e-3)
    errors = [np.abs((s.step(w0) - w0) / s.dt - tendency).max()
              for s in (solver, solver.with_dt(1e-3))]
    assert errors[0] < 10 * 2e-3 and errors[0] / errors[1] == pytest.approx(2.0, abs=0.1)


def test_forcing_drives_the_mean_free_forcing_mode():
    """From rest, d(omega)/dt = f at t = 0: one small step gives omega = f dt to O(dt^2)."""
    grid = unit_square(16)
    solver = NavierStokesSolver2D(grid, nu=0.0, forcing=0.1, dt=1e-4)
    np.testing.assert_allclose(solver.step(np.zeros((16, 16))), 1e-4 * solver.forcing_field(),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    ({"nu": -1.0}, "nu"), ({"device": "cuda"}, "device"), ({"scheme": "rk4"}, "scheme"),
    ({"grid": Grid((15, 16), (0, 0), (1, 1))}, "even"), ({"dtype": "float16"}, "dtype")])
def test_bad_settings_are_refused(bad, match):
    settings = {"grid": unit_square(16), "nu": 1e-3, "dt": 1e-3, **bad}
    with pytest.raises(ValueError, match=match):
        NavierStokesSolver2D(settings.pop("grid"), **settings)


@pytest.mark.parametrize("device, message", [
    ("cpu:1", r"device='cpu:1' is not a device name; allowed: cpu, cuda, cuda:N$"),
    ("cpuXYZ", r"device='cpuXYZ' is not a device name"),
    ("cuda", r"device='cuda': NavierStokesSolver2D runs on the CPU \(NumPy/SciPy FFTs\)"),
])
def test_a_device_is_checked_by_name_as_the_other_solvers_check_it(device, message):
    """Any name starting with "cpu" built a solver on the CPU without a word."""
    with pytest.raises(ValueError, match=message):
        NavierStokesSolver2D(unit_square(8), nu=1e-3, dt=1e-3, device=device)
    assert NavierStokesSolver2D(unit_square(8), nu=1e-3, dt=1e-3, device="cpu:0").device == "cpu"


def test_a_dt_float32_rounds_to_zero_is_refused_by_the_constructor_and_with_dt():
    """``dt=1e-50`` in float32 was taken: the steps ran with dt 0 and left the state as it
    was, without a word."""
    message = r"dt=1e-50 is 0.0 in float32, the solver's dtype; pass dtype='float64'"
    with pytest.raises(ValueError, match=message):
        NavierStokesSolver2D(unit_square(8), nu=1e-3, dt=1e-50, dtype="float32")
    solver = NavierStokesSolver2D(unit_square(8), nu=1e-3, dt=1e-3, dtype="float32")
    with pytest.raises(ValueError, match=message):
        solver.with_dt(1e-50)
    assert NavierStokesSolver2D(unit_square(8), nu=1e-3, dt=1e-50).with_dt(1e-60).dt == 1e-60


def test_too_large_a_step_is_refused_with_the_limit():
    grid = unit_square(32)
    solver = NavierStokesSolver2D(grid, nu=1e-3, dt=1.0)
    with pytest.raises(UnstableStepError, match="advective limit"):
        solver.rollout(50 * smooth_vorticity(grid), 1)


def test_gaussian_random_field_has_its_length_scale():
    """Spectral density exp(-l^2 |k|^2 / 2), k = 2 pi m: the mean power at |m| = 1 over the
    power at |m| = 4 is exp(l^2 (16 - 1) 4 pi^2 / 2) = 2.10 for l = 0.05 (2000 samples give
    2.05; the rescaling of each sample to unit standard deviation biases it slightly low)."""
    grid = unit_square(16)
    rng = np.random.default_rng(0)
    fields = np.stack([gaussian_random_field_2d(grid, rng, 0.05, 2.0) for _ in range(2000)])
    np.testing.assert_allclose(fields.std(axis=(1, 2)), 2.0)
    np.testing.assert_allclose(fields.mean(axis=(1, 2)), 0.0, atol=1e-12)
    power = (np.abs(np.fft.fft2(fields)) ** 2).mean(0)
    ratio = (power[1, 0] + power[0, 1]) / (power[4, 0] + power[0, 4])
    assert ratio == pytest.approx(np.exp(0.0025 * 15 * 4 * np.pi**2 / 2), rel=0.1)


def test_dataset_spec_generates(tmp_path):
    spec = load_spec("navier_stokes2d").model_copy(update={"grid": [16, 16], "n_saves": 5,
                                                         "t_end": 1.0, "samples": 2})
    generate(spec, tmp_path, workers=0)
    ds = xr.open_dataset(next((tmp_path / "train").glob("*.h5")))
    assert ds["u"].dims == ("sample", "time", "x", "y") and ds["u"].shape[1:] == (5, 16, 16)
    assert ds.attrs["solver_nu"] == 1e-4 and ds.attrs["solver"] == "NavierStokesSolver2D"
    assert (ds["u"].attrs["long_name"], ds["u"].attrs["units"]) == ("vorticity omega", "s-1")
    assert float(ds["u"].isel(time=0).std()) == pytest.approx(1.0, rel=1e-5)
