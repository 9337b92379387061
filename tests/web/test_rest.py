"""The REST API of the real server: accounts, errors, memory routes, and that no user can
reach another user's data by id."""

from __future__ import annotations

import pytest
import requests

from tests.web.conftest import PASSWORD, connected_user, register


def post(url: str, path: str, body=None, session=None, **kwargs) -> requests.Response:
    return (session or requests).post(url + path, json=body, timeout=10, **kwargs)


def test_the_first_user_is_admin_and_later_ones_are_not(live_server):
    first = register(live_server.url, "admin")
    second = register(live_server.url, "second")
    me = first.get(live_server.url + "/api/auth/me", timeout=10).json()["user"]
    assert me["username"] == "admin" and me["is_admin"] is True
    later = second.get(live_server.url + "/api/auth/me", timeout=10).json()["user"]
    assert later["is_admin"] is False


def test_the_session_cookie_is_httponly_and_samesite_lax(live_server):
    response = post(live_server.url, "/api/auth/register",
                    {"username": "cookie", "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("body, status, code", [
    (None, 400, "bad_request"),
    (["not", "an", "object"], 400, "bad_request"),
    ({"username": "ab", "password": PASSWORD}, 400, "invalid_username"),
    ({"username": "no spaces", "password": PASSWORD}, 400, "invalid_username"),
    ({"username": "x" * 33, "password": PASSWORD}, 400, "invalid_username"),
    ({"username": "shortpw", "password": "1234567"}, 400, "invalid_password"),
    ({"username": "surrogate", "password": "bad \ud800 password"}, 400, "invalid_password"),
    ({"username": "numbers", "password": 12345678}, 400, "bad_request"),
])
def test_registration_input_is_validated_with_clear_errors(live_server, body, status, code):
    response = post(live_server.url, "/api/auth/register", body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_usernames_are_unique_regardless_of_case(live_server):
    register(live_server.url, "Carol")
    response = post(live_server.url, "/api/auth/register",
                    {"username": "CAROL", "password": PASSWORD})
    assert response.status_code == 409 and response.json()["error"]["code"] == "username_taken"


def test_login_logout_and_wrong_passwords(live_server):
    register(live_server.url, "dora")
    wrong = post(live_server.url, "/api/auth/login", {"username": "dora", "password": "nope-nope"})
    unknown = post(live_server.url, "/api/auth/login", {"username": "nobody", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()  # nothing tells which usernames exist

    session = requests.Session()
    assert post(live_server.url, "/api/auth/login", {"username": "Dora", "password": PASSWORD},
                session=session).status_code == 200
    assert session.get(live_server.url + "/api/conversations", timeout=10).status_code == 200
    assert post(live_server.url, "/api/auth/logout", session=session).status_code == 200
    after = session.get(live_server.url + "/api/conversations", timeout=10)
    assert after.status_code == 401 and after.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/auth/me"), ("GET", "/api/conversations"),
    ("GET", "/api/conversations/x/messages"),
    ("GET", "/api/memory"), ("GET", "/api/memory?q=hello"), ("DELETE", "/api/memory/1"),
    ("GET", "/api/memory/export"), ("POST", "/api/memory/import"), ("GET", "/api/network"),
])
def test_every_data_route_needs_a_login(live_server, method, path):
    response = requests.request(method, live_server.url + path, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_unknown_routes_methods_and_oversized_bodies_answer_json_errors(live_server):
    session = register(live_server.url, "errors")
    missing = session.get(live_server.url + "/api/nothing-here", timeout=10)
    wrong_method = session.put(live_server.url + "/api/conversations", timeout=10)
    too_big = session.post(live_server.url + "/api/memory/import", data=b"x" * (33 * 2**20),
                           headers={"Content-Type": "application/json"}, timeout=30)
    for response, status in ((missing, 404), (wrong_method, 405), (too_big, 413)):
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["message"]


def test_memory_browse_search_delete_export_and_import(live_server):
    with connected_user(live_server.url, "memo") as (session, sock):
        ack = sock.call("chat", {"conversation_id": None, "text": "My cat Miso loves tuna."})
        sock.wait_for("stats")
    url = live_server.url + "/api/memory"
    recent = session.get(url, timeout=10).json()["results"]
    assert [e["role"] for e in recent] == ["assistant", "user"]  # newest first
    found = session.get(url, params={"q": "what does Miso eat", "limit": 5}, timeout=10).json()
    hit = found["results"][0]
    assert hit["text"] == "My cat Miso loves tuna."
    assert "miso" in [token for token, _ in hit["matched"]]

    export = session.get(url + "/export", timeout=10)
    assert "attachment" in export.headers["Content-Disposition"]
    data = export.json()
    assert len(data["episodes"]) == 2

    assert session.delete(f"{url}/{hit['episode_id']}", timeout=10).status_code == 200
    assert session.delete(f"{url}/{hit['episode_id']}", timeout=10).status_code == 404
    assert session.get(url, params={"q": "Miso"}, timeout=10).json()["results"] == []

    files = {"file": ("memory.json", export.content, "application/json")}
    imported = session.post(url + "/import", files=files, timeout=30).json()
    assert imported == {"imported": 1, "skipped": 1}  # the deleted one comes back, once
    assert session.get(url, params={"q": "Miso"}, timeout=10).json()["results"]
    bad = session.post(url + "/import", json={"format": "something else"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_input"
    assert ack["conversation_id"]


def test_a_user_never_reaches_another_users_data_by_id(live_server):
    with connected_user(live_server.url, "owner") as (owner, sock):
        ack = sock.call("chat", {"conversation_id": None, "text": "Owner's diary: 42 islands."})
        sock.wait_for("stats")
    other = register(live_server.url, "intruder")
    episode_id = owner.get(live_server.url + "/api/memory", timeout=10).json()["results"][0][
        "episode_id"]
    conversation = f"{live_server.url}/api/conversations/{ack['conversation_id']}/messages"

    assert other.get(conversation, timeout=10).status_code == 404
    assert other.delete(f"{live_server.url}/api/memory/{episode_id}", timeout=10).status_code == 404
    assert other.get(live_server.url + "/api/conversations", timeout=10).json() == {
        "conversations": []}
    assert other.get(live_server.url + "/api/memory", params={"q": "diary islands"},
                     timeout=10).json()["results"] == []
    assert other.get(live_server.url + "/api/memory/export", timeout=10).json()["episodes"] == []
    assert other.get(live_server.url + "/api/network", timeout=10).json()["episodes"] == 0
    assert owner.get(conversation, timeout=10).status_code == 200  # still the owner's


def test_network_stats_have_the_documented_fields(live_server):
    session = register(live_server.url, "stats")
    stats = session.get(live_server.url + "/api/network", timeout=10).json()
    assert {"episodes", "synapses", "rate_e", "rate_i", "mean_weight", "connection_fraction",
            "step", "weight_histogram"} <= set(stats)
    histogram = stats["weight_histogram"]
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert sum(histogram["counts"]) == stats["synapses"] > 0


def test_repeated_failed_logins_are_throttled(live_server):
    register(live_server.url, "target")
    for _ in range(10):
        wrong = post(live_server.url, "/api/auth/login",
                     {"username": "target", "password": "guess-guess"})
        assert wrong.status_code == 401
    right = post(live_server.url, "/api/auth/login", {"username": "target", "password": PASSWORD})
    assert right.status_code == 429 and right.json()["error"]["code"] == "too_many_attempts"


@pytest.mark.parametrize("limit", ["0", "201", "many"])
def test_memory_limits_out_of_range_are_refused(live_server, limit):
    session = register(live_server.url, f"limit{limit}")
    response = session.get(live_server.url + "/api/memory", params={"q": "x", "limit": limit},
                           timeout=10)
    assert response.status_code == 400 and "limit" in response.json()["error"]["message"]
