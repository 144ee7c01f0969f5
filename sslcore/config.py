"""Strict structuring of TOML tables into attrs config classes, with errors that name the TOML path.

cattrs is lenient by default (3.7 -> 3, "false" -> True); this converter accepts only the exact TOML types:
an int for an int field, an int or float for a float field, a bool for a bool field, a string for a string field.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

import attrs
import cattrs
import cattrs.gen
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from sslcore.errors import SslcoreError, did_you_mean

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "a boolean (true/false)", str: "a string"}


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return f"{value!r} ({kind.get(type(value), type(value).__name__)})"


class _TypeMismatch(Exception):
    pass


def _strict(expected: type):
    def structure(value: Any, _type: Any) -> Any:
        if expected is float and type(value) is int:
            return float(value)
        if type(value) is not expected:
            raise _TypeMismatch(f"expected {_TYPE_NAMES[expected]}, got {_describe(value)}")
        return value

    return structure


def _structure_literal(value: Any, literal: Any) -> Any:
    allowed = typing.get_args(literal)
    if value not in allowed or type(value) is not type(next((a for a in allowed if a == value), value)):
        names = [str(a) for a in allowed]
        hint = did_you_mean(str(value), names) if isinstance(value, str) else "known: " + ", ".join(sorted(names))
        raise _TypeMismatch(f"expected one of {', '.join(repr(a) for a in allowed)}, got {_describe(value)}; {hint}")
    return value


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for primitive in (int, float, bool, str):
        converter.register_structure_hook(primitive, _strict(primitive))
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_factory(attrs.has, lambda cls: _require_table(converter, cls))
    return converter


def _require_table(converter: cattrs.Converter, cls: type):
    structure_fields = cattrs.gen.make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)

    def structure(value: Any, _type: Any) -> Any:
        if not isinstance(value, dict):
            raise _TypeMismatch(f"expected a table, got {_describe(value)}")
        return structure_fields(value, _type)

    return structure


_CONVERTER = make_converter()
_FIELD_IN_MESSAGE = re.compile(r"^'(\w+)' (.*)$", re.DOTALL)


def structure(data: dict[str, Any], cls: type, *, where: str, path: str) -> Any:
    """Build ``cls`` from ``data``; any mistake raises an :class:`SslcoreError` naming ``where`` and ``path``."""
    if not isinstance(data, dict):
        raise SslcoreError(f"expected a table, got {_describe(data)}", where=f"{where} [{path}]")
    try:
        return _CONVERTER.structure(data, cls)
    except Exception as error:  # cattrs, attrs validators and __attrs_post_init__ checks
        sub_path, message = _first_error(error, path, cls)
        raise SslcoreError(message, where=f"{where} [{sub_path}]") from None


def _first_error(error: BaseException, path: str, cls: Any) -> tuple[str, str]:
    if isinstance(error, ForbiddenExtraKeysError):
        key = sorted(error.extra_fields)[0]
        fields = [f.name for f in attrs.fields(error.cl)]
        return f"{path}.{key}", f"unknown key '{key}'; {did_you_mean(key, fields)}"
    if isinstance(error, (ClassValidationError, IterableValidationError)):
        with_notes, without_notes = error.group_exceptions()
        for sub, note in with_notes:
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            child = f"{path}.{name}" if name is not None else f"{path}[{index}]"
            field_type = getattr(note, "type", None)
            return _first_error(sub, child, field_type)
        if without_notes:
            return _first_error(without_notes[0], path, cls)
    message = str(error)
    match = _FIELD_IN_MESSAGE.match(message)
    if match and attrs.has(cls) and match.group(1) in {f.name for f in attrs.fields(cls)}:
        return f"{path}.{match.group(1)}", f"{match.group(2)}"
    if isinstance(error, KeyError):
        return path, "missing required key"
    return path, message


def unstructure(config: Any) -> dict[str, Any]:
    """A config object as a plain dict (tuples as lists), ready to write as TOML."""
    return _CONVERTER.unstructure(config)


def config_fields(cls: type) -> list[tuple[str, str, Any]]:
    """(name, type, default) of each field of an attrs config class, for docs and `sslcore list`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        shown_type = getattr(hints.get(field.name), "__name__", None) or str(hints.get(field.name)).replace("typing.", "")
        rows.append((field.name, shown_type, default))
    return rows
