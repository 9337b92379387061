"""NIMClient against a real HTTP server speaking NIM's streaming protocol."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.llm.conftest import FAKE_KEY
from webapp.chat.prompt import build_prompt
from webapp.llm import LLMError, NIMClient, RetryPolicy


def collect(client, prompt, cancel=None):
    """The pieces streamed before the iterator ended, and the error it raised (or None)."""
    pieces = []
    try:
        for piece in client.stream(prompt, cancel=cancel):
            pieces.append(piece)
    except LLMError as error:
        return pieces, error
    return pieces, None


def test_streamed_pieces_assemble_the_reply(nim, client, prompt):
    pieces, error = collect(client, prompt)
    assert error is None
    assert len(pieces) > 3
    assert "".join(pieces) == nim.reply


def test_request_is_an_openai_streaming_chat_completion_with_bearer_key(nim, client, prompt):
    collect(client, prompt)
    (body,) = nim.requests
    assert body["model"] == "meta/llama-3.1-8b-instruct"
    assert body["stream"] is True
    assert body["messages"] == prompt.messages
    assert nim.calls[0]["path"] == "/v1/chat/completions"
    assert nim.calls[0]["headers"]["Authorization"] == f"Bearer {FAKE_KEY}"


def test_without_a_key_no_authorization_header_is_sent(nim, prompt):
    local = NIMClient(base_url=nim.base_url + "/", model="llama3")
    assert "".join(local.stream(prompt)) == nim.reply
    assert "Authorization" not in nim.calls[0]["headers"]
    assert nim.calls[0]["path"] == "/v1/chat/completions"  # trailing slash tolerated


def test_recalled_memories_reach_the_server_in_the_request(nim, client):
    memories = [
        {
            "episode_id": 7,
            "text": "I go hiking in the Alps every summer",
            "score": 0.9,
            "timestamp": "2026-07-14T09:00:00+00:00",
        },
    ]
    prompt = build_prompt("Where should I go this summer?", memories, [])
    collect(client, prompt)
    system = nim.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert "I go hiking in the Alps every summer" in system["content"]
    assert "2026-07-14" in system["content"]


def test_list_models_reads_the_models_endpoint(nim, client):
    assert client.list_models() == nim.models
    assert nim.calls[0]["method"] == "GET" and nim.calls[0]["path"] == "/v1/models"


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("401", "auth", "NVIDIA_API_KEY"),
        ("404", "not_found", "meta/llama-3.1-8b-instruct"),
        ("429", "rate_limited", "40 requests per minute"),
        ("500", "server_error", "HTTP 500"),
        ("502", "server_error", "HTTP 502"),
        ("503", "server_error", "HTTP 503"),
        ("garbage", "bad_stream", "cannot read"),
        ("html", "bad_stream", "cannot read"),
        ("empty", "empty_reply", "empty reply"),
        ("cut", "cut_off", "cut off"),
    ],
)
def test_each_failure_has_its_code_and_a_clear_message(nim, client, prompt, mode, code, words):
    nim.mode = mode
    _, error = collect(client, prompt)
    assert error is not None
    assert error.code == code
    assert words in error.message


@pytest.mark.parametrize("style", ["nim", "openai"])
def test_the_servers_explanation_is_quoted_from_either_error_body(nim, client, prompt, style):
    nim.mode, nim.error_style = "404", style
    _, error = collect(client, prompt)
    assert "Function 'fake-model': Not found for account" in error.message


def test_list_models_reports_a_bad_key_as_auth(nim, client):
    nim.mode = "401"
    with pytest.raises(LLMError) as raised:
        client.list_models()
    assert raised.value.code == "auth"


@pytest.mark.parametrize("mode", ["429", "500"])
def test_rate_limits_and_server_errors_are_retried_then_reported(nim, client, prompt, mode):
    nim.mode = mode
    _, error = collect(client, prompt)
    assert error.code in ("rate_limited", "server_error")
    assert len(nim.requests) == 1 + client.retry.max_retries


def test_a_retry_that_succeeds_streams_the_reply(nim, client, prompt):
    nim.mode, nim.fail_times = "500", 2
    pieces, error = collect(client, prompt)
    assert error is None
    assert "".join(pieces) == nim.reply
    assert len(nim.requests) == 3


def test_retry_after_is_honoured(nim, client, prompt):
    nim.mode, nim.fail_times, nim.retry_after = "429-retry-after", 1, "1"
    pieces, error = collect(client, prompt)
    assert error is None
    first, second = nim.calls
    assert second["time"] - first["time"] >= 0.95  # the backoff alone would be <= 0.05 s


def test_auth_and_not_found_are_not_retried(nim, client, prompt):
    nim.mode = "401"
    collect(client, prompt)
    assert len(nim.requests) == 1


def test_a_stream_cut_after_tokens_keeps_them_and_is_not_retried(nim, client, prompt):
    nim.mode = "cut"
    pieces, error = collect(client, prompt)
    assert error.code == "cut_off"
    assert pieces and nim.reply.startswith("".join(pieces))
    assert "".join(pieces) != nim.reply
    assert len(nim.requests) == 1


def test_a_silent_server_times_out(nim, client, prompt):
    nim.mode = "hang"
    client.read_timeout = 0.3
    _, error = collect(client, prompt)
    assert error.code == "timeout"
    assert "0.3 s" in error.message


def test_a_server_that_sends_headers_then_nothing_did_not_start_answering(nim, client, prompt):
    """NIM sends its headers at once and computes the first token after: a slow first
    token reads as such, not as a reply that stopped midway with something kept."""
    nim.mode = "stall"
    client.read_timeout = 0.3
    _, error = collect(client, prompt)
    assert error.code == "timeout"
    assert "did not start answering within 0.3 s" in error.message
    assert "kept" not in error.message and len(nim.requests) == 1


def test_a_stream_that_stalls_midway_times_out_without_retry_keeping_what_arrived(
        nim, client, prompt):
    nim.mode, nim.drip_interval = "trickle", 1.0  # the first word, then 1 s of silence
    client.read_timeout = 0.3
    pieces, error = collect(client, prompt)
    assert error.code == "timeout"
    assert "in the middle of the reply" in error.message
    assert "".join(pieces) == nim.reply.split()[0]
    assert len(nim.requests) == 1


def test_an_endpoint_nobody_listens_on_is_unreachable(client, prompt, nim):
    nim.close()
    _, error = collect(client, prompt)
    assert error.code == "unreachable"
    assert client.base_url in error.message


def test_a_base_url_without_scheme_is_reported_not_retried(prompt):
    _, error = collect(NIMClient(base_url="localhost:11434/v1"), prompt)
    assert error.code == "unreachable"
    assert "not a valid http(s) URL" in error.message


def test_concurrent_chats_share_one_client(nim, client, prompt):
    nim.mode, nim.drip_interval = "drip", 0.01
    replies = []
    threads = [
        threading.Thread(target=lambda: replies.append("".join(client.stream(prompt))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert replies == [nim.reply] * 4


@pytest.mark.timeout(10)
def test_cancel_stops_a_dripping_stream(nim, client, prompt):
    nim.mode, nim.drip_interval = "drip", 0.3
    cancel = threading.Event()
    pieces = []
    for piece in client.stream(prompt, cancel=cancel):
        pieces.append(piece)
        cancel.set()
    assert len(pieces) == 1


@pytest.mark.timeout(10)
def test_cancel_stops_a_hanging_request(nim, client, prompt):
    nim.mode = "hang"
    client.read_timeout = 60.0  # without cancel this test would run into its timeout
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    assert list(client.stream(prompt, cancel=cancel)) == []


@pytest.mark.timeout(10)
def test_cancel_interrupts_a_retry_wait(nim, client, prompt):
    nim.mode, nim.retry_after = "429-retry-after", "60"
    client.retry = RetryPolicy(max_retries=3, max_retry_after=60)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    assert list(client.stream(prompt, cancel=cancel)) == []
    assert len(nim.requests) == 1


def test_the_api_key_never_leaks(nim, client, prompt, caplog):
    caplog.set_level("DEBUG")
    errors = []
    for mode in ("401", "404", "429", "500", "503", "garbage", "html", "empty", "error-chunk",
                 "cut", "hang", "stall"):
        nim.mode = mode
        client.read_timeout = 0.3
        errors.append(collect(client, prompt)[1])
    nim.mode = "401"
    with pytest.raises(LLMError) as raised:
        client.list_models()
    errors.append(raised.value)
    texts = [caplog.text, repr(client), str(vars(client.retry))]
    texts += [f"{e} {e!r} {e.to_dict()}" for e in errors]
    assert all(error is not None for error in errors)
    assert caplog.text  # retries were logged...
    assert not [text for text in texts if FAKE_KEY in text]  # ...without the key


def test_a_key_echoed_by_the_server_is_redacted(nim, client, prompt):
    nim.mode, nim.error_detail = "401", f"key {FAKE_KEY} is revoked"
    _, error = collect(client, prompt)
    assert FAKE_KEY not in error.message
    assert "key [redacted] is revoked" in error.message


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """Streams a two-piece reply and keeps the connection open, as NIM's servers do; the
    usage chunk and [DONE] come a moment after the piece that ends the reply."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def setup(self):
        self.server.connections += 1
        super().setup()

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for data in ('{"choices": [{"delta": {"content": "Hi"}}]}',
                     '{"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]}',
                     None, '{"choices": [], "usage": {"total_tokens": 2}}', "[DONE]"):
            if data is None:
                time.sleep(0.05)  # the client has the whole reply before the stream's tail
                continue
            event = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


def test_replies_read_to_their_end_reuse_one_connection(prompt):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    server.daemon_threads, server.connections = True, 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = NIMClient(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
        replies = []
        for _ in range(3):
            replies.append("".join(client.stream(prompt)))
            time.sleep(0.2)  # the helper thread hands the connection back after the reply
        assert replies == ["Hi there"] * 3
        assert server.connections == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("pasted", [f"{FAKE_KEY}\nnvapi-second", f"{FAKE_KEY}\u200b"])
def test_a_key_that_cannot_be_sent_is_an_auth_error_and_stays_out_of_the_log(
        nim, prompt, caplog, pasted):
    """A key pasted with a line break or an invisible character inside: http.client refuses
    the header with an exception that quotes it, which must reach neither the log nor the
    user; the user reads what to fix instead of "the relay failed unexpectedly"."""
    caplog.set_level("DEBUG")
    _, error = collect(NIMClient(base_url=nim.base_url, api_key=pasted), prompt)
    assert error.code == "auth" and "NVIDIA_API_KEY" in error.message
    assert "TEST-SECRET" not in f"{error} {error.message} {caplog.text}"
    assert nim.requests == []


@pytest.mark.timeout(20)
def test_a_reply_that_never_ends_is_stopped_at_the_reply_timeout_keeping_what_arrived(
        nim, client, prompt):
    """Keep-alives every 0.1 s: never silent for the read timeout, never done. Without a
    bound on the whole reply, the turn (and its thread) would wait for ever."""
    nim.mode, nim.drip_interval = "trickle", 0.1
    client.reply_timeout = 1.0
    pieces, error = collect(client, prompt)
    assert error.code == "timeout" and "1 s" in error.message
    assert "".join(pieces) == nim.reply.split()[0]
    assert len(nim.requests) == 1


@pytest.mark.parametrize("mode", ["401", "error-chunk"])
def test_a_key_echoed_where_the_servers_message_is_cut_is_redacted_too(
        nim, client, prompt, mode):
    """The server's message is cut to 300 characters: the key's first part must go too."""
    nim.mode, nim.error_detail = mode, "x" * 280 + f" your key {FAKE_KEY} is revoked"
    nim.error_style = "openai"
    _, error = collect(client, prompt)
    assert error is not None and "[redacted]" in error.message
    assert FAKE_KEY[:12] not in error.message


def test_a_host_name_that_does_not_resolve_is_reported_as_such(prompt):
    client = NIMClient(base_url="http://no-such-host.invalid/v1",
                       retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    _, error = collect(client, prompt)
    assert error.code == "unreachable"
    assert "host name could not be resolved" in error.message
    assert "no-such-host.invalid" in error.message


def test_a_login_in_the_base_url_stays_out_of_error_messages(prompt, nim):
    nim.close()
    port = nim.base_url.split(":")[2].split("/")[0]
    client = NIMClient(base_url=f"http://proxyuser:hunter2-secret@127.0.0.1:{port}/v1",
                       retry=RetryPolicy(max_retries=0))
    _, error = collect(client, prompt)
    assert error.code == "unreachable" and f"127.0.0.1:{port}/v1" in error.message
    assert "hunter2" not in error.message and "proxyuser" not in error.message
    _, error = collect(NIMClient(base_url="ftp://me:hunter2@example.com/v1"), prompt)
    assert "not a valid http(s) URL" in error.message and "hunter2" not in error.message


def test_a_reply_stopped_before_it_started_sends_no_request(nim, client, prompt):
    """A stop pressed while memories are recalled: no request spends the rate limit."""
    cancel = threading.Event()
    cancel.set()
    assert list(client.stream(prompt, cancel=cancel)) == []
    for thread in threading.enumerate():
        if thread.name == "llm-stream":
            thread.join(timeout=5)
    assert nim.calls == []


class _BrokenErrorHandler(BaseHTTPRequestHandler):
    """Answers 503 with a body that never ends, or that breaks off after its first bytes
    (a broken proxy's error page)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        if self.server.endless:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", "1000")
        self.end_headers()
        line = b"<p>Service Unavailable</p>\n" * 100
        self.close_connection = True
        try:
            if not self.server.endless:
                return self.wfile.write(line[:20])
            while not self.server.stopping.is_set():
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        except OSError:
            pass


@pytest.mark.timeout(20)
@pytest.mark.parametrize("endless", [True, False])
def test_an_error_answer_whose_body_never_ends_or_breaks_off_is_reported_by_its_status(
        prompt, endless):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenErrorHandler)
    server.daemon_threads, server.stopping, server.endless = True, threading.Event(), endless
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = NIMClient(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                           retry=RetryPolicy(max_retries=0), reply_timeout=5)
        _, error = collect(client, prompt)
        assert error.code == "server_error" and "HTTP 503" in error.message
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


class _RedirectHandler(BaseHTTPRequestHandler):
    """What a server reached by http:// answers when it wants https:// (nginx style)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(301)
        self.send_header("Location", "https://llm.example.org/v1/chat/completions")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)


@pytest.mark.parametrize("page", [b"", b"<html>\r\n<title>301 Moved Permanently</title>\r\n"])
def test_a_redirect_says_where_to_and_is_not_read_as_a_reply(prompt, page):
    """Not followed (the key would go along to wherever it points), not read as a broken
    stream: the user learns the address to put in NIM_BASE_URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedirectHandler)
    server.daemon_threads, server.page = True, page
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = NIMClient(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                           api_key=FAKE_KEY)
        _, error = collect(client, prompt)
        assert error.code == "unreachable" and "redirect" in error.message
        assert "https://llm.example.org/v1/chat/completions" in error.message
        assert "NIM_BASE_URL" in error.message
    finally:
        server.shutdown()
        server.server_close()


def finish_of(reply) -> tuple[str, str | None]:
    """The text of a reply iterator and what it returned at its end (its finish reason)."""
    pieces = []
    while True:
        try:
            pieces.append(next(reply))
        except StopIteration as end:
            return "".join(pieces), end.value


@pytest.mark.parametrize("mode, finish", [("ok", "stop"), ("length", "length")])
def test_the_reply_ends_by_returning_its_finish_reason(nim, client, prompt, mode, finish):
    """A reply the token limit cut is complete but not whole: the caller learns why it
    ended (the iterator's return value), to tell the user."""
    nim.mode, nim.reply = mode, "One two three four five six"
    text, reason = finish_of(client.stream(prompt))
    assert text == ("One two three" if mode == "length" else nim.reply)
    assert reason == finish


def test_a_retry_after_longer_than_worth_waiting_fails_at_once_saying_when(nim, client, prompt):
    """Retried after the longest wait instead, it would be refused again: the user learns
    at once when to try again, and the key's rate limit is not spent on refusals."""
    nim.mode, nim.retry_after = "429-retry-after", "150"  # client waits 2 s at most
    _, error = collect(client, prompt)
    assert error.code == "rate_limited" and "Try again in 3 min" in error.message
    assert len(nim.requests) == 1


def test_while_the_server_refuses_requests_no_chat_sends_one(nim, client, prompt):
    """The Retry-After one chat was told holds for the others: a long one fails them at
    once (saying when), without a request."""
    nim.mode, nim.retry_after = "429-retry-after", "60"
    collect(client, prompt)
    nim.mode = "ok"
    _, error = collect(client, prompt)
    assert error.code == "rate_limited" and "Try again in 60 s" in error.message
    assert len(nim.requests) == 1


def test_a_short_rate_limit_is_waited_out_and_each_wait_is_told_first(nim, client, prompt):
    nim.mode, nim.retry_after, nim.fail_times = "429-retry-after", "1", 1
    told = []

    def on_wait(seconds, code):
        told.append((round(seconds, 1), code, time.monotonic()))

    assert next(client.stream(prompt, on_wait=on_wait))
    first, second = nim.calls
    assert second["time"] - first["time"] >= 0.95
    [(seconds, code, when)] = told
    assert (seconds, code) == (1.0, "rate_limited") and when < second["time"] - 0.5  # at once

    retrying = client.retry
    client.retry = RetryPolicy(max_retries=0, max_retry_after=2)
    nim.fail_times = len(nim.calls) + 1
    assert collect(client, prompt)[1].code == "rate_limited"  # one chat is refused...
    client.retry = retrying
    told.clear()
    pieces = list(client.stream(prompt, on_wait=on_wait))  # ...the next waits, and says so
    assert "".join(pieces) == nim.reply
    assert [code for _, code, _ in told] == ["rate_limited"] and len(nim.calls) == 4
