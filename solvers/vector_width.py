"""Wide vectors for the native CPU loops that are vector arithmetic.

Warp compiles its CPU modules for the host (``-march=native``), but LLVM keeps to 256-bit
vectors on AVX-512 CPUs unless told otherwise (512-bit instructions once lowered the clock of
older Xeons). Where a module's loops are arithmetic on contiguous arrays, 512-bit vectors do
twice the work per instruction on the CPUs that have them; a CPU without AVX-512 is unaffected.
Summation order and rounding do not depend on the vector width, so results stay bit for bit.

A module's options replace Warp's global ``wp.config.cpu_compiler_flags`` for that module, so
the flags are read when the module is imported: set ``wp.config.cpu_compiler_flags`` (say
``""`` for a portable build) before importing physml for these modules to follow it.
"""

from __future__ import annotations

import warp as wp

WIDE_VECTORS = "-mprefer-vector-width=512"
"""The compiler flag that lets LLVM use 512-bit vectors where the CPU has them."""


def wide_vector_options() -> dict[str, str]:
    """Options for ``wp.set_module_options``: Warp's CPU compiler flags as they are now (its
    ``-march=native`` default where unset) with :data:`WIDE_VECTORS` added."""
    flags = wp.config.cpu_compiler_flags
    return {"cpu_compiler_flags": f"{'-march=native' if flags is None else flags} {WIDE_VECTORS}"}
