"""LLMError and the user-facing wording for every way a relay to the model can fail.

The web layer shows `LLMError.message` to the user as is, so each message says what
happened and what to do about it, and never contains the API key.
"""

from __future__ import annotations

import json
import math

CODES = (
    "auth",
    "not_found",
    "rate_limited",
    "server_error",
    "timeout",
    "unreachable",
    "bad_stream",
    "cut_off",
    "bad_request",
    "empty_reply",
)


class LLMError(Exception):
    """A failed LLM request: `code` is one of CODES, `message` is fit to show a user."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown LLM error code {code!r}")
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


def server_detail(body: bytes) -> str:
    """The server's own explanation from an error body, in NIM or OpenAI style, or ''.

    NIM answers `{"status", "title", "detail"}`; OpenAI-compatible servers answer
    `{"error": {"message", ...}}` (some just `{"error": "..."}` or `{"detail": "..."}`).
    """
    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    parts = [str(data[key]) for key in ("title", "detail") if data.get(key)]
    return ": ".join(parts)


def server_said(body: bytes) -> str:
    """' (server said: ...)' with the server's explanation cut to 300 characters, or ''."""
    detail = server_detail(body)
    return f" (server said: {detail[:300]})" if detail else ""


def rate_limited(retry_in: float | None, said: str = "") -> LLMError:
    """The service refuses requests, for `retry_in` seconds if it said (Retry-After)."""
    when = f"Try again in {_duration(retry_in)}" if retry_in else "Wait a moment and try again"
    return LLMError(
        "rate_limited",
        "The LLM service is rate limiting requests (NVIDIA NIM's free tier allows about "
        f"40 requests per minute). {when}{said}.",
    )


def _duration(seconds: float) -> str:
    """'45 s', '3 min', '2 h': rounded up, never sooner than the server said."""
    if seconds <= 90:
        return f"{math.ceil(seconds)} s"
    if seconds <= 90 * 60:
        return f"{math.ceil(seconds / 60)} min"
    return f"{math.ceil(seconds / 3600)} h"


def error_for_status(
    status: int, body: bytes, *, model: str, retry_in: float | None = None
) -> LLMError:
    """Map an HTTP error answer to an LLMError with a message a user can act on
    (`retry_in`: a 429's Retry-After, in seconds)."""
    said = server_said(body)
    if status in (401, 403):
        return LLMError(
            "auth",
            "The LLM service rejected the API key. Check NVIDIA_API_KEY "
            f"(NVIDIA keys start with 'nvapi-'){said}.",
        )
    if status == 404:
        return LLMError(
            "not_found",
            f"The LLM service does not know the model '{model}' (or the endpoint URL is wrong). "
            f"Check NIM_MODEL and NIM_BASE_URL{said}.",
        )
    if status == 429:
        return rate_limited(retry_in, said)
    if status >= 500:
        return LLMError(
            "server_error",
            f"The LLM service had an internal error (HTTP {status}); try again later{said}.",
        )
    return LLMError("bad_request", f"The LLM service refused the request (HTTP {status}){said}.")
