"""The admin (the first account): the sign-up switch, kept in the database and honoured by
register at once, with SORNMEMORY_SIGNUP overriding it; and the list of accounts. Against
the real server."""

from __future__ import annotations

import pytest
import requests

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, register, start_server, stop_server


@pytest.fixture(scope="module")
def server(live_server):
    """The module's own server (live_server is one per module): its first account, the
    admin, is registered here."""
    return live_server


@pytest.fixture(scope="module")
def admin(server) -> requests.Session:
    return register(server.url, "root")


def try_register(url: str, username: str) -> requests.Response:
    return requests.post(f"{url}/api/auth/register",
                         json={"username": username, "password": PASSWORD}, timeout=10)


def put_signup(session: requests.Session, url: str, body) -> requests.Response:
    return session.put(f"{url}/api/admin/settings", json=body, timeout=10)


def test_the_first_account_is_admin_and_sees_every_account_without_secrets(server, admin):
    assert admin.get(server.url + "/api/auth/me", timeout=10).json()["user"]["is_admin"]
    register(server.url, "second")
    users = admin.get(server.url + "/api/admin/users", timeout=10).json()["users"]
    assert [(u["username"], u["is_admin"]) for u in users][:2] == [("root", True),
                                                                    ("second", False)]
    assert all(set(u) == {"id", "username", "is_admin", "created_at"} for u in users)
    assert all(isinstance(u["created_at"], float) for u in users)


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/admin/settings"), ("PUT", "/api/admin/settings"), ("GET", "/api/admin/users"),
])
def test_admin_routes_refuse_other_users_and_anonymous_clients(server, admin, method, path):
    user = register(server.url, f"plain-{method.lower()}-{path.rsplit('/', 1)[1]}")
    body = {"signup": "closed"}
    refused = user.request(method, server.url + path, json=body, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    anonymous = requests.request(method, server.url + path, json=body, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert admin.get(server.url + "/api/admin/settings", timeout=10).json()["signup"] == "open"


@pytest.mark.parametrize("body", [
    None, [], "closed", {}, {"signup": "shut"}, {"signup": True}, {"signup": "CLOSED"},
    {"signup": "closed", "extra": 1},
])
def test_a_bad_settings_body_is_a_400_and_changes_nothing(server, admin, body):
    response = put_signup(admin, server.url, body)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message"}
    assert admin.get(server.url + "/api/admin/settings", timeout=10).json() == {
        "signup": "open", "set_by": "default"}


def test_closing_sign_up_refuses_the_next_registration_at_once(server, admin):
    public = server.url + "/api/auth/signup"
    assert requests.get(public, timeout=10).json() == {"signup": "open"}
    closed = put_signup(admin, server.url, {"signup": "closed"})
    assert closed.status_code == 200
    assert closed.json() == {"signup": "closed", "set_by": "admin"}
    try:
        assert requests.get(public, timeout=10).json() == {"signup": "closed"}
        late = try_register(server.url, "latecomer")
        assert late.status_code == 403 and late.json()["error"]["code"] == "signup_closed"
        # Signed-out visitors are still told who they are not: the contract's 401.
        assert requests.get(server.url + "/api/auth/me", timeout=10).status_code == 401
    finally:
        reopened = put_signup(admin, server.url, {"signup": "open"})
    assert reopened.json() == {"signup": "open", "set_by": "admin"}
    assert try_register(server.url, "latecomer").status_code == 201


def test_the_choice_survives_a_restart_and_the_environment_overrides_it(tmp_path):
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim)
        try:
            admin = register(server.url, "owner")
            assert put_signup(admin, server.url, {"signup": "closed"}).status_code == 200
        finally:
            stop_server(server)

        server = start_server(tmp_path, nim)  # same data directory and secret key
        try:
            assert requests.get(server.url + "/api/auth/signup", timeout=10).json() == {
                "signup": "closed"}
            assert try_register(server.url, "after-restart").status_code == 403
        finally:
            stop_server(server)

        server = start_server(tmp_path, nim, SORNMEMORY_SIGNUP="open")
        try:
            settings = admin.get(server.url + "/api/admin/settings", timeout=10).json()
            assert settings == {"signup": "open", "set_by": "configuration"}
            fixed = put_signup(admin, server.url, {"signup": "closed"})
            assert fixed.status_code == 409
            assert fixed.json()["error"]["code"] == "set_by_configuration"
            assert try_register(server.url, "by-config").status_code == 201
        finally:
            stop_server(server)


def test_a_server_closed_by_configuration_still_lets_its_first_account_register(tmp_path):
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim, SORNMEMORY_SIGNUP="closed")
        try:
            public = server.url + "/api/auth/signup"
            assert requests.get(public, timeout=10).json() == {"signup": "open"}  # no admin yet
            admin = register(server.url, "first")
            assert requests.get(public, timeout=10).json() == {"signup": "closed"}
            assert try_register(server.url, "second").status_code == 403
            assert admin.get(server.url + "/api/admin/settings", timeout=10).json() == {
                "signup": "closed", "set_by": "configuration"}
        finally:
            stop_server(server)
