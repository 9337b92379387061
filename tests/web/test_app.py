"""The app factory's settings: the generated secret key, closed sign-up, bad settings."""

from __future__ import annotations

import stat

import pytest

from webapp.web import close_app, create_app
from webapp.web.config import ConfigError, load_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(**settings):
        app = create_app({"SORNMEMORY_DATA": str(tmp_path / "data"), "SORNMEMORY_WORKERS": "1",
                          "SORNMEMORY_LLM": "offline", "SECRET_KEY": "", **settings})
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


def test_a_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = load_settings({"SORNMEMORY_DATA": str(tmp_path), "SECRET_KEY": ""}, environ={})
    again = load_settings({"SORNMEMORY_DATA": str(tmp_path)}, environ={})
    key_file = tmp_path / "secret_key"
    assert first["SECRET_KEY"] == again["SECRET_KEY"] == key_file.read_text().strip()
    assert len(first["SECRET_KEY"]) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    given = load_settings({"SORNMEMORY_DATA": str(tmp_path), "SECRET_KEY": "mine"}, environ={})
    assert given["SECRET_KEY"] == "mine"


@pytest.mark.parametrize("settings, problem", [
    ({"SORNMEMORY_WORKERS": "two"}, "SORNMEMORY_WORKERS"),
    ({"SORNMEMORY_WORKERS": "0"}, "SORNMEMORY_WORKERS"),
    ({"SORNMEMORY_SIGNUP": "maybe"}, "SORNMEMORY_SIGNUP"),
])
def test_bad_settings_are_named(tmp_path, settings, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings({"SORNMEMORY_DATA": str(tmp_path), **settings}, environ={})


def test_closed_sign_up_admits_only_the_first_account(make_app):
    client = make_app(SORNMEMORY_SIGNUP="closed").test_client()
    admin = client.post("/api/auth/register", json={"username": "root", "password": PASSWORD})
    assert admin.status_code == 201 and admin.json["user"]["is_admin"] is True
    late = client.post("/api/auth/register", json={"username": "late", "password": PASSWORD})
    assert late.status_code == 403 and late.json["error"]["code"] == "signup_closed"


def test_the_api_key_never_reaches_a_response(make_app):
    app = make_app(SORNMEMORY_LLM="nim", NVIDIA_API_KEY="nvapi-very-secret",
                   NIM_BASE_URL="http://127.0.0.1:9/v1")
    client = app.test_client()
    client.post("/api/auth/register", json={"username": "keyholder", "password": PASSWORD})
    for path in ("/", "/healthz", "/api/auth/me", "/api/network", "/api/conversations"):
        assert b"nvapi-very-secret" not in client.get(path).data
