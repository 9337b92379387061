"""The messages between the web process and the engine workers: plain picklable dicts.

Nothing live crosses this boundary (no Memory objects, no callbacks, no shared memory),
so the transport can later become Redis or Celery without touching either side.

    command  {"id": int, "user_id": int, "op": str, "args": dict}
    result   {"type": "result", "id": int, "ok": True, "result": ...}
             {"type": "result", "id": int, "ok": False, "error": {"code", "message"}}
    event    {"type": "spikes", "user_id": int, "frame": bytes}   (see frames.py)

On the pipe, messages travel in frames: one frame is a pickled list of messages, so the
commands queued for a worker go in one write and the answers of a group commit come back
in one (a frame costs a system call, a pickle and a thread wake-up on each side, whatever
it holds). `None` in a frame to a worker asks it to save and exit.
"""

from __future__ import annotations

import pickle
from typing import Any

# Operations a worker understands; args are keyword arguments of the matching Memory call.
# "delete_account" is the one exception: it deletes the user (see worker.Engines).
OPS = frozenset({"store", "recall", "delete", "export", "import", "stats", "delete_account"})


class EngineError(Exception):
    """A command failed; `code` is machine-readable, `message` fit to show a user."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


def pack(messages: list) -> bytes:
    """One frame holding `messages` (plain pickle: cheaper than multiprocessing's own)."""
    return pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(frame: bytes) -> list:
    """The messages of a frame made by `pack`."""
    return pickle.loads(frame)


def command(request_id: int, user_id: int, op: str, args: dict) -> dict:
    if op not in OPS:
        raise ValueError(f"unknown engine operation {op!r}")
    return {"id": request_id, "user_id": user_id, "op": op, "args": args}


def success(request_id: int, result: Any) -> dict:
    return {"type": "result", "id": request_id, "ok": True, "result": result}


def failure(request_id: int, code: str, message: str) -> dict:
    return {"type": "result", "id": request_id, "ok": False,
            "error": {"code": code, "message": message}}


def spikes_event(user_id: int, frame: bytes) -> dict:
    return {"type": "spikes", "user_id": user_id, "frame": frame}
