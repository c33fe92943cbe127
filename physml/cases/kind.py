"""The record a case kind registers: its schema, its runner and how the console shows it.

Adding a case kind is one module that defines a schema (a :class:`~.sections.CaseBase` with
``kind: Literal["name"]``) and a :class:`CaseKind`, plus one line in
:data:`physml.cases.registry.KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .sections import CaseBase

OnStep = Callable[[dict], None]


@dataclass(frozen=True)
class CaseKind:
    """A kind of case file.

    Attributes:
        name: the value of the case file's ``kind`` key.
        summary: one line for ``physml cases`` and the docs.
        schema: the pydantic model of a whole case file of this kind.
        run: ``run(case, folder, resume, on_step) -> summary``: runs the case in ``folder``
            (created, empty unless ``resume``), writes the run folder and returns the
            summary written to ``metrics.json``. ``on_step`` receives progress records with
            ``step`` and either ``loss`` (optimisation steps: the updates done, from 1) or
            ``t`` (time steps, counted from 1), plus whatever the kind measures along the way;
            a record without ``step`` reports progress outside the steps (an initial fit, a
            reference solve's ``status``, the last error a resumed run restored) and is shown,
            not logged as a step.
        describe: one line naming what a case will run (before it runs).
        headline: one line summarising a finished run's summary.
        total_steps: the progress bar's total for a case.
        checkpoint: the checkpoint's file name in the run folder.
        resumable: whether ``--resume`` continues a run of this kind from its checkpoint.
    """

    name: str
    summary: str
    schema: type[CaseBase]
    run: Callable[[CaseBase, Path, bool, OnStep | None], dict]
    describe: Callable[[CaseBase], str]
    headline: Callable[[dict], str]
    total_steps: Callable[[CaseBase], int]
    checkpoint: str
    resumable: bool = True
