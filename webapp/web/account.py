"""The logged-in user's own account: change the password, or delete the account and all
its data. Both ask for the current password again. An admin deletes other accounts the
same way (`remove_account`, used by admin.py).

A password change keeps the session it was made in and ends every other session of the
user (a thief's copy of a cookie stops working), closing their sockets. Deleting the
account goes to the user's engine worker (op `delete_account`): it drops the loaded
memory without saving it, deletes the network snapshots, then every row of the user in
one transaction (Store.delete_user); then every socket of the user is closed and the
cookie cleared. The only admin cannot delete their account while other accounts exist
(409 `last_admin`): they would be left with no admin.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, session
from flask.signals import Namespace

from webapp.web import auth
from webapp.web.errors import ApiError
from webapp.web.services import services

bp = Blueprint("account", __name__, url_prefix="/api/account")

DELETE_TIMEOUT_SECONDS = 600.0  # a large memory's rows take a while to delete
# Sent with the app as sender when logins end other than by a logout: `user_id`, and the
# `token_hashes` of the ended sessions, or None for all of the user's (their sockets close).
logins_revoked = Namespace().signal("logins-revoked")


def password_field(name: str) -> str:
    """The password the request's JSON body gives under `name` (400 when missing)."""
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f'Send JSON with "{name}" as text.')
    return value


@bp.post("/password")
def change_password():
    current, new = password_field("current_password"), password_field("new_password")
    auth.confirm_password(g.user, current)
    auth.check_new_password(new)
    ended = services().store.change_password(g.user["id"], auth.hash_password(new),
                                             auth.session_token())
    logins_revoked.send(current_app._get_current_object(), user_id=g.user["id"],
                        token_hashes=ended)
    return jsonify({"ok": True, "sessions_ended": len(ended)})


def remove_account(user_id: int) -> bool:
    """Delete an account and all its data in its engine worker (op `delete_account`; its
    login sessions go with its rows), then close every socket of the user. False when
    there was no such account; EngineError `last_admin` when it is the only admin of
    other accounts."""
    deleted = services().engine.call(user_id, "delete_account",
                                     timeout=DELETE_TIMEOUT_SECONDS)["deleted"]
    logins_revoked.send(current_app._get_current_object(), user_id=user_id, token_hashes=None)
    return deleted


@bp.delete("")
def delete_account():
    auth.confirm_password(g.user, password_field("password"))
    remove_account(g.user["id"])  # the only admin of other accounts: 409 last_admin
    session.clear()
    return jsonify({"deleted": True})
