"""Real SQLite files and network snapshots under tmp_path; no mocks."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from webapp.memory import Memory, Store


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(tmp_path / "memory.db")
    yield opened
    opened.close()


@pytest.fixture
def open_memory(store: Store, tmp_path: Path):
    """open_memory(username, **Memory options) -> a Memory for that user (created on
    first use)."""

    def opener(username: str = "ada", **options) -> Memory:
        user = store.get_user(username)
        user_id = user["id"] if user else store.create_user(username, "hash")
        return Memory(store, user_id, tmp_path / "networks", **options)

    return opener


def network_state(memory: Memory) -> tuple:
    net = memory.network.net
    return net.t, net.w_ee, net.w_ei, net.thresholds_e, net.x, net.y


def assert_same_network(a: Memory, b: Memory) -> None:
    for left, right in zip(network_state(a), network_state(b), strict=True):
        assert np.array_equal(left, right)


def acknowledged_until_killed(writer: str, database: Path, networks: Path,
                              lines: int) -> list[list[int]]:
    """Run the Python program `writer` (argv: database, networks), which prints a line of
    integers after each write it has committed; SIGKILL it after `lines` lines. Returns
    every line it printed, as integers: what it acknowledged before it died."""
    process = subprocess.Popen([sys.executable, "-c", writer, database, networks],
                               stdout=subprocess.PIPE, text=True)
    acknowledged = []
    for line in process.stdout:
        acknowledged.append([int(v) for v in line.split()])
        if len(acknowledged) == lines:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    acknowledged += [[int(v) for v in line.split()] for line in process.stdout]
    process.stdout.close()
    return acknowledged
