"""Store and recall latency for one user whose memory holds N episodes of chat text.

The memory is built fast through `Memory.import_` in batches (one transaction per batch;
the network still learns every episode, so every episode has its trace), then single
`store` and `recall` calls are timed. The text is generated from a seeded vocabulary
with a Zipf-like long tail (names, places, numbers), in chat-like sentence patterns.
The VM is shared, so the load average (at the start and end of the timed calls) and the
CPU time of each call come with the wall-clock percentiles.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from functools import partial
from pathlib import Path

from tqdm import tqdm

from webapp.bench.measure import load_average, percentile
from webapp.memory import METHODS, Memory, Store
from webapp.memory.memory import DEFAULT_METHOD, EXPORT_FORMAT, EXPORT_VERSION

BATCH = 2000
TIMED_CALLS = 200


def _words(text: str) -> list[str]:
    return text.split()


_PEOPLE = _words("mom dad sister brother Anna Ben Chloe David Emma Felix grandma boss neighbour")
_ACTIVITIES = _words("hiking running swimming cooking baking painting reading gardening cycling "
                     "climbing dancing singing knitting camping fishing skiing yoga chess pottery "
                     "photography surfing tennis football guitar piano violin")
_THINGS = _words("book movie recipe trip concert dog cat car bike garden job project exam party "
                 "wedding birthday holiday apartment laptop phone class course doctor dentist "
                 "meeting interview flight train museum beach mountain lake park restaurant cafe "
                 "market festival gym team game album song painting photo letter gift")
_PLACES = _words("Paris Berlin Tokyo Lisbon Oslo Rome Madrid Vienna Prague Dublin Kyoto Seattle "
                 "Boston Denver Austin Chicago Toronto Sydney Lima Cairo")
_FEELINGS = _words("happy tired excited nervous proud stressed relaxed curious grateful worried "
                   "bored calm thrilled annoyed hopeful")
_TIMES = ["yesterday", "today", "last week", "last weekend", "this morning", "tonight",
          "on Monday", "on Friday", "in March", "in July", "next month", "last year"]
_PATTERNS = [
    "I went {activity} with {person} {time} and it was great",
    "{person} told me about the {thing} in {place}, I feel {feeling}",
    "Can you remind me what I said about the {thing}?",
    "We are planning a {thing} in {place} {time}",
    "I have been {activity} a lot, it makes me feel {feeling}",
    "My {thing} number is {number}, please remember it",
    "{person} and I talked about {activity} and the {thing} for hours",
    "The {thing} was cancelled {time} so I stayed home feeling {feeling}",
    "Do you think {activity} or {activity2} is better for a {thing}?",
    "I bought a new {thing} for {number} euros in {place}",
]


class ChatText:
    """Seeded chat-like sentences; rare words (names, numbers) make a long tail."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def _zipf(self, words: list[str]) -> str:
        weights = [1.0 / (rank + 1) for rank in range(len(words))]
        return self.rng.choices(words, weights)[0]

    def sentence(self) -> str:
        rng = self.rng
        text = rng.choice(_PATTERNS).format(
            activity=self._zipf(_ACTIVITIES), activity2=self._zipf(_ACTIVITIES),
            person=self._zipf(_PEOPLE) if rng.random() < 0.8 else f"friend{rng.randrange(5000)}",
            thing=self._zipf(_THINGS), place=self._zipf(_PLACES) if rng.random() < 0.8
            else f"town{rng.randrange(20000)}",
            feeling=self._zipf(_FEELINGS), time=rng.choice(_TIMES),
            number=rng.randrange(100, 100000),
        )
        return text if rng.random() < 0.7 else f"{text}. {self.sentence()}"

    def question(self) -> str:
        rng = self.rng
        return rng.choice([
            f"What did I say about {self._zipf(_THINGS)} in {self._zipf(_PLACES)}?",
            f"When did I go {self._zipf(_ACTIVITIES)} with {self._zipf(_PEOPLE)}?",
            f"How did I feel about the {self._zipf(_THINGS)}?",
            f"Who talked about {self._zipf(_ACTIVITIES)}?",
        ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    text = ChatText(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(Path(scratch) / "memory.db")
        memory = Memory(store, store.create_user("bench", "-"), Path(scratch) / "net")
        bulk = max(args.episodes - TIMED_CALLS, 0)
        start = time.time() - bulk * 60.0
        with tqdm(total=bulk, desc="building memory", unit="episode") as bar:
            for first in range(0, bulk, BATCH):
                batch = [{"text": text.sentence(), "role": "user" if i % 2 else "assistant",
                          "timestamp": start + (first + i) * 60.0}
                         for i in range(min(BATCH, bulk - first))]
                memory.import_({"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                                "episodes": batch})
                bar.update(len(batch))
        times: dict[str, list[float]] = {
            name: [] for name in ("store_ms", "store_cpu_ms", "recall_ms", "recall_cpu_ms")}
        load = load_average()
        for _ in tqdm(range(min(TIMED_CALLS, args.episodes)), desc="timing", unit="call"):
            sentence, question = text.sentence(), text.question()
            for name, call in (("store", partial(memory.store, sentence)),
                               ("recall", partial(memory.recall, question, k=10,
                                                  method=args.method))):
                wall, cpu = time.perf_counter(), time.process_time()
                call()
                times[f"{name}_cpu_ms"].append((time.process_time() - cpu) * 1000)
                times[f"{name}_ms"].append((time.perf_counter() - wall) * 1000)
        result = {"episodes": store.totals(memory.user_id)[0], "method": args.method}
        for name, values in times.items():
            result[f"{name}_p50"] = percentile(values, 50)
            result[f"{name}_p95"] = percentile(values, 95)
        result.update(db_bytes=store.database_bytes(), load=load, load_after=load_average())
        store.close()
    return result
