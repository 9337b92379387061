"""MessageWriter: the chat's store writes from many threads, group-committed."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from webapp.chat.message_writer import MessageWriter
from webapp.memory import Store

EXCHANGE = [{"role": "user", "text": "hello"},
            {"role": "assistant", "text": "", "status": "streaming"}]


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "memory.db")
    yield opened
    opened.close()


def _commits_seen_by(conn: sqlite3.Connection) -> int:
    """SQLite's data_version: it moves once per transaction other connections commit."""
    return conn.execute("PRAGMA data_version").fetchone()[0]


def _wait_until_the_queue_settles(writer: MessageWriter, quiet: float = 0.3) -> None:
    """Until writes are queued and no more arrive for `quiet` seconds (at most 20 s)."""
    deadline = time.monotonic() + 20
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        queued = len(writer._queue)
        if queued != seen:
            seen, since = queued, time.monotonic()
        elif queued and time.monotonic() - since >= quiet:
            return
        time.sleep(0.01)
    raise AssertionError("the writes never queued up")


def test_a_write_returns_its_result_once_committed(store, tmp_path):
    user = store.create_user("ada", "-")
    conversation, (asked, answer) = MessageWriter(store).call(
        "add_messages", user, None, EXCHANGE, title="t")
    other = Store(tmp_path / "memory.db")  # another connection sees it: it is committed
    assert [m["id"] for m in other.list_messages(user, conversation)] == [asked, answer]
    other.close()


def test_writes_that_queue_up_together_share_one_commit(store, tmp_path):
    users = [store.create_user(f"user{i}", "-") for i in range(20)]
    writer = MessageWriter(store)
    writer.call("add_messages", users[0], None, EXCHANGE, title="warm")  # thread started
    watcher = sqlite3.connect(tmp_path / "memory.db")
    blocker = sqlite3.connect(tmp_path / "memory.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's next batch waits for this lock
    before = _commits_seen_by(watcher)
    results: list = []
    threads = [threading.Thread(target=lambda u=u: results.append(
        writer.call("add_messages", u, None, EXCHANGE, title="t"))) for u in users]
    for thread in threads:
        thread.start()
    _wait_until_the_queue_settles(writer)  # the writer holds the first few, blocked
    blocker.execute("COMMIT")
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == len(users)
    assert _commits_seen_by(watcher) - before <= 4  # the blocker's, and two or three batches
    assert sum(len(store.list_conversations(u)) for u in users) == len(users) + 1
    watcher.close()
    blocker.close()


def test_a_failing_write_raises_in_its_caller_and_the_writer_goes_on(store):
    user = store.create_user("ada", "-")
    writer = MessageWriter(store)
    with pytest.raises(KeyError):
        writer.call("update_message", user, "no-such-message", text="x")
    conversation, _ = writer.call("add_messages", user, None, EXCHANGE, title="t")
    assert len(writer.call("list_messages", user, conversation)) == 2
