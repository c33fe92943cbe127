"""A ``mesh_pde`` run's results: the :class:`Result` a runner hands over, the units of its
summary's entries and the summary's one-line readings (the headline, the observed orders,
the heat decay verdict), and the run folder's files (those of :mod:`~.mesh_pde`):
``solution.vtu``, ``fields.h5``, ``metrics.json`` and the figures."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from ..datasets.mesh_store import mesh_dataset
from ..datasets.store import write_dataset
from ..devices import Stopwatch
from ..solvers import mesh as pm
from .mesh_pde_spec import MeshPDECase
from .run_folder import atomic_write, write_metrics

FIELD_METADATA = {
    "u0": ("initial value of u", "1"), "exact": ("exact solution", "1"),
    "error": ("nodal error u - exact", "1"), "source": ("source term f", "1"),
    "distance": ("geodesic distance", "m"),
}


@dataclass
class Result:
    """What a runner hands to :func:`write_results`."""

    mesh: pm.Mesh
    fields: dict[str, np.ndarray]
    summary: dict
    history: list[dict] = field(default_factory=list)
    frames: tuple[np.ndarray, np.ndarray] | None = None  # (times, u (n_times, n)) for heat


SUMMARY_UNITS = {
    "h": "m, mean edge length", "solve_s": "s", "residual": "relative, free rows",
    "rel_l2": "relative, L2 norm of u_h - u by quadrature",
    "rel_h1": "relative, H1 seminorm of u_h - u by quadrature",
    "l2_error": "absolute, L2 norm of u_h - u by quadrature",
    "h1_error": "absolute, H1 seminorm of u_h - u by quadrature",
    "rel_l2_nodal": "relative, mass-matrix norm of u_h - I_h u (nodal interpolant)",
    "rel_h1_nodal": "relative, stiffness seminorm of u_h - I_h u (nodal interpolant)",
    "max_error": "as u", "order_l2": "slope of log rel_l2 against log h",
    "order_h1": "slope of log rel_h1 against log h", "order_l2_expected": "asymptotic",
    "order_h1_expected": "asymptotic", "t": "s", "mass_drift": "relative",
    "overshoot": "relative to the initial range", "final_deviation": "final / initial",
    "lambda_1": "1/m^2", "decay_rate": "1/s, over decay_rate_interval",
    "decay_rate_interval": "s, the last two saves above round-off",
    "decay_rate_expected": "1/s", "decay_rate_error": "relative",
    "decay_rate_tolerance": "relative", "step_s": "s", "wall_s": "s",
    "source": "vertex index", "max_distance": "m", "rel_max_error": "relative to max |exact|",
    "loss_initial": "1, match + quality_weight x quality", "loss_final": "as loss_initial",
    "match_initial": "1, relative to |domain| U_max^2", "match_final": "as match_initial",
    "quality_final": "1, mean ratio - 1", "match_drop": "match_initial / match_final",
    "aspect": "width / height", "aspect_target": "a / b",
    "boundary_off_ellipse": "1, max |((x/a)^2 + (y/b)^2)^(1/2) - 1| over the boundary",
}
"""Units of the entries of a ``mesh_pde`` run's summary (``metrics.json``)."""


def summary_units(summary: dict) -> dict[str, str]:
    """The :data:`SUMMARY_UNITS` of the entries ``summary`` holds."""
    return {key: unit for key, unit in SUMMARY_UNITS.items() if key in summary}


def write_results(case: MeshPDECase, result: Result, folder: Path, clock: Stopwatch) -> None:
    """solution.vtu, fields.h5 (attrs: the case's name, the PDE, the physml version and the
    resolved configuration), the figures and, last, metrics.json, each whole or not at all
    (:func:`~.run_folder.atomic_write`): a folder with a metrics.json holds every result.
    Before it is written, the summary's ``wall_s`` is set to ``clock``'s reading (the run's
    seconds, the other files' writing included), then its ``units``."""
    atomic_write(folder / "solution.vtu",
                 lambda tmp: pm.write_mesh(tmp, result.mesh, point_data=result.fields))
    attrs = {"case": case.name, "pde": case.pde.name, "physml_version": __version__,
             "config": case.to_yaml()}
    if result.frames is None:
        ds = mesh_dataset(result.mesh, result.fields, attrs=attrs, metadata=FIELD_METADATA)
    else:
        times, frames = result.frames
        ds = mesh_dataset(result.mesh, {"u": frames}, times, attrs, FIELD_METADATA)
    write_dataset(ds, folder / "fields.h5")
    if case.output.figures:
        plot_results(case, result, folder)
    result.summary["wall_s"] = clock.read()
    result.summary["units"] = summary_units(result.summary)
    write_metrics(folder, case.name, result.summary, result.history)


def plot_results(case: MeshPDECase, result: Result, folder: Path) -> None:
    """The figures of :func:`plot_checks`, ``solution.png`` (the fields; on a tetrahedral
    mesh in its mid-plane, :func:`mid_plane`) and, for a shape optimisation, ``losses.png``
    (the objective's terms)."""
    plot_checks(case, result, folder)
    from .figures import plot_losses
    from .mesh_figures import plot_mesh_fields

    fields = dict(result.fields)
    if "source" in fields and not np.any(fields["source"]):  # -lap u = 0: nothing to show
        del fields["source"]
    titles = {name: FIELD_METADATA[name][0] for name in fields if name in FIELD_METADATA}
    if result.frames is not None:
        times = result.frames[0]
        titles |= {"u0": f"u at t = {times[0]:.4g} s", "u": f"u at t = {times[-1]:.4g} s"}
    units = {name: FIELD_METADATA.get(name, ("", "1"))[1] for name in fields}
    points, cells, title = result.mesh.points, result.mesh.cells, case.name
    if result.mesh.cell_dim == 3:
        z = 0.5 * (points[:, 2].min() + points[:, 2].max())
        points, cells, fields = mid_plane(points, cells, fields, z)
        title += f" (the plane z = {z:.4g} m)"
    plot_mesh_fields(points, cells, fields, folder / "solution.png",
                     f"{title}: {headline(result.summary)}", units, titles)
    if case.pde.name == "shape_optimisation":
        weight = case.optimisation.quality_weight
        terms = [{"step": r["step"], "loss_objective": r["loss"], "loss_match": r["loss_match"]}
                 | ({f"loss_{weight:g} × quality": weight * r["loss_quality"]} if weight else {})
                 for r in result.history]
        plot_losses(terms, folder / "losses.png", case.name,
                    ylabel="objective and its terms (match + weighted quality)")


def mid_plane(points: np.ndarray, cells: np.ndarray, fields: dict[str, np.ndarray], z: float
              ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The cut of a tetrahedral mesh (``points`` (n, 3), ``cells`` (m, 4)) by the plane
    $z = $ ``z``, as a planar triangle mesh: points (p, 2) (x, y), triangles (q, 3), and each
    nodal field (n,) interpolated linearly along the cut edges, so a P1 field is exact there.
    A tetrahedron cut through three of its edges gives a triangle, one cut through four a
    quadrilateral, split in two; a vertex on the plane counts as above it, so a face lying in
    it is drawn once, from the tetrahedron below; slivers of zero area are dropped."""
    below = points[:, 2] < z
    count = below[cells].sum(axis=1)
    # each cut cell's vertices, those below the plane first
    order = np.argsort(~below[cells], axis=1, kind="stable")
    v = np.take_along_axis(cells, order, axis=1)
    polygons = [  # edges (vertex below, vertex above) of each triangle of the cut
        v[count == 1][:, [[0, 1], [0, 2], [0, 3]]],
        v[count == 3][:, [[0, 3], [1, 3], [2, 3]]],
        v[count == 2][:, [[0, 2], [0, 3], [1, 3]]],
        v[count == 2][:, [[0, 2], [1, 3], [1, 2]]],
    ]
    edges = np.concatenate(polygons).reshape(-1, 2)
    unique, triangles = np.unique(edges, axis=0, return_inverse=True)
    a, b = unique.T
    weight = (z - points[a, 2]) / (points[b, 2] - points[a, 2])  # along a -> b, in (0, 1]
    cut = points[a, :2] + weight[:, None] * (points[b, :2] - points[a, :2])
    triangles = triangles.reshape(-1, 3)
    x, y = cut[triangles].transpose(2, 0, 1)  # (2, q, 3)
    area = 0.5 * np.abs((x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0])
                        - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0]))
    keep = area > 1e-12 * np.ptp(points[:, :2], axis=0).prod()
    values = {name: f[a] + weight * (f[b] - f[a])
              for name, f in ((n, np.asarray(f, dtype=float)) for n, f in fields.items())}
    return cut, triangles[keep], values


def plot_checks(case: MeshPDECase, result: Result, folder: Path) -> None:
    """The figures of the checks against exact facts: ``convergence.png`` (Poisson errors
    against h over two or more meshes) and ``decay.png`` (the decay rate of a heat run
    without Dirichlet parts, its saves up to the end of ``decay_rate_interval``: the figure
    flags its last interval as the one reported)."""
    from .mesh_figures import TITLE_CHARACTERS_PER_INCH
    from .verdict_figures import plot_convergence, plot_decay

    summary = result.summary
    if case.pde.name == "poisson" and summary.get("order_l2") is not None:
        expected = ({"l2": summary["order_l2_expected"], "h1": summary["order_h1_expected"]}
                    if "order_l2_expected" in summary else None)
        plot_convergence(summary["levels"], {"l2": summary["order_l2"],
                                             "h1": summary["order_h1"]},
                         expected, folder / "convergence.png",
                         f"{case.name}: errors against h\n{_orders(summary)}")
    if "decay_rate" in summary:
        saves = [r for r in result.history if r["t"] <= summary["decay_rate_interval"][1]]
        plot_decay([r["t"] for r in saves], [r["deviation"] for r in saves],
                   summary["decay_rate_expected"], summary["decay_rate_tolerance"],
                   folder / "decay.png",  # 11 inches wide
                   textwrap.fill(f"{case.name}: {_decay(summary)}",
                                 width=11 * TITLE_CHARACTERS_PER_INCH))


def headline(summary: dict) -> str:
    """The figures that say whether the run is right."""
    pde = summary["pde"]
    if pde == "poisson" and "max_error" in summary:  # against pde.exact
        orders = (f", {_orders(summary)}" if summary.get("order_l2") is not None
                  else f", no observed orders: {summary['orders_skipped']}"
                  if "orders_skipped" in summary else "")
        return (f"{_errors(summary)} on the case's mesh (h {summary['h']:.3g}){orders}, "
                f"residual {summary['residual']:.1e}")
    if pde == "poisson":
        return f"residual {summary['residual']:.1e} on {summary['vertices']} vertices"
    if pde == "heat":
        decay = (f", {_decay(summary)}" if "decay_rate" in summary
                 else f", decay rate not checked: {summary['decay_rate_skipped']}"
                 if "decay_rate_skipped" in summary else "")
        checks = (f"mass drift {summary['mass_drift']:.1e}" if "mass_drift" in summary
                  else f"energy {'never grew' if summary['energy_monotone'] else 'grew'}, "
                       f"overshoot {summary['overshoot']:.1e}")  # Dirichlet parts: no mass check
        return f"t={summary['t']:g}: {checks}{decay}"
    if pde == "geodesic":
        error = (f", max error {summary['max_error']:.3e}" if "max_error" in summary else "")
        unreached = (f" ({summary['unreached_vertices']} vertices not reached: not connected "
                     "to the source)" if "unreached_vertices" in summary else "")
        return f"max distance {summary['max_distance']:.4f}{unreached}{error}"
    verdict = "reached" if summary["passed"] else "missed"
    return (f"match loss {summary['match_initial']:.2e} -> {summary['match_final']:.2e} "
            f"(drop {summary['match_drop']:.0f}x, target {summary['threshold']:g}x: "
            f"{verdict}), aspect {summary['aspect']:.3f} (target {summary['aspect_target']:.3f}), "
            f"boundary off the ellipse by {summary['boundary_off_ellipse']:.1e}")



def _errors(summary: dict) -> str:
    """``relative L2 error 3.71e-03, H1 6.87e-02``; the absolute error where the exact
    solution's norm is zero, said so."""
    if "rel_h1" in summary:
        return f"relative L2 error {summary['rel_l2']:.2e}, H1 {summary['rel_h1']:.2e}"
    if "rel_l2" in summary:
        return (f"relative L2 error {summary['rel_l2']:.2e}, H1 error "
                f"{summary['h1_error']:.2e} (absolute: the exact solution is constant)")
    return (f"L2 error {summary['l2_error']:.2e}, H1 {summary['h1_error']:.2e} (absolute: "
            "the exact solution is zero)")


def _orders(summary: dict) -> str:
    """``observed orders L2 1.28 (expected 4/3), H1 0.82 (expected 2/3)``; the expected
    ones where the summary holds them."""
    from .verdict_figures import fraction

    parts = []
    for norm in ("l2", "h1"):
        if summary.get(f"order_{norm}") is None:  # a norm the exact solution does not have
            continue
        text = f"{norm.upper()} {summary[f'order_{norm}']:.2f}"
        if f"order_{norm}_expected" in summary:
            text += f" (expected {fraction(summary[f'order_{norm}_expected'])})"
        parts.append(text)
    return "observed orders " + ", ".join(parts)


def _decay(summary: dict) -> str:
    """``decay rate 1.0308 /s (expected 1.0307, relative error 8.7e-05, tolerance 1e-03:
    pass)``; after the rate ``over t = 19.2 to 19.4 s (later saves at round-off)`` where it
    was not read between the last two saves."""
    verdict = "pass" if summary["passed"] else "fail"
    start, end = summary["decay_rate_interval"]
    interval = (f" over t = {start:g} to {end:g} s (later saves at round-off)"
                if end < summary["t"] else "")
    return (f"decay rate {summary['decay_rate']:.4f} /s{interval} (expected "
            f"{summary['decay_rate_expected']:.4f}, relative error "
            f"{summary['decay_rate_error']:.1e}, tolerance "
            f"{summary['decay_rate_tolerance']:.0e}: {verdict})")
