"""Server-side sessions against the real server: the cookie carries a random token that the
server looks up on every request and socket connect, so a logout revokes every copy of it,
a login always issues a new one, sessions expire, and no token ever maps to another user."""

from __future__ import annotations

import base64
import copy
import json
import time

import pytest
import requests
import socketio

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, UserSocket, register, start_server, stop_server
from tests.web.test_engine_restart import wait_until

COOKIE = "sornmemory_session"


def copy_of(session: requests.Session) -> requests.Session:
    """Another client holding the same cookie (as a thief with a copy would), kept past
    the expiry date the server gave it."""
    (cookie,) = [c for c in session.cookies if c.name == COOKIE]
    kept = copy.copy(cookie)
    kept.expires = None
    thief = requests.Session()
    thief.cookies.set_cookie(kept)
    return thief


def login(url: str, username: str, session: requests.Session | None = None) -> requests.Session:
    session = session or requests.Session()
    response = session.post(f"{url}/api/auth/login", timeout=10,
                            json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return session


def cookie_payload(session: requests.Session) -> dict:
    """The signed cookie's readable part (Flask signs it; it is not encrypted)."""
    payload = session.cookies[COOKIE].split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def me(url: str, session: requests.Session) -> requests.Response:
    return session.get(f"{url}/api/auth/me", timeout=10)


def test_a_copied_cookie_is_refused_after_logout_by_rest_and_socket(live_server):
    url = live_server.url
    session = register(url, "copiedcookie")
    thief = copy_of(session)
    assert me(url, thief).json()["user"]["username"] == "copiedcookie"  # valid before logout
    thief_socket = UserSocket(url, thief)
    assert session.post(f"{url}/api/auth/logout", timeout=10).status_code == 200

    assert me(url, session).status_code == 401
    for path in ("/api/auth/me", "/api/conversations", "/api/memory"):
        response = thief.get(url + path, timeout=10)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    with pytest.raises(socketio.exceptions.ConnectionError):
        UserSocket(url, thief)
    # The socket the copy had open before the logout is closed by the server.
    wait_until(lambda: not thief_socket.client.connected, timeout=10)


def test_a_logout_closes_only_that_sessions_sockets(live_server):
    url = live_server.url
    laptop = register(url, "twodevices")
    phone = login(url, "twodevices")
    laptop_socket, phone_socket = UserSocket(url, laptop), UserSocket(url, phone)
    laptop.post(f"{url}/api/auth/logout", timeout=10)
    wait_until(lambda: not laptop_socket.client.connected, timeout=10)

    assert phone_socket.client.connected and me(url, phone).status_code == 200
    phone_socket.chat("The phone keeps chatting after the laptop logged out.")
    assert not [e for e, _ in laptop_socket.events if e in ("memory", "token", "done")]
    phone_socket.close()


def test_every_login_issues_a_new_random_token_and_ends_the_one_it_replaces(live_server):
    url = live_server.url
    session = register(url, "rotation")
    registered = copy_of(session)
    first = cookie_payload(session)
    assert set(first) <= {"token", "_permanent"}  # no user id in the cookie: only the token
    assert len(base64.urlsafe_b64decode(first["token"] + "=")) == 32

    login(url, "rotation", session)  # logging in again over the same session
    second = cookie_payload(session)["token"]
    assert second != first["token"]
    assert me(url, session).json()["user"]["username"] == "rotation"
    assert me(url, registered).status_code == 401  # the replaced session is gone

    # Fixation: a session planted in a victim's browser ends when the victim logs in, and
    # the victim gets a token the planter never saw.
    planter = register(url, "planter")
    victim = copy_of(planter)
    login(url, "rotation", victim)
    assert me(url, victim).json()["user"]["username"] == "rotation"
    assert cookie_payload(victim)["token"] not in (cookie_payload(planter)["token"], second)
    assert me(url, planter).status_code == 401


def test_no_session_token_ever_maps_to_another_user(live_server):
    url = live_server.url
    names = [f"mapper{i}" for i in range(4)]
    sessions = {name: [register(url, name)] for name in names}
    for name in names:
        sessions[name].append(login(url, name))  # a second device each
    tokens = [cookie_payload(s)["token"] for held in sessions.values() for s in held]
    assert len(set(tokens)) == len(tokens)
    for name, held in sessions.items():
        for session in held:
            assert me(url, session).json()["user"]["username"] == name
    sessions["mapper0"][0].post(f"{url}/api/auth/logout", timeout=10)
    assert me(url, sessions["mapper0"][1]).json()["user"]["username"] == "mapper0"
    for name in names[1:]:
        assert all(me(url, s).json()["user"]["username"] == name for s in sessions[name])


def test_an_expired_session_is_refused_and_its_open_sockets_are_closed(tmp_path):
    lifetime = 3
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim, SORNMEMORY_SESSION_SECONDS=str(lifetime))
        try:
            session = register(server.url, "shortlived")
            logged_in_at = time.monotonic()
            kept = copy_of(session)  # a client that ignores the cookie's expiry date
            assert me(server.url, kept).status_code == 200
            UserSocket(server.url, kept).close()
            left_open = UserSocket(server.url, kept)  # connected while the session lived
            time.sleep(max(0.0, logged_in_at + lifetime + 0.5 - time.monotonic()))
            wait_until(lambda: not left_open.client.connected, timeout=lifetime)
            assert me(server.url, kept).status_code == 401
            with pytest.raises(socketio.exceptions.ConnectionError):
                UserSocket(server.url, kept)
            fresh = login(server.url, "shortlived")  # logging in again works
            assert me(server.url, fresh).status_code == 200
        finally:
            stop_server(server)
