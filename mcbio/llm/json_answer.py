"""Pull one JSON object out of an LLM answer (prose and ``` fences tolerated)."""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _snippet(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width] + "..."


def extract_json_object(text: str) -> dict:
    """Return the single JSON object in ``text``.

    Accepts prose before/after the object and a ```json fence around it. Raises
    ValueError saying what is wrong: no object, truncated object, invalid JSON, or a
    top-level value that is not an object.
    """
    if not isinstance(text, str):
        raise ValueError(f"answer is {type(text).__name__}, not text")
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    start = body.find("{")
    bracket = body.find("[")
    if bracket >= 0 and (start < 0 or bracket < start):
        try:
            value, _ = decoder.raw_decode(body, bracket)
        except json.JSONDecodeError:
            value = None  # a bracket in the prose, not JSON
        if isinstance(value, list):
            raise ValueError("answer is a JSON array, expected one JSON object")
    if start < 0:
        raise ValueError(f"no JSON object in the answer: {_snippet(text)!r}")
    try:
        obj, _ = decoder.raw_decode(body, start)
    except json.JSONDecodeError as err:
        if _is_truncated(body[start:]):
            raise ValueError(
                f"truncated JSON: the object opened at char {start} is never closed "
                f"(answer ends with {_snippet(body[-40:], 40)!r})"
            ) from None
        raise ValueError(f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(obj, dict):  # pragma: no cover - raw_decode at '{' always yields a dict
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _is_truncated(fragment: str) -> bool:
    """True when the braces/brackets opened in ``fragment`` are never all closed."""
    depth, in_string, escaped = 0, False, False
    for ch in fragment:
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
                return False
    return depth > 0 or in_string
