"""The counting-task network computes the Triesch lab's step (Del Papa's SORN_V2).

A dense restatement of that step, started from the engine's initial state and fed the
engine's own noise, must give the same spikes, thresholds and weights; docs/EXPERIMENTS.md
§1 lists the step. This is what rules out an engine bug behind the counting results.
"""

import dataclasses

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig
from webapp.sorn.randomness import StepDraws, seed_key

SEED = 5
STEPS = 1500  # crosses an exact renormalization (every 1024 steps)
LAB_COUNTING_NETWORK = SORNConfig(
    n_e=60, n_i=12, ee_inputs_per_unit=10, ei_connectivity=1.0, ie_connectivity=1.0,
    eta_stdp=0.005, eta_ip=0.01, h_ip=0.1, te_max=0.5, ti_max=0.5, noise_sigma=0.05,
    fast_inhibition=True, istdp=False, structural=True, p_add=0.0,
)


def lab_run(net: SORN, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lab's step, dense and [post, pre]: drive from x(t), y(t), thresholds and noise,
    plus the input; x(t+1) = drive >= 0; y(t+1) from x(t+1); then IP on x(t+1), STDP on the
    existing E->E synapses with x(t) and x(t+1), weights below 0 set to 0 and those at ~0
    pruned, and each unit's E->E inputs rescaled to sum 1. Returns spikes, T_E, W_EE."""
    cfg = net.config
    n_e = cfg.n_e
    start = net.to_arrays()
    w_ee, w_ei, w_ie = start.ee_weights.T.copy(), start.ei_weights.T, start.ie_weights.T
    t_e, t_i = start.thresholds_e.copy(), start.thresholds_i
    x, y = start.x.astype(float), start.y.astype(float)
    spikes = []
    for t, units in enumerate(inputs):
        noise = StepDraws(seed_key(SEED), t, n_e, net.sigma, cfg.noise_distribution).noise
        drive = w_ee @ x - w_ei @ y - t_e + noise[:n_e]
        drive[units] += cfg.input_gain
        x_new = (drive >= 0).astype(float)
        y = (w_ie @ x_new - t_i >= 0).astype(float)
        t_e += cfg.eta_ip * (x_new - cfg.h_ip)
        w_ee += cfg.eta_stdp * (np.outer(x_new, x) - np.outer(x, x_new)) * (w_ee > 0)
        w_ee[w_ee <= cfg.prune_threshold] = 0.0
        w_ee /= w_ee.sum(axis=1, keepdims=True)
        x = x_new
        spikes.append(np.concatenate([x, y]).astype(bool))
    return np.array(spikes), t_e, w_ee


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_the_counting_network_takes_the_labs_step_exactly(noise):
    config = dataclasses.replace(LAB_COUNTING_NETWORK, noise_distribution=noise)
    net = SORN(config, seed=SEED, backend="numpy")
    rng = np.random.default_rng(0)
    pools = rng.choice(config.n_e, size=(3, 5), replace=False)
    inputs = [pools[s] for s in rng.integers(0, 3, size=STEPS)]
    initial = net.w_ee

    expected_spikes, expected_thresholds, expected_weights = lab_run(net, inputs)
    spikes = net.run(inputs)

    np.testing.assert_array_equal(spikes, expected_spikes)
    np.testing.assert_allclose(net.thresholds_e, expected_thresholds, rtol=0, atol=1e-9)
    np.testing.assert_allclose(net.w_ee, expected_weights, rtol=0, atol=1e-9)
    assert np.abs(net.w_ee - initial).max() > 0.05  # the weights did learn
    assert 0.05 < spikes[:, : config.n_e].mean() < 0.2
