"""Footprint per user: RAM of a loaded and of an evicted user, disk per user, and the cost
of many registered users.

RAM is read from a fresh engine-worker process that runs the real worker code
(`webapp.engine.worker.Engines`): its resident size with no user loaded, with N users who
each stored some messages (at most `--max-resident` of them stay loaded, as in a worker),
and after housekeeping consolidated, saved and evicted them all and handed the freed heap
back to the OS, as a deployed worker does.
Disk per user is the growth of the database and of the network snapshots. The registered
users check creates `--registered` accounts (rows only, as sign-up does) and times login
lookups among them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import tempfile
import time
from pathlib import Path

from tqdm import tqdm
from werkzeug.security import generate_password_hash

from webapp.bench.measure import directory_bytes, load_average, percentile, rss_bytes
from webapp.bench.recall import ChatText
from webapp.engine import protocol
from webapp.engine.heap import release_free_memory
from webapp.engine.worker import Engines, WorkerSettings
from webapp.memory import Store

GOAL_IDLE_USER_BYTES = 1_000_000
LOOKUPS = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=100, help="users loaded, then evicted")
    parser.add_argument("--messages", type=int, default=20, help="messages each user stores")
    parser.add_argument("--registered", type=int, default=10_000,
                        help="accounts created for the registered-users check")
    parser.add_argument("--max-resident", type=int, default=None,
                        help="memories a worker keeps loaded (default: all the users)")
    parser.add_argument("--seed", type=int, default=0)


def _database_bytes(store: Store) -> int:
    """Bytes of the database's pages in use, with the write-ahead log folded in (the log's
    size is not per user) and free pages left out (a new database has some, from indexes
    its migrations dropped, which new rows fill before the file grows)."""
    with sqlite3.connect(store.path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
    return (pages - free) * size


def _worker_footprint(directory: str, users: int, messages: int, max_resident: int, seed: int,
                      results) -> None:
    """Child process: the engine worker's RSS with users loaded and evicted, and disk."""
    settings = WorkerSettings(db_path=str(Path(directory) / "memory.db"),
                              network_dir=str(Path(directory) / "networks"), idle_seconds=0.0,
                              max_resident=max_resident)
    store = Store(settings.db_path)
    user_ids = [store.create_user(f"user{i}", "-") for i in range(users + 1)]
    engines = Engines(settings, send_event=lambda event: None)
    text = ChatText(seed)
    requests = iter(range(1, 10**9))

    def store_messages(user_id: int) -> None:
        for _ in range(messages):
            cmd = protocol.command(next(requests), user_id, "store", {"text": text.sentence()})
            reply = engines.handle(cmd)
            if not reply["ok"]:
                raise RuntimeError(reply["error"]["message"])

    def evict_all() -> None:  # what an idle worker does (the heap is trimmed last)
        while engines.housekeeping():
            pass

    store_messages(user_ids[0])  # imports, JIT and caches warm before the baseline
    evict_all()
    base, db_base = rss_bytes(), _database_bytes(store)
    for user_id in tqdm(user_ids[1:], desc="loading users", unit="user", leave=False):
        store_messages(user_id)
    loaded, resident = rss_bytes(), len(engines.memories)
    network_bytes = sum(m.network.net.nbytes() for m in engines.memories.values())
    evict_all()
    results.put({
        "base": base, "loaded": loaded, "evicted": rss_bytes(),
        "heap_trimmed": release_free_memory(),  # False off glibc: then RSS stays high
        "resident_loaded": resident, "resident_evicted": len(engines.memories),
        "network_array_bytes": network_bytes,
        "db_bytes": _database_bytes(store) - db_base,
        "network_file_bytes": directory_bytes(settings.network_dir),
        "network_files": len(list(Path(settings.network_dir).glob("*.npz"))),
    })


def measure_worker(users: int, messages: int, max_resident: int, seed: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as directory:
        child = ctx.Process(target=_worker_footprint,
                            args=(directory, users, messages, max_resident, seed, results))
        child.start()
        found = results.get()
        child.join()
    resident = found["resident_loaded"]
    return {
        "users": users, "messages_per_user": messages, "max_resident": max_resident,
        "worker_rss_base_bytes": found["base"],
        "worker_rss_loaded_bytes": found["loaded"],
        "worker_rss_evicted_bytes": found["evicted"],
        "heap_trimmed": found["heap_trimmed"],
        "resident_memories_loaded": resident,
        "resident_memories_evicted": found["resident_evicted"],
        "ram_per_loaded_user_bytes": round((found["loaded"] - found["base"]) / resident),
        "network_arrays_per_user_bytes": round(found["network_array_bytes"] / resident),
        "ram_per_idle_user_bytes": round((found["evicted"] - found["base"]) / users),
        "disk_db_per_user_bytes": round(found["db_bytes"] / users),
        "disk_network_per_user_bytes": round(found["network_file_bytes"] / users),
        "network_files": found["network_files"],
    }


def measure_registered(count: int) -> dict:
    """Create `count` accounts (a real password hash each, computed once) and time lookups."""
    password_hash = generate_password_hash("a password of usual length")
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "memory.db")
        empty = _database_bytes(store)
        began = time.perf_counter()
        for i in tqdm(range(count), desc="registering", unit="user", leave=False):
            store.create_user(f"user{i:06d}", password_hash)
        create_seconds = time.perf_counter() - began
        lookups = []
        for i in range(LOOKUPS):
            began = time.perf_counter()
            store.get_user(f"user{(i * 7919) % count:06d}")
            lookups.append((time.perf_counter() - began) * 1000)
        result = {
            "registered_users": store.count_users(),
            "register_ms_mean": round(create_seconds * 1000 / count, 3),
            "login_lookup_ms_p50": percentile(lookups, 50),
            "login_lookup_ms_p95": percentile(lookups, 95),
            "db_bytes_per_registered_user": round((_database_bytes(store) - empty) / count),
        }
        store.close()
    return result


def run(args: argparse.Namespace) -> dict:
    load = load_average()
    worker = measure_worker(args.users, args.messages, args.max_resident or args.users,
                            args.seed)
    registered = measure_registered(args.registered)
    disk_per_active = worker["disk_db_per_user_bytes"] + worker["disk_network_per_user_bytes"]
    return {
        **worker, **registered, "load": load,
        "goal_idle_user_bytes": GOAL_IDLE_USER_BYTES,
        "disk_for_registered_if_all_active_bytes": disk_per_active * args.registered,
    }


def format_report(result: dict) -> str:
    mb = 1e6
    return "\n".join([
        f"{result['users']} users x {result['messages_per_user']} messages in one engine worker, "
        f"at most {result['max_resident']} loaded (load {result['load'][0]}):",
        f"  RSS base {result['worker_rss_base_bytes'] / mb:.1f} MB, loaded "
        f"{result['worker_rss_loaded_bytes'] / mb:.1f} MB "
        f"({result['resident_memories_loaded']} resident), evicted "
        f"{result['worker_rss_evicted_bytes'] / mb:.1f} MB",
        f"  per loaded user {result['ram_per_loaded_user_bytes'] / mb:.2f} MB, per idle user "
        f"{result['ram_per_idle_user_bytes'] / mb:.3f} MB (heap trimmed: "
        f"{result['heap_trimmed']})",
        f"  disk per user: database {result['disk_db_per_user_bytes'] / 1e3:.0f} kB, network "
        f"{result['disk_network_per_user_bytes'] / 1e3:.0f} kB",
        f"{result['registered_users']} registered users: {result['register_ms_mean']} ms each, "
        f"login lookup p95 {result['login_lookup_ms_p95']} ms, "
        f"{result['db_bytes_per_registered_user']} bytes each",
    ])
