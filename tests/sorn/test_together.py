"""run_together: many networks in one compiled call give what running each alone gives."""

import copy
import pickle

import numpy as np
import pytest

from webapp.sorn import SORN, SORNConfig
from webapp.sorn.network import RENORMALIZE_EVERY
from webapp.sorn.together import pack, run_packed, run_together

SMALL = SORNConfig(n_e=60, n_i=15)


def random_inputs(rng: np.random.Generator, n_e: int, steps: int) -> list:
    return [rng.integers(0, n_e, 5) if rng.random() < 0.8 else None for _ in range(steps)]


def assert_same_network(a: SORN, b: SORN) -> None:
    assert a.t == b.t
    left, right = a.to_arrays(), b.to_arrays()
    for name in left.__dataclass_fields__:
        if isinstance(getattr(left, name), np.ndarray):
            np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)


def twins(count: int, rng: np.random.Generator, config: SORNConfig = SMALL):
    """Pairs of identical networks of different ages."""
    base = SORN(config, seed=3)
    pairs = []
    for _ in range(count):
        age = int(rng.integers(0, 2 * RENORMALIZE_EVERY))
        net = copy.deepcopy(base)
        net.run(age, record=False)
        pairs.append((net, copy.deepcopy(net)))
    return pairs


def test_runs_together_equal_runs_one_after_the_other():
    """Across exact renormalizations, with empty runs and rows that fill up, for many rounds."""
    rng = np.random.default_rng(0)
    pairs = twins(7, rng)
    for _ in range(60):
        inputs = [random_inputs(rng, SMALL.n_e, int(rng.integers(0, 40))) for _ in pairs]
        together = run_together([net for net, _ in pairs], inputs)
        for (_, alone), entries, spikes in zip(pairs, inputs, together, strict=True):
            np.testing.assert_array_equal(spikes, alone.run(entries))
    for net, alone in pairs:
        assert_same_network(net, alone)


def test_without_recording_the_networks_still_advance_alike():
    rng = np.random.default_rng(1)
    pairs = twins(3, rng)
    inputs = [random_inputs(rng, SMALL.n_e, 300) for _ in pairs]
    assert run_together([net for net, _ in pairs], inputs, record=False) == [None] * 3
    for (net, alone), entries in zip(pairs, inputs, strict=True):
        alone.run(entries, record=False)
        assert_same_network(net, alone)


def test_frozen_numpy_and_learning_networks_mix_in_one_call():
    """Each kind runs as it would alone: frozen ones learn nothing, numpy ones run in numpy."""
    rng = np.random.default_rng(2)
    (learning, learning_alone), (frozen, frozen_alone), (reference, reference_alone) = twins(
        3, rng)
    for net in (frozen, frozen_alone):
        net.plastic = False
    reference.backend = reference_alone.backend = "numpy"
    inputs = [random_inputs(rng, SMALL.n_e, 50) for _ in range(3)]
    together = run_together([learning, frozen, reference], inputs)
    for alone, entries, spikes in zip((learning_alone, frozen_alone, reference_alone), inputs,
                                      together, strict=True):
        np.testing.assert_array_equal(spikes, alone.run(entries))
    for net, alone in ((learning, learning_alone), (frozen, frozen_alone),
                       (reference, reference_alone)):
        assert_same_network(net, alone)


def test_a_network_that_replaced_its_arrays_is_found_again():
    """A numpy run in between hands E->E back to dense arrays and the next compiled run
    builds new rows: the batch must step the new arrays, not the ones it saw before."""
    rng = np.random.default_rng(3)
    pairs = twins(2, rng)
    for _ in range(3):
        inputs = [random_inputs(rng, SMALL.n_e, 20) for _ in pairs]
        run_together([net for net, _ in pairs], inputs)
        for (net, alone), entries in zip(pairs, inputs, strict=True):
            alone.run(entries)
            net.backend = alone.backend = "numpy"
            net.run(entries[:3])
            alone.run(entries[:3])
            net.backend = alone.backend = "numba"
    for net, alone in pairs:
        assert_same_network(net, alone)


def test_the_kernels_table_of_a_network_follows_the_arrays_it_holds():
    """The table the kernel finds a network's arrays through is kept per network: after its
    rows are built, after a numpy run took them back, and for a frozen copy (its own state
    and rate counts, the rest shared) it gives the arrays the network holds now."""
    def addresses(net: SORN) -> list[int]:
        return [array.__array_interface__["data"][0] for array in net.kernel_arrays()]

    def described(net: SORN) -> list[int]:
        return net.kernel_description()[0::3].tolist()

    net = SORN(SMALL, seed=4, backend="numba")
    net.run(5)
    assert described(net) == addresses(net)
    net.backend = "numpy"
    net.run(5)
    net.backend = "numba"
    assert described(net) == addresses(net)
    frozen = net.frozen_copy()
    assert described(frozen) == addresses(frozen)
    assert described(frozen) != described(net) == addresses(net)


def test_packed_inputs_give_back_their_entries_and_run_as_they_do():
    """What a caller packing its inputs itself hands over: each run's entries (an empty
    entry is no input), one array for the units of all."""
    rng = np.random.default_rng(10)
    pairs = twins(3, rng)
    inputs = [random_inputs(rng, SMALL.n_e, steps) for steps in (12, 0, 30)]
    inputs[0][3] = []
    packed = pack([net for net, _ in pairs], inputs)
    for run, entries in enumerate(inputs):
        unpacked = packed.entries(run)
        assert [units is None for units in unpacked] == [
            entry is None or len(entry) == 0 for entry in entries]
        for units, entry in zip(unpacked, entries, strict=True):
            if units is not None:
                np.testing.assert_array_equal(units, entry)
    together = run_packed([net for net, _ in pairs], packed)
    for (net, alone), entries, spikes in zip(pairs, inputs, together, strict=True):
        np.testing.assert_array_equal(spikes, alone.run(entries))
        assert_same_network(net, alone)
    with pytest.raises(ValueError, match="one run of inputs per network"):
        run_packed([net for net, _ in pairs[:2]], packed)


def test_a_network_may_run_only_once_per_call():
    net = SORN(SMALL, seed=0)
    with pytest.raises(ValueError, match="only once"):
        run_together([net, net], [[None], [None]])


def test_bad_input_units_are_refused_before_any_network_moves():
    rng = np.random.default_rng(4)
    (first, _), (second, _) = twins(2, rng)
    steps = first.t, second.t
    with pytest.raises(ValueError, match="input units"):
        run_together([first, second], [[[1, 2]], [[SMALL.n_e]]])
    assert (first.t, second.t) == steps


def test_arrays_of_other_dtypes_or_layouts_are_taken_in_as_the_kernel_reads_them():
    """A researcher's arrays (float32 weights, Fortran-order counts) run compiled exactly as
    in numpy: the kernel reads raw memory, so the network holds the kernel's types."""
    arrays = SORN(SMALL, seed=5).to_arrays()
    arrays.ei_weights = arrays.ei_weights.astype(np.float32)
    arrays.rate_counts = np.asfortranarray(arrays.rate_counts)
    compiled = SORN.from_arrays(arrays, backend="numba")
    reference = SORN.from_arrays(arrays, backend="numpy")
    inputs = random_inputs(np.random.default_rng(6), SMALL.n_e, 300)
    np.testing.assert_array_equal(compiled.run(inputs), reference.run(inputs))
    assert_same_network(compiled, reference)


def test_a_pickled_network_continues_exactly_like_the_original():
    """Its twin's arrays live elsewhere: no table of the original's addresses travels."""
    net = SORN(SMALL, seed=7)
    net.run(random_inputs(np.random.default_rng(8), SMALL.n_e, 50))  # rows and table built
    twin = pickle.loads(pickle.dumps(net))
    inputs = random_inputs(np.random.default_rng(9), SMALL.n_e, 300)
    np.testing.assert_array_equal(twin.run(inputs), net.run(inputs))
    assert_same_network(twin, net)
