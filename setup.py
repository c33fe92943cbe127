"""The package list: every subpackage of the folders that pyproject.toml's
``[tool.setuptools.package-dir]`` maps into the ``physml`` import root, found at build time,
so a new one (say ``solvers/mesh``) ships without editing a list. Everything else about the
package, the mapping and the package data included, is in pyproject.toml."""

from setuptools import find_packages, setup

ROOTS = {"physml": "physml", "physml.solvers": "solvers", "physml.datasets": "datasets"}

setup(
    packages=[
        *(name for root, folder in ROOTS.items()
          for name in (root, *(f"{root}.{sub}" for sub in find_packages(folder)))),
        "physml.case_files",
        "physml.datasets.specs",
    ],
)
