"""Accounts: register, login, logout, me; and the login guard for every other API route.

Sessions live on the server: a login stores a random 32-byte token (its SHA-256 in the
`sessions` table) and Flask's signed cookie (HttpOnly, SameSite=Lax) carries the token.
Every request looks the token up (one primary-key read, as the user lookup was), so a
logout, which deletes the row, refuses every copy of the cookie at once; a session also
ends `SORNMEMORY_SESSION_SECONDS` after its login. Logging out announces
`session_ended` so that session's live sockets are closed too.
Usernames are case-insensitive (kept lower-case) so "Alice" cannot impersonate "alice".
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, request, session
from flask.signals import Namespace
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.web.errors import ApiError
from webapp.web.services import services
from webapp.web.signup import registration_open

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

USERNAME = re.compile(r"[a-z0-9_.-]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
OPEN_ROUTES = {"auth.register", "auth.login", "auth.logout", "auth.signup", "health", "index",
               "static"}

LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS = 10, 300
# Failed logins from one address on any usernames (password spraying: one guess per account).
ADDRESS_LOGIN_ATTEMPTS = 100
THROTTLE_MAX_KEYS = 10_000  # past this many tracked (address, username) pairs, forget stale ones
SIGNUP_WINDOW_SECONDS = 3600  # SORNMEMORY_SIGNUPS_PER_HOUR accounts per address in this window


class Throttle:
    """Events per key in a sliding window of `window_seconds`: failed logins, which the
    login route keys by (address, username) and by (address, "") for all usernames
    together; and accounts registered, keyed by (address, "")."""

    def __init__(self, window_seconds: float = LOGIN_WINDOW_SECONDS):
        self.window_seconds = window_seconds
        self._events: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        recent = [t for t in self._events.get(key, []) if now - t < self.window_seconds]
        if recent:
            self._events[key] = recent
        else:
            self._events.pop(key, None)
        return recent

    def blocked(self, key: tuple[str, str], limit: int) -> bool:
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= limit

    def record(self, key: tuple[str, str]) -> None:
        with self._lock:
            now = time.monotonic()
            self._events[key] = [*self._recent(key, now), now]
            if len(self._events) > THROTTLE_MAX_KEYS:  # many names guessed: stay bounded
                for stale in [k for k, times in self._events.items()
                              if now - times[-1] >= self.window_seconds]:
                    del self._events[stale]

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._events.pop(key, None)


_throttle = Throttle()

# A password hash (werkzeug's scrypt) takes 32 MiB and a core for ~0.1 s: more at once
# only queue for the cores, and 80 logins at once, from anyone, took 1.9-2.1 GB.
_hashing = threading.BoundedSemaphore(max(2, os.cpu_count() or 1))


def hash_password(password: str) -> str:
    with _hashing:
        return generate_password_hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    with _hashing:
        return check_password_hash(password_hash, password)


# Checked against when the username is unknown, so a login costs the same either way.
_DUMMY_HASH = hash_password("not a real password")
_register_lock = threading.Lock()  # "first user is admin" must hold under concurrent sign-ups

TOKEN_BYTES = 32
# Sent with the app as sender and the ended session's `token` when a session is revoked.
session_ended = Namespace().signal("session-ended")


def credentials() -> tuple[str, str]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'Send JSON {"username": ..., "password": ...}.')
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "bad_request", "Username and password must both be given as text.")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_password", "The password holds invalid characters.") from None
    return username.strip().lower(), password


def public_user(user: dict) -> dict:
    return {"id": user["id"], "username": user["username"], "is_admin": bool(user["is_admin"])}


def session_lifetime() -> float:
    return services().settings["SORNMEMORY_SESSION_SECONDS"]


def _log_in(user: dict) -> None:
    """A new session token for every login (no fixation); one the browser had ends."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    services().store.create_session(user["id"], token, session_lifetime())
    _end_session()
    session["token"] = token
    session.permanent = True


def _end_session() -> None:
    """Revoke the request's session, if any, close its sockets, and clear the cookie."""
    token = session_token()
    if token is not None:
        services().store.delete_session(token)
        session_ended.send(current_app._get_current_object(), token=token)
    session.clear()


@bp.post("/register")
def register():
    username, password = credentials()
    if not USERNAME.fullmatch(username):
        raise ApiError(400, "invalid_username",
                       "Usernames are 3-32 characters: letters a-z, digits, '_', '.' or '-'.")
    check_new_password(password)
    store, signups = services().store, services().signups
    address_key = (request.remote_addr or "", "")
    if signups.blocked(address_key, services().settings["SORNMEMORY_SIGNUPS_PER_HOUR"]):
        raise ApiError(429, "too_many_signups",
                       "Too many accounts were made from your address; try again in an hour.")
    password_hash = hash_password(password)
    with _register_lock:
        if not registration_open():  # a closed server still accepts its first account
            raise ApiError(403, "signup_closed", "Sign-up is closed on this server.")
        first = store.count_users() == 0
        if store.get_user(username) is not None:
            raise ApiError(409, "username_taken", "That username is taken.")
        user_id = store.create_user(username, password_hash, is_admin=first)
        signups.record(address_key)
    user = store.get_user_by_id(user_id)
    _log_in(user)
    return jsonify({"user": public_user(user)}), 201


@bp.get("/signup")
def signup():
    """Public: whether "Create account" can work, for the sign-in screen."""
    return jsonify({"signup": "open" if registration_open() else "closed"})


def check_new_password(password: str) -> None:
    """A password a new account or a password change may set."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ApiError(400, "invalid_password",
                       f"Passwords are {PASSWORD_MIN} to {PASSWORD_MAX} characters long.")


def confirm_password(user: dict, password: str) -> None:
    """The logged-in user's password, asked again before an account change; wrong ones
    count as failed logins (a stolen session must not become a way to guess it)."""
    key = (request.remote_addr or "", user["username"])
    if _throttle.blocked(key, LOGIN_ATTEMPTS):
        raise ApiError(429, "too_many_attempts",
                       "Too many wrong passwords; wait a few minutes and try again.")
    if len(password) > PASSWORD_MAX or not password_matches(user["password_hash"], password):
        _throttle.record(key)
        raise ApiError(403, "wrong_password", "That is not your current password.")


@bp.post("/login")
def login():
    username, password = credentials()
    if not USERNAME.fullmatch(username) or len(password) > PASSWORD_MAX:
        # No such account can exist: answer as for a wrong password, without hashing a
        # huge password or keeping a huge username in the throttle.
        raise ApiError(401, "bad_credentials", "Wrong username or password.")
    address = request.remote_addr or ""
    key, address_key = (address, username), (address, "")
    if _throttle.blocked(key, LOGIN_ATTEMPTS) or \
            _throttle.blocked(address_key, ADDRESS_LOGIN_ATTEMPTS):
        raise ApiError(429, "too_many_attempts",
                       "Too many failed logins; wait a few minutes and try again.")
    user = services().store.get_user(username)
    valid = password_matches(user["password_hash"] if user else _DUMMY_HASH, password)
    if user is None or not valid:
        _throttle.record(key)
        _throttle.record(address_key)
        raise ApiError(401, "bad_credentials", "Wrong username or password.")
    _throttle.succeeded(key)
    _log_in(user)
    return jsonify({"user": public_user(user)})


@bp.post("/logout")
def logout():
    _end_session()
    return jsonify({"ok": True})


@bp.get("/me")
def me():
    return jsonify({"user": public_user(g.user)})


def session_token() -> str | None:
    """The session token the signed cookie carries (read without touching the database)."""
    token = session.get("token")
    return token if isinstance(token, str) else None


def session_user() -> dict | None:
    """The logged-in user's record; None when the session was revoked, has expired, or
    its account no longer exists."""
    token = session_token()
    return None if token is None else services().store.session_user(token, session_lifetime())


def require_login():
    """before_request: every route except the open ones needs a logged-in user."""
    if request.endpoint is None or request.endpoint in OPEN_ROUTES:  # None: 404/405 follows
        return None
    user = session_user()
    if user is None:
        session.clear()
        raise ApiError(401, "unauthorized", "Please log in.")
    g.user = user
    return None


def refuse_cross_origin_writes():
    """before_request: a request that changes something must come from our own pages.

    SameSite=Lax still sends the cookie from the same *site* (a sibling subdomain, another
    port of the host), where a plain form could post an import or a logout. Browsers say
    where a request comes from (Sec-Fetch-Site, Origin); clients that send neither, like
    curl, are not browsers a page could drive."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    origin = request.headers.get("Origin")
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site") or (
            origin is not None and urlsplit(origin).netloc != request.host):
        raise ApiError(403, "cross_origin", "Requests from other sites are refused.")
    return None
