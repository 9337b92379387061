"""The postings of a user's recently queried tokens, kept in RAM between recalls.

Common tokens have long postings lists, and reading them from SQLite is much of a recall's
cost. Stores only append, to the last block of a token, so a kept list stays valid except
for that block: a recall rereads only the last block of each kept token and writes it in
place, into arrays with room to grow (so a store does not cost a copy of a long list).
Deleting an episode rewrites blocks anywhere, so the owner clears the cache then (`clear`),
and also when the user goes idle (consolidation), so an idle user holds none of it. At
most `max_bytes` of postings are kept, least recently used tokens go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from webapp.memory.bm25 import Postings, Presence
from webapp.memory.store import POSTING, Block, IndexRead, Store

# About 5 million postings: in a 1M-episode memory, the lists of the 81 distinct tokens of
# `bench recall`'s questions take 33 MB. Held only while the user is active.
MAX_BYTES = 64_000_000
_COLUMNS = ("episode", "tf", "length")


@dataclass
class _Kept:
    columns: list[np.ndarray]  # episode, tf, length; filled up to `size`, room after it
    size: int
    last_start: int  # first episode of the last block
    last_offset: int  # where the last block starts in the columns
    presence: Presence | None = None  # for a dense list

    @classmethod
    def read(cls, rows: list[Block]) -> _Kept:
        kept = cls([np.empty(0, dtype=POSTING[name]) for name in _COLUMNS], 0, 0, 0)
        kept.put(0, rows)
        return kept

    def put(self, offset: int, rows: list[Block]) -> None:
        """Write the entries of the blocks `rows` from `offset` on; their last block
        becomes the kept list's last one."""
        entries = np.frombuffer(b"".join(data for _, data in rows), dtype=POSTING)
        size = offset + len(entries)
        if self.presence is not None:
            self.presence.truncate(self.columns[0], offset)
        if size > len(self.columns[0]):  # grow by an eighth, so appends cost O(1) each
            room = size + size // 8
            grown = [np.empty(room, dtype=column.dtype) for column in self.columns]
            for old, new in zip(self.columns, grown, strict=True):
                new[:offset] = old[:offset]
            self.columns = grown
        for name, column in zip(_COLUMNS, self.columns, strict=True):
            column[offset:size] = entries[name]
        self.size = size
        episodes = self.columns[0][:size]
        if self.presence is not None:
            self.presence.add(episodes)
        elif Presence.worthwhile(episodes):
            self.presence = Presence(episodes)
        self.last_start = rows[-1][0]
        self.last_offset = size - len(rows[-1][1]) // POSTING.itemsize

    def postings(self) -> Postings:
        return Postings(*(column[: self.size] for column in self.columns), self.presence)

    @property
    def nbytes(self) -> int:
        presence = 0 if self.presence is None else \
            self.presence.bits.nbytes + self.presence.ranks.nbytes
        return sum(column.nbytes for column in self.columns) + presence


class HotPostings:
    """A bounded LRU of decoded postings lists for one user."""

    def __init__(self, store: Store, user_id: int, max_bytes: int = MAX_BYTES):
        self.store = store
        self.user_id = user_id
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._bytes = 0

    def read(self, tokens: list[str]) -> tuple[dict[str, Postings], IndexRead]:
        """The postings of each token the user's episodes contain (the same as
        `Store.postings`), and the store's read they come from (its totals, its mean
        trace)."""
        kept_now = {t: self._kept.pop(t) for t in tokens if t in self._kept}
        self._bytes -= sum(kept.nbytes for kept in kept_now.values())
        since = {t: kept_now[t].last_start if t in kept_now else 0 for t in tokens}
        index = self.store.read_index(self.user_id, since)
        blocks = dict(index.blocks)
        stale = [t for t in tokens if since[t] and blocks.get(t, [(None,)])[0][0] != since[t]]
        if stale:  # the kept last block is gone: read the whole list again
            for token in stale:
                del kept_now[token]
            blocks.update(self.store.read_index(self.user_id, dict.fromkeys(stale, 0)).blocks)
        found = {}
        for token, rows in blocks.items():
            kept = kept_now.get(token)
            if kept is None:
                kept = _Kept.read(rows)
            else:
                kept.put(kept.last_offset, rows)
            self._keep(token, kept)
            found[token] = kept.postings()
        return found, index

    def _keep(self, token: str, kept: _Kept) -> None:
        if kept.nbytes > self.max_bytes:
            return
        self._kept[token] = kept
        self._bytes += kept.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= dropped.nbytes

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes
