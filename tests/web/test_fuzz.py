"""Property-based fuzzing (hypothesis) of the socket events and the REST API of the real
server: whatever a client sends, the answer is a well-formed ack or JSON error, never a
500, and the server keeps serving. Examples are bounded so this runs in seconds."""

from __future__ import annotations

import math
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.web.conftest import UserSocket, connected_user

FUZZ = settings(max_examples=60, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
ACK_CODES = {"bad_request", "too_long", "not_found", "busy", "not_active",
             "storage_unavailable"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=40), st.binary(max_size=40))
json_like = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(["conversation_id", "text", "message_id"]),
                              st.text(max_size=10)), inner, max_size=4)), max_leaves=12)
payloads = st.one_of(
    json_like,
    st.fixed_dictionaries({"conversation_id": st.one_of(st.none(), st.text(max_size=70)),
                           "text": st.one_of(st.text(max_size=60), scalars)}),
    st.fixed_dictionaries({"message_id": st.one_of(st.text(max_size=70), scalars)}),
)

STARTED: list[str] = []  # replies the fuzzed events started


@pytest.fixture(scope="module")
def fuzzer(live_server):
    with connected_user(live_server.url, "fuzzer") as user:
        yield user


@FUZZ
@given(event=st.sampled_from(["chat", "regenerate", "stop"]), payload=payloads)
@example(event="chat", payload={"conversation_id": None, "text": "A valid one among them."})
def test_socket_events_answer_every_payload_with_a_well_formed_ack(fuzzer, event, payload):
    _, sock = fuzzer
    ack = sock.call(event, payload, timeout=20)
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool)
    if ack["ok"]:
        assert event in ("chat", "regenerate", "stop")
        if event != "stop":
            assert isinstance(ack["message_id"], str) and isinstance(ack["conversation_id"], str)
            STARTED.append(ack["message_id"])
    else:
        assert ack["error"]["code"] in ACK_CODES, ack
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]


segments = st.text(min_size=1, max_size=30).map(lambda s: quote(s, safe=""))
requests_to_make = st.one_of(
    st.tuples(st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
              st.builds("/api/conversations/{}/messages".format, segments), st.none()),
    st.tuples(st.sampled_from(["DELETE", "GET"]), st.builds("/api/memory/{}".format, segments),
              st.none()),
    st.tuples(st.just("GET"), st.builds("/api/memory?q={}&limit={}".format, segments, segments),
              st.none()),
    st.tuples(st.just("POST"), st.just("/api/memory/import"), json_like),
    st.tuples(st.sampled_from(["POST", "GET"]),
              st.sampled_from(["/api/auth/login", "/api/auth/register", "/api/auth/me"]),
              json_like),
)


@FUZZ
@given(request=requests_to_make)
def test_rest_routes_answer_every_request_without_a_server_error(live_server, fuzzer, request):
    session, _ = fuzzer
    method, path, body = request
    kwargs = {}
    if isinstance(body, bytes):
        kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
    elif body is not None:
        kwargs = {"json": _jsonable(body)}
    response = session.request(method, live_server.url + path, timeout=30, **kwargs)
    assert response.status_code < 500, (method, path, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["message"]


def _jsonable(value):
    """Strict JSON carries neither bytes nor NaN/infinity: send those as text."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def test_the_server_still_serves_after_the_fuzzing(live_server, fuzzer):
    session, sock = fuzzer
    assert requests.get(live_server.url + "/healthz", timeout=10).json()["status"] == "ok"
    assert STARTED  # at least the explicit example
    for message_id in STARTED:  # every turn the fuzzing started has ended, one way or another
        sock.wait_for("done", lambda p, m=message_id: p["message_id"] == m, timeout=30)
    fresh = UserSocket(live_server.url, session)
    assert fresh.chat("A normal message after all that.")["ok"]
    fresh.close()
