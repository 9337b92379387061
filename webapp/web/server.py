"""`sornmemory serve`: the app under gunicorn, as Flask-SocketIO prescribes for threading mode.

One gunicorn worker process (Socket.IO rooms live in its memory) with the gthread worker
class (stopping gracefully: `GracefulWorker`) and many threads: each open WebSocket holds
a thread, the rest serve requests.
The app, and with it the engine worker processes (started with 'spawn'), is created in
that worker, so nothing forks after threads exist. When the worker exits, the engines
save their memories and stop.
"""

from __future__ import annotations

import logging
import os

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from webapp.web.config import positive_int

# Paths only: a query string can hold what a user searched their memory for.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def _our_app(worker):
    """The worker's Flask app, once it has loaded and created ours; else None."""
    app = getattr(worker, "wsgi", None)
    return app if app is not None and "sornmemory" in getattr(app, "extensions", {}) else None


class GracefulWorker(ThreadWorker):
    """gunicorn's gthread worker that, on SIGTERM, also begins the app's graceful stop
    (webapp.web.shutdown): new chats are refused and, once the replies being written are
    done, the sockets close, instead of holding the stop for the whole graceful timeout."""

    def handle_exit(self, sig, frame) -> None:
        from webapp.web.shutdown import begin_graceful_stop

        if self.alive and (app := _our_app(self)) is not None:
            begin_graceful_stop(app)
        super().handle_exit(sig, frame)


def _close_engines(server, worker) -> None:
    """gunicorn worker_exit hook."""
    from webapp.web.app import close_app

    app = _our_app(worker)
    if app is not None:
        close_app(app)


class GunicornServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # control_socket_disable exists since gunicorn 25
                self.cfg.set(key, value)

    def load(self):
        from webapp.web.app import create_app

        return create_app()


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the production server until interrupted."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    GunicornServer({
        "bind": f"{bind_host}:{port}",
        "workers": 1,
        "worker_class": GracefulWorker,
        "threads": positive_int(os.environ, "SORNMEMORY_THREADS", 100),
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "worker_exit": _close_engines,
        "control_socket_disable": True,  # no control socket in the home directory
    }).run()
