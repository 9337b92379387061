"""A FakeNIM per test and a client tuned for fast tests (short timeouts, tiny backoff)."""

import pytest

from tests.support.fake_nim import FakeNIM
from webapp.llm import NIMClient, Prompt, RetryPolicy

FAKE_KEY = "nvapi-TEST-SECRET-KEY-0123456789"


@pytest.fixture
def nim():
    with FakeNIM() as server:
        yield server


@pytest.fixture
def client(nim):
    return NIMClient(
        base_url=nim.base_url,
        model="meta/llama-3.1-8b-instruct",
        api_key=FAKE_KEY,
        connect_timeout=2.0,
        read_timeout=2.0,
        retry=RetryPolicy(max_retries=2, base_backoff=0.01, max_backoff=0.05, max_retry_after=2),
    )


@pytest.fixture
def prompt():
    return Prompt(
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What do I like doing at weekends?"},
        ]
    )
