"""ChatTurn with real parts: a SQLite store, an engine worker process, NIMClient talking to
FakeNIM; events are collected from the emit callback the web layer would pass."""

from __future__ import annotations

import threading
import time

import pytest

from tests.chat.conftest import Events
from tests.support.fake_nim import FakeNIM
from webapp.chat.turn import MAX_ACTIVE_PER_USER, ChatTurn
from webapp.engine import EnginePool, WorkerSettings
from webapp.llm import NIMClient, OfflineResponder, RetryPolicy
from webapp.memory import Store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("turn")
    store = Store(tmp / "db.sqlite")
    pool = EnginePool(WorkerSettings(str(tmp / "db.sqlite"), str(tmp / "networks")), workers=1)
    pool.start()
    with FakeNIM() as nim:
        llm = NIMClient(base_url=nim.base_url, api_key="nvapi-test",
                        retry=RetryPolicy(max_retries=0), read_timeout=5)
        events = Events()
        yield store, pool, nim, ChatTurn(store, pool, llm, events), events
    pool.close()


@pytest.fixture
def user(world):
    store, _, nim, _, _ = world
    nim.mode, nim.delay, nim.reply = "ok", 0.0, "Happy to help."
    return store.create_user(f"user{len(nim.requests)}-{time.monotonic_ns()}", "hash")


def run_turn(turns: ChatTurn, user_id: int, payload) -> dict:
    ack, work = turns.chat(user_id, payload)
    assert ack["ok"], ack
    work()
    return ack


@pytest.mark.parametrize("payload, code", [
    (None, "bad_request"), ([], "bad_request"), ({}, "bad_request"),
    ({"text": ""}, "bad_request"), ({"text": ["hi"]}, "bad_request"),
    ({"text": "hi", "conversation_id": 3}, "bad_request"),
    ({"text": "hi", "conversation_id": "x" * 65}, "bad_request"),
    ({"text": "lone \ud800 surrogate"}, "bad_request"), ({"text": "y" * 16_001}, "too_long"),
    ({"text": "hi", "conversation_id": "nope"}, "not_found"),
])
def test_invalid_payloads_are_refused_and_nothing_is_stored(world, user, payload, code):
    store, _, _, turns, _ = world
    ack, work = turns.chat(user, payload)
    assert ack["ok"] is False and ack["error"]["code"] == code and work is None
    assert store.list_conversations(user) == []


def test_a_turn_recalls_streams_persists_and_stores_both_messages(world, user):
    store, pool, nim, turns, events = world
    first = run_turn(turns, user, {"conversation_id": None, "text": "I keep bees in Lisbon."})
    nim.reply = "You keep bees."
    since = len(events.log)
    ack = run_turn(turns, user, {"conversation_id": first["conversation_id"],
                                 "text": "What do I keep?"})
    reply_id = ack["message_id"]

    names = [event for user_id, event, _ in events.log[since:] if user_id == user]
    assert names[0] == "memory" and names[-2:] == ["done", "stats"]
    assert set(names[1:-2]) == {"token"}
    memory = events.of(user, "memory", reply_id)[-1][1]
    assert memory["recalled"][0]["text"] == "I keep bees in Lisbon."
    assert "Lisbon" in nim.requests[-1]["messages"][0]["content"]
    history = [m["content"] for m in nim.requests[-1]["messages"][1:]]
    assert history == ["I keep bees in Lisbon.", "Happy to help.", "What do I keep?"]
    assert events.of(user, "done", reply_id)[-1][1] == {
        "message_id": reply_id, "text": "You keep bees.", "status": "complete"}

    messages = store.list_messages(user, ack["conversation_id"])
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"), ("assistant", "complete")] * 2
    reply = messages[-1]
    assert reply["text"] == "You keep bees." and reply["meta"]["recalled"][0]["episode_id"]
    assert pool.call(user, "stats")["episodes"] == 4
    assert messages[-2]["meta"]["episode_id"] and reply["meta"]["episode_id"]


def test_an_llm_error_keeps_the_message_and_marks_the_reply(world, user):
    store, pool, nim, turns, events = world
    nim.mode = "429"
    ack = run_turn(turns, user, {"conversation_id": None, "text": "My locker code is 3141."})
    error = events.of(user, "error", ack["message_id"])[-1][1]
    assert error["code"] == "rate_limited" and error["message_id"] == ack["message_id"]
    asked, reply = store.list_messages(user, ack["conversation_id"])
    assert asked["text"] == "My locker code is 3141."
    assert reply["status"] == "error" and reply["meta"]["error"]["code"] == "rate_limited"
    assert pool.call(user, "recall", query="locker code")["recalled"]  # the message is in memory
    assert not events.of(user, "done", ack["message_id"])

    nim.mode = "ok"
    retry, work = turns.regenerate(user, {"message_id": ack["message_id"]})
    assert retry["ok"] and retry["message_id"] == ack["message_id"]
    work()
    assert store.get_message(user, ack["message_id"])["status"] == "complete"
    assert pool.call(user, "stats")["episodes"] == 2  # the question once, the new reply once


def test_regenerate_replaces_the_reply_and_its_memory(world, user):
    store, pool, nim, turns, events = world
    ack = run_turn(turns, user, {"conversation_id": None, "text": "Name a colour."})
    nim.reply = "Turquoise, definitely."
    again, work = turns.regenerate(user, {"message_id": ack["message_id"]})
    work()
    assert store.get_message(user, ack["message_id"])["text"] == "Turquoise, definitely."
    recalled = pool.call(user, "recall", query="happy help colour")["recalled"]
    texts = [hit["text"] for hit in recalled]
    assert "Happy to help." not in texts and "Turquoise, definitely." in texts
    assert pool.call(user, "stats")["episodes"] == 2


def _regenerating_on_done(world, regenerates: int):
    """A ChatTurn whose emit sends `regenerates` regenerates of a reply the moment its
    `done` goes out (the reply is written, its episodes not yet stored: a click right
    after Stop); returns it and the list their (ack, work) answers are appended to."""
    store, pool, nim, _, events = world
    answers: list = []

    def emit(user_id, event, payload):
        events(user_id, event, payload)
        if event == "done" and not answers:
            for _ in range(regenerates):
                threading.Thread(target=lambda: answers.append(turns.regenerate(
                    user_id, {"message_id": payload["message_id"]}))).start()

    turns = ChatTurn(store, pool, NIMClient(base_url=nim.base_url, api_key="nvapi-test"), emit)
    return turns, answers


def _wait_for(answers: list, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(answers) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(answers) == count


def test_a_regenerate_sent_as_the_reply_ends_waits_for_its_turn_and_replaces_its_memory(
        world, user):
    store, pool, nim, _, _ = world
    turns, answers = _regenerating_on_done(world, 1)
    nim.reply = "Flamingo pelican heron."
    ack = run_turn(turns, user, {"conversation_id": None, "text": "Name a bird."})
    _wait_for(answers, 1)
    (again, work), = answers
    assert again["ok"], again  # not "busy": it waited for the turn before to end
    nim.reply = "Kestrel osprey falcon."
    work()
    assert store.get_message(user, ack["message_id"])["text"] == "Kestrel osprey falcon."
    texts = [hit["text"] for hit in pool.call(user, "recall", query="bird flamingo kestrel")[
        "recalled"]]
    assert "Kestrel osprey falcon." in texts and "Flamingo pelican heron." not in texts
    assert pool.call(user, "stats")["episodes"] == 2  # the question and the new reply


def test_two_regenerates_of_one_reply_start_one_turn(world, user):
    _, _, nim, _, _ = world
    turns, answers = _regenerating_on_done(world, 2)
    run_turn(turns, user, {"conversation_id": None, "text": "Name a fish."})
    _wait_for(answers, 2)
    codes = sorted("ok" if ack["ok"] else ack["error"]["code"] for ack, _ in answers)
    assert codes == ["busy", "ok"]
    for _, work in answers:
        if work is not None:
            work()


def test_a_regenerate_of_a_reply_being_saved_is_answered_at_once_and_can_be_stopped(
        world, user):
    """Sent from inside the turn's `done` (its episodes cannot be stored before it returns),
    the regenerate must not wait for that turn: it is acknowledged, and a stop before its
    turn starts makes that turn end at once, stopped, without asking the LLM."""
    store, pool, nim, _, events = world
    answers: list = []

    def emit(user_id, event, payload):
        events(user_id, event, payload)
        if event == "done" and not answers:
            answers.append(turns.regenerate(user_id, {"message_id": payload["message_id"]}))
            answers.append(turns.stop(user_id, {"message_id": payload["message_id"]}))

    turns = ChatTurn(store, pool, NIMClient(base_url=nim.base_url, api_key="nvapi-test"), emit)
    ack = run_turn(turns, user, {"conversation_id": None, "text": "Name a river."})
    (again, work), stopped = answers
    assert again["ok"] and again["message_id"] == ack["message_id"], again
    assert stopped == {"ok": True}
    asked = len(nim.requests)
    work()
    assert events.of(user, "done", ack["message_id"])[-1][1] == {
        "message_id": ack["message_id"], "text": "", "status": "stopped"}
    assert len(nim.requests) == asked
    assert store.get_message(user, ack["message_id"])["status"] == "stopped"


def test_stop_ends_the_stream_and_keeps_the_partial_text(world, user):
    store, _, nim, turns, events = world
    nim.mode, nim.drip_interval = "drip", 0.1
    nim.reply = " ".join(f"w{i}" for i in range(50))
    ack, work = turns.chat(user, {"conversation_id": None, "text": "Count slowly."})
    worker = threading.Thread(target=work)
    worker.start()
    events.wait(user, "token", ack["message_id"])
    assert turns.stop(user, {"message_id": ack["message_id"]}) == {"ok": True}
    worker.join(timeout=10)
    done = events.of(user, "done", ack["message_id"])[-1][1]
    assert done["status"] == "stopped"
    assert done["text"].startswith("w0") and "w49" not in done["text"]
    streamed = [p["delta"] for _, p in events.of(user, "token", ack["message_id"])]
    assert "".join(streamed) == done["text"]
    reply = store.get_message(user, ack["message_id"])
    assert (reply["status"], reply["text"]) == ("stopped", done["text"])
    assert turns.stop(user, {"message_id": ack["message_id"]})["error"]["code"] == "not_active"


def test_other_users_cannot_stop_or_regenerate_a_reply(world, user):
    store, _, nim, turns, _ = world
    stranger = store.create_user(f"stranger{time.monotonic_ns()}", "hash")
    nim.mode = "hang"
    ack, work = turns.chat(user, {"conversation_id": None, "text": "Wait for it."})
    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert turns.stop(stranger, {"message_id": ack["message_id"]})["ok"] is False
        regenerate, _ = turns.regenerate(stranger, {"message_id": ack["message_id"]})
        assert regenerate["error"]["code"] == "not_found"
        busy, _ = turns.regenerate(user, {"message_id": ack["message_id"]})
        assert busy["error"]["code"] == "busy"
    finally:
        turns.stop(user, {"message_id": ack["message_id"]})
        worker.join(timeout=10)


def test_a_user_can_only_have_a_few_replies_in_flight(world, user):
    _, _, nim, turns, _ = world
    nim.mode = "hang"
    started = []
    try:
        for i in range(MAX_ACTIVE_PER_USER):
            ack, work = turns.chat(user, {"conversation_id": None, "text": f"question {i}"})
            thread = threading.Thread(target=work)
            thread.start()
            started.append((ack, thread))
        refused, work = turns.chat(user, {"conversation_id": None, "text": "one more"})
        assert refused["error"]["code"] == "busy" and work is None
    finally:
        for ack, thread in started:
            turns.stop(user, {"message_id": ack["message_id"]})
            thread.join(timeout=10)


def test_a_reply_cut_off_by_a_server_stop_is_marked_failed_but_a_live_one_is_not(world, user):
    store, _, nim, turns, _ = world
    conversation = store.create_conversation(user, "before the restart")
    store.add_message(user, conversation, "user", "Hello?")
    orphan = store.add_message(user, conversation, "assistant", "Half a sen",
                               status="streaming")
    nim.mode = "hang"
    ack, work = turns.chat(user, {"conversation_id": conversation, "text": "Still there?"})
    worker = threading.Thread(target=work)
    worker.start()
    try:
        messages = turns.settle_interrupted(user, store.list_messages(user, conversation))
        statuses = {m["id"]: m["status"] for m in messages}
        assert statuses[orphan] == "error" and statuses[ack["message_id"]] == "streaming"
        stored = store.get_message(user, orphan)
        assert stored["text"] == "Half a sen" and stored["meta"]["error"]["code"] == "interrupted"
    finally:
        turns.stop(user, {"message_id": ack["message_id"]})
        worker.join(timeout=10)


def test_a_burst_of_pieces_streams_as_few_token_events_before_done(world, user):
    _, _, nim, turns, events = world
    nim.reply = " ".join(f"word{i}" for i in range(60))  # FakeNIM sends them all at once
    ack = run_turn(turns, user, {"conversation_id": None, "text": "Say many words."})
    names = [e for e, p in events.of(user) if isinstance(p, dict)
             and p.get("message_id") == ack["message_id"]]
    assert names[-1] == "done" and "token" not in names[names.index("done"):]
    deltas = [p["delta"] for _, p in events.of(user, "token", ack["message_id"])]
    assert "".join(deltas) == nim.reply
    assert len(deltas) < 60


def test_the_message_and_its_reply_are_stored_before_the_ack(world, user):
    store, _, _, turns, _ = world
    ack, work = turns.chat(user, {"conversation_id": None, "text": "Remember my bike."})
    asked, reply = store.list_messages(user, ack["conversation_id"])
    assert (asked["id"], asked["text"], asked["status"]) == (
        ack["user_message_id"], "Remember my bike.", "complete")
    assert (reply["id"], reply["text"], reply["status"]) == (ack["message_id"], "", "streaming")
    assert store.get_conversation(user, ack["conversation_id"])["title"] == "Remember my bike."
    work()


def test_the_offline_responders_replies_are_shown_but_not_remembered(world, user):
    """They only quote memories: stored, every later recall would return each memory twice."""
    store, pool, _, _, _ = world
    events = Events()
    offline = ChatTurn(store, pool, OfflineResponder(delay=0.0), events)
    first = run_turn(offline, user, {"conversation_id": None, "text": "I keep bees in Lisbon."})
    ack = run_turn(offline, user, {"conversation_id": first["conversation_id"],
                                   "text": "Where do I keep bees?"})
    reply = events.of(user, "done", ack["message_id"])[-1][1]
    assert "I keep bees in Lisbon." in reply["text"]
    messages = store.list_messages(user, ack["conversation_id"])
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert all(m["meta"]["episode_id"] for m in messages if m["role"] == "user")
    assert not any((m["meta"] or {}).get("episode_id") for m in messages
                   if m["role"] == "assistant")
    assert pool.call(user, "stats")["episodes"] == 2


@pytest.mark.parametrize("mode, code, partial", [
    ("empty", "empty_reply", ""),
    ("html", "bad_stream", ""),
    ("error-chunk", "server_error", "Alpha beta"),
    ("trickle", "timeout", "Alpha"),  # keep-alives for ever: ended by the reply timeout
])
def test_a_reply_the_llm_spoils_is_marked_failed_with_what_arrived_and_the_next_turn_works(
        world, user, monkeypatch, mode, code, partial):
    store, pool, nim, turns, events = world
    nim.mode, nim.reply, nim.drip_interval = mode, "Alpha beta gamma delta", 0.1
    monkeypatch.setattr(turns.llm, "reply_timeout", 1.0)
    ack = run_turn(turns, user, {"conversation_id": None, "text": f"Tell me about {mode}."})
    error = events.of(user, "error", ack["message_id"])[-1][1]
    assert error["code"] == code and not events.of(user, "done", ack["message_id"])
    assert "".join(events.deltas(ack["message_id"])) == partial
    asked, reply = store.list_messages(user, ack["conversation_id"])
    assert asked["text"] == f"Tell me about {mode}." and asked["meta"]["episode_id"]
    assert (reply["status"], reply["text"], reply["meta"]["error"]["code"]) == (
        "error", partial, code)

    nim.mode = "ok"
    again = run_turn(turns, user, {"conversation_id": ack["conversation_id"], "text": "Again?"})
    assert events.of(user, "done", again["message_id"])[-1][1]["text"] == nim.reply


def test_a_failed_reply_is_logged_for_the_operator_with_its_cause_but_not_the_key(
        world, user, caplog):
    """A bad key or a wrong URL fails every turn: the server log must say so, not only
    the users' screens."""
    _, _, nim, turns, _ = world
    nim.mode = "401"
    caplog.set_level("DEBUG")
    run_turn(turns, user, {"conversation_id": None, "text": "Hello?"})
    failures = [r for r in caplog.records if r.name == "webapp.chat.turn"
                and r.levelname == "WARNING" and "NVIDIA_API_KEY" in r.getMessage()]
    assert failures and "auth" in failures[0].getMessage()
    assert "nvapi-test" not in caplog.text


def test_a_reply_cut_by_the_token_limit_is_kept_complete_and_marked_as_cut(world, user):
    """finish_reason "length": a real reply (shown, stored, remembered), but the user must
    see that it was cut, also after a reload."""
    store, pool, nim, turns, events = world
    nim.mode, nim.reply = "length", "One two three four five six"
    ack = run_turn(turns, user, {"conversation_id": None, "text": "Count for me."})
    assert events.of(user, "done", ack["message_id"])[-1][1] == {
        "message_id": ack["message_id"], "text": "One two three", "status": "complete",
        "finish": "length"}
    reply = store.get_message(user, ack["message_id"])
    assert (reply["status"], reply["text"], reply["meta"]["finish"]) == (
        "complete", "One two three", "length")
    assert reply["meta"]["episode_id"]  # remembered like any reply

    nim.mode = "ok"
    again, work = turns.regenerate(user, {"message_id": ack["message_id"]})
    work()
    assert "finish" not in events.of(user, "done", ack["message_id"])[-1][1]
    assert "finish" not in store.get_message(user, ack["message_id"])["meta"]


def test_a_rate_limit_is_waited_out_in_view_and_a_long_one_fails_at_once(
        world, user, monkeypatch):
    """A retry's wait is told to the user (the `waiting` event, before the reply's first
    piece); while the server refuses requests for long, a turn fails at once, saying when
    to try again, and sends nothing."""
    store, pool, nim, _, events = world
    llm = NIMClient(base_url=nim.base_url, api_key="nvapi-test",  # its own rate gate
                    retry=RetryPolicy(max_retries=1, max_retry_after=5))
    turns = ChatTurn(store, pool, llm, events)
    monkeypatch.setattr(nim, "retry_after", "1")
    monkeypatch.setattr(nim, "fail_times", len(nim.calls) + 1)
    nim.mode = "429-retry-after"
    ack = run_turn(turns, user, {"conversation_id": None, "text": "Are you busy?"})
    names = [e for e, p in events.of(user, message_id=ack["message_id"])
             if isinstance(p, dict) and p.get("message_id") == ack["message_id"]]
    assert names[:3] == ["memory", "waiting", "token"] and names[-1] == "done"
    assert events.of(user, "waiting", ack["message_id"])[-1][1] == {
        "message_id": ack["message_id"], "code": "rate_limited", "seconds": 1.0}

    monkeypatch.setattr(nim, "retry_after", "600")
    monkeypatch.setattr(nim, "fail_times", None)
    asked = len(nim.calls)
    for text in ("Now?", "And now?"):
        ack = run_turn(turns, user, {"conversation_id": ack["conversation_id"], "text": text})
        error = events.of(user, "error", ack["message_id"])[-1][1]
        assert error["code"] == "rate_limited" and "Try again in 10 min" in error["message"]
        assert not events.of(user, "waiting", ack["message_id"])
    assert len(nim.calls) == asked + 1  # the second turn sent nothing
