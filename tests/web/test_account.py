"""A user's own account on the real server: deleting it with everything it holds (rows,
network files, the loaded memory, open sockets), and changing the password."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, UserSocket, register, start_server, stop_server
from webapp.memory.memory import EXPORT_FORMAT, EXPORT_VERSION

SENTINEL = "zanzibarquokka"  # a word only the deleted user ever wrote


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of its own (its files are read raw), whose first account is its admin."""
    with FakeNIM() as nim:
        live = start_server(tmp_path_factory.mktemp("account"), nim)
        register(live.url, "root")
        yield live
        stop_server(live)


def raw_database(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("sornmemory.db*"))


def snapshots(data_dir: Path, user_id: int) -> list[Path]:
    return [p for p in (data_dir / "networks").glob(f"*user{user_id}-ep*")
            if p.name.lstrip(".").split("-")[0] == f"user{user_id}"]


def wait_until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def user_id(session: requests.Session, url: str) -> int:
    return session.get(f"{url}/api/auth/me", timeout=10).json()["user"]["id"]


def export_of(texts: list[str]) -> dict:
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            "episodes": [{"id": i + 1, "text": t, "role": "user", "timestamp": 1.7e9 + i}
                         for i, t in enumerate(texts)]}


def user_with_secrets(server, name: str, sentinel: str
                      ) -> tuple[requests.Session, int, UserSocket]:
    """A user whose chat and 40 imported notes hold `sentinel`, already in the database
    file and in a network snapshot (housekeeping wrote one): what a deletion must remove."""
    session = register(server.url, name)
    socket = UserSocket(server.url, session)
    socket.chat(f"My secret password hint is {sentinel}.", timeout=60)
    notes = [f"{sentinel} diary entry {i}: " + "rain again " * 20 for i in range(40)]
    imported = session.post(f"{server.url}/api/memory/import", json=export_of(notes),
                            timeout=60)
    assert imported.json()["imported"] == 40
    found_id = user_id(session, server.url)
    wait_until(lambda: snapshots(server.data_dir, found_id))
    assert sentinel.encode() in raw_database(server.data_dir)
    return session, found_id, socket


def test_deleting_an_account_leaves_nothing_of_it_and_frees_the_name(server):
    url, data = server.url, server.data_dir
    stayer = register(url, "stayer")
    stayer_socket = UserSocket(url, stayer)
    stayer_socket.chat("I keep honeybees on the roof.", timeout=60)
    leaver, leaver_id, leaver_socket = user_with_secrets(server, "leaver", SENTINEL)

    wrong = leaver.delete(f"{url}/api/account", json={"password": "not it at all"}, timeout=10)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    gone = leaver.delete(f"{url}/api/account", json={"password": PASSWORD}, timeout=60)
    assert gone.status_code == 200 and gone.json() == {"deleted": True}

    wait_until(lambda: not leaver_socket.client.connected)
    assert leaver.get(f"{url}/api/auth/me", timeout=10).status_code == 401
    time.sleep(4)  # past the engine's quiet time: its housekeeping would save a kept memory
    assert snapshots(data, leaver_id) == []
    assert SENTINEL.encode() not in raw_database(data)
    assert b"honeybees" in raw_database(data)

    again = register(url, "leaver")  # the name is free; the id may well be the same one
    assert again.get(f"{url}/api/memory", timeout=10).json()["results"] == []
    assert again.get(f"{url}/api/conversations", timeout=10).json()["conversations"] == []
    assert again.get(f"{url}/api/network", timeout=30).json()["episodes"] == 0
    found = again.get(f"{url}/api/memory", params={"q": SENTINEL}, timeout=30).json()
    assert found["results"] == []
    assert stayer_socket.client.connected
    kept = stayer.get(f"{url}/api/memory", params={"q": "honeybees"}, timeout=30).json()
    assert kept["results"][0]["text"] == "I keep honeybees on the roof."
    stayer_socket.close()


def test_the_only_admin_cannot_delete_their_account_while_others_exist(server):
    root = requests.Session()
    assert root.post(f"{server.url}/api/auth/login", timeout=10,
                     json={"username": "root", "password": PASSWORD}).status_code == 200
    register(server.url, "someone")
    refused = root.delete(f"{server.url}/api/account", json={"password": PASSWORD}, timeout=30)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "last_admin"
    assert root.get(f"{server.url}/api/auth/me", timeout=10).status_code == 200


def test_a_password_change_needs_the_old_one_and_ends_the_other_sessions(server):
    url = server.url
    here = register(url, "changer")
    elsewhere = requests.Session()
    assert elsewhere.post(f"{url}/api/auth/login", timeout=10,
                          json={"username": "changer", "password": PASSWORD}).status_code == 200
    elsewhere_socket = UserSocket(url, elsewhere)
    change = f"{url}/api/account/password"

    wrong = here.post(change, json={"current_password": "guess guess",
                                    "new_password": "a new long one"}, timeout=10)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    short = here.post(change, json={"current_password": PASSWORD, "new_password": "short"},
                      timeout=10)
    assert short.status_code == 400 and short.json()["error"]["code"] == "invalid_password"
    done = here.post(change, json={"current_password": PASSWORD,
                                   "new_password": "a new long one"}, timeout=10)
    assert done.status_code == 200 and done.json()["sessions_ended"] == 1

    assert here.get(f"{url}/api/auth/me", timeout=10).status_code == 200  # this one stays
    assert elsewhere.get(f"{url}/api/auth/me", timeout=10).status_code == 401
    wait_until(lambda: not elsewhere_socket.client.connected)
    old = requests.post(f"{url}/api/auth/login", timeout=10,
                        json={"username": "changer", "password": PASSWORD})
    assert old.status_code == 401
    new = requests.post(f"{url}/api/auth/login", timeout=10,
                        json={"username": "changer", "password": "a new long one"})
    assert new.status_code == 200
