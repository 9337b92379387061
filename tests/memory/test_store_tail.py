"""A store writes no postings: a user's newest episodes (its tail) are read from the
episodes table, and a write merges a tail into the postings blocks once it spans
TAIL_POSITIONS. Readers see every stored episode exactly once either way."""

from __future__ import annotations

import random
import sqlite3

import numpy as np

from webapp.memory.hot_postings import HotPostings
from webapp.memory.store import BLOCK_SIZE, TAIL_POSITIONS, NewEpisode

WORDS = ["cat", "dog", "tea", "rain", "lake"]


def chat(rng: random.Random) -> NewEpisode:
    tokens = rng.choices(WORDS, k=rng.randint(1, 4))
    trace = bytes(rng.randrange(4) for _ in range(6))
    return NewEpisode(text=" ".join(tokens), tokens=tokens, trace=trace)


def expected(stored: dict[int, NewEpisode], token: str) -> list[tuple[int, int, int]]:
    """The postings of `token` from the stored episodes themselves."""
    return [(i, e.tokens.count(token), len(e.tokens)) for i, e in sorted(stored.items())
            if token in e.tokens]


def assert_postings(store, user: int, stored: dict[int, NewEpisode]) -> None:
    found = store.postings(user, WORDS)
    for token in WORDS:
        want = expected(stored, token)
        assert (found[token].tolist() if token in found else []) == want, token


def blocks_on_disk(store, user: int) -> int:
    conn = sqlite3.connect(store.path)
    count = conn.execute("SELECT COUNT(*) FROM postings WHERE user_id = ?", (user,)).fetchone()[0]
    conn.close()
    return count


def test_interleaved_stores_are_found_before_and_after_their_tail_is_merged(store):
    rng = random.Random(1)
    users = [store.create_user(name, "h") for name in ("ada", "bob", "cy")]
    stored: dict[int, dict[int, NewEpisode]] = {user: {} for user in users}
    for round_ in range(3 * TAIL_POSITIONS):
        batch = [(user, chat(rng)) for user in users]  # one group commit of three users
        for (user, episode), episode_id in zip(batch, store.add_episodes_many(batch),
                                               strict=True):
            stored[user][episode_id] = episode
        if round_ < TAIL_POSITIONS - 1:  # nothing indexed yet: a store wrote no postings
            assert blocks_on_disk(store, users[0]) == 0
        if round_ % 7 == 0 or round_ == TAIL_POSITIONS - 1:
            for user in users:
                assert_postings(store, user, stored[user])
    assert blocks_on_disk(store, users[0]) > 0
    for user in users:
        assert_postings(store, user, stored[user])
        assert store.totals(user) == (len(stored[user]),
                                      sum(len(e.tokens) for e in stored[user].values()))


def test_cached_postings_stay_exact_across_merges_and_full_blocks(store):
    rng = random.Random(2)
    user = store.create_user("ada", "h")
    cache = HotPostings(store, user)
    stored: dict[int, NewEpisode] = {}
    for _ in range(2 * BLOCK_SIZE + TAIL_POSITIONS):  # past merges and full blocks
        episode = chat(rng)
        (episode_id,) = store.add_episodes_many([(user, episode)])
        stored[episode_id] = episode
        found, _ = cache.read(WORDS)
        for token in WORDS:
            want = expected(stored, token)
            got = found[token].episodes.tolist() if token in found else []
            assert got == [i for i, _, _ in want], token
    assert found["cat"].tf.tolist() == [tf for _, tf, _ in expected(stored, "cat")]


def test_deleting_a_tail_or_an_indexed_episode_leaves_no_trace_of_it(store):
    rng = random.Random(3)
    user = store.create_user("ada", "h")
    stored: dict[int, NewEpisode] = {}
    indexed = [chat(rng) for _ in range(TAIL_POSITIONS)]  # merged at once
    stored.update(zip(store.add_episodes(user, indexed), indexed, strict=True))
    tail = [chat(rng) for _ in range(5)]
    stored.update(zip(store.add_episodes(user, tail), tail, strict=True))
    for victim in (min(stored), max(stored)):  # an indexed one, then one of the tail
        assert store.delete_episode(user, victim)
        del stored[victim]
        assert_postings(store, user, stored)
        traces = np.array([list(e.trace) for e in stored.values()])
        assert np.allclose(store.mean_trace(user), traces.mean(axis=0))
    assert store.totals(user)[0] == len(stored)


def test_the_mean_trace_counts_tail_and_indexed_episodes(store):
    rng = random.Random(4)
    user = store.create_user("ada", "h")
    assert store.mean_trace(user) is None
    traces = []
    for _ in range(TAIL_POSITIONS + 3):
        episode = chat(rng)
        store.add_episodes_many([(user, episode)])
        traces.append(list(episode.trace))
        assert np.allclose(store.mean_trace(user), np.mean(traces, axis=0))
    untraced = NewEpisode("no trace", ["lake"])
    store.add_episodes_many([(user, untraced)])
    assert np.allclose(store.mean_trace(user), np.mean(traces, axis=0))


def test_reads_inside_a_batch_see_its_own_unmerged_stores(store):
    user = store.create_user("ada", "h")
    with store.batch():
        (episode_id,) = store.add_episodes_many([(user, NewEpisode("cat", ["cat"], trace=b"\x02"))])
        assert store.postings(user, ["cat"])["cat"].tolist() == [(episode_id, 1, 1)]
        assert store.mean_trace(user).tolist() == [2.0]
    assert store.postings(user, ["cat"])["cat"].tolist() == [(episode_id, 1, 1)]


def test_term_counts_and_lengths_past_the_entry_fields_are_capped_in_tail_and_blocks(store):
    user = store.create_user("ada", "h")
    (long_id,) = store.add_episodes(user, [NewEpisode(text="long",
                                                      tokens=["cat"] * 70_000 + ["dog"])])
    capped = {"cat": (long_id, 65535, 65535), "dog": (long_id, 1, 65535)}
    for token, entry in capped.items():  # read from the tail
        assert store.postings(user, [token])[token].tolist() == [entry]
    rng = random.Random(5)
    store.add_episodes(user, [chat(rng) for _ in range(TAIL_POSITIONS)])  # merges the tail
    assert blocks_on_disk(store, user) > 0
    for token, entry in capped.items():  # read from the blocks
        assert store.postings(user, [token])[token].tolist()[0] == entry


def test_one_read_of_the_index_holds_the_totals_postings_and_mean_trace_at_every_tail(store):
    """A recall reads its user's tail once, for its postings and its traces together: at
    every length of the tail, across merges, with another user's stores in between and
    some episodes without a trace, that one read says what the episodes themselves say."""
    rng = random.Random(6)
    user, other = store.create_user("ada", "h"), store.create_user("bob", "h")
    cache = HotPostings(store, user)
    postings, index = cache.read(WORDS)
    assert (postings, index.episodes, index.tokens, index.mean_trace) == ({}, 0, 0, None)
    stored: dict[int, NewEpisode] = {}
    for round_ in range(2 * TAIL_POSITIONS + 5):
        episode = chat(rng)
        if round_ % 5 == 4:
            episode.trace = None
        (episode_id, _) = store.add_episodes_many([(user, episode), (other, chat(rng))])
        stored[episode_id] = episode
        postings, index = cache.read(WORDS)
        assert (index.episodes, index.tokens) == (
            len(stored), sum(len(e.tokens) for e in stored.values()))
        traces = np.array([list(e.trace) for e in stored.values() if e.trace is not None])
        assert np.array_equal(index.mean_trace, traces.sum(axis=0) / len(traces))
        for token in WORDS:
            want = expected(stored, token)
            got = postings.get(token)
            entries = [] if got is None else list(zip(
                got.episodes.tolist(), got.tf.tolist(), got.lengths.tolist(), strict=True))
            assert entries == want, token
