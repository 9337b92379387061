"""The SQLite store: users, conversations and messages, all scoped to one user."""

import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from webapp.memory import Store
from webapp.memory.store import _MIGRATIONS, POSTING, NewEpisode
from webapp.memory.tokenizer import token_id


def database_at_version(path: Path, version: int) -> sqlite3.Connection:
    """A database as the code of schema `version` created it: its migrations' DDL."""
    conn = sqlite3.connect(path)
    for script in _MIGRATIONS[:version]:
        conn.executescript(script)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    conn.commit()
    return conn


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
    assert reopened.schema_version() == len(_MIGRATIONS) == 6
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


def test_users_are_listed_oldest_first_without_their_password_hashes(store):
    store.create_user("ada", "secret-hash", is_admin=True)
    store.create_user("bob", "other-hash")
    users = store.list_users()
    assert [(u["username"], u["is_admin"]) for u in users] == [("ada", True), ("bob", False)]
    assert all(set(u) == {"id", "username", "is_admin", "created_at"} for u in users)
    assert users[0]["created_at"] <= users[1]["created_at"]


def test_settings_are_unset_until_stored_and_survive_a_reopen(tmp_path):
    store = Store(tmp_path / "m.db")
    assert store.get_setting("signup") is None
    store.set_setting("signup", "closed")
    store.set_setting("signup", "open")
    store.set_setting("other", "x")
    store.close()
    reopened = Store(tmp_path / "m.db")
    assert reopened.get_setting("signup") == "open" and reopened.get_setting("other") == "x"
    reopened.close()


def test_a_version_5_database_is_migrated_and_gets_settings(tmp_path):
    conn = database_at_version(tmp_path / "m.db", 5)
    conn.execute("INSERT INTO users (username, password_hash, is_admin, created_at) "
                 "VALUES ('ada', 'h', 1, 0)")
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == len(_MIGRATIONS)
    assert migrated.get_setting("signup") is None
    migrated.set_setting("signup", "closed")
    assert migrated.get_setting("signup") == "closed"
    assert migrated.get_user("ada")["is_admin"] is True
    migrated.close()


def test_a_version_1_database_is_migrated_and_keeps_its_users(tmp_path):
    conn = database_at_version(tmp_path / "m.db", 1)
    conn.execute("INSERT INTO users (username, password_hash, created_at) VALUES ('ada', 'h', 0)")
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == len(_MIGRATIONS)
    ada = migrated.get_user("ada")["id"]
    migrated.create_session(ada, "token", lifetime=60)
    assert migrated.session_user("token", lifetime=60)["username"] == "ada"
    migrated.close()


def test_a_version_2_database_with_twin_external_ids_keeps_both_episodes_and_one_id(tmp_path):
    conn = database_at_version(tmp_path / "m.db", 2)
    ada = conn.execute("INSERT INTO users (username, password_hash, created_at) "
                       "VALUES ('ada', 'h', 0)").lastrowid
    first, _ = write_indexed_episodes(conn, ada, [["ada"], ["ada"]], "message:1")  # twins
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == len(_MIGRATIONS)
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


def write_indexed_episodes(conn: sqlite3.Connection, user_id: int, token_lists: list[list[str]],
                           external_id: str | None = None) -> list[int]:
    """Episodes, their postings and totals written as schema 3 and before wrote them: every
    episode's postings in the blocks (fewer than a block's worth per token here)."""
    ids = [conn.execute("INSERT INTO episodes (user_id, role, text, tokens, timestamp, "
                        "importance, external_id, seq) VALUES (?, 'user', ?, ?, 0, 0.5, ?, ?)",
                        (user_id, " ".join(tokens), " ".join(tokens), external_id, seq)).lastrowid
           for seq, tokens in enumerate(token_lists, 1)]
    postings: dict[str, list] = {}
    for episode_id, tokens in zip(ids, token_lists, strict=True):
        for token, tf in Counter(tokens).items():
            postings.setdefault(token, []).append((episode_id, tf, len(tokens)))
    for token, entries in postings.items():
        conn.execute("INSERT INTO postings (user_id, token_id, first_episode, data) "
                     "VALUES (?, ?, ?, ?)", (user_id, token_id(token), entries[0][0],
                                                np.array(entries, dtype=POSTING).tobytes()))
    conn.execute("INSERT INTO memory_totals (user_id, episodes, tokens, last_seq, traced) "
                 "VALUES (?, ?, ?, ?, 0)", (user_id, len(ids),
                                            sum(map(len, token_lists)), len(ids)))
    return ids


def test_a_version_3_database_upgrades_in_place_with_everything_indexed(tmp_path):
    conn = database_at_version(tmp_path / "m.db", 3)
    ada = conn.execute("INSERT INTO users (username, password_hash, created_at) "
                       "VALUES ('ada', 'h', 0)").lastrowid
    old = write_indexed_episodes(conn, ada, [["cat", "tea"], ["cat", "cat"], ["rain"]])
    conn.execute("UPDATE memory_totals SET traced = 2, trace_sum = ? WHERE user_id = ?",
                 (np.array([4, 2], dtype="<i8").tobytes(), ada))
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == len(_MIGRATIONS)
    assert migrated.postings(ada, ["cat"])["cat"].tolist() == [(old[0], 1, 2), (old[1], 2, 2)]
    assert migrated.totals(ada) == (3, 5)
    assert migrated.mean_trace(ada).tolist() == [2.0, 1.0]
    (new,) = migrated.add_episodes_many([(ada, NewEpisode("cat", ["cat"], trace=b"\x02\x02"))])
    assert migrated.postings(ada, ["cat"])["cat"]["episode"].tolist() == [*old[:2], new]
    assert migrated.mean_trace(ada).tolist() == [2.0, 4 / 3]
    assert [e["id"] for e in migrated.iter_episodes(ada, after_id=old[0])] == [*old[1:], new]
    assert migrated.last_episode_id(ada) == new
    twin = NewEpisode("again", ["again"], external_id="message:1")
    assert migrated.add_episodes_many([(ada, twin)]) == migrated.add_episodes_many([(ada, twin)])
    migrated.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    indexes = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'episodes'")}
    conn.close()
    assert indexes == {"episodes_by_seq", "episodes_by_external_id"}


def test_a_version_4_database_upgrades_to_one_index_of_positions_and_importance(tmp_path):
    conn = database_at_version(tmp_path / "m.db", 4)
    ada = conn.execute("INSERT INTO users (username, password_hash, created_at) "
                       "VALUES ('ada', 'h', 0)").lastrowid
    old = [conn.execute("INSERT INTO episodes (user_id, role, text, tokens, timestamp, "
                        "importance, seq) VALUES (?, 'user', ?, ?, 0, ?, ?)",
                        (ada, text, text, importance, seq)).lastrowid
           for seq, (text, importance) in enumerate(
               [("cat tea", 0.9), ("cat cat", 0.5), ("rain", 0.5)], 1)]
    conn.execute("INSERT INTO memory_totals (user_id, episodes, tokens, last_seq, indexed_seq) "
                 "VALUES (?, 3, 5, 3, 0)", (ada,))  # all three are the tail
    conn.commit()
    conn.close()
    migrated = Store(tmp_path / "m.db")
    assert migrated.schema_version() == len(_MIGRATIONS)
    assert [e["id"] for e in migrated.most_important(ada, 2)] == [old[0], old[2]]
    assert migrated.postings(ada, ["cat"])["cat"]["episode"].tolist() == old[:2]
    (new,) = migrated.add_episodes_many([(ada, NewEpisode("cat", ["cat"]))])
    assert [e["id"] for e in migrated.iter_episodes(ada)] == [*old, new]
    migrated.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    columns = [row[2] for row in conn.execute("PRAGMA index_info(episodes_by_seq)")]
    conn.close()
    assert columns == ["user_id", "seq", "importance"]


def test_the_most_important_episodes_of_a_user_come_first_the_newest_among_equals(store):
    ada, bob = store.create_user("ada", "h"), store.create_user("bob", "h")
    ids = store.add_episodes_many([(user, NewEpisode(text, [text], importance=importance))
                                   for user, text, importance in [
                                       (ada, "a", 0.2), (bob, "b", 1.0), (ada, "c", 0.7),
                                       (ada, "d", 0.2), (ada, "e", 0.5)]])
    assert [e["text"] for e in store.most_important(ada, 3)] == ["c", "e", "d"]
    store.rehearse(ada, [ids[0]], boost=0.6)
    store.fade(ada, now=0.0, half_life=1.0, floor=0.05)  # the first fade only starts the clock
    assert store.fade(ada, now=1.0, half_life=1.0, floor=0.05) == 4
    assert [(e["text"], e["importance"]) for e in store.most_important(ada, 5)] == [
        ("a", 0.4), ("c", 0.35), ("e", 0.25), ("d", 0.1)]


def test_an_episode_of_no_user_fails_the_group_commit_whatever_its_external_id(store):
    ada = store.create_user("ada", "h")
    (kept,) = store.add_episodes_many([(ada, NewEpisode("cat", ["cat"], external_id="m1"))])
    for external_id in ("m1", "m2", None):  # a twin of ada's m1, a new id, no id
        with pytest.raises(sqlite3.IntegrityError):
            store.add_episodes_many([(ada, NewEpisode("tea", ["tea"], external_id="m3")),
                                     (ada + 1, NewEpisode("cat", ["cat"],
                                                          external_id=external_id))])
    assert [e["id"] for e in store.iter_episodes(ada)] == [kept]
    assert store.totals(ada) == (1, 1)


def test_episodes_are_listed_after_an_id_even_when_that_episode_is_gone(store):
    ada, bob = store.create_user("ada", "h"), store.create_user("bob", "h")
    ids = [store.add_episodes_many([(ada, NewEpisode(str(i), [str(i)])),
                                    (bob, NewEpisode(str(i), [str(i)]))])[0] for i in range(6)]
    store.delete_episode(ada, ids[2])
    assert [e["id"] for e in store.iter_episodes(ada, after_id=ids[2], batch=2)] == ids[3:]
    assert [e["id"] for e in store.iter_episodes(ada, batch=4)] == ids[:2] + ids[3:]
    assert list(store.iter_episodes(ada, after_id=ids[-1])) == []
    store.delete_episode(ada, ids[-1])
    assert store.last_episode_id(ada) == ids[-2]
    assert store.last_episode_id(store.create_user("cy", "h")) == 0
