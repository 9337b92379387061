"""The SORN step compiled with numba: an optional backend, bit-identical to the numpy one.

`network.SORN` is the reference. This kernel runs a stretch of steps inside one block of
random draws (see randomness) on the network's own arrays, in place, doing every
floating-point operation of `SORN._advance` in the same order: the drive is summed row
after row over the E units that fired, `bincount`s are scatter-adds in index order, and
elementwise operations are exact anyway. numba does not fuse a*b+c into one rounding
(no fastmath), so same seed and inputs give the same spikes, weights and thresholds.
The exact renormalization every RENORMALIZE_EVERY steps stays in numpy for both backends.

Importing this module fails without numba; `network` then falls back to numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from webapp.sorn.config import SORNConfig
from webapp.sorn.network import EMPTY_SUM


class Rules(NamedTuple):
    """What the kernel needs of the config, with derived constants computed once in
    Python exactly as `network` computes them."""

    n_e: int
    learning: bool
    stdp: bool
    istdp: bool
    normalization: bool
    ip: bool
    structural: bool
    fast_inhibition: bool
    input_gain: float
    eta_stdp: float
    eta_ip: float
    ip_drop: float  # eta_ip * h_ip
    eta_istdp: float
    istdp_rise: float  # eta_istdp * (1 + 1 / h_ip)
    istdp_floor: float
    p_add: float
    w_new: float
    prune_threshold: float


def rules_for(config: SORNConfig, learning: bool) -> Rules:
    """The kernel's view of `config`; `learning` is the network's `plastic` flag. Fields are
    cast to their declared types, as a config may hold ints (p_add=0) and numba compiles
    anew for every distinct combination of argument types."""
    flags = (
        config.stdp, config.istdp, config.normalization, config.ip, config.structural,
        config.fast_inhibition,
    )
    rates = (
        config.input_gain, config.eta_stdp, config.eta_ip, config.eta_ip * config.h_ip,
        config.eta_istdp, config.eta_istdp * (1.0 + 1.0 / config.h_ip), config.istdp_floor,
        config.p_add, config.w_new, config.prune_threshold,
    )
    return Rules(int(config.n_e), bool(learning), *map(bool, flags), *map(float, rates))


def _compile(function):
    """JIT with an on-disk cache; without a writable cache directory, compile per process."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # numba found no usable cache location
        return numba.njit(nogil=True)(function)


@_compile
def run_steps(
    rules, w_out, gate_out, ei_post, ei_w, scales, sums, thresholds, state, counts,
    noise, sigma, add_synapse, candidates, fallback, offset, t, input_ptr, input_units,
    spikes, record,
):
    """Advance len(input_ptr) - 1 steps from step t (block offset `offset`), mutating the
    network arrays in place; step k drives input_units[input_ptr[k]:input_ptr[k + 1]].
    The noise of a unit is noise[offset + k, unit] * sigma[unit] (see BlockDraws)."""
    n_e = rules.n_e
    n_t = state.size
    n_steps = input_ptr.size - 1
    # Who fired at t: E units first, then I units (as indices in [0, n_t)).
    prev = np.empty(n_t, np.intp)
    n_prev, _ = _list_fired(state, n_e, prev)
    fired = np.empty(n_t, np.intp)
    drive = np.empty(n_t)
    inhibition = np.empty(n_e + 1)
    work = np.empty((3, n_e + 1))  # scratch rows for the plasticity rules
    growth = np.empty(sums.size)
    driven_at = np.full(n_e, -1, np.intp)
    for k in range(n_steps):
        split_prev = 0
        while split_prev < n_prev and prev[split_prev] < n_e:
            split_prev += 1
        _drive(rules, w_out, ei_post, ei_w, scales, thresholds, prev, split_prev, n_prev,
               noise[offset + k], sigma, input_units[input_ptr[k] : input_ptr[k + 1]], k,
               driven_at, drive, inhibition)
        if rules.fast_inhibition:
            _drive_from_new_e(n_e, w_out, scales, thresholds, noise[offset + k], sigma, drive)
        for unit in range(n_t):
            state[unit] = drive[unit] >= 0.0
        n_fired, split = _list_fired(state, n_e, fired)
        if rules.learning:
            _learn(rules, w_out, gate_out, ei_post, ei_w, scales, sums, thresholds, state,
                   prev, split_prev, n_prev, fired, split, add_synapse[offset + k],
                   candidates[offset + k], fallback[offset + k], growth, work)
        row = (t + k) % counts.shape[0]
        counts[row, 0] = split
        counts[row, 1] = n_fired - split
        if record:
            spikes[k] = state
        prev, fired = fired, prev
        n_prev = n_fired


@_compile
def _list_fired(state, n_e, fired):
    """Write the units that fire into `fired` in index order; return (count, E count).
    (Counts come back from a call so that numba types them as plain ints, not as the
    literal 0 a counter starts from, which would compile each callee twice.)"""
    n_fired = 0
    split = 0
    for unit in range(state.size):
        if state[unit]:
            fired[n_fired] = unit
            n_fired += 1
            if unit < n_e:
                split = n_fired
    return n_fired, split


@_compile
def _drive(rules, w_out, ei_post, ei_w, scales, thresholds, prev, split_prev, n_prev,
           noise, sigma, units, k, driven_at, drive, inhibition):
    """drive = Σ_rows W_out[e_prev] · scale − inhibition − T + ξ (+ gain on driven units)."""
    n_e = rules.n_e
    n_t = drive.size
    drive[:] = 0.0
    for r in range(split_prev):
        row = w_out[prev[r]]
        for post in range(n_t):
            drive[post] += row[post]
    for post in range(n_t):
        drive[post] *= scales[post]
    if n_prev > split_prev:
        inhibition[:] = 0.0
        for r in range(split_prev, n_prev):
            pre = prev[r] - n_e
            for slot in range(ei_post.shape[1]):
                inhibition[ei_post[pre, slot]] += ei_w[pre, slot]
        for post in range(n_e):
            drive[post] -= inhibition[post] * scales[n_t + post]
    for unit in range(n_t):
        drive[unit] -= thresholds[unit]
        drive[unit] += noise[unit] * sigma[unit]  # float32 * float64: as BlockDraws.noise_at
    for unit in units:  # numpy's drive[units] += gain adds once per distinct unit
        if driven_at[unit] != k:
            driven_at[unit] = k
            drive[unit] += rules.input_gain


@_compile
def _drive_from_new_e(n_e, w_out, scales, thresholds, noise, sigma, drive):
    """Fast inhibition: the I units' drive from the E units whose drive is >= 0."""
    n_t = drive.size
    drive[n_e:] = 0.0
    for pre in range(n_e):
        if drive[pre] >= 0.0:
            row = w_out[pre]
            for post in range(n_e, n_t):
                drive[post] += row[post]
    for post in range(n_e, n_t):
        drive[post] *= scales[post]
        drive[post] -= thresholds[post]
        drive[post] += noise[post] * sigma[post]


@_compile
def _learn(rules, w_out, gate_out, ei_post, ei_w, scales, sums, thresholds, state,
           prev, split_prev, n_prev, fired, split, add_synapse, candidates, fallback,
           growth, work):
    """IP, STDP, structural plasticity, iSTDP and normalization, in network's order."""
    n_e = rules.n_e
    n_t = state.size
    if rules.ip:
        for unit in range(n_e):
            thresholds[unit] -= rules.ip_drop
        for r in range(split):
            thresholds[fired[r]] += rules.eta_ip
    growth[:] = 0.0
    if rules.stdp and split_prev and split:
        _stdp(rules, w_out, gate_out, scales, prev[:split_prev], fired[:split], growth, work)
    if rules.structural and add_synapse < rules.p_add:
        pre, post = _free_place(gate_out, n_e, candidates, fallback)
        if pre >= 0:
            gate_out[pre, post] = True
            w_out[pre, post] = rules.w_new / scales[post]
            growth[post] += rules.w_new
    if rules.istdp and n_prev > split_prev:
        _istdp(rules, ei_post, ei_w, scales, state, prev[split_prev:n_prev], n_t, growth,
               work[0])
    if rules.normalization:
        for unit in range(growth.size):
            total = growth[unit] + sums[unit]
            nonzero = total > EMPTY_SUM
            if nonzero and total != 1.0:  # dividing by 1.0 changes nothing: skip it
                scales[unit] /= total
            sums[unit] = 1.0 if nonzero else 0.0


@_compile
def _stdp(rules, w_out, gate_out, scales, e_prev, e_fired, growth, work):
    """Potentiation of (e_prev -> e_fired), then depression of (e_fired -> e_prev).
    Places without a synapse are skipped: numpy adds 0 * η there and writes back the same
    weight (raw weights are never negative), which changes no bit."""
    eta = rules.eta_stdp
    change = work[0]  # column sums, row after row (network.column_sums)
    step = work[1]  # η in raw units of each post, as numpy divides it
    for j in range(e_fired.size):
        step[j] = eta / scales[e_fired[j]]
        change[j] = 0.0
    for a in e_prev:
        for j in range(e_fired.size):
            b = e_fired[j]
            if gate_out[a, b]:
                w_out[a, b] = w_out[a, b] + step[j]
                change[j] += step[j]
    for j in range(e_fired.size):
        growth[e_fired[j]] = change[j] * scales[e_fired[j]]
    prune = work[2]
    for j in range(e_prev.size):
        step[j] = eta / scales[e_prev[j]]
        prune[j] = rules.prune_threshold / scales[e_prev[j]]
        change[j] = 0.0
    for f in e_fired:
        for j in range(e_prev.size):
            p = e_prev[j]
            if gate_out[f, p]:
                old = w_out[f, p]
                new = old - step[j]
                if new < 0.0:
                    new = 0.0
                if rules.structural and new <= prune[j]:
                    new = 0.0
                    gate_out[f, p] = False
                w_out[f, p] = new
                change[j] += new - old
    for j in range(e_prev.size):
        growth[e_prev[j]] += change[j] * scales[e_prev[j]]


@_compile
def _free_place(gate_out, n_e, candidates, fallback):
    """A uniformly random free E->E place (pre != post), or (-1, -1) if there is none."""
    for place in candidates:
        pre, post = place // n_e, place % n_e
        if pre != post and not gate_out[pre, post]:
            return pre, post
    free = 0
    for pre in range(n_e):
        for post in range(n_e):
            if pre != post and not gate_out[pre, post]:
                free += 1
    if free == 0:
        return -1, -1
    wanted = int(fallback * free)
    for pre in range(n_e):
        for post in range(n_e):
            if pre != post and not gate_out[pre, post]:
                if wanted == 0:
                    return pre, post
                wanted -= 1
    return -1, -1


@_compile
def _istdp(rules, ei_post, ei_w, scales, state, i_prev, n_t, growth, change):
    """iSTDP on the slot rows of the I units that fired at t (i_prev holds n_e + index).
    The change and floor of a slot, in raw units of its post, are computed per slot: the
    same bits as numpy's per-post arrays, without dividing for posts no fired unit reaches."""
    n_e = rules.n_e
    change[:] = 0.0
    for unit in i_prev:
        pre = unit - n_e
        for slot in range(ei_post.shape[1]):
            post = ei_post[pre, slot]
            after = 1.0 if post < n_e and state[post] else 0.0
            scale = scales[n_t + post]
            old = ei_w[pre, slot]
            new = old + (after * rules.istdp_rise - rules.eta_istdp) / scale
            floor = rules.istdp_floor / scale
            if new < floor:
                new = floor
            ei_w[pre, slot] = new
            change[post] += new - old
    if rules.normalization:
        for post in range(n_e):
            growth[n_t + post] = change[post] * scales[n_t + post]
