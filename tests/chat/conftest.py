"""What the chat tests share: a recorder standing in for the web layer's emit callback."""

from __future__ import annotations

import threading


class Events:
    """The emit callback: records (user_id, event, payload), and wakes who waits on it."""

    def __init__(self):
        self.log: list[tuple[int, str, object]] = []
        self.changed = threading.Condition()

    def __call__(self, user_id, event, payload):
        with self.changed:
            self.log.append((user_id, event, payload))
            self.changed.notify_all()

    def of(self, user_id, event=None, message_id=None) -> list:
        return [(e, p) for u, e, p in self.log if u == user_id and (event is None or e == event)
                and (message_id is None or not isinstance(p, dict)
                     or p.get("message_id") in (None, message_id))]

    def deltas(self, reply_id: str) -> list[str]:
        """The `delta` of each `token` event of a reply, in order."""
        return [p["delta"] for _, e, p in self.log if e == "token"
                and p["message_id"] == reply_id]

    def wait(self, user_id, event, message_id=None, timeout=15.0):
        """The latest payload of that event, once there is one."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.of(user_id, event, message_id), timeout):
                raise AssertionError(f"no {event} for user {user_id}")
            return self.of(user_id, event, message_id)[-1][1]
