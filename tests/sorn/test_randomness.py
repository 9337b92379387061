"""Random draws depend only on (seed, step): the noise is read from one shared table at
two hashed windows a step, the structural draws are hashed lanes, and a network split
into calls, stepped in turn with others or reloaded spikes as one run alone."""

import dataclasses

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig, TokenEncoder
from webapp.sorn.randomness import (
    LANES,
    NOISE_TABLE_SIZE,
    SQRT_HALF,
    TABLE_WRAP,
    StepDraws,
    lane_bits,
    noise_of,
    noise_table,
    seed_key,
    step_lanes,
)

STEPS = 4000


def noise_of_steps(seed: int, n_e: int, n_i: int, sigma_e: float, sigma_i: float,
                   uniform: bool = False) -> np.ndarray:
    """ξ of STEPS steps, (STEPS, n_e + n_i)."""
    sigma = np.repeat([sigma_e, sigma_i], [n_e, n_i])
    key = seed_key(seed)
    distribution = "uniform" if uniform else "normal"
    return np.array([StepDraws(key, t, n_e, sigma, distribution).noise for t in range(STEPS)])


def test_the_noise_table_is_drawn_once_per_process_and_read_only():
    table = noise_table("normal")
    assert noise_table("normal") is table
    assert table.dtype == np.float32 and table.size == NOISE_TABLE_SIZE + TABLE_WRAP
    assert np.array_equal(table[NOISE_TABLE_SIZE:], table[:TABLE_WRAP])  # windows wrap
    assert noise_table("uniform") is not table
    with pytest.raises(ValueError):
        table[0] = 1.0


def test_a_window_past_the_table_end_wraps_around_to_its_start():
    table = noise_table("normal")
    a = np.uint64(NOISE_TABLE_SIZE - 3)
    noise = noise_of(table, False, a, a, 6)
    expected = np.concatenate([table[NOISE_TABLE_SIZE - 3 :NOISE_TABLE_SIZE], table[:3]])
    assert np.array_equal(noise, (expected + expected) * SQRT_HALF)


def test_draws_depend_only_on_the_seed_and_the_step():
    key = seed_key(11)
    assert np.array_equal(step_lanes(key, 7), step_lanes(seed_key(11), 7))
    assert not np.array_equal(step_lanes(key, 7), step_lanes(key, 8))
    assert not np.array_equal(step_lanes(key, 7), step_lanes(seed_key(12), 7))
    lanes = step_lanes(key, 7)
    assert lanes.shape == (LANES,) and np.unique(lanes).size == LANES
    assert lane_bits(np.array([key]), np.uint64(7), np.array([3], np.uint64))[0] == lanes[3]


def test_normal_noise_has_sigma_as_std_and_no_correlation_across_steps_or_units():
    noise = noise_of_steps(3, 200, 50, 0.5, 0.0)
    assert noise.dtype == np.float64
    assert np.all(noise[:, 200:] == 0.0)  # no noise on I units
    e_noise = noise[:, :200] / 0.5
    assert abs(e_noise.mean()) < 0.01
    assert 0.99 < e_noise.std() < 1.01
    # Kurtosis of a normal is 3 (a sum of two uniforms or a table misread would not be).
    assert 2.9 < np.mean(e_noise**4) < 3.1
    lag_one_in_time = np.mean(e_noise[1:] * e_noise[:-1])
    neighbours = np.mean(e_noise[:, 1:] * e_noise[:, :-1])
    assert abs(lag_one_in_time) < 0.01 and abs(neighbours) < 0.01
    same_unit_over_time = np.corrcoef(e_noise[:, :20].T)[np.triu_indices(20, 1)]
    assert np.abs(same_unit_over_time).max() < 0.08  # 4,000 samples: |r| ~ 0.016 by chance


def test_uniform_noise_is_sigma_times_a_uniform_in_0_1_on_each_population():
    """The lab code's form (SORN_V2): mean σ/2, std σ/√12, never negative, below σ."""
    noise = noise_of_steps(3, 200, 50, 0.05, 0.2, uniform=True)
    e_noise, i_noise = noise[:, :200], noise[:, 200:]
    assert e_noise.min() >= 0.0 and e_noise.max() < 0.05
    assert abs(e_noise.mean() - 0.025) < 0.0005
    assert abs(e_noise.std() - 0.05 / np.sqrt(12)) < 0.0005
    assert i_noise.min() >= 0.0 and i_noise.max() < 0.2
    assert abs(i_noise.mean() - 0.1) < 0.002
    counts = np.histogram(e_noise, bins=10, range=(0.0, 0.05))[0]
    assert counts.min() > 0.97 * counts.mean()


def test_structural_draws_are_uniform_and_cover_every_place():
    key = seed_key(5)
    sigma = np.zeros(12)
    draws = [StepDraws(key, t, 10, sigma, "normal") for t in range(STEPS)]
    add = np.array([d.add_synapse for d in draws])
    fallback = np.array([d.fallback for d in draws])
    for uniform in (add, fallback):
        assert uniform.min() >= 0.0 and uniform.max() < 1.0
        assert abs(np.mean(uniform < 0.1) - 0.1) < 0.015
    assert abs(np.corrcoef(add, fallback)[0, 1]) < 0.05
    places = np.concatenate([d.candidates for d in draws])
    assert places.min() >= 0 and places.max() < 100
    counts = np.bincount(places, minlength=100)
    assert counts.min() > 0.75 * counts.mean()


def test_the_noise_form_changes_only_the_noise_draws():
    key, sigma = seed_key(8), np.full(72, 0.05)
    normal = StepDraws(key, 9, 60, sigma, "normal")
    uniform = StepDraws(key, 9, 60, sigma, "uniform")
    assert not np.array_equal(normal.noise, uniform.noise)
    assert np.array_equal(normal.candidates, uniform.candidates)
    assert normal.add_synapse == uniform.add_synapse
    assert normal.fallback == uniform.fallback


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
        f"w{k % 13}" for k in range(1100)
    )
    alone = SORN(config, seed=4).run(inputs)
    nets = [SORN(config, seed=4) for _ in range(3)]
    pieces: list[list[np.ndarray]] = [[] for _ in nets]
    for start in range(0, 1100, 9):  # a call crosses the exact renormalization at 1024
        for net, piece in zip(nets, pieces, strict=True):
            piece.append(net.run(inputs[start : start + 9]))
    for piece in pieces:
        assert np.array_equal(np.concatenate(piece), alone)
