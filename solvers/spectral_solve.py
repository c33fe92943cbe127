r"""Direct solve of $(I + \Delta t\,(a\Lambda + b\Lambda^2))\,\delta = r$ on a uniform grid.

$\Lambda = -\Delta_h$ is the standard second-order (3-point per axis) discrete Laplacian, negated,
with periodic or no-flux (ghost $u_{-1} = u_0$) boundaries per axis. Both are diagonalised by fast
transforms: the DFT on periodic axes, with eigenvalues $\tfrac{4}{h^2}\sin^2(\pi k/N)$, and the
DCT-II on no-flux axes, with eigenvalues $\tfrac{4}{h^2}\sin^2(\pi k/(2N))$. The mode $k = 0$ has
eigenvalue 0, so the solve leaves the mean of $r$ unchanged: what makes the stabilised
Cahn–Hilliard step conservative. A right-hand side whose mean is zero but for rounding (the
divergence of face fluxes, $\Delta t\,R$) is solved with ``zero_mean=True``, which sets that
mode of $\delta$ to zero: its rounding, about $\varepsilon\sum|r|$ and so growing with
$\Delta t$ while the other modes are damped, is dropped instead of passed on to the mass.

Two back ends give the same result: ``"scipy"`` (``scipy.fft`` DCT/real FFT, CPU arrays) and
``"torch"`` (``torch.fft``, any device; a no-flux axis is mirrored to a periodic axis of length
$2N$, whose DFT is the DCT-II). :class:`SpectralSolve` picks ``"scipy"`` on the CPU.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import warp as wp


def laplacian_eigenvalues(n: int, spacing: float, periodic: bool) -> np.ndarray:
    """Eigenvalues of $-\\partial_h^2$ on one axis, in transform order, shape ``(n,)``."""
    k = np.arange(n)
    angle = np.pi * k / n if periodic else np.pi * k / (2 * n)
    return 4.0 * np.sin(angle) ** 2 / spacing**2


class SpectralSolve:
    """Solver of $(I + \\Delta t(a\\Lambda + b\\Lambda^2))\\delta = r$ for fields of ``shape``.

    Args:
        shape: grid shape (1 to 3 axes).
        spacing: cell width per axis (in the units of the caller's $a$, $b$).
        periodic: per axis, True for periodic, False for no-flux.
        device: Warp device of the right-hand sides.
        backend: "scipy" (CPU only), "torch", or None (scipy on the CPU, torch elsewhere).
        workers: threads of the scipy transforms.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        spacing: tuple[float, ...],
        periodic: tuple[bool, ...],
        device: str = "cpu",
        backend: str | None = None,
        workers: int = 1,
    ) -> None:
        self.shape, self.periodic, self.device = tuple(shape), tuple(periodic), device
        self.workers = workers
        on_cpu = str(device) == "cpu"
        self.backend = backend or ("scipy" if on_cpu else "torch")
        if self.backend not in ("scipy", "torch"):
            raise ValueError(f"backend={backend!r}; allowed: scipy, torch")
        if self.backend == "scipy" and not on_cpu:
            raise ValueError(f"backend 'scipy' needs device 'cpu', got {device!r}")
        if self.backend == "torch" and not on_cpu:
            _require_torch_gpu(str(device))
        self._periodic_axes = tuple(d for d, p in enumerate(periodic) if p)
        self._noflux_axes = tuple(d for d, p in enumerate(periodic) if not p)
        if self.backend == "scipy":
            lengths = [n for n in shape]
            if self._periodic_axes:  # rfftn halves the last periodic axis
                last = self._periodic_axes[-1]
                lengths[last] = shape[last] // 2 + 1
            axes = [laplacian_eigenvalues(n, h, p)[:m]
                    for n, h, p, m in zip(shape, spacing, periodic, lengths)]
        else:
            extended = [n if p else 2 * n for n, p in zip(shape, periodic)]
            axes = [laplacian_eigenvalues(m, h, True) for m, h in zip(extended, spacing)]
            axes[-1] = axes[-1][: extended[-1] // 2 + 1]
        self.eigenvalues = sum(np.meshgrid(*axes, indexing="ij", sparse=True))
        self._torch_eigenvalues = None
        self._inverse_key: tuple[float, float, float] | None = None
        self._inverse = None

    def _inverse_symbol(self, dt: float, a: float, b: float, lam):
        """$1/(1 + \\Delta t\\,\\lambda(a + b\\lambda))$, kept while (dt, a, b) repeat."""
        if self._inverse_key != (dt, a, b):
            self._inverse = 1.0 / (1.0 + dt * lam * (a + b * lam))
            self._inverse_key = (dt, a, b)
        return self._inverse

    def solve(self, r: wp.array, dt: float, a: float, b: float,
              zero_mean: bool = False) -> wp.array:
        """$\\delta$ as a new Warp array shaped like ``r`` (the grid's values, any shape); with
        ``zero_mean``, its mode $k = 0$ (its mean) set to zero (see the module docstring)."""
        if self.backend == "scipy":
            return self._solve_scipy(r, dt, a, b, zero_mean)
        return self._solve_torch(r, dt, a, b, zero_mean)

    def _solve_scipy(self, r: wp.array, dt: float, a: float, b: float,
                     zero_mean: bool) -> wp.array:
        inverse = self._inverse_symbol(dt, a, b, self.eigenvalues)
        values = r.numpy()
        field = values.reshape(self.shape)
        if self._noflux_axes:
            field = scipy.fft.dctn(field, type=2, axes=self._noflux_axes, norm="ortho",
                                   workers=self.workers)
        if self._periodic_axes:
            spectrum = scipy.fft.rfftn(field, axes=self._periodic_axes, workers=self.workers)
            spectrum *= inverse
            if zero_mean:
                spectrum.flat[0] = 0.0
            sizes = [self.shape[d] for d in self._periodic_axes]
            field = scipy.fft.irfftn(spectrum, s=sizes, axes=self._periodic_axes,
                                     workers=self.workers)
        else:
            field = field * inverse
            if zero_mean:
                field.flat[0] = 0.0
        if self._noflux_axes:
            field = scipy.fft.idctn(field, type=2, axes=self._noflux_axes, norm="ortho",
                                    workers=self.workers)
        field = np.ascontiguousarray(field, dtype=values.dtype).reshape(r.shape)
        return wp.array(field, dtype=r.dtype, device=r.device, copy=False)

    def _solve_torch(self, r: wp.array, dt: float, a: float, b: float,
                     zero_mean: bool) -> wp.array:
        import torch

        field = wp.to_torch(r).reshape(self.shape)
        if self._torch_eigenvalues is None:
            self._torch_eigenvalues = torch.as_tensor(
                np.asarray(self.eigenvalues), dtype=field.dtype, device=field.device
            )
        inverse = self._inverse_symbol(dt, a, b, self._torch_eigenvalues)
        for d in self._noflux_axes:
            field = torch.cat([field, field.flip(d)], dim=d)
        spectrum = torch.fft.rfftn(field) * inverse
        if zero_mean:
            spectrum.view(-1)[0] = 0.0
        field = torch.fft.irfftn(spectrum, s=field.shape)
        for d in self._noflux_axes:
            field = field.narrow(d, 0, self.shape[d])
        return wp.from_torch(field.contiguous().reshape(r.shape), dtype=r.dtype)


def _require_torch_gpu(device: str) -> None:
    """Refuse a GPU ``device`` ("cuda:N") that PyTorch cannot use (a CPU build of PyTorch, or
    fewer GPUs), where the torch backend would fail inside PyTorch at the first step.

    Raises:
        ValueError: naming the device, what PyTorch sees and the cure.
    """
    import torch

    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: the torch FFT backend needs a PyTorch that sees "
                         f"this GPU, and PyTorch {torch.__version__} sees "
                         f"{torch.cuda.device_count()}; install PyTorch's CUDA build")
