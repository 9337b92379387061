"""Random draws depend only on (seed, step): a drawn block is kept, read-only, for every
network of the process with that seed, and sharing it changes no spike."""

import dataclasses

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig, TokenEncoder
from webapp.sorn.randomness import BLOCK_STEPS, block_draws


def test_networks_with_one_seed_share_a_drawn_block_read_only():
    first = block_draws(11, 5, 300, 75, 0.2, 0.0, "normal")
    assert block_draws(11, 5, 300, 75, 0.2, 0.0, "normal") is first
    assert block_draws(12, 5, 300, 75, 0.2, 0.0, "normal") is not first
    assert block_draws(11, 5, 300, 75, 0.2, 0.0, "uniform") is not first
    with pytest.raises(ValueError):
        first.noise[0, 0] = 1.0


def all_noise(draws) -> np.ndarray:
    """ξ of every step of a block, (BLOCK_STEPS, n_e + n_i)."""
    return np.array([draws.noise_at(offset) for offset in range(BLOCK_STEPS)])


def test_noise_is_drawn_per_population_and_scaled_by_its_sigma():
    noise = all_noise(block_draws(3, 0, 200, 50, 0.5, 0.0, "normal"))
    assert noise.dtype == np.float64
    assert np.all(noise[:, 200:] == 0.0)  # no noise on I units
    assert 0.45 < noise[:, :200].std() < 0.55
    assert abs(noise[:, :200].mean()) < 0.02


def test_uniform_noise_is_sigma_times_a_uniform_in_0_1_on_each_population():
    """The lab code's form (SORN_V2): mean σ/2, std σ/√12, never negative, below σ."""
    noise = all_noise(block_draws(3, 0, 200, 50, 0.05, 0.2, "uniform"))
    e_noise, i_noise = noise[:, :200], noise[:, 200:]
    assert e_noise.min() >= 0.0 and e_noise.max() < 0.05
    assert abs(e_noise.mean() - 0.025) < 0.001
    assert abs(e_noise.std() - 0.05 / np.sqrt(12)) < 0.001
    assert i_noise.min() >= 0.0 and i_noise.max() < 0.2
    assert abs(i_noise.mean() - 0.1) < 0.01


def test_the_noise_form_changes_only_the_noise_draws():
    normal = block_draws(8, 2, 60, 12, 0.05, 0.0, "normal")
    uniform = block_draws(8, 2, 60, 12, 0.05, 0.0, "uniform")
    assert not np.array_equal(normal.noise, uniform.noise)
    assert np.array_equal(normal.candidates, uniform.candidates)
    assert np.array_equal(normal.add_synapse, uniform.add_synapse)
    assert np.array_equal(normal.fallback, uniform.fallback)


def test_a_network_with_uniform_noise_is_as_reproducible_as_with_normal_noise():
    config = SORNConfig(n_e=80, n_i=20, noise_sigma=0.05, noise_distribution="uniform")
    inputs = [[k % 80, (k * 7) % 80] for k in range(600)]
    spikes = SORN(config, seed=2).run(inputs)
    assert np.array_equal(SORN(config, seed=2).run(inputs), spikes)
    normal = dataclasses.replace(config, noise_distribution="normal")
    assert not np.array_equal(SORN(normal, seed=2).run(inputs), spikes)


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
