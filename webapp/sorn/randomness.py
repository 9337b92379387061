"""Counter-based random numbers: the draws for step t depend only on (seed, t).

Every random draw of a running network comes from a Philox generator keyed by the seed
and by (block of steps, purpose). A block's draws are generated at once, so the stream is
the same however a run is split into calls, and a reloaded network needs nothing but its
seed and step counter to continue exactly. As draws depend on nothing else, the blocks
drawn last are kept (read-only) for every network of the process: networks with the
same seed at the same block (every user's network starts from one seed) draw it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BLOCK_STEPS = 256  # steps whose draws are generated together
STRUCTURAL_CANDIDATES = 16  # random places tried per step for a new synapse
SHARED_BLOCKS = 16  # recently drawn blocks kept for all networks of the process

_NOISE_E, _NOISE_I, _STRUCTURAL, _INIT = range(4)
_MAX_SEED = 2**64


def check_seed(seed: int) -> int:
    seed = int(seed)
    if not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed}")
    return seed


def _generator(seed: int, stream: int) -> np.random.Generator:
    key = np.array([seed, stream], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


def init_generator(seed: int) -> np.random.Generator:
    """The generator that builds a new network (weights, thresholds, first state)."""
    return _generator(seed, _INIT)


@dataclass(frozen=True)
class BlockDraws:
    """All random numbers for steps [block * BLOCK_STEPS, (block + 1) * BLOCK_STEPS)."""

    block: int
    # (BLOCK_STEPS, n_e + n_i) float32 standard normals, or uniforms in [0, 1), for E then
    # I units (0 for a population without noise); ξ = float64(noise) * sigma. Drawn in
    # float32 (enough for noise, and quicker), scaled and used in float64.
    noise: np.ndarray
    sigma: np.ndarray  # (n_e + n_i,) float64: noise_sigma for E units, noise_sigma_i for I
    add_synapse: np.ndarray  # (BLOCK_STEPS,) uniform in [0, 1): a synapse appears if < p_add
    candidates: np.ndarray  # (BLOCK_STEPS, STRUCTURAL_CANDIDATES) flat pre * n_e + post
    fallback: np.ndarray  # (BLOCK_STEPS,) uniform, picks among free places if all fail

    def noise_at(self, offset: int) -> np.ndarray:
        """ξ of the block's step `offset` for every unit, float64 (n_e + n_i,)."""
        return self.noise[offset] * self.sigma


@lru_cache(maxsize=SHARED_BLOCKS)
def block_draws(
    seed: int, block: int, n_e: int, n_i: int, noise_sigma: float, noise_sigma_i: float,
    noise_distribution: str,
) -> BlockDraws:
    """Draw one block (or return it, read-only, if drawn lately); each purpose has its
    own stream so switching a rule or a noise source off leaves the other draws unchanged.
    `noise_distribution` is SORNConfig's: "normal" or "uniform" (in [0, 1))."""
    base = 4 + 4 * block
    noise = np.zeros((BLOCK_STEPS, n_e + n_i), dtype=np.float32)
    if noise_sigma > 0:
        noise[:, :n_e] = _noise(seed, base + _NOISE_E, (BLOCK_STEPS, n_e), noise_distribution)
    if noise_sigma_i > 0 and n_i > 0:
        noise[:, n_e:] = _noise(seed, base + _NOISE_I, (BLOCK_STEPS, n_i), noise_distribution)
    sigma = np.repeat([float(noise_sigma), float(noise_sigma_i)], [n_e, n_i])
    structural = _generator(seed, base + _STRUCTURAL)
    add_synapse = structural.random(BLOCK_STEPS)
    candidates = structural.integers(0, n_e * n_e, (BLOCK_STEPS, STRUCTURAL_CANDIDATES))
    fallback = structural.random(BLOCK_STEPS)
    for array in (noise, sigma, add_synapse, candidates, fallback):
        array.flags.writeable = False
    return BlockDraws(block, noise, sigma, add_synapse, candidates, fallback)


def _noise(seed: int, stream: int, shape: tuple[int, int], distribution: str) -> np.ndarray:
    """Unscaled float32 noise of one population: standard normals or uniforms in [0, 1)."""
    generator = _generator(seed, stream)
    if distribution == "normal":
        return generator.standard_normal(shape, dtype=np.float32)
    if distribution == "uniform":
        return generator.random(shape, dtype=np.float32)
    raise ValueError(f"unknown noise distribution {distribution!r}")
