"""Whether new accounts may register: the server's configuration, else the admin's choice.

`SORNMEMORY_SIGNUP`, when set, decides and the admin's switch is read-only (an operator who
closed sign-up in the environment keeps it closed whatever is clicked); unset, the admin's
choice (kept in the store's settings, so it survives restarts) decides, and sign-up is
open until an admin closes it. The very first account can always register: it is the admin.
"""

from __future__ import annotations

from webapp.web.services import services

STATES = ("open", "closed")
SETTING = "signup"


def signup_policy() -> dict:
    """{"signup": "open"|"closed", "set_by": "configuration"|"admin"|"default"}."""
    sornmemory = services()
    configured = sornmemory.settings["SORNMEMORY_SIGNUP"]
    if configured is not None:
        return {"signup": configured, "set_by": "configuration"}
    chosen = sornmemory.store.get_setting(SETTING)
    if chosen in STATES:
        return {"signup": chosen, "set_by": "admin"}
    return {"signup": "open", "set_by": "default"}


def choose_signup(state: str) -> None:
    """The admin's choice; the caller has checked that the configuration leaves it open."""
    services().store.set_setting(SETTING, state)


def registration_open() -> bool:
    """Whether a new account may register now (the first one always may)."""
    return services().store.count_users() == 0 or signup_policy()["signup"] == "open"
