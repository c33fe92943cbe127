"""YAML files as physml reads them: safe types only, a key given twice in one mapping refused,
``1e-5`` a number, and one message naming the file for what cannot be read."""

from __future__ import annotations

import re
from pathlib import Path

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the safe loader keeps
    the last one and drops the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:  # the keys written here; a merge (<<) may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:  # a list or mapping as a key: the safe loader's own refusal
                break
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping (keep one)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e-5, without a point, as text; YAML 1.2 and every user of the field
# read it as a number
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str):
    """The value of a YAML document (safe types only); a key given twice in one mapping is a
    ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The YAML mapping in ``path``, or a ValueError naming the file (``what``: spec, case):
    not YAML, not UTF-8, nested deeper than the parser's recursion allows, or not a mapping."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        where = err.problem_mark or err.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        context = f" ({err.context} at line {err.context_mark.line + 1})" if (
            err.context and err.context_mark) else ""
        raise ValueError(f"{what} {path}: not valid YAML{at}: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{what} {path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path}: not UTF-8 text (byte {err.start}); save the file as "
                         f"UTF-8") from None
    except RecursionError:
        raise ValueError(f"{what} {path}: its lists and mappings are nested too deeply to "
                         "read (a few hundred levels at most)") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {path}: expected a mapping of keys to values")
    return raw
