"""The order an engine worker serves queued commands in: recalls first, but never ahead of
their own user's earlier commands nor of a command that has waited too long."""

from __future__ import annotations

from collections import deque

from webapp.engine.worker import MAX_PASSED_SECONDS, next_command


def queued(*commands: tuple[int, str], waited: float = 0.0) -> deque:
    return deque((-waited, {"user_id": user, "op": op}) for user, op in commands)


def test_a_recall_passes_other_users_stores():
    pending = queued((1, "store"), (2, "store"), (3, "recall"))
    assert next_command(pending, now=0.0) == {"user_id": 3, "op": "recall"}
    assert [cmd["user_id"] for _, cmd in pending] == [1, 2]


def test_a_recall_never_passes_its_own_users_earlier_store():
    pending = queued((1, "store"), (2, "store"), (1, "recall"))
    assert next_command(pending, now=0.0) == {"user_id": 1, "op": "store"}


def test_a_command_that_waited_too_long_is_served_first():
    pending = queued((1, "store"), (3, "recall"), waited=MAX_PASSED_SECONDS)
    assert next_command(pending, now=0.0) == {"user_id": 1, "op": "store"}


def test_without_recalls_commands_are_served_in_arrival_order():
    pending = queued((2, "stats"), (1, "store"))
    assert [next_command(pending, now=0.0)["user_id"] for _ in range(2)] == [2, 1]
