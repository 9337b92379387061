"""Socket.IO: the cookie-authenticated connection, the per-user room, and the chat events.

Every emit to a user goes through `UserEmitter` (DESIGN.md §6), addressed by the room
"user:<id>", so with a Redis message_queue the same call reaches the user on any node.
Each connection joins its user's room: two tabs of one user both see the stream, and no
other user ever does. It also joins its login session's room, so a logout closes exactly
the connections opened with that session's cookie (any copy of it), as does the session's
expiry (`ExpiredSessionCloser`); and every event checks the session again, as every HTTP
request does.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref

import socketio as python_socketio
from flask import Flask, request
from flask_socketio import ConnectionRefusedError, SocketIO, join_room

from webapp.chat.turn import INTERNAL_ERROR, ack_error
from webapp.web.account import logins_revoked
from webapp.web.auth import session_ended, session_lifetime, session_token, session_user
from webapp.web.services import services
from webapp.web.shutdown import stopping_ack

log = logging.getLogger(__name__)

MAX_SOCKETS_PER_USER = 20  # tabs and devices of one user
MAX_ANONYMOUS_SOCKETS = 5  # all clients without a live login together
HTTP_THREADS = 10  # of SORNMEMORY_THREADS never held by sockets (a fifth, if fewer than 50)


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def session_room(token: str) -> str:
    """Named by a digest: the token itself stays out of the server's bookkeeping."""
    return session_room_of_hash(hashlib.sha256(token.encode()).hexdigest())


def session_room_of_hash(token_hash: str) -> str:
    """The room of the session whose token has this SHA-256 (as the store keeps it)."""
    return "session:" + token_hash


class UserEmitter:
    """emit(user_id, event, payload): the one way the server sends a user anything."""

    def __init__(self, socketio: SocketIO):
        self.socketio = socketio

    def __call__(self, user_id: int, event: str, payload) -> None:
        self.socketio.emit(event, payload, to=user_room(user_id), namespace="/")


class OrderedSendsManager(python_socketio.Manager):
    """Keeps each Socket.IO packet's engine.io parts together.

    python-socketio sends a binary event as a header packet followed by its attachment
    packets, without a lock; when two threads send to one client at once (a `spikes`
    frame from the relay, a `token` or an ack from a turn), the parts interleave and the
    client cannot decode them. Every send holds `send_lock`: room emits here, and acks
    and direct sends through `serialize_sends`.
    """

    def __init__(self):
        super().__init__()
        self.send_lock = threading.RLock()

    def emit(self, *args, **kwargs):
        with self.send_lock:
            return super().emit(*args, **kwargs)


class ClientPacket(python_socketio.packet.Packet):
    """A Socket.IO packet as decoded from a client, refused (ValueError) when it is an event
    that is not a list starting with the event's name: python-socketio would fail on such
    a packet later, in a thread of its own, logging a traceback for every one."""

    def decode(self, encoded_packet):
        attachments = super().decode(encoded_packet)
        events = (python_socketio.packet.EVENT, python_socketio.packet.BINARY_EVENT)
        if self.packet_type in events and not (
                isinstance(self.data, list) and self.data and isinstance(self.data[0], str)):
            raise ValueError("an event must be a list that starts with its name")
        return attachments


def serialize_sends(socketio: SocketIO, manager: OrderedSendsManager) -> None:
    """Acks are sent by the server itself (`_send_packet`), outside the manager: lock them too."""
    send_packet = socketio.server._send_packet

    def locked_send_packet(eio_sid, pkt):
        with manager.send_lock:
            send_packet(eio_sid, pkt)

    socketio.server._send_packet = locked_send_packet


def _payload(args: tuple):
    """The single argument an event carries; None (refused by validation) otherwise."""
    return args[0] if len(args) == 1 else None


def _after_ack(turn_threads, work, then) -> None:
    """Run `work` once this handler has returned, i.e. once its ack is queued to the client.

    The server runs each event in a thread of its own, so waiting for that thread puts the
    ack before the turn's first event. (A test client runs handlers on the main thread.)
    `then` runs after the work, or at once if the threads have been shut down."""
    handler = threading.current_thread()

    def run():
        try:
            if handler is not threading.main_thread():
                handler.join(timeout=2.0)
            work()
        finally:
            then()

    try:
        turn_threads.submit(run)
    except RuntimeError:  # shut down meanwhile: the stored message is recovered on reconnect
        log.warning("a chat turn was acknowledged as the server stopped; it was not run")
        then()


def _user(store, token: str | None, lifetime: float) -> dict | None:
    return None if token is None else store.session_user(token, lifetime)


def close_session_sockets(socketio: SocketIO, token: str) -> None:
    """Disconnect every socket opened with that login session's cookie."""
    close_room_sockets(socketio, session_room(token))


def close_room_sockets(socketio: SocketIO, room: str) -> None:
    """Disconnect every socket in the room."""
    server = socketio.server
    for sid, _ in list(server.manager.get_participants("/", room)):
        server.disconnect(sid, namespace="/")


class ExpiredSessionCloser:
    """Closes the sockets of a login session that ends while they stay connected: it
    expired, or was deleted without a logout here. Their events are refused already; this
    also stops what is sent to the user's room from reaching them. Every `every` seconds
    each connected session is looked up once (a logout closes its sockets at once)."""

    def __init__(self, socketio: SocketIO, store, lifetime: float):
        self.socketio, self.store, self.lifetime = socketio, store, lifetime
        self.every = min(60.0, max(0.5, lifetime / 4))
        self._tokens: set[str] = set()  # sessions with sockets open, as far as we know
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="session-expiry",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            self.sweep()

    def sweep(self) -> None:
        with self._lock:
            watched = list(self._tokens)
        for token in watched:
            try:
                if self._connected(token):
                    if self.store.session_user(token, self.lifetime) is not None:
                        continue
                    close_session_sockets(self.socketio, token)
                with self._lock:  # forgotten only with no socket left (a reconnect may race)
                    if not self._connected(token):
                        self._tokens.discard(token)
            except Exception:  # noqa: BLE001 - the next sweep tries this session again
                log.exception("checking a connected session failed")

    def _connected(self, token: str) -> bool:
        return any(True for _ in self.socketio.server.manager.get_participants(
            "/", session_room(token)))


class SocketQuota:
    """Bounds the open Engine.IO connections: per user, for clients without a live login
    (all together), and in all. Each open WebSocket holds one of the server's threads, and
    a Socket.IO connect refused for want of a login still leaves the WebSocket open: 100
    anonymous clients, or one user's script, took every thread and the server stopped
    answering. With some threads never given to sockets, logins and pages are still
    served when all the others are held. The few connections without a login let a page
    whose session ended hear the refusal and go to the login screen (the browser then
    closes its connection)."""

    def __init__(self, server: python_socketio.Server, total: int):
        self.server, self.total = server, total
        self._owners: dict[str, int | None] = {}  # engine.io sid -> user id (None: no login)
        self._lock = threading.Lock()

    def admit(self, eio_sid: str, user_id: int | None) -> bool:
        limit = MAX_ANONYMOUS_SOCKETS if user_id is None else MAX_SOCKETS_PER_USER
        with self._lock:
            sockets = self.server.eio.sockets  # a closed one may stay there for a while
            self._owners = {sid: user for sid, user in self._owners.items()
                            if sid in sockets and not sockets[sid].closed}
            held = sum(1 for user in self._owners.values() if user == user_id)
            if len(self._owners) >= self.total or held >= limit:
                return False
            self._owners[eio_sid] = user_id
            return True


def admit_handshakes(app: Flask, socketio: SocketIO, quota: SocketQuota) -> None:
    """Answer an Engine.IO handshake that `quota` has no room for with 401, before any
    transport exists. (python-socketio's admin wraps this handler the same way.)"""
    accept = socketio.server._handle_eio_connect

    def on_eio_connect(eio_sid: str, environ: dict):
        with app.request_context(environ):
            user = session_user()
        if not quota.admit(eio_sid, None if user is None else user["id"]):
            return {"error": {"code": "too_many_connections",
                              "message": "Too many open connections; close a tab or retry."}}
        return accept(eio_sid, environ)

    socketio.server.eio.on("connect", on_eio_connect)


def close_on_malformed_packets(socketio: SocketIO) -> None:
    """A packet python-socketio cannot handle (not JSON, JSON nested too deep, an event that
    is not a list (ClientPacket), a packet type no client sends) closes its connection, with
    one log line. Each such packet logged a 20-line traceback and the connection stayed
    open: one client, no login needed, grew the log by 1.3 MB/s. Our own handlers' errors
    never reach here (events run in threads of their own, and `on_error` catches the
    connect handler's)."""
    handle, eio = socketio.server._handle_eio_message, socketio.server.eio
    closing: weakref.WeakSet = weakref.WeakSet()  # engine.io sockets being closed here
    lock = threading.Lock()

    def on_eio_message(eio_sid: str, data):
        try:
            handle(eio_sid, data)
        except Exception as exc:  # noqa: BLE001 - whatever the client's bytes made it raise
            # Packets are handled in threads of their own: close (and log) only once.
            with lock:
                sock = eio.sockets.get(eio_sid)
                if sock is None or sock in closing:
                    return
                closing.add(sock)
            log.warning("closing a Socket.IO connection that sent a malformed packet (%s)",
                        type(exc).__name__)
            # Without waiting for its queue to be sent (eio.disconnect waits): its writer
            # may have ended already, and the wait would then never end.
            sock.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)

    socketio.server.eio.on("message", on_eio_message)


def register_events(app: Flask, socketio: SocketIO) -> None:
    # python-socketio runs every event in a new thread: the database work is handed to the
    # app's long-lived store threads (see Services), and the turn to its turn threads.
    sornmemory = app.extensions["sornmemory"]
    closer = ExpiredSessionCloser(socketio, sornmemory.store,
                                  sornmemory.settings["SORNMEMORY_SESSION_SECONDS"])
    threads = sornmemory.settings["SORNMEMORY_THREADS"]
    admit_handshakes(app, socketio, SocketQuota(
        socketio.server, max(1, threads - min(HTTP_THREADS, threads // 5))))
    close_on_malformed_packets(socketio)

    @socketio.on("connect")
    def on_connect(auth=None):
        sornmemory, token = services(), session_token()
        if sornmemory.stop.stopping:
            raise ConnectionRefusedError(stopping_ack()["error"])
        user = sornmemory.store_threads.submit(
            _user, sornmemory.store, token, session_lifetime()).result()
        if user is None:
            raise ConnectionRefusedError({"code": "unauthorized", "message": "Please log in."})
        join_room(user_room(user["id"]))
        join_room(session_room(token))
        closer.watch(token)
        # Load the user's network while they type (the first turn would wait ~0.3-0.5 s for
        # it), and store what a killed server acknowledged but never stored as episodes.
        sornmemory.engine.submit(user["id"], "stats")
        sornmemory.turn_threads.submit(sornmemory.turns.recover, user["id"])

    def user_event(turn_method: str, starts_work: bool):
        def handler(*args):
            sornmemory, token, lifetime = services(), session_token(), session_lifetime()

            def act():
                user = _user(sornmemory.store, token, lifetime)
                if user is None:
                    return ack_error("unauthorized", "Please log in."), None
                result = getattr(sornmemory.turns, turn_method)(user["id"], _payload(args))
                return result if starts_work else (result, None)

            stop = sornmemory.stop
            if starts_work and not stop.admit():  # a graceful stop has begun
                return stopping_ack()
            work = None
            try:
                ack, work = sornmemory.store_threads.submit(act).result()
            except RuntimeError:  # the store threads were shut down: the app is closing
                if not stop.stopping:
                    raise
                return stopping_ack()
            finally:
                if starts_work and work is None:
                    stop.finished()
            if work is not None:
                _after_ack(sornmemory.turn_threads, work, then=stop.finished)
            return ack

        return handler

    socketio.on_event("chat", user_event("chat", starts_work=True))
    socketio.on_event("regenerate", user_event("regenerate", starts_work=True))
    socketio.on_event("stop", user_event("stop", starts_work=False))

    @session_ended.connect_via(app)
    def close_session_connections(sender, token: str) -> None:
        """A logout: the connections opened with that session stop receiving at once."""
        close_session_sockets(socketio, token)

    @logins_revoked.connect_via(app)
    def close_revoked_connections(sender, user_id: int, token_hashes: list[str] | None) -> None:
        """A password change (the other sessions) or a deleted account (all of them)."""
        rooms = ([user_room(user_id)] if token_hashes is None
                 else [session_room_of_hash(token_hash) for token_hash in token_hashes])
        for room in rooms:
            close_room_sockets(socketio, room)

    @socketio.on_error_default
    def on_error(exc):
        log.exception("socket event failed", exc_info=exc)
        if request.event["message"] == "connect":
            # Refused, not accepted with no room joined (it would never hear a reply): the
            # client tries again.
            raise ConnectionRefusedError(INTERNAL_ERROR)
        return ack_error(**INTERNAL_ERROR)
