"""The turn-overhead harness: the real chat path with the LLM's time left out."""

import argparse

from webapp.bench import turn
from webapp.bench.recall import ChatText


def test_messages_have_exactly_the_requested_number_of_words():
    text = ChatText(0)
    assert [len(turn.message(text, n).split()) for n in (1, 40, 97)] == [1, 40, 97]


def test_the_timed_responder_streams_what_the_offline_responder_does():
    from webapp.llm import OfflineResponder, Prompt

    prompt = Prompt(messages=[{"role": "user", "content": "hello"}],
                    memories=[{"episode_id": 1, "text": "I like tea", "timestamp": 0.0,
                               "score": 1.0}])
    timed = turn.TimedResponder()
    assert list(timed.stream(prompt)) == list(OfflineResponder(delay=0).stream(prompt))
    assert timed.seconds > 0 and timed.first_call is not None


def test_turns_complete_and_the_overhead_excludes_the_responder():
    args = argparse.Namespace(episodes=30, turns=3, words=12, workers=1, seed=0)
    result = turn.run(args)
    assert result["episodes"] == 30 + 2 * 4  # each turn stores the message and the reply
    assert 0 < result["before_reply_ms_p50"] <= result["overhead_ms_p95"]
    assert result["overhead_ms_p50"] <= result["overhead_ms_p95"]
    assert result["offline_llm_ms_p50"] > 0
    assert result["cpu_ms_per_turn"] > 0
    assert set(result["engine_ms_p50"]) == {"recall", "store", "stats"}
    assert all(ms > 0 for ms in result["engine_ms_p50"].values())
