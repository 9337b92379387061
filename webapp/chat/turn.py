"""One chat turn: validate -> persist -> recall -> prompt -> stream -> store -> stats.

The web layer calls `ChatTurn.chat` (or `regenerate`) from a Socket.IO handler, sends the
returned ack, then runs the returned work in a background thread. Everything the user
should see goes out through `emit(user_id, event, payload)`, the one function the web
layer addresses by room; nothing here knows about Flask or Socket.IO.

Whatever fails, the user's message stays persisted, the assistant message ends in a
final status ("complete", "stopped" or "error", with the error in its meta) and the next
turn works. The recalled memories are kept in the reply's meta for the UI after reload.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from webapp.chat.message_writer import MessageWriter
from webapp.chat.prompt import build_prompt
from webapp.chat.token_batcher import TokenBatcher
from webapp.engine import EngineError
from webapp.llm import LLMError
from webapp.memory.text import is_blank

log = logging.getLogger(__name__)

Emit = Callable[[int, str, Any], None]
Work = Callable[[], None]

MAX_TEXT_CHARS = 16_000
MAX_ID_CHARS = 64
MAX_ACTIVE_PER_USER = 3
RECALL_K = 8
PERSIST_EVERY_SECONDS = 1.0  # how often a streaming reply is written to the store
FINISHING_WAIT_SECONDS = 10.0  # a regenerate's turn waits this long for the turn before to end
INTERRUPTED = {"code": "interrupted",
               "message": "The server stopped while writing this reply; regenerate it."}
# Why a complete reply ended early, kept in its meta and its `done` event as "finish" (the
# UI marks it): "length" is the token limit (max_tokens), the reply is cut mid-way.
MARKED_FINISHES = ("length", "content_filter")
INTERNAL_ERROR = {"code": "internal", "message": "Something went wrong on the server."}
STORAGE_UNAVAILABLE = {"code": "storage_unavailable",
                       "message": "The server cannot save anything right now (its disk is full "
                                  "or read-only); please try again later."}


class TurnInputError(ValueError):
    """A chat/stop/regenerate payload the server refuses; becomes the ack's error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def ack_error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def _field(payload: Any, name: str, *, required: bool = True) -> str | None:
    if not isinstance(payload, dict):
        raise TurnInputError("bad_request", "The payload must be a JSON object.")
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise TurnInputError("bad_request", f"'{name}' must be a non-empty string.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TurnInputError("bad_request", f"'{name}' holds invalid characters.") from None
    if is_blank(value):  # as the memory would find it: nothing to store
        raise TurnInputError("bad_request", f"'{name}' must be a non-empty string.")
    if name != "text" and len(value) > MAX_ID_CHARS:
        raise TurnInputError("bad_request", f"'{name}' is not a valid id.")
    return value


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"


class ChatTurn:
    """Runs chat turns for all users of one app; tracks the replies being generated."""

    def __init__(self, store, engine, llm, emit: Emit, *, engine_timeout: float = 30.0,
                 recall_k: int = RECALL_K):
        self.store = store
        self.writer = MessageWriter(store)
        self.engine = engine
        self.llm = llm
        self.emit = emit
        self.tokens = TokenBatcher(emit)
        self.engine_timeout = engine_timeout
        self.recall_k = recall_k
        self._active: dict[str, tuple[int, threading.Event]] = {}  # reply id -> (user, cancel)
        self._finishing: set[str] = set()  # replies written, their episodes still being stored
        # replies a regenerate has taken, its turn not yet started -> (user, cancel)
        self._claimed: dict[str, tuple[int, threading.Event]] = {}
        self._remembering: set[str] = set()  # messages being stored as episodes right now
        self._recovered: set[int] = set()  # users whose unsaved messages were looked for
        self._starting: Counter[int] = Counter()  # user -> replies written, not yet registered
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._registered = threading.Condition(self._lock)  # a user's _starting went down
        self._finished = threading.Condition(self._lock)  # a reply left _finishing

    # --- entry points (each returns the ack, and the work to run after sending it) -----

    def chat(self, user_id: int, payload: Any) -> tuple[dict, Work | None]:
        try:
            text = _field(payload, "text")
            conversation_id = _field(payload, "conversation_id", required=False)
            if len(text) > MAX_TEXT_CHARS:
                raise TurnInputError("too_long",
                                     f"Messages are at most {MAX_TEXT_CHARS} characters.")
            if conversation_id and not self.store.get_conversation(user_id, conversation_id):
                raise TurnInputError("not_found", "No such conversation.")
            self._check_capacity(user_id)
            exchange = [{"role": "user", "text": text},
                        {"role": "assistant", "text": "", "status": "streaming"}]

            def write() -> tuple[str, str, str]:
                conversation, (asked_id, answer_id) = self._persist(
                    "add_messages", user_id, conversation_id, exchange, title=_title(text))
                return conversation, asked_id, answer_id

            cancel = threading.Event()
            conversation_id, user_message_id, reply_id = self._start_reply(user_id, write, cancel)
        except TurnInputError as exc:
            return ack_error(exc.code, str(exc)), None
        ack = {"ok": True, "conversation_id": conversation_id, "message_id": reply_id,
               "user_message_id": user_message_id}
        return ack, partial(self._run, user_id, conversation_id, user_message_id, reply_id, cancel)

    def regenerate(self, user_id: int, payload: Any) -> tuple[dict, Work | None]:
        """A new reply to the user message before `message_id`, written into the same message.

        A reply whose text is written but whose episodes are still being stored (a regenerate
        clicked right after a stop) is acknowledged at once, and its turn waits for the turn
        before on the turn's own thread: an event handler never waits for another turn (the
        web layer's few store threads would all be held by a few clicks)."""
        try:
            reply_id = _field(payload, "message_id")
            reply = self.store.get_message(user_id, reply_id)
            if reply is None or reply["role"] != "assistant":
                raise TurnInputError("not_found", "No such reply.")
            conversation_id = reply["conversation_id"]
            messages = self.store.list_messages(user_id, conversation_id, meta=False)
            index = next((i for i, m in enumerate(messages) if m["id"] == reply_id), 0)
            asked = [m["id"] for m in messages[:index] if m["role"] == "user"]
            if not asked:
                raise TurnInputError("not_found", "That reply answers no message.")
            self._check_capacity(user_id)
            cancel, behind = self._claim(user_id, reply_id)
        except TurnInputError as exc:
            return ack_error(exc.code, str(exc)), None
        ack = {"ok": True, "conversation_id": conversation_id, "message_id": reply_id,
               "user_message_id": asked[-1]}
        start = partial(self._restart_reply, user_id, conversation_id, asked[-1], reply_id,
                        cancel)
        if behind:
            return ack, partial(self._regenerate_behind, user_id, reply_id, start)
        try:
            return ack, start()
        except TurnInputError as exc:
            return ack_error(exc.code, str(exc)), None
        finally:  # the turn, if one started, holds the reply in _active by now
            self._unclaim(reply_id)

    def _regenerate_behind(self, user_id: int, reply_id: str, start: Callable[[], Work]
                           ) -> None:
        """A regenerate's turn, once the turn before has stored the reply's episodes; if it
        does not end in time, or the reply cannot be reset, the user hears why in an `error`
        (the reply stays as it was)."""
        try:
            with self._lock:
                if not self._finished.wait_for(lambda: reply_id not in self._finishing,
                                               FINISHING_WAIT_SECONDS):
                    raise TurnInputError("busy", "That reply is still being saved; "
                                                 "try again in a moment.")
            work = start()
        except Exception as exc:
            if isinstance(exc, TurnInputError):
                error = {"code": exc.code, "message": str(exc)}
            else:
                log.exception("starting a regenerated reply failed")
                error = INTERNAL_ERROR
            self.emit(user_id, "error", {"message_id": reply_id, **error})
            return
        finally:
            self._unclaim(reply_id)
        work()

    def _restart_reply(self, user_id: int, conversation_id: str, asked_id: str, reply_id: str,
                       cancel: threading.Event) -> Work:
        """Empty the claimed reply and register its new turn; the work that runs it. The
        reply's episode is read now: the turn before may have stored it meanwhile."""
        reply = self.store.get_message(user_id, reply_id)
        if reply is None:
            raise TurnInputError("not_found", "No such reply.")
        old_episode = (reply["meta"] or {}).get("episode_id")

        def reset() -> tuple[str, str, str]:
            self._persist("update_message", user_id, reply_id, text="", status="streaming",
                          meta={})
            return conversation_id, asked_id, reply_id

        self._start_reply(user_id, reset, cancel)
        return partial(self._run, user_id, conversation_id, asked_id, reply_id, cancel,
                       regenerating=True, forget_episode=old_episode)

    def stop(self, user_id: int, payload: Any) -> dict:
        try:
            reply_id = _field(payload, "message_id")
        except TurnInputError as exc:
            return ack_error(exc.code, str(exc))
        with self._lock:  # a claimed reply's turn starts stopped
            owner, cancel = self._active.get(reply_id) or self._claimed.get(reply_id,
                                                                            (None, None))
        if owner != user_id:  # another user's id reads exactly like an unknown one
            return ack_error("not_active", "That reply is not being written.")
        cancel.set()
        return {"ok": True}

    def recover(self, user_id: int) -> None:
        """Store as episodes the messages that a server killed mid-turn acknowledged but never
        stored (and settle its cut-off replies). Runs once per user and process, when the user
        connects; only messages older than this process, so no running turn is touched."""
        with self._lock:
            if user_id in self._recovered:
                return
            self._recovered.add(user_id)
        for conversation in self.store.list_conversations(user_id):
            messages = self.store.list_messages(user_id, conversation["id"])
            for message in self.settle_interrupted(user_id, messages):
                unsaved = (message["created_at"] < self.started_at and message["text"].strip()
                           and not (message["meta"] or {}).get("episode_id"))
                if unsaved and (message["role"] == "user" or (
                        self.llm.remembers_replies
                        and message["status"] in ("complete", "stopped"))):
                    self._remember(user_id, message, message["text"], message["id"],
                                   recheck=True)

    # --- bookkeeping ---------------------------------------------------------------------

    def _write(self, method: str, *args, **kwargs):
        """A store write, group-committed with the others of this process that queue up at
        the same time (not each in SQLite's busy handler, which sleeps up to 100 ms between
        tries; docs/RELIABILITY.md); returns once it is on disk."""
        return self.writer.call(method, *args, **kwargs)

    def _persist(self, method: str, *args, **kwargs):
        """A store write whose failure (disk full, read-only) becomes a clear ack error."""
        try:
            return self._write(method, *args, **kwargs)
        except sqlite3.Error as exc:
            log.error("storing a message failed: %s", exc)
            raise TurnInputError(STORAGE_UNAVAILABLE["code"],
                                 STORAGE_UNAVAILABLE["message"]) from None

    def _check_capacity(self, user_id: int) -> None:
        with self._lock:
            active = sum(owner == user_id for owner, _ in (*self._active.values(),
                                                           *self._claimed.values()))
        if active >= MAX_ACTIVE_PER_USER:
            raise TurnInputError("busy", "Too many replies are being written; wait for one.")

    def _start_reply(self, user_id: int, write: Callable[[], tuple[str, str, str]],
                     cancel: threading.Event) -> tuple[str, str, str]:
        """Write a reply as "streaming" and register it, so that no reader can see it
        streaming and unregistered (and take it for an interrupted one): while the write
        runs, the user counts as `_starting`, and `settle_interrupted` waits for that to end.
        The lock is not held during the write, so other turns' bookkeeping goes on meanwhile.
        `write` returns the ids (conversation, the message answered, the reply); `cancel`
        is the turn's stop."""
        ids = None
        with self._lock:
            self._starting[user_id] += 1
        try:
            ids = write()
        finally:
            with self._lock:
                if ids is not None:
                    self._active[ids[2]] = (user_id, cancel)
                self._starting[user_id] -= 1
                if not self._starting[user_id]:
                    del self._starting[user_id]
                    self._registered.notify_all()
        return ids

    def settle_interrupted(self, user_id: int, messages: list[dict]) -> list[dict]:
        """Replies still "streaming" that no turn is writing were cut off when a server
        stopped: mark them failed (partial text kept), so the UI offers to regenerate them."""
        for message in messages:
            if message["status"] != "streaming":
                continue
            with self._lock:
                self._registered.wait_for(lambda: user_id not in self._starting)
                if message["id"] in self._active or message["id"] in self._finishing:
                    continue
                meta = {**(message["meta"] or {}), "error": INTERRUPTED}
                self._write("update_message", user_id, message["id"], status="error", meta=meta)
            message.update(status="error", meta=meta)
        return messages

    def _claim(self, user_id: int, reply_id: str) -> tuple[threading.Event, bool]:
        """Take the reply for one regenerate, refused (busy) while a turn streams into it or
        another regenerate holds it: (its turn's stop, whether the turn before is still
        storing the reply's episodes, so that the new turn must wait for it)."""
        with self._lock:
            if reply_id in self._active or reply_id in self._claimed:
                raise TurnInputError("busy", "That reply is still being written.")
            cancel = threading.Event()
            self._claimed[reply_id] = (user_id, cancel)
            return cancel, reply_id in self._finishing

    def _unclaim(self, reply_id: str) -> None:
        with self._lock:
            self._claimed.pop(reply_id, None)

    def _finish(self, reply_id: str) -> None:
        """The reply is written: it no longer counts against the user's replies in flight."""
        with self._lock:
            self._active.pop(reply_id, None)
            self._finishing.add(reply_id)

    # --- the turn ------------------------------------------------------------------------

    def _run(self, user_id: int, conversation_id: str, user_message_id: str, reply_id: str,
             cancel: threading.Event, regenerating: bool = False,
             forget_episode: int | None = None) -> None:
        try:
            self._turn(user_id, conversation_id, user_message_id, reply_id, cancel,
                       regenerating, forget_episode)
        except Exception as exc:
            log.exception("chat turn failed")
            with self._lock:
                written = reply_id in self._finishing  # its final status is already stored
            if not written:
                error = STORAGE_UNAVAILABLE if isinstance(exc, sqlite3.Error) else INTERNAL_ERROR
                self._quietly(self._write, "update_message", user_id, reply_id, status="error",
                              meta={"error": error})
                self.emit(user_id, "error", {"message_id": reply_id, **error})
        finally:
            with self._lock:
                self._active.pop(reply_id, None)
                self._finishing.discard(reply_id)
                self._finished.notify_all()

    def _turn(self, user_id, conversation_id, user_message_id, reply_id, cancel,
              regenerating, forget_episode) -> None:
        messages = self.store.list_messages(user_id, conversation_id, meta=False)
        index = next(i for i, m in enumerate(messages) if m["id"] == user_message_id)
        history = [m for m in messages[: index + 1] if m["status"] != "error"]
        asked = messages[index]  # read without meta: a new question has none
        if regenerating:  # an earlier turn may have stored the question as an episode
            asked = self.store.get_message(user_id, user_message_id)

        recalled, query_tokens, recall_error = self._recall(user_id, asked["text"])
        meta = {"recalled": recalled, "query_tokens": query_tokens}
        memory_event = {"message_id": reply_id, "query_tokens": query_tokens,
                        "recalled": recalled}
        if recall_error:
            memory_event["error"] = meta["recall_error"] = recall_error
        self.emit(user_id, "memory", memory_event)

        prompt = build_prompt(asked["text"], recalled, history)
        text, finish, error = self._stream(user_id, reply_id, prompt, cancel)
        status = "error" if error else "stopped" if cancel.is_set() else "complete"
        done = {"message_id": reply_id, "text": text, "status": status}
        if error:
            meta["error"] = error
        elif status == "complete" and finish in MARKED_FINISHES:
            meta["finish"] = done["finish"] = finish
        self._write("update_message", user_id, reply_id, text=text, status=status, meta=meta)
        self._finish(reply_id)
        if error:
            self.emit(user_id, "error", {"message_id": reply_id, **error})
        else:
            self.emit(user_id, "done", done)

        if forget_episode is not None:
            self._quietly(self.engine.call, user_id, "delete", timeout=self.engine_timeout,
                          episode_id=forget_episode)
        if not (asked.get("meta") or {}).get("episode_id"):
            self._remember(user_id, asked, asked["text"], reply_id)
        if text.strip() and not error and self.llm.remembers_replies:
            reply = {"id": reply_id, "role": "assistant", "conversation_id": conversation_id,
                     "meta": meta}
            self._remember(user_id, reply, text, reply_id)
        self._emit_stats(user_id)

    def _recall(self, user_id: int, text: str) -> tuple[list, list, dict | None]:
        """Recalled memories; on an engine failure none, and the error to show with them."""
        try:
            found = self.engine.call(user_id, "recall", timeout=self.engine_timeout,
                                     query=text, k=self.recall_k, spikes=True)
        except EngineError as exc:
            log.warning("recall failed: %s", exc)
            return [], [], exc.to_dict()
        return found["recalled"], found["query_tokens"], None

    def _stream(self, user_id, reply_id, prompt, cancel
                ) -> tuple[str, str | None, dict | None]:
        """Stream the reply to the user (pieces that come close together in one `token`
        event, and a `waiting` event before each wait for a retry or a rate limit),
        persisting it as it grows; (text, finish reason, error or None)."""
        parts: list[str] = []
        finish = None
        persisted_at = time.monotonic()

        def waiting(seconds: float, code: str) -> None:  # a retry waits: say so, and how long
            self.emit(user_id, "waiting", {"message_id": reply_id, "code": code,
                                           "seconds": round(seconds, 1)})

        def pieces():  # the LLM's pieces; what its stream returns at the end is the reason
            nonlocal finish
            finish = yield from self.llm.stream(prompt, cancel=cancel, on_wait=waiting)

        try:
            for delta in pieces():
                if cancel.is_set():
                    break
                if not delta:
                    continue
                parts.append(delta)
                self.tokens.send(user_id, reply_id, delta)
                if time.monotonic() - persisted_at >= PERSIST_EVERY_SECONDS:
                    self._write("update_message", user_id, reply_id, text="".join(parts))
                    persisted_at = time.monotonic()
        except LLMError as exc:
            log.warning("LLM reply failed: %s", exc)  # its message never holds the key
            return "".join(parts), None, exc.to_dict()
        finally:
            self.tokens.close(reply_id)
        return "".join(parts), finish, None

    def _remember(self, user_id: int, message: dict, text: str, reply_id: str,
                  recheck: bool = False) -> None:
        """Store a message as an episode, once even if a turn and a recovery both try;
        `recheck` reads its meta again first (a turn may have stored it meanwhile)."""
        with self._lock:
            if message["id"] in self._remembering:
                return
            self._remembering.add(message["id"])
        try:
            if recheck:
                current = self.store.get_message(user_id, message["id"])
                if current is None or (current["meta"] or {}).get("episode_id"):
                    return
            self._store_episode(user_id, message, text, reply_id)
        finally:
            with self._lock:
                self._remembering.discard(message["id"])

    def _store_episode(self, user_id: int, message: dict, text: str, reply_id: str) -> None:
        """Store a message as an episode (once more if its engine was restarted meanwhile);
        a failure is reported on the turn's reply, whose regenerate stores it again."""
        args = {"text": text, "role": message["role"], "external_id": f"message:{message['id']}",
                "conversation_id": message.get("conversation_id"), "spikes": True}
        if message.get("created_at"):
            args["timestamp"] = message["created_at"]
        try:
            stored = self._call_engine(user_id, "store", **args)
        except EngineError as exc:
            log.warning("storing a message in memory failed: %s", exc)
            self.emit(user_id, "error", {
                "message_id": reply_id, "code": "memory_not_saved",
                "message": f"Your message is kept, but was not added to memory: {exc.message}",
            })
            return
        meta = {**(message.get("meta") or {}), "episode_id": stored["episode_id"]}
        message["meta"] = meta
        self._quietly(self._write, "update_message", user_id, message["id"], meta=meta)

    def _emit_stats(self, user_id: int) -> None:
        try:
            stats = self._call_engine(user_id, "stats")
        except EngineError as exc:
            log.warning("stats failed: %s", exc)
            return
        self.emit(user_id, "stats", stats)

    def _call_engine(self, user_id: int, op: str, **args):
        """An engine command, sent once more if its engine was restarted meanwhile (the new
        one reloads the memory from disk; a store is idempotent on its external id)."""
        try:
            return self.engine.call(user_id, op, timeout=self.engine_timeout, **args)
        except EngineError as exc:
            if exc.code != "engine_restarted":
                raise
        return self.engine.call(user_id, op, timeout=self.engine_timeout, **args)

    @staticmethod
    def _quietly(fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("%s failed", getattr(fn, "__name__", fn))
