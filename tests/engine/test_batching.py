"""Group commit in the engine worker: the stores queued together are learned, written in one
transaction, then answered; a waiting recall ends a batch; a bad store fails alone."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

import webapp.engine.worker as engine_worker
from webapp.engine import EngineError, EnginePool
from webapp.engine.protocol import command, pack
from webapp.engine.worker import Engines, Inbox, WorkerSettings, serve
from webapp.memory import Memory, Store

requests = itertools.count(1)


@pytest.fixture
def worker(tmp_path):
    """(engines, inbox, send, user ids): a worker's parts, fed through a real pipe."""
    store = Store(tmp_path / "db.sqlite")
    users = [store.create_user(f"user{i}", "hash") for i in range(3)]
    settings = WorkerSettings(db_path=str(tmp_path / "db.sqlite"),
                              network_dir=str(tmp_path / "networks"),
                              batch_steps=10**6)  # bounded by the queue, not the steps
    engines = Engines(settings, send_event=lambda event: None)
    web_end, worker_end = multiprocessing.Pipe()

    def send(*commands: tuple[int, str, dict]) -> list[int]:
        sent = [command(next(requests), user, op, args) for user, op, args in commands]
        web_end.send_bytes(pack(sent))  # one frame, as the pool sends what queued
        return [cmd["id"] for cmd in sent]

    inbox = Inbox(worker_end)
    yield engines, inbox, send, users
    web_end.close()
    worker_end.close()
    store.close()


def serve_all(engines: Engines, inbox: Inbox) -> list[list[dict]]:
    """Serve until the queue is empty; the replies of each call to serve."""
    inbox.receive(0.5)
    served = []
    while inbox:
        served.append(serve(engines, inbox))
    return served


def same_network(a: Memory, b: Memory) -> bool:
    return a.network.net.t == b.network.net.t and (a.network.net.w_ee == b.network.net.w_ee).all()


def texts_of(engines: Engines, user_id: int) -> list[str]:
    return [e["text"] for e in engines.store.iter_episodes(user_id)]


def test_queued_stores_of_several_users_are_one_batch_answered_in_order(worker):
    engines, inbox, send, (a, b, c) = worker
    sent = send((a, "store", {"text": "Anna plays the cello"}),
                (b, "store", {"text": "Bruno grows tomatoes"}),
                (a, "store", {"text": "Anna moved to Lyon"}),
                (c, "store", {"text": "Clara sails on weekends"}))
    (replies,) = serve_all(engines, inbox)
    assert [r["id"] for r in replies] == sent and all(r["ok"] for r in replies)
    first, _, second, _ = [r["result"]["episode_id"] for r in replies]
    assert first < second  # a user's stores stay in order
    assert texts_of(engines, a) == ["Anna plays the cello", "Anna moved to Lyon"]
    assert engines.unconsolidated == {a, b, c}


def test_a_waiting_recall_ends_the_batch_and_sees_its_users_earlier_store(worker):
    engines, inbox, send, (a, b, c) = worker
    send((a, "store", {"text": "Anna plays the cello"}),
         (b, "store", {"text": "Bruno grows tomatoes"}),
         (a, "recall", {"query": "cello"}),
         (c, "store", {"text": "Clara sails on weekends"}))
    served = serve_all(engines, inbox)
    assert [len(replies) for replies in served] == [1, 1, 2]  # store; recall; the other two
    assert served[0][0]["ok"] and served[0][0]["result"]["episode_id"]
    recall = served[1][0]["result"]
    assert [hit["text"] for hit in recall["recalled"]] == ["Anna plays the cello"]


def test_a_batch_polls_the_pipe_when_its_queue_runs_dry_or_its_last_look_is_old(
        worker, monkeypatch):
    """Not after each store: a poll is a system call. What arrived meanwhile is taken in
    once the queued stores are served, or when the last look is LOOK_EVERY_SECONDS old."""
    engines, inbox, send, (a, b, c) = worker
    send((a, "store", {"text": "Anna plays the cello"}),
         (a, "store", {"text": "Anna moved to Lyon"}))
    inbox.receive(0.5)
    send((b, "recall", {"query": "tomatoes"}))
    assert inbox.conn.poll(0.5)  # it has arrived, and is not taken in yet
    monkeypatch.setattr(engine_worker, "LOOK_EVERY_SECONDS", 3600.0)
    inbox.catch_up()
    assert len(inbox.pending) == 2 and inbox.recalls == 0  # stores queued, looked just now
    monkeypatch.setattr(engine_worker, "LOOK_EVERY_SECONDS", 0.0)
    inbox.catch_up()
    assert len(inbox.pending) == 3 and inbox.recalls == 1  # the last look is old enough
    monkeypatch.setattr(engine_worker, "LOOK_EVERY_SECONDS", 3600.0)
    while inbox:
        inbox.next()
    send((c, "store", {"text": "Clara sails on weekends"}))
    assert inbox.conn.poll(0.5)
    inbox.catch_up()
    assert len(inbox.pending) == 1  # nothing left to serve: looked at once


def test_a_batch_holds_at_most_batch_stores(worker):
    engines, inbox, send, (a, b, _) = worker
    engines.settings = WorkerSettings(db_path=engines.settings.db_path,
                                      network_dir=engines.settings.network_dir,
                                      batch_stores=3, batch_steps=10**6)
    send(*[(a if i % 2 else b, "store", {"text": f"note number {i}"}) for i in range(5)])
    assert [len(replies) for replies in serve_all(engines, inbox)] == [3, 2]


def test_a_bad_store_fails_alone_and_the_rest_of_its_batch_is_stored(worker):
    engines, inbox, send, (a, b, ghost) = worker
    engines.memory(ghost)  # loaded, then its account row goes: its episode cannot be written
    with sqlite3.connect(engines.settings.db_path) as conn:
        conn.execute("DELETE FROM users WHERE id = ?", (ghost,))
    send((a, "store", {"text": "Anna plays the cello"}),
         (a, "store", {"text": "x" * 20_001}),  # refused before learning
         (ghost, "store", {"text": "no such user"}),  # fails the transaction
         (b, "store", {"text": "Bruno grows tomatoes", "external_id": "m1"}),
         (b, "store", {"text": "Bruno grows tomatoes", "external_id": "m1"}))
    (replies,) = serve_all(engines, inbox)
    assert [r["ok"] for r in replies] == [True, False, False, True, True]
    assert replies[1]["error"]["code"] == "bad_input"
    assert replies[2]["error"]["code"] == "engine_error"
    assert replies[3]["result"] == replies[4]["result"]  # one episode for one external id
    assert texts_of(engines, a) == ["Anna plays the cello"]
    assert texts_of(engines, b) == ["Bruno grows tomatoes"]
    for user in (a, b):  # each network learned exactly what is stored, once
        replayed = Memory(engines.store, user, Path(engines.settings.network_dir) / "replay")
        assert same_network(engines.memories[user], replayed)


def test_refused_stores_count_towards_the_resident_bound_of_their_batch(tmp_path):
    """A refused store has loaded its user's memory too: with room for 3 memories, the
    batch ends before a fourth user would evict a memory holding the batch's episodes
    (which then came back as a second Memory of the same user, one of them learning)."""
    store = Store(tmp_path / "db.sqlite")
    a, b, c, d = (store.create_user(name, "hash") for name in "abcd")
    engines = Engines(WorkerSettings(db_path=str(tmp_path / "db.sqlite"),
                                     network_dir=str(tmp_path / "networks"), max_resident=3),
                      send_event=lambda event: None)
    web_end, worker_end = multiprocessing.Pipe()
    web_end.send_bytes(pack([command(i, user, "store", {"text": text}) for i, (user, text) in
                             enumerate([(a, "alpha beta gamma"), (b, ""), (d, ""),
                                        (c, "delta epsilon"), (a, "zeta eta theta")], 1)]))
    inbox = Inbox(worker_end)
    inbox.receive(1.0)
    replies = []
    while inbox:
        replies += serve(engines, inbox)
    assert [r["ok"] for r in replies] == [True, False, False, True, True]
    for user in (a, c):  # each network learned exactly what is stored, once
        replayed = Memory(engines.store, user, Path(engines.settings.network_dir) / "replay")
        assert same_network(engines.memories[user], replayed)


def test_a_worker_killed_while_storing_keeps_every_acknowledged_store(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    users = [store.create_user(f"user{i}", "hash") for i in range(8)]
    settings = WorkerSettings(db_path=str(tmp_path / "db.sqlite"),
                              network_dir=str(tmp_path / "networks"))
    pool = EnginePool(settings, workers=1).start()
    try:
        pool.call(users[0], "stats", timeout=60)  # started and warm
        futures = [(user, i, pool.submit(user, "store", text=f"note {i} of {user}"))
                   for i in range(40) for user in users]
        while sum(f.done() for _, _, f in futures) < 100:
            time.sleep(0.005)
        os.kill(pool.worker_pids()[0], signal.SIGKILL)
        acknowledged = []
        for user, i, future in futures:
            try:
                acknowledged.append((user, i, future.result(timeout=60)["episode_id"]))
            except EngineError as exc:
                assert exc.code == "engine_restarted"
    finally:
        pool.close()
    assert len(acknowledged) >= 100
    for user, i, episode_id in acknowledged:
        assert store.get_episodes(user, [episode_id])[episode_id]["text"] == f"note {i} of {user}"
    for user in users:  # every stored store whole, and its network learned it once
        texts = [e["text"] for e in store.iter_episodes(user)]
        assert texts == [f"note {i} of {user}" for i in range(len(texts))]
        restarted = Memory(store, user, tmp_path / "networks")
        assert same_network(restarted, Memory(store, user, tmp_path / "replay"))
    store.close()
