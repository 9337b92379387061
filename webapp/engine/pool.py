"""The web process's handle on the engine workers: routing, futures, crash recovery.

Each worker slot has a duplex pipe, a local outbox drained by a sender thread (so
submitting never blocks the caller, whatever the worker is doing; what queued meanwhile
goes in one frame) and a receiver thread that resolves futures and forwards events. A
worker that dies (even by SIGKILL) shows up as EOF on its pipe: its pending requests fail
with `engine_restarted`, the commands still queued for it are dropped (never replayed
twice), and a fresh process takes the slot; its users' memories reload from disk on their
next command.

A worker that hangs instead of dying (a deadlock, a stopped process) is found by a
watchdog: when it has owed an answer and said nothing for longer than `hang_seconds`, it
is SIGKILLed (which also ends a stopped process) and the same restart takes over.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache
from multiprocessing.connection import wait
from typing import Any

from webapp.engine import protocol
from webapp.engine.protocol import EngineError
from webapp.engine.worker import WorkerSettings, run_worker

log = logging.getLogger(__name__)

_STOP_SENDER = object()
RESTART_BACKOFF_SECONDS = 1.0
# How long a worker may owe an answer without a word before it counts as hung. A store or
# recall takes milliseconds (a 200-token store 3-5 ms here) and loading a memory well
# under a second, so 20 s is never reached by a working worker, and still comes before
# the 30 s a chat turn waits, which then retries on the fresh worker.
HANG_SECONDS = 20.0
# Until its first answer a new worker is starting: imports, compiling the network kernel
# on a cold cache (measured 4.9 s, 0.6 s when cached) and a warm-up store.
STARTUP_SECONDS = 120.0
# An import learns a whole memory in one command, an export reads one and deleting an
# account deletes one: they may take as long as the web waits for them
# (api.IMPORT_TIMEOUT_SECONDS).
BULK_OPS, BULK_SECONDS = frozenset({"import", "export", "delete_account"}), 600.0


class _Outbox:
    """The messages waiting for one sender thread, taken all at once. Its callers hold the
    pool's lock, so a message costs one list append; only the first message into an empty
    outbox wakes the sender. (A queue.Queue cost a Condition round trip per message on
    each side, ~1.5 us of the web process's ~17 us CPU per store.)"""

    def __init__(self, lock: threading.Lock):
        self._lock = lock
        self._messages: list = []
        self._nonempty = threading.Lock()  # held while there is nothing to take
        self._nonempty.acquire()

    def put(self, message) -> None:
        """Add a message (the caller holds the pool's lock)."""
        self._messages.append(message)
        if len(self._messages) == 1:
            self._nonempty.release()

    def take(self) -> list:
        """Wait until there are messages, then take them all, in order."""
        self._nonempty.acquire()
        with self._lock:
            messages, self._messages = self._messages, []
        return messages


@lru_cache(maxsize=1 << 16)
def _worker_index(user_id: int, workers: int) -> int:
    """Stable across restarts and machines (unlike hash()), so a user stays put. Cached, as
    it is asked once per command: 0.5 us hashed, 0.06 us cached."""
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % workers


class _Slot:
    """One worker position: the current process and its plumbing."""

    def __init__(self, index: int, lock: threading.Lock):
        self.index = index
        self.process: multiprocessing.process.BaseProcess | None = None
        self.outbox = _Outbox(lock)
        self.started_at = 0.0
        self.heard_at = 0.0  # the worker's last message (result or event)
        self.answered = False  # the current process has answered once: it has started
        self.owed: dict[int, tuple[float, float]] = {}  # request id -> (sent at, allowance)


class EnginePool:
    """Routes each user's commands to one worker process and returns futures."""

    def __init__(
        self,
        settings: WorkerSettings,
        workers: int,
        on_event: Callable[[dict], None] | None = None,
        start_method: str = "spawn",
        hang_seconds: float = HANG_SECONDS,
    ):
        if workers < 1:
            raise ValueError("at least one engine worker is needed")
        self.settings = settings
        self.on_event = on_event
        self.hang_seconds = hang_seconds
        self.restarts = 0
        self._ctx = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._slots = [_Slot(i, self._lock) for i in range(workers)]
        self._pending: dict[int, tuple[int, Future]] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self._stop_watching = threading.Event()

    # --- public ------------------------------------------------------------------------

    def start(self) -> EnginePool:
        with self._lock:
            for slot in self._slots:
                self._launch(slot)
        threading.Thread(target=self._watch, name="engine-watchdog", daemon=True).start()
        return self

    def worker_index(self, user_id: int) -> int:
        """The worker that serves `user_id` (see _worker_index)."""
        return _worker_index(user_id, len(self._slots))

    def submit(self, user_id: int, op: str, **args: Any) -> Future:
        return self._submit(user_id, op, args)[1]

    def call(self, user_id: int, op: str, timeout: float = 30.0, **args: Any) -> Any:
        """Run one command and wait for its result; raises EngineError on any failure."""
        request_id, future = self._submit(user_id, op, args)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request_id, None)
            raise EngineError("timeout", "The memory engine did not answer in time.") from None

    def _submit(self, user_id: int, op: str, args: dict) -> tuple[int, Future]:
        """(request id, future) of a command sent to the user's worker."""
        future: Future = Future()
        request_id = next(self._ids)
        cmd = protocol.command(request_id, user_id, op, args)
        slot = self._slots[_worker_index(user_id, len(self._slots))]
        allowance = max(self.hang_seconds, BULK_SECONDS) if op in BULK_OPS else self.hang_seconds
        with self._lock:
            if self._closing:
                raise EngineError("shutting_down", "The server is shutting down.")
            self._pending[request_id] = (slot.index, future)
            # Owed until answered, even after its caller stopped waiting.
            slot.owed[request_id] = (time.monotonic(), allowance)
            slot.outbox.put(cmd)
        return request_id, future

    def worker_pids(self) -> list[int | None]:
        return [slot.process.pid if slot.process else None for slot in self._slots]

    def alive(self) -> bool:
        """Every slot has a running worker (one being restarted counts as down)."""
        return all(slot.process is not None and not wait([slot.process.sentinel], 0)
                   for slot in self._slots)

    def close(self, timeout: float = 15.0) -> None:
        """Ask every worker to save and exit; kill the ones that do not in time."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._stop_watching.set()
            for slot in self._slots:
                slot.outbox.put(None)  # forwarded to the worker: save and exit
            pending, self._pending = list(self._pending.values()), {}
        for _, future in pending:
            future.set_exception(EngineError("shutting_down", "The server is shutting down."))
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            process = slot.process
            if process is None:
                continue
            # The sentinel, not is_alive(): under gunicorn the exit status may be reaped
            # elsewhere, and then a finished process would look alive forever.
            if not wait([process.sentinel], max(0.0, deadline - time.monotonic())):
                log.warning("engine worker %s did not stop in time; killing it", process.pid)
                process.kill()
            process.join(1.0)

    # --- internals ---------------------------------------------------------------------

    def _launch(self, slot: _Slot) -> None:
        """Start a process in the slot (caller holds the lock)."""
        ours, theirs = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=run_worker, args=(theirs, self.settings),
            name=f"sornmemory-engine-{slot.index}", daemon=True,
        )
        process.start()
        theirs.close()  # so the worker's death reads as EOF on our end
        slot.process, slot.started_at = process, time.monotonic()
        slot.heard_at, slot.answered = slot.started_at, False
        threading.Thread(target=self._send_loop, args=(ours, slot.outbox),
                         name=f"engine-{slot.index}-send", daemon=True).start()
        threading.Thread(target=self._receive_loop, args=(ours, slot, process),
                         name=f"engine-{slot.index}-receive", daemon=True).start()

    @staticmethod
    def _send_loop(conn, outbox: _Outbox) -> None:
        """Send everything the outbox holds in one frame (protocol.pack) until stopped; a
        None (the worker is to stop) is forwarded as the frame's last message. Nothing is
        put after a None or a _STOP_SENDER (the worker died: what queued is dropped)."""
        while True:
            messages = outbox.take()
            if messages[-1] is _STOP_SENDER:
                return
            try:
                conn.send_bytes(protocol.pack(messages))
            except OSError:  # the worker died; the receiver handles it
                return
            if messages[-1] is None:
                return

    def _receive_loop(self, conn, slot: _Slot, process) -> None:
        while True:
            try:
                messages = protocol.unpack(conn.recv_bytes())
            except (EOFError, OSError):
                break
            slot.heard_at = time.monotonic()
            events = self._resolve(slot, messages)
            if events and self.on_event is not None:
                for event in events:
                    self._forward(event)
        conn.close()
        self._restart(slot, process)

    def _forward(self, event: dict) -> None:
        try:
            self.on_event(event)
        except Exception:
            log.exception("engine event handler failed")

    def _resolve(self, slot: _Slot, messages: list[dict]) -> list[dict]:
        """Settle the futures of the results among `messages`; the others (events)."""
        answered, events = [], []
        with self._lock:
            for msg in messages:
                if msg["type"] != "result":
                    events.append(msg)
                    continue
                slot.answered = True
                slot.owed.pop(msg["id"], None)
                entry = self._pending.pop(msg["id"], None)
                if entry is not None:  # else its caller timed out already
                    answered.append((entry[1], msg))
        for future, msg in answered:
            if msg["ok"]:
                future.set_result(msg["result"])
            else:
                future.set_exception(EngineError(msg["error"]["code"], msg["error"]["message"]))
        return events

    def _restart(self, slot: _Slot, process) -> None:
        process.join(1.0)
        with self._lock:
            if self._closing:
                return
            failed = [rid for rid, (index, _) in self._pending.items() if index == slot.index]
            futures = [self._pending.pop(rid)[1] for rid in failed]
            slot.outbox.put(_STOP_SENDER)
            slot.outbox = _Outbox(self._lock)  # commands queued for the dead worker are dropped
            slot.owed.clear()
            slot.process = None  # down until relaunched
            self.restarts += 1
            crashed_quickly = time.monotonic() - slot.started_at < RESTART_BACKOFF_SECONDS * 5
        log.error("engine worker %s exited with code %s; restarting it (%d requests failed)",
                  process.pid, process.exitcode, len(futures))
        for future in futures:
            future.set_exception(EngineError(
                "engine_restarted",
                "The memory engine stopped unexpectedly and was restarted; please try again.",
            ))
        if crashed_quickly:  # do not spin if it dies on start
            time.sleep(RESTART_BACKOFF_SECONDS)
        with self._lock:
            if not self._closing:
                self._launch(slot)

    def _watch(self) -> None:
        """Every fraction of `hang_seconds`, kill the workers that hang."""
        while not self._stop_watching.wait(min(1.0, self.hang_seconds / 4)):
            for slot in self._slots:
                self._kill_if_hung(slot)

    def _kill_if_hung(self, slot: _Slot) -> None:
        """SIGKILL the slot's worker if it has owed an answer, and said nothing, for longer
        than the most patient allowance among what it owes. Silence counts from its last
        message, so a long queue of quick commands is progress, not a hang. The EOF that
        follows sends the slot through `_restart`, which also reaps the process."""
        with self._lock:
            if self._closing or not slot.owed or slot.process is None:
                return
            oldest_sent = next(iter(slot.owed.values()))[0]  # dicts keep submission order
            silent = time.monotonic() - max(slot.heard_at, oldest_sent)
            allowance = max(allowed for _, allowed in slot.owed.values())
            if not slot.answered:
                allowance = max(allowance, STARTUP_SECONDS)
            if silent <= allowance:
                return
            process, owed = slot.process, len(slot.owed)
            slot.owed.clear()  # killed once; `_restart` fails the futures
        log.error("engine worker %s owes %d answers and has been silent for %.1f s; killing it",
                  process.pid, owed, silent)
        process.kill()
