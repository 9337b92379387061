"""Tokens to input units by a keyed hash: unbounded vocabulary, stable across restarts.

A token's units are read off the BLAKE2b stream of (seed, token): no table is kept,
so any string has its units at once and a restarted process computes the same ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

CACHE_LIMIT = 100_000  # tokens whose units a TokenEncoder keeps (then it starts afresh)


class TokenEncoder:
    """Maps each token string to `units_per_token` distinct E units in [0, n_e)."""

    def __init__(self, n_e: int = 300, units_per_token: int = 10, seed: int = 0) -> None:
        if not 1 <= units_per_token <= n_e:
            raise ValueError("units_per_token must lie in [1, n_e]")
        if not 0 <= seed < 2**64:
            raise ValueError("seed must be an int in [0, 2**64)")
        self.n_e = n_e
        self.units_per_token = units_per_token
        self.seed = seed
        self._key = seed.to_bytes(8, "little")
        self._cache: dict[str, np.ndarray] = {}

    def units(self, token: str) -> np.ndarray:
        """The sorted E units that `token` drives (a read-only int array)."""
        cached = self._cache.get(token)
        if cached is None:
            cached = self._hash_units(token)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = cached
        return cached

    def inputs(self, tokens: Iterable[str]) -> list[np.ndarray]:
        """One `SORN.run` input entry per token."""
        return [self.units(token) for token in tokens]

    def _hash_units(self, token: str) -> np.ndarray:
        data = token.encode("utf-8")
        # Rejection sampling on 32-bit words keeps every unit equally likely.
        limit = (2**32 // self.n_e) * self.n_e
        chosen: dict[int, None] = {}
        counter = 0
        while len(chosen) < self.units_per_token:
            digest = hashlib.blake2b(
                data, digest_size=64, key=self._key, salt=counter.to_bytes(16, "little")
            ).digest()
            for word in np.frombuffer(digest, dtype="<u4"):
                if word < limit:
                    chosen.setdefault(int(word) % self.n_e)
                    if len(chosen) == self.units_per_token:
                        break
            counter += 1
        units = np.array(sorted(chosen), dtype=np.intp)
        units.flags.writeable = False
        return units
