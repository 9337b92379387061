"""Socket.IO against the real server: authentication, isolation between users, a full chat
turn relayed to FakeNIM, stop, LLM failures, spike frames and payload validation."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import requests
import socketio

from tests.web.conftest import UserSocket, connected_user, register
from tests.web.test_engine_restart import engine_pids, wait_until
from webapp.engine.frames import decode_frame
from webapp.web.app import STORE_THREADS


@pytest.fixture(scope="module")
def alice(live_server):
    with connected_user(live_server.url, "alice") as user:
        yield user


@pytest.fixture(scope="module")
def bob(live_server):
    with connected_user(live_server.url, "bob") as user:
        yield user


def test_an_anonymous_connection_is_refused(live_server):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(live_server.url, transports=["websocket"], wait_timeout=5)


def test_a_connection_from_another_site_is_refused(live_server):
    session = register(live_server.url, "eve")
    with pytest.raises(socketio.exceptions.ConnectionError):
        UserSocket(live_server.url, session, origin="http://evil.example")
    assert "http://evil.example is not an accepted origin" in live_server.log()
    same_site = UserSocket(live_server.url, session, origin=live_server.url)
    assert same_site.client.connected
    same_site.close()


def test_a_told_fact_is_recalled_into_the_prompt_of_a_later_turn(live_server, alice):
    _, sock = alice
    live_server.nim.reply = "Noted, a fine city."
    first = sock.chat("My sister Ingrid lives in Reykjavik and sells wool.")
    tokens = [p["delta"] for p in sock.named("token") if p["message_id"] == first["message_id"]]
    assert "".join(tokens) == "Noted, a fine city."

    second = sock.chat("Where does Ingrid live?")
    memory = sock.wait_for("memory", lambda p: p["message_id"] == second["message_id"])
    assert any("Reykjavik" in hit["text"] for hit in memory["recalled"])
    assert "ingrid" in memory["query_tokens"]
    system = live_server.nim.requests[-1]["messages"][0]
    assert system["role"] == "system" and "Reykjavik" in system["content"]


def test_replies_and_recalled_memories_survive_a_reload(live_server, alice):
    session, sock = alice
    ack = sock.chat("What does Ingrid sell?")
    url = f"{live_server.url}/api/conversations/{ack['conversation_id']}/messages"
    messages = session.get(url, timeout=10).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    reply = messages[1]
    assert reply["id"] == ack["message_id"] and reply["status"] == "complete"
    assert reply["text"] == live_server.nim.reply
    assert any("wool" in hit["text"] for hit in reply["meta"]["recalled"])


def test_each_user_sees_only_their_own_streams(live_server, alice, bob):
    _, alice_sock = alice
    bob_session, bob_sock = bob
    alice_before = len(alice_sock.events)
    ack = bob_sock.chat("Bob's secret: the vault code is 4711.")
    bob_sock.wait_for("spikes")  # relayed in batches, possibly after the stats
    bob_events = {name for name, _ in bob_sock.events}
    assert {"memory", "token", "done", "stats", "spikes"} <= bob_events
    new_for_alice = alice_sock.events[alice_before:]
    assert new_for_alice == []
    conversations = bob_session.get(f"{live_server.url}/api/conversations", timeout=10).json()
    assert [c["id"] for c in conversations["conversations"]] == [ack["conversation_id"]]


def test_spike_frames_follow_the_contract(live_server, bob):
    _, sock = bob
    frames = sock.named("spikes")
    assert frames
    stats = sock.named("stats")[-1]
    for frame in frames:
        assert isinstance(frame, bytes)
        first, neurons, steps = np.frombuffer(frame[:8], dtype="<u4", count=1)[0], *np.frombuffer(
            frame[4:8], dtype="<u2")
        assert neurons == stats["neurons_e"] + stats["neurons_i"]
        assert len(frame) == 8 + steps * ((neurons + 7) // 8)
        decoded_first, spikes = decode_frame(frame)
        assert decoded_first == first and spikes.shape == (steps, neurons)
    rate = np.concatenate([decode_frame(f)[1] for f in frames]).mean()
    assert 0 < rate < 0.5


def test_stop_keeps_the_partial_reply(live_server, alice):
    session, sock = alice
    live_server.nim.mode = "drip"
    live_server.nim.drip_interval = 0.2
    live_server.nim.reply = " ".join(f"word{i}" for i in range(40))
    ack = sock.call("chat", {"conversation_id": None, "text": "Tell me a long story."})
    sock.wait_for("token", lambda p: p["message_id"] == ack["message_id"])
    assert sock.call("stop", {"message_id": ack["message_id"]}) == {"ok": True}
    done = sock.wait_for("done", lambda p: p["message_id"] == ack["message_id"])
    assert done["status"] == "stopped"
    assert done["text"].startswith("word0") and "word39" not in done["text"]
    url = f"{live_server.url}/api/conversations/{ack['conversation_id']}/messages"
    reply = session.get(url, timeout=10).json()["messages"][1]
    assert reply["status"] == "stopped" and reply["text"] == done["text"]


def test_an_llm_failure_keeps_the_message_and_the_next_turn_works(live_server, alice):
    session, sock = alice
    live_server.nim.mode = "401"
    stats_before = len(sock.named("stats"))
    ack = sock.call("chat", {"conversation_id": None, "text": "Remember: my bike is green."})
    error = sock.wait_for("error", lambda p: p.get("message_id") == ack["message_id"])
    assert error["code"] == "auth" and "API key" in error["message"]
    # the turn ends (its message stored as an episode) with `stats`; a regenerate before
    # that would rightly be answered `busy`
    sock.wait_for("stats", lambda _: len(sock.named("stats")) > stats_before)
    url = f"{live_server.url}/api/conversations/{ack['conversation_id']}/messages"
    user, reply = session.get(url, timeout=10).json()["messages"]
    assert user["text"] == "Remember: my bike is green." and user["status"] == "complete"
    assert reply["status"] == "error" and reply["meta"]["error"]["code"] == "auth"

    live_server.nim.mode = "ok"
    again = sock.call("regenerate", {"message_id": ack["message_id"]})
    assert again["ok"] and again["message_id"] == ack["message_id"]
    done = sock.wait_for("done", lambda p: p["message_id"] == ack["message_id"])
    assert done["text"] == live_server.nim.reply
    recalled = session.get(f"{live_server.url}/api/memory?q=bike", timeout=10).json()
    assert any("green" in hit["text"] for hit in recalled["results"])


@pytest.mark.parametrize("payload, code", [
    (None, "bad_request"),
    ("just a string", "bad_request"),
    ({"conversation_id": None}, "bad_request"),
    ({"conversation_id": None, "text": "   "}, "bad_request"),
    ({"conversation_id": None, "text": 42}, "bad_request"),
    ({"conversation_id": 7, "text": "hi"}, "bad_request"),
    ({"conversation_id": None, "text": "x" * 16_001}, "too_long"),
    ({"conversation_id": "no-such-conversation", "text": "hi"}, "not_found"),
])
def test_bad_chat_payloads_get_a_clear_ack_error(alice, payload, code):
    _, sock = alice
    ack = sock.call("chat", payload)
    assert ack["ok"] is False and ack["error"]["code"] == code and ack["error"]["message"]


def test_another_users_ids_are_unknown_over_the_socket(alice, bob):
    _, alice_sock = alice
    _, bob_sock = bob
    bobs_reply = bob_sock.named("done")[-1]["message_id"]
    bobs_conversation = next(iter(bob_sock.named("memory")))["message_id"]
    assert alice_sock.call("regenerate", {"message_id": bobs_reply})["error"]["code"] == "not_found"
    assert alice_sock.call("stop", {"message_id": bobs_reply})["ok"] is False
    ack = alice_sock.call("chat", {"conversation_id": bobs_conversation, "text": "hi"})
    assert ack["error"]["code"] == "not_found"


def test_the_page_and_health_are_served(live_server):
    page = requests.get(live_server.url + "/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert requests.get(live_server.url + "/healthz", timeout=10).json()["status"] == "ok"


def test_regenerates_waiting_for_a_reply_to_be_saved_hold_up_no_other_users_events(
        live_server):
    """A reply stopped while its engine is slow stays "being saved" (its episodes not yet
    stored). More regenerates of it than the server has store threads (STORE_THREADS) are
    all answered at once (one starts, the others are `busy`), and another user's chat is
    acknowledged while the engine is still held: no event waits on another turn."""
    nim = live_server.nim
    nim.mode, nim.drip_interval = "drip", 0.1
    nim.reply = " ".join(f"step{i}" for i in range(60))
    with connected_user(live_server.url, "clicker") as (session, sock), \
            connected_user(live_server.url, "bystander") as (_, other):
        ack = sock.call("chat", {"conversation_id": None, "text": "Explain tides slowly."})
        reply_id = ack["message_id"]
        sock.wait_for("token", lambda p: p["message_id"] == reply_id)  # recalled already
        engines = engine_pids(live_server.process.pid)
        answers: list[dict] = []
        try:
            for pid in engines:  # the engines answer nothing: the reply's episodes wait
                os.kill(pid, signal.SIGSTOP)
            assert sock.call("stop", {"message_id": reply_id}) == {"ok": True}
            stopped = sock.wait_for("done", lambda p: p["message_id"] == reply_id)
            nim.mode, nim.reply = "ok", "Tides follow the moon."
            for _ in range(STORE_THREADS + 4):
                sock.client.emit("regenerate", {"message_id": reply_id},
                                 callback=answers.append)
            time.sleep(0.5)  # they reach the server before the other user's chat
            try:
                other_ack = other.call("chat", {"conversation_id": None, "text": "Hello."},
                                       timeout=5)
            except socketio.exceptions.TimeoutError:
                pytest.fail("another user's chat was held up by regenerates waiting")
            assert other_ack["ok"], other_ack
            # Every regenerate is answered before the engines come back.
            wait_until(lambda: len(answers) == STORE_THREADS + 4, timeout=5)
        finally:
            for pid in engines:
                os.kill(pid, signal.SIGCONT)
        codes = sorted("ok" if a["ok"] else a["error"]["code"] for a in answers)
        assert codes == ["busy"] * (STORE_THREADS + 3) + ["ok"]
        done = sock.wait_for("done", lambda p: p["message_id"] == reply_id
                             and p["text"] == "Tides follow the moon.", timeout=30)
        assert done["status"] == "complete"
        other.wait_for("done", lambda p: p["message_id"] == other_ack["message_id"])
        # The regenerate waited for the stopped reply's episodes: that reply was forgotten.
        sock.wait_for("stats", lambda _: sock.named("done")[-1] is done, timeout=30)
        texts = [e["text"] for e in session.get(live_server.url + "/api/memory/export",
                                                timeout=30).json()["episodes"]]
        assert stopped["text"] not in texts and "Tides follow the moon." in texts
