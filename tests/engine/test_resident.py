"""How many memories a worker keeps loaded: at most `max_resident`, least recently used
evicted first (saved, and reloaded with everything it stored), idle ones evicted by
housekeeping, after which the freed heap goes back to the OS."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from webapp.engine import protocol
from webapp.engine.heap import release_free_memory
from webapp.engine.worker import Engines, WorkerSettings, default_max_resident
from webapp.memory import Store


def make_engines(tmp: Path, users: int, **settings) -> tuple[Engines, list[int]]:
    store = Store(tmp / "db.sqlite")
    user_ids = [store.create_user(f"user{i}", "hash") for i in range(users)]
    worker_settings = WorkerSettings(db_path=str(tmp / "db.sqlite"),
                                     network_dir=str(tmp / "networks"), **settings)
    return Engines(worker_settings, send_event=lambda event: None), user_ids


def store(engines: Engines, user_id: int, text: str) -> None:
    reply = engines.handle(protocol.command(1, user_id, "store", {"text": text}))
    assert reply["ok"], reply


def test_the_least_recently_used_memory_makes_room(tmp_path):
    engines, (a, b, c) = make_engines(tmp_path, 3, max_resident=2)
    store(engines, a, "Anna plays the cello")
    store(engines, b, "Bruno grows tomatoes")
    store(engines, a, "Anna moved to Lyon")  # now b is the least recently used
    store(engines, c, "Clara sails on weekends")
    assert set(engines.memories) == {a, c}
    assert (tmp_path / "networks").is_dir() and any((tmp_path / "networks").iterdir())
    reply = engines.handle(protocol.command(2, b, "recall", {"query": "tomatoes"}))
    assert [hit["text"] for hit in reply["result"]["recalled"]] == ["Bruno grows tomatoes"]
    assert set(engines.memories) == {b, c}


def test_housekeeping_evicts_idle_memories_then_trims_the_heap(tmp_path):
    engines, users = make_engines(tmp_path, 2, idle_seconds=0.0)
    for user_id in users:
        store(engines, user_id, "a message worth remembering")
    steps = 0
    while engines.housekeeping():
        steps += 1
        assert steps < 20
    assert engines.memories == {} and not engines.heap_to_trim
    assert steps == 2 + 2 + 1  # consolidate each, evict each, trim once


def test_the_heap_is_trimmed_on_glibc_linux_and_left_alone_elsewhere():
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert release_free_memory() is expected


@pytest.mark.parametrize("configured, expected", [("7", 7), ("0", 1)])
def test_the_resident_limit_can_be_configured(monkeypatch, configured, expected):
    monkeypatch.setenv("SORNMEMORY_MAX_RESIDENT", configured)
    assert default_max_resident() == expected
    assert WorkerSettings(db_path="", network_dir="").max_resident == expected


def test_by_default_the_resident_limit_follows_the_ram(monkeypatch):
    monkeypatch.delenv("SORNMEMORY_MAX_RESIDENT", raising=False)
    assert default_max_resident() >= 16
