"""`live_server`: the real `sornmemory serve` (gunicorn, engine workers) on a free port,
with its own data directory, relaying to a FakeNIM; and helpers to talk to it as users."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.fake_nim import FakeNIM
from webapp.bench import liveserver
from webapp.bench.liveserver import InOrderClient, ServerProcess, connect_socket

PASSWORD = "correct horse battery"


@dataclass
class LiveServer(ServerProcess):
    """A running `sornmemory serve` and the FakeNIM it relays to."""

    nim: FakeNIM | None = None


def start_server(tmp: Path, nim: FakeNIM, **env: str) -> LiveServer:
    """Serve with data under `tmp/data`, relaying to `nim`; wait until healthy."""
    server = liveserver.start_server(tmp / "data", nim.base_url, tmp / "server.log",
                                     NVIDIA_API_KEY="nvapi-test-key", **env)
    return LiveServer(server.url, server.data_dir, server.log_path, server.process, nim)


def stop_server(server: ServerProcess) -> None:
    server.stop(timeout=15)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    with FakeNIM() as nim:
        server = start_server(tmp_path_factory.mktemp("live"), nim)
        yield server
        stop_server(server)


@pytest.fixture(autouse=True)
def _fresh_nim(request):
    """Every test starts with FakeNIM answering normally."""
    if "live_server" in request.fixturenames:
        nim = request.getfixturevalue("live_server").nim
        nim.mode, nim.delay, nim.fail_times = "ok", 0.0, None
    yield


def register(url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """A logged-in HTTP session for a new user."""
    session = requests.Session()
    response = session.post(f"{url}/api/auth/register",
                            json={"username": username, "password": password}, timeout=10)
    assert response.status_code == 201, response.text
    return session


class UserSocket:
    """A python-socketio client logged in with a session's cookie; records every event."""

    def __init__(self, url: str, session: requests.Session, origin: str | None = None):
        self.events: list[tuple[str, object]] = []
        # The WebSocket handshake's Origin header (default: the server's own origin).
        options = {"origin": origin} if origin else {}
        self.client = InOrderClient(reconnection=False, websocket_extra_options=options)
        self.client.on("*", self._record)
        connect_socket(url, session, self.client)

    def _record(self, event: str, *args) -> None:
        self.events.append((event, args[0] if args else None))

    def call(self, event: str, payload=None, timeout: float = 10):
        return self.client.call(event, payload, timeout=timeout)

    def chat(self, text: str, conversation_id: str | None = None, timeout: float = 20) -> dict:
        """Send a message and wait for its reply and the stats that end the turn; the ack."""
        stats_before = len(self.named("stats"))
        ack = self.call("chat", {"conversation_id": conversation_id, "text": text})
        assert ack["ok"], ack
        self.wait_for("done", lambda p: p["message_id"] == ack["message_id"], timeout)
        self.wait_for("stats", lambda _: len(self.named("stats")) > stats_before, timeout)
        return ack

    def named(self, name: str) -> list:
        return [payload for event, payload in self.events if event == name]

    def wait_for(self, name: str, predicate=lambda payload: True, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for payload in self.named(name):
                if predicate(payload):
                    return payload
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} event in {timeout}s; got {[e for e, _ in self.events]}")

    def close(self) -> None:
        self.client.disconnect()


@contextmanager
def connected_user(url: str, username: str) -> Iterator[tuple[requests.Session, UserSocket]]:
    """A new user's logged-in HTTP session and open socket, closed afterwards."""
    session = register(url, username)
    sock = UserSocket(url, session)
    try:
        yield session, sock
    finally:
        sock.close()
