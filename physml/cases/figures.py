"""PNG figures of a run: the solution panels and the loss curves (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402


def plot_solution(ds: xr.Dataset, path: Path) -> None:
    """Prediction, reference and |error| side by side on the evaluation grid."""
    second, first = ds["prediction"].dims
    extent = [
        float(ds[first][0]),
        float(ds[first][-1]),
        float(ds[second][0]),
        float(ds[second][-1]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    panels = [
        ("prediction", ds["prediction"], "RdBu_r"),
        ("reference", ds["reference"], "RdBu_r"),
        ("|error|", np.abs(ds["error"]), "magma"),
    ]
    limit = float(np.abs(ds["reference"]).max())
    for ax, (title, values, cmap) in zip(axes, panels):
        scale = {} if title == "|error|" else {"vmin": -limit, "vmax": limit}
        image = ax.imshow(values, origin="lower", aspect="auto", extent=extent, cmap=cmap, **scale)
        ax.set(title=title, xlabel=first, ylabel=second)
        fig.colorbar(image, ax=ax)
    fig.suptitle(f"{ds.attrs['case']}: relative L2 error {ds.attrs['rel_l2']:.2e}")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_losses(history: list[dict], path: Path) -> None:
    """Each loss term and the relative L2 error against the step (log scale)."""
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    steps = np.array([r["step"] for r in history])
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
    ax.set(xlabel="step", ylabel="value")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_error_curve(curve: dict, path: Path, title: str) -> None:
    """Relative L2 error against time (log scale)."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.semilogy(curve["t"], curve["rel_l2"], "o-", ms=3)
    ax.set(xlabel="t", ylabel="relative L2 error", title=title)
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
