"""The input-free self-organization harness (Zheng 2013): summary keys, plateau, plot."""

import argparse

import numpy as np

from webapp.bench import selforg


def test_plateau_change_is_zero_for_a_flat_series_and_signed_for_a_drift():
    assert selforg.plateau_change(np.full(100, 0.05)) == 0.0
    rising = np.linspace(1.0, 2.0, 100)
    assert selforg.plateau_change(rising) > 0.1
    assert selforg.plateau_change(rising[::-1]) < -0.1


def test_weight_shape_tells_a_lognormal_from_a_uniform_sample():
    rng = np.random.default_rng(0)
    lognormal = selforg.weight_shape(rng.lognormal(-3.0, 1.0, size=20_000))
    uniform = selforg.weight_shape(rng.uniform(0.01, 0.1, size=20_000))
    assert lognormal["weight_skewness"] > 2.0
    assert abs(lognormal["log_weight_skewness"]) < 0.1
    assert abs(uniform["weight_skewness"]) < 0.1


def test_a_short_selforg_run_returns_its_keys_and_writes_three_panels(tmp_path):
    path = tmp_path / "selforg.png"
    parser = argparse.ArgumentParser()
    selforg.add_arguments(parser)
    result = selforg.run(parser.parse_args(["--steps", "4000", "--plot", str(path)]))
    for key in (
        "rate_e",
        "connection_fraction_end",
        "connection_fraction_last_quarter_change",
        "weight_skewness",
        "log_weight_skewness",
        "steps",
        "seconds",
    ):
        assert key in result
    assert result["steps"] == 4_000
    assert 0.0 <= result["rate_e"] <= 1.0
    assert 0.0 < result["connection_fraction_end"] <= 1.0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_within_unit_spread_is_zero_when_each_unit_splits_its_input_evenly():
    synapses = np.array([[False, True, True, True], [True, False, True, False]])
    even = np.where(synapses, 1.0 / synapses.sum(axis=1, keepdims=True), 0.0)
    uneven = np.where(synapses, [[0, 0.1, 0.3, 0.6], [0.9, 0, 0.1, 0]], 0.0)
    assert selforg.within_unit_spread(even, synapses) == 0.0
    assert selforg.within_unit_spread(uneven, synapses) > 0.5
