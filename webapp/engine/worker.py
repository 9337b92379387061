"""One engine worker process: owns the Memory objects of the users routed to it.

The worker serves commands one at a time from its pipe (see protocol.py), except stores:
those queued together are learned one by one and written in one transaction (group
commit, `StoreBatch`), then answered in one frame. When no command has come for a while
it does its housekeeping: consolidate (and so snapshot) the memories that learned
something new, in bounded chunks so a new command waits at most one chunk, and evict the
ones nobody used for `idle_seconds` (saved first; they reload on demand), then hand the
freed heap back to the OS. At most `max_resident` memories stay loaded: the least
recently used one is saved and evicted to make room, so a worker's RAM is bounded
whatever the number of active users. Spikes recorded while storing or recalling go back
as `spikes` events right away.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import select
import signal
import tempfile
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection

from webapp.engine import protocol
from webapp.engine.frames import encode_frames
from webapp.engine.heap import release_free_memory
from webapp.memory import Memory, MemoryInputError, Store, commit_stores, learn_stores
from webapp.memory.network import EpisodeNetwork, SpikeCallback, remove_snapshots
from webapp.memory.store import LAST_ADMIN_DELETION, LastAdminError, NewEpisode

log = logging.getLogger(__name__)

# A batch allocates thousands of small containers that die once it is answered. Collecting
# young objects every 700 net allocations (Python's default) walked and promoted them
# several times per batch: 1.9 us of a worker's CPU per store (bench users, 100 users); at
# 20,000 most are freed by reference counting first, and collections all but stop.
GC_YOUNG_THRESHOLD = 20_000
LOADED_USER_BYTES = 2_500_000  # RAM of one loaded memory, measured 2.0 MB (bench footprint)
RESIDENT_RAM_SHARE = 4  # loaded memories of all workers may take 1/4 of the RAM
Prepared = tuple[Memory, NewEpisode, SpikeCallback | None]  # a store ready to be learned


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
    batch_stores: int = 64  # group commit: at most this many stores per transaction
    batch_steps: int = 512  # ... and at most about this many network steps (~5 ms)


class UnknownUserError(LookupError):
    """A command for a user id with no account (deleted while the command was on its way)."""


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
            if self.store.get_user_by_id(user_id) is None:  # e.g. a turn of a deleted account
                raise UnknownUserError(f"There is no user {user_id}.")
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
        try:
            result = getattr(self, "op_" + cmd["op"])(cmd["user_id"], **cmd["args"])
        except Exception as exc:  # one bad command must not take the worker down
            return failure(cmd, exc)
        return protocol.success(cmd["id"], result)

    def spike_sink(self, user_id: int, spikes: bool):
        if not spikes:
            return None

        def on_spikes(first_step, recording):
            for frame in encode_frames(int(first_step), recording):
                self.send_event(protocol.spikes_event(user_id, frame))

        return on_spikes

    # --- operations (names match protocol.OPS) ---------------------------------------

    def op_store(self, user_id, text, spikes=False, **kwargs) -> dict:
        """One store alone (a batch's are served by StoreBatch)."""
        episode_id = self.memory(user_id).store(
            text, on_spikes=self.spike_sink(user_id, spikes), **kwargs)
        return self.stored(user_id, episode_id)

    def stored(self, user_id: int, episode_id: int) -> dict:
        """The result of a committed store; the memory is due for consolidation."""
        self.unconsolidated.add(user_id)
        return {"episode_id": int(episode_id)}

    def prepare_store(self, user_id, text, spikes=False, **kwargs) -> Prepared:
        """A store validated for learning (alone, or with others: see StoreBatch)."""
        mem = self.memory(user_id)
        return mem, mem.prepare_store(text, **kwargs), self.spike_sink(user_id, spikes)

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
        counts = self.memory(user_id).import_(data)
        self.unconsolidated.add(user_id)
        return counts

    def op_delete_account(self, user_id) -> dict:
        """Drop the user's memory unsaved (nothing re-saves it: housekeeping sees only
        loaded memories, and `memory` loads none for a user that is gone), delete its
        network snapshots, then every row of the user (Store.delete_user). Files first: if
        the worker dies in between, the account still exists, its network replays from its
        episodes, and the deletion can be asked for again. So the only admin of other
        accounts is refused before anything goes (the rows' transaction checks it again)."""
        if self.store.is_last_admin(user_id):
            raise LastAdminError(LAST_ADMIN_DELETION)
        self.memories.pop(user_id, None)
        self.last_used.pop(user_id, None)
        self.unconsolidated.discard(user_id)
        self.heap_to_trim = True
        files = remove_snapshots(self.settings.network_dir, user_id)
        return {"deleted": self.store.delete_user(user_id), "snapshots_removed": files}

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


def failure(cmd: dict, exc: Exception) -> dict:
    """The reply to a command that raised: the user's input, or (logged) our fault."""
    if isinstance(exc, MemoryInputError):
        return protocol.failure(cmd["id"], "bad_input", str(exc))
    if isinstance(exc, LastAdminError):
        return protocol.failure(cmd["id"], "last_admin", str(exc))
    if isinstance(exc, UnknownUserError):
        return protocol.failure(cmd["id"], "unknown_user", str(exc))
    log.error("engine command %s failed:\n%s", cmd["op"],
              "".join(traceback.format_exception(exc)))
    return protocol.failure(cmd["id"], "engine_error", f"The memory engine failed on {cmd['op']}.")


class StoreBatch:
    """Store commands served together (group commit): validated as they join, then learned
    together (one compiled call steps all their networks: learn_stores), written in ONE
    transaction, and only then answered, so nothing acknowledged can be lost. One fsync
    and one wait for SQLite's write lock per batch instead of per store."""

    def __init__(self, engines: Engines):
        self.engines = engines
        self.commands: list[dict] = []
        self.prepared: list[tuple[dict, Prepared]] = []
        self.users: set[int] = set()  # whose memories take part in this batch
        self.steps = 0  # network steps learning the batch will take
        self.replies: dict[int, dict] = {}  # request id -> reply, for the refused ones

    def __len__(self) -> int:
        return len(self.commands)

    def accepts(self, cmd: dict) -> bool:
        """Whether the store may join: its memory must not evict one of the batch's (a
        memory holding learned, unwritten episodes must not be saved)."""
        return (cmd["user_id"] in self.engines.memories
                or len(self.users) < self.engines.settings.max_resident)

    def add(self, cmd: dict) -> None:
        self.commands.append(cmd)
        self.users.add(cmd["user_id"])  # its memory is loaded even if the store is refused
        try:
            prepared = self.engines.prepare_store(cmd["user_id"], **cmd["args"])
        except Exception as exc:
            self.replies[cmd["id"]] = failure(cmd, exc)
            return
        self.prepared.append((cmd, prepared))
        self.steps += EpisodeNetwork.steps_to_learn(prepared[1].tokens)

    def commit(self) -> list[dict]:
        """Learn and write the stores at once; the replies of all commands, in order. If
        learning or the transaction fails, each store is retried on its own (learned and
        written alone), so only a bad one fails."""
        try:
            learn_stores([prepared for _, prepared in self.prepared])
            ids = commit_stores([(memory, episode) for _, (memory, episode, _) in self.prepared])
        except Exception:  # every memory of the batch is back to its stored state
            log.error("a group commit failed, retrying one by one:\n%s",
                      traceback.format_exc())
            for cmd, _ in self.prepared:
                self.replies[cmd["id"]] = self.engines.handle(cmd)
        else:
            for (cmd, _), episode_id in zip(self.prepared, ids, strict=True):
                self.replies[cmd["id"]] = protocol.success(
                    cmd["id"], self.engines.stored(cmd["user_id"], episode_id))
        return [self.replies[cmd["id"]] for cmd in self.commands]


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
LOOK_EVERY_SECONDS = 0.0002  # while gathering a batch, poll the pipe at most this often


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


class Inbox:
    """The commands received from the web process and not yet served, in arrival order."""

    def __init__(self, conn: Connection):
        self.conn = conn
        # Polled often (see catch_up): a poll object is made once, where conn.poll builds
        # a selector on each call (measured ~2.5 % of a worker's CPU under load).
        self._readable = select.poll()
        self._readable.register(conn.fileno(), select.POLLIN)
        self.pending: deque = deque()  # (arrival time, command)
        self.recalls = 0  # recalls among them: without any, the queue is served in order
        self.closed = False  # the web process said stop, or is gone
        self.looked_at = 0.0  # when the pipe was last polled

    def __bool__(self) -> bool:
        return bool(self.pending)

    def receive(self, wait: float) -> None:
        """Take in everything that has arrived, waiting up to `wait` s for the first."""
        try:
            while self._readable.poll(wait * 1000):  # milliseconds
                arrived = time.monotonic()
                for cmd in protocol.unpack(self.conn.recv_bytes()):
                    if cmd is None:
                        self.closed = True
                        return
                    self.pending.append((arrived, cmd))
                    self.recalls += cmd["op"] == "recall"
                wait = 0
        except (EOFError, OSError):
            self.closed = True
        self.looked_at = time.monotonic()

    def catch_up(self) -> None:
        """Take in what has arrived, if nothing is left to serve or the pipe was last polled
        `LOOK_EVERY_SECONDS` ago. A batch then polls a few times, not after each store
        (0.56 us a look, 0.10 us not to look; the loop's own work is ~5 us per store), and
        a recall arriving meanwhile still ends it within a fraction of a millisecond."""
        if not self.pending or time.monotonic() - self.looked_at >= LOOK_EVERY_SECONDS:
            self.receive(0)

    def next(self) -> dict:
        """The command to serve next (see next_command; in O(1) when no recall waits)."""
        if self.recalls:
            cmd = next_command(self.pending, time.monotonic())
            self.recalls -= cmd["op"] == "recall"
            return cmd
        return self.pending.popleft()[1]

    def next_store(self) -> dict | None:
        """The next command if it is a store that can be served now: not while a recall
        waits (it goes first), and never past another command (per-user order)."""
        if self.recalls or not self.pending or self.pending[0][1]["op"] != "store":
            return None
        return self.pending[0][1]


def serve(engines: Engines, inbox: Inbox) -> list[dict]:
    """Serve the next command and return its reply. A store takes the stores queued right
    behind it along, and those arriving while they are gathered (group commit, at most
    `batch_stores` of them or `batch_steps` steps of learning); all are learned together,
    then written, and answered after their commit."""
    cmd = inbox.next()
    if cmd["op"] != "store":
        return [engines.handle(cmd)]
    batch = StoreBatch(engines)
    batch.add(cmd)
    settings = engines.settings
    while len(batch) < settings.batch_stores and batch.steps < settings.batch_steps:
        inbox.catch_up()
        cmd = inbox.next_store()
        if cmd is None or inbox.closed or not batch.accepts(cmd):
            break
        batch.add(inbox.next())
    return batch.commit()


def warm_up() -> None:
    """Store and recall once in a throwaway memory, so the one-off costs of a fresh process
    (imports, compiled-kernel loading, first network, SQLite) are paid before users come
    and not by the first turns after a start, which would all queue behind them."""
    with tempfile.TemporaryDirectory(prefix="sornmemory-warm-up-") as directory:
        store = Store(os.path.join(directory, "warm-up.sqlite3"))
        try:
            memory = Memory(store, store.create_user("warm-up", "-"), directory)
            memory.store("a first message to learn")
            memory.recall("first message", k=1)
        finally:
            store.close()


def collect_less() -> None:
    """Tune the cyclic garbage collector for serving (see GC_YOUNG_THRESHOLD). What the
    imports and the warm-up left lives as long as the process: frozen, no later collection
    walks it again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run_worker(conn: Connection, settings: WorkerSettings) -> None:
    """Process entry point: serve commands until the pipe closes or a None arrives."""
    # The web process decides when engines stop (Ctrl-C reaches the whole process group,
    # a service manager may TERM it): finish, save, and exit when our pipe says so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="engine %(process)d: %(message)s")
    warm_up()
    engines = Engines(settings, lambda event: conn.send_bytes(protocol.pack([event])))
    inbox = Inbox(conn)
    collect_less()
    last_command = time.monotonic()
    busy = False
    while not inbox.closed:
        quiet = time.monotonic() - last_command >= settings.quiet_seconds
        inbox.receive(0 if inbox or (busy and quiet) else 1.0)
        if inbox.closed:
            break
        if inbox:
            try:
                conn.send_bytes(protocol.pack(serve(engines, inbox)))  # one frame
            except (BrokenPipeError, OSError):  # the web process is gone
                break
            last_command = time.monotonic()
            busy = True
        elif quiet:
            busy = engines.housekeeping()
    engines.save_all()
