"""The Prompt handed to an LLM client: chat messages plus the memories they were built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class Prompt:
    """`messages` go to the model as is; `memories` lets the offline responder (and the UI)
    see which recalled episodes the prompt carries: dicts with episode_id, text, timestamp
    (ISO date string, epoch seconds or None), score and role ("user" or "assistant")."""

    messages: list[dict] = field(default_factory=list)
    memories: list[dict] = field(default_factory=list)


def format_date(timestamp: object) -> str:
    """YYYY-MM-DD from epoch seconds, a datetime or an ISO string; '' if unknown."""
    if isinstance(timestamp, datetime):
        return timestamp.date().isoformat()
    if isinstance(timestamp, int | float):
        return datetime.fromtimestamp(timestamp, UTC).date().isoformat()
    if isinstance(timestamp, str) and timestamp:
        try:
            return datetime.fromisoformat(timestamp).date().isoformat()
        except ValueError:
            return timestamp
    return ""
