"""Trained networks from run folders, rebuilt from a run's ``config.yaml`` and
``checkpoint.pt`` (nothing is trained and no reference is computed).

:func:`load_run` rebuilds the field of a ``kind: pinn`` or ``kind: equation`` run as a callable
model (what ``physml predict`` and ``physml export`` read)::

    model = physml.load_run("runs/burgers-20261123-192352")
    u = model(np.array([[0.5, 0.25]]))          # rows (x, t) -> u, shape (1,)
    model.export_torchscript("burgers.pt")      # torch.jit.load("burgers.pt")(X)
    model.export_onnx("burgers.onnx")           # ONNX Runtime, input "X", output "u"

:func:`load_network`, which is ``physml.load_run``, takes those runs and ``kind: moe`` runs too,
whose network maps initial states to trajectories
(:class:`~physml.cases.moe_trained.TrainedMoE`)::

    trained = physml.load_run("runs/moe_diffusion_sorption-20261206-101500")
    u = trained.predict(trained.test_initial_conditions())  # (S, nt, *space)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._version import __version__
from .dtypes import torch_dtype
from .solvers.errors import refuse_grad
from .torch_files import load_checked
from .train.pinn import PINNField, points_tensor, predict

if TYPE_CHECKING:
    from .cases.moe_trained import TrainedMoE


class TrainedModel:
    """A trained field $u(X)$: rows of inputs ``(n, d_in)`` (space then time, names in
    ``inputs``; a NumPy array, nested lists or a tensor) to a NumPy array, ``(n,)`` for one
    output, else ``(n, m)`` (names in ``outputs``), computed without gradients. A tensor that
    requires grad is refused: for gradients call ``model.field(X)`` on a tensor ``X``
    ``(n, d_in)`` of ``model.dtype`` on ``model.device``, which gives an ``(n, m)`` tensor.

    Attributes:
        field: the ``torch.nn.Module`` (network, embedding and output transform),
            differentiable in its input and its parameters.
        inputs, outputs: names of the columns.
        coefficients: the values of the problem's scalar coefficients.
        dtype, device: as trained.
        steps, planned_steps: the training steps its checkpoint holds, and the run's total
            (fewer: a run stopped early, by Ctrl-C or a blow-up; None where not recorded).
        run_dir: the run folder it was loaded from (absolute).

    A model pickles (``multiprocessing``, Dask) as its run folder and its current weights:
    the problem's expressions are compiled functions, which pickle cannot copy, so the copy
    reads the folder's ``config.yaml`` again and the folder must be readable where it is
    unpickled.
    """

    def __init__(self, field: PINNField, dtype: torch.dtype, device: torch.device,
                 steps: int | None = None, planned_steps: int | None = None,
                 run_dir: Path | None = None) -> None:
        self.field, self.dtype, self.device = field.eval(), dtype, device
        self.steps, self.planned_steps, self.run_dir = steps, planned_steps, run_dir
        problem = field.problem
        self.inputs, self.outputs = problem.inputs, problem.outputs
        self.coefficients = _coefficient_values(problem)

    def __reduce__(self) -> tuple:
        if self.run_dir is None:
            raise TypeError("a TrainedModel pickles as its run folder: this one was not "
                            "loaded by load_run")
        weights = {"model": self.field.model.state_dict(),
                   "coefficients": self.field.problem.coefficients.state_dict()}
        return _reloaded, (str(self.run_dir), str(self.device), weights)

    def __repr__(self) -> str:
        return (f"TrainedModel(inputs={self.inputs}, outputs={self.outputs}, "
                f"steps={self.steps}, device='{self.device}', dtype={self.dtype}, "
                f"run_dir={None if self.run_dir is None else str(self.run_dir)!r})")

    def __call__(self, X) -> np.ndarray:
        refuse_grad(X, "X", "a TrainedModel's call (NumPy values)",
                    f"model.field(X) gives the differentiable (n, {len(self.outputs)}) tensor "
                    f"(X of shape (n, {len(self.inputs)}), {self.dtype}, on {self.device})")
        return predict(self.field, points_tensor(X, self.inputs, self.dtype, self.device))

    def _example(self) -> torch.Tensor:
        """Four copies of the domain's centre, ``(4, d_in)``: the input exports trace."""
        return torch.as_tensor(self.field.problem.bounds.mean(axis=1)[None].repeat(4, 0),
                               dtype=self.dtype, device=self.device)

    def _check_exportable(self) -> None:
        """Refuse a field whose output transform a trace cannot record: exact constraints on
        a 3-D mesh domain, whose distance is signed by ray crossings counted in NumPy.

        Raises:
            ValueError: naming the reason and what works instead.
        """
        from .geometry.mesh_domain import MeshDomain

        parts, found = [self.field.problem.geometry], False
        while parts:
            geometry = parts.pop()
            found |= isinstance(geometry, MeshDomain) and geometry.dim == 3
            parts += [getattr(geometry, side) for side in ("a", "b") if hasattr(geometry, side)]
        if self.field.hard and found:
            raise ValueError("a field with exact constraints on a 3-D mesh domain cannot be "
                             "exported: its distance function is signed outside PyTorch, so a "
                             "trace would keep the signs of its example points; use load_run")

    def _export_metadata(self) -> dict[str, str]:
        """What an exported file records beside the graph: the names of the columns of its
        input and output (``inputs``, ``outputs``: comma-separated, e.g. ``x,t`` and ``u``)
        and ``physml_version``."""
        return {"inputs": ",".join(self.inputs), "outputs": ",".join(self.outputs),
                "physml_version": __version__}

    def export_torchscript(self, path: str | Path) -> None:
        """Save the field traced by TorchScript (``torch.jit.load(path)(X)`` gives
        ``(n, m)`` in the trained dtype for ``X`` of shape ``(n, d_in)``; the saved module casts
        ``X`` to the trained dtype first, so a float64 ``X`` is rounded to float32 for a
        float32 run). The file's extra files ``inputs``, ``outputs`` and ``physml_version``
        name the columns of ``X`` and of the output (comma-separated, e.g. ``x,t`` and ``u``)::

            names = {"inputs": "", "outputs": ""}
            torch.jit.load(path, _extra_files=names)  # names["inputs"] == b"x,t"

        Raises:
            ValueError: the field cannot be traced (:meth:`_check_exportable`).
        """
        self._check_exportable()
        trainable = [p for p in self.field.parameters() if p.requires_grad]
        for p in trainable:  # traced as constants: the saved model's outputs need no grad
            p.requires_grad_(False)
        try:  # the traced module shares the parameters: saved while they need no grad
            with torch.no_grad(), _quiet_exporter():
                traced = torch.jit.trace(_InputCast(self.field, self.dtype), self._example(),
                                         check_trace=False)
            traced.save(str(path), _extra_files=self._export_metadata())
        finally:
            for p in trainable:
                p.requires_grad_(True)

    def export_onnx(self, path: str | Path) -> None:
        """Save the field as an ONNX graph (opset 18, any number of rows): input ``X``
        ``(n, d_in)``, output ``u`` ``(n, m)``, in the trained dtype; for ONNX Runtime::

            onnxruntime.InferenceSession(path).run(None, {"X": X})[0]

        The model's ``metadata_props`` ``inputs``, ``outputs`` and ``physml_version`` name the
        columns of ``X`` and ``u`` (comma-separated, e.g. ``x,t`` and ``u``; ONNX Runtime:
        ``session.get_modelmeta().custom_metadata_map``).

        Raises:
            ValueError: the ``onnx`` and ``onnxscript`` packages are not installed, or the
                field cannot be traced (:meth:`_check_exportable`).
        """
        self._check_exportable()
        missing = [name for name in ("onnx", "onnxscript") if find_spec(name) is None]
        if missing:
            raise ValueError(f"ONNX export needs the {' and '.join(missing)} package(s): "
                             "pip install 'physml[onnx]'")
        rows = torch.export.Dim("rows")
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(self.field, (self._example(),), dynamo=True,
                                        input_names=["X"], output_names=["u"],
                                        dynamic_shapes={"X": {0: rows}}, verbose=False)
            program.model.metadata_props.update(self._export_metadata())
            program.save(str(path), external_data=False)  # one self-contained file


class _InputCast(torch.nn.Module):
    """``field(X.to(dtype))``: the field of a TorchScript export, which takes ``X`` (n, d_in) of
    any dtype, where the network's matrix products need its own."""

    def __init__(self, field: PINNField, dtype: torch.dtype) -> None:
        super().__init__()
        self.field, self.dtype = field, dtype

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.field(X.to(self.dtype))


def _coefficient_values(problem) -> dict[str, float]:
    """The values of the problem's scalar coefficients, by name."""
    return {name: c.value() for name, c in problem.coefficients.items() if hasattr(c, "value")}


def _reloaded(run_dir: str, device: str, weights: dict) -> TrainedModel:
    """A pickled :class:`TrainedModel`: its run folder loaded again, with its weights."""
    model = load_run(run_dir, device)
    model.field.model.load_state_dict(weights["model"])
    model.field.problem.coefficients.load_state_dict(weights["coefficients"])
    model.coefficients = _coefficient_values(model.field.problem)
    return model


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """PyTorch's exporters without the notices that do not concern a trained field: their
    own deprecations, operators of torchvision (not installed) skipped, and the tracer's note
    that tensors built from constants (coefficients, condition values) stay constants, which
    they are. Other warnings still show."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category, module="torch|copyreg")
            warnings.filterwarnings("ignore", "torch.as_tensor results are registered as "
                                    "constants", torch.jit.TracerWarning)
            yield
    finally:
        logger.setLevel(level)


def load_run(run_dir: str | Path, device: str | None = None) -> TrainedModel:
    """The trained field of a physics-informed run folder (what ``physml predict`` and
    ``physml export`` read; :func:`load_network`, the top-level ``physml.load_run``, takes
    ``moe`` runs too).

    Args:
        run_dir: a run folder of ``physml run`` for a case of kind ``pinn`` or ``equation``
            (``config.yaml`` and ``checkpoint.pt``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: the run's device, or the CPU
            on a machine without it).

    Returns:
        The :class:`TrainedModel` on ``device``, in the run's dtype, with the checkpoint's
        weights.

    Raises:
        ValueError: not a run folder (no ``config.yaml``, e.g. a missing folder), a case kind
            without a network field (``teng``, ``moe``, ...), no checkpoint or one that
            cannot be read or does not fit the configuration, or a ``device`` this machine
            does not have.
    """
    folder = Path(run_dir)
    return _load_field(folder, _recorded_case(folder), device)


def load_network(run_dir: str | Path, device: str | None = None) -> TrainedModel | TrainedMoE:
    """The trained network of a run folder, by its case kind: ``physml.load_run``.

    Args:
        run_dir: a run folder of ``physml run`` for a case of kind ``pinn``, ``equation`` or
            ``moe`` (``config.yaml`` and ``checkpoint.pt``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: the run's device, or the CPU
            on a machine without it).

    Returns:
        For a ``pinn`` or ``equation`` run, the :class:`TrainedModel` of :func:`load_run`: the
        field $u(X)$, rows of inputs ``(n, d_in)`` to values. For a ``moe`` run, the
        :class:`~physml.cases.moe_trained.TrainedMoE` of
        :func:`~physml.cases.moe_trained.load_trained`, in eval mode on ``device``: the
        operator from initial states ``u0`` ``(S, *space)`` to trajectories
        ``(S, nt, *space)`` (``predict``).

    Raises:
        ValueError: not a run folder (no ``config.yaml``), a case kind without a trained
            network (``teng``, ``pcg``, ...), no checkpoint or one that cannot be read or does
            not fit the configuration, or a ``device`` this machine does not have.
    """
    folder = Path(run_dir)
    case = _recorded_case(folder)
    if case.kind == "moe":
        from .cases.moe_trained import load_trained

        return load_trained(folder, _target_device(case.device, device))
    return _load_field(folder, case, device)


def _recorded_case(folder: Path):
    """The case of the run in ``folder``, read from its ``config.yaml`` (no data file needed).

    Raises:
        ValueError: ``folder`` holds no ``config.yaml`` (not a run folder), or it does not
            validate.
    """
    from .cases.registry import load_case
    from .cases.run_folder import CONFIG

    if not (folder / CONFIG).is_file():
        raise ValueError(f"{str(folder)!r} is not a run folder (no {CONFIG})")
    return load_case(folder / CONFIG, read_data=False, recorded=True)


def _target_device(run_device: str, device: str | None) -> torch.device:
    """``device``, or by default the run's device where this machine has it, else the CPU.

    Raises:
        ValueError: ``device`` is one this machine does not have.
    """
    from .devices import require_device

    if device is None:
        device = run_device
        try:
            require_device(device)
        except ValueError:
            device = "cpu"
    return torch.device(require_device(device))


def _load_field(folder: Path, case, device: str | None) -> TrainedModel:
    """:func:`load_run` of the run in ``folder``, whose case is ``case``."""
    from .cases import equation, pinn
    from .cases.pinn_training import refuse_older_networks
    from .cases.run_folder import CHECKPOINT, CONFIG, read_checkpoint
    from .models import build_model

    builders = {"pinn": pinn.build_problem,
                "equation": partial(equation.build_equation_problem, read_data=False,
                                     check_parameters=False)}
    if case.kind not in builders:  # before the checkpoint: other kinds keep other files
        raise ValueError(f"{str(folder)!r} is a {case.kind!r} run; a trained field "
                         "(physml predict and export, load_run) comes from a run of the kinds "
                         f"{', '.join(builders)}; physml.load_run also loads a moe run's "
                         "network (initial states to trajectories)")
    if not (folder / CHECKPOINT).is_file():
        raise ValueError(f"{str(folder)!r} has no {CHECKPOINT}: its run wrote no checkpoint")
    problem = builders[case.kind](case)
    spec = case.model
    lagrangian = getattr(case.training, "method", "pinn") == "lpinn"
    model = build_model(spec.kind, problem.input_dim, problem.output_dim, width=spec.width,
                        depth=spec.depth, activation=spec.activation,
                        fourier_scale=spec.fourier_scale, harmonics=spec.harmonics,
                        periods=problem.input_periods, per_output=lagrangian)
    state = read_checkpoint(folder, lambda path: load_checked(path, map_location="cpu"),
                            use="load_run", remedy="the run's network cannot be loaded from it")
    held = state if isinstance(state, dict) else {}
    missing = [key for key in ("model", "coefficients") if not isinstance(held.get(key), dict)]
    if missing:
        raise ValueError(f"{str(folder / CHECKPOINT)!r} does not hold the network its {CONFIG} "
                         f"describes (no state dict under {' or '.join(map(repr, missing))})")
    refuse_older_networks(held, problem, model, folder / CHECKPOINT)
    dtype = torch_dtype(case.dtype)
    target = _target_device(case.device, device)
    model.to(target, dtype)  # before loading: a float32 parameter would round the values
    problem.coefficients.to(target, dtype)
    try:
        model.load_state_dict(state["model"])
        problem.coefficients.load_state_dict(state["coefficients"])
    except (KeyError, RuntimeError) as error:
        lines = [line.strip() for line in str(error).strip().splitlines()]
        # PyTorch's first line says where, the next what: the first mismatch it names
        reason = " ".join(lines[:2]).rstrip(".")
        raise ValueError(f"{str(folder / CHECKPOINT)!r} does not hold the network its {CONFIG} "
                         f"describes ({reason})") from None
    step = state.get("step")
    return TrainedModel(PINNField(model, problem, spec.hard_constraints), dtype, target,
                        steps=step if isinstance(step, int) else None,
                        planned_steps=case.training.adam.steps + case.training.lbfgs.steps,
                        run_dir=folder.resolve())
