"""How the run figures colour a field: the colormap and range that fit its sign
(:func:`colour_scale`) and the colour bar's extend arrows for values beyond that range
(:func:`clipping`)."""

from __future__ import annotations

import numpy as np


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
    ``"both"`` or ``"neither"``) and the fraction of the finite values outside it by more than
    $10^{-6}$ of its span (rounding: float32 ``sin(pi)`` is -8.7e-8, not below 0)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    slack = 1e-6 * (vmax - vmin)
    below, above = v < vmin - slack, v > vmax + slack
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
              (True, True): "both"}[(bool(below.any()), bool(above.any()))]
    return extend, float((below | above).sum() / max(v.size, 1))
