"""The responder used when no LLM is configured: it answers from the recalled memories.

It says plainly that it is the offline mode, then lists what it remembers that relates
to the message, with dates, as Markdown. It streams word by word through the same
`stream()` interface as the real client, so the rest of the app cannot tell the
difference (and the memory features can be tried without any API key).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator

from webapp.llm.prompt import Prompt, format_date
from webapp.llm.retry import OnWait

_QUOTE_CHARS = 300


class OfflineResponder:
    """Answers from `prompt.memories`; `delay` seconds between words (0 in tests)."""

    # Its replies only repeat memories (and a notice): stored, they would come back as
    # duplicates of the memories they quote in every later recall.
    remembers_replies = False

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay

    def __repr__(self) -> str:
        return "OfflineResponder()"

    def list_models(self) -> list[str]:
        return ["offline"]

    def stream(
        self, prompt: Prompt, cancel: threading.Event | None = None, on_wait: OnWait | None = None
    ) -> Generator[str, None, str | None]:
        """Like NIMClient.stream: the reply's pieces, then "stop" (None if cancelled); it
        never waits, so `on_wait` is never called."""
        cancel = cancel or threading.Event()
        for index, piece in enumerate(re.findall(r"\s*\S+", compose_reply(prompt))):
            if cancel.is_set() or (index and self.delay and cancel.wait(self.delay)):
                return None
            yield piece
        return "stop"


def compose_reply(prompt: Prompt) -> str:
    """The whole offline reply as Markdown."""
    lines = [
        "*Offline mode: no LLM is configured (set `NVIDIA_API_KEY` or `NIM_BASE_URL` to chat "
        "with a model). I can only tell you what I remember.*",
        "",
    ]
    if not prompt.memories:
        lines.append("I don't remember anything related to that yet.")
        return "\n".join(lines)
    lines += ["Here is what I remember that relates to your message, most relevant first:", ""]
    for memory in prompt.memories:
        when = format_date(memory.get("timestamp")) or "undated"
        who = "I said" if memory.get("role") == "assistant" else "you said"
        text = " ".join(str(memory.get("text", "")).split())
        if len(text) > _QUOTE_CHARS:
            text = text[:_QUOTE_CHARS].rstrip() + "…"
        lines.append(f"- **{when}**, {who}: “{text}”")
    return "\n".join(lines)
