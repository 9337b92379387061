"""Store.batch(): many writes of one thread in one transaction (the chat's group commit)."""

from __future__ import annotations

import pytest

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
