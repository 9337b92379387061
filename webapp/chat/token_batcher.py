"""The `token` events of the replies being streamed, joined so a fast stream costs few sends.

Every event costs the server an encode, a room lookup and a WebSocket frame, and a model
can stream several pieces per event's worth of time (a local one, or any under load, whose
pieces arrive in bursts). A reply's piece goes out at once when its previous event is at
least `interval` old (so always its first piece); pieces that follow sooner are held and
sent together, by one thread shared by all replies, at most `interval` later. `close`
sends what is held before returning, so a reply's `done` never overtakes its text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.04  # the most a piece is held: 25 updates a second still look smooth


class _Reply:
    """One reply's held pieces; its lock keeps its events in order across the two senders."""

    def __init__(self, user_id: int):
        self.user_id = user_id
        self.held: list[str] = []
        self.sent_at = float("-inf")
        self.lock = threading.Lock()


class TokenBatcher:
    """Batches the `token` events of all replies of one app; its thread starts on first use."""

    def __init__(self, emit: Callable[[int, str, Any], None],
                 interval: float = INTERVAL_SECONDS):
        self.emit = emit  # emit(user_id, event, payload)
        self.interval = interval
        self._replies: dict[str, _Reply] = {}
        self._lock = threading.Lock()
        self._holding = threading.Event()  # some reply holds pieces: the flusher has work
        self._flusher: threading.Thread | None = None

    def send(self, user_id: int, reply_id: str, delta: str) -> None:
        """Send a piece of a reply as a `token` event now, or with the next ones."""
        with self._lock:
            reply = self._replies.get(reply_id)
            if reply is None:
                reply = self._replies[reply_id] = _Reply(user_id)
        with reply.lock:
            if not reply.held and time.monotonic() - reply.sent_at >= self.interval:
                self._send(reply_id, reply, [delta])
                return
            reply.held.append(delta)
        self._wake_flusher()

    def close(self, reply_id: str) -> None:
        """The reply has streamed: send what it still holds, and forget it."""
        with self._lock:
            reply = self._replies.pop(reply_id, None)
        if reply is not None:
            with reply.lock:
                self._send(reply_id, reply, reply.held)

    def flush(self) -> None:
        """Send the pieces every reply holds."""
        with self._lock:
            replies = list(self._replies.items())
        for reply_id, reply in replies:
            with reply.lock:
                self._send(reply_id, reply, reply.held)

    def _send(self, reply_id: str, reply: _Reply, pieces: list[str]) -> None:
        """Called with `reply.lock` held."""
        if pieces:
            self.emit(reply.user_id, "token", {"message_id": reply_id, "delta": "".join(pieces)})
            reply.held = []
            reply.sent_at = time.monotonic()

    def _wake_flusher(self) -> None:
        self._holding.set()
        if self._flusher is None:
            with self._lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                                     name="token-batcher")
                    self._flusher.start()

    def _flush_loop(self) -> None:
        """Sleeps while nothing is held; otherwise sends what is held every `interval`."""
        while True:
            self._holding.wait()
            self._holding.clear()
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:
                log.exception("sending held reply pieces failed")
