"""Benchmark dataset generation on top of :mod:`physml.solvers` (no PyTorch needed)."""
