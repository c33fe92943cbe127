"""The discrete problem a ``mesh_pde`` runner solves: the case's mesh on its device, the
vertices of a boundary part, the Dirichlet values and Neumann load of the case's boundary
conditions, and the P1 stiffness and mass matrices."""

from __future__ import annotations

import numpy as np

from ..solvers import mesh as pm
from .mesh_pde_spec import MeshPDECase


def build_mesh(case: MeshPDECase, h: float | None = None) -> pm.Mesh:
    """The case's mesh (edge length ``h`` for a generated domain; default its own) on the
    case's device."""
    mesh = case.mesh.build(h)
    return mesh if case.device == "cpu" else mesh.to(case.device)


def part_vertices(mesh: pm.Mesh, name: str) -> np.ndarray:
    """The vertices of the boundary part ``name`` (``"all"``: the whole boundary), sorted;
    an unknown part raises, naming the mesh's parts."""
    return mesh.boundary_vertices(None if name == "all" else name)


def dirichlet_data(case: MeshPDECase, mesh: pm.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """The Dirichlet vertices (sorted) and their values; a later entry wins at shared
    vertices."""
    values = np.full(mesh.n_vertices, np.nan)
    for spec in case.boundary:
        if spec.kind == "dirichlet":
            vertices = part_vertices(mesh, spec.part)
            values[vertices] = spec.value.values(mesh.points[vertices])
    fixed = np.flatnonzero(~np.isnan(values))
    return fixed, values[fixed]


def neumann_load(case: MeshPDECase, mesh: pm.Mesh) -> np.ndarray:
    r"""(n,) $b_i = \int_{\Gamma_N} q\,\phi_i$ by vertex quadrature on each boundary facet
    ($|F| / (k-1)$ per vertex) over the Neumann parts."""
    load = np.zeros(mesh.n_vertices)
    for spec in case.boundary:
        if spec.kind != "neumann":
            continue
        if spec.part == "all":
            facets = mesh.boundary_facets
        else:
            part_vertices(mesh, spec.part)  # raises for an unknown part
            facets = mesh.facets[mesh.facet_tags == mesh.tag_names[spec.part]]
        x = mesh.points[facets]
        if facets.shape[1] == 2:
            measure = np.linalg.norm(x[:, 1] - x[:, 0], axis=1)
        else:
            measure = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)
        q = spec.value.values(mesh.points)
        np.add.at(load, facets, (measure / facets.shape[1])[:, None] * q[facets])
    return load


def stiffness_and_mass(mesh: pm.Mesh):
    """The P1 stiffness and mass matrices K, M of ``mesh`` as SciPy CSR matrices (n, n)."""
    return pm.to_scipy(pm.stiffness_matrix(mesh)), pm.to_scipy(pm.mass_matrix(mesh))
