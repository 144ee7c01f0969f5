"""Strict structuring of TOML tables into attrs config classes, with errors that name the TOML path.

cattrs is lenient by default (3.7 -> 3, "false" -> True); this converter accepts only the exact TOML types:
an int for an int field, an int or float for a float field, a bool for a bool field, a string for a string field.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, Literal

import attrs
import cattrs
import cattrs.gen
from cattrs.cols import homogenous_tuple_structure_factory
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
        message = f"expected one of {', '.join(repr(a) for a in allowed)}, got {_describe(value)}"
        names = [a for a in allowed if isinstance(a, str)]
        close = difflib.get_close_matches(value, names, n=1, cutoff=0.6) if isinstance(value, str) else []
        raise _TypeMismatch(f"{message}; did you mean {close[0]!r}?" if close else message)
    return value


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _require_array(converter: cattrs.Converter, tp: Any):
    """cattrs turns any iterable into a tuple ("abc" -> ('a', 'b', 'c')); a TOML array is required."""
    structure_items = homogenous_tuple_structure_factory(tp, converter)

    def structure(value: Any, _type: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch(f"expected an array, got {_describe(value)}")
        return structure_items(value, _type)

    return structure


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for primitive in (int, float, bool, str):
        converter.register_structure_hook(primitive, _strict(primitive))
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_factory(_is_tuple, lambda tp: _require_array(converter, tp))
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
        unknown = [sub for sub in without_notes if isinstance(sub, ForbiddenExtraKeysError)]
        if unknown:  # an unknown key explains a missing one (`batchsize` for `batch_size`): name it first
            return _first_error(unknown[0], path, cls)
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
    """(name, type, default) of each field of an attrs config class, for docs and `sslcore list`.

    A required field's default is ``attrs.NOTHING``.
    """
    rows = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        rows.append((field.name, type_name(hints[field.name]), default))
    return rows


def type_name(tp: Any) -> str:
    """A field type as a reader writes it: ``int | None``, ``tuple[float, ...]``, ``'sgd' | 'lars'``."""
    if _is_literal(tp):
        return " | ".join(repr(arg) for arg in typing.get_args(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return "tuple[" + ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args) + "]"
    if args:  # unions: X | None
        return " | ".join(type_name(arg) for arg in args)
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))
