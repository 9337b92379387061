"""Input that the server used to take badly: a chat message with nothing in it to remember,
an export saved back by an editor that adds a byte-order mark."""

from __future__ import annotations

from tests.web.conftest import connected_user


def test_a_message_of_only_control_characters_is_refused_on_the_ack(live_server):
    with connected_user(live_server.url, "nullbyte") as (session, sock):
        for text in ("\x00\x00", "\x07 \x1b\t", "\r\n\x85"):
            ack = sock.call("chat", {"conversation_id": None, "text": text})
            assert ack["ok"] is False, (text, ack)
            assert ack["error"]["code"] == "bad_request"
        assert session.get(live_server.url + "/api/conversations",
                           timeout=10).json()["conversations"] == []
        ack = sock.chat("still \x00 fine", timeout=60)  # a control character is only dropped
        assert ack["ok"]


def test_an_export_with_a_utf8_byte_order_mark_imports(live_server):
    with connected_user(live_server.url, "bomsaver") as (session, sock):
        sock.chat("The lighthouse keeper is called Ottoline.")
    url = live_server.url + "/api/memory"
    export = session.get(url + "/export", timeout=10).content
    with connected_user(live_server.url, "bomreader") as (reader, _):
        with_bom = "\ufeff".encode() + export
        files = {"file": ("memory.json", with_bom, "application/json")}
        imported = reader.post(url + "/import", files=files, timeout=30)
        assert imported.status_code == 200, imported.text
        assert imported.json() == {"imported": 2, "skipped": 0}
        body = reader.post(url + "/import", data=with_bom, timeout=30,
                           headers={"Content-Type": "application/json"})
        assert body.status_code == 200, body.text
        assert body.json()["skipped"] == 2  # the same export again: nothing new
        found = reader.get(url, params={"q": "lighthouse keeper"}, timeout=10).json()
        assert "Ottoline" in found["results"][0]["text"]
