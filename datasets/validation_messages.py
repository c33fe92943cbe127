"""One message for a pydantic validation error, in the words of the file the user wrote: the
key, what is wrong, what is allowed (:func:`describe_error`), and the classes an annotation
admits (:func:`annotation_types`)."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ValidationError


def annotation_types(annotation: object) -> list[type]:
    """The classes an annotation admits, through Optional, unions, Annotated and containers
    (``list[int] | None`` -> int, NoneType; a model is one class, not its fields)."""
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return [annotation]  # (on Python 3.10 ``list[int]`` is an instance of type too)
    return [t for arg in typing.get_args(annotation) for t in annotation_types(arg)]


def describe_error(err: ValidationError, root: type[BaseModel], skip: int = 0) -> str:
    """The first problem of a validation error as 'key: message (got value)'. The key leaves
    out the tags pydantic adds for a union's members: a value no member takes is named with
    what the union allows, one that a member takes with that member's problem. An unknown key
    is named with the keys allowed in its section of ``root``, and so is one given beside a
    missing key (a misspelt required key). ``skip`` leading parts of the error's location are
    dropped (the tag of a discriminated union)."""
    errors = [{**error, "loc": error["loc"][skip:]} for error in err.errors()]
    first = errors[0]
    while True:  # a value a union refused: the member that took it and found a problem in it
        keys, unions = _union_tags(first["loc"], root)
        tag = len(first["loc"]) - 1
        if tag not in unions or not _mismatch(first):
            break
        inside = [e for e in errors if e["loc"][:tag] == first["loc"][:tag] and len(
            e["loc"]) > tag and not (len(e["loc"]) == tag + 1 and _mismatch(e))]
        if not inside:
            *others, last = dict.fromkeys(_kind_of(a) for a in unions[tag])
            kinds = f"{', '.join(others)} or {last}" if others else last
            return _keyed(".".join(map(str, keys)), f"Input should be {kinds}", first["input"])
        first = inside[0]
    key = ".".join(str(p) for p in keys)
    loc = first["loc"]
    if first["type"] in ("boolean_for_number", "number_for_boolean"):  # keyed inside a section
        return f"{key}.{first['msg']}" if key else first["msg"]
    if first["type"] == "unknown_key":  # raised by a section, which knows not its own key
        key = ".".join([*map(str, keys), first["ctx"]["key"]])
        return f"unknown key {key!r}; allowed: {first['ctx']['allowed']}"
    if first["type"] == "extra_forbidden":
        return f"unknown key {key!r}; allowed: {', '.join(_allowed_keys(loc, root))}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "model_type":  # a section: not the class behind it
        message = "Input should be a mapping"
    if first["type"] == "missing":
        unknown = [e["loc"][-1] for e in errors
                   if e["type"] == "extra_forbidden" and e["loc"][:-1] == loc[:-1]]
        if unknown:
            names = ", ".join(repr(str(name)) for name in unknown)
            message += (f" (unknown key{'s' * (len(unknown) > 1)} {names} given; allowed: "
                        f"{', '.join(_allowed_keys(loc, root))})")
    return _keyed(key, message, first.get("input"))


def _keyed(key: str, message: str, received: object) -> str:
    """'key: message (got value)'; a mapping, or a value the message already gives, is not
    shown again."""
    shown = "" if isinstance(received, dict) or f"got {received!r}" in message else (
        f" (got {received!r})")
    return f"{key}: {message}{shown}" if key else f"{message}{shown}"


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """The keys allowed in the section of ``root`` that holds the key at ``loc``."""
    models = [root]
    for part in loc[:-1]:
        owners = [m for m in models if part in m.model_fields]
        if owners:  # a section: the models its annotation admits
            models = [t for m in owners
                      for t in annotation_types(m.model_fields[part].annotation)
                      if issubclass(t, BaseModel)]
        else:  # a union's tag or a list index: the members that tag names, if any
            models = [m for m in models if any(
                part in typing.get_args(f.annotation) for f in m.model_fields.values())
            ] or models
    return list(dict.fromkeys(name for m in models for name in m.model_fields))


def _alternatives(annotation: object) -> list:
    """The members of a union annotation, Annotated and None left out (``str | dict[str, str]
    | None`` -> str, dict[str, str]); any other annotation is its only member."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) if arg is not type(None)
                for a in _alternatives(arg)]
    return [annotation]


def _inside(annotation: object, part: object) -> list:
    """The annotation of ``part`` (a field, a mapping's key, a list's index) within
    ``annotation``; none where ``annotation`` has no such part."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part)
        return [] if field is None else [field.annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return [args[1]]
    return [args[0]] if origin in (list, tuple) and isinstance(part, int) else []


def _union_tags(loc: tuple, root: type[BaseModel]) -> tuple[list, dict[int, list]]:
    """The keys in an error location ``loc`` under ``root``, and its other parts: the tags
    pydantic adds after the key of a value that a union's members refused (``pde.str`` for
    ``pde: str | dict[str, str]``), as {index in ``loc``: the union's members}."""
    annotations, keys, unions = [root], [], {}
    for i, part in enumerate(loc):
        members = [_alternatives(a) for a in annotations]
        if any(len(m) > 1 for m in members):
            unions[i] = annotations = [a for m in members for a in m]
            continue
        keys.append(part)
        annotations = [inner for m in members for a in m for inner in _inside(a, part)]
    return keys, unions


def _mismatch(error: dict) -> bool:
    """Whether ``error`` says its value is not of the type its annotation takes (not that a
    value of that type breaks a rule)."""
    kind = error["type"]
    return kind.endswith(("_type", "_parsing")) or kind == "literal_error"


def _kind_of(annotation: object) -> str:
    """What a message calls a value of ``annotation``: a string, a number, a mapping, ..."""
    if typing.get_origin(annotation) is Literal:
        return " or ".join(repr(value) for value in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    names = {str: "a string", int: "a whole number", float: "a number", bool: "a boolean",
             dict: "a mapping", list: "a list", tuple: "a list"}
    return names.get(typing.get_origin(annotation) or annotation, str(annotation))
