"""BM25's top n is exactly the exhaustive ranking (score every episode, sort by score, then
id), whichever lists MaxScore skips and whichever candidates it never scores."""

from __future__ import annotations

import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.memory.bm25 import K1, B, BM25Query, Postings, Presence
from webapp.memory.store import POSTING


def postings_of(episodes: list[list[int]], first_id: int, spacing: int) -> dict[str, Postings]:
    """Token 't<k>' -> postings, from episodes given as lists of token numbers."""
    found: dict[str, list] = {}
    for index, tokens in enumerate(episodes):
        for token in set(tokens):
            found.setdefault(f"t{token}", []).append(
                (first_id + index * spacing, tokens.count(token), len(tokens)))
    return {token: Postings.from_entries(np.array(rows, dtype=POSTING))
            for token, rows in found.items()}


def assert_exhaustive(episodes: list[list[int]], query: list[int], n: int,
                      spacing: int = 1) -> None:
    postings = postings_of(episodes, 7, spacing)
    weights = {f"t{token}": float(query.count(token)) for token in set(query)}
    lengths = [len(tokens) for tokens in episodes]
    average = sum(lengths) / len(lengths)
    bm25 = BM25Query(postings, weights, len(episodes), average)
    every_id = np.array([7 + i * spacing for i in range(len(episodes))], dtype=np.int64)
    every_score = bm25.scores(every_id)
    order = np.lexsort((every_id, -every_score))
    order = order[every_score[order] > 0][:n]
    for exhaustive_up_to in (0, 10**9):  # MaxScore, and scoring every posting
        ids, scores = bm25.top(n, exhaustive_up_to)
        assert ids.tolist() == every_id[order].tolist()
        assert scores.tolist() == every_score[order].tolist()  # bit for bit
    df = {token: len(postings.get(token, ())) for token in weights}
    for i, tokens in zip(every_id, episodes, strict=True):  # the textbook formula
        textbook = 0.0
        for token, weight in weights.items():
            tf = tokens.count(int(token[1:]))
            if tf:
                idf = math.log(1 + (len(episodes) - df[token] + 0.5) / (df[token] + 0.5))
                textbook += weight * idf * tf * (K1 + 1) / (
                    tf + K1 * (1 - B + B * len(tokens) / max(average, 1.0)))
        assert math.isclose(every_score[i == every_id][0], textbook, rel_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=120),
       st.lists(st.integers(0, 6), min_size=1, max_size=5), st.integers(1, 12),
       st.sampled_from([1, 1000]))
def test_top_is_the_exhaustive_ranking(episodes, query, n, spacing):
    # spacing 1000: the ids of one user spread thin over a shared database
    assert_exhaustive(episodes, query, n, spacing)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.integers(0, 40), min_size=1, max_size=14),
       st.integers(1, 20))
def test_top_is_exact_on_skewed_corpora_where_most_candidates_are_pruned(seed, query, n):
    # Zipf-like tokens and long lists: the rare tokens' candidates decide, the common
    # tokens' lists are only searched, and many candidates are never scored; queries of
    # a few tokens take the lists one by one, longer ones only their essential lists
    rng = random.Random(seed)
    words = list(range(41))
    weights = [1.0 / (rank + 1) for rank in words]
    episodes = [rng.choices(words, weights, k=rng.randint(1, 9)) for _ in range(600)]
    assert_exhaustive(episodes, query, n)


def test_matched_gives_each_episodes_tokens_and_shares_largest_first():
    postings = postings_of([[1, 2, 2], [2], [3]], 1, 1)
    bm25 = BM25Query(postings, {"t1": 1.0, "t2": 1.0, "t4": 1.0}, 3, 5 / 3)
    both, only_two, none = bm25.matched([1, 2, 3])
    assert [token for token, _ in both] == ["t1", "t2"]  # t1 is rarer: the larger share
    assert sum(share for _, share in both) == bm25.scores([1])[0]
    assert [token for token, _ in only_two] == ["t2"]
    assert none == []
    assert bm25.tokens == {"t1", "t2"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=400, unique=True),
       st.lists(st.integers(1, 400), max_size=5), st.integers(0, 10**9))
def test_a_presence_grown_in_pieces_finds_every_id_where_the_list_has_it(ids, cuts, base):
    episodes = np.array(sorted(ids), dtype=np.int64) + base
    presence = Presence(episodes[: min(cuts)] if cuts and min(cuts) < len(episodes)
                        else episodes)
    for cut in sorted(cuts):  # stores append to the list between recalls
        presence.add(episodes[:cut])
    presence.add(episodes)
    probe = np.arange(episodes[0] - 70, episodes[-1] + 70)
    found, position = presence.find(probe)
    assert np.array_equal(found, np.isin(probe, episodes))
    assert np.array_equal(episodes[position[found]], probe[found])
