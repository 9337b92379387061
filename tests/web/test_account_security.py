"""Deployment safeguards for accounts: a `Secure` session cookie for HTTPS, and a limit on
how many accounts one address may register (sign-up may be open to anyone)."""

from __future__ import annotations

import pytest
import requests

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import PASSWORD, start_server, stop_server
from webapp.web.config import ConfigError, load_settings


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """A server configured as for HTTPS, with the default sign-up limit."""
    with FakeNIM() as nim:
        server = start_server(tmp_path_factory.mktemp("https"), nim,
                              SORNMEMORY_SECURE_COOKIES="1", SORNMEMORY_SIGNUPS_PER_HOUR="10")
        yield server
        stop_server(server)


signed_up: dict[str, int] = {}  # accounts this module made, per server


def sign_up(url: str, username: str) -> requests.Response:
    response = requests.post(f"{url}/api/auth/register",
                             json={"username": username, "password": PASSWORD}, timeout=10)
    signed_up[url] = signed_up.get(url, 0) + (response.status_code == 201)
    return response


def test_the_session_cookie_is_secure_only_when_configured(https_server, live_server):
    secure = sign_up(https_server.url, "https-user").headers["Set-Cookie"]
    plain = sign_up(live_server.url, "http-user").headers["Set-Cookie"]
    assert secure.startswith("sornmemory_session=") and plain.startswith("sornmemory_session=")
    assert "Secure" in [part.strip() for part in secure.split(";")]
    assert "secure" not in plain.lower()
    assert "HttpOnly" in secure and "SameSite=Lax" in secure


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("On", True),
                                           ("0", False), ("", False), ("no", False)])
def test_the_secure_cookie_setting_reads_on_and_off(tmp_path, raw, expected):
    settings = load_settings({"SORNMEMORY_DATA": str(tmp_path),
                              "SORNMEMORY_SECURE_COOKIES": raw}, environ={})
    assert settings["SORNMEMORY_SECURE_COOKIES"] is expected


@pytest.mark.parametrize("settings, problem", [
    ({"SORNMEMORY_SECURE_COOKIES": "maybe"}, "SORNMEMORY_SECURE_COOKIES"),
    ({"SORNMEMORY_SIGNUPS_PER_HOUR": "0"}, "SORNMEMORY_SIGNUPS_PER_HOUR"),
])
def test_bad_account_settings_are_named(tmp_path, settings, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings({"SORNMEMORY_DATA": str(tmp_path), **settings}, environ={})


def test_one_address_registers_at_most_ten_accounts_an_hour(https_server):
    url = https_server.url
    answers = [sign_up(url, f"spam{i}").status_code for i in range(12)]
    made = answers.count(201)
    assert answers == [201] * made + [429] * (12 - made)
    assert signed_up[url] == 10  # with those the other tests made from this address
    refused = sign_up(url, "spam-late")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_signups"
    assert "hour" in refused.json()["error"]["message"]
    taken = requests.post(f"{url}/api/auth/login",  # logging in is not limited by it
                          json={"username": "spam0", "password": PASSWORD}, timeout=10)
    assert taken.status_code == 200
