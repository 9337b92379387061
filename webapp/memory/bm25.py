"""Okapi BM25 over the postings of a query's tokens (Robertson & Zaragoza 2009).

Standard parameters k1 = 1.2, b = 0.75 and the non-negative idf
ln(1 + (N - df + 0.5) / (df + 0.5)). The query side is a weight per token (its count in
the query).

`top(n)` uses MaxScore (Turtle & Flood 1995): tokens are taken rarest-first, and once the
best possible total of the remaining (common) tokens cannot reach the n-th best score so
far, episodes holding only those tokens cannot enter the top n, so their long postings
lists are only probed, never merged. The result is exact.
"""

from __future__ import annotations

import numpy as np

K1 = 1.2
B = 0.75


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

    def scores(self, episode_ids: np.ndarray) -> np.ndarray:
        """The score of each given episode (0 for episodes without a query token)."""
        episode_ids = np.asarray(episode_ids, dtype=np.int64)
        return self._shares(episode_ids).sum(axis=0) if self.terms else \
            np.zeros(len(episode_ids))

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The n best-scoring episodes (ids, scores), best first."""
        if not self.terms or n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        bounds = [share.max() for _, _, share in self.terms]
        for used in range(1, len(self.terms) + 1):
            candidates = np.unique(np.concatenate([e for _, e, _ in self.terms[:used]]))
            scores = self.scores(candidates)
            threshold = np.partition(scores, -n)[-n] if len(scores) >= n else 0.0
            if sum(bounds[used:]) < threshold:
                break
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
