"""Many users at once: aggregate user-steps/s when K users, each with their own SORN, store.

A user-step is one step of one user's network. Users are spread over the worker processes
as the engine pool routes them (blake2b of the user id), and every user stores chat
messages back to back for `--seconds`. Two paths are measured:

- `network`: each worker process holds its users' `EpisodeNetwork`s and every user learns
  one episode per round, up to `--batch-stores` networks stepped in one compiled call
  (`learn_together`, as the worker learns a batch), nothing else: the networks' ceiling.
- `pool`: the real path, `EnginePool` -> worker -> the store command (validated; the
  networks of the stores queued together learn in one call, then the SQLite write with
  fsync, index and trace, one transaction for all: group commit), one store in flight
  per user.

Two things make the measurement as unkind as real use, when asked: `--spread-ages`
gives every user a network of its own age (real users' networks are at very different
step counts, and the SORN's random draws depend on the step), saved where the worker loads
it; `--data` stores real chat turns (LoCoMo, as `bench locomo` stores them), which are
longer than the generated messages.

Reports wall-clock rates and the engine processes' CPU time (the VM is shared), with the
load average, for each number of users; for the pool, also the CPU time of this process
(the web side: submitting, pickling, resolving futures), which shares the same cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from tqdm import tqdm

from webapp.bench.figure import png_figure
from webapp.bench.locomo import read_samples, stored_texts
from webapp.bench.measure import cpu_seconds, load_average
from webapp.bench.recall import ChatText
from webapp.engine.pool import EnginePool
from webapp.engine.worker import WorkerSettings
from webapp.memory import Store, tokenize
from webapp.memory.network import EpisodeNetwork, learn_together

GOAL_USER_STEPS_PER_SEC = 200_000  # with 100 users storing at once, on 2 cores
TEXTS = 500  # distinct generated messages, cycled through


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", default="1,10,100,500",
                        help="comma-separated numbers of active users")
    parser.add_argument("--workers", type=int, default=2, help="engine processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed span per point")
    parser.add_argument("--mode", choices=("network", "pool", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread-ages", type=int, default=0, metavar="STEPS",
                        help="age each user's network by a different number of free steps "
                             "below STEPS first, as real users' networks differ (their "
                             "random draws differ too); 0: all new alike")
    parser.add_argument("--data", type=Path, metavar="FILE",
                        help="store the chat turns of this LoCoMo JSON file (as bench locomo "
                             "stores them) instead of generated messages")
    parser.add_argument("--plot", type=Path, help="write the curve to this PNG")
    defaults = WorkerSettings(db_path="", network_dir="")
    parser.add_argument("--batch-stores", type=int, default=defaults.batch_stores,
                        help="pool: most stores a worker writes in one transaction")
    parser.add_argument("--batch-steps", type=int, default=defaults.batch_steps,
                        help="pool: about the most network steps a worker learns in one batch")


def messages(seed: int) -> list[str]:
    """Generated chat messages (the same generator as `bench recall`)."""
    text = ChatText(seed)
    return [text.sentence() for _ in range(TEXTS)]


def chat_turns(path: Path) -> list[str]:
    """Real chat turns: every turn of a LoCoMo file, "<speaker>: <text>" as `bench locomo`
    stores it (longer than the generated messages)."""
    return stored_texts(read_samples(path))


def steps_of(message: str) -> int:
    """Network steps one store of `message` takes (one per token presented, then settle)."""
    return EpisodeNetwork.steps_to_learn(tokenize(message))


def route(user_ids: list[int], workers: int) -> list[list[int]]:
    """The users of each worker, by the engine pool's own routing."""
    pool = EnginePool(WorkerSettings(db_path="", network_dir=""), workers)  # never started
    groups: list[list[int]] = [[] for _ in range(workers)]
    for user_id in user_ids:
        groups[pool.worker_index(user_id)].append(user_id)
    return groups


def age_of(user_id: int, spread_ages: int) -> int:
    """The free steps a user's network has run before the measurement: below `spread_ages`,
    different for each user (7919 is a prime: distinct for up to `spread_ages` users unless
    it divides `spread_ages`)."""
    return user_id * 7919 % spread_ages if spread_ages else 0


def age_networks(user_ids: list[int], directory: Path, spread_ages: int) -> float:
    """Save each user's network, aged by `age_of` free steps, as a snapshot holding no
    episodes in `directory`, where `EpisodeNetwork` (so the worker's `Memory`) loads it;
    returns the seconds taken. One network ages in stages, youngest user first, and is saved
    as each user's at their age: the oldest age in steps plus one save (~12 ms) per user,
    not the sum of the ages."""
    start = time.perf_counter()
    aging = EpisodeNetwork(0, directory)  # user 0 is never saved: no user has id 0
    for user_id in tqdm(sorted(user_ids, key=lambda u: age_of(u, spread_ages)),
                        desc="aging networks", unit="network", leave=False):
        steps = age_of(user_id, spread_ages) - aging.net.t
        if steps:
            aging.net.run(steps, record=False)
        snapshot = EpisodeNetwork(user_id, directory)
        snapshot.net = aging.net
        snapshot.save(last_episode_id=0)
    return time.perf_counter() - start


# --- network path: the SORNs alone, one process per worker ---------------------------


def _learn_for(user_ids, directory, texts, seconds, batch_stores, barrier, results) -> None:
    """Worker process: every user learns one episode per round, `batch_stores` users'
    networks stepped together (as the worker's group commit does), until the time is up."""
    episodes = [tokenize(text) for text in texts]
    networks = [EpisodeNetwork(user_id, directory) for user_id in user_ids]
    for network in networks:  # warm-up (and JIT) before the clock starts
        network.learn(episodes[0])
    learn_together([(network, episodes[1 % len(episodes)], None) for network in networks])
    steps_at_start = [network.net.t for network in networks]
    barrier.wait()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    deadline = wall_start + seconds
    steps = stores = 0
    while time.perf_counter() < deadline:
        for start in range(0, len(networks), batch_stores):
            batch = [(network, episodes[(stores + i) % len(episodes)], None)
                     for i, network in enumerate(networks[start:start + batch_stores])]
            before = sum(network.net.t for network, _, _ in batch)
            learn_together(batch)
            steps += sum(network.net.t for network, _, _ in batch) - before
            stores += len(batch)
    results.put({"steps": steps, "stores": stores, "steps_at_start": steps_at_start,
                 "wall": time.perf_counter() - wall_start,
                 "cpu": time.process_time() - cpu_start})


def measure_network(users: int, workers: int, seconds: float, texts: list[str], *,
                    batch_stores: int, spread_ages: int = 0) -> dict:
    ctx = multiprocessing.get_context("spawn")
    user_ids = list(range(1, users + 1))
    groups = [g for g in route(user_ids, workers) if g]
    with tempfile.TemporaryDirectory() as directory:
        aging = age_networks(user_ids, Path(directory), spread_ages) if spread_ages else 0.0
        barrier, results = ctx.Barrier(len(groups)), ctx.Queue()
        processes = [ctx.Process(target=_learn_for,
                                 args=(g, directory, texts, seconds, batch_stores, barrier,
                                       results))
                     for g in groups]
        load = load_average()
        for process in processes:
            process.start()
        parts = [results.get() for _ in processes]
        for process in processes:
            process.join()
    point = _point("network", users, sum(p["steps"] for p in parts),
                   sum(p["stores"] for p in parts), max(p["wall"] for p in parts),
                   sum(p["cpu"] for p in parts), load)
    return {**point, **_network_steps([t for p in parts for t in p["steps_at_start"]], aging)}


# --- pool path: the real store command through the engine workers ---------------------


class _StoreDriver:
    """Keeps one store in flight per user until the deadline; counts what completed."""

    def __init__(self, pool: EnginePool, texts: list[str]):
        self.pool, self.texts = pool, texts
        self.steps_of = {text: steps_of(text) for text in texts}  # not on the timed path
        self.steps = self.stores = self.outstanding = 0
        self.failures: list[str] = []
        self.deadline = 0.0
        self.finished = threading.Condition()

    def run(self, user_ids: list[int], seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds
        for user_id in user_ids:
            self._submit(user_id)
        with self.finished:
            self.finished.wait_for(lambda: self.outstanding == 0)

    def _submit(self, user_id: int) -> None:
        text = self.texts[(user_id + self.stores) % len(self.texts)]
        with self.finished:
            self.outstanding += 1
        future = self.pool.submit(user_id, "store", text=text)
        future.add_done_callback(lambda f: self._done(user_id, text, f))

    def _done(self, user_id: int, text: str, future) -> None:
        with self.finished:
            self.outstanding -= 1
            if future.exception() is not None:
                self.failures.append(str(future.exception()))
            else:
                self.steps += self.steps_of[text]
                self.stores += 1
            again = time.perf_counter() < self.deadline and not self.failures
            self.finished.notify_all()
        if again:
            self._submit(user_id)


def measure_pool(users: int, workers: int, seconds: float, texts: list[str], *,
                 batch_stores: int, batch_steps: int, spread_ages: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "memory.db")
        user_ids = [store.create_user(f"user{i}", "-") for i in range(users)]
        network_dir = Path(directory) / "networks"
        aging = age_networks(user_ids, network_dir, spread_ages) if spread_ages else 0.0
        settings = WorkerSettings(db_path=str(Path(directory) / "memory.db"),
                                  network_dir=str(network_dir),
                                  quiet_seconds=3600.0,  # no housekeeping while timed
                                  batch_stores=batch_stores, batch_steps=batch_steps)
        pool = EnginePool(settings, workers).start()
        try:
            for future in [pool.submit(u, "store", text=texts[0]) for u in user_ids]:
                future.result(timeout=120)  # every memory loaded (and JIT done) first
            steps_at_start = [future.result(timeout=120)["step"]  # as the workers loaded them
                    for future in [pool.submit(u, "stats") for u in user_ids]]
            pids = [pid for pid in pool.worker_pids() if pid]
            load, cpu_start = load_average(), sum(cpu_seconds(pid) for pid in pids)
            driver = _StoreDriver(pool, texts)
            wall_start, web_cpu_start = time.perf_counter(), time.process_time()
            driver.run(user_ids, seconds)
            wall = time.perf_counter() - wall_start
            web_cpu = time.process_time() - web_cpu_start
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_start
        finally:
            pool.close()
            store.close()
    if driver.failures:
        raise RuntimeError(f"stores failed: {driver.failures[0]}")
    point = _point("pool", users, driver.steps, driver.stores, wall, cpu, load)
    return {**point, "web_cpu_seconds": round(web_cpu, 3), **_network_steps(steps_at_start, aging)}


def _network_steps(steps_at_start: list[int], aging_seconds: float) -> dict:
    """The networks' step counts when the clock started, and the time aging them took."""
    return {"network_steps_min": min(steps_at_start), "network_steps_max": max(steps_at_start),
            "distinct_network_steps": len(set(steps_at_start)),
            "aging_seconds": round(aging_seconds, 2)}


def _point(mode: str, users: int, steps: int, stores: int, wall: float, cpu: float,
           load: list[float]) -> dict:
    return {
        "mode": mode, "users": users, "user_steps": steps, "stores": stores,
        "user_steps_per_sec": round(steps / wall, 1),
        "cpu_user_steps_per_sec": round(steps / cpu, 1) if cpu > 0 else None,
        "stores_per_sec": round(stores / wall, 1),
        "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "load": load,
    }


def run(args: argparse.Namespace) -> dict:
    counts = [int(n) for n in args.users.split(",")]
    modes = ("network", "pool") if args.mode == "both" else (args.mode,)
    measure = {"network": partial(measure_network, batch_stores=args.batch_stores,
                                  spread_ages=args.spread_ages),
               "pool": partial(measure_pool, batch_stores=args.batch_stores,
                               batch_steps=args.batch_steps, spread_ages=args.spread_ages)}
    texts = chat_turns(args.data) if args.data else messages(args.seed)
    points = []
    for mode in tqdm(modes, desc="modes", leave=False):
        for users in tqdm(counts, desc=mode, unit="point", leave=False):
            points.append(measure[mode](users, args.workers, args.seconds, texts))
    result = {
        "workers": args.workers, "seconds": args.seconds,
        "batch_stores": args.batch_stores, "batch_steps": args.batch_steps,
        "spread_ages": args.spread_ages,
        "texts": {"source": f"locomo turns of {args.data}" if args.data
                  else f"generated (seed {args.seed})", "distinct": len(texts)},
        "steps_per_store_mean": round(sum(map(steps_of, texts)) / len(texts), 2),
        "goal_user_steps_per_sec": GOAL_USER_STEPS_PER_SEC, "points": points,
    }
    if args.plot:
        plot(result, args.plot)
    return result


PATH_NAMES = {"network": "networks stepped together", "pool": "whole store path"}


def plot(result: dict, path: Path) -> None:
    with png_figure(path, dpi=100, figsize=(6, 4)) as (fig, ax):
        for mode in dict.fromkeys(p["mode"] for p in result["points"]):
            points = [p for p in result["points"] if p["mode"] == mode]
            users = [p["users"] for p in points]
            name = PATH_NAMES[mode]
            ax.plot(users, [p["user_steps_per_sec"] for p in points], "o-", label=f"{name} (wall)")
            ax.plot(users, [p["cpu_user_steps_per_sec"] for p in points], "x--",
                    label=f"{name} (per CPU-second)")
        ax.axhline(result["goal_user_steps_per_sec"], color="grey", linestyle=":",
                   label=f"goal: {result['goal_user_steps_per_sec']:,}")
        ax.set(xscale="log", yscale="log", xlabel="active users storing at once",
               ylabel="user-steps / s", title=f"{result['workers']} engine workers")
        ax.legend(fontsize=8)


def format_report(result: dict) -> str:
    texts = result["texts"]
    ages = (f"networks aged below {result['spread_ages']} steps" if result["spread_ages"]
            else "new networks")
    lines = [f"{result['workers']} workers, {result['seconds']} s per point, "
             f"{texts['distinct']} texts ({texts['source']}), "
             f"{result['steps_per_store_mean']} steps per store on average; {ages}; pool "
             f"batches of at most {result['batch_stores']} stores / {result['batch_steps']} steps"]
    for p in result["points"]:
        lines.append(f"{p['mode']:8} {p['users']:5} users: {p['user_steps_per_sec']:>10.0f} "
                     f"user-steps/s wall, {p['cpu_user_steps_per_sec'] or 0:>10.0f} per CPU-s, "
                     f"{p['stores_per_sec']:.0f} stores/s (load {p['load'][0]})"
                     + (f", web side {p['web_cpu_seconds']} CPU-s" if "web_cpu_seconds" in p
                        else "")
                     + f", networks at steps {p['network_steps_min']}-{p['network_steps_max']}")
    return "\n".join(lines)
