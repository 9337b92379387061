"""Spike frames from the engines to the users' rooms, batched so no browser can fall behind.

Frames arrive from the engine receiver threads and are only queued here. One relay
thread wakes `rate` times a second and emits at most one frame per user: the pending
steps merged into one frame. A frame that does not continue the pending steps (a
different operation) replaces them, and at most `max_steps` of the latest steps are kept:
when a user is behind, old spikes are dropped, never queued without bound.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from webapp.engine.frames import decode_frame, encode_frame

log = logging.getLogger(__name__)


class SpikeRelay:
    def __init__(self, emit, rate: float = 25.0, max_steps: int = 2000):
        self.emit = emit  # emit(user_id, event, payload)
        self.interval = 1.0 / rate
        self.max_steps = max_steps
        self.dropped_steps = 0
        self._pending: dict[int, tuple[int, np.ndarray]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spike-relay", daemon=True)

    def start(self) -> SpikeRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def push(self, user_id: int, frame: bytes) -> None:
        first, spikes = decode_frame(frame)
        with self._lock:
            if user_id in self._pending:
                held_first, held = self._pending[user_id]
                if (held_first + len(held)) % 2**32 == first:
                    first, spikes = held_first, np.concatenate([held, spikes])
                else:
                    self.dropped_steps += len(held)
            if len(spikes) > self.max_steps:
                self.dropped_steps += len(spikes) - self.max_steps
                first, spikes = first + len(spikes) - self.max_steps, spikes[-self.max_steps :]
            self._pending[user_id] = (first, spikes)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for user_id, (first, spikes) in pending.items():
            self.emit(user_id, "spikes", encode_frame(first, spikes))

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.flush()
            except Exception:
                log.exception("spike relay failed")
