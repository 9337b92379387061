"""The postings cache gives exactly what the store holds, through stores, deletes and
evictions, and never holds more than its byte bound."""

from __future__ import annotations

import random

import numpy as np

from webapp.memory.bm25 import Postings
from webapp.memory.hot_postings import HotPostings
from webapp.memory.store import BLOCK_SIZE, POSTING, NewEpisode

WORDS = ["cat", "dog", "tea", "rain", "lake", "sun"]


def episode(rng: random.Random) -> NewEpisode:
    tokens = rng.choices(WORDS, k=rng.randint(1, 4))
    return NewEpisode(text=" ".join(tokens), tokens=tokens, role="user", conversation_id=None,
                      timestamp=0.0, importance=0.5, external_id=None)


def assert_same(cache: HotPostings, store, user: int) -> None:
    expected = store.postings(user, WORDS + ["absent"])
    found, _ = cache.read(WORDS + ["absent"])
    assert set(found) == set(expected)
    for token, entries in expected.items():
        assert np.array_equal(found[token].episodes, entries["episode"]), token
        assert np.array_equal(found[token].tf, entries["tf"]), token
        assert np.array_equal(found[token].lengths, entries["length"]), token
        assert_finds(found[token])


def assert_finds(postings: Postings) -> None:
    """Postings.find (through a Presence when the list has one) agrees with the list."""
    episodes = postings.episodes
    ids = np.arange(episodes[0] - 10, episodes[-1] + 10)
    listed, position = postings.find(ids)
    assert np.array_equal(listed, np.isin(ids, episodes))
    assert np.array_equal(episodes[position[listed]], ids[listed])


def test_cached_postings_follow_stores_and_deletes(store):
    rng = random.Random(3)
    user = store.create_user("ada", "hash")
    cache = HotPostings(store, user)
    ids: list[int] = []
    for round_ in range(8):  # lists grow past several blocks between reads
        ids += store.add_episodes(user, [episode(rng) for _ in range(BLOCK_SIZE - 20 + round_)])
        assert_same(cache, store, user)
    assert max(len(e) for e in store.postings(user, WORDS).values()) > 2 * BLOCK_SIZE
    assert all(p.presence is not None for p in cache.read(WORDS)[0].values())  # dense lists
    for episode_id in rng.sample(ids, 40):
        store.delete_episode(user, episode_id)
        cache.clear()  # what Memory.delete does
        assert_same(cache, store, user)


def test_a_kept_last_block_that_vanished_is_read_again(store):
    rng = random.Random(4)
    user = store.create_user("ada", "hash")
    cache = HotPostings(store, user)
    ids = store.add_episodes(user, [episode(rng) for _ in range(BLOCK_SIZE + 10)])
    cache.read(WORDS)
    for episode_id in ids[-20:]:  # empties and re-keys the last blocks behind the cache
        store.delete_episode(user, episode_id)
    assert_same(cache, store, user)


def test_the_cache_keeps_within_its_byte_bound_and_answers_beyond_it(store):
    rng = random.Random(5)
    user = store.create_user("ada", "hash")
    store.add_episodes(user, [episode(rng) for _ in range(300)])
    bound = 150 * POSTING.itemsize
    cache = HotPostings(store, user, max_bytes=bound)
    for _ in range(3):
        assert_same(cache, store, user)
        assert 0 < cache.nbytes <= bound
    cache.clear()
    assert cache.nbytes == 0
    assert np.array_equal(cache.read(["cat"])[0]["cat"].episodes,
                          store.postings(user, ["cat"])["cat"]["episode"])
