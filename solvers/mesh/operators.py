r"""P1 operators of a :class:`~physml.solvers.mesh.Mesh` as ``warp.sparse`` matrices and arrays.

Matrices are ``BsrMatrix`` with 1x1 blocks (CSR) on the mesh's device; ``to_scipy`` gives a
``scipy.sparse.csr_matrix`` (through :func:`~physml.solvers.linalg.csr_to_scipy` of the
linear-algebra layer). Assembly: an element kernel writes
the $k^2$ entries of every cell's element matrix as COO triplet values (rows and columns fixed
by the topology), summed into CSR through each triplet's slot (a triangle stiffness off the
tape is summed from each cell straight into CSR); the CSR topology and the slots
(:class:`Pattern`) are built once per mesh and dtype, from the vertex adjacency, so later
assemblies (for instance after the vertices move) only sum. Cost: $O(m k^2)$ per assembly, the
first one included. Conventions: ``stiffness_matrix`` $K$ is positive semi-definite,
``cotan_laplacian`` $L = -K$ (libigl's ``cotmatrix``); $-K = \operatorname{div}\circ\nabla$.

Arguments shared by the operators: ``mesh`` the mesh (n vertices, m cells); ``dtype``
``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name; other types are
refused); ``points`` vertex positions (n,) of ``vec{d}`` of ``dtype`` on the mesh's device, or a
NumPy (n, d) array (default: ``mesh.points``), e.g. moved vertices (another shape, dtype or
device is refused). The operators are translation invariant: NumPy positions (``mesh.points``
included) are cast to float32 relative to the centre of the mesh's bounding box, so that a mesh
far from the origin keeps float32's relative accuracy.
"""

from __future__ import annotations

import copy
import weakref

import numpy as np
import scipy.sparse as sp
import warp as wp
import warp.sparse as wps

from ..dtypes import warp_dtype
from ..kernel_launch import launch
from ..linalg.kernels import reduction_threads
from ..linalg.linear_operator import csr_to_scipy
from . import kernels as K
from .mesh import Mesh

_ELEMENT_KERNELS = {
    ("stiffness", 3): K.triangle_stiffness_kernel,
    ("stiffness", 4): K.tet_stiffness_kernel,
    ("mass", 3): K.triangle_mass_kernel,
    ("mass", 4): K.tet_mass_kernel,
}


def _element_kernel(kind: str, k: int):
    """The element kernel of ``kind`` for cells of ``k`` vertices; ValueError for another kind."""
    kinds = sorted({name for name, _ in _ELEMENT_KERNELS})
    if kind not in kinds:
        raise ValueError(f"kind={kind!r} is not an element matrix; allowed: {', '.join(kinds)}")
    return _ELEMENT_KERNELS[(kind, k)]
_VEC = {(2, wp.float32): wp.vec2f, (2, wp.float64): wp.vec2d,
        (3, wp.float32): wp.vec3f, (3, wp.float64): wp.vec3d}


class Pattern:
    """CSR topology of the P1 matrices of one mesh, for one dtype, and the slot of each triplet.

    Built on the CPU in one linear-time pass (:func:`csr_pattern`), then copied to the mesh's
    device, not by sorting the $m k^2$ triplets: Warp's ``bsr_set_from_triplets`` sorts them on
    one CPU thread, which made a first cotangent assembly about 3× slower than libigl's. Triplet
    ``(c k + a) k + b`` is entry (``cells[c, a]``, ``cells[c, b]``) of cell c's element matrix;
    ``slots`` gives its index in the CSR values.

    Attributes:
        template: ``BsrMatrix`` holding the topology (its values are uninitialised scratch).
        slots: (m k^2,) ``int32``: index in the CSR values of each triplet.
        indptr, indices: the CSR topology as NumPy arrays.
    """

    def __init__(self, mesh: Mesh, dtype: type) -> None:
        device = mesh.device
        n = mesh.n_vertices
        indptr, indices, slots = csr_pattern(mesh.cells, n)
        self.indptr, self.indices = indptr.numpy(), indices.numpy()
        self.template = wps.bsr_zeros(n, n, block_type=dtype, device=device)
        self.template.offsets = indptr.to(device)
        self.template.columns = indices.to(device)
        self.template.values = wp.empty(len(self.indices), dtype=dtype, device=device)
        self.template.nnz_sync()
        self.slots = slots.to(device)

    @property
    def nnz(self) -> int:
        return self.template.nnz

    def zeros(self) -> wps.BsrMatrix:
        """A new ``BsrMatrix`` of this topology with zero values.

        It shares the (read-only) topology arrays of the template and owns its values, so no
        topology is copied."""
        matrix = copy.copy(self.template)
        matrix.values = wp.zeros_like(self.template.values)
        return matrix

    def assemble(self, triplets: wp.array) -> wps.BsrMatrix:
        """Sum triplet values (m k^2,) into a new ``BsrMatrix`` of this topology."""
        matrix = self.zeros()
        count = len(triplets)
        stride = reduction_threads(count, triplets.device)
        launch(K.scatter_add_kernel, triplets.dtype, dim=stride, device=triplets.device,
               inputs=[self.slots, triplets, count, stride], outputs=[matrix.values])
        return matrix


def csr_pattern(cells: np.ndarray, n: int) -> tuple[wp.array, wp.array, wp.array]:
    """CSR topology of the P1 matrices of ``cells`` (m, k) over n vertices, and the triplet slots,
    as ``int32`` arrays on the CPU: ``indptr`` (n + 1,), ``indices`` (nnz,) with the columns
    sorted in every row, ``slots`` (m k^2,) (see :class:`Pattern`). Entry (i, j) is present for
    i = j and for every edge {i, j} of a cell.

    One native pass (:func:`~physml.solvers.mesh.kernels.pattern_kernel`): a counting sort of the
    cell corners by vertex, then each row built and its slots found while it is in cache."""
    cells = np.ascontiguousarray(cells, dtype=np.int32)
    m, k = cells.shape
    cpu = wp.get_device("cpu")
    indptr = wp.empty(n + 1, dtype=wp.int32, device=cpu)
    capacity = wp.empty(n + m * k * (k - 1), dtype=wp.int32, device=cpu)
    slots = wp.empty(m * k * k, dtype=wp.int32, device=cpu)
    wp.launch(K.pattern_kernel, dim=1, device=cpu,
              inputs=[wp.array(cells, device=cpu, copy=False), n, m, k,
                      wp.zeros(n + 1, dtype=wp.int32, device=cpu),
                      wp.empty(m * k, dtype=wp.int32, device=cpu)],
              outputs=[indptr, capacity, slots])
    nnz = int(indptr.numpy()[n])
    return indptr, wp.clone(capacity[:nnz]), slots


_PATTERNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pattern(mesh: Mesh, dtype: type = wp.float64) -> Pattern:
    """The (cached) :class:`Pattern` of ``mesh`` for ``dtype``."""
    cache = _PATTERNS.setdefault(mesh, {})
    if dtype not in cache:
        cache[dtype] = Pattern(mesh, dtype)
    return cache[dtype]


_RELATIVE_POINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per mesh, its float32 positions relative to its centre, read by the operators (a mesh's
points are read-only, so they are cast once: 1 ms a call at 1e5 vertices)."""


def _points(mesh: Mesh, dtype: type, points: wp.array | None) -> wp.array:
    """The positions the kernels read (never written). Every operator here is translation
    invariant, so positions cast to float32 (``mesh.points``, cached per mesh, or NumPy
    ``points``) are taken relative to ``mesh.centre``
    (:meth:`~physml.solvers.mesh.Mesh.warp_points` with ``relative``); a Warp array is used as
    it is."""
    relative = dtype is wp.float32
    if points is None:
        if not relative:
            return mesh.warp_points(dtype)
        if mesh not in _RELATIVE_POINTS:
            _RELATIVE_POINTS[mesh] = mesh.warp_points(dtype, relative=True)
        return _RELATIVE_POINTS[mesh]
    return _mesh_array(mesh, points, "points", mesh.n_vertices, "vertex", _VEC[(mesh.dim, dtype)],
                       origin=mesh.centre if relative else None)


def _mesh_array(mesh: Mesh, value, name: str, length: int, per: str, dtype: type,
                origin: np.ndarray | None = None) -> wp.array:
    """``value`` as a Warp array of ``length`` entries of ``dtype`` (a float or a vector of
    the mesh's dimension) on the mesh's device: a Warp array is checked and used as it is,
    anything else (NumPy, lists) is copied in, less ``origin`` (subtracted in float64) if
    given.

    Raises:
        ValueError: another length, dtype, or device, naming ``name`` and what was expected
            (an operator would read past the end of a shorter array)."""
    width = getattr(dtype, "_length_", 1)
    expected = f"({length},) of " + ("float32 or float64" if width == 1 else dtype.__name__)
    if not isinstance(value, wp.array):
        array = np.asarray(value)
        shape = (length,) if width == 1 else (length, width)
        if array.shape != shape or array.dtype.kind not in "iuf":
            raise ValueError(f"{name} has shape {array.shape} and dtype {array.dtype}; expected "
                             f"one {'value' if width == 1 else 'vector'} per {per}, shape "
                             f"{shape}, of floats")
        if origin is not None:
            array = array.astype(np.float64) - origin
        return wp.array(array, dtype=dtype, device=mesh.device)
    if value.shape != (length,) or value.dtype != dtype:
        raise ValueError(f"{name} is a Warp array of shape {value.shape} and dtype "
                         f"{value.dtype.__name__}; expected one per {per}: {expected}")
    if str(value.device) != str(mesh.device):
        raise ValueError(f"{name} is on {value.device}; the mesh is on {mesh.device}")
    return value


def element_triplets(mesh: Mesh, kind: str, dtype: type = wp.float64,
                     points: wp.array | None = None, out: wp.array | None = None) -> wp.array:
    """Element-matrix entries of every cell as (m k^2,) triplet values (see :class:`Pattern`).

    Args:
        mesh: the mesh.
        kind: ``"stiffness"`` or ``"mass"`` (another is refused with a ``ValueError``).
        dtype: ``wp.float32`` or ``wp.float64``.
        points: vertex positions (n,) of ``vec{d}`` (default: ``mesh.points``), e.g. with
            ``requires_grad`` for a ``wp.Tape``.
        out: optional output array to fill.
    """
    dtype = warp_dtype(dtype)
    k = mesh.cells.shape[1]
    kernel = _element_kernel(kind, k)
    x = _points(mesh, dtype, points)
    if out is None:
        out = wp.empty(mesh.n_cells * k * k, dtype=dtype, device=mesh.device,
                       requires_grad=x.requires_grad)
    else:
        out = _mesh_array(mesh, out, "out", mesh.n_cells * k * k, "element-matrix entry", dtype)
    launch(kernel, (dtype, _VEC[(mesh.dim, dtype)]), dim=mesh.n_cells,
           device=mesh.device, inputs=[x, mesh.warp_cells()], outputs=[out])
    return out


def element_triplets_adjoint(mesh: Mesh, kind: str, points: wp.array,
                             triplets_grad: wp.array) -> wp.array:
    """Vector-Jacobian product of :func:`element_triplets` with respect to the positions.

    Launches the element kernel with ``adjoint=True``: returns $\\bar x = (\\partial t /
    \\partial x)^T \\bar t$, (n,) vectors, for the triplet cotangent ``triplets_grad`` (m k^2,).
    Allocates a fresh zero gradient, so repeated calls give the same result.

    Args:
        mesh: the mesh (n vertices, m cells of k vertices).
        kind: ``"stiffness"`` or ``"mass"``, as given to :func:`element_triplets` (another is
            refused with a ``ValueError``).
        points: vertex positions (n,) of ``vec{d}`` of the dtype of ``triplets_grad``, or a
            NumPy (n, d) array (``None``: ``mesh.points``), the positions the triplets were
            taken at; another shape, dtype or device is refused.
        triplets_grad: cotangent (m k^2,) of float32 or float64 (NumPy input is taken as
            float64); another length, dtype or device is refused.
    """
    k = mesh.cells.shape[1]
    kernel = _element_kernel(kind, k)
    dtype = triplets_grad.dtype if isinstance(triplets_grad, wp.array) else wp.float64
    triplets_grad = _mesh_array(mesh, triplets_grad, "triplets_grad", mesh.n_cells * k * k,
                                "element-matrix entry", dtype)
    points = _points(mesh, dtype, points)
    points_grad = wp.zeros_like(points)
    launch(kernel, (dtype, _VEC[(mesh.dim, dtype)]), dim=mesh.n_cells,
           device=mesh.device, inputs=[points, mesh.warp_cells()],
           outputs=[wp.empty_like(triplets_grad)], adj_inputs=[points_grad, None],
           adj_outputs=[triplets_grad], adjoint=True)
    return points_grad


def stiffness_matrix(mesh: Mesh, dtype: type = wp.float64,
                     points: wp.array | None = None) -> wps.BsrMatrix:
    r"""P1 stiffness $K_{ij} = \int \nabla\phi_i\cdot\nabla\phi_j$ (n, n), positive semi-definite.

    On triangles (planar or surface) this is the cotangent formula
    $K_{ij} = -\tfrac12(\cot\alpha_{ij} + \cot\beta_{ij})$: the Laplace–Beltrami stiffness.
    Triangles whose ``points`` do not require a gradient are summed from each cell straight into
    the CSR values (the same sums, bit for bit on the CPU); otherwise through the triplets. The
    sum into CSR is not recorded for a ``wp.Tape`` (the matrix's values get no gradient): to
    differentiate with respect to the positions, take the triplets on the tape
    (:func:`element_triplets`, :func:`element_triplets_adjoint`) or use PyTorch through
    :mod:`physml.mesh_bridge`.

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.
    """
    dtype = warp_dtype(dtype)
    x = _points(mesh, dtype, points)
    if mesh.cell_dim == 3 or x.requires_grad:
        return pattern(mesh, dtype).assemble(element_triplets(mesh, "stiffness", dtype, x))
    pat = pattern(mesh, dtype)
    matrix = pat.zeros()
    launch(K.triangle_stiffness_csr_kernel, (dtype, _VEC[(mesh.dim, dtype)]), dim=mesh.n_cells,
           device=mesh.device, inputs=[x, mesh.warp_cells(), pat.slots], outputs=[matrix.values])
    return matrix


def cotan_laplacian(mesh: Mesh, dtype: type = wp.float64,
                    points: wp.array | None = None) -> wps.BsrMatrix:
    r"""Cotangent Laplacian $L = -K$ (n, n), negative semi-definite, as libigl's ``cotmatrix``.

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.
    """
    L = stiffness_matrix(mesh, dtype, points)
    wps.bsr_scale(L, -1.0)
    return L


def mass_matrix(mesh: Mesh, dtype: type = wp.float64, points: wp.array | None = None,
                lumped: bool = False) -> wps.BsrMatrix:
    r"""P1 mass $M_{ij} = \int \phi_i\phi_j$ (n, n), or its lumped diagonal.

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.
        lumped: return the diagonal matrix of :func:`lumped_mass` instead.
    """
    dtype = warp_dtype(dtype)
    if lumped:
        return wps.bsr_diag(lumped_mass(mesh, dtype, points))
    return pattern(mesh, dtype).assemble(element_triplets(mesh, "mass", dtype, points))


def cell_measures(mesh: Mesh, dtype: type = wp.float64,
                  points: wp.array | None = None) -> wp.array:
    """(m,) cell areas (triangles) or volumes (tetrahedra).

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.
    """
    dtype = warp_dtype(dtype)
    x = _points(mesh, dtype, points)
    kernel = K.triangle_measure_kernel if mesh.cell_dim == 2 else K.tet_measure_kernel
    out = wp.empty(mesh.n_cells, dtype=dtype, device=mesh.device)
    launch(kernel, (dtype, _VEC[(mesh.dim, dtype)]), dim=mesh.n_cells, device=mesh.device,
           inputs=[x, mesh.warp_cells()], outputs=[out])
    return out


def lumped_mass(mesh: Mesh, dtype: type = wp.float64,
                points: wp.array | None = None) -> wp.array:
    r"""(n,) lumped mass $m_i = \sum_{T \ni i} |T|/(k+1)$ (row sums of the consistent mass).

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.
    """
    dtype = warp_dtype(dtype)
    out = wp.zeros(mesh.n_vertices, dtype=dtype, device=mesh.device)
    launch(K.lumped_mass_kernel, dtype, dim=mesh.n_cells, device=mesh.device,
           inputs=[mesh.warp_cells(), cell_measures(mesh, dtype, points)], outputs=[out])
    return out


def face_normals(mesh: Mesh, dtype: type = wp.float64,
                 points: wp.array | None = None) -> wp.array:
    """(m,) unit normals of a surface mesh, $(x_1 - x_0)\\times(x_2 - x_0)$ normalised.

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.

    Raises:
        ValueError: the mesh is not a surface (triangles in 3D).
    """
    dtype = warp_dtype(dtype)
    if not mesh.is_surface:
        raise ValueError("face_normals needs a surface mesh (triangles with 3D points)")
    out = wp.empty(mesh.n_cells, dtype=_VEC[(3, dtype)], device=mesh.device)
    launch(K.face_normal_kernel, (dtype, _VEC[(3, dtype)]), dim=mesh.n_cells, device=mesh.device,
           inputs=[_points(mesh, dtype, points), mesh.warp_cells()], outputs=[out])
    return out


def basis_gradients(mesh: Mesh, dtype: type = wp.float64,
                    points: wp.array | None = None) -> wp.array:
    r"""(m, k) gradients $\nabla\lambda_i$ of every cell's barycentric coordinates (vectors).

    Args:
        mesh: the mesh (n vertices, m cells).
        dtype: ``wp.float32`` or ``wp.float64`` (or a NumPy or PyTorch dtype, or its name).
        points: vertex positions, (n,) ``vec{d}`` of ``dtype`` on the mesh's device or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is refused.
    """
    dtype = warp_dtype(dtype)
    vec = _VEC[(mesh.dim, dtype)]
    kernel = (K.triangle_basis_gradients_kernel if mesh.cell_dim == 2
              else K.tet_basis_gradients_kernel)
    out = wp.empty(mesh.cells.shape, dtype=vec, device=mesh.device)
    launch(kernel, (dtype, vec), dim=mesh.cells.shape, device=mesh.device,
           inputs=[_points(mesh, dtype, points), mesh.warp_cells()], outputs=[out])
    return out


def gradient(mesh: Mesh, u: wp.array, points: wp.array | None = None) -> wp.array:
    r"""(m,) cell gradients $\nabla u|_T$ of the P1 field ``u`` (n,) (dtype of ``u``: a Warp
    array of float32 or float64; NumPy input is taken as float64).

    Args:
        mesh: the mesh (n vertices, m cells).
        u: vertex values (n,); another length, dtype or device is refused.
        points: vertex positions (n,) of ``vec{d}`` of the dtype of ``u``, or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is
            refused.
    """
    dtype = u.dtype if isinstance(u, wp.array) and u.dtype in (wp.float32, wp.float64) \
        else wp.float64
    u = _mesh_array(mesh, u, "u", mesh.n_vertices, "vertex", dtype)
    vec = _VEC[(mesh.dim, dtype)]
    out = wp.empty(mesh.n_cells, dtype=vec, device=mesh.device)
    launch(K.cell_gradient_kernel, (dtype, vec), dim=mesh.n_cells, device=mesh.device,
           inputs=[basis_gradients(mesh, dtype, points), mesh.warp_cells(), u], outputs=[out])
    return out


def divergence(mesh: Mesh, field: wp.array, points: wp.array | None = None) -> wp.array:
    r"""(n,) integrated divergence $(\operatorname{div} X)_i = -\sum_T |T|\nabla\lambda_i\cdot X_T$
    of the cell vector field ``field`` (m,) (Warp vectors of float32 or float64; NumPy input
    of shape (m, d) is taken as float64); $\operatorname{div}(\nabla u) = -K u$.

    Args:
        mesh: the mesh (n vertices, m cells).
        field: cell vectors (m,) of ``vec{d}``; another length, dtype or device is refused.
        points: vertex positions (n,) of ``vec{d}`` of the dtype of ``field``, or a NumPy
            (n, d) array (default: ``mesh.points``); another shape, dtype or device is
            refused.
    """
    scalar = getattr(field.dtype, "_wp_scalar_type_", None) if isinstance(field, wp.array) else None
    dtype = scalar if scalar in (wp.float32, wp.float64) else wp.float64
    vec = _VEC[(mesh.dim, dtype)]
    field = _mesh_array(mesh, field, "field", mesh.n_cells, "cell", vec)
    out = wp.zeros(mesh.n_vertices, dtype=dtype, device=mesh.device)
    launch(K.divergence_kernel, (dtype, vec), dim=mesh.n_cells, device=mesh.device,
           inputs=[basis_gradients(mesh, dtype, points), mesh.warp_cells(),
                   cell_measures(mesh, dtype, points), field], outputs=[out])
    return out


def to_scipy(A: wps.BsrMatrix) -> sp.csr_matrix:
    """``scipy.sparse.csr_matrix`` copy (on the host) of ``A``, a 1x1-block ``BsrMatrix``
    (n_rows, n_cols) on any device, such as the operators above return: the mesh package's
    name for :func:`~physml.solvers.linalg.csr_to_scipy`."""
    return csr_to_scipy(A)
