"""Okapi BM25 over the postings of a query's tokens (Robertson & Zaragoza 2009).

Standard parameters k1 = 1.2, b = 0.75 and the non-negative idf
ln(1 + (N - df + 0.5) / (df + 0.5)). The query side is a weight per token (its count in
the query).

An episode's score is the sum, in a fixed term order, of its tokens' shares, whichever
way it is found: by binary search in a token's list, through the list's `Presence` (dense
lists), or in one bincount over whole lists; so every way gives the same scores, bit for
bit. `top(n)` scores every posting when there are few, and otherwise follows MaxScore
(Turtle & Flood 1995): once the bounds of some tokens (the most an episode can get from
them) sum below a score the n-th best cannot be under, episodes found only in their lists
cannot enter the top n, so the long lists of common tokens are only searched for
candidates, not scored whole. The result is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K1 = 1.2
B = 0.75
SAMPLED = 4  # top(n) takes its first threshold from 4n episodes
FEW_TOKENS = 3  # queries of up to 3 tokens take the lists one by one (measured: fastest)
EXHAUSTIVE_POSTINGS = 20_000  # up to this many postings in all, top(n) scores them all
BOUND_SLACK = 1e-9  # bounds are raised by this fraction, above any rounding of a sum
# Ids are "dense" with at least one entry per 19 ids of their range: a list then gets a
# Presence (0.625 bytes per id, against 12 per entry), and a bincount runs over the range.
DENSE_SPAN_FACTOR = 19
_BIT_COUNTS = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int32)
_BITS_BELOW = np.array([(1 << bit) - 1 for bit in range(8)], dtype=np.uint8)


def idf(df: int, n_episodes: int) -> float:
    return float(np.log1p((n_episodes - df + 0.5) / (df + 0.5)))


class Presence:
    """Whether and where each episode id sits in a postings list, in O(1) per id: a bitset
    over the list's id range (bit set: listed) and, for each of its bytes, the number of
    set bits before it, which is the position in the list. The two take 0.625 bytes per id
    of the range, so they are kept for dense lists only: the long lists of common tokens,
    where a binary search per candidate would cost most."""

    def __init__(self, episodes: np.ndarray):
        self.base = int(episodes[0])
        self.bits = np.zeros(0, dtype=np.uint8)
        self.ranks = np.zeros(0, dtype=np.int32)
        self.end = 0  # bytes in use
        self.size = 0  # entries of the list taken in
        self.add(episodes)

    @staticmethod
    def worthwhile(episodes: np.ndarray) -> bool:
        """Whether the list is dense enough for its Presence to take less room than it."""
        return len(episodes) > 0 and \
            int(episodes[-1]) - int(episodes[0]) < DENSE_SPAN_FACTOR * len(episodes)

    def add(self, episodes: np.ndarray) -> None:
        """Takes in the entries of the (whole) list from the first one not taken in yet;
        a list only grows at its end, by episode ids above all earlier ones."""
        offsets = episodes[self.size:] - self.base
        if not len(offsets):
            return
        first, end = int(offsets[0]) >> 3, (int(offsets[-1]) >> 3) + 1
        if end > len(self.bits):  # room to grow by an eighth
            room = end + end // 8 - len(self.bits)
            self.bits = np.concatenate([self.bits, np.zeros(room, dtype=np.uint8)])
            self.ranks = np.concatenate([self.ranks, np.zeros(room, dtype=np.int32)])
        new = np.zeros((end - first) * 8, dtype=bool)
        new[offsets - first * 8] = True
        self.bits[first:end] |= np.packbits(new, bitorder="little")
        counted = max(min(first, self.end - 1), 0)  # ranks up to here are still right
        self.ranks[counted + 1:end] = self.ranks[counted] + np.cumsum(
            _BIT_COUNTS[self.bits[counted:end - 1]])
        self.end, self.size = end, len(episodes)

    def truncate(self, episodes: np.ndarray, keep: int) -> None:
        """Forgets the entries of the list `episodes` (as taken in) from position `keep` on:
        a delete behind the owner's back may have changed the list's last block."""
        gone = episodes[keep:self.size] - self.base
        if len(gone):
            np.bitwise_and.at(self.bits, gone >> 3, ~(1 << (gone & 7)).astype(np.uint8))
            self.end = (int(gone[0]) >> 3) + 1  # the ranks up to that byte are unchanged
            self.size = keep

    def find(self, episode_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, position): whether each id is listed, and where (valid where found)."""
        offsets = episode_ids - self.base
        inside = (offsets >= 0) & (offsets < self.end * 8)
        offsets[~inside] = 0
        byte_index = offsets >> 3
        byte = self.bits[byte_index]
        bit = (offsets & 7).astype(np.uint8)
        found = inside & ((byte >> bit) & 1).astype(bool)
        return found, self.ranks[byte_index] + _BIT_COUNTS[byte & _BITS_BELOW[bit]]


@dataclass(frozen=True)
class Postings:
    """One token's postings as parallel arrays, by ascending episode id."""

    episodes: np.ndarray  # int64
    tf: np.ndarray  # uint16, the token's count in the episode
    lengths: np.ndarray  # uint16, the episode's number of tokens
    presence: Presence | None = None  # for dense lists

    @classmethod
    def from_entries(cls, entries: np.ndarray) -> Postings:
        """From the store's packed POSTING entries."""
        episodes, tf, lengths = (np.ascontiguousarray(entries[name])
                                 for name in ("episode", "tf", "length"))
        return cls(episodes, tf, lengths,
                   Presence(episodes) if Presence.worthwhile(episodes) else None)

    def __len__(self) -> int:
        return len(self.episodes)

    def subset(self, positions: np.ndarray) -> Postings:
        return Postings(self.episodes[positions], self.tf[positions], self.lengths[positions])

    def find(self, episode_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, position): whether each id is listed, and where (valid where found)."""
        if self.presence is not None:
            return self.presence.find(episode_ids)
        return _search(self.episodes, episode_ids)


@dataclass(frozen=True)
class _Term:
    token: str
    postings: Postings
    factor: float  # query weight x idf
    bound: float  # no episode gets more than this from the token


class BM25Query:
    """One query's scores over the postings of its tokens."""

    def __init__(self, postings: dict[str, Postings], weights: dict[str, float],
                 n_episodes: int, average_length: float):
        self.average_length = max(average_length, 1.0)
        self.terms: list[_Term] = []
        for token, weight in weights.items():
            found = postings.get(token)
            if found is None or not len(found):
                continue
            factor = weight * idf(len(found), n_episodes)
            # the share grows with tf and shrinks with length: this bounds every episode's
            bound = float(self._shares(factor, found.tf.max(keepdims=True),
                                       found.lengths.min(keepdims=True))[0])
            bound *= 1 + BOUND_SLACK
            self.terms.append(_Term(token, found, factor, bound))
        self.terms.sort(key=lambda term: -term.bound)

    def _shares(self, factor: float, tf: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """factor tf (k1 + 1) / (tf + k1 (1 - b + b length / average length)), each
        operation done in place where it can be (the lists run to 10^5 entries), in an order
        that rounds exactly as the formula written out."""
        norm = np.multiply(B, lengths, dtype=np.float64)
        norm /= self.average_length
        norm += 1.0 - B
        norm *= K1
        share = tf.astype(np.float64)
        norm += share
        share *= factor
        share *= K1 + 1
        share /= norm
        return share

    def _term_shares(self, term: _Term, episode_ids: np.ndarray) -> np.ndarray:
        """The token's share of each given episode's score (0 where the episode lacks it)."""
        found, position = term.postings.find(episode_ids)
        shares = np.zeros(len(episode_ids))
        position = position[found]
        shares[found] = self._shares(term.factor, term.postings.tf[position],
                                     term.postings.lengths[position])
        return shares

    def _add_shares(self, totals: np.ndarray, episode_ids: np.ndarray,
                    terms: list[_Term]) -> np.ndarray:
        """Adds the terms' shares to `totals`, one term after the other. Every score is
        summed in term order, whoever asks: the same episode always gets the same score,
        bit for bit (a token it lacks adds 0.0, which changes no sum)."""
        for term in terms:
            totals += self._term_shares(term, episode_ids)
        return totals

    def scores(self, episode_ids: np.ndarray) -> np.ndarray:
        """The score of each given episode (0 for episodes without a query token)."""
        episode_ids = np.asarray(episode_ids, dtype=np.int64)
        return self._add_shares(np.zeros(len(episode_ids)), episode_ids, self.terms)

    def top(self, n: int, exhaustive_up_to: int = EXHAUSTIVE_POSTINGS
            ) -> tuple[np.ndarray, np.ndarray]:
        """The n best-scoring episodes (ids, scores), best first; ties by ascending id.

        Lists of up to `exhaustive_up_to` postings in all are scored whole. Longer ones
        follow MaxScore: once the bounds of some tokens sum below a score the n-th best
        cannot be under, episodes found only in their lists cannot enter the top n (see
        `_by_lists`, the way for a few tokens, and `_by_essential_lists`, for many)."""
        if not self.terms or n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if sum(len(term.postings) for term in self.terms) <= exhaustive_up_to:
            return _top(*self._every_score(self.terms), n)
        if len(self.terms) <= FEW_TOKENS:
            return self._by_lists(n)
        return self._by_essential_lists(n, self._sample_threshold(n))

    def _by_lists(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The lists are taken one by one in term order; the episodes of each list, less
        those of earlier ones, are scored (`_best`), and once the bounds of the tokens left
        sum below the n-th best score so far, the search stops: the long lists of common
        tokens are then only looked up for candidates."""
        seen = None  # ascending: every episode of the lists taken
        best_ids, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0)
        for used, term in enumerate(self.terms, start=1):
            new = term.postings
            if seen is not None:
                new = new.subset(np.flatnonzero(~_search(seen, new.episodes)[0]))
            ids, scores = self._best(new, n, self.terms[used - 1:], _nth(best_scores, n))
            best_ids, best_scores = _top(np.concatenate([best_ids, ids]),
                                         np.concatenate([best_scores, scores]), n)
            if sum(term.bound for term in self.terms[used:]) < _nth(best_scores, n):
                break
            seen = new.episodes if seen is None else np.union1d(seen, new.episodes)
        return best_ids, best_scores

    def _by_essential_lists(self, n: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """The tokens of least bound whose bounds sum below the floor are not essential;
        the candidates are the episodes of the other lists, scored whole in one bincount,
        and the non-essential lists are only searched for the candidates that could still
        reach the floor. A long message's dozen tokens cost one pass, not one per list."""
        bounds = [term.bound for term in self.terms]
        essential = next((k for k in range(1, len(bounds)) if sum(bounds[k:]) < floor),
                         len(bounds))
        ids, scores = self._every_score(self.terms[:essential])
        rest = self.terms[essential:]
        if rest:
            reachable = scores + sum(bounds[essential:]) >= floor
            ids = ids[reachable]
            scores = self._add_shares(scores[reachable], ids, rest)
        return _top(ids, scores, n)

    def _best(self, postings: Postings, n: int, terms: list[_Term],
              threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """The episodes of `postings` (terms[0]'s, less those of earlier lists) that may
        still enter the top n, with their scores. Their share of terms[0] is exact, the
        later tokens can add at most their bounds: the most promising are scored first,
        and whoever cannot reach the n-th best score then is not searched for at all."""
        new = postings.episodes
        partial = self._shares(terms[0].factor, postings.tf, postings.lengths)
        rest = sum(term.bound for term in terms[1:])
        if not rest:
            return new, partial
        if len(new) <= SAMPLED * n:
            return new, self._add_shares(partial, new, terms[1:])
        promising = np.argpartition(-partial, SAMPLED * n)[: SAMPLED * n]
        scores = self._add_shares(partial[promising], new[promising], terms[1:])
        left = partial + rest >= max(threshold, _nth(scores, n))
        left[promising] = False
        rest_ids = new[left]
        return (np.concatenate([new[promising], rest_ids]),
                np.concatenate([scores, self._add_shares(partial[left], rest_ids, terms[1:])]))

    def _sample_threshold(self, n: int) -> float:
        """The n-th best exact score among the episodes with the largest shares of the
        first token (the one of largest bound); 0 if they are fewer than n."""
        first = self.terms[0].postings
        shares = self._shares(self.terms[0].factor, first.tf, first.lengths)
        sample = SAMPLED * n
        if len(shares) > sample:
            largest = np.argpartition(-shares, sample)[:sample]
            sample_ids = np.sort(first.episodes[largest])
        else:
            sample_ids = first.episodes
        return _nth(self.scores(sample_ids), n)

    def _every_score(self, terms: list[_Term]) -> tuple[np.ndarray, np.ndarray]:
        """Every episode holding one of the terms' tokens (ascending ids) and the sum of
        their shares: one bincount over their postings in term order, which adds the same
        numbers in the same order as term by term. Ids close together (one user's
        episodes) are counted over their range, ids spread thin over a shared database
        after one sort (every share is positive, so a sum > 0 marks an episode)."""
        episodes = np.concatenate([term.postings.episodes for term in terms])
        shares = np.concatenate([self._shares(term.factor, term.postings.tf,
                                              term.postings.lengths) for term in terms])
        low = min(int(term.postings.episodes[0]) for term in terms)
        span = max(int(term.postings.episodes[-1]) for term in terms) - low + 1
        if span <= DENSE_SPAN_FACTOR * len(episodes):
            totals = np.bincount(episodes - low, weights=shares, minlength=span)
            offsets = np.flatnonzero(totals)
            return offsets + low, totals[offsets]
        ids, slots = np.unique(episodes, return_inverse=True)
        return ids, np.bincount(slots, weights=shares, minlength=len(ids))

    def matched(self, episode_ids: list[int]) -> list[list[tuple[str, float]]]:
        """For each episode, the query tokens it holds with their share of its score,
        largest first."""
        episode_ids = np.asarray(episode_ids, dtype=np.int64)
        shares = [(term.token, self._term_shares(term, episode_ids)) for term in self.terms]
        return [sorted(((token, float(share[i])) for token, share in shares if share[i] > 0),
                       key=lambda pair: -pair[1]) for i in range(len(episode_ids))]

    @property
    def tokens(self) -> set[str]:
        return {term.token for term in self.terms}


def _search(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, position): whether each of `ids` occurs in `sorted_ids`, and where (valid
    where found), by binary search."""
    position = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[position] == ids, position


def _nth(scores: np.ndarray, n: int) -> float:
    """The n-th largest score, 0 if there are fewer."""
    return float(np.partition(scores, -n)[-n]) if len(scores) >= n else 0.0


def _top(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best (ids, scores), best first, ties by ascending id: the same n whatever
    else competed."""
    if len(scores) > n:
        cut = np.partition(scores, -n)[-n]
        keep = scores >= cut
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:n]
    return ids[order], scores[order]
