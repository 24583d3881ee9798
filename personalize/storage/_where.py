"""Metadata filters (``where=``) compiled to SQL, the operator set Chroma and Mem0 users know.

``{"project": "x", "year": {"$gte": 2024}}`` keeps items whose metadata has
``project == "x"`` and ``year >= 2024``. Operators: ``$eq $ne $in $nin $gt
$gte $lt $lte`` on a field, ``$and`` / ``$or`` over lists of filters; several
fields in one mapping are and-ed. ``$ne`` and ``$nin`` also keep items that
lack the field (as in Chroma). Each engine renders one comparison of a JSON
field (``SQLStore._json_filter``); the structure is compiled here, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["FIELD_OPERATORS", "compile_where", "validate_where"]

FIELD_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\- ]{0,127}")
_SCALARS = (str, int, float, bool)

#: ``(column, key, operator, value) -> (sql, params)`` of one engine.
JsonFilter = Callable[[str, str, str, Any], tuple[str, list[Any]]]


def validate_where(where: object, *, name: str = "where") -> dict[str, Any] | None:
    """Check a filter's shape; return it as a dict (``None`` stays ``None``).

    Raises:
        ConfigError: an unknown operator, a non-string or odd field name, a
            value of the wrong type for its operator, an empty ``$and``/``$or``.
    """
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ConfigError(f"{name} must be a mapping such as {{'project': 'x'}}, not {type(where).__name__}")
    _check(where, name)
    return dict(where)


def _check(where: Mapping[Any, Any], name: str) -> None:
    if not where:
        raise ConfigError(f"{name}: an empty filter matches everything; pass None instead")
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name}: {key} takes a non-empty list of filters")
            for part in value:
                if not isinstance(part, Mapping):
                    raise ConfigError(f"{name}: every element of {key} must be a mapping")
                _check(part, name)
            continue
        if not isinstance(key, str) or key.startswith("$") or not _KEY.fullmatch(key):
            raise ConfigError(f"{name}: unknown operator or invalid field name {str(key)[:40]!r}")
        if isinstance(value, Mapping):
            if len(value) != 1:
                raise ConfigError(f"{name}: field {key!r} takes exactly one operator")
            ((op, operand),) = value.items()
            if op not in FIELD_OPERATORS:
                raise ConfigError(f"{name}: unknown operator {str(op)[:20]!r} (known: {', '.join(FIELD_OPERATORS)})")
            if op in ("$in", "$nin"):
                if not isinstance(operand, (list, tuple)) or not all(isinstance(v, _SCALARS) for v in operand):
                    raise ConfigError(f"{name}: {op} on {key!r} takes a list of strings, numbers or booleans")
            elif not isinstance(operand, _SCALARS):
                raise ConfigError(f"{name}: {op} on {key!r} takes a string, number or boolean")
        elif not isinstance(value, _SCALARS):
            raise ConfigError(f"{name}: field {key!r} takes a string, number, boolean or {{operator: value}}")


def compile_where(where: Mapping[str, Any], column: str, json_filter: JsonFilter) -> tuple[str, list[Any]]:
    """SQL for a validated filter over the JSON text ``column``, with its parameters."""
    parts: list[str] = []
    params: list[Any] = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            compiled = [compile_where(part, column, json_filter) for part in value]
            joiner = " AND " if key == "$and" else " OR "
            parts.append("(" + joiner.join(sql for sql, _ in compiled) + ")")
            for _, p in compiled:
                params.extend(p)
            continue
        op, operand = next(iter(value.items())) if isinstance(value, Mapping) else ("$eq", value)
        if op in ("$in", "$nin") and not operand:
            parts.append("1 = 0" if op == "$in" else "1 = 1")
            continue
        sql, p = json_filter(column, key, op, operand)
        parts.append(sql)
        params.extend(p)
    return "(" + " AND ".join(parts) + ")", params
