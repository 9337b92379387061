"""A process killed with SIGKILL while storing loses no episode whose store returned."""

import textwrap

from tests.memory.conftest import acknowledged_until_killed
from webapp.memory import Memory, Store

WRITER = textwrap.dedent("""
    import sys
    from webapp.memory import Memory, Store
    store = Store(sys.argv[1])
    user = store.create_user("ada", "h")
    memory = Memory(store, user, sys.argv[2])
    i = 0
    while True:
        episode_id = memory.store(f"episode number {i} about topic{i % 17}")
        print(episode_id, i, flush=True)
        i += 1
""")


def test_sigkill_during_stores_loses_no_acknowledged_episode(tmp_path):
    database, networks = tmp_path / "m.db", tmp_path / "networks"
    # (episode id, i) lines; killed past the first automatic snapshot
    acknowledged = acknowledged_until_killed(WRITER, database, networks, 250)

    store = Store(database)
    user = store.get_user("ada")["id"]
    episodes = store.get_episodes(user, [episode_id for episode_id, _ in acknowledged])
    for episode_id, i in acknowledged:
        assert episodes[episode_id]["text"] == f"episode number {i} about topic{i % 17}"
    memory = Memory(store, user, networks)
    assert memory.network.net.t > 0
    last_id, last_i = acknowledged[-1]
    hits = memory.recall(f"number {last_i}", k=3, method="lexical")
    assert last_id in [hit.episode_id for hit in hits]
    store.close()
