"""Saving and loading: exact continuation, compact files, and clear errors for bad files."""

import copy
import io
import json
import zipfile

import numpy as np
import pytest

from webapp.sorn import SORN, NetworkFileError, SORNConfig, load_network


@pytest.fixture
def trained(tmp_path):
    net = SORN(SORNConfig(), seed=9)
    net.run([[k % 300, (k * 13) % 300] for k in range(700)], record=False)
    path = tmp_path / "net.npz"
    net.save(path)
    return net, path


def test_a_loaded_network_continues_exactly_like_the_saved_one(trained):
    net, path = trained
    loaded = load_network(path)
    assert loaded.t == net.t and loaded.seed == net.seed and loaded.config == net.config
    inputs = [None if k % 2 else [k % 300] for k in range(900)]  # crosses t = 1024
    assert np.array_equal(loaded.run(inputs), net.run(inputs))
    assert np.array_equal(loaded.w_ee, net.w_ee)
    assert np.array_equal(loaded.w_ei, net.w_ei)
    assert np.array_equal(loaded.thresholds_e, net.thresholds_e)
    assert loaded.stats() == net.stats()


def test_a_deep_copy_is_an_independent_twin_that_continues_exactly_alike(trained):
    net, _ = trained
    twin = copy.deepcopy(net)
    inputs = [None if k % 3 else [k % 300] for k in range(600)]
    assert np.array_equal(twin.run(inputs), net.run(inputs))
    assert np.array_equal(twin.w_ee, net.w_ee)
    assert np.array_equal(twin.thresholds_e, net.thresholds_e)
    twin.run([[1, 2, 3]] * 50, record=False)  # learning in the twin leaves the original alone
    assert twin.t == net.t + 50 and not np.array_equal(twin.thresholds_e, net.thresholds_e)


def test_networks_of_one_seed_share_one_read_only_copy_of_their_fixed_synapses(trained):
    """No rule changes the E->I weights nor the I->E places, and every user's network comes
    from one seed: loaded and copied networks hold the same arrays, which nobody can write."""
    net, path = trained
    twin, loaded, other = copy.deepcopy(net), load_network(path), SORN(seed=1)
    for fixed in ("_ie_w", "_ie_gate", "_ei_post", "_ei_post_short", "_ei_count"):
        assert getattr(twin, fixed) is getattr(net, fixed) is getattr(loaded, fixed)
    assert other._ie_w is not net._ie_w  # another seed, other weights
    with pytest.raises(ValueError, match="read-only"):
        net._ie_w[0, 0] = 1.0
    assert np.array_equal(loaded.w_ie, net.w_ie)


def test_the_frozen_flag_survives_saving(tmp_path):
    net = SORN(SORNConfig(n_e=40, n_i=10), seed=1)
    net.plastic = False
    net.save(tmp_path / "frozen.npz")
    assert load_network(tmp_path / "frozen.npz").plastic is False


def test_the_default_network_file_is_compact_and_written_without_leftovers(trained, tmp_path):
    _, path = trained
    assert path.stat().st_size <= 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]


def test_saving_over_an_existing_file_replaces_it(trained):
    net, path = trained
    net.run(10, record=False)
    net.save(path)
    assert load_network(path).t == net.t


def rewrite(path, change):
    """Save a copy of the archive at `path` with `change(arrays)` applied."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def _wrong_version(arrays):
    arrays["version"] = np.array(99, dtype=np.int64)


def _missing_key(arrays):
    del arrays["thresholds_e"]


def _wrong_shape(arrays):
    arrays["x"] = np.zeros(7, dtype=bool)


def _wrong_dtype(arrays):
    arrays["thresholds_e"] = arrays["thresholds_e"].astype(np.int64)


def _index_out_of_range(arrays):
    arrays["ee_pre"] = arrays["ee_pre"].copy()
    arrays["ee_pre"][0] = 5000


def _not_finite(arrays):
    arrays["ee_w"] = arrays["ee_w"].copy()
    arrays["ee_w"][0] = np.nan


@pytest.mark.parametrize(
    "damage",
    [_wrong_version, _missing_key, _wrong_shape, _wrong_dtype, _index_out_of_range, _not_finite],
)
def test_inconsistent_files_are_refused_with_the_file_name(trained, damage):
    _, path = trained
    rewrite(path, damage)
    with pytest.raises(NetworkFileError, match="net.npz"):
        load_network(path)


def test_truncated_files_are_refused_with_the_file_name(trained):
    _, path = trained
    data = path.read_bytes()
    for length in (0, 10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:length])
        with pytest.raises(NetworkFileError, match="net.npz"):
            load_network(path)


def test_random_bytes_and_flipped_bytes_are_refused(trained):
    _, path = trained
    data = bytearray(path.read_bytes())
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(NetworkFileError, match="net.npz"):
        load_network(path)
    data[len(data) // 3] ^= 0xFF  # inside compressed data: caught by the zip CRC or inflate
    path.write_bytes(bytes(data))
    with pytest.raises(NetworkFileError, match="net.npz"):
        load_network(path)


def test_a_zip_that_is_not_a_network_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a network")
    with pytest.raises(NetworkFileError, match="other.npz"):
        load_network(path)


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_network(tmp_path / "absent.npz")


def as_version(version: int, *absent_keys: str):
    """A change that makes a file look written by an older format: its version, and a
    config without the keys that format did not know yet."""
    def change(arrays):
        config = json.loads(str(arrays["config"]))
        for key in absent_keys:
            del config[key]
        arrays["config"] = np.array(json.dumps(config))
        arrays["version"] = np.array(version, dtype=np.int64)
    return change


@pytest.mark.parametrize(
    "old_format",
    [as_version(1, "fast_inhibition", "noise_distribution"), as_version(2, "noise_distribution"),
     as_version(3)],
    ids=["version 1", "version 2", "version 3"],
)
def test_an_older_file_loads_with_the_dynamics_it_was_saved_with(trained, old_format):
    """(Its rules and config; the random draws are this version's: see storage.VERSION.)"""
    net, path = trained
    rewrite(path, old_format)
    loaded = load_network(path)
    assert loaded.config.fast_inhibition is False
    assert loaded.config.noise_distribution == "normal"
    assert loaded.config == net.config
    assert np.array_equal(loaded.run(300), net.run(300))


@pytest.mark.parametrize(
    "damage",
    [as_version(4, "noise_distribution"), as_version(2, "fast_inhibition", "noise_distribution")],
    ids=["current version", "version 2"],
)
def test_a_config_missing_a_key_its_version_has_is_refused(trained, damage):
    _, path = trained
    rewrite(path, damage)
    with pytest.raises(NetworkFileError, match="net.npz.*missing"):
        load_network(path)


def test_a_config_with_an_unknown_key_is_refused(trained):
    _, path = trained

    def add_unknown_key(arrays):
        config = json.loads(str(arrays["config"])) | {"noise_colour": "pink"}
        arrays["config"] = np.array(json.dumps(config))

    rewrite(path, add_unknown_key)
    with pytest.raises(NetworkFileError, match="net.npz.*unknown.*noise_colour"):
        load_network(path)


def test_a_network_with_uniform_noise_saves_and_continues_exactly(tmp_path):
    config = SORNConfig(n_e=80, n_i=20, noise_sigma=0.05, noise_distribution="uniform")
    net = SORN(config, seed=3)
    net.run([[k % 80] for k in range(400)], record=False)
    net.save(tmp_path / "uniform.npz")
    loaded = load_network(tmp_path / "uniform.npz")
    assert loaded.config.noise_distribution == "uniform"
    assert np.array_equal(loaded.run(500), net.run(500))
