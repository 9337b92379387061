"""TokenBatcher: a reply's pieces reach the user in order and in full, in few `token` events."""

from __future__ import annotations

import threading
import time

from tests.chat.conftest import Events
from webapp.chat.token_batcher import TokenBatcher


def test_the_first_piece_goes_out_at_once():
    sent = Events()
    TokenBatcher(sent, interval=60.0).send(7, "r1", "Hel")
    assert sent.log == [(7, "token", {"message_id": "r1", "delta": "Hel"})]


def test_pieces_that_follow_closely_are_joined_and_close_sends_them():
    sent = Events()
    batcher = TokenBatcher(sent, interval=60.0)  # nothing is due before close
    for piece in ["Hel", "lo", ",", " wor", "ld"]:
        batcher.send(7, "r1", piece)
    assert sent.deltas("r1") == ["Hel"]
    batcher.close("r1")
    assert sent.deltas("r1") == ["Hel", "lo, world"]
    batcher.close("r1")  # a second close sends nothing
    assert len(sent.log) == 2


def test_held_pieces_go_out_without_close_when_the_stream_stalls():
    sent = Events()
    batcher = TokenBatcher(sent, interval=0.02)
    batcher.send(7, "r1", "a")
    batcher.send(7, "r1", "b")  # held: the stream now pauses, nobody calls close
    with sent.changed:
        assert sent.changed.wait_for(lambda: len(sent.log) == 2, timeout=10)
    assert sent.deltas("r1") == ["a", "b"]


def test_a_piece_after_a_pause_goes_out_at_once():
    sent = Events()
    batcher = TokenBatcher(sent, interval=0.01)
    batcher.send(7, "r1", "a")
    time.sleep(0.05)
    batcher.send(7, "r1", "b")
    assert sent.deltas("r1") == ["a", "b"]


def test_concurrent_replies_keep_their_own_text_user_and_order():
    sent = Events()
    batcher = TokenBatcher(sent, interval=0.005)
    words = [f" w{i}" for i in range(300)]

    def stream(user_id: int, reply_id: str):
        for word in words:
            batcher.send(user_id, reply_id, word)
        batcher.close(reply_id)

    threads = [threading.Thread(target=stream, args=(user, f"r{user}")) for user in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for user in range(4):
        assert "".join(sent.deltas(f"r{user}")) == "".join(words)
        assert {u for u, _, p in sent.log if p["message_id"] == f"r{user}"} == {user}
    assert len(sent.log) < 4 * len(words)
