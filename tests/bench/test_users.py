"""The many-users harness: routing like the engine pool, step counting, both paths."""

import argparse

from webapp.bench import users
from webapp.engine.pool import EnginePool
from webapp.engine.worker import WorkerSettings
from webapp.memory import tokenize


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    users.add_arguments(parser)
    return parser.parse_args(argv)


def test_users_are_routed_to_the_worker_the_engine_pool_would_pick():
    pool = EnginePool(WorkerSettings(db_path="", network_dir=""), 3)
    groups = users.route(list(range(1, 31)), 3)
    assert sorted(u for group in groups for u in group) == list(range(1, 31))
    for index, group in enumerate(groups):
        assert all(pool.worker_index(user_id) == index for user_id in group)


def test_a_store_takes_one_step_per_token_and_one_to_settle():
    text = "Anna told me about the concert in Paris"
    assert users.steps_of(text) == len(tokenize(text)) + 1


def test_messages_are_seeded():
    assert users.messages(3) == users.messages(3) != users.messages(4)


def test_both_paths_report_a_point_per_user_count(tmp_path):
    plot = tmp_path / "users.png"
    result = users.run(parse("--users", "3", "--workers", "1", "--seconds", "0.2",
                             "--plot", str(plot)))
    points = result["points"]
    assert [(p["mode"], p["users"]) for p in points] == [("network", 3), ("pool", 3)]
    for point in points:
        assert point["stores"] >= point["users"]
        assert point["user_steps"] >= point["stores"] * 2  # every message has a token
        assert point["user_steps_per_sec"] > 0 and point["cpu_seconds"] > 0
        assert len(point["load"]) == 3
    assert result["goal_user_steps_per_sec"] == 200_000
    assert plot.stat().st_size > 1000


def test_networks_of_spread_ages_are_measured_too():
    """--spread-ages ages each user's network differently first (real users' networks do
    not step in lockstep); the network path still counts every step."""
    result = users.run(parse("--users", "3", "--workers", "1", "--seconds", "0.2",
                             "--mode", "network", "--spread-ages", "5000"))
    (point,) = result["points"]
    assert result["spread_ages"] == 5000
    assert point["stores"] > 0 and point["user_steps"] > 2 * point["stores"]
