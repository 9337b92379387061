"""One user's episodic memory: store, recall (lexical, sorn, hybrid), delete, export,
import, consolidation. Persistence is the Store's; learning is the EpisodeNetwork's."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from webapp.memory.bm25 import BM25Query
from webapp.memory.hot_postings import HotPostings
from webapp.memory.network import EpisodeNetwork, SpikeCallback
from webapp.memory.ranking import CONTEXT_WIDTH, Pool
from webapp.memory.store import NewEpisode, Store
from webapp.memory.text import MemoryInputError, clean_text
from webapp.memory.tokenizer import tokenize

METHODS = ("lexical", "sorn", "hybrid")
DEFAULT_METHOD = "hybrid"
EXPORT_FORMAT = "sornmemory.memory"
EXPORT_VERSION = 1
SNAPSHOT_EVERY = 200  # episodes between automatic network snapshots
DEFAULT_IMPORTANCE = 0.5
CANDIDATES = 50  # best lexical candidates that, with their neighbours, form the pool
ASSOCIATED_SHOWN = 5
RECALLS_WRITTEN_AFTER = 1000  # distinct recalled episodes kept in memory before a write
CONSOLIDATION_STEPS = 2000  # network steps one consolidation may spend on replay
REPLAYED_EPISODES = 50
REHEARSAL_BOOST = 0.1  # importance gained by an episode recalled between consolidations
IMPORTANCE_HALF_LIFE = 30 * 86400.0  # seconds
IMPORTANCE_FLOOR = 0.05


@dataclass
class RecallHit:
    """One recalled episode with the reasons for its rank."""

    episode_id: int
    text: str
    score: float
    role: str
    conversation_id: str | None
    timestamp: float
    external_id: str | None
    matched: list[tuple[str, float]] = field(default_factory=list)
    associated: list[tuple[str, float]] = field(default_factory=list)
    sorn_score: float = 0.0
    context: float = 0.0  # score inherited from neighbouring turns

    def to_dict(self) -> dict:
        """JSON-able form (lists of [token, weight] pairs)."""
        return {
            "episode_id": self.episode_id, "text": self.text, "score": self.score,
            "sorn_score": self.sorn_score, "context": self.context, "role": self.role,
            "conversation_id": self.conversation_id, "timestamp": self.timestamp,
            "external_id": self.external_id,
            "matched": [list(pair) for pair in self.matched],
            "associated": [list(pair) for pair in self.associated],
        }


def _number(name: str, value: object) -> float:
    """A finite number from user data, or MemoryInputError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not np.isfinite(value):
        raise MemoryInputError(f"{name} must be a finite number.")
    return float(value)


class Memory:
    """The memory of one user; not thread-safe (the engine gives each user one worker)."""

    def __init__(self, store: Store, user_id: int, network_dir: str | Path, *,
                 plastic: bool = True):
        """`plastic=False` freezes the network's learning: a control for experiments."""
        self.db = store
        self.user_id = user_id
        self._network_dir = Path(network_dir)
        self._plastic = plastic
        self._open_network()
        self._hot_postings = HotPostings(store, user_id)
        self._recalled: Counter[int] = Counter()  # recall counts not yet written
        self._rehearsed: set[int] = set()  # recalled since the last consolidation

    def _open_network(self) -> None:
        """Load the newest snapshot and present the episodes stored after it again, which
        restores the network exactly as it was."""
        self.network = EpisodeNetwork(self.user_id, self._network_dir)
        self.network.net.plastic = self._plastic
        self._unsnapshotted = 0  # this user's episodes learned since the snapshot
        for episode in self.db.iter_episodes(self.user_id,
                                             after_id=self.network.last_episode_id):
            self.network.learn(episode["tokens"], record=False)
            self._unsnapshotted += 1

    # -- writing --------------------------------------------------------------------

    def store(self, text: str | bytes, *, conversation_id: str | None = None,
              role: str = "user", timestamp: float | None = None,
              external_id: str | None = None, importance: float | None = None,
              on_spikes: SpikeCallback | None = None) -> int:
        """Persist one episode, let the network learn it, index it; returns its id.

        Idempotent on `external_id`: a retry (e.g. after an engine restart, when the first
        attempt may have committed) returns the stored episode instead of a duplicate."""
        if external_id is not None:
            stored = self.db.episode_with_external_id(self.user_id, external_id)
            if stored is not None:
                return stored
        episode = self._new_episode(text, conversation_id, role, timestamp, external_id,
                                    importance)
        (episode_id,) = self._learn_and_commit([episode], on_spikes)
        self._snapshot_if_due(episode_id)
        return episode_id

    def _learn_and_commit(self, episodes: list[NewEpisode],
                          on_spikes: SpikeCallback | None = None) -> list[int]:
        """The network learns the episodes, then they are written; if writing fails the
        network is restored from its snapshot, so it never holds an unstored episode."""
        try:
            for episode in episodes:
                episode.trace = self.network.learn(episode.tokens, on_spikes)
            return self.db.add_episodes(self.user_id, episodes)
        except BaseException:
            self._open_network()
            raise

    def _new_episode(self, text, conversation_id, role, timestamp, external_id,
                     importance) -> NewEpisode:
        text = clean_text(text)
        if not isinstance(role, str) or not role.strip() or len(role) > 32:
            raise MemoryInputError("The role must be a short non-empty string.")
        for name, value in (("conversation id", conversation_id), ("external id", external_id)):
            if value is not None and not isinstance(value, str):
                raise MemoryInputError(f"The {name} must be a string.")
        importance = _number("Importance", DEFAULT_IMPORTANCE if importance is None
                             else importance)
        if not 0.0 <= importance <= 1.0:
            raise MemoryInputError("Importance must lie in [0, 1].")
        return NewEpisode(text=text, tokens=tokenize(text), role=role,
                          conversation_id=conversation_id,
                          timestamp=time.time() if timestamp is None
                          else _number("The timestamp", timestamp),
                          importance=importance, external_id=external_id)

    def _snapshot_if_due(self, episode_id: int) -> None:
        # Counted per user: episode ids are shared by all users of the database.
        self._unsnapshotted += 1
        if self._unsnapshotted >= SNAPSHOT_EVERY:
            self._snapshot(episode_id)

    def _snapshot(self, last_episode_id: int) -> None:
        self.network.save(last_episode_id)
        self._unsnapshotted = 0

    def save(self) -> None:
        """Snapshot the network (it then includes every stored episode) and write the
        pending recall counts (kept in memory so a recall costs no disk write)."""
        self._snapshot(self.db.last_episode_id(self.user_id))
        self._write_recalls()

    def _write_recalls(self) -> None:
        if self._recalled:
            self.db.mark_recalled(self.user_id, dict(self._recalled), time.time())
            self._recalled.clear()

    def delete(self, episode_id: int) -> bool:
        """Remove one episode and its index entries; False if the user has no such one."""
        self._hot_postings.clear()  # a delete may rewrite any postings block
        return self.db.delete_episode(self.user_id, int(episode_id))

    # -- recall ---------------------------------------------------------------------

    def query_tokens(self, query: str | bytes) -> list[str]:
        return tokenize(clean_text(query))

    def recall(self, query: str | bytes, k: int = 10, method: str = DEFAULT_METHOD,
               on_spikes: SpikeCallback | None = None) -> list[RecallHit]:
        """The k best episodes for the query, best first, each with its explanation."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        tokens = self.query_tokens(query)
        n_episodes, n_tokens = self.db.totals(self.user_id)
        if not tokens or not n_episodes or k <= 0:
            return []
        weights = dict(Counter(tokens))
        lexical = BM25Query(self._hot_postings.postings(list(weights)), weights, n_episodes,
                            n_tokens / n_episodes)
        top_ids, top_scores = lexical.top(CANDIDATES)
        if not len(top_ids):
            return []
        pool = self._pool(lexical, top_ids, top_scores[0])
        pool.add_context()
        learned = None
        if method != "lexical":
            learned = self.network.learned_drive(tokens)
            evoked = self.network.evoke(tokens, on_spikes)
            pool.add_network(learned, evoked, self.db.mean_trace(self.user_id))
        sorn = pool.network
        final = {"lexical": pool.lexical + pool.context,
                 "hybrid": pool.lexical + pool.context + sorn,
                 "sorn": np.where(pool.lexical > 0, sorn, -np.inf)}[method]
        # Forgetting lowers rank, never removes: importance in [0, 1] scales by 0.75 .. 1.25.
        final = final * (0.75 + 0.5 * pool.importance)
        best = np.lexsort((pool.seqs, -final))[:k]
        best = best[np.isfinite(final[best])]  # "sorn": the index chooses who competes
        episodes = self.db.get_episodes(self.user_id, pool.episode_ids[best].tolist())
        hits = []
        for i in best:
            episode = episodes[int(pool.episode_ids[i])]
            hits.append(RecallHit(
                episode_id=episode["id"], text=episode["text"], score=float(final[i]),
                role=episode["role"], conversation_id=episode["conversation_id"],
                timestamp=episode["timestamp"], external_id=episode["external_id"],
                matched=lexical.matched(episode["id"]), context=float(pool.context[i]),
                associated=[] if learned is None else self._associated(
                    episode["tokens"], learned, lexical.tokens),
                sorn_score=float(sorn[i]),
            ))
        self._recalled.update(hit.episode_id for hit in hits)
        self._rehearsed.update(hit.episode_id for hit in hits)
        if len(self._recalled) >= RECALLS_WRITTEN_AFTER:
            self._write_recalls()
        return hits

    def _pool(self, lexical: BM25Query, top_ids: np.ndarray, best: float) -> Pool:
        """The best lexical candidates and their neighbouring turns."""
        seqs = self.db.seqs(self.user_id, top_ids.tolist())
        nearby = {s + d for s in seqs.values() for d in range(-CONTEXT_WIDTH, CONTEXT_WIDTH + 1)}
        rows = sorted(self.db.episodes_at(self.user_id, nearby).values(), key=lambda r: r["seq"])
        ids = np.array([row["id"] for row in rows], dtype=np.int64)
        n_e = self.network.config.n_e
        return Pool(
            episode_ids=ids,
            seqs=np.array([row["seq"] for row in rows], dtype=np.int64),
            conversations=[row["conversation_id"] for row in rows],
            importance=np.array([row["importance"] for row in rows]),
            traces=np.frombuffer(b"".join(row["trace"] or bytes(n_e) for row in rows),
                                 dtype=np.uint8).reshape(len(rows), n_e),
            lexical=lexical.scores(ids) / best,
        )

    def _associated(self, tokens: list[str], learned: np.ndarray,
                    query: set[str]) -> list[tuple[str, float]]:
        """The episode's tokens whose assemblies the query reaches most through the learned
        weights (above the average unit): what the network has linked to the question."""
        if not learned.any():
            return []
        baseline = learned.mean()
        reached = {t: float(learned[self.network.encoder.units(t)].mean() - baseline)
                   for t in dict.fromkeys(tokens) if t not in query}
        ranked = sorted(((t, w) for t, w in reached.items() if w > 0), key=lambda p: -p[1])
        return ranked[:ASSOCIATED_SHOWN]

    # -- export and import ----------------------------------------------------------

    def export(self) -> dict:
        """Every episode with all its fields, in storing order (JSON-able)."""
        self._write_recalls()
        episodes = [
            {key: episode[key] for key in ("id", "text", "role", "conversation_id",
                                           "timestamp", "importance", "recall_count",
                                           "external_id", "seq")}
            for episode in self.db.iter_episodes(self.user_id)
        ]
        return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                "exported_at": time.time(), "episodes": episodes}

    def import_(self, data: dict) -> int:
        """Store every episode of an export (the network learns them in order)."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise MemoryInputError("Not a SORNMemory export.")
        if data.get("version") != EXPORT_VERSION:
            raise MemoryInputError(f"Unsupported export version {data.get('version')!r}.")
        items = data.get("episodes")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise MemoryInputError("The export holds no episode list.")
        episodes = []
        previous_seq = None
        for item in items:
            episode = self._new_episode(
                item.get("text"), item.get("conversation_id"), item.get("role", "user"),
                item.get("timestamp"), item.get("external_id"), item.get("importance"))
            episode.recall_count = int(_number("The recall count", item.get("recall_count", 0)))
            seq = item.get("seq")
            if isinstance(seq, int) and isinstance(previous_seq, int) and seq > previous_seq:
                episode.gap = seq - previous_seq
            previous_seq = seq
            episodes.append(episode)
        ids = self._learn_and_commit(episodes)
        if ids:
            self._snapshot(ids[-1])
        return len(ids)

    # -- upkeep ---------------------------------------------------------------------

    def consolidate(self, max_steps: int = CONSOLIDATION_STEPS,
                    now: float | None = None) -> dict:
        """Idle-time upkeep: importance fades with time (half-life IMPORTANCE_HALF_LIFE,
        which lowers rank; nothing is deleted), episodes recalled since the last run are
        rehearsed (importance up), then the most important episodes are replayed through
        the network with plasticity on until `max_steps` steps are used (the episode under
        way is finished), and the network is snapshot."""
        self._write_recalls()
        self._hot_postings.clear()  # an idle user keeps no postings in RAM
        faded = self.db.fade(self.user_id, time.time() if now is None else now,
                             IMPORTANCE_HALF_LIFE, IMPORTANCE_FLOOR)
        rehearsed = self.db.rehearse(self.user_id, self._rehearsed, REHEARSAL_BOOST)
        self._rehearsed.clear()
        start, replayed = self.network.net.t, 0
        for episode in self.db.most_important(self.user_id, REPLAYED_EPISODES):
            if self.network.net.t - start >= max_steps:
                break
            self.network.learn(episode["tokens"], record=False)
            replayed += 1
        self.save()
        return {"faded": faded, "rehearsed": rehearsed, "replayed": replayed,
                "steps": self.network.net.t - start}

    def stats(self) -> dict:
        episodes, _ = self.db.totals(self.user_id)
        return {"episodes": episodes, **self.network.net.stats()}
