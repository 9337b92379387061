"""Deleting an account in its worker: the loaded memory is dropped unsaved, its snapshots
and rows are deleted, and nothing brings them back (no housekeeping save, no reload)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from webapp.engine import protocol
from webapp.engine.worker import Engines, WorkerSettings
from webapp.memory import Store

USER_TABLES = ("episodes", "postings", "memory_totals", "memory_traces", "messages",
               "conversations", "sessions")


def make_engines(tmp: Path) -> tuple[Engines, Store, int, int]:
    store = Store(tmp / "db.sqlite")
    leaver, stayer = store.create_user("leaver", "hash"), store.create_user("stayer", "hash")
    settings = WorkerSettings(db_path=str(tmp / "db.sqlite"), network_dir=str(tmp / "networks"),
                              idle_seconds=0.0)
    return Engines(settings, send_event=lambda event: None), store, leaver, stayer


def call(engines: Engines, user_id: int, op: str, **args) -> dict:
    return engines.handle(protocol.command(1, user_id, op, args))


def snapshots(tmp: Path, user_id: int) -> list[str]:
    return sorted(p.name for p in (tmp / "networks").glob(f"*user{user_id}-ep*"))


def rows_of(db: Path, user_id: int) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        counts = {table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?",
                                      (user_id,)).fetchone()[0] for table in USER_TABLES}
        counts["users"] = conn.execute("SELECT COUNT(*) FROM users WHERE id = ?",
                                       (user_id,)).fetchone()[0]
    return counts


def test_a_deleted_account_leaves_no_memory_file_or_row_and_is_not_saved_again(tmp_path):
    engines, store, leaver, stayer = make_engines(tmp_path)
    for i in range(40):  # past the tail: postings blocks and the trace sum get written
        assert call(engines, leaver, "store", text=f"leaver note {i} about kumquats")["ok"]
    assert call(engines, stayer, "store", text="stayer keeps bees")["ok"]
    store.create_session(leaver, "a-session-token", 3600)
    conversation = store.create_conversation(leaver, "kumquats")
    store.add_message(leaver, conversation, "user", "kumquats again")
    engines.save_all()
    (tmp_path / "networks" / f".user{leaver}-ep3.npz.x1y2.tmp").write_bytes(b"half")
    assert snapshots(tmp_path, leaver) and all(rows_of(tmp_path / "db.sqlite", leaver).values())
    engines.unconsolidated.add(leaver)

    reply = call(engines, leaver, "delete_account")

    assert reply["ok"] and reply["result"]["deleted"] is True
    assert leaver not in engines.memories and leaver not in engines.unconsolidated
    while engines.housekeeping():  # consolidates and evicts what is loaded: saves it
        pass
    assert snapshots(tmp_path, leaver) == []
    assert set(rows_of(tmp_path / "db.sqlite", leaver).values()) == {0}
    late = call(engines, leaver, "store", text="a turn that was on its way")
    assert not late["ok"] and late["error"]["code"] == "unknown_user"
    assert snapshots(tmp_path, leaver) == [] and leaver not in engines.memories
    found = call(engines, stayer, "recall", query="bees")["result"]["recalled"]
    assert found[0]["text"] == "stayer keeps bees"


def test_the_last_admin_of_other_accounts_is_refused_and_keeps_everything(tmp_path):
    engines, store, _, _ = make_engines(tmp_path)
    admin = store.create_user("root", "hash", is_admin=True)
    assert call(engines, admin, "store", text="the admin's own note")["ok"]
    engines.save_all()
    reply = call(engines, admin, "delete_account")
    assert not reply["ok"] and reply["error"]["code"] == "last_admin"
    assert store.get_user_by_id(admin) is not None
    assert snapshots(tmp_path, admin) != []  # refused before its files went
    assert rows_of(tmp_path / "db.sqlite", admin)["episodes"] == 1
    found = call(engines, admin, "recall", query="note")["result"]["recalled"]
    assert found[0]["text"] == "the admin's own note"
