"""make_client picks the client from the environment (DESIGN.md §4)."""

import pytest

from webapp.llm import NIMClient, OfflineResponder, make_client


def test_without_key_or_base_url_the_app_runs_offline():
    assert isinstance(make_client({}), OfflineResponder)


def test_a_key_selects_nvidia_nim_with_the_default_model():
    client = make_client({"NVIDIA_API_KEY": "nvapi-x"})
    assert isinstance(client, NIMClient)
    assert client.base_url == "https://integrate.api.nvidia.com/v1"
    assert client.model == "meta/llama-3.1-8b-instruct"


def test_a_base_url_alone_selects_a_keyless_openai_compatible_server():
    env = {
        "NIM_BASE_URL": "http://localhost:11434/v1",
        "NIM_MODEL": "llama3.1",
        "NIM_READ_TIMEOUT": "120",
        "NIM_REPLY_TIMEOUT": "900",
    }
    client = make_client(env)
    assert (client.base_url, client.model, client.read_timeout, client.reply_timeout) == (
        "http://localhost:11434/v1",
        "llama3.1",
        120.0,
        900.0,
    )
    assert "api_key=none" in repr(client)


def test_sornmemory_llm_overrides_the_default():
    assert isinstance(
        make_client({"NVIDIA_API_KEY": "k", "SORNMEMORY_LLM": "offline"}), OfflineResponder
    )
    assert isinstance(make_client({"SORNMEMORY_LLM": "nim"}), NIMClient)


@pytest.mark.parametrize(
    "env", [{"SORNMEMORY_LLM": "gpt"}, {"NIM_BASE_URL": "http://x/v1", "NIM_READ_TIMEOUT": "-1"}]
)
def test_invalid_settings_are_refused_with_the_variable_named(env):
    with pytest.raises(ValueError, match="SORNMEMORY_LLM|NIM_READ_TIMEOUT"):
        make_client(env)
