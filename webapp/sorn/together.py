"""Many networks advanced in one compiled call: how an engine worker steps its users.

A stored chat message is a short run (~8 steps) on one user's network. Run one by one,
each run pays ~20 us of Python and numba's argument checks around ~100 us of kernel work;
`run_together` hands the runs of many networks to one call of `kernel.run_many`, which
loops over them, with the same spikes and states as calling `SORN.run` on each in turn.

The kernel finds each network's arrays through a table with a row per network of
(address, rows, columns) per array (`SORN.kernel_description`), valid as the networks
hold their arrays during the call. (numba's typed lists would do the same more safely,
but compile their methods in every new process: seconds at each worker start.) A run
stops where the network's exact renormalization is due or a row fills up; the rest runs
through `SORN.run`. Networks on the numpy backend simply run one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from webapp.sorn.network import SORN, Units


def run_together(networks: Sequence[SORN], inputs: Sequence[Sequence[Units]],
                 record: bool = True) -> list[np.ndarray | None]:
    """Advance networks[i] by inputs[i] (see SORN.run) for every i; returns each one's
    spikes (or None when not `record`). The same as running them one after the other, for
    networks that share no state: a network may appear only once, and not with a frozen
    copy of itself (which reads the weights it changes). On bad input it raises; some of
    the networks may have moved by then (the memory layer reopens them from disk)."""
    if len(networks) != len(inputs):
        raise ValueError("one list of inputs per network")
    if len({id(net) for net in networks}) != len(networks):
        raise ValueError("a network may run only once in a call")
    results: list[np.ndarray | None] = [None] * len(networks)
    groups: dict[tuple, list[int]] = {}  # networks that one kernel call can step together
    for index, net in enumerate(networks):
        if net.backend == "numba" and len(inputs[index]):
            groups.setdefault((net.config, net.plastic), []).append(index)
        else:
            results[index] = net.run(inputs[index], record)
    for members in groups.values():
        if len(members) == 1:  # SORN.run's own path: less to set up for one network
            results[members[0]] = networks[members[0]].run(inputs[members[0]], record)
            continue
        ran = _run_group([networks[i] for i in members], [list(inputs[i]) for i in members],
                         record)
        for index, spikes in zip(members, ran, strict=True):
            results[index] = spikes
    return results


def _run_group(networks: list[SORN], inputs: list[list[Units]],
               record: bool) -> list[np.ndarray | None]:
    """Networks of one config and plasticity: one kernel call, then whatever is left."""
    from webapp.sorn.kernel import run_many

    first = networks[0]
    starts, units = first._pack_inputs([entry for entries in inputs for entry in entries])
    lengths = np.empty(len(networks), np.intp)
    for index, (net, entries) in enumerate(zip(networks, inputs, strict=True)):
        net._build_ee_rows()  # slot rows built before a renormalization that may be due
        net.renormalize_if_due()  # before the kernel reads the arrays
        lengths[index] = min(len(entries), net.steps_until_renormalization())
    described = np.stack([net.kernel_description() for net in networks])
    first_input = np.cumsum([0] + [len(entries) for entries in inputs[:-1]])
    step_ptr = np.concatenate([[0], np.cumsum(lengths)])
    n_t = first.config.n_e + first.config.n_i
    spikes = np.empty((step_ptr[-1] if record else 0, n_t), dtype=bool)
    ran = np.empty(len(networks), np.intp)
    full = np.empty(len(networks), np.bool_)
    run_many(first.kernel_rules(), described, first.noise_table,
             np.concatenate([net.draws_key for net in networks]), first.sigma,
             np.array([net.t for net in networks], np.int64), step_ptr, first_input, starts,
             units, spikes, record, ran, full)
    results: list[np.ndarray | None] = []
    for index, (net, entries) in enumerate(zip(networks, inputs, strict=True)):
        net.kernel_ran(ran[index], full[index])
        mine = spikes[step_ptr[index] : step_ptr[index] + ran[index]] if record else None
        if ran[index] < len(entries):  # a renormalization is due or a row filled: the rest alone
            rest = net.run(entries[ran[index]:], record)
            mine = np.concatenate([mine, rest]) if record else None
        results.append(mine)
    return results
