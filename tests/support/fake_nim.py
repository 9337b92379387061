"""FakeNIM for tests: it lives in webapp.bench.fake_nim because `sornmemory loadtest` uses it
at run time; this module keeps the tests' import path."""

from webapp.bench.fake_nim import MODES, FakeNIM

__all__ = ["FakeNIM", "MODES"]
