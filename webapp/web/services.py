"""The long-lived objects one app instance runs with, reachable from any request."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import current_app


@dataclasses.dataclass
class Services:
    settings: dict
    store: Any  # webapp.memory.Store
    engine: Any  # webapp.engine.EnginePool
    llm: Any  # webapp.llm client
    turns: Any  # webapp.chat.turn.ChatTurn
    relay: Any  # webapp.web.relay.SpikeRelay
    # Long-lived threads for the database work of socket events and for chat turns. The
    # Store keeps one SQLite connection per thread for the thread's lifetime, so work on a
    # fresh thread per event would open (and leak) a connection each time.
    store_threads: ThreadPoolExecutor
    turn_threads: ThreadPoolExecutor
    stop: Any  # webapp.web.shutdown.GracefulStop: turns under way, and none after a stop
    signups: Any  # webapp.web.auth.Throttle: accounts registered per address


def services() -> Services:
    return current_app.extensions["sornmemory"]
