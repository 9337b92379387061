"""A real `sornmemory serve` in a subprocess, and Socket.IO clients to drive it.

Used by `sornmemory loadtest` (which starts its own server when not given one) to start,
SIGKILL and restart the whole server, as an operator's crash would. The server runs in a
session of its own, so a kill reaches gunicorn, its worker and the engine processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import engineio
import requests
import socketio

START_TIMEOUT_SECONDS = 60


@dataclass
class ServerProcess:
    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "sornmemory.db"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole server at once (gunicorn, its worker, every engine)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """A graceful stop (engines save), or a kill if it does not come in time."""
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(port: int) -> list[str]:
    """The installed console script, as the README runs it."""
    script = Path(sys.executable).with_name("sornmemory")
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if script.exists():
        return [str(script), *serve]
    return [sys.executable, "-m", "webapp.cli", *serve]


def start_server(data_dir: Path, nim_base_url: str, log_path: Path, port: int | None = None,
                 preexec_fn=None, **env: str) -> ServerProcess:
    """Start the server on 127.0.0.1 with `data_dir`, relaying to `nim_base_url`; wait healthy."""
    port = port or free_port()
    environ = {
        **os.environ,
        "SORNMEMORY_DATA": str(data_dir),
        "SORNMEMORY_WORKERS": "2",
        "SORNMEMORY_LLM": "nim",
        "NIM_BASE_URL": nim_base_url,
        "NVIDIA_API_KEY": "nvapi-loadtest-key",
        "NIM_READ_TIMEOUT": "5",
        "SORNMEMORY_SIGNUPS_PER_HOUR": "100000",  # its many users all sign up from 127.0.0.1
        **env,
    }
    environ.pop("SECRET_KEY", None)  # kept in the data dir: sessions survive a restart
    with open(log_path, "ab") as log:
        process = subprocess.Popen(serve_command(port), env=environ, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=preexec_fn)
    server = ServerProcess(f"http://127.0.0.1:{port}", data_dir, log_path, process)
    try:
        wait_until_healthy(server)
    except BaseException:
        server.kill()
        raise
    return server


def wait_until_healthy(server: ServerProcess, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sornmemory serve exited:\n{server.log()[-4000:]}")
        try:
            if requests.get(server.url + "/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy booting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"sornmemory serve did not become healthy:\n{server.log()[-4000:]}")


class _InOrderEngineIOClient(engineio.Client):
    """python-socketio's client handles every engine.io message in a thread of its own, so
    a binary event's header and its attachment can be decoded out of order under load
    (socket.io-client in the browser never does that). Handle messages in arrival order."""

    def _trigger_event(self, event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    """A python-socketio client that handles messages in arrival order, as browsers do."""

    def _engineio_client_class(self):
        return _InOrderEngineIOClient


def connect_socket(url: str, session: requests.Session, client: InOrderClient) -> None:
    """Connect `client` over WebSocket only, carrying the session's cookie."""
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    client.connect(url, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=10)
