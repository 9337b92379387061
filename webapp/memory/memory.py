"""One user's episodic memory: store, recall (lexical, sorn, hybrid), delete, export,
import, consolidation. Persistence is the Store's; learning is the EpisodeNetwork's."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from webapp.memory.bm25 import BM25Query
from webapp.memory.hot_postings import HotPostings
from webapp.memory.network import EpisodeNetwork, SpikeCallback, learn_together
from webapp.memory.ranking import CONTEXT_WIDTH, Pool
from webapp.memory.store import NewEpisode, Store
from webapp.memory.text import MemoryInputError, clean_text
from webapp.memory.tokenizer import tokenize

log = logging.getLogger(__name__)

METHODS = ("lexical", "sorn", "hybrid")
DEFAULT_METHOD = "hybrid"
EXPORT_FORMAT = "sornmemory.memory"
EXPORT_VERSION = 1
MAX_RECALL_COUNT = 2**31
# Positions an import keeps between two episodes (a run of deleted ones): bounded, so an
# export's `seq` cannot push the user's positions to SQLite's integer limit.
MAX_IMPORT_GAP = 2**20
# Network steps learned between automatic snapshots: a snapshot costs ~13 ms of CPU (a
# compressed .npz), ~1.7 us per step at this bound; a reopen replays at most this many
# steps of stored episodes (1,000 chat messages of 7 tokens: 0.14 s measured).
SNAPSHOT_STEPS = 8000
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
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            number = float(value)  # an int too large for a float overflows
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise MemoryInputError(f"{name} must be a finite number.")


def commit_stores(learned: Sequence[tuple[Memory, NewEpisode]]) -> list[int]:
    """The second half of `Memory.store` for many stores at once (group commit): write the
    episodes `learn_for_store` returned, of one or several memories of one Store, in ONE
    transaction; returns their ids in order. If the write fails, every memory of the batch
    reopens its network (snapshot + stored episodes), so no network holds an unstored
    episode, and the error is raised."""
    memories = list({id(memory): memory for memory, _ in learned}.values())
    if len({id(memory.db) for memory in memories}) > 1:
        raise ValueError("a group commit writes to one Store")
    new = [(memory, episode) for memory, episode in learned if episode.duplicate_of is None]
    try:
        ids = memories[0].db.add_episodes_many(
            [(memory.user_id, episode) for memory, episode in new]) if new else []
    except BaseException:
        for memory in memories:
            memory._learned.clear()
            memory._open_network()
        raise
    written = dict(zip(map(id, (episode for _, episode in new)), ids, strict=True))
    by_memory: dict[int, list[NewEpisode]] = {id(memory): [] for memory in memories}
    for memory, episode in new:
        by_memory[id(memory)].append(episode)
    for memory in memories:
        mine = by_memory[id(memory)]
        memory._committed([written[id(e)] for e in mine if e.duplicate_of is None],
                          twin_found=any(e.duplicate_of is not None for e in mine))
    return [written.get(id(episode), episode.duplicate_of) for _, episode in learned]


def learn_stores(prepared: Sequence[tuple[Memory, NewEpisode, SpikeCallback | None]]) -> None:
    """The networks learn episodes from `Memory.prepare_store`: each memory's in order, those
    of different memories together, in one compiled call per round (round k holds each
    memory's k-th episode; see learn_together). Each episode gets its trace and waits in its
    memory for `commit_stores`. If learning fails, none of these episodes waits any more and
    every memory involved reopens its network (snapshot, stored episodes and those that
    waited before this call), so none holds a half-learned or unstored episode, and the
    error is raised."""
    memories = {id(memory): memory for memory, _, _ in prepared}
    waiting = {key: len(memory._learned) for key, memory in memories.items()}
    rounds: list[list[tuple[Memory, NewEpisode, SpikeCallback | None]]] = []
    position: Counter[int] = Counter()
    for memory, episode, on_spikes in prepared:
        if episode.duplicate_of is None:
            if position[id(memory)] == len(rounds):
                rounds.append([])
            rounds[position[id(memory)]].append((memory, episode, on_spikes))
            position[id(memory)] += 1
    try:
        for learning in rounds:
            traces = learn_together([(memory.network, episode.tokens, on_spikes)
                                     for memory, episode, on_spikes in learning])
            for (memory, episode, _), trace in zip(learning, traces, strict=True):
                episode.trace = trace
                memory._learned.append(episode)
    except BaseException:
        for key, memory in memories.items():
            del memory._learned[waiting[key]:]  # the caller retries them, or reports them
            memory._open_network()
        raise


class Memory:
    """The memory of one user; not thread-safe (the engine gives each user one worker)."""

    def __init__(self, store: Store, user_id: int, network_dir: str | Path, *,
                 plastic: bool = True, snapshot_steps: int = SNAPSHOT_STEPS):
        """`plastic=False` freezes the network's learning: a control for experiments.
        The network is saved once it has learned `snapshot_steps` steps of stored
        episodes since its last snapshot, which bounds the replay when it is opened again."""
        self.db = store
        self.user_id = user_id
        self._network_dir = Path(network_dir)
        self._plastic = plastic
        self._snapshot_steps = snapshot_steps
        self._learned: list[NewEpisode] = []  # learned, not yet committed (group commit)
        self._open_network()
        self._hot_postings = HotPostings(store, user_id)
        self._recalled: Counter[int] = Counter()  # recall counts not yet written
        self._rehearsed: set[int] = set()  # recalled since the last consolidation

    def _open_network(self) -> None:
        """Load the newest snapshot and present the episodes stored after it again, then
        those learned for a commit still to come, which restores the network exactly."""
        self.network = EpisodeNetwork(self.user_id, self._network_dir)
        self.network.net.plastic = self._plastic
        self._snapshot_step = self.network.net.t  # the step the snapshot was taken at
        for episode in self.db.iter_episodes(self.user_id,
                                             after_id=self.network.last_episode_id):
            self.network.learn(episode["tokens"], record=False)
        for pending in self._learned:  # learned for a commit still to come
            self.network.learn(pending.tokens, record=False)

    # -- writing --------------------------------------------------------------------

    def store(self, text: str | bytes, *, conversation_id: str | None = None,
              role: str = "user", timestamp: float | None = None,
              external_id: str | None = None, importance: float | None = None,
              on_spikes: SpikeCallback | None = None) -> int:
        """Persist one episode, let the network learn it, index it; returns its id.

        Idempotent on `external_id`: a retry (e.g. after an engine restart, when the first
        attempt may have committed) returns the stored episode instead of a duplicate."""
        episode = self.learn_for_store(
            text, conversation_id=conversation_id, role=role, timestamp=timestamp,
            external_id=external_id, importance=importance, on_spikes=on_spikes)
        (episode_id,) = commit_stores([(self, episode)])
        return episode_id

    def learn_for_store(self, text: str | bytes, *, conversation_id: str | None = None,
                        role: str = "user", timestamp: float | None = None,
                        external_id: str | None = None, importance: float | None = None,
                        on_spikes: SpikeCallback | None = None) -> NewEpisode:
        """The first half of `store`, for group commit: validate, then the network learns
        the episode; `commit_stores` writes it (every learned episode must be committed
        before the next recall, save or import). For many memories at once, use
        `prepare_store` on each, then `learn_stores` for all."""
        episode = self.prepare_store(text, conversation_id=conversation_id, role=role,
                                     timestamp=timestamp, external_id=external_id,
                                     importance=importance)
        learn_stores([(self, episode, on_spikes)])
        return episode

    def prepare_store(self, text: str | bytes, *, conversation_id: str | None = None,
                      role: str = "user", timestamp: float | None = None,
                      external_id: str | None = None,
                      importance: float | None = None) -> NewEpisode:
        """Validate an episode to store (MemoryInputError if it cannot be). One whose
        external id this user has stored already comes back with `duplicate_of` set and
        will not be learned again."""
        episode = self._new_episode(text, conversation_id, role, timestamp, external_id,
                                    importance)
        if external_id is not None:
            episode.duplicate_of = self.db.episode_with_external_id(self.user_id, external_id)
        return episode

    def _committed(self, episode_ids: list[int], twin_found: bool) -> None:
        """Bookkeeping after a commit of this memory's learned episodes (ids in order)."""
        self._learned.clear()
        if twin_found:  # the network learned an episode that was stored before
            self._open_network()
            return
        if episode_ids and self.network.net.t - self._snapshot_step >= self._snapshot_steps:
            try:
                self._snapshot(episode_ids[-1])
            except OSError as exc:  # the episodes are stored: a later snapshot covers them
                log.warning("snapshot of user %s failed, kept in memory: %s", self.user_id,
                            exc)

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

    def _snapshot(self, last_episode_id: int) -> None:
        self.network.save(last_episode_id)
        self._snapshot_step = self.network.net.t

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
        if not tokens or k <= 0:
            return []
        weights = dict(Counter(tokens))
        postings, index = self._hot_postings.read(list(weights))  # one read of the store
        if not index.episodes:
            return []
        lexical = BM25Query(postings, weights, index.episodes, index.tokens / index.episodes)
        top_ids, top_scores = lexical.top(CANDIDATES)
        if not len(top_ids):
            return []
        pool = self._pool(lexical, top_ids, top_scores[0])
        pool.add_context()
        learned = None
        if method != "lexical":
            learned = self.network.learned_drive(tokens)
            evoked = self.network.evoke(tokens, on_spikes)
            pool.add_network(learned, evoked, index.mean_trace)
        sorn = pool.network
        final = {"lexical": pool.lexical + pool.context,
                 "hybrid": pool.lexical + pool.context + sorn,
                 "sorn": np.where(pool.lexical > 0, sorn, -np.inf)}[method]
        # Forgetting lowers rank, never removes: importance in [0, 1] scales by 0.75 .. 1.25.
        final = final * (0.75 + 0.5 * pool.importance)
        best = np.lexsort((pool.seqs, -final))[:k]
        best = best[np.isfinite(final[best])]  # "sorn": the index chooses who competes
        hit_ids = pool.episode_ids[best]
        by_id = self.db.get_episodes(self.user_id, hit_ids.tolist())
        episodes = [by_id[int(episode_id)] for episode_id in hit_ids]
        associated = self._associated([episode["tokens"] for episode in episodes], learned,
                                      lexical.tokens)
        hits = [RecallHit(
            episode_id=episode["id"], text=episode["text"], score=float(final[i]),
            role=episode["role"], conversation_id=episode["conversation_id"],
            timestamp=episode["timestamp"], external_id=episode["external_id"],
            matched=episode_matched, context=float(pool.context[i]),
            associated=episode_associated, sorn_score=float(sorn[i]),
        ) for i, episode, episode_matched, episode_associated
            in zip(best, episodes, lexical.matched(hit_ids), associated, strict=True)]
        self._recalled.update(hit.episode_id for hit in hits)
        self._rehearsed.update(hit.episode_id for hit in hits)
        if len(self._recalled) >= RECALLS_WRITTEN_AFTER:
            self._write_recalls()
        return hits

    def _pool(self, lexical: BM25Query, top_ids: np.ndarray, best: float) -> Pool:
        """The best lexical candidates and their neighbouring turns."""
        rows = self.db.episodes_near(self.user_id, top_ids.tolist(), CONTEXT_WIDTH)
        ids, seqs, conversations, importance, traces = zip(*rows, strict=True)
        ids = np.array(ids, dtype=np.int64)
        n_e = self.network.config.n_e
        return Pool(
            episode_ids=ids,
            seqs=np.array(seqs, dtype=np.int64),
            conversations=list(conversations),
            importance=np.array(importance),
            traces=np.frombuffer(b"".join(trace or bytes(n_e) for trace in traces),
                                 dtype=np.uint8).reshape(len(rows), n_e),
            lexical=lexical.scores(ids) / best,
        )

    def _associated(self, token_lists: list[list[str]], learned: np.ndarray | None,
                    query: set[str]) -> list[list[tuple[str, float]]]:
        """For each episode, its tokens whose assemblies the query reaches most through the
        learned weights (above the average unit): what the network has linked to the
        question. Every token is looked at once, for all the episodes together."""
        tokens = list(dict.fromkeys(t for tokens in token_lists for t in tokens if t not in query))
        if learned is None or not learned.any() or not tokens:
            return [[] for _ in token_lists]
        units = np.stack([self.network.encoder.units(t) for t in tokens])
        reached = dict(zip(tokens, (learned[units].mean(axis=1) - learned.mean()).tolist(),
                           strict=True))
        ranked = [sorted(((t, reached[t]) for t in dict.fromkeys(tokens)
                          if t not in query and reached[t] > 0), key=lambda p: -p[1])
                  for tokens in token_lists]
        return [pairs[:ASSOCIATED_SHOWN] for pairs in ranked]

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

    def import_(self, data: dict) -> dict:
        """Store the episodes of an export that this memory does not hold yet (the network
        learns them in order), so importing a backup twice, or into the memory it came
        from, adds nothing (see Store.stored_already). Returns {"imported": n, "skipped": m}."""
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
            recall_count = _number("The recall count", item.get("recall_count", 0))
            if not 0 <= recall_count <= MAX_RECALL_COUNT:
                raise MemoryInputError(f"The recall count must lie in [0, {MAX_RECALL_COUNT}].")
            episode.recall_count = int(recall_count)
            seq = item.get("seq")
            if isinstance(seq, int) and isinstance(previous_seq, int) and seq > previous_seq:
                episode.gap = min(seq - previous_seq, MAX_IMPORT_GAP)
            previous_seq = seq
            episodes.append(episode)
        new = self._not_stored_yet(episodes, [item.get("id") for item in items])
        ids = self._learn_and_commit(new)
        if ids:
            self._snapshot(ids[-1])
        return {"imported": len(ids), "skipped": len(episodes) - len(new)}

    def _not_stored_yet(self, episodes: list[NewEpisode],
                        export_ids: list[object]) -> list[NewEpisode]:
        """The episodes neither stored already nor earlier in the same list (by external
        id, or by the same text at the same time)."""
        keys = [(export_id, e.timestamp, e.text, e.external_id)
                for export_id, e in zip(export_ids, episodes, strict=True)]
        stored = self.db.stored_already(self.user_id, keys) if keys else []
        seen_texts, seen_ids, new = set(), set(), []
        for episode, known in zip(episodes, stored, strict=True):
            text_key = (episode.timestamp, episode.text)
            if known or text_key in seen_texts or episode.external_id in seen_ids:
                continue
            seen_texts.add(text_key)
            if episode.external_id is not None:
                seen_ids.add(episode.external_id)
            new.append(episode)
        return new

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
