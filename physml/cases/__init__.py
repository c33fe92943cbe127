"""Case files: one module per case kind (schema, runner, description), registered in
:mod:`physml.cases.registry`; run-folder helpers shared by all kinds in
:mod:`physml.cases.run_folder`."""

from .registry import KINDS, Case, bundled_cases, load_case, run_case

__all__ = ["KINDS", "Case", "bundled_cases", "load_case", "run_case"]
