r"""A network $u_\theta(x)$ as a function of one flat parameter vector $\theta$, shape (p,), the
state :class:`~physml.train.teng.TENG` evolves: values $u_\theta(X)$, derivatives in $x$ and the
Jacobian $J_S = \partial u_\theta(X)/\partial\theta_S$ for a subset $S$ of the parameters,
all on points $X$ of shape (n, d).

Memory: $J_S$ is built in chunks of ``chunk`` points. For networks of linear layers (the
MLPs here) a chunk costs one forward and one backward pass, $O(\text{chunk}\cdot w L)$ for
width $w$ and depth $L$, plus its $\text{chunk}\cdot|S|$ columns (:mod:`physml.train.jacobian`);
for other networks it holds its full Jacobian, $O(\text{chunk}\cdot p)$. The Gram solve in
parameter space ($n \ge |S|$, the paper-scale cases) accumulates $J_S^\top J_S$ and
$J_S^\top r$ chunk by chunk, so $J_S$ never exists in one piece: the peak is
$O(|S|^2 + \text{chunk}\cdot|S|)$ floats, whatever $n$ (512² points x 1500 columns would be
3.1 GB in float64; its Gram matrix is 18 MB). In sample space $J_S$ is kept, $O(n|S|)$ with
$n < |S|$, no more than the Gram matrix of the other side. The dense SVD solve holds $J_S$.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..models import MLP, FourierFeatureMLP, ModifiedMLP, PeriodicMLP
from .jacobian import LinearLayerJacobian, NotLinearLayers

_INPUT_WIDTH: dict[type[nn.Module], Callable[[nn.Module], int]] = {
    MLP: lambda model: model.net[0].in_features,
    ModifiedMLP: lambda model: model.encode_u.in_features,
    FourierFeatureMLP: lambda model: model.frequencies.shape[0],
    PeriodicMLP: lambda model: model.periodic.numel() + model.other.numel(),
}


def input_width(model: nn.Module) -> int | None:
    """How many input columns ``model`` reads: its ``d_in`` if it is a network of
    :mod:`physml.models`, else None (not known). :class:`~physml.train.teng.TENG` checks its
    ``dim`` against it: a :class:`~physml.models.PeriodicMLP` picks its columns by index, so
    points (n, d) with d above its ``d_in`` would run, the extra coordinates left out of $u$."""
    width = _INPUT_WIDTH.get(type(model))
    return None if width is None else width(model)


class FlatNetwork:
    r"""``model`` (points (n, ``dim``) -> values (n, 1), float64, on its device) as a function of
    flat parameters $\theta$; its own parameters are read only by :meth:`flat_parameters` and
    written only by :meth:`write`.

    Args:
        model: the network; where its input width is known (:func:`input_width`) it must be
            ``dim``.
        dim: the space dimension $d$.
        device: the model's device.
        on_fallback: called as ``on_fallback("full_jacobian", reason)`` each time a Jacobian
            is built by ``vmap(jacrev)`` (the network is not one of linear layers each run once).

    Raises:
        ValueError: ``dim`` is not the model's input width, or the model's output width is not 1.
    """

    def __init__(self, model: nn.Module, dim: int, device: torch.device,
                 on_fallback: Callable[[str, str], None]) -> None:
        width = input_width(model)
        if width not in (None, dim):
            raise ValueError(f"dim={dim} does not match the model: its {type(model).__name__} "
                             f"takes points of {width} coordinates; pass dim={width} or a model "
                             f"of input width {dim}")
        with torch.no_grad():
            shape = model(torch.zeros(1, dim, dtype=torch.float64, device=device)).shape
        if tuple(shape) != (1, 1):
            raise ValueError(f"model maps one point to values of shape {tuple(shape)}; TENG "
                             "evolves one scalar field: give a model of output width 1")
        self.model, self.device, self.on_fallback = model, device, on_fallback
        self.names = [name for name, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        p = sum(math.prod(shape) for shape in self.shapes)
        try:
            self.outer_jacobian, self.full_jacobian_reason = (
                LinearLayerJacobian.for_model(model, dim), "")
        except NotLinearLayers as exc:
            self.outer_jacobian, self.full_jacobian_reason = None, (
                f"{exc}, so the Jacobian is built by vmap(jacrev) with all "
                f"{p} columns per point: O(chunk * p) memory, not O(chunk * |S|)")

    def flat_parameters(self) -> torch.Tensor:
        r"""The model's own parameters as one $\theta$, shape (p,)."""
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def write(self, theta: torch.Tensor) -> nn.Module:
        """Copy ``theta`` into the model's parameters and return the model."""
        params = self.params(theta)
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                parameter.copy_(params[name])
        return self.model

    def params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """``theta`` as the model's parameters, name -> view of its shape."""
        out, offset = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            out[name] = theta[offset : offset + size].reshape(shape)
            offset += size
        return out

    def scalar(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""$u_\theta(x)$ at one point ``x``, shape (d,) -> () (for ``vmap`` and ``jacrev``)."""
        return functional_call(self.model, self.params(theta), (x[None],))[0, 0]

    def value(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """$u_\\theta(X)$, shape (n,)."""
        with torch.no_grad():
            return functional_call(self.model, self.params(theta), (X,))[:, 0]

    def rhs(self, theta: torch.Tensor, X: torch.Tensor,
            F: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
            chunk: int) -> torch.Tensor:
        """$F(u, \\nabla u, \\Delta u)$ of $u_\\theta$ at ``X``, shape (n,), from values (n,),
        gradients (n, d) and Laplacians (n,) by exact automatic derivatives in x, ``chunk``
        points at a time."""
        grad_x = jacrev(self.scalar, argnums=1)
        hess_x = jacrev(grad_x, argnums=1)
        parts = []
        for x in torch.split(X, chunk):
            u = vmap(self.scalar, in_dims=(None, 0))(theta, x)
            g = vmap(grad_x, in_dims=(None, 0))(theta, x)
            lap = vmap(hess_x, in_dims=(None, 0))(theta, x).diagonal(dim1=-2, dim2=-1).sum(-1)
            parts.append(F(u, g, lap).detach())
        return torch.cat(parts)

    def jacobian_blocks(self, theta: torch.Tensor, X: torch.Tensor, columns: torch.Tensor,
                        chunk: int) -> Iterator[torch.Tensor]:
        """$\\partial u_\\theta(X)/\\partial\\theta_S$ for the parameter indices ``columns``, in
        row blocks of at most ``chunk`` points, shape (chunk, |S|) each (see the module
        docstring): by outer products for networks of linear layers
        (:mod:`physml.train.jacobian`), else by ``vmap(jacrev)`` (a ``"full_jacobian"``
        fallback, reported to ``on_fallback``)."""
        if self.outer_jacobian is not None:
            params = self.params(theta)
            for x in torch.split(X, chunk):
                block = torch.empty(columns.numel(), x.shape[0], dtype=x.dtype, device=x.device)
                self.outer_jacobian.transposed(params, x, columns, block)
                yield block.T
        else:
            self.on_fallback("full_jacobian", self.full_jacobian_reason)
            jac = vmap(jacrev(self.scalar, argnums=0), in_dims=(None, 0))
            for x in torch.split(X, chunk):
                yield jac(theta, x)[:, columns].detach()

    def jacobian(self, theta: torch.Tensor, X: torch.Tensor, columns: torch.Tensor,
                 chunk: int) -> torch.Tensor:
        """The blocks of :meth:`jacobian_blocks` in one piece, shape (n, |S|)."""
        return torch.cat(list(self.jacobian_blocks(theta, X, columns, chunk)))

    def output_columns(self) -> torch.Tensor:
        r"""Indices in $\theta$ of the last linear layer (the network is linear in them)."""
        last = [name for name, m in self.model.named_modules() if isinstance(m, nn.Linear)][-1]
        columns, offset = [], 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            if name.rsplit(".", 1)[0] == last:
                columns.append(torch.arange(offset, offset + size))
            offset += size
        return torch.cat(columns).to(self.device)
