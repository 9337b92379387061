"""Token encoding: stable, well spread, unbounded vocabulary."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.sorn import TokenEncoder


def test_a_token_maps_to_distinct_units_in_range():
    encoder = TokenEncoder(n_e=300, units_per_token=10, seed=0)
    for token in ["hello", "", "Ünïcödé", "東京", "a" * 1000, "42"]:
        units = encoder.units(token)
        assert units.shape == (10,)
        assert len(set(units.tolist())) == 10
        assert units.min() >= 0 and units.max() < 300


def test_the_same_token_gives_the_same_units_and_others_differ():
    encoder = TokenEncoder(n_e=300, units_per_token=10, seed=0)
    assert np.array_equal(encoder.units("memory"), TokenEncoder(300, 10, seed=0).units("memory"))
    assert not np.array_equal(encoder.units("memory"), encoder.units("Memory"))
    reseeded = TokenEncoder(300, 10, seed=1)
    assert not np.array_equal(encoder.units("memory"), reseeded.units("memory"))


def test_units_are_the_same_in_a_fresh_process():
    tokens = ["alpha", "Zürich", "🙂", "token with spaces"]
    here = TokenEncoder(n_e=300, units_per_token=8, seed=123)
    script = (
        "from webapp.sorn import TokenEncoder\n"
        "encoder = TokenEncoder(n_e=300, units_per_token=8, seed=123)\n"
        f"for token in {tokens!r}:\n"
        "    print(' '.join(map(str, encoder.units(token))))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "1"},
    ).stdout.splitlines()
    assert output == [" ".join(map(str, here.units(token))) for token in tokens]


def test_units_are_spread_evenly_over_the_network():
    encoder = TokenEncoder(n_e=300, units_per_token=10, seed=0)
    counts = np.bincount(
        np.concatenate([encoder.units(f"word{k}") for k in range(3000)]), minlength=300
    )
    expected = 3000 * 10 / 300
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected
    overlaps = [
        len(np.intersect1d(encoder.units(f"a{k}"), encoder.units(f"b{k}"))) for k in range(500)
    ]
    assert np.mean(overlaps) < 1.0  # random sets of 10 in 300 share 1/3 unit on average


def test_inputs_gives_one_entry_per_token():
    encoder = TokenEncoder(n_e=50, units_per_token=3, seed=0)
    entries = encoder.inputs(["a", "b", "a"])
    assert len(entries) == 3 and np.array_equal(entries[0], entries[2])


@pytest.mark.parametrize("units_per_token", [0, 301])
def test_impossible_sizes_are_refused(units_per_token):
    with pytest.raises(ValueError):
        TokenEncoder(n_e=300, units_per_token=units_per_token)


@settings(max_examples=200, deadline=None)
@given(token=st.text(max_size=50), n_e=st.integers(1, 400), seed=st.integers(0, 2**64 - 1))
def test_any_text_gets_valid_units(token, n_e, seed):
    per_token = min(n_e, 7)
    units = TokenEncoder(n_e=n_e, units_per_token=per_token, seed=seed).units(token)
    assert len(np.unique(units)) == per_token
    assert units.min() >= 0 and units.max() < n_e
