"""Server settings from the environment (DESIGN.md §4), overridable by create_app(config).

Keys are the environment variable names, so a test or a deployment passes the same
names either way. The data directory holds the SQLite file, the per-user network files
and, when SECRET_KEY is not given, a generated key kept in a 0600 file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

DEFAULTS = {
    "SORNMEMORY_DATA": "instance",
    "SORNMEMORY_ENGINE_IDLE": "600",  # seconds before an unused engine is saved and evicted
    "SORNMEMORY_THREADS": "100",  # gunicorn threads: each open WebSocket holds one
    "SORNMEMORY_ENGINE_HANG": "20",  # seconds an engine may owe an answer silently
    "SORNMEMORY_SESSION_SECONDS": str(30 * 24 * 3600),  # a login lasts 30 days
    "SORNMEMORY_SIGNUPS_PER_HOUR": "10",  # accounts one address may register in an hour
    "SORNMEMORY_SECURE_COOKIES": "0",  # 1: the session cookie is sent over HTTPS only
}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


def load_settings(overrides: Mapping | None = None, environ: Mapping | None = None) -> dict:
    """Environment + overrides, with the data directory created and SECRET_KEY resolved."""
    settings = {**DEFAULTS, **(os.environ if environ is None else environ), **(overrides or {})}
    data_dir = Path(settings["SORNMEMORY_DATA"]).resolve()
    (data_dir / "networks").mkdir(parents=True, exist_ok=True)
    settings["SORNMEMORY_DATA"] = str(data_dir)
    cpus = os.cpu_count() or 1
    settings["SORNMEMORY_WORKERS"] = positive_int(settings, "SORNMEMORY_WORKERS", cpus)
    settings["SORNMEMORY_ENGINE_IDLE"] = float(settings["SORNMEMORY_ENGINE_IDLE"])
    settings["SORNMEMORY_THREADS"] = positive_int(settings, "SORNMEMORY_THREADS", 100)
    settings["SORNMEMORY_SIGNUPS_PER_HOUR"] = positive_int(
        settings, "SORNMEMORY_SIGNUPS_PER_HOUR", int(DEFAULTS["SORNMEMORY_SIGNUPS_PER_HOUR"]))
    for name in ("SORNMEMORY_ENGINE_HANG", "SORNMEMORY_SESSION_SECONDS"):
        settings[name] = positive_seconds(settings, name, float(DEFAULTS[name]))
    # Unset (None): an admin decides in the app (webapp/web/signup.py); set: it does.
    signup = str(settings.get("SORNMEMORY_SIGNUP") or "").lower() or None
    if signup not in (None, "open", "closed"):
        raise ConfigError("SORNMEMORY_SIGNUP must be 'open' or 'closed'")
    settings["SORNMEMORY_SIGNUP"] = signup
    settings["SORNMEMORY_SECURE_COOKIES"] = flag(settings, "SORNMEMORY_SECURE_COOKIES")
    if not settings.get("SECRET_KEY"):
        settings["SECRET_KEY"] = _stored_secret_key(data_dir / "secret_key")
    return settings


def flag(settings: Mapping, name: str) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off (any case)."""
    raw = str(settings.get(name, "")).strip().lower()
    if raw not in TRUE + FALSE:
        raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
    return raw in TRUE


def positive_int(settings: Mapping, name: str, default: int) -> int:
    return _positive(settings, name, default, int, "a whole number of at least 1")


def positive_seconds(settings: Mapping, name: str, default: float) -> float:
    return _positive(settings, name, default, float, "a number of seconds above 0")


def _positive(settings: Mapping, name: str, default, kind: type, what: str):
    raw = settings.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not 0 < value < float("inf"):  # NaN fails too
        raise ConfigError(f"{name} must be {what}, got {raw!r}")
    return value


def _stored_secret_key(path: Path) -> str:
    """Read the key, or create it on first start: written to a 0600 temp file and fsynced,
    then linked into place (atomic, and never replacing a key another process wrote), so a
    crash or a failing disk can never leave an empty key file behind."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:  # another process was first: use its key
            return _read_key(path)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty; delete it to generate a new key")
    return key
