"""An account's rows: deleted all at once and overwritten (nothing readable is left in the
database file or its WAL), and a password change that ends the user's other sessions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from webapp.memory import Store
from webapp.memory.store import LastAdminError, NewEpisode

SENTINEL = "quokkasentinel"  # a word only the deleted user ever wrote
TABLES = ("episodes", "postings", "memory_totals", "memory_traces", "messages",
          "conversations", "sessions")


def fill(store: Store, user_id: int, word: str, episodes: int = 60) -> None:
    """Episodes (indexed, traced), a conversation and a session holding `word`."""
    texts = [f"{word} note {i} " + "padding " * (400 if i % 10 == 0 else 5)
             for i in range(episodes)]  # some spill onto overflow pages
    store.add_episodes(user_id, [NewEpisode(text=t, tokens=t.split(), trace=bytes([i % 7] * 40))
                                 for i, t in enumerate(texts)])
    conversation, _ = store.add_messages(user_id, None, [{"role": "user", "text": word}],
                                         title=f"about {word}")
    store.add_message(user_id, conversation, "assistant", f"you said {word}")
    store.create_session(user_id, f"token-of-{word}-{episodes}", 3600)


def raw_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def counts(path: Path, user_id: int) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        found = {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE user_id = ?",
                                 (user_id,)).fetchone()[0] for t in TABLES}
        found["users"] = conn.execute("SELECT COUNT(*) FROM users WHERE id = ?",
                                      (user_id,)).fetchone()[0]
    return found


def test_deleting_a_user_removes_every_row_and_every_readable_byte_of_it(tmp_path):
    path = tmp_path / "memory.db"
    store = Store(path)
    leaver, stayer = store.create_user("leaver", "hash"), store.create_user("stayer", "hash")
    fill(store, leaver, SENTINEL)
    fill(store, stayer, "wombatkeeper")
    fill(store, leaver, SENTINEL, episodes=5)  # interleaved with the stayer's pages
    assert store.delete_episode(leaver, store.last_episode_id(leaver))
    assert SENTINEL.encode() in raw_bytes(path)
    assert all(counts(path, leaver).values())

    # Debian's SQLite zeroes deleted content by default (SQLITE_SECURE_DELETE); the store
    # asks for it on every connection so that other builds do too.
    assert store._connection().execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert store.delete_user(leaver) is True

    assert set(counts(path, leaver).values()) == {0}
    assert SENTINEL.encode() not in raw_bytes(path)
    assert Path(f"{path}-wal").stat().st_size == 0  # emptied into the database
    assert b"wombatkeeper" in raw_bytes(path)
    assert counts(path, stayer)["episodes"] == 60
    assert store.postings(stayer, ["wombatkeeper"])["wombatkeeper"].size == 60
    assert store.delete_user(leaver) is False  # gone already
    store.close()


def test_the_only_admin_of_other_accounts_cannot_be_deleted(store):
    root = store.create_user("root", "hash", is_admin=True)
    assert not store.is_last_admin(root)  # alone on the server: deleting it empties it
    other = store.create_user("other", "hash")
    assert store.is_last_admin(root) and not store.is_last_admin(other)
    with pytest.raises(LastAdminError):
        store.delete_user(root)
    assert store.get_user_by_id(root) is not None
    second = store.create_user("second", "hash", is_admin=True)
    assert not store.is_last_admin(root)
    assert store.delete_user(root) and store.delete_user(other) and store.delete_user(second)
    assert store.count_users() == 0


def test_admin_is_given_and_taken_but_never_from_the_only_admin(store):
    root = store.create_user("root", "hash", is_admin=True)
    with pytest.raises(LastAdminError):
        store.set_admin(root, False)  # even alone: the account would stay with no admin
    other = store.create_user("other", "hash")
    assert store.set_admin(other, True) and store.get_user_by_id(other)["is_admin"]
    assert store.set_admin(root, False) and not store.get_user_by_id(root)["is_admin"]
    with pytest.raises(LastAdminError):
        store.set_admin(other, False)
    assert store.get_user_by_id(other)["is_admin"]
    assert store.set_admin(other, True)  # already admin: nothing to refuse
    assert store.set_admin(other + 100, True) is False
    assert [u["is_admin"] for u in store.list_users()] == [False, True]


def test_a_password_change_keeps_this_session_and_ends_the_others(store):
    user, other = store.create_user("ada", "old-hash"), store.create_user("bob", "hash")
    for token in ("here", "phone", "stolen"):
        store.create_session(user, token, 3600)
    store.create_session(other, "bobs", 3600)
    ended = store.change_password(user, "new-hash", keep_token="here")
    assert len(ended) == 2
    assert store.get_user_by_id(user)["password_hash"] == "new-hash"
    assert store.session_user("here", 3600)["id"] == user
    assert store.session_user("phone", 3600) is None and store.session_user("stolen", 3600) is None
    assert store.session_user("bobs", 3600)["id"] == other
