"""The binary `spikes` frame: byte layout of DESIGN.md §4, round trip, splitting, defects."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from webapp.engine.frames import MAX_STEPS, decode_frame, encode_frame, encode_frames


def test_the_header_and_rows_are_laid_out_as_the_contract_says():
    spikes = np.zeros((2, 10), dtype=bool)
    spikes[0, 0] = spikes[0, 9] = spikes[1, 3] = True  # unit 0..7 in byte 0, 8..9 in byte 1
    frame = encode_frame(70_000, spikes)
    assert struct.unpack_from("<IHH", frame) == (70_000, 10, 2)
    assert frame[8:] == bytes([0b0000_0001, 0b0000_0010, 0b0000_1000, 0b0000_0000])


def test_decoding_returns_what_was_encoded():
    rng = np.random.default_rng(1)
    spikes = rng.random((37, 375)) < 0.1
    first, decoded = decode_frame(encode_frame(123, spikes))
    assert first == 123 and np.array_equal(decoded, spikes)


def test_the_step_counter_wraps_at_32_bits():
    first, _ = decode_frame(encode_frame(2**32 + 5, np.zeros((1, 8), dtype=bool)))
    assert first == 5


def test_long_recordings_are_split_into_consecutive_frames():
    spikes = np.zeros((MAX_STEPS + 10, 16), dtype=bool)
    spikes[-1, -1] = True
    frames = [decode_frame(f) for f in encode_frames(7, spikes)]
    assert [(first, len(s)) for first, s in frames] == [(7, MAX_STEPS), (7 + MAX_STEPS, 10)]
    assert frames[1][1][-1, -1]


@pytest.mark.parametrize("frame", [b"", b"\x00" * 7, struct.pack("<IHH", 0, 16, 2) + b"\x00"])
def test_malformed_frames_are_rejected(frame):
    with pytest.raises(ValueError):
        decode_frame(frame)
