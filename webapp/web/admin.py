"""The admin's routes: the sign-up switch, the list of accounts, and another account
deleted (with all its data, as its owner would delete it) or made admin or not.

Only an admin (the first account registered, and whoever an admin makes one) may call
them: anyone else logged in gets 403 `forbidden`, and the login guard answers 401 to a
request without a login. The server never goes without an admin (409 `last_admin`).
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from webapp.memory.store import LastAdminError
from webapp.web import auth
from webapp.web.account import password_field, remove_account
from webapp.web.errors import ApiError
from webapp.web.services import services
from webapp.web.signup import STATES, choose_signup, signup_policy

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


@bp.before_request
def require_admin():
    if not g.user["is_admin"]:
        raise ApiError(403, "forbidden", "Only the server's admin may do this.")


@bp.get("/settings")
def get_settings():
    return jsonify(signup_policy())


@bp.put("/settings")
def put_settings():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"signup"} or body["signup"] not in STATES:
        raise ApiError(400, "bad_request", 'Send JSON {"signup": "open"} or {"signup": "closed"}.')
    if signup_policy()["set_by"] == "configuration":
        raise ApiError(409, "set_by_configuration",
                       "Sign-up is set by the server's configuration (SORNMEMORY_SIGNUP); "
                       "change it there.")
    choose_signup(body["signup"])
    return jsonify(signup_policy())


def _listed(user: dict) -> dict:
    return {key: user[key] for key in ("id", "username", "is_admin", "created_at")}


def _account(user_id: int) -> dict:
    user = services().store.get_user_by_id(user_id)
    if user is None:
        raise ApiError(404, "not_found", "There is no such account.")
    return user


@bp.get("/users")
def list_users():
    return jsonify({"users": [_listed(u) for u in services().store.list_users()]})


@bp.delete("/users/<int:user_id>")
def delete_user(user_id: int):
    """Another account and all its data, as its owner would delete it; the admin's own
    password is asked again, as for their own account."""
    password = password_field("password")
    if user_id == g.user["id"]:
        raise ApiError(400, "own_account",
                       "Delete your own account from the Account dialog, not from here.")
    _account(user_id)
    auth.confirm_password(g.user, password)
    if not remove_account(user_id):  # deleted meanwhile
        raise ApiError(404, "not_found", "There is no such account.")
    return jsonify({"deleted": True})


@bp.put("/users/<int:user_id>")
def put_user(user_id: int):
    """Make an account admin or take it back; an admin may also step down this way,
    while another admin remains."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"is_admin"} or \
            not isinstance(body["is_admin"], bool):
        raise ApiError(400, "bad_request", 'Send JSON {"is_admin": true} or {"is_admin": false}.')
    try:
        changed = services().store.set_admin(user_id, body["is_admin"])
    except LastAdminError as exc:
        raise ApiError(409, "last_admin", str(exc)) from None
    if not changed:
        raise ApiError(404, "not_found", "There is no such account.")
    return jsonify({"user": _listed(_account(user_id))})
