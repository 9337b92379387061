"""The SQLite store: users, conversations, messages, episodes and the inverted index.

All SQL of the project lives here, behind one connection factory (`Store._connection`),
so a move to PostgreSQL touches one module. Statements are portable SQL (`ON CONFLICT`,
no SQLite functions); only the DDL in `_MIGRATIONS` uses SQLite's `WITHOUT ROWID`.

Every query that touches user data has `user_id = ?` in its WHERE clause: there is no
statement that can return another user's row, whatever ids a caller passes.

The inverted index is our own postings table: for each (user, token) a few blocks of
up to `BLOCK_SIZE` postings (episode id, term count, episode length) packed as one
BLOB per block. A query reads one row per block of its tokens, so recall costs
grow with the postings of the query's tokens, never with a scan of the episodes, and
an idle user's index stays on disk.

A store writes no postings: a user's newest episodes, those after `indexed_seq` in the
user's `memory_totals` row (the "tail", at most `TAIL_POSITIONS` positions), are read
from their `tokens` column by every postings read, in the same snapshot as the blocks,
and a write merges a user's tail into the blocks once it spans `TAIL_POSITIONS`. A
group commit of many users' stores thus dirties few pages per user (its episode row, the
indexes, its totals), and the postings of a user's tail are written in one go, on the
pages of that user's blocks, instead of a block row per token per store.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import struct
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from webapp.memory.tokenizer import token_id

log = logging.getLogger(__name__)

BLOCK_SIZE = 128
TAIL_POSITIONS = 32  # positions a user's unindexed tail spans before a write merges it
WRITE_WAIT_SECONDS = 10.0  # a write waits this long for its turn, then "database is locked"
TURN_POLL_SECONDS = 0.0002  # how often a writer waiting for its turn looks again
POSTING = np.dtype([("episode", "<i8"), ("tf", "<u2"), ("length", "<u2")])
Block = tuple[int, bytes]  # a postings block: its first episode id, its packed POSTING entries
_POSTING_STRUCT = struct.Struct("<qHH")  # one POSTING entry, packed without numpy
TOKENS_PER_QUERY = 400  # (user, token) pairs whose last postings block one query reads
ROWS_PER_STATEMENT = 400  # rows one IN (...) list carries

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX conversations_by_user ON conversations(user_id, updated_at);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        status TEXT NOT NULL,
        meta TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(user_id, conversation_id, seq);
    CREATE TABLE episodes (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        conversation_id TEXT,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        tokens TEXT NOT NULL,
        timestamp REAL NOT NULL,
        importance REAL NOT NULL,
        recall_count INTEGER NOT NULL DEFAULT 0,
        last_recalled_at REAL,
        external_id TEXT,
        seq INTEGER NOT NULL,
        trace BLOB
    );
    CREATE INDEX episodes_by_seq ON episodes(user_id, seq);
    CREATE INDEX episodes_by_user ON episodes(user_id, id);
    CREATE INDEX episodes_by_external_id ON episodes(user_id, external_id);
    CREATE INDEX episodes_by_conversation ON episodes(user_id, conversation_id, id);
    CREATE INDEX episodes_by_importance ON episodes(user_id, importance);
    CREATE TABLE postings (
        user_id INTEGER NOT NULL,
        token_id INTEGER NOT NULL,
        first_episode INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (user_id, token_id, first_episode)
    ) WITHOUT ROWID;
    CREATE TABLE memory_totals (
        user_id INTEGER PRIMARY KEY,
        episodes INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        traced INTEGER NOT NULL,
        trace_sum BLOB,
        faded_at REAL
    );
    """,
    # 2: server-side login sessions, so a logout revokes the cookie (keyed by the SHA-256
    # of the session token: a copy of the database holds no usable session)
    """
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL
    );
    CREATE INDEX sessions_by_age ON sessions(created_at);
    """,
    # 3: an external id names at most one episode of a user, so a store retried after its
    # first attempt committed (its worker killed before answering) cannot duplicate it.
    # Twins written before keep their episode; only the first keeps the external id.
    """
    UPDATE episodes SET external_id = NULL WHERE external_id IS NOT NULL AND id > (
        SELECT MIN(twin.id) FROM episodes AS twin
        WHERE twin.user_id = episodes.user_id AND twin.external_id = episodes.external_id);
    DROP INDEX episodes_by_external_id;
    CREATE UNIQUE INDEX episodes_by_external_id ON episodes(user_id, external_id);
    """,
    # 4: a store writes no postings: a user's tail (the episodes after `indexed_seq`) is
    # read from the episodes (see the module docstring); everything stored before is
    # indexed. The sum of the traces counts the indexed episodes only and moves to a table
    # of its own, so that the totals row a group commit rewrites per user is short. Every
    # index of episodes costs a page per user in each group commit, so the ones no query
    # needs go: (user_id, id) orders as (user_id, seq) does, no query looks episodes up by
    # conversation, and only episodes with an external id are looked up by it.
    """
    CREATE TABLE memory_traces (
        user_id INTEGER PRIMARY KEY,
        traced INTEGER NOT NULL,
        trace_sum BLOB NOT NULL
    );
    INSERT INTO memory_traces (user_id, traced, trace_sum)
        SELECT user_id, traced, trace_sum FROM memory_totals WHERE trace_sum IS NOT NULL;
    CREATE TABLE memory_totals_4 (
        user_id INTEGER PRIMARY KEY,
        episodes INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        faded_at REAL,
        indexed_seq INTEGER NOT NULL
    );
    INSERT INTO memory_totals_4 (user_id, episodes, tokens, last_seq, faded_at, indexed_seq)
        SELECT user_id, episodes, tokens, last_seq, faded_at, last_seq FROM memory_totals;
    DROP TABLE memory_totals;
    ALTER TABLE memory_totals_4 RENAME TO memory_totals;
    DROP INDEX episodes_by_user;
    DROP INDEX episodes_by_conversation;
    DROP INDEX episodes_by_external_id;
    CREATE UNIQUE INDEX episodes_by_external_id ON episodes(user_id, external_id)
        WHERE external_id IS NOT NULL;
    """,
    # 5: one index of a user's episodes instead of two. Each costs a store a page per user
    # in a group commit (the most written pages of all); the importance rides along in the
    # (user_id, seq) one, so consolidation still picks the most important episodes from an
    # index (the user's entries, not their rows).
    """
    DROP INDEX episodes_by_importance;
    DROP INDEX episodes_by_seq;
    CREATE INDEX episodes_by_seq ON episodes(user_id, seq, importance);
    """,
    # 6: server settings an admin changes in the app (e.g. whether sign-up is open), kept
    # across restarts; a name without a row has its default.
    """
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]

_USER_COLUMNS = "users.id, username, password_hash, is_admin, users.created_at"
_EPISODE_COLUMNS = (
    "id, conversation_id, role, text, tokens, timestamp, importance, recall_count, "
    "external_id, seq, trace"
)
_INSERTED_EPISODE_COLUMNS = (
    "user_id, conversation_id, role, text, tokens, timestamp, importance, recall_count, "
    "external_id, seq, trace"
)


@dataclass
class NewEpisode:
    """An episode about to be written; `tokens` are the tokenizer's output."""

    text: str
    tokens: list[str]
    role: str = "user"
    conversation_id: str | None = None
    timestamp: float | None = None
    importance: float = 0.5
    recall_count: int = 0
    external_id: str | None = None
    trace: bytes | None = None
    gap: int = 1  # positions after the previous episode (an import keeps deleted gaps)
    duplicate_of: int | None = None  # set when written: its user has its external id already


def _marks(values: list) -> str:
    """The `?, ?, ...` placeholders of an SQL `IN (...)` list for `values`."""
    return ", ".join("?" * len(values))


def _chunks(values: Sequence, size: int) -> Iterator[Sequence]:
    """`values` in slices of at most `size` (SQL statements bind a bounded number)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _now() -> float:
    return time.time()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_row(row: sqlite3.Row) -> dict:
    user = dict(row)
    user["is_admin"] = bool(user["is_admin"])
    return user


def _message_row(row: sqlite3.Row) -> dict:
    message = dict(row)
    message.pop("seq", None)
    message.pop("user_id", None)
    if "meta" in message:
        message["meta"] = json.loads(message["meta"]) if message["meta"] is not None else None
    return message


def _tokens(column: str) -> list[str]:
    """An episode's `tokens` column (space-separated) as the tokenizer's list."""
    return column.split(" ") if column else []


def _episode_row(row: sqlite3.Row) -> dict:
    episode = dict(row)
    episode["tokens"] = _tokens(episode["tokens"])
    return episode


@dataclass
class IndexRead:
    """What a recall reads of a user's index (`Store.read_index`), all in one read
    transaction: the tail is read once for its postings and its traces, and a merge cannot
    fall between two reads (it would count the tail twice, or not at all)."""

    episodes: int  # the user's totals, for BM25
    tokens: int
    blocks: dict[str, list[Block]]  # the postings blocks asked for, the tail's appended
    mean_trace: np.ndarray | None  # the average trace of the episodes (None before one)


class LastAdminError(ValueError):
    """Deleting this account, or taking its admin role, would leave no admin."""


LAST_ADMIN_DELETION = ("The only admin cannot delete their account while other accounts "
                       "exist; make another account admin first.")


def _is_last_admin(conn: sqlite3.Connection, user_id: int) -> bool:
    admins, users = conn.execute(
        "SELECT SUM(CASE WHEN is_admin THEN 1 ELSE 0 END), COUNT(*) FROM users").fetchone()
    admin = conn.execute("SELECT is_admin FROM users WHERE id = ?", (user_id,)).fetchone()
    return bool(admin and admin[0]) and admins == 1 and users > 1


class BatchAborted(sqlite3.OperationalError):
    """A write inside `Store.batch()` failed so that SQLite rolled back the whole batch
    (disk full, I/O error): none of the batch's writes holds."""


class WriteTurn:
    """The writers' turn at the database, handed over as soon as it is free.

    SQLite lets one write transaction at a time; a writer that finds it taken waits in
    SQLite's busy handler, which sleeps 1, 2, 5, 10 ms... between tries, while a group
    commit holds the lock ~3 ms: the lock often lay free while the other engine worker
    slept on. Writers of all processes first take an flock on a file next to the database,
    looking again every TURN_POLL_SECONDS, so a waiter goes on a fraction of a millisecond
    after it is released (the kernel frees it if its holder dies); one that waits
    `wait_seconds` gets SQLite's own error, "database is locked", as it did from the busy
    handler. SQLite's lock still keeps transactions apart: without the file (a read-only
    data directory) writes just take turns the old way. A thread that asks for the turn it
    holds (a write transaction begun inside another) is refused at once, as SQLite refused
    it before: it would wait for itself."""

    def __init__(self, db_path: str, wait_seconds: float = WRITE_WAIT_SECONDS):
        self.wait_seconds = wait_seconds
        self._threads = threading.Lock()  # an flock is per open file, not per thread
        self._holder: int | None = None  # the thread that holds the turn
        self._file = None  # a file object: closed with the Store, unlike a bare descriptor
        try:  # flock needs no write access: an existing file opens on a read-only mount
            fd = os.open(db_path + "-write.lock", os.O_RDONLY | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "rb", buffering=0)
        except OSError as exc:
            log.warning("writes take turns by SQLite's busy handler alone: %s", exc)

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._holder == threading.get_ident():
            raise sqlite3.ProgrammingError(
                "this thread holds the write turn already: a write transaction cannot begin "
                "inside another on the same thread (a programming error, not a busy "
                "database)")
        deadline = time.monotonic() + self.wait_seconds
        if not self._threads.acquire(timeout=self.wait_seconds):
            raise self._locked()
        self._holder = threading.get_ident()
        try:
            if self._file is not None:
                self._take(deadline)
            try:
                yield
            finally:
                if self._file is not None:
                    fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._holder = None
            self._threads.release()

    def _take(self, deadline: float) -> None:
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._locked() from None
                time.sleep(TURN_POLL_SECONDS)

    def _locked(self) -> sqlite3.OperationalError:
        return sqlite3.OperationalError(
            f"database is locked: no turn to write within {self.wait_seconds:g} s")


class Store:
    """One SQLite database (WAL) shared by all users; a connection per thread."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_turn = WriteTurn(self.path)
        self._migrate()

    # -- the connection factory ------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (a memory, an account) are overwritten with zeros, not left
            # readable in free space of the file (docs/MEMORY.md, "Deleting").
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(f"PRAGMA busy_timeout={int(WRITE_WAIT_SECONDS * 1000)}")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write, all or nothing; inside `batch()` a savepoint of the batch's transaction."""
        conn = self._connection()
        if getattr(self._local, "batching", False):
            if not conn.in_transaction:  # an error (disk full, I/O) rolled the batch back
                raise BatchAborted("an earlier write of this batch failed and undid it")
            conn.execute("SAVEPOINT write")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # else SQLite has rolled the whole batch back
                    conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
                raise
            conn.execute("RELEASE write")
            return
        with self._write_turn.held():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that must see one state of the database: a read transaction (or the
        write's, inside one)."""
        conn = self._connection()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run this thread's writes in one transaction: one commit (and fsync) for all of
        them. A write that fails inside is undone alone (a savepoint) and the batch goes
        on, unless SQLite rolled the whole transaction back (disk full, I/O error): then
        every later write and the block's end raise BatchAborted. Nothing of the batch is
        durable before the block ends without an error."""
        conn = self._connection()
        with self._write_turn.held():
            conn.execute("BEGIN IMMEDIATE")
            self._local.batching = True
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.batching = False
            if not conn.in_transaction:
                raise BatchAborted("a write of this batch failed and SQLite rolled it all back")
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:  # e.g. the disk filled: leave no transaction open behind
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every connection this store opened (all threads)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self._transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = row["version"] if row else 0
            if version > len(_MIGRATIONS):
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this code "
                    f"({len(_MIGRATIONS)})"
                )
            for script in _MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(_MIGRATIONS),))
            else:
                conn.execute("UPDATE schema_version SET version = ?", (len(_MIGRATIONS),))

    def schema_version(self) -> int:
        return self._connection().execute("SELECT version FROM schema_version").fetchone()[0]

    # -- users ----------------------------------------------------------------------

    def create_user(self, username: str, password_hash: str, is_admin: bool = False) -> int:
        """Raises ValueError when the username is taken."""
        try:
            with self._transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO users (username, password_hash, is_admin, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (username, password_hash, int(is_admin), _now()),
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"username {username!r} is taken") from exc
        return int(cursor.lastrowid)

    def _user(self, where: str, value: object) -> dict | None:
        row = self._connection().execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE {where}",
            (value,),
        ).fetchone()
        return None if row is None else _user_row(row)

    def get_user(self, username: str) -> dict | None:
        return self._user("username = ?", username)

    def get_user_by_id(self, user_id: int) -> dict | None:
        return self._user("id = ?", user_id)

    def count_users(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def list_users(self) -> list[dict]:
        """Every account, oldest first: id, username, is_admin, created_at (no password hash)."""
        rows = self._connection().execute(
            "SELECT id, username, is_admin, created_at FROM users ORDER BY id").fetchall()
        return [_user_row(row) for row in rows]

    def is_last_admin(self, user_id: int) -> bool:
        """Whether the user is the only admin while other accounts exist (deleting it
        would leave them without one; a server with no accounts left gets its admin from
        the next sign-up)."""
        return _is_last_admin(self._connection(), user_id)

    def set_admin(self, user_id: int, is_admin: bool) -> bool:
        """Make the user an admin, or take it back; False when there is no such user.
        Raises LastAdminError (nothing changed) when taking it from the only admin: unlike
        a deletion, which may empty the server, the account stays and must not be left
        without an admin, even alone."""
        with self._transaction() as conn:
            row = conn.execute("SELECT is_admin FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                return False
            admins = conn.execute("SELECT COUNT(*) FROM users WHERE is_admin").fetchone()[0]
            if row[0] and not is_admin and admins == 1:
                raise LastAdminError("The only admin cannot stop being admin; make another "
                                     "account admin first.")
            conn.execute("UPDATE users SET is_admin = ? WHERE id = ?", (int(is_admin), user_id))
        return True

    def delete_user(self, user_id: int) -> bool:
        """Delete an account and everything of it (episodes, index, totals, messages,
        conversations, sessions, the user row) in one transaction, then empty the WAL into
        the database, so no old page image of the rows stays in either file (with
        secure_delete, freed space is zeroed). False when there is no such user; raises
        LastAdminError (nothing deleted) when it is the last admin of other users."""
        with self._transaction() as conn:
            if _is_last_admin(conn, user_id):
                raise LastAdminError(LAST_ADMIN_DELETION)
            for table in ("postings", "memory_traces", "memory_totals", "episodes",
                          "messages", "conversations", "sessions"):
                conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            deleted = conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0
        self.truncate_wal()
        return deleted

    def truncate_wal(self) -> bool:
        """Checkpoint the WAL into the database and truncate it to zero bytes (waiting
        for readers as for a write); False when a reader kept it from completing."""
        conn = self._connection()
        with self._write_turn.held():
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("%s: the WAL could not be truncated (readers were busy)", self.path)
        return not busy

    def change_password(self, user_id: int, password_hash: str, keep_token: str) -> list[str]:
        """Set a new password hash and end the user's other sessions, in one transaction;
        the session of `keep_token` stays. Returns the ended sessions' token hashes (their
        sockets are found by them)."""
        keep = _token_hash(keep_token)
        with self._transaction() as conn:
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                         (password_hash, user_id))
            ended = [row[0] for row in conn.execute(
                "SELECT token_hash FROM sessions WHERE user_id = ? AND token_hash != ?",
                (user_id, keep))]
            conn.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash != ?",
                         (user_id, keep))
        return ended

    # -- server settings ------------------------------------------------------------

    def get_setting(self, name: str) -> str | None:
        """A server setting's stored value; None when it was never set."""
        row = self._connection().execute(
            "SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else row["value"]

    def set_setting(self, name: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO settings (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    # -- login sessions -------------------------------------------------------------

    def create_session(self, user_id: int, token: str, lifetime: float) -> None:
        """Record a login under `token`; sessions older than `lifetime` seconds (any
        user's) are removed on the way, so the table holds only live ones."""
        now = _now()
        with self._transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE created_at <= ?", (now - lifetime,))
            conn.execute("INSERT INTO sessions (token_hash, user_id, created_at) VALUES (?, ?, ?)",
                         (_token_hash(token), user_id, now))

    def session_user(self, token: str, lifetime: float) -> dict | None:
        """The user a session belongs to; None when the token is unknown, revoked, or
        older than `lifetime` seconds (one primary-key lookup)."""
        row = self._connection().execute(
            f"SELECT {_USER_COLUMNS} FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE token_hash = ? AND sessions.created_at > ?",
            (_token_hash(token), _now() - lifetime),
        ).fetchone()
        return None if row is None else _user_row(row)

    def delete_session(self, token: str) -> bool:
        """Revoke a session; False when there was no such session."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM sessions WHERE token_hash = ?",
                                (_token_hash(token),)).rowcount > 0

    # -- conversations and messages -------------------------------------------------

    def create_conversation(self, user_id: int, title: str) -> str:
        return self.add_messages(user_id, None, [], title=title)[0]

    def list_conversations(self, user_id: int) -> list[dict]:
        rows = self._connection().execute(
            "SELECT id, title, created_at, updated_at FROM conversations WHERE user_id = ? "
            "ORDER BY updated_at DESC, created_at DESC",
            (user_id,),
        )
        return [dict(row) for row in rows]

    def get_conversation(self, user_id: int, conversation_id: str) -> dict | None:
        row = self._connection().execute(
            "SELECT id, title, created_at, updated_at FROM conversations "
            "WHERE user_id = ? AND id = ?",
            (user_id, conversation_id),
        ).fetchone()
        return dict(row) if row else None

    def add_message(
        self,
        user_id: int,
        conversation_id: str,
        role: str,
        text: str,
        status: str = "complete",
        meta: dict | None = None,
    ) -> str:
        """Raises KeyError when the conversation is not this user's."""
        message = {"role": role, "text": text, "status": status, "meta": meta}
        return self.add_messages(user_id, conversation_id, [message])[1][0]

    def add_messages(
        self,
        user_id: int,
        conversation_id: str | None,
        messages: Sequence[dict],
        title: str = "",
    ) -> tuple[str, list[str]]:
        """Messages ({"role", "text", optional "status" and "meta"}) appended in order in ONE
        transaction: all or none, for one fsync (a user's message and the reply being written
        to it, before the ack). `conversation_id` None starts a conversation titled `title`.
        Returns (conversation id, message ids); KeyError when the conversation is not this
        user's."""
        now = _now()
        ids = [uuid.uuid4().hex for _ in messages]
        with self._transaction() as conn:
            if conversation_id is None:
                conversation_id = uuid.uuid4().hex
                conn.execute(
                    "INSERT INTO conversations (id, user_id, title, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (conversation_id, user_id, title, now, now),
                )
            elif not conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE user_id = ? AND id = ?",
                (now, user_id, conversation_id),
            ).rowcount:
                raise KeyError(f"no conversation {conversation_id!r}")
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM messages "
                "WHERE user_id = ? AND conversation_id = ?",
                (user_id, conversation_id),
            ).fetchone()[0]
            for offset, (message_id, message) in enumerate(zip(ids, messages, strict=True), 1):
                meta = message.get("meta")
                conn.execute(
                    "INSERT INTO messages (id, seq, user_id, conversation_id, role, text, "
                    "status, meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (message_id, seq + offset, user_id, conversation_id, message["role"],
                     message["text"], message.get("status", "complete"),
                     None if meta is None else json.dumps(meta), now),
                )
        return conversation_id, ids

    def update_message(
        self,
        user_id: int,
        message_id: str,
        text: str | None = None,
        status: str | None = None,
        meta: dict | None = None,
    ) -> None:
        """Changes only the given fields; raises KeyError when the message is not this user's."""
        changes = {"text": text, "status": status,
                   "meta": None if meta is None else json.dumps(meta)}
        changes = {column: value for column, value in changes.items() if value is not None}
        with self._transaction() as conn:
            exists = conn.execute(
                "SELECT 1 FROM messages WHERE user_id = ? AND id = ?", (user_id, message_id)
            ).fetchone()
            if exists is None:
                raise KeyError(f"no message {message_id!r}")
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                conn.execute(
                    f"UPDATE messages SET {assignments} WHERE user_id = ? AND id = ?",
                    (*changes.values(), user_id, message_id),
                )

    def get_message(self, user_id: int, message_id: str) -> dict | None:
        row = self._connection().execute(
            "SELECT * FROM messages WHERE user_id = ? AND id = ?", (user_id, message_id)
        ).fetchone()
        return _message_row(row) if row else None

    def list_messages(self, user_id: int, conversation_id: str, meta: bool = True) -> list[dict]:
        """In order; `meta=False` leaves out each message's meta (a reply's holds what it
        recalled: kilobytes of JSON that a prompt's history does not need)."""
        columns = "*" if meta else "id, conversation_id, role, text, status, created_at"
        rows = self._connection().execute(
            f"SELECT {columns} FROM messages WHERE user_id = ? AND conversation_id = ? "
            "ORDER BY seq",
            (user_id, conversation_id),
        )
        return [_message_row(row) for row in rows]

    # -- episodes and the index -----------------------------------------------------

    def add_episodes(self, user_id: int, episodes: list[NewEpisode]) -> list[int]:
        """Write one user's episodes and their postings in one transaction; returns their
        ids. An import keeps what the export holds: an episode whose external id the user
        has already is written too, without it (an external id names one episode)."""
        with self._transaction() as conn:
            return _write_episodes(conn, [(user_id, e) for e in episodes], idempotent=False)

    def add_episodes_many(self, items: Sequence[tuple[int, NewEpisode]]) -> list[int]:
        """Group commit: episodes of several users, as (user id, episode) in storing order,
        written in ONE transaction, so a batch pays the fsync and the write lock once;
        all or nothing. Returns their ids. Idempotent on external id, checked inside the
        transaction (and kept by a unique index): an episode whose user already has its
        external id (stored before or earlier in the batch) is not written again, its
        twin's id is returned for it and set as its `duplicate_of`."""
        with self._transaction() as conn:
            return _write_episodes(conn, items, idempotent=True)

    def delete_episode(self, user_id: int, episode_id: int) -> bool:
        """Remove an episode and its postings; False when the user has no such episode."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT seq, tokens, trace FROM episodes WHERE user_id = ? AND id = ?",
                (user_id, episode_id),
            ).fetchone()
            if row is None:
                return False
            tokens = _tokens(row["tokens"])
            totals = _Totals.read(conn, user_id)
            if row["seq"] <= totals.indexed_seq:  # a tail episode is not indexed yet
                _remove_postings(conn, user_id, episode_id, set(tokens))
                if row["trace"] is not None:
                    _add_indexed_traces(conn, user_id, [row["trace"]], -1)
            totals.episodes -= 1
            totals.tokens -= len(tokens)
            totals.write(conn, user_id)
            conn.execute("DELETE FROM episodes WHERE user_id = ? AND id = ?",
                         (user_id, episode_id))
        return True

    def read_index(self, user_id: int, since: dict[str, int]) -> IndexRead:
        """What a recall reads of the user's index, in one read transaction that reads the
        tail once (see IndexRead). The blocks of each token are (first episode, packed
        POSTING entries), in order, from the block that starts at episode since[token] on
        (0: all of them); tokens without such blocks are left out. The last block ends
        with the postings of the user's tail (so it may hold more than BLOCK_SIZE), just
        as a merge appends them, so a caller that keeps the blocks it read rereads only
        the last one: stores and merges only append to it and after it."""
        with self._snapshot() as conn:  # the tail, and the blocks and sum it is not in yet
            totals = _Totals.read(conn, user_id)
            traced, trace_sum = _indexed_traces(conn, user_id)
            tail = list(_tail(conn, user_id, totals.indexed_seq))
            blocks = {token: [(row[0], row[1]) for row in conn.execute(
                "SELECT first_episode, data FROM postings WHERE user_id = ? "
                "AND token_id = ? AND first_episode >= ? ORDER BY first_episode",
                (user_id, token_id(token), first))] for token, first in since.items()}
        for token, entries in _tail_postings(tail, set(since)).items():
            rows = blocks[token]
            start, data = rows.pop() if rows else (_first_episode(entries), b"")
            rows.append((start, data + b"".join(entries)))
        traces = [trace for _, _, trace in tail if trace is not None]
        if traces:
            counts = _trace_counts(traces)
            trace_sum = counts if trace_sum is None else trace_sum + counts
            traced += len(traces)
        return IndexRead(
            episodes=totals.episodes, tokens=totals.tokens,
            blocks={token: rows for token, rows in blocks.items() if rows},
            mean_trace=trace_sum / traced if traced else None)

    def postings(self, user_id: int, tokens: Iterable[str]) -> dict[str, np.ndarray]:
        """Postings (episode, tf, length) of each token that the user's episodes contain."""
        blocks = self.read_index(user_id, dict.fromkeys(tokens, 0)).blocks
        return {token: np.frombuffer(b"".join(data for _, data in rows), dtype=POSTING)
                for token, rows in blocks.items()}

    def mean_trace(self, user_id: int) -> np.ndarray | None:
        """The average network trace of the user's episodes (None before the first)."""
        return self.read_index(user_id, {}).mean_trace

    def totals(self, user_id: int) -> tuple[int, int]:
        """(number of episodes, number of tokens) of the user's memory."""
        totals = _Totals.read(self._connection(), user_id)
        return totals.episodes, totals.tokens

    def episodes_near(self, user_id: int, episode_ids: Iterable[int],
                      width: int) -> list[tuple]:
        """The episodes up to `width` positions before or after the given ones in the
        user's stream (the given ones included), each once, by position, as
        (id, seq, conversation_id, importance, trace) tuples: a recall's candidate pool in
        one query, read as plain tuples because it runs to hundreds of rows."""
        ids = [int(i) for i in episode_ids]
        if not ids:
            return []
        cursor = self._connection().cursor()
        cursor.row_factory = None
        rows = cursor.execute(
            # "+c.user_id": look the ids up by primary key, then check the owner (without
            # it SQLite scans the user's whole (user_id, seq) index).
            "SELECT n.id, n.seq, n.conversation_id, n.importance, n.trace "
            "FROM episodes c JOIN episodes n ON n.user_id = ? "
            "AND n.seq BETWEEN c.seq - ? AND c.seq + ? "
            f"WHERE +c.user_id = ? AND c.id IN ({_marks(ids)})",
            (user_id, width, width, user_id, *ids),
        )
        by_seq = {row[1]: row for row in rows}
        return [by_seq[seq] for seq in sorted(by_seq)]

    def get_episodes(self, user_id: int, episode_ids: Iterable[int]) -> dict[int, dict]:
        ids = [int(i) for i in episode_ids]
        if not ids:
            return {}
        rows = self._connection().execute(
            # "+user_id": look the ids up by primary key (not the user's whole index)
            f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE +user_id = ? "
            f"AND id IN ({_marks(ids)})",
            (user_id, *ids),
        )
        return {row["id"]: _episode_row(row) for row in rows}

    def iter_episodes(self, user_id: int, after_id: int = 0, batch: int = 1000) -> Iterator[dict]:
        """The user's episodes in id order, starting after `after_id`, read in batches.
        A user's positions (seq) grow with the ids, so this walks the (user_id, seq) index:
        down to the last episode up to `after_id`, then up in batches."""
        conn = self._connection()
        row = conn.execute(
            # "+id": find it by walking the user's positions, not every id up to after_id
            "SELECT seq FROM episodes WHERE user_id = ? AND +id <= ? ORDER BY seq DESC LIMIT 1",
            (user_id, after_id),
        ).fetchone()
        after_seq = row[0] if row else 0
        while True:
            rows = conn.execute(
                f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE user_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (user_id, after_seq, batch),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _episode_row(row)
            after_seq = rows[-1]["seq"]

    def stored_already(self, user_id: int,
                       episodes: Sequence[tuple[int | None, float, str, str | None]]
                       ) -> list[bool]:
        """Whether each (id in its export, timestamp, text, external id) is one of the
        user's episodes already: one with that external id, or the episode of that id with
        the same text and time (an export read back into the memory it came from). Looked
        up by index, a few hundred at a time, as an import asks for thousands at once."""
        conn = self._connection()
        external_ids = list({e for _, _, _, e in episodes if e is not None})
        known_ids = set()
        for chunk in _chunks(external_ids, ROWS_PER_STATEMENT):
            known_ids.update(row[0] for row in conn.execute(
                "SELECT external_id FROM episodes WHERE user_id = ? "
                f"AND external_id IN ({_marks(chunk)})", (user_id, *chunk)))
        episode_ids = list({i for i, _, _, _ in episodes if isinstance(i, int)})
        known_episodes = set()
        for chunk in _chunks(episode_ids, ROWS_PER_STATEMENT):
            known_episodes.update(tuple(row) for row in conn.execute(
                "SELECT id, timestamp, text FROM episodes WHERE +user_id = ? "
                f"AND id IN ({_marks(chunk)})", (user_id, *chunk)))
        return [external_id in known_ids or (episode_id, timestamp, text) in known_episodes
                for episode_id, timestamp, text, external_id in episodes]

    def episode_with_external_id(self, user_id: int, external_id: str) -> int | None:
        """The id of this user's episode carrying `external_id`, if any."""
        return _episode_with_external_id(self._connection(), user_id, external_id)

    def last_episode_id(self, user_id: int) -> int:
        row = self._connection().execute(
            "SELECT id FROM episodes WHERE user_id = ? ORDER BY seq DESC LIMIT 1", (user_id,)
        ).fetchone()
        return row[0] if row else 0

    def mark_recalled(self, user_id: int, counts: dict[int, int], when: float) -> None:
        """Add recalls to each episode's count and note when it was last recalled."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE episodes SET recall_count = recall_count + ?, last_recalled_at = ? "
                "WHERE user_id = ? AND id = ?",
                [(n, when, user_id, int(i)) for i, n in counts.items()],
            )

    def rehearse(self, user_id: int, episode_ids: Iterable[int], boost: float) -> int:
        """Raise the importance of the given episodes by `boost` (at most 1)."""
        with self._transaction() as conn:
            return sum(conn.execute(
                "UPDATE episodes SET importance = CASE WHEN importance + ? > 1.0 THEN 1.0 "
                "ELSE importance + ? END WHERE user_id = ? AND id = ?",
                (boost, boost, user_id, int(i)),
            ).rowcount for i in episode_ids)

    def fade(self, user_id: int, now: float, half_life: float, floor: float) -> int:
        """Forgetting: halve every importance above `floor` per `half_life` seconds since
        the last fade (not below `floor`). Waits until the factor is below 0.99, so frequent
        calls cost nothing and the rate does not depend on how often it is called."""
        with self._transaction() as conn:
            totals = _Totals.read(conn, user_id)
            if totals.faded_at is None:
                totals.faded_at = now
                totals.write(conn, user_id)
                return 0
            factor = 0.5 ** ((now - totals.faded_at) / half_life)
            if factor > 0.99:
                return 0
            faded = conn.execute(
                "UPDATE episodes SET importance = CASE WHEN importance * ? < ? THEN ? "
                "ELSE importance * ? END WHERE user_id = ? AND importance > ?",
                (factor, floor, floor, factor, user_id, floor),
            ).rowcount
            totals.faded_at = now
            totals.write(conn, user_id)
            return faded

    def most_important(self, user_id: int, limit: int) -> list[dict]:
        """The user's `limit` most important episodes, the newest first among equals: chosen
        from the user's entries of episodes_by_seq, then only their rows are read."""
        rows = self._connection().execute(
            # "+user_id": the chosen ids are looked up by primary key
            f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE +user_id = ? AND id IN ("
            "SELECT id FROM episodes WHERE user_id = ? ORDER BY importance DESC, id DESC "
            "LIMIT ?) ORDER BY importance DESC, id DESC",
            (user_id, user_id, limit),
        )
        return [_episode_row(row) for row in rows]

    def database_bytes(self) -> int:
        """Size of the database file and its WAL on disk."""
        return sum(Path(p).stat().st_size for p in (self.path, self.path + "-wal")
                   if Path(p).exists())


@dataclass
class _Totals:
    """Per-user running totals kept in one short row (a group commit rewrites one per
    user): counts for BM25, the position of the last episode and of the last indexed one,
    and when importance last faded."""

    episodes: int = 0
    tokens: int = 0
    last_seq: int = 0
    faded_at: float | None = None
    indexed_seq: int = 0  # the episodes after this position are the tail, without postings

    @classmethod
    def read(cls, conn: sqlite3.Connection, user_id: int) -> _Totals:
        return cls.read_many(conn, [user_id])[user_id]

    @classmethod
    def read_many(cls, conn: sqlite3.Connection, user_ids: Iterable[int]) -> dict[int, _Totals]:
        """The totals of each user (fresh ones for a user without a row)."""
        found = {user_id: cls() for user_id in user_ids}
        for chunk in _chunks(list(found), ROWS_PER_STATEMENT):
            for row in conn.execute(
                    "SELECT user_id, episodes, tokens, last_seq, faded_at, indexed_seq "
                    f"FROM memory_totals WHERE user_id IN ({_marks(chunk)})", chunk):
                found[row[0]] = cls(*row[1:])
        return found

    def write(self, conn: sqlite3.Connection, user_id: int) -> None:
        _Totals.write_many(conn, {user_id: self})

    @staticmethod
    def write_many(conn: sqlite3.Connection, totals: dict[int, _Totals]) -> None:
        conn.executemany(
            "INSERT INTO memory_totals (user_id, episodes, tokens, last_seq, faded_at, "
            "indexed_seq) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE "
            "SET episodes = excluded.episodes, tokens = excluded.tokens, "
            "last_seq = excluded.last_seq, faded_at = excluded.faded_at, "
            "indexed_seq = excluded.indexed_seq",
            [(user_id, t.episodes, t.tokens, t.last_seq, t.faded_at, t.indexed_seq)
             for user_id, t in totals.items()],
        )


def _trace_counts(traces: list[bytes]) -> np.ndarray:
    """The sum of network traces (all of one network size), per unit: added up 257 at a
    time in uint16 (257 * 255 fits), 5x faster than in int64 straight away."""
    units = np.frombuffer(b"".join(traces), dtype=np.uint8).reshape(len(traces), -1)
    counts = np.zeros(units.shape[1], dtype="<i8")
    for start in range(0, len(units), 257):
        counts += units[start:start + 257].sum(axis=0, dtype=np.uint16)
    return counts


def _indexed_traces(conn: sqlite3.Connection, user_id: int) -> tuple[int, np.ndarray | None]:
    """(how many, their sum) of the traces of the user's indexed episodes."""
    row = conn.execute("SELECT traced, trace_sum FROM memory_traces WHERE user_id = ?",
                       (user_id,)).fetchone()
    return (0, None) if row is None else (row[0], np.frombuffer(row[1], dtype="<i8"))


def _add_indexed_traces(conn: sqlite3.Connection, user_id: int, traces: list[bytes],
                        sign: int) -> None:
    """Count the given traces in (sign +1) or out of (-1) the user's indexed trace sum."""
    if not traces:
        return
    traced, trace_sum = _indexed_traces(conn, user_id)
    counts = sign * _trace_counts(traces)
    conn.execute(
        "INSERT INTO memory_traces (user_id, traced, trace_sum) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET traced = excluded.traced, "
        "trace_sum = excluded.trace_sum",
        (user_id, traced + sign * len(traces),
         (counts if trace_sum is None else trace_sum + counts).tobytes()))


def _write_episodes(conn: sqlite3.Connection, items: Sequence[tuple[int, NewEpisode]],
                    idempotent: bool) -> list[int]:
    """The body of add_episodes(_many): one read of the users' totals, an insert per
    episode, the merge of the tails grown long enough (see _merge_tails) and one write of
    the totals. An external id its user has already (stored before or earlier in this
    batch) is found by the unique index refusing the insert: a twin is rare (a retry, an
    import into the memory it came from), so a store pays no lookup for it."""
    totals = _Totals.read_many(conn, dict.fromkeys(user_id for user_id, _ in items))
    ids = []
    for user_id, episode in items:
        user_totals = totals[user_id]
        seq = user_totals.last_seq + max(1, int(episode.gap))
        try:
            episode_id = _insert_episode(conn, user_id, episode, seq, episode.external_id)
        except sqlite3.IntegrityError:  # SQLite undid this statement only
            twin = _episode_with_external_id(conn, user_id, episode.external_id)
            if twin is None:
                raise
            if idempotent:
                episode.duplicate_of = twin
                ids.append(twin)
                continue
            episode_id = _insert_episode(conn, user_id, episode, seq, None)
        ids.append(episode_id)
        user_totals.last_seq = seq
        user_totals.episodes += 1
        user_totals.tokens += len(episode.tokens)
    _merge_tails(conn, totals)
    _Totals.write_many(conn, totals)
    return ids


def _episode_with_external_id(conn: sqlite3.Connection, user_id: int,
                              external_id: str | None) -> int | None:
    """The id of the user's episode carrying `external_id`, if any."""
    if external_id is None:
        return None
    row = conn.execute("SELECT id FROM episodes WHERE user_id = ? AND external_id = ?",
                       (user_id, external_id)).fetchone()
    return row[0] if row else None


def _insert_episode(conn: sqlite3.Connection, user_id: int, episode: NewEpisode,
                    seq: int, external_id: str | None) -> int:
    """One row per statement: measured 3x cheaper than a multi-row INSERT ... RETURNING."""
    return int(conn.execute(
        f"INSERT INTO episodes ({_INSERTED_EPISODE_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (user_id, episode.conversation_id, episode.role, episode.text, " ".join(episode.tokens),
         _now() if episode.timestamp is None else float(episode.timestamp),
         float(episode.importance), episode.recall_count, external_id, seq, episode.trace),
    ).lastrowid)


def _tail(conn: sqlite3.Connection, user_id: int, indexed_seq: int) -> Iterator[tuple]:
    """(id, tokens, trace) of the user's episodes after position `indexed_seq` (its tail),
    in order, as plain tuples (every recall reads them)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    return cursor.execute("SELECT id, tokens, trace FROM episodes WHERE user_id = ? AND seq > ? "
                          "ORDER BY seq", (user_id, indexed_seq))


def _tail_postings(tail: Iterable[tuple], wanted: set[str]) -> dict[str, list[bytes]]:
    """The packed POSTING entries of the `wanted` tokens in the tail's (id, tokens, trace)
    rows, in order."""
    entries = defaultdict(list)
    for episode_id, column, _ in tail:
        tokens = _tokens(column)
        for token in wanted.intersection(tokens):
            entries[token].append(_entry(episode_id, tokens, tokens.count(token)))
    return entries


def _entry(episode_id: int, tokens: list[str], tf: int) -> bytes:
    """The packed POSTING entry of an episode for one of its tokens: (episode, term
    count, episode length), capped."""
    return _POSTING_STRUCT.pack(episode_id, min(tf, 65535), min(len(tokens), 65535))


def _first_episode(entries: Sequence[bytes]) -> int:
    """The episode of the first of some packed POSTING entries."""
    return _POSTING_STRUCT.unpack(entries[0])[0]


def _term_counts(tokens: list[str]) -> dict[str, int]:
    """How often each token occurs, in first-seen order (for a short list, 2x faster than
    a Counter)."""
    counts: dict[str, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    return counts


def _merge_tails(conn: sqlite3.Connection, totals: dict[int, _Totals]) -> None:
    """Index each tail that spans `TAIL_POSITIONS` or more (of the users of `totals`,
    which record it): its postings, with one _append_postings for all, and its traces."""
    postings: dict[tuple[int, int], list[bytes]] = {}
    for user_id, user_totals in totals.items():
        if user_totals.last_seq - user_totals.indexed_seq < TAIL_POSITIONS:
            continue
        by_token: dict[str, list[bytes]] = defaultdict(list)
        traces = []
        for episode_id, column, trace in _tail(conn, user_id, user_totals.indexed_seq):
            tokens = _tokens(column)
            for token, tf in _term_counts(tokens).items():
                by_token[token].append(_entry(episode_id, tokens, tf))
            if trace is not None:
                traces.append(trace)
        postings.update(((user_id, token_id(token)), new) for token, new in by_token.items())
        _add_indexed_traces(conn, user_id, traces, +1)
        user_totals.indexed_seq = user_totals.last_seq
    _append_postings(conn, postings)


def _remove_postings(conn: sqlite3.Connection, user_id: int, episode_id: int,
                     tokens: set[str]) -> None:
    """Take an episode out of the blocks of its tokens (a block rekeyed by its new first
    episode, or gone when it held only this one)."""
    for token in tokens:
        block = conn.execute(
            "SELECT first_episode, data FROM postings WHERE user_id = ? AND token_id = ? "
            "AND first_episode <= ? ORDER BY first_episode DESC LIMIT 1",
            (user_id, token_id(token), episode_id),
        ).fetchone()
        entries = np.frombuffer(block["data"], dtype=POSTING)
        kept = entries[entries["episode"] != episode_id]
        key = (user_id, token_id(token), block["first_episode"])
        conn.execute("DELETE FROM postings WHERE user_id = ? AND token_id = ? "
                     "AND first_episode = ?", key)
        if len(kept):
            conn.execute("INSERT INTO postings (user_id, token_id, first_episode, data) "
                         "VALUES (?, ?, ?, ?)",
                         (user_id, key[1], int(kept["episode"][0]), kept.tobytes()))


def _append_postings(conn: sqlite3.Connection,
                     entries: dict[tuple[int, int], list[bytes]]) -> None:
    """Append new postings (packed, in episode order) for many (user, token id) pairs at
    once: one query reads the last block of each, one batch of updates fills those blocks
    and one batch of inserts adds the blocks that overflow."""
    keys = list(entries)
    last_blocks = {}
    for start in range(0, len(keys), TOKENS_PER_QUERY):
        chunk = keys[start:start + TOKENS_PER_QUERY]
        last_blocks.update(((row[0], row[1]), (row[2], row[3])) for row in conn.execute(
            # Joined from a list of the pairs so that each finds its last block by primary
            # key (a plain IN list makes SQLite read every block of every token).
            f"WITH wanted (user_id, token_id) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))}) "
            "SELECT wanted.user_id, wanted.token_id, p.first_episode, p.data FROM wanted "
            "JOIN postings AS p ON p.user_id = wanted.user_id AND p.token_id = wanted.token_id "
            "AND p.first_episode = (SELECT MAX(first_episode) FROM postings "
            "WHERE user_id = wanted.user_id AND token_id = wanted.token_id)",
            [value for key in chunk for value in key],
        ))
    updates, inserts = [], []
    for key, new in entries.items():
        first, data = last_blocks.get(key, (None, b""))
        room = 0 if first is None else max(0, BLOCK_SIZE - len(data) // POSTING.itemsize)
        if room:
            updates.append((data + b"".join(new[:room]), *key, first))
        if len(new) > room:
            inserts.extend((*key, _first_episode(block), b"".join(block))
                           for block in _chunks(new[room:], BLOCK_SIZE))
    conn.executemany("UPDATE postings SET data = ? WHERE user_id = ? AND token_id = ? "
                     "AND first_episode = ?", updates)
    conn.executemany("INSERT INTO postings (user_id, token_id, first_episode, data) "
                     "VALUES (?, ?, ?, ?)", inserts)
