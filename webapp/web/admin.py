"""The admin's routes: the sign-up switch and the list of accounts.

Only the admin (the first account registered) may call them: anyone else logged in gets
403 `forbidden`, and the login guard answers 401 to a request without a login.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

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


@bp.get("/users")
def list_users():
    users = [{"id": u["id"], "username": u["username"], "is_admin": u["is_admin"],
              "created_at": u["created_at"]} for u in services().store.list_users()]
    return jsonify({"users": users})
