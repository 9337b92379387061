"""The footprint harness: a worker's RAM with users loaded and evicted, disk, accounts."""

import argparse

from webapp.bench import footprint


def test_users_are_evicted_and_their_networks_saved():
    args = argparse.Namespace(users=3, messages=12, registered=50, max_resident=2, seed=0)
    result = footprint.run(args)
    assert result["max_resident"] == 2
    assert result["resident_memories_loaded"] == 2  # the worker's bound, not the 3 users
    assert result["resident_memories_evicted"] == 0
    assert result["network_files"] == 3 + 1  # and the warm-up user's
    assert result["disk_network_per_user_bytes"] > 10_000
    assert result["disk_db_per_user_bytes"] > 0
    assert result["network_arrays_per_user_bytes"] > 100_000
    assert result["worker_rss_loaded_bytes"] > result["worker_rss_base_bytes"] > 10**7
    assert result["registered_users"] == 50
    assert result["db_bytes_per_registered_user"] > 0
    assert 0 < result["login_lookup_ms_p50"] <= result["login_lookup_ms_p95"]
    assert result["disk_for_registered_if_all_active_bytes"] == 50 * (
        result["disk_db_per_user_bytes"] + result["disk_network_per_user_bytes"])
