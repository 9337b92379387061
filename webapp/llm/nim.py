"""Streaming client for NVIDIA NIM and any other OpenAI-compatible chat completions server.

Built on urllib3 (TLS checked against certifi's CA bundle; HTTP(S)_PROXY, NO_PROXY and
REQUESTS_CA_BUNDLE from the environment, read once with requests' rules, for self-hosters
behind a proxy or with their own CA), reading the socket with `read1` so each event is
handled as soon as it arrives, whether the server uses chunked encoding or not. One
connection pool serves all chats of a client (urllib3's pools are thread safe): a reply
read to its end leaves its connection open for the next one, so there is no TCP and TLS
handshake per reply, and a reply costs a quarter to a third less CPU than through a
requests session made for it.

The request runs in a helper thread that pushes events into a queue; the caller's
iterator waits on that queue in short slices and checks `cancel` in between. So a stop
takes effect within ~50 ms even while the server hangs: the iterator ends at once and
the socket is shut down, which ends the helper's blocked read. (A request still waiting
for response headers cannot be interrupted that way; its helper thread ends at the read
timeout, harmlessly, as nobody listens to it any more.)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Generator
from urllib.parse import urlsplit

import certifi
import requests
import urllib3

from webapp.llm.errors import LLMError, error_for_status, rate_limited
from webapp.llm.prompt import Prompt
from webapp.llm.retry import OnWait, RateGate, RetryPolicy, parse_retry_after
from webapp.llm.sse import StreamDecoder

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://integrate.api.nvidia.com/v1"
DEFAULT_MODEL = "meta/llama-3.1-8b-instruct"
MAX_CONNECTIONS = 100  # kept open to the server; as many as chats can stream at once
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_POLL_SECONDS = 0.05
_READ_SIZE = 8192
_TAIL_BYTES = 65536  # read after the reply's end to keep its connection for the next one
_SENDABLE_KEY = re.compile(r"[\x21-\x7e]+")  # what API keys are made of: visible ASCII
_ERROR_BODY_BYTES = 65536  # of an error answer, read for the server's explanation
_LOGIN = re.compile(r"(?<=//)[^/@]*@")  # the user:password@ of a URL, never shown
_KEY_PART_SHOWN = 8  # a key's first characters that may stand in a message: "nvapi-" and 2


class NIMClient:
    """Relays a Prompt to `{base_url}/chat/completions` and yields the reply as it streams.

    Without an API key no Authorization header is sent (local Ollama, vLLM, llama.cpp,
    LM Studio). The key lives only in the requests' headers: never logged, never in an
    error message, never in repr().
    """

    remembers_replies = True  # a model's replies are part of the conversation to remember

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        reply_timeout: float = 600.0,
        retry: RetryPolicy | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._shown_url = _LOGIN.sub("", self.base_url)
        self.model = model
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.reply_timeout = reply_timeout  # the whole reply, retries included
        self.retry = retry or RetryPolicy()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._secret = api_key or ""
        self._http = _connection_pool(self.base_url)
        self.rate_gate = RateGate()  # the server's Retry-After, for all chats of this client

    def __repr__(self) -> str:
        key = "set" if self._secret else "none"
        return f"NIMClient(base_url={self._shown_url!r}, model={self.model!r}, api_key={key})"

    def list_models(self) -> list[str]:
        """Model ids the server offers (GET {base_url}/models)."""
        try:
            response = self._request("GET", "/models", None, threading.Event())
        except LLMError as error:
            raise self._redacted(error) from None
        with response:
            try:
                return [str(item["id"]) for item in json.loads(response.data)["data"]]
            except (ValueError, KeyError, TypeError):
                raise LLMError(
                    "bad_stream", "The LLM service sent an unreadable model list."
                ) from None

    def stream(
        self,
        prompt: Prompt,
        cancel: threading.Event | None = None,
        on_wait: OnWait | None = None,
    ) -> Generator[str, None, str | None]:
        """Yield the reply in pieces; raise LLMError on failure; stop quietly on cancel.
        At its end, return the server's finish reason ("stop"; "length" where the reply
        hit `max_tokens`, cut short), None if stopped or not given.

        Before each wait for a retry (or for the rate limit another chat ran into), call
        `on_wait(seconds, code)` from the caller's thread, so the user can be told.

        A reply still going after `reply_timeout` seconds is ended with a "timeout" (a
        server that sends keep-alives, or a word a minute, for ever would hold the caller's
        thread for good: a read timeout only bounds silence)."""
        cancel = cancel or threading.Event()
        if cancel.is_set():  # stopped before it started: spend no request of the rate limit
            return
        deadline = time.monotonic() + self.reply_timeout
        exchange = _Exchange()
        body = {
            "model": self.model,
            "messages": prompt.messages,
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        threading.Thread(
            target=self._pump, args=(body, exchange), name="llm-stream", daemon=True
        ).start()
        try:
            while not cancel.is_set():
                if time.monotonic() > deadline:
                    raise self._unfinished()
                try:
                    kind, value = exchange.events.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if kind == "pieces":
                    for piece in value:
                        if cancel.is_set():
                            return
                        yield piece
                elif kind == "waiting":
                    if on_wait is not None:
                        on_wait(*value)
                elif kind == "error":
                    raise value
                else:
                    return value
        finally:
            exchange.stop()

    # -- helper thread -------------------------------------------------------------

    def _pump(self, body: dict, exchange: _Exchange) -> None:
        """Run the request; put ("waiting", (seconds, code)) before each wait, ("pieces",
        [str, ...])..., then ("end", finish reason) or ("error", LLMError)."""

        def waiting(seconds: float, code: str) -> None:
            exchange.events.put(("waiting", (seconds, code)))

        try:
            response = self._request(
                "POST", "/chat/completions", body, exchange.stopped, on_wait=waiting
            )
            if not exchange.attach(response):
                return
            with response:
                finish_reason = self._read_stream(response, exchange)
                exchange.detach()
                exchange.events.put(("end", finish_reason))
                _keep_connection(response)
        except _Cancelled:
            pass
        except LLMError as error:
            exchange.events.put(("error", self._redacted(error)))
        except Exception:  # the caller must always hear back
            log.exception("unexpected failure relaying to the LLM")
            error = LLMError("bad_stream", "The LLM relay failed unexpectedly; see the server log.")
            exchange.events.put(("error", error))

    def _read_stream(self, response: urllib3.BaseHTTPResponse, exchange: _Exchange) -> str | None:
        """Hand the reply's pieces over as they arrive; return its finish reason."""
        decoder = StreamDecoder()
        try:
            while not decoder.done:
                data = response.read1(_READ_SIZE)
                if exchange.stopped.is_set():
                    raise _Cancelled
                pieces: list[str] = []  # what one read brought: one hand-over, not one a piece
                try:
                    pieces.extend(decoder.feed(data) if data else decoder.finish())
                finally:  # an unreadable line: the pieces before it still count
                    if pieces:
                        exchange.events.put(("pieces", pieces))
                if not data and not decoder.done:
                    raise LLMError(
                        "cut_off",
                        "The reply was cut off: the LLM service closed the connection before "
                        "finishing. What arrived is kept; try again or regenerate.",
                    )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if exchange.stopped.is_set():
                raise _Cancelled from None
            timed_out = isinstance(error, urllib3.exceptions.ReadTimeoutError | TimeoutError)
            if timed_out and not decoder.has_text:  # headers came, the first token did not
                raise self._waited_too_long() from None
            if timed_out:
                raise LLMError(
                    "timeout",
                    f"The LLM service stopped sending for {self.read_timeout:g} s in the middle "
                    "of the reply. What arrived is kept; try again.",
                ) from None
            raise LLMError(
                "cut_off",
                "The reply was cut off: the connection to the LLM service broke mid-reply. "
                "What arrived is kept; try again or regenerate.",
            ) from None
        if not decoder.has_text:  # a finished reply without text (e.g. a content filter)
            why = decoder.finish_reason
            why = f" (finish reason: {why})" if why and why != "stop" else ""
            raise LLMError(
                "empty_reply",
                f"The model sent an empty reply{why}. Try again, or rephrase the message.",
            )
        return decoder.finish_reason

    def _request(
        self,
        method: str,
        path: str,
        body: dict | None,
        stop: threading.Event,
        on_wait: OnWait | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send, retrying 429/5xx/connection failures; return a 2xx streaming response.
        Nothing is sent while the rate gate is closed."""
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise self._invalid_url()
        if self._secret and not _SENDABLE_KEY.fullmatch(self._secret):
            # http.client would refuse the header with an exception quoting the key
            raise LLMError(
                "auth",
                "NVIDIA_API_KEY holds a character that cannot be sent (a line break, space or "
                "invisible character copied along with it?); set it again.",
            )
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        timeout = urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout)
        attempts = self.retry.max_retries + 1
        for attempt in range(attempts):
            self._pass_rate_gate(stop, on_wait)
            retry_after = None
            try:
                response = self._http.request(
                    method,
                    url,
                    body=data,
                    headers=self._headers(streaming=body is not None),
                    preload_content=False,
                    retries=False,
                    timeout=timeout,
                )
            except urllib3.exceptions.LocationParseError:
                raise self._invalid_url() from None
            except urllib3.exceptions.SSLError:
                raise self._unreachable("its TLS certificate could not be verified") from None
            except urllib3.exceptions.ReadTimeoutError:
                raise self._waited_too_long() from None
            except urllib3.exceptions.NameResolutionError:
                failure = self._unreachable("its host name could not be resolved")
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProxyError):
                failure = self._unreachable("the connection was refused or dropped")
            except urllib3.exceptions.ConnectTimeoutError:
                failure = self._unreachable(f"no answer within {self.connect_timeout:g} s")
            except (urllib3.exceptions.HTTPError, OSError):
                failure = self._unreachable("the connection was refused or dropped")
            else:
                if response.status < 300:
                    return response
                with response:
                    if response.status < 400:  # not followed: the key would go along
                        raise self._redirected(response)
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    failure = error_for_status(
                        response.status,
                        _error_body_start(response),
                        model=self.model,
                        retry_in=retry_after,
                    )
                if response.status not in _RETRYABLE_STATUS:
                    raise failure
            limited = failure.code == "rate_limited" and retry_after is not None
            if limited:  # the other chats hold back as well
                self.rate_gate.close_for(retry_after)
            if stop.is_set():
                raise _Cancelled
            if attempt + 1 == attempts or (retry_after or 0) > self.retry.max_retry_after:
                raise failure  # asked again before the Retry-After, it would be refused
            wait = self.retry.delay(attempt) if retry_after is None else retry_after
            log.warning(
                "LLM request failed (%s); retry %d of %d in %.2f s",
                failure.code,
                attempt + 1,
                self.retry.max_retries,
                wait,
            )
            if not limited:  # else the rate gate waits, at the top of the loop
                self._pause(wait, failure.code, stop, on_wait)
        raise AssertionError("the loop above returns or raises")

    def _pass_rate_gate(self, stop: threading.Event, on_wait: OnWait | None) -> None:
        """Send nothing while the server said it refuses requests (a Retry-After, maybe
        answered to another chat): wait for the gate to open if that is soon enough, else
        fail at once saying when to try again."""
        left = self.rate_gate.seconds_left()
        if left > self.retry.max_retry_after:
            raise rate_limited(left)
        self._pause(left, "rate_limited", stop, on_wait)

    @staticmethod
    def _pause(seconds: float, code: str, stop: threading.Event, on_wait: OnWait | None) -> None:
        """Wait before a retry, telling `on_wait` first; raise _Cancelled on a stop."""
        if seconds <= 0:
            return
        if on_wait is not None:
            on_wait(seconds, code)
        if stop.wait(seconds):
            raise _Cancelled

    def _headers(self, *, streaming: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if streaming else "application/json"}
        if streaming:
            headers["Content-Type"] = "application/json"
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        return headers

    def _invalid_url(self) -> LLMError:
        return LLMError(
            "unreachable",
            f"NIM_BASE_URL {self._shown_url!r} is not a valid http(s) URL "
            "(expected e.g. https://integrate.api.nvidia.com/v1).",
        )

    def _unreachable(self, why: str) -> LLMError:
        return LLMError(
            "unreachable",
            f"Cannot reach the LLM service at {self._shown_url} ({why}). "
            "Check NIM_BASE_URL and the network.",
        )

    def _redirected(self, response: urllib3.BaseHTTPResponse) -> LLMError:
        location = _LOGIN.sub("", response.headers.get("Location") or "")[:200]
        return LLMError(
            "unreachable",
            f"The LLM service at {self._shown_url} answered with a redirect (HTTP "
            f"{response.status}){f' to {location}' if location else ''}. Set NIM_BASE_URL to "
            "where it points, up to /v1 (https:// rather than http://?).",
        )

    def _waited_too_long(self) -> LLMError:
        return LLMError(
            "timeout",
            f"The LLM service did not start answering within {self.read_timeout:g} s; "
            "try again later.",
        )

    def _unfinished(self) -> LLMError:
        return LLMError(
            "timeout",
            f"The LLM service had not finished its reply after {self.reply_timeout:g} s "
            "(NIM_REPLY_TIMEOUT), so it was stopped there. What arrived is kept; try again.",
        )

    def _redacted(self, error: LLMError) -> LLMError:
        """The same error with the API key blanked out, should a server ever echo it (also
        its first part, where the server's message was cut)."""
        message = error.message
        for end in range(len(self._secret), _KEY_PART_SHOWN, -1):
            message = message.replace(self._secret[:end], "[redacted]")
        return error if message == error.message else LLMError(error.code, message)


class _Cancelled(Exception):
    """The caller went away; the helper thread ends without reporting."""


class _Exchange:
    """One streaming request, shared by the caller's iterator and the helper thread."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.stopped = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._lock = threading.Lock()

    def attach(self, response: urllib3.BaseHTTPResponse) -> bool:
        """Remember the open response so stop() can interrupt it; False if already stopped."""
        with self._lock:
            if self.stopped.is_set():
                response.close()
                return False
            self._response = response
            return True

    def detach(self) -> None:
        """The reply has been read: stop() leaves its connection alone from now on."""
        with self._lock:
            self._response = None

    def stop(self) -> None:
        """Stop retrying and shut the socket down, so a read blocked on it returns at once."""
        with self._lock:
            self.stopped.set()
            response, self._response = self._response, None
        if response is not None:
            try:
                response.shutdown()
            except (ValueError, RuntimeError, OSError):
                response.close()


def _connection_pool(base_url: str) -> urllib3.PoolManager:
    """Connections to `base_url`, through the environment's HTTP(S) proxy for it (requests'
    rules: HTTP(S)_PROXY, ALL_PROXY, NO_PROXY; a login in its URL is sent), checked against
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE if set (a file or a directory), else certifi's."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and os.path.isdir(bundle):
        trust = {"ca_cert_dir": bundle}
    else:
        trust = {"ca_certs": bundle or certifi.where()}
    proxy = requests.utils.select_proxy(base_url, requests.utils.get_environ_proxies(base_url))
    if proxy:
        user, password = requests.utils.get_auth_from_url(proxy)
        login = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
        return urllib3.ProxyManager(proxy, proxy_headers=login, maxsize=MAX_CONNECTIONS, **trust)
    return urllib3.PoolManager(maxsize=MAX_CONNECTIONS, **trust)


def _error_body_start(response: urllib3.BaseHTTPResponse) -> bytes:
    """The first 64 KiB of an error answer's body, for the server's explanation; none if it
    breaks off (the status says enough). Not all: a broken proxy's page may never end."""
    try:
        return response.read(_ERROR_BODY_BYTES)
    except (urllib3.exceptions.HTTPError, OSError):
        return b""


def _keep_connection(response: urllib3.BaseHTTPResponse) -> None:
    """After the reply's last piece (the caller has its reply): read what is left of the
    body (a usage chunk, `data: [DONE]`, the end of the chunked encoding; at most
    `_TAIL_BYTES`), which hands the connection back to the pool for the next reply. A
    longer tail closes the connection with the response."""
    left = _TAIL_BYTES
    try:
        while left > 0:
            data = response.read1(_READ_SIZE)
            if not data:
                if response.isclosed():
                    response.release_conn()
                return
            left -= len(data)
    except (urllib3.exceptions.HTTPError, OSError):
        pass
