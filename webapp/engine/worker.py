"""One engine worker process: owns the Memory objects of the users routed to it.

The worker serves commands one at a time from its pipe (see protocol.py). When no command
has come for a while it does its housekeeping: consolidate (and so snapshot) the memories
that learned something new, in bounded chunks so a new command waits at most one chunk,
and evict the ones nobody used for `idle_seconds` (saved first; they reload on demand),
then hand the freed heap back to the OS. At most `max_resident` memories stay loaded: the
least recently used one is saved and evicted to make room, so a worker's RAM is bounded
whatever the number of active users. Spikes recorded while storing or recalling go back
as `spikes` events right away.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection

from webapp.engine import protocol
from webapp.engine.frames import encode_frames
from webapp.engine.heap import release_free_memory
from webapp.memory import Memory, MemoryInputError, Store

log = logging.getLogger(__name__)

LOADED_USER_BYTES = 2_500_000  # RAM of one loaded memory, measured 2.0 MB (bench footprint)
RESIDENT_RAM_SHARE = 4  # loaded memories of all workers may take 1/4 of the RAM


def default_max_resident() -> int:
    """`SORNMEMORY_MAX_RESIDENT`, else what a quarter of the RAM holds, shared by one
    worker per CPU (the default number of workers)."""
    configured = os.environ.get("SORNMEMORY_MAX_RESIDENT")
    if configured:
        return max(1, int(configured))
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # the platform does not say
        return 256
    return max(16, ram // RESIDENT_RAM_SHARE // (os.cpu_count() or 1) // LOADED_USER_BYTES)


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """Picklable settings every worker starts with."""

    db_path: str
    network_dir: str
    idle_seconds: float = 600.0  # evict a memory unused this long
    quiet_seconds: float = 3.0  # no command this long -> housekeeping
    consolidate_steps: int = 2000  # replay steps per housekeeping chunk
    max_resident: int = dataclasses.field(default_factory=default_max_resident)


class Engines:
    """The memories one worker holds, keyed by user id, and the commands on them."""

    def __init__(self, settings: WorkerSettings, send_event):
        self.settings = settings
        self.store = Store(settings.db_path)
        self.send_event = send_event
        self.memories: dict[int, Memory] = {}
        self.last_used: dict[int, float] = {}  # least recently used first
        self.unconsolidated: set[int] = set()
        self.heap_to_trim = False  # memories were evicted since the heap was last trimmed

    def memory(self, user_id: int) -> Memory:
        if user_id not in self.memories:
            while len(self.memories) >= max(1, self.settings.max_resident):
                self.evict(next(iter(self.last_used)))
            self.memories[user_id] = Memory(self.store, user_id, self.settings.network_dir)
        self.last_used.pop(user_id, None)
        self.last_used[user_id] = time.monotonic()  # re-inserted: dict order is LRU order
        return self.memories[user_id]

    def evict(self, user_id: int) -> None:
        """Save a memory and drop it; it reloads from disk on the user's next command."""
        self._quietly(self.memories.pop(user_id).save)
        del self.last_used[user_id]
        self.heap_to_trim = True

    def handle(self, cmd: dict) -> dict:
        request_id, user_id, op, args = cmd["id"], cmd["user_id"], cmd["op"], cmd["args"]
        try:
            result = getattr(self, "op_" + op)(user_id, **args)
        except MemoryInputError as exc:
            return protocol.failure(request_id, "bad_input", str(exc))
        except Exception:  # one bad command must not take the worker down
            log.error("engine command %s failed:\n%s", op, traceback.format_exc())
            message = f"The memory engine failed on {op}."
            return protocol.failure(request_id, "engine_error", message)
        return protocol.success(request_id, result)

    def spike_sink(self, user_id: int, spikes: bool):
        if not spikes:
            return None

        def on_spikes(first_step, recording):
            for frame in encode_frames(int(first_step), recording):
                self.send_event(protocol.spikes_event(user_id, frame))

        return on_spikes

    # --- operations (names match protocol.OPS) ---------------------------------------

    def op_store(self, user_id, text, spikes=False, **kwargs) -> dict:
        mem = self.memory(user_id)
        episode_id = mem.store(text, on_spikes=self.spike_sink(user_id, spikes), **kwargs)
        self.unconsolidated.add(user_id)
        return {"episode_id": int(episode_id)}

    def op_recall(self, user_id, query, k=10, method="hybrid", spikes=False) -> dict:
        mem = self.memory(user_id)
        hits = mem.recall(query, k=k, method=method, on_spikes=self.spike_sink(user_id, spikes))
        return {"query_tokens": list(mem.query_tokens(query)),
                "recalled": [jsonable(hit.to_dict()) for hit in hits]}

    def op_delete(self, user_id, episode_id) -> dict:
        return {"deleted": bool(self.memory(user_id).delete(episode_id))}

    def op_export(self, user_id) -> dict:
        return self.memory(user_id).export()

    def op_import(self, user_id, data) -> dict:
        imported = self.memory(user_id).import_(data)
        self.unconsolidated.add(user_id)
        return {"imported": int(imported)}

    def op_stats(self, user_id) -> dict:
        mem = self.memory(user_id)
        sizes = {"neurons_e": mem.network.config.n_e, "neurons_i": mem.network.config.n_i}
        return jsonable({**mem.stats(), **sizes})

    # --- housekeeping ------------------------------------------------------------------

    def housekeeping(self) -> bool:
        """One bounded chunk of idle work; False when there is nothing left to do."""
        if self.unconsolidated:
            user_id = self.unconsolidated.pop()
            if user_id in self.memories:  # consolidating also snapshots the network
                self._quietly(self.memories[user_id].consolidate,
                              max_steps=self.settings.consolidate_steps)
            return True
        oldest = next(iter(self.last_used.items()), None)
        if oldest is not None and time.monotonic() - oldest[1] > self.settings.idle_seconds:
            self.evict(oldest[0])
            return True
        if self.heap_to_trim:  # once the evictions are done, not after each one
            release_free_memory()
            self.heap_to_trim = False
            return True
        return False

    def save_all(self) -> None:
        for mem in self.memories.values():
            self._quietly(mem.save)

    @staticmethod
    def _quietly(fn, **kwargs) -> None:
        try:
            fn(**kwargs)
        except Exception:
            log.error("engine housekeeping failed:\n%s", traceback.format_exc())


def jsonable(value):
    """Plain JSON types only (numpy scalars and tuples become numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


MAX_PASSED_SECONDS = 2.0  # a command waiting this long is served next, recall or not


def next_command(pending: deque, now: float) -> dict:
    """Recalls first: a user waits on them before the reply can start, while stores run
    after the reply was shown. A recall never passes an earlier command of its own user
    (so it sees what that user stored before), nor one that has waited too long already.
    `pending` holds (arrival time, command) pairs in arrival order."""
    if now - pending[0][0] < MAX_PASSED_SECONDS:
        earlier_users = set()
        for index, (_, cmd) in enumerate(pending):
            if cmd["op"] == "recall" and cmd["user_id"] not in earlier_users:
                del pending[index]
                return cmd
            earlier_users.add(cmd["user_id"])
    return pending.popleft()[1]


def run_worker(conn: Connection, settings: WorkerSettings) -> None:
    """Process entry point: serve commands until the pipe closes or a None arrives."""
    # The web process decides when engines stop (Ctrl-C reaches the whole process group,
    # a service manager may TERM it): finish, save, and exit when our pipe says so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="engine %(process)d: %(message)s")
    engines = Engines(settings, conn.send)
    pending: deque = deque()  # (arrival time, command) received, not yet served
    recalls = 0  # recalls among them: without any, the queue is served in order, in O(1)
    last_command = time.monotonic()
    busy = False
    while True:
        quiet = time.monotonic() - last_command >= settings.quiet_seconds
        wait = 0 if pending or (busy and quiet) else 1.0
        try:
            while conn.poll(wait):  # take in everything that has arrived
                cmd = conn.recv()
                if cmd is None:
                    raise EOFError
                pending.append((time.monotonic(), cmd))
                recalls += cmd["op"] == "recall"
                wait = 0
        except (EOFError, OSError):
            break
        if pending:
            cmd = next_command(pending, time.monotonic()) if recalls else pending.popleft()[1]
            recalls -= cmd["op"] == "recall"
            try:
                conn.send(engines.handle(cmd))
            except (BrokenPipeError, OSError):  # the web process is gone
                break
            last_command = time.monotonic()
            busy = True
        elif quiet:
            busy = engines.housekeeping()
    engines.save_all()
