r"""Arithmetic on flat fields, as Warp kernels: $x + a\,y$, $x + a\,c\,y$, a weighted dot product
and float32/float64 copies.

Arrays are flat, ``(n,)``; the coefficient $c$ (a differentiable parameter) and the dot
product's accumulator are one-entry arrays. :func:`axpy` is the host-side $x + a\,y$.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from .kernel_launch import launch, specialize


@wp.kernel
def axpy_kernel(x: wp.array(dtype=Any), y: wp.array(dtype=Any), a: Any, out: wp.array(dtype=Any)):
    """out = x + a y. Reads x, y; writes out."""
    t = wp.tid()
    out[t] = x[t] + a * y[t]


@wp.kernel(enable_backward=False)
def widen_kernel(x: wp.array(dtype=wp.float32), out: wp.array(dtype=wp.float64)):
    """out = x in float64."""
    t = wp.tid()
    out[t] = wp.float64(x[t])


@wp.kernel(enable_backward=False)
def narrow_kernel(x: wp.array(dtype=wp.float64), out: wp.array(dtype=wp.float32)):
    """out = x rounded to float32."""
    t = wp.tid()
    out[t] = wp.float32(x[t])


@wp.kernel
def scaled_axpy_kernel(
    x: wp.array(dtype=Any),
    coeff: wp.array(dtype=Any),
    a: Any,
    y: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out = x + a coeff[0] y (coeff a differentiable parameter). Reads x, coeff, y; writes out."""
    t = wp.tid()
    out[t] = x[t] + a * coeff[0] * y[t]


@wp.kernel
def weighted_dot_kernel(
    a: wp.array(dtype=Any), b: wp.array(dtype=Any), scale: Any, out: wp.array(dtype=Any)
):
    """out[0] += scale * sum_i a_i b_i. Reads a, b; accumulates into out."""
    t = wp.tid()
    wp.atomic_add(out, 0, scale * a[t] * b[t])


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        arr = wp.array(dtype=T)
        specialize(axpy_kernel, T, {"x": arr, "y": arr, "a": T, "out": arr})
        specialize(scaled_axpy_kernel, T, {"x": arr, "coeff": arr, "a": T, "y": arr, "out": arr})
        specialize(weighted_dot_kernel, T, {"a": arr, "b": arr, "scale": T, "out": arr})


_overload_all()


def axpy(x: wp.array, y: wp.array, a: float) -> wp.array:
    """A new array $x + a\\,y$ (x, y untouched)."""
    out = wp.empty_like(x, requires_grad=x.requires_grad or y.requires_grad)
    launch(
        axpy_kernel,
        x.dtype,
        dim=x.shape[0],
        inputs=[x, y, x.dtype(a)],
        outputs=[out],
        device=x.device,
    )
    return out
