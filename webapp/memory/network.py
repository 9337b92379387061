"""The user's SORN as the memory uses it: learning episodes, reading out what it makes
of a query, snapshots on disk.

Storing an episode presents each token's unit assembly for `STEPS_PER_TOKEN` steps, in
order, with plasticity on, so STDP strengthens synapses from one token's assembly to the
next one's. The E-activity while an episode is presented is kept as its trace (spike
counts per E unit, uint8). Recall asks the network two things about a query: what its
learned weights predict (the input the query's assemblies send through the weight changes
plasticity has made: `learned_drive`), and what its dynamics do (each token's assembly is
driven for a step on a frozen copy, no weight change and the live network untouched, then
the network runs free and the evoked spikes are read out: `evoke`).

Snapshot files are named by the last episode they include ("user7-ep1234.npz"), written
atomically; on open the newest readable one is loaded and the episodes stored after it
are presented again, which reproduces the network exactly (the SORN's random draws
depend only on its seed and step counter).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import lru_cache
from itertools import chain
from pathlib import Path

import numpy as np

from webapp.sorn import SORN, NetworkFileError, SORNConfig, TokenEncoder, load_network
from webapp.sorn.encoding import CACHE_LIMIT
from webapp.sorn.together import PackedInputs, run_packed

SpikeCallback = Callable[[int, np.ndarray], None]

NETWORK_SEED = 0  # one seed for every user: an imported memory relearns the same network
ENCODER_SEED = 0
UNITS_PER_TOKEN = 10
STEPS_PER_TOKEN = 1
SETTLE_STEPS = 1  # free steps after each episode: its last token's assembly drives the network
MAX_TOKENS_PRESENTED = 200  # longer episodes teach the network their first tokens only
MAX_QUERY_TOKENS = 16  # distinct query tokens presented when recalling
EVOKE_STEPS = 2  # free steps after each query token, read out as the network's response
_SNAPSHOT = re.compile(r"user(\d+)-ep(\d+)\.npz")


def remove_snapshots(directory: str | Path, user_id: int) -> int:
    """Delete every snapshot file of the user's network, and any a crash left half-written
    (".user7-ep12.npz.*.tmp"), when the account is deleted; returns how many."""
    removed = 0
    for path in Path(directory).glob(f"*user{user_id}-ep*"):
        match = _SNAPSHOT.match(path.name.removeprefix("."))
        if match and int(match.group(1)) == user_id:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class EpisodeNetwork:
    """One user's SORN, its token encoder and its snapshot files."""

    def __init__(self, user_id: int, directory: str | Path, config: SORNConfig | None = None):
        self.user_id = user_id
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.net, self.last_episode_id = self._load_newest(config or SORNConfig())
        self.config = self.net.config  # a snapshot keeps the config it was made with
        self.encoder = _encoder(self.config.n_e)
        self._unit_bytes = _unit_bytes(self.config.n_e)

    # -- snapshots ------------------------------------------------------------------

    def _snapshots(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob(f"user{self.user_id}-ep*.npz"):
            match = _SNAPSHOT.fullmatch(path.name)
            if match and int(match.group(1)) == self.user_id:
                found.append((int(match.group(2)), path))
        return sorted(found, reverse=True)

    def _load_newest(self, config: SORNConfig) -> tuple[SORN, int]:
        for episode_id, path in self._snapshots():
            try:
                return load_network(path), episode_id
            except NetworkFileError:
                continue  # a damaged snapshot: fall back to an older one, then replay
        return copy.deepcopy(_new_network(config)), 0

    def save(self, last_episode_id: int) -> None:
        """Snapshot the network as including every episode up to `last_episode_id`."""
        path = self.directory / f"user{self.user_id}-ep{last_episode_id}.npz"
        self.net.save(path)
        self.last_episode_id = last_episode_id
        for _, older in self._snapshots():
            if older != path:
                older.unlink(missing_ok=True)

    # -- presenting tokens ----------------------------------------------------------

    @staticmethod
    def steps_to_learn(tokens: list[str]) -> int:
        """Network steps `learn` takes for an episode of these tokens."""
        return min(len(tokens), MAX_TOKENS_PRESENTED) * STEPS_PER_TOKEN + SETTLE_STEPS

    def learn(self, tokens: list[str], on_spikes: SpikeCallback | None = None,
              record: bool = True) -> bytes | None:
        """Present an episode (the network learns it unless frozen); returns its trace, or
        None when not recorded (replay after a restart needs no trace)."""
        first_step = self.net.t
        (spikes,) = run_packed([self.net], _packed_inputs([(self._unit_bytes, tokens)]),
                               record=record or on_spikes is not None)
        if spikes is None:
            return None
        trace = self.trace(first_step, spikes, on_spikes)
        return trace if record else None

    def trace(self, first_step: int, spikes: np.ndarray,
              on_spikes: SpikeCallback | None) -> bytes:
        """An episode's trace from its spikes (handed to `on_spikes` first, if given)."""
        if on_spikes is not None:
            on_spikes(first_step, spikes)
        return trace_of(spikes[:, : self.config.n_e]).tobytes()

    def learned_drive(self, tokens: list[str]) -> np.ndarray:
        """What plasticity has taught the network about the query: the input each E unit
        receives through the change of the E->E weights since the network was created
        (W_EE now minus W_EE at birth, which the seed reproduces) when the query's
        assemblies fire. Deterministic, and zero for a network that never learned; the
        query's own units are left out (float, n_e)."""
        active = np.zeros(self.net.config.n_e)
        for units in self._assemblies(tokens):
            active[units] += 1.0
        firing = np.flatnonzero(active)  # only their columns of the weights matter
        change = self.net.w_ee_from(firing) - initial_weights(self.net.config)[:, firing]
        drive = change @ active[firing]
        drive[firing] = 0.0
        return drive

    def _assemblies(self, tokens: list[str]) -> list[np.ndarray]:
        return [self.encoder.units(t) for t in dict.fromkeys(tokens)][:MAX_QUERY_TOKENS]

    def evoke(self, tokens: list[str], on_spikes: SpikeCallback | None = None) -> np.ndarray:
        """What the query makes the network do beyond its input: each query token drives
        its assembly for one step on a frozen copy, then the network runs free for
        EVOKE_STEPS steps; returns the spike counts of E units outside the query's
        assemblies during those free steps (float, n_e)."""
        assemblies = self._assemblies(tokens)
        inputs: list[np.ndarray | None] = []
        for units in assemblies:
            inputs.extend([units] + [None] * EVOKE_STEPS)
        spikes = self.net.frozen_copy().run(inputs)
        if on_spikes is not None:
            on_spikes(self.net.t, spikes)
        free = np.array([units is None for units in inputs])
        evoked = spikes[free, : self.config.n_e].sum(axis=0).astype(np.float64)
        if assemblies:
            evoked[np.concatenate(assemblies)] = 0.0
        return evoked


def learn_together(episodes: list[tuple[EpisodeNetwork, list[str], SpikeCallback | None]]
                   ) -> list[bytes]:
    """Several networks learn one episode each, as `EpisodeNetwork.learn` would one after
    the other, in one compiled call for all (see sorn.together); returns their traces."""
    networks = [network for network, _, _ in episodes]
    first_steps = [network.net.t for network in networks]
    spikes = run_packed([network.net for network in networks],
                        _packed_inputs([(network._unit_bytes, tokens) for network, tokens, _
                                        in episodes]))
    return [network.trace(first_step, recorded, on_spikes)
            for (network, _, on_spikes), first_step, recorded
            in zip(episodes, first_steps, spikes, strict=True)]


def _packed_inputs(episodes: list[tuple[_UnitBytes, list[str]]]) -> PackedInputs:
    """The input entries that present each episode (each presented token's units for
    STEPS_PER_TOKEN entries, then SETTLE_STEPS empty ones), packed for one `run_packed`.
    The encoder's units are valid by construction and all of one size, so the entries'
    bounds follow from the token counts: no array or check per entry, and the units are
    one join of the tokens' bytes (~1 us a store in a batch of 50, not the ~7 of building
    the entries and packing them)."""
    presented = [(table, tokens[:MAX_TOKENS_PRESENTED]) for table, tokens in episodes]
    joined = b"".join(chain.from_iterable(map(table.__getitem__, tokens)
                                          for table, tokens in presented))
    rows = np.frombuffer(joined, np.intp).reshape(-1, UNITS_PER_TOKEN)  # a row a token
    entries = np.fromiter((len(tokens) for _, tokens in presented), np.intp, len(presented))
    first = np.zeros(len(presented) + 1, np.intp)
    np.cumsum(entries * STEPS_PER_TOKEN + SETTLE_STEPS, out=first[1:])
    sizes = np.full(first[-1], UNITS_PER_TOKEN, np.intp)  # units per entry
    for settle in range(1, SETTLE_STEPS + 1):  # an episode's last entries drive nothing
        sizes[first[1:] - settle] = 0
    starts = np.zeros(first[-1] + 1, np.intp)
    np.cumsum(sizes, out=starts[1:])
    # Repeating makes the fresh, writable array the kernel takes.
    return PackedInputs(first=first, starts=starts,
                        units=rows.repeat(STEPS_PER_TOKEN, axis=0).ravel())


class _UnitBytes(dict):
    """Each token's E units as the bytes of an intp array, for one network size: a batch's
    units are then one join (joining arrays costs ~0.5 us a store more). Filled from the
    token encoder as tokens come, emptied as the encoder's own cache is when it grows big."""

    def __init__(self, encoder: TokenEncoder):
        super().__init__()
        self.encoder = encoder

    def __missing__(self, token: str) -> bytes:
        if len(self) >= CACHE_LIMIT:  # bounded as the encoder's own cache
            self.clear()
        units = self[token] = self.encoder.units(token).astype(np.intp).tobytes()
        return units


@lru_cache(maxsize=4)
def _new_network(config: SORNConfig) -> SORN:
    """The network every new user starts from (one seed for all), built once per process:
    a copy costs a fraction of building it, which matters when many new users arrive at
    once. Never run; only copied."""
    return SORN(config, seed=NETWORK_SEED)


@lru_cache(maxsize=4)
def _encoder(n_e: int) -> TokenEncoder:
    """One token encoder per network size, shared by every user of the process (all use
    the same seed), so each token is hashed once, not once per user."""
    return TokenEncoder(n_e, UNITS_PER_TOKEN, ENCODER_SEED)


@lru_cache(maxsize=4)
def _unit_bytes(n_e: int) -> _UnitBytes:
    """The tokens' units as bytes for `_encoder(n_e)`, shared like it."""
    return _UnitBytes(_encoder(n_e))


@lru_cache(maxsize=4)
def initial_weights(config: SORNConfig) -> np.ndarray:
    """E->E weights [post, pre] of a new network: every user's network starts from these."""
    weights = _new_network(config).w_ee
    weights.flags.writeable = False
    return weights


def trace_of(e_spikes: np.ndarray) -> np.ndarray:
    """Spike counts per E unit over an episode, uint8 (saturating)."""
    if len(e_spikes) <= 255:  # no count can pass 255: sum in bytes (a store: 1 us, not 3)
        return np.add.reduce(e_spikes, axis=0, dtype=np.uint8)
    return np.minimum(e_spikes.sum(axis=0), 255).astype(np.uint8)
