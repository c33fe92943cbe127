"""PNG figures of a run: the solution panels, the loss curves and the curves of the checks
against known values (matplotlib, no display)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ..datasets.store import atomic_write  # noqa: E402


def _label(da: xr.DataArray, name: str, units: str | None = None) -> str:
    """``long_name [units]`` from the variable's CF attributes (``name`` and ``units`` where
    they are absent; no brackets when no units are known)."""
    units = da.attrs.get("units", units)
    name = da.attrs.get("long_name", name)
    return f"{name} [{units}]" if units else name


def _field_label(ds: xr.Dataset, units: str) -> str:
    """The plotted field's name (``u``, or the ``field`` a system's panel shows) and units,
    for the prediction's and the reference's colour bars alike."""
    field = ds["field"] if "field" in ds.coords and ds["field"].ndim == 0 else None
    name = "u" if field is None else str(field.values)
    return f"{name} [{ds['reference'].attrs.get('units', units)}]"


def _relative_l2(prediction, reference) -> float:
    """$\\|p - r\\| / \\|r\\|$ over the points where the reference is finite (a NaN reference
    marks a point outside the domain); NaN when the reference vanishes there or the prediction
    is not finite at one of those points."""
    p, r = np.asarray(prediction, dtype=float), np.asarray(reference, dtype=float)
    inside = np.isfinite(r)
    if not np.isfinite(p[inside]).all():
        return float("nan")
    norm = float(np.sqrt(np.sum(r[inside] ** 2)))
    return float(np.sqrt(np.sum((p - r)[inside] ** 2))) / norm if norm > 0 else float("nan")


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around nodes: midway between neighbours, half a spacing beyond the ends."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    middle = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - middle[0]], middle, [2 * c[-1] - middle[-1]]])


def _uniform(centres: np.ndarray) -> bool:
    steps = np.diff(np.asarray(centres, dtype=float))
    return steps.size == 0 or bool(np.allclose(steps, steps[0], rtol=1e-6, atol=0.0))


def colour_scale(values, diverging: bool = False) -> dict:
    """How a field is coloured: a sequential colormap (``viridis``) over its range when it
    keeps one sign, a diverging one (``RdBu_r``) centred on 0 when it takes both (a value
    within $10^{-9}$ of the largest magnitude counts as zero) or when ``diverging`` asks for
    it (a signed error); keys ``cmap``, ``vmin``, ``vmax``. NaN (outside the domain) is
    ignored."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
    low, high = float(v.min()), float(v.max())
    zero = 1e-9 * max(abs(low), abs(high))
    if diverging or (low < -zero and high > zero):
        limit = max(-low, high) or 1e-3  # an all-zero field: a range around 0
        return {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
    if high - low <= zero:  # a constant field: a range around it
        pad = max(abs(high), 1.0) * 1e-3
        low, high = low - pad, high + pad
    return {"cmap": "viridis", "vmin": low, "vmax": high}


def clipping(values, vmin: float, vmax: float) -> tuple[str, float]:
    """The colour bar's ``extend`` for ``values`` drawn on [vmin, vmax] (``"min"``, ``"max"``,
    ``"both"`` or ``"neither"``) and the fraction of the finite values outside it."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    below, above = v < vmin, v > vmax
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
              (True, True): "both"}[(bool(below.any()), bool(above.any()))]
    return extend, float((below | above).sum() / max(v.size, 1))


# a prediction beyond the colour range at more than this fraction of its points says so
CLIPPED_SHOWN = 0.01


def plot_solution(ds: xr.Dataset, path: Path, *, scheme: str | None = None,
                  step: int | None = None, log_error: bool = False,
                  units: str = "dimensionless", pooled: str | None = None) -> None:
    """Prediction, reference and |error| side by side on the evaluation grid.

    The prediction and the reference share the reference's colour range: a sequential
    colormap over it for a one-signed reference, a diverging one centred on 0 for a field of
    both signs (:func:`colour_scale`). Where the prediction leaves that range its colour bar
    has extend arrows, and its panel title says which fraction of its points are beyond it
    when more than 1 % are. Each value fills its grid cell (edges halfway between the
    nodes); two space axes are drawn to equal scale.

    Colour bars are labelled with the field's name (``u``, or the field of a system's panel)
    and the reference's units (else ``units``); axes by the coordinates' CF ``long_name`` and
    ``units``. The title names the ``scheme`` (method) and training ``step`` when given, the
    time shown (the dataset's ``t`` attribute for a snapshot, else the range of the time axis
    of a space-time field) and the relative L2 error of what is drawn. A dataset cut from a
    larger one (scalar coordinates left by ``isel``: ``time``, ``sample``, a space axis with a
    ``plane`` attribute) gets the error of the cut, computed from its ``prediction`` and
    ``reference``, and the dataset's ``rel_l2`` attribute stated as the error over the whole
    (``pooled`` words it instead, e.g. ``"as the mean over the 4 test samples"``); otherwise
    the title gives ``rel_l2`` (computed when absent). ``log_error`` puts the error panel on
    a log colour scale (six decades below its maximum). A 1D field (a steady problem on an
    interval) is drawn as curves: prediction over reference, and |error|."""
    if ds["prediction"].ndim == 1:
        _plot_solution_curves(ds, path, scheme=scheme, step=step, log_error=log_error,
                              units=units, pooled=pooled)
        return
    dims = ds["prediction"].dims  # canonical order: (time, x) or (x, y)
    second = "time" if "time" in dims else dims[-1]  # the vertical axis
    first = next(d for d in dims if d != second)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    field = _field_label(ds, units)
    error = np.abs(ds["error"])
    scale = colour_scale(ds["reference"])
    extend, clipped = clipping(ds["prediction"], scale["vmin"], scale["vmax"])
    beyond = (f"\n({100 * clipped:.0f} % of its points beyond the colour range)"
              if clipped > CLIPPED_SHOWN else "")
    panels = [
        ("prediction" + beyond, ds["prediction"], scale, extend, field),
        ("reference", ds["reference"], scale, "neither", field),
        ("|error|", error, {"cmap": "magma"}, "neither", f"|error| of {field}"),
    ]
    if log_error:
        top = max(float(error.max()), np.finfo(float).tiny)
        panels[2] = (*panels[2][:2], {"cmap": "magma", "norm": LogNorm(vmin=top * 1e-6,
                                                                       vmax=top)},
                     *panels[2][3:])
    x, y = np.asarray(ds[first]), np.asarray(ds[second])
    for ax, (title, values, colours, arrows, label) in zip(axes, panels):
        image = np.asarray(values.transpose(second, first))
        if _uniform(x) and _uniform(y):
            extent = [*_edges(x)[[0, -1]], *_edges(y)[[0, -1]]]
            art = ax.imshow(image, origin="lower", aspect="auto", extent=extent,
                            interpolation="nearest", **colours)
        else:
            art = ax.pcolormesh(_edges(x), _edges(y), image, shading="flat", **colours)
        if second != "time":
            ax.set_aspect("equal")
        ax.set(title=title, xlabel=_label(ds[first], first), ylabel=_label(ds[second], second))
        fig.colorbar(art, ax=ax, label=label, extend=arrows)
    shown = None
    if _snapshot(ds):
        shown = f"t = {float(ds.attrs['t']):.4g}"
    elif second == "time":
        shown = f"time from {float(y[0]):.4g} to {float(y[-1]):.4g}"
    _finish_solution(fig, ds, path, scheme, step, shown, pooled)


def _snapshot(ds: xr.Dataset) -> bool:
    """Whether the title names the time by the ``t`` attribute alone (a cut at one time says
    it with its error instead: :func:`_cut`)."""
    return "t" in ds.attrs and not ("time" in ds.coords and ds["time"].ndim == 0)


def _cut(ds: xr.Dataset) -> tuple[list[str], list[str]]:
    """Where a dataset cut from a larger one lies (``["in test sample 0", "at t = 1"]``) and
    what the larger one spans (``["all test samples", "all times"]``), from the scalar
    coordinates ``isel`` leaves (a system's ``field`` aside); empty lists for an uncut one."""
    scalar = [n for n in ds.coords if ds[n].ndim == 0 and n != "field"]
    where, whole = [], []
    if "sample" in scalar:
        where.append(f"in the test sample of seed {ds['sample'].values}")
        whole.append("all test samples")
    space = [n for n in scalar if n not in ("sample", "time")]
    if space:
        plane = ds.attrs.get("plane") or ", ".join(f"{n} = {float(ds[n]):.4g}" for n in space)
        where.append(f"in the plane {plane}")
        whole.append("the whole domain")
    if "time" in scalar:
        where.append(f"at t = {float(ds.attrs.get('t', ds['time'])):.4g}")
        whole.append("all times")
    return where, whole


def _finish_solution(fig, ds: xr.Dataset, path: Path, scheme: str | None, step: int | None,
                     shown: str | None, pooled: str | None) -> None:
    """Title (case, scheme, step, the time shown, the error of what is drawn and, for a cut,
    the error of the whole: :func:`plot_solution`) and file."""
    step_text = None if step is None else f"step {step}"
    where, whole = _cut(ds)
    plane = None if "the whole domain" in whole else ds.attrs.get("plane")
    what = ", ".join(part for part in (scheme, step_text, shown, plane) if part)
    total = ds.attrs.get("rel_l2")
    if where:
        error = (f"relative L2 error {_relative_l2(ds['prediction'], ds['reference']):.2e} "
                 + " ".join(where))
        if total is not None:
            over = " and ".join([", ".join(whole[:-1]), whole[-1]] if len(whole) > 1
                                else whole)
            error += f"; {float(total):.2e} {pooled or 'over ' + over}"
    else:
        if total is None:
            total = _relative_l2(ds["prediction"], ds["reference"])
        error = f"relative L2 error {float(total):.2e}"
    fig.suptitle(f"{ds.attrs['case']}: {what}; {error}" if what
                 else f"{ds.attrs['case']}: {error}")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_solution_curves(ds: xr.Dataset, path: Path, *, scheme: str | None, step: int | None,
                          log_error: bool, units: str, pooled: str | None) -> None:
    """:func:`plot_solution` for a 1D field."""
    (dim,) = ds["prediction"].dims
    x = np.asarray(ds[dim])
    fig, (ax, ax_error) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    field = _field_label(ds, units)
    ax.plot(x, np.asarray(ds["reference"]), "k-", lw=2.5, alpha=0.4, label="reference")
    ax.plot(x, np.asarray(ds["prediction"]), "C0--", label="prediction")
    ax.set(xlabel=_label(ds[dim], dim), ylabel=field)
    ax.legend(fontsize=8)
    ax_error.plot(x, np.abs(np.asarray(ds["error"])), "C3-")
    ax_error.set(xlabel=_label(ds[dim], dim), ylabel=f"|error| of {field}",
                 yscale="log" if log_error else "linear")
    shown = f"t = {float(ds.attrs['t']):.4g}" if _snapshot(ds) else None
    _finish_solution(fig, ds, path, scheme, step, shown, pooled)


def _varying_weights(history: list[dict]) -> dict[str, np.ndarray]:
    """Each loss term's weight against the step, if any weight changes during the run."""
    names = history[0].get("weights", {})
    weights = {k: np.array([r["weights"][k] for r in history]) for k in names}
    return weights if any(np.ptp(w) > 0 for w in weights.values()) else {}


# at most this many redraws of the collocation points are marked on a loss curve
REDRAWS_DRAWN = 40


def plot_losses(history: list[dict], path: Path, title: str = "", adam_steps: int = 0,
                resample_every: int = 0) -> None:
    """Each loss term and the relative L2 error against the step (log scale); a line where
    Adam hands over to L-BFGS, and ticks where the collocation points are redrawn (the loss
    jumps there), up to :data:`REDRAWS_DRAWN` of them; beyond that the legend says how
    often they are redrawn. When the loss weights vary (a balancing strategy such as learning-rate
    annealing), a second panel shows each term's weight against the step."""
    steps = np.array([r["step"] for r in history])
    weights = _varying_weights(history)
    fig, axes = plt.subplots(1 + bool(weights), 1, figsize=(7, 4 + 2.5 * bool(weights)),
                             sharex=True, constrained_layout=True, squeeze=False)
    ax = axes[0, 0]
    for key in sorted(k for k in history[0] if k.startswith("loss_")):
        ax.semilogy(steps, [r[key] for r in history], label=key.removeprefix("loss_"))
    evaluated = [r for r in history if "rel_l2" in r]
    if evaluated:
        ax.semilogy(
            [r["step"] for r in evaluated],
            [r["rel_l2"] for r in evaluated],
            "ko-",
            label="relative L2 error",
        )
    last = int(history[-1]["step"])
    if 0 < adam_steps < last:
        for panel in axes[:, 0]:
            panel.axvline(adam_steps, color="0.4", lw=1, ls="--", label="Adam → L-BFGS")
    # a redraw comes before the update after each resample_every-th: none after the last one
    redraws = np.arange(resample_every, last, resample_every) if resample_every else []
    if 0 < len(redraws) <= REDRAWS_DRAWN:
        ax.plot(redraws, np.full(redraws.shape, 0.02), "|", color="0.4", ms=8,
                transform=ax.get_xaxis_transform(), label="points redrawn")
    elif len(redraws):  # too many ticks to read: the legend says how often
        every = "every step" if resample_every == 1 else f"every {resample_every} steps"
        ax.plot([], [], ls="none", label=f"points redrawn {every}")
    ax.set(xlabel="" if weights else "step", ylabel="loss term (mean square), error",
           title=title)
    ax.legend(fontsize=8)
    if weights:
        below = axes[1, 0]
        for name, values in weights.items():
            below.semilogy(steps, values, label=name)
        below.set(xlabel="step", ylabel="loss weight λ", title="loss weights (balancing)")
        below.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_error_curve(curve: dict, path: Path, title: str, *, scheme: str | None = None) -> None:
    """Relative L2 error against time (log scale); the title names ``scheme`` if given."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.semilogy(curve["t"], curve["rel_l2"], "o-", ms=3)
    ax.set(xlabel="t", ylabel="relative L2 error",
           title=f"{title}: {scheme}" if scheme else title)
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass(frozen=True)
class PlotUnits:
    """How the phase-field figures show lengths, times and the composition: SI runs in
    micrometres and seconds (:data:`SI_UNITS`), non-dimensional ones in the case's own units
    (:data:`MODEL_UNITS`)."""

    length_scale: float
    length: str
    time: str
    field: str


SI_UNITS = PlotUnits(1e6, "um", "s", "c, solute mole fraction [1]")
MODEL_UNITS = PlotUnits(1.0, "model units", "model time", "c [1]")


def _plane(grid, state: np.ndarray, units: PlotUnits) -> tuple[np.ndarray, list[float]]:
    """A 2D field to show (3D: the mid-plane of the last axis) and its extent."""
    if grid.ndim == 3:
        state = state[:, :, grid.shape[2] // 2]
    scale = units.length_scale
    extent = [scale * grid.lower[0], scale * grid.upper[0], scale * grid.lower[1],
              scale * grid.upper[1]]
    return state.T, extent


def _time(t: float, units: PlotUnits) -> str:
    unit = "s" if units.time == "s" else ""
    return (f"t = {t:,.0f} {unit}" if t >= 10 else f"t = {t:.3g} {unit}").rstrip()


def _axis_labels(ax, gradient_axis: int | None, gradient: float, units: PlotUnits) -> None:
    """x/y labels, the one along the temperature gradient saying which side is hot."""
    labels = [f"x [{units.length}]", f"y [{units.length}]"]
    if gradient_axis in (0, 1) and gradient != 0:
        labels[gradient_axis] += " (hot →)" if gradient > 0 else " (← hot)"
    ax.set(xlabel=labels[0], ylabel=labels[1])


def plot_snapshots(grid, times: list[float], states: list[np.ndarray], path: Path,
                   gradient_axis: int | None = None, gradient: float = 0.0,
                   centroids: list[list] | None = None, units: PlotUnits = SI_UNITS) -> None:
    """The composition at four times; with ``centroids`` (per saved time, the particles'
    centres) the starting centres are marked with white + and the current ones with red x,
    so a migration of a few cells shows."""
    picks = np.unique(np.linspace(0, len(times) - 1, 4).round().astype(int))
    low = min(float(np.min(states[i])) for i in picks)
    high = max(float(np.max(states[i])) for i in picks)
    aspect = (grid.upper[1] - grid.lower[1]) / (grid.upper[0] - grid.lower[0])
    fig, axes = plt.subplots(1, len(picks), figsize=(3.6 * len(picks), 3.6 * min(aspect, 1.5)
                                                     + 0.6),
                             constrained_layout=True, squeeze=False)
    for ax, i in zip(axes[0], picks):
        field, extent = _plane(grid, states[i], units)
        image = ax.imshow(field, origin="lower", extent=extent, cmap="viridis", vmin=low,
                          vmax=high)
        if centroids is not None and grid.ndim == 2:
            for marks, style in ((centroids[0], "w+"), (centroids[i], "rx")):
                if marks:
                    ax.plot(*(units.length_scale * np.array(marks)[:, :2]).T, style, ms=7,
                            mew=1.5)
        ax.set_title(_time(times[i], units))
        _axis_labels(ax, gradient_axis, gradient, units)
    fig.colorbar(image, ax=axes[0].tolist(), label=units.field)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def animate_microstructure(grid, times: list[float], states: list[np.ndarray],
                           path: Path, gradient_axis: int | None = None,
                           gradient: float = 0.0, units: PlotUnits = SI_UNITS) -> None:
    """An animated GIF of the composition over the whole run (Pillow writer)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    low, high = float(np.min(states)), float(np.max(states))
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    field, extent = _plane(grid, states[0], units)
    image = ax.imshow(field, origin="lower", extent=extent, cmap="viridis", vmin=low, vmax=high)
    fig.colorbar(image, ax=ax, label=units.field)
    _axis_labels(ax, gradient_axis, gradient, units)
    title = ax.set_title("")

    def frame(i: int):
        image.set_data(_plane(grid, states[i], units)[0])
        title.set_text(_time(times[i], units))
        return image, title

    animation = FuncAnimation(fig, frame, frames=len(times), blit=False)
    atomic_write(path, lambda tmp: animation.save(tmp, writer=PillowWriter(fps=8)))
    plt.close(fig)


def _tracks(records: list[dict]) -> dict[str, list[dict | None]]:
    """Each particle's record per snapshot (None where it is absent), keyed by its legend
    label: by ``id`` when every particle record has one, else by size rank (the lines then
    follow rank k, not a particle, when particles change size order)."""
    if all("id" in p for r in records for p in r["particles"]):
        ids = sorted({p["id"] for r in records for p in r["particles"]})
        by_id = [{p["id"]: p for p in r["particles"]} for r in records]
        return {f"particle {i}": [found.get(i) for found in by_id] for i in ids}
    count = max((len(r["particles"]) for r in records), default=0)
    return {f"size rank {k + 1}": [r["particles"][k] if len(r["particles"]) > k else None
                                   for r in records] for k in range(count)}


def plot_tracked(records: list[dict], axis: int, path: Path,
                 velocity_estimate: float | None = None, units: PlotUnits = SI_UNITS,
                 gradient: float = 1.0) -> None:
    """Each particle's position along the gradient's ``axis`` (isothermal, ``gradient`` 0:
    along ``axis``) and its radius against time, one line per particle ``id`` with a gap
    where the particle is absent (records without ids: one line per size rank); with
    ``velocity_estimate`` (in the run's length per time unit) and a single particle, a line
    of that slope through its position at half time (where the measured velocity's fit
    starts). The time axes span the run's first to last record, whether or not a particle is
    present at them; the phase centre of mass is drawn with a marker at each record."""
    scale = units.length_scale
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    times = np.array([r["t"] for r in records], dtype=float)
    tracks = _tracks(records)
    for k, (label, track) in enumerate(tracks.items()):
        position = [np.nan if p is None else scale * p["centroid"][axis] for p in track]
        radius = [np.nan if p is None else scale * p["radius"] for p in track]
        colour = f"C{k % 10}"
        left.plot(times, position, "o-", ms=2, color=colour, label=label)
        right.plot(times, radius, "o-", ms=2, color=colour)
    if "phase_centre_of_mass" in records[0]:  # recorded along a non-periodic axis only
        left.plot(times, [np.nan if r["phase_centre_of_mass"] is None
                          else scale * r["phase_centre_of_mass"] for r in records], "ko--",
                  ms=2, label="phase centre of mass")
    if velocity_estimate is not None and len(tracks) == 1:
        (track,) = tracks.values()
        middle = len(records) // 2
        if track[middle] is not None:
            x_mid, t_mid = track[middle]["centroid"][axis], times[middle]
            left.plot(times, scale * (x_mid + velocity_estimate * (times - t_mid)), ":",
                      color="tab:red", label="sharp-interface estimate")
    along = "grad T" if gradient != 0 else "xyz"[axis]
    left.set(xlabel=f"t [{units.time}]", ylabel=f"position along {along} [{units.length}]",
             title="centroids (hot side: larger position for grad T > 0)" if gradient != 0
             else "centroids")
    right.set(xlabel=f"t [{units.time}]", ylabel=f"equivalent radius [{units.length}]",
              title="particle sizes")
    if times.size and times[-1] > times[0]:  # the whole run, however few points are finite
        for ax in (left, right):
            ax.set_xlim(times[0], times[-1])
    if len(tracks) <= 8:
        left.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_profile(x: np.ndarray, times: list[float], states: list[np.ndarray],
                 exact: np.ndarray | None, path: Path, units: PlotUnits = SI_UNITS,
                 title: str | None = None) -> None:
    """1D composition profiles over time, with the analytical steady state if given (SI
    lengths in mm); ``title`` above them (default: what is drawn and the time span)."""
    scale, length = (1e3, "mm") if units == SI_UNITS else (units.length_scale, units.length)
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for i in np.unique(np.linspace(0, len(times) - 1, 6).round().astype(int)):
        ax.plot(scale * x, states[i], label=_time(times[i], units))
    if exact is not None:
        ax.plot(scale * x, exact, "k--", label="c ∝ exp(Q*/RT)")
    if title is None:
        title = (f"composition profiles, {_time(times[0], units)} to "
                 f"{_time(times[-1], units).removeprefix('t = ')}")
    ax.set(xlabel=f"x [{length}]", ylabel=units.field, title=title)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _subdivide(points: np.ndarray, cells: np.ndarray, values: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each triangle split into four at its edge midpoints, ``values`` interpolated
    linearly onto the midpoints."""
    edges = np.sort(cells[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    middle = len(points) + inverse.reshape(-1, 3)  # midpoints of edges 01, 12, 20
    a, b, c = cells.T
    ab, bc, ca = middle.T
    fine = np.stack([np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c),
                                                    (ab, bc, ca))]).reshape(-1, 3)
    return (np.concatenate([points, points[unique].mean(axis=1)]), fine,
            np.concatenate([values, values[unique].mean(axis=1)]))


# a mesh figure's title wraps at this many characters per inch of the figure's width
TITLE_CHARACTERS_PER_INCH = 10


def plot_mesh_fields(points: np.ndarray, cells: np.ndarray, fields: dict[str, np.ndarray],
                     path: Path, title: str = "", units: str | dict[str, str] = "1",
                     titles: dict[str, str] | None = None, length: str = "m",
                     diverging: tuple[str, ...] = ("error",)) -> None:
    """One panel per nodal field on a triangle mesh, coloured by its vertex values:
    ``tripcolor`` with Gouraud shading on a planar mesh (points (n, 2), axes in ``length``
    to equal scale); on a surface (points (n, 3)) ``plot_trisurf`` on the triangles split in
    four, each sub-triangle coloured by the mean of the linearly interpolated vertex values
    (matplotlib's 3D axes have no Gouraud shading), the colour bar spanning the vertex
    values. ``cells`` (m, 3); each field (n,). A one-signed field gets a sequential colormap,
    one of both signs (and any field named in ``diverging``, the signed error) a diverging
    one centred on 0 (:func:`colour_scale`). Where both ``u`` and ``exact`` are shown, ``u``
    is drawn on ``exact``'s colour scale, with extend arrows on its colour bar where it leaves
    that range (as :func:`plot_solution` draws a prediction). Panel titles from ``titles``
    (default: the field's name); colour bars labelled with the name and its ``units`` (one
    string for all fields, or per name, ``"1"`` where a name is missing). ``title`` wraps to the
    figure's width."""
    surface = points.shape[1] == 3
    fig = plt.figure(figsize=(4.6 * len(fields), 4.2), constrained_layout=True)
    for i, (name, values) in enumerate(fields.items(), start=1):
        values = np.asarray(values, dtype=float)
        scale = colour_scale(values, diverging=name in diverging)
        extend = "neither"
        if name == "u" and "exact" in fields:
            scale = colour_scale(fields["exact"])
            extend = clipping(values, scale["vmin"], scale["vmax"])[0]
        if surface:
            ax = fig.add_subplot(1, len(fields), i, projection="3d")
            fine_points, fine_cells, fine_values = _subdivide(points, cells, values)
            art = ax.plot_trisurf(*fine_points.T, triangles=fine_cells, linewidth=0,
                                  cmap=scale["cmap"])
            art.set_array(fine_values[fine_cells].mean(axis=1))
            art.set_clim(scale["vmin"], scale["vmax"])
            ax.set_box_aspect(np.ptp(points, axis=0))
            ax.set_axis_off()
        else:
            ax = fig.add_subplot(1, len(fields), i)
            art = ax.tripcolor(*points.T, cells, values, shading="gouraud", **scale)
            ax.set(aspect="equal", xlabel=f"x [{length}]", ylabel=f"y [{length}]")
        ax.set_title((titles or {}).get(name, name))
        unit = units.get(name, "1") if isinstance(units, dict) else units
        fig.colorbar(art, ax=ax, shrink=0.7, extend=extend,
                     label=f"{name} [{unit}]" if unit else name)
    fig.suptitle(textwrap.fill(title, width=int(TITLE_CHARACTERS_PER_INCH * fig.get_figwidth())))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_coefficients(history: list[dict], names: list[str], truth: dict[str, float],
                      path: Path, title: str = "", adam_steps: int = 0) -> None:
    """Each scalar coefficient of ``names`` against the step, one column each, from the
    history's ``coefficient_<name>`` entries. Where ``truth`` gives a coefficient's true value
    (the one its observations were made with), that value is a dashed line and a second row
    shows the relative error $|c / c_{true} - 1|$ against the step (log scale). A dashed grey
    line marks where Adam hands over to L-BFGS."""
    steps = np.array([r["step"] for r in history])
    rows = 1 + any(name in truth for name in names)
    fig, axes = plt.subplots(rows, len(names), figsize=(5.5 * len(names), 2.2 + 2.4 * rows),
                             sharex="col", squeeze=False, constrained_layout=True)
    last = int(steps[-1])
    for k, name in enumerate(names):
        values = np.array([r[f"coefficient_{name}"] for r in history], dtype=float)
        top = axes[0, k]
        top.plot(steps, values, "C0-", label=f"{name}, identified")
        heading = f"{name} = {values[-1]:.5g} at step {last}"
        if name in truth:
            true = truth[name]
            error = abs(values[-1] / true - 1)
            heading += f"\n(true {true:.4g}: relative error {error:.2%})"
            top.axhline(true, color="k", ls="--", lw=1.2,
                        label=f"{name} = {true:.4g}, the observations' value")
            below = axes[1, k]
            below.semilogy(steps, np.abs(values / true - 1), "C3-")
            below.set(xlabel="step", ylabel=f"|{name} / {name}_true - 1|")
            below.grid(True, which="both", alpha=0.3)
        elif rows == 2:  # the hidden row below would carry the shared x tick labels
            axes[1, k].set_visible(False)
            top.tick_params(labelbottom=True)
        top.set(ylabel=name, title=heading, xlabel="step" if rows == 1 or name not in truth
                else "")
        for ax in axes[:, k]:
            if 0 < adam_steps < last and ax.get_visible():
                ax.axvline(adam_steps, color="0.4", lw=1, ls="--",
                           label="Adam → L-BFGS" if ax is top else None)
        top.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_decay(times, deviation, expected_rate: float, tolerance: float, path: Path,
               title: str = "") -> None:
    """The decay of a heat run towards its mean: left, $\\|u - \\bar u\\|_M$ against t (log
    scale) with the line of slope $-$``expected_rate`` through the last point; right, the
    relative error of the rate measured between consecutive saves, $|r / r_{expected} - 1|$
    with $r = \\log(d_{k-1}/d_k) / (t_k - t_{k-1})$, against the interval's end, with the
    ``tolerance`` as a line (the last interval is the one the run reports)."""
    t, d = np.asarray(times, dtype=float), np.asarray(deviation, dtype=float)
    rate = np.log(d[:-1] / d[1:]) / np.diff(t)
    error = np.abs(rate / expected_rate - 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    left.semilogy(t, d, "o", ms=4, color="C0", label="run")
    left.semilogy(t, d[-1] * np.exp(-expected_rate * (t - t[-1])), "k--", lw=1,
                  label=f"slope -{expected_rate:.4f} /s (expected)")
    left.set(xlabel="t [s]", ylabel="‖u - mean(u)‖_M (mass-matrix norm)",
             title="deviation from the mean")
    left.legend(fontsize=8)
    right.semilogy(t[1:], error, "o-", ms=4, color="C3", label="rate between saves")
    right.semilogy(t[-1:], error[-1:], "o", ms=9, mfc="none", color="k",
                   label=f"reported: {error[-1]:.1e}")
    right.axhline(tolerance, color="0.3", ls="--", lw=1, label=f"tolerance {tolerance:.0e}")
    right.set(xlabel="t [s] (end of the interval)", ylabel="|rate / expected - 1|",
              title="relative error of the decay rate")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fraction(order: float) -> str:
    """An order as text: ``4/3`` for 1.3333 (a denominator up to 6), else two decimals."""
    from fractions import Fraction

    nearest = Fraction(order).limit_denominator(6)
    return str(nearest) if abs(float(nearest) - order) < 1e-9 else f"{order:.2f}"


def plot_convergence(levels: list[dict], observed: dict[str, float | None],
                     expected: dict[str, float] | None, path: Path, title: str = "") -> None:
    """Relative errors against the edge length h on log-log axes, one series per norm of
    ``levels`` (each a dict with ``h`` and the errors ``rel_l2``, ``rel_h1`` of the solution
    against the exact solution's nodal interpolant), labelled with
    its ``observed`` order (keys ``l2``, ``h1``); where ``expected`` gives a norm's order, a
    dashed line of that slope through the error on the finest mesh."""
    series = {"l2": ("rel_l2", "L2 norm (mass matrix)"),
              "h1": ("rel_h1", "H1 seminorm (stiffness matrix)")}
    levels = sorted(levels, key=lambda level: level["h"])  # the case's mesh may come first
    h = np.array([level["h"] for level in levels])
    finest = 0
    fig, ax = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    for k, (norm, (key, label)) in enumerate(series.items()):
        errors = np.array([level[key] for level in levels])
        order = observed.get(norm)
        text = f"{label}: observed order {order:.2f}" if order is not None else label
        ax.loglog(h, errors, "o-", color=f"C{k}", label=text)
        if expected and norm in expected:
            span = np.array([h.min(), h.max()])
            ax.loglog(span, errors[finest] * (span / h[finest]) ** expected[norm], "--",
                      color=f"C{k}", lw=1,
                      label=f"slope {fraction(expected[norm])} (expected)")
    ax.set(xlabel="h, mean edge length [m]",
           ylabel="relative error of u_h - I_h u (I_h: nodal interpolant)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# a positive free energy falling by more than this factor is drawn on a log axis
LOG_ENERGY_SPAN = 2.0


def plot_free_energy(times, energy, path: Path, units: PlotUnits, energy_unit: str,
                     title: str = "") -> None:
    """The total free energy against time, as PFHub compares its benchmarks: a log time axis
    (the points after t = 0, with F(0) as a dotted line) and a log energy axis when every
    value is positive and they span more than :data:`LOG_ENERGY_SPAN`, else a linear one."""
    t, F = np.asarray(times, dtype=float), np.asarray(energy, dtype=float)
    later = t > 0
    fig, ax = plt.subplots(figsize=(6.5, 4.4), constrained_layout=True)
    ax.semilogx(t[later], F[later], "o-", ms=3, label="run")
    if np.all(F > 0) and F.max() > LOG_ENERGY_SPAN * F.min():
        ax.set_yscale("log")
    if not later.all():
        ax.axhline(F[~later][0], color="0.4", ls=":", lw=1.2, label=f"F(0) = {F[0]:.4g}")
    unit = "" if units.time == "model time" else f" [{units.time}]"
    ax.set(xlabel=f"t{unit}" if unit else "t (model time)",
           ylabel=f"free energy F [{energy_unit}]", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
