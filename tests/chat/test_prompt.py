"""build_prompt: memories and recent turns inside token budgets, in a layout models accept."""

from dataclasses import dataclass
from datetime import UTC, datetime

from webapp.chat.prompt import build_prompt, estimate_prompt_tokens, estimate_tokens

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def conversation(turns):
    """`turns` alternating user/assistant store messages of realistic length."""
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "text": f"Turn {i}: " + "we talked about trains, tea and the weather. " * 5,
            "status": "complete",
        }
        for i in range(turns)
    ]


@dataclass
class Hit:  # shaped like webapp.memory.RecallHit
    episode_id: int
    text: str
    score: float
    timestamp: str
    role: str = "user"


def test_layout_is_system_then_history_then_the_new_message():
    prompt = build_prompt("And tomorrow?", [], conversation(4), now=NOW)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[-1] == {"role": "user", "content": "And tomorrow?"}
    assert "Today is 2026-11-25." in prompt.messages[0]["content"]


def test_memories_appear_with_dates_most_relevant_first():
    memories = [
        {"episode_id": 1, "text": "I play the cello", "score": 0.2, "timestamp": "2025-05-01"},
        Hit(2, "My daughter is called Ines", 0.9, "2026-02-10T08:00:00"),
    ]
    prompt = build_prompt("What is my daughter's name?", memories, [], now=NOW)
    system = prompt.messages[0]["content"]
    assert "- 2026-02-10, the user said: My daughter is called Ines" in system
    assert "- 2025-05-01, the user said: I play the cello" in system
    assert system.index("Ines") < system.index("cello")
    assert [m["episode_id"] for m in prompt.memories] == [2, 1]


def test_memory_block_stays_within_its_budget_and_truncates_long_episodes():
    memories = [
        {
            "episode_id": i,
            "text": f"memory {i} " + "x" * 5000,
            "score": 1000 - i,
            "timestamp": "2026-01-01",
        }
        for i in range(100)
    ]
    plain = build_prompt("hi", [], [], now=NOW).messages[0]["content"]
    prompt = build_prompt(
        "hi", memories, [], memory_budget_tokens=500, max_episode_tokens=100, now=NOW
    )
    system = prompt.messages[0]["content"]
    assert estimate_tokens(system) - estimate_tokens(plain) <= 500
    assert 2 <= len(prompt.memories) < 100
    assert all(len(m["text"]) <= 400 and m["text"].endswith("…") for m in prompt.memories)
    assert [m["episode_id"] for m in prompt.memories] == list(range(len(prompt.memories)))


def test_history_keeps_the_latest_turns_in_order_within_its_budget():
    turns = conversation(1000)
    prompt = build_prompt("next", [], turns, history_budget_tokens=1000, now=NOW)
    history = prompt.messages[1:-1]
    assert estimate_prompt_tokens(history) <= 1000
    assert history[-1]["content"] == turns[-1]["text"].strip()
    numbers = [int(m["content"].split(":")[0].removeprefix("Turn ")) for m in history]
    assert numbers == list(range(1000 - len(numbers), 1000))


def test_prompt_size_stays_bounded_as_the_conversation_grows():
    memories = [
        {"episode_id": i, "text": "a memory " * 30, "score": 1.0, "timestamp": None}
        for i in range(50)
    ]
    sizes = [
        estimate_prompt_tokens(build_prompt("So?", memories, conversation(n), now=NOW).messages)
        for n in (10, 100, 1000, 5000)
    ]
    assert sizes[1] == sizes[2] == sizes[3]
    assert sizes[3] <= 800 + 1500 + 200  # both default budgets + system prompt + message


def test_one_huge_latest_turn_is_cut_instead_of_emptying_the_history():
    turns = [{"role": "user", "text": "Paste:"}, {"role": "assistant", "text": "y" * 40_000}]
    prompt = build_prompt("thanks", [], turns, history_budget_tokens=1000, now=NOW)
    assert prompt.messages[-2]["role"] == "assistant"
    assert prompt.messages[-2]["content"].endswith("…")
    assert estimate_prompt_tokens(prompt.messages[1:-1]) <= 1000


def test_the_new_message_already_persisted_is_not_sent_twice():
    turns = [*conversation(2), {"role": "user", "text": "Where was I?"}]
    prompt = build_prompt("Where was I?", [], turns, now=NOW)
    assert sum(m["content"] == "Where was I?" for m in prompt.messages) == 1


def test_roles_alternate_even_after_a_failed_reply_or_a_cut_history():
    turns = [
        {"role": "assistant", "text": "Hello! How can I help?"},
        {"role": "user", "text": "First question"},
        {"role": "assistant", "text": "", "status": "error"},
    ]
    prompt = build_prompt("Second question", [], turns, now=NOW)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert prompt.messages[1]["content"] == "First question\n\nSecond question"
