"""A worker pays its one-off start costs before serving, in a memory of its own."""

import glob
import tempfile

from webapp.engine.worker import warm_up


def test_warm_up_leaves_nothing_behind():
    before = set(glob.glob(f"{tempfile.gettempdir()}/sornmemory-warm-up-*"))
    warm_up()
    assert set(glob.glob(f"{tempfile.gettempdir()}/sornmemory-warm-up-*")) == before
