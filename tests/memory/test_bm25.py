"""BM25's top n equals scoring every episode and sorting, whichever lists MaxScore skips."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.memory.bm25 import BM25Query
from webapp.memory.store import POSTING


def postings_of(episodes: list[list[int]], first_id: int, spacing: int) -> dict[str, np.ndarray]:
    """Token 't<k>' -> postings, from episodes given as lists of token numbers."""
    found: dict[str, list] = {}
    for index, tokens in enumerate(episodes):
        for token in set(tokens):
            found.setdefault(f"t{token}", []).append(
                (first_id + index * spacing, tokens.count(token), len(tokens)))
    return {token: np.array(rows, dtype=POSTING) for token, rows in found.items()}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=120),
       st.lists(st.integers(0, 6), min_size=1, max_size=5), st.integers(1, 12),
       st.sampled_from([1, 1000]))
def test_top_is_the_exhaustive_ranking(episodes, query, n, spacing):
    # spacing 1000: ids spread thin over a shared database take the sorting path
    postings = postings_of(episodes, 7, spacing)
    weights = {f"t{token}": float(query.count(token)) for token in set(query)}
    lengths = [len(tokens) for tokens in episodes]
    bm25 = BM25Query(postings, weights, len(episodes), sum(lengths) / len(lengths))
    every_id = np.array([7 + i * spacing for i in range(len(episodes))], dtype=np.int64)
    every_score = {int(i): sum(score for _, score in bm25.matched(int(i))) for i in every_id}
    ids, scores = bm25.top(n)
    exhaustive = sorted((score for score in every_score.values() if score > 0), reverse=True)
    assert np.allclose(scores, exhaustive[:n])
    assert len(set(ids.tolist())) == len(ids)
    # best first; ties at the n-th place may go either way, but every score is the episode's
    assert np.allclose(scores, [every_score[int(i)] for i in ids])
    assert np.array_equal(bm25.scores(ids), scores)
    assert list(scores) == sorted(scores, reverse=True)
