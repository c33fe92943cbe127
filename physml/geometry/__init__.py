"""Domains for physics-informed problems: primitives, their CSG combinations, interior and
boundary sampling, outward normals, named boundary parts and distance functions.

* Primitives: :class:`Interval`, :class:`Rectangle`, :class:`Box`, :class:`Disk`,
  :class:`Ball`, :class:`Polygon`; a triangle or tetrahedron mesh: :class:`MeshDomain`
  (imported on first use: it loads the mesh layer).
* Combinations: :class:`Union`, :class:`Intersection`, :class:`Difference`.
* What they share: :class:`Geometry` (the interface) and :class:`BoundaryPart`.
"""

from typing import TYPE_CHECKING, Any

from .base import BoundaryPart as BoundaryPart
from .base import Geometry as Geometry
from .csg import Difference as Difference
from .csg import Intersection as Intersection
from .csg import Union as Union
from .shapes import Ball as Ball
from .shapes import Box as Box
from .shapes import Disk as Disk
from .shapes import Interval as Interval
from .shapes import Polygon as Polygon
from .shapes import Rectangle as Rectangle

if TYPE_CHECKING:
    from .mesh_domain import MeshDomain as MeshDomain

__all__ = [
    "Ball", "BoundaryPart", "Box", "Difference", "Disk", "Geometry", "Intersection", "Interval",
    "MeshDomain", "Polygon", "Rectangle", "Union",
]


def __dir__() -> list[str]:
    """The module's names with ``MeshDomain``, which :func:`__getattr__` provides."""
    return sorted({*globals(), "MeshDomain"})


def __getattr__(name: str) -> Any:
    """``MeshDomain`` is imported on first use (it loads the mesh layer)."""
    if name == "MeshDomain":
        from .mesh_domain import MeshDomain

        return MeshDomain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
