"""The Flask application factory: settings, store, engine workers, LLM client, routes, sockets.

Templates and static files come from the top-level `templates/` and `static/` folders
of the source tree (the parent of the `webapp` package, as installed with
`pip install -e .`), or of the working directory when the package was copied elsewhere.
"""

from __future__ import annotations

import atexit
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask_socketio import SocketIO

from webapp.chat.turn import ChatTurn
from webapp.engine import EnginePool, WorkerSettings
from webapp.llm import make_client
from webapp.memory import Store
from webapp.web import account, admin, api, auth, client_json
from webapp.web.config import load_settings
from webapp.web.errors import register_error_handlers
from webapp.web.relay import SpikeRelay
from webapp.web.services import Services, services
from webapp.web.shutdown import GracefulStop
from webapp.web.sockets import (
    ClientPacket,
    OrderedSendsManager,
    UserEmitter,
    register_events,
    serialize_sends,
)

log = logging.getLogger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parents[2]
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # a memory import is the largest thing we accept
MAX_SOCKET_MESSAGE_BYTES = 256 * 1024  # a chat message is at most 16k characters
STORE_THREADS = 8  # socket events' database work (short: a lookup and a few inserts)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Only our own scripts, styles and connections; inline style attributes that a
    # Markdown reply might carry are not applied.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}


class RequestJSON(DefaultJSONProvider):
    """Request bodies parsed as `client_json` does: too deep reads as malformed (a 400)."""

    def loads(self, s, **kwargs):
        return client_json.loads(s, **kwargs)


def _asset_dir(name: str) -> str:
    for base in (SOURCE_ROOT, Path.cwd()):
        if (base / name).is_dir():
            return str(base / name)
    return str(SOURCE_ROOT / name)


def create_app(config: dict | None = None) -> Flask:
    """A ready app; `config` overrides environment settings (same names) and Flask config."""
    settings = load_settings(config)
    data_dir = Path(settings["SORNMEMORY_DATA"])
    app = Flask(__name__, template_folder=_asset_dir("templates"),
                static_folder=_asset_dir("static"))
    app.json = RequestJSON(app)
    app.config.update(config or {})
    app.config.update(
        SECRET_KEY=settings["SECRET_KEY"],
        SESSION_COOKIE_NAME="sornmemory_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind HTTPS the browser then never sends the cookie over plain HTTP.
        SESSION_COOKIE_SECURE=settings["SORNMEMORY_SECURE_COOKIES"],
        # The cookie lasts as long as the server-side session it carries (auth.py).
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings["SORNMEMORY_SESSION_SECONDS"]),
        # Set the cookie only when the session changes: a request still in flight during a
        # logout would otherwise re-issue the old session and undo the logout.
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
    )
    # Default cors_allowed_origins: only the server's own origin may open a connection.
    manager = OrderedSendsManager()
    socketio = SocketIO(app, async_mode="threading", client_manager=manager,
                        max_http_buffer_size=MAX_SOCKET_MESSAGE_BYTES, json=client_json,
                        serializer=ClientPacket)
    serialize_sends(socketio, manager)
    emit = UserEmitter(socketio)
    relay = SpikeRelay(emit).start()
    db_path = data_dir / "sornmemory.db"
    store = Store(db_path)
    engine = EnginePool(
        WorkerSettings(db_path=str(db_path), network_dir=str(data_dir / "networks"),
                       idle_seconds=settings["SORNMEMORY_ENGINE_IDLE"]),
        workers=settings["SORNMEMORY_WORKERS"],
        on_event=lambda event: relay.push(event["user_id"], event["frame"]),
        hang_seconds=settings["SORNMEMORY_ENGINE_HANG"],
    ).start()
    llm = make_client(settings)
    app.extensions["sornmemory"] = Services(
        settings=settings, store=store, engine=engine, llm=llm,
        turns=ChatTurn(store, engine, llm, emit), relay=relay,
        store_threads=ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store"),
        # A turn holds its thread while the reply streams; more turns than this queue.
        turn_threads=ThreadPoolExecutor(settings["SORNMEMORY_THREADS"],
                                        thread_name_prefix="turn"),
        stop=GracefulStop(),
        signups=auth.Throttle(auth.SIGNUP_WINDOW_SECONDS),
    )
    atexit.register(close_app, app)

    register_error_handlers(app)
    app.before_request(auth.refuse_cross_origin_writes)
    app.before_request(auth.require_login)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(account.bp)
    register_events(app, socketio)

    @app.get("/")
    def index():
        return render_template("index.html")

    @app.get("/healthz")
    def health():
        engine = services().engine
        healthy = engine.alive()
        body = {"status": "ok" if healthy else "degraded", "engine_restarts": engine.restarts}
        return jsonify(body), 200 if healthy else 503

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/"):  # a user's data: no copy kept on disk or a proxy
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def close_app(app: Flask) -> None:
    """Refuse new turns, stop relaying and let every engine save and exit (idempotent)."""
    sornmemory = app.extensions["sornmemory"]
    sornmemory.stop.begin()
    sornmemory.relay.stop()
    sornmemory.engine.close()
    sornmemory.store_threads.shutdown(wait=False)
    sornmemory.turn_threads.shutdown(wait=False)
