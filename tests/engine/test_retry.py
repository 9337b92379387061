"""A store whose worker died after committing it but before its answer reached the web
process is sent again (the pool fails it with `engine_restarted`, the chat turn retries it
with the same external id): the user gets one episode, learned once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from webapp.engine.protocol import command, pack, unpack
from webapp.engine.worker import WorkerSettings, run_worker
from webapp.memory import Memory, Store

STORE = {"text": "Hana's cat is called Miso.", "external_id": "message:m1"}


def start_worker(settings: WorkerSettings):
    """A worker process on a pipe, started as the engine pool starts one."""
    ctx = multiprocessing.get_context("spawn")
    web_end, worker_end = ctx.Pipe(duplex=True)
    process = ctx.Process(target=run_worker, args=(worker_end, settings), daemon=True)
    process.start()
    worker_end.close()
    return process, web_end


def test_a_store_committed_by_a_worker_killed_before_answering_is_stored_once_on_retry(
        tmp_path):
    store = Store(tmp_path / "db.sqlite")
    user = store.create_user("hana", "hash")
    settings = WorkerSettings(db_path=str(tmp_path / "db.sqlite"),
                              network_dir=str(tmp_path / "networks"))
    process, web_end = start_worker(settings)
    web_end.send_bytes(pack([command(1, user, "store", STORE)]))
    deadline = time.monotonic() + 120  # a fresh worker warms up first
    while (committed := store.episode_with_external_id(user, STORE["external_id"])) is None:
        assert time.monotonic() < deadline, "the store was never committed"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # its answer, if written, is never read
    process.join(10)
    web_end.close()

    process, web_end = start_worker(settings)  # the pool's restart, then the retry
    try:
        web_end.send_bytes(pack([command(2, user, "store", STORE), command(3, user, "stats", {})]))
        replies = []
        while len(replies) < 2:
            assert web_end.poll(120), "the restarted worker did not answer"
            replies += [msg for msg in unpack(web_end.recv_bytes()) if msg["type"] == "result"]
        retried, stats = (reply["result"] for reply in sorted(replies, key=lambda r: r["id"]))
        assert retried == {"episode_id": committed}
        assert [e["text"] for e in store.iter_episodes(user)] == [STORE["text"]]
        replayed = Memory(store, user, tmp_path / "replay")  # the episode learned once
        assert stats["episodes"] == 1 and stats["step"] == replayed.network.net.t > 0
    finally:
        web_end.send_bytes(pack([None]))
        process.join(30)
        web_end.close()
        store.close()
