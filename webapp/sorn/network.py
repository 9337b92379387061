"""The SORN: binary threshold units, discrete time, five plasticity rules.

    x(t+1) = Θ( W_EE x(t) − W_EI y(t) + u(t) − T_E + ξ(t) )
    y(t+1) = Θ( W_IE x(t) − T_I )      (x(t+1) instead with `fast_inhibition`)

Layout, chosen for an event-driven step and simple enough for a later compiled kernel:
E->E and E->I weights share one dense float64 [pre, post] array (columns: E posts, then
I posts) with a boolean mask of the synapses that exist, so the input that the E units
firing at t send to every unit is one gather of their rows and one sum. I->E synapses
never move, so each I unit keeps a fixed padded row of (post, weight) slots.
Normalization of incoming weights is lazy: the effective weight is
`raw[pre, post] * scale[post]`, so renormalizing a unit is one division of its scale
rather than a pass over its column. Every RENORMALIZE_EVERY steps the scales are folded
back and every column renormalized exactly, so rounding cannot pile up.
The optional numba kernel (webapp/sorn/kernel.py) runs the same steps bit for bit;
`backend` picks it. It keeps E->E as slot rows (kernel.SlotRows) instead, built from the
dense arrays on its first run, which are then dropped (1.1 of the network's 1.3 MB) and
built afresh from the rows when something reads them (`_dense_out`); a numpy run takes
them back and drops the rows.
docs/MODEL.md has the model, the defaults and their sources.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import os
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from webapp.sorn.config import SORNConfig
from webapp.sorn.randomness import StepDraws, check_seed, init_generator, noise_table, seed_key

RATE_WINDOW = 1000  # steps over which stats() reports the recent firing rates
RENORMALIZE_EVERY = 1024  # steps between exact renormalizations (lazy scales folded back)
HISTOGRAM_EDGES = np.logspace(-4, 0, 17)  # E->E weight histogram: 1e-4 .. 1, 4 bins a decade
EMPTY_SUM = 1e-12  # a unit whose incoming weights sum to less has no input to normalize
UNIT_INDEX = np.uint16  # a unit index (or the dummy post n_e): SORNConfig keeps n_e <= 65535

Units = np.ndarray | Sequence[int] | None
# The dtypes of SORN.kernel_arrays, in order, as kernel.run_many reads them.
KERNEL_DTYPES = tuple(np.dtype(kind) for kind in (
    np.float64, UNIT_INDEX, np.float64, np.int32, UNIT_INDEX, np.int32, np.float64,
    np.float64, np.float64, np.float64, np.bool_, np.int64))
BACKENDS = ("auto", "numpy", "numba")


def resolve_backend(backend: str) -> str:
    """'numpy' or 'numba': "auto" means numba when it is installed (the `fast` extra)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return backend
    try:
        importlib.import_module("webapp.sorn.kernel")
    except ImportError:
        if backend == "numba":
            raise
        return "numpy"
    return "numba"


@dataclass
class NetworkArrays:
    """The complete state of a network in plain arrays: what save/load exchange.

    Matrices are [pre, post]; weights are raw (effective = raw * scale of the post unit).
    """

    config: SORNConfig
    seed: int
    step: int
    plastic: bool
    ee_exists: np.ndarray  # bool (n_e, n_e)
    ee_weights: np.ndarray  # float64 (n_e, n_e)
    ei_exists: np.ndarray  # bool (n_i, n_e): I -> E
    ei_weights: np.ndarray
    ie_exists: np.ndarray  # bool (n_e, n_i): E -> I
    ie_weights: np.ndarray
    thresholds_e: np.ndarray
    thresholds_i: np.ndarray
    x: np.ndarray  # bool (n_e,)
    y: np.ndarray  # bool (n_i,)
    scale_ee: np.ndarray  # (n_e,) lazy normalization of E->E inputs
    scale_ei: np.ndarray  # (n_e,) lazy normalization of I->E inputs
    sum_ee: np.ndarray  # (n_e,) effective input sums (1, or 0 for a unit with no input)
    sum_ei: np.ndarray
    rate_counts: np.ndarray  # int64 (RATE_WINDOW, 2): E and I spikes of recent steps


def random_inputs(
    rng: np.random.Generator, n_pre: int, n_post: int, inputs: int, avoid_self: bool
) -> np.ndarray:
    """Boolean [pre, post] mask in which every post unit has exactly `inputs` pre units."""
    keys = rng.random((n_post, n_pre))
    if avoid_self:
        np.fill_diagonal(keys, np.inf)
    mask = np.zeros((n_post, n_pre), dtype=bool)
    if inputs > 0:
        chosen = np.argpartition(keys, inputs - 1, axis=1)[:, :inputs]
        np.put_along_axis(mask, chosen, True, axis=1)
    return np.ascontiguousarray(mask.T)


def normalized_weights(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Uniform random weights on the synapses, each post unit's inputs summing to 1."""
    weights = rng.random(mask.shape) * mask
    sums = weights.sum(axis=0)
    np.divide(weights, sums, out=weights, where=sums > 0)
    return weights


def column_sums(matrix: np.ndarray) -> np.ndarray:
    """The sum of each column, adding the rows one after another (as the numba kernel does).
    numpy reduces along a slow axis that way; a single column it would sum pairwise, so
    that one is accumulated instead. Needs at least one row."""
    if matrix.shape[1] > 1:
        return np.add.reduce(matrix, axis=0)
    return np.add.accumulate(matrix, axis=0)[-1]


def padded_rows(exists: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pre unit, the posts it reaches and the weights, padded with post n_post, 0."""
    n_pre, n_post = exists.shape
    width = max(int(exists.sum(axis=1).max(initial=0)), 1)
    order = np.argsort(~exists, axis=1, kind="stable")[:, :width]
    used = np.take_along_axis(exists, order, axis=1)
    posts = np.where(used, order, n_post).astype(np.intp)
    return posts, np.where(used, np.take_along_axis(weights, order, axis=1), 0.0)


_constants: weakref.WeakValueDictionary[tuple, np.ndarray] = weakref.WeakValueDictionary()


def shared_constant(array: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous copy of `array`, the same object for every caller with equal
    contents while one is alive. Every user's network is built from one seed, so all hold
    the same E->I weights and I->E places, which no rule changes: one copy serves them all
    (260 kB less each, and it stays in the cache while a worker steps many networks)."""
    contiguous = np.ascontiguousarray(array)
    key = (array.dtype.str, array.shape,
           hashlib.blake2b(contiguous.data, digest_size=16).digest())
    found = _constants.get(key)
    if found is None or not np.array_equal(found, array):
        found = contiguous.copy() if contiguous is array else contiguous
        found.flags.writeable = False
        _constants[key] = found
    return found


class SORN:
    """One network with explicit state; `run` advances it, `plastic` freezes learning.

    Not thread-safe: one owner (thread or worker process) per network. `backend` (see
    resolve_backend) only changes the speed: both give the same spikes, weights and state."""

    def __init__(
        self, config: SORNConfig | None = None, seed: int = 0, backend: str = "auto"
    ) -> None:
        cfg = config if config is not None else SORNConfig()
        seed = check_seed(seed)
        rng = init_generator(seed)
        n_e, n_i = cfg.n_e, cfg.n_i
        ee = random_inputs(rng, n_e, n_e, cfg.ee_inputs, avoid_self=True)
        ei = random_inputs(rng, n_i, n_e, round(cfg.ei_connectivity * n_i), avoid_self=False)
        ie = random_inputs(rng, n_e, n_i, round(cfg.ie_connectivity * n_e), avoid_self=False)
        ee_weights, ei_weights, ie_weights = (normalized_weights(rng, m) for m in (ee, ei, ie))
        self._load(NetworkArrays(
            config=cfg, seed=seed, step=0, plastic=True,
            ee_exists=ee, ee_weights=ee_weights,
            ei_exists=ei, ei_weights=ei_weights,
            ie_exists=ie, ie_weights=ie_weights,
            thresholds_e=rng.uniform(0.0, cfg.te_max, n_e),
            thresholds_i=rng.uniform(0.0, cfg.ti_max, n_i),
            x=rng.random(n_e) < cfg.h_ip,
            y=np.zeros(n_i, dtype=bool),
            scale_ee=np.ones(n_e), scale_ei=np.ones(n_e),
            sum_ee=(ee_weights.sum(axis=0) > 0).astype(float),
            sum_ei=(ei_weights.sum(axis=0) > 0).astype(float),
            rate_counts=np.zeros((RATE_WINDOW, 2), dtype=np.int64),
        ))
        self.backend = backend

    @classmethod
    def from_arrays(cls, arrays: NetworkArrays, backend: str = "auto") -> SORN:
        """A network continuing exactly from `arrays` (see `to_arrays`)."""
        net = cls.__new__(cls)
        net._load(arrays)
        net.backend = backend
        return net

    @property
    def backend(self) -> str:
        """"numpy" (the reference) or "numba" (the compiled kernel); set it to any of
        BACKENDS, even mid-run: the results are the same, only the speed differs."""
        return self._backend

    @backend.setter
    def backend(self, backend: str) -> None:
        self._backend = resolve_backend(backend)

    def _load(self, a: NetworkArrays) -> None:
        cfg = a.config
        n_t = cfg.n_e + cfg.n_i
        self.config = cfg
        self.seed = a.seed
        self.t = a.step  # steps simulated so far; the next step computes state t+1
        self.plastic = a.plastic
        # From every E unit: columns [0, n_e) go to E units, [n_e, n_t) to I units.
        self._w_out = np.hstack([a.ee_weights, a.ie_weights]).astype(np.float64)
        self._gate_out = np.hstack([a.ee_exists, a.ie_exists]).astype(bool)
        # E->I synapses never change: the kernel's copy, and what rebuilds the dense arrays,
        # read-only and shared by the networks of the process that have the same ones.
        self._ie_w = shared_constant(self._w_out[:, cfg.n_e :])
        self._ie_gate = shared_constant(self._gate_out[:, cfg.n_e :])
        # I->E synapses never change place, so each I unit keeps a fixed row of (post, weight)
        # slots; unused slots point at a dummy post n_e whose scale is inf.
        posts, ei_weights = padded_rows(a.ei_exists, a.ei_weights)
        self._ei_w = np.ascontiguousarray(ei_weights, dtype=np.float64)
        self._ei_post = shared_constant(posts)  # fixed places, the same for one seed
        # The kernel's copy of the posts, short ints, and each row's count of used slots.
        self._ei_post_short = shared_constant(posts.astype(UNIT_INDEX))
        self._ei_count = shared_constant((posts < cfg.n_e).sum(axis=1).astype(np.int32))
        self._x_ext = np.zeros(cfg.n_e + 1)
        # Lazy normalization scales of every input population, in one array so a single
        # pass renormalizes all of them: [E->E (n_e) | E->I (n_i, fixed at 1) | I->E (n_e) |
        # dummy I->E slot (inf)]; and the effective input sums (1, or 0 without input).
        self._scales = np.concatenate([a.scale_ee, np.ones(cfg.n_i), a.scale_ei,
                                       [np.inf]]).astype(np.float64)
        self._scale = self._scales[:n_t]  # views
        self._scale_ei_ext = self._scales[n_t:]
        self._scale_ei = self._scales[n_t : n_t + cfg.n_e]
        self._sums = np.concatenate([a.sum_ee, np.ones(cfg.n_i), a.sum_ei]).astype(np.float64)
        self._sum_ee = self._sums[: cfg.n_e]
        self._sum_ei = self._sums[n_t:]
        self._thresholds = np.concatenate([a.thresholds_e, a.thresholds_i]).astype(np.float64)
        self._thresholds_e = self._thresholds[: cfg.n_e]  # a view, adapted by IP
        self._state = np.concatenate([a.x, a.y]).astype(bool)
        self._counts = np.ascontiguousarray(a.rate_counts, dtype=np.int64)
        # The random draws' hash key (see randomness), an array of one as the kernel takes it.
        self.draws_key = np.array([seed_key(a.seed)], np.uint64)
        # Each unit's noise scale σ: E units, then I units.
        self.sigma = shared_constant(np.repeat([cfg.noise_sigma, cfg.noise_sigma_i],
                                               [cfg.n_e, cfg.n_i]))
        self._n_total = n_t
        self._no_spikes = np.empty((0, n_t), dtype=bool)  # the kernel's `spikes` unrecorded
        self._kernel_rules: dict = {}  # the kernel's Rules, by the `plastic` flag
        # The numba backend's E->E slot rows (kernel.SlotRows). Exactly one of them and the
        # dense _w_out/_gate_out is held: it is the E->E state (the other is None).
        self._ee_rows = None
        self._described = None  # see kernel_description

    def _dense_out(self) -> tuple[np.ndarray, np.ndarray]:
        """(_w_out, _gate_out) to read: the dense arrays, or a fresh copy from the rows."""
        if self._ee_rows is None:
            return self._w_out, self._gate_out
        return self._dense_rows(np.arange(self.config.n_e))

    def _dense_rows(self, pres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows `pres` of the dense arrays, built from the slot rows."""
        from webapp.sorn.kernel import write_dense

        n_e = self.config.n_e
        weights = np.empty((pres.size, self._n_total))
        gates = np.empty((pres.size, self._n_total), dtype=bool)
        weights[:, n_e:] = self._ie_w[pres]
        gates[:, n_e:] = self._ie_gate[pres]
        write_dense(*self._ee_rows, pres, weights, gates)
        return weights, gates

    def _build_ee_rows(self) -> None:
        """Hand E->E over to slot rows (for the numba backend), if they are not yet built."""
        if self._ee_rows is None:
            from webapp.sorn.kernel import rows_from_dense

            self._ee_rows = rows_from_dense(self._w_out, self._gate_out, self.config.n_e)
            self._w_out = self._gate_out = None

    def to_arrays(self) -> NetworkArrays:
        """A copy of the complete state (what `save` writes)."""
        cfg = self.config
        n_e = cfg.n_e
        w_out, gate_out = self._dense_out()
        return NetworkArrays(
            config=cfg, seed=self.seed, step=self.t, plastic=self.plastic,
            ee_exists=gate_out[:, :n_e].copy(), ee_weights=w_out[:, :n_e].copy(),
            ei_exists=self._dense_ei(np.ones_like(self._ei_w, dtype=bool)),
            ei_weights=self._dense_ei(self._ei_w),
            ie_exists=self._ie_gate.copy(), ie_weights=self._ie_w.copy(),
            thresholds_e=self._thresholds[:n_e].copy(),
            thresholds_i=self._thresholds[n_e:].copy(),
            x=self._state[:n_e].copy(), y=self._state[n_e:].copy(),
            scale_ee=self._scale[:n_e].copy(), scale_ei=self._scale_ei.copy(),
            sum_ee=self._sum_ee.copy(), sum_ei=self._sum_ei.copy(),
            rate_counts=self._counts.copy(),
        )

    def __deepcopy__(self, memo: dict) -> SORN:
        """An independent twin that continues exactly like this network. (A field-by-field
        deepcopy would turn the views this network keeps into its arrays, such as the E
        thresholds IP adapts, into separate arrays that no longer follow them.)"""
        twin = SORN.from_arrays(self.to_arrays(), backend=self.backend)
        memo[id(self)] = twin
        return twin

    def __reduce__(self):
        """Pickled as its complete state, like a saved file (the views it keeps into its
        arrays, and the kernel's table of their addresses, do not survive a pickle)."""
        return SORN.from_arrays, (self.to_arrays(), self.backend)

    def __copy__(self) -> SORN:
        """A shallow copy sharing every array (see frozen_copy)."""
        twin = SORN.__new__(SORN)
        twin.__dict__.update(self.__dict__)
        return twin

    def frozen_copy(self) -> SORN:
        """A copy with plasticity off that shares this network's weights, thresholds and
        scales. A run without learning writes only the state and the rate counts, so only
        those are copied: cheap enough for every recall, and running the copy leaves this
        network untouched. (Do not turn learning back on in the copy.)"""
        if self.backend == "numba":
            self._build_ee_rows()  # once, here, rather than in every copy
        frozen = copy.copy(self)
        frozen.plastic = False
        frozen._state = self._state.copy()
        frozen._counts = self._counts.copy()
        return frozen

    # ----------------------------------------------------------------- running

    def run(self, inputs: Iterable[Units] | int, record: bool = True) -> np.ndarray | None:
        """Advance one step per entry of `inputs` (E-unit indices to drive, or None);
        an int n means n steps without input. Returns the spikes as bool
        (steps, n_e + n_i), E units first, or None when `record` is False."""
        entries = [None] * inputs if isinstance(inputs, int) else list(inputs)
        starts, units = self._pack_inputs(entries)
        spikes = np.empty((len(entries), self._n_total), dtype=bool) if record else None
        if self.backend == "numba":
            self._run_compiled(starts, units, spikes)
            return spikes
        if self._ee_rows is not None:  # numpy steps the dense arrays: they take E->E back
            self._w_out, self._gate_out = self._dense_out()
            self._ee_rows = None
        # Who fired at t, E units first: fired[:split] are E units.
        self._fired = self._state.nonzero()[0]
        self._split = int(self._fired.searchsorted(self.config.n_e))
        for k in range(len(entries)):
            start, end = starts[k], starts[k + 1]
            state = self._advance(units[start:end] if end > start else None)
            if spikes is not None:
                spikes[k] = state
        return spikes

    def step(self, units: Units = None) -> np.ndarray:
        """One step; returns the new spikes as bool (n_e + n_i,), E units first."""
        return self.run([units])[0]

    def _pack_inputs(self, entries: list[Units]) -> tuple[np.ndarray, np.ndarray]:
        """The entries as one flat intp array of E units and where each step's part starts
        (step k drives units[starts[k]:starts[k + 1]]), all checked before the network
        moves. Packed once per call, as the kernel takes them."""
        given = []
        ends = [0]
        for entry in entries:
            if entry is None:
                ends.append(ends[-1])
                continue
            units = np.asarray(entry)
            if units.ndim != 1 or (units.size and units.dtype.kind not in "iu"):
                raise ValueError(
                    "each input entry must be None or a 1-D sequence of E-unit indices"
                )
            given.append(units)
            ends.append(ends[-1] + units.size)
        starts = np.array(ends, dtype=np.intp)
        # Always a fresh array: a caller's read-only one (e.g. a cached token's units) would
        # be another type to numba, compiled again on first use (seconds, in a fresh install).
        every = np.concatenate(given) if given else starts[:0]
        if every.size and (every.min() < 0 or every.max() >= self.config.n_e):
            raise ValueError(f"input units must lie in [0, {self.config.n_e})")
        return starts, every.astype(np.intp, copy=False)

    def renormalize_if_due(self) -> None:
        """Renormalize exactly if it is due before step t (every RENORMALIZE_EVERY steps)."""
        if self.plastic and self.t % RENORMALIZE_EVERY == 0 and self.config.normalization:
            self._renormalize_exactly()

    def steps_until_renormalization(self) -> int:
        """Steps from t up to the next exact renormalization: how far one kernel call goes."""
        return RENORMALIZE_EVERY - self.t % RENORMALIZE_EVERY

    def _run_compiled(
        self, starts: np.ndarray, units: np.ndarray, spikes: np.ndarray | None
    ) -> None:
        """`run` through the numba kernel, one call per stretch of steps up to the next
        exact renormalization (or a row that fills up)."""
        n_steps = starts.size - 1
        done = 0
        while done < n_steps:
            steps = min(n_steps - done, self.kernel_ready())
            ran = run_kernel([self], [steps], np.array([done]), starts, units,
                             None if spikes is None else spikes[done : done + steps])
            done += ran[0]

    @property
    def noise_table(self) -> np.ndarray:
        """The table its noise is read from (see randomness)."""
        return noise_table(self.config.noise_distribution)

    def kernel_rules(self):
        """The kernel's Rules for this network as it is now (learning or frozen)."""
        from webapp.sorn.kernel import rules_for

        rules = self._kernel_rules.get(self.plastic)
        if rules is None:
            rules = self._kernel_rules[self.plastic] = rules_for(self.config, self.plastic)
        return rules

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays the kernel steps in place, in its argument order (E->E as slot rows)."""
        self._build_ee_rows()
        return (self._ie_w, *self._ee_rows, self._ei_post_short, self._ei_count, self._ei_w,
                self._scales, self._sums, self._thresholds, self._state, self._counts)

    def kernel_description(self) -> np.ndarray:
        """Where the kernel finds `kernel_arrays`: an (address, rows, columns) triple each,
        int64 (see kernel.run_many). Valid while this network keeps those arrays; rebuilt
        when it has replaced one. After `_load` only the E->E rows (built, grown, taken back
        by a numpy run), the state and the rate counts (a frozen copy's own) are ever
        replaced, so only they are compared: this runs for every network of every batch."""
        kept = self._described
        if (kept is not None and kept[0] is self._ee_rows and kept[1] is self._state
                and kept[2] is self._counts):
            return kept[3]
        arrays = self.kernel_arrays()
        described = []
        for array, dtype in zip(arrays, KERNEL_DTYPES, strict=True):
            if array.dtype != dtype or not array.flags.c_contiguous or array.ndim > 2:
                raise TypeError(f"the kernel reads C-contiguous {dtype} arrays of 1 or 2 "
                                f"dimensions, not {array.dtype} {array.shape}")
            described += [array.__array_interface__["data"][0], *(*array.shape, 1)[:2]]
        self._described = (self._ee_rows, self._state, self._counts,
                           np.array(described, np.int64))
        return self._described[3]

    def _grow_rows(self) -> None:
        """Room for more synapses in every E->E row: the kernel found one full."""
        from webapp.sorn.kernel import grown

        self._ee_rows = grown(self._ee_rows, self.config.n_e)

    def kernel_ready(self) -> int:
        """Make the network ready for a kernel call at step t (E->E as slot rows, the exact
        renormalization done if it is due); returns how many steps the call may run."""
        self._build_ee_rows()  # before a renormalization, which then folds the rows
        steps = self.steps_until_renormalization()
        if steps == RENORMALIZE_EVERY:  # at a multiple of it: the renormalization may be due
            self.renormalize_if_due()
        return steps

    def _advance(self, units: np.ndarray | None) -> np.ndarray:
        """Compute x(t+1), y(t+1), apply the plasticity rules; return the new state."""
        cfg = self.config
        n_e = cfg.n_e
        self.renormalize_if_due()
        draws = StepDraws(self.draws_key[0], self.t, n_e, self.sigma, cfg.noise_distribution)
        learning = self.plastic

        e_prev = self._fired[: self._split]
        i_prev = self._fired[self._split :] - n_e
        # Input from the E units that fired at t, to every E and I unit (n_e + n_i > 1
        # columns, so this adds the rows in order; see column_sums).
        sent = self._w_out[e_prev]  # raw weights from the E units that fired at t
        drive = np.add.reduce(sent, axis=0)
        drive *= self._scale
        inhibitors = self._ei_post[i_prev]
        inhibition_rows = self._ei_w[i_prev]
        if i_prev.size:
            inhibition = np.bincount(inhibitors.ravel(), inhibition_rows.ravel(), n_e + 1)[:n_e]
            inhibition *= self._scale_ei
            drive[:n_e] -= inhibition
        drive -= self._thresholds
        noise = draws.noise
        drive += noise
        if units is not None:
            drive[units] += cfg.input_gain
        if cfg.fast_inhibition:
            self._drive_from_new_e(drive, noise)
        state = drive >= 0.0
        fired = state.nonzero()[0]
        split = int(fired.searchsorted(n_e))

        if learning:
            e_fired = fired[:split]
            if cfg.ip:
                self._thresholds_e -= cfg.eta_ip * cfg.h_ip
                self._thresholds[e_fired] += cfg.eta_ip
            # Change of every unit's effective input sums, laid out like self._sums.
            growth = np.zeros(self._sums.size) if cfg.normalization else None
            self._learn_ee(e_prev, e_fired, sent, draws, growth)
            if cfg.istdp and i_prev.size:
                self._learn_ei(i_prev, inhibitors, inhibition_rows, state[:n_e], growth)
            if growth is not None:
                self._normalize(growth)

        self._state, self._fired, self._split = state, fired, split
        counts = self._counts[self.t % RATE_WINDOW]
        counts[0] = split
        counts[1] = fired.size - split
        self.t += 1
        return state

    def _drive_from_new_e(self, drive: np.ndarray, noise: np.ndarray) -> None:
        """Replace the I units' drive by the one from the E units firing at t+1 (whose
        drive is final): fast inhibition, y(t+1) = Θ(W_IE x(t+1) − T_I + ξ)."""
        n_e = self.config.n_e
        e_new = (drive[:n_e] >= 0.0).nonzero()[0]
        if e_new.size:
            inhibitory = column_sums(self._w_out[e_new, n_e:])
        else:
            inhibitory = np.zeros(self._n_total - n_e)
        inhibitory *= self._scale[n_e:]
        inhibitory -= self._thresholds[n_e:]
        inhibitory += noise[n_e:]
        drive[n_e:] = inhibitory

    # ---------------------------------------------------------------- plasticity

    def _learn_ee(
        self, e_prev: np.ndarray, e_fired: np.ndarray, sent: np.ndarray, draws: StepDraws,
        growth: np.ndarray | None,
    ) -> None:
        """STDP and structural plasticity of the E->E synapses."""
        cfg = self.config
        if cfg.stdp and e_prev.size and e_fired.size:
            self._stdp(e_prev, e_fired, sent, growth)
        if cfg.structural and draws.add_synapse < cfg.p_add:
            place = self._free_place(draws)
            if place is not None:
                pre, post = place
                self._gate_out[pre, post] = True
                self._w_out[pre, post] = cfg.w_new / self._scale[post]
                if growth is not None:
                    growth[post] += cfg.w_new

    def _stdp(
        self, e_prev: np.ndarray, e_fired: np.ndarray, sent: np.ndarray,
        growth: np.ndarray | None,
    ) -> None:
        """ΔW[pre, post] = η (x_post(t+1) x_pre(t) − x_post(t) x_pre(t+1)) on existing
        synapses, W >= 0; with structural plasticity, synapses that fall to ~0 are pruned.
        Both blocks are touched in turn, so a pair that fired at t and t+1 gets +η − η.
        `sent` holds the rows of e_prev as they were at the start of the step."""
        cfg = self.config
        eta = cfg.eta_stdp
        gates = self._gate_out.reshape(-1)
        weights = self._w_out.reshape(-1)
        # Potentiation: pre fired at t, post fires at t+1.
        places = np.add.outer(e_prev * self._n_total, e_fired)
        scale = self._scale[e_fired]
        gain = gates.take(places) * (eta / scale)
        weights[places] = sent.take(e_fired, axis=1) + gain
        if growth is not None:
            growth[e_fired] = column_sums(gain) * scale
        # Depression: post fired at t, pre fires at t+1.
        places = np.add.outer(e_fired * self._n_total, e_prev)
        present = gates.take(places)
        scale = self._scale[e_prev]
        old = weights.take(places)
        new = old - present * (eta / scale)
        np.maximum(new, 0.0, out=new)
        if cfg.structural:
            dead = new <= cfg.prune_threshold / scale
            dead &= present
            if dead.any():
                new[dead] = 0.0
                gates[places[dead]] = False
        weights[places] = new
        if growth is not None:
            new -= old
            growth[e_prev] += column_sums(new) * scale

    def _free_place(self, draws: StepDraws) -> tuple[int, int] | None:
        """A uniformly random (pre, post) place without an E->E synapse, pre != post."""
        n_e = self.config.n_e
        for place in draws.candidates:
            pre, post = divmod(int(place), n_e)
            if pre != post and not self._gate_out[pre, post]:
                return pre, post
        free = ~self._gate_out[:, :n_e]
        np.fill_diagonal(free, False)
        free_places = free.nonzero()
        if free_places[0].size == 0:
            return None
        k = int(draws.fallback * free_places[0].size)
        return int(free_places[0][k]), int(free_places[1][k])

    def _learn_ei(
        self, i_prev: np.ndarray, posts: np.ndarray, old: np.ndarray, after_e: np.ndarray,
        growth: np.ndarray | None,
    ) -> None:
        """iSTDP (Zheng 2013) on the I->E synapses of the I units that fired at t:
        ΔW = −η_iSTDP y(t) [1 − x(t+1)(1 + 1/H_IP)], never below istdp_floor.
        `posts` and `old` are those units' slot rows."""
        cfg = self.config
        n_e = cfg.n_e
        scale_ext = self._scale_ei_ext
        fired_ext = self._x_ext
        fired_ext[:n_e] = after_e
        change = fired_ext * (cfg.eta_istdp * (1.0 + 1.0 / cfg.h_ip))
        change -= cfg.eta_istdp
        change /= scale_ext  # raw units; 0 for the dummy slot
        new = old + change.take(posts)
        np.maximum(new, (cfg.istdp_floor / scale_ext).take(posts), out=new)
        self._ei_w[i_prev] = new
        if growth is not None:
            new -= old
            raw = np.bincount(posts.ravel(), new.ravel(), n_e + 1)[:n_e]
            np.multiply(raw, self._scale_ei, out=growth[self._n_total :])

    def _normalize(self, growth: np.ndarray) -> None:
        """Scale each unit's inputs back to sum 1 (a unit with no input stays at 0)."""
        growth += self._sums
        nonzero = growth > EMPTY_SUM
        scales = self._scales[: growth.size]
        np.divide(scales, growth, out=scales, where=nonzero)
        self._sums[:] = nonzero

    def _renormalize_exactly(self) -> None:
        """Fold the lazy scales into the raw weights and normalize every unit afresh."""
        n_e = self.config.n_e
        if self._ee_rows is not None:
            from webapp.sorn.kernel import renormalize_rows

            renormalize_rows(n_e, *self._ee_rows, self._scales, self._sums)
        else:
            weights, scale = self._w_out[:, :n_e], self._scale[:n_e]
            weights *= scale
            sums = weights.sum(axis=0)
            np.divide(weights, sums, out=weights, where=sums > 0)
            scale[:] = 1.0
            self._sum_ee[:] = sums > 0

        posts = self._ei_post
        self._ei_w *= np.append(self._scale_ei, 0.0).take(posts)
        sums = np.bincount(posts.ravel(), self._ei_w.ravel(), n_e + 1)
        inverse = np.zeros(n_e + 1)
        np.divide(1.0, sums, out=inverse, where=sums > 0)
        inverse[n_e] = 0.0
        self._ei_w *= inverse.take(posts)
        self._scale_ei[:] = 1.0
        self._sum_ei[:] = sums[:n_e] > 0

    def _dense_ei(self, slots: np.ndarray) -> np.ndarray:
        """A per-slot I->E array as a dense [pre I, post E] array."""
        n_e = self.config.n_e
        dense = np.zeros((self.config.n_i, n_e + 1), dtype=slots.dtype)
        np.put_along_axis(dense, self._ei_post, slots, axis=1)
        return dense[:, :n_e].copy()

    # ------------------------------------------------------------- inspection

    @property
    def w_ee(self) -> np.ndarray:
        """Effective E->E weights, [post, pre] as in the equations (a copy)."""
        n_e = self.config.n_e
        w_out, _ = self._dense_out()
        return (w_out[:, :n_e] * self._scale[:n_e]).T.copy()

    def w_ee_from(self, pre: np.ndarray) -> np.ndarray:
        """`w_ee[:, pre]` (the weights out of the E units `pre`, [post, len(pre)]) without
        building the whole matrix: a recall reads a few columns per query."""
        n_e = self.config.n_e
        if self._ee_rows is None:
            return (self._w_out[pre, :n_e] * self._scale[:n_e]).T
        weights, _ = self._dense_rows(np.asarray(pre, dtype=np.intp))
        return (weights[:, :n_e] * self._scale[:n_e]).T

    @property
    def w_ei(self) -> np.ndarray:
        """Effective I->E weights, [post E, pre I] (a copy)."""
        return (self._dense_ei(self._ei_w) * self._scale_ei).T

    @property
    def w_ie(self) -> np.ndarray:
        """E->I weights, [post I, pre E] (a copy)."""
        return self._ie_w.T.copy()

    @property
    def ee_synapses(self) -> np.ndarray:
        """Which E->E synapses exist, bool [post, pre]."""
        _, gate_out = self._dense_out()
        return gate_out[:, : self.config.n_e].T.copy()

    @property
    def ei_synapses(self) -> np.ndarray:
        """Which I->E synapses exist, bool [post E, pre I]."""
        return self._dense_ei(np.ones_like(self._ei_w, dtype=bool)).T

    @property
    def thresholds_e(self) -> np.ndarray:
        return self._thresholds[: self.config.n_e].copy()

    @property
    def thresholds_i(self) -> np.ndarray:
        return self._thresholds[self.config.n_e :].copy()

    @property
    def x(self) -> np.ndarray:
        """The current E state x(t), bool (n_e,)."""
        return self._state[: self.config.n_e].copy()

    @property
    def y(self) -> np.ndarray:
        """The current I state y(t), bool (n_i,)."""
        return self._state[self.config.n_e :].copy()

    def stats(self) -> dict:
        """Rates over the last RATE_WINDOW steps and E->E weight statistics (JSON-able)."""
        cfg = self.config
        window = self._counts[: min(self.t, RATE_WINDOW)]
        rate_e = float(window[:, 0].mean() / cfg.n_e) if len(window) else 0.0
        rate_i = float(window[:, 1].mean() / cfg.n_i) if len(window) and cfg.n_i else 0.0
        n_e = cfg.n_e  # the existing synapses' weights, without dense copies (runs per turn)
        w_out, gate_out = self._dense_out()
        pre, post = np.divmod(np.flatnonzero(gate_out[:, :n_e].ravel()), n_e)
        weights = w_out[pre, post] * self._scale[post]
        clipped = np.clip(weights, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
        counts, _ = np.histogram(clipped, bins=HISTOGRAM_EDGES)
        return {
            "step": self.t,
            "rate_e": rate_e,
            "rate_i": rate_i,
            "synapses": int(weights.size),
            "mean_weight": float(weights.mean()) if weights.size else 0.0,
            "connection_fraction": weights.size / (cfg.n_e * (cfg.n_e - 1)),
            "weight_histogram": {"edges": HISTOGRAM_EDGES.tolist(), "counts": counts.tolist()},
        }

    def nbytes(self) -> int:
        """Bytes held by the network's state arrays (not the fixed E->I weights and I->E
        places it shares with other networks of its seed, see shared_constant)."""
        arrays = (
            self._w_out, self._gate_out, self._scales, self._ei_w, self._x_ext, self._sums,
            self._thresholds, self._state, self._counts, *(self._ee_rows or ()),
        )
        return sum(a.nbytes for a in arrays if a is not None)

    def save(self, path: str | os.PathLike) -> None:
        """Write the complete state to one versioned .npz, atomically (see storage)."""
        from webapp.sorn.storage import save_network  # storage builds on this module

        save_network(self, path)


def run_kernel(networks: Sequence[SORN], lengths: list[int], first_input: np.ndarray,
               starts: np.ndarray, units: np.ndarray, spikes: np.ndarray | None) -> list[int]:
    """One call of kernel.run_many, which `SORN.run` and sorn.together share: networks[j],
    all of one config and plasticity and each made ready (`kernel_ready`) for at least
    lengths[j] steps, runs lengths[j] steps from input entry first_input[j] of (starts,
    units) (see `_pack_inputs`), its spikes into the next lengths[j] rows of `spikes` (None:
    not recorded), unless a row fills up first. Returns the steps each ran."""
    from webapp.sorn.kernel import run_many

    first = networks[0]
    ran = np.empty(len(networks), np.intp)
    full = np.empty(len(networks), np.bool_)
    run_many(first.kernel_rules(), np.array([net.kernel_description() for net in networks]),
             first.noise_table, np.concatenate([net.draws_key for net in networks]),
             first.sigma, np.array([net.t for net in networks], np.int64),
             np.array([0, *accumulate(lengths)], np.intp), first_input, starts, units,
             first._no_spikes if spikes is None else spikes, spikes is not None, ran, full)
    steps_run = ran.tolist()
    for net, steps in zip(networks, steps_run, strict=True):
        net.t += steps
    for filled in full.nonzero()[0].tolist():  # a row has no free slot left for a synapse
        networks[filled]._grow_rows()
    return steps_run
