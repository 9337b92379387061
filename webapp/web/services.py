"""The long-lived objects one app instance runs with, reachable from any request."""

from __future__ import annotations

import dataclasses
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


def services() -> Services:
    return current_app.extensions["sornmemory"]
