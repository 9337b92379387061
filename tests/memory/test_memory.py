"""Memory: store -> recall -> delete -> export -> import, isolation, restart, bad input."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.memory.conftest import assert_same_network
from webapp.memory import METHODS, Memory, MemoryInputError

DIARY = [
    "I went hiking in the Alps with my sister Lena",
    "My dog Rex is a very lazy beagle",
    "We adopted Rex from the shelter in 2021",
    "Pizza with olives is my favourite food",
    "Lena is studying marine biology in Kiel",
    "我喜欢吃北京烤鸭",
    "Мы ездили в Москву зимой",
]


def fill(memory: Memory) -> list[int]:
    return [memory.store(text, timestamp=1000.0 + i, external_id=f"d{i}")
            for i, text in enumerate(DIARY)]


def texts(hits) -> list[str]:
    return [hit.text for hit in hits]


def test_recall_ranks_the_matching_episode_first_and_explains_why(open_memory):
    memory = open_memory()
    fill(memory)
    for method in ("lexical", "hybrid"):
        hits = memory.recall("When did we adopt Rex?", k=3, method=method)
        assert hits[0].text == "We adopted Rex from the shelter in 2021", method
        assert hits[0].score > 0 and hits[0].external_id == "d2"
        assert dict(hits[0].matched)["adopt"] > dict(hits[0].matched)["rex"] > 0
    sorn_hits = memory.recall("When did we adopt Rex?", method="sorn")
    assert {h.external_id for h in sorn_hits} == {"d1", "d2"}  # the episodes with a match
    assert texts(memory.recall("北京烤鸭", k=1)) == ["我喜欢吃北京烤鸭"]
    assert texts(memory.recall("москву", k=1)) == ["Мы ездили в Москву зимой"]
    assert memory.recall("quantum chromodynamics") == []
    assert memory.query_tokens("Hiking with Lena!") == ["hike", "lena"]


def test_delete_export_import_round_trip_gives_the_same_memory(open_memory):
    memory = open_memory("ada")
    ids = fill(memory)
    assert memory.delete(ids[1]) is True and memory.delete(ids[1]) is False
    assert "beagle" not in " ".join(texts(memory.recall("lazy beagle dog")))
    assert memory.recall("Lena", method="lexical")
    exported = memory.export()
    assert sum(e["recall_count"] for e in exported["episodes"]) > 0
    copy = open_memory("bob")
    assert copy.import_(exported) == {"imported": len(DIARY) - 1, "skipped": 0}
    again = copy.export()
    strip = [{k: v for k, v in e.items() if k != "id"} for e in exported["episodes"]]
    assert [{k: v for k, v in e.items() if k != "id"} for e in again["episodes"]] == strip
    for query in ("hiking with Lena", "favourite food", "shelter 2021"):
        original = memory.recall(query, method="lexical")
        imported = copy.recall(query, method="lexical")
        assert texts(original) == texts(imported)
        assert [h.score for h in original] == pytest.approx([h.score for h in imported])


def test_two_users_in_one_database_never_see_each_other(open_memory):
    ada, bob = open_memory("ada"), open_memory("bob")
    ada_ids = fill(ada)
    bob.store("Bob's only memory: chess openings")
    for method in METHODS:
        assert bob.recall("hiking Lena dog pizza", method=method) == []
        assert texts(bob.recall("chess", method=method)) == ["Bob's only memory: chess openings"]
    assert all(bob.delete(i) is False for i in ada_ids)
    assert len(bob.export()["episodes"]) == 1
    assert len(ada.export()["episodes"]) == len(DIARY)
    assert texts(ada.recall("hiking", k=1)) == [DIARY[0]]


@pytest.mark.parametrize("snapshot_midway", [False, True])
def test_restart_restores_the_same_network_and_recall(open_memory, snapshot_midway):
    memory = open_memory()
    fill(memory)
    if snapshot_midway:
        memory.save()
        memory.store("After the snapshot: Lena moved to Hamburg")
    before = {m: memory.recall("Lena hiking Hamburg", method=m) for m in METHODS}
    reopened = open_memory()
    assert_same_network(memory, reopened)
    for method, hits in before.items():
        again = reopened.recall("Lena hiking Hamburg", method=method)
        assert texts(again) == texts(hits)
        assert [h.sorn_score for h in again] == pytest.approx([h.sorn_score for h in hits])


def test_snapshots_follow_each_users_own_learning(open_memory, tmp_path):
    """Episode ids are shared by all users: interleaved users must not snapshot early."""
    ada = open_memory("ada", snapshot_steps=100)
    bob = open_memory("bob", snapshot_steps=100)
    for i in range(24):
        ada.store(f"ada note {i}")
        bob.store(f"bob note {i}")
    assert ada.network.net.t == 96  # 3 tokens and a settle step per note
    assert not list((tmp_path / "networks").glob("*.npz"))
    ada.store("ada's last note before the snapshot")
    assert [p.name.split("-")[0] for p in (tmp_path / "networks").glob("*.npz")] == [
        f"user{ada.user_id}"
    ]


def test_storing_again_with_the_same_external_id_keeps_one_episode(open_memory):
    memory = open_memory()
    first = memory.store("Lena moved to Hamburg", external_id="message:42")
    steps = memory.network.net.t
    again = memory.store("Lena moved to Hamburg", external_id="message:42")
    assert again == first
    assert memory.network.net.t == steps  # not learned twice either
    assert memory.stats()["episodes"] == 1


def test_an_import_adds_only_what_the_memory_does_not_hold_yet(open_memory):
    memory = open_memory()
    memory.store("Lena moved to Hamburg", external_id="message:42")
    memory.store("Rex is a lazy beagle", timestamp=1000.0)  # no external id
    backup = memory.export()
    steps = memory.network.net.t
    assert memory.import_(backup) == {"imported": 0, "skipped": 2}  # a backup read back
    assert memory.network.net.t == steps  # nothing learned twice either
    copy = open_memory("bob")
    assert copy.import_(backup) == {"imported": 2, "skipped": 0}
    assert copy.import_(copy.export()) == {"imported": 0, "skipped": 2}
    assert copy.import_(backup)["imported"] == 1  # the episode without an external id: its
    # export id names one of ada's episodes, not bob's, so bob cannot tell it is his copy


def test_an_import_stores_an_episode_repeated_in_its_file_once(open_memory):
    memory = open_memory()
    lena = {"text": "Lena moved to Hamburg", "timestamp": 5.0}
    rex = {"text": "Rex is a beagle", "timestamp": 6.0, "external_id": "m1"}
    export = {**memory.export(), "episodes": [
        lena, {**lena, "role": "assistant"},  # the same text at the same time
        rex, {**rex, "text": "Rex is a lazy beagle"},  # the same external id
        {**lena, "timestamp": 7.0}]}  # the same text later: another episode
    assert memory.import_(export) == {"imported": 3, "skipped": 2}
    assert [(e["text"], e["timestamp"]) for e in memory.export()["episodes"]] == [
        ("Lena moved to Hamburg", 5.0), ("Rex is a beagle", 6.0), ("Lena moved to Hamburg", 7.0)]


def test_an_import_does_not_take_another_episode_with_the_same_id_for_its_own(open_memory):
    memory = open_memory()
    (episode_id,) = [memory.store("Lena moved to Hamburg", timestamp=5.0)]
    other = {"id": episode_id, "text": "Lena moved to Kiel", "timestamp": 5.0}
    export = {**memory.export(), "episodes": [other]}
    assert memory.import_(export) == {"imported": 1, "skipped": 0}


def test_a_damaged_snapshot_falls_back_to_replay(open_memory, tmp_path):
    memory = open_memory()
    fill(memory)
    memory.save()
    for path in (tmp_path / "networks").glob("*.npz"):
        path.write_bytes(b"not a network")
    reopened = open_memory()
    assert_same_network(memory, reopened)


def test_storing_drives_the_network_and_streams_spikes(open_memory):
    memory = open_memory()
    calls = []
    before = memory.network.net.t
    memory.store("spikes please", on_spikes=lambda first, spikes: calls.append((first, spikes)))
    (first, spikes), = calls
    assert first == before and spikes.dtype == bool
    assert spikes.shape == (memory.network.net.t - before, 375) and spikes.any()
    recall_calls = []
    memory.recall("spikes", on_spikes=lambda first, s: recall_calls.append(first))
    assert recall_calls == [memory.network.net.t]  # recall ran on a frozen copy
    assert memory.stats()["episodes"] == 1


@pytest.mark.parametrize("bad", ["", "   \n", "x" * 20_001, b"\xff\xfe", "lone \udc80"])
def test_bad_input_is_refused_and_harms_nothing(open_memory, bad):
    memory = open_memory()
    fill(memory)
    before = (memory.export()["episodes"], memory.network.net.t)
    with pytest.raises(MemoryInputError):
        memory.store(bad)
    with pytest.raises(MemoryInputError):
        memory.recall(bad)
    assert (memory.export()["episodes"], memory.network.net.t) == before
    with pytest.raises(MemoryInputError):
        memory.import_({"format": "something else"})
    with pytest.raises(ValueError):
        memory.recall("ok", method="telepathy")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=4))
def test_any_unicode_text_is_stored_and_recalled_or_refused(open_memory, samples):
    memory = open_memory("prop")
    for sample in samples:
        try:
            episode_id = memory.store(sample)
        except MemoryInputError:
            assert not sample.strip() or any(0xD800 <= ord(c) < 0xE000 for c in sample) or \
                not "".join(c for c in sample if c.isprintable() or c.isspace()).strip()
            continue
        tokens = memory.query_tokens(sample)
        hits = memory.recall(sample, k=50)
        assert (episode_id in [h.episode_id for h in hits]) == bool(tokens)


def test_consolidation_fades_with_time_rehearses_recalled_episodes_and_replays(open_memory):
    memory = open_memory()
    ids = fill(memory)
    first = memory.consolidate(max_steps=10, now=1_000_000.0)  # starts the forgetting clock
    assert first["faded"] == 0 and first["rehearsed"] == 0
    memory.recall("marine biology", k=1)
    before_steps = memory.network.net.t
    report = memory.consolidate(max_steps=50, now=1_000_000.0 + 30 * 86400)  # a half-life
    assert report["faded"] == len(DIARY) and report["rehearsed"] == 1
    assert report["replayed"] > 0 and 0 < report["steps"] <= 50 + 30
    assert memory.network.net.t == before_steps + report["steps"]
    importance = {e["text"]: e["importance"]
                  for e in memory.db.get_episodes(memory.user_id, ids).values()}
    assert importance.pop(DIARY[4]) == pytest.approx(0.25 + 0.1)  # faded, then rehearsed
    assert list(importance.values()) == pytest.approx([0.25] * (len(DIARY) - 1))
    assert memory.consolidate(now=1_000_000.0 + 30 * 86400 + 60)["faded"] == 0  # too soon
    # Forgetting lowers rank but removes nothing; the network snapshot includes the replay.
    assert len(memory.export()["episodes"]) == len(DIARY)
    assert_same_network(memory, open_memory())


def test_forgotten_episodes_rank_below_equally_matching_fresh_ones(open_memory):
    memory = open_memory()
    old = memory.store("the blue bicycle in the garage", importance=0.1)
    fresh = memory.store("the blue bicycle in the garage", importance=0.9)
    assert [h.episode_id for h in memory.recall("blue bicycle", method="lexical")][:2] == \
        [fresh, old]


def test_recall_explains_lexical_matches_context_and_network(open_memory):
    memory = open_memory()
    memory.store("Do you play any instrument?")
    memory.store("Yes, the violin since I was six")
    memory.store("Unrelated: the weather is grey")
    hits = memory.recall("Which instrument do you play?", method="hybrid")
    by_text = {h.text: h for h in hits}
    answer = by_text["Yes, the violin since I was six"]
    assert answer.matched == [] and answer.context > 0  # found through its neighbour
    question = by_text["Do you play any instrument?"]
    assert [t for t, _ in question.matched] == ["instrument", "play"]
    assert all(weight > 0 for _, weight in question.associated)
    assert any(h.sorn_score != 0 for h in hits)
    assert set(hits[0].to_dict()) >= {"episode_id", "text", "score", "sorn_score", "matched",
                                      "associated", "role", "timestamp", "context"}


def test_the_network_learns_associations_that_a_static_network_lacks(store, tmp_path):
    learner = Memory(store, store.create_user("learner", "h"), tmp_path / "a")
    frozen = Memory(store, store.create_user("frozen", "h"), tmp_path / "b", plastic=False)
    for memory in (learner, frozen):
        for i in range(40):
            memory.store(f"espresso crema {i}")
    encoder = learner.network.encoder
    drive = learner.network.learned_drive(["espresso"])
    successor = drive[np.setdiff1d(encoder.units("crema"), encoder.units("espresso"))].mean()
    assert successor > 3 * abs(drive).mean()
    assert not frozen.network.learned_drive(["espresso"]).any()
    hits = learner.recall("espresso", k=1)
    assert hits[0].associated and hits[0].associated[0][0] == "crema"


@pytest.mark.parametrize("broken", [
    {"text": "ok", "timestamp": "yesterday"},
    {"text": "ok", "importance": 7},
    {"text": "ok", "recall_count": "many"},
    {"text": "ok", "recall_count": 10**30},
    {"text": "ok", "recall_count": -1},
    {"text": "ok", "timestamp": 10**400},
    {"text": "ok", "external_id": 12},
    {"text": "   "},
    {"no text": True},
])
def test_import_refuses_a_broken_export_as_a_whole(open_memory, broken):
    memory = open_memory()
    fill(memory)
    good = {"text": "a fine episode"}
    export = {"format": "sornmemory.memory", "version": 1, "episodes": [good, broken]}
    with pytest.raises(MemoryInputError):
        memory.import_(export)
    assert len(memory.export()["episodes"]) == len(DIARY)
