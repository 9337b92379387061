"""The binary `spikes` frame of DESIGN.md §4, so engine, web relay and tests agree on it.

Layout (little-endian): uint32 first step, uint16 neuron count, uint16 step count, then
one row per step with the units' spikes bit-packed by `numpy.packbits(bitorder="little")`,
E units first, then I. The step counter wraps at 2**32.
"""

from __future__ import annotations

import struct

import numpy as np

HEADER = struct.Struct("<IHH")
MAX_STEPS = 0xFFFF


def encode_frame(first_step: int, spikes: np.ndarray) -> bytes:
    """One frame from a bool array of shape (steps, neurons); at most MAX_STEPS steps."""
    spikes = np.asarray(spikes, dtype=bool)
    steps, neurons = spikes.shape
    if steps > MAX_STEPS or neurons > 0xFFFF:
        raise ValueError(f"frame too large: {steps} steps x {neurons} neurons")
    packed = np.packbits(spikes, axis=1, bitorder="little")
    return HEADER.pack(first_step % 2**32, neurons, steps) + packed.tobytes()


def encode_frames(first_step: int, spikes: np.ndarray) -> list[bytes]:
    """Split a long recording into frames of at most MAX_STEPS steps each."""
    return [
        encode_frame(first_step + start, spikes[start : start + MAX_STEPS])
        for start in range(0, len(spikes), MAX_STEPS)
    ]


def decode_frame(frame: bytes) -> tuple[int, np.ndarray]:
    """(first step, bool array (steps, neurons)); ValueError on a malformed frame."""
    if len(frame) < HEADER.size:
        raise ValueError("spike frame shorter than its header")
    first_step, neurons, steps = HEADER.unpack_from(frame)
    row_bytes = (neurons + 7) // 8
    if len(frame) != HEADER.size + steps * row_bytes:
        raise ValueError("spike frame length does not match its header")
    packed = np.frombuffer(frame, dtype=np.uint8, offset=HEADER.size).reshape(steps, row_bytes)
    spikes = np.unpackbits(packed, axis=1, count=neurons, bitorder="little").astype(bool)
    return first_step, spikes
