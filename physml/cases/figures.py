"""PNG figures of a training run: the solution panels (prediction, reference and error on
the evaluation grid, a row per field of a system) and the training curves (loss terms, loss
weights, the error against time) (matplotlib, no display)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402

from .figure_colours import clipping, colour_scale  # noqa: E402
from .run_folder import save_figure  # noqa: E402


def _label(da: xr.DataArray, name: str) -> str:
    """``long_name [units]`` from the variable's CF attributes (``name`` where ``long_name``
    is absent; no brackets when it has no ``units``)."""
    units = da.attrs.get("units")
    name = da.attrs.get("long_name", name)
    return f"{name} [{units}]" if units else name


def _field_label(ds: xr.Dataset, units: str) -> str:
    """The plotted field's name (``u``, or the ``field`` a system's row shows) and units (the
    reference's, else the prediction's), for the prediction's and the reference's colour bars
    alike."""
    field = ds["field"] if "field" in ds.coords and ds["field"].ndim == 0 else None
    name = "u" if field is None else str(field.values)
    return f"{name} [{ds.get('reference', ds['prediction']).attrs.get('units', units)}]"


def _rows(ds: xr.Dataset) -> list[xr.Dataset]:
    """One dataset per figure row: each field of a system (its ``field`` dimension) in turn,
    else the dataset itself."""
    if "field" not in ds["prediction"].dims:
        return [ds]
    return [ds.isel(field=i) for i in range(ds.sizes["field"])]


def _relative_l2(prediction, reference, vanishing: float = 0.0) -> float:
    """$\\|p - r\\| / \\|r\\|$ over the points where the reference is finite (a NaN reference
    marks a point outside the domain), relative to ``vanishing`` where $\\|r\\|$ is 0; NaN
    when that is 0 too or the prediction is not finite at one of those points."""
    p, r = np.asarray(prediction, dtype=float), np.asarray(reference, dtype=float)
    inside = np.isfinite(r)
    if not np.isfinite(p[inside]).all():
        return float("nan")
    norm = float(np.sqrt(np.sum(r[inside] ** 2))) or vanishing
    return float(np.sqrt(np.sum((p - r)[inside] ** 2))) / norm if norm > 0 else float("nan")


def _row_titles(ds: xr.Dataset) -> list[str | None]:
    """The title of each row of a system's figure with a reference: its field's own relative
    L2 error over what is drawn (relative to all fields' norm where the field's reference is
    0, as ``metrics.json``'s ``rel_l2_fields``); None for each row otherwise."""
    rows = _rows(ds)
    if len(rows) == 1 or "reference" not in ds:
        return [None] * len(rows)
    reference = np.asarray(ds["reference"], dtype=float)
    pooled = float(np.sqrt(np.sum(reference[np.isfinite(reference)] ** 2)))
    return [f"{row['field'].values}: relative L2 error "
            f"{_relative_l2(row['prediction'], row['reference'], pooled):.2e}" for row in rows]


def _title_row(ax, title: str | None) -> None:
    """``title`` at the left above ``ax``'s own (centred) title, a line above each of its
    lines."""
    if title is not None:
        ax.set_title(title + "\n" * (ax.get_title().count("\n") + bool(ax.get_title())),
                     loc="left", fontweight="bold")


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

# a prediction beyond the colour range at more than this fraction of its points says so
CLIPPED_SHOWN = 0.01


OUTSIDE = "0.8"
"""The colour of the points outside the domain (NaN) in a field panel: a light grey, which no
colour map here gives (white is RdBu_r's zero)."""

NOT_FINITE = "magenta"
"""The colour of the points inside the domain where a panel's value is NaN or infinite (a
diverged prediction, its error): a pure magenta, which no colour map here gives."""


def _outside(ds: xr.Dataset) -> np.ndarray | None:
    """Where the grid points lie outside the domain (the ``inside`` mask's complement, else the
    reference's NaN), in the dims of ``ds``'s prediction less ``field``; None when nothing
    says (no mask, no reference: every NaN is then drawn as outside)."""
    def one_field(da: xr.DataArray) -> xr.DataArray:  # the domain is every field's alike
        return da.isel(field=0) if "field" in da.dims else da

    shape = one_field(ds["prediction"])
    if "inside" in ds:
        inside = ds["inside"].broadcast_like(shape).transpose(*shape.dims)
        return ~np.asarray(inside, dtype=bool)
    if "reference" in ds:
        return np.isnan(np.asarray(one_field(ds["reference"]).transpose(*shape.dims),
                                   dtype=float))
    return None


def _draw(ax, x: np.ndarray, y: np.ndarray, image: np.ndarray, colours: dict):
    """``image`` (y, x) on the nodes ``x``, ``y``, each value filling its cell."""
    if _uniform(x) and _uniform(y):
        extent = [*_edges(x)[[0, -1]], *_edges(y)[[0, -1]]]
        return ax.imshow(image, origin="lower", aspect="auto", extent=extent,
                         interpolation="nearest", **colours)
    return ax.pcolormesh(_edges(x), _edges(y), image, shading="flat", **colours)


def plot_solution(ds: xr.Dataset, path: Path, *, scheme: str | None = None,
                  step: int | None = None, log_error: bool = False,
                  units: str = "dimensionless", pooled: str | None = None) -> None:
    """Prediction, reference and |error| side by side on the evaluation grid; the prediction
    alone without a ``reference``; a row of these panels per field of a system (the ``field``
    dimension), each on its own colour scale.

    The prediction and the reference share the reference's colour range (the prediction's own
    without a reference): a sequential colormap over it for a one-signed field, a diverging one
    centred on 0 for a field of both signs (:func:`~.figure_colours.colour_scale`). Where the
    prediction leaves that range its colour bar has extend arrows, and its panel title says
    which fraction of its points are beyond it when more than 1 % are. Each value fills its
    grid cell (edges halfway between the nodes); two space axes are drawn to equal scale.

    Colour bars are labelled with the field's name (``u``, or the field of a system's row)
    and the reference's units (else the prediction's, else ``units``); axes by the
    coordinates' CF ``long_name`` and ``units``. The title names the ``scheme`` (method) and
    training ``step`` when given, the time shown (the dataset's ``t`` attribute for a
    snapshot, else the range of the time axis of a space-time field) and the relative L2
    error of what is drawn. A dataset cut from a larger one (scalar coordinates left by
    ``isel``: ``time``, ``sample``, a space axis with a ``plane`` attribute) gets the error of
    the cut, computed from its ``prediction`` and ``reference``, and the dataset's ``rel_l2``
    attribute stated as the error over the whole (``pooled`` words it instead, e.g. ``"as the
    mean over the 4 test samples"``); otherwise the title gives ``rel_l2`` (computed when
    absent). Without a reference the title gives no error (a cut says where it lies instead).
    With a reference, each row of a system is titled with its field's own relative L2 error
    (:func:`_row_titles`). Points outside the domain are grey (:data:`OUTSIDE`); points inside
    it where a panel's value is not finite are :data:`NOT_FINITE`. ``log_error`` puts the error
    panel on a log colour scale (six decades below its maximum). A 1D field (a steady problem
    on an interval) is drawn as curves: prediction over reference, and |error|."""
    rows = _rows(ds)
    if rows[0]["prediction"].ndim == 1:
        _plot_solution_curves(ds, path, scheme=scheme, step=step, log_error=log_error,
                              units=units, pooled=pooled)
        return
    dims = rows[0]["prediction"].dims  # canonical order: (time, x) or (x, y)
    second = "time" if "time" in dims else dims[-1]  # the vertical axis
    first = next(d for d in dims if d != second)
    columns = 3 if "reference" in ds else 1
    fig, axes = plt.subplots(len(rows), columns, figsize=(4.4 * columns - 0.2, 3.6 * len(rows)),
                             constrained_layout=True, squeeze=False)
    x, y = np.asarray(ds[first]), np.asarray(ds[second])
    outside = _outside(ds.transpose(second, first, ...))
    for row, row_axes, row_title in zip(rows, axes, _row_titles(ds)):
        for ax, (title, values, colours, arrows, label) in zip(
                row_axes, _panels(row, units, log_error)):
            image = np.asarray(values.transpose(second, first))
            art = _draw(ax, x, y, image, colours)
            if np.isnan(image).any():  # outside the domain: grey, not the colour of u = 0
                ax.set_facecolor(OUTSIDE)
            if outside is not None and (~np.isfinite(image) & ~outside).any():
                _draw(ax, x, y, np.where(np.isfinite(image) | outside, np.nan, 1.0),
                      {"cmap": ListedColormap([NOT_FINITE])})
            if second != "time":
                ax.set_aspect("equal")
            ax.set(title=title, xlabel=_label(ds[first], first),
                   ylabel=_label(ds[second], second))
            fig.colorbar(art, ax=ax, label=label, extend=arrows)
        _title_row(row_axes[0], row_title)
    shown = None
    if _snapshot(ds):
        shown = f"t = {float(ds.attrs['t']):.4g}"
    elif second == "time":
        shown = f"time from {float(y[0]):.4g} to {float(y[-1]):.4g}"
    _finish_solution(fig, ds, path, scheme, step, shown, pooled)


def _panels(ds: xr.Dataset, units: str, log_error: bool) -> list[tuple]:
    """One field's panels of :func:`plot_solution`, each as (title, values, colours, colour
    bar's extend, colour bar's label): prediction, reference and |error|, or the prediction
    alone on its own colour scale when there is no reference."""
    field = _field_label(ds, units)
    if "reference" not in ds:
        return [("prediction", ds["prediction"], colour_scale(ds["prediction"]), "neither",
                 field)]
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
    return panels


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
    the error of the whole, or where a cut lies when there is no reference:
    :func:`plot_solution`) and file."""
    step_text = None if step is None else f"step {step}"
    where, whole = _cut(ds)
    plane = None if "the whole domain" in whole else ds.attrs.get("plane")
    what = ", ".join(part for part in (scheme, step_text, shown, plane) if part)
    total = ds.attrs.get("rel_l2")
    if "reference" not in ds:
        error = " ".join(where)
    elif where:
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
    said = "; ".join(part for part in (what, error) if part)
    title = f"{ds.attrs['case']}: {said}" if said else ds.attrs["case"]
    # wrapped to the figure's width (about 13 characters an inch): a one-panel figure is
    # narrower than its title
    fig.suptitle(textwrap.fill(title, width=max(40, int(13 * fig.get_figwidth())),
                               break_on_hyphens=False))
    save_figure(fig, path, dpi=120)


def _plot_solution_curves(ds: xr.Dataset, path: Path, *, scheme: str | None, step: int | None,
                          log_error: bool, units: str, pooled: str | None) -> None:
    """:func:`plot_solution` for a 1D field: a row per field, the prediction over the reference
    and the |error| (the prediction alone without a reference)."""
    rows = _rows(ds)
    (dim,) = rows[0]["prediction"].dims
    x = np.asarray(ds[dim])
    columns = 2 if "reference" in ds else 1
    fig, axes = plt.subplots(len(rows), columns, figsize=(5 * columns, 3.6 * len(rows)),
                             constrained_layout=True, squeeze=False)
    for row, (ax, *ax_error), row_title in zip(rows, axes, _row_titles(ds)):
        field = _field_label(row, units)
        if ax_error:
            ax.plot(x, np.asarray(row["reference"]), "k-", lw=2.5, alpha=0.4,
                    label="reference")
        ax.plot(x, np.asarray(row["prediction"]), "C0--" if ax_error else "C0-",
                label="prediction")
        ax.set(xlabel=_label(ds[dim], dim), ylabel=field)
        ax.legend(fontsize=8)
        if ax_error:
            ax_error[0].plot(x, np.abs(np.asarray(row["error"])), "C3-")
            ax_error[0].set(xlabel=_label(ds[dim], dim), ylabel=f"|error| of {field}",
                            yscale="log" if log_error else "linear")
        _title_row(ax, row_title)
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
                resample_every: int = 0,
                ylabel: str = "loss term (mean square), error") -> None:
    """Each loss term (the records' ``loss_<term>`` keys, labelled ``<term>``) and the relative
    L2 error against the step (log scale), the axis labelled ``ylabel``; a line where
    Adam hands over to L-BFGS, and ticks where the collocation points are redrawn (the loss
    jumps there), up to :data:`REDRAWS_DRAWN` of them; beyond that the legend says how
    often they are redrawn. When the loss weights vary (a balancing strategy such as learning-rate
    annealing), a second panel shows each term's weight against the step, in the term's colour
    in both panels. A term that is 0 throughout draws no line on the log axis: its legend entry
    says ``(all 0)``. Each legend stands right of its panel, where it covers no curve."""
    steps = np.array([r["step"] for r in history])
    weights = _varying_weights(history)
    fig, axes = plt.subplots(1 + bool(weights), 1, figsize=(8.5, 4 + 2.5 * bool(weights)),
                             sharex=True, constrained_layout=True, squeeze=False)
    ax = axes[0, 0]
    terms = sorted(k.removeprefix("loss_") for k in history[0] if k.startswith("loss_"))
    colours = {name: f"C{k}" for k, name in
               enumerate(terms + [name for name in weights if name not in terms])}
    for name in terms:
        values = np.array([r[f"loss_{name}"] for r in history], dtype=float)
        ax.semilogy(steps, values, color=colours[name],
                    label=name if values.any() else f"{name} (all 0)")
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
    ax.set(xlabel="" if weights else "step", ylabel=ylabel, title=title)
    if weights:
        below = axes[1, 0]
        for name in (name for name in colours if name in weights):  # in the legend's order
            below.semilogy(steps, weights[name], color=colours[name], label=name)
        below.set(xlabel="step", ylabel="loss weight λ", title="loss weights (balancing)")
    for panel in axes[:, 0]:  # beside the axes: inside, it would cover curves
        panel.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    save_figure(fig, path, dpi=120)


def plot_error_curve(curve: dict, path: Path, title: str, *, scheme: str | None = None) -> None:
    """Relative L2 error against time (log scale); the title names ``scheme`` if given."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.semilogy(curve["t"], curve["rel_l2"], "o-", ms=3)
    ax.set(xlabel="t", ylabel="relative L2 error",
           title=f"{title}: {scheme}" if scheme else title)
    ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path, dpi=120)
