"""The spike relay: one merged frame per user per tick, old steps dropped when behind."""

from __future__ import annotations

import numpy as np

from webapp.engine.frames import decode_frame, encode_frame
from webapp.web.relay import SpikeRelay


def frame(first: int, steps: int, unit: int = 0) -> bytes:
    spikes = np.zeros((steps, 12), dtype=bool)
    spikes[:, unit] = True
    return encode_frame(first, spikes)


def relay_and_sent():
    sent = []
    return SpikeRelay(lambda user, event, payload: sent.append((user, event, payload))), sent


def test_consecutive_frames_are_merged_into_one_emit_per_user():
    relay, sent = relay_and_sent()
    relay.push(1, frame(100, 3))
    relay.push(1, frame(103, 2))
    relay.push(2, frame(7, 1))
    relay.flush()
    assert sorted((user, event) for user, event, _ in sent) == [(1, "spikes"), (2, "spikes")]
    first, spikes = decode_frame(next(p for user, _, p in sent if user == 1))
    assert first == 100 and spikes.shape == (5, 12)
    relay.flush()
    assert len(sent) == 2  # nothing pending, nothing sent


def test_a_frame_that_does_not_continue_replaces_the_pending_steps():
    relay, sent = relay_and_sent()
    relay.push(1, frame(100, 3, unit=0))
    relay.push(1, frame(50, 4, unit=5))  # another operation (e.g. a recall probe)
    relay.flush()
    first, spikes = decode_frame(sent[0][2])
    assert first == 50 and spikes.shape == (4, 12) and spikes[:, 5].all()
    assert relay.dropped_steps == 3


def test_only_the_latest_steps_are_kept_when_a_user_falls_behind():
    relay, sent = relay_and_sent()
    relay.max_steps = 10
    for start in range(0, 40, 4):
        relay.push(1, frame(start, 4))
    relay.flush()
    first, spikes = decode_frame(sent[0][2])
    assert (first, len(spikes)) == (30, 10)
    assert relay.dropped_steps == 30
