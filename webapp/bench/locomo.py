"""LoCoMo retrieval: recall@k of the evidence turns for each question (DESIGN.md §4).

Protocol: one fresh memory per conversation; every turn is stored in order as an episode
"<speaker>: <text>" (plus " (image: <caption>)" when the turn shares an image), with its
session's date as timestamp and its dia_id as external id. Every question of categories
1-4 with at least one evidence id that names a turn is a query; recall@k is the share of
its valid evidence ids among the top k episodes, averaged over questions.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from webapp.bench.measure import percentile
from webapp.memory import METHODS, Memory, Store
from webapp.memory.memory import DEFAULT_METHOD

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (1, 5, 10)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="LoCoMo JSON file")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    parser.add_argument("--conversations", type=int, default=None,
                        help="use only the first N conversations")
    parser.add_argument("--static-network", action="store_true",
                        help="control: the network never learns (plasticity off)")


def session_turns(conversation: dict) -> list[tuple[dict, float]]:
    """Every turn of a conversation in order, with its session's date as a timestamp."""
    sessions = sorted(
        (int(match.group(1)), key) for key in conversation
        if (match := re.fullmatch(r"session_(\d+)", key))
    )
    turns = []
    for number, key in sessions:
        date = datetime.strptime(conversation[f"session_{number}_date_time"],
                                 "%I:%M %p on %d %B, %Y")
        turns.extend((turn, date.timestamp()) for turn in conversation[key])
    return turns


def episode_text(turn: dict) -> str:
    text = f"{turn['speaker']}: {turn['text']}"
    if turn.get("blip_caption"):
        text += f" (image: {turn['blip_caption']})"
    return text


def questions(sample: dict, dia_ids: set[str]) -> list[tuple[str, int, set[str]]]:
    """(question, category, valid evidence ids) of the questions that count."""
    found = []
    for qa in sample["qa"]:
        evidence = {e for e in qa.get("evidence", []) if e in dia_ids}
        if qa.get("category") in CATEGORIES and evidence:
            found.append((qa["question"], qa["category"], evidence))
    return found


def evaluate(samples: list[dict], method: str, plastic: bool = True) -> dict:
    totals = sum(len(session_turns(s["conversation"])) + len(s["qa"]) for s in samples)
    bar = tqdm(total=totals, desc=f"locomo {method}", unit="item")
    recalls: dict[int, list[dict]] = defaultdict(list)
    recall_ms = []
    for sample in samples:
        with tempfile.TemporaryDirectory() as scratch:
            store = Store(Path(scratch) / "memory.db")
            memory = Memory(store, store.create_user("locomo", "-"), Path(scratch) / "net",
                            plastic=plastic)
            turns = session_turns(sample["conversation"])
            for turn, timestamp in turns:
                memory.store(episode_text(turn), timestamp=timestamp,
                             external_id=turn["dia_id"])
                bar.update()
            for question, category, evidence in questions(sample, {t["dia_id"] for t, _ in turns}):
                start = time.perf_counter()
                hits = memory.recall(question, k=max(KS), method=method)
                recall_ms.append((time.perf_counter() - start) * 1000)
                ranked = [hit.external_id for hit in hits]
                recalls[category].append(
                    {k: len(evidence & set(ranked[:k])) / len(evidence) for k in KS})
            bar.update(len(sample["qa"]))
            store.close()
    bar.close()
    every = [r for rs in recalls.values() for r in rs]
    return {
        "method": method,
        "plastic": plastic,
        "questions": len(every),
        **{f"recall@{k}": _mean(every, k) for k in KS},
        "by_category": {
            CATEGORIES[c]: {"questions": len(rs), **{f"recall@{k}": _mean(rs, k) for k in KS}}
            for c, rs in sorted(recalls.items())
        },
        "recall_ms_p50": percentile(recall_ms, 50),
        "recall_ms_p95": percentile(recall_ms, 95),
    }


def _mean(results: list[dict], k: int) -> float:
    return round(statistics.fmean(r[k] for r in results), 4) if results else 0.0


def read_samples(path: Path) -> list[dict]:
    """The samples (conversation and questions) of a LoCoMo JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def stored_texts(samples: list[dict]) -> list[str]:
    """Every turn of every conversation as this benchmark stores it, in order."""
    return [episode_text(turn) for sample in samples
            for turn, _ in session_turns(sample["conversation"])]


def run(args: argparse.Namespace) -> dict:
    samples = read_samples(args.data)
    if args.conversations:
        samples = samples[: args.conversations]
    return evaluate(samples, args.method, plastic=not args.static_network)


def format_report(result: dict) -> str:
    network = "" if result["plastic"] else " (static network)"
    lines = [f"LoCoMo recall, method {result['method']}{network}, {result['questions']} questions",
             "category        n      R@1    R@5    R@10"]
    rows = [("all", {"questions": result["questions"], **result})]
    rows += list(result["by_category"].items())
    for name, row in rows:
        lines.append(f"{name:<14}{row['questions']:>4}   " + "  ".join(
            f"{row[f'recall@{k}']:.3f}" for k in KS))
    lines.append(f"recall p50 {result['recall_ms_p50']} ms, p95 {result['recall_ms_p95']} ms")
    return "\n".join(lines)
