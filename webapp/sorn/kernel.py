"""The SORN step compiled with numba: an optional backend, bit-identical to the numpy one.

`network.SORN` is the reference. This kernel runs a stretch of steps on the network's own
arrays, in place, computing the random draws of every step as randomness does (the same
hash functions, compiled) and doing every floating-point operation of `SORN._advance` in
the same order: the drive is summed row after row over the E units that fired,
`bincount`s are scatter-adds in index order, and elementwise operations are exact anyway.
numba does not fuse a*b+c into one rounding (no fastmath), so same seed and inputs give
the same spikes, weights and thresholds.

E->E synapses are held as slot rows (`SlotRows`: per pre unit the posts it reaches and
the raw weights, in no particular order) instead of the dense block of `w_out`, so a step
touches ~30 slots per firing unit instead of n_e columns. Each (pre, post) pair is one
slot and rows are still visited in index order, so every per-post sum adds the same terms
in the same order as the dense layout (skipping exact zeros, which changes no bit). The
E->I weights, which no rule changes, come as their own dense [pre E, post I] array
`ie_w` (a copy of `w_out[:, n_e:]`), so a firing unit's ~10 lines of them lie together
rather than at the end of a 3,000-byte row. I->E slot rows come with short posts and a
count of used slots per row (the padding is skipped), and iSTDP divides once per post
and step rather than per slot. What a network touches per step is what limits the speed
with many networks per worker (see research/compact_kernel): the rows a step will read
are prefetched as soon as it is known who fired, all at once, rather than met one after
another as cache misses, and while one network runs, the next ones' arrays are asked for.
The I->E part of the exact renormalization every RENORMALIZE_EVERY steps stays in numpy;
the E->E part runs on the rows here.

Importing this module fails without numba; `network` then falls back to numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import llvmlite.ir
import numba
import numba.core.cgutils
import numba.extending
import numpy as np

from webapp.sorn import randomness
from webapp.sorn.config import SORNConfig
from webapp.sorn.network import EMPTY_SUM, UNIT_INDEX
from webapp.sorn.randomness import (
    ADD_SYNAPSE,
    FALLBACK,
    FIRST_CANDIDATE,
    GOLDEN,
    NOISE_A,
    NOISE_B,
    SQRT_HALF,
    STRUCTURAL_CANDIDATES,
    TABLE_MASK,
)


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
    uniform_noise: bool  # noise_distribution "uniform" (else "normal")
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
        config.fast_inhibition, config.noise_distribution == "uniform",
    )
    rates = (
        config.input_gain, config.eta_stdp, config.eta_ip, config.eta_ip * config.h_ip,
        config.eta_istdp, config.eta_istdp * (1.0 + 1.0 / config.h_ip), config.istdp_floor,
        config.p_add, config.w_new, config.prune_threshold,
    )
    return Rules(int(config.n_e), bool(learning), *map(bool, flags), *map(float, rates))


class SlotRows(NamedTuple):
    """E->E synapses as slot rows: row `pre` holds count[pre] synapses, slot s going to
    post[pre, s] with raw weight weight[pre, s]; slots past the count are free. A row can
    hold `capacity` synapses (post.shape[1]); see rows_from_dense and grown."""

    post: np.ndarray  # UNIT_INDEX (uint16) (n_e, capacity)
    weight: np.ndarray  # float64 (n_e, capacity)
    count: np.ndarray  # int32 (n_e,)


ROW_HEADROOM = 16  # free slots per row beyond the fullest one when rows are (re)built


def rows_from_dense(w_out: np.ndarray, gate_out: np.ndarray, n_e: int) -> SlotRows:
    """The E->E block of the dense arrays as slot rows, posts ascending, with room for
    ROW_HEADROOM more synapses in the fullest row (a row never holds more than n_e - 1)."""
    gate = gate_out[:, :n_e]
    count = gate.sum(axis=1).astype(np.int32)
    fullest = int(count.max(initial=0))
    rows = _empty_rows(n_e, min(n_e - 1, fullest + ROW_HEADROOM), count)
    pre, post = gate.nonzero()
    slot = np.arange(pre.size) - np.repeat(np.cumsum(count) - count, count)
    rows.post[pre, slot] = post
    rows.weight[pre, slot] = w_out[pre, post]
    return rows


def grown(rows: SlotRows, n_e: int) -> SlotRows:
    """The same synapses in rows with half as many slots again (at least ROW_HEADROOM)."""
    capacity = rows.post.shape[1]
    bigger = _empty_rows(n_e, min(n_e - 1, capacity + max(ROW_HEADROOM, capacity // 2)),
                         rows.count.copy())
    bigger.post[:, :capacity] = rows.post
    bigger.weight[:, :capacity] = rows.weight
    return bigger


def _empty_rows(n_e: int, capacity: int, count: np.ndarray) -> SlotRows:
    return SlotRows(np.zeros((n_e, capacity), UNIT_INDEX), np.zeros((n_e, capacity)), count)


def _compile(function):
    """JIT with an on-disk cache; without a writable cache directory, compile per process.
    Divisions follow numpy's error model (IEEE: x / 0 is inf, as in the numpy reference)
    rather than Python's, whose zero check on every division kept the loops ~10 % slower."""
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(function)
    except RuntimeError:  # numba found no usable cache location
        return numba.njit(nogil=True, error_model="numpy")(function)


@_compile
def run_many(
    rules, arrays, table, keys, sigma, t, step_ptr, first_input, input_ptr, input_units,
    spikes, record, ran, full,
):
    """Several networks' runs in one call. Run j's network arrays are described by row j of
    `arrays`: an (address, rows, columns) triple per array, in SORN.kernel_arrays order
    (see sorn.together). Run j starts at the network's step t[j] with draws' key keys[j]
    (noise from `table`, scaled by `sigma`: see randomness); its steps are the rows
    step_ptr[j]..step_ptr[j + 1] of the spikes, and its inputs start at
    input_ptr[first_input[j]]. Writes each run's (steps run, whether a row is full) into
    ran[j], full[j] (see _run)."""
    n_runs = arrays.shape[0]
    ahead = np.empty(sigma.size, np.intp)
    for j in range(n_runs):
        # The next networks' arrays are far from the cache by now: ask for them while this
        # one runs (its state first, so that the rows of the one after can be found).
        if j + 2 < n_runs:
            _prefetch_network(arrays[j + 2], t[j + 2])
        if j + 1 < n_runs:
            _prefetch_first_rows(rules.n_e, arrays[j + 1], ahead)
        a = arrays[j]
        first, last = step_ptr[j], step_ptr[j + 1]
        inputs = input_ptr[first_input[j] : first_input[j] + last - first + 1]
        ran[j], full[j] = _run(
            rules, _matrix(a, 0, np.float64), _matrix(a, 1, UNIT_INDEX),
            _matrix(a, 2, np.float64), _vector(a, 3, np.int32), _matrix(a, 4, UNIT_INDEX),
            _vector(a, 5, np.int32), _matrix(a, 6, np.float64), _vector(a, 7, np.float64),
            _vector(a, 8, np.float64), _vector(a, 9, np.float64), _vector(a, 10, np.bool_),
            _matrix(a, 11, np.int64), table, keys[j], sigma, t[j], inputs, input_units,
            spikes[first:last], record)


@_compile
def _prefetch_network(described, t):
    """Prefetch the arrays a network's run reads at every step (see run_many), as far as
    they are small: its row counts, scales, sums, thresholds, state and the rate counts'
    row of step t."""
    for index, itemsize in ((3, 4), (7, 8), (8, 8), (9, 8), (10, 1)):
        _prefetch_span(described[3 * index], described[3 * index + 1] * itemsize)
    counts, rows, columns = described[33], described[34], described[35]
    _prefetch_span(counts + t % rows * columns * 8, columns * 8)


@_compile
def _prefetch_first_rows(n_e, described, fired):
    """Prefetch the synapse rows a network's run reads first: those of the units firing
    now (`fired` is scratch room for them)."""
    n_fired, _ = _list_fired(_vector(described, 10, np.bool_), n_e, fired)
    _prefetch_rows(_matrix(described, 2, np.float64), _matrix(described, 1, UNIT_INDEX),
                   _vector(described, 3, np.int32), _matrix(described, 6, np.float64),
                   _vector(described, 5, np.int32), fired, n_fired, n_e)


@numba.extending.intrinsic
def _pointer(typingctx, address, kind):
    """The int64 `address` as a pointer to `kind` (a numpy scalar type) for numba.carray."""
    signature = numba.types.CPointer(kind.instance_type)(address, kind)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen


@numba.extending.intrinsic
def _prefetch(typingctx, address):
    """Ask the CPU to bring the cache line at the int64 `address` in (llvm.prefetch)."""
    signature = numba.types.void(address)

    def codegen(context, builder, sig, args):
        byte_pointer = llvmlite.ir.IntType(8).as_pointer()
        flag = llvmlite.ir.IntType(32)
        function = numba.core.cgutils.get_or_insert_function(
            builder.module, llvmlite.ir.FunctionType(llvmlite.ir.VoidType(),
                                                     [byte_pointer, flag, flag, flag]),
            "llvm.prefetch.p0")
        # A read (0) wanted in every cache level (3), of data (1).
        builder.call(function, [builder.inttoptr(args[0], byte_pointer), flag(0), flag(3),
                                flag(1)])
        return context.get_dummy_value()

    return signature, codegen


@_compile
def _matrix(described, index, kind):
    """The 2-D array described at triple `index` of `described` (see run_many)."""
    address, rows, columns = described[3 * index : 3 * index + 3]
    return numba.carray(_pointer(address, kind), (rows, columns))


@_compile
def _vector(described, index, kind):
    """The 1-D array described at triple `index` of `described` (see run_many)."""
    address, length = described[3 * index : 3 * index + 2]
    return numba.carray(_pointer(address, kind), (length,))


_mix64 = _compile(randomness.mix64)
_unit_float = _compile(randomness.unit_float)


@_compile
def _lane(key, step, lane):
    """randomness.lane_bits(key, step, lane) for uint64 key and step and an int lane."""
    return _mix64(_mix64(key ^ step) + (np.uint64(lane) + np.uint64(1)) * GOLDEN)


@_compile
def _noise(uniform, table, a, b, sigma, noise):
    """Every unit's ξ: as randomness.noise_of, float32 from windows a and b of `table`
    (both lanes' bits), then float64 times the unit's σ."""
    one = np.float32(1.0)
    first, second = np.int64(a & TABLE_MASK), np.int64(b & TABLE_MASK)
    for unit in range(noise.size):
        total = table[first + unit] + table[second + unit]
        total = total - np.float32(total >= one) if uniform else total * SQRT_HALF
        noise[unit] = np.float64(total) * sigma[unit]


@_compile
def _run(
    rules, ie_w, ee_post, ee_w, ee_count, ei_post, ei_count, ei_w, scales, sums, thresholds,
    state, counts, table, key, sigma, t, input_ptr, input_units, spikes, record,
):
    """Advance up to len(input_ptr) - 1 steps from step t, mutating the network arrays in
    place; step k drives input_units[input_ptr[k]:input_ptr[k + 1]]. The draws of step
    t + k are randomness's for (key, t + k), the noise read from `table` (see _noise).
    I unit i's synapses are its first ei_count[i] slots (posts ei_post, weights ei_w).
    E->E synapses are the slot rows (ee_post, ee_w, ee_count); every row must have a free
    slot (or hold n_e - 1 synapses) on entry. Returns (steps run, whether a row is full):
    the run stops early after a step that fills a row, so the caller can grow the rows."""
    n_e = rules.n_e
    n_t = state.size
    n_steps = input_ptr.size - 1
    can_fill = ee_post.shape[1] < n_e - 1  # else a full row has no free place to grow into
    # Who fired at t: E units first, then I units (as indices in [0, n_t)).
    prev = np.empty(n_t, np.intp)
    n_prev, _ = _list_fired(state, n_e, prev)
    fired = np.empty(n_t, np.intp)
    drive = np.empty(n_t)
    inhibition = np.empty(n_e + 1)
    work = np.empty((3, n_e + 1))  # scratch rows for iSTDP
    stdp_work = np.zeros((3, n_e))  # STDP's, with the values it needs on entry (see _stdp)
    stdp_work[2] = -1.0
    stdp_marked = np.zeros(n_e, np.bool_)
    hits = np.empty(max(n_e - 1, 1), np.intp)  # a row's slots that STDP changes
    growth = np.empty(sums.size)
    driven_at = np.full(n_e, -1, np.intp)
    noise = np.empty(n_t)
    _prefetch_rows(ee_w, ee_post, ee_count, ei_w, ei_count, prev, n_prev, n_e)
    for k in range(n_steps):
        step = np.uint64(t + k)
        split_prev = 0
        while split_prev < n_prev and prev[split_prev] < n_e:
            split_prev += 1
        _noise(rules.uniform_noise, table, _lane(key, step, NOISE_A),
               _lane(key, step, NOISE_B), sigma, noise)
        _drive(rules, ie_w, ee_post, ee_w, ee_count, ei_post, ei_count, ei_w, scales,
               thresholds, prev, split_prev, n_prev, noise,
               input_units[input_ptr[k] : input_ptr[k + 1]], k, driven_at, drive, inhibition)
        if rules.fast_inhibition:
            _drive_from_new_e(n_e, ie_w, scales, thresholds, noise, drive)
        for unit in range(n_t):
            state[unit] = drive[unit] >= 0.0
        n_fired, split = _list_fired(state, n_e, fired)
        _prefetch_rows(ee_w, ee_post, ee_count, ei_w, ei_count, fired, n_fired, n_e)
        filled = 0
        if rules.learning:
            filled = _learn(rules, ee_post, ee_w, ee_count, ei_post, ei_count, ei_w, scales,
                            sums, thresholds, state, prev, split_prev, n_prev, fired, split,
                            key, step, growth, work, stdp_work, stdp_marked, hits)
        row = (t + k) % counts.shape[0]
        counts[row, 0] = split
        counts[row, 1] = n_fired - split
        if record:
            spikes[k] = state
        prev, fired = fired, prev
        n_prev = n_fired
        if can_fill and filled == ee_post.shape[1]:
            return k + 1, True
    return n_steps, False


@_compile
def _list_fired(state, n_e, fired):
    """Write the units that fire into `fired` in index order; return (count, E count).
    (Counts come back from a call so that numba types them as plain ints, not as the
    literal 0 a counter starts from, which would compile each callee twice.)"""
    n_fired = 0
    for unit in range(n_e):  # every unit is written, the count moves on where one fires:
        fired[n_fired] = unit  # no branch to mispredict
        n_fired += state[unit]
    split = n_fired
    for unit in range(n_e, state.size):
        fired[n_fired] = unit
        n_fired += state[unit]
    return n_fired, split


@_compile
def _prefetch_rows(ee_w, ee_post, ee_count, ei_w, ei_count, units, n_units, n_e):
    """Prefetch the synapse rows of units[:n_units] (E units, then I units): the next
    passes read them (STDP and the next step's drive), and with many networks per worker
    they are rarely still in the cache. Asked for all at once, they arrive together
    instead of one row after another as the loops reach them."""
    for r in range(n_units):
        unit = units[r]
        if unit < n_e:
            _prefetch_span(ee_w.ctypes.data + unit * ee_w.strides[0], ee_count[unit] * 8)
            _prefetch_span(ee_post.ctypes.data + unit * ee_post.strides[0], ee_count[unit] * 2)
        else:
            pre = unit - n_e
            _prefetch_span(ei_w.ctypes.data + pre * ei_w.strides[0], ei_count[pre] * 8)


@_compile
def _prefetch_span(address, size):
    """Prefetch every cache line of the `size` bytes at `address`."""
    for line in range(address & -64, address + size, 64):
        _prefetch(line)


@_compile
def _drive(rules, ie_w, ee_post, ee_w, ee_count, ei_post, ei_count, ei_w, scales,
           thresholds, prev, split_prev, n_prev, noise, units, k, driven_at, drive,
           inhibition):
    """drive = Σ_rows W_out[e_prev] · scale − inhibition − T + ξ (+ gain on driven units)."""
    n_e = rules.n_e
    n_t = drive.size
    drive[:] = 0.0
    drive_i = drive[n_e:]  # a view: its indices are plainly >= 0, so the loop vectorizes
    for r in range(split_prev):
        pre = prev[r]
        posts = ee_post[pre]
        weights = ee_w[pre]
        for slot in range(ee_count[pre]):
            drive[posts[slot]] += weights[slot]
        row = ie_w[pre]
        for j in range(drive_i.size):
            drive_i[j] += row[j]
    inhibited = n_prev > split_prev
    if inhibited:
        inhibition[:] = 0.0
        for r in range(split_prev, n_prev):
            pre = prev[r] - n_e
            for slot in range(ei_count[pre]):
                inhibition[ei_post[pre, slot]] += ei_w[pre, slot]
    # One pass doing numpy's operations per unit in its order (the branch is the same for
    # every unit: the compiler takes it out of the loop).
    for unit in range(n_t):
        total = drive[unit] * scales[unit]
        if inhibited and unit < n_e:
            total -= inhibition[unit] * scales[n_t + unit]
        total -= thresholds[unit]
        drive[unit] = total + noise[unit]
    for unit in units:  # numpy's drive[units] += gain adds once per distinct unit
        if driven_at[unit] != k:
            driven_at[unit] = k
            drive[unit] += rules.input_gain


@_compile
def _drive_from_new_e(n_e, ie_w, scales, thresholds, noise, drive):
    """Fast inhibition: the I units' drive from the E units whose drive is >= 0."""
    n_t = drive.size
    drive[n_e:] = 0.0
    for pre in range(n_e):
        if drive[pre] >= 0.0:
            row = ie_w[pre]
            for j in range(n_t - n_e):
                drive[n_e + j] += row[j]
    for post in range(n_e, n_t):
        drive[post] *= scales[post]
        drive[post] -= thresholds[post]
        drive[post] += noise[post]


@_compile
def _learn(rules, ee_post, ee_w, ee_count, ei_post, ei_count, ei_w, scales, sums, thresholds,
           state, prev, split_prev, n_prev, fired, split, key, step, growth, work, stdp_work,
           stdp_marked, hits):
    """IP, STDP, structural plasticity, iSTDP and normalization, in network's order.
    Returns the new synapse count of the row a synapse was added to (0 if none was)."""
    n_e = rules.n_e
    n_t = state.size
    if rules.ip:
        for unit in range(n_e):
            thresholds[unit] -= rules.ip_drop
        for r in range(split):
            thresholds[fired[r]] += rules.eta_ip
    growth[:] = 0.0
    if rules.stdp and split_prev and split:
        _stdp(rules, ee_post, ee_w, ee_count, scales, prev[:split_prev], fired[:split], growth,
              stdp_work, stdp_marked, hits)
    filled = 0
    if rules.structural and _unit_float(_lane(key, step, ADD_SYNAPSE)) < rules.p_add:
        pre, post = _free_place(ee_post, ee_count, n_e, key, step)
        if pre >= 0:
            filled = ee_count[pre]
            ee_post[pre, filled] = post
            ee_w[pre, filled] = rules.w_new / scales[post]
            filled += 1
            ee_count[pre] = filled
            growth[post] += rules.w_new
    if rules.istdp and n_prev > split_prev:
        _istdp(rules, ei_post, ei_count, ei_w, scales, state, prev[split_prev:n_prev], n_t,
               growth, work)
    if rules.normalization:
        for unit in range(growth.size):
            total = growth[unit] + sums[unit]
            nonzero = total > EMPTY_SUM
            if nonzero and total != 1.0:  # dividing by 1.0 changes nothing: skip it
                scales[unit] /= total
            sums[unit] = 1.0 if nonzero else 0.0
    return filled


@_compile
def _stdp(rules, ee_post, ee_w, ee_count, scales, e_prev, e_fired, growth, work, marked, hits):
    """Potentiation of (e_prev -> e_fired): the rows of e_prev, slots whose post fires now;
    then depression of (e_fired -> e_prev): the rows of e_fired, slots whose post fired at
    t. Per post the changes add up over the rows in index order, as numpy's column sums.
    Potentiation adds its post's step to every slot, which is 0.0 where the post does not
    fire (weights are >= 0, so adding 0.0 changes no bit): no branch to mispredict per
    slot. Depression, with more to do per slot, first lists a row's slots whose post fired
    at t (_marked_slots, a tenth of them) and changes only those, walking them backwards:
    a pruned synapse's slot takes the row's last one, which is then already done. `work`
    must hold 0.0, 0.0, -1.0 in its three rows and `marked` False on entry, as they do on
    return."""
    eta = rules.eta_stdp
    change = work[0]  # per unit: its column's change, row after row
    step = work[1]  # per unit: η in its raw units if it fired (as numpy divides), else 0
    prune = work[2]  # per unit: the prune threshold in its raw units, else -1 (never reached)
    for b in e_fired:
        step[b] = eta / scales[b]
        change[b] = 0.0
    for a in e_prev:
        posts = ee_post[a]
        weights = ee_w[a]
        for slot in range(ee_count[a]):
            b = posts[slot]
            weights[slot] = weights[slot] + step[b]
            change[b] += step[b]
    for b in e_fired:
        growth[b] = change[b] * scales[b]
        step[b] = 0.0
    for p in e_prev:
        step[p] = eta / scales[p]
        if rules.structural:
            prune[p] = rules.prune_threshold / scales[p]
        change[p] = 0.0
        marked[p] = True
    for f in e_fired:
        posts = ee_post[f]
        weights = ee_w[f]
        count = ee_count[f]
        for h in range(_marked_slots(posts, count, marked, hits) - 1, -1, -1):
            slot = hits[h]
            p = posts[slot]
            old = weights[slot]
            new = old - step[p]
            if new < 0.0:
                new = 0.0
            if new <= prune[p]:
                change[p] += 0.0 - old
                count -= 1
                posts[slot] = posts[count]
                weights[slot] = weights[count]
            else:
                weights[slot] = new
                change[p] += new - old
        ee_count[f] = count
    for p in e_prev:
        growth[p] += change[p] * scales[p]
        step[p] = 0.0
        prune[p] = -1.0
        marked[p] = False


@_compile
def _marked_slots(posts, count, marked, hits):
    """Write the slots among the first `count` whose post is marked into `hits`, in order;
    return how many there are."""
    found = 0
    for slot in range(count):
        hits[found] = slot  # every slot is written, the count moves on where one is marked
        found += marked[posts[slot]]
    return found


@_compile
def _has_synapse(ee_post, ee_count, pre, post):
    slot = 0
    while slot < ee_count[pre] and ee_post[pre, slot] != post:
        slot += 1
    return slot < ee_count[pre]


@_compile
def _free_place(ee_post, ee_count, n_e, key, step):
    """A uniformly random free E->E place (pre != post), or (-1, -1) if there is none:
    the first free candidate, else the free place numbered int(fallback * free) in
    row-major order, as numpy's nonzero lists them (see randomness.StepDraws)."""
    places = np.uint64(n_e * n_e)
    for lane in range(FIRST_CANDIDATE, FIRST_CANDIDATE + STRUCTURAL_CANDIDATES):
        place = np.int64(_lane(key, step, lane) % places)
        pre, post = place // n_e, place % n_e
        if pre != post and not _has_synapse(ee_post, ee_count, pre, post):
            return pre, post
    free = 0
    for pre in range(n_e):
        free += n_e - 1 - ee_count[pre]
    if free == 0:
        return -1, -1
    wanted = int(_unit_float(_lane(key, step, FALLBACK)) * free)
    taken = np.zeros(n_e, np.bool_)
    for pre in range(n_e):
        room = n_e - 1 - ee_count[pre]
        if wanted >= room:
            wanted -= room
            continue
        taken[:] = False
        for slot in range(ee_count[pre]):
            taken[ee_post[pre, slot]] = True
        for post in range(n_e):
            if post != pre and not taken[post]:
                if wanted == 0:
                    return pre, post
                wanted -= 1
    return -1, -1


@_compile
def renormalize_rows(n_e, ee_post, ee_w, ee_count, scales, sums):
    """The E->E part of network's exact renormalization: fold each post's scale into its
    raw weights, then divide them by their sum (added row after row, as numpy's)."""
    totals = np.zeros(n_e)
    for pre in range(n_e):
        for slot in range(ee_count[pre]):
            post = ee_post[pre, slot]
            ee_w[pre, slot] *= scales[post]
            totals[post] += ee_w[pre, slot]
    for pre in range(n_e):
        for slot in range(ee_count[pre]):
            total = totals[ee_post[pre, slot]]
            if total > 0:
                ee_w[pre, slot] /= total
    for post in range(n_e):
        scales[post] = 1.0
        sums[post] = 1.0 if totals[post] > 0 else 0.0


@_compile
def write_dense(ee_post, ee_w, ee_count, pres, w_out, gate_out):
    """Write slot row pres[i] into the E->E part (columns [0, n_e)) of dense row i."""
    n_e = ee_count.size
    for i in range(pres.size):
        pre = pres[i]
        w_out[i, :n_e] = 0.0
        gate_out[i, :n_e] = False
        for slot in range(ee_count[pre]):
            post = ee_post[pre, slot]
            w_out[i, post] = ee_w[pre, slot]
            gate_out[i, post] = True


@_compile
def _istdp(rules, ei_post, ei_count, ei_w, scales, state, i_prev, n_t, growth, work):
    """iSTDP on the slot rows of the I units that fired at t (i_prev holds n_e + index).
    The change and floor in raw units of every post are computed once per step, the same
    bits as numpy's per-post arrays (a fired I unit reaches a fifth of the posts, and
    several fire in a step: computing them all is as quick as finding those reached)."""
    n_e = rules.n_e
    change, shift, floor = work[0], work[1], work[2]
    change[:] = 0.0
    for post in range(n_e):  # every post, without a branch: the loop vectorizes
        after = 1.0 if state[post] else 0.0
        scale = scales[n_t + post]
        shift[post] = (after * rules.istdp_rise - rules.eta_istdp) / scale
        floor[post] = rules.istdp_floor / scale
    for unit in i_prev:
        pre = unit - n_e
        for slot in range(ei_count[pre]):
            post = ei_post[pre, slot]
            old = ei_w[pre, slot]
            new = old + shift[post]
            if new < floor[post]:
                new = floor[post]
            ei_w[pre, slot] = new
            change[post] += new - old
    if rules.normalization:
        for post in range(n_e):
            growth[n_t + post] = change[post] * scales[n_t + post]
