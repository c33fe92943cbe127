"""The benchmark scripts redraw their figures from a committed report (``--plot-only``), and the
figures show what the report holds: pcg's every family, its legend beside the axes and its n
labels apart, the MoE methods drawn named in the title, the mesh peer whose geodesic is wrong
marked and coinciding timings told apart, and convection's training budget."""

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def plot_only(module, monkeypatch, report: Path) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", "--plot-only", str(report)])
    module.main()


@pytest.mark.parametrize("name, report, figures", [
    ("pcg", "pcg_heat_small.json", ["pcg_heat_small.png"]),
    ("moe", "moe_pou_cpu.json", ["moe_pou_cpu.png"]),
    ("mesh", "mesh.json", ["mesh_assembly.png", "mesh_poisson.png", "mesh_geodesic.png"]),
    ("convection", "convection.json", ["convection.png"]),
])
def test_plot_only_redraws_the_figures_of_a_committed_report(script, monkeypatch, tmp_path,
                                                             name, report, figures):
    """A figure could be redrawn only by measuring again (minutes to hours)."""
    shutil.copy(RESULTS / report, tmp_path / report)
    plot_only(script(name), monkeypatch, tmp_path / report)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(figures)
    assert all((tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)


@pytest.mark.parametrize("report, message", [
    ("missing.json", "--plot-only {path}: no such report"),
    ("convection.json", "--plot-only {path}: it holds no 'generalisation'; give a report this "
                        "script wrote"),
    ("linalg.json", "--plot-only {path}: it holds no 'generalisation'; give a report this "
                    "script wrote"),  # cases of another kind
])
def test_plot_only_refuses_a_report_it_cannot_draw_in_one_line(script, monkeypatch, capsys,
                                                               report, message):
    path = RESULTS / report
    with pytest.raises(SystemExit) as exited:
        plot_only(script("pcg"), monkeypatch, path)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(message.format(path=path))


def drawn(figure):
    figure.canvas.draw()  # lays the figure out
    return figure


def overlapping(boxes) -> bool:
    return any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])


def test_pcg_figure_draws_every_family_its_legend_beside_and_n_labels_apart(script,
                                                                            saved_figures):
    """pcg.json holds heat_mesh and poisson_grid: only the grids were drawn. The legend sat on
    the curves, and on pcg_heat_small.png the minor labels 2, 3, 4 x 10^3 ran into each other."""
    pcg = script("pcg")
    for report in ("pcg.json", "pcg_heat_small.json"):
        pcg.plot(json.loads((RESULTS / report).read_text())["cases"], Path("figure.png"))
    both, small = (drawn(f) for f in saved_figures)
    assert [ax.get_title() for ax in both.axes[2::3]] == ["heat_mesh: refinement sweep",
                                                          "poisson_grid: refinement sweep"]
    sweep = small.axes[2]
    legend = sweep.get_legend().get_window_extent()
    assert not any(legend.overlaps(ax.get_window_extent()) for ax in small.axes)
    labels = [t for t in sweep.get_xticklabels() + sweep.get_xticklabels(minor=True)
              if t.get_text() and sweep.get_xlim()[0] <= t.get_position()[0]
              <= sweep.get_xlim()[1]]
    assert len(labels) >= 3
    assert not overlapping([t.get_window_extent() for t in labels])


def test_moe_title_names_the_methods_drawn(script, saved_figures):
    """moe_pou_cpu.png drew two MoE curves under the title "soft vs hard vs MoE"."""
    moe = script("moe")
    moe._plot(json.loads((RESULTS / "moe_pou_cpu.json").read_text()), Path("moe.png"))
    title = saved_figures[0].axes[0].get_title()
    assert title.splitlines()[-1] == "moe-interface-K4 vs moe-pou-K4"


def test_mesh_marks_a_wrong_geodesic_and_tells_coinciding_sides_apart(script, saved_figures):
    """potpourri3d's 185 s at 6.6e5 vertices (max error 1.36 against physml's 0.010) was drawn
    as a like-for-like time, and two pairs of Poisson sides lay exactly on each other."""
    mesh = script("mesh")
    report = json.loads((RESULTS / "mesh.json").read_text())
    assert [mesh.wrong_answers(r) for r in report["geodesic"]] == [set()] * 3 + [{"potpourri3d"}]
    mesh.plot_report(report, Path("mesh.json"))
    poisson, geodesic = saved_figures[1:]
    notes = [t.get_text() for t in geodesic.axes[0].texts]
    assert len(notes) == 1 and "potpourri3d's answer is wrong, max error 1.36" in notes[0]
    styles = [(bars.lines[0].get_marker(), bars.lines[0].get_linestyle())
              for bars in poisson.axes[0].containers]
    assert len(styles) == 5 and len(set(styles)) == 5


def test_convection_title_gives_the_budget(script, saved_figures):
    """convection.png had no title: the steps, points and seeds were in its JSON only."""
    convection = script("convection")
    convection.plot(json.loads((RESULTS / "convection.json").read_text()), Path("c.png"))
    assert saved_figures[0].axes[0].get_title() == (
        "u_t + beta u_x = 0: 500 Adam + 500 L-BFGS steps,\n2000 points, 3 seeds")
