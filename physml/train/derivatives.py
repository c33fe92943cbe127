r"""Derivatives of a network's outputs with respect to its inputs, by name, computed once.

A residual function receives a :class:`Derivatives` ``d`` over collocation points ``X`` of
shape ``(n, d_in)`` (columns named by ``inputs``, e.g. ``("x", "y", "t")``) and the field
``out`` of shape ``(n, m)`` (columns named by ``outputs``):

* ``d["u"]``, ``d["x"]``: an output or an input, shape ``(n, 1)``; ``d["nu"]``: a
  coefficient as given, a tensor ``(n, 1)`` or a scalar (a Python number comes back as is);
* ``d("u", "x")``, ``d("u", "x", "x")``, ``d("v", "x", "t")``, ``d("u", "x", "x", "x")``:
  partial derivatives of any order, shape ``(n, 1)`` (of a coefficient that does not depend
  on ``X``, a scalar or a tensor computed without it: zeros ``(n, 1)``);
* ``d.laplacian("u")`` $=\sum_i u_{x_i x_i}$ over the space inputs, ``d.divergence(("u",
  "v"))`` $= u_x + v_y$, ``d.gradient("u")`` ``(n, dim)`` over the space inputs.

Each gradient is one ``torch.autograd.grad`` call of a column over all of ``X`` (graph kept),
cached, so $u_x$ and $u_t$ share a call and $u_{xx}$, $u_{xy}$ share another, whichever terms
ask for them; a derivative of order $k$ costs $k$ nested calls ($u_{xxxx}$: four).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def gradient(u: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """$\\partial u/\\partial X$ row by row, shape ``(n, d)`` (graph kept for higher orders);
    zeros where ``u`` does not depend on ``X``.

    Raises:
        RuntimeError: autograd is off (``torch.no_grad()``) or ``X`` does not require grad:
            no derivative can be taken (zeros would pass for them without a word).
    """
    if not (torch.is_grad_enabled() and X.requires_grad):
        raise RuntimeError("a derivative needs autograd: inputs X that require grad, outside "
                           "torch.no_grad() (evaluate a residual under torch.enable_grad())")
    if not u.requires_grad:
        return torch.zeros_like(X)
    grad = torch.autograd.grad(u, X, torch.ones_like(u), create_graph=True, allow_unused=True)[0]
    return torch.zeros_like(X) if grad is None else grad


class Derivatives:
    """Named fields and their partial derivatives at ``X`` (see the module docstring).

    Args:
        X: inputs ``(n, d_in)``, with ``requires_grad``, that ``out`` was computed from.
        out: outputs ``(n, m)``.
        inputs: names of the columns of ``X``.
        outputs: names of the columns of ``out``.
        space: the inputs that are space coordinates (for Laplacian, divergence, gradient).
        values: further named values ``(n, 1)`` or scalars (coefficients).
    """

    def __init__(self, X: torch.Tensor, out: torch.Tensor, inputs: Sequence[str],
                 outputs: Sequence[str], space: Sequence[str] | None = None,
                 values: Mapping[str, torch.Tensor] | None = None) -> None:
        self.X, self.out = X, out
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self.space = tuple(inputs if space is None else space)
        self.values = dict(values or {})
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._gradients: dict[tuple[str, ...], torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self.outputs:
            i = self.outputs.index(name)
            return self.out[:, i : i + 1]
        if name in self.inputs:
            i = self.inputs.index(name)
            return self.X[:, i : i + 1]
        if name in self.values:
            return self.values[name]
        raise KeyError(f"unknown name {name!r}; allowed: "
                       f"{', '.join((*self.outputs, *self.inputs, *self.values))}")

    def __call__(self, field: str, *wrt: str) -> torch.Tensor:
        """$\\partial^k f / \\partial w_1 \\cdots \\partial w_k$, shape ``(n, 1)``."""
        if not wrt:
            return self[field]
        key = (field, *wrt)
        if key not in self._cache:
            for name in wrt:
                if name not in self.inputs:
                    raise KeyError(f"cannot differentiate by {name!r}; inputs: "
                                   f"{', '.join(self.inputs)}")
            grad = self._gradient_of((field, *wrt[:-1]))
            i = self.inputs.index(wrt[-1])
            self._cache[key] = grad[:, i : i + 1]
        return self._cache[key]

    def _gradient_of(self, key: tuple[str, ...]) -> torch.Tensor:
        """The gradient over all inputs of the derivative ``key``, one autograd call each
        (zeros ``(n, d_in)`` where it does not depend on ``X``: a scalar coefficient, or a
        tensor one computed without ``X``)."""
        if key not in self._gradients:
            f = self(*key)
            self._gradients[key] = (gradient(f, self.X) if isinstance(f, torch.Tensor) else
                                    torch.zeros_like(self.X))
        return self._gradients[key]

    def gradient(self, field: str) -> torch.Tensor:
        """$\\nabla f$ over the space inputs, shape ``(n, dim)``."""
        return torch.cat([self(field, x) for x in self.space], dim=1)

    def laplacian(self, field: str) -> torch.Tensor:
        """$\\Delta f = \\sum_i \\partial_{x_i x_i} f$ over the space inputs, ``(n, 1)``."""
        return sum(self(field, x, x) for x in self.space)

    def divergence(self, fields: Sequence[str]) -> torch.Tensor:
        """$\\sum_i \\partial_{x_i} f_i$ with one field per space input, ``(n, 1)``."""
        if len(fields) != len(self.space):
            raise ValueError(f"divergence needs {len(self.space)} fields (one per space input "
                             f"{', '.join(self.space)}), got {len(fields)}")
        return sum(self(f, x) for f, x in zip(fields, self.space))
