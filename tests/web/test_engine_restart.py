"""An engine worker killed with SIGKILL in the middle of use: the server restarts it, the
turn in flight still completes, and every episode the user had is still there."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from tests.web.conftest import UserSocket, register


def engine_pids(root_pid: int) -> set[int]:
    """Engine worker processes below the server (spawned children running spawn_main)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.add(child)
    return found


def wait_until(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_killed_engine_workers_are_restarted_and_nothing_is_lost(live_server):
    session = register(live_server.url, "survivor")
    sock = UserSocket(live_server.url, session)
    facts = [f"Fact number {i}: the {word} is on shelf {i}." for i, word in
             enumerate(["atlas", "banjo", "compass", "drum", "easel"])]
    for fact in facts:
        sock.chat(fact)

    before = engine_pids(live_server.process.pid)
    assert len(before) == 2
    live_server.nim.delay = 0.5
    ack = sock.call("chat", {"conversation_id": None, "text": "Fact number 5: the flute."})
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    done = sock.wait_for("done", lambda p: p["message_id"] == ack["message_id"], timeout=30)
    assert done["text"] == live_server.nim.reply

    after = wait_until(lambda: len(engine_pids(live_server.process.pid)) == 2
                       and engine_pids(live_server.process.pid))
    assert not after & before
    health = wait_until(lambda: requests.get(live_server.url + "/healthz", timeout=5).json()
                        if requests.get(live_server.url + "/healthz", timeout=5).ok else None)
    assert health["engine_restarts"] >= 2

    texts = {e["text"] for e in session.get(live_server.url + "/api/memory/export",
                                            timeout=30).json()["episodes"]}
    assert set(facts) <= texts
    assert "Fact number 5: the flute." in texts  # stored by the restarted worker
    found = session.get(live_server.url + "/api/memory", params={"q": "compass shelf"},
                        timeout=10).json()["results"]
    assert found[0]["text"] == facts[2]
    sock.close()
