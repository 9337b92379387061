"""The admin (the first account): the sign-up switch, kept in the database and honoured by
register at once, with SORNMEMORY_SIGNUP overriding it; the list of accounts; another
account deleted with all its data, or made admin and back, never leaving no admin. Against
the real server."""

from __future__ import annotations

import pytest
import requests

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, register, start_server, stop_server
from tests.web.test_account import raw_database, snapshots, user_id, user_with_secrets, wait_until

SENTINEL = "okapimarmalade"  # a word only the deleted user ever wrote


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


def users_of(session: requests.Session, url: str) -> list[dict]:
    return session.get(f"{url}/api/admin/users", timeout=10).json()["users"]


def put_admin(session: requests.Session, url: str, user: int, body) -> requests.Response:
    return session.put(f"{url}/api/admin/users/{user}", json=body, timeout=10)


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
    ("PUT", "/api/admin/users/1"), ("DELETE", "/api/admin/users/1"),
])
def test_admin_routes_refuse_other_users_and_anonymous_clients(server, admin, method, path):
    user = register(server.url, f"plain-{method.lower()}-{path.rsplit('/', 1)[1]}")
    body = {"signup": "closed", "is_admin": False, "password": PASSWORD}
    refused = user.request(method, server.url + path, json=body, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    anonymous = requests.request(method, server.url + path, json=body, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert admin.get(server.url + "/api/admin/settings", timeout=10).json()["signup"] == "open"
    assert [u["username"] for u in users_of(admin, server.url) if u["is_admin"]] == ["root"]


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


def test_the_admin_deletes_another_account_and_everything_of_it(server, admin):
    url, data = server.url, server.data_dir
    departed, departed_id, departed_socket = user_with_secrets(server, "departed", SENTINEL)
    remove = f"{url}/api/admin/users/{departed_id}"

    no_password = admin.delete(remove, timeout=10)
    assert no_password.status_code == 400 and no_password.json()["error"]["code"] == "bad_request"
    wrong = admin.delete(remove, json={"password": "not mine at all"}, timeout=10)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    assert departed.get(f"{url}/api/auth/me", timeout=10).status_code == 200
    gone = admin.delete(remove, json={"password": PASSWORD}, timeout=60)
    assert gone.status_code == 200 and gone.json() == {"deleted": True}

    wait_until(lambda: not departed_socket.client.connected)
    assert departed.get(f"{url}/api/auth/me", timeout=10).status_code == 401
    assert snapshots(data, departed_id) == []
    assert SENTINEL.encode() not in raw_database(data)
    assert "departed" not in [u["username"] for u in users_of(admin, url)]
    again = admin.delete(remove, json={"password": PASSWORD}, timeout=10)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert admin.get(f"{url}/api/auth/me", timeout=10).status_code == 200


def test_the_admin_cannot_delete_themselves_here_and_unknown_ids_are_404(server, admin):
    root_id = user_id(admin, server.url)
    own = admin.delete(f"{server.url}/api/admin/users/{root_id}", json={"password": PASSWORD},
                       timeout=10)
    assert own.status_code == 400 and own.json()["error"]["code"] == "own_account"
    assert admin.get(f"{server.url}/api/auth/me", timeout=10).status_code == 200
    for path in ("/api/admin/users/987654", "/api/admin/users/abc", "/api/admin/users/-1"):
        deleted = admin.delete(server.url + path, json={"password": PASSWORD}, timeout=10)
        changed = admin.put(server.url + path, json={"is_admin": True}, timeout=10)
        assert deleted.status_code == changed.status_code == 404, path
        assert deleted.json()["error"]["code"] == changed.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("body", [
    None, [], True, {}, {"is_admin": "true"}, {"is_admin": 1}, {"is_admin": None},
    {"is_admin": True, "extra": 1},
])
def test_a_bad_admin_role_body_is_a_400_and_changes_nothing(server, admin, body):
    someone = users_of(admin, server.url)[1]
    response = put_admin(admin, server.url, someone["id"], body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
    assert users_of(admin, server.url)[1] == someone


def test_admins_are_made_and_unmade_but_the_server_always_keeps_one(server, admin):
    url = server.url
    root_id, deputy = user_id(admin, url), register(url, "deputy")
    deputy_id = user_id(deputy, url)
    assert deputy.get(f"{url}/api/admin/users", timeout=10).status_code == 403

    made = put_admin(admin, url, deputy_id, {"is_admin": True})
    assert made.status_code == 200
    user = made.json()["user"]
    assert set(user) == {"id", "username", "is_admin", "created_at"}
    assert (user["id"], user["username"], user["is_admin"]) == (deputy_id, "deputy", True)
    assert deputy.get(f"{url}/api/auth/me", timeout=10).json()["user"]["is_admin"]  # at once
    assert put_admin(deputy, url, root_id, {"is_admin": False}).status_code == 200
    assert admin.get(f"{url}/api/admin/users", timeout=10).status_code == 403
    last = put_admin(deputy, url, deputy_id, {"is_admin": False})  # stepping down, the last
    assert last.status_code == 409 and last.json()["error"]["code"] == "last_admin"
    assert put_admin(deputy, url, root_id, {"is_admin": True}).status_code == 200

    assert put_admin(admin, url, deputy_id, {"is_admin": False}).status_code == 200
    assert deputy.get(f"{url}/api/admin/users", timeout=10).status_code == 403
    alone = put_admin(admin, url, root_id, {"is_admin": False})
    assert alone.status_code == 409 and alone.json()["error"]["code"] == "last_admin"
    assert put_admin(admin, url, deputy_id, {"is_admin": True}).status_code == 200
    other_admin = admin.delete(f"{url}/api/admin/users/{deputy_id}",
                               json={"password": PASSWORD}, timeout=60)
    assert other_admin.status_code == 200  # another admin may be deleted: one remains
    assert [u["username"] for u in users_of(admin, url) if u["is_admin"]] == ["root"]


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
