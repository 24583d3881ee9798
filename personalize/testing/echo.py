"""The ``--echo`` responder of the scripted server: deterministic text, or minimal valid JSON."""

from __future__ import annotations

import json as _json
from typing import Any

from personalize.llm.structured import SCHEMA_MARKER, extract_json_text
from personalize.testing.replies import Reply

__all__ = ["echo_responder", "minimal_instance"]


def minimal_instance(schema: dict[str, Any], _root: dict[str, Any] | None = None,
                     _depth: int = 0) -> Any:
    """The smallest JSON value that satisfies a (simple) JSON schema.

    Handles ``$ref`` into ``$defs``, ``const``, ``enum``, ``default``, ``anyOf`` /
    ``oneOf`` / ``allOf`` (first branch), and the basic types with ``required``,
    ``minItems``, ``minLength`` and ``minimum``. Good enough for pydantic schemas.

    Args:
        schema: the JSON schema.

    Returns:
        A value valid for ``schema`` in the common cases (``{}`` for an empty schema).
    """
    root = _root if _root is not None else schema
    if _depth > 20:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return minimal_instance(target, root, _depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root, _depth + 1)
    kind = schema.get("type", "object" if "properties" in schema or not schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props.get(name, {}), root, _depth + 1)
                for name in schema.get("required", [])}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [minimal_instance(schema.get("items", {}), root, _depth + 1)] * count
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _schema_from_request(request: dict[str, Any]) -> dict[str, Any] | None:
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
        schema = fmt["json_schema"].get("schema")
        if isinstance(schema, dict):
            return schema
    for message in request.get("messages") or []:
        text = _text_of(message.get("content")) if isinstance(message, dict) else ""
        if SCHEMA_MARKER in text:
            try:
                found = _json.loads(extract_json_text(text.split(SCHEMA_MARKER, 1)[1]))
            except ValueError:
                continue
            if isinstance(found, dict):
                return found
    return None


def echo_responder(request: dict[str, Any]) -> Reply:
    """The ``--echo`` responder: deterministic text, or minimal JSON when JSON is asked.

    Args:
        request: the chat-completions request JSON.

    Returns:
        ``Reply.json(minimal_instance(schema))`` when the request carries a
        ``response_format`` or a system message mentioning JSON (``{}`` without a
        schema); otherwise ``Reply.text("echo: <first 12 words of the last user
        message>")``.
    """
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    wants_json = bool(request.get("response_format")) or any(
        m.get("role") == "system" and "json" in _text_of(m.get("content")).lower()
        for m in messages
    )
    if wants_json:
        schema = _schema_from_request(request)
        return Reply.json(minimal_instance(schema) if schema else {})
    last_user = next((_text_of(m.get("content")) for m in reversed(messages)
                      if m.get("role") == "user"), "")
    return Reply.text(("echo: " + " ".join(last_user.split()[:12])).strip())
