"""The case kinds, and reading a case file into the schema of its kind.

Every case file has a ``kind`` (``pinn`` when absent); :data:`KINDS` maps it to the
:class:`~.kind.CaseKind` that owns its schema and runner, and :data:`Case` is the pydantic
union of their schemas, discriminated by ``kind``. Adding a kind is one module and one line
here.

Reading a case: the file is validated as written, then every block under ``variants:`` as if
selected, then with the selected variant and the command line's dotted overrides
(``training.adam.steps=100``, values parsed as YAML; ``conditions.1.alpha=2`` indexes a list)
applied to the raw mapping, so every override is checked by the schema like the file itself.
An option a section's kind does not read (:class:`~.run_folder.KindSection`), or the case does
not read (:meth:`~.sections.CaseBase.unused_option`: ``evaluation.nt`` of kind ``teng``), is
refused where the file, a variant block or a command-line override sets it, and let be where a
variant or override switches the kind of a section (or the case's method) that set it.
"""

from __future__ import annotations

import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import Annotated, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError

from ..datasets.validation_messages import describe_error
from ..datasets.yaml_files import load_yaml, read_yaml_mapping
from ..train.observations import check_solve_steps
from . import equation, mesh_pde, moe, pcg, pinn, teng, thermomigration
from .kind import CaseKind, OnStep
from .run_folder import foreign_options, new_run_folder, sweep_temporaries
from .run_lock import holding
from .scalar_log import ScalarLog
from .sections import CaseBase

KINDS: dict[str, CaseKind] = {
    kind.name: kind for kind in (pinn.KIND, teng.KIND, thermomigration.KIND, mesh_pde.KIND,
                                 moe.KIND, equation.KIND, pcg.KIND)
}
DEFAULT_KIND = "pinn"

Case = Annotated[Union[tuple(kind.schema for kind in KINDS.values())],  # noqa: UP007
                 Field(discriminator="kind")]
_CASE = TypeAdapter(Case)


def case_kind(case: CaseBase) -> CaseKind:
    """The registered kind of a validated case."""
    return KINDS[case.kind]


def bundled_cases() -> dict[str, Path]:
    """The case files shipped with physml, by name (``burgers`` -> .../burgers.yaml)."""
    folder = resources.files("physml.case_files")
    return {Path(entry.name).stem: Path(str(entry)) for entry in sorted(
        folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".yaml")}


def resolve_case_path(case: str | Path) -> Path:
    """A case file's path: ``case`` itself if it is a file, else the bundled case of that
    name (with or without ``.yaml``)."""
    path = Path(case)
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise ValueError(f"{str(path)!r} is {what}; expected a case file (physml cases lists "
                         "them)")
    if path.is_file():
        return path
    bundled = bundled_cases()
    name = path.name.removesuffix(".yaml")
    if path.parent in (Path("."), Path("cases")) and name in bundled:
        return bundled[name]
    raise ValueError(f"case file {str(path)!r} does not exist, and no bundled case is named "
                     f"{name!r}; bundled: {', '.join(bundled)}")


def apply_overrides(raw: dict, overrides: list[str], alone: bool = False) -> dict:
    """Set ``a.b.c=value`` entries (values parsed as YAML) in a nested mapping; a whole
    number indexes a list (``conditions.0.value=3``), one the case has: an index into a list it
    lacks is refused, except ``alone`` (an override read on its own, into an empty mapping,
    where the index makes a section)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key.subkey=value")
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if (not alone and isinstance(node, dict) and part not in node
                    and parts[depth + 1].isdecimal()):
                whole = ".".join(parts[: depth + 1])  # an index into a list the case lacks
                raise ValueError(f"override {item!r}: {whole} is not set, so it has no entry "
                                 f"{parts[depth + 1]}; give the whole list ({whole}=[...])")
            node = _child(node, part, item)
        try:
            value = load_yaml(text)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "not a YAML value"
            raise ValueError(f"override {item!r}: the value {text!r} is not YAML ({problem})"
                             ) from None
        except RecursionError:
            raise ValueError(f"override {key}=...: its value's lists and mappings are nested too "
                             "deeply to read (a few hundred levels at most)") from None
        if isinstance(node, list):
            node[_list_index(node, parts[-1], item)] = value
        else:
            node[parts[-1]] = value
    return raw


def _child(node: dict | list, part: str, item: str) -> dict | list:
    """The section (or list) ``part`` of ``node``, a new section where a mapping has none."""
    if isinstance(node, list):
        child = node[_list_index(node, part, item)]
    else:
        child = node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise ValueError(f"override {item!r}: {part!r} is not a section")
    return child


def _list_index(node: list, part: str, item: str) -> int:
    if not (part.isdecimal() and int(part) < len(node)):
        raise ValueError(f"override {item!r}: {part!r} indexes a list of {len(node)} entries; "
                         f"give 0 to {len(node) - 1}")
    return int(part)


def _variant_overrides(variants: dict, name: str, where: str) -> list[str]:
    if not isinstance(variants, dict) or name not in variants:
        allowed = ", ".join(variants) if isinstance(variants, dict) and variants else (
            "none defined")
        raise ValueError(f"{where}: unknown variant {name!r}; allowed: {allowed}")
    block = variants[name]
    if not isinstance(block, dict):
        raise ValueError(f"{where}: variants.{name} must be a mapping of dotted keys to values")
    return [f"{key}={_flow(value)}" for key, value in block.items()]


def _flow(value: object) -> str:
    """``value`` as one line of YAML (a scalar without the document end ``...``)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


def validate_case(raw: dict, where: str, read_data: bool = True, recorded: bool = False,
                  strict_kinds: bool = True, final: bool = True) -> CaseBase:
    """Validate a raw case mapping against the schema of its ``kind``; one ValueError naming
    the first bad key (``where`` prefixes the message). Without ``read_data`` the data files a
    case names (a reference, observations) are neither read nor required; a ``recorded`` case
    (a run folder's ``config.yaml``, perhaps written before a rule) may hold keys its kinds do
    not read, which are then dropped rather than refused. ``strict_kinds`` refuses an option a
    section's kind, or the case, does not read (:class:`~.run_folder.KindSection`,
    :meth:`~.sections.CaseBase.unused_option`); ``final`` marks the case
    that will run, whose checks that cost more than the schema's (the reference on the
    evaluation grid) run once, not for every variant. A case without ``kind`` is read as
    :data:`DEFAULT_KIND`, which a message says where the case may be of another kind
    (:func:`_without_kind`). The final case's ``observations.solve`` is refused beyond the
    step cap (:func:`_refuse_long_observation_solve`)."""
    given = raw
    raw = {"kind": DEFAULT_KIND, **raw}
    if not isinstance(raw["kind"], str) or raw["kind"] not in KINDS:
        raise ValueError(f"{where}: kind {raw['kind']!r} is not a case kind; allowed: "
                         f"{', '.join(KINDS)}")
    try:
        case = _CASE.validate_python(raw, context={
            "read_data": read_data, "recorded": recorded, "final": final and not recorded,
            "strict_kinds": strict_kinds and not recorded})
    except ValidationError as err:
        message = describe_error(err, KINDS[raw["kind"]].schema, skip=1)
        if "kind" not in given:
            message = _without_kind(given, message)
        raise ValueError(f"{where}: {message}") from None
    if final and not recorded:
        _refuse_long_observation_solve(case, where)
    return case


def _refuse_long_observation_solve(case: CaseBase, where: str) -> None:
    """Refuse a case whose ``observations.solve`` (kind ``equation``) would take more time
    steps than ``physml solve`` runs by default
    (:func:`~physml.train.observations.check_solve_steps`)."""
    observations = getattr(case, "observations", None)
    if observations is None or observations.solve is None:
        return
    try:
        check_solve_steps(observations.solve, case.domain.time)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _without_kind(raw: dict, message: str) -> str:
    """``message`` about a case without ``kind`` (read as :data:`DEFAULT_KIND`): led by an
    unknown key that looks like a misspelt ``kind`` (``kindx``, ``Kind``); else, where the
    case holds keys that kind does not read (perhaps another kind's), followed by the kind it
    was read as."""
    kinds = ", ".join(KINDS)
    misspelt = difflib.get_close_matches("kind", [k for k in raw if isinstance(k, str)], n=1)
    if misspelt:
        return (f"kind: not given (unknown key {misspelt[0]!r} given; kind takes: {kinds}), so "
                f"the case is read as kind {DEFAULT_KIND}: {message}")
    known = KINDS[DEFAULT_KIND].schema.model_fields
    if "unknown key" in message or any(key not in known for key in raw):
        return f"{message} (no kind given: read as kind {DEFAULT_KIND}; kind takes: {kinds})"
    return message


def load_case(path: str | Path, overrides: list[str] | None = None, read_data: bool = True,
              recorded: bool = False) -> CaseBase:
    """Read, check and override a case file (a path or a bundled case's name); every variant
    is validated, the selected ones (``variant=NAME`` among ``overrides``) applied first, in
    the order given (a later variant's value of a key wins, as a later override's does).
    ``read_data`` and ``recorded``: see :func:`validate_case` (``read_data`` off for a
    finished run's network alone, ``recorded`` on for a run folder's ``config.yaml``).

    Examples:
        The bundled Burgers case with a shorter L-BFGS phase; a misspelt key is refused with
        the keys allowed there:

        >>> from physml.cases import load_case
        >>> case = load_case("burgers", ["training.lbfgs.steps=300"])
        >>> case.kind, case.name, case.training.lbfgs.steps
        ('pinn', 'burgers', 300)
        >>> load_case("burgers", ["training.lbfgs.step=300"])
        Traceback (most recent call last):
        ...
        ValueError: bundled case 'burgers': unknown key 'training.lbfgs.step'; allowed: steps, ...
    """
    given_as, path = path, resolve_case_path(path)
    where = f"case {path}" if path == Path(given_as) else f"bundled case {path.stem!r}"
    raw = read_yaml_mapping(path, "case")
    validate_case(copy.deepcopy(raw), where, read_data, recorded, final=False)
    variants = raw.get("variants") or {}
    for name in variants:
        block = _variant_overrides(variants, name, where)
        changed = validate_case(apply_overrides(copy.deepcopy(raw), block),
                                f"{where}, variant {name!r}", read_data, recorded,
                                strict_kinds=False, final=False)
        if not recorded:
            _refuse_foreign_overrides(changed, block, f"{where}, variant {name!r}")
    given = [o for o in overrides or [] if not o.startswith("variant=")]
    chosen = [o.partition("=")[2] for o in overrides or [] if o.startswith("variant=")]
    applied = [item for name in chosen for item in _variant_overrides(variants, name, where)]
    applied += given
    case = validate_case(apply_overrides(raw, applied), where, read_data, recorded,
                         strict_kinds=False)
    if not recorded:  # a variant's own options were checked against its case above
        _refuse_foreign_overrides(case, given, where)
    return case


def _refuse_foreign_overrides(case: CaseBase, overrides: list[str], where: str) -> None:
    """Refuse an override that sets an option its section's kind, or the case, does not read
    (in the case it makes: :meth:`~.sections.CaseBase.unused_option`): one that switches a
    section's kind lets the section's other options be."""
    for item in overrides:
        alone = apply_overrides({}, [item], alone=True)
        found = foreign_options(alone, case) or case.unused_option(alone)
        if found:
            raise ValueError(f"{where}: override {item!r}: {found}")


def run_case(case: CaseBase, folder: Path | None = None, resume: bool = False,
             on_step: OnStep | None = None) -> tuple[Path, dict]:
    """Run ``case`` in ``folder`` (a new run folder if None), resuming from its checkpoint if
    asked; returns the folder and the run's summary.

    Examples:
        The bundled L-shape Poisson case on its coarsest mesh alone, its run folder made
        under a temporary folder:

        >>> import tempfile
        >>> from physml.cases import load_case, run_case
        >>> with tempfile.TemporaryDirectory() as runs:
        ...     case = load_case("poisson_lshape",
        ...                      ["variant=quick", "refine=[]", f"output.folder={runs}"])
        ...     folder, summary = run_case(case)
        ...     print(summary["pde"], summary["rel_l2"] < 1e-2)
        ...     print(sorted(path.name for path in folder.iterdir()))
        poisson True
        ['config.yaml', 'fields.h5', 'metrics.json', 'solution.png', 'solution.vtu']
    """
    folder = new_run_folder(case.name, case.output) if folder is None else folder
    with holding(folder):  # one run at a time in a folder
        if resume:
            sweep_temporaries(folder)  # what a killed run's last save left
        if not case.output.tensorboard:
            return folder, case_kind(case).run(case, folder, resume, on_step)
        log = ScalarLog(folder, resume)

        def each_step(record: dict) -> None:
            log(record)
            if on_step is not None:
                on_step(record)

        try:
            return folder, case_kind(case).run(case, folder, resume, each_step)
        finally:
            log.close()
