"""Counter-based random numbers: the draws of step t depend only on (seed, t).

Every random number a running network uses is a pure function of its seed, the step t
and a lane (what the number is for), so the stream is the same however a run is split
into calls, a reloaded network needs nothing but its seed and step counter to continue
exactly, and networks at different ages share nothing and draw nothing ahead. The numpy
reference (network) and the compiled kernel evaluate the same functions with the same
integer and float32 operations, so both get the same bits.

- Lanes: a 64-bit hash (two rounds of SplitMix64's mixer) of (seed key, t, lane). The
  structural draws (does a synapse appear, where) take one lane each.
- Noise: unit u's noise at step t is (table[(a + u) % M] + table[(b + u) % M]) / √2
  (standard normal), or (table[..] + table[..]) mod 1 (uniform), where a and b are two
  lanes of step t (mod M) and `table` is a fixed table of M = 2**22 float32 draws shared by
  every network of the process. The table repeats its first entries at its end, so a
  step's two windows are plain slices. The sum of two independent normals over √2 is
  normal and the sum of two uniforms mod 1 is uniform, so each unit's noise has the right
  distribution; two steps' noise share a term only where one of their four windows
  overlap (about 0.07 % of pairs of steps, and then only between units a fixed distance
  apart). Reading two windows costs well under a µs a step; drawing 300 fresh normals
  with numpy cost ~4.5 µs, about as much as the rest of the step (docs/MODEL.md §5, §9).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from webapp.sorn.config import NOISE_DISTRIBUTIONS

STRUCTURAL_CANDIDATES = 16  # random places tried per step for a new synapse
NOISE_TABLE_SIZE = 1 << 22  # float32 draws in each noise table (16 MB)
TABLE_WRAP = 1 << 17  # entries repeated at the table's end: more than n_e + n_i can be

# Lanes of a step's draws.
ADD_SYNAPSE, FALLBACK, NOISE_A, NOISE_B, FIRST_CANDIDATE = range(5)
LANES = FIRST_CANDIDATE + STRUCTURAL_CANDIDATES

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_30, _SHIFT_27, _SHIFT_31 = np.uint64(30), np.uint64(27), np.uint64(31)
_SHIFT_11 = np.uint64(11)
UNIT_FLOAT = 2.0**-53  # a lane's top 53 bits times this: uniform in [0, 1)
TABLE_MASK = np.uint64(NOISE_TABLE_SIZE - 1)
SQRT_HALF = np.float32(np.sqrt(0.5))
_TABLE_KEY = 0x5EED_7AB1E  # the tables are the same for every seed
_INIT = 3  # the Philox stream that builds a new network
_MAX_SEED = 2**64


def check_seed(seed: int) -> int:
    seed = int(seed)
    if not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed}")
    return seed


def init_generator(seed: int) -> np.random.Generator:
    """The generator that builds a new network (weights, thresholds, first state)."""
    return np.random.Generator(np.random.Philox(key=np.array([seed, _INIT], np.uint64)))


def mix64(z):
    """SplitMix64's output mixer on uint64 (a numpy array, or a scalar in the kernel,
    which compiles this same function)."""
    z = (z ^ (z >> _SHIFT_30)) * _MIX_1
    z = (z ^ (z >> _SHIFT_27)) * _MIX_2
    return z ^ (z >> _SHIFT_31)


def lane_bits(key, t, lane):
    """The 64 random bits of `lane` at step t for a network whose seed key is `key` (all
    uint64; numpy arrays broadcast, as in `step_lanes`). kernel._lane computes the same."""
    return mix64(mix64(key ^ t) + (lane + np.uint64(1)) * GOLDEN)


def unit_float(bits):
    """Uniform in [0, 1) (float64) from a lane's top 53 bits."""
    return np.float64(bits >> _SHIFT_11) * UNIT_FLOAT


def seed_key(seed: int) -> np.uint64:
    """The hash key of a seed (uint64)."""
    return mix64(np.array([check_seed(seed)], np.uint64) + GOLDEN)[0]


def step_lanes(key: np.uint64, t: int) -> np.ndarray:
    """Every lane of step t, uint64 (LANES,)."""
    return lane_bits(np.array([key], np.uint64), np.uint64(t), np.arange(LANES, dtype=np.uint64))


@lru_cache(maxsize=len(NOISE_DISTRIBUTIONS))
def noise_table(distribution: str) -> np.ndarray:
    """The process's read-only table of float32 standard normals or uniforms in [0, 1):
    NOISE_TABLE_SIZE draws, then the first TABLE_WRAP of them again."""
    generator = np.random.Generator(np.random.Philox(
        key=np.array([_TABLE_KEY, NOISE_DISTRIBUTIONS.index(distribution)], np.uint64)))
    if distribution == "normal":
        draws = generator.standard_normal(NOISE_TABLE_SIZE, dtype=np.float32)
    else:
        draws = generator.random(NOISE_TABLE_SIZE, dtype=np.float32)
    table = np.concatenate([draws, draws[:TABLE_WRAP]])
    table.flags.writeable = False
    return table


def noise_of(table: np.ndarray, uniform: bool, a: np.uint64, b: np.uint64,
             units: int) -> np.ndarray:
    """The unscaled float32 noise of units [0, units) from the windows of lanes a and b."""
    if units > TABLE_WRAP:
        raise ValueError(f"at most {TABLE_WRAP} units draw noise")
    first, second = int(a & TABLE_MASK), int(b & TABLE_MASK)
    total = table[first : first + units] + table[second : second + units]
    if uniform:
        return total - (total >= np.float32(1.0)).astype(np.float32)
    return total * SQRT_HALF


class StepDraws:
    """The numpy reference's draws of one step (the kernel computes the same inline)."""

    def __init__(self, key: np.uint64, t: int, n_e: int, sigma: np.ndarray,
                 distribution: str):
        lanes = step_lanes(key, t)
        self._lanes = lanes
        self._n_e = n_e
        # ξ = float64(noise) * sigma, for E then I units.
        self.noise = noise_of(noise_table(distribution), distribution == "uniform",
                              lanes[NOISE_A], lanes[NOISE_B], sigma.size) * sigma
        self.add_synapse = self.uniform(ADD_SYNAPSE)  # a synapse appears if < p_add

    def uniform(self, lane: int) -> float:
        return float(unit_float(self._lanes[lane]))

    @property
    def candidates(self) -> np.ndarray:
        """Random flat places pre * n_e + post to try for a new synapse, in order."""
        places = self._lanes[FIRST_CANDIDATE:] % np.uint64(self._n_e * self._n_e)
        return places.astype(np.int64)

    @property
    def fallback(self) -> float:
        """Uniform in [0, 1): picks among the free places if every candidate is taken."""
        return self.uniform(FALLBACK)
