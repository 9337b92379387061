"""Many networks advanced in one compiled call: how an engine worker steps its users.

A stored chat message is a short run (~8 steps) on one user's network. Run one by one,
each run pays Python and numba's argument checks around ~55 us of kernel work;
`run_together` hands the runs of many networks to one call of `kernel.run_many`, which
loops over them, with the same spikes and states as calling `SORN.run` on each in turn.
The inputs of all runs are packed into one array first (`PackedInputs`); a caller that
builds them from units known to be valid (the memory layer, from its token encoder)
packs them itself and calls `run_packed`, with no check per step.

The kernel finds each network's arrays through a table with a row per network of
(address, rows, columns) per array (`SORN.kernel_description`), valid as the networks
hold their arrays during the call. (numba's typed lists would do the same more safely,
but compile their methods in every new process: seconds at each worker start.) A run
stops where the network's exact renormalization is due or a row fills up; the rest runs
alone (`SORN._run_compiled`). Networks on the numpy backend simply run one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from webapp.sorn.network import SORN, Units, run_kernel


@dataclass(frozen=True)
class PackedInputs:
    """The input entries of several runs as the kernel reads them: run j's entries are
    first[j] .. first[j + 1] - 1, and entry k drives the E units units[starts[k]:starts[k + 1]]
    (none when that is empty). All three are intp; `units` is a fresh, writable array (numba
    would compile again for a read-only one) whose units lie in [0, n_e) of the network
    that runs them: `pack` checks that, a caller packing them itself vouches for it."""

    first: np.ndarray
    starts: np.ndarray
    units: np.ndarray

    def entries(self, run: int) -> list[np.ndarray | None]:
        """Run `run`'s entries as `SORN.run` takes them."""
        starts = self.starts[self.first[run] : self.first[run + 1] + 1].tolist()
        return [self.units[start:end] if end > start else None
                for start, end in zip(starts, starts[1:], strict=False)]


def pack(networks: Sequence[SORN], inputs: Sequence[Sequence[Units]]) -> PackedInputs:
    """inputs[i], entries for networks[i] (see SORN.run), each checked for its network and
    all packed together."""
    if len(networks) != len(inputs):
        raise ValueError("one list of inputs per network")
    first, starts, units, offset = [0], [], [], 0
    for net, entries in zip(networks, inputs, strict=True):
        run_starts, run_units = net._pack_inputs(list(entries))
        first.append(first[-1] + run_starts.size - 1)
        starts.append(run_starts[:-1] + offset)
        units.append(run_units)
        offset += run_units.size
    return PackedInputs(first=np.array(first, np.intp),
                        starts=np.concatenate([*starts, [offset]], dtype=np.intp),
                        units=np.concatenate([*units, np.empty(0, np.intp)]))


def run_together(networks: Sequence[SORN], inputs: Sequence[Sequence[Units]],
                 record: bool = True) -> list[np.ndarray | None]:
    """Advance networks[i] by inputs[i] (see SORN.run) for every i; returns each one's
    spikes (or None when not `record`). The same as running them one after the other, for
    networks that share no state: a network may appear only once, and not with a frozen
    copy of itself (which reads the weights it changes). Bad input raises before any
    network moves."""
    return run_packed(networks, pack(networks, inputs), record)


def run_packed(networks: Sequence[SORN], inputs: PackedInputs,
               record: bool = True) -> list[np.ndarray | None]:
    """`run_together` for inputs packed already: networks[i] runs run i of `inputs`. If a
    network fails, some of the others may have moved (the memory layer reopens them)."""
    first = inputs.first.tolist()  # each run's first entry, and the end
    if len(networks) + 1 != len(first):
        raise ValueError("one run of inputs per network")
    if first[-1] + 1 != inputs.starts.size or inputs.starts[-1] != inputs.units.size:
        # The kernel would read past them.
        raise ValueError("the packed entries and units do not match")
    if len({id(net) for net in networks}) != len(networks):
        raise ValueError("a network may run only once in a call")
    results: list[np.ndarray | None] = [None] * len(networks)
    groups: dict[tuple, list[int]] = {}  # networks that one kernel call can step together
    # The same groups by the config's id: hashing a config (a dataclass) costs more.
    by_id: dict[tuple[int, bool], list[int]] = {}
    for index, net in enumerate(networks):
        if net.backend == "numba" and first[index + 1] > first[index]:
            members = by_id.get((id(net.config), net.plastic))
            if members is None:
                members = by_id[id(net.config), net.plastic] = groups.setdefault(
                    (net.config, net.plastic), [])
            members.append(index)
        else:
            results[index] = net.run(inputs.entries(index), record)
    for members in groups.values():
        ran = _run_group([networks[i] for i in members], [first[i] for i in members],
                         [first[i + 1] - first[i] for i in members], inputs, record)
        for index, spikes in zip(members, ran, strict=True):
            results[index] = spikes
    return results


def _run_group(networks: list[SORN], first_entries: list[int], wanted: list[int],
               inputs: PackedInputs, record: bool) -> list[np.ndarray | None]:
    """networks[j] runs wanted[j] entries of `inputs` from first_entries[j], all of one
    config and plasticity: one kernel call, then whatever is left of each run alone."""
    lengths = [min(length, net.kernel_ready()) for net, length in zip(networks, wanted,
                                                                        strict=True)]
    n_total = networks[0].config.n_e + networks[0].config.n_i
    spikes = np.empty((sum(lengths), n_total), dtype=bool) if record else None
    ran = run_kernel(networks, lengths, np.array(first_entries, np.intp), inputs.starts,
                     inputs.units, spikes)
    ends = list(accumulate(lengths))
    results = ([spikes[start:end] for start, end in zip([0, *ends], ends, strict=False)]
               if record else [None] * len(networks))
    if ran == wanted:  # the usual case: every run done in the one call
        return results
    for j, (entry, length, steps) in enumerate(zip(first_entries, wanted, ran, strict=True)):
        if steps < length:  # a renormalization is due or a row filled: the rest alone
            rest = np.empty((length - steps, n_total), dtype=bool) if record else None
            networks[j]._run_compiled(inputs.starts[entry + steps : entry + length + 1],
                                      inputs.units, rest)
            if record:
                results[j] = np.concatenate([results[j][:steps], rest])
    return results
