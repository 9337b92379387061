"""Recall's evoked spikes come from a frozen copy that shares the live network's weights:
they equal a full copy's, also where the live network renormalizes next, and leave the network as
it was.
The learned drive is what the query's assemblies send through the weight changes.
Networks that learn together learn exactly what each learns alone."""

from __future__ import annotations

import copy

import numpy as np

from webapp.memory.network import (
    EVOKE_STEPS,
    MAX_TOKENS_PRESENTED,
    NETWORK_SEED,
    SETTLE_STEPS,
    STEPS_PER_TOKEN,
    EpisodeNetwork,
    initial_weights,
    learn_together,
    trace_of,
)
from webapp.sorn import SORN
from webapp.sorn.network import RENORMALIZE_EVERY

QUERY = ["hike", "alp", "lena", "snow"]
WORDS = ["walk", "hut", "lake", "snow", "lena", "tea", "cold"]


def state(network: EpisodeNetwork) -> list:
    net = network.net
    return [net.t, net.x.copy(), net.w_ee.copy(), net.thresholds_e.copy(), net.stats()]


def full_copy_spikes(network: EpisodeNetwork, tokens: list[str]) -> np.ndarray:
    """The spikes of the query on a deep copy with plasticity off (the reference)."""
    frozen = copy.deepcopy(network.net)
    frozen.plastic = False
    inputs = []
    for token in tokens:
        inputs += [network.encoder.units(token)] + [None] * EVOKE_STEPS
    return frozen.run(inputs)


def near_renormalization(directory) -> EpisodeNetwork:
    """A network that has learned a little, a few steps before its exact renormalization."""
    network = EpisodeNetwork(1, directory)
    network.learn(WORDS)
    while network.net.t % RENORMALIZE_EVERY < RENORMALIZE_EVERY - 5:
        network.learn(WORDS[:1])  # two steps
    return network


def test_evoke_equals_a_full_copy_and_leaves_the_network_untouched(tmp_path):
    network = near_renormalization(tmp_path / "a")  # the query runs past t = 1024
    seen: list[tuple[int, np.ndarray]] = []
    for _ in range(3):
        before = state(network)
        network.evoke(QUERY, on_spikes=lambda step, spikes: seen.append((step, spikes)))
        step, spikes = seen.pop()
        assert step == network.net.t
        assert np.array_equal(spikes, full_copy_spikes(network, QUERY))
        for was, now in zip(before, state(network), strict=True):
            assert np.array_equal(was, now) if isinstance(was, np.ndarray) else was == now
    twin = near_renormalization(tmp_path / "b")  # the same history without the recalls
    for learner in (network, twin):
        learner.learn(WORDS + WORDS)
    assert network.net.t % RENORMALIZE_EVERY < RENORMALIZE_EVERY - 5
    assert np.array_equal(network.net.w_ee, twin.net.w_ee)


def test_learned_drive_is_the_weight_change_sent_by_the_query_assemblies(tmp_path):
    network = EpisodeNetwork(1, tmp_path)
    assert not network.learned_drive(QUERY).any()  # nothing learned yet
    for _ in range(20):
        network.learn(WORDS + QUERY)
    active = np.zeros(network.config.n_e)
    for token in dict.fromkeys(QUERY + QUERY[:1]):
        active[network.encoder.units(token)] += 1.0
    expected = (network.net.w_ee - initial_weights(network.config)) @ active
    expected[active > 0] = 0.0
    drive = network.learned_drive(QUERY + QUERY[:1])
    assert drive.any()
    assert np.allclose(drive, expected, rtol=1e-12, atol=1e-15)


def test_new_users_start_from_independent_copies_of_the_seeded_network(tmp_path):
    first, second = EpisodeNetwork(1, tmp_path), EpisodeNetwork(2, tmp_path)
    built = SORN(first.config, seed=NETWORK_SEED)
    first.learn(QUERY)  # learning in one user's network must not leak into another's
    built_spikes = built.run([first.encoder.units(word) for word in WORDS] + [None])
    second_spikes = second.net.run([second.encoder.units(word) for word in WORDS] + [None])
    assert np.array_equal(second_spikes, built_spikes)
    assert np.array_equal(second.net.w_ee, built.w_ee)
    assert not np.array_equal(first.net.w_ee, second.net.w_ee)


def presented(network: EpisodeNetwork, tokens: list[str]) -> list:
    """What storing an episode presents, step by step: each token's assembly (the first
    MAX_TOKENS_PRESENTED tokens), then the settling steps without input."""
    inputs = []
    for token in tokens[:MAX_TOKENS_PRESENTED]:
        inputs += [network.encoder.units(token)] * STEPS_PER_TOKEN
    return inputs + [None] * SETTLE_STEPS


def test_networks_learning_together_learn_what_each_learns_alone(tmp_path):
    """Episodes of every length (none, a few tokens, more than are presented), one network
    crossing its exact renormalization: learning together, one after the other and
    running the presented steps give the same traces, spikes handed to `on_spikes` and
    networks."""
    episodes = [WORDS * (MAX_TOKENS_PRESENTED // len(WORDS) + 2), [], WORDS[:3], QUERY]

    def networks(directory) -> list[EpisodeNetwork]:
        made = [near_renormalization(directory)]
        made += [EpisodeNetwork(user, directory) for user in (2, 3, 4)]
        made[2].learn(QUERY)
        return made

    together, alone, stepped = (networks(tmp_path / kind) for kind in ("1", "2", "3"))
    start = together[0].net.t
    handed: dict[str, list] = {"together": [], "alone": []}

    def keep(kind: str):
        return lambda first_step, spikes: handed[kind].append((first_step, spikes.copy()))

    traces = learn_together([(network, tokens, keep("together"))
                             for network, tokens in zip(together, episodes, strict=True)])
    assert traces == [network.learn(tokens, keep("alone"))
                      for network, tokens in zip(alone, episodes, strict=True)]
    spikes = [network.net.run(presented(network, tokens))
              for network, tokens in zip(stepped, episodes, strict=True)]
    assert traces == [trace_of(run[:, : network.config.n_e]).tobytes()
                      for network, run in zip(stepped, spikes, strict=True)]
    np.testing.assert_equal(handed["together"], handed["alone"])
    np.testing.assert_equal([run for _, run in handed["together"]], spikes)
    assert start // RENORMALIZE_EVERY < together[0].net.t // RENORMALIZE_EVERY
    for learned, one_by_one, reference in zip(together, alone, stepped, strict=True):
        np.testing.assert_equal(state(learned), state(reference))
        np.testing.assert_equal(state(one_by_one), state(reference))
