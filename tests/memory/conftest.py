"""Real SQLite files and network snapshots under tmp_path; no mocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.memory import Memory, Store


@pytest.fixture
def store(tmp_path: Path):
    opened = Store(tmp_path / "memory.db")
    yield opened
    opened.close()


@pytest.fixture
def open_memory(store: Store, tmp_path: Path):
    """open_memory(username) -> a Memory for that user (created on first use)."""

    def opener(username: str = "ada") -> Memory:
        user = store.get_user(username)
        user_id = user["id"] if user else store.create_user(username, "hash")
        return Memory(store, user_id, tmp_path / "networks")

    return opener
