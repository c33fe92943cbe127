r"""Point measurements of the solution, as a loss term of an inverse problem.

$L_{obs} = \overline{(u(X_j) - \tilde u_j)^2}$ over the observed points $X_j$ (space then
time) and values $\tilde u_j$ (one column per observed output). :func:`read_observations`
picks them from an xarray/HDF5 file (for example one written by ``physml solve``) and adds
Gaussian noise of standard deviation ``noise`` times the root mean square of the variable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..solvers.checks import MAX_SOLVE_STEPS

DIMENSION_ALIASES = {"time": "t"}
"""Dimension names of data files that map to other input names."""


@dataclass(frozen=True)
class Observations:
    """Observed ``values`` ``(n, k)`` of the outputs ``fields`` at ``points`` ``(n, d_in)``."""

    points: np.ndarray
    values: np.ndarray
    fields: tuple[str, ...] = ("u",)
    name: str = "observations"

    def check(self, problem) -> None:
        unknown = [f for f in self.fields if f not in problem.outputs]
        if unknown:
            raise ValueError(f"observations: unknown field {unknown[0]!r}; allowed: "
                             f"{', '.join(problem.outputs)}")
        if self.points.ndim != 2 or self.points.shape[1] != len(problem.inputs):
            raise ValueError(f"observations: points need shape (n, {len(problem.inputs)}) "
                             f"({', '.join(problem.inputs)}), got {self.points.shape}")
        expected = (len(self.points), len(self.fields))
        if np.shape(self.values) != expected:  # (n,) against (n, 1) would broadcast to (n, n)
            raise ValueError(f"observations: values need shape {expected} (one row per point, "
                             f"one column per field: {', '.join(self.fields)}), got "
                             f"{np.shape(self.values)}")

    def loss(self, problem, field, X: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        columns = [problem.outputs.index(f) for f in self.fields]
        return (field(X)[:, columns] - values).square().mean()


def read_variable(path: Path, variable: str, inputs: Sequence[str], key: str):
    """``variable`` of the xarray/HDF5 file ``path``, loaded, with its dimensions renamed to
    the problem's ``inputs`` (``time`` read as ``t``).

    Raises:
        ValueError: naming ``key``: no such file, no such variable, or dimensions that are not
            the inputs.
    """
    import xarray as xr

    if not path.is_file():
        what = "is a folder; give a file" if path.is_dir() else "does not exist"
        raise ValueError(f"{key}.file: {str(path)!r} {what}")
    try:
        opened = xr.open_dataset(path)
    except PermissionError as err:
        raise ValueError(f"{key}.file: {str(path)!r} cannot be read ({err.strerror})") from None
    except (ValueError, OSError):  # no backend takes it: not HDF5/netCDF
        raise ValueError(f"{key}.file: {str(path)!r} is not an xarray file (HDF5/netCDF, as "
                         "physml solve and physml datasets write)") from None
    with opened as ds:
        if variable not in ds.data_vars:
            raise ValueError(f"{key}.variable: {str(path)!r} has no variable {variable!r}; "
                             f"it has: {', '.join(map(str, ds.data_vars)) or 'none'}")
        data = ds[variable].load()
    renamed = data.rename({d: DIMENSION_ALIASES[d] for d in data.dims if d in DIMENSION_ALIASES})
    if sorted(map(str, renamed.dims)) != sorted(inputs):
        raise ValueError(f"{key}.variable: {variable!r} has dimensions {list(data.dims)}; the "
                         f"problem's inputs are {', '.join(inputs)}")
    return renamed


def read_observations(path: str | Path, variable: str, inputs: Sequence[str], n: int,
                      noise: float = 0.0, seed: int = 0, field: str = "u",
                      key: str = "observations") -> Observations:
    """``n`` points drawn without replacement from the grid of ``variable`` in the file
    ``path``, whose dimensions must be the problem's ``inputs`` (``time`` read as ``t``),
    with relative Gaussian noise ``noise``; ``key`` names the case key in error messages."""
    path = Path(path)
    data = read_variable(path, variable, inputs, key)
    dims = list(map(str, data.dims))
    values = data.values.reshape(-1)
    if n > values.size:
        raise ValueError(f"{key}.points={n} exceeds the {values.size} values in {str(path)!r}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(values.size, size=n, replace=False)
    mesh = np.meshgrid(*(data[d].values for d in data.dims), indexing="ij")
    columns = {dim: m.reshape(-1)[chosen] for dim, m in zip(dims, mesh)}
    points = np.stack([columns[name] for name in inputs], axis=1)
    rms = float(np.sqrt(np.mean(values**2)))
    observed = values[chosen] + noise * rms * rng.standard_normal(n)
    return Observations(points.astype(np.float64), observed[:, None], (field,))


def solve_steps_per_save(stable_dt: float, t_end: float, n_saves: int) -> float:
    r"""Time steps per save interval of a solve to ``t_end`` saving ``n_saves`` states at up to
    half the stable step: $k = \lceil \tau / (dt_{stable}/2) \rceil$ with
    $\tau = t_{end}/(n_{saves}-1)$; a float (inf, or beyond any count) where $k$ overflows."""
    per_save = t_end / (n_saves - 1) / (0.5 * stable_dt)
    return float(math.ceil(per_save)) if per_save < 1e300 else math.inf


def observation_solver(spec):
    """The float64 grid solver of ``observations.solve`` (its ``pde``, ``parameters``,
    ``nx``) and its initial state.

    Raises:
        ValueError: the problem or its parameters refused, under ``observations.solve``.
    """
    from ..datasets.problems import build_solver

    try:
        return build_solver(spec.pde, (spec.nx,), dict(spec.parameters), dtype="float64")
    except (KeyError, ValueError) as err:
        raise ValueError(f"observations.solve: {err}") from None


def check_solve_steps(spec, time: Sequence[float]) -> None:
    """Refuse ``observations.solve`` (its ``pde``, ``parameters``, ``nx``, ``n_saves``) to
    ``time[1]`` (``domain.time``) if it would take more than :data:`MAX_SOLVE_STEPS` steps.

    Raises:
        ValueError: naming the keys that set the count and the count.
    """
    solver, u0 = observation_solver(spec)
    steps = solve_steps_per_save(solver.stable_dt(u0), time[1], spec.n_saves) * (
        spec.n_saves - 1)
    if steps > MAX_SOLVE_STEPS:
        count = f"{steps:.0f}" if steps < 1e15 else f"{steps:.3g}"
        given = "".join(f"observations.solve.parameters.{name}={value:g}, "
                        for name, value in spec.parameters.items())
        raise ValueError(
            f"observations.solve: {spec.pde} with {given}observations.solve.nx={spec.nx} and "
            f"domain.time={list(time)} needs {count} time steps at half its stable step, more "
            f"than {MAX_SOLVE_STEPS:.0e} (as physml solve refuses); use smaller "
            "observations.solve.parameters, a smaller observations.solve.nx or a shorter "
            "domain.time")
