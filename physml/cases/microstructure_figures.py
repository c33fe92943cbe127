"""PNG and GIF figures of a phase-field (microstructure) run: composition snapshots and
their animation, the particles' tracked positions and sizes, 1D composition profiles and the
total free energy against time, in SI or the case's model units (:class:`PlotUnits`)
(matplotlib, no display)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

from .run_folder import atomic_write, save_figure  # noqa: E402


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
    """``t = 12.5 s``: six significant digits, so that saves 1e-5 of their time apart still
    read apart, thousands separated, whole numbers from 1,000,000 on (model time: no unit)."""
    unit = "s" if units.time == "s" else ""
    text = f"{t:,.6g}"
    if "e+" in text:
        text = f"{t:,.0f}"
    return f"t = {text} {unit}".rstrip()


def _grid_text(grid, units: PlotUnits) -> str:
    """``64 × 64 cells over 200 × 200 um``, with the plane shown of a 3D grid."""
    scale = units.length_scale
    text = (f"{' × '.join(map(str, grid.shape))} cells over "
            f"{' × '.join(f'{scale * (u - l):.4g}' for l, u in zip(grid.lower, grid.upper))} "
            f"{units.length}")
    if grid.ndim == 3:
        text += (f", mid-plane z = {scale * grid.coords(2)[grid.shape[2] // 2]:.4g} "
                 f"{units.length}")
    return text


def _axis_labels(ax, gradient_axis: int | None, gradient: float, units: PlotUnits) -> None:
    """x/y labels, the one along the temperature gradient saying which side is hot."""
    labels = [f"x [{units.length}]", f"y [{units.length}]"]
    if gradient_axis in (0, 1) and gradient != 0:
        labels[gradient_axis] += " (hot →)" if gradient > 0 else " (← hot)"
    ax.set(xlabel=labels[0], ylabel=labels[1])


def plot_snapshots(grid, times: list[float], states: list[np.ndarray], path: Path,
                   gradient_axis: int | None = None, gradient: float = 0.0,
                   centroids: list[list] | None = None, units: PlotUnits = SI_UNITS,
                   case: str = "") -> None:
    """The composition at four times; with ``centroids`` (per saved time, the particles'
    centres) the starting centres are marked with white + and the current ones with red x,
    so a migration of a few cells shows. The title names the ``case`` (when given) and the
    grid (:func:`_grid_text`)."""
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
    fig.suptitle(f"{case + ': ' if case else ''}composition, {_grid_text(grid, units)}")
    save_figure(fig, path, dpi=110)


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
    try:
        atomic_write(path, lambda tmp: animation.save(tmp, writer=PillowWriter(fps=8)))
    finally:
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


def _track_colours(count: int) -> list:
    """A colour per particle, none repeated: matplotlib's ten up to ten, tab20's up to twenty,
    then evenly spaced along viridis."""
    if count <= 10:
        return [f"C{k}" for k in range(count)]
    if count <= 20:
        return [plt.get_cmap("tab20")(k) for k in range(count)]
    return [plt.get_cmap("viridis")(k / (count - 1)) for k in range(count)]


def plot_tracked(records: list[dict], axis: int, path: Path,
                 velocity_estimate: float | None = None, units: PlotUnits = SI_UNITS,
                 gradient: float = 1.0) -> None:
    """Each particle's position along the gradient's ``axis`` (isothermal, ``gradient`` 0:
    along ``axis``) and its radius against time, one line per particle ``id`` with a gap
    where the particle is absent (records without ids: one line per size rank); with
    ``velocity_estimate`` (in the run's length per time unit) and a single particle, a line
    of that slope through its position at half time (where the measured velocity's fit
    starts). The time axes span the run's first to last record, whether or not a particle is
    present at them; the phase centre of mass is drawn with a marker at each record. The
    legend stands right of the positions' panel, where it covers no line."""
    scale = units.length_scale
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    times = np.array([r["t"] for r in records], dtype=float)
    tracks = _tracks(records)
    colours = _track_colours(len(tracks))
    for colour, (label, track) in zip(colours, tracks.items()):
        position = [np.nan if p is None else scale * p["centroid"][axis] for p in track]
        radius = [np.nan if p is None else scale * p["radius"] for p in track]
        left.plot(times, position, "o-", ms=2, color=colour, label=label)
        right.plot(times, radius, "o-", ms=2, color=colour)
    summaries = []  # the lines beside the particles', always in the legend
    if "phase_centre_of_mass" in records[0]:  # recorded along a non-periodic axis only
        summaries += left.plot(times, [np.nan if r["phase_centre_of_mass"] is None
                                       else scale * r["phase_centre_of_mass"] for r in records],
                               "ko--", ms=2, label="phase centre of mass")
    if velocity_estimate is not None and len(tracks) == 1:
        (track,) = tracks.values()
        middle = len(records) // 2
        if track[middle] is not None:
            x_mid, t_mid = track[middle]["centroid"][axis], times[middle]
            summaries += left.plot(times, scale * (x_mid + velocity_estimate * (times - t_mid)),
                                   ":", color="tab:red", label="sharp-interface estimate")
    along = "grad T" if gradient != 0 else "xyz"[axis]
    left.set(xlabel=f"t [{units.time}]", ylabel=f"position along {along} [{units.length}]",
             title="centroids (hot side: larger position for grad T > 0)" if gradient != 0
             else "centroids")
    right.set(xlabel=f"t [{units.time}]", ylabel=f"equivalent radius [{units.length}]",
              title="particle sizes")
    if times.size and times[-1] > times[0]:  # the whole run, however few points are finite
        for ax in (left, right):
            ax.set_xlim(times[0], times[-1])
    beside = {"fontsize": 7, "loc": "upper left", "bbox_to_anchor": (1.01, 1),
              "borderaxespad": 0}  # inside, it would cover lines
    if len(tracks) <= 8:
        left.legend(**beside)
    elif summaries:  # too many particles to name: the other lines still are
        left.legend(handles=summaries, title=f"{len(tracks)} particles: a colour each",
                    title_fontsize=7, **beside)
    save_figure(fig, path, dpi=110)


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
    save_figure(fig, path, dpi=110)

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
        ax.set_yscale("log")  # minor ticks labelled below two decades, where a decade's one
        ax.yaxis.set_minor_formatter(  # label may be the only one in range
            LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if not later.all():
        ax.axhline(F[~later][0], color="0.4", ls=":", lw=1.2, label=f"F(0) = {F[0]:.4g}")
    unit = "" if units.time == "model time" else f" [{units.time}]"
    ax.set(xlabel=f"t{unit}" if unit else "t (model time)",
           ylabel=f"free energy F [{energy_unit}]", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)
