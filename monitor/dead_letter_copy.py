"""The copy of a rejected message that may go to a dead-letter topic: no ``pan`` member, no PAN form.

A rejected message is kept for a person to read and the producer to fix, so its
dead-letter copy keeps everything but card numbers: a member named ``pan`` goes
whatever its value (it is where a producer wrongly sends the raw PAN), and every PAN
form elsewhere (:mod:`monitor.privacy`: any digit script, separators, escapes) is
masked. :func:`dead_letter_copy` reads JSON when it can and the text as it comes when
it cannot (truncated, not UTF-8, not JSON at all). A foundation module: it imports
only :mod:`monitor.privacy`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from monitor.privacy import mask_pans, scrub_pans

__all__ = ["dead_letter_copy"]

# A quoted key followed by a colon (JSON double quotes, or single quotes).
_KEY: Final = re.compile(r"""(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*:\s*""", re.DOTALL)
#: Names of the member a dead-letter copy never keeps (compared case-insensitively).
_PAN_KEYS: Final = frozenset({"pan"})


def _is_pan_key(key: str) -> bool:
    return key.strip().lower() in _PAN_KEYS


def _value_end(text: str, start: int) -> int:
    """End of the JSON-like value at ``text[start:]`` (the end of the text if it never ends)."""
    if start >= len(text):
        return start
    opening = text[start]
    if opening in "\"'":
        index = start + 1
        while index < len(text):
            if text[index] == "\\":
                index += 2
                continue
            if text[index] == opening:
                return index + 1
            index += 1
        return len(text)
    if opening in "{[":
        depth, index, quote = 0, start, ""
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return index + 1
            index += 1
        return len(text)
    match = re.compile(r"[^,}\]\r\n]*").match(text, start)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _drop_pan_members(text: str) -> str:
    """``text`` (not valid JSON) without any ``"pan": value`` member, whatever the value."""
    position = 0
    out: list[str] = []
    while True:
        match = _KEY.search(text, position)
        if match is None:
            break
        raw_key = match.group(1) if match.group(1) is not None else match.group(2)
        try:
            key = json.loads(f'"{raw_key}"')
        except ValueError:
            key = raw_key
        if not isinstance(key, str) or not _is_pan_key(key):
            out.append(text[position:match.end()])
            position = match.end()
            continue
        end = _value_end(text, match.end())
        trailing = re.compile(r"\s*,\s*").match(text, end)
        out.append(text[position:match.start()])
        position = trailing.end() if trailing else end
    out.append(text[position:])
    return "".join(out)


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, dict):
        return {mask_pans(key): _clean_json(item) for key, item in value.items()
                if not _is_pan_key(key)}
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    text = str(value)  # a number: a PAN sent as a JSON number becomes its mask, as text
    masked = mask_pans(text, escapes=False)
    return value if masked == text else masked


def _scrub_as_text(value: bytes) -> bytes:
    """A value that is not JSON, without ``pan`` members and PAN forms (see :func:`dead_letter_copy`)."""
    encoding = json.detect_encoding(value)
    if encoding != "utf-8":  # UTF-16 or -32 (a BOM or the NUL pattern): read it as such
        text = value.decode(encoding, "replace")
        return scrub_pans(_drop_pan_members(text).encode("utf-8", "backslashreplace"))
    text = value.decode("utf-8", "surrogateescape")
    return scrub_pans(_drop_pan_members(text).encode("utf-8", "surrogateescape"))


def dead_letter_copy(value: bytes) -> bytes:
    """The copy of a rejected message value that may be written to a dead-letter topic.

    A JSON value (UTF-8, -16 or -32) loses every member named ``pan`` at any depth,
    whatever its value (a string, a number, Luhn-valid or not, an object), and every
    PAN form in its other strings, keys and numbers is masked; it is written back as
    compact UTF-8 JSON. Anything else (truncated JSON, not UTF-8, not JSON at all)
    loses each ``"pan": value`` member the text holds, then every PAN form in it is
    masked (:func:`scrub_pans`); text that starts like UTF-16 or -32 is read as such and
    written back as UTF-8. Never raises.

    Args:
        value: the message value as read from Kafka.

    Returns:
        The scrubbed copy (``b""`` for ``b""``).
    """
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return _scrub_as_text(value)
    try:
        cleaned = _clean_json(parsed)
        encoded = json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:  # deeper than json.dumps can go: treat as text
        return _scrub_as_text(value)
    # Belt and braces: a PAN form across two strings of the re-encoded text.
    return scrub_pans(encoded.encode("utf-8", "backslashreplace"))
