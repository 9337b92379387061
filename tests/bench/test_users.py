"""The many-users harness: routing like the engine pool, step counting, both paths."""

import argparse
import json

from webapp.bench import users
from webapp.engine.pool import EnginePool
from webapp.engine.worker import WorkerSettings
from webapp.memory import Memory, Store, tokenize


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


def write_locomo(path) -> None:
    """A tiny file in LoCoMo's format: one conversation of two sessions."""
    conversation = {
        "speaker_a": "Anna", "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [{"speaker": "Anna", "dia_id": "D1:1", "text": "I adopted a puppy"},
                      {"speaker": "Ben", "dia_id": "D1:2", "text": "What is its name?",
                       "blip_caption": "a small dog"}],
        "session_2_date_time": "2:10 pm on 9 May, 2023",
        "session_2": [{"speaker": "Anna", "dia_id": "D2:1",
                       "text": "Biscuit, and she already knows how to sit and wait"}],
    }
    path.write_text(json.dumps([{"conversation": conversation, "qa": []}]), encoding="utf-8")


def test_chat_turns_are_the_turns_as_bench_locomo_stores_them(tmp_path):
    write_locomo(tmp_path / "locomo.json")
    assert users.chat_turns(tmp_path / "locomo.json") == [
        "Anna: I adopted a puppy",
        "Ben: What is its name? (image: a small dog)",
        "Anna: Biscuit, and she already knows how to sit and wait",
    ]


def test_users_ages_differ_and_stay_below_the_spread():
    assert {users.age_of(u, 1000) for u in range(1, 1001)} == set(range(1000))
    assert users.age_of(5, 0) == 0


def test_a_users_memory_opens_the_network_aged_for_them(tmp_path):
    """The aged snapshot is where the worker's Memory looks, and it is the one loaded."""
    store = Store(tmp_path / "memory.db")
    user_ids = [store.create_user(f"user{i}", "-") for i in range(3)]
    users.age_networks(user_ids, tmp_path / "networks", 300)
    steps = [Memory(store, u, tmp_path / "networks").network.net.t for u in user_ids]
    assert steps == [users.age_of(u, 300) for u in user_ids]
    assert len(set(steps)) == 3
    store.close()


def test_both_paths_measure_aged_networks_storing_real_chat_turns(tmp_path):
    """--spread-ages: each user's network starts at its own age (real users' networks do
    not step in lockstep), in the pool too; --data: the texts are a LoCoMo file's turns."""
    write_locomo(tmp_path / "locomo.json")
    result = users.run(parse("--users", "3", "--workers", "1", "--seconds", "0.2",
                             "--spread-ages", "300", "--data", str(tmp_path / "locomo.json")))
    turns = users.chat_turns(tmp_path / "locomo.json")
    assert result["spread_ages"] == 300
    assert result["texts"]["distinct"] == 3 and "locomo.json" in result["texts"]["source"]
    assert result["steps_per_store_mean"] == round(
        sum(map(users.steps_of, turns)) / len(turns), 2)
    ages = [users.age_of(u, 300) for u in (1, 2, 3)]  # user ids 1..3 in both paths
    for point in result["points"]:
        assert point["distinct_network_steps"] == 3
        assert point["network_steps_max"] - point["network_steps_min"] == max(ages) - min(ages)
        assert point["network_steps_min"] > min(ages)  # then the warm-up stores
        assert point["stores"] > 0 and point["user_steps"] > 2 * point["stores"]
