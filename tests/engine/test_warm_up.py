"""A worker pays its one-off start costs before serving, in a memory of its own."""

import tempfile

from webapp.engine.worker import warm_up


def test_warm_up_leaves_nothing_behind(tmp_path, monkeypatch):
    # A temporary directory of its own: other processes (engine workers of other tests, or
    # servers on the same machine) may be warming up in the shared one at the same time.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    warm_up()
    assert list(tmp_path.iterdir()) == []
