"""Fourier neural operator: shapes in 1D/2D/3D and resolution independence."""

import numpy as np
import pytest
import torch

from physml.fno import FNO, SpectralConv


@pytest.mark.parametrize("modes, shape", [((4,), (16,)), ((3, 4), (8, 12)), ((2, 2, 3), (6, 6, 8))])
def test_fno_maps_channels_on_any_dimension(modes, shape):
    model = FNO(2, 5, modes, width=8, layers=2)
    out = model(torch.randn(3, 2, *shape))
    assert out.shape == (3, 5, *shape)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def band_limited(n1, n2):
    x = torch.arange(n1, dtype=torch.float64)[:, None] / n1
    y = torch.arange(n2, dtype=torch.float64)[None] / n2
    return torch.stack([torch.sin(2 * np.pi * x) * torch.cos(6 * np.pi * y),
                        torch.cos(4 * np.pi * x) + 0 * y])[None]


def test_spectral_conv_is_resolution_independent():
    conv = SpectralConv(2, 3, (3, 4)).double()
    coarse, fine = conv(band_limited(8, 10)), conv(band_limited(16, 20))
    np.testing.assert_allclose(coarse.detach(), fine[..., ::2, ::2].detach(), atol=1e-12)


def test_spectral_conv_rejects_too_few_points():
    with pytest.raises(ValueError, match="modes"):
        SpectralConv(1, 1, (5, 2))(torch.randn(1, 1, 8, 8))


@pytest.mark.parametrize("modes, shape", [((4, 2), (8, 8)), ((12,), (16,)), ((2, 9), (8, 16))])
def test_spectral_conv_refuses_modes_at_or_above_nyquist_on_every_axis(modes, shape):
    # (4, 2) on 8 points: k = -4 would be the Nyquist bin; the last axis is checked too
    with pytest.raises(ValueError, match="below its Nyquist frequency"):
        SpectralConv(1, 1, modes)(torch.randn(1, 1, *shape))
