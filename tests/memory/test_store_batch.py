"""Store.batch(): many writes of one thread in one transaction (the chat's group commit)."""

from __future__ import annotations

import sqlite3

import pytest

from webapp.memory.store import BatchAborted

EXCHANGE = [{"role": "user", "text": "hello"},
            {"role": "assistant", "text": "", "status": "streaming"}]


def test_a_failing_write_in_a_batch_is_undone_alone(store):
    user = store.create_user("ada", "-")
    conversation, _ = store.add_messages(user, None, EXCHANGE, title="t")
    with store.batch():
        store.add_messages(user, conversation, [{"role": "user", "text": "kept"}])
        with pytest.raises(KeyError):
            store.add_messages(user, "no-such-conversation", [{"role": "user", "text": "lost"}])
        store.add_messages(user, conversation, [{"role": "user", "text": "kept too"}])
    texts = [m["text"] for m in store.list_messages(user, conversation)]
    assert texts == ["hello", "", "kept", "kept too"]


def test_a_batch_that_raises_leaves_nothing_behind(store):
    user = store.create_user("ada", "-")
    with pytest.raises(RuntimeError), store.batch():
        store.add_messages(user, None, EXCHANGE, title="never")
        raise RuntimeError("the batch's owner fails before its commit")
    assert store.list_conversations(user) == []
    store.add_messages(user, None, EXCHANGE, title="after")  # the connection is usable
    assert [c["title"] for c in store.list_conversations(user)] == ["after"]


def test_a_write_that_fills_the_disk_undoes_the_whole_batch_and_nothing_claims_success(store):
    user = store.create_user("ada", "-")
    conversation, (_, reply) = store.add_messages(user, None, EXCHANGE, title="t")
    conn = store._connection()  # this thread's connection: the one the batch uses
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 40}")  # a nearly full disk
    with pytest.raises(BatchAborted), store.batch():
        store.add_messages(user, conversation, [{"role": "user", "text": "first"}])
        with pytest.raises(sqlite3.OperationalError, match="full"):
            store.update_message(user, reply, text="x" * 3_000_000)
        store.add_messages(user, conversation, [{"role": "user", "text": "second"}])
    conn.execute("PRAGMA max_page_count=1073741823")
    assert [m["text"] for m in store.list_messages(user, conversation)] == ["hello", ""]
    store.add_messages(user, conversation, [{"role": "user", "text": "after"}])  # usable
    assert store.list_messages(user, conversation)[-1]["text"] == "after"
