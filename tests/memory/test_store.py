"""The SQLite store: users, conversations and messages, all scoped to one user."""

import sqlite3

import pytest

from webapp.memory import Store
from webapp.memory.store import NewEpisode


def test_users_are_created_found_and_unique(store):
    ada = store.create_user("ada", "h1", is_admin=True)
    bob = store.create_user("bob", "h2")
    assert store.count_users() == 2
    assert store.get_user("ada") | {"created_at": 0} == {
        "id": ada, "username": "ada", "password_hash": "h1", "is_admin": True, "created_at": 0}
    assert store.get_user_by_id(bob)["username"] == "bob"
    assert store.get_user("nobody") is None and store.get_user_by_id(999) is None
    with pytest.raises(ValueError, match="taken"):
        store.create_user("ada", "h3")


def test_conversations_and_messages_round_trip_with_meta(store):
    user = store.create_user("ada", "h")
    conversation = store.create_conversation(user, "Trip plans")
    first = store.add_message(user, conversation, "user", "Where to hike?")
    second = store.add_message(user, conversation, "assistant", "", status="streaming",
                               meta={"recalled": [1, 2]})
    store.update_message(user, second, text="The Alps.", status="complete",
                         meta={"recalled": [1], "error": None})
    messages = store.list_messages(user, conversation)
    assert [m["id"] for m in messages] == [first, second]
    assert messages[1]["text"] == "The Alps." and messages[1]["status"] == "complete"
    assert messages[1]["meta"] == {"recalled": [1], "error": None}
    assert store.get_message(user, first)["meta"] is None
    assert [c["id"] for c in store.list_conversations(user)] == [conversation]
    assert store.get_conversation(user, conversation)["title"] == "Trip plans"


def test_another_users_ids_reach_nothing(store):
    ada, bob = store.create_user("ada", "h"), store.create_user("bob", "h")
    conversation = store.create_conversation(ada, "secret")
    message = store.add_message(ada, conversation, "user", "my secret")
    (episode,) = store.add_episodes(ada, [NewEpisode("my secret", ["secret"])])
    assert store.get_conversation(bob, conversation) is None
    assert store.list_messages(bob, conversation) == []
    assert store.get_message(bob, message) is None
    assert store.list_conversations(bob) == []
    assert store.get_episodes(bob, [episode]) == {}
    assert store.postings(bob, ["secret"]) == {}
    (bobs,) = store.add_episodes(bob, [NewEpisode("mine", ["mine"])])  # the same position
    assert store.episodes_near(bob, [episode], 3) == []
    assert [row[0] for row in store.episodes_near(ada, [episode, bobs], 3)] == [episode]
    assert store.delete_episode(bob, episode) is False
    with pytest.raises(KeyError):
        store.add_message(bob, conversation, "user", "intrusion")
    with pytest.raises(KeyError):
        store.update_message(bob, message, text="changed")
    assert store.get_message(ada, message)["text"] == "my secret"
    assert set(store.get_episodes(ada, [episode])) == {episode}


def test_postings_survive_many_blocks_and_deletes(store):
    user = store.create_user("ada", "h")
    ids = store.add_episodes(user, [NewEpisode(f"cat {i}", ["cat", str(i)]) for i in range(300)])
    ids += [store.add_episodes(user, [NewEpisode("cat again", ["cat", "again"])])[0]]
    for victim in ids[::7]:
        assert store.delete_episode(user, victim)
    kept = [i for i in ids if i not in ids[::7]]
    assert store.postings(user, ["cat"])["cat"]["episode"].tolist() == kept
    assert store.totals(user) == (len(kept), 2 * len(kept))
    assert set(store.postings(user, ["cat", "0", "again"])) == {"cat", "again"}


def test_database_uses_wal_and_a_versioned_schema(tmp_path):
    Store(tmp_path / "m.db").close()
    reopened = Store(tmp_path / "m.db")
    assert reopened.schema_version() == 3
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    reopened.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path / "m.db")


def test_a_session_token_maps_to_its_user_until_revoked_or_expired(store):
    ada, bob = store.create_user("ada", "h"), store.create_user("bob", "h")
    store.create_session(ada, "ada-token", lifetime=60)
    store.create_session(bob, "bob-token", lifetime=60)
    assert store.session_user("ada-token", lifetime=60)["username"] == "ada"
    assert store.session_user("bob-token", lifetime=60)["id"] == bob
    assert store.session_user("ada-token", lifetime=60)["is_admin"] is False
    assert store.session_user("unknown-token", lifetime=60) is None
    assert store.session_user("ada-token", lifetime=0) is None  # older than the lifetime

    assert store.delete_session("ada-token") is True
    assert store.session_user("ada-token", lifetime=60) is None
    assert store.delete_session("ada-token") is False
    assert store.session_user("bob-token", lifetime=60)["username"] == "bob"  # untouched


def test_sessions_are_stored_hashed_and_expired_ones_are_purged(store, tmp_path):
    ada = store.create_user("ada", "h")
    store.create_session(ada, "old-token", lifetime=60)
    store.create_session(ada, "new-token", lifetime=0)  # purges every older session
    conn = sqlite3.connect(tmp_path / "memory.db")
    rows = conn.execute("SELECT token_hash, user_id FROM sessions").fetchall()
    conn.close()
    assert len(rows) == 1 and rows[0][1] == ada
    assert "new-token" not in rows[0][0] and len(rows[0][0]) == 64
    on_disk = b"".join(path.read_bytes() for path in tmp_path.glob("memory.db*"))
    assert b"new-token" not in on_disk and rows[0][0].encode() in on_disk
    assert store.session_user("old-token", lifetime=60) is None


def test_a_version_1_database_is_migrated_and_keeps_its_users(tmp_path):
    Store(tmp_path / "m.db").close()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute("DROP TABLE sessions")  # as the first schema left it
    conn.execute("UPDATE schema_version SET version = 1")
    conn.execute("INSERT INTO users (username, password_hash, created_at) VALUES ('ada', 'h', 0)")
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == 3
    ada = migrated.get_user("ada")["id"]
    migrated.create_session(ada, "token", lifetime=60)
    assert migrated.session_user("token", lifetime=60)["username"] == "ada"
    migrated.close()


def test_a_version_2_database_with_twin_external_ids_keeps_both_episodes_and_one_id(tmp_path):
    store = Store(tmp_path / "m.db")
    ada = store.create_user("ada", "h")
    (first,) = store.add_episodes(ada, [NewEpisode(text="Ada keeps bees", tokens=["ada"],
                                                   external_id="message:1")])
    store.close()
    conn = sqlite3.connect(tmp_path / "m.db")  # as schema 2 allowed: a retried store's twin
    conn.execute("DROP INDEX episodes_by_external_id")
    conn.execute("CREATE INDEX episodes_by_external_id ON episodes(user_id, external_id)")
    conn.execute("INSERT INTO episodes (user_id, role, text, tokens, timestamp, importance, "
                 "external_id, seq) SELECT user_id, role, text, tokens, timestamp, importance, "
                 "external_id, seq + 1 FROM episodes")
    conn.execute("UPDATE schema_version SET version = 2")
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == 3
    assert [e["external_id"] for e in migrated.iter_episodes(ada)] == ["message:1", None]
    again = NewEpisode(text="Ada keeps bees", tokens=["ada"], external_id="message:1")
    assert migrated.add_episodes_many([(ada, again)]) == [first] and again.duplicate_of == first
    migrated.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    with pytest.raises(sqlite3.IntegrityError):  # the index itself refuses a twin now
        conn.execute("INSERT INTO episodes (user_id, role, text, tokens, timestamp, importance, "
                     "external_id, seq) VALUES (?, 'user', 'x', 'x', 0, 0.5, 'message:1', 9)",
                     (ada,))
    conn.close()


def test_messages_added_together_are_stored_in_order_all_or_none(store):
    ada, bob = store.create_user("ada", "h"), store.create_user("bob", "h")
    conversation, (asked, reply) = store.add_messages(
        ada, None, [{"role": "user", "text": "Hi"},
                    {"role": "assistant", "text": "", "status": "streaming"}], title="Hi")
    assert store.get_conversation(ada, conversation)["title"] == "Hi"
    more = [{"role": "user", "text": "Again"},
            {"role": "assistant", "text": "Yes", "meta": {"a": 1}}]
    _, ids = store.add_messages(ada, conversation, more)
    messages = store.list_messages(ada, conversation)
    assert [m["id"] for m in messages] == [asked, reply, *ids]
    assert [(m["text"], m["status"], m["meta"]) for m in messages] == [
        ("Hi", "complete", None), ("", "streaming", None), ("Again", "complete", None),
        ("Yes", "complete", {"a": 1})]
    with pytest.raises(KeyError):
        store.add_messages(bob, conversation, more)
    with pytest.raises(KeyError):  # a malformed second message: the first is not kept either
        store.add_messages(ada, conversation, [{"role": "user", "text": "Lost?"}, {"role": "x"}])
    assert len(store.list_messages(ada, conversation)) == 4
    assert [m.get("meta", "left out") for m in store.list_messages(ada, conversation, meta=False)
            ] == ["left out"] * 4
