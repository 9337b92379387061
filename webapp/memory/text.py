"""Input text: validation and deliberate cleaning before anything is stored.

Policy (documented in docs/MEMORY.md):
- bytes must be valid UTF-8 and a str must not hold lone surrogates: otherwise
  MemoryInputError (we never guess at broken text);
- control characters (C0/C1, DEL) other than tab and newline are removed, and \\r\\n / \\r
  become \\n: they carry no meaning in a chat and break terminals and logs;
- after cleaning, empty or whitespace-only text is a MemoryInputError;
- text longer than MAX_TEXT_CHARS characters is a MemoryInputError.
"""

from __future__ import annotations

import re

MAX_TEXT_CHARS = 20_000

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class MemoryInputError(ValueError):
    """Text that cannot be stored or searched; the message is fit to show a user."""


def _without_controls(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def is_blank(text: str) -> bool:
    """Whether nothing would be left of `text` to store: empty, or only whitespace and
    control characters once cleaned (the one definition of "empty" for a chat message too)."""
    return not _without_controls(text).strip()


def clean_text(text: str | bytes) -> str:
    """Return the text as it will be stored, or raise MemoryInputError."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MemoryInputError("The text is not valid UTF-8.") from exc
    if not isinstance(text, str):
        raise MemoryInputError(f"Expected text, got {type(text).__name__}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MemoryInputError("The text holds invalid characters (lone surrogates).") from exc
    text = _without_controls(text)
    if not text.strip():
        raise MemoryInputError("The text is empty.")
    if len(text) > MAX_TEXT_CHARS:
        raise MemoryInputError(
            f"The text is too long ({len(text)} characters; the limit is {MAX_TEXT_CHARS})."
        )
    return text
