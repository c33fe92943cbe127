r"""Shared Warp kernels of the Krylov solvers (dot products, the residual, the scalar table's
cursor, the Jacobi scale, the CSR product) and their launch helpers.

The conjugate-gradient kernels are in :mod:`~physml.solvers.linalg.cg_kernels`, the BiCGStab
ones in :mod:`~physml.solvers.linalg.bicgstab_kernels`; what follows applies to all of them.

Why not ``warp.optim.linear``: its dot products reduce with tiles, which the CPU emulates at a
cost proportional to the tile size (``warp.optim.linear.cg`` took 1779 s where
``scipy.sparse.linalg.cg`` took 54.5 s for the same 1470 iterations of a 512² Poisson problem,
warp-lang 1.19). These kernels reduce with per-thread partial sums instead: thread
$t < T$ of a launch of ``dim=T`` visits $i = t, t + T, t + 2T, \dots < n$, accumulates in float64
and adds its sum to the scalar table with one ``wp.atomic_add``. On the CPU, where Warp runs a
launch on one thread, $T = 1$ (one cache-friendly sweep); on CUDA $T$ is a few thousand
(coalesced loads, few atomics) — see :func:`reduction_threads`. Each update is fused with the
dot product that follows it, so an iteration reads each vector as few times as it can. The
loops of the CG kernels and of the CSR product are native snippets (``wp.func_native``) over the
raw pointers of contiguous arrays: Warp's generated indexing (negative-index wrap and byte strides
on every access) made them 2–10× slower than SciPy/NumPy on the CPU, so the CG would have lost to
SciPy's per iteration; the snippets compile for CPU and CUDA alike. Their reductions keep four
partial sums (entries $i, i + T, i + 2T, i + 3T$ of each step of $4T$): one float64 sum is a chain
of dependent additions, which on the CPU made a dot product of $2^{16}$ entries 4× slower than
NumPy's.

Scalars stay on the device in a float64 table ``s`` of shape ``(k + 1, columns)``: row ``j``
holds the scalars of local iteration ``j`` of a block of ``k`` iterations, and the host reads the
table once per block (:class:`ScalarTable`). The kernels take ``j`` from a one-entry int32
*cursor* on the device, ``j = cursor[0] + shift``, not as a launch argument: one iteration's
launches are then the same for every j, so a solve records each of them once and replays them
every iteration, while a one-thread launch advances the cursor at the end of each iteration
and another starts the next block. A solver's kernels compute their step lengths from the table,
and freeze (step length 0) once the squared residual ``s[j, 0]`` reaches ``tol2 = limit[0]``
(a one-entry device array too, so the recorded launches serve any tolerance), so the iterate
stays the first one that met the tolerance even though the host only looks every ``k``
iterations.
Vectors are float32 or float64 (``wp.array[Any]``, overloads declared in each kernel module).
The loops update vectors in place and are never recorded on a tape (their adjoint is a
transpose solve).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import warp as wp

from ..kernel_launch import launch, specialize
from ..replay import Replay

RESIDUAL, BNORM = 0, 3
"""Columns of the scalar table shared by every solver: $\\|r_j\\|^2$ and $\\|b\\|^2$ (row 0)."""


def reduction_threads(n: int, device: wp.context.Device) -> int:
    """Threads $T$ of a reducing launch over $n$ entries: 1 on the CPU, ≤ 16384 on CUDA."""
    return min(n, 16384) if device.is_cuda else 1


@wp.func
def ratio(num: wp.float64, den: wp.float64, active: bool):
    """num / den if ``active`` and den ≠ 0, else 0 (a frozen or broken-down step)."""
    if active and den != wp.float64(0.0):
        return num / den
    return wp.float64(0.0)


def partial_sums(update: str, terms: dict[str, str]) -> str:
    """C++ of a strided loop with fused reductions: for k = t, t + T, ... < n run ``update``,
    add each double ``terms[col]`` to one of four partial sums of its own, and add each total to
    ``s[j, col]``. With T = 1 (the CPU) the same loop runs with a stride known to be 1, so the
    compiler can vectorise it over the restrict-qualified pointers; the sums are the same."""
    sums = "".join(f"double {_acc(c)}[4] = {{0.0, 0.0, 0.0, 0.0}};" for c in terms)
    add = "".join(f"{_acc(c)}[u] += {term};" for c, term in terms.items())
    add_tail = "".join(f"{_acc(c)}[0] += {term};" for c, term in terms.items())
    totals = "".join(
        f"wp::atomic_add(s, j, {c}, ({_acc(c)}[0] + {_acc(c)}[1]) + ({_acc(c)}[2] + {_acc(c)}[3]));"
        for c in terms
    )
    loop = f"""
        for (; i + 3 * STEP < n; i += 4 * STEP)
            for (int u = 0; u < 4; ++u) {{
                const int k = i + u * STEP;
                {update}
                {add}
            }}
        for (int k = i; k < n; k += STEP) {{
            {update}
            {add_tail}
        }}
    """
    return f"""
    {sums}
    int i = t;
    if (stride == 1) {{ {loop.replace("STEP", "1")} }}
    else {{ {loop.replace("STEP", "stride")} }}
    {totals}
    """


def _acc(col: str) -> str:
    return f"acc_{col}"


@wp.func_native(
    "const auto* __restrict__ ap = a.data; const auto* __restrict__ bp = b.data;"
    + partial_sums("", {"col": "double(ap[k]) * double(bp[k])"})
)
def dot_rows(
    a: wp.array(dtype=Any),
    b: wp.array(dtype=Any),
    t: int,
    n: int,
    stride: int,
    j: int,
    col: int,
    s: wp.array2d(dtype=wp.float64),
): ...


@wp.kernel(enable_backward=False)
def dot_kernel(
    a: wp.array(dtype=Any),
    b: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    shift: int,
    col: int,
    s: wp.array2d(dtype=wp.float64),
):
    """s[j, col] += a · b with j = cursor[0] + shift. Reads a, b, cursor; accumulates into s
    (native loop, as csr_matvec_kernel)."""
    dot_rows(a, b, wp.tid(), n, stride, cursor[0] + shift, col, s)


@wp.kernel(enable_backward=False)
def residual_kernel(
    b: wp.array(dtype=Any),
    n: int,
    stride: int,
    s: wp.array2d(dtype=wp.float64),
    r: wp.array(dtype=Any),
):
    """r = b - r (r holds A x on entry); s[0, 0] += r · r, s[0, 3] += b · b."""
    t = wp.tid()
    rr = wp.float64(0.0)
    bb = wp.float64(0.0)
    for i in range(t, n, stride):
        r[i] = b[i] - r[i]
        rr += wp.float64(r[i]) * wp.float64(r[i])
        bb += wp.float64(b[i]) * wp.float64(b[i])
    wp.atomic_add(s, 0, 0, rr)
    wp.atomic_add(s, 0, 3, bb)


@wp.kernel(enable_backward=False)
def advance_kernel(cursor: wp.array(dtype=wp.int32)):
    """cursor[0] += 1: the next local iteration (one thread)."""
    cursor[0] = cursor[0] + 1


@wp.kernel(enable_backward=False)
def roll_kernel(cursor: wp.array(dtype=wp.int32), s: wp.array2d(dtype=wp.float64)):
    """Start a new block after m = cursor[0] iterations: row 0 = row m, the other rows zeroed,
    cursor[0] = 0 (one thread: the table has a few dozen entries)."""
    m = cursor[0]
    for c in range(s.shape[1]):
        s[0, c] = s[m, c]
        for j in range(1, s.shape[0]):
            s[j, c] = wp.float64(0.0)
    cursor[0] = 0


@wp.func_native(
    "const auto* __restrict__ dp = d.data; const auto* __restrict__ rp = r.data;"
    "auto* __restrict__ zp = z.data;"
    + partial_sums("zp[k] = dp[k] * rp[k];", {"col": "double(rp[k]) * double(zp[k])"})
)
def scale_rows(
    d: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
    t: int,
    n: int,
    stride: int,
    j: int,
    col: int,
    s: wp.array2d(dtype=wp.float64),
    z: wp.array(dtype=Any),
): ...


@wp.kernel(enable_backward=False)
def diagonal_scale_kernel(
    d: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    shift: int,
    col: int,
    s: wp.array2d(dtype=wp.float64),
    z: wp.array(dtype=Any),
):
    """z = d ⊙ r (the Jacobi preconditioner, d = 1/diag A) and s[j, col] += r · z with
    j = cursor[0] + shift, the product CG takes next, fused as in csr_matvec_kernel. Reads d, r,
    cursor; writes z."""
    scale_rows(d, r, wp.tid(), n, stride, cursor[0] + shift, col, s, z)


@wp.kernel(enable_backward=False)
def reciprocal_kernel(d: wp.array(dtype=Any), n: int, stride: int, out: wp.array(dtype=Any)):
    """out = 1 / d elementwise. Reads d; writes out."""
    t = wp.tid()
    for i in range(t, n, stride):
        out[i] = d.dtype(1.0) / d[i]


@wp.func_native(
    """
    const auto* __restrict__ xp = x.data;
    const auto* __restrict__ vp = values.data;
    const int* __restrict__ op = offsets.data;
    const int* __restrict__ cp = columns.data;
    auto* __restrict__ yp = y.data;
    double dot = 0.0;
    if (stride == 1) {
        for (int i = 0, start = op[0]; i < n; ++i) {
            const int end = op[i + 1];
            decltype(vp[0] * xp[0]) acc = 0;
            for (int k = start; k < end; ++k) acc += vp[k] * xp[cp[k]];
            start = end;
            yp[i] = acc;
            dot += double(xp[i]) * double(acc);
        }
    } else {
        for (int i = t; i < n; i += stride) {
            decltype(vp[0] * xp[0]) acc = 0;
            for (int k = op[i]; k < op[i + 1]; ++k) acc += vp[k] * xp[cp[k]];
            yp[i] = acc;
            dot += double(xp[i]) * double(acc);
        }
    }
    wp::atomic_add(s, j, col, dot);
    """
)
def csr_rows(
    x: wp.array(dtype=Any),
    values: wp.array(dtype=Any),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    t: int,
    n: int,
    stride: int,
    j: int,
    col: int,
    s: wp.array2d(dtype=wp.float64),
    y: wp.array(dtype=Any),
): ...


@wp.kernel(enable_backward=False)
def csr_matvec_kernel(
    x: wp.array(dtype=Any),
    values: wp.array(dtype=Any),
    offsets: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    n: int,
    stride: int,
    cursor: wp.array(dtype=wp.int32),
    shift: int,
    col: int,
    s: wp.array2d(dtype=wp.float64),
    y: wp.array(dtype=Any),
):
    """y_i = sum_{k in row i} values_k x_{columns_k} (CSR, contiguous arrays), rows t, t + T, ...;
    and s[j, col] += x · y with j = cursor[0] + shift, the product CG takes next (p · Ap), fused
    so that it costs no launch and no pass of its own (a plain product adds it to a scratch
    cell).

    The row loop is a native snippet over raw pointers: Warp's generated indexing (negative-index
    wrap and byte strides on every access) made the same loop about 3× slower than SciPy's CSR
    product on the CPU (256² Poisson, warp-lang 1.19); the snippet matches it.
    """
    csr_rows(x, values, offsets, columns, wp.tid(), n, stride, cursor[0] + shift, col, s, y)


def vector_types(dtype: type, *names: str, table: bool = True) -> dict[str, Any]:
    """The argument types of a kernel's ``dtype`` overload: the named vectors of ``dtype``
    and, with ``table``, the float64 scalar table ``s`` (for :func:`specialize`)."""
    scalars = {"s": wp.array2d(dtype=wp.float64)} if table else {}
    return {**scalars, **dict.fromkeys(names, wp.array(dtype=dtype))}


def _overload_all() -> None:
    for T in (wp.float32, wp.float64):
        specialize(dot_kernel, T, vector_types(T, "a", "b"))
        specialize(residual_kernel, T, vector_types(T, "b", "r"))
        specialize(diagonal_scale_kernel, T, vector_types(T, "d", "r", "z"))
        specialize(reciprocal_kernel, T, vector_types(T, "d", "out", table=False))
        specialize(csr_matvec_kernel, T, vector_types(T, "x", "values", "y"))


_overload_all()


def sweep(kernel: wp.Kernel, arrays: list[wp.array], args: list, outputs: list) -> None:
    """Launch a strided kernel over the vectors ``arrays`` (length n, device and dtype of the
    first): its inputs are ``arrays``, then ``n, stride``, then ``args``; then ``outputs``."""
    _launch_sweep(kernel, arrays, args, outputs, record=False)


def recorded_sweep(
    kernel: wp.Kernel, arrays: list[wp.array], args: list, outputs: list
) -> Callable[[], None]:
    """:func:`sweep` recorded, not run: the returned callable replays it (:class:`Replay`).

    A replay skips the packing of the arguments, which is most of a launch's cost on vectors of
    up to some 10^5 entries (on the CPU about 1 µs a replay against 60-200 µs a ``wp.launch``,
    warp-lang 1.19); the arrays and arguments are fixed at recording.
    """
    return Replay(_launch_sweep(kernel, arrays, args, outputs, record=True))


def _launch_sweep(kernel, arrays, args, outputs, record: bool) -> wp.Launch | None:
    x = arrays[0]
    n, device = x.shape[0], x.device
    stride = reduction_threads(n, device)
    return launch(
        kernel,
        x.dtype,
        dim=stride,
        inputs=[*arrays, n, stride, *args],
        outputs=outputs,
        device=device,
        record_tape=False,
        record_cmd=record,
    )
