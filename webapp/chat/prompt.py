"""Assemble what the model sees for one turn, within fixed token budgets.

Layout (one system message, so strict chat templates accept it):

    system     the system prompt, today's date, and a "Memories" block: recalled
               episodes with their dates, most relevant first, each cut to
               `max_episode_tokens`, until `memory_budget_tokens` is spent
    user/assistant ...  this conversation's recent turns: taken most recent first until
               `history_budget_tokens` is spent, then put back in chronological order
    user       the new message

So the prompt's size does not grow with the conversation: it is at most the system
prompt + both budgets + the new message. Tokens are estimated, not counted:
`estimate_tokens` is ~4 characters per token (close for English with Llama 3's
tokenizer, conservative for code), plus a few tokens per message for the chat template,
which needs no tokenizer download and is the same on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from webapp.llm import Prompt
from webapp.llm.prompt import format_date

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role header and separators of the chat template
DEFAULT_MEMORY_BUDGET_TOKENS = 800
DEFAULT_HISTORY_BUDGET_TOKENS = 1500
DEFAULT_MAX_EPISODE_TOKENS = 150

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, friendly assistant with a long-term memory of your past "
    "conversations with this user. When the memories below are relevant, use them "
    "naturally and mention when something was said if it helps; never invent memories "
    "you do not have. Answer in Markdown."
)

_MEMORY_HEADER = (
    "## Memories\nThings from earlier conversations with this user, most relevant first "
    "(date, who said it, what was said):"
)


def estimate_tokens(text: str) -> int:
    """Cheap token estimate: ceil(characters / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Iterable[Mapping]) -> int:
    """Estimated size of a chat request's messages, template overhead included."""
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def build_prompt(
    user_text: str,
    memories: Iterable,
    recent_turns: Iterable[Mapping],
    *,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    memory_budget_tokens: int = DEFAULT_MEMORY_BUDGET_TOKENS,
    history_budget_tokens: int = DEFAULT_HISTORY_BUDGET_TOKENS,
    max_episode_tokens: int = DEFAULT_MAX_EPISODE_TOKENS,
    now: datetime | None = None,
) -> Prompt:
    """The Prompt for answering `user_text`.

    `memories`: recalled episodes, as RecallHit objects or dicts (episode_id, text,
    timestamp, score, optional role). `recent_turns`: this conversation's earlier
    messages in chronological order, as store message dicts (role, text) or chat
    messages (role, content); should the list end with the new message itself (already
    persisted), that copy is dropped.
    """
    today = (now or datetime.now(UTC)).date().isoformat()
    chosen = _choose_memories(memories, memory_budget_tokens, max_episode_tokens)
    system = f"{system_prompt}\n\nToday is {today}."
    if chosen:
        system += "\n\n" + _memory_block(chosen)
    history = _choose_history(recent_turns, user_text, history_budget_tokens)
    messages = _alternating(
        [{"role": "system", "content": system}, *history, {"role": "user", "content": user_text}]
    )
    return Prompt(messages=messages, memories=chosen)


def _field(item: object, name: str) -> object:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _truncate(text: str, max_tokens: int) -> str:
    limit = max_tokens * CHARS_PER_TOKEN
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _choose_memories(memories: Iterable, budget: int, max_episode_tokens: int) -> list[dict]:
    """Most relevant first, each truncated, until the next one would exceed the budget."""
    normalized = [
        {
            "episode_id": _field(m, "episode_id"),
            "text": _truncate(" ".join(str(_field(m, "text") or "").split()), max_episode_tokens),
            "timestamp": _field(m, "timestamp"),
            "score": float(_field(m, "score") or 0.0),
            "role": _field(m, "role") or "user",
        }
        for m in memories
    ]
    normalized.sort(key=lambda m: m["score"], reverse=True)
    chosen, spent = [], estimate_tokens(_MEMORY_HEADER)
    for memory in normalized:
        if not memory["text"]:
            continue
        cost = estimate_tokens(_memory_line(memory)) + 1
        if spent + cost > budget:
            break
        chosen.append(memory)
        spent += cost
    return chosen


def _memory_line(memory: dict) -> str:
    who = "you said" if memory["role"] == "assistant" else "the user said"
    when = format_date(memory["timestamp"]) or "undated"
    return f"- {when}, {who}: {memory['text']}"


def _memory_block(chosen: list[dict]) -> str:
    return "\n".join([_MEMORY_HEADER, *(_memory_line(m) for m in chosen)])


def _choose_history(turns: Iterable[Mapping], user_text: str, budget: int) -> list[dict]:
    """The latest turns that fit the budget, oldest first; a long turn is cut to half of it."""
    messages = [
        {"role": t["role"], "content": str(t.get("text", t.get("content")) or "").strip()}
        for t in turns
        if t.get("role") in ("user", "assistant")
    ]
    messages = [m for m in messages if m["content"]]
    if messages and messages[-1] == {"role": "user", "content": user_text.strip()}:
        messages.pop()
    chosen, spent = [], 0
    for message in reversed(messages):
        content = _truncate(message["content"], budget // 2)
        cost = estimate_tokens(content) + MESSAGE_OVERHEAD_TOKENS
        if spent + cost > budget:
            break
        chosen.append({"role": message["role"], "content": content})
        spent += cost
    chosen.reverse()
    return chosen


def _alternating(messages: list[dict]) -> list[dict]:
    """Strict chat templates want system, user, assistant, user, ...: drop assistant turns
    right after the system message and merge neighbours with the same role."""
    result = [messages[0]]
    for message in messages[1:]:
        if result[-1]["role"] == "system" and message["role"] == "assistant":
            continue
        if result[-1]["role"] == message["role"]:
            merged = result[-1]["content"] + "\n\n" + message["content"]
            result[-1] = {"role": message["role"], "content": merged}
        else:
            result.append(dict(message))
    return result
