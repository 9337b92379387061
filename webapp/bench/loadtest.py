"""Load test: concurrent Socket.IO users chatting with a real server, and crash cycles.

Each virtual user registers, opens a WebSocket (python-socketio, in-order client) and sends
its messages one after another, each when the previous turn ended (its `stats`). The LLM
is a FakeNIM on loopback with a fixed reply delay; the time it spent on each request is
subtracted from the turn's latency, so the figures are the server's own overhead.
Afterwards every acknowledged message is looked up through the API (lost = acknowledged
but missing) and every finished turn's message must be a recallable episode.

`--kill-cycles N` SIGKILLs the whole server N times in the middle of the load, restarts
it on the same data directory and checks, after each restart, that every acknowledged
message is stored and recallable and that `PRAGMA integrity_check` passes.

Loopback only: a `--url` must name this machine; bounded by `--max-seconds`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import random
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests
from tqdm import tqdm

from webapp.bench.fake_nim import FakeNIM
from webapp.bench.figure import png_figure
from webapp.bench.liveserver import (
    InOrderClient,
    ServerProcess,
    connect_socket,
    free_port,
    start_server,
)

PASSWORD = "load-test-password"
REPLY = ("Thanks, I will remember that. Here is a short answer with a few sentences, so "
         "that the reply streams as several dozen tokens like a real model's would do.")
NOUNS = ("bike", "cat", "garden", "violin", "boat", "lamp", "kettle", "notebook", "tent")
PLACES = ("in the attic", "by the window", "at my sister's", "in the shed", "at work")
BREAK_SECONDS = 1.0  # a load "breaks" when p95 overhead passes this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=50, help="concurrent users")
    parser.add_argument("--messages", type=int, default=10, help="messages per user")
    parser.add_argument("--llm-delay", type=float, default=0.5,
                        help="seconds the fake LLM waits before streaming its reply")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds a user waits between a turn's end and its next message")
    parser.add_argument("--sweep", default="",
                        help="comma-separated user counts to run after the main load, to "
                             "find where p95 overhead passes 1 s (e.g. 50,100,150)")
    parser.add_argument("--kill-cycles", type=int, default=0,
                        help="SIGKILL and restart the whole server this many times mid-load")
    parser.add_argument("--url", help="drive this already running loopback server instead of "
                                      "starting one (its LLM delay is taken as --llm-delay)")
    parser.add_argument("--data", help="data directory of the server started here "
                                       "(default: a fresh temporary one)")
    parser.add_argument("--workers", type=int, default=2, help="engine workers (started server)")
    parser.add_argument("--threads", type=int, default=100,
                        help="SORNMEMORY_THREADS of the started server")
    parser.add_argument("--turn-timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="stop sending new messages after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="write a PNG of overhead and throughput against users "
                                       "(the main load and the sweep)")


# --- one virtual user -----------------------------------------------------------------


@dataclass
class Turn:
    user: str
    text: str
    marker: str
    sent: float = 0.0
    acked: float | None = None
    recalled: float | None = None  # the turn's `memory` event: its recall is done
    first_token: float | None = None
    done: float | None = None
    finished: float | None = None  # the turn's `stats`: its episodes are stored
    message_id: str | None = None
    user_message_id: str | None = None
    conversation_id: str | None = None
    error: str | None = None


@dataclass
class VirtualUser:
    """One account on one WebSocket, sending its turns one after another."""

    url: str
    name: str
    texts: list[tuple[str, str]]  # (text, marker)
    turns: list[Turn] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self._changed = threading.Condition()
        self._events: dict[str, dict[str, float]] = {}  # message id -> event -> time
        self._errors: dict[str, str] = {}
        self._stats = 0
        self._connected = False

    def _new_client(self) -> InOrderClient:
        client = InOrderClient(reconnection=False)
        for name in ("memory", "token", "done", "error"):
            client.on(name, self._recorder(name))
        client.on("stats", self._on_stats)
        client.on("disconnect", self._on_disconnect)
        return client

    def _recorder(self, name: str):
        def record(payload):
            now = time.monotonic()
            with self._changed:
                message_id = payload.get("message_id")
                self._events.setdefault(message_id, {}).setdefault(name, now)
                if name == "error":
                    self._errors.setdefault(message_id, payload.get("code", "error"))
                self._changed.notify_all()
        return record

    def _on_stats(self, _payload) -> None:
        with self._changed:
            self._stats += 1
            self._changed.notify_all()

    def _on_disconnect(self, *_args) -> None:
        with self._changed:
            self._connected = False
            self._changed.notify_all()

    def sign_up(self) -> None:
        response = self.session.post(f"{self.url}/api/auth/register", timeout=30,
                                     json={"username": self.name, "password": PASSWORD})
        if response.status_code != 201:
            raise RuntimeError(f"register {self.name}: {response.status_code} {response.text}")

    def connect(self) -> None:
        """A new WebSocket (also after the server was restarted)."""
        self.client = self._new_client()
        connect_socket(self.url, self.session, self.client)
        self._connected = True

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may be gone already
            self.client.disconnect()

    def chat(self, stop: threading.Event, deadline: float, think: float, timeout: float,
             progress) -> None:
        conversation_id = None
        for text, marker in self.texts:
            if stop.is_set() or time.monotonic() > deadline:
                return
            turn = Turn(self.name, text, marker)
            self.turns.append(turn)
            self._one_turn(turn, conversation_id, timeout)
            conversation_id = turn.conversation_id or conversation_id
            progress.update(1)
            if turn.error == "disconnected":
                return
            if think:
                stop.wait(think)

    def _call(self, event: str, payload: dict, timeout: float) -> dict | None:
        """Emit and wait for the ack; None when the connection drops or time runs out
        (python-socketio's own call() would wait out its timeout on a dead server)."""
        answer: list = []

        def on_ack(*args):
            with self._changed:
                answer.append(args[0] if args else {})
                self._changed.notify_all()

        try:
            self.client.emit(event, payload, callback=on_ack)
        except Exception:  # noqa: BLE001 - not connected (any more)
            return None
        with self._changed:
            self._changed.wait_for(lambda: answer or not self._connected, timeout)
        return answer[0] if answer else None

    def _one_turn(self, turn: Turn, conversation_id: str | None, timeout: float) -> None:
        with self._changed:
            stats_before = self._stats
        turn.sent = time.monotonic()
        ack = self._call("chat", {"conversation_id": conversation_id, "text": turn.text}, timeout)
        if ack is None:
            turn.error = "disconnected" if not self._connected else "ack_timeout"
            return
        turn.acked = time.monotonic()
        if not ack.get("ok"):
            turn.error = "ack:" + ack.get("error", {}).get("code", "?")
            return
        turn.message_id, turn.conversation_id = ack["message_id"], ack["conversation_id"]
        turn.user_message_id = ack["user_message_id"]
        end = turn.sent + timeout
        with self._changed:
            ended = self._changed.wait_for(
                lambda: not self._connected or turn.message_id in self._errors
                or "done" in self._events.get(turn.message_id, {}), end - time.monotonic())
            if ended:
                ended = self._changed.wait_for(
                    lambda: not self._connected or self._stats > stats_before,
                    end - time.monotonic())
            events = self._events.get(turn.message_id, {})
            turn.recalled = events.get("memory")
            turn.first_token, turn.done = events.get("token"), events.get("done")
            if self._stats > stats_before:
                turn.finished = time.monotonic()
            if turn.message_id in self._errors:
                turn.error = "event:" + self._errors[turn.message_id]
            elif not self._connected and turn.finished is None:
                turn.error = "disconnected"
            elif not ended:
                turn.error = "timeout"


def _message_texts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    texts = []
    for index in range(count):
        marker = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(12))
        text = (f"Note {index}: my {rng.choice(NOUNS)} is called {marker} and I keep it "
                f"{rng.choice(PLACES)}.")
        texts.append((text, marker))
    return texts


def make_users(url: str, prefix: str, users: int, messages: int,
               rng: random.Random) -> list[VirtualUser]:
    return [VirtualUser(url, f"{prefix}{i}", _message_texts(rng, messages))
            for i in range(users)]


def _in_threads(fn, items, limit: int = 16) -> None:
    """fn(item) for every item, `limit` at a time (sign-ups hash passwords: CPU-bound)."""
    pending = list(items)
    lock = threading.Lock()

    def drain():
        while True:
            with lock:
                if not pending:
                    return
                item = pending.pop()
            fn(item)

    threads = [threading.Thread(target=drain, daemon=True) for _ in range(min(limit, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- a load phase ---------------------------------------------------------------------


def cpu_seconds(server_pid: int | None) -> dict[str, float]:
    """CPU time (user + system) used so far by the server's web process, each engine worker
    (read from /proc, Linux) and this load generator (with its fake LLM)."""
    used = {"load_generator": time.process_time()}
    tick = os.sysconf("SC_CLK_TCK")

    def walk(pid: int, depth: int) -> None:
        with contextlib.suppress(OSError):  # gone meanwhile, or no /proc
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            name = ("web" if depth == 1 else f"engine {pid}" if b"multiprocessing.spawn"
                    in command else None)  # depth 0 is gunicorn's arbiter, idle
            if name:
                used[name] = (int(fields[11]) + int(fields[12])) / tick
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                walk(int(child), depth + 1)

    if server_pid is not None:
        walk(server_pid, 0)
    return used


def cpu_ms_per_turn(before: dict[str, float], after: dict[str, float], turns: int) -> dict:
    """{"web", "engines": [...], "load_generator"}: CPU milliseconds per finished turn."""
    per_turn = {name: round((seconds - before.get(name, 0.0)) * 1000 / max(turns, 1), 2)
                for name, seconds in after.items()}
    engines = [ms for name, ms in sorted(per_turn.items()) if name.startswith("engine")]
    return {"web": per_turn.get("web"), "engines": engines,
            "load_generator": per_turn["load_generator"]}


def drive(users: list[VirtualUser], args, stop: threading.Event, label: str,
          server_pid: int | None = None) -> tuple[float, dict, dict]:
    """Connect every user and run their turns concurrently; the chatting's wall time, and
    the CPU time used before and after it (`cpu_seconds`)."""
    _in_threads(lambda u: (u.sign_up(), u.connect()), users)
    deadline = time.monotonic() + args.max_seconds
    cpu_before = cpu_seconds(server_pid)
    total = sum(len(u.texts) for u in users)
    with tqdm(total=total, desc=label, unit="turn", leave=False) as progress:
        started = time.monotonic()
        threads = [threading.Thread(target=u.chat, daemon=True,
                                    args=(stop, deadline, args.think, args.turn_timeout, progress))
                   for u in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    cpu_after = cpu_seconds(server_pid)
    for user in users:
        user.close()
    return wall, cpu_before, cpu_after


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * 1000, 1)}


def summarize(users: list[VirtualUser], wall: float, llm_seconds: dict[str, float],
              declared_delay: float) -> dict:
    turns = [t for u in users for t in u.turns]
    done = [t for t in turns if t.done is not None]
    firsts = {id(u.turns[0]) for u in users if u.turns}

    def overhead_of(turn: Turn) -> float:
        return turn.done - turn.sent - llm_seconds.get(turn.text, declared_delay)

    errors: dict[str, int] = {}
    for turn in turns:
        if turn.error:
            errors[turn.error] = errors.get(turn.error, 0) + 1
    return {
        "users": len(users),
        "turns_sent": len(turns),
        "turns_acked": sum(t.user_message_id is not None for t in turns),
        "turns_done": len(done),
        "errors": sum(errors.values()),
        "errors_by_code": errors,
        "wall_seconds": round(wall, 2),
        "throughput_turns_per_sec": round(len(done) / wall, 2) if wall else None,
        "overhead_ms": percentiles([overhead_of(t) for t in done]),
        # A new user's first turn also creates their network in the engine: a one-off.
        "overhead_after_first_turn_ms": percentiles(
            [overhead_of(t) for t in done if id(t) not in firsts]),
        "ack_ms": percentiles([t.acked - t.sent for t in turns if t.acked]),
        "recalled_ms": percentiles([t.recalled - t.sent for t in turns if t.recalled]),
        "first_token_overhead_ms": percentiles(
            [t.first_token - t.sent - _delay(t, llm_seconds, declared_delay)
             for t in done if t.first_token]),
        # Where each user's first turn spends its time (all sent within a few ms).
        "first_turns_ms": {name: percentiles([getattr(t, name) - t.sent for t in done
                                              if id(t) in firsts and getattr(t, name)])
                           for name in ("acked", "recalled", "first_token", "done")},
        "turn_with_memory_ms": percentiles(
            [t.finished - t.sent - llm_seconds.get(t.text, declared_delay)
             for t in done if t.finished]),
        "llm_seconds_mean": round(statistics.fmean(
            [llm_seconds.get(t.text, declared_delay) for t in done]), 3) if done else None,
    }


def _delay(turn: Turn, llm_seconds: dict[str, float], declared: float) -> float:
    """The part of the model's time before its first token: its delay, not its streaming."""
    return min(declared, llm_seconds.get(turn.text, declared))


# --- checks after a run ---------------------------------------------------------------


def check_stored(users: list[VirtualUser], require_recall: bool, recall_timeout: float = 60.0
                 ) -> dict:
    """Acknowledged messages missing from the database (lost), and finished turns (or, with
    `require_recall`, every acknowledged message) that are not recallable episodes."""
    lost, not_in_memory, not_recalled, checked = 0, 0, 0, 0
    for user in users:
        acked = [t for t in user.turns if t.user_message_id]
        if not acked:
            continue
        stored = {}
        for conversation_id in {t.conversation_id for t in acked}:
            response = user.session.get(
                f"{user.url}/api/conversations/{conversation_id}/messages", timeout=30)
            if response.ok:
                stored.update({m["id"]: m["text"] for m in response.json()["messages"]})
        lost += sum(stored.get(t.user_message_id) != t.text for t in acked)
        expected = [t for t in acked if require_recall or t.finished]
        missing = _wait_for_episodes(user, expected, recall_timeout)
        not_in_memory += len(missing)
        for turn in expected:
            checked += 1
            hits = user.session.get(f"{user.url}/api/memory", timeout=30,
                                    params={"q": turn.marker, "limit": 1}).json()
            if not hits.get("results") or hits["results"][0]["text"] != turn.text:
                not_recalled += 1
    return {"lost": lost, "not_in_memory": not_in_memory, "not_recalled": not_recalled,
            "recall_checked": checked}


def _wait_for_episodes(user: VirtualUser, turns: list[Turn], timeout: float) -> list[Turn]:
    """The turns whose message is not (yet) an episode, after waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        export = user.session.get(f"{user.url}/api/memory/export", timeout=60).json()
        ids = {e.get("external_id") for e in export.get("episodes", [])}
        missing = [t for t in turns if f"message:{t.user_message_id}" not in ids]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def integrity_check(db_path: Path) -> str:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# --- the command ----------------------------------------------------------------------


def _require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise SystemExit(f"loadtest drives loopback servers only; {host!r} is not one")


def _served_seconds(nim: FakeNIM) -> dict[str, float]:
    return {entry["question"]: entry["seconds"] for entry in list(nim.served)}


def load_phase(url: str, nim: FakeNIM, args, users: int, label: str,
               rng: random.Random, server_pid: int | None = None) -> dict:
    crowd = make_users(url, f"{label}u", users, args.messages, rng)
    wall, cpu_before, cpu_after = drive(crowd, args, threading.Event(), label, server_pid)
    result = summarize(crowd, wall, _served_seconds(nim), args.llm_delay)
    # While chatting (after sign-up, before the checks): what each process spends per turn.
    result["cpu_ms_per_turn"] = cpu_ms_per_turn(cpu_before, cpu_after, result["turns_done"])
    result.update(check_stored(crowd, require_recall=False))
    return result


def kill_cycles(server: ServerProcess, nim: FakeNIM, args, rng: random.Random,
                run_id: str, restart) -> tuple[dict, ServerProcess]:
    """Kill the server mid-load `args.kill_cycles` times; check everything after each restart."""
    cycles = []
    for cycle in range(args.kill_cycles):
        crowd = make_users(server.url, f"{run_id}k{cycle}u", args.users, args.messages, rng)
        stop = threading.Event()
        loader = threading.Thread(target=drive, args=(crowd, args, stop, f"cycle {cycle + 1}"),
                                  daemon=True)
        loader.start()
        while not any(t.acked for u in crowd for t in u.turns):  # wait for the chatting
            time.sleep(0.05)
        kill_after = rng.uniform(0.5, 3.0)
        time.sleep(kill_after)
        server.kill()
        stop.set()
        loader.join()
        integrity = integrity_check(server.db_path)
        started = time.monotonic()
        server = restart()
        restart_seconds = time.monotonic() - started
        for user in crowd:  # a connection lets the server store what the crash left unsaved
            user.connect()
        stored = check_stored(crowd, require_recall=True)
        for user in crowd:
            user.close()
        turns = [t for u in crowd for t in u.turns]
        cycles.append({
            "killed_after_seconds": round(kill_after, 2),
            "acked": sum(t.user_message_id is not None for t in turns),
            "finished": sum(t.finished is not None for t in turns),
            "in_flight_at_kill": sum(t.user_message_id is not None and t.finished is None
                                     for t in turns),
            "integrity_check": integrity,
            "restart_seconds": round(restart_seconds, 2),
            **stored,
        })
    totals = {name: sum(c[name] for c in cycles)
              for name in ("acked", "in_flight_at_kill", "lost", "not_in_memory", "not_recalled")}
    return {"cycles": cycles, **totals,
            "integrity_ok": all(c["integrity_check"] == "ok" for c in cycles)}, server


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    run_id = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(4))
    load_before = os.getloadavg()
    result: dict = {"users": args.users, "messages": args.messages, "llm_delay": args.llm_delay,
                    "think": args.think, "cpus": os.cpu_count(),
                    "loadavg_before": [round(x, 2) for x in load_before]}
    with FakeNIM(reply=REPLY) as nim:
        nim.delay = args.llm_delay
        if args.url:
            if args.kill_cycles:
                raise SystemExit("--kill-cycles needs a server started here (no --url)")
            _require_loopback(args.url)
            result["load"] = load_phase(args.url.rstrip("/"), nim, args, args.users, run_id, rng)
            return _finish(result)
        data_dir = Path(args.data or tempfile.mkdtemp(prefix="sornmemory-load-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {"SORNMEMORY_WORKERS": str(args.workers), "SORNMEMORY_THREADS": str(args.threads)}
        port = free_port()  # kept across restarts: the users reconnect to the same address

        def restart() -> ServerProcess:
            return start_server(data_dir, nim.base_url, data_dir.parent / f"{data_dir.name}.log",
                                port=port, **env)

        server = restart()
        result["data_dir"] = str(data_dir)
        try:
            if args.kill_cycles:
                result["kill_cycles"], server = kill_cycles(server, nim, args, rng, run_id,
                                                            restart)
            else:
                pid = server.process.pid
                result["load"] = load_phase(server.url, nim, args, args.users, run_id, rng, pid)
                result["sweep"] = [
                    load_phase(server.url, nim, args, users, f"{run_id}s{users}", rng, pid)
                    for users in _counts(args.sweep)]
                breaking = [s["users"] for s in result["sweep"]
                            if (s["overhead_ms"]["p95"] or 0) > BREAK_SECONDS * 1000
                            or s["errors"]]
                result["breaks_at_users"] = breaking[0] if breaking else None
                if args.plot:
                    plot_phases([result["load"], *result["sweep"]], args.plot)
        finally:
            server.stop()
        result["integrity_check"] = integrity_check(server.db_path)
    return _finish(result)


def plot_phases(phases: list[dict], path: str) -> None:
    """Overhead percentiles and throughput against the number of users."""
    phases = sorted(phases, key=lambda p: p["users"])
    users = [p["users"] for p in phases]
    with png_figure(path, dpi=110, figsize=(7, 4)) as (fig, latency):
        for name, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
            latency.plot(users, [p["overhead_ms"][name] for p in phases], style, label=name)
        latency.axhline(BREAK_SECONDS * 1000, color="grey", linestyle=":", linewidth=1)
        latency.set_xlabel("concurrent users")
        latency.set_ylabel("turn overhead without the LLM (ms)")
        latency.legend(loc="upper left")
        throughput = latency.twinx()
        throughput.plot(users, [p["throughput_turns_per_sec"] for p in phases], "k--",
                        label="turns/s")
        throughput.set_ylabel("turns/s (dashed)")
        throughput.set_ylim(bottom=0)


def _counts(spec: str) -> list[int]:
    return [int(part) for part in spec.split(",") if part.strip()]


def _finish(result: dict) -> dict:
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_report(result: dict) -> str:
    lines = [f"load average before {result['loadavg_before']}, after {result['loadavg_after']}"
             f" ({result['cpus']} CPUs)"]
    for phase in [result.get("load"), *result.get("sweep", [])]:
        if phase:
            lines.append(_phase_line(phase))
    if "breaks_at_users" in result:
        lines.append(f"p95 overhead passes {BREAK_SECONDS:.0f} s (or errors) at: "
                     f"{result['breaks_at_users'] or 'not within the sweep'} users")
    if "kill_cycles" in result:
        kills = result["kill_cycles"]
        for i, cycle in enumerate(kills["cycles"], 1):
            lines.append(
                f"cycle {i}: killed after {cycle['killed_after_seconds']} s, acked "
                f"{cycle['acked']} ({cycle['in_flight_at_kill']} in flight), lost "
                f"{cycle['lost']}, not in memory {cycle['not_in_memory']}, not recalled "
                f"{cycle['not_recalled']}, integrity {cycle['integrity_check']}, restart "
                f"{cycle['restart_seconds']} s")
        lines.append(f"total: acked {kills['acked']}, lost {kills['lost']}, not recalled "
                     f"{kills['not_recalled']}, integrity all ok: {kills['integrity_ok']}")
    if "integrity_check" in result:
        lines.append(f"PRAGMA integrity_check: {result['integrity_check']}")
    return "\n".join(lines)


def _phase_line(phase: dict) -> str:
    o, a, cpu = phase["overhead_ms"], phase["ack_ms"], phase["cpu_ms_per_turn"]
    server = (f"web {cpu['web']} ms, engines {' + '.join(map(str, cpu['engines']))} ms, "
              if cpu["web"] is not None else "")
    return (f"{phase['users']} users: {phase['turns_done']}/{phase['turns_sent']} turns, "
            f"{phase['throughput_turns_per_sec']} turns/s, errors {phase['errors']} "
            f"{phase['errors_by_code'] or ''}, lost {phase['lost']}, not in memory "
            f"{phase['not_in_memory']}; overhead p50/p95/p99 {o['p50']}/{o['p95']}/{o['p99']} ms"
            f" (after each user's first turn p95 {phase['overhead_after_first_turn_ms']['p95']} ms;"
            f" ack p95 {a['p95']} ms); CPU per turn: {server}"
            f"load generator {cpu['load_generator']} ms")
