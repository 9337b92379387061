"""Turn overhead: the time of one chat turn minus the LLM's, for a user with N episodes.

The real chat path runs: `ChatTurn.chat` (validate, persist the message, create the reply)
then its work (recall through a real engine worker, prompt, stream, persist the reply,
store both messages as episodes, stats), with the offline responder (no delay) standing
in for the LLM. The time spent inside the responder's stream is subtracted; what is left
is everything of ours. The user's memory is filled first through the engine's `import`.
Reported: the whole overhead, the part before the first reply token (what a user waits
for on top of the LLM's own latency), and the time of each engine operation in a turn.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from webapp.bench.measure import cpu_seconds, load_average, percentile
from webapp.bench.recall import ChatText
from webapp.chat.turn import ChatTurn
from webapp.engine.pool import EnginePool
from webapp.engine.worker import WorkerSettings
from webapp.llm import OfflineResponder
from webapp.memory import Store
from webapp.memory.memory import EXPORT_FORMAT, EXPORT_VERSION

GOAL_OVERHEAD_MS_P95 = 50.0
IMPORT_BATCH = 2000


class TimedResponder:
    """The offline responder with the time spent inside its stream counted: that time
    stands for the LLM's and is left out of the overhead."""

    remembers_replies = True  # measure the path of a real model's turn: both messages stored

    def __init__(self) -> None:
        self.responder = OfflineResponder(delay=0.0)
        self.seconds = 0.0
        self.first_call: float | None = None

    def stream(self, prompt, cancel=None, on_wait=None) -> Iterator[str]:
        self.first_call = self.first_call or time.perf_counter()
        pieces = self.responder.stream(prompt, cancel, on_wait)
        while True:
            began = time.perf_counter()
            piece = next(pieces, None)
            self.seconds += time.perf_counter() - began
            if piece is None:
                return
            yield piece


class TimedEngine:
    """The engine pool with the wall time of each call kept by operation, to show where a
    turn's overhead goes (recall, store, stats, ...)."""

    def __init__(self, pool: EnginePool) -> None:
        self.pool = pool
        self.ms: dict[str, float] = {}

    def call(self, user_id: int, op: str, timeout: float = 30.0, **args):
        began = time.perf_counter()
        try:
            return self.pool.call(user_id, op, timeout=timeout, **args)
        finally:
            self.ms[op] = self.ms.get(op, 0.0) + (time.perf_counter() - began) * 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=10_000, help="memory size first")
    parser.add_argument("--turns", type=int, default=50, help="timed turns")
    parser.add_argument("--words", type=int, default=40, help="words per message")
    parser.add_argument("--workers", type=int, default=2, help="engine processes")
    parser.add_argument("--seed", type=int, default=0)


def message(text: ChatText, words: int) -> str:
    """A chat message of exactly `words` words."""
    found: list[str] = []
    while len(found) < words:
        found += text.sentence().split()
    return " ".join(found[:words])


def fill_memory(pool: EnginePool, user_id: int, episodes: int, text: ChatText) -> None:
    start = time.time() - episodes * 60.0
    with tqdm(total=episodes, desc="building memory", unit="episode", leave=False) as bar:
        for first in range(0, episodes, IMPORT_BATCH):
            batch = [{"text": text.sentence(), "role": "user" if i % 2 else "assistant",
                      "timestamp": start + (first + i) * 60.0}
                     for i in range(min(IMPORT_BATCH, episodes - first))]
            pool.call(user_id, "import", timeout=600,
                      data={"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                            "episodes": batch})
            bar.update(len(batch))


def run(args: argparse.Namespace) -> dict:
    text = ChatText(args.seed)
    events: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        db_path = str(Path(directory) / "memory.db")
        store = Store(db_path)
        user_id = store.create_user("bench", "-")
        settings = WorkerSettings(db_path=db_path, network_dir=str(Path(directory) / "net"),
                                  quiet_seconds=3600.0)  # no consolidation while timed
        pool = EnginePool(settings, args.workers).start()
        try:
            fill_memory(pool, user_id, args.episodes, text)
            llm = TimedResponder()
            engine = TimedEngine(pool)
            turn = ChatTurn(store, engine, llm, emit=lambda user, event, payload:
                            events.append(event))
            conversation_id = None
            overhead, before_reply, llm_ms, engine_ms = [], [], [], []
            pids = [pid for pid in pool.worker_pids() if pid]
            load = load_average()
            web_cpu_start = time.process_time()
            engine_cpu_start = sum(cpu_seconds(pid) for pid in pids)
            wall_start = time.perf_counter()
            for _ in tqdm(range(args.turns + 1), desc="turns", unit="turn", leave=False):
                llm.seconds, llm.first_call, engine.ms = 0.0, None, {}
                began = time.perf_counter()
                ack, work = turn.chat(user_id, {"conversation_id": conversation_id,
                                                "text": message(text, args.words)})
                if not ack["ok"]:
                    raise RuntimeError(f"chat refused: {ack['error']}")
                work()
                if events[-2:] != ["done", "stats"]:
                    raise RuntimeError(f"the turn did not complete: {events[-4:]}")
                took = time.perf_counter() - began
                if conversation_id is not None:  # the first turn (new conversation) is warm-up
                    overhead.append((took - llm.seconds) * 1000)
                    before_reply.append((llm.first_call - began) * 1000)
                    llm_ms.append(llm.seconds * 1000)
                    engine_ms.append(engine.ms)
                conversation_id = ack["conversation_id"]
            wall = time.perf_counter() - wall_start
            web_cpu = time.process_time() - web_cpu_start
            engine_cpu = sum(cpu_seconds(pid) for pid in pids) - engine_cpu_start
            episodes = pool.call(user_id, "stats")["episodes"]
        finally:
            pool.close()
            store.close()
    turns = args.turns + 1
    return {
        "episodes": episodes, "turns": args.turns, "words": args.words,
        "overhead_ms_p50": percentile(overhead, 50), "overhead_ms_p95": percentile(overhead, 95),
        "before_reply_ms_p50": percentile(before_reply, 50),
        "before_reply_ms_p95": percentile(before_reply, 95),
        "offline_llm_ms_p50": percentile(llm_ms, 50),
        "engine_ms_p50": {op: percentile([calls[op] for calls in engine_ms], 50)
                          for op in engine_ms[0]},
        "cpu_ms_per_turn": round((web_cpu + engine_cpu) * 1000 / turns, 2),
        "wall_ms_per_turn": round(wall * 1000 / turns, 2),
        "goal_overhead_ms_p95": GOAL_OVERHEAD_MS_P95, "load": load,
    }


def format_report(result: dict) -> str:
    return (
        f"{result['turns']} turns of {result['words']} words, memory of {result['episodes']} "
        f"episodes (load {result['load'][0]}): overhead p50 {result['overhead_ms_p50']} ms, "
        f"p95 {result['overhead_ms_p95']} ms (goal {result['goal_overhead_ms_p95']}); before "
        f"the first token p50 {result['before_reply_ms_p50']} ms, p95 "
        f"{result['before_reply_ms_p95']} ms; CPU {result['cpu_ms_per_turn']} ms per turn; "
        f"engine calls p50 (ms): {result['engine_ms_p50']}"
    )
