"""Random draws depend only on (seed, step): a drawn block is kept, read-only, for every
network of the process with that seed, and sharing it changes no spike."""

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig, TokenEncoder
from webapp.sorn.randomness import BLOCK_STEPS, block_draws


def test_networks_with_one_seed_share_a_drawn_block_read_only():
    first = block_draws(11, 5, 300, 75, 0.2, 0.0)
    assert block_draws(11, 5, 300, 75, 0.2, 0.0) is first
    assert block_draws(12, 5, 300, 75, 0.2, 0.0) is not first
    with pytest.raises(ValueError):
        first.noise[0, 0] = 1.0


def test_noise_is_drawn_per_population_and_scaled_by_its_sigma():
    draws = block_draws(3, 0, 200, 50, 0.5, 0.0)
    noise = np.array([draws.noise_at(offset) for offset in range(BLOCK_STEPS)])
    assert noise.dtype == np.float64
    assert np.all(noise[:, 200:] == 0.0)  # no noise on I units
    assert 0.45 < noise[:, :200].std() < 0.55
    assert abs(noise[:, :200].mean()) < 0.02


def test_networks_stepped_in_turn_spike_as_one_run_alone():
    config = SORNConfig(n_e=80, n_i=20)
    inputs = TokenEncoder(n_e=80, units_per_token=5, seed=0).inputs(
        f"w{k % 13}" for k in range(700)
    )
    alone = SORN(config, seed=4).run(inputs)
    nets = [SORN(config, seed=4) for _ in range(3)]
    pieces: list[list[np.ndarray]] = [[] for _ in nets]
    for start in range(0, 700, 9):  # every network crosses block borders mid-call
        for net, piece in zip(nets, pieces, strict=True):
            piece.append(net.run(inputs[start : start + 9]))
    for piece in pieces:
        assert np.array_equal(np.concatenate(piece), alone)
