"""The counting-task harness: word stream, input pools, least-squares readout, contract."""

import argparse

import numpy as np
import pytest

from webapp.bench import counting


def parse(*argv: str) -> argparse.Namespace:
    """The benchmark's own command-line flags, as `sornmemory bench counting` parses them."""
    parser = argparse.ArgumentParser()
    counting.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("n", [1, 4, 10])
def test_symbol_stream_is_made_of_whole_abnc_and_denf_words(n):
    symbols = counting.symbol_stream(n, 2_000, np.random.default_rng(1))
    text = "".join(counting.SYMBOLS[s] for s in symbols)
    whole_words = text[: len(text) - len(text) % (n + 2)]
    words = [whole_words[i : i + n + 2] for i in range(0, len(whole_words), n + 2)]
    assert set(words) == {"a" + "b" * n + "c", "d" + "e" * n + "f"}
    assert 0.4 < words.count("a" + "b" * n + "c") / len(words) < 0.6


def test_symbol_stream_has_the_requested_length_and_is_seeded():
    first = counting.symbol_stream(5, 1_234, np.random.default_rng(7))
    again = counting.symbol_stream(5, 1_234, np.random.default_rng(7))
    other = counting.symbol_stream(5, 1_234, np.random.default_rng(8))
    assert len(first) == 1_234
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_each_symbol_drives_its_own_disjoint_pool_of_e_units():
    pools = counting.input_pools(200, np.random.default_rng(0))
    assert pools.shape == (6, counting.UNITS_PER_SYMBOL)
    assert len(np.unique(pools)) == pools.size
    assert pools.min() >= 0 and pools.max() < 200


def test_readout_learns_a_linearly_decodable_next_symbol():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=500)
    code = np.eye(4, dtype=bool)[labels]  # one unit per class fires ...
    distractors = rng.random((500, 16)) < 0.3  # ... among units that fire at random
    states = np.hstack([distractors[:, :8], code, distractors[:, 8:]])
    weights = counting.fit_readout(states[:400], labels[:400], 4)
    assert np.mean(counting.predict(weights, states[400:]) == labels[400:]) > 0.99


def test_readout_cannot_decode_what_the_state_does_not_hold():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=600)
    states = rng.random((600, 20)) < 0.5  # independent of the labels
    weights = counting.fit_readout(states[:300], labels[:300], 2)
    assert np.mean(counting.predict(weights, states[300:]) == labels[300:]) < 0.65


def test_a_short_counting_run_returns_the_contract_keys_with_accuracies_in_0_1():
    args = parse("--n", "3", "--steps", "600", "--train", "300", "--test", "300")
    result = counting.run(args)
    assert result["n"] == 3
    assert result["seeds"] == list(range(10))  # the default: a mean over seeds 0-9
    assert result["sorn_accuracy"] == pytest.approx(np.mean(result["sorn_accuracy_per_seed"]))
    for key in ("sorn_accuracy", "static_accuracy", "sorn_accuracy_all_symbols"):
        assert 0.0 <= result[key] <= 1.0
    assert counting.run(args)["sorn_accuracy"] == result["sorn_accuracy"]  # seeded


def test_a_sweep_writes_a_plot_and_one_row_per_length(tmp_path):
    path = tmp_path / "counting.png"
    args = parse(
        "--steps", "300", "--train", "200", "--test", "200", "--sweep", "2,3", "--plot", str(path)
    )
    result = counting.run(args)
    assert [row["n"] for row in result["sweep"]] == [2, 3]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "static" in counting.format_report(result)


def test_the_task_network_uses_fast_inhibition_unless_asked_for_the_delayed_kind():
    assert counting.counting_config().fast_inhibition
    short = ("--n", "3", "--steps", "600", "--train", "300", "--test", "300")
    fast, delayed = counting.run(parse(*short)), counting.run(parse(*short, "--delayed-inhibition"))
    assert fast["fast_inhibition"] and not delayed["fast_inhibition"]
    assert fast["sorn_rate_e"] != delayed["sorn_rate_e"]


def test_the_noise_is_normal_unless_the_lab_codes_uniform_form_is_asked_for():
    assert counting.counting_config().noise_distribution == "normal"
    assert counting.counting_config(noise_distribution="uniform").noise_distribution == "uniform"
    short = ("--n", "3", "--steps", "600", "--train", "300", "--test", "300")
    normal = counting.run(parse(*short))
    uniform = counting.run(parse(*short, "--noise-distribution", "uniform"))
    assert (normal["noise_distribution"], uniform["noise_distribution"]) == ("normal", "uniform")
    assert normal["sorn_rate_e"] != uniform["sorn_rate_e"]
