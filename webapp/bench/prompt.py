"""Prompt size against conversation length: flat under budgets, unlike sending everything.

Simulates a conversation of `--turns` messages (a turn is one message) of generated
chat text (seeded: short user messages, longer assistant answers) and, before each user
message, builds its prompt with the default budgets and ten recalled memories. Reports
the estimated prompt tokens beside what sending the whole history would cost.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from tqdm import tqdm

from webapp.bench.figure import png_figure
from webapp.chat.prompt import (
    DEFAULT_HISTORY_BUDGET_TOKENS,
    DEFAULT_MEMORY_BUDGET_TOKENS,
    build_prompt,
    estimate_prompt_tokens,
)

CHECKPOINTS = (0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
RECALLED_PER_TURN = 10

_TOPICS = (
    "my sourdough starter",
    "the hiking trip to the Dolomites",
    "my sister's wedding",
    "learning Portuguese",
    "the garden tomatoes",
    "my new job at the library",
    "running a half marathon",
    "the cat's vet appointment",
    "our kitchen renovation",
    "reading Middlemarch",
    "the budget for next year",
    "my grandmother's recipes",
)
_ASKS = (
    "Can you remind me what we said about {t}?",
    "I'm worried about {t}, any advice?",
    "Quick update on {t}: it went better than expected!",
    "What should I plan next for {t}?",
    "Do you think {t} is worth the effort?",
    "I forgot to tell you about {t} yesterday.",
)
_ANSWER_SENTENCES = (
    "That sounds like real progress with {t}.",
    "Last time you mentioned {t}, you were unsure.",
    "One approach is to break {t} into small weekly steps.",
    "It might help to write down what worked and what did not.",
    "Many people find that a fixed routine makes this easier.",
    "If you want, we can make a short checklist together.",
    "Remember to leave some slack for unexpected delays.",
    "Here is a simple plan: first, decide on a date; second, gather what you need; third, ask "
    "someone to join you.",
    "How do you feel about it now?",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=1000, help="messages in the conversation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of both curves")


def generate_conversation(turns: int, rng: random.Random) -> list[dict]:
    """Alternating user/assistant store messages about a handful of recurring topics."""
    messages = []
    for index in range(turns):
        topic = rng.choice(_TOPICS)
        if index % 2 == 0:
            text = rng.choice(_ASKS).format(t=topic)
        else:
            sentences = rng.choices(_ANSWER_SENTENCES, k=rng.randint(3, 9))
            text = " ".join(s.format(t=topic) for s in sentences)
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "text": text})
    return messages


def generate_memories(rng: random.Random, start: datetime) -> list[dict]:
    """Ten recalled episodes from earlier conversations, with dates and falling scores."""
    return [
        {
            "episode_id": rank,
            "text": rng.choice(_ASKS).format(t=rng.choice(_TOPICS)),
            "timestamp": (start - timedelta(days=rng.randint(1, 400))).isoformat(),
            "score": 1.0 / (rank + 1),
        }
        for rank in range(RECALLED_PER_TURN)
    ]


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    conversation = generate_conversation(args.turns + 1, rng)
    memories = generate_memories(rng, now)
    lengths = range(0, args.turns + 1, 2)  # before each user message
    prompt_tokens, full_tokens = {}, {}
    history_tokens = 0
    for length in tqdm(lengths, desc="prompt", unit="turn"):
        history_tokens += estimate_prompt_tokens(
            {"role": m["role"], "content": m["text"]} for m in conversation[length - 2 : length]
        )
        started = time.perf_counter()
        prompt = build_prompt(
            conversation[length]["text"], memories, conversation[:length], now=now
        )
        build_ms = (time.perf_counter() - started) * 1000
        sent = estimate_prompt_tokens(prompt.messages)
        prompt_tokens[length] = sent
        full_tokens[length] = sent - estimate_prompt_tokens(prompt.messages[1:-1]) + history_tokens
    last = lengths[-1]
    rows = [
        {"turns": n, "prompt_tokens": prompt_tokens[n], "full_history_tokens": full_tokens[n]}
        for n in (*[c for c in CHECKPOINTS if c < last], last)
    ]
    if args.plot:
        _plot(args.plot, prompt_tokens, full_tokens)
    return {
        "turns": last,
        "estimator": "ceil(chars / 4) + 4 per message",
        "memory_budget_tokens": DEFAULT_MEMORY_BUDGET_TOKENS,
        "history_budget_tokens": DEFAULT_HISTORY_BUDGET_TOKENS,
        "recalled_per_turn": RECALLED_PER_TURN,
        "max_prompt_tokens": max(prompt_tokens.values()),
        "full_history_tokens_at_end": full_tokens[last],
        "build_ms_at_end": round(build_ms, 3),
        "rows": rows,
    }


def format_report(result: dict) -> str:
    lines = [
        f"prompt size ({result['estimator']}; budgets: memory "
        f"{result['memory_budget_tokens']}, history {result['history_budget_tokens']})",
        f"{'turns':>7} {'prompt tokens':>14} {'full history':>13}",
    ]
    lines += [
        f"{r['turns']:>7} {r['prompt_tokens']:>14} {r['full_history_tokens']:>13}"
        for r in result["rows"]
    ]
    return "\n".join(lines)


def _plot(path: str, prompt_tokens: dict[int, int], full_tokens: dict[int, int]) -> None:
    turns = list(prompt_tokens)
    with png_figure(path, dpi=120, figsize=(7, 4)) as (figure, axes):
        axes.plot(turns, list(full_tokens.values()), label="whole conversation sent",
                  color="tab:red")
        axes.plot(turns, list(prompt_tokens.values()), label="SORNMemory prompt (budgeted)",
                  color="tab:blue")
        axes.set_yscale("log")
        axes.set_xlabel("conversation length (messages)")
        axes.set_ylabel("prompt tokens (estimated)")
        axes.set_title("Prompt size stays flat as a conversation grows")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
