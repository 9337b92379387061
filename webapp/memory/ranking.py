"""Scoring recall candidates: lexical evidence, conversational context, and the network.

- Lexical: BM25, divided by the best score of the query so the other terms have a fixed
  scale.
- Context: a turn inherits CONTEXT_WEIGHT / d of the lexical score of the turn d steps
  away in the same conversation (d <= CONTEXT_WIDTH): questions often name the words of
  the turn next to the one that holds the answer ("What do you play?" / "The violin").
- Network: how well each episode's trace (its E-activity while it was learned, relative
  to the user's mean trace) lines up with what the SORN makes of the query: the cosine
  with the input the query sends through the learned weight changes (LEARNED_WEIGHT),
  plus the cosine with the spikes the query evokes in a frozen copy (EVOKED_WEIGHT).
  Both leave the query's own assemblies out: they add what the words alone do not say.

The weights were checked by leave-one-conversation-out on LoCoMo (docs/MEMORY.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTEXT_WEIGHT = 0.5
CONTEXT_WIDTH = 3
LEARNED_WEIGHT = 0.6
EVOKED_WEIGHT = 0.1


@dataclass
class Pool:
    """The episodes competing in one recall, as parallel arrays (one entry per episode)."""

    episode_ids: np.ndarray  # int64
    seqs: np.ndarray  # int64, position in the user's stream
    conversations: list[str | None]
    importance: np.ndarray
    traces: np.ndarray  # uint8 (n, n_e); rows of zeros where an episode has no trace
    lexical: np.ndarray  # normalized BM25
    context: np.ndarray | None = None
    network: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.context = np.zeros(len(self.episode_ids))
        self.network = np.zeros(len(self.episode_ids))

    def add_context(self) -> None:
        """Every episode inherits from the lexical matches near it in its conversation
        (the pool is sorted by seq)."""
        codes = {c: i for i, c in enumerate(dict.fromkeys(self.conversations))}
        conversation = np.array([codes[c] for c in self.conversations])
        source = np.flatnonzero(self.lexical > 0)
        for distance in range(1, CONTEXT_WIDTH + 1):
            for target_seqs in (self.seqs[source] - distance, self.seqs[source] + distance):
                target = np.minimum(np.searchsorted(self.seqs, target_seqs), len(self.seqs) - 1)
                near = (self.seqs[target] == target_seqs) & \
                    (conversation[target] == conversation[source])
                np.add.at(self.context, target[near],
                          CONTEXT_WEIGHT * self.lexical[source[near]] / distance)

    def add_network(self, learned: np.ndarray, evoked: np.ndarray,
                    mean_trace: np.ndarray | None) -> None:
        """The network term: weighted cosines of the two readouts with the centred traces."""
        if mean_trace is None or not len(self.traces):
            return
        centred = self.traces - mean_trace
        lengths = np.linalg.norm(centred, axis=1)
        lengths[~self.traces.any(axis=1) | (lengths == 0)] = np.inf
        for readout, weight in ((learned, LEARNED_WEIGHT), (evoked, EVOKED_WEIGHT)):
            norm = np.linalg.norm(readout)
            if norm > 0:
                self.network += weight * (centred @ (readout / norm)) / lengths
