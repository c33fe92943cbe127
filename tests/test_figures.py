"""The run figures say what they draw: the error of the panel shown (and the pooled one as
such), colour ranges whose overflow shows, colormaps that fit the field's sign, grid cells
centred on their nodes, and particle lines that follow a particle, not a size rank."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import xarray as xr

matplotlib.use("Agg")

from physml.cases import figures  # noqa: E402
from physml.cases.figure_colours import colour_scale  # noqa: E402
from physml.cases.mesh_figures import plot_mesh_fields  # noqa: E402
from physml.cases.microstructure_figures import (  # noqa: E402
    MODEL_UNITS,
    SI_UNITS,
    plot_free_energy,
    plot_profile,
    plot_tracked,
)
from physml.cases.verdict_figures import fraction, plot_coefficients, plot_convergence, plot_decay  # noqa: E402


def comparison(prediction, reference, coords, **attrs) -> xr.Dataset:
    return xr.Dataset({"prediction": (tuple(coords), prediction),
                       "reference": (tuple(coords), reference),
                       "error": (tuple(coords), prediction - reference)},
                      coords=coords, attrs={"case": "demo", **attrs})


def relative_l2(p, r) -> float:
    inside = np.isfinite(r)
    return float(np.linalg.norm((p - r)[inside]) / np.linalg.norm(r[inside]))


def space_time(n_t=5, n=9):
    """A disk-shaped x-y field over time (NaN outside), its error growing with t."""
    t, x = np.linspace(0, 1, n_t), np.linspace(-1, 1, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    reference = np.exp(-t)[:, None, None] * (1 + X ** 2 + Y ** 2)[None]
    reference[:, X ** 2 + Y ** 2 > 1] = np.nan
    prediction = reference * (1 + 0.1 * t[:, None, None] * X[None])
    return comparison(prediction, reference, {"time": t, "x": x, "y": x},
                      rel_l2=relative_l2(prediction, reference))


def panels(fig):
    """The three field axes and their three colour bars."""
    return fig.axes[:3], fig.axes[3:]


def test_title_gives_the_error_of_the_time_shown_and_the_pooled_one_as_such(saved_figures):
    ds = space_time()
    snapshot = ds.isel(time=-1).assign_attrs(t=1.0)
    figures.plot_solution(snapshot, Path("unused.png"), scheme="PINN", step=100)
    at_one = relative_l2(snapshot["prediction"].values, snapshot["reference"].values)
    assert not np.isclose(at_one, ds.attrs["rel_l2"], rtol=0.05)  # they do differ here
    assert saved_figures[-1].get_suptitle() == (f"demo: PINN, step 100; relative L2 error "
                                        f"{at_one:.2e} at t = 1; {ds.attrs['rel_l2']:.2e} "
                                        "over all times")


def test_points_outside_the_domain_are_grey_not_the_colour_of_zero(saved_figures):
    """They were left blank: white, RdBu_r's colour of u = 0, so a sign-changing field's
    missing quarter of an L looked like u = 0 there."""
    from matplotlib.colors import to_rgba

    figures.plot_solution(space_time().isel(time=-1).assign_attrs(t=1.0), Path("unused.png"))
    assert all(ax.get_facecolor() == to_rgba(figures.OUTSIDE)
               for ax in panels(saved_figures[-1])[0])


def test_title_gives_the_error_of_the_sample_shown(saved_figures):
    rng = np.random.default_rng(0)
    x, t = np.linspace(0, 1, 16), np.linspace(0, 1, 6)
    reference = 1 + rng.random((3, 6, 16))
    prediction = reference + rng.normal(0, [[[0.01]], [[0.1]], [[0.3]]], (3, 6, 16))
    per_sample = [relative_l2(p, r) for p, r in zip(prediction, reference)]
    ds = comparison(prediction, reference, {"sample": np.arange(3), "time": t, "x": x},
                    rel_l2=float(np.mean(per_sample)))
    figures.plot_solution(ds.isel(sample=0), Path("unused.png"))
    assert saved_figures[-1].get_suptitle() == (
        f"demo: time from 0 to 1; relative L2 error {per_sample[0]:.2e} in the test sample of "
        f"seed 0; {np.mean(per_sample):.2e} over all test samples")
    figures.plot_solution(ds.isel(sample=2), Path("unused.png"),
                          pooled="as the mean over the 3 test samples")
    assert saved_figures[-1].get_suptitle().endswith(
        f"{per_sample[2]:.2e} in the test sample of seed 2; {np.mean(per_sample):.2e} as the mean "
        "over the 3 test samples")


def test_an_uncut_field_keeps_its_own_error(saved_figures):
    ds = space_time().isel(y=4, drop=True)  # (time, x): nothing says it was cut
    figures.plot_solution(ds, Path("unused.png"))
    assert saved_figures[-1].get_suptitle() == (f"demo: time from 0 to 1; relative L2 error "
                                        f"{ds.attrs['rel_l2']:.2e}")


def test_a_prediction_beyond_the_reference_range_gets_extend_arrows(saved_figures):
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x, indexing="ij")
    reference = np.sin(np.pi * X) * np.sin(np.pi * Y)
    figures.plot_solution(comparison(1.7 * reference, reference, {"x": x, "y": x}, rel_l2=0.7),
                          Path("unused.png"))
    (prediction, ref, _), bars = panels(saved_figures[-1])
    assert prediction.images[0].colorbar.extend == "both"
    assert ref.images[0].colorbar.extend == "neither"
    clipped = np.mean(np.abs(1.7 * reference) > np.abs(reference).max())
    assert f"{100 * clipped:.0f} % of its points beyond the colour range" in (
        prediction.get_title())

    peaks = reference + 0.01 * (reference > 0.99)
    figures.plot_solution(comparison(peaks, reference, {"x": x, "y": x}), Path("unused.png"))
    (prediction, ref, _), bars = panels(saved_figures[-1])
    assert prediction.images[0].colorbar.extend == "max"
    assert prediction.get_title() == "prediction"  # a few points: the arrow says it


def test_float32_rounding_at_the_end_of_the_colour_range_is_not_clipping(saved_figures):
    """The review's 1-D reaction-diffusion run: the hard u = 0 at x = 1 is float32 sin(pi),
    -8.74e-8, against a reference minimum of exactly 0; it was flagged as 2 % beyond."""
    x, t = np.linspace(0, 1, 64), np.linspace(0, 1, 11)
    reference = np.exp(-t)[:, None] * np.sin(np.pi * x)
    reference[:, [0, -1]] = 0.0
    prediction = reference.copy()
    prediction[:, -1] = -8.74e-8
    figures.plot_solution(comparison(prediction, reference, {"time": t, "x": x}),
                          Path("unused.png"))
    (drawn, _, _), _ = panels(saved_figures[-1])
    assert drawn.images[0].colorbar.extend == "neither"
    assert drawn.get_title() == "prediction"


def test_a_one_signed_field_gets_a_sequential_colormap(saved_figures):
    ds = space_time().isel(time=-1)
    figures.plot_solution(ds, Path("unused.png"))
    (prediction, ref, error), _ = panels(saved_figures[-1])
    image = ref.images[0]
    assert image.get_cmap().name == "viridis"
    inside = ds["reference"].values[np.isfinite(ds["reference"].values)]
    assert image.norm.vmin == pytest.approx(inside.min())
    assert image.norm.vmax == pytest.approx(inside.max())
    assert prediction.images[0].get_cmap().name == "viridis"
    assert error.images[0].get_cmap().name == "magma"  # the |error| panel: a magnitude

    signed = comparison(ds["prediction"].values - 0.5, ds["reference"].values - 0.5,
                        {"x": ds["x"].values, "y": ds["y"].values})
    figures.plot_solution(signed, Path("unused.png"))
    image = panels(saved_figures[-1])[0][1].images[0]
    assert image.get_cmap().name == "RdBu_r"
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)


def test_colour_scale_rule():
    assert colour_scale([0.0, 0.5, 1.0])["cmap"] == "viridis"
    assert colour_scale([-3.0, -1.0])["cmap"] == "viridis"
    assert colour_scale([-1e-14, 0.5, 1.0])["cmap"] == "viridis"  # round-off: one sign
    assert colour_scale([-0.5, np.nan, 1.0]) == {"cmap": "RdBu_r", "vmin": -1.0,
                                                  "vmax": 1.0}


def test_cells_are_centred_on_their_nodes_and_space_is_drawn_to_scale(saved_figures):
    ds = space_time()
    figures.plot_solution(ds.isel(time=0), Path("unused.png"))
    ax = panels(saved_figures[-1])[0][0]
    np.testing.assert_allclose(ax.images[0].get_extent(), [-1.125, 1.125, -1.125, 1.125])
    assert ax.get_aspect() == 1.0
    figures.plot_solution(ds.isel(y=4), Path("unused.png"))  # time against x
    ax = panels(saved_figures[-1])[0][0]
    np.testing.assert_allclose(ax.images[0].get_extent(), [-1.125, 1.125, -0.125, 1.125])
    assert ax.get_aspect() == "auto"


def test_a_non_uniform_grid_is_drawn_with_its_own_cell_edges(saved_figures):
    x = np.array([0.0, 0.1, 0.3, 0.7, 1.0])
    X, Y = np.meshgrid(x, x, indexing="ij")
    reference = X + Y + 1
    figures.plot_solution(comparison(reference, reference, {"x": x, "y": x}), Path("u.png"))
    mesh = panels(saved_figures[-1])[0][0].collections[0]
    corners = mesh.get_coordinates()
    np.testing.assert_allclose(corners[0, :, 0], [-0.05, 0.05, 0.2, 0.5, 0.85, 1.15])


def records_with_swapping_sizes() -> list[dict]:
    """Particle 7 stays at x = 1 and shrinks, particle 3 at x = 5 grows past it; particle 9
    is seen in the middle snapshots only."""
    out = []
    for i, t in enumerate(np.linspace(0, 4, 5)):
        particles = [{"id": 7, "centroid": [1.0, 0.0], "radius": 3.0 - 0.5 * i},
                     {"id": 3, "centroid": [5.0, 0.0], "radius": 1.0 + 0.5 * i}]
        if 1 <= i <= 2:
            particles.append({"id": 9, "centroid": [8.0, 0.0], "radius": 0.5})
        particles.sort(key=lambda p: -p["radius"])  # largest first, as tracked.json is
        out.append({"t": float(t), "particles": particles})
    return out


def test_tracked_plot_follows_particle_ids(saved_figures):
    plot_tracked(records_with_swapping_sizes(), 0, Path("unused.png"),
                 units=MODEL_UNITS)
    left, right = saved_figures[-1].axes
    lines = {line.get_label(): line for line in left.lines}
    assert set(lines) == {"particle 3", "particle 7", "particle 9"}
    np.testing.assert_array_equal(lines["particle 7"].get_ydata(), 1.0)
    np.testing.assert_array_equal(lines["particle 3"].get_ydata(), 5.0)
    gap = np.asarray(lines["particle 9"].get_ydata(), dtype=float)
    assert np.isnan(gap[[0, 3, 4]]).all() and np.all(gap[1:3] == 8.0)
    sizes = {line.get_color(): line.get_ydata() for line in right.lines}
    np.testing.assert_allclose(sizes[lines["particle 7"].get_color()], 3.0 - 0.5 * np.arange(5))


def test_many_particles_get_a_colour_each_and_the_centre_of_mass_its_legend(saved_figures):
    """With 14 particles the legend was dropped, the phase centre of mass with it, and
    colours repeated every ten."""
    records = [{"t": float(t), "phase_centre_of_mass": 2.0,
                "particles": [{"id": k, "centroid": [float(k), 0.0], "radius": 1.0}
                              for k in range(14)]} for t in range(3)]
    plot_tracked(records, 0, Path("unused.png"), units=MODEL_UNITS)
    left = saved_figures[-1].axes[0]
    colours = {tuple(np.atleast_1d(line.get_color())) for line in left.lines[:14]}
    assert len(colours) == 14
    legend = left.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["phase centre of mass"]
    assert legend.get_title().get_text() == "14 particles: a colour each"


def test_tracked_plot_without_ids_follows_size_rank(saved_figures):
    records = records_with_swapping_sizes()
    for r in records:
        for p in r["particles"]:
            del p["id"]
    plot_tracked(records, 0, Path("unused.png"), units=MODEL_UNITS)
    lines = {line.get_label(): line for line in saved_figures[-1].axes[0].lines}
    assert set(lines) == {"size rank 1", "size rank 2", "size rank 3"}
    np.testing.assert_array_equal(lines["size rank 1"].get_ydata(), [1, 1, 1, 5, 5])


def history(steps: int) -> list[dict]:
    return [{"step": s, "loss": 1.0 / (s + 1), "loss_residual": 1.0 / (s + 1)}
            for s in range(1, steps + 1)]


@pytest.mark.parametrize(("every", "ticks", "label"), [
    (500, 0, None), (20, 4, "points redrawn"), (1, 0, "points redrawn every step"),
    (2, 0, "points redrawn every 2 steps")])
def test_redraws_are_marked_only_when_they_can_be_read(saved_figures, every, ticks, label):
    figures.plot_losses(history(100), Path("unused.png"), "t", resample_every=every)
    ax = saved_figures[-1].axes[0]
    redrawn = [line for line in ax.lines if line.get_label().startswith("points redrawn")]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    if label is None:
        assert not redrawn and not any(s.startswith("points redrawn") for s in legend)
    else:
        assert [line.get_label() for line in redrawn] == [label] and label in legend
        assert len(redrawn[0].get_xdata()) == ticks


def test_mesh_panels_colour_by_vertex_values_and_centre_a_signed_error(saved_figures):
    # an octahedron's surface: the peak value sits on one vertex
    points = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                      dtype=float)
    cells = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5],
                      [3, 1, 5], [0, 3, 5]])
    u = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 0.4])
    plot_mesh_fields(points, cells, {"u": u}, Path("unused.png"),
                     titles={"u": "u at t = 0 s"})
    ax, bar = saved_figures[-1].axes
    assert ax.get_title() == "u at t = 0 s"
    assert bar.get_ylim() == pytest.approx((0.0, 1.0))  # the vertex values, not cell means

    planar = points[[0, 2, 1, 3], :2]
    error = np.array([0.01, 0.02, 0.015, 0.03])  # one-signed, still an error: centred on 0
    plot_mesh_fields(planar, np.array([[0, 1, 2], [0, 2, 3]]),
                     {"u": 1 + error, "error": error}, Path("unused.png"))
    u_ax, error_ax = saved_figures[-1].axes[::2]  # each panel is followed by its colour bar
    assert u_ax.get_xlabel() == "x [m]" and u_ax.get_ylabel() == "y [m]"
    assert u_ax.collections[0].get_cmap().name == "viridis"
    image = error_ax.collections[0]
    assert image.get_cmap().name == "RdBu_r" and image.norm.vmin == -image.norm.vmax


def test_profile_has_a_title(saved_figures):
    x = np.linspace(0, 2e-3, 20)
    plot_profile(x, [0.0, 1e6], [np.ones(20), 1 + x], None, Path("unused.png"))
    assert saved_figures[-1].axes[0].get_title() == "composition profiles, t = 0 s to 1,000,000 s"


def test_pcg_residuals_against_wall_clock_in_milliseconds(saved_figures):
    from physml.cases.pcg import plot_residuals

    plot_residuals({"ic0": {"residuals": [1.0, 1e-3, 1e-6], "setup_s": 2e-4,
                            "solve_s": 1e-3}}, Path("unused.png"), "demo")
    clock = saved_figures[-1].axes[1]
    assert clock.get_xlabel() == "wall-clock incl. set-up [ms]"
    np.testing.assert_allclose(clock.lines[0].get_xdata(), [0.2, 0.7, 1.2])


def test_a_plane_of_a_volume_at_the_last_time_names_both_cuts(saved_figures):
    from physml.cases.equation import solution_snapshot

    t, x = np.linspace(0, 1, 3), np.linspace(0, 1, 5)
    T, X, Y, Z = np.meshgrid(t, x, x, x, indexing="ij")
    reference = 1 + X + Y + Z
    prediction = reference * (1 + 0.1 * T * Y)
    ds = comparison(prediction, reference, {"time": t, "x": x, "y": x, "z": x},
                    rel_l2=relative_l2(prediction, reference))
    shown = solution_snapshot(ds)
    figures.plot_solution(shown, Path("unused.png"))
    cut = relative_l2(shown["prediction"].values, shown["reference"].values)
    assert saved_figures[-1].get_suptitle() == (
        f"demo: relative L2 error {cut:.2e} in the plane x = 0.5 at t = 1; "
        f"{ds.attrs['rel_l2']:.2e} over the whole domain and all times")


def test_coefficients_are_drawn_against_their_true_value(saved_figures):
    records = [{"step": s, "coefficient_nu": 0.05 * (1 - 0.8 / s), "coefficient_k": 1.0 + s}
               for s in range(1, 11)]
    plot_coefficients(records, ["nu", "k"], {"nu": 0.05}, Path("unused.png"),
                      "demo", adam_steps=5)
    nu, k, nu_error, k_below = saved_figures[-1].axes
    assert [line.get_ydata()[0] for line in nu.lines if line.get_linestyle() == "--"
            and line.get_color() == "k"] == [0.05]
    assert nu.get_title() == "nu = 0.046 at step 10\n(true 0.05: relative error 8.00%)"
    np.testing.assert_allclose(nu_error.lines[0].get_ydata(), 0.8 / np.arange(1, 11))
    assert nu_error.get_yscale() == "log"
    assert k.get_title() == "k = 11 at step 10" and not k_below.get_visible()  # no truth


def test_decay_draws_the_expected_slope_and_the_tolerance(saved_figures):
    t = np.linspace(0, 4, 21)
    deviation = np.exp(-1.03 * t) + 0.3 * np.exp(-4 * t)
    plot_decay(t, deviation, 1.03, 1e-3, Path("unused.png"), "demo")
    left, right = saved_figures[-1].axes
    slope = left.lines[1]
    rate = -np.diff(np.log(slope.get_ydata())) / np.diff(slope.get_xdata())
    np.testing.assert_allclose(rate, 1.03)
    assert slope.get_ydata()[-1] == pytest.approx(deviation[-1])  # through the last point
    assert right.lines[-1].get_ydata()[0] == 1e-3 and right.get_yscale() == "log"


def test_convergence_draws_the_expected_slopes_through_the_finest_mesh(saved_figures):
    h = np.array([0.1, 0.05, 0.025])
    levels = [{"h": v, "rel_l2": v ** 1.3, "rel_h1": v ** 0.8} for v in h[[1, 0, 2]]]
    plot_convergence(levels, {"l2": 1.3, "h1": 0.8}, {"l2": 4 / 3, "h1": 2 / 3},
                     Path("unused.png"), "demo")
    ax = saved_figures[-1].axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert {"slope 4/3 (expected)", "slope 2/3 (expected)"} <= set(lines)
    x, y = lines["slope 4/3 (expected)"].get_data()
    assert np.log(y[1] / y[0]) / np.log(x[1] / x[0]) == pytest.approx(4 / 3)
    assert y[0] == pytest.approx(0.025 ** 1.3)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    observed = next(line for line in ax.lines if line.get_label().startswith("L2 norm"))
    np.testing.assert_array_equal(observed.get_xdata(), np.sort(h))  # drawn in order of h
    assert fraction(2 / 3) == "2/3" and fraction(1.2805) == "1.28"


def test_free_energy_is_log_log_when_positive_else_linear(saved_figures):
    t = np.linspace(0, 100, 5)
    plot_free_energy(t, [300.0, 200, 150, 120, 100], Path("unused.png"),
                     MODEL_UNITS, "model energy x length^2")
    ax = saved_figures[-1].axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert list(ax.lines[0].get_xdata()) == [25, 50, 75, 100]  # t = 0 as the dotted line
    assert ax.lines[1].get_label() == "F(0) = 300"
    plot_free_energy(t, [-1.0, -2, -3, -4, -5], Path("unused.png"), SI_UNITS,
                     "J m^2/mol")
    ax = saved_figures[-1].axes[0]
    assert ax.get_yscale() == "linear" and ax.get_xlabel() == "t [s]"
    plot_free_energy(t, [3.3, 3.2, 3.2, 3.1, 3.1], Path("unused.png"), SI_UNITS,
                     "J m^2/mol")  # positive, but a factor below 2: no decades to show
    assert saved_figures[-1].axes[0].get_yscale() == "linear"


def test_a_log_energy_axis_over_less_than_two_decades_labels_several_values(saved_figures):
    """From 0.9 to 0.031 (a shrunk spinodal run) the axis labelled 10^-1 alone."""
    plot_free_energy(np.linspace(0, 100, 5), [0.9, 0.3, 0.1, 0.05, 0.031], Path("unused.png"),
                     SI_UNITS, "J m^2/mol")
    ax = saved_figures[-1].axes[0]
    ax.figure.canvas.draw()
    labels = [t for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if t.get_text() and 0.031 <= t.get_position()[1] <= 0.9]
    assert ax.get_yscale() == "log" and len(labels) >= 4


def test_a_cut_s_error_is_nan_where_the_prediction_is_not_finite_inside_the_domain(
        saved_figures):
    ds = space_time()
    snapshot = ds.isel(time=-1).assign_attrs(t=1.0)
    prediction = snapshot["prediction"].values.copy()
    prediction[:4] = np.nan  # half the frame, inside the disk too
    snapshot["prediction"] = (snapshot["prediction"].dims, prediction)
    figures.plot_solution(snapshot, Path("unused.png"))
    assert "relative L2 error nan at t = 1" in saved_figures[-1].get_suptitle()
    assert np.isnan(figures._relative_l2([1.0, np.inf, 2.0], [1.0, 1.0, np.nan]))
    assert figures._relative_l2([2.0, 0.0], [1.0, np.nan]) == 1.0  # outside: ignored


def test_tracked_plot_spans_the_run_when_the_particle_dissolves(saved_figures):
    records = [{"t": float(t), "particles": [{"id": 0, "centroid": [1.0, 0.0], "radius": 1.0}]
                if t == 0 else [], "phase_centre_of_mass": 1.0 if t == 0 else None}
               for t in range(4)]
    plot_tracked(records, 0, Path("unused.png"), units=MODEL_UNITS)
    left, right = saved_figures[-1].axes
    assert left.get_xlim() == (0.0, 3.0) and right.get_xlim() == (0.0, 3.0)
    (centre,) = [line for line in left.lines if line.get_label() == "phase centre of mass"]
    assert centre.get_marker() == "o"


def test_a_coefficient_without_truth_keeps_its_step_tick_labels(saved_figures):
    records = [{"step": s, "coefficient_nu": 0.05, "coefficient_k": 1.0} for s in range(1, 11)]
    plot_coefficients(records, ["nu", "k"], {"nu": 0.05}, Path("unused.png"))
    nu, k, _, _ = saved_figures[-1].axes
    assert k.xaxis.get_tick_params()["labelbottom"]
    assert not nu.xaxis.get_tick_params().get("labelbottom", True)  # shown below it instead


def test_mesh_u_is_drawn_on_the_exact_solution_s_colour_scale(saved_figures):
    points = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    cells = np.array([[0, 1, 2], [0, 2, 3]])
    exact = np.array([-0.2, 0.0, 0.1, 0.23])
    u = np.array([0.0, 0.01, 0.1, 0.25])
    plot_mesh_fields(points, cells, {"u": u, "exact": exact}, Path("unused.png"))
    u_ax, _, exact_ax, _ = saved_figures[-1].axes
    drawn = [ax.collections[0] for ax in (u_ax, exact_ax)]
    assert drawn[0].get_cmap().name == drawn[1].get_cmap().name == "RdBu_r"
    assert drawn[0].get_clim() == drawn[1].get_clim() == pytest.approx((-0.23, 0.23))
    assert drawn[0].colorbar.extend == "max"  # u goes beyond exact's range


def system(prediction, reference, coords, fields=("u", "v"), **attrs) -> xr.Dataset:
    """A results dataset of a system: the fields along a last ``field`` dimension."""
    known = prediction if reference is None else reference
    ds = comparison(prediction, known, {**coords, "field": list(fields)}, **attrs)
    return ds if reference is not None else ds.drop_vars(["reference", "error"])


def test_a_field_without_reference_is_drawn_alone_on_its_own_colour_scale(saved_figures):
    x = np.linspace(-1, 1, 9)
    X, Y = np.meshgrid(x, x, indexing="ij")
    prediction = 2 + X * Y
    ds = comparison(prediction, prediction, {"x": x, "y": x}).drop_vars(["reference", "error"])
    figures.plot_solution(ds.assign_attrs(t=0.5), Path("unused.png"), scheme="PINN", step=7)
    fig = saved_figures[-1]
    ax, bar = fig.axes
    assert ax.get_title() == "prediction" and bar.get_ylabel() == "u [dimensionless]"
    assert ax.images[0].norm.vmin == pytest.approx(1.0) and ax.images[0].norm.vmax == 3.0
    assert ax.images[0].colorbar.extend == "neither"
    assert fig.get_suptitle() == "demo: PINN, step 7, t = 0.5"  # no error without a reference

    t = np.linspace(0, 1, 3)
    cut = comparison(np.stack([prediction] * 3), np.stack([prediction] * 3),
                     {"time": t, "x": x, "y": x}).drop_vars(["reference", "error"])
    figures.plot_solution(cut.isel(time=-1), Path("unused.png"))
    assert saved_figures[-1].get_suptitle() == "demo: at t = 1"
    scheme = "PINN (Lagrangian), Adam + L-BFGS with loss-weight annealing"
    figures.plot_solution(ds.assign_attrs(t=0.5), Path("unused.png"), scheme=scheme, step=7)
    fig = saved_figures[-1]
    lines = fig.get_suptitle().split("\n")  # wrapped to the one panel's width
    assert len(lines) == 2 and " ".join(lines) == f"demo: {scheme}, step 7, t = 0.5"
    assert max(map(len, lines)) <= 13 * fig.get_figwidth()


def test_a_system_gets_a_row_per_field_each_on_its_own_colour_scale(saved_figures):
    t, x = np.linspace(0, 1, 4), np.linspace(0, 1, 6)
    reference = np.stack(np.broadcast_arrays(np.exp(-t)[:, None] * x, -10 * x + 0 * t[:, None]),
                         axis=-1)  # (time, x, field): u in [0, 1], v in [-10, 0]
    prediction = 0.99 * reference
    ds = system(prediction, reference, {"time": t, "x": x}, rel_l2=0.02)
    figures.plot_solution(ds, Path("unused.png"))
    fig = saved_figures[-1]
    fields, bars = fig.axes[:6], fig.axes[6:]
    assert [ax.get_title() for ax in fields] == ["prediction", "reference", "|error|"] * 2
    assert [bar.get_ylabel() for bar in bars] == (
        ["u [dimensionless]"] * 2 + ["|error| of u [dimensionless]"]
        + ["v [dimensionless]"] * 2 + ["|error| of v [dimensionless]"])
    assert fields[1].images[0].get_clim() == pytest.approx((0.0, 1.0))
    assert fields[4].images[0].get_clim() == pytest.approx((-10.0, 0.0))
    assert fig.get_suptitle() == "demo: time from 0 to 1; relative L2 error 2.00e-02"

    figures.plot_solution(system(prediction, None, {"time": t, "x": x}), Path("unused.png"))
    fig = saved_figures[-1]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["prediction"] * 2
    assert [bar.get_ylabel() for bar in fig.axes[2:]] == ["u [dimensionless]",
                                                          "v [dimensionless]"]
    assert fig.get_suptitle() == "demo: time from 0 to 1"


def test_1d_fields_without_reference_are_drawn_as_one_curve_each(saved_figures):
    x = np.linspace(0, 1, 11)
    prediction = np.stack([np.sin(np.pi * x), x * (1 - x)], axis=-1)
    figures.plot_solution(system(prediction, None, {"x": x}, fields=("u", "w")),
                          Path("unused.png"), step=3)
    fig = saved_figures[-1]
    assert [ax.get_ylabel() for ax in fig.axes] == ["u [dimensionless]", "w [dimensionless]"]
    for ax, curve in zip(fig.axes, prediction.T):
        (line,) = ax.get_lines()
        assert line.get_label() == "prediction"
        assert matplotlib.colors.same_color(line.get_color(), "C0")
        np.testing.assert_array_equal(line.get_ydata(), curve)
    assert fig.get_suptitle() == "demo: step 3"

    reference = prediction + 0.1
    figures.plot_solution(system(prediction, reference, {"x": x}, fields=("u", "w")),
                          Path("unused.png"))
    assert [ax.get_ylabel() for ax in saved_figures[-1].axes] == [
        "u [dimensionless]", "|error| of u [dimensionless]",
        "w [dimensionless]", "|error| of w [dimensionless]"]


def test_the_snapshot_of_a_system_keeps_its_fields(saved_figures):
    from physml.cases.equation import solution_snapshot

    t, x = np.linspace(0, 1, 3), np.linspace(0, 1, 5)
    prediction = np.ones((3, 5, 5, 2))
    shown = solution_snapshot(system(prediction, None, {"time": t, "x": x, "y": x}))
    assert shown["prediction"].dims == ("x", "y", "field") and shown.attrs["t"] == 1.0


def test_an_equation_run_without_exact_draws_its_system(tmp_path):
    from physml.cases.registry import load_case, run_case

    case = tmp_path / "case.yaml"
    case.write_text("""kind: equation
name: pair
fields: [u, w]
domain: {geometry: {kind: interval, lower: [0.0], upper: [1.0]}}
pde: {eq_u: u_xx + 1, eq_w: w_xx + 2}
conditions: [{kind: dirichlet, value: 0.0}]
model: {kind: mlp, width: 8, depth: 2}
training: {collocation: {points: 32}, adam: {steps: 2}, lbfgs: {steps: 0}}
evaluation: {every: 2, grid: [9]}
""")
    folder, _ = run_case(load_case(str(case), [f"output.folder={tmp_path}"]))
    assert (folder / "solution.png").stat().st_size > 0


def test_a_loss_term_has_one_colour_in_the_loss_and_the_weight_panels(saved_figures):
    """The losses were drawn in sorted order and the weights in the records' order: the
    boundary loss took the residual weight's colour."""
    records = [{"step": s, "loss_residual": 1.0 / s, "loss_boundary": 2.0 / s,
                "weights": {"residual": 1.0, "boundary": 1.0 + s}} for s in range(1, 6)]
    figures.plot_losses(records, Path("unused.png"), "demo")
    losses, weights = saved_figures[-1].axes
    colours = [{line.get_label(): matplotlib.colors.to_rgba(line.get_color())
                for line in ax.get_lines()} for ax in (losses, weights)]
    assert colours[0]["residual"] != colours[0]["boundary"]
    assert {name: colours[0][name] for name in colours[1]} == colours[1]


def test_a_loss_term_of_0_throughout_says_so_in_its_legend(saved_figures):
    """On a log axis it draws no line, its legend entry still shown."""
    records = [{"step": s, "loss_residual": 1.0 / s, "loss_data": 0.0} for s in range(1, 6)]
    figures.plot_losses(records, Path("unused.png"), "demo")
    legend = [t.get_text() for t in saved_figures[-1].axes[0].get_legend().get_texts()]
    assert legend == ["data (all 0)", "residual"]


def two_fields_one_off() -> tuple[xr.Dataset, list[float]]:
    """u off by 50 %, v (about 100) nearly exact: the pooled error is 1.8e-3."""
    t, x = np.linspace(0, 2, 21), np.linspace(0, 1, 33)
    T, X = np.meshgrid(t, x, indexing="ij")
    reference = np.stack([np.sin(np.pi * X) * np.exp(-T), 100 + np.cos(np.pi * X) * T], axis=-1)
    prediction = reference.copy()
    prediction[..., 0] *= 1.5
    prediction[..., 1] += 0.01 * (reference[..., 1] - 100)
    errors = [relative_l2(prediction[..., k], reference[..., k]) for k in range(2)]
    return system(prediction, reference, {"time": t, "x": x},
                  rel_l2=relative_l2(prediction, reference)), errors


def test_each_row_of_a_system_is_titled_with_its_field_s_own_error(saved_figures):
    """The pooled error (1.8e-3) hid u's 50 %: each row now gives its field's."""
    ds, (u, v) = two_fields_one_off()
    figures.plot_solution(ds, Path("unused.png"))
    fig = saved_figures[-1]
    rows = [fig.axes[0], fig.axes[3]]
    assert [ax.get_title(loc="left").strip() for ax in rows] == [
        f"u: relative L2 error {u:.2e}", f"v: relative L2 error {v:.2e}"]
    assert u == pytest.approx(0.5) and v < 1e-4
    assert fig.get_suptitle().endswith(f"relative L2 error {ds.attrs['rel_l2']:.2e}")

    curves = ds.isel(time=-1, drop=True)  # a 1D system: curves, a row per field too
    figures.plot_solution(curves, Path("unused.png"))
    first, _, second, _ = saved_figures[-1].axes
    u_end = relative_l2(curves["prediction"].values[:, 0], curves["reference"].values[:, 0])
    assert first.get_title(loc="left") == f"u: relative L2 error {u_end:.2e}"
    assert second.get_title(loc="left").startswith("v: relative L2 error")


def test_a_prediction_not_finite_inside_the_domain_is_not_drawn_as_outside(saved_figures):
    """Both were the grey of OUTSIDE: a NaN quarter of a disk looked like no domain there."""
    from matplotlib.colors import to_rgba

    ds = space_time().isel(time=-1).assign_attrs(t=1.0)
    prediction = ds["prediction"].values.copy()
    prediction[5:, 5:] = np.nan  # a quarter of the frame, inside the disk in part
    ds["prediction"] = (ds["prediction"].dims, prediction)
    ds["error"] = ds["prediction"] - ds["reference"]
    figures.plot_solution(ds, Path("unused.png"))
    drawn, reference, error = panels(saved_figures[-1])[0]
    inside = np.isfinite(ds["reference"].values)
    expected = (np.isnan(prediction) & inside).T  # drawn (y, x)
    for ax in (drawn, error):
        field, marks = ax.images
        assert marks.get_cmap()(1.0) == to_rgba(figures.NOT_FINITE)
        np.testing.assert_array_equal(np.isfinite(marks.get_array().filled(np.nan)), expected)
        assert ax.get_facecolor() == to_rgba(figures.OUTSIDE)  # outside: still grey
    assert len(reference.images) == 1

    alone = ds.drop_vars(["reference", "error"]).assign(inside=(("x", "y"), inside))
    figures.plot_solution(alone, Path("unused.png"))  # the mask says where the domain is
    ax = saved_figures[-1].axes[0]
    np.testing.assert_array_equal(np.isfinite(ax.images[1].get_array().filled(np.nan)),
                                  expected)


def test_a_figure_is_closed_when_its_save_fails(monkeypatch, tmp_path):
    """A save interrupted (Ctrl-C, a full disk) left the figure open in pyplot."""
    import matplotlib.figure
    import matplotlib.pyplot as plt

    from physml.cases.pcg import plot_residuals

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    open_before = plt.get_fignums()
    draws = [
        lambda path: figures.plot_error_curve({"t": [0, 1], "rel_l2": [1e-3, 2e-3]}, path, "t"),
        lambda path: figures.plot_losses(history(5), path, "t"),
        lambda path: figures.plot_solution(space_time().isel(time=-1), path),
        lambda path: plot_tracked(records_with_swapping_sizes(), 0, path, units=MODEL_UNITS),
        lambda path: plot_free_energy([0, 1, 2], [3.0, 2.0, 1.0], path, MODEL_UNITS, "1"),
        lambda path: plot_residuals({"ic0": {"residuals": [1.0, 1e-3], "setup_s": 1e-3,
                                             "solve_s": 1e-3}}, path, "t"),
    ]
    for draw in draws:
        with pytest.raises(KeyboardInterrupt):
            draw(Path("unused.png"))
        assert plt.get_fignums() == open_before


def test_the_tracked_legend_stands_beside_the_positions_not_on_them(saved_figures):
    """Placed "best" inside the axes, it covered the centre-of-mass line of 14 particles."""
    records = [{"t": float(t), "phase_centre_of_mass": 6.5,
                "particles": [{"id": k, "centroid": [float(k), 0.0], "radius": 1.0}
                              for k in range(14)]} for t in range(3)]
    for count in (14, 2):
        for r in records:
            r["particles"] = r["particles"][:count]
        plot_tracked(records, 0, Path("unused.png"), units=MODEL_UNITS)
        fig = saved_figures[-1]
        fig.draw_without_rendering()  # the layout, as a save makes it
        left = fig.axes[0]
        legend = left.get_legend().get_window_extent()
        axes = left.get_window_extent()
        assert legend.x0 >= axes.x1 and not legend.overlaps(fig.axes[1].get_window_extent())


def test_model_times_keep_the_digits_that_tell_saves_apart():
    """12.5 and 13.5 read "t = 12" and "t = 14"."""
    from physml.cases.microstructure_figures import _time

    assert [_time(t, MODEL_UNITS) for t in (12.5, 13.5, 0.25, 1e6)] == [
        "t = 12.5", "t = 13.5", "t = 0.25", "t = 1,000,000"]
    assert _time(1234.5, SI_UNITS) == "t = 1,234.5 s"
    assert _time(2e7, SI_UNITS) == "t = 20,000,000 s"


def test_the_snapshots_are_titled_with_the_case_and_the_grid(saved_figures):
    from physml.cases.microstructure_figures import plot_snapshots
    from physml.solvers import Grid

    grid = Grid((32, 16), (0.0, 0.0), (64e-6, 32e-6))
    states = [np.full((32, 16), c) for c in (0.1, 0.2, 0.3)]
    plot_snapshots(grid, [0.0, 1.0, 2.0], states, Path("unused.png"), case="demo")
    assert saved_figures[-1].get_suptitle() == "demo: composition, 32 × 16 cells over 64 × 32 um"
    grid = Grid((8, 8, 4), (0.0, 0.0, 0.0), (8.0, 8.0, 4.0))
    plot_snapshots(grid, [0.0, 1.0], [np.zeros((8, 8, 4))] * 2, Path("unused.png"),
                   units=MODEL_UNITS)
    assert saved_figures[-1].get_suptitle() == (
        "composition, 8 × 8 × 4 cells over 8 × 8 × 4 model units, mid-plane z = 2.5 model units")


def test_a_vanishing_field_s_row_error_is_relative_to_all_fields(saved_figures):
    from pathlib import Path

    import numpy as np
    from test_figures import system

    from physml.cases import figures
    t, x = np.linspace(0, 2, 5), np.linspace(0, 1, 9)
    T, X = np.meshgrid(t, x, indexing="ij")
    reference = np.stack([np.sin(np.pi * X) * np.exp(-T), 0 * X], axis=-1)
    prediction = reference.copy()
    prediction[..., 1] += 0.01
    ds = system(prediction, reference, {"time": t, "x": x}, rel_l2=0.0)
    figures.plot_solution(ds, Path("unused.png"))
    expected = np.sqrt(np.sum(0.01 ** 2 * np.ones_like(X))) / np.sqrt(np.sum(reference ** 2))
    titles = [ax.get_title(loc="left").strip() for ax in saved_figures[-1].axes]
    assert f"v: relative L2 error {expected:.2e}" in titles
