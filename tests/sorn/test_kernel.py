"""The numba kernel is the numpy engine, faster: same seed and inputs give the same spikes,
weights, thresholds and every other piece of state, bit for bit."""

import dataclasses

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig, TokenEncoder, load_network
from webapp.sorn.network import resolve_backend

RULES = ("stdp", "istdp", "normalization", "ip", "structural")


def twins(config: SORNConfig | None = None, seed: int = 0) -> tuple[SORN, SORN]:
    return SORN(config, seed=seed, backend="numpy"), SORN(config, seed=seed, backend="numba")


def token_inputs(n_e: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    ranks = np.random.default_rng(seed).zipf(1.3, size=steps) % 2000
    return TokenEncoder(n_e=n_e, units_per_token=10, seed=seed).inputs(f"w{r}" for r in ranks)


def assert_same_state(reference: SORN, compiled: SORN) -> None:
    """Every field of the saved state is exactly equal (no tolerance)."""
    expected, actual = reference.to_arrays(), compiled.to_arrays()
    for field in dataclasses.fields(expected):
        want, got = getattr(expected, field.name), getattr(actual, field.name)
        if isinstance(want, np.ndarray):
            assert want.dtype == got.dtype, field.name
            assert np.array_equal(want, got), field.name
        else:
            assert want == got, field.name


@pytest.mark.parametrize("with_tokens", [True, False], ids=["tokens", "spontaneous"])
def test_twenty_thousand_steps_with_all_rules_match_exactly(with_tokens):
    reference, compiled = twins(seed=3)
    inputs = token_inputs(300, 20_000) if with_tokens else 20_000
    spikes = reference.run(inputs)
    assert np.array_equal(spikes, compiled.run(inputs))
    assert 0.05 < spikes[-1000:, :300].mean() < 0.2  # a living network, not a silent one
    assert_same_state(reference, compiled)


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_switched_off_matches(rule):
    reference, compiled = twins(SORNConfig(n_e=120, n_i=30, **{rule: False}), seed=5)
    inputs = token_inputs(120, 2_500, seed=1)  # crosses two exact renormalizations
    assert np.array_equal(reference.run(inputs), compiled.run(inputs))
    assert_same_state(reference, compiled)


def test_frozen_network_matches_and_stays_frozen():
    reference, compiled = twins(SORNConfig(n_e=120, n_i=30), seed=6)
    reference.run(700, record=False)
    compiled.run(700, record=False)
    reference.plastic = compiled.plastic = False
    weights = compiled.w_ee
    inputs = token_inputs(120, 1_500)
    assert np.array_equal(reference.run(inputs), compiled.run(inputs))
    assert_same_state(reference, compiled)
    assert np.array_equal(compiled.w_ee, weights)


def test_runs_split_anyhow_match_one_reference_run():
    reference, compiled = twins(SORNConfig(n_e=120, n_i=30), seed=7)
    inputs = token_inputs(120, 3_000)
    expected = reference.run(inputs)
    pieces, start = [], 0
    for size in (1, 255, 2, 300, 1024, 17):
        pieces.append(compiled.run(inputs[start : start + size]))
        start += size
    pieces.append(compiled.step(inputs[start])[None])
    compiled.run(inputs[start + 1 :], record=False)
    assert np.array_equal(np.concatenate(pieces), expected[: start + 1])
    assert_same_state(reference, compiled)


@pytest.mark.parametrize("first, second", [("numba", "numpy"), ("numpy", "numba")])
def test_saved_by_one_backend_continues_identically_in_the_other(tmp_path, first, second):
    config = SORNConfig(n_e=120, n_i=30)
    inputs = token_inputs(120, 3_000)
    uninterrupted = SORN(config, seed=8, backend=second)
    expected = uninterrupted.run(inputs)
    saver = SORN(config, seed=8, backend=first)
    saver.run(inputs[:1_100], record=False)
    saver.save(tmp_path / "net.npz")
    loaded = load_network(tmp_path / "net.npz")
    loaded.backend = second
    assert np.array_equal(loaded.run(inputs[1_100:]), expected[1_100:])
    assert_same_state(uninterrupted, loaded)


def test_backend_can_change_mid_run():
    reference, switching = twins(SORNConfig(n_e=120, n_i=30), seed=9)
    inputs = token_inputs(120, 2_000)
    expected = reference.run(inputs)
    first = switching.run(inputs[:700])
    switching.backend = "numpy"
    assert np.array_equal(np.concatenate([first, switching.run(inputs[700:])]), expected)


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_noisy_inhibition_and_repeated_input_units_match(noise):
    """Noise on I units (Zheng 2013) and an entry naming a unit twice (numpy adds once)."""
    config = SORNConfig(
        n_e=100, n_i=20, noise_sigma_i=0.2, input_gain=0.7, noise_distribution=noise
    )
    reference, compiled = twins(config, seed=10)
    inputs = [[3, 3, 50], None, [], np.array([7, 8, 7, 7])] * 500
    assert np.array_equal(reference.run(inputs), compiled.run(inputs))
    assert_same_state(reference, compiled)


def test_bursts_and_crowded_small_networks_match():
    """Strong input makes most units fire at once; a nearly full E->E matrix sends new
    synapses to the fallback that scans every free place, or finds none."""
    burst = [np.arange(0, 90, dtype=np.intp), None, None, [5]] * 400
    reference, compiled = twins(SORNConfig(n_e=100, n_i=25, input_gain=3.0), seed=11)
    assert np.array_equal(reference.run(burst), compiled.run(burst))
    assert_same_state(reference, compiled)

    crowded = SORNConfig(n_e=8, n_i=2, ee_inputs_per_unit=7, p_add=1.0, eta_stdp=0.05)
    reference, compiled = twins(crowded, seed=12)
    assert np.array_equal(reference.run(3_000), compiled.run(3_000))
    assert_same_state(reference, compiled)


def test_rows_that_lose_many_synapses_at_once_match():
    """Depression strong enough to prune several synapses of a row in one step: the
    compiled kernel changes only a row's slots whose post fired, last first, and a pruned
    slot takes the row's last synapse."""
    config = SORNConfig(n_e=60, n_i=15, eta_stdp=0.05, prune_threshold=0.02, p_add=0.5)
    reference, compiled = twins(config, seed=16)
    inputs = token_inputs(60, 1_500, seed=2)
    assert np.array_equal(reference.run(inputs), compiled.run(inputs))
    assert_same_state(reference, compiled)
    assert reference.stats()["synapses"] < 0.5 * config.ee_inputs * config.n_e


def test_backend_choice():
    assert resolve_backend("auto") == "numba"  # numba is installed with the test extra
    assert resolve_backend("numpy") == "numpy"
    assert SORN(SORNConfig(n_e=10, n_i=2)).backend == "numba"
    with pytest.raises(ValueError, match="backend"):
        SORN(SORNConfig(n_e=10, n_i=2), backend="gpu")


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_fast_inhibition_matches(noise):
    """I units driven by the new E state, with noise on them and input, both backends
    (with the lab's uniform noise this is the counting-task network's step)."""
    config = SORNConfig(
        n_e=100, n_i=20, fast_inhibition=True, noise_sigma_i=0.1, noise_distribution=noise
    )
    reference, compiled = twins(config, seed=13)
    inputs = token_inputs(100, 2_000)
    assert np.array_equal(reference.run(inputs), compiled.run(inputs))
    assert_same_state(reference, compiled)



def test_synapse_rows_that_fill_up_grow_and_still_match():
    """The compiled backend keeps E->E synapses in rows with room for a few more; a
    synapse added every step (and none pruned, without STDP) fills them, so they are
    rebuilt larger mid-run, bits intact."""
    reference, compiled = twins(SORNConfig(n_e=60, n_i=15, p_add=1.0, stdp=False), seed=14)
    inputs = token_inputs(60, 2_000)
    assert np.array_equal(reference.run(inputs[:1]), compiled.run(inputs[:1]))
    room = compiled._ee_rows.post.shape[1]
    assert np.array_equal(reference.run(inputs[1:]), compiled.run(inputs[1:]))
    assert compiled._ee_rows.post.shape[1] > room
    assert_same_state(reference, compiled)


def test_reading_weights_between_compiled_runs_changes_nothing():
    """The compiled backend holds E->E synapses as slot rows instead of dense arrays, and
    builds dense copies when they are read; the runs that follow (numba, then numpy, which
    takes the dense arrays back, then numba again) continue exactly."""
    reference, compiled = twins(SORNConfig(n_e=120, n_i=30), seed=15)
    inputs = token_inputs(120, 3_000)
    expected = reference.run(inputs)
    pieces = [compiled.run(inputs[:500])]
    assert compiled.stats()["synapses"] == int(compiled.ee_synapses.sum())
    pieces.append(compiled.run(inputs[500:1_200]))
    compiled.backend = "numpy"
    pieces.append(compiled.run(inputs[1_200:1_600]))
    compiled.backend = "numba"
    frozen = compiled.frozen_copy()
    weights = compiled.w_ee
    frozen.run(inputs[:300], record=False)
    assert np.array_equal(compiled.w_ee, weights)
    pieces.append(compiled.run(inputs[1_600:]))
    assert np.array_equal(np.concatenate(pieces), expected)
    assert_same_state(reference, compiled)
    pre = np.array([5, 0, 77, 5])
    assert np.array_equal(compiled.w_ee_from(pre), reference.w_ee_from(pre))
    assert compiled.stats() == reference.stats()
    assert compiled.nbytes() < 0.6 * reference.nbytes()  # no dense E->E arrays held


def test_a_read_only_input_array_runs_the_kernel_already_compiled():
    from webapp.sorn import kernel

    net = SORN(SORNConfig(), seed=0, backend="numba")
    net.run([np.array([1, 2, 3])])
    compiled = len(kernel.run_many.signatures)
    units = np.array([4, 5, 6])
    units.flags.writeable = False  # as a cached token's units are
    net.run([units])
    assert len(kernel.run_many.signatures) == compiled  # no second compile (seconds)
