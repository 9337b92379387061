"""`live_server`: the real `sornmemory serve` (gunicorn, engine workers) on a free port,
with its own data directory, relaying to a FakeNIM; and helpers to talk to it as users."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import engineio
import pytest
import requests
import socketio

from tests.support.fake_nim import FakeNIM

PASSWORD = "correct horse battery"
START_TIMEOUT_SECONDS = 30


@dataclass
class LiveServer:
    url: str
    nim: FakeNIM
    data_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_command(port: int) -> list[str]:
    """The installed console script, as the README runs it."""
    script = Path(sys.executable).with_name("sornmemory")
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if script.exists():
        return [str(script), *serve]
    return [sys.executable, "-m", "webapp.cli", *serve]


def start_server(tmp: Path, nim: FakeNIM, **env: str) -> LiveServer:
    port = _free_port()
    environ = {
        **os.environ,
        "SORNMEMORY_DATA": str(tmp / "data"),
        "SORNMEMORY_WORKERS": "2",
        "SORNMEMORY_LLM": "nim",
        "NIM_BASE_URL": nim.base_url,
        "NVIDIA_API_KEY": "nvapi-test-key",
        "NIM_READ_TIMEOUT": "5",
        **env,
    }
    environ.pop("SECRET_KEY", None)
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(_serve_command(port), env=environ, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", nim, tmp / "data", log_path, process)
    try:
        _wait_until_healthy(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def _wait_until_healthy(server: LiveServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sornmemory serve exited:\n{server.log()}")
        try:
            if requests.get(server.url + "/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy booting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"sornmemory serve did not become healthy:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


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


class _InOrderEngineIOClient(engineio.Client):
    """python-socketio's client handles every engine.io message in a thread of its own, so
    a binary event's header and its attachment can be decoded out of order under load
    (socket.io-client in the browser never does that). Handle messages in arrival order."""

    def _trigger_event(self, event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class _InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return _InOrderEngineIOClient


class UserSocket:
    """A python-socketio client logged in with a session's cookie; records every event."""

    def __init__(self, url: str, session: requests.Session, origin: str | None = None):
        self.events: list[tuple[str, object]] = []
        # The WebSocket handshake's Origin header (default: the server's own origin).
        options = {"origin": origin} if origin else {}
        self.client = _InOrderClient(reconnection=False, websocket_extra_options=options)
        self.client.on("*", self._record)
        cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        self.client.connect(url, headers={"Cookie": cookie}, transports=["websocket"],
                            wait_timeout=10)

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
