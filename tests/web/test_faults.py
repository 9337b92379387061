"""Faults, against the real server: the LLM endpoint failing every way it can, an engine
worker or the whole server SIGKILLed mid-turn, and a data directory that turns read-only
or fills up. Whatever happens the user gets a clear error, what was acknowledged stays
stored and recallable, the database stays intact, and the next turn works."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import UserSocket, register, start_server, stop_server
from tests.web.test_engine_restart import engine_pids, wait_until
from webapp.bench.liveserver import free_port


def messages_of(session: requests.Session, url: str, conversation_id: str) -> list[dict]:
    response = session.get(f"{url}/api/conversations/{conversation_id}/messages", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def recalled_texts(session: requests.Session, url: str, query: str) -> list[str]:
    found = session.get(f"{url}/api/memory", params={"q": query}, timeout=30).json()
    return [hit["text"] for hit in found["results"]]


def integrity(db_path: Path) -> str:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# --- the LLM endpoint ------------------------------------------------------------------


@pytest.mark.parametrize("mode, code", [
    ("429", "rate_limited"),
    ("500", "server_error"),
    ("hang", "timeout"),
    ("cut", "cut_off"),
    ("garbage", "bad_stream"),
])
def test_an_llm_failure_is_a_clear_error_the_message_stays_and_the_next_turn_works(
        live_server, mode, code):
    session = register(live_server.url, f"llm{mode.replace('-', '')}")
    sock = UserSocket(live_server.url, session)
    live_server.nim.mode = mode
    text = f"My locker code for the {mode} day is kept in the blue folder."
    ack = sock.call("chat", {"conversation_id": None, "text": text})
    assert ack["ok"]
    error = sock.wait_for("error", lambda p: p["message_id"] == ack["message_id"], timeout=30)
    assert error["code"] == code and len(error["message"]) > 20
    sock.wait_for("stats", timeout=20)  # the turn has ended, its question stored as an episode
    asked, reply = messages_of(session, live_server.url, ack["conversation_id"])
    assert asked["text"] == text and asked["status"] == "complete"
    assert reply["status"] == "error" and reply["meta"]["error"]["code"] == code
    assert text in recalled_texts(session, live_server.url, "locker code blue folder")

    live_server.nim.mode = "ok"
    again = sock.chat("And what colour is the folder?", ack["conversation_id"])
    done = sock.wait_for("done", lambda p: p["message_id"] == again["message_id"])
    assert done["text"] == live_server.nim.reply and done["status"] == "complete"
    sock.close()


def test_an_unreachable_llm_endpoint_is_a_clear_error_and_the_server_keeps_serving(tmp_path):
    with FakeNIM() as nim:
        closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
        server = start_server(tmp_path, nim, NIM_BASE_URL=closed)
        try:
            session = register(server.url, "nobody-home")
            sock = UserSocket(server.url, session)
            for attempt in range(2):
                text = f"Attempt {attempt}: the spare key is under the flowerpot."
                ack = sock.call("chat", {"conversation_id": None, "text": text})
                error = sock.wait_for("error", lambda p, a=ack: p["message_id"] == a["message_id"],
                                      timeout=30)
                assert error["code"] == "unreachable" and "NIM_BASE_URL" in error["message"]
                assert messages_of(session, server.url, ack["conversation_id"])[0]["text"] == text
            assert requests.get(server.url + "/healthz", timeout=10).json()["status"] == "ok"
            sock.close()
        finally:
            stop_server(server)


# --- an engine worker killed -----------------------------------------------------------


def test_an_engine_killed_while_storing_a_turn_loses_no_episode(live_server):
    """The question's episode is being learned when the worker dies: the turn retries it
    on the restarted worker (or says it was not saved); every earlier episode survives."""
    session = register(live_server.url, "storekill")
    sock = UserSocket(live_server.url, session)
    facts = [f"Plant {i} on the balcony is a {name}." for i, name in
             enumerate(["fern", "cactus", "basil"])]
    for fact in facts:
        sock.chat(fact)
    long_text = "My travel diary: " + " ".join(f"village{i} river{i}" for i in range(700))
    stats_before = len(sock.named("stats"))
    ack = sock.call("chat", {"conversation_id": None, "text": long_text})
    sock.wait_for("done", lambda p: p["message_id"] == ack["message_id"], timeout=30)
    before = engine_pids(live_server.process.pid)
    for pid in before:  # the episode store of the long question runs now
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(engine_pids(live_server.process.pid) - before) == 2)
    not_saved = lambda: [e for e in sock.named("error") if e["code"] == "memory_not_saved"]  # noqa: E731
    wait_until(lambda: len(sock.named("stats")) > stats_before or not_saved(), timeout=60)

    export = session.get(live_server.url + "/api/memory/export", timeout=60).json()
    texts = [e["text"] for e in export["episodes"]]
    assert set(facts) <= set(texts)
    assert long_text in texts or not_saved()  # stored by the retry, or the user was told
    assert recalled_texts(session, live_server.url, "cactus balcony")[0] == facts[1]
    sock.close()


def test_a_hung_engine_is_killed_and_restarted_and_the_turn_loses_nothing(tmp_path):
    """SIGSTOPped engines hold their pipes open and answer nothing. Once the user's engine
    has owed an answer for SORNMEMORY_ENGINE_HANG seconds the server SIGKILLs and reaps it
    and starts a new one:
    the turn's recall fails with the same clean error as for a killed engine, the reply
    still streams, the message is stored by the retry, and the next turn recalls it."""
    hang_seconds = 2
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim, SORNMEMORY_ENGINE_HANG=str(hang_seconds))
        try:
            session = register(server.url, "frozen")
            sock = UserSocket(server.url, session)
            sock.chat("The spare tyre is under the boot floor.")
            before = engine_pids(server.process.pid)
            for pid in before:
                os.kill(pid, signal.SIGSTOP)
            stats_before = len(sock.named("stats"))
            text = "The car jack is clipped beside the spare tyre."
            ack = sock.call("chat", {"conversation_id": None, "text": text})
            memory = sock.wait_for("memory", lambda p: p["message_id"] == ack["message_id"],
                                   timeout=hang_seconds + 10)
            assert memory["recalled"] == [] and memory["error"]["code"] == "engine_restarted"
            done = sock.wait_for("done", lambda p: p["message_id"] == ack["message_id"])
            assert done["status"] == "complete"

            # The user's engine was replaced; the other one owed nothing and is left alone.
            wait_until(lambda: len(engine_pids(server.process.pid) - before) == 1)
            (hung,) = before - engine_pids(server.process.pid)
            assert not Path(f"/proc/{hung}").exists()  # killed although stopped, and reaped
            for pid in before - {hung}:
                os.kill(pid, signal.SIGCONT)
            wait_until(lambda: len(sock.named("stats")) > stats_before, timeout=30)
            assert not [e for e in sock.named("error") if e["code"] == "memory_not_saved"]
            health = requests.get(server.url + "/healthz", timeout=10).json()
            assert health["status"] == "ok" and health["engine_restarts"] == 1

            sock.chat("Where do I find the car jack?", ack["conversation_id"])
            assert recalled_texts(session, server.url, "car jack spare tyre")[0] == text
            texts = [e["text"] for e in session.get(server.url + "/api/memory/export",
                                                    timeout=30).json()["episodes"]]
            assert {"The spare tyre is under the boot floor.", text} <= set(texts)
            sock.close()
        finally:
            stop_server(server)


# --- the whole server killed -----------------------------------------------------------


def test_a_server_killed_mid_load_keeps_every_acknowledged_message_recallable(tmp_path):
    with FakeNIM() as nim:
        nim.delay = 0.3
        server = start_server(tmp_path, nim)
        users = [(name, register(server.url, name)) for name in ("kim", "lee", "max")]
        acked: list[tuple[requests.Session, str, dict]] = []
        stop = threading.Event()

        def chat_until_killed(name: str, session: requests.Session) -> None:
            sock = UserSocket(server.url, session)
            conversation = None
            for i in range(50):
                text = f"{name} note {i}: the code word is {name}word{i}x."
                try:
                    ack = sock.call("chat", {"conversation_id": conversation, "text": text})
                except Exception:  # noqa: BLE001 - the server died under us
                    return
                acked.append((session, text, ack))
                conversation = ack["conversation_id"]
                if stop.wait(0.2):
                    return

        threads = [threading.Thread(target=chat_until_killed, args=user) for user in users]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acked) >= 9)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert integrity(tmp_path / "data" / "sornmemory.db") == "ok"

        server = start_server(tmp_path, nim)  # same data dir, same secret key: same sessions
        try:
            sockets = [UserSocket(server.url, session) for _, session in users]
            for session, text, ack in acked:
                assert ack["ok"]
                stored = messages_of(session, server.url, ack["conversation_id"])
                by_id = {m["id"]: m for m in stored}
                assert by_id[ack["user_message_id"]]["text"] == text
                assert by_id[ack["message_id"]]["status"] in ("complete", "error")
                code_word = text.rsplit(" ", 1)[1].rstrip(".")
                wait_until(lambda s=session, w=code_word, t=text:
                           t in recalled_texts(s, server.url, w), timeout=30)
            assert sockets[0].chat("Still there?")["ok"]
            for sock in sockets:
                sock.close()
        finally:
            stop_server(server)
        assert integrity(tmp_path / "data" / "sornmemory.db") == "ok"


# --- the data directory read-only or full ----------------------------------------------


@pytest.fixture()
def tmpfs_server(tmp_path):
    """A server whose data directory is a small tmpfs of its own (mounted as root), so the
    test can fill it up."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        with FakeNIM() as nim:
            server = start_server(tmp_path, nim, SORNMEMORY_DATA=str(mount / "data"))
            server.data_dir = mount / "data"
            try:
                yield server, mount
            finally:
                stop_server(server)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def is_read_only(directory: Path) -> bool:
    try:
        (directory / "probe").touch()
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False


@pytest.fixture()
def ext4_mount(tmp_path):
    """A small ext4 file system on a loop device, mounted with errors=remount-ro (as root):
    the kernel turns it read-only under the running server when it reports an error, as it
    does when a real disk fails (a plain remount is refused while files are open to write)."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(32 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)

    def mount_it() -> str:
        subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)],
                       check=True)
        return subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mount)], check=True,
                              capture_output=True, text=True).stdout.strip()

    def repair() -> str:
        """Unmount, fsck and mount again read-write, as an operator would."""
        subprocess.run(["umount", str(mount)], check=True)
        subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True)
        return mount_it()

    mount_it()
    yield mount, repair
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_data_directory_turned_read_only_gives_clear_errors_and_no_corruption(
        tmp_path, ext4_mount):
    mount, repair = ext4_mount
    data = mount / "data"
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim, SORNMEMORY_DATA=str(data))
        try:
            session = register(server.url, "reader")
            sock = UserSocket(server.url, session)
            first = sock.chat("Before the freeze: the boat is called Albatross.")
            device = Path(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mount)],
                                         capture_output=True, text=True).stdout.strip()).name
            Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("test: disk failed")
            wait_until(lambda: is_read_only(mount))

            refused = sock.call("chat", {"conversation_id": None, "text": "Will this be kept?"})
            assert refused["ok"] is False
            assert refused["error"]["code"] == "storage_unavailable"
            assert "read-only" in refused["error"]["message"]
            signup = requests.post(server.url + "/api/auth/register", timeout=10,
                                   json={"username": "latecomer", "password": "long enough pw"})
            assert signup.status_code == 503
            assert signup.json()["error"]["code"] == "storage_unavailable"
            stored = messages_of(session, server.url, first["conversation_id"])
            assert stored[0]["text"] == "Before the freeze: the boat is called Albatross."
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
            sock.close()
        finally:
            stop_server(server)

        repair()
        assert integrity(data / "sornmemory.db") == "ok"
        server = start_server(tmp_path, nim, SORNMEMORY_DATA=str(data))
        try:
            sock = UserSocket(server.url, session)
            after = sock.chat("After the repair: the boat is red.")
            assert sock.wait_for("done", lambda p: p["message_id"] == after["message_id"])
            assert "Before the freeze: the boat is called Albatross." in recalled_texts(
                session, server.url, "Albatross")
            sock.close()
        finally:
            stop_server(server)


def test_a_full_disk_gives_clear_errors_and_no_corruption(tmpfs_server):
    server, mount = tmpfs_server
    session = register(server.url, "filler")
    sock = UserSocket(server.url, session)
    sock.chat("Before the disk filled: the tent is green.")
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for size in (2**20, 4096):  # take every free page
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    try:
        refusals, acked = [], []
        for i in range(40):
            text = f"Entry {i}: " + "long words fill pages " * 700
            ack = sock.call("chat", {"conversation_id": None, "text": text}, timeout=30)
            (acked if ack["ok"] else refusals).append((text, ack))
            if not ack["ok"]:
                break
        assert refusals, "the disk never filled"
        assert refusals[0][1]["error"]["code"] == "storage_unavailable"
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        filler.unlink()
    time.sleep(1)  # let in-flight turns end
    after = sock.chat("After the disk was freed: the tent is blue.")
    assert sock.wait_for("done", lambda p: p["message_id"] == after["message_id"])
    for text, ack in acked:
        assert messages_of(session, server.url, ack["conversation_id"])[0]["text"] == text
    assert "Before the disk filled: the tent is green." in recalled_texts(
        session, server.url, "tent green")
    sock.close()
    assert integrity(server.data_dir / "sornmemory.db") == "ok"


# --- a long-running server -------------------------------------------------------------


def web_worker_pid(server_pid: int) -> int:
    """gunicorn's worker: the server's child that is not an engine."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if parent == server_pid and int(stat.parent.name) not in engine_pids(server_pid):
            return int(stat.parent.name)
    raise AssertionError("no web worker process")


def test_turns_do_not_leak_file_descriptors(live_server):
    """Every socket event runs in a new thread; a database connection opened there (one per
    thread) would stay open for good, until the server ran out of descriptors."""
    fds = Path(f"/proc/{web_worker_pid(live_server.process.pid)}/fd")
    sock = UserSocket(live_server.url, register(live_server.url, "longrunner"))
    sock.chat("Warming up: the first turn opens what the server keeps open.")
    before = len(list(fds.iterdir()))
    for i in range(20):
        sock.chat(f"Turn {i} of a long day.")
    assert len(list(fds.iterdir())) - before < 5
    sock.close()
