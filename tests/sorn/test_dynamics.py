"""Running a network: shapes, input, validation and determinism."""

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig, TokenEncoder


def test_a_new_network_has_the_configured_size_and_connectivity():
    net = SORN(SORNConfig(), seed=0)
    stats = net.stats()
    assert net.w_ee.shape == (300, 300) and net.w_ei.shape == (300, 75)
    assert net.w_ie.shape == (75, 300)
    assert stats["synapses"] == 300 * 45  # 15 % of the 299 other E units, for every E unit
    assert not np.any(np.diag(net.ee_synapses))
    np.testing.assert_allclose(net.w_ee.sum(axis=1), 1.0)
    np.testing.assert_allclose(net.w_ie.sum(axis=1), 1.0)
    assert np.all((net.thresholds_e >= 0) & (net.thresholds_e <= 1.0))
    assert np.all((net.thresholds_i >= 0) & (net.thresholds_i <= 0.5))


def test_ee_inputs_per_unit_overrides_the_connectivity_fraction():
    net = SORN(SORNConfig(n_e=200, n_i=40, ee_inputs_per_unit=10), seed=0)
    assert np.all(net.ee_synapses.sum(axis=1) == 10)


def test_run_returns_spikes_e_units_first_and_step_one_row():
    net = SORN(SORNConfig(n_e=40, n_i=10), seed=1)
    spikes = net.run([None, [1, 2], np.array([3])])
    assert spikes.shape == (3, 50) and spikes.dtype == bool
    assert np.array_equal(net.x, spikes[-1, :40]) and np.array_equal(net.y, spikes[-1, 40:])
    row = net.step([5])
    assert row.shape == (50,)
    assert net.run(4, record=False) is None
    assert net.t == 8


def test_driven_units_fire_more_than_the_rest():
    net = SORN(SORNConfig(), seed=2)
    net.plastic = False
    driven = TokenEncoder(300, 10, seed=0).units("hello")
    spikes = net.run([driven] * 200)[:, :300]
    others = np.setdiff1d(np.arange(300), driven)
    assert spikes[:, driven].mean() > 3 * spikes[:, others].mean()


@pytest.mark.parametrize("bad", [[300], [-1], [[1, 2]], [1.5]])
def test_bad_input_units_are_refused_before_anything_runs(bad):
    net = SORN(SORNConfig(), seed=0)
    with pytest.raises(ValueError):
        net.run([None, bad])
    assert net.t == 0


def test_invalid_configurations_are_refused():
    with pytest.raises(ValueError):
        SORNConfig(ee_connectivity=1.5)
    with pytest.raises(ValueError):
        SORNConfig(eta_stdp=-0.1)
    with pytest.raises(ValueError):
        SORNConfig(n_e=1)
    with pytest.raises(ValueError):
        SORN(SORNConfig(), seed=-1)


def test_same_seed_and_inputs_give_the_same_spikes():
    inputs = [None if k % 3 else [k % 300, (7 * k) % 300] for k in range(700)]
    first = SORN(SORNConfig(), seed=11).run(inputs)
    second = SORN(SORNConfig(), seed=11).run(inputs)
    other = SORN(SORNConfig(), seed=12).run(inputs)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_a_run_split_into_calls_equals_one_run():
    inputs = [[k % 300] for k in range(1100)]
    whole = SORN(SORNConfig(), seed=5)
    expected = whole.run(inputs)
    split = SORN(SORNConfig(), seed=5)
    pieces = [split.run(inputs[:1]), split.run(inputs[1:256]), split.run(inputs[256:700])]
    pieces += [split.step(units)[None] for units in inputs[700:705]]
    pieces.append(split.run(inputs[705:]))
    assert np.array_equal(np.vstack(pieces), expected)
    assert np.array_equal(split.w_ee, whole.w_ee)
    assert np.array_equal(split.thresholds_e, whole.thresholds_e)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_frozen_copy_runs_like_a_frozen_network_and_leaves_the_original_alone(backend):
    net = SORN(SORNConfig(), seed=3, backend=backend)
    net.run([[k % 300] for k in range(1010)], record=False)  # next run crosses t = 1024
    before = (net.t, net.x.copy(), net.y.copy(), net.w_ee, net.thresholds_e, net.stats())
    reference = SORN.from_arrays(net.to_arrays(), backend=backend)
    reference.plastic = False
    inputs = [[k % 300, (5 * k) % 300] for k in range(40)]

    frozen = net.frozen_copy()
    assert np.array_equal(frozen.run(inputs), reference.run(inputs))
    after = (net.t, net.x, net.y, net.w_ee, net.thresholds_e, net.stats())
    assert before[0] == after[0] and before[5] == after[5]
    for old, new in zip(before[1:5], after[1:5], strict=True):
        assert np.array_equal(old, new)
    assert net.plastic


def test_stats_are_plain_json_values():
    net = SORN(SORNConfig(), seed=0)
    net.run(300, record=False)
    stats = net.stats()
    assert set(stats) >= {
        "rate_e", "rate_i", "synapses", "mean_weight", "connection_fraction",
        "weight_histogram", "step",
    }
    histogram = stats["weight_histogram"]
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert sum(histogram["counts"]) == stats["synapses"]
    assert 0 < stats["connection_fraction"] < 1
    assert stats["step"] == 300
    weights = net.w_ee[net.ee_synapses]  # the statistics are those of the weight matrix
    assert stats["synapses"] == weights.size
    assert stats["mean_weight"] == pytest.approx(weights.mean(), rel=1e-12)


def test_the_weights_out_of_some_units_are_those_columns_of_w_ee():
    net = SORN(SORNConfig(), seed=0)
    net.run([[1, 2, 3], [40, 41]] * 100, record=False)
    pre = np.array([1, 2, 40, 299])
    assert np.array_equal(net.w_ee_from(pre), net.w_ee[:, pre])


@pytest.mark.parametrize("fast", [False, True])
def test_inhibitory_units_answer_the_e_state_of_their_own_step_with_fast_inhibition(fast):
    """Without noise on I units, y(t+1) = Θ(W_IE x(t+1) − T_I) with fast inhibition and
    Θ(W_IE x(t) − T_I) without."""
    net = SORN(SORNConfig(n_e=60, n_i=15, fast_inhibition=fast), seed=3)
    spikes = net.run([[k % 60, (k * 7) % 60] for k in range(300)])
    x, y = spikes[:, :60], spikes[:, 60:]
    e_state = x[1:] if fast else x[:-1]
    expected = e_state @ net.w_ie.T - net.thresholds_i >= 0  # plastic, but E->I never changes
    assert np.array_equal(y[1:], expected)
    assert y.any() and not y.all()
