"""Decode an OpenAI-style chat completion stream (server-sent events) into text pieces.

Lines are `data: {json}` (one chunk each), `data: [DONE]` at the end, blank lines between
events, `:` comment lines as keep-alives, and possibly `event:`/`id:`/`retry:` fields,
which carry nothing we need. Chunks put the text in choices[0].delta.content; a last
chunk may hold only `usage` (no choices). A chunk with an `error` object is the server
failing mid-stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from webapp.llm.errors import LLMError, server_said

_IGNORED_FIELDS = (b"event", b"id", b"retry")
MAX_LINE_BYTES = 2**20  # a chunk is a few hundred bytes; a longer line is not a chat stream
QUOTED_CHARS = 80  # of a line that is not an event, what a user is shown
FINISH_REASON_CHARS = 40  # "stop", "length", "content_filter": a longer one is cut


class StreamDecoder:
    """Feed raw bytes in arrival order; get the text pieces they complete.

    `done` turns true at `[DONE]`, or at a chunk with a finish_reason (some servers close
    the connection without sending `[DONE]`); a stream that ends before either was cut off.
    `has_text` says whether any piece held more than white space; `finish_reason` is the
    last one given.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False
        self.has_text = False
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> Iterator[str]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            yield from self._line(line.rstrip(b"\r"))
        if len(self._buffer) > MAX_LINE_BYTES:  # else buffered whole, copied at every read
            raise LLMError("bad_stream", _garbled(f"a line longer than {MAX_LINE_BYTES >> 20} MiB"))

    def finish(self) -> Iterator[str]:
        """The stream has ended: its last line counts even without a line break (so a web
        page or a JSON answer sent instead of events is a bad stream, and a final `data:
        [DONE]` an end), unless it is a data line cut in the middle: then it stays unfinished."""
        line, self._buffer = self._buffer.rstrip(b"\r"), b""
        if line.startswith(b"data:") and not _complete(line):
            return
        yield from self._line(line)

    def _line(self, line: bytes) -> Iterator[str]:
        if not line or line.startswith(b":") or self.done:
            return
        name, _, value = line.partition(b":")
        if name in _IGNORED_FIELDS:
            return
        if name != b"data":
            raise LLMError("bad_stream", _garbled(f"unexpected line {_quoted(line)}"))
        payload = value.strip()
        if payload == b"[DONE]":
            self.done = True
            return
        piece = self._chunk(payload)
        if piece:
            yield piece

    def _chunk(self, payload: bytes) -> str:
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise LLMError("bad_stream", _garbled("a chunk is not valid JSON")) from None
        if not isinstance(chunk, dict):
            raise LLMError("bad_stream", _garbled("a chunk is not a JSON object"))
        if "error" in chunk:
            raise LLMError(
                "server_error",
                f"The LLM service failed mid-reply{server_said(payload)}. What arrived is kept; "
                "try again or regenerate.",
            )
        choices = chunk.get("choices")
        if not choices:  # e.g. the final usage-only chunk
            return ""
        try:
            choice = choices[0]
            content = (choice.get("delta") or {}).get("content") or ""
        except (AttributeError, IndexError, TypeError):
            raise LLMError("bad_stream", _garbled("a chunk has no choices[0].delta")) from None
        if not isinstance(content, str):
            raise LLMError("bad_stream", _garbled("delta.content is not text"))
        if choice.get("finish_reason"):
            self.done = True
            self.finish_reason = str(choice["finish_reason"])[:FINISH_REASON_CHARS]
        self.has_text = self.has_text or bool(content.strip())
        return content


def _complete(line: bytes) -> bool:
    payload = line.partition(b":")[2].strip()
    try:
        json.loads(payload)
    except ValueError:
        return payload == b"[DONE]"
    return True


def _quoted(line: bytes) -> str:
    """The start of a line as a person can read it: decoded, on one line, control
    characters as spaces, cut to QUOTED_CHARS (not Python's b'...\\x1b...' of the bytes)."""
    text = line[: QUOTED_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return f"'{text[:QUOTED_CHARS]}…'" if len(text) > QUOTED_CHARS else f"'{text}'"


def _garbled(what: str) -> str:
    return (
        f"The LLM service sent a reply this app cannot read ({what}). Is NIM_BASE_URL an "
        "OpenAI-compatible /v1 endpoint?"
    )
