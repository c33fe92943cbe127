"""The case registry: kinds, bundled cases, validation of every key and variant, and the run
folder's life cycle (checkpoint before configuration, nothing left behind by a refused run)."""

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from physml.cases.registry import (
    KINDS,
    bundled_cases,
    load_case,
    resolve_case_path,
    validate_case,
)

ROOT = Path(__file__).parents[1]
CASES_PACKAGE = ROOT / "physml" / "cases"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "physml.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **env})


def _relative_imports(module: Path) -> set[str]:
    """The sibling modules of ``physml.cases`` that ``module`` imports (at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found & {p.stem for p in CASES_PACKAGE.glob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes, or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_cycle_detection_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def _module_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Imports between the modules of ``package`` (folder ``root``, subpackages included):
    relative imports at any level and absolute ``physml...`` imports, by full module name.
    Package ``__init__`` modules only re-export, so they are left out, and so are the imports
    under ``if TYPE_CHECKING:``, which annotations read and no import runs."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((package, *parts))
        if parts[-1] != "__init__":
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        here = name.rpartition(".")[0]
        imports = set()
        tree = ast.parse(path.read_text())
        annotation_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                           and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                           for statement in block.body for node in ast.walk(statement)}
        for node in ast.walk(tree):
            if id(node) in annotation_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level else (
                    node.module or "")
                candidates = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            imports.update(c for c in candidates if c in modules and c != name)
        graph[name] = imports
    return graph


def test_the_module_graph_leaves_out_imports_for_annotations_only(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                   "    from .a import A\nfrom . import c\n")
    (tmp_path / "c.py").write_text("")
    assert _module_graph(tmp_path, "p") == {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": set()}


@pytest.mark.parametrize("root, package", [(CASES_PACKAGE, "physml.cases"),
                                           (ROOT / "solvers", "physml.solvers")])
def test_no_import_cycle_between_modules(root, package):
    graph = _module_graph(root, package)
    assert len(graph) >= 5
    assert _cycle(graph) is None, f"import cycle in {package}: {_cycle(graph)}"


def test_every_kind_is_registered_once_and_owns_its_schema():
    for name, kind in KINDS.items():
        assert kind.name == name
        assert kind.schema.model_fields["kind"].annotation.__args__ == (name,)
        assert kind.summary and "\n" not in kind.summary


def test_every_bundled_case_validates_and_every_variant_too():
    """... and so does the config.yaml each writes to its run folder (what --resume,
    load_run, predict and export read back)."""
    cases = bundled_cases()
    assert {"burgers", "teng_heat", "thermomigration_fe_c"} <= set(cases)
    for name, path in cases.items():
        case = load_case(name)
        assert case.name == name and case.kind in KINDS
        for variant in [None, *case.variants]:
            case = load_case(path, [] if variant is None else [f"variant={variant}"])
            again = validate_case(yaml.safe_load(case.to_yaml()), f"{name} config.yaml")
            assert again.same_run(case), (name, variant)


def test_keys_a_case_does_not_read_are_accepted_at_their_defaults():
    """As run folders written before those keys were refused hold them (--resume, load_run);
    any other value is refused."""
    heat = yaml.safe_load(load_case("heat_surface").to_yaml())
    heat["pde"]["source"] = {"kind": "constant", "amplitude": 0.0}
    validate_case(heat, "heat config.yaml")
    heat["pde"]["source"] = 5.0
    with pytest.raises(ValueError, match="pde.source does not apply to pde.name 'heat'"):
        validate_case(heat, "heat config.yaml")
    inverse = yaml.safe_load(load_case("burgers_inverse").to_yaml())
    inverse["coefficients"]["nu"].update(width=16, depth=2)
    validate_case(inverse, "inverse config.yaml")
    inverse["coefficients"]["nu"]["width"] = 8
    with pytest.raises(ValueError, match="coefficients.nu: width does not apply to kind"):
        validate_case(inverse, "inverse config.yaml")


@pytest.mark.parametrize("name, override, message", [
    ("convection", "pde.nu=0.5", "pde: nu does not apply to the PDE 'convection' (of the "
     "kind-specific options it takes: beta, nu_diffusion)"),
    ("burgers", "pde.beta=3.0", "pde: beta does not apply to the PDE 'burgers'"),
    ("teng_heat", "conditions.initial.wavenumber=2.0", "conditions.initial: wavenumber does "
     "not apply to kind 'cosh_sinh'"),
    ("poisson_lshape", "pde.exact.width=0.3", "pde.exact: width does not apply to kind "
     "'corner_singular' (of the kind-specific options it takes: centre)"),
    ("heat_surface", "pde.initial.wavevector=[1,2,3]", "pde.initial: wavevector does not apply "
     "to kind 'gaussian'"),
])
def test_a_parameter_of_another_pde_or_field_kind_is_refused(name, override, message):
    """Convection's diffusion is nu_diffusion: pde.nu was accepted and dropped, so a user
    asking for convection-diffusion silently trained pure convection."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_case(name, [override])


@pytest.mark.parametrize("name, override, message", [
    ("teng_heat", "evaluation.nt=7", "evaluation.nt does not apply to this case (kind 'teng')"),
    ("teng_heat", "model.hard_constraints=false", "model.hard_constraints does not apply to "
     "this case (kind 'teng')"),
    ("burgers_lpinn", "evaluation.times=[0.1]", "evaluation.times does not apply to this case "
     "(kind 'pinn')"),
    ("burgers", "model.periodic_embedding=false", "model.periodic_embedding does not apply to "
     "this case (kind 'pinn')"),
    ("convection_lpinn", "model.periodic_embedding=false", "model.periodic_embedding: false "
     "leaves a Lagrangian PINN without its periodicity in xi"),
    ("burgers_inverse", "model.periodic_embedding=false", "model.periodic_embedding does not "
     "apply to this case (kind 'equation')"),
])
def test_a_key_the_case_does_not_read_is_refused(tmp_path, name, override, message):
    """These were accepted and dropped from config.yaml, or (a Lagrangian PINN's embedding,
    always on) recorded as false for a run that used it; the file, a variant or an override
    that sets one is refused, as another PDE's parameter is, and its default is let be."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_case(name, [override])
    key, _, value = override.partition("=")
    raw = yaml.safe_load(bundled_cases()[name].read_text())
    raw["variants"] = {"bad": {key: yaml.safe_load(value)}}
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"variant 'bad': .*" + re.escape(message)):
        load_case(path)
    section, option = key.split(".")
    del raw["variants"]
    raw.setdefault(section, {})[option] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_case(path)
    default = {"evaluation.nt": "101", "evaluation.times": "[]"}.get(key, "true")
    load_case(name, [f"{key}={default}"])


EXACT = "imposed exactly by the output transform"


@pytest.mark.parametrize("name, override, message", [
    ("burgers", "training.balancer.weights.initial=100", f"training.balancer.weights.initial: "
     f"the condition 'initial' is {EXACT}, not a loss term; set model.hard_constraints: false "
     "to make it one, or drop the key"),
    ("burgers", "training.balancer.weights.residual_x=3", "training.balancer.weights.residual_x: "
     "not a loss term; the terms are residual"),
    ("burgers", "training.collocation.boundary_points=7", "training.collocation.boundary_points: "
     f"points for the conditions that are loss terms, and this case has none (initial, "
     f"boundary: {EXACT}); set model.hard_constraints: false to make them loss terms, or drop "
     "the key"),
    ("burgers_lpinn", "training.collocation.boundary_points=7", "this case has none; drop the "
     "key"),
])
def test_an_option_of_a_condition_imposed_exactly_is_refused(name, override, message):
    """With model.hard_constraints the output transform imposes Burgers' initial and wall
    conditions: a weight of 100 on 'initial' and boundary_points=7 were accepted and did
    nothing (metrics.json: weights {'residual': 1.0}), and a mistyped weight was told the
    terms are 'residual, initial, boundary'."""
    with pytest.raises(ValueError) as err:
        load_case(name, [override])
    assert str(err.value).endswith(message)
    load_case(name, ["training.collocation.boundary_points=256"])  # the default is let be


def test_options_of_conditions_that_are_loss_terms_are_taken_and_recorded_ones_load(tmp_path):
    """Without hard constraints the conditions are loss terms, weighed and sampled; a run
    folder's config.yaml written before the rule, with a weight on an exact condition, loads
    as it ran."""
    options = ["training.balancer.weights.initial=100", "training.collocation.boundary_points=7"]
    soft = load_case("burgers", [*options, "model.hard_constraints=false"])
    assert soft.training.balancer.weights == {"initial": 100.0}
    recorded = tmp_path / "config.yaml"
    recorded.write_text(soft.to_yaml().replace("hard_constraints: false", "hard_constraints: true"))
    assert load_case(recorded, recorded=True).model.hard_constraints
    with pytest.raises(ValueError, match="training.balancer.weights.initial: the condition"):
        load_case(recorded)


def test_a_bundled_case_by_name_from_any_folder(tmp_path, monkeypatch, cli_in_process):
    assert resolve_case_path("burgers") == bundled_cases()["burgers"]
    assert resolve_case_path("cases/burgers.yaml").samefile(bundled_cases()["burgers"])
    monkeypatch.chdir(tmp_path)
    result = cli_in_process("validate", "teng_heat", "variant=cpu")
    assert result.returncode == 0, result.stderr
    assert "teng_heat: valid (heat, TENG-heun dt=0.01" in result.stdout


def test_an_unknown_case_name_lists_the_bundled_ones(tmp_path, monkeypatch, cli_in_process):
    monkeypatch.chdir(tmp_path)
    result = cli_in_process("validate", "burger")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("no bundled case is named 'burger'; bundled: burgers, burgers_inverse, "
            "burgers_lpinn") in result.stderr


@pytest.mark.parametrize(
    "case, override, message",
    [
        ("burgers", "pde.nu=.nan", "pde.nu: Input should be a finite number"),
        ("convection", "pde.beta=.inf", "pde.beta: Input should be a finite number"),
        ("helmholtz", "pde.a1=.nan", "pde.a1: Input should be a finite number"),
        ("burgers", "conditions.initial.amplitude=-.inf",
         "conditions.initial.amplitude: Input should be a finite number"),
        ("thermomigration_fe_c", "heat_of_transport=.nan",
         "heat_of_transport: Input should be a finite number"),
        ("burgers", "evaluation.times=[2.0]", "evaluation.times [2.0] lie outside domain.t"),
        ("teng_heat", "training.adam.steps=5", "unknown key 'training.adam'"),
        ("burgers", "kind=teng", "unknown key 'training.collocation'; allowed: scheme, dt"),
        ("teng_heat", "model.kind=mlp", "kind 'teng' needs model.kind 'periodic'"),
        ("burgers", "kind=mesh", "kind 'mesh' is not a case kind; allowed: pinn, teng"),
        ("teng_heat", "variant=gpu", "unknown variant 'gpu'; allowed: cpu"),
        ("burgers", "kind=[1]", "kind [1] is not a case kind; allowed: pinn"),
        ("burgers", "name=../../elsewhere", "'../../elsewhere' cannot start a folder's name"),
        ("burgers", "name=..", "'..' cannot start a folder's name"),
        ("pcg_poisson", "evaluation.preconditioners=[jacobi]",
         "evaluation: threshold=1.0 compares with IC(0): evaluation.preconditioners needs ic0"),
        # keys a physics-informed case would not read, and problems whose reference would not
        # be their solution
        ("burgers", "conditions.initial.kind=cosh_sinh", "conditions.initial.kind 'cosh_sinh' "
         "is an initial state of kind teng; kind pinn takes 'sine'"),
        ("burgers", "domain.y=[0, 1]", "domain.y: burgers is posed in (x, t); remove domain.y"),
        ("helmholtz", "domain.t=[0, 1]", "domain.t: helmholtz is steady, posed in (x, y)"),
        ("helmholtz", "conditions.initial.amplitude=2", "conditions.initial: helmholtz is steady "
         "and has no initial condition"),
        ("convection", "domain.x=[0, 3]", "the convection problem is periodic: "
         "conditions.initial.wavenumber times the length of domain.x must be a nonzero "
         "multiple of 2 pi, got 0.477465 periods"),
        ("convection_lpinn", "domain.x=[0, 3]", "got 0.477465 periods"),
        ("burgers", "conditions.initial.wavenumber=1", "the Burgers problem has zero walls: "
         "u0 = A sin(k x) must vanish at both ends of domain.x"),
        # an index into a list the case does not set (it became a mapping {"0": 0.2}, refused
        # as "refine: Input should be a valid list")
        ("heat_surface", "refine.0=0.2", "override 'refine.0=0.2': refine is not set, so it "
         "has no entry 0; give the whole list (refine=[...])"),
    ],
)
def test_bad_values_are_refused_naming_the_key(case, override, message):
    with pytest.raises(ValueError) as err:
        load_case(case, [override])
    assert message in str(err.value)


def test_a_bad_variant_is_refused_even_when_not_selected(tmp_path):
    text = bundled_cases()["thermomigration_two_precipitates"].read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "\n  hot: {temperature.gradient: steep}\n" if "variants:" in text
                   else text + "variants:\n  hot: {temperature.gradient: steep}\n")
    with pytest.raises(ValueError) as err:
        load_case(bad)
    assert "variant 'hot'" in str(err.value) and "temperature.gradient" in str(err.value)


def test_several_variants_apply_in_the_order_given_before_the_overrides():
    # heat_surface's genus2 sets mesh.h 0.08, quick 0.2: the later one wins, as overrides do
    assert load_case("heat_surface", ["variant=genus2", "variant=quick"]).mesh.h == 0.2
    assert load_case("heat_surface", ["variant=quick", "variant=genus2"]).mesh.h == 0.08
    assert load_case("heat_surface", ["mesh.h=0.3", "variant=quick"]).mesh.h == 0.3


def test_the_resolved_config_carries_only_its_kinds_sections():
    teng = load_case("teng_heat", ["variant=cpu"])
    text = teng.to_yaml()
    assert "adam" not in text and "lbfgs" not in text and "variants" not in text
    assert "scheme: heun" in text and "dt: 0.01" in text
    for key in ("hard_constraints", "fourier_scale", "nt:", "a1", "beta", "wavenumber"):
        assert key not in text, key
    pinn = load_case("burgers").to_yaml()
    assert "scheme" not in pinn and "adam:" in pinn
    for key in ("beta", "a1", "nu_diffusion", "  y:", "harmonics", "fourier_scale", "times:"):
        assert key not in pinn, key
    assert "nu: 0.0031830988618379067" in pinn


def test_resume_accepts_the_same_case_and_refuses_another(tmp_path):
    """config.yaml leaves out keys that do not apply; resuming compares what does apply."""
    from physml.cases.registry import load_case as load

    case = load("burgers")
    recorded = yaml.safe_load(case.to_yaml())
    recorded["model"]["periodic_embedding"] = False  # unused but by convection (an older run's)
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(recorded))
    assert load(saved, recorded=True).same_run(case)
    assert not load(saved, recorded=True).same_run(load("burgers", ["pde.nu=0.01"]))


def test_listing_survives_a_closed_pipe():
    listing = subprocess.run(f"{sys.executable} -m physml.cli cases | head -1", shell=True,
                             capture_output=True, text=True)
    assert listing.stdout.startswith("burgers ")
    assert "Traceback" not in listing.stderr and "BrokenPipe" not in listing.stderr


def test_a_run_whose_log_reader_goes_away_stops_quietly(tmp_path):
    """rich exits 1 on a closed pipe; the command line answers it as for stdout: 141."""
    run = subprocess.Popen(
        [sys.executable, "-m", "physml.cli", "run", "burgers", f"output.folder={tmp_path}",
         "training.adam.steps=100000", "training.collocation.points=64", "evaluation.nx=16",
         "evaluation.nt=8", "output.figures=false", "--log-every", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for line in iter(run.stderr.readline, b""):  # the first progress line, then away
        if b"] burgers " in line:
            break
    run.stderr.close()
    assert run.wait(timeout=120) == 141


@pytest.mark.parametrize("case, overrides, message", [
    ("helmholtz", ["evaluation.nx=16", "evaluation.nt=9"], "the reference is zero (to 1e-12) "
     "at every point of the evaluation grid (its 16 x 9 points fall on its zeros)"),
    ("teng_allen_cahn", ["variant=cpu", "conditions.initial.amplitude=5"], "the spectral "
     "reference (ETDRK4, step 0.0025) is not finite by t = 0.1"),
])
def test_a_reference_that_measures_nothing_stops_the_run_by_name(tmp_path, case, overrides,
                                                                 message, cli_in_process):
    """A zero reference gave a relative error of 7.9e14, a NaN one 'relative L2 error nan'
    and exit status 0."""
    result = cli_in_process("run", case, f"output.folder={tmp_path}", "training.adam.steps=2",
                            "output.figures=false", *overrides) if case == "helmholtz" else \
        cli_in_process("run", case, f"output.folder={tmp_path}", "output.figures=false",
                       *overrides)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not any(tmp_path.iterdir())


def test_a_refused_run_leaves_no_run_folder(tmp_path, cli_in_process):
    result = cli_in_process("run", "burgers", f"output.folder={tmp_path}", "model.width=-1")
    assert result.returncode == 2 and "model.width" in result.stderr
    assert not any(tmp_path.iterdir())


def test_progress_lines_in_a_log(tmp_path, cli_in_process):
    """With output to a file, a plain progress line at a steady interval (here every step)."""
    result = cli_in_process("run", "burgers", f"output.folder={tmp_path}",
                            "training.adam.steps=4", "training.lbfgs.steps=0",
                            "evaluation.every=2", "evaluation.nx=16", "evaluation.nt=8",
                            "training.collocation.points=64", "output.figures=false",
                            "--log-every", "0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "] burgers " in line]
    assert len(lines) >= 4 and "4/4 loss" in lines[-1] and "rel L2" in lines[-1]
    assert sum("4/4 loss" in line for line in lines) == 1  # the last state printed once
    assert "relative L2 error" in result.stdout
    assert "(checkpoint.pt, config.yaml, metrics.json, predictions.h5)" in result.stdout


def test_a_stopped_progress_display_prints_no_line_after_its_owner_s_message():
    import io

    from rich.console import Console

    from physml.progress import RunProgress

    out = io.StringIO()
    with RunProgress("case", 10, Console(file=out), interval=1e9) as progress:
        progress.update(3, "loss 1")
        progress.stop()  # Ctrl-C: the interrupted message comes next, and is the last line
    assert out.getvalue() == ""
    with RunProgress("case", 10, Console(file=out), interval=1e9) as progress:
        progress.update(3, "loss 1")
    assert out.getvalue().count("3/10 loss 1") == 1
    out = io.StringIO()
    with RunProgress("case", 10, Console(file=out), interval=0):
        pass  # a finished run resumed: no step left, so no "0/10" line
    assert out.getvalue() == ""


def test_a_case_name_with_brackets_is_printed_as_written():
    """rich reads ``[bold]`` as markup: a name (or status) must be printed literally."""
    import io

    from rich.console import Console

    from physml.progress import RunProgress

    out = io.StringIO()
    with RunProgress("a[bold]b", 10, Console(file=out), interval=0) as progress:
        progress.update(3, "loss [1]")
    assert "a[bold]b 3/10 loss [1]" in out.getvalue()


def test_teng_reference_starts_from_the_initial_condition_at_a_later_start_time():
    """With ``domain.t = [0.5, 0.6]`` the reference at t = 0.5 is u0 itself (it was 13.6 %
    off when the spectral solver was asked for absolute times from t = 0)."""
    import torch

    from physml.cases.teng import Reference, initial_condition

    case = load_case("teng_heat", ["variant=cpu", "domain.t=[0.5, 0.6]", "evaluation.nx=16",
                                   "evaluation.times=[0.5, 0.6]"])
    reference = Reference(case, [0.5, 0.6], case.training.dt)
    u0 = initial_condition(case)(reference.points).reshape(reference.states[0].shape)
    assert torch.allclose(reference.states[0], u0, rtol=0, atol=1e-14)
    start_at_zero = Reference(load_case("teng_heat", ["variant=cpu", "evaluation.nx=16"]),
                              [0.0, 0.1], case.training.dt)
    assert torch.allclose(reference.states[1], start_at_zero.states[1], rtol=0, atol=1e-14)


def _interrupting_run(tmp_path, monkeypatch, checkpoint: bool, stop: str = "ctrl_c"):
    """Run the CLI in-process with a runner that writes (or not) its checkpoint and
    configuration, then is stopped by Ctrl-C or by a SIGTERM sent to this process."""
    from physml import cli
    from physml.cases import registry

    def interrupted(case, folder, resume=False, on_step=None):
        if checkpoint:
            (folder / "checkpoint.pt").write_bytes(b"")
            (folder / "config.yaml").write_text(case.to_yaml())
        if stop == "ctrl_c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises first
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(registry, "run_case", interrupted)
    return cli.main(["run", "burgers", f"output.folder={tmp_path}", "--quiet"])


STOPS = [("ctrl_c", 130), ("sigterm", 143)]


@pytest.mark.parametrize("stop, status", STOPS)
def test_ctrl_c_before_the_first_checkpoint_removes_the_folder(tmp_path, monkeypatch, capsys,
                                                               stop, status):
    assert _interrupting_run(tmp_path, monkeypatch, checkpoint=False, stop=stop) == status
    assert "nothing to resume" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


@pytest.mark.parametrize("stop, status", STOPS)
def test_ctrl_c_after_a_checkpoint_prints_the_resume_command(tmp_path, monkeypatch, capsys,
                                                             stop, status):
    assert _interrupting_run(tmp_path, monkeypatch, checkpoint=True, stop=stop) == status
    (folder,) = tmp_path.iterdir()
    assert f"physml run burgers output.folder={tmp_path} --resume {folder}" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("platform, printed", [
    ("win32", r'physml run cases\burgers.yaml "output.folder=C:\my runs" --resume '
              r'"C:\Users\me\my runs\burgers-1"'),
    ("linux", r"physml run 'cases\burgers.yaml' 'output.folder=C:\my runs' --resume "
              r"'C:\Users\me\my runs\burgers-1'"),
])
def test_the_resume_command_is_quoted_for_the_shell_of_the_system(monkeypatch, platform,
                                                                   printed):
    """cmd.exe keeps single quotes as part of an argument: Windows gets double quotes."""
    import argparse

    from physml import cli_cases

    monkeypatch.setattr(sys, "platform", platform)
    args = argparse.Namespace(case=Path(r"cases\burgers.yaml"),
                              overrides=[r"output.folder=C:\my runs"])
    assert cli_cases._resume_command(args, Path(r"C:\Users\me\my runs\burgers-1")) == printed


def test_a_run_that_an_option_rule_added_since_then_refuses_still_resumes(tmp_path,
                                                                          monkeypatch, capsys):
    """A Burgers run with a weight on its exact initial condition (accepted before such weights
    were refused) could not resume: the overrides it ran with were refused, and without them
    the run's configuration differed."""
    from physml import cli
    from physml.cases import registry

    overrides = ["training.balancer.weights.initial=10"]
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(load_case("burgers", overrides, recorded=True).to_yaml())
    (folder / "checkpoint.pt").write_bytes(b"")
    resumed = []

    def interrupted(case, folder, resume=False, on_step=None):
        resumed.append(case.training.balancer.weights)
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "run_case", interrupted)
    assert cli.main(["run", "burgers", *overrides, "--resume", str(folder), "--quiet"]) == 130
    assert resumed == [{"initial": 10.0}]
    assert cli.main(["run", "burgers", *overrides, "--quiet"]) == 2  # a new run: refused
    assert "imposed exactly by the output transform" in capsys.readouterr().err
    # a run this version takes as it is: an option that does not apply is refused on resume
    (folder / "config.yaml").write_text(load_case("burgers").to_yaml())
    assert cli.main(["run", "burgers", "training.balancer.every=3", "--resume", str(folder),
                     "--quiet"]) == 2
    assert "every does not apply to kind 'fixed'" in capsys.readouterr().err


def test_a_folder_given_with_resume_is_never_removed(tmp_path, monkeypatch, capsys):
    """A finished run folder with a configuration but no checkpoint (a steady mesh solve keeps
    none) is refused by --resume; one with both, interrupted at once, stays as it was."""
    from physml import cli
    from physml.cases import registry

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(load_case("burgers").to_yaml())
    (folder / "metrics.json").write_text("{}")
    assert cli.main(["run", "burgers", "--resume", str(folder), "--quiet"]) == 2
    assert "has no checkpoint.pt (its run keeps none); nothing to resume" in (
        capsys.readouterr().err)

    def interrupted(case, folder, resume=False, on_step=None):
        (folder / "checkpoint.pt").unlink()  # whatever the run did, the folder is the user's
        raise KeyboardInterrupt

    (folder / "checkpoint.pt").write_bytes(b"")
    monkeypatch.setattr(registry, "run_case", interrupted)
    assert cli.main(["run", "burgers", "--resume", str(folder), "--quiet"]) == 130
    assert "removed" not in capsys.readouterr().err
    assert (folder / "metrics.json").is_file()


def test_a_kind_that_cannot_resume_is_refused_by_resume_and_told_on_ctrl_c(
        tmp_path, monkeypatch, capsys):
    from physml import cli
    from physml.cases import registry

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(load_case("pcg_poisson", ["variant=tiny"]).to_yaml())
    (folder / "preconditioner.pt").write_bytes(b"")
    # with the run's settings or others (the mismatch's cure, matching them, would not help)
    for given in (["pcg_poisson", "variant=tiny"], ["pcg_poisson"], ["burgers"]):
        assert cli.main(["run", *given, "--resume", str(folder)]) == 2
        err = capsys.readouterr().err
        assert "kind 'pcg' cannot resume: start a new run" in err and "differs" not in err

    for trained in (True, False):
        def interrupted(case, folder, resume=False, on_step=None, trained=trained):
            (folder / "config.yaml").write_text(case.to_yaml())
            if trained:
                (folder / "preconditioner.pt").write_bytes(b"")
            raise KeyboardInterrupt

        monkeypatch.setattr(registry, "run_case", interrupted)
        runs = tmp_path / f"runs{trained}"
        assert cli.main(["run", "pcg_poisson", "variant=tiny", f"output.folder={runs}",
                         "--quiet"]) == 130
        err = capsys.readouterr().err
        if trained:  # the trained preconditioner is kept; no resume command offered
            assert "cannot resume: start a new run" in err and "--resume" not in err
            assert len(list(runs.iterdir())) == 1
        else:
            assert "nothing to resume (removed" in err and not any(runs.iterdir())


def test_an_output_folder_that_cannot_hold_runs_is_named(tmp_path, capsys):
    from physml import cli

    afile = tmp_path / "file"
    afile.write_text("")
    assert cli.main(["run", "burgers", f"output.folder={afile}", "--quiet"]) == 2
    assert f"output.folder={str(afile)!r}: cannot make the run folder there" in (
        capsys.readouterr().err)


def test_runs_started_in_the_same_second_take_their_own_folders(tmp_path, monkeypatch):
    """A run that lost the race between the exists check and mkdir reported output.folder
    as unusable; mkdir itself now decides."""
    from physml.cases import run_folder
    from physml.cases.run_folder import OutputSpec, new_run_folder

    monkeypatch.setattr(run_folder.time, "strftime", lambda _: "20261204-120000")
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self.parent == tmp_path
                        else real_exists(self))  # every racer sees a free name
    made = [new_run_folder("x", OutputSpec(folder=str(tmp_path))) for _ in range(3)]
    assert [p.name for p in made] == ["x-20261204-120000", "x-20261204-120000-1",
                                      "x-20261204-120000-2"]


def test_a_dangling_link_as_the_output_folder_is_named(tmp_path):
    """mkdir of the link raised FileExistsError, which the same-second rule took for a
    taken name: the run tried suffixes forever."""
    from physml.cases.run_folder import OutputSpec, new_run_folder

    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere" / "place")
    for folder in (link, link / "sub"):
        with pytest.raises(ValueError, match=f"output.folder={str(folder)!r}: cannot make the "
                                             "run folder there \\(a file or a link to nothing"):
            new_run_folder("x", OutputSpec(folder=str(folder)))


def test_an_unwritable_warp_cache_is_named(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("")
    result = _cli("solve", "heat1d", "--nx", "16", "--out", str(tmp_path / "u.h5"),
                  WARP_CACHE_PATH=str(afile / "cache"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Warp cannot set up its kernel cache" in result.stderr
    assert "set WARP_CACHE_PATH to a writable folder" in result.stderr


def test_a_run_that_fails_leaves_no_empty_run_folder(tmp_path, monkeypatch):
    from physml import cli
    from physml.cases import registry

    def failing(case, folder, resume=False, on_step=None):
        raise RuntimeError("solver failed")

    monkeypatch.setattr(registry, "run_case", failing)
    with pytest.raises(RuntimeError, match="^solver failed$"):
        cli.main(["run", "burgers", f"output.folder={tmp_path}", "--quiet"])
    assert not any(tmp_path.iterdir())


def test_a_case_name_that_cannot_start_a_folder_on_windows_is_refused_everywhere():
    """A case is portable: a name whose run folder Windows cannot make (a character it
    refuses, a control character, a device name before a dot) fails validation on every
    system, not the run on Windows; a device name alone starts ``nul-<time>``, a folder."""
    refused = ("poisson:fine", "a<b", "a>b", 'a"b', "a|b", "a?b", "a*b", "a\\b", "a\tb",
               "a\x1fb", "nul.v2", "Com1.x", "lpt9.tar.gz", "com\u00b9.a")
    for name in refused:
        with pytest.raises(ValueError, match=re.escape(
                f"name: {name!r} cannot start a folder's name on every system: no control "
                "character or any of < > : \" / \\ | ? *, not '.' or '..', and no device name "
                "of Windows (CON, PRN, AUX, NUL, COM0-COM9, LPT0-LPT9) before a '.'")):
            load_case("burgers", [f"name={json.dumps(name)}"])
    for name in ("nul", "CON", "aux-v2", "console.v2", "com10.x", "résultats", "a.b"):
        assert load_case("burgers", [f"name={json.dumps(name)}"]).name == name


def test_a_utf8_case_file_keeps_its_accents_under_a_locale_that_is_not_utf8(
        tmp_path, monkeypatch, capsys):
    """Case files, and what a run writes, are UTF-8 whatever the locale's encoding (cp1252 on
    Windows, where Python's UTF-8 mode is off: a text file opened without an encoding)."""
    import io

    from physml import cli
    from physml.datasets.atomic_files import write_text

    case = tmp_path / "accents.yaml"
    case.write_bytes((ROOT / "cases" / "burgers.yaml").read_bytes()
                     + "output: {folder: résultats}\n".encode())
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "cp1252")
    assert Path(case).read_text().endswith("rÃ©sultats}\n")  # the locale's reading
    assert cli.main(["validate", str(case)]) == 0
    assert capsys.readouterr().out.startswith(f"{case}: valid (")
    assert str(load_case(case).output.folder) == "résultats"
    write_text(tmp_path / "stopped.txt", "arrêté")
    assert (tmp_path / "stopped.txt").read_bytes() == "arrêté".encode()


def test_a_run_folder_is_held_by_one_run_at_a_time(tmp_path):
    """A second run in a folder (a --resume started while the first runs) is refused, naming
    the process that holds it; the hold leaves nothing behind."""
    from physml.cases.run_lock import LOCK, holding

    with holding(tmp_path):
        with pytest.raises(ValueError, match=re.escape(
                f"{str(tmp_path)!r} is in use by another physml run (process {os.getpid()}); "
                "wait for it to end, or stop it, then resume")):
            with holding(tmp_path):
                pass
    assert not (tmp_path / LOCK).exists()
    with holding(tmp_path):  # free again
        pass


def test_resume_while_the_run_still_runs_is_refused_and_leaves_its_folder(tmp_path, capsys):
    from physml import cli
    from physml.cases.run_lock import holding

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(load_case("burgers").to_yaml())
    (folder / "checkpoint.pt").write_bytes(b"")
    with holding(folder):
        assert cli.main(["run", "burgers", "--resume", str(folder), "--quiet"]) == 2
        assert "is in use by another physml run" in capsys.readouterr().err
        assert cli.main(["run", "burgers", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err  # no "resuming ... from its checkpoint" before the refusal
    assert "is in use by another physml run" in err and "resuming" not in err
    assert {p.name for p in folder.iterdir()} == {"config.yaml", "checkpoint.pt"}


def test_a_folder_that_cannot_be_written_is_named_before_the_run(tmp_path, monkeypatch):
    from physml.cases import run_lock

    for error, reason in ((PermissionError(13, "Permission denied"), "permission denied"),
                          (OSError(30, "Read-only file system"), "read-only file system")):
        def denied(path, mode, error=error, **_):
            raise error

        monkeypatch.setattr(run_lock, "open", denied, raising=False)
        with pytest.raises(ValueError, match=re.escape(
                f"{str(tmp_path)!r} cannot be written ({reason})")):
            with run_lock.holding(tmp_path):
                pytest.fail("the run started")


def test_a_file_system_without_flock_runs_unheld_and_a_missing_folder_is_left_to_the_run(
        tmp_path, monkeypatch):
    import fcntl

    from physml.cases import run_lock

    def unsupported(handle, operation):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", unsupported)
    with run_lock.holding(tmp_path):
        assert not (tmp_path / run_lock.LOCK).exists()
    monkeypatch.undo()
    with run_lock.holding(tmp_path / "absent"):  # the run says what is missing
        pass
    assert not (tmp_path / "absent").exists()


def test_a_lock_file_removed_by_its_holder_after_the_open_is_opened_again(tmp_path, monkeypatch):
    """The holder removes the file while a second process has it open: the second must lock
    the file the path names, not the removed one, or two runs would hold the folder."""
    import fcntl

    from physml.cases import run_lock

    real, calls = fcntl.flock, []

    def flock_after_the_holder_left(handle, operation):
        calls.append(handle)
        if len(calls) == 1:  # the holder ends between this open and this lock
            (tmp_path / run_lock.LOCK).unlink()
        return real(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_left)
    with run_lock.holding(tmp_path):
        assert len(calls) == 2  # locked the second time, on the file the path names
        assert (tmp_path / run_lock.LOCK).read_text() == str(os.getpid())
    assert not (tmp_path / run_lock.LOCK).exists()


class _FakeMsvcrt:
    """Windows' ``msvcrt.locking`` on Linux: byte ranges of a file locked per open file, a
    range locked through another open file refused with EACCES, as Windows does."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = range(5)

    def __init__(self):
        self.calls, self.held = [], {}

    def locking(self, fd, mode, nbytes):
        position = os.lseek(fd, 0, os.SEEK_CUR)
        self.calls.append((mode, position, nbytes))
        key = (os.fstat(fd).st_ino, position, nbytes)
        if mode == self.LK_UNLCK:
            if self.held.pop(key, None) != fd:
                raise OSError(13, "Permission denied")
        elif key in self.held:
            raise OSError(13, "Permission denied")
        else:
            self.held[key] = fd


def test_a_run_folder_is_held_with_msvcrt_where_fcntl_is_missing(tmp_path, monkeypatch):
    """Windows: the folder is held by one locked byte past the process id (which a refused
    run reads), let go and removed when the run ends."""
    from physml.cases import run_lock

    fake = _FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    with run_lock.holding(tmp_path):
        assert run_lock.held_by_a_run(tmp_path)
        with pytest.raises(ValueError, match=re.escape(
                f"{str(tmp_path)!r} is in use by another physml run (process {os.getpid()})")):
            with run_lock.holding(tmp_path):
                pytest.fail("a second run was admitted")
        assert (tmp_path / run_lock.LOCK).read_text() == str(os.getpid())
        assert len(fake.held) == 1
    assert not fake.held and not (tmp_path / run_lock.LOCK).exists()
    assert fake.calls[0] == (fake.LK_NBLCK, run_lock._Locking.BYTE, 1)
    assert fake.calls[-1] == (fake.LK_UNLCK, run_lock._Locking.BYTE, 1)
    assert not run_lock.held_by_a_run(tmp_path)
    with run_lock.holding(tmp_path):  # free again
        pass


def test_a_system_without_file_locks_says_that_runs_are_not_held(tmp_path, monkeypatch):
    from physml.cases import run_lock

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", None)
    run_lock._warn_unheld.cache_clear()
    with pytest.warns(RuntimeWarning, match="neither fcntl nor msvcrt file locks: a run folder "
                                            "is not held"):
        with run_lock.holding(tmp_path):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        with run_lock.holding(tmp_path):
            assert not run_lock.held_by_a_run(tmp_path)
    run_lock._warn_unheld.cache_clear()


def test_a_resume_sweeps_what_a_killed_save_left(tmp_path, monkeypatch):
    from physml.cases import registry

    (tmp_path / "states").mkdir()
    left = [tmp_path / ".checkpoint.pt.tmp-4242.pt", tmp_path / "states" / ".000003.npy.tmp-7.npy"]
    for path in left:
        path.write_bytes(b"cut short")
    kept = tmp_path / ".hidden_by_the_user"
    kept.write_text("mine")

    class Kind:
        @staticmethod
        def run(case, folder, resume, on_step):
            return {"left": [p for p in left if p.exists()]}

    monkeypatch.setattr(registry, "case_kind", lambda case: Kind)
    case = load_case("burgers", ["output.tensorboard=false"])
    assert registry.run_case(case, tmp_path, resume=True)[1] == {"left": []}
    assert kept.read_text() == "mine"


@pytest.mark.parametrize("case, override, message", [
    ("poisson_lshape", "pde.source={knid: gaussian, width: 0.1}",
     "pde.source.kind: Field required (unknown key 'knid' given"),
    ("shape_poisson", "boundary.0.value={a: 0}", "boundary.0.value.kind: Field required"),
])
def test_a_field_without_its_kind_beside_an_unknown_key_is_refused_in_one_line(
        cli_in_process, case, override, message):
    result = cli_in_process("validate", case, override)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_case_nested_too_deeply_to_read_is_refused_naming_the_file(tmp_path, cli_in_process):
    case = tmp_path / "deep.yaml"
    case.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    result = cli_in_process("validate", str(case))
    assert result.returncode == 2
    assert f"case {case}: its lists and mappings are nested too deeply to read" in result.stderr
    deep = cli_in_process("validate", "burgers", "pde.nu=" + "[" * 3000 + "1" + "]" * 3000)
    assert deep.returncode == 2 and "Traceback" not in deep.stderr
    assert "override pde.nu=...: its value's lists and mappings are nested too deeply" \
        in deep.stderr


@pytest.mark.parametrize("override, message", [
    ("evaluation.nx=1000000000000", "evaluation.nx=1000000000000, evaluation.nt=101 needs "
     "about"),
    ("evaluation.nt=1000000000000", "evaluation.nx=256, evaluation.nt=1000000000000 needs"),
    ("training.collocation.points=1000000000000",
     "training.collocation.points=1000000000000, boundary_points=256 with model.width=32"),
    ("training.collocation.boundary_points=1000000000000", "boundary_points=1000000000000"),
    ("model.width=1000000000000", "model.width=1000000000000, model.depth=5 (the network) "
     "needs about"),
    ("model.depth=1000000000000", "model.depth=1000000000000 (the network) needs about"),
    ("pde.nu=1e12", "pde.nu=1e+12 on domain.x=[-1.0, 1.0], domain.t=[0.0, 1.0] with "
     "evaluation.nx=256: the Burgers reference solve needs about 3.4e+19 time steps, more than "
     "1e+07"),
    ("domain.t=[0, 1e12]", "reference solve needs about 1.1e+17 time steps"),
])
def test_a_pinn_case_run_could_not_hold_or_finish_is_refused_naming_the_keys(override,
                                                                             message):
    with pytest.raises(ValueError) as err:
        load_case("burgers", [override])
    assert message in str(err.value)
    assert "machine's memory" in str(err.value) or "use a smaller pde.nu" in str(err.value)


@pytest.mark.parametrize("case", ["burgers", "pcg_poisson", "moe_diffusion_sorption"])
@pytest.mark.parametrize("seed, valid", [(2**64 - 1, True), (2**64, False)])
def test_a_seed_is_a_64_bit_word(case, seed, valid):
    """pcg and moe cases took any seed at validation, and a run stopped on 'Overflow when
    unpacking long long' without naming the key."""
    if valid:
        assert load_case(case, [f"seed={seed}"]).seed == seed
        return
    with pytest.raises(ValueError, match="seed: Input should be less than or equal to "
                                         "18446744073709551615"):
        load_case(case, [f"seed={seed}"])


def test_a_pcg_dataset_seed_is_a_dataset_s_seed():
    with pytest.raises(ValueError, match="dataset.seed: Input should be less than or equal "
                                         "to 9223372036854775807"):
        load_case("pcg_poisson", [f"dataset.seed={2**63}"])


@pytest.mark.parametrize("case, override, message", [
    ("poisson_lshape_pinn", "domain.geometry.vertices.4.0=true",
     "domain.geometry.vertices: [[-1, -1], [1, -1], [1, 0], [0, 0], [True, 1], [-1, 1]] is a "
     "boolean; a number is expected"),
    ("burgers", "model.hard_constraints=1",
     "model.hard_constraints: 1 is not a boolean; true or false is expected"),
    ("convection", "model.periodic_embedding=1", "model.periodic_embedding: 1 is not a boolean"),
    ("burgers", "model.hard_constraints='yes'", "model.hard_constraints: 'yes' is not a boolean"),
    ("heat_disk", "coefficients.nu.trainable=1", "coefficients.nu.trainable: 1 is not a boolean"),
    ("heat_disk", "coefficients.nu.positive=0", "coefficients.nu.positive: 0 is not a boolean"),
])
def test_booleans_and_numbers_are_not_taken_for_each_other(case, override, message):
    with pytest.raises(ValueError) as err:
        load_case(case, [override])
    assert message in str(err.value)


def test_a_message_after_a_dropped_key_says_which_default_applied():
    raw = yaml.safe_load(bundled_cases()["heat_surface"].read_text())
    del raw["kind"]
    with pytest.raises(ValueError, match=r"unknown key 'pde.kappa'; allowed: name, nu \(no "
                                         r"kind given: read as kind pinn; kind takes: pinn, "):
        validate_case(raw, "case heat_surface")
    raw = yaml.safe_load(bundled_cases()["pcg_heat_mesh"].read_text())
    del raw["dataset"]["systems"]
    with pytest.raises(ValueError, match=r"poisson_grid takes none \(systems not given: read "
                                         r"as poisson_grid\)"):
        validate_case(raw, "case pcg_heat_mesh")


def test_metrics_record_the_versions_the_numbers_depend_on(tmp_path):
    """A run's records named physml's version only: the libraries' versions, on which the
    numbers depend too, were recorded nowhere."""
    import json

    import numpy
    import torch
    import warp

    from physml import __version__
    from physml.cases.run_folder import write_metrics

    write_metrics(tmp_path, "case", {"rel_l2": 0.1}, [{"step": 0}])
    environment = json.loads((tmp_path / "metrics.json").read_text())["environment"]
    assert environment["physml"] == __version__ and environment["numpy"] == numpy.__version__
    assert environment["torch"] == torch.__version__.split("+")[0] or \
        environment["torch"] == torch.__version__
    assert environment["warp-lang"] == warp.config.version


@pytest.mark.parametrize("name, overrides, key", [
    ("teng_heat", ["training.initial_points=100000000"], "training.initial_points=100000000"),
    ("teng_heat", ["evaluation.nx=1000000"], "evaluation.nx=1000000"),
    ("moe_diffusion_sorption", ["problem.train=100000000"], "problem.train=100000000"),
    ("moe_diffusion_sorption", ["model.width=4096"], "model.width=4096"),
    ("thermomigration_spinodal_pfhub1", ["grid.shape=[1048576,1048576]"],
     "grid.shape=[1048576, 1048576]"),
])
def test_kinds_refuse_a_case_beyond_memory(name, overrides, key):
    """TENG, MoE and thermomigration cases too large for this machine's memory are refused
    at validation, naming the keys that set the size."""
    with pytest.raises(ValueError, match=re.escape(key) + ".*more than this machine's memory"):
        load_case(name, overrides)


def test_a_moe_case_on_a_gpu_leaves_the_fno_to_the_card():
    """On a GPU the FNO's weights and training step are the card's memory, not the host's:
    only the data, made on the host, are checked against this machine's memory."""
    case = load_case("moe_diffusion_sorption", ["model.width=4096", "device=cuda"])
    assert [key.endswith("(the data)") for key in case.memory_needs()] == [True]
    with pytest.raises(ValueError, match="problem.train=100000000.*more than this machine's"):
        load_case("moe_diffusion_sorption", ["problem.train=100000000", "device=cuda"])


def test_memory_is_checked_on_the_case_that_runs_not_on_the_file_or_its_variants(monkeypatch):
    """On a 16 GiB machine the paper-scale Navier-Stokes MoE file (21.5 GiB on the CPU) was
    refused even with variant=cpu (0.03 GiB): the file as written and every variant were
    checked against memory. The case that runs is checked, with its variant and overrides."""
    from physml.datasets import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 16 * 2**30)
    assert load_case("moe_navier_stokes", ["variant=cpu"]).problem.nx < 64
    with pytest.raises(ValueError, match="a training step's FNO.*more than this machine's"):
        load_case("moe_navier_stokes")
    load_case("teng_heat", ["variant=cpu"])


def test_the_moe_benchmark_solves_as_a_case_does(monkeypatch):
    """benchmarks/moe.py capped the inner solves at 8 iterations while a case's default is
    12: it takes the case's tolerance and cap."""
    import importlib.util

    from physml.cases.moe import ConstraintSpec

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmark_moe", ROOT / "benchmarks" / "moe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    case = ConstraintSpec()
    assert (module.SOLVER.tol, module.SOLVER.max_iter) == (case.tol, case.max_iter)


def test_a_moe_case_whose_least_squares_systems_exceed_memory_is_refused(monkeypatch):
    """The hard head's inner solve holds fields of the grid per forward product of its
    Jacobian, for the samples solved together (the training batch: the test samples are
    evaluated a batch at a time): a case whose systems alone exceed this machine's memory is
    refused naming the keys that set them; a soft head solves none, and on a GPU the systems
    are the card's memory."""
    from physml.datasets import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 4 * 2**30)
    cpu = ["variant=cpu", "problem.nx=512", "model.basis=128"]
    hard = [*cpu, "constraint.experts=32"]  # 5.6 GiB
    with pytest.raises(ValueError, match=re.escape("model.basis=128, constraint.experts=32")
                       + r".*training.batch=4 .*least-squares systems\) needs .*more than "
                       "this machine's memory"):
        load_case("moe_diffusion_sorption", hard)
    load_case("moe_diffusion_sorption", [*cpu, "constraint.method=soft"])
    load_case("moe_diffusion_sorption", [*hard, "device=cuda"])
    load_case("moe_diffusion_sorption", [*hard, "training.batch=1"])  # 1.4 GiB


POSIX_LINKS = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need rights "
                                 "on Windows")


@POSIX_LINKS
@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_left(tmp_path, capsys, link):
    """A run folder from someone else with ``.physml-run.lock`` a link to a file of the
    user's: resuming it wrote the process id over that file."""
    from physml import cli
    from physml.cases.run_lock import LOCK

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(load_case("burgers").to_yaml())
    (folder / "checkpoint.pt").write_bytes(b"")
    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT")
    link(victim, folder / LOCK)
    assert cli.main(["run", "burgers", "--resume", str(folder), "--quiet"]) == 2
    assert (f"{str(folder / LOCK)!r} is a link or not a plain file; a run writes only into "
            "files of its own") in capsys.readouterr().err
    assert victim.read_text() == "IMPORTANT"


@POSIX_LINKS
def test_a_figure_planted_as_a_link_is_replaced_and_its_target_left(tmp_path):
    """A resumed run draws its figures again: through a link in the folder it overwrote the
    file the link named."""
    from physml.cases.figures import plot_losses

    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT")
    (tmp_path / "losses.png").symlink_to(victim)
    plot_losses([{"step": 0, "loss_pde": 1.0}, {"step": 1, "loss_pde": 0.5}],
                tmp_path / "losses.png")
    assert victim.read_text() == "IMPORTANT"
    assert not (tmp_path / "losses.png").is_symlink()
    assert (tmp_path / "losses.png").read_bytes().startswith(b"\x89PNG")
    assert {p.name for p in tmp_path.iterdir()} == {"losses.png", "victim.txt"}


@POSIX_LINKS
def test_the_frames_of_a_heat_run_planted_as_a_link_are_neither_cut_nor_appended_to(tmp_path):
    import numpy as np

    from physml.cases.mesh_pde_heat import FRAMES, append_frame, kept_frames

    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"IMPORTANT" * 8)
    (tmp_path / FRAMES).symlink_to(victim)
    message = re.escape(f"{str(tmp_path / FRAMES)!r} is a link or not a plain file")
    with pytest.raises(ValueError, match=message):
        kept_frames(tmp_path, 1, 2)  # on --resume: the frames after the checkpoint's dropped
    with pytest.raises(ValueError, match=message):
        append_frame(tmp_path, np.zeros(2))
    assert victim.read_bytes() == b"IMPORTANT" * 8


@POSIX_LINKS
def test_the_frames_of_a_copied_heat_run_hard_linked_are_left_and_the_advice_resumes(tmp_path):
    """A run folder copied by ``cp -al`` shares ``frames.f64`` with the copy: the refusal
    said to remove it, which left the run nothing to resume from."""
    import numpy as np

    from physml.cases.mesh_pde_heat import FRAMES, append_frame, kept_frames

    run, snapshot = tmp_path / "run", tmp_path / "snapshot"
    run.mkdir()
    snapshot.mkdir()
    for k in range(3):
        append_frame(run, np.full(2, float(k)))
    os.link(run / FRAMES, snapshot / FRAMES)
    with pytest.raises(ValueError, match="one of 2 names of one file") as refused:
        kept_frames(run, 2, 2)
    assert "remove it" not in str(refused.value)
    advice = re.search(r"in its folder: (.*?)\), then run again", str(refused.value))[1]
    subprocess.run(advice, shell=True, cwd=run, check=True)
    assert [list(u) for u in kept_frames(run, 2, 2)] == [[0.0, 0.0], [1.0, 1.0]]
    assert np.fromfile(snapshot / FRAMES).tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]


@pytest.mark.parametrize("override, printed", [
    ("output.folder=a&calc", "output.folder=a^&calc"),
    ("output.folder=a|b>c<d", "output.folder=a^|b^>c^<d"),
    ("output.folder=%TEMP%^(1)!", "output.folder=^%TEMP^%^^^(1^)^!"),
    ('output.folder=a "b" & calc', r'^"output.folder=a \^"b\^" ^& calc^"'),
])
def test_the_resume_command_keeps_characters_cmd_acts_on_from_it(monkeypatch, override,
                                                                  printed):
    """On Windows a ``&`` in an override (or a case name, or the run folder's) started a
    second command when the printed line was pasted into ``cmd.exe``: each character cmd.exe
    acts on is escaped by a ``^``, which cmd.exe removes."""
    import argparse

    from physml import cli_cases

    monkeypatch.setattr(sys, "platform", "win32")
    args = argparse.Namespace(case=Path("a&b.yaml"), overrides=[override])
    assert cli_cases._resume_command(args, Path(r"runs\a&b-1")) == (
        rf"physml run a^&b.yaml {printed} --resume runs\a^&b-1")


GEODESIC = {"kind": "mesh_pde", "name": "geodesic_lshape", "mesh": {"domain": "l_shape", "h": 0.3},
            "pde": {"name": "geodesic", "source_point": [0.0, 0.0]}}
TENG_TINY = ["domain.y=null", "conditions.initial.kind=sine", "model.width=8", "model.depth=2",
             "training.points=64", "training.subsample=64", "training.iterations=2",
             "training.dt=0.05", "training.initial_points=128", "domain.t=[0, 0.1]",
             "evaluation.nx=32", "evaluation.times=[0.1]", "evaluation.threshold=1.0e-2"]
MOE_TINY = ["variant=cpu", "problem.nx=8", "problem.nt=8", "problem.train=2", "problem.test=1",
            "model.basis=3", "model.width=4", "model.modes=[2, 2]", "training.iterations=2",
            "training.batch=2"]
SUMMARY_RUNS = [  # the cheapest run of each kind (and of each mesh PDE), its relative L2 key
    ("helmholtz", ["training.adam.steps=2", "training.collocation.points=16",
                   "training.collocation.boundary_points=16", "model.width=4", "model.depth=1",
                   "evaluation.nx=10", "evaluation.nt=10"], "rel_l2"),
    ("burgers_inverse", ["training.adam.steps=2", "training.lbfgs.steps=0",
                         "training.collocation.points=64", "evaluation.grid=[9, 5]",
                         "model.width=4", "model.depth=1", "observations.points=20",
                         "observations.solve.nx=64"], "rel_l2"),
    pytest.param("teng_heat", TENG_TINY, "rel_l2",
                 marks=pytest.mark.slow),  # the reference solve: ~10 s
    ("poisson_lshape", ["mesh.h=0.3", "refine=[]"], "rel_l2"),
    ("heat_surface", ["mesh.h=0.4", "time.steps=4", "time.save_every=2"], None),
    ("shape_poisson", ["mesh.h=0.3", "optimisation.steps=2"], None),
    (GEODESIC, [], None),
    ("thermomigration_fe_c", ["grid.shape=[20]", "time.end=900.0", "time.saves=3"], None),
    ("moe_diffusion_sorption", MOE_TINY, "rel_l2"),
    ("pcg_poisson", ["variant=tiny", "training.steps=2"], None),
]


@pytest.mark.parametrize("name, overrides, error", SUMMARY_RUNS)
def test_every_kind_s_summary_has_the_time_the_verdict_and_the_error_under_one_name(
        tmp_path, name, overrides, error):
    """A script comparing runs found the wall time under three names (or none), the error of
    ``moe`` as ``test_rel_l2``, no ``passed`` in Poisson and thermomigration runs, and no
    ``units`` in a shape optimisation's."""
    import json

    from physml.cases.registry import run_case

    output = {"folder": str(tmp_path), "figures": False}
    case = (validate_case({**name, "output": output}, "case") if isinstance(name, dict)
            else load_case(name, [*overrides, f"output.folder={tmp_path}",
                                  "output.figures=false"]))
    folder, summary = run_case(case, tmp_path)
    assert json.loads((folder / "metrics.json").read_text())["summary"] == json.loads(
        json.dumps(summary))
    assert summary["wall_s"] > 0
    assert {"threshold", "passed"} <= set(summary)
    assert (summary["passed"] is None) == (summary["threshold"] is None)
    if error is not None:
        assert 0 <= summary[error] < 10 and "test_rel_l2" not in summary
    if case.kind in ("mesh_pde", "thermomigration"):
        assert "wall_s" in summary["units"]


def test_the_interface_jump_figure_draws_the_reference_on_the_sample_that_jumps_most(
        tmp_path, monkeypatch):
    """It drew the prediction's jump on the first test sample alone, no reference, while the
    summary compared the largest jump over the samples with the reference's."""
    import numpy as np
    import torch
    import xarray as xr

    from physml.cases import moe
    from physml.constraints import BlockRouter, interface_jump

    router = BlockRouter((4, 8), (1, 2))
    reference = torch.linspace(0, 1, 8, dtype=torch.float64).expand(3, 4, 8).clone()  # no jump
    u = reference.clone()
    u[1, :, 4:] += torch.tensor([1e-3, 2e-3, 4e-3, 8e-3])[:, None]  # sample 1 jumps most
    u[2, :, 4:] += 1e-4
    drawn = {}
    monkeypatch.setattr(moe, "save_figure", lambda fig, path, **kw: drawn.update(fig=fig))
    times = xr.DataArray(np.arange(4.0), dims="time", attrs={"units": "s"})
    moe.plot_interface_jump(u, reference, router, times, np.array([10, 11, 12]),
                            tmp_path / "interface_jump.png")
    ax = drawn["fig"].axes[0]
    assert "test sample 11" in ax.get_title()
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    prediction, ref = (lines[f"{whose}, x interface at cell 4"]
                       for whose in ("prediction", "reference"))
    assert max(prediction) == pytest.approx(float(interface_jump(u, router).max()))
    assert max(ref) < 1e-12 and "reference, largest over the test samples" in lines


def test_a_shape_run_s_final_figures_are_its_last_history_record(tmp_path):
    """``loss_final`` and ``match_final`` were taken after the last update, the history and
    losses.png ended before it; ``loss_drop`` was the match term's ratio under the loss's
    name."""
    import json

    from physml.cases.registry import run_case

    case = load_case("shape_poisson", ["mesh.h=0.3", "optimisation.steps=3",
                                       f"output.folder={tmp_path}", "output.figures=false"])
    folder, summary = run_case(case, tmp_path)
    history = json.loads((folder / "metrics.json").read_text())["history"]
    assert [r["step"] for r in history] == [0, 1, 2, 3]  # the updates done
    first, last = history[0], history[-1]
    assert (summary["loss_initial"], summary["match_initial"]) == (first["loss"],
                                                                   first["loss_match"])
    assert (summary["loss_final"], summary["match_final"], summary["quality_final"]) == (
        last["loss"], last["loss_match"], last["loss_quality"])
    assert summary["match_drop"] == first["loss_match"] / last["loss_match"]
    assert "loss_drop" not in summary and summary["threshold"] == 100.0
    assert summary["units"]["match_drop"] == "match_initial / match_final"


@pytest.mark.parametrize("name, overrides, status", [
    ("burgers", ["training.adam.steps=2", "training.lbfgs.steps=0", "evaluation.every=2",
                 "evaluation.nx=16", "evaluation.nt=8", "training.collocation.points=64"],
     "solving the reference (Warp compiles its kernels on a first run)"),
    ("pcg_poisson", ["variant=tiny", "training.steps=2"],
     "benchmarking 6 preconditioners on 2 test systems"),
])
def test_a_phase_outside_the_steps_is_named_in_the_progress(tmp_path, name, overrides, status):
    """The progress line repeated 'burgers 0/400' for minutes while Warp compiled and the
    reference was solved, and 'pcg_poisson 20/20 loss ...' while the preconditioners were
    benchmarked, saying nothing else."""
    from physml.cases.registry import run_case

    records = []
    case = load_case(name, [*overrides, f"output.folder={tmp_path}", "output.figures=false"])
    run_case(case, on_step=records.append)
    told = [k for k, r in enumerate(records) if r.get("status", "").startswith(status)]
    assert len(told) == 1 and "step" not in records[told[0]], records
    steps = [k for k, r in enumerate(records) if "step" in r]
    assert (told[0] < steps[0]) if name == "burgers" else (told[0] > steps[-1])


def test_an_inverse_run_folder_holds_the_observations_it_was_fitted_to(tmp_path):
    """observations.h5 held the solved field only: not the points drawn from it, their noisy
    values nor the noise, so the fit could not be inspected from the run folder."""
    import numpy as np
    import xarray as xr

    from physml.cases.registry import run_case
    from physml.train.observations import read_observations

    records = []
    case = load_case("burgers_inverse", [
        "training.adam.steps=2", "training.lbfgs.steps=0", "training.collocation.points=64",
        "evaluation.grid=[9, 5]", "model.width=4", "model.depth=1", "observations.points=20",
        "observations.solve.nx=64", "observations.solve.n_saves=5",
        f"output.folder={tmp_path}", "output.figures=false"])
    folder, _ = run_case(case, on_step=records.append)
    assert records[0] == {"status": "solving the observations (Warp compiles its kernels on a "
                                    "first run)"}
    path = folder / "observations.h5"
    drawn = read_observations(path, "u", ("x", "t"), 20, 0.01, 0)  # as the run drew them
    with xr.open_dataset(path) as ds:
        assert ds["u"].dims == ("time", "x")  # the solved field is kept
        observed = ds["observed_u"]
        assert observed.dims == ("observation",) and observed.sizes["observation"] == 20
        assert (observed.attrs["noise"], observed.attrs["seed"]) == (0.01, 0)
        assert observed.attrs["units"] == ds["u"].attrs["units"] == "m s-1"
        assert ds["observed_time"].attrs["units"] == "s" and ds["observed_x"].attrs["units"] == "m"
        np.testing.assert_array_equal(observed, drawn.values[:, 0])
        np.testing.assert_array_equal(np.stack([ds["observed_x"], ds["observed_time"]], axis=1),
                                      drawn.points)
        for name in ("observed_u", "observed_x", "observed_time"):
            assert {"long_name", "units"} <= set(ds[name].attrs), name


def test_predictions_on_a_disk_mark_the_points_outside_it(tmp_path):
    """predictions.h5 of heat_disk held NaN at a quarter of its points, with no mask and no
    word of it in the file."""
    import numpy as np
    import xarray as xr

    from physml.cases.registry import run_case

    case = load_case("heat_disk", [
        "training.adam.steps=2", "training.lbfgs.steps=0", "training.collocation.points=32",
        "training.collocation.boundary_points=16", "evaluation.every=2",
        "evaluation.grid=[9, 9, 3]", "model.width=4", "model.depth=1",
        f"output.folder={tmp_path}", "output.figures=false"])
    folder, _ = run_case(case)
    with xr.open_dataset(folder / "predictions.h5") as ds:
        inside = ds["inside"]
        assert inside.dtype == bool and inside.dims == ds["prediction"].dims
        assert "lies in the domain" in inside.attrs["long_name"]
        assert 0 < int((~inside).sum()) < inside.size
        for name in ("prediction", "reference", "error"):
            np.testing.assert_array_equal(np.isfinite(ds[name]), inside)


def test_the_legend_of_the_losses_covers_no_curve(tmp_path, monkeypatch):
    """loc='best' put the legend over the relative L2 curve of a short helmholtz run."""
    import matplotlib.pyplot as plt
    import numpy as np

    from physml.cases import figures

    history = [{"step": s, "loss_residual": 10 * np.exp(-s / 40), "loss_dirichlet": 0.1,
                "weights": {"residual": 1.0 + s, "dirichlet": 1.0},
                **({"rel_l2": np.exp(-s / 300)} if s % 50 == 0 else {})}
               for s in range(0, 151, 10)]
    drawn, close = [], plt.close
    monkeypatch.setattr(plt, "close", drawn.append)  # the figure, kept open
    figures.plot_losses(history, tmp_path / "losses.png", "helmholtz", adam_steps=100,
                        resample_every=20)
    (fig,) = drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.axes) == 2  # the weights panel too
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer))
        assert fig.bbox.contains(legend.x1 - 1, legend.y0 + 1)  # not cut off
    close(fig)
