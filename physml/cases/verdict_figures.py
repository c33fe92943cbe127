"""PNG figures of the checks against known values: identified coefficients against their
true values, a decay rate against the expected one, and convergence orders against the
expected slopes (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .run_folder import save_figure  # noqa: E402


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
    save_figure(fig, path, dpi=120)


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
    save_figure(fig, path, dpi=120)


def fraction(order: float) -> str:
    """An order as text: ``4/3`` for 1.3333 (a denominator up to 6), else two decimals."""
    from fractions import Fraction

    nearest = Fraction(order).limit_denominator(6)
    return str(nearest) if abs(float(nearest) - order) < 1e-9 else f"{order:.2f}"


def plot_convergence(levels: list[dict], observed: dict[str, float | None],
                     expected: dict[str, float] | None, path: Path, title: str = "") -> None:
    """Relative errors against the edge length h on log-log axes, one series per norm of
    ``levels`` (each a dict with ``h`` and the relative errors ``rel_l2``, ``rel_h1`` of
    $u_h - u$, by quadrature on each cell), labelled with
    its ``observed`` order (keys ``l2``, ``h1``); where ``expected`` gives a norm's order, a
    dashed line of that slope through the error on the finest mesh."""
    series = {"l2": ("rel_l2", "L2 norm"), "h1": ("rel_h1", "H1 seminorm")}
    levels = sorted(levels, key=lambda level: level["h"])  # the case's mesh may come first
    h = np.array([level["h"] for level in levels])
    finest = 0
    fig, ax = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    for k, (norm, (key, label)) in enumerate(series.items()):
        if any(key not in level for level in levels):  # a constant exact solution: no H1
            continue
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
           ylabel="relative error of u_h - u (by quadrature)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)
