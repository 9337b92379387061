"""Writers take turns at the database through a lock file next to it (WriteTurn): a write
waits while another process holds the turn, goes on the moment it is released, gives the
turn back whether it succeeded or failed, and a holder that dies frees it."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import sqlite3
import threading
import time

import pytest

from webapp.memory import Store
from webapp.memory.store import WRITE_WAIT_SECONDS, WriteTurn


def turn_is_free(db_path: str) -> bool:
    """Whether another process could take the write turn right now."""
    fd = os.open(db_path + "-write.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also gives the turn back
    return True


def usernames(store: Store) -> list[str]:
    return [name for name in ("anna", "bob") if store.get_user(name)]


@pytest.mark.parametrize("write", ["one write", "a batch"])
def test_a_write_waits_for_the_turn_another_process_holds(tmp_path, write):
    db_path = str(tmp_path / "db.sqlite")
    store = Store(db_path)

    def create_bob():
        if write == "one write":
            store.create_user("bob", "hash")
        else:
            with store.batch():
                store.create_user("bob", "hash")

    with WriteTurn(db_path).held():  # its own open file: as another process's
        writing = threading.Thread(target=create_bob)
        writing.start()
        time.sleep(0.5)  # a write takes milliseconds
        assert writing.is_alive() and usernames(store) == []
    writing.join(30)
    assert usernames(store) == ["bob"]
    assert turn_is_free(db_path)


def test_the_turn_is_given_back_after_a_failed_write(tmp_path):
    db_path = str(tmp_path / "db.sqlite")
    store = Store(db_path)
    store.create_user("anna", "hash")
    with pytest.raises(ValueError, match="taken"):
        store.create_user("anna", "another hash")
    assert turn_is_free(db_path)
    store.create_user("bob", "hash")
    assert usernames(store) == ["anna", "bob"]


def hold_the_turn(db_path: str, holding) -> None:
    with WriteTurn(db_path).held():
        holding.set()
        time.sleep(600)


def test_the_turn_of_a_process_killed_while_holding_it_is_free(tmp_path):
    db_path = str(tmp_path / "db.sqlite")
    Store(db_path)
    ctx = multiprocessing.get_context("spawn")
    holding = ctx.Event()
    holder = ctx.Process(target=hold_the_turn, args=(db_path, holding), daemon=True)
    holder.start()
    assert holding.wait(60), "the holder did not start"
    assert not turn_is_free(db_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    assert turn_is_free(db_path)


def test_without_a_lock_file_the_turn_is_taken_and_given_back(tmp_path):
    """A lock file that cannot be created (its directory gone, as on a data directory
    turned read-only) only loses the quick hand-over: SQLite's own lock remains."""
    turn = WriteTurn(str(tmp_path / "missing" / "db.sqlite"))
    with turn.held():
        pass
    with turn.held():
        pass


def test_a_writer_that_waits_too_long_for_its_turn_gets_database_is_locked(tmp_path):
    """As from SQLite's busy handler: a clear error after the wait, and the turn is
    still the holder's, then free once it is released."""
    db_path = str(tmp_path / "db.sqlite")
    Store(db_path)
    with WriteTurn(db_path).held():  # its own open file: as another process's
        started = time.monotonic()
        waiting = WriteTurn(db_path, wait_seconds=0.3)
        with (pytest.raises(sqlite3.OperationalError, match="database is locked"),
              waiting.held()):
            pass
        assert time.monotonic() - started >= 0.3
        assert not turn_is_free(db_path)
    assert turn_is_free(db_path)


def test_a_write_begun_inside_another_on_the_same_thread_is_refused_at_once(tmp_path):
    """It would wait for its own thread: a programming error, refused at once (as SQLite
    refused a transaction within a transaction), not "database is locked" after
    WRITE_WAIT_SECONDS. The outer write goes on, and other threads still wait their turn."""
    db_path = str(tmp_path / "db.sqlite")
    store = Store(db_path)
    other_thread = threading.Thread(target=store.create_user, args=("bob", "hash"))
    with store.batch():
        store.create_user("anna", "hash")
        started = time.monotonic()
        with pytest.raises(sqlite3.ProgrammingError, match="write turn already"), store.batch():
            pass
        assert time.monotonic() - started < WRITE_WAIT_SECONDS
        other_thread.start()
        time.sleep(0.5)  # a write takes milliseconds
        assert other_thread.is_alive()
        store.create_user("cy", "hash")  # the batch is still this thread's, and works
    other_thread.join(30)
    assert [store.get_user(name) is not None for name in ("anna", "bob", "cy")] == [True] * 3
    assert turn_is_free(db_path)


def test_the_turn_taken_again_on_its_own_thread_is_refused_and_stays_held(tmp_path):
    db_path = str(tmp_path / "db.sqlite")
    Store(db_path)
    turn = WriteTurn(db_path)
    with turn.held():
        with pytest.raises(sqlite3.ProgrammingError, match="not a busy database"), turn.held():
            pass
        assert not turn_is_free(db_path)
    assert turn_is_free(db_path)
    with turn.held():  # and it can be taken again once given back
        pass
