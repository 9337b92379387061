"""FakeNIM: a real HTTP server on 127.0.0.1 that speaks NIM's OpenAI-compatible protocol.

    with FakeNIM(reply="Hello there") as nim:
        client = NIMClient(base_url=nim.base_url, api_key="nvapi-test")
        nim.mode = "429"              # every request now answers 429
        nim.fail_times = 2            # ...but only the first 2; later ones are "ok"

Routes: POST /v1/chat/completions (streamed as server-sent events, chunked encoding,
with keep-alive comments, a role chunk, one chunk per word of `.reply`, a finish
chunk, a usage-only chunk and `data: [DONE]`) and GET /v1/models (`.models`; it obeys
the HTTP error modes, and answers normally in the others).

Modes (`.mode`, settable at any time):
  "ok"              stream `.reply` after `.delay` seconds
  "401" "404" "500" "502" "503"
                    that HTTP error, body in `.error_style` ("nim": {"status","title",
                    "detail"}; "openai": {"error": {"message", ...}}); `.error_detail`
                    replaces the canned explanation
  "429"             rate limited, no Retry-After
  "429-retry-after" rate limited with `Retry-After: {.retry_after}`
  "hang"            read the request, never answer (released at shutdown)
  "stall"           answer 200 and the headers at once, then nothing (released at shutdown):
                    a model slow to its first token behind a server that sends headers first
  "drip"            like ok, `.drip_interval` seconds between chunks
  "cut"             send the first half of the words, then drop the connection
  "garbage"         200 with `data:` lines that are not JSON
  "html"            200 with a web page, not an event stream (a captive portal, a wrong URL)
  "empty"           a well-formed stream without any text: every chunk's `choices` is empty
  "error-chunk"     the first half of the words, then a `data: {"error": ...}` chunk
                    (its message `.error_detail`, if set)
  "trickle"         the first word, then a keep-alive comment every `.drip_interval`
                    seconds, for ever: never silent, never done
  "length"          the first half of the words, then finish_reason "length" and [DONE]:
                    a reply cut by the model's token limit (max_tokens)

Records: `.requests` (JSON bodies of chat requests), `.calls` (every request:
{"method", "path", "headers", "time"} with time.monotonic()), `.served` (every streamed
answer: {"question": the last user message, "seconds": from the request's arrival to its
last byte}, so a load test can take the model's own time out of a turn's latency).
Shutdown never waits for a hanging or dripping request.

It lives in the package (not only under tests/) because `sornmemory loadtest` runs
against it; tests/support/fake_nim.py re-exports it.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "401", "404", "429", "429-retry-after", "500", "502", "503", "hang", "drip",
         "cut", "garbage", "html", "empty", "error-chunk", "trickle", "stall", "length")
_STATUS_MODES = ("401", "404", "429", "500", "502", "503")

_ERRORS = {
    401: ("Unauthorized", "Authentication failed"),
    404: ("Not Found", "Function 'fake-model': Not found for account"),
    429: ("Too Many Requests", "Rate limit exceeded"),
    500: ("Internal Server Error", "Inference failed"),
    502: ("Bad Gateway", "Upstream connection failed"),
    503: ("Service Unavailable", "The model is loading"),
}


class FakeNIM:
    def __init__(
        self,
        reply: str = "Hello! I remember that you like hiking in the Alps.",
        mode: str = "ok",
        models: tuple[str, ...] = ("meta/llama-3.1-8b-instruct", "fake/tiny"),
    ) -> None:
        self.reply = reply
        self._mode = "ok"
        self.mode = mode
        self.models = list(models)
        self.delay = 0.0
        self.drip_interval = 0.05
        self.retry_after = "1"
        self.fail_times: int | None = None
        self.error_style = "nim"
        self.error_detail: str | None = None
        self.requests: list[dict] = []
        self.served: list[dict] = []
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown FakeNIM mode {value!r}; one of {MODES}")
        self._mode = value

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeNIM:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, handler: BaseHTTPRequestHandler, body: dict | None) -> str:
        """Log the request; return the mode that applies to it."""
        with self._lock:
            self.calls.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "headers": dict(handler.headers.items()),
                    "time": time.monotonic(),
                }
            )
            if body is not None:
                self.requests.append(body)
            failing = self.fail_times is None or len(self.calls) <= self.fail_times
            return self.mode if failing else "ok"

    def _pause(self, seconds: float) -> bool:
        """Sleep; False if the server is shutting down meanwhile."""
        return not self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    # A load test opens dozens of connections at once; the default backlog of 5 drops
    # some SYNs, which the client retries a second later: a delay of ours, not the app's.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a stop, a closed pool connection) is no error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each event goes out at once, as from a real server (with Nagle's algorithm, an event
    # on a kept connection waits for the client's delayed ACK of the one before: ~40 ms).
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    @property
    def fake(self) -> FakeNIM:
        return self.server.fake

    def do_GET(self) -> None:
        mode = self.fake._record(self, None)
        if self.path != "/v1/models":
            return self._error(404)
        if self._answered_error(mode):
            return
        data = [{"id": name, "object": "model"} for name in self.fake.models]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        mode = self.fake._record(self, body)
        if self.path != "/v1/chat/completions":
            return self._error(404)
        if self._answered_error(mode):
            return
        if mode == "hang":
            self.fake._stopping.wait()
            self.close_connection = True
            return
        try:
            self._stream(mode, body.get("model", "fake"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up (cancel): fine
        questions = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
        with self.fake._lock:
            self.fake.served.append({"question": (questions or [""])[-1],
                                     "seconds": time.monotonic() - arrived})

    def _answered_error(self, mode: str) -> bool:
        if mode in _STATUS_MODES:
            self._error(int(mode))
        elif mode == "429-retry-after":
            self._error(429, {"Retry-After": self.fake.retry_after})
        else:
            return False
        return True

    def _stream(self, mode: str, model: str) -> None:
        if not self.fake._pause(self.fake.delay):
            return
        if mode == "html":
            return self._html()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        if mode != "ok":  # a failing stream ends its connection; a good one is kept, as NIM does
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if mode == "stall":
            self.wfile.flush()
            return self.fake._stopping.wait()
        if mode == "garbage":
            self._chunk(b"data: {this is not json\n\n")
            self._chunk(b"data: [DONE]\n\n")
            return self._chunk(b"")
        words = re.findall(r"\s*\S+", self.fake.reply)
        if mode in ("cut", "error-chunk", "length"):
            words = words[: max(1, len(words) // 2)]
        elif mode == "trickle":
            words = words[:1]
        elif mode == "empty":
            words = []
        self._chunk(b": keep-alive\n\n")
        self._event(model, {"role": "assistant", "content": ""})
        for word in words:
            if mode == "drip" and not self.fake._pause(self.fake.drip_interval):
                return
            self._event(model, {"content": word})
        if mode == "cut":
            return  # no terminating chunk: the connection just drops
        if mode == "error-chunk":
            detail = self.fake.error_detail or "Inference failed mid-stream"
            self._data({"error": {"message": detail, "code": 500}})
            return self._chunk(b"")
        if mode == "trickle":
            while self.fake._pause(self.fake.drip_interval):
                self._chunk(b": keep-alive\n\n")
            return
        if mode == "empty":
            self._data({"id": "chatcmpl-fake", "choices": []})
        self._event(model, {}, finish_reason="length" if mode == "length" else "stop")
        usage = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 0}
        self._data({"id": "chatcmpl-fake", "choices": [], "usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _html(self) -> None:
        """A login page of the kind a captive portal or a web server answers: one line."""
        page = b"<html><head><title>Sign in</title></head><body>Sign in to go on</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def _event(self, model: str, delta: dict, finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        self._data(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [choice],
            }
        )

    def _data(self, payload: dict) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _error(self, status: int, headers: dict | None = None) -> None:
        title, detail = _ERRORS.get(status, ("Error", "Error"))
        detail = self.fake.error_detail or detail
        if self.fake.error_style == "openai":
            body = {"error": {"message": detail, "type": "error", "code": status}}
        else:
            body = {"status": status, "title": title, "detail": detail}
        self._json(status, body, headers)

    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
