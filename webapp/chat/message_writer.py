"""The chat's writes to the store, group-committed: one transaction for all that queue up.

Every turn writes its messages before it answers (the ack), when its reply ends, and when
its episodes are stored; under load those writes arrive together. One at a time, each
would wait for every earlier one's commit and fsync. Here one thread takes all the writes
queued at that moment and runs them in one `Store.batch()`: one commit and fsync for
them all, and each caller's answer only after that commit, so what is acknowledged is on
disk. A write that fails is undone alone and raises in its caller; a commit that fails
raises in every caller of the batch. Alone, a write goes through at once (no waiting to
fill a batch).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any

MAX_BATCH = 256  # writes in one transaction at most


class MessageWriter:
    """call(method, *args, **kwargs): run `store.method(...)` in the next group commit."""

    def __init__(self, store) -> None:
        self.store = store
        self._queue: deque[tuple[Future, str, tuple, dict]] = deque()
        self._queued = threading.Condition()
        self._thread: threading.Thread | None = None

    def call(self, method: str, *args, **kwargs) -> Any:
        """The method's result once its transaction is committed; its exception otherwise."""
        done: Future = Future()
        with self._queued:
            self._queue.append((done, method, args, kwargs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="message-writer",
                                                daemon=True)
                self._thread.start()
            self._queued.notify()
        return done.result()

    def _run(self) -> None:
        while True:
            with self._queued:
                self._queued.wait_for(lambda: self._queue)
                writes = [self._queue.popleft()
                          for _ in range(min(len(self._queue), MAX_BATCH))]
            self._commit(writes)

    def _commit(self, writes: list[tuple[Future, str, tuple, dict]]) -> None:
        """Run and commit one batch; every caller hears back, whatever is raised (the
        thread must live on: callers wait for it without a time limit)."""
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        try:
            with self.store.batch():
                for done, method, args, kwargs in writes:
                    try:
                        outcomes.append((done, getattr(self.store, method)(*args, **kwargs),
                                         None))
                    except BaseException as exc:  # noqa: BLE001 - the caller gets it
                        outcomes.append((done, None, exc))
        except BaseException as exc:  # noqa: BLE001 - the batch did not commit: none holds
            for done, *_ in writes:
                done.set_exception(exc)
            return
        for done, result, error in outcomes:
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)
