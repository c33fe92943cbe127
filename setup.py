"""Package layout: the ``physml`` import root gathers four folders (pyproject.toml has the
rest of the metadata). Every subpackage under each folder is found, so a new one (say
``solvers/mesh``) ships without editing this file; the bundled case files and dataset specs
ship as package data."""

from setuptools import find_packages, setup

ROOTS = {  # import name -> folder
    "physml": "physml",
    "physml.solvers": "solvers",
    "physml.datasets": "datasets",
}

packages = [name for root, folder in ROOTS.items()
            for name in (root, *(f"{root}.{sub}" for sub in find_packages(folder)))]

setup(
    packages=[*packages, "physml.case_files", "physml.datasets.specs"],
    package_dir={**ROOTS, "physml.case_files": "cases"},
    package_data={"physml.case_files": ["*.yaml"], "physml.datasets.specs": ["*.yaml"]},
)
