"""Engine workers as real processes: routing, commands, spikes, failures, crash and restart."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from webapp.engine import EngineError, EnginePool, WorkerSettings
from webapp.engine.frames import decode_frame
from webapp.engine.pool import HANG_SECONDS
from webapp.memory import Store


def make_pool(tmp: Path, events: list | None = None, workers: int = 2,
              hang_seconds: float = HANG_SECONDS, **settings) -> EnginePool:
    worker_settings = WorkerSettings(db_path=str(tmp / "db.sqlite"),
                                     network_dir=str(tmp / "networks"), **settings)
    on_event = events.append if events is not None else None
    return EnginePool(worker_settings, workers=workers, on_event=on_event,
                      hang_seconds=hang_seconds).start()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    store = Store(tmp / "db.sqlite")
    users = [store.create_user(f"user{i}", "hash") for i in range(3)]
    events: list = []
    pool = make_pool(tmp, events)
    yield pool, users, events
    pool.close()


def test_each_user_always_lands_on_the_same_worker(setup, tmp_path):
    pool, _, _ = setup
    placement = [pool.worker_index(user) for user in range(200)]
    assert set(placement) == {0, 1}
    assert placement == [pool.worker_index(user) for user in range(200)]


def test_store_recall_and_stats_round_trip_through_a_worker(setup):
    pool, (alice, bob, _), events = setup
    stored = pool.call(alice, "store", text="The lighthouse keeper plays the oboe.", spikes=True)
    found = pool.call(alice, "recall", query="who plays the oboe?", k=3)
    assert found["recalled"][0]["episode_id"] == stored["episode_id"]
    assert "play" in found["query_tokens"]
    assert pool.call(bob, "recall", query="oboe")["recalled"] == []
    stats = pool.call(alice, "stats")
    assert stats["episodes"] == 1 and stats["neurons_e"] == 300 and stats["neurons_i"] == 75

    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        time.sleep(0.01)
    event = events[0]
    assert event["type"] == "spikes" and event["user_id"] == alice
    first, spikes = decode_frame(event["frame"])
    assert spikes.shape[1] == 375 and spikes.any()


def test_bad_input_fails_the_command_not_the_worker(setup):
    pool, (_, _, carol), _ = setup
    with pytest.raises(EngineError) as failure:
        pool.call(carol, "store", text="   ")
    assert failure.value.code == "bad_input" and "empty" in failure.value.message
    with pytest.raises(EngineError) as unknown:
        pool.call(carol, "delete", episode_id=10**9, no_such_argument=1)
    assert unknown.value.code == "engine_error"
    assert pool.call(carol, "store", text="still alive")["episode_id"] > 0
    with pytest.raises(ValueError):
        pool.submit(carol, "drop_tables")


def test_commands_submitted_from_many_threads_are_each_answered_once_in_user_order(setup):
    pool, _, _ = setup
    store = Store(pool.settings.db_path)
    writers = [store.create_user(f"writer{i}", "hash") for i in range(4)]

    def write(user: int) -> list:
        return [pool.submit(user, "store", text=f"note {n} of {user}") for n in range(25)]

    with ThreadPoolExecutor(len(writers)) as threads:  # submitting at the same time
        submitted = list(threads.map(write, writers))
    for user, futures in zip(writers, submitted, strict=True):
        episode_ids = [future.result(timeout=60)["episode_id"] for future in futures]
        assert episode_ids == sorted(set(episode_ids))
        assert [e["text"] for e in store.iter_episodes(user)] == [
            f"note {n} of {user}" for n in range(25)]
    store.close()


def test_a_killed_worker_fails_its_pending_requests_and_is_replaced(tmp_path):
    user = Store(tmp_path / "db.sqlite").create_user("dana", "hash")
    pool = make_pool(tmp_path, workers=1)
    try:
        pool.call(user, "store", text="Remember the red umbrella.")
        pid = pool.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        # Sent to the dead worker (or queued for it): must fail, never be replayed later.
        pending = pool.submit(user, "store", text="Sent while the worker was dying.")
        with pytest.raises(EngineError) as failure:
            pending.result(timeout=20)
        assert failure.value.code == "engine_restarted"
        assert "restarted" in failure.value.message

        found = pool.call(user, "recall", query="umbrella", timeout=30)
        assert found["recalled"][0]["text"] == "Remember the red umbrella."
        assert pool.call(user, "recall", query="dying")["recalled"] == []
        assert pool.restarts == 1 and pool.worker_pids()[0] != pid and pool.alive()
    finally:
        pool.close()


def test_idle_memories_are_saved_and_evicted_and_close_stops_the_workers(tmp_path):
    user = Store(tmp_path / "db.sqlite").create_user("erin", "hash")
    pool = make_pool(tmp_path, workers=1, idle_seconds=0.5, quiet_seconds=0.2)
    pids = pool.worker_pids()
    pool.call(user, "store", text="Snapshots happen while idle.")
    snapshots = tmp_path / "networks"
    deadline = time.monotonic() + 10
    while not list(snapshots.glob(f"user{user}-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(snapshots.glob(f"user{user}-*.npz"))
    pool.close()
    assert not pool.alive()
    assert all(not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes()
               for pid in pids)
    with pytest.raises(EngineError):
        pool.submit(user, "stats")


def wait_for_new_worker(pool: EnginePool, old_pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = pool.worker_pids()[0]
        if pid not in (None, old_pid):
            return pid
        time.sleep(0.05)
    raise AssertionError(f"worker {old_pid} was not replaced in {timeout} s")


def test_a_hung_worker_is_killed_reaped_and_replaced_and_the_next_command_works(tmp_path):
    hang_seconds = 1.0
    user = Store(tmp_path / "db.sqlite").create_user("fay", "hash")
    pool = make_pool(tmp_path, workers=1, hang_seconds=hang_seconds)
    try:
        pool.call(user, "store", text="The kettle lives in the left cupboard.")
        pid = pool.worker_pids()[0]
        os.kill(pid, signal.SIGSTOP)  # alive, holding its pipe, answering nothing
        asked = pool.submit(user, "recall", query="kettle")
        queued = pool.submit(user, "store", text="Sent to the hung worker.")
        # Failed by the watchdog within hang_seconds plus its check interval and a margin.
        for future in (asked, queued):
            with pytest.raises(EngineError) as failure:
                future.result(timeout=hang_seconds + 10)
            assert failure.value.code == "engine_restarted"

        new_pid = wait_for_new_worker(pool, pid, timeout=10)
        assert not Path(f"/proc/{pid}").exists()  # SIGKILLed although stopped, and reaped
        found = pool.call(user, "recall", query="kettle", timeout=30)
        assert [hit["text"] for hit in found["recalled"]] == [
            "The kettle lives in the left cupboard."]  # acknowledged: kept; unanswered: gone
        assert pool.restarts == 1 and pool.worker_pids() == [new_pid] and pool.alive()
    finally:
        pool.close()


def test_a_busy_worker_answering_a_long_queue_is_not_taken_for_hung(tmp_path):
    """Silence is what counts, not queueing: 200 stores sent at once take longer in all
    than hang_seconds, but every one of them is answered."""
    user = Store(tmp_path / "db.sqlite").create_user("gus", "hash")
    pool = make_pool(tmp_path, workers=1, hang_seconds=0.5)
    try:
        pool.call(user, "stats")  # started, the memory loaded
        text = " ".join(f"word{i}" for i in range(200))
        futures = [pool.submit(user, "store", text=f"{n} {text}") for n in range(200)]
        assert all(future.result(timeout=60)["episode_id"] > 0 for future in futures)
        assert pool.restarts == 0 and pool.call(user, "stats")["episodes"] == 200
    finally:
        pool.close()
