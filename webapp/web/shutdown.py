"""A graceful stop (SIGTERM to gunicorn, or the app closing): a chat is refused, not lost.

On SIGTERM gunicorn stops accepting and waits up to its graceful timeout for the open
connections, and every open WebSocket is one: each open tab held a restart for the whole
20 s, and when the app then shut its thread pools down, a chat sent meanwhile failed with
"Something went wrong on the server." (RuntimeError: cannot schedule new futures after
shutdown). Now, from the moment the stop begins, a chat or regenerate is answered
`server_stopping` (the page puts the text back in the box), the turns under way finish,
and then every socket is closed (the pages reconnect by themselves once the server is
back), so the worker exits as soon as the last reply is written.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from webapp.chat.turn import ack_error

log = logging.getLogger(__name__)

DRAIN_SECONDS = 15.0  # turns under way may finish within gunicorn's 20 s graceful timeout
ACK_GRACE_SECONDS = 0.5  # then the refusals of events already received reach their clients


def stopping_ack() -> dict:
    return ack_error("server_stopping", "The server is restarting; your message was not "
                                        "sent — try again in a moment.")


class GracefulStop:
    """Counts the turns under way, and admits none once the stop has begun."""

    def __init__(self):
        self._stopping = False
        self._turns = 0
        self._changed = threading.Condition()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def begin(self) -> None:
        with self._changed:
            self._stopping = True

    def admit(self) -> bool:
        """Count a new turn in; False (and not counted) once the stop has begun."""
        with self._changed:
            if self._stopping:
                return False
            self._turns += 1
            return True

    def finished(self) -> None:
        with self._changed:
            self._turns -= 1
            self._changed.notify_all()

    def wait_for_turns(self, timeout: float) -> bool:
        """True once no admitted turn is under way; False when `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._turns == 0, timeout)


def begin_graceful_stop(app: Flask) -> None:
    """Refuse new turns now; in the background, let the ones under way finish, then close
    every socket. Quick and lock-free of the app's work: gunicorn calls it from its
    SIGTERM handler."""
    sornmemory = app.extensions["sornmemory"]
    sornmemory.stop.begin()

    def drain() -> None:
        log.info("stopping: new chats are refused; closing the sockets once replies are done")
        if not sornmemory.stop.wait_for_turns(DRAIN_SECONDS):
            log.warning("stopping with chat turns still under way after %.0f s", DRAIN_SECONDS)
        time.sleep(ACK_GRACE_SECONDS)
        eio = app.extensions["socketio"].server.eio
        for sock in list(eio.sockets.values()):
            # Not waiting for its queue to be sent: a socket whose writer has ended would
            # never let the wait end.
            sock.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)

    threading.Thread(target=drain, name="graceful-stop", daemon=True).start()
