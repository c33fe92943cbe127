r"""Warp kernels of the P1 (linear Lagrange) operators on triangles and tetrahedra.

With $\lambda_i$ the barycentric coordinates of a cell $T$ and $|T|$ its area or volume:

- stiffness (cotangent Laplacian): $K^T_{ij} = |T|\,\nabla\lambda_i\cdot\nabla\lambda_j$;
  on a triangle $K^T_{ij} = -\tfrac12\cot\theta_k$ for $i \ne j$ ($\theta_k$ the angle at the
  third vertex) and $K^T_{ii} = -\sum_{j\ne i} K^T_{ij}$;
- consistent mass: $M^T_{ij} = |T|(1 + \delta_{ij})/((k+1)k)$ for $k+1$ vertices per cell
  ($|T|/12$ and $|T|/20$ off the diagonal);
- lumped mass: $|T|/(k+1)$ to each vertex;
- cell gradient of a P1 field: $\nabla u|_T = \sum_i u_i \nabla\lambda_i$;
- integrated divergence of a cell vector field: $(\operatorname{div} X)_i =
  -\sum_T |T|\,\nabla\lambda_i\cdot X_T$, so that $-K = \operatorname{div}\circ\nabla$.

Element kernels write one COO triplet value per (cell, i, j), at ``c*k*k + i*k + j``; the
summing into CSR goes through each triplet's slot
(:class:`physml.solvers.mesh.Pattern`, ``scatter_add_kernel``), or straight from the cell for a
triangle stiffness off the tape (``triangle_stiffness_csr_kernel``). Own kernels rather than
``warp.fem.integrate``: a bilinear form assembled by ``warp.fem`` into a ``BsrMatrix`` gets zero
gradient with respect to vertex positions (bilinear forms are not differentiable and ``bsr_mv``
has no backward), while these element kernels differentiate through ``wp.Tape`` / ``adjoint``
launches, which is what :mod:`physml.mesh_bridge` uses (the sums into CSR have no backward:
the bridge maps the CSR values' cotangent back to the triplets through the slots). Kernels are
generic over the vertex type (``vec2``/``vec3`` of float32/float64); every overload is declared
below, before any launch, so the module compiles once.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from ..kernel_launch import specialize


# Twice the area of the triangle spanned by the edges a and b: $|a \\times b|$, from the
# products of their components (one overload per vector type). Lagrange's identity
# $\\sqrt{|a|^2|b|^2 - (a\\cdot b)^2}$ says the same in any dimension, but subtracts two nearly
# equal squares on a thin triangle: with height 1e-8 of a unit edge it lost half the digits of
# the area in float64, and gave NaN below 1e-9 (1e-4 in float32), on meshes that pass the
# checks; the cross product keeps the relative error of the area near the rounding unit.
@wp.func
def twice_area(a: wp.vec2f, b: wp.vec2f):
    return wp.abs(a[0] * b[1] - a[1] * b[0])


@wp.func
def twice_area(a: wp.vec2d, b: wp.vec2d):  # noqa: F811 (an overload)
    return wp.abs(a[0] * b[1] - a[1] * b[0])


@wp.func
def twice_area(a: wp.vec3f, b: wp.vec3f):  # noqa: F811 (an overload)
    return wp.length(wp.cross(a, b))


@wp.func
def twice_area(a: wp.vec3d, b: wp.vec3d):  # noqa: F811 (an overload)
    return wp.length(wp.cross(a, b))


@wp.func
def triangle_cotangents(x0: Any, x1: Any, x2: Any):
    """Cotangents of the angles at x0, x1, x2 of a triangle in 2D or 3D, and twice its area
    $2|T| = |e_1 \\times e_2|$ (:func:`twice_area`)."""
    e0 = x2 - x1
    e1 = x0 - x2
    e2 = x1 - x0
    d = wp.dot(e1, e2)
    two_area = twice_area(e1, e2)
    return wp.vector(
        -d / two_area, -wp.dot(e2, e0) / two_area, -wp.dot(e0, e1) / two_area, two_area
    )


@wp.func
def triangle_basis_gradient(xi: Any, xj: Any, xk: Any):
    """$\\nabla\\lambda_k$: the height vector from edge (xi, xj) to xk over its squared length."""
    e = xj - xi
    w = xk - xi
    h = w - (wp.dot(w, e) / wp.dot(e, e)) * e
    return h / wp.dot(h, h)


@wp.func
def tet_basis_gradient(a: Any, b: Any, six_volume: Any):
    """$\\nabla\\lambda$ of the vertex whose opposite-face edges (from vertex 0) are a, b."""
    return wp.cross(a, b) / six_volume


@wp.func
def triangle_stiffness_weights(x0: Any, x1: Any, x2: Any, half: Any):
    """Off-diagonal stiffness entries $(K_{01}, K_{02}, K_{12})$ of the triangle (x0, x1, x2):
    minus half the cotangents of the angles at x2, x1, x0; ``half`` = 0.5 in the output dtype."""
    cot = triangle_cotangents(x0, x1, x2)
    return wp.vector(-half * cot[2], -half * cot[1], -half * cot[0])


@wp.func
def triangle_stiffness_matrix(x0: Any, x1: Any, x2: Any, half: Any):
    """The element stiffness matrix (3, 3) of the triangle (x0, x1, x2): the weights of
    :func:`triangle_stiffness_weights` off the diagonal, minus their row sums on it."""
    w = triangle_stiffness_weights(x0, x1, x2, half)
    return wp.matrix(-(w[0] + w[1]), w[0], w[1],
                     w[0], -(w[0] + w[2]), w[2],
                     w[1], w[2], -(w[1] + w[2]), shape=(3, 3))


@wp.kernel
def triangle_stiffness_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                              out: wp.array(dtype=Any)):
    """Cotangent stiffness triplets. Reads x (n,), cells (m, 3); writes out (9 m,)."""
    c = wp.tid()
    e = triangle_stiffness_matrix(x[cells[c, 0]], x[cells[c, 1]], x[cells[c, 2]],
                                  out.dtype(0.5))
    for i in range(3):
        for j in range(3):
            out[9 * c + 3 * i + j] = e[i, j]


@wp.func_native(
    """
#if !defined(__CUDA_ARCH__)
    if (c < cells.shape[0]) {
        const int k = cells.shape[1];
        const int* cell = cells.data + c * k;
        const int* s = slots.data + c * k * k;
        for (int a = 0; a < k; ++a) {
            __builtin_prefetch(x.data + cell[a]);
            __builtin_prefetch(out.data + s[a * k], 1);
        }
    }
#endif
    """
)
def prefetch_cell(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                  slots: wp.array(dtype=wp.int32), out: wp.array(dtype=Any), c: int):
    """CPU hint to load cell c's vertices ``x[cells[c, a]]`` and the first value of each of its
    rows ``out[slots[(c k + a) k]]`` into cache (no effect on CUDA, nor past the last cell).

    Called a few cells ahead of the one summed: on a mesh whose vertex numbering is not local
    (an icosphere's midpoints are numbered level by level) those loads miss the cache, and
    issuing them early overlaps the misses. Native: Warp has no prefetch builtin."""
    ...


@wp.kernel(enable_backward=False)
def triangle_stiffness_csr_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                                  slots: wp.array(dtype=wp.int32), out: wp.array(dtype=Any)):
    """Cotangent stiffness summed straight into CSR values: the entries of
    ``triangle_stiffness_kernel``, in its order, added to ``out[slots[9 c + j]]``.

    Reads x (n,), cells (m, 3), slots (9 m,) (:class:`~physml.solvers.mesh.Pattern`);
    accumulates into out (nnz,) (zero it first). For an assembly off the tape: it skips
    writing and re-reading the (9 m,) triplet array, and prefetches the memory of the cell 8
    ahead (:func:`prefetch_cell`). On the CPU one thread adds cell by cell, in the order of
    ``scatter_add_kernel`` over the triplets, so the sums are the same bit for bit.
    """
    c = wp.tid()
    prefetch_cell(x, cells, slots, out, c + 8)
    e = triangle_stiffness_matrix(x[cells[c, 0]], x[cells[c, 1]], x[cells[c, 2]],
                                  out.dtype(0.5))
    for i in range(3):
        for j in range(3):
            wp.atomic_add(out, slots[9 * c + 3 * i + j], e[i, j])


@wp.kernel
def triangle_mass_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                         out: wp.array(dtype=Any)):
    """Consistent mass triplets. Reads x (n,), cells (m, 3); writes out (9 m,)."""
    c = wp.tid()
    cot = triangle_cotangents(x[cells[c, 0]], x[cells[c, 1]], x[cells[c, 2]])
    off = out.dtype(cot[3]) / out.dtype(24.0)
    for i in range(3):
        for j in range(3):
            out[9 * c + 3 * i + j] = wp.where(i == j, off + off, off)


@wp.func
def tet_edges(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32), c: int):
    """The edges $e_k = x_k - x_0$ (k = 1, 2, 3) of tetrahedron c; $e_1 \\cdot (e_2 \\times
    e_3)$ is six times its signed volume."""
    x0 = x[cells[c, 0]]
    return x[cells[c, 1]] - x0, x[cells[c, 2]] - x0, x[cells[c, 3]] - x0


@wp.kernel
def tet_stiffness_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                         out: wp.array(dtype=Any)):
    """P1 stiffness triplets. Reads x (n,), cells (m, 4); writes out (16 m,)."""
    c = wp.tid()
    e1, e2, e3 = tet_edges(x, cells, c)
    six_volume = wp.dot(e1, wp.cross(e2, e3))
    g1 = tet_basis_gradient(e2, e3, six_volume)
    g2 = tet_basis_gradient(e3, e1, six_volume)
    g3 = tet_basis_gradient(e1, e2, six_volume)
    g = wp.matrix_from_rows(-(g1 + g2 + g3), g1, g2, g3)
    volume = wp.abs(six_volume) / out.dtype(6.0)
    for i in range(4):
        for j in range(4):
            out[16 * c + 4 * i + j] = volume * wp.dot(g[i], g[j])


@wp.kernel
def tet_mass_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                    out: wp.array(dtype=Any)):
    """Consistent mass triplets. Reads x (n,), cells (m, 4); writes out (16 m,)."""
    c = wp.tid()
    e1, e2, e3 = tet_edges(x, cells, c)
    off = wp.abs(wp.dot(e1, wp.cross(e2, e3))) / out.dtype(120.0)
    for i in range(4):
        for j in range(4):
            out[16 * c + 4 * i + j] = wp.where(i == j, off + off, off)


@wp.kernel
def triangle_basis_gradients_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                                    out: wp.array2d(dtype=Any)):
    """$\\nabla\\lambda_i$ of each triangle (2D or 3D). Reads x (n,), cells (m, 3); writes
    out (m, 3) vectors."""
    c, i = wp.tid()
    out[c, i] = triangle_basis_gradient(
        x[cells[c, (i + 1) % 3]], x[cells[c, (i + 2) % 3]], x[cells[c, i]]
    )


@wp.kernel
def tet_basis_gradients_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                               out: wp.array2d(dtype=Any)):
    """$\\nabla\\lambda_i = n/(n\\cdot(x_i - a))$, n the normal of the face (a, b, d) opposite
    $x_i$. Reads x (n,), cells (m, 4); writes out (m, 4) vectors."""
    c, i = wp.tid()
    a = x[cells[c, (i + 1) % 4]]
    n = wp.cross(x[cells[c, (i + 2) % 4]] - a, x[cells[c, (i + 3) % 4]] - a)
    out[c, i] = n / wp.dot(x[cells[c, i]] - a, n)


@wp.kernel
def cell_gradient_kernel(grad: wp.array2d(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                         u: wp.array(dtype=Any), out: wp.array(dtype=Any)):
    """$\\nabla u|_T = \\sum_i u_i\\nabla\\lambda_i$. Reads grad (m, k) basis gradients,
    cells (m, k), u (n,); writes out (m,) vectors."""
    c = wp.tid()
    g = out.dtype()
    for i in range(cells.shape[1]):
        g = g + u[cells[c, i]] * grad[c, i]
    out[c] = g


@wp.kernel
def divergence_kernel(grad: wp.array2d(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                      measure: wp.array(dtype=Any), field: wp.array(dtype=Any),
                      out: wp.array(dtype=Any)):
    """$(\\operatorname{div} X)_i \\mathrel{-}= |T|\\,\\nabla\\lambda_i\\cdot X_T$.
    Reads grad (m, k), cells (m, k), measure (m,), field (m,) vectors; accumulates into
    out (n,) (zero it first)."""
    c = wp.tid()
    for i in range(cells.shape[1]):
        wp.atomic_add(out, cells[c, i], -measure[c] * wp.dot(grad[c, i], field[c]))


@wp.kernel
def triangle_measure_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                            out: wp.array(dtype=Any)):
    """Triangle areas (2D or 3D). Reads x (n,), cells (m, 3); writes out (m,)."""
    c = wp.tid()
    cot = triangle_cotangents(x[cells[c, 0]], x[cells[c, 1]], x[cells[c, 2]])
    out[c] = out.dtype(cot[3]) / out.dtype(2.0)


@wp.kernel
def tet_measure_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                       out: wp.array(dtype=Any)):
    """Tetrahedron volumes. Reads x (n,), cells (m, 4); writes out (m,)."""
    c = wp.tid()
    x0 = x[cells[c, 0]]
    e1 = x[cells[c, 1]] - x0
    out[c] = wp.abs(wp.dot(e1, wp.cross(x[cells[c, 2]] - x0, x[cells[c, 3]] - x0))) / out.dtype(
        6.0
    )


@wp.kernel
def lumped_mass_kernel(cells: wp.array2d(dtype=wp.int32), measure: wp.array(dtype=Any),
                       out: wp.array(dtype=Any)):
    """$m_i \\mathrel{+}= |T|/(k+1)$. Reads cells (m, k+1), measure (m,); accumulates into out
    (n,) (zero it first)."""
    c = wp.tid()
    k = cells.shape[1]
    for i in range(k):
        wp.atomic_add(out, cells[c, i], measure[c] / out.dtype(k))


@wp.kernel
def face_normal_kernel(x: wp.array(dtype=Any), cells: wp.array2d(dtype=wp.int32),
                       out: wp.array(dtype=Any)):
    """Unit normal $(x_1 - x_0)\\times(x_2 - x_0)/|\\cdot|$ of surface triangles. Reads x (n,),
    cells (m, 3); writes out (m,)."""
    c = wp.tid()
    x0 = x[cells[c, 0]]
    out[c] = wp.normalize(wp.cross(x[cells[c, 1]] - x0, x[cells[c, 2]] - x0))


@wp.func_native(
    """
    const int* cp = cells.data;
    int* first = incidence_start.data;
    int* inc = incidence.data;
    int* ip = indptr.data;
    int* col = indices.data;
    int* sl = slots.data;
    const int mk = m * k;
    for (int e = 0; e < mk; ++e) ++first[cp[e] + 1];
    for (int i = 0; i < n; ++i) first[i + 1] += first[i];
    for (int e = 0; e < mk; ++e) inc[first[cp[e]]++] = e;
    int nnz = 0;
    ip[0] = 0;
    for (int i = 0; i < n; ++i) {
        const int begin = i ? first[i - 1] : 0;
        const int end = first[i];
        int* row = col + nnz;
        int len = 1;
        row[0] = i;
        for (int p = begin; p < end; ++p) {
#if !defined(__CUDA_ARCH__)
            if (p + 16 < mk) {
                const int ahead = inc[p + 16];
                __builtin_prefetch(cp + (ahead / k) * k);
                __builtin_prefetch(sl + ahead * k, 1);
            }
#endif
            const int* cell = cp + (inc[p] / k) * k;
            for (int q = 0; q < k; ++q) {
                const int j = cell[q];
                int s = len - 1;
                while (s >= 0 && row[s] > j) --s;
                if (s >= 0 && row[s] == j) continue;
                for (int r = len; r > s + 1; --r) row[r] = row[r - 1];
                row[s + 1] = j;
                ++len;
            }
        }
        for (int p = begin; p < end; ++p) {
            const int e = inc[p];
            const int* cell = cp + (e / k) * k;
            for (int q = 0; q < k; ++q) {
                int s = 0;
                while (row[s] != cell[q]) ++s;
                sl[e * k + q] = nnz + s;
            }
        }
        nnz += len;
        ip[i + 1] = nnz;
    }
    """
)
def build_pattern(cells: wp.array2d(dtype=wp.int32), n: int, m: int, k: int,
                  incidence_start: wp.array(dtype=wp.int32), incidence: wp.array(dtype=wp.int32),
                  indptr: wp.array(dtype=wp.int32), indices: wp.array(dtype=wp.int32),
                  slots: wp.array(dtype=wp.int32)): ...


@wp.kernel(enable_backward=False)
def pattern_kernel(cells: wp.array2d(dtype=wp.int32), n: int, m: int, k: int,
                   incidence_start: wp.array(dtype=wp.int32), incidence: wp.array(dtype=wp.int32),
                   indptr: wp.array(dtype=wp.int32), indices: wp.array(dtype=wp.int32),
                   slots: wp.array(dtype=wp.int32)):
    """CSR topology of the P1 matrices of ``cells`` (m, k) over n vertices, and the CSR slot of
    every triplet, in one pass on one thread (launch with dim 1, on the CPU).

    Row i holds i and every vertex sharing a cell with i, columns sorted. Steps: the vertex-cell
    incidence by a counting sort of the m k cell corners (``incidence_start`` (n + 1,) zeroed,
    ``incidence`` (m k,) corner ids ``c k + a``, increasing c within each vertex); then row by
    row, the corners' cell vertices inserted into the row kept sorted and duplicate-free (a
    handful per row: insertion beats a general sort), and the slot of triplet
    ``(c k + a) k + b`` found by scanning the row, which is in cache. Writes ``indptr``
    (n + 1,), ``indices`` (capacity n + m k (k - 1), the first ``indptr[n]`` used) and ``slots``
    (m k^2,); the cell and the slots of the corner 16 ahead are prefetched, as they are far
    apart in memory. Linear time, each row built and scanned while in cache, where SciPy's COO
    to CSR conversions (plus transpose, identity and sort) and a later scan of the rows cell by
    cell fetched every row from memory again. A native loop: Warp's generated indexing made the
    same loop several times slower on the CPU (warp-lang 1.19); Warp launches on the CPU run
    on one thread anyway. The pattern is built on the CPU for every device (then copied)."""
    build_pattern(cells, n, m, k, incidence_start, incidence, indptr, indices, slots)


@wp.func_native(
    """
    const int* sp = slots.data;
    const auto* vp = values.data;
    for (int i = t; i < n; i += stride) wp::atomic_add(out.data + sp[i], vp[i]);
    """
)
def scatter_rows(slots: wp.array(dtype=wp.int32), values: wp.array(dtype=Any), t: int, n: int,
                 stride: int, out: wp.array(dtype=Any)): ...


@wp.kernel(enable_backward=False)
def scatter_add_kernel(slots: wp.array(dtype=wp.int32), values: wp.array(dtype=Any), n: int,
                       stride: int, out: wp.array(dtype=Any)):
    """out[slots[i]] += values[i] for i = t, t + T, ... < n: sums the triplet values into the
    CSR values (out zeroed before). A native loop, as pattern_kernel. On the CPU one thread
    adds in triplet order, so the sums are reproducible; on CUDA the order of the atomic adds,
    and so the round-off, can vary between runs."""
    scatter_rows(slots, values, wp.tid(), n, stride, out)


def _overload_all() -> None:
    cells = wp.array2d(dtype=wp.int32)
    for T, vecs in ((wp.float32, (wp.vec2f, wp.vec3f)), (wp.float64, (wp.vec2d, wp.vec3d))):
        s = wp.array(dtype=T)
        for V in vecs:
            x, g = wp.array(dtype=V), wp.array2d(dtype=V)
            for kernel in (triangle_stiffness_kernel, triangle_mass_kernel,
                           triangle_measure_kernel):
                specialize(kernel, (T, V), {"x": x, "cells": cells, "out": s})
            specialize(triangle_basis_gradients_kernel, (T, V), {"x": x, "cells": cells, "out": g})
            specialize(cell_gradient_kernel, (T, V), {"grad": g, "cells": cells, "u": s, "out": x})
            specialize(divergence_kernel, (T, V),
                       {"grad": g, "cells": cells, "measure": s, "field": x, "out": s})
        x3 = wp.array(dtype=vecs[1])
        for kernel in (tet_stiffness_kernel, tet_mass_kernel, tet_measure_kernel):
            specialize(kernel, (T, vecs[1]), {"x": x3, "cells": cells, "out": s})
        specialize(tet_basis_gradients_kernel, (T, vecs[1]),
                   {"x": x3, "cells": cells, "out": wp.array2d(dtype=vecs[1])})
        specialize(face_normal_kernel, (T, vecs[1]), {"x": x3, "cells": cells, "out": x3})
        specialize(lumped_mass_kernel, T, {"cells": cells, "measure": s, "out": s})
        specialize(scatter_add_kernel, T, {"values": s, "out": s})
        for V in vecs:
            specialize(triangle_stiffness_csr_kernel, (T, V),
                       {"x": wp.array(dtype=V), "cells": cells, "out": s})


_overload_all()
