"""PNG figures of a run: the solution panels and the loss curves (matplotlib, no display)."""

from __future__ import annotations

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


def plot_solution(ds: xr.Dataset, path: Path, *, scheme: str | None = None,
                  step: int | None = None, log_error: bool = False,
                  units: str = "dimensionless") -> None:
    """Prediction, reference and |error| side by side on the evaluation grid.

    Colour bars are labelled with the field's name (``u``, or the field of a system's panel)
    and the reference's units (else ``units``); axes by the coordinates' CF ``long_name`` and
    ``units``. The title names
    the ``scheme`` (method) and training ``step`` when given, and the time shown: the
    dataset's ``t`` attribute for a snapshot, else the range of the second axis of a
    space-time field. ``log_error`` puts the error panel on a log colour scale (six decades
    below its maximum). A 1D field (a steady problem on an interval) is drawn as curves:
    prediction over reference, and |error|."""
    if ds["prediction"].ndim == 1:
        _plot_solution_curves(ds, path, scheme=scheme, step=step, log_error=log_error,
                              units=units)
        return
    dims = ds["prediction"].dims  # canonical order: (time, x) or (x, y)
    second = "time" if "time" in dims else dims[-1]  # the vertical axis
    first = next(d for d in dims if d != second)
    extent = [
        float(ds[first][0]),
        float(ds[first][-1]),
        float(ds[second][0]),
        float(ds[second][-1]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    field = _field_label(ds, units)
    error = np.abs(ds["error"])
    panels = [
        ("prediction", ds["prediction"], "RdBu_r", field),
        ("reference", ds["reference"], "RdBu_r", field),
        ("|error|", error, "magma", f"|error| of {field}"),
    ]
    limit = float(np.abs(ds["reference"]).max())
    for ax, (title, values, cmap, label) in zip(axes, panels):
        if title != "|error|":
            scale = {"vmin": -limit, "vmax": limit}
        elif log_error:
            top = max(float(error.max()), np.finfo(float).tiny)
            scale = {"norm": LogNorm(vmin=top * 1e-6, vmax=top)}
        else:
            scale = {}
        image = ax.imshow(np.asarray(values.transpose(second, first)), origin="lower",
                          aspect="auto", extent=extent, cmap=cmap, **scale)
        ax.set(title=title, xlabel=_label(ds[first], first), ylabel=_label(ds[second], second))
        fig.colorbar(image, ax=ax, label=label)
    shown = (f"t = {float(ds.attrs['t']):.4g}" if "t" in ds.attrs else
             f"{second} from {extent[2]:.4g} to {extent[3]:.4g}")
    _finish_solution(fig, ds, path, scheme, step, shown)


def _finish_solution(fig, ds: xr.Dataset, path: Path, scheme: str | None, step: int | None,
                     shown: str | None) -> None:
    """Title (case, scheme, step, the time or plane shown, error) and file."""
    step_text = None if step is None else f"step {step}"
    what = ", ".join(part for part in (scheme, step_text, shown, ds.attrs.get("plane"))
                     if part)
    fig.suptitle(f"{ds.attrs['case']}: {what}; relative L2 error {ds.attrs['rel_l2']:.2e}")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_solution_curves(ds: xr.Dataset, path: Path, *, scheme: str | None, step: int | None,
                          log_error: bool, units: str) -> None:
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
    shown = f"t = {float(ds.attrs['t']):.4g}" if "t" in ds.attrs else None
    _finish_solution(fig, ds, path, scheme, step, shown)


def _varying_weights(history: list[dict]) -> dict[str, np.ndarray]:
    """Each loss term's weight against the step, if any weight changes during the run."""
    names = history[0].get("weights", {})
    weights = {k: np.array([r["weights"][k] for r in history]) for k in names}
    return weights if any(np.ptp(w) > 0 for w in weights.values()) else {}


def plot_losses(history: list[dict], path: Path, title: str = "", adam_steps: int = 0,
                resample_every: int = 0) -> None:
    """Each loss term and the relative L2 error against the step (log scale); a line where
    Adam hands over to L-BFGS, and ticks where the collocation points are redrawn (the loss
    jumps there). When the loss weights vary (a balancing strategy such as learning-rate
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
    if 0 < adam_steps <= last:
        for panel in axes[:, 0]:
            panel.axvline(adam_steps, color="0.4", lw=1, ls="--", label="Adam → L-BFGS")
    if resample_every:
        redraws = np.arange(resample_every, last + 1, resample_every)
        ax.plot(redraws, np.full(redraws.shape, 0.02), "|", color="0.4", ms=8,
                transform=ax.get_xaxis_transform(), label="points redrawn")
    ax.set(xlabel="step", ylabel="loss term (mean square), error", title=title)
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


def plot_tracked(records: list[dict], axis: int, path: Path,
                 velocity_estimate: float | None = None, units: PlotUnits = SI_UNITS,
                 gradient: float = 1.0) -> None:
    """Each particle's position along the gradient's ``axis`` (isothermal, ``gradient`` 0:
    along ``axis``) and its radius against time; with ``velocity_estimate`` (in the run's
    length per time unit) a line of that slope through the particle's position at half time
    (where the measured velocity's fit starts)."""
    scale = units.length_scale
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    times = [r["t"] for r in records]
    count = len(records[0]["particles"])
    for k in range(count):  # particles are ordered by size; follow rank k while it exists
        t = [r["t"] for r in records if len(r["particles"]) > k]
        left.plot(t, [scale * r["particles"][k]["centroid"][axis] for r in records
                      if len(r["particles"]) > k], "o-", ms=2, label=f"particle {k + 1}")
        right.plot(t, [scale * r["particles"][k]["radius"] for r in records
                       if len(r["particles"]) > k], "o-", ms=2)
    if "phase_centre_of_mass" in records[0]:  # recorded along a non-periodic axis only
        left.plot(times, [scale * r["phase_centre_of_mass"] for r in records], "k--",
                  label="phase centre of mass")
    if velocity_estimate is not None and count == 1:
        middle = records[len(records) // 2]
        x_mid, t_mid = middle["particles"][0]["centroid"][axis], middle["t"]
        left.plot(times, [scale * (x_mid + velocity_estimate * (t - t_mid)) for t in times],
                  ":", color="tab:red", label="sharp-interface estimate")
    along = "grad T" if gradient != 0 else "xyz"[axis]
    left.set(xlabel=f"t [{units.time}]", ylabel=f"position along {along} [{units.length}]",
             title="centroids (hot side: larger position for grad T > 0)" if gradient != 0
             else "centroids")
    right.set(xlabel=f"t [{units.time}]", ylabel=f"equivalent radius [{units.length}]",
              title="particle sizes")
    if count <= 8:
        left.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_profile(x: np.ndarray, times: list[float], states: list[np.ndarray],
                 exact: np.ndarray | None, path: Path, units: PlotUnits = SI_UNITS) -> None:
    """1D composition profiles over time, with the analytical steady state if given (SI
    lengths in mm)."""
    scale, length = (1e3, "mm") if units == SI_UNITS else (units.length_scale, units.length)
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for i in np.unique(np.linspace(0, len(times) - 1, 6).round().astype(int)):
        ax.plot(scale * x, states[i], label=_time(times[i], units))
    if exact is not None:
        ax.plot(scale * x, exact, "k--", label="c ∝ exp(Q*/RT)")
    ax.set(xlabel=f"x [{length}]", ylabel=units.field)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mesh_fields(points: np.ndarray, cells: np.ndarray, fields: dict[str, np.ndarray],
                     path: Path, title: str = "", units: str = "1") -> None:
    """One panel per nodal field on a triangle mesh: ``tripcolor`` (Gouraud shading) for a
    planar mesh (points (n, 2)), ``plot_trisurf`` coloured by the cell mean for a surface
    (points (n, 3)). ``cells`` (m, 3); each field (n,), its colour bar labelled with its name
    and ``units``."""
    surface = points.shape[1] == 3
    fig = plt.figure(figsize=(4.6 * len(fields), 4.2), constrained_layout=True)
    for i, (name, values) in enumerate(fields.items(), start=1):
        if surface:
            ax = fig.add_subplot(1, len(fields), i, projection="3d")
            art = ax.plot_trisurf(*points.T, triangles=cells, linewidth=0, cmap="viridis")
            art.set_array(values[cells].mean(axis=1))
            art.autoscale()
            ax.set_box_aspect(np.ptp(points, axis=0))
            ax.set_axis_off()
        else:
            ax = fig.add_subplot(1, len(fields), i)
            art = ax.tripcolor(*points.T, cells, values, shading="gouraud", cmap="viridis")
            ax.set(aspect="equal", xlabel="x", ylabel="y")
        ax.set_title(name)
        fig.colorbar(art, ax=ax, shrink=0.7, label=f"{name} [{units}]" if units else name)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
