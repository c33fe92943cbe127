r"""Expressions from case files, parsed into SymPy and compiled to functions: no ``eval``.

The text is read by Python's own parser (:func:`ast.parse`) and only numbers, allowed names,
``+ - * / **``, unary minus and calls of the functions in :data:`FUNCTIONS` are accepted;
anything else is refused with the offending piece named. The result is a SymPy expression,
compiled by walking its tree into a function of named values that works on PyTorch tensors
(residuals, output transforms) and on NumPy arrays (targets, references) alike.

Derivative symbols: with outputs ``u`` and inputs ``x, y, t``, ``u_x``, ``u_xx``, ``u_xy``,
``u_t``, ``u_xxx``, ``u_xxt``, ``u_xxxx`` ... name partial derivatives of order 1 to
:data:`MAX_DERIVATIVE_ORDER` (each letter one differentiation, in any order); inputs with
longer names have no derivative symbols.

Every name is a real symbol (so ``abs(exp(-t))`` is ``exp(-t)``, not ``exp(re(t))``); a text
may span lines (a YAML block).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import sympy
import torch

FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "exp": sympy.exp, "log": sympy.log,
    "sqrt": sympy.sqrt, "tanh": sympy.tanh, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "abs": sympy.Abs, "atan2": sympy.atan2,
}
"""Functions an expression may call."""

CONSTANTS = {"pi": sympy.pi, "e": sympy.E}

MAX_DERIVATIVE_ORDER = 4
"""The highest order of a derivative symbol (``u_xxxx``: Kuramoto–Sivashinsky, beams)."""

_BINARY = {ast.Add: sympy.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sympy.Mul,
           ast.Div: lambda a, b: a / b, ast.Pow: sympy.Pow}

_NUMERIC = {
    sympy.sin: ("sin", "sin"), sympy.cos: ("cos", "cos"), sympy.tan: ("tan", "tan"),
    sympy.exp: ("exp", "exp"), sympy.log: ("log", "log"), sympy.tanh: ("tanh", "tanh"),
    sympy.sinh: ("sinh", "sinh"), sympy.cosh: ("cosh", "cosh"), sympy.Abs: ("abs", "abs"),
    sympy.atan2: ("atan2", "arctan2"), sympy.atan: ("atan", "arctan"),
}


def parse(text: str | float, allowed: Iterable[str], key: str,
          known: Mapping[str, float] | None = None) -> sympy.Expr:
    """``text`` as a SymPy expression in the names ``allowed``, of which those in ``known``
    (a case's parameters) have fixed values.

    Raises:
        ValueError: a syntax error, a construct outside the allowed grammar, an unknown
            name, or a part of the expression whose names all have ``known`` values that is
            not a finite real number with them (``1/(a - 1)`` at a = 1, ``log(a)`` at a = -1,
            as ``1/0`` written out); the message names ``key`` (and the allowed names, or the
            values used).
    """
    if isinstance(text, (int, float)):
        return sympy.Float(text) if isinstance(text, float) else sympy.Integer(text)
    allowed = sorted(set(allowed))
    text = " ".join(str(text).split())  # one line, no indentation: as written in a YAML block
    too_deep = ValueError(f"{key}: the expression ({len(text)} characters) nests too deeply to "
                          "read; write it with fewer operations (factor common terms)")
    python = text.replace("^", "**")
    # the index in text of each character of python, and one past its end
    index = [i for i, char in enumerate(text) for _ in range(2 if char == "^" else 1)]
    index.append(len(text))
    try:
        tree = ast.parse(python, mode="eval")
    except SyntaxError as err:  # offset: 1-based, 0 (or past the text) where it ended early
        where = (f"at column {index[err.offset - 1] + 1}"
                 if err.offset and err.offset <= len(python) else "at the end")
        raise ValueError(f"{key}: {text!r} is not a valid expression ({err.msg} "
                         f"{where})") from None
    except (RecursionError, MemoryError):  # Python's parser: some 5000 chained operations
        raise too_deep from None
    symbols = set(allowed)  # a SymPy symbol is made for the names read only (of hundreds)
    built = []  # (node, its expression): a constant part found wrong is named as written

    def written(node) -> str:
        """The text of ``node`` as the case wrote it (``^`` where it did)."""
        encoded = python.encode()  # the offsets count UTF-8 bytes
        start = len(encoded[: node.col_offset].decode())
        end = len(encoded[: node.end_col_offset].decode())
        return text[index[start] : index[end - 1] + 1]

    def build(node):
        value = build_node(node)
        built.append((node, value))
        return value

    def build_node(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return sympy.nsimplify(node.value) if isinstance(node.value, int) else \
                sympy.Float(node.value)
        if isinstance(node, ast.Name):
            if node.id in symbols:
                return sympy.Symbol(node.id, real=True)
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            field, _, letters = node.id.rpartition("_")
            if len(letters) > MAX_DERIVATIVE_ORDER and all(
                    f"{field}_{a}" in symbols for a in letters):
                raise ValueError(_too_high_order(node.id, text, key))
            derivative = field in symbols or any(n.startswith(f"{field}_") for n in symbols)
            # u_t, u_xt of a field u: every letter t or another input (single-letter names)
            in_time = node.id == "t" or derivative and "t" in letters and all(
                a == "t" or a in symbols for a in letters)
            long_names = [n for n in allowed if len(n) > 1 and n in letters]
            cure = ""
            if in_time and "t" not in symbols:
                cure = "; the time t and derivatives in it need domain.time: [t0, t1]"
            elif derivative and long_names:
                cure = (f"; derivative symbols exist for single-letter inputs only, so "
                        f"{long_names[0]!r} has none: name that input with one letter "
                        "(domain.space)")
            raise ValueError(f"{key}: unknown symbol {node.id!r} in {text!r}{cure}; allowed: "
                             f"{_allowed_names(allowed)}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base, exponent = build(node.left), build(node.right)
            if base.is_Number and exponent.is_Number:  # in floats: 9**9**9 is no bignum
                return sympy.Float(_finite(lambda: float(base) ** float(exponent), node))
            return sympy.Pow(base, exponent)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](build(node.left), build(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = build(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id not in FUNCTIONS:
                raise ValueError(f"{key}: unknown function {node.func.id!r} in {text!r}; "
                                 f"allowed: {', '.join(FUNCTIONS)}")
            return FUNCTIONS[node.func.id](*(build(a) for a in node.args))
        raise ValueError(f"{key}: {written(node)!r} in {text!r} is not allowed (numbers, "
                         "names, + - * / ** and function calls only)")

    def _finite(value, node) -> float:
        """``value()``, refused unless a finite real number."""
        result = _finite_real(value)
        if result is None:
            raise ValueError(f"{key}: {written(node)!r} in {text!r} is not a finite real "
                             "number")
        return result

    try:
        expr = build(tree.body)
    except TypeError as err:  # a function called with the wrong number of arguments
        raise ValueError(f"{key}: {text!r}: {err}") from None
    except RecursionError:  # a chain of about 1000 operations nests that deep
        raise too_deep from None
    known = dict(known or {})
    for sub in sympy.preorder_traversal(expr):  # constant parts: exp(1000), 1/0, sqrt(-1)
        names = sorted(s.name for s in sub.free_symbols)
        if not set(names) <= known.keys():
            continue
        if sub.is_Number:  # finite as a float too: 1e200*1e200 is exact in SymPy
            finite = bool(sub.is_real and sub.is_finite) and _finite_real(
                lambda sub=sub: float(sub)) is not None
        else:
            finite = _finite_real(lambda sub=sub: compile_expression(sub)(known)) is not None
        if not finite:  # named by the smallest part of the text that holds it
            part = min((n for n, v in built if v.has(sub)),
                       key=lambda n: n.end_col_offset - n.col_offset)
            given = ", ".join(f"{name}={known[name]:g}" for name in names)
            raise ValueError(f"{key}: {written(part)!r} in {text!r} is not a finite real number"
                             + (f" with {given} (parameters)" if names else ""))
    return expr


def _too_high_order(name: str, text: str, key: str) -> str:
    """The refusal of the derivative symbol ``name`` (``u_xxxxx``), of an order above
    :data:`MAX_DERIVATIVE_ORDER`, with the rewrite through an auxiliary field."""
    field, _, letters = name.rpartition("_")
    head, rest = letters[:MAX_DERIVATIVE_ORDER], letters[MAX_DERIVATIVE_ORDER:]
    refused = (f"{key}: {name!r} in {text!r} is a derivative of order {len(letters)}; "
               f"expressions take derivatives up to order {MAX_DERIVATIVE_ORDER}")
    if len(rest) > MAX_DERIVATIVE_ORDER or head.count("t") > 2:  # one field would not do
        return (f"{refused}: introduce fields for intermediate derivatives (each an equation "
                f"such as w - {field}_xx in a system), none of order above "
                f"{MAX_DERIVATIVE_ORDER} or above 2 in t")
    highest = f"{field}_{head}"
    return (f"{refused}: introduce a field w = {highest} (the equation w - {highest} in a "
            f"system) and write w_{rest}")


def _allowed_names(allowed: list[str]) -> str:
    """``allowed`` and the constants as a list for a message, the derivative symbols above
    second order (``u_xxy``: 108 a field with three inputs) summed up by two examples."""
    names = set(allowed)

    def order(name: str) -> int:
        field, _, letters = name.rpartition("_")
        return len(letters) if field and all(f"{field}_{a}" in names for a in letters) else 0

    listed = [name for name in allowed if order(name) <= 2]
    highest = max(map(order, allowed), default=0)
    if highest <= 2:
        return ", ".join(listed + list(CONSTANTS))
    examples = [next(n for n in allowed if order(n) == k) for k in (3, highest)]
    return (f"{', '.join(listed + list(CONSTANTS))} and the derivatives of order 3 to "
            f"{highest} in the same letters ({', '.join(dict.fromkeys(examples))} ...)")


def _finite_real(value: Callable[[], object]) -> float | None:
    """``value()`` if it is a finite real number; None if it is not or cannot be computed
    (overflow, division by zero, a complex result)."""
    try:
        result = value()
    except (OverflowError, ZeroDivisionError, ValueError, TypeError):
        return None
    if isinstance(result, complex) or not math.isfinite(result):
        return None
    return float(result)


def compile_expression(expr: sympy.Expr) -> Callable[[Mapping[str, object]], object]:
    """A function of a mapping name -> value (tensors, arrays or numbers) evaluating ``expr``
    with PyTorch operations on tensors and NumPy operations otherwise."""
    if expr.is_Number or expr.is_NumberSymbol:
        value = float(expr)
        return lambda values: value
    if expr.is_Symbol:
        name = expr.name
        return lambda values: values[name]
    args = [compile_expression(a) for a in expr.args]
    if expr.is_Add:
        return lambda values: _fold(lambda a, b: a + b, [f(values) for f in args])
    if expr.is_Mul:
        return lambda values: _fold(lambda a, b: a * b, [f(values) for f in args])
    if expr.is_Pow:
        base, exponent = args
        if expr.exp == sympy.Rational(1, 2):
            return lambda values: _call("sqrt", "sqrt", base(values))
        return lambda values: _fold(lambda a, b: a**b, [base(values), exponent(values)])
    if expr.func in _NUMERIC:
        torch_name, numpy_name = _NUMERIC[expr.func]
        return lambda values: _call(torch_name, numpy_name, *(f(values) for f in args))
    raise ValueError(f"cannot compile {expr} ({expr.func.__name__})")


def _fold(op, items):
    """``op`` over ``items`` left to right; numbers beside a tensor become tensors of its
    dtype (a Python float would enter an ONNX export as a float32 constant)."""
    like = next((a for a in items if isinstance(a, torch.Tensor)), None)
    if like is not None:
        items = [a if isinstance(a, torch.Tensor) else torch.as_tensor(
            a, dtype=like.dtype, device=like.device) for a in items]
    result = items[0]
    for item in items[1:]:
        result = op(result, item)
    return result


def _call(torch_name: str, numpy_name: str, *args):
    if any(isinstance(a, torch.Tensor) for a in args):
        like = next(a for a in args if isinstance(a, torch.Tensor))
        tensors = [a if isinstance(a, torch.Tensor) else torch.as_tensor(
            a, dtype=like.dtype, device=like.device) for a in args]
        return getattr(torch, torch_name)(*tensors)
    if all(isinstance(a, (int, float)) for a in args) and hasattr(math, numpy_name):
        return getattr(math, numpy_name)(*args)
    return getattr(np, numpy_name)(*args)


def derivative_symbols(outputs: Iterable[str], inputs: Iterable[str],
                       order: int = MAX_DERIVATIVE_ORDER) -> dict[str, tuple[str, ...]]:
    """Derivative symbol names up to ``order``: ``u_x`` -> ("u", "x"), ``u_xy`` ->
    ("u", "x", "y"), ``u_xxxx`` -> ("u", "x", "x", "x", "x") (single-letter inputs; with
    $d$ of them, $d + d^2 + ... + d^{order}$ symbols a field)."""
    inputs = [i for i in inputs if len(i) == 1]
    symbols: dict[str, tuple[str, ...]] = {}
    suffixes = [""]
    for _ in range(order):
        suffixes = [s + i for s in suffixes for i in inputs]
        for output in outputs:
            for suffix in suffixes:
                symbols[f"{output}_{suffix}"] = (output, *suffix)
    return symbols
