"""The offline responder answers from the recalled memories, through stream()."""

import threading

from webapp.llm import OfflineResponder, Prompt

MEMORIES = [
    {
        "episode_id": 1,
        "text": "My sister Anna lives in Lisbon",
        "score": 2.0,
        "timestamp": "2026-03-02T10:00:00+00:00",
    },
    {"episode_id": 2, "text": "I adopted a cat called Miso", "score": 1.0, "timestamp": 1767225600},
]


def prompt(memories):
    return Prompt(messages=[{"role": "user", "content": "Who lives in Lisbon?"}], memories=memories)


def test_it_says_it_is_offline_and_quotes_the_memories_with_dates():
    pieces = list(OfflineResponder(delay=0).stream(prompt(MEMORIES)))
    reply = "".join(pieces)
    assert len(pieces) > 10  # word by word
    assert "Offline mode" in reply and "no LLM is configured" in reply
    assert "**2026-03-02**, you said: “My sister Anna lives in Lisbon”" in reply
    assert "I adopted a cat called Miso" in reply and "2026-01-01" in reply
    assert reply.index("Anna") < reply.index("Miso")


def test_with_nothing_recalled_it_says_so():
    reply = "".join(OfflineResponder(delay=0).stream(prompt([])))
    assert "don't remember anything" in reply


def test_cancel_ends_the_stream():
    cancel = threading.Event()
    pieces = []
    for piece in OfflineResponder(delay=0.001).stream(prompt(MEMORIES), cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert len(pieces) == 3


def test_it_lists_one_pseudo_model():
    assert OfflineResponder().list_models() == ["offline"]
