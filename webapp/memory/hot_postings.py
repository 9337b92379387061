"""The postings of a user's recently queried tokens, kept in RAM between recalls.

Common tokens have long postings lists, and reading them from SQLite is much of a recall's
cost. Stores only append, to the last block of a token, so a kept list stays valid except
for that block: a recall rereads only the last block of each kept token. Deleting an
episode rewrites blocks anywhere, so the owner clears the cache then (`clear`), and also
when the user goes idle (consolidation), so an idle user holds none of it. At most
`max_bytes` of postings are kept, least recently used tokens go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from webapp.memory.store import POSTING, Store

MAX_BYTES = 8_000_000  # about 670,000 postings: the commonest token of a 1M-episode memory


@dataclass
class _Kept:
    entries: np.ndarray  # POSTING, every block of the token
    last_start: int  # first episode of the last block
    last_offset: int  # where the last block starts in `entries`


class HotPostings:
    """A bounded LRU of decoded postings lists for one user."""

    def __init__(self, store: Store, user_id: int, max_bytes: int = MAX_BYTES):
        self.store = store
        self.user_id = user_id
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._bytes = 0

    def postings(self, tokens: list[str]) -> dict[str, np.ndarray]:
        """Postings (episode, tf, length) of each token the user's episodes contain; the
        same as `Store.postings`."""
        kept_now = {t: self._kept[t] for t in tokens if t in self._kept}  # _keep may evict
        since = {t: kept_now[t].last_start if t in kept_now else 0 for t in tokens}
        blocks = self.store.posting_blocks(self.user_id, since)
        stale = [t for t in tokens if since[t] and blocks.get(t, [(None,)])[0][0] != since[t]]
        if stale:  # the kept last block is gone: read the whole list again
            for token in stale:
                del kept_now[token]
            blocks.update(self.store.posting_blocks(self.user_id, dict.fromkeys(stale, 0)))
        found = {}
        for token, rows in blocks.items():
            kept = kept_now.get(token)
            new = np.frombuffer(b"".join(data for _, data in rows), dtype=POSTING)
            if kept is None:
                entries = new
            elif len(kept.entries) == kept.last_offset + len(new):  # nothing was added
                entries = kept.entries
            else:
                entries = np.concatenate([kept.entries[: kept.last_offset], new])
            last = len(rows[-1][1]) // POSTING.itemsize
            self._keep(token, _Kept(entries, rows[-1][0], len(entries) - last))
            found[token] = entries
        return found

    def _keep(self, token: str, kept: _Kept) -> None:
        self._drop(token)
        if kept.entries.nbytes > self.max_bytes:
            return
        self._kept[token] = kept
        self._bytes += kept.entries.nbytes
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._kept)))

    def _drop(self, token: str) -> None:
        kept = self._kept.pop(token, None)
        if kept is not None:
            self._bytes -= kept.entries.nbytes

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes
