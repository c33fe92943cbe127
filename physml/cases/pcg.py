"""Learned preconditioners for CG, ``kind: pcg``: generate (or reuse) a dataset of linear
systems, train a factor network on its train split, and measure every preconditioner on its
test split (:mod:`physml.preconditioners`, :mod:`physml.datasets.linear_systems`).

Run folder::

    config.yaml          the resolved case
    preconditioner.pt    the trained preconditioner (LearnedPreconditioner.load)
    metrics.json         per preconditioner and tolerance: mean iterations and median set-up,
                         solve and total seconds over the test systems (the median total is
                         not the sum of the other two medians); the history: the training
                         loss of every step
    residuals.png        residual against iteration (first test system) and against
                         wall-clock (that curve from the median set-up to the median set-up
                         plus the median solve time of metrics.json)

The dataset goes to ``<output.folder>/datasets/<systems>-<hash of its spec>`` and is reused by
every run with the same dataset section. A case::

    kind: pcg
    name: pcg_poisson
    dataset: {systems: poisson_grid, size: 32, samples: 40}
    model: {form: cholesky, width: 16, steps: 3}
    training: {loss: combined, steps: 600, lr: 3.0e-3, batch: 4}
    evaluation: {rtols: [1.0e-6, 1.0e-8], threshold: 1.0}
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import warp as wp
from pydantic import Field, model_validator

from ..datasets.generate import MANIFEST, generate
from ..datasets.linear_systems import (
    DomainOption,
    LinearSystemSpec,
    StepOption,
    family_options,
    generation_bytes,
    read_systems,
    system_bytes,
    system_size,
)
from ..datasets.spec import Seed as DatasetSeed
from ..solvers.linalg import PRECONDITIONERS, CsrOperator, cg, csr_from_scipy, prepare
from .kind import CaseKind, OnStep
from .run_folder import CONFIG, Section, save_figure, write_metrics, write_text
from .sections import (
    CaseBase,
    LearningRate,
    Seed,
    threshold_passed,
    threshold_verdict,
)

CHECKPOINT = "preconditioner.pt"

GRAPH_BYTES = (48, 16)
"""Bytes of a training system's graph (:func:`~physml.preconditioners.graph.system_graph`)
per stored entry of A and per unknown: its E = (nnz - n) / 2 strictly lower entries make 2 E
edges (int64 ends, three float32 features) and E + n entries of the lower pattern (int64 rows,
columns, positions and edges, float64 values), 96 E + 64 n bytes with the per-node features
and the scaled x and b."""


class DatasetSection(Section):
    """The systems (see :class:`~physml.datasets.linear_systems.LinearSystemSpec`)."""

    systems: Literal["poisson_grid", "heat_mesh", "wave_mesh", "poisson_tet"] = "poisson_grid"
    size: int = Field(32, gt=2, le=4096)
    samples: int = Field(40, gt=2)
    log_std: float = Field(1.0, ge=0, le=5)
    correlation: float = Field(0.1, gt=0, le=10)
    dt: StepOption = None
    domain: DomainOption = None
    ordering: Literal["rcm", "mesher"] | None = Field(
        None, description="numbering of a mesh family's unknowns: reverse Cuthill–McKee "
                          "(default) or the mesher's; none for poisson_grid")
    seed: DatasetSeed = 0

    @model_validator(mode="after")
    def _options_of_the_family(self) -> DatasetSection:
        """:func:`~physml.datasets.linear_systems.family_options`; its refusal says where
        ``systems`` is absent and its default applied."""
        try:
            family_options(self.systems, {"dt": self.dt, "domain": self.domain,
                                          "ordering": self.ordering})
        except ValueError as err:
            if "systems" in self.model_fields_set:
                raise
            raise ValueError(f"{err} (systems not given: read as {self.systems})") from None
        return self


class ModelSection(Section):
    form: Literal["cholesky", "sparse_inverse"] = "cholesky"
    width: int = Field(16, gt=0)
    steps: int = Field(3, ge=1, description="message-passing steps")


class TrainingSection(Section):
    loss: Literal["data", "frobenius", "combined"] = "combined"
    steps: int = Field(600, gt=0)
    lr: LearningRate = 3e-3
    batch: int = Field(4, gt=0)


class EvaluationSection(Section):
    rtols: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [1e-6, 1e-8], min_length=1)
    preconditioners: list[Literal["jacobi", "ic0", "fsai", "amg_sa", "amg_rs"]] = Field(
        default_factory=lambda: ["jacobi", "ic0", "fsai", "amg_sa", "amg_rs"])
    threshold: float | None = Field(
        None, gt=0, description="learned / IC(0) mean iterations at the tightest rtol to reach")

    @model_validator(mode="after")
    def _threshold_measured(self) -> EvaluationSection:
        if self.threshold is not None and "ic0" not in self.preconditioners:
            raise ValueError(f"threshold={self.threshold} compares with IC(0): "
                             "evaluation.preconditioners needs ic0")
        return self


class PCGCase(CaseBase):
    """A whole ``kind: pcg`` case file."""

    kind: Literal["pcg"]
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    seed: Seed = 0

    def memory_needs(self) -> dict[str, float]:
        """Bytes the run holds, about, by the keys that set them: the systems as read (every
        sample counted, the validation split's too, each its
        :func:`~physml.datasets.linear_systems.system_bytes`), the training systems' graphs
        (:data:`GRAPH_BYTES`) for the n unknowns and nnz entries of
        :func:`~physml.datasets.linear_systems.system_size`, and the generation of a shard of
        the dataset (:func:`~physml.datasets.linear_systems.generation_bytes`: its random
        fields, matrices and reference solves), a bound of the two phases' peaks::

            bytes = samples * system_bytes + train * (48 nnz + 16 n) + generation_bytes

        (400 poisson_grid systems of size 64: 430 MiB measured, 449 MiB estimated without
        the generation; 200 heat_mesh systems of size 32 on the disc: 274 MiB, 268 MiB).
        Refused beyond this machine's memory. On a GPU the graphs are the card's memory and
        are left out."""
        spec = dataset_spec(self)
        n, nnz = system_size(spec)
        train = spec.split_sizes()["train"] if self.device == "cpu" else 0
        per_entry, per_node = GRAPH_BYTES
        needed = (spec.samples * system_bytes(spec) + train * (nnz * per_entry + n * per_node)
                  + generation_bytes(spec))
        return {f"dataset.samples={spec.samples}, dataset.size={spec.size} ({spec.systems}: "
                f"about {n:,.0f} unknowns a system)": needed}


def dataset_spec(case: PCGCase) -> LinearSystemSpec:
    d = case.dataset
    return LinearSystemSpec(systems=d.systems, size=d.size, samples=d.samples, seed=d.seed,
                            log_std=d.log_std, correlation=d.correlation, dt=d.dt,
                            domain=d.domain, ordering=d.ordering,
                            splits={"train": 0.7, "valid": 0.1, "test": 0.2})


def ensure_dataset(case: PCGCase) -> Path:
    """The dataset folder of the case: reused when complete, else generated (resumed)."""
    spec = dataset_spec(case)
    digest = hashlib.sha256(spec.to_yaml().encode()).hexdigest()[:10]
    folder = Path(case.output.folder) / "datasets" / f"{spec.systems}-{digest}"
    if not (folder / MANIFEST).exists():
        generate(spec, folder, device=case.device, workers=0)
    return folder


def measure(factories: dict, systems, rtols: list[float], device: str) -> dict:
    """Per preconditioner (``name -> factory``): mean iterations and median set-up, solve and
    total seconds over ``systems`` per tolerance (one timing a system: the median keeps a
    moment of load on a shared machine out of the table), and the relative residuals of the
    first system at the tightest one (``history``). The preconditioners take turns on each
    system, in reversed order every other system, so that the machine's drift falls on all of
    them alike."""
    out = {name: {f"rtol={r:g}": {"iterations": [], "setup_s": [], "solve_s": []}
                  for r in rtols} for name in factories}
    history = {}
    for k, s in enumerate(systems):
        for name in list(factories) if k % 2 == 0 else list(factories)[::-1]:
            A = CsrOperator(csr_from_scipy(s.matrix, wp.float64, device))
            b = wp.array(s.b, dtype=wp.float64, device=device)
            wp.synchronize_device(A.device)  # (CUDA) the clock reads finished work only
            start = time.perf_counter()
            M = factories[name](A)
            prepare(A, b, preconditioner=M)  # the solve's vectors and recorded launches
            wp.synchronize_device(A.device)
            setup = time.perf_counter() - start
            for rtol in rtols:
                start = time.perf_counter()
                result = cg(A, b, preconditioner=M, rtol=rtol)
                wp.synchronize_device(A.device)
                solve = time.perf_counter() - start
                row = out[name][f"rtol={rtol:g}"]
                row["iterations"].append(result.iterations)
                row["setup_s"].append(setup)
                row["solve_s"].append(solve)
                if k == 0 and rtol == min(rtols):
                    history[name] = (result.residuals / result.residuals[0]).tolist()
    return {name: {"table": {key: {"iterations": float(np.mean(v["iterations"])),
                                   "setup_s": float(np.median(v["setup_s"])),
                                   "solve_s": float(np.median(v["solve_s"])),
                                   "total_s": float(np.median(np.add(v["setup_s"],
                                                                     v["solve_s"])))}
                             for key, v in out[name].items()},
                   "history": history[name]}
            for name in factories}


def run(case: PCGCase, folder: Path, resume: bool = False, on_step: OnStep | None = None) -> dict:
    """Generate or reuse the dataset, train, evaluate on the test split, write the folder.
    The summary's ``wall_s`` is the whole run's time (the dataset made or read, the training
    and the evaluation), ``train_seconds`` the training's."""
    started = time.perf_counter()
    # imported here: torch_geometric's import costs seconds that listing or validating cases
    # should not pay
    from ..preconditioners import FactorModel, LearnedPreconditioner, fit, training_system

    if resume:  # the CLI refuses it first (KIND.resumable)
        raise ValueError("kind 'pcg' cannot resume: start a new run (the dataset is reused)")
    write_text(folder / CONFIG, case.to_yaml())
    data = ensure_dataset(case)
    train = read_systems(data / "train")
    test = read_systems(data / "test")
    m, t = case.model, case.training
    torch.manual_seed(case.seed)
    device = torch.device(case.device)  # trained where it is evaluated
    model = FactorModel(m.form, width=m.width, steps=m.steps).to(device)
    systems = [training_system(s.matrix, s.x, s.b).to(device) for s in train]

    def report(step: int, loss: float) -> None:
        if on_step is not None:
            on_step({"step": step, "loss": loss})  # the updates done

    start = time.perf_counter()
    losses = fit(model, systems, loss=t.loss, steps=t.steps, learning_rate=t.lr,
                 batch_size=t.batch, seed=case.seed, on_step=report)
    train_seconds = time.perf_counter() - start
    learned = LearnedPreconditioner(model.eval())
    learned.save(folder / CHECKPOINT)
    rtols = sorted(case.evaluation.rtols, reverse=True)
    factories = {name: PRECONDITIONERS[name] for name in case.evaluation.preconditioners}
    factories[learned.name] = learned
    if on_step is not None:  # the count stays at the last step meanwhile
        on_step({"status": f"benchmarking {len(factories)} preconditioners on {len(test)} "
                           "test systems"})
    measure(factories, test[:1], rtols[:1], case.device)  # warm-up: kernels loaded first
    results = measure(factories, test, rtols, case.device)
    tight = f"rtol={min(rtols):g}"
    ratio = None
    if "ic0" in results:
        ratio = (results[learned.name]["table"][tight]["iterations"]
                 / results["ic0"]["table"][tight]["iterations"])
    threshold = case.evaluation.threshold
    summary = {
        "learned": learned.name,
        "test_systems": len(test),
        "unknowns": int(np.mean([s.matrix.shape[0] for s in test])),
        "iterations_vs_ic0": ratio,
        "train_seconds": train_seconds,
        "loss_first_10_mean": float(np.mean(losses[:10])),  # the mini-batches vary: means
        "loss_last_10_mean": float(np.mean(losses[-10:])),
        "table": {name: r["table"] for name, r in results.items()},
        "threshold": threshold,
        "passed": threshold_passed(ratio, threshold),
        "dataset": str(Path(data).resolve()),  # input paths are recorded absolute
    }
    if case.output.figures:
        plot_residuals(residual_histories(results, tight), folder / "residuals.png",
                       f"{case.name}: first test system, rtol {min(rtols):g}",
                       f"median set-up + median solve over {len(test)} test systems")
    summary["wall_s"] = time.perf_counter() - started
    write_metrics(folder, case.name, summary,  # last: the results are all there
                  [{"step": k, "loss": loss} for k, loss in enumerate(losses, start=1)])
    return summary


def residual_histories(results: dict, key: str) -> dict[str, dict]:
    """What :func:`plot_residuals` draws of :func:`measure`'s ``results``: each
    preconditioner's residual history with the median set-up and solve seconds of its table's
    row ``key`` (``"rtol=1e-08"``), the timings ``metrics.json`` gives, not the first
    system's own."""
    return {name: {"residuals": r["history"], "setup_s": r["table"][key]["setup_s"],
                   "solve_s": r["table"][key]["solve_s"]} for name, r in results.items()}


def plot_residuals(histories: dict[str, dict], path: Path, title: str,
                   clock: str = "") -> None:
    """Relative residual against iteration and against wall-clock in ms (set-up included;
    the solve time spread evenly over the iterations); ``clock`` says in the second panel's
    title which timing ``setup_s`` and ``solve_s`` are (:func:`run`: the medians of
    ``metrics.json``'s table, drawn with the first test system's residuals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, h in histories.items():
        r = np.asarray(h["residuals"])
        seconds = h["setup_s"] + h["solve_s"] * np.arange(r.size) / max(1, r.size - 1)
        axes[0].semilogy(r, label=name)
        axes[1].semilogy(1e3 * seconds, r, label=name)
    axes[0].set(xlabel="iteration", ylabel="||r|| / ||r0||", title=title)
    axes[1].set(xlabel="wall-clock incl. set-up [ms]", ylabel="||r|| / ||r0||",
                title="residual vs wall-clock" + (f"\n({clock})" if clock else ""))
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def describe(case: PCGCase) -> str:
    d, t = case.dataset, case.training
    return (f"{d.systems} size {d.size}, {d.samples} systems; learned {case.model.form} factor, "
            f"{t.steps} Adam steps ({t.loss} loss); against "
            f"{', '.join(case.evaluation.preconditioners)}")


def headline(result: dict) -> str:
    ratio = result["iterations_vs_ic0"]
    shown = "n/a" if ratio is None else f"{ratio:.2f}"
    return (f"{result['learned']}: {shown} x the iterations of IC(0) on "
            f"{result['test_systems']} test systems{threshold_verdict(result)}")


KIND = CaseKind(
    name="pcg",
    summary="learned preconditioners for CG (GNN factor) against Jacobi, IC(0), FSAI and AMG",
    schema=PCGCase,
    run=run,
    describe=describe,
    headline=headline,
    total_steps=lambda case: case.training.steps,
    checkpoint=CHECKPOINT,
    resumable=False,
)
