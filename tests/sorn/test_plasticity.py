"""Each plasticity rule does what the equations say, and each switch really turns it off."""

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig

ALL_OFF = dict(stdp=False, istdp=False, normalization=False, ip=False, structural=False)


def small(seed: int = 0, **overrides) -> SORN:
    """A 60 E + 15 I network, so a test runs many steps quickly."""
    settings = dict(n_e=60, n_i=15) | overrides
    return SORN(SORNConfig(**settings), seed=seed)


def warmed(steps: int = 50, **overrides) -> SORN:
    net = small(**overrides)
    net.run(steps, record=False)
    return net


# ------------------------------------------------------------------------ STDP


def test_stdp_changes_each_synapse_by_the_published_rule():
    eta = 0.01
    net = warmed(**(ALL_OFF | dict(stdp=True, eta_stdp=eta)))
    for _ in range(20):
        before, exists, x_t = net.w_ee, net.ee_synapses, net.x
        x_next = net.step()[: net.config.n_e].astype(float)
        x_now = x_t.astype(float)
        # ΔW_ij = η [x_i(t+1) x_j(t) − x_i(t) x_j(t+1)], i post (row), j pre (column).
        change = eta * (np.outer(x_next, x_now) - np.outer(x_now, x_next)) * exists
        np.testing.assert_allclose(net.w_ee, np.maximum(before + change, 0.0), atol=1e-12)
        assert np.array_equal(net.ee_synapses, exists)


def test_pre_before_post_potentiates_and_post_before_pre_depresses():
    net = warmed(**(ALL_OFF | dict(stdp=True, eta_stdp=0.01)))
    potentiated = depressed = 0
    for _ in range(30):
        before, exists, x_now = net.w_ee, net.ee_synapses, net.x
        x_next = net.step()[: net.config.n_e]
        causal = np.outer(x_next & ~x_now, x_now & ~x_next) & exists  # post after pre
        acausal = np.outer(x_now & ~x_next, x_next & ~x_now) & exists  # post before pre
        assert np.all(net.w_ee[causal] > before[causal])
        assert np.all(net.w_ee[acausal] <= before[acausal])
        assert np.all(net.w_ee[acausal & (before > 0.01)] < before[acausal & (before > 0.01)])
        potentiated += causal.sum()
        depressed += acausal.sum()
    assert potentiated > 0 and depressed > 0


def test_stdp_never_creates_synapses_or_negative_weights():
    net = warmed(**(ALL_OFF | dict(stdp=True, eta_stdp=0.05)))
    exists = net.ee_synapses
    net.run(500, record=False)
    assert np.array_equal(net.ee_synapses, exists)
    assert np.all(net.w_ee[~exists] == 0.0)
    assert np.all(net.w_ee >= 0.0)


# ---------------------------------------------------------------- normalization


def test_normalization_keeps_every_units_incoming_weights_summing_to_one():
    net = warmed(**(ALL_OFF | dict(stdp=True, istdp=True, normalization=True, structural=True)))
    for _ in range(3):
        net.run(400, record=False)  # crosses step 1024, where scales are folded back
        np.testing.assert_allclose(net.w_ee.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(net.w_ei.sum(axis=1), 1.0, atol=1e-9)


def test_normalized_stdp_equals_stdp_followed_by_dividing_each_row_by_its_sum():
    eta = 0.01
    net = warmed(**(ALL_OFF | dict(stdp=True, normalization=True, eta_stdp=eta)))
    before, exists, x_now = net.w_ee, net.ee_synapses, net.x.astype(float)
    x_next = net.step()[: net.config.n_e].astype(float)
    raw = np.maximum(before + eta * (np.outer(x_next, x_now) - np.outer(x_now, x_next)) * exists, 0)
    np.testing.assert_allclose(net.w_ee, raw / raw.sum(axis=1, keepdims=True), atol=1e-12)


def test_without_normalization_the_sums_drift_from_one():
    net = warmed(**(ALL_OFF | dict(stdp=True, istdp=True, eta_stdp=0.01)))
    net.run(500, record=False)
    assert np.abs(net.w_ee.sum(axis=1) - 1.0).max() > 0.01
    assert np.abs(net.w_ei.sum(axis=1) - 1.0).max() > 0.01


# ------------------------------------------------------------------------- IP


def test_intrinsic_plasticity_moves_thresholds_by_eta_times_rate_error():
    net = warmed(**(ALL_OFF | dict(ip=True, eta_ip=0.01, h_ip=0.1)))
    before = net.thresholds_e
    x_next = net.step()[: net.config.n_e]
    np.testing.assert_allclose(net.thresholds_e - before, 0.01 * (x_next - 0.1), atol=1e-15)


def test_thresholds_move_toward_the_target_rate():
    net = warmed(**(ALL_OFF | dict(ip=True, input_gain=5.0)))
    driven = np.arange(5)
    start = net.thresholds_e
    spikes = net.run([driven] * 300)
    assert np.all(net.thresholds_e[driven] > start[driven])  # firing too much: harder to fire
    silent = ~spikes[:, : net.config.n_e].any(axis=0)
    assert silent.any()
    assert np.all(net.thresholds_e[silent] < start[silent])  # silent: easier to fire


def test_firing_rate_settles_near_the_target_rate():
    net = SORN(SORNConfig(), seed=4)
    net.run(5000, record=False)
    stats = net.stats()
    assert abs(stats["rate_e"] - net.config.h_ip) < 0.02
    assert 0.0 < stats["rate_i"] < 1.0


# ---------------------------------------------------------------------- iSTDP


def test_istdp_changes_each_synapse_by_the_zheng_rule():
    eta, h_ip, floor = 0.01, 0.1, 0.001
    net = warmed(**(ALL_OFF | dict(istdp=True, eta_istdp=eta, h_ip=h_ip, istdp_floor=floor)))
    for _ in range(20):
        before, exists, y_now = net.w_ei, net.ei_synapses, net.y.astype(float)
        x_next = net.step()[: net.config.n_e].astype(float)
        # ΔW_ik = −η y_k(t) [1 − x_i(t+1)(1 + 1/H_IP)]; i post E (row), k pre I (column).
        change = -eta * np.outer(1.0 - x_next * (1.0 + 1.0 / h_ip), y_now) * exists
        expected = np.where(exists, np.maximum(before + change, floor), 0.0)
        np.testing.assert_allclose(net.w_ei, expected, atol=1e-12)


def test_istdp_strengthens_inhibition_onto_overactive_units_and_weakens_it_onto_silent_ones():
    net = warmed(**(ALL_OFF | dict(istdp=True, input_gain=5.0)))
    driven = np.arange(5)
    start = net.w_ei.sum(axis=1)
    spikes = net.run([driven] * 300)
    inhibition = net.w_ei.sum(axis=1)
    assert np.all(inhibition[driven] > start[driven])
    n_e = net.config.n_e
    inhibitors_fired = net.ei_synapses[:, spikes[:, n_e:].any(axis=0)].any(axis=1)
    silent = ~spikes[:, :n_e].any(axis=0) & inhibitors_fired
    assert silent.any()
    assert np.all(inhibition[silent] < start[silent])


# ----------------------------------------------------------------- structural


def test_structural_plasticity_adds_synapses_of_weight_w_new_at_free_places():
    net = warmed(**(ALL_OFF | dict(structural=True, p_add=1.0, w_new=0.001)))
    exists = net.ee_synapses
    net.run(40, record=False)
    added = net.ee_synapses & ~exists
    assert added.sum() == 40  # p_add = 1: one per step, nothing pruned without STDP
    assert not np.any(np.diag(net.ee_synapses))
    np.testing.assert_allclose(net.w_ee[added], 0.001)


def test_structural_plasticity_prunes_synapses_that_fall_to_zero():
    net = warmed(**(ALL_OFF | dict(stdp=True, structural=True, p_add=0.0, eta_stdp=0.05)))
    exists = net.ee_synapses
    net.run(300, record=False)
    assert net.ee_synapses.sum() < exists.sum()
    assert not np.any(net.ee_synapses & ~exists)
    assert np.all(net.w_ee[net.ee_synapses] > net.config.prune_threshold)


def test_the_number_of_synapses_stays_bounded_while_synapses_come_and_go():
    net = small(seed=1, p_add=0.2)
    first = net.ee_synapses
    counts = []
    for _ in range(20):
        net.run(500, record=False)
        counts.append(int(net.ee_synapses.sum()))
    assert np.any(net.ee_synapses & ~first) and np.any(first & ~net.ee_synapses)
    late = np.array(counts[10:])
    assert late.min() > 0
    assert late.max() - late.min() < 0.5 * late.mean()


# -------------------------------------------------------------- switches, freezing


@pytest.mark.parametrize(
    "rule, unchanged",
    [
        ("stdp", "w_ee"),
        ("istdp", "w_ei"),
        ("ip", "thresholds_e"),
        ("structural", "ee_synapses"),
    ],
)
def test_switching_a_rule_off_leaves_what_it_changes_alone(rule, unchanged):
    overrides = {rule: False}
    if rule == "stdp":
        overrides["structural"] = False  # new synapses would change w_ee too
    net = warmed(seed=2, **overrides)
    before = getattr(net, unchanged)
    net.run(600, record=False)
    np.testing.assert_allclose(getattr(net, unchanged), before, rtol=0, atol=1e-12)
    switched_on = warmed(seed=2)
    reference = getattr(switched_on, unchanged)
    switched_on.run(600, record=False)
    assert not np.allclose(getattr(switched_on, unchanged), reference, rtol=0, atol=1e-12)


def test_freezing_keeps_weights_thresholds_and_synapses_exactly():
    net = warmed()
    net.plastic = False
    arrays = (net.w_ee, net.w_ei, net.w_ie, net.ee_synapses, net.thresholds_e, net.thresholds_i)
    spikes = net.run(600)
    assert spikes.any()
    after = (net.w_ee, net.w_ei, net.w_ie, net.ee_synapses, net.thresholds_e, net.thresholds_i)
    for old, new in zip(arrays, after, strict=True):
        assert np.array_equal(old, new)
    net.plastic = True
    net.run(100, record=False)
    assert not np.array_equal(net.w_ee, arrays[0])
