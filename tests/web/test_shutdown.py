"""A graceful stop of the real server (SIGTERM to gunicorn, as systemd and `docker stop`
send): a chat sent meanwhile is refused with `server_stopping`, the reply being written
finishes and is kept, and the open sockets do not hold the stop for the graceful timeout;
and a chat that reaches the app after its thread pools were shut down is refused the same
way, not with "Something went wrong on the server".
"""

from __future__ import annotations

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, UserSocket, register, start_server, stop_server
from tests.web.test_engine_restart import wait_until
from webapp.web import close_app, create_app

GRACEFUL_TIMEOUT_SECONDS = 20  # gunicorn's (webapp/web/server.py): open sockets held it all


def test_a_chat_during_a_graceful_stop_is_refused_and_the_reply_under_way_is_kept(tmp_path):
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim)
        session = register(server.url, "restarter")
        writing, idle = UserSocket(server.url, session), UserSocket(server.url, session)
        try:
            nim.reply = " ".join(f"word{k}" for k in range(60))
            nim.mode, nim.drip_interval = "drip", 0.05  # a reply of ~3 s
            ack = writing.call("chat", {"conversation_id": None, "text": "A long story, please"})
            assert ack["ok"], ack
            writing.wait_for("token")

            server.process.terminate()
            wait_until(lambda: "new chats are refused" in server.log(), timeout=10)
            refused = idle.call("chat", {"conversation_id": None, "text": "Are you there?"})
            assert refused["ok"] is False and refused["error"]["code"] == "server_stopping"
            assert "try again" in refused["error"]["message"]

            writing.wait_for("done", lambda p: p["message_id"] == ack["message_id"])
            # The sockets were closed once the reply was written: the stop did not wait
            # for them until gunicorn's graceful timeout.
            server.process.wait(timeout=GRACEFUL_TIMEOUT_SECONDS - 5)
            wait_until(lambda: not writing.client.connected and not idle.client.connected)
            log = server.log()
            assert "cannot schedule new futures" not in log
            assert "socket event failed" not in log
        finally:
            writing.close()
            idle.close()
            stop_server(server)

        server = start_server(tmp_path, nim)  # same data: the reply was kept, whole
        try:
            messages = session.get(
                f"{server.url}/api/conversations/{ack['conversation_id']}/messages",
                timeout=10).json()["messages"]
            assert [m["text"] for m in messages] == ["A long story, please", nim.reply]
            assert messages[-1]["status"] == "complete"
        finally:
            stop_server(server)


def test_a_chat_after_the_app_has_closed_its_threads_is_refused_not_an_internal_error(tmp_path):
    """The last moments of a stop (gunicorn's worker_exit: close_app shuts the thread pools
    down) with a socket still open, in-process."""
    app = create_app({"SORNMEMORY_DATA": str(tmp_path), "SORNMEMORY_WORKERS": "1",
                      "SORNMEMORY_LLM": "offline", "SECRET_KEY": ""})
    try:
        http = app.test_client()
        http.post("/api/auth/register", json={"username": "late", "password": PASSWORD})
        sock = app.extensions["socketio"].test_client(app, flask_test_client=http)
        assert sock.is_connected()
        close_app(app)
        for event, payload in [("chat", {"conversation_id": None, "text": "hello?"}),
                               ("regenerate", {"message_id": "m"}), ("stop", {"message_id": "m"})]:
            ack = sock.emit(event, payload, callback=True)
            assert ack["ok"] is False and ack["error"]["code"] == "server_stopping", event
    finally:
        close_app(app)
