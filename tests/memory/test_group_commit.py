"""Group commit: stores of several users learned one by one, then written in one transaction
(`Memory.learn_for_store` + `commit_stores`), with the guarantees of a single store."""

from __future__ import annotations

import sqlite3
import textwrap

import numpy as np
import pytest

from tests.memory.conftest import acknowledged_until_killed, assert_same_network, network_state
from webapp.memory import Memory, MemoryInputError, Store, commit_stores, learn_stores, tokenize
from webapp.memory.store import NewEpisode

SNAPSHOT_STEPS = 150  # network steps between snapshots in these tests (kept short)
NOTES = {
    "ada": ["Ada keeps bees on the roof", "The bees made dark honey this year"],
    "bob": ["Bob repairs old radios", "A Grundig radio from 1958 came in today"],
    "cy": ["Cy swims in the lake every morning"],
}


def interleaved(memories: dict[str, Memory]) -> list[tuple[Memory, str]]:
    """Each user's notes in order, the users taking turns."""
    order = []
    for i in range(max(map(len, NOTES.values()))):
        order += [(memories[name], notes[i]) for name, notes in NOTES.items() if i < len(notes)]
    return order


def test_a_batch_of_several_users_matches_storing_one_by_one(open_memory, tmp_path):
    batched = {name: open_memory(name) for name in NOTES}
    order = interleaved(batched)
    ids = commit_stores([(memory, memory.learn_for_store(text)) for memory, text in order])

    assert len(set(ids)) == len(order)
    for (memory, text), episode_id in zip(order, ids, strict=True):
        assert memory.db.get_episodes(memory.user_id, [episode_id])[episode_id]["text"] == text
        assert memory.recall(text, k=1, method="lexical")[0].episode_id == episode_id
    for name, memory in batched.items():  # per-user order kept
        mine = [i for (owner, _), i in zip(order, ids, strict=True) if owner is memory]
        assert [e["text"] for e in memory.export()["episodes"]] == NOTES[name]
        assert mine == sorted(mine)

    alone = Store(tmp_path / "alone.db")
    for name, notes in NOTES.items():
        single = Memory(alone, alone.create_user(name, "hash"), tmp_path / "alone-networks")
        for text in notes:
            single.store(text)
        assert_same_network(batched[name], single)  # batching changes nothing it learns
        assert_same_network(batched[name], open_memory(name))  # and a restart neither
    alone.close()


def test_stores_learned_together_match_storing_one_by_one(open_memory, tmp_path):
    """prepare_store + learn_stores (the networks of several users stepped in one call,
    a user's own episodes in order) learn, trace and write what single stores do."""
    batched = {name: open_memory(name) for name in NOTES}
    order = interleaved(batched)
    prepared = [(memory, memory.prepare_store(text), None) for memory, text in order]
    learn_stores(prepared)
    ids = commit_stores([(memory, episode) for memory, episode, _ in prepared])

    alone = Store(tmp_path / "alone.db")
    for name, notes in NOTES.items():
        single = Memory(alone, alone.create_user(name, "hash"), tmp_path / "alone-networks")
        single_ids = [single.store(text) for text in notes]
        mine = [i for (owner, _), i in zip(order, ids, strict=True) if owner is batched[name]]
        traces = [alone.get_episodes(single.user_id, [i])[i]["trace"] for i in single_ids]
        assert [batched[name].db.get_episodes(batched[name].user_id, [i])[i]["trace"]
                for i in mine] == traces
        assert_same_network(batched[name], single)
    alone.close()


def test_learning_that_fails_midway_leaves_no_episode_learned_twice(open_memory):
    """A spike callback that raises (the worker's pipe broke) in the second round: nothing of
    the call waits for a commit and every network is back to its stored episodes, so
    storing the same episodes again learns each once."""
    ada, bob = open_memory("ada"), open_memory("bob")
    ada.store("Ada keeps bees on the roof")
    before = {m.user_id: [np.array(a, copy=True) for a in network_state(m)] for m in (ada, bob)}

    def broken_pipe(first_step, spikes):
        raise BrokenPipeError("the web process is gone")

    prepared = [(ada, ada.prepare_store("The bees made dark honey"), None),
                (bob, bob.prepare_store("Bob repairs old radios"), None),
                (ada, ada.prepare_store("Ada sold the honey"), broken_pipe)]
    with pytest.raises(BrokenPipeError):
        learn_stores(prepared)
    for memory in (ada, bob):
        assert memory._learned == []
        for left, right in zip(network_state(memory), before[memory.user_id], strict=True):
            assert np.array_equal(left, right)
    for memory, episode, _ in prepared:
        commit_stores([(memory, memory.learn_for_store(episode.text))])
    once = open_memory("cy")
    for text in ("Ada keeps bees on the roof", "The bees made dark honey", "Ada sold the honey"):
        once.store(text)
    assert_same_network(ada, once)


def test_a_snapshot_that_cannot_be_written_fails_no_store(open_memory, tmp_path):
    """The episodes are committed before the snapshot: a full or broken disk there must not
    turn the stores into errors (a worker would retry them and write them twice)."""
    ada = open_memory("ada", snapshot_steps=1)
    ada.store("Ada keeps bees on the roof")
    networks = tmp_path / "networks"
    networks.rename(tmp_path / "moved")
    networks.write_text("not a directory")  # every snapshot write now fails
    ids = commit_stores([(ada, ada.learn_for_store("The bees made dark honey"))])
    assert ids[0] > 0
    assert [e["text"] for e in ada.export()["episodes"]] == [
        "Ada keeps bees on the roof", "The bees made dark honey"]
    networks.unlink()
    (tmp_path / "moved").rename(networks)
    ada.store("Ada sold the honey")  # snapshots again, and the network is the stored one
    assert_same_network(ada, open_memory("ada"))


def test_a_refused_store_gets_its_own_error_and_the_others_are_stored(open_memory):
    ada, bob = open_memory("ada"), open_memory("bob")
    learned = [(ada, ada.learn_for_store("Ada keeps bees"))]
    steps = bob.network.net.t
    with pytest.raises(MemoryInputError):
        bob.learn_for_store("x" * 20_001)
    assert bob.network.net.t == steps  # refused before the network saw it
    learned.append((bob, bob.learn_for_store("Bob repairs radios")))
    commit_stores(learned)
    assert ada.stats()["episodes"] == bob.stats()["episodes"] == 1


def test_a_failed_commit_writes_nothing_and_restores_every_network(open_memory, store,
                                                                   tmp_path):
    ada, bob = open_memory("ada"), open_memory("bob")
    ada.store("Ada keeps bees on the roof")
    nobody = Memory(store, 999, tmp_path / "networks")  # no such user: the insert fails
    before = {m.user_id: [np.array(a, copy=True) for a in network_state(m)] for m in (ada, bob)}
    learned = [(ada, ada.learn_for_store("The bees made dark honey")),
               (nobody, nobody.learn_for_store("I do not exist")),
               (bob, bob.learn_for_store("Bob repairs old radios"))]
    assert ada.network.net.t > before[ada.user_id][0]
    with pytest.raises(sqlite3.IntegrityError):
        commit_stores(learned)
    for memory in (ada, bob):
        for left, right in zip(network_state(memory), before[memory.user_id], strict=True):
            assert np.array_equal(left, right)
    assert [e["text"] for e in ada.export()["episodes"]] == ["Ada keeps bees on the roof"]
    assert bob.stats()["episodes"] == 0
    assert bob.store("Bob repairs old radios") > 0  # and the memories work on


def test_external_ids_are_idempotent_within_a_batch_and_across_batches(open_memory):
    ada, bob = open_memory("ada"), open_memory("bob")
    first, again, bobs = commit_stores([
        (ada, ada.learn_for_store("Ada keeps bees", external_id="m1")),
        (ada, ada.learn_for_store("Ada keeps bees", external_id="m1")),  # a retry, same batch
        (bob, bob.learn_for_store("Bob keeps bees", external_id="m1")),  # another user's m1
    ])
    assert again == first != bobs
    assert ada.stats()["episodes"] == bob.stats()["episodes"] == 1
    reference = open_memory("ref")
    reference.store("Ada keeps bees")
    assert_same_network(ada, reference)  # learned once, as stored

    steps = ada.network.net.t
    (later,) = commit_stores([(ada, ada.learn_for_store("Ada keeps bees", external_id="m1"))])
    assert later == first and ada.network.net.t == steps  # not even learned


def test_an_external_id_stored_meanwhile_is_caught_inside_the_transaction(open_memory, store):
    ada = open_memory("ada")
    learned = ada.learn_for_store("Ada keeps bees", external_id="m1")
    # another writer (e.g. a worker being replaced) stores m1 between learning and commit
    (twin,) = store.add_episodes_many([(ada.user_id, NewEpisode(
        text="Ada keeps bees", tokens=tokenize("Ada keeps bees"), external_id="m1"))])
    assert commit_stores([(ada, learned)]) == [twin]
    assert learned.duplicate_of == twin and ada.stats()["episodes"] == 1
    reference = open_memory("ref")
    reference.store("Ada keeps bees")
    assert_same_network(ada, reference)  # the extra learning was undone


def test_a_batch_that_reaches_the_snapshot_snapshots_all_of_it(open_memory, tmp_path):
    ada = open_memory("ada", snapshot_steps=SNAPSHOT_STEPS)
    bob = open_memory("bob", snapshot_steps=SNAPSHOT_STEPS)
    for i in range(0, 40, 4):  # 4 steps per store: the 10th batch reaches 150
        commit_stores([(m, m.learn_for_store(f"{m.user_id} note {i + j}"))
                       for j in range(4) for m in (ada, bob)])
    assert len(list((tmp_path / "networks").glob("*.npz"))) == 2
    commit_stores([(ada, ada.learn_for_store("after the snapshot"))])
    for name, memory in (("ada", ada), ("bob", bob)):
        assert_same_network(memory, open_memory(name))


WRITER = textwrap.dedent("""
    import sys
    from webapp.memory import Memory, Store, commit_stores
    store = Store(sys.argv[1])
    memories = [Memory(store, store.create_user(name, "h"), sys.argv[2],
                       snapshot_steps=SNAPSHOT_STEPS)
                for name in ("ada", "bob", "cy")]
    batch = 0
    while True:
        learned = [(m, m.learn_for_store(f"batch {batch} item {i} about topic{batch % 13}"))
                   for i, m in enumerate(memories * 2)]
        ids = commit_stores(learned)
        print(batch, *ids, flush=True)
        batch += 1
""").replace("SNAPSHOT_STEPS", str(SNAPSHOT_STEPS))


def test_sigkill_mid_batch_keeps_every_acknowledged_batch_whole(tmp_path):
    database, networks = tmp_path / "m.db", tmp_path / "networks"
    # (batch, ids...) lines; killed past the first snapshots (each memory learns 2 stores
    # of 6 steps per batch: a snapshot every 13 batches)
    acknowledged = acknowledged_until_killed(WRITER, database, networks, 40)

    store = Store(database)
    users = [store.get_user(name)["id"] for name in ("ada", "bob", "cy")]
    stored = {e["id"]: e["text"] for u in users for e in store.iter_episodes(u)}
    for batch, *ids in acknowledged:
        assert [stored[i].split(" about")[0] for i in ids] == [
            f"batch {batch} item {i}" for i in range(6)]
    batches: dict[str, int] = {}
    for text in stored.values():
        batches[text.split(" item")[0]] = batches.get(text.split(" item")[0], 0) + 1
    assert set(batches.values()) == {6}  # no half batch, acknowledged or not
    for user in users:  # snapshot + replay gives exactly the network of a full replay
        restarted = Memory(store, user, networks)
        replayed = Memory(store, user, tmp_path / "no-snapshots")
        assert restarted.network.last_episode_id > 0
        assert_same_network(restarted, replayed)
    store.close()
