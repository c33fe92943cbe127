"""Cases that know the right answer say it beside the measured one, give a verdict, and draw
the figure that shows it: the inverse problem's true coefficient, the heat decay rate against
its tolerance, the Poisson orders against the corner singularity's, and the PFHub free
energy (without particle tracks for a spinodal network)."""

import inspect
import json

import pytest

from physml.cases import equation
from physml.cases.mesh_pde_heat import DECAY_RATE_TOLERANCE, heat_summary
from physml.cases.mesh_pde_results import headline
from physml.cases.mesh_pde_spec import FieldSpec
from physml.cases.registry import load_case, run_case

TINY_INVERSE = ["training.adam.steps=4", "training.lbfgs.steps=0",
                "training.collocation.points=64",
                "evaluation.every=2", "evaluation.grid=[9, 5]", "model.width=4", "model.depth=1",
                "observations.points=20", "observations.solve.nx=64",
                "observations.solve.n_saves=5"]


# -------------------------------------------------------------------- equation: inverse problem


def test_the_true_coefficient_is_the_one_the_observations_were_solved_with():
    case = load_case("burgers_inverse", TINY_INVERSE)
    assert equation.true_coefficients(case) == {"nu": 0.05}
    default = load_case("burgers_inverse", [*TINY_INVERSE, "observations.solve.parameters={}"])
    assert equation.true_coefficients(default) == pytest.approx({"nu": 0.01 / 3.141592653589793})
    fixed = load_case("burgers_inverse", [*TINY_INVERSE, "coefficients.nu.trainable=false"])
    assert equation.true_coefficients(fixed) == {}  # nothing identified, nothing to compare


def test_identification_and_headline_give_the_truth_and_the_relative_error():
    result = {"rel_l2": 1e-3, "coefficient_nu": 0.0505, "steps": 10, "wall_s": 1.0,
              "threshold": None, "passed": None}
    result |= equation.identification(result, {"nu": 0.05})
    assert result["true_nu"] == 0.05
    assert result["relative_error_nu"] == pytest.approx(0.01)
    assert "nu = 0.0505 (true 0.05, relative error 1.00%)" in equation.headline(result)


def test_an_inverse_run_records_the_truth_and_draws_its_coefficients(tmp_path):
    case = load_case("burgers_inverse", [*TINY_INVERSE, "output.figures=true",
                                         f"output.folder={tmp_path}"])
    folder, result = run_case(case)
    summary = json.loads((folder / "metrics.json").read_text())["summary"]
    assert summary["true_nu"] == 0.05 == result["true_nu"]
    assert summary["relative_error_nu"] == pytest.approx(abs(summary["coefficient_nu"] / 0.05
                                                             - 1))
    assert (folder / "coefficients.png").stat().st_size > 0


# ------------------------------------------------------------------------- mesh_pde: heat decay


def decay_summary(error: float) -> dict:
    return {"pde": "heat", "t": 4.0, "mass_drift": 1e-13, "decay_rate": 1.0 + error,
            "decay_rate_interval": [3.8, 4.0], "decay_rate_expected": 1.0,
            "decay_rate_error": error, "decay_rate_tolerance": DECAY_RATE_TOLERANCE,
            "passed": error <= DECAY_RATE_TOLERANCE}


@pytest.mark.parametrize(("error", "verdict"), [(9e-5, "pass"), (2.4e-2, "fail")])
def test_the_heat_headline_states_the_tolerance_and_the_verdict(error, verdict):
    line = headline(decay_summary(error))
    assert f"relative error {error:.1e}, tolerance 1e-03: {verdict})" in line


@pytest.mark.parametrize(("steps", "passed"), [(200, True), (100, False)])
def test_a_heat_run_passes_once_the_first_mode_dominates_and_draws_its_decay(tmp_path, steps,
                                                                             passed):
    """The quick variant (h 0.2): the rate between the last saves is 1.4e-4 off at t = 2,
    within the tolerance; 2.4e-2 at t = 1, before the first mode dominates."""
    case = load_case("heat_surface", ["variant=quick", f"time.steps={steps}",
                                      f"output.folder={tmp_path}"])
    folder, summary = run_case(case)
    assert summary["decay_rate_tolerance"] == DECAY_RATE_TOLERANCE
    assert summary["passed"] is passed
    assert summary["passed"] == (summary["decay_rate_error"] <= DECAY_RATE_TOLERANCE)
    assert summary["units"]["decay_rate"].startswith("1/s")
    assert summary["decay_rate_interval"] == pytest.approx([steps / 100 - 0.2, steps / 100])
    assert (folder / "decay.png").stat().st_size > 0


def test_a_heat_run_reads_its_rate_before_the_deviation_stalls_at_round_off(tmp_path):
    """From t = 27 the deviation is round-off (below 5e-13), changing by the solves'
    tolerance only: the rate comes from the last interval above round-off, not from the last
    two saves (a rate near 0, a false fail), and the headline says so."""
    case = load_case("heat_surface", ["variant=quick", "time.dt=0.05", "time.steps=600",
                                      "time.save_every=20", f"output.folder={tmp_path}"])
    folder, summary = run_case(case)
    deviation = [r["deviation"] for r in
                 json.loads((folder / "metrics.json").read_text())["history"]]
    assert max(deviation[-4:]) < 5e-13  # the round-off the rate must not be read in
    assert summary["passed"] and summary["decay_rate_error"] < 1e-4
    start, end = summary["decay_rate_interval"]
    assert end - start == pytest.approx(1.0) and 15 < end < summary["t"] == 30
    assert f"/s over t = {start:g} to {end:g} s (later saves at round-off)" in headline(summary)
    assert (folder / "decay.png").stat().st_size > 0


@pytest.mark.parametrize(("overrides", "deviations", "reason"), [
    (["time.save_every=1000"], [0.5, 0.05],
     "two saves only (time.save_every 1000 >= time.steps 200): the rate is read after the "
     "first interval"),
    ([], [0.5, 1e-12, 1e-12],
     "deviation from the mean 1.0e-12 is round-off (max|u0| sqrt(area) 4.0e+00) by t = 0.4")])
def test_a_heat_run_without_an_interval_to_measure_says_why(overrides, deviations, reason):
    import scipy.sparse as sp

    case = load_case("heat_surface", ["variant=quick", *overrides])
    history = [{"step": k, "t": 0.2 * k, "mass": 0.6, "energy": 0.0, "min": 0.0, "max": 1.0,
                "deviation": d} for k, d in enumerate(deviations)]
    summary = heat_summary(case, history, None, sp.identity(4) * 15.8 / 4, closed=True)
    assert "decay_rate" not in summary and "passed" not in summary
    assert summary["decay_rate_skipped"].startswith(reason)
    assert f"decay rate not checked: {reason}" in headline({"pde": "heat", **summary})


# ---------------------------------------------------------------------- mesh_pde: Poisson orders


def test_the_corner_singularity_fixes_the_expected_orders():
    case = load_case("poisson_lshape")
    assert case.pde.exact.expected_orders == pytest.approx({"l2": 4 / 3, "h1": 2 / 3})
    smooth = FieldSpec(kind="gaussian")
    assert smooth.expected_orders is None


def test_poisson_orders_come_with_the_expected_ones_and_a_convergence_plot(tmp_path):
    case = load_case("poisson_lshape", ["variant=quick", f"output.folder={tmp_path}"])
    folder, summary = run_case(case)
    assert summary["order_l2_expected"] == pytest.approx(4 / 3)
    assert summary["order_h1_expected"] == pytest.approx(2 / 3)
    line = headline(summary)
    assert (f"observed orders L2 {summary['order_l2']:.2f} (expected 4/3), "
            f"H1 {summary['order_h1']:.2f} (expected 2/3)") in line
    assert (folder / "convergence.png").stat().st_size > 0


# --------------------------------------------------------------- thermomigration: PFHub 1a


def test_a_spinodal_run_draws_its_free_energy_and_no_particle_tracks(tmp_path, monkeypatch):
    from physml.cases import microstructure_figures

    drawn = []
    original = microstructure_figures.plot_snapshots

    def spy(*args, **kwargs):
        drawn.append(inspect.signature(original).bind(*args, **kwargs).arguments
                     .get("centroids"))
        original(*args, **kwargs)

    monkeypatch.setattr(microstructure_figures, "plot_snapshots", spy)
    case = load_case("thermomigration_spinodal_pfhub1", [
        "variant=cpu", "grid.shape=[32, 32]", "grid.length=[64.0, 64.0]", "time.end=10.0",
        "time.saves=3", f"output.folder={tmp_path}"])
    folder, _ = run_case(case)
    assert (folder / "free_energy.png").stat().st_size > 0
    assert not (folder / "tracked.png").exists()
    assert drawn == [None]  # no centroid marks on a bicontinuous network


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], {"l2": 4 / 3, "h1": 2 / 3}),
    (["mesh.domain=disc"], None),  # no re-entrant corner
    (["pde.exact.centre=[0.5, 0.5]"], None),  # the singularity off the L-shape's corner
    (["pde.exact.centre=[0.5, 0.5]", "boundary.0.value.centre=[0.5, 0.5]"], None)])
def test_expected_orders_hold_only_at_the_l_shape_s_re_entrant_corner(overrides, expected):
    case = load_case("poisson_lshape", overrides)
    assert case.expected_orders == (None if expected is None else pytest.approx(expected))


def test_a_constant_heat_start_has_no_decay_verdict():
    """u0 = 1: the deviation from the mean is round-off (4.4e-16), nothing decays, so no rate
    is measured and no verdict given, and the headline says why."""
    import scipy.sparse as sp

    case = load_case("heat_surface", ["variant=quick", "pde.initial=1.0"])
    history = [{"step": k, "t": 0.2 * k, "mass": 15.8, "energy": 0.0, "min": 1.0, "max": 1.0,
                "deviation": 4.4e-16} for k in range(3)]
    summary = heat_summary(case, history, None, sp.identity(4) * 15.8 / 4, closed=True)
    assert "decay_rate" not in summary and "passed" not in summary
    assert "round-off" in summary["decay_rate_skipped"]
    line = headline({"pde": "heat", **summary})
    assert "decay rate not checked: initial deviation from the mean 4.4e-16 is round-off" in line
    assert "fail" not in line
