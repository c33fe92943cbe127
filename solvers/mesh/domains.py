r"""Standard domains meshed with Gmsh's Python API, plus a subdivided icosphere.

Every generator takes a target edge length ``h`` (Gmsh's ``Mesh.MeshSizeMin``/``Max``), runs
Gmsh quietly in a session of its own (initialised and finalised here, unless the caller already
holds one) and returns a checked :class:`~physml.solvers.mesh.Mesh`. Gmsh is imported only when
a domain is meshed: without it (no wheel for Linux aarch64; on a headless Linux node its library
needs libGLU and X11 libraries) the rest of the package works, and a generator raises a
ValueError naming the domain, the import error and the cure.

========================  ======================================  =====================
function                  geometry                                tags
========================  ======================================  =====================
:func:`disc`              $|x| < r$                               ``boundary``
:func:`annulus`           $r_i < |x| < r_o$                       ``inner``, ``outer``
:func:`l_shape`           $(-1,1)^2 \setminus [0,1)\times(-1,0]$  ``boundary``
:func:`box`               $(0,a)\times(0,b)\times(0,c)$, tets     ``boundary``
:func:`sphere`            surface $|x| = r$                       --
:func:`torus`             surface, radii $R > r$                  --
:func:`double_torus`      genus-2 surface: two fused tori         --
========================  ======================================  =====================
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from ..errors import is_real, whole_number
from .mesh import Mesh

_TRIANGLE, _TETRA, _LINE = 2, 4, 1


def _python_signal_handlers() -> dict[int, object]:
    """The Python handlers of SIGINT and SIGTERM (none off the main thread, where they cannot
    be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: h for s in (signal.SIGINT, signal.SIGTERM)
            if (h := signal.getsignal(s)) is not None}


def _import_gmsh(domain: str) -> ModuleType:
    """Gmsh's Python module.

    Raises:
        ValueError: Gmsh cannot be imported (not installed, or its library's system libraries
            missing): names ``domain``, the import error and the cure.
    """
    try:
        import gmsh
    except (ImportError, OSError) as err:
        raise ValueError(
            f"the {domain} domain is meshed with Gmsh, which cannot be imported here ({err}); "
            "install it (pip install gmsh: wheels for Linux x86_64, macOS and Windows x86_64) "
            "and, on a headless Linux node, the system libraries its library loads (libGLU, "
            "libGL, libXcursor, libXft, libXinerama, the X11 libraries and libgomp; on Debian "
            "or Ubuntu: apt install libglu1-mesa libgl1 libxcursor1 libxft2 libxinerama1 "
            "libgomp1), or read the mesh from a file instead (mesh.file in a case, "
            "physml.solvers.mesh.read_mesh)") from err
    return gmsh


@contextmanager
def _session(domain: str, h: float, verbose: bool) -> Iterator[ModuleType]:
    """A Gmsh model with edge length ``h``, in a Gmsh session of its own unless one is open;
    yields Gmsh's module."""
    if not (is_real(h) and h > 0):
        raise ValueError(f"target edge length h={h!r} must be a number > 0")
    gmsh = _import_gmsh(domain)
    owner = not gmsh.isInitialized()
    if owner:
        handlers = _python_signal_handlers()
        gmsh.initialize(interruptible=False)
        for signum, handler in handlers.items():  # Gmsh installs its own for SIGTERM: a
            signal.signal(signum, handler)  # run's Ctrl-C/SIGTERM handling would die with it
    try:
        gmsh.option.setNumber("General.Terminal", int(verbose))
        gmsh.model.add("physml")
        gmsh.option.setNumber("Mesh.MeshSizeMin", h)
        gmsh.option.setNumber("Mesh.MeshSizeMax", h)
        yield gmsh
    finally:
        gmsh.model.remove()
        if owner:
            gmsh.finalize()


def _mesh_from_gmsh(gmsh: ModuleType, dim: int, boundary: dict[str, list[int]]) -> Mesh:
    """Read the current Gmsh model's cells of dimension ``dim`` and the tagged boundary parts."""
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    coords = coords.reshape(-1, 3)
    order = np.argsort(node_tags)
    node_tags, coords = node_tags[order], coords[order]
    cell_type, facet_type = {2: (_TRIANGLE, _LINE), 3: (_TETRA, _TRIANGLE)}[dim]
    _, cell_nodes = gmsh.model.mesh.getElementsByType(cell_type)
    cells = cell_nodes.reshape(-1, dim + 1)
    used = np.unique(cells)
    index = np.searchsorted(used, cells)
    points = coords[np.searchsorted(node_tags, used)]
    if dim == 2 and not np.any(points[:, 2]):
        points = points[:, :2]
    facets, facet_tags, names = [], [], {}
    for tag, (name, entities) in enumerate(boundary.items(), start=2):
        names[name] = tag
        for entity in entities:
            _, nodes = gmsh.model.mesh.getElementsByType(facet_type, entity)
            facets.append(np.searchsorted(used, nodes.reshape(-1, dim)))
            facet_tags.append(np.full(len(facets[-1]), tag))
    if not names:
        return Mesh(points, index)
    return Mesh(points, index, cell_tags=np.ones(len(index), dtype=np.int32),
                facets=np.concatenate(facets), facet_tags=np.concatenate(facet_tags),
                tag_names={"domain": 1, **names})


def _generate(domain: str, dim: int, h: float, verbose: bool,
              build: Callable[[ModuleType], dict[str, list[int]]]) -> Mesh:
    """Run ``build`` (adds the geometry with the Gmsh module it is given, returns name ->
    boundary entities) and mesh it."""
    with _session(domain, h, verbose) as gmsh:
        boundary = build(gmsh)
        gmsh.model.occ.synchronize()
        gmsh.model.mesh.generate(dim)
        return _mesh_from_gmsh(gmsh, dim, boundary)


def _curves_of(gmsh: ModuleType, surface: int) -> list[int]:
    return [abs(t) for _, t in gmsh.model.getBoundary([(2, surface)], oriented=False)]


def disc(h: float, radius: float = 1.0, verbose: bool = False) -> Mesh:
    """Planar disc of ``radius`` (> 0) centred at the origin, meshed with edge length about
    ``h`` (> 0); ``verbose`` prints Gmsh's log. Other ``h`` or ``radius`` values are refused."""
    if not (is_real(radius) and radius > 0):
        raise ValueError(f"radius={radius!r} must be a number > 0")

    def build(gmsh):
        surface = gmsh.model.occ.addDisk(0, 0, 0, radius, radius)
        gmsh.model.occ.synchronize()
        return {"boundary": _curves_of(gmsh, surface)}
    return _generate("disc", 2, h, verbose, build)


def annulus(h: float, inner: float = 0.5, outer: float = 1.0, verbose: bool = False) -> Mesh:
    """Planar annulus ``inner < |x| < outer`` (``0 < inner < outer``, else refused), meshed with
    edge length about ``h`` (> 0, else refused); ``verbose`` prints Gmsh's log."""
    if not 0 < inner < outer:
        raise ValueError(f"need 0 < inner < outer, got inner={inner}, outer={outer}")

    def build(gmsh):
        occ = gmsh.model.occ
        (_, surface), *_ = occ.cut([(2, occ.addDisk(0, 0, 0, outer, outer))],
                                   [(2, occ.addDisk(0, 0, 0, inner, inner))])[0]
        occ.synchronize()
        curves = _curves_of(gmsh, surface)
        radius = {c: gmsh.model.getBoundingBox(1, c)[3] for c in curves}
        return {"inner": [c for c in curves if radius[c] < 0.5 * (inner + outer)],
                "outer": [c for c in curves if radius[c] >= 0.5 * (inner + outer)]}
    return _generate("annulus", 2, h, verbose, build)


def l_shape(h: float, verbose: bool = False) -> Mesh:
    """Planar L-shape $(-1,1)^2$ without the quadrant $[0,1)\\times(-1,0]$ (re-entrant corner
    at the origin), meshed with edge length about ``h`` (> 0, else refused); ``verbose`` prints
    Gmsh's log."""
    def build(gmsh):
        occ = gmsh.model.occ
        (_, surface), *_ = occ.cut([(2, occ.addRectangle(-1, -1, 0, 2, 2))],
                                   [(2, occ.addRectangle(0, -1, 0, 1, 1))])[0]
        occ.synchronize()
        return {"boundary": _curves_of(gmsh, surface)}
    return _generate("l_shape", 2, h, verbose, build)


def box(h: float, size: tuple[float, float, float] = (1.0, 1.0, 1.0),
        verbose: bool = False) -> Mesh:
    """Tetrahedral mesh of the box $(0,a)\\times(0,b)\\times(0,c)$, ``size = (a, b, c)``, with
    edge length about ``h`` (> 0, else refused); ``verbose`` prints Gmsh's log."""
    def build(gmsh):
        volume = gmsh.model.occ.addBox(0, 0, 0, *size)
        gmsh.model.occ.synchronize()
        faces = gmsh.model.getBoundary([(3, volume)], oriented=False)
        return {"boundary": [abs(t) for _, t in faces]}
    return _generate("box", 3, h, verbose, build)


def sphere(h: float, radius: float = 1.0, verbose: bool = False) -> Mesh:
    """Triangulated sphere surface of ``radius`` centred at the origin, with edge length about
    ``h`` (> 0, else refused); ``verbose`` prints Gmsh's log."""
    return _generate("sphere", 2, h, verbose,
                     lambda gmsh: (gmsh.model.occ.addSphere(0, 0, 0, radius), {})[1])


def torus(h: float, major: float = 1.0, minor: float = 0.4, verbose: bool = False) -> Mesh:
    """Triangulated torus surface about the z axis (radii ``major`` > ``minor`` > 0, else
    refused), with edge length about ``h`` (> 0, else refused); ``verbose`` prints Gmsh's log."""
    if not 0 < minor < major:
        raise ValueError(f"need 0 < minor < major, got major={major}, minor={minor}")
    return _generate("torus", 2, h, verbose,
                     lambda gmsh: (gmsh.model.occ.addTorus(0, 0, 0, major, minor), {})[1])


def double_torus(h: float, major: float = 1.0, minor: float = 0.4,
                 verbose: bool = False) -> Mesh:
    """Genus-2 surface: the boundary of two tori (radii ``major``, ``minor``) centred at
    $(\\pm 0.9\\,\\mathrm{major}, 0, 0)$ and fused. Euler characteristic $-2$. Needs
    ``0 < minor < 0.45 major``, else refused; edge length about ``h`` (> 0, else refused);
    ``verbose`` prints Gmsh's log."""
    if not 0 < minor < 0.45 * major:
        raise ValueError(f"need 0 < minor < 0.45 major, got major={major}, minor={minor}")

    def build(gmsh):
        occ = gmsh.model.occ
        shift = 0.9 * major
        occ.fuse([(3, occ.addTorus(-shift, 0, 0, major, minor))],
                 [(3, occ.addTorus(shift, 0, 0, major, minor))])
        return {}
    return _generate("double_torus", 2, h, verbose, build)


def icosphere(level: int, radius: float = 1.0) -> Mesh:
    """Sphere surface from an icosahedron whose triangles are split in four ``level`` times,
    new vertices projected to the sphere: $10\\cdot 4^{level} + 2$ vertices, scaled by
    ``radius`` (the sphere's radius). ``level`` must be a whole number >= 0, else refused."""
    t = (1 + 5**0.5) / 2
    points = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                       [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
                      dtype=np.float64)
    cells = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                      [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                      [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                      [8, 6, 7], [9, 8, 1]])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    for _ in range(whole_number(level, "level", 0)):
        edges = np.sort(np.concatenate([cells[:, [0, 1]], cells[:, [1, 2]], cells[:, [2, 0]]]),
                        axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = points[unique].mean(axis=1)
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = len(cells)
        a, b, c = (len(points) + inverse.ravel()[i * m:(i + 1) * m] for i in range(3))
        v0, v1, v2 = cells.T
        cells = np.concatenate([np.c_[v0, a, c], np.c_[a, v1, b], np.c_[c, b, v2], np.c_[a, b, c]])
        points = np.concatenate([points, mid])
    return Mesh(radius * points, cells)
