"""Fourier neural operator: shapes in 1D/2D/3D and resolution independence."""

import re

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


def single_mode(shape, k):
    """cos(2 pi k.x) on the grid x_a = j / n_a, and its angle."""
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) / n for n in shape],
                          indexing="ij")
    angle = 2 * np.pi * sum(ka * xa for ka, xa in zip(k, axes))
    return torch.cos(angle), angle


@pytest.mark.parametrize("modes, shape, k", [
    ((3, 4), (8, 10), (-1, 2)), ((3, 4), (8, 10), (1, 2)), ((3, 4), (8, 10), (-3, 1)),
    ((2, 2, 3), (6, 6, 8), (-2, 1, 2)), ((2, 2, 3), (6, 6, 8), (1, -1, 1))])
def test_spectral_conv_multiplies_each_kept_mode_by_its_own_weight(modes, shape, k):
    """A cosine of frequency k (k_last > 0) becomes Re[W(k) e^(2 pi i k.x)], with W(k) stored
    at k_a on the non-last axes for k_a >= 0 and at 2 m_a + k_a for k_a < 0 (negative
    frequencies kept: a layer that dropped or swapped them fails here)."""
    conv = SpectralConv(1, 1, modes).double()
    v, angle = single_mode(shape, k)
    index = [ka if ka >= 0 else 2 * m + ka for ka, m in zip(k[:-1], modes[:-1])] + [k[-1]]
    w = torch.view_as_complex(conv.weight)[0, 0][tuple(index)]
    expected = (w * torch.exp(1j * angle)).real
    torch.testing.assert_close(conv(v[None, None])[0, 0].detach(), expected, rtol=0,
                               atol=1e-12)


def test_a_float64_fno_is_float64_throughout_and_converts_like_any_module():
    conv = SpectralConv(2, 3, (3, 4))
    v = band_limited(8, 10)
    single = conv(v.float()).double()
    double = conv.to(torch.float64)  # every parameter real: no part dropped
    assert all(p.dtype == torch.float64 for p in double.parameters())
    torch.testing.assert_close(double(v), single.detach(), rtol=0, atol=1e-6)
    model = FNO(1, 2, (2, 2), width=2, layers=1).double()
    x = torch.randn(1, 1, 6, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: torch.func.functional_call(
        model, {"spectral.0.weight": p}, (x,)), (model.spectral[0].weight.detach()
                                                  .requires_grad_(),))


def test_an_input_of_another_shape_dtype_or_kind_is_named():
    model = FNO(2, 3, (4, 4), width=8)
    for v, message in ((torch.zeros(1, 3, 16, 16), "has shape (1, 3, 16, 16); this FNO takes "
                                                   "(B, 2, n_1, n_2)"),
                       (torch.zeros(2, 16, 16), "has shape (2, 16, 16)"),
                       (torch.zeros(1, 2, 16, 16, dtype=torch.float64), "the input is "
                        "torch.float64 on cpu, the model torch.float32 on cpu"),
                       (np.zeros((1, 2, 16, 16)), "the input is a ndarray; FNO takes a tensor")):
        with pytest.raises(ValueError, match=re.escape(message)):
            model(v)
    with pytest.raises(ValueError, match="modes=4: one count per axis"):
        FNO(2, 3, 4)
    with pytest.raises(ValueError, match=re.escape("modes=(2.5,) must hold 1 to 3 positive "
                                                   "integers")):
        FNO(1, 1, (2.5,))  # failed inside torch.randn
    for options, message in (({"width": 0}, "width=0 must be a whole number >= 1"),
                             ({"layers": -1}, "layers=-1 must be"),
                             ({"projection": 2.5}, "projection=2.5 must be")):
        with pytest.raises(ValueError, match=re.escape(message)):
            FNO(2, 3, (4, 4), **options)
    with pytest.raises(ValueError, match="out_channels=0"):
        FNO(2, 0, (4, 4))
    assert FNO(2, 3, (4, 4), width=np.int64(8))(torch.zeros(1, 2, 16, 16)).shape == (
        1, 3, 16, 16)  # a NumPy integer is a whole number too
    assert model(torch.zeros(1, 2, 16, 16)).shape == (1, 3, 16, 16)
    assert model(torch.zeros(0, 2, 16, 16)).shape == (0, 3, 16, 16)  # MKL refused an empty batch
