"""`sornmemory loadtest`: a small load and one crash cycle through the real command, with a
server it starts itself; and its refusal to drive anything but a loopback server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from webapp.bench.loadtest import _require_loopback, percentiles


def loadtest(*flags: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-m", "webapp.cli", "loadtest", "--json", *flags],
                          capture_output=True, text=True, timeout=180, check=True)
    return json.loads(done.stdout), done.stderr


def test_a_small_load_reports_latency_throughput_and_no_loss(tmp_path):
    result, progress = loadtest("--users", "4", "--messages", "3", "--llm-delay", "0.2",
                                "--data", str(tmp_path / "data"))
    load = result["load"]
    assert load["turns_sent"] == load["turns_acked"] == load["turns_done"] == 12
    assert load["errors"] == load["lost"] == load["not_in_memory"] == load["not_recalled"] == 0
    assert load["llm_seconds_mean"] >= 0.2  # the model's own time, measured by the fake NIM
    for name in ("overhead_ms", "overhead_after_first_turn_ms", "ack_ms", "first_token_overhead_ms",
                 "turn_with_memory_ms"):
        p = load[name]
        assert p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
    assert load["throughput_turns_per_sec"] > 0
    cpu = load["cpu_ms_per_turn"]  # read from /proc while chatting
    assert cpu["web"] > 0 and len(cpu["engines"]) == 2 and cpu["load_generator"] > 0
    assert result["integrity_check"] == "ok" and len(result["loadavg_before"]) == 3
    assert "turn" in progress  # the progress bar goes to stderr


def test_a_kill_cycle_keeps_every_acknowledged_message(tmp_path):
    result, _ = loadtest("--users", "3", "--messages", "30", "--llm-delay", "0.2",
                         "--kill-cycles", "1", "--data", str(tmp_path / "data"))
    cycle = result["kill_cycles"]["cycles"][0]
    assert cycle["acked"] > 0 and cycle["recall_checked"] == cycle["acked"]
    assert cycle["lost"] == cycle["not_in_memory"] == cycle["not_recalled"] == 0
    assert cycle["integrity_check"] == "ok" and result["integrity_check"] == "ok"


@pytest.mark.parametrize("url", ["http://192.0.2.1:8000", "http://[2001:db8::1]:8000"])
def test_only_loopback_servers_are_driven(url):
    with pytest.raises(SystemExit, match="loopback"):
        _require_loopback(url)
    _require_loopback("http://127.0.0.1:8000")


def test_percentiles_are_taken_from_the_sorted_values_in_milliseconds():
    assert percentiles([i / 1000 for i in range(1, 101)]) == {
        "p50": 51.0, "p95": 96.0, "p99": 100.0, "max": 100.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}
