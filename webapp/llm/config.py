"""Choose and build the LLM client from the environment (DESIGN.md §4, Configuration)."""

from __future__ import annotations

from collections.abc import Mapping

from webapp.llm.nim import DEFAULT_BASE_URL, DEFAULT_MODEL, NIMClient
from webapp.llm.offline import OfflineResponder


def make_client(env: Mapping) -> NIMClient | OfflineResponder:
    """NIMClient or OfflineResponder per SORNMEMORY_LLM (`nim` | `offline`).

    Unset, it is `nim` when NVIDIA_API_KEY or NIM_BASE_URL is set, else `offline`.
    NIM_CONNECT_TIMEOUT, NIM_READ_TIMEOUT and NIM_REPLY_TIMEOUT (seconds) tune the timeouts.
    """
    key = _setting(env, "NVIDIA_API_KEY")
    base_url = _setting(env, "NIM_BASE_URL")
    mode = _setting(env, "SORNMEMORY_LLM").lower() or ("nim" if key or base_url else "offline")
    if mode == "offline":
        return OfflineResponder()
    if mode != "nim":
        raise ValueError(f"SORNMEMORY_LLM must be 'nim' or 'offline', not {mode!r}")
    return NIMClient(
        base_url=base_url or DEFAULT_BASE_URL,
        model=_setting(env, "NIM_MODEL") or DEFAULT_MODEL,
        api_key=key or None,
        connect_timeout=_seconds(env, "NIM_CONNECT_TIMEOUT", 10.0),
        read_timeout=_seconds(env, "NIM_READ_TIMEOUT", 60.0),
        reply_timeout=_seconds(env, "NIM_REPLY_TIMEOUT", 600.0),
    )


def _setting(env: Mapping, name: str) -> str:
    return str(env.get(name) or "").strip()


def _seconds(env: Mapping, name: str, default: float) -> float:
    raw = _setting(env, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value
