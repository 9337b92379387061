"""Security against the real server: no user reaches another's data whatever ids they send
(REST or socket), sessions and connections are what they claim, login guessing is slowed,
and malformed or oversized input gets a clear error without harming the server."""

from __future__ import annotations

import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import socketio
import websocket

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, UserSocket, register, start_server, stop_server
from tests.web.test_engine_restart import wait_until


@pytest.fixture(scope="module")
def owner(live_server):
    """A user with two conversations, replies and episodes; and everything their ids."""
    session = register(live_server.url, "vaultowner")
    sock = UserSocket(live_server.url, session)
    first = sock.chat("The safe combination is 31-7-22, hidden behind the mirror.")
    second = sock.chat("My bank PIN hint: the year grandma was born.")
    sock.close()
    url = live_server.url
    conversations = [first["conversation_id"], second["conversation_id"]]
    messages = [m["id"] for c in conversations
                for m in session.get(f"{url}/api/conversations/{c}/messages", timeout=10)
                .json()["messages"]]
    export = session.get(f"{url}/api/memory/export", timeout=30).json()
    episodes = [e["episode_id"] if "episode_id" in e else e["id"] for e in export["episodes"]]
    return {"session": session, "conversations": conversations, "messages": messages,
            "episodes": episodes, "export": export}


def test_another_users_ids_reach_nothing_over_rest(live_server, owner):
    url = live_server.url
    intruder = register(url, "intruder2")
    for conversation in owner["conversations"]:
        response = intruder.get(f"{url}/api/conversations/{conversation}/messages", timeout=10)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # Every episode id there is (and a few beyond): nothing to delete.
    for episode_id in range(1, max(owner["episodes"]) + 5):
        assert intruder.delete(f"{url}/api/memory/{episode_id}", timeout=10).status_code == 404
    assert intruder.get(f"{url}/api/memory", timeout=10).json()["results"] == []
    for query in ("safe combination mirror", "bank PIN grandma"):
        found = intruder.get(f"{url}/api/memory", params={"q": query}, timeout=10).json()
        assert found["results"] == []
    assert intruder.get(f"{url}/api/memory/export", timeout=30).json()["episodes"] == []
    assert intruder.get(f"{url}/api/conversations", timeout=10).json()["conversations"] == []

    # Importing the owner's export (with the owner's ids in it) only fills the intruder's own
    # memory; the owner's is untouched.
    imported = intruder.post(f"{url}/api/memory/import", json=owner["export"], timeout=60)
    assert imported.status_code == 200
    after = owner["session"].get(f"{url}/api/memory/export", timeout=30).json()
    assert after["episodes"] == owner["export"]["episodes"]


def test_another_users_ids_reach_nothing_over_the_socket(live_server, owner):
    intruder = UserSocket(live_server.url, register(live_server.url, "intruder3"))
    for conversation in owner["conversations"]:
        ack = intruder.call("chat", {"conversation_id": conversation, "text": "let me in"})
        assert ack == {"ok": False, "error": {"code": "not_found",
                                              "message": "No such conversation."}}
    for message_id in owner["messages"]:
        assert intruder.call("regenerate", {"message_id": message_id})["error"]["code"] == (
            "not_found")
        assert intruder.call("stop", {"message_id": message_id})["ok"] is False
    assert not [e for e, _ in intruder.events if e in ("memory", "token", "done", "spikes")]
    intruder.close()
    messages = owner["session"].get(
        f"{live_server.url}/api/conversations/{owner['conversations'][0]}/messages",
        timeout=10).json()["messages"]
    assert [m["status"] for m in messages] == ["complete", "complete"]  # nothing regenerated


def test_a_forged_or_tampered_session_cookie_is_refused(live_server):
    session = register(live_server.url, "cookiejar")
    value = session.cookies["sornmemory_session"]
    for forged in (value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
                   "eyJ1c2VyX2lkIjoxfQ.forged.signature"):
        jar = requests.Session()
        jar.cookies.set("sornmemory_session", forged)
        assert jar.get(f"{live_server.url}/api/auth/me", timeout=10).status_code == 401
        with pytest.raises(socketio.exceptions.ConnectionError):
            UserSocket(live_server.url, jar)


def test_a_login_sets_a_fresh_httponly_samesite_cookie(live_server):
    register(live_server.url, "freshcookie")
    register(live_server.url, "freshcookie2")
    old = requests.Session()
    old.post(f"{live_server.url}/api/auth/login", timeout=10,
             json={"username": "freshcookie", "password": PASSWORD})
    # Logging in over another account's session replaces it: no fixation.
    old.post(f"{live_server.url}/api/auth/login", timeout=10,
             json={"username": "freshcookie2", "password": PASSWORD})
    assert old.get(f"{live_server.url}/api/auth/me", timeout=10).json()["user"][
        "username"] == "freshcookie2"
    response = requests.post(f"{live_server.url}/api/auth/login", timeout=10,
                             json={"username": "freshcookie", "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


def test_requests_do_not_reissue_the_session_cookie_so_a_logout_sticks(live_server):
    """A request in flight during a logout must not bring the old session back."""
    session = register(live_server.url, "stickylogout")
    me = session.get(f"{live_server.url}/api/auth/me", timeout=10)
    assert me.status_code == 200 and "Set-Cookie" not in me.headers
    assert "Set-Cookie" not in session.get(f"{live_server.url}/api/conversations",
                                           timeout=10).headers
    session.post(f"{live_server.url}/api/auth/logout", timeout=10)
    assert session.get(f"{live_server.url}/api/auth/me", timeout=10).status_code == 401


def test_login_throttling_ignores_the_usernames_case_and_spares_other_accounts(live_server):
    register(live_server.url, "casey")
    register(live_server.url, "bystander")
    for attempt in range(10):
        name = "Casey" if attempt % 2 else "CASEY"
        wrong = requests.post(f"{live_server.url}/api/auth/login", timeout=10,
                              json={"username": name, "password": "not the password"})
        assert wrong.status_code == 401
    blocked = requests.post(f"{live_server.url}/api/auth/login", timeout=10,
                            json={"username": "casey", "password": PASSWORD})
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "too_many_attempts"
    other = requests.post(f"{live_server.url}/api/auth/login", timeout=10,
                          json={"username": "bystander", "password": PASSWORD})
    assert other.status_code == 200


HUGE = 10 * 2**20


@pytest.mark.parametrize("body, content_type, register_code, login_code", [
    (b"{not json", "application/json", "bad_request", "bad_request"),
    (b"\x00\xff\xfe binary \x80", "application/json", "bad_request", "bad_request"),
    (b"\x00\xff\xfe binary \x80", "application/octet-stream", "bad_request", "bad_request"),
    (b'{"username": {"nested": 1}, "password": ["x"]}', "application/json", "bad_request",
     "bad_request"),
    (b'{"username": "' + b"u" * HUGE + b'", "password": "long enough"}', "application/json",
     "invalid_username", "bad_credentials"),
    (b'{"username": "hugepassword", "password": "' + b"p" * HUGE + b'"}', "application/json",
     "invalid_password", "bad_credentials"),
])
def test_malformed_and_huge_auth_bodies_get_clear_errors(live_server, body, content_type,
                                                         register_code, login_code):
    for route, code in (("register", register_code), ("login", login_code)):
        response = requests.post(f"{live_server.url}/api/auth/{route}", data=body, timeout=30,
                                 headers={"Content-Type": content_type})
        assert response.status_code == (401 if code == "bad_credentials" else 400)
        error = response.json()["error"]
        assert error["code"] == code and error["message"]
    assert requests.get(f"{live_server.url}/healthz", timeout=10).status_code == 200


def test_malformed_imports_and_queries_get_clear_errors(live_server):
    session = register(live_server.url, "importer")
    url = f"{live_server.url}/api/memory"
    for body in (b"\x00\xff binary", b"[1, 2, 3]", b'{"episodes": "not a list"}',
                 b'{"episodes": [{"text": 42}]}', b'{"episodes": [' + b'{"t": 1},' * 1000 + b"1]}"):
        response = session.post(url + "/import", data=body, timeout=30,
                                headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text[:200]
        assert response.json()["error"]["message"]
    huge_query = session.get(url, params={"q": "word " * 3000}, timeout=30)
    assert huge_query.status_code in (200, 400, 414)
    assert session.get(url, params={"q": "still answering"}, timeout=10).status_code == 200


def test_oversized_and_binary_socket_payloads_do_not_harm_the_server(live_server):
    session = register(live_server.url, "bigmouth")
    sock = UserSocket(live_server.url, session)
    assert sock.call("chat", {"conversation_id": None, "text": b"\x00\xffbinary"})["error"][
        "code"] == "bad_request"
    assert sock.call("chat", {"conversation_id": None, "text": "x" * 200_000})["error"][
        "code"] == "too_long"
    assert sock.call("regenerate", [1, 2, 3])["error"]["code"] == "bad_request"
    assert sock.call("stop", {"message_id": None})["error"]["code"] == "bad_request"

    # 10 MB in one event is over the socket's message limit: the connection is closed.
    sock.client.emit("chat", {"conversation_id": None, "text": "y" * (10 * 2**20)})
    sock.client.sleep(2)
    assert not sock.client.connected
    again = UserSocket(live_server.url, session)
    assert again.chat("Still here after the big one?")["ok"]
    again.close()


@pytest.mark.parametrize("route", ["/api/auth/register", "/api/auth/login", "/api/memory/import"])
def test_json_nested_too_deep_is_a_clear_error_not_a_server_error(live_server, route):
    session = register(live_server.url, "deepnest" + route.rsplit("/", 1)[1])
    deep = b"[" * 100_000 + b"]" * 100_000
    answers = [session.post(live_server.url + route, data=deep, timeout=30,
                            headers={"Content-Type": "application/json"})]
    if route.endswith("import"):
        answers.append(session.post(live_server.url + route, timeout=30,
                                    files={"file": ("memory.json", deep, "application/json")}))
    for response in answers:
        assert response.status_code == 400, response.text[:200]
        assert response.json()["error"]["message"]


def test_episode_ids_beyond_sqlites_integers_are_simply_unknown(live_server):
    session = register(live_server.url, "bigids")
    for episode_id in (2**63 - 1, 2**63, 10**30):
        response = session.delete(f"{live_server.url}/api/memory/{episode_id}", timeout=10)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert "engine command delete failed" not in live_server.log()


def test_an_import_with_out_of_range_numbers_is_refused_or_harmless(live_server):
    """A crafted export can neither crash the engine nor push the memory's positions to
    SQLite's limit, after which every store of that user would fail."""
    session = register(live_server.url, "rangeimport")
    url = f"{live_server.url}/api/memory/import"
    export = {"format": "sornmemory.memory", "version": 1}
    for count in (10**30, -5):
        refused = session.post(url, timeout=30, json={
            **export, "episodes": [{"text": "counted", "recall_count": count}]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_input"
    imported = session.post(url, timeout=30, json={**export, "episodes": [
        {"text": "first", "seq": 1}, {"text": "far away", "seq": 2**63 - 1},
        {"text": "further", "seq": 10**30}]})
    assert imported.json() == {"imported": 3, "skipped": 0}
    sock = UserSocket(live_server.url, session)
    sock.chat("My parrot is called Captain Flint.")
    sock.close()
    assert not [p for e, p in sock.events if e == "error"]
    found = session.get(f"{live_server.url}/api/memory", params={"q": "parrot"}, timeout=10)
    assert "Captain Flint" in found.json()["results"][0]["text"]


def open_websocket(url: str, session: requests.Session) -> websocket.WebSocket:
    """A raw Engine.IO WebSocket with the session's cookie, if any (it holds a server thread
    until closed, whether or not a Socket.IO connect over it would be accepted)."""
    cookie = session.cookies.get("sornmemory_session")
    sock = websocket.create_connection(
        url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket", origin=url,
        header={"Cookie": f"sornmemory_session={cookie}"} if cookie else {}, timeout=10)
    sock.recv()  # the Engine.IO open packet
    return sock


def refused_code(url: str, session: requests.Session) -> str:
    """The error code of a handshake expected to be refused (a WebSocket's reason is not
    readable from the client: the polling handshake says the same)."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_websocket(url, session)
    assert refused.value.status_code == 401
    polling = session.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"},
                          timeout=10)
    assert polling.status_code == 401
    return polling.json()["error"]["code"]


def can_open(url: str, session: requests.Session) -> bool:
    try:
        open_websocket(url, session).close()
    except websocket.WebSocketBadStatusException:
        return False
    return True


def test_clients_without_a_live_login_hold_only_a_few_sockets_together(live_server):
    url = live_server.url
    logged_out = register(url, "handshaker")
    stale = requests.Session()  # a copy of the cookie, kept after the logout
    stale.cookies.update(logged_out.cookies)
    logged_out.post(f"{url}/api/auth/logout", timeout=10)
    clients, held = [requests.Session(), stale], []
    with pytest.raises(websocket.WebSocketBadStatusException):
        for attempt in range(20):
            held.append(open_websocket(url, clients[attempt % 2]))
    assert len(held) <= 5
    assert refused_code(url, requests.Session()) == "too_many_connections"
    UserSocket(url, register(url, "handshaker2")).close()  # a live login still connects
    assert requests.get(url + "/healthz", timeout=10).status_code == 200
    for sock in held:
        sock.close()
    wait_until(lambda: can_open(url, requests.Session()), timeout=10)
    with pytest.raises(socketio.exceptions.ConnectionError):  # and is refused by Socket.IO
        UserSocket(url, stale)


def test_one_user_cannot_hold_more_than_twenty_sockets(live_server):
    url = live_server.url
    hog, neighbour = register(url, "sockethog"), register(url, "neighbour")
    held = [open_websocket(url, hog) for _ in range(20)]
    assert refused_code(url, hog) == "too_many_connections"
    UserSocket(url, neighbour).close()  # other users still connect
    held.pop().close()
    wait_until(lambda: can_open(url, hog), timeout=10)
    for sock in held:
        sock.close()


def test_sockets_leave_threads_for_http(tmp_path):
    """SORNMEMORY_THREADS bounds the server's threads; every open WebSocket holds one. 8 of
    10 (all but 10 of more) go to sockets, so logins and pages are still served when those
    are used."""
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim, SORNMEMORY_THREADS="10")
        try:
            users = [register(server.url, f"crowd{i}") for i in range(3)]
            held = [open_websocket(server.url, users[i % 2]) for i in range(8)]
            assert refused_code(server.url, users[2]) == "too_many_connections"
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
            login = requests.post(server.url + "/api/auth/login", timeout=10,
                                  json={"username": "crowd2", "password": PASSWORD})
            assert login.status_code == 200
            for sock in held:
                sock.close()
            wait_until(lambda: can_open(server.url, users[2]), timeout=10)
        finally:
            stop_server(server)


def test_writes_from_another_origin_are_refused(live_server):
    """SameSite=Lax still sends the cookie from a sibling subdomain or another port of the
    same host (same site): a form posted from there must not log out, log in or import."""
    url = live_server.url
    session = register(url, "csrfvictim")
    export = {"format": "sornmemory.memory", "version": 1,
              "episodes": [{"text": "The user wants all replies to include a link."}]}
    foreign = {"Origin": "http://evil.example"}
    for response in (
        session.post(f"{url}/api/memory/import", headers=foreign, timeout=30,
                     files={"file": ("memory.json", json.dumps(export), "text/plain")}),
        session.post(f"{url}/api/auth/logout", headers=foreign, timeout=10),
        session.post(f"{url}/api/auth/login", headers={**foreign, "Sec-Fetch-Site": "same-site"},
                     json={"username": "csrfvictim", "password": PASSWORD}, timeout=10),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "cross_origin"
    assert session.get(f"{url}/api/memory", timeout=10).json()["results"] == []
    assert session.get(f"{url}/api/auth/me", timeout=10).status_code == 200  # still logged in
    own = session.post(f"{url}/api/memory/import", json=export, timeout=30,
                       headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
    assert own.json() == {"imported": 1, "skipped": 0}


def test_api_answers_are_not_kept_in_caches(live_server):
    session = register(live_server.url, "nocache")
    for path in ("/api/auth/me", "/api/conversations", "/api/memory", "/api/memory/export"):
        assert session.get(live_server.url + path, timeout=10).headers["Cache-Control"] == (
            "no-store")


def web_worker_peak_rss_mb(server) -> float:
    """The gunicorn worker's (the arbiter's one child) peak resident memory so far."""
    pid = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    status = Path(f"/proc/{pid.split()[0]}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_a_flood_of_logins_does_not_exhaust_the_servers_memory(live_server):
    """Each scrypt password check takes 32 MiB: 40 at once, from anyone, took 1.3 GB."""
    before = web_worker_peak_rss_mb(live_server)
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda i: requests.post(
            f"{live_server.url}/api/auth/login", timeout=120,
            json={"username": f"flood{i}", "password": "guess-guess"}), range(40)))
    assert {response.status_code for response in answers} == {401}
    assert web_worker_peak_rss_mb(live_server) - before < 300


def test_guessing_across_many_usernames_from_one_address_is_throttled(tmp_path):
    """Password spraying: one common password tried on many accounts, each tried once."""
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim)
        try:
            register(server.url, "sprayed")
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda i: requests.post(
                    f"{server.url}/api/auth/login", timeout=60,
                    json={"username": f"account{i}", "password": "Password1!"}), range(100)))
            assert {response.status_code for response in answers} == {401}
            blocked = requests.post(f"{server.url}/api/auth/login", timeout=10,
                                    json={"username": "sprayed", "password": PASSWORD})
            assert blocked.status_code == 429
            assert blocked.json()["error"]["code"] == "too_many_attempts"
        finally:
            stop_server(server)


def closed_by_server(sock: websocket.WebSocket) -> bool:
    """Whether the server closes the connection within the socket's timeout."""
    try:
        while sock.recv():  # an empty read is the server's close frame
            pass
    except (websocket.WebSocketConnectionClosedException, BrokenPipeError):
        pass  # (answering the server's close frame can find the connection gone)
    except websocket.WebSocketTimeoutException:
        return False
    return True


def test_a_malformed_socket_packet_closes_its_connection_with_one_log_line(live_server):
    """Each undecodable packet logged a 20-line traceback: 2,000 tiny packets a second from
    one connection, needing no login, grew the log by 1.3 MB/s."""
    url = live_server.url
    session = register(url, "malformed")
    tracebacks = live_server.log().count("Traceback")
    packets = ('42{"not": "a list"}', '42["chat", {broken json', "4" + "[" * 50_000, "49",
               '42[["event name", "not text"]]')
    for packet in packets:
        sock = open_websocket(url, session)
        sock.send("40")
        assert sock.recv().startswith("40")  # connected to the namespace
        for _ in range(50):
            try:
                sock.send(packet)
            except (websocket.WebSocketException, OSError):  # the server closed it already
                break
        assert closed_by_server(sock)
    log = live_server.log()
    assert log.count("Traceback") == tracebacks
    assert log.count("sent a malformed packet") == len(packets)
    sock = UserSocket(url, session)
    sock.chat("Still answering after the junk?")
    sock.close()


def test_a_connect_that_fails_on_the_server_is_refused_not_left_deaf(live_server):
    """A Socket.IO connect whose handler failed was accepted with no room joined: the page
    showed 'Connected' and never heard a reply. Refused, the client tries again."""
    session = register(live_server.url, "deafsocket")
    sock = open_websocket(live_server.url, session)  # the handshake found the session
    db = sqlite3.connect(live_server.db_path)
    db.execute("ALTER TABLE sessions RENAME TO sessions_away")  # the connect's lookup fails
    db.commit()
    try:
        sock.send("40")
        answer = sock.recv()
    finally:
        db.execute("ALTER TABLE sessions_away RENAME TO sessions")
        db.commit()
        db.close()
    sock.close()
    assert answer.startswith("44")  # CONNECT_ERROR
    assert "internal" in json.loads(answer[2:])["message"]
    UserSocket(live_server.url, session).close()
