"""PNG figures of nodal fields on a triangle mesh, planar or a surface in 3D (matplotlib,
no display)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .figure_colours import clipping, colour_scale  # noqa: E402
from .run_folder import save_figure  # noqa: E402


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
    one centred on 0 (:func:`~.figure_colours.colour_scale`). Where both ``u`` and ``exact``
    are shown, ``u`` is drawn on ``exact``'s colour scale, with extend arrows on its colour bar
    where it leaves that range (as :func:`~.figures.plot_solution` draws a prediction). Panel
    titles from ``titles`` (default: the field's name); colour bars labelled with the name and
    its ``units`` (one string for all fields, or per name, ``"1"`` where a name is missing).
    ``title`` wraps to the figure's width."""
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
    save_figure(fig, path, dpi=110)
