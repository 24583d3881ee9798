"""Structured (JSON) output from any chat model: instruct, parse tolerantly, repair once.

Models, local ones especially, wrap JSON in code fences, add a sentence before it or
leave a trailing comma. :func:`parse_json_reply` forgives those; anything worse gets
one repair round-trip in which the model sees its own output and the validation
error. If that fails too, :class:`~personalize.errors.LLMOutputError` carries the
raw text so the caller can inspect it (and log it at DEBUG only: it is personal data).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from personalize.errors import ConfigError, LLMOutputError

__all__ = [
    "SCHEMA_MARKER",
    "extract_json_text",
    "parse_json_reply",
    "schema_instructions",
    "structured_call",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

Messages = Sequence[Mapping[str, str]]
CompleteFn = Callable[[list[dict[str, str]]], str]

#: Precedes the JSON schema in the instructions; the scripted test server's echo
#: mode looks for it to build a minimal valid answer.
SCHEMA_MARKER = "JSON Schema:"

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


def schema_instructions(schema: type[BaseModel]) -> str:
    """The instruction text that asks for JSON matching ``schema``.

    Args:
        schema: the pydantic model the answer must validate against.

    Returns:
        Instructions that embed ``schema.model_json_schema()``.
    """
    schema_json = json.dumps(schema.model_json_schema(), separators=(",", ":"))
    return (
        "Respond with a single JSON value that conforms to the JSON Schema below. "
        "Output only the JSON: no prose, no markdown, no code fences.\n"
        f"{SCHEMA_MARKER}\n{schema_json}"
    )


def _with_instructions(messages: Messages, instructions: str) -> list[dict[str, str]]:
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        # Keep a single system message: several confuse some chat templates.
        out[0]["content"] = f"{out[0].get('content', '')}\n\n{instructions}".lstrip()
    else:
        out.insert(0, {"role": "system", "content": instructions})
    return out


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket that closes ``text[start]``, honouring strings."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def extract_json_text(text: str) -> str:
    """Cut the JSON out of a model reply: fences, prose and trailing commas removed.

    Args:
        text: the raw reply.

    Returns:
        The candidate JSON text (not yet parsed).
    """
    candidate = text.strip()
    fenced = _FENCE.search(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = _balanced_end(candidate, start)
        if end is not None:
            candidate = candidate[start:end]
        else:
            # Unbalanced: keep from the first bracket to the last closing one and
            # let json.loads judge; the repair round-trip handles the rest.
            last = max(candidate.rfind("}"), candidate.rfind("]"))
            candidate = candidate[start : last + 1] if last > start else candidate[start:]
    return _drop_trailing_commas(candidate)


def _drop_trailing_commas(text: str) -> str:
    out: list[str] = []
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == ",":
            rest = text[i + 1 :].lstrip()
            if rest[:1] in ("}", "]"):
                continue  # a trailing comma: JSON forbids it, models love it
        out.append(ch)
    return "".join(out)


def _describe(exc: Exception) -> str:
    # Validation errors without the offending input values: those are user data and
    # this text ends up in exception messages, which hosts tend to log.
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        return "; ".join(parts[:10])
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


def parse_json_reply(text: str, schema: type[M]) -> M:
    """Parse a model reply tolerantly and validate it against ``schema``.

    Args:
        text: the raw reply.
        schema: the pydantic model to validate against.

    Returns:
        The validated model instance.

    Raises:
        ValueError: the text holds no valid JSON (``json.JSONDecodeError``) or it does
            not match the schema (``pydantic.ValidationError``).
    """
    candidate = extract_json_text(text)
    return schema.model_validate(json.loads(candidate))


def structured_call(
    complete_fn: CompleteFn,
    messages: Messages,
    schema: type[M],
    *,
    repair_attempts: int = 1,
) -> M:
    """Ask a chat model for JSON matching ``schema``, repairing a bad answer.

    Args:
        complete_fn: sends a message list and returns the reply text (one round-trip).
        messages: the conversation, OpenAI style (``{"role", "content"}`` dicts).
        schema: the pydantic model the answer must validate against.
        repair_attempts: how many repair round-trips to allow after a bad answer.

    Returns:
        The validated model instance.

    Raises:
        LLMOutputError: the answer was still invalid after the repair attempts;
            ``raw`` holds the last reply.
        LLMError: ``complete_fn`` failed.
    """
    if repair_attempts < 0:
        raise ConfigError(f"repair_attempts must be >= 0, got {repair_attempts}")
    conversation = _with_instructions(messages, schema_instructions(schema))
    raw = complete_fn(conversation)
    for attempt in range(repair_attempts + 1):
        try:
            return parse_json_reply(raw, schema)
        except ValueError as exc:  # JSONDecodeError and ValidationError both are
            problem = _describe(exc)
            logger.debug("invalid structured output for %s: %r", schema.__name__, raw)
            if attempt == repair_attempts:
                raise LLMOutputError(
                    f"model output did not match schema {schema.__name__} after "
                    f"{repair_attempts} repair attempt(s): {problem}",
                    raw=raw,
                ) from exc
            logger.warning(
                "model output did not match schema %s; asking for a repair (%d of %d)",
                schema.__name__, attempt + 1, repair_attempts,
            )
            conversation = [
                *conversation,
                {"role": "assistant", "content": raw},
                {
                    "role": "user",
                    "content": (
                        "Your previous reply is not valid for the required JSON Schema.\n"
                        f"Error: {problem}\n"
                        "Reply with the corrected JSON only, nothing else."
                    ),
                },
            ]
            raw = complete_fn(conversation)
    raise AssertionError("unreachable")  # pragma: no cover
