"""Okapi BM25 over the postings of a query's tokens (Robertson & Zaragoza 2009).

Standard parameters k1 = 1.2, b = 0.75 and the non-negative idf
ln(1 + (N - df + 0.5) / (df + 0.5)). The query side is a weight per token (its count in
the query).

Scores are accumulated once per query, with numpy over whole postings lists (one
bincount in term order, so every sum adds the same numbers in the same order as term by
term). `top(n)` then applies MaxScore's rule (Turtle & Flood 1995): tokens are taken
rarest-first, and once the best possible total of the remaining (common) tokens cannot
reach the n-th best score so far, episodes holding only those tokens cannot enter the top
n and are not candidates. The result is exact.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

K1 = 1.2
B = 0.75
DENSE_SPAN_FACTOR = 8  # id span per posting up to which candidates map by offset


def idf(df: int, n_episodes: int) -> float:
    return float(np.log1p((n_episodes - df + 0.5) / (df + 0.5)))


class BM25Query:
    """One query's scores over the postings of its tokens."""

    def __init__(self, postings: dict[str, np.ndarray], weights: dict[str, float],
                 n_episodes: int, average_length: float):
        average_length = max(average_length, 1.0)
        self.terms: list[tuple[str, np.ndarray, np.ndarray]] = []  # token, episodes, share
        for token, weight in weights.items():
            entries = postings.get(token)
            if entries is None or not len(entries):
                continue
            tf = entries["tf"].astype(np.float64)
            norm = K1 * (1.0 - B + B * entries["length"] / average_length)
            share = weight * idf(len(entries), n_episodes) * tf * (K1 + 1) / (tf + norm)
            self.terms.append((token, entries["episode"], share))
        self.terms.sort(key=lambda term: -term[2].max())

    def _shares(self, episode_ids: np.ndarray) -> np.ndarray:
        """(terms, episodes) matrix of each token's contribution to each episode's score."""
        shares = np.zeros((len(self.terms), len(episode_ids)))
        for row, (_, episodes, share) in enumerate(self.terms):
            position = np.minimum(np.searchsorted(episodes, episode_ids), len(episodes) - 1)
            found = episodes[position] == episode_ids
            shares[row, found] = share[position[found]]
        return shares

    @cached_property
    def _totals(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Every episode holding a query token (ascending ids), each term's positions among
        them, and their scores: one bincount over all postings in term order, which adds
        the same numbers in the same order as summing the terms row by row."""
        ids, slots = _slots([episodes for _, episodes, _ in self.terms])
        totals = np.bincount(np.concatenate(slots), minlength=len(ids),
                             weights=np.concatenate([share for _, _, share in self.terms]))
        return ids, slots, totals

    def scores(self, episode_ids: np.ndarray) -> np.ndarray:
        """The score of each given episode (0 for episodes without a query token)."""
        episode_ids = np.asarray(episode_ids, dtype=np.int64)
        if not self.terms or not len(episode_ids):
            return np.zeros(len(episode_ids))
        ids, _, totals = self._totals
        position = np.minimum(np.searchsorted(ids, episode_ids), len(ids) - 1)
        return np.where(ids[position] == episode_ids, totals[position], 0.0)

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The n best-scoring episodes (ids, scores), best first.

        MaxScore's stopping rule grows the candidates list by list, rarest token first:
        once the bounds of the tokens left sum below the n-th best score so far, episodes
        found only in their lists cannot enter the top n."""
        if not self.terms or n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids, slots, totals = self._totals
        bounds = [share.max() for _, _, share in self.terms]
        chosen = np.zeros(len(ids), dtype=bool)
        best, count = np.zeros(0), 0  # the n best scores among the candidates so far
        for used in range(1, len(self.terms) + 1):
            new = slots[used - 1][~chosen[slots[used - 1]]]
            chosen[new] = True
            count += len(new)
            best = np.concatenate([best, totals[new]])
            if len(best) > n:
                best = np.partition(best, -n)[-n:]
            threshold = best.min() if count >= n else 0.0
            if sum(bounds[used:]) < threshold:
                break
        candidates, scores = ids[chosen], totals[chosen]
        best = np.argsort(-scores, kind="stable")[:n] if len(scores) <= 4 * n else \
            np.argpartition(-scores, n)[:n]
        best = best[np.lexsort((candidates[best], -scores[best]))]
        return candidates[best], scores[best]

    def matched(self, episode_id: int) -> list[tuple[str, float]]:
        """The query tokens an episode holds, with their share of its score, largest first."""
        shares = self._shares(np.array([episode_id], dtype=np.int64))[:, 0]
        found = [(token, float(s)) for (token, _, _), s in zip(self.terms, shares, strict=True)
                 if s > 0]
        return sorted(found, key=lambda pair: -pair[1])

    @property
    def tokens(self) -> set[str]:
        return {token for token, _, _ in self.terms}


def _slots(lists: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct episode ids of sorted posting lists, ascending, and each list's
    positions in them. Ids close together (one user's episodes) map by offset; ids spread
    thin over a shared database go through one sort."""
    low = min(int(episodes[0]) for episodes in lists)
    span = max(int(episodes[-1]) for episodes in lists) - low + 1
    total = sum(len(episodes) for episodes in lists)
    if span <= DENSE_SPAN_FACTOR * total:
        present = np.zeros(span, dtype=bool)
        for episodes in lists:
            present[episodes - low] = True
        offsets = np.flatnonzero(present)
        slot_of = np.empty(span, dtype=np.intp)
        slot_of[offsets] = np.arange(len(offsets))
        return offsets + low, [slot_of[episodes - low] for episodes in lists]
    ids, inverse = np.unique(np.concatenate(lists), return_inverse=True)
    return ids, np.split(inverse, np.cumsum([len(e) for e in lists])[:-1])
